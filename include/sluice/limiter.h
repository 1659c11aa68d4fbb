/* sl_limiter: a token-bucket rate limiter with golang.org/x/time/rate v0.3.0's behaviour.
 *
 * A limiter is a bucket of `burst` tokens, full at creation, refilled at `limit` tokens per
 * second. An event of n tokens is allowed (allow_n), reserved for a future instant
 * (reserve_n) or waited for (wait_n). Reservations borrow from the future: tokens may go
 * negative, and the reservation says when its holder may act. The special limit SL_RATE_INF
 * allows everything, even with burst 0; a limit of 0 allows `burst` events in total, each
 * spending the burst itself (Go v0.3.0 does exactly this).
 *
 * Time: every operation has an `_at` form that takes the current instant in ns on the
 * monotonic clock of sl_now_ns(); the plain forms read sl_now_ns(). Time may go backwards
 * between calls: as in Go, the bucket then gains nothing and its state moves to the earlier
 * instant.
 *
 * Numbers: time conversions repeat Go's float64 operations in Go's order, so tokens, delays
 * and times to act are bit-for-bit Go's (durations are int64 ns, as time.Duration). Tokens are
 * doubles: after n refill steps they carry the usual relative rounding error of about
 * n * 2^-53, the same error Go carries. One deliberate difference: where Go converts a float
 * duration beyond the int64 range (a tiny limit with a large deficit), Go on amd64 gets
 * math.MinInt64, a negative delay; sluice saturates at SL_FOREVER.
 *
 * Threads: any. Every function may be called from any thread; each takes the limiter's
 * spinlock for a few dozen instructions. Only wait/wait_n block. */
#ifndef SLUICE_LIMITER_H
#define SLUICE_LIMITER_H

#include <float.h>

#include "sluice/common.h"
#include "sluice/ctx.h"

SL_BEGIN_DECLS

typedef struct sl_limiter sl_limiter;

/* The infinite rate (Go's rate.Inf): allows every event, ignores the burst. */
#define SL_RATE_INF DBL_MAX

/* Returns the limit (events/s) of one event every interval_ns: 1 / seconds(interval), or
 * SL_RATE_INF when interval_ns <= 0 (Go's rate.Every). */
SL_API double sl_rate_every(int64_t interval_ns);

/* A reservation of tokens, filled by sl_limiter_reserve*. Caller storage: it needs no
 * destroy, and may be copied. The fields are readable; do not change them. Valid while its
 * limiter lives. */
typedef struct sl_reservation {
    bool ok;             /* granted; when false the other fields mean nothing */
    int64_t tokens;      /* tokens reserved (Go's quirk: the burst left, for limit 0) */
    int64_t time_to_act; /* ns instant from which the holder may act */
    double limit;        /* the limit when reserved (0 for the Inf and limit-0 paths) */
    sl_limiter *lim;     /* private: the limiter, for cancel */
} sl_reservation;

/* Creates a limiter of limit events/s (SL_RATE_INF allowed; 0 allows no refill) and burst
 * tokens, full. Returns 0 and sets *out, or SL_EINVAL (NaN limit, out NULL) or SL_ENOMEM,
 * leaving *out untouched. Free with sl_limiter_free. Threads: any. Does not block. */
SL_API int sl_limiter_new(double limit, int64_t burst, sl_limiter **out);

/* Frees the limiter; NULL is ignored. No thread may be using it, and every reservation on it
 * becomes invalid (cancelling one after this is a use-after-free). */
SL_API void sl_limiter_free(sl_limiter *lim);

/* The current limit (events/s) and burst. Threads: any. Do not block. */
SL_API double sl_limiter_limit(sl_limiter *lim);
SL_API int64_t sl_limiter_burst(sl_limiter *lim);

/* The tokens available at now_ns (may be negative while reservations are pending). Changes
 * nothing. Threads: any. Does not block. */
SL_API double sl_limiter_tokens_at(sl_limiter *lim, int64_t now_ns);
SL_API double sl_limiter_tokens(sl_limiter *lim);

/* Takes n tokens at now_ns if they are there (Go's AllowN): returns true and takes them, or
 * false and changes nothing. n > burst is always false unless the limit is SL_RATE_INF.
 * Threads: any. Does not block. */
