/* Redis-backed rules of sl_ratelimit against a real redis-server (started on a free loopback
 * port): rollback in both orders, the answers of each fail policy while Redis is down, the
 * rate headers listing every policy, IPv6 /64 grouping and dry-run through the Redis rule, and
 * decisions from many tasks on one loop parking for their round trips. */
#include "harness.h"

#if !__has_include(<hiredis/hiredis.h>)
#include <stdio.h>
int main(void)
{
    fprintf(stderr, "hiredis (libhiredis-dev) is missing: the Redis backend was not built\n");
    return 1;
}
#else
#include <hiredis/hiredis.h>
#include <math.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "sluice/limiter.h"
#include "sluice/ratelimit.h"
#include "sluice/redis_limiter.h"
#include "sluice/task.h"
#include "sluice/wg.h"

static sl_test_redis g_redis;

static int setup(void **state)
{
    (void)state;
    return sl_test_redis_start(&g_redis);
}

static int teardown(void **state)
{
    (void)state;
    sl_test_redis_stop(&g_redis);
    return 0;
}

static sl_redis_limiter *new_limiter(int port, const char *prefix, sl_redis_fail_policy pol,
                                     int64_t timeout)
{
    sl_keyed_tier tier = {1, 1}; /* the rules send their own */
    sl_redis_limiter_config cfg = {.port = port,
                                   .prefix = prefix,
                                   .tiers = &tier,
                                   .ntiers = 1,
                                   .timeout_ns = timeout,
                                   .backoff_min_ns = SL_MS(5),
                                   .backoff_max_ns = SL_MS(50),
                                   .policy = pol,
                                   .logger = sl_log_discard()};
    sl_redis_limiter *rl = NULL;
    assert_int_equal(sl_redis_limiter_new(&cfg, &rl), 0);
    return rl;
}

static sl_ratelimit *new_policy(const sl_ratelimit_rule *rules, size_t n)
{
    sl_ratelimit_config cfg = {.rules = rules, .nrules = n, .log = sl_log_discard()};
    sl_ratelimit *rl = NULL;
    assert_int_equal(sl_ratelimit_new(&cfg, &rl), 0);
    return rl;
}

/* Decides one request from ip at now, waiting with ctx. Returns sl_ratelimit_decide's code. */
static int decide_ip(sl_ratelimit *rl, const char *ip, int64_t now, sl_ctx *ctx,
                     sl_ratelimit_decision *d)
{
    sl_ipkey peer;
    if (sl_ipkey_parse(ip, strlen(ip), &peer) < 0) return SL_EINVAL;
    sl_ratelimit_input in = {.peer_key = &peer, .now_ns = now};
    return sl_ratelimit_decide(rl, &in, ctx, d);
}

static const char *hdr(const sl_ratelimit_decision *d, const char *name)
{
    for (size_t i = 0; i < d->nheaders; i++)
        if (!strcmp(d->headers[i].name, name)) return d->headers[i].value;
    return NULL;
}

static redisReply *cmd(int port, const char *fmt, const char *arg)
{
    redisContext *c = redisConnect("127.0.0.1", port);
    assert_non_null(c);
    assert_int_equal(c->err, 0);
    redisReply *r = redisCommand(c, fmt, arg);
    assert_non_null(r);
    redisFree(c);
    return r;
}

/* Tokens a bucket of the GCRA script has handed out and not regained: (TAT - now) / T, from
 * the key's stored TAT and Redis's clock; 0 when the key is gone (a full bucket). */
static double used_tokens(const char *key, double limit)
{
    redisReply *v = cmd(g_redis.port, "GET %s", key);
    redisReply *t = cmd(g_redis.port, "TIME%s", "");
    double used = 0;
    if (v->type == REDIS_REPLY_STRING) {
        double now_us = atof(t->element[0]->str) * 1e6 + atof(t->element[1]->str);
        used = (atof(v->str) - now_us) / (1e6 / limit);
    }
    freeReplyObject(v);
    freeReplyObject(t);
    return used;
}

static bool key_exists(const char *key)
{
    redisReply *r = cmd(g_redis.port, "EXISTS %s", key);
    bool e = r->integer == 1;
    freeReplyObject(r);
    return e;
}

/* Refused by the Redis rule: the in-memory rule before it gets its token back, exactly (a
 * refund after the round trip), and the 429 lists both policies. */
