/* The Redis API when sluice is built without hiredis: every call links and answers
 * SL_ENOTSUP (constructors leave *out untouched), so an application written for both builds
 * compiles, links and can fall back to the in-memory backends at run time instead of failing
 * to link. With hiredis, limiter.c and jobs.c define the real functions and this file is
 * empty. */
#ifndef SLUICE_HAVE_HIREDIS

#include <string.h>

#include "sluice/error.h"
#include "sluice/redis_jobs.h"
#include "sluice/redis_limiter.h"
#include "base/base_int.h"
#include "redis/redis_int.h"

static int unbuilt(const char *fn)
{
    return sl__fail(SL_ENOTSUP,
                    "%s: sluice was built without hiredis (install libhiredis-dev "
                    "and rebuild for the Redis backends)",
                    fn);
}

int sl_redis_limiter_new(const sl_redis_limiter_config *cfg, sl_redis_limiter **out)
{
    (void)cfg, (void)out;
    return unbuilt(__func__);
}

void sl_redis_limiter_free(sl_redis_limiter *rl)
{
    (void)rl;
}

int sl_redis_limiter_attach(sl_redis_limiter *rl, sl_loop *r)
{
    (void)rl, (void)r;
    return unbuilt(__func__);
}

int sl_redis_limiter_detach(sl_redis_limiter *rl, sl_loop *r)
{
    (void)rl, (void)r;
    return unbuilt(__func__);
}

int sl_redis_limiter_check(sl_redis_limiter *rl, sl_loop *r, const void *key, size_t len, int64_t n,
                           sl_redis_check_fn cb, void *arg, sl_rate_decision *now)
{
    (void)rl, (void)r, (void)key, (void)len, (void)n, (void)cb, (void)arg, (void)now;
    return unbuilt(__func__);
}

int sl_redis_limiter_check_at(sl_redis_limiter *rl, sl_loop *r, const void *key, size_t len,
                              int64_t n, int64_t now_ns, sl_redis_check_fn cb, void *arg,
                              sl_rate_decision *now)
{
    (void)rl, (void)r, (void)key, (void)len, (void)n, (void)now_ns, (void)cb, (void)arg;
    (void)now;
    return unbuilt(__func__);
}

int sl_redis_limiter_check_wait(sl_redis_limiter *rl, const void *key, size_t len, int64_t n,
                                int64_t now_ns, sl_ctx *ctx, sl_rate_decision *out)
{
    (void)rl, (void)key, (void)len, (void)n, (void)now_ns, (void)ctx, (void)out;
    return unbuilt(__func__);
}

/* Never reached: a policy cannot hold a limiter sl_redis_limiter_new refused to create. */
int sl__redis_take(sl_redis_limiter *rl, const void *key, size_t len, int64_t n,
                   const sl_keyed_tier *tier, sl_ctx *ctx, sl_rate_decision *d)
{
    (void)rl, (void)key, (void)len, (void)n, (void)tier, (void)ctx, (void)d;
    return SL_ENOTSUP;
}

int sl__redis_refund(sl_redis_limiter *rl, const void *key, size_t len, int64_t n,
                     const sl_keyed_tier *tier)
{
    (void)rl, (void)key, (void)len, (void)n, (void)tier;
    return SL_ENOTSUP;
}

sl_redis_fail_policy sl__redis_policy(const sl_redis_limiter *rl)
{
    (void)rl;
    return SL_REDIS_FAIL_CLOSED;
}

bool sl_redis_limiter_connected(sl_redis_limiter *rl, sl_loop *r)
{
    (void)rl, (void)r;
    return false;
}

void sl_redis_limiter_stats_get(sl_redis_limiter *rl, sl_redis_limiter_stats *st)
{
    (void)rl;
    memset(st, 0, sizeof *st);
}

int sl_redis_jobs_new(const sl_redis_jobs_config *cfg, sl_ctx *ctx, sl_redis_jobs **out)
{
    (void)cfg, (void)ctx, (void)out;
    return unbuilt(__func__);
}

void sl_redis_jobs_free(sl_redis_jobs *q)
{
    (void)q;
}

int sl_redis_jobs_submit(sl_redis_jobs *q, const char *id, const void *arg, sl_ctx *ctx)
{
    (void)q, (void)id, (void)arg, (void)ctx;
    return unbuilt(__func__);
}

int sl_redis_jobs_fetch(sl_redis_jobs *q, sl_ctx *ctx, sl_redis_job **out)
{
    (void)q, (void)ctx, (void)out;
    return unbuilt(__func__);
}

int sl_redis_jobs_ack(sl_redis_jobs *q, const sl_redis_job *job, sl_ctx *ctx)
{
    (void)q, (void)job, (void)ctx;
    return unbuilt(__func__);
}

int sl_redis_jobs_fail(sl_redis_jobs *q, const sl_redis_job *job, int rc, sl_ctx *ctx)
{
    (void)q, (void)job, (void)rc, (void)ctx;
    return unbuilt(__func__);
}

void sl_redis_job_free(sl_redis_jobs *q, sl_redis_job *job)
{
    (void)q, (void)job;
}

int sl_redis_jobs_work(sl_redis_jobs *q, sl_redis_job_fn fn, void *arg, sl_ctx *ctx)
{
    (void)q, (void)fn, (void)arg, (void)ctx;
    return unbuilt(__func__);
}

int sl_redis_jobs_spill(sl_redis_jobs *q, const sl_pool_job *job, sl_ctx *ctx)
{
    (void)q, (void)job, (void)ctx;
    return unbuilt(__func__);
}

void sl_redis_jobs_stats_get(const sl_redis_jobs *q, sl_redis_jobs_stats *st)
{
    (void)q;
    memset(st, 0, sizeof *st);
}

#else
typedef int sl__redis_stubs_unbuilt; /* ISO C: no empty translation unit */
#endif /* SLUICE_HAVE_HIREDIS */
