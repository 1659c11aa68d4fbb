/* sl_pool: creation, submit, and the worker loop.
 *
 * The problem: run many small jobs on a few threads with bounded memory, at tens of millions of
 * jobs per second, while keeping every promise of the header (bounded concurrency, push-back,
 * non-sleeping retries, nothing lost at shutdown).
 *
 * Hot path. submit copies the job (header + id bytes) into a slot of the bounded MPMC ring
 * (pool_int.h) and returns; no lock, no malloc, no clock read except for 1 job in sample_every.
 * A worker pops a slot into its own sl__job, runs fn with the pool's run ctx (or a per-attempt
 * timeout ctx derived from it when the job has a timeout), and counts the outcome in its own
 * counters. Submit signals a condvar only when some worker announced it is going to sleep, so
 * busy workers cost submitters nothing.
 *
 * Sleeping without lost wake-ups (eventcount): a worker with nothing to do spins and yields
 * briefly, then takes mu, increments idle_waiters (seq_cst), re-reads tail and head (seq_cst),
 * and sleeps on work_cv only if no slot is claimed. A submitter claims its slot with a seq_cst
 * CAS on tail, publishes it, then reads idle_waiters (seq_cst): in the single total order
 * either the worker's re-read sees the claim (and stays awake until the job is published) or
 * the submitter sees the waiter and signals under mu, which the worker holds from its re-check
 * until it sleeps. At most one signal is in flight (work_wake_pending). Submitters blocked on a
 * full ring use the mirror protocol (prod_waiting, space_cv, the CAS on head). No per-job
 * fence: the CASes are locked instructions anyway.
 *
 * Ordering at shutdown: ring.tail's top bit closes the ring atomically with respect to every
 * producer's CAS, so after shutdown sets it, the set of accepted jobs is final (head catches up
 * with tail). halt is read before each pop and re-read after it: a job popped after halt became
 * SL__ABANDON is abandoned without running. Retries and the ready list are guarded by mu, and
 * shutdown sets halt under mu, so no retry can slip into the heap after shutdown emptied it. */
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "pool/pool_int.h"
#include "base/base_int.h"
#include "sync/sync_int.h"
#include "sluice/clock.h"

/* Before a worker sleeps (or a submitter blocks on a full ring) it spins a little, then yields
 * a few times: a futex sleep + wake costs far more than a tiny job, but on a loaded machine
 * pure spinning steals the CPU from the very thread it waits for, so it yields instead. After
 * that it sleeps: an idle pool uses no CPU. */
#define WORKER_SPINS  64
#define WORKER_YIELDS 16
#define SUBMIT_SPINS  32
#define SUBMIT_YIELDS 16

static void *worker_main(void *arg);

/* ---- helpers ---------------------------------------------------------------------------- */

/* Mirrors the running job's id for shutdown's overrun log: the words up to the NUL (bytes after
 * it in the last word are whatever the buffer held; readers stop at the NUL). */
static void publish_id(sl__worker *w)
{
    const char *id = w->cur->id;
    size_t n = (w->cur->idlen + 8) / 8;
    for (size_t i = 0; i < n; i++) {
        uint64_t word;
        memcpy(&word, id + 8 * i, sizeof word);
        atomic_store_explicit(&w->id_words[i], word, memory_order_relaxed);
    }
}

static void view_of(const sl__job *job, sl_pool_job *v)
{
    v->id = job->id;
    v->fn = job->fn;
    v->arg = job->arg;
    v->arg_free = job->arg_free;
    v->timeout_ns = job->timeout_ns;
}

static void free_arg(const sl__job *job)
{
    if (job->arg_free) job->arg_free(job->arg);
}