static void test_refused_by_redis_restores_memory(void **state)
{
    (void)state;
    sl_redis_limiter *lim = new_limiter(g_redis.port, "t1:", SL_REDIS_FAIL_CLOSED, SL_SEC(2));
    sl_ratelimit_rule rules[] = {
        {.kind = SL_RATELIMIT_GLOBAL, .name = "global", .limit = 1, .burst = 10},
        {.kind = SL_RATELIMIT_IP, .name = "ip", .limit = 0.01, .burst = 2, .redis = lim},
    };
    sl_ratelimit *rl = new_policy(rules, 2);
    assert_true(sl_ratelimit_waits(rl));
    int64_t now = sl_now_ns();
    sl_ratelimit_decision d;
    assert_int_equal(decide_ip(rl, "192.0.2.1", now, NULL, &d), 0);
    assert_int_equal(d.status, 0);
    /* Success: every policy, each with its own state. */
    assert_string_equal(hdr(&d, "RateLimit-Policy"), "\"global\";q=10;w=10, \"ip\";q=2;w=200");
    assert_string_equal(hdr(&d, "RateLimit"), "\"global\";r=9;t=1, \"ip\";r=1;t=100");
    assert_string_equal(hdr(&d, "X-RateLimit-Remaining"), "1"); /* the tightest: ip */
    assert_int_equal(decide_ip(rl, "192.0.2.1", now, NULL, &d), 0);
    assert_int_equal(d.status, 0);
    assert_int_equal(decide_ip(rl, "192.0.2.1", now, NULL, &d), 0);
    assert_int_equal(d.status, 429);
    assert_int_equal(d.rule, 1);
    assert_in_range(d.retry_after, 99, 100);
    assert_string_equal(hdr(&d, "RateLimit-Policy"), "\"global\";q=10;w=10, \"ip\";q=2;w=200");
    assert_string_equal(hdr(&d, "RateLimit"), "\"ip\";r=0;t=200");
    assert_non_null(hdr(&d, "Retry-After"));
    assert_non_null(strstr(d.body, "rate limit exceeded"));
    /* Two requests passed: the refused third one's global token came back. */
    assert_true(sl_limiter_tokens_at(sl_ratelimit_limiter(rl, 0), now) == 8.0);
    sl_ratelimit_stats st;
    assert_int_equal(sl_ratelimit_stats_get(rl, 1, &st), 0);
    assert_int_equal(st.rejected, 1);
    assert_int_equal(st.allowed, 2);
    assert_int_equal(sl_ratelimit_stats_get(rl, 0, &st), 0);
    assert_int_equal(st.allowed, 2);
    sl_ratelimit_free(rl);
    sl_redis_limiter_free(lim);
}

/* Refused by an in-memory rule after the Redis rule: the Redis bucket gets its token back (the
 * refund script): the key shows one token used, not two. */
static void test_refused_by_memory_refunds_redis(void **state)
{
    (void)state;
    sl_redis_limiter *lim = new_limiter(g_redis.port, "t2:", SL_REDIS_FAIL_CLOSED, SL_SEC(2));
    sl_ratelimit_rule rules[] = {
        {.kind = SL_RATELIMIT_IP, .name = "ip", .limit = 0.01, .burst = 5, .redis = lim},
        {.kind = SL_RATELIMIT_GLOBAL, .name = "global", .limit = 0.001, .burst = 1},
    };
    sl_ratelimit *rl = new_policy(rules, 2);
    int64_t now = sl_now_ns();
    sl_ratelimit_decision d;
    assert_int_equal(decide_ip(rl, "192.0.2.9", now, NULL, &d), 0);
    assert_int_equal(d.status, 0);
    assert_true(fabs(used_tokens("t2:{ip:192.0.2.9/32}", 0.01) - 1) < 0.01);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(decide_ip(rl, "192.0.2.9", now, NULL, &d), 0);
        assert_int_equal(d.status, 429);
        assert_int_equal(d.rule, 1);
    }
    /* Each refused request took a Redis token and gave it back (refunds are not awaited). */
    assert_true(SL_WAIT_UNTIL(fabs(used_tokens("t2:{ip:192.0.2.9/32}", 0.01) - 1) < 0.01, 5000));
    sl_redis_limiter_stats ls;
    sl_redis_limiter_stats_get(lim, &ls);
    assert_int_equal(ls.refunds, 3);
    sl_ratelimit_free(rl);
    sl_redis_limiter_free(lim);
}

/* Redis stops: open allows (counted, the rule undescribed), closed answers 503, local decides
 * with the rule's own in-memory bucket. */
