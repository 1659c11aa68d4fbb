/* Private to sluice: how blocking primitives (chan, sem, wg, group, pool, ...) wait on their
 * own condition variable until woken OR a ctx is done, without polling and without a malloc per
 * wait.
 *
 * The pattern, exactly like pthread_cond_wait in a predicate loop:
 *
 *     pthread_mutex_lock(&s->mu);
 *     while (!ready(s)) {
 *         int rc = sl__ctx_cond_wait(ctx, &s->cv, &s->mu);
 *         if (rc < 0) { ...leave state consistent...; pthread_mutex_unlock(&s->mu); return rc; }
 *     }
 *     ...take the item...
 *     pthread_mutex_unlock(&s->mu);
 *
 * How it works: for a ctx that can be done, the call links a waiter node (on its own stack)
 * into the ctx's on-done list, re-checks sl_ctx_err, then pthread_cond_wait(cv, mu). When the
 * ctx is cancelled, the cancelling thread runs the node's notifier, which locks mu and
 * broadcasts cv, so the wakeup cannot be lost (the waiter holds mu from the check until it
 * sleeps). On return the node is unlinked; if the notifier is running on another thread at that
 * moment the call drops mu, waits for the notifier to finish, and retakes mu, so no thread
 * touches the waiter's mu/cv after the call returns (the primitive may be destroyed right then).
 *
 * Cost: NULL or the background ctx: a plain pthread_cond_wait, nothing else (no lock on the
 * ctx, no atomic RMW). Otherwise two short critical sections on ctx->mu per wait, no allocation.
 *
 * Rules for callers (violations deadlock):
 * - Never call sl_ctx_cancel / sl_ctx_cancel_with / sl_ctx_release (the last release cancels)
 *   while holding a mutex that some thread passes to sl__ctx_cond_wait with that ctx or one of
 *   its descendants: the cancelling thread runs the notifier, which takes that mutex.
 *   Cancel after unlocking. The same holds for on-done callbacks: they run on the canceller.
 * - mu is released while waiting and held again on return (like pthread_cond_wait); it may
 *   also have been released and retaken one extra time, so always re-check the predicate.
 * - cv should be a CLOCK_MONOTONIC condvar (sl__cond_init_mono) if you use the _until form.
 *
 * Threads: any. The caller must hold a reference on ctx for the duration of the call. */
#ifndef SLUICE_SYNC_INT_H
#define SLUICE_SYNC_INT_H

#include <pthread.h>

#include "sluice/ctx.h"
#include "sluice/error.h"

/* Waits on cv (mu held by the caller) until woken or ctx is done. Returns 0 when woken (maybe
 * spuriously: re-check your predicate) or the ctx's error (< 0) when ctx is done, including when
 * it was done before the call (then it does not wait at all). Returns with mu held. */
int sl__ctx_cond_wait(sl_ctx *ctx, pthread_cond_t *cv, pthread_mutex_t *mu);

/* Like sl__ctx_cond_wait, and also returns SL_ETIMEDOUT once sl_mono_ns() (real time, not the
 * test clock) reaches abs_mono_ns. cv must use CLOCK_MONOTONIC (sl__cond_init_mono). For
 * deadlines on the test clock, use a ctx with a deadline instead. */
int sl__ctx_cond_wait_until(sl_ctx *ctx, pthread_cond_t *cv, pthread_mutex_t *mu,
                            int64_t abs_mono_ns);

/* Inits cv with CLOCK_MONOTONIC (what sl__ctx_cond_wait_until needs). Returns 0 or a negative
 * code (SL_ENOMEM, ...). Destroy with pthread_cond_destroy. */
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
