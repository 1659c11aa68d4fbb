/* sl_ctx: the cancellation tree, on-done hooks, waiting, and the primitives' waiter.
 *
 * Every non-background ctx is a node with an atomic err (0 until done, then the first cause,
 * set once by compare-and-swap: that CAS is what "first cause wins" means, and the thread that
 * wins it is the one that runs the node's hooks). sl_ctx_err is one acquire load.
 *
 * Two reference counts. `refs` (strong) are the owners' references plus one per live child:
 * when it reaches 0 the node is cancelled (if not done), unlinked from its parent, and the
 * strong reference it held on the parent is dropped. `mrefs` (memory) keep the allocation alive:
 * one for "strong refs > 0", one per heap hook (so sl_ctx_hook_stop can lock the node after the
 * owners let go), one while armed in the timer heap, and one held by each canceller while it
 * works on the node. Splitting them means a hook never keeps a ctx from being cancelled by its
 * last release, yet hook_stop never touches freed memory.
 *
 * Cancelling walks the subtree without recursion and without holding two ctx locks at once:
 * phase 1 CASes err on each node (a node whose CAS fails was already cancelled by someone else,
 * who owns its subtree), wakes sl_ctx_wait waiters, and pushes the children (with a memory
 * reference each) onto an intrusive stack; phase 2 runs the hooks of every node it won, with no
 * lock held, so a hook may cancel anything, stop hooks, or release contexts. Because phase 1
 * finishes first, by the time any hook runs every descendant already reports done.
 *
 * Hooks are popped from the node's list one at a time under node->mu and marked RUNNING with the
 * running thread's id, so sl_ctx_hook_stop can tell "pending" (unlink, true), "running here"
 * (called from inside fn: flag it, the runner frees it), "running elsewhere" (wait on node->cv
 * for DONE), and "done". Registration re-checks err under node->mu, and the canceller sets err
 * before it takes node->mu to pop hooks, so a hook is either popped or runs at registration.
 *
 * Lock order: a node's mu is a leaf, except that sl__cond_wait (cond.c) takes it while holding
 * the primitive's mutex; nothing here takes a primitive's mutex while holding a node's mu (the
 * waiters' hooks touch only their parker). The timer lock (timer.c) is never held together
 * with a node's mu.
 *
 * Tasks: sl_ctx_wait and sl_ctx_wait_for park a calling task (a stack hook completes its
 * parker; a timeout is a child ctx with that deadline) instead of sleeping on the node's cv,
 * and a task that must wait for a hook running on another thread parks until the runner
 * unparks it (`stopper`), so no task ever sleeps in a condvar here. */
#include <errno.h>
#include <stdlib.h>
#include <time.h>

#include "base/base_int.h"
#include "sluice/clock.h"
#include "sluice/error.h"
#include "sync/ctx_int.h"
#include "sync/park_int.h"

static sl_ctx g_bg = {.flags = CTX_BG, .deadline = SL_FOREVER, .heap_idx = -1};

static inline bool is_bg(const sl_ctx *c)
{
    return c == NULL || (c->flags & CTX_BG);
}

static inline int load_err(const sl_ctx *c)
{
    return atomic_load_explicit(&((sl_ctx *)c)->err, memory_order_acquire);
}

int sl__cond_init_mono(pthread_cond_t *cv)
{
    pthread_condattr_t a;
    int rc = pthread_condattr_init(&a);
    if (rc) return -rc;
    rc = pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    if (rc == 0) rc = pthread_cond_init(cv, &a);
    pthread_condattr_destroy(&a);
    return -rc;
}

/* ---- references ------------------------------------------------------------------------- */

void sl__ctx_mref(sl_ctx *c)
{
    atomic_fetch_add_explicit(&c->mrefs, 1, memory_order_relaxed);
}

