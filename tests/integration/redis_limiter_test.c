/* Redis limiter against a real redis-server: the same decisions as sl_limiter at controlled
 * instants, pipelined async checks on a reactor, two instances sharing one limit, NOSCRIPT
 * recovery, per-call timeouts against a paused server, and the failure policies while Redis
 * is down and after it comes back on the same port. */
#include "harness.h"

#if !__has_include(<hiredis/hiredis.h>)
/* Built without hiredis: the Redis backend is not in the library. Fail, never skip. */
#include <stdio.h>
int main(void)
{
    fprintf(stderr, "hiredis (libhiredis-dev) is missing: the Redis backend was not built\n");
    return 1;
}
#else

#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "sluice/limiter.h"
#include "sluice/keyed.h"
#include "sluice/redis_limiter.h"
#include "loop/reactor.h"
#include "redis/redis_int.h"

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

static void redis_cmd(const char *cmd)
{
    redisContext *c = redisConnect("127.0.0.1", g_redis.port);
    assert_non_null(c);
    assert_int_equal(c->err, 0);
    redisReply *r = redisCommand(c, cmd);
    assert_non_null(r);
    assert_int_not_equal(r->type, REDIS_REPLY_ERROR);
    freeReplyObject(r);
    redisFree(c);
}

static sl_redis_limiter *new_limiter(double limit, int64_t burst, sl_redis_fail_policy pol,
                                     sl_keyed *fb, int64_t timeout)
{
    sl_keyed_tier tier = {limit, burst};
    sl_redis_limiter_config cfg = {.port = g_redis.port,
                                   .tiers = &tier,
                                   .ntiers = 1,
                                   .timeout_ns = timeout,
                                   .backoff_min_ns = SL_MS(5),
                                   .backoff_max_ns = SL_MS(50),
                                   .policy = pol,
                                   .fallback = fb,
                                   .logger = sl_log_discard()};
    sl_redis_limiter *rl = NULL;
    assert_int_equal(sl_redis_limiter_new(&cfg, &rl), 0);
    return rl;
}

/* Waits until a blocking check is answered by Redis itself (the connection is up). */
static bool redis_answers(sl_redis_limiter *rl, const char *key)
{
    sl_rate_decision d;
    return sl_redis_limiter_check_wait(rl, key, strlen(key), 0, 0, NULL, &d) == 0 &&
           d.source == SL_RATE_FROM_REDIS;
}

static void test_sha1(void **state)
{
    (void)state;
    char hex[41];
    sl__redis_sha1_hex("abc", 3, hex);
    assert_string_equal(hex, "a9993e364706816aba3e25717850c26c9cd0d89d");
    char buf[200];
    memset(buf, 'a', sizeof buf);
    sl__redis_sha1_hex(buf, 56, hex); /* the padding spills into a second block */
    assert_string_equal(hex, "c2db330f6083854c99d4b5bfb6e8f29f201be699");
}

static void test_config_rejected(void **state)
{
    (void)state;
    sl_keyed_tier zero = {0, 5}, ok = {1, 1};
    sl_redis_limiter *rl = NULL;
    sl_redis_limiter_config cfg = {.tiers = &zero, .ntiers = 1};
    assert_int_equal(sl_redis_limiter_new(&cfg, &rl), SL_EINVAL);
    cfg.tiers = &ok;
    cfg.policy = (sl_redis_fail_policy)7;
    assert_int_equal(sl_redis_limiter_new(&cfg, &rl), SL_EINVAL);
    assert_null(rl);
}

/* Replays one sequence of (instant, n) against sl_limiter and the Redis script (client time,
 * explicit instants) and returns how many decisions differ. */
static int replay(double limit, int64_t burst, const char *key, unsigned seed, int steps)
{
    sl_redis_limiter *rl = new_limiter(limit, burst, SL_REDIS_FAIL_CLOSED, NULL, SL_SEC(2));
    sl_limiter *lim = NULL;
    assert_int_equal(sl_limiter_new(limit, burst, &lim), 0);
    assert_true(SL_WAIT_UNTIL(redis_answers(rl, "warmup"), 5000));
    int64_t wall0 = SL_SEC(1700000000), mono0 = SL_SEC(1000), t = 0;
    int diff = 0;
    for (int i = 0; i < steps; i++) {
        seed = seed * 1103515245u + 12345u;
        t += (int64_t)((seed >> 8) % 200000) * 1000; /* 0..200 ms, whole microseconds */
        int64_t n = 1 + (int64_t)((seed >> 4) % 3);
        bool want = sl_limiter_allow_n_at(lim, n, mono0 + t);
        double tok = sl_limiter_tokens_at(lim, mono0 + t);
        sl_rate_decision d;
        assert_int_equal(sl_redis_limiter_check_wait(rl, key, strlen(key), n, wall0 + t, NULL, &d),
                         0);
        assert_int_equal(d.source, SL_RATE_FROM_REDIS);
        if (d.allowed != want)
            diff++;
        else if (d.remaining != (int64_t)floor(tok + 1e-9))
            diff++;
    }
    sl_limiter_free(lim);
    sl_redis_limiter_free(rl);
    return diff;
}

