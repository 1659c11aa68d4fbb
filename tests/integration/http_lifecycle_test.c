/* Connection limits and graceful shutdown over real sockets:
 *  - max_connections: at the bound the server stops accepting (the next client waits in the
 *    backlog, unanswered) and resumes when a connection closes;
 *  - shutdown closes idle keep-alive connections at once, lets a request in flight finish
 *    (its response says Connection: close), and returns 0; a request that never completes is
 *    cut when the ctx fires and shutdown returns the ctx's error;
 *  - shutdown during load: every response the server produced reached its client (server and
 *    clients count the same), no response is truncated, every thread is joined;
 *  - a bounded wrk smoke run: no socket errors, no non-2xx. */
#include "harness.h"
#include "http_client.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/wait.h>

static void handler(sl_req *req, sl_resp *resp, void *arg)
{
    (void)arg;
    size_t n;
    const void *b = sl_req_body(req, &n);
    if (n)
        sl_resp_set_body(resp, b, n);
    else
        sl_resp_set_body_static(resp, "Hello, World!", 13);
}

static void roundtrip(tc_conn *c)
{
    assert_true(tc_sends(c->fd, "GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
    tc_resp r;
    assert_int_equal(tc_read_response(c, &r), 0);
    assert_int_equal(r.status, 200);
    tc_resp_free(&r);
}

static void test_max_connections(void **state)
{
    (void)state;
    int port;
    sl_server_opts o = {.handler = handler, .reactors = 2, .max_connections = 4};
    sl_server *srv = tc_server_start(&o, &port);
    tc_conn *c[5];
    for (int i = 0; i < 4; i++) {
        c[i] = tc_conn_new(port);
        roundtrip(c[i]);
        /* Busy (a request under way), so not an idle keep-alive connection to reclaim. */
        assert_true(tc_sends(c[i]->fd, "GET / HTTP/1.1\r\n"));
    }
    assert_int_equal(tc_stat_conns(srv), 4);
    /* The fifth connects (kernel backlog) but is not accepted: no answer. */
    c[4] = tc_conn_new(port);
    assert_true(tc_sends(c[4]->fd, "GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
    assert_false(tc_readable(c[4]->fd, 300));
    assert_int_equal(tc_stat_conns(srv), 4);
    sl_server_stats st;
    sl_server_stats_get(srv, &st);
    assert_true(st.accept_pauses >= 1);
    /* Below the bound again: the waiting client is accepted and answered. */
    tc_conn_free(c[0]);
    tc_resp r;
    assert_int_equal(tc_read_response(c[4], &r), 0);
    assert_int_equal(r.status, 200);
    tc_resp_free(&r);
    assert_int_equal(tc_stat_conns(srv), 4);
    for (int i = 1; i < 5; i++)
        tc_conn_free(c[i]);
    assert_true(SL_WAIT_UNTIL(tc_stat_conns(srv) == 0, 5000));
    sl_server_stats_get(srv, &st);
    assert_int_equal(st.accepted, 5);
    assert_int_equal(sl_server_shutdown(srv, NULL), 0);
    sl_server_free(srv);
}

/* At max_connections, idle keep-alive connections make room for new clients (issue 13): the
 * newcomer is answered at once, not after the idle timeout; the oldest idle one is closed. */
static void test_max_connections_reclaims_idle(void **state)
{
    (void)state;
    int port;
    sl_server_opts o = {.handler = handler, .reactors = 1, .max_connections = 3};
    sl_server *srv = tc_server_start(&o, &port);
    tc_conn *c[4];
    for (int i = 0; i < 3; i++) {
        c[i] = tc_conn_new(port);
        roundtrip(c[i]); /* then idle, keep-alive */
    }
    assert_int_equal(tc_stat_conns(srv), 3);
    c[3] = tc_conn_new(port);
    int64_t t0 = sl_mono_ns();
    roundtrip(c[3]);
    assert_true(sl_mono_ns() - t0 < SL_SEC(2));
    assert_true(tc_wait_eof(c[0], 2000)); /* the oldest idle one made room */
    assert_true(tc_stat_conns(srv) <= 3);
    roundtrip(c[2]); /* the others are untouched */
    for (int i = 0; i < 4; i++)
        tc_conn_free(c[i]);
    assert_int_equal(sl_server_shutdown(srv, NULL), 0);
    sl_server_free(srv);
}

/* Many clients against a tiny bound on several reactors: the bound holds at every moment,
 * and pausing/resuming never strands a client (every request completes). */
static sl_server *_Atomic g_bound_srv;
static atomic_int g_over;

static void bound_handler(sl_req *req, sl_resp *resp, void *arg)
{
    (void)req;
    (void)arg;
    sl_server_stats st;
    sl_server_stats_get(atomic_load(&g_bound_srv), &st);
    if (st.connections > 3) atomic_fetch_add(&g_over, 1);
    sl_resp_set_body_static(resp, "ok", 2);
}

static atomic_int g_bound_done;
static int g_bound_port;

static void *bound_client(void *p)
{
    (void)p;
    tc_conn *c = malloc(sizeof *c);
    for (int i = 0; i < 25; i++) {
        int fd = tc_connect(g_bound_port);
        if (fd < 0) break;
        tc_init(c, fd);
        tc_resp r;
        if (tc_sends(fd, "GET / HTTP/1.1\r\nHost: a\r\n\r\n") && tc_read_response(c, &r) == 0) {
            if (r.status == 200) atomic_fetch_add(&g_bound_done, 1);
            tc_resp_free(&r);
        }
        close(fd);
    }
    free(c);
    return NULL;
}

static void test_max_connections_concurrent(void **state)
{
    (void)state;
    sl_server_opts o = {.handler = bound_handler, .reactors = 3, .max_connections = 3};
    sl_server *srv = tc_server_start(&o, &g_bound_port);
    atomic_store(&g_bound_srv, srv);
    enum { NC = 12 };
    pthread_t th[NC];
    for (int i = 0; i < NC; i++)
        assert_int_equal(pthread_create(&th[i], NULL, bound_client, NULL), 0);
    for (int i = 0; i < NC; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(atomic_load(&g_bound_done), NC * 25);
    assert_int_equal(atomic_load(&g_over), 0);
    sl_server_stats st;
    sl_server_stats_get(srv, &st);
    assert_true(st.accept_pauses > 0);
    assert_int_equal(sl_server_shutdown(srv, NULL), 0);
    sl_server_free(srv);
}

typedef struct shut_arg {
    sl_server *srv;
    sl_ctx *ctx;
    atomic_int rc;
    atomic_bool done;
} shut_arg;

static void *shut_main(void *p)
{
    shut_arg *a = p;
    atomic_store(&a->rc, sl_server_shutdown(a->srv, a->ctx));
    atomic_store(&a->done, true);
    return NULL;
}

static void test_shutdown_idle_and_inflight(void **state)
{
    (void)state;
    int port;
    sl_server_opts o = {.handler = handler, .reactors = 2};
    sl_server *srv = tc_server_start(&o, &port);
    tc_conn *idle = tc_conn_new(port);
    roundtrip(idle);
    tc_conn *busy = tc_conn_new(port);
    assert_true(
        tc_sends(busy->fd, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n01234"));
    assert_true(SL_WAIT_UNTIL(tc_stat_conns(srv) == 2, 3000));
    shut_arg a = {.srv = srv};
    assert_int_equal(sl_ctx_with_timeout(NULL, SL_SEC(10), &a.ctx), 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, shut_main, &a), 0);
    /* Idle: closed at once. New connections: refused. */
    assert_true(tc_wait_eof(idle, 3000));
    assert_true(SL_WAIT_UNTIL(tc_connect(port) < 0, 3000));
    /* In flight: still served, then closed. Shutdown waits for it. */
    assert_false(atomic_load(&a.done));
    assert_true(tc_sends(busy->fd, "56789"));
    tc_resp r;
    assert_int_equal(tc_read_response(busy, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "0123456789");
    char v[32];
    assert_string_equal(tc_find_hdr(r.head, "Connection", v, sizeof v), "close");
    tc_resp_free(&r);
    assert_true(tc_wait_eof(busy, 3000));
    pthread_join(th, NULL);
    assert_int_equal(atomic_load(&a.rc), 0);
    sl_ctx_release(a.ctx);
    tc_conn_free(idle);
    tc_conn_free(busy);
    sl_server_free(srv);
}

static void test_shutdown_deadline(void **state)
{
    (void)state;
    int port;
    sl_server_opts o = {.handler = handler, .reactors = 1};
    sl_server *srv = tc_server_start(&o, &port);
    tc_conn *busy = tc_conn_new(port);
    assert_true(tc_sends(busy->fd, "GET / HTTP/1.1\r\nHost: a\r\n")); /* never finished */
    assert_true(SL_WAIT_UNTIL(tc_stat_conns(srv) == 1, 3000));
    sl_ctx *ctx;
    assert_int_equal(sl_ctx_with_timeout(NULL, SL_MS(200), &ctx), 0);
    int64_t t0 = sl_mono_ns();
    assert_int_equal(sl_server_shutdown(srv, ctx), SL_ETIMEDOUT);
    int64_t ms = (sl_mono_ns() - t0) / SL_MS(1);
    assert_true(ms >= 150 && ms < 5000);
    assert_true(tc_wait_eof(busy, 3000));
    assert_int_equal(tc_stat_conns(srv), 0);
    sl_ctx_release(ctx);
    tc_conn_free(busy);
    sl_server_free(srv);
}

/* sl_server_run: serves until its ctx is cancelled, then shuts down gracefully. */
typedef struct run_arg {
    sl_server *srv;
    sl_ctx *ctx;
    atomic_int rc;
} run_arg;

static void *run_main(void *p)
{
    run_arg *a = p;
    atomic_store(&a->rc, sl_server_run(a->srv, a->ctx));
    return NULL;
}

static void test_run_until_ctx(void **state)
{
    (void)state;
    sl_server_opts o = {.handler = handler, .reactors = 1, .shutdown_timeout_ns = SL_SEC(5)};
    sl_server *srv;
    assert_int_equal(sl_server_new(&o, &srv), 0);
    assert_int_equal(sl_server_run(srv, NULL), SL_EINVAL);
    int port = sl_server_listen(srv, "127.0.0.1", 0);
    assert_true(port > 0);
    run_arg a = {.srv = srv, .rc = 1};
    assert_int_equal(sl_ctx_with_cancel(NULL, &a.ctx), 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, run_main, &a), 0);
    assert_true(
        SL_WAIT_UNTIL(tc_get_status(port, "GET / HTTP/1.1\r\nHost: a\r\n\r\n") == 200, 5000));
    sl_ctx_cancel(a.ctx);
    pthread_join(th, NULL);
    assert_int_equal(atomic_load(&a.rc), 0);
    assert_true(tc_connect(port) < 0); /* no longer listening */
    sl_ctx_release(a.ctx);
    sl_server_free(srv);
}

/* ---- shutdown under load ---- */

typedef struct load {
    int port;
    atomic_bool stop;
    atomic_long responses; /* complete responses received by every client */
    atomic_long truncated; /* a response cut in the middle: must stay 0 */
} load;

static void *client_main(void *p)
{
    load *L = p;
    tc_conn *c = malloc(sizeof *c);
    static const char req[] = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello";
    while (!atomic_load(&L->stop)) {
        int fd = tc_connect(L->port);
        if (fd < 0) break; /* listeners closed: the server is shutting down */
        tc_init(c, fd);
        tc_keepalive_run(c, req, "hello", &L->responses, &L->truncated);
        close(fd);
    }
    free(c);
    return NULL;
}

static void test_shutdown_under_load(void **state)
{
    (void)state;
    int port;
    sl_ctx *ctx; /* created first: the ctx timer thread is not the server's */
    assert_int_equal(sl_ctx_with_timeout(NULL, SL_SEC(20), &ctx), 0);
    int threads = tc_thread_count();
    assert_true(threads > 0);
    sl_server_opts o = {.handler = handler, .reactors = 3};
    sl_server *srv = tc_server_start(&o, &port);
    /* A private runtime of 3 loops: 3 loop threads, its watchdog and its 4 offload threads */
    assert_int_equal(tc_thread_count(), threads + 3 + 1 + 4);
    load L = {.port = port};
    enum { NC = 8 };
    pthread_t th[NC];
    for (int i = 0; i < NC; i++)
        assert_int_equal(pthread_create(&th[i], NULL, client_main, &L), 0);
    assert_true(SL_WAIT_UNTIL(atomic_load(&L.responses) >= 2000, 20000));
    assert_int_equal(sl_server_shutdown(srv, ctx), 0);
    sl_ctx_release(ctx);
    atomic_store(&L.stop, true);
    for (int i = 0; i < NC; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(tc_thread_count(), threads); /* every loop thread joined */
    assert_int_equal(atomic_load(&L.truncated), 0);
    /* Every response the server produced reached a client. */
    assert_int_equal((long long)tc_stat_requests(srv), atomic_load(&L.responses));
    sl_server_free(srv);
}

/* ---- wrk smoke ---- */

static void test_wrk_smoke(void **state)
{
    (void)state;
    int port;
    sl_server_opts o = {.handler = handler, .reactors = 2};
    sl_server *srv = tc_server_start(&o, &port);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", port);
    long long reqs = tc_run_wrk(url, 16);
    assert_true(tc_stat_requests(srv) >= (uint64_t)reqs);
    assert_true(SL_WAIT_UNTIL(tc_stat_conns(srv) == 0, 5000));
    assert_int_equal(sl_server_shutdown(srv, NULL), 0);
    sl_server_free(srv);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_max_connections),
        cmocka_unit_test(test_max_connections_reclaims_idle),
        cmocka_unit_test(test_max_connections_concurrent),
        cmocka_unit_test(test_shutdown_idle_and_inflight),
        cmocka_unit_test(test_shutdown_deadline),
        cmocka_unit_test(test_shutdown_under_load),
        cmocka_unit_test(test_run_until_ctx),
        cmocka_unit_test(test_wrk_smoke),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
