/* sl_mux over real sockets: Go 1.22 routing (precedence, 405 + Allow, HEAD via GET, 301 with
 * the query kept, path values), the middleware chain (order, short-circuit, after hooks in
 * reverse), the standard middleware (request id in and out, access log lines parsed), the
 * request API (query decoding, multi-value headers, values, arena), response helpers, route
 * options (max body 413 before the body is read, timeout 503), inline and pooled routes, and
 * streaming. */
#include "harness.h"
#include "http_client.h"

#include <pthread.h>
#include <stdatomic.h>

#include "sluice/mux.h"

static void echo_route(sl_req *req, sl_resp *resp, void *arg)
{
    const char *tag = arg;
    const char *pat = sl_req_pattern(req);
    size_t n;
    const char *id = sl_req_path_value(req, "id", &n);
    const char *rest = sl_req_path_value(req, "rest", NULL);
    sl_resp_printf(resp, "%s|%s|%.*s|%s", tag, pat ? pat : "-", (int)n, id ? id : "",
                   rest ? "rest" : "");
}

static sl_server *start(sl_mux *mux, int *port)
{
    sl_server_opts o = {.mux = mux, .reactors = 2};
    return tc_server_start(&o, port);
}

static tc_conn *cx(int port)
{
    tc_conn *c = malloc(sizeof *c);
    assert_non_null(c);
    int fd = tc_connect(port);
    assert_true(fd >= 0);
    tc_init(c, fd);
    return c;
}

static void cx_free(tc_conn *c)
{
    close(c->fd);
    free(c);
}

/* Sends raw, reads one response into *r (caller frees). */
static void ask(tc_conn *c, const char *raw, tc_resp *r)
{
    assert_true(tc_sends(c->fd, raw));
    assert_int_equal(tc_read_response(c, r), 0);
}

