/* Never a success status for work that did not happen (issue 13), over real sockets:
 *  - at shutdown, pooled requests still queued when the grace period ends are answered 503
 *    with Retry-After and Connection: close (never 200 with an empty body), the after hooks
 *    see 503, and the running handler's ctx says SL_ESHUTDOWN (not SL_ECANCELED);
 *  - a client that half-closes after a complete request still gets its response, and the
 *    after hooks see the status that was sent;
 *  - a client that resets while its request waits in the queue: the hooks see 499, not 200. */
#include "harness.h"
#include "http_client.h"

#include <pthread.h>
#include <stdatomic.h>

#include "sluice/mux.h"

static atomic_int started, seen_err;
static sl_ctx *gate;

/* Records every status the after hooks see: [0] count, then statuses. */
static atomic_int hooked[16];

static void rec_after(sl_req *req, const sl_resp *resp, void *arg)
{
    (void)req;
    (void)arg;
    int i = atomic_fetch_add(&hooked[0], 1) + 1;
    if (i < 16) atomic_store(&hooked[i], sl_resp_status(resp));
}

static int hooked_count(int status)
{
    int n = 0, k = atomic_load(&hooked[0]);
    for (int i = 1; i <= k && i < 16; i++)
        n += atomic_load(&hooked[i]) == status;
    return n;
}

static void reset_state(void)
{
    atomic_store(&started, 0);
    atomic_store(&seen_err, 0);
    for (int i = 0; i < 16; i++)
        atomic_store(&hooked[i], 0);
}

/* Waits on its request ctx; records the cause. */
static void h_wait_ctx(sl_req *req, sl_resp *resp, void *arg)
{
    (void)arg;
    atomic_fetch_add(&started, 1);
    int rc = sl_ctx_wait(sl_req_ctx(req));
    atomic_store(&seen_err, rc);
    sl_resp_error(resp, rc == SL_ESHUTDOWN ? 503 : 499, sl_strerror(rc));
}

/* Work that ignores its ctx (a DB write): waits on the test's gate, then "creates". */
static void h_create(sl_req *req, sl_resp *resp, void *arg)
{
    (void)req;
    (void)arg;
    atomic_fetch_add(&started, 1);
    sl_ctx_wait(gate);
    sl_resp_set_status(resp, 201);
    sl_resp_set_body_static(resp, "created", 7);
}

/* Work that completes although its client half-closed: it waits until the server noticed (its
 * ctx is cancelled), then "creates" anyway, as a handler that does not poll its ctx would. */
static void h_create_late(sl_req *req, sl_resp *resp, void *arg)
{
    (void)arg;
    atomic_fetch_add(&started, 1);
    atomic_store(&seen_err, sl_ctx_wait(sl_req_ctx(req)));
    sl_resp_set_status(resp, 201);
    sl_resp_set_body_static(resp, "created", 7);
}

static void h_ping(sl_req *req, sl_resp *resp, void *arg)
{
    (void)req;
    (void)arg;
    sl_resp_set_body_static(resp, "pong", 4);
}

static sl_mux *mux_with(const char *pattern, sl_handler_fn fn)
{
    sl_mux *mux;
    sl_mux_opts mo = {.handler_workers = 1, .handler_queue = 8};
    assert_int_equal(sl_mux_new(&mo, &mux), 0);
    sl_middleware mw = {.name = "rec", .after = rec_after};
    assert_int_equal(sl_mux_use(mux, &mw), 0);
    assert_int_equal(
        sl_mux_handle(mux, pattern, fn, NULL, &(sl_route_opts){.mode = SL_ROUTE_POOLED}, NULL, 0),
        0);
    sl_route_opts inl = {.mode = SL_ROUTE_INLINE};
    assert_int_equal(sl_mux_handle(mux, "GET /ping", h_ping, NULL, &inl, NULL, 0), 0);
    return mux;
}

