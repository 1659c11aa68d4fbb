/* sluice-bench-server: the HTTP engine with the routes benchmarks use (TechEmpower style).
 *
 *   GET /plaintext -> 200 "Hello, World!" (text/plain)
 *   GET /json      -> 200 {"message":"Hello, World!"} (application/json)
 *   /              -> 200 for any method, after the whole body was read
 *   anything else  -> 404
 *
 * With --mux 1 the same routes go through sl_mux, plus:
 *   GET /inline    -> "Hello, World!" from an inline route (on the reactor)
 *   GET /pooled    -> the same from a pooled route (handler pool, back through the reactor)
 *   GET /task-hello -> the same from a task route (its own task on the loop that read the
 *                     request)
 *   GET /mw        -> inline, behind the standard chain: request id + access log (the access
 *                     log writes to /dev/null, --mw-log 0 sends it to the discard logger)
 *   GET /wait1s    -> a task route that waits 1 s on its request's ctx (ending early when the
 *                     client goes), then answers "waited 1s\n" (scripts/bench_wait8k.sh)
 * --task-loops N runs the server on a runtime the program creates with N loops
 * (sl_server_opts.runtime; the server's loops are its runtime's, so this is --reactors N
 * with the runtime owned here; with --reactors too, both must agree).
 * With --mux 1 --limits 1, also the rate-limit and jobs routes (scripts/bench_http.sh):
 *   GET /limited        global + per-IP + per-API-key rules whose limits allow everything
 *                       (the reservations run on every request)
 *   GET /limited-strict per-IP 10 req/s, burst 20: under load nearly every request is a 429
 *   POST /jobs          try-submit of a tiny job to an sl_pool -> 202, or 503 + Retry-After
 *   GET /limited-task   the /limited policy applied in a task route's handler
 *                       (sl_mw_ratelimit_apply): the in-memory baseline of the Redis route
 * With --limits 1 --redis-port P, also (scripts/bench_redis_http.sh):
 *   GET /limited-redis  the same policy with its per-IP rule counted in the redis-server on
 *                       127.0.0.1:P (fail-open), applied in a task route's handler: the task
 *                       parks for the round trip while its loop serves the others
 *
 * Prints "listening on <addr>:<port>" once serving (port 0 picks a free one) and exits cleanly
 * on SIGINT/SIGTERM through a graceful shutdown. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <fcntl.h>
#include <unistd.h>

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

static void hello_route(sl_req *req, sl_resp *resp, void *arg)
{
    (void)req;
    (void)arg;
    sl_resp_set_content_type(resp, "text/plain");
    sl_resp_set_body_static(resp, hello, sizeof hello - 1);
}

/* The handler of GET /wait1s: Go's `select { case <-time.After(1s): case <-r.Context().Done(): }`.
 * sl_ctx_wait_for parks the task on a child of the request's ctx with a 1 s deadline. */
static void wait_route(sl_req *req, sl_resp *resp, void *arg)
{
    (void)arg;
    static const char body[] = "waited 1s\n";
    if (sl_ctx_wait_for(sl_req_ctx(req), SL_SEC(1)) != SL_EAGAIN) return; /* client gone, etc. */
    sl_resp_set_content_type(resp, "text/plain");
    sl_resp_set_body_static(resp, body, sizeof body - 1);
}

static void json_route(sl_req *req, sl_resp *resp, void *arg)
{
    (void)req;
    (void)arg;
    sl_resp_set_content_type(resp, "application/json");
    sl_resp_set_body_static(resp, json, sizeof json - 1);
}

static void ok_route(sl_req *req, sl_resp *resp, void *arg)
{
    (void)req;
    (void)arg;
    sl_resp_set_content_type(resp, "text/plain");
    sl_resp_set_body_static(resp, "OK", 2);
}

/* The benchmark mux. /inline and /pooled differ only in where the handler runs. The mux runs
 * middleware for every route, so the chain is switched by --mw: scripts/bench_http.sh measures
 * /inline on a server without it and /mw on one with it, side by side. */
