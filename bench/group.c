/* bench_group: the cost of sl_group go+wait per task (Go's errgroup with SetLimit(8): 280
 * ns/task measured on this machine). 100k tiny tasks per run, median of REPS runs, on the
 * default executor (one worker per CPU). */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

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

static double g_cpu[REPS]; /* process CPU ns/task of each run, all threads */

static double cpu_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

static double run(int limit, int rep)
{
    sl_group *g;
    if (sl_group_new(NULL, &g) != 0) return -1;
    sl_group_set_limit(g, limit);
    double c0 = cpu_ns();
    int64_t t0 = sl_mono_ns();
    for (long i = 0; i < TASKS; i++)
        sl_group_go(g, tiny, (void *)(intptr_t)1);
    sl_group_wait(g);
    int64_t dt = sl_mono_ns() - t0;
    g_cpu[rep] = (cpu_ns() - c0) / TASKS;
    sl_group_free(g);
    return (double)dt / TASKS;
}

/* Median wall ns/task; *cpu gets the median CPU ns/task (all threads, spinning included). */
static double median_of(int limit, double *cpu)
{
    double v[REPS];
    for (int r = 0; r < REPS; r++)
        v[r] = run(limit, r);
    qsort(v, REPS, sizeof(*v), cmp_double);
    qsort(g_cpu, REPS, sizeof(*g_cpu), cmp_double);
    *cpu = g_cpu[REPS / 2];
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
    double c8, cnone, cnospin;
    double l8 = median_of(8, &c8);
    double none = median_of(-1, &cnone);
    if (atomic_load(&g_sum) != (long)TASKS * REPS * 2) {
        fprintf(stderr, "lost tasks\n");
        return 1;
    }
    printf("| group go+wait, limit 8, 100k tiny tasks | %.0f | ns/task | Go errgroup SetLimit(8): "
           "280 ns; CPU %.0f ns/task |\n",
           l8, c8);
    printf("| group go+wait, no limit, 100k tiny tasks | %.0f | ns/task | CPU %.0f ns/task |\n",
           none, cnone);
    int saved = sl__executor_spins;
    sl__executor_default_shutdown();
    sl__executor_spins = 0;
    double nospin = median_of(8, &cnospin);
    printf("| group go+wait, limit 8, workers never spin | %.0f | ns/task | CPU %.0f ns/task; "
           "default max spin %d |\n",
           nospin, cnospin, saved);
    sl__executor_spins = saved;
    sl__executor_default_shutdown();
    printf("| %s machine load average (before / after) | %.1f / %.1f | | 2 CPUs shared |\n",
           BENCH_NAME, load_before, load1());
    return 0;
}