static void test_outage_each_policy(void **state)
{
    (void)state;
    sl_test_redis own;
    assert_int_equal(sl_test_redis_start(&own), 0);
    sl_redis_fail_policy pols[3] = {SL_REDIS_FAIL_OPEN, SL_REDIS_FAIL_CLOSED, SL_REDIS_FAIL_LOCAL};
    sl_redis_limiter *lim[3];
    sl_ratelimit *rl[3];
    int64_t now = sl_now_ns();
    for (int i = 0; i < 3; i++) {
        lim[i] = new_limiter(own.port, "t3:", pols[i], SL_MS(100));
        sl_ratelimit_rule r = {
            .kind = SL_RATELIMIT_IP, .name = "ip", .limit = 0.01, .burst = 3, .redis = lim[i]};
        rl[i] = new_policy(&r, 1);
        sl_ratelimit_decision d;
        char ip[32];
        snprintf(ip, sizeof ip, "198.51.100.%d", i + 1);
        assert_int_equal(decide_ip(rl[i], ip, now, NULL, &d), 0); /* Redis answers */
        assert_int_equal(d.status, 0);
        assert_non_null(hdr(&d, "RateLimit"));
    }
    assert_true(sl_test_redis_stop(&own) >= 0);
    int open_ok = 0, closed_503 = 0, local_ok = 0, local_429 = 0;
    for (int k = 0; k < 5; k++) {
        sl_ratelimit_decision d;
        assert_int_equal(decide_ip(rl[0], "198.51.100.1", now, NULL, &d), 0);
        open_ok += d.status == 0 && !hdr(&d, "RateLimit");
        assert_int_equal(decide_ip(rl[1], "198.51.100.2", now, NULL, &d), SL_EUNAVAIL);
        closed_503 += d.status == 503 && hdr(&d, "Retry-After");
        assert_int_equal(decide_ip(rl[2], "198.51.100.3", now, NULL, &d), 0);
        local_ok += d.status == 0;
        local_429 += d.status == 429;
    }
    assert_int_equal(open_ok, 5);
    assert_int_equal(closed_503, 5);
    assert_int_equal(local_ok, 3); /* a fresh in-process bucket: its burst */
    assert_int_equal(local_429, 2);
    sl_ratelimit_stats st;
    sl_ratelimit_stats_get(rl[0], 0, &st);
    assert_int_equal(st.redis_fail_open, 5);
    sl_ratelimit_stats_get(rl[1], 0, &st);
    assert_int_equal(st.redis_fail_closed, 5);
    assert_int_equal(st.errors, 5);
    sl_ratelimit_stats_get(rl[2], 0, &st);
    assert_int_equal(st.redis_fallback, 5);
    assert_int_equal(st.rejected, 2);
    for (int i = 0; i < 3; i++) {
        sl_ratelimit_free(rl[i]);
        sl_redis_limiter_free(lim[i]);
    }
}

/* A client rotating addresses inside its IPv6 /64 is one Redis bucket; the next /64 is not. */
static void test_ipv6_grouping_through_redis(void **state)
{
    (void)state;
    sl_redis_limiter *lim = new_limiter(g_redis.port, "t4:", SL_REDIS_FAIL_CLOSED, SL_SEC(2));
    sl_ratelimit_rule rules[] = {
        {.kind = SL_RATELIMIT_IP, .name = "ip", .limit = 0.01, .burst = 2, .redis = lim},
        {.kind = SL_RATELIMIT_IP,
         .name = "ip48",
         .limit = 0.01,
         .burst = 100,
         .group = {32, 48},
         .redis = lim},
    };
    sl_ratelimit *rl = new_policy(rules, 2);
    int64_t now = sl_now_ns();
    int ok = 0;
    for (int i = 0; i < 6; i++) {
        char txt[64];
        snprintf(txt, sizeof txt, "2001:db8:13:64::%x:%x", i * 7919, i + 1);
        sl_ratelimit_decision d;
        assert_int_equal(decide_ip(rl, txt, now, NULL, &d), 0);
        ok += d.status == 0;
    }
    assert_int_equal(ok, 2);
    sl_ratelimit_decision d;
    assert_int_equal(decide_ip(rl, "2001:db8:13:65::1", now, NULL, &d), 0);
    assert_int_equal(d.status, 0);
    assert_true(key_exists("t4:{ip:2001:db8:13:64::/64}"));
    assert_true(key_exists("t4:{ip:2001:db8:13:65::/64}"));
    assert_true(key_exists("t4:{ip48:2001:db8:13::/48}"));
    /* The /48 rule was reached by the 3 allowed requests only (the 4 refused ones gave their
     * /48 token back or never took one). */
    assert_true(
        SL_WAIT_UNTIL(fabs(used_tokens("t4:{ip48:2001:db8:13::/48}", 0.01) - 3) < 0.01, 5000));
    sl_ratelimit_free(rl);
    sl_redis_limiter_free(lim);
}

