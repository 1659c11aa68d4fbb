/* Middleware that waits, over real sockets:
 *  - on a task route a before hook runs in the request's task and may park (on its ctx, on a
 *    channel fed by the test), then let the request through or stop it with 401 / 429 (the
 *    handler is never called);
 *  - 500 concurrent requests whose hook parks, one reactor and one runtime loop: all answered;
 *  - a parked hook is woken (SL_ECANCELED) within 100 ms of its client closing; the handler
 *    does not run;
 *  - a hook parked past the route timeout: 503 at the deadline, the hook's ctx is done;
 *  - the route-timeout 503 keeps the headers middleware set (task and pooled routes);
 *  - sl_req_may_wait: true in a task route's hook and in handlers off the reactor, false in a
 *    pooled route's hook (on the reactor);
 *  - write timeout while a request is in flight: a streaming handler (task and pooled) writing
 *    to a client that never reads sees its ctx cancelled and the connection closes. */
#include "harness.h"
#include "http_client.h"

#include <stdatomic.h>

#include "sluice/chan.h"
#include "sluice/mux.h"
#include "sluice/task.h"

static atomic_int handled, hooked, hook_rc, stream_rc;
static atomic_int may_wait_hook, may_wait_handler; /* 1 = false, 2 = true */
static atomic_int peak;                            /* most hooks parked at once */
static _Atomic int64_t hook_back_at;
static sl_chan *decisions; /* ints: 0 = let through, else the status to stop with */

/* Mux-wide: tags every response (outermost) and records where it ran. */
static sl_mw_action mw_tag(sl_req *req, sl_resp *resp, void *arg)
{
    (void)arg;
    sl_resp_set_header(resp, "X-Mw", "tagged");
    atomic_store(&may_wait_hook, sl_req_may_wait(req) ? 2 : 1);
    return SL_MW_NEXT;
}

/* Parks 30 ms on its ctx, then lets the request through. */
static sl_mw_action mw_park_pass(sl_req *req, sl_resp *resp, void *arg)
{
    (void)resp;
    (void)arg;
    atomic_fetch_add(&hooked, 1);
    int rc = sl_ctx_wait_for(sl_req_ctx(req), SL_MS(30));
    if (rc != SL_EAGAIN) {
        sl_resp_error(resp, 500, "hook cut short");
        return SL_MW_STOP;
    }
    return SL_MW_NEXT;
}

/* Parks on the test's channel for its decision. */
static sl_mw_action mw_park_decide(sl_req *req, sl_resp *resp, void *arg)
{
    (void)arg;
    atomic_fetch_add(&hooked, 1);
    int st = 0;
    int rc = sl_chan_recv(decisions, &st, sl_req_ctx(req));
    if (rc < 0) {
        atomic_store(&hook_rc, rc);
        sl_resp_error(resp, 503, "hook cancelled");
        return SL_MW_STOP;
    }
    if (st == 0) return SL_MW_NEXT;
    if (st == 429) sl_resp_set_header(resp, "Retry-After", "1");
    sl_resp_error(resp, st, "refused by middleware");
    return SL_MW_STOP;
}

/* Parks on its ctx until it is done (client gone, deadline). */
static sl_mw_action mw_park_forever(sl_req *req, sl_resp *resp, void *arg)
{
    (void)arg;
    atomic_fetch_add(&hooked, 1);
    int rc = sl_ctx_wait(sl_req_ctx(req));
    atomic_store(&hook_back_at, sl_mono_ns());
    atomic_store(&hook_rc, rc);
    sl_resp_error(resp, 503, "hook cancelled");
    return SL_MW_STOP;
}

static void h_ok(sl_req *req, sl_resp *resp, void *arg)
{
    (void)arg;
    atomic_store(&may_wait_handler, sl_req_may_wait(req) ? 2 : 1);
    atomic_fetch_add(&handled, 1);
    sl_resp_set_body_static(resp, "handled", 7);
}

