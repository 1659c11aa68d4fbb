/* sl_sem: a weighted semaphore with golang.org/x/sync/semaphore's behaviour (our own code).
 *
 * State: size, cur (tokens held) and a FIFO of waiters, all guarded by mu. A waiter is a node on
 * the acquiring task's or thread's stack with its own sl__cond, so a release wakes exactly the
 * waiters it granted (no thundering herd) and waiting costs no allocation.
 *
 * Invariants (mu held): a waiter is in the queue iff it has not been granted and has not left;
 * granting (grant_locked) moves tokens into cur, unlinks the node and sets ready before the
 * signal, so a waiter that wakes for its ctx and finds ready set keeps the tokens (x/sync does
 * the same: "acquired after we were canceled; pretend we didn't notice"). Granting stops at the
 * first waiter that does not fit: later smaller waiters stay blocked, so a large request at the
 * head cannot be starved. A waiter that leaves (ctx done) from the head while tokens are free
 * runs grant_locked so the followers that fit are not left waiting for an unrelated release.
 *
 * Waiting uses sl__cond_wait with the waiter's sl__cond and the semaphore's mutex, so a ctx
 * firing wakes the waiter without polling, and a task parks instead of blocking its loop. */
#include <pthread.h>
#include <stdlib.h>

#include "sluice/error.h"
#include "sluice/sem.h"
#include "sync/sync_int.h"

struct waiter {
    sl__dnode node; /* on the sem's waiters; guarded by mu */
    int64_t n;
    bool ready;  /* granted; guarded by mu */
    sl__cond cv; /* holds just this waiter */
};

struct sl_sem {
    pthread_mutex_t mu;
    int64_t size;      /* immutable */
    int64_t cur;       /* tokens held; guarded by mu */
    sl__dlist waiters; /* of struct waiter, FIFO; guarded by mu */
    int nwaiters;      /* guarded by mu */
};

int sl_sem_new(int64_t size, sl_sem **out)
{
    if (size < 0 || !out) return SL_EINVAL;
    sl_sem *s = calloc(1, sizeof *s);
    if (!s) return SL_ENOMEM;
    if (pthread_mutex_init(&s->mu, NULL) != 0) {
        free(s);
        return SL_ENOMEM;
    }
    s->size = size;
    *out = s;
    return 0;
}

void sl_sem_free(sl_sem *s)
{
    if (!s) return;
    pthread_mutex_destroy(&s->mu);
    free(s);
}

static struct waiter *head_locked(sl_sem *s)
{
    return s->waiters.head ? SL__CONTAINER_OF(s->waiters.head, struct waiter, node) : NULL;
}

static void unlink_locked(sl_sem *s, struct waiter *w)
{
    sl__dlist_remove(&s->waiters, &w->node);
    s->nwaiters--;
}

static void grant_locked(sl_sem *s)
{
    struct waiter *w;
    while ((w = head_locked(s)) != NULL && s->size - s->cur >= w->n) {
        s->cur += w->n;
        unlink_locked(s, w);
        w->ready = true;
        sl__cond_signal(&w->cv);
    }
}

int sl_sem_acquire(sl_sem *s, int64_t n, sl_ctx *ctx)
{
    if (n < 0) return SL_EINVAL;
    pthread_mutex_lock(&s->mu);
    int rc = sl_ctx_err(ctx);
    if (rc) goto out;
    if (s->size - s->cur >= n && sl__dlist_empty(&s->waiters)) {
        s->cur += n;
        goto out;
    }
    if (n > s->size) {
        /* Can never be satisfied: do not queue (it would block everyone behind it). */
        pthread_mutex_unlock(&s->mu);
        return sl_ctx_wait(ctx);
    }
    struct waiter w = {.n = n, .cv = SL__COND_INIT};
    sl__dlist_push_back(&s->waiters, &w.node);
    s->nwaiters++;
    while (!w.ready) {
        rc = sl__cond_wait(&w.cv, &s->mu, ctx);
        if (rc < 0) {
            if (w.ready) {
                rc = 0;
                break;
            }
            bool was_head = head_locked(s) == &w;
            unlink_locked(s, &w);
            if (was_head && s->size > s->cur) grant_locked(s);
            break;
        }
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
out:
    pthread_mutex_unlock(&s->mu);
    return rc;
}

bool sl_sem_try_acquire(sl_sem *s, int64_t n)
{
    if (n < 0) return false;
    pthread_mutex_lock(&s->mu);
    bool ok = s->size - s->cur >= n && sl__dlist_empty(&s->waiters);
    if (ok) s->cur += n;
    pthread_mutex_unlock(&s->mu);
    return ok;
}

int sl_sem_release(sl_sem *s, int64_t n)
{
    pthread_mutex_lock(&s->mu);
    int rc = 0;
    if (n < 0 || n > s->cur) {
        rc = SL_EINVAL;
    } else {
        s->cur -= n;
        grant_locked(s);
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int64_t sl_sem_held(const sl_sem *s)
{
    pthread_mutex_lock((pthread_mutex_t *)&s->mu);
    int64_t cur = s->cur;
    pthread_mutex_unlock((pthread_mutex_t *)&s->mu);
    return cur;
}

int sl_sem_waiters(const sl_sem *s)
{
    pthread_mutex_lock((pthread_mutex_t *)&s->mu);
    int n = s->nwaiters;
    pthread_mutex_unlock((pthread_mutex_t *)&s->mu);
    return n;
}
