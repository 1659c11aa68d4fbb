/* sl_ctx: Go's context.Context — a tree of cancellation, deadlines and values.
 *
 * A ctx is done once cancelled, once its deadline passes, or once its parent is done; the
 * first cause wins and stays (sl_ctx_err). Cancelling a ctx cancels every descendant, never
 * the parent. A child's effective deadline is the earliest of its own and its ancestors'.
 * Deadlines fire without anyone polling: a process-wide timer thread (started lazily, joined
 * at exit) cancels contexts whose deadline passed, so on-done callbacks run on time. Deadlines
 * are measured on sl_now_ns(), so the test clock drives them too.
 *
 * NULL is accepted wherever a ctx is taken and means the background context: never done, no
 * deadline, no values. sl_ctx_background() returns a non-NULL ctx with the same meaning.
 *
 * Reference counting: a ctx returned by a constructor carries one reference owned by the
 * caller. Like Go's cancel func, sl_ctx_release() must be called when the caller is done with
 * it; releasing the last reference cancels the ctx (if it was not done) and detaches it from its
 * parent, so no parent accumulates dead children. Children hold a reference on their parent.
 * Note that releasing is not cancelling: while a child is alive, releasing the parent's last
 * owner reference does not cancel it (call sl_ctx_cancel for "stop now", as Go's cancel func).
 * Callbacks run on the cancelling thread: do not cancel or release a ctx while holding a lock
 * that one of its (or its descendants') on-done callbacks takes.
 * Threads: any — every function here may be called from any thread. See docs/ctx.md. */
#ifndef SLUICE_CTX_H
#define SLUICE_CTX_H

#include "sluice/common.h"

SL_BEGIN_DECLS

typedef struct sl_ctx sl_ctx;

/* A registered on-done callback (Go's context.AfterFunc). Opaque. */
typedef struct sl_ctx_hook sl_ctx_hook;

/* Called once when the ctx becomes done, with the ctx's error (SL_ECANCELED, SL_ETIMEDOUT or
 * a cause given to sl_ctx_cancel_with). Runs on the thread that cancelled the ctx, or on the
 * timer thread for deadlines. Must not block for long. May call any sl_ctx function,
 * including sl_ctx_hook_stop on its own hook and sl_ctx_cancel on other contexts. */
typedef void (*sl_ctx_done_fn)(void *arg, int err);

/* Returns the process-wide background ctx: never done. Reference operations on it are no-ops.
 * Never fails. */
SL_API sl_ctx *sl_ctx_background(void);

/* Creates a child of parent (NULL = background) that is cancelled by sl_ctx_cancel or when the
 * parent is done. If the parent is already done the child starts done with the parent's error.
 * On success *out holds one reference (release it with sl_ctx_release) and 0 is returned;
 * SL_ENOMEM leaves *out untouched. Does not block. */
SL_API int sl_ctx_with_cancel(sl_ctx *parent, sl_ctx **out);

/* Like sl_ctx_with_cancel, and also done with SL_ETIMEDOUT at deadline_ns (an sl_now_ns()
 * instant). A deadline already past gives a ctx that is done at once. The effective deadline is
 * the earlier of deadline_ns and the parent's. Returns 0 or SL_ENOMEM (also when the timer
 * thread cannot be started the first time a deadline is armed: then SL_EAGAIN is possible). */
SL_API int sl_ctx_with_deadline(sl_ctx *parent, int64_t deadline_ns, sl_ctx **out);

/* sl_ctx_with_deadline(parent, sl_now_ns() + timeout_ns, out). */
SL_API int sl_ctx_with_timeout(sl_ctx *parent, int64_t timeout_ns, sl_ctx **out);

/* Creates a child that carries value under key (compared by pointer identity, as Go compares
 * unexported key types). Lookups walk towards the root; the nearest binding wins. The ctx does
 * not own value. Returns 0 or SL_ENOMEM. It is done when its parent is done, or when
 * sl_ctx_cancel is called on it or its last reference is released. */
SL_API int sl_ctx_with_value(sl_ctx *parent, const void *key, void *value, sl_ctx **out);

/* Cancels ctx and every descendant with SL_ECANCELED. The first cause wins: cancelling a done
 * ctx changes nothing. On-done callbacks run on this thread before it returns. NULL and the
 * background ctx are ignored. */
SL_API void sl_ctx_cancel(sl_ctx *ctx);

/* Cancels with a specific negative cause (Go's WithCancelCause); sl_ctx_err then returns it.
 * cause must be < 0; SL_ECANCELED is used otherwise. */
