/* The request parser against tests/http_cases (each case whole, then byte by byte) and
 * targeted checks of the views, the derived flags, the limits and the chunked decoder. */
#include "harness.h"
#include "http/parser.h"
#include "http_cases.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef SLUICE_ASAN
#include <sanitizer/asan_interface.h>
#define POISON(p, n)   ASAN_POISON_MEMORY_REGION((p), (n))
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define POISON(p, n)   ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

/* What feeding a case produced. */
typedef struct outcome {
    int status;      /* 200, or the rejection's status */
    int failed_at;   /* index of the request that was rejected, or -1 */
    int done;        /* requests fully framed */
    size_t heads[8]; /* head length of each request */
    char body[4096]; /* every body byte, requests concatenated */
    size_t body_len;
    const char *error; /* set when the harness saw something impossible */
} outcome;

static void add_body(outcome *o, const char *p, size_t n)
{
    if (o->body_len + n > sizeof(o->body)) {
        o->error = "body larger than the test buffer";
        return;
    }
    memcpy(o->body + o->body_len, p, n);
    o->body_len += n;
}

/* Feeds the whole case at once, as one recv() would, in an exactly sized heap copy so that
 * ASan catches any read past the end. */
static void feed_whole(const sl_http_case *c, outcome *o)
{
    memset(o, 0, sizeof(*o));
    o->failed_at = -1;
    char *buf = malloc(c->len);
    assert_non_null(buf);
    memcpy(buf, c->bytes, c->len);
    size_t pos = 0;
    sl_http_header hdrs[SL_HTTP_DEFAULT_MAX_HEADERS];
    for (int r = 0; r < c->requests && !o->error; r++) {
        sl_http_req_head h;
        int n = sl_http_parse_head(buf + pos, c->len - pos, &h, hdrs, NULL);
        if (n == SL_EPARSE) {
            assert_false(h.keep_alive);
            o->status = h.status;
            o->failed_at = r;
            break;
        }
        if (n <= 0) {
            o->error = "head incomplete at the end of the case";
            break;
        }
        assert_int_equal(h.status, 0);
        o->heads[r] = (size_t)n;
        pos += (size_t)n;
        if (h.chunked) {
            sl_http_chunked st;
            sl_http_chunked_init(&st, NULL);
            size_t len = c->len - pos, used;
            int rc = sl_http_chunked_decode(&st, buf + pos, &len, &used);
            add_body(o, buf + pos, len);
            if (rc == SL_EPARSE) {
                o->status = st.status;
                o->failed_at = r;
                break;
            }
            if (rc != 0) {
                o->error = "chunked body incomplete at the end of the case";
                break;
            }
            pos += used;
        } else if (h.content_length > 0) {
            if ((size_t)h.content_length > c->len - pos) {
                o->error = "Content-Length body incomplete at the end of the case";
                break;
            }
            add_body(o, buf + pos, (size_t)h.content_length);
            pos += (size_t)h.content_length;
        }
        o->done++;
    }
    if (!o->error && o->failed_at < 0) {
        o->status = 200;
        if (pos != c->len) o->error = "bytes left after the last request";
    }
    free(buf);
}

enum { IN_HEAD, IN_CL, IN_CHUNKED };

/* Feeds the case one byte at a time into a growing buffer, as a slow client would. A head
 * must complete exactly when its last byte arrives (never earlier, never later), and a
 * rejection may come early, but then it is the same one feed_whole gets. */
