/* Task routes at scale, and the server on a task runtime's loops, over real sockets:
 *  - 8000 concurrent requests parked on a shared event in their task route, on ONE loop
 *    (reactors = 1): every one is running at once, then every one is answered 200;
 *  - shutdown with 3000 parked task requests finishes within its grace period: the parked
 *    handlers see their ctx cancelled (SL_ESHUTDOWN) and return, every client gets its
 *    response or a 503, none hangs;
 *  - two servers share one runtime's loops; the runtime refuses to shut down (SL_EBUSY)
 *    while a server uses it, and shuts down once the servers are freed;
 *  - a server with reactors = 0 serves on the default runtime.
 * The clients are non-blocking raw sockets driven by one epoll set (no thread per client). */
#include "harness.h"
#include "http_client.h"

#include <errno.h>
#include <stdatomic.h>
#include <sys/epoll.h>
#include <sys/resource.h>

#include "sluice/mux.h"
#include "sluice/task.h"

static atomic_int parked, cancelled;
static sl_ctx *event; /* what the parked handlers wait for */

static void cancel_it(void *arg, int err)
{
    (void)err;
    sl_ctx_cancel(arg);
}

static void h_event(sl_req *req, sl_resp *resp, void *arg)
{
    (void)arg;
    /* Parked until the shared event fires or the request's own ctx ends (client gone,
     * shutdown): a child of the request's ctx that the event also cancels. */
    sl_ctx *both;
    assert_int_equal(sl_ctx_with_cancel(sl_req_ctx(req), &both), 0);
    sl_ctx_hook *hook;
    assert_int_equal(sl_ctx_on_done(event, cancel_it, both, &hook), 0);
    atomic_fetch_add(&parked, 1);
    sl_ctx_wait(both);
    sl_ctx_hook_stop(hook);
    sl_ctx_release(both);
    if (sl_ctx_done(event) && !sl_ctx_done(sl_req_ctx(req))) {
        sl_resp_set_body_static(resp, "ok", 2);
        return;
    }
    atomic_fetch_add(&cancelled, 1);
    sl_resp_error(resp, 503, "cancelled");
}

/* Raises the descriptor limit to what n clients (and their server ends) need, or returns
 * false when the hard limit is too low. */
static bool fd_room(int n)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return false;
    rlim_t need = (rlim_t)n * 2 + 256;
    if (rl.rlim_cur >= need) return true;
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < need) return false;
    rl.rlim_cur = need;
    return setrlimit(RLIMIT_NOFILE, &rl) == 0;
}

typedef struct cli {
    int fd;
    int len;
    bool sent, done;
    int status; /* 0 until a complete response (or -1: closed without one) */
    char buf[512];
} cli;

/* Opens n non-blocking connections and sends req on each as it connects. At most `window`
 * connects are in progress at once (the listen backlog). Returns the clients. */
static cli *open_all(int port, int n, const char *req, int ep)
{
    cli *cs = calloc((size_t)n, sizeof *cs);
    assert_non_null(cs);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int opened = 0, sent = 0;
    struct epoll_event evs[256];
    int64_t dl = sl_mono_ns() + SL_SEC(60);
    while (sent < n && sl_mono_ns() < dl) {
        while (opened < n && opened - sent < 512) {
            cli *c = &cs[opened];
            c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
            assert_true(c->fd >= 0);
            int r = connect(c->fd, (struct sockaddr *)&a, sizeof a);
            assert_true(r == 0 || errno == EINPROGRESS);
            struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = c};
            assert_int_equal(epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev), 0);
            opened++;
        }
        int k = epoll_wait(ep, evs, 256, 100);
        for (int i = 0; i < k; i++) {
            cli *c = evs[i].data.ptr;
            if (c->sent) continue;
            int err = 0;
            socklen_t el = sizeof err;
            getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
            assert_int_equal(err, 0);
            ssize_t w = send(c->fd, req, strlen(req), MSG_NOSIGNAL);
            assert_int_equal(w, (ssize_t)strlen(req));
            c->sent = true;
            sent++;
            struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = c};
            assert_int_equal(epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev), 0);
        }
    }
    assert_int_equal(sent, n);
    return cs;
}

/* True once c holds a whole response (small bodies: Content-Length). */
static bool complete(cli *c)
{
    const char *e = strstr(c->buf, "\r\n\r\n");
    if (!e) return false;
    char v[32];
    size_t want = 0;
    if (tc_find_hdr(c->buf, "Content-Length", v, sizeof v)) want = (size_t)atol(v);
    return (size_t)c->len >= (size_t)(e + 4 - c->buf) + want;
}

/* Reads every client's response within ms; returns how many got `status`. A client whose
 * connection closes first counts as done with status -1. */
