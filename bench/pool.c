/* bench_pool: how fast does sl_pool move tiny jobs, how long does a job wait to start under a
 * steady load, and what does an idle pool cost?
 *
 * Rows (each the median of RUNS runs):
 *   tiny jobs/s (an atomic add) with 1 and 2 submitters, 2 workers, a 1024-slot queue, blocking
 *   submit; the clock stops when the last job has run.
 *   submit-to-start latency p50/p99 at a steady 20k jobs/s (paced submitter), 2 workers.
 *   idle CPU: process CPU time over 300 ms of an idle pool with 2 workers, as % of one core.
 * Compare with Go's seed WorkerPool on the same machine in the same run (the machine is
 * shared and noisy). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdbool.h>
#include <time.h>

#include "sluice/sluice.h"
#include "sluice/pool.h"

#define RUNS 5

static atomic_long g_count;

static int tiny_job(sl_ctx *ctx, void *arg)
{
    atomic_fetch_add_explicit(&g_count, 1, memory_order_relaxed);
    return 0;
}

typedef struct feeder {
    sl_pool *p;
    long n;
} feeder;

static void *feed(void *x)
{
    feeder *f = x;
    sl_pool_job j = {.id = "tiny", .fn = tiny_job};
    for (long i = 0; i < f->n; i++)
        if (sl_pool_submit(f->p, &j, NULL) != 0) abort();
    return NULL;
}

static int cmp_dbl(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_dbl);
    return v[n / 2];
}

static sl_pool *mk_pool(int workers, size_t cap)
{
    sl_pool_opts o = {.workers = workers, .queue_capacity = cap, .logger = sl_log_discard()};
    sl_pool *p;
    if (sl_pool_new(&o, &p) != 0) abort();
    return p;
}

/* Returns jobs/s. */
static double tiny_run(int submitters, long total)
{
    sl_pool *p = mk_pool(2, 1024);
    atomic_store(&g_count, 0);
    pthread_t th[8];
    feeder f[8];
    int64_t t0 = sl_mono_ns();
    for (int i = 0; i < submitters; i++) {
        f[i] = (feeder){p, total / submitters};
        pthread_create(&th[i], NULL, feed, &f[i]);
    }
    for (int i = 0; i < submitters; i++)
        pthread_join(th[i], NULL);
    /* Every job accepted; wait for the last to run (shutdown drains and joins). */
    sl_pool_report r;
    sl_pool_shutdown(p, NULL, &r);
    int64_t dt = sl_mono_ns() - t0;
    if (atomic_load(&g_count) != total / submitters * submitters) abort();
    sl_pool_free(p);
    return (double)r.succeeded / ((double)dt / 1e9);
}

/* ---- baseline: the textbook pool (one mutex, two condvars, a ring), as Go's buffered
 * channel works, measured in the same run for a side-by-side comparison ---- */
typedef struct naive {
    pthread_mutex_t mu;
    pthread_cond_t not_empty, not_full;
    sl_pool_job_fn ring_fn[1024];
    void *ring_arg[1024];
    unsigned head, tail;
    bool closed;
} naive;

static void naive_submit(naive *q, sl_pool_job_fn fn, void *arg)
{
    pthread_mutex_lock(&q->mu);
    while (q->tail - q->head == 1024)
        pthread_cond_wait(&q->not_full, &q->mu);
    q->ring_fn[q->tail % 1024] = fn;
    q->ring_arg[q->tail % 1024] = arg;
    q->tail++;
    pthread_cond_signal(&q->not_empty);
    pthread_mutex_unlock(&q->mu);
}

static void *naive_worker(void *x)
{
    naive *q = x;
    for (;;) {
        pthread_mutex_lock(&q->mu);
        while (q->tail == q->head && !q->closed)
            pthread_cond_wait(&q->not_empty, &q->mu);
        if (q->tail == q->head) {
            pthread_mutex_unlock(&q->mu);
            return NULL;
        }
        sl_pool_job_fn fn = q->ring_fn[q->head % 1024];
        void *arg = q->ring_arg[q->head % 1024];
        q->head++;
        pthread_cond_signal(&q->not_full);
        pthread_mutex_unlock(&q->mu);
        fn(NULL, arg);
    }
}

typedef struct nfeeder {
    naive *q;
    long n;
} nfeeder;

static void *naive_feed(void *x)
{
    nfeeder *f = x;
    for (long i = 0; i < f->n; i++)
        naive_submit(f->q, tiny_job, NULL);
    return NULL;
}

static double naive_run(int submitters, long total)
{
    naive *q = calloc(1, sizeof *q);
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->not_empty, NULL);
    pthread_cond_init(&q->not_full, NULL);
    atomic_store(&g_count, 0);
    pthread_t w[2], th[8];
    nfeeder f[8];
    int64_t t0 = sl_mono_ns();
    for (int i = 0; i < 2; i++)
        pthread_create(&w[i], NULL, naive_worker, q);
    for (int i = 0; i < submitters; i++) {
        f[i] = (nfeeder){q, total / submitters};
        pthread_create(&th[i], NULL, naive_feed, &f[i]);
    }
    for (int i = 0; i < submitters; i++)
        pthread_join(th[i], NULL);
    pthread_mutex_lock(&q->mu);
    q->closed = true;
    pthread_cond_broadcast(&q->not_empty);
    pthread_mutex_unlock(&q->mu);
    for (int i = 0; i < 2; i++)
        pthread_join(w[i], NULL);
    int64_t dt = sl_mono_ns() - t0;
    if (atomic_load(&g_count) != total / submitters * submitters) abort();
    pthread_cond_destroy(&q->not_empty);
    pthread_cond_destroy(&q->not_full);
    pthread_mutex_destroy(&q->mu);
    free(q);
    return (double)(total / submitters * submitters) / ((double)dt / 1e9);
}

