/* sl_metrics: counters, gauges and histograms, exposed in Prometheus text format.
 *
 * A registry holds metric families; a family has a name, a help text, a type and label names;
 * each distinct tuple of label values is a child (a counter, a gauge or a histogram). Callers
 * look a child up once (sl_metric_counter(...)) and keep the pointer: updating it is then a
 * relaxed atomic add on a per-thread shard, with no lock and no cache line shared with other
 * threads; shards are summed when the registry is scraped. Children live as long as their
 * family (until sl_metrics_unregister or sl_metrics_free).
 *
 *   sl_metric_family *reqs;
 *   const char *labels[] = {"method", "code"};
 *   sl_metrics_register(m, SL_METRIC_COUNTER, &(sl_metric_opts){.name = "http_requests_total",
 *                       .help = "Requests served.", .labels = labels, .n_labels = 2}, &reqs);
 *   sl_counter *get200;
 *   sl_metric_counter(reqs, (const char *[]){"GET", "200"}, &get200);   // once
 *   sl_counter_inc(get200);                                              // per request
 *
 * Exposition (sl_metrics_write) appends the text format 0.0.4 to a caller-owned growable buffer
 * (sl_buf): families sorted by name, children sorted by label values, so output is
 * deterministic. Values that an object already keeps (a pool's queue length) are exposed with
 * callback children (sl_metric_func): the function is called at scrape time.
 *
 * Threads: any. Updates never block; registration, lookup and scraping take short locks. */
#ifndef SLUICE_METRICS_H
#define SLUICE_METRICS_H

#include "sluice/common.h"

SL_BEGIN_DECLS

typedef struct sl_metrics sl_metrics;
typedef struct sl_metric_family sl_metric_family;
typedef struct sl_counter sl_counter;
typedef struct sl_gauge sl_gauge;
typedef struct sl_histogram sl_histogram;

typedef enum sl_metric_type {
    SL_METRIC_COUNTER = 1, /* monotonic uint64 (exposed as an integer) */
    SL_METRIC_GAUGE,       /* int64 that goes up and down, or is set */
    SL_METRIC_HISTOGRAM,   /* observations counted in buckets, with their sum and count */
} sl_metric_type;

/* A value read at scrape time. Called with the registry's lock held: it must be quick and must
 * not call into the same registry. Threads: the scraping thread. */
typedef double (*sl_metric_fn)(void *arg);

typedef struct sl_metric_opts {
    const char *name;          /* [a-zA-Z_:][a-zA-Z0-9_:]*; counters conventionally end _total */
    const char *help;          /* any text (escaped on output); NULL means "" */
    const char *const *labels; /* n_labels names, [a-zA-Z_][a-zA-Z0-9_]*, not "__*", unique */
    size_t n_labels;
    const double *buckets; /* histograms: upper bounds, strictly increasing, not NaN; a
                              final +Inf is allowed and implied anyway. NULL: defaults */
    size_t n_buckets;
} sl_metric_opts;

/* Prometheus' default latency buckets, in seconds: .005 .01 .025 .05 .1 .25 .5 1 2.5 5 10. */
#define SL_METRICS_DEFAULT_BUCKETS                              \
    {                                                           \
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10 \
    }

/* The Content-Type of what sl_metrics_write produces, for a /metrics handler. */
#define SL_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* A growable byte buffer owned by the caller: start it zeroed ({0}), reuse it across calls,
 * release it with sl_buf_destroy. data is NUL-terminated after a successful write (not counted
 * in len). */
typedef struct sl_buf {
    char *data;
    size_t len;
    size_t cap;
} sl_buf;

/* Frees b's memory and zeroes it. Threads: single owner. */
SL_API void sl_buf_destroy(sl_buf *b);

/* ---- the registry -------------------------------------------------------------------------- */

/* Creates an empty registry; the caller owns it (sl_metrics_free). Returns 0, or SL_EINVAL
 * (out NULL) / SL_ENOMEM with *out untouched. Threads: any. Does not block. */
SL_API int sl_metrics_new(sl_metrics **out);

/* Frees the registry, its families and their children. No thread may use any of them any more.
 * NULL and the default registry are ignored. Threads: single owner. */
SL_API void sl_metrics_free(sl_metrics *m);

/* The process-wide registry that sluice's own modules (server, pools) register into and that
 * /metrics serves. Created on first use; never freed. Returns NULL only if that first creation
 * ran out of memory (later calls try again). Threads: any. */
SL_API sl_metrics *sl_metrics_default(void);

/* Registers a family. Returns 0 and *out, SL_EINVAL (bad name, label name, bucket list or
 * type; "le" as a histogram label), SL_EEXIST (the name is taken in m) or SL_ENOMEM. Name,
 * help, labels and buckets are copied. Threads: any. */
