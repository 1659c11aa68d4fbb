/* Durable jobs in a Redis Stream: submit (XADD), fetch (promote due retries, reclaim stale
 * pending jobs with XAUTOCLAIM, else XREADGROUP BLOCK), ack (XACK + XDEL), fail (a Lua script
 * that XACKs and, in the same step, schedules the retry in the :delayed sorted set or writes
 * the :dead stream).
 *
 * Why scripts: "ack and reschedule" must be one step. Done as two commands, a crash between
 * them either loses the job (acked, never rescheduled) or runs it twice at once (rescheduled
 * and still pending, so reclaimed too). The scripts also XACK first and do nothing if the
 * entry was no longer pending (another worker reclaimed it and finished it: it must not come
 * back). Promotion (ZRANGEBYSCORE + XADD + ZREM) is a script for the same reason: two
 * workers promoting at once must not both XADD one job. Scripts read Redis's TIME, so due
 * times do not depend on any instance's clock.
 *
 * Blocking and ctx: one synchronous hiredis connection per object. Around each command an
 * sl_ctx on-done hook is registered whose only action is shutdown(fd): it can run on any
 * thread (async-signal-safe, no hiredis state touched), it wakes the blocked read at once, and
 * sl_ctx_hook_stop waits for a running hook, so the fd is never closed under it. A connection
 * that was shut down, or that failed, is freed and reopened by the next command. The hook may
 * fire before or while hiredis writes the command, and hiredis writes with write(2): each
 * command runs with SIGPIPE held back on its thread (sigpipe.c), so that write fails with
 * EPIPE instead of raising a SIGPIPE that would end the application.
 *
 * Delayed member format: "<entry>|<attempts>|<idlen>|<id><payload>". The stream entry id
 * makes two jobs with equal id and payload distinct members; the payload is last, so it may
 * hold any byte. */
#ifdef SLUICE_HAVE_HIREDIS

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "sluice/clock.h"
#include "sluice/error.h"
#include "sluice/redis_jobs.h"
#include "redis/redis_int.h"

static const char PROMOTE[] =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, "
    "tonumber(ARGV[1]))\n"
    "for _, m in ipairs(due) do\n"
    "  local a = string.find(m, '|', 1, true)\n"
    "  local b = string.find(m, '|', a + 1, true)\n"
    "  local c = string.find(m, '|', b + 1, true)\n"
    "  local idlen = tonumber(string.sub(m, b + 1, c - 1))\n"
    "  redis.call('XADD', KEYS[2], '*', 'id', string.sub(m, c + 1, c + idlen),\n"
    "             'attempts', string.sub(m, a + 1, b - 1), 'payload', string.sub(m, c + idlen + "
    "1))\n"
    "  redis.call('ZREM', KEYS[1], m)\n"
    "end\n"
    "return #due\n";

/* KEYS stream, delayed; ARGV group, entry, member, delay_ms */
static const char RETRY[] =
    "if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end\n"
    "redis.call('XDEL', KEYS[1], ARGV[2])\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "redis.call('ZADD', KEYS[2], now + tonumber(ARGV[4]), ARGV[3])\n"
    "return 1\n";

/* KEYS stream, dead; ARGV group, entry, id, attempts, payload, error */
static const char DEAD[] =
    "if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end\n"
    "redis.call('XDEL', KEYS[1], ARGV[2])\n"
    "redis.call('XADD', KEYS[2], '*', 'id', ARGV[3], 'attempts', ARGV[4], 'payload', ARGV[5],\n"
    "           'error', ARGV[6], 'entry', ARGV[2])\n"
    "return 1\n";

enum { S_PROMOTE, S_RETRY, S_DEAD, S_N };
static const char *const SCRIPTS[S_N] = {PROMOTE, RETRY, DEAD};

