/* sluice-demo webhooks end to end: the real binary ($SLUICE_BINARY_DIR/apps/sluice-demo) with
 * --webhook-url pointed at a raw-socket receiver started here (webhook_receiver.h).
 *
 * - A receiver that fails twice with 500, then answers 200: the payload arrives exactly once
 *   (one 2xx, counted again after the demo has stopped, when no attempt can follow), three
 *   requests with the same X-Sluice-Webhook-Id and attempts 1, 2, 3; /metrics shows
 *   delivered 1 and retried 2. The payload names another URL: it is still sent to the
 *   configured target only (the request never picks where the demo connects).
 * - A receiver that always answers 500: three attempts, then the job is dead-lettered (its log
 *   line, sluice_demo_webhooks_dead_total 1, dead=1 in the shutdown summary).
 * - A receiver that answers 404: one attempt, failed for good (failed_total 1, no retry).
 * - Without --webhook-url the demo delivers to its own POST /webhooks/receiver.
 * - A --webhook-url that is not http(s) is refused at start (exit 2).
 * - With --redis (a real redis-server): the durable webhook job fails twice, then is
 *   delivered once, with the whole payload, and /metrics shows two retries. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "http_client.h"
#include "demo_proc.h"
#include "webhook_receiver.h"

/* Starts the demo with the given flags (NULL-terminated) and waits until it accepts. */
static void demo_start(demo *d, const char *const *flags)
{
    demo_start_with(d, "--db none --job-workers 2", flags);
}

typedef struct summary {
    unsigned long long submitted, succeeded, failed, dead, abandoned;
} summary;

static summary demo_stop(demo *d)
{
    int code = sl_test_proc_stop(&d->proc, SIGTERM, 60000);
    char *out = sl_test_read_file(d->out), *err = sl_test_read_file(d->err);
    if (code != 0) fail_msg("sluice-demo exited %d\nstdout:\n%s\nstderr:\n%s", code, out, err);
    summary s = {0};
    const char *p = strstr(out, "shutdown: jobs ");
    if (!p || sscanf(p,
                     "shutdown: jobs submitted=%llu succeeded=%llu failed=%llu dead=%llu "
                     "abandoned=%llu",
                     &s.submitted, &s.succeeded, &s.failed, &s.dead, &s.abandoned) != 5)
        fail_msg("no job summary in:\n%s", out);
    assert_int_equal(s.submitted, s.succeeded + s.failed + s.dead + s.abandoned);
    free(out);
    free(err);
    return s;
}

static void demo_clean(demo *d)
{
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", d->dir);
    assert_int_equal(system(cmd), 0);
}

static int call(int port, const char *method, const char *target, const char *body, tc_resp *r)
{
    memset(r, 0, sizeof *r);
    int fd = tc_connect(port);
    if (fd < 0) return -1;
    size_t bl = body ? strlen(body) : 0;
    char *raw = malloc(512 + bl);
    snprintf(raw, 512 + bl,
             "%s %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: %zu\r\n\r\n%s",
             method, target, bl, body ? body : "");
    tc_conn *c = malloc(sizeof *c);
    tc_init(c, fd);
    int st = -1;
    if (tc_sends(fd, raw) && tc_read_response_ex(c, r, false, 30000, NULL) == 0) st = r->status;
    free(c);
    free(raw);
    close(fd);
    return st;
}

/* The value of a counter in /metrics, or -1. */
static long long metric(int port, const char *name)
{
    tc_resp r;
    long long v = -1;
    if (call(port, "GET", "/metrics", NULL, &r) == 200 && r.body) {
        char needle[128];
        snprintf(needle, sizeof needle, "\n%s ", name);
        const char *p = strstr(r.body, needle);
        if (p) v = strtoll(p + strlen(needle), NULL, 10);
    }
    tc_resp_free(&r);
    return v;
}

typedef struct mwait {
    int port;
    const char *name;
    long long want;
} mwait;

static bool metric_is(void *arg)
{
    mwait *m = arg;
    return metric(m->port, m->name) == m->want;
}

static void wait_metric(int port, const char *name, long long want)
{
    mwait m = {port, name, want};
    if (!sl_test_wait_until(metric_is, &m, 30000))
        fail_msg("%s: got %lld, want %lld", name, metric(port, name), want);
}

static bool at_least(_Atomic int *v, int n)
{
    return atomic_load(v) >= n;
}

