/* What the runtime reports: a stack overflow hits the guard page and is reported as "task
 * stack overflow" with the task's name before the process dies (run in a child process: this
 * binary re-executed with "overflow"), and the watchdog logs a task that holds its loop. */
#include "harness.h"
#include "task/task_int.h"

#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

/* ---- the child: overflows a task's stack ---------------------------------------------- */

__attribute__((noinline)) static int deep(int n)
{
    volatile char buf[512];
    buf[0] = (char)n;
    buf[511] = (char)n;
    if (n < 0) return 0; /* never: n only grows, but the compiler cannot tell */
    return deep(n + 1) + buf[0] + buf[511];
}

static void overflow_task(void *arg)
{
    (void)arg;
    int r = deep(1);
    fprintf(stderr, "not reached %d\n", r);
}

static int child_overflow(void)
{
    sl_runtime *rt;
    sl_runtime_opts o = {.loops = 1, .stack_size = 64 * 1024, .watchdog_ns = -1};
    if (sl_runtime_new(&o, &rt) != 0) return 2;
    sl_go_with(&(sl_go_opts){.rt = rt, .name = "deep-recursion"}, overflow_task, NULL);
    sl_ctx *ctx;
    sl_ctx_with_timeout(NULL, SL_SEC(30), &ctx);
    sl_runtime_shutdown(rt, ctx); /* the process dies before this returns */
    return 3;
}

static void test_overflow_reported_by_name(void **state)
{
    (void)state;
    int p[2];
    assert_int_equal(pipe(p), 0);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, p[1], 2);
    posix_spawn_file_actions_addclose(&fa, p[0]);
    char *argv[] = {"report_test", "overflow", NULL};
    pid_t pid;
    assert_int_equal(posix_spawn(&pid, "/proc/self/exe", &fa, NULL, argv, environ), 0);
    posix_spawn_file_actions_destroy(&fa);
    close(p[1]);
    char out[16384];
    size_t len = 0;
    sl_ctx *ctx;
    assert_int_equal(sl_ctx_with_timeout(NULL, SL_SEC(60), &ctx), 0);
    for (;;) {
        int rc = sl_wait_fd(p[0], SL_WAIT_READ, ctx);
        assert_true(rc > 0);
        ssize_t n = read(p[0], out + len, sizeof out - 1 - len);
        if (n <= 0) break;
        len += (size_t)n;
        if (len == sizeof out - 1) break;
    }
    out[len] = 0;
    sl_ctx_release(ctx);
    close(p[0]);
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    if (!strstr(out, "task stack overflow: task \"deep-recursion\"")) fprintf(stderr, "%s", out);
    assert_non_null(strstr(out, "task stack overflow: task \"deep-recursion\""));
    assert_null(strstr(out, "not reached"));
    assert_true(WIFSIGNALED(st) || (WIFEXITED(st) && WEXITSTATUS(st) != 0 && WEXITSTATUS(st) != 3));
}

/* ---- watchdog ------------------------------------------------------------------------- */

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static char g_log[8192]; /* guarded by g_mu */
static size_t g_len;

static void sink(void *arg, const char *line, size_t len)
{
    (void)arg;
    pthread_mutex_lock(&g_mu);
    if (g_len + len < sizeof g_log) {
        memcpy(g_log + g_len, line, len);
        g_len += len;
        g_log[g_len] = 0;
    }
    pthread_mutex_unlock(&g_mu);
}

static bool log_has(const char *s)
{
    pthread_mutex_lock(&g_mu);
    bool r = strstr(g_log, s) != NULL;
    pthread_mutex_unlock(&g_mu);
    return r;
}

static _Atomic int g_hog_done;

static void hog(void *arg)
{
    (void)arg;
    /* Computes without parking or yielding for 400 ms: the watchdog must name it. */
    int64_t end = sl_mono_ns() + SL_MS(400);
    while (sl_mono_ns() < end && !log_has("task=cpu-hog")) {
    }
    atomic_store(&g_hog_done, 1);
}

static void polite(void *arg)
{
    (void)arg;
    int64_t end = sl_mono_ns() + SL_MS(400);
    while (sl_mono_ns() < end)
        sl_task_yield();
}

static void test_watchdog_names_the_hog(void **state)
{
    (void)state;
    sl_logger *lg;
    assert_int_equal(sl_logger_new(&(sl_log_opts){.sink = sink, .omit_time = true}, &lg), 0);
    sl_log_set_default(lg);
    sl_runtime *rt;
    sl_runtime_opts o = {.loops = 2, .watchdog_ns = SL_MS(50)};
    assert_int_equal(sl_runtime_new(&o, &rt), 0);
    /* A task that yields often is never reported. */
    assert_int_equal(
        sl_go_with(&(sl_go_opts){.rt = rt, .name = "yielder", .loop = 1}, polite, NULL), 0);
    assert_int_equal(sl_go_with(&(sl_go_opts){.rt = rt, .name = "cpu-hog", .loop = 2}, hog, NULL),
                     0);
    assert_true(SL_WAIT_UNTIL(log_has("task=cpu-hog"), 10000));
    assert_true(log_has("task holds its loop"));
    assert_true(log_has("loop=2"));
    sl_ctx *ctx;
    assert_int_equal(sl_ctx_with_timeout(NULL, SL_SEC(10), &ctx), 0);
    assert_int_equal(sl_runtime_shutdown(rt, ctx), 0);
    sl_ctx_release(ctx);
    sl_runtime_free(rt);
    assert_int_equal(atomic_load(&g_hog_done), 1);
    assert_false(log_has("task=yielder"));
    sl_log_set_default(NULL);
    sl_logger_free(lg);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "overflow") == 0) return child_overflow();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_overflow_reported_by_name),
        cmocka_unit_test(test_watchdog_names_the_hog),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
