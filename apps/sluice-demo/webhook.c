/* Webhook delivery: each accepted POST /webhooks job POSTs its payload to the operator's target
 * with sl_client, on the job pool (jobs.c), and the pool's retry machinery does the rest.
 *
 * The target comes from configuration only (--webhook-url; by default this demo's own
 * POST /webhooks/receiver, resolved once the listen port is known): nothing in a request picks
 * where the demo connects, so the route cannot be turned into a server-side request forgery.
 *
 * One attempt is one sl_client_do under the job's ctx, which carries the per-attempt deadline
 * (--webhook-timeout-ms, the job's timeout_ns) and is cancelled when the pool's shutdown
 * deadline passes. The answer decides the outcome the way sl_pool_job_fn asks:
 *   2xx                          delivered (0)
 *   5xx, 408, 429, timeouts,     retryable (SL_EUNAVAIL or the client's error): the pool
 *   connection errors            waits an exponential backoff with full jitter and tries again,
 *                                and hands the job to on_dead after the last attempt
 *   other 3xx/4xx, a bad URL     permanent (SL_EPERMANENT): retrying cannot help
 * The response body is discarded as it streams (the receiver's answer is not kept). Counters
 * (delivered, retried, failed, dead, received) are atomics exposed in /metrics. A retry is
 * counted when it starts, so a job abandoned at shutdown while waiting for one is not.
 * Each request carries X-Sluice-Webhook-Id (the job id: receivers deduplicate on it, since a
 * delivery whose answer was lost is sent again) and X-Sluice-Attempt. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "demo.h"
#include "routes.h"
#include "sluice/client.h"
#include "sluice/metrics.h"

struct demo_webhooks {
    sl_client *client;
    char *url;     /* the target; set before ready is cancelled, read-only afterwards */
    sl_ctx *ready; /* cancelled once url is set (--redis workers may start before that) */
    _Atomic uint64_t delivered, retried, failed, dead, received;
};

typedef struct wh_job {
    demo_app *app;
    int attempts; /* attempts started; one attempt runs at a time */
    char id[SL_POOL_ID_MAX + 1];
    size_t len;    /* payload bytes */
    char what[80]; /* the payload's first bytes, one line, for the logs */
    char payload[];
} wh_job;

int demo_webhooks_init(demo_app *app)
{
    demo_webhooks *w = calloc(1, sizeof *w);
    if (!w) return SL_ENOMEM;
    app->webhooks = w;
    int rc = sl_ctx_with_cancel(NULL, &w->ready);
    if (rc < 0) return rc;
    if (app->cfg.webhook_url) {
        if (!(w->url = strdup(app->cfg.webhook_url))) return SL_ENOMEM;
        sl_ctx_cancel(w->ready);
    }
    sl_client_opts o = {
        .max_conns_per_host = app->cfg.job_workers, /* one per worker: each waits for its own */
        .connect_timeout_ns = SL_SEC(5),
        .user_agent = "sluice-demo-webhooks",
    };
    /* The client's loop thread takes no signals, as the server's reactors take none: SIGINT
     * and SIGTERM are main's sl_signal_ctx's business. The thread inherits this mask. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    rc = sl_client_new(&o, &w->client);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc;
}

int demo_webhooks_start(demo_app *app, int port)
{
    demo_webhooks *w = app->webhooks;
    if (w->url) return 0;
    /* This demo's own receiver, on a loopback or the listen address itself. */
    const char *a = app->cfg.addr;
    const char *host = !strcmp(a, "0.0.0.0") ? "127.0.0.1" : !strcmp(a, "::") ? "::1" : a;
    bool v6 = strchr(host, ':') != NULL;
    char buf[300];
    snprintf(buf, sizeof buf, "http://%s%s%s:%d/webhooks/receiver", v6 ? "[" : "", host,
             v6 ? "]" : "", port);
    w->url = strdup(buf);
    if (!w->url) return SL_ENOMEM;
    sl_ctx_cancel(w->ready);
    return 0;
}

const char *demo_webhooks_url(const demo_app *app)
{
    return app->webhooks && app->webhooks->url ? app->webhooks->url : "";
}

static void cancel_child(void *arg, int err)
{
    (void)err;
    sl_ctx_cancel(arg);
}

