/* Durable jobs against a real redis-server: a consumer SIGKILLed mid-job (a forked child)
 * and its job finished by another after the visibility timeout; retries with backoff through
 * the delayed set; dead-lettering; a blocking fetch cut short by its ctx; a submit cut by its
 * ctx mid-write (an error, not a SIGPIPE); sl_pool jobs spilled at shutdown. The crash test
 * runs first, while this process has no other thread, so the forked child may run ordinary
 * code. */
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

#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "sluice/pool.h"
#include "sluice/redis_jobs.h"

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

/* Codec: the arg is a NUL-terminated heap string. */
static int enc(void *ca, const void *arg, void **bytes, size_t *len)
{
    (void)ca;
    *len = strlen(arg);
    *bytes = malloc(*len + 1);
    if (!*bytes) return SL_ENOMEM;
    memcpy(*bytes, arg, *len);
    return 0;
}

static int dec(void *ca, const void *bytes, size_t len, void **arg)
{
    (void)ca;
    if (len >= 4 && memcmp(bytes, "BAD!", 4) == 0) return SL_EPARSE;
    char *s = malloc(len + 1);
    if (!s) return SL_ENOMEM;
    memcpy(s, bytes, len);
    s[len] = '\0';
    *arg = s;
    return 0;
}

static sl_redis_jobs *open_q(const char *queue, const char *consumer, int64_t visibility)
{
    sl_redis_jobs_config cfg = {.port = g_redis.port,
                                .queue = queue,
                                .consumer = consumer,
                                .codec = {.encode = enc, .decode = dec},
                                .max_attempts = 3,
                                .base_delay_ns = SL_MS(20),
                                .visibility_ns = visibility,
                                .max_block_ns = SL_MS(100),
                                .logger = getenv("JOBS_LOG") ? NULL : sl_log_discard()};
    sl_redis_jobs *q = NULL;
    assert_int_equal(sl_redis_jobs_new(&cfg, NULL, &q), 0);
    return q;
}

static long long redis_int(const char *fmt, const char *key)
{
    redisContext *c = redisConnect("127.0.0.1", g_redis.port);
    assert_true(c && !c->err);
    redisReply *r = redisCommand(c, fmt, key);
    assert_non_null(r);
    long long v = r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
    if (r->type == REDIS_REPLY_ARRAY && r->elements > 0) v = r->element[0]->integer; /* XPENDING */
    freeReplyObject(r);
    redisFree(c);
    return v;
}

static void test_killed_consumer_job_is_reclaimed(void **state)
{
    (void)state;
    const int64_t vis = SL_MS(300);
    sl_redis_jobs *prod = open_q("crash", "producer", vis);
    char id[16], arg[16];
    for (int i = 0; i < 5; i++) {
        snprintf(id, sizeof id, "job-%d", i);
        snprintf(arg, sizeof arg, "payload-%d", i);
        assert_int_equal(sl_redis_jobs_submit(prod, id, arg, NULL), 0);
    }
    int pfd[2];
    assert_int_equal(pipe(pfd), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* The doomed consumer: takes one job, says which, and hangs before XACK. */
        close(pfd[0]);
        sl_redis_jobs *q = open_q("crash", "doomed", vis);
        sl_redis_job *job = NULL;
        if (sl_redis_jobs_fetch(q, NULL, &job) != 0) _exit(1);
        char msg[SL_POOL_ID_MAX + 1];
        snprintf(msg, sizeof msg, "%s", job->id);
        if (write(pfd[1], msg, strlen(msg) + 1) < 0) _exit(2);
        for (;;)
            pause(); /* until SIGKILL */
    }
    close(pfd[1]);
    struct pollfd p = {.fd = pfd[0], .events = POLLIN};
    assert_int_equal(poll(&p, 1, 10000), 1);
    char taken[SL_POOL_ID_MAX + 1] = {0};
    assert_true(read(pfd[0], taken, sizeof taken - 1) > 0);
    close(pfd[0]);
    kill(pid, SIGKILL);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status));

    /* The survivor completes every job; the killed one after the visibility timeout. */
    sl_redis_jobs *q = open_q("crash", "survivor", vis);
    bool done[5] = {0};
    int ndone = 0, runs = 0;
    int64_t t_kill = sl_mono_ns();
    int64_t reclaimed_at = 0;
    while (ndone < 5 && sl_mono_ns() - t_kill < SL_SEC(10)) {
        sl_redis_job *job = NULL;
        assert_int_equal(sl_redis_jobs_fetch(q, NULL, &job), 0);
        runs++;
        int i = job->id[4] - '0';
        assert_true(i >= 0 && i < 5);
        char want[16];
        snprintf(want, sizeof want, "payload-%d", i);
        assert_string_equal(job->arg, want);
        if (job->reclaimed) {
            assert_string_equal(job->id, taken);
            assert_int_equal(job->attempts, 1); /* the lost run counted */
            reclaimed_at = sl_mono_ns();
        }
        if (!done[i]) ndone++;
        done[i] = true;
        assert_int_equal(sl_redis_jobs_ack(q, job, NULL), 0);
        sl_redis_job_free(q, job);
    }
    assert_int_equal(ndone, 5);
    assert_int_equal(runs, 5); /* no duplicate here: the dead consumer never acked */
    assert_true(reclaimed_at - t_kill >= vis - SL_MS(50));
    sl_redis_jobs_stats st;
    sl_redis_jobs_stats_get(q, &st);
    assert_int_equal(st.reclaimed, 1);
    assert_int_equal(st.acked, 5);
    assert_int_equal(redis_int("XPENDING %s workers", "sl:jobs:{crash}:stream"), 0);
    sl_redis_jobs_free(q);
    sl_redis_jobs_free(prod);
}

