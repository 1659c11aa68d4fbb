/* The Redis limiter: GCRA in one Lua script, over hiredis's async API on sluice reactors.
 *
 * Structure. A limiter has up to MAX_REACTORS connections, one per attached reactor, each
 * touched only on its reactor's loop thread (slots are published with atomics so any loop can
 * find its own). A check is a heap `call`, sent in a `batch` handed to hiredis as privdata:
 * hiredis calls its reply callback exactly once (with the reply, or with NULL when the context
 * is freed), and that callback (or the timeout of a call still pending, never sent) is the
 * only place a call is freed. Independently, the call's timer (one
 * fixed-duration queue per connection: every call has the same timeout, so start/stop are
 * O(1)) may fire first: the call is then marked `answered`, the user hears SL_ETIMEDOUT with
 * the policy's decision, and the late reply only frees the call. So each user callback runs
 * exactly once, whichever comes first.
 *
 * Batches. A check made while the connection is UP is not sent at once: it joins the
 * connection's pending list, and the connection asks its loop to run flush_idle once the round
 * is over (sl__reactor_at_idle: the loop's run queue drained, or the end of its iteration).
 * Then the pending checks go out in one write, each run of consecutive checks of one bucket as
 * one EVALSHA of up to MAX_BATCH checks (one key per script call: single-slot, as before). A
 * `batch` is hiredis's privdata. The script applies the checks in order, reads and writes the
 * bucket once, and returns only what it read; the reply callback replays its arithmetic to
 * answer each check. So a hot key (the global rule's, one client's flood) costs Redis one
 * short script call per loop round and sluice one hiredis command and one small reply, not
 * one per request. While a batch is out, new checks wait for its reply (then go at the end of
 * that round): one batch in flight per connection, like Nagle's algorithm, so the batches grow
 * with the load and an idle connection sends at once. A check that times out while pending
 * leaves the list then; a connection that goes down answers its pending checks like its
 * in-flight ones.
 *
 * Script. Its SHA-1 is computed here, so a new connection pipelines SCRIPT LOAD and the first
 * EVALSHAs back to back (Redis runs them in order): the checks made while connecting wait in
 * the pending list and go right after the load. A NOSCRIPT reply (SCRIPT FLUSH, a failover
 * to a replica that never saw the load) re-sends SCRIPT LOAD + the same batch once, within
 * the calls' original deadlines.
 *
 * Connection life. DOWN -> (connect) -> CONNECTING -> UP; any failure -> DOWN with a reconnect
 * timer whose delay doubles from backoff_min to backoff_max (reset on success). While DOWN,
 * checks are answered at once by the policy (no queueing: a dead Redis costs nothing). While
 * CONNECTING they wait in the pending list under their timeout. A connection that is UP but
 * silent (no reply for max(4 x timeout, 1 s) while calls wait: a paused or wedged server) is
 * dropped and re-established, so timed-out calls do not pile up in hiredis forever. hiredis
 * writes with write(2): its writes run with SIGPIPE held back (sigpipe.c), so a server that
 * reset the connection is a disconnect, not the end of the application.
 *
 * For sl_ratelimit's Redis rules (redis_int.h): a "raw" check applies no failure policy (the
 * rule applies its own); a refund is a call with no callback and no timer (its reply only
 * frees it); a check from a task goes out on the task's loop, attached on first use and
 * marked lazy so that free detaches it on that loop, and the task parks on an sl__parker that
 * the reply callback (or the ctx's on-done hook) completes: the waiter is on the heap with
 * two references, so a ctx that wins lets the task return while the call is in flight.
 *
 * Teardown ordering: redisAsyncFree runs the pending reply callbacks (NULL replies), then
 * our cleanup hook (unregisters the fd), then onDisconnect; `closing` tells the callbacks
 * that this is a detach (SL_ECANCELED, no reconnect). */
#ifdef SLUICE_HAVE_HIREDIS

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

#include <hiredis/hiredis.h>
#include <hiredis/async.h>

#include "sluice/clock.h"
#include "sluice/error.h"
#include "sluice/redis_limiter.h"
#include "base/hash_int.h"
#include "base/list_int.h"
#include "redis/redis_int.h"
#include "sync/ctx_int.h"
#include "sync/park_int.h"
#include "task/task_int.h"

#define MAX_REACTORS 64

/* A batch of checks of one bucket, KEYS[1]: ARGV = T (emission interval, us, double), burst,
 * then one group per run of equal checks: n, now (us; <= 0: TIME, read once per batch), count.
 * The checks are applied one after the other, as GCRA would take them one at a time (a refused
 * check leaves the bucket as it was, so the rest of its group is refused too); the bucket is
 * read once and written once, with the last allowed check's expiry. The TAT is stored with 17
 * significant digits so that a fractional T accumulates no rounding in Redis.
 *
 * Returns only {the TAT read (nil if none), the TIME used (0 if none)}: from those the client
 * replays the same arithmetic (replay() below; both sides IEEE doubles, the same operations
 * in the same order) to get each check's decision. So a batch costs Redis a few arguments and
 * a two-element reply however many checks it carries, and sluice no reply object per check. */
static const char SCRIPT[] =
    "if redis.replicate_commands then pcall(redis.replicate_commands) end\n"
    "local k = KEYS[1]\n"
    "local T = tonumber(ARGV[1])\n"
    "local tau = tonumber(ARGV[2]) * T\n"
    "local v = redis.call('GET', k)\n"
    "local tat = v and tonumber(v) or nil\n"
    "local clock, px = nil, nil\n"
    "for g = 3, #ARGV, 3 do\n"
    "  local n = tonumber(ARGV[g])\n"
    "  local now = tonumber(ARGV[g + 1])\n"
    "  if now <= 0 then\n"
    "    if not clock then\n"
    "      local t = redis.call('TIME')\n"
    "      clock = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
    "    end\n"
    "    now = clock\n"
    "  end\n"
    "  for j = 1, tonumber(ARGV[g + 2]) do\n"
    "    local t = tat or now\n"
    "    if t < now then t = now end\n"
    "    local new_tat = t + n * T\n"
    "    if now < new_tat - tau then break end\n"
    "    if n > 0 then\n"
    "      tat = new_tat\n"
    "      px = math.max(1, math.ceil((new_tat - now) / 1000))\n"
    "    end\n"
    "  end\n"
    "end\n"
    "if px then redis.call('SET', k, string.format('%.17g', tat), 'PX', px) end\n"
    "return {v, clock or 0}\n";

/* The refund of sl_ratelimit's rollback: gives n tokens back to a bucket that granted them,
 * capped at the burst (the TAT goes back n*T, never before now). KEYS, ARGV as above. A refund
 * is exact while nothing else refilled the bucket to full in between: it then holds what it
 * would hold had the n tokens never been taken. Sent with EVAL (refunds are rare: only a
 * request a later rule refused pays one). */
static const char REFUND[] = /* PX at least 1: a huge limit rounds tat - now to 0 */
    "local T = tonumber(ARGV[1])\n"
    "local n = tonumber(ARGV[3])\n"
    "local now = tonumber(ARGV[4])\n"
    "if now <= 0 then\n"
    "  local t = redis.call('TIME')\n"
    "  now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
    "end\n"
    "local v = redis.call('GET', KEYS[1])\n"
    "if not v then return 0 end\n"
    "local tat = tonumber(v) - n * T\n"
    "if tat <= now then\n"
    "  redis.call('DEL', KEYS[1])\n"
    "else\n"
    "  redis.call('SET', KEYS[1], string.format('%.17g', tat), 'PX', "
    "math.max(1, math.ceil((tat - now) / 1000)))\n"
    "end\n"
    "return 1\n";

