/* sl_executor: a fixed set of worker threads running intrusive tasks in FIFO order.
 *
 * It lives in the sync layer (below pool) because sl_group needs somewhere to run tasks. One
 * mutex guards the FIFO and every owner queue; tasks are intrusive nodes, so submitting
 * allocates nothing here. An owner queue lets a group take back its own not-yet-started tasks
 * (sl__executor_steal): that is what keeps nested groups from deadlocking when every worker is
 * itself waiting on a group — the waiter runs its own queued tasks instead of sleeping.
 *
 * Wake-ups: a worker with nothing to do sleeps on the condvar and counts itself in `idle`.
 * A submit signals only when more workers sleep than wake-ups are already in flight (`wakes`),
 * so a burst of submits costs one futex wake, and a woken worker that finds more work passes the
 * wake-up on (chain wake), as Go's scheduler does with spinning Ms. A busy executor makes no
 * system calls at all.
 *
 * Shutdown: `stopping` is set under the lock and every worker is woken; a worker exits only when
 * the FIFO is empty, so tasks queued before the stop still run. The default executor is created
 * on first use and joined by an atexit handler (or by sl__executor_default_shutdown). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#include "sluice/error.h"
#include "sync/group_int.h"
#include "sync/park_int.h"

#define THREADS_MAX 1024

int sl__executor_spins = 500;

struct sl_executor {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    sl__task *head, *tail; /* FIFO; guarded by mu */
    _Atomic bool nonempty; /* head != NULL, mirrored for lock-free peeking by spinning workers */
    int idle;              /* workers asleep on cv; guarded by mu */
    int wakes;             /* signals sent, not yet consumed by a worker; guarded by mu */
    bool stopping;         /* guarded by mu */
    size_t nthreads;       /* immutable after start */
    pthread_t *threads;
};

static void fifo_unlink(sl_executor *ex, sl__task *t)
{
    if (t->prev)
        t->prev->next = t->next;
    else
        ex->head = t->next;
    if (t->next)
        t->next->prev = t->prev;
    else
        ex->tail = t->prev;
    if (t->owner) {
        sl__taskq *q = t->owner;
        if (t->oprev)
            t->oprev->onext = t->onext;
        else
            q->head = t->onext;
        if (t->onext)
            t->onext->oprev = t->oprev;
        else
            q->tail = t->oprev;
    }
    if (!ex->head) atomic_store_explicit(&ex->nonempty, false, memory_order_relaxed);
}

/* Signals one sleeping worker unless enough wake-ups are already on their way. Under mu. */
static void wake_one_locked(sl_executor *ex)
{
    if (ex->idle > ex->wakes) {
        ex->wakes++;
        pthread_cond_signal(&ex->cv);
    }
}

static void *worker_main(void *arg)
{
    sl_executor *ex = arg;
    int budget = sl__executor_spins; /* adaptive spin before sleeping, in pauses */
    pthread_mutex_lock(&ex->mu);
    for (;;) {
        if (!ex->head && !ex->stopping && budget > 0) {
            /* Bursts of tiny tasks: a short spin catches the next submit without a sleep and
             * a wake-up system call on both sides. The budget adapts as in chan.c: it shrinks
             * when spinning fails (an oversubscribed machine, or real idleness). */
            pthread_mutex_unlock(&ex->mu);
            int i = 0;
            while (i < budget && !atomic_load_explicit(&ex->nonempty, memory_order_relaxed)) {
                sl__cpu_relax();
                i++;
            }
            if (i < budget)
                budget += (2 * i + 16 - budget) / 4;
            else
                budget /= 2;
            if (budget > sl__executor_spins) budget = sl__executor_spins;
            if (budget < 16 && sl__executor_spins >= 16) budget = 16;
            pthread_mutex_lock(&ex->mu);
        }
        while (!ex->head && !ex->stopping) {
            ex->idle++;
            pthread_cond_wait(&ex->cv, &ex->mu);
            ex->idle--;
            if (ex->wakes > 0) ex->wakes--;
        }
        sl__task *t = ex->head;
        if (!t) break; /* stopping and drained */
        fifo_unlink(ex, t);
        if (ex->head) wake_one_locked(ex);
        pthread_mutex_unlock(&ex->mu);
        t->run(t);
        pthread_mutex_lock(&ex->mu);
    }
    pthread_mutex_unlock(&ex->mu);
    return NULL;
}

