/* sl_ctx: tree semantics, first cause wins, values, deadlines (test clock and real), hooks and
 * their stop rules, waiting without CPU, and the primitives' waiter (sync_int.h). */
#include "harness.h"
#include "sync/sync_int.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

/* Real-time slack for a deadline to fire. Sanitizers slow everything down several times. */
#if defined(SLUICE_TSAN) || defined(SLUICE_ASAN)
#define SLACK_MS 250
#else
#define SLACK_MS 50
#endif

static sl_ctx *mk_cancel(sl_ctx *parent)
{
    sl_ctx *c = NULL;
    assert_int_equal(sl_ctx_with_cancel(parent, &c), 0);
    assert_non_null(c);
    return c;
}

static void test_background(void **state)
{
    sl_ctx *bg = sl_ctx_background();
    assert_non_null(bg);
    assert_int_equal(sl_ctx_err(bg), 0);
    assert_int_equal(sl_ctx_err(NULL), 0);
    assert_false(sl_ctx_done(NULL));
    assert_true(sl_ctx_deadline(NULL) == SL_FOREVER);
    assert_true(sl_ctx_deadline(bg) == SL_FOREVER);
    assert_null(sl_ctx_value(bg, "k"));
    sl_ctx_cancel(bg);
    sl_ctx_cancel(NULL);
    sl_ctx_release(bg);
    assert_ptr_equal(sl_ctx_ref(bg), bg);
    assert_null(sl_ctx_ref(NULL));
    assert_int_equal(sl_ctx_err(bg), 0);
    assert_int_equal(sl_ctx_wait(NULL), SL_EDEADLK);
    assert_int_equal(sl_ctx_wait(bg), SL_EDEADLK);
    assert_int_equal(sl_ctx_wait_for(bg, SL_MS(1)), SL_EAGAIN);
}

static void test_cancel_twice_first_cause_wins(void **state)
{
    sl_ctx *c = mk_cancel(NULL);
    assert_int_equal(sl_ctx_err(c), 0);
    sl_ctx_cancel_with(c, SL_ESHUTDOWN);
    assert_int_equal(sl_ctx_err(c), SL_ESHUTDOWN);
    sl_ctx_cancel(c);
    assert_int_equal(sl_ctx_err(c), SL_ESHUTDOWN);
    sl_ctx_cancel_with(c, SL_EIO);
    assert_int_equal(sl_ctx_err(c), SL_ESHUTDOWN);
    assert_true(sl_ctx_done(c));
    assert_int_equal(sl_ctx_wait(c), SL_ESHUTDOWN);
    sl_ctx_release(c);

    c = mk_cancel(NULL);
    sl_ctx_cancel_with(c, 5); /* not negative: SL_ECANCELED */
    assert_int_equal(sl_ctx_err(c), SL_ECANCELED);
    sl_ctx_release(c);
}

static void test_parent_cancels_descendants_never_parent(void **state)
{
    sl_ctx *root = mk_cancel(NULL);
    sl_ctx *a = mk_cancel(root), *b = mk_cancel(root);
    sl_ctx *a1 = mk_cancel(a), *a2 = NULL, *b1 = NULL;
    assert_int_equal(sl_ctx_with_value(a, "k", "v", &a2), 0);
    sl_ctx *a21 = mk_cancel(a2);
    assert_int_equal(sl_ctx_with_timeout(b, SL_SEC(100), &b1), 0);

    sl_ctx_cancel_with(a1, SL_EIO); /* child cancel: not the parent, not the siblings */
    assert_int_equal(sl_ctx_err(a1), SL_EIO);
    assert_int_equal(sl_ctx_err(a), 0);
    assert_int_equal(sl_ctx_err(root), 0);
    assert_int_equal(sl_ctx_err(a2), 0);

    sl_ctx_cancel_with(root, SL_ESHUTDOWN); /* every descendant gets the root's cause */
    assert_int_equal(sl_ctx_err(root), SL_ESHUTDOWN);
    assert_int_equal(sl_ctx_err(a), SL_ESHUTDOWN);
    assert_int_equal(sl_ctx_err(b), SL_ESHUTDOWN);
    assert_int_equal(sl_ctx_err(a2), SL_ESHUTDOWN);
    assert_int_equal(sl_ctx_err(a21), SL_ESHUTDOWN);
    assert_int_equal(sl_ctx_err(b1), SL_ESHUTDOWN);
    assert_int_equal(sl_ctx_err(a1), SL_EIO); /* already done: keeps its own cause */

    /* A child of a done parent starts done with the parent's cause. */
    sl_ctx *late = mk_cancel(a);
    assert_int_equal(sl_ctx_err(late), SL_ESHUTDOWN);

    /* Release order does not matter: children hold their parents. */
    sl_ctx_release(root);
    sl_ctx_release(a);
    sl_ctx_release(late);
    sl_ctx_release(a21);
    sl_ctx_release(a1);
    sl_ctx_release(b);
    sl_ctx_release(a2);
    sl_ctx_release(b1);
}