/* Validates and copies a public job into the pool's form. */
static int load_job(const sl_pool *pool, const sl_pool_job *job, sl__job *dst)
{
    if (!job || !job->fn) return SL_EINVAL;
    const char *id = job->id ? job->id : "";
    size_t len = strnlen(id, SL_POOL_ID_MAX + 1);
    if (len > SL_POOL_ID_MAX) return SL_EINVAL;
    dst->fn = job->fn;
    dst->arg = job->arg;
    dst->arg_free = job->arg_free;
    dst->timeout_ns = job->timeout_ns > 0    ? job->timeout_ns
                      : job->timeout_ns == 0 ? pool->job_timeout_ns
                                             : 0;
    dst->enq_ns = 0;
    dst->attempts = 0;
    dst->idlen = (uint32_t)len;
    memcpy(dst->id, id, len + 1);
    return 0;
}

/* Wakes one sleeping worker, unless a wake-up is already in flight: while the woken worker is
 * being scheduled, further submits would only pile up futex calls. The flag is cleared by every
 * worker that goes to sleep or wakes up, before it re-checks the ring (seq_cst), so a
 * submitter that sees the flag set is ordered before that re-check, which then finds its job. */
static void wake_worker(sl_pool *pool)
{
    if (atomic_load_explicit(&pool->idle_waiters, memory_order_seq_cst) > 0 &&
        !atomic_exchange_explicit(&pool->work_wake_pending, 1, memory_order_seq_cst)) {
        pthread_mutex_lock(&pool->mu);
        pthread_cond_signal(&pool->work_cv);
        pthread_mutex_unlock(&pool->mu);
    }
}

/* The same for submitters blocked on a full ring. */
static void wake_submitter(sl_pool *pool)
{
    if (atomic_load_explicit(&pool->prod_waiting, memory_order_seq_cst) > 0 &&
        !atomic_exchange_explicit(&pool->space_wake_pending, 1, memory_order_seq_cst)) {
        pthread_mutex_lock(&pool->mu);
        sl__cond_signal(&pool->space_cv);
        pthread_mutex_unlock(&pool->mu);
    }
}

static void reject(sl_pool *pool)
{
    atomic_fetch_add_explicit(&pool->rejected, 1, memory_order_relaxed);
}

/* ---- creation ----------------------------------------------------------------------------- */

static int online_cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

static int check_opts(const sl_pool_opts *o)
{
#define BAD(...) sl__fail(SL_EINVAL, "sl_pool_opts" __VA_ARGS__)
    if (o->workers < 0) return BAD(".workers is negative (%d)", o->workers);
    if (o->job_timeout_ns < 0) return BAD(".job_timeout_ns is negative");
    if (o->hard_timeout_ns < 0) return BAD(".hard_timeout_ns is negative");
    if (o->overrun_log_interval_ns < 0) return BAD(".overrun_log_interval_ns is negative");
    const sl_pool_retry *r = &o->retry;
    if (r->max_attempts < 0) return BAD(".retry.max_attempts is negative");
    if (r->base_delay_ns < 0) return BAD(".retry.base_delay_ns is negative");
    if (r->max_delay_ns < 0) return BAD(".retry.max_delay_ns is negative");
    if (r->multiplier != 0 && !(r->multiplier >= 1.0))
        return BAD(".retry.multiplier %g is below 1 (0 means the default)", r->multiplier);
    if (o->sample_every & (o->sample_every - 1))
        return BAD(".sample_every %u is not a power of two", (unsigned)o->sample_every);
    if (o->queue_capacity > (SIZE_MAX >> 2) / sizeof(sl__slot))
        return BAD(".queue_capacity %zu is too large", o->queue_capacity);
#undef BAD
    return 0;
}

