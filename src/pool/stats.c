/* sl_pool statistics: counters, histograms and the drain-rate estimate.
 *
 * Counters live with their writer so the hot path never shares a cache line for counting:
 * each worker owns its sl__counts (single writer, relaxed load + store), "submitted" is the
 * ring's tail (every accepted job takes exactly one ring position; retries never touch the
 * ring), "rejected" is one atomic on a cold line. A snapshot sums them under mu, which only
 * pins the worker list (workers do not take mu to count). Reaped workers' counts are folded
 * into pool->folded so nothing is lost when threads come and go.
 *
 * Drain rate: an EWMA of jobs started per second (a start frees a queue slot, so this is the
 * rate at which a refused caller's chance improves; in steady state it equals completions/s).
 * It is sampled lazily — when a caller is refused or asks for Retry-After — at most every
 * 10 ms, with weight 1 - exp(-dt / 1 s), so irregular sampling gives a time-based average. */
#include <math.h>

#include "pool/pool_int.h"
#include "sluice/clock.h"

#define RATE_MIN_DT SL_MS(10)
#define RATE_TAU_S  1.0

static uint64_t ld(const _Atomic uint64_t *c)
{
    return atomic_load_explicit(c, memory_order_relaxed);
}

static void add_counts(sl_pool_stats *st, const sl__counts *c)
{
    st->started += ld(&c->started);
    st->succeeded += ld(&c->succeeded);
    st->failed += ld(&c->failed);
    st->retried += ld(&c->retried);
    st->dead += ld(&c->dead);
    st->abandoned += ld(&c->abandoned);
    for (int i = 0; i < SL_POOL_HIST_BUCKETS; i++) {
        st->queue_wait[i] += ld(&c->wait_hist[i]);
        st->run_time[i] += ld(&c->run_hist[i]);
    }
}

void sl__pool_fold_locked(sl_pool *pool, sl__worker *w)
{
    sl__counts *f = &pool->folded, *c = &w->c;
    sl__own_inc(&f->started, ld(&c->started));
    sl__own_inc(&f->succeeded, ld(&c->succeeded));
    sl__own_inc(&f->failed, ld(&c->failed));
    sl__own_inc(&f->retried, ld(&c->retried));
    sl__own_inc(&f->dead, ld(&c->dead));
    sl__own_inc(&f->abandoned, ld(&c->abandoned));
    for (int i = 0; i < SL_POOL_HIST_BUCKETS; i++) {
        sl__own_inc(&f->wait_hist[i], ld(&c->wait_hist[i]));
        sl__own_inc(&f->run_hist[i], ld(&c->run_hist[i]));
    }
}

void sl__pool_counts_locked(sl_pool *pool, sl_pool_stats *st)
{
    memset(st, 0, sizeof *st);
    add_counts(st, &pool->folded);
    for (int i = 0; i < pool->nworkers; i++) {
        add_counts(st, &pool->workers[i]->c);
        st->running +=
            (uint64_t)atomic_load_explicit(&pool->workers[i]->busy, memory_order_relaxed);
    }
    st->abandoned += pool->sd_abandoned;
    st->submitted = sl__ring_pushed(&pool->ring);
    st->rejected = atomic_load_explicit(&pool->rejected, memory_order_relaxed);
    st->queued += sl__ring_count(&pool->ring) + (uint64_t)pool->ready_count;
    st->delayed = pool->heap_n;
    st->workers = pool->live;
    st->capacity = (size_t)pool->ring.mask + 1;
}

int64_t sl_pool_hist_quantile(const uint64_t *buckets, double q)
{
    uint64_t total = 0;
    for (int i = 0; i < SL_POOL_HIST_BUCKETS; i++)
        total += buckets[i];
    if (total == 0) return 0;
    if (q <= 0) q = 1e-9;
    if (q > 1) q = 1;
    uint64_t rank = (uint64_t)ceil(q * (double)total), seen = 0;
    for (int i = 0; i < SL_POOL_HIST_BUCKETS; i++) {
        seen += buckets[i];
        if (seen >= rank) return i == 0 ? 0 : (i >= 63 ? INT64_MAX : (int64_t)1 << i);
    }
    return INT64_MAX;
}

static double rate_get(sl_pool *pool)
{
    union {
        uint64_t u;
        double d;
    } v = {.u = atomic_load_explicit(&pool->rate_bits, memory_order_relaxed)};
    return v.d;
}

void sl__pool_rate_update(sl_pool *pool, bool force)
{
    int64_t now = sl_mono_ns();
    int64_t last = atomic_load_explicit(&pool->rate_at_ns, memory_order_relaxed);
    if (!force && last != 0 && now - last < RATE_MIN_DT) return;
    pthread_mutex_lock(&pool->mu);
    last = atomic_load_explicit(&pool->rate_at_ns, memory_order_relaxed);
    if (force || last == 0 || now - last >= RATE_MIN_DT) {
        uint64_t started = ld(&pool->folded.started);
        for (int i = 0; i < pool->nworkers; i++)
            started += ld(&pool->workers[i]->c.started);
        if (last != 0 && now > last) {
            double dt = (double)(now - last) / 1e9;
            double inst = (double)(started - pool->rate_started) / dt;
            double r = rate_get(pool);
            if (!pool->rate_known) {
                r = inst;
                pool->rate_known = started > 0;
            } else {
                r += (1.0 - exp(-dt / RATE_TAU_S)) * (inst - r);
            }
            union {
                double d;
                uint64_t u;
            } v = {.d = r};
            atomic_store_explicit(&pool->rate_bits, v.u, memory_order_relaxed);
        }
        pool->rate_started = started;
        atomic_store_explicit(&pool->rate_at_ns, now, memory_order_relaxed);
    }
    pthread_mutex_unlock(&pool->mu);
}

int64_t sl_pool_retry_after_ns(sl_pool *pool)
{
    if (!pool) return SL_SEC(1);
    sl__pool_rate_update(pool, false);
    double r = rate_get(pool);
    if (!(r > 0)) return SL_SEC(1);
    uint64_t queued = sl__ring_count(&pool->ring) +
                      (uint64_t)atomic_load_explicit(&pool->ready_n, memory_order_relaxed);
    double ns = (double)(queued ? queued : 1) / r * 1e9;
    if (ns < (double)SL_MS(1)) return SL_MS(1);
    if (ns > (double)SL_SEC(60)) return SL_SEC(60);
    return (int64_t)ns;
}

void sl_pool_stats_get(sl_pool *pool, sl_pool_stats *out)
{
    if (!pool || !out) return;
    pthread_mutex_lock(&pool->mu);
    sl__pool_counts_locked(pool, out);
    pthread_mutex_unlock(&pool->mu);
    out->drain_rate = rate_get(pool);
    out->queue_wait_p50_ns = sl_pool_hist_quantile(out->queue_wait, 0.50);
    out->queue_wait_p99_ns = sl_pool_hist_quantile(out->queue_wait, 0.99);
    out->run_time_p50_ns = sl_pool_hist_quantile(out->run_time, 0.50);
    out->run_time_p99_ns = sl_pool_hist_quantile(out->run_time, 0.99);
}