static void test_release_without_cancel(void **state)
{
    sl_ctx *root = mk_cancel(NULL);
    sl_ctx *c = mk_cancel(root);
    sl_ctx *keep = sl_ctx_ref(c);
    sl_ctx_release(c); /* not the last reference: nothing happens */
    assert_int_equal(sl_ctx_err(keep), 0);
    sl_ctx_release(keep); /* the last: cancelled and detached, root untouched */
    assert_int_equal(sl_ctx_err(root), 0);
    /* root's only child is gone: cancelling root reaches nothing freed (ASan would say). */
    for (int i = 0; i < 100; i++)
        sl_ctx_release(mk_cancel(root));
    sl_ctx_cancel(root);
    sl_ctx_release(root);
}

static atomic_int g_last_err;
static void record_err(void *arg, int err)
{
    atomic_store(&g_last_err, err);
    atomic_fetch_add((atomic_int *)arg, 1);
}

static void test_release_fires_hooks(void **state)
{
    atomic_int n = 0;
    sl_ctx *c = mk_cancel(NULL);
    sl_ctx_hook *h;
    assert_int_equal(sl_ctx_on_done(c, record_err, &n, &h), 0);
    sl_ctx_release(c); /* last reference: cancels, hook runs here */
    assert_int_equal(atomic_load(&n), 1);
    assert_int_equal(atomic_load(&g_last_err), SL_ECANCELED);
    assert_false(sl_ctx_hook_stop(h)); /* ran already; frees the hook and the ctx's memory */
}

static const char k1, k2, k3;

static void test_values(void **state)
{
    sl_ctx *a, *b, *c, *d;
    int va = 1, vb = 2, vc = 3;
    assert_int_equal(sl_ctx_with_value(NULL, &k1, &va, &a), 0);
    assert_int_equal(sl_ctx_with_value(a, &k2, &vb, &b), 0);
    d = mk_cancel(b);
    assert_int_equal(sl_ctx_with_value(d, &k1, &vc, &c), 0);
    assert_ptr_equal(sl_ctx_value(c, &k1), &vc); /* nearest wins */
    assert_ptr_equal(sl_ctx_value(d, &k1), &va);
    assert_ptr_equal(sl_ctx_value(c, &k2), &vb); /* through a cancel node */
    assert_null(sl_ctx_value(c, &k3));
    /* Identity, not content: an equal-looking key is a different key. */
    static const char k1_twin = 0;
    assert_null(sl_ctx_value(c, &k1_twin));
    /* A chain with no cancel and no deadline can never be done: waiting would deadlock. */
    assert_int_equal(sl_ctx_wait(b), SL_EDEADLK);
    assert_int_equal(sl_ctx_deadline(c), SL_FOREVER);
    sl_ctx_release(a);
    sl_ctx_release(b);
    sl_ctx_release(d);
    assert_ptr_equal(sl_ctx_value(c, &k2), &vb); /* c still holds the chain */
    sl_ctx_release(c);
}