struct sl_redis_jobs {
    redisContext *c; /* NULL: reconnect on next use */
    char *host;
    int port;
    char *stream, *delayed, *dead, *group, *consumer;
    sl_redis_codec codec;
    int max_attempts;
    int64_t base_delay, max_delay, visibility, max_block, io_timeout; /* ns */
    int64_t cur_timeout; /* ns: the socket timeout currently set */
    char cursor[48];     /* XAUTOCLAIM's next start */
    char sha[S_N][41];
    sl_logger *logger;
    sl_redis_jobs_stats st;
};

static struct timeval tv_of(int64_t ns)
{
    return (struct timeval){.tv_sec = ns / SL_SEC(1), .tv_usec = (ns % SL_SEC(1)) / 1000};
}

static void drop(sl_redis_jobs *q)
{
    if (q->c) redisFree(q->c);
    q->c = NULL;
}

static int ensure(sl_redis_jobs *q)
{
    if (q->c && q->c->err) drop(q);
    if (q->c) return 0;
    redisContext *c = redisConnectWithTimeout(q->host, q->port, tv_of(q->io_timeout));
    if (!c) return SL_ENOMEM;
    if (c->err) {
        redisFree(c);
        return SL_EUNAVAIL;
    }
    q->c = c;
    q->cur_timeout = 0;
    q->st.reconnects++;
    return 0;
}

static void abort_fd(void *arg, int err)
{
    (void)err;
    shutdown((int)(intptr_t)arg, SHUT_RDWR);
}

/* Runs one command. Returns 0 with *out (any reply type, error replies included: the caller
 * looks), or the ctx's error, SL_EUNAVAIL, SL_ENOMEM. block_ns extends the socket timeout for
 * a command that blocks in Redis. */
static int cmd(sl_redis_jobs *q, sl_ctx *ctx, int64_t block_ns, int argc, const char **argv,
               const size_t *lens, redisReply **out)
{
    int rc = sl_ctx_err(ctx);
    if (rc) return rc;
    if ((rc = ensure(q)) < 0) return rc;
    int64_t want = q->io_timeout + block_ns;
    if (want != q->cur_timeout) {
        if (redisSetTimeout(q->c, tv_of(want)) != REDIS_OK) {
            drop(q);
            return SL_EUNAVAIL;
        }
        q->cur_timeout = want;
    }
    sl_ctx_hook *hook = NULL;
    rc = sl_ctx_on_done(ctx, abort_fd, (void *)(intptr_t)q->c->fd, &hook);
    if (rc < 0) return rc;
    if (rc == 1) { /* already done: the hook ran and shut the socket */
        drop(q);
        return sl_ctx_err(ctx);
    }
    /* The hook may shut the socket down while hiredis is still writing (the deadline came
     * first, or the command is big): EPIPE then, not a SIGPIPE that ends the process. */
    sl__sigpipe_guard g;
    sl__sigpipe_hold(&g);
    redisReply *r = redisCommandArgv(q->c, argc, argv, lens);
    sl__sigpipe_release(&g);
    sl_ctx_hook_stop(hook);
    int cerr = sl_ctx_err(ctx);
    if (!r || cerr) {
        /* Either failed, or the hook may have shut the socket after the reply: reopen. */
        drop(q);
        if (!r) return cerr ? cerr : SL_EUNAVAIL;
    }
    *out = r;
    return 0;
}

static int cmd_simple(sl_redis_jobs *q, sl_ctx *ctx, int argc, const char **argv,
                      const size_t *lens, long long *integer)
{
    redisReply *r = NULL;
    int rc = cmd(q, ctx, 0, argc, argv, lens, &r);
    if (rc < 0) return rc;
    if (r->type == REDIS_REPLY_ERROR) {
        sl_log_error(q->logger, "redis jobs: error reply", SL_A_STR("cmd", argv[0]),
                     SL_A_STR("reply", r->str));
        rc = SL_EREDIS;
    } else if (integer) {
        *integer = r->type == REDIS_REPLY_INTEGER ? r->integer : 0;
    }
    freeReplyObject(r);
    return rc;
}

