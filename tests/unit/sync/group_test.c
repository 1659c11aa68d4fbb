/* sl_group and sl_executor: the limit is never exceeded, the first error wins and cancels the
 * ctx, wait returns only after every task ended, try_go and go_ctx at the limit, nested groups
 * on a 2-thread executor (the deadlock the helping waiter prevents), and the executors' threads
 * are joined (the default one too). */
#include "harness.h"
#include "sluice/chan.h"
#include "sluice/group.h"
#include "sync/group_int.h"

#include <pthread.h>
#include <stdatomic.h>

/* ---- limit ---------------------------------------------------------------------------------- */

typedef struct conc {
    atomic_int now, max, ran;
} conc;

static int track(sl_ctx *ctx, void *arg)
{
    conc *c = arg;
    int n = atomic_fetch_add(&c->now, 1) + 1;
    int m = atomic_load(&c->max);
    while (n > m && !atomic_compare_exchange_weak(&c->max, &m, n)) {
    }
    for (volatile int i = 0; i < 2000; i++) {
    }
    atomic_fetch_add(&c->ran, 1);
    atomic_fetch_sub(&c->now, 1);
    return 0;
}

static void test_limit_honoured(void **state)
{
    sl_executor *ex;
    assert_int_equal(sl_executor_new(4, &ex), 0);
    assert_int_equal(sl_executor_threads(ex), 4);
    for (int limit = 1; limit <= 3; limit++) {
        sl_group *g;
        assert_int_equal(sl_group_new_on(NULL, ex, &g), 0);
        assert_int_equal(sl_group_set_limit(g, limit), 0);
        conc c = {0};
        for (int i = 0; i < 300; i++)
            assert_int_equal(sl_group_go(g, track, &c), 0);
        assert_int_equal(sl_group_wait(g), 0);
        assert_int_equal(atomic_load(&c.ran), 300);
        assert_true(atomic_load(&c.max) >= 1);
        assert_true(atomic_load(&c.max) <= limit);
        sl_group_free(g);
    }
    sl_executor_free(ex);
}

/* ---- first error ---------------------------------------------------------------------------- */

typedef struct errs {
    atomic_int started;
    atomic_int ended;
    atomic_int saw_cancel;
} errs;

static int fail_fast(sl_ctx *ctx, void *arg)
{
    errs *e = arg;
    atomic_fetch_add(&e->ended, 1);
    return SL_EIO;
}

static int wait_for_cancel(sl_ctx *ctx, void *arg)
{
    errs *e = arg;
    atomic_fetch_add(&e->started, 1);
    /* Only the group's cancellation can end this wait within 10 s. */
    int rc = sl_ctx_wait_for(ctx, SL_SEC(10));
    if (rc == SL_ECANCELED) atomic_fetch_add(&e->saw_cancel, 1);
    atomic_fetch_add(&e->ended, 1);
    return rc == SL_ECANCELED ? SL_ECANCELED : SL_EFAILED;
}

static void test_first_error_cancels(void **state)
{
    sl_executor *ex;
    assert_int_equal(sl_executor_new(4, &ex), 0);
    sl_group *g;
    assert_int_equal(sl_group_new_on(NULL, ex, &g), 0);
    sl_ctx *ctx = sl_group_ctx(g);
    assert_false(sl_ctx_done(ctx));
    errs e = {0};
    for (int i = 0; i < 3; i++)
        assert_int_equal(sl_group_go(g, wait_for_cancel, &e), 0);
    /* Three tasks block on the ctx; then one fails: its error cancels them, and wait returns
     * that first error, not their SL_ECANCELED. */
    assert_true(SL_WAIT_UNTIL(atomic_load(&e.started) == 3, 5000));
    assert_int_equal(sl_group_go(g, fail_fast, &e), 0);
    assert_int_equal(sl_group_wait(g), SL_EIO);
    assert_int_equal(atomic_load(&e.ended), 4); /* wait returned after every task ended */
    assert_int_equal(atomic_load(&e.saw_cancel), 3);
    assert_int_equal(sl_ctx_err(ctx), SL_ECANCELED);
    sl_group_free(g);
    sl_executor_free(ex);
}