static void test_deadline_past_and_min(void **state)
{
    sl_test_clock_install(SL_SEC(1000));
    sl_ctx *c;
    assert_int_equal(sl_ctx_with_deadline(NULL, SL_SEC(999), &c), 0);
    assert_int_equal(sl_ctx_err(c), SL_ETIMEDOUT); /* done at once, on this thread */
    sl_ctx_release(c);
    assert_int_equal(sl_ctx_with_timeout(NULL, 0, &c), 0);
    assert_int_equal(sl_ctx_err(c), SL_ETIMEDOUT);
    sl_ctx_release(c);

    sl_ctx *p, *early, *late;
    assert_int_equal(sl_ctx_with_deadline(NULL, SL_SEC(1010), &p), 0);
    assert_int_equal(sl_ctx_deadline(p), SL_SEC(1010));
    assert_int_equal(sl_ctx_with_deadline(p, SL_SEC(1005), &early), 0);
    assert_int_equal(sl_ctx_deadline(early), SL_SEC(1005)); /* own is earlier */
    assert_int_equal(sl_ctx_with_deadline(p, SL_SEC(1020), &late), 0);
    assert_int_equal(sl_ctx_deadline(late), SL_SEC(1010)); /* parent's is earlier */
    sl_ctx *v;
    assert_int_equal(sl_ctx_with_value(late, &k1, NULL, &v), 0);
    assert_int_equal(sl_ctx_deadline(v), SL_SEC(1010));
    sl_ctx_release(v);
    sl_ctx_release(early);
    sl_ctx_release(late);
    sl_ctx_release(p);
    sl_test_clock_uninstall();
}

static void test_deadline_test_clock(void **state)
{
    sl_test_clock_install(SL_SEC(50));
    atomic_int n = 0;
    sl_ctx *p, *c, *child;
    sl_ctx_hook *h;
    assert_int_equal(sl_ctx_with_timeout(NULL, SL_SEC(10), &p), 0);
    assert_int_equal(sl_ctx_with_timeout(p, SL_SEC(5), &c), 0);
    child = mk_cancel(c);
    assert_int_equal(sl_ctx_on_done(child, record_err, &n, &h), 0);
    assert_true(sl__ctx_timer_running());

    sl_test_clock_advance(SL_SEC(4));
    /* Nothing is due: the timer re-checked and went back to sleep. */
    assert_int_equal(sl_ctx_wait_for(c, SL_MS(20)), SL_EAGAIN);
    sl_test_clock_advance(SL_SEC(1));
    assert_int_equal(sl_ctx_wait_for(c, SL_SEC(5)), SL_ETIMEDOUT);
    assert_int_equal(sl_ctx_wait(child), SL_ETIMEDOUT);
    assert_true(SL_WAIT_UNTIL(atomic_load(&n) == 1, 5000));
    assert_int_equal(atomic_load(&g_last_err), SL_ETIMEDOUT);
    assert_int_equal(sl_ctx_err(p), 0);
    sl_test_clock_advance(SL_SEC(5));
    assert_int_equal(sl_ctx_wait_for(p, SL_SEC(5)), SL_ETIMEDOUT);

    assert_false(sl_ctx_hook_stop(h));
    sl_ctx_release(child);
    sl_ctx_release(c);
    sl_ctx_release(p);
    sl_test_clock_uninstall();
}

static void test_deadline_real_time(void **state)
{
    /* The best of three: a loaded machine may delay one wakeup, a broken timer delays all. */
    int64_t best = INT64_MAX;
    for (int i = 0; i < 3; i++) {
        sl_ctx *c;
        int64_t t0 = sl_mono_ns();
        assert_int_equal(sl_ctx_with_timeout(NULL, SL_MS(20), &c), 0);
        assert_int_equal(sl_ctx_wait(c), SL_ETIMEDOUT);
        int64_t dt = sl_mono_ns() - t0;
        assert_true(dt >= SL_MS(20));
        best = dt < best ? dt : best;
        sl_ctx_release(c);
    }
    assert_true(best < SL_MS(20 + SLACK_MS));
    /* An earlier deadline armed while the timer sleeps on a later one wakes it. */
    sl_ctx *late, *early;
    assert_int_equal(sl_ctx_with_timeout(NULL, SL_SEC(60), &late), 0);
    int64_t t0 = sl_mono_ns();
    assert_int_equal(sl_ctx_with_timeout(NULL, SL_MS(10), &early), 0);
    assert_int_equal(sl_ctx_wait(early), SL_ETIMEDOUT);
    assert_true(sl_mono_ns() - t0 < SL_MS(10 + 4 * SLACK_MS));
    assert_int_equal(sl_ctx_err(late), 0);
    sl_ctx_release(early);
    sl_ctx_release(late); /* disarms */

    /* Disarming the deadline the timer sleeps for, then arming a later one (no wakeup is sent
     * for it): the timer wakes at the stale time, re-reads the heap, and still fires it. */
    assert_int_equal(sl_ctx_with_timeout(NULL, SL_MS(5), &early), 0);
    sl_ctx_release(early);
    t0 = sl_mono_ns();
    assert_int_equal(sl_ctx_with_timeout(NULL, SL_MS(30), &late), 0);
    assert_int_equal(sl_ctx_wait(late), SL_ETIMEDOUT);
    assert_true(sl_mono_ns() - t0 < SL_MS(30 + 4 * SLACK_MS));
    sl_ctx_release(late);
}

