/* SIGPIPE held back from hiredis's writes.
 *
 * hiredis sends commands with write(2), which cannot say MSG_NOSIGNAL. A write to a socket the
 * peer reset, or that sl_redis_jobs's ctx hook shut down under a command still being written,
 * fails with EPIPE and also raises SIGPIPE, whose default action ends the process: the whole
 * application dies of a Redis hiccup or a deadline. So around such a write the calling thread
 * blocks SIGPIPE. A SIGPIPE the write raises is directed at the writing thread, so it stays
 * pending on this thread, where sl__sigpipe_release takes it (sigtimedwait with a zero
 * timeout) before the mask is put back; hiredis still gets the EPIPE and reports the error.
 *
 * A SIGPIPE that was already pending when the guard began is left pending (it is the
 * application's: only a thread that blocks SIGPIPE itself can hold one). The common case, a
 * thread that does not block SIGPIPE, costs three system calls per guarded write. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <time.h>

#include "redis/redis_int.h"

static void pipe_set(sigset_t *s)
{
    sigemptyset(s);
    sigaddset(s, SIGPIPE);
}

static bool pipe_pending(void)
{
    sigset_t p;
    sigemptyset(&p);
    return sigpending(&p) == 0 && sigismember(&p, SIGPIPE) == 1;
}

void sl__sigpipe_hold(sl__sigpipe_guard *g)
{
    sigset_t s, old;
    pipe_set(&s);
    sigemptyset(&old);
    pthread_sigmask(SIG_BLOCK, &s, &old);
    g->unblock = sigismember(&old, SIGPIPE) != 1;
    /* Unblocked until now, none can be pending here: it would have been delivered. */
    g->was_pending = !g->unblock && pipe_pending();
}

void sl__sigpipe_release(sl__sigpipe_guard *g)
{
    sigset_t s;
    pipe_set(&s);
    if (!g->was_pending && pipe_pending()) {
        const struct timespec zero = {0, 0};
        while (sigtimedwait(&s, NULL, &zero) < 0 && errno == EINTR) {
        }
    }
    if (g->unblock) pthread_sigmask(SIG_UNBLOCK, &s, NULL);
}
