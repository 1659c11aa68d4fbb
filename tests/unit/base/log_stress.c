/* sl_log under contention: 4 threads x 10,000 records into one pipe, drained by a reader
 * thread. Every line must come out whole and exactly once: each carries its thread id, its
 * sequence number and a payload whose length and bytes are derived from both, and some
 * payloads are far past PIPE_BUF so that the kernel alone would not keep them contiguous.
 * Shorter runs do the same over a stream socket, and in JSON (each line must parse) while the
 * level flips. */
#include "harness.h"
#include "sluice/log.h"

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define THREADS 4
#define RECORDS 10000

typedef struct reader {
    int fd; /* read end of a pipe, or one end of a socketpair */
    char *buf;
    size_t len, cap;
} reader;

static void *reader_main(void *arg)
{
    reader *r = arg;
    for (;;) {
        if (r->cap - r->len < 65536) {
            r->cap = r->cap ? r->cap * 2 : 1 << 20;
            r->buf = realloc(r->buf, r->cap);
            if (!r->buf) return NULL;
        }
        ssize_t n = read(r->fd, r->buf + r->len, r->cap - r->len - 1);
        if (n <= 0) break; /* EOF once every writer is done and the write end is closed */
        r->len += (size_t)n;
    }
    r->buf[r->len] = 0;
    return NULL;
}

/* Payload of record (t, seq): mostly short, every 500th is 9000 bytes (> 2 x PIPE_BUF). */
static size_t payload_len(int t, int seq)
{
    return seq % 500 == 0 ? 9000 : (size_t)(seq * 7 + t) % 60;
}

static void fill_payload(char *p, int t, int seq)
{
    size_t n = payload_len(t, seq);
    for (size_t i = 0; i < n; i++)
        p[i] = (char)('a' + (t * 7 + seq + (int)i) % 26);
    p[n] = 0;
}

typedef struct writer {
    sl_logger *lg;
    int id;
    int n;             /* records to write */
    atomic_bool *flip; /* JSON run: some writers flip the level while others log */
} writer;

static void *writer_main(void *arg)
{
    writer *w = arg;
    char *pay = malloc(9001);
    if (!pay) return NULL;
    for (int seq = 0; seq < w->n; seq++) {
        fill_payload(pay, w->id, seq);
        sl_log_warn(w->lg, "rec", SL_A_INT("t", w->id), SL_A_INT("seq", seq), SL_A_STR("pay", pay));
        /* DEBUG records come and go with the level; they are not counted. */
        if (w->flip && seq % 100 == 0) {
            sl_logger_set_level(w->lg, seq % 200 ? SL_LOG_DEBUG : SL_LOG_INFO);
            sl_log_debug(w->lg, "dbg", SL_A_INT("t", w->id));
        }
    }
    free(pay);
    return NULL;
}

/* Runs the writers against a fresh pipe and returns everything the reader got. */
static char *run(sl_log_format fmt, bool flip, bool sock, int n, size_t *len)
{
    int p[2];
    if (sock)
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, p), 0);
    else
        assert_int_equal(pipe(p), 0);
    sl_log_opts o = {.level = SL_LOG_INFO, .format = fmt, .fd = p[1]};
    sl_logger *lg = NULL;
    assert_int_equal(sl_logger_new(&o, &lg), 0);
    reader r = {.fd = p[0]};
    pthread_t rt, wt[THREADS];
    writer w[THREADS];
    atomic_bool fl = false;
    assert_int_equal(pthread_create(&rt, NULL, reader_main, &r), 0);
    for (int i = 0; i < THREADS; i++) {
        w[i] = (writer){.lg = lg, .id = i, .n = n, .flip = flip && i % 2 ? &fl : NULL};
        assert_int_equal(pthread_create(&wt[i], NULL, writer_main, &w[i]), 0);
    }
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_join(wt[i], NULL), 0);
    assert_int_equal(sl_logger_write_errors(lg), 0);
    sl_logger_free(lg);
    close(p[1]);
    assert_int_equal(pthread_join(rt, NULL), 0);
    close(p[0]);
    assert_non_null(r.buf);
    *len = r.len;
    return r.buf;
}