typedef struct fail_state {
    int calls;
    int fail_first;
    int rc;
    int attempts_seen[8];
} fail_state;

static int flaky(sl_ctx *ctx, sl_redis_job *job, void *arg)
{
    fail_state *fs = arg;
    if (fs->calls < 8) fs->attempts_seen[fs->calls] = job->attempts;
    fs->calls++;
    int rc = fs->calls <= fs->fail_first ? fs->rc : 0;
    if (fs->calls == 3 || rc == 0 || rc == SL_EPERMANENT) sl_ctx_cancel(ctx); /* enough */
    return rc;
}

static void test_retry_with_backoff_then_success(void **state)
{
    (void)state;
    sl_redis_jobs *q = open_q("retry", NULL, SL_SEC(30));
    assert_int_equal(sl_redis_jobs_submit(q, "r1", "hello", NULL), 0);
    fail_state fs = {.fail_first = 2, .rc = SL_EIO};
    sl_ctx *ctx = NULL;
    assert_int_equal(sl_ctx_with_timeout(NULL, SL_SEC(10), &ctx), 0);
    int64_t t0 = sl_mono_ns();
    assert_int_equal(sl_redis_jobs_work(q, flaky, &fs, ctx), SL_ECANCELED);
    int64_t took = sl_mono_ns() - t0;
    sl_ctx_release(ctx);
    assert_int_equal(fs.calls, 3);
    assert_int_equal(fs.attempts_seen[0], 0);
    assert_int_equal(fs.attempts_seen[1], 1);
    assert_int_equal(fs.attempts_seen[2], 2);
    assert_true(took >= SL_MS(60) - SL_MS(5)); /* 20 ms + 40 ms of backoff */
    sl_redis_jobs_stats st;
    sl_redis_jobs_stats_get(q, &st);
    assert_int_equal(st.retried, 2);
    assert_int_equal(st.promoted, 2);
    assert_int_equal(st.acked, 1);
    assert_int_equal(redis_int("ZCARD %s", "sl:jobs:{retry}:delayed"), 0);
    assert_int_equal(redis_int("XLEN %s", "sl:jobs:{retry}:stream"), 0);
    sl_redis_jobs_free(q);
}

