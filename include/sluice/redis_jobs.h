/* sl_redis_jobs: durable background jobs in a Redis Stream, shared by several instances.
 *
 * A queue is three keys with one hash tag (one Cluster slot, so its Lua scripts are legal
 * there): "<prefix>{<queue>}:stream" (jobs ready to run, read by one consumer group),
 * ":delayed" (a sorted set of jobs waiting to retry, scored by due time in ms of Redis's
 * clock) and ":dead" (a stream of jobs that used their last attempt). Entries carry the job's
 * id, the attempts already made, and the payload: bytes made by the application's codec.
 *
 * Delivery is at least once. A worker XREADGROUPs a job, runs it, then XACKs it (success),
 * or moves it atomically (one Lua script) to :delayed with a backoff (retryable failure) or
 * to :dead (last attempt, or SL_EPERMANENT). A job whose consumer crashed stays pending in the
 * group; after visibility_ns any worker reclaims it (XAUTOCLAIM, Redis >= 6.2) and runs it
 * again, counting the lost run as an attempt. So a job may run more than once (a consumer
 * that dies after the job's side effects but before XACK, or one slower than visibility_ns):
 * make handlers idempotent (key side effects by the job id; "insert if absent", not
 * "increment"). Due retries are promoted from :delayed to the stream by a Lua script (ZRANGE
 * + XADD + ZREM in one step), run by every fetch.
 *
 * Blocking. Each sl_redis_jobs object owns one synchronous hiredis connection. A call that
 * waits (fetch's XREADGROUP BLOCK, or any command on a slow Redis) takes a ctx: when the ctx
 * is done, an on-done hook shutdown()s the socket, the call returns the ctx's error at once,
 * and the connection is re-opened by the next call. Nothing sleeps or polls: fetch blocks in
 * Redis for at most max_block_ns at a time (so that retries that came due and crashed
 * consumers' jobs are noticed), then looks again.
 *
 * Threads: an sl_redis_jobs is single owner (one thread at a time): give each worker thread
 * its own (with its own consumer name) and the producers theirs. */
#ifndef SLUICE_REDIS_JOBS_H
#define SLUICE_REDIS_JOBS_H

#include "sluice/common.h"
#include "sluice/ctx.h"
#include "sluice/log.h"
#include "sluice/pool.h"

SL_BEGIN_DECLS

typedef struct sl_redis_jobs sl_redis_jobs;

/* The application's codec between a job's arg and its stored bytes.
 * encode: fills *bytes (malloc'd; sluice frees it) and *len; returns 0 or a negative code.
 * decode: makes a new arg from len bytes; returns 0 or a negative code (the entry is then
 *         dead-lettered: a payload that cannot be decoded will never run).
 * arg_free: frees an arg made by decode (NULL: free()). */
typedef struct sl_redis_codec {
    int (*encode)(void *codec_arg, const void *arg, void **bytes, size_t *len);
    int (*decode)(void *codec_arg, const void *bytes, size_t len, void **arg);
    void (*arg_free)(void *arg);
    void *codec_arg;
} sl_redis_codec;

typedef struct sl_redis_jobs_config {
    const char *host;      /* copied; NULL -> "127.0.0.1" */
    int port;              /* 0 -> 6379 */
    const char *prefix;    /* copied; NULL -> "sl:jobs:" */
    const char *queue;     /* required; copied */
    const char *group;     /* copied; NULL -> "workers" */
    const char *consumer;  /* copied; unique per worker; NULL -> "<hostname>-<pid>-<n>" */
    sl_redis_codec codec;  /* encode and decode required */
    int max_attempts;      /* total, first included; 0 -> 3 */
    int64_t base_delay_ns; /* retry n waits min(max, base * 2^(n-1)); 0 -> 100 ms */
    int64_t max_delay_ns;  /* 0 -> 30 s */
    int64_t visibility_ns; /* a pending job idle this long is reclaimed; 0 -> 30 s */
    int64_t max_block_ns;  /* longest single XREADGROUP block; 0 -> 1 s */
    int64_t io_timeout_ns; /* connect and per-command socket timeout; 0 -> 2 s */
    sl_logger *logger;     /* NULL = default; must outlive the object */
} sl_redis_jobs_config;

/* A fetched job. Owned by the caller until sl_redis_job_free. */
typedef struct sl_redis_job {
    char id[SL_POOL_ID_MAX + 1]; /* the application's id */
    char entry[48];              /* the stream entry id */
    int attempts;                /* attempts already made before this one (0: first run) */
    bool reclaimed;              /* taken over from a consumer that did not finish it */
    void *arg;                   /* decoded; freed by sl_redis_job_free */
    void *payload;               /* private: the encoded bytes (kept for retry/dead) */
    size_t payload_len;
} sl_redis_job;

