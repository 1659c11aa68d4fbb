/* sl_rpool: a bounded pool of expensive resources, with database/sql's limits and stats.
 *
 * State (all guarded by mu): `open` counts slots taken — resources open, being opened, or
 * granted to a waiter that is about to open one — so max_open is never exceeded even while
 * opens run outside the lock. `in_use` counts slots held by callers. The idle list is a doubly
 * linked stack: acquire pops the head (most recently used, as Go does, so the rest stay idle
 * long enough to be closed), expiry looks at the tail (oldest idle).
 *
 * Waiters are FIFO nodes on the acquirer's stack, each with its own sl__cond (as in sl_sem): a
 * release hands its item straight to the head waiter (state W_ITEM), and a discard, a failed
 * open or an expiry hands the head waiter the freed slot (W_SLOT: it opens a new resource
 * itself). Handing over under the lock means an idle resource and a waiter never coexist, so
 * a newcomer cannot overtake a waiter. A waiter whose ctx fires after it was granted keeps
 * the grant (x/sync's semaphore does the same): the caller then fails on its own ctx.
 *
 * The ops (open, close, check) always run with mu released: they may block for a long time
 * and may call back into the pool (stats). Waiting goes through sl__cond_wait, the one
 * ctx-aware wait of the sync module. */
#include <pthread.h>
#include <stdlib.h>

#include "sluice/clock.h"
#include "sluice/error.h"
#include "sluice/rpool.h"
#include "base/list_int.h"
#include "sync/sync_int.h"

struct sl_rpool_item {
    sl__dnode node;     /* on the idle list or a private close list; mu */
    sl_rpool *pool;     /* immutable */
    void *res;          /* immutable */
    int64_t created;    /* sl_now_ns() at open; immutable */
    int64_t idle_since; /* sl_now_ns() at release (0 if no clock needed) */
};

enum { W_WAITING, W_ITEM, W_SLOT, W_CLOSED };

struct waiter {
    sl__dnode node;      /* on the pool's waiters; guarded by mu */
    int state;           /* W_*; guarded by mu */
    sl_rpool_item *item; /* W_ITEM: the handed-over item */
    sl__cond cv;         /* this waiter's own condition (sync_int.h) */
};

struct sl_rpool {
    pthread_mutex_t mu;
    sl_rpool_opts o;         /* immutable after new */
    bool need_clock;         /* some limit reads times; immutable */
    sl__dlist idle;          /* most recently used first; guarded by mu */
    int nidle, open, in_use; /* guarded by mu */
    bool closed;             /* guarded by mu */
    sl__dlist waiters;       /* FIFO; guarded by mu */
    int nwait;               /* guarded by mu */
    uint64_t wait_count, idle_closed, idle_time_closed, lifetime_closed, check_failed, discarded;
    int64_t wait_ns; /* the counters above and this are guarded by mu */
};

int sl_rpool_new(const sl_rpool_opts *opts, sl_rpool **out)
{
    if (!opts || !out || !opts->ops.open || !opts->ops.close) return SL_EINVAL;
    sl_rpool *p = calloc(1, sizeof *p);
    if (!p) return SL_ENOMEM;
    if (pthread_mutex_init(&p->mu, NULL) != 0) {
        free(p);
        return SL_ENOMEM;
    }
    p->o = *opts;
    if (p->o.max_idle == 0) p->o.max_idle = 2;
    if (p->o.max_idle < 0) p->o.max_idle = 0;
    if (p->o.max_open < 0) p->o.max_open = 0;
    if (p->o.max_open > 0 && p->o.max_idle > p->o.max_open) p->o.max_idle = p->o.max_open;
    p->need_clock = p->o.max_lifetime_ns > 0 || p->o.max_idle_time_ns > 0 ||
                    (p->o.ops.check && p->o.check_after_ns > 0);
    *out = p;
    return 0;
}