static void check_record(unsigned char seen[THREADS][RECORDS], int t, int seq, const char *pay,
                         size_t pay_len)
{
    assert_true(t >= 0 && t < THREADS);
    assert_true(seq >= 0 && seq < RECORDS);
    assert_int_equal(seen[t][seq], 0); /* exactly once */
    seen[t][seq] = 1;
    char want[9001];
    fill_payload(want, t, seq);
    assert_int_equal(pay_len, strlen(want));
    assert_memory_equal(pay, want, pay_len);
}

static void check_text(char *all, size_t len, int n)
{
    static unsigned char seen[THREADS][RECORDS];
    memset(seen, 0, sizeof seen);
    size_t lines = 0;
    for (char *line = all, *nl; line < all + len; line = nl + 1) {
        nl = memchr(line, '\n', (size_t)(all + len - line));
        assert_non_null(nl); /* the stream ends with a complete line */
        *nl = 0;
        int t = -1, seq = -1, off = 0;
        /* time=2026-11-27T22:39:21.123Z level=WARN msg=rec t=1 seq=42 pay=abc */
        int got = sscanf(line, "time=%*24c level=WARN msg=rec t=%d seq=%d pay=%n", &t, &seq, &off);
        if (got != 2 || off == 0) fail_msg("mangled line %zu: [%.120s]", lines, line);
        char *pay = line + off;
        size_t pay_len = strlen(pay);
        if (pay_len >= 2 && pay[0] == '"') { /* the empty payload is quoted */
            pay++;
            pay_len -= 2;
        }
        check_record(seen, t, seq, pay, pay_len);
        lines++;
    }
    assert_int_equal(lines, THREADS * n);
    free(all);
}

/* A pipe: small records are written under the output's shared lock, in parallel. */
static void test_text_lines_whole(void **state)
{
    size_t len;
    char *all = run(SL_LOG_TEXT, false, false, RECORDS, &len);
    check_text(all, len, RECORDS);
}

/* A stream socket promises nothing about concurrent writes: every record goes exclusive. */
static void test_text_lines_whole_socket(void **state)
{
    size_t len;
    char *all = run(SL_LOG_TEXT, false, true, RECORDS / 4, &len);
    check_text(all, len, RECORDS / 4);
}

static void test_json_lines_whole(void **state)
{
    size_t len;
    char *all = run(SL_LOG_JSON, true, false, RECORDS / 4, &len);
    static unsigned char seen[THREADS][RECORDS];
    memset(seen, 0, sizeof seen);
    size_t lines = 0;
    for (char *line = all, *nl; line < all + len; line = nl + 1) {
        nl = memchr(line, '\n', (size_t)(all + len - line));
        assert_non_null(nl);
        *nl = 0;
        json_error_t err;
        json_t *j = json_loads(line, 0, &err);
        if (!j) fail_msg("line %zu does not parse (%s): [%.120s]", lines, err.text, line);
        const char *msg = json_string_value(json_object_get(j, "msg"));
        assert_non_null(msg);
        if (strcmp(msg, "dbg") != 0) {
            const char *pay = json_string_value(json_object_get(j, "pay"));
            assert_non_null(pay);
            check_record(seen, (int)json_integer_value(json_object_get(j, "t")),
                         (int)json_integer_value(json_object_get(j, "seq")), pay, strlen(pay));
            lines++;
        }
        json_decref(j);
    }
    assert_int_equal(lines, THREADS * (RECORDS / 4));
    free(all);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text_lines_whole),
        cmocka_unit_test(test_text_lines_whole_socket),
        cmocka_unit_test(test_json_lines_whole),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
