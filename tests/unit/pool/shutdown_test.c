/* sl_pool shutdown: 10,000 queued jobs (~10 us each, 2 workers) and a 5 ms deadline account
 * for every job exactly once; an interrupted job is abandoned without losing an attempt; free
 * without shutdown; a job that ignores its ctx is logged as overrunning and a hard timeout
 * returns SL_ETIMEDOUT with the worker detached (the pool is released by that worker later). */
#include "pool_testutil.h"
#include "pool/pool_int.h"

#if defined(SLUICE_TSAN)
#define NJOBS 3000 /* TSan: ~10x slower per job; the accounting is what matters */
#else
#define NJOBS 10000
#endif

/* Jobs of 4 kinds by index: most succeed after a little work, some fail once then succeed,
 * some fail permanently, some always fail (dead after 2 attempts). */
static int mixed_job(sl_ctx *ctx, void *arg)
{
    jarg *a = arg;
    atomic_int *attempts = a->user;
    int n = atomic_fetch_add(&attempts[a->index], 1);
    volatile unsigned x = 0;
    for (int i = 0; i < 20000 && !sl_ctx_done(ctx); i++)
        x += (unsigned)i;
    switch (a->index % 10) {
    case 7: return n == 0 ? SL_EIO : 0;
    case 8: return SL_EPERMANENT;
    case 9: return SL_EAGAIN;
    default: return sl_ctx_err(ctx);
    }
}

static void test_10k_short_deadline(void **state)
{
    tracker t;
    tracker_init(&t, NJOBS);
    atomic_int *attempts = calloc(NJOBS, sizeof *attempts);
    sl_pool_opts o = {.workers = 2,
                      .queue_capacity = NJOBS,
                      .logger = sl_log_discard(),
                      .retry = {.max_attempts = 2, .base_delay_ns = SL_US(100)}};
    tracker_hooks(&t, &o);
    sl_pool *p;
    assert_int_equal(sl_pool_new(&o, &p), 0);
    for (int i = 0; i < NJOBS; i++) {
        jarg *a = jarg_new(&t, i);
        a->user = attempts;
        sl_pool_job j = {.id = "bulk", .fn = mixed_job, .arg = a, .arg_free = jarg_free};
        assert_int_equal(sl_pool_try_submit(p, &j), 0);
    }
    sl_ctx *dl;
    assert_int_equal(sl_ctx_with_timeout(NULL, SL_MS(5), &dl), 0);
    sl_pool_report r;
    assert_int_equal(sl_pool_shutdown(p, dl, &r), 0);
    sl_ctx_release(dl);

    assert_true(r.deadline_hit);
    assert_int_equal(r.submitted, NJOBS);
    assert_int_equal(r.succeeded + r.failed + r.dead + r.abandoned, NJOBS);
    assert_true(r.abandoned > 0);
    assert_int_equal(r.stuck, 0);
    assert_int_equal(tracker_reported(&t), NJOBS);
    uint64_t ok = 0, fail = 0, dead = 0, ab = 0;
    for (int i = 0; i < NJOBS; i++) {
        assert_int_equal(atomic_load(&t.reports[i]), 1); /* each job reported once */
        switch (atomic_load(&t.kind[i])) {
        case R_DONE_OK: ok++; break;
        case R_DONE_FAIL: fail++; break;
        case R_DEAD: dead++; break;
        case R_ABANDONED: ab++; break;
        default: fail_msg("job %d not reported", i);
        }
    }
    assert_int_equal(ok, r.succeeded);
    assert_int_equal(fail, r.failed);
    assert_int_equal(dead, r.dead);
    assert_int_equal(ab, r.abandoned);
    assert_int_equal(atomic_load(&t.freed), NJOBS);
    sl_pool_stats st;
    sl_pool_stats_get(p, &st);
    assert_int_equal(st.workers, 0); /* all joined */
    assert_int_equal(st.queued + st.delayed + st.running, 0);
    sl_pool_free(p);
    free(attempts);
    tracker_destroy(&t);
}

