/* Structured logs and Prometheus metrics from a few worker threads.
 *
 * Each worker gets a child logger carrying its id, counts the jobs it runs in a labelled counter
 * and their latency in a histogram; at the end the program prints the /metrics text. Run it:
 *   build/release/examples/example_log_and_metrics            (text logs)
 *   build/release/examples/example_log_and_metrics json       (JSON logs) */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "sluice/sluice.h"
#include "sluice/metrics.h"

#define WORKERS 3

typedef struct worker {
    int id;
    sl_logger *log;        /* child of the main logger: every line carries worker=<id> */
    sl_counter *ok, *fail; /* looked up once, updated without locks */
    sl_histogram *latency;
} worker;

static void *work(void *arg)
{
    worker *w = arg;
    for (int job = 0; job < 4; job++) {
        int64_t start = sl_now_ns();
        int rc = (job + w->id) % 3 == 0 ? SL_ETIMEDOUT : 0; /* pretend some jobs time out */
        sl_histogram_observe_ns(w->latency, sl_now_ns() - start + SL_MS(7 * job));
        if (rc == 0) {
            sl_counter_inc(w->ok);
            sl_log_debug(w->log, "job done", SL_A_INT("job", job)); /* filtered at INFO */
        } else {
            sl_counter_inc(w->fail);
            sl_log_warn(w->log, "job failed", SL_A_INT("job", job), SL_A_ERR("err", rc),
                        SL_A_DUR("after", SL_MS(7 * job)));
        }
    }
    return NULL;
}

int main(int argc, char **argv)
{
    bool json = argc > 1 && strcmp(argv[1], "json") == 0;
    sl_logger *log;
    sl_log_opts lo = {.level = SL_LOG_INFO, .format = json ? SL_LOG_JSON : SL_LOG_TEXT, .fd = 2};
    if (sl_logger_new(&lo, &log) != 0) return 1;

    sl_metrics *m;
    sl_metric_family *jobs;
    const char *labels[] = {"worker", "result"};
    sl_histogram *latency;
    if (sl_metrics_new(&m) != 0) return 1;
    if (sl_metrics_register(
            m, SL_METRIC_COUNTER,
            &(sl_metric_opts){
                .name = "jobs_total", .help = "Jobs run.", .labels = labels, .n_labels = 2},
            &jobs) != 0 ||
        sl_metrics_histogram(m, "job_duration_seconds", "Job latency.", NULL, 0, &latency) != 0)
        return 1;

    worker w[WORKERS];
    pthread_t t[WORKERS];
    for (int i = 0; i < WORKERS; i++) {
        char id[8];
        snprintf(id, sizeof id, "%d", i);
        w[i] = (worker){.id = i, .latency = latency};
        if (sl_logger_with(log, &SL_A_INT("worker", i), 1, &w[i].log) != 0 ||
            sl_metric_counter(jobs, (const char *[]){id, "ok"}, &w[i].ok) != 0 ||
            sl_metric_counter(jobs, (const char *[]){id, "failed"}, &w[i].fail) != 0)
            return 1;
        pthread_create(&t[i], NULL, work, &w[i]);
    }
    for (int i = 0; i < WORKERS; i++) {
        pthread_join(t[i], NULL);
        sl_logger_free(w[i].log);
    }
    sl_log_info(log, "all workers done", SL_A_INT("workers", WORKERS));

    sl_buf out = {0};
    if (sl_metrics_write(m, &out) == 0) fwrite(out.data, 1, out.len, stdout);
    sl_buf_destroy(&out);
    sl_metrics_free(m);
    sl_logger_free(log);
    return 0;
}
