/* sl_rpool: limits, FIFO waiters, ctx timeout/cancel, expiry on the test clock, health check,
 * discard and slot hand-over, close waking waiters, and the sluice_db_* metrics. Resources are
 * small heap records whose open/close are counted, so every test checks nothing leaks. */
#include "harness.h"
#include "sluice/rpool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

struct fake {
    atomic_int opened, closed, next_id;
    atomic_int fail_open; /* > 0: the next opens fail with SL_ECONNREFUSED */
    atomic_int dead_id;   /* check() fails for this id */
};
struct res {
    int id;
};

static int f_open(void *arg, sl_ctx *ctx, void **out)
{
    struct fake *f = arg;
    if (atomic_load(&f->fail_open) > 0) {
        atomic_fetch_sub(&f->fail_open, 1);
        return SL_ECONNREFUSED;
    }
    struct res *r = malloc(sizeof *r);
    if (!r) return SL_ENOMEM;
    r->id = atomic_fetch_add(&f->next_id, 1) + 1;
    atomic_fetch_add(&f->opened, 1);
    *out = r;
    return 0;
}
static void f_close(void *arg, void *res)
{
    struct fake *f = arg;
    atomic_fetch_add(&f->closed, 1);
    free(res);
}
static int f_check(void *arg, void *res, sl_ctx *ctx)
{
    struct fake *f = arg;
    return ((struct res *)res)->id == atomic_load(&f->dead_id) ? SL_ECONNRESET : 0;
}

static sl_rpool *mk(struct fake *f, int max_open, int max_idle)
{
    memset(f, 0, sizeof *f);
    sl_rpool_opts o = {
        .ops = {f_open, f_close, f_check}, .arg = f, .max_open = max_open, .max_idle = max_idle};
    sl_rpool *p;
    assert_int_equal(sl_rpool_new(&o, &p), 0);
    return p;
}
static int rid(sl_rpool_item *it)
{
    return ((struct res *)sl_rpool_item_res(it))->id;
}

static void test_reuse_and_limits(void **state)
{
    struct fake f;
    sl_rpool *p = mk(&f, 3, 2);
    sl_rpool_item *a, *b, *c;
    assert_int_equal(sl_rpool_acquire(p, NULL, &a), 0);
    sl_rpool_release(a);
    assert_int_equal(sl_rpool_acquire(p, NULL, &b), 0);
    assert_ptr_equal(a, b); /* reused, not reopened */
    assert_int_equal(atomic_load(&f.opened), 1);
    assert_int_equal(sl_rpool_acquire(p, NULL, &a), 0);
    assert_int_equal(sl_rpool_acquire(p, NULL, &c), 0);
    sl_rpool_stats st;
    sl_rpool_stats_get(p, &st);
    assert_int_equal(st.open, 3);
    assert_int_equal(st.in_use, 3);
    assert_int_equal(sl_rpool_try_acquire(p, &a), SL_EAGAIN);
    sl_rpool_release(a);
    sl_rpool_release(b);
    sl_rpool_release(c); /* third idle one is past max_idle = 2: closed */
    sl_rpool_stats_get(p, &st);
    assert_int_equal(st.idle, 2);
    assert_int_equal(st.open, 2);
    assert_int_equal((int)st.max_idle_closed, 1);
    assert_int_equal(atomic_load(&f.closed), 1);
    sl_rpool_free(p);
    assert_int_equal(atomic_load(&f.closed), 3);

    sl_rpool_opts bad = {0};
    assert_int_equal(sl_rpool_new(&bad, &p), SL_EINVAL);
}

/* Exhaustion: the next acquire waits and then fails with its ctx's error. */
static void test_exhausted_timeout(void **state)
{
    struct fake f;
    sl_rpool *p = mk(&f, 1, 1);
    sl_rpool_item *a, *b = NULL;
    assert_int_equal(sl_rpool_acquire(p, NULL, &a), 0);
    sl_ctx *ctx;
    int64_t t0 = sl_mono_ns();
    assert_int_equal(sl_ctx_with_timeout(NULL, SL_MS(300), &ctx), 0);
    assert_int_equal(sl_rpool_acquire(p, ctx, &b), SL_ETIMEDOUT);
    assert_true(sl_mono_ns() - t0 >= SL_MS(250));
    assert_null(b);
    sl_ctx_release(ctx);
    sl_rpool_stats st;
    sl_rpool_stats_get(p, &st);
    assert_int_equal((int)st.wait_count, 1);
    assert_true(st.wait_duration_ns > 0);
    assert_int_equal(st.waiting, 0);
    assert_int_equal(st.in_use, 1);
    sl_rpool_release(a);
    sl_rpool_free(p);
}

