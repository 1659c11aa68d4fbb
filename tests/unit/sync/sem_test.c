/* sl_sem: x/sync semaphore semantics — FIFO without starvation, try_acquire respects the queue,
 * over-release rejected, ctx firing while queued (and waking followers when the head leaves),
 * n > size waits for the ctx only. */
#include "harness.h"
#include "sluice/sem.h"

#include <pthread.h>
#include <stdatomic.h>

struct acq {
    sl_sem *s;
    int64_t n;
    sl_ctx *ctx;
    int rc;
    atomic_bool finished;
    pthread_t t;
};
static void *acq_main(void *arg)
{
    struct acq *a = arg;
    a->rc = sl_sem_acquire(a->s, a->n, a->ctx);
    atomic_store(&a->finished, true);
    return NULL;
}
/* Starts an acquire and waits until it is queued (the queue grew to `queued`). */
static void start_acq(struct acq *a, sl_sem *s, int64_t n, sl_ctx *ctx, int queued)
{
    *a = (struct acq){.s = s, .n = n, .ctx = ctx};
    assert_int_equal(pthread_create(&a->t, NULL, acq_main, a), 0);
    if (queued > 0) assert_true(SL_WAIT_UNTIL(sl_sem_waiters(s) == queued, 5000));
}
static int join_acq(struct acq *a)
{
    pthread_join(a->t, NULL);
    return a->rc;
}

static void test_basic(void **state)
{
    sl_sem *s;
    assert_int_equal(sl_sem_new(-1, &s), SL_EINVAL);
    assert_int_equal(sl_sem_new(10, &s), 0);
    assert_int_equal(sl_sem_acquire(s, 4, NULL), 0);
    assert_true(sl_sem_try_acquire(s, 6));
    assert_false(sl_sem_try_acquire(s, 1));
    assert_int_equal(sl_sem_held(s), 10);
    assert_int_equal(sl_sem_release(s, 11), SL_EINVAL); /* more than held: nothing released */
    assert_int_equal(sl_sem_held(s), 10);
    assert_int_equal(sl_sem_release(s, -1), SL_EINVAL);
    assert_int_equal(sl_sem_release(s, 10), 0);
    assert_int_equal(sl_sem_release(s, 1), SL_EINVAL);
    assert_int_equal(sl_sem_acquire(s, -1, NULL), SL_EINVAL);
    assert_int_equal(sl_sem_acquire(s, 0, NULL), 0);
    assert_true(sl_sem_try_acquire(s, 0));
    assert_int_equal(sl_sem_held(s), 0);

    sl_ctx *done;
    assert_int_equal(sl_ctx_with_cancel(NULL, &done), 0);
    sl_ctx_cancel(done);
    assert_int_equal(sl_sem_acquire(s, 1, done), SL_ECANCELED); /* done ctx: fail at once */
    assert_int_equal(sl_sem_held(s), 0);
    sl_ctx_release(done);
    sl_sem_free(s);
    sl_sem_free(NULL);
}

static void test_fifo_large_head_blocks_small(void **state)
{
    sl_sem *s;
    assert_int_equal(sl_sem_new(10, &s), 0);
    assert_int_equal(sl_sem_acquire(s, 5, NULL), 0);
    struct acq big, small;
    start_acq(&big, s, 10, NULL, 1);
    assert_false(sl_sem_try_acquire(s, 1)); /* 5 free, but someone is queued */
    start_acq(&small, s, 1, NULL, 2);
    assert_int_equal(sl_sem_release(s, 5), 0); /* big fits now; small stays behind */
    assert_int_equal(join_acq(&big), 0);
    assert_int_equal(sl_sem_held(s), 10);
    assert_false(atomic_load(&small.finished));
    assert_int_equal(sl_sem_waiters(s), 1);
    assert_int_equal(sl_sem_release(s, 10), 0);
    assert_int_equal(join_acq(&small), 0);
    assert_int_equal(sl_sem_held(s), 1);
    assert_int_equal(sl_sem_release(s, 1), 0);
    sl_sem_free(s);
}

static void test_release_wakes_in_order(void **state)
{
    sl_sem *s;
    assert_int_equal(sl_sem_new(3, &s), 0);
    assert_int_equal(sl_sem_acquire(s, 3, NULL), 0);
    struct acq a, b, c;
    start_acq(&a, s, 1, NULL, 1);
    start_acq(&b, s, 2, NULL, 2);
    start_acq(&c, s, 1, NULL, 3);
    assert_int_equal(sl_sem_release(s, 2), 0); /* a (1) fits, b (2) does not: c waits too */
    assert_int_equal(join_acq(&a), 0);
    assert_int_equal(sl_sem_waiters(s), 2);
    assert_int_equal(sl_sem_release(s, 1), 0); /* 2 free: b, then c does not fit */
    assert_int_equal(join_acq(&b), 0);
    assert_int_equal(sl_sem_waiters(s), 1);
    assert_int_equal(sl_sem_release(s, 2), 0); /* c */
    assert_int_equal(join_acq(&c), 0);
    assert_int_equal(sl_sem_held(s), 2);
    assert_int_equal(sl_sem_release(s, 2), 0);
    sl_sem_free(s);
}

