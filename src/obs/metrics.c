/* Metrics registry (sl_metrics): per-thread shards on the hot path, Prometheus text on scrape.
 *
 * The problem: a counter bumped by every reactor thread on every request must not become the
 * one cache line all cores fight over. Each child (one tuple of label values) owns an array of
 * shards, one 64-byte line each; a thread picks its shard once (a thread-local id handed out
 * round-robin, masked by the shard count) and only ever does relaxed atomic adds on it. The
 * shard count is the CPU count rounded up to a power of two (at least 4, at most 32): with at
 * most that many threads running at once, two running threads rarely share a line, and when
 * they do the atomics keep the sum right. A read sums the shards; it is exact once updates stop
 * and a snapshot while they run (counters never go backwards between two reads, since every
 * shard only grows).
 *
 * Invariants: a child's header (shard pointer, mask, stride, bounds) is written once before the
 * child is published under the family's lock, and only read afterwards, so updates need no
 * lock. A histogram keeps per-bucket counts only; its count is the sum of all buckets, so the
 * exposition's +Inf bucket always equals _count, and buckets are cumulative by construction.
 * Gauge sets are an offset: value = base + sum(shards); set(v) stores base = v - sum(shards).
 *
 * Locks: the registry's mutex guards its family list and is held for a whole scrape (callbacks
 * run under it); a family's mutex guards its sorted child array. Order: registry, then family.
 * Families and children are sorted on insert, so a scrape is a walk, and output is stable. */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sluice/error.h"
#include "sluice/metrics.h"
#include "base/log_int.h"

#define LINE       64
#define MAX_SHARDS 32

/* ---- structures ---------------------------------------------------------------------------- */

typedef struct child {
    char **values;   /* n_labels strings, valid UTF-8; immutable */
    sl_metric_fn fn; /* callback child: value read at scrape; else NULL */
    void *arg;
    const double *bounds; /* histograms: the family's bounds (n_bounds of them) */
    size_t n_bounds;
    unsigned mask; /* shard count - 1 */
    size_t stride; /* bytes per shard, a multiple of LINE */
    unsigned char *shards;
    _Atomic int64_t base; /* gauges: offset written by set */
} child;

struct sl_counter {
    child c;
};
struct sl_gauge {
    child c;
};
struct sl_histogram {
    child c;
};

struct sl_metric_family {
    sl_metrics *reg;
    sl_metric_type type;
    char *name, *help;
    char **labels;
    size_t n_labels;
    double *bounds; /* histograms: finite or -Inf, strictly increasing; +Inf implied */
    size_t n_bounds;
    pthread_mutex_t mu; /* guards children, n_children, cap */
    child **children;   /* sorted by values */
    size_t n_children, cap;
};

struct sl_metrics {
    pthread_mutex_t mu;      /* guards fams, n, cap; held during a scrape */
    sl_metric_family **fams; /* sorted by name */
    size_t n, cap;
    unsigned nshards;
    bool is_default;
};

/* ---- shards -------------------------------------------------------------------------------- */

static atomic_uint g_next_shard;
static __attribute__((tls_model("initial-exec"))) _Thread_local unsigned t_shard; /* id + 1 */

static inline unsigned shard_id(void)
{
    unsigned s = t_shard;
    if (__builtin_expect(s == 0, 0)) {
        s = atomic_fetch_add_explicit(&g_next_shard, 1, memory_order_relaxed) + 1;
        t_shard = s;
    }
    return s - 1;
}

static inline unsigned char *my_shard(const child *c)
{
    return c->shards + (size_t)(shard_id() & c->mask) * c->stride;
}

static inline _Atomic uint64_t *shard_u64(const child *c, unsigned i, size_t slot)
{
    return (_Atomic uint64_t *)(c->shards + (size_t)i * c->stride) + slot;
}

static unsigned shard_count(void)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    unsigned n = 4;
    while (n < MAX_SHARDS && (long)n < cpus)
        n *= 2;
    return n;
}

/* ---- small helpers ------------------------------------------------------------------------- */

