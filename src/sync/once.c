/* sl_once: run-once with a remembered result.
 *
 * The state lives in the caller's sl_once (so SL_ONCE_INIT works for statics) and is accessed
 * with GCC/Clang __atomic builtins: the public struct holds plain ints so the header stays valid
 * C++ and needs no <stdatomic.h>. The fast path after completion is one acquire load. Callers
 * that arrive while fn runs wait on one process-wide mutex and sl__cond (a task parks, a thread
 * sleeps): contention on a once is
 * rare and short, so a pair per sl_once would cost every user storage for nothing.
 *
 * Ordering: result_ is stored before state_ becomes DONE (release), and read after state_ is
 * seen DONE (acquire). A waiter announces itself by moving RUNNING -> WAITED under g_mu; the
 * runner swaps in DONE and, if it saw WAITED, broadcasts under g_mu, so the wakeup is not lost
 * (the waiter holds g_mu from its check until it sleeps). */
#include <pthread.h>

#include "sluice/error.h"
#include "sluice/once.h"
#include "sync/sync_int.h"

enum { ONCE_NEW, ONCE_RUNNING, ONCE_WAITED, ONCE_DONE };

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static sl__cond g_cv = SL__COND_INIT; /* guarded by g_mu */

bool sl_once_done(const sl_once *once)
{
    return __atomic_load_n(&once->state_, __ATOMIC_ACQUIRE) == ONCE_DONE;
}

int sl_once_do(sl_once *once, sl_once_fn fn, void *arg)
{
    if (!once || !fn) return SL_EINVAL;
    if (sl_once_done(once)) return __atomic_load_n(&once->result_, __ATOMIC_RELAXED);

    int expected = ONCE_NEW;
    if (__atomic_compare_exchange_n(&once->state_, &expected, ONCE_RUNNING, false, __ATOMIC_ACQ_REL,
                                    __ATOMIC_ACQUIRE)) {
        int r = fn(arg);
        __atomic_store_n(&once->result_, r, __ATOMIC_RELAXED);
        if (__atomic_exchange_n(&once->state_, ONCE_DONE, __ATOMIC_ACQ_REL) == ONCE_WAITED) {
            pthread_mutex_lock(&g_mu);
            sl__cond_broadcast(&g_cv);
            pthread_mutex_unlock(&g_mu);
        }
        return r;
    }

    pthread_mutex_lock(&g_mu);
    for (;;) {
        int s = __atomic_load_n(&once->state_, __ATOMIC_ACQUIRE);
        if (s == ONCE_DONE) break;
        if (s == ONCE_RUNNING && !__atomic_compare_exchange_n(&once->state_, &s, ONCE_WAITED, false,
                                                              __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
            continue; /* it changed under us (likely DONE): look again */
        sl__cond_wait(&g_cv, &g_mu, NULL);
    }
    pthread_mutex_unlock(&g_mu);
    return __atomic_load_n(&once->result_, __ATOMIC_RELAXED);
}
