/* The rate-limit policy: several limiters composed with reservations, and the HTTP answer.
 *
 * The problem with stacking one middleware per limiter (the Go seed's way) is that an earlier
 * limiter has already spent its token when a later one rejects: a client hammering a tight
 * per-key limit drains the global budget for everyone. Here a decision takes the request's
 * tokens from each rule in order, remembering each reservation; when a rule rejects, the
 * reservations already made are cancelled at the same instant, in reverse order, which gives
 * back exactly what they took (x/time/rate's CancelAt restores everything when no later
 * reservation has pushed the bucket's last event past this one's time to act).
 *
 * That exactness needs every reservation we keep to act now, never in the future: a
 * reservation that borrows from the future moves the bucket's last event, and a second one
 * cancelled out of order then restores less. So a rule never goes into debt, even briefly:
 *   - GLOBAL uses sl_limiter_reserve_n_max_at with a zero wait, which refuses instead;
 *   - keyed rules use sl_keyed_reserve_n_max_at with a zero wait: one lookup under the key's
 *     shard lock, which also reports the tokens left, the key's tier and the wait when it
 *     refuses (nothing can slip between the look and the reservation: they are one critical
 *     section).
 * With every kept reservation acting now, a rollback is exact whatever other threads do at
 * the same instant. (Time read on different threads may go backwards by a few ns between
 * decisions on one key; a rollback then restores a few ns' worth of tokens less, as Go does.)
 *
 * What the reservations report (tokens left, limit, burst, wait) is what the headers and
 * Retry-After show: a decision costs one lookup per rule it reached, allowed or rejected.
 *
 * Redis-backed rules (rule.redis) break the "same instant" premise: their round trip lets
 * other requests reserve meanwhile, and a cancel at the decision's instant would then give
 * back less. So a step taken before a wait (step.epoch < ctx.waits) is undone by a refund
 * instead (sl__tb_refund: the tokens added back, capped at the burst, at the bucket's latest
 * instant), and a Redis step by the refund script (sent, not awaited). The in-memory steps
 * keep the decision's instant in->now_ns throughout. A Redis rule Redis did not answer for is
 * decided by the limiter's fail policy: allowed undescribed, 503, or the rule's own in-memory
 * table (built for every rule, so the local fallback has the rule's tiers and rollback).
 *
 * Counters are relaxed atomics, each rule's on its own cache line. */
#include <math.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "rate/rate_int.h"
#include "redis/redis_int.h"
#include "task/task_int.h"
#include "sluice/clock.h"
#include "sluice/error.h"
#include "sluice/limiter.h"
#include "sluice/ratelimit.h"

#define MAX_RETRY_S 86400
#define HEADER_MAX  64
#define REALM_MAX   64
#define PROBLEM_MAX 256
#define CACHELINE   64

typedef struct tier_ent {
    const char *key; /* inside rule.table_strings */
    size_t len;
    int tier;
} tier_ent;

typedef struct rule {
    sl_ratelimit_kind kind;
    char name[SL_RATELIMIT_MAX_NAME + 1];
    bool dry_run;
    sl_ipgroup group;
    char header[HEADER_MAX + 1];
    bool key_optional;
    char realm[REALM_MAX + 1];
    sl_ratelimit_key_fn key_fn;
    void *key_arg;

    sl_keyed_tier *tiers; /* ntiers entries; one {limit, burst} when the config gave none */
    int ntiers;
    int default_tier;
    sl_keyed_tier_fn tier_fn; /* the user's, or table_tier, or NULL */
    void *tier_arg;
    tier_ent *table; /* sorted by key */
    size_t ntable;
    char *table_strings;

    sl_limiter *lim;         /* GLOBAL */
    sl_keyed *keyed;         /* the others */
    sl_redis_limiter *redis; /* counted in Redis; lim/keyed are then the fail-local buckets */
    sl_keyed_tier gtier;     /* GLOBAL: {limit, burst} */

    _Alignas(CACHELINE) _Atomic uint64_t allowed, rejected, dry, missing, skipped, errors, fopen,
        fclosed, fback, nowait;
} rule;

struct sl_ratelimit {
    rule *rules;
    size_t nrules;
    bool need_ip; /* some rule keys by the client address */
    bool waits;   /* some rule is Redis-backed */
    sl_clientip_config cip;
    sl_cidr *trusted;
    unsigned headers;
    sl_ratelimit_body body;
    char problem_type[PROBLEM_MAX + 1];
    uint32_t jitter_max_s;
    _Atomic uint64_t prng; /* splitmix64 counter */
    sl_logger *log;
};

/* ---- configuration ------------------------------------------------------------------------- */

static bool name_ok(const char *s)
{
    size_t n = strlen(s);
    if (!n || n > SL_RATELIMIT_MAX_NAME) return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-'))
            return false;
    }
    return true;
}

static bool token_ok(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (!n || n > max) return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              strchr("!#$%&'*+-.^_`|~", c)))
            return false;
    }
    return true;
}

/* Printable ASCII without quote or backslash: safe inside a JSON or quoted string as is. */
static bool plain_ok(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n > max) return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] < 0x20 || s[i] > 0x7e || s[i] == '"' || s[i] == '\\') return false;
    return true;
}

static int cmp_ent(const void *a, const void *b)
{
    const tier_ent *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->key, y->key, n);
    if (c) return c;
    return x->len < y->len ? -1 : x->len > y->len;
}

static int table_tier(void *arg, const void *key, size_t len)
{
    const rule *ru = arg;
    tier_ent probe = {.key = key, .len = len};
    const tier_ent *e = bsearch(&probe, ru->table, ru->ntable, sizeof *e, cmp_ent);
    return e ? e->tier : -1;
}

