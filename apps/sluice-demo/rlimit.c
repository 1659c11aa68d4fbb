/* The per-client-IP limit shared through Redis (--redis): every instance checks one GCRA
 * bucket per client address in Redis (sl_redis_limiter), so N instances together allow what
 * one would.
 *
 * Where the check runs. The rate-limit middleware's before() runs synchronously on a reactor
 * and the mux has no way to suspend a request while an async Redis check is in flight, so the
 * demo does the check at the start of the handler instead, on a pooled route, where blocking
 * is allowed: sl_redis_limiter_check_wait with the request's ctx (it runs the check on the
 * limiter's private reactor thread and parks this handler thread for one round trip, at most
 * the limiter's 50 ms timeout). With --redis every limited route is therefore pooled (main.c),
 * and the in-process policy keeps only the global and per-API-key rules. A request refused
 * here has already spent its global and per-key tokens (they are not given back): a
 * documented approximation.
 *
 * Redis down or slow: --redis-fail open (allow), closed (503) or local (an in-process sl_keyed
 * with the same limit decides: each instance then enforces the limit alone). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "demo.h"
#include "sluice/mw_ratelimit.h"
#include "sluice/redis_limiter.h"

struct demo_rlimit {
    sl_redis_limiter *rl;
    sl_keyed *fallback; /* for --redis-fail local */
    sl_clientip_config cip;
};

int demo_rlimit_init(demo_app *app)
{
    const demo_config *c = &app->cfg;
    demo_rlimit *r = calloc(1, sizeof *r);
    if (!r) return SL_ENOMEM;
    app->rlimit = r;
    r->cip = (sl_clientip_config){
        .trusted = c->proxies, .ntrusted = c->nproxies, .sources = c->client_ip_header};
    sl_keyed_tier tier = {.limit = c->ip_rate, .burst = c->ip_burst};
    int rc = 0;
    if (c->redis_fail == SL_REDIS_FAIL_LOCAL) {
        sl_keyed_config kc = {.tiers = &tier, .ntiers = 1, .max_keys = 100000};
        rc = sl_keyed_new(&kc, &r->fallback);
    }
    sl_redis_limiter_config lc = {.host = c->redis_host,
                                  .port = c->redis_port,
                                  .prefix = "sluice-demo:rl:ip:",
                                  .tiers = &tier,
                                  .ntiers = 1,
                                  .policy = (sl_redis_fail_policy)c->redis_fail,
                                  .fallback = r->fallback,
                                  .logger = app->log};
    if (rc == 0) rc = sl_redis_limiter_new(&lc, &r->rl);
    if (rc < 0) fprintf(stderr, "sluice-demo: redis limiter: %s\n", sl_strerror(rc));
    return rc;
}

void demo_rlimit_free(demo_app *app)
{
    demo_rlimit *r = app->rlimit;
    if (!r) return;
    sl_redis_limiter_free(r->rl); /* joins its private reactor thread */
    sl_keyed_free(r->fallback);
    free(r);
    app->rlimit = NULL;
}

static size_t headers_cb(void *arg, const char *name, sl_ratelimit_str *out, size_t cap)
{
    const char *vals[SL_CLIENTIP_MAX_LINES + 1];
    size_t lens[SL_CLIENTIP_MAX_LINES + 1];
    size_t want = cap < SL_CLIENTIP_MAX_LINES + 1 ? cap : SL_CLIENTIP_MAX_LINES + 1;
    size_t n = sl_req_header_values(arg, name, vals, lens, want);
    size_t got = n < want ? n : want;
    for (size_t i = 0; i < got; i++)
        out[i] = (sl_ratelimit_str){.p = vals[i], .len = lens[i]};
    return n;
}

bool demo_rlimit_check(demo_app *app, sl_req *req, sl_resp *resp)
{
    demo_rlimit *r = app->rlimit;
    sl_ipkey peer, ip;
    if (sl_req_peer_ipkey(req, &peer) < 0) return true; /* not an IP peer: nothing to key */
    if (sl_clientip_resolve(&r->cip, &peer, headers_cb, req, &ip) < 0) ip = peer;
    sl_rate_decision d;
    /* Keyed by the client's group (IPv6 /64), as the in-process per-IP rule keys it. */
    int rc =
        sl_redis_limiter_check_ip_wait(r->rl, &ip, SL_IPGROUP_DEFAULT, 1, 0, sl_req_ctx(req), &d);
    if (rc < 0) { /* the request's ctx fired (client gone, deadline): nobody waits */
        sl_resp_set_header(resp, "Retry-After", "1");
        sl_resp_error(resp, 503, sl_strerror(rc));
        return false;
    }
    if (d.allowed) return true;
    if (d.source == SL_RATE_FAIL_CLOSED) {
        sl_resp_set_header(resp, "Retry-After", "1");
        sl_resp_error(resp, 503, "rate limiter unavailable, retry later");
        return false;
    }
    char ra[24];
    int64_t s =
        d.retry_after_ns >= SL_FOREVER ? 3600 : (d.retry_after_ns + SL_SEC(1) - 1) / SL_SEC(1);
    snprintf(ra, sizeof ra, "%lld", (long long)(s < 1 ? 1 : s));
    sl_resp_set_header(resp, "Retry-After", ra);
    sl_resp_error(resp, 429, "rate limited (ip, shared through redis)");
    return false;
}
