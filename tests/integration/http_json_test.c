/* The JSON helpers over real requests: a body parsed into jansson values, a 400 that names the
 * line and column where parsing stopped (also for an empty body and trailing bytes), the depth
 * limit with its position, the size limit as 413, and JSON responses (borrowed and stolen
 * values, a NULL from a failed json_pack as 500). */
#include <jansson.h>

#include "harness.h"
#include "http_client.h"

#include "sluice/json.h"
#include "sluice/mux.h"

static void h_echo(sl_req *req, sl_resp *resp, void *arg)
{
    (void)arg;
    json_t *in;
    if (sl_json_read_body(req, resp, &(sl_json_opts){.max_bytes = 200, .max_depth = 3}, &in) < 0)
        return;
    json_t *o = json_pack("{s:O, s:b}", "got", in, "object", json_is_object(in));
    if (sl_json_write(resp, 201, o) != 0) sl_resp_set_status(resp, 599); /* no asserts off main */
    json_decref(o);
    json_decref(in);
}

static void h_null(sl_req *req, sl_resp *resp, void *arg)
{
    (void)req, (void)arg;
    if (sl_json_write_new(resp, 200, NULL) != SL_ENOMEM) sl_resp_set_status(resp, 599);
}

static tc_resp post(int port, const char *path, const char *body)
{
    int fd = tc_connect(port);
    assert_true(fd >= 0);
    tc_conn c;
    tc_init(&c, fd);
    char raw[1024];
    snprintf(raw, sizeof raw, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\n\r\n%s", path,
             strlen(body), body);
    assert_true(tc_sends(fd, raw));
    tc_resp r;
    assert_int_equal(tc_read_response(&c, &r), 0);
    close(fd);
    return r;
}

static void expect(int port, const char *body, int status, const char *want)
{
    tc_resp r = post(port, "/echo", body);
    assert_int_equal(r.status, status);
    if (!strstr(r.body, want)) fail_msg("body %s lacks %s", r.body, want);
    tc_resp_free(&r);
}

static void test_json(void **state)
{
    (void)state;
    sl_mux *mux;
    assert_int_equal(sl_mux_new(&(sl_mux_opts){.handler_workers = 1}, &mux), 0);
    assert_int_equal(sl_mux_handle_fn(mux, "POST /echo", h_echo, NULL), 0);
    assert_int_equal(sl_mux_handle_inline(mux, "POST /null", h_null, NULL), 0);
    int port;
    sl_server *srv = tc_server_start(&(sl_server_opts){.mux = mux, .reactors = 1}, &port);

    expect(port, "{\"a\":[1,2]}", 201, "{\"got\":{\"a\":[1,2]},\"object\":true}");
    expect(port, "7", 201, "{\"got\":7,\"object\":false}");
    /* Where parsing stopped, in the message. */
    expect(port, "{\"a\":1,\n \"b\":}", 400, "invalid JSON at line 2, column");
    expect(port, "", 400, "invalid JSON at line 1");
    expect(port, "{} x", 400, "invalid JSON at line 1, column");
    expect(port, "{\"a\":1,\"a\":2}", 400, "duplicate object key");
    /* Depth 3 is allowed, 4 is not; brackets inside strings do not count. */
    expect(port, "[[[\"[[[[\"]]]", 201, "\"got\":[[[\"[[[[\"]]]");
    expect(port, "[[\n [[1]]]]", 400, "nested deeper than 3 levels at line 2, column 3");
    /* max_bytes 200 */
    char big[400];
    memset(big, ' ', 300);
    strcpy(big + 300, "{}");
    expect(port, big, 413, "larger than 200 bytes");
    /* The error body is itself valid JSON. */
    tc_resp r = post(port, "/echo", "{");
    json_error_t je;
    json_t *e = json_loads(r.body, 0, &je);
    assert_non_null(e);
    assert_true(json_is_string(json_object_get(e, "error")));
    json_decref(e);
    tc_resp_free(&r);
    r = post(port, "/null", "");
    assert_int_equal(r.status, 500);
    assert_non_null(strstr(r.body, "cannot build"));
    tc_resp_free(&r);
    sl_server_free(srv);
    sl_mux_free(mux);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_json)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