static char *dup_str(const char *s)
{
    return strdup(s ? s : "");
}

/* A copy of s with each invalid UTF-8 byte replaced by U+FFFD (Prometheus requires UTF-8). */
static char *dup_utf8(const char *s)
{
    if (!s) s = "";
    size_t n = strlen(s);
    char *out = malloc(n * 3 + 1), *o = out;
    if (!out) return NULL;
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t len = u[i] < 0x80 ? 1 : sl__utf8_decode(u + i, n - i, &cp);
        if (len == 0) {
            memcpy(o, "\xEF\xBF\xBD", 3);
            o += 3;
            i++;
        } else {
            memcpy(o, u + i, len);
            o += len;
            i += len;
        }
    }
    *o = 0;
    return out;
}

static void free_strs(char **v, size_t n)
{
    if (!v) return;
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static bool valid_name(const char *s, bool colon)
{
    if (!s || !*s) return false;
    for (size_t i = 0; s[i]; i++) {
        char c = s[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
                  (colon && c == ':') || (i > 0 && c >= '0' && c <= '9');
        if (!ok) return false;
    }
    return true;
}

/* ---- the registry -------------------------------------------------------------------------- */

int sl_metrics_new(sl_metrics **out)
{
    if (!out) return SL_EINVAL;
    sl_metrics *m = calloc(1, sizeof *m);
    if (!m) return SL_ENOMEM;
    if (pthread_mutex_init(&m->mu, NULL) != 0) {
        free(m);
        return SL_ENOMEM;
    }
    m->nshards = shard_count();
    *out = m;
    return 0;
}

static void child_free(child *c, size_t n_labels)
{
    if (!c) return;
    free_strs(c->values, n_labels);
    free(c->shards);
    free(c);
}

static void family_free(sl_metric_family *f)
{
    for (size_t i = 0; i < f->n_children; i++)
        child_free(f->children[i], f->n_labels);
    free(f->children);
    free_strs(f->labels, f->n_labels);
    free(f->bounds);
    free(f->name);
    free(f->help);
    pthread_mutex_destroy(&f->mu);
    free(f);
}

void sl_metrics_free(sl_metrics *m)
{
    if (!m || m->is_default) return;
    for (size_t i = 0; i < m->n; i++)
        family_free(m->fams[i]);
    free(m->fams);
    pthread_mutex_destroy(&m->mu);
    free(m);
}

static _Atomic(sl_metrics *) g_default;
static pthread_mutex_t g_default_mu = PTHREAD_MUTEX_INITIALIZER;

sl_metrics *sl_metrics_default(void)
{
    sl_metrics *m = atomic_load_explicit(&g_default, memory_order_acquire);
    if (m) return m;
    pthread_mutex_lock(&g_default_mu);
    m = atomic_load_explicit(&g_default, memory_order_relaxed);
    if (!m && sl_metrics_new(&m) == 0) {
        m->is_default = true;
        atomic_store_explicit(&g_default, m, memory_order_release);
    }
    pthread_mutex_unlock(&g_default_mu);
    return m;
}

/* Checks and copies the bucket bounds: NULL means the defaults; a final +Inf is dropped. */
static int copy_bounds(sl_metric_family *f, const sl_metric_opts *o)
{
    static const double defaults[] = SL_METRICS_DEFAULT_BUCKETS;
    const double *b = o->buckets ? o->buckets : defaults;
    size_t n = o->buckets ? o->n_buckets : sizeof defaults / sizeof defaults[0];
    if (n > 0 && isinf(b[n - 1]) && b[n - 1] > 0) n--;
    for (size_t i = 0; i < n; i++) {
        if (isnan(b[i]) || (isinf(b[i]) && b[i] > 0)) return SL_EINVAL;
        if (i > 0 && !(b[i] > b[i - 1])) return SL_EINVAL;
    }
    f->bounds = malloc((n ? n : 1) * sizeof *b);
    if (!f->bounds) return SL_ENOMEM;
    if (n) memcpy(f->bounds, b, n * sizeof *b);
    f->n_bounds = n;
    return 0;
}

static int check_labels(sl_metric_type type, const sl_metric_opts *o)
{
    if (o->n_labels && !o->labels) return SL_EINVAL;
    for (size_t i = 0; i < o->n_labels; i++) {
        const char *l = o->labels[i];
        if (!valid_name(l, false) || strncmp(l, "__", 2) == 0) return SL_EINVAL;
        if (type == SL_METRIC_HISTOGRAM && strcmp(l, "le") == 0) return SL_EINVAL;
        for (size_t j = 0; j < i; j++)
            if (strcmp(l, o->labels[j]) == 0) return SL_EINVAL;
    }
    return 0;
}

static int family_new(sl_metric_type type, const sl_metric_opts *o, sl_metric_family **out)
{
    sl_metric_family *f = calloc(1, sizeof *f);
    if (!f) return SL_ENOMEM;
    if (pthread_mutex_init(&f->mu, NULL) != 0) {
        free(f);
        return SL_ENOMEM;
    }
    f->type = type;
    int rc = SL_ENOMEM;
    f->name = dup_str(o->name);
    f->help = dup_str(o->help);
    if (!f->name || !f->help) goto fail;
    if (o->n_labels) {
        f->labels = calloc(o->n_labels, sizeof *f->labels);
        if (!f->labels) goto fail;
        f->n_labels = o->n_labels; /* free_strs copes with the NULLs left by a failure */
        for (size_t i = 0; i < o->n_labels; i++)
            if (!(f->labels[i] = dup_str(o->labels[i]))) goto fail;
    }
    if (type == SL_METRIC_HISTOGRAM && (rc = copy_bounds(f, o)) != 0) goto fail;
    *out = f;
    return 0;
fail:
    family_free(f);
    return rc;
}

/* Index of the first family whose name is >= name. Caller holds m->mu. */
static size_t find_family(const sl_metrics *m, const char *name)
{
    size_t lo = 0, hi = m->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (strcmp(m->fams[mid]->name, name) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

int sl_metrics_register(sl_metrics *m, sl_metric_type type, const sl_metric_opts *o,
                        sl_metric_family **out)
{
    if (!m || !o || !out) return SL_EINVAL;
    if (type != SL_METRIC_COUNTER && type != SL_METRIC_GAUGE && type != SL_METRIC_HISTOGRAM)
        return SL_EINVAL;
    if (!valid_name(o->name, true)) return SL_EINVAL;
    int rc = check_labels(type, o);
    if (rc) return rc;
    sl_metric_family *f = NULL;
    if ((rc = family_new(type, o, &f)) != 0) return rc;
    f->reg = m;

    pthread_mutex_lock(&m->mu);
    size_t at = find_family(m, f->name);
    if (at < m->n && strcmp(m->fams[at]->name, f->name) == 0) {
        rc = SL_EEXIST;
    } else if (m->n == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 16;
        sl_metric_family **p = realloc(m->fams, cap * sizeof *p);
        if (p) {
            m->fams = p;
            m->cap = cap;
        } else {
            rc = SL_ENOMEM;
        }
    }
    if (rc == 0) {
        memmove(m->fams + at + 1, m->fams + at, (m->n - at) * sizeof *m->fams);
        m->fams[at] = f;
        m->n++;
    }
    pthread_mutex_unlock(&m->mu);
    if (rc) {
        family_free(f);
        return rc;
    }
    *out = f;
    return 0;
}

void sl_metrics_unregister(sl_metrics *m, sl_metric_family *f)
{
    if (!m || !f) return;
    pthread_mutex_lock(&m->mu);
    size_t at = find_family(m, f->name);
    bool found = at < m->n && m->fams[at] == f;
    if (found) {
        memmove(m->fams + at, m->fams + at + 1, (m->n - at - 1) * sizeof *m->fams);
        m->n--;
    }
    pthread_mutex_unlock(&m->mu);
    if (found) family_free(f);
}

/* ---- children ------------------------------------------------------------------------------ */

static int cmp_values(char *const *a, const char *const *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int c = strcmp(a[i], b[i] ? b[i] : "");
        if (c) return c;
    }
    return 0;
}

/* Index of the first child whose values are >= values (already repaired UTF-8). Caller holds
 * f->mu. */
static size_t find_child(const sl_metric_family *f, const char *const *values)
{
    size_t lo = 0, hi = f->n_children;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (cmp_values(f->children[mid]->values, values, f->n_labels) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static child *child_new(const sl_metric_family *f, const char *const *values)
{
    child *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    if (f->n_labels) {
        c->values = calloc(f->n_labels, sizeof *c->values);
        if (!c->values) goto fail;
        for (size_t i = 0; i < f->n_labels; i++)
            if (!(c->values[i] = dup_utf8(values ? values[i] : NULL))) goto fail;
    }
    unsigned n = f->reg->nshards;
    size_t slots = f->type == SL_METRIC_HISTOGRAM ? f->n_bounds + 2 : 1; /* buckets, +Inf, sum */
    c->stride = (slots * sizeof(uint64_t) + LINE - 1) / LINE * LINE;
    c->shards = aligned_alloc(LINE, c->stride * n);
    if (!c->shards) goto fail;
    memset(c->shards, 0, c->stride * n); /* zero bits: 0 counts, 0 sum (+0.0) */
    c->mask = n - 1;
    c->bounds = f->bounds;
    c->n_bounds = f->n_bounds;
    atomic_init(&c->base, 0);
    return c;
fail:
    child_free(c, f->n_labels);
    return NULL;
}

/* Inserts c at index at, growing the array. Caller holds f->mu. */
static int insert_child(sl_metric_family *f, size_t at, child *c)
{
    if (f->n_children == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 8;
        child **p = realloc(f->children, cap * sizeof *p);
        if (!p) return SL_ENOMEM;
        f->children = p;
        f->cap = cap;
    }
    memmove(f->children + at + 1, f->children + at, (f->n_children - at) * sizeof *f->children);
    f->children[at] = c;
    f->n_children++;
    return 0;
}

/* Finds or creates the child for values; with fn, creates a callback child that must not exist
 * yet. The candidate is built outside the lock (allocation) and dropped if the tuple exists:
 * lookups are rare, since callers keep the pointer. */
static int get_child(sl_metric_family *f, sl_metric_type want, const char *const *values,
                     sl_metric_fn fn, void *arg, child **out)
{
    if (!f || !out || f->type != want) return SL_EINVAL;
    if (f->n_labels && !values) return SL_EINVAL;
    child *fresh = child_new(f, values);
    if (!fresh) return SL_ENOMEM;
    fresh->fn = fn; /* set before the child is published below */
    fresh->arg = arg;
    const char *const *key = (const char *const *)fresh->values;
    child *found = NULL;
    int rc = 0;
    pthread_mutex_lock(&f->mu);
    size_t at = find_child(f, key);
    if (at < f->n_children && cmp_values(f->children[at]->values, key, f->n_labels) == 0)
        found = f->children[at];
    if (found) {
        if (fn)
            rc = SL_EEXIST;
        else if (found->fn)
            rc = SL_EINVAL;
    } else if ((rc = insert_child(f, at, fresh)) == 0) {
        found = fresh;
        fresh = NULL;
    }
    pthread_mutex_unlock(&f->mu);
    child_free(fresh, f->n_labels);
    if (rc == 0) *out = found;
    return rc;
}

int sl_metric_counter(sl_metric_family *f, const char *const *values, sl_counter **out)
{
    return get_child(f, SL_METRIC_COUNTER, values, NULL, NULL, (child **)out);
}

int sl_metric_gauge(sl_metric_family *f, const char *const *values, sl_gauge **out)
{
    return get_child(f, SL_METRIC_GAUGE, values, NULL, NULL, (child **)out);
}

int sl_metric_histogram(sl_metric_family *f, const char *const *values, sl_histogram **out)
{
    return get_child(f, SL_METRIC_HISTOGRAM, values, NULL, NULL, (child **)out);
}

int sl_metric_func(sl_metric_family *f, const char *const *values, sl_metric_fn fn, void *arg)
{
    if (!f || !fn || f->type == SL_METRIC_HISTOGRAM) return SL_EINVAL;
    child *c;
    return get_child(f, f->type, values, fn, arg, &c);
}

/* Registers a family without labels and returns its one child (or adds fn as that child). On
 * a child failure the family is unregistered again, so a failed call leaves nothing behind. */
static int register_single(sl_metrics *m, sl_metric_type type, const sl_metric_opts *o,
                           sl_metric_fn fn, void *arg, child **out)
{
    sl_metric_family *f;
    int rc = sl_metrics_register(m, type, o, &f);
    if (rc) return rc;
    child *c = NULL;
    rc = get_child(f, type, NULL, fn, arg, &c);
    if (rc) {
        sl_metrics_unregister(m, f);
        return rc;
    }
    if (out) *out = c;
    return 0;
}

int sl_metrics_counter(sl_metrics *m, const char *name, const char *help, sl_counter **out)
{
    if (!out) return SL_EINVAL;
    const sl_metric_opts o = {.name = name, .help = help};
    return register_single(m, SL_METRIC_COUNTER, &o, NULL, NULL, (child **)out);
}

int sl_metrics_gauge(sl_metrics *m, const char *name, const char *help, sl_gauge **out)
{
    if (!out) return SL_EINVAL;
    const sl_metric_opts o = {.name = name, .help = help};
    return register_single(m, SL_METRIC_GAUGE, &o, NULL, NULL, (child **)out);
}

int sl_metrics_histogram(sl_metrics *m, const char *name, const char *help, const double *bounds,
                         size_t n_bounds, sl_histogram **out)
{
    if (!out) return SL_EINVAL;
    const sl_metric_opts o = {.name = name, .help = help, .buckets = bounds, .n_buckets = n_bounds};
    return register_single(m, SL_METRIC_HISTOGRAM, &o, NULL, NULL, (child **)out);
}

int sl_metrics_gauge_func(sl_metrics *m, const char *name, const char *help, sl_metric_fn fn,
                          void *arg)
{
    if (!fn) return SL_EINVAL;
    const sl_metric_opts o = {.name = name, .help = help};
    return register_single(m, SL_METRIC_GAUGE, &o, fn, arg, NULL);
}

/* ---- updates ------------------------------------------------------------------------------- */

void sl_counter_inc(sl_counter *c)
{
    atomic_fetch_add_explicit((_Atomic uint64_t *)my_shard(&c->c), 1, memory_order_relaxed);
}

void sl_counter_add(sl_counter *c, uint64_t n)
{
    atomic_fetch_add_explicit((_Atomic uint64_t *)my_shard(&c->c), n, memory_order_relaxed);
}

static uint64_t sum_slot(const child *c, size_t slot)
{
    uint64_t v = 0;
    for (unsigned i = 0; i <= c->mask; i++)
        v += atomic_load_explicit(shard_u64(c, i, slot), memory_order_relaxed);
    return v;
}

uint64_t sl_counter_value(const sl_counter *c)
{
    return sum_slot(&c->c, 0);
}

/* Gauge shards hold int64 deltas as uint64: unsigned wrap-around is the two's complement sum. */
void sl_gauge_add(sl_gauge *g, int64_t delta)
{
    atomic_fetch_add_explicit((_Atomic uint64_t *)my_shard(&g->c), (uint64_t)delta,
                              memory_order_relaxed);
}

void sl_gauge_inc(sl_gauge *g)
{
    sl_gauge_add(g, 1);
}

void sl_gauge_dec(sl_gauge *g)
{
    sl_gauge_add(g, -1);
}

void sl_gauge_set(sl_gauge *g, int64_t v)
{
    /* An add to a shard already summed is cancelled by the new base (it happened "before" the
     * set); one to a shard not yet summed stays on top (it happened "after"). */
    uint64_t s = sum_slot(&g->c, 0);
    atomic_store_explicit(&g->c.base, (int64_t)((uint64_t)v - s), memory_order_relaxed);
}

int64_t sl_gauge_value(const sl_gauge *g)
{
    uint64_t b = (uint64_t)atomic_load_explicit(&((sl_gauge *)g)->c.base, memory_order_relaxed);
    return (int64_t)(b + sum_slot(&g->c, 0));
}

static inline double bits_f64(uint64_t u)
{
    double d;
    memcpy(&d, &u, sizeof d);
    return d;
}

static inline uint64_t f64_bits(double d)
{
    uint64_t u;
    memcpy(&u, &d, sizeof u);
    return u;
}

void sl_histogram_observe(sl_histogram *h, double v)
{
    const child *c = &h->c;
    size_t i = 0;
    while (i < c->n_bounds && !(v <= c->bounds[i])) /* NaN compares false: +Inf bucket */
        i++;
    _Atomic uint64_t *s = (_Atomic uint64_t *)my_shard(c);
    atomic_fetch_add_explicit(&s[i], 1, memory_order_relaxed);
    /* The sum is a double: add by compare-and-swap on its bits. The shard is (nearly) this
     * thread's own, so the loop almost never repeats. */
    _Atomic uint64_t *sum = &s[c->n_bounds + 1];
    uint64_t old = atomic_load_explicit(sum, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(sum, &old, f64_bits(bits_f64(old) + v),
                                                  memory_order_relaxed, memory_order_relaxed)) {
    }
}

void sl_histogram_observe_ns(sl_histogram *h, int64_t ns)
{
    sl_histogram_observe(h, (double)ns / 1e9);
}

uint64_t sl_histogram_count(const sl_histogram *h)
{
    uint64_t n = 0;
    for (size_t b = 0; b <= h->c.n_bounds; b++)
        n += sum_slot(&h->c, b);
    return n;
}

double sl_histogram_sum(const sl_histogram *h)
{
    double sum = 0;
    for (unsigned i = 0; i <= h->c.mask; i++)
        sum += bits_f64(
            atomic_load_explicit(shard_u64(&h->c, i, h->c.n_bounds + 1), memory_order_relaxed));
    return sum;
}

/* ---- exposition ---------------------------------------------------------------------------- */

void sl_buf_destroy(sl_buf *b)
{
    if (!b) return;
    free(b->data);
    *b = (sl_buf){0};
}

typedef struct wbuf {
    sl_buf *b;
    bool failed;
} wbuf;

static void w_put(wbuf *w, const char *s, size_t n)
{
    if (w->failed) return;
    sl_buf *b = w->b;
    if (!b->data || b->cap - b->len < n + 1) {
        size_t cap = b->data && b->cap ? b->cap : 4096;
        while (cap - b->len < n + 1)
            cap *= 2;
        char *p = realloc(b->data, cap);
        if (!p) {
            w->failed = true;
            return;
        }
        b->data = p;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = 0;
}

static void w_str(wbuf *w, const char *s)
{
    w_put(w, s, strlen(s));
}

/* Escapes backslash and newline (HELP), plus '"' in label values. */
static void w_escaped(wbuf *w, const char *s, bool quote)
{
    size_t run = 0;
    for (;; s++) {
        char c = *s;
        if (c && c != '\\' && c != '\n' && !(quote && c == '"')) {
            run++;
            continue;
        }
        w_put(w, s - run, run);
        run = 0;
        if (!c) return;
        w_str(w, c == '\\' ? "\\\\" : c == '\n' ? "\\n" : "\\\"");
    }
}

static void w_u64(wbuf *w, uint64_t v)
{
    char tmp[24];
    w_put(w, tmp, (size_t)snprintf(tmp, sizeof tmp, "%llu", (unsigned long long)v));
}

static void w_i64(wbuf *w, int64_t v)
{
    char tmp[24];
    w_put(w, tmp, (size_t)snprintf(tmp, sizeof tmp, "%lld", (long long)v));
}

static void w_f64(wbuf *w, double v)
{
    if (isnan(v))
        w_str(w, "NaN");
    else if (isinf(v))
        w_str(w, v > 0 ? "+Inf" : "-Inf");
    else {
        char tmp[32];
        w_put(w, tmp, sl__fmt_double(tmp, v));
    }
}

/* {a="x",b="y"} with an optional le="..." last; nothing when there is no label at all. */
static void w_labels(wbuf *w, const sl_metric_family *f, const child *c, const char *le)
{
    if (!f->n_labels && !le) return;
    w_str(w, "{");
    for (size_t i = 0; i < f->n_labels; i++) {
        if (i) w_str(w, ",");
        w_str(w, f->labels[i]);
        w_str(w, "=\"");
        w_escaped(w, c->values[i], true);
        w_str(w, "\"");
    }
    if (le) {
        w_str(w, f->n_labels ? ",le=\"" : "le=\"");
        w_str(w, le);
        w_str(w, "\"");
    }
    w_str(w, "}");
}

static void w_sample(wbuf *w, const sl_metric_family *f, const child *c, const char *suffix,
                     const char *le)
{
    w_str(w, f->name);
    if (suffix) w_str(w, suffix);
    w_labels(w, f, c, le);
    w_str(w, " ");
}

static void w_histogram(wbuf *w, const sl_metric_family *f, const child *c)
{
    uint64_t cum = 0;
    char le[32];
    for (size_t b = 0; b <= c->n_bounds; b++) {
        cum += sum_slot(c, b);
        if (b < c->n_bounds) {
            if (isinf(c->bounds[b]))
                snprintf(le, sizeof le, "-Inf");
            else
                le[sl__fmt_double(le, c->bounds[b])] = 0;
        }
        w_sample(w, f, c, "_bucket", b < c->n_bounds ? le : "+Inf");
        w_u64(w, cum);
        w_str(w, "\n");
    }
    w_sample(w, f, c, "_sum", NULL);
    w_f64(w, sl_histogram_sum((const sl_histogram *)c));
    w_str(w, "\n");
    w_sample(w, f, c, "_count", NULL);
    w_u64(w, cum);
    w_str(w, "\n");
}

static void w_family(wbuf *w, sl_metric_family *f)
{
    static const char *const types[] = {"", "counter", "gauge", "histogram"};
    pthread_mutex_lock(&f->mu);
    if (f->n_children) {
        w_str(w, "# HELP ");
        w_str(w, f->name);
        w_str(w, " ");
        w_escaped(w, f->help, false);
        w_str(w, "\n# TYPE ");
        w_str(w, f->name);
        w_str(w, " ");
        w_str(w, types[f->type]);
        w_str(w, "\n");
    }
    for (size_t i = 0; i < f->n_children; i++) {
        const child *c = f->children[i];
        if (f->type == SL_METRIC_HISTOGRAM) {
            w_histogram(w, f, c);
            continue;
        }
        w_sample(w, f, c, NULL, NULL);
        if (c->fn)
            w_f64(w, c->fn(c->arg));
        else if (f->type == SL_METRIC_COUNTER)
            w_u64(w, sum_slot(c, 0));
        else
            w_i64(w, sl_gauge_value((const sl_gauge *)c));
        w_str(w, "\n");
    }
    pthread_mutex_unlock(&f->mu);
}

int sl_metrics_write(sl_metrics *m, sl_buf *out)
{
    if (!m || !out) return SL_EINVAL;
    wbuf w = {.b = out};
    size_t start = out->len;
    pthread_mutex_lock(&m->mu);
    for (size_t i = 0; i < m->n; i++)
        w_family(&w, m->fams[i]);
    pthread_mutex_unlock(&m->mu);
    if (w.failed) {
        out->len = start;
        if (out->data) out->data[start] = 0;
        return SL_ENOMEM;
    }
    if (!out->data) w_put(&w, "", 0); /* an empty registry still gives a "" string */
    return w.failed ? SL_ENOMEM : 0;
}