void sl__ctx_munref(sl_ctx *c)
{
    if (atomic_fetch_sub_explicit(&c->mrefs, 1, memory_order_acq_rel) != 1) return;
    pthread_cond_destroy(&c->cv);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

sl_ctx *sl_ctx_background(void)
{
    return &g_bg;
}

sl_ctx *sl_ctx_ref(sl_ctx *ctx)
{
    if (!is_bg(ctx)) atomic_fetch_add_explicit(&ctx->refs, 1, memory_order_relaxed);
    return ctx;
}

void sl_ctx_release(sl_ctx *c)
{
    /* A loop, not recursion: dropping a child's last reference may drop its parent's. */
    while (!is_bg(c)) {
        if (atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) != 1) return;
        sl__ctx_cancel_cause(c, SL_ECANCELED);
        sl_ctx *p = c->parent;
        if (p) {
            pthread_mutex_lock(&p->mu);
            if (c->sib_prev)
                c->sib_prev->sib_next = c->sib_next;
            else
                p->children = c->sib_next;
            if (c->sib_next) c->sib_next->sib_prev = c->sib_prev;
            pthread_mutex_unlock(&p->mu);
        }
        sl__ctx_munref(c);
        c = p;
    }
}

/* ---- construction ----------------------------------------------------------------------- */

static int node_new(sl_ctx *parent, unsigned flags, int64_t deadline, sl_ctx **out)
{
    sl_ctx *c = calloc(1, sizeof *c);
    if (!c) return SL_ENOMEM;
    if (pthread_mutex_init(&c->mu, NULL) != 0) goto fail_mu;
    if (sl__cond_init_mono(&c->cv) < 0) goto fail_cv;
    atomic_init(&c->refs, 1);
    atomic_init(&c->mrefs, 1);
    atomic_init(&c->err, 0);
    c->heap_idx = -1;
    c->flags = flags;
    c->deadline = deadline;
    if (!is_bg(parent)) {
        sl_ctx_ref(parent);
        c->parent = parent;
        c->flags |= parent->flags & CTX_CAN_DONE;
        if (parent->deadline < c->deadline) c->deadline = parent->deadline;
        /* Reading the parent's err under its lock pairs with the canceller, which sets err
         * before it takes this lock to walk the children: either we see the cause here, or
         * the canceller sees us in the list. */
        pthread_mutex_lock(&parent->mu);
        atomic_store_explicit(&c->err, load_err(parent), memory_order_release);
        c->sib_next = parent->children;
        if (parent->children) parent->children->sib_prev = c;
        parent->children = c;
        pthread_mutex_unlock(&parent->mu);
    }
    *out = c;
    return 0;
fail_cv:
    pthread_mutex_destroy(&c->mu);
fail_mu:
    free(c);
    return SL_ENOMEM;
}

int sl_ctx_with_cancel(sl_ctx *parent, sl_ctx **out)
{
    return node_new(parent, CTX_CAN_DONE, SL_FOREVER, out);
}

/* now: sl_now_ns() read by the caller (one clock read per ctx: it costs ~60 ns on some VMs). */
static int with_deadline_at(sl_ctx *parent, int64_t deadline_ns, int64_t now, sl_ctx **out)
{
    /* A parent deadline at or before ours fires first and propagates: no timer of our own. */
    bool own = deadline_ns < sl_ctx_deadline(parent);
    sl_ctx *c;
    int rc = node_new(parent, CTX_CAN_DONE | (own ? CTX_HAS_TIMER : 0u), deadline_ns, &c);
    if (rc < 0) return rc;
    if (load_err(c) == 0) {
        if (c->deadline <= now) {
            sl__ctx_cancel_cause(c, SL_ETIMEDOUT);
        } else if (own && (rc = sl__ctx_timer_add(c)) < 0) {
            sl_ctx_release(c);
            return rc;
        }
    }
    *out = c;
    return 0;
}

int sl_ctx_with_deadline(sl_ctx *parent, int64_t deadline_ns, sl_ctx **out)
{
    return with_deadline_at(parent, deadline_ns, sl_now_ns(), out);
}

