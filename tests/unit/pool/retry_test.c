/* sl_pool retries: the backoff formula and its jitter bounds, and the schedule a real pool
 * follows on the test clock (attempt times are recorded on test time, so they are exact: no
 * sleeping, no tolerance), up to on_dead after max attempts. Also: a retry does not hold a
 * worker (other jobs run during a backoff). */
#include "pool_testutil.h"
#include "pool/pool_int.h"

static void test_backoff_formula(void **state)
{
    sl_pool_retry r = {.max_attempts = 10,
                       .base_delay_ns = SL_MS(100),
                       .max_delay_ns = SL_SEC(1),
                       .multiplier = 2.0};
    int64_t want[] = {SL_MS(100), SL_MS(200), SL_MS(400), SL_MS(800), SL_SEC(1), SL_SEC(1)};
    for (int n = 1; n <= 6; n++)
        assert_int_equal(sl__pool_backoff(&r, n, NULL), want[n - 1]);
    r.multiplier = 1.5;
    assert_int_equal(sl__pool_backoff(&r, 3, NULL), SL_MS(225));
    r.multiplier = 1e9; /* overflow-proof: clamps */
    assert_int_equal(sl__pool_backoff(&r, 60, NULL), SL_SEC(1));
}

static void test_full_jitter(void **state)
{
    sl_pool_retry r = {.base_delay_ns = SL_MS(100),
                       .max_delay_ns = SL_SEC(1),
                       .multiplier = 2.0,
                       .full_jitter = true};
    uint64_t s1 = 7, s2 = 7, s3 = 8;
    int64_t lo = INT64_MAX, hi = 0, sum = 0;
    bool differs = false;
    for (int i = 0; i < 10000; i++) {
        int n = 1 + i % 5;
        int64_t cap = sl__pool_backoff(&r, n, NULL);
        int64_t a = sl__pool_backoff(&r, n, &s1);
        int64_t b = sl__pool_backoff(&r, n, &s2);
        int64_t c = sl__pool_backoff(&r, n, &s3);
        assert_int_equal(a, b); /* same seed, same sequence */
        differs |= a != c;
        assert_true(a >= 0 && a <= cap);
        if (n == 3) {
            lo = a < lo ? a : lo;
            hi = a > hi ? a : hi;
            sum += a;
        }
    }
    assert_true(differs);
    /* Uniform on [0, 400ms]: 2000 samples spread over the range, mean near 200ms. */
    assert_true(lo < SL_MS(10));
    assert_true(hi > SL_MS(390));
    int64_t mean = sum / 2000;
    assert_true(mean > SL_MS(180) && mean < SL_MS(220));
}

/* ---- the schedule on the test clock ---- */
typedef struct rec {
    atomic_int n;
    int64_t at[8];
    atomic_int dead_rc;
} rec;

static int failing_job(sl_ctx *ctx, void *arg)
{
    rec *r = ((jarg *)arg)->user;
    int i = atomic_load(&r->n);
    r->at[i] = sl_now_ns(); /* attempts of one job never overlap */
    atomic_store(&r->n, i + 1);
    return SL_EIO;
}

static void rec_on_dead(void *h, const sl_pool_job *job, int last_rc)
{
    rec *r = ((jarg *)job->arg)->user;
    atomic_store(&r->dead_rc, last_rc);
    tr_on_dead(((jarg *)job->arg)->t, job, last_rc);
}

static int64_t delayed_now(sl_pool *p)
{
    sl_pool_stats st;
    sl_pool_stats_get(p, &st);
    return (int64_t)st.delayed;
}

static int64_t retried_now(sl_pool *p)
{
    sl_pool_stats st;
    sl_pool_stats_get(p, &st);
    return (int64_t)st.retried;
}

