/* sl_limiter against golang.org/x/time/rate v0.3.0: every test of rate_test.go, ported as facts
 * (each test is named after the Go test it ports), then sluice's own: exact rounding, limit 0,
 * burst 0, time going backwards, set_limit/set_burst, real waits, and threads.
 *
 * Go's tests compare times to act in multiples of d (rounded to the nearest); the ports do the
 * same through d_since(). Where sluice can say more (exact nanoseconds), the own tests do. */
#include "harness.h"
#include "sluice/limiter.h"
#include "rate/rate_int.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>

#define D    SL_MS(100)
#define T0   SL_SEC(1000)
#define T(i) (T0 + (int64_t)(i)*D)

typedef struct allow_step {
    int64_t t;
    double toks;
    int64_t n;
    bool ok;
} allow_step;

static void run(sl_limiter *lim, const allow_step *steps, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        double toks = sl_limiter_tokens_at(lim, steps[i].t);
        if (toks != steps[i].toks)
            fail_msg("step %zu: tokens_at = %.17g want %.17g", i, toks, steps[i].toks);
        bool ok = sl_limiter_allow_n_at(lim, steps[i].n, steps[i].t);
        if (ok != steps[i].ok) fail_msg("step %zu: allow_n_at = %d want %d", i, ok, steps[i].ok);
    }
}
#define RUN(lim, ...)                                         \
    do {                                                      \
        const allow_step steps_[] = {__VA_ARGS__};            \
        run((lim), steps_, sizeof steps_ / sizeof steps_[0]); \
    } while (0)

static sl_limiter *new_lim(double limit, int64_t burst)
{
    sl_limiter *lim = NULL;
    assert_int_equal(sl_limiter_new(limit, burst, &lim), 0);
    assert_non_null(lim);
    return lim;
}

/* Multiples of d since t0, rounded to the nearest (Go's dSince). */
static int64_t d_since(int64_t t)
{
    return (t - T0 + D / 2) / D;
}

static sl_reservation reserve_max(sl_limiter *lim, int64_t t, int64_t n, int64_t act, bool ok,
                                  int64_t max)
{
    sl_reservation r;
    bool got = sl_limiter_reserve_n_max_at(lim, n, t, max, &r);
    assert_int_equal(got, r.ok);
    if (r.ok != ok || (r.ok && d_since(r.time_to_act) != d_since(act)))
        fail_msg("reserve(t%lld, %lld) = (t%lld, %d) want (t%lld, %d)", (long long)d_since(t),
                 (long long)n, r.ok ? (long long)d_since(r.time_to_act) : -1LL, r.ok,
                 (long long)d_since(act), ok);
    return r;
}

static sl_reservation reserve(sl_limiter *lim, int64_t t, int64_t n, int64_t act, bool ok)
{
    return reserve_max(lim, t, n, act, ok, SL_FOREVER);
}

/* ---- ports of rate_test.go ---------------------------------------------------------------- */

static void TestLimit(void **state)
{
    assert_true(10.0 != SL_RATE_INF);
}

static bool close_enough(double a, double b)
{
    return fabs(a / b - 1.0) < 1e-9;
}

static void TestEvery(void **state)
{
    static const struct {
        int64_t interval;
        double lim;
    } cases[] = {
        {0, SL_RATE_INF},
        {-1, SL_RATE_INF},
        {1, 1e9},
        {SL_US(1), 1e6},
        {SL_MS(1), 1e3},
        {SL_MS(10), 100},
        {SL_MS(100), 10},
        {SL_SEC(1), 1},
        {SL_SEC(2), 0.5},
        {2500000000LL, 0.4},
        {SL_SEC(4), 0.25},
        {SL_SEC(10), 0.1},
        {INT64_MAX, 1e9 / (double)INT64_MAX},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        double got = sl_rate_every(cases[i].interval);
        if (!close_enough(got, cases[i].lim))
            fail_msg("every(%lld) = %g want %g", (long long)cases[i].interval, got, cases[i].lim);
    }
}

static void TestLimiterBurst1(void **state)
{
    sl_limiter *lim = new_lim(10, 1);
    RUN(lim, {T(0), 1, 1, true}, {T(0), 0, 1, false}, {T(0), 0, 1, false}, {T(1), 1, 1, true},
        {T(1), 0, 1, false}, {T(1), 0, 1, false}, {T(2), 1, 2, false}, /* n > burst */
        {T(2), 1, 1, true}, {T(2), 0, 1, false});
    sl_limiter_free(lim);
}