/* A dry-run Redis rule counts would-be rejections, rejects nothing and is never described. */
static void test_dry_run_redis_rule(void **state)
{
    (void)state;
    sl_redis_limiter *lim = new_limiter(g_redis.port, "t5:", SL_REDIS_FAIL_CLOSED, SL_SEC(2));
    sl_ratelimit_rule r = {.kind = SL_RATELIMIT_IP,
                           .name = "ip",
                           .limit = 0.01,
                           .burst = 1,
                           .dry_run = true,
                           .redis = lim};
    sl_ratelimit *rl = new_policy(&r, 1);
    int64_t now = sl_now_ns();
    for (int i = 0; i < 3; i++) {
        sl_ratelimit_decision d;
        assert_int_equal(decide_ip(rl, "203.0.113.5", now, NULL, &d), 0);
        assert_int_equal(d.status, 0);
        assert_null(hdr(&d, "RateLimit"));
        assert_null(hdr(&d, "RateLimit-Policy"));
    }
    sl_ratelimit_stats st;
    sl_ratelimit_stats_get(rl, 0, &st);
    assert_int_equal(st.dry_run_rejected, 2);
    assert_int_equal(st.allowed, 1);
    assert_true(key_exists("t5:{ip:203.0.113.5/32}"));
    sl_ratelimit_free(rl);
    sl_redis_limiter_free(lim);
}

/* ---- tasks ---------------------------------------------------------------------------------- */

typedef struct fleet {
    sl_ratelimit *rl;
    sl_wg wg;
    _Atomic int inside, max_inside, allowed, on_loop;
} fleet;

typedef struct one {
    fleet *f;
    int i;
} one;

static void decider(void *arg)
{
    one *o = arg;
    fleet *f = o->f;
    int in = atomic_fetch_add(&f->inside, 1) + 1;
    int m = atomic_load(&f->max_inside);
    while (in > m && !atomic_compare_exchange_weak(&f->max_inside, &m, in)) {
    }
    char ip[32];
    snprintf(ip, sizeof ip, "10.0.%d.%d", o->i / 250, o->i % 250 + 1);
    sl_ratelimit_decision d;
    if (sl_loop_current() != NULL) atomic_fetch_add(&f->on_loop, 1);
    if (decide_ip(f->rl, ip, sl_now_ns(), NULL, &d) == 0 && d.status == 0)
        atomic_fetch_add(&f->allowed, 1);
    atomic_fetch_sub(&f->inside, 1);
    sl_wg_done(&f->wg);
}

/* Refused by memory after Redis, from a task: the refund goes out on the task's loop. */
static void refunder(void *arg)
{
    fleet *f = arg;
    int64_t now = sl_now_ns();
    sl_ratelimit_decision d;
    for (int i = 0; i < 2; i++)
        if (decide_ip(f->rl, "192.0.2.77", now, NULL, &d) == 0 && d.status == 0)
            atomic_fetch_add(&f->allowed, 1);
    sl_wg_done(&f->wg);
}

/* Many tasks on ONE loop decide at once: each parks for its round trip (the loop runs the
 * others meanwhile: all are inside the decision together), and every one is answered by
 * Redis. */