/* EVALSHA, and EVAL when Redis lost the script (restart, SCRIPT FLUSH): EVAL caches it. */
static int script(sl_redis_jobs *q, sl_ctx *ctx, int which, int argc, const char **argv,
                  const size_t *lens, long long *integer)
{
    const char *av[12];
    size_t lv[12];
    av[0] = "EVALSHA";
    av[1] = q->sha[which];
    av[2] = "2";
    lv[0] = 7;
    lv[1] = 40;
    lv[2] = 1;
    for (int i = 0; i < argc; i++) {
        av[3 + i] = argv[i];
        lv[3 + i] = lens[i];
    }
    redisReply *r = NULL;
    int rc = cmd(q, ctx, 0, 3 + argc, av, lv, &r);
    if (rc < 0) return rc;
    bool noscript = r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0;
    if (!noscript) {
        if (r->type == REDIS_REPLY_ERROR) {
            sl_log_error(q->logger, "redis jobs: script error", SL_A_STR("reply", r->str));
            rc = SL_EREDIS;
        } else if (integer) {
            *integer = r->type == REDIS_REPLY_INTEGER ? r->integer : 0;
        }
        freeReplyObject(r);
        return rc;
    }
    freeReplyObject(r);
    av[0] = "EVAL";
    lv[0] = 4;
    av[1] = SCRIPTS[which];
    lv[1] = strlen(SCRIPTS[which]);
    return cmd_simple(q, ctx, 3 + argc, av, lv, integer);
}

/* ---- new / free -------------------------------------------------------------------------- */

static char *keyname(const char *prefix, const char *queue, const char *suffix)
{
    size_t n = strlen(prefix) + strlen(queue) + strlen(suffix) + 3;
    char *s = malloc(n);
    if (s) snprintf(s, n, "%s{%s}%s", prefix, queue, suffix);
    return s;
}

void sl_redis_jobs_free(sl_redis_jobs *q)
{
    if (!q) return;
    drop(q);
    free(q->host);
    free(q->stream);
    free(q->delayed);
    free(q->dead);
    free(q->group);
    free(q->consumer);
    free(q);
}

static char *default_consumer(void)
{
    static _Atomic unsigned counter;
    char host[64] = "host", buf[128];
    gethostname(host, sizeof host - 1);
    host[sizeof host - 1] = '\0';
    snprintf(buf, sizeof buf, "%s-%ld-%u", host, (long)getpid(), ++counter);
    return strdup(buf);
}

/* Creates the group (and the stream) unless it exists. From id "0": a group created after
 * jobs were submitted still sees them. Also run when Redis answers NOGROUP (a flushed or
 * replaced server), so workers recover without a restart. */
static int create_group(sl_redis_jobs *q, sl_ctx *ctx)
{
    const char *argv[] = {"XGROUP", "CREATE", q->stream, q->group, "0", "MKSTREAM"};
    size_t lens[6];
    for (int i = 0; i < 6; i++)
        lens[i] = strlen(argv[i]);
    redisReply *r = NULL;
    int rc = cmd(q, ctx, 0, 6, argv, lens, &r);
    if (rc == 0) {
        if (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "BUSYGROUP", 9) != 0) {
            sl_log_error(q->logger, "redis jobs: XGROUP CREATE", SL_A_STR("reply", r->str));
            rc = SL_EREDIS;
        }
        freeReplyObject(r);
    }
    return rc;
}

