/* Stress: 100k tasks spawned and finished (from a plain thread and from a task), and a ring of
 * tasks passing a token with park/unpark while idle loops steal — every wake lands, nothing
 * runs twice at once, stacks are reused. */
#include "harness.h"
#include "task/task_int.h"

#include <stdatomic.h>
#include <stdlib.h>

enum { N = 100000 };

static atomic_int g_done;

static void leaf(void *arg)
{
    (void)arg;
    atomic_fetch_add_explicit(&g_done, 1, memory_order_relaxed);
}

static void fan_out(void *arg)
{
    int n = (int)(intptr_t)arg;
    for (int i = 0; i < n; i++) {
        assert_int_equal(sl_go(leaf, NULL), 0);
        if (i % 64 == 63) sl_task_yield(); /* the children run: bounded tasks in flight */
    }
}

static sl_runtime *rt_new(void)
{
    sl_runtime *rt;
    assert_int_equal(sl_runtime_new(&(sl_runtime_opts){.loops = 2}, &rt), 0);
    return rt;
}

static void rt_end(sl_runtime *rt)
{
    sl_ctx *ctx;
    assert_int_equal(sl_ctx_with_timeout(NULL, SL_SEC(60), &ctx), 0);
    assert_int_equal(sl_runtime_shutdown(rt, ctx), 0);
    sl_ctx_release(ctx);
    sl_runtime_free(rt);
}

static void test_100k_from_thread(void **state)
{
    (void)state;
    sl_runtime *rt = rt_new();
    atomic_store(&g_done, 0);
    for (int i = 0; i < N; i++) {
        assert_int_equal(sl_go_with(&(sl_go_opts){.rt = rt}, leaf, NULL), 0);
        /* At most 256 in flight: under TSan every stack slot costs ~1 MB of shadow state. */
        if (i % 256 == 255) assert_true(SL_WAIT_UNTIL(atomic_load(&g_done) > i - 256, 60000));
    }
    assert_true(SL_WAIT_UNTIL(atomic_load(&g_done) == N, 120000));
    assert_true(SL_WAIT_UNTIL(sl_runtime_tasks(rt) == 0, 10000));
    rt_end(rt);
}

static void test_100k_from_tasks(void **state)
{
    (void)state;
    sl_runtime *rt = rt_new();
    atomic_store(&g_done, 0);
    for (int i = 0; i < 4; i++)
        assert_int_equal(sl_go_with(&(sl_go_opts){.rt = rt}, fan_out, (void *)(intptr_t)(N / 4)),
                         0);
    assert_true(SL_WAIT_UNTIL(atomic_load(&g_done) == N, 120000));
    rt_end(rt);
}

/* A token goes round a ring of tasks R times; each hop is an unpark of the next task, which
 * may be on either loop (and may have been stolen meanwhile). */
enum { RING = 200, LAPS = 50 };

typedef struct ring {
    struct sl_task *_Atomic task[RING];
    _Atomic int holder; /* index of the task that may move */
    int hops;           /* written only by the holder */
    _Atomic int ready;
    _Atomic int finished;
} ring;

typedef struct member {
    ring *r;
    int i;
} member;

static void ring_task(void *arg)
{
    member *m = arg;
    ring *r = m->r;
    atomic_store(&r->task[m->i], sl__task_self());
    atomic_fetch_add(&r->ready, 1);
    while (atomic_load(&r->ready) < RING)
        sl_task_yield();
    for (int lap = 0; lap < LAPS; lap++) {
        while (atomic_load_explicit(&r->holder, memory_order_acquire) != m->i)
            sl__task_park();
        r->hops++;
        int next = (m->i + 1) % RING;
        atomic_store_explicit(&r->holder, next, memory_order_release);
        sl__task_unpark(atomic_load(&r->task[next]));
    }
    atomic_fetch_add(&r->finished, 1);
}

static void test_token_ring(void **state)
{
    (void)state;
    sl_runtime *rt = rt_new();
    ring *r = calloc(1, sizeof *r);
    member *m = calloc(RING, sizeof *m);
    assert_non_null(r);
    assert_non_null(m);
    for (int i = 0; i < RING; i++) {
        m[i] = (member){r, i};
        assert_int_equal(sl_go_with(&(sl_go_opts){.rt = rt, .name = "ring"}, ring_task, &m[i]), 0);
    }
    assert_true(SL_WAIT_UNTIL(atomic_load(&r->finished) == RING, 120000));
    assert_int_equal(r->hops, RING * LAPS);
    rt_end(rt);
    free(m);
    free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_100k_from_thread),
        cmocka_unit_test(test_100k_from_tasks),
        cmocka_unit_test(test_token_ring),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
