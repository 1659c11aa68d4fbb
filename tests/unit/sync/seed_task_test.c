/* The seed's Go concurrency patterns (../shared/seed), written with tasks: no thread per unit
 * of work. Each pattern's units of work are tasks, and the process's thread count is checked
 * not to grow with them.
 *
 * - Worker pool: a buffered job channel, N worker tasks ranging over it, Submit = send,
 *   Shutdown = close + wg wait. Handlers submitting are tasks too.
 * - errgroup fan-out: N tasks share a cancellable ctx; the first error wins (CAS) and cancels
 *   the rest, which return promptly with SL_ECANCELED; the caller (a task) waits on a wg.
 * - fetchWithTimeout: the caller gives up on its ctx deadline while the fetcher is still
 *   working. With a 1-slot channel the fetcher's late send completes and it exits (the fix);
 *   with a rendezvous channel it stays parked in send until someone receives (the leak). */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#include "sluice/task.h"

static sl_runtime *g_rt;

static atomic_int g_task_errors; /* failures seen inside tasks (cmocka asserts only here) */

static int setup(void **state)
{
    (void)state;
    sl_runtime_opts o = {.loops = 2};
    return sl_runtime_new(&o, &g_rt) == 0 ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    assert_int_equal(atomic_load(&g_task_errors), 0);
    assert_int_equal(sl_runtime_shutdown(g_rt, NULL), 0);
    sl_runtime_free(g_rt);
    return 0;
}

static void spawn(const char *name, sl_task_fn fn, void *arg)
{
    sl_go_opts o = {.name = name, .rt = g_rt};
    if (sl_go_with(&o, fn, arg) != 0) atomic_fetch_add(&g_task_errors, 1);
}

/* Threads of this process, from /proc/self/status. */
static int thread_count(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return 1 << 20;
    char line[256];
    int n = 1 << 20;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "Threads: %d", &n) == 1) break;
    fclose(f);
    return n;
}

static void warm(void *arg)
{
    sl_ctx_wait_for(NULL, SL_MS(1)); /* starts the ctx timer thread, if it is not running */
    atomic_store((atomic_bool *)arg, true);
}

/* The thread count once the runtime and the ctx timer run: the floor for every check. */
static int baseline_threads(void)
{
    atomic_bool done = false;
    spawn("warm", warm, &done);
    assert_true(SL_WAIT_UNTIL(atomic_load(&done), 5000));
    return thread_count();
}

/* ---- worker pool ------------------------------------------------------------------------- */

enum { WP_WORKERS = 8, WP_QUEUE = 16, WP_HANDLERS = 100, WP_JOBS_PER = 10 };

typedef struct wpool {
    sl_chan *jobs; /* of int job ids */
    sl_wg workers;
    sl_wg handlers;
    atomic_long sum;
    atomic_int done;
    atomic_int max_threads;
} wpool;

static void wp_worker(void *arg)
{
    wpool *wp = arg;
    int id;
    while (sl_chan_recv(wp->jobs, &id, NULL) == 0) { /* for job := range jobs */
        sl_ctx_wait_for(NULL, SL_US(200));           /* the job's I/O: the task parks */
        atomic_fetch_add(&wp->sum, id);
        atomic_fetch_add(&wp->done, 1);
    }
    sl_wg_done(&wp->workers);
}

static void wp_handler(void *arg)
{
    wpool *wp = arg;
    static atomic_int next_id = 1;
    for (int i = 0; i < WP_JOBS_PER; i++) {
        int id = atomic_fetch_add(&next_id, 1);
        if (sl_chan_send(wp->jobs, &id, NULL) != 0) /* Submit: parks while the queue is full */
            atomic_fetch_add(&g_task_errors, 1);
    }
    int n = thread_count();
    int m = atomic_load(&wp->max_threads);
    while (n > m && !atomic_compare_exchange_weak(&wp->max_threads, &m, n)) {
    }
    sl_wg_done(&wp->handlers);
}

static void test_worker_pool(void **state)
{
    (void)state;
    int base = baseline_threads();
    wpool wp = {0};
    assert_int_equal(sl_chan_new(sizeof(int), WP_QUEUE, &wp.jobs), 0);
    assert_int_equal(sl_wg_init(&wp.workers), 0);
    assert_int_equal(sl_wg_init(&wp.handlers), 0);
    sl_wg_add(&wp.workers, WP_WORKERS);
    for (int i = 0; i < WP_WORKERS; i++)
        spawn("worker", wp_worker, &wp);
    sl_wg_add(&wp.handlers, WP_HANDLERS);
    for (int i = 0; i < WP_HANDLERS; i++)
        spawn("handler", wp_handler, &wp);
    assert_int_equal(sl_wg_wait(&wp.handlers, NULL), 0);
    /* Shutdown: close(jobs); wg.Wait() — the workers drain what is queued, then exit. */
    assert_int_equal(sl_chan_close(wp.jobs), 0);
    assert_int_equal(sl_wg_wait(&wp.workers, NULL), 0);
    long n = (long)WP_HANDLERS * WP_JOBS_PER;
    assert_int_equal(atomic_load(&wp.done), n);
    assert_int_equal(atomic_load(&wp.sum), n * (n + 1) / 2);
    /* 108 units of work, no thread for any of them. */
    assert_true(atomic_load(&wp.max_threads) <= base);
    sl_wg_destroy(&wp.workers);
    sl_wg_destroy(&wp.handlers);
    sl_chan_free(wp.jobs);
}

