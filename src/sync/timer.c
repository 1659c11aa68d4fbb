/* The process-wide deadline timer: one thread, one min-heap of contexts ordered by deadline.
 *
 * Problem: a ctx's deadline must fire (cancel it, run its hooks) without anyone polling, and on
 * test time when the test clock is installed. One thread serves every deadline in the process:
 * it parks on a CLOCK_MONOTONIC condvar until the earliest deadline, is woken early when an
 * earlier deadline is armed (only then: arming a later one or disarming costs no wakeup) or when
 * the test clock moves (sl__clock_set_advance_hook), and
 * compares deadlines with sl_now_ns(), so test time drives it. While the test clock is
 * installed it waits without a timeout: real time says nothing about test time, and every
 * test-clock move wakes it.
 *
 * Invariants: an armed ctx is in the heap with heap_idx set and holds one memory reference
 * owned by the heap (so its memory outlives a concurrent last release). Everything here is
 * guarded by g.mu, which is never held while a ctx lock is taken or a ctx is cancelled: the
 * thread pops the due ctx, unlocks, then cancels it (hooks run on this thread).
 * Arming checks sl_ctx_err under g.mu and the canceller disarms after setting err, so a ctx
 * cancelled while being armed is never left in the heap.
 *
 * Lifetime: started lazily by the first arm, with every signal blocked (signals belong to the
 * application's threads and to sl_signal_ctx), stopped and joined by an atexit handler (so
 * LSan/TSan see no stray thread) or by sl__ctx_timer_shutdown (tests). Armed deadlines survive
 * a shutdown: a later arm restarts the thread, which serves them. */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <time.h>

#include "base/base_int.h"
#include "sluice/clock.h"
#include "sluice/error.h"
#include "sync/ctx_int.h"

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv; /* CLOCK_MONOTONIC; the thread parks here */
    int cv_err;        /* init result of cv */
    sl_ctx **heap;     /* min-heap on deadline */
    size_t len, cap;
    pthread_t thread;
    int64_t sleep_until; /* what the parked thread waits for: SL_FOREVER if untimed, INT64_MIN
                            while it is awake (it re-reads the heap before parking again) */
    bool running;        /* thread started and not yet joined */
    bool stop;           /* asks the thread to exit */
    bool exiting;        /* atexit ran: do not restart */
    bool atexit_registered;
} g = {.mu = PTHREAD_MUTEX_INITIALIZER, .sleep_until = INT64_MIN};

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t g_join_mu = PTHREAD_MUTEX_INITIALIZER; /* serializes shutdowns */

static void init_once(void)
{
    g.cv_err = sl__cond_init_mono(&g.cv);
}

/* ---- heap, guarded by g.mu -------------------------------------------------------------- */

static void heap_set(size_t i, sl_ctx *c)
{
    g.heap[i] = c;
    c->heap_idx = (int)i;
}

static void sift_up(size_t i)
{
    sl_ctx *c = g.heap[i];
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (g.heap[p]->deadline <= c->deadline) break;
        heap_set(i, g.heap[p]);
        i = p;
    }
    heap_set(i, c);
}

static void sift_down(size_t i)
{
    sl_ctx *c = g.heap[i];
    for (;;) {
        size_t l = 2 * i + 1, m = i;
        int64_t best = c->deadline;
        if (l < g.len && g.heap[l]->deadline < best) m = l, best = g.heap[l]->deadline;
        if (l + 1 < g.len && g.heap[l + 1]->deadline < best) m = l + 1;
        if (m == i) break;
        heap_set(i, g.heap[m]);
        i = m;
    }
    heap_set(i, c);
}

static void heap_remove_at(size_t i)
{
    sl_ctx *gone = g.heap[i];
    gone->heap_idx = -1;
    sl_ctx *last = g.heap[--g.len];
    if (i == g.len) return;
    heap_set(i, last);
    if (i > 0 && g.heap[(i - 1) / 2]->deadline > last->deadline)
        sift_up(i);
    else
        sift_down(i);
}

/* ---- the thread ------------------------------------------------------------------------- */

static void kick(void)
{
    pthread_mutex_lock(&g.mu);
    pthread_cond_broadcast(&g.cv);
    pthread_mutex_unlock(&g.mu);
}

