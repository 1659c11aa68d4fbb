/* sl_limiter: one token bucket (bucket.c's algorithm) behind a spinlock.
 *
 * The hot path is allow: read the clock, take the lock, advance, compare, store, unlock. A
 * pthread mutex costs two atomic read-modify-writes plus a function call each way; the
 * spinlock is one exchange and one release store, and the critical section is a few dozen
 * instructions, so waiters seldom spin long (after a short spin they yield). The limiter is
 * cache-line aligned so that it shares its line with nothing another thread writes.
 *
 * wait_n never holds the lock while parked. It reserves first (which decides the time to act
 * and takes the tokens), then parks on a child ctx whose deadline is the time to act: the ctx
 * timer machinery runs on sl_now_ns(), so tests drive waits with the test clock. If the
 * caller's ctx fires first, the reservation is cancelled at the current time, which gives the
 * tokens back for others as Go does. */
#include <math.h>
#include <stdlib.h>

#include "sluice/error.h"
#include "sluice/clock.h"
#include "sluice/ctx.h"
#include "rate/rate_int.h"

struct sl_limiter {
    sl__spin lock;
    double limit;  /* events/s; guarded by lock */
    int64_t burst; /* guarded by lock */
    sl__tb tb;     /* guarded by lock */
} __attribute__((aligned(64)));

double sl_rate_every(int64_t interval_ns)
{
    if (interval_ns <= 0) return SL_RATE_INF;
    int64_t sec = interval_ns / 1000000000LL;
    int64_t nsec = interval_ns % 1000000000LL;
    return 1 / ((double)sec + (double)nsec / 1e9);
}

int sl_limiter_new(double limit, int64_t burst, sl_limiter **out)
{
    if (!out || isnan(limit)) return SL_EINVAL;
    sl_limiter *lim = aligned_alloc(64, sizeof *lim);
    if (!lim) return SL_ENOMEM;
    atomic_init(&lim->lock.v, 0);
    lim->limit = limit;
    lim->burst = burst;
    sl__tb_init(&lim->tb);
    *out = lim;
    return 0;
}

void sl_limiter_free(sl_limiter *lim)
{
    free(lim);
}

double sl_limiter_limit(sl_limiter *lim)
{
    sl__spin_lock(&lim->lock);
    double l = lim->limit;
    sl__spin_unlock(&lim->lock);
    return l;
}

int64_t sl_limiter_burst(sl_limiter *lim)
{
    sl__spin_lock(&lim->lock);
    int64_t b = lim->burst;
    sl__spin_unlock(&lim->lock);
    return b;
}

double sl_limiter_tokens_at(sl_limiter *lim, int64_t now_ns)
{
    sl__spin_lock(&lim->lock);
    double t = sl__tb_advance(&lim->tb, lim->limit, lim->burst, now_ns);
    sl__spin_unlock(&lim->lock);
    return t;
}

double sl_limiter_tokens(sl_limiter *lim)
{
    return sl_limiter_tokens_at(lim, sl_now_ns());
}

bool sl_limiter_reserve_n_max_at(sl_limiter *lim, int64_t n, int64_t now_ns, int64_t max_wait_ns,
                                 sl_reservation *r)
{
    sl__spin_lock(&lim->lock);
    sl__tb_reserve(&lim->tb, lim->limit, &lim->burst, now_ns, n, max_wait_ns, r);
    sl__spin_unlock(&lim->lock);
    r->lim = lim;
    return r->ok;
}

bool sl__limiter_reserve_report(sl_limiter *lim, int64_t n, int64_t t, int64_t max_wait,
                                sl_reservation *r, sl__tb_view *v)
{
    sl__spin_lock(&lim->lock);
    v->limit = lim->limit;
    v->burst = lim->burst;
    sl__tb_reserve(&lim->tb, lim->limit, &lim->burst, t, n, max_wait, r);
    if (v->limit == 0 || v->limit == SL_RATE_INF)
        v->tokens = (double)lim->burst; /* limit 0: the burst left is what limits */
    else if (r->ok)
        v->tokens = lim->tb.tokens; /* brought up to date at t by the reservation */
    else
        v->tokens = sl__tb_advance(&lim->tb, lim->limit, lim->burst, t);
    sl__spin_unlock(&lim->lock);
    r->lim = lim;
    return r->ok;
}

bool sl_limiter_allow_n_at(sl_limiter *lim, int64_t n, int64_t now_ns)
{
    sl_reservation r;
    return sl_limiter_reserve_n_max_at(lim, n, now_ns, 0, &r);
}

/* The forms without _at read the clock while holding the lock. x/time/rate reads time.Now()
 * before taking its mutex; a caller delayed between the two then hands the bucket an instant
 * older than the one it last saw, rate.go moves `last` back to it, and the next caller is
 * credited that interval a second time. With two busy threads that lets more than
 * burst + rate x elapsed through. Reading under the lock keeps time in order for the bucket. */
static bool reserve_now(sl_limiter *lim, int64_t n, int64_t max_wait_ns, sl_reservation *r)
{
    sl__spin_lock(&lim->lock);
    sl__tb_reserve(&lim->tb, lim->limit, &lim->burst, sl_now_ns(), n, max_wait_ns, r);
    sl__spin_unlock(&lim->lock);
    r->lim = lim;
    return r->ok;
}

