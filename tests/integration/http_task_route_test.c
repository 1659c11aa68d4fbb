/* Task routes (SL_ROUTE_TASK) over real sockets:
 *  - 2000 concurrent clients on a route whose handler waits 1 s on its ctx are all answered
 *    200 within a bounded time, while the process runs a handful of threads (one runtime
 *    loop runs every handler: they park, they do not hold threads);
 *  - a client that goes away cancels its parked handler within 100 ms;
 *  - the route deadline: the handler sees SL_ETIMEDOUT, the client gets 503;
 *  - shutdown with hundreds of parked task requests: they finish within the grace period,
 *    or at its end they are cancelled with SL_ESHUTDOWN and answered; no task is left;
 *  - max_task_requests: past it 503 with Retry-After at once, the others are served;
 *  - the request API in a task (path values, query, headers, body, arena), across a park;
 *  - a task route runs on the loop that read its request (the server's loops are the
 *    runtime's). */
#include "harness.h"
#include "http_client.h"

#include <stdatomic.h>
#include <sys/resource.h>

#include "sluice/mux.h"
#include "sluice/task.h"

static atomic_int parked, result;
static _Atomic int64_t returned_at;

static sl_runtime *rt_new(void)
{
    sl_runtime_opts ro = {.loops = 1};
    sl_runtime *rt = NULL;
    assert_int_equal(sl_runtime_new(&ro, &rt), 0);
    return rt;
}

static sl_server *start(sl_runtime *rt, sl_mux **mux, const char *pat, sl_handler_fn fn,
                        const sl_route_opts *ro0, int cap, int *port)
{
    sl_mux_opts mo = {.handler_workers = 2, .max_task_requests = cap};
    assert_int_equal(sl_mux_new(&mo, mux), 0);
    sl_route_opts ro = ro0 ? *ro0 : (sl_route_opts){0}; /* mode 0: a task route */
    assert_int_equal(sl_mux_handle(*mux, pat, fn, NULL, &ro, NULL, 0), 0);
    sl_server_opts o = {.mux = *mux, .runtime = rt};
    return tc_server_start(&o, port);
}

/* ---- 2000 parked requests ---- */

static atomic_int inflight, peak;

static void h_wait1s(sl_req *req, sl_resp *resp, void *arg)
{
    (void)arg;
    atomic_fetch_add(&parked, 1);
    int n = atomic_fetch_add(&inflight, 1) + 1;
    int m = atomic_load(&peak);
    while (n > m && !atomic_compare_exchange_weak(&peak, &m, n)) {
    }
    int rc = sl_ctx_wait_for(sl_req_ctx(req), SL_SEC(1));
    atomic_fetch_sub(&inflight, 1);
    if (rc == SL_EAGAIN)
        sl_resp_set_body_static(resp, "waited", 6);
    else
        sl_resp_error(resp, 503, "cut short");
}

/* Fewer under TSan: a TSan fiber per task stack costs a ~1 MB clear (src/task/sched.c). */
#ifdef SLUICE_TSAN
#define NCLIENTS 500
#else
#define NCLIENTS 2000
#endif

