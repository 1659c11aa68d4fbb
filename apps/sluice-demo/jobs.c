/* Background jobs: welcome e-mails (POST /users) and webhook deliveries (POST /webhooks) on one
 * sl_pool, separate from the handler pool so that jobs can never starve requests. A webhook
 * is really delivered (webhook.c: an sl_client POST per attempt, retried by this pool's policy:
 * exponential backoff with full jitter, 3 attempts, then on_dead).
 *
 * An e-mail's work is simulated by waiting on its own ctx for the configured time
 * (sl_ctx_wait_for): a real send would pass the same ctx to its network calls. So a job stops
 * as soon as its attempt times out or the pool's shutdown deadline passes, and the pool then
 * hands it back to on_abandoned instead of losing it. Every accepted job ends in exactly one
 * hook; the hooks count outcomes for the shutdown summary and log each job that was handed
 * back, so nothing disappears silently. Arguments are copied at submit time (the request's
 * buffers end with its response). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "demo.h"

typedef struct job_arg {
    demo_app *app;
    int64_t work_ns;
    char what[300]; /* e-mail address, or the webhook's first bytes (for the log) */
} job_arg;

/* Waits work_ns unless ctx fires first: sl_ctx_wait_for returns SL_EAGAIN when the time passed
 * with ctx still live, which is this job's success. */
static int simulated_work(sl_ctx *ctx, void *arg)
{
    job_arg *a = arg;
    int rc = a->work_ns > 0 ? sl_ctx_wait_for(ctx, a->work_ns) : SL_EAGAIN;
    if (rc == SL_EAGAIN) return 0;
    return rc; /* the ctx's error: retryable (the pool abandons it at shutdown) */
}

static void on_done(void *hook_arg, const sl_pool_job *job, int rc, int attempts)
{
    demo_app *app = hook_arg;
    if (demo_webhooks_owns(job)) demo_webhooks_ended(app, job, rc);
    if (rc == 0) {
        atomic_fetch_add(&app->jobs_done, 1);
        sl_log_debug(app->log, "job done", SL_A_STR("job_id", job->id),
                     SL_A_INT("attempts", attempts));
    } else {
        atomic_fetch_add(&app->jobs_failed, 1);
        sl_log_warn(app->log, "job failed", SL_A_STR("job_id", job->id), SL_A_ERR("err", rc));
    }
}

static void on_dead(void *hook_arg, const sl_pool_job *job, int last_rc)
{
    demo_app *app = hook_arg;
    atomic_fetch_add(&app->jobs_dead, 1);
    if (demo_webhooks_owns(job)) demo_webhooks_ended(app, job, last_rc);
    sl_log_error(app->log, "job dead after retries", SL_A_STR("job_id", job->id),
                 SL_A_ERR("err", last_rc));
}

/* The hook owns job->arg here. A real service would persist the job (a table, a Redis stream)
 * for the next instance; the demo reports it — by id and payload — and frees it. */
static void on_abandoned(void *hook_arg, const sl_pool_job *job)
{
    demo_app *app = hook_arg;
    job_arg *a = job->arg;
    atomic_fetch_add(&app->jobs_abandoned, 1);
    const char *what = demo_webhooks_owns(job) ? demo_webhooks_what(job) : a ? a->what : "";
    sl_log_warn(app->log, "job handed back at shutdown", SL_A_STR("job_id", job->id),
                SL_A_STR("payload", what));
    free(a); /* a job_arg or a webhook's (webhook.c): one malloc'd block either way */
}

int demo_jobs_init(demo_app *app)
{
    if (app->cfg.redis) return demo_rjobs_init(app);
    sl_pool_opts o = {
        .name = "jobs",
        .workers = app->cfg.job_workers,
        .queue_capacity = (size_t)app->cfg.queue,
        .job_timeout_ns = SL_SEC(30),
        .retry = {.max_attempts = 3, .base_delay_ns = SL_MS(100), .full_jitter = true},
        .logger = app->log,
        .on_done = on_done,
        .on_dead = on_dead,
        .on_abandoned = on_abandoned,
        .hook_arg = app,
    };
    return sl_pool_new(&o, &app->jobs);
}

int demo_jobs_welcome(demo_app *app, const demo_user *u, sl_ctx *ctx)
{
    if (app->rjobs) return demo_rjobs_welcome(app, u, ctx);
    job_arg *a = calloc(1, sizeof *a);
    if (!a) return SL_ENOMEM;
    a->app = app;
    a->work_ns = app->cfg.email_ns;
    snprintf(a->what, sizeof a->what, "%s", u->email);
    char id[SL_POOL_ID_MAX + 1];
    snprintf(id, sizeof id, "welcome-email-%lld", (long long)u->id);
    sl_pool_job j = {.id = id, .fn = simulated_work, .arg = a, .arg_free = free};
    int rc = sl_pool_submit(app->jobs, &j, ctx);
    if (rc < 0) free(a); /* not accepted: still ours */
    return rc;
}

int demo_jobs_webhook(demo_app *app, const void *body, size_t len, sl_ctx *ctx,
                      char job_id[SL_POOL_ID_MAX + 1])
{
    if (app->rjobs) return demo_rjobs_webhook(app, body, len, ctx, job_id);
    (void)ctx;
    static _Atomic uint64_t seq;
    snprintf(job_id, SL_POOL_ID_MAX + 1, "webhook-%llu",
             (unsigned long long)atomic_fetch_add(&seq, 1) + 1);
    return demo_webhooks_submit(app, body, len, job_id); /* a real delivery: webhook.c */
}

int demo_jobs_shutdown(demo_app *app, sl_ctx *hurry, sl_pool_report *r)
{
    if (app->rjobs) return demo_rjobs_shutdown(app, r);
    sl_ctx *dl = NULL;
    int rc = sl_ctx_with_timeout(hurry, app->cfg.jobs_drain_ns, &dl);
    if (rc < 0) return rc;
    rc = sl_pool_shutdown(app->jobs, dl, r);
    sl_ctx_release(dl);
    return rc;
}

void demo_jobs_free(demo_app *app)
{
    demo_rjobs_free(app);
    sl_pool_free(app->jobs);
    app->jobs = NULL;
}
