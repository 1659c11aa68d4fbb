/* sl_client against real local servers: a sluice sl_server for the happy paths (methods,
 * headers, bodies, keep-alive reuse counted by the server's accepts, the per-host limit seen
 * as the server's open connections, redirects, size caps, TLS refused) and a raw-socket fault
 * server (a thread with accept()) for what a well-behaved server never does: stall before the
 * headers, stall mid-body, send an endless body. The fault server records what it saw — the
 * request arriving, the client closing — so cancellation is proven on the wire. */
#include "harness.h"
#include "http_client.h"

#include <pthread.h>
#include <stdatomic.h>

#define BIG (1 << 20)
static char g_big[BIG];

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
    if (path_is(req, "/echo")) {
        const char *m = sl_req_method(req, &n);
        char method[16];
        snprintf(method, sizeof method, "%.*s", (int)n, m);
        sl_resp_add_header(resp, "X-Method", method);
        const char *h = sl_req_header(req, "X-Test", &n);
        if (h) {
            char v[64];
            snprintf(v, sizeof v, "%.*s", (int)n, h);
            sl_resp_add_header(resp, "X-Test-Seen", v);
        }
        const void *b = sl_req_body(req, &n);
        sl_resp_set_body(resp, b, n);
    } else if (path_is(req, "/big")) {
        sl_resp_set_body_static(resp, g_big, BIG);
    } else if (path_is(req, "/close")) {
        sl_resp_add_header(resp, "Connection", "close");
        sl_resp_set_body_static(resp, "bye", 3);
    } else if (path_is(req, "/500")) {
        sl_resp_error(resp, 500, "boom");
    } else if (path_is(req, "/redirect")) {
        sl_resp_set_status(resp, 302);
        sl_resp_add_header(resp, "Location", "/echo");
    } else {
        sl_resp_set_body_static(resp, "hello", 5);
    }
}

static sl_server *start_server(int *port)
{
    sl_server_opts o = {.handler = handler, .reactors = 2};
    return tc_server_start(&o, port);
}

static uint64_t stat_accepted(sl_server *srv)
{
    sl_server_stats st;
    sl_server_stats_get(srv, &st);
    return st.accepted;
}

static sl_client *client_new(const sl_client_opts *o)
{
    sl_client *c = NULL;
    assert_int_equal(sl_client_new(o, &c), 0);
    assert_non_null(c);
    return c;
}

static void url(char *buf, size_t cap, int port, const char *path)
{
    snprintf(buf, cap, "http://127.0.0.1:%d%s", port, path);
}

/* ---- the fault server --------------------------------------------------------------------- */

enum { F_STALL, F_PARTIAL, F_ENDLESS };

typedef struct fault {
    int lfd, port, mode;
    pthread_t thr;
    atomic_int accepts;
    atomic_int requests; /* request heads read */
    atomic_int closes;   /* connections the client closed (read() == 0 or reset) */
} fault;

/* Reads a request head; false if the client closed first (counted as a close) or 10 s
 * passed. */
static bool read_head(fault *f, int fd)
{
    char buf[4096];
    size_t len = 0;
    while (len < sizeof buf - 1) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 10000) <= 0) return false;
        ssize_t n = recv(fd, buf + len, sizeof buf - 1 - len, 0);
        if (n <= 0) {
            atomic_fetch_add(&f->closes, 1);
            return false;
        }
        len += (size_t)n;
        buf[len] = 0;
        if (strstr(buf, "\r\n\r\n")) return true;
    }
    return false;
}

/* Waits (10 s at most) for the client to close; true if it did. */
static bool wait_close(int fd)
{
    char buf[256];
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 10000) <= 0) return false;
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n <= 0) return true;
    }
}