/* Outlives any route timeout: waits for its ctx. */
static void h_slow(sl_req *req, sl_resp *resp, void *arg)
{
    (void)arg;
    atomic_fetch_add(&handled, 1);
    atomic_store(&stream_rc, sl_ctx_wait(sl_req_ctx(req)));
    sl_resp_set_body_static(resp, "too late", 8);
}

#define CHUNK  65536
#define NCHUNK 512 /* 32 MiB: far more than the socket buffers take */

static void h_stream(sl_req *req, sl_resp *resp, void *arg)
{
    (void)req;
    (void)arg;
    static char blk[CHUNK]; /* a task's stack is small: no big arrays on it */
    atomic_fetch_add(&handled, 1);
    sl_resp_set_status(resp, 200);
    int rc = sl_resp_stream_begin(resp);
    for (int i = 0; i < NCHUNK && rc == 0; i++)
        rc = sl_resp_stream_write(resp, blk, sizeof blk);
    atomic_store(&stream_rc, rc == 0 ? 1 : rc);
}

static char g_16k[16384];

static void h_16k(sl_req *req, sl_resp *resp, void *arg)
{
    (void)req;
    (void)arg;
    sl_resp_set_body_static(resp, g_16k, sizeof g_16k);
}

/* Parks 20 ms, then refuses with 429. */
static sl_mw_action mw_park_refuse(sl_req *req, sl_resp *resp, void *arg)
{
    (void)arg;
    int n = atomic_fetch_add(&hooked, 1) + 1;
    int m = atomic_load(&peak);
    while (n > m && !atomic_compare_exchange_weak(&peak, &m, n)) {
    }
    sl_ctx_wait_for(sl_req_ctx(req), SL_MS(20));
    atomic_fetch_sub(&hooked, 1);
    sl_resp_error(resp, 429, "slow down");
    return SL_MW_STOP;
}

static void reset(void)
{
    atomic_store(&handled, 0);
    atomic_store(&hooked, 0);
    atomic_store(&hook_rc, 0);
    atomic_store(&stream_rc, 0);
    atomic_store(&may_wait_hook, 0);
    atomic_store(&may_wait_handler, 0);
    atomic_store(&peak, 0);
}

typedef struct fixture {
    sl_runtime *rt;
    sl_mux *mux;
    sl_server *srv;
    int port;
} fixture;

/* The server on a runtime of one loop; route pat with mode, timeout and a route middleware hook
 * (NULL = none); the mux-wide tag middleware outermost, then the request id. With so, the
 * server options (mux and reactors are set here); cap: max_task_requests. */
static void start_ex(fixture *f, const char *pat, sl_route_mode mode, sl_handler_fn fn,
                     sl_mw_before_fn hook, int64_t timeout_ns, sl_server_opts *so, int cap)
{
    reset();
    sl_runtime_opts rto = {.loops = 1};
    assert_int_equal(sl_runtime_new(&rto, &f->rt), 0);
    sl_mux_opts mo = {.handler_workers = 2, .max_task_requests = cap};
    assert_int_equal(sl_mux_new(&mo, &f->mux), 0);
    sl_middleware tag = {.name = "tag", .before = mw_tag};
    assert_int_equal(sl_mux_use(f->mux, &tag), 0);
    assert_int_equal(sl_mux_use_request_id(f->mux), 0);
    sl_middleware park = {.name = "park", .before = hook};
    sl_route_opts ro = {.mode = mode,
                        .timeout_ns = timeout_ns,
                        .middleware = hook ? &park : NULL,
                        .nmiddleware = hook ? 1 : 0};
    assert_int_equal(sl_mux_handle(f->mux, pat, fn, NULL, &ro, NULL, 0), 0);
    assert_int_equal(sl_mux_handle_inline(f->mux, "GET /16k", h_16k, NULL), 0);
    sl_server_opts o = so ? *so : (sl_server_opts){0};
    o.mux = f->mux;
    o.runtime = f->rt; /* its one loop serves, and runs the task routes */
    o.reactors = 1;
    f->srv = tc_server_start(&o, &f->port);
}

