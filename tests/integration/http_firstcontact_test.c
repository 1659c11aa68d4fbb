/* What a newcomer runs into first, failing loudly: listen refuses a port that another process
 * or another server owns (SO_REUSEPORT is only shared by one server's own loops), host names
 * resolve, constructors explain which field is wrong (sl_error_detail), a route added after the
 * server was built says so, and a rate-limit pattern that names no route (a "{id}" vs "{item}"
 * typo) stops the server from starting instead of leaving the route unlimited. */
#include "harness.h"
#include "http_client.h"

#include "sluice/mux.h"
#include "sluice/mw_ratelimit.h"
#include "http/http_int.h" /* mux->nmw: the one-call forms add one middleware each */

static void h_ok(sl_req *req, sl_resp *resp, void *arg)
{
    (void)req, (void)arg;
    sl_resp_printf(resp, "ok");
}

static sl_server *plain_server(int reactors)
{
    sl_server *srv;
    assert_int_equal(sl_server_new(&(sl_server_opts){.handler = h_ok, .reactors = reactors}, &srv),
                     0);
    return srv;
}

static void get_ok(int port)
{
    int fd = tc_connect(port);
    assert_true(fd >= 0);
    tc_conn c;
    tc_init(&c, fd);
    assert_true(tc_sends(fd, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
    tc_resp r;
    assert_int_equal(tc_read_response(&c, &r), 0);
    assert_string_equal(r.body, "ok");
    tc_resp_free(&r);
    close(fd);
}

static void test_two_servers_one_port(void **state)
{
    (void)state;
    sl_server *a = plain_server(2), *b = plain_server(2);
    int port = sl_server_listen(a, "127.0.0.1", 0);
    assert_true(port > 0);
    assert_int_equal(sl_server_listen(b, "127.0.0.1", port), SL_EADDRINUSE);
    assert_non_null(strstr(sl_error_detail(), "already in use"));
    /* The wildcard address overlaps 127.0.0.1 too. */
    assert_int_equal(sl_server_listen(b, "0.0.0.0", port), SL_EADDRINUSE);
    assert_int_equal(sl_server_serve(a), 0);
    assert_int_equal(sl_server_listen(b, "127.0.0.1", port), SL_EADDRINUSE); /* serving too */
    get_ok(port);
    sl_server_free(a);
    /* Once the owner is gone, the port is free again for the next server. */
    assert_int_equal(sl_server_listen(b, "127.0.0.1", port), port);
    assert_int_equal(sl_server_serve(b), 0);
    get_ok(port);
    sl_server_free(b);
}

/* A socket held by "another process": plain, and one that itself sets SO_REUSEPORT (which
 * a plain reuse-port bind would have joined). */
static void held_socket(bool reuseport)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (reuseport) setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(fd, 16), 0);
    socklen_t sl = sizeof sa;
    getsockname(fd, (struct sockaddr *)&sa, &sl);
    int port = ntohs(sa.sin_port);
    sl_server *srv = plain_server(2);
    assert_int_equal(sl_server_listen(srv, "127.0.0.1", port), SL_EADDRINUSE);
    char want[32];
    snprintf(want, sizeof want, "127.0.0.1:%d", port);
    assert_non_null(strstr(sl_error_detail(), want));
    sl_server_free(srv);
    close(fd);
}

static void test_port_held_by_plain_socket(void **state)
{
    (void)state;
    held_socket(false);
}

static void test_port_held_by_reuseport_socket(void **state)
{
    (void)state;
    held_socket(true);
}

static void test_host_names(void **state)
{
    (void)state;
    sl_server *srv = plain_server(1);
    int port = sl_server_listen(srv, "localhost", 0);
    assert_true(port > 0); /* resolved; IPv4 first, as Go does */
    assert_int_equal(sl_server_listen(srv, "no-such-host.invalid", 0), SL_ENOENT);
    assert_non_null(strstr(sl_error_detail(), "no-such-host.invalid"));
    assert_int_equal(sl_server_listen(srv, "", 0), SL_EINVAL);
    assert_int_equal(sl_server_listen(srv, "127.0.0.1", 70000), SL_EINVAL);
    assert_non_null(strstr(sl_error_detail(), "70000"));
    assert_int_equal(sl_server_serve(srv), 0);
    get_ok(port);
    sl_server_free(srv);
}

