/* HTTP metrics middleware, the /metrics handler, and callback gauges over servers, pools and
 * rate-limit policies.
 *
 * Hot path. sl_metric_counter() takes the family's lock, so it must not run per request. The
 * after hook instead looks its children up in a small direct-mapped cache that is private to
 * the calling thread (reactor threads run the hooks): a hit costs a hash and a compare, then
 * relaxed atomic adds on the child's per-thread shard. A miss (first request of a route/method/
 * code triple on this thread) takes the family's lock once. Cache entries carry the
 * middleware's generation number, unique per sl_mw_metrics ever created in the process, so a
 * thread never uses a child of a freed middleware even if a new one lands at the same address.
 * The label values are bounded (route names come from the mux's table, methods are folded into
 * eight names, status codes are 100..999), so the families cannot grow without bound.
 *
 * sl_obs keeps one small record per exposed value; the registry calls back with it at scrape
 * time (under the registry's lock: the callbacks only read stats snapshots). Families are
 * registered on first use and unregistered by sl_obs_free, which the owner calls before the
 * objects die: after sl_metrics_unregister returns no callback of that family runs. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/clock.h"
#include "sluice/error.h"
#include "sluice/mw_metrics.h"

/* ---- the middleware ------------------------------------------------------------------------ */

struct sl_mw_metrics {
    sl_metrics *reg;
    sl_metric_family *requests, *duration, *inflight_f;
    sl_gauge *inflight;
    uint64_t gen;
};

#define CACHE_SIZE 256 /* entries per thread, power of two */

typedef struct cache_entry {
    uint64_t gen;
    const char *route; /* the mux's pointer (stable while the mux lives) */
    int method;
    int code; /* 0: the duration histogram of the route */
    void *child;
} cache_entry;

static _Thread_local cache_entry cache[CACHE_SIZE];
static _Atomic uint64_t next_gen;

static const char *const methods[] = {"GET",    "HEAD",  "POST",    "PUT",
                                      "DELETE", "PATCH", "OPTIONS", "other"};
#define NMETHODS 8

static int method_index(const sl_req *req)
{
    size_t n;
    const char *m = sl_req_method(req, &n);
    for (int i = 0; i < NMETHODS - 1; i++)
        if (strlen(methods[i]) == n && !memcmp(methods[i], m, n)) return i;
    return NMETHODS - 1;
}

static size_t slot(const char *route, int method, int code)
{
    uintptr_t h = (uintptr_t)route * 0x9E3779B97F4A7C15u;
    h ^= (uintptr_t)(method * 1000 + code) * 0xBF58476D1CE4E5B9u;
    return (size_t)(h >> 24) & (CACHE_SIZE - 1);
}

/* Returns the child for (route, method, code), or NULL when out of memory (then the request
 * is not counted: metrics never fail a request). */
static void *child(sl_mw_metrics *mm, const char *route, int method, int code)
{
    cache_entry *e = &cache[slot(route, method, code)];
    if (e->gen == mm->gen && e->route == route && e->method == method && e->code == code)
        return e->child;
    const char *rname = route ? route : "unmatched";
    void *c = NULL;
    int rc;
    if (code == 0) {
        const char *vals[] = {rname};
        rc = sl_metric_histogram(mm->duration, vals, (sl_histogram **)&c);
    } else {
        char codebuf[12];
        snprintf(codebuf, sizeof codebuf, "%d", code);
        const char *vals[] = {rname, methods[method], codebuf};
        rc = sl_metric_counter(mm->requests, vals, (sl_counter **)&c);
    }
    if (rc < 0) return NULL;
    *e = (cache_entry){.gen = mm->gen, .route = route, .method = method, .code = code, .child = c};
    return c;
}

static sl_mw_action mm_before(sl_req *req, sl_resp *resp, void *arg)
{
    (void)req, (void)resp;
    sl_mw_metrics *mm = arg;
    sl_gauge_inc(mm->inflight);
    return SL_MW_NEXT;
}

static void mm_after(sl_req *req, const sl_resp *resp, void *arg)
{
    sl_mw_metrics *mm = arg;
    sl_gauge_dec(mm->inflight);
    const char *route = sl_req_route_name(req);
    int m = method_index(req);
    sl_counter *c = child(mm, route, m, sl_resp_status(resp));
    if (c) sl_counter_inc(c);
    sl_histogram *h = child(mm, route, 0, 0);
    if (h) sl_histogram_observe_ns(h, sl_mono_ns() - sl_req_start_ns(req));
}