enum { DOWN, CONNECTING, UP };
enum { NORMAL, RAW, REFUNDING }; /* check modes */

typedef struct conn conn;

struct sl_redis_limiter {
    char *host;
    int port;
    char *prefix;
    size_t prefix_len;
    sl_keyed_tier *tiers;
    int ntiers, default_tier;
    sl_keyed_tier_fn tier_fn;
    void *tier_arg;
    int64_t timeout, connect_timeout, backoff_min, backoff_max; /* ns */
    sl_redis_fail_policy policy;
    sl_keyed *fallback;
    sl_redis_clock clock;
    sl_logger *logger;
    char sha[41];

    pthread_mutex_t mu; /* attach/detach */
    struct {
        _Atomic(sl__reactor *) r;
        _Atomic(conn *) c;
        bool lazy; /* attached by a waiting check on a task's loop: detached by free */
    } slots[MAX_REACTORS];

    _Atomic int64_t last_fail_log; /* ns, sl_mono_ns(): fail-open/closed logs once a second */
    struct {
        _Atomic uint64_t checks, allowed, redis_replies, timeouts, unavailable, redis_errors,
            fail_open, fail_closed, fallback, late_replies, script_loads, noscript, connects,
            disconnects, refunds, parked;
    } st;

    /* The private reactor of the blocking checks, started once under start_mu. */
    pthread_mutex_t start_mu;
    _Atomic bool priv_started;
    pthread_t priv_thr;
    sl__reactor priv;
};

struct conn {
    sl_redis_limiter *rl;
    sl__reactor *r;
    redisAsyncContext *ac; /* NULL while DOWN */
    sl__io io;
    uint32_t want; /* epoll interest hiredis asked for */
    int state;
    bool closing;   /* detaching: answer SL_ECANCELED, do not reconnect */
    sl__tq call_q;  /* per-call timeouts, dur = rl->timeout */
    sl__tq retry_q; /* one timer: reconnect backoff, or the connect timeout */
    sl__timer retry_t;
    int64_t backoff;       /* ns: the next reconnect delay */
    int64_t inflight;      /* calls hiredis holds (answered or not) */
    int batches;           /* batch commands hiredis holds: the flush waits for 0 */
    int64_t last_progress; /* ns, loop time: last reply, or when inflight went 0 -> 1 */
    sl__dlist pend;        /* calls made, not yet sent: sent as one batch at idle */
    size_t npend;          /* calls on pend */
    sl__task flush_t;      /* queued with sl__reactor_at_idle while pend is not empty */
    bool flush_queued;
    bool hold_want; /* flushing: epoll learns hiredis's interest at the end */
    char *fmt;      /* the batch command's buffer (reused) */
    /* flush's scratch (reused): the pending checks grouped by bucket */
    struct group *grp;
    size_t grp_cap;
    int32_t *gtab; /* open addressing: index into grp, or -1 */
    size_t gtab_cap;
    sl__hseed gseed; /* gtab's hash seed */
    size_t fmt_cap;
    double t_limit; /* the last tier limit formatted: its T as text, and as the script reads it */
    char t_str[32];
    size_t t_len;
    double t_val;
};

typedef struct call {
    sl__timer t;
    sl__dnode node;     /* on the conn's pending list, while `pending` */
    struct call *gnext; /* flush: the next check of its group */
    conn *c;
    sl_redis_check_fn cb;
    void *arg;
    bool answered; /* the user has heard (timeout, disconnect): the reply only frees it */
    bool pending;  /* on the conn's pending list (not yet handed to hiredis) */
    bool raw;      /* no failure policy: Redis's answer, or d->err (sl_ratelimit applies it) */
    bool refund;   /* a refund: no callback, no timer; the reply only frees it */
    sl_keyed_tier tier;
    int64_t n, now_us;
    size_t name_len;
    char name[]; /* prefix "{" key "}" */
} call;

/* Checks sent as one EVALSHA (hiredis's privdata): the reply answers each in order. */
typedef struct batch {
    conn *c;
    bool reloaded; /* NOSCRIPT handled once */
    int n;
    double T; /* the emission interval as the script parses it (from the text sent) */
    call *calls[];
} batch;

#define MAX_BATCH 128

#define INC(f) atomic_fetch_add_explicit(&rl->st.f, 1, memory_order_relaxed)

/* ---- decisions --------------------------------------------------------------------------- */

static void answer(sl_redis_limiter *rl, const sl_rate_decision *d, sl_redis_check_fn cb, void *arg)
{
    INC(checks);
    if (d->allowed) INC(allowed);
    if (cb) cb(arg, d);
}

static void log_failure(sl_redis_limiter *rl, int err, const char *what)
{
    int64_t now = sl_mono_ns();
    int64_t last = atomic_load_explicit(&rl->last_fail_log, memory_order_relaxed);
    if (now - last < SL_SEC(1)) return;
    if (!atomic_compare_exchange_strong(&rl->last_fail_log, &last, now)) return;
    sl_log_warn(rl->logger, "redis limiter unavailable", SL_A_STR("policy", what),
                SL_A_ERR("err", err), SL_A_STR("host", rl->host), SL_A_INT("port", rl->port));
}

/* The failure policy's decision for a check that Redis could not answer (err says why). */
static void policy_decide(sl_redis_limiter *rl, const void *key, size_t len, int64_t n,
                          const sl_keyed_tier *tier, int err, sl_rate_decision *d)
{
    *d = (sl_rate_decision){.err = err, .limit = tier->burst};
    switch (rl->policy) {
    case SL_REDIS_FAIL_OPEN:
        INC(fail_open);
        log_failure(rl, err, "fail-open");
        d->allowed = true;
        d->source = SL_RATE_FAIL_OPEN;
        d->remaining = tier->burst > n ? tier->burst - n : 0;
        break;
    case SL_REDIS_FAIL_CLOSED:
        INC(fail_closed);
        log_failure(rl, err, "fail-closed");
        d->source = SL_RATE_FAIL_CLOSED;
        d->retry_after_ns = SL_FOREVER;
        break;
    case SL_REDIS_FAIL_LOCAL:
        if (!rl->fallback) { /* only sl_ratelimit rules, which fall back to their own table */
            INC(fail_closed);
            d->source = SL_RATE_FAIL_CLOSED;
            d->retry_after_ns = SL_FOREVER;
            break;
        }
        INC(fallback);
        log_failure(rl, err, "local fallback");
        sl__rate_decide_keyed_at(rl->fallback, key, len, n, tier, sl_now_ns(), d);
        d->source = SL_RATE_FALLBACK;
        d->err = err;
        break;
    }
}

/* ---- connection: hiredis adapter ---------------------------------------------------------- */

static void set_want(conn *c, uint32_t add, uint32_t del)
{
    c->want = (c->want | add) & ~del;
    if (c->io.fn && !c->hold_want) sl__io_set(c->r, &c->io, c->want);
}
static void ev_add_read(void *p)
{
    set_want(p, EPOLLIN, 0);
}
static void ev_del_read(void *p)
{
    set_want(p, 0, EPOLLIN);
}
static void ev_add_write(void *p)
{
    set_want(p, EPOLLOUT, 0);
}
static void ev_del_write(void *p)
{
    set_want(p, 0, EPOLLOUT);
}
static void ev_cleanup(void *p)
{
    conn *c = p;
    sl__io_stop(c->r, &c->io);
    c->want = 0;
    c->ac = NULL;
}

static void flush(conn *c);
static void fail_pending(conn *c, int err);
static void queue_flush(conn *c);

/* hiredis writes with write(2): a server that reset the connection must cost an EPIPE (then
 * on_disconnect), not a SIGPIPE that ends the application. */