static void test_dead_letter(void **state)
{
    (void)state;
    sl_redis_jobs *q = open_q("dead", NULL, SL_SEC(30));
    assert_int_equal(sl_redis_jobs_submit(q, "always-fails", "x", NULL), 0);
    fail_state fs = {.fail_first = 100, .rc = SL_EIO};
    sl_ctx *ctx = NULL;
    assert_int_equal(sl_ctx_with_timeout(NULL, SL_SEC(10), &ctx), 0);
    assert_int_equal(sl_redis_jobs_work(q, flaky, &fs, ctx), SL_ECANCELED);
    sl_ctx_release(ctx);
    assert_int_equal(fs.calls, 3);
    assert_int_equal(redis_int("XLEN %s", "sl:jobs:{dead}:dead"), 1);
    /* A permanent failure goes straight to :dead; an undecodable payload too. */
    assert_int_equal(sl_redis_jobs_submit(q, "perm", "y", NULL), 0);
    assert_int_equal(sl_redis_jobs_submit(q, "bad", "BAD!", NULL), 0);
    fs = (fail_state){.fail_first = 100, .rc = SL_EPERMANENT};
    assert_int_equal(sl_ctx_with_timeout(NULL, SL_SEC(10), &ctx), 0);
    assert_int_equal(sl_redis_jobs_work(q, flaky, &fs, ctx), SL_ECANCELED);
    sl_ctx_release(ctx);
    assert_int_equal(fs.calls, 1);
    assert_int_equal(redis_int("XLEN %s", "sl:jobs:{dead}:dead"), 2);
    sl_redis_job *job = NULL;
    assert_int_equal(sl_ctx_with_timeout(NULL, SL_MS(300), &ctx), 0);
    assert_int_equal(sl_redis_jobs_fetch(q, ctx, &job), SL_ETIMEDOUT); /* "bad" skipped */
    sl_ctx_release(ctx);
    assert_int_equal(redis_int("XLEN %s", "sl:jobs:{dead}:dead"), 3);
    sl_redis_jobs_stats st;
    sl_redis_jobs_stats_get(q, &st);
    assert_int_equal(st.dead, 3);
    sl_redis_jobs_free(q);
}

static void test_fetch_honours_ctx(void **state)
{
    (void)state;
    sl_redis_jobs_config cfg = {.port = g_redis.port,
                                .queue = "empty",
                                .codec = {.encode = enc, .decode = dec},
                                .max_block_ns = SL_SEC(30), /* only the ctx can end it */
                                .logger = sl_log_discard()};
    sl_redis_jobs *q = NULL;
    assert_int_equal(sl_redis_jobs_new(&cfg, NULL, &q), 0);
    sl_ctx *ctx = NULL;
    assert_int_equal(sl_ctx_with_cancel(NULL, &ctx), 0);
    sl_ctx *to = NULL;
    assert_int_equal(sl_ctx_with_timeout(ctx, SL_MS(150), &to), 0);
    int64_t t0 = sl_mono_ns();
    sl_redis_job *job = NULL;
    assert_int_equal(sl_redis_jobs_fetch(q, to, &job), SL_ETIMEDOUT);
    int64_t took = sl_mono_ns() - t0;
    assert_null(job);
    assert_true(took >= SL_MS(140) && took < SL_MS(1500));
    sl_ctx_release(to);
    sl_ctx_release(ctx);
    /* The connection was shut down by the hook; the next call reopens it. */
    assert_int_equal(sl_redis_jobs_submit(q, "after", "z", NULL), 0);
    assert_int_equal(sl_redis_jobs_fetch(q, NULL, &job), 0);
    assert_string_equal(job->id, "after");
    assert_int_equal(sl_redis_jobs_ack(q, job, NULL), 0);
    sl_redis_job_free(q, job);
    sl_redis_jobs_free(q);
}

static bool sigpipe_pending(void)
{
    sigset_t p;
    sigemptyset(&p);
    sigpending(&p);
    return sigismember(&p, SIGPIPE);
}

static bool sigpipe_blocked(void)
{
    sigset_t m;
    sigemptyset(&m);
    pthread_sigmask(SIG_BLOCK, NULL, &m);
    return sigismember(&m, SIGPIPE);
}

/* Codec for a big payload: the arg, {buf, len}, hands its malloc'd buffer over as the
 * encoded bytes (the library frees them), so encoding costs nothing. */
typedef struct big_arg {
    char *buf;
    size_t len;
} big_arg;

static int enc_take(void *ca, const void *arg, void **bytes, size_t *len)
{
    (void)ca;
    big_arg *b = (big_arg *)arg;
    *bytes = b->buf;
    *len = b->len;
    b->buf = NULL;
    return 0;
}

