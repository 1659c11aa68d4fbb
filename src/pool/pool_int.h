/* Private to src/pool: the pool's structures, its lock-free job ring, and the functions the
 * pool's files share (pool.c: lifecycle, submit, workers; retry.c: backoff, delay heap,
 * scheduler thread; stats.c: counters, histograms, drain rate; shutdown.c: shutdown/free).
 *
 * Two paths with different rules:
 * - The hot path (submit -> ring -> worker -> fn) takes no lock and allocates nothing: jobs are
 *   stored inline in a bounded MPMC ring (Vyukov's sequence-per-slot design); each worker
 *   keeps its own counters, written only by itself; a sleeping worker or a blocked submitter is
 *   woken only if it announced itself (an "eventcount": announce with a seq_cst RMW, re-check,
 *   then sleep under mu; the other side claims with a seq_cst CAS, then reads the count).
 * - Everything else (sleeping, retries, resizing, shutdown, stats) takes pool->mu. */
#ifndef SLUICE_POOL_INT_H
#define SLUICE_POOL_INT_H

#include <pthread.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <string.h>

#include "base/base_int.h" /* sl__cpu_relax, sl__ns_add_sat */
#include "sluice/pool.h"
#include "sluice/error.h"
#include "sync/sync_int.h" /* sl__cond */

#define SL__POOL_LINE 64
/* Bit 63 of ring.tail: set once by shutdown; producers that see it return SL_ECLOSED. A
 * producer whose CAS won before the bit was set owns its slot and publishes it, so "every
 * claimed slot gets published" holds and shutdown can wait for head == tail. */
#define SL__RING_CLOSED (UINT64_C(1) << 63)
#define SL__ID_WORDS    ((SL_POOL_ID_MAX + 1) / 8)

/* A job as the pool stores it. id is last so that copies stop at the id's NUL. */
typedef struct sl__job {
    sl_pool_job_fn fn;
    void *arg;
    void (*arg_free)(void *arg);
    int64_t timeout_ns; /* per attempt, resolved at submit; 0 = none */
    int64_t enq_ns;     /* sl_mono_ns() at submit (or when a retry came due) if sampled, else 0 */
    int32_t attempts;   /* attempts already made */
    uint32_t idlen;     /* strlen(id) */
    char id[SL_POOL_ID_MAX + 1];
} sl__job;

#define SL__JOB_HDR offsetof(sl__job, id)

/* 128 bytes, line-aligned: a producer filling slot i never shares a line with a consumer
 * reading slot i-1. */
typedef struct sl__slot {
    alignas(SL__POOL_LINE) _Atomic uint64_t seq; /* == pos: free for the producer of pos;
                                                    == pos+1: holds the job of pos */
    sl__job job;
} sl__slot;

/* Jobs a worker may take from the ring with one CAS (see sl__ring_pop_batch). */
#define SL__BATCH 8
/* Batches only while jobs are this short on average: a batch of long jobs would sit behind
 * one worker while another idles. */
#define SL__BATCH_MAX_JOB_NS SL_US(2)

typedef struct sl__ring {
    alignas(SL__POOL_LINE) _Atomic uint64_t tail; /* next position to fill | SL__RING_CLOSED */
    alignas(SL__POOL_LINE) _Atomic uint64_t head; /* next position to take */
    alignas(SL__POOL_LINE) uint64_t mask;         /* capacity - 1; immutable */
    sl__slot *slots;
} sl__ring;

/* A job waiting for its retry (in the heap) or due and waiting for a worker (ready list). */
typedef struct sl__delayed {
    int64_t due_ns;           /* sl_now_ns() instant (test clock aware) */
    uint64_t order;           /* FIFO tie-break among equal due times */
    struct sl__delayed *next; /* ready list link */
    sl__job job;
} sl__delayed;

/* Per-worker counters: written only by the worker itself (relaxed load + store, no RMW), read
 * by anyone with relaxed loads. Folded into sl_pool.folded when the worker is reaped. */
typedef struct sl__counts {
    _Atomic uint64_t started, succeeded, failed, retried, dead, abandoned;
    _Atomic uint64_t wait_hist[SL_POOL_HIST_BUCKETS];
    _Atomic uint64_t run_hist[SL_POOL_HIST_BUCKETS];
} sl__counts;

