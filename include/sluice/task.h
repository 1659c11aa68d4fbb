/* sl_go tasks: goroutines for C — stackful, cooperative, scheduled M:N on sluice's loops.
 *
 *   static void worker(void *arg) { ... sl_chan_recv(ch, &job, ctx); ... sl_wg_done(wg); }
 *   sl_wg_add(&wg, 1);
 *   sl_go(worker, &job);            // runs on a loop of the default runtime
 *   sl_wg_wait(&wg, ctx);           // a task parks here; a plain thread blocks
 *
 * A task is a function with its own stack (mmap'd, a guard page below it, committed page by
 * page as it is touched, reused after the task returns). Tasks run on the runtime's loop
 * threads, many per thread; a task runs until it returns or waits: every sluice wait (ctx,
 * chan, wg, sem, once, group, pool submit, limiter wait, sl_wait_fd, sl_offload) parks the
 * calling task and its loop runs the next one. There is no preemption: a task that computes
 * for long holds its loop (sl_task_yield lets others run; the watchdog logs offenders).
 *
 * No join handle: a task ends by returning, and the Go ways to wait for one are sl_wg and
 * sl_group (or a channel). docs/tasks.md has the model, stack sizing and the Go mapping. */
#ifndef SLUICE_TASK_H
#define SLUICE_TASK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sluice/common.h"
#include "sluice/ctx.h"

SL_BEGIN_DECLS

/* A set of loop threads that run tasks. One per process by default (sl_runtime_default);
 * tests and embedders may create their own. Threads: any. */
typedef struct sl_runtime sl_runtime;

/* A task's body. It ends the task by returning. */
typedef void (*sl_task_fn)(void *arg);

/* Default stack size of a task: 256 KiB of address space, of which a shallow task touches one
 * or two pages (the rest is never committed). */
#define SL_TASK_STACK_DEFAULT ((size_t)256 * 1024)

typedef struct sl_runtime_opts {
    int loops;           /* loop threads; 0 = one per online CPU */
    size_t stack_size;   /* bytes per task stack, rounded up to pages; 0 = SL_TASK_STACK_DEFAULT;
                            at least 16 KiB */
    int64_t watchdog_ns; /* log a task that holds its loop this long; 0 = 100 ms; < 0 = off */
    int offload_threads; /* sl_offload's thread pool; 0 = 4 */
    int64_t cancel_grace_ns; /* shutdown: how long cancelled tasks get to return; 0 = 100 ms */
} sl_runtime_opts;

/* Creates a runtime and starts its loop threads (and its watchdog thread). o may be NULL for
 * defaults. Returns 0 and sets *out, or SL_EINVAL (a negative count, a stack under 16 KiB),
 * SL_ENOMEM, or -errno when a thread or an epoll set cannot be created (nothing is left
 * running). Threads: any. */
SL_API int sl_runtime_new(const sl_runtime_opts *o, sl_runtime **out);

/* Stops the runtime: waits until every task has returned or ctx fires (NULL = do not wait).
 * Then cancels the runtime's ctx (sl_runtime_ctx), so tasks waiting on a ctx derived from it
 * get SL_ECANCELED, and gives them cancel_grace_ns to return. Then stops and joins every
 * thread of the runtime (loops, watchdog, offload pool). Tasks still parked at that point are
 * reported (one warning with their count and names) and their stacks are released with the
 * runtime: they never run again, so nothing may unpark them afterwards. Returns the number of
 * tasks abandoned that way (0 when everything finished), or SL_EDEADLK when called from one
 * of rt's own loop threads (nothing is done: it would have to join itself), or SL_EBUSY while
 * an HTTP server still runs on rt's loops (sl_server_opts.runtime; nothing is done: free the
 * server first). After it, sl_go on this runtime returns SL_ECLOSED. Threads: any but rt's
 * loops. Blocks. */
SL_API int sl_runtime_shutdown(sl_runtime *rt, sl_ctx *ctx);

/* Shuts down (if not done yet, with no wait) and frees rt. NULL is ignored, and so is a call
 * from one of rt's own loop threads; while a server still uses rt nothing is done but an error
 * log (rt stays allocated rather than pull the loops from under the server). Freeing the default
 * runtime makes a later sl_go create a new one. Threads: any but rt's loops. Blocks until its
 * threads are joined. */
SL_API void sl_runtime_free(sl_runtime *rt);

/* The process's default runtime, created with default options on first use (loops: one per
 * CPU). Returns NULL if it cannot be created. Threads: any. */
SL_API sl_runtime *sl_runtime_default(void);

