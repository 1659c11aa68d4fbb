/* Pooled handlers over real sockets:
 *  - a handler blocked on its request ctx sees SL_ECANCELED within 100 ms of its client
 *    closing the connection;
 *  - a saturated handler pool answers 503 with Retry-After at once, and serves the requests it
 *    accepted once the handlers return;
 *  - a bounded wrk load on a pooled route: no errors (TSan runs this too);
 *  - shutdown under pooled load finishes within its grace period with every response
 *    delivered; a handler that waits on its ctx past the grace period is cancelled; every
 *    reactor and handler thread is joined. */
#include "harness.h"
#include "http_client.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/wait.h>

#include "sluice/mux.h"

/* ---- client goes away ---- */

static atomic_int started, result;
static _Atomic int64_t returned_at;

static void h_block(sl_req *req, sl_resp *resp, void *arg)
{
    (void)resp;
    (void)arg;
    sl_ctx *ctx = sl_req_ctx(req);
    atomic_fetch_add(&started, 1);
    int rc = sl_ctx_wait(ctx);
    atomic_store(&returned_at, sl_mono_ns());
    atomic_store(&result, rc);
}

static void test_client_gone_cancels(void **state)
{
    (void)state;
    atomic_store(&started, 0);
    atomic_store(&result, 0);
    sl_mux *mux;
    assert_int_equal(sl_mux_new(NULL, &mux), 0);
    assert_int_equal(sl_mux_handle(mux, "GET /block", h_block, NULL,
                                   &(sl_route_opts){.mode = SL_ROUTE_POOLED}, NULL, 0),
                     0);
    sl_server_opts o = {.mux = mux, .reactors = 1};
    int port;
    sl_server *srv = tc_server_start(&o, &port);
    for (int round = 0; round < 2; round++) {
        int fd = tc_connect(port);
        assert_true(fd >= 0);
        assert_true(tc_sends(fd, "GET /block HTTP/1.1\r\nHost: a\r\n\r\n"));
        assert_true(SL_WAIT_UNTIL(atomic_load(&started) == round + 1, 5000));
        int64_t closed_at = sl_mono_ns();
        if (round == 0) {
            close(fd); /* FIN */
        } else {
            struct linger lg = {.l_onoff = 1, .l_linger = 0};
            setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
            close(fd); /* RST */
        }
        assert_true(SL_WAIT_UNTIL(atomic_load(&result) != 0, 2000));
        assert_int_equal(atomic_load(&result), SL_ECANCELED);
        int64_t lag = atomic_load(&returned_at) - closed_at;
        assert_true(lag < SL_MS(100));
        atomic_store(&result, 0);
        /* The connection is gone once the handler returned. */
        assert_true(SL_WAIT_UNTIL(tc_stat_conns(srv) == 0, 2000));
    }
    sl_server_free(srv);
    sl_mux_free(mux);
}

/* ---- saturation ---- */

static sl_ctx *gate;

static void h_gate(sl_req *req, sl_resp *resp, void *arg)
{
    (void)req;
    (void)arg;
    atomic_fetch_add(&started, 1);
    sl_ctx_wait(gate);
    sl_resp_set_body_static(resp, "done", 4);
}