static int build_mux(sl_mux **out, sl_logger *lg, int workers)
{
    sl_mux_opts mo = {.handler_workers = workers};
    sl_mux *mux;
    int rc = sl_mux_new(&mo, &mux);
    if (rc < 0) return rc;
    sl_route_opts in = {.mode = SL_ROUTE_INLINE};
    sl_route_opts pooled = {.mode = SL_ROUTE_POOLED};
    sl_route_opts task = {.mode = SL_ROUTE_TASK};
    if ((rc = sl_mux_handle(mux, "GET /plaintext", hello_route, NULL, &in, NULL, 0)) < 0 ||
        (rc = sl_mux_handle(mux, "GET /json", json_route, NULL, &in, NULL, 0)) < 0 ||
        (rc = sl_mux_handle(mux, "/{$}", ok_route, NULL, &in, NULL, 0)) < 0 ||
        (rc = sl_mux_handle(mux, "GET /inline", hello_route, NULL, &in, NULL, 0)) < 0 ||
        (rc = sl_mux_handle(mux, "GET /pooled", hello_route, NULL, &pooled, NULL, 0)) < 0 ||
        (rc = sl_mux_handle(mux, "GET /task-hello", hello_route, NULL, &task, NULL, 0)) < 0 ||
        (rc = sl_mux_handle(mux, "GET /wait1s", wait_route, NULL, &task, NULL, 0)) < 0 ||
        (rc = sl_mux_handle(mux, "GET /mw", hello_route, NULL, &in, NULL, 0)) < 0) {
        sl_mux_free(mux);
        return rc;
    }
    if (lg) {
        sl_middleware rid, alog;
        sl_mw_request_id(&rid);
        sl_mw_access_log(lg, &alog);
        if ((rc = sl_mux_use(mux, &rid)) < 0 || (rc = sl_mux_use(mux, &alog)) < 0) {
            sl_mux_free(mux);
            return rc;
        }
    }
    *out = mux;
    return 0;
}

/* ---- --limits 1: rate limits and jobs ------------------------------------------------------ */

static struct {
    sl_ratelimit *all, *strict, *redis;
    sl_mw_ratelimit *all_mw, *strict_mw, *task_mw, *redis_mw;
    sl_redis_limiter *rl;
    sl_pool *jobs;
} lim;

/* A task route's handler behind a policy (arg: its sl_mw_ratelimit). */
static void limited_task_route(sl_req *req, sl_resp *resp, void *arg)
{
    if (!sl_mw_ratelimit_apply(arg, req, resp)) return;
    sl_resp_set_content_type(resp, "text/plain");
    sl_resp_set_body(resp, hello, sizeof hello - 1);
}

static int tiny_job(sl_ctx *ctx, void *arg)
{
    (void)ctx, (void)arg;
    return 0;
}

static void jobs_route(sl_req *req, sl_resp *resp, void *arg)
{
    (void)req, (void)arg;
    if (sl_pool_try_submit(lim.jobs, &(sl_pool_job){.id = "job", .fn = tiny_job}) == 0) {
        sl_resp_set_status(resp, 202);
        return;
    }
    char ra[24];
    snprintf(ra, sizeof ra, "%lld",
             (long long)((sl_pool_retry_after_ns(lim.jobs) + SL_SEC(1) - 1) / SL_SEC(1)));
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

static int add_limits(sl_mux *mux, int redis_port)
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
                         &lim.jobs);
    if (rc == 0) rc = limiter(mux, all, 3, "GET /limited", &lim.all, &lim.all_mw);
    if (rc == 0) rc = limiter(mux, strict, 1, "GET /limited-strict", &lim.strict, &lim.strict_mw);
    if (rc == 0) rc = sl_mux_handle(mux, "GET /limited", hello_route, NULL, &in, NULL, 0);
    if (rc == 0) rc = sl_mux_handle(mux, "GET /limited-strict", hello_route, NULL, &in, NULL, 0);
    if (rc == 0) rc = sl_mux_handle(mux, "POST /jobs", jobs_route, NULL, &in, NULL, 0);
    sl_route_opts task = {.mode = SL_ROUTE_TASK};
    if (rc == 0) rc = sl_mw_ratelimit_new(&(sl_mw_ratelimit_opts){.policy = lim.all}, &lim.task_mw);
    if (rc == 0)
        rc = sl_mux_handle(mux, "GET /limited-task", limited_task_route, lim.task_mw, &task, NULL,
                           0);
    if (rc < 0 || !redis_port) return rc;
    sl_keyed_tier tier = {huge, 1000000000};
    sl_redis_limiter_config rc_cfg = {.port = redis_port,
                                      .prefix = "bench:",
                                      .tiers = &tier,
                                      .ntiers = 1,
                                      .policy = SL_REDIS_FAIL_OPEN,
                                      .logger = sl_log_discard()};
    rc = sl_redis_limiter_new(&rc_cfg, &lim.rl);
    sl_ratelimit_rule redis[3] = {all[0], all[1], all[2]};
    redis[1].redis = lim.rl;
    if (rc == 0)
        rc = sl_ratelimit_new(&(sl_ratelimit_config){.rules = redis, .nrules = 3}, &lim.redis);
    if (rc == 0)
        rc = sl_mw_ratelimit_new(&(sl_mw_ratelimit_opts){.policy = lim.redis}, &lim.redis_mw);
    if (rc == 0)
        rc = sl_mux_handle(mux, "GET /limited-redis", limited_task_route, lim.redis_mw, &task, NULL,
                           0);
    return rc;
}

