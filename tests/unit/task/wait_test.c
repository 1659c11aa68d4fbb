/* sl_wait_fd and sl_offload, on tasks and on plain threads: readiness, timeouts, cancel while
 * parked, hangup, one waiter per fd, offload off the loop thread, cancel before start. */
#include "harness.h"
#include "task/task_int.h"

#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <unistd.h>

static sl_runtime *g_rt;

static int setup(void **state)
{
    (void)state;
    sl_runtime_opts o = {.loops = 2, .offload_threads = 1};
    return sl_runtime_new(&o, &g_rt);
}

static int teardown(void **state)
{
    (void)state;
    sl_ctx *ctx;
    sl_ctx_with_timeout(NULL, SL_SEC(10), &ctx);
    int n = sl_runtime_shutdown(g_rt, ctx);
    sl_ctx_release(ctx);
    sl_runtime_free(g_rt);
    return n;
}

/* A task body run with a result slot the test thread polls. */
typedef struct job {
    int (*body)(struct job *);
    int fd;
    int events;
    sl_ctx *ctx;
    _Atomic int parked_hint; /* set just before the body waits */
    _Atomic int done;
    int rc;      /* written by the task before done (release) */
    int on_task; /* the body ran on a task */
} job;

static void job_task(void *arg)
{
    job *j = arg;
    j->on_task = sl_task_in();
    j->rc = j->body(j);
    atomic_store_explicit(&j->done, 1, memory_order_release);
}

static void *job_thread(void *arg)
{
    job_task(arg);
    return NULL;
}

static void run_on_task(job *j)
{
    assert_int_equal(sl_go_with(&(sl_go_opts){.rt = g_rt, .name = "waiter"}, job_task, j), 0);
}

static int wait_body(job *j)
{
    atomic_store(&j->parked_hint, 1);
    return sl_wait_fd(j->fd, j->events, j->ctx);
}

static void test_fd_ready_and_timeout_on_task(void **state)
{
    (void)state;
    int p[2];
    assert_int_equal(pipe(p), 0);
    /* Times out: nothing to read. */
    job a = {.body = wait_body, .fd = p[0], .events = SL_WAIT_READ};
    int64_t t0 = sl_mono_ns();
    assert_int_equal(sl_ctx_with_timeout(NULL, SL_MS(50), &a.ctx), 0);
    run_on_task(&a);
    assert_true(SL_WAIT_UNTIL(atomic_load_explicit(&a.done, memory_order_acquire), 10000));
    assert_int_equal(a.rc, SL_ETIMEDOUT);
    assert_true(sl_mono_ns() - t0 >= SL_MS(49));
    assert_true(a.on_task);
    sl_ctx_release(a.ctx);

    /* Ready: the write arrives while the task is parked. */
    job b = {.body = wait_body, .fd = p[0], .events = SL_WAIT_READ};
    assert_int_equal(sl_ctx_with_timeout(NULL, SL_SEC(10), &b.ctx), 0);
    run_on_task(&b);
    assert_true(SL_WAIT_UNTIL(atomic_load(&b.parked_hint), 10000));
    assert_int_equal(write(p[1], "x", 1), 1);
    assert_true(SL_WAIT_UNTIL(atomic_load_explicit(&b.done, memory_order_acquire), 10000));
    assert_int_equal(b.rc, SL_WAIT_READ);
    sl_ctx_release(b.ctx);

    /* Write readiness is immediate on an empty pipe. */
    job c = {.body = wait_body, .fd = p[1], .events = SL_WAIT_WRITE | SL_WAIT_READ};
    run_on_task(&c);
    assert_true(SL_WAIT_UNTIL(atomic_load_explicit(&c.done, memory_order_acquire), 10000));
    assert_int_equal(c.rc, SL_WAIT_WRITE);
    close(p[0]);
    close(p[1]);
}

