/* sluice-demo: every pattern of the Go seed in one small API (see docs/demo.md).
 *
 * Start-up builds, in order: logger, metrics registry, user store, job pool, rate-limit
 * policies and their middleware, the mux with its routes, the server; then it prints the
 * routes and curl lines and serves until SIGINT/SIGTERM (sl_signal_ctx).
 *
 * Shutdown follows DESIGN.md's order, and reports each step on stdout:
 *   1. the server stops accepting and lets in-flight requests finish within --grace-ms
 *      (then cancels the rest: their request ctx fires, so /search stops);
 *   2. the job pool drains within --jobs-drain-ms; jobs that could not finish are handed to
 *      on_abandoned, which logs each one (nothing is dropped silently);
 *   3. a summary line with the job counts: submitted = succeeded + failed + dead + abandoned;
 *   4. everything is freed in reverse order (metrics callbacks first, as they read the
 *      objects), and the process exits 0.
 * With --redis URL the background jobs live in Redis Streams instead (rjobs.c): shutdown step
 * 2 then stops and joins the job workers, and a job still running stays pending in Redis for
 * any instance to reclaim; the summary counts this instance's submits and runs. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "demo.h"
#include "routes.h"
#include "sluice/mw_metrics.h"
#include "sluice/mw_ratelimit.h"

typedef struct http_side {
    sl_metrics *reg;
    sl_ratelimit *auth, *limits;
    sl_mw_ratelimit *auth_mw, *limits_mw;
    sl_mw_metrics *metrics_mw;
    sl_mux *mux;
    sl_server *srv;
    sl_obs *obs;
    sl_ratelimit_tier_entry keys[DEMO_MAX_KEYS];
} http_side;

/* The routes, with their mode and whether they need an API key. Handlers that wait (the job
 * queue's room, an sl_group) are task routes: their waits park the task, not a thread. The
 * tiny ones that never wait stay inline. /search stays pooled on purpose: it is the demo's
 * slow route on the handler pool, whose saturation /healthz reports and --handler-workers
 * sizes (tests/integration/demo_e2e_test.c, test_healthz_saturated). */
typedef struct route {
    const char *pattern;
    sl_handler_fn fn;
    sl_route_mode mode;
    bool key;
    const char *curl; /* %d: the port */
} route;

static const route routes[] = {
    {"POST /users", demo_create_user, SL_ROUTE_TASK, true,
     "curl -i -H 'X-API-Key: demo-pro' -d '{\"name\":\"Ada\",\"email\":\"ada@example.com\"}' "
     "http://127.0.0.1:%d/users"},
    {"GET /users/{id}", demo_get_user, SL_ROUTE_INLINE, true,
     "curl -i -H 'X-API-Key: demo-pro' http://127.0.0.1:%d/users/1"},
    {"POST /webhooks", demo_webhook, SL_ROUTE_INLINE, false,
     "curl -i -d '{\"event\":\"order.paid\"}' http://127.0.0.1:%d/webhooks"},
    {"GET /search", demo_search, SL_ROUTE_POOLED, false,
     "curl -i 'http://127.0.0.1:%d/search?q=sluice'   (Ctrl-C it: the search stops)"},
    {"POST /batch", demo_batch, SL_ROUTE_TASK, true,
     "curl -i -H 'X-API-Key: demo-pro' -d '{\"items\":[\"a\",\"b\",\"fail\",\"c\"]}' "
     "http://127.0.0.1:%d/batch"},
    {"POST /webhooks/receiver", demo_webhook_receiver, SL_ROUTE_INLINE, false,
     "curl -s http://127.0.0.1:%d/metrics | grep webhooks_   (delivered to the receiver)"},
    {"GET /healthz", demo_healthz, SL_ROUTE_INLINE, false, "curl -i http://127.0.0.1:%d/healthz"},
    {"GET /metrics", sl_metrics_handler, SL_ROUTE_INLINE, false,
     "curl -s http://127.0.0.1:%d/metrics | grep -v '^#'"},
};
#define NROUTES (sizeof routes / sizeof routes[0])

