/* sl_rpool: a bounded pool of expensive resources (the part of Go's *sql.DB that is not SQL).
 *
 * The pool opens resources on demand through the caller's ops (a database connection, a TCP
 * session, ...), hands them out one caller at a time, and keeps some of them idle for reuse:
 *
 *   sl_rpool_item *it;
 *   int rc = sl_rpool_acquire(pool, ctx, &it);       // waits while max_open are in use
 *   if (rc < 0) return rc;                            // SL_ETIMEDOUT, SL_ECANCELED, open error
 *   conn *c = sl_rpool_item_res(it);
 *   if (use(c) == broken) sl_rpool_discard(it);       // closes it, frees its slot
 *   else sl_rpool_release(it);                        // back to the idle list
 *
 * Limits, as database/sql's: max_open bounds resources open at once (in use + idle); waiters
 * beyond it are served in arrival order (FIFO). max_idle bounds the idle list (a release past it
 * closes the resource: MaxIdleClosed). max_lifetime closes a resource that old when it is next
 * seen (acquire, release or sl_rpool_reap); max_idle_time closes one idle that long. Expiry is
 * lazy plus explicit: acquire and release look at the oldest idle resource, sl_rpool_reap_at
 * sweeps them all (call it from a ticker, or with a test clock). Times are sl_now_ns(), so a
 * test clock drives expiry.
 *
 * Health check: when ops.check is set, a resource taken from the idle list that has been idle
 * at least check_after_ns is checked first (outside the pool's lock); a failing one is closed
 * and the next is tried (a fresh one is opened when the list runs out).
 *
 * Waiting uses the sync module's ctx waits, so a waiter wakes when its ctx fires without
 * polling (and parks its task once tasks exist).
 *
 * Threads: any. Every function may be called from any thread; the ops are called without the
 * pool's lock held, possibly from several threads at once. */
#ifndef SLUICE_RPOOL_H
#define SLUICE_RPOOL_H

#include "sluice/common.h"
#include "sluice/ctx.h"

SL_BEGIN_DECLS

typedef struct sl_rpool sl_rpool;
typedef struct sl_rpool_item sl_rpool_item;

typedef struct sl_rpool_ops {
    /* Opens one resource into *out. Returns 0 or a negative SL_E* code (passed to the acquirer).
     * May block; should honour ctx (the acquirer's). Required. */
    int (*open)(void *arg, sl_ctx *ctx, void **out);
    /* Closes a resource the pool no longer wants. Required. */
    void (*close)(void *arg, void *res);
    /* Optional: returns 0 if res is usable, < 0 if it must be discarded. Should be quick. */
    int (*check)(void *arg, void *res, sl_ctx *ctx);
} sl_rpool_ops;

typedef struct sl_rpool_opts {
    sl_rpool_ops ops;
    void *arg;                /* passed to every op; borrowed */
    int max_open;             /* resources open at once; <= 0: unlimited */
    int max_idle;             /* idle resources kept; 0: 2 (Go's default); < 0: none */
    int64_t max_lifetime_ns;  /* <= 0: forever */
    int64_t max_idle_time_ns; /* <= 0: forever */
    int64_t check_after_ns;   /* check resources idle at least this long; 0: every checkout */
} sl_rpool_opts;

/* The fields of Go's sql.DBStats, plus check failures. Durations in ns. */
typedef struct sl_rpool_stats {
    int max_open;                  /* MaxOpenConnections (0: unlimited) */
    int open;                      /* OpenConnections: in use + idle (+ being opened) */
    int in_use;                    /* InUse */
    int idle;                      /* Idle */
    int waiting;                   /* callers waiting right now */
    uint64_t wait_count;           /* WaitCount: acquires that had to wait */
    int64_t wait_duration_ns;      /* WaitDuration: total time spent waiting */
    uint64_t max_idle_closed;      /* MaxIdleClosed */
    uint64_t max_idle_time_closed; /* MaxIdleTimeClosed */
    uint64_t max_lifetime_closed;  /* MaxLifetimeClosed */
    uint64_t check_failed;         /* resources discarded by the health check */
    uint64_t discarded;            /* sl_rpool_discard calls */
} sl_rpool_stats;

/* Creates a pool (no resource is opened yet). opts is copied. Returns 0, SL_EINVAL (opts,
 * out, ops.open or ops.close NULL) or SL_ENOMEM with *out untouched. Threads: any. */
SL_API int sl_rpool_new(const sl_rpool_opts *opts, sl_rpool **out);

/* Closes the pool: waiters and later acquires get SL_ECLOSED, idle resources are closed, and
 * resources still in use are closed when released or discarded. Idempotent. Does not block
 * beyond the ops' close calls. Threads: any. */
SL_API void sl_rpool_close(sl_rpool *p);

/* Closes (as sl_rpool_close) and frees the pool. Every item must have been released or
 * discarded before, and no thread may be inside a pool call. NULL is ignored. */
SL_API void sl_rpool_free(sl_rpool *p);

/* Takes a resource: an idle one (most recently used first, after the expiry and health checks),
 * else a new one while fewer than max_open are open, else waits in FIFO order until one is
 * released (handed over directly) or discarded (the waiter opens a replacement). Returns 0 and
 * *out (owned by the caller until release/discard), the ctx's error (SL_ETIMEDOUT,
 * SL_ECANCELED) if it fires first, SL_ECLOSED, or ops.open's error. Blocks (ctx-bounded; the
 * open itself is bounded by what ops.open does with ctx). Threads: any. */
SL_API int sl_rpool_acquire(sl_rpool *p, sl_ctx *ctx, sl_rpool_item **out);

/* Like sl_rpool_acquire, but never waits and never opens: returns 0 with an idle resource or
 * SL_EAGAIN. */
SL_API int sl_rpool_try_acquire(sl_rpool *p, sl_rpool_item **out);

/* NULL arguments: acquire, try_acquire, reap and drain return SL_EINVAL; release, discard,
 * close and free ignore NULL; stats fills zeros. */

/* The resource an item holds. */
SL_API void *sl_rpool_item_res(const sl_rpool_item *it);

/* Returns an item to the pool: to the first waiter, else to the idle list (or closed when past
 * max_idle or max_lifetime, or the pool is closed). The caller must not use it after. */
SL_API void sl_rpool_release(sl_rpool_item *it);

/* Closes a broken resource and frees its slot (a waiter then opens a new one). */
SL_API void sl_rpool_discard(sl_rpool_item *it);

/* Closes every idle resource past max_lifetime or max_idle_time at instant now (sl_now_ns()
 * scale). Returns how many were closed. sl_rpool_reap(p) is sl_rpool_reap_at(p, sl_now_ns()). */
SL_API int sl_rpool_reap_at(sl_rpool *p, int64_t now);
SL_API int sl_rpool_reap(sl_rpool *p);

/* Closes every idle resource (all of them: e.g. after the server restarted). Returns how many. */
SL_API int sl_rpool_drain_idle(sl_rpool *p);

/* Fills *st with a snapshot. Threads: any. */
SL_API void sl_rpool_stats_get(sl_rpool *p, sl_rpool_stats *st);

SL_END_DECLS

#endif /* SLUICE_RPOOL_H */