static void apply_defaults(sl_pool *p, const sl_pool_opts *o)
{
    snprintf(p->name, sizeof p->name, "%s", o->name ? o->name : "pool");
    p->log = o->logger ? o->logger : sl_log_default();
    p->retry = o->retry;
    if (p->retry.max_attempts == 0) p->retry.max_attempts = 3;
    if (p->retry.base_delay_ns == 0) p->retry.base_delay_ns = SL_MS(100);
    if (p->retry.max_delay_ns == 0) p->retry.max_delay_ns = SL_SEC(30);
    if (p->retry.multiplier == 0) p->retry.multiplier = 2.0;
    p->job_timeout_ns = o->job_timeout_ns;
    p->hard_timeout_ns = o->hard_timeout_ns;
    p->overrun_log_ns = o->overrun_log_interval_ns ? o->overrun_log_interval_ns : SL_SEC(1);
    p->on_done = o->on_done;
    p->on_dead = o->on_dead;
    p->on_abandoned = o->on_abandoned;
    p->hook_arg = o->hook_arg;
    p->sample_mask = (o->sample_every ? o->sample_every : 16) - 1;
    p->rng = o->seed ? o->seed : (uint64_t)sl_mono_ns() ^ (uint64_t)(uintptr_t)p;
}

static int init_ring(sl__ring *r, size_t want)
{
    /* At least two slots: with one, a slot's "free for lap n+1" and "full in lap n" sequence
     * values coincide, so the ring cannot tell full from empty. */
    size_t cap = 2;
    while (cap < want)
        cap <<= 1;
    r->slots =
        aligned_alloc(SL__POOL_LINE, (cap * sizeof(sl__slot) + SL__POOL_LINE - 1) & ~(size_t)63);
    if (!r->slots) return SL_ENOMEM;
    for (size_t i = 0; i < cap; i++)
        atomic_init(&r->slots[i].seq, i);
    r->mask = cap - 1;
    atomic_init(&r->head, 0);
    atomic_init(&r->tail, 0);
    return 0;
}

static int init_sync(sl_pool *p)
{
    int rc = -pthread_mutex_init(&p->mu, NULL);
    if (rc) return rc;
    if ((rc = -pthread_cond_init(&p->work_cv, NULL))) {
        pthread_mutex_destroy(&p->mu);
        return rc;
    }
    sl__cond_init(&p->space_cv);
    sl__cond_init(&p->sched_cv);
    sl__cond_init(&p->drain_cv);
    return 0;
}

/* Starts one worker (mu held). */
static int spawn_locked(sl_pool *pool)
{
    if (pool->nworkers == pool->workers_cap) {
        int ncap = pool->workers_cap ? pool->workers_cap * 2 : 8;
        sl__worker **nw = realloc(pool->workers, (size_t)ncap * sizeof *nw);
        if (!nw) return SL_ENOMEM;
        pool->workers = nw;
        pool->workers_cap = ncap;
    }
    sl__worker *w = aligned_alloc(SL__POOL_LINE, (sizeof *w + 63) & ~(size_t)63);
    if (!w) return SL_ENOMEM;
    memset(w, 0, sizeof *w);
    w->pool = pool;
    w->index = pool->next_index++;
    int rc = -pthread_create(&w->thread, NULL, worker_main, w);
    if (rc) {
        free(w);
        return rc;
    }
    pool->workers[pool->nworkers++] = w;
    pool->live++;
    return 0;
}

int sl_pool_new(const sl_pool_opts *opts, sl_pool **out)
{
    static const sl_pool_opts zero;
    if (!out) return SL_EINVAL;
    if (!opts) opts = &zero;
    int rc = check_opts(opts);
    if (rc) return rc;
    sl_pool *p = aligned_alloc(SL__POOL_LINE, (sizeof *p + 63) & ~(size_t)63);
    if (!p) return SL_ENOMEM;
    memset(p, 0, sizeof *p);
    apply_defaults(p, opts);
    if ((rc = init_ring(&p->ring, opts->queue_capacity ? opts->queue_capacity : 1024)))
        goto fail_ring;
    if ((rc = sl_ctx_with_cancel(NULL, &p->run_ctx))) goto fail_ctx;
    if ((rc = init_sync(p))) goto fail_sync;
    if ((rc = sl__pool_sched_start(p))) goto fail_sched;
    int n = opts->workers ? opts->workers : online_cpus();
    pthread_mutex_lock(&p->mu);
    for (int i = 0; i < n && rc == 0; i++)
        rc = spawn_locked(p);
    pthread_mutex_unlock(&p->mu);
    if (rc) {
        /* Workers that started see an empty ring: shutdown stops and joins them. */
        sl_pool_free(p);
        return rc;
    }
    *out = p;
    return 0;
fail_sched:
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->work_cv);
fail_sync:
    sl_ctx_release(p->run_ctx);