/* A ctx that fires while hiredis is still writing the command: the on-done hook shuts the
 * socket down under that write(2), which then fails with EPIPE. That must be an SL_ETIMEDOUT,
 * not a SIGPIPE killing the process (the default action; hiredis writes with write(2), not
 * send(MSG_NOSIGNAL)). A stalled Redis (SIGSTOP) and a payload far larger than the socket
 * buffers keep the write blocked until the deadline, every time. (sluice-demo died this way
 * under ASan: a submit that got the producer's mutex just as its deadline passed, before
 * the ctx timer fired, had its socket shut down before its first write.) */
static void test_ctx_cut_mid_write_no_sigpipe(void **state)
{
    (void)state;
    sl_redis_jobs_config cfg = {.port = g_redis.port,
                                .queue = "bigwrite",
                                .codec = {.encode = enc_take, .decode = dec},
                                .logger = sl_log_discard()};
    sl_redis_jobs *q = NULL;
    assert_int_equal(sl_redis_jobs_new(&cfg, NULL, &q), 0);
    assert_false(sigpipe_blocked()); /* the default: a stray SIGPIPE kills this test */
    /* Without reads on the other side, loopback buffers take a few MB at most. */
    big_arg big = {.len = 32u << 20};
    big.buf = malloc(big.len);
    assert_non_null(big.buf);
    memset(big.buf, 'x', big.len);
    assert_int_equal(kill(g_redis.proc.pid, SIGSTOP), 0);
    sl_ctx *ctx = NULL;
    assert_int_equal(sl_ctx_with_timeout(NULL, SL_MS(300), &ctx), 0);
    int64_t t0 = sl_mono_ns();
    int rc = sl_redis_jobs_submit(q, "big", &big, ctx);
    int64_t took = sl_mono_ns() - t0;
    assert_int_equal(kill(g_redis.proc.pid, SIGCONT), 0);
    sl_ctx_release(ctx);
    assert_null(big.buf); /* encoded: the write was under way when the deadline came */
    assert_int_equal(rc, SL_ETIMEDOUT);
    assert_true(took >= SL_MS(290) && took < SL_MS(2000));
    /* Nothing left behind on this thread: no SIGPIPE pending, the mask as it was. */
    assert_false(sigpipe_pending());
    assert_false(sigpipe_blocked());
    /* The cut connection is replaced on the next call; the cut command never ran. */
    char small[] = "v";
    big = (big_arg){.buf = strdup(small), .len = 1};
    assert_int_equal(sl_redis_jobs_submit(q, "small", &big, NULL), 0);
    sl_redis_job *job = NULL;
    sl_redis_jobs *w = open_q("bigwrite", "w", SL_SEC(30));
    assert_int_equal(sl_redis_jobs_fetch(w, NULL, &job), 0);
    assert_string_equal(job->id, "small");
    assert_string_equal(job->arg, "v");
    assert_int_equal(sl_redis_jobs_ack(w, job, NULL), 0);
    sl_redis_job_free(w, job);
    assert_int_equal(redis_int("XLEN %s", "sl:jobs:{bigwrite}:stream"), 0);
    sl_redis_jobs_free(w);
    sl_redis_jobs_free(q);
}

/* ---- spilling an sl_pool's abandoned jobs ------------------------------------------------ */

static int blocks_until_canceled(sl_ctx *ctx, void *arg)
{
    (void)arg;
    return sl_ctx_wait(ctx);
}

typedef struct spill_state {
    pthread_mutex_t mu; /* on_abandoned runs on shutdown's thread and on workers' */
    sl_redis_jobs *q;
    int spilled, failed;
} spill_state;

static void on_abandoned(void *hook_arg, const sl_pool_job *job)
{
    spill_state *ss = hook_arg;
    pthread_mutex_lock(&ss->mu);
    if (sl_redis_jobs_spill(ss->q, job, NULL) == 0) {
        ss->spilled++;
    } else {
        ss->failed++;
        free(job->arg);
    }
    pthread_mutex_unlock(&ss->mu);
}

