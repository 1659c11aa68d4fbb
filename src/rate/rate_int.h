/* Private to src/rate: the token-bucket algorithm as pure functions on a state struct, shared
 * by sl_limiter (one bucket behind a lock) and sl_keyed (many buckets in a table), plus the
 * small spinlock both use.
 *
 * The functions reproduce golang.org/x/time/rate v0.3.0 step by step: the same float
 * operations in the same order, Go's zero time.Time modelled as SL__TIME_ZERO (before every
 * instant), and Go's saturating Time.Sub. None of them locks, reads a clock or allocates. */
#ifndef SLUICE_RATE_INT_H
#define SLUICE_RATE_INT_H

#include <stdatomic.h>
#include <sched.h>

#include "sluice/common.h"
#include "sluice/limiter.h"

/* Go's zero time.Time: "never happened", before every instant. */
#define SL__TIME_ZERO INT64_MIN

/* One bucket's mutable state. limit and burst live with the owner (the limiter, or the key's
 * tier), because sl_keyed keeps them per tier rather than per key. */
typedef struct sl__tb {
    double tokens;      /* may be negative: tokens lent to reservations still in the future */
    int64_t last;       /* ns; last time tokens was brought up to date */
    int64_t last_event; /* ns; latest time to act of any reservation (past or future) */
} sl__tb;

/* A fresh bucket: full, as a new Go Limiter is (its zero `last` makes advance fill it). */
static inline void sl__tb_init(sl__tb *s)
{
    s->tokens = 0;
    s->last = SL__TIME_ZERO;
    s->last_event = SL__TIME_ZERO;
}

/* Go's Time.Sub: a - b, saturated at the int64 range. */
static inline int64_t sl__sub_sat(int64_t a, int64_t b)
{
    int64_t d;
    if (__builtin_sub_overflow(a, b, &d)) return a < b ? INT64_MIN : INT64_MAX;
    return d;
}

/* Go's Time.Add for our int64 instants: t + d, saturated (Go falls back to wall time and
 * keeps going; saturation is the nearest an int64 instant can come). */
static inline int64_t sl__add_sat(int64_t t, int64_t d)
{
    int64_t r;
    if (__builtin_add_overflow(t, d, &r)) return d > 0 ? INT64_MAX : INT64_MIN;
    return r;
}

/* Limit.durationFromTokens and Limit.tokensFromDuration (see bucket.c). */
int64_t sl__dur_from_tokens(double limit, double tokens);
double sl__tokens_from_dur(double limit, int64_t d);

/* Limiter.advance: the tokens the bucket holds at t (time going backwards clamps elapsed to
 * 0). Does not change s. */
double sl__tb_advance(const sl__tb *s, double limit, int64_t burst, int64_t t);

/* Limiter.reserveN. *burst is read, and decremented in the limit == 0 case exactly as Go
 * does (that case spends the burst itself). Fills r (r->lim is left alone). */
void sl__tb_reserve(sl__tb *s, double limit, int64_t *burst, int64_t t, int64_t n,
                    int64_t max_future, sl_reservation *r);

/* Reservation.CancelAt, given the owner's current limit and burst. */
void sl__tb_cancel(sl__tb *s, double limit, int64_t burst, const sl_reservation *r, int64_t t);

/* Gives n tokens back to a bucket that granted them earlier without a wait, at t: the tokens
 * are brought up to date at max(t, last) (never moving last backwards) and n added, capped at
 * the burst. For a grant made before some wait (a Redis round trip), when a cancel at the
 * grant's instant would restore less by the tokens later reservations took meanwhile: the
 * bucket then holds what it would hold had the n tokens never been taken (the cap covers a
 * bucket that would have filled up meanwhile). Not for limit Inf or 0 (nothing to give). */
void sl__tb_refund(sl__tb *s, double limit, int64_t burst, int64_t n, int64_t t);

/* sl__tb_refund on a limiter, and on the bucket a keyed reservation came from. */
void sl__limiter_refund(const sl_reservation *r, int64_t t);
typedef struct sl_keyed sl_keyed;
typedef struct sl_keyed_reservation sl_keyed_reservation;
void sl__keyed_refund(sl_keyed *k, const void *key, size_t len, const sl_keyed_reservation *res,
                      int64_t t);

/* The state change of SetLimitAt/SetBurstAt before the new value is stored: tokens brought
 * up to date at t. */
static inline void sl__tb_settle(sl__tb *s, double limit, int64_t burst, int64_t t)
{
    s->tokens = sl__tb_advance(s, limit, burst, t);
    s->last = t;
}

/* A bucket as one decision saw it, read under the lock that made the decision. */
typedef struct sl__tb_view {
    double limit;
    int64_t burst; /* before a limit-0 spend */
    double tokens; /* after a grant, held when refused (limit 0 or Inf: the burst left) */
} sl__tb_view;

/* sl_limiter_reserve_n_max_at that also reports the bucket, under the same single lock (the
 * rate-limit policy needs both, and four lock round trips cost more than the token math). */
bool sl__limiter_reserve_report(sl_limiter *lim, int64_t n, int64_t t, int64_t max_wait,
                                sl_reservation *r, sl__tb_view *v);

/* True if key has an entry in k (for tests: eviction is otherwise invisible by design). */
typedef struct sl_keyed sl_keyed;
bool sl__keyed_has(sl_keyed *k, const void *key, size_t len);

/* ---- spinlock -----------------------------------------------------------------------------
 * A test-and-test-and-set lock. Critical sections here are a few dozen instructions, so an
 * uncontended lock is one exchange and one store; a waiter spins briefly, then yields the CPU
 * so that a preempted holder (2 cores, many threads) can run. */
typedef struct sl__spin {
    atomic_int v;
} sl__spin;

static inline void sl__cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

void sl__spin_lock_slow(sl__spin *l);

static inline void sl__spin_lock(sl__spin *l)
{
    if (!atomic_exchange_explicit(&l->v, 1, memory_order_acquire)) return;
    sl__spin_lock_slow(l);
}

static inline void sl__spin_unlock(sl__spin *l)
{
    atomic_store_explicit(&l->v, 0, memory_order_release);
}

/* clientip.c: true when sources names exactly one forwarding header (0 = X-Forwarded-For). */
bool sl__clientip_sources_ok(unsigned sources);

#endif /* SLUICE_RATE_INT_H */
