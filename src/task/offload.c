/* sl_offload: a foreign blocking call runs on a small thread pool while its task parks.
 *
 * The job lives on the calling task's stack and is queued (mutex + condvar; the pool has a
 * fixed number of threads, the queue holds at most one job per parked caller). States:
 * QUEUED → RUNNING → DONE, or QUEUED → CANCELLED when the caller's ctx fires first (the
 * caller removes it from the queue itself, under the lock). The worker marks DONE and unparks
 * the task while holding the pool lock, and the task confirms DONE under that lock before it
 * returns: so the worker never touches the job (or the task) after the task may have moved on.
 * A ctx on-done hook unparks the task so it can cancel a job that has not started.
 *
 * On a plain thread there is nothing to keep free: fn runs on the caller's thread. */
#include <stdlib.h>

#include "sluice/error.h"
#include "task/task_int.h"

enum { J_QUEUED, J_RUNNING, J_DONE, J_CANCELLED };

typedef struct job {
    struct job *next; /* guarded by the pool's mu */
    sl_offload_fn fn;
    void *arg;
    _Atomic int state;
    struct sl_task *task;
} job;

struct sl__offload {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    job *head, *tail; /* guarded by mu */
    bool stop;        /* guarded by mu */
    int n;
    pthread_t *thr;
};

static void *worker(void *arg)
{
    struct sl__offload *p = arg;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->head && !p->stop)
            pthread_cond_wait(&p->cv, &p->mu);
        if (p->stop) break;
        job *j = p->head;
        p->head = j->next;
        if (!p->head) p->tail = NULL;
        atomic_store_explicit(&j->state, J_RUNNING, memory_order_relaxed);
        pthread_mutex_unlock(&p->mu);
        j->fn(j->arg);
        pthread_mutex_lock(&p->mu);
        atomic_store_explicit(&j->state, J_DONE, memory_order_release);
        sl__task_unpark(j->task);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

int sl__offload_start(sl_runtime *rt, int threads)
{
    struct sl__offload *p = calloc(1, sizeof *p);
    if (!p) return SL_ENOMEM;
    p->thr = calloc((size_t)threads, sizeof *p->thr);
    if (!p->thr) {
        free(p);
        return SL_ENOMEM;
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    int rc = 0;
    for (; p->n < threads; p->n++) {
        int e = pthread_create(&p->thr[p->n], NULL, worker, p);
        if (e) {
            rc = -e;
            break;
        }
    }
    rt->off = p;
    if (rc < 0) sl__offload_stop(rt);
    return rc;
}

void sl__offload_stop(sl_runtime *rt)
{
    struct sl__offload *p = rt->off;
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->stop = true;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->n; i++)
        pthread_join(p->thr[i], NULL);
    /* Jobs still queued belong to tasks that shutdown abandons: nothing to run. */
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    free(p->thr);
    free(p);
    rt->off = NULL;
}

static void wake_task(void *arg, int err)
{
    (void)err;
    sl__task_unpark(arg);
}

int sl_offload(sl_offload_fn fn, void *arg, sl_ctx *ctx)
{
    if (!fn) return SL_EINVAL;
    int err = sl_ctx_err(ctx);
    if (err) return err;
    struct sl_task *t = sl__task_self();
    if (!t) {
        fn(arg);
        return 0;
    }
    struct sl__offload *p = t->rt->off;
    job j = {.fn = fn, .arg = arg, .task = t};
    atomic_init(&j.state, J_QUEUED);
    sl_ctx_hook *hook = NULL;
    int rc = sl_ctx_on_done(ctx, wake_task, t, &hook);
    if (rc < 0) return rc;
    pthread_mutex_lock(&p->mu);
    if (p->stop) {
        pthread_mutex_unlock(&p->mu);
        sl_ctx_hook_stop(hook);
        return SL_ECLOSED;
    }
    if (p->tail)
        p->tail->next = &j;
    else
        p->head = &j;
    p->tail = &j;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);

    rc = 0;
    for (;;) {
        int st = atomic_load_explicit(&j.state, memory_order_acquire);
        if (st == J_DONE) {
            pthread_mutex_lock(&p->mu); /* the worker has finished its unpark */
            pthread_mutex_unlock(&p->mu);
            break;
        }
        if (st == J_QUEUED && (err = sl_ctx_err(ctx)) != 0) {
            pthread_mutex_lock(&p->mu);
            if (atomic_load_explicit(&j.state, memory_order_relaxed) == J_QUEUED) {
                job **pp = &p->head;
                job *prev = NULL;
                while (*pp != &j) {
                    prev = *pp;
                    pp = &(*pp)->next;
                }
                *pp = j.next;
                if (p->tail == &j) p->tail = prev;
                atomic_store_explicit(&j.state, J_CANCELLED, memory_order_relaxed);
                rc = err;
            }
            pthread_mutex_unlock(&p->mu);
            if (rc) break;
            continue;
        }
        sl__task_park();
    }
    sl_ctx_hook_stop(hook);
    return rc;
}
