/* sl_wg: counting, wake on zero, negative counter rejected, ctx firing while blocked. */
#include "harness.h"
#include "sluice/wg.h"

#include <pthread.h>
#include <stdatomic.h>

static void test_basic(void **state)
{
    sl_wg wg;
    assert_int_equal(sl_wg_init(&wg), 0);
    assert_int_equal(sl_wg_wait(&wg, NULL), 0); /* zero: at once */
    assert_int_equal(sl_wg_add(&wg, 3), 0);
    assert_int_equal(sl_wg_count(&wg), 3);
    assert_int_equal(sl_wg_done(&wg), 0);
    assert_int_equal(sl_wg_add(&wg, -2), 0);
    assert_int_equal(sl_wg_count(&wg), 0);
    assert_int_equal(sl_wg_done(&wg), SL_EINVAL); /* would go negative: unchanged */
    assert_int_equal(sl_wg_count(&wg), 0);
    assert_int_equal(sl_wg_add(&wg, 1), 0);
    assert_int_equal(sl_wg_add(&wg, -2), SL_EINVAL);
    assert_int_equal(sl_wg_count(&wg), 1);
    assert_int_equal(sl_wg_add(&wg, INT32_MAX), SL_EINVAL);
    assert_int_equal(sl_wg_done(&wg), 0);
    sl_wg_destroy(&wg);
}

struct job {
    sl_wg *wg;
    atomic_int *done;
};
static void *worker(void *arg)
{
    struct job *j = arg;
    atomic_fetch_add(j->done, 1);
    sl_wg_done(j->wg);
    return NULL;
}
struct waiter_arg {
    sl_wg *wg;
    sl_ctx *ctx;
    int rc;
    atomic_bool started;
};
static void *waiter(void *arg)
{
    struct waiter_arg *w = arg;
    atomic_store(&w->started, true);
    w->rc = sl_wg_wait(w->wg, w->ctx);
    return NULL;
}

static void test_wait_for_workers(void **state)
{
    sl_wg wg;
    assert_int_equal(sl_wg_init(&wg), 0);
    atomic_int done = 0;
    enum { N = 8 };
    pthread_t t[N], wt[3];
    struct job j = {&wg, &done};
    struct waiter_arg wa[3] = {{.wg = &wg}, {.wg = &wg}, {.wg = &wg}};
    assert_int_equal(sl_wg_add(&wg, N), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(pthread_create(&wt[i], NULL, waiter, &wa[i]), 0);
    for (int i = 0; i < N; i++)
        assert_int_equal(pthread_create(&t[i], NULL, worker, &j), 0);
    assert_int_equal(sl_wg_wait(&wg, NULL), 0);
    assert_int_equal(atomic_load(&done), N); /* wait returned only after every done */
    for (int i = 0; i < N; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < 3; i++) {
        pthread_join(wt[i], NULL);
        assert_int_equal(wa[i].rc, 0);
    }
    sl_wg_destroy(&wg);
}

static void test_ctx_fires_while_waiting(void **state)
{
    sl_wg wg;
    assert_int_equal(sl_wg_init(&wg), 0);
    assert_int_equal(sl_wg_add(&wg, 1), 0);
    struct waiter_arg w = {.wg = &wg};
    assert_int_equal(sl_ctx_with_cancel(NULL, &w.ctx), 0);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, waiter, &w), 0);
    assert_true(SL_WAIT_UNTIL(atomic_load(&w.started), 5000));
    sl_ctx_cancel_with(w.ctx, SL_ESHUTDOWN);
    pthread_join(t, NULL);
    assert_int_equal(w.rc, SL_ESHUTDOWN);
    assert_int_equal(sl_wg_count(&wg), 1);                  /* untouched */
    assert_int_equal(sl_wg_wait(&wg, w.ctx), SL_ESHUTDOWN); /* done ctx: at once */
    sl_ctx_release(w.ctx);

    /* A deadline on the test clock. */
    sl_test_clock_install(SL_SEC(10));
    assert_int_equal(sl_ctx_with_timeout(NULL, SL_SEC(1), &w.ctx), 0);
    atomic_store(&w.started, false);
    assert_int_equal(pthread_create(&t, NULL, waiter, &w), 0);
    assert_true(SL_WAIT_UNTIL(atomic_load(&w.started), 5000));
    sl_test_clock_advance(SL_SEC(1));
    pthread_join(t, NULL);
    assert_int_equal(w.rc, SL_ETIMEDOUT);
    sl_ctx_release(w.ctx);
    sl_test_clock_uninstall();

    assert_int_equal(sl_wg_done(&wg), 0);
    assert_int_equal(sl_wg_wait(&wg, NULL), 0);
    sl_wg_destroy(&wg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basic),
        cmocka_unit_test(test_wait_for_workers),
        cmocka_unit_test(test_ctx_fires_while_waiting),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
