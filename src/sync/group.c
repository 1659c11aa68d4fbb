/* sl_group: errgroup on top of sl_executor.
 *
 * State: `active` counts tasks in flight — queued on the executor or running — and is what the
 * limit bounds, so "at most n" holds from the moment go() reserves a slot until the task has
 * returned. The first non-zero result wins a CAS on `err` and cancels the group's ctx; wait()
 * returns it.
 *
 * Waiting helps: a thread in wait(), or in go() at the limit, first takes the group's own queued
 * tasks back from the executor (sl__executor_steal) and runs them itself; it sleeps only while
 * every task in flight is already running on some other thread. Those tasks can always finish
 * (anything they wait on is deeper in the nesting and helped the same way), so nested groups
 * make progress even when every executor thread is blocked in a group wait.
 *
 * The counter word: `state` holds active in its low 32 bits and the number of sleepers (threads
 * in sl__cond_wait on cv, or about to be) in its high 32 bits, so a completing task learns in the
 * same atomic step whether anyone must be woken. With no sleeper, completion is one lock-free
 * CAS. With sleepers, the decrement happens under mu and is followed by a broadcast: a sleeper
 * registers itself (sleepers++) under mu and re-checks `active` before waiting, so the wake-up
 * cannot be lost.
 *
 * Lifetime ordering: once `active` reaches 0 a waiter may return and the group be freed, so a
 * completing task does everything that touches g — cancel the ctx on the first error, return
 * its node to the free list, broadcast — before its decrement, and after a lock-free decrement
 * touches nothing. A decrement under mu is followed only by the unlock, and sl_group_free passes
 * through mu once before destroying it, so that unlock has finished.
 *
 * Sleepers wait on an sl__cond (sync_int.h): a task parks, a thread sleeps. Task nodes are recycled
 * through a per-group free list (its own small lock), so go+wait allocates nothing after warm-up.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "sluice/error.h"
#include "sync/group_int.h"
#include "sync/park_int.h"
#include "sync/sync_int.h"

#define ACTIVE_MASK 0xffffffffULL
#define SLEEPER     (1ULL << 32)

typedef struct gtask {
    sl__job base; /* first: the executor hands us back &base */
    sl_group *g;
    sl_group_fn fn;
    void *arg;
    struct gtask *free_next; /* free list; guarded by g->free_lock */
} gtask;

struct sl_group {
    sl_executor *ex;        /* borrowed */
    sl_ctx *ctx;            /* owned reference */
    sl__jobq queued;        /* tasks not yet started; guarded by ex's lock */
    _Atomic uint64_t state; /* active (low 32 bits) | sleepers (high 32 bits) */
    _Atomic int limit;      /* < 0: none; changed only while active == 0 */
    _Atomic int err;        /* first task error, 0 until then */
    pthread_mutex_t mu;     /* sleepers only: guards the sleep/wake hand-shake on cv */
    sl__cond cv;            /* broadcast when active drops while sleepers > 0; guarded by mu */
    sl__lock free_lock;
    gtask *free_list; /* guarded by free_lock */
};

static size_t active_of(uint64_t st)
{
    return (size_t)(st & ACTIVE_MASK);
}

static void release_slot(sl_group *g)
{
    uint64_t st = atomic_load_explicit(&g->state, memory_order_relaxed);
    while (st < SLEEPER) {
        if (atomic_compare_exchange_weak_explicit(&g->state, &st, st - 1, memory_order_acq_rel,
                                                  memory_order_relaxed))
            return; /* g may be gone from here on */
    }
    /* Broadcast first: sleepers cannot re-check before our unlock anyway, and a waiter that
     * polls `active` without sleeping may free g as soon as it sees 0 — only sl_group_free's
     * pass through mu waits for the unlock below. */
    pthread_mutex_lock(&g->mu);
    sl__cond_broadcast(&g->cv);
    atomic_fetch_sub_explicit(&g->state, 1, memory_order_acq_rel);
    pthread_mutex_unlock(&g->mu);
}

static void task_done(sl_group *g, gtask *t, int rc)
{
    if (rc != 0) {
        int zero = 0;
        if (atomic_compare_exchange_strong(&g->err, &zero, rc)) sl_ctx_cancel(g->ctx);
    }
    sl__lock_acquire(&g->free_lock);
    t->free_next = g->free_list;
    g->free_list = t;
    sl__lock_release(&g->free_lock);
    release_slot(g);
}

static void run_task(sl__job *base)
{
    gtask *t = (gtask *)base;
    sl_group *g = t->g;
    task_done(g, t, t->fn(g->ctx, t->arg));
}

/* Runs one of g's queued tasks on this thread; false if none is queued. */
static bool help_one(sl_group *g)
{
    sl__job *t = sl__executor_steal(g->ex, &g->queued);
    if (!t) return false;
    run_task(t);
    return true;
}

/* Sleeps, if blocked(active) still holds, until a task ends; returns 0 (re-check) or the
 * ctx's error. */
