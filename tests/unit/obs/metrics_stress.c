/* sl_metrics under contention (run under TSan too): 4 threads x 100,000 updates of one counter,
 * one gauge and one histogram, plus per-thread labelled children looked up concurrently, while
 * a scraper thread writes the exposition in a loop. The sums must be exact at the end; every
 * scrape must pass the strict format checker, and the counter must never go backwards between
 * scrapes. */
#include "harness.h"
#include "sluice/metrics.h"
#include "prom_check.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define THREADS 4
#define UPDATES 100000

typedef struct shared {
    sl_metrics *m;
    sl_counter *c;
    sl_gauge *g;
    sl_histogram *h;
    sl_metric_family *by_thread;
    atomic_bool stop;
    atomic_int scrapes;
    char err[600];
} shared;

typedef struct worker {
    shared *s;
    int id;
} worker;

static void *worker_main(void *arg)
{
    worker *w = arg;
    shared *s = w->s;
    char id[8];
    snprintf(id, sizeof id, "t%d", w->id);
    sl_counter *mine = NULL;
    if (sl_metric_counter(s->by_thread, (const char *[]){id}, &mine) != 0) return NULL;
    for (int i = 0; i < UPDATES; i++) {
        sl_counter_inc(s->c);
        sl_counter_add(mine, 2);
        sl_gauge_inc(s->g);
        sl_gauge_add(s->g, i % 2 ? -2 : 1); /* with the inc: +1 per pair, UPDATES/2 per thread */
        sl_histogram_observe(s->h, (i % 4) * 0.25); /* 0, .25, .5, .75: exact sums */
    }
    return NULL;
}

/* Value of the first sample line that starts with prefix (followed by a space). */
static double sample(const char *text, const char *prefix)
{
    const char *p = text;
    size_t n = strlen(prefix);
    while ((p = strstr(p, prefix)) != NULL) {
        if ((p == text || p[-1] == '\n') && p[n] == ' ') return strtod(p + n + 1, NULL);
        p += n;
    }
    return -1;
}

static void *scraper_main(void *arg)
{
    shared *s = arg;
    sl_buf out = {0};
    pc_state *st = calloc(1, sizeof *st);
    double last = 0;
    while (st && !atomic_load(&s->stop)) {
        out.len = 0;
        if (sl_metrics_write(s->m, &out) != 0) {
            snprintf(s->err, sizeof s->err, "write failed");
            break;
        }
        bool ok = pc_check(st, out.data);
        pc_done(st);
        if (!ok) {
            snprintf(s->err, sizeof s->err, "%s", st->err);
            break;
        }
        double v = sample(out.data, "ops_total");
        if (v < last) {
            snprintf(s->err, sizeof s->err, "counter went back: %g after %g", v, last);
            break;
        }
        last = v;
        atomic_fetch_add(&s->scrapes, 1);
    }
    free(st);
    sl_buf_destroy(&out);
    return NULL;
}