static void TestLimiterBurst3(void **state)
{
    sl_limiter *lim = new_lim(10, 3);
    RUN(lim, {T(0), 3, 2, true}, {T(0), 1, 2, false}, {T(0), 1, 1, true}, {T(0), 0, 1, false},
        {T(1), 1, 4, false}, {T(2), 2, 1, true}, {T(3), 2, 1, true}, {T(4), 2, 1, true},
        {T(4), 1, 1, true}, {T(4), 0, 1, false}, {T(4), 0, 1, false}, {T(9), 3, 3, true},
        {T(9), 0, 0, true});
    sl_limiter_free(lim);
}

static void TestLimiterJumpBackwards(void **state)
{
    sl_limiter *lim = new_lim(10, 3);
    RUN(lim, {T(1), 3, 1, true}, /* start at t1 */
        {T(0), 2, 1, true},      /* jump back to t0: two tokens remain */
        {T(0), 1, 1, true}, {T(0), 0, 1, false}, {T(0), 0, 1, false},
        {T(1), 1, 1, true},                                           /* got a token */
        {T(1), 0, 1, false}, {T(1), 0, 1, false}, {T(2), 1, 1, true}, /* another */
        {T(2), 0, 1, false}, {T(2), 0, 1, false});
    sl_limiter_free(lim);
}

/* golang.org/issues/34861: tokensFromDuration must not truncate nanoseconds. */
static void TestLimiter_noTruncationErrors(void **state)
{
    sl_limiter *lim = new_lim(0.7692307692307693, 1);
    assert_true(sl_limiter_allow(lim));
    sl_limiter_free(lim);
}

typedef struct sim_arg {
    sl_limiter *lim;
    atomic_int *ok;
} sim_arg;

static void *sim_thread(void *p)
{
    sim_arg *a = p;
    if (sl_limiter_allow(a->lim)) atomic_fetch_add(a->ok, 1);
    return NULL;
}