static bool limited_pattern(const char *p)
{
    /* The receiver is exempt: the demo's own deliveries come from loopback in bursts. */
    return !p || (strcmp(p, "GET /healthz") && strcmp(p, "GET /metrics") &&
                  strcmp(p, "POST /webhooks/receiver"));
}

/* With --redis a webhook is a blocking Redis round trip (sl_redis_jobs on the calling thread):
 * it may not hold a loop, so it is pooled. The shared per-IP check (a Redis rule of the limits
 * policy) parks the task of a task route; a limited route that would be inline becomes a task
 * route so its check can wait. With --db a user read is an sl_db query, which parks a task: a
 * task route. */
static sl_route_mode route_mode(const demo_app *app, const route *r)
{
    if (app->cfg.redis && r->fn == demo_webhook) return SL_ROUTE_POOLED;
    if (app->rlimit && limited_pattern(r->pattern) && r->mode == SL_ROUTE_INLINE)
        return SL_ROUTE_TASK;
    if (app->db && r->fn == demo_get_user) return SL_ROUTE_TASK;
    return r->mode;
}

/* The route registered as pattern, or NULL. */
static const route *route_of(const char *pattern)
{
    for (size_t i = 0; pattern && i < NROUTES; i++)
        if (!strcmp(routes[i].pattern, pattern)) return &routes[i];
    return NULL;
}

static const char *mode_name(sl_route_mode m)
{
    return m == SL_ROUTE_INLINE ? "inline" : m == SL_ROUTE_POOLED ? "pooled" : "task";
}

/* A pooled limited route's handler behind the shared per-IP check (--redis): a pooled route's
 * before hooks run on the loop, which must not wait for Redis, so the handler thread applies
 * the policy itself (sl_mw_ratelimit_apply). */
typedef struct redis_limited {
    sl_mw_ratelimit **mw;
    sl_handler_fn fn;
    void *arg;
} redis_limited;

static void redis_limited_handler(sl_req *req, sl_resp *resp, void *arg)
{
    const redis_limited *w = arg;
    if (!*w->mw || sl_mw_ratelimit_apply(*w->mw, req, resp)) w->fn(req, resp, w->arg);
}

/* The main limiter applies to everything but health checks and scrapes (and does apply to
 * unmatched requests, so a 404 flood is limited too). With --redis, where the check waits for
 * Redis, the hook takes the task routes only: pooled routes apply it on their handler thread
 * (redis_limited_handler), and unmatched requests, answered on the loop, are not limited. */
static bool limited(void *arg, sl_req *req)
{
    const demo_app *app = arg;
    const char *pat = sl_req_pattern(req);
    if (!app->rlimit) return limited_pattern(pat);
    const route *r = route_of(pat);
    return r && limited_pattern(pat) && route_mode(app, r) == SL_ROUTE_TASK;
}

