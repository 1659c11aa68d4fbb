/* Built by `make install-check` fully static (-static) with `pkg-config --static --libs
 * sluice`: the Redis limiter pulls hiredis in, which links only because sluice.pc lists it in
 * Requires.private. It checks against a closed loopback port, fail-closed, so the hiredis code
 * runs: the answer must be a refusal from the policy, within the check's timeout. */
#include <stdio.h>
#include <stdlib.h>
#include <sluice/sluice.h>

int main(int argc, char **argv)
{
    int port = argc > 1 ? atoi(argv[1]) : 1;
    sl_keyed_tier tier = {.limit = 10, .burst = 10};
    sl_redis_limiter_config cfg = {.port = port,
                                   .tiers = &tier,
                                   .ntiers = 1,
                                   .policy = SL_REDIS_FAIL_CLOSED,
                                   .timeout_ns = SL_MS(200),
                                   .connect_timeout_ns = SL_MS(200)};
    sl_redis_limiter *rl;
    if (sl_redis_limiter_new(&cfg, &rl) != 0) return 2;
    sl_rate_decision d;
    sl_ctx *ctx;
    sl_ctx_with_timeout(NULL, SL_SEC(5), &ctx);
    int rc = sl_redis_limiter_check_wait(rl, "ip", 2, 1, 0, ctx, &d);
    sl_ctx_release(ctx);
    sl_redis_limiter_free(rl);
    printf("rc=%d allowed=%d source=%d\n", rc, (int)d.allowed, (int)d.source);
    return rc == 0 && !d.allowed && d.source == SL_RATE_FAIL_CLOSED ? 0 : 1;
}