static void feed_bytewise(const sl_http_case *c, outcome *o)
{
    memset(o, 0, sizeof(*o));
    o->failed_at = -1;
    sl_http_header hdrs[SL_HTTP_DEFAULT_MAX_HEADERS];
    sl_http_req_head h;
    sl_http_chunked st;
    uint64_t cl_left = 0;
    int state = IN_HEAD;
    size_t start = 0; /* first unconsumed byte */
    /* One exact-size buffer; under ASan the bytes not yet "received" are poisoned, so a read
     * past avail is a report, without a copy per step (which made this O(n^2) in memcpy). */
    char *buf = malloc(c->len);
    assert_non_null(buf);
    memcpy(buf, c->bytes, c->len);
    POISON(buf, c->len);
    for (size_t avail = 1; avail <= c->len && !o->error && o->failed_at < 0; avail++) {
        UNPOISON(buf + avail - 1, 1);
        bool progress = true;
        while (progress && !o->error && o->failed_at < 0) {
            progress = false;
            if (state == IN_HEAD) {
                if (start == avail) break;
                if (o->done == c->requests) {
                    o->error = "bytes after the last request";
                    break;
                }
                int n = sl_http_parse_head(buf + start, avail - start, &h, hdrs, NULL);
                if (n == SL_EAGAIN) break;
                if (n == SL_EPARSE) {
                    o->status = h.status;
                    o->failed_at = o->done;
                    break;
                }
                if (n <= 0 || start + (size_t)n != avail) {
                    o->error = "a head completed before or after its last byte";
                    break;
                }
                o->heads[o->done] = (size_t)n;
                start += (size_t)n;
                if (h.chunked) {
                    state = IN_CHUNKED;
                    sl_http_chunked_init(&st, NULL);
                } else if (h.content_length > 0) {
                    state = IN_CL;
                    cl_left = (uint64_t)h.content_length;
                } else {
                    o->done++;
                    progress = true;
                }
            } else if (state == IN_CL) {
                size_t take = avail - start;
                if (take > cl_left) take = (size_t)cl_left;
                add_body(o, buf + start, take);
                start += take;
                cl_left -= take;
                if (cl_left == 0) {
                    state = IN_HEAD;
                    o->done++;
                    progress = true;
                }
            } else {
                if (start == avail) break;
                size_t len = avail - start, used;
                int rc = sl_http_chunked_decode(&st, buf + start, &len, &used);
                add_body(o, buf + start, len);
                start += used;
                if (rc == SL_EPARSE) {
                    o->status = st.status;
                    o->failed_at = o->done;
                } else if (rc == 0) {
                    if (start != avail)
                        o->error = "a chunked body ended before or after its last byte";
                    state = IN_HEAD;
                    o->done++;
                    progress = true;
                } else if (rc != SL_EAGAIN || used != len + (used - len)) {
                    o->error = "chunked decoder returned an unexpected code";
                }
            }
        }
        /* The chunked decoder keeps its own state: the consumed prefix is never re-fed, and
         * the heads are re-parsed from `start` because parse_head is stateless. */
    }
    UNPOISON(buf, c->len);
    free(buf);
    if (!o->error && o->failed_at < 0) {
        if (o->done != c->requests || state != IN_HEAD)
            o->error = "the case ended inside a request";
        else
            o->status = 200;
    }
}

static void check_case(const sl_http_case *c)
{
    outcome whole, bytes;
    feed_whole(c, &whole);
    if (whole.error) fail_msg("%s (whole): %s", c->name, whole.error);
    if (whole.status != c->status)
        fail_msg("%s (whole): status %d, expected %d (%s)", c->name, whole.status, c->status,
                 c->why);
    if (c->status != 200 && whole.failed_at != c->requests - 1)
        fail_msg("%s: rejected request %d, expected the last (%d)", c->name, whole.failed_at,
                 c->requests - 1);
    feed_bytewise(c, &bytes);
    if (bytes.error) fail_msg("%s (bytewise): %s", c->name, bytes.error);
    if (bytes.status != whole.status || bytes.failed_at != whole.failed_at)
        fail_msg("%s (bytewise): status %d at request %d, whole gave %d at %d", c->name,
                 bytes.status, bytes.failed_at, whole.status, whole.failed_at);
    for (int r = 0; r < whole.done; r++)
        assert_int_equal(bytes.heads[r], whole.heads[r]);
    if (c->status == 200) {
        assert_int_equal(bytes.body_len, whole.body_len);
        assert_memory_equal(bytes.body, whole.body, whole.body_len);
    }
}

static void test_cases(void **state)
{
    (void)state;
    sl_http_case_list l;
    assert_int_equal(sl_http_case_list_load(&l), 0);
    assert_true(l.n >= 60);
    int statuses[600] = {0};
    for (size_t i = 0; i < l.n; i++) {
        sl_http_case c;
        if (sl_http_case_load(l.paths[i], &c) != 0) fail_msg("cannot load %s", l.paths[i]);
        check_case(&c);
        statuses[c.status]++;
        sl_http_case_free(&c);
    }
    sl_http_case_list_free(&l);
    /* every status the parser can give is exercised by some case */
    int want[] = {200, 400, 413, 414, 417, 431, 501, 505};
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        if (!statuses[want[i]]) fail_msg("no case expects status %d", want[i]);
}

