/* sl_pool: bounded concurrency, FIFO order, push-back (try_submit, submit with a ctx),
 * argument ownership on every error, per-attempt timeouts, hooks and outcomes, resizing,
 * stats and the Retry-After estimate. */
#include "pool_testutil.h"
#include "pool/pool_int.h"

static sl_logger *quiet(void)
{
    return sl_log_discard();
}

/* ---- concurrency bound ---- */
typedef struct conc {
    atomic_int running, max, ran;
    gate g;
} conc;

static int conc_job(sl_ctx *ctx, void *arg)
{
    conc *c = ((jarg *)arg)->user;
    int now = atomic_fetch_add(&c->running, 1) + 1;
    int m = atomic_load(&c->max);
    while (now > m && !atomic_compare_exchange_weak(&c->max, &m, now)) {
    }
    int rc = gate_pass(&c->g, ctx);
    atomic_fetch_sub(&c->running, 1);
    atomic_fetch_add(&c->ran, 1);
    return rc;
}

static void test_never_more_than_n(void **state)
{
    conc c = {0};
    gate_init(&c.g);
    tracker t;
    tracker_init(&t, 20);
    sl_pool_opts o = {.workers = 3, .queue_capacity = 32, .logger = quiet()};
    tracker_hooks(&t, &o);
    sl_pool *p;
    assert_int_equal(sl_pool_new(&o, &p), 0);
    for (int i = 0; i < 20; i++) {
        jarg *a = jarg_new(&t, i);
        a->user = &c;
        sl_pool_job j = {.id = "conc", .fn = conc_job, .arg = a, .arg_free = jarg_free};
        assert_int_equal(sl_pool_submit(p, &j, NULL), 0);
    }
    assert_true(SL_WAIT_UNTIL(atomic_load(&c.g.waiting) == 3, SLACK_MS));
    sl_pool_stats st;
    sl_pool_stats_get(p, &st);
    assert_int_equal(st.running, 3);
    assert_int_equal(st.queued, 17);
    assert_int_equal(st.submitted, 20);
    assert_int_equal(st.workers, 3);
    assert_int_equal(atomic_load(&c.max), 3);
    gate_open(&c.g);
    assert_true(SL_WAIT_UNTIL(atomic_load(&t.done) == 20, SLACK_MS));
    assert_int_equal(atomic_load(&c.max), 3);
    sl_pool_report r;
    assert_int_equal(sl_pool_shutdown(p, NULL, &r), 0);
    assert_int_equal(r.submitted, 20);
    assert_int_equal(r.succeeded, 20);
    assert_int_equal(atomic_load(&t.freed), 20);
    sl_pool_free(p);
    gate_destroy(&c.g);
    tracker_destroy(&t);
}

/* ---- FIFO with one worker ---- */
typedef struct order {
    gate g;
    int seen[64];
    atomic_int n;
} order;

static int order_job(sl_ctx *ctx, void *arg)
{
    jarg *a = arg;
    order *o = a->user;
    if (a->index == 0) return gate_pass(&o->g, ctx);
    o->seen[atomic_fetch_add(&o->n, 1)] = a->index; /* one worker: no concurrent writer */
    return 0;
}

static void test_fifo_one_worker(void **state)
{
    order ord = {0};
    gate_init(&ord.g);
    tracker t;
    tracker_init(&t, 64);
    sl_pool_opts o = {.workers = 1, .queue_capacity = 64, .logger = quiet()};
    tracker_hooks(&t, &o);
    sl_pool *p;
    assert_int_equal(sl_pool_new(&o, &p), 0);
    for (int i = 0; i < 64; i++) {
        jarg *a = jarg_new(&t, i);
        a->user = &ord;
        sl_pool_job j = {.id = "fifo", .fn = order_job, .arg = a, .arg_free = jarg_free};
        assert_int_equal(sl_pool_submit(p, &j, NULL), 0);
        if (i == 0) assert_true(SL_WAIT_UNTIL(atomic_load(&ord.g.waiting) == 1, SLACK_MS));
    }
    gate_open(&ord.g);
    assert_true(SL_WAIT_UNTIL(atomic_load(&t.done) == 64, SLACK_MS));
    assert_int_equal(atomic_load(&ord.n), 63);
    for (int i = 0; i < 63; i++)
        assert_int_equal(ord.seen[i], i + 1);
    sl_pool_free(p);
    assert_int_equal(atomic_load(&t.freed), 64);
    gate_destroy(&ord.g);
    tracker_destroy(&t);
}