struct acq {
    sl_rpool *p;
    sl_ctx *ctx;
    sl_rpool_item *it;
    int rc, order;
    pthread_t t;
};
static atomic_int g_order;
static void *acq_main(void *arg)
{
    struct acq *a = arg;
    a->rc = sl_rpool_acquire(a->p, a->ctx, &a->it);
    a->order = atomic_fetch_add(&g_order, 1);
    if (a->rc == 0) sl_rpool_release(a->it);
    return NULL;
}
static void start(struct acq *a, sl_rpool *p, sl_ctx *ctx, int waiting)
{
    *a = (struct acq){.p = p, .ctx = ctx};
    assert_int_equal(pthread_create(&a->t, NULL, acq_main, a), 0);
    sl_rpool_stats st;
    assert_true(SL_WAIT_UNTIL((sl_rpool_stats_get(p, &st), st.waiting == waiting), 5000));
}

/* Waiters are served in arrival order; a cancelled one leaves the queue without a grant. */
static void test_fifo_and_cancel(void **state)
{
    struct fake f;
    sl_rpool *p = mk(&f, 1, 1);
    sl_rpool_item *a;
    assert_int_equal(sl_rpool_acquire(p, NULL, &a), 0);
    sl_ctx *c2;
    assert_int_equal(sl_ctx_with_cancel(NULL, &c2), 0);
    atomic_store(&g_order, 0);
    struct acq w[4];
    start(&w[0], p, NULL, 1);
    start(&w[1], p, c2, 2);
    start(&w[2], p, NULL, 3);
    start(&w[3], p, NULL, 4);
    sl_ctx_cancel(c2);
    pthread_join(w[1].t, NULL);
    assert_int_equal(w[1].rc, SL_ECANCELED);
    assert_int_equal(w[1].order, 0);
    sl_rpool_release(a); /* goes to w[0], which releases to w[2], then w[3] */
    for (int i = 0; i < 4; i++)
        if (i != 1) pthread_join(w[i].t, NULL);
    assert_int_equal(w[0].rc, 0);
    assert_int_equal(w[2].rc, 0);
    assert_int_equal(w[3].rc, 0);
    assert_int_equal(w[0].order, 1);
    assert_int_equal(w[2].order, 2);
    assert_int_equal(w[3].order, 3);
    assert_int_equal(atomic_load(&f.opened), 1); /* handed over, never reopened */
    sl_ctx_release(c2);
    sl_rpool_free(p);
    assert_int_equal(atomic_load(&f.closed), 1);
}

/* Discarding frees the slot: the waiter opens a fresh resource. */
static void test_discard_grants_slot(void **state)
{
    struct fake f;
    sl_rpool *p = mk(&f, 1, 1);
    sl_rpool_item *a;
    assert_int_equal(sl_rpool_acquire(p, NULL, &a), 0);
    struct acq w;
    start(&w, p, NULL, 1);
    sl_rpool_discard(a);
    pthread_join(w.t, NULL);
    assert_int_equal(w.rc, 0);
    assert_int_equal(atomic_load(&f.opened), 2);
    sl_rpool_stats st;
    sl_rpool_stats_get(p, &st);
    assert_int_equal((int)st.discarded, 1);
    assert_int_equal(st.open, 1);
    sl_rpool_free(p);
    assert_int_equal(atomic_load(&f.closed), 2);
}

/* A failed open frees its slot and reports the error; the next acquire tries again. */
static void test_open_failure(void **state)
{
    struct fake f;
    sl_rpool *p = mk(&f, 1, 1);
    atomic_store(&f.fail_open, 1);
    sl_rpool_item *a;
    assert_int_equal(sl_rpool_acquire(p, NULL, &a), SL_ECONNREFUSED);
    sl_rpool_stats st;
    sl_rpool_stats_get(p, &st);
    assert_int_equal(st.open, 0);
    assert_int_equal(sl_rpool_acquire(p, NULL, &a), 0);
    sl_rpool_release(a);
    sl_rpool_free(p);
}