static void start(fixture *f, const char *pat, sl_route_mode mode, sl_handler_fn fn,
                  sl_mw_before_fn hook, int64_t timeout_ns, int64_t write_timeout_ns)
{
    sl_server_opts so = {.write_timeout_ns = write_timeout_ns};
    start_ex(f, pat, mode, fn, hook, timeout_ns, &so, 0);
}

static void stop(fixture *f)
{
    assert_true(SL_WAIT_UNTIL(sl_runtime_tasks(f->rt) == 0, 5000));
    assert_int_equal(sl_server_shutdown(f->srv, NULL), 0);
    sl_server_free(f->srv);
    sl_mux_free(f->mux);
    sl_runtime_free(f->rt);
}

static int get(int port, const char *path, char *buf, size_t cap)
{
    int fd = tc_connect(port);
    assert_true(fd >= 0);
    char req[256];
    snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: a\r\n\r\n", path);
    assert_true(tc_sends(fd, req));
    int st = tc_read_small(fd, buf, cap, 10000);
    close(fd);
    return st;
}

/* ---- a hook that parks, then lets the request through ---- */

static void test_park_then_pass(void **state)
{
    (void)state;
    fixture f;
    start(&f, "GET /p", SL_ROUTE_TASK, h_ok, mw_park_pass, 0, 0);
    char buf[2048], v[64];
    int64_t t0 = sl_mono_ns();
    assert_int_equal(get(f.port, "/p", buf, sizeof buf), 200);
    assert_true(sl_mono_ns() - t0 >= SL_MS(30)); /* the hook did wait */
    assert_non_null(strstr(buf, "\r\n\r\nhandled"));
    assert_non_null(tc_find_hdr(buf, "X-Mw", v, sizeof v));
    assert_non_null(tc_find_hdr(buf, "X-Request-Id", v, sizeof v));
    assert_int_equal(atomic_load(&hooked), 1);
    assert_int_equal(atomic_load(&handled), 1);
    assert_int_equal(atomic_load(&may_wait_hook), 2);    /* in the task */
    assert_int_equal(atomic_load(&may_wait_handler), 2); /* in the task */
    /* A request with a body: its hooks run in the task too, once the body is read. */
    int fd = tc_connect(f.port);
    assert_true(tc_sends(fd, "GET /p HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"));
    assert_int_equal(tc_read_small(fd, buf, sizeof buf, 10000), 200);
    assert_int_equal(atomic_load(&hooked), 2);
    assert_int_equal(atomic_load(&may_wait_hook), 2);
    close(fd);
    stop(&f);
}

/* A pooled route's hooks run on the reactor: sl_req_may_wait says so; its handler may wait. */
static void test_pooled_may_wait(void **state)
{
    (void)state;
    fixture f;
    start(&f, "GET /p", SL_ROUTE_POOLED, h_ok, NULL, 0, 0);
    char buf[2048];
    assert_int_equal(get(f.port, "/p", buf, sizeof buf), 200);
    assert_int_equal(atomic_load(&may_wait_hook), 1);
    assert_int_equal(atomic_load(&may_wait_handler), 2);
    stop(&f);
}

/* ---- a hook that parks, then stops the chain ---- */

static void test_park_then_stop(void **state)
{
    (void)state;
    assert_int_equal(sl_chan_new(sizeof(int), 4, &decisions), 0);
    fixture f;
    start(&f, "GET /d", SL_ROUTE_TASK, h_ok, mw_park_decide, 0, 0);
    static const int want[3] = {401, 429, 0};
    char buf[2048], v[64];
    for (int i = 0; i < 3; i++) {
        int fd = tc_connect(f.port);
        assert_true(tc_sends(fd, "GET /d HTTP/1.1\r\nHost: a\r\n\r\n"));
        assert_true(SL_WAIT_UNTIL(atomic_load(&hooked) == i + 1, 5000)); /* parked */
        assert_false(tc_readable(fd, 20));                               /* nothing yet */
        assert_int_equal(sl_chan_send(decisions, &want[i], NULL), 0);
        int st = tc_read_small(fd, buf, sizeof buf, 5000);
        assert_int_equal(st, want[i] ? want[i] : 200);
        assert_non_null(tc_find_hdr(buf, "X-Mw", v, sizeof v));
        if (want[i] == 429) assert_non_null(tc_find_hdr(buf, "Retry-After", v, sizeof v));
        close(fd);
        /* The handler ran only for the request let through. */
        assert_int_equal(atomic_load(&handled), want[i] ? 0 : 1);
    }
    stop(&f);
    sl_chan_free(decisions);
}

