/* A tiny blocking HTTP/1.1 test client for the server's integration tests: connect, send raw
 * bytes (whole or byte by byte), read responses with deadlines. Header-only; every wait is
 * bounded by poll() with a deadline, so a server that hangs fails the test instead of hanging
 * it. */
#ifndef SLUICE_TEST_HTTP_CLIENT_H
#define SLUICE_TEST_HTTP_CLIENT_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

/* Connects to 127.0.0.1:port (blocking socket, TCP_NODELAY). Returns the fd or -errno. */
static inline int tc_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

/* Sends all bytes; false if the peer is gone (EPIPE/ECONNRESET), which some tests expect. */
static inline bool tc_send(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return false;
        p += n;
        len -= (size_t)n;
    }
    return true;
}

static inline bool tc_sends(int fd, const char *s)
{
    return tc_send(fd, s, strlen(s));
}

/* Waits up to ms for fd to be readable. */
static inline bool tc_readable(int fd, int ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int rc;
    do {
        rc = poll(&p, 1, ms);
    } while (rc < 0 && errno == EINTR);
    return rc > 0;
}

/* A response parsed by tc_read_response. */
typedef struct tc_resp {
    int status;
    char head[4096]; /* status line + headers, NUL-terminated */
    char *body;      /* malloc'd, NUL-terminated; free with tc_resp_free */
    size_t body_len;
} tc_resp;

static inline void tc_resp_free(tc_resp *r)
{
    free(r->body);
    r->body = NULL;
}

/* Buffered reader over one connection. */
typedef struct tc_conn {
    int fd;
    char buf[65536];
    size_t len, pos;
    bool eof;
} tc_conn;

static inline void tc_init(tc_conn *c, int fd)
{
    c->fd = fd;
    c->len = c->pos = 0;
    c->eof = false;
}

/* Reads more into the buffer. Returns >0 bytes, 0 on EOF, -1 on error/timeout. */
static inline int tc_fill(tc_conn *c, int ms)
{
    if (c->pos > 0) {
        memmove(c->buf, c->buf + c->pos, c->len - c->pos);
        c->len -= c->pos;
        c->pos = 0;
    }
    if (c->len == sizeof c->buf) return -1;
    if (!tc_readable(c->fd, ms)) return -1;
    ssize_t n = recv(c->fd, c->buf + c->len, sizeof c->buf - c->len, 0);
    if (n == 0) c->eof = true;
    if (n < 0) return -1;
    c->len += (size_t)n;
    return (int)n;
}

/* True when the server closed the connection (EOF or reset) within ms, having sent nothing
 * more. */
static inline bool tc_wait_eof(tc_conn *c, int ms)
{
    if (c->len > c->pos) return false;
    int64_t dl = sl_mono_ns() + SL_MS(ms);
    while (sl_mono_ns() < dl) {
        if (!tc_readable(c->fd, 50)) continue;
        char b[512];
        ssize_t n = recv(c->fd, b, sizeof b, 0);
        if (n == 0 || (n < 0 && errno == ECONNRESET)) return true;
        if (n > 0) return false;
    }
    return false;
}

static inline const char *tc_find_hdr(const char *head, const char *name, char *out, size_t cap)
{
    size_t nl = strlen(name);
    const char *p = strstr(head, "\r\n");
    while (p && p[2] != '\r' && p[2] != '\0') {
        p += 2;
        if (strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
            const char *v = p + nl + 1;
            while (*v == ' ')
                v++;
            const char *e = strstr(v, "\r\n");
            size_t l = e ? (size_t)(e - v) : strlen(v);
            if (l >= cap) l = cap - 1;
            memcpy(out, v, l);
            out[l] = 0;
            return out;
        }
        p = strstr(p, "\r\n");
    }
    return NULL;
}

/* Reads one final response (interim 1xx responses are skipped, counted in *interim if not
 * NULL). head_only: the request was HEAD (no body follows). Returns 0, or -1 on EOF/timeout/
 * garbage. */
static inline int tc_read_response_ex(tc_conn *c, tc_resp *r, bool head_only, int ms, int *interim)
{
    memset(r, 0, sizeof *r);
    for (;;) {
        char *end;
        while (!(end = memmem(c->buf + c->pos, c->len - c->pos, "\r\n\r\n", 4)))
            if (tc_fill(c, ms) <= 0) return -1;
        size_t hl = (size_t)(end + 4 - (c->buf + c->pos));
        if (hl >= sizeof r->head) return -1;
        memcpy(r->head, c->buf + c->pos, hl);
        r->head[hl] = 0;
        c->pos += hl;
        if (sscanf(r->head, "HTTP/1.%*d %d", &r->status) != 1) return -1;
        if (r->status >= 100 && r->status < 200) {
            if (interim) (*interim)++;
            continue;
        }
        break;
    }
    char v[64];
    size_t cl = 0;
    if (!head_only && tc_find_hdr(r->head, "Content-Length", v, sizeof v)) cl = strtoul(v, 0, 10);
    r->body = malloc(cl + 1);
    if (!r->body) return -1;
    size_t got = 0;
    while (got < cl) {
        if (c->pos == c->len && tc_fill(c, ms) <= 0) return -1;
        size_t n = c->len - c->pos < cl - got ? c->len - c->pos : cl - got;
        memcpy(r->body + got, c->buf + c->pos, n);
        got += n;
        c->pos += n;
    }
    r->body[cl] = 0;
    r->body_len = cl;
    return 0;
}

static inline int tc_read_response(tc_conn *c, tc_resp *r)
{
    return tc_read_response_ex(c, r, false, 5000, NULL);
}