SL_API bool sl_limiter_allow_n_at(sl_limiter *lim, int64_t n, int64_t now_ns);
/* The same at sl_now_ns(). The forms without _at (allow, allow_n, reserve, reserve_n) read the
 * clock while holding the limiter's lock, so concurrent callers never hand the bucket an
 * instant older than one it has seen: over any interval at most burst + limit x elapsed
 * events pass. (x/time/rate reads the time before taking its lock, and a caller delayed
 * between the two can make it credit an interval twice.) */
SL_API bool sl_limiter_allow_n(sl_limiter *lim, int64_t n);
SL_API bool sl_limiter_allow(sl_limiter *lim);

/* Reserves n tokens at now_ns, to be used at r->time_to_act (Go's ReserveN): always granted
 * (the bucket goes into debt) unless n > burst with a finite limit, or with limit 0 the burst
 * left is < n. Fills *r and returns r->ok; a refused reservation changes nothing.
 * Threads: any. Does not block. */
SL_API bool sl_limiter_reserve_n_at(sl_limiter *lim, int64_t n, int64_t now_ns, sl_reservation *r);
SL_API bool sl_limiter_reserve_n(sl_limiter *lim, int64_t n, sl_reservation *r);
SL_API bool sl_limiter_reserve(sl_limiter *lim, sl_reservation *r);

/* Like sl_limiter_reserve_n_at, but refused (and nothing changed) when the holder would have
 * to wait longer than max_wait_ns (Go's internal reserveN with maxFutureReserve; allow_n is
 * max_wait_ns = 0, wait_n is the ctx's deadline). Threads: any. Does not block. */
SL_API bool sl_limiter_reserve_n_max_at(sl_limiter *lim, int64_t n, int64_t now_ns,
                                        int64_t max_wait_ns, sl_reservation *r);

/* How long the holder of r must wait from now_ns before acting: 0 means act now; SL_FOREVER
 * when r is not ok (Go's InfDuration). Reads only r. Threads: any. */
SL_API int64_t sl_reservation_delay_from(const sl_reservation *r, int64_t now_ns);
SL_API int64_t sl_reservation_delay(const sl_reservation *r);

/* Gives back r's tokens at now_ns, as far as later reservations allow (Go's CancelAt): nothing
 * happens if r is not ok, its time to act is before now_ns, the limiter's limit is now
 * SL_RATE_INF, or reservations made after r already used the tokens. Cancelling twice
 * restores twice, as in Go: cancel once. Threads: any. Does not block. */
SL_API void sl_reservation_cancel_at(const sl_reservation *r, int64_t now_ns);
SL_API void sl_reservation_cancel(const sl_reservation *r);

/* Waits until n tokens can be used (Go's WaitN), treating now_ns as the current time for the
 * reservation. Returns:
 *   0              the tokens are taken and the time to act has come (sl_now_ns() reached it);
 *   SL_EEXCEEDS    at once, n > burst and the limit is finite; nothing taken;
 *   the ctx error  at once if ctx is already done; nothing taken;
 *   SL_ETIMEDOUT   at once if the wait would end after the ctx's deadline; nothing taken;
 *   the ctx error  (SL_ECANCELED, SL_ETIMEDOUT, or a cause) if ctx is done during the wait:
 *                  the reservation is cancelled (as Go does) and the tokens given back;
 *   SL_ENOMEM      the wait could not be set up; the reservation is cancelled.
 * ctx NULL = background. Blocks (parks the thread, no CPU) until the time to act, measured on
 * sl_now_ns() so the test clock drives it. Threads: any. */
SL_API int sl_limiter_wait_n_at(sl_limiter *lim, int64_t n, int64_t now_ns, sl_ctx *ctx);
SL_API int sl_limiter_wait_n(sl_limiter *lim, int64_t n, sl_ctx *ctx);
SL_API int sl_limiter_wait(sl_limiter *lim, sl_ctx *ctx);

/* Changes the limit at now_ns (Go's SetLimitAt): tokens are brought up to date at the old
 * limit first. Reservations already made keep their time to act. A NaN limit is ignored.
 * Threads: any. Does not block. */
SL_API void sl_limiter_set_limit_at(sl_limiter *lim, double limit, int64_t now_ns);
SL_API void sl_limiter_set_limit(sl_limiter *lim, double limit);

/* Changes the burst at now_ns (Go's SetBurstAt), bringing tokens up to date first (capped at
 * the old burst). Threads: any. Does not block. */
SL_API void sl_limiter_set_burst_at(sl_limiter *lim, int64_t burst, int64_t now_ns);
SL_API void sl_limiter_set_burst(sl_limiter *lim, int64_t burst);

SL_END_DECLS

#endif /* SLUICE_LIMITER_H */
