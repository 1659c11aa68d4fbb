/* bench_chan: how fast is sl_chan, and does an idle waiter really sleep?
 *
 * Rows (each the median of REPS runs; Go reference numbers were measured on this machine):
 *   ping-pong: two threads bounce one int over two rendezvous channels (Go: 113 ns/message);
 *     also with the park spin turned off, to show what the bounded spin buys;
 *   2 producers + 2 consumers through a 1024-slot channel;
 *   1 producer / 1 consumer streaming through 1024 slots (Go: 49 ns/message);
 *   idle waiter: CPU time a thread blocked in recv uses over 300 ms;
 *   task ping-pong: two tasks bounce one int over two rendezvous
 *     channels, both on one loop (a 1-loop runtime) and on two loops (Go: 115 ns/message). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "sluice/sluice.h"
#include "sluice/chan.h"
#include "sync/park_int.h"

#define BENCH_NAME "chan"

enum { REPS = 5 };

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(*v), cmp_double);
    return v[n / 2];
}

/* ---- ping-pong ---------------------------------------------------------------------------- */

typedef struct pp {
    sl_chan *ping, *pong;
    long n;
} pp;

static void *pong_main(void *arg)
{
    pp *p = arg;
    int v;
    for (long i = 0; i < p->n; i++) {
        sl_chan_recv(p->ping, &v, NULL);
        sl_chan_send(p->pong, &v, NULL);
    }
    return NULL;
}

static double ping_pong(long n)
{
    pp p = {.n = n};
    sl_chan_new(sizeof(int), 0, &p.ping);
    sl_chan_new(sizeof(int), 0, &p.pong);
    pthread_t th;
    pthread_create(&th, NULL, pong_main, &p);
    int64_t t0 = sl_mono_ns();
    int v = 0;
    for (long i = 0; i < n; i++) {
        sl_chan_send(p.ping, &v, NULL);
        sl_chan_recv(p.pong, &v, NULL);
    }
    int64_t dt = sl_mono_ns() - t0;
    pthread_join(th, NULL);
    sl_chan_free(p.ping);
    sl_chan_free(p.pong);
    return (double)dt / (double)(2 * n);
}

/* ---- ping-pong between tasks ----------------------------------------------------------- */

#include "sluice/task.h"

typedef struct tpp {
    sl_chan *ping, *pong;
    long n;
    sl_wg wg;
    int64_t t0, t1;
    int loop_a, loop_b; /* where each task ended */
} tpp;

static void tpp_ping(void *arg)
{
    tpp *p = arg;
    int v = 0;
    p->t0 = sl_mono_ns();
    for (long i = 0; i < p->n; i++) {
        sl_chan_send(p->ping, &v, NULL);
        sl_chan_recv(p->pong, &v, NULL);
    }
    p->t1 = sl_mono_ns();
    p->loop_a = sl_task_loop();
    sl_wg_done(&p->wg);
}

static void tpp_pong(void *arg)
{
    tpp *p = arg;
    int v;
    for (long i = 0; i < p->n; i++) {
        sl_chan_recv(p->ping, &v, NULL);
        sl_chan_send(p->pong, &v, NULL);
    }
    p->loop_b = sl_task_loop();
    sl_wg_done(&p->wg);
}

/* ns per message; *moved set if a task ended on another loop than it was put on. */
static double task_ping_pong(sl_runtime *rt, int loop_a, int loop_b, long n, bool *moved)
{
    tpp p = {.n = n};
    sl_chan_new(sizeof(int), 0, &p.ping);
    sl_chan_new(sizeof(int), 0, &p.pong);
    sl_wg_init(&p.wg);
    sl_wg_add(&p.wg, 2);
    sl_go_opts b = {.name = "pong", .rt = rt, .loop = loop_b};
    sl_go_with(&b, tpp_pong, &p);
    sl_go_opts a = {.name = "ping", .rt = rt, .loop = loop_a};
    sl_go_with(&a, tpp_ping, &p);
    sl_wg_wait(&p.wg, NULL);
    if (p.loop_a != loop_a || p.loop_b != loop_b) *moved = true;
    sl_wg_destroy(&p.wg);
    sl_chan_free(p.ping);
    sl_chan_free(p.pong);
    return (double)(p.t1 - p.t0) / (double)(2 * n);
}

static void task_rows(void)
{
    double v[REPS];
    sl_runtime *one, *two;
    sl_runtime_opts o1 = {.loops = 1}, o2 = {.loops = 2};
    if (sl_runtime_new(&o1, &one) != 0 || sl_runtime_new(&o2, &two) != 0) return;
    bool moved = false;
    for (int r = 0; r < REPS; r++)
        v[r] = task_ping_pong(one, 1, 1, 200000, &moved);
    printf("| chan ping-pong, 2 tasks on one loop | %.0f | ns/message | Go 115 ns (issue #15) |\n",
           median(v, REPS));
    moved = false;
    for (int r = 0; r < REPS; r++)
        v[r] = task_ping_pong(two, 1, 2, 100000, &moved);
    printf("| chan ping-pong, 2 tasks across 2 loops | %.0f | ns/message | %s |\n", median(v, REPS),
           moved ? "a task migrated to the other loop" : "each stayed on its loop");
    sl_runtime_free(one);
    sl_runtime_free(two);
}