static void test_2000_parked(void **state)
{
    (void)state;
    atomic_store(&parked, 0);
    atomic_store(&inflight, 0);
    atomic_store(&peak, 0);
    sl_runtime *rt = rt_new();
    int base = tc_thread_count();
    sl_mux *mux;
    int port;
    sl_server *srv = start(rt, &mux, "GET /wait", h_wait1s, NULL, 0, &port);
    int *fds = malloc(NCLIENTS * sizeof *fds);
    assert_non_null(fds);
    int64_t t0 = sl_mono_ns();
    for (int i = 0; i < NCLIENTS; i++) {
        fds[i] = tc_connect(port);
        assert_true(fds[i] >= 0);
        assert_true(tc_sends(fds[i], "GET /wait HTTP/1.1\r\nHost: a\r\n\r\n"));
    }
    /* Every handler is running at once, parked on its ctx: no thread per request. */
    assert_true(SL_WAIT_UNTIL(atomic_load(&parked) == NCLIENTS, 60000));
    int threads = tc_thread_count();
    /* reactor + 2 handler threads + loop + watchdog (+ the offload pool): a handful */
    assert_true(threads - base <= 16);
    /* Most of them waited at the same time (2 handler threads would give a peak of 2; the
     * first ones may finish before the last clients connect under a sanitizer). */
    assert_true(atomic_load(&peak) >= NCLIENTS / 4);
    int ok = 0;
    char buf[1024];
    for (int i = 0; i < NCLIENTS; i++) {
        int st = tc_read_small(fds[i], buf, sizeof buf, 30000);
        if (st == 200 && strstr(buf, "\r\n\r\nwaited")) ok++;
        close(fds[i]);
    }
    int64_t took = sl_mono_ns() - t0;
    assert_int_equal(ok, NCLIENTS);
    /* 2000 sequential 1 s waits would take 2000 s; parked together, a few seconds (TSan). */
    assert_true(took < SL_SEC(60));
    fprintf(stderr,
            "# %d task requests waiting 1 s each: all answered in %.2f s, %d waiting at once at "
            "the peak, +%d threads\n",
            NCLIENTS, (double)took / 1e9, atomic_load(&peak), threads - base);
    free(fds);
    assert_true(SL_WAIT_UNTIL(sl_runtime_tasks(rt) == 0, 5000));
    assert_int_equal(sl_server_shutdown(srv, NULL), 0);
    sl_server_free(srv);
    sl_mux_free(mux);
    sl_runtime_free(rt);
}

/* ---- client gone ---- */

static void h_block(sl_req *req, sl_resp *resp, void *arg)
{
    (void)resp;
    (void)arg;
    atomic_fetch_add(&parked, 1);
    int rc = sl_ctx_wait(sl_req_ctx(req));
    atomic_store(&returned_at, sl_mono_ns());
    atomic_store(&result, rc);
    if (rc == SL_ESHUTDOWN) sl_resp_error(resp, 503, "shutting down");
}

static void test_client_gone_cancels(void **state)
{
    (void)state;
    atomic_store(&parked, 0);
    atomic_store(&result, 0);
    sl_runtime *rt = rt_new();
    sl_mux *mux;
    int port;
    sl_server *srv = start(rt, &mux, "GET /block", h_block, NULL, 0, &port);
    int fd = tc_connect(port);
    assert_true(fd >= 0);
    assert_true(tc_sends(fd, "GET /block HTTP/1.1\r\nHost: a\r\n\r\n"));
    assert_true(SL_WAIT_UNTIL(atomic_load(&parked) == 1, 5000));
    assert_true(sl_task_in() == false);
    int64_t closed_at = sl_mono_ns();
    close(fd);
    assert_true(SL_WAIT_UNTIL(atomic_load(&result) != 0, 2000));
    assert_int_equal(atomic_load(&result), SL_ECANCELED);
    assert_true(atomic_load(&returned_at) - closed_at < SL_MS(100));
    assert_true(SL_WAIT_UNTIL(tc_stat_conns(srv) == 0, 2000));
    assert_true(SL_WAIT_UNTIL(sl_runtime_tasks(rt) == 0, 2000));
    sl_server_free(srv);
    sl_mux_free(mux);
    sl_runtime_free(rt);
}

/* ---- route deadline ---- */

static void test_deadline_503(void **state)
{
    (void)state;
    atomic_store(&parked, 0);
    atomic_store(&result, 0);
    sl_runtime *rt = rt_new();
    sl_mux *mux;
    int port;
    sl_route_opts ro = {.timeout_ns = SL_MS(100)};
    sl_server *srv = start(rt, &mux, "GET /slow", h_block, &ro, 0, &port);
    int64_t t0 = sl_mono_ns();
    tc_resp r;
    tc_conn *c = malloc(sizeof *c);
    tc_init(c, tc_connect(port));
    assert_true(tc_sends(c->fd, "GET /slow HTTP/1.1\r\nHost: a\r\n\r\n"));
    assert_int_equal(tc_read_response(c, &r), 0);
    assert_int_equal(r.status, 503);
    assert_true(sl_mono_ns() - t0 < SL_SEC(3));
    tc_resp_free(&r);
    assert_true(SL_WAIT_UNTIL(atomic_load(&result) != 0, 2000));
    assert_int_equal(atomic_load(&result), SL_ETIMEDOUT);
    close(c->fd);
    free(c);
    sl_server_free(srv);
    sl_mux_free(mux);
    sl_runtime_free(rt);
}