/* Lifetime and idle-time expiry, driven by the test clock. */
static void test_expiry(void **state)
{
    sl_test_clock_install(SL_SEC(1000));
    struct fake f;
    memset(&f, 0, sizeof f);
    sl_rpool_opts o = {.ops = {f_open, f_close, NULL},
                       .arg = &f,
                       .max_open = 4,
                       .max_idle = 4,
                       .max_lifetime_ns = SL_SEC(60),
                       .max_idle_time_ns = SL_SEC(10)};
    sl_rpool *p;
    assert_int_equal(sl_rpool_new(&o, &p), 0);
    sl_rpool_item *a, *b;
    assert_int_equal(sl_rpool_acquire(p, NULL, &a), 0);
    assert_int_equal(sl_rpool_acquire(p, NULL, &b), 0);
    sl_rpool_release(a);
    sl_test_clock_advance(SL_SEC(5));
    assert_int_equal(sl_rpool_reap(p), 0); /* idle 5 s < 10 s */
    sl_test_clock_advance(SL_SEC(6));
    assert_int_equal(sl_rpool_reap(p), 1); /* idle 11 s: closed */
    sl_rpool_stats st;
    sl_rpool_stats_get(p, &st);
    assert_int_equal((int)st.max_idle_time_closed, 1);
    assert_int_equal(st.open, 1);
    /* b is 61 s old at release: past its lifetime, closed instead of kept. */
    sl_test_clock_advance(SL_SEC(50));
    sl_rpool_release(b);
    sl_rpool_stats_get(p, &st);
    assert_int_equal((int)st.max_lifetime_closed, 1);
    assert_int_equal(st.open, 0);
    /* An idle one that expires is skipped at checkout: a fresh one is opened. */
    assert_int_equal(sl_rpool_acquire(p, NULL, &a), 0);
    int id = rid(a);
    sl_rpool_release(a);
    sl_test_clock_advance(SL_SEC(11));
    assert_int_equal(sl_rpool_acquire(p, NULL, &a), 0);
    assert_int_not_equal(rid(a), id);
    sl_rpool_release(a);
    sl_rpool_free(p);
    assert_int_equal(atomic_load(&f.opened), atomic_load(&f.closed));
    sl_test_clock_uninstall();
}

/* The health check discards a dead idle resource; the caller gets a working one. */
static void test_health_check(void **state)
{
    struct fake f;
    sl_rpool *p = mk(&f, 2, 2);
    sl_rpool_item *a, *b;
    assert_int_equal(sl_rpool_acquire(p, NULL, &a), 0);
    assert_int_equal(sl_rpool_acquire(p, NULL, &b), 0);
    int dead = rid(b);
    sl_rpool_release(a);
    sl_rpool_release(b); /* b is on top of the idle stack */
    atomic_store(&f.dead_id, dead);
    assert_int_equal(sl_rpool_acquire(p, NULL, &a), 0);
    assert_int_not_equal(rid(a), dead);
    sl_rpool_stats st;
    sl_rpool_stats_get(p, &st);
    assert_int_equal((int)st.check_failed, 1);
    assert_int_equal(st.open, 1);
    sl_rpool_release(a);
    sl_rpool_free(p);
    assert_int_equal(atomic_load(&f.opened), atomic_load(&f.closed));
}

/* A check that fails while another caller queued hands the freed slot to that caller (the
 * checker then queues behind it): neither is left waiting forever. */
static atomic_int g_gate; /* 1: the check is running; 2: let it fail */
static int slow_dead_check(void *arg, void *res, sl_ctx *ctx)
{
    atomic_store(&g_gate, 1);
    SL_WAIT_UNTIL(atomic_load(&g_gate) == 2, 5000);
    return SL_ECONNRESET;
}
static void test_check_fails_with_waiter(void **state)
{
    struct fake f;
    memset(&f, 0, sizeof f);
    sl_rpool_opts o = {.ops = {f_open, f_close, slow_dead_check}, .arg = &f, .max_open = 1};
    sl_rpool *p;
    assert_int_equal(sl_rpool_new(&o, &p), 0);
    sl_rpool_item *a;
    assert_int_equal(sl_rpool_try_acquire(p, &a), SL_EAGAIN);
    assert_int_equal(sl_rpool_acquire(p, NULL, &a), 0); /* fresh: no check */
    sl_rpool_release(a);
    atomic_store(&g_gate, 0);
    atomic_store(&g_order, 0);
    struct acq checker, waiter;
    checker = (struct acq){.p = p};
    assert_int_equal(pthread_create(&checker.t, NULL, acq_main, &checker), 0);
    assert_true(SL_WAIT_UNTIL(atomic_load(&g_gate) == 1, 5000));
    start(&waiter, p, NULL, 1);
    atomic_store(&g_gate, 2);
    pthread_join(waiter.t, NULL);
    pthread_join(checker.t, NULL);
    assert_int_equal(waiter.rc, 0);
    assert_int_equal(checker.rc, 0);
    sl_rpool_free(p);
    assert_int_equal(atomic_load(&f.opened), atomic_load(&f.closed));
}

