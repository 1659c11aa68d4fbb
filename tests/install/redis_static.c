/* Built by `make install-check` fully static (-static) with `pkg-config --static --libs
 * sluice`: the Redis limiter pulls hiredis in, which links only because sluice.pc lists it in
 * Requires.private. It checks against a closed loopback port, fail-closed, so the hiredis code
 * runs: the answer must be a refusal from the policy, within the check's timeout. Twice: the
 * blocking check from this thread, and the async check from a task on its own loop
 * (sl_loop_current), with nothing but the installed public headers. */
#include <stdio.h>
#include <stdlib.h>
#include <sluice/sluice.h>

typedef struct from_task {
    sl_redis_limiter *rl;
    sl_wg answered, done;
    sl_rate_decision d;
    int rc;
} from_task;

static void on_decision(void *arg, const sl_rate_decision *d)
{
    from_task *f = arg;
    f->d = *d;
    sl_wg_done(&f->answered); /* on the loop thread: never blocks */
}

static void task(void *arg)
{
    from_task *f = arg;
    sl_loop *loop = sl_loop_current();
    f->rc = sl_redis_limiter_attach(f->rl, loop);
    if (f->rc == 0) {
        f->rc = sl_redis_limiter_check(f->rl, loop, "ip", 2, 1, on_decision, f, &f->d);
        if (f->rc == 1) sl_wg_done(&f->answered); /* answered at once */
        if (f->rc >= 0) f->rc = sl_wg_wait(&f->answered, NULL);
        sl_redis_limiter_detach(f->rl, sl_loop_current()); /* one loop: the same */
    }
    sl_wg_done(&f->done);
}

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
    printf("rc=%d allowed=%d source=%d\n", rc, (int)d.allowed, (int)d.source);
    int ok = rc == 0 && !d.allowed && d.source == SL_RATE_FAIL_CLOSED;

    sl_runtime *rt;
    from_task f = {.rl = rl};
    if (sl_runtime_new(&(sl_runtime_opts){.loops = 1}, &rt) != 0) return 2;
    sl_wg_init(&f.answered);
    sl_wg_init(&f.done);
    sl_wg_add(&f.answered, 1);
    sl_wg_add(&f.done, 1);
    if (sl_go_with(&(sl_go_opts){.rt = rt}, task, &f) != 0) return 2;
    rc = sl_wg_wait(&f.done, ctx);
    printf("task: rc=%d %d allowed=%d source=%d\n", rc, f.rc, (int)f.d.allowed, (int)f.d.source);
    ok = ok && rc == 0 && f.rc == 0 && !f.d.allowed && f.d.source == SL_RATE_FAIL_CLOSED;
    sl_runtime_free(rt);
    sl_wg_destroy(&f.answered);
    sl_wg_destroy(&f.done);
    sl_ctx_release(ctx);
    sl_redis_limiter_free(rl);
    return ok ? 0 : 1;
}
