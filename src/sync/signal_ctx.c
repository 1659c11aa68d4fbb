/* sl_signal_ctx: a ctx cancelled when a signal arrives (Go's signal.NotifyContext).
 *
 * Design: a signal handler that writes the signal number to a self-pipe, and a watcher thread
 * that reads the pipe and cancels the ctx. We chose a handler over signalfd/sigwait on purpose:
 * those need the signals blocked in EVERY thread of the process, and a thread started before
 * the signal ctx (by the application or a library) would otherwise take the signal with its
 * default action and kill the process. A process-wide handler catches the signal whichever
 * thread the kernel picks, so sl_signal_ctx may be called at any time from any thread.
 *
 * The handler only calls write(2) (async-signal-safe) on the pipe's non-blocking write end and
 * restores errno; a full pipe drops the byte, which is harmless because one byte is enough to
 * cancel. The pipe is created once and never closed: a handler running on another thread while
 * sl_signal_ctx_stop restores the old disposition could otherwise write to a closed (or reused)
 * descriptor. Stale bytes from an earlier session are drained when a new session starts. The
 * watcher exits on a 0 byte written by sl_signal_ctx_stop, which restores the previous
 * dispositions first (so no new handler call begins after it), then joins the watcher.
 *
 * State is process-wide and guarded by g_mu; only one signal ctx is active at a time. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "sluice/error.h"
#include "sync/ctx_int.h"

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static int g_rfd = -1;         /* pipe read end; created once, never closed; guarded by g_mu */
static _Atomic int g_wfd = -1; /* write end, read by the handler (lock-free: signal-safe) */
static bool g_active;          /* guarded by g_mu */
static sl_ctx *g_ctx;          /* the active signal ctx; guarded by g_mu */
static pthread_t g_thread;
static int g_sigs[NSIG]; /* installed signals, without duplicates */
static int g_nsigs;
static struct sigaction g_old[NSIG]; /* previous disposition per installed signal */
static sigset_t g_watch_set;         /* the installed signals; written before the watcher starts */

static void on_signal(int sig)
{
    int saved = errno;
    unsigned char b = (unsigned char)sig;
    ssize_t r = write(atomic_load_explicit(&g_wfd, memory_order_relaxed), &b, 1);
    (void)r;
    errno = saved;
}

static void *watch_main(void *arg)
{
    sl_ctx *ctx = arg;
    /* The watcher accepts its own signals (it is created with every signal blocked). An
     * application that blocks them in all its other threads (pthread_sigmask before starting
     * any) thus has them delivered here, inside poll(): that matters under ThreadSanitizer,
     * which defers a signal that lands on a thread sleeping in a raw futex (a parked sluice
     * wait) until that thread wakes. */
    pthread_sigmask(SIG_UNBLOCK, &g_watch_set, NULL);
    for (;;) {
        struct pollfd p = {.fd = g_rfd, .events = POLLIN};
        if (poll(&p, 1, -1) < 0) continue; /* EINTR */
        unsigned char buf[64];
        ssize_t n = read(g_rfd, buf, sizeof buf);
        for (ssize_t i = 0; i < n; i++) {
            if (buf[i] == 0) return NULL;
            sl_ctx_cancel(ctx);
        }
    }
}

static int make_pipe(void)
{
    if (g_rfd >= 0) return 0;
    int fds[2];
    if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) < 0) return -errno;
    g_rfd = fds[0];
    atomic_store(&g_wfd, fds[1]);
    return 0;
}

static void drain_pipe(void)
{
    unsigned char buf[64];
    while (read(g_rfd, buf, sizeof buf) > 0) {
    }
}

static void restore_locked(void)
{
    for (int i = 0; i < g_nsigs; i++)
        sigaction(g_sigs[i], &g_old[g_sigs[i]], NULL);
    g_nsigs = 0;
}

static bool valid_signal(int s)
{
    return s > 0 && s < NSIG && s != SIGKILL && s != SIGSTOP;
}

int sl_signal_ctx(sl_ctx *parent, const int *signals, int n, sl_ctx **out)
{
    if (n <= 0 || !signals || !out) return SL_EINVAL;
    for (int i = 0; i < n; i++)
        if (!valid_signal(signals[i])) return SL_EINVAL;
    pthread_mutex_lock(&g_mu);
    int rc;
    if (g_active) {
        rc = SL_EBUSY;
        goto out_unlock;
    }
    if ((rc = make_pipe()) < 0) goto out_unlock;
    drain_pipe();
    sl_ctx *ctx;
    if ((rc = sl_ctx_with_cancel(parent, &ctx)) < 0) goto out_unlock;

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    g_nsigs = 0;
    for (int i = 0; i < n; i++) {
        int s = signals[i];
        bool dup = false;
        for (int j = 0; j < g_nsigs; j++)
            dup = dup || g_sigs[j] == s;
        if (dup) continue;
        if (sigaction(s, &sa, &g_old[s]) < 0) {
            rc = errno == EINVAL ? SL_EINVAL : -errno;
            goto fail_restore;
        }
        g_sigs[g_nsigs++] = s;
    }

    sigemptyset(&g_watch_set);
    for (int i = 0; i < g_nsigs; i++)
        sigaddset(&g_watch_set, g_sigs[i]);
    /* The watcher starts with every signal blocked and unblocks only its own (watch_main). */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    rc = pthread_create(&g_thread, NULL, watch_main, sl_ctx_ref(ctx));
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc) {
        sl_ctx_release(ctx); /* the watcher's reference */
        rc = rc == ENOMEM ? SL_ENOMEM : -rc;
        goto fail_restore;
    }
    g_active = true;
    g_ctx = ctx;
    *out = ctx;
    pthread_mutex_unlock(&g_mu);
    return 0;

fail_restore:
    restore_locked();
    sl_ctx_release(ctx);
out_unlock:
    pthread_mutex_unlock(&g_mu);
    return rc;
}

void sl_signal_ctx_stop(sl_ctx *ctx)
{
    pthread_mutex_lock(&g_mu);
    if (!g_active || ctx != g_ctx) {
        pthread_mutex_unlock(&g_mu);
        return;
    }
    restore_locked();
    /* The stop byte must get through even if signal bytes filled the pipe: the watcher is
     * draining it, so wait until it is writable. */
    unsigned char zero = 0;
    while (write(atomic_load(&g_wfd), &zero, 1) != 1)
        if (errno == EAGAIN) {
            struct pollfd p = {.fd = atomic_load(&g_wfd), .events = POLLOUT};
            poll(&p, 1, 10);
        }
    pthread_join(g_thread, NULL);
    drain_pipe();
    g_active = false;
    g_ctx = NULL;
    pthread_mutex_unlock(&g_mu);
    sl_ctx_release(ctx); /* the watcher's reference */
    sl_ctx_release(ctx); /* the caller's */
}