/* The case loader itself: escapes, wrapping, directives and refusals. */
static void test_case_format(void **state)
{
    (void)state;
    sl_http_case c = {.path = "inline"};
    const char *t = "# status: 431\n# why: x\n# requests: 2\nA\\r\\\nn\\t\\0\\\\\\x7\nf \n";
    assert_int_equal(sl_http_case_parse(t, strlen(t), &c), 0);
    assert_int_equal(c.status, 431);
    assert_int_equal(c.requests, 2);
    assert_string_equal(c.why, "x");
    assert_int_equal(c.len, 8);
    assert_memory_equal(c.bytes, "A\r\n\t\0\\\x7f ", 8);
    sl_http_case_free(&c);
    const char *bad[] = {"# status: 200\nA\\q", "# status: 200\nA\\x4", "# stat: 200\nA",
                         "# why: no status\nA", "# status: 200\n"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(sl_http_case_parse(bad[i], strlen(bad[i]), &c), SL_EPARSE);
        assert_null(c.bytes);
    }
}

/* ---- targeted checks --------------------------------------------------------------------- */

static sl_http_header g_hdrs[SL_HTTP_DEFAULT_MAX_HEADERS];

static int parse(const char *s, sl_http_req_head *h, const sl_http_limits *lim)
{
    return sl_http_parse_head(s, strlen(s), h, g_hdrs, lim);
}

static bool view_is(const char *p, uint32_t n, const char *want)
{
    return n == strlen(want) && memcmp(p, want, n) == 0;
}

static void test_views(void **state)
{
    (void)state;
    const char *r = "POST /a/b?c=d HTTP/1.1\r\nHost: ex.com:81\r\nX-Pad:  \t v w \t \r\n"
                    "Content-Length: 2\r\nEmpty:\r\n\r\nhi";
    sl_http_req_head h;
    int n = parse(r, &h, NULL);
    assert_int_equal(n, (int)strlen(r) - 2);
    assert_true(view_is(h.method, h.method_len, "POST"));
    assert_true(view_is(h.target, h.target_len, "/a/b?c=d"));
    assert_true(view_is(h.path, h.path_len, "/a/b?c=d"));
    assert_true(view_is(h.host, h.host_len, "ex.com:81"));
    assert_int_equal(h.target_form, SL_HTTP_TARGET_ORIGIN);
    assert_int_equal(h.version_minor, 1);
    assert_int_equal(h.num_headers, 4);
    assert_ptr_equal(h.headers, g_hdrs);
    assert_true(view_is(g_hdrs[1].name, g_hdrs[1].name_len, "X-Pad"));
    assert_true(view_is(g_hdrs[1].value, g_hdrs[1].value_len, "v w"));
    assert_int_equal(g_hdrs[3].value_len, 0);
    assert_int_equal(h.content_length, 2);
    assert_false(h.chunked);
    assert_true(h.keep_alive);
    assert_false(h.expect_continue);
    assert_int_equal(h.status, 0);
    /* views point into the caller's buffer */
    assert_ptr_equal(h.method, r);
    assert_ptr_equal(g_hdrs[0].value, strstr(r, "ex.com"));

    const sl_http_header *f = sl_http_find_header(&h, "content-LENGTH", 14);
    assert_non_null(f);
    assert_true(view_is(f->value, f->value_len, "2"));
    assert_null(sl_http_find_header(&h, "Missing", 7));
    assert_ptr_equal(sl_http_find_header(&h, "empty", 5), &g_hdrs[3]);
}

static void test_target_forms(void **state)
{
    (void)state;
    sl_http_req_head h;
    assert_true(parse("GET http://Ex.com:8080/x?y=1 HTTP/1.1\r\nHost: other\r\n\r\n", &h, NULL) >
                0);
    assert_int_equal(h.target_form, SL_HTTP_TARGET_ABSOLUTE);
    assert_true(view_is(h.host, h.host_len, "Ex.com:8080"));
    assert_true(view_is(h.path, h.path_len, "/x?y=1"));
    assert_true(parse("GET HTTPS://ex.com HTTP/1.1\r\nHost: ex.com\r\n\r\n", &h, NULL) > 0);
    assert_true(view_is(h.path, h.path_len, "/"));
    assert_true(view_is(h.host, h.host_len, "ex.com"));
    assert_true(parse("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", &h, NULL) > 0);
    assert_int_equal(h.target_form, SL_HTTP_TARGET_ASTERISK);
    assert_true(view_is(h.path, h.path_len, "*"));
    assert_true(parse("GET / HTTP/1.0\r\n\r\n", &h, NULL) > 0);
    assert_int_equal(h.host_len, 0);
    assert_non_null(h.host);
    assert_int_equal(parse("CONNECT ex.com:443 HTTP/1.1\r\nHost: ex.com:443\r\n\r\n", &h, NULL),
                     SL_EPARSE);
    assert_int_equal(h.status, 501);
    assert_int_equal(parse("CONNECT ex.com HTTP/1.1\r\nHost: a\r\n\r\n", &h, NULL), SL_EPARSE);
    assert_int_equal(h.status, 400);
}