static int ok_task(sl_ctx *ctx, void *arg)
{
    atomic_fetch_add((atomic_int *)arg, 1);
    return 0;
}

static void test_wait_cancels_and_parent(void **state)
{
    /* No error: wait returns 0 and still cancels the derived ctx (Go's Wait does). */
    sl_ctx *parent;
    assert_int_equal(sl_ctx_with_cancel(NULL, &parent), 0);
    sl_group *g;
    assert_int_equal(sl_group_new(parent, &g), 0);
    atomic_int n = 0;
    for (int i = 0; i < 50; i++)
        assert_int_equal(sl_group_go(g, ok_task, &n), 0);
    assert_int_equal(sl_group_wait(g), 0);
    assert_int_equal(atomic_load(&n), 50);
    assert_true(sl_ctx_done(sl_group_ctx(g)));
    assert_false(sl_ctx_done(parent)); /* never the parent */
    sl_group_free(g);

    /* A cancelled parent cancels the group's ctx. */
    assert_int_equal(sl_group_new(parent, &g), 0);
    sl_ctx_cancel(parent);
    assert_int_equal(sl_ctx_err(sl_group_ctx(g)), SL_ECANCELED);
    assert_int_equal(sl_group_wait(g), 0); /* no tasks: nothing failed */
    sl_group_free(g);
    sl_ctx_release(parent);

    assert_int_equal(sl_group_go(NULL, ok_task, &n), SL_EINVAL);
    assert_int_equal(sl_group_new(NULL, NULL), SL_EINVAL);
    sl_group_free(NULL);
}

/* ---- try_go, go_ctx --------------------------------------------------------------------- */

typedef struct gated {
    sl_chan *gate;
    atomic_int started;
} gated;

static int gated_task(sl_ctx *ctx, void *arg)
{
    gated *gt = arg;
    atomic_fetch_add(&gt->started, 1);
    int rc = sl_chan_recv(gt->gate, NULL, NULL); /* until the test closes the gate */
    return rc == SL_ECLOSED ? 0 : rc;
}

static void test_try_go_and_go_ctx(void **state)
{
    sl_executor *ex;
    assert_int_equal(sl_executor_new(2, &ex), 0);
    sl_group *g;
    assert_int_equal(sl_group_new_on(NULL, ex, &g), 0);
    assert_int_equal(sl_group_set_limit(g, 1), 0);
    gated gt = {0};
    assert_int_equal(sl_chan_new(1, 0, &gt.gate), 0);
    assert_int_equal(sl_group_try_go(g, gated_task, &gt), 0);
    /* Once it runs on a worker, the group is full and has nothing queued to help with. */
    assert_true(SL_WAIT_UNTIL(atomic_load(&gt.started) == 1, 5000));
    assert_int_equal(sl_group_set_limit(g, 4), SL_EBUSY);
    atomic_int n = 0;
    assert_int_equal(sl_group_try_go(g, ok_task, &n), SL_EFULL);

    sl_ctx *ctx;
    assert_int_equal(sl_ctx_with_timeout(NULL, SL_MS(30), &ctx), 0);
    assert_int_equal(sl_group_go_ctx(g, ok_task, &n, ctx), SL_ETIMEDOUT);
    sl_ctx_release(ctx);
    assert_int_equal(sl_ctx_with_cancel(NULL, &ctx), 0);
    sl_ctx_cancel(ctx);
    assert_int_equal(sl_group_go_ctx(g, ok_task, &n, ctx), SL_ECANCELED);
    sl_ctx_release(ctx);

    assert_int_equal(sl_chan_close(gt.gate), 0);
    assert_int_equal(sl_group_wait(g), 0);
    assert_int_equal(atomic_load(&n), 0); /* refused tasks never ran */
    assert_int_equal(sl_group_set_limit(g, 0), 0);
    assert_int_equal(sl_group_try_go(g, ok_task, &n), SL_EFULL); /* limit 0: nothing starts */
    assert_int_equal(sl_group_set_limit(g, -1), 0);
    assert_int_equal(sl_group_try_go(g, ok_task, &n), 0);
    assert_int_equal(sl_group_wait(g), 0);
    assert_int_equal(atomic_load(&n), 1);
    sl_group_free(g);
    sl_chan_free(gt.gate);
    sl_executor_free(ex);
}