static void test_same_decisions_as_sl_limiter(void **state)
{
    (void)state;
    /* T = 100 ms: an exact number of microseconds, so the two must agree on every step. */
    assert_int_equal(replay(10, 5, "same:exact", 7, 300), 0);
    /* T = 333333.33 us: both round (Go's float64 tokens vs the script's float64 us); a
     * difference needs a request within about a microsecond of a token boundary, which this
     * sequence (whole microseconds, spread over 200 ms) essentially never produces. */
    int diff = replay(3, 4, "same:fractional", 11, 300);
    print_message("fractional interval: %d of 300 decisions differ\n", diff);
    assert_true(diff <= 3);
}

/* ---- async, pipelined, on a reactor ------------------------------------------------------ */

typedef struct async_run {
    sl__reactor r;
    sl_redis_limiter *rl;
    sl__task start;
    int total, answered, allowed, from_redis;
    int64_t now_ns;
} async_run;

static void async_cb(void *arg, const sl_rate_decision *d)
{
    async_run *a = arg;
    a->answered++;
    if (d->allowed) a->allowed++;
    if (d->source == SL_RATE_FROM_REDIS) a->from_redis++;
    if (a->answered == a->total) sl__reactor_stop(&a->r);
}

static void async_retry(sl__reactor *r, sl__task *t);

static void async_start(sl__reactor *r, sl__task *t)
{
    async_run *a = r->data;
    if (!sl_redis_limiter_connected(a->rl, r)) {
        /* Not connected yet: come back after this iteration. */
        t->fn = async_retry;
        sl__reactor_post(r, t);
        return;
    }
    for (int i = 0; i < a->total; i++) {
        sl_rate_decision d;
        int rc = sl_redis_limiter_check_at(a->rl, r, "pipe", 4, 1, a->now_ns, async_cb, a, &d);
        assert_int_equal(rc, 0);
    }
}

static void async_retry(sl__reactor *r, sl__task *t)
{
    t->fn = async_start;
    sl__reactor_post(r, t);
}

static void test_async_pipelined(void **state)
{
    (void)state;
    async_run a = {.total = 2000, .now_ns = SL_SEC(1800000000)};
    a.rl = new_limiter(1, 100, SL_REDIS_FAIL_CLOSED, NULL, SL_SEC(5));
    assert_int_equal(sl__reactor_init(&a.r), 0);
    a.r.data = &a;
    assert_int_equal(sl_redis_limiter_attach(a.rl, &a.r), 0);
    assert_int_equal(sl_redis_limiter_attach(a.rl, &a.r), SL_EEXIST);
    a.start.fn = async_start;
    sl__reactor_post(&a.r, &a.start);
    sl__reactor_run(&a.r); /* until the last answer */
    assert_int_equal(a.answered, a.total);
    assert_int_equal(a.from_redis, a.total);
    assert_int_equal(a.allowed, 100); /* one instant: exactly the burst */
    assert_int_equal(sl_redis_limiter_detach(a.rl, &a.r), 0);
    assert_int_equal(sl_redis_limiter_detach(a.rl, &a.r), SL_ENOENT);
    sl__reactor_destroy(&a.r);
    sl_redis_limiter_free(a.rl);
}

/* ---- one round, one batch: keys interleaved, each counted in order ------------------------- */

/* EVALSHA calls redis-server has run so far (INFO commandstats). */
static long long evalsha_calls(void)
{
    redisContext *c = redisConnect("127.0.0.1", g_redis.port);
    assert_non_null(c);
    redisReply *r = redisCommand(c, "INFO commandstats");
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    const char *p = strstr(r->str, "cmdstat_evalsha:calls=");
    long long n = p ? atoll(p + strlen("cmdstat_evalsha:calls=")) : 0;
    freeReplyObject(r);
    redisFree(c);
    return n;
}

