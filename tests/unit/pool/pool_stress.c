/* sl_pool stress: 4 submitting threads x 100,000 tiny jobs (blocking submit and try_submit
 * mixed) while another thread resizes the pool between 1 and 4 workers and reads stats.
 * Counts must agree exactly at the end, with no TSan report.
 * Under TSan each job costs ~20x more, so counts are reduced to 4 x 10,000 (SLUICE_TSAN), and
 * to 4 x 25,000 under ASan (a Debug build). */
#include "pool_testutil.h"

#if defined(SLUICE_TSAN)
#define PER_THREAD 10000
#elif defined(SLUICE_ASAN)
#define PER_THREAD 25000 /* Debug + ASan: ~10x slower per job */
#else
#define PER_THREAD 100000
#endif
#define SUBMITTERS 4

static atomic_long g_sum;
static atomic_int g_submitters_done;

static int add_job(sl_ctx *ctx, void *arg)
{
    atomic_fetch_add_explicit(&g_sum, (long)(intptr_t)arg, memory_order_relaxed);
    return 0;
}

typedef struct sub {
    sl_pool *p;
    int index;
    long accepted_sum;
    long full;
} sub;

static void *submit_main(void *x)
{
    sub *s = x;
    for (int i = 0; i < PER_THREAD; i++) {
        sl_pool_job j = {.id = "tiny", .fn = add_job, .arg = (void *)(intptr_t)(i % 7 + 1)};
        int rc;
        if (i % 4 == 0) {
            while ((rc = sl_pool_try_submit(s->p, &j)) == SL_EFULL)
                s->full++;
        } else {
            rc = sl_pool_submit(s->p, &j, NULL);
        }
        assert_int_equal(rc, 0);
        s->accepted_sum += i % 7 + 1;
    }
    atomic_fetch_add(&g_submitters_done, 1);
    return NULL;
}

static void test_submit_while_resizing(void **state)
{
    sl_pool_opts o = {.workers = 2, .queue_capacity = 256, .logger = sl_log_discard()};
    sl_pool *p;
    assert_int_equal(sl_pool_new(&o, &p), 0);
    pthread_t th[SUBMITTERS];
    sub subs[SUBMITTERS];
    for (int i = 0; i < SUBMITTERS; i++) {
        subs[i] = (sub){.p = p, .index = i};
        pthread_create(&th[i], NULL, submit_main, &subs[i]);
    }
    int resizes = 0;
    uint64_t last_submitted = 0;
    while (atomic_load(&g_submitters_done) < SUBMITTERS) {
        assert_int_equal(sl_pool_set_workers(p, 1 + resizes % 4), 0);
        resizes++;
        sl_pool_stats st;
        sl_pool_stats_get(p, &st);
        assert_true(st.submitted >= last_submitted); /* monotonic */
        last_submitted = st.submitted;
        assert_true(st.running <= 4);
        /* sleep-ok: paces the resizer (a harness poll interval); nothing waits on it. */
        sl_test_pause(resizes % 8);
    }
    long want = 0;
    for (int i = 0; i < SUBMITTERS; i++) {
        pthread_join(th[i], NULL);
        want += subs[i].accepted_sum;
    }
    sl_pool_report r;
    assert_int_equal(sl_pool_shutdown(p, NULL, &r), 0);
    assert_int_equal(r.submitted, SUBMITTERS * PER_THREAD);
    assert_int_equal(r.succeeded, SUBMITTERS * PER_THREAD);
    assert_int_equal(r.abandoned + r.failed + r.dead, 0);
    assert_int_equal(atomic_load(&g_sum), want);
    sl_pool_stats st;
    sl_pool_stats_get(p, &st);
    assert_int_equal(st.started, SUBMITTERS * PER_THREAD);
    assert_int_equal(st.workers, 0);
    assert_true(resizes > 1);
    sl_pool_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_submit_while_resizing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