#define DELIVERED "sluice_demo_webhooks_delivered_total"
#define RETRIED   "sluice_demo_webhooks_retried_total"
#define DEAD      "sluice_demo_webhooks_dead_total"
#define FAILED    "sluice_demo_webhooks_failed_total"
#define RECEIVED  "sluice_demo_webhooks_received_total"

static void post_webhook(int port, const char *body, char *job_id, size_t cap)
{
    tc_resp r;
    assert_int_equal(call(port, "POST", "/webhooks", body, &r), 202);
    const char *p = strstr(r.body, "\"job_id\":\"");
    assert_non_null(p);
    p += 10;
    size_t n = strcspn(p, "\"");
    assert_true(n < cap);
    memcpy(job_id, p, n);
    job_id[n] = 0;
    tc_resp_free(&r);
}

static void test_fails_twice_then_delivered_once(void **state)
{
    (void)state;
    wr w;
    assert_int_equal(wr_start(&w, WR_FAIL_FIRST, 2), 0);
    /* A second receiver the payload names: nothing may ever reach it. */
    wr decoy;
    assert_int_equal(wr_start(&decoy, WR_STATUS, 200), 0);
    char url[128], payload[256], flag[160];
    wr_url(&w, url, sizeof url);
    snprintf(flag, sizeof flag, "--webhook-url=%s", url);
    snprintf(payload, sizeof payload,
             "{\"event\":\"order.paid\",\"order\":42,\"url\":\"http://127.0.0.1:%d/hook\"}",
             decoy.port);
    const char *flags[] = {flag, NULL};
    demo d;
    demo_start(&d, flags);
    char id[80];
    post_webhook(d.port, payload, id, sizeof id);
    assert_true(SL_WAIT_UNTIL(at_least(&w.ok, 1), 30000));
    wait_metric(d.port, DELIVERED, 1);
    wait_metric(d.port, RETRIED, 2);
    assert_int_equal(metric(d.port, DEAD), 0);
    assert_int_equal(metric(d.port, FAILED), 0);
    assert_int_equal(metric(d.port, RECEIVED), 0); /* the demo's own receiver was not used */
    summary s = demo_stop(&d);
    /* The demo is gone: no attempt can follow. Exactly one delivery, after two failures. */
    assert_int_equal(atomic_load(&w.ok), 1);
    assert_int_equal(atomic_load(&w.requests), 3);
    assert_int_equal(atomic_load(&decoy.accepted), 0);
    pthread_mutex_lock(&w.mu);
    assert_string_equal(w.body, payload);
    for (int i = 0; i < 3; i++) {
        assert_string_equal(w.ids[i], id);
        char want[8];
        snprintf(want, sizeof want, "%d", i + 1);
        assert_string_equal(w.attempts[i], want);
    }
    pthread_mutex_unlock(&w.mu);
    assert_int_equal(s.submitted, 1);
    assert_int_equal(s.succeeded, 1);
    wr_stop(&w);
    wr_stop(&decoy);
    demo_clean(&d);
}

static void test_always_fails_dead_lettered(void **state)
{
    (void)state;
    wr w;
    assert_int_equal(wr_start(&w, WR_STATUS, 500), 0);
    char url[128], flag[160];
    wr_url(&w, url, sizeof url);
    snprintf(flag, sizeof flag, "--webhook-url=%s", url);
    const char *flags[] = {flag, NULL};
    demo d;
    demo_start(&d, flags);
    char id[80];
    post_webhook(d.port, "{\"event\":\"doomed\"}", id, sizeof id);
    wait_metric(d.port, DEAD, 1);
    assert_int_equal(metric(d.port, RETRIED), 2); /* 3 attempts: the pool's max_attempts */
    assert_int_equal(metric(d.port, DELIVERED), 0);
    assert_int_equal(atomic_load(&w.requests), 3);
    assert_int_equal(atomic_load(&w.ok), 0);
    summary s = demo_stop(&d);
    assert_int_equal(s.dead, 1);
    assert_int_equal(atomic_load(&w.requests), 3);
    char *err = sl_test_read_file(d.err);
    const char *line = strstr(err, "webhook dead-lettered");
    assert_non_null(line);
    assert_non_null(strstr(line, id));
    assert_non_null(strstr(err, "job dead after retries")); /* the pool's own on_dead report */
    free(err);
    wr_stop(&w);
    demo_clean(&d);
}

