/* The rate-limit middleware: glue between the mux's before hook and the sl_ratelimit policy.
 *
 * All policy lives in sl_ratelimit (rules, rollback, answers); this file only adapts the
 * request to the policy's input (peer address as an sl_ipkey, a header-lookup callback over
 * sl_req_header_values, the clock) and the policy's answer to the response. An in-memory
 * decision is a few spinlocked bucket updates. A policy with Redis rules waits for their round
 * trips, which is allowed only in a task: where the hook runs in the request's task (task
 * routes) the task parks on sl_ratelimit_decide, bounded by the request's ctx; where it runs on
 * the reactor (other routes, unmatched requests) it must not block, so the Redis rules answer
 * by their fail policy at once (counted in the rule's redis_nowait).
 *
 * The peer address is sl_req_peer_ipkey's (request.c: parsed from sl_req_remote_addr's text,
 * cheaper than one bucket update). The allow path adds the quota headers before the handler runs,
 * so they are on the response whatever the handler does (the handler may still replace them with
 * sl_resp_set_header). */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/clock.h"
#include "sluice/error.h"
#include "sluice/mw_ratelimit.h"
#include "base/base_int.h"

struct sl_mw_ratelimit {
    sl_ratelimit *policy;
    char **patterns; /* owned copies */
    size_t npatterns;
    sl_mw_ratelimit_applies_fn applies;
    void *applies_arg;
    bool skip_unmatched;
    int64_t cost;
    _Atomic uint64_t decided, allowed, rejected, unauthorized, errors; /* relaxed */
};

static size_t headers_cb(void *arg, const char *name, sl_ratelimit_str *out, size_t cap)
{
    const char *vals[SL_CLIENTIP_MAX_LINES + 1];
    size_t lens[SL_CLIENTIP_MAX_LINES + 1];
    size_t want = cap < SL_CLIENTIP_MAX_LINES + 1 ? cap : SL_CLIENTIP_MAX_LINES + 1;
    size_t n = sl_req_header_values(arg, name, vals, lens, want);
    size_t got = n < want ? n : want;
    for (size_t i = 0; i < got; i++) {
        out[i].p = vals[i];
        out[i].len = lens[i];
    }
    return n;
}

static bool applies(sl_mw_ratelimit *mw, sl_req *req)
{
    if (mw->applies) return mw->applies(mw->applies_arg, req);
    const char *pat = sl_req_pattern(req);
    if (!pat) return !mw->skip_unmatched && !mw->patterns;
    if (!mw->patterns) return true;
    for (size_t i = 0; i < mw->npatterns; i++)
        if (!strcmp(mw->patterns[i], pat)) return true;
    return false;
}

static void count(_Atomic uint64_t *c)
{
    atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
}

/* The decision waits for Redis rules only where the request may wait (sl_req_may_wait: in its
 * task or on a handler thread); on the reactor the fail policy answers them. */
static sl_mw_action apply(sl_mw_ratelimit *mw, sl_req *req, sl_resp *resp)
{
    sl_ipkey peer;
    bool has_peer = sl_req_peer_ipkey(req, &peer) == 0;
    sl_ratelimit_input in = {
        .peer_key = has_peer ? &peer : NULL,
        .headers = headers_cb,
        .headers_arg = req,
        .now_ns = sl_now_ns(),
        .cost = mw->cost,
        .user = req,
        .no_wait = !sl_req_may_wait(req),
    };
    sl_ratelimit_decision d;
    sl_ctx *ctx = in.no_wait || !sl_ratelimit_waits(mw->policy) ? NULL : sl_req_ctx(req);
    int rc = sl_ratelimit_decide(mw->policy, &in, ctx, &d);
    count(&mw->decided);
    if (rc == SL_EINVAL) { /* cannot happen with a valid policy; fail open, counted */
        count(&mw->errors);
        return SL_MW_NEXT;
    }
    for (size_t i = 0; i < d.nheaders; i++)
        sl_resp_add_header(resp, d.headers[i].name, d.headers[i].value);
    if (d.status == 0) {
        count(&mw->allowed);
        return SL_MW_NEXT;
    }
    count(d.status == 429 ? &mw->rejected : d.status == 401 ? &mw->unauthorized : &mw->errors);
    sl_resp_set_status(resp, d.status);
    if (d.content_type) sl_resp_set_content_type(resp, d.content_type);
    if (d.body) sl_resp_set_body(resp, d.body, d.body_len);
    return SL_MW_STOP;
}