static int build_policies(demo_app *app, http_side *h)
{
    const demo_config *c = &app->cfg;
    for (size_t i = 0; i < c->nkeys; i++)
        h->keys[i] = (sl_ratelimit_tier_entry){.key = c->key_name[i], .tier = c->key_tier[i]};
    sl_keyed_tier tiers[DEMO_NTIERS];
    for (int t = 0; t < DEMO_NTIERS; t++)
        tiers[t] = (sl_keyed_tier){.limit = c->tier_rate[t], .burst = c->tier_burst[t]};
    sl_clientip_config cip = {
        .trusted = c->proxies, .ntrusted = c->nproxies, .sources = c->client_ip_header};
    /* The key check: a required API-key rule with no limit. It answers 401 (with
     * WWW-Authenticate) for /users and /batch before any budget is spent. */
    sl_ratelimit_rule auth = {.kind = SL_RATELIMIT_APIKEY,
                              .name = "auth",
                              .limit = SL_RATE_INF,
                              .burst = 1,
                              .max_keys = 1024};
    sl_ratelimit_config acfg = {.rules = &auth, .nrules = 1, .clientip = cip};
    int rc = sl_ratelimit_new(&acfg, &h->auth);
    if (rc < 0 || c->no_limits) return rc;
    /* The limits, in one policy so that a request rejected by one rule gives back what the
     * earlier rules reserved: global, then per client IP, then per API key (by tier). */
    sl_ratelimit_rule rules[] = {
        {.kind = SL_RATELIMIT_GLOBAL,
         .name = "global",
         .limit = c->global_rate,
         .burst = c->global_burst},
        {.kind = SL_RATELIMIT_IP,
         .name = "ip",
         .limit = c->ip_rate,
         .burst = c->ip_burst,
         .max_keys = 100000,
         .on_full = SL_KEYED_FULL_OVERFLOW,
         .overflow = {c->ip_rate * 10, c->ip_burst * 10}},
        {.kind = SL_RATELIMIT_APIKEY,
         .name = "apikey",
         .key_optional = true,
         .tiers = tiers,
         .ntiers = DEMO_NTIERS,
         .default_tier = DEMO_TIER_FREE,
         .tier_table = h->keys,
         .ntier_table = c->nkeys,
         .max_keys = 100000},
    };
    /* --redis: the per-IP rule counts in Redis, shared by every instance (its own in-process
     * table is the --redis-fail local fallback). */
    rules[1].redis = demo_rlimit_limiter(app);
    sl_ratelimit_config cfg = {.rules = rules, .nrules = 3, .clientip = cip};
    return sl_ratelimit_new(&cfg, &h->limits);
}

static int use_middleware(demo_app *app, http_side *h)
{
    sl_middleware m;
    int rc = sl_mw_metrics_new(&(sl_mw_metrics_opts){.registry = h->reg}, &h->metrics_mw);
    if (rc < 0) return rc;
    sl_mw_metrics_middleware(h->metrics_mw, &m);
    if ((rc = sl_mux_use(h->mux, &m)) < 0) return rc;
    sl_mw_request_id(&m);
    if ((rc = sl_mux_use(h->mux, &m)) < 0) return rc;
    sl_mw_access_log(app->log, &m);
    if ((rc = sl_mux_use(h->mux, &m)) < 0) return rc;
    const char *keyed[NROUTES];
    size_t nk = 0;
    for (size_t i = 0; i < NROUTES; i++)
        if (routes[i].key) keyed[nk++] = routes[i].pattern;
    sl_mw_ratelimit_opts ao = {.policy = h->auth, .patterns = keyed, .npatterns = nk};
    if ((rc = sl_mw_ratelimit_new(&ao, &h->auth_mw)) < 0) return rc;
    sl_mw_ratelimit_middleware(h->auth_mw, &m);
    if ((rc = sl_mux_use(h->mux, &m)) < 0) return rc;
    if (!h->limits) return 0;
    sl_mw_ratelimit_opts lo = {.policy = h->limits, .applies = limited, .applies_arg = app};
    if ((rc = sl_mw_ratelimit_new(&lo, &h->limits_mw)) < 0) return rc;
    sl_mw_ratelimit_middleware(h->limits_mw, &m);
    return sl_mux_use(h->mux, &m);
}

static double jobs_not_queued(void *arg)
{
    return (double)atomic_load(&((demo_app *)arg)->jobs_not_queued);
}

