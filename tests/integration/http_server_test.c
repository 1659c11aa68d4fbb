/* The HTTP engine over real sockets: keep-alive, pipelining order and bounds, HEAD,
 * Connection: close, HTTP/1.0, 100-continue, bodies (Content-Length, chunked, limits), the
 * request views and response API, IPv6, and every tests/http_cases/ case fed whole and byte by
 * byte (expected status line; after a rejection the server closes the connection). */
#include "harness.h"
#include "http_client.h"
#include "../unit/http/http_cases.h"

#include <pthread.h>
#include <stdatomic.h>

#define BIG_LEN (256 * 1024)
static char g_big[BIG_LEN];

/* What the /views handler saw, copied out for the test thread (the server is joined, or the
 * response was read, before the test looks: the read is the synchronisation). */
static struct {
    char method[16], target[128], path[128], query[128], hdr[64], hdr2[64], addr[64];
    bool no_query;
    int version;
    size_t nheaders;
    int rc_badname, rc_cl, rc_date, rc_crlf, rc_status;
} g_seen;
static pthread_mutex_t g_seen_mu = PTHREAD_MUTEX_INITIALIZER;

static void copyv(char *dst, size_t cap, const char *s, size_t n)
{
    if (!s) {
        dst[0] = 0;
        return;
    }
    if (n >= cap) n = cap - 1;
    memcpy(dst, s, n);
    dst[n] = 0;
}

static bool path_is(sl_req *req, const char *p)
{
    size_t n;
    const char *s = sl_req_path(req, &n);
    return n == strlen(p) && memcmp(s, p, n) == 0;
}

static void handler(sl_req *req, sl_resp *resp, void *arg)
{
    (void)arg;
    size_t n;
    const char *path = sl_req_path(req, &n);
    if (path_is(req, "/echo")) {
        const void *b = sl_req_body(req, &n);
        sl_resp_set_body(resp, b, n);
        char len[32];
        snprintf(len, sizeof len, "%zu", n);
        sl_resp_add_header(resp, "X-Len", len);
    } else if (path_is(req, "/big")) {
        sl_resp_set_body_static(resp, g_big, BIG_LEN);
    } else if (path_is(req, "/bigcopy")) {
        sl_resp_set_body(resp, g_big, BIG_LEN);
    } else if (path_is(req, "/close")) {
        sl_resp_add_header(resp, "Connection", "close");
        sl_resp_set_body_static(resp, "bye", 3);
    } else if (path_is(req, "/204")) {
        sl_resp_set_status(resp, 204);
        sl_resp_set_body_static(resp, "ignored", 7);
    } else if (n > 3 && memcmp(path, "/n/", 3) == 0) {
        sl_resp_set_body(resp, path + 3, n - 3);
    } else if (path_is(req, "/views")) {
        pthread_mutex_lock(&g_seen_mu);
        const char *s = sl_req_method(req, &n);
        copyv(g_seen.method, sizeof g_seen.method, s, n);
        s = sl_req_target(req, &n);
        copyv(g_seen.target, sizeof g_seen.target, s, n);
        s = sl_req_path(req, &n);
        copyv(g_seen.path, sizeof g_seen.path, s, n);
        s = sl_req_query(req, &n);
        g_seen.no_query = s == NULL;
        copyv(g_seen.query, sizeof g_seen.query, s, n);
        s = sl_req_header(req, "x-TEST", &n);
        copyv(g_seen.hdr, sizeof g_seen.hdr, s, n);
        s = sl_req_header(req, "X-Absent", &n);
        g_seen.hdr2[0] = s ? 'X' : 0;
        g_seen.version = sl_req_version(req);
        g_seen.nheaders = sl_req_header_count(req);
        const char *hn, *hv;
        size_t hnl, hvl;
        assert_int_equal(sl_req_header_at(req, 0, &hn, &hnl, &hv, &hvl), 0);
        assert_int_equal(sl_req_header_at(req, g_seen.nheaders, &hn, &hnl, &hv, &hvl), SL_ERANGE);
        snprintf(g_seen.addr, sizeof g_seen.addr, "%s", sl_req_remote_addr(req));
        g_seen.rc_badname = sl_resp_add_header(resp, "Bad Name", "x");
        g_seen.rc_cl = sl_resp_add_header(resp, "content-length", "5");
        g_seen.rc_date = sl_resp_add_header(resp, "Date", "x");
        g_seen.rc_crlf = sl_resp_add_header(resp, "X-A", "a\r\nX-B: b");
        g_seen.rc_status = sl_resp_set_status(resp, 42);
        pthread_mutex_unlock(&g_seen_mu);
        sl_resp_add_header(resp, "X-Custom", "yes");
        sl_resp_set_status(resp, 201);
        sl_resp_set_content_type(resp, "text/x-test");
        sl_resp_set_body_static(resp, "views", 5);
    } else {
        sl_resp_set_content_type(resp, "text/plain");
        sl_resp_set_body_static(resp, "ok", 2);
    }
}