static void test_saturated_503(void **state)
{
    (void)state;
    atomic_store(&started, 0);
    assert_int_equal(sl_ctx_with_cancel(NULL, &gate), 0);
    sl_mux *mux;
    sl_mux_opts mo = {.handler_workers = 1, .handler_queue = 2};
    assert_int_equal(sl_mux_new(&mo, &mux), 0);
    assert_int_equal(sl_mux_handle(mux, "GET /g", h_gate, NULL,
                                   &(sl_route_opts){.mode = SL_ROUTE_POOLED}, NULL, 0),
                     0);
    sl_server_opts o = {.mux = mux, .reactors = 1};
    int port;
    sl_server *srv = tc_server_start(&o, &port);
    tc_conn a, b, d, c;
    tc_init(&a, tc_connect(port));
    tc_init(&b, tc_connect(port));
    tc_init(&d, tc_connect(port));
    tc_init(&c, tc_connect(port));
    const char *req = "GET /g HTTP/1.1\r\nHost: a\r\n\r\n";
    assert_true(tc_sends(a.fd, req)); /* runs */
    assert_true(SL_WAIT_UNTIL(atomic_load(&started) == 1, 5000));
    assert_true(tc_sends(b.fd, req)); /* b and d wait in the queue (capacity 2) */
    assert_true(tc_sends(d.fd, req));
    assert_true(SL_WAIT_UNTIL(tc_stat_requests(srv) == 3, 5000));
    int64_t t0 = sl_mono_ns();
    assert_true(tc_sends(c.fd, req)); /* no room: 503 at once */
    tc_resp r;
    assert_int_equal(tc_read_response(&c, &r), 0);
    assert_true(sl_mono_ns() - t0 < SL_MS(500));
    assert_int_equal(r.status, 503);
    char v[32];
    assert_non_null(tc_find_hdr(r.head, "Retry-After", v, sizeof v));
    assert_true(atoi(v) >= 1);
    assert_string_equal(r.body, "{\"error\":\"server busy\"}");
    tc_resp_free(&r);
    assert_false(tc_readable(a.fd, 0));
    sl_ctx_cancel(gate);
    assert_int_equal(tc_read_response(&a, &r), 0);
    assert_string_equal(r.body, "done");
    tc_resp_free(&r);
    assert_int_equal(tc_read_response(&b, &r), 0);
    assert_string_equal(r.body, "done");
    tc_resp_free(&r);
    assert_int_equal(tc_read_response(&d, &r), 0);
    assert_string_equal(r.body, "done");
    tc_resp_free(&r);
    close(d.fd);
    close(a.fd);
    close(b.fd);
    close(c.fd);
    sl_server_free(srv);
    sl_mux_free(mux);
    sl_ctx_release(gate);
}

/* ---- wrk on a pooled route ---- */

static void h_hello(sl_req *req, sl_resp *resp, void *arg)
{
    (void)req;
    (void)arg;
    sl_resp_set_body_static(resp, "Hello, World!", 13);
}

static void test_wrk_pooled(void **state)
{
    (void)state;
    sl_mux *mux;
    sl_mux_opts mo = {.handler_workers = 4};
    assert_int_equal(sl_mux_new(&mo, &mux), 0);
    assert_int_equal(sl_mux_handle(mux, "GET /pooled", h_hello, NULL,
                                   &(sl_route_opts){.mode = SL_ROUTE_POOLED}, NULL, 0),
                     0);
    sl_middleware rid;
    sl_mw_request_id(&rid);
    assert_int_equal(sl_mux_use(mux, &rid), 0);
    sl_server_opts o = {.mux = mux, .reactors = 2};
    int port;
    sl_server *srv = tc_server_start(&o, &port);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/pooled", port);
    tc_run_wrk(url, 32);
    assert_true(SL_WAIT_UNTIL(tc_stat_conns(srv) == 0, 5000));
    assert_int_equal(sl_server_shutdown(srv, NULL), 0);
    sl_server_free(srv);
    sl_mux_free(mux);
}

/* ---- shutdown ---- */

typedef struct load {
    int port;
    atomic_bool stop;
    atomic_long responses, bad;
} load;

static void *client_main(void *arg)
{
    load *L = arg;
    tc_conn *c = malloc(sizeof *c);
    while (!atomic_load(&L->stop)) {
        int fd = tc_connect(L->port);
        if (fd < 0) break; /* listeners closed: shutdown began */
        tc_init(c, fd);
        tc_keepalive_run(c, "GET /work HTTP/1.1\r\nHost: a\r\n\r\n", "worked", &L->responses,
                         &L->bad);
        close(fd);
    }
    free(c);
    return NULL;
}

static void h_work(sl_req *req, sl_resp *resp, void *arg)
{
    (void)arg;
    sl_ctx_wait_for(sl_req_ctx(req), SL_MS(2)); /* "a DB call", cut short by cancellation */
    sl_resp_set_body_static(resp, "worked", 6);
}

