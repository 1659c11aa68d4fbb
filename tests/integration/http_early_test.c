/* Requests with a body are routed and go through the before hooks (authentication, rate
 * limits) before the body is read, and 100 Continue is sent only for a body that will be read
 * (issue 13), over real sockets:
 *  - a refused request (401 from a before hook, 404 for no route) is answered at once, with no
 *    100 Continue, though its body never comes;
 *  - an accepted one gets 100 Continue, then its handler (pooled and inline) sees the values
 *    its before hooks set at head time and header views that are valid after a large body
 *    moved the read buffer;
 *  - a body that never completes: the after hooks see 499 with the request's path;
 *  - task routes too: their hooks run in the request's task at head time and may park there
 *    (a Redis check, an auth lookup) before a byte of the body is read; 100 Continue goes only
 *    after they let the request through, and a client that leaves while a hook is parked
 *    cancels it (the after hooks see 499). */
#include "harness.h"
#include "http_client.h"

#include <stdatomic.h>

#include "sluice/mux.h"

static atomic_int befores, hooked_status, parked_done;
static _Atomic int64_t park_ns = SL_MS(20); /* how long the hook parks on a task route */
static char hooked_path[64];
static int tag_key;

static sl_mw_action auth_before(sl_req *req, sl_resp *resp, void *arg)
{
    (void)arg;
    atomic_fetch_add(&befores, 1);
    size_t n;
    const char *k = sl_req_header(req, "X-Key", &n);
    if (!k || n != 6 || memcmp(k, "secret", 6) != 0) {
        sl_resp_error(resp, 401, "no key");
        return SL_MW_STOP;
    }
    char *v = sl_req_alloc(req, 8);
    memcpy(v, "checked", 8);
    sl_req_set_value(req, &tag_key, v);
    if (sl_req_may_wait(req)) { /* a task route: the hook parks (its task), as a lookup would */
        sl_ctx_wait_for(sl_req_ctx(req), atomic_load(&park_ns));
        atomic_store(&parked_done, 1);
    }
    return SL_MW_NEXT;
}

static void rec_after(sl_req *req, const sl_resp *resp, void *arg)
{
    (void)arg;
    size_t n;
    const char *p = sl_req_path(req, &n);
    if (n >= sizeof hooked_path) n = sizeof hooked_path - 1;
    memcpy(hooked_path, p, n);
    hooked_path[n] = '\0';
    atomic_store(&hooked_status, sl_resp_status(resp));
}

/* Echoes: the value the before hook set, the X-Tag header, and the body length. */
static void h_echo(sl_req *req, sl_resp *resp, void *arg)
{
    (void)arg;
    size_t bl, tl;
    sl_req_body(req, &bl);
    const char *tag = sl_req_header(req, "X-Tag", &tl);
    const char *v = sl_req_get_value(req, &tag_key);
    char out[256];
    int k = snprintf(out, sizeof out, "%s %.*s %zu", v ? v : "-", (int)tl, tag ? tag : "", bl);
    sl_resp_set_body(resp, out, (size_t)k);
}

static sl_server *start(int *port, sl_mux **mux)
{
    assert_int_equal(sl_mux_new(NULL, mux), 0);
    sl_middleware a = {.name = "rec", .after = rec_after};
    sl_middleware b = {.name = "auth", .before = auth_before};
    assert_int_equal(sl_mux_use(*mux, &a), 0);
    assert_int_equal(sl_mux_use(*mux, &b), 0);
    sl_route_opts pooled = {.mode = SL_ROUTE_POOLED};
    assert_int_equal(sl_mux_handle(*mux, "POST /pooled", h_echo, NULL, &pooled, NULL, 0), 0);
    sl_route_opts task = {.mode = SL_ROUTE_TASK}; /* its hooks run in its task */
    assert_int_equal(sl_mux_handle(*mux, "POST /task", h_echo, NULL, &task, NULL, 0), 0);
    sl_route_opts inl = {.mode = SL_ROUTE_INLINE};
    assert_int_equal(sl_mux_handle(*mux, "POST /inline", h_echo, NULL, &inl, NULL, 0), 0);
    sl_server_opts o = {.mux = *mux, .reactors = 1, .read_body_timeout_ns = SL_SEC(5)};
    return tc_server_start(&o, port);
}