static const char *default_name(sl_ratelimit_kind k)
{
    switch (k) {
    case SL_RATELIMIT_GLOBAL: return "global";
    case SL_RATELIMIT_IP: return "ip";
    case SL_RATELIMIT_APIKEY: return "apikey";
    default: return "custom";
    }
}

static int copy_table(rule *ru, const sl_ratelimit_rule *c)
{
    if (!c->ntier_table) return 0;
    if (!c->tier_table) return SL_EINVAL;
    size_t bytes = 0;
    for (size_t i = 0; i < c->ntier_table; i++) {
        if (!c->tier_table[i].key) return SL_EINVAL;
        bytes += strlen(c->tier_table[i].key);
    }
    ru->table = calloc(c->ntier_table, sizeof *ru->table);
    ru->table_strings = malloc(bytes ? bytes : 1);
    if (!ru->table || !ru->table_strings) return SL_ENOMEM;
    char *p = ru->table_strings;
    for (size_t i = 0; i < c->ntier_table; i++) {
        size_t n = strlen(c->tier_table[i].key);
        memcpy(p, c->tier_table[i].key, n);
        ru->table[i] = (tier_ent){.key = p, .len = n, .tier = c->tier_table[i].tier};
        p += n;
    }
    ru->ntable = c->ntier_table;
    qsort(ru->table, ru->ntable, sizeof *ru->table, cmp_ent);
    return 0;
}

static int setup_tiers(rule *ru, const sl_ratelimit_rule *c)
{
    bool tiered = (c->kind == SL_RATELIMIT_APIKEY || c->kind == SL_RATELIMIT_CUSTOM) && c->tiers;
    int n = tiered ? c->ntiers : 1;
    if (n < 1 || n > SL_KEYED_MAX_TIERS) return SL_EINVAL;
    ru->tiers = calloc((size_t)n, sizeof *ru->tiers);
    if (!ru->tiers) return SL_ENOMEM;
    ru->ntiers = n;
    if (!tiered) {
        ru->tiers[0] = (sl_keyed_tier){c->limit, c->burst};
        return 0;
    }
    memcpy(ru->tiers, c->tiers, (size_t)n * sizeof *ru->tiers);
    if (c->default_tier < 0 || c->default_tier >= n) return SL_EINVAL;
    ru->default_tier = c->default_tier;
    for (int i = 0; i < n; i++)
        if (isnan(ru->tiers[i].limit) || ru->tiers[i].burst < 0) return SL_EINVAL;
    int rc = copy_table(ru, c);
    if (rc) return rc;
    if (c->tier_fn) {
        ru->tier_fn = c->tier_fn;
        ru->tier_arg = c->tier_arg;
    } else if (ru->ntable) {
        ru->tier_fn = table_tier;
        ru->tier_arg = ru;
    }
    return 0;
}

static int setup_rule(rule *ru, const sl_ratelimit_rule *c)
{
    ru->kind = c->kind;
    if ((unsigned)c->kind > SL_RATELIMIT_CUSTOM) return SL_EINVAL;
    const char *name = c->name ? c->name : default_name(c->kind);
    if (!name_ok(name) || isnan(c->limit) || c->burst < 0) return SL_EINVAL;
    memcpy(ru->name, name, strlen(name) + 1);
    ru->dry_run = c->dry_run;
    ru->redis = c->redis;
    ru->gtier = (sl_keyed_tier){c->limit, c->burst};

    if (c->kind == SL_RATELIMIT_GLOBAL) return sl_limiter_new(c->limit, c->burst, &ru->lim);

    if (c->kind == SL_RATELIMIT_IP) {
        ru->group = c->group.v4_bits || c->group.v6_bits ? c->group : SL_IPGROUP_DEFAULT;
        if (ru->group.v4_bits > 32 || ru->group.v6_bits > 128) return SL_EINVAL;
    } else if (c->kind == SL_RATELIMIT_APIKEY) {
        const char *h = c->header ? c->header : "X-API-Key";
        const char *realm = c->realm ? c->realm : "api";
        if (!token_ok(h, HEADER_MAX) || !plain_ok(realm, REALM_MAX)) return SL_EINVAL;
        memcpy(ru->header, h, strlen(h) + 1);
        memcpy(ru->realm, realm, strlen(realm) + 1);
        ru->key_optional = c->key_optional;
    } else {
        if (!c->key_fn) return SL_EINVAL;
        ru->key_fn = c->key_fn;
        ru->key_arg = c->key_arg;
    }
    int rc = setup_tiers(ru, c);
    if (rc) return rc;
    for (int i = 0; ru->redis && i < ru->ntiers; i++) /* the GCRA script needs limit > 0 */
        if (!(ru->tiers[i].limit > 0)) return SL_EINVAL;
    sl_keyed_config kc = {
        .tiers = ru->tiers,
        .ntiers = ru->ntiers,
        .default_tier = ru->default_tier,
        .tier_fn = ru->tier_fn,
        .tier_arg = ru->tier_arg,
        .max_keys = c->max_keys,
        .idle_ttl_ns = c->idle_ttl_ns,
        .on_full = c->on_full,
        .overflow = c->overflow,
    };
    return sl_keyed_new(&kc, &ru->keyed);
}

static void destroy_rule(rule *ru)
{
    sl_limiter_free(ru->lim);
    sl_keyed_free(ru->keyed);
    free(ru->tiers);
    free(ru->table);
    free(ru->table_strings);
}

