/* sluice-demo end to end: the real binary ($SLUICE_BINARY_DIR/apps/sluice-demo, built with the
 * same sanitizer as this test) started as a process on a free port, driven over raw sockets.
 *
 * Every route's paths: 201/200/404/400/413 on users, 202/503 on webhooks, 400/200 and the
 * client-gone stop on search, 200/422/502 on batch, 401 without a key, 429 from the per-IP and
 * the per-key rules with exact headers (Retry-After is the limiter's delay rounded up: with a
 * rate of 0.25/s an empty bucket needs 4 s for the next token, so "4"), X-Forwarded-For
 * ignored from an untrusted peer and honoured from a trusted one (two runs, with and without
 * --trusted-proxies), /metrics through the strict text-format checker, and SIGTERM under load:
 * exit 0 and a summary where every job is accounted for (submitted = succeeded + failed +
 * dead + abandoned, and each abandoned job has its "handed back" log line).
 *
 * Clients pick their source address in 127.0.0.0/8 (all loopback on Linux), which gives each
 * check its own per-IP budget. The demo's stdout and stderr go to files (through sh -c exec),
 * which the test reads for the banner, the logs and the shutdown summary. */
#include <arpa/inet.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "http_client.h"
#include "demo_proc.h"
#include "../unit/obs/prom_check.h"
#include "webhook_receiver.h"

/* Starts the demo with the given flags (NULL-terminated) and waits until it accepts. */
static void demo_start(demo *d, const char *const *flags)
{
    demo_start_with(d, "--db sqlite::memory:", flags);
}

