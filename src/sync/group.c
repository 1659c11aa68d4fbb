/* sl_group: errgroup on top of sl_executor.
 *
 * State: `active` counts tasks in flight — queued on the executor or running — and is what the
 * limit bounds, so "at most n" holds from the moment go() returns until the task has returned.
 * The first non-zero result is kept in `err` and cancels the group's ctx; wait() returns it.
 *
 * Waiting helps: a thread in wait(), or in go() at the limit, first takes the group's own queued
 * tasks back from the executor (sl__executor_steal) and runs them itself; it sleeps on the
 * condvar only while every task in flight is already running on some other thread. Those tasks
 * can always finish (anything they wait on is deeper in the nesting and helped the same way),
 * so nested groups make progress even when every executor thread is blocked in a group wait.
 *
 * Ordering that matters:
 *   - A failing task cancels the ctx *before* it decrements `active`: once `active` reaches 0 a
 *     waiter may return and free the group, so nothing may touch g after that decrement except
 *     the unlock that publishes it.
 *   - sl_ctx_cancel is never called with mu held: go_ctx waits on cv through sl__ctx_cond_wait,
 *     whose ctx notifier takes mu (see sync_int.h).
 *   - Completions broadcast only when someone sleeps on cv (`sleepers`), so the common case of a
 *     task finishing with nobody waiting is one uncontended lock round.
 * Task nodes are recycled through a per-group free list (guarded by mu): with a limit, the list
 * never holds more than `limit` nodes, and go+wait allocates nothing after warm-up. */
#include <pthread.h>
#include <stdlib.h>

#include "sluice/error.h"
#include "sync/group_int.h"
#include "sync/sync_int.h"

typedef struct gtask {
    sl__task base; /* first: the executor hands us back &base */
    sl_group *g;
    sl_group_fn fn;
    void *arg;
    struct gtask *free_next; /* free list; guarded by g->mu */
} gtask;

struct sl_group {
    sl_executor *ex;  /* borrowed */
    sl_ctx *ctx;      /* owned reference */
    sl__taskq queued; /* tasks not yet started; guarded by ex's lock */
    pthread_mutex_t mu;
    pthread_cond_t cv; /* signalled when active drops and sleepers > 0 */
    int limit;         /* < 0: none; guarded by mu */
    size_t active;     /* queued + running; guarded by mu */
    int sleepers;      /* threads in cond_wait on cv; guarded by mu */
    int err;           /* first task error; guarded by mu */
    gtask *free_list;  /* guarded by mu */
};