static void test_tasks_park_on_one_loop(void **state)
{
    (void)state;
    enum { N = 300 };
    sl_runtime *rt;
    sl_runtime_opts ro = {.loops = 1};
    assert_int_equal(sl_runtime_new(&ro, &rt), 0);
    sl_redis_limiter *lim = new_limiter(g_redis.port, "t6:", SL_REDIS_FAIL_CLOSED, SL_SEC(5));
    sl_ratelimit_rule r = {
        .kind = SL_RATELIMIT_IP, .name = "ip", .limit = 100, .burst = 10, .redis = lim};
    fleet f = {.rl = new_policy(&r, 1)};
    assert_int_equal(sl_wg_init(&f.wg), 0);
    static one ones[N];
    sl_wg_add(&f.wg, N);
    sl_go_opts go = {.rt = rt, .name = "decider"};
    for (int i = 0; i < N; i++) {
        ones[i] = (one){&f, i};
        assert_int_equal(sl_go_with(&go, decider, &ones[i]), 0);
    }
    sl_ctx *ctx;
    sl_ctx_with_timeout(NULL, SL_SEC(30), &ctx);
    assert_int_equal(sl_wg_wait(&f.wg, ctx), 0);
    assert_int_equal(atomic_load(&f.allowed), N);
    assert_int_equal(atomic_load(&f.on_loop), N);
    assert_true(atomic_load(&f.max_inside) > 1); /* overlapped: each parked, the loop went on */
    sl_redis_limiter_stats ls;
    sl_redis_limiter_stats_get(lim, &ls);
    assert_int_equal(ls.redis_replies, N);
    assert_int_equal(ls.parked, N);
    sl_ratelimit_free(f.rl);

    /* Refunds from a task. */
    sl_ratelimit_rule rules[] = {
        {.kind = SL_RATELIMIT_IP, .name = "ip", .limit = 0.01, .burst = 5, .redis = lim},
        {.kind = SL_RATELIMIT_GLOBAL, .name = "global", .limit = 0.001, .burst = 1},
    };
    f.rl = new_policy(rules, 2);
    atomic_store(&f.allowed, 0);
    sl_wg_add(&f.wg, 1);
    assert_int_equal(sl_go_with(&go, refunder, &f), 0);
    assert_int_equal(sl_wg_wait(&f.wg, ctx), 0);
    assert_int_equal(atomic_load(&f.allowed), 1);
    assert_true(SL_WAIT_UNTIL(fabs(used_tokens("t6:{ip:192.0.2.77/32}", 0.01) - 1) < 0.01, 5000));
    sl_ctx_release(ctx);
    sl_ratelimit_free(f.rl);
    sl_redis_limiter_free(lim); /* detaches from the runtime's loop, on that loop */
    sl_wg_destroy(&f.wg);
    sl_runtime_free(rt);
}

/* The runtime goes first (as a server's private runtime goes with sl_server_free), the limiter
 * a task attached to its loop after: the limiter's free still detaches safely (the loop's
 * memory is held until then; ASan would see a use after free). */
static void test_runtime_freed_before_limiter(void **state)
{
    (void)state;
    sl_runtime *rt;
    sl_runtime_opts ro = {.loops = 1};
    assert_int_equal(sl_runtime_new(&ro, &rt), 0);
    sl_redis_limiter *lim = new_limiter(g_redis.port, "t9:", SL_REDIS_FAIL_CLOSED, SL_SEC(5));
    sl_ratelimit_rule r = {
        .kind = SL_RATELIMIT_IP, .name = "ip", .limit = 100, .burst = 10, .redis = lim};
    fleet f = {.rl = new_policy(&r, 1)};
    assert_int_equal(sl_wg_init(&f.wg), 0);
    static one o;
    o = (one){&f, 1};
    sl_wg_add(&f.wg, 1);
    sl_go_opts go = {.rt = rt, .name = "decider"};
    assert_int_equal(sl_go_with(&go, decider, &o), 0);
    assert_int_equal(sl_wg_wait(&f.wg, NULL), 0);
    assert_int_equal(atomic_load(&f.allowed), 1); /* decided by Redis, on the loop */
    sl_runtime_free(rt);
    sl_ratelimit_free(f.rl);
    sl_redis_limiter_free(lim);
    sl_wg_destroy(&f.wg);
}

typedef struct ctxwait {
    sl_ratelimit *rl;
    sl_wg wg;
    int rc, status;
    int64_t took;
} ctxwait;

static void ctx_task(void *arg)
{
    ctxwait *w = arg;
    sl_ctx *ctx;
    sl_ctx_with_timeout(NULL, SL_MS(50), &ctx);
    int64_t t0 = sl_now_ns();
    sl_ratelimit_decision d;
    w->rc = decide_ip(w->rl, "192.0.2.200", t0, ctx, &d);
    w->status = d.status;
    w->took = sl_now_ns() - t0;
    sl_ctx_release(ctx);
    sl_wg_done(&w->wg);
}

/* A stalled Redis (SIGSTOP: nothing answers, the limiter's timeout is long): the request's
 * ctx bounds the wait, on a thread and in a task, and the fail policy answers. No wait at all
 * with no_wait. */
