/* The README's tour example, built in CI so the README cannot rot. Kept byte-identical to the
 * README (hence no clang-format here). */
/* clang-format off */
#include <sluice/sluice.h>

static int send_welcome(sl_ctx *ctx, void *arg)       /* runs on a pool worker */
{
    const char *email = arg;
    if (sl_ctx_err(ctx)) return sl_ctx_err(ctx);       /* timed out or shutting down */
    sl_log_info(NULL, "welcome sent", SL_A_STR("to", email));
    return 0;                                          /* < 0 retries, SL_EPERMANENT doesn't */
}

int main(void)
{
    sl_pool *jobs;
    sl_pool_opts po = {.name = "email", .workers = 4, .queue_capacity = 1024,
                       .job_timeout_ns = SL_SEC(10)};
    if (sl_pool_new(&po, &jobs) != 0) return 1;

    static char email[] = "ada@example.com";
    sl_limiter *lim;
    sl_limiter_new(100.0, 20, &lim);                   /* 100 events/s, bursts of 20 */
    if (sl_limiter_allow(lim)) {
        sl_pool_job j = {.id = "welcome-42", .fn = send_welcome, .arg = email};
        if (sl_pool_try_submit(jobs, &j) == SL_EFULL) { /* answer 503 + Retry-After */ }
    }

    sl_ctx *grace;
    sl_ctx_with_timeout(NULL, SL_SEC(5), &grace);      /* drain for at most 5 s */
    sl_pool_report rep;
    sl_pool_shutdown(jobs, grace, &rep);               /* queued jobs run or are handed back */
    sl_ctx_release(grace);
    sl_pool_free(jobs);
    sl_limiter_free(lim);
    return 0;
}