static void test_schedule_on_test_clock(void **state)
{
    const int64_t T0 = SL_SEC(1000);
    sl_test_clock_install(T0);
    tracker t;
    tracker_init(&t, 1);
    rec r = {0};
    logcap lc;
    sl_logger *lg = logcap_new(&lc, SL_LOG_INFO);
    sl_pool_opts o = {.workers = 2,
                      .logger = lg,
                      .retry = {.max_attempts = 4,
                                .base_delay_ns = SL_MS(100),
                                .max_delay_ns = SL_MS(300),
                                .multiplier = 2.0}};
    tracker_hooks(&t, &o);
    o.on_dead = rec_on_dead;
    sl_pool *p;
    assert_int_equal(sl_pool_new(&o, &p), 0);
    jarg *a = jarg_new(&t, 0);
    a->user = &r;
    sl_pool_job j = {.id = "flaky", .fn = failing_job, .arg = a, .arg_free = jarg_free};
    assert_int_equal(sl_pool_submit(p, &j, NULL), 0);

    /* Delays 100, 200, 300 (capped) ms. Before each advance, wait until the retry is in the
     * heap: its due time is computed from the clock when it is scheduled. */
    const int64_t gaps[] = {SL_MS(100), SL_MS(200), SL_MS(300)};
    int64_t expect = T0;
    for (int k = 0; k < 3; k++) {
        assert_true(SL_WAIT_UNTIL(atomic_load(&r.n) == k + 1 && delayed_now(p) == 1, SLACK_MS));
        assert_int_equal(r.at[k], expect);
        sl_test_clock_advance(gaps[k] - 1); /* one ns early: not due */
        assert_int_equal(atomic_load(&r.n), k + 1);
        assert_int_equal(delayed_now(p), 1);
        sl_test_clock_advance(1);
        expect += gaps[k];
    }
    assert_true(SL_WAIT_UNTIL(atomic_load(&t.dead) == 1, SLACK_MS));
    assert_int_equal(atomic_load(&r.n), 4);
    assert_int_equal(r.at[3], expect);
    assert_int_equal(r.at[3] - T0, SL_MS(600));
    assert_int_equal(atomic_load(&r.dead_rc), SL_EIO);
    /* A worker counts a retry after it has put the job in the heap, so (as with the log lines
     * below) the last attempt may die on the other worker before the third count lands. */
    assert_true(SL_WAIT_UNTIL(retried_now(p) == 3, SLACK_MS));
    sl_pool_stats st;
    sl_pool_stats_get(p, &st);
    assert_int_equal(st.started, 4);
    assert_int_equal(st.retried, 3);
    assert_int_equal(st.dead, 1);
    assert_int_equal(st.delayed, 0);
    /* A worker logs "job attempt failed" after it has put the retry in the heap, so with two
     * workers the next attempt may run (and die) on the other one before that line is
     * written: wait for the lines rather than expect them at once. */
    assert_true(SL_WAIT_UNTIL(logcap_count(&lc, "msg=\"job attempt failed\"") == 3, SLACK_MS));
    assert_true(SL_WAIT_UNTIL(logcap_count(&lc, "msg=\"job exhausted retries\"") == 1, SLACK_MS));
    assert_true(logcap_has(&lc, "attempt=3"));
    sl_pool_report rep;
    assert_int_equal(sl_pool_shutdown(p, NULL, &rep), 0);
    assert_int_equal(rep.dead, 1);
    assert_int_equal(atomic_load(&t.freed), 1);
    sl_pool_free(p);
    sl_logger_free(lg);
    tracker_destroy(&t);
    sl_test_clock_uninstall();
}

/* A job waiting for its retry holds no worker: with one worker, other jobs run meanwhile.
 * The retry's delay is far in the future (test clock never moves); shutdown with a done ctx
 * hands it to on_abandoned with its attempt count intact. */
static atomic_int g_ok_runs;
static int ok_job(sl_ctx *ctx, void *arg)
{
    atomic_fetch_add(&g_ok_runs, 1);
    return 0;
}

