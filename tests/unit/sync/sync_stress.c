/* sl_sem, sl_wg, sl_once under contention (about 1 s each). Invariants: the tokens in use never
 * exceed the size and all return; wg waiters always come back (woken by zero or by their ctx);
 * each once runs its fn exactly once per round and everyone gets its result. */
#include "harness.h"
#include "sluice/once.h"
#include "sluice/sem.h"
#include "sluice/wg.h"

#include <pthread.h>
#include <stdatomic.h>

#define RUN_MS 1000
#define SIZE   8

static atomic_bool g_stop;
static atomic_long g_ok, g_timeouts;
static atomic_int g_in_use;

static unsigned rnd(unsigned *s)
{
    *s = *s * 1103515245u + 12345u;
    return (*s >> 16) & 0x7fff;
}

static void run_for(int ms)
{
    sl_ctx_wait_for(NULL, SL_MS(ms)); /* parked: the run's length, not coordination */
    atomic_store(&g_stop, true);
}

/* ---- sem -------------------------------------------------------------------------------- */

static sl_sem *g_sem;
static void *sem_worker(void *arg)
{
    unsigned seed = (unsigned)(uintptr_t)arg + 1;
    while (!atomic_load(&g_stop)) {
        int64_t n = 1 + rnd(&seed) % SIZE;
        sl_ctx *ctx = NULL;
        if (rnd(&seed) % 3 == 0)
            assert_int_equal(sl_ctx_with_timeout(NULL, SL_US(rnd(&seed) % 500), &ctx), 0);
        int rc = rnd(&seed) % 5 == 0 ? (sl_sem_try_acquire(g_sem, n) ? 0 : SL_EAGAIN)
                                     : sl_sem_acquire(g_sem, n, ctx);
        if (rc == 0) {
            int used = atomic_fetch_add(&g_in_use, (int)n) + (int)n;
            if (used > SIZE) fail_msg("%d tokens in use of %d", used, SIZE);
            atomic_fetch_sub(&g_in_use, (int)n);
            assert_int_equal(sl_sem_release(g_sem, n), 0);
            atomic_fetch_add(&g_ok, 1);
        } else if (rc == SL_ETIMEDOUT) {
            atomic_fetch_add(&g_timeouts, 1);
        } else {
            assert_int_equal(rc, SL_EAGAIN);
        }
        sl_ctx_release(ctx);
    }
    return NULL;
}

static void test_sem(void **state)
{
    atomic_store(&g_stop, false);
    assert_int_equal(sl_sem_new(SIZE, &g_sem), 0);
    enum { N = 6 };
    pthread_t t[N];
    for (int i = 0; i < N; i++)
        assert_int_equal(pthread_create(&t[i], NULL, sem_worker, (void *)(uintptr_t)i), 0);
    run_for(RUN_MS);
    for (int i = 0; i < N; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(sl_sem_held(g_sem), 0);
    assert_int_equal(sl_sem_waiters(g_sem), 0);
    print_message("sem: %ld acquired, %ld timed out\n", atomic_load(&g_ok),
                  atomic_load(&g_timeouts));
    assert_true(atomic_load(&g_ok) > 100);
    sl_sem_free(g_sem);
}

/* ---- wg --------------------------------------------------------------------------------- */

static sl_wg g_wg;
static atomic_long g_wg_waits;
static void *wg_adder(void *arg)
{
    unsigned seed = (unsigned)(uintptr_t)arg + 11;
    while (!atomic_load(&g_stop)) {
        int k = 1 + (int)(rnd(&seed) % 3);
        assert_int_equal(sl_wg_add(&g_wg, k), 0);
        for (int i = 0; i < k; i++)
            assert_int_equal(sl_wg_done(&g_wg), 0);
    }
    return NULL;
}
static void *wg_waiter(void *arg)
{
    unsigned seed = (unsigned)(uintptr_t)arg + 5;
    while (!atomic_load(&g_stop)) {
        sl_ctx *ctx;
        assert_int_equal(sl_ctx_with_timeout(NULL, SL_US(rnd(&seed) % 300), &ctx), 0);
        int rc = sl_wg_wait(&g_wg, ctx);
        assert_true(rc == 0 || rc == SL_ETIMEDOUT);
        sl_ctx_release(ctx);
        atomic_fetch_add(&g_wg_waits, 1);
    }
    return NULL;
}

static void test_wg(void **state)
{
    atomic_store(&g_stop, false);
    assert_int_equal(sl_wg_init(&g_wg), 0);
    enum { A = 3, W = 3 };
    pthread_t a[A], w[W];
    for (int i = 0; i < A; i++)
        assert_int_equal(pthread_create(&a[i], NULL, wg_adder, (void *)(uintptr_t)i), 0);
    for (int i = 0; i < W; i++)
        assert_int_equal(pthread_create(&w[i], NULL, wg_waiter, (void *)(uintptr_t)i), 0);
    run_for(RUN_MS);
    for (int i = 0; i < A; i++)
        pthread_join(a[i], NULL);
    for (int i = 0; i < W; i++)
        pthread_join(w[i], NULL);
    assert_int_equal(sl_wg_count(&g_wg), 0);
    assert_int_equal(sl_wg_wait(&g_wg, NULL), 0);
    assert_true(atomic_load(&g_wg_waits) > 10);
    sl_wg_destroy(&g_wg);
}

/* ---- once ------------------------------------------------------------------------------- */

enum { ONCE_THREADS = 4, ROUNDS = 300 };
static sl_once g_onces[ROUNDS];
static atomic_int g_runs[ROUNDS];
static int once_fn(void *arg)
{
    int r = (int)(uintptr_t)arg;
    atomic_fetch_add(&g_runs[r], 1);
    return r + 1;
}
static void *once_worker(void *arg)
{
    for (int r = 0; r < ROUNDS; r++)
        if (sl_once_do(&g_onces[r], once_fn, (void *)(uintptr_t)r) != r + 1) fail_msg("result");
    return NULL;
}

static void test_once(void **state)
{
    for (int r = 0; r < ROUNDS; r++)
        sl_once_init(&g_onces[r]);
    pthread_t t[ONCE_THREADS];
    for (int i = 0; i < ONCE_THREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, once_worker, NULL), 0);
    for (int i = 0; i < ONCE_THREADS; i++)
        pthread_join(t[i], NULL);
    for (int r = 0; r < ROUNDS; r++)
        assert_int_equal(atomic_load(&g_runs[r]), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sem),
        cmocka_unit_test(test_wg),
        cmocka_unit_test(test_once),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
