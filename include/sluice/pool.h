/* sl_pool: a bounded pool of worker threads for background jobs (Go's WorkerPool, done the way a
 * production service needs it).
 *
 * - Bounded concurrency: at most `workers` jobs run at once (resizable at run time).
 * - A bounded queue that pushes back: sl_pool_submit waits while it is full (until its ctx
 *   fires); sl_pool_try_submit fails at once with SL_EFULL (the handler's 503), and
 *   sl_pool_retry_after_ns says when to come back (the handler's Retry-After).
 * - Retries with exponential backoff and full jitter that never put a worker to sleep: a failed
 *   attempt waits in a delay queue and goes back to work when due.
 * - A shutdown after which every accepted job has either run or been handed back
 *   (on_abandoned), never dropped silently.
 *
 * Sizing: for CPU-bound jobs use the number of CPUs (more threads only add switching); for
 * jobs that mostly wait (I/O: mail, webhooks, other services) use 10-100x the number of CPUs,
 * bounded by what the downstream service accepts. Size the queue for the burst you are willing
 * to absorb: queue_capacity / drain rate is the longest a job waits before it starts.
 *
 * Background jobs get a ctx derived from the pool (cancelled when shutdown's deadline passes)
 * plus the job's own per-attempt timeout, never the submitter's ctx: a request's ctx ends with
 * its response. Copy what a job needs (ids, trace ids) into its arg at submit time.
 *
 *   sl_pool_opts o = {.name = "email", .workers = 32, .queue_capacity = 4096,
 *                     .job_timeout_ns = SL_SEC(10), .retry = {.max_attempts = 5}};
 *   sl_pool *p;
 *   if (sl_pool_new(&o, &p) != 0) ...
 *   sl_pool_job j = {.id = "welcome-email-42", .fn = send_welcome, .arg = u, .arg_free = free};
 *   int rc = sl_pool_try_submit(p, &j);   // SL_EFULL -> 503 + Retry-After
 *   ...
 *   sl_pool_report r;
 *   sl_pool_shutdown(p, shutdown_ctx, &r);
 *   sl_pool_free(p);
 *
 * Threads: any — every function may be called from any thread, except that sl_pool_free must
 * be the last call on a pool. */
#ifndef SLUICE_POOL_H
#define SLUICE_POOL_H

#include "sluice/common.h"
#include "sluice/ctx.h"
#include "sluice/log.h"

SL_BEGIN_DECLS

typedef struct sl_pool sl_pool;

/* A job id is copied into the job at submit time: at most SL_POOL_ID_MAX bytes (not counting
 * the NUL); longer ids are refused with SL_EINVAL. */
#define SL_POOL_ID_MAX 63

/* The work of a job. Runs on a worker thread with a ctx that is done when the attempt's timeout
 * passes or shutdown's deadline passes; long jobs should check it (sl_ctx_err) or pass it on to
 * every blocking call. The ctx is only valid during the call. Return:
 *   0               success: the job is done (on_done with rc 0).
 *   SL_EPERMANENT   permanent failure: retrying cannot help (bad input, 4xx from the
 *                   downstream service). No retry: on_done with rc SL_EPERMANENT.
 *   any other < 0   retryable failure (timeouts, 5xx, connection errors): the job is tried
 *                   again after a backoff delay until the retry policy's max_attempts; then
 *                   on_dead with this rc.
 * Positive values count as success. */
typedef int (*sl_pool_job_fn)(sl_ctx *ctx, void *arg);

/* A job as given to submit. The pool copies the struct (and id) at submit time. */
typedef struct sl_pool_job {
    const char *id;              /* copied; <= SL_POOL_ID_MAX bytes; NULL means "" */
    sl_pool_job_fn fn;           /* required */
    void *arg;                   /* ownership moves to the pool only when submit returns 0 */
    void (*arg_free)(void *arg); /* called by the pool when it is done with arg; may be NULL */
    int64_t timeout_ns;          /* per attempt; 0 = the pool's job_timeout_ns; < 0 = no timeout */
} sl_pool_job;

/* Retry policy. The delay before attempt n+1 (after n failed attempts) is
 * d = min(max_delay_ns, base_delay_ns * multiplier^(n-1)); with full_jitter the delay is uniform
 * in [0, d] (AWS "full jitter": spreads a burst of failures), else exactly d. Zero fields take
 * the defaults shown. */
typedef struct sl_pool_retry {
    int max_attempts;      /* total attempts, first included; 0 -> 3; 1 = never retry */
    int64_t base_delay_ns; /* 0 -> 100 ms */
    int64_t max_delay_ns;  /* 0 -> 30 s */
    double multiplier;     /* 0 -> 2.0; must be >= 1 */
    bool full_jitter;      /* uniform in [0, d] instead of d */
} sl_pool_retry;

