/* sl_metrics: exact exposition text, the strict format checker on every output, validation of
 * names/labels/buckets, child identity, gauge and histogram semantics, callbacks, unregister. */
#include "harness.h"
#include "sluice/metrics.h"
#include "prom_check.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void assert_valid(const char *text)
{
    pc_state *s = calloc(1, sizeof *s);
    assert_non_null(s);
    bool ok = pc_check(s, text);
    pc_done(s);
    if (!ok) fail_msg("invalid exposition: %s\n%s", s->err, text);
    free(s);
}

static double answer(void *arg)
{
    int *calls = arg;
    (*calls)++;
    return 42.5;
}

static void test_golden(void **state)
{
    sl_metrics *m = NULL;
    assert_int_equal(sl_metrics_new(&m), 0);

    sl_counter *plain = NULL;
    assert_int_equal(sl_metrics_counter(m, "jobs_total", "Jobs run.", &plain), 0);
    sl_counter_add(plain, 41);
    sl_counter_inc(plain);

    sl_metric_family *reqs = NULL;
    const char *labels[] = {"method", "path"};
    sl_metric_opts o = {.name = "http_requests_total",
                        .help = "Requests, by \\method\\ and\npath.",
                        .labels = labels,
                        .n_labels = 2};
    assert_int_equal(sl_metrics_register(m, SL_METRIC_COUNTER, &o, &reqs), 0);
    sl_counter *a = NULL, *b = NULL, *c = NULL, *a2 = NULL;
    assert_int_equal(sl_metric_counter(reqs, (const char *[]){"POST", "/users"}, &a), 0);
    assert_int_equal(sl_metric_counter(reqs, (const char *[]){"GET", "/q\"x\\y\nz"}, &b), 0);
    assert_int_equal(sl_metric_counter(reqs, (const char *[]){"GET", "/a"}, &c), 0);
    assert_int_equal(sl_metric_counter(reqs, (const char *[]){"POST", "/users"}, &a2), 0);
    assert_ptr_equal(a, a2); /* same values, same child */
    sl_counter_add(a, 3);
    sl_counter_inc(b);

    sl_gauge *inflight = NULL;
    assert_int_equal(sl_metrics_gauge(m, "in_flight", NULL, &inflight), 0);
    sl_gauge_add(inflight, 5);
    sl_gauge_dec(inflight);
    sl_gauge_set(inflight, -7);
    sl_gauge_inc(inflight);

    int calls = 0;
    assert_int_equal(sl_metrics_gauge_func(m, "answer", "From a callback.", answer, &calls), 0);

    sl_histogram *lat = NULL;
    const double bounds[] = {0.1, 0.5, 1, INFINITY};
    assert_int_equal(sl_metrics_histogram(m, "latency_seconds", "Latency.", bounds, 4, &lat), 0);
    sl_histogram_observe(lat, 0.1); /* on a bound: counted in that bucket (le) */
    sl_histogram_observe(lat, 0.25);
    sl_histogram_observe_ns(lat, SL_MS(750));
    sl_histogram_observe(lat, 3);

    sl_metric_family *empty = NULL;
    o = (sl_metric_opts){.name = "unused", .labels = labels, .n_labels = 1};
    assert_int_equal(sl_metrics_register(m, SL_METRIC_GAUGE, &o, &empty), 0);

    sl_buf out = {0};
    assert_int_equal(sl_metrics_write(m, &out), 0);
    assert_int_equal(calls, 1);
    const char *want = "# HELP answer From a callback.\n"
                       "# TYPE answer gauge\n"
                       "answer 42.5\n"
                       "# HELP http_requests_total Requests, by \\\\method\\\\ and\\npath.\n"
                       "# TYPE http_requests_total counter\n"
                       "http_requests_total{method=\"GET\",path=\"/a\"} 0\n"
                       "http_requests_total{method=\"GET\",path=\"/q\\\"x\\\\y\\nz\"} 1\n"
                       "http_requests_total{method=\"POST\",path=\"/users\"} 3\n"
                       "# HELP in_flight \n"
                       "# TYPE in_flight gauge\n"
                       "in_flight -6\n"
                       "# HELP jobs_total Jobs run.\n"
                       "# TYPE jobs_total counter\n"
                       "jobs_total 42\n"
                       "# HELP latency_seconds Latency.\n"
                       "# TYPE latency_seconds histogram\n"
                       "latency_seconds_bucket{le=\"0.1\"} 1\n"
                       "latency_seconds_bucket{le=\"0.5\"} 2\n"
                       "latency_seconds_bucket{le=\"1\"} 3\n"
                       "latency_seconds_bucket{le=\"+Inf\"} 4\n"
                       "latency_seconds_sum 4.1\n"
                       "latency_seconds_count 4\n";
    assert_string_equal(out.data, want);
    assert_int_equal(out.len, strlen(want));
    assert_valid(out.data);

    /* A second write appends. */
    assert_int_equal(sl_metrics_write(m, &out), 0);
    assert_int_equal(out.len, 2 * strlen(want));
    assert_int_equal(calls, 2);

    assert_int_equal(sl_counter_value(plain), 42);
    assert_int_equal(sl_gauge_value(inflight), -6);
    assert_int_equal(sl_histogram_count(lat), 4);
    assert_true(fabs(sl_histogram_sum(lat) - 4.1) < 1e-12);
    sl_buf_destroy(&out);
    assert_null(out.data);
    sl_metrics_free(m);
}

