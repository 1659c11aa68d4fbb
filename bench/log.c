/* How much does a log call cost? ns per record for: a call below the level (the macro's guard),
 * the discard logger, formatting only (a sink that drops the line), text and JSON to /dev/null
 * (format + one write(2) each), and 2 threads sharing one logger, with small writes under the
 * output's shared lock (the default for /dev/null, pipes and files) and forced exclusive. Each row
 * is the median of 5 runs of ~30 ms; every record carries the same 4 attributes (str, int,
 * duration, error) unless the row says otherwise. Single-thread rows are the thread's CPU time
 * per record; the 2-thread rows are wall time over all records (waiting on the lock is the
 * point there), so they suffer when other processes hold the cores. */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "sluice/sluice.h"
#include "base/log_int.h"

#define RUNS 5

typedef struct bcase {
    sl_logger *lg;
    sl_log_level level;
    int attrs; /* 0 or 4 */
} bcase;

static void log_n(const bcase *c, long n)
{
    for (long i = 0; i < n; i++) {
        if (c->attrs)
            sl_log(c->lg, c->level, "request done", SL_A_STR("path", "/users/42"),
                   SL_A_INT("status", 200), SL_A_DUR("took", SL_US(1234) + i % 7),
                   SL_A_ERR("err", SL_ETIMEDOUT));
        else
            sl_log(c->lg, c->level, "request done");
    }
}

/* The calling thread's CPU time (user + system, so write(2) counts): unlike wall time it does
 * not grow while the thread waits for a core on a shared machine. */
static int64_t thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static double ns_per(const bcase *c, long n)
{
    int64_t t0 = thread_cpu_ns();
    log_n(c, n);
    return (double)(thread_cpu_ns() - t0) / (double)n;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Picks n so that one run takes ~30 ms of CPU, then returns the median of RUNS runs. */
static double median_ns(const bcase *c)
{
    long n = 1000;
    while (ns_per(c, n) * (double)n < 10e6 && n < (1L << 26))
        n *= 4;
    n = (long)(30e6 / ns_per(c, n)) + 1;
    double r[RUNS];
    for (int i = 0; i < RUNS; i++)
        r[i] = ns_per(c, n);
    qsort(r, RUNS, sizeof r[0], cmp_d);
    return r[RUNS / 2];
}

static void *thread_main(void *arg)
{
    log_n(arg, 25000);
    return NULL;
}

/* Two threads on one logger: wall ns per record over both (the output mutex and the file's
 * lock are shared, so this shows whether they collapse under contention). */
static double two_threads_ns(const bcase *c)
{
    double r[RUNS];
    for (int k = 0; k < RUNS; k++) {
        pthread_t t[2];
        int64_t t0 = sl_mono_ns();
        for (int i = 0; i < 2; i++)
            pthread_create(&t[i], NULL, thread_main, (void *)c);
        for (int i = 0; i < 2; i++)
            pthread_join(t[i], NULL);
        r[k] = (double)(sl_mono_ns() - t0) / 50000.0;
    }
    qsort(r, RUNS, sizeof r[0], cmp_d);
    return r[RUNS / 2];
}

static void drop_sink(void *arg, const char *line, size_t len)
{
    (void)arg;
    (void)line;
    (void)len;
}

static void row(const char *name, double v, const char *note)
{
    printf("| log: %s | %.1f | ns/record | %s |\n", name, v, note);
}

int main(void)
{
    int devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (devnull < 0) return 1;
    sl_logger *text = NULL, *json = NULL, *fmt_only = NULL, *fmt_json = NULL;
    sl_log_opts o = {.level = SL_LOG_INFO, .format = SL_LOG_TEXT, .fd = devnull};
    if (sl_logger_new(&o, &text) != 0) return 1;
    o.format = SL_LOG_JSON;
    if (sl_logger_new(&o, &json) != 0) return 1;
    o.format = SL_LOG_TEXT;
    o.sink = drop_sink;
    if (sl_logger_new(&o, &fmt_only) != 0) return 1;
    o.format = SL_LOG_JSON;
    if (sl_logger_new(&o, &fmt_json) != 0) return 1;

    row("disabled level (debug at INFO)", median_ns(&(bcase){text, SL_LOG_DEBUG, 4}),
        "4 attrs; level check only, attrs not built");
    row("discard logger", median_ns(&(bcase){sl_log_discard(), SL_LOG_INFO, 4}), "4 attrs");
    row("format only, text (sink drops line)", median_ns(&(bcase){fmt_only, SL_LOG_INFO, 4}),
        "4 attrs; with time; no syscall");
    row("format only, JSON (sink drops line)", median_ns(&(bcase){fmt_json, SL_LOG_INFO, 4}),
        "4 attrs; with time; no syscall");
    row("text to /dev/null, no attrs", median_ns(&(bcase){text, SL_LOG_INFO, 0}),
        "time+level+msg; one write(2)");
    row("text to /dev/null", median_ns(&(bcase){text, SL_LOG_INFO, 4}), "4 attrs; one write(2)");
    row("JSON to /dev/null", median_ns(&(bcase){json, SL_LOG_INFO, 4}), "4 attrs; one write(2)");
    row("text to /dev/null, 2 threads", two_threads_ns(&(bcase){text, SL_LOG_INFO, 4}),
        "4 attrs; wall time / total records, one shared logger; shared lock (default)");
    sl__log_set_small_shared(text, 0);
    row("text to /dev/null, 2 threads, exclusive lock",
        two_threads_ns(&(bcase){text, SL_LOG_INFO, 4}),
        "as above, every write under the exclusive lock (a plain mutex's behaviour)");

    sl_logger_free(text);
    sl_logger_free(json);
    sl_logger_free(fmt_only);
    sl_logger_free(fmt_json);
    close(devnull);
    return 0;
}