int sl_mw_metrics_new(const sl_mw_metrics_opts *opts, sl_mw_metrics **out)
{
    if (!out) return SL_EINVAL;
    sl_mw_metrics *mm = calloc(1, sizeof *mm);
    if (!mm) return SL_ENOMEM;
    mm->reg = opts && opts->registry ? opts->registry : sl_metrics_default();
    if (!mm->reg) {
        free(mm);
        return SL_ENOMEM;
    }
    static const char *const req_labels[] = {"route", "method", "code"};
    static const char *const dur_labels[] = {"route"};
    static const double def_buckets[] = SL_METRICS_DEFAULT_BUCKETS;
    sl_metric_opts ro = {.name = "http_requests_total",
                         .help = "HTTP requests answered, by route, method and status code.",
                         .labels = req_labels,
                         .n_labels = 3};
    sl_metric_opts dopt = {
        .name = "http_request_duration_seconds",
        .help = "Time from a request's complete head to its response being queued.",
        .labels = dur_labels,
        .n_labels = 1,
        .buckets = opts && opts->buckets ? opts->buckets : def_buckets,
        .n_buckets = opts && opts->buckets ? opts->nbuckets : sizeof def_buckets / sizeof(double)};
    sl_metric_opts iopt = {.name = "http_requests_in_flight",
                           .help = "Requests received and not yet answered."};
    int rc = sl_metrics_register(mm->reg, SL_METRIC_COUNTER, &ro, &mm->requests);
    if (rc == 0) rc = sl_metrics_register(mm->reg, SL_METRIC_HISTOGRAM, &dopt, &mm->duration);
    if (rc == 0) rc = sl_metrics_register(mm->reg, SL_METRIC_GAUGE, &iopt, &mm->inflight_f);
    if (rc == 0) rc = sl_metric_gauge(mm->inflight_f, NULL, &mm->inflight);
    if (rc < 0) {
        sl_mw_metrics_free(mm);
        return rc;
    }
    mm->gen = atomic_fetch_add(&next_gen, 1) + 1;
    *out = mm;
    return 0;
}

void sl_mw_metrics_middleware(sl_mw_metrics *mm, sl_middleware *out)
{
    *out = (sl_middleware){.name = "metrics", .before = mm_before, .after = mm_after, .arg = mm};
}

int sl_mw_metrics_use(sl_mw_metrics *mm, sl_mux *mux)
{
    if (!mm) return SL_EINVAL;
    sl_middleware m;
    sl_mw_metrics_middleware(mm, &m);
    return sl_mux_use(mux, &m);
}

void sl_mw_metrics_free(sl_mw_metrics *mm)
{
    if (!mm) return;
    sl_metrics_unregister(mm->reg, mm->requests);
    sl_metrics_unregister(mm->reg, mm->duration);
    sl_metrics_unregister(mm->reg, mm->inflight_f);
    free(mm);
}

void sl_metrics_handler(sl_req *req, sl_resp *resp, void *arg)
{
    (void)req;
    sl_metrics *m = arg ? arg : sl_metrics_default();
    sl_buf b = {0};
    if (!m || sl_metrics_write(m, &b) < 0) {
        sl_buf_destroy(&b);
        sl_resp_error(resp, 500, "out of memory");
        return;
    }
    sl_resp_set_content_type(resp, SL_METRICS_CONTENT_TYPE);
    if (sl_resp_set_body(resp, b.data ? b.data : "", b.len) < 0) sl_resp_set_status(resp, 500);
    sl_buf_destroy(&b);
}

/* ---- callback children --------------------------------------------------------------------- */

typedef enum { K_SERVER, K_POOL, K_RULE, K_RPOOL } obs_kind;

typedef struct fam_desc {
    const char *name, *help;
    sl_metric_type type;
} fam_desc;

