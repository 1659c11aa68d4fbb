/* sl_redis_limiter: per-key rate limits shared by several sluice instances through Redis.
 *
 * Model. Each key is a GCRA bucket (generic cell rate algorithm, the model of redis-cell and
 * go-redis/redis_rate): Redis stores one number per key, the theoretical arrival time (TAT),
 * and one Lua script, run atomically by Redis, decides and updates it. With emission interval
 * T = 1/limit and tolerance burst*T, a request of n tokens at `now` is allowed iff
 * now >= max(TAT, now) + n*T - burst*T; the new TAT is then max(TAT, now) + n*T. This is the
 * token bucket of sl_limiter seen from the other side (tokens = burst - (TAT - now)/T), so for
 * the same limit and burst it makes the same allow/deny decisions as sl_limiter_allow_n_at;
 * see docs/redis.md for the rounding (Redis works in microseconds, as doubles).
 * A key expires (SET ... PX) when its bucket would be full again: idle keys cost Redis nothing.
 * Key names are "<prefix>{<key>}": the hash tag keeps the name on one slot of a Redis Cluster.
 *
 * Time source. By default the script reads Redis's TIME: one clock for every instance, so two
 * instances with skewed clocks still share one bucket exactly. SL_REDIS_CLOCK_CLIENT sends the
 * instance's wall clock instead (or an explicit instant with the _at calls: tests); that costs
 * nothing in Redis but lets clock skew between instances move tokens. See docs/redis.md.
 *
 * I/O. hiredis's async API is attached to sluice loops (sl_loop; from a task,
 * sl_loop_current()): one connection per attached loop, every callback on that loop's thread.
 * The checks a loop makes in one round go to Redis together when the round ends, one script
 * call per bucket; while a batch is out, later checks wait for its reply and go as the next
 * batch (so batches grow with the load; docs/redis.md). Nothing ever blocks a loop. Each check
 * has a timeout; a dropped connection is re-established with exponential backoff. While Redis is
 * slow or down, the limiter's failure policy answers: fail-open (allow), fail-closed
 * ("unavailable": the middleware answers 503) or a local sl_keyed fallback (each instance then
 * enforces the limit alone). Every such answer is counted in the stats.
 *
 * Most services use the limiter as the backend of an sl_ratelimit rule (ratelimit.h: the rule's
 * `redis` field), which gives it the policy's key derivation, rollback and answers, and waits
 * for the round trip by parking the request's task.
 *
 * Threads: see each function. A check on a loop runs on that loop's thread; the blocking
 * variant may be called from any thread (it uses a private loop thread). */
#ifndef SLUICE_REDIS_LIMITER_H
#define SLUICE_REDIS_LIMITER_H

#include "sluice/common.h"
#include "sluice/ctx.h"
#include "sluice/ipkey.h"
#include "sluice/keyed.h"
#include "sluice/log.h"

SL_BEGIN_DECLS

typedef struct sl_redis_limiter sl_redis_limiter;
/* sl_loop (common.h) is sluice's event loop, opaque; the HTTP server owns its loops. */

/* Where a decision came from. */
typedef enum sl_rate_source {
    SL_RATE_FROM_REDIS = 0, /* the shared bucket in Redis */
    SL_RATE_FROM_LOCAL,     /* computed locally without Redis (infinite limit, n > burst) */
    SL_RATE_FAIL_OPEN,      /* Redis unavailable: allowed by policy */
    SL_RATE_FAIL_CLOSED,    /* Redis unavailable: refused by policy (answer 503, not 429) */
    SL_RATE_FALLBACK,       /* Redis unavailable: decided by the local fallback sl_keyed */
} sl_rate_source;

/* One Redis bucket's answer: the payload of the low-level async check (sl_redis_check_fn) and
 * of the blocking check. HTTP services do not see it: a Redis-backed rule of an sl_ratelimit
 * policy (ratelimit.h) turns it into the policy's one answer (429 with Retry-After and the
 * RateLimit headers, 503 fail-closed). */
typedef struct sl_rate_decision {
    bool allowed;
    sl_rate_source source;
    int err;                /* 0 when decided normally; else why the policy answered:
                             * SL_ETIMEDOUT, SL_EUNAVAIL (not connected), SL_EREDIS (error
                             * reply), SL_ECANCELED (detached/freed), SL_ENOMEM */
    int64_t limit;          /* the bucket's size (burst): RateLimit-Limit */
    int64_t remaining;      /* whole tokens left after this decision: RateLimit-Remaining */
    int64_t retry_after_ns; /* 0 when allowed; when refused, until the n tokens are there
                             * (SL_FOREVER when n > burst, or when fail-closed) */
    int64_t reset_ns;       /* until the bucket is full again: RateLimit-Reset */
} sl_rate_decision;