fail_ctx:
    free(p->ring.slots);
fail_ring:
    free(p);
    return rc;
}

/* ---- submit ------------------------------------------------------------------------------ */

/* Waits (mu-based) for room. Returns 0 (pushed), SL_ECLOSED or the ctx's error. */
static int submit_slow(sl_pool *pool, sl__job *j, sl_ctx *ctx)
{
    int rc;
    pthread_mutex_lock(&pool->mu);
    atomic_fetch_add_explicit(&pool->prod_waiting, 1, memory_order_seq_cst);
    for (;;) {
        atomic_store_explicit(&pool->space_wake_pending, 0, memory_order_seq_cst);
        rc = sl__ring_push(&pool->ring, j, NULL);
        if (rc != SL_EFULL) break;
        if (sl__ring_room_sc(&pool->ring)) {
            /* A worker claimed slots and is copying them out: room in a moment. */
            pthread_mutex_unlock(&pool->mu);
            sched_yield();
            pthread_mutex_lock(&pool->mu);
            if ((rc = sl_ctx_err(ctx)) < 0) break;
            continue;
        }
        rc = sl__cond_wait(&pool->space_cv, &pool->mu, ctx);
        if (rc < 0) break;
    }
    atomic_fetch_sub_explicit(&pool->prod_waiting, 1, memory_order_seq_cst);
    /* Pass a wake-up on: a worker signals one waiter per freed slot, and this thread may have
     * lost the race for the slot it was woken for to a submitter that never slept. */
    if (rc == 0 && atomic_load_explicit(&pool->prod_waiting, memory_order_relaxed) > 0)
        sl__cond_signal(&pool->space_cv);
    pthread_mutex_unlock(&pool->mu);
    return rc;
}

static int submit(sl_pool *pool, const sl_pool_job *job, sl_ctx *ctx, bool wait)
{
    if (!pool) return SL_EINVAL;
    sl__job j;
    int rc = load_job(pool, job, &j);
    if (rc) return rc;
    if (ctx && (rc = sl_ctx_err(ctx))) goto rejected;
    /* The histogram sample: 1 job in sample_every, chosen by the tail position it will likely
     * get (a relaxed load; a different position only shifts which job is sampled). */
    if ((atomic_load_explicit(&pool->ring.tail, memory_order_relaxed) & pool->sample_mask) == 0)
        j.enq_ns = sl_mono_ns();
    rc = sl__ring_push(&pool->ring, &j, NULL);
    for (int i = 0; rc == SL_EFULL && wait && i < SUBMIT_SPINS + SUBMIT_YIELDS; i++) {
        if (i < SUBMIT_SPINS)
            sl__cpu_relax();
        else
            sched_yield();
        rc = sl__ring_push(&pool->ring, &j, NULL);
    }
    if (rc == SL_EFULL && wait) rc = submit_slow(pool, &j, ctx);
    if (rc == 0) {
        wake_worker(pool);
        return 0;
    }
rejected:
    reject(pool);
    return rc;
}

int sl_pool_submit(sl_pool *pool, const sl_pool_job *job, sl_ctx *ctx)
{
    return submit(pool, job, ctx, true);
}

int sl_pool_try_submit(sl_pool *pool, const sl_pool_job *job)
{
    int rc = submit(pool, job, NULL, false);
    if (rc == SL_EFULL) sl__pool_rate_update(pool, false);
    return rc;
}

/* ---- workers ----------------------------------------------------------------------------- */

