/* sluice-demo with --redis: durable jobs shared by two instances through a real redis-server.
 *
 * Instance A takes a "slow" webhook (it blocks on its first run until its worker stops) and,
 * while A's only webhook worker is stuck on it, five more webhooks that wait in the stream.
 * Instance B starts; A is SIGKILLed mid-job. B must then run all six: the five waiting ones
 * at once, and the slow one after the visibility timeout (reclaimed: its log line says so),
 * and Redis must end with nothing pending and nothing dead: no job lost. Then POST /users on
 * B queues its welcome e-mail in the other queue and B runs it; with Redis stopped, POST
 * /webhooks answers 503; SIGTERM still stops B cleanly (workers joined, exit 0).
 *
 * The demo's stdout/stderr go to files (sh -c exec, so the pid is the demo's), which the test
 * reads for log lines; Redis state is read with hiredis. */
#if !__has_include(<hiredis/hiredis.h>)
#include <stdio.h>
int main(void)
{
    fprintf(stderr, "hiredis (libhiredis-dev) is missing: the Redis backend was not built\n");
    return 1;
}
#else
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <pthread.h>

#include "harness.h"
#include "http_client.h"

typedef struct demo {
    sl_test_proc proc;
    int port;
    char dir[64];
    char out[128], err[128];
} demo;

static sl_test_redis g_redis;

static void demo_start(demo *d, const char *extra)
{
    const char *bindir = getenv("SLUICE_BINARY_DIR");
    assert_non_null(bindir);
    snprintf(d->dir, sizeof d->dir, "/tmp/sluice-redis-XXXXXX");
    assert_non_null(mkdtemp(d->dir));
    snprintf(d->out, sizeof d->out, "%s/out", d->dir);
    snprintf(d->err, sizeof d->err, "%s/err", d->dir);
    d->port = sl_test_free_port();
    assert_true(d->port > 0);
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "exec '%s/apps/sluice-demo' --port %d --reactors 1 --db sqlite::memory: "
             "--redis redis://127.0.0.1:%d --job-workers 2 --jobs-visibility-ms 1000 "
             "--webhook-ms 10 --email-ms 10 --grace-ms 2000 %s >'%s' 2>'%s'",
             bindir, d->port, g_redis.port, extra ? extra : "", d->out, d->err);
    char *argv[] = {"/bin/sh", "-c", cmd, NULL};
    assert_int_equal(sl_test_proc_start(&d->proc, argv, false), 0);
    if (!sl_test_wait_port(d->port, 30000)) {
        sl_test_proc_stop(&d->proc, SIGKILL, 1000);
        fail_msg("sluice-demo did not start: %s", cmd);
    }
}

/* The line of path holding both a and b, or false. */
static bool line_has(const char *path, const char *a, const char *b)
{
    char *s = sl_test_read_file(path);
    bool ok = false;
    for (char *line = strtok(s, "\n"); line && !ok; line = strtok(NULL, "\n"))
        ok = strstr(line, a) && (!b || strstr(line, b));
    free(s);
    return ok;
}

static void demo_cleanup(demo *d)
{
    unlink(d->out);
    unlink(d->err);
    rmdir(d->dir);
}

/* POSTs body to path; returns the status, and the job id (or "") from a 202's JSON. */
static int post(int port, const char *path, const char *hdrs, const char *body, char *id,
                size_t idcap)
{
    char raw[1024];
    snprintf(raw, sizeof raw,
             "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n%s"
             "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
             path, hdrs, strlen(body), body);
    int fd = tc_connect(port);
    if (fd < 0) return -1;
    tc_conn c;
    tc_init(&c, fd);
    tc_resp r = {0};
    int st = -1;
    if (tc_sends(fd, raw) && tc_read_response(&c, &r) == 0) st = r.status;
    if (id) {
        id[0] = 0;
        json_t *o = r.body ? json_loads(r.body, 0, NULL) : NULL;
        const char *s = o ? json_string_value(json_object_get(o, "job_id")) : NULL;
        if (s) snprintf(id, idcap, "%s", s);
        json_decref(o);
    }
    tc_resp_free(&r);
    close(fd);
    return st;
}