static void test_pool_spill_on_shutdown(void **state)
{
    (void)state;
    spill_state ss = {.mu = PTHREAD_MUTEX_INITIALIZER, .q = open_q("spill", NULL, SL_SEC(30))};
    sl_pool_opts po = {.workers = 1,
                       .queue_capacity = 16,
                       .on_abandoned = on_abandoned,
                       .hook_arg = &ss,
                       .logger = sl_log_discard()};
    sl_pool *pool = NULL;
    assert_int_equal(sl_pool_new(&po, &pool), 0);
    for (int i = 0; i < 4; i++) {
        char id[16];
        snprintf(id, sizeof id, "pooled-%d", i);
        sl_pool_job job = {
            .id = id, .fn = blocks_until_canceled, .arg = strdup(id), .arg_free = free};
        assert_int_equal(sl_pool_submit(pool, &job, NULL), 0);
    }
    sl_ctx *now = NULL;
    assert_int_equal(sl_ctx_with_cancel(NULL, &now), 0);
    sl_ctx_cancel(now);
    sl_pool_report rep;
    sl_pool_shutdown(pool, now, &rep);
    sl_ctx_release(now);
    sl_pool_free(pool);
    assert_int_equal(ss.failed, 0);
    assert_int_equal((uint64_t)ss.spilled, rep.abandoned);
    assert_true(ss.spilled >= 3); /* the queued ones at least; the running one too if it ran */
    /* Every spilled job is in the stream, with its id and payload. */
    sl_redis_jobs *w = open_q("spill", "w", SL_SEC(30));
    for (int i = 0; i < ss.spilled; i++) {
        sl_redis_job *job = NULL;
        assert_int_equal(sl_redis_jobs_fetch(w, NULL, &job), 0);
        assert_string_equal(job->arg, job->id);
        assert_int_equal(strncmp(job->id, "pooled-", 7), 0);
        assert_int_equal(sl_redis_jobs_ack(w, job, NULL), 0);
        sl_redis_job_free(w, job);
    }
    sl_redis_jobs_free(w);
    sl_redis_jobs_free(ss.q);
}

static int succeed(sl_ctx *ctx, sl_redis_job *job, void *arg)
{
    (void)job;
    (*(int *)arg)++;
    sl_ctx_cancel(ctx);
    return 0;
}

/* Redis down: the work loop keeps waiting (on its ctx, with backoff) instead of failing, and
 * resumes when Redis is back on the same port. */
static void test_work_survives_redis_restart(void **state)
{
    (void)state;
    sl_redis_jobs *q = open_q("restart", "w", SL_SEC(30));
    assert_int_equal(sl_test_redis_stop(&g_redis), 0);
    int runs = 0;
    sl_ctx *ctx = NULL;
    assert_int_equal(sl_ctx_with_timeout(NULL, SL_MS(300), &ctx), 0);
    assert_int_equal(sl_redis_jobs_work(q, succeed, &runs, ctx), SL_ETIMEDOUT);
    sl_ctx_release(ctx);
    char portbuf[16];
    snprintf(portbuf, sizeof portbuf, "%d", g_redis.port);
    char *argv[] = {"redis-server", "--port", portbuf,       "--bind", "127.0.0.1", "--save", "",
                    "--appendonly", "no",     "--daemonize", "no",     NULL};
    assert_int_equal(sl_test_proc_start(&g_redis.proc, argv, true), 0);
    assert_true(sl_test_wait_port(g_redis.port, 10000));
    /* A fresh server has no group: the worker recreates it on NOGROUP. (Persistence,
     * AOF/RDB, is what keeps the jobs themselves across a real restart.) */
    assert_int_equal(sl_redis_jobs_submit(q, "after-restart", "v", NULL), 0);
    assert_int_equal(sl_ctx_with_timeout(NULL, SL_SEC(10), &ctx), 0);
    assert_int_equal(sl_redis_jobs_work(q, succeed, &runs, ctx), SL_ECANCELED);
    sl_ctx_release(ctx);
    assert_int_equal(runs, 1);
    sl_redis_jobs_free(q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_killed_consumer_job_is_reclaimed), /* first: forks */
        cmocka_unit_test(test_retry_with_backoff_then_success),
        cmocka_unit_test(test_dead_letter),
        cmocka_unit_test(test_fetch_honours_ctx),
        cmocka_unit_test(test_ctx_cut_mid_write_no_sigpipe),
        cmocka_unit_test(test_pool_spill_on_shutdown),
        cmocka_unit_test(test_work_survives_redis_restart),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
#endif /* hiredis */