/* Hooks and logs after shutdown's deadline go through here: once shutdown gave up on the
 * workers (hard timeout, `detached`), the caller may be freeing what hooks and the logger use,
 * so nothing is reported any more. `reporting` lets shutdown wait for a report in progress
 * before it declares the workers detached. Returns REP_NO if the caller must not report, else
 * a token for report_end. (A hook that started before the deadline and is still running at
 * the hard timeout is treated like a stuck job: documented in pool.h.) */
enum { REP_NO = 0, REP_PLAIN = 1, REP_COUNTED = 2 };

static int report_begin(sl_pool *pool)
{
    if (atomic_load_explicit(&pool->halt, memory_order_acquire) != SL__ABANDON) return REP_PLAIN;
    pthread_mutex_lock(&pool->mu);
    int tok = atomic_load_explicit(&pool->detached, memory_order_relaxed) ? REP_NO : REP_COUNTED;
    if (tok == REP_COUNTED) pool->reporting++;
    pthread_mutex_unlock(&pool->mu);
    return tok;
}

static void report_end(sl_pool *pool, int tok)
{
    if (tok != REP_COUNTED) return;
    pthread_mutex_lock(&pool->mu);
    if (--pool->reporting == 0) sl__cond_broadcast(&pool->drain_cv);
    pthread_mutex_unlock(&pool->mu);
}

/* Hands a job that never ran to an end to on_abandoned (which owns arg), or logs it and frees
 * arg. w is NULL on the shutdown thread. Counted by the caller's counters. */
void sl__pool_abandon_job(sl_pool *pool, sl__job *job, sl__worker *w)
{
    if (w) sl__own_inc(&w->c.abandoned, 1);
    int tok = w ? report_begin(pool) : REP_PLAIN;
    if (tok == REP_NO) {
        free_arg(job);
        return;
    }
    if (pool->on_abandoned) {
        sl_pool_job v;
        view_of(job, &v);
        pool->on_abandoned(pool->hook_arg, &v);
    } else {
        sl_log_error(pool->log, "job abandoned at shutdown", SL_A_STR("pool", pool->name),
                     SL_A_STR("job_id", job->id), SL_A_INT("attempts", job->attempts));
        free_arg(job);
    }
    report_end(pool, tok);
}

static bool take_ready(sl_pool *pool, sl__worker *w)
{
    pthread_mutex_lock(&pool->mu);
    sl__delayed *d = NULL;
    if (atomic_load_explicit(&pool->halt, memory_order_relaxed) != SL__ABANDON)
        d = sl__pool_pop_ready_locked(pool);
    pthread_mutex_unlock(&pool->mu);
    if (!d) return false;
    memcpy(&w->batch[0], &d->job, SL__JOB_HDR + d->job.idlen + 1);
    free(d);
    w->bn = 1;
    w->bi = 0;
    return true;
}

/* Retires this worker if a retirement is pending (mu taken only when one is). */
static bool try_retire(sl_pool *pool)
{
    if (atomic_load_explicit(&pool->retire_n, memory_order_relaxed) <= 0) return false;
    pthread_mutex_lock(&pool->mu);
    bool retire = pool->retire_count > 0;
    if (retire) {
        pool->retire_count--;
        atomic_store_explicit(&pool->retire_n, pool->retire_count, memory_order_relaxed);
        pool->live--; /* w->exited is set by worker_exit, its last touch of mu */
        sl__cond_broadcast(&pool->drain_cv);
    }
    pthread_mutex_unlock(&pool->mu);
    return retire;
}

/* Sleeps until there may be work (mu-based eventcount, see the top of the file). Returns
 * false if the worker should exit (halt or retirement), true to look for work again. */