static void test_refused_before_body(void **state)
{
    (void)state;
    int port;
    sl_mux *mux;
    sl_server *srv = start(&port, &mux);
    const char *reqs[] = {
        "POST /pooled HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: "
        "900000\r\n\r\n",
        "POST /inline HTTP/1.1\r\nHost: a\r\nX-Key: wrong!\r\nContent-Length: 900000\r\n\r\n",
        "POST /nowhere HTTP/1.1\r\nHost: a\r\nX-Key: secret\r\nExpect: 100-continue\r\n"
        "Content-Length: 900000\r\n\r\n",
        "POST /task HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: "
        "900000\r\n\r\n",
        /* the body on its way already: the refusal still comes first, and the close */
        "POST /task HTTP/1.1\r\nHost: a\r\nX-Key: wrong!\r\nContent-Length: 10\r\n\r\n"
        "0123456789"};
    const int want[] = {401, 401, 404, 401, 401};
    for (int i = 0; i < 5; i++) {
        tc_conn c;
        tc_init(&c, tc_connect(port));
        assert_true(tc_sends(c.fd, reqs[i]));
        int64_t t0 = sl_mono_ns();
        tc_resp r;
        int interim = 0;
        assert_int_equal(tc_read_response_ex(&c, &r, false, 3000, &interim), 0);
        assert_int_equal(r.status, want[i]);
        assert_int_equal(interim, 0); /* no 100 Continue for a body nobody reads */
        assert_true(sl_mono_ns() - t0 < SL_SEC(1));
        tc_resp_free(&r);
        assert_true(tc_wait_eof(&c, 3000));
        close(c.fd);
        assert_true(SL_WAIT_UNTIL(atomic_load(&hooked_status) == want[i], 2000));
        atomic_store(&hooked_status, 0);
    }
    sl_server_free(srv);
    sl_mux_free(mux);
}

