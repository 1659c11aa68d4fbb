/* The request API's strings are C strings: every accessor docs/handlers.md ("Strings") lists
 * returns a NUL-terminated value whose strlen equals its length, usable with strcmp and
 * printf("%s") — for inline and pooled routes, for a plain handler, for path values (also
 * "{rest...}"), header names and values (also empty ones and ones followed by whitespace),
 * query values, method and target. Under ASan a read past any view's end is a report. */
#include "harness.h"
#include "http_client.h"

#include "sluice/mux.h"

/* Appends "name=value;" for a C string, or "name=BAD;" when strlen and len disagree. */
static void put(sl_resp *resp, const char *name, const char *v, size_t len)
{
    if (!v)
        sl_resp_printf(resp, "%s=NULL;", name);
    else if (strlen(v) != len)
        sl_resp_printf(resp, "%s=BAD(%zu!=%zu);", name, strlen(v), len);
    else
        sl_resp_printf(resp, "%s=%s;", name, v);
}

static void h_strings(sl_req *req, sl_resp *resp, void *arg)
{
    (void)arg;
    size_t n = 0;
    const char *v;
    v = sl_req_method(req, &n);
    put(resp, "method", v, n);
    v = sl_req_target(req, &n);
    put(resp, "target", v, n);
    v = sl_req_path_value(req, "id", &n);
    put(resp, "id", v, n);
    v = sl_req_path_value(req, "rest", &n);
    if (v) put(resp, "rest", v, n);
    v = sl_req_header(req, "X-A", &n);
    put(resp, "xa", v, n);
    v = sl_req_header(req, "X-Empty", &n);
    put(resp, "xe", v, n);
    const char *vals[2];
    size_t lens[2];
    if (sl_req_header_values(req, "X-A", vals, lens, 2) == 1) put(resp, "xav", vals[0], lens[0]);
    const char *hn, *hv;
    size_t hnl, hvl;
    if (sl_req_header_at(req, 0, &hn, &hnl, &hv, &hvl) == 0) {
        put(resp, "h0n", hn, hnl);
        put(resp, "h0v", hv, hvl);
    }
    v = sl_req_query_value(req, "q", &n);
    put(resp, "q", v, n);
    v = sl_req_query(req, &n);
    put(resp, "rawq", v, n);
    v = sl_req_path_str(req);
    put(resp, "path", v, v ? strlen(v) : 0);
    /* strcmp is what a newcomer writes: it must see exactly the value. */
    sl_resp_printf(resp, "cmp=%d", strcmp(sl_req_header(req, "X-A", NULL), "abc") == 0);
}

static const char *REQ = "GET /s/42/x%20y?q=hi+there&z=1 HTTP/1.1\r\nHost: h\r\nX-A: abc   \r\n"
                         "X-Empty:\r\n\r\n";
static const char *WANT =
    "method=GET;target=/s/42/x%20y?q=hi+there&z=1;id=42;rest=x y;xa=abc;xe=;xav=abc;h0n=Host;"
    "h0v=h;q=hi there;rawq=q=hi+there&z=1;path=/s/42/x%20y;cmp=1";

static void check(int port, const char *raw, const char *want)
{
    int fd = tc_connect(port);
    assert_true(fd >= 0);
    tc_conn c;
    tc_init(&c, fd);
    assert_true(tc_sends(fd, raw));
    tc_resp r;
    assert_int_equal(tc_read_response(&c, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, want);
    tc_resp_free(&r);
    close(fd);
}

static void run_mux(sl_route_mode mode)
{
    sl_mux *mux;
    assert_int_equal(sl_mux_new(NULL, &mux), 0);
    sl_route_opts ro = {.mode = mode};
    assert_int_equal(sl_mux_handle(mux, "GET /s/{id}/{rest...}", h_strings, NULL, &ro, NULL, 0), 0);
    int port;
    sl_server *srv = tc_server_start(&(sl_server_opts){.mux = mux, .reactors = 1}, &port);
    check(port, REQ, WANT);
    /* Pipelined: the second head follows the first in the same buffer. */
    char two[512];
    snprintf(two, sizeof two, "%s%s", REQ, REQ);
    int fd = tc_connect(port);
    assert_true(fd >= 0);
    tc_conn c;
    tc_init(&c, fd);
    assert_true(tc_sends(fd, two));
    for (int i = 0; i < 2; i++) {
        tc_resp r;
        assert_int_equal(tc_read_response(&c, &r), 0);
        assert_string_equal(r.body, WANT);
        tc_resp_free(&r);
    }
    close(fd);
    sl_server_free(srv);
    sl_mux_free(mux);
}

static void test_inline_route(void **state)
{
    (void)state;
    run_mux(SL_ROUTE_INLINE);
}

static void test_pooled_route(void **state)
{
    (void)state;
    run_mux(SL_ROUTE_POOLED);
}

static void test_plain_handler(void **state)
{
    (void)state;
    int port;
    sl_server *srv = tc_server_start(&(sl_server_opts){.handler = h_strings, .reactors = 1}, &port);
    check(port, "POST /plain HTTP/1.1\r\nHost: h\r\nX-A:abc\r\nX-Empty:  \r\n\r\n",
          "method=POST;target=/plain;id=NULL;xa=abc;xe=;xav=abc;h0n=Host;h0v=h;q=NULL;"
          "rawq=NULL;path=/plain;cmp=1");
    sl_server_free(srv);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_inline_route),
        cmocka_unit_test(test_pooled_route),
        cmocka_unit_test(test_plain_handler),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
