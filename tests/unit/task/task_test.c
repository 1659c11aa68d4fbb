/* The task core: spawn on a runtime, park/unpark within one loop and across loops (ping-pong
 * through a mailbox with the contract's three functions), yield, the permit semantics, loop
 * choice, stealing, and shutdown (finished, cancelled through the runtime ctx, abandoned). */
#include "harness.h"
#include "task/task_int.h"

#include <stdatomic.h>
#include <stdlib.h>

static sl_runtime *rt_new(int loops)
{
    sl_runtime *rt = NULL;
    sl_runtime_opts o = {.loops = loops};
    assert_int_equal(sl_runtime_new(&o, &rt), 0);
    assert_non_null(rt);
    assert_int_equal(sl_runtime_loops(rt), loops);
    return rt;
}

static void rt_end(sl_runtime *rt)
{
    sl_ctx *ctx;
    assert_int_equal(sl_ctx_with_timeout(NULL, SL_SEC(10), &ctx), 0);
    assert_int_equal(sl_runtime_shutdown(rt, ctx), 0);
    sl_ctx_release(ctx);
    sl_runtime_free(rt);
}

/* ---- spawn -------------------------------------------------------------------------------- */

static atomic_int g_count;
static atomic_int g_bad;

static void count_task(void *arg)
{
    (void)arg;
    if (!sl_task_in() || sl_task_loop() < 1 || !sl__task_self()) atomic_fetch_add(&g_bad, 1);
    atomic_fetch_add(&g_count, 1);
}

static void test_spawn(void **state)
{
    (void)state;
    sl_runtime *rt = rt_new(2);
    atomic_store(&g_count, 0);
    atomic_store(&g_bad, 0);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(sl_go_with(&(sl_go_opts){.rt = rt, .name = "count"}, count_task, NULL), 0);
    assert_true(SL_WAIT_UNTIL(atomic_load(&g_count) == 1000, 10000));
    assert_true(SL_WAIT_UNTIL(sl_runtime_tasks(rt) == 0, 10000));
    assert_int_equal(atomic_load(&g_bad), 0);
    assert_false(sl_task_in());
    assert_null(sl_task_name());
    assert_int_equal(sl_task_loop(), 0);
    assert_int_equal(sl_go_with(&(sl_go_opts){.rt = rt, .loop = 3}, count_task, NULL), SL_EINVAL);
    assert_int_equal(sl_go_with(&(sl_go_opts){.rt = rt}, NULL, NULL), SL_EINVAL);
    rt_end(rt);
}

/* A task spawning children from inside a task: they start on its loop. */
static atomic_int g_child_loop_bad;

static void child(void *arg)
{
    (void)arg;
    atomic_fetch_add(&g_count, 1);
}

static void parent(void *arg)
{
    (void)arg;
    for (int i = 0; i < 100; i++)
        if (sl_go(child, NULL) != 0) atomic_fetch_add(&g_child_loop_bad, 1);
}

static void test_spawn_from_task(void **state)
{
    (void)state;
    sl_runtime *rt = rt_new(2);
    atomic_store(&g_count, 0);
    assert_int_equal(sl_go_with(&(sl_go_opts){.rt = rt, .loop = 2}, parent, NULL), 0);
    assert_true(SL_WAIT_UNTIL(atomic_load(&g_count) == 100, 10000));
    assert_int_equal(atomic_load(&g_child_loop_bad), 0);
    rt_end(rt);
}

/* ---- park / unpark ping-pong ------------------------------------------------------------ */

enum { ROUNDS = 20000 };

typedef struct pp {
    struct sl_task *_Atomic peer[2];
    _Atomic int turn; /* whose move: 0 or 1 */
    int plain;        /* written by the side whose turn it is: TSan checks the handoff */
    atomic_int done;
    int loops_seen_bad;
} pp;

typedef struct pp_arg {
    pp *p;
    int me;
    int want_loop;
} pp_arg;

static void pp_task(void *arg)
{
    pp_arg *a = arg;
    pp *p = a->p;
    atomic_store(&p->peer[a->me], sl__task_self());
    while (!atomic_load(&p->peer[!a->me]))
        sl_task_yield();
    for (int i = 0; i < ROUNDS; i++) {
        while (atomic_load_explicit(&p->turn, memory_order_acquire) != a->me)
            sl__task_park();
        if (a->want_loop && sl_task_loop() != a->want_loop) p->loops_seen_bad++;
        p->plain++;
        atomic_store_explicit(&p->turn, !a->me, memory_order_release);
        sl__task_unpark(atomic_load(&p->peer[!a->me]));
    }
    atomic_fetch_add(&p->done, 1);
}

