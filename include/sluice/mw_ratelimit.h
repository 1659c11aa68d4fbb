/* sl_mw_ratelimit: the rate-limit middleware — an sl_ratelimit policy (ratelimit.h) applied to
 * a mux's requests (mux.h), before a handler thread is spent.
 *
 * For each request it applies to, the before hook resolves the client address (the peer, or
 * the forwarding header when the peer is a trusted proxy: the policy's clientip config),
 * decides at sl_now_ns(), and either stops the chain with the policy's answer (429 with
 * Retry-After and the rate headers, 401 with WWW-Authenticate, 503 on an internal error: the
 * policy's status, headers and body exactly) or adds the remaining-quota headers of the
 * rules to the response and lets the request go on. A flood of rejected requests thus
 * costs no handler thread and takes no budget from rules it did not reach (the policy rolls
 * back its reservations).
 *
 * Redis rules (ratelimit.h) wait for a round trip: where the hook runs in the request's task
 * (task routes) the task parks, bounded by sl_req_ctx(req); where it runs on the reactor it
 * must not block and the Redis rules answer by their fail policy (counted in redis_nowait), so
 * a pooled route that needs them calls sl_mw_ratelimit_apply from its handler instead.
 *
 * Which requests: every request, or only those whose route pattern (sl_req_pattern) is in
 * `patterns`, or those for which `applies` says yes. Several instances with different policies
 * may be stacked (say one with a required API key for some routes and one without for the
 * rest); each keeps its own budgets.
 *
 *   sl_mw_ratelimit_opts o = {.policy = rl};
 *   sl_mw_ratelimit *mw;
 *   sl_mw_ratelimit_new(&o, &mw);
 *   sl_middleware m;
 *   sl_mw_ratelimit_middleware(mw, &m);
 *   sl_mux_use(mux, &m);
 *   ... serve; free the server and the mux ...
 *   sl_mw_ratelimit_free(mw);
 *
 * Threads: any. The middleware is shared by every reactor; its counters are atomic. */
#ifndef SLUICE_MW_RATELIMIT_H
#define SLUICE_MW_RATELIMIT_H

#include "sluice/common.h"
#include "sluice/mux.h"
#include "sluice/ratelimit.h"
#include "sluice/request.h"
#include "sluice/server.h"

SL_BEGIN_DECLS

typedef struct sl_mw_ratelimit sl_mw_ratelimit;

/* Says whether the middleware applies to req (on the reactor; must not block). */
typedef bool (*sl_mw_ratelimit_applies_fn)(void *arg, sl_req *req);

typedef struct sl_mw_ratelimit_opts {
    sl_ratelimit *policy;               /* required; borrowed: must outlive the middleware */
    const char *const *patterns;        /* route patterns it applies to (copied); NULL: all */
    size_t npatterns;                   /* ... unless applies is set */
    sl_mw_ratelimit_applies_fn applies; /* takes precedence over patterns */
    void *applies_arg;
    bool skip_unmatched; /* requests that matched no route (404/405/301) are not limited */
    int64_t cost;        /* tokens per request; 0 = 1 */
} sl_mw_ratelimit_opts;

/* Counters (each exact; not one instant's snapshot). */
typedef struct sl_mw_ratelimit_stats {
    uint64_t decided;      /* requests the policy decided on */
    uint64_t allowed;      /* ... that went on */
    uint64_t rejected;     /* ... that were answered 429 */
    uint64_t unauthorized; /* ... answered 401 */
    uint64_t errors;       /* ... answered 503 (policy error) */
} sl_mw_ratelimit_stats;

/* Creates the middleware's state. Returns 0 and *out, SL_EINVAL (opts or policy NULL, cost < 0,
 * a NULL pattern; sl_error_detail() names the field) or SL_ENOMEM (*out untouched). Threads:
 * any. Does not block. */
SL_API int sl_mw_ratelimit_new(const sl_mw_ratelimit_opts *opts, sl_mw_ratelimit **out);

/* Fills *out with the middleware (a before hook only) bound to mw, for sl_mux_use. Its check
 * hook makes sl_server_new fail with SL_ENOENT, naming the pattern, when one of opts.patterns
 * is not a route registered on the mux (a typo like "{id}" for "{item}" would otherwise leave
 * that route unlimited). */
SL_API void sl_mw_ratelimit_middleware(sl_mw_ratelimit *mw, sl_middleware *out);

/* Applies mw's policy to req from its handler: the decision, answer and counters of the
 * before hook (patterns and applies are not consulted). For a policy with Redis rules on a
 * route whose before hooks run on the reactor (pooled routes): there the hook cannot wait
 * and the Redis rules answer by their fail policy, while the handler, in a task or on a
 * handler thread, waits for the round trip (parks the task; blocks the thread). Returns true
 * when the request may go on (the quota headers are added to resp), false when resp holds the
 * policy's answer (429, 401, 503) and the handler should return. Threads: the handler's.
 * Blocks (parks) for the Redis rules' round trips, bounded by sl_req_ctx(req). */
SL_API bool sl_mw_ratelimit_apply(sl_mw_ratelimit *mw, sl_req *req, sl_resp *resp);

/* sl_mw_ratelimit_middleware + sl_mux_use in one call. Returns as sl_mux_use. */
SL_API int sl_mw_ratelimit_use(sl_mw_ratelimit *mw, sl_mux *mux);

/* Fills *st. Threads: any. */
SL_API void sl_mw_ratelimit_stats_get(const sl_mw_ratelimit *mw, sl_mw_ratelimit_stats *st);

/* Frees the state (not the policy). Every server using a mux holding it must have been freed.
 * NULL is ignored. */
SL_API void sl_mw_ratelimit_free(sl_mw_ratelimit *mw);

SL_END_DECLS

#endif /* SLUICE_MW_RATELIMIT_H */