/* A job's work. Same contract as sl_pool_job_fn: 0 (or > 0) success, SL_EPERMANENT no retry,
 * other < 0 retry. ctx is the worker's ctx. */
typedef int (*sl_redis_job_fn)(sl_ctx *ctx, sl_redis_job *job, void *arg);

typedef struct sl_redis_jobs_stats {
    uint64_t submitted, fetched, reclaimed, acked, retried, dead, promoted, spilled, reconnects;
} sl_redis_jobs_stats;

/* Connects and creates the consumer group (and the stream) if missing. Returns 0 and *out, or
 * SL_EINVAL (no queue, no codec), SL_ENOMEM, SL_EUNAVAIL (cannot connect), SL_EREDIS (Redis
 * refused: e.g. older than 6.2), or the ctx's error. Blocks up to io_timeout_ns, or the ctx.
 * Threads: any. */
SL_API int sl_redis_jobs_new(const sl_redis_jobs_config *cfg, sl_ctx *ctx, sl_redis_jobs **out);

/* Closes the connection and frees; NULL is ignored. Jobs fetched and not yet acked or failed
 * stay pending in Redis (another worker reclaims them after visibility_ns). */
SL_API void sl_redis_jobs_free(sl_redis_jobs *q);

/* Adds a job (XADD): id (<= SL_POOL_ID_MAX bytes; NULL means "") and arg, encoded now (arg is
 * borrowed: the caller still owns it after the call). Returns 0, SL_EINVAL, the codec's
 * error, SL_EUNAVAIL/SL_EREDIS, or the ctx's error (the job may then have been added:
 * at-least-once again). Blocks for one round trip. */
SL_API int sl_redis_jobs_submit(sl_redis_jobs *q, const char *id, const void *arg, sl_ctx *ctx);

/* Waits for the next job: first promotes due retries, then reclaims a job idle longer than
 * visibility_ns in any consumer, else reads a new one (XREADGROUP BLOCK). Returns 0 with *out
 * (free it with sl_redis_job_free after ack or fail), or the ctx's error when it fires (at
 * once: the socket is shut down), or SL_EUNAVAIL/SL_EREDIS/SL_ENOMEM. Entries that cannot be
 * decoded, and reclaimed jobs that already used their attempts, go to :dead and are skipped.
 * Blocks until a job or the ctx. */
SL_API int sl_redis_jobs_fetch(sl_redis_jobs *q, sl_ctx *ctx, sl_redis_job **out);

/* Marks job done: XACK + XDEL. Returns 0 or SL_EUNAVAIL/SL_EREDIS/the ctx's error (then the
 * job stays pending and will be reclaimed and run again). Blocks for one round trip. */
SL_API int sl_redis_jobs_ack(sl_redis_jobs *q, const sl_redis_job *job, sl_ctx *ctx);

/* Records a failed attempt with rc: schedules a retry after the backoff, or (last attempt,
 * or rc == SL_EPERMANENT) moves the job to :dead with rc; atomically with its XACK. Returns 0
 * (1 if it went to :dead), or the errors of ack. */
SL_API int sl_redis_jobs_fail(sl_redis_jobs *q, const sl_redis_job *job, int rc, sl_ctx *ctx);

/* Frees a fetched job and its arg. NULL is ignored. */
SL_API void sl_redis_job_free(sl_redis_jobs *q, sl_redis_job *job);

/* Runs jobs until ctx is done: fetch, fn, then ack (fn >= 0) or fail (fn < 0). Returns the
 * ctx's error when it fires, or the first Redis error that a reconnect did not cure (after
 * the backoff: fetch is retried while Redis is down, waiting on the ctx between tries).
 * Blocks. */
SL_API int sl_redis_jobs_work(sl_redis_jobs *q, sl_redis_job_fn fn, void *arg, sl_ctx *ctx);

/* Spills an in-memory sl_pool job to this queue, for an sl_pool on_abandoned hook: encodes
 * job->arg and adds it with job->id. On success calls job->arg_free(job->arg) (the hook owned
 * it) and returns 0; on failure returns the error and the caller still owns job->arg. Blocks
 * for one round trip (bounded by io_timeout_ns and ctx). q is single owner, and sl_pool calls
 * on_abandoned both on the shutdown thread (queued jobs) and on worker threads (interrupted
 * running jobs), possibly at once: hold a mutex around the call in the hook. */
SL_API int sl_redis_jobs_spill(sl_redis_jobs *q, const sl_pool_job *job, sl_ctx *ctx);

/* Counters of this object. Threads: the owner. */
SL_API void sl_redis_jobs_stats_get(const sl_redis_jobs *q, sl_redis_jobs_stats *st);

SL_END_DECLS

#endif /* SLUICE_REDIS_JOBS_H */