static void close_item(sl_rpool *p, sl_rpool_item *it)
{
    p->o.ops.close(p->o.arg, it->res);
    free(it);
}

#define ITEM(n)   SL__CONTAINER_OF(n, sl_rpool_item, node)
#define WAITER(n) SL__CONTAINER_OF(n, struct waiter, node)

static void idle_unlink_locked(sl_rpool *p, sl_rpool_item *it)
{
    sl__dlist_remove(&p->idle, &it->node);
    p->nidle--;
}

static void idle_push_locked(sl_rpool *p, sl_rpool_item *it)
{
    sl__dlist_push_front(&p->idle, &it->node);
    p->nidle++;
}

static void wait_unlink_locked(sl_rpool *p, struct waiter *w)
{
    sl__dlist_remove(&p->waiters, &w->node);
    p->nwait--;
}

static struct waiter *first_waiter_locked(sl_rpool *p)
{
    return p->waiters.head ? WAITER(p->waiters.head) : NULL;
}

/* A slot became free: the head waiter may open a resource in it. */
static void grant_slot_locked(sl_rpool *p)
{
    struct waiter *w = first_waiter_locked(p);
    if (!w || p->closed || (p->o.max_open > 0 && p->open >= p->o.max_open)) return;
    p->open++;
    p->in_use++;
    wait_unlink_locked(p, w);
    w->state = W_SLOT;
    sl__cond_signal(&w->cv);
}

/* 0 if it is still good at now, else which limit it passed (and that counter is bumped). */
static int expired_locked(sl_rpool *p, const sl_rpool_item *it, int64_t now, bool idle)
{
    if (p->o.max_lifetime_ns > 0 && now - it->created >= p->o.max_lifetime_ns) {
        p->lifetime_closed++;
        return 1;
    }
    if (idle && p->o.max_idle_time_ns > 0 && now - it->idle_since >= p->o.max_idle_time_ns) {
        p->idle_time_closed++;
        return 2;
    }
    return 0;
}

/* Runs with mu released; the slot (open, in_use) is already counted. */
static int open_new(sl_rpool *p, sl_ctx *ctx, sl_rpool_item **out)
{
    sl_rpool_item *it = calloc(1, sizeof *it);
    int rc = it ? p->o.ops.open(p->o.arg, ctx, &it->res) : SL_ENOMEM;
    if (rc < 0) {
        free(it);
        pthread_mutex_lock(&p->mu);
        p->open--;
        p->in_use--;
        grant_slot_locked(p);
        pthread_mutex_unlock(&p->mu);
        return rc;
    }
    it->pool = p;
    it->created = sl_now_ns();
    *out = it;
    return 0;
}

/* Waits (mu held) for a grant. Returns W_ITEM / W_SLOT / W_CLOSED, or the ctx's error. */
static int wait_locked(sl_rpool *p, sl_ctx *ctx, sl_rpool_item **item)
{
    struct waiter w = {.state = W_WAITING};
    int rc = 0;
    sl__cond_init(&w.cv);
    sl__dlist_push_back(&p->waiters, &w.node);
    p->nwait++;
    p->wait_count++;
    int64_t t0 = sl_mono_ns();
    while (w.state == W_WAITING) {
        rc = sl__cond_wait(&w.cv, &p->mu, ctx);
        if (rc < 0 && w.state == W_WAITING) {
            wait_unlink_locked(p, &w);
            break;
        }
    }
    p->wait_ns += sl_mono_ns() - t0;
    if (w.state == W_WAITING) return rc;
    *item = w.item;
    return w.state;
}

/* Takes idle items until one passes expiry and the health check. Called with mu held; returns
 * with mu released: 1 and *out on success, 0 if the idle list ran out (mu re-taken!). */