static void handle_write(redisAsyncContext *ac)
{
    sl__sigpipe_guard g;
    sl__sigpipe_hold(&g);
    redisAsyncHandleWrite(ac);
    sl__sigpipe_release(&g);
}

static void io_cb(sl__reactor *r, sl__io *io, uint32_t events)
{
    (void)r;
    conn *c = SL__CONTAINER_OF(io, conn, io);
    redisAsyncContext *ac = c->ac;
    if (!ac) return;
    if (events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
        redisAsyncHandleRead(ac);
        if (c->ac != ac) return; /* freed by a disconnect */
    }
    if (events & (EPOLLOUT | EPOLLERR)) /* the rest of a write the socket took only part of */
        if (c->ac == ac) handle_write(ac);
}

static void schedule_reconnect(conn *c)
{
    c->state = DOWN;
    c->retry_q.dur = c->backoff;
    sl__timer_start(c->r, &c->retry_q, &c->retry_t);
    c->backoff = c->backoff * 2 > c->rl->backoff_max ? c->rl->backoff_max : c->backoff * 2;
}

/* A command handed to hiredis: one more in flight; the silence clock starts with the first. */
static void sent(conn *c)
{
    if (c->inflight++ == 0) c->last_progress = c->r->now;
}

/* A command's reply callback ran (rep NULL: the context was freed, no reply). */
static void replied(conn *c, const redisReply *rep)
{
    c->inflight--;
    if (rep) c->last_progress = c->r->now;
}

static void script_load_cb(redisAsyncContext *ac, void *reply, void *priv)
{
    (void)ac;
    conn *c = priv;
    redisReply *rep = reply;
    c->inflight--;
    if (rep && rep->type == REDIS_REPLY_STRING && strcmp(rep->str, c->rl->sha) != 0)
        sl_log_error(c->rl->logger, "redis limiter: SCRIPT LOAD digest differs",
                     SL_A_STR("got", rep->str), SL_A_STR("want", c->rl->sha));
}

static int send_script_load(conn *c)
{
    sl_redis_limiter *rl = c->rl;
    INC(script_loads);
    const char *argv[] = {"SCRIPT", "LOAD", SCRIPT};
    const size_t lens[] = {6, 4, sizeof SCRIPT - 1};
    if (redisAsyncCommandArgv(c->ac, script_load_cb, c, 3, argv, lens) != REDIS_OK) return -1;
    sent(c);
    return 0;
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    conn *c = ac->data;
    sl__timer_stop(&c->retry_t);
    if (status != REDIS_OK) {
        /* hiredis frees ac after this returns (cleanup hook, pending calls get NULL). */
        schedule_reconnect(c);
        fail_pending(c, SL_EUNAVAIL);
        return;
    }
    sl_redis_limiter *rl = c->rl;
    INC(connects);
    c->state = UP;
    c->backoff = rl->backoff_min;
    c->last_progress = c->r->now;
    send_script_load(c);
    queue_flush(c); /* the checks made while connecting: after the load, so no NOSCRIPT */
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    (void)status;
    conn *c = ac->data;
    sl_redis_limiter *rl = c->rl;
    INC(disconnects);
    c->ac = NULL;
    c->state = DOWN;
    fail_pending(c, c->closing ? SL_ECANCELED : SL_EUNAVAIL);
    if (!c->closing) schedule_reconnect(c);
}

static void conn_connect(conn *c)
{
    sl_redis_limiter *rl = c->rl;
    redisAsyncContext *ac = redisAsyncConnect(rl->host, rl->port);
    if (!ac || ac->err) {
        if (ac) redisAsyncFree(ac);
        schedule_reconnect(c);
        return;
    }
    ac->data = c;
    ac->ev.data = c;
    ac->ev.addRead = ev_add_read;
    ac->ev.delRead = ev_del_read;
    ac->ev.addWrite = ev_add_write;
    ac->ev.delWrite = ev_del_write;
    ac->ev.cleanup = ev_cleanup;
    c->want = 0;
    if (sl__io_start(c->r, &c->io, ac->c.fd, 0, io_cb) < 0) {
        ac->ev.cleanup = NULL;
        redisAsyncFree(ac);
        schedule_reconnect(c);
        return;
    }
    c->ac = ac;
    c->state = CONNECTING;
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    redisAsyncSetConnectCallback(ac, on_connect); /* asks for the first write event */
    c->retry_q.dur = rl->connect_timeout;
    sl__timer_start(c->r, &c->retry_q, &c->retry_t);
}

/* Frees the hiredis context now (not from inside a hiredis callback: hiredis defers that). */
static void conn_drop(conn *c)
{
    if (c->ac) redisAsyncFree(c->ac); /* -> NULL replies, ev_cleanup, on_disconnect */
}

static void retry_fire(sl__reactor *r, sl__timer *t)
{
    (void)r;
    conn *c = SL__CONTAINER_OF(t, conn, retry_t);
    if (c->state == CONNECTING) {
        /* Connect timeout: never CONNECTED, so no on_disconnect will reschedule. */
        conn_drop(c);
        c->ac = NULL;
        schedule_reconnect(c);
        fail_pending(c, SL_EUNAVAIL);
    } else if (c->state == DOWN) {
        conn_connect(c);
    }
}

/* ---- calls ------------------------------------------------------------------------------- */

static const void *call_key(const call *k, size_t *len)
{
    size_t pl = k->c->rl->prefix_len;
    *len = k->name_len - pl - 2;
    return k->name + pl + 1;
}

/* The answer of a raw check Redis could not give: a refusal with err set. */
static void raw_fail(const sl_keyed_tier *tier, int err, sl_rate_decision *d)
{
    *d = (sl_rate_decision){.err = err,
                            .source = SL_RATE_FAIL_CLOSED,
                            .limit = tier->burst,
                            .retry_after_ns = SL_FOREVER};
}

static void call_fail(call *k, int err)
{
    sl_redis_limiter *rl = k->c->rl;
    size_t len;
    const void *key = call_key(k, &len);
    sl_rate_decision d;
    if (k->raw)
        raw_fail(&k->tier, err, &d);
    else
        policy_decide(rl, key, len, k->n, &k->tier, err, &d);
    k->answered = true;
    sl__timer_stop(&k->t);
    answer(rl, &d, k->cb, k->arg);
}

/* A refund's reply: nobody waits for it; an error is logged. */
static void refund_cb(redisAsyncContext *ac, void *reply, void *priv)
{
    (void)ac;
    call *k = priv;
    conn *c = k->c;
    sl_redis_limiter *rl = c->rl;
    redisReply *rep = reply;
    replied(c, rep);
    if (rep && rep->type == REDIS_REPLY_ERROR) {
        INC(redis_errors);
        sl_log_error(rl->logger, "redis limiter: refund error reply", SL_A_STR("reply", rep->str));
    }
    free(k);
}

static int send_refund(call *k)
{
    conn *c = k->c;
    char T[32], burst[24], n[24], now[24];
    snprintf(T, sizeof T, "%.17g", 1e6 / k->tier.limit);
    snprintf(burst, sizeof burst, "%lld", (long long)k->tier.burst);
    snprintf(n, sizeof n, "%lld", (long long)k->n);
    snprintf(now, sizeof now, "%lld", (long long)k->now_us);
    const char *argv[] = {"EVAL", REFUND, "1", k->name, T, burst, n, now};
    size_t lens[8];
    for (int i = 0; i < 8; i++)
        lens[i] = strlen(argv[i]);
    lens[3] = k->name_len;
    if (redisAsyncCommandArgv(c->ac, refund_cb, k, 8, argv, lens) != REDIS_OK) return -1;
    sent(c);
    return 0;
}

