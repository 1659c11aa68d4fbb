/* sl_once: runs once, every caller gets the result, concurrent callers wait for it. */
#include "harness.h"
#include "sluice/once.h"

#include <pthread.h>
#include <stdatomic.h>

static atomic_int g_runs;
static int init_fail(void *arg)
{
    atomic_fetch_add(&g_runs, 1);
    return SL_EIO;
}

static void test_result_remembered(void **state)
{
    static sl_once once = SL_ONCE_INIT;
    assert_false(sl_once_done(&once));
    assert_int_equal(sl_once_do(&once, init_fail, NULL), SL_EIO);
    assert_true(sl_once_done(&once));
    assert_int_equal(sl_once_do(&once, init_fail, NULL), SL_EIO);
    assert_int_equal(atomic_load(&g_runs), 1);
    assert_int_equal(sl_once_do(NULL, init_fail, NULL), SL_EINVAL);
    assert_int_equal(sl_once_do(&once, NULL, NULL), SL_EINVAL);
    sl_once o2;
    sl_once_init(&o2);
    assert_false(sl_once_done(&o2));
}

/* fn blocks until released, so the others surely arrive while it runs. */
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cv = PTHREAD_COND_INITIALIZER;
static bool g_go;
static atomic_bool g_in_fn;
static int g_value; /* written by fn, read by every caller after sl_once_do: no race */
static int slow_init(void *arg)
{
    atomic_fetch_add(&g_runs, 1);
    atomic_store(&g_in_fn, true);
    pthread_mutex_lock(&g_mu);
    while (!g_go)
        pthread_cond_wait(&g_cv, &g_mu);
    pthread_mutex_unlock(&g_mu);
    g_value = 42;
    return 7;
}
static sl_once g_once = SL_ONCE_INIT;
static atomic_int g_returned;
static void *caller(void *arg)
{
    int *rc = arg;
    *rc = sl_once_do(&g_once, slow_init, NULL);
    assert_int_equal(g_value, 42); /* fn's writes are visible to every caller */
    atomic_fetch_add(&g_returned, 1);
    return NULL;
}

static void test_concurrent_callers_wait(void **state)
{
    atomic_store(&g_runs, 0);
    enum { N = 6 };
    pthread_t t[N];
    int rc[N];
    for (int i = 0; i < N; i++)
        assert_int_equal(pthread_create(&t[i], NULL, caller, &rc[i]), 0);
    assert_true(SL_WAIT_UNTIL(atomic_load(&g_in_fn), 5000));
    /* While fn runs nobody returns (a bounded look). */
    assert_false(SL_WAIT_UNTIL(atomic_load(&g_returned) > 0, 20));
    pthread_mutex_lock(&g_mu);
    g_go = true;
    pthread_cond_broadcast(&g_cv);
    pthread_mutex_unlock(&g_mu);
    for (int i = 0; i < N; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(rc[i], 7);
    }
    assert_int_equal(atomic_load(&g_runs), 1);
    assert_int_equal(sl_once_do(&g_once, slow_init, NULL), 7);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_result_remembered),
        cmocka_unit_test(test_concurrent_callers_wait),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
