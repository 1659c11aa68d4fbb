/* Every blocking sluice call parks the calling task (its loop runs other tasks) and blocks a
 * plain thread: tasks ping-ponging over sl_chan on one loop and across loops; ctx cancel and
 * deadline while a task is parked in each primitive; a thread waking a task and a task waking
 * a thread.
 *
 * How "parked, not blocking its loop" is proven without timing: the parked primitives run on a
 * runtime with ONE loop thread (nothing can steal work from it). Right before it blocks, the
 * waiting task spawns a probe task on that loop; the probe can run only once the waiter has
 * parked, and it records whether the waiter had already returned. A primitive that slept the
 * thread instead would let the probe run only after the waiter's return. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "harness.h"

#include "sluice/task.h"

static sl_runtime *g_rt1; /* one loop */
static sl_runtime *g_rt2; /* two loops */

static atomic_int g_spawn_errors; /* failed spawns from tasks (cmocka asserts only here) */

static int setup(void **state)
{
    (void)state;
    sl_runtime_opts one = {.loops = 1}, two = {.loops = 2};
    if (sl_runtime_new(&one, &g_rt1) != 0) return -1;
    if (sl_runtime_new(&two, &g_rt2) != 0) return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    assert_int_equal(atomic_load(&g_spawn_errors), 0);
    assert_int_equal(sl_runtime_shutdown(g_rt1, NULL), 0);
    assert_int_equal(sl_runtime_shutdown(g_rt2, NULL), 0);
    sl_runtime_free(g_rt1);
    sl_runtime_free(g_rt2);
    return 0;
}

static void spawn(sl_runtime *rt, int loop, const char *name, sl_task_fn fn, void *arg)
{
    sl_go_opts o = {.name = name, .rt = rt, .loop = loop};
    if (sl_go_with(&o, fn, arg) != 0) atomic_fetch_add(&g_spawn_errors, 1);
}

/* ---- ping-pong ---------------------------------------------------------------------------- */

enum { PP_ROUNDS = 2000 };

typedef struct pingpong {
    sl_chan *ping, *pong;
    sl_wg wg;
    atomic_int bad; /* values out of sequence */
    atomic_int loops_seen[2];
} pingpong;

static void pinger(void *arg)
{
    pingpong *p = arg;
    for (int i = 0; i < PP_ROUNDS; i++) {
        int v = i, back = -1;
        if (sl_chan_send(p->ping, &v, NULL) != 0 || sl_chan_recv(p->pong, &back, NULL) != 0 ||
            back != i + 1)
            atomic_fetch_add(&p->bad, 1);
    }
    atomic_store(&p->loops_seen[0], sl_task_loop());
    sl_wg_done(&p->wg);
}

static void ponger(void *arg)
{
    pingpong *p = arg;
    for (int i = 0; i < PP_ROUNDS; i++) {
        int v = -1;
        if (sl_chan_recv(p->ping, &v, NULL) != 0 || v != i) atomic_fetch_add(&p->bad, 1);
        v++;
        if (sl_chan_send(p->pong, &v, NULL) != 0) atomic_fetch_add(&p->bad, 1);
    }
    atomic_store(&p->loops_seen[1], sl_task_loop());
    sl_wg_done(&p->wg);
}

static void run_pingpong(sl_runtime *rt, int loop_a, int loop_b)
{
    pingpong p = {0};
    assert_int_equal(sl_chan_new(sizeof(int), 0, &p.ping), 0);
    assert_int_equal(sl_chan_new(sizeof(int), 0, &p.pong), 0);
    assert_int_equal(sl_wg_init(&p.wg), 0);
    sl_wg_add(&p.wg, 2);
    spawn(rt, loop_a, "pinger", pinger, &p);
    spawn(rt, loop_b, "ponger", ponger, &p);
    sl_ctx *ctx;
    assert_int_equal(sl_ctx_with_timeout(NULL, SL_SEC(60), &ctx), 0);
    assert_int_equal(sl_wg_wait(&p.wg, ctx), 0); /* a plain thread woken by a task */
    sl_ctx_release(ctx);
    assert_int_equal(atomic_load(&p.bad), 0);
    assert_true(atomic_load(&p.loops_seen[0]) >= 1);
    sl_wg_destroy(&p.wg);
    sl_chan_free(p.ping);
    sl_chan_free(p.pong);
}