static bool sleep_for_work(sl_pool *pool, sl__worker *w)
{
    bool keep = true;
    pthread_mutex_lock(&pool->mu);
    atomic_fetch_add_explicit(&pool->idle_waiters, 1, memory_order_seq_cst);
    pool->sleeping++;
    for (;;) {
        atomic_store_explicit(&pool->work_wake_pending, 0, memory_order_seq_cst);
        if (atomic_load_explicit(&pool->halt, memory_order_relaxed) != SL__RUN) {
            keep = false;
            break;
        }
        if (pool->retire_count > 0) break; /* try_retire decides, outside mu */
        if (pool->ready_count > 0 || sl__ring_claimed_sc(&pool->ring)) break;
        /* Shutdown waits for every worker to be asleep with nothing left to do. */
        if (atomic_load_explicit(&pool->ring.tail, memory_order_relaxed) & SL__RING_CLOSED)
            sl__cond_broadcast(&pool->drain_cv);
        pthread_cond_wait(&pool->work_cv, &pool->mu);
    }
    pool->sleeping--;
    atomic_fetch_sub_explicit(&pool->idle_waiters, 1, memory_order_seq_cst);
    pthread_mutex_unlock(&pool->mu);
    return keep;
}

/* How many jobs to take from the ring: one, unless recent jobs were tiny (then up to
 * SL__BATCH; sl__ring_pop_batch also leaves half of what it sees to other workers). */
static unsigned batch_size(sl__worker *w)
{
    int64_t now = sl_mono_ns();
    if (w->bn > 0) {
        int64_t avg = (now - w->batch_t0) / (int64_t)w->bn;
        w->batch_max = avg < SL__BATCH_MAX_JOB_NS ? SL__BATCH : 1;
    }
    w->batch_t0 = now;
    return w->batch_max > 1 ? w->batch_max : 1;
}

/* Refills w's batch (from the ready list first, then the ring). Returns false when the worker
 * must exit. */
static bool refill(sl_pool *pool, sl__worker *w, bool *retired)
{
    /* Checked before the logger is touched: after a hard-timeout shutdown returned, the logger
     * may be gone, and a detached worker only gets here on its way out. */
    if (atomic_load_explicit(&pool->halt, memory_order_acquire) == SL__ABANDON) return false;
    unsigned want = batch_size(w);
    w->debug = sl_log_enabled(pool->log, SL_LOG_DEBUG);
    w->bn = w->bi = 0;
    for (unsigned spins = 0;;) {
        if (atomic_load_explicit(&pool->halt, memory_order_acquire) == SL__ABANDON) return false;
        if (try_retire(pool)) {
            *retired = true;
            return false;
        }
        if (atomic_load_explicit(&pool->ready_n, memory_order_relaxed) > 0 && take_ready(pool, w))
            return true;
        if ((w->bn = sl__ring_pop_batch(&pool->ring, w->batch, want)) > 0) {
            wake_submitter(pool);
            /* More work and a sleeping peer: pass the wake-up on (a burst arrived faster than
             * the one wake-up in flight could spread it). */
            if (atomic_load_explicit(&pool->idle_waiters, memory_order_relaxed) > 0 &&
                sl__ring_count(&pool->ring) > 0)
                wake_worker(pool);
            return true;
        }
        if (atomic_load_explicit(&pool->halt, memory_order_acquire) != SL__RUN) return false;
        if (spins < WORKER_SPINS + WORKER_YIELDS) {
            if (spins++ < WORKER_SPINS)
                sl__cpu_relax();
            else
                sched_yield();
            continue;
        }
        spins = 0;
        if (!sleep_for_work(pool, w)) return false;
        want = 1; /* after a sleep: a fresh start, measured again */
        w->batch_t0 = sl_mono_ns();
    }
}

/* Points w->cur at the next job. Returns false when the worker must exit. */
static bool get_job(sl_pool *pool, sl__worker *w, bool *retired)
{
    if (w->bi == w->bn && !refill(pool, w, retired)) {
        atomic_store_explicit(&w->held, 0, memory_order_relaxed);
        return false;
    }
    w->cur = &w->batch[w->bi++];
    atomic_store_explicit(&w->held, w->bn - w->bi, memory_order_relaxed);
    return true;
}