/* ---- shutdown ---- */

#define NSHUT 300

static void open_parked(int port, const char *req, int *fds, int n)
{
    for (int i = 0; i < n; i++) {
        fds[i] = tc_connect(port);
        assert_true(fds[i] >= 0);
        assert_true(tc_sends(fds[i], req));
    }
    assert_true(SL_WAIT_UNTIL(atomic_load(&parked) == n, 30000));
}

/* Handlers that never return by themselves are cancelled at the end of the grace period with
 * SL_ESHUTDOWN, and their 503 reaches every client. */
static void test_shutdown_cancels_parked(void **state)
{
    (void)state;
    atomic_store(&parked, 0);
    sl_runtime *rt = rt_new();
    sl_mux *mux;
    int port;
    sl_server *srv = start(rt, &mux, "GET /block", h_block, NULL, 0, &port);
    int fds[NSHUT];
    open_parked(port, "GET /block HTTP/1.1\r\nHost: a\r\n\r\n", fds, NSHUT);
    sl_ctx *grace;
    assert_int_equal(sl_ctx_with_timeout(NULL, SL_MS(200), &grace), 0);
    int64_t t0 = sl_mono_ns();
    assert_int_equal(sl_server_shutdown(srv, grace), SL_ETIMEDOUT);
    assert_true(sl_mono_ns() - t0 < SL_MS(200) + SL_SEC(3));
    sl_ctx_release(grace);
    assert_true(SL_WAIT_UNTIL(sl_runtime_tasks(rt) == 0, 2000)); /* each is returning */
    char buf[1024];
    int n503 = 0;
    for (int i = 0; i < NSHUT; i++) {
        if (tc_read_small(fds[i], buf, sizeof buf, 5000) == 503) n503++;
        close(fds[i]);
    }
    assert_int_equal(n503, NSHUT);
    sl_server_free(srv);
    sl_mux_free(mux);
    sl_runtime_free(rt);
}

static void h_wait300(sl_req *req, sl_resp *resp, void *arg)
{
    (void)arg;
    atomic_fetch_add(&parked, 1);
    if (sl_ctx_wait_for(sl_req_ctx(req), SL_MS(300)) == SL_EAGAIN)
        sl_resp_set_body_static(resp, "done", 4);
    else
        sl_resp_error(resp, 503, "cut short");
}

/* Handlers that finish within the grace period deliver their result. */
static void test_shutdown_lets_parked_finish(void **state)
{
    (void)state;
    atomic_store(&parked, 0);
    sl_runtime *rt = rt_new();
    sl_mux *mux;
    int port;
    sl_server *srv = start(rt, &mux, "GET /w", h_wait300, NULL, 0, &port);
    int fds[NSHUT];
    open_parked(port, "GET /w HTTP/1.1\r\nHost: a\r\n\r\n", fds, NSHUT);
    sl_ctx *grace;
    assert_int_equal(sl_ctx_with_timeout(NULL, SL_SEC(20), &grace), 0);
    int64_t t0 = sl_mono_ns();
    assert_int_equal(sl_server_shutdown(srv, grace), 0);
    assert_true(sl_mono_ns() - t0 < SL_SEC(20));
    sl_ctx_release(grace);
    char buf[1024];
    int ok = 0;
    for (int i = 0; i < NSHUT; i++) {
        if (tc_read_small(fds[i], buf, sizeof buf, 5000) == 200 && strstr(buf, "\r\n\r\ndone"))
            ok++;
        close(fds[i]);
    }
    assert_int_equal(ok, NSHUT);
    sl_server_free(srv);
    sl_mux_free(mux);
    sl_runtime_free(rt);
}

