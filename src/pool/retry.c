/* sl_pool retries: the backoff policy, the delay heap, and the one scheduler thread.
 *
 * A failed attempt must not hold a worker for its backoff delay, so the worker copies the job
 * into a heap node (a min-heap by due time, FIFO among equal times) and goes back to work. One
 * scheduler thread per pool sleeps until the earliest due time, then moves every due node to
 * the ready list, which workers check (one relaxed load of ready_n) before the ring: a retry
 * does not wait behind a full queue and never competes with submitters for ring slots, so
 * "submitted" stays the ring's tail count exactly.
 *
 * The scheduler's timer is a ctx with a deadline at the earliest due time: the ctx timer
 * thread fires it on sl_now_ns() time, so retries follow the test clock in tests (a plain timed
 * condvar wait would only know real time). The scheduler waits with sl__cond_wait on that
 * ctx and on sched_cv (kicked when a new earliest node arrives or at shutdown). It re-arms only
 * when the earliest due time changes, so a burst of failures costs one timer, not one each.
 * Timer ctxs are released with mu dropped (sync_int.h's rule: never cancel a ctx someone waits
 * on with our mutex while holding it).
 *
 * Every heap and ready-list field is guarded by pool->mu, and so is the PRNG (splitmix64). */
#include <stdlib.h>

#include "pool/pool_int.h"
#include "sync/sync_int.h"
#include "sluice/clock.h"

uint64_t sl__pool_rng_next(uint64_t *state)
{
    uint64_t z = (*state += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

int64_t sl__pool_backoff(const sl_pool_retry *p, int failed_attempts, uint64_t *rng)
{
    double d = (double)p->base_delay_ns;
    for (int i = 1; i < failed_attempts && d < (double)p->max_delay_ns; i++)
        d *= p->multiplier;
    int64_t delay = d >= (double)p->max_delay_ns ? p->max_delay_ns : (int64_t)d;
    if (delay < 0) delay = 0;
    if (p->full_jitter && rng) {
        /* Uniform in [0, delay] without modulo bias: the high 64 bits of r * (delay + 1). */
        __extension__ unsigned __int128 m =
            (unsigned __int128)sl__pool_rng_next(rng) * ((uint64_t)delay + 1);
        delay = (int64_t)(uint64_t)(m >> 64);
    }
    return delay;
}

/* ---- heap (mu held) ---------------------------------------------------------------------- */

static bool before(const sl__delayed *a, const sl__delayed *b)
{
    return a->due_ns < b->due_ns || (a->due_ns == b->due_ns && a->order < b->order);
}

static int heap_push(sl_pool *pool, sl__delayed *d)
{
    if (pool->heap_n == pool->heap_cap) {
        size_t ncap = pool->heap_cap ? pool->heap_cap * 2 : 16;
        sl__delayed **nh = realloc(pool->heap, ncap * sizeof *nh);
        if (!nh) return SL_ENOMEM;
        pool->heap = nh;
        pool->heap_cap = ncap;
    }
    size_t i = pool->heap_n++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!before(d, pool->heap[parent])) break;
        pool->heap[i] = pool->heap[parent];
        i = parent;
    }
    pool->heap[i] = d;
    return 0;
}

static sl__delayed *heap_pop(sl_pool *pool)
{
    sl__delayed *top = pool->heap[0];
    sl__delayed *last = pool->heap[--pool->heap_n];
    size_t i = 0, n = pool->heap_n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && before(pool->heap[c + 1], pool->heap[c])) c++;
        if (!before(pool->heap[c], last)) break;
        pool->heap[i] = pool->heap[c];
        i = c;
    }
    if (n) pool->heap[i] = last;
    return top;
}

static void ready_append(sl_pool *pool, sl__delayed *d)
{
    d->next = NULL;
    if (pool->ready_tail)
        pool->ready_tail->next = d;
    else
        pool->ready_head = d;
    pool->ready_tail = d;
    pool->ready_count++;
    atomic_store_explicit(&pool->ready_n, pool->ready_count, memory_order_relaxed);
}

sl__delayed *sl__pool_pop_ready_locked(sl_pool *pool)
{
    sl__delayed *d = pool->ready_head;
    if (!d) return NULL;
    pool->ready_head = d->next;
    if (!pool->ready_head) pool->ready_tail = NULL;
    pool->ready_count--;
    atomic_store_explicit(&pool->ready_n, pool->ready_count, memory_order_relaxed);
    return d;
}

