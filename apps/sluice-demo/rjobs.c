/* Background jobs on Redis (--redis): welcome e-mails and webhooks as durable jobs in Redis
 * Streams (sl_redis_jobs), so that jobs outlive the instance that accepted them.
 *
 * One queue per job kind ("webhook", "welcome-email"), each with a producer object and a few
 * worker threads (--job-workers split between the two queues, at least one each). An
 * sl_redis_jobs is single owner: every worker thread gets its own (made here on the main
 * thread before the thread starts, then used only by it), and the producer, which any pooled
 * handler thread may call, sits behind a mutex (one round trip per submit; a busier service
 * would keep one producer per handler thread). Workers run sl_redis_jobs_work until the
 * instance's stop ctx is cancelled at shutdown, then are joined. A job a worker was running
 * then stays pending in Redis, and any instance reclaims it after --jobs-visibility-ms; the
 * same happens when the instance is killed (SIGKILL): nothing is lost, a job may run twice.
 *
 * The payload is "<slow 0|1> <work ns> " then the data: an e-mail address (a simulated send of
 * work ns), or a webhook's body, which the running instance delivers to its --webhook-url
 * (webhook.c: same per-attempt deadline, same 2xx/permanent/retryable rules; the backoff and
 * the dead-letter stream are sl_redis_jobs'). A "slow" webhook blocks on its first run until
 * its worker's ctx fires (the demo's stand-in for a delivery that hangs), so only a reclaimed
 * or retried run completes it: the integration test kills the instance running it and watches
 * another instance finish it. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "demo.h"
#include "sluice/redis_jobs.h"

#define RJ_MAX_WORKERS 8
#define RJ_ATTEMPTS    5

/* As submitted, data is borrowed; as decoded, one malloc'd block with data in buf. */
typedef struct rj_payload {
    int slow;
    long long work_ns;
    const char *data;
    size_t len;
    char buf[];
} rj_payload;

typedef struct rj_queue rj_queue;

typedef struct rj_worker {
    rj_queue *q;
    sl_redis_jobs *jobs; /* this thread's own connection */
    pthread_t th;
} rj_worker;

struct rj_queue {
    demo_rjobs *owner;
    const char *name;
    pthread_mutex_t mu; /* guards producer */
    sl_redis_jobs *producer;
    rj_worker worker[RJ_MAX_WORKERS];
    int nworkers, nstarted;
};

struct demo_rjobs {
    demo_app *app;
    sl_ctx *stop; /* cancelled at shutdown: every worker's ctx */
    rj_queue webhook, welcome;
    _Atomic uint64_t submitted, done, failed_runs;
};

static int rj_encode(void *codec_arg, const void *arg, void **bytes, size_t *len)
{
    (void)codec_arg;
    const rj_payload *p = arg;
    size_t cap = p->len + 48;
    char *s = malloc(cap);
    if (!s) return SL_ENOMEM;
    int n = snprintf(s, cap, "%d %lld ", p->slow ? 1 : 0, p->work_ns);
    if (p->len) memcpy(s + n, p->data, p->len);
    *bytes = s;
    *len = (size_t)n + p->len;
    return 0;
}

static int rj_decode(void *codec_arg, const void *bytes, size_t len, void **arg)
{
    (void)codec_arg;
    char head[48]; /* "<slow> <work ns> " */
    size_t hl = len < sizeof head - 1 ? len : sizeof head - 1;
    memcpy(head, bytes, hl);
    head[hl] = 0;
    int slow = 0, used = 0;
    long long work_ns = 0;
    if (sscanf(head, "%d %lld %n", &slow, &work_ns, &used) != 2 || used <= 0) return SL_EINVAL;
    size_t dl = len - (size_t)used;
    rj_payload *p = malloc(sizeof *p + dl + 1);
    if (!p) return SL_ENOMEM;
    *p = (rj_payload){.slow = slow, .work_ns = work_ns, .data = p->buf, .len = dl};
    memcpy(p->buf, (const char *)bytes + used, dl);
    p->buf[dl] = 0;
    *arg = p;
    return 0;
}