static sl_mw_action before(sl_req *req, sl_resp *resp, void *arg)
{
    sl_mw_ratelimit *mw = arg;
    if (!applies(mw, req)) return SL_MW_NEXT;
    return apply(mw, req, resp);
}

bool sl_mw_ratelimit_apply(sl_mw_ratelimit *mw, sl_req *req, sl_resp *resp)
{
    return apply(mw, req, resp) == SL_MW_NEXT;
}

int sl_mw_ratelimit_new(const sl_mw_ratelimit_opts *opts, sl_mw_ratelimit **out)
{
    if (!opts || !out)
        return sl__fail(SL_EINVAL, "sl_mw_ratelimit_new: %s is NULL", opts ? "out" : "opts");
    if (!opts->policy) return sl__fail(SL_EINVAL, "sl_mw_ratelimit_opts.policy is NULL");
    if (opts->cost < 0)
        return sl__fail(SL_EINVAL, "sl_mw_ratelimit_opts.cost is negative (%lld)",
                        (long long)opts->cost);
    for (size_t i = 0; opts->patterns && i < opts->npatterns; i++)
        if (!opts->patterns[i])
            return sl__fail(SL_EINVAL, "sl_mw_ratelimit_opts.patterns[%zu] is NULL", i);
    sl_mw_ratelimit *mw = calloc(1, sizeof *mw);
    if (!mw) return SL_ENOMEM;
    mw->policy = opts->policy;
    mw->applies = opts->applies;
    mw->applies_arg = opts->applies_arg;
    mw->skip_unmatched = opts->skip_unmatched;
    mw->cost = opts->cost;
    if (opts->patterns) {
        mw->patterns = calloc(opts->npatterns ? opts->npatterns : 1, sizeof(char *));
        if (!mw->patterns) goto nomem;
        for (size_t i = 0; i < opts->npatterns; i++) {
            mw->patterns[i] = strdup(opts->patterns[i]);
            if (!mw->patterns[i]) goto nomem;
            mw->npatterns = i + 1;
        }
    }
    *out = mw;
    return 0;
nomem:
    sl_mw_ratelimit_free(mw);
    return SL_ENOMEM;
}

/* At sl_server_new: a pattern that names no route would limit nothing, silently (a typo such
 * as "{id}" for "{item}"), so it fails the server's start instead. */
static int check(const sl_mux *mux, void *arg, char *err, size_t errlen)
{
    sl_mw_ratelimit *mw = arg;
    if (mw->applies) return 0; /* patterns are ignored then */
    for (size_t i = 0; i < mw->npatterns; i++) {
        if (sl_mux_has_pattern(mux, mw->patterns[i])) continue;
        snprintf(err, errlen,
                 "sl_mw_ratelimit_opts.patterns[%zu] \"%s\" is not a registered route pattern "
                 "(compare it with the sl_mux_handle pattern, wildcard names included)",
                 i, mw->patterns[i]);
        return SL_ENOENT;
    }
    return 0;
}

void sl_mw_ratelimit_middleware(sl_mw_ratelimit *mw, sl_middleware *out)
{
    *out = (sl_middleware){.name = "ratelimit", .before = before, .arg = mw, .check = check};
}

int sl_mw_ratelimit_use(sl_mw_ratelimit *mw, sl_mux *mux)
{
    if (!mw) return sl__fail(SL_EINVAL, "sl_mw_ratelimit_use: mw is NULL");
    sl_middleware m;
    sl_mw_ratelimit_middleware(mw, &m);
    return sl_mux_use(mux, &m);
}

void sl_mw_ratelimit_stats_get(const sl_mw_ratelimit *mw, sl_mw_ratelimit_stats *st)
{
    sl_mw_ratelimit *m = (sl_mw_ratelimit *)mw;
    st->decided = atomic_load_explicit(&m->decided, memory_order_relaxed);
    st->allowed = atomic_load_explicit(&m->allowed, memory_order_relaxed);
    st->rejected = atomic_load_explicit(&m->rejected, memory_order_relaxed);
    st->unauthorized = atomic_load_explicit(&m->unauthorized, memory_order_relaxed);
    st->errors = atomic_load_explicit(&m->errors, memory_order_relaxed);
}

void sl_mw_ratelimit_free(sl_mw_ratelimit *mw)
{
    if (!mw) return;
    for (size_t i = 0; i < mw->npatterns; i++)
        free(mw->patterns[i]);
    free(mw->patterns);
    free(mw);
}