/* What a limiter answers while Redis is slow or down. */
typedef enum sl_redis_fail_policy {
    SL_REDIS_FAIL_OPEN = 0, /* allow; counted and logged (rate-limited log line) */
    SL_REDIS_FAIL_CLOSED,   /* refuse with source SL_RATE_FAIL_CLOSED: a 503, not a 429 */
    SL_REDIS_FAIL_LOCAL,    /* ask the config's fallback sl_keyed (same tiers, per instance) */
} sl_redis_fail_policy;

typedef enum sl_redis_clock {
    SL_REDIS_CLOCK_SERVER = 0, /* Redis TIME inside the script (default) */
    SL_REDIS_CLOCK_CLIENT,     /* sl_wall_ns() of the calling instance */
} sl_redis_clock;

typedef struct sl_redis_limiter_config {
    const char *host;   /* copied; NULL -> "127.0.0.1" */
    int port;           /* 0 -> 6379 */
    const char *prefix; /* copied; key names are prefix "{" key "}"; NULL -> "sl:rl:" */
    /* Tiers, as sl_keyed's: tier_fn(key) picks an index, anything out of range means
     * default_tier. Limits must be > 0 (SL_RATE_INF allowed); bursts >= 1. Called on the
     * checking thread for every check (not only when a key is new, unlike sl_keyed). */
    const sl_keyed_tier *tiers; /* copied; 1..SL_KEYED_MAX_TIERS */
    int ntiers;
    int default_tier;
    sl_keyed_tier_fn tier_fn;
    void *tier_arg;
    int64_t timeout_ns;         /* per check; 0 -> 50 ms */
    int64_t connect_timeout_ns; /* 0 -> 1 s */
    int64_t backoff_min_ns;     /* first reconnect delay; 0 -> 10 ms */
    int64_t backoff_max_ns;     /* 0 -> 1 s; the delay doubles up to this */
    sl_redis_fail_policy policy;
    sl_keyed *fallback; /* for SL_REDIS_FAIL_LOCAL: borrowed, must outlive the limiter. May be
                           NULL when the limiter only backs sl_ratelimit rules (each falls back
                           to its own in-memory bucket); a direct check then answers as
                           fail-closed */
    sl_redis_clock clock;
    sl_logger *logger; /* NULL = sl_log_default(); must outlive the limiter */
} sl_redis_limiter_config;

/* Counters (atomic; each exact, the set not one instant's snapshot). */
typedef struct sl_redis_limiter_stats {
    uint64_t checks;        /* decisions made, every source */
    uint64_t allowed;       /* ...of which allowed */
    uint64_t redis_replies; /* decided by Redis */
    uint64_t timeouts;      /* checks answered SL_ETIMEDOUT */
    uint64_t unavailable;   /* checks made while not connected, or dropped by a disconnect */
    uint64_t redis_errors;  /* error replies (other than a recovered NOSCRIPT) */
    uint64_t fail_open;     /* answered by each policy */
    uint64_t fail_closed;
    uint64_t fallback;
    uint64_t late_replies; /* replies that arrived after their check timed out: discarded */
    uint64_t script_loads; /* SCRIPT LOADs sent (one per connection, plus NOSCRIPT reloads) */
    uint64_t noscript;     /* NOSCRIPT replies recovered by reloading */
    uint64_t connects;     /* connections established */
    uint64_t disconnects;  /* connections lost or dropped */
    uint64_t refunds;      /* refunds sent (an sl_ratelimit rollback after a later rule refused) */
    uint64_t parked;       /* checks a task parked for (sl_ratelimit rules on task loops) */
} sl_redis_limiter_stats;

/* Called once per pending check, on the loop thread of the reactor it was made on. d is valid
 * during the call only. The callback may start new checks; it must not detach or free. */
typedef void (*sl_redis_check_fn)(void *arg, const sl_rate_decision *d);

/* Creates a limiter (no connection yet: each attached reactor opens its own). Returns 0 and
 * *out, or SL_EINVAL (cfg NULL, no tiers, bad default_tier, a limit <= 0 or NaN, a burst < 1,
 * a bad policy) or SL_ENOMEM; *out untouched on failure. The tiers are used by the direct
 * checks below; a Redis-backed sl_ratelimit rule sends its own. Threads: any. */