int sl_ctx_with_timeout(sl_ctx *parent, int64_t timeout_ns, sl_ctx **out)
{
    int64_t now = sl_now_ns();
    return with_deadline_at(parent, sl__ns_add_sat(now, timeout_ns), now, out);
}

int sl_ctx_with_value(sl_ctx *parent, const void *key, void *value, sl_ctx **out)
{
    sl_ctx *c;
    int rc = node_new(parent, CTX_HAS_VALUE, SL_FOREVER, &c);
    if (rc < 0) return rc;
    c->key = key;
    c->value = value;
    *out = c;
    return 0;
}

/* ---- queries ---------------------------------------------------------------------------- */

int sl_ctx_err(const sl_ctx *ctx)
{
    return ctx ? load_err(ctx) : 0;
}

bool sl_ctx_done(const sl_ctx *ctx)
{
    return sl_ctx_err(ctx) != 0;
}

int64_t sl_ctx_deadline(const sl_ctx *ctx)
{
    return ctx ? ctx->deadline : SL_FOREVER;
}

void *sl_ctx_value(const sl_ctx *ctx, const void *key)
{
    for (const sl_ctx *c = ctx; !is_bg(c); c = c->parent)
        if ((c->flags & CTX_HAS_VALUE) && c->key == key) return c->value;
    return NULL;
}

bool sl__ctx_can_be_done(const sl_ctx *ctx)
{
    return !is_bg(ctx);
}

/* ---- cancellation ----------------------------------------------------------------------- */

/* Runs c's pending hooks on this thread; the caller won c's err CAS and holds a memory ref. */
static void fire_hooks(sl_ctx *c, int err)
{
    pthread_mutex_lock(&c->mu);
    struct sl_ctx_hook *h;
    while ((h = c->hooks) != NULL) {
        c->hooks = h->next;
        if (c->hooks)
            c->hooks->prev = NULL;
        else
            c->hooks_tail = NULL;
        h->state = HOOK_RUNNING;
        h->runner = pthread_self();
        pthread_mutex_unlock(&c->mu);

        h->fn(h->arg, err);

        pthread_mutex_lock(&c->mu);
        bool free_it = h->stop_in_fn;
        /* After DONE is published, h may be freed (hook_stop) or leave scope (a waiter). */
        h->state = HOOK_DONE;
        /* Under mu: the stopping task cannot see DONE (and end) before this unpark. */
        if (h->stopper) sl__task_unpark(h->stopper);
        pthread_cond_broadcast(&c->cv);
        if (free_it) {
            pthread_mutex_unlock(&c->mu);
            free(h);
            sl__ctx_munref(c); /* the hook's reference; ours keeps c alive */
            pthread_mutex_lock(&c->mu);
        }
    }
    pthread_mutex_unlock(&c->mu);
}

void sl__ctx_cancel_cause(sl_ctx *root, int cause)
{
    sl_ctx *won = NULL, **won_tail = &won, *stack = NULL;
    sl_ctx *c = root;
    bool is_root = true;
    for (;;) {
        int expected = 0;
        if (atomic_compare_exchange_strong_explicit(&c->err, &expected, cause, memory_order_acq_rel,
                                                    memory_order_acquire)) {
            if (is_root) sl__ctx_mref(c); /* children got theirs when pushed */
            c->won_next = NULL;
            *won_tail = c;
            won_tail = &c->won_next;
            pthread_mutex_lock(&c->mu);
            /* err is set, so no hook can be added from now on: none pending, none ever. */
            c->won_hooks = c->hooks != NULL;
            pthread_cond_broadcast(&c->cv);
            for (sl_ctx *ch = c->children; ch; ch = ch->sib_next) {
                sl__ctx_mref(ch);
                ch->visit_next = stack;
                stack = ch;
            }
            pthread_mutex_unlock(&c->mu);
        } else if (!is_root) {
            sl__ctx_munref(c);
        }
        if (!stack) break;
        c = stack;
        stack = c->visit_next;
        is_root = false;
    }
    for (c = won; c;) {
        sl_ctx *next = c->won_next;
        if (c->won_hooks) fire_hooks(c, cause);
        if (c->flags & CTX_HAS_TIMER) sl__ctx_timer_remove(c);
        sl__ctx_munref(c);
        c = next;
    }
}

