/* What does an update cost? ns per operation for a sharded counter at 1 and 2 threads, next to
 * one plain shared atomic counter at 2 threads (what sharding avoids: the cache line bouncing
 * between cores), a gauge inc, a histogram observe (default buckets), and one scrape of a
 * registry of 100 series. Each row is the median of 5 runs, all in the same process run;
 * update rows are thread CPU time per operation. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "sluice/sluice.h"
#include "sluice/metrics.h"

#define RUNS 5
#define OPS  2000000L

enum op { OP_COUNTER, OP_PLAIN, OP_GAUGE, OP_HISTO };

typedef struct job {
    enum op op;
    sl_counter *c;
    sl_gauge *g;
    sl_histogram *h;
    _Atomic uint64_t *plain;
    pthread_barrier_t *start;
    int64_t cpu_ns; /* out: this thread's CPU time for its OPS operations */
} job;

static int64_t thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void *run_ops(void *arg)
{
    job *j = arg;
    if (j->start) pthread_barrier_wait(j->start);
    int64_t t0 = thread_cpu_ns();
    switch (j->op) {
    case OP_COUNTER:
        for (long i = 0; i < OPS; i++)
            sl_counter_inc(j->c);
        break;
    case OP_PLAIN:
        for (long i = 0; i < OPS; i++)
            atomic_fetch_add_explicit(j->plain, 1, memory_order_relaxed);
        break;
    case OP_GAUGE:
        for (long i = 0; i < OPS; i++)
            sl_gauge_inc(j->g);
        break;
    case OP_HISTO:
        for (long i = 0; i < OPS; i++)
            sl_histogram_observe_ns(j->h, (i & 1023) * 100000); /* 0..102 ms */
        break;
    }
    j->cpu_ns = thread_cpu_ns() - t0;
    return NULL;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* ns per operation: each thread's own CPU time over its OPS operations, averaged over the
 * threads. CPU time, not wall time: the machine is shared, and a thread waiting for a core
 * would otherwise count as a slow operation. Contention (a cache line moving between cores)
 * still shows, as it stalls the thread while it runs. */
static double measure(job proto, int nthreads)
{
    double r[RUNS];
    for (int k = 0; k < RUNS; k++) {
        pthread_barrier_t b;
        pthread_barrier_init(&b, NULL, (unsigned)nthreads + 1);
        pthread_t t[8];
        job j[8];
        for (int i = 0; i < nthreads; i++) {
            j[i] = proto;
            j[i].start = &b;
            pthread_create(&t[i], NULL, run_ops, &j[i]);
        }
        pthread_barrier_wait(&b);
        int64_t cpu = 0;
        for (int i = 0; i < nthreads; i++) {
            pthread_join(t[i], NULL);
            cpu += j[i].cpu_ns;
        }
        r[k] = (double)cpu / nthreads / (double)OPS;
        pthread_barrier_destroy(&b);
    }
    qsort(r, RUNS, sizeof r[0], cmp_d);
    return r[RUNS / 2];
}

static double scrape_us(sl_metrics *m)
{
    double r[RUNS];
    sl_buf out = {0};
    for (int k = 0; k < RUNS; k++) {
        int64_t t0 = sl_mono_ns();
        for (int i = 0; i < 100; i++) {
            out.len = 0;
            sl_metrics_write(m, &out);
        }
        r[k] = (double)(sl_mono_ns() - t0) / 100 / 1000.0;
    }
    sl_buf_destroy(&out);
    qsort(r, RUNS, sizeof r[0], cmp_d);
    return r[RUNS / 2];
}

static void row(const char *name, double v, const char *unit, const char *note)
{
    printf("| metrics: %s | %.2f | %s | %s |\n", name, v, unit, note);
}

int main(void)
{
    sl_metrics *m = NULL;
    if (sl_metrics_new(&m) != 0) return 1;
    sl_counter *c;
    sl_gauge *g;
    sl_histogram *h;
    if (sl_metrics_counter(m, "c_total", "", &c) || sl_metrics_gauge(m, "g", "", &g) ||
        sl_metrics_histogram(m, "h_seconds", "", NULL, 0, &h))
        return 1;
    static _Atomic uint64_t plain;

    row("counter inc, 1 thread", measure((job){.op = OP_COUNTER, .c = c}, 1), "ns/op",
        "sharded, relaxed fetch_add");
    row("counter inc, 2 threads", measure((job){.op = OP_COUNTER, .c = c}, 2), "ns/op",
        "per thread; each thread on its own shard");
    row("plain shared atomic inc, 2 threads", measure((job){.op = OP_PLAIN, .plain = &plain}, 2),
        "ns/op", "per thread; one cache line for both: the baseline sharding avoids");
    row("gauge inc, 1 thread", measure((job){.op = OP_GAUGE, .g = g}, 1), "ns/op", "sharded");
    row("histogram observe_ns, 1 thread", measure((job){.op = OP_HISTO, .h = h}, 1), "ns/op",
        "11 default buckets, linear search + CAS on the sum");
    row("histogram observe_ns, 2 threads", measure((job){.op = OP_HISTO, .h = h}, 2), "ns/op",
        "per thread");

    /* A registry the size of a small service: 96 labelled counters + the 3 above. */
    sl_metric_family *f;
    const char *labels[] = {"route", "code"};
    if (sl_metrics_register(m, SL_METRIC_COUNTER,
                            &(sl_metric_opts){.name = "http_requests_total",
                                              .help = "Requests.",
                                              .labels = labels,
                                              .n_labels = 2},
                            &f))
        return 1;
    for (int r = 0; r < 24; r++)
        for (int k = 0; k < 4; k++) {
            char route[16], code[8];
            snprintf(route, sizeof route, "/r%d", r);
            snprintf(code, sizeof code, "%d", 200 + k * 100);
            sl_counter *x;
            if (sl_metric_counter(f, (const char *[]){route, code}, &x) == 0) sl_counter_add(x, 7);
        }
    row("scrape, 100 series (96 counters + 1 histogram)", scrape_us(m), "us/scrape",
        "sl_metrics_write into a reused sl_buf");
    sl_metrics_free(m);
    return 0;
}