/* Hooks, each called exactly once per accepted job — exactly one of the three. They run on a
 * worker thread (on_done, on_dead) or on the thread calling sl_pool_shutdown (on_abandoned);
 * they must not block for long and must not call sl_pool_shutdown/sl_pool_free. `job` (and its
 * id) is valid only during the call; job->arg is the job's arg.
 *   on_done(job, rc, attempts)  the job ran to an end: rc 0 (success) or SL_EPERMANENT (or the
 *                               permanent failure code). The pool frees arg after it returns.
 *   on_dead(job, last_rc)       every attempt failed with a retryable error. The pool frees arg
 *                               after it returns (copy what a dead-letter store needs).
 *   on_abandoned(job)           the job never ran to an end because shutdown's deadline passed
 *                               (it was queued, waiting to retry, or interrupted). The hook
 *                               OWNS job->arg: persist it, re-queue it elsewhere, or free it.
 * Without on_abandoned, each abandoned job is logged at error level and arg_free is called. */
typedef void (*sl_pool_done_fn)(void *hook_arg, const sl_pool_job *job, int rc, int attempts);
typedef void (*sl_pool_dead_fn)(void *hook_arg, const sl_pool_job *job, int last_rc);
typedef void (*sl_pool_abandoned_fn)(void *hook_arg, const sl_pool_job *job);

typedef struct sl_pool_opts {
    const char *name;      /* for logs ("pool" attribute); copied; NULL -> "pool" */
    int workers;           /* threads; 0 -> number of online CPUs. See sizing above. */
    size_t queue_capacity; /* jobs waiting to start; 0 -> 1024; rounded up to a power of 2, at least
                              2 */
    int64_t job_timeout_ns; /* default per-attempt timeout; 0 = none */
    sl_pool_retry retry;
    sl_logger *logger; /* NULL = sl_log_default(); must outlive the pool */
    sl_pool_done_fn on_done;
    sl_pool_dead_fn on_dead;
    sl_pool_abandoned_fn on_abandoned;
    void *hook_arg;
    /* Shutdown: after shutdown's ctx fires and running jobs are cancelled, a job that ignores
     * its ctx is waited for, and logged ("job overran shutdown deadline") every
     * overrun_log_interval_ns (0 -> 1 s). If hard_timeout_ns > 0 and jobs are still running that
     * long after the ctx fired, shutdown gives up waiting and returns SL_ETIMEDOUT; see
     * sl_pool_shutdown for what happens to the stuck workers. Both in real (monotonic) time. */
    int64_t hard_timeout_ns;
    int64_t overrun_log_interval_ns;
    uint64_t seed;         /* jitter PRNG seed; 0 = seeded from the clock. Tests set it. */
    unsigned sample_every; /* histograms sample 1 job in N (power of 2); 0 -> 16; 1 = all */
} sl_pool_opts;

/* Creates a pool and starts its worker threads and its retry scheduler thread. Returns 0 and
 * *out, or SL_EINVAL (negative workers, multiplier < 1, bad sample_every, negative delays),
 * SL_ENOMEM or another error from thread creation (everything started is stopped and freed;
 * *out untouched). Does not block. */
SL_API int sl_pool_new(const sl_pool_opts *opts, sl_pool **out);

/* Submits a job, waiting while the queue is full. Jobs start in submission order (FIFO; with
 * several workers, tiny jobs may be taken a few at a time, see docs/pool.md). Returns:
 *   0             accepted: the pool owns job->arg and will report the job to exactly one hook.
 *   SL_ETIMEDOUT / SL_ECANCELED  ctx fired before there was room (also when ctx is already
 *                 done on entry).
 *   SL_ECLOSED    shutdown has begun (also when it begins while waiting).
 *   SL_EINVAL     job NULL, fn NULL, or id longer than SL_POOL_ID_MAX.
 * On any error the caller still owns job->arg and nothing was queued. The job struct itself is
 * copied; the caller may reuse it at once. Threads: any. Blocks only while the queue is full. */
SL_API int sl_pool_submit(sl_pool *pool, const sl_pool_job *job, sl_ctx *ctx);

/* Like sl_pool_submit but never waits: SL_EFULL when the queue is full (answer 503 and ask
 * sl_pool_retry_after_ns for the Retry-After). Same ownership rules. Threads: any. */
SL_API int sl_pool_try_submit(sl_pool *pool, const sl_pool_job *job);

/* Suggests how long a caller refused with SL_EFULL should wait before trying again: the time
 * the queued jobs need to start at the pool's recent drain rate: queued / rate, clamped to
 * [1 ms, 60 s]. The rate is an EWMA (time constant 1 s) of jobs started per second — a start
 * is what frees a queue slot; in steady state it equals completions per second — sampled on
 * try_submit refusals and on this call, at most every 10 ms. Before a rate is known it returns 1 s.
 * Threads: any. Does not block (takes the pool's lock for a few instructions at most every
 * 10 ms). */
SL_API int64_t sl_pool_retry_after_ns(sl_pool *pool);

/* Changes the number of workers. Growing starts threads at once; shrinking retires workers as
 * they become idle (a busy worker finishes its current job first). Every thread is joined by
 * shutdown. Returns 0, SL_EINVAL (n < 1), SL_ECLOSED (shutdown began) or an error from thread
 * creation (then fewer threads were started; the pool keeps working). Threads: any.
 * Blocks only to join workers that already retired. */
