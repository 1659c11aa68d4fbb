/* sl__cond: the task-aware condition variable behind every blocking primitive (sync_int.h).
 *
 * The queue is a FIFO of waiter nodes on the waiters' stacks, guarded by the caller's mutex, and
 * each node carries an sl__parker (park_int.h): whoever completes a node first — a signal, the
 * ctx's on-done hook, or the waiter itself when its timeout passes — wins the parker's CAS from
 * WAITING, and the others back off. That single CAS is what makes "woken" and "cancelled"
 * exclusive: a signal that loses it moves on to the next node, so it is never spent on a waiter
 * that is leaving, and a waiter that was signalled reports success even if its ctx fired too.
 *
 * Only signal/broadcast (under the mutex) unlink nodes they complete; a node completed by its
 * ctx or timeout is unlinked by its own waiter once it holds the mutex again, so the node never
 * leaves scope while linked. The ctx hook touches nothing but the parker, and the waiter
 * deregisters it (sl__ctx_hook_del waits out a hook running on another thread) before the node
 * goes out of scope.
 *
 * Tasks: the parker parks the task instead of sleeping the thread, so the loop runs other
 * tasks. A timed wait on a task has no futex timeout to use: it waits on a child ctx with that
 * deadline, which the process-wide ctx timer fires. */
#include "sluice/clock.h"
#include "sync/ctx_int.h"
#include "sync/sync_int.h"

static void push(sl__cond *c, sl__cwaiter *w)
{
    sl__dlist_push_back(&c->q, &w->node);
    w->linked = true;
}

static void unlink_waiter(sl__cond *c, sl__cwaiter *w)
{
    sl__dlist_remove(&c->q, &w->node);
    w->linked = false;
}

static void on_ctx_done(void *arg, int err)
{
    (void)err;
    sl__cwaiter *w = arg;
    if (sl__park_claim(&w->pk, SL__CLAIMED)) sl__park_finish(&w->pk, SL__CANCELED);
}

bool sl__cond_signal(sl__cond *c)
{
    for (sl__dnode *n; (n = c->q.head) != NULL;) {
        sl__cwaiter *w = SL__CONTAINER_OF(n, sl__cwaiter, node);
        unlink_waiter(c, w);
        if (sl__park_claim(&w->pk, SL__CLAIMED)) {
            sl__park_finish(&w->pk, SL__DONE);
            return true;
        }
    }
    return false;
}

void sl__cond_broadcast(sl__cond *c)
{
    while (sl__cond_signal(c)) {
    }
}

/* Thread path: sleeps until completed or abs passes; on timeout claims its own parker (so no
 * late signal is spent on it) and returns SL__WAITING. */
static uint32_t sleep_thread(sl__cwaiter *w, bool timed, int64_t abs)
{
    if (!timed) return sl__park_wait_thread(&w->pk, NULL);
    struct timespec ts;
    sl__abs_timespec(abs, &ts);
    uint32_t st = sl__park_wait_thread(&w->pk, &ts);
    if (st != SL__WAITING) return st;
    if (sl__park_claim(&w->pk, SL__CANCELED)) return SL__WAITING;
    return sl__park_wait_thread(&w->pk, NULL); /* a completer won the race: take its result */
}

static int wait_common(sl__cond *c, pthread_mutex_t *mu, sl_ctx *ctx, bool timed, int64_t abs)
{
    sl__cwaiter w = {0};
    sl__parker_init(&w.pk);
    sl_ctx *deadline = NULL;
    if (timed && w.pk.task) {
        int64_t left = abs - sl_mono_ns();
        if (left <= 0) return SL_ETIMEDOUT;
        int rc = sl_ctx_with_timeout(ctx, left, &deadline);
        if (rc) return rc;
        ctx = deadline;
    }
    struct sl_ctx_hook hook;
    bool hooked = sl__ctx_can_be_done(ctx);
    if (hooked) {
        int err = sl__ctx_hook_add(ctx, &hook, on_ctx_done, &w);
        if (err) {
            sl_ctx_release(deadline);
            return err;
        }
    }
    push(c, &w);
    pthread_mutex_unlock(mu);

    uint32_t st = w.pk.task ? sl__park_wait_task(&w.pk) : sleep_thread(&w, timed, abs);

    if (hooked) sl__ctx_hook_del(&hook);
    pthread_mutex_lock(mu);
    if (w.linked) unlink_waiter(c, &w);
    int rc = 0;
    if (st == SL__WAITING)
        rc = SL_ETIMEDOUT;
    else if (st == SL__CANCELED)
        rc = sl_ctx_err(ctx);
    sl_ctx_release(deadline);
    return rc;
}

int sl__cond_wait(sl__cond *c, pthread_mutex_t *mu, sl_ctx *ctx)
{
    return wait_common(c, mu, ctx, false, 0);
}

int sl__cond_wait_until(sl__cond *c, pthread_mutex_t *mu, sl_ctx *ctx, int64_t abs_mono_ns)
{
    return wait_common(c, mu, ctx, true, abs_mono_ns);
}