static void test_keep_alive(void **state)
{
    (void)state;
    struct {
        const char *req;
        bool ka;
    } t[] = {
        {"GET / HTTP/1.1\r\nHost: a\r\n\r\n", true},
        {"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", false},
        {"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, CLOSE\r\n\r\n", false},
        {"GET / HTTP/1.1\r\nHost: a\r\nConnection: x\r\nConnection: close\r\n\r\n", false},
        {"GET / HTTP/1.1\r\nHost: a\r\nConnection: closed\r\n\r\n", true},
        {"GET / HTTP/1.0\r\n\r\n", false},
        {"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", true},
        {"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n", false},
        {"GET / HTTP/1.0\r\nConnection: ,, keep-alive ,\r\n\r\n", true},
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        sl_http_req_head h;
        assert_true(parse(t[i].req, &h, NULL) > 0);
        if (h.keep_alive != t[i].ka) fail_msg("keep_alive %d for %s", h.keep_alive, t[i].req);
    }
}

static void test_expect(void **state)
{
    (void)state;
    sl_http_req_head h;
    assert_true(parse("PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n"
                      "Content-Length: 5\r\n\r\n",
                      &h, NULL) > 0);
    assert_true(h.expect_continue);
    /* RFC 9110 10.1.1: a 1.0 request's 100-continue is ignored */
    assert_true(parse("PUT / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n", &h, NULL) > 0);
    assert_false(h.expect_continue);
}

static void test_chunked_flag(void **state)
{
    (void)state;
    sl_http_req_head h;
    assert_true(
        parse("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", &h, NULL) > 0);
    assert_true(h.chunked);
    assert_int_equal(h.content_length, -1);
    assert_true(parse("GET / HTTP/1.1\r\nHost: a\r\n\r\n", &h, NULL) > 0);
    assert_false(h.chunked);
    assert_int_equal(h.content_length, -1);
}

static void test_content_length_range(void **state)
{
    (void)state;
    sl_http_limits lim = sl_http_default_limits;
    lim.max_body = UINT64_MAX;
    sl_http_req_head h;
    assert_true(parse("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9223372036854775807\r\n\r\n",
                      &h, &lim) > 0);
    assert_int_equal(h.content_length, INT64_MAX);
    assert_int_equal(
        parse("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9223372036854775808\r\n\r\n", &h,
              &lim),
        SL_EPARSE);
    assert_int_equal(h.status, 400);
    lim.max_body = 10;
    assert_true(parse("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n", &h, &lim) > 0);
    assert_int_equal(parse("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n", &h, &lim),
                     SL_EPARSE);
    assert_int_equal(h.status, 413);
}