/* An integer from a Redis command on one key (XLEN) or the count of XPENDING's summary. */
static long long redis_int(const char *fmt, const char *key)
{
    redisContext *c = redisConnect("127.0.0.1", g_redis.port);
    assert_true(c && !c->err);
    redisReply *r = redisCommand(c, fmt, key);
    assert_non_null(r);
    long long v = r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
    if (r->type == REDIS_REPLY_ARRAY && r->elements > 0) v = r->element[0]->integer;
    freeReplyObject(r);
    redisFree(c);
    return v;
}

#define WH_STREAM "sluice-demo:jobs:{webhook}:stream"
#define WH_DEAD   "sluice-demo:jobs:{webhook}:dead"
#define WE_STREAM "sluice-demo:jobs:{welcome-email}:stream"

static void test_killed_instance_jobs_finish_elsewhere(void **state)
{
    (void)state;
    demo a = {0}, b = {0};
    demo_start(&a, "--no-limits");
    char slow[80], fast[5][80];
    int64_t posted = sl_mono_ns(); /* the slow job is delivered to A after this */
    assert_int_equal(
        post(a.port, "/webhooks", "", "{\"event\":\"x\",\"slow\":true}", slow, sizeof slow), 202);
    assert_true(slow[0]);
    /* A's only webhook worker is now stuck in the slow job. */
    assert_true(SL_WAIT_UNTIL(line_has(a.err, "slow job started", slow), 10000));
    for (int i = 0; i < 5; i++) {
        assert_int_equal(post(a.port, "/webhooks", "", "{\"event\":\"fast\"}", fast[i], 80), 202);
        assert_true(fast[i][0]);
    }
    demo_start(&b, "--no-limits");
    assert_int_equal(sl_test_proc_stop(&a.proc, SIGKILL, 5000), 128 + SIGKILL);

    for (int i = 0; i < 5; i++)
        assert_true(SL_WAIT_UNTIL(line_has(b.err, "job done", fast[i]), 10000));
    assert_true(SL_WAIT_UNTIL(line_has(b.err, "job done", slow), 15000));
    /* Reclaimed (not a fresh read), and not before it sat idle for the visibility timeout
     * since A took it. */
    assert_true(line_has(b.err, slow, "reclaimed=true"));
    assert_true(sl_mono_ns() - posted >= SL_MS(1000));
    /* Nothing pending, nothing left in the stream, nothing dead: no job lost. */
    assert_true(SL_WAIT_UNTIL(redis_int("XPENDING %s workers", WH_STREAM) == 0, 5000));
    /* ack is XACK then XDEL: the entry leaves the stream a moment after it leaves XPENDING. */
    assert_true(SL_WAIT_UNTIL(redis_int("XLEN %s", WH_STREAM) == 0, 5000));
    assert_int_equal(redis_int("XLEN %s", WH_DEAD), 0);

    /* The welcome e-mail goes through its own queue. */
    char u[] = "{\"name\":\"Ada\",\"email\":\"ada@example.com\"}";
    assert_int_equal(post(b.port, "/users", "X-API-Key: demo-pro\r\n", u, NULL, 0), 201);
    assert_true(SL_WAIT_UNTIL(line_has(b.err, "job done", "welcome-email-"), 10000));
    assert_true(SL_WAIT_UNTIL(redis_int("XPENDING %s workers", WE_STREAM) == 0, 5000));

    /* Redis down: the webhook is refused with 503, not accepted and lost. */
    assert_int_equal(sl_test_redis_stop(&g_redis) >= 0, 1);
    assert_int_equal(post(b.port, "/webhooks", "", "{\"event\":\"y\"}", NULL, 0), 503);

    /* SIGTERM: workers stop and are joined while Redis is down; exit 0. */
    int code = sl_test_proc_stop(&b.proc, SIGTERM, 30000);
    char *out = sl_test_read_file(b.out), *err = sl_test_read_file(b.err);
    if (code != 0) {
        fprintf(stderr, "B exited %d\nstdout:\n%s\nstderr:\n%s\n", code, out, err);
        fail_msg("B exited %d (output above)", code);
    }
    assert_non_null(strstr(out, "shutdown: redis jobs submitted=1 "));
    assert_non_null(strstr(out, "shutdown: complete"));
    free(out);
    free(err);
    demo_cleanup(&a);
    demo_cleanup(&b);
}