#define MIX_N  24

typedef struct mix_run {
    sl__reactor r;
    sl_redis_limiter *rl;
    sl__task start;
    int answered, allowed[2];
    int64_t remaining[2][MIX_N]; /* per key, in answer order, of the allowed checks */
    int order_ok;
    bool interleave;  /* a, b, a, b... instead of 12 a then 12 b (keys "mix-c", "mix-d") */
    int last_seq[2];  /* per key: the seq answered last */
    int key_order_ok; /* answers in the order asked within their key */
} mix_run;

typedef struct mix_arg {
    mix_run *m;
    int key, seq;
} mix_arg;

static mix_arg g_mix[MIX_N];

static void mix_cb(void *arg, const sl_rate_decision *d)
{
    mix_arg *a = arg;
    mix_run *m = a->m;
    if (a->seq == m->answered) m->order_ok++; /* answered in the order asked */
    if (a->seq > m->last_seq[a->key]) m->key_order_ok++;
    m->last_seq[a->key] = a->seq;
    m->answered++;
    if (d->source == SL_RATE_FROM_REDIS && d->allowed)
        m->remaining[a->key][m->allowed[a->key]++] = d->remaining;
    if (m->answered == MIX_N) sl__reactor_stop(&m->r);
}

static void mix_retry(sl__reactor *r, sl__task *t);

static void mix_start(sl__reactor *r, sl__task *t)
{
    mix_run *m = r->data;
    if (!sl_redis_limiter_connected(m->rl, r)) {
        t->fn = mix_retry;
        sl__reactor_post(r, t);
        return;
    }
    for (int i = 0; i < MIX_N; i++) {
        int key = m->interleave ? i % 2 : i < MIX_N / 2 ? 0 : 1;
        g_mix[i] = (mix_arg){.m = m, .key = key, .seq = i};
        sl_rate_decision d;
        const char *name = m->interleave ? (key ? "mix-d" : "mix-c") : key ? "mix-b" : "mix-a";
        int rc = sl_redis_limiter_check_at(m->rl, r, name, 5, 1, SL_SEC(1800000000), mix_cb,
                                           &g_mix[i], &d);
        assert_int_equal(rc, 0);
    }
}

static void mix_retry(sl__reactor *r, sl__task *t)
{
    t->fn = mix_start;
    sl__reactor_post(r, t);
}

/* Runs the MIX_N checks of one round (interleaved or not) on a fresh limiter (burst 3) and
 * asserts what both orders share: every check answered, 3 allowed per key with remaining 2, 1,
 * 0, each key's answers in the order asked, every answer from Redis, in 2 EVALSHAs. */
static void run_mix(mix_run *m)
{
    m->last_seq[0] = m->last_seq[1] = -1;
    m->rl = new_limiter(1, 3, SL_REDIS_FAIL_CLOSED, NULL, SL_SEC(5));
    assert_int_equal(sl__reactor_init(&m->r), 0);
    m->r.data = m;
    assert_int_equal(sl_redis_limiter_attach(m->rl, &m->r), 0);
    long long before = evalsha_calls();
    m->start.fn = mix_start;
    sl__reactor_post(&m->r, &m->start);
    sl__reactor_run(&m->r);
    long long sent = evalsha_calls() - before;
    assert_int_equal(m->answered, MIX_N);
    assert_int_equal(m->key_order_ok, MIX_N);
    for (int k = 0; k < 2; k++) {
        assert_int_equal(m->allowed[k], 3);
        for (int i = 0; i < 3; i++)
            assert_int_equal(m->remaining[k][i], 2 - i);
    }
    assert_int_equal(sent, 2);
    sl_redis_limiter_stats st;
    sl_redis_limiter_stats_get(m->rl, &st);
    assert_int_equal(st.redis_replies, MIX_N);
    assert_int_equal(sl_redis_limiter_detach(m->rl, &m->r), 0);
    sl__reactor_destroy(&m->r);
    sl_redis_limiter_free(m->rl);
}

/* Checks made in one loop round go to Redis batched, one EVALSHA per key's checks (one key per
 * script call: single-slot): 12 checks of a then 12 of b are 2 EVALSHAs. Each key is counted
 * as if its checks had run one after the other: burst 3 allows exactly 3 per key, remaining 2,
 * 1, 0, every answer in the order asked. */