static void test_pingpong_one_loop(void **state)
{
    (void)state;
    run_pingpong(g_rt1, 1, 1);
}

static void test_pingpong_two_loops(void **state)
{
    (void)state;
    run_pingpong(g_rt2, 1, 2);
}

/* ---- a task parked in each primitive, ended by its ctx ------------------------------------ */

enum kind {
    K_CTX_WAIT,
    K_SLEEP,
    K_CHAN_SEND,
    K_CHAN_RECV,
    K_SELECT,
    K_SEM,
    K_WG,
    K_GROUP_WAIT,
    K_GROUP_GO,
    K_POOL_SUBMIT,
    K_LIMITER,
    K_COUNT
};

static const char *const kind_names[K_COUNT] = {
    "ctx wait", "sleep",      "chan send", "chan recv",   "select",      "sem",
    "wg",       "group wait", "group go",  "pool submit", "limiter wait"};

typedef struct parked {
    enum kind kind;
    sl_ctx *ctx;
    int rc;
    int64_t t_call, t_return; /* sl_mono_ns around the blocking call */
    atomic_bool finished;
    atomic_bool probe_ran;
    atomic_bool probe_saw_finished;
    /* the primitives */
    sl_chan *ch, *ch2, *gate;
    sl_sem *sem;
    sl_wg wg;
    sl_group *group;
    sl_pool *pool;
    sl_limiter *lim;
    atomic_bool gate_entered;
} parked;

static void probe(void *arg)
{
    parked *p = arg;
    atomic_store(&p->probe_saw_finished, atomic_load(&p->finished));
    atomic_store(&p->probe_ran, true);
}

static int group_waits_ctx(sl_ctx *ctx, void *arg)
{
    (void)arg;
    return sl_ctx_wait(ctx);
}

static int group_gate(sl_ctx *ctx, void *arg)
{
    (void)ctx;
    parked *p = arg;
    atomic_store(&p->gate_entered, true);
    sl_chan_recv(p->gate, NULL, NULL); /* until the test closes the gate */
    return 0;
}

static int group_noop(sl_ctx *ctx, void *arg)
{
    (void)ctx;
    (void)arg;
    return 0;
}

static int pool_gate(sl_ctx *ctx, void *arg)
{
    parked *p = arg;
    atomic_store(&p->gate_entered, true);
    sl_chan_recv(p->gate, NULL, ctx);
    return 0;
}

static int pool_noop(sl_ctx *ctx, void *arg)
{
    (void)ctx;
    (void)arg;
    return 0;
}

static int block_in(parked *p)
{
    int v = 7;
    switch (p->kind) {
    case K_CTX_WAIT: return sl_ctx_wait(p->ctx);
    case K_SLEEP: return sl_ctx_wait_for(p->ctx, SL_SEC(60));
    case K_CHAN_SEND: return sl_chan_send(p->ch, &v, p->ctx);
    case K_CHAN_RECV: return sl_chan_recv(p->ch, &v, p->ctx);
    case K_SELECT: {
        int a, b = 1;
        sl_chan_case cs[2] = {{.chan = p->ch, .dir = SL_CHAN_RECV, .elem = &a},
                              {.chan = p->ch2, .dir = SL_CHAN_SEND, .elem = &b}};
        return sl_chan_select(cs, 2, NULL, p->ctx);
    }
    case K_SEM: return sl_sem_acquire(p->sem, 1, p->ctx);
    case K_WG: return sl_wg_wait(&p->wg, p->ctx);
    case K_GROUP_WAIT: return sl_group_wait(p->group);
    case K_GROUP_GO: return sl_group_go_ctx(p->group, group_noop, NULL, p->ctx);
    case K_POOL_SUBMIT: {
        sl_pool_job job = {.id = "parked", .fn = pool_noop};
        return sl_pool_submit(p->pool, &job, p->ctx);
    }
    case K_LIMITER: return sl_limiter_wait(p->lim, p->ctx);
    default: return SL_EINVAL;
    }
}