/* Without a deadline, everything runs (including retries). */
static void test_full_drain(void **state)
{
    tracker t;
    tracker_init(&t, 500);
    atomic_int *attempts = calloc(500, sizeof *attempts);
    sl_pool_opts o = {.workers = 2,
                      .queue_capacity = 512,
                      .logger = sl_log_discard(),
                      .retry = {.max_attempts = 2, .base_delay_ns = SL_US(100)}};
    tracker_hooks(&t, &o);
    sl_pool *p;
    assert_int_equal(sl_pool_new(&o, &p), 0);
    for (int i = 0; i < 500; i++) {
        jarg *a = jarg_new(&t, i);
        a->user = attempts;
        sl_pool_job j = {.id = "drain", .fn = mixed_job, .arg = a, .arg_free = jarg_free};
        assert_int_equal(sl_pool_submit(p, &j, NULL), 0);
    }
    sl_pool_report r;
    assert_int_equal(sl_pool_shutdown(p, NULL, &r), 0);
    assert_false(r.deadline_hit);
    assert_int_equal(r.abandoned, 0);
    assert_int_equal(r.failed, 50);
    assert_int_equal(r.dead, 50);
    assert_int_equal(r.succeeded, 400);
    for (int i = 0; i < 500; i++)
        assert_int_equal(atomic_load(&attempts[i]), i % 10 >= 7 && i % 10 != 8 ? 2 : 1);
    sl_pool_free(p);
    free(attempts);
    tracker_destroy(&t);
}

static int parked_job(sl_ctx *ctx, void *arg)
{
    return gate_pass(((jarg *)arg)->user, ctx);
}

/* A running job cancelled by the deadline is abandoned, not failed, and keeps its attempts. */
static void test_interrupted_keeps_attempt(void **state)
{
    tracker t;
    tracker_init(&t, 2);
    gate g;
    gate_init(&g);
    sl_pool_opts o = {.workers = 1, .logger = sl_log_discard(), .retry = {.max_attempts = 3}};
    tracker_hooks(&t, &o);
    sl_pool *p;
    assert_int_equal(sl_pool_new(&o, &p), 0);
    for (int i = 0; i < 2; i++) {
        jarg *a = jarg_new(&t, i);
        a->user = &g;
        sl_pool_job j = {.id = "parked", .fn = parked_job, .arg = a, .arg_free = jarg_free};
        assert_int_equal(sl_pool_submit(p, &j, NULL), 0);
    }
    assert_true(SL_WAIT_UNTIL(atomic_load(&g.waiting) == 1, SLACK_MS));
    sl_ctx *dl;
    assert_int_equal(sl_ctx_with_timeout(NULL, SL_MS(10), &dl), 0);
    sl_pool_report r;
    assert_int_equal(sl_pool_shutdown(p, dl, &r), 0);
    sl_ctx_release(dl);
    assert_int_equal(r.abandoned, 2); /* one interrupted, one never started */
    assert_int_equal(r.failed + r.dead + r.succeeded, 0);
    sl_pool_stats st;
    sl_pool_stats_get(p, &st);
    assert_int_equal(st.retried, 0);
    assert_int_equal(st.started, 1);
    assert_int_equal(atomic_load(&t.kind[0]), R_ABANDONED);
    assert_int_equal(atomic_load(&t.kind[1]), R_ABANDONED);
    assert_int_equal(atomic_load(&t.freed), 2);
    sl_pool_free(p);
    gate_destroy(&g);
    tracker_destroy(&t);
}

/* free without shutdown: shutdown with a done ctx, no hook: each abandoned job is logged at
 * error level and its arg freed. */