static void test_cancel_head_wakes_followers(void **state)
{
    /* x/sync TestAllocCancelDoesntStarve: a cancelled large head must not strand small ones. */
    sl_sem *s;
    assert_int_equal(sl_sem_new(10, &s), 0);
    assert_int_equal(sl_sem_acquire(s, 1, NULL), 0);
    sl_ctx *ctx;
    assert_int_equal(sl_ctx_with_cancel(NULL, &ctx), 0);
    struct acq big, small;
    start_acq(&big, s, 10, ctx, 1);
    start_acq(&small, s, 1, NULL, 2);
    sl_ctx_cancel(ctx);
    assert_int_equal(join_acq(&big), SL_ECANCELED);
    assert_int_equal(join_acq(&small), 0);
    assert_int_equal(sl_sem_held(s), 2);
    assert_int_equal(sl_sem_waiters(s), 0);
    sl_ctx_release(ctx);

    /* A cancelled waiter in the middle leaves without disturbing the others. */
    assert_int_equal(sl_sem_acquire(s, 8, NULL), 0); /* full */
    assert_int_equal(sl_ctx_with_cancel(NULL, &ctx), 0);
    struct acq a, mid, c;
    start_acq(&a, s, 2, NULL, 1);
    start_acq(&mid, s, 3, ctx, 2);
    start_acq(&c, s, 4, NULL, 3);
    sl_ctx_cancel_with(ctx, SL_ESHUTDOWN);
    assert_int_equal(join_acq(&mid), SL_ESHUTDOWN);
    assert_int_equal(sl_sem_waiters(s), 2);
    assert_int_equal(sl_sem_release(s, 6), 0); /* 6 free: a (2) then c (4) */
    assert_int_equal(join_acq(&a), 0);
    assert_int_equal(join_acq(&c), 0);
    assert_int_equal(sl_sem_held(s), 10);
    assert_int_equal(sl_sem_release(s, 10), 0);
    sl_ctx_release(ctx);
    sl_sem_free(s);
}

static void test_deadline_while_queued(void **state)
{
    sl_sem *s;
    assert_int_equal(sl_sem_new(1, &s), 0);
    assert_int_equal(sl_sem_acquire(s, 1, NULL), 0);
    sl_test_clock_install(SL_SEC(100));
    sl_ctx *ctx;
    assert_int_equal(sl_ctx_with_timeout(NULL, SL_MS(50), &ctx), 0);
    struct acq a;
    start_acq(&a, s, 1, ctx, 1);
    sl_test_clock_advance(SL_MS(50));
    assert_int_equal(join_acq(&a), SL_ETIMEDOUT);
    assert_int_equal(sl_sem_waiters(s), 0);
    assert_int_equal(sl_sem_held(s), 1);
    sl_ctx_release(ctx);
    sl_test_clock_uninstall();
    assert_int_equal(sl_sem_release(s, 1), 0);
    sl_sem_free(s);
}

static void test_more_than_size(void **state)
{
    sl_sem *s;
    assert_int_equal(sl_sem_new(2, &s), 0);
    assert_int_equal(sl_sem_acquire(s, 3, NULL), SL_EDEADLK); /* could only hang */
    sl_ctx *ctx;
    assert_int_equal(sl_ctx_with_cancel(NULL, &ctx), 0);
    struct acq big;
    start_acq(&big, s, 3, ctx, 0);
    /* It does not queue: others proceed while it waits for its ctx. */
    assert_int_equal(sl_sem_acquire(s, 2, NULL), 0);
    assert_int_equal(sl_sem_release(s, 2), 0);
    assert_false(atomic_load(&big.finished));
    assert_int_equal(sl_sem_waiters(s), 0);
    sl_ctx_cancel(ctx);
    assert_int_equal(join_acq(&big), SL_ECANCELED);
    assert_int_equal(sl_sem_held(s), 0);
    sl_ctx_release(ctx);
    sl_sem_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basic),
        cmocka_unit_test(test_fifo_large_head_blocks_small),
        cmocka_unit_test(test_release_wakes_in_order),
        cmocka_unit_test(test_cancel_head_wakes_followers),
        cmocka_unit_test(test_deadline_while_queued),
        cmocka_unit_test(test_more_than_size),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