static int read_all(cli *cs, int n, int ep, int status, int ms)
{
    int done = 0, got = 0;
    struct epoll_event evs[256];
    int64_t dl = sl_mono_ns() + SL_MS(ms);
    while (done < n && sl_mono_ns() < dl) {
        int k = epoll_wait(ep, evs, 256, 100);
        for (int i = 0; i < k; i++) {
            cli *c = evs[i].data.ptr;
            if (c->done) continue;
            ssize_t r = recv(c->fd, c->buf + c->len, sizeof c->buf - 1 - (size_t)c->len, 0);
            if (r > 0) {
                c->len += (int)r;
                c->buf[c->len] = '\0';
                if (!complete(c)) continue;
                if (sscanf(c->buf, "HTTP/1.1 %d", &c->status) != 1) c->status = -1;
            } else if (r < 0 && (errno == EAGAIN || errno == EINTR)) {
                continue;
            } else {
                c->status = -1;
            }
            c->done = true;
            done++;
            if (c->status == status) got++;
            epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
        }
    }
    return got;
}

static void close_all(cli *cs, int n)
{
    for (int i = 0; i < n; i++)
        close(cs[i].fd);
    free(cs);
}

static sl_server *start(sl_mux **mux, sl_server_opts *o, int *port)
{
    sl_mux_opts mo = {.max_task_requests = 20000};
    assert_int_equal(sl_mux_new(&mo, mux), 0);
    /* A zeroed sl_route_opts: the default mode, a task route. */
    assert_int_equal(sl_mux_handle(*mux, "GET /park", h_event, NULL, NULL, NULL, 0), 0);
    o->mux = *mux;
    o->max_connections = 20000;
    o->max_conns_per_ip = 20000;
    return tc_server_start(o, port);
}

static const char REQ[] = "GET /park HTTP/1.1\r\nHost: a\r\n\r\n";

/* Under ThreadSanitizer every task stack gets its own TSan fiber, created once per stack slot
 * at a cost of a ~1 MB clear (src/task/sched.c): 8000 of them take over a minute there, so the
 * TSan build parks fewer (the same code paths; the count is what release and ASan prove). */
#ifdef SLUICE_TSAN
#define NPARK 1000
#define NSHUT 500
#else
#define NPARK 8000
#define NSHUT 3000
#endif

static void test_8000_parked_one_loop(void **state)
{
    (void)state;
    if (!fd_room(NPARK)) {
        print_message("SKIP: RLIMIT_NOFILE hard limit below %d descriptors\n", NPARK * 2 + 256);
        skip();
    }
    atomic_store(&parked, 0);
    atomic_store(&cancelled, 0);
    assert_int_equal(sl_ctx_with_cancel(NULL, &event), 0);
    sl_mux *mux;
    int port;
    sl_server_opts o = {.reactors = 1};
    sl_server *srv = start(&mux, &o, &port);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    assert_true(ep >= 0);
    cli *cs = open_all(port, NPARK, REQ, ep);
    /* All of them running at once on the one loop, each parked in its own task. */
    assert_true(SL_WAIT_UNTIL(atomic_load(&parked) == NPARK, 60000));
    sl_ctx_cancel(event);
    assert_int_equal(read_all(cs, NPARK, ep, 200, 60000), NPARK);
    assert_int_equal(atomic_load(&cancelled), 0);
    close_all(cs, NPARK);
    close(ep);
    sl_server_stats st;
    sl_server_stats_get(srv, &st);
    assert_int_equal(st.requests, NPARK);
    sl_server_free(srv);
    sl_mux_free(mux);
    sl_ctx_release(event);
}

static void test_shutdown_3000_parked(void **state)
{
    (void)state;
    if (!fd_room(NSHUT)) {
        print_message("SKIP: RLIMIT_NOFILE hard limit below %d descriptors\n", NSHUT * 2 + 256);
        skip();
    }
    atomic_store(&parked, 0);
    atomic_store(&cancelled, 0);
    assert_int_equal(sl_ctx_with_cancel(NULL, &event), 0);
    sl_mux *mux;
    int port;
    sl_server_opts o = {.reactors = 1};
    sl_server *srv = start(&mux, &o, &port);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    assert_true(ep >= 0);
    cli *cs = open_all(port, NSHUT, REQ, ep);
    assert_true(SL_WAIT_UNTIL(atomic_load(&parked) == NSHUT, 60000));
    sl_ctx *grace;
    assert_int_equal(sl_ctx_with_timeout(NULL, SL_MS(300), &grace), 0);
    int64_t t0 = sl_mono_ns();
    assert_int_equal(sl_server_shutdown(srv, grace), SL_ETIMEDOUT);
    /* The grace period, then the cancelled handlers return: bounded, not 3000 timeouts (the
     * sanitizer builds, on a loaded machine, take longer to cancel and answer them all). */
    int64_t took = sl_mono_ns() - t0;
    print_message("shutdown with %d parked: %.0f ms\n", NSHUT, (double)took / 1e6);
#if defined(SLUICE_ASAN) || defined(SLUICE_TSAN)
    assert_true(took < SL_MS(300) + SL_SEC(30));
#else
    assert_true(took < SL_MS(300) + SL_SEC(5));
#endif
    sl_ctx_release(grace);
    assert_int_equal(atomic_load(&cancelled), NSHUT);
    /* Every client got its 503 (none hangs: read_all is bounded and counts them). */
    assert_int_equal(read_all(cs, NSHUT, ep, 503, 20000), NSHUT);
    close_all(cs, NSHUT);
    close(ep);
    sl_server_free(srv);
    sl_mux_free(mux);
    sl_ctx_release(event);
}