static void record_hist(sl__worker *w, _Atomic uint64_t *hist, int64_t ns)
{
    (void)w;
    sl__own_inc(&hist[sl__hist_bucket(ns)], 1);
}

static void outcome(sl_pool *pool, sl__worker *w, int rc, int64_t dur_ns)
{
    sl__job *job = w->cur;
    int attempt = job->attempts + 1;
    sl_attr dur = dur_ns >= 0 ? SL_A_DUR("duration", dur_ns) : (sl_attr){.kind = SL_ATTR_NONE};
    bool halted = atomic_load_explicit(&pool->halt, memory_order_acquire) == SL__ABANDON;
    if (rc < 0 && rc != SL_EPERMANENT && halted) {
        sl__pool_abandon_job(pool, job, w); /* interrupted: the attempt does not count */
        return;
    }
    if (rc < 0 && rc != SL_EPERMANENT && attempt < pool->retry.max_attempts) {
        job->attempts = attempt;
        int64_t delay = 0;
        int src = sl__pool_schedule_retry(pool, job, &delay);
        if (src == 0) {
            sl__own_inc(&w->c.retried, 1);
            int tok = report_begin(pool);
            if (tok != REP_NO)
                sl_log_warn(pool->log, "job attempt failed", SL_A_STR("pool", pool->name),
                            SL_A_INT("worker", w->index), SL_A_STR("job_id", job->id),
                            SL_A_INT("attempt", attempt), SL_A_ERR("err", rc),
                            SL_A_DUR("retry_in", delay), dur);
            report_end(pool, tok);
            return;
        }
        job->attempts = attempt - 1;
        if (src == SL_ECLOSED) {
            sl__pool_abandon_job(pool, job, w);
            return;
        }
        /* SL_ENOMEM: the retry cannot be stored; the job is dead with its last error. */
    }
    job->attempts = attempt;
    int tok = report_begin(pool);
    bool rep = tok != REP_NO;
    sl_pool_job v;
    view_of(job, &v);
    if (rc >= 0) {
        sl__own_inc(&w->c.succeeded, 1);
        if (rep) {
            if (w->debug)
                sl_log_debug(pool->log, "job completed", SL_A_STR("pool", pool->name),
                             SL_A_INT("worker", w->index), SL_A_STR("job_id", job->id), dur,
                             SL_A_ERR("err", 0));
            if (pool->on_done) pool->on_done(pool->hook_arg, &v, 0, attempt);
        }
    } else if (rc == SL_EPERMANENT) {
        sl__own_inc(&w->c.failed, 1);
        if (rep) {
            sl_log_error(pool->log, "job failed", SL_A_STR("pool", pool->name),
                         SL_A_INT("worker", w->index), SL_A_STR("job_id", job->id),
                         SL_A_INT("attempt", attempt), dur, SL_A_ERR("err", rc));
            if (pool->on_done) pool->on_done(pool->hook_arg, &v, rc, attempt);
        }
    } else {
        sl__own_inc(&w->c.dead, 1);
        if (rep) {
            sl_log_error(pool->log, "job exhausted retries", SL_A_STR("pool", pool->name),
                         SL_A_INT("worker", w->index), SL_A_STR("job_id", job->id),
                         SL_A_INT("attempts", attempt), dur, SL_A_ERR("err", rc));
            if (pool->on_dead) pool->on_dead(pool->hook_arg, &v, rc);
        }
    }
    report_end(pool, tok);
    free_arg(job);
}

