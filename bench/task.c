/* bench_task: what a task costs (issue #15's targets, beside Go's figures from
 * scripts/bench_task_go.sh, measured in the same run).
 *
 * Rows (best of REPS runs where a row is cheap enough to repeat):
 *   context switch: the raw register switch (sl__cpu_switch) between two contexts, one way;
 *   spawn+exit+wg: a task spawns batches of 1000 children that count down a wait counter and
 *     exit; the spawner parks until the last one wakes it (what sl_wg does on a task);
 *   parked task RSS: 100k tasks parked at once, RSS growth / 100k (and the pages a shallow
 *     task touches);
 *   wake: unpark those 100k from one task, until all have run and exited, per task;
 *   ping-pong on one loop / across loops: two tasks hand a turn back and forth with
 *     park/unpark (what an unbuffered channel does once it parks tasks), per message.
 * Env BENCH_TASK_N scales the iteration counts (default 1). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sluice/sluice.h"
#include "task/task_int.h"

enum { REPS = 5 };

static double g_scale = 1.0;

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Best of n: the machine these run on is shared, and interference only ever adds time. */
static double best(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(*v), cmp_double);
    return v[0];
}

static long scaled(long n)
{
    long v = (long)((double)n * g_scale);
    return v < 1 ? 1 : v;
}

static void row(const char *name, double v, const char *unit, const char *note)
{
    printf("| task: %s | %.1f | %s | %s |\n", name, v, unit, note);
    fflush(stdout);
}

static int64_t thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* ---- raw switch ------------------------------------------------------------------------- */

static sl__cpu g_main, g_other;
static long g_n;

static void other_entry(void *arg)
{
    (void)arg;
    for (;;)
        sl__cpu_switch(&g_other, &g_main);
}

static double raw_switch(void)
{
    static char stack[64 * 1024] __attribute__((aligned(16)));
    sl__cpu_make(&g_other, stack, stack + sizeof stack, other_entry, NULL);
    g_n = scaled(10000000);
    /* CPU time of this thread: a pure CPU loop, so time spent descheduled on a busy machine
     * is not the switch's. */
    int64_t t0 = thread_cpu_ns();
    for (long i = 0; i < g_n; i++)
        sl__cpu_switch(&g_main, &g_other);
    int64_t dt = thread_cpu_ns() - t0;
    return (double)dt / (double)(2 * g_n); /* two switches per round trip */
}

/* ---- helpers ---------------------------------------------------------------------------- */

typedef struct run {
    void (*fn)(struct run *);
    double result;
    _Atomic int done;
    long n;
    int loop_b;
} run;

static void run_entry(void *arg)
{
    run *r = arg;
    r->fn(r);
    atomic_store_explicit(&r->done, 1, memory_order_release);
}

/* Runs r->fn in a task on loop 1 and waits for it (a plain-thread wait on an fd-free flag:
 * the bench polls with sched_yield, it is not part of the measurement). */
static double in_task(sl_runtime *rt, run *r)
{
    atomic_store(&r->done, 0);
    sl_go_with(&(sl_go_opts){.rt = rt, .loop = 1, .name = "bench"}, run_entry, r);
    while (!atomic_load_explicit(&r->done, memory_order_acquire))
        sched_yield();
    return r->result;
}

/* ---- spawn + exit + wg ------------------------------------------------------------------ */

typedef struct counter {
    _Atomic long left;
    struct sl_task *waiter;
} counter;

static void child_done(void *arg)
{
    counter *c = arg;
    if (atomic_fetch_sub_explicit(&c->left, 1, memory_order_acq_rel) == 1)
        sl__task_unpark(c->waiter);
}

static void spawn_body(run *r)
{
    enum { BATCH = 1000 };
    long batches = r->n / BATCH;
    counter c = {.waiter = sl__task_self()};
    int64_t t0 = sl_mono_ns();
    for (long b = 0; b < batches; b++) {
        atomic_store_explicit(&c.left, BATCH, memory_order_relaxed);
        for (int i = 0; i < BATCH; i++)
            sl_go(child_done, &c);
        while (atomic_load_explicit(&c.left, memory_order_acquire) > 0)
            sl__task_park();
    }
    r->result = (double)(sl_mono_ns() - t0) / (double)(batches * BATCH);
}

/* ---- parked RSS + wake ------------------------------------------------------------------ */

static long rss_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[256];
    long kb = -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0) kb = strtol(line + 6, NULL, 10);
    fclose(f);
    return kb;
}

enum { PARKED = 100000 };

typedef struct herd {
    struct sl_task **tasks;
    _Atomic long arrived;
    _Atomic long left;
    _Atomic int go;
    struct sl_task *waiter;
} herd;

static herd g_herd;