int sl_ratelimit_new(const sl_ratelimit_config *cfg, sl_ratelimit **out)
{
    if (!cfg || !out || !cfg->rules || !cfg->nrules || cfg->nrules > SL_RATELIMIT_MAX_RULES)
        return SL_EINVAL;
    if (cfg->clientip.ntrusted && !cfg->clientip.trusted) return SL_EINVAL;
    if (!sl__clientip_sources_ok(cfg->clientip.sources)) return SL_EINVAL;
    const char *ptype = cfg->problem_type ? cfg->problem_type : "about:blank";
    if (!plain_ok(ptype, PROBLEM_MAX) || (unsigned)cfg->body > SL_RATELIMIT_BODY_PROBLEM)
        return SL_EINVAL;

    sl_ratelimit *rl = calloc(1, sizeof *rl);
    if (!rl) return SL_ENOMEM;
    int rc = SL_ENOMEM;
    /* Rules carry aligned counters: aligned_alloc keeps their cache lines apart. */
    size_t bytes = cfg->nrules * sizeof(rule);
    rl->rules = aligned_alloc(CACHELINE, (bytes + CACHELINE - 1) / CACHELINE * CACHELINE);
    if (!rl->rules) goto fail;
    memset(rl->rules, 0, bytes);
    rl->nrules = cfg->nrules;
    if (cfg->clientip.ntrusted) {
        rl->trusted = calloc(cfg->clientip.ntrusted, sizeof *rl->trusted);
        if (!rl->trusted) goto fail;
        memcpy(rl->trusted, cfg->clientip.trusted, cfg->clientip.ntrusted * sizeof *rl->trusted);
    }
    rl->cip = (sl_clientip_config){rl->trusted, cfg->clientip.ntrusted, cfg->clientip.sources};
    for (size_t i = 0; i < cfg->nrules; i++) {
        rc = setup_rule(&rl->rules[i], &cfg->rules[i]);
        if (rc) goto fail;
        if (rl->rules[i].redis) rl->waits = true;
        if (rl->rules[i].redis && cfg->rules[i].kind == SL_RATELIMIT_GLOBAL &&
            !(cfg->rules[i].limit > 0)) {
            rc = SL_EINVAL;
            goto fail;
        }
        if (cfg->rules[i].kind == SL_RATELIMIT_IP || cfg->rules[i].kind == SL_RATELIMIT_CUSTOM)
            rl->need_ip = true;
    }
    rl->headers = cfg->headers_set ? cfg->headers : SL_RATELIMIT_HDR_ALL;
    rl->body = cfg->body;
    memcpy(rl->problem_type, ptype, strlen(ptype) + 1);
    rl->jitter_max_s = cfg->jitter_max_s;
    atomic_init(&rl->prng, cfg->jitter_seed ? cfg->jitter_seed : (uint64_t)sl_mono_ns());
    rl->log = cfg->log;
    *out = rl;
    return 0;
fail:
    sl_ratelimit_free(rl);
    return rc;
}

void sl_ratelimit_free(sl_ratelimit *rl)
{
    if (!rl) return;
    if (rl->rules)
        for (size_t i = 0; i < rl->nrules; i++)
            destroy_rule(&rl->rules[i]);
    free(rl->rules);
    free(rl->trusted);
    free(rl);
}

/* ---- taking tokens ------------------------------------------------------------------------- */

/* What one rule took for this request, to describe it or give it back. */
typedef struct step {
    int rule;
    const void *key; /* keyed rules: the key, valid for the decision (Redis: the Redis key) */
    size_t len;
    bool global;
    sl_reservation r; /* GLOBAL */
    sl_keyed_reservation kr;
    double limit; /* the key's (or limiter's) limit and burst, for the headers */
    int64_t burst;
    double after; /* tokens left after this request (or held, when rejected) */
    bool undo;    /* something to cancel */
    bool hidden;  /* a dry-run rule: never described to the client */
    bool redis;   /* the tokens were taken in Redis: undo is a refund there */
    int epoch;    /* Redis waits before this step was taken (undo after one: a refund) */
} step;

typedef struct ctx {
    sl_ratelimit *rl;
    const sl_ratelimit_input *in;
    sl_ratelimit_decision *d;
    sl_ctx *wctx;  /* bounds the Redis waits */
    bool can_wait; /* false: Redis rules answer by their fail policy at once */
    int waits;     /* Redis round trips so far */
    int64_t n;
    bool ip_done;
    char rkeys[SL_RATELIMIT_MAX_RULES][SL_RATELIMIT_MAX_NAME + 2 + SL_RATELIMIT_MAX_KEY];
} ctx;

/* The wait before n tokens are there when tok are: Go's reserveN, without reserving. */
static int64_t deficit_wait(double limit, int64_t burst, double tok, int64_t n)
{
    if (n > burst || limit <= 0) return SL_FOREVER;
    return sl__dur_from_tokens(limit, -(tok - (double)n));
}

/* Returns 1 granted, 0 refused (*wait set), or a table error. One lookup: the zero-wait
 * reservation decides, and reports the tokens and the tier for the headers. */
static int take_keyed(rule *ru, step *st, int64_t n, int64_t now, int64_t *wait)
{
    sl_keyed_reservation *kr = &st->kr;
    int rc = sl_keyed_reserve_n_max_at(ru->keyed, st->key, st->len, n, now, 0, kr);
    st->limit = kr->limit;
    st->burst = kr->burst;
    st->after = kr->tokens;
    if (rc == 1) {
        st->undo = true;
    } else if (rc == 0) {
        /* 0 only when the table is full of fresh keys and answers "limited". */
        *wait = kr->wait > 0 ? kr->wait : SL_SEC(1);
    }
    return rc;
}