static void run_job(sl_pool *pool, sl__worker *w)
{
    sl__job *job = w->cur;
    if (atomic_load_explicit(&pool->halt, memory_order_acquire) == SL__ABANDON) {
        sl__pool_abandon_job(pool, job, w); /* popped as shutdown's deadline passed */
        return;
    }
    publish_id(w);
    atomic_store_explicit(&w->busy, 1, memory_order_relaxed);
    sl__own_inc(&w->c.started, 1);
    bool timed = job->enq_ns != 0 || job->timeout_ns > 0 || w->debug;
    int64_t t0 = timed ? sl_mono_ns() : 0;
    if (job->enq_ns) record_hist(w, w->c.wait_hist, t0 - job->enq_ns);

    sl_ctx *ctx = pool->run_ctx, *jctx = NULL;
    int rc;
    if (job->timeout_ns > 0 && sl_ctx_with_timeout(pool->run_ctx, job->timeout_ns, &jctx) != 0)
        rc = SL_ENOMEM; /* a failed attempt like any other: retried after a backoff */
    else
        rc = job->fn(jctx ? jctx : ctx, job->arg);
    sl_ctx_release(jctx);

    int64_t dur = -1;
    if (timed) {
        dur = sl_mono_ns() - t0;
        if (job->enq_ns) record_hist(w, w->c.run_hist, dur);
    }
    outcome(pool, w, rc, dur);
    atomic_store_explicit(&w->busy, 0, memory_order_relaxed);
}

/* The worker's last touch of the pool (unless it is the last detached one): after `exited` is
 * set under mu, a joiner may join and free w while holding mu. */
static void worker_exit(sl_pool *pool, sl__worker *w, bool retired)
{
    pthread_mutex_lock(&pool->mu);
    if (!retired) pool->live--;
    w->exited = true;
    bool last_orphan = pool->orphaned && pool->live == 0;
    sl__cond_broadcast(&pool->drain_cv);
    pthread_mutex_unlock(&pool->mu);
    /* A hard-timeout shutdown returned and sl_pool_free already ran: the last detached worker
     * releases the pool (nobody else can touch it any more). */
    if (last_orphan) sl__pool_destroy(pool);
}

static void *worker_main(void *arg)
{
    sl__worker *w = arg;
    sl_pool *pool = w->pool;
    bool retired = false;
    while (get_job(pool, w, &retired))
        run_job(pool, w);
    worker_exit(pool, w, retired);
    return NULL;
}

/* ---- resize ------------------------------------------------------------------------------ */

/* Joins workers that exited (mu held). all: also wait for live ones (shutdown, after halt). */
void sl__pool_reap_locked(sl_pool *pool, bool all)
{
    int keep = 0;
    for (int i = 0; i < pool->nworkers; i++) {
        sl__worker *w = pool->workers[i];
        if (w->detached || (!w->exited && !all)) {
            pool->workers[keep++] = w;
            continue;
        }
        /* Joining under mu cannot deadlock: an exited worker touches mu no more. Waiting
         * (all) releases mu, but only shutdown waits, and set_workers, the only other writer
         * of the array, refuses to run once shutdown began. */
        while (!w->exited)
            sl__cond_wait(&pool->drain_cv, &pool->mu, NULL);
        pthread_join(w->thread, NULL);
        sl__pool_fold_locked(pool, w);
        free(w);
    }
    pool->nworkers = keep;
}

int sl_pool_set_workers(sl_pool *pool, int n)
{
    if (!pool || n < 1) return SL_EINVAL;
    int rc = 0;
    pthread_mutex_lock(&pool->mu);
    if (pool->shut_state != 0) {
        pthread_mutex_unlock(&pool->mu);
        return SL_ECLOSED;
    }
    sl__pool_reap_locked(pool, false);
    int effective = pool->live - pool->retire_count;
    if (n > effective) {
        int cancel = pool->retire_count < n - effective ? pool->retire_count : n - effective;
        pool->retire_count -= cancel;
        effective += cancel;
        for (; effective < n && rc == 0; effective++)
            rc = spawn_locked(pool);
    } else if (n < effective) {
        pool->retire_count += effective - n;
        pthread_cond_broadcast(&pool->work_cv);
    }
    atomic_store_explicit(&pool->retire_n, pool->retire_count, memory_order_relaxed);
    pthread_mutex_unlock(&pool->mu);
    return rc;
}
