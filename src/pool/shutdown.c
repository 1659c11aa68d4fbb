/* sl_pool shutdown and free.
 *
 * The promise: when shutdown returns 0, every accepted job was reported to exactly one hook
 * (done, dead or abandoned) and every thread is joined. The steps and why they are ordered so:
 *
 * 1. Close the ring by setting tail's top bit (one atomic RMW). Producers CAS on tail, so each
 *    one either claimed a position before the bit (and will publish it) or sees the bit and
 *    returns SL_ECLOSED: the set of accepted jobs is final from here on. Blocked submitters are
 *    woken under mu and see the bit.
 * 2. Drain: wait (on drain_cv and shutdown's ctx) until the ring, the ready list and the delay
 *    heap are empty and every live worker sleeps. Workers broadcast drain_cv as they fall
 *    asleep on a closed pool; the scheduler keeps moving due retries. Then halt = SL__STOP,
 *    the workers wake, see it, exit, and are joined.
 * 3. Deadline: halt = SL__ABANDON under mu (so no retry enters the heap after this and the
 *    scheduler moves nothing), take the heap and ready list, then cancel the run ctx (outside
 *    mu: its notifiers may take mu) so running jobs see their ctx done. Jobs still in the ring
 *    are popped here and abandoned (a worker that popped one concurrently sees halt after its
 *    pop and abandons it itself). Jobs that return an error after this are abandoned by their
 *    worker without losing an attempt.
 * 4. Wait for the workers, logging each overrunning job every overrun interval. With a hard
 *    timeout, give up: set `detached` under mu, wait until no worker is inside a hook (hooks in
 *    this phase are bracketed by report_begin/end), detach the threads, return SL_ETIMEDOUT.
 *    A detached worker reports nothing more; the last one out frees the pool if sl_pool_free
 *    already ran (`orphaned`).
 *
 * A second shutdown call waits for the first (shut_state) and returns its result. */
#include <sched.h>
#include <stdlib.h>

#include "pool/pool_int.h"
#include "sync/sync_int.h"
#include "sluice/clock.h"

static bool quiescent_locked(sl_pool *pool)
{
    return sl__ring_count(&pool->ring) == 0 && pool->ready_count == 0 && pool->heap_n == 0 &&
           pool->sleeping == pool->live;
}

/* Abandons everything that never started (step 3). Called without mu. */
static uint64_t abandon_unstarted(sl_pool *pool, sl__delayed *list)
{
    uint64_t n = 0;
    sl__job j;
    /* A claimed slot may still be being written by its producer: wait for it to publish (it
     * runs no user code in between, so this is a few instructions unless it was preempted). */
    for (unsigned spins = 0; sl__ring_count(&pool->ring) > 0;) {
        if (sl__ring_pop(&pool->ring, &j)) {
            sl__pool_abandon_job(pool, &j, NULL);
            n++;
        } else if (++spins % 64 == 0) {
            sched_yield();
        } else {
            sl__cpu_relax();
        }
    }
    while (list) {
        sl__delayed *next = list->next;
        sl__pool_abandon_job(pool, &list->job, NULL);
        free(list);
        list = next;
        n++;
    }
    return n;
}

static void log_overruns_locked(sl_pool *pool, int64_t overrun_ns)
{
    for (int i = 0; i < pool->nworkers; i++) {
        sl__worker *w = pool->workers[i];
        if (w->exited || !atomic_load_explicit(&w->busy, memory_order_relaxed)) continue;
        uint64_t words[SL__ID_WORDS];
        for (int k = 0; k < SL__ID_WORDS; k++)
            words[k] = atomic_load_explicit(&w->id_words[k], memory_order_relaxed);
        char id[SL_POOL_ID_MAX + 1];
        memcpy(id, words, sizeof id);
        id[SL_POOL_ID_MAX] = '\0';
        sl_log_warn(pool->log, "job overran shutdown deadline", SL_A_STR("pool", pool->name),
                    SL_A_INT("worker", w->index), SL_A_STR("job_id", id),
                    SL_A_DUR("overrun", overrun_ns));
    }
}

/* Gives up on running workers (hard timeout, mu held). Returns how many were running a job. */
static uint64_t detach_locked(sl_pool *pool)
{
    atomic_store_explicit(&pool->detached, 1, memory_order_relaxed);
    while (pool->reporting > 0)
        sl__cond_wait(&pool->drain_cv, &pool->mu, NULL);
    uint64_t stuck = 0;
    for (int i = 0; i < pool->nworkers; i++) {
        sl__worker *w = pool->workers[i];
        if (w->exited) continue;
        stuck += (uint64_t)atomic_load_explicit(&w->busy, memory_order_relaxed);
        pthread_detach(w->thread);
        w->detached = true;
    }
    sl__pool_reap_locked(pool, false);
    return stuck;
}