/* One check's answer from a batch reply (d; NULL: none, err says why). Frees k. */
static void call_reply(call *k, sl_rate_decision *d, int err)
{
    sl_redis_limiter *rl = k->c->rl;
    if (k->answered) {
        if (d) INC(late_replies);
        free(k);
        return;
    }
    if (!d) {
        if (err == SL_EUNAVAIL) INC(unavailable);
        if (err == SL_EREDIS) INC(redis_errors);
        call_fail(k, err);
        free(k);
        return;
    }
    INC(redis_replies);
    sl__timer_stop(&k->t);
    k->answered = true;
    answer(rl, d, k->cb, k->arg);
    free(k);
}

/* The script's arithmetic for one check, from the bucket as the checks before it left it
 * (*has_tat, *tat: at first what the script read) and the TIME it used (clock): the check's
 * decision exactly as the script reached it (the same IEEE double operations in the same
 * order; T is parsed from the same 17-digit text the script parsed). */
static void replay(const call *k, double T, double clock, bool *has_tat, double *tat,
                   sl_rate_decision *d)
{
    double n = (double)k->n, now = k->now_us > 0 ? (double)k->now_us : clock;
    double tau = (double)k->tier.burst * T;
    double t = *has_tat ? *tat : now;
    if (t < now) t = now;
    double new_tat = t + n * T;
    double allow_at = new_tat - tau;
    *d = (sl_rate_decision){.source = SL_RATE_FROM_REDIS, .limit = k->tier.burst};
    if (now < allow_at) {
        double rem = floor((now - (t - tau)) / T);
        d->remaining = rem < 0 ? 0 : (int64_t)rem;
        d->retry_after_ns = (int64_t)ceil(allow_at - now) * 1000;
        d->reset_ns = (int64_t)ceil(t - now) * 1000;
        return;
    }
    if (k->n > 0) {
        *tat = new_tat;
        *has_tat = true;
    }
    d->allowed = true;
    d->remaining = (int64_t)floor((now - allow_at) / T);
    d->reset_ns = (int64_t)ceil(new_tat - now) * 1000;
}

static int send_batch(batch *b);

static void batch_cb(redisAsyncContext *ac, void *reply, void *priv)
{
    (void)ac;
    batch *b = priv;
    conn *c = b->c;
    sl_redis_limiter *rl = c->rl;
    redisReply *rep = reply;
    replied(c, rep);
    if (rep && rep->type == REDIS_REPLY_ERROR && !b->reloaded &&
        strncmp(rep->str, "NOSCRIPT", 8) == 0) {
        INC(noscript);
        b->reloaded = true;
        if (c->ac && send_script_load(c) == 0 && send_batch(b) == 0) return;
    }
    /* {the TAT the script read, or nil; the TIME it used, or 0} */
    bool ok =
        rep && rep->type == REDIS_REPLY_ARRAY && rep->elements == 2 &&
        (rep->element[0]->type == REDIS_REPLY_STRING || rep->element[0]->type == REDIS_REPLY_NIL) &&
        rep->element[1]->type == REDIS_REPLY_INTEGER;
    bool has_tat = false;
    double tat = 0;
    if (ok && rep->element[0]->type == REDIS_REPLY_STRING) {
        char *end;
        tat = strtod(rep->element[0]->str, &end);
        while (*end == ' ' || (*end >= '\t' && *end <= '\r'))
            end++;
        has_tat = end != rep->element[0]->str && *end == '\0'; /* Lua's tonumber: else nil */
    }
    if (rep && !ok && rep->type == REDIS_REPLY_ERROR)
        sl_log_error(rl->logger, "redis limiter: error reply", SL_A_STR("reply", rep->str));
    int err = !rep ? (c->closing ? SL_ECANCELED : SL_EUNAVAIL) : SL_EREDIS;
    double clock = ok ? (double)rep->element[1]->integer : 0;
    for (int i = 0; i < b->n; i++) {
        sl_rate_decision d;
        if (ok) replay(b->calls[i], b->T, clock, &has_tat, &tat, &d);
        call_reply(b->calls[i], ok ? &d : NULL, err);
    }
    free(b);
    /* The checks made while this batch was out go at the end of this round (with those the
     * tasks it answered make now). */
    if (--c->batches == 0 && rep) queue_flush(c);
}

/* Writes v in decimal at p; returns the length. */
static size_t put_int(char *p, long long v)
{
    char tmp[24];
    size_t n = 0, len = 0;
    unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
    do
        tmp[n++] = (char)('0' + u % 10);
    while ((u /= 10) != 0);
    if (v < 0) p[len++] = '-';
    while (n)
        p[len++] = tmp[--n];
    return len;
}

/* Appends one RESP bulk string. */
static char *put_bulk(char *p, const char *s, size_t n)
{
    *p++ = '$';
    p += put_int(p, (long long)n);
    *p++ = '\r';
    *p++ = '\n';
    memcpy(p, s, n);
    p += n;
    *p++ = '\r';
    *p++ = '\n';
    return p;
}

static char *put_bulk_int(char *p, long long v)
{
    char num[24];
    return put_bulk(p, num, put_int(num, v));
}

/* The end of the run of checks with the same n and now that starts at i: one script group. */
static int run_end(const batch *b, int i)
{
    int j = i + 1;
    while (j < b->n && b->calls[j]->n == b->calls[i]->n &&
           b->calls[j]->now_us == b->calls[i]->now_us)
        j++;
    return j;
}

/* EVALSHA sha 1 key T burst (n now count)..., formatted here (one buffer, reused) and handed
 * to hiredis as is: each run of checks with the same n and now is one group. T's text is
 * cached per connection (the checks of a rule share its tier). */
static int send_batch(batch *b)
{
    conn *c = b->c;
    const call *k0 = b->calls[0];
    size_t need = 256 + k0->name_len + (size_t)b->n * 96;
    if (need > c->fmt_cap) {
        char *f = realloc(c->fmt, need);
        if (!f) return -1;
        c->fmt = f;
        c->fmt_cap = need;
    }
    if (k0->tier.limit != c->t_limit || !c->t_len) {
        c->t_limit = k0->tier.limit;
        c->t_len = (size_t)snprintf(c->t_str, sizeof c->t_str, "%.17g", 1e6 / k0->tier.limit);
        c->t_val = strtod(c->t_str, NULL);
    }
    b->T = c->t_val;
    int groups = 0;
    for (int i = 0; i < b->n; i = run_end(b, i))
        groups++;
    char *p = c->fmt;
    *p++ = '*';
    p += put_int(p, 6 + 3 * (long long)groups);
    *p++ = '\r';
    *p++ = '\n';
    p = put_bulk(p, "EVALSHA", 7);
    p = put_bulk(p, c->rl->sha, 40);
    p = put_bulk(p, "1", 1);
    p = put_bulk(p, k0->name, k0->name_len);
    p = put_bulk(p, c->t_str, c->t_len);
    p = put_bulk_int(p, (long long)k0->tier.burst);
    for (int i = 0, j; i < b->n; i = j) {
        const call *k = b->calls[i];
        j = run_end(b, i);
        p = put_bulk_int(p, (long long)k->n);
        p = put_bulk_int(p, (long long)k->now_us);
        p = put_bulk_int(p, j - i);
    }
    *p = '\0'; /* hiredis 0.14 scans the command with strchr (within need's slack) */
    if (redisAsyncFormattedCommand(c->ac, batch_cb, b, c->fmt, (size_t)(p - c->fmt)) != REDIS_OK)
        return -1;
    sent(c);
    if (!b->reloaded) c->batches++; /* a NOSCRIPT resend is still the same batch */
    return 0;
}