/* One request on a new connection; returns the status or -1. Body in *r when r is not NULL. */
static inline int tc_get_status(int port, const char *raw)
{
    int fd = tc_connect(port);
    if (fd < 0) return -1;
    tc_conn c;
    tc_init(&c, fd);
    tc_resp r;
    int st = -1;
    if (tc_sends(fd, raw) && tc_read_response(&c, &r) == 0) st = r.status;
    tc_resp_free(&r);
    close(fd);
    return st;
}

/* ---- a server for a test ---- */
#include "sluice/server.h"

/* Starts a server on 127.0.0.1:0 with o; returns it and sets *port. Fails the test on error. */
static inline sl_server *tc_server_start(sl_server_opts *o, int *port)
{
    sl_server *srv = NULL;
    assert_int_equal(sl_server_new(o, &srv), 0);
    int p = sl_server_listen(srv, "127.0.0.1", 0);
    assert_true(p > 0);
    assert_int_equal(sl_server_port(srv), p);
    assert_int_equal(sl_server_serve(srv), 0);
    *port = p;
    return srv;
}

static inline int64_t tc_stat_conns(sl_server *srv)
{
    sl_server_stats st;
    sl_server_stats_get(srv, &st);
    return st.connections;
}

static inline uint64_t tc_stat_requests(sl_server *srv)
{
    sl_server_stats st;
    sl_server_stats_get(srv, &st);
    return st.requests;
}

/* Threads in this process now (from /proc), to prove a server joined every thread it started. */
static inline int tc_thread_count(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    int n = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "Threads: %d", &n) == 1) break;
    if (f) fclose(f);
    return n;
}

/* Runs `wrk -t1 -c<conns> -d1s` against url (bounded: killed after 30 s), echoes its output to
 * stderr, and fails the test unless it exits 0 with no socket errors and no non-2xx answers.
 * Returns the number of requests wrk completed (> 0). */
static inline long long tc_run_wrk(const char *url, int conns)
{
    char tmpl[] = "/tmp/sluice-wrk-XXXXXX", cflag[16], out[256];
    snprintf(cflag, sizeof cflag, "-c%d", conns);
    int ofd = mkstemp(tmpl);
    assert_true(ofd >= 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(ofd, 1);
        dup2(ofd, 2);
        execlp("wrk", "wrk", "-t1", cflag, "-d1s", "--timeout", "5s", url, (char *)NULL);
        _exit(127);
    }
    int status = 0;
    int64_t dl = sl_mono_ns() + SL_SEC(30);
    pid_t w;
    while ((w = waitpid(pid, &status, WNOHANG)) == 0 && sl_mono_ns() < dl)
        sl_test_pause(100);
    if (w == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        unlink(tmpl);
        fail_msg("wrk did not finish in 30 s");
    }
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    FILE *f = fdopen(ofd, "r");
    rewind(f);
    long long reqs = -1;
    bool errors = false;
    while (fgets(out, sizeof out, f)) {
        fputs(out, stderr);
        if (strstr(out, "Socket errors") || strstr(out, "Non-2xx")) errors = true;
        long long n;
        if (sscanf(out, " %lld requests in", &n) == 1) reqs = n;
    }
    fclose(f);
    unlink(tmpl);
    assert_false(errors);
    assert_true(reqs > 0);
    return reqs;
}

/* A heap tc_conn connected to 127.0.0.1:port (the test fails if it cannot connect). */
static inline tc_conn *tc_conn_new(int port)
{
    tc_conn *c = malloc(sizeof *c);
    assert_non_null(c);
    int fd = tc_connect(port);
    assert_true(fd >= 0);
    tc_init(c, fd);
    return c;
}

static inline void tc_conn_free(tc_conn *c)
{
    close(c->fd);
    free(c);
}

/* Load-client loop on one keep-alive connection: sends req again and again until the server
 * closes or answers Connection: close. Counts, as they happen, each complete response in *ok and
 * in *bad each one
 * that is not 200 with exactly body, or that was cut off mid-response (a close before any byte of
 * a response is fine: that request was never processed). */
static inline void tc_keepalive_run(tc_conn *c, const char *req, const char *body, atomic_long *ok,
                                    atomic_long *bad)
{
    for (;;) {
        if (!tc_sends(c->fd, req)) return;
        tc_resp r;
        size_t before = c->len - c->pos;
        if (tc_read_response(c, &r) != 0) {
            if (c->len - c->pos > 0 || before > 0) atomic_fetch_add(bad, 1);
            return;
        }
        if (r.status != 200 || strcmp(r.body, body) != 0) atomic_fetch_add(bad, 1);
        atomic_fetch_add(ok, 1);
        char v[16];
        bool last = tc_find_hdr(r.head, "Connection", v, sizeof v) != NULL;
        tc_resp_free(&r);
        if (last) return;
    }
}

/* Reads one small response (head and a Content-Length body, in a few segments) within ms into
 * buf (NUL-terminated); returns its status, or -1 when none arrived in time. */
static inline int tc_read_small(int fd, char *buf, size_t cap, int ms)
{
    size_t len = 0;
    int64_t dl = sl_mono_ns() + SL_MS(ms);
    buf[0] = '\0';
    while (sl_mono_ns() < dl) {
        const char *e = strstr(buf, "\r\n\r\n");
        if (e) {
            char v[32];
            size_t want = 0;
            if (tc_find_hdr(buf, "Content-Length", v, sizeof v)) want = (size_t)atol(v);
            if (len >= (size_t)(e + 4 - buf) + want) break;
        }
        if (!tc_readable(fd, 50)) continue;
        ssize_t n = recv(fd, buf + len, cap - 1 - len, 0);
        if (n <= 0) break;
        len += (size_t)n;
        buf[len] = '\0';
    }
    int st = -1;
    if (sscanf(buf, "HTTP/1.1 %d", &st) != 1) return -1;
    return st;
}

#endif