static void TestSimultaneousRequests(void **state)
{
    enum { limit = 1, burst = 5, num_requests = 15 };
    /* Go uses time.Now(): the test clock holds still so that no refill can creep in. */
    sl_test_clock_install(T0);
    sl_limiter *lim = new_lim(limit, burst);
    atomic_int num_ok = 0;
    sim_arg a = {lim, &num_ok};
    pthread_t th[num_requests];
    for (int i = 0; i < num_requests; i++)
        assert_int_equal(pthread_create(&th[i], NULL, sim_thread, &a), 0);
    for (int i = 0; i < num_requests; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(atomic_load(&num_ok), burst);
    sl_limiter_free(lim);
    sl_test_clock_uninstall();
}

static void TestLongRunningQPS(void **state)
{
    enum { limit = 100, burst = 100 };
    sl_test_clock_install(T0);
    sl_limiter *lim = new_lim(limit, burst);
    int64_t start = sl_now_ns(), end = start + SL_SEC(5);
    int num_ok = 0;
    while (sl_now_ns() < end) {
        if (sl_limiter_allow_n(lim, 1)) num_ok++;
        sl_test_clock_advance(SL_MS(2));
    }
    double elapsed = (double)(sl_now_ns() - start);
    double ideal = burst + limit * elapsed / 1e9;
    assert_true(num_ok <= (int)(ideal + 1));
    assert_true(num_ok >= (int)(0.999 * ideal));
    sl_limiter_free(lim);
    sl_test_clock_uninstall();
}

static void TestSimpleReserve(void **state)
{
    sl_limiter *lim = new_lim(10, 2);
    reserve(lim, T(0), 2, T(0), true);
    reserve(lim, T(0), 2, T(2), true);
    reserve(lim, T(3), 2, T(4), true);
    sl_limiter_free(lim);
}

static void TestMix(void **state)
{
    sl_limiter *lim = new_lim(10, 2);
    reserve(lim, T(0), 3, T(1), false); /* n > burst */
    reserve(lim, T(0), 2, T(0), true);
    RUN(lim, {T(1), 1, 2, false}); /* not enough tokens */
    reserve(lim, T(1), 2, T(2), true);
    RUN(lim, {T(1), -1, 1, false}); /* negative tokens */
    RUN(lim, {T(3), 1, 1, true});
    sl_limiter_free(lim);
}

static void TestCancelInvalid(void **state)
{
    sl_limiter *lim = new_lim(10, 2);
    reserve(lim, T(0), 2, T(0), true);
    sl_reservation r = reserve(lim, T(0), 3, T(3), false);
    sl_reservation_cancel_at(&r, T(0)); /* no effect */
    reserve(lim, T(0), 2, T(2), true);  /* no extra tokens */
    sl_limiter_free(lim);
}

static void TestCancelLast(void **state)
{
    sl_limiter *lim = new_lim(10, 2);
    reserve(lim, T(0), 2, T(0), true);
    sl_reservation r = reserve(lim, T(0), 2, T(2), true);
    sl_reservation_cancel_at(&r, T(1)); /* 2 tokens back */
    reserve(lim, T(1), 2, T(2), true);
    sl_limiter_free(lim);
}

static void TestCancelTooLate(void **state)
{
    sl_limiter *lim = new_lim(10, 2);
    reserve(lim, T(0), 2, T(0), true);
    sl_reservation r = reserve(lim, T(0), 2, T(2), true);
    sl_reservation_cancel_at(&r, T(3)); /* too late: no effect */
    reserve(lim, T(3), 2, T(4), true);
    sl_limiter_free(lim);
}

static void TestCancel0Tokens(void **state)
{
    sl_limiter *lim = new_lim(10, 2);
    reserve(lim, T(0), 2, T(0), true);
    sl_reservation r = reserve(lim, T(0), 1, T(1), true);
    reserve(lim, T(0), 1, T(2), true);
    sl_reservation_cancel_at(&r, T(0)); /* 0 tokens back */
    reserve(lim, T(0), 1, T(3), true);
    sl_limiter_free(lim);
}

static void TestCancel1Token(void **state)
{
    sl_limiter *lim = new_lim(10, 2);
    reserve(lim, T(0), 2, T(0), true);
    sl_reservation r = reserve(lim, T(0), 2, T(2), true);
    reserve(lim, T(0), 1, T(3), true);
    sl_reservation_cancel_at(&r, T(2)); /* 1 token back */
    reserve(lim, T(2), 2, T(4), true);
    sl_limiter_free(lim);
}

static void TestCancelMulti(void **state)
{
    sl_limiter *lim = new_lim(10, 4);
    reserve(lim, T(0), 4, T(0), true);
    sl_reservation ra = reserve(lim, T(0), 3, T(3), true);
    reserve(lim, T(0), 1, T(4), true);
    sl_reservation rc = reserve(lim, T(0), 1, T(5), true);
    sl_reservation_cancel_at(&rc, T(1)); /* 1 token back */
    sl_reservation_cancel_at(&ra, T(1)); /* 2 tokens back, as if C was never reserved */
    reserve(lim, T(1), 3, T(5), true);
    sl_limiter_free(lim);
}

static void TestReserveJumpBack(void **state)
{
    sl_limiter *lim = new_lim(10, 2);
    reserve(lim, T(1), 2, T(1), true); /* start at t1 */
    reserve(lim, T(0), 1, T(1), true); /* violates limit and burst */
    reserve(lim, T(2), 2, T(3), true);
    reserve(lim, T(0), 3, 0, false); /* n > burst: state unchanged */
    reserve(lim, T(2), 1, T(4), true);
    reserve_max(lim, T(0), 2, 0, false, D); /* max wait too short: state unchanged */
    reserve(lim, T(2), 1, T(5), true);
    sl_limiter_free(lim);
}

static void TestReserveJumpBackCancel(void **state)
{
    sl_limiter *lim = new_lim(10, 2);
    reserve(lim, T(1), 2, T(1), true); /* start at t1 */
    sl_reservation r = reserve(lim, T(1), 2, T(3), true);
    reserve(lim, T(1), 1, T(4), true);
    sl_reservation_cancel_at(&r, T(0)); /* cancel at t0: 1 token back */
    reserve(lim, T(1), 2, T(4), true);  /* violates limit and burst */
    sl_limiter_free(lim);
}

static void TestReserveSetLimit(void **state)
{
    sl_limiter *lim = new_lim(5, 2);
    reserve(lim, T(0), 2, T(0), true);
    reserve(lim, T(0), 2, T(4), true);
    sl_limiter_set_limit_at(lim, 10, T(2));
    reserve(lim, T(2), 1, T(4), true); /* violates limit and burst */
    sl_limiter_free(lim);
}

static void TestReserveSetBurst(void **state)
{
    sl_limiter *lim = new_lim(5, 2);
    reserve(lim, T(0), 2, T(0), true);
    reserve(lim, T(0), 2, T(4), true);
    sl_limiter_set_burst_at(lim, 4, T(3));
    reserve(lim, T(0), 4, T(9), true); /* violates limit and burst */
    sl_limiter_free(lim);
}

static void TestReserveSetLimitCancel(void **state)
{
    sl_limiter *lim = new_lim(5, 2);
    reserve(lim, T(0), 2, T(0), true);
    sl_reservation r = reserve(lim, T(0), 2, T(4), true);
    sl_limiter_set_limit_at(lim, 10, T(2));
    sl_reservation_cancel_at(&r, T(2)); /* 2 tokens back */
    reserve(lim, T(2), 2, T(3), true);
    sl_limiter_free(lim);
}

static void TestReserveMax(void **state)
{
    sl_limiter *lim = new_lim(10, 2);
    reserve_max(lim, T(0), 2, T(0), true, D);
    reserve_max(lim, T(0), 1, T(1), true, D);  /* close future */
    reserve_max(lim, T(0), 1, T(2), false, D); /* too far */
    sl_limiter_free(lim);
}

/* ---- waits ------------------------------------------------------------------------------
 * Go's runWait uses fake timers; here the test clock drives the park (the limiter parks on a
 * ctx deadline, which runs on sl_now_ns()). A waiter thread calls wait_n_at with the start
 * instant, so the reservation is made at `start` however the threads interleave; the test
 * then moves the clock and checks the waiter is still parked before the time to act and
 * returns at it. */
typedef struct waiter {
    sl_limiter *lim;
    sl_ctx *ctx;
    int64_t n, start;
    int err;
    int64_t returned_at; /* test-clock instant when wait returned */
    atomic_bool done;
    pthread_t th;
} waiter;

static void *waiter_main(void *p)
{
    waiter *w = p;
    w->err = sl_limiter_wait_n_at(w->lim, w->n, w->start, w->ctx);
    w->returned_at = sl_now_ns();
    atomic_store(&w->done, true);
    return NULL;
}

static void waiter_start(waiter *w, sl_limiter *lim, sl_ctx *ctx, int64_t n)
{
    *w = (waiter){.lim = lim, .ctx = ctx, .n = n, .start = sl_now_ns()};
    atomic_init(&w->done, false);
    assert_int_equal(pthread_create(&w->th, NULL, waiter_main, w), 0);
}

static void waiter_join(waiter *w)
{
    pthread_join(w->th, NULL);
}

/* A wait that must not park: runs on this thread and must take no test time. */
static int wait_now(sl_limiter *lim, sl_ctx *ctx, int64_t n)
{
    int64_t start = sl_now_ns();
    int err = sl_limiter_wait_n_at(lim, n, start, ctx);
    assert_int_equal(sl_now_ns(), start);
    return err;
}

/* A wait that parks for want_d multiples of d: the waiter must still be parked 1 ns before. */
static void wait_later(sl_limiter *lim, int64_t n, int want_d, double tokens_when_parked)
{
    waiter w;
    waiter_start(&w, lim, NULL, n);
    assert_true(SL_WAIT_UNTIL(sl_limiter_tokens_at(lim, w.start) == tokens_when_parked, 5000));
    sl_test_clock_set(w.start + want_d * D - 1);
    assert_false(SL_WAIT_UNTIL(atomic_load(&w.done), 20)); /* still parked */
    sl_test_clock_set(w.start + want_d * D);
    assert_true(SL_WAIT_UNTIL(atomic_load(&w.done), 5000));
    waiter_join(&w);
    assert_int_equal(w.err, 0);
    assert_int_equal(d_since(w.returned_at) - d_since(w.start), want_d);
}

static void TestWaitSimple(void **state)
{
    sl_test_clock_install(T0);
    sl_limiter *lim = new_lim(10, 3);

    sl_ctx *ctx;
    assert_int_equal(sl_ctx_with_cancel(NULL, &ctx), 0);
    sl_ctx_cancel(ctx);
    assert_int_equal(wait_now(lim, ctx, 1), SL_ECANCELED); /* already cancelled */
    sl_ctx_release(ctx);

    assert_int_equal(wait_now(lim, NULL, 4), SL_EEXCEEDS); /* exceeds burst */
    assert_int_equal(wait_now(lim, NULL, 2), 0);           /* act now */
    wait_later(lim, 3, 2, -2);                             /* act later: 2d */
    sl_limiter_free(lim);
    sl_test_clock_uninstall();
}

static void TestWaitCancel(void **state)
{
    sl_test_clock_install(T0);
    sl_limiter *lim = new_lim(10, 3);
    sl_ctx *ctx;
    assert_int_equal(sl_ctx_with_cancel(NULL, &ctx), 0);
    assert_int_equal(wait_now(lim, ctx, 2), 0); /* act now: 1 token left */

    waiter w;
    waiter_start(&w, lim, ctx, 3); /* will be cancelled after d */
    assert_true(SL_WAIT_UNTIL(sl_limiter_tokens_at(lim, w.start) == -2, 5000));
    sl_test_clock_advance(D);
    sl_ctx_cancel(ctx);
    assert_true(SL_WAIT_UNTIL(atomic_load(&w.done), 5000));
    waiter_join(&w);
    assert_int_equal(w.err, SL_ECANCELED);
    assert_int_equal(d_since(w.returned_at) - d_since(w.start), 1);
    /* The 3 tokens came back: 2 left (-2 + 1 refilled + 3 restored). */
    assert_true(sl_limiter_tokens_at(lim, sl_now_ns()) == 2);
    assert_int_equal(wait_now(lim, NULL, 2), 0); /* act now after cancel */
    sl_ctx_release(ctx);
    sl_limiter_free(lim);
    sl_test_clock_uninstall();
}

static void TestWaitTimeout(void **state)
{
    sl_test_clock_install(T0);
    sl_limiter *lim = new_lim(10, 3);
    sl_ctx *ctx;
    assert_int_equal(sl_ctx_with_timeout(NULL, D, &ctx), 0);
    assert_int_equal(wait_now(lim, ctx, 2), 0);
    assert_int_equal(wait_now(lim, ctx, 3), SL_ETIMEDOUT); /* would wait 2d > d */
    assert_true(sl_limiter_tokens_at(lim, T0) == 1);       /* nothing consumed */
    sl_ctx_release(ctx);
    sl_limiter_free(lim);
    sl_test_clock_uninstall();
}

static void TestWaitInf(void **state)
{
    sl_test_clock_install(T0);
    sl_limiter *lim = new_lim(SL_RATE_INF, 0);
    assert_int_equal(wait_now(lim, NULL, 3), 0); /* exceeds burst, no error */
    sl_limiter_free(lim);
    sl_test_clock_uninstall();
}

/* A wait that ends before the ctx's deadline parks and succeeds; the next one, which would end
 * after it, fails at once and takes nothing. */
static void TestWaitDeadlineFits(void **state)
{
    sl_test_clock_install(T0);
    sl_limiter *lim = new_lim(10, 3);
    sl_ctx *ctx;
    assert_int_equal(sl_ctx_with_timeout(NULL, 3 * D, &ctx), 0);
    assert_int_equal(wait_now(lim, ctx, 3), 0); /* drained */
    waiter w;
    waiter_start(&w, lim, ctx, 2); /* 2d <= 3d */
    assert_true(SL_WAIT_UNTIL(sl_limiter_tokens_at(lim, w.start) == -2, 5000));
    sl_test_clock_set(w.start + 2 * D);
    assert_true(SL_WAIT_UNTIL(atomic_load(&w.done), 5000));
    waiter_join(&w);
    assert_int_equal(w.err, 0);
    assert_int_equal(wait_now(lim, ctx, 2), SL_ETIMEDOUT); /* would end at 4d > 3d */
    assert_true(sl_limiter_tokens_at(lim, sl_now_ns()) == 0);
    sl_ctx_release(ctx);
    sl_limiter_free(lim);
    sl_test_clock_uninstall();
}

static void TestZeroLimit(void **state)
{
    sl_limiter *lim = new_lim(0, 1);
    assert_true(sl_limiter_allow(lim));
    assert_false(sl_limiter_allow(lim));
    sl_limiter_free(lim);
}

/* ---- sluice's own ----------------------------------------------------------------------- */

/* The conversions are Go's to the last bit (values worked with IEEE doubles following Go's
 * expressions; the naive forms differ, which shows the order matters). */
static void TestConversionRounding(void **state)
{
    /* tokensFromDuration splits seconds and nanoseconds. */
    assert_true(sl__tokens_from_dur(3.0, 13083406482LL) == 39.250219446);
    assert_true((13083406482LL / 1e9) * 3.0 == 39.250219445999996); /* naive: differs */
    assert_true(sl__tokens_from_dur(0.7692307692307693, 50624842503LL) == 38.94218654076923);
    assert_true(sl__tokens_from_dur(0.1, 47102764423LL) == 4.7102764423);
    assert_true(sl__tokens_from_dur(0, SL_SEC(5)) == 0);
    assert_true(sl__tokens_from_dur(-1, SL_SEC(5)) == 0);
    /* durationFromTokens truncates toward zero after seconds * 1e9. */
    assert_int_equal(sl__dur_from_tokens(3.0, 1), 333333333);
    assert_int_equal(sl__dur_from_tokens(10, 2), 200000000);
    assert_int_equal(sl__dur_from_tokens(0.7692307692307693, 0.5), 649999999);
    assert_int_equal(sl__dur_from_tokens(3.0, -1), -333333333);
    assert_int_equal(sl__dur_from_tokens(0, 1), SL_FOREVER);
    /* Beyond int64: saturates (Go on amd64 would give MinInt64). */
    assert_int_equal(sl__dur_from_tokens(1e-12, 1e9), SL_FOREVER);
    /* A reservation's delay is exactly durationFromTokens of the deficit. */
    sl_limiter *lim = new_lim(3, 1);
    sl_reservation r;
    assert_true(sl_limiter_reserve_n_at(lim, 1, T0, &r));
    assert_true(sl_limiter_reserve_n_at(lim, 1, T0, &r));
    assert_int_equal(sl_reservation_delay_from(&r, T0), 333333333);
    assert_int_equal(r.time_to_act, T0 + 333333333);
    assert_int_equal(sl_reservation_delay_from(&r, T0 + SL_SEC(1)), 0);
    sl_limiter_free(lim);
}

static void TestReservationNotOK(void **state)
{
    sl_limiter *lim = new_lim(10, 2);
    sl_reservation r;
    assert_false(sl_limiter_reserve_n_at(lim, 3, T0, &r));
    assert_false(r.ok);
    assert_int_equal(sl_reservation_delay_from(&r, T0), SL_FOREVER);
    sl_reservation_cancel_at(&r, T0); /* nothing */
    assert_true(sl_limiter_tokens_at(lim, T0) == 2);
    sl_limiter_free(lim);
}

static void TestTokens(void **state)
{
    sl_limiter *lim = new_lim(10, 5);
    assert_true(sl_limiter_tokens_at(lim, T(0)) == 5); /* new: full */
    assert_true(sl_limiter_allow_n_at(lim, 5, T(0)));
    assert_true(sl_limiter_tokens_at(lim, T(0)) == 0);
    assert_true(sl_limiter_tokens_at(lim, T(1)) == 1);
    assert_true(sl_limiter_tokens_at(lim, T(3)) == 3);
    assert_true(sl_limiter_tokens_at(lim, T(100)) == 5);   /* capped at burst */
    assert_true(sl_limiter_tokens_at(lim, T(0) - D) == 0); /* before last: no gain */
    assert_int_equal(sl_limiter_burst(lim), 5);
    assert_true(sl_limiter_limit(lim) == 10);
    sl_test_clock_install(T(2));
    assert_true(sl_limiter_tokens(lim) == 2);
    sl_test_clock_uninstall();
    sl_limiter_free(lim);
}

static void TestSetLimit(void **state)
{
    sl_limiter *lim = new_lim(10, 10);
    assert_true(sl_limiter_allow_n_at(lim, 10, T(0)));
    /* Tokens are settled at the old limit first: 2 tokens by t2, then 20/s. */
    sl_limiter_set_limit_at(lim, 20, T(2));
    assert_true(sl_limiter_tokens_at(lim, T(2)) == 2);
    assert_true(sl_limiter_tokens_at(lim, T(3)) == 4);
    assert_true(sl_limiter_limit(lim) == 20);
    /* To 0: no more refill; to Inf: everything allowed, burst ignored. */
    sl_limiter_set_limit_at(lim, 0, T(3));
    assert_true(sl_limiter_tokens_at(lim, T(50)) == 4);
    sl_limiter_set_limit_at(lim, SL_RATE_INF, T(4));
    assert_true(sl_limiter_allow_n_at(lim, 1000, T(4)));
    /* NaN is refused. */
    sl_limiter_set_limit_at(lim, NAN, T(4));
    assert_true(sl_limiter_limit(lim) == SL_RATE_INF);
    sl_limiter_free(lim);
}

static void TestSetBurst(void **state)
{
    sl_limiter *lim = new_lim(10, 2);
    assert_false(sl_limiter_allow_n_at(lim, 3, T(0)));
    sl_limiter_set_burst_at(lim, 4, T(0)); /* tokens stay 2: growing the burst gives nothing */
    assert_true(sl_limiter_tokens_at(lim, T(0)) == 2);
    assert_false(sl_limiter_allow_n_at(lim, 3, T(0)));
    assert_true(sl_limiter_allow_n_at(lim, 3, T(1)));
    /* Shrinking caps the tokens. */
    assert_true(sl_limiter_tokens_at(lim, T(9)) == 4);
    sl_limiter_set_burst_at(lim, 1, T(9));
    assert_true(sl_limiter_tokens_at(lim, T(9)) == 1);
    assert_int_equal(sl_limiter_burst(lim), 1);
    sl_limiter_free(lim);
}

/* Go v0.3.0 with limit 0: each event spends the burst itself; the reservation reports the
 * burst left as its tokens; burst 0 allows nothing unless the limit is Inf. */
static void TestZeroLimitBurst(void **state)
{
    sl_limiter *lim = new_lim(0, 3);
    sl_reservation r;
    assert_true(sl_limiter_reserve_n_at(lim, 2, T0, &r));
    assert_int_equal(r.tokens, 1);
    assert_int_equal(sl_limiter_burst(lim), 1);
    assert_int_equal(sl_reservation_delay_from(&r, T0), 0);
    assert_false(sl_limiter_allow_n_at(lim, 2, T(100))); /* never refills */
    assert_true(sl_limiter_allow_n_at(lim, 1, T(100)));
    assert_int_equal(sl_limiter_burst(lim), 0);
    assert_false(sl_limiter_allow_n_at(lim, 1, T(1000)));
    assert_int_equal(sl_limiter_wait_n_at(lim, 1, T0, NULL), SL_EEXCEEDS);
    sl_limiter_free(lim);

    lim = new_lim(10, 0);
    assert_false(sl_limiter_allow_n_at(lim, 1, T0));
    assert_true(sl_limiter_allow_n_at(lim, 0, T0)); /* n = 0 always fits */
    sl_limiter_free(lim);
    lim = new_lim(SL_RATE_INF, 0);
    assert_true(sl_limiter_allow_n_at(lim, 1000000, T0));
    sl_limiter_free(lim);
}

/* Reservations under Inf keep limit 0 (Go's zero value): cancelling one after the limit
 * became finite restores all its tokens. */
static void TestInfThenCancel(void **state)
{
    sl_limiter *lim = new_lim(SL_RATE_INF, 2);
    sl_reservation r;
    assert_true(sl_limiter_reserve_n_at(lim, 2, T(0), &r));
    assert_true(r.limit == 0);
    sl_reservation_cancel_at(&r, T(0)); /* limit is Inf: nothing */
    sl_limiter_set_limit_at(lim, 10, T(0));
    assert_true(sl_limiter_allow_n_at(lim, 2, T(0)));
    sl_reservation_cancel_at(&r, T(0));
    assert_true(sl_limiter_tokens_at(lim, T(0)) == 2);
    sl_limiter_free(lim);
}

static void TestTimeBackwards(void **state)
{
    sl_limiter *lim = new_lim(10, 5);
    assert_true(sl_limiter_allow_n_at(lim, 5, T(10)));
    /* Going back gains nothing and moves `last` back... */
    assert_false(sl_limiter_allow_n_at(lim, 1, T(5)));
    assert_true(sl_limiter_tokens_at(lim, T(5)) == 0);
    /* ...a successful reservation at the earlier time stores it, and time is measured from
     * there again (Go's behaviour: a backwards jump can hand out extra tokens later). */
    sl_limiter_set_limit_at(lim, 10, T(5));
    assert_true(sl_limiter_tokens_at(lim, T(10)) == 5);
    /* Negative and extreme instants are fine. */
    sl_limiter *l2 = new_lim(1, 1);
    assert_true(sl_limiter_allow_n_at(l2, 1, -SL_SEC(5)));
    assert_false(sl_limiter_allow_n_at(l2, 1, INT64_MIN + 1));
    assert_true(sl_limiter_allow_n_at(l2, 1, INT64_MAX));
    sl_limiter_free(l2);
    sl_limiter_free(lim);
}

/* A new limiter counts from the zero time, which every instant is centuries after: asked
 * about a negative instant it is full, as x/time/rate's (Go: NewLimiter(1/8.7e9, 1).AllowN at
 * epoch-5s and at epoch-1e18ns both allow, TokensAt says 1). Issue 13. */
static void TestNegativeInstantFromZeroTime(void **state)
{
    (void)state;
    const int64_t at[] = {-SL_SEC(5), -1000000000000000000LL, INT64_MIN + 1};
    for (size_t i = 0; i < sizeof at / sizeof at[0]; i++) {
        sl_limiter *lim;
        assert_int_equal(sl_limiter_new(1 / 8.7e9, 1, &lim), 0);
        assert_true(sl_limiter_tokens_at(lim, at[i]) == 1.0);
        assert_true(sl_limiter_allow_n_at(lim, 1, at[i]));
        assert_false(sl_limiter_allow_n_at(lim, 1, at[i]));
        sl_limiter_free(lim);
    }
}

static void TestNewErrors(void **state)
{
    sl_limiter *lim = (sl_limiter *)0x1;
    assert_int_equal(sl_limiter_new(NAN, 1, &lim), SL_EINVAL);
    assert_ptr_equal(lim, (sl_limiter *)0x1);
    assert_int_equal(sl_limiter_new(1, 1, NULL), SL_EINVAL);
    sl_limiter_free(NULL);
}

/* A real wait of a few ms on the real clock, and a ctx cancel that arrives mid-wait. */
static void TestWaitRealClock(void **state)
{
    sl_limiter *lim = new_lim(500, 1); /* a token every 2 ms */
    assert_true(sl_limiter_allow(lim));
    int64_t t0 = sl_mono_ns();
    assert_int_equal(sl_limiter_wait(lim, NULL), 0);
    int64_t waited = sl_mono_ns() - t0;
    assert_true(waited >= SL_MS(1)); /* the token was ~2 ms away when asked for */
    sl_limiter_free(lim);

    lim = new_lim(1, 1); /* 1 s per token: the ctx ends the wait first */
    assert_true(sl_limiter_allow(lim));
    sl_ctx *ctx;
    assert_int_equal(sl_ctx_with_cancel(NULL, &ctx), 0);
    waiter w;
    *(&w) = (waiter){.lim = lim, .ctx = ctx, .n = 1, .start = sl_now_ns()};
    atomic_init(&w.done, false);
    assert_int_equal(pthread_create(&w.th, NULL, waiter_main, &w), 0);
    assert_true(SL_WAIT_UNTIL(sl_limiter_tokens_at(lim, sl_now_ns()) < 0, 5000));
    sl_ctx_cancel(ctx);
    assert_true(SL_WAIT_UNTIL(atomic_load(&w.done), 5000));
    waiter_join(&w);
    assert_int_equal(w.err, SL_ECANCELED);
    assert_true(sl_limiter_tokens_at(lim, sl_now_ns()) >= 0); /* the token came back */
    sl_ctx_release(ctx);
    sl_limiter_free(lim);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(TestLimit),
        cmocka_unit_test(TestEvery),
        cmocka_unit_test(TestLimiterBurst1),
        cmocka_unit_test(TestLimiterBurst3),
        cmocka_unit_test(TestLimiterJumpBackwards),
        cmocka_unit_test(TestLimiter_noTruncationErrors),
        cmocka_unit_test(TestSimultaneousRequests),
        cmocka_unit_test(TestLongRunningQPS),
        cmocka_unit_test(TestSimpleReserve),
        cmocka_unit_test(TestMix),
        cmocka_unit_test(TestCancelInvalid),
        cmocka_unit_test(TestCancelLast),
        cmocka_unit_test(TestCancelTooLate),
        cmocka_unit_test(TestCancel0Tokens),
        cmocka_unit_test(TestCancel1Token),
        cmocka_unit_test(TestCancelMulti),
        cmocka_unit_test(TestReserveJumpBack),
        cmocka_unit_test(TestReserveJumpBackCancel),
        cmocka_unit_test(TestReserveSetLimit),
        cmocka_unit_test(TestReserveSetBurst),
        cmocka_unit_test(TestReserveSetLimitCancel),
        cmocka_unit_test(TestReserveMax),
        cmocka_unit_test(TestWaitSimple),
        cmocka_unit_test(TestWaitCancel),
        cmocka_unit_test(TestWaitTimeout),
        cmocka_unit_test(TestWaitInf),
        cmocka_unit_test(TestWaitDeadlineFits),
        cmocka_unit_test(TestZeroLimit),
        cmocka_unit_test(TestConversionRounding),
        cmocka_unit_test(TestReservationNotOK),
        cmocka_unit_test(TestTokens),
        cmocka_unit_test(TestSetLimit),
        cmocka_unit_test(TestSetBurst),
        cmocka_unit_test(TestZeroLimitBurst),
        cmocka_unit_test(TestInfThenCancel),
        cmocka_unit_test(TestTimeBackwards),
        cmocka_unit_test(TestNewErrors),
        cmocka_unit_test(TestNegativeInstantFromZeroTime),
        cmocka_unit_test(TestWaitRealClock),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