static int take_global(rule *ru, step *st, int64_t n, int64_t now, int64_t *wait)
{
    st->global = true;
    sl__tb_view v;
    bool ok = sl__limiter_reserve_report(ru->lim, n, now, 0, &st->r, &v);
    st->limit = v.limit;
    st->burst = v.burst;
    st->after = v.tokens;
    if (!ok) {
        *wait = deficit_wait(v.limit, v.burst, v.tokens, n);
        if (*wait <= 0) *wait = 1;
        return 0;
    }
    st->undo = true;
    return 1;
}

/* The tier of a keyed rule's key (what sl_keyed would pick for a new entry). */
static sl_keyed_tier rule_tier(const rule *ru, const void *key, size_t len)
{
    if (ru->kind == SL_RATELIMIT_GLOBAL) return ru->gtier;
    int t = ru->tier_fn ? ru->tier_fn(ru->tier_arg, key, len) : ru->default_tier;
    if (t < 0 || t >= ru->ntiers) t = ru->default_tier;
    return ru->tiers[t];
}

/* The Redis key of a rule's key: "<rule>:<key>" (IP: the group as text with its prefix
 * length), or "<rule>" for GLOBAL. Returns its length. */
static size_t redis_key(const rule *ru, const step *st, const sl_ipkey *group, char *buf)
{
    size_t nl = strlen(ru->name);
    memcpy(buf, ru->name, nl);
    if (ru->kind == SL_RATELIMIT_GLOBAL) return nl;
    buf[nl++] = ':';
    if (ru->kind == SL_RATELIMIT_IP) { /* the group as "<address>/<bits>" */
        bool v4 = sl_ipkey_is_v4(group);
        sl_cidr net = {*group, (uint8_t)(v4 ? 96u + ru->group.v4_bits : ru->group.v6_bits)};
        return nl + (size_t)sl_cidr_format(&net, buf + nl, SL_CIDR_STRLEN);
    }
    memcpy(buf + nl, st->key, st->len);
    return nl + st->len;
}

/* A Redis rule's step: one round trip (or the fail policy). Returns as take_keyed, or
 * SL_EUNAVAIL when the fail-closed policy refuses. */
static int take_redis(ctx *c, rule *ru, step *st, const sl_ipkey *group, int64_t now, int64_t *wait)
{
    sl_keyed_tier tier = rule_tier(ru, st->key, st->len);
    if (tier.limit == SL_RATE_INF) { /* nothing to count: not described, nothing to give */
        st->burst = tier.burst;
        st->after = (double)tier.burst;
        return 1;
    }
    char *kb = c->rkeys[st->rule];
    size_t kl = redis_key(ru, st, group, kb);
    sl_rate_decision rd;
    int rc = SL_EAGAIN;
    if (c->can_wait && !c->in->no_wait) {
        rc = sl__redis_take(ru->redis, kb, kl, c->n, &tier, c->wctx, &rd);
        c->waits++;
    }
    if (rc == 0 && rd.err == 0) {
        st->limit = tier.limit;
        st->burst = tier.burst;
        st->after = (double)rd.remaining;
        if (rd.allowed) {
            st->redis = st->undo = true;
            st->key = kb;
            st->len = kl;
            return 1;
        }
        *wait = rd.retry_after_ns > 0 ? rd.retry_after_ns : 1;
        return 0;
    }
    /* Redis did not answer (down, timeout, the ctx, or we may not wait): the fail policy. */
    if (rc == SL_EAGAIN) atomic_fetch_add_explicit(&ru->nowait, 1, memory_order_relaxed);
    switch (sl__redis_policy(ru->redis)) {
    case SL_REDIS_FAIL_OPEN:
        atomic_fetch_add_explicit(&ru->fopen, 1, memory_order_relaxed);
        return 1; /* limit stays Inf: not described */
    case SL_REDIS_FAIL_LOCAL:
        atomic_fetch_add_explicit(&ru->fback, 1, memory_order_relaxed);
        return ru->kind == SL_RATELIMIT_GLOBAL ? take_global(ru, st, c->n, now, wait)
                                               : take_keyed(ru, st, c->n, now, wait);
    default: atomic_fetch_add_explicit(&ru->fclosed, 1, memory_order_relaxed); return SL_EUNAVAIL;
    }
}

/* Gives back what st took. At the decision's instant with no Redis wait since: a cancel,
 * exact (see the top). After a wait, other requests may have reserved meanwhile and a cancel
 * would restore less: a refund (tokens added back, capped at the burst) instead; in Redis, the
 * refund script, sent without waiting. */
static void undo(ctx *c, step *st, int64_t now)
{
    if (!st->undo) return;
    sl_ratelimit *rl = c->rl;
    rule *ru = &rl->rules[st->rule];
    if (st->redis) {
        sl_keyed_tier tier = {st->limit, st->burst};
        sl__redis_refund(ru->redis, st->key, st->len, c->n, &tier);
    } else if (st->epoch == c->waits) {
        if (st->global)
            sl_reservation_cancel_at(&st->r, now);
        else
            sl_keyed_cancel_at(ru->keyed, st->key, st->len, &st->kr, now);
    } else if (st->global) {
        sl__limiter_refund(&st->r, now);
    } else {
        sl__keyed_refund(ru->keyed, st->key, st->len, &st->kr, now);
    }
    st->undo = false;
}

/* ---- the answer ---------------------------------------------------------------------------- */