static void test_free_without_shutdown(void **state)
{
    tracker t;
    tracker_init(&t, 5);
    gate g;
    gate_init(&g);
    logcap lc;
    sl_logger *lg = logcap_new(&lc, SL_LOG_INFO);
    sl_pool_opts o = {.workers = 1, .logger = lg};
    sl_pool *p;
    assert_int_equal(sl_pool_new(&o, &p), 0);
    for (int i = 0; i < 5; i++) {
        jarg *a = jarg_new(&t, i);
        a->user = &g;
        char id[16];
        snprintf(id, sizeof id, "left-%d", i);
        sl_pool_job j = {.id = id, .fn = parked_job, .arg = a, .arg_free = jarg_free};
        assert_int_equal(sl_pool_submit(p, &j, NULL), 0);
    }
    assert_true(SL_WAIT_UNTIL(atomic_load(&g.waiting) == 1, SLACK_MS));
    sl_pool_free(p);
    assert_int_equal(atomic_load(&t.freed), 5);
    assert_int_equal(logcap_count(&lc, "msg=\"job abandoned at shutdown\""), 5);
    assert_true(logcap_has(&lc, "level=ERROR"));
    assert_true(logcap_has(&lc, "job_id=left-4"));
    sl_logger_free(lg);
    gate_destroy(&g);
    tracker_destroy(&t);
}

/* A job that ignores its ctx: overrun logs, then the hard timeout. */
static atomic_int g_stubborn_freed;

static int stubborn_job(sl_ctx *ctx, void *arg)
{
    /* Ignores ctx on purpose; waits for the test without sleeping. */
    gate *g = arg;
    gate_pass(g, NULL);
    return SL_EIO;
}

static void stubborn_free(void *arg)
{
    atomic_store(&g_stubborn_freed, 1);
}

static void test_hard_timeout_detaches(void **state)
{
    static gate g; /* outlives the test body: the detached worker touches it */
    gate_init(&g);
    logcap *lc = malloc(sizeof *lc);
    sl_logger *lg = logcap_new(lc, SL_LOG_INFO);
    tracker t;
    tracker_init(&t, 1);
    sl_pool_opts o = {.workers = 1,
                      .logger = lg,
                      .hard_timeout_ns = SL_MS(300),
                      .overrun_log_interval_ns = SL_MS(10)};
    tracker_hooks(&t, &o);
    sl_pool *p;
    assert_int_equal(sl_pool_new(&o, &p), 0);
    sl_pool_job j = {.id = "stubborn-7", .fn = stubborn_job, .arg = &g, .arg_free = stubborn_free};
    assert_int_equal(sl_pool_submit(p, &j, NULL), 0);
    assert_true(SL_WAIT_UNTIL(atomic_load(&g.waiting) == 1, SLACK_MS));
    sl_ctx *dl;
    assert_int_equal(sl_ctx_with_timeout(NULL, SL_MS(5), &dl), 0);
    int64_t t0 = sl_mono_ns();
    sl_pool_report r;
    assert_int_equal(sl_pool_shutdown(p, dl, &r), SL_ETIMEDOUT);
    assert_true(sl_mono_ns() - t0 >= SL_MS(300));
    sl_ctx_release(dl);
    assert_int_equal(r.stuck, 1);
    assert_true(r.deadline_hit);
    /* Every 10 ms for 300 ms: at least 2 even if this thread was descheduled for most of it. */
    assert_true(logcap_count(lc, "msg=\"job overran shutdown deadline\"") >= 2);
    assert_true(logcap_has(lc, "job_id=stubborn-7"));
    assert_true(logcap_has(lc, "overrun="));
    /* The second call returns the same result at once. */
    assert_int_equal(sl_pool_shutdown(p, NULL, &r), SL_ETIMEDOUT);
    sl_pool_free(p);    /* allowed: the detached worker releases the pool */
    sl_logger_free(lg); /* allowed: a detached worker logs nothing */
    free(lc);
    gate_open(&g);
    assert_true(SL_WAIT_UNTIL(atomic_load(&g_stubborn_freed) == 1, SLACK_MS));
    assert_int_equal(tracker_reported(&t), 0); /* no hook after shutdown returned */
    tracker_destroy(&t);
}

/* hard_timeout_ns = SL_FOREVER means "never detach": fired_at + SL_FOREVER used to wrap into the
 * past, so shutdown detached the worker at once and returned SL_ETIMEDOUT. The job is held until
 * the first overrun log, which only a shutdown still waiting for it can write. */
static gate g_forever_gate;

static void open_on_overrun_sink(void *arg, const char *line, size_t len)
{
    logcap_sink(arg, line, len);
    if (memmem(line, len, "job overran", 11)) gate_open(&g_forever_gate);
}

