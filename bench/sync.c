/* Costs of the sync primitives: ctx lifecycle, ctx_err, sem and wg fast paths, and the CPU an
 * idle ctx waiter burns. Each row is the median of 5 runs measured side by side in one process
 * (the machine is shared and noisy: compare rows of one run, not runs of different days). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "sluice/sluice.h"
#include "sluice/sem.h"
#include "sluice/wg.h"

#define RUNS 5

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v)
{
    qsort(v, RUNS, sizeof *v, cmp);
    return v[RUNS / 2];
}

static void row(const char *name, double value, const char *unit, const char *note)
{
    printf("| %s | %.1f | %s | %s |\n", name, value, unit, note);
}

static volatile int g_sink;

#define BENCH(name, iters, note, body)                            \
    do {                                                          \
        double v[RUNS];                                           \
        for (int r = 0; r < RUNS; r++) {                          \
            int64_t t0 = sl_mono_ns();                            \
            for (long i = 0; i < (iters); i++) {                  \
                body;                                             \
            }                                                     \
            v[r] = (double)(sl_mono_ns() - t0) / (double)(iters); \
        }                                                         \
        row(name, median(v), "ns/op", note);                      \
    } while (0)

static int64_t thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

struct idle {
    sl_ctx *ctx;
    int64_t cpu_ns;
};
static void *idle_waiter(void *arg)
{
    struct idle *w = arg;
    int64_t c0 = thread_cpu_ns();
    g_sink = sl_ctx_wait(w->ctx);
    w->cpu_ns = thread_cpu_ns() - c0;
    return NULL;
}

static void noop_hook(void *arg, int err) {}

/* Per-request pattern: every thread derives and drops children of one shared root. */
struct churn {
    sl_ctx *root;
    long iters;
};
static void *churn_main(void *arg)
{
    struct churn *c = arg;
    for (long i = 0; i < c->iters; i++) {
        sl_ctx *x;
        sl_ctx_with_cancel(c->root, &x);
        sl_ctx_release(x);
    }
    return NULL;
}
static void contended(sl_ctx *root)
{
    enum { THREADS = 2, ITERS = 200000 };
    double v[RUNS];
    for (int r = 0; r < RUNS; r++) {
        pthread_t t[THREADS];
        struct churn c = {root, ITERS};
        int64_t t0 = sl_mono_ns();
        for (int i = 0; i < THREADS; i++)
            pthread_create(&t[i], NULL, churn_main, &c);
        for (int i = 0; i < THREADS; i++)
            pthread_join(t[i], NULL);
        v[r] = (double)(sl_mono_ns() - t0) / (double)(THREADS * ITERS);
    }
    row("sync: ctx with_cancel+release, 2 threads, shared parent", median(v), "ns/op",
        "wall time / total ops (throughput)");
}

int main(void)
{
    sl_ctx *root;
    if (sl_ctx_with_cancel(NULL, &root) < 0) return 1;

    BENCH("sync: ctx with_cancel+cancel+release", 200000, "child of a live root, 1 thread", {
        sl_ctx *c;
        sl_ctx_with_cancel(root, &c);
        sl_ctx_cancel(c);
        sl_ctx_release(c);
    });
    BENCH("sync: ctx with_timeout+release", 200000, "arms + disarms the timer heap, 1 thread", {
        sl_ctx *c;
        sl_ctx_with_timeout(root, SL_SEC(30), &c);
        sl_ctx_release(c);
    });
    contended(root);
    sl_ctx *leaf;
    sl_ctx_with_cancel(root, &leaf);
    BENCH("sync: ctx on_done+hook_stop", 1000000, "live ctx, hook never runs, 1 thread", {
        sl_ctx_hook *h;
        sl_ctx_on_done(leaf, noop_hook, NULL, &h);
        sl_ctx_hook_stop(h);
    });
    BENCH("sync: sl_ctx_err", 20000000, "one acquire load", { g_sink += sl_ctx_err(leaf); });
    sl_ctx_release(leaf);

    sl_sem *sem;
    if (sl_sem_new(4, &sem) < 0) return 1;
    BENCH("sync: sem acquire+release uncontended", 2000000, "n=1, NULL ctx, 1 thread", {
        sl_sem_acquire(sem, 1, NULL);
        sl_sem_release(sem, 1);
    });
    sl_sem_free(sem);

    sl_wg wg;
    if (sl_wg_init(&wg) < 0) return 1;
    BENCH("sync: wg add+done", 5000000, "no waiter, 1 thread", {
        sl_wg_add(&wg, 1);
        sl_wg_done(&wg);
    });
    sl_wg_destroy(&wg);

    /* A thread blocked in sl_ctx_wait for 1 s of real time: its own CPU time. */
    struct idle w = {.cpu_ns = -1};
    if (sl_ctx_with_timeout(NULL, SL_SEC(1), &w.ctx) < 0) return 1;
    pthread_t t;
    if (pthread_create(&t, NULL, idle_waiter, &w) != 0) return 1;
    pthread_join(t, NULL);
    printf("| sync: idle waiter CPU | %.3f | ms CPU | thread in sl_ctx_wait for 1 s |\n",
           (double)w.cpu_ns / 1e6);
    sl_ctx_release(w.ctx);
    sl_ctx_release(root);
    return 0;
}