/* Waits until the target is known (the listen port, without --webhook-url) or ctx fires.
 * Only --redis workers, started before the server listens, ever wait here. */
static int wait_ready(demo_webhooks *w, sl_ctx *ctx)
{
    if (sl_ctx_done(w->ready)) return 0;
    sl_ctx *both = NULL;
    sl_ctx_hook *hook = NULL;
    int rc = sl_ctx_with_cancel(ctx, &both);
    if (rc == 0) rc = sl_ctx_on_done(w->ready, cancel_child, both, &hook);
    if (rc >= 0) sl_ctx_wait(both);
    sl_ctx_hook_stop(hook);
    sl_ctx_release(both);
    if (rc < 0) return rc;
    return sl_ctx_done(w->ready) ? 0 : sl_ctx_err(ctx);
}

static int discard(const void *data, size_t len, void *arg)
{
    (void)data, (void)len, (void)arg;
    return 0;
}

int demo_webhooks_deliver(demo_app *app, sl_ctx *ctx, const char *id, int attempt, const void *body,
                          size_t len)
{
    demo_webhooks *w = app->webhooks;
    int rc = wait_ready(w, ctx);
    if (rc < 0) return rc;
    if (attempt > 1) atomic_fetch_add(&w->retried, 1);
    char num[16];
    snprintf(num, sizeof num, "%d", attempt);
    sl_client_header h[] = {
        {"Content-Type", "application/json"},
        {"X-Sluice-Webhook-Id", id},
        {"X-Sluice-Attempt", num},
    };
    sl_client_req rq = {.method = "POST",
                        .url = w->url,
                        .headers = h,
                        .nheaders = sizeof h / sizeof h[0],
                        .body = body,
                        .body_len = len,
                        .on_body = discard};
    sl_client_resp resp = {0};
    rc = sl_client_do(w->client, &rq, &resp, ctx);
    int status = resp.status;
    if (rc < 0)
        sl_log_warn(app->log, "webhook attempt failed", SL_A_STR("job_id", id),
                    SL_A_INT("attempt", attempt), SL_A_ERR("err", rc),
                    SL_A_STR("detail", resp.errmsg));
    sl_client_resp_destroy(&resp);
    if (rc < 0) return rc == SL_EINVAL ? SL_EPERMANENT : rc; /* EINVAL: a URL curl refuses */
    if (status >= 200 && status < 300) {
        atomic_fetch_add(&w->delivered, 1);
        sl_log_info(app->log, "webhook delivered", SL_A_STR("job_id", id),
                    SL_A_INT("attempts", attempt), SL_A_INT("status", status));
        return 0;
    }
    bool retry = status >= 500 || status == 408 || status == 429;
    sl_log_warn(app->log, retry ? "webhook attempt failed" : "webhook refused",
                SL_A_STR("job_id", id), SL_A_INT("attempt", attempt), SL_A_INT("status", status));
    return retry ? SL_EUNAVAIL : SL_EPERMANENT;
}

void demo_webhooks_count_end(demo_app *app, int rc)
{
    atomic_fetch_add(rc == SL_EPERMANENT ? &app->webhooks->failed : &app->webhooks->dead, 1);
}

/* One delivery attempt on the in-memory pool (an sl_pool_job_fn). */
static int attempt_job(sl_ctx *ctx, void *arg)
{
    wh_job *j = arg;
    return demo_webhooks_deliver(j->app, ctx, j->id, ++j->attempts, j->payload, j->len);
}

int demo_webhooks_submit(demo_app *app, const void *body, size_t len, const char *job_id)
{
    wh_job *j = malloc(sizeof *j + len + 1);
    if (!j) return SL_ENOMEM;
    memset(j, 0, sizeof *j);
    j->app = app;
    j->len = len;
    if (len) memcpy(j->payload, body, len);
    j->payload[len] = '\0';
    snprintf(j->id, sizeof j->id, "%s", job_id);
    size_t n = len < sizeof j->what - 1 ? len : sizeof j->what - 1;
    memcpy(j->what, body, n);
    j->what[n] = '\0';
    for (size_t i = 0; i < n; i++) /* keep the log line one line */
        if ((unsigned char)j->what[i] < ' ') j->what[i] = ' ';
    sl_pool_job pj = {.id = job_id,
                      .fn = attempt_job,
                      .arg = j,
                      .arg_free = free,
                      .timeout_ns = app->cfg.webhook_timeout_ns};
    int rc = sl_pool_try_submit(app->jobs, &pj);
    if (rc < 0) free(j);
    return rc;
}

