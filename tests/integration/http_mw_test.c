/* sl_mw_ratelimit and sl_mw_metrics on a real in-process server: which requests the limiter
 * applies to, the exact 429 answer and the quota headers on an allowed (pooled) response,
 * its counters; the metrics middleware's series (route/method/code, latency histogram,
 * in-flight back to 0), callback gauges over the server, a pool and a policy, the /metrics
 * handler's output through the strict format checker, and unregistration. */
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "http_client.h"
#include "sluice/mux.h"
#include "sluice/mw_metrics.h"
#include "sluice/mw_ratelimit.h"
#include "../unit/obs/prom_check.h"

static void ok_handler(sl_req *req, sl_resp *resp, void *arg)
{
    (void)req, (void)arg;
    sl_resp_set_content_type(resp, "text/plain");
    sl_resp_set_body_static(resp, "ok", 2);
}

typedef struct fixture {
    sl_metrics *reg;
    sl_ratelimit *rl;
    sl_mw_ratelimit *lim;
    sl_mw_metrics *met;
    sl_mux *mux;
    sl_server *srv;
    sl_obs *obs;
    sl_pool *pool;
    int port;
} fixture;

static int noop_job(sl_ctx *ctx, void *arg)
{
    (void)ctx, (void)arg;
    return 0;
}

static void setup(fixture *f)
{
    memset(f, 0, sizeof *f);
    assert_int_equal(sl_metrics_new(&f->reg), 0);
    sl_ratelimit_rule rule = {.kind = SL_RATELIMIT_IP, .name = "ip", .limit = 0.5, .burst = 2};
    assert_int_equal(sl_ratelimit_new(&(sl_ratelimit_config){.rules = &rule, .nrules = 1}, &f->rl),
                     0);
    const char *pats[] = {"GET /limited", "GET /pooled"};
    assert_int_equal(
        sl_mw_ratelimit_new(
            &(sl_mw_ratelimit_opts){.policy = f->rl, .patterns = pats, .npatterns = 2}, &f->lim),
        0);
    assert_int_equal(sl_mw_metrics_new(&(sl_mw_metrics_opts){.registry = f->reg}, &f->met), 0);
    assert_int_equal(sl_mux_new(&(sl_mux_opts){.handler_workers = 2}, &f->mux), 0);
    sl_middleware m;
    sl_mw_metrics_middleware(f->met, &m);
    assert_int_equal(sl_mux_use(f->mux, &m), 0);
    sl_mw_ratelimit_middleware(f->lim, &m);
    assert_int_equal(sl_mux_use(f->mux, &m), 0);
    sl_route_opts in = {.mode = SL_ROUTE_INLINE};
    assert_int_equal(sl_mux_handle(f->mux, "GET /limited", ok_handler, NULL, &in, NULL, 0), 0);
    assert_int_equal(sl_mux_handle(f->mux, "GET /pooled", ok_handler, NULL, NULL, NULL, 0), 0);
    assert_int_equal(sl_mux_handle(f->mux, "GET /free", ok_handler, NULL, &in, NULL, 0), 0);
    assert_int_equal(
        sl_mux_handle(f->mux, "GET /metrics", sl_metrics_handler, f->reg, &in, NULL, 0), 0);
    sl_server_opts so = {.mux = f->mux, .reactors = 2};
    f->srv = tc_server_start(&so, &f->port);
    assert_int_equal(sl_pool_new(&(sl_pool_opts){.name = "t", .workers = 1}, &f->pool), 0);
    assert_int_equal(sl_obs_new(f->reg, &f->obs), 0);
    assert_int_equal(sl_obs_server(f->obs, "api", f->srv), 0);
    assert_int_equal(sl_obs_server(f->obs, "api", f->srv), SL_EEXIST);
    assert_int_equal(sl_obs_pool(f->obs, "jobs", f->pool), 0);
    assert_int_equal(sl_obs_ratelimit(f->obs, f->rl), 0);
}