static void test_fd_cancel_and_hangup_on_task(void **state)
{
    (void)state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    job a = {.body = wait_body, .fd = sv[0], .events = SL_WAIT_READ};
    assert_int_equal(sl_ctx_with_cancel(NULL, &a.ctx), 0);
    run_on_task(&a);
    assert_true(SL_WAIT_UNTIL(atomic_load(&a.parked_hint), 10000));
    sl_ctx_cancel(a.ctx);
    assert_true(SL_WAIT_UNTIL(atomic_load_explicit(&a.done, memory_order_acquire), 10000));
    assert_int_equal(a.rc, SL_ECANCELED);
    sl_ctx_release(a.ctx);

    /* The peer goes away while the task waits: ready. */
    job b = {.body = wait_body, .fd = sv[0], .events = SL_WAIT_READ};
    run_on_task(&b);
    assert_true(SL_WAIT_UNTIL(atomic_load(&b.parked_hint), 10000));
    close(sv[1]);
    assert_true(SL_WAIT_UNTIL(atomic_load_explicit(&b.done, memory_order_acquire), 10000));
    assert_int_equal(b.rc, SL_WAIT_READ);
    close(sv[0]);
}

static void test_fd_on_thread(void **state)
{
    (void)state;
    int p[2];
    assert_int_equal(pipe(p), 0);
    sl_ctx *ctx;
    assert_int_equal(sl_ctx_with_timeout(NULL, SL_MS(30), &ctx), 0);
    assert_int_equal(sl_wait_fd(p[0], SL_WAIT_READ, ctx), SL_ETIMEDOUT);
    sl_ctx_release(ctx);
    assert_int_equal(write(p[1], "x", 1), 1);
    assert_int_equal(sl_wait_fd(p[0], SL_WAIT_READ, NULL), SL_WAIT_READ);
    assert_int_equal(sl_wait_fd(p[1], SL_WAIT_WRITE, NULL), SL_WAIT_WRITE);
    assert_int_equal(sl_wait_fd(-1, SL_WAIT_READ, NULL), SL_EINVAL);
    assert_int_equal(sl_wait_fd(p[0], 0, NULL), SL_EINVAL);
    assert_int_equal(sl_wait_fd(p[0], 8, NULL), SL_EINVAL);
    /* Cancelled from another thread while blocked in poll(). */
    char c;
    assert_int_equal(read(p[0], &c, 1), 1);
    assert_int_equal(sl_ctx_with_cancel(NULL, &ctx), 0);
    job j = {.body = wait_body, .fd = p[0], .events = SL_WAIT_READ, .ctx = ctx};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, job_thread, &j), 0);
    assert_true(SL_WAIT_UNTIL(atomic_load(&j.parked_hint), 10000));
    sl_ctx_cancel(ctx);
    pthread_join(th, NULL);
    assert_int_equal(j.rc, SL_ECANCELED);
    assert_false(j.on_task);
    sl_ctx_release(ctx);
    close(p[0]);
    close(p[1]);
}

/* Two tasks on one loop waiting on the same fd: the second gets SL_EEXIST. */
typedef struct samefd {
    int fd;
    _Atomic int first_in;
    _Atomic int second_rc_set;
    int second_rc;
    sl_ctx *ctx;
} samefd;

static void first_waiter(void *arg)
{
    samefd *d = arg;
    atomic_store(&d->first_in, 1);
    sl_wait_fd(d->fd, SL_WAIT_READ, d->ctx);
}

static void second_waiter(void *arg)
{
    samefd *d = arg;
    while (!atomic_load(&d->first_in))
        sl_task_yield();
    d->second_rc = sl_wait_fd(d->fd, SL_WAIT_READ, d->ctx);
    atomic_store_explicit(&d->second_rc_set, 1, memory_order_release);
}

static void test_fd_one_waiter(void **state)
{
    (void)state;
    int p[2];
    assert_int_equal(pipe(p), 0);
    samefd d = {.fd = p[0]};
    assert_int_equal(sl_ctx_with_cancel(NULL, &d.ctx), 0);
    assert_int_equal(sl_go_with(&(sl_go_opts){.rt = g_rt, .loop = 1}, first_waiter, &d), 0);
    assert_int_equal(sl_go_with(&(sl_go_opts){.rt = g_rt, .loop = 1}, second_waiter, &d), 0);
    assert_true(SL_WAIT_UNTIL(atomic_load_explicit(&d.second_rc_set, memory_order_acquire), 10000));
    assert_int_equal(d.second_rc, SL_EEXIST);
    sl_ctx_cancel(d.ctx);
    assert_true(SL_WAIT_UNTIL(sl_runtime_tasks(g_rt) == 0, 10000));
    sl_ctx_release(d.ctx);
    close(p[0]);
    close(p[1]);
}