void sl_ctx_cancel(sl_ctx *ctx)
{
    if (!is_bg(ctx)) sl__ctx_cancel_cause(ctx, SL_ECANCELED);
}

void sl_ctx_cancel_with(sl_ctx *ctx, int cause)
{
    if (!is_bg(ctx)) sl__ctx_cancel_cause(ctx, cause < 0 ? cause : SL_ECANCELED);
}

/* ---- hooks ------------------------------------------------------------------------------ */

static void hook_append_locked(sl_ctx *c, struct sl_ctx_hook *h)
{
    h->state = HOOK_PENDING;
    h->next = NULL;
    h->prev = c->hooks_tail;
    if (c->hooks_tail)
        c->hooks_tail->next = h;
    else
        c->hooks = h;
    c->hooks_tail = h;
}

static void hook_unlink_locked(sl_ctx *c, struct sl_ctx_hook *h)
{
    if (h->prev)
        h->prev->next = h->next;
    else
        c->hooks = h->next;
    if (h->next)
        h->next->prev = h->prev;
    else
        c->hooks_tail = h->prev;
    h->prev = h->next = NULL;
}

/* Waits (c->mu held, h RUNNING on another thread) until h's fn has returned. A task parks: the
 * runner unparks it under c->mu after publishing DONE; a thread sleeps on c->cv. */
static void wait_hook_locked(sl_ctx *c, struct sl_ctx_hook *h)
{
    struct sl_task *self = sl__task_self();
    while (h->state == HOOK_RUNNING) {
        if (!self) {
            pthread_cond_wait(&c->cv, &c->mu);
            continue;
        }
        h->stopper = self;
        pthread_mutex_unlock(&c->mu);
        sl__task_park();
        pthread_mutex_lock(&c->mu);
    }
    h->stopper = NULL;
}

int sl__ctx_hook_add(sl_ctx *ctx, struct sl_ctx_hook *h, sl_ctx_done_fn fn, void *arg)
{
    *h = (struct sl_ctx_hook){.fn = fn, .arg = arg};
    if (is_bg(ctx)) return 0; /* never fires */
    int err = load_err(ctx);
    if (err) return err;
    pthread_mutex_lock(&ctx->mu);
    if ((err = load_err(ctx)) == 0) {
        h->ctx = ctx;
        hook_append_locked(ctx, h);
    }
    pthread_mutex_unlock(&ctx->mu);
    return err;
}

void sl__ctx_hook_del(struct sl_ctx_hook *h)
{
    sl_ctx *c = h->ctx;
    if (!c) return;
    pthread_mutex_lock(&c->mu);
    if (h->state == HOOK_PENDING)
        hook_unlink_locked(c, h);
    else if (h->state == HOOK_RUNNING)
        wait_hook_locked(c, h);
    pthread_mutex_unlock(&c->mu);
}

int sl_ctx_on_done(sl_ctx *ctx, sl_ctx_done_fn fn, void *arg, sl_ctx_hook **out)
{
    if (!fn || !out) return SL_EINVAL;
    int err = sl_ctx_err(ctx);
    if (err) goto run_now;
    struct sl_ctx_hook *h = calloc(1, sizeof *h);
    if (!h) return SL_ENOMEM;
    h->fn = fn;
    h->arg = arg;
    h->heap = true;
    if (is_bg(ctx)) { /* never fires; the hook exists only to be stopped */
        *out = h;
        return 0;
    }
    pthread_mutex_lock(&ctx->mu);
    if ((err = load_err(ctx)) != 0) {
        pthread_mutex_unlock(&ctx->mu);
        free(h);
        goto run_now;
    }
    h->ctx = ctx;
    sl__ctx_mref(ctx);
    hook_append_locked(ctx, h);
    pthread_mutex_unlock(&ctx->mu);
    *out = h;
    return 0;
run_now:
    *out = NULL;
    fn(arg, err);
    return 1;
}