bool sl_limiter_allow_n(sl_limiter *lim, int64_t n)
{
    sl_reservation r;
    return reserve_now(lim, n, 0, &r);
}

bool sl_limiter_allow(sl_limiter *lim)
{
    sl_reservation r;
    return reserve_now(lim, 1, 0, &r);
}

bool sl_limiter_reserve_n_at(sl_limiter *lim, int64_t n, int64_t now_ns, sl_reservation *r)
{
    return sl_limiter_reserve_n_max_at(lim, n, now_ns, SL_FOREVER, r);
}

bool sl_limiter_reserve_n(sl_limiter *lim, int64_t n, sl_reservation *r)
{
    return reserve_now(lim, n, SL_FOREVER, r);
}

bool sl_limiter_reserve(sl_limiter *lim, sl_reservation *r)
{
    return reserve_now(lim, 1, SL_FOREVER, r);
}

int64_t sl_reservation_delay_from(const sl_reservation *r, int64_t now_ns)
{
    if (!r->ok) return SL_FOREVER;
    int64_t d = sl__sub_sat(r->time_to_act, now_ns);
    return d < 0 ? 0 : d;
}

int64_t sl_reservation_delay(const sl_reservation *r)
{
    return sl_reservation_delay_from(r, sl_now_ns());
}

void sl_reservation_cancel_at(const sl_reservation *r, int64_t now_ns)
{
    if (!r->ok || !r->lim) return;
    sl_limiter *lim = r->lim;
    sl__spin_lock(&lim->lock);
    sl__tb_cancel(&lim->tb, lim->limit, lim->burst, r, now_ns);
    sl__spin_unlock(&lim->lock);
}

void sl__limiter_refund(const sl_reservation *r, int64_t t)
{
    if (!r->ok || !r->lim) return;
    sl_limiter *lim = r->lim;
    sl__spin_lock(&lim->lock);
    sl__tb_refund(&lim->tb, lim->limit, lim->burst, r->tokens, t);
    sl__spin_unlock(&lim->lock);
}

void sl_reservation_cancel(const sl_reservation *r)
{
    sl_reservation_cancel_at(r, sl_now_ns());
}

/* Parks until sl_now_ns() reaches r's time to act or ctx is done. */
static int park(const sl_reservation *r, sl_ctx *ctx)
{
    sl_ctx *timer;
    int err = sl_ctx_with_deadline(ctx, r->time_to_act, &timer);
    if (err < 0) {
        sl_reservation_cancel(r);
        return err;
    }
    sl_ctx_wait(timer);
    sl_ctx_release(timer);
    /* Both may have fired together (a ctx deadline equal to the time to act); the time to
     * act having come wins, as Go's select may pick either. */
    int cerr = sl_ctx_err(ctx);
    if (cerr && sl_now_ns() < r->time_to_act) {
        sl_reservation_cancel(r);
        return cerr;
    }
    return 0;
}

int sl_limiter_wait_n_at(sl_limiter *lim, int64_t n, int64_t now_ns, sl_ctx *ctx)
{
    sl__spin_lock(&lim->lock);
    int64_t burst = lim->burst;
    double limit = lim->limit;
    sl__spin_unlock(&lim->lock);

    if (n > burst && limit != SL_RATE_INF) return SL_EEXCEEDS;
    int err = sl_ctx_err(ctx);
    if (err) return err;

    int64_t wait_limit = SL_FOREVER;
    int64_t deadline = sl_ctx_deadline(ctx);
    if (deadline != SL_FOREVER) wait_limit = sl__sub_sat(deadline, now_ns);

    sl_reservation r;
    if (!sl_limiter_reserve_n_max_at(lim, n, now_ns, wait_limit, &r)) return SL_ETIMEDOUT;
    if (sl_reservation_delay_from(&r, now_ns) == 0) return 0;
    return park(&r, ctx);
}

int sl_limiter_wait_n(sl_limiter *lim, int64_t n, sl_ctx *ctx)
{
    return sl_limiter_wait_n_at(lim, n, sl_now_ns(), ctx);
}

int sl_limiter_wait(sl_limiter *lim, sl_ctx *ctx)
{
    return sl_limiter_wait_n_at(lim, 1, sl_now_ns(), ctx);
}

void sl_limiter_set_limit_at(sl_limiter *lim, double limit, int64_t now_ns)
{
    if (isnan(limit)) return;
    sl__spin_lock(&lim->lock);
    sl__tb_settle(&lim->tb, lim->limit, lim->burst, now_ns);
    lim->limit = limit;
    sl__spin_unlock(&lim->lock);
}

void sl_limiter_set_limit(sl_limiter *lim, double limit)
{
    sl_limiter_set_limit_at(lim, limit, sl_now_ns());
}

void sl_limiter_set_burst_at(sl_limiter *lim, int64_t burst, int64_t now_ns)
{
    sl__spin_lock(&lim->lock);
    sl__tb_settle(&lim->tb, lim->limit, lim->burst, now_ns);
    lim->burst = burst;
    sl__spin_unlock(&lim->lock);
}

void sl_limiter_set_burst(sl_limiter *lim, int64_t burst)
{
    sl_limiter_set_burst_at(lim, burst, sl_now_ns());
}