static int take_idle_locked(sl_rpool *p, sl_ctx *ctx, sl_rpool_item **out)
{
    while (!sl__dlist_empty(&p->idle)) {
        sl_rpool_item *it = ITEM(p->idle.head);
        idle_unlink_locked(p, it);
        int64_t now = p->need_clock ? sl_now_ns() : 0;
        if (p->need_clock && expired_locked(p, it, now, true)) {
            p->open--;
            grant_slot_locked(p);
            pthread_mutex_unlock(&p->mu);
            close_item(p, it);
            pthread_mutex_lock(&p->mu);
            continue;
        }
        p->in_use++;
        pthread_mutex_unlock(&p->mu);
        if (p->o.ops.check && now - it->idle_since >= p->o.check_after_ns &&
            p->o.ops.check(p->o.arg, it->res, ctx) < 0) {
            pthread_mutex_lock(&p->mu);
            p->in_use--;
            p->open--;
            p->check_failed++;
            grant_slot_locked(p); /* a caller may have queued while we checked */
            pthread_mutex_unlock(&p->mu);
            close_item(p, it);
            pthread_mutex_lock(&p->mu);
            continue;
        }
        *out = it;
        return 1;
    }
    return 0;
}

int sl_rpool_acquire(sl_rpool *p, sl_ctx *ctx, sl_rpool_item **out)
{
    if (!p || !out) return SL_EINVAL;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        int rc = p->closed ? SL_ECLOSED : sl_ctx_err(ctx);
        if (rc < 0) {
            pthread_mutex_unlock(&p->mu);
            return rc;
        }
        if (take_idle_locked(p, ctx, out)) return 0;
        if (sl__dlist_empty(&p->waiters) && (p->o.max_open == 0 || p->open < p->o.max_open)) {
            p->open++;
            p->in_use++;
            pthread_mutex_unlock(&p->mu);
            return open_new(p, ctx, out);
        }
        sl_rpool_item *it = NULL;
        rc = wait_locked(p, ctx, &it);
        if (rc == W_ITEM) {
            pthread_mutex_unlock(&p->mu);
            *out = it;
            return 0;
        }
        if (rc == W_SLOT) {
            pthread_mutex_unlock(&p->mu);
            return open_new(p, ctx, out);
        }
        if (rc == W_CLOSED) rc = SL_ECLOSED;
        pthread_mutex_unlock(&p->mu);
        return rc;
    }
}

int sl_rpool_try_acquire(sl_rpool *p, sl_rpool_item **out)
{
    if (!p || !out) return SL_EINVAL;
    pthread_mutex_lock(&p->mu);
    if (!p->closed && take_idle_locked(p, NULL, out)) return 0;
    pthread_mutex_unlock(&p->mu);
    return SL_EAGAIN;
}

void *sl_rpool_item_res(const sl_rpool_item *it)
{
    return it->res;
}

void sl_rpool_release(sl_rpool_item *it)
{
    if (!it) return;
    sl_rpool *p = it->pool;
    sl_rpool_item *old = NULL;
    pthread_mutex_lock(&p->mu);
    int64_t now = p->need_clock ? sl_now_ns() : 0;
    struct waiter *w = first_waiter_locked(p);
    if (p->closed || (p->need_clock && expired_locked(p, it, now, false))) {
        p->in_use--;
        p->open--;
        grant_slot_locked(p);
        goto close;
    }
    if (w) {
        /* Hand over: the slot stays in use, now by the waiter. */
        wait_unlink_locked(p, w);
        w->item = it;
        w->state = W_ITEM;
        sl__cond_signal(&w->cv);
        pthread_mutex_unlock(&p->mu);
        return;
    }
    p->in_use--;
    if (p->nidle >= p->o.max_idle) {
        p->open--;
        p->idle_closed++;
        goto close;
    }
    it->idle_since = now;
    idle_push_locked(p, it);
    it = NULL;
    /* Lazy expiry: the oldest idle item, one per release, keeps a busy pool trimmed. */
    if (p->need_clock && p->idle.tail && expired_locked(p, ITEM(p->idle.tail), now, true)) {
        old = ITEM(p->idle.tail);
        idle_unlink_locked(p, old);
        p->open--;
    }
close:
    pthread_mutex_unlock(&p->mu);
    if (it) close_item(p, it);
    if (old) close_item(p, old);
}