static void test_routing(void **state)
{
    (void)state;
    sl_mux *mux;
    assert_int_equal(sl_mux_new(NULL, &mux), 0);
    sl_route_opts in = {.mode = SL_ROUTE_INLINE};
    assert_int_equal(sl_mux_handle(mux, "GET /users/{id}", echo_route, "user", &in, NULL, 0), 0);
    assert_int_equal(sl_mux_handle(mux, "GET /users/me", echo_route, "me", NULL, NULL, 0), 0);
    assert_int_equal(sl_mux_handle(mux, "POST /users/{id}", echo_route, "post", &in, NULL, 0), 0);
    assert_int_equal(sl_mux_handle(mux, "/files/{rest...}", echo_route, "files", &in, NULL, 0), 0);
    assert_int_equal(sl_mux_handle(mux, "/dir/", echo_route, "dir", &in, NULL, 0), 0);
    char err[256];
    assert_int_equal(sl_mux_handle(mux, "GET /users/{x}", echo_route, "dup", &in, err, sizeof err),
                     SL_ECONFLICT);
    assert_true(strlen(err) > 0);
    assert_int_equal(sl_mux_handle(mux, "GET users", echo_route, "bad", &in, NULL, 0), SL_EINVAL);
    int port;
    sl_server *srv = start(mux, &port);
    /* Registration is frozen once a server uses the mux. */
    assert_int_equal(sl_mux_handle(mux, "/late", echo_route, "late", NULL, NULL, 0), SL_EBUSY);
    tc_conn *c = cx(port);
    tc_resp r;
    ask(c, "GET /users/42 HTTP/1.1\r\nHost: a\r\n\r\n", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "user|GET /users/{id}|42|");
    tc_resp_free(&r);
    /* Precedence: the literal segment wins (a pooled route, for good measure). */
    ask(c, "GET /users/me HTTP/1.1\r\nHost: a\r\n\r\n", &r);
    assert_string_equal(r.body, "me|GET /users/me||");
    tc_resp_free(&r);
    /* Path values are decoded, and %2F does not split a segment. */
    ask(c, "GET /users/a%2Fb%20c HTTP/1.1\r\nHost: a\r\n\r\n", &r);
    assert_string_equal(r.body, "user|GET /users/{id}|a/b c|");
    tc_resp_free(&r);
    ask(c, "POST /users/7 HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", &r);
    assert_string_equal(r.body, "post|POST /users/{id}|7|");
    tc_resp_free(&r);
    /* 405 with Allow. */
    ask(c, "DELETE /users/7 HTTP/1.1\r\nHost: a\r\n\r\n", &r);
    assert_int_equal(r.status, 405);
    char v[128];
    assert_non_null(tc_find_hdr(r.head, "Allow", v, sizeof v));
    assert_string_equal(v, "GET, HEAD, POST");
    assert_string_equal(r.body, "{\"error\":\"method not allowed\"}");
    tc_resp_free(&r);
    /* HEAD through GET: the length of the body, without it. */
    assert_true(tc_sends(c->fd, "HEAD /users/42 HTTP/1.1\r\nHost: a\r\n\r\n"));
    assert_int_equal(tc_read_response_ex(c, &r, true, 5000, NULL), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(tc_find_hdr(r.head, "Content-Length", v, sizeof v));
    assert_string_equal(v, "24");
    tc_resp_free(&r);
    /* 404 JSON. */
    ask(c, "GET /nope HTTP/1.1\r\nHost: a\r\n\r\n", &r);
    assert_int_equal(r.status, 404);
    assert_non_null(tc_find_hdr(r.head, "Content-Type", v, sizeof v));
    assert_string_equal(v, "application/json");
    assert_string_equal(r.body, "{\"error\":\"not found\"}");
    tc_resp_free(&r);
    /* Redirects keep the query: unclean path, and the subtree's slash form. */
    ask(c, "GET /users//42?x=1 HTTP/1.1\r\nHost: a\r\n\r\n", &r);
    assert_int_equal(r.status, 301);
    assert_non_null(tc_find_hdr(r.head, "Location", v, sizeof v));
    assert_string_equal(v, "/users/42?x=1");
    tc_resp_free(&r);
    ask(c, "GET /dir?q=2 HTTP/1.1\r\nHost: a\r\n\r\n", &r);
    assert_int_equal(r.status, 301);
    assert_non_null(tc_find_hdr(r.head, "Location", v, sizeof v));
    assert_string_equal(v, "/dir/?q=2");
    tc_resp_free(&r);
    ask(c, "GET /files/a/b/c HTTP/1.1\r\nHost: a\r\n\r\n", &r);
    assert_string_equal(r.body, "files|/files/{rest...}||rest");
    tc_resp_free(&r);
    /* Bad percent-encoding in the path: 400. */
    ask(c, "GET /users/%zz HTTP/1.1\r\nHost: a\r\n\r\n", &r);
    assert_int_equal(r.status, 400);
    tc_resp_free(&r);
    cx_free(c);
    sl_server_free(srv);
    sl_mux_free(mux);
}

/* ---- middleware ---- */

typedef struct trace {
    pthread_mutex_t mu;
    char log[512];
} trace;

static trace tr = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void tr_add(const char *s)
{
    pthread_mutex_lock(&tr.mu);
    strncat(tr.log, s, sizeof tr.log - strlen(tr.log) - 1);
    pthread_mutex_unlock(&tr.mu);
}

static bool tr_is(const char *want)
{
    pthread_mutex_lock(&tr.mu);
    bool ok = strcmp(tr.log, want) == 0;
    pthread_mutex_unlock(&tr.mu);
    return ok;
}

static const char user_key = 0;

static sl_mw_action mw_a(sl_req *req, sl_resp *resp, void *arg)
{
    (void)arg;
    (void)resp;
    tr_add("A>");
    char *u = sl_req_alloc(req, 8);
    strcpy(u, "alice");
    assert_int_equal(sl_req_set_value(req, &user_key, u), 0);
    return SL_MW_NEXT;
}

static sl_mw_action mw_b(sl_req *req, sl_resp *resp, void *arg)
{
    (void)arg;
    tr_add("B>");
    size_t n;
    if (sl_req_header(req, "X-Deny", &n)) {
        sl_resp_error(resp, 403, "denied \"by\" B");
        return SL_MW_STOP;
    }
    return SL_MW_NEXT;
}

static void after_a(sl_req *req, const sl_resp *resp, void *arg)
{
    (void)arg;
    char s[32];
    snprintf(s, sizeof s, "<A%d", sl_resp_status(resp));
    assert_non_null(sl_req_get_value(req, &user_key));
    tr_add(s);
}

static void after_b(sl_req *req, const sl_resp *resp, void *arg)
{
    (void)req;
    (void)resp;
    (void)arg;
    tr_add("<B");
}

static void h_user(sl_req *req, sl_resp *resp, void *arg)
{
    (void)arg;
    tr_add("H");
    const char *u = sl_req_get_value(req, &user_key);
    sl_resp_printf(resp, "hi %s", u ? u : "?");
}

static void test_middleware(void **state)
{
    (void)state;
    sl_mux *mux;
    assert_int_equal(sl_mux_new(NULL, &mux), 0);
    sl_middleware a = {.name = "a", .before = mw_a, .after = after_a};
    sl_middleware b = {.name = "b", .before = mw_b, .after = after_b};
    sl_middleware none = {0};
    assert_int_equal(sl_mux_use(mux, &none), SL_EINVAL);
    assert_int_equal(sl_mux_use(mux, &a), 0);
    assert_int_equal(sl_mux_use(mux, &b), 0);
    sl_route_opts in = {.mode = SL_ROUTE_INLINE};
    assert_int_equal(sl_mux_handle(mux, "GET /in", h_user, NULL, &in, NULL, 0), 0);
    assert_int_equal(sl_mux_handle(mux, "GET /pool", h_user, NULL, NULL, NULL, 0), 0);
    int port;
    sl_server *srv = start(mux, &port);
    tc_conn *c = cx(port);
    tc_resp r;
    const char *paths[] = {"/in", "/pool"};
    for (int i = 0; i < 2; i++) {
        tr.log[0] = '\0';
        char raw[128];
        snprintf(raw, sizeof raw, "GET %s HTTP/1.1\r\nHost: a\r\n\r\n", paths[i]);
        ask(c, raw, &r);
        assert_int_equal(r.status, 200);
        assert_string_equal(r.body, "hi alice");
        tc_resp_free(&r);
        /* After hooks run on the reactor once the response is queued: maybe just after the
         * client read it. */
        assert_true(SL_WAIT_UNTIL(tr_is("A>B>H<B<A200"), 2000));
        /* Short-circuit: the handler does not run; every before that ran gets its after. */
        tr.log[0] = '\0';
        snprintf(raw, sizeof raw, "GET %s HTTP/1.1\r\nHost: a\r\nX-Deny: 1\r\n\r\n", paths[i]);
        ask(c, raw, &r);
        assert_int_equal(r.status, 403);
        assert_string_equal(r.body, "{\"error\":\"denied \\\"by\\\" B\"}");
        tc_resp_free(&r);
        assert_true(SL_WAIT_UNTIL(tr_is("A>B><B<A403"), 2000));
    }
    /* Unmatched requests go through the chain too. */
    tr.log[0] = '\0';
    ask(c, "GET /zzz HTTP/1.1\r\nHost: a\r\n\r\n", &r);
    assert_int_equal(r.status, 404);
    tc_resp_free(&r);
    assert_true(SL_WAIT_UNTIL(tr_is("A>B><B<A404"), 2000));
    cx_free(c);
    sl_server_free(srv);
    sl_mux_free(mux);
}

/* ---- standard middleware ---- */

typedef struct lines {
    pthread_mutex_t mu;
    char buf[8192];
    int n;
} lines;

static void sink(void *arg, const char *line, size_t len)
{
    lines *l = arg;
    pthread_mutex_lock(&l->mu);
    size_t have = strlen(l->buf);
    if (have + len < sizeof l->buf) {
        memcpy(l->buf + have, line, len);
        l->buf[have + len] = '\0';
    }
    l->n++;
    pthread_mutex_unlock(&l->mu);
}

static int lines_n(lines *l)
{
    pthread_mutex_lock(&l->mu);
    int n = l->n;
    pthread_mutex_unlock(&l->mu);
    return n;
}

/* The value of key in a logfmt line ("key=value" or key="quoted"), into out. */
static bool field(const char *line, const char *key, char *out, size_t cap)
{
    char pat[64];
    snprintf(pat, sizeof pat, " %s=", key);
    const char *p = strstr(line, pat);
    if (!p) return false;
    p += strlen(pat);
    size_t k = 0;
    if (*p == '"') {
        for (p++; *p && *p != '"' && k + 1 < cap; p++)
            out[k++] = *p;
    } else {
        for (; *p && *p != ' ' && *p != '\n' && k + 1 < cap; p++)
            out[k++] = *p;
    }
    out[k] = '\0';
    return true;
}

static void h_rid(sl_req *req, sl_resp *resp, void *arg)
{
    (void)arg;
    const char *id = sl_req_request_id(req);
    sl_resp_printf(resp, "%s", id ? id : "none");
}

static void test_request_id_and_access_log(void **state)
{
    (void)state;
    static lines L = {.mu = PTHREAD_MUTEX_INITIALIZER};
    sl_logger *lg;
    sl_log_opts lo = {.sink = sink, .sink_arg = &L, .omit_time = true};
    assert_int_equal(sl_logger_new(&lo, &lg), 0);
    sl_mux *mux;
    assert_int_equal(sl_mux_new(NULL, &mux), 0);
    sl_middleware rid, alog;
    sl_mw_request_id(&rid);
    sl_mw_access_log(lg, &alog);
    assert_int_equal(sl_mux_use(mux, &rid), 0);
    assert_int_equal(sl_mux_use(mux, &alog), 0);
    sl_route_opts ro = {.name = "rid-route"};
    assert_int_equal(sl_mux_handle(mux, "GET /rid/{x}", h_rid, NULL, &ro, NULL, 0), 0);
    int port;
    sl_server *srv = start(mux, &port);
    tc_conn *c = cx(port);
    tc_resp r;
    char v[128];
    /* A valid incoming id is kept and echoed. */
    ask(c, "GET /rid/1?a=b HTTP/1.1\r\nHost: a\r\nX-Request-Id: abc-123.x\r\n\r\n", &r);
    assert_string_equal(r.body, "abc-123.x");
    assert_non_null(tc_find_hdr(r.head, "X-Request-Id", v, sizeof v));
    assert_string_equal(v, "abc-123.x");
    tc_resp_free(&r);
    assert_true(SL_WAIT_UNTIL(lines_n(&L) == 1, 2000));
    pthread_mutex_lock(&L.mu);
    char f[128];
    assert_true(field(L.buf, "msg", f, sizeof f));
    assert_string_equal(f, "request");
    assert_true(field(L.buf, "method", f, sizeof f));
    assert_string_equal(f, "GET");
    assert_true(field(L.buf, "path", f, sizeof f));
    assert_string_equal(f, "/rid/1");
    assert_true(field(L.buf, "route", f, sizeof f));
    assert_string_equal(f, "rid-route");
    assert_true(field(L.buf, "status", f, sizeof f));
    assert_string_equal(f, "200");
    assert_true(field(L.buf, "bytes", f, sizeof f));
    assert_string_equal(f, "9");
    assert_true(field(L.buf, "request_id", f, sizeof f));
    assert_string_equal(f, "abc-123.x");
    assert_true(field(L.buf, "remote", f, sizeof f));
    assert_true(strncmp(f, "127.0.0.1:", 10) == 0);
    assert_true(field(L.buf, "dur", f, sizeof f));
    L.buf[0] = '\0';
    pthread_mutex_unlock(&L.mu);
    /* Invalid (a space, too long) or absent ids are replaced by generated ones, all distinct. */
    char ids[3][64];
    const char *reqs[3] = {
        "GET /rid/2 HTTP/1.1\r\nHost: a\r\nX-Request-Id: bad id\r\n\r\n",
        "GET /rid/3 HTTP/1.1\r\nHost: a\r\nX-Request-Id: "
        "0123456789012345678901234567890123456789012345678901234567890123456789\r\n\r\n",
        "GET /rid/4 HTTP/1.1\r\nHost: a\r\n\r\n"};
    for (int i = 0; i < 3; i++) {
        ask(c, reqs[i], &r);
        assert_int_equal(strlen(r.body), 16);
        assert_non_null(tc_find_hdr(r.head, "X-Request-Id", v, sizeof v));
        assert_string_equal(v, r.body);
        strcpy(ids[i], r.body);
        tc_resp_free(&r);
    }
    assert_string_not_equal(ids[0], ids[1]);
    assert_string_not_equal(ids[1], ids[2]);
    /* Unmatched: logged with route "-". */
    ask(c, "GET /missing HTTP/1.1\r\nHost: a\r\n\r\n", &r);
    tc_resp_free(&r);
    assert_true(SL_WAIT_UNTIL(lines_n(&L) == 5, 2000));
    pthread_mutex_lock(&L.mu);
    const char *last = strstr(L.buf, "path=/missing");
    assert_non_null(last);
    assert_true(field(last - 1, "route", f, sizeof f));
    assert_string_equal(f, "-");
    assert_true(field(last - 1, "status", f, sizeof f));
    assert_string_equal(f, "404");
    pthread_mutex_unlock(&L.mu);
    cx_free(c);
    sl_server_free(srv);
    sl_mux_free(mux);
    sl_logger_free(lg);
}

/* ---- the request API ---- */

static void h_api(sl_req *req, sl_resp *resp, void *arg)
{
    (void)arg;
    size_t n;
    const char *q = sl_req_query_value(req, "q", &n);
    const char *e = sl_req_query_value(req, "e", NULL);
    const char *bad = sl_req_query_value(req, "bad", NULL);
    int cnt = sl_req_query_count(req);
    const char *vals[4];
    size_t lens[4];
    size_t nv = sl_req_header_values(req, "x-multi", vals, lens, 4);
    /* A large arena allocation and many small ones: all freed at the end (ASan checks). */
    char *big = sl_req_alloc(req, 100000);
    assert_non_null(big);
    memset(big, 'x', 100000);
    for (int i = 0; i < 100; i++)
        assert_non_null(sl_req_alloc(req, 100));
    assert_null(sl_req_alloc(req, 0));
    const char *nm, *vl;
    size_t nl, vll;
    assert_int_equal(sl_req_query_at(req, 0, &nm, &nl, &vl, &vll), 0);
    assert_int_equal(sl_req_query_at(req, 99, &nm, &nl, &vl, &vll), SL_ERANGE);
    sl_resp_set_header(resp, "X-A", "1");
    sl_resp_add_header(resp, "X-A", "2");
    sl_resp_set_header(resp, "X-A", "3"); /* replaces both */
    sl_resp_add_header(resp, "X-Gone", "x");
    assert_int_equal(sl_resp_del_header(resp, "x-gone"), 1);
    assert_int_equal(sl_resp_set_header(resp, "X-Bad", "a\r\nb"), SL_EINVAL);
    assert_false(sl_resp_written(resp));
    sl_resp_set_body_static(resp, "S:", 2);
    sl_resp_printf(resp, "q=[%.*s] e=[%s] bad=[%s] n=%d multi=%zu %.*s,%.*s", (int)n, q, e,
                   bad ? bad : "", cnt, nv, (int)lens[0], vals[0], (int)lens[1], vals[1]);
    assert_true(sl_resp_written(resp));
}

static void test_request_api(void **state)
{
    (void)state;
    sl_mux *mux;
    assert_int_equal(sl_mux_new(NULL, &mux), 0);
    assert_int_equal(sl_mux_handle(mux, "GET /api", h_api, NULL, NULL, NULL, 0), 0);
    int port;
    sl_server *srv = start(mux, &port);
    tc_conn *c = cx(port);
    tc_resp r;
    ask(c,
        "GET /api?q=hello+w%C3%B6rld%21&e=&&q=second&bad=%zz%4 HTTP/1.1\r\nHost: a\r\n"
        "X-Multi: one\r\nOther: z\r\nx-multi: two, three\r\n\r\n",
        &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body,
                        "S:q=[hello w\xc3\xb6rld!] e=[] bad=[%zz%4] n=4 multi=2 one,two, three");
    char v[64];
    assert_non_null(tc_find_hdr(r.head, "X-A", v, sizeof v));
    assert_string_equal(v, "3");
    assert_null(strstr(r.head, "X-A: 1"));
    assert_null(strstr(r.head, "X-Gone"));
    tc_resp_free(&r);
    cx_free(c);
    sl_server_free(srv);
    sl_mux_free(mux);
}

/* ---- route options: body limit, timeout ---- */

static void h_body(sl_req *req, sl_resp *resp, void *arg)
{
    (void)arg;
    size_t n;
    sl_req_body(req, &n);
    sl_resp_printf(resp, "%zu", n);
}

static atomic_int timeout_err;

static void h_slow(sl_req *req, sl_resp *resp, void *arg)
{
    (void)arg;
    sl_ctx *ctx = sl_req_ctx(req);
    int rc = sl_ctx_wait(ctx); /* until the route deadline */
    atomic_store(&timeout_err, rc);
    sl_resp_set_body_static(resp, "late", 4); /* discarded: the 503 went out */
}

static void test_route_options(void **state)
{
    (void)state;
    sl_mux *mux;
    assert_int_equal(sl_mux_new(NULL, &mux), 0);
    sl_route_opts small = {.max_body_bytes = 10};
    assert_int_equal(sl_mux_handle(mux, "POST /small", h_body, NULL, &small, NULL, 0), 0);
    assert_int_equal(sl_mux_handle(mux, "POST /big", h_body, NULL, NULL, NULL, 0), 0);
    sl_route_opts slow = {.timeout_ns = SL_MS(150)};
    assert_int_equal(sl_mux_handle(mux, "GET /slow", h_slow, NULL, &slow, NULL, 0), 0);
    int port;
    sl_server *srv = start(mux, &port);
    tc_resp r;
    /* 413 from the head alone: the body is never sent. */
    tc_conn *c = cx(port);
    ask(c, "POST /small HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n", &r);
    assert_int_equal(r.status, 413);
    tc_resp_free(&r);
    cx_free(c);
    c = cx(port);
    ask(c, "POST /small HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n0123456789", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "10");
    tc_resp_free(&r);
    ask(c, "POST /big HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n01234567890", &r);
    assert_string_equal(r.body, "11");
    tc_resp_free(&r);
    /* Chunked: 413 once the decoded body passes the route's limit. */
    ask(c,
        "POST /small HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: "
        "chunked\r\n\r\nc\r\n0123456789ab\r\n0\r\n\r\n",
        &r);
    assert_int_equal(r.status, 413);
    tc_resp_free(&r);
    cx_free(c);
    /* Timeout: 503 at the deadline while the handler is still running; the handler saw
     * SL_ETIMEDOUT; the connection stays usable. */
    c = cx(port);
    int64_t t0 = sl_mono_ns();
    ask(c, "GET /slow HTTP/1.1\r\nHost: a\r\n\r\n", &r);
    int64_t took = sl_mono_ns() - t0;
    if (r.status != 503)
        fprintf(stderr, "got %d %s took %lld\n", r.status, r.body, (long long)took);
    assert_int_equal(r.status, 503);
    assert_string_equal(r.body, "{\"error\":\"handler timeout\"}");
    assert_true(took >= SL_MS(140));
    tc_resp_free(&r);
    assert_true(SL_WAIT_UNTIL(atomic_load(&timeout_err) == SL_ETIMEDOUT, 2000));
    ask(c, "POST /big HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\nx", &r);
    assert_int_equal(r.status, 200);
    tc_resp_free(&r);
    cx_free(c);
    sl_server_free(srv);
    sl_mux_free(mux);
}

/* ---- pipelining across inline and pooled routes ---- */

static void h_slowish(sl_req *req, sl_resp *resp, void *arg)
{
    (void)arg;
    /* Long enough that an inline response queued behind it would overtake a careless server. */
    sl_ctx_wait_for(sl_req_ctx(req), SL_MS(30));
    sl_resp_set_body_static(resp, "pooled", 6);
}

static void h_fast(sl_req *req, sl_resp *resp, void *arg)
{
    (void)req;
    (void)arg;
    sl_resp_set_body_static(resp, "inline", 6);
}

static void test_pipeline_order(void **state)
{
    (void)state;
    sl_mux *mux;
    assert_int_equal(sl_mux_new(NULL, &mux), 0);
    sl_route_opts in = {.mode = SL_ROUTE_INLINE};
    assert_int_equal(sl_mux_handle(mux, "GET /p", h_slowish, NULL, NULL, NULL, 0), 0);
    assert_int_equal(sl_mux_handle(mux, "GET /i", h_fast, NULL, &in, NULL, 0), 0);
    int port;
    sl_server *srv = start(mux, &port);
    tc_conn *c = cx(port);
    char raw[2048] = "";
    const char *order = "pipip";
    for (const char *o = order; *o; o++)
        strcat(raw, *o == 'p' ? "GET /p HTTP/1.1\r\nHost: a\r\n\r\n"
                              : "GET /i HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_true(tc_sends(c->fd, raw));
    for (const char *o = order; *o; o++) {
        tc_resp r;
        assert_int_equal(tc_read_response(c, &r), 0);
        assert_string_equal(r.body, *o == 'p' ? "pooled" : "inline");
        tc_resp_free(&r);
    }
    cx_free(c);
    sl_server_free(srv);
    sl_mux_free(mux);
}

/* ---- streaming ---- */

static void h_stream(sl_req *req, sl_resp *resp, void *arg)
{
    (void)req;
    (void)arg;
    sl_resp_set_content_type(resp, "text/plain");
    assert_int_equal(sl_resp_stream_begin(resp), 0);
    assert_int_equal(sl_resp_stream_begin(resp), SL_EINVAL);
    char buf[1000];
    memset(buf, 'z', sizeof buf);
    for (int i = 0; i < 600; i++) /* 600 KB: more than the high-water mark */
        if (sl_resp_stream_write(resp, buf, sizeof buf) < 0) return;
    sl_resp_stream_write(resp, "END", 3);
}

static void h_inline_stream(sl_req *req, sl_resp *resp, void *arg)
{
    (void)req;
    (void)arg;
    int rc = sl_resp_stream_begin(resp);
    sl_resp_printf(resp, "%d", rc);
}

/* Reads a chunked body; returns its length (and checks its last bytes) or -1. */
static long read_chunked(tc_conn *c, char *tail3)
{
    long total = 0;
    for (;;) {
        char *eol;
        while (!(eol = memmem(c->buf + c->pos, c->len - c->pos, "\r\n", 2)))
            if (tc_fill(c, 5000) <= 0) return -1;
        unsigned long n = strtoul(c->buf + c->pos, NULL, 16);
        c->pos = (size_t)(eol + 2 - c->buf);
        while (c->len - c->pos < n + 2)
            if (tc_fill(c, 5000) <= 0) return -1;
        if (n >= 3) memcpy(tail3, c->buf + c->pos + n - 3, 3);
        c->pos += n + 2;
        if (n == 0) return total;
        total += (long)n;
    }
}

static void test_streaming(void **state)
{
    (void)state;
    sl_mux *mux;
    assert_int_equal(sl_mux_new(NULL, &mux), 0);
    assert_int_equal(sl_mux_handle(mux, "GET /stream", h_stream, NULL, NULL, NULL, 0), 0);
    sl_route_opts in = {.mode = SL_ROUTE_INLINE};
    assert_int_equal(sl_mux_handle(mux, "GET /is", h_inline_stream, NULL, &in, NULL, 0), 0);
    int port;
    sl_server *srv = start(mux, &port);
    tc_conn *c = cx(port);
    assert_true(tc_sends(c->fd, "GET /stream HTTP/1.1\r\nHost: a\r\n\r\n"));
    char *end;
    while (!(end = memmem(c->buf + c->pos, c->len - c->pos, "\r\n\r\n", 4)))
        assert_true(tc_fill(c, 5000) > 0);
    assert_non_null(strstr(c->buf, "Transfer-Encoding: chunked"));
    assert_non_null(strstr(c->buf, "\r\nDate: ")); /* like every other response */
    assert_non_null(strstr(c->buf, " GMT\r\n"));
    assert_true(strncmp(c->buf, "HTTP/1.1 200 OK", 15) == 0);
    c->pos = (size_t)(end + 4 - c->buf);
    char tail[4] = "";
    assert_int_equal(read_chunked(c, tail), 600 * 1000 + 3);
    assert_memory_equal(tail, "END", 3);
    /* Keep-alive after a stream; an inline handler cannot stream. */
    tc_resp r;
    ask(c, "GET /is HTTP/1.1\r\nHost: a\r\n\r\n", &r);
    char want[16];
    snprintf(want, sizeof want, "%d", SL_EINVAL);
    assert_string_equal(r.body, want);
    tc_resp_free(&r);
    cx_free(c);
    sl_server_free(srv);
    sl_mux_free(mux);
}

static void h_stream_slow(sl_req *req, sl_resp *resp, void *arg)
{
    (void)arg;
    assert_int_equal(sl_resp_stream_begin(resp), 0);
    sl_resp_stream_write(resp, "first", 5);
    sl_ctx_wait(sl_req_ctx(req)); /* the route deadline */
}

/* A stream cut by its route deadline ends with a close, never with the terminating chunk
 * (the client must not take it for complete); no 503 replaces a committed response. */
static void test_stream_deadline(void **state)
{
    (void)state;
    sl_mux *mux;
    assert_int_equal(sl_mux_new(NULL, &mux), 0);
    sl_route_opts ro = {.timeout_ns = SL_MS(100)};
    assert_int_equal(sl_mux_handle(mux, "GET /ss", h_stream_slow, NULL, &ro, NULL, 0), 0);
    int port;
    sl_server *srv = start(mux, &port);
    tc_conn *c = cx(port);
    assert_true(tc_sends(c->fd, "GET /ss HTTP/1.1\r\nHost: a\r\n\r\n"));
    while (!c->eof && tc_fill(c, 3000) > 0) {
    }
    assert_true(c->eof);
    c->buf[c->len < sizeof c->buf ? c->len : sizeof c->buf - 1] = '\0';
    assert_true(strncmp(c->buf, "HTTP/1.1 200 OK", 15) == 0);
    assert_non_null(strstr(c->buf, "5\r\nfirst\r\n"));
    assert_null(strstr(c->buf, "0\r\n\r\n"));
    assert_null(strstr(c->buf, "503"));
    cx_free(c);
    sl_server_free(srv);
    sl_mux_free(mux);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_routing),
        cmocka_unit_test(test_middleware),
        cmocka_unit_test(test_request_id_and_access_log),
        cmocka_unit_test(test_request_api),
        cmocka_unit_test(test_route_options),
        cmocka_unit_test(test_pipeline_order),
        cmocka_unit_test(test_streaming),
        cmocka_unit_test(test_stream_deadline),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