/* ---- hooks ------------------------------------------------------------------------------ */

static void test_hook_on_done_ctx_runs_at_once(void **state)
{
    atomic_int n = 0;
    sl_ctx *c = mk_cancel(NULL);
    sl_ctx_cancel_with(c, SL_EIO);
    sl_ctx_hook *h = (sl_ctx_hook *)&n; /* must be overwritten with NULL */
    assert_int_equal(sl_ctx_on_done(c, record_err, &n, &h), 1);
    assert_null(h);
    assert_int_equal(atomic_load(&n), 1);
    assert_int_equal(atomic_load(&g_last_err), SL_EIO);
    assert_false(sl_ctx_hook_stop(NULL));
    assert_int_equal(sl_ctx_on_done(c, NULL, NULL, &h), SL_EINVAL);
    sl_ctx_release(c);

    /* Background: never fires, stopping reports "prevented". */
    assert_int_equal(sl_ctx_on_done(NULL, record_err, &n, &h), 0);
    assert_non_null(h);
    assert_true(sl_ctx_hook_stop(h));
    assert_int_equal(atomic_load(&n), 1);
}

static void test_hook_stop_true_false(void **state)
{
    atomic_int n = 0;
    sl_ctx *c = mk_cancel(NULL);
    sl_ctx_hook *h1, *h2, *h3;
    assert_int_equal(sl_ctx_on_done(c, record_err, &n, &h1), 0);
    assert_int_equal(sl_ctx_on_done(c, record_err, &n, &h2), 0);
    assert_int_equal(sl_ctx_on_done(c, record_err, &n, &h3), 0);
    assert_true(sl_ctx_hook_stop(h2)); /* stopped before: never runs */
    sl_ctx_cancel(c);
    assert_int_equal(atomic_load(&n), 2); /* ran on this thread before cancel returned */
    assert_false(sl_ctx_hook_stop(h1));
    assert_false(sl_ctx_hook_stop(h3));
    sl_ctx_cancel(c); /* again: nothing runs twice */
    assert_int_equal(atomic_load(&n), 2);
    sl_ctx_release(c);
}

/* A hook that stops itself, stops a later hook of the same ctx, and cancels another ctx. */
struct reentrant {
    sl_ctx_hook *self, *later;
    sl_ctx *other;
    bool self_stop, later_stop;
    atomic_int ran;
};
static void reentrant_fn(void *arg, int err)
{
    struct reentrant *r = arg;
    r->self_stop = sl_ctx_hook_stop(r->self); /* own hook: no wait, false, freed after return */
    r->later_stop = sl_ctx_hook_stop(r->later);
    sl_ctx_cancel(r->other);
    sl_ctx_release(r->other); /* may even drop the last reference here */
    atomic_fetch_add(&r->ran, 1);
}
static void never(void *arg, int err)
{
    fail_msg("stopped hook ran");
}

static void test_hook_reentrancy(void **state)
{
    struct reentrant r = {0};
    sl_ctx *c = mk_cancel(NULL);
    r.other = mk_cancel(NULL);
    sl_ctx *other_child = mk_cancel(r.other);
    assert_int_equal(sl_ctx_on_done(c, reentrant_fn, &r, &r.self), 0);
    assert_int_equal(sl_ctx_on_done(c, never, NULL, &r.later), 0);
    sl_ctx_cancel(c);
    assert_int_equal(atomic_load(&r.ran), 1);
    assert_false(r.self_stop);
    assert_true(r.later_stop);
    assert_int_equal(sl_ctx_err(other_child), SL_ECANCELED);
    sl_ctx_release(other_child);
    sl_ctx_release(c);
}

/* A hook that drops the last reference of its own ctx: the canceller keeps the memory alive
 * until it is done with the node, and hook_stop later frees the rest. */