int sl_redis_jobs_new(const sl_redis_jobs_config *cfg, sl_ctx *ctx, sl_redis_jobs **out)
{
    if (!cfg || !out || !cfg->queue || !cfg->codec.encode || !cfg->codec.decode ||
        cfg->max_attempts < 0)
        return SL_EINVAL;
    sl_redis_jobs *q = calloc(1, sizeof *q);
    if (!q) return SL_ENOMEM;
    const char *prefix = cfg->prefix ? cfg->prefix : "sl:jobs:";
    q->host = strdup(cfg->host ? cfg->host : "127.0.0.1");
    q->stream = keyname(prefix, cfg->queue, ":stream");
    q->delayed = keyname(prefix, cfg->queue, ":delayed");
    q->dead = keyname(prefix, cfg->queue, ":dead");
    q->group = strdup(cfg->group ? cfg->group : "workers");
    q->consumer = cfg->consumer ? strdup(cfg->consumer) : default_consumer();
    if (!q->host || !q->stream || !q->delayed || !q->dead || !q->group || !q->consumer) {
        sl_redis_jobs_free(q);
        return SL_ENOMEM;
    }
    q->port = cfg->port ? cfg->port : 6379;
    q->codec = cfg->codec;
    q->max_attempts = cfg->max_attempts ? cfg->max_attempts : 3;
    q->base_delay = cfg->base_delay_ns > 0 ? cfg->base_delay_ns : SL_MS(100);
    q->max_delay = cfg->max_delay_ns > 0 ? cfg->max_delay_ns : SL_SEC(30);
    q->visibility = cfg->visibility_ns > 0 ? cfg->visibility_ns : SL_SEC(30);
    q->max_block = cfg->max_block_ns > 0 ? cfg->max_block_ns : SL_SEC(1);
    q->io_timeout = cfg->io_timeout_ns > 0 ? cfg->io_timeout_ns : SL_SEC(2);
    q->logger = cfg->logger;
    strcpy(q->cursor, "0-0");
    for (int i = 0; i < S_N; i++)
        sl__redis_sha1_hex(SCRIPTS[i], strlen(SCRIPTS[i]), q->sha[i]);
    int rc = create_group(q, ctx);
    if (rc < 0) {
        sl_redis_jobs_free(q);
        return rc;
    }
    *out = q;
    return 0;
}

/* ---- submit / spill ---------------------------------------------------------------------- */

static int add(sl_redis_jobs *q, const char *id, const void *payload, size_t len, int attempts,
               sl_ctx *ctx)
{
    char att[16];
    snprintf(att, sizeof att, "%d", attempts);
    const char *argv[] = {"XADD", q->stream, "*", "id", id, "attempts", att, "payload", payload};
    size_t lens[9];
    for (int i = 0; i < 8; i++)
        lens[i] = strlen(argv[i]);
    lens[8] = len;
    return cmd_simple(q, ctx, 9, argv, lens, NULL);
}

static int encode_add(sl_redis_jobs *q, const char *id, const void *arg, sl_ctx *ctx)
{
    if (!id) id = "";
    if (strlen(id) > SL_POOL_ID_MAX) return SL_EINVAL;
    void *bytes = NULL;
    size_t len = 0;
    int rc = q->codec.encode(q->codec.codec_arg, arg, &bytes, &len);
    if (rc < 0) return rc;
    rc = add(q, id, bytes ? bytes : "", len, 0, ctx);
    free(bytes);
    return rc;
}

int sl_redis_jobs_submit(sl_redis_jobs *q, const char *id, const void *arg, sl_ctx *ctx)
{
    if (!q) return SL_EINVAL;
    int rc = encode_add(q, id, arg, ctx);
    if (rc == 0) q->st.submitted++;
    return rc;
}

int sl_redis_jobs_spill(sl_redis_jobs *q, const sl_pool_job *job, sl_ctx *ctx)
{
    if (!q || !job) return SL_EINVAL;
    int rc = encode_add(q, job->id, job->arg, ctx);
    if (rc < 0) return rc;
    q->st.spilled++;
    if (job->arg_free) job->arg_free(job->arg);
    return 0;
}

/* ---- fetch ------------------------------------------------------------------------------- */

void sl_redis_job_free(sl_redis_jobs *q, sl_redis_job *job)
{
    if (!job) return;
    if (job->arg) {
        if (q && q->codec.arg_free)
            q->codec.arg_free(job->arg);
        else
            free(job->arg);
    }
    free(job->payload);
    free(job);
}