sl__delayed *sl__pool_take_delayed_locked(sl_pool *pool)
{
    sl__delayed *list = pool->ready_head, **tail = &list;
    while (*tail)
        tail = &(*tail)->next;
    /* Heap order is not due order; abandoned jobs are reported earliest-due first. */
    while (pool->heap_n) {
        sl__delayed *d = heap_pop(pool);
        d->next = NULL;
        *tail = d;
        tail = &d->next;
    }
    pool->ready_head = pool->ready_tail = NULL;
    pool->ready_count = 0;
    atomic_store_explicit(&pool->ready_n, 0, memory_order_relaxed);
    return list;
}

int sl__pool_schedule_retry(sl_pool *pool, const sl__job *job, int64_t *delay_out)
{
    sl__delayed *d = malloc(sizeof *d);
    if (!d) return SL_ENOMEM;
    memcpy(&d->job, job, SL__JOB_HDR + job->idlen + 1);
    d->job.enq_ns = 0;
    pthread_mutex_lock(&pool->mu);
    if (atomic_load_explicit(&pool->halt, memory_order_relaxed) == SL__ABANDON) {
        pthread_mutex_unlock(&pool->mu);
        free(d);
        return SL_ECLOSED;
    }
    int64_t delay = sl__pool_backoff(&pool->retry, job->attempts, &pool->rng);
    int64_t now = sl_now_ns();
    d->due_ns = sl__ns_add_sat(now, delay);
    d->order = pool->order_seq++;
    int rc = heap_push(pool, d);
    if (rc == 0 && pool->heap[0] == d) sl__cond_signal(&pool->sched_cv);
    pthread_mutex_unlock(&pool->mu);
    if (rc) {
        free(d);
        return rc;
    }
    *delay_out = delay;
    return 0;
}

/* ---- the scheduler thread ------------------------------------------------------------------ */

/* Moves due nodes to the ready list (mu held) and wakes workers for them. */
static void move_due_locked(sl_pool *pool)
{
    if (atomic_load_explicit(&pool->halt, memory_order_relaxed) == SL__ABANDON) return;
    int64_t now = sl_now_ns();
    int moved = 0;
    while (pool->heap_n && pool->heap[0]->due_ns <= now) {
        sl__delayed *d = heap_pop(pool);
        /* Queue wait of a retry: from when it came due. Always sampled (retries are rare). */
        d->job.enq_ns = sl_mono_ns();
        ready_append(pool, d);
        moved++;
    }
    if (moved && pool->sleeping > 0) {
        if (moved >= pool->sleeping)
            pthread_cond_broadcast(&pool->work_cv);
        else
            while (moved--)
                pthread_cond_signal(&pool->work_cv);
    }
}

static void *sched_main(void *arg)
{
    sl_pool *pool = arg;
    sl_ctx *timer = NULL;
    int64_t armed = SL_FOREVER;
    pthread_mutex_lock(&pool->mu);
    while (!pool->sched_stop) {
        move_due_locked(pool);
        int64_t want = pool->heap_n ? pool->heap[0]->due_ns : SL_FOREVER;
        if (want != armed || (timer && sl_ctx_done(timer))) {
            sl_ctx *old = timer;
            timer = NULL;
            armed = want;
            pthread_mutex_unlock(&pool->mu);
            sl_ctx_release(old);
            if (want != SL_FOREVER && sl_ctx_with_deadline(NULL, want, &timer) != 0) {
                /* No memory for a timer: try again shortly (real time) rather than lose the
                 * retry. The only polling in the pool, and only under memory exhaustion. */
                timer = NULL;
                armed = SL_FOREVER - 1;
                pthread_mutex_lock(&pool->mu);
                if (!pool->sched_stop)
                    sl__cond_wait_until(&pool->sched_cv, &pool->mu, NULL, sl_mono_ns() + SL_MS(10));
                continue;
            }
            pthread_mutex_lock(&pool->mu);
            continue;
        }
        sl__cond_wait(&pool->sched_cv, &pool->mu, timer);
    }
    pthread_mutex_unlock(&pool->mu);
    sl_ctx_release(timer);
    return NULL;
}

int sl__pool_sched_start(sl_pool *pool)
{
    int rc = -pthread_create(&pool->sched_thread, NULL, sched_main, pool);
    if (rc == 0) pool->sched_started = true;
    return rc;
}

void sl__pool_sched_stop(sl_pool *pool)
{
    if (!pool->sched_started) return;
    pthread_mutex_lock(&pool->mu);
    pool->sched_stop = true;
    sl__cond_broadcast(&pool->sched_cv);
    pthread_mutex_unlock(&pool->mu);
    pthread_join(pool->sched_thread, NULL);
    pool->sched_started = false;
}