/* ---- the in-flight cap ---- */

static sl_ctx *gate;

static void h_gate(sl_req *req, sl_resp *resp, void *arg)
{
    (void)req;
    (void)arg;
    atomic_fetch_add(&parked, 1);
    sl_ctx_wait(gate);
    sl_resp_set_body_static(resp, "done", 4);
}

static void test_cap_503(void **state)
{
    (void)state;
    atomic_store(&parked, 0);
    assert_int_equal(sl_ctx_with_cancel(NULL, &gate), 0);
    sl_runtime *rt = rt_new();
    sl_mux *mux;
    int port;
    sl_server *srv = start(rt, &mux, "GET /g", h_gate, NULL, 2, &port);
    int fds[2];
    open_parked(port, "GET /g HTTP/1.1\r\nHost: a\r\n\r\n", fds, 2);
    int64_t t0 = sl_mono_ns();
    int fd = tc_connect(port);
    assert_true(tc_sends(fd, "GET /g HTTP/1.1\r\nHost: a\r\n\r\n"));
    char buf[1024];
    assert_int_equal(tc_read_small(fd, buf, sizeof buf, 5000), 503);
    assert_true(sl_mono_ns() - t0 < SL_MS(500));
    char v[32];
    assert_non_null(tc_find_hdr(buf, "Retry-After", v, sizeof v));
    assert_true(atoi(v) >= 1);
    assert_non_null(strstr(buf, "server busy"));
    close(fd);
    sl_ctx_cancel(gate);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(tc_read_small(fds[i], buf, sizeof buf, 5000), 200);
        assert_non_null(strstr(buf, "\r\n\r\ndone"));
        close(fds[i]);
    }
    /* The slots are given back: the next request is served. */
    atomic_store(&parked, 0);
    fd = tc_connect(port);
    assert_true(tc_sends(fd, "GET /g HTTP/1.1\r\nHost: a\r\n\r\n"));
    assert_int_equal(tc_read_small(fd, buf, sizeof buf, 5000), 200);
    close(fd);
    sl_server_free(srv);
    sl_mux_free(mux);
    sl_runtime_free(rt);
    sl_ctx_release(gate);
}

/* ---- streaming ---- */

#define CHUNK  65536
#define NCHUNK 256 /* 16 MiB: more than the socket buffers take, so the task parks */

static void h_stream(sl_req *req, sl_resp *resp, void *arg)
{
    (void)req;
    (void)arg;
    static char blk[CHUNK];
    memset(blk, 'x', sizeof blk);
    sl_resp_set_status(resp, 200);
    int rc = sl_resp_stream_begin(resp);
    for (int i = 0; i < NCHUNK && rc == 0; i++)
        rc = sl_resp_stream_write(resp, blk, sizeof blk);
    atomic_store(&result, rc == 0 ? 1 : rc);
}

static atomic_bool flag;

static void set_flag(void *arg)
{
    (void)arg;
    atomic_store(&flag, true);
}