static void test_concurrent_updates(void **state)
{
    shared s = {0};
    assert_int_equal(sl_metrics_new(&s.m), 0);
    assert_int_equal(sl_metrics_counter(s.m, "ops_total", "Ops.", &s.c), 0);
    assert_int_equal(sl_metrics_gauge(s.m, "level", "Level.", &s.g), 0);
    const double b[] = {0.1, 0.3, 0.6};
    assert_int_equal(sl_metrics_histogram(s.m, "obs", "Obs.", b, 3, &s.h), 0);
    const char *labels[] = {"thread"};
    assert_int_equal(
        sl_metrics_register(
            s.m, SL_METRIC_COUNTER,
            &(sl_metric_opts){.name = "per_thread_total", .labels = labels, .n_labels = 1},
            &s.by_thread),
        0);
    pthread_t scraper, t[THREADS];
    worker w[THREADS];
    assert_int_equal(pthread_create(&scraper, NULL, scraper_main, &s), 0);
    for (int i = 0; i < THREADS; i++) {
        w[i] = (worker){.s = &s, .id = i};
        assert_int_equal(pthread_create(&t[i], NULL, worker_main, &w[i]), 0);
    }
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_join(t[i], NULL), 0);
    /* At least one scrape overlapped or followed the updates before we stop the scraper. */
    assert_true(SL_WAIT_UNTIL(atomic_load(&s.scrapes) > 0 || s.err[0], 10000));
    atomic_store(&s.stop, true);
    assert_int_equal(pthread_join(scraper, NULL), 0);
    if (s.err[0]) fail_msg("scraper: %s", s.err);

    assert_int_equal(sl_counter_value(s.c), (uint64_t)THREADS * UPDATES);
    assert_int_equal(sl_gauge_value(s.g), (int64_t)THREADS * (UPDATES - UPDATES / 2));
    assert_int_equal(sl_histogram_count(s.h), (uint64_t)THREADS * UPDATES);
    /* Per thread: UPDATES/4 each of 0, .25, .5, .75 -> UPDATES/4 * 1.5 */
    assert_true(sl_histogram_sum(s.h) == THREADS * (UPDATES / 4) * 1.5);

    sl_buf out = {0};
    assert_int_equal(sl_metrics_write(s.m, &out), 0);
    pc_state *st = calloc(1, sizeof *st);
    assert_non_null(st);
    bool ok = pc_check(st, out.data);
    pc_done(st);
    if (!ok) fail_msg("%s", st->err);
    free(st);
    assert_non_null(strstr(out.data, "obs_bucket{le=\"0.1\"} 100000\n"
                                     "obs_bucket{le=\"0.3\"} 200000\n"
                                     "obs_bucket{le=\"0.6\"} 300000\n"
                                     "obs_bucket{le=\"+Inf\"} 400000\n"
                                     "obs_sum 150000\n"
                                     "obs_count 400000\n"));
    for (int i = 0; i < THREADS; i++) {
        char line[64];
        snprintf(line, sizeof line, "per_thread_total{thread=\"t%d\"} %d\n", i, 2 * UPDATES);
        assert_non_null(strstr(out.data, line));
    }
    sl_buf_destroy(&out);
    sl_metrics_free(s.m);
}

/* Concurrent registration and lookup of the same tuples return one child each. */
typedef struct lookup_arg {
    sl_metric_family *f;
    sl_counter *got[64];
} lookup_arg;

static void *lookup_main(void *arg)
{
    lookup_arg *a = arg;
    for (int i = 0; i < 64; i++) {
        char v[8];
        snprintf(v, sizeof v, "%d", i);
        if (sl_metric_counter(a->f, (const char *[]){v}, &a->got[i]) != 0) return NULL;
        sl_counter_inc(a->got[i]);
    }
    return NULL;
}

static void test_concurrent_lookup(void **state)
{
    sl_metrics *m = NULL;
    assert_int_equal(sl_metrics_new(&m), 0);
    sl_metric_family *f = NULL;
    const char *labels[] = {"k"};
    assert_int_equal(sl_metrics_register(
                         m, SL_METRIC_COUNTER,
                         &(sl_metric_opts){.name = "k_total", .labels = labels, .n_labels = 1}, &f),
                     0);
    pthread_t t[THREADS];
    lookup_arg a[THREADS];
    for (int i = 0; i < THREADS; i++) {
        memset(&a[i], 0, sizeof a[i]);
        a[i].f = f;
        assert_int_equal(pthread_create(&t[i], NULL, lookup_main, &a[i]), 0);
    }
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_join(t[i], NULL), 0);
    for (int k = 0; k < 64; k++) {
        for (int i = 1; i < THREADS; i++)
            assert_ptr_equal(a[i].got[k], a[0].got[k]);
        assert_int_equal(sl_counter_value(a[0].got[k]), THREADS);
    }
    sl_metrics_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_concurrent_updates),
        cmocka_unit_test(test_concurrent_lookup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