void sl__executor_submit(sl_executor *ex, sl__task *t, sl__taskq *owner)
{
    t->next = NULL;
    t->onext = NULL;
    t->owner = owner;
    pthread_mutex_lock(&ex->mu);
    t->prev = ex->tail;
    if (ex->tail)
        ex->tail->next = t;
    else
        ex->head = t;
    ex->tail = t;
    atomic_store_explicit(&ex->nonempty, true, memory_order_relaxed);
    if (owner) {
        t->oprev = owner->tail;
        if (owner->tail)
            owner->tail->onext = t;
        else
            owner->head = t;
        owner->tail = t;
    }
    wake_one_locked(ex);
    pthread_mutex_unlock(&ex->mu);
}

sl__task *sl__executor_steal(sl_executor *ex, sl__taskq *owner)
{
    pthread_mutex_lock(&ex->mu);
    sl__task *t = owner->head;
    if (t) fifo_unlink(ex, t);
    pthread_mutex_unlock(&ex->mu);
    return t;
}

static void stop_and_join(sl_executor *ex, size_t started)
{
    pthread_mutex_lock(&ex->mu);
    ex->stopping = true;
    pthread_cond_broadcast(&ex->cv);
    pthread_mutex_unlock(&ex->mu);
    for (size_t i = 0; i < started; i++)
        if (!pthread_equal(ex->threads[i], pthread_self())) pthread_join(ex->threads[i], NULL);
}

static void destroy(sl_executor *ex)
{
    pthread_cond_destroy(&ex->cv);
    pthread_mutex_destroy(&ex->mu);
    free(ex->threads);
    free(ex);
}

int sl_executor_new(size_t nthreads, sl_executor **out)
{
    if (!out || nthreads > THREADS_MAX) return SL_EINVAL;
    if (nthreads == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        nthreads = n > 0 ? (size_t)n : 1;
        if (nthreads > THREADS_MAX) nthreads = THREADS_MAX;
    }
    sl_executor *ex = calloc(1, sizeof(*ex));
    if (!ex) return SL_ENOMEM;
    ex->threads = calloc(nthreads, sizeof(*ex->threads));
    if (!ex->threads) {
        free(ex);
        return SL_ENOMEM;
    }
    sl__mutex_init_adaptive(&ex->mu);
    pthread_cond_init(&ex->cv, NULL);
    ex->nthreads = nthreads;
    for (size_t i = 0; i < nthreads; i++) {
        int rc = pthread_create(&ex->threads[i], NULL, worker_main, ex);
        if (rc != 0) {
            stop_and_join(ex, i);
            destroy(ex);
            return rc == ENOMEM ? SL_ENOMEM : SL_EAGAIN;
        }
    }
    *out = ex;
    return 0;
}

void sl_executor_free(sl_executor *ex)
{
    if (!ex) return;
    stop_and_join(ex, ex->nthreads);
    destroy(ex);
}

size_t sl_executor_threads(const sl_executor *ex)
{
    return ex ? ex->nthreads : 0;
}

/* ---- the process-wide default ------------------------------------------------------------ */

static pthread_mutex_t g_default_mu = PTHREAD_MUTEX_INITIALIZER;
static sl_executor *g_default; /* guarded by g_default_mu */
static bool g_atexit_done;     /* guarded by g_default_mu */

static void default_at_exit(void)
{
    sl__executor_default_shutdown();
}

int sl__executor_default(sl_executor **out)
{
    int rc = 0;
    pthread_mutex_lock(&g_default_mu);
    if (!g_default) {
        if (!g_atexit_done) {
            if (atexit(default_at_exit) != 0) {
                pthread_mutex_unlock(&g_default_mu);
                return SL_ENOMEM;
            }
            g_atexit_done = true;
        }
        rc = sl_executor_new(0, &g_default);
    }
    *out = g_default;
    pthread_mutex_unlock(&g_default_mu);
    return rc;
}

void sl__executor_default_shutdown(void)
{
    pthread_mutex_lock(&g_default_mu);
    sl_executor *ex = g_default;
    g_default = NULL;
    pthread_mutex_unlock(&g_default_mu);
    sl_executor_free(ex);
}

bool sl__executor_default_running(void)
{
    pthread_mutex_lock(&g_default_mu);
    bool on = g_default != NULL;
    pthread_mutex_unlock(&g_default_mu);
    return on;
}