static sl_server *start(int *port, sl_server_opts *extra)
{
    sl_server_opts o = {.handler = handler, .reactors = 2};
    if (extra) {
        o = *extra;
        o.handler = handler;
    }
    return tc_server_start(&o, port);
}

static void expect_resp(tc_conn *c, int status, const char *body)
{
    tc_resp r;
    assert_int_equal(tc_read_response(c, &r), 0);
    assert_int_equal(r.status, status);
    if (body) assert_string_equal(r.body, body);
    tc_resp_free(&r);
}

static void test_keepalive(void **state)
{
    (void)state;
    int port;
    sl_server *srv = start(&port, NULL);
    tc_conn *c = tc_conn_new(port);
    for (int i = 0; i < 3; i++) {
        assert_true(tc_sends(c->fd, "GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
        tc_resp r;
        assert_int_equal(tc_read_response(c, &r), 0);
        assert_int_equal(r.status, 200);
        assert_string_equal(r.body, "ok");
        char v[64];
        assert_non_null(tc_find_hdr(r.head, "Date", v, sizeof v));
        assert_int_equal(strlen(v), 29);
        assert_true(strstr(v, " GMT") != NULL);
        assert_string_equal(tc_find_hdr(r.head, "Content-Length", v, sizeof v), "2");
        assert_string_equal(tc_find_hdr(r.head, "Content-Type", v, sizeof v), "text/plain");
        assert_null(tc_find_hdr(r.head, "Connection", v, sizeof v));
        tc_resp_free(&r);
    }
    assert_int_equal(tc_stat_conns(srv), 1);
    assert_int_equal(tc_stat_requests(srv), 3);
    tc_conn_free(c);
    assert_true(SL_WAIT_UNTIL(tc_stat_conns(srv) == 0, 5000));
    assert_int_equal(sl_server_shutdown(srv, NULL), 0);
    sl_server_free(srv);
}

static void test_pipelining_order(void **state)
{
    (void)state;
    int port;
    sl_server *srv = start(&port, NULL);
    tc_conn *c = tc_conn_new(port);
    char *all = malloc(200 * 64);
    size_t len = 0;
    for (int i = 0; i < 200; i++)
        len += (size_t)sprintf(all + len, "GET /n/%d HTTP/1.1\r\nHost: a\r\n\r\n", i);
    assert_true(tc_send(c->fd, all, len));
    for (int i = 0; i < 200; i++) {
        char want[16];
        snprintf(want, sizeof want, "%d", i);
        expect_resp(c, 200, want);
    }
    free(all);
    tc_conn_free(c);
    sl_server_free(srv); /* free while serving: shuts down with no grace */
}

/* A client that pipelines big responses without reading them: the server stops reading
 * (bounded output) and still answers everything, in order, once the client reads. */
static void test_pipelining_bounded(void **state)
{
    (void)state;
    int port;
    sl_server_opts o = {.reactors = 1, .max_pipeline = 8};
    sl_server *srv = start(&port, &o);
    tc_conn *c = tc_conn_new(port);
    enum { N = 200 };
    char *all = malloc(N * 64);
    size_t len = 0;
    for (int i = 0; i < N; i++)
        len += (size_t)sprintf(all + len, "GET /%s HTTP/1.1\r\nHost: a\r\n\r\n",
                               i % 2 ? "big" : "bigcopy");
    assert_true(tc_send(c->fd, all, len));
    free(all);
    /* 200 x 256 KiB = 50 MiB cannot fit the socket buffers: the server must stall. */
    assert_false(SL_WAIT_UNTIL(tc_stat_requests(srv) >= N, 300));
    assert_true(tc_stat_requests(srv) < N);
    for (int i = 0; i < N; i++) {
        tc_resp r;
        assert_int_equal(tc_read_response(c, &r), 0);
        assert_int_equal(r.status, 200);
        assert_int_equal(r.body_len, BIG_LEN);
        assert_memory_equal(r.body, g_big, BIG_LEN);
        tc_resp_free(&r);
    }
    assert_int_equal(tc_stat_requests(srv), N);
    tc_conn_free(c);
    assert_int_equal(sl_server_shutdown(srv, NULL), 0);
    sl_server_free(srv);
}

static void test_head_and_204(void **state)
{
    (void)state;
    int port;
    sl_server *srv = start(&port, NULL);
    tc_conn *c = tc_conn_new(port);
    assert_true(tc_sends(c->fd, "HEAD /big HTTP/1.1\r\nHost: a\r\n\r\n"
                                "GET /204 HTTP/1.1\r\nHost: a\r\n\r\n"
                                "GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
    tc_resp r;
    assert_int_equal(tc_read_response_ex(c, &r, true, 5000, NULL), 0);
    assert_int_equal(r.status, 200);
    char v[64];
    assert_string_equal(tc_find_hdr(r.head, "Content-Length", v, sizeof v), "262144");
    tc_resp_free(&r);
    assert_int_equal(tc_read_response(c, &r), 0);
    assert_int_equal(r.status, 204);
    assert_null(tc_find_hdr(r.head, "Content-Length", v, sizeof v));
    tc_resp_free(&r);
    /* If HEAD or 204 had leaked body bytes, this would not parse as the next response. */
    expect_resp(c, 200, "ok");
    tc_conn_free(c);
    sl_server_free(srv);
}

static void test_connection_close(void **state)
{
    (void)state;
    int port;
    sl_server *srv = start(&port, NULL);
    /* Client asks. */
    tc_conn *c = tc_conn_new(port);
    assert_true(tc_sends(c->fd, "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"));
    tc_resp r;
    assert_int_equal(tc_read_response(c, &r), 0);
    char v[64];
    assert_string_equal(tc_find_hdr(r.head, "Connection", v, sizeof v), "close");
    tc_resp_free(&r);
    assert_true(tc_wait_eof(c, 3000));
    tc_conn_free(c);
    /* Handler asks; a pipelined request after it is not answered. */
    c = tc_conn_new(port);
    assert_true(tc_sends(c->fd, "GET /close HTTP/1.1\r\nHost: a\r\n\r\n"
                                "GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
    assert_int_equal(tc_read_response(c, &r), 0);
    assert_string_equal(r.body, "bye");
    assert_string_equal(tc_find_hdr(r.head, "Connection", v, sizeof v), "close");
    tc_resp_free(&r);
    assert_true(tc_wait_eof(c, 3000));
    tc_conn_free(c);
    /* HTTP/1.0: closes by default, keeps alive on request. */
    c = tc_conn_new(port);
    assert_true(tc_sends(c->fd, "GET / HTTP/1.0\r\n\r\n"));
    expect_resp(c, 200, "ok");
    assert_true(tc_wait_eof(c, 3000));
    tc_conn_free(c);
    c = tc_conn_new(port);
    for (int i = 0; i < 2; i++) {
        assert_true(tc_sends(c->fd, "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
        assert_int_equal(tc_read_response(c, &r), 0);
        assert_string_equal(tc_find_hdr(r.head, "Connection", v, sizeof v), "keep-alive");
        tc_resp_free(&r);
    }
    tc_conn_free(c);
    sl_server_free(srv);
}

static void test_expect_continue(void **state)
{
    (void)state;
    int port;
    sl_server *srv = start(&port, NULL);
    tc_conn *c = tc_conn_new(port);
    assert_true(tc_sends(c->fd, "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
                                "Expect: 100-continue\r\n\r\n"));
    /* The interim response arrives before any body byte is sent. */
    assert_true(tc_fill(c, 5000) > 0);
    const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
    while (c->len < sizeof cont - 1)
        assert_true(tc_fill(c, 5000) > 0);
    assert_memory_equal(c->buf, cont, sizeof cont - 1);
    c->pos += sizeof cont - 1;
    assert_true(tc_sends(c->fd, "hello"));
    expect_resp(c, 200, "hello");
    /* Body already there: no interim response. */
    int interim = 0;
    assert_true(tc_sends(c->fd, "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n"
                                "Expect: 100-continue\r\n\r\nhi"));
    tc_resp r;
    assert_int_equal(tc_read_response_ex(c, &r, false, 5000, &interim), 0);
    assert_string_equal(r.body, "hi");
    assert_int_equal(interim, 0);
    tc_resp_free(&r);
    tc_conn_free(c);
    sl_server_free(srv);
}

static void test_bodies(void **state)
{
    (void)state;
    int port;
    sl_server_opts o = {.reactors = 1, .max_body_bytes = 100000};
    sl_server *srv = start(&port, &o);
    tc_conn *c = tc_conn_new(port);
    /* Chunked, split across writes, then a pipelined Content-Length request. */
    assert_true(tc_sends(c->fd, "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked"
                                "\r\n\r\n5\r\nhel"));
    assert_true(tc_sends(c->fd, "lo\r\n6\r\n world\r\n0\r\n\r\n"
                                "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"));
    expect_resp(c, 200, "hello world");
    expect_resp(c, 200, "abc");
    /* A body that needs the read buffer to grow (and a response copied then sent apart). */
    size_t n = 90000;
    char *big = malloc(n + 128);
    int hl = sprintf(big, "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: %zu\r\n\r\n", n);
    for (size_t i = 0; i < n; i++)
        big[hl + i] = (char)('a' + i % 26);
    assert_true(tc_send(c->fd, big, hl + n));
    tc_resp r;
    assert_int_equal(tc_read_response(c, &r), 0);
    assert_int_equal(r.body_len, n);
    assert_memory_equal(r.body, big + hl, n);
    tc_resp_free(&r);
    free(big);
    tc_conn_free(c);
    /* Over the limit: 413, then closed. */
    c = tc_conn_new(port);
    assert_true(
        tc_sends(c->fd, "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 100001\r\n\r\n"));
    expect_resp(c, 413, NULL);
    assert_true(tc_wait_eof(c, 3000));
    tc_conn_free(c);
    c = tc_conn_new(port);
    char *chunky = malloc(120000);
    int k = sprintf(chunky, "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n");
    for (int i = 0; i < 11; i++) {
        k += sprintf(chunky + k, "2710\r\n");
        memset(chunky + k, 'x', 10000);
        k += 10000;
        k += sprintf(chunky + k, "\r\n");
    }
    k += sprintf(chunky + k, "0\r\n\r\n");
    tc_send(c->fd, chunky, (size_t)k); /* the server may stop reading part way */
    free(chunky);
    expect_resp(c, 413, NULL);
    assert_true(tc_wait_eof(c, 3000));
    tc_conn_free(c);
    sl_server_free(srv);
}

static void test_views_and_resp_api(void **state)
{
    (void)state;
    int port;
    sl_server *srv = start(&port, NULL);
    tc_conn *c = tc_conn_new(port);
    assert_true(tc_sends(c->fd, "PUT /views?a=1&b=2 HTTP/1.1\r\nHost: a\r\nX-Test: v1\r\n\r\n"));
    tc_resp r;
    assert_int_equal(tc_read_response(c, &r), 0);
    assert_int_equal(r.status, 201);
    assert_string_equal(r.body, "views");
    char v[64];
    assert_string_equal(tc_find_hdr(r.head, "X-Custom", v, sizeof v), "yes");
    assert_string_equal(tc_find_hdr(r.head, "Content-Type", v, sizeof v), "text/x-test");
    assert_null(tc_find_hdr(r.head, "X-B", v, sizeof v));
    tc_resp_free(&r);
    pthread_mutex_lock(&g_seen_mu);
    assert_string_equal(g_seen.method, "PUT");
    assert_string_equal(g_seen.target, "/views?a=1&b=2");
    assert_string_equal(g_seen.path, "/views");
    assert_string_equal(g_seen.query, "a=1&b=2");
    assert_false(g_seen.no_query);
    assert_string_equal(g_seen.hdr, "v1");
    assert_int_equal(g_seen.hdr2[0], 0);
    assert_int_equal(g_seen.version, 11);
    assert_int_equal(g_seen.nheaders, 2);
    assert_true(strncmp(g_seen.addr, "127.0.0.1:", 10) == 0);
    assert_int_equal(g_seen.rc_badname, SL_EINVAL);
    assert_int_equal(g_seen.rc_cl, SL_EINVAL);
    assert_int_equal(g_seen.rc_date, SL_EINVAL);
    assert_int_equal(g_seen.rc_crlf, SL_EINVAL);
    assert_int_equal(g_seen.rc_status, SL_EINVAL);
    pthread_mutex_unlock(&g_seen_mu);
    assert_true(tc_sends(c->fd, "GET /views HTTP/1.1\r\nHost: a\r\nX-Test: v2\r\n\r\n"));
    expect_resp(c, 201, "views");
    pthread_mutex_lock(&g_seen_mu);
    assert_true(g_seen.no_query);
    pthread_mutex_unlock(&g_seen_mu);
    tc_conn_free(c);
    sl_server_free(srv);
}

static void test_ipv6_and_lifecycle_errors(void **state)
{
    (void)state;
    sl_server_opts o = {.handler = handler, .reactors = 2};
    sl_server *srv;
    assert_int_equal(sl_server_new(NULL, &srv), SL_EINVAL);
    sl_server_opts bad = {0};
    assert_int_equal(sl_server_new(&bad, &srv), SL_EINVAL);
    assert_int_equal(sl_server_new(&o, &srv), 0);
    assert_int_equal(sl_server_port(srv), SL_ENOENT);
    assert_int_equal(sl_server_serve(srv), SL_EINVAL); /* nothing listening */
    assert_int_equal(sl_server_shutdown(srv, NULL), SL_EINVAL);
    assert_int_equal(sl_server_listen(srv, "not-an-ip.invalid", 0), SL_ENOENT); /* resolved */
    int p4 = sl_server_listen(srv, "127.0.0.1", 0);
    assert_true(p4 > 0);
    /* The address is taken (by this server's own loops: reuse-port is theirs alone). */
    assert_int_equal(sl_server_listen(srv, "127.0.0.1", p4), SL_EADDRINUSE);
    int p6 = sl_server_listen(srv, "::1", 0);
    bool have6 = p6 > 0;
    assert_int_equal(sl_server_serve(srv), 0);
    assert_int_equal(sl_server_serve(srv), SL_EINVAL);
    assert_int_equal(sl_server_listen(srv, "127.0.0.1", 0), SL_EINVAL);
    assert_int_equal(tc_get_status(p4, "GET / HTTP/1.1\r\nHost: a\r\n\r\n"), 200);
    if (have6) {
        int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in6 sa = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)p6)};
        inet_pton(AF_INET6, "::1", &sa.sin6_addr);
        assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
        tc_conn *c = malloc(sizeof *c);
        tc_init(c, fd);
        assert_true(tc_sends(fd, "GET /views HTTP/1.1\r\nHost: a\r\n\r\n"));
        expect_resp(c, 201, "views");
        pthread_mutex_lock(&g_seen_mu);
        assert_true(strncmp(g_seen.addr, "[::1]:", 6) == 0);
        pthread_mutex_unlock(&g_seen_mu);
        tc_conn_free(c);
    } else {
        fprintf(stderr, "note: no IPv6 loopback here (%s); IPv6 part skipped\n", sl_strerror(p6));
    }
    assert_int_equal(sl_server_shutdown(srv, NULL), 0);
    assert_int_equal(sl_server_shutdown(srv, NULL), SL_EINVAL);
    sl_server_free(srv);
    sl_server_free(NULL);
}

/* ---- tests/http_cases ---- */

static void run_case(int port, const sl_http_case *hc, bool bytewise)
{
    tc_conn *c = tc_conn_new(port);
    if (bytewise) {
        for (size_t i = 0; i < hc->len; i++)
            if (!tc_send(c->fd, hc->bytes + i, 1)) break; /* the server may have closed */
    } else {
        tc_send(c->fd, hc->bytes, hc->len);
    }
    for (int i = 0; i < hc->requests; i++) {
        bool last = i == hc->requests - 1;
        tc_resp r;
        int rc = tc_read_response(c, &r);
        if (rc != 0 || r.status != (last ? hc->status : 200)) {
            fprintf(stderr, "case %s (%s, request %d): got %d, want %d\n", hc->name,
                    bytewise ? "byte by byte" : "whole", i + 1, rc ? -1 : r.status,
                    last ? hc->status : 200);
            fail();
        }
        bool closes = tc_find_hdr(r.head, "Connection", (char[16]){0}, 16) != NULL;
        tc_resp_free(&r);
        if (closes && !last) {
            fprintf(stderr, "case %s: closed before request %d\n", hc->name, i + 2);
            fail();
        }
    }
    if (hc->status != 200 && !tc_wait_eof(c, 3000)) {
        fprintf(stderr, "case %s: connection not closed after %d\n", hc->name, hc->status);
        fail();
    }
    tc_conn_free(c);
}

static void run_cases(bool bytewise)
{
    int port;
    sl_server *srv = start(&port, NULL);
    sl_http_case_list l;
    assert_int_equal(sl_http_case_list_load(&l), 0);
    assert_true(l.n >= 20);
    for (size_t i = 0; i < l.n; i++) {
        sl_http_case hc;
        assert_int_equal(sl_http_case_load(l.paths[i], &hc), 0);
        run_case(port, &hc, bytewise);
        sl_http_case_free(&hc);
    }
    sl_http_case_list_free(&l);
    assert_true(SL_WAIT_UNTIL(tc_stat_conns(srv) == 0, 5000));
    assert_int_equal(sl_server_shutdown(srv, NULL), 0);
    sl_server_free(srv);
}

static void test_cases_whole(void **state)
{
    (void)state;
    run_cases(false);
}

static void test_cases_bytewise(void **state)
{
    (void)state;
    run_cases(true);
}

int main(void)
{
    for (size_t i = 0; i < BIG_LEN; i++)
        g_big[i] = (char)('A' + (i * 7) % 26);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keepalive),
        cmocka_unit_test(test_pipelining_order),
        cmocka_unit_test(test_pipelining_bounded),
        cmocka_unit_test(test_head_and_204),
        cmocka_unit_test(test_connection_close),
        cmocka_unit_test(test_expect_continue),
        cmocka_unit_test(test_bodies),
        cmocka_unit_test(test_views_and_resp_api),
        cmocka_unit_test(test_ipv6_and_lifecycle_errors),
        cmocka_unit_test(test_cases_whole),
        cmocka_unit_test(test_cases_bytewise),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