static void waiter(void *arg)
{
    parked *p = arg;
    spawn(g_rt1, 1, "probe", probe, p); /* queued behind us: runs once we park */
    p->t_call = sl_mono_ns();
    p->rc = block_in(p);
    p->t_return = sl_mono_ns();
    atomic_store(&p->finished, true);
}

/* Builds the primitive so that block_in(p) must wait. */
static void arrange(parked *p)
{
    switch (p->kind) {
    case K_CHAN_SEND:
    case K_CHAN_RECV:
    case K_SELECT:
        assert_int_equal(sl_chan_new(sizeof(int), 0, &p->ch), 0);
        assert_int_equal(sl_chan_new(sizeof(int), 0, &p->ch2), 0);
        break;
    case K_SEM:
        assert_int_equal(sl_sem_new(1, &p->sem), 0);
        assert_true(sl_sem_try_acquire(p->sem, 1));
        break;
    case K_WG:
        assert_int_equal(sl_wg_init(&p->wg), 0);
        sl_wg_add(&p->wg, 1);
        break;
    case K_GROUP_WAIT:
        /* The group's task waits on the group ctx, a child of p->ctx: cancel or deadline. */
        assert_int_equal(sl_group_new(p->ctx, &p->group), 0);
        assert_int_equal(sl_group_go(p->group, group_waits_ctx, NULL), 0);
        break;
    case K_GROUP_GO:
        assert_int_equal(sl_chan_new(sizeof(int), 0, &p->gate), 0);
        assert_int_equal(sl_group_new(NULL, &p->group), 0);
        assert_int_equal(sl_group_set_limit(p->group, 1), 0);
        assert_int_equal(sl_group_go(p->group, group_gate, p), 0);
        assert_true(SL_WAIT_UNTIL(atomic_load(&p->gate_entered), 5000));
        break;
    case K_POOL_SUBMIT: {
        assert_int_equal(sl_chan_new(sizeof(int), 0, &p->gate), 0);
        sl_pool_opts o = {.workers = 1, .queue_capacity = 2, .logger = sl_log_discard()};
        assert_int_equal(sl_pool_new(&o, &p->pool), 0);
        sl_pool_job gate = {.id = "gate", .fn = pool_gate, .arg = p};
        assert_int_equal(sl_pool_submit(p->pool, &gate, NULL), 0);
        assert_true(SL_WAIT_UNTIL(atomic_load(&p->gate_entered), 5000));
        sl_pool_job noop = {.id = "fill", .fn = pool_noop};
        while (sl_pool_try_submit(p->pool, &noop) == 0) {
        }
        break;
    }
    case K_LIMITER:
        assert_int_equal(sl_limiter_new(sl_rate_every(SL_SEC(100)), 1, &p->lim), 0);
        assert_true(sl_limiter_allow(p->lim));
        break;
    default: break;
    }
}

static void clean(parked *p)
{
    switch (p->kind) {
    case K_WG:
        sl_wg_done(&p->wg);
        sl_wg_destroy(&p->wg);
        break;
    case K_GROUP_WAIT: sl_group_free(p->group); break;
    case K_GROUP_GO:
        sl_chan_close(p->gate);
        sl_group_wait(p->group);
        sl_group_free(p->group);
        break;
    case K_POOL_SUBMIT:
        sl_chan_close(p->gate);
        assert_int_equal(sl_pool_shutdown(p->pool, NULL, NULL), 0);
        sl_pool_free(p->pool);
        break;
    default: break;
    }
    sl_chan_free(p->ch);
    sl_chan_free(p->ch2);
    sl_chan_free(p->gate);
    sl_sem_free(p->sem);
    sl_limiter_free(p->lim);
}