static void test_histogram_labels_default_buckets(void **state)
{
    sl_metrics *m = NULL;
    assert_int_equal(sl_metrics_new(&m), 0);
    sl_metric_family *f = NULL;
    const char *labels[] = {"route"};
    sl_metric_opts o = {.name = "req_seconds", .help = "h", .labels = labels, .n_labels = 1};
    assert_int_equal(sl_metrics_register(m, SL_METRIC_HISTOGRAM, &o, &f), 0);
    sl_histogram *h = NULL, *g = NULL;
    assert_int_equal(sl_metric_histogram(f, (const char *[]){"/b"}, &h), 0);
    assert_int_equal(sl_metric_histogram(f, (const char *[]){"/a"}, &g), 0);
    sl_histogram_observe_ns(h, SL_MS(3));
    sl_histogram_observe_ns(h, SL_SEC(20));
    sl_histogram_observe(h, NAN); /* +Inf bucket; the sum becomes NaN */
    sl_buf out = {0};
    assert_int_equal(sl_metrics_write(m, &out), 0);
    assert_valid(out.data);
    const char *b = strstr(out.data, "req_seconds_bucket{route=\"/b\",le=\"0.005\"} 1\n"
                                     "req_seconds_bucket{route=\"/b\",le=\"0.01\"} 1\n");
    assert_non_null(b);
    assert_non_null(strstr(out.data, "req_seconds_bucket{route=\"/b\",le=\"10\"} 1\n"
                                     "req_seconds_bucket{route=\"/b\",le=\"+Inf\"} 3\n"
                                     "req_seconds_sum{route=\"/b\"} NaN\n"
                                     "req_seconds_count{route=\"/b\"} 3\n"));
    /* Children are sorted by label values: /a before /b. */
    char *pa = strstr(out.data, "route=\"/a\""), *pb = strstr(out.data, "route=\"/b\"");
    assert_true(pa && pb && pa < pb);
    assert_non_null(strstr(out.data, "req_seconds_bucket{route=\"/a\",le=\"2.5\"} 0\n"));
    sl_buf_destroy(&out);
    sl_metrics_free(m);
}