static void test_one_round_is_one_batch(void **state)
{
    (void)state;
    mix_run m = {0};
    run_mix(&m);
    assert_int_equal(m.order_ok, MIX_N);
}

/* Checks of two buckets interleaved in one round (two Redis rules, or many clients) still go
 * as one EVALSHA per bucket, not one per run: a, b, a, b... 24 checks are 2 calls. Within a
 * bucket the answers keep the order asked (remaining 2, 1, 0); across buckets they need not. */
static void test_interleaved_keys_one_call_per_bucket(void **state)
{
    (void)state;
    mix_run m = {.interleave = true};
    run_mix(&m);
}

/* While a batch is out, the checks of later rounds wait for its reply and then go as one batch:
 * under load the batches grow instead of the calls. Redis is paused (CLIENT PAUSE) so the first
 * batch stays out while ten more rounds each make one check: 2 EVALSHAs for 11 checks, every
 * check answered by Redis in the order made. */
#define GROW_N 11

typedef struct grow_run {
    sl__reactor r;
    sl_redis_limiter *rl;
    sl__task step;
    int made, answered, in_order, from_redis, warm;
    int64_t last_remaining;
} grow_run;

static void grow_cb(void *arg, const sl_rate_decision *d)
{
    grow_run *g = arg;
    if (g->warm == 0) { /* the warm-up check: the script is loaded, the connection up */
        g->warm = 1;
        sl__reactor_stop(&g->r);
        return;
    }
    g->from_redis += d->source == SL_RATE_FROM_REDIS && d->allowed;
    if (g->answered == 0 || d->remaining == g->last_remaining - 1) g->in_order++;
    g->last_remaining = d->remaining;
    if (++g->answered == GROW_N) sl__reactor_stop(&g->r);
}

static void grow_step(sl__reactor *r, sl__task *t)
{
    grow_run *g = r->data;
    if (!sl_redis_limiter_connected(g->rl, r)) { /* not yet: the next round */
        sl__reactor_post(r, t);
        return;
    }
    sl_rate_decision d;
    const char *key = g->warm ? "grow" : "grow-warm";
    assert_int_equal(sl_redis_limiter_check(g->rl, r, key, strlen(key), 1, grow_cb, g, &d), 0);
    if (g->warm && ++g->made < GROW_N) sl__reactor_post(r, t); /* one check per round */
}

static void test_batches_grow_while_one_is_out(void **state)
{
    (void)state;
    grow_run g = {0};
    g.rl = new_limiter(1, 100, SL_REDIS_FAIL_CLOSED, NULL, SL_SEC(10));
    assert_int_equal(sl__reactor_init(&g.r), 0);
    g.r.data = &g;
    assert_int_equal(sl_redis_limiter_attach(g.rl, &g.r), 0);
    g.step.fn = grow_step;
    sl__reactor_post(&g.r, &g.step);
    sl__reactor_run(&g.r); /* until the warm-up check is answered */
    g.r.stop = false;
    long long before = evalsha_calls();
    redis_cmd("CLIENT PAUSE 300 ALL");
    sl__reactor_post(&g.r, &g.step);
    sl__reactor_run(&g.r);
    long long sent = evalsha_calls() - before;
    assert_int_equal(g.answered, GROW_N);
    assert_int_equal(g.from_redis, GROW_N);
    assert_int_equal(g.in_order, GROW_N);
    assert_int_equal(g.last_remaining, 100 - GROW_N);
    assert_int_equal(sent, 2);
    assert_int_equal(sl_redis_limiter_detach(g.rl, &g.r), 0);
    sl__reactor_destroy(&g.r);
    sl_redis_limiter_free(g.rl);
}

/* ---- two instances, one limit ------------------------------------------------------------ */

typedef struct instance {
    pthread_t thr;
    sl_redis_limiter *rl;
    int64_t until; /* sl_mono_ns() */
    int allowed, checks;
} instance;

static void *instance_main(void *arg)
{
    instance *in = arg;
    while (sl_mono_ns() < in->until) {
        sl_rate_decision d;
        if (sl_redis_limiter_check_wait(in->rl, "shared", 6, 1, 0, NULL, &d) == 0 &&
            d.source == SL_RATE_FROM_REDIS) {
            in->checks++;
            in->allowed += d.allowed;
        }
    }
    return NULL;
}