static const fam_desc server_fams[] = {
    {"sluice_http_connections", "Open connections.", SL_METRIC_GAUGE},
    {"sluice_http_connections_accepted_total", "Connections accepted.", SL_METRIC_COUNTER},
    {"sluice_http_requests_answered_total", "Requests answered by handlers or the engine.",
     SL_METRIC_COUNTER},
    {"sluice_http_engine_rejected_total",
     "Requests the engine answered with 4xx/5xx (parse errors, limits, timeouts).",
     SL_METRIC_COUNTER},
};
static const fam_desc pool_fams[] = {
    {"sluice_pool_queued", "Jobs waiting to start.", SL_METRIC_GAUGE},
    {"sluice_pool_running", "Jobs running now.", SL_METRIC_GAUGE},
    {"sluice_pool_workers", "Live worker threads.", SL_METRIC_GAUGE},
    {"sluice_pool_submitted_total", "Jobs accepted.", SL_METRIC_COUNTER},
    {"sluice_pool_rejected_total", "Submissions refused (queue full, deadline, closed).",
     SL_METRIC_COUNTER},
    {"sluice_pool_retried_total", "Attempts that failed and were scheduled again.",
     SL_METRIC_COUNTER},
    {"sluice_pool_succeeded_total", "Jobs that succeeded.", SL_METRIC_COUNTER},
    {"sluice_pool_failed_total", "Jobs that failed permanently.", SL_METRIC_COUNTER},
    {"sluice_pool_dead_total", "Jobs that used every attempt.", SL_METRIC_COUNTER},
    {"sluice_pool_abandoned_total", "Jobs handed back at shutdown.", SL_METRIC_COUNTER},
};
static const fam_desc rule_fams[] = {
    {"sluice_ratelimit_allowed_total", "Requests allowed by the rule.", SL_METRIC_COUNTER},
    {"sluice_ratelimit_rejected_total", "Requests the rule rejected (429).", SL_METRIC_COUNTER},
    {"sluice_ratelimit_dry_run_rejected_total", "Requests a dry-run rule would have rejected.",
     SL_METRIC_COUNTER},
    {"sluice_ratelimit_missing_key_total", "Requests without an API key.", SL_METRIC_COUNTER},
    {"sluice_ratelimit_keys", "Keys the rule's table holds.", SL_METRIC_GAUGE},
    {"sluice_ratelimit_evicted_total", "Keys the rule's table evicted.", SL_METRIC_COUNTER},
};
/* Go's sql.DBStats, field for field (durations in seconds, as Prometheus wants). */
static const fam_desc rpool_fams[] = {
    {"sluice_db_max_open_connections", "Maximum open connections (0: unlimited).", SL_METRIC_GAUGE},
    {"sluice_db_open_connections", "Open connections, in use and idle.", SL_METRIC_GAUGE},
    {"sluice_db_in_use_connections", "Connections in use.", SL_METRIC_GAUGE},
    {"sluice_db_idle_connections", "Idle connections.", SL_METRIC_GAUGE},
    {"sluice_db_wait_count_total", "Acquires that waited for a connection.", SL_METRIC_COUNTER},
    {"sluice_db_wait_duration_seconds_total", "Time spent waiting for a connection.",
     SL_METRIC_COUNTER},
    {"sluice_db_max_idle_closed_total", "Connections closed by max_idle.", SL_METRIC_COUNTER},
    {"sluice_db_max_idle_time_closed_total", "Connections closed by max_idle_time.",
     SL_METRIC_COUNTER},
    {"sluice_db_max_lifetime_closed_total", "Connections closed by max_lifetime.",
     SL_METRIC_COUNTER},
};
#define NSERVER (sizeof server_fams / sizeof server_fams[0])
#define NRPOOL  (sizeof rpool_fams / sizeof rpool_fams[0])
#define NPOOL   (sizeof pool_fams / sizeof pool_fams[0])
#define NRULE   (sizeof rule_fams / sizeof rule_fams[0])

typedef struct obs_child {
    struct obs_child *next;
    obs_kind kind;
    int field;
    const void *obj;
    size_t index; /* rule index */
} obs_child;

struct sl_obs {
    sl_metrics *reg;
    sl_metric_family *server[NSERVER], *pool[NPOOL], *rule[NRULE], *rpool[NRPOOL];
    obs_child *children;
};

static double server_value(const obs_child *c)
{
    sl_server_stats st;
    sl_server_stats_get(c->obj, &st);
    switch (c->field) {
    case 0: return (double)st.connections;
    case 1: return (double)st.accepted;
    case 2: return (double)st.requests;
    default: return (double)st.rejected;
    }
}

static double pool_value(const obs_child *c)
{
    sl_pool_stats st;
    sl_pool_stats_get((sl_pool *)c->obj, &st);
    const uint64_t v[NPOOL] = {st.queued,   st.running,  (uint64_t)st.workers, st.submitted,
                               st.rejected, st.retried,  st.succeeded,         st.failed,
                               st.dead,     st.abandoned};
    return (double)v[c->field];
}

static double rule_value(const obs_child *c)
{
    sl_ratelimit_stats st;
    if (sl_ratelimit_stats_get((sl_ratelimit *)c->obj, c->index, &st) < 0) return 0;
    const uint64_t v[NRULE] = {st.allowed,     st.rejected, st.dry_run_rejected,
                               st.missing_key, st.keys,     st.evicted};
    return (double)v[c->field];
}