static int move_dead(sl_redis_jobs *q, const sl_redis_job *job, int err, int attempts, sl_ctx *ctx)
{
    char att[16], e[24];
    snprintf(att, sizeof att, "%d", attempts);
    snprintf(e, sizeof e, "%s", sl_errname(err));
    const char *argv[] = {
        q->stream, q->dead, q->group, job->entry, job->id, att, job->payload ? job->payload : "",
        e};
    size_t lens[8];
    for (int i = 0; i < 8; i++)
        lens[i] = i == 6 ? job->payload_len : strlen(argv[i]);
    long long moved = 0;
    int rc = script(q, ctx, S_DEAD, 8, argv, lens, &moved);
    if (rc == 0 && moved) q->st.dead++;
    return rc < 0 ? rc : 1;
}

/* Builds a job from one stream entry reply: [entry-id, [field, value, ...]]. Returns 1 with
 * *out, 0 if the entry is to be skipped (deleted, or dead-lettered here), or an error. */
static int take_entry(sl_redis_jobs *q, const redisReply *e, bool reclaimed, sl_ctx *ctx,
                      sl_redis_job **out)
{
    if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
        e->element[0]->type != REDIS_REPLY_STRING)
        return 0;
    const redisReply *f = e->element[1];
    sl_redis_job *job = calloc(1, sizeof *job);
    if (!job) return SL_ENOMEM;
    job->reclaimed = reclaimed;
    snprintf(job->entry, sizeof job->entry, "%s", e->element[0]->str);
    bool have_payload = false;
    for (size_t i = 0; f->type == REDIS_REPLY_ARRAY && i + 1 < f->elements; i += 2) {
        const redisReply *k = f->element[i], *v = f->element[i + 1];
        if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING) continue;
        if (strcmp(k->str, "id") == 0) {
            snprintf(job->id, sizeof job->id, "%s", v->str);
        } else if (strcmp(k->str, "attempts") == 0) {
            job->attempts = atoi(v->str);
        } else if (strcmp(k->str, "payload") == 0) {
            job->payload = malloc(v->len ? v->len : 1);
            if (!job->payload) {
                sl_redis_job_free(q, job);
                return SL_ENOMEM;
            }
            memcpy(job->payload, v->str, v->len);
            job->payload_len = v->len;
            have_payload = true;
        }
    }
    if (reclaimed) job->attempts++; /* the lost run counts: a job that kills workers ends */
    int rc = have_payload ? 0 : SL_EPARSE;
    if (rc == 0 && reclaimed && job->attempts >= q->max_attempts) rc = SL_EABANDONED;
    if (rc == 0)
        rc = q->codec.decode(q->codec.codec_arg, job->payload, job->payload_len, &job->arg);
    if (rc < 0) {
        sl_log_warn(q->logger, "redis jobs: dead-lettered at fetch", SL_A_STR("id", job->id),
                    SL_A_ERR("err", rc));
        job->arg = NULL;
        int mrc = move_dead(q, job, rc, job->attempts, ctx);
        sl_redis_job_free(q, job);
        return mrc < 0 ? mrc : 0;
    }
    q->st.fetched++;
    if (reclaimed) q->st.reclaimed++;
    *out = job;
    return 1;
}

static int promote(sl_redis_jobs *q, sl_ctx *ctx)
{
    const char *argv[] = {q->delayed, q->stream, "100"};
    size_t lens[] = {strlen(q->delayed), strlen(q->stream), 3};
    long long n = 0;
    int rc = script(q, ctx, S_PROMOTE, 3, argv, lens, &n);
    if (rc == 0) q->st.promoted += (uint64_t)n;
    return rc;
}