static void ping_pong(int loops, int loop_a, int loop_b)
{
    sl_runtime *rt = rt_new(loops);
    pp p = {0};
    pp_arg a = {&p, 0, loop_a}, b = {&p, 1, loop_b};
    assert_int_equal(
        sl_go_with(&(sl_go_opts){.rt = rt, .loop = loop_a, .name = "ping"}, pp_task, &a), 0);
    assert_int_equal(
        sl_go_with(&(sl_go_opts){.rt = rt, .loop = loop_b, .name = "pong"}, pp_task, &b), 0);
    assert_true(SL_WAIT_UNTIL(atomic_load(&p.done) == 2, 30000));
    assert_int_equal(p.plain, 2 * ROUNDS);
    rt_end(rt);
}

static void test_pingpong_one_loop(void **state)
{
    (void)state;
    ping_pong(2, 1, 1);
}

static void test_pingpong_across_loops(void **state)
{
    (void)state;
    ping_pong(2, 1, 2);
}

/* Unpark from a plain thread; the permit set before park makes park return at once. */
typedef struct waiter {
    struct sl_task *_Atomic self;
    _Atomic int go;
    _Atomic int phase;
} waiter;

static void permit_task(void *arg)
{
    waiter *w = arg;
    /* A permit given before park: park returns without blocking. */
    sl__task_unpark(sl__task_self());
    sl__task_park();
    atomic_store(&w->phase, 1);
    atomic_store(&w->self, sl__task_self());
    while (!atomic_load(&w->go))
        sl__task_park();
    atomic_store(&w->phase, 2);
}

static void test_unpark_from_thread(void **state)
{
    (void)state;
    sl_runtime *rt = rt_new(1);
    waiter w = {0};
    assert_int_equal(sl_go_with(&(sl_go_opts){.rt = rt}, permit_task, &w), 0);
    assert_true(SL_WAIT_UNTIL(atomic_load(&w.phase) == 1, 10000));
    struct sl_task *t = NULL;
    assert_true(SL_WAIT_UNTIL((t = atomic_load(&w.self)) != NULL, 10000));
    atomic_store(&w.go, 1);
    sl__task_unpark(t);
    assert_true(SL_WAIT_UNTIL(atomic_load(&w.phase) == 2, 10000));
    rt_end(rt);
}

/* ---- yield -------------------------------------------------------------------------------- */

static int g_seq[64];
static int g_nseq; /* loop thread only: both tasks run on loop 1 */

static void yield_task(void *arg)
{
    int id = (int)(intptr_t)arg;
    for (int i = 0; i < 8; i++) {
        g_seq[g_nseq++] = id;
        sl_task_yield();
    }
    atomic_fetch_add(&g_count, 1);
}

static void spawn_two(void *arg)
{
    (void)arg;
    sl_go(yield_task, (void *)(intptr_t)1);
    sl_go(yield_task, (void *)(intptr_t)2);
}

static void test_yield_alternates(void **state)
{
    (void)state;
    sl_runtime *rt = rt_new(1);
    atomic_store(&g_count, 0);
    g_nseq = 0;
    /* Spawned from one task, so that neither runs before both are queued. */
    assert_int_equal(sl_go_with(&(sl_go_opts){.rt = rt}, spawn_two, NULL), 0);
    assert_true(SL_WAIT_UNTIL(atomic_load(&g_count) == 2, 10000));
    rt_end(rt);
    assert_int_equal(g_nseq, 16);
    /* Once both run, they alternate. */
    int switches = 0;
    for (int i = 1; i < 16; i++)
        switches += g_seq[i] != g_seq[i - 1];
    assert_true(switches >= 8);
}

/* ---- stealing ----------------------------------------------------------------------------- */

static atomic_int g_loop_hits[3];

static void spin_a_bit(void *arg)
{
    (void)arg;
    atomic_fetch_add(&g_loop_hits[sl_task_loop()], 1);
    for (int i = 0; i < 20; i++)
        sl_task_yield();
    atomic_fetch_add(&g_count, 1);
}

static void spawner(void *arg)
{
    (void)arg;
    for (int i = 0; i < 2000; i++)
        sl_go(spin_a_bit, NULL);
}

