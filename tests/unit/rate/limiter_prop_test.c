/* Properties of the token bucket on random operation sequences (fixed seeds, explicit times),
 * and threads hammering one limiter (run under TSan by `make test-race`).
 *
 * - allow_n at t succeeds exactly when reserve_n at t would be granted with delay 0, and then
 *   leaves the same state, bit for bit;
 * - the public limiter and the pure core agree;
 * - cancel right after reserve gives the tokens back (to rounding), and a cancel behind a
 *   later reservation gives back only what that reservation did not take;
 * - tokens never exceed the burst, whatever mix of operations and time jumps;
 * - two threads on one limiter, on explicit times: allowed = burst + rate x window exactly. */
#include "harness.h"
#include "sluice/limiter.h"
#include "rate/rate_int.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#define T0 SL_SEC(1000)

static uint64_t rng_state;
static uint64_t rnd(void)
{
    uint64_t x = rng_state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    rng_state = x;
    return x * 0x2545F4914F6CDD1DULL;
}
static int64_t rnd_range(int64_t lo, int64_t hi) /* [lo, hi) */
{
    return lo + (int64_t)(rnd() % (uint64_t)(hi - lo));
}

static const double k_limits[] = {0.5, 1, 3, 7.7, 10, 1000, 0.7692307692307693, 1e6};

static int64_t step_time(int64_t t)
{
    int r = (int)rnd_range(0, 100);
    if (r < 5) return t - rnd_range(0, SL_MS(500)); /* backwards */
    if (r < 15) return t;                           /* same instant */
    return t + rnd_range(0, SL_MS(300));
}

static void test_allow_iff_reserve_without_delay(void **state)
{
    rng_state = 0x5eed0001;
    for (int round = 0; round < 40; round++) {
        double limit = k_limits[round % 8];
        int64_t burst = rnd_range(1, 12);
        sl__tb s;
        sl__tb_init(&s);
        sl_limiter *lim;
        assert_int_equal(sl_limiter_new(limit, burst, &lim), 0);
        int64_t t = T0;
        int allowed = 0;
        for (int i = 0; i < 2000; i++) {
            t = step_time(t);
            int64_t n = rnd_range(0, burst + 2);
            sl__tb s2 = s;
            int64_t b1 = burst, b2 = burst;
            sl_reservation ra, rb;
            sl__tb_reserve(&s, limit, &b1, t, n, 0, &ra);
            sl__tb_reserve(&s2, limit, &b2, t, n, SL_FOREVER, &rb);
            bool rb_now = rb.ok && sl_reservation_delay_from(&rb, t) == 0;
            if (ra.ok != rb_now)
                fail_msg("round %d step %d: allow %d, reserve ok %d delay %lld", round, i, ra.ok,
                         rb.ok, (long long)sl_reservation_delay_from(&rb, t));
            if (ra.ok) {
                assert_memory_equal(&s, &s2, sizeof s);
                allowed++;
            }
            /* The public limiter, fed the same operation, agrees with the core. */
            assert_int_equal(sl_limiter_allow_n_at(lim, n, t), ra.ok);
            assert_true(sl_limiter_tokens_at(lim, t) == sl__tb_advance(&s, limit, burst, t));
        }
        assert_true(allowed > 0);
        sl_limiter_free(lim);
    }
}

static void test_cancel_restores(void **state)
{
    rng_state = 0x5eed0002;
    for (int round = 0; round < 200; round++) {
        double limit = k_limits[round % 8];
        int64_t burst = rnd_range(1, 20);
        sl_limiter *lim;
        assert_int_equal(sl_limiter_new(limit, burst, &lim), 0);
        int64_t t = T0;
        for (int i = 0; i < 50; i++) {
            t = step_time(t);
            (void)sl_limiter_allow_n_at(lim, rnd_range(0, burst + 1), t);
        }
        /* A reservation cancelled at once gives everything back. */
        double before = sl_limiter_tokens_at(lim, t);
        int64_t n = rnd_range(1, burst + 1);
        sl_reservation r;
        assert_true(sl_limiter_reserve_n_at(lim, n, t, &r));
        assert_true(fabs(sl_limiter_tokens_at(lim, t) - (before - (double)n)) <= 1e-9 * burst);
        sl_reservation_cancel_at(&r, t);
        double after = sl_limiter_tokens_at(lim, t);
        assert_true(fabs(after - before) <= 1e-9 * (fabs(before) + (double)n));
        assert_true(after <= (double)burst);

        /* Behind a later reservation r2 of n2 tokens, cancelling r1 (n1) gives back only
         * max(0, n1 - n2): r2's time to act was set by r1's debt. Drain first so that both
         * are in debt. */
        t += SL_SEC(10000);
        assert_true(sl_limiter_allow_n_at(lim, burst, t));
        int64_t n1 = rnd_range(1, burst + 1), n2 = rnd_range(1, burst + 1);
        sl_reservation r1, r2;
        assert_true(sl_limiter_reserve_n_at(lim, n1, t, &r1));
        assert_true(sl_limiter_reserve_n_at(lim, n2, t, &r2));
        assert_true(r2.time_to_act > r1.time_to_act);
        sl_reservation_cancel_at(&r1, t);
        double want = -(double)(n1 + n2) + (n1 > n2 ? (double)(n1 - n2) : 0);
        double got = sl_limiter_tokens_at(lim, t);
        if (fabs(got - want) > 1e-6 * (double)burst)
            fail_msg("limit %g n1 %lld n2 %lld: tokens %.17g want %.17g", limit, (long long)n1,
                     (long long)n2, got, want);
        /* Cancelling after the time to act does nothing. */
        sl_reservation_cancel_at(&r2, r2.time_to_act + 1);
        assert_true(sl_limiter_tokens_at(lim, t) == got);
        sl_limiter_free(lim);
    }
}