static void test_constructor_errors_name_the_field(void **state)
{
    (void)state;
    sl_server *srv = NULL;
    assert_int_equal(sl_server_new(&(sl_server_opts){0}, &srv), SL_EINVAL);
    assert_null(srv);
    assert_non_null(strstr(sl_error_detail(), ".handler"));
    assert_non_null(strstr(sl_error_detail(), ".mux"));
    assert_int_equal(sl_server_new(&(sl_server_opts){.handler = h_ok, .reactors = -1}, &srv),
                     SL_EINVAL);
    assert_non_null(strstr(sl_error_detail(), "reactors"));
    assert_int_equal(
        sl_server_new(&(sl_server_opts){.handler = h_ok, .max_body_bytes = 1ull << 40}, &srv),
        SL_EINVAL);
    assert_non_null(strstr(sl_error_detail(), "max_body_bytes"));
    sl_mux *mux;
    assert_int_equal(sl_mux_new(&(sl_mux_opts){.handler_workers = -2}, &mux), SL_EINVAL);
    assert_non_null(strstr(sl_error_detail(), "handler_workers"));
    assert_int_equal(sl_mux_use(NULL, NULL), SL_EINVAL);
    assert_true(strlen(sl_error_detail()) > 0);
    /* Both handler and mux set. */
    assert_int_equal(sl_mux_new(NULL, &mux), 0);
    assert_int_equal(sl_server_new(&(sl_server_opts){.handler = h_ok, .mux = mux}, &srv),
                     SL_EINVAL);
    assert_non_null(strstr(sl_error_detail(), "both are set"));
    sl_mux_free(mux);
    /* The other constructors a newcomer meets first. */
    sl_pool *pool;
    assert_int_equal(sl_pool_new(&(sl_pool_opts){.retry = {.multiplier = 0.5}}, &pool), SL_EINVAL);
    assert_non_null(strstr(sl_error_detail(), "retry.multiplier"));
    sl_chan *ch;
    assert_int_equal(sl_chan_new(0, 4, &ch), SL_EINVAL);
    assert_non_null(strstr(sl_error_detail(), "elem_size"));
    sl_map *map;
    assert_int_equal(sl_map_new(&(sl_map_opts){.shards = 3}, &map), SL_EINVAL);
    assert_non_null(strstr(sl_error_detail(), "shards"));
    sl_logger *lg;
    assert_int_equal(sl_logger_new(&(sl_log_opts){.fd = -1}, &lg), SL_EINVAL);
    assert_non_null(strstr(sl_error_detail(), ".fd"));
}

static void test_route_after_build_says_so(void **state)
{
    (void)state;
    sl_mux *mux;
    assert_int_equal(sl_mux_new(&(sl_mux_opts){.handler_workers = 1}, &mux), 0);
    assert_int_equal(sl_mux_handle_fn(mux, "GET /a", h_ok, NULL), 0);
    assert_int_equal(sl_mux_handle_inline(mux, "GET /b", h_ok, NULL), 0);
    assert_int_equal(sl_mux_use_request_id(mux), 0);
    assert_int_equal(sl_mux_use_access_log(mux, NULL), 0);
    assert_int_equal(mux->nmw, 2); /* one call each */
    sl_server *srv;
    assert_int_equal(sl_server_new(&(sl_server_opts){.mux = mux, .reactors = 1}, &srv), 0);
    char err[256] = "untouched";
    assert_int_equal(sl_mux_handle(mux, "GET /late", h_ok, NULL, NULL, err, sizeof err), SL_EBUSY);
    assert_non_null(strstr(err, "GET /late"));
    assert_non_null(strstr(err, "before sl_server_new"));
    assert_string_equal(sl_error_detail(), err);
    assert_int_equal(sl_mux_handle_fn(mux, "GET /late2", h_ok, NULL), SL_EBUSY);
    assert_non_null(strstr(sl_error_detail(), "GET /late2"));
    assert_int_equal(sl_mux_use_request_id(mux), SL_EBUSY);
    assert_non_null(strstr(sl_error_detail(), "before sl_server_new"));
    sl_server *two;
    assert_int_equal(sl_server_new(&(sl_server_opts){.mux = mux, .reactors = 1}, &two), SL_EBUSY);
    assert_non_null(strstr(sl_error_detail(), "another live server"));
    sl_server_free(srv);
    sl_mux_free(mux);
}