static void test_shutdown_queued_503(void **state)
{
    (void)state;
    reset_state();
    sl_mux *mux = mux_with("POST /users", h_wait_ctx);
    sl_server_opts o = {.mux = mux, .reactors = 1};
    int port;
    sl_server *srv = tc_server_start(&o, &port);
    const char *req = "POST /users HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n{}";
    tc_conn a, b, d;
    tc_init(&a, tc_connect(port));
    tc_init(&b, tc_connect(port));
    tc_init(&d, tc_connect(port));
    assert_true(tc_sends(a.fd, req)); /* runs (the only handler thread) */
    assert_true(SL_WAIT_UNTIL(atomic_load(&started) == 1, 5000));
    assert_true(tc_sends(b.fd, req)); /* b and d wait in the queue */
    assert_true(tc_sends(d.fd, req));
    assert_true(SL_WAIT_UNTIL(tc_stat_requests(srv) == 3, 5000));
    sl_ctx *grace;
    assert_int_equal(sl_ctx_with_timeout(NULL, SL_MS(100), &grace), 0);
    assert_int_equal(sl_server_shutdown(srv, grace), SL_ETIMEDOUT);
    assert_int_equal(atomic_load(&seen_err), SL_ESHUTDOWN);
    assert_int_equal(atomic_load(&started), 1); /* the queued handlers never ran */
    tc_conn *qs[2] = {&b, &d};
    for (int i = 0; i < 2; i++) {
        tc_resp r;
        assert_int_equal(tc_read_response(qs[i], &r), 0);
        assert_int_equal(r.status, 503);
        char v[32];
        assert_non_null(tc_find_hdr(r.head, "Retry-After", v, sizeof v));
        assert_true(atoi(v) >= 1);
        assert_non_null(tc_find_hdr(r.head, "Connection", v, sizeof v));
        assert_string_equal(v, "close");
        tc_resp_free(&r);
        close(qs[i]->fd);
    }
    close(a.fd);
    assert_int_equal(atomic_load(&hooked[0]), 3);
    assert_int_equal(hooked_count(503), 3); /* what was sent, including the running one */
    assert_int_equal(hooked_count(200), 0);
    sl_ctx_release(grace);
    sl_server_free(srv);
    sl_mux_free(mux);
}

static void test_half_close_gets_response(void **state)
{
    (void)state;
    reset_state();
    sl_mux *mux = mux_with("POST /users", h_create_late);
    sl_server_opts o = {.mux = mux, .reactors = 1};
    int port;
    sl_server *srv = tc_server_start(&o, &port);
    tc_conn a;
    tc_init(&a, tc_connect(port));
    assert_true(tc_sends(a.fd, "POST /users HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n{}"));
    assert_true(SL_WAIT_UNTIL(atomic_load(&started) == 1, 5000));
    assert_int_equal(shutdown(a.fd, SHUT_WR), 0); /* done sending; still reading */
    /* The server notices the half-close (the request's ctx is cancelled, as Go's is), and
     * the handler returns its answer after that. */
    assert_true(SL_WAIT_UNTIL(atomic_load(&seen_err) == SL_ECANCELED, 2000));
    tc_resp r;
    assert_int_equal(tc_read_response(&a, &r), 0);
    assert_int_equal(r.status, 201);
    assert_string_equal(r.body, "created");
    tc_resp_free(&r);
    assert_true(tc_wait_eof(&a, 2000));
    close(a.fd);
    assert_true(SL_WAIT_UNTIL(atomic_load(&hooked[0]) == 1, 2000));
    assert_int_equal(atomic_load(&hooked[1]), 201);
    sl_server_free(srv);
    sl_mux_free(mux);
}

