/* The token-bucket algorithm of golang.org/x/time/rate v0.3.0, as pure functions on a state
 * struct (rate_int.h), shared by sl_limiter and sl_keyed.
 *
 * Fidelity is the point: a delay that differs from Go's by one nanosecond is a bug. So the
 * conversions repeat Go's operations exactly. durationFromTokens divides tokens by the limit,
 * multiplies by 1e9 and truncates toward zero (Go's float64 -> int64 conversion).
 * tokensFromDuration uses Duration.Seconds(), which splits the duration into whole seconds and
 * leftover nanoseconds before converting (float64(sec) + float64(nsec)/1e9) and only then
 * multiplies by the limit (golang.org/issues/34861 is why). The build uses ISO C mode, where
 * GCC and clang do not contract a*b+c into an FMA, and Go does not fuse on amd64 either.
 *
 * Go's zero time.Time is SL__TIME_ZERO, and Time.Sub saturates, so a fresh bucket's first
 * advance sees an elapsed time of INT64_MAX ns (as Go sees maxDuration) and fills up.
 *
 * Invariants after every operation with a finite limit > 0: tokens <= burst, and tokens < 0
 * only while last_event is in the future of `last` (tokens lent to reservations). */
#include "rate/rate_int.h"

int64_t sl__dur_from_tokens(double limit, double tokens)
{
    if (limit <= 0) return SL_FOREVER;
    double seconds = tokens / limit;
    double ns = 1e9 * seconds;
    /* Go's conversion is undefined beyond the int64 range (amd64 gives MinInt64); C's too.
     * Saturating keeps "too long to wait" meaning "forever". 0x1p63 is the first double out of
     * range. NaN (only from a NaN limit, which sl_limiter refuses) maps to forever. */
    if (!(ns < 0x1p63)) return SL_FOREVER;
    if (ns < -0x1p63) return INT64_MIN;
    return (int64_t)ns;
}

double sl__tokens_from_dur(double limit, int64_t d)
{
    if (limit <= 0) return 0;
    int64_t sec = d / 1000000000LL;
    int64_t nsec = d % 1000000000LL;
    double seconds = (double)sec + (double)nsec / 1e9;
    return seconds * limit;
}

double sl__tb_advance(const sl__tb *s, double limit, int64_t burst, int64_t t)
{
    int64_t last = s->last;
    if (t < last) last = t;
    /* From the zero time every instant is centuries away: Go's Time.Sub saturates at the
     * largest Duration, so a new limiter is full even when asked about a negative instant
     * (whose plain difference from INT64_MIN would not overflow, and fall short). */
    int64_t elapsed =
        last == SL__TIME_ZERO && t != SL__TIME_ZERO ? INT64_MAX : sl__sub_sat(t, last);
    double tokens = s->tokens + sl__tokens_from_dur(limit, elapsed);
    double b = (double)burst;
    if (tokens > b) tokens = b;
    return tokens;
}

void sl__tb_reserve(sl__tb *s, double limit, int64_t *burst, int64_t t, int64_t n,
                    int64_t max_future, sl_reservation *r)
{
    if (limit == SL_RATE_INF) {
        r->ok = true;
        r->tokens = n;
        r->time_to_act = t;
        r->limit = 0;
        return;
    }
    if (limit == 0) {
        /* Go v0.3.0 spends the burst itself, and reports what is left as the tokens. */
        bool ok = *burst >= n;
        if (ok) *burst -= n;
        r->ok = ok;
        r->tokens = *burst;
        r->time_to_act = t;
        r->limit = 0;
        return;
    }

    double tokens = sl__tb_advance(s, limit, *burst, t) - (double)n;
    int64_t wait = 0;
    if (tokens < 0) wait = sl__dur_from_tokens(limit, -tokens);

    r->ok = n <= *burst && wait <= max_future;
    r->limit = limit;
    r->tokens = 0;
    r->time_to_act = SL__TIME_ZERO;
    if (r->ok) {
        r->tokens = n;
        r->time_to_act = sl__add_sat(t, wait);
        s->last = t;
        s->tokens = tokens;
        s->last_event = r->time_to_act;
    }
}

void sl__tb_cancel(sl__tb *s, double limit, int64_t burst, const sl_reservation *r, int64_t t)
{
    if (!r->ok) return;
    if (limit == SL_RATE_INF || r->tokens == 0 || r->time_to_act < t) return;

    /* Reservations made after r pushed last_event past r's time to act; the tokens they took
     * in that span stay taken. */
    double restore = (double)r->tokens -
                     sl__tokens_from_dur(r->limit, sl__sub_sat(s->last_event, r->time_to_act));
    if (restore <= 0) return;

    double tokens = sl__tb_advance(s, limit, burst, t) + restore;
    double b = (double)burst;
    if (tokens > b) tokens = b;
    s->last = t;
    s->tokens = tokens;
    if (r->time_to_act == s->last_event) {
        /* r was the latest reservation: the latest event is now the one before it, unless
         * that is already in the past. */
        int64_t prev =
            sl__add_sat(r->time_to_act, sl__dur_from_tokens(r->limit, -(double)r->tokens));
        if (!(prev < t)) s->last_event = prev;
    }
}

void sl__tb_refund(sl__tb *s, double limit, int64_t burst, int64_t n, int64_t t)
{
    if (limit == SL_RATE_INF || limit == 0 || n <= 0) return;
    if (t < s->last) t = s->last;
    double tokens = sl__tb_advance(s, limit, burst, t) + (double)n;
    if (tokens > (double)burst) tokens = (double)burst;
    s->tokens = tokens;
    s->last = t;
}

void sl__spin_lock_slow(sl__spin *l)
{
    for (unsigned spins = 0;; spins++) {
        if (!atomic_load_explicit(&l->v, memory_order_relaxed) &&
            !atomic_exchange_explicit(&l->v, 1, memory_order_acquire))
            return;
        if (spins < 64)
            sl__cpu_relax();
        else
            sched_yield(); /* the holder may be preempted: let it run */
    }
}