static int build_http(demo_app *app, http_side *h)
{
    const demo_config *c = &app->cfg;
    int rc = sl_metrics_new(&h->reg);
    if (rc == 0) rc = build_policies(app, h);
    /* One client address gets half the handler threads at most: a client hammering a slow
     * route (/search) cannot starve everyone else's requests. */
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    int workers = c->handler_workers ? c->handler_workers : 4 * (ncpu > 0 ? (int)ncpu : 1);
    sl_mux_opts mo = {.handler_workers = c->handler_workers,
                      .max_pooled_per_client = workers / 2 > 1 ? workers / 2 : 1,
                      .logger = app->log};
    if (rc == 0) rc = sl_mux_new(&mo, &h->mux);
    if (rc == 0) rc = use_middleware(app, h);
    char err[256] = "";
    static redis_limited wrapped[NROUTES];
    for (size_t i = 0; rc == 0 && i < NROUTES; i++) {
        sl_route_opts ro = {.mode = route_mode(app, &routes[i]), .timeout_ns = SL_SEC(30)};
        if (!strcmp(routes[i].pattern, "POST /users")) ro.max_body_bytes = c->users_max_body;
        sl_handler_fn fn = routes[i].fn;
        void *arg = fn == sl_metrics_handler ? (void *)h->reg : (void *)app;
        if (app->rlimit && limited_pattern(routes[i].pattern) && ro.mode == SL_ROUTE_POOLED) {
            wrapped[i] = (redis_limited){.mw = &h->limits_mw, .fn = fn, .arg = arg};
            fn = redis_limited_handler;
            arg = &wrapped[i];
        }
        rc = sl_mux_handle(h->mux, routes[i].pattern, fn, arg, &ro, err, sizeof err);
    }
    sl_server_opts so = {.mux = h->mux,
                         .reactors = c->reactors,
                         .max_body_bytes = c->max_body,
                         .shutdown_timeout_ns = c->grace_ns};
    if (rc == 0) rc = sl_server_new(&so, &h->srv);
    if (rc == 0) app->handlers = sl_server_handler_pool(h->srv);
    if (rc == 0)
        rc = sl_metrics_gauge_func(h->reg, "sluice_demo_jobs_not_queued",
                                   "Accepted work whose job could not be queued (welcome e-mails).",
                                   jobs_not_queued, app);
    if (rc == 0) rc = sl_obs_new(h->reg, &h->obs);
    if (rc == 0) rc = sl_obs_server(h->obs, "api", h->srv);
    if (rc == 0 && app->jobs) rc = sl_obs_pool(h->obs, "jobs", app->jobs);
    if (rc == 0) rc = demo_webhooks_metrics(app, h->reg);
    if (rc == 0 && app->db) rc = sl_obs_rpool(h->obs, "users", sl_db_pool(app->db));
    if (rc == 0) rc = sl_obs_ratelimit(h->obs, h->auth);
    if (rc == 0 && h->limits) rc = sl_obs_ratelimit(h->obs, h->limits);
    if (rc < 0) fprintf(stderr, "sluice-demo: setting up: %s %s\n", sl_strerror(rc), err);
    return rc;
}

static void free_http(http_side *h)
{
    sl_obs_free(h->obs); /* first: its callbacks read the server and the pool */
    sl_server_free(h->srv);
    sl_mux_free(h->mux);
    sl_mw_ratelimit_free(h->limits_mw);
    sl_mw_ratelimit_free(h->auth_mw);
    sl_mw_metrics_free(h->metrics_mw);
    sl_ratelimit_free(h->limits);
    sl_ratelimit_free(h->auth);
    sl_metrics_free(h->reg);
}

static void rate_text(double r, char out[32])
{
    if (r == SL_RATE_INF)
        snprintf(out, 32, "unlimited");
    else
        snprintf(out, 32, "%g/s", r);
}