static void test_accepted_body_keeps_state(void **state)
{
    (void)state;
    int port;
    sl_mux *mux;
    sl_server *srv = start(&port, &mux);
    enum { BODY = 300000 }; /* grows the read buffer several times: it moves */
    char *body = malloc(BODY);
    memset(body, 'b', BODY);
    const char *paths[] = {"/pooled", "/inline", "/task"};
    tc_conn c;
    tc_init(&c, tc_connect(port));
    for (int i = 0; i < 3; i++) {
        atomic_store(&befores, 0);
        atomic_store(&parked_done, 0);
        char head[256];
        snprintf(head, sizeof head,
                 "POST %s HTTP/1.1\r\nHost: a\r\nX-Key: secret\r\nX-Tag: tag-%d\r\n"
                 "Expect: 100-continue\r\nContent-Length: %d\r\n\r\n",
                 paths[i], i, BODY);
        assert_true(tc_sends(c.fd, head));
        /* 100 Continue comes once the before hooks passed. */
        assert_true(tc_fill(&c, 3000) > 0);
        assert_non_null(memmem(c.buf, c.len, "100 Continue", 12));
        assert_int_equal(atomic_load(&befores), 1);
        /* On the task route the hook parked first: the body was invited only after. */
        assert_int_equal(atomic_load(&parked_done), i == 2);
        for (size_t off = 0; off < BODY; off += 50000)
            assert_true(tc_send(c.fd, body + off, 50000));
        tc_resp r;
        assert_int_equal(tc_read_response(&c, &r), 0);
        assert_int_equal(r.status, 200);
        char want[64];
        snprintf(want, sizeof want, "checked tag-%d %d", i, BODY);
        assert_string_equal(r.body, want);
        tc_resp_free(&r);
        assert_int_equal(atomic_load(&befores), 1); /* the hooks ran once */
        assert_true(SL_WAIT_UNTIL(atomic_load(&hooked_status) == 200, 2000));
        assert_string_equal(hooked_path, paths[i]);
        atomic_store(&hooked_status, 0);
    }
    close(c.fd);
    /* A body that never completes: the hooks see 499 and the request's path. */
    tc_init(&c, tc_connect(port));
    assert_true(tc_sends(c.fd, "POST /inline HTTP/1.1\r\nHost: a\r\nX-Key: secret\r\n"
                               "Content-Length: 300000\r\n\r\n"));
    assert_true(tc_send(c.fd, body, 200000));
    close(c.fd);
    assert_true(SL_WAIT_UNTIL(atomic_load(&hooked_status) == 499, 3000));
    assert_string_equal(hooked_path, "/inline");
    atomic_store(&hooked_status, 0);
    /* The same on a task route, whose hooks ran in a task before the body. */
    tc_init(&c, tc_connect(port));
    assert_true(tc_sends(c.fd, "POST /task HTTP/1.1\r\nHost: a\r\nX-Key: secret\r\n"
                               "Content-Length: 300000\r\n\r\n"));
    assert_true(tc_send(c.fd, body, 200000));
    assert_true(SL_WAIT_UNTIL(atomic_load(&parked_done) == 1, 3000));
    close(c.fd);
    assert_true(SL_WAIT_UNTIL(atomic_load(&hooked_status) == 499, 3000));
    assert_string_equal(hooked_path, "/task");
    free(body);
    sl_server_free(srv);
    sl_mux_free(mux);
}

/* A task route's hook parked at head time (its body not yet read) when the client leaves: the
 * request's ctx is cancelled, the hook returns at once, the handler never runs, and the after
 * hooks see 499. Then a request on a new connection is served as usual. */
static void test_task_hook_parked_client_gone(void **state)
{
    (void)state;
    int port;
    sl_mux *mux;
    sl_server *srv = start(&port, &mux);
    atomic_store(&park_ns, SL_SEC(10));
    atomic_store(&parked_done, 0);
    atomic_store(&hooked_status, 0);
    atomic_store(&befores, 0);
    tc_conn c;
    tc_init(&c, tc_connect(port));
    assert_true(tc_sends(c.fd, "POST /task HTTP/1.1\r\nHost: a\r\nX-Key: secret\r\n"
                               "Expect: 100-continue\r\nContent-Length: 5000\r\n\r\n"));
    assert_true(SL_WAIT_UNTIL(atomic_load(&befores) == 1, 3000));
    int64_t t0 = sl_mono_ns();
    close(c.fd);
    assert_true(SL_WAIT_UNTIL(atomic_load(&parked_done) == 1, 3000));
    assert_true(sl_mono_ns() - t0 < SL_MS(1000)); /* cancelled, not the 10 s park */
    assert_true(SL_WAIT_UNTIL(atomic_load(&hooked_status) == 499, 3000));
    assert_string_equal(hooked_path, "/task");
    atomic_store(&park_ns, SL_MS(20));
    tc_init(&c, tc_connect(port));
    assert_true(tc_sends(c.fd, "POST /task HTTP/1.1\r\nHost: a\r\nX-Key: secret\r\n"
                               "X-Tag: t\r\nContent-Length: 3\r\n\r\nabc"));
    tc_resp r;
    assert_int_equal(tc_read_response(&c, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "checked t 3");
    tc_resp_free(&r);
    close(c.fd);
    sl_server_free(srv);
    sl_mux_free(mux);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_refused_before_body),
        cmocka_unit_test(test_accepted_body_keeps_state),
        cmocka_unit_test(test_task_hook_parked_client_gone),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