/* ---- 500 parked hooks on one loop ---- */

#define NPARK 500

static void test_500_parked_hooks(void **state)
{
    (void)state;
    fixture f;
    start(&f, "GET /p", SL_ROUTE_TASK, h_ok, mw_park_pass, 0, 0);
    int *fds = malloc(NPARK * sizeof *fds);
    assert_non_null(fds);
    int64_t t0 = sl_mono_ns();
    for (int i = 0; i < NPARK; i++) {
        fds[i] = tc_connect(f.port);
        assert_true(fds[i] >= 0);
        assert_true(tc_sends(fds[i], "GET /p HTTP/1.1\r\nHost: a\r\n\r\n"));
    }
    int ok = 0;
    char buf[2048];
    for (int i = 0; i < NPARK; i++) {
        if (tc_read_small(fds[i], buf, sizeof buf, 30000) == 200 && strstr(buf, "\r\n\r\nhandled"))
            ok++;
        close(fds[i]);
    }
    int64_t took = sl_mono_ns() - t0;
    assert_int_equal(ok, NPARK);
    assert_int_equal(atomic_load(&handled), NPARK);
    /* 500 sequential 30 ms waits would take 15 s; parked together, well under. */
    assert_true(took < SL_SEC(10));
    fprintf(stderr, "# %d requests whose middleware parks 30 ms: all answered in %.2f s\n", NPARK,
            (double)took / 1e9);
    free(fds);
    stop(&f);
}

/* ---- a refusing hook under a flood: bounded by max_task_requests ---- */

#define NFLOOD 200
#define CAP    16

static void test_refusing_hook_flood_bounded(void **state)
{
    (void)state;
    fixture f;
    start_ex(&f, "GET /r", SL_ROUTE_TASK, h_ok, mw_park_refuse, 0, NULL, CAP);
    int *fds = malloc(NFLOOD * sizeof *fds);
    assert_non_null(fds);
    for (int i = 0; i < NFLOOD; i++) {
        fds[i] = tc_connect(f.port);
        assert_true(fds[i] >= 0);
        assert_true(tc_sends(fds[i], "GET /r HTTP/1.1\r\nHost: a\r\n\r\n"));
    }
    int n429 = 0, n503 = 0;
    char buf[2048], v[32];
    for (int i = 0; i < NFLOOD; i++) {
        int st = tc_read_small(fds[i], buf, sizeof buf, 10000);
        if (st == 429) n429++;
        if (st == 503 && tc_find_hdr(buf, "Retry-After", v, sizeof v)) n503++;
        close(fds[i]);
    }
    free(fds);
    /* Every request answered: refused by the hook, or by the cap before costing a task. */
    assert_int_equal(n429 + n503, NFLOOD);
    assert_true(n429 >= CAP);
    assert_true(atomic_load(&peak) <= CAP); /* never more hooks parked than the cap */
    assert_int_equal(atomic_load(&handled), 0);
    fprintf(stderr, "# %d requests on a hook that parks then refuses, cap %d: %d x 429, %d x 503\n",
            NFLOOD, CAP, n429, n503);
    stop(&f);
}

/* ---- client gone wakes a parked hook ---- */