static int sleep_while(sl_group *g, bool (*blocked)(const sl_group *, size_t), sl_ctx *ctx)
{
    int rc = 0;
    pthread_mutex_lock(&g->mu);
    uint64_t st = atomic_fetch_add_explicit(&g->state, SLEEPER, memory_order_acq_rel) + SLEEPER;
    if (blocked(g, active_of(st))) rc = sl__cond_wait(&g->cv, &g->mu, ctx);
    atomic_fetch_sub_explicit(&g->state, SLEEPER, memory_order_acq_rel);
    pthread_mutex_unlock(&g->mu);
    return rc < 0 ? rc : 0;
}

static bool full(const sl_group *g, size_t active)
{
    int limit = atomic_load_explicit(&g->limit, memory_order_relaxed);
    return limit >= 0 && active >= (size_t)limit;
}

static bool busy(const sl_group *g, size_t active)
{
    return active > 0;
}

int sl_group_new_on(sl_ctx *parent, sl_executor *ex, sl_group **out)
{
    if (!out) return SL_EINVAL;
    int rc = 0;
    if (!ex && (rc = sl__executor_default(&ex)) != 0) return rc;
    sl_group *g = calloc(1, sizeof(*g));
    if (!g) return SL_ENOMEM;
    if ((rc = sl_ctx_with_cancel(parent, &g->ctx)) != 0) {
        free(g);
        return rc;
    }
    pthread_mutex_init(&g->mu, NULL);
    sl__cond_init(&g->cv);
    g->ex = ex;
    atomic_init(&g->limit, -1);
    *out = g;
    return 0;
}

int sl_group_new(sl_ctx *parent, sl_group **out)
{
    return sl_group_new_on(parent, NULL, out);
}

sl_ctx *sl_group_ctx(sl_group *g)
{
    return g ? g->ctx : NULL;
}

int sl_group_set_limit(sl_group *g, int n)
{
    if (!g) return SL_EINVAL;
    if (active_of(atomic_load(&g->state)) != 0) return SL_EBUSY;
    atomic_store(&g->limit, n < 0 ? -1 : n);
    return 0;
}

/* Reserves a slot (active++) and a task node, waiting (and helping) while at the limit unless
 * try. Returns the node, with *rc = 0; or NULL with *rc = SL_EFULL, SL_ENOMEM or the ctx's
 * error. */
static gtask *reserve(sl_group *g, bool try, sl_ctx *ctx, int *rc)
{
    uint64_t st = atomic_load_explicit(&g->state, memory_order_relaxed);
    for (;;) {
        if (!full(g, active_of(st))) {
            if (atomic_compare_exchange_weak_explicit(&g->state, &st, st + 1, memory_order_acq_rel,
                                                      memory_order_relaxed))
                break;
            continue;
        }
        if (try) {
            *rc = SL_EFULL;
            return NULL;
        }
        /* At the limit: run one of our queued tasks, or sleep until a running one ends. */
        if (!help_one(g) && (*rc = sleep_while(g, full, ctx)) < 0) return NULL;
        st = atomic_load_explicit(&g->state, memory_order_relaxed);
    }
    sl__lock_acquire(&g->free_lock);
    gtask *t = g->free_list;
    if (t) g->free_list = t->free_next;
    sl__lock_release(&g->free_lock);
    if (!t && !(t = malloc(sizeof(*t)))) {
        release_slot(g);
        *rc = SL_ENOMEM;
        return NULL;
    }
    *rc = 0;
    return t;
}

static int go(sl_group *g, sl_group_fn fn, void *arg, bool try, sl_ctx *ctx)
{
    if (!g || !fn) return SL_EINVAL;
    int rc;
    gtask *t = reserve(g, try, ctx, &rc);
    if (!t) return rc;
    t->g = g;
    t->fn = fn;
    t->arg = arg;
    t->base.run = run_task;
    sl__executor_submit(g->ex, &t->base, &g->queued);
    return 0;
}

int sl_group_go(sl_group *g, sl_group_fn fn, void *arg)
{
    return go(g, fn, arg, false, NULL);
}

int sl_group_go_ctx(sl_group *g, sl_group_fn fn, void *arg, sl_ctx *ctx)
{
    return go(g, fn, arg, false, ctx);
}

int sl_group_try_go(sl_group *g, sl_group_fn fn, void *arg)
{
    return go(g, fn, arg, true, NULL);
}

int sl_group_wait(sl_group *g)
{
    if (!g) return SL_EINVAL;
    while (active_of(atomic_load_explicit(&g->state, memory_order_acquire)) != 0)
        if (!help_one(g)) sleep_while(g, busy, NULL);
    sl_ctx_cancel(g->ctx);
    return atomic_load(&g->err);
}

void sl_group_free(sl_group *g)
{
    if (!g) return;
    if (active_of(atomic_load(&g->state)) != 0) sl_group_wait(g);
    /* A task's last touch of g may be the unlock after its decrement: take mu once so that
     * unlock has finished before mu is destroyed. */
    pthread_mutex_lock(&g->mu);
    pthread_mutex_unlock(&g->mu);
    for (gtask *t = g->free_list, *next; t; t = next) {
        next = t->free_next;
        free(t);
    }
    sl_ctx_release(g->ctx);
    pthread_mutex_destroy(&g->mu);
    free(g);
}