/* ---- push-back ---- */
static atomic_int g_plain_frees;
static void plain_free(void *p)
{
    atomic_fetch_add(&g_plain_frees, 1);
    free(p);
}

static int gate_job(sl_ctx *ctx, void *arg)
{
    return gate_pass(arg, ctx);
}

static int noop_job(sl_ctx *ctx, void *arg)
{
    return 0;
}

/* A pool of one worker blocked on g, with a full queue of 4. */
static sl_pool *full_pool(gate *g)
{
    sl_pool_opts o = {.workers = 1, .queue_capacity = 4, .logger = quiet()};
    sl_pool *p;
    assert_int_equal(sl_pool_new(&o, &p), 0);
    sl_pool_job blk = {.id = "blocker", .fn = gate_job, .arg = g};
    assert_int_equal(sl_pool_submit(p, &blk, NULL), 0);
    assert_true(SL_WAIT_UNTIL(atomic_load(&g->waiting) == 1, SLACK_MS));
    for (int i = 0; i < 4; i++) {
        sl_pool_job j = {.id = "filler", .fn = noop_job};
        assert_int_equal(sl_pool_try_submit(p, &j), 0);
    }
    return p;
}

static void test_try_submit_full(void **state)
{
    gate g;
    gate_init(&g);
    atomic_store(&g_plain_frees, 0);
    sl_pool *p = full_pool(&g);
    int *arg = malloc(sizeof *arg);
    *arg = 42;
    sl_pool_job j = {.id = "late", .fn = noop_job, .arg = arg, .arg_free = plain_free};
    assert_int_equal(sl_pool_try_submit(p, &j), SL_EFULL);
    assert_int_equal(sl_pool_try_submit(p, &j), SL_EFULL);
    assert_int_equal(*arg, 42);
    assert_int_equal(atomic_load(&g_plain_frees), 0); /* still the caller's */
    sl_pool_stats st;
    sl_pool_stats_get(p, &st);
    assert_int_equal(st.rejected, 2);
    assert_int_equal(st.submitted, 5);
    assert_int_equal(st.queued, 4);
    assert_int_equal(st.capacity, 4);
    int64_t ra = sl_pool_retry_after_ns(p);
    assert_true(ra >= SL_MS(1) && ra <= SL_SEC(60));
    gate_open(&g);
    /* Room again: the same job is accepted and now owned by the pool. */
    assert_true(SL_WAIT_UNTIL(sl_pool_try_submit(p, &j) == 0, SLACK_MS));
    sl_pool_report r;
    assert_int_equal(sl_pool_shutdown(p, NULL, &r), 0);
    assert_int_equal(atomic_load(&g_plain_frees), 1);
    assert_int_equal(r.succeeded, 6);
    sl_pool_free(p);
    gate_destroy(&g);
}

/* A capacity of 1 is rounded up to 2: a one-slot ring could not tell full from empty (it
 * accepted every job and shutdown never finished draining it). */