/* ---- errgroup fan-out ---------------------------------------------------------------------- */

enum { FAN = 50, FAILING = 13 };

typedef struct fanout {
    sl_ctx *ctx; /* the group's ctx: cancelled by the first error */
    sl_wg wg;
    atomic_int first_err;
    atomic_int canceled;
    atomic_int ok;
    atomic_int next;
    int result;
    int threads_seen;
    atomic_bool finished;
} fanout;

static void fan_task(void *arg)
{
    fanout *f = arg;
    int i = atomic_fetch_add(&f->next, 1);
    int rc;
    if (i == FAILING)
        rc = SL_EIO; /* this fetch fails at once */
    else
        rc = sl_ctx_wait_for(f->ctx, SL_SEC(30)) == SL_EAGAIN ? 0 : sl_ctx_err(f->ctx);
    if (rc == SL_ECANCELED)
        atomic_fetch_add(&f->canceled, 1);
    else if (rc == 0)
        atomic_fetch_add(&f->ok, 1);
    if (rc != 0) {
        int zero = 0;
        if (atomic_compare_exchange_strong(&f->first_err, &zero, rc)) sl_ctx_cancel(f->ctx);
    }
    sl_wg_done(&f->wg);
}

static void fan_caller(void *arg)
{
    fanout *f = arg;
    sl_wg_add(&f->wg, FAN);
    for (int i = 0; i < FAN; i++)
        spawn("fetch", fan_task, f);
    f->threads_seen = thread_count();
    sl_wg_wait(&f->wg, NULL); /* g.Wait(): the caller task parks */
    f->result = atomic_load(&f->first_err);
    atomic_store(&f->finished, true);
}

static void test_errgroup_fanout(void **state)
{
    (void)state;
    int base = baseline_threads();
    fanout f = {0};
    assert_int_equal(sl_ctx_with_cancel(NULL, &f.ctx), 0);
    assert_int_equal(sl_wg_init(&f.wg), 0);
    spawn("caller", fan_caller, &f);
    assert_true(SL_WAIT_UNTIL(atomic_load(&f.finished), 10000));
    assert_int_equal(f.result, SL_EIO);
    assert_int_equal(atomic_load(&f.canceled), FAN - 1); /* the others stopped on the ctx */
    assert_int_equal(atomic_load(&f.ok), 0);
    assert_true(f.threads_seen <= base);
    sl_wg_destroy(&f.wg);
    sl_ctx_release(f.ctx);
}

/* ---- fetchWithTimeout ---------------------------------------------------------------------- */

typedef struct fetch {
    sl_chan *ch;
    atomic_bool about_to_send, sent;
    int caller_rc;
    atomic_bool caller_done;
} fetch;

static void fetcher(void *arg)
{
    fetch *f = arg;
    sl_ctx_wait_for(NULL, SL_MS(50)); /* http.Get: slow, and it ignores the caller's ctx */
    int resp = 200;
    atomic_store(&f->about_to_send, true);
    sl_chan_send(f->ch, &resp, NULL); /* ch <- resp */
    atomic_store(&f->sent, true);
}

static void fetch_caller(void *arg)
{
    fetch *f = arg;
    sl_ctx *ctx;
    sl_ctx_with_timeout(NULL, SL_MS(5), &ctx);
    spawn("fetcher", fetcher, f);
    int resp;
    sl_chan_case c = {.chan = f->ch, .dir = SL_CHAN_RECV, .elem = &resp};
    f->caller_rc = sl_chan_select(&c, 1, NULL, ctx); /* case <-ch / case <-ctx.Done() */
    sl_ctx_release(ctx);
    atomic_store(&f->caller_done, true);
}

static void run_fetch(size_t cap)
{
    fetch f = {0};
    assert_int_equal(sl_chan_new(sizeof(int), cap, &f.ch), 0);
    spawn("caller", fetch_caller, &f);
    assert_true(SL_WAIT_UNTIL(atomic_load(&f.caller_done), 5000));
    assert_int_equal(f.caller_rc, SL_ETIMEDOUT); /* the caller returned ctx.Err() */
    if (cap == 1) {
        /* The fix: the fetcher's late send lands in the buffer and the task ends. */
        assert_true(SL_WAIT_UNTIL(atomic_load(&f.sent), 5000));
        assert_int_equal(sl_chan_len(f.ch), 1);
    } else {
        /* The leak: the fetcher parks in send with no receiver left; only a receiver that
         * comes later (here the test) lets it end. */
        assert_true(SL_WAIT_UNTIL(atomic_load(&f.about_to_send), 5000));
        int resp = 0;
        assert_true(SL_WAIT_UNTIL(sl_chan_try_recv(f.ch, &resp) == 0, 5000));
        assert_int_equal(resp, 200);
        assert_true(SL_WAIT_UNTIL(atomic_load(&f.sent), 5000));
    }
    assert_true(SL_WAIT_UNTIL(sl_runtime_tasks(g_rt) == 0, 5000)); /* nothing leaked */
    sl_chan_free(f.ch);
}

static void test_fetch_with_timeout_buffered(void **state)
{
    (void)state;
    run_fetch(1);
}

static void test_fetch_with_timeout_unbuffered_leaks(void **state)
{
    (void)state;
    run_fetch(0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_worker_pool),
        cmocka_unit_test(test_errgroup_fanout),
        cmocka_unit_test(test_fetch_with_timeout_buffered),
        cmocka_unit_test(test_fetch_with_timeout_unbuffered_leaks),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