static void sheep(void *arg)
{
    long i = (long)(intptr_t)arg;
    g_herd.tasks[i] = sl__task_self();
    atomic_fetch_add_explicit(&g_herd.arrived, 1, memory_order_release);
    while (!atomic_load_explicit(&g_herd.go, memory_order_acquire))
        sl__task_park();
    if (atomic_fetch_sub_explicit(&g_herd.left, 1, memory_order_acq_rel) == 1)
        sl__task_unpark(g_herd.waiter);
}

static double g_rss_per_task, g_wake_ns;

static void herd_body(run *r)
{
    (void)r;
    g_herd.tasks = calloc(PARKED, sizeof *g_herd.tasks);
    atomic_store(&g_herd.left, PARKED);
    g_herd.waiter = sl__task_self();
    long before = rss_kb();
    for (long i = 0; i < PARKED; i++)
        sl_go_with(&(sl_go_opts){.loop = 1 + (int)(i & 1), .name = "sheep"}, sheep,
                   (void *)(intptr_t)i);
    while (atomic_load_explicit(&g_herd.arrived, memory_order_acquire) < PARKED)
        sl_task_yield();
    long after = rss_kb();
    g_rss_per_task = (double)(after - before) * 1024.0 / PARKED;
    int64_t t0 = sl_mono_ns();
    atomic_store_explicit(&g_herd.go, 1, memory_order_release);
    for (long i = 0; i < PARKED; i++)
        sl__task_unpark(g_herd.tasks[i]);
    while (atomic_load_explicit(&g_herd.left, memory_order_acquire) > 0)
        sl__task_park();
    g_wake_ns = (double)(sl_mono_ns() - t0) / PARKED;
    free(g_herd.tasks);
}

/* ---- ping-pong ---------------------------------------------------------------------------- */

typedef struct pp {
    struct sl_task *_Atomic peer[2];
    _Atomic int turn;
    long n;
    _Atomic int finished;
    struct sl_task *waiter;
} pp;

typedef struct pp_side {
    pp *p;
    int me;
} pp_side;

static void pp_task(void *arg)
{
    pp_side *s = arg;
    pp *p = s->p;
    atomic_store(&p->peer[s->me], sl__task_self());
    while (!atomic_load(&p->peer[!s->me]))
        sl_task_yield();
    for (long i = 0; i < p->n; i++) {
        while (atomic_load_explicit(&p->turn, memory_order_acquire) != s->me)
            sl__task_park();
        atomic_store_explicit(&p->turn, !s->me, memory_order_release);
        sl__task_unpark(atomic_load_explicit(&p->peer[!s->me], memory_order_relaxed));
    }
    if (atomic_fetch_add(&p->finished, 1) == 1) sl__task_unpark(p->waiter);
}

static void pp_body(run *r)
{
    pp p = {.n = r->n, .waiter = sl__task_self()};
    pp_side a = {&p, 0}, b = {&p, 1};
    int64_t t0 = sl_mono_ns();
    sl_go_with(&(sl_go_opts){.loop = 1, .name = "ping"}, pp_task, &a);
    sl_go_with(&(sl_go_opts){.loop = r->loop_b, .name = "pong"}, pp_task, &b);
    while (atomic_load(&p.finished) < 2)
        sl__task_park();
    r->result = (double)(sl_mono_ns() - t0) / (double)(2 * p.n);
}

int main(void)
{
    const char *s = getenv("BENCH_TASK_N");
    if (s) g_scale = atof(s) > 0 ? atof(s) : 1.0;

    double v[REPS];
    for (int i = 0; i < REPS; i++)
        v[i] = raw_switch();
    row("context switch (raw)", best(v, REPS), "ns",
        "sl__cpu_switch one way, thread CPU time; target <= 10");

    sl_runtime *rt;
    if (sl_runtime_new(&(sl_runtime_opts){.loops = 2}, &rt) != 0) return 1;

    run r = {.fn = spawn_body, .n = scaled(300000)};
    for (int i = 0; i < REPS; i++)
        v[i] = in_task(rt, &r);
    row("spawn+exit+wg", best(v, REPS), "ns/task", "batches of 1000 from a task");

    run h = {.fn = herd_body};
    in_task(rt, &h);
    row("parked task RSS", g_rss_per_task, "bytes", "100k parked, RSS growth / 100k");
    row("wake parked", g_wake_ns, "ns/task", "100k unparked from one task until all exited");

    run p1 = {.fn = pp_body, .n = scaled(500000), .loop_b = 1};
    for (int i = 0; i < REPS; i++)
        v[i] = in_task(rt, &p1);
    row("ping-pong, one loop", best(v, REPS), "ns/message", "park/unpark, two tasks on loop 1");
    run p2 = {.fn = pp_body, .n = scaled(100000), .loop_b = 2};
    for (int i = 0; i < REPS; i++)
        v[i] = in_task(rt, &p2);
    row("ping-pong, across loops", best(v, REPS), "ns/message", "park/unpark, loop 1 <-> loop 2");

    sl_runtime_free(rt);
    return 0;
}