static double rpool_value(const obs_child *c)
{
    sl_rpool_stats st;
    sl_rpool_stats_get((sl_rpool *)c->obj, &st);
    const double v[NRPOOL] = {st.max_open,
                              st.open,
                              st.in_use,
                              st.idle,
                              (double)st.wait_count,
                              (double)st.wait_duration_ns / 1e9,
                              (double)st.max_idle_closed,
                              (double)st.max_idle_time_closed,
                              (double)st.max_lifetime_closed};
    return v[c->field];
}

static double obs_cb(void *arg)
{
    const obs_child *c = arg;
    switch (c->kind) {
    case K_SERVER: return server_value(c);
    case K_POOL: return pool_value(c);
    case K_RPOOL: return rpool_value(c);
    default: return rule_value(c);
    }
}

int sl_obs_new(sl_metrics *m, sl_obs **out)
{
    if (!out) return SL_EINVAL;
    sl_obs *o = calloc(1, sizeof *o);
    if (!o) return SL_ENOMEM;
    o->reg = m ? m : sl_metrics_default();
    if (!o->reg) {
        free(o);
        return SL_ENOMEM;
    }
    *out = o;
    return 0;
}

/* Adds one callback child per family of a kind, registering the families on first use. On
 * failure the children added by this call stay registered until sl_obs_free (harmless: they
 * read a live object), and the error is returned. */
static int add(sl_obs *o, obs_kind kind, const fam_desc *fams, sl_metric_family **slots, size_t nf,
               const char *label, const char *value, const void *obj, size_t index)
{
    const char *labels[] = {label};
    for (size_t i = 0; i < nf; i++) {
        if (!slots[i]) {
            sl_metric_opts mo = {
                .name = fams[i].name, .help = fams[i].help, .labels = labels, .n_labels = 1};
            int rc = sl_metrics_register(o->reg, fams[i].type, &mo, &slots[i]);
            if (rc < 0) return rc;
        }
        obs_child *c = calloc(1, sizeof *c);
        if (!c) return SL_ENOMEM;
        *c = (obs_child){
            .next = o->children, .kind = kind, .field = (int)i, .obj = obj, .index = index};
        const char *vals[] = {value};
        int rc = sl_metric_func(slots[i], vals, obs_cb, c);
        if (rc < 0) {
            free(c);
            return rc;
        }
        o->children = c;
    }
    return 0;
}

int sl_obs_server(sl_obs *o, const char *name, const sl_server *srv)
{
    if (!o || !name || !srv) return SL_EINVAL;
    return add(o, K_SERVER, server_fams, o->server, NSERVER, "server", name, srv, 0);
}

int sl_obs_pool(sl_obs *o, const char *name, sl_pool *pool)
{
    if (!o || !name || !pool) return SL_EINVAL;
    return add(o, K_POOL, pool_fams, o->pool, NPOOL, "pool", name, pool, 0);
}

int sl_obs_rpool(sl_obs *o, const char *name, sl_rpool *rp)
{
    if (!o || !name || !rp) return SL_EINVAL;
    return add(o, K_RPOOL, rpool_fams, o->rpool, NRPOOL, "db", name, rp, 0);
}

int sl_obs_ratelimit(sl_obs *o, sl_ratelimit *rl)
{
    if (!o || !rl) return SL_EINVAL;
    size_t n = sl_ratelimit_count(rl);
    for (size_t i = 0; i < n; i++) {
        sl_ratelimit_stats st;
        int rc = sl_ratelimit_stats_get(rl, i, &st);
        if (rc == 0) rc = add(o, K_RULE, rule_fams, o->rule, NRULE, "rule", st.name, rl, i);
        if (rc < 0) return rc;
    }
    return 0;
}

void sl_obs_free(sl_obs *o)
{
    if (!o) return;
    for (size_t i = 0; i < NSERVER; i++)
        sl_metrics_unregister(o->reg, o->server[i]);
    for (size_t i = 0; i < NPOOL; i++)
        sl_metrics_unregister(o->reg, o->pool[i]);
    for (size_t i = 0; i < NRULE; i++)
        sl_metrics_unregister(o->reg, o->rule[i]);
    for (size_t i = 0; i < NRPOOL; i++)
        sl_metrics_unregister(o->reg, o->rpool[i]);
    for (obs_child *c = o->children, *n; c; c = n) {
        n = c->next;
        free(c);
    }
    free(o);
}