typedef struct out {
    sl_ratelimit_decision *d;
    size_t off; /* bytes of d->buf used */
} out;

/* Appends the decimal digits of v. */
static char *digits(char *p, char *end, long long v)
{
    static const char pairs[] = "00010203040506070809101112131415161718192021222324252627282930"
                                "31323334353637383940414243444546474849505152535455565758596061"
                                "62636465666768697071727374757677787980818283848586878889909192"
                                "939495969798"
                                "99";
    char tmp[24], *t = tmp + sizeof tmp;
    unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
    while (u >= 100) { /* two digits per division: bursts of 10^9 are common */
        unsigned d = (unsigned)(u % 100) * 2;
        u /= 100;
        t -= 2;
        memcpy(t, pairs + d, 2);
    }
    if (u >= 10) {
        t -= 2;
        memcpy(t, pairs + u * 2, 2);
    } else {
        *--t = (char)('0' + u);
    }
    if (v < 0) *--t = '-';
    size_t n = (size_t)(tmp + sizeof tmp - t);
    if ((size_t)(end - p) < n) return NULL;
    memcpy(p, t, n);
    return p + n;
}

static char *bytes(char *p, char *end, const char *s, size_t n)
{
    if ((size_t)(end - p) < n) return NULL;
    memcpy(p, s, n);
    return p + n;
}

/* A printf for the three conversions the answers need (%s, %d, %lld), appended to the
 * decision's buffer and NUL-terminated; vsnprintf cost more than the whole token math, and a
 * byte-at-a-time loop cost as much as the three rules' token math (so: runs of literal text and
 * arguments are copied whole). Returns the string, or NULL if it does not fit (cannot happen
 * with validated names). */