static void test_hard_timeout_forever_waits(void **state)
{
    gate_init(&g_forever_gate);
    logcap *lc = calloc(1, sizeof *lc);
    pthread_mutex_init(&lc->mu, NULL);
    sl_logger *lg;
    sl_log_opts lo = {.level = SL_LOG_INFO,
                      .fd = -1,
                      .sink = open_on_overrun_sink,
                      .sink_arg = lc,
                      .omit_time = true};
    assert_int_equal(sl_logger_new(&lo, &lg), 0);
    sl_pool_opts o = {.workers = 1,
                      .logger = lg,
                      .hard_timeout_ns = SL_FOREVER,
                      .overrun_log_interval_ns = SL_MS(1)};
    sl_pool *p;
    assert_int_equal(sl_pool_new(&o, &p), 0);
    sl_pool_job j = {.id = "forever", .fn = stubborn_job, .arg = &g_forever_gate};
    assert_int_equal(sl_pool_submit(p, &j, NULL), 0);
    assert_true(SL_WAIT_UNTIL(atomic_load(&g_forever_gate.waiting) == 1, SLACK_MS));
    sl_ctx *done;
    assert_int_equal(sl_ctx_with_cancel(NULL, &done), 0);
    sl_ctx_cancel(done);
    sl_pool_report r;
    assert_int_equal(sl_pool_shutdown(p, done, &r), 0);
    sl_ctx_release(done);
    assert_int_equal(r.stuck, 0);
    assert_true(r.deadline_hit);
    assert_true(logcap_has(lc, "job_id=forever"));
    assert_int_equal(r.submitted, 1);
    assert_int_equal(r.abandoned, 1); /* failed after the deadline: abandoned by its worker */
    sl_pool_free(p);
    sl_logger_free(lg);
    pthread_mutex_destroy(&lc->mu);
    free(lc);
    gate_destroy(&g_forever_gate);
}

/* overrun_log_interval_ns = SL_FOREVER means "never log": the wrapped sum made the first log due
 * at once and every later one too (a busy loop of warnings until the hard timeout). */
static void test_overrun_log_forever_is_silent(void **state)
{
    static gate g; /* outlives the test body: the detached worker touches it */
    gate_init(&g);
    logcap *lc = malloc(sizeof *lc);
    sl_logger *lg = logcap_new(lc, SL_LOG_INFO);
    sl_pool_opts o = {.workers = 1,
                      .logger = lg,
                      .hard_timeout_ns = SL_MS(20),
                      .overrun_log_interval_ns = SL_FOREVER};
    sl_pool *p;
    assert_int_equal(sl_pool_new(&o, &p), 0);
    atomic_store(&g_stubborn_freed, 0);
    sl_pool_job j = {.id = "quiet", .fn = stubborn_job, .arg = &g, .arg_free = stubborn_free};
    assert_int_equal(sl_pool_submit(p, &j, NULL), 0);
    assert_true(SL_WAIT_UNTIL(atomic_load(&g.waiting) == 1, SLACK_MS));
    sl_ctx *done;
    assert_int_equal(sl_ctx_with_cancel(NULL, &done), 0);
    sl_ctx_cancel(done);
    sl_pool_report r;
    assert_int_equal(sl_pool_shutdown(p, done, &r), SL_ETIMEDOUT);
    sl_ctx_release(done);
    assert_int_equal(r.stuck, 1);
    assert_int_equal(logcap_count(lc, "job overran"), 0);
    sl_pool_free(p);
    sl_logger_free(lg);
    free(lc);
    gate_open(&g);
    assert_true(SL_WAIT_UNTIL(atomic_load(&g_stubborn_freed) == 1, SLACK_MS));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_10k_short_deadline),
        cmocka_unit_test(test_full_drain),
        cmocka_unit_test(test_interrupted_keeps_attempt),
        cmocka_unit_test(test_free_without_shutdown),
        cmocka_unit_test(test_hard_timeout_detaches),
        cmocka_unit_test(test_hard_timeout_forever_waits),
        cmocka_unit_test(test_overrun_log_forever_is_silent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
