/* sl_group: Go's errgroup.Group (golang.org/x/sync/errgroup) — bounded fan-out where the first
 * error wins and cancels the group's ctx — and sl_executor, the small thread pool its tasks run
 * on.
 *
 * A group has a derived ctx (sl_group_ctx), cancelled when a task first returns non-zero and when
 * sl_group_wait returns. Tasks are `int fn(sl_ctx *ctx, void *arg)`: ctx is the group's ctx,
 * 0 means success. With a limit (sl_group_set_limit) at most n tasks are in flight (queued or
 * running); sl_group_go waits for a slot like Go's Go, sl_group_go_ctx waits with a ctx,
 * sl_group_try_go returns SL_EFULL at once.
 *
 * Tasks run on an executor: by default a process-wide one (one worker thread per CPU, started on
 * first use, joined at exit), or one you create. A thread that waits on a group — in
 * sl_group_wait, or in sl_group_go at the limit — runs that group's queued tasks itself while it
 * waits (work stealing from its own group). So nested groups cannot deadlock the executor even
 * when every worker thread is itself waiting on a group, and a go() at the limit may run one of
 * the group's queued tasks on the caller's thread (a "caller runs" policy) instead of sleeping.
 *
 * Threads: any — groups and executors may be used from any thread, including from inside tasks
 * (a task may call sl_group_go on its own group, or run a nested group). */
#ifndef SLUICE_GROUP_H
#define SLUICE_GROUP_H

#include "sluice/common.h"
#include "sluice/ctx.h"

SL_BEGIN_DECLS

/* A task: returns 0 on success or a negative SL_E* (any non-zero value is an error). ctx is
 * the group's ctx: done once another task failed or the parent is done. */
typedef int (*sl_group_fn)(sl_ctx *ctx, void *arg);

/* A set of worker threads that run group tasks. Opaque; Threads: any. */
typedef struct sl_executor sl_executor;

/* An errgroup. Opaque; Threads: any. */
typedef struct sl_group sl_group;

/* Creates an executor with nthreads workers (0 = number of online CPUs; at most 1024), started
 * now. Returns 0 and *out, SL_EINVAL, SL_ENOMEM, or SL_EAGAIN (threads could not be created).
 * Does not block. */
SL_API int sl_executor_new(size_t nthreads, sl_executor **out);

/* Stops the executor: its workers run every task still queued, then exit and are joined.
 * NULL is ignored. Groups using it must have been waited; none may be created on it afterwards.
 * Blocks until the workers have exited. Must not be called from one of its own tasks. */
SL_API void sl_executor_free(sl_executor *ex);

/* Number of worker threads. */
SL_API size_t sl_executor_threads(const sl_executor *ex);

/* Creates a group whose ctx is a child of parent (NULL = background), running on the
 * process-wide default executor (started on first use, joined at process exit). No limit.
 * Returns 0 and *out; SL_ENOMEM, or SL_EAGAIN if the default executor's threads could not be
 * started (*out untouched). Does not block (beyond starting those threads once). */
SL_API int sl_group_new(sl_ctx *parent, sl_group **out);

/* Like sl_group_new, on executor ex (NULL = the default), which must outlive the group. */
SL_API int sl_group_new_on(sl_ctx *parent, sl_executor *ex, sl_group **out);

/* Returns the group's ctx (borrowed: valid until sl_group_free; take sl_ctx_ref to keep it).
 * Done when a task first fails, when sl_group_wait returns, or when the parent is done. */
SL_API sl_ctx *sl_group_ctx(sl_group *g);

/* Limits the tasks in flight (queued or running) to n; n < 0 removes the limit. As in Go, a
 * limit of 0 lets no task start (go waits, try_go fails). Returns 0, or SL_EBUSY if tasks are in
 * flight (Go panics there). Does not block. */
SL_API int sl_group_set_limit(sl_group *g, int n);

/* Starts fn(ctx, arg) on the executor, waiting first while the group is at its limit (during
 * that wait it may run one of the group's queued tasks itself). Like Go's Go this wait is not
 * cancellable: use sl_group_go_ctx for that. Returns 0 (fn will run exactly once; its result
 * goes to sl_group_wait), SL_EINVAL (fn NULL) or SL_ENOMEM; on error fn never runs. arg is
 * only passed to fn, never freed by the group: it must stay valid until fn has returned (at the
 * latest, until sl_group_wait returns). Blocks. */
SL_API int sl_group_go(sl_group *g, sl_group_fn fn, void *arg);

/* Like sl_group_go, but the wait for a free slot ends with ctx's error (SL_ECANCELED,
 * SL_ETIMEDOUT, ...) if ctx is done first; then fn never runs. Blocks. */
SL_API int sl_group_go_ctx(sl_group *g, sl_group_fn fn, void *arg, sl_ctx *ctx);

/* Starts fn(ctx, arg) if the group is below its limit, else returns SL_EFULL at once (Go's
 * TryGo). Other errors as sl_group_go. Never waits for a slot. */
SL_API int sl_group_try_go(sl_group *g, sl_group_fn fn, void *arg);

/* Waits until every task started so far has returned, running the group's queued tasks on this
 * thread meanwhile; then cancels the group's ctx. Returns the first error a task returned
 * (0 if none). Not cancellable, like Go's Wait: cancel the group's ctx (or its parent) to make
 * the tasks return early. Blocks. */
SL_API int sl_group_wait(sl_group *g);

/* Frees the group (waiting first, as sl_group_wait, if tasks are still in flight) and releases
 * its ctx. NULL is ignored. No other call on g may run or follow. */
SL_API void sl_group_free(sl_group *g);

SL_END_DECLS

#endif /* SLUICE_GROUP_H */