typedef struct sl__worker {
    alignas(SL__POOL_LINE) sl_pool *pool;
    pthread_t thread;
    int index;        /* for logs */
    _Atomic int busy; /* 1 while running a job; read by stats and shutdown */
    /* The running job's id, mirrored word by word with relaxed atomics so that shutdown can log
     * an overrunning job's id without a lock on the hot path (a torn id is impossible in
     * practice: the worker does not take another job once shutdown looks). */
    _Atomic uint64_t id_words[SL__ID_WORDS];
    sl__job *cur;             /* the job being run (in batch[]); owned by the worker thread */
    sl__job batch[SL__BATCH]; /* jobs taken from the ring, run in order */
    unsigned bn, bi;          /* batch[bi..bn) are still to run */
    unsigned batch_max;       /* 1 or SL__BATCH, adapted to the average job time */
    int64_t batch_t0;         /* sl_mono_ns() when the current batch was taken */
    bool debug;               /* DEBUG logging enabled: re-read at every refill */
    _Atomic uint64_t held;    /* bn - bi, for stats ("queued") */
    sl__counts c;
    bool exited;   /* thread returned or is about to; guarded by pool->mu */
    bool joined;   /* guarded by pool->mu */
    bool detached; /* left running by a hard-timeout shutdown; guarded by pool->mu */
} sl__worker;

enum { SL__RUN = 0, SL__STOP = 1, SL__ABANDON = 2 };

struct sl_pool {
    sl__ring ring;

    /* Read-mostly flags checked on the hot path (one cache line, rarely written). */
    alignas(SL__POOL_LINE) _Atomic int halt; /* SL__RUN, SL__STOP (drained), SL__ABANDON */
    _Atomic int ready_n;                     /* mirror of ready_count for a lock-free check */
    _Atomic int retire_n;                    /* mirror of retire_count for a lock-free check */
    _Atomic int detached; /* shutdown returned SL_ETIMEDOUT: no hooks, no logs any more */
    /* Eventcount announcements (written only when somebody is about to sleep). */
    alignas(SL__POOL_LINE) _Atomic int idle_waiters; /* workers about to sleep or asleep */
    _Atomic int work_wake_pending; /* a work_cv signal is in flight: don't send another */
    alignas(SL__POOL_LINE) _Atomic int prod_waiting; /* submitters waiting for room */
    _Atomic int space_wake_pending;                  /* a space_cv signal is in flight */

    alignas(SL__POOL_LINE) _Atomic uint64_t rejected;
    _Atomic int64_t rate_at_ns; /* sl_mono_ns() of the last drain-rate sample */
    _Atomic uint64_t rate_bits; /* the drain-rate EWMA (double bits), jobs/s */

    /* Immutable after sl_pool_new. */
    char name[32];
    sl_logger *log;
    sl_pool_retry retry;
    int64_t job_timeout_ns, hard_timeout_ns, overrun_log_ns;
    sl_pool_done_fn on_done;
    sl_pool_dead_fn on_dead;
    sl_pool_abandoned_fn on_abandoned;
    void *hook_arg;
    uint64_t sample_mask; /* sample_every - 1 */
    sl_ctx *run_ctx;      /* parent of every job's ctx; cancelled at shutdown's deadline */

    pthread_mutex_t mu;
    pthread_cond_t work_cv; /* idle workers wait here */
    sl__cond space_cv;      /* submitters (tasks or threads) wait here for room; mu */
    sl__cond sched_cv;      /* the scheduler waits here (and on its timer ctx); mu */
    sl__cond drain_cv;      /* shutdown (a task or a thread) waits here; mu */

    /* Everything below is guarded by mu. */
    sl__worker **workers; /* every thread not yet joined (live, retired or exited) */
    int nworkers, workers_cap;
    int live;         /* threads that have not exited */
    int sleeping;     /* workers blocked in work_cv */
    int retire_count; /* workers asked to retire */
    int next_index;
    sl__counts folded;     /* counters of reaped workers (plain use under mu via atomics) */
    uint64_t sd_abandoned; /* abandoned by the shutdown thread */
    int reporting;         /* workers inside a hook/log after the deadline (see shutdown.c) */

    sl__delayed **heap; /* min-heap by (due_ns, order) */
    size_t heap_n, heap_cap;
    sl__delayed *ready_head, *ready_tail; /* due, FIFO */
    int ready_count;
    uint64_t order_seq;
    uint64_t rng;          /* splitmix64 state */
    uint64_t rate_started; /* started count at the last drain-rate sample */
    bool rate_known;