/* ---- nested groups on 2 threads --------------------------------------------------------- */

typedef struct nest {
    sl_executor *ex;
    int depth;
    atomic_long *leaves;
} nest;

static int nested_task(sl_ctx *ctx, void *arg)
{
    nest *n = arg;
    if (n->depth == 0) {
        atomic_fetch_add(n->leaves, 1);
        return 0;
    }
    /* Every task of this level waits on a group of its own: with 2 workers, both are soon
     * blocked in sl_group_wait; only waiters running their own queued tasks make progress. */
    sl_group *g;
    int rc = sl_group_new_on(ctx, n->ex, &g);
    if (rc) return rc;
    sl_group_set_limit(g, 3);
    nest child[4];
    for (int i = 0; i < 4; i++) {
        child[i] = (nest){.ex = n->ex, .depth = n->depth - 1, .leaves = n->leaves};
        if ((rc = sl_group_go(g, nested_task, &child[i])) != 0) break;
    }
    int werr = sl_group_wait(g);
    sl_group_free(g);
    return rc ? rc : werr;
}

typedef struct nest_run {
    sl_executor *ex;
    atomic_long leaves;
    atomic_int rc;
    atomic_bool done;
} nest_run;

static void *nest_main(void *arg)
{
    nest_run *r = arg;
    nest top = {.ex = r->ex, .depth = 4, .leaves = &r->leaves};
    atomic_store(&r->rc, nested_task(NULL, &top));
    atomic_store(&r->done, true);
    return NULL;
}

static void test_nested_groups_two_threads(void **state)
{
    nest_run r = {0};
    assert_int_equal(sl_executor_new(2, &r.ex), 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, nest_main, &r), 0);
    /* A deadlock would leave `done` false: fail with a message instead of hanging ctest. */
    assert_true(SL_WAIT_UNTIL(atomic_load(&r.done), 30000));
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_int_equal(atomic_load(&r.rc), 0);
    assert_int_equal(atomic_load(&r.leaves), 4 * 4 * 4 * 4);
    sl_executor_free(r.ex);
}

/* ---- executors are joined ------------------------------------------------------------------ */

static void test_default_executor_joined(void **state)
{
    sl_group *g;
    assert_int_equal(sl_group_new(NULL, &g), 0);
    assert_true(sl__executor_default_running());
    atomic_int n = 0;
    for (int i = 0; i < 20; i++)
        assert_int_equal(sl_group_go(g, ok_task, &n), 0);
    assert_int_equal(sl_group_wait(g), 0);
    sl_group_free(g);
    assert_int_equal(atomic_load(&n), 20);
    /* The atexit path: stop and join every worker; a later group starts a new executor. */
    sl__executor_default_shutdown();
    assert_false(sl__executor_default_running());
    assert_int_equal(sl_group_new(NULL, &g), 0);
    assert_int_equal(sl_group_go(g, ok_task, &n), 0);
    assert_int_equal(sl_group_wait(g), 0);
    sl_group_free(g);
    assert_int_equal(atomic_load(&n), 21);
    sl__executor_default_shutdown();

    /* Freeing an executor runs what is still queued before joining. */
    sl_executor *ex;
    assert_int_equal(sl_executor_new(1, &ex), 0);
    assert_int_equal(sl_group_new_on(NULL, ex, &g), 0);
    for (int i = 0; i < 10; i++)
        assert_int_equal(sl_group_go(g, ok_task, &n), 0);
    sl_group_free(g); /* waits (helping) for the 10 tasks */
    assert_int_equal(atomic_load(&n), 31);
    sl_executor_free(ex);
    assert_int_equal(sl_executor_new(2000, &ex), SL_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_limit_honoured),
        cmocka_unit_test(test_first_error_cancels),
        cmocka_unit_test(test_wait_cancels_and_parent),
        cmocka_unit_test(test_try_go_and_go_ctx),
        cmocka_unit_test(test_nested_groups_two_threads),
        cmocka_unit_test(test_default_executor_joined),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