static void test_capacity_one_is_bounded(void **state)
{
    gate g;
    gate_init(&g);
    sl_pool_opts o = {.workers = 1, .queue_capacity = 1, .logger = quiet()};
    sl_pool *p;
    assert_int_equal(sl_pool_new(&o, &p), 0);
    sl_pool_job blk = {.id = "blocker", .fn = gate_job, .arg = &g};
    assert_int_equal(sl_pool_submit(p, &blk, NULL), 0);
    assert_true(SL_WAIT_UNTIL(atomic_load(&g.waiting) == 1, SLACK_MS));
    sl_pool_job j = {.id = "filler", .fn = noop_job};
    assert_int_equal(sl_pool_try_submit(p, &j), 0);
    assert_int_equal(sl_pool_try_submit(p, &j), 0);
    assert_int_equal(sl_pool_try_submit(p, &j), SL_EFULL);
    sl_pool_stats st;
    sl_pool_stats_get(p, &st);
    assert_int_equal(st.capacity, 2);
    gate_open(&g);
    sl_pool_report r;
    assert_int_equal(sl_pool_shutdown(p, NULL, &r), 0);
    assert_int_equal(r.succeeded, 3);
    sl_pool_free(p);
    gate_destroy(&g);
}

static void test_submit_ctx_expires(void **state)
{
    gate g;
    gate_init(&g);
    atomic_store(&g_plain_frees, 0);
    sl_pool *p = full_pool(&g);
    int *arg = malloc(sizeof *arg);
    sl_pool_job j = {.id = "waits", .fn = noop_job, .arg = arg, .arg_free = plain_free};

    sl_ctx *ctx;
    int64_t t0 = sl_mono_ns();
    assert_int_equal(sl_ctx_with_timeout(NULL, SL_MS(30), &ctx), 0);
    assert_int_equal(sl_pool_submit(p, &j, ctx), SL_ETIMEDOUT);
    assert_true(sl_mono_ns() - t0 >= SL_MS(30)); /* it waited for the deadline */
    sl_ctx_release(ctx);

    /* Already cancelled: refused at once, even though that is a cause, not a deadline. */
    assert_int_equal(sl_ctx_with_cancel(NULL, &ctx), 0);
    sl_ctx_cancel(ctx);
    assert_int_equal(sl_pool_submit(p, &j, ctx), SL_ECANCELED);
    sl_ctx_release(ctx);
    assert_int_equal(atomic_load(&g_plain_frees), 0);

    sl_pool_stats st;
    sl_pool_stats_get(p, &st);
    assert_int_equal(st.rejected, 2);
    assert_int_equal(st.submitted, 5);
    gate_open(&g);
    sl_pool_free(p);
    free(arg);
    gate_destroy(&g);
}

/* A blocked submitter is woken by a freed slot, and by shutdown with SL_ECLOSED. */
typedef struct subarg {
    sl_pool *p;
    atomic_int rc, done;
} subarg;

static void *submitter(void *x)
{
    subarg *s = x;
    sl_pool_job j = {.id = "blocked", .fn = noop_job};
    atomic_store(&s->rc, sl_pool_submit(s->p, &j, NULL));
    atomic_store(&s->done, 1);
    return NULL;
}

static void test_blocked_submitter_wakes(void **state)
{
    gate g;
    gate_init(&g);
    sl_pool *p = full_pool(&g);
    subarg s = {.p = p};
    pthread_t th;
    pthread_create(&th, NULL, submitter, &s);
    assert_true(SL_WAIT_UNTIL(atomic_load(&p->prod_waiting) == 1, SLACK_MS));
    assert_int_equal(atomic_load(&s.done), 0);
    gate_open(&g); /* the worker drains: the submitter gets a slot */
    assert_true(SL_WAIT_UNTIL(atomic_load(&s.done) == 1, SLACK_MS));
    assert_int_equal(atomic_load(&s.rc), 0);
    pthread_join(th, NULL);
    sl_pool_free(p);
    gate_destroy(&g);

    gate_init(&g);
    p = full_pool(&g);
    subarg s2 = {.p = p};
    pthread_create(&th, NULL, submitter, &s2);
    assert_true(SL_WAIT_UNTIL(atomic_load(&p->prod_waiting) == 1, SLACK_MS));
    sl_ctx *dl;
    assert_int_equal(sl_ctx_with_cancel(NULL, &dl), 0);
    sl_ctx_cancel(dl);
    sl_pool_report r;
    assert_int_equal(sl_pool_shutdown(p, dl, &r), 0);
    sl_ctx_release(dl);
    pthread_join(th, NULL);
    assert_int_equal(atomic_load(&s2.rc), SL_ECLOSED);
    assert_int_equal(r.submitted, 5);
    assert_int_equal(r.succeeded + r.abandoned, 5);
    sl_pool_free(p);
    gate_destroy(&g);
}