static void release_own(void *arg, int err)
{
    sl_ctx_release(arg);
}
static void test_hook_releases_own_ctx(void **state)
{
    sl_ctx *parent = mk_cancel(NULL);
    sl_ctx *c = mk_cancel(parent);
    sl_ctx_hook *h;
    assert_int_equal(sl_ctx_on_done(c, release_own, c, &h), 0);
    sl_ctx_cancel(parent); /* c's hook runs on this thread and frees c's last reference */
    assert_false(sl_ctx_hook_stop(h));
    sl_ctx_release(parent);
}

/* Hooks run in registration order, and when any hook runs, every descendant is done already. */
struct order {
    int seen[4];
    int n;
    sl_ctx *leaf;
    bool leaf_done_when_root_hook_ran;
};
static struct order g_order;
static struct order *g_order_slots[3] = {&g_order, &g_order, &g_order};
static void order_slot_fn(void *arg, int err)
{
    struct order *o = *(struct order **)arg;
    o->seen[o->n++] = (int)((struct order **)arg - g_order_slots);
    if (o->n == 1) o->leaf_done_when_root_hook_ran = sl_ctx_done(o->leaf);
}

static void test_hook_order_and_subtree_first(void **state)
{
    sl_ctx *root = mk_cancel(NULL), *mid = mk_cancel(root);
    g_order.leaf = mk_cancel(mid);
    sl_ctx_hook *h[3];
    for (int i = 0; i < 3; i++)
        assert_int_equal(sl_ctx_on_done(root, order_slot_fn, &g_order_slots[i], &h[i]), 0);
    sl_ctx_cancel(root);
    assert_int_equal(g_order.n, 3);
    assert_int_equal(g_order.seen[0], 0);
    assert_int_equal(g_order.seen[1], 1);
    assert_int_equal(g_order.seen[2], 2);
    assert_true(g_order.leaf_done_when_root_hook_ran);
    for (int i = 0; i < 3; i++)
        assert_false(sl_ctx_hook_stop(h[i]));
    sl_ctx_release(g_order.leaf);
    sl_ctx_release(mid);
    sl_ctx_release(root);
}

/* Cancel and release walk iteratively: a very deep chain cannot overflow the stack. */
static void test_deep_chain(void **state)
{
    enum { DEPTH = 20000 };
    sl_ctx *root = mk_cancel(NULL), *c = root;
    for (int i = 0; i < DEPTH; i++) {
        sl_ctx *next = mk_cancel(c);
        if (c != root) sl_ctx_release(c); /* the child's reference keeps it */
        c = next;
    }
    sl_ctx_cancel(root);
    assert_int_equal(sl_ctx_err(c), SL_ECANCELED);
    sl_ctx_release(c); /* frees the whole chain up to root, one level at a time */
    sl_ctx_release(root);
}

/* hook_stop from another thread waits for a running callback. */
struct slow {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool entered, go, finished;
};
static void slow_fn(void *arg, int err)
{
    struct slow *s = arg;
    pthread_mutex_lock(&s->mu);
    s->entered = true;
    pthread_cond_broadcast(&s->cv);
    while (!s->go)
        pthread_cond_wait(&s->cv, &s->mu);
    s->finished = true;
    pthread_mutex_unlock(&s->mu);
}
static void *cancel_thread(void *arg)
{
    sl_ctx_cancel(arg);
    return NULL;
}
struct stopper {
    sl_ctx_hook *h;
    atomic_bool returned;
    bool result;
};
static void *stop_thread(void *arg)
{
    struct stopper *st = arg;
    st->result = sl_ctx_hook_stop(st->h);
    atomic_store(&st->returned, true);
    return NULL;
}

static void test_hook_stop_waits_for_running(void **state)
{
    struct slow s = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    sl_ctx *c = mk_cancel(NULL);
    struct stopper st = {0};
    assert_int_equal(sl_ctx_on_done(c, slow_fn, &s, &st.h), 0);
    pthread_t canceller, stopper;
    assert_int_equal(pthread_create(&canceller, NULL, cancel_thread, c), 0);
    pthread_mutex_lock(&s.mu);
    while (!s.entered)
        pthread_cond_wait(&s.cv, &s.mu);
    pthread_mutex_unlock(&s.mu);
    assert_int_equal(pthread_create(&stopper, NULL, stop_thread, &st), 0);
    /* The stopper must still be blocked while fn runs (a bounded look, not a proof). */
    assert_false(SL_WAIT_UNTIL(atomic_load(&st.returned), 30));
    pthread_mutex_lock(&s.mu);
    s.go = true;
    pthread_cond_broadcast(&s.cv);
    pthread_mutex_unlock(&s.mu);
    pthread_join(stopper, NULL);
    assert_false(st.result);
    pthread_mutex_lock(&s.mu);
    assert_true(s.finished); /* stop returned only after fn did */
    pthread_mutex_unlock(&s.mu);
    pthread_join(canceller, NULL);
    sl_ctx_release(c);
}