static void serve_one(fault *f, int fd)
{
    if (!read_head(f, fd)) return;
    atomic_fetch_add(&f->requests, 1);
    if (f->mode == F_PARTIAL) {
        tc_sends(fd, "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n0123456789");
    } else if (f->mode == F_ENDLESS) {
        tc_sends(fd, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
        while (tc_send(fd, g_big, 64 * 1024)) {
        }
        atomic_fetch_add(&f->closes, 1);
        return;
    }
    if (wait_close(fd)) atomic_fetch_add(&f->closes, 1);
}

static void *fault_main(void *arg)
{
    fault *f = arg;
    for (;;) {
        int fd = accept(f->lfd, NULL, NULL);
        if (fd < 0) break; /* shutdown() on the listener ends the loop */
        atomic_fetch_add(&f->accepts, 1);
        serve_one(f, fd);
        close(fd);
    }
    return NULL;
}

static void fault_start(fault *f, int mode)
{
    memset(f, 0, sizeof *f);
    f->mode = mode;
    f->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(f->lfd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(f->lfd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(f->lfd, 16), 0);
    socklen_t sl = sizeof sa;
    getsockname(f->lfd, (struct sockaddr *)&sa, &sl);
    f->port = ntohs(sa.sin_port);
    assert_int_equal(pthread_create(&f->thr, NULL, fault_main, f), 0);
}

static void fault_stop(fault *f)
{
    shutdown(f->lfd, SHUT_RDWR);
    pthread_join(f->thr, NULL);
    close(f->lfd);
}

/* ---- happy paths -------------------------------------------------------------------------- */

/* Loopback is never proxied, whatever the environment says (as in Go). */
static void test_loopback_not_proxied(void **state)
{
    (void)state;
    int port;
    sl_server *srv = start_server(&port);
    /* curl reads http_proxy per transfer (set before the call, cleared after it: the client's
     * loop is idle then), and no_proxy once when the client is made. */
    setenv("no_proxy", "example.com", 1);
    setenv("http_proxy", "http://127.0.0.1:9", 1); /* nobody listens on the discard port */
    sl_client *c = client_new(NULL);
    char u[128];
    url(u, sizeof u, port, "/");
    sl_client_resp r;
    int rc = sl_client_get(c, u, &r, NULL);
    unsetenv("http_proxy");
    unsetenv("no_proxy");
    assert_int_equal(rc, 0);
    assert_int_equal(r.status, 200);
    sl_client_resp_destroy(&r);
    sl_client_free(c);
    sl_server_free(srv);
}

static void test_get_post_headers(void **state)
{
    (void)state;
    int port;
    sl_server *srv = start_server(&port);
    sl_client *c = client_new(NULL);
    char u[128];
    url(u, sizeof u, port, "/");
    sl_client_resp r;
    assert_int_equal(sl_client_get(c, u, &r, NULL), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, 5);
    assert_string_equal(r.body, "hello");
    size_t n;
    const char *cl = sl_client_resp_header(&r, "content-LENGTH", &n);
    assert_non_null(cl);
    assert_int_equal(n, 1);
    assert_memory_equal(cl, "5", 1);
    assert_null(sl_client_resp_header(&r, "X-Absent", NULL));
    assert_string_equal(r.errmsg, "");
    sl_client_resp_destroy(&r);

    url(u, sizeof u, port, "/echo");
    sl_client_header h[] = {{"X-Test", "abc"}};
    for (int i = 0; i < 2; i++) {
        const char *m = i ? "PUT" : NULL;
        sl_client_req q = {
            .method = m, .url = u, .headers = h, .nheaders = 1, .body = "payload", .body_len = 7};
        assert_int_equal(sl_client_do(c, &q, &r, NULL), 0);
        assert_int_equal(r.status, 200);
        assert_string_equal(r.body, "payload");
        const char *v = sl_client_resp_header(&r, "X-Method", &n);
        assert_memory_equal(v, i ? "PUT" : "POST", n);
        v = sl_client_resp_header(&r, "X-Test-Seen", &n);
        assert_non_null(v);
        assert_memory_equal(v, "abc", 3);
        sl_client_resp_destroy(&r);
    }
    /* A 500 is a response, not an error. */
    url(u, sizeof u, port, "/500");
    assert_int_equal(sl_client_get(c, u, &r, NULL), 0);
    assert_int_equal(r.status, 500);
    sl_client_resp_destroy(&r);
    sl_client_free(c);
    sl_server_free(srv);
}

/* Connections the server closes — after each response, or while idle in the client's cache —
 * are replaced: every request still succeeds, on a new connection. */
static void test_server_closes(void **state)
{
    (void)state;
    int port;
    sl_server_opts so = {.handler = handler, .reactors = 1, .idle_timeout_ns = SL_MS(50)};
    sl_server *srv = tc_server_start(&so, &port);
    sl_client *c = client_new(NULL);
    char u[128];
    url(u, sizeof u, port, "/close");
    for (int i = 0; i < 20; i++) {
        sl_client_resp r;
        assert_int_equal(sl_client_get(c, u, &r, NULL), 0);
        assert_int_equal(r.status, 200);
        assert_string_equal(r.body, "bye");
        assert_int_equal(r.new_conns, 1);
        sl_client_resp_destroy(&r);
    }
    url(u, sizeof u, port, "/");
    for (int i = 0; i < 3; i++) {
        sl_client_resp r;
        assert_int_equal(sl_client_get(c, u, &r, NULL), 0);
        assert_int_equal(r.status, 200);
        assert_int_equal(r.new_conns, 1);
        sl_client_resp_destroy(&r);
        /* The server's idle timeout closes the kept connection. */
        assert_true(SL_WAIT_UNTIL(tc_stat_conns(srv) == 0, 5000));
    }
    assert_int_equal(stat_accepted(srv), 23);
    sl_client_free(c);
    sl_server_free(srv);
}

static void test_keepalive_reuse(void **state)
{
    (void)state;
    int port;
    sl_server *srv = start_server(&port);
    sl_client *c = client_new(NULL);
    char u[128];
    url(u, sizeof u, port, "/");
    enum { N = 50 };
    for (int i = 0; i < N; i++) {
        sl_client_resp r;
        assert_int_equal(sl_client_get(c, u, &r, NULL), 0);
        assert_int_equal(r.status, 200);
        assert_int_equal(r.new_conns, i == 0 ? 1 : 0);
        sl_client_resp_destroy(&r);
    }
    assert_int_equal(stat_accepted(srv), 1);
    sl_client_stats st;
    sl_client_stats_get(c, &st);
    assert_int_equal(st.requests, N);
    assert_int_equal(st.conns_opened, 1);
    assert_int_equal(st.failed, 0);
    sl_client_free(c);
    sl_server_free(srv);
}

typedef struct par {
    sl_client *c;
    const char *url;
    atomic_int ok;
    atomic_int running;
} par;

static void *par_main(void *arg)
{
    par *p = arg;
    for (int i = 0; i < 40; i++) {
        sl_client_resp r;
        if (sl_client_get(p->c, p->url, &r, NULL) == 0 && r.status == 200 && r.body_len == BIG)
            atomic_fetch_add(&p->ok, 1);
        sl_client_resp_destroy(&r);
    }
    atomic_fetch_sub(&p->running, 1);
    return NULL;
}

/* K callers at once, limit L: the server never sees more than L connections. */
static void test_per_host_limit(void **state)
{
    (void)state;
    enum { K = 8, L = 2 };
    int port;
    sl_server *srv = start_server(&port);
    sl_client_opts o = {.max_conns_per_host = L};
    sl_client *c = client_new(&o);
    char u[128];
    url(u, sizeof u, port, "/big");
    par p = {.c = c, .url = u};
    atomic_init(&p.running, K);
    pthread_t th[K];
    for (int i = 0; i < K; i++)
        assert_int_equal(pthread_create(&th[i], NULL, par_main, &p), 0);
    int64_t peak = 0;
    while (atomic_load(&p.running) > 0) {
        int64_t now = tc_stat_conns(srv);
        if (now > peak) peak = now;
        sl_test_pause(0);
    }
    for (int i = 0; i < K; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(atomic_load(&p.ok), K * 40);
    assert_true(peak <= L);
    assert_true(stat_accepted(srv) <= L);
    sl_client_stats st;
    sl_client_stats_get(c, &st);
    assert_true(st.conns_opened <= L);
    sl_client_free(c);
    sl_server_free(srv);
}

static size_t g_streamed;
static int count_body(const void *data, size_t len, void *arg)
{
    (void)data;
    (void)arg;
    g_streamed += len;
    return 0;
}

static int g_nested_rc;
static int nested_call(const void *data, size_t len, void *arg)
{
    (void)data;
    (void)len;
    sl_client_resp r;
    g_nested_rc = sl_client_get(arg, "http://127.0.0.1:1/", &r, NULL);
    sl_client_resp_destroy(&r);
    return 0;
}

static int stop_body(const void *data, size_t len, void *arg)
{
    (void)data;
    (void)len;
    (void)arg;
    return SL_EFULL;
}

static void test_size_cap_and_stream(void **state)
{
    (void)state;
    int port;
    sl_server *srv = start_server(&port);
    sl_client_opts o = {.max_response_bytes = 64 * 1024};
    sl_client *c = client_new(&o);
    char u[128];
    url(u, sizeof u, port, "/big");
    sl_client_resp r;
    assert_int_equal(sl_client_get(c, u, &r, NULL), SL_ETOOLARGE);
    assert_null(r.body);
    assert_int_equal(r.body_len, 0);
    assert_true(r.errmsg[0] != 0);
    sl_client_resp_destroy(&r);

    sl_client_req q = {.url = u, .on_body = count_body};
    g_streamed = 0;
    assert_int_equal(sl_client_do(c, &q, &r, NULL), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(g_streamed, BIG);
    assert_null(r.body);
    sl_client_resp_destroy(&r);

    /* A call from the client's own loop would wait forever: refused. */
    q.on_body = nested_call;
    q.on_body_arg = c;
    assert_int_equal(sl_client_do(c, &q, &r, NULL), 0);
    assert_int_equal(g_nested_rc, SL_EDEADLK);
    sl_client_resp_destroy(&r);

    q.on_body = stop_body;
    assert_int_equal(sl_client_do(c, &q, &r, NULL), SL_EFULL);
    sl_client_resp_destroy(&r);

    /* A body with no length (close-delimited, endless) is cut at the cap too. */
    fault f;
    fault_start(&f, F_ENDLESS);
    url(u, sizeof u, f.port, "/");
    assert_int_equal(sl_client_get(c, u, &r, NULL), SL_ETOOLARGE);
    sl_client_resp_destroy(&r);
    assert_true(SL_WAIT_UNTIL(atomic_load(&f.closes) == 1, 5000));
    fault_stop(&f);
    sl_client_free(c);
    sl_server_free(srv);
}

static void test_redirects(void **state)
{
    (void)state;
    int port;
    sl_server *srv = start_server(&port);
    char u[128];
    url(u, sizeof u, port, "/redirect");
    sl_client *c = client_new(NULL);
    sl_client_resp r;
    assert_int_equal(sl_client_get(c, u, &r, NULL), 0);
    assert_int_equal(r.status, 302);
    sl_client_resp_destroy(&r);
    sl_client_free(c);
    sl_client_opts o = {.max_redirects = 3};
    c = client_new(&o);
    assert_int_equal(sl_client_get(c, u, &r, NULL), 0);
    assert_int_equal(r.status, 200);
    size_t n;
    assert_non_null(sl_client_resp_header(&r, "X-Method", &n));
    assert_null(sl_client_resp_header(&r, "Location", &n));
    sl_client_resp_destroy(&r);
    sl_client_free(c);
    sl_server_free(srv);
}

/* ---- failures ----------------------------------------------------------------------------- */

static void test_refused_dns_tls_args(void **state)
{
    (void)state;
    sl_client *c = client_new(NULL);
    char u[128];
    int free_port = sl_test_free_port();
    url(u, sizeof u, free_port, "/");
    sl_client_resp r;
    assert_int_equal(sl_client_get(c, u, &r, NULL), SL_ECONNREFUSED);
    assert_true(r.errmsg[0] != 0);
    assert_int_equal(r.status, 0);
    sl_client_resp_destroy(&r);

    assert_int_equal(sl_client_get(c, "http://no-such-host.invalid/", &r, NULL), SL_EDNS);
    assert_true(r.errmsg[0] != 0);
    sl_client_resp_destroy(&r);

    int port;
    sl_server *srv = start_server(&port);
    snprintf(u, sizeof u, "https://127.0.0.1:%d/", port);
    assert_int_equal(sl_client_get(c, u, &r, NULL), SL_ETLS);
    sl_client_resp_destroy(&r);
    sl_server_free(srv);

    assert_int_equal(sl_client_get(c, "ftp://127.0.0.1/", &r, NULL), SL_EINVAL);
    assert_int_equal(sl_client_get(c, "http://[::1", &r, NULL), SL_EINVAL);
    sl_client_header bad[] = {{"X-Evil", "a\r\nInjected: 1"}};
    sl_client_req q = {.url = "http://127.0.0.1:1/", .headers = bad, .nheaders = 1};
    assert_int_equal(sl_client_do(c, &q, &r, NULL), SL_EINVAL);
    sl_client_header bad2[] = {{"Bad Name", "x"}};
    q.headers = bad2;
    assert_int_equal(sl_client_do(c, &q, &r, NULL), SL_EINVAL);
    q = (sl_client_req){.url = "http://127.0.0.1:1/", .method = "GET X"};
    assert_int_equal(sl_client_do(c, &q, &r, NULL), SL_EINVAL);
    assert_int_equal(sl_client_do(NULL, &q, &r, NULL), SL_EINVAL);
    assert_int_equal(sl_client_do(c, NULL, &r, NULL), SL_EINVAL);
    sl_client_opts o = {.timeout_ns = -1};
    sl_client *c2 = NULL;
    assert_int_equal(sl_client_new(&o, &c2), SL_EINVAL);
    assert_null(c2);
    sl_client_stats st;
    sl_client_stats_get(c, &st);
    assert_true(st.failed >= 4);
    sl_client_free(c);
    sl_client_free(NULL);
}

/* TLS peers are verified: a self-signed server (openssl s_server) is refused with SL_ETLS,
 * and accepted once its certificate is given as the CA bundle. */
static void test_tls_verification(void **state)
{
    (void)state;
    char dir[] = "/tmp/sluice-client-tls.XXXXXX";
    assert_non_null(mkdtemp(dir));
    char cmd[1024], cert[128], key[128];
    snprintf(cert, sizeof cert, "%s/cert.pem", dir);
    snprintf(key, sizeof key, "%s/key.pem", dir);
    snprintf(cmd, sizeof cmd,
             "openssl req -x509 -newkey rsa:2048 -nodes -keyout %s -out %s -days 1 "
             "-subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 >/dev/null 2>&1",
             key, cert);
    assert_int_equal(system(cmd), 0);
    int port = sl_test_free_port();
    char accept[32];
    snprintf(accept, sizeof accept, "127.0.0.1:%d", port);
    char *argv[] = {"openssl", "s_server", "-accept", accept,   "-cert", cert,
                    "-key",    key,        "-www",    "-quiet", NULL};
    sl_test_proc srv;
    assert_int_equal(sl_test_proc_start(&srv, argv, true), 0);
    assert_true(sl_test_wait_port(port, 10000));
    char u[128];
    snprintf(u, sizeof u, "https://127.0.0.1:%d/", port);
    sl_client *c = client_new(NULL);
    sl_client_resp r;
    assert_int_equal(sl_client_get(c, u, &r, NULL), SL_ETLS);
    assert_true(r.errmsg[0] != 0);
    sl_client_resp_destroy(&r);
    sl_client_free(c);
    sl_client_opts o = {.ca_file = cert};
    c = client_new(&o);
    assert_int_equal(sl_client_get(c, u, &r, NULL), 0);
    assert_int_equal(r.status, 200);
    assert_true(r.body_len > 0);
    sl_client_resp_destroy(&r);
    sl_client_free(c);
    sl_test_proc_stop(&srv, SIGTERM, 5000);
    unlink(cert);
    unlink(key);
    rmdir(dir);
}

/* The server answers the headers and 10 bytes of a 100000-byte body, then stalls: the ctx's
 * deadline ends the call promptly and the server sees the connection close. */
static void test_deadline_mid_body(void **state)
{
    (void)state;
    fault f;
    fault_start(&f, F_PARTIAL);
    sl_client *c = client_new(NULL);
    char u[128];
    url(u, sizeof u, f.port, "/");
    sl_ctx *ctx;
    assert_int_equal(sl_ctx_with_timeout(NULL, SL_MS(200), &ctx), 0);
    int64_t t0 = sl_mono_ns();
    sl_client_resp r;
    assert_int_equal(sl_client_get(c, u, &r, ctx), SL_ETIMEDOUT);
    int64_t took = sl_mono_ns() - t0;
    assert_true(took >= SL_MS(150) && took < SL_SEC(3));
    assert_null(r.body);
    sl_client_resp_destroy(&r);
    assert_true(SL_WAIT_UNTIL(atomic_load(&f.closes) == 1, 5000));
    assert_int_equal(atomic_load(&f.requests), 1);
    sl_ctx_release(ctx);
    sl_client_free(c);
    fault_stop(&f);
}

typedef struct canceller {
    fault *f;
    sl_ctx *ctx;
} canceller;

static void *cancel_main(void *arg)
{
    canceller *k = arg;
    SL_WAIT_UNTIL(atomic_load(&k->f->requests) == 1, 5000);
    sl_ctx_cancel(k->ctx);
    return NULL;
}

/* The caller's client goes away (another thread cancels its ctx) while the upstream has not
 * answered: the upstream sees its connection close. */
static void test_cancel_closes_upstream(void **state)
{
    (void)state;
    fault f;
    fault_start(&f, F_STALL);
    sl_client *c = client_new(NULL);
    char u[128];
    url(u, sizeof u, f.port, "/slow");
    sl_ctx *ctx;
    assert_int_equal(sl_ctx_with_cancel(NULL, &ctx), 0);
    canceller k = {&f, ctx};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, cancel_main, &k), 0);
    sl_client_resp r;
    assert_int_equal(sl_client_get(c, u, &r, ctx), SL_ECANCELED);
    pthread_join(th, NULL);
    assert_int_equal(atomic_load(&f.requests), 1);
    assert_true(SL_WAIT_UNTIL(atomic_load(&f.closes) == 1, 5000));
    sl_client_resp_destroy(&r);
    /* A done ctx fails at once, before anything is sent. */
    assert_int_equal(sl_client_get(c, u, &r, ctx), SL_ECANCELED);
    assert_int_equal(atomic_load(&f.accepts), 1);
    sl_client_stats st;
    sl_client_stats_get(c, &st);
    assert_int_equal(st.requests, 1);
    sl_ctx_release(ctx);
    sl_client_free(c);
    fault_stop(&f);
}

typedef struct bg_call {
    sl_client *c;
    const char *url;
    sl_ctx *ctx;
    int rc;
} bg_call;

static void *bg_main(void *arg)
{
    bg_call *b = arg;
    sl_client_resp r;
    b->rc = sl_client_get(b->c, b->url, &r, b->ctx);
    sl_client_resp_destroy(&r);
    return NULL;
}

/* Limit 1 and the one connection stalled: a second request waits in the client's host queue,
 * its deadline ends the wait without a connection ever being opened for it. */
static void test_queued_request_deadline(void **state)
{
    (void)state;
    fault f;
    fault_start(&f, F_STALL);
    sl_client_opts o = {.max_conns_per_host = 1};
    sl_client *c = client_new(&o);
    char u[128];
    url(u, sizeof u, f.port, "/");
    bg_call b = {.c = c, .url = u};
    assert_int_equal(sl_ctx_with_cancel(NULL, &b.ctx), 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, bg_main, &b), 0);
    assert_true(SL_WAIT_UNTIL(atomic_load(&f.requests) == 1, 5000));
    sl_ctx *ctx;
    assert_int_equal(sl_ctx_with_timeout(NULL, SL_MS(100), &ctx), 0);
    sl_client_resp r;
    assert_int_equal(sl_client_get(c, u, &r, ctx), SL_ETIMEDOUT);
    sl_client_resp_destroy(&r);
    sl_ctx_release(ctx);
    assert_int_equal(atomic_load(&f.accepts), 1);
    sl_ctx_cancel(b.ctx);
    pthread_join(th, NULL);
    assert_int_equal(b.rc, SL_ECANCELED);
    sl_ctx_release(b.ctx);
    assert_true(SL_WAIT_UNTIL(atomic_load(&f.closes) == 1, 5000));
    sl_client_stats st;
    sl_client_stats_get(c, &st);
    assert_int_equal(st.conns_opened, 1);
    sl_client_free(c);
    fault_stop(&f);
}

/* Headers never come: the request timeout (client option, then per request) fires. */
static void test_slow_headers_timeout(void **state)
{
    (void)state;
    fault f;
    fault_start(&f, F_STALL);
    sl_client_opts o = {.timeout_ns = SL_MS(200)};
    sl_client *c = client_new(&o);
    char u[128];
    url(u, sizeof u, f.port, "/");
    sl_client_resp r;
    int64_t t0 = sl_mono_ns();
    assert_int_equal(sl_client_get(c, u, &r, NULL), SL_ETIMEDOUT);
    assert_true(sl_mono_ns() - t0 < SL_SEC(3));
    assert_true(r.errmsg[0] != 0);
    sl_client_resp_destroy(&r);
    sl_client_req q = {.url = u, .timeout_ns = SL_MS(100)};
    assert_int_equal(sl_client_do(c, &q, &r, NULL), SL_ETIMEDOUT);
    sl_client_resp_destroy(&r);
    assert_true(SL_WAIT_UNTIL(atomic_load(&f.closes) == 2, 5000));
    sl_client_free(c);
    fault_stop(&f);
}

typedef struct task_run {
    sl_client *c;
    const char *url;
    atomic_int ok, done;
} task_run;

static void task_main(void *arg)
{
    task_run *t = arg;
    for (int i = 0; i < 5; i++) {
        sl_ctx *ctx;
        if (sl_ctx_with_timeout(NULL, SL_SEC(10), &ctx) < 0) break;
        sl_client_resp r;
        if (sl_client_get(t->c, t->url, &r, ctx) == 0 && r.status == 200)
            atomic_fetch_add(&t->ok, 1);
        sl_client_resp_destroy(&r);
        sl_ctx_release(ctx);
    }
    atomic_fetch_add(&t->done, 1);
}

/* Callers that are tasks (sl_go) get their answers like threads do. */
static void test_task_callers(void **state)
{
    (void)state;
    enum { T = 8 };
    int port;
    sl_server *srv = start_server(&port);
    sl_client *c = client_new(NULL);
    char u[128];
    url(u, sizeof u, port, "/");
    sl_runtime_opts ro = {.loops = 2};
    sl_runtime *rt = NULL;
    assert_int_equal(sl_runtime_new(&ro, &rt), 0);
    task_run t = {.c = c, .url = u};
    sl_go_opts go = {.rt = rt, .name = "client-caller"};
    for (int i = 0; i < T; i++)
        assert_int_equal(sl_go_with(&go, task_main, &t), 0);
    assert_true(SL_WAIT_UNTIL(atomic_load(&t.done) == T, 20000));
    assert_int_equal(atomic_load(&t.ok), T * 5);
    assert_int_equal(sl_runtime_shutdown(rt, NULL), 0);
    sl_runtime_free(rt);
    sl_client_free(c);
    sl_server_free(srv);
}

/* A listener whose accept queue is full drops new SYNs, so a connect hangs: the connect
 * timeout (not the request's) ends it. */
static void test_connect_timeout(void **state)
{
    (void)state;
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(lfd, 0), 0);
    socklen_t sl = sizeof sa;
    getsockname(lfd, (struct sockaddr *)&sa, &sl);
    int fill[4];
    for (int i = 0; i < 4; i++) { /* non-blocking: the later ones stay in SYN_SENT */
        fill[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        connect(fill[i], (struct sockaddr *)&sa, sizeof sa);
    }
    sl_client_opts o = {.connect_timeout_ns = SL_MS(200), .timeout_ns = SL_SEC(20)};
    sl_client *c = client_new(&o);
    char u[128];
    url(u, sizeof u, ntohs(sa.sin_port), "/");
    sl_client_resp r;
    int64_t t0 = sl_mono_ns();
    assert_int_equal(sl_client_get(c, u, &r, NULL), SL_ETIMEDOUT);
    int64_t took = sl_mono_ns() - t0;
    assert_true(took >= SL_MS(150) && took < SL_SEC(5));
    sl_client_resp_destroy(&r);
    sl_client_free(c);
    for (int i = 0; i < 4; i++)
        close(fill[i]);
    close(lfd);
}

/* Freeing a client with kept connections closes them and joins its thread. */
static void test_free_joins(void **state)
{
    (void)state;
    int port;
    sl_server *srv = start_server(&port);
    int before = tc_thread_count();
    sl_client *c = client_new(NULL);
    char u[128];
    url(u, sizeof u, port, "/");
    sl_client_resp r;
    assert_int_equal(sl_client_get(c, u, &r, NULL), 0);
    sl_client_resp_destroy(&r);
    assert_int_equal(tc_stat_conns(srv), 1);
    sl_client_free(c);
    assert_true(SL_WAIT_UNTIL(tc_stat_conns(srv) == 0, 5000));
    assert_int_equal(tc_thread_count(), before);
    sl_server_free(srv);
}

int main(void)
{
    /* Hermetic: a proxy in the environment would answer for no-such-host.invalid. */
    const char *proxies[] = {"http_proxy", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"};
    for (size_t i = 0; i < sizeof proxies / sizeof proxies[0]; i++)
        unsetenv(proxies[i]);
    memset(g_big, 'x', sizeof g_big);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get_post_headers),
        cmocka_unit_test(test_loopback_not_proxied),
        cmocka_unit_test(test_keepalive_reuse),
        cmocka_unit_test(test_server_closes),
        cmocka_unit_test(test_per_host_limit),
        cmocka_unit_test(test_size_cap_and_stream),
        cmocka_unit_test(test_redirects),
        cmocka_unit_test(test_refused_dns_tls_args),
        cmocka_unit_test(test_tls_verification),
        cmocka_unit_test(test_deadline_mid_body),
        cmocka_unit_test(test_cancel_closes_upstream),
        cmocka_unit_test(test_slow_headers_timeout),
        cmocka_unit_test(test_queued_request_deadline),
        cmocka_unit_test(test_connect_timeout),
        cmocka_unit_test(test_task_callers),
        cmocka_unit_test(test_free_joins),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