/* ---- streaming: P producers, C consumers ------------------------------------------------ */

typedef struct stream {
    sl_chan *ch;
    long per_producer;
} stream;

static void *producer_main(void *arg)
{
    stream *s = arg;
    for (long i = 0; i < s->per_producer; i++)
        sl_chan_send(s->ch, &i, NULL);
    return NULL;
}

static void *consumer_main(void *arg)
{
    stream *s = arg;
    long v;
    while (sl_chan_recv(s->ch, &v, NULL) == 0) {
    }
    return NULL;
}

static double streaming(int producers, int consumers, long total)
{
    stream s = {.per_producer = total / producers};
    sl_chan_new(sizeof(long), 1024, &s.ch);
    pthread_t p[8], c[8];
    int64_t t0 = sl_mono_ns();
    for (int i = 0; i < consumers; i++)
        pthread_create(&c[i], NULL, consumer_main, &s);
    for (int i = 0; i < producers; i++)
        pthread_create(&p[i], NULL, producer_main, &s);
    for (int i = 0; i < producers; i++)
        pthread_join(p[i], NULL);
    sl_chan_close(s.ch);
    for (int i = 0; i < consumers; i++)
        pthread_join(c[i], NULL);
    int64_t dt = sl_mono_ns() - t0;
    sl_chan_free(s.ch);
    return (double)dt / (double)(s.per_producer * producers);
}

/* ---- idle waiter -------------------------------------------------------------------------- */

static void *idle_main(void *arg)
{
    int v;
    sl_chan_recv(arg, &v, NULL);
    return NULL;
}

static double idle_cpu_ms(int64_t idle_ns)
{
    sl_chan *ch;
    sl_chan_new(sizeof(int), 0, &ch);
    pthread_t th;
    pthread_create(&th, NULL, idle_main, ch);
    clockid_t cid;
    pthread_getcpuclockid(th, &cid);
    struct timespec a, b;
    clock_gettime(cid, &a);
    struct timespec d = {.tv_sec = idle_ns / 1000000000, .tv_nsec = idle_ns % 1000000000};
    nanosleep(&d, NULL); /* sleep-ok: the question is how much CPU a waiter burns over real time */
    clock_gettime(cid, &b);
    int v = 1;
    sl_chan_send(ch, &v, NULL);
    pthread_join(th, NULL);
    sl_chan_free(ch);
    return ((double)(b.tv_sec - a.tv_sec) * 1e9 + (double)(b.tv_nsec - a.tv_nsec)) / 1e6;
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
    double v[REPS];
    for (int r = 0; r < REPS; r++)
        v[r] = ping_pong(200000);
    printf("| chan ping-pong (rendezvous, 2 threads) | %.0f | ns/message | Go 113 ns; spin %d |\n",
           median(v, REPS), sl__park_spins);

    int saved = sl__park_spins;
    /* Fixed long spin (no adaptation): the best case when both threads really run at once. */
    sl__park_spins = 4000;
    sl__park_spin_floor = 4000;
    for (int r = 0; r < REPS; r++)
        v[r] = ping_pong(20000);
    printf("| chan ping-pong, fixed 4000-pause spin | %.0f | ns/message | not adaptive: wins "
           "only when both threads own a CPU |\n",
           median(v, REPS));
    sl__park_spin_floor = 16;
    sl__park_spins = 0;
    for (int r = 0; r < REPS; r++)
        v[r] = ping_pong(20000);
    printf("| chan ping-pong, park spin off | %.0f | ns/message | futex sleep/wake per message |\n",
           median(v, REPS));
    sl__park_spins = saved;

    for (int r = 0; r < REPS; r++)
        v[r] = streaming(2, 2, 2000000);
    double m = median(v, REPS);
    printf("| chan 2 producers + 2 consumers, 1024 slots | %.1f | ns/message | %.1f M msg/s |\n", m,
           1e3 / m);

    for (int r = 0; r < REPS; r++)
        v[r] = streaming(1, 1, 2000000);
    m = median(v, REPS);
    printf("| chan 1 producer / 1 consumer, 1024 slots | %.1f | ns/message | Go 49 ns; %.1f M "
           "msg/s |\n",
           m, 1e3 / m);

    task_rows();
    printf("| chan idle waiter CPU over 300 ms | %.2f | ms CPU | blocked in recv: parked |\n",
           idle_cpu_ms(SL_MS(300)));
    printf("| %s machine load average (before / after) | %.1f / %.1f | | 2 CPUs shared |\n",
           BENCH_NAME, load_before, load1());
    return 0;
}