static void test_two_instances_share_a_limit(void **state)
{
    (void)state;
    const double limit = 100;
    const int64_t burst = 20;
    instance in[2];
    for (int i = 0; i < 2; i++) {
        in[i] = (instance){.rl = new_limiter(limit, burst, SL_REDIS_FAIL_CLOSED, NULL, SL_SEC(2))};
        assert_true(SL_WAIT_UNTIL(redis_answers(in[i].rl, "warmup"), 5000));
    }
    int64_t t0 = sl_mono_ns();
    for (int i = 0; i < 2; i++) {
        in[i].until = t0 + SL_MS(700);
        assert_int_equal(pthread_create(&in[i].thr, NULL, instance_main, &in[i]), 0);
    }
    for (int i = 0; i < 2; i++)
        pthread_join(in[i].thr, NULL);
    double secs = (double)(sl_mono_ns() - t0) / 1e9;
    int sum = in[0].allowed + in[1].allowed;
    /* One instance alone would allow burst + limit x elapsed (Redis's clock). Tolerance: the
     * elapsed time measured here vs in Redis (start/end skew of a few ms), 10% + 3 tokens. */
    double expect = (double)burst + limit * secs;
    print_message("two instances: %d + %d allowed of %d + %d checks in %.3f s (expect %.1f)\n",
                  in[0].allowed, in[1].allowed, in[0].checks, in[1].checks, secs, expect);
    assert_true(in[0].allowed > 0 && in[1].allowed > 0);
    assert_true(in[0].checks + in[1].checks > sum); /* the limit did bite */
    assert_true(fabs(sum - expect) <= expect * 0.1 + 3);
    for (int i = 0; i < 2; i++)
        sl_redis_limiter_free(in[i].rl);
}

/* ---- NOSCRIPT, timeouts, Redis down ------------------------------------------------------ */

static void test_noscript_reload(void **state)
{
    (void)state;
    redis_cmd("SCRIPT FLUSH");
    sl_redis_limiter *rl = new_limiter(10, 5, SL_REDIS_FAIL_CLOSED, NULL, SL_SEC(2));
    assert_true(SL_WAIT_UNTIL(redis_answers(rl, "ns"), 5000));
    sl_redis_limiter_stats st;
    sl_redis_limiter_stats_get(rl, &st);
    assert_int_equal(st.noscript, 0); /* a new connection loads the script before its checks */
    redis_cmd("SCRIPT FLUSH");
    sl_rate_decision d;
    assert_int_equal(sl_redis_limiter_check_wait(rl, "ns", 2, 1, 0, NULL, &d), 0);
    assert_int_equal(d.source, SL_RATE_FROM_REDIS);
    assert_int_equal(d.err, 0);
    assert_true(d.allowed);
    sl_redis_limiter_stats_get(rl, &st);
    assert_int_equal(st.noscript, 1);
    assert_int_equal(st.redis_errors, 0);
    assert_true(st.script_loads >= 2);
    sl_redis_limiter_free(rl);
}

static void test_timeout_paused_server(void **state)
{
    (void)state;
    const int64_t timeout = SL_MS(50);
    sl_redis_limiter *rl = new_limiter(10, 5, SL_REDIS_FAIL_OPEN, NULL, timeout);
    assert_true(SL_WAIT_UNTIL(redis_answers(rl, "to"), 5000));
    assert_int_equal(kill(g_redis.proc.pid, SIGSTOP), 0);
    int64_t t0 = sl_mono_ns();
    sl_rate_decision d;
    assert_int_equal(sl_redis_limiter_check_wait(rl, "to", 2, 1, 0, NULL, &d), 0);
    int64_t took = sl_mono_ns() - t0;
    assert_int_equal(d.err, SL_ETIMEDOUT);
    assert_int_equal(d.source, SL_RATE_FAIL_OPEN);
    assert_true(d.allowed);
    assert_true(took >= timeout - SL_MS(2));
    assert_true(took < timeout + SL_MS(400)); /* slack: a loaded 2-core machine under TSan */
    assert_int_equal(kill(g_redis.proc.pid, SIGCONT), 0);
    /* The late reply arrives and is discarded; the user heard once (the callback counts). */
    sl_redis_limiter_stats st;
    assert_true(SL_WAIT_UNTIL((sl_redis_limiter_stats_get(rl, &st), st.late_replies >= 1), 5000));
    assert_int_equal(st.timeouts, 1);
    assert_int_equal(st.fail_open, 1);
    assert_true(SL_WAIT_UNTIL(redis_answers(rl, "to"), 5000));
    sl_redis_limiter_free(rl);
}