static void teardown(fixture *f)
{
    sl_obs_free(f->obs);
    assert_int_equal(sl_server_shutdown(f->srv, NULL), 0);
    sl_server_free(f->srv);
    sl_mux_free(f->mux);
    sl_mw_metrics_free(f->met);
    sl_mw_ratelimit_free(f->lim);
    sl_ratelimit_free(f->rl);
    sl_pool_free(f->pool);
    sl_metrics_free(f->reg);
}

static int get(int port, const char *path, tc_resp *r)
{
    int fd = tc_connect(port);
    assert_true(fd >= 0);
    tc_conn *c = malloc(sizeof *c);
    tc_init(c, fd);
    char raw[256];
    snprintf(raw, sizeof raw, "GET %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", path);
    assert_true(tc_sends(fd, raw));
    assert_int_equal(tc_read_response_ex(c, r, false, 20000, NULL), 0);
    free(c);
    close(fd);
    return r->status;
}

static void expect_hdr(const tc_resp *r, const char *name, const char *want)
{
    char v[256];
    if (!tc_find_hdr(r->head, name, v, sizeof v)) fail_msg("no %s in:\n%s", name, r->head);
    if (strcmp(v, want)) fail_msg("%s: got '%s', want '%s'", name, v, want);
}

static void test_ratelimit_mw(void **state)
{
    (void)state;
    fixture f;
    setup(&f);
    tc_resp r;
    /* Burst 2 over two limited routes (one key: the client IP); the pooled response carries
     * the quota headers added before the handler ran. */
    assert_int_equal(get(f.port, "/limited", &r), 200);
    expect_hdr(&r, "X-RateLimit-Remaining", "1");
    tc_resp_free(&r);
    assert_int_equal(get(f.port, "/pooled", &r), 200);
    expect_hdr(&r, "X-RateLimit-Remaining", "0");
    expect_hdr(&r, "RateLimit-Policy", "\"ip\";q=2;w=4");
    assert_string_equal(r.body, "ok");
    tc_resp_free(&r);
    assert_int_equal(get(f.port, "/pooled", &r), 429);
    expect_hdr(&r, "Retry-After", "2"); /* 1 token at 0.5/s */
    expect_hdr(&r, "Content-Type", "application/json");
    assert_string_equal(r.body, "{\"error\":\"rate limit exceeded\",\"retry_after\":2}");
    tc_resp_free(&r);
    /* Routes outside the pattern list, and unmatched ones, are not limited. */
    for (int i = 0; i < 5; i++) {
        assert_int_equal(get(f.port, "/free", &r), 200);
        char v[64];
        assert_null(tc_find_hdr(r.head, "X-RateLimit-Remaining", v, sizeof v));
        tc_resp_free(&r);
        assert_int_equal(get(f.port, "/nothing-here", &r), 404);
        tc_resp_free(&r);
    }
    sl_mw_ratelimit_stats st;
    sl_mw_ratelimit_stats_get(f.lim, &st);
    assert_int_equal(st.decided, 3);
    assert_int_equal(st.allowed, 2);
    assert_int_equal(st.rejected, 1);
    assert_int_equal(st.unauthorized, 0);
    teardown(&f);
}

static bool has_line(const char *text, const char *line)
{
    return strstr(text, line) != NULL;
}