static void test_shutdown_under_pooled_load(void **state)
{
    (void)state;
    sl_ctx *grace;
    assert_int_equal(sl_ctx_with_timeout(NULL, SL_SEC(10), &grace), 0);
    int threads = tc_thread_count();
    sl_mux *mux;
    sl_mux_opts mo = {.handler_workers = 4, .handler_queue = 64};
    assert_int_equal(sl_mux_new(&mo, &mux), 0);
    assert_int_equal(sl_mux_handle(mux, "GET /work", h_work, NULL,
                                   &(sl_route_opts){.mode = SL_ROUTE_POOLED}, NULL, 0),
                     0);
    sl_server_opts o = {.mux = mux, .reactors = 2};
    int port;
    sl_server *srv = tc_server_start(&o, &port);
    assert_true(tc_thread_count() > threads + 2);
    load L = {.port = port};
    enum { NC = 8 };
    pthread_t th[NC];
    for (int i = 0; i < NC; i++)
        assert_int_equal(pthread_create(&th[i], NULL, client_main, &L), 0);
    assert_true(SL_WAIT_UNTIL(atomic_load(&L.responses) >= 300, 20000));
    int64_t t0 = sl_mono_ns();
    assert_int_equal(sl_server_shutdown(srv, grace), 0);
    assert_true(sl_mono_ns() - t0 < SL_SEC(10));
    atomic_store(&L.stop, true);
    for (int i = 0; i < NC; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(tc_thread_count(), threads); /* reactors and handler threads joined */
    assert_int_equal(atomic_load(&L.bad), 0);
    assert_int_equal((long long)tc_stat_requests(srv), atomic_load(&L.responses));
    sl_server_free(srv);
    sl_mux_free(mux);
    sl_ctx_release(grace);
}

static void test_shutdown_cancels_past_grace(void **state)
{
    (void)state;
    atomic_store(&started, 0);
    atomic_store(&result, 0);
    sl_mux *mux;
    assert_int_equal(sl_mux_new(NULL, &mux), 0);
    assert_int_equal(sl_mux_handle(mux, "GET /block", h_block, NULL,
                                   &(sl_route_opts){.mode = SL_ROUTE_POOLED}, NULL, 0),
                     0);
    sl_server_opts o = {.mux = mux, .reactors = 1};
    int port;
    sl_server *srv = tc_server_start(&o, &port);
    tc_conn c;
    tc_init(&c, tc_connect(port));
    assert_true(tc_sends(c.fd, "GET /block HTTP/1.1\r\nHost: a\r\n\r\n"));
    assert_true(SL_WAIT_UNTIL(atomic_load(&started) == 1, 5000));
    sl_ctx *grace;
    assert_int_equal(sl_ctx_with_timeout(NULL, SL_MS(200), &grace), 0);
    int64_t t0 = sl_mono_ns();
    assert_int_equal(sl_server_shutdown(srv, grace), SL_ETIMEDOUT);
    int64_t took = sl_mono_ns() - t0;
    assert_true(took >= SL_MS(190) && took < SL_SEC(2));
    assert_int_equal(atomic_load(&result), SL_ESHUTDOWN);
    /* The handler returned after its ctx was cancelled; its (empty) answer may or may not have
     * been sent before the connection closed, but the connection is closed. */
    while (tc_fill(&c, 2000) > 0)
        c.pos = c.len;
    assert_true(c.eof);
    close(c.fd);
    sl_ctx_release(grace);
    sl_server_free(srv);
    sl_mux_free(mux);
}

static void test_lifecycle_errors(void **state)
{
    (void)state;
    sl_mux *mux;
    assert_int_equal(sl_mux_new(NULL, &mux), 0);
    sl_server_opts both = {.mux = mux, .handler = h_hello};
    sl_server *srv;
    assert_int_equal(sl_server_new(&both, &srv), SL_EINVAL);
    sl_server_opts neither = {0};
    assert_int_equal(sl_server_new(&neither, &srv), SL_EINVAL);
    sl_server_opts o = {.mux = mux, .reactors = 1};
    assert_int_equal(sl_server_new(&o, &srv), 0);
    sl_server *srv2;
    assert_int_equal(sl_server_new(&o, &srv2), SL_EBUSY); /* one live server per mux */
    sl_server_free(srv);                                  /* never served */
    assert_int_equal(sl_server_new(&o, &srv2), 0);
    sl_server_free(srv2);
    sl_mux_opts bad = {.handler_workers = -1};
    sl_mux *m2 = NULL;
    assert_int_equal(sl_mux_new(&bad, &m2), SL_EINVAL);
    assert_null(m2);
    sl_mux_free(mux);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_client_gone_cancels),
        cmocka_unit_test(test_saturated_503),
        cmocka_unit_test(test_wrk_pooled),
        cmocka_unit_test(test_shutdown_under_pooled_load),
        cmocka_unit_test(test_shutdown_cancels_past_grace),
        cmocka_unit_test(test_lifecycle_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