static void task_done(sl_group *g, gtask *t, int rc)
{
    if (rc != 0) {
        bool first = false;
        pthread_mutex_lock(&g->mu);
        if (g->err == 0) {
            g->err = rc;
            first = true;
        }
        pthread_mutex_unlock(&g->mu);
        if (first) sl_ctx_cancel(g->ctx);
    }
    pthread_mutex_lock(&g->mu);
    t->free_next = g->free_list;
    g->free_list = t;
    g->active--;
    if (g->sleepers > 0) pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

static void run_task(sl__task *base)
{
    gtask *t = (gtask *)base;
    sl_group *g = t->g;
    task_done(g, t, t->fn(g->ctx, t->arg));
}

/* Runs one of g's queued tasks on this thread; false if none is queued. */
static bool help_one(sl_group *g)
{
    sl__task *t = sl__executor_steal(g->ex, &g->queued);
    if (!t) return false;
    run_task(t);
    return true;
}

int sl_group_new_on(sl_ctx *parent, sl_executor *ex, sl_group **out)
{
    if (!out) return SL_EINVAL;
    int rc = 0;
    if (!ex && (rc = sl__executor_default(&ex)) != 0) return rc;
    sl_group *g = calloc(1, sizeof(*g));
    if (!g) return SL_ENOMEM;
    if ((rc = sl_ctx_with_cancel(parent, &g->ctx)) != 0) {
        free(g);
        return rc;
    }
    sl__mutex_init_adaptive(&g->mu);
    pthread_cond_init(&g->cv, NULL);
    g->ex = ex;
    g->limit = -1;
    *out = g;
    return 0;
}

int sl_group_new(sl_ctx *parent, sl_group **out)
{
    return sl_group_new_on(parent, NULL, out);
}

sl_ctx *sl_group_ctx(sl_group *g)
{
    return g ? g->ctx : NULL;
}

int sl_group_set_limit(sl_group *g, int n)
{
    if (!g) return SL_EINVAL;
    pthread_mutex_lock(&g->mu);
    int rc = g->active ? SL_EBUSY : 0;
    if (rc == 0) g->limit = n < 0 ? -1 : n;
    pthread_mutex_unlock(&g->mu);
    return rc;
}

static bool at_limit(const sl_group *g)
{
    return g->limit >= 0 && g->active >= (size_t)g->limit;
}

/* Reserves a slot (active++) and a task node, waiting (and helping) while at the limit unless
 * try. Returns the node, with *rc = 0; or NULL with *rc = SL_EFULL, SL_ENOMEM or the ctx's
 * error. */
static gtask *reserve(sl_group *g, bool try, sl_ctx *ctx, int *rc)
{
    pthread_mutex_lock(&g->mu);
    while (at_limit(g)) {
        if (try) {
            pthread_mutex_unlock(&g->mu);
            *rc = SL_EFULL;
            return NULL;
        }
        pthread_mutex_unlock(&g->mu);
        if (help_one(g)) {
            pthread_mutex_lock(&g->mu);
            continue;
        }
        pthread_mutex_lock(&g->mu);
        if (!at_limit(g)) break;
        /* Every task in flight runs elsewhere: sleep until one finishes. A task queued by
         * another goer meanwhile is found on the next pass, after the next completion. */
        g->sleepers++;
        int w = sl__ctx_cond_wait(ctx, &g->cv, &g->mu);
        g->sleepers--;
        if (w < 0) {
            pthread_mutex_unlock(&g->mu);
            *rc = w;
            return NULL;
        }
    }
    gtask *t = g->free_list;
    if (t) {
        g->free_list = t->free_next;
    } else if (!(t = malloc(sizeof(*t)))) {
        pthread_mutex_unlock(&g->mu);
        *rc = SL_ENOMEM;
        return NULL;
    }
    g->active++;
    pthread_mutex_unlock(&g->mu);
    *rc = 0;
    return t;
}

static int go(sl_group *g, sl_group_fn fn, void *arg, bool try, sl_ctx *ctx)
{
    if (!g || !fn) return SL_EINVAL;
    int rc;
    gtask *t = reserve(g, try, ctx, &rc);
    if (!t) return rc;
    t->g = g;
    t->fn = fn;
    t->arg = arg;
    t->base.run = run_task;
    sl__executor_submit(g->ex, &t->base, &g->queued);
    return 0;
}

int sl_group_go(sl_group *g, sl_group_fn fn, void *arg)
{
    return go(g, fn, arg, false, NULL);
}

int sl_group_go_ctx(sl_group *g, sl_group_fn fn, void *arg, sl_ctx *ctx)
{
    return go(g, fn, arg, false, ctx);
}

int sl_group_try_go(sl_group *g, sl_group_fn fn, void *arg)
{
    return go(g, fn, arg, true, NULL);
}

int sl_group_wait(sl_group *g)
{
    if (!g) return SL_EINVAL;
    for (;;) {
        if (help_one(g)) continue;
        pthread_mutex_lock(&g->mu);
        if (g->active == 0) break;
        /* Nothing queued: every task left is running on another thread. */
        g->sleepers++;
        pthread_cond_wait(&g->cv, &g->mu);
        g->sleepers--;
        pthread_mutex_unlock(&g->mu);
    }
    int err = g->err;
    pthread_mutex_unlock(&g->mu);
    sl_ctx_cancel(g->ctx);
    return err;
}

void sl_group_free(sl_group *g)
{
    if (!g) return;
    pthread_mutex_lock(&g->mu);
    size_t active = g->active;
    pthread_mutex_unlock(&g->mu);
    if (active) sl_group_wait(g);
    for (gtask *t = g->free_list, *next; t; t = next) {
        next = t->free_next;
        free(t);
    }
    sl_ctx_release(g->ctx);
    pthread_cond_destroy(&g->cv);
    pthread_mutex_destroy(&g->mu);
    free(g);
}