/* A server that stays paused: after max(4 x timeout, 1 s) of silence the connection is
 * dropped and reopened, so timed-out calls do not pile up in hiredis; SIGCONT -> service. */
static void test_stalled_connection_is_replaced(void **state)
{
    (void)state;
    sl_redis_limiter *rl = new_limiter(10, 5, SL_REDIS_FAIL_OPEN, NULL, SL_MS(50));
    assert_true(SL_WAIT_UNTIL(redis_answers(rl, "stall"), 5000));
    assert_int_equal(kill(g_redis.proc.pid, SIGSTOP), 0);
    sl_redis_limiter_stats st;
    int64_t t0 = sl_mono_ns();
    sl_rate_decision d;
    while ((sl_redis_limiter_stats_get(rl, &st), st.disconnects == 0) &&
           sl_mono_ns() - t0 < SL_SEC(5)) {
        assert_int_equal(sl_redis_limiter_check_wait(rl, "stall", 5, 1, 0, NULL, &d), 0);
        assert_true(d.allowed); /* fail-open, whatever the reason */
        assert_int_not_equal(d.err, 0);
    }
    int64_t took = sl_mono_ns() - t0;
    assert_int_equal(kill(g_redis.proc.pid, SIGCONT), 0);
    assert_int_equal(st.disconnects, 1);
    assert_true(took >= SL_MS(950) && took < SL_SEC(3));
    assert_true(SL_WAIT_UNTIL(redis_answers(rl, "stall"), 5000));
    sl_redis_limiter_free(rl);
}

static int restart_same_port(sl_test_redis *r)
{
    char portbuf[16];
    snprintf(portbuf, sizeof portbuf, "%d", r->port);
    char *argv[] = {"redis-server", "--port", portbuf,       "--bind", "127.0.0.1", "--save", "",
                    "--appendonly", "no",     "--daemonize", "no",     NULL};
    int rc = sl_test_proc_start(&r->proc, argv, true);
    if (rc < 0) return rc;
    return sl_test_wait_port(r->port, 10000) ? 0 : SL_ETIMEDOUT;
}

static void test_redis_down_policies(void **state)
{
    (void)state;
    sl_keyed_tier tier = {10, 3};
    sl_keyed_config kc = {.tiers = &tier, .ntiers = 1, .max_keys = 64};
    sl_keyed *fb = NULL;
    assert_int_equal(sl_keyed_new(&kc, &fb), 0);
    sl_redis_limiter *open = new_limiter(10, 3, SL_REDIS_FAIL_OPEN, NULL, SL_MS(200));
    sl_redis_limiter *closed = new_limiter(10, 3, SL_REDIS_FAIL_CLOSED, NULL, SL_MS(200));
    sl_redis_limiter *local = new_limiter(10, 3, SL_REDIS_FAIL_LOCAL, fb, SL_MS(200));
    assert_true(SL_WAIT_UNTIL(redis_answers(open, "d"), 5000));
    assert_true(SL_WAIT_UNTIL(redis_answers(closed, "d"), 5000));
    assert_true(SL_WAIT_UNTIL(redis_answers(local, "d"), 5000));

    assert_int_equal(sl_test_redis_stop(&g_redis), 0);
    sl_rate_decision d;
    /* The drop is seen at once (EOF) or by the next check: answered by policy either way. */
    assert_int_equal(sl_redis_limiter_check_wait(open, "d", 1, 1, 0, NULL, &d), 0);
    assert_int_equal(d.source, SL_RATE_FAIL_OPEN);
    assert_true(d.allowed);
    assert_true(d.err == SL_EUNAVAIL || d.err == SL_ETIMEDOUT);
    assert_int_equal(sl_redis_limiter_check_wait(closed, "d", 1, 1, 0, NULL, &d), 0);
    assert_int_equal(d.source, SL_RATE_FAIL_CLOSED);
    assert_false(d.allowed);
    int local_allowed = 0;
    for (int i = 0; i < 10; i++) {
        assert_int_equal(sl_redis_limiter_check_wait(local, "d", 1, 1, 0, NULL, &d), 0);
        assert_int_equal(d.source, SL_RATE_FALLBACK);
        local_allowed += d.allowed;
    }
    assert_true(local_allowed >= 3 && local_allowed <= 5); /* burst 3, + refill while looping */

    sl_redis_limiter_stats st;
    sl_redis_limiter_stats_get(open, &st);
    assert_int_equal(st.fail_open, 1);
    sl_redis_limiter_stats_get(closed, &st);
    assert_int_equal(st.fail_closed, 1);
    sl_redis_limiter_stats_get(local, &st);
    assert_int_equal(st.fallback, 10);
    assert_true(st.disconnects >= 1 || st.timeouts >= 1);

    /* Redis returns on the same port: every limiter reconnects (backoff <= 50 ms). */
    assert_int_equal(restart_same_port(&g_redis), 0);
    assert_true(SL_WAIT_UNTIL(redis_answers(open, "d2"), 5000));
    assert_true(SL_WAIT_UNTIL(redis_answers(closed, "d2"), 5000));
    assert_true(SL_WAIT_UNTIL(redis_answers(local, "d2"), 5000));
    sl_redis_limiter_stats_get(local, &st);
    assert_true(st.connects >= 2);
    sl_redis_limiter_free(open);
    sl_redis_limiter_free(closed);
    sl_redis_limiter_free(local);
    sl_keyed_free(fb);
}