static void test_backoff_holds_no_worker(void **state)
{
    sl_test_clock_install(SL_SEC(5));
    tracker t;
    tracker_init(&t, 11);
    rec r = {0};
    sl_pool_opts o = {.workers = 1,
                      .logger = sl_log_discard(),
                      .retry = {.max_attempts = 5, .base_delay_ns = SL_SEC(3600)}};
    tracker_hooks(&t, &o);
    sl_pool *p;
    assert_int_equal(sl_pool_new(&o, &p), 0);
    jarg *a = jarg_new(&t, 0);
    a->user = &r;
    sl_pool_job j = {.id = "later", .fn = failing_job, .arg = a, .arg_free = jarg_free};
    assert_int_equal(sl_pool_submit(p, &j, NULL), 0);
    assert_true(SL_WAIT_UNTIL(delayed_now(p) == 1, SLACK_MS));
    for (int i = 1; i <= 10; i++) {
        sl_pool_job k = {.id = "ok", .fn = ok_job, .arg = jarg_new(&t, i), .arg_free = jarg_free};
        assert_int_equal(sl_pool_submit(p, &k, NULL), 0);
    }
    assert_true(SL_WAIT_UNTIL(atomic_load(&t.done) == 10, SLACK_MS));
    sl_ctx *done;
    assert_int_equal(sl_ctx_with_cancel(NULL, &done), 0);
    sl_ctx_cancel(done);
    sl_pool_report rep;
    assert_int_equal(sl_pool_shutdown(p, done, &rep), 0);
    sl_ctx_release(done);
    assert_true(rep.deadline_hit);
    assert_int_equal(rep.abandoned, 1);
    assert_int_equal(rep.succeeded, 10);
    assert_int_equal(atomic_load(&t.kind[0]), R_ABANDONED);
    assert_int_equal(atomic_load(&t.reports[0]), 1);
    assert_int_equal(atomic_load(&r.n), 1);
    assert_int_equal(atomic_load(&t.freed), 11);
    sl_pool_free(p);
    tracker_destroy(&t);
    sl_test_clock_uninstall();
}

/* A drain runs retries that come due before the deadline (test clock moved by the test). */
static void test_drain_runs_due_retries(void **state)
{
    sl_test_clock_install(SL_SEC(5));
    tracker t;
    tracker_init(&t, 1);
    rec r = {0};
    sl_pool_opts o = {.workers = 1,
                      .logger = sl_log_discard(),
                      .retry = {.max_attempts = 2, .base_delay_ns = SL_MS(50)}};
    tracker_hooks(&t, &o);
    sl_pool *p;
    assert_int_equal(sl_pool_new(&o, &p), 0);
    jarg *a = jarg_new(&t, 0);
    a->user = &r;
    sl_pool_job j = {.id = "again", .fn = failing_job, .arg = a, .arg_free = jarg_free};
    assert_int_equal(sl_pool_submit(p, &j, NULL), 0);
    assert_true(SL_WAIT_UNTIL(delayed_now(p) == 1, SLACK_MS));
    sl_ctx *dl;
    assert_int_equal(sl_ctx_with_timeout(NULL, SL_SEC(10), &dl), 0); /* test time */
    sl_test_clock_advance(SL_MS(50));
    sl_pool_report rep;
    assert_int_equal(sl_pool_shutdown(p, dl, &rep), 0);
    sl_ctx_release(dl);
    assert_false(rep.deadline_hit);
    assert_int_equal(rep.dead, 1);
    assert_int_equal(atomic_load(&r.n), 2);
    sl_pool_free(p);
    tracker_destroy(&t);
    sl_test_clock_uninstall();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backoff_formula),
        cmocka_unit_test(test_full_jitter),
        cmocka_unit_test(test_schedule_on_test_clock),
        cmocka_unit_test(test_backoff_holds_no_worker),
        cmocka_unit_test(test_drain_runs_due_retries),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