static void banner(const demo_app *app, int port)
{
    const demo_config *c = &app->cfg;
    if (c->redis)
        printf("sluice-demo listening on http://%s:%d (per-IP limit and jobs on Redis "
               "%s:%d, redis-fail %s)\n\nroutes:\n",
               c->addr, port, c->redis_host, c->redis_port,
               c->redis_fail == 0   ? "open"
               : c->redis_fail == 1 ? "closed"
                                    : "local");
    else
        printf("sluice-demo listening on http://%s:%d (in-process limits and jobs)\n\nroutes:\n",
               c->addr, port);
    for (size_t i = 0; i < NROUTES; i++)
        printf("  %-24s %-7s%s\n", routes[i].pattern, mode_name(route_mode(app, &routes[i])),
               routes[i].key ? "  (X-API-Key required)" : "");
    if (c->no_limits) {
        printf("\nlimits: none (--no-limits)\n");
    } else {
        char g[32], ip[32], t[DEMO_NTIERS][32];
        rate_text(c->global_rate, g);
        rate_text(c->ip_rate, ip);
        for (int i = 0; i < DEMO_NTIERS; i++)
            rate_text(c->tier_rate[i], t[i]);
        printf("\nlimits: global %s burst %lld; per IP %s burst %lld; per API key: free %s, "
               "pro %s, enterprise %s\n",
               g, (long long)c->global_burst, ip, (long long)c->ip_burst, t[0], t[1], t[2]);
    }
    printf("webhooks: POSTed to %s (--webhook-url), %lld ms per attempt, 3 attempts\n",
           demo_webhooks_url(app), (long long)(c->webhook_timeout_ns / 1000000));
    printf("api keys:");
    for (size_t i = 0; i < c->nkeys; i++)
        printf(" %s (%s)", c->key_name[i], demo_tier_name(c->key_tier[i]));
    printf("%s\n\ntry:\n", c->nkeys ? "" : " none (unknown keys are free tier)");
    for (size_t i = 0; i < NROUTES; i++) {
        /* The curl lines hold one %d (the port) and nothing else that printf would read. */
        const char *pct = strstr(routes[i].curl, "%d");
        printf("  %.*s%d%s\n", (int)(pct - routes[i].curl), routes[i].curl, port, pct + 2);
    }
    printf("  for i in $(seq 30); do curl -s -o /dev/null -w '%%{http_code} ' "
           "-H 'X-API-Key: demo-free' http://127.0.0.1:%d/users/1; done; echo   (429s)\n\n"
           "Ctrl-C for a graceful shutdown.\n",
           port);
    fflush(stdout);
}

