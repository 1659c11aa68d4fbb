/* sl_wg: a wait group whose add/done are one atomic compare-and-swap.
 *
 * One 64-bit atomic word holds the counter (high 32 bits) and the number of parked waiters (low
 * 32 bits), as Go's WaitGroup does, so sl_wg_done only takes the mutex when it brings the
 * counter to zero while someone waits. A waiter registers itself in the word with a CAS that
 * also proves the counter is non-zero, under mu; the thread whose CAS brings the counter to zero
 * therefore sees the waiter and broadcasts under mu, so the wakeup is not lost. Waiters block in
 * sl__cond_wait (a task parks), so a ctx firing wakes them too; they deregister themselves on the
 * way out.
 *
 * Freeing after wait (Go allows it: Wait returning means the group may be discarded): the thread
 * whose add brings the counter to zero still has to lock mu to broadcast after its CAS, and a
 * waiter may see the zero and return in that window (it was between registering and checking,
 * or a ctx woke it). So such a waker announces itself in `wakers` before its CAS and withdraws
 * under mu, with a broadcast, after its last touch of the wg; every waiter that registered waits
 * (under mu, bounded by the waker's short critical section) for wakers == 0 before it returns.
 * The announcement is ordered before the CAS (release) that the waiter's load of the zero
 * (acquire) reads from, so a waiter that sees the zero also sees the announcement.
 *
 * The state lives in the caller's sl_wg as opaque storage (the public header cannot show
 * pthread types); a static assertion keeps the private layout within it. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "sluice/error.h"
#include "sluice/wg.h"
#include "sync/sync_int.h"

struct wg {
    _Atomic uint64_t state;  /* counter << 32 | waiters */
    _Atomic uint32_t wakers; /* adds that may still lock mu to wake waiters */
    pthread_mutex_t mu;      /* guards nothing but the sleep/wake handshake */
    sl__cond cv;             /* guarded by mu */
};

_Static_assert(sizeof(struct wg) <= sizeof(sl_wg), "sl_wg storage too small");
_Static_assert(_Alignof(struct wg) <= _Alignof(sl_wg), "sl_wg storage misaligned");

#define COUNT(s)   ((int64_t)((s) >> 32))
#define WAITERS(s) ((uint32_t)(s))

static struct wg *W(const sl_wg *wg)
{
    return (struct wg *)(uintptr_t)wg->opaque_.bytes;
}

int sl_wg_init(sl_wg *wg)
{
    struct wg *w = W(wg);
    atomic_init(&w->state, 0);
    atomic_init(&w->wakers, 0);
    int rc = pthread_mutex_init(&w->mu, NULL);
    if (rc) return -rc;
    sl__cond_init(&w->cv);
    return 0;
}

void sl_wg_destroy(sl_wg *wg)
{
    struct wg *w = W(wg);
    pthread_mutex_destroy(&w->mu);
}

int sl_wg_add(sl_wg *wg, int delta)
{
    struct wg *w = W(wg);
    uint64_t s = atomic_load_explicit(&w->state, memory_order_relaxed), n;
    int64_t count;
    bool announced = false;
    do {
        count = COUNT(s) + delta;
        if (count < 0 || count > INT32_MAX) {
            if (announced) break; /* withdraw below */
            return SL_EINVAL;
        }
        n = ((uint64_t)count << 32) | WAITERS(s);
        if (count == 0 && WAITERS(s) > 0 && !announced) {
            atomic_fetch_add_explicit(&w->wakers, 1, memory_order_acq_rel);
            announced = true;
        }
    } while (!atomic_compare_exchange_weak_explicit(&w->state, &s, n, memory_order_acq_rel,
                                                    memory_order_relaxed));
    if (!announced) return 0;
    /* Also reached when a retry made this add a non-zeroing one (or invalid): the broadcast is
     * then spurious, which waiters tolerate, and the withdrawal must happen either way. */
    pthread_mutex_lock(&w->mu);
    atomic_fetch_sub_explicit(&w->wakers, 1, memory_order_relaxed);
    sl__cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    return count < 0 || count > INT32_MAX ? SL_EINVAL : 0;
}

int sl_wg_done(sl_wg *wg)
{
    return sl_wg_add(wg, -1);
}

int sl_wg_count(const sl_wg *wg)
{
    return (int)COUNT(atomic_load_explicit(&W(wg)->state, memory_order_acquire));
}

int sl_wg_wait(sl_wg *wg, sl_ctx *ctx)
{
    struct wg *w = W(wg);
    uint64_t s = atomic_load_explicit(&w->state, memory_order_acquire);
    if (COUNT(s) == 0) return 0;
    int rc = sl_ctx_err(ctx);
    if (rc) return rc;

    pthread_mutex_lock(&w->mu);
    do {
        if (COUNT(s) == 0) {
            pthread_mutex_unlock(&w->mu);
            return 0;
        }
    } while (!atomic_compare_exchange_weak_explicit(&w->state, &s, s + 1, memory_order_acq_rel,
                                                    memory_order_acquire));
    while (COUNT(atomic_load_explicit(&w->state, memory_order_acquire)) != 0) {
        rc = sl__cond_wait(&w->cv, &w->mu, ctx);
        if (rc < 0) {
            if (COUNT(atomic_load_explicit(&w->state, memory_order_acquire)) == 0) rc = 0;
            break;
        }
    }
    atomic_fetch_sub_explicit(&w->state, 1, memory_order_acq_rel); /* deregister */
    /* A waker that saw this waiter registered may still be on its way to mu: the caller may
     * free wg once this returns, so let it finish first. Withdrawals happen under mu. */
    while (atomic_load_explicit(&w->wakers, memory_order_acquire) != 0)
        sl__cond_wait(&w->cv, &w->mu, NULL);
    pthread_mutex_unlock(&w->mu);
    return rc;
}