static void test_invalid_and_closed(void **state)
{
    sl_pool_opts o = {.workers = 1, .logger = quiet()};
    sl_pool *p;
    assert_int_equal(sl_pool_new(&o, &p), 0);
    char id[SL_POOL_ID_MAX + 2];
    memset(id, 'x', sizeof id);
    id[SL_POOL_ID_MAX + 1] = '\0'; /* 64 bytes: one too many */
    sl_pool_job j = {.id = id, .fn = noop_job};
    assert_int_equal(sl_pool_submit(p, &j, NULL), SL_EINVAL);
    assert_int_equal(sl_pool_try_submit(p, &j), SL_EINVAL);
    id[SL_POOL_ID_MAX] = '\0'; /* 63 bytes: fits */
    assert_int_equal(sl_pool_submit(p, &j, NULL), 0);
    sl_pool_job nofn = {.id = "x"};
    assert_int_equal(sl_pool_submit(p, &nofn, NULL), SL_EINVAL);
    assert_int_equal(sl_pool_submit(p, NULL, NULL), SL_EINVAL);
    assert_int_equal(sl_pool_set_workers(p, 0), SL_EINVAL);
    sl_pool_report r1, r2;
    assert_int_equal(sl_pool_shutdown(p, NULL, &r1), 0);
    assert_int_equal(sl_pool_shutdown(p, NULL, &r2), 0); /* idempotent */
    assert_memory_equal(&r1, &r2, sizeof r1);
    assert_int_equal(r1.succeeded, 1);
    assert_int_equal(sl_pool_submit(p, &j, NULL), SL_ECLOSED);
    assert_int_equal(sl_pool_try_submit(p, &j), SL_ECLOSED);
    assert_int_equal(sl_pool_set_workers(p, 2), SL_ECLOSED);
    sl_pool_free(p);

    sl_pool_opts bad = {.workers = -1};
    assert_int_equal(sl_pool_new(&bad, &p), SL_EINVAL);
    bad = (sl_pool_opts){.retry.multiplier = 0.5};
    assert_int_equal(sl_pool_new(&bad, &p), SL_EINVAL);
    bad = (sl_pool_opts){.sample_every = 3};
    assert_int_equal(sl_pool_new(&bad, &p), SL_EINVAL);
    sl_pool_free(NULL);
}

/* ---- per-attempt timeout ---- */
static atomic_int g_seen_err;

static int wait_ctx_job(sl_ctx *ctx, void *arg)
{
    /* Also proves the job's ctx is not the submitter's: that one is never done here. */
    atomic_store(&g_seen_err, sl_ctx_wait(ctx));
    return SL_EPERMANENT;
}

