/* sluice-bench-server: the HTTP engine with the routes benchmarks use (TechEmpower style).
 *
 *   GET /plaintext -> 200 "Hello, World!" (text/plain)
 *   GET /json      -> 200 {"message":"Hello, World!"} (application/json)
 *   /              -> 200 for any method, after the whole body was read
 *   anything else  -> 404
 *
 * With --mux the same routes go through an sl_mux, plus the rate-limit and jobs routes:
 *   GET /limited        global + per-IP + per-API-key rules whose limits allow everything
 *                       (the token math runs on every request)
 *   GET /limited-strict per-IP 10 req/s, burst 20: under load nearly every request is a 429
 *   POST /jobs          try-submit of a tiny job to an sl_pool -> 202, or 503 + Retry-After
 *
 * Prints "listening on <addr>:<port>" once serving (port 0 picks a free one) and exits cleanly
 * on SIGINT/SIGTERM through a graceful shutdown. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/sluice.h"
#include "sluice/mux.h"
#include "sluice/mw_ratelimit.h"
#include "sluice/server.h"

static const char hello[] = "Hello, World!";
static const char json[] = "{\"message\":\"Hello, World!\"}";

static bool is(const char *s, size_t n, const char *lit)
{
    return n == strlen(lit) && memcmp(s, lit, n) == 0;
}

static void handle(sl_req *req, sl_resp *resp, void *arg)
{
    (void)arg;
    size_t ml, pl;
    const char *m = sl_req_method(req, &ml);
    const char *p = sl_req_path(req, &pl);
    bool get = is(m, ml, "GET") || is(m, ml, "HEAD");
    if (get && is(p, pl, "/plaintext")) {
        sl_resp_set_content_type(resp, "text/plain");
        sl_resp_set_body_static(resp, hello, sizeof hello - 1);
    } else if (get && is(p, pl, "/json")) {
        sl_resp_set_content_type(resp, "application/json");
        sl_resp_set_body_static(resp, json, sizeof json - 1);
    } else if (is(p, pl, "/")) {
        sl_resp_set_content_type(resp, "text/plain");
        sl_resp_set_body_static(resp, "OK", 2);
    } else {
        sl_resp_set_status(resp, 404);
        sl_resp_set_content_type(resp, "text/plain");
        sl_resp_set_body_static(resp, "not found\n", 10);
    }
}

/* ---- --mux: routes, rate limits, jobs --------------------------------------------------- */

typedef struct mux_side {
    sl_ratelimit *all, *strict;
    sl_mw_ratelimit *all_mw, *strict_mw;
    sl_pool *jobs;
    sl_mux *mux;
} mux_side;

static void plaintext(sl_req *req, sl_resp *resp, void *arg)
{
    (void)req, (void)arg;
    sl_resp_set_content_type(resp, "text/plain");
    sl_resp_set_body_static(resp, hello, sizeof hello - 1);
}

static void json_route(sl_req *req, sl_resp *resp, void *arg)
{
    (void)req, (void)arg;
    sl_resp_set_content_type(resp, "application/json");
    sl_resp_set_body_static(resp, json, sizeof json - 1);
}

static int tiny_job(sl_ctx *ctx, void *arg)
{
    (void)ctx, (void)arg;
    return 0;
}

static void jobs_route(sl_req *req, sl_resp *resp, void *arg)
{
    (void)req;
    sl_pool *p = arg;
    if (sl_pool_try_submit(p, &(sl_pool_job){.id = "job", .fn = tiny_job}) == 0) {
        sl_resp_set_status(resp, 202);
        return;
    }
    char ra[24];
    snprintf(ra, sizeof ra, "%lld",
             (long long)((sl_pool_retry_after_ns(p) + SL_SEC(1) - 1) / SL_SEC(1)));
    sl_resp_set_header(resp, "Retry-After", ra);
    sl_resp_error(resp, 503, "queue full");
}

static int limiter(sl_mux *mux, const sl_ratelimit_rule *rules, size_t n, const char *pattern,
                   sl_ratelimit **rl, sl_mw_ratelimit **mw)
{
    int rc = sl_ratelimit_new(&(sl_ratelimit_config){.rules = rules, .nrules = n}, rl);
    const char *pats[] = {pattern};
    if (rc == 0)
        rc = sl_mw_ratelimit_new(
            &(sl_mw_ratelimit_opts){.policy = *rl, .patterns = pats, .npatterns = 1}, mw);
    sl_middleware m;
    if (rc == 0) sl_mw_ratelimit_middleware(*mw, &m);
    return rc == 0 ? sl_mux_use(mux, &m) : rc;
}

