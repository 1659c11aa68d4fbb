/* HTTP metrics: a middleware that counts requests and their latency, a /metrics handler, and
 * callback gauges that expose a server, pools and rate-limit policies in one registry.
 *
 *   sl_metrics *reg;  sl_metrics_new(&reg);
 *   sl_mw_metrics *hm;
 *   sl_mw_metrics_new(&(sl_mw_metrics_opts){.registry = reg}, &hm);
 *   sl_middleware m;  sl_mw_metrics_middleware(hm, &m);  sl_mux_use(mux, &m);  // outermost
 *   sl_mux_handle(mux, "GET /metrics", sl_metrics_handler, reg,
 *                 &(sl_route_opts){.mode = SL_ROUTE_INLINE}, NULL, 0);
 *   sl_obs *obs;  sl_obs_new(reg, &obs);
 *   sl_obs_server(obs, "api", srv);  sl_obs_pool(obs, "jobs", pool);  sl_obs_ratelimit(obs, rl);
 *   ... serve ...
 *   sl_obs_free(obs);  // before the objects it reads are freed
 *
 * The middleware (after hook) maintains, in the registry:
 *   http_requests_total{route,method,code}         counter
 *   http_request_duration_seconds{route}           histogram (head complete -> response queued)
 *   http_requests_in_flight                        gauge (before hook +1, after hook -1)
 * route is the route's name (sl_req_route_name: the pattern by default) or "unmatched"; method
 * is one of GET HEAD POST PUT DELETE PATCH OPTIONS or "other", so cardinality stays bounded
 * whatever clients send. Child pointers are cached per thread, so the hot path is a few
 * relaxed atomic adds and no lock.
 *
 * sl_obs_* add callback children read at scrape time:
 *   server: sluice_http_connections{server} (gauge), sluice_http_connections_accepted_total,
 *           sluice_http_requests_answered_total, sluice_http_engine_rejected_total{server}
 *   pool:   sluice_pool_queued / _running / _workers {pool} (gauges),
 *           sluice_pool_submitted_total / _rejected_total / _retried_total / _succeeded_total /
 *           _failed_total / _dead_total / _abandoned_total {pool}
 *   policy: sluice_ratelimit_allowed_total / _rejected_total / _dry_run_rejected_total /
 *           _missing_key_total / _evicted_total {rule}, sluice_ratelimit_keys{rule} (gauge)
 *
 * Threads: any. The middleware is shared by every reactor. sl_obs_* are called while setting
 * up (one thread); scrapes run on any thread. */
#ifndef SLUICE_MW_METRICS_H
#define SLUICE_MW_METRICS_H

#include "sluice/common.h"
#include "sluice/metrics.h"
#include "sluice/mux.h"
#include "sluice/pool.h"
#include "sluice/ratelimit.h"
#include "sluice/rpool.h"
#include "sluice/server.h"

SL_BEGIN_DECLS

typedef struct sl_mw_metrics sl_mw_metrics;

typedef struct sl_mw_metrics_opts {
    sl_metrics *registry;  /* NULL: sl_metrics_default(); must outlive the middleware */
    const double *buckets; /* latency buckets in seconds; NULL: SL_METRICS_DEFAULT_BUCKETS */
    size_t nbuckets;
} sl_mw_metrics_opts;

/* Registers the three families and returns the middleware's state. Returns 0 and *out,
 * SL_EINVAL (bad buckets), SL_EEXIST (the families exist in that registry: one sl_mw_metrics
 * per registry) or SL_ENOMEM (*out untouched, nothing left registered). Does not block. */
SL_API int sl_mw_metrics_new(const sl_mw_metrics_opts *opts, sl_mw_metrics **out);

/* Fills *out with the middleware (before and after hooks) bound to mm. Add it first (the
 * outermost), so that its after hook sees requests that inner middleware rejected. */
SL_API void sl_mw_metrics_middleware(sl_mw_metrics *mm, sl_middleware *out);

/* sl_mw_metrics_middleware + sl_mux_use in one call (call it before the other middleware).
 * Returns as sl_mux_use. */
SL_API int sl_mw_metrics_use(sl_mw_metrics *mm, sl_mux *mux);

/* Unregisters the families and frees the state. Every server using it must have been freed.
 * NULL is ignored. */
SL_API void sl_mw_metrics_free(sl_mw_metrics *mm);

/* A handler that answers 200 with the registry given as arg (an sl_metrics *; NULL: the
 * default) in Prometheus text format 0.0.4, or 500 when out of memory. Does not block beyond
 * the registry's lock: register it inline. */
SL_API void sl_metrics_handler(sl_req *req, sl_resp *resp, void *arg);

/* A set of callback children in one registry. */
typedef struct sl_obs sl_obs;

/* Creates an empty set over registry m (NULL: the default). Returns 0 or SL_ENOMEM. */
SL_API int sl_obs_new(sl_metrics *m, sl_obs **out);

/* Exposes srv's connection and request counters under the label server=name (copied). srv
 * must stay alive until sl_obs_free. Returns 0, SL_EINVAL, SL_EEXIST (name already exposed) or
 * SL_ENOMEM. */
SL_API int sl_obs_server(sl_obs *o, const char *name, const sl_server *srv);

/* Exposes pool's counters under the label pool=name. Same rules. */
SL_API int sl_obs_pool(sl_obs *o, const char *name, sl_pool *pool);

/* Exposes a resource pool's sql.DBStats fields (sluice_db_*) under the label db=name (an
 * sl_db's pool: sl_db_pool). Same rules. */
SL_API int sl_obs_rpool(sl_obs *o, const char *name, sl_rpool *rp);

/* Exposes each rule of rl under the label rule=<rule name>. Same rules; rule names must be
 * unique across the policies exposed by one sl_obs. */
SL_API int sl_obs_ratelimit(sl_obs *o, sl_ratelimit *rl);

/* Unregisters every family the set registered and frees it. After it returns no scrape reads
 * the objects any more. NULL is ignored. */
SL_API void sl_obs_free(sl_obs *o);

SL_END_DECLS

#endif /* SLUICE_MW_METRICS_H */