/* ---- waiting ---------------------------------------------------------------------------- */

static void *release_thread(void *arg)
{
    sl_ctx_cancel_with(arg, SL_ESHUTDOWN);
    return NULL;
}

static void test_wait_is_woken(void **state)
{
    sl_ctx *c = mk_cancel(NULL);
    sl_ctx *child = mk_cancel(c);
    assert_int_equal(sl_ctx_wait_for(child, SL_MS(5)), SL_EAGAIN);
    assert_int_equal(sl_ctx_wait_for(child, 0), SL_EAGAIN);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, release_thread, c), 0);
    assert_int_equal(sl_ctx_wait(child), SL_ESHUTDOWN);
    pthread_join(t, NULL);
    sl_ctx_release(child);
    sl_ctx_release(c);
}

static int64_t thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}
struct idle {
    sl_ctx *ctx;
    int64_t cpu;
    int rc;
};
static void *idle_waiter(void *arg)
{
    struct idle *w = arg;
    int64_t c0 = thread_cpu_ns();
    w->rc = sl_ctx_wait(w->ctx);
    w->cpu = thread_cpu_ns() - c0;
    return NULL;
}

static void test_idle_waiter_uses_no_cpu(void **state)
{
    struct idle w = {0};
    assert_int_equal(sl_ctx_with_timeout(NULL, SL_MS(200), &w.ctx), 0);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, idle_waiter, &w), 0);
    pthread_join(t, NULL);
    assert_int_equal(w.rc, SL_ETIMEDOUT);
    /* A spinning waiter would burn ~200 ms; a parked one a few microseconds. */
    assert_true(w.cpu < SL_MS(20));
    sl_ctx_release(w.ctx);
}

/* ---- the primitives' waiter ------------------------------------------------------------- */

struct prim {
    pthread_mutex_t mu;
    sl__cond cv;
    bool ready;
    sl_ctx *ctx;
    int rc;
    atomic_bool waiting;
};
static void *prim_waiter(void *arg)
{
    struct prim *p = arg;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->waiting, true);
    int rc = 0;
    while (!p->ready && rc == 0)
        rc = sl__cond_wait(&p->cv, &p->mu, p->ctx);
    p->rc = rc;
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