bool sl_ctx_hook_stop(sl_ctx_hook *h)
{
    if (!h) return false;
    sl_ctx *c = h->ctx;
    if (!c) {
        free(h);
        return true;
    }
    bool stopped = false;
    pthread_mutex_lock(&c->mu);
    if (h->state == HOOK_PENDING) {
        hook_unlink_locked(c, h);
        stopped = true;
    } else if (h->state == HOOK_RUNNING) {
        if (pthread_equal(h->runner, pthread_self())) {
            h->stop_in_fn = true; /* the runner frees h once fn returns */
            pthread_mutex_unlock(&c->mu);
            return false;
        }
        wait_hook_locked(c, h);
    }
    pthread_mutex_unlock(&c->mu);
    free(h);
    sl__ctx_munref(c);
    return stopped;
}

/* ---- waiting ---------------------------------------------------------------------------- */

/* The parker's ctx hook: the ctx is done, so the wait is over. */
static void parker_on_done(void *arg, int err)
{
    (void)err;
    sl__park_finish(arg, SL__CANCELED);
}

/* Parks the calling task until ctx (which can be done) is done; returns its error. */
static int task_wait(sl_ctx *ctx)
{
    sl__parker p;
    sl__parker_init(&p);
    struct sl_ctx_hook h;
    int err = sl__ctx_hook_add(ctx, &h, parker_on_done, &p);
    if (err) return err;
    sl__park_wait(&p);
    sl__ctx_hook_del(&h);
    return load_err(ctx);
}

int sl_ctx_wait(sl_ctx *ctx)
{
    int err = sl_ctx_err(ctx);
    if (err) return err;
    if (is_bg(ctx) || !(ctx->flags & CTX_CAN_DONE)) return SL_EDEADLK;
    if (sl__task_self()) return task_wait(ctx);
    pthread_mutex_lock(&ctx->mu);
    while ((err = load_err(ctx)) == 0)
        pthread_cond_wait(&ctx->cv, &ctx->mu);
    pthread_mutex_unlock(&ctx->mu);
    return err;
}

/* Waits on a private parker until abs (real monotonic ns): "wait for a ctx that never fires". */
static void park_until(int64_t abs)
{
    sl__parker p;
    sl__parker_init(&p);
    struct timespec ts;
    sl__abs_timespec(abs, &ts);
    sl__park_wait_thread(&p, &ts);
}

int sl_ctx_wait_for(sl_ctx *ctx, int64_t timeout_ns)
{
    int err = sl_ctx_err(ctx);
    if (err) return err;
    if (timeout_ns <= 0) return SL_EAGAIN;
    if (sl__task_self()) {
        /* A task sleeps on a child ctx whose deadline the ctx timer fires (on sl_now_ns()). */
        sl_ctx *t;
        if ((err = sl_ctx_with_timeout(ctx, timeout_ns, &t)) != 0) return err;
        task_wait(t);
        sl_ctx_release(t);
        err = sl_ctx_err(ctx);
        return err ? err : SL_EAGAIN;
    }
    int64_t abs = sl__ns_add_sat(sl_mono_ns(), timeout_ns);
    if (is_bg(ctx)) {
        park_until(abs);
        return SL_EAGAIN;
    }
    struct timespec ts;
    sl__abs_timespec(abs, &ts);
    pthread_mutex_lock(&ctx->mu);
    while ((err = load_err(ctx)) == 0)
        if (pthread_cond_timedwait(&ctx->cv, &ctx->mu, &ts) == ETIMEDOUT) {
            err = load_err(ctx);
            break;
        }
    pthread_mutex_unlock(&ctx->mu);
    return err ? err : SL_EAGAIN;
}