static void test_tokens_never_exceed_burst(void **state)
{
    rng_state = 0x5eed0003;
    for (int round = 0; round < 40; round++) {
        double limit = k_limits[round % 8];
        int64_t burst = rnd_range(0, 10);
        sl_limiter *lim;
        assert_int_equal(sl_limiter_new(limit, burst, &lim), 0);
        sl_reservation ring[8];
        memset(ring, 0, sizeof ring);
        int64_t t = T0;
        for (int i = 0; i < 3000; i++) {
            t = step_time(t);
            int op = (int)rnd_range(0, 100);
            if (op < 40) {
                (void)sl_limiter_allow_n_at(lim, rnd_range(0, burst + 2), t);
            } else if (op < 70) {
                (void)sl_limiter_reserve_n_at(lim, rnd_range(0, burst + 2), t, &ring[i % 8]);
            } else if (op < 85) {
                sl_reservation *r = &ring[rnd_range(0, 8)];
                sl_reservation_cancel_at(r, t);
                r->ok = false; /* cancel once */
            } else if (op < 93) {
                burst = rnd_range(0, 10);
                sl_limiter_set_burst_at(lim, burst, t);
            } else {
                limit = k_limits[rnd_range(0, 8)];
                sl_limiter_set_limit_at(lim, limit, t);
            }
            double tok = sl_limiter_tokens_at(lim, t);
            if (tok > (double)burst)
                fail_msg("round %d step %d: tokens %.17g > burst %lld", round, i, tok,
                         (long long)burst);
            assert_true(sl_limiter_tokens_at(lim, t + SL_SEC(3600)) <= (double)burst);
        }
        sl_limiter_free(lim);
    }
}

/* ---- threads ------------------------------------------------------------------------------ */

enum { HAMMER_STEPS = 400, HAMMER_BURST = 100 };

typedef struct hammer {
    sl_limiter *lim;
    pthread_barrier_t *bar;
    int64_t allowed;
} hammer;

/* At each step every thread takes tokens at the same instant until refused; the barrier keeps
 * the threads on the same instant, so time never goes backwards for the limiter. */
static void *hammer_main(void *p)
{
    hammer *h = p;
    for (int step = 0; step <= HAMMER_STEPS; step++) {
        int64_t t = T0 + step * SL_MS(125);
        while (sl_limiter_allow_n_at(h->lim, 1, t))
            h->allowed++;
        pthread_barrier_wait(h->bar);
    }
    return NULL;
}

static void test_two_threads_exact_count(void **state)
{
    /* 8/s and steps of 1/8 s: each step adds exactly one token (0.125 is exact in binary). */
    sl_limiter *lim;
    assert_int_equal(sl_limiter_new(8, HAMMER_BURST, &lim), 0);
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, 2);
    hammer h[2] = {{lim, &bar, 0}, {lim, &bar, 0}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&th[i], NULL, hammer_main, &h[i]), 0);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&bar);
    /* window = HAMMER_STEPS x 1/8 s; rate x window = HAMMER_STEPS tokens. */
    assert_int_equal(h[0].allowed + h[1].allowed, HAMMER_BURST + HAMMER_STEPS);
    sl_limiter_free(lim);
}

typedef struct real_hammer {
    sl_limiter *lim;
    int64_t allowed, tried;
} real_hammer;

static void *real_hammer_main(void *p)
{
    real_hammer *h = p;
    for (int i = 0; i < 200000; i++) {
        h->tried++;
        if (sl_limiter_allow(h->lim)) h->allowed++;
    }
    return NULL;
}

/* The real clock: never more than burst + rate x elapsed (+1 for rounding). */
static void test_two_threads_real_clock(void **state)
{
    sl_limiter *lim;
    assert_int_equal(sl_limiter_new(10000, 50, &lim), 0);
    int64_t start = sl_now_ns();
    real_hammer h[2] = {{lim, 0, 0}, {lim, 0, 0}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&th[i], NULL, real_hammer_main, &h[i]), 0);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    double elapsed = (double)(sl_now_ns() - start) / 1e9;
    int64_t allowed = h[0].allowed + h[1].allowed;
    assert_true(allowed >= 50);
    assert_true((double)allowed <= 50 + 10000 * elapsed + 1);
    sl_limiter_free(lim);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_allow_iff_reserve_without_delay),
        cmocka_unit_test(test_cancel_restores),
        cmocka_unit_test(test_tokens_never_exceed_burst),
        cmocka_unit_test(test_two_threads_exact_count),
        cmocka_unit_test(test_two_threads_real_clock),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