static void test_cond_wait(void **state)
{
    struct prim p = {.mu = PTHREAD_MUTEX_INITIALIZER};
    sl__cond_init(&p.cv);

    /* Woken by the primitive. */
    p.ctx = mk_cancel(NULL);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, prim_waiter, &p), 0);
    assert_true(SL_WAIT_UNTIL(atomic_load(&p.waiting), 5000));
    pthread_mutex_lock(&p.mu);
    p.ready = true;
    sl__cond_broadcast(&p.cv);
    pthread_mutex_unlock(&p.mu);
    pthread_join(t, NULL);
    assert_int_equal(p.rc, 0);

    /* Woken by the ctx (a parent's cancel reaches a child's waiter). */
    p.ready = false;
    atomic_store(&p.waiting, false);
    sl_ctx *parent = p.ctx;
    p.ctx = mk_cancel(parent);
    assert_int_equal(pthread_create(&t, NULL, prim_waiter, &p), 0);
    assert_true(SL_WAIT_UNTIL(atomic_load(&p.waiting), 5000));
    sl_ctx_cancel_with(parent, SL_ESHUTDOWN);
    pthread_join(t, NULL);
    assert_int_equal(p.rc, SL_ESHUTDOWN);
    /* A value-only chain is skipped by sl_ctx_wait (EDEADLK) but not by the primitives'
     * waiter: cancelling it directly must still wake a blocked primitive. */
    sl_ctx *vctx;
    assert_int_equal(sl_ctx_with_value(NULL, &k1, NULL, &vctx), 0);
    sl_ctx *saved = p.ctx;
    p.ctx = vctx;
    atomic_store(&p.waiting, false);
    assert_int_equal(pthread_create(&t, NULL, prim_waiter, &p), 0);
    assert_true(SL_WAIT_UNTIL(atomic_load(&p.waiting), 5000));
    sl_ctx_cancel(vctx);
    pthread_join(t, NULL);
    assert_int_equal(p.rc, SL_ECANCELED);
    sl_ctx_release(vctx);
    p.ctx = saved;
    /* Already done: returns at once. */
    pthread_mutex_lock(&p.mu);
    assert_int_equal(sl__cond_wait(&p.cv, &p.mu, p.ctx), SL_ESHUTDOWN);
    pthread_mutex_unlock(&p.mu);
    sl_ctx_release(p.ctx);
    sl_ctx_release(parent);

    /* Real-time bound, NULL ctx and a live ctx. */
    pthread_mutex_lock(&p.mu);
    int rc;
    int64_t dl = sl_mono_ns() + SL_MS(5);
    while ((rc = sl__cond_wait_until(&p.cv, &p.mu, NULL, dl)) == 0) {
    }
    assert_int_equal(rc, SL_ETIMEDOUT);
    assert_true(sl_mono_ns() >= dl);
    sl_ctx *c = mk_cancel(NULL);
    dl = sl_mono_ns() + SL_MS(5);
    while ((rc = sl__cond_wait_until(&p.cv, &p.mu, c, dl)) == 0) {
    }
    assert_int_equal(rc, SL_ETIMEDOUT);
    /* An instant before the clock's epoch is in the past too: SL_ETIMEDOUT at once, not a
     * "woken" 0 from the EINVAL of a negative timespec (which spins a predicate loop). */
    assert_int_equal(sl__cond_wait_until(&p.cv, &p.mu, NULL, -SL_MS(1)), SL_ETIMEDOUT);
    assert_int_equal(sl__cond_wait_until(&p.cv, &p.mu, c, INT64_MIN), SL_ETIMEDOUT);
    pthread_mutex_unlock(&p.mu);
    sl_ctx_release(c);
    /* A deadline ctx wakes a waiter by itself. */
    assert_int_equal(sl_ctx_with_timeout(NULL, SL_MS(10), &p.ctx), 0);
    p.ready = false;
    assert_int_equal(pthread_create(&t, NULL, prim_waiter, &p), 0);
    pthread_join(t, NULL);
    assert_int_equal(p.rc, SL_ETIMEDOUT);
    sl_ctx_release(p.ctx);
}

static void test_timer_shutdown_restart(void **state)
{
    sl_ctx *c;
    assert_int_equal(sl_ctx_with_timeout(NULL, SL_SEC(60), &c), 0);
    sl_ctx_release(c);
    assert_true(sl__ctx_timer_running());
    sl__ctx_timer_shutdown();
    assert_false(sl__ctx_timer_running());
    sl__ctx_timer_shutdown(); /* twice is fine */
    assert_int_equal(sl_ctx_with_timeout(NULL, SL_MS(5), &c), 0);
    assert_true(sl__ctx_timer_running());
    assert_int_equal(sl_ctx_wait(c), SL_ETIMEDOUT);
    sl_ctx_release(c);
    sl__ctx_timer_shutdown();
    assert_false(sl__ctx_timer_running());
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_background),
        cmocka_unit_test(test_cancel_twice_first_cause_wins),
        cmocka_unit_test(test_parent_cancels_descendants_never_parent),
        cmocka_unit_test(test_release_without_cancel),
        cmocka_unit_test(test_release_fires_hooks),
        cmocka_unit_test(test_values),
        cmocka_unit_test(test_deadline_past_and_min),
        cmocka_unit_test(test_deadline_test_clock),
        cmocka_unit_test(test_deadline_real_time),
        cmocka_unit_test(test_hook_on_done_ctx_runs_at_once),
        cmocka_unit_test(test_hook_stop_true_false),
        cmocka_unit_test(test_hook_reentrancy),
        cmocka_unit_test(test_hook_releases_own_ctx),
        cmocka_unit_test(test_hook_order_and_subtree_first),
        cmocka_unit_test(test_deep_chain),
        cmocka_unit_test(test_hook_stop_waits_for_running),
        cmocka_unit_test(test_wait_is_woken),
        cmocka_unit_test(test_idle_waiter_uses_no_cpu),
        cmocka_unit_test(test_cond_wait),
        cmocka_unit_test(test_timer_shutdown_restart),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