static int rj_run(sl_ctx *ctx, sl_redis_job *job, void *arg)
{
    rj_queue *q = arg;
    demo_rjobs *rj = q->owner;
    const rj_payload *p = job->arg;
    if (p->slow && job->attempts == 0 && !job->reclaimed) {
        sl_log_info(rj->app->log, "slow job started", SL_A_STR("job_id", job->id),
                    SL_A_STR("queue", q->name));
        int rc = sl_ctx_wait(ctx); /* until this worker stops (or the process dies) */
        atomic_fetch_add(&rj->failed_runs, 1);
        return rc < 0 ? rc : SL_ECANCELED;
    }
    int rc;
    if (q == &rj->webhook) { /* a real delivery, under the attempt's own deadline */
        sl_ctx *attempt = NULL;
        rc = sl_ctx_with_timeout(ctx, rj->app->cfg.webhook_timeout_ns, &attempt);
        if (rc == 0)
            rc = demo_webhooks_deliver(rj->app, attempt, job->id, job->attempts + 1, p->data,
                                       p->len);
        sl_ctx_release(attempt);
        /* sl_redis_jobs dead-letters a permanent failure or the last attempt; count them (a
         * run cut off by this worker's stop is not one: it stays pending for another). */
        if (rc < 0 && !sl_ctx_err(ctx) && (rc == SL_EPERMANENT || job->attempts + 1 >= RJ_ATTEMPTS))
            demo_webhooks_count_end(rj->app, rc);
        if (rc == 0) rc = SL_EAGAIN;
    } else {
        rc = p->work_ns > 0 ? sl_ctx_wait_for(ctx, p->work_ns) : SL_EAGAIN;
    }
    if (rc != SL_EAGAIN) {
        atomic_fetch_add(&rj->failed_runs, 1);
        return rc;
    }
    atomic_fetch_add(&rj->done, 1);
    sl_log_info(rj->app->log, "job done", SL_A_STR("job_id", job->id), SL_A_STR("queue", q->name),
                SL_A_INT("attempts", job->attempts), SL_A_BOOL("reclaimed", job->reclaimed));
    return 0;
}

static void *rj_worker_main(void *arg)
{
    rj_worker *w = arg;
    demo_rjobs *rj = w->q->owner;
    /* work returns the stop ctx's error, or a Redis error it could not cure: then wait a
     * second (on the stop ctx, so shutdown is not delayed) and work again. */
    for (;;) {
        int rc = sl_redis_jobs_work(w->jobs, rj_run, w->q, rj->stop);
        if (sl_ctx_err(rj->stop)) break;
        sl_log_warn(rj->app->log, "job worker: redis error, retrying",
                    SL_A_STR("queue", w->q->name), SL_A_ERR("err", rc));
        if (sl_ctx_wait_for(rj->stop, SL_SEC(1)) != SL_EAGAIN) break;
    }
    return NULL;
}

static int rj_queue_new(demo_rjobs *rj, rj_queue *q, const char *name, int nworkers)
{
    const demo_config *c = &rj->app->cfg;
    q->owner = rj;
    q->name = name;
    q->nworkers = nworkers;
    pthread_mutex_init(&q->mu, NULL);
    sl_redis_jobs_config jc = {
        .host = c->redis_host,
        .port = c->redis_port,
        .prefix = "sluice-demo:jobs:",
        .queue = name,
        .codec = {.encode = rj_encode, .decode = rj_decode},
        .max_attempts = RJ_ATTEMPTS,
        .visibility_ns = c->visibility_ns,
        /* Short blocks, so that a crashed instance's jobs are noticed soon after they are
         * due for reclaim. */
        .max_block_ns = SL_MS(200),
        .logger = rj->app->log,
    };
    int rc = sl_redis_jobs_new(&jc, NULL, &q->producer);
    for (int i = 0; rc == 0 && i < nworkers; i++)
        q->worker[i].q = q;
    for (int i = 0; rc == 0 && i < nworkers; i++)
        rc = sl_redis_jobs_new(&jc, NULL, &q->worker[i].jobs);
    return rc;
}

static int rj_queue_start(rj_queue *q)
{
    for (; q->nstarted < q->nworkers; q->nstarted++)
        if (pthread_create(&q->worker[q->nstarted].th, NULL, rj_worker_main,
                           &q->worker[q->nstarted]))
            return SL_ENOMEM;
    return 0;
}

static void rj_queue_join_free(rj_queue *q)
{
    for (int i = 0; i < q->nstarted; i++)
        pthread_join(q->worker[i].th, NULL);
    q->nstarted = 0;
    for (int i = 0; i < q->nworkers; i++) {
        sl_redis_jobs_free(q->worker[i].jobs);
        q->worker[i].jobs = NULL;
    }
    sl_redis_jobs_free(q->producer);
    q->producer = NULL;
    if (q->owner) pthread_mutex_destroy(&q->mu);
    q->owner = NULL;
}

