/* The per-client-IP limit shared through Redis (--redis): every instance counts one GCRA bucket
 * per client address group (IPv4 /32, IPv6 /64) in Redis, so N instances together allow what
 * one would.
 *
 * This file only creates the sl_redis_limiter. The limit itself is the "ip" rule of the demo's
 * one sl_ratelimit policy (main.c), marked Redis-backed: the same key derivation, rollback
 * across the global and API-key rules, and 429/503 answers as the in-memory rules. Where the
 * check runs: a pooled handler calls sl_mw_ratelimit_apply, which blocks that thread for one
 * round trip (at most the limiter's 50 ms timeout, or until the request's ctx fires).
 *
 * Redis down or slow: --redis-fail open (allow), closed (503) or local (the rule's own
 * in-process bucket decides: each instance then enforces the limit alone). */
#include <stdio.h>
#include <stdlib.h>

#include "demo.h"
#include "sluice/redis_limiter.h"

struct demo_rlimit {
    sl_redis_limiter *rl;
};

int demo_rlimit_init(demo_app *app)
{
    const demo_config *c = &app->cfg;
    demo_rlimit *r = calloc(1, sizeof *r);
    if (!r) return SL_ENOMEM;
    app->rlimit = r;
    /* The rule sends its own limit and burst; the limiter's tier is for direct checks. */
    sl_keyed_tier tier = {.limit = c->ip_rate, .burst = c->ip_burst};
    sl_redis_limiter_config lc = {.host = c->redis_host,
                                  .port = c->redis_port,
                                  .prefix = "sluice-demo:rl:",
                                  .tiers = &tier,
                                  .ntiers = 1,
                                  .policy = (sl_redis_fail_policy)c->redis_fail,
                                  .timeout_ns = c->redis_timeout_ns,
                                  .logger = app->log};
    int rc = sl_redis_limiter_new(&lc, &r->rl);
    if (rc < 0) fprintf(stderr, "sluice-demo: redis limiter: %s\n", sl_strerror(rc));
    return rc;
}

sl_redis_limiter *demo_rlimit_limiter(demo_app *app)
{
    return app->rlimit ? app->rlimit->rl : NULL;
}

void demo_rlimit_free(demo_app *app)
{
    demo_rlimit *r = app->rlimit;
    if (!r) return;
    sl_redis_limiter_free(r->rl); /* joins its private loop thread */
    free(r);
    app->rlimit = NULL;
}