static size_t count_of(const char *hay, const char *needle)
{
    size_t n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

static size_t count_in(const char *path, const char *needle)
{
    char *s = sl_test_read_file(path);
    size_t n = count_of(s, needle);
    free(s);
    return n;
}

static bool file_has(const char *path, const char *needle)
{
    char *s = sl_test_read_file(path);
    bool ok = strstr(s, needle) != NULL;
    free(s);
    return ok;
}

typedef struct summary {
    unsigned long long submitted, succeeded, failed, dead, abandoned;
    bool hurried; /* the summary says a second signal came */
} summary;

/* SIGTERM, exit 0, and the job summary parsed and balanced. */
static summary demo_stop_sig(demo *d, int sig)
{
    int code = sl_test_proc_stop(&d->proc, sig, 60000);
    char *out = sl_test_read_file(d->out), *err = sl_test_read_file(d->err);
    if (code != 0) fail_msg("sluice-demo exited %d\nstdout:\n%s\nstderr:\n%s", code, out, err);
    summary s = {0};
    const char *p = strstr(out, "shutdown: jobs ");
    if (!p || sscanf(p,
                     "shutdown: jobs submitted=%llu succeeded=%llu failed=%llu dead=%llu "
                     "abandoned=%llu",
                     &s.submitted, &s.succeeded, &s.failed, &s.dead, &s.abandoned) != 5)
        fail_msg("no job summary in:\n%s", out);
    assert_true(strstr(out, "shutdown: complete") != NULL);
    s.hurried = strstr(out, "second signal=yes") != NULL;
    assert_int_equal(s.submitted, s.succeeded + s.failed + s.dead + s.abandoned);
    /* Every abandoned job was reported by the on_abandoned hook, by id. */
    assert_int_equal(count_of(err, "job handed back at shutdown"), s.abandoned);
    free(out);
    free(err);
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", d->dir);
    assert_int_equal(system(cmd), 0);
    return s;
}

static summary demo_stop(demo *d)
{
    return demo_stop_sig(d, SIGTERM);
}

/* One request from source address src (127.0.0.x) on a fresh connection. */
static int req_from(int port, const char *src, const char *raw, tc_resp *r)
{
    /* No cmocka asserts here: the load threads call it too. -1 on any failure. */
    memset(r, 0, sizeof *r);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    struct sockaddr_in me = {.sin_family = AF_INET};
    inet_pton(AF_INET, src, &me.sin_addr);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    if (bind(fd, (struct sockaddr *)&me, sizeof me) < 0 ||
        connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        close(fd);
        return -1;
    }
    tc_conn *c = malloc(sizeof *c);
    tc_init(c, fd);
    int st = -1;
    if (tc_sends(fd, raw) && tc_read_response_ex(c, r, false, 30000, NULL) == 0) st = r->status;
    free(c);
    close(fd);
    return st;
}

/* Builds a request: method, target, optional extra header lines ("A: b\r\n"), optional body. */
static int call(int port, const char *src, const char *method, const char *target, const char *hdrs,
                const char *body, tc_resp *r)
{
    size_t bl = body ? strlen(body) : 0;
    size_t cap = 1024 + bl + (hdrs ? strlen(hdrs) : 0);
    char *raw = malloc(cap);
    snprintf(raw, cap,
             "%s %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n%sContent-Length: %zu\r\n\r\n%s",
             method, target, hdrs ? hdrs : "", bl, body ? body : "");
    int st = req_from(port, src, raw, r);
    free(raw);
    return st;
}

static int call_status(int port, const char *src, const char *method, const char *target,
                       const char *hdrs, const char *body)
{
    tc_resp r;
    int st = call(port, src, method, target, hdrs, body, &r);
    tc_resp_free(&r);
    return st;
}

static void expect_hdr(const tc_resp *r, const char *name, const char *want)
{
    char v[256];
    if (!tc_find_hdr(r->head, name, v, sizeof v)) fail_msg("no %s in:\n%s", name, r->head);
    if (strcmp(v, want)) fail_msg("%s: got '%s', want '%s'", name, v, want);
}

#define PRO "X-API-Key: demo-pro\r\n"

/* ---- users, search, batch, health, metrics, 401 --------------------------------------------- */

static void check_users(int port)
{
    tc_resp r;
    const char *ada = "{\"name\":\"Ada\",\"email\":\"ada@example.com\"}";
    assert_int_equal(call(port, "127.0.0.1", "POST", "/users", NULL, ada, &r), 401);
    char v[256];
    assert_non_null(tc_find_hdr(r.head, "WWW-Authenticate", v, sizeof v));
    assert_non_null(strstr(r.body, "missing api key"));
    tc_resp_free(&r);

    assert_int_equal(call(port, "127.0.0.1", "POST", "/users", PRO, ada, &r), 201);
    expect_hdr(&r, "Location", "/users/1");
    expect_hdr(&r, "Content-Type", "application/json");
    assert_non_null(strstr(r.body, "\"id\":1"));
    assert_non_null(strstr(r.body, "\"welcome_email\":\"queued\""));
    assert_non_null(tc_find_hdr(r.head, "X-RateLimit-Remaining", v, sizeof v));
    tc_resp_free(&r);

    assert_int_equal(call(port, "127.0.0.1", "GET", "/users/1", PRO, NULL, &r), 200);
    assert_non_null(strstr(r.body, "\"name\":\"Ada\""));
    assert_non_null(strstr(r.body, "\"email\":\"ada@example.com\""));
    tc_resp_free(&r);
    assert_int_equal(call_status(port, "127.0.0.1", "GET", "/users/999", PRO, NULL), 404);
    assert_int_equal(call_status(port, "127.0.0.1", "GET", "/users/01", PRO, NULL), 404);
    assert_int_equal(call_status(port, "127.0.0.1", "GET", "/users/1", NULL, NULL), 401);

    assert_int_equal(call(port, "127.0.0.1", "POST", "/users", PRO, "{\"name\":", &r), 400);
    assert_non_null(strstr(r.body, "\"error\":\"invalid JSON"));
    tc_resp_free(&r);
    assert_int_equal(call(port, "127.0.0.1", "POST", "/users", PRO, "{\"name\":\"x\"}", &r), 400);
    assert_non_null(strstr(r.body, "missing field \\\"email\\\""));
    tc_resp_free(&r);
    assert_int_equal(call_status(port, "127.0.0.1", "POST", "/users", PRO,
                                 "{\"name\":\"x\",\"email\":\"nope\"}"),
                     400);
    assert_int_equal(call_status(port, "127.0.0.1", "POST", "/users", PRO, "[1,2]"), 400);
    char *big = malloc(8192);
    memset(big, 'a', 8191);
    big[8191] = 0;
    memcpy(big, "{\"name\":\"", 9);
    assert_int_equal(call_status(port, "127.0.0.1", "POST", "/users", PRO, big), 413);
    free(big);
}

static bool metrics_has(int port, const char *needle)
{
    tc_resp r;
    bool ok = call(port, "127.0.0.1", "GET", "/metrics", NULL, NULL, &r) == 200 &&
              strstr(r.body, needle) != NULL;
    tc_resp_free(&r);
    return ok;
}

static void check_search_batch_health(demo *d)
{
    int port = d->port;
    tc_resp r;
    assert_int_equal(call(port, "127.0.0.1", "GET", "/healthz", NULL, NULL, &r), 200);
    assert_non_null(strstr(r.body, "\"status\":\"ok\""));
    assert_non_null(strstr(r.body, "\"workers\":"));
    tc_resp_free(&r);
    assert_int_equal(call_status(port, "127.0.0.1", "GET", "/search", NULL, NULL), 400);
    assert_int_equal(call(port, "127.0.0.1", "GET", "/search?q=c+concurrency", NULL, NULL, &r),
                     200);
    assert_non_null(strstr(r.body, "\"q\":\"c concurrency\""));
    tc_resp_free(&r);

    assert_int_equal(call(port, "127.0.0.1", "POST", "/batch", PRO,
                          "{\"items\":[\"a\",\"bc\",\"d\",\"e\",\"f\"]}", &r),
                     200);
    assert_string_equal(r.body, "{\"results\":[{\"item\":\"a\",\"result\":\"A\"},{\"item\":\"bc\","
                                "\"result\":\"BC\"},{\"item\":\"d\",\"result\":\"D\"},{\"item\":"
                                "\"e\",\"result\":\"E\"},{\"item\":\"f\",\"result\":\"F\"}]}");
    tc_resp_free(&r);
    assert_int_equal(call(port, "127.0.0.1", "POST", "/batch", PRO,
                          "{\"items\":[\"a\",\"b\",\"fail\",\"c\"]}", &r),
                     422);
    assert_non_null(strstr(r.body, "\"index\":2"));
    tc_resp_free(&r);
    assert_int_equal(
        call_status(port, "127.0.0.1", "POST", "/batch", PRO, "{\"items\":[\"fail-upstream\"]}"),
        502);
    assert_int_equal(call_status(port, "127.0.0.1", "POST", "/batch", PRO, "{\"items\":[1]}"), 400);
    /* Duplicate keys are refused, as POST /users refuses them (not "the last one wins"). */
    assert_int_equal(call(port, "127.0.0.1", "POST", "/batch", PRO,
                          "{\"items\":[\"fail\"],\"items\":[\"a\"]}", &r),
                     400);
    assert_non_null(strstr(r.body, "duplicate"));
    tc_resp_free(&r);
    assert_int_equal(call_status(port, "127.0.0.1", "POST", "/batch", NULL, "{\"items\":[\"a\"]}"),
                     401);

    /* A client that leaves stops its search: the request ctx is cancelled, the handler logs. */
    int fd = tc_connect(port);
    assert_true(fd >= 0);
    assert_true(tc_sends(fd, "GET /search?q=slow HTTP/1.1\r\nHost: t\r\n\r\n"));
    /* One search started before (the 400 stops earlier): wait for this one to start. */
    assert_true(SL_WAIT_UNTIL(count_in(d->err, "search started") == 2, 20000));
    close(fd);
    assert_true(SL_WAIT_UNTIL(file_has(d->err, "search stopped"), 20000));
}

static void check_metrics(int port)
{
    tc_resp r;
    /* The stopped search's after hook runs on its reactor a moment after the handler logged. */
    assert_true(SL_WAIT_UNTIL(metrics_has(port, "http_requests_in_flight 1\n"), 10000));
    assert_int_equal(call(port, "127.0.0.1", "GET", "/metrics", NULL, NULL, &r), 200);
    expect_hdr(&r, "Content-Type", SL_METRICS_CONTENT_TYPE);
    pc_state *s = calloc(1, sizeof *s);
    bool ok = pc_check(s, r.body);
    pc_done(s);
    if (!ok) fail_msg("invalid exposition: %s\n%s", s->err, r.body);
    free(s);
    const char *want[] = {
        "http_requests_total{route=\"POST /users\",method=\"POST\",code=\"201\"} 1\n",
        "http_requests_total{route=\"POST /users\",method=\"POST\",code=\"401\"} 1\n",
        "http_requests_total{route=\"GET /users/{id}\",method=\"GET\",code=\"200\"} 1\n",
        "http_request_duration_seconds_bucket{route=\"POST /batch\",le=\"+Inf\"}",
        "http_requests_in_flight 1\n", /* this scrape */
        "sluice_http_connections{server=\"api\"}",
        "sluice_pool_queued{pool=\"jobs\"}",
        "sluice_pool_submitted_total{pool=\"jobs\"} 1\n",
        "sluice_pool_rejected_total{pool=\"jobs\"} 0\n",
        "sluice_ratelimit_allowed_total{rule=\"ip\"}",
        "sluice_ratelimit_missing_key_total{rule=\"auth\"} 3\n",
        "sluice_ratelimit_keys{rule=\"ip\"} 1\n",
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        if (!strstr(r.body, want[i])) fail_msg("missing %s in:\n%s", want[i], r.body);
    tc_resp_free(&r);
}

static void test_routes(void **state)
{
    (void)state;
    demo d;
    const char *flags[] = {"--search-ms", "1500", "--item-ms", "5", "--email-ms", "10", NULL};
    demo_start(&d, flags);
    assert_true(SL_WAIT_UNTIL(file_has(d.out, "Ctrl-C for a graceful shutdown"), 10000));
    char *out = sl_test_read_file(d.out);
    assert_non_null(strstr(out, "POST /users"));
    assert_non_null(strstr(out, "curl "));
    free(out);
    check_users(d.port);
    check_search_batch_health(&d);
    check_metrics(d.port);
    summary s = demo_stop(&d);
    assert_int_equal(s.submitted, 1); /* one welcome e-mail */
}

/* ---- webhooks: 202, then 503 + Retry-After when the queue is full -----------------------------
 * The deliveries go to a receiver that never answers (webhook_receiver.h, WR_HANG), with a 30 s
 * attempt deadline: the one worker stays busy and the queue fills. */

static void test_webhooks_full(void **state)
{
    (void)state;
    wr hang;
    assert_int_equal(wr_start(&hang, WR_HANG, 0), 0);
    char url[128], flag[160];
    wr_url(&hang, url, sizeof url);
    snprintf(flag, sizeof flag, "--webhook-url=%s", url);
    demo d;
    const char *flags[] = {"--job-workers", "1",  "--queue",         "2",   "--webhook-timeout-ms",
                           "30000",         flag, "--jobs-drain-ms", "200", NULL};
    demo_start(&d, flags);
    int accepted = 0, full = 0;
    for (int i = 0; i < 8; i++) {
        tc_resp r;
        int st = call(d.port, "127.0.0.1", "POST", "/webhooks", NULL, "{\"event\":\"x\"}", &r);
        if (st == 202) {
            accepted++;
            assert_non_null(strstr(r.body, "\"job_id\":\"webhook-"));
        } else {
            assert_int_equal(st, 503);
            full++;
            char v[64];
            assert_non_null(tc_find_hdr(r.head, "Retry-After", v, sizeof v));
            /* The queue's real drain, cold pool included: 1 running + 2 queued 30 s jobs on
             * one worker is 90 s (the pool's own cold estimate said 1). */
            char *end;
            long ra = strtol(v, &end, 10);
            assert_true(*end == '\0' && ra >= 60 && ra <= 3600);
            assert_non_null(strstr(r.body, "\"error\":\"job queue full"));
        }
        tc_resp_free(&r);
    }
    /* The two queue slots always fill; one more fits once the worker has taken the first job
     * (not yet, on a loaded machine), and one more if it took two at once (a batch). Never more
     * than that: the queue is bounded. */
    assert_true(accepted >= 2 && accepted <= 4);
    assert_true(full >= 4);
    assert_true(SL_WAIT_UNTIL(atomic_load(&hang.accepted) >= 1, 30000)); /* one is in flight */
    summary s = demo_stop(&d);
    assert_int_equal(s.submitted, (unsigned long long)accepted);
    /* A delivery hanging for 30 s, 200 ms to drain: the one in flight is cancelled by the
     * shutdown deadline and handed back with the queued ones. */
    assert_int_equal(s.abandoned, (unsigned long long)accepted);
    wr_stop(&hang);
}

/* ---- 429s with exact headers; X-Forwarded-For from an untrusted peer ------------------------- */

static const char *const strict[] = {"--ip-rate", "0.25",         "--ip-burst", "3", "--free-rate",
                                     "0.25",      "--free-burst", "2",          NULL};

static void test_limits_untrusted(void **state)
{
    (void)state;
    demo d;
    demo_start(&d, strict);
    tc_resp r;
    /* Per IP: burst 3, then 429. Unmatched routes are limited too (a 404 flood costs budget). */
    for (int i = 0; i < 3; i++) {
        assert_int_equal(call(d.port, "127.0.0.2", "GET", "/nope", NULL, NULL, &r), 404);
        char want[8];
        snprintf(want, sizeof want, "%d", 2 - i);
        expect_hdr(&r, "X-RateLimit-Remaining", want);
        tc_resp_free(&r);
    }
    assert_int_equal(call(d.port, "127.0.0.2", "GET", "/nope", NULL, NULL, &r), 429);
    expect_hdr(&r, "Retry-After", "4"); /* 1 token at 0.25/s, rounded up */
    /* Every policy the client is subject to; RateLimit: the one that refused. */
    expect_hdr(&r, "RateLimit-Policy", "\"global\";q=2000;w=2, \"ip\";q=3;w=12");
    expect_hdr(&r, "RateLimit", "\"ip\";r=0;t=12");
    expect_hdr(&r, "X-RateLimit-Limit", "3");
    expect_hdr(&r, "X-RateLimit-Remaining", "0");
    expect_hdr(&r, "Content-Type", "application/json");
    assert_string_equal(r.body, "{\"error\":\"rate limit exceeded\",\"retry_after\":4}");
    tc_resp_free(&r);
    /* A spoofed X-Forwarded-For from an untrusted peer changes nothing. */
    assert_int_equal(
        call_status(d.port, "127.0.0.2", "GET", "/nope", "X-Forwarded-For: 198.51.100.9\r\n", NULL),
        429);
    /* Health checks and scrapes are never limited. */
    assert_int_equal(call_status(d.port, "127.0.0.2", "GET", "/healthz", NULL, NULL), 200);

    /* Per key (tier free: burst 2 at 0.25/s) from a fresh address: the third is 429 by the key
     * rule, and its per-IP reservation is given back. */
    const char *free_key = "X-API-Key: demo-free\r\n";
    for (int i = 0; i < 2; i++)
        assert_int_equal(call_status(d.port, "127.0.0.3", "GET", "/users/1", free_key, NULL), 404);
    assert_int_equal(call(d.port, "127.0.0.3", "GET", "/users/1", free_key, NULL, &r), 429);
    expect_hdr(&r, "Retry-After", "4");
    expect_hdr(&r, "RateLimit-Policy",
               "\"global\";q=2000;w=2, \"ip\";q=3;w=12, \"apikey\";q=2;w=8");
    tc_resp_free(&r);
    /* The IP rule still has the one token the key rule's rejection did not spend. */
    assert_int_equal(call(d.port, "127.0.0.3", "GET", "/nope", NULL, NULL, &r), 404);
    expect_hdr(&r, "X-RateLimit-Remaining", "0");
    tc_resp_free(&r);
    /* A missing key is 401 before any budget is touched. */
    assert_int_equal(call_status(d.port, "127.0.0.4", "POST", "/batch", NULL, "{}"), 401);
    demo_stop(&d);
}

/* ---- X-Forwarded-For honoured from a trusted proxy ------------------------------------------ */

static void test_limits_trusted_proxy(void **state)
{
    (void)state;
    demo d;
    const char *flags[] = {
        "--ip-rate", "0.25", "--ip-burst", "3", "--trusted-proxies", "127.0.0.1/32,10.0.0.0/8",
        NULL};
    demo_start(&d, flags);
    const char *xff = "X-Forwarded-For: 203.0.113.7\r\n";
    for (int i = 0; i < 3; i++)
        assert_int_equal(call_status(d.port, "127.0.0.1", "GET", "/nope", xff, NULL), 404);
    assert_int_equal(call_status(d.port, "127.0.0.1", "GET", "/nope", xff, NULL), 429);
    /* Another client behind the same proxy has its own budget... */
    assert_int_equal(
        call_status(d.port, "127.0.0.1", "GET", "/nope", "X-Forwarded-For: 203.0.113.8\r\n", NULL),
        404);
    /* ...and the proxy itself too. */
    assert_int_equal(call_status(d.port, "127.0.0.1", "GET", "/nope", NULL, NULL), 404);
    /* An untrusted peer naming the limited client is keyed by its own address. */
    assert_int_equal(call_status(d.port, "127.0.0.6", "GET", "/nope", xff, NULL), 404);
    demo_stop(&d);
}

/* ---- Exactly one forwarding header is believed (issue 13) ------------------------------------ */

/* A trusted proxy that appends X-Forwarded-For passes a client's own Forwarded header through:
 * a client that rotates it must still be one client (5 of 20 allowed with burst 5, not 20). */
static void test_client_forwarded_ignored(void **state)
{
    (void)state;
    demo d;
    const char *flags[] = {"--ip-rate",         "0.25",         "--ip-burst", "5",
                           "--trusted-proxies", "127.0.0.1/32", NULL};
    demo_start(&d, flags);
    int ok = 0, limited = 0;
    for (int i = 0; i < 20; i++) {
        char h[160];
        snprintf(h, sizeof h, "Forwarded: for=198.51.100.%d\r\nX-Forwarded-For: 203.0.113.50\r\n",
                 i + 1);
        int st = call_status(d.port, "127.0.0.1", "GET", "/nope", h, NULL);
        ok += st == 404;
        limited += st == 429;
    }
    assert_int_equal(ok, 5);
    assert_int_equal(limited, 15);
    demo_stop(&d);
    /* --client-ip-header forwarded: then Forwarded is the one, and X-Forwarded-For is ignored. */
    const char *fflags[] = {
        "--ip-rate",          "0.25",      "--ip-burst", "5", "--trusted-proxies", "127.0.0.1/32",
        "--client-ip-header", "forwarded", NULL};
    demo_start(&d, fflags);
    ok = 0;
    for (int i = 0; i < 20; i++) {
        char h[160];
        snprintf(h, sizeof h, "X-Forwarded-For: 198.51.100.%d\r\nForwarded: for=203.0.113.50\r\n",
                 i + 1);
        ok += call_status(d.port, "127.0.0.1", "GET", "/nope", h, NULL) == 404;
    }
    assert_int_equal(ok, 5);
    demo_stop(&d);
}

/* ---- A welcome e-mail that cannot be queued is counted and logged (issue 13) ------------------
 */

static void test_welcome_not_queued_counted(void **state)
{
    (void)state;
    demo d;
    const char *flags[] = {"--job-workers",   "1",   "--queue", "2", "--email-ms", "30000",
                           "--jobs-drain-ms", "200", NULL};
    demo_start(&d, flags);
    int not_queued = 0;
    for (int i = 0; i < 4; i++) { /* one runs, two wait, the fourth finds no room in 1 s */
        char u[64];               /* e-mails are unique in the database */
        snprintf(u, sizeof u, "{\"name\":\"Di\",\"email\":\"di%d@example.com\"}", i);
        tc_resp r;
        assert_int_equal(call(d.port, "127.0.0.1", "POST", "/users", PRO, u, &r), 201);
        not_queued += strstr(r.body, "\"welcome_email\":\"not queued\"") != NULL;
        tc_resp_free(&r);
    }
    assert_true(not_queued >= 1);
    char want[64];
    snprintf(want, sizeof want, "sluice_demo_jobs_not_queued %d", not_queued);
    assert_true(metrics_has(d.port, want));
    assert_true(
        SL_WAIT_UNTIL(count_in(d.err, "welcome e-mail not queued") == (size_t)not_queued, 2000));
    demo_stop(&d);
}

/* ---- The user store is bounded (issue 13) -----------------------------------------------------
 */

static void test_users_bounded(void **state)
{
    (void)state;
    demo d;
    const char *flags[] = {"--users-max", "3", "--db", "none", NULL}; /* the in-memory store */
    demo_start(&d, flags);
    const char *u = "{\"name\":\"Bo\",\"email\":\"bo@example.com\"}";
    for (int i = 0; i < 3; i++)
        assert_int_equal(call_status(d.port, "127.0.0.1", "POST", "/users", PRO, u), 201);
    tc_resp r;
    assert_int_equal(call(d.port, "127.0.0.1", "POST", "/users", PRO, u, &r), 507);
    assert_non_null(strstr(r.body, "user store full"));
    tc_resp_free(&r);
    assert_int_equal(call_status(d.port, "127.0.0.1", "GET", "/users/3", PRO, NULL), 200);
    assert_int_equal(call_status(d.port, "127.0.0.1", "GET", "/users/4", PRO, NULL), 404);
    demo_stop(&d);
}

/* ---- /healthz reports saturation (issue 13) -----------------------------------------------------
 */

typedef struct bg_search {
    int port;
    char src[16];
    int status;
} bg_search;

static void *search_bg(void *arg)
{
    bg_search *b = arg;
    tc_resp r;
    b->status = call(b->port, b->src, "GET", "/search?q=x", NULL, NULL, &r);
    tc_resp_free(&r);
    return NULL;
}

static void test_healthz_saturated(void **state)
{
    (void)state;
    demo d;
    const char *flags[] = {"--handler-workers", "1", "--search-ms", "1500", "--no-limits", NULL};
    demo_start(&d, flags);
    bg_search b[2] = {{.port = d.port, .src = "127.0.0.31"}, {.port = d.port, .src = "127.0.0.32"}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&th[i], NULL, search_bg, &b[i]), 0);
    /* One search runs, the other waits: saturated, and /healthz says so. */
    tc_resp r;
    bool seen = false;
    int64_t dl = sl_mono_ns() + SL_SEC(5);
    while (!seen && sl_mono_ns() < dl) {
        int st = call(d.port, "127.0.0.33", "GET", "/healthz", NULL, NULL, &r);
        seen = st == 503 && strstr(r.body, "\"status\":\"saturated\"") &&
               strstr(r.body, "\"queued\":1");
        tc_resp_free(&r);
    }
    assert_true(seen);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(b[0].status, 200);
    assert_int_equal(b[1].status, 200);
    assert_int_equal(call_status(d.port, "127.0.0.33", "GET", "/healthz", NULL, NULL), 200);
    demo_stop(&d);
}

/* ---- A second SIGTERM skips the drain but still reports every job (issue 13) -------------------
 */

static void test_second_sigterm(void **state)
{
    (void)state;
    demo d;
    const char *flags[] = {"--email-ms",      "3000",  "--job-workers", "1", "--grace-ms", "30000",
                           "--jobs-drain-ms", "30000", "--no-limits",   NULL};
    demo_start(&d, flags);
    for (int i = 0; i < 4; i++) { /* four e-mails of 3 s on one worker */
        char u[64];
        snprintf(u, sizeof u, "{\"name\":\"Cy\",\"email\":\"cy%d@example.com\"}", i);
        assert_int_equal(call_status(d.port, "127.0.0.1", "POST", "/users", PRO, u), 201);
    }
    int64_t t0 = sl_mono_ns();
    assert_int_equal(kill(d.proc.pid, SIGTERM), 0);
    assert_true(SL_WAIT_UNTIL(file_has(d.out, "shutdown: draining jobs"), 10000));
    summary s = demo_stop_sig(&d, SIGTERM);      /* the second one: balanced summary, handed back */
    assert_true(sl_mono_ns() - t0 < SL_SEC(10)); /* not the 30 s drain */
    assert_true(s.hurried);
    assert_int_equal(s.submitted, 4);
    assert_true(s.abandoned >= 2);
}

/* ---- SIGTERM under load: exit 0, every job completed or handed back -------------------------- */

typedef struct loader {
    int port;
    char src[16];
    _Atomic int *stop;
    _Atomic int created, other;
} loader;

static void *load(void *arg)
{
    loader *l = arg;
    while (!atomic_load(l->stop)) {
        char body[128];
        snprintf(body, sizeof body, "{\"name\":\"u\",\"email\":\"u%d@example.com\"}", l->created);
        tc_resp r;
        int st =
            call(l->port, l->src, "POST", "/users", "X-API-Key: demo-enterprise\r\n", body, &r);
        if (st == 201 && strstr(r.body, "\"welcome_email\":\"queued\""))
            l->created++;
        else
            l->other++;
        tc_resp_free(&r);
        if (st < 0) break; /* the server stopped accepting */
    }
    return NULL;
}

static void test_sigterm_under_load(void **state)
{
    (void)state;
    demo d;
    const char *flags[] = {"--job-workers", "2",         "--email-ms", "100", "--jobs-drain-ms",
                           "300",           "--ip-rate", "inf",        NULL};
    demo_start(&d, flags);
    _Atomic int stop = 0;
    loader ls[3];
    pthread_t th[3];
    for (int i = 0; i < 3; i++) {
        ls[i] = (loader){.port = d.port, .stop = &stop};
        snprintf(ls[i].src, sizeof ls[i].src, "127.0.1.%d", i + 1);
        assert_int_equal(pthread_create(&th[i], NULL, load, &ls[i]), 0);
    }
    /* Wait for some load, then SIGTERM while it runs. */
    assert_true(SL_WAIT_UNTIL(ls[0].created + ls[1].created + ls[2].created >= 20, 30000));
    kill(d.proc.pid, SIGTERM);
    assert_true(SL_WAIT_UNTIL(file_has(d.out, "shutdown: complete"), 60000));
    atomic_store(&stop, 1);
    for (int i = 0; i < 3; i++)
        pthread_join(th[i], NULL);
    summary s = demo_stop_sig(&d, 0); /* already signalled: a second SIGTERM would kill it */
    unsigned long long created =
        (unsigned long long)(ls[0].created + ls[1].created + ls[2].created);
    /* Every e-mail a client was told is queued was accepted by the pool. */
    assert_true(s.submitted >= created);
    assert_true(s.submitted > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_routes),
        cmocka_unit_test(test_webhooks_full),
        cmocka_unit_test(test_limits_untrusted),
        cmocka_unit_test(test_limits_trusted_proxy),
        cmocka_unit_test(test_client_forwarded_ignored),
        cmocka_unit_test(test_users_bounded),
        cmocka_unit_test(test_welcome_not_queued_counted),
        cmocka_unit_test(test_healthz_saturated),
        cmocka_unit_test(test_second_sigterm),
        cmocka_unit_test(test_sigterm_under_load),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