/* Step 4 (mu held): waits for live workers; returns 0 or SL_ETIMEDOUT. */
static int wait_workers_locked(sl_pool *pool, uint64_t *stuck)
{
    int64_t fired_at = sl_mono_ns();
    /* Saturating: either option may be SL_FOREVER ("never"), which must not wrap into the past
     * (that detached at once, or logged in a busy loop). */
    int64_t next_log = sl__ns_add_sat(fired_at, pool->overrun_log_ns);
    int64_t hard_at =
        pool->hard_timeout_ns > 0 ? sl__ns_add_sat(fired_at, pool->hard_timeout_ns) : SL_FOREVER;
    while (pool->live > 0) {
        int64_t until = next_log < hard_at ? next_log : hard_at;
        sl__cond_wait_until(&pool->drain_cv, &pool->mu, NULL, until);
        if (pool->live == 0) break;
        int64_t now = sl_mono_ns();
        if (now >= next_log) {
            log_overruns_locked(pool, now - fired_at);
            next_log = sl__ns_add_sat(now, pool->overrun_log_ns);
        }
        if (now >= hard_at) {
            *stuck = detach_locked(pool);
            return SL_ETIMEDOUT;
        }
    }
    sl__pool_reap_locked(pool, true);
    return 0;
}

static int shutdown_impl(sl_pool *pool, sl_ctx *ctx, bool now, sl_pool_report *report)
{
    pthread_mutex_lock(&pool->mu);
    if (pool->shut_state != 0) {
        while (pool->shut_state != 2)
            sl__cond_wait(&pool->drain_cv, &pool->mu, NULL);
        goto out;
    }
    pool->shut_state = 1;
    int64_t t0 = sl_mono_ns();
    atomic_fetch_or_explicit(&pool->ring.tail, SL__RING_CLOSED, memory_order_seq_cst);
    sl__cond_broadcast(&pool->space_cv);

    bool fired = false;
    while (!quiescent_locked(pool)) {
        if (now || sl__cond_wait(&pool->drain_cv, &pool->mu, ctx) < 0) {
            fired = true;
            break;
        }
    }
    int rc = 0;
    uint64_t stuck = 0;
    if (!fired) {
        atomic_store_explicit(&pool->halt, SL__STOP, memory_order_seq_cst);
        pthread_cond_broadcast(&pool->work_cv);
        sl__pool_reap_locked(pool, true);
    } else {
        atomic_store_explicit(&pool->halt, SL__ABANDON, memory_order_seq_cst);
        sl__delayed *list = sl__pool_take_delayed_locked(pool);
        pthread_cond_broadcast(&pool->work_cv);
        pthread_mutex_unlock(&pool->mu);
        sl_ctx_cancel(pool->run_ctx);
        uint64_t n = abandon_unstarted(pool, list);
        pthread_mutex_lock(&pool->mu);
        pool->sd_abandoned += n;
        rc = wait_workers_locked(pool, &stuck);
    }
    pthread_mutex_unlock(&pool->mu);
    sl__pool_sched_stop(pool);
    pthread_mutex_lock(&pool->mu);

    sl_pool_stats st;
    sl__pool_counts_locked(pool, &st);
    pool->report = (sl_pool_report){.submitted = st.submitted,
                                    .succeeded = st.succeeded,
                                    .failed = st.failed,
                                    .dead = st.dead,
                                    .abandoned = st.abandoned,
                                    .stuck = stuck,
                                    .deadline_hit = fired,
                                    .elapsed_ns = sl_mono_ns() - t0};
    pool->shut_rc = rc;
    pool->shut_state = 2;
    sl__cond_broadcast(&pool->drain_cv);
out:
    if (report) *report = pool->report;
    rc = pool->shut_rc;
    pthread_mutex_unlock(&pool->mu);
    return rc;
}

int sl_pool_shutdown(sl_pool *pool, sl_ctx *ctx, sl_pool_report *report)
{
    if (!pool) return SL_EINVAL;
    return shutdown_impl(pool, ctx, false, report);
}

void sl__pool_destroy(sl_pool *pool)
{
    for (int i = 0; i < pool->nworkers; i++)
        free(pool->workers[i]);
    free(pool->workers);
    sl__delayed *list = sl__pool_take_delayed_locked(pool); /* empty after shutdown */
    while (list) {
        sl__delayed *next = list->next;
        free(list);
        list = next;
    }
    free(pool->heap);
    free(pool->ring.slots);
    sl_ctx_release(pool->run_ctx);
    pthread_cond_destroy(&pool->work_cv);
    pthread_mutex_destroy(&pool->mu);
    free(pool);
}

void sl_pool_free(sl_pool *pool)
{
    if (!pool) return;
    shutdown_impl(pool, NULL, true, NULL);
    pthread_mutex_lock(&pool->mu);
    bool orphan = pool->live > 0; /* detached workers still run: the last one frees */
    if (orphan) pool->orphaned = true;
    pthread_mutex_unlock(&pool->mu);
    if (!orphan) sl__pool_destroy(pool);
}
