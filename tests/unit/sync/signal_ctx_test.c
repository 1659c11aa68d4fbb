/* sl_signal_ctx: a signal cancels the ctx, whichever thread takes it; stop restores the previous
 * disposition and joins the watcher; one active signal ctx at a time. */
#include "harness.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

static void test_sigusr1_cancels(void **state)
{
    const int sigs[] = {SIGUSR1, SIGUSR2, SIGUSR1}; /* a duplicate is harmless */
    sl_ctx *parent, *c, *child;
    assert_int_equal(sl_ctx_with_cancel(NULL, &parent), 0);
    assert_int_equal(sl_signal_ctx(parent, sigs, 3, &c), 0);
    assert_int_equal(sl_ctx_with_cancel(c, &child), 0);
    assert_int_equal(sl_ctx_err(c), 0);
    assert_int_equal(sl_ctx_wait_for(c, SL_MS(5)), SL_EAGAIN);
    raise(SIGUSR1);
    assert_int_equal(sl_ctx_wait_for(c, SL_SEC(10)), SL_ECANCELED);
    assert_int_equal(sl_ctx_wait(child), SL_ECANCELED);
    assert_int_equal(sl_ctx_err(parent), 0); /* never the parent */
    raise(SIGUSR2);                          /* still caught until stop: the process survives */
    sl_signal_ctx_stop(c);
    sl_ctx_release(child);
    sl_ctx_release(parent);

    struct sigaction now;
    sigaction(SIGUSR1, NULL, &now);
    assert_true(now.sa_handler == SIG_DFL);
}

static atomic_int g_old_handler_calls;
static void old_handler(int sig)
{
    atomic_fetch_add(&g_old_handler_calls, 1);
}

static void test_sigint_and_restore(void **state)
{
    struct sigaction sa, prev;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = old_handler;
    sigemptyset(&sa.sa_mask);
    assert_int_equal(sigaction(SIGINT, &sa, &prev), 0);

    const int sigs[] = {SIGINT, SIGTERM};
    sl_ctx *c, *other;
    assert_int_equal(sl_signal_ctx(NULL, sigs, 2, &c), 0);
    assert_int_equal(sl_signal_ctx(NULL, sigs, 2, &other), SL_EBUSY);
    raise(SIGINT);
    assert_int_equal(sl_ctx_wait_for(c, SL_SEC(10)), SL_ECANCELED);
    assert_int_equal(atomic_load(&g_old_handler_calls), 0);
    sl_signal_ctx_stop(c);

    raise(SIGINT); /* the application's handler is back */
    assert_int_equal(atomic_load(&g_old_handler_calls), 1);
    sigaction(SIGINT, &prev, NULL);

    /* A second session works and ignores bytes left from the first. */
    assert_int_equal(sl_signal_ctx(NULL, sigs, 1, &c), 0);
    assert_int_equal(sl_ctx_wait_for(c, SL_MS(20)), SL_EAGAIN);
    sl_signal_ctx_stop(c); /* stop without a signal: released, never cancelled by one */
}

static void *raiser(void *arg)
{
    /* The signal goes to this process; any thread may take it. */
    kill(getpid(), SIGUSR2);
    return NULL;
}

static void test_signal_from_other_thread(void **state)
{
    const int sigs[] = {SIGUSR2};
    sl_ctx *c;
    assert_int_equal(sl_signal_ctx(NULL, sigs, 1, &c), 0);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, raiser, NULL), 0);
    pthread_join(t, NULL);
    assert_int_equal(sl_ctx_wait_for(c, SL_SEC(10)), SL_ECANCELED);
    sl_signal_ctx_stop(c);
}

static void test_invalid(void **state)
{
    sl_ctx *c = NULL;
    const int kill_sig[] = {SIGKILL}, stop_sig[] = {SIGSTOP}, bad[] = {0}, big[] = {NSIG + 5};
    assert_int_equal(sl_signal_ctx(NULL, kill_sig, 1, &c), SL_EINVAL);
    assert_int_equal(sl_signal_ctx(NULL, stop_sig, 1, &c), SL_EINVAL);
    assert_int_equal(sl_signal_ctx(NULL, bad, 1, &c), SL_EINVAL);
    assert_int_equal(sl_signal_ctx(NULL, big, 1, &c), SL_EINVAL);
    assert_int_equal(sl_signal_ctx(NULL, bad, 0, &c), SL_EINVAL);
    assert_null(c);
    sl_signal_ctx_stop(NULL); /* not active: ignored */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sigusr1_cancels),
        cmocka_unit_test(test_sigint_and_restore),
        cmocka_unit_test(test_signal_from_other_thread),
        cmocka_unit_test(test_invalid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