/* ---- tiers, and in-flight checks when the server dies ------------------------------------ */

static int tier_by_prefix(void *arg, const void *key, size_t len)
{
    (void)arg;
    return len > 5 && memcmp(key, "paid-", 5) == 0 ? 1 : 0;
}

static void test_tiers_per_key(void **state)
{
    (void)state;
    sl_keyed_tier tiers[] = {{1, 2}, {1, 5}};
    sl_redis_limiter_config cfg = {.port = g_redis.port,
                                   .tiers = tiers,
                                   .ntiers = 2,
                                   .tier_fn = tier_by_prefix,
                                   .timeout_ns = SL_SEC(2),
                                   .policy = SL_REDIS_FAIL_CLOSED,
                                   .logger = sl_log_discard()};
    sl_redis_limiter *rl = NULL;
    assert_int_equal(sl_redis_limiter_new(&cfg, &rl), 0);
    int64_t at = SL_SEC(1750000000);
    int free_ok = 0, paid_ok = 0;
    sl_rate_decision d;
    for (int i = 0; i < 8; i++) {
        assert_int_equal(sl_redis_limiter_check_wait(rl, "free-a", 6, 1, at, NULL, &d), 0);
        assert_int_equal(d.source, SL_RATE_FROM_REDIS);
        assert_int_equal(d.limit, 2);
        free_ok += d.allowed;
        assert_int_equal(sl_redis_limiter_check_wait(rl, "paid-a", 6, 1, at, NULL, &d), 0);
        assert_int_equal(d.limit, 5);
        paid_ok += d.allowed;
    }
    assert_int_equal(free_ok, 2);
    assert_int_equal(paid_ok, 5);
    /* Refused: retry_after is one emission interval; reset is until the bucket is full. */
    assert_false(d.allowed);
    assert_int_equal(d.retry_after_ns, SL_SEC(1));
    assert_int_equal(d.reset_ns, SL_SEC(5));
    /* n > burst is refused without a round trip; n = 3 of 5 fits after 3 s. */
    assert_int_equal(sl_redis_limiter_check_wait(rl, "paid-a", 6, 6, at, NULL, &d), 0);
    assert_int_equal(d.source, SL_RATE_FROM_LOCAL);
    assert_int_equal(d.retry_after_ns, SL_FOREVER);
    assert_int_equal(sl_redis_limiter_check_wait(rl, "paid-a", 6, 3, at + SL_SEC(3), NULL, &d), 0);
    assert_true(d.allowed);
    assert_int_equal(d.remaining, 0);
    sl_redis_limiter_free(rl);
}

typedef struct drop_run {
    sl__reactor r;
    sl_redis_limiter *rl;
    sl__task start;
    pid_t victim;
    int total, answered, dup, from_redis, unavailable;
    unsigned char seen[500];
} drop_run;

static drop_run *g_drop;

static void drop_cb(void *arg, const sl_rate_decision *d)
{
    drop_run *x = g_drop;
    unsigned char *slot = arg;
    if (*slot) x->dup++;
    *slot = 1;
    x->answered++;
    if (d->source == SL_RATE_FROM_REDIS)
        x->from_redis++;
    else if (d->err == SL_EUNAVAIL)
        x->unavailable++;
    if (x->answered == x->total) sl__reactor_stop(&x->r);
}