/* ---- offload ------------------------------------------------------------------------------ */

typedef struct off {
    _Atomic int started;
    _Atomic int release;
    _Atomic int ran;
    int on_loop; /* sl_task_loop() seen inside fn */
} off;

static void blocking_fn(void *arg)
{
    off *o = arg;
    o->on_loop = sl_task_loop();
    atomic_store(&o->started, 1);
    /* A foreign blocking call stands here; the test releases it. */
    SL_WAIT_UNTIL(atomic_load(&o->release), 10000);
    atomic_fetch_add(&o->ran, 1);
}

static void quick_fn(void *arg)
{
    off *o = arg;
    o->on_loop = sl_task_loop();
    atomic_fetch_add(&o->ran, 1);
}

typedef struct offjob {
    job j;
    sl_offload_fn fn;
    off *o;
} offjob;

static int offload_body(job *j)
{
    offjob *oj = (offjob *)j;
    atomic_store(&j->parked_hint, 1);
    return sl_offload(oj->fn, oj->o, j->ctx);
}

static void test_offload(void **state)
{
    (void)state;
    /* Runs off the loop; the task waits parked. */
    off q = {0};
    offjob a = {.j.body = offload_body, .fn = quick_fn, .o = &q};
    run_on_task(&a.j);
    assert_true(SL_WAIT_UNTIL(atomic_load_explicit(&a.j.done, memory_order_acquire), 10000));
    assert_int_equal(a.j.rc, 0);
    assert_int_equal(atomic_load(&q.ran), 1);
    assert_int_equal(q.on_loop, 0);

    /* The single offload thread is busy: a second job with a cancelled ctx never runs. */
    off busy = {0}, never = {0};
    offjob b = {.j.body = offload_body, .fn = blocking_fn, .o = &busy};
    run_on_task(&b.j);
    assert_true(SL_WAIT_UNTIL(atomic_load(&busy.started), 10000));
    offjob c = {.j.body = offload_body, .fn = quick_fn, .o = &never};
    assert_int_equal(sl_ctx_with_cancel(NULL, &c.j.ctx), 0);
    run_on_task(&c.j);
    assert_true(SL_WAIT_UNTIL(atomic_load(&c.j.parked_hint), 10000));
    sl_ctx_cancel(c.j.ctx);
    assert_true(SL_WAIT_UNTIL(atomic_load_explicit(&c.j.done, memory_order_acquire), 10000));
    assert_int_equal(c.j.rc, SL_ECANCELED);
    /* Started work is waited for even if its ctx fires. */
    atomic_store(&busy.release, 1);
    assert_true(SL_WAIT_UNTIL(atomic_load_explicit(&b.j.done, memory_order_acquire), 10000));
    assert_int_equal(b.j.rc, 0);
    assert_int_equal(atomic_load(&busy.ran), 1);
    assert_int_equal(atomic_load(&never.ran), 0);
    sl_ctx_release(c.j.ctx);

    /* On a plain thread fn runs inline; a done ctx stops it first. */
    off t = {0};
    assert_int_equal(sl_offload(quick_fn, &t, NULL), 0);
    assert_int_equal(atomic_load(&t.ran), 1);
    sl_ctx *done;
    assert_int_equal(sl_ctx_with_cancel(NULL, &done), 0);
    sl_ctx_cancel(done);
    assert_int_equal(sl_offload(quick_fn, &t, done), SL_ECANCELED);
    assert_int_equal(atomic_load(&t.ran), 1);
    sl_ctx_release(done);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fd_ready_and_timeout_on_task),
        cmocka_unit_test(test_fd_cancel_and_hangup_on_task),
        cmocka_unit_test(test_fd_on_thread),
        cmocka_unit_test(test_fd_one_waiter),
        cmocka_unit_test(test_offload),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