static void test_ctx_bounds_the_wait(void **state)
{
    (void)state;
    sl_test_redis own;
    assert_int_equal(sl_test_redis_start(&own), 0);
    sl_redis_limiter *lim = new_limiter(own.port, "t7:", SL_REDIS_FAIL_CLOSED, SL_SEC(10));
    sl_ratelimit_rule r = {
        .kind = SL_RATELIMIT_IP, .name = "ip", .limit = 1, .burst = 5, .redis = lim};
    sl_ratelimit *rl = new_policy(&r, 1);
    sl_ratelimit_decision d;
    assert_int_equal(decide_ip(rl, "192.0.2.200", sl_now_ns(), NULL, &d), 0);
    assert_int_equal(d.status, 0);
    assert_int_equal(kill(own.proc.pid, SIGSTOP), 0);

    sl_ctx *ctx;
    sl_ctx_with_timeout(NULL, SL_MS(50), &ctx);
    int64_t t0 = sl_now_ns();
    assert_int_equal(decide_ip(rl, "192.0.2.200", t0, ctx, &d), SL_EUNAVAIL);
    assert_int_equal(d.status, 503);
    assert_true(sl_now_ns() - t0 < SL_SEC(2));
    sl_ctx_release(ctx);

    sl_runtime *rt;
    sl_runtime_opts ro = {.loops = 1};
    assert_int_equal(sl_runtime_new(&ro, &rt), 0);
    ctxwait w = {.rl = rl};
    assert_int_equal(sl_wg_init(&w.wg), 0);
    sl_wg_add(&w.wg, 1);
    assert_int_equal(sl_go_with(&(sl_go_opts){.rt = rt}, ctx_task, &w), 0);
    assert_int_equal(sl_wg_wait(&w.wg, NULL), 0);
    assert_int_equal(w.rc, SL_EUNAVAIL);
    assert_int_equal(w.status, 503);
    assert_true(w.took < SL_SEC(2));

    sl_ipkey peer;
    sl_ipkey_parse("192.0.2.201", 11, &peer);
    sl_ratelimit_input in = {.peer_key = &peer, .now_ns = sl_now_ns(), .no_wait = true};
    assert_int_equal(sl_ratelimit_decide(rl, &in, NULL, &d), SL_EUNAVAIL);
    sl_ratelimit_stats st;
    sl_ratelimit_stats_get(rl, 0, &st);
    assert_int_equal(st.redis_fail_closed, 3);
    assert_int_equal(st.redis_nowait, 1);

    assert_int_equal(kill(own.proc.pid, SIGCONT), 0);
    sl_ratelimit_free(rl);
    sl_redis_limiter_free(lim);
    sl_wg_destroy(&w.wg);
    sl_runtime_free(rt);
    sl_test_redis_stop(&own);
}

/* A Redis rule whose limit the GCRA script cannot express is refused at creation. */
static void test_config(void **state)
{
    (void)state;
    sl_redis_limiter *lim = new_limiter(g_redis.port, "t8:", SL_REDIS_FAIL_OPEN, SL_SEC(1));
    sl_ratelimit_rule r = {.kind = SL_RATELIMIT_IP, .limit = 0, .burst = 5, .redis = lim};
    sl_ratelimit_config cfg = {.rules = &r, .nrules = 1};
    sl_ratelimit *rl = NULL;
    assert_int_equal(sl_ratelimit_new(&cfg, &rl), SL_EINVAL);
    r.kind = SL_RATELIMIT_GLOBAL;
    assert_int_equal(sl_ratelimit_new(&cfg, &rl), SL_EINVAL);
    assert_null(rl);
    r.limit = SL_RATE_INF; /* nothing to count: allowed, never asks Redis */
    assert_int_equal(sl_ratelimit_new(&cfg, &rl), 0);
    sl_ratelimit_decision d;
    assert_int_equal(decide_ip(rl, "192.0.2.1", sl_now_ns(), NULL, &d), 0);
    assert_int_equal(d.status, 0);
    sl_ratelimit_free(rl);
    sl_redis_limiter_free(lim);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_refused_by_redis_restores_memory),
        cmocka_unit_test(test_refused_by_memory_refunds_redis),
        cmocka_unit_test(test_outage_each_policy),
        cmocka_unit_test(test_ipv6_grouping_through_redis),
        cmocka_unit_test(test_dry_run_redis_rule),
        cmocka_unit_test(test_tasks_park_on_one_loop),
        cmocka_unit_test(test_runtime_freed_before_limiter),
        cmocka_unit_test(test_ctx_bounds_the_wait),
        cmocka_unit_test(test_config),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
#endif /* hiredis */
