/* sl_executor: a fixed set of worker threads running intrusive tasks in FIFO order.
 *
 * It lives in the sync layer (below pool) because sl_group needs somewhere to run tasks. One
 * lock (the spin-then-futex sl__lock of park_int.h: the critical sections are a few pointer
 * moves) guards the FIFO, every owner queue and the stack of parked workers. Tasks are intrusive
 * nodes, so submitting allocates nothing here. An owner queue lets a group take back its own
 * not-yet-started tasks (sl__executor_steal): that is what keeps nested groups from deadlocking
 * when every worker is itself waiting on a group — the waiter runs its own queued tasks instead
 * of sleeping.
 *
 * Wake-ups: a worker with nothing to do spins briefly (adaptive budget, as in chan.c), then
 * pushes its own parking word on the `idle` stack and sleeps on it. A submit pops at most one
 * parked worker and wakes exactly that one (after unlocking), so a burst of submits wakes at most
 * as many workers as are parked, and a busy executor makes no system calls at all.
 *
 * Shutdown: `stopping` is set under the lock and every parked worker is woken; a worker exits
 * only when the FIFO is empty, so tasks queued before the stop still run. The default executor
 * is created on first use and joined by an atexit handler (or sl__executor_default_shutdown). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#include "sluice/error.h"
#include "sync/group_int.h"
#include "sync/park_int.h"

#define THREADS_MAX 1024

int sl__executor_spins = 500;

/* One per worker thread: where it sleeps when idle. */
typedef struct wslot {
    sl__parker pk;      /* parker (park_int.h); WAITING while on the idle stack */
    struct wslot *next; /* idle stack; guarded by the executor's lock */
} wslot;

struct sl_executor {
    sl__lock lock;
    sl__job *head, *tail;  /* FIFO; guarded by lock */
    wslot *idle;           /* parked workers (a stack: the most recently idle is warmest) */
    bool stopping;         /* guarded by lock */
    _Atomic bool nonempty; /* head != NULL, mirrored for lock-free peeking by spinning workers */
    size_t nthreads;       /* immutable after start */
    pthread_t *threads;
    wslot *slots; /* nthreads of them */
};

typedef struct wstart {
    sl_executor *ex;
    wslot *slot;
} wstart;

static void fifo_unlink(sl_executor *ex, sl__job *t)
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
        sl__jobq *q = t->owner;
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

/* Pops one parked worker to wake after unlocking, or NULL. Under the lock. */
static wslot *pop_idle_locked(sl_executor *ex)
{
    wslot *w = ex->idle;
    if (w) ex->idle = w->next;
    return w;
}

static void wake(wslot *w)
{
    if (w) sl__park_finish(&w->pk, SL__DONE);
}

/* Spins up to *budget pauses for work to appear; adapts the budget. Lock not held. */
static void spin_for_work(sl_executor *ex, int *budget)
{
    int max = sl__executor_spins, b = *budget;
    int i = 0;
    while (i < b && !atomic_load_explicit(&ex->nonempty, memory_order_relaxed)) {
        sl__cpu_relax();
        i++;
    }
    b = i < b ? b + (2 * i + 16 - b) / 4 : b / 2;
    if (b > max) b = max;
    if (b < 16 && max >= 16) b = 16;
    *budget = b;
}

static void *worker_main(void *arg)
{
    wstart st = *(wstart *)arg;
    free(arg);
    sl_executor *ex = st.ex;
    int budget = sl__executor_spins; /* adaptive spin before sleeping, in pauses */
    bool spun = false;
    sl__lock_acquire(&ex->lock);
    for (;;) {
        sl__job *t = ex->head;
        if (t) {
            fifo_unlink(ex, t);
            /* More work and a sleeping colleague: pass the wake-up on. */
            wslot *w = ex->head ? pop_idle_locked(ex) : NULL;
            sl__lock_release(&ex->lock);
            wake(w);
            t->run(t);
            spun = false;
            sl__lock_acquire(&ex->lock);
            continue;
        }
        if (ex->stopping) break;
        if (!spun && budget > 0) {
            sl__lock_release(&ex->lock);
            spin_for_work(ex, &budget);
            spun = true;
            sl__lock_acquire(&ex->lock);
            continue;
        }
        sl__parker_init(&st.slot->pk); /* a worker thread: task is NULL */
        st.slot->next = ex->idle;
        ex->idle = st.slot;
        sl__lock_release(&ex->lock);
        sl__park_wait(&st.slot->pk);
        spun = false;
        sl__lock_acquire(&ex->lock);
    }
    sl__lock_release(&ex->lock);
    return NULL;
}

void sl__executor_submit(sl_executor *ex, sl__job *t, sl__jobq *owner)
{
    t->next = NULL;
    t->onext = NULL;
    t->owner = owner;
    sl__lock_acquire(&ex->lock);
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
    wslot *w = pop_idle_locked(ex);
    sl__lock_release(&ex->lock);
    wake(w);
}

sl__job *sl__executor_steal(sl_executor *ex, sl__jobq *owner)
{
    sl__lock_acquire(&ex->lock);
    sl__job *t = owner->head;
    if (t) fifo_unlink(ex, t);
    sl__lock_release(&ex->lock);
    return t;
}

static void stop_and_join(sl_executor *ex, size_t started)
{
    sl__lock_acquire(&ex->lock);
    ex->stopping = true;
    wslot *w = ex->idle;
    ex->idle = NULL;
    sl__lock_release(&ex->lock);
    while (w) {
        wslot *next = w->next; /* read before the wake: the worker may re-park at once */
        wake(w);
        w = next;
    }
    for (size_t i = 0; i < started; i++)
        if (!pthread_equal(ex->threads[i], pthread_self())) pthread_join(ex->threads[i], NULL);
}

static void destroy(sl_executor *ex)
{
    free(ex->slots);
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
    ex->slots = calloc(nthreads, sizeof(*ex->slots));
    if (!ex->threads || !ex->slots) {
        destroy(ex);
        return SL_ENOMEM;
    }
    ex->nthreads = nthreads;
    for (size_t i = 0; i < nthreads; i++) {
        wstart *ws = malloc(sizeof(*ws));
        int rc = ws ? 0 : ENOMEM;
        if (ws) {
            *ws = (wstart){.ex = ex, .slot = &ex->slots[i]};
            rc = pthread_create(&ex->threads[i], NULL, worker_main, ws);
            if (rc != 0) free(ws);
        }
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