/* The runtime's root ctx: cancelled by sl_runtime_shutdown once its wait is over. Tasks that
 * should stop at shutdown derive their ctx from it. Valid until sl_runtime_free. */
SL_API sl_ctx *sl_runtime_ctx(sl_runtime *rt);

/* Number of loop threads of rt. */
SL_API int sl_runtime_loops(const sl_runtime *rt);

/* Tasks of rt spawned and not yet returned (a snapshot). */
SL_API int64_t sl_runtime_tasks(const sl_runtime *rt);

/* Options of one spawn. A zeroed struct means: default name, the current runtime, any loop. */
typedef struct sl_go_opts {
    const char *name; /* for reports (watchdog, overflow, shutdown); must be a string that
                         outlives the task (a literal); NULL = "task" */
    sl_runtime *rt;   /* NULL = the calling task's runtime, else the default runtime */
    int loop;         /* 1..loops: run on that loop (1-based: 0 means any) */
} sl_go_opts;

/* Starts fn(arg) as a new task; returns at once. From a task or a loop thread the task goes
 * on the current loop (idle loops steal it if this one is busy); from another thread,
 * successive spawns are spread round-robin over the loops. Ownership of arg is the caller's
 * business (fn typically owns it). Returns 0, SL_ENOMEM (no stack), SL_EINVAL (loop out of
 * range, fn NULL), or SL_ECLOSED (the runtime is shutting down); fn then never runs.
 * Threads: any. Does not block. */
SL_API int sl_go(sl_task_fn fn, void *arg);

/* sl_go with options (o may be NULL). */
SL_API int sl_go_with(const sl_go_opts *o, sl_task_fn fn, void *arg);

/* Lets the other runnable tasks of this loop run, then continues. A task that computes for
 * long should call it now and then. On a plain thread it calls sched_yield(). */
SL_API void sl_task_yield(void);

/* True on a task. */
SL_API bool sl_task_in(void);

/* The calling task's name ("task" if none was given), or NULL on a plain thread. */
SL_API const char *sl_task_name(void);

/* The 1-based index of the loop the calling thread is (a task's current loop), or 0 on a
 * plain thread. A task may move to another loop whenever it waits or yields. */
SL_API int sl_task_loop(void);

/* The loop the calling thread runs: a task's current loop (or a loop thread's, in a loop
 * callback), for APIs that take an sl_loop (sl_redis_limiter_attach/check: their callbacks run
 * on this loop's thread). NULL on a plain thread. A task may move to another loop whenever it
 * waits or yields, so ask again after each wait. Threads: any. Does not block. */
SL_API sl_loop *sl_loop_current(void);

enum { SL_WAIT_READ = 1, SL_WAIT_WRITE = 2 };

/* Waits until fd is readable and/or writable (events: SL_WAIT_READ|SL_WAIT_WRITE), or the ctx
 * fires. From a task: parks the task, the loop's epoll does the waiting. From a plain thread:
 * blocks the thread (poll() on fd plus a wakeup the ctx's on-done hook triggers — no polling
 * loop). Returns the ready subset (> 0; an error/hangup on fd counts as ready for both), or
 * SL_ECANCELED / SL_ETIMEDOUT (the ctx's error), SL_EINVAL (bad events or fd), SL_EEXIST (a
 * task already waits on this fd on this loop), SL_ENOMEM. The fd stays the caller's; one
 * waiter per fd at a time. Threads: any; on a loop thread outside a task (a loop callback)
 * it blocks the whole loop, like any blocking call there. */
SL_API int sl_wait_fd(int fd, int events, sl_ctx *ctx);

typedef void (*sl_offload_fn)(void *arg);

/* Runs fn(arg) on sluice's bounded offload thread pool (for foreign blocking calls: SQLite,
 * getaddrinfo, file I/O) while the calling task parks. On a plain thread fn runs on the
 * calling thread (which may block anyway). If the ctx fires before fn has started, fn never
 * runs and the ctx's error is returned. Once fn has started, sl_offload waits for it to
 * return and returns 0 (stop fn early with your own interrupt, e.g. sqlite3_interrupt from a
 * ctx on-done hook). Returns SL_ECLOSED if the runtime is shutting down (fn never runs), or
 * SL_EINVAL (fn NULL), SL_ENOMEM. Threads: any; the pool threads are joined by
 * sl_runtime_shutdown, so fn must return. */
SL_API int sl_offload(sl_offload_fn fn, void *arg, sl_ctx *ctx);

SL_END_DECLS

#endif /* SLUICE_TASK_H */