static int reclaim(sl_redis_jobs *q, sl_ctx *ctx, sl_redis_job **out)
{
    char idle[24];
    snprintf(idle, sizeof idle, "%lld", (long long)(q->visibility / SL_MS(1)));
    const char *av[8] = {"XAUTOCLAIM", q->stream, q->group, q->consumer,
                         idle,         q->cursor, "COUNT",  "1"};
    size_t lens[8];
    for (int i = 0; i < 8; i++)
        lens[i] = strlen(av[i]);
    redisReply *r = NULL;
    int rc = cmd(q, ctx, 0, 8, av, lens, &r);
    if (rc < 0) return rc;
    if (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOGROUP", 7) == 0) {
        rc = create_group(q, ctx);
    } else if (r->type == REDIS_REPLY_ERROR) {
        sl_log_error(q->logger, "redis jobs: XAUTOCLAIM", SL_A_STR("reply", r->str));
        rc = SL_EREDIS;
    } else if (r->type == REDIS_REPLY_ARRAY && r->elements >= 2) {
        if (r->element[0]->type == REDIS_REPLY_STRING)
            snprintf(q->cursor, sizeof q->cursor, "%s", r->element[0]->str);
        const redisReply *list = r->element[1];
        for (size_t i = 0; list->type == REDIS_REPLY_ARRAY && i < list->elements && !*out; i++)
            if ((rc = take_entry(q, list->element[i], true, ctx, out)) < 0) break;
        if (rc > 0) rc = 0;
    }
    freeReplyObject(r);
    return rc;
}

static int read_new(sl_redis_jobs *q, sl_ctx *ctx, sl_redis_job **out)
{
    int64_t block = q->max_block;
    int64_t dl = sl_ctx_deadline(ctx);
    if (dl != SL_FOREVER && dl - sl_now_ns() < block) block = dl - sl_now_ns();
    if (block < SL_MS(1)) block = SL_MS(1); /* BLOCK 0 would mean forever */
    char ms[24];
    snprintf(ms, sizeof ms, "%lld", (long long)(block / SL_MS(1)));
    const char *argv[] = {"XREADGROUP", "GROUP", q->group,  q->consumer, "COUNT", "1",
                          "BLOCK",      ms,      "STREAMS", q->stream,   ">"};
    size_t lens[11];
    for (int i = 0; i < 11; i++)
        lens[i] = strlen(argv[i]);
    redisReply *r = NULL;
    int rc = cmd(q, ctx, block, 11, argv, lens, &r);
    if (rc < 0) return rc;
    if (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOGROUP", 7) == 0) {
        rc = create_group(q, ctx);
    } else if (r->type == REDIS_REPLY_ERROR) {
        sl_log_error(q->logger, "redis jobs: XREADGROUP", SL_A_STR("reply", r->str));
        rc = SL_EREDIS;
    } else if (r->type == REDIS_REPLY_ARRAY && r->elements == 1 &&
               r->element[0]->type == REDIS_REPLY_ARRAY && r->element[0]->elements == 2) {
        const redisReply *list = r->element[0]->element[1];
        for (size_t i = 0; list->type == REDIS_REPLY_ARRAY && i < list->elements && !*out; i++)
            if ((rc = take_entry(q, list->element[i], false, ctx, out)) < 0) break;
        if (rc > 0) rc = 0;
    }
    freeReplyObject(r);
    return rc;
}

int sl_redis_jobs_fetch(sl_redis_jobs *q, sl_ctx *ctx, sl_redis_job **out)
{
    if (!q || !out) return SL_EINVAL;
    sl_redis_job *job = NULL;
    for (;;) {
        int rc = sl_ctx_err(ctx);
        if (rc) return rc;
        if ((rc = promote(q, ctx)) < 0) return rc;
        if ((rc = reclaim(q, ctx, &job)) < 0) return rc;
        if (!job && (rc = read_new(q, ctx, &job)) < 0) return rc;
        if (job) {
            *out = job;
            return 0;
        }
    }
}

/* ---- ack / fail / work ------------------------------------------------------------------- */

