/* sl_rpool: the cost of an uncontended acquire + release (the bar: <= 100 ns), with no
 * time limits and with every limit that reads the clock, and under contention (2 threads, 1
 * slot: hand-over through a waiter). Rows are medians of 5 runs in one process. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "sluice/sluice.h"

#define RUNS  5
#define ITERS 2000000L

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int r_open(void *arg, sl_ctx *ctx, void **out)
{
    static int token;
    *out = &token;
    return 0;
}
static void r_close(void *arg, void *res) {}
static int r_check(void *arg, void *res, sl_ctx *ctx)
{
    return 0;
}

static double run(sl_rpool *p, long iters)
{
    int64_t t0 = sl_mono_ns();
    for (long i = 0; i < iters; i++) {
        sl_rpool_item *it;
        if (sl_rpool_acquire(p, NULL, &it) < 0) abort();
        sl_rpool_release(it);
    }
    return (double)(sl_mono_ns() - t0) / (double)iters;
}

static void *contend(void *arg)
{
    run(arg, ITERS / 20);
    return NULL;
}

static void bench(const char *name, sl_rpool_opts o, int threads)
{
    sl_rpool *p;
    if (sl_rpool_new(&o, &p) < 0) abort();
    double v[RUNS];
    for (int r = 0; r < RUNS; r++) {
        if (threads == 1) {
            v[r] = run(p, ITERS);
            continue;
        }
        pthread_t t;
        int64_t t0 = sl_mono_ns();
        pthread_create(&t, NULL, contend, p);
        run(p, ITERS / 20);
        pthread_join(t, NULL);
        v[r] = (double)(sl_mono_ns() - t0) / (double)(ITERS / 10);
    }
    qsort(v, RUNS, sizeof *v, cmp);
    printf("| %s | %.1f | ns/op | acquire+release |\n", name, v[RUNS / 2]);
    sl_rpool_free(p);
}

int main(void)
{
    sl_rpool_ops ops = {r_open, r_close, NULL};
    bench("rpool uncontended", (sl_rpool_opts){.ops = ops, .max_open = 8}, 1);
    ops.check = r_check;
    bench("rpool uncontended, lifetime+idle time+check",
          (sl_rpool_opts){.ops = ops,
                          .max_open = 8,
                          .max_lifetime_ns = SL_SEC(3600),
                          .max_idle_time_ns = SL_SEC(60),
                          .check_after_ns = SL_SEC(1)},
          1);
    bench("rpool 2 threads, 1 slot", (sl_rpool_opts){.ops = {r_open, r_close, NULL}, .max_open = 1},
          2);
    return 0;
}