static void test_client_gone_wakes_hook(void **state)
{
    (void)state;
    fixture f;
    start(&f, "GET /f", SL_ROUTE_TASK, h_ok, mw_park_forever, 0, 0);
    int fd = tc_connect(f.port);
    assert_true(tc_sends(fd, "GET /f HTTP/1.1\r\nHost: a\r\n\r\n"));
    assert_true(SL_WAIT_UNTIL(atomic_load(&hooked) == 1, 5000));
    int64_t closed_at = sl_mono_ns();
    close(fd);
    assert_true(SL_WAIT_UNTIL(atomic_load(&hook_rc) != 0, 2000));
    assert_int_equal(atomic_load(&hook_rc), SL_ECANCELED);
    assert_true(atomic_load(&hook_back_at) - closed_at < SL_MS(100));
    assert_int_equal(atomic_load(&handled), 0);
    assert_true(SL_WAIT_UNTIL(tc_stat_conns(f.srv) == 0, 2000));
    stop(&f);
}

/* ---- route timeout ---- */

/* A hook parked past the route timeout: 503 at the deadline; the hook's ctx is done. */
static void test_hook_past_deadline(void **state)
{
    (void)state;
    fixture f;
    start(&f, "GET /f", SL_ROUTE_TASK, h_ok, mw_park_forever, SL_MS(150), 0);
    char buf[2048], v[64];
    int64_t t0 = sl_mono_ns();
    int fd = tc_connect(f.port);
    assert_true(tc_sends(fd, "GET /f HTTP/1.1\r\nHost: a\r\n\r\n"));
    assert_int_equal(tc_read_small(fd, buf, sizeof buf, 10000), 503);
    int64_t took = sl_mono_ns() - t0;
    assert_true(took >= SL_MS(140) && took < SL_SEC(3));
    assert_non_null(strstr(buf, "handler timeout"));
    /* The hooks that ran before it set headers: they stay. */
    assert_non_null(tc_find_hdr(buf, "X-Mw", v, sizeof v));
    /* (The connection stays open meanwhile: a close would cancel the ctx first when the
     * deadline's own timer runs late, as under a sanitizer.) */
    assert_true(SL_WAIT_UNTIL(atomic_load(&hook_rc) != 0, 2000));
    assert_int_equal(atomic_load(&hook_rc), SL_ETIMEDOUT);
    assert_int_equal(atomic_load(&handled), 0);
    close(fd);
    stop(&f);
}

/* A handler that outlives the route timeout: the 503 keeps the middleware's headers. */
static void timeout_keeps_headers(sl_route_mode mode)
{
    fixture f;
    start(&f, "GET /slow", mode, h_slow, NULL, SL_MS(150), 0);
    char buf[2048], v[64];
    int fd = tc_connect(f.port);
    assert_true(tc_sends(fd, "GET /slow HTTP/1.1\r\nHost: a\r\nX-Request-Id: abc-123\r\n\r\n"));
    assert_int_equal(tc_read_small(fd, buf, sizeof buf, 5000), 503);
    assert_non_null(strstr(buf, "handler timeout"));
    assert_non_null(tc_find_hdr(buf, "X-Mw", v, sizeof v));
    assert_string_equal(v, "tagged");
    assert_non_null(tc_find_hdr(buf, "X-Request-Id", v, sizeof v));
    assert_string_equal(v, "abc-123");
    /* The connection stays usable, and the next 503 has them too. */
    assert_true(tc_sends(fd, "GET /slow HTTP/1.1\r\nHost: a\r\n\r\n"));
    assert_int_equal(tc_read_small(fd, buf, sizeof buf, 5000), 503);
    assert_non_null(tc_find_hdr(buf, "X-Mw", v, sizeof v));
    assert_non_null(tc_find_hdr(buf, "X-Request-Id", v, sizeof v));
    close(fd);
    assert_true(SL_WAIT_UNTIL(atomic_load(&handled) == 2, 2000));
    assert_true(SL_WAIT_UNTIL(tc_stat_conns(f.srv) == 0, 2000));
    stop(&f);
}

static void test_timeout_keeps_headers_task(void **state)
{
    (void)state;
    timeout_keeps_headers(SL_ROUTE_TASK);
}

static void test_timeout_keeps_headers_pooled(void **state)
{
    (void)state;
    timeout_keeps_headers(SL_ROUTE_POOLED);
}

/* ---- write timeout while in flight ---- */

