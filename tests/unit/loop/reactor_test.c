/* The reactor alone: posted tasks from many threads (each producer's tasks run in its order,
 * none lost), fixed-duration timer queues (order, restart, stop, disabled queues), fd
 * callbacks, deferred tasks, and stop from a task. */
#include "harness.h"
#include "loop/reactor.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

typedef struct ptask {
    sl__task t;
    int producer;
    int seq;
} ptask;

enum { NPROD = 4, PER = 5000 };
static ptask g_tasks[NPROD][PER];
static int g_next[NPROD]; /* loop thread only */
static int g_bad;         /* loop thread only */
static atomic_int g_ran;

static void run_ptask(sl__reactor *r, sl__task *t)
{
    (void)r;
    ptask *p = (ptask *)t;
    if (p->seq != g_next[p->producer]) g_bad++;
    g_next[p->producer] = p->seq + 1;
    atomic_fetch_add(&g_ran, 1);
}

static void stop_task(sl__reactor *r, sl__task *t)
{
    (void)t;
    sl__reactor_stop(r);
}

typedef struct prod {
    sl__reactor *r;
    int id;
} prod;

static void *producer(void *arg)
{
    prod *p = arg;
    for (int i = 0; i < PER; i++) {
        g_tasks[p->id][i] = (ptask){.t.fn = run_ptask, .producer = p->id, .seq = i};
        sl__reactor_post(p->r, &g_tasks[p->id][i].t);
    }
    return NULL;
}

static void *loop_main(void *arg)
{
    sl__reactor_run(arg);
    return NULL;
}

static void test_post_mpsc(void **state)
{
    (void)state;
    sl__reactor r;
    assert_int_equal(sl__reactor_init(&r), 0);
    pthread_t loop, th[NPROD];
    prod ps[NPROD];
    assert_int_equal(pthread_create(&loop, NULL, loop_main, &r), 0);
    for (int i = 0; i < NPROD; i++) {
        ps[i] = (prod){.r = &r, .id = i};
        assert_int_equal(pthread_create(&th[i], NULL, producer, &ps[i]), 0);
    }
    for (int i = 0; i < NPROD; i++)
        pthread_join(th[i], NULL);
    assert_true(SL_WAIT_UNTIL(atomic_load(&g_ran) == NPROD * PER, 10000));
    sl__task st = {.fn = stop_task};
    sl__reactor_post(&r, &st);
    pthread_join(loop, NULL);
    assert_int_equal(g_bad, 0);
    for (int i = 0; i < NPROD; i++)
        assert_int_equal(g_next[i], PER);
    sl__reactor_destroy(&r);
}

/* ---- timers ---- */

static int g_order[8];
static int g_nfired;
static sl__timer g_t[4];
static sl__tq *g_restart_q;

static void timer_fired(sl__reactor *r, sl__timer *t)
{
    int idx = (int)(t - g_t);
    g_order[g_nfired++] = idx;
    if (idx == 0 && g_restart_q) { /* restart once from its own callback */
        sl__timer_start(r, g_restart_q, t);
        g_restart_q = NULL;
    }
    if (g_nfired == 4) sl__reactor_stop(r);
}

static void test_timers(void **state)
{
    (void)state;
    sl__reactor r;
    assert_int_equal(sl__reactor_init(&r), 0);
    sl__tq fast, slow, off;
    sl__tq_init(&r, &fast, SL_MS(20), timer_fired);
    sl__tq_init(&r, &slow, SL_MS(60), timer_fired);
    sl__tq_init(&r, &off, -1, timer_fired);
    memset(g_t, 0, sizeof g_t);
    sl__timer_start(&r, &slow, &g_t[1]);
    sl__timer_start(&r, &fast, &g_t[0]);
    sl__timer_start(&r, &fast, &g_t[2]);
    sl__timer_start(&r, &off, &g_t[3]); /* disabled queue: never fires */
    assert_false(sl__timer_active(&g_t[3]));
    sl__timer_stop(&g_t[2]);
    sl__timer_stop(&g_t[2]);             /* twice is fine */
    sl__timer_start(&r, &fast, &g_t[2]); /* restart: now after t0 in the queue */
    g_restart_q = &slow;
    int64_t t0 = sl_mono_ns();
    sl__reactor_run(&r);
    int64_t ms = (sl_mono_ns() - t0) / SL_MS(1);
    /* fast: 0 then 2 (20 ms); slow: 1 (60 ms); 0 again (20 + 60 ms). */
    assert_int_equal(g_order[0], 0);
    assert_int_equal(g_order[1], 2);
    assert_int_equal(g_order[2], 1);
    assert_int_equal(g_order[3], 0);
    assert_true(ms >= 75);
    sl__reactor_destroy(&r);
}

/* ---- fd callbacks and deferred tasks ---- */

typedef struct piper {
    sl__io io;
    char got[16];
    int n;
    bool deferred_ran;
    sl__task defer;
} piper;

static void deferred(sl__reactor *r, sl__task *t)
{
    piper *p = (piper *)((char *)t - offsetof(piper, defer));
    p->deferred_ran = true;
    sl__reactor_stop(r);
}

static void on_read(sl__reactor *r, sl__io *io, uint32_t ev)
{
    piper *p = (piper *)io;
    assert_true(ev & EPOLLIN);
    ssize_t n = read(io->fd, p->got + p->n, sizeof p->got - 1 - (size_t)p->n);
    if (n > 0) p->n += (int)n;
    if (p->n >= 5) {
        sl__io_stop(r, io);
        p->defer.fn = deferred;
        sl__reactor_defer(r, &p->defer);
        assert_false(p->deferred_ran); /* runs after this batch, not now */
    }
}

static void *writer(void *arg)
{
    int fd = *(int *)arg;
    for (int i = 0; i < 5; i++)
        assert_int_equal(write(fd, "abcde" + i, 1), 1);
    return NULL;
}

static void test_io_and_defer(void **state)
{
    (void)state;
    sl__reactor r;
    assert_int_equal(sl__reactor_init(&r), 0);
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    piper p = {0};
    assert_int_equal(sl__io_start(&r, &p.io, fds[0], EPOLLIN, on_read), 0);
    assert_int_equal(sl__io_set(&r, &p.io, 0), 0); /* silent */
    assert_int_equal(sl__io_set(&r, &p.io, EPOLLIN), 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, writer, &fds[1]), 0);
    sl__reactor_run(&r);
    pthread_join(th, NULL);
    assert_true(p.deferred_ran);
    assert_memory_equal(p.got, "abcde", 5);
    close(fds[0]);
    close(fds[1]);
    sl__reactor_destroy(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_post_mpsc),
        cmocka_unit_test(test_timers),
        cmocka_unit_test(test_io_and_defer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