static void test_job_timeout_cancels_ctx(void **state)
{
    tracker t;
    tracker_init(&t, 1);
    logcap lc;
    sl_logger *lg = logcap_new(&lc, SL_LOG_INFO);
    sl_pool_opts o = {.workers = 1, .logger = lg, .name = "mail"};
    tracker_hooks(&t, &o);
    sl_pool *p;
    assert_int_equal(sl_pool_new(&o, &p), 0);
    sl_pool_job j = {.id = "slow-1",
                     .fn = wait_ctx_job,
                     .arg = jarg_new(&t, 0),
                     .arg_free = jarg_free,
                     .timeout_ns = SL_MS(20)};
    int64_t t0 = sl_mono_ns();
    assert_int_equal(sl_pool_submit(p, &j, NULL), 0);
    assert_true(SL_WAIT_UNTIL(atomic_load(&t.done) == 1, SLACK_MS));
    assert_true(sl_mono_ns() - t0 >= SL_MS(20));
    assert_int_equal(atomic_load(&g_seen_err), SL_ETIMEDOUT);
    assert_int_equal(atomic_load(&t.kind[0]), R_DONE_FAIL); /* permanent: no retry */
    assert_int_equal(atomic_load(&t.attempts[0]), 1);
    sl_pool_report r;
    assert_int_equal(sl_pool_shutdown(p, NULL, &r), 0);
    assert_int_equal(r.failed, 1);
    assert_true(logcap_has(&lc, "msg=\"job failed\""));
    assert_true(logcap_has(&lc, "job_id=slow-1"));
    assert_true(logcap_has(&lc, "pool=mail"));
    sl_pool_free(p);
    sl_logger_free(lg);
    tracker_destroy(&t);
}

/* The pool default applies when the job has none; a negative job timeout means none. */
static void test_default_timeout(void **state)
{
    tracker t;
    tracker_init(&t, 1);
    sl_pool_opts o = {.workers = 1, .logger = quiet(), .job_timeout_ns = SL_MS(10)};
    tracker_hooks(&t, &o);
    sl_pool *p;
    assert_int_equal(sl_pool_new(&o, &p), 0);
    sl_pool_job j = {.id = "d", .fn = wait_ctx_job, .arg = jarg_new(&t, 0), .arg_free = jarg_free};
    assert_int_equal(sl_pool_submit(p, &j, NULL), 0);
    assert_true(SL_WAIT_UNTIL(atomic_load(&t.done) == 1, SLACK_MS));
    assert_int_equal(atomic_load(&g_seen_err), SL_ETIMEDOUT);
    sl_pool_free(p);
    tracker_destroy(&t);
}

/* ---- outcomes and hooks ---- */
static int rc_job(sl_ctx *ctx, void *arg)
{
    return (int)(intptr_t)((jarg *)arg)->user;
}

static void test_outcomes(void **state)
{
    tracker t;
    tracker_init(&t, 3);
    logcap lc;
    sl_logger *lg = logcap_new(&lc, SL_LOG_DEBUG);
    sl_pool_opts o = {.workers = 1,
                      .logger = lg,
                      .retry = {.max_attempts = 1}}; /* no retries here: see retry_test */
    tracker_hooks(&t, &o);
    sl_pool *p;
    assert_int_equal(sl_pool_new(&o, &p), 0);
    int rcs[3] = {0, SL_EPERMANENT, SL_EIO};
    for (int i = 0; i < 3; i++) {
        jarg *a = jarg_new(&t, i);
        a->user = (void *)(intptr_t)rcs[i];
        char id[16];
        snprintf(id, sizeof id, "job-%d", i);
        sl_pool_job j = {.id = id, .fn = rc_job, .arg = a, .arg_free = jarg_free};
        assert_int_equal(sl_pool_submit(p, &j, NULL), 0);
    }
    sl_pool_report r;
    assert_int_equal(sl_pool_shutdown(p, NULL, &r), 0);
    assert_int_equal(atomic_load(&t.kind[0]), R_DONE_OK);
    assert_int_equal(atomic_load(&t.kind[1]), R_DONE_FAIL);
    assert_int_equal(atomic_load(&t.kind[2]), R_DEAD);
    for (int i = 0; i < 3; i++)
        assert_int_equal(atomic_load(&t.reports[i]), 1);
    assert_int_equal(atomic_load(&t.freed), 3);
    assert_int_equal(r.succeeded, 1);
    assert_int_equal(r.failed, 1);
    assert_int_equal(r.dead, 1);
    assert_int_equal(r.abandoned, 0);
    assert_true(logcap_has(&lc, "msg=\"job completed\""));
    assert_true(logcap_has(&lc, "job_id=job-0"));
    assert_true(logcap_has(&lc, "msg=\"job exhausted retries\""));
    sl_pool_stats st;
    sl_pool_stats_get(p, &st);
    assert_int_equal(st.started, 3);
    assert_int_equal(st.retried, 0);
    sl_pool_free(p);
    sl_logger_free(lg);
    tracker_destroy(&t);
}