/* Serves until a signal, then shuts down in order and prints what happened. */
static int serve(demo_app *app, http_side *h)
{
    int port = sl_server_listen(h->srv, app->cfg.addr, app->cfg.port);
    if (port < 0) {
        fprintf(stderr, "sluice-demo: listen %s:%d: %s\n", app->cfg.addr, app->cfg.port,
                sl_strerror(port));
        return port;
    }
    const int sigs[] = {SIGINT, SIGTERM};
    sl_ctx *stop = NULL;
    int rc = demo_webhooks_start(app, port);
    if (rc == 0) rc = sl_signal_ctx(NULL, sigs, 2, &stop);
    if (rc == 0) rc = sl_server_serve(h->srv);
    if (rc < 0) {
        fprintf(stderr, "sluice-demo: start: %s\n", sl_strerror(rc));
        sl_signal_ctx_stop(stop);
        return rc;
    }
    banner(app, port);
    sl_log_info(app->log, "serving", SL_A_STR("addr", app->cfg.addr), SL_A_INT("port", port));
    sl_ctx_wait(stop);
    sl_signal_ctx_stop(stop);
    /* A second signal skips what is left of the grace period and of the job drain, but not
     * the report: every job still queued is handed back (logged) and counted below. */
    sl_ctx *hurry = NULL;
    if (sl_signal_ctx(NULL, sigs, 2, &hurry) < 0) hurry = NULL;

    printf("\nshutdown: stopping the server (grace %lld ms; signal again to skip it)\n",
           (long long)(app->cfg.grace_ns / 1000000));
    fflush(stdout);
    int64_t t0 = sl_mono_ns();
    sl_ctx *grace = NULL;
    rc = sl_ctx_with_timeout(hurry, app->cfg.grace_ns, &grace);
    int src = rc == 0 ? sl_server_shutdown(h->srv, grace) : rc;
    sl_ctx_release(grace);
    sl_server_stats st;
    sl_server_stats_get(h->srv, &st);
    printf("shutdown: server stopped in %lld ms: requests answered=%llu, in-flight cut off=%s\n",
           (long long)((sl_mono_ns() - t0) / 1000000), (unsigned long long)st.requests,
           src == 0 ? "no" : "yes");
    printf("shutdown: searches stopped early=%llu\n",
           (unsigned long long)atomic_load(&app->searches_stopped));
    printf("shutdown: draining jobs (deadline %lld ms)\n",
           (long long)(app->cfg.jobs_drain_ns / 1000000));
    fflush(stdout);
    sl_pool_report r = {0};
    int prc = demo_jobs_shutdown(app, hurry, &r);
    bool hurried = sl_ctx_done(hurry);
    sl_signal_ctx_stop(hurry);
    printf("shutdown: second signal=%s, welcome e-mails not queued=%llu\n", hurried ? "yes" : "no",
           (unsigned long long)atomic_load(&app->jobs_not_queued));
    if (app->rjobs)
        printf("shutdown: redis jobs submitted=%llu ran_ok=%llu runs_failed=%llu elapsed_ms=%lld "
               "(a job still running stays pending in Redis for any instance)\n",
               (unsigned long long)r.submitted, (unsigned long long)r.succeeded,
               (unsigned long long)r.failed, (long long)(r.elapsed_ns / 1000000));
    else
        printf("shutdown: jobs submitted=%llu succeeded=%llu failed=%llu dead=%llu abandoned=%llu "
               "stuck=%llu deadline_hit=%s elapsed_ms=%lld\n",
               (unsigned long long)r.submitted, (unsigned long long)r.succeeded,
               (unsigned long long)r.failed, (unsigned long long)r.dead,
               (unsigned long long)r.abandoned, (unsigned long long)r.stuck,
               r.deadline_hit ? "yes" : "no", (long long)(r.elapsed_ns / 1000000));
    printf("shutdown: %s\n", prc == 0 ? "complete" : "job pool did not stop in time");
    fflush(stdout);
    return prc;
}

int main(int argc, char **argv)
{
    static demo_app app; /* static: shared with every thread for the process's life */
    /* SIGINT and SIGTERM are taken by the signal ctx's watcher thread alone (sl_signal_ctx):
     * every thread started from here on inherits this mask. */
    sigset_t stopsigs;
    sigemptyset(&stopsigs);
    sigaddset(&stopsigs, SIGINT);
    sigaddset(&stopsigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stopsigs, NULL);
    int rc = demo_config_parse(&app.cfg, argc, argv);
    if (rc == 1) {
        demo_config_usage(stdout);
        return 0;
    }
    if (rc < 0) return 2;
    sl_log_opts lo = {.level = app.cfg.log_level, .format = app.cfg.log_format, .fd = 2};
    if (sl_logger_new(&lo, &app.log) < 0) return 1;
    sl_log_set_default(app.log);

    http_side h = {0};
    rc = demo_store_init(&app);
    if (rc == 0) rc = demo_db_open(&app);
    if (rc == 0) rc = demo_webhooks_init(&app);
    if (rc == 0) rc = demo_jobs_init(&app);
    if (rc == 0 && app.cfg.redis && !app.cfg.no_limits) rc = demo_rlimit_init(&app);
    if (rc == 0) rc = build_http(&app, &h);
    if (rc == 0) rc = serve(&app, &h);

    free_http(&h); /* frees the server first if it is still up (no grace: start-up failed) */
    demo_rlimit_free(&app); /* after the server: no handler checks any more */
    demo_jobs_free(&app);
    demo_webhooks_free(&app); /* after the jobs: no delivery runs any more */
    demo_db_close(&app);      /* after the server and the jobs: nothing queries it any more */
    demo_store_destroy(&app);
    sl_log_set_default(NULL);
    sl_logger_free(app.log);
    return rc == 0 ? 0 : 1;
}