static void test_ratelimit_pattern_typo(void **state)
{
    (void)state;
    sl_ratelimit *rl;
    sl_ratelimit_rule rule = {.kind = SL_RATELIMIT_IP, .name = "ip", .limit = 1, .burst = 1};
    assert_int_equal(sl_ratelimit_new(&(sl_ratelimit_config){.rules = &rule, .nrules = 1}, &rl), 0);
    const char *pats[] = {"GET /items", "GET /items/{id}"};
    sl_mw_ratelimit *lim;
    assert_int_equal(
        sl_mw_ratelimit_new(&(sl_mw_ratelimit_opts){.policy = rl, .patterns = pats, .npatterns = 2},
                            &lim),
        0);
    sl_mux *mux;
    assert_int_equal(sl_mux_new(&(sl_mux_opts){.handler_workers = 1}, &mux), 0);
    assert_int_equal(sl_mw_ratelimit_use(lim, mux), 0);
    assert_int_equal(sl_mux_handle_fn(mux, "GET /items", h_ok, NULL), 0);
    assert_int_equal(sl_mux_handle_fn(mux, "GET /items/{item}", h_ok, NULL), 0);
    sl_server *srv = NULL;
    assert_int_equal(sl_server_new(&(sl_server_opts){.mux = mux, .reactors = 1}, &srv), SL_ENOENT);
    assert_null(srv);
    assert_non_null(strstr(sl_error_detail(), "\"GET /items/{id}\""));
    assert_non_null(strstr(sl_error_detail(), "ratelimit"));
    sl_mux_free(mux);

    /* Fixed: the same patterns against routes that exist start fine and limit. */
    assert_int_equal(sl_mux_new(&(sl_mux_opts){.handler_workers = 1}, &mux), 0);
    assert_int_equal(sl_mw_ratelimit_use(lim, mux), 0);
    assert_int_equal(sl_mux_handle_inline(mux, "GET /items", h_ok, NULL), 0);
    assert_int_equal(sl_mux_handle_inline(mux, "GET /items/{id}", h_ok, NULL), 0);
    int port;
    srv = tc_server_start(&(sl_server_opts){.mux = mux, .reactors = 1}, &port);
    int fd = tc_connect(port);
    assert_true(fd >= 0);
    tc_conn c;
    tc_init(&c, fd);
    int statuses[2];
    for (int i = 0; i < 2; i++) {
        assert_true(tc_sends(fd, "GET /items/7 HTTP/1.1\r\nHost: x\r\n\r\n"));
        tc_resp r;
        assert_int_equal(tc_read_response(&c, &r), 0);
        statuses[i] = r.status;
        tc_resp_free(&r);
    }
    assert_int_equal(statuses[0], 200);
    assert_int_equal(statuses[1], 429); /* burst 1: the route is limited */
    close(fd);
    sl_server_free(srv);
    sl_mux_free(mux);
    sl_mw_ratelimit_free(lim);
    sl_ratelimit_free(rl);
}

/* Per-route middleware: attached at registration, so there is no pattern to mistype. */
static char trace[64];
static atomic_int ntrace;

static sl_mw_action tr_before(sl_req *req, sl_resp *resp, void *arg)
{
    (void)req, (void)resp;
    int i = atomic_fetch_add(&ntrace, 1);
    if (i < (int)sizeof trace - 1) trace[i] = *(const char *)arg;
    return SL_MW_NEXT;
}