/* ---- resize ---- */
static void test_set_workers(void **state)
{
    conc c = {0};
    gate_init(&c.g);
    tracker t;
    tracker_init(&t, 12);
    sl_pool_opts o = {.workers = 1, .queue_capacity = 16, .logger = quiet()};
    tracker_hooks(&t, &o);
    sl_pool *p;
    assert_int_equal(sl_pool_new(&o, &p), 0);
    for (int i = 0; i < 12; i++) {
        jarg *a = jarg_new(&t, i);
        a->user = &c;
        sl_pool_job j = {.id = "rs", .fn = conc_job, .arg = a, .arg_free = jarg_free};
        assert_int_equal(sl_pool_submit(p, &j, NULL), 0);
    }
    assert_true(SL_WAIT_UNTIL(atomic_load(&c.g.waiting) == 1, SLACK_MS));
    assert_int_equal(sl_pool_set_workers(p, 4), 0);
    assert_true(SL_WAIT_UNTIL(atomic_load(&c.g.waiting) == 4, SLACK_MS));
    assert_int_equal(atomic_load(&c.max), 4);
    assert_int_equal(sl_pool_set_workers(p, 2), 0); /* busy: they retire after their job */
    sl_pool_stats st;
    sl_pool_stats_get(p, &st);
    assert_int_equal(st.running, 4);
    gate_open(&c.g);
    assert_true(SL_WAIT_UNTIL(atomic_load(&t.done) == 12, SLACK_MS));
    assert_true(SL_WAIT_UNTIL((sl_pool_stats_get(p, &st), st.workers == 2), SLACK_MS));
    assert_int_equal(sl_pool_set_workers(p, 3), 0);
    sl_pool_stats_get(p, &st);
    assert_int_equal(st.workers, 3);
    assert_int_equal(st.succeeded, 12); /* retired workers' counts are kept */
    assert_int_equal(st.started, 12);
    sl_pool_free(p);
    gate_destroy(&c.g);
    tracker_destroy(&t);
}

/* ---- stats ---- */
static void test_hist_quantile(void **state)
{
    uint64_t b[SL_POOL_HIST_BUCKETS] = {0};
    assert_int_equal(sl_pool_hist_quantile(b, 0.5), 0);
    b[10] = 98; /* [512, 1024) */
    b[20] = 2;  /* [2^19, 2^20) */
    assert_int_equal(sl_pool_hist_quantile(b, 0.5), 1024);
    assert_int_equal(sl_pool_hist_quantile(b, 0.98), 1024);
    assert_int_equal(sl_pool_hist_quantile(b, 0.99), 1 << 20);
    assert_int_equal(sl_pool_hist_quantile(b, 1.0), 1 << 20);
}

static void test_stats_histograms_and_rate(void **state)
{
    sl_pool_opts o = {.workers = 2, .logger = quiet(), .sample_every = 1};
    sl_pool *p;
    assert_int_equal(sl_pool_new(&o, &p), 0);
    assert_int_equal(sl_pool_retry_after_ns(p), SL_SEC(1)); /* no rate known yet */
    for (int i = 0; i < 100; i++) {
        sl_pool_job j = {.id = "s", .fn = noop_job};
        assert_int_equal(sl_pool_submit(p, &j, NULL), 0);
    }
    sl_pool_stats st;
    assert_true(SL_WAIT_UNTIL((sl_pool_stats_get(p, &st), st.succeeded == 100), SLACK_MS));
    uint64_t nw = 0, nr = 0;
    for (int i = 0; i < SL_POOL_HIST_BUCKETS; i++) {
        nw += st.queue_wait[i];
        nr += st.run_time[i];
    }
    assert_int_equal(nw, 100); /* sample_every = 1: every job */
    assert_int_equal(nr, 100);
    assert_true(st.queue_wait_p99_ns >= st.queue_wait_p50_ns);
    assert_true(st.run_time_p99_ns > 0);
    sl_pool_free(p);
}

