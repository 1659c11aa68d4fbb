/* Timeouts over real sockets, with short configured values (200 ms): read header (from accept
 * and from a request's first byte: slowloris), read body, idle keep-alive and write. On expiry:
 * 408 if a request had started, else a silent close. Waits are bounded conditions. */
#include "harness.h"
#include "http_client.h"

#include <stdatomic.h>

#define T_MS 200

static char g_big[1 << 20];

static void handler(sl_req *req, sl_resp *resp, void *arg)
{
    (void)arg;
    size_t n;
    const char *p = sl_req_path(req, &n);
    if (n == 4 && memcmp(p, "/big", 4) == 0)
        sl_resp_set_body_static(resp, g_big, sizeof g_big);
    else
        sl_resp_set_body_static(resp, "ok", 2);
}

static sl_server *start_idle(int *port, int64_t idle_ms)
{
    sl_server_opts o = {.handler = handler,
                        .reactors = 1,
                        .read_header_timeout_ns = SL_MS(T_MS),
                        .read_body_timeout_ns = SL_MS(T_MS),
                        .write_timeout_ns = SL_MS(T_MS),
                        .idle_timeout_ns = SL_MS(idle_ms)};
    return tc_server_start(&o, port);
}

static sl_server *start(int *port)
{
    return start_idle(port, T_MS);
}

/* Elapsed ms from t0 until the server closed the connection without sending anything. */
static int64_t silent_close_ms(tc_conn *c, int64_t t0)
{
    assert_true(tc_wait_eof(c, 5000));
    return (sl_mono_ns() - t0) / SL_MS(1);
}

static void test_new_connection_silent(void **state)
{
    (void)state;
    int port;
    sl_server *srv = start(&port);
    int64_t t0 = sl_mono_ns();
    tc_conn *c = tc_conn_new(port);
    int64_t ms = silent_close_ms(c, t0);
    assert_true(ms >= T_MS - 20);
    assert_true(ms < 3000);
    tc_conn_free(c);
    sl_server_free(srv);
}

static void test_partial_head_408(void **state)
{
    (void)state;
    int port;
    sl_server *srv = start(&port);
    tc_conn *c = tc_conn_new(port);
    int64_t t0 = sl_mono_ns();
    assert_true(tc_sends(c->fd, "GET / HTTP/1.1\r\nHost: a\r\n"));
    tc_resp r;
    assert_int_equal(tc_read_response(c, &r), 0);
    assert_int_equal(r.status, 408);
    tc_resp_free(&r);
    assert_true((sl_mono_ns() - t0) / SL_MS(1) >= T_MS - 20);
    assert_true(tc_wait_eof(c, 3000));
    tc_conn_free(c);
    sl_server_free(srv);
}

/* Slowloris: bytes keep coming, but the head's deadline is fixed from its first byte. */
static void test_slowloris(void **state)
{
    (void)state;
    int port;
    sl_server *srv = start(&port);
    tc_conn *c = tc_conn_new(port);
    int64_t t0 = sl_mono_ns();
    assert_true(tc_sends(c->fd, "GET / HTTP/1.1\r\n"));
    bool answered = false;
    for (int i = 0; i < 100 && !answered; i++) {
        /* Trickle one header byte per 20 ms; stop as soon as the server answers. */
        answered = tc_readable(c->fd, 20);
        if (!answered) tc_sends(c->fd, "X");
    }
    assert_true(answered);
    tc_resp r;
    assert_int_equal(tc_read_response(c, &r), 0);
    assert_int_equal(r.status, 408);
    tc_resp_free(&r);
    int64_t ms = (sl_mono_ns() - t0) / SL_MS(1);
    assert_true(ms >= T_MS - 20 && ms < 3 * T_MS + 500);
    tc_conn_free(c);
    sl_server_free(srv);
}

static void test_body_timeout_408(void **state)
{
    (void)state;
    int port;
    sl_server *srv = start(&port);
    tc_conn *c = tc_conn_new(port);
    assert_true(tc_sends(c->fd, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc"));
    tc_resp r;
    assert_int_equal(tc_read_response(c, &r), 0);
    assert_int_equal(r.status, 408);
    tc_resp_free(&r);
    assert_true(tc_wait_eof(c, 3000));
    tc_conn_free(c);
    sl_server_stats st;
    sl_server_stats_get(srv, &st);
    assert_int_equal(st.rejected, 1);
    sl_server_free(srv);
}

static void test_idle_keepalive(void **state)
{
    (void)state;
    int port;
    /* A wide margin (600 ms idle, requests 100 ms apart): a loaded machine may stall the
     * client between two requests, and that must not look like an idle timeout. */
    sl_server *srv = start_idle(&port, 3 * T_MS);
    tc_conn *c = tc_conn_new(port);
    /* Requests spaced below the timeout keep the connection. */
    int64_t t0 = 0;
    for (int i = 0; i < 3; i++) {
        assert_true(tc_sends(c->fd, "GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
        tc_resp r;
        assert_int_equal(tc_read_response(c, &r), 0);
        assert_int_equal(r.status, 200);
        tc_resp_free(&r);
        t0 = sl_mono_ns();
        assert_false(tc_readable(c->fd, T_MS / 2));
    }
    int64_t ms = silent_close_ms(c, t0);
    assert_true(ms >= 3 * T_MS - 20 && ms < 5000);
    tc_conn_free(c);
    assert_true(SL_WAIT_UNTIL(tc_stat_conns(srv) == 0, 3000));
    sl_server_free(srv);
}

/* A client that never reads: the server's writes stall, and the write timeout closes it. */
static void test_write_timeout(void **state)
{
    (void)state;
    int port;
    sl_server *srv = start(&port);
    int fd = tc_connect(port);
    assert_true(fd >= 0);
    int small = 4096;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    for (int i = 0; i < 8; i++)
        tc_sends(fd, "GET /big HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_true(SL_WAIT_UNTIL(tc_stat_requests(srv) >= 1, 3000));
    assert_true(SL_WAIT_UNTIL(tc_stat_conns(srv) == 0, 5000));
    close(fd);
    sl_server_free(srv);
}

/* Disabled timeouts (negative) never fire. */
static void test_disabled(void **state)
{
    (void)state;
    int port;
    sl_server_opts o = {
        .handler = handler, .reactors = 1, .read_header_timeout_ns = -1, .idle_timeout_ns = -1};
    sl_server *srv = tc_server_start(&o, &port);
    tc_conn *c = tc_conn_new(port);
    assert_false(tc_readable(c->fd, 2 * T_MS)); /* nothing, not even a close */
    assert_true(tc_sends(c->fd, "GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
    tc_resp r;
    assert_int_equal(tc_read_response(c, &r), 0);
    tc_resp_free(&r);
    assert_false(tc_readable(c->fd, 2 * T_MS));
    assert_int_equal(tc_stat_conns(srv), 1);
    tc_conn_free(c);
    sl_server_free(srv);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_connection_silent),
        cmocka_unit_test(test_partial_head_408),
        cmocka_unit_test(test_slowloris),
        cmocka_unit_test(test_body_timeout_408),
        cmocka_unit_test(test_idle_keepalive),
        cmocka_unit_test(test_write_timeout),
        cmocka_unit_test(test_disabled),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
