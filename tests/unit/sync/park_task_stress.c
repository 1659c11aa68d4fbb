/* Tasks on two loops and plain threads hammer one rendezvous channel, a select over two
 * channels and a semaphore, every operation with a short random deadline, so completions race
 * with ctx hooks, the SL__WAKING hand-off to a task on another loop, and threads' futex waits.
 * Invariants: every successful send was received exactly once (sums match), the semaphore is
 * never over-granted and ends empty, and everything stops (wg) when told. Run under TSan and
 * ASan like every test. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "harness.h"
#include "sluice/task.h"

enum { NTASKS = 48, NTHREADS = 2, RUN_MS = 600, SEM_SIZE = 3 };

static sl_chan *g_ch, *g_ch2;
static sl_sem *g_sem;
static atomic_bool g_stop;
static atomic_long g_sent, g_recvd, g_ops, g_timeouts;
static atomic_int g_in_sem, g_sem_over;
static sl_wg g_wg;

static unsigned rnd(unsigned *s)
{
    *s = *s * 1103515245u + 12345u;
    return *s >> 8;
}

static void one_op(unsigned *seed)
{
    sl_ctx *ctx;
    if (sl_ctx_with_timeout(NULL, SL_US(20 + rnd(seed) % 1500), &ctx) != 0) return;
    int rc = 0;
    long v = 1 + (long)(rnd(seed) % 100);
    switch (rnd(seed) % 4) {
    case 0:
        if ((rc = sl_chan_send(g_ch, &v, ctx)) == 0) atomic_fetch_add(&g_sent, v);
        break;
    case 1: {
        long got = 0;
        if ((rc = sl_chan_recv(g_ch, &got, ctx)) == 0) atomic_fetch_add(&g_recvd, got);
        break;
    }
    case 2: {
        long got = 0;
        sl_chan_case cs[2] = {{.chan = g_ch, .dir = SL_CHAN_RECV, .elem = &got},
                              {.chan = g_ch2, .dir = SL_CHAN_SEND, .elem = &v}};
        rc = sl_chan_select(cs, 2, NULL, ctx);
        if (rc == 0) atomic_fetch_add(&g_recvd, got);
        if (rc == 1) atomic_fetch_add(&g_sent, v); /* received by drain2 */
        break;
    }
    default:
        if ((rc = sl_sem_acquire(g_sem, 1, ctx)) == 0) {
            if (atomic_fetch_add(&g_in_sem, 1) >= SEM_SIZE) atomic_fetch_add(&g_sem_over, 1);
            atomic_fetch_sub(&g_in_sem, 1);
            sl_sem_release(g_sem, 1);
        }
        break;
    }
    if (rc == SL_ETIMEDOUT) atomic_fetch_add(&g_timeouts, 1);
    atomic_fetch_add(&g_ops, 1);
    sl_ctx_release(ctx);
}

/* g_ch2's receiver side: keeps select's send case completable. */
static void drain2(unsigned *seed)
{
    sl_ctx *ctx;
    if (sl_ctx_with_timeout(NULL, SL_US(20 + rnd(seed) % 1500), &ctx) != 0) return;
    long got = 0;
    if (sl_chan_recv(g_ch2, &got, ctx) == 0) atomic_fetch_add(&g_recvd, got);
    sl_ctx_release(ctx);
}

static void worker_loop(unsigned seed)
{
    while (!atomic_load(&g_stop)) {
        if (rnd(&seed) % 5 == 0)
            drain2(&seed);
        else
            one_op(&seed);
    }
    sl_wg_done(&g_wg);
}

static void task_main(void *arg)
{
    worker_loop((unsigned)(uintptr_t)arg * 2654435761u + 1);
}

static void *thread_main(void *arg)
{
    worker_loop((unsigned)(uintptr_t)arg * 40503u + 7);
    return NULL;
}

static void test_stress(void **state)
{
    (void)state;
    sl_runtime *rt;
    sl_runtime_opts o = {.loops = 2};
    assert_int_equal(sl_runtime_new(&o, &rt), 0);
    assert_int_equal(sl_chan_new(sizeof(long), 0, &g_ch), 0);
    assert_int_equal(sl_chan_new(sizeof(long), 0, &g_ch2), 0);
    assert_int_equal(sl_sem_new(SEM_SIZE, &g_sem), 0);
    assert_int_equal(sl_wg_init(&g_wg), 0);
    sl_wg_add(&g_wg, NTASKS + NTHREADS);
    for (int i = 0; i < NTASKS; i++) {
        sl_go_opts go = {.name = "stress", .rt = rt, .loop = 1 + i % 2};
        assert_int_equal(sl_go_with(&go, task_main, (void *)(uintptr_t)(i + 1)), 0);
    }
    pthread_t th[NTHREADS];
    for (int i = 0; i < NTHREADS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, thread_main, (void *)(uintptr_t)(i + 1)), 0);
    sl_ctx_wait_for(NULL, SL_MS(RUN_MS)); /* the run's length: a parked wait, not polling */
    atomic_store(&g_stop, true);
    sl_ctx *ctx;
    assert_int_equal(sl_ctx_with_timeout(NULL, SL_SEC(30), &ctx), 0);
    assert_int_equal(sl_wg_wait(&g_wg, ctx), 0); /* every worker stops */
    sl_ctx_release(ctx);
    for (int i = 0; i < NTHREADS; i++)
        pthread_join(th[i], NULL);
    print_message("ops %ld, timeouts %ld, sent %ld\n", atomic_load(&g_ops),
                  atomic_load(&g_timeouts), atomic_load(&g_sent));
    assert_true(atomic_load(&g_ops) > 1000);
    assert_int_equal(atomic_load(&g_sent), atomic_load(&g_recvd));
    assert_int_equal(atomic_load(&g_sem_over), 0);
    assert_int_equal(sl_sem_held(g_sem), 0);
    assert_int_equal(sl_sem_waiters(g_sem), 0);
    assert_int_equal(sl_runtime_shutdown(rt, NULL), 0);
    sl_runtime_free(rt);
    sl_wg_destroy(&g_wg);
    sl_sem_free(g_sem);
    sl_chan_free(g_ch);
    sl_chan_free(g_ch2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_stress)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