static void test_streaming(void **state)
{
    (void)state;
    atomic_store(&result, 0);
    sl_runtime *rt = rt_new();
    sl_mux *mux;
    int port;
    sl_server *srv = start(rt, &mux, "GET /s", h_stream, NULL, 0, &port);
    int fd = tc_connect(port);
    assert_true(tc_sends(fd, "GET /s HTTP/1.0\r\n\r\n")); /* 1.0: raw body, then EOF */
    /* The client does not read yet: the handler fills the socket buffers and parks on the
     * high-water mark; its loop stays free for other tasks (a handler blocking the loop
     * thread would keep this task from running until the client reads). */
    assert_true(SL_WAIT_UNTIL(sl_runtime_tasks(rt) == 1, 5000));
    atomic_store(&flag, false);
    sl_go_opts go = {.rt = rt};
    assert_int_equal(sl_go_with(&go, set_flag, NULL), 0);
    assert_true(SL_WAIT_UNTIL(atomic_load(&flag), 5000));
    size_t total = 0;
    bool eof = false;
    char big[65536];
    int64_t dl = sl_mono_ns() + SL_SEC(20);
    while (!eof && sl_mono_ns() < dl) {
        if (!tc_readable(fd, 100)) continue;
        ssize_t n = recv(fd, big, sizeof big, 0);
        if (n <= 0)
            eof = true;
        else
            total += (size_t)n;
    }
    assert_true(eof);
    assert_int_equal(atomic_load(&result), 1);
    const size_t body = (size_t)CHUNK * NCHUNK;
    assert_true(total > body && total < body + 512); /* the head, then every byte */
    close(fd);
    sl_server_free(srv);
    sl_mux_free(mux);
    sl_runtime_free(rt);
}

/* ---- the request API in a task ---- */

static void h_api(sl_req *req, sl_resp *resp, void *arg)
{
    (void)arg;
    size_t n;
    const char *id = sl_req_path_value(req, "id", &n);
    const char *q = sl_req_query(req, &n);
    const char *h = sl_req_header(req, "X-Tag", &n);
    size_t blen;
    const void *body = sl_req_body(req, &blen);
    /* Arena memory and the views survive a park (the task may resume later, even on
     * another loop). */
    char *mem = sl_req_alloc(req, 4096);
    assert_non_null(mem);
    snprintf(mem, 4096, "id=%s q=%s tag=%s body=%.*s loop=%d", id ? id : "-", q ? q : "-",
             h ? h : "-", (int)blen, (const char *)body, sl_task_loop());
    sl_ctx_wait_for(sl_req_ctx(req), SL_MS(5));
    sl_resp_printf(resp, "%s", mem);
}

static void test_request_api(void **state)
{
    (void)state;
    sl_runtime *rt = rt_new();
    sl_mux *mux;
    int port;
    sl_server *srv = start(rt, &mux, "POST /items/{id}", h_api, NULL, 0, &port);
    tc_conn *c = tc_conn_new(port);
    assert_non_null(c);
    for (int i = 0; i < 3; i++) { /* keep-alive: the same connection, request after request */
        tc_resp r;
        assert_true(tc_sends(c->fd, "POST /items/42?x=1 HTTP/1.1\r\nHost: a\r\nX-Tag: blue\r\n"
                                    "Content-Length: 5\r\n\r\nhello"));
        assert_int_equal(tc_read_response(c, &r), 0);
        assert_int_equal(r.status, 200);
        /* loop=1: the handler ran on the one loop of the runtime, the one that serves. */
        assert_string_equal(r.body, "id=42 q=x=1 tag=blue body=hello loop=1");
        tc_resp_free(&r);
    }
    tc_conn_free(c);
    sl_server_free(srv);
    sl_mux_free(mux);
    sl_runtime_free(rt);
}

/* ---- options ---- */

static void test_bad_opts(void **state)
{
    (void)state;
    sl_mux *mux;
    sl_mux_opts mo = {.max_task_requests = -1};
    assert_int_equal(sl_mux_new(&mo, &mux), SL_EINVAL);
    assert_int_equal(sl_mux_new(NULL, &mux), 0);
    sl_route_opts ro = {.mode = (sl_route_mode)7};
    assert_int_equal(sl_mux_handle(mux, "GET /x", h_gate, NULL, &ro, NULL, 0), SL_EINVAL);
    sl_mux_free(mux);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_client_gone_cancels),
        cmocka_unit_test(test_deadline_503),
        cmocka_unit_test(test_cap_503),
        cmocka_unit_test(test_shutdown_cancels_parked),
        cmocka_unit_test(test_shutdown_lets_parked_finish),
        cmocka_unit_test(test_streaming),
        cmocka_unit_test(test_2000_parked),
        cmocka_unit_test(test_request_api),
        cmocka_unit_test(test_bad_opts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