/* Limits bite on partial input: the client need not finish a line to be refused. */
static void test_limits_partial(void **state)
{
    (void)state;
    sl_http_limits lim = {
        .max_target = 8, .max_header_bytes = 64, .max_headers = 2, .max_body = 10};
    sl_http_req_head h;
    assert_int_equal(parse("GET /2345678", &h, &lim), SL_EAGAIN);
    assert_int_equal(parse("GET /23456789", &h, &lim), SL_EPARSE);
    assert_int_equal(h.status, 414);
    assert_true(parse("GET /2345678 HTTP/1.1\r\nHost: a\r\n\r\n", &h, &lim) > 0);

    char line[80];
    snprintf(line, sizeof(line), "GET / HTTP/1.1\r\nX: %0*d", 63 - 19, 0);
    assert_int_equal(strlen(line), 63);
    assert_int_equal(parse(line, &h, &lim), SL_EAGAIN);
    strcat(line, "0");
    assert_int_equal(parse(line, &h, &lim), SL_EPARSE);
    assert_int_equal(h.status, 431);
    assert_false(h.keep_alive);

    /* exactly max_header_bytes is allowed */
    snprintf(line, sizeof(line), "GET / HTTP/1.1\r\nHost: %0*d\r\n\r\n", 64 - 26, 0);
    assert_int_equal(strlen(line), 64);
    assert_int_equal(parse(line, &h, &lim), 64);

    assert_true(parse("GET / HTTP/1.1\r\nHost: a\r\nB: 1\r\n\r\n", &h, &lim) > 0);
    assert_int_equal(parse("GET / HTTP/1.1\r\nHost: a\r\nB: 1\r\nC", &h, &lim), SL_EPARSE);
    assert_int_equal(h.status, 431);

    lim.max_headers = 0;
    assert_true(parse("GET / HTTP/1.0\r\n\r\n", &h, &lim) > 0);
    assert_int_equal(sl_http_parse_head("GET / HTTP/1.0\r\nA", 17, &h, NULL, &lim), SL_EPARSE);
    assert_int_equal(h.status, 431);
}

static void test_eagain_prefixes(void **state)
{
    (void)state;
    const char *r = "\r\nGET /x HTTP/1.1\r\nHost: a\r\nA: b\r\n\r\n";
    sl_http_req_head h;
    for (size_t i = 0; i < strlen(r); i++)
        assert_int_equal(sl_http_parse_head(r, i, &h, g_hdrs, NULL), SL_EAGAIN);
    assert_int_equal(sl_http_parse_head(r, strlen(r), &h, g_hdrs, NULL), (int)strlen(r));
    assert_true(view_is(h.method, h.method_len, "GET"));
}

/* Every byte in every role, against the RFC's sets written out here independently of the
 * parser's table: tchar (RFC 9110 5.6.2) for methods and field names, VCHAR minus '#' for
 * targets, field-vchar / SP / HTAB (RFC 9110 5.5) for values, uri-host chars for Host. */
static void test_char_classes(void **state)
{
    (void)state;
    static const char tchar_extra[] = "!#$%&'*+-.^_`|~";
    static const char host_extra[] = "-._~%!$&'()*+,;=:[]";
    for (int c = 0; c < 256; c++) {
        bool alnum = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
        bool tchar = alnum || (c && strchr(tchar_extra, c));
        bool target = c > 0x20 && c < 0x7f && c != '#';
        bool value = (c > 0x20 && c != 0x7f) || c == ' ' || c == '\t';
        bool host = alnum || (c && strchr(host_extra, c));
        char req[128];
        sl_http_req_head h;
        struct {
            const char *fmt;
            bool want;
            const char *role;
        } roles[] = {
            {"A%cB / HTTP/1.1\r\nHost: a\r\n\r\n", tchar, "method"},
            {"GET /a%cb HTTP/1.1\r\nHost: a\r\n\r\n", target, "target"},
            {"GET / HTTP/1.1\r\nHost: a\r\nX%cY: v\r\n\r\n", tchar || c == ':', "name"},
            {"GET / HTTP/1.1\r\nHost: a\r\nX: a%cb\r\n\r\n", value, "value"},
            {"GET / HTTP/1.1\r\nHost: a%cb\r\n\r\n", host, "host"},
        };
        for (size_t r = 0; r < sizeof(roles) / sizeof(roles[0]); r++) {
            /* %c cannot write NUL into the middle of a string: build it by hand */
            const char *pct = strstr(roles[r].fmt, "%c");
            size_t pre = (size_t)(pct - roles[r].fmt);
            memcpy(req, roles[r].fmt, pre);
            req[pre] = (char)c;
            strcpy(req + pre + 1, pct + 2);
            size_t len = strlen(roles[r].fmt) - 1;
            int n = sl_http_parse_head(req, len, &h, g_hdrs, NULL);
            if ((n > 0) != roles[r].want)
                fail_msg("byte 0x%02x as %s: got %d (status %d), want %s", c, roles[r].role, n,
                         h.status, roles[r].want ? "ok" : "400");
            if (n <= 0) assert_int_equal(h.status, 400);
        }
    }
}

/* ---- chunked decoder --------------------------------------------------------------------- */

static const char k_chunked[] = "4\r\nWiki\r\n5;a=b\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n"
                                "0\r\nX-T: 1\r\n\r\nNEXT";