int demo_rjobs_init(demo_app *app)
{
    demo_rjobs *rj = calloc(1, sizeof *rj);
    if (!rj) return SL_ENOMEM;
    rj->app = app;
    app->rjobs = rj;
    int per = app->cfg.job_workers / 2;
    if (per < 1) per = 1;
    if (per > RJ_MAX_WORKERS) per = RJ_MAX_WORKERS;
    int rc = sl_ctx_with_cancel(NULL, &rj->stop);
    if (rc == 0) rc = rj_queue_new(rj, &rj->webhook, "webhook", per);
    if (rc == 0) rc = rj_queue_new(rj, &rj->welcome, "welcome-email", per);
    if (rc == 0) rc = rj_queue_start(&rj->webhook);
    if (rc == 0) rc = rj_queue_start(&rj->welcome);
    if (rc < 0)
        fprintf(stderr, "sluice-demo: redis jobs on %s:%d: %s\n", app->cfg.redis_host,
                app->cfg.redis_port, sl_strerror(rc));
    return rc;
}

/* A submit waits at most this long, for the producer and for Redis together: a stalled Redis
 * must turn into a quick 503, not a request that hangs for the I/O timeout behind the mutex
 * (and every request queued behind that one). */
#define RJ_SUBMIT_MAX SL_MS(500)

static int rj_submit(demo_rjobs *rj, rj_queue *q, const char *id, const rj_payload *p, sl_ctx *ctx)
{
    sl_ctx *dl = NULL;
    int rc = sl_ctx_with_timeout(ctx, RJ_SUBMIT_MAX, &dl);
    if (rc < 0) return rc;
    /* The mutex with the same deadline (pthread's clock is the wall clock). */
    int64_t left = sl_ctx_deadline(dl) - sl_now_ns();
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t at = (int64_t)ts.tv_sec * SL_SEC(1) + ts.tv_nsec + (left > 0 ? left : 0);
    ts.tv_sec = (time_t)(at / SL_SEC(1));
    ts.tv_nsec = (long)(at % SL_SEC(1));
    if (pthread_mutex_timedlock(&q->mu, &ts) != 0) {
        sl_ctx_release(dl);
        return SL_ETIMEDOUT;
    }
    rc = sl_redis_jobs_submit(q->producer, id, p, dl);
    pthread_mutex_unlock(&q->mu);
    sl_ctx_release(dl);
    if (rc == 0) atomic_fetch_add(&rj->submitted, 1);
    return rc;
}

int demo_rjobs_welcome(demo_app *app, const demo_user *u, sl_ctx *ctx)
{
    rj_payload p = {.work_ns = app->cfg.email_ns, .data = u->email, .len = strlen(u->email)};
    char id[SL_POOL_ID_MAX + 1];
    /* User ids are per instance: the pid keeps two instances' jobs apart. */
    snprintf(id, sizeof id, "welcome-email-%ld-%lld", (long)getpid(), (long long)u->id);
    return rj_submit(app->rjobs, &app->rjobs->welcome, id, &p, ctx);
}

int demo_rjobs_webhook(demo_app *app, const void *body, size_t len, sl_ctx *ctx,
                       char job_id[SL_POOL_ID_MAX + 1])
{
    static _Atomic uint64_t seq;
    rj_payload p = {.data = body, .len = len};
    static const char slow[] = "\"slow\":true";
    for (size_t i = 0; len >= sizeof slow - 1 && i <= len - (sizeof slow - 1) && !p.slow; i++)
        p.slow = !memcmp((const char *)body + i, slow, sizeof slow - 1);
    snprintf(job_id, SL_POOL_ID_MAX + 1, "webhook-%ld-%llu", (long)getpid(),
             (unsigned long long)atomic_fetch_add(&seq, 1) + 1);
    return rj_submit(app->rjobs, &app->rjobs->webhook, job_id, &p, ctx);
}

int demo_rjobs_shutdown(demo_app *app, sl_pool_report *r)
{
    demo_rjobs *rj = app->rjobs;
    int64_t t0 = sl_mono_ns();
    sl_ctx_cancel(rj->stop);
    rj_queue_join_free(&rj->webhook);
    rj_queue_join_free(&rj->welcome);
    r->submitted = atomic_load(&rj->submitted);
    r->succeeded = atomic_load(&rj->done);
    r->failed = atomic_load(&rj->failed_runs);
    r->elapsed_ns = sl_mono_ns() - t0;
    return 0;
}

void demo_rjobs_free(demo_app *app)
{
    demo_rjobs *rj = app->rjobs;
    if (!rj) return;
    if (rj->stop) sl_ctx_cancel(rj->stop); /* start-up failed: threads may be running */
    rj_queue_join_free(&rj->webhook);
    rj_queue_join_free(&rj->welcome);
    sl_ctx_release(rj->stop);
    free(rj);
    app->rjobs = NULL;
}