/* GET /users/1 with a key whose tier never limits: 404 when allowed (no such user). */
static int get_user(int port)
{
    return tc_get_status(port, "GET /users/1 HTTP/1.1\r\nHost: x\r\n"
                               "X-API-Key: demo-enterprise\r\nConnection: close\r\n\r\n");
}

#define LIMITS                                                                             \
    "--ip-rate 0.01 --ip-burst 10 --global-rate inf --enterprise-rate inf --webhook-ms 0 " \
    "--redis-timeout-ms 5000 --redis-fail "

/* Three instances share one per-IP bucket (burst 10, 0.01/s: at most one token refills
 * during the test); then Redis stops and each applies its own failure policy. (A generous
 * per-check timeout: on a loaded machine a first check, which also connects and loads the
 * script, must not fall to the failure policy while Redis is up.) */
static void test_instances_share_the_ip_limit(void **state)
{
    (void)state;
    demo a = {0}, b = {0}, c = {0};
    demo_start(&a, LIMITS "open");
    demo_start(&b, LIMITS "closed");
    demo_start(&c, LIMITS "local");
    demo *all[3] = {&a, &b, &c};
    int allowed[3] = {0}, sum = 0;
    for (int i = 0; i < 45; i++) {
        int st = get_user(all[i % 3]->port);
        if (st != 404 && st != 429) fail_msg("request %d: status %d (want 404 or 429)", i, st);
        if (st == 404) allowed[i % 3]++, sum++;
    }
    /* One instance alone allows 10 (+1 if a token refilled); three independent ones would
     * allow 30. Requests alternate, so each instance got a share. */
    assert_in_range(sum, 10, 11);
    for (int i = 0; i < 3; i++)
        assert_in_range(allowed[i], 1, 9);
    /* The shared rule answers like every rule of the policy (one answer format): Retry-After,
     * RateLimit-Policy and RateLimit naming "ip", the JSON body. */
    int fd = tc_connect(a.port);
    assert_true(fd >= 0);
    tc_conn conn;
    tc_init(&conn, fd);
    tc_resp r;
    assert_true(tc_sends(fd, "GET /users/1 HTTP/1.1\r\nHost: x\r\n"
                             "X-API-Key: demo-enterprise\r\nConnection: close\r\n\r\n"));
    assert_int_equal(tc_read_response(&conn, &r), 0);
    assert_int_equal(r.status, 429);
    char v[256];
    assert_non_null(tc_find_hdr(r.head, "Retry-After", v, sizeof v));
    assert_non_null(tc_find_hdr(r.head, "RateLimit-Policy", v, sizeof v));
    assert_non_null(strstr(v, "\"ip\";q=10;w=1000"));
    assert_non_null(tc_find_hdr(r.head, "RateLimit", v, sizeof v));
    assert_non_null(strstr(v, "\"ip\";r=0;"));
    assert_non_null(strstr(r.body, "rate limit exceeded"));
    tc_resp_free(&r);
    close(fd);

    /* Redis down: open allows everything, closed answers 503, local enforces the limit on
     * its own (a fresh in-process bucket: exactly the burst, then 429). */
    assert_true(sl_test_redis_stop(&g_redis) >= 0);
    int open_ok = 0, closed_503 = 0, local_ok = 0, local_429 = 0;
    for (int i = 0; i < 15; i++) {
        open_ok += get_user(a.port) == 404;
        closed_503 += get_user(b.port) == 503;
        int st = get_user(c.port);
        local_ok += st == 404;
        local_429 += st == 429;
    }
    assert_int_equal(open_ok, 15);
    assert_int_equal(closed_503, 15);
    assert_in_range(local_ok, 10, 11);
    assert_int_equal(local_ok + local_429, 15);
    for (int i = 0; i < 3; i++) {
        int code = sl_test_proc_stop(&all[i]->proc, SIGTERM, 30000);
        if (code != 0) {
            char *err = sl_test_read_file(all[i]->err);
            /* In full (a sanitizer's report can be longer than a failure message holds). */
            fprintf(stderr, "instance %d exited %d; its stderr:\n%s\n", i, code, err);
            fail_msg("instance %d exited %d (stderr above)", i, code);
        }
        demo_cleanup(all[i]);
    }
}