static void test_4xx_is_permanent(void **state)
{
    (void)state;
    wr w;
    assert_int_equal(wr_start(&w, WR_STATUS, 404), 0);
    char url[128], flag[160];
    wr_url(&w, url, sizeof url);
    snprintf(flag, sizeof flag, "--webhook-url=%s", url);
    const char *flags[] = {flag, NULL};
    demo d;
    demo_start(&d, flags);
    char id[80];
    post_webhook(d.port, "{\"event\":\"gone\"}", id, sizeof id);
    wait_metric(d.port, FAILED, 1);
    assert_int_equal(metric(d.port, RETRIED), 0);
    assert_int_equal(metric(d.port, DEAD), 0);
    summary s = demo_stop(&d);
    assert_int_equal(s.failed, 1);
    assert_int_equal(atomic_load(&w.requests), 1);
    wr_stop(&w);
    demo_clean(&d);
}

static void test_default_target_is_own_receiver(void **state)
{
    (void)state;
    demo d;
    demo_start(&d, NULL);
    char id[80];
    post_webhook(d.port, "{\"event\":\"hello\"}", id, sizeof id);
    wait_metric(d.port, RECEIVED, 1);
    wait_metric(d.port, DELIVERED, 1);
    demo_stop(&d);
    char *out = sl_test_read_file(d.out), *err = sl_test_read_file(d.err);
    char want[128];
    snprintf(want, sizeof want, "http://127.0.0.1:%d/webhooks/receiver", d.port);
    assert_non_null(strstr(out, want)); /* the banner names the target */
    assert_non_null(strstr(out, "POST /webhooks/receiver"));
    char got[128];
    snprintf(got, sizeof got, "webhook_id=%s", id);
    assert_non_null(strstr(err, got));
    free(out);
    free(err);
    demo_clean(&d);
}

static void test_bad_url_refused(void **state)
{
    (void)state;
    const char *bindir = getenv("SLUICE_BINARY_DIR");
    assert_non_null(bindir);
    const char *bad[] = {"file:///etc/passwd", "gopher://x", "http://a b", "http://"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char bin[512];
        snprintf(bin, sizeof bin, "%s/apps/sluice-demo", bindir);
        char *argv[] = {bin, "--webhook-url", (char *)bad[i], "--db", "none", "--port", "0", NULL};
        sl_test_proc p;
        assert_int_equal(sl_test_proc_start(&p, argv, true), 0);
        assert_int_equal(sl_test_proc_stop(&p, 0, 30000), 2);
    }
}

static void test_redis_fails_twice_then_delivered_once(void **state)
{
    (void)state;
    sl_test_redis redis;
    assert_int_equal(sl_test_redis_start(&redis), 0);
    wr w;
    assert_int_equal(wr_start(&w, WR_FAIL_FIRST, 2), 0);
    char url[128], flag[160], rflag[64];
    wr_url(&w, url, sizeof url);
    snprintf(flag, sizeof flag, "--webhook-url=%s", url);
    snprintf(rflag, sizeof rflag, "--redis=redis://127.0.0.1:%d", redis.port);
    const char *flags[] = {flag, rflag, NULL};
    demo d;
    demo_start(&d, flags);
    const char *payload = "{\"event\":\"order.shipped\",\"note\":\"line\\nbreak\"}";
    char id[80];
    post_webhook(d.port, payload, id, sizeof id);
    assert_true(SL_WAIT_UNTIL(at_least(&w.ok, 1), 30000));
    wait_metric(d.port, DELIVERED, 1);
    wait_metric(d.port, RETRIED, 2);
    assert_int_equal(metric(d.port, DEAD), 0);
    int code = sl_test_proc_stop(&d.proc, SIGTERM, 60000);
    assert_int_equal(code, 0);
    assert_int_equal(atomic_load(&w.ok), 1);
    assert_int_equal(atomic_load(&w.requests), 3);
    pthread_mutex_lock(&w.mu);
    assert_string_equal(w.body, payload);
    assert_string_equal(w.ids[0], id);
    assert_string_equal(w.ids[2], id);
    assert_string_equal(w.attempts[2], "3");
    pthread_mutex_unlock(&w.mu);
    wr_stop(&w);
    demo_clean(&d);
    assert_true(sl_test_redis_stop(&redis) >= 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fails_twice_then_delivered_once),
        cmocka_unit_test(test_always_fails_dead_lettered),
        cmocka_unit_test(test_4xx_is_permanent),
        cmocka_unit_test(test_default_target_is_own_receiver),
        cmocka_unit_test(test_bad_url_refused),
        cmocka_unit_test(test_redis_fails_twice_then_delivered_once),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