static void test_reset_while_queued_is_499(void **state)
{
    (void)state;
    reset_state();
    assert_int_equal(sl_ctx_with_cancel(NULL, &gate), 0);
    sl_mux *mux = mux_with("POST /users", h_create);
    sl_server_opts o = {.mux = mux, .reactors = 1};
    int port;
    sl_server *srv = tc_server_start(&o, &port);
    const char *req = "POST /users HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n{}";
    tc_conn a, b;
    tc_init(&a, tc_connect(port));
    tc_init(&b, tc_connect(port));
    assert_true(tc_sends(a.fd, req));
    assert_true(SL_WAIT_UNTIL(atomic_load(&started) == 1, 5000));
    assert_true(tc_sends(b.fd, req)); /* queued behind a */
    assert_true(SL_WAIT_UNTIL(tc_stat_requests(srv) == 2, 5000));
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    setsockopt(b.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(b.fd); /* RST: b's request is not worth starting */
    /* A request on another connection of the same (single) reactor, answered inline: its
     * readiness comes after the reset's in epoll's ready list, so the reset was handled. */
    assert_int_equal(tc_get_status(port, "GET /ping HTTP/1.1\r\nHost: a\r\n\r\n"), 200);
    sl_ctx_cancel(gate);
    tc_resp r;
    assert_int_equal(tc_read_response(&a, &r), 0);
    assert_int_equal(r.status, 201);
    tc_resp_free(&r);
    assert_true(SL_WAIT_UNTIL(atomic_load(&hooked[0]) == 3, 2000));
    assert_int_equal(hooked_count(200), 1); /* the ping */
    assert_int_equal(hooked_count(201), 1);
    assert_int_equal(hooked_count(499), 1);
    assert_int_equal(atomic_load(&started), 1);
    close(a.fd);
    sl_server_free(srv);
    sl_mux_free(mux);
    sl_ctx_release(gate);
}

/* ---- bounded waiting ---- */

/* Connects from src (an address in 127.0.0.0/8). */
static int connect_from(int port, const char *src)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in me = {.sin_family = AF_INET};
    inet_pton(AF_INET, src, &me.sin_addr);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    assert_int_equal(bind(fd, (struct sockaddr *)&me, sizeof me), 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    return fd;
}

/* A request that waited in the queue longer than max_queue_wait_ns is not started: 503 with
 * Retry-After, and the connection stays usable. */
static void test_queue_wait_shed(void **state)
{
    (void)state;
    reset_state();
    assert_int_equal(sl_ctx_with_cancel(NULL, &gate), 0);
    sl_mux *mux;
    sl_mux_opts mo = {.handler_workers = 1, .handler_queue = 8, .max_queue_wait_ns = SL_MS(150)};
    assert_int_equal(sl_mux_new(&mo, &mux), 0);
    assert_int_equal(sl_mux_handle(mux, "POST /users", h_create, NULL,
                                   &(sl_route_opts){.mode = SL_ROUTE_POOLED}, NULL, 0),
                     0);
    sl_server_opts o = {.mux = mux, .reactors = 1};
    int port;
    sl_server *srv = tc_server_start(&o, &port);
    const char *req = "POST /users HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n{}";
    tc_conn a, b;
    tc_init(&a, tc_connect(port));
    tc_init(&b, tc_connect(port));
    assert_true(tc_sends(a.fd, req));
    assert_true(SL_WAIT_UNTIL(atomic_load(&started) == 1, 5000));
    assert_true(tc_sends(b.fd, req));
    assert_true(SL_WAIT_UNTIL(tc_stat_requests(srv) == 2, 5000));
    assert_false(tc_readable(b.fd, 300)); /* b waits past its bound meanwhile */
    sl_ctx_cancel(gate);
    tc_resp r;
    assert_int_equal(tc_read_response(&b, &r), 0);
    assert_int_equal(r.status, 503);
    char v[32];
    assert_non_null(tc_find_hdr(r.head, "Retry-After", v, sizeof v));
    assert_true(atoi(v) >= 1);
    tc_resp_free(&r);
    assert_int_equal(atomic_load(&started), 1); /* b's handler never ran */
    assert_true(tc_sends(b.fd, req));           /* the connection is still good */
    assert_int_equal(tc_read_response(&b, &r), 0);
    assert_int_equal(r.status, 201);
    tc_resp_free(&r);
    assert_int_equal(tc_read_response(&a, &r), 0);
    assert_int_equal(r.status, 201);
    tc_resp_free(&r);
    close(a.fd);
    close(b.fd);
    sl_server_free(srv);
    sl_mux_free(mux);
    sl_ctx_release(gate);
}

/* One client hammering a slow route holds at most its share of the handler threads: another
 * client's POST is served at once (issue 13: it timed out while /healthz said 200). */
static void test_per_client_cap(void **state)
{
    (void)state;
    reset_state();
    assert_int_equal(sl_ctx_with_cancel(NULL, &gate), 0);
    sl_mux *mux;
    sl_mux_opts mo = {.handler_workers = 2, .handler_queue = 16, .max_pooled_per_client = 1};
    assert_int_equal(sl_mux_new(&mo, &mux), 0);
    assert_int_equal(sl_mux_handle(mux, "GET /search", h_create, NULL,
                                   &(sl_route_opts){.mode = SL_ROUTE_POOLED}, NULL, 0),
                     0);
    assert_int_equal(sl_mux_handle(mux, "POST /users", h_ping, NULL,
                                   &(sl_route_opts){.mode = SL_ROUTE_POOLED}, NULL, 0),
                     0);
    sl_server_opts o = {.mux = mux, .reactors = 1};
    int port;
    sl_server *srv = tc_server_start(&o, &port);
    enum { N = 6 };
    tc_conn h[N];
    int busy = 0, refused = 0;
    for (int i = 0; i < N; i++) {
        tc_init(&h[i], connect_from(port, "127.0.0.21"));
        assert_true(tc_sends(h[i].fd, "GET /search HTTP/1.1\r\nHost: a\r\n\r\n"));
    }
    assert_true(SL_WAIT_UNTIL(tc_stat_requests(srv) == N, 5000));
    for (int i = 0; i < N; i++) {
        if (!tc_readable(h[i].fd, 50)) {
            busy++;
            continue;
        }
        tc_resp r;
        assert_int_equal(tc_read_response(&h[i], &r), 0);
        assert_int_equal(r.status, 429);
        tc_resp_free(&r);
        refused++;
    }
    assert_int_equal(busy, 1);
    assert_int_equal(refused, N - 1);
    /* Another client is served while the first one's request still holds its thread. */
    tc_conn o2;
    tc_init(&o2, connect_from(port, "127.0.0.22"));
    assert_true(tc_sends(o2.fd, "POST /users HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n{}"));
    tc_resp r;
    assert_int_equal(tc_read_response_ex(&o2, &r, false, 2000, NULL), 0);
    assert_int_equal(r.status, 200);
    tc_resp_free(&r);
    close(o2.fd);
    sl_ctx_cancel(gate);
    for (int i = 0; i < N; i++)
        close(h[i].fd);
    sl_server_free(srv);
    sl_mux_free(mux);
    sl_ctx_release(gate);
}

/* Retry-After on a cold, saturated pool comes from its real drain: 1 worker, 1 running and 2
 * queued requests of unknown length is 3 rounds, not "1". */
static void test_retry_after_cold(void **state)
{
    (void)state;
    reset_state();
    assert_int_equal(sl_ctx_with_cancel(NULL, &gate), 0);
    sl_mux *mux;
    sl_mux_opts mo = {.handler_workers = 1, .handler_queue = 2};
    assert_int_equal(sl_mux_new(&mo, &mux), 0);
    assert_int_equal(sl_mux_handle(mux, "POST /users", h_create, NULL,
                                   &(sl_route_opts){.mode = SL_ROUTE_POOLED}, NULL, 0),
                     0);
    sl_server_opts o = {.mux = mux, .reactors = 1};
    int port;
    sl_server *srv = tc_server_start(&o, &port);
    const char *req = "POST /users HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n{}";
    tc_conn c[4];
    for (int i = 0; i < 3; i++) {
        tc_init(&c[i], tc_connect(port));
        assert_true(tc_sends(c[i].fd, req));
        if (i == 0) assert_true(SL_WAIT_UNTIL(atomic_load(&started) == 1, 5000));
    }
    assert_true(SL_WAIT_UNTIL(tc_stat_requests(srv) == 3, 5000));
    tc_init(&c[3], tc_connect(port));
    assert_true(tc_sends(c[3].fd, req));
    tc_resp r;
    assert_int_equal(tc_read_response(&c[3], &r), 0);
    assert_int_equal(r.status, 503);
    char v[32];
    assert_non_null(tc_find_hdr(r.head, "Retry-After", v, sizeof v));
    assert_true(atoi(v) >= 3);
    tc_resp_free(&r);
    sl_ctx_cancel(gate);
    for (int i = 0; i < 4; i++)
        close(c[i].fd);
    sl_server_free(srv);
    sl_mux_free(mux);
    sl_ctx_release(gate);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shutdown_queued_503),
        cmocka_unit_test(test_half_close_gets_response),
        cmocka_unit_test(test_reset_while_queued_is_499),
        cmocka_unit_test(test_queue_wait_shed),
        cmocka_unit_test(test_per_client_cap),
        cmocka_unit_test(test_retry_after_cold),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