int sl_redis_jobs_ack(sl_redis_jobs *q, const sl_redis_job *job, sl_ctx *ctx)
{
    if (!q || !job) return SL_EINVAL;
    const char *xack[] = {"XACK", q->stream, q->group, job->entry};
    const char *xdel[] = {"XDEL", q->stream, job->entry};
    size_t l1[4], l2[3];
    for (int i = 0; i < 4; i++)
        l1[i] = strlen(xack[i]);
    for (int i = 0; i < 3; i++)
        l2[i] = strlen(xdel[i]);
    int rc = cmd_simple(q, ctx, 4, xack, l1, NULL);
    /* XDEL only trims memory: an acked entry is never delivered again anyway. */
    if (rc == 0) rc = cmd_simple(q, ctx, 3, xdel, l2, NULL);
    if (rc == 0) q->st.acked++;
    return rc;
}

int sl_redis_jobs_fail(sl_redis_jobs *q, const sl_redis_job *job, int err, sl_ctx *ctx)
{
    if (!q || !job) return SL_EINVAL;
    int attempts = job->attempts + 1;
    if (err == SL_EPERMANENT || attempts >= q->max_attempts)
        return move_dead(q, job, err, attempts, ctx);
    int64_t d = q->base_delay;
    for (int i = 1; i < attempts && d < q->max_delay; i++)
        d *= 2;
    if (d > q->max_delay) d = q->max_delay;
    size_t idlen = strlen(job->id);
    char head[128], ms[24];
    int hl = snprintf(head, sizeof head, "%s|%d|%zu|", job->entry, attempts, idlen);
    size_t mlen = (size_t)hl + idlen + job->payload_len;
    char *member = malloc(mlen ? mlen : 1);
    if (!member) return SL_ENOMEM;
    memcpy(member, head, (size_t)hl);
    memcpy(member + hl, job->id, idlen);
    if (job->payload_len) memcpy(member + hl + idlen, job->payload, job->payload_len);
    snprintf(ms, sizeof ms, "%lld", (long long)(d / SL_MS(1)));
    const char *argv[] = {q->stream, q->delayed, q->group, job->entry, member, ms};
    size_t lens[6];
    for (int i = 0; i < 6; i++)
        lens[i] = i == 4 ? mlen : strlen(argv[i]);
    long long moved = 0;
    int rc = script(q, ctx, S_RETRY, 6, argv, lens, &moved);
    free(member);
    if (rc == 0 && moved) q->st.retried++;
    return rc;
}

int sl_redis_jobs_work(sl_redis_jobs *q, sl_redis_job_fn fn, void *arg, sl_ctx *ctx)
{
    if (!q || !fn) return SL_EINVAL;
    int64_t backoff = SL_MS(10);
    for (;;) {
        sl_redis_job *job = NULL;
        int rc = sl_redis_jobs_fetch(q, ctx, &job);
        if (rc < 0) {
            int cerr = sl_ctx_err(ctx);
            if (cerr) return cerr;
            if (rc != SL_EUNAVAIL) return rc;
            /* Redis is down: wait on the ctx (not a sleep: cancellation ends it at once). */
            rc = sl_ctx_wait_for(ctx, backoff);
            if (rc != SL_EAGAIN) return rc;
            backoff = backoff * 2 > SL_SEC(1) ? SL_SEC(1) : backoff * 2;
            continue;
        }
        backoff = SL_MS(10);
        rc = fn(ctx, job, arg);
        /* The outcome is recorded even when ctx just fired (shutdown): a finished job must
         * not run again. io_timeout_ns bounds these two calls instead. */
        if (rc >= 0)
            sl_redis_jobs_ack(q, job, NULL);
        else
            sl_redis_jobs_fail(q, job, rc, NULL);
        /* An ack/fail that did not reach Redis leaves the job pending: it is reclaimed. */
        sl_redis_job_free(q, job);
    }
}

void sl_redis_jobs_stats_get(const sl_redis_jobs *q, sl_redis_jobs_stats *st)
{
    *st = q->st;
}

#else
typedef int sl__redis_jobs_unbuilt; /* ISO C: no empty translation unit */
#endif /* SLUICE_HAVE_HIREDIS */