    pthread_t sched_thread;
    bool sched_started, sched_stop;

    int shut_state; /* 0 none, 1 in progress, 2 done */
    int shut_rc;
    bool sd_fired;
    bool orphaned; /* sl_pool_free ran while detached workers still run */
    sl_pool_report report;
};

/* ---- ring (inline: the hot path) ------------------------------------------------------- */

/* Claims a slot and copies *src (header + id) into it. Returns 0, SL_EFULL or SL_ECLOSED.
 * The claiming CAS is seq_cst: it pairs with the idle_waiters load that follows in the caller
 * (eventcount: a worker about to sleep announces itself, then reads tail; it sees this claim or
 * this producer sees it). Publishing is a plain release store. Multi-producer. */
static inline int sl__ring_push(sl__ring *r, const sl__job *src, uint64_t *pos_out)
{
    uint64_t pos = atomic_load_explicit(&r->tail, memory_order_relaxed);
    sl__slot *s;
    for (;;) {
        if (pos & SL__RING_CLOSED) return SL_ECLOSED;
        s = &r->slots[pos & r->mask];
        uint64_t seq = atomic_load_explicit(&s->seq, memory_order_acquire);
        int64_t dif = (int64_t)(seq - pos);
        if (dif == 0) {
            if (atomic_compare_exchange_weak_explicit(&r->tail, &pos, pos + 1, memory_order_seq_cst,
                                                      memory_order_relaxed))
                break;
        } else if (dif < 0) {
            /* The slot still holds the job of pos - capacity. Re-read tail once with seq_cst:
             * a waiting submitter relies on this load being ordered after its announcement. */
            uint64_t t = atomic_load_explicit(&r->tail, memory_order_seq_cst);
            if (t == pos) return SL_EFULL;
            pos = t;
        } else {
            pos = atomic_load_explicit(&r->tail, memory_order_relaxed);
        }
    }
    memcpy(&s->job, src, SL__JOB_HDR + src->idlen + 1);
    atomic_store_explicit(&s->seq, pos + 1, memory_order_release);
    if (pos_out) *pos_out = pos;
    return 0;
}

/* Takes the oldest published job into *dst. Returns false if there is none (the ring is empty,
 * or the oldest claimed slot is still being written by its producer, who will wake a worker
 * after publishing). Multi-consumer. */
static inline bool sl__ring_pop(sl__ring *r, sl__job *dst)
{
    uint64_t pos = atomic_load_explicit(&r->head, memory_order_relaxed);
    sl__slot *s;
    for (;;) {
        s = &r->slots[pos & r->mask];
        uint64_t seq = atomic_load_explicit(&s->seq, memory_order_acquire);
        int64_t dif = (int64_t)(seq - (pos + 1));
        if (dif == 0) {
            if (atomic_compare_exchange_weak_explicit(&r->head, &pos, pos + 1, memory_order_seq_cst,
                                                      memory_order_relaxed))
                break;
        } else if (dif < 0) {
            return false;
        } else {
            pos = atomic_load_explicit(&r->head, memory_order_relaxed);
        }
    }
    memcpy(dst, &s->job, SL__JOB_HDR);
    memcpy(dst->id, s->job.id, dst->idlen + 1);
    atomic_store_explicit(&s->seq, pos + r->mask + 1, memory_order_release);
    return true;
}

/* Takes up to max (>= 1) consecutive published jobs with one CAS on head, but no more than
 * half (rounded up) of the published run it sees, so that other workers get their share. All
 * slots taken were checked published before the CAS, and head only grows, so a successful CAS
 * owns exactly them. It never reads tail: tail's line belongs to the producers' CAS.
 * Returns how many were copied into dst[]. */