SL_API int sl_metrics_register(sl_metrics *m, sl_metric_type type, const sl_metric_opts *opts,
                               sl_metric_family **out);

/* Removes a family from m and frees it with its children. After it returns, no scrape reads
 * it and no callback of it runs; the caller must ensure no thread still uses its children.
 * For objects with their own lifetime (a pool registers on creation, unregisters when freed).
 * f must belong to m; NULL f is ignored. Threads: any. */
SL_API void sl_metrics_unregister(sl_metrics *m, sl_metric_family *f);

/* Appends every family of m to out in Prometheus text format 0.0.4 (families by name, children
 * by label values; families without children are skipped). Returns 0, SL_EINVAL (m or out
 * NULL), or SL_ENOMEM, in which case out->len is as it was before the call. Calls every callback
 * child's fn (under m's lock, on this thread). Threads: any; runs under m's lock, so updates go on
 * but registration waits. */
SL_API int sl_metrics_write(sl_metrics *m, sl_buf *out);

/* ---- children (one per tuple of label values) ------------------------------------------------ */

/* Returns the child of f for the given label values (n_labels strings, in the family's label
 * order; NULL is read as ""; invalid UTF-8 is stored as U+FFFD), creating it on first use: the
 * same values give the same pointer. Values are copied. Returns 0, SL_EINVAL (f is not of that
 * type, or the tuple holds a callback child) or SL_ENOMEM. Takes f's lock: call once and keep
 * the pointer, not per update. values may be NULL for a family without labels. */
SL_API int sl_metric_counter(sl_metric_family *f, const char *const *values, sl_counter **out);
SL_API int sl_metric_gauge(sl_metric_family *f, const char *const *values, sl_gauge **out);
SL_API int sl_metric_histogram(sl_metric_family *f, const char *const *values, sl_histogram **out);

/* Adds a callback child to a counter or gauge family: fn(arg) is its value at each scrape.
 * Returns 0, SL_EINVAL (a histogram family; fn NULL), SL_EEXIST (the tuple exists) or
 * SL_ENOMEM. fn and arg must stay valid until the family is unregistered or m freed. */
SL_API int sl_metric_func(sl_metric_family *f, const char *const *values, sl_metric_fn fn,
                          void *arg);

/* Shorthands for families without labels: register, then return the one child. Same returns
 * as sl_metrics_register. bounds NULL means SL_METRICS_DEFAULT_BUCKETS. */
SL_API int sl_metrics_counter(sl_metrics *m, const char *name, const char *help, sl_counter **out);
SL_API int sl_metrics_gauge(sl_metrics *m, const char *name, const char *help, sl_gauge **out);
SL_API int sl_metrics_histogram(sl_metrics *m, const char *name, const char *help,
                                const double *bounds, size_t n_bounds, sl_histogram **out);
SL_API int sl_metrics_gauge_func(sl_metrics *m, const char *name, const char *help, sl_metric_fn fn,
                                 void *arg);

/* ---- updates: lock-free, never block, Threads: any ----------------------------------------- */

/* Every update and read below takes a child returned by the functions above (never NULL: it
 * is not checked, to keep an update one atomic add) and cannot fail. The child belongs to its
 * family: it stays valid until sl_metrics_unregister or sl_metrics_free. */

/* Adds 1 / n to the counter (n wraps at 2^64, as Prometheus counters may reset). */
SL_API void sl_counter_inc(sl_counter *c);
SL_API void sl_counter_add(sl_counter *c, uint64_t n);
/* The sum over shards: exact once updates stop, a moment's snapshot while they run. */
SL_API uint64_t sl_counter_value(const sl_counter *c);

/* Adds 1, -1 or delta to the gauge. */
SL_API void sl_gauge_inc(sl_gauge *g);
SL_API void sl_gauge_dec(sl_gauge *g);
SL_API void sl_gauge_add(sl_gauge *g, int64_t delta);
/* Sets the value. An add racing with a set lands either before it (overwritten) or after it
 * (counted on top), never half-way. */
SL_API void sl_gauge_set(sl_gauge *g, int64_t v);
/* The current value (base plus the sum over shards; a snapshot while updates run). */
SL_API int64_t sl_gauge_value(const sl_gauge *g);

/* Counts v in the first bucket whose upper bound is >= v (NaN and values past the last bound
 * go to +Inf) and adds v to the sum. */
SL_API void sl_histogram_observe(sl_histogram *h, double v);
/* The same for a duration in ns, observed in seconds (ns / 1e9), to match the default
 * buckets and the Prometheus convention (*_seconds). */
SL_API void sl_histogram_observe_ns(sl_histogram *h, int64_t ns);
/* The number of observations and their sum (snapshots while observations run). */
SL_API uint64_t sl_histogram_count(const sl_histogram *h);
SL_API double sl_histogram_sum(const sl_histogram *h);

SL_END_DECLS

#endif /* SLUICE_METRICS_H */