static void h_hello(sl_req *req, sl_resp *resp, void *arg)
{
    (void)req;
    sl_resp_set_body_static(resp, arg, strlen(arg));
}

static sl_server *hello_server(sl_mux **mux, const char *body, sl_runtime *rt, int reactors,
                               int *port)
{
    assert_int_equal(sl_mux_new(NULL, mux), 0);
    assert_int_equal(sl_mux_handle(*mux, "GET /", h_hello, (void *)body, NULL, NULL, 0), 0);
    sl_server_opts o = {.mux = *mux, .runtime = rt, .reactors = reactors};
    return tc_server_start(&o, port);
}

static bool says(int port, const char *body)
{
    tc_conn *c = tc_conn_new(port);
    if (!c) return false;
    tc_resp r;
    bool ok = tc_sends(c->fd, "GET / HTTP/1.1\r\nHost: a\r\n\r\n") &&
              tc_read_response(c, &r) == 0 && r.status == 200 && strcmp(r.body, body) == 0;
    if (ok) tc_resp_free(&r);
    tc_conn_free(c);
    return ok;
}

static void test_servers_share_runtime(void **state)
{
    (void)state;
    sl_runtime_opts ro = {.loops = 2};
    sl_runtime *rt;
    assert_int_equal(sl_runtime_new(&ro, &rt), 0);
    sl_mux *m1, *m2;
    int p1, p2;
    sl_server *a = hello_server(&m1, "one", rt, 0, &p1);
    sl_server *b = hello_server(&m2, "two", rt, 2, &p2);
    for (int i = 0; i < 20; i++) {
        assert_true(says(p1, "one"));
        assert_true(says(p2, "two"));
    }
    /* A loop count that does not match the runtime's is refused. */
    sl_mux *m3;
    assert_int_equal(sl_mux_new(NULL, &m3), 0);
    assert_int_equal(sl_mux_handle(m3, "GET /", h_hello, "x", NULL, NULL, 0), 0);
    sl_server_opts bad = {.mux = m3, .runtime = rt, .reactors = 3};
    sl_server *c;
    assert_int_equal(sl_server_new(&bad, &c), SL_EINVAL);
    sl_mux_free(m3);
    /* Shutting one server down leaves the loops (and the other server) running. */
    assert_int_equal(sl_server_shutdown(a, NULL), 0);
    assert_true(says(p2, "two"));
    assert_true(tc_connect(p1) < 0);
    /* The runtime will not shut down under a server. */
    assert_int_equal(sl_runtime_shutdown(rt, NULL), SL_EBUSY);
    assert_true(says(p2, "two"));
    sl_runtime_free(rt); /* a wrong order: logged, nothing freed, the server goes on */
    assert_true(says(p2, "two"));
    sl_server_free(a);
    assert_int_equal(sl_runtime_shutdown(rt, NULL), SL_EBUSY);
    sl_server_free(b);
    assert_int_equal(sl_runtime_shutdown(rt, NULL), 0);
    sl_runtime_free(rt);
    sl_mux_free(m1);
    sl_mux_free(m2);
}

static void test_default_runtime(void **state)
{
    (void)state;
    sl_mux *mux;
    int port;
    sl_server *srv = hello_server(&mux, "default", NULL, 0, &port);
    assert_true(says(port, "default"));
    sl_server_stats st;
    sl_server_stats_get(srv, &st);
    assert_true(st.requests >= 1);
    sl_server_free(srv);
    sl_mux_free(mux);
    /* The default runtime goes on (another user may have tasks on it). */
    assert_non_null(sl_runtime_default());
    assert_int_equal(sl_go(NULL, NULL), SL_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_servers_share_runtime),
        cmocka_unit_test(test_default_runtime),
        cmocka_unit_test(test_shutdown_3000_parked),
        cmocka_unit_test(test_8000_parked_one_loop),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