static void drop_start(sl__reactor *r, sl__task *t)
{
    drop_run *x = r->data;
    if (!sl_redis_limiter_connected(x->rl, r)) {
        sl__reactor_post(r, t); /* again after this iteration */
        return;
    }
    for (int i = 0; i < x->total; i++) {
        sl_rate_decision d;
        assert_int_equal(sl_redis_limiter_check(x->rl, r, "drop", 4, 1, drop_cb, &x->seen[i], &d),
                         0);
    }
    kill(x->victim, SIGKILL); /* the checks are still in hiredis's buffers, or in flight */
}

static void test_inflight_checks_answered_once_on_drop(void **state)
{
    (void)state;
    sl_test_redis own;
    assert_int_equal(sl_test_redis_start(&own), 0);
    static drop_run x;
    memset(&x, 0, sizeof x);
    g_drop = &x;
    x.total = 500;
    x.victim = own.proc.pid;
    sl_keyed_tier tier = {1000, 1000};
    sl_redis_limiter_config cfg = {.port = own.port,
                                   .tiers = &tier,
                                   .ntiers = 1,
                                   .timeout_ns = SL_SEC(5),
                                   .policy = SL_REDIS_FAIL_OPEN,
                                   .logger = sl_log_discard()};
    assert_int_equal(sl_redis_limiter_new(&cfg, &x.rl), 0);
    assert_int_equal(sl__reactor_init(&x.r), 0);
    x.r.data = &x;
    assert_int_equal(sl_redis_limiter_attach(x.rl, &x.r), 0);
    x.start.fn = drop_start;
    sl__reactor_post(&x.r, &x.start);
    sl__reactor_run(&x.r);
    assert_int_equal(x.answered, x.total);
    assert_int_equal(x.dup, 0);
    assert_int_equal(x.from_redis + x.unavailable, x.total);
    assert_true(x.unavailable > 0);
    sl_redis_limiter_stats st;
    sl_redis_limiter_stats_get(x.rl, &st);
    assert_int_equal(st.fail_open, (uint64_t)x.unavailable);
    assert_int_equal(sl_redis_limiter_detach(x.rl, &x.r), 0);
    sl__reactor_destroy(&x.r);
    sl_redis_limiter_free(x.rl);
    sl_test_redis_stop(&own);
}

static void test_keyed_decision(void **state)
{
    (void)state;
    sl_keyed_tier tier = {2, 4};
    sl_keyed_config kc = {.tiers = &tier, .ntiers = 1, .max_keys = 16};
    sl_keyed *k = NULL;
    assert_int_equal(sl_keyed_new(&kc, &k), 0);
    sl_rate_decision d;
    int64_t t = SL_SEC(10);
    assert_int_equal(sl__rate_decide_keyed_at(k, "a", 1, 3, &tier, t, &d), 0);
    assert_true(d.allowed);
    assert_int_equal(d.remaining, 1);
    assert_int_equal(d.reset_ns, SL_MS(1500)); /* 3 tokens at 2/s */
    assert_int_equal(sl__rate_decide_keyed_at(k, "a", 1, 2, &tier, t, &d), 0);
    assert_false(d.allowed);
    assert_int_equal(d.retry_after_ns, SL_MS(500)); /* 1 token missing */
    assert_int_equal(sl__rate_decide_keyed_at(k, "a", 1, 5, &tier, t, &d), 0);
    assert_int_equal(d.retry_after_ns, SL_FOREVER);
    sl_keyed_free(k);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sha1),
        cmocka_unit_test(test_config_rejected),
        cmocka_unit_test(test_keyed_decision),
        cmocka_unit_test(test_same_decisions_as_sl_limiter),
        cmocka_unit_test(test_async_pipelined),
        cmocka_unit_test(test_one_round_is_one_batch),
        cmocka_unit_test(test_interleaved_keys_one_call_per_bucket),
        cmocka_unit_test(test_batches_grow_while_one_is_out),
        cmocka_unit_test(test_tiers_per_key),
        cmocka_unit_test(test_inflight_checks_answered_once_on_drop),
        cmocka_unit_test(test_two_instances_share_a_limit),
        cmocka_unit_test(test_noscript_reload),
        cmocka_unit_test(test_timeout_paused_server),
        cmocka_unit_test(test_stalled_connection_is_replaced),
        cmocka_unit_test(test_redis_down_policies),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
#endif /* hiredis */