static inline unsigned sl__ring_pop_batch(sl__ring *r, sl__job *dst, unsigned max)
{
    uint64_t pos = atomic_load_explicit(&r->head, memory_order_relaxed);
    unsigned n;
    for (;;) {
        for (n = 0; n < 2 * max - 1; n++) {
            uint64_t seq =
                atomic_load_explicit(&r->slots[(pos + n) & r->mask].seq, memory_order_acquire);
            if (seq != pos + n + 1) break;
        }
        n = (n + 1) / 2;
        if (n == 0) {
            uint64_t seq = atomic_load_explicit(&r->slots[pos & r->mask].seq, memory_order_acquire);
            if ((int64_t)(seq - (pos + 1)) < 0) return 0; /* empty or being written */
            pos = atomic_load_explicit(&r->head, memory_order_relaxed);
            continue;
        }
        /* seq_cst: pairs with the prod_waiting load in the caller (eventcount: a blocked
         * submitter announces itself, then reads head; it sees this claim, so it knows room
         * is coming, or this worker sees it waiting). */
        if (atomic_compare_exchange_weak_explicit(&r->head, &pos, pos + n, memory_order_seq_cst,
                                                  memory_order_relaxed))
            break;
    }
    for (unsigned i = 0; i < n; i++) {
        sl__slot *s = &r->slots[(pos + i) & r->mask];
        memcpy(&dst[i], &s->job, SL__JOB_HDR);
        memcpy(dst[i].id, s->job.id, dst[i].idlen + 1);
        atomic_store_explicit(&s->seq, pos + i + r->mask + 1, memory_order_release);
    }
    return n;
}

/* The re-checks of the two eventcounts (seq_cst loads, after the announcement).
 * claimed_sc: some producer claimed a slot no worker took yet (published or about to be), so a
 * worker must not sleep. room_sc: there is room, or a worker claimed slots it is about to
 * release, so a submitter must not sleep. */
static inline bool sl__ring_claimed_sc(sl__ring *r)
{
    uint64_t t = atomic_load_explicit(&r->tail, memory_order_seq_cst) & ~SL__RING_CLOSED;
    return t != atomic_load_explicit(&r->head, memory_order_seq_cst);
}

static inline bool sl__ring_room_sc(sl__ring *r)
{
    uint64_t t = atomic_load_explicit(&r->tail, memory_order_seq_cst) & ~SL__RING_CLOSED;
    return t - atomic_load_explicit(&r->head, memory_order_seq_cst) <= r->mask;
}

/* Jobs claimed by producers and not yet taken (includes slots being written). */
static inline uint64_t sl__ring_count(sl__ring *r)
{
    uint64_t h = atomic_load_explicit(&r->head, memory_order_acquire);
    uint64_t t = atomic_load_explicit(&r->tail, memory_order_acquire) & ~SL__RING_CLOSED;
    return t > h ? t - h : 0;
}

static inline uint64_t sl__ring_pushed(sl__ring *r)
{
    return atomic_load_explicit(&r->tail, memory_order_acquire) & ~SL__RING_CLOSED;
}

/* Single-writer counter increment: no RMW needed, readers use relaxed loads. */
static inline void sl__own_inc(_Atomic uint64_t *c, uint64_t n)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

static inline int sl__hist_bucket(int64_t ns)
{
    if (ns <= 0) return 0;
    int b = 64 - __builtin_clzll((unsigned long long)ns);
    return b >= SL_POOL_HIST_BUCKETS ? SL_POOL_HIST_BUCKETS - 1 : b;
}

/* ---- shared between the pool's files --------------------------------------------------- */

/* retry.c */
int64_t sl__pool_backoff(const sl_pool_retry *p, int failed_attempts, uint64_t *rng);
uint64_t sl__pool_rng_next(uint64_t *state);
/* Queues job for a retry after `failed` attempts. Returns 0, or SL_ECLOSED when shutdown's
 * deadline already passed (the caller abandons the job), or SL_ENOMEM. */
int sl__pool_schedule_retry(sl_pool *pool, const sl__job *job, int64_t *delay_out);
int sl__pool_sched_start(sl_pool *pool);
void sl__pool_sched_stop(sl_pool *pool);
/* Moves the ready list and the heap out (mu held); returns a list linked by next. */
sl__delayed *sl__pool_take_delayed_locked(sl_pool *pool);
/* Pops one due job (mu held). */
sl__delayed *sl__pool_pop_ready_locked(sl_pool *pool);

/* stats.c */
void sl__pool_fold_locked(sl_pool *pool, sl__worker *w);
void sl__pool_counts_locked(sl_pool *pool, sl_pool_stats *st);
void sl__pool_rate_update(sl_pool *pool, bool force);

/* pool.c */
void sl__pool_abandon_job(sl_pool *pool, sl__job *job, sl__worker *w);
void sl__pool_reap_locked(sl_pool *pool, bool all);
void sl__pool_destroy(sl_pool *pool);

#endif