static void *timer_main(void *unused)
{
    pthread_mutex_lock(&g.mu);
    while (!g.stop) {
        g.sleep_until = INT64_MIN;
        if (g.len == 0) {
            g.sleep_until = SL_FOREVER;
            pthread_cond_wait(&g.cv, &g.mu);
            continue;
        }
        sl_ctx *top = g.heap[0];
        if (top->deadline <= sl_now_ns()) {
            heap_remove_at(0);
            pthread_mutex_unlock(&g.mu);
            sl__ctx_cancel_cause(top, SL_ETIMEDOUT);
            sl__ctx_munref(top); /* the heap's reference */
            pthread_mutex_lock(&g.mu);
            continue;
        }
        g.sleep_until = top->deadline;
        if (sl_test_clock_installed()) {
            pthread_cond_wait(&g.cv, &g.mu);
        } else {
            struct timespec ts;
            sl__abs_timespec(top->deadline, &ts);
            pthread_cond_timedwait(&g.cv, &g.mu, &ts);
        }
    }
    pthread_mutex_unlock(&g.mu);
    return NULL;
}

static void at_exit(void)
{
    pthread_mutex_lock(&g.mu);
    g.exiting = true;
    pthread_mutex_unlock(&g.mu);
    sl__ctx_timer_shutdown();
}

/* Starts the thread; g.mu held. Returns 0 or a negative code. */
static int start_locked(void)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&g.thread, NULL, timer_main, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc) return rc == ENOMEM ? SL_ENOMEM : -rc;
    g.running = true;
    g.stop = false;
    sl__clock_set_advance_hook(kick);
    if (!g.atexit_registered) g.atexit_registered = atexit(at_exit) == 0;
    return 0;
}

int sl__ctx_timer_add(sl_ctx *c)
{
    pthread_once(&g_once, init_once);
    if (g.cv_err < 0) return g.cv_err;
    pthread_mutex_lock(&g.mu);
    int rc = 0;
    if (sl_ctx_err(c) != 0) goto out;
    if (g.len == g.cap) {
        size_t cap = g.cap ? g.cap * 2 : 64;
        sl_ctx **h = realloc(g.heap, cap * sizeof *h);
        if (!h) {
            rc = SL_ENOMEM;
            goto out;
        }
        g.heap = h;
        g.cap = cap;
    }
    if (!g.running && (rc = start_locked()) < 0) goto out;
    sl__ctx_mref(c);
    g.heap[g.len] = c;
    sift_up(g.len++);
    /* Wake the thread only if it sleeps past this deadline: a disarmed earlier deadline leaves
     * it sleeping until a time that is now too early, which costs one harmless re-check, while
     * waking it on every arm would cost a context switch per ctx. */
    if (c->deadline < g.sleep_until) {
        g.sleep_until = INT64_MIN;
        pthread_cond_broadcast(&g.cv);
    }
out:
    pthread_mutex_unlock(&g.mu);
    return rc;
}

void sl__ctx_timer_remove(sl_ctx *c)
{
    pthread_mutex_lock(&g.mu);
    bool armed = c->heap_idx >= 0;
    if (armed) heap_remove_at((size_t)c->heap_idx);
    pthread_mutex_unlock(&g.mu);
    if (armed) sl__ctx_munref(c);
}

void sl__ctx_timer_shutdown(void)
{
    pthread_mutex_lock(&g_join_mu);
    pthread_mutex_lock(&g.mu);
    /* Not running, or called on the timer thread itself (from a hook, or exit() in a hook
     * running the atexit handler): joining would deadlock. */
    if (!g.running || pthread_equal(g.thread, pthread_self())) goto out;
    g.stop = true;
    pthread_cond_broadcast(&g.cv);
    pthread_mutex_unlock(&g.mu);
    pthread_join(g.thread, NULL);
    pthread_mutex_lock(&g.mu);
    g.running = false;
    g.stop = false;
    if (g.len > 0 && !g.exiting) {
        start_locked(); /* armed deadlines must still fire; on failure the next arm retries */
    } else if (g.len == 0) {
        free(g.heap);
        g.heap = NULL;
        g.cap = 0;
    }
out:
    pthread_mutex_unlock(&g.mu);
    pthread_mutex_unlock(&g_join_mu);
}

bool sl__ctx_timer_running(void)
{
    pthread_mutex_lock(&g.mu);
    bool r = g.running;
    pthread_mutex_unlock(&g.mu);
    return r;
}