static void pend_push(conn *c, call *k)
{
    k->pending = true;
    sl__dlist_push_back(&c->pend, &k->node);
    c->npend++;
}

static void pend_remove(conn *c, call *k)
{
    sl__dlist_remove(&c->pend, &k->node);
    k->pending = false;
    c->npend--;
}

static call *pend_head(const conn *c)
{
    return c->pend.head ? SL__CONTAINER_OF(c->pend.head, call, node) : NULL;
}

/* One bucket's checks in a flush, in the order they were made (chained by gnext). */
typedef struct group {
    call *head, *tail;
    uint64_t hash;
    int n;
} group;

static bool same_bucket(const call *a, const call *b)
{
    return a->name_len == b->name_len && memcmp(a->name, b->name, a->name_len) == 0 &&
           a->tier.limit == b->tier.limit && a->tier.burst == b->tier.burst;
}

/* Seeded (the key is the client's address or API key): no one can aim checks at one chain of
 * the flush's table. */
static uint64_t bucket_hash(const conn *c, const call *k)
{
    return sl__hash_bytes(&c->gseed, k->name, k->name_len);
}

/* Groups the pending checks by bucket, in one pass: c->grp[0..*ng) in the order each group's
 * first check was made; a group holds at most MAX_BATCH (the next check of its bucket opens a
 * new group, which goes after it). Returns false when out of memory. */
static bool group_pending(conn *c, size_t *ng)
{
    size_t n = c->npend, cap = 16;
    while (cap < 2 * n)
        cap *= 2;
    if (n > c->grp_cap) {
        group *g = realloc(c->grp, n * sizeof *g);
        if (!g) return false;
        c->grp = g;
        c->grp_cap = n;
    }
    if (cap > c->gtab_cap) {
        int32_t *t = realloc(c->gtab, cap * sizeof *t);
        if (!t) return false;
        c->gtab = t;
        c->gtab_cap = cap;
    }
    memset(c->gtab, 0xff, cap * sizeof *c->gtab); /* -1: free */
    size_t mask = cap - 1, count = 0;
    for (sl__dnode *d = c->pend.head; d; d = d->next) {
        call *k = SL__CONTAINER_OF(d, call, node);
        k->gnext = NULL;
        uint64_t h = bucket_hash(c, k);
        size_t i = (size_t)h & mask;
        while (c->gtab[i] >= 0) {
            group *g = &c->grp[c->gtab[i]];
            if (g->hash == h && same_bucket(g->head, k)) break;
            i = (i + 1) & mask;
        }
        group *g = c->gtab[i] >= 0 ? &c->grp[c->gtab[i]] : NULL;
        if (g && g->n < MAX_BATCH) {
            g->tail->gnext = k;
            g->tail = k;
            g->n++;
            continue;
        }
        c->gtab[i] = (int32_t)count; /* a full group's bucket continues in a new one */
        c->grp[count++] = (group){.head = k, .tail = k, .hash = h, .n = 1};
    }
    *ng = count;
    return true;
}

/* Sends the pending checks: each bucket's checks as one EVALSHA (at most MAX_BATCH), so a
 * script touches one key, in the order made; buckets interleaved in the list (two Redis rules,
 * many clients) still go one call per bucket. Every check of the loop's round goes out in one
 * write. (A check that timed out left the list then: the list holds live checks only.) */
static void flush(conn *c)
{
    size_t ng;
    if (sl__dlist_empty(&c->pend)) return;
    if (!group_pending(c, &ng)) {
        fail_pending(c, SL_EUNAVAIL);
        return;
    }
    for (size_t gi = 0; gi < ng; gi++) {
        group g = c->grp[gi];
        batch *b = c->ac ? malloc(sizeof *b + (size_t)g.n * sizeof(call *)) : NULL;
        if (!b) {
            fail_pending(c, SL_EUNAVAIL); /* the groups not sent: still on the list */
            return;
        }
        *b = (batch){.c = c};
        for (call *k = g.head; k; k = k->gnext) {
            pend_remove(c, k);
            b->calls[b->n++] = k;
        }
        if (send_batch(b) < 0) {
            /* Answered before the rest is failed: their callbacks may make checks (or
             * detach), so the groups' chains are not walked again. */
            for (int i = 0; i < b->n; i++)
                call_reply(b->calls[i], NULL, SL_EUNAVAIL);
            free(b);
            fail_pending(c, SL_EUNAVAIL);
            return;
        }
    }
}

/* The loop's round is over (sl__reactor_at_idle): its checks go out now, written at once.
 * hiredis asks for the write event when it queues the command and drops it when the write
 * completes; epoll hears only the net change (none, when the write completes), so a batch
 * costs one write and no epoll_ctl. */
static void flush_idle(sl__reactor *r, sl__task *t)
{
    (void)r;
    conn *c = SL__CONTAINER_OF(t, conn, flush_t);
    c->flush_queued = false;
    /* A batch out: its reply queues us again. Connecting: on_connect does. */
    if (sl__dlist_empty(&c->pend) || c->batches > 0 || c->state != UP) return;
    c->hold_want = true;
    flush(c);
    redisAsyncContext *ac = c->ac;
    if (ac) handle_write(ac); /* may drop the connection: on_disconnect */
    c->hold_want = false;
    if (c->io.fn) sl__io_set(c->r, &c->io, c->want);
}

/* Asks for flush_idle at the end of this round, if there is something it would send. */
static void queue_flush(conn *c)
{
    if (c->flush_queued || sl__dlist_empty(&c->pend) || c->batches > 0 || c->state != UP) return;
    c->flush_queued = true;
    sl__reactor_at_idle(c->r, &c->flush_t);
}

/* The pending checks, unsent: answered with err (the connection went down). */
static void fail_pending(conn *c, int err)
{
    call *k;
    while ((k = pend_head(c))) {
        pend_remove(c, k);
        call_reply(k, NULL, err);
    }
}

static void call_timeout(sl__reactor *r, sl__timer *t)
{
    call *k = (call *)t;
    conn *c = k->c;
    sl_redis_limiter *rl = c->rl;
    INC(timeouts);
    call_fail(k, SL_ETIMEDOUT);
    if (k->pending) { /* never sent: nothing else will free it */
        pend_remove(c, k);
        free(k);
    }
    int64_t stall = 4 * rl->timeout > SL_SEC(1) ? 4 * rl->timeout : SL_SEC(1);
    if (c->state == UP && r->now - c->last_progress >= stall) {
        sl_log_warn(rl->logger, "redis limiter: connection stalled, reconnecting",
                    SL_A_DUR("silent", r->now - c->last_progress));
        conn_drop(c); /* the call stays owned by hiredis until its NULL reply: freed there */
    }
}

static conn *find_conn(sl_redis_limiter *rl, sl__reactor *r)
{
    for (int i = 0; i < MAX_REACTORS; i++)
        if (atomic_load_explicit(&rl->slots[i].r, memory_order_acquire) == r)
            return atomic_load_explicit(&rl->slots[i].c, memory_order_acquire);
    return NULL;
}

static const sl_keyed_tier *tier_of(sl_redis_limiter *rl, const void *key, size_t len)
{
    int t = rl->tier_fn ? rl->tier_fn(rl->tier_arg, key, len) : rl->default_tier;
    if (t < 0 || t >= rl->ntiers) t = rl->default_tier;
    return &rl->tiers[t];
}

/* The one check behind every form: tier NULL = the limiter's own (tier_of); raw = no failure
 * policy (sl_ratelimit applies its own); refund = give n tokens back (no answer, no timer). */