static void test_idle_loop_steals(void **state)
{
    (void)state;
    sl_runtime *rt = rt_new(2);
    atomic_store(&g_count, 0);
    atomic_store(&g_loop_hits[1], 0);
    atomic_store(&g_loop_hits[2], 0);
    /* Everything is spawned on loop 1; loop 2 only gets work by stealing. */
    assert_int_equal(sl_go_with(&(sl_go_opts){.rt = rt, .loop = 1}, spawner, NULL), 0);
    assert_true(SL_WAIT_UNTIL(atomic_load(&g_count) == 2000, 30000));
    assert_true(atomic_load(&g_loop_hits[2]) > 0);
    rt_end(rt);
}

/* ---- shutdown ----------------------------------------------------------------------------- */

typedef struct parker {
    _Atomic int started;
    _Atomic int returned;
    sl_runtime *rt;
} parker;

static void unpark_cb(void *arg, int err)
{
    (void)err;
    sl__task_unpark(arg);
}

/* Parks until the runtime's ctx is cancelled (what a well-behaved task does at shutdown). */
static void cancellable(void *arg)
{
    parker *p = arg;
    sl_ctx *ctx = sl_runtime_ctx(p->rt);
    sl_ctx_hook *h = NULL;
    if (sl_ctx_on_done(ctx, unpark_cb, sl__task_self(), &h) < 0) return;
    atomic_store(&p->started, 1);
    while (!sl_ctx_done(ctx))
        sl__task_park();
    sl_ctx_hook_stop(h);
    atomic_store(&p->returned, 1);
}

/* Parks forever: nothing will wake it. */
static void stuck(void *arg)
{
    parker *p = arg;
    atomic_store(&p->started, 1);
    for (;;)
        sl__task_park();
}

static void test_shutdown_cancels_and_reports(void **state)
{
    (void)state;
    sl_runtime *rt = rt_new(2);
    parker a = {.rt = rt}, b = {.rt = rt};
    assert_int_equal(sl_go_with(&(sl_go_opts){.rt = rt, .name = "polite"}, cancellable, &a), 0);
    assert_int_equal(sl_go_with(&(sl_go_opts){.rt = rt, .name = "stuck-forever"}, stuck, &b), 0);
    assert_true(SL_WAIT_UNTIL(atomic_load(&a.started) && atomic_load(&b.started), 10000));
    assert_int_equal(sl_runtime_tasks(rt), 2);
    sl_ctx *ctx;
    assert_int_equal(sl_ctx_with_timeout(NULL, SL_MS(50), &ctx), 0);
    int64_t t0 = sl_mono_ns();
    assert_int_equal(sl_runtime_shutdown(rt, ctx), 1); /* "stuck-forever" abandoned */
    assert_true(sl_mono_ns() - t0 < SL_SEC(10));
    assert_int_equal(atomic_load(&a.returned), 1);
    assert_int_equal(sl_runtime_shutdown(rt, ctx), 1); /* idempotent */
    assert_int_equal(sl_go_with(&(sl_go_opts){.rt = rt}, count_task, NULL), SL_ECLOSED);
    sl_ctx_release(ctx);
    sl_runtime_free(rt);
}

static void test_default_runtime(void **state)
{
    (void)state;
    atomic_store(&g_count, 0);
    assert_int_equal(sl_go(count_task, NULL), 0);
    assert_true(SL_WAIT_UNTIL(atomic_load(&g_count) == 1, 10000));
    sl_runtime *rt = sl_runtime_default();
    assert_non_null(rt);
    assert_true(sl_runtime_loops(rt) >= 1);
    sl_runtime_free(rt); /* a later sl_go would make a new one */
    sl_runtime_opts bad = {.stack_size = 1024};
    sl_runtime *x = NULL;
    assert_int_equal(sl_runtime_new(&bad, &x), SL_EINVAL);
    assert_null(x);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spawn),
        cmocka_unit_test(test_spawn_from_task),
        cmocka_unit_test(test_pingpong_one_loop),
        cmocka_unit_test(test_pingpong_across_loops),
        cmocka_unit_test(test_unpark_from_thread),
        cmocka_unit_test(test_yield_alternates),
        cmocka_unit_test(test_idle_loop_steals),
        cmocka_unit_test(test_shutdown_cancels_and_reports),
        cmocka_unit_test(test_default_runtime),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