static void tr_after(sl_req *req, const sl_resp *resp, void *arg)
{
    (void)req, (void)resp;
    int i = atomic_fetch_add(&ntrace, 1);
    if (i < (int)sizeof trace - 1) trace[i] = (char)(*(const char *)arg - 'a' + 'A');
}

static void test_route_middleware(void **state)
{
    (void)state;
    sl_ratelimit *rl;
    sl_ratelimit_rule rule = {.kind = SL_RATELIMIT_IP, .name = "ip", .limit = 1, .burst = 1};
    assert_int_equal(sl_ratelimit_new(&(sl_ratelimit_config){.rules = &rule, .nrules = 1}, &rl), 0);
    sl_mw_ratelimit *lim;
    assert_int_equal(sl_mw_ratelimit_new(&(sl_mw_ratelimit_opts){.policy = rl}, &lim), 0);
    sl_mux *mux;
    assert_int_equal(sl_mux_new(&(sl_mux_opts){.handler_workers = 1}, &mux), 0);
    static const char a = 'a', b = 'b';
    assert_int_equal(
        sl_mux_use(mux,
                   &(sl_middleware){.before = tr_before, .after = tr_after, .arg = (void *)&a}),
        0);
    sl_middleware route_mw[2];
    sl_mw_ratelimit_middleware(lim, &route_mw[1]);
    route_mw[0] = (sl_middleware){.before = tr_before, .after = tr_after, .arg = (void *)&b};
    sl_route_opts ro = {.mode = SL_ROUTE_INLINE, .middleware = route_mw, .nmiddleware = 2};
    assert_int_equal(sl_mux_handle(mux, "GET /limited/{item}", h_ok, NULL, &ro, NULL, 0), 0);
    assert_int_equal(sl_mux_handle_inline(mux, "GET /free", h_ok, NULL), 0);
    sl_route_opts bad = {.middleware = &(sl_middleware){0}, .nmiddleware = 1};
    assert_int_equal(sl_mux_handle(mux, "GET /bad", h_ok, NULL, &bad, NULL, 0), SL_EINVAL);
    assert_non_null(strstr(sl_error_detail(), "middleware[0]"));
    int port;
    sl_server *srv = tc_server_start(&(sl_server_opts){.mux = mux, .reactors = 1}, &port);
    int fd = tc_connect(port);
    assert_true(fd >= 0);
    tc_conn c;
    tc_init(&c, fd);
    const char *paths[] = {"/limited/1", "/free", "/limited/2", "/free"};
    int want[] = {200, 200, 429, 200};
    for (int i = 0; i < 4; i++) {
        char raw[128];
        snprintf(raw, sizeof raw, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", paths[i]);
        assert_true(tc_sends(fd, raw));
        tc_resp r;
        assert_int_equal(tc_read_response(&c, &r), 0);
        assert_int_equal(r.status, want[i]);
        tc_resp_free(&r);
    }
    close(fd);
    sl_server_free(srv);
    /* Mux middleware first, then the route's; after hooks in reverse; the 429 stops the chain
     * inside the route's middleware but every after hook whose before ran still runs. */
    trace[atomic_load(&ntrace)] = '\0';
    assert_string_equal(trace, "abBA"
                               "aA"
                               "abBA"
                               "aA");
    sl_mux_free(mux);
    sl_mw_ratelimit_free(lim);
    sl_ratelimit_free(rl);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_two_servers_one_port),
        cmocka_unit_test(test_port_held_by_plain_socket),
        cmocka_unit_test(test_port_held_by_reuseport_socket),
        cmocka_unit_test(test_host_names),
        cmocka_unit_test(test_constructor_errors_name_the_field),
        cmocka_unit_test(test_route_after_build_says_so),
        cmocka_unit_test(test_ratelimit_pattern_typo),
        cmocka_unit_test(test_route_middleware),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