static void test_validation(void **state)
{
    sl_metrics *m = NULL;
    assert_int_equal(sl_metrics_new(&m), 0);
    sl_metric_family *f = (sl_metric_family *)&f, *const sentinel = f;
    sl_counter *c = NULL;
    const char *bad_names[] = {"", "1abc", "a-b", "a b", "é", NULL};
    for (int i = 0; i < 6; i++) {
        sl_metric_opts o = {.name = bad_names[i]};
        assert_int_equal(sl_metrics_register(m, SL_METRIC_COUNTER, &o, &f), SL_EINVAL);
    }
    assert_ptr_equal(f, sentinel);
    sl_metric_opts ok = {.name = "ns:sub_system_total"};
    assert_int_equal(sl_metrics_register(m, SL_METRIC_COUNTER, &ok, &f), 0);
    assert_int_equal(sl_metrics_register(m, SL_METRIC_GAUGE, &ok, &f), SL_EEXIST);
    assert_int_equal(sl_metrics_register(m, (sl_metric_type)9, &(sl_metric_opts){.name = "x"}, &f),
                     SL_EINVAL);

    const char *dup[] = {"a", "a"}, *reserved[] = {"__x"}, *colon[] = {"a:b"}, *le[] = {"le"};
    sl_metric_opts lo = {.name = "l", .labels = dup, .n_labels = 2};
    assert_int_equal(sl_metrics_register(m, SL_METRIC_COUNTER, &lo, &f), SL_EINVAL);
    lo = (sl_metric_opts){.name = "l", .labels = reserved, .n_labels = 1};
    assert_int_equal(sl_metrics_register(m, SL_METRIC_COUNTER, &lo, &f), SL_EINVAL);
    lo = (sl_metric_opts){.name = "l", .labels = colon, .n_labels = 1};
    assert_int_equal(sl_metrics_register(m, SL_METRIC_COUNTER, &lo, &f), SL_EINVAL);
    lo = (sl_metric_opts){.name = "l", .labels = le, .n_labels = 1};
    assert_int_equal(sl_metrics_register(m, SL_METRIC_HISTOGRAM, &lo, &f), SL_EINVAL);
    assert_int_equal(sl_metrics_register(m, SL_METRIC_GAUGE, &lo, &f), 0); /* fine elsewhere */

    const double dec[] = {1, 0.5}, eq[] = {1, 1}, nan[] = {NAN}, inf_mid[] = {1, INFINITY, 2};
    sl_histogram *h = NULL;
    assert_int_equal(sl_metrics_histogram(m, "h1", "", dec, 2, &h), SL_EINVAL);
    assert_int_equal(sl_metrics_histogram(m, "h2", "", eq, 2, &h), SL_EINVAL);
    assert_int_equal(sl_metrics_histogram(m, "h3", "", nan, 1, &h), SL_EINVAL);
    assert_int_equal(sl_metrics_histogram(m, "h4", "", inf_mid, 3, &h), SL_EINVAL);
    assert_int_equal(sl_metrics_histogram(m, "h5", "", dec, 0, &h), 0); /* only +Inf */
    sl_histogram_observe(h, -1e9);
    assert_int_equal(sl_histogram_count(h), 1);

    /* Children: type mismatch, missing values, callbacks. */
    sl_metric_family *g = NULL;
    const char *one[] = {"k"};
    lo = (sl_metric_opts){.name = "g", .labels = one, .n_labels = 1};
    assert_int_equal(sl_metrics_register(m, SL_METRIC_GAUGE, &lo, &g), 0);
    assert_int_equal(sl_metric_counter(g, (const char *[]){"x"}, &c), SL_EINVAL);
    sl_gauge *gv = NULL;
    assert_int_equal(sl_metric_gauge(g, NULL, &gv), SL_EINVAL);
    int calls = 0;
    assert_int_equal(sl_metric_func(g, (const char *[]){"cb"}, answer, &calls), 0);
    assert_int_equal(sl_metric_func(g, (const char *[]){"cb"}, answer, &calls), SL_EEXIST);
    assert_int_equal(sl_metric_gauge(g, (const char *[]){"cb"}, &gv), SL_EINVAL);
    assert_int_equal(sl_metric_gauge(g, (const char *[]){NULL}, &gv), 0); /* NULL reads as "" */
    sl_gauge *gv2 = NULL;
    assert_int_equal(sl_metric_gauge(g, (const char *[]){""}, &gv2), 0);
    assert_ptr_equal(gv, gv2);
    sl_metric_family *hf = NULL;
    assert_int_equal(
        sl_metrics_register(m, SL_METRIC_HISTOGRAM, &(sl_metric_opts){.name = "hf"}, &hf), 0);
    assert_int_equal(sl_metric_func(hf, NULL, answer, &calls), SL_EINVAL);
    assert_int_equal(sl_metrics_gauge_func(m, "nofn", "", NULL, NULL), SL_EINVAL);

    sl_buf out = {0};
    assert_int_equal(sl_metrics_write(m, &out), 0);
    assert_valid(out.data);
    assert_int_equal(calls, 1);
    sl_buf_destroy(&out);
    sl_metrics_free(m);
}

static void test_utf8_label_values(void **state)
{
    sl_metrics *m = NULL;
    assert_int_equal(sl_metrics_new(&m), 0);
    sl_metric_family *f = NULL;
    const char *labels[] = {"path"};
    assert_int_equal(sl_metrics_register(
                         m, SL_METRIC_COUNTER,
                         &(sl_metric_opts){.name = "p_total", .labels = labels, .n_labels = 1}, &f),
                     0);
    sl_counter *a = NULL, *b = NULL;
    assert_int_equal(sl_metric_counter(f, (const char *[]){"/caf\xC3\xA9\xff"}, &a), 0);
    assert_int_equal(sl_metric_counter(f, (const char *[]){"/caf\xC3\xA9\xff"}, &b), 0);
    assert_ptr_equal(a, b);
    sl_counter_inc(a);
    sl_buf out = {0};
    assert_int_equal(sl_metrics_write(m, &out), 0);
    assert_non_null(strstr(out.data, "p_total{path=\"/caf\xC3\xA9\xEF\xBF\xBD\"} 1\n"));
    assert_valid(out.data);
    sl_buf_destroy(&out);
    sl_metrics_free(m);
}