static const char *put(out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static const char *put(out *o, const char *fmt, ...)
{
    char *start = o->d->buf + o->off, *p = start;
    char *end = o->d->buf + sizeof o->d->buf - 1; /* room for the NUL */
    va_list ap;
    va_start(ap, fmt);
    for (const char *f = fmt; *f && p;) {
        if (*f != '%') {
            const char *pct = strchr(f, '%');
            size_t n = pct ? (size_t)(pct - f) : strlen(f);
            p = bytes(p, end, f, n);
            f += n;
        } else if (f[1] == 's') {
            const char *a = va_arg(ap, const char *);
            p = bytes(p, end, a, strlen(a));
            f += 2;
        } else if (f[1] == 'd') {
            p = digits(p, end, va_arg(ap, int));
            f += 2;
        } else { /* "%lld" */
            p = digits(p, end, va_arg(ap, long long));
            f += 4;
        }
    }
    va_end(ap);
    if (!p) return NULL;
    *p = 0;
    o->off += (size_t)(p - start) + 1;
    return start;
}

static void add(out *o, const char *name, const char *value)
{
    sl_ratelimit_decision *d = o->d;
    if (!value || d->nheaders == SL_RATELIMIT_MAX_HEADERS) return;
    d->headers[d->nheaders++] = (sl_ratelimit_header){name, value};
}

/* Whole seconds from ns, rounded up. */
static int64_t ceil_s(int64_t ns)
{
    if (ns <= 0) return 0;
    return ns / SL_SEC(1) + (ns % SL_SEC(1) != 0);
}

/* The seconds tok tokens take to accumulate at limit. */
static int64_t refill_s(double limit, double tok)
{
    if (tok <= 0) return 0;
    return ceil_s(sl__dur_from_tokens(limit, tok));
}

/* A rule's quota as the headers show it: q, w (policy) and r, t (now). */
typedef struct quota {
    long long q, w, r, t;
    bool timed; /* limit > 0: w and t mean something */
} quota;

static quota quota_of(double limit, int64_t burst, double after)
{
    quota k = {.q = (long long)burst, .timed = limit > 0};
    if (after < 0) after = 0;
    k.r = (long long)floor(after);
    if (k.timed) {
        k.w = refill_s(limit, (double)burst);
        k.t = refill_s(limit, (double)burst - after);
    }
    return k;
}

/* A list header value built item by item in the decision's buffer. */
typedef struct list {
    char *start, *p, *end;
} list;

static void list_begin(out *o, list *l)
{
    l->start = l->p = o->d->buf + o->off;
    l->end = o->d->buf + sizeof o->d->buf - 1;
}

/* Appends `"name";a=x;b=y` (b only when two), comma-separated. */
static void list_item(list *l, const char *name, const char *a, long long x, const char *b,
                      long long y, bool two)
{
    char *p = l->p;
    if (p && p != l->start) p = bytes(p, l->end, ", ", 2);
    if (p) p = bytes(p, l->end, "\"", 1);
    if (p) p = bytes(p, l->end, name, strlen(name));
    if (p) p = bytes(p, l->end, a, strlen(a));
    if (p) p = digits(p, l->end, x);
    if (p && two) p = bytes(p, l->end, b, strlen(b));
    if (p && two) p = digits(p, l->end, y);
    l->p = p;
}

static const char *list_end(out *o, list *l)
{
    if (!l->p || l->p == l->start) return NULL;
    *l->p = 0;
    o->off += (size_t)(l->p - l->start) + 1;
    return l->start;
}

static bool shown(const step *st)
{
    return !st->hidden && st->limit != SL_RATE_INF;
}

/* The rate headers. RateLimit-Policy lists the policy of every rule the client is subject to:
 * each shown step (a rule the decision reached that applies to this request: not dry-run, not
 * infinite, not skipped), and on a rejection also the rules after the rejecting one that the
 * decision never reached, when their quota does not depend on a key (GLOBAL, IP, untiered).
 * RateLimit: on a rejection the rejecting rule's item alone (what to wait for, as
 * Retry-After); on success one item per shown step. The legacy trio describes one rule: the
 * rejecting one, or on success the tightest (main). */
static void describe(ctx *c, out *o, const step *steps, size_t nsteps, const step *rej,
                     const step *main)
{
    sl_ratelimit *rl = c->rl;
    if (!(rl->headers & (SL_RATELIMIT_HDR_DRAFT | SL_RATELIMIT_HDR_LEGACY))) return;
    if (rl->headers & SL_RATELIMIT_HDR_DRAFT) {
        list pol;
        list_begin(o, &pol);
        size_t total = nsteps + (rej ? 1 : 0);
        for (size_t i = 0; i < total; i++) {
            const step *st = i < nsteps ? &steps[i] : rej;
            if (!shown(st)) continue;
            quota k = quota_of(st->limit, st->burst, st->after);
            list_item(&pol, rl->rules[st->rule].name, "\";q=", k.q, ";w=", k.w, k.timed);
        }
        for (size_t i = rej ? (size_t)rej->rule + 1 : rl->nrules; i < rl->nrules; i++) {
            const rule *ru = &rl->rules[i];
            if (ru->dry_run || ru->ntiers > 1) continue;
            double limit = ru->kind == SL_RATELIMIT_GLOBAL ? ru->gtier.limit : ru->tiers[0].limit;
            int64_t burst = ru->kind == SL_RATELIMIT_GLOBAL ? ru->gtier.burst : ru->tiers[0].burst;
            if (limit == SL_RATE_INF) continue;
            quota k = quota_of(limit, burst, (double)burst);
            list_item(&pol, ru->name, "\";q=", k.q, ";w=", k.w, k.timed);
        }
        const char *pv = list_end(o, &pol);
        list now;
        list_begin(o, &now);
        for (size_t i = 0; i < (rej ? 1 : nsteps); i++) {
            const step *st = rej ? rej : &steps[i];
            if (!shown(st)) continue;
            quota k = quota_of(st->limit, st->burst, st->after);
            list_item(&now, rl->rules[st->rule].name, "\";r=", k.r, ";t=", k.t, k.timed);
        }
        const char *nv = list_end(o, &now);
        if (pv && nv) {
            add(o, "RateLimit-Policy", pv);
            add(o, "RateLimit", nv);
        }
    }
    if ((rl->headers & SL_RATELIMIT_HDR_LEGACY) && main && shown(main)) {
        quota k = quota_of(main->limit, main->burst, main->after);
        add(o, "X-RateLimit-Limit", put(o, "%lld", k.q));
        add(o, "X-RateLimit-Remaining", put(o, "%lld", k.r));
        if (k.timed) add(o, "X-RateLimit-Reset", put(o, "%lld", k.t));
    }
}

static uint64_t jitter(sl_ratelimit *rl)
{
    if (!rl->jitter_max_s) return 0;
    uint64_t z = atomic_fetch_add_explicit(&rl->prng, 0x9e3779b97f4a7c15ULL, memory_order_relaxed);
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    return z % ((uint64_t)rl->jitter_max_s + 1);
}

static void set_body(sl_ratelimit *rl, out *o, int status, const char *title, const char *msg,
                     int64_t retry)
{
    sl_ratelimit_decision *d = o->d;
    const char *b;
    if (rl->body == SL_RATELIMIT_BODY_PROBLEM) {
        d->content_type = "application/problem+json";
        if (retry)
            b = put(o,
                    "{\"type\":\"%s\",\"title\":\"%s\",\"status\":%d,\"detail\":\"%s, retry after "
                    "%lld s\",\"retry_after\":%lld}",
                    rl->problem_type, title, status, msg, (long long)retry, (long long)retry);
        else
            b = put(o, "{\"type\":\"%s\",\"title\":\"%s\",\"status\":%d,\"detail\":\"%s\"}",
                    rl->problem_type, title, status, msg);
    } else {
        d->content_type = "application/json";
        if (retry)
            b = put(o, "{\"error\":\"%s\",\"retry_after\":%lld}", msg, (long long)retry);
        else
            b = put(o, "{\"error\":\"%s\"}", msg);
    }
    d->body = b;
    d->body_len = b ? strlen(b) : 0;
}

static void reject_429(ctx *c, out *o, const step *steps, size_t nsteps, const step *st,
                       int64_t wait)
{
    sl_ratelimit *rl = c->rl;
    sl_ratelimit_decision *d = o->d;
    int64_t s = wait >= SL_SEC(MAX_RETRY_S) ? MAX_RETRY_S : ceil_s(wait);
    if (s < 1) s = 1;
    s += (int64_t)jitter(rl);
    d->status = 429;
    d->rule = st->rule;
    d->retry_after = s;
    if (rl->headers & SL_RATELIMIT_HDR_RETRY_AFTER)
        add(o, "Retry-After", put(o, "%lld", (long long)s));
    describe(c, o, steps, nsteps, st, st);
    set_body(rl, o, 429, "Too Many Requests", "rate limit exceeded", s);
}

static void reject_401(sl_ratelimit *rl, out *o, int ri)
{
    const rule *ru = &rl->rules[ri];
    o->d->status = 401;
    o->d->rule = ri;
    add(o, "WWW-Authenticate", put(o, "APIKey realm=\"%s\", header=\"%s\"", ru->realm, ru->header));
    set_body(rl, o, 401, "Unauthorized", "missing api key", 0);
}

static void reject_503(sl_ratelimit *rl, out *o, int ri)
{
    o->d->status = 503;
    o->d->rule = ri;
    o->d->retry_after = 1;
    add(o, "Retry-After", "1");
    set_body(rl, o, 503, "Service Unavailable", "rate limiter unavailable", 1);
}

/* ---- deciding ------------------------------------------------------------------------------ */

static const sl_ipkey *client(ctx *c)
{
    if (!c->ip_done) {
        c->ip_done = true;
        const sl_ratelimit_input *in = c->in;
        sl_ipkey peer;
        int rc = SL_EINVAL;
        if (in->peer_key) {
            peer = *in->peer_key;
            rc = 0;
        } else if (in->peer) {
            rc = sl_ipkey_from_sockaddr(in->peer, in->peer_len, &peer);
        }
        if (rc == 0 && sl_clientip_resolve(&c->rl->cip, &peer, in->headers, in->headers_arg,
                                           &c->d->client) >= 0)
            c->d->has_client = true;
    }
    return c->d->has_client ? &c->d->client : NULL;
}

static void log_dry(ctx *c, int ri, const char *why, int64_t wait)
{
    sl_logger *lg = c->rl->log;
    if (!sl_log_enabled(lg, SL_LOG_WARN)) return;
    char ip[SL_IPKEY_STRLEN] = "";
    const sl_ipkey *k = client(c);
    if (k) sl_ipkey_format(k, ip, sizeof ip);
    sl_log_warn(lg, "ratelimit dry-run: would reject", SL_A_STR("rule", c->rl->rules[ri].name),
                SL_A_STR("reason", why), SL_A_STR("client", ip), SL_A_DUR("wait", wait));
}

/* Trims OWS around a header value. */
static void trim(const char **p, size_t *len)
{
    while (*len && (**p == ' ' || **p == '\t'))
        (*p)++, (*len)--;
    while (*len && ((*p)[*len - 1] == ' ' || (*p)[*len - 1] == '\t'))
        (*len)--;
}

/* The key of a keyed rule for this request into st. Returns 1 (key set), 0 (skip the rule),
 * 2 (missing API key), or a negative error (skip, counted). */
static int key_of(ctx *c, const rule *ru, step *st, char *buf, sl_ipkey *ipbuf)
{
    switch (ru->kind) {
    case SL_RATELIMIT_IP: {
        const sl_ipkey *ip = client(c);
        if (!ip) return 0;
        sl_ipkey_group(ip, ru->group, ipbuf);
        st->key = ipbuf->b;
        st->len = sizeof ipbuf->b;
        return 1;
    }
    case SL_RATELIMIT_APIKEY: {
        sl_ratelimit_str v = {NULL, 0};
        if (c->in->headers) {
            size_t nv = c->in->headers(c->in->headers_arg, ru->header, &v, 1);
            if (!nv) v.p = NULL;
        }
        if (v.p) trim(&v.p, &v.len);
        if (!v.p || !v.len || v.len > SL_RATELIMIT_MAX_KEY) return 2;
        st->key = v.p;
        st->len = v.len;
        return 1;
    }
    default: {
        int n = ru->key_fn(ru->key_arg, c->in, client(c), buf, SL_RATELIMIT_MAX_KEY);
        if (n <= 0) return n < 0 ? n : 0;
        if (n > SL_RATELIMIT_MAX_KEY) return SL_ERANGE;
        st->key = buf;
        st->len = (size_t)n;
        return 1;
    }
    }
}

static void finish_allow(ctx *c, out *o, step *steps, size_t nsteps)
{
    const step *tight = NULL;
    for (size_t i = 0; i < nsteps; i++) {
        rule *ru = &c->rl->rules[steps[i].rule];
        atomic_fetch_add_explicit(&ru->allowed, 1, memory_order_relaxed);
        if (!shown(&steps[i])) continue;
        if (!tight || floor(steps[i].after) < floor(tight->after)) tight = &steps[i];
    }
    c->d->status = 0;
    if (tight) {
        c->d->rule = tight->rule;
        describe(c, o, steps, nsteps, NULL, tight);
    }
}

static int decide(sl_ratelimit *rl, const sl_ratelimit_input *in, sl_ctx *wctx, bool can_wait,
                  sl_ratelimit_decision *d)
{
    if (!rl || !in || !d) return SL_EINVAL;
    d->status = 0;
    d->rule = -1;
    d->retry_after = 0;
    d->has_client = false;
    d->nheaders = 0;
    d->content_type = NULL;
    d->body = NULL;
    d->body_len = 0;
    /* Field by field: rkeys is large and written only for the Redis rules reached. */
    ctx c;
    c.rl = rl;
    c.in = in;
    c.d = d;
    c.wctx = wctx;
    c.can_wait = can_wait;
    c.waits = 0;
    c.n = in->cost > 0 ? in->cost : 1;
    c.ip_done = false;
    out o = {d, 0};
    if (rl->need_ip) client(&c);

    step steps[SL_RATELIMIT_MAX_RULES];
    char keys[SL_RATELIMIT_MAX_RULES][SL_RATELIMIT_MAX_KEY];
    sl_ipkey ipkeys[SL_RATELIMIT_MAX_RULES];
    size_t nsteps = 0;
    int64_t now = in->now_ns;

    for (size_t i = 0; i < rl->nrules; i++) {
        rule *ru = &rl->rules[i];
        step *st = &steps[nsteps];
        /* Field by field: the reservations are filled by the limiter calls, and a memset of
         * the whole step cost more than the rest of the bookkeeping. */
        st->rule = (int)i;
        st->key = NULL;
        st->len = 0;
        st->global = st->undo = st->hidden = st->redis = false;
        st->epoch = c.waits;
        st->limit = SL_RATE_INF;
        st->burst = 0;
        st->after = 0;
        int64_t wait = 0;
        int rc;
        if (ru->kind == SL_RATELIMIT_GLOBAL) {
            rc = ru->redis ? take_redis(&c, ru, st, NULL, now, &wait)
                           : take_global(ru, st, c.n, now, &wait);
        } else {
            rc = key_of(&c, ru, st, keys[nsteps], &ipkeys[nsteps]);
            if (rc == 2) {
                atomic_fetch_add_explicit(&ru->missing, 1, memory_order_relaxed);
                if (ru->key_optional) {
                    atomic_fetch_add_explicit(&ru->skipped, 1, memory_order_relaxed);
                    continue;
                }
                if (ru->dry_run) {
                    atomic_fetch_add_explicit(&ru->dry, 1, memory_order_relaxed);
                    log_dry(&c, (int)i, "missing api key", 0);
                    continue;
                }
                while (nsteps)
                    undo(&c, &steps[--nsteps], now);
                reject_401(rl, &o, (int)i);
                return 0;
            }
            if (rc <= 0) {
                if (rc < 0) atomic_fetch_add_explicit(&ru->errors, 1, memory_order_relaxed);
                atomic_fetch_add_explicit(&ru->skipped, 1, memory_order_relaxed);
                continue;
            }
            rc = ru->redis ? take_redis(&c, ru, st, &ipkeys[nsteps], now, &wait)
                           : take_keyed(ru, st, c.n, now, &wait);
        }
        if (rc < 0) {
            atomic_fetch_add_explicit(&ru->errors, 1, memory_order_relaxed);
            while (nsteps)
                undo(&c, &steps[--nsteps], now);
            reject_503(rl, &o, (int)i);
            return rc;
        }
        if (rc == 0) {
            if (ru->dry_run) {
                atomic_fetch_add_explicit(&ru->dry, 1, memory_order_relaxed);
                log_dry(&c, (int)i, "rate limit", wait);
                continue;
            }
            atomic_fetch_add_explicit(&ru->rejected, 1, memory_order_relaxed);
            /* Described before the rollback: the headers show the buckets as the decision saw
             * them (the earlier rules' quotas, then given back). */
            reject_429(&c, &o, steps, nsteps, st, wait);
            while (nsteps) /* st is not among them */
                undo(&c, &steps[--nsteps], now);
            return 0;
        }
        if (ru->dry_run) {
            /* A dry-run rule's tokens are taken (its counts must be what enforcing would
             * give, and a later rejection gives them back), but the client never sees it. */
            st->hidden = true;
        }
        nsteps++;
    }
    finish_allow(&c, &o, steps, nsteps);
    return 0;
}

int sl_ratelimit_decide_at(sl_ratelimit *rl, const sl_ratelimit_input *in, sl_ratelimit_decision *d)
{
    return decide(rl, in, NULL, true, d);
}

int sl_ratelimit_decide(sl_ratelimit *rl, const sl_ratelimit_input *in, sl_ctx *wctx,
                        sl_ratelimit_decision *d)
{
    /* A loop thread outside a task must not block (its loop would stop). */
    bool can_wait = !(rl && rl->waits) || sl__task_self() || !sl__sched_self();
    return decide(rl, in, wctx, can_wait, d);
}

bool sl_ratelimit_waits(const sl_ratelimit *rl)
{
    return rl && rl->waits;
}

/* ---- inspection ---------------------------------------------------------------------------- */

size_t sl_ratelimit_count(const sl_ratelimit *rl)
{
    return rl ? rl->nrules : 0;
}

int sl_ratelimit_stats_get(sl_ratelimit *rl, size_t i, sl_ratelimit_stats *st)
{
    if (!rl || !st || i >= rl->nrules) return SL_ERANGE;
    rule *ru = &rl->rules[i];
    memset(st, 0, sizeof *st);
    st->name = ru->name;
    st->allowed = atomic_load_explicit(&ru->allowed, memory_order_relaxed);
    st->rejected = atomic_load_explicit(&ru->rejected, memory_order_relaxed);
    st->dry_run_rejected = atomic_load_explicit(&ru->dry, memory_order_relaxed);
    st->missing_key = atomic_load_explicit(&ru->missing, memory_order_relaxed);
    st->skipped = atomic_load_explicit(&ru->skipped, memory_order_relaxed);
    st->errors = atomic_load_explicit(&ru->errors, memory_order_relaxed);
    st->redis_fail_open = atomic_load_explicit(&ru->fopen, memory_order_relaxed);
    st->redis_fail_closed = atomic_load_explicit(&ru->fclosed, memory_order_relaxed);
    st->redis_fallback = atomic_load_explicit(&ru->fback, memory_order_relaxed);
    st->redis_nowait = atomic_load_explicit(&ru->nowait, memory_order_relaxed);
    if (ru->keyed) {
        sl_keyed_stats ks;
        sl_keyed_stats_get(ru->keyed, &ks);
        st->keys = ks.keys;
        st->evicted = ks.evictions_idle + ks.evictions_full;
    }
    return 0;
}

sl_keyed *sl_ratelimit_keyed(sl_ratelimit *rl, size_t i)
{
    return rl && i < rl->nrules ? rl->rules[i].keyed : NULL;
}

sl_limiter *sl_ratelimit_limiter(sl_ratelimit *rl, size_t i)
{
    return rl && i < rl->nrules ? rl->rules[i].lim : NULL;
}