SL_API int sl_redis_limiter_new(const sl_redis_limiter_config *cfg, sl_redis_limiter **out);

/* Frees the limiter: stops and joins the private reactor thread (if a blocking check started
 * it), whose pending checks end with SL_ECANCELED first, and detaches the task loops that
 * sl_ratelimit's Redis rules attached it to (on each loop's thread while the runtime runs;
 * directly once it was shut down or freed: such a runtime's loop memory is kept until this
 * detach, so freeing a server with its private runtime first is safe). Every reactor the
 * application attached must have been detached. No policy may be deciding with it. NULL is ignored.
 * Threads: any thread but a loop's. Blocks until the detaches and the join. */
SL_API void sl_redis_limiter_free(sl_redis_limiter *rl);

/* Attaches the limiter to loop r: creates r's connection (connecting starts at once, in the
 * background). From a task, r = sl_loop_current() (task.h), attached on the task's loop
 * thread. Returns 0, SL_EEXIST (already attached), SL_EFULL (64 loops at most), SL_ENOMEM,
 * SL_EINVAL (NULL). Threads: r's loop thread, or any thread before r runs. Does not block. */
SL_API int sl_redis_limiter_attach(sl_redis_limiter *rl, sl_loop *r);

/* Detaches from r: drops its connection; pending checks end with SL_ECANCELED (their callbacks
 * run before this returns). Returns 0 or SL_ENOENT. Threads: r's loop thread (or any thread
 * once r stopped running). Never from inside a check callback. */
SL_API int sl_redis_limiter_detach(sl_redis_limiter *rl, sl_loop *r);

/* Checks n tokens of key (len bytes, 1..SL_KEYED_MAX_KEY) on reactor r's connection.
 * Returns:
 *   1   decided at once without waiting (not connected -> the policy; an infinite limit;
 *       n > burst; n < 0 is SL_EINVAL): *now filled, cb never called;
 *   0   in flight: cb(arg, d) runs exactly once on r's loop thread, with Redis's answer, or
 *       with the policy's answer and d->err = SL_ETIMEDOUT after timeout_ns (a late reply is
 *       then discarded), SL_EUNAVAIL if the connection drops, SL_EREDIS on an error reply,
 *       SL_ECANCELED on detach/free;
 *   SL_EINVAL (bad key, n < 0, r not attached), SL_ENOMEM: cb never called.
 * Threads: r's loop thread only. Never blocks. */
SL_API int sl_redis_limiter_check(sl_redis_limiter *rl, sl_loop *r, const void *key, size_t len,
                                  int64_t n, sl_redis_check_fn cb, void *arg,
                                  sl_rate_decision *now);

/* sl_redis_limiter_check with an explicit wall instant now_ns (ns since the Unix epoch) sent
 * to the script instead of the configured clock (0 = the configured clock). For tests that
 * replay a sequence at controlled instants, and for tools. */
SL_API int sl_redis_limiter_check_at(sl_redis_limiter *rl, sl_loop *r, const void *key, size_t len,
                                     int64_t n, int64_t now_ns, sl_redis_check_fn cb, void *arg,
                                     sl_rate_decision *now);

/* Blocking check for tests and tools: runs the check on the limiter's private reactor thread
 * (started on first use, joined by sl_redis_limiter_free) and waits for the decision. Returns
 * 0 with *out filled (possibly a policy answer: see out->err), or SL_EINVAL, SL_ENOMEM, or the
 * ctx's error if it fires first (the check's late answer is then dropped). now_ns as in
 * check_at (0 = configured clock). Threads: any but a reactor's loop. Blocks (parks). */
SL_API int sl_redis_limiter_check_wait(sl_redis_limiter *rl, const void *key, size_t len, int64_t n,
                                       int64_t now_ns, sl_ctx *ctx, sl_rate_decision *out);

/* True while r's connection is established (ready for checks). Threads: r's loop thread. */
SL_API bool sl_redis_limiter_connected(sl_redis_limiter *rl, sl_loop *r);

/* Fills *st. Threads: any. */
SL_API void sl_redis_limiter_stats_get(sl_redis_limiter *rl, sl_redis_limiter_stats *st);

SL_END_DECLS

#endif /* SLUICE_REDIS_LIMITER_H */