static void test_unregister_and_empty(void **state)
{
    sl_metrics *m = NULL;
    assert_int_equal(sl_metrics_new(&m), 0);
    sl_buf out = {0};
    assert_int_equal(sl_metrics_write(m, &out), 0);
    assert_non_null(out.data);
    assert_string_equal(out.data, "");
    assert_int_equal(out.len, 0);

    int calls = 0;
    assert_int_equal(sl_metrics_gauge_func(m, "pool_queue", "Jobs queued.", answer, &calls), 0);
    sl_counter *c = NULL;
    assert_int_equal(sl_metrics_counter(m, "kept_total", "", &c), 0);
    sl_metric_family *f = NULL;
    assert_int_equal(sl_metrics_register(m, SL_METRIC_GAUGE, &(sl_metric_opts){.name = "gone"}, &f),
                     0);
    sl_gauge *g = NULL;
    assert_int_equal(sl_metric_gauge(f, NULL, &g), 0);
    sl_metrics_unregister(m, f);
    sl_metrics_unregister(m, NULL);
    assert_int_equal(sl_metrics_write(m, &out), 0);
    assert_string_equal(out.data, "# HELP kept_total \n# TYPE kept_total counter\nkept_total 0\n"
                                  "# HELP pool_queue Jobs queued.\n# TYPE pool_queue gauge\n"
                                  "pool_queue 42.5\n");
    /* The name is free again. */
    assert_int_equal(sl_metrics_register(m, SL_METRIC_GAUGE, &(sl_metric_opts){.name = "gone"}, &f),
                     0);
    sl_buf_destroy(&out);
    sl_metrics_free(m);
    sl_metrics_free(NULL);
    sl_buf_destroy(NULL);
}

static void test_default_registry(void **state)
{
    sl_metrics *d = sl_metrics_default();
    assert_non_null(d);
    assert_ptr_equal(sl_metrics_default(), d);
    sl_metrics_free(d); /* ignored */
    sl_counter *c = NULL;
    assert_int_equal(sl_metrics_counter(d, "default_test_total", "", &c), 0);
    sl_counter_inc(c);
    assert_int_equal(sl_counter_value(c), 1);
}

/* The checker itself must reject what it is there to reject. */
static void test_checker_rejects(void **state)
{
    static const char *bad[] = {
        "x 1\n",                                                    /* no TYPE */
        "# TYPE x counter\nx -1\n",                                 /* negative counter */
        "# TYPE x gauge\nx{a=\"b} 1\n",                             /* unterminated */
        "# TYPE x gauge\nx{a=\"\\t\"} 1\n",                         /* bad escape */
        "# TYPE x gauge\nx{1a=\"b\"} 1\n",                          /* bad label name */
        "# TYPE x gauge\nx one\n",                                  /* bad value */
        "# TYPE x gauge\nx 1",                                      /* no newline */
        "# TYPE x gauge\nx 1\nx 2\n",                               /* duplicate series */
        "# TYPE x gauge\n# TYPE y gauge\nx 1\ny 1\nx{a=\"1\"} 1\n", /* not contiguous */
        "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
        "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n", /* no +Inf */
        "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 3\n",
        "# TYPE h histogram\nh_bucket{le=\"2\"} 0\nh_bucket{le=\"1\"} 0\n"
        "h_bucket{le=\"+Inf\"} 0\nh_sum 0\nh_count 0\n",
        "# TYPE 9x gauge\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        pc_state *s = calloc(1, sizeof *s);
        bool ok = pc_check(s, bad[i]);
        pc_done(s);
        free(s);
        if (ok) fail_msg("checker accepted case %zu: %s", i, bad[i]);
    }
    assert_valid("# HELP h x\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\n"
                 "h_sum 3\nh_count 2\n");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden),
        cmocka_unit_test(test_histogram_labels_default_buckets),
        cmocka_unit_test(test_validation),
        cmocka_unit_test(test_utf8_label_values),
        cmocka_unit_test(test_unregister_and_empty),
        cmocka_unit_test(test_default_registry),
        cmocka_unit_test(test_checker_rejects),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