/* ---- latency ---- */
typedef struct lat {
    int64_t *starts;
} lat;

static lat g_lat;

static int stamp_job(sl_ctx *ctx, void *arg)
{
    intptr_t i = (intptr_t)arg;
    g_lat.starts[i] = sl_mono_ns(); /* each index is written once, read after shutdown */
    return 0;
}

/* A steady 20k jobs/s: the submitter parks between jobs (a timed wait on an absolute
 * schedule), so the workers sleep between jobs too and the row measures the wake-up path. */
static void latency_run(double *p50, double *p99)
{
    enum { N = 10000 };
    const int64_t gap = SL_US(50);
    int64_t *sub = malloc(N * sizeof *sub);
    g_lat.starts = calloc(N, sizeof *g_lat.starts);
    sl_pool *p = mk_pool(2, 1024);
    int64_t next = sl_mono_ns();
    for (intptr_t i = 0; i < N; i++) {
        next += gap;
        int64_t now = sl_mono_ns();
        if (next > now) sl_ctx_wait_for(sl_ctx_background(), next - now);
        sl_pool_job j = {.id = "lat", .fn = stamp_job, .arg = (void *)i};
        sub[i] = sl_mono_ns();
        if (sl_pool_submit(p, &j, NULL) != 0) abort();
    }
    sl_pool_shutdown(p, NULL, NULL);
    sl_pool_free(p);
    double *d = malloc(N * sizeof *d);
    for (int i = 0; i < N; i++)
        d[i] = (double)(g_lat.starts[i] - sub[i]);
    qsort(d, N, sizeof *d, cmp_dbl);
    *p50 = d[N / 2];
    *p99 = d[N * 99 / 100];
    free(d);
    free(sub);
    free(g_lat.starts);
}

static int64_t cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static double idle_cpu_pct(void)
{
    sl_pool *p = mk_pool(2, 1024);
    sl_pool_job j = {.id = "warm", .fn = tiny_job};
    sl_pool_submit(p, &j, NULL); /* workers have run once, then go idle */
    sl_ctx_wait_for(sl_ctx_background(), SL_MS(20));
    int64_t c0 = cpu_ns(), t0 = sl_mono_ns();
    sl_ctx_wait_for(sl_ctx_background(), SL_MS(300)); /* parks this thread: no CPU */
    double pct = 100.0 * (double)(cpu_ns() - c0) / (double)(sl_mono_ns() - t0);
    sl_pool_free(p);
    return pct;
}

int main(void)
{
    const long total = 4000000;
    double one[RUNS], two[RUNS], n1[RUNS], n2[RUNS];
    for (int r = 0; r < RUNS; r++) { /* interleaved, so noise hits both alike */
        one[r] = tiny_run(1, total);
        n1[r] = naive_run(1, total);
        two[r] = tiny_run(2, total);
        n2[r] = naive_run(2, total);
    }
    double m1 = median(one, RUNS), m2 = median(two, RUNS);
    double b1 = median(n1, RUNS), b2 = median(n2, RUNS);
    printf("| pool tiny jobs, 1 submitter, 2 workers, 1024 queue | %.1f | M jobs/s | %.1f ns/job, "
           "median of %d |\n",
           m1 / 1e6, 1e9 / m1, RUNS);
    printf("| pool tiny jobs, 2 submitters, 2 workers, 1024 queue | %.1f | M jobs/s | %.1f ns/job, "
           "median of %d |\n",
           m2 / 1e6, 1e9 / m2, RUNS);
    printf("| baseline mutex+condvar pool, 1 submitter, 2 workers, 1024 queue | %.1f | M jobs/s | "
           "%.1f ns/job, same run |\n",
           b1 / 1e6, 1e9 / b1);
    printf("| baseline mutex+condvar pool, 2 submitters, 2 workers, 1024 queue | %.1f | M jobs/s | "
           "%.1f ns/job, same run |\n",
           b2 / 1e6, 1e9 / b2);
    double l50[3], l99[3];
    for (int r = 0; r < 3; r++)
        latency_run(&l50[r], &l99[r]);
    printf("| pool submit-to-start p50, steady 20k jobs/s, 2 workers | %.1f | us | median of 3 |\n",
           median(l50, 3) / 1e3);
    printf("| pool submit-to-start p99, steady 20k jobs/s, 2 workers | %.1f | us | median of 3 |\n",
           median(l99, 3) / 1e3);
    printf("| pool idle CPU, 2 workers | %.2f | %% of a core | over 300 ms |\n", idle_cpu_pct());
    return 0;
}