void sl_rpool_discard(sl_rpool_item *it)
{
    if (!it) return;
    sl_rpool *p = it->pool;
    pthread_mutex_lock(&p->mu);
    p->in_use--;
    p->open--;
    p->discarded++;
    grant_slot_locked(p);
    pthread_mutex_unlock(&p->mu);
    close_item(p, it);
}

/* Moves the idle items that expired (or all of them) onto a private list; mu held. */
static sl__dlist collect_locked(sl_rpool *p, int64_t now, bool all, int *n)
{
    sl__dlist list = SL__DLIST_INIT;
    for (sl__dnode *c = p->idle.head, *nx; c; c = nx) {
        nx = c->next;
        if (!all && !expired_locked(p, ITEM(c), now, true)) continue;
        idle_unlink_locked(p, ITEM(c));
        p->open--;
        sl__dlist_push_back(&list, c);
        (*n)++;
    }
    return list;
}

static int close_list(sl_rpool *p, sl__dlist *list)
{
    int n = 0;
    for (sl__dnode *c; (c = sl__dlist_pop_front(list)) != NULL; n++)
        close_item(p, ITEM(c));
    return n;
}

int sl_rpool_reap_at(sl_rpool *p, int64_t now)
{
    if (!p) return SL_EINVAL;
    int n = 0;
    pthread_mutex_lock(&p->mu);
    sl__dlist list = SL__DLIST_INIT;
    if (p->need_clock) list = collect_locked(p, now, false, &n);
    for (int i = 0; i < n; i++)
        grant_slot_locked(p);
    pthread_mutex_unlock(&p->mu);
    return close_list(p, &list);
}

int sl_rpool_reap(sl_rpool *p)
{
    return sl_rpool_reap_at(p, sl_now_ns());
}

int sl_rpool_drain_idle(sl_rpool *p)
{
    if (!p) return SL_EINVAL;
    int n = 0;
    pthread_mutex_lock(&p->mu);
    sl__dlist list = collect_locked(p, 0, true, &n);
    pthread_mutex_unlock(&p->mu);
    return close_list(p, &list);
}

void sl_rpool_close(sl_rpool *p)
{
    if (!p) return;
    int n = 0;
    pthread_mutex_lock(&p->mu);
    p->closed = true;
    sl__dlist list = collect_locked(p, 0, true, &n);
    for (struct waiter *w; (w = first_waiter_locked(p)) != NULL;) {
        wait_unlink_locked(p, w);
        w->state = W_CLOSED;
        sl__cond_signal(&w->cv);
    }
    pthread_mutex_unlock(&p->mu);
    close_list(p, &list);
}

void sl_rpool_free(sl_rpool *p)
{
    if (!p) return;
    sl_rpool_close(p);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

void sl_rpool_stats_get(sl_rpool *p, sl_rpool_stats *st)
{
    if (!p || !st) {
        if (st) *st = (sl_rpool_stats){0};
        return;
    }
    pthread_mutex_lock(&p->mu);
    *st = (sl_rpool_stats){
        .max_open = p->o.max_open,
        .open = p->open,
        .in_use = p->in_use,
        .idle = p->nidle,
        .waiting = p->nwait,
        .wait_count = p->wait_count,
        .wait_duration_ns = p->wait_ns,
        .max_idle_closed = p->idle_closed,
        .max_idle_time_closed = p->idle_time_closed,
        .max_lifetime_closed = p->lifetime_closed,
        .check_failed = p->check_failed,
        .discarded = p->discarded,
    };
    pthread_mutex_unlock(&p->mu);
}