static void free_limits(void)
{
    sl_mw_ratelimit_free(lim.all_mw);
    sl_mw_ratelimit_free(lim.strict_mw);
    sl_mw_ratelimit_free(lim.task_mw);
    sl_mw_ratelimit_free(lim.redis_mw);
    sl_ratelimit_free(lim.all);
    sl_ratelimit_free(lim.strict);
    sl_ratelimit_free(lim.redis);
    sl_redis_limiter_free(lim.rl); /* after the policy; detaches from the runtime's loops */
    sl_pool_free(lim.jobs);
}

static void usage(const char *argv0)
{
    fprintf(stderr,
            "usage: %s [--addr A] [--port P] [--reactors N] [--max-body BYTES]\n"
            "          [--max-connections N] [--read-header-timeout-ms MS]\n"
            "          [--read-body-timeout-ms MS] [--write-timeout-ms MS]\n"
            "          [--idle-timeout-ms MS] [--shutdown-timeout-ms MS]\n"
            "          [--mux 0|1] [--mw 0|1] [--mw-log 0|1] [--handler-workers N]\n"
            "          [--limits 0|1] [--task-loops N] [--max-conns-per-ip N]\n"
            "          [--redis-port P]\n",
            argv0);
}

int main(int argc, char **argv)
{
    sl_server_opts o = {.handler = handle};
    const char *addr = "127.0.0.1";
    int port = 8080;
    int use_mux = 0, use_mw = 0, mw_log = 1, workers = 0, use_limits = 0, task_loops = 0;
    int redis_port = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
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
        else if (!strcmp(a, "--mux"))
            use_mux = (int)n;
        else if (!strcmp(a, "--mw"))
            use_mw = (int)n;
        else if (!strcmp(a, "--mw-log"))
            mw_log = (int)n;
        else if (!strcmp(a, "--handler-workers"))
            workers = (int)n;
        else if (!strcmp(a, "--limits"))
            use_limits = (int)n;
        else if (!strcmp(a, "--redis-port"))
            redis_port = (int)n;
        else if (!strcmp(a, "--max-conns-per-ip"))
            o.max_conns_per_ip = (int)n;
        else if (!strcmp(a, "--task-loops"))
            task_loops = (int)n;
        else {
            usage(argv[0]);
            return 2;
        }
    }
    sl_mux *mux = NULL;
    sl_logger *lg = NULL;
    sl_runtime *task_rt = NULL;
    int rc;
    if (use_mux && task_loops > 0 &&
        (rc = sl_runtime_new(&(sl_runtime_opts){.loops = task_loops}, &task_rt)) < 0) {
        fprintf(stderr, "sluice-bench-server: runtime: %s\n", sl_strerror(rc));
        return 1;
    }
    if (use_mux) {
        if (use_mw && mw_log) {
            int devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
            sl_log_opts lo = {.fd = devnull};
            if (devnull < 0 || sl_logger_new(&lo, &lg) < 0) {
                fprintf(stderr, "sluice-bench-server: logger\n");
                return 1;
            }
        }
        rc = build_mux(&mux, use_mw ? (lg ? lg : sl_log_discard()) : NULL, workers);
        if (rc == 0 && use_limits) rc = add_limits(mux, redis_port);
        if (rc < 0) {
            fprintf(stderr, "sluice-bench-server: mux: %s\n", sl_strerror(rc));
            return 1;
        }
        o.handler = NULL;
        o.mux = mux;
    }
    o.runtime = task_rt; /* NULL: --reactors decides */
    sl_server *srv;
    rc = sl_server_new(&o, &srv);
    if (rc < 0) {
        fprintf(stderr, "sluice-bench-server: %s\n", sl_strerror(rc));
        return 1;
    }
    rc = sl_server_listen(srv, addr, port);
    if (rc < 0) {
        fprintf(stderr, "sluice-bench-server: listen %s:%d: %s\n", addr, port, sl_strerror(rc));
        sl_server_free(srv);
        return 1;
    }
    const int sigs[] = {SIGINT, SIGTERM};
    sl_ctx *stop;
    rc = sl_signal_ctx(NULL, sigs, 2, &stop);
    if (rc < 0) {
        fprintf(stderr, "sluice-bench-server: signals: %s\n", sl_strerror(rc));
        sl_server_free(srv);
        return 1;
    }
    printf("listening on %s:%d\n", addr, sl_server_port(srv));
    fflush(stdout);
    rc = sl_server_run(srv, stop);
    sl_signal_ctx_stop(stop);
    sl_server_free(srv);
    sl_mux_free(mux);
    free_limits(); /* first: the Redis limiter detaches from the runtime's loops */
    sl_runtime_free(task_rt);
    sl_logger_free(lg);
    if (rc < 0 && rc != SL_ETIMEDOUT) {
        fprintf(stderr, "sluice-bench-server: %s\n", sl_strerror(rc));
        return 1;
    }
    return 0;
}