/* One primitive, one way of ending the wait: cancel (deadline_ms == 0) or a deadline. */
static void run_parked(enum kind k, int64_t deadline_ms)
{
    parked *p = calloc(1, sizeof *p);
    assert_non_null(p);
    p->kind = k;
    int64_t t_created = sl_mono_ns();
    if (deadline_ms > 0)
        assert_int_equal(sl_ctx_with_timeout(NULL, SL_MS(deadline_ms), &p->ctx), 0);
    else
        assert_int_equal(sl_ctx_with_cancel(NULL, &p->ctx), 0);
    arrange(p);
    spawn(g_rt1, 1, kind_names[k], waiter, p);
    /* The probe ran while the waiter had not returned: the waiter parked, its loop ran on. */
    assert_true(SL_WAIT_UNTIL(atomic_load(&p->probe_ran), 10000));
    print_message("%-12s %s: probe ran while parked: %s\n", kind_names[k],
                  deadline_ms ? "deadline" : "cancel",
                  atomic_load(&p->probe_saw_finished) ? "no" : "yes");
    assert_false(atomic_load(&p->probe_saw_finished));
    int64_t t_cancel = sl_mono_ns();
    if (deadline_ms == 0) {
        assert_false(atomic_load(&p->finished));
        sl_ctx_cancel(p->ctx);
    }
    assert_true(SL_WAIT_UNTIL(atomic_load(&p->finished), 10000));
    if (deadline_ms == 0) {
        assert_int_equal(p->rc, SL_ECANCELED);
        /* Promptly: one cross-thread unpark, far below the 60 s the waits would last. */
        assert_true(p->t_return - t_cancel < SL_SEC(2));
    } else {
        assert_int_equal(p->rc, SL_ETIMEDOUT);
        assert_true(p->t_return - t_created >= SL_MS(deadline_ms));
        assert_true(p->t_return - p->t_call < SL_MS(deadline_ms) + SL_SEC(2));
    }
    clean(p);
    sl_ctx_release(p->ctx);
    free(p);
}

static void test_cancel_while_parked(void **state)
{
    (void)state;
    for (int k = 0; k < K_COUNT; k++)
        run_parked((enum kind)k, 0);
}

static void test_deadline_while_parked(void **state)
{
    (void)state;
    for (int k = 0; k < K_COUNT; k++) {
        /* A limiter refuses a wait its deadline cannot cover (x/time/rate semantics): it
         * answers SL_ETIMEDOUT at once without parking, checked below. */
        if (k == K_LIMITER) continue;
        run_parked((enum kind)k, 150);
    }
}

typedef struct lim_case {
    sl_limiter *lim;
    sl_ctx *ctx;
    int rc;
    atomic_bool done;
} lim_case;

static void limiter_deadline(void *arg)
{
    lim_case *c = arg;
    c->rc = sl_limiter_wait(c->lim, c->ctx);
    atomic_store(&c->done, true);
}

static void test_limiter_deadline_refused(void **state)
{
    (void)state;
    lim_case c = {0};
    assert_int_equal(sl_limiter_new(sl_rate_every(SL_SEC(100)), 1, &c.lim), 0);
    assert_true(sl_limiter_allow(c.lim));
    assert_int_equal(sl_ctx_with_timeout(NULL, SL_MS(150), &c.ctx), 0);
    spawn(g_rt1, 1, "limiter", limiter_deadline, &c);
    assert_true(SL_WAIT_UNTIL(atomic_load(&c.done), 10000));
    assert_int_equal(c.rc, SL_ETIMEDOUT);
    sl_ctx_release(c.ctx);
    sl_limiter_free(c.lim);
}

/* ---- once: no ctx, but a task waiting for another's fn parks --------------------------- */

typedef struct once_case {
    sl_once once;
    sl_chan *gate;
    parked p; /* only finished / probe fields are used */
    int rc;
    atomic_bool in_fn;
} once_case;

static int once_fn(void *arg)
{
    once_case *c = arg;
    atomic_store(&c->in_fn, true);
    sl_chan_recv(c->gate, NULL, NULL); /* a plain thread runs fn until the gate closes */
    return 42;
}