static int build_mux(mux_side *ms)
{
    /* Finite limits so large they never bind: the reservation path runs, nothing is refused. */
    const double huge = 1e12;
    const sl_ratelimit_rule all[] = {
        {.kind = SL_RATELIMIT_GLOBAL, .name = "global", .limit = huge, .burst = 1000000000},
        {.kind = SL_RATELIMIT_IP, .name = "ip", .limit = huge, .burst = 1000000000},
        {.kind = SL_RATELIMIT_APIKEY,
         .name = "apikey",
         .limit = huge,
         .burst = 1000000000,
         .key_optional = true},
    };
    const sl_ratelimit_rule strict[] = {
        {.kind = SL_RATELIMIT_IP, .name = "ip-strict", .limit = 10, .burst = 20}};
    sl_route_opts in = {.mode = SL_ROUTE_INLINE};
    int rc = sl_pool_new(&(sl_pool_opts){.name = "bench", .workers = 1, .queue_capacity = 1024},
                         &ms->jobs);
    if (rc == 0) rc = sl_mux_new(NULL, &ms->mux);
    if (rc == 0) rc = limiter(ms->mux, all, 3, "GET /limited", &ms->all, &ms->all_mw);
    if (rc == 0)
        rc = limiter(ms->mux, strict, 1, "GET /limited-strict", &ms->strict, &ms->strict_mw);
    if (rc == 0) rc = sl_mux_handle(ms->mux, "GET /plaintext", plaintext, NULL, &in, NULL, 0);
    if (rc == 0) rc = sl_mux_handle(ms->mux, "GET /json", json_route, NULL, &in, NULL, 0);
    if (rc == 0) rc = sl_mux_handle(ms->mux, "GET /limited", plaintext, NULL, &in, NULL, 0);
    if (rc == 0) rc = sl_mux_handle(ms->mux, "GET /limited-strict", plaintext, NULL, &in, NULL, 0);
    if (rc == 0) rc = sl_mux_handle(ms->mux, "POST /jobs", jobs_route, ms->jobs, &in, NULL, 0);
    return rc;
}

static void free_mux(mux_side *ms)
{
    sl_mux_free(ms->mux);
    sl_mw_ratelimit_free(ms->all_mw);
    sl_mw_ratelimit_free(ms->strict_mw);
    sl_ratelimit_free(ms->all);
    sl_ratelimit_free(ms->strict);
    sl_pool_free(ms->jobs);
}

static void usage(const char *argv0)
{
    fprintf(stderr,
            "usage: %s [--mux] [--addr A] [--port P] [--reactors N] [--max-body BYTES]\n"
            "          [--max-connections N] [--read-header-timeout-ms MS]\n"
            "          [--read-body-timeout-ms MS] [--write-timeout-ms MS]\n"
            "          [--idle-timeout-ms MS] [--shutdown-timeout-ms MS]\n",
            argv0);
}

int main(int argc, char **argv)
{
    sl_server_opts o = {.handler = handle};
    const char *addr = "127.0.0.1";
    int port = 8080;
    mux_side ms = {0};
    bool use_mux = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--mux")) {
            use_mux = true;
            continue;
        }
        if (i + 1 >= argc) {
            usage(argv[0]);
            return 2;
        }
        const char *v = argv[++i];
        long long n = strtoll(v, NULL, 10);
        if (!strcmp(a, "--addr"))
            addr = v;
        else if (!strcmp(a, "--port"))
            port = (int)n;
        else if (!strcmp(a, "--reactors"))
            o.reactors = (int)n;
        else if (!strcmp(a, "--max-body"))
            o.max_body_bytes = (uint64_t)n;
        else if (!strcmp(a, "--max-connections"))
            o.max_connections = (int)n;
        else if (!strcmp(a, "--read-header-timeout-ms"))
            o.read_header_timeout_ns = SL_MS(n);
        else if (!strcmp(a, "--read-body-timeout-ms"))
            o.read_body_timeout_ns = SL_MS(n);
        else if (!strcmp(a, "--write-timeout-ms"))
            o.write_timeout_ns = SL_MS(n);
        else if (!strcmp(a, "--idle-timeout-ms"))
            o.idle_timeout_ns = SL_MS(n);
        else if (!strcmp(a, "--shutdown-timeout-ms"))
            o.shutdown_timeout_ns = SL_MS(n);
        else {
            usage(argv[0]);
            return 2;
        }
    }
    sl_server *srv = NULL;
    int rc = 0;
    if (use_mux && (rc = build_mux(&ms)) == 0) {
        o.handler = NULL;
        o.mux = ms.mux;
    }
    if (rc == 0) rc = sl_server_new(&o, &srv);
    if (rc < 0) {
        free_mux(&ms);
        fprintf(stderr, "sluice-bench-server: %s\n", sl_strerror(rc));
        return 1;
    }
    rc = sl_server_listen(srv, addr, port);
    if (rc < 0) {
        fprintf(stderr, "sluice-bench-server: listen %s:%d: %s\n", addr, port, sl_strerror(rc));
        sl_server_free(srv);
        free_mux(&ms);
        return 1;
    }
    const int sigs[] = {SIGINT, SIGTERM};
    sl_ctx *stop;
    rc = sl_signal_ctx(NULL, sigs, 2, &stop);
    if (rc < 0) {
        fprintf(stderr, "sluice-bench-server: signals: %s\n", sl_strerror(rc));
        sl_server_free(srv);
        free_mux(&ms);
        return 1;
    }
    printf("listening on %s:%d\n", addr, sl_server_port(srv));
    fflush(stdout);
    rc = sl_server_run(srv, stop);
    sl_signal_ctx_stop(stop);
    sl_server_free(srv);
    free_mux(&ms);
    if (rc < 0 && rc != SL_ETIMEDOUT) {
        fprintf(stderr, "sluice-bench-server: %s\n", sl_strerror(rc));
        return 1;
    }
    return 0;
}