static int check(sl_redis_limiter *rl, sl__reactor *r, const void *key, size_t len, int64_t n,
                 int64_t now_ns, const sl_keyed_tier *tier, int mode, sl_redis_check_fn cb,
                 void *arg, sl_rate_decision *now)
{
    if (!rl || (mode != REFUNDING && (!cb || !now)) || !key || len == 0 || len > SL_KEYED_MAX_KEY ||
        n < 0)
        return SL_EINVAL;
    conn *c = find_conn(rl, r);
    if (!c) return SL_EINVAL;
    if (!tier) tier = tier_of(rl, key, len);
    if (mode == REFUNDING) {
        if (tier->limit == SL_RATE_INF || !(tier->limit > 0) || n == 0) return 1;
        if (c->state == DOWN || !c->ac) return SL_EUNAVAIL;
    } else if (tier->limit == SL_RATE_INF || n > tier->burst) {
        bool inf = tier->limit == SL_RATE_INF;
        *now = (sl_rate_decision){.allowed = inf,
                                  .source = SL_RATE_FROM_LOCAL,
                                  .limit = tier->burst,
                                  .remaining = inf ? tier->burst : 0,
                                  .retry_after_ns = inf ? 0 : SL_FOREVER};
        answer(rl, now, NULL, NULL);
        return 1;
    } else if (c->state == DOWN || !c->ac) {
        INC(unavailable);
        if (mode == RAW)
            raw_fail(tier, SL_EUNAVAIL, now);
        else
            policy_decide(rl, key, len, n, tier, SL_EUNAVAIL, now);
        answer(rl, now, NULL, NULL);
        return 1;
    }
    size_t name_len = rl->prefix_len + len + 2;
    call *k = malloc(sizeof *k + name_len + 1);
    if (!k) return SL_ENOMEM;
    *k = (call){.c = c,
                .cb = cb,
                .arg = arg,
                .tier = *tier,
                .n = n,
                .name_len = name_len,
                .raw = mode == RAW,
                .refund = mode == REFUNDING};
    if (now_ns == 0 && rl->clock == SL_REDIS_CLOCK_CLIENT) now_ns = sl_wall_ns();
    k->now_us = now_ns / 1000;
    memcpy(k->name, rl->prefix, rl->prefix_len);
    k->name[rl->prefix_len] = '{';
    memcpy(k->name + rl->prefix_len + 1, key, len);
    k->name[name_len - 1] = '}';
    k->name[name_len] = '\0';
    if (mode != REFUNDING) {
        /* Pending until the round ends (and no batch is out; while connecting, until the
         * script is loaded): the round's other checks join it. */
        pend_push(c, k);
        queue_flush(c);
        sl__timer_start(r, &c->call_q, &k->t);
        return 0;
    }
    if (send_refund(k) < 0) {
        free(k);
        return SL_EUNAVAIL;
    }
    INC(refunds);
    return 0;
}

int sl_redis_limiter_check_at(sl_redis_limiter *rl, sl__reactor *r, const void *key, size_t len,
                              int64_t n, int64_t now_ns, sl_redis_check_fn cb, void *arg,
                              sl_rate_decision *now)
{
    return check(rl, r, key, len, n, now_ns, NULL, NORMAL, cb, arg, now);
}

int sl_redis_limiter_check(sl_redis_limiter *rl, sl__reactor *r, const void *key, size_t len,
                           int64_t n, sl_redis_check_fn cb, void *arg, sl_rate_decision *now)
{
    return sl_redis_limiter_check_at(rl, r, key, len, n, 0, cb, arg, now);
}

bool sl_redis_limiter_connected(sl_redis_limiter *rl, sl__reactor *r)
{
    conn *c = find_conn(rl, r);
    return c && c->state == UP;
}

/* ---- attach / detach --------------------------------------------------------------------- */

int sl_redis_limiter_attach(sl_redis_limiter *rl, sl__reactor *r)
{
    if (!rl || !r) return SL_EINVAL;
    pthread_mutex_lock(&rl->mu);
    int free_slot = -1, rc = 0;
    for (int i = 0; i < MAX_REACTORS; i++) {
        sl__reactor *s = atomic_load_explicit(&rl->slots[i].r, memory_order_relaxed);
        if (s == r) rc = SL_EEXIST;
        if (!s && free_slot < 0) free_slot = i;
    }
    if (rc == 0 && free_slot < 0) rc = SL_EFULL;
    conn *c = NULL;
    if (rc == 0 && !(c = calloc(1, sizeof *c))) rc = SL_ENOMEM;
    if (rc < 0) {
        pthread_mutex_unlock(&rl->mu);
        return rc;
    }
    c->rl = rl;
    c->r = r;
    c->io.fd = -1;
    c->flush_t.fn = flush_idle;
    sl__hseed_init(&c->gseed, c);
    c->backoff = rl->backoff_min;
    sl__tq_init(r, &c->call_q, rl->timeout, call_timeout);
    sl__tq_init(r, &c->retry_q, rl->backoff_min, retry_fire);
    atomic_store_explicit(&rl->slots[free_slot].c, c, memory_order_release);
    atomic_store_explicit(&rl->slots[free_slot].r, r, memory_order_release);
    pthread_mutex_unlock(&rl->mu);
    conn_connect(c);
    return 0;
}

int sl_redis_limiter_detach(sl_redis_limiter *rl, sl__reactor *r)
{
    if (!rl || !r) return SL_EINVAL;
    pthread_mutex_lock(&rl->mu);
    conn *c = NULL;
    for (int i = 0; i < MAX_REACTORS && !c; i++) {
        if (atomic_load_explicit(&rl->slots[i].r, memory_order_relaxed) == r) {
            c = atomic_load_explicit(&rl->slots[i].c, memory_order_relaxed);
            atomic_store_explicit(&rl->slots[i].r, NULL, memory_order_release);
            atomic_store_explicit(&rl->slots[i].c, NULL, memory_order_release);
        }
    }
    pthread_mutex_unlock(&rl->mu);
    if (!c) return SL_ENOENT;
    c->closing = true;
    if (c->flush_queued) sl__reactor_idle_cancel(r, &c->flush_t);
    sl__timer_stop(&c->retry_t);
    conn_drop(c);
    fail_pending(c, SL_ECANCELED); /* none left if on_disconnect ran: then a no-op */
    /* Calls that timed out were freed by their NULL replies above; none is left queued. */
    sl__redis_tq_remove(r, &c->call_q);
    sl__redis_tq_remove(r, &c->retry_q);
    free(c->fmt);
    free(c->grp);
    free(c->gtab);
    free(c);
    return 0;
}

/* ---- blocking checks on the private reactor ---------------------------------------------- */

typedef struct waitcall {
    sl__task task;
    sl_redis_limiter *rl;
    _Atomic int refs;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done, canceled; /* guarded by mu */
    sl_rate_decision d;  /* guarded by mu */
    int mode;            /* NORMAL, RAW or REFUNDING (then nobody waits: refs 1) */
    bool has_tier;
    sl_keyed_tier tier;
    int64_t n, now_ns;
    size_t len;
    char key[];
} waitcall;

static void wc_unref(waitcall *w)
{
    if (atomic_fetch_sub(&w->refs, 1) != 1) return;
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    free(w);
}

static void wc_complete(void *arg, const sl_rate_decision *d)
{
    waitcall *w = arg;
    pthread_mutex_lock(&w->mu);
    w->d = *d;
    w->done = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    wc_unref(w);
}

static void wc_run(sl__reactor *r, sl__task *t)
{
    waitcall *w = (waitcall *)t;
    sl_rate_decision d;
    int rc = check(w->rl, r, w->key, w->len, w->n, w->now_ns, w->has_tier ? &w->tier : NULL,
                   w->mode, wc_complete, w, &d);
    if (w->mode == REFUNDING) {
        wc_unref(w);
        return;
    }
    if (rc == 0) return;
    if (rc < 0) d = (sl_rate_decision){.err = rc, .retry_after_ns = SL_FOREVER};
    wc_complete(w, &d);
}