/* A stalled Redis (SIGSTOP'd: connections stay open, nothing answers) turns webhook submits
 * into quick 503s with Retry-After, not requests hanging for the I/O timeout behind the
 * producer's mutex (issue 13: 6-8 s). */
typedef struct stalled_post {
    int port, status;
    int64_t took;
} stalled_post;

static void *post_bg(void *arg)
{
    stalled_post *sp = arg;
    int64_t t0 = sl_mono_ns();
    sp->status = post(sp->port, "/webhooks", "", "{\"event\":\"stalled\"}", NULL, 0);
    sp->took = sl_mono_ns() - t0;
    return NULL;
}

static void test_stalled_redis_quick_503(void **state)
{
    (void)state;
    demo d = {0};
    demo_start(&d, "--no-limits");
    /* A submit blocks on Redis (up to 500 ms): with --redis the route is pooled, so a stalled
     * Redis holds handler threads, never the server's loop (the banner names each mode). */
    assert_true(SL_WAIT_UNTIL(line_has(d.out, "POST /webhooks ", "pooled"), 5000));
    assert_int_equal(post(d.port, "/webhooks", "", "{\"event\":\"ok\"}", NULL, 0), 202);
    assert_int_equal(kill(g_redis.proc.pid, SIGSTOP), 0);
    enum { N = 4 };
    stalled_post sp[N];
    pthread_t th[N];
    for (int i = 0; i < N; i++) {
        sp[i] = (stalled_post){.port = d.port};
        assert_int_equal(pthread_create(&th[i], NULL, post_bg, &sp[i]), 0);
    }
    for (int i = 0; i < N; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(kill(g_redis.proc.pid, SIGCONT), 0);
    for (int i = 0; i < N; i++)
        if (sp[i].status != 503 || sp[i].took >= SL_MS(1500)) {
            /* Stopped first: a demo that died (a signal) says so in its exit status. */
            int code = sl_test_proc_stop(&d.proc, SIGTERM, 30000);
            char *err = sl_test_read_file(d.err);
            fprintf(stderr, "demo exited %d (128+n: signal n); its stderr:\n%s\n", code,
                    err ? err : "(none)");
            free(err);
            fail_msg("post %d: status %d after %lld ms (want 503 within 1500 ms)", i, sp[i].status,
                     (long long)(sp[i].took / 1000000));
        }
    int code = sl_test_proc_stop(&d.proc, SIGTERM, 30000);
    assert_int_equal(code, 0);
    demo_cleanup(&d);
}

static void test_bad_url_exits_2(void **state)
{
    (void)state;
    const char *bindir = getenv("SLUICE_BINARY_DIR");
    char bin[512];
    snprintf(bin, sizeof bin, "%s/apps/sluice-demo", bindir);
    char *argv[] = {bin, "--redis", "http://x", NULL};
    sl_test_proc p;
    assert_int_equal(sl_test_proc_start(&p, argv, true), 0);
    assert_int_equal(sl_test_proc_stop(&p, 0, 10000), 2);
}

static int setup(void **state)
{
    (void)state;
    return sl_test_redis_start(&g_redis) == 0 ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    sl_test_redis_stop(&g_redis);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_url_exits_2),
        cmocka_unit_test_setup_teardown(test_killed_instance_jobs_finish_elsewhere, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_instances_share_the_ip_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stalled_redis_quick_503, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
#endif