SL_API void sl_ctx_cancel_with(sl_ctx *ctx, int cause);

/* Returns 0 while ctx is not done, else its cause: SL_ECANCELED, SL_ETIMEDOUT, or the cause
 * given to sl_ctx_cancel_with. Lock-free; cheap enough for a hot loop. */
SL_API int sl_ctx_err(const sl_ctx *ctx);

/* True once ctx is done (sl_ctx_err(ctx) != 0). */
SL_API bool sl_ctx_done(const sl_ctx *ctx);

/* Returns the effective deadline (sl_now_ns() instant), or SL_FOREVER when there is none. */
SL_API int64_t sl_ctx_deadline(const sl_ctx *ctx);

/* Returns the value bound to key in ctx or its nearest ancestor, or NULL. */
SL_API void *sl_ctx_value(const sl_ctx *ctx, const void *key);

/* Takes one more reference and returns ctx (NULL stays NULL). */
SL_API sl_ctx *sl_ctx_ref(sl_ctx *ctx);

/* Drops one reference. When the last one goes the ctx is cancelled if not done, detached from
 * its parent and freed. NULL and the background ctx are ignored. */
SL_API void sl_ctx_release(sl_ctx *ctx);

/* Registers fn(arg, err) to run once when ctx is done (Go's context.AfterFunc).
 * If ctx is already done, fn runs at once on the calling thread before this returns, and
 * *out is set to NULL; the return value is then 1. Otherwise returns 0 and *out is a hook the
 * caller must pass to sl_ctx_hook_stop exactly once (also after fn ran) to free it.
 * With a NULL/background ctx, fn never runs: returns 0 with a hook that only needs stopping.
 * Returns SL_ENOMEM (fn not registered, never called) or SL_EINVAL (fn NULL). */
SL_API int sl_ctx_on_done(sl_ctx *ctx, sl_ctx_done_fn fn, void *arg, sl_ctx_hook **out);

/* Unregisters and frees a hook (NULL is ignored). Returns true if this stopped fn from ever
 * running; false if fn already ran or is running. If fn is running on another thread, waits for
 * it to return, so that after sl_ctx_hook_stop the caller may free arg. Called from inside fn
 * itself it does not wait (that would deadlock) and returns false. Do not call it while holding
 * a lock that fn takes (it may wait for fn). */
SL_API bool sl_ctx_hook_stop(sl_ctx_hook *hook);

/* Blocks until ctx is done; returns its error. On a ctx that can never be done (NULL,
 * background, or a chain with no cancel and no deadline) it returns SL_EDEADLK at once
 * rather than block forever. ("Chain" means how the ctx was built: a value-only chain counts as
 * never done even though sl_ctx_cancel could still be called on it.) Parks the thread: uses no
 * CPU while waiting. */
SL_API int sl_ctx_wait(sl_ctx *ctx);

/* Blocks until ctx is done or timeout_ns (real time) passes. Returns the ctx's error if it
 * became done, or SL_EAGAIN if the timeout passed first. */
SL_API int sl_ctx_wait_for(sl_ctx *ctx, int64_t timeout_ns);

/* Creates a child of parent cancelled with SL_ECANCELED when one of the n signals arrives
 * (Go's signal.NotifyContext). The signals are blocked from default handling until
 * sl_signal_ctx_stop. Only one signal ctx may be active in the process at a time (SL_EBUSY
 * otherwise). Returns 0, SL_EINVAL (n <= 0 or a signal that cannot be caught), SL_EBUSY or
 * SL_ENOMEM. Implementation: a process-wide signal handler (sigaction) feeding a watcher thread,
 * so it works whichever thread takes the signal and may be called after other threads exist;
 * the previous dispositions are saved. The watcher thread runs until sl_signal_ctx_stop and
 * accepts the signals itself: a program that blocks them in every other thread (block them in
 * main before starting any thread; threads inherit the mask) has them handled by the watcher
 * alone, which keeps delivery prompt under ThreadSanitizer (it defers a signal that lands on
 * a thread asleep in a parked sluice wait) and while a signal ctx is being replaced. */
SL_API int sl_signal_ctx(sl_ctx *parent, const int *signals, int n, sl_ctx **out);

/* Restores the signals' previous handling, stops and joins the watcher, and releases the
 * caller's reference to the signal ctx. Safe to call once per sl_signal_ctx success; a ctx that
 * is not the active signal ctx (or NULL) is ignored. Blocks briefly (the join). */
SL_API void sl_signal_ctx_stop(sl_ctx *ctx);

SL_END_DECLS

#endif /* SLUICE_CTX_H */