/* Close wakes waiters with SL_ECLOSED; items in use are closed when released. */
static void test_close_wakes(void **state)
{
    struct fake f;
    sl_rpool *p = mk(&f, 1, 1);
    sl_rpool_item *a;
    assert_int_equal(sl_rpool_acquire(p, NULL, &a), 0);
    struct acq w;
    start(&w, p, NULL, 1);
    sl_rpool_close(p);
    pthread_join(w.t, NULL);
    assert_int_equal(w.rc, SL_ECLOSED);
    assert_int_equal(sl_rpool_acquire(p, NULL, &w.it), SL_ECLOSED);
    sl_rpool_release(a);
    assert_int_equal(atomic_load(&f.closed), 1);
    sl_rpool_free(p);
}

/* Many threads, few slots: every acquire succeeds, the bound holds, nothing leaks. */
struct hammer {
    sl_rpool *p;
    atomic_int *cur, *peak;
};
static void *hammer_main(void *arg)
{
    struct hammer *h = arg;
    for (int i = 0; i < 2000; i++) {
        sl_rpool_item *it;
        assert_int_equal(sl_rpool_acquire(h->p, NULL, &it), 0);
        int c = atomic_fetch_add(h->cur, 1) + 1;
        int pk = atomic_load(h->peak);
        while (c > pk && !atomic_compare_exchange_weak(h->peak, &pk, c)) {
        }
        atomic_fetch_sub(h->cur, 1);
        if (i % 97 == 0)
            sl_rpool_discard(it);
        else
            sl_rpool_release(it);
    }
    return NULL;
}
static void test_hammer(void **state)
{
    struct fake f;
    sl_rpool *p = mk(&f, 3, 2);
    atomic_int cur = 0, peak = 0;
    struct hammer h = {p, &cur, &peak};
    pthread_t t[8];
    for (int i = 0; i < 8; i++)
        assert_int_equal(pthread_create(&t[i], NULL, hammer_main, &h), 0);
    for (int i = 0; i < 8; i++)
        pthread_join(t[i], NULL);
    assert_true(atomic_load(&peak) <= 3);
    sl_rpool_stats st;
    sl_rpool_stats_get(p, &st);
    assert_int_equal(st.in_use, 0);
    assert_true(st.open <= 2);
    sl_rpool_free(p);
    assert_int_equal(atomic_load(&f.opened), atomic_load(&f.closed));
}

static void test_metrics(void **state)
{
    struct fake f;
    sl_rpool *p = mk(&f, 5, 2);
    sl_metrics *m;
    assert_int_equal(sl_metrics_new(&m), 0);
    sl_obs *o;
    assert_int_equal(sl_obs_new(m, &o), 0);
    assert_int_equal(sl_obs_rpool(o, "users", p), 0);
    sl_rpool_item *a;
    assert_int_equal(sl_rpool_acquire(p, NULL, &a), 0);
    sl_buf b = {0};
    assert_int_equal(sl_metrics_write(m, &b), 0);
    assert_non_null(strstr(b.data, "sluice_db_max_open_connections{db=\"users\"} 5"));
    assert_non_null(strstr(b.data, "sluice_db_in_use_connections{db=\"users\"} 1"));
    assert_non_null(strstr(b.data, "sluice_db_wait_count_total{db=\"users\"} 0"));
    assert_non_null(strstr(b.data, "sluice_db_max_lifetime_closed_total{db=\"users\"} 0"));
    sl_buf_destroy(&b);
    sl_rpool_release(a);
    sl_obs_free(o);
    sl_metrics_free(m);
    sl_rpool_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reuse_and_limits),
        cmocka_unit_test(test_exhausted_timeout),
        cmocka_unit_test(test_fifo_and_cancel),
        cmocka_unit_test(test_discard_grants_slot),
        cmocka_unit_test(test_open_failure),
        cmocka_unit_test(test_expiry),
        cmocka_unit_test(test_health_check),
        cmocka_unit_test(test_close_wakes),
        cmocka_unit_test(test_hammer),
        cmocka_unit_test(test_metrics),
        cmocka_unit_test(test_check_fails_with_waiter),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
