/* Private to sluice: the one condition variable every blocking primitive (sem, wg, once, group,
 * pool, ...) waits on, for a task or a thread alike, woken by a signal OR a ctx being done,
 * without polling and without a malloc per wait.
 *
 * The pattern, exactly like pthread_cond_wait in a predicate loop:
 *
 *     pthread_mutex_lock(&s->mu);
 *     while (!ready(s)) {
 *         int rc = sl__cond_wait(&s->cv, &s->mu, ctx);
 *         if (rc < 0) { ...leave state consistent...; pthread_mutex_unlock(&s->mu); return rc; }
 *     }
 *     ...take the item...
 *     pthread_mutex_unlock(&s->mu);
 *
 * An sl__cond is an intrusive FIFO of waiter nodes (each on its waiter's stack: an sl__parker of
 * park_int.h, so the waiter is a parked task or a futex-sleeping thread), guarded by the mutex
 * the users hold. Signal pops the first node and completes it; broadcast completes them all.
 * For a ctx that can be done, the wait registers an on-done hook (sl__ctx_hook_add) that
 * completes the node as CANCELED: the hook takes no lock of the primitive, so (unlike a
 * condvar-broadcasting notifier) cancelling while holding the primitive's mutex is allowed. A
 * node completed by the ctx or a timeout stays queued until its waiter retakes the mutex and
 * unlinks it; signal skips such nodes, so a signal is never lost on a waiter that is leaving.
 *
 * Cost on a thread: one futex sleep/wake per blocked wait, like a condvar. NULL or the
 * background ctx: no hook, no ctx lock. Otherwise two short critical sections on ctx->mu.
 *
 * Rules for callers:
 * - signal and broadcast are called with the mutex held (the queue is guarded by it).
 * - The mutex is released while waiting and held again on return. Re-check the predicate.
 * - A task must not hold a pthread mutex across anything that parks, except the mutex passed to
 *   the wait (the task may resume on another loop thread).
 *
 * Threads: any. The caller must hold a reference on ctx for the duration of the call. */
#ifndef SLUICE_SYNC_INT_H
#define SLUICE_SYNC_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

#include "sluice/ctx.h"
#include "sluice/error.h"
#include "base/list_int.h"
#include "sync/park_int.h"

/* One waiter, on the waiting task's or thread's stack. Links guarded by the cond's mutex. */
typedef struct sl__cwaiter {
    sl__dnode node; /* on the cond's queue while linked */
    sl__parker pk;
    bool linked;
} sl__cwaiter;

/* A task-aware condition variable. Threads: any; guarded by the mutex its users pass to wait.
 * No destroy needed: an sl__cond with no waiter holds no resource. */
typedef struct sl__cond {
    sl__dlist q; /* of sl__cwaiter, FIFO */
} sl__cond;

#define SL__COND_INIT  \
    {                  \
        SL__DLIST_INIT \
    }

static inline void sl__cond_init(sl__cond *c)
{
    c->q.head = c->q.tail = NULL;
}

/* Waits (mu held by the caller) until signalled or ctx is done: parks the calling task, or
 * sleeps the calling thread. Returns 0 when signalled, or the ctx's error (< 0) when ctx is
 * done first, including when it was done before the call (then it does not wait at all). A
 * signal that reached this waiter is never reported as an error (it would be lost). Returns
 * with mu held. */
int sl__cond_wait(sl__cond *c, pthread_mutex_t *mu, sl_ctx *ctx);

/* Like sl__cond_wait, and also returns SL_ETIMEDOUT once real monotonic time (sl_mono_ns())
 * reaches abs_mono_ns. On a task the timeout is a ctx deadline, so it follows sl_now_ns() (the
 * test clock when one is installed). */
int sl__cond_wait_until(sl__cond *c, pthread_mutex_t *mu, sl_ctx *ctx, int64_t abs_mono_ns);

/* Wakes the longest-waiting waiter, if any. Returns whether one was woken. mu held. */
bool sl__cond_signal(sl__cond *c);

/* Wakes every waiter. mu held. */
void sl__cond_broadcast(sl__cond *c);

/* Inits cv with CLOCK_MONOTONIC. Returns 0 or a negative code (SL_ENOMEM, ...). Destroy with
 * pthread_cond_destroy. For threads sluice owns that never run tasks (pool workers). */
int sl__cond_init_mono(pthread_cond_t *cv);

/* False for NULL and the background ctx (never done): primitives may skip ctx work entirely.
 * True for every other ctx (even a value-only chain is done once cancelled or released). */
bool sl__ctx_can_be_done(const sl_ctx *ctx);

/* Stops the process-wide deadline timer thread and joins it (it restarts lazily when a new
 * deadline is armed). For tests and for the atexit handler; armed deadlines stay armed. */
void sl__ctx_timer_shutdown(void);

/* True while the timer thread is running (tests). */
bool sl__ctx_timer_running(void);

#endif