static void *once_runner(void *arg)
{
    once_case *c = arg;
    sl_once_do(&c->once, once_fn, c);
    return NULL;
}

static void once_waiter(void *arg)
{
    once_case *c = arg;
    spawn(g_rt1, 1, "probe", probe, &c->p);
    c->rc = sl_once_do(&c->once, once_fn, c);
    atomic_store(&c->p.finished, true);
}

static void test_once_parks(void **state)
{
    (void)state;
    once_case c = {.once = SL_ONCE_INIT};
    assert_int_equal(sl_chan_new(sizeof(int), 0, &c.gate), 0);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, once_runner, &c), 0);
    assert_true(SL_WAIT_UNTIL(atomic_load(&c.in_fn), 5000));
    spawn(g_rt1, 1, "once", once_waiter, &c);
    assert_true(SL_WAIT_UNTIL(atomic_load(&c.p.probe_ran), 10000));
    assert_false(atomic_load(&c.p.probe_saw_finished));
    assert_false(atomic_load(&c.p.finished));
    sl_chan_close(c.gate);
    assert_true(SL_WAIT_UNTIL(atomic_load(&c.p.finished), 10000));
    assert_int_equal(c.rc, 42);
    pthread_join(t, NULL);
    sl_chan_free(c.gate);
}

/* ---- threads and tasks wake each other ----------------------------------------------------- */

typedef struct mixed {
    sl_chan *to_task, *to_thread;
    sl_sem *sem;
    sl_wg wg;
    int got;
    int sem_rc;
    atomic_bool task_done;
} mixed;

static void mixed_task(void *arg)
{
    mixed *m = arg;
    sl_chan_recv(m->to_task, &m->got, NULL);     /* parked; a plain thread sends */
    m->sem_rc = sl_sem_acquire(m->sem, 1, NULL); /* parked; a plain thread releases */
    int v = m->got + 1;
    sl_chan_send(m->to_thread, &v, NULL); /* wakes the thread blocked in recv */
    sl_wg_done(&m->wg);                   /* wakes the thread blocked in wg wait */
    atomic_store(&m->task_done, true);
}

static void test_thread_and_task_wake_each_other(void **state)
{
    (void)state;
    mixed m = {0};
    assert_int_equal(sl_chan_new(sizeof(int), 0, &m.to_task), 0);
    assert_int_equal(sl_chan_new(sizeof(int), 0, &m.to_thread), 0);
    assert_int_equal(sl_sem_new(1, &m.sem), 0);
    assert_true(sl_sem_try_acquire(m.sem, 1));
    assert_int_equal(sl_wg_init(&m.wg), 0);
    sl_wg_add(&m.wg, 1);
    spawn(g_rt2, 1, "mixed", mixed_task, &m);
    int v = 41;
    assert_int_equal(sl_chan_send(m.to_task, &v, NULL), 0); /* a rendezvous with the task */
    assert_true(SL_WAIT_UNTIL(sl_sem_waiters(m.sem) == 1, 5000));
    assert_int_equal(sl_sem_release(m.sem, 1), 0);
    int back = 0;
    assert_int_equal(sl_chan_recv(m.to_thread, &back, NULL), 0);
    assert_int_equal(back, 42);
    assert_int_equal(sl_wg_wait(&m.wg, NULL), 0);
    assert_true(SL_WAIT_UNTIL(atomic_load(&m.task_done), 5000));
    assert_int_equal(m.sem_rc, 0);
    sl_wg_destroy(&m.wg);
    sl_sem_free(m.sem);
    sl_chan_free(m.to_task);
    sl_chan_free(m.to_thread);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pingpong_one_loop),
        cmocka_unit_test(test_pingpong_two_loops),
        cmocka_unit_test(test_cancel_while_parked),
        cmocka_unit_test(test_deadline_while_parked),
        cmocka_unit_test(test_limiter_deadline_refused),
        cmocka_unit_test(test_once_parks),
        cmocka_unit_test(test_thread_and_task_wake_each_other),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