static const char k_decoded[] = "Wikipedia in\r\n\r\nchunks.";

/* Splits the input at every point into two calls: the decoded body and the consumed count
 * are the same, and the pipelined tail is untouched. */
static void test_chunked_splits(void **state)
{
    (void)state;
    size_t total = sizeof(k_chunked) - 1, body_end = total - 4;
    for (size_t cut = 0; cut <= body_end; cut++) {
        char *buf = malloc(total);
        assert_non_null(buf);
        memcpy(buf, k_chunked, total);
        sl_http_chunked st;
        sl_http_chunked_init(&st, NULL);
        char out[64];
        size_t out_len = 0, len = cut, used;
        int rc = sl_http_chunked_decode(&st, buf, &len, &used);
        if (cut < body_end) {
            assert_int_equal(rc, SL_EAGAIN);
            assert_int_equal(used, cut);
        }
        memcpy(out + out_len, buf, len);
        out_len += len;
        if (rc == SL_EAGAIN) {
            len = total - cut;
            rc = sl_http_chunked_decode(&st, buf + cut, &len, &used);
            memcpy(out + out_len, buf + cut, len);
            out_len += len;
            assert_int_equal(rc, 0);
            assert_int_equal(cut + used, body_end);
        }
        assert_int_equal(out_len, strlen(k_decoded));
        assert_memory_equal(out, k_decoded, out_len);
        assert_memory_equal(buf + body_end, "NEXT", 4);
        assert_int_equal(st.total, out_len);
        /* done stays done */
        len = 4;
        assert_int_equal(sl_http_chunked_decode(&st, buf + body_end, &len, &used), 0);
        assert_int_equal(used, 0);
        assert_int_equal(len, 0);
        free(buf);
    }
}

static int decode_str(const char *s, const sl_http_limits *lim, sl_http_chunked *st)
{
    size_t n = strlen(s), len = n, used;
    char *buf = malloc(n + 1);
    memcpy(buf, s, n);
    sl_http_chunked_init(st, lim);
    int rc = sl_http_chunked_decode(st, buf, &len, &used);
    free(buf);
    return rc;
}

static void test_chunked_limits(void **state)
{
    (void)state;
    sl_http_limits lim = {
        .max_target = 64, .max_header_bytes = 16, .max_headers = 4, .max_body = 10};
    sl_http_chunked st;
    assert_int_equal(decode_str("5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n", &lim, &st), 0);
    assert_int_equal(st.total, 10);
    /* over max_body as it accumulates, refused at the size line before the data */
    assert_int_equal(decode_str("5\r\nhello\r\n6\r\n", &lim, &st), SL_EPARSE);
    assert_int_equal(st.status, 413);
    /* trailers are bounded by max_header_bytes */
    assert_int_equal(decode_str("0\r\nA: 123456789\r\n\r\n", &lim, &st), 0);
    assert_int_equal(decode_str("0\r\nA: 1234567890\r\n\r\n", &lim, &st), SL_EPARSE);
    assert_int_equal(st.status, 431);
    /* 16 hex digits fit in 64 bits (then 413); 17 do not (400) */
    assert_int_equal(decode_str("FFFFFFFFFFFFFFFF\r\n", NULL, &st), SL_EPARSE);
    assert_int_equal(st.status, 413);
    assert_int_equal(decode_str("00000000000000001\r\n", NULL, &st), SL_EAGAIN);
    assert_int_equal(decode_str("10000000000000000\r\n", NULL, &st), SL_EPARSE);
    assert_int_equal(st.status, 400);
    /* an error is sticky */
    size_t len = 3, used;
    char b[3] = {'0', '\r', '\n'};
    assert_int_equal(sl_http_chunked_decode(&st, b, &len, &used), SL_EPARSE);
    assert_int_equal(used, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_case_format),    cmocka_unit_test(test_cases),
        cmocka_unit_test(test_views),          cmocka_unit_test(test_target_forms),
        cmocka_unit_test(test_keep_alive),     cmocka_unit_test(test_expect),
        cmocka_unit_test(test_chunked_flag),   cmocka_unit_test(test_content_length_range),
        cmocka_unit_test(test_limits_partial), cmocka_unit_test(test_eagain_prefixes),
        cmocka_unit_test(test_chunked_splits), cmocka_unit_test(test_chunked_limits),
        cmocka_unit_test(test_char_classes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
