/* The in-memory decision behind a standalone Redis limiter's fail-local fallback:
 * an sl_keyed answer described as an sl_rate_decision. It needs no Redis, so it is built with or
 * without hiredis. */
#include <math.h>

#include "sluice/clock.h"
#include "sluice/error.h"
#include "sluice/redis_limiter.h"
#include "redis/redis_int.h"

int sl__rate_decide_keyed_at(sl_keyed *k, const void *key, size_t len, int64_t n,
                             const sl_keyed_tier *tier, int64_t now_ns, sl_rate_decision *d)
{
    *d = (sl_rate_decision){.source = SL_RATE_FROM_LOCAL, .limit = tier->burst};
    int rc = sl_keyed_allow_n_at(k, key, len, n, now_ns);
    if (rc < 0) {
        d->err = rc;
        d->retry_after_ns = SL_FOREVER;
        return rc;
    }
    d->allowed = rc == 1;
    if (tier->limit == SL_RATE_INF) {
        d->remaining = tier->burst;
        return 0;
    }
    double tok = sl_keyed_tokens_at(k, key, len, now_ns);
    d->remaining = tok > 0 ? (int64_t)floor(tok) : 0;
    if (tier->limit <= 0) {
        d->reset_ns = SL_FOREVER;
        d->retry_after_ns = d->allowed ? 0 : SL_FOREVER;
        return 0;
    }
    double full = ((double)tier->burst - tok) / tier->limit * 1e9;
    d->reset_ns = full > 0 ? (int64_t)ceil(full) : 0;
    if (!d->allowed) {
        double wait = ((double)n - tok) / tier->limit * 1e9;
        d->retry_after_ns = n > tier->burst ? SL_FOREVER : wait > 0 ? (int64_t)ceil(wait) : 0;
    }
    return 0;
}