static void stalled_stream(sl_route_mode mode)
{
    fixture f;
    start(&f, "GET /s", mode, h_stream, NULL, 0, SL_MS(200));
    int fd = tc_connect(f.port);
    int small = 4096; /* the client reads nothing: let its buffer fill soon */
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    int64_t t0 = sl_mono_ns();
    assert_true(tc_sends(fd, "GET /s HTTP/1.1\r\nHost: a\r\n\r\n"));
    assert_true(SL_WAIT_UNTIL(atomic_load(&handled) == 1, 5000));
    /* The handler is cut: its write fails with its ctx cancelled; the connection closes. */
    assert_true(SL_WAIT_UNTIL(atomic_load(&stream_rc) != 0, 10000));
    assert_int_equal(atomic_load(&stream_rc), SL_ECANCELED);
    assert_true(SL_WAIT_UNTIL(tc_stat_conns(f.srv) == 0, 5000));
    int64_t took = sl_mono_ns() - t0;
    assert_true(took >= SL_MS(200) && took < SL_SEC(10));
    fprintf(stderr, "# %s stream to a client that never reads: closed after %.2f s\n",
            mode == SL_ROUTE_TASK ? "task" : "pooled", (double)took / 1e9);
    close(fd);
    stop(&f);
}

/* Earlier pipelined responses sit unsent while a task request is in flight: the write timeout
 * still closes the connection and cancels the request. */
#define NPIPE 600

static void test_write_timeout_pipelined(void **state)
{
    (void)state;
    fixture f;
    sl_server_opts so = {
        .write_timeout_ns = SL_MS(200), .max_pipeline = NPIPE + 8, .max_output_bytes = 64u << 20};
    start_ex(&f, "GET /slow", SL_ROUTE_TASK, h_slow, NULL, 0, &so, 0);
    int fd = tc_connect(f.port);
    int small = 4096;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    static const char one[] = "GET /16k HTTP/1.1\r\nHost: a\r\n\r\n";
    size_t len = (NPIPE) * (sizeof one - 1);
    char *all = malloc(len + 64);
    assert_non_null(all);
    for (int i = 0; i < NPIPE; i++)
        memcpy(all + (size_t)i * (sizeof one - 1), one, sizeof one - 1);
    static const char last[] = "GET /slow HTTP/1.1\r\nHost: a\r\n\r\n";
    memcpy(all + len, last, sizeof last - 1);
    int64_t t0 = sl_mono_ns();
    assert_true(tc_send(fd, all, len + sizeof last - 1));
    free(all);
    /* ~9.6 MiB of responses queue behind a client that reads nothing; /slow runs meanwhile. */
    assert_true(SL_WAIT_UNTIL(atomic_load(&handled) == 1, 10000));
    assert_true(SL_WAIT_UNTIL(atomic_load(&stream_rc) != 0, 10000));
    assert_int_equal(atomic_load(&stream_rc), SL_ECANCELED);
    assert_true(SL_WAIT_UNTIL(tc_stat_conns(f.srv) == 0, 5000));
    assert_true(sl_mono_ns() - t0 < SL_SEC(15));
    close(fd);
    stop(&f);
}

static void test_write_timeout_task_stream(void **state)
{
    (void)state;
    stalled_stream(SL_ROUTE_TASK);
}

static void test_write_timeout_pooled_stream(void **state)
{
    (void)state;
    stalled_stream(SL_ROUTE_POOLED);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_park_then_pass),
        cmocka_unit_test(test_pooled_may_wait),
        cmocka_unit_test(test_park_then_stop),
        cmocka_unit_test(test_500_parked_hooks),
        cmocka_unit_test(test_refusing_hook_flood_bounded),
        cmocka_unit_test(test_client_gone_wakes_hook),
        cmocka_unit_test(test_hook_past_deadline),
        cmocka_unit_test(test_timeout_keeps_headers_task),
        cmocka_unit_test(test_timeout_keeps_headers_pooled),
        cmocka_unit_test(test_write_timeout_task_stream),
        cmocka_unit_test(test_write_timeout_pooled_stream),
        cmocka_unit_test(test_write_timeout_pipelined),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