SL_API int sl_pool_set_workers(sl_pool *pool, int n);

/* log2-bucket histogram of durations: bucket b counts values v (ns) with 2^(b-1) <= v < 2^b
 * (bucket 0: v == 0). */
#define SL_POOL_HIST_BUCKETS 64

/* Returns the upper bound (ns) of the bucket holding quantile q (0 < q <= 1) of a histogram,
 * or 0 if it is empty. */
SL_API int64_t sl_pool_hist_quantile(const uint64_t *buckets, double q);

/* A snapshot of counters. Counters are read one by one without stopping the pool, so two
 * fields may be a few jobs apart while jobs are moving; after shutdown returned 0 they are
 * exact and submitted == succeeded + failed + dead + abandoned. */
typedef struct sl_pool_stats {
    uint64_t submitted; /* accepted by submit/try_submit */
    uint64_t rejected;  /* refused: SL_EFULL, ctx fired while waiting, SL_ECLOSED */
    uint64_t started;   /* attempts started (retries count again) */
    uint64_t succeeded; /* jobs that returned 0 */
    uint64_t failed;    /* jobs that failed permanently (SL_EPERMANENT) */
    uint64_t retried;   /* attempts that failed and were scheduled again */
    uint64_t dead;      /* jobs that used every attempt */
    uint64_t abandoned; /* jobs handed to on_abandoned (or logged) at shutdown */
    uint64_t queued;    /* waiting to start: queue, due retries, jobs a worker took in a batch */
    uint64_t delayed;   /* waiting for a retry's backoff to pass */
    uint64_t running;   /* running now */
    int workers;        /* live worker threads */
    size_t capacity;    /* queue capacity (after rounding) */
    double drain_rate;  /* EWMA of completions per second (0 until known) */
    uint64_t queue_wait[SL_POOL_HIST_BUCKETS]; /* sampled submit (or due) -> start, ns */
    uint64_t run_time[SL_POOL_HIST_BUCKETS];   /* sampled start -> end of attempt, ns */
    int64_t queue_wait_p50_ns, queue_wait_p99_ns, run_time_p50_ns, run_time_p99_ns;
} sl_pool_stats;

/* Fills *out with a snapshot. Threads: any. Does not stop the pool (takes the pool's slow-path
 * lock briefly to walk the worker list). */
SL_API void sl_pool_stats_get(sl_pool *pool, sl_pool_stats *out);

/* What shutdown did. */
typedef struct sl_pool_report {
    uint64_t submitted, succeeded, failed, dead, abandoned;
    uint64_t stuck;     /* jobs still running when shutdown returned SL_ETIMEDOUT (else 0) */
    bool deadline_hit;  /* shutdown's ctx fired before the pool drained */
    int64_t elapsed_ns; /* real time the first shutdown call took */
} sl_pool_report;

/* Stops the pool:
 * 1. Stops accepting: submit/try_submit return SL_ECLOSED; blocked submitters wake with it.
 * 2. Drains: runs everything queued and every retry that becomes due, until nothing is queued,
 *    delayed or running — or until ctx fires (NULL = no deadline: drain fully).
 * 3. If ctx fired first: cancels the ctx of every running job; every job that never started
 *    (queued or waiting to retry) goes to on_abandoned; a running job that then returns an
 *    error (other than SL_EPERMANENT) is abandoned too — it does not lose an attempt and is not
 *    counted as failed. Waits for every worker to return, logging each job that overruns
 *    (job_id, overrun) every overrun_log_interval_ns.
 * 4. Joins every thread and fills *report (may be NULL).
 * Returns 0, or SL_ETIMEDOUT if opts.hard_timeout_ns > 0 passed after ctx fired with jobs still
 * running. Then those workers are detached and left running: when such a job returns, its arg
 * is freed with arg_free, no hook is called and nothing is logged (the caller may have freed
 * what hooks and logger use), the stats no longer change, and the worker exits. sl_pool_free
 * is still allowed: the pool's memory is released by the last such worker to exit.
 * (report->stuck counts them.) A hook still running when the hard timeout passes is waited for
 * only if it started after the deadline; one that started earlier counts as stuck too.
 * Idempotent: later (or concurrent) calls wait for the first to finish and return its result
 * and report. Threads: any but a worker (a job or hook must not shut its own pool down).
 * Blocks. */
SL_API int sl_pool_shutdown(sl_pool *pool, sl_ctx *ctx, sl_pool_report *report);

/* Frees the pool. If shutdown was not called, first does sl_pool_shutdown with an
 * already-done ctx (queued jobs are abandoned, running jobs cancelled and waited for).
 * NULL is ignored. Threads: single owner: no other call on this pool may run or follow. */
SL_API void sl_pool_free(sl_pool *pool);

SL_END_DECLS

#endif /* SLUICE_POOL_H */
