/* bench_group: the cost of sl_group go+wait per task (Go's errgroup with SetLimit(8): 280
 * ns/task measured on this machine). 100k tiny tasks per run, median of REPS runs, on the
 * default executor (one worker per CPU). */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "sluice/sluice.h"
#include "sluice/group.h"
#include "sync/group_int.h"

#define BENCH_NAME "group"

enum { REPS = 5, TASKS = 100000 };

static atomic_long g_sum;

static int tiny(sl_ctx *ctx, void *arg)
{
    atomic_fetch_add_explicit(&g_sum, (long)(intptr_t)arg, memory_order_relaxed);
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double run(int limit)
{
    sl_group *g;
    if (sl_group_new(NULL, &g) != 0) return -1;
    sl_group_set_limit(g, limit);
    int64_t t0 = sl_mono_ns();
    for (long i = 0; i < TASKS; i++)
        sl_group_go(g, tiny, (void *)(intptr_t)1);
    sl_group_wait(g);
    int64_t dt = sl_mono_ns() - t0;
    sl_group_free(g);
    return (double)dt / TASKS;
}

static double median_of(int limit)
{
    double v[REPS];
    for (int r = 0; r < REPS; r++)
        v[r] = run(limit);
    qsort(v, REPS, sizeof(*v), cmp_double);
    return v[REPS / 2];
}

static double load1(void)
{
    double l[1] = {0};
    getloadavg(l, 1);
    return l[0];
}

int main(void)
{
    double load_before = load1();
    double l8 = median_of(8);
    double none = median_of(-1);
    if (atomic_load(&g_sum) != (long)TASKS * REPS * 2) {
        fprintf(stderr, "lost tasks\n");
        return 1;
    }
    printf("| group go+wait, limit 8, 100k tiny tasks | %.0f | ns/task | Go errgroup SetLimit(8): "
           "280 ns |\n",
           l8);
    printf("| group go+wait, no limit, 100k tiny tasks | %.0f | ns/task | |\n", none);
    int saved = sl__executor_spins;
    sl__executor_default_shutdown();
    sl__executor_spins = 0;
    printf("| group go+wait, limit 8, workers never spin | %.0f | ns/task | default spin %d |\n",
           median_of(8), saved);
    sl__executor_spins = saved;
    sl__executor_default_shutdown();
    printf("| %s machine load average (before / after) | %.1f / %.1f | | 2 CPUs shared |\n",
           BENCH_NAME, load_before, load1());
    return 0;
}