/* Retry-After follows the measured drain rate: queued / rate for a full queue of 4. */
static void test_retry_after_uses_rate(void **state)
{
    gate g;
    gate_init(&g);
    sl_pool_opts o = {.workers = 1, .queue_capacity = 4, .logger = quiet()};
    sl_pool *p;
    assert_int_equal(sl_pool_new(&o, &p), 0);
    assert_int_equal(sl_pool_retry_after_ns(p), SL_SEC(1));
    /* Run jobs until a rate is known: samples need >= 10 ms between them, and a loaded machine
     * may deschedule this thread for a while, so the loop is bounded by SLACK_MS, not a count. */
    sl_pool_stats st;
    int64_t t0 = sl_mono_ns(), deadline = t0 + SL_MS(SLACK_MS);
    do {
        sl_pool_job j = {.id = "fast", .fn = noop_job};
        assert_int_equal(sl_pool_submit(p, &j, NULL), 0);
        sl_pool_retry_after_ns(p);
        sl_pool_stats_get(p, &st);
    } while ((sl_mono_ns() - t0 < SL_MS(30) || !(st.drain_rate > 0)) && sl_mono_ns() < deadline);
    assert_true(st.drain_rate > 0);
    sl_pool_job blk = {.id = "blocker", .fn = gate_job, .arg = &g};
    assert_int_equal(sl_pool_submit(p, &blk, NULL), 0);
    assert_true(SL_WAIT_UNTIL(atomic_load(&g.waiting) == 1, SLACK_MS));
    for (int i = 0; i < 4; i++) {
        sl_pool_job j = {.id = "filler", .fn = noop_job};
        assert_int_equal(sl_pool_try_submit(p, &j), 0);
    }
    sl_pool_job j = {.id = "refused", .fn = noop_job};
    assert_int_equal(sl_pool_try_submit(p, &j), SL_EFULL);
    int64_t ra = sl_pool_retry_after_ns(p);
    sl_pool_stats_get(p, &st);
    /* queued / rate, clamped to [1 ms, 60 s]: no longer the 1 s used before a rate is known. */
    double want = 4.0 / st.drain_rate * 1e9;
    want = want < SL_MS(1) ? SL_MS(1) : want > SL_SEC(60) ? SL_SEC(60) : want;
    assert_true(ra >= SL_MS(1));
    assert_true(ra > want * 0.5 && ra < want * 2.0 + SL_MS(1));
    gate_open(&g);
    sl_pool_free(p);
    gate_destroy(&g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_never_more_than_n),
        cmocka_unit_test(test_fifo_one_worker),
        cmocka_unit_test(test_try_submit_full),
        cmocka_unit_test(test_capacity_one_is_bounded),
        cmocka_unit_test(test_submit_ctx_expires),
        cmocka_unit_test(test_blocked_submitter_wakes),
        cmocka_unit_test(test_invalid_and_closed),
        cmocka_unit_test(test_job_timeout_cancels_ctx),
        cmocka_unit_test(test_default_timeout),
        cmocka_unit_test(test_outcomes),
        cmocka_unit_test(test_set_workers),
        cmocka_unit_test(test_hist_quantile),
        cmocka_unit_test(test_stats_histograms_and_rate),
        cmocka_unit_test(test_retry_after_uses_rate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