bool demo_webhooks_owns(const sl_pool_job *job)
{
    return job->fn == attempt_job;
}

const char *demo_webhooks_what(const sl_pool_job *job)
{
    const wh_job *j = job->arg;
    return j ? j->what : "";
}

void demo_webhooks_ended(demo_app *app, const sl_pool_job *job, int rc)
{
    demo_webhooks *w = app->webhooks;
    const wh_job *j = job->arg;
    if (rc == 0) return; /* counted as delivered by the attempt */
    demo_webhooks_count_end(app, rc);
    if (rc == SL_EPERMANENT) return;
    /* Dead-lettered: every attempt failed with a retryable error. A real service would store
     * the payload for replay; the demo reports it by id, with its first bytes. */
    sl_log_error(app->log, "webhook dead-lettered", SL_A_STR("job_id", job->id),
                 SL_A_STR("url", w->url), SL_A_INT("attempts", j ? j->attempts : 0),
                 SL_A_ERR("err", rc), SL_A_STR("payload", j ? j->what : ""));
}

/* ---- the demo's own receiver: POST /webhooks/receiver --------------------------------------- */

void demo_webhook_receiver(sl_req *req, sl_resp *resp, void *arg)
{
    demo_app *app = arg;
    size_t len, idlen = 0;
    sl_req_body(req, &len);
    const char *id = sl_req_header(req, "X-Sluice-Webhook-Id", &idlen);
    char idbuf[SL_POOL_ID_MAX + 1] = "-";
    if (id) snprintf(idbuf, sizeof idbuf, "%.*s", (int)(idlen < sizeof idbuf ? idlen : 0), id);
    atomic_fetch_add(&app->webhooks->received, 1);
    sl_log_info(app->log, "webhook received", SL_A_STR("webhook_id", idbuf),
                SL_A_INT("bytes", (int64_t)len));
    static const char ok[] = "{\"received\":true}";
    sl_resp_json(resp, 200, ok, sizeof ok - 1);
}

/* ---- /metrics ------------------------------------------------------------------------------- */

static double rd(void *p)
{
    return (double)atomic_load((_Atomic uint64_t *)p);
}

int demo_webhooks_metrics(demo_app *app, sl_metrics *reg)
{
    demo_webhooks *w = app->webhooks;
    static const struct {
        const char *name, *help;
        size_t off;
    } m[] = {
        {"sluice_demo_webhooks_delivered_total", "webhooks delivered (a 2xx from the target)",
         offsetof(demo_webhooks, delivered)},
        {"sluice_demo_webhooks_retried_total", "webhook delivery attempts that were retries",
         offsetof(demo_webhooks, retried)},
        {"sluice_demo_webhooks_failed_total",
         "webhooks refused for good (a 4xx other than 408/429)", offsetof(demo_webhooks, failed)},
        {"sluice_demo_webhooks_dead_total",
         "webhooks dead-lettered: every attempt failed (5xx, timeout, connection error)",
         offsetof(demo_webhooks, dead)},
        {"sluice_demo_webhooks_received_total", "webhooks received by POST /webhooks/receiver",
         offsetof(demo_webhooks, received)},
    };
    for (size_t i = 0; i < sizeof m / sizeof m[0]; i++) {
        sl_metric_family *f;
        sl_metric_opts o = {.name = m[i].name, .help = m[i].help};
        int rc = sl_metrics_register(reg, SL_METRIC_COUNTER, &o, &f);
        if (rc == 0) rc = sl_metric_func(f, NULL, rd, (char *)w + m[i].off);
        if (rc < 0) return rc;
    }
    return 0;
}

void demo_webhooks_free(demo_app *app)
{
    demo_webhooks *w = app->webhooks;
    if (!w) return;
    sl_client_free(w->client);
    sl_ctx_release(w->ready);
    free(w->url);
    free(w);
    app->webhooks = NULL;
}