static void wc_cancel(void *arg, int err)
{
    (void)err;
    waitcall *w = arg;
    pthread_mutex_lock(&w->mu);
    w->canceled = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

static void *priv_main(void *arg)
{
    sl_redis_limiter *rl = arg;
    sl__reactor_run(&rl->priv);
    return NULL;
}

/* Starts the private reactor thread once. start_mu serialises starters (attach takes mu,
 * so mu cannot be held here); priv_started is atomic because free reads it without a lock. */
static int priv_start(sl_redis_limiter *rl)
{
    if (atomic_load_explicit(&rl->priv_started, memory_order_acquire)) return 0;
    int rc = 0;
    pthread_mutex_lock(&rl->start_mu);
    if (!atomic_load_explicit(&rl->priv_started, memory_order_relaxed)) {
        rc = sl__reactor_init(&rl->priv);
        if (rc == 0 && (rc = sl_redis_limiter_attach(rl, &rl->priv)) < 0)
            sl__reactor_destroy(&rl->priv);
        if (rc == 0) {
            int e = pthread_create(&rl->priv_thr, NULL, priv_main, rl);
            if (e) {
                sl_redis_limiter_detach(rl, &rl->priv);
                sl__reactor_destroy(&rl->priv);
                rc = -e;
            }
        }
        if (rc == 0) atomic_store_explicit(&rl->priv_started, true, memory_order_release);
    }
    pthread_mutex_unlock(&rl->start_mu);
    return rc;
}

static waitcall *wc_new(sl_redis_limiter *rl, const void *key, size_t len, int64_t n,
                        int64_t now_ns, const sl_keyed_tier *tier, int mode)
{
    waitcall *w = calloc(1, sizeof *w + len);
    if (!w) return NULL;
    w->task.fn = wc_run;
    w->rl = rl;
    atomic_init(&w->refs, mode == REFUNDING ? 1 : 2);
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    w->mode = mode;
    if (tier) {
        w->has_tier = true;
        w->tier = *tier;
    }
    w->n = n;
    w->now_ns = now_ns;
    w->len = len;
    memcpy(w->key, key, len);
    return w;
}

/* A check on the private reactor thread, this thread blocked until it is answered or ctx
 * fires. */
static int wait_thread(sl_redis_limiter *rl, const void *key, size_t len, int64_t n, int64_t now_ns,
                       const sl_keyed_tier *tier, int mode, sl_ctx *ctx, sl_rate_decision *out)
{
    int rc = priv_start(rl);
    if (rc < 0) return rc;
    waitcall *w = wc_new(rl, key, len, n, now_ns, tier, mode);
    if (!w) return SL_ENOMEM;
    sl_ctx_hook *hook = NULL;
    rc = sl_ctx_on_done(ctx, wc_cancel, w, &hook);
    if (rc < 0) {
        pthread_mutex_destroy(&w->mu);
        pthread_cond_destroy(&w->cv);
        free(w);
        return rc;
    }
    sl__reactor_post(&rl->priv, &w->task);
    pthread_mutex_lock(&w->mu);
    while (!w->done && !w->canceled)
        pthread_cond_wait(&w->cv, &w->mu);
    rc = w->done ? 0 : sl_ctx_err(ctx);
    if (w->done) *out = w->d;
    pthread_mutex_unlock(&w->mu);
    sl_ctx_hook_stop(hook);
    wc_unref(w);
    return rc;
}

int sl_redis_limiter_check_wait(sl_redis_limiter *rl, const void *key, size_t len, int64_t n,
                                int64_t now_ns, sl_ctx *ctx, sl_rate_decision *out)
{
    if (!rl || !out || !key || len == 0 || len > SL_KEYED_MAX_KEY || n < 0) return SL_EINVAL;
    int rc = sl_ctx_err(ctx);
    if (rc) return rc;
    return wait_thread(rl, key, len, n, now_ns, NULL, NORMAL, ctx, out);
}

/* ---- checks that park a task (sl_ratelimit's Redis rules) --------------------------------- */

/* The calling thread's task loop with this limiter attached (on first use, on that loop's
 * thread, as attach requires). NULL on a plain thread or when attaching fails. */
static sl__reactor *task_loop(sl_redis_limiter *rl)
{
    sl__sched *s = sl__sched_self();
    if (!s) return NULL;
    sl__reactor *r = &s->r;
    if (find_conn(rl, r)) return r;
    if (sl_redis_limiter_attach(rl, r) < 0) return NULL;
    /* The loop's memory must outlive this attachment: sl_redis_limiter_free detaches it, maybe
     * after the runtime was freed (a server's private runtime goes with the server). */
    sl__runtime_ref(s->rt);
    pthread_mutex_lock(&rl->mu);
    for (int i = 0; i < MAX_REACTORS; i++)
        if (atomic_load_explicit(&rl->slots[i].r, memory_order_relaxed) == r)
            rl->slots[i].lazy = true;
    pthread_mutex_unlock(&rl->mu);
    return r;
}

/* One parked task's check: on the heap, because a ctx that fires first lets the task return
 * while the check is still in flight (its callback then only drops its reference). */
typedef struct taskwait {
    sl__parker p;
    _Atomic int refs;
    sl_rate_decision d; /* written by the completer before it publishes SL__DONE */
} taskwait;

static void tw_unref(taskwait *w)
{
    if (atomic_fetch_sub_explicit(&w->refs, 1, memory_order_acq_rel) == 1) free(w);
}

static void tw_done(void *arg, const sl_rate_decision *d)
{
    taskwait *w = arg;
    if (sl__park_claim(&w->p, SL__CLAIMED)) {
        w->d = *d;
        sl__park_finish(&w->p, SL__DONE);
    }
    tw_unref(w);
}

static void tw_cancel(void *arg, int err)
{
    (void)err;
    taskwait *w = arg;
    if (sl__park_claim(&w->p, SL__CANCELED)) sl__park_finish(&w->p, SL__CANCELED);
}

static int wait_task(sl_redis_limiter *rl, sl__reactor *r, const void *key, size_t len, int64_t n,
                     const sl_keyed_tier *tier, sl_ctx *ctx, sl_rate_decision *out)
{
    taskwait *w = malloc(sizeof *w);
    if (!w) return SL_ENOMEM;
    sl__parker_init(&w->p);
    atomic_init(&w->refs, 2);
    int rc = check(rl, r, key, len, n, 0, tier, RAW, tw_done, w, out);
    if (rc != 0) { /* answered at once, or an error: no callback will come */
        free(w);
        return rc < 0 ? rc : 0;
    }
    INC(parked);
    /* A hook on this task's stack (no allocation per check); del waits for a running one. */
    struct sl_ctx_hook hook;
    if (sl__ctx_hook_add(ctx, &hook, tw_cancel, w) != 0) tw_cancel(w, 0);
    uint32_t st = sl__park_wait(&w->p);
    sl__ctx_hook_del(&hook);
    if (st == SL__DONE) {
        *out = w->d;
        rc = 0;
    } else {
        rc = sl_ctx_err(ctx);
        if (!rc) rc = SL_ECANCELED;
    }
    tw_unref(w);
    return rc;
}

int sl__redis_take(sl_redis_limiter *rl, const void *key, size_t len, int64_t n,
                   const sl_keyed_tier *tier, sl_ctx *ctx, sl_rate_decision *out)
{
    if (!rl || !out || !key || len == 0 || len > SL_KEYED_MAX_KEY || n < 0) return SL_EINVAL;
    int rc = sl_ctx_err(ctx);
    if (rc) return rc;
    if (sl__task_self()) {
        sl__reactor *r = task_loop(rl);
        if (!r) return SL_EUNAVAIL;
        return wait_task(rl, r, key, len, n, tier, ctx, out);
    }
    if (sl__sched_self()) return SL_EAGAIN; /* a loop callback: never block a loop */
    return wait_thread(rl, key, len, n, 0, tier, RAW, ctx, out);
}

int sl__redis_refund(sl_redis_limiter *rl, const void *key, size_t len, int64_t n,
                     const sl_keyed_tier *tier)
{
    if (sl__sched_self()) { /* a task, or a loop callback: this loop's connection */
        sl__reactor *r = task_loop(rl);
        if (!r) return SL_EUNAVAIL;
        int rc = check(rl, r, key, len, n, 0, tier, REFUNDING, NULL, NULL, NULL);
        return rc < 0 ? rc : 0;
    }
    int rc = priv_start(rl);
    if (rc < 0) return rc;
    waitcall *w = wc_new(rl, key, len, n, 0, tier, REFUNDING);
    if (!w) return SL_ENOMEM;
    sl__reactor_post(&rl->priv, &w->task);
    return 0;
}

sl_redis_fail_policy sl__redis_policy(const sl_redis_limiter *rl)
{
    return rl->policy;
}

/* ---- new / free / stats ------------------------------------------------------------------ */

static void priv_stop(sl__reactor *r, sl__task *t)
{
    sl_redis_limiter *rl = r->data;
    (void)t;
    sl_redis_limiter_detach(rl, r);
    sl__reactor_stop(r);
}

/* Detaching a task loop's connection: posted to that loop, the freeing thread waits. */
typedef struct detach_job {
    sl__task task;
    sl_redis_limiter *rl;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
} detach_job;

static void detach_run(sl__reactor *r, sl__task *t)
{
    detach_job *j = (detach_job *)t;
    sl_redis_limiter_detach(j->rl, r);
    pthread_mutex_lock(&j->mu);
    j->done = true;
    pthread_cond_signal(&j->cv);
    pthread_mutex_unlock(&j->mu);
}

/* The loops a waiting check attached lazily: each detached on its own thread while its runtime
 * runs, or here once the runtime has stopped (its threads are joined). */
static void detach_lazy(sl_redis_limiter *rl)
{
    for (int i = 0; i < MAX_REACTORS; i++) {
        sl__reactor *r = atomic_load_explicit(&rl->slots[i].r, memory_order_acquire);
        if (!r || !rl->slots[i].lazy) continue;
        sl__sched *s = r->data;
        sl_runtime *rt = s->rt;
        if (atomic_load_explicit(&rt->stop, memory_order_acquire)) {
            sl_redis_limiter_detach(rl, r);
            sl__runtime_unref(rt); /* may free the runtime: r is gone after this */
            continue;
        }
        detach_job j = {.task.fn = detach_run, .rl = rl};
        pthread_mutex_init(&j.mu, NULL);
        pthread_cond_init(&j.cv, NULL);
        sl__reactor_post(r, &j.task);
        pthread_mutex_lock(&j.mu);
        while (!j.done)
            pthread_cond_wait(&j.cv, &j.mu);
        pthread_mutex_unlock(&j.mu);
        pthread_mutex_destroy(&j.mu);
        pthread_cond_destroy(&j.cv);
        sl__runtime_unref(rt);
    }
}

void sl_redis_limiter_free(sl_redis_limiter *rl)
{
    if (!rl) return;
    detach_lazy(rl);
    if (atomic_load_explicit(&rl->priv_started, memory_order_acquire)) {
        sl__task stop = {.fn = priv_stop};
        rl->priv.data = rl;
        sl__reactor_post(&rl->priv, &stop);
        pthread_join(rl->priv_thr, NULL);
        sl__reactor_destroy(&rl->priv);
    }
    pthread_mutex_destroy(&rl->mu);
    pthread_mutex_destroy(&rl->start_mu);
    free(rl->host);
    free(rl->prefix);
    free(rl->tiers);
    free(rl);
}

int sl_redis_limiter_new(const sl_redis_limiter_config *cfg, sl_redis_limiter **out)
{
    if (!cfg || !out || !cfg->tiers || cfg->ntiers < 1 || cfg->ntiers > SL_KEYED_MAX_TIERS ||
        cfg->default_tier < 0 || cfg->default_tier >= cfg->ntiers)
        return SL_EINVAL;
    for (int i = 0; i < cfg->ntiers; i++)
        if (!(cfg->tiers[i].limit > 0) || cfg->tiers[i].burst < 1) return SL_EINVAL;
    if (cfg->policy > SL_REDIS_FAIL_LOCAL || cfg->timeout_ns < 0) return SL_EINVAL;
    sl_redis_limiter *rl = calloc(1, sizeof *rl);
    if (!rl) return SL_ENOMEM;
    rl->host = strdup(cfg->host ? cfg->host : "127.0.0.1");
    rl->prefix = strdup(cfg->prefix ? cfg->prefix : "sl:rl:");
    rl->tiers = malloc(sizeof *rl->tiers * (size_t)cfg->ntiers);
    if (!rl->host || !rl->prefix || !rl->tiers) {
        free(rl->host);
        free(rl->prefix);
        free(rl->tiers);
        free(rl);
        return SL_ENOMEM;
    }
    memcpy(rl->tiers, cfg->tiers, sizeof *rl->tiers * (size_t)cfg->ntiers);
    rl->prefix_len = strlen(rl->prefix);
    rl->port = cfg->port ? cfg->port : 6379;
    rl->ntiers = cfg->ntiers;
    rl->default_tier = cfg->default_tier;
    rl->tier_fn = cfg->tier_fn;
    rl->tier_arg = cfg->tier_arg;
    rl->timeout = cfg->timeout_ns ? cfg->timeout_ns : SL_MS(50);
    rl->connect_timeout = cfg->connect_timeout_ns ? cfg->connect_timeout_ns : SL_SEC(1);
    rl->backoff_min = cfg->backoff_min_ns ? cfg->backoff_min_ns : SL_MS(10);
    rl->backoff_max = cfg->backoff_max_ns ? cfg->backoff_max_ns : SL_SEC(1);
    if (rl->backoff_max < rl->backoff_min) rl->backoff_max = rl->backoff_min;
    rl->policy = cfg->policy;
    rl->fallback = cfg->fallback;
    rl->clock = cfg->clock;
    rl->logger = cfg->logger;
    pthread_mutex_init(&rl->mu, NULL);
    pthread_mutex_init(&rl->start_mu, NULL);
    sl__redis_sha1_hex(SCRIPT, sizeof SCRIPT - 1, rl->sha);
    *out = rl;
    return 0;
}

void sl_redis_limiter_stats_get(sl_redis_limiter *rl, sl_redis_limiter_stats *st)
{
#define LD(f) st->f = atomic_load_explicit(&rl->st.f, memory_order_relaxed)
    LD(checks);
    LD(allowed);
    LD(redis_replies);
    LD(timeouts);
    LD(unavailable);
    LD(redis_errors);
    LD(fail_open);
    LD(fail_closed);
    LD(fallback);
    LD(late_replies);
    LD(script_loads);
    LD(noscript);
    LD(connects);
    LD(disconnects);
    LD(refunds);
    LD(parked);
#undef LD
}

#else
typedef int sl__redis_limiter_unbuilt; /* ISO C: no empty translation unit */
#endif /* SLUICE_HAVE_HIREDIS */