static void test_metrics_mw(void **state)
{
    (void)state;
    fixture f;
    setup(&f);
    tc_resp r;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(get(f.port, "/free", &r), 200);
        tc_resp_free(&r);
    }
    assert_int_equal(get(f.port, "/pooled", &r), 200);
    tc_resp_free(&r);
    assert_int_equal(get(f.port, "/nothing-here", &r), 404);
    tc_resp_free(&r);
    assert_int_equal(sl_pool_submit(f.pool, &(sl_pool_job){.id = "j", .fn = noop_job}, NULL), 0);
    assert_int_equal(sl_pool_try_submit(f.pool, &(sl_pool_job){.id = "k", .fn = noop_job}), 0);
    /* The after hooks run on the reactor once responses are queued: wait for the last one. */
    const char *want[] = {
        "http_requests_total{route=\"GET /free\",method=\"GET\",code=\"200\"} 3\n",
        "http_requests_total{route=\"GET /pooled\",method=\"GET\",code=\"200\"} 1\n",
        "http_requests_total{route=\"unmatched\",method=\"GET\",code=\"404\"} 1\n",
        "http_request_duration_seconds_count{route=\"GET /free\"} 3\n",
        "http_requests_in_flight 1\n", /* the scrape itself */
        "sluice_http_connections_accepted_total{server=\"api\"} ",
        "sluice_pool_submitted_total{pool=\"jobs\"} 2\n",
        "sluice_ratelimit_allowed_total{rule=\"ip\"} 1\n",
        "sluice_ratelimit_keys{rule=\"ip\"} 1\n",
    };
    char *text = NULL;
    bool all = SL_WAIT_UNTIL(({
                                 tc_resp_free(&r);
                                 get(f.port, "/metrics", &r);
                                 bool ok = true;
                                 for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
                                     ok = ok && has_line(r.body, want[i]);
                                 ok;
                             }),
                             10000);
    text = r.body;
    if (!all) fail_msg("missing series in:\n%s", text);
    expect_hdr(&r, "Content-Type", SL_METRICS_CONTENT_TYPE);
    pc_state *s = calloc(1, sizeof *s);
    bool ok = pc_check(s, text);
    pc_done(s);
    if (!ok) fail_msg("invalid exposition: %s\n%s", s->err, text);
    free(s);
    tc_resp_free(&r);

    /* After sl_obs_free no family of it is scraped. */
    sl_obs_free(f.obs);
    f.obs = NULL;
    sl_buf b = {0};
    assert_int_equal(sl_metrics_write(f.reg, &b), 0);
    assert_null(strstr(b.data, "sluice_pool_"));
    assert_null(strstr(b.data, "sluice_http_connections"));
    assert_non_null(strstr(b.data, "http_requests_total"));
    sl_buf_destroy(&b);
    teardown(&f);
}

/* A second middleware in a fresh registry after the first was freed: the per-thread child
 * caches must not hand out the old children. */
static void test_metrics_generations(void **state)
{
    (void)state;
    for (int round = 0; round < 2; round++) {
        fixture f;
        setup(&f);
        tc_resp r;
        assert_int_equal(get(f.port, "/free", &r), 200);
        tc_resp_free(&r);
        assert_true(SL_WAIT_UNTIL(({
                                      get(f.port, "/metrics", &r);
                                      bool ok = has_line(r.body, "http_requests_total{route=\"GET "
                                                                 "/free\",method=\"GET\",code="
                                                                 "\"200\"} 1\n");
                                      tc_resp_free(&r);
                                      ok;
                                  }),
                                  10000));
        teardown(&f);
    }
}

static void test_bad_args(void **state)
{
    (void)state;
    sl_mw_ratelimit *m;
    assert_int_equal(sl_mw_ratelimit_new(NULL, &m), SL_EINVAL);
    assert_int_equal(sl_mw_ratelimit_new(&(sl_mw_ratelimit_opts){0}, &m), SL_EINVAL);
    sl_mw_ratelimit_free(NULL);
    sl_mw_metrics_free(NULL);
    sl_obs_free(NULL);
    sl_metrics *reg;
    assert_int_equal(sl_metrics_new(&reg), 0);
    sl_mw_metrics *a, *b;
    assert_int_equal(sl_mw_metrics_new(&(sl_mw_metrics_opts){.registry = reg}, &a), 0);
    assert_int_equal(sl_mw_metrics_new(&(sl_mw_metrics_opts){.registry = reg}, &b), SL_EEXIST);
    sl_mw_metrics_free(a);
    assert_int_equal(sl_mw_metrics_new(&(sl_mw_metrics_opts){.registry = reg}, &b), 0);
    sl_mw_metrics_free(b);
    sl_metrics_free(reg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ratelimit_mw),
        cmocka_unit_test(test_metrics_mw),
        cmocka_unit_test(test_metrics_generations),
        cmocka_unit_test(test_bad_args),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
