/* sl_ratelimit: composed limiters, the 429/401 answers, headers, bodies, rollback, dry-run. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <jansson.h>

#include "harness.h"
#include "sluice/limiter.h"
#include "sluice/ratelimit.h"

#define T0 SL_SEC(1000)

/* ---- request fixtures --------------------------------------------------------------------- */

typedef struct req {
    sl_ipkey peer;
    const char *name[8];
    const char *value[8];
    size_t n;
} req;

static size_t lookup(void *arg, const char *name, sl_ratelimit_str *out, size_t cap)
{
    req *r = arg;
    size_t n = 0;
    for (size_t i = 0; i < r->n; i++) {
        if (strcasecmp(r->name[i], name)) continue;
        if (n < cap) out[n] = (sl_ratelimit_str){r->value[i], strlen(r->value[i])};
        n++;
    }
    return n;
}

static req mkreq(const char *peer)
{
    req r;
    memset(&r, 0, sizeof r);
    assert_int_equal(sl_ipkey_parse(peer, strlen(peer), &r.peer), 0);
    return r;
}

static void hdr(req *r, const char *name, const char *value)
{
    r->name[r->n] = name;
    r->value[r->n] = value;
    r->n++;
}

static int decide(sl_ratelimit *rl, req *r, int64_t now, sl_ratelimit_decision *d)
{
    sl_ratelimit_input in = {
        .peer_key = &r->peer, .headers = lookup, .headers_arg = r, .now_ns = now};
    return sl_ratelimit_decide_at(rl, &in, d);
}

/* The status of one decision from peer (no headers). */
static int status_of(sl_ratelimit *rl, const char *peer, int64_t now)
{
    req r = mkreq(peer);
    sl_ratelimit_decision d;
    assert_int_equal(decide(rl, &r, now, &d), 0);
    return d.status;
}

static const char *get(const sl_ratelimit_decision *d, const char *name)
{
    for (size_t i = 0; i < d->nheaders; i++)
        if (!strcasecmp(d->headers[i].name, name)) return d->headers[i].value;
    return NULL;
}

static sl_ratelimit *make(const sl_ratelimit_rule *rules, size_t n, sl_ratelimit_config *base)
{
    sl_ratelimit_config cfg;
    if (base)
        cfg = *base;
    else
        memset(&cfg, 0, sizeof cfg);
    /* Small tables: sl_keyed's default (1M keys) reserves ~60 MB per table, which the
     * sanitizers make slow to set up. */
    sl_ratelimit_rule copy[SL_RATELIMIT_MAX_RULES];
    assert_true(n <= SL_RATELIMIT_MAX_RULES);
    memcpy(copy, rules, n * sizeof *rules);
    for (size_t i = 0; i < n; i++)
        if (!copy[i].max_keys) copy[i].max_keys = 4096;
    cfg.rules = copy;
    cfg.nrules = n;
    sl_ratelimit *rl = NULL;
    assert_int_equal(sl_ratelimit_new(&cfg, &rl), 0);
    return rl;
}

static sl_ratelimit_stats stats(sl_ratelimit *rl, size_t i)
{
    sl_ratelimit_stats st;
    assert_int_equal(sl_ratelimit_stats_get(rl, i, &st), 0);
    return st;
}

/* ---- allow and 429 ------------------------------------------------------------------------- */

static void test_allow_headers(void **state)
{
    (void)state;
    sl_ratelimit_rule rules[] = {{.kind = SL_RATELIMIT_GLOBAL, .limit = 10, .burst = 5}};
    sl_ratelimit *rl = make(rules, 1, NULL);
    req r = mkreq("192.0.2.1");
    sl_ratelimit_decision d;
    assert_int_equal(decide(rl, &r, T0, &d), 0);
    assert_int_equal(d.status, 0);
    assert_int_equal(d.rule, 0);
    assert_null(d.body);
    assert_null(get(&d, "Retry-After"));
    /* q = burst, w = ceil(5 / 10 s), r = 4 left, t = ceil(1 token / 10 per s). */
    assert_string_equal(get(&d, "RateLimit-Policy"), "\"global\";q=5;w=1");
    assert_string_equal(get(&d, "RateLimit"), "\"global\";r=4;t=1");
    assert_string_equal(get(&d, "X-RateLimit-Limit"), "5");
    assert_string_equal(get(&d, "X-RateLimit-Remaining"), "4");
    assert_string_equal(get(&d, "X-RateLimit-Reset"), "1");
    assert_int_equal(d.nheaders, 5);
    assert_int_equal(stats(rl, 0).allowed, 1);
    sl_ratelimit_free(rl);
}

/* The wait an identical limiter, driven the same way, reports for one more token at t. */
static int64_t oracle_wait(double limit, int64_t burst, int taken_at_t0, int64_t t)
{
    sl_limiter *lim;
    assert_int_equal(sl_limiter_new(limit, burst, &lim), 0);
    for (int i = 0; i < taken_at_t0; i++)
        assert_true(sl_limiter_allow_n_at(lim, 1, T0));
    sl_reservation res;
    assert_true(sl_limiter_reserve_n_at(lim, 1, t, &res));
    int64_t w = sl_reservation_delay_from(&res, t);
    sl_limiter_free(lim);
    return w;
}

static int64_t ceil_s(int64_t ns)
{
    return (ns + SL_SEC(1) - 1) / SL_SEC(1);
}

static void test_429_exact(void **state)
{
    (void)state;
    sl_ratelimit_rule rules[] = {{.kind = SL_RATELIMIT_GLOBAL, .limit = 0.25, .burst = 2}};
    sl_ratelimit *rl = make(rules, 1, NULL);
    assert_int_equal(status_of(rl, "192.0.2.1", T0), 0);
    assert_int_equal(status_of(rl, "192.0.2.1", T0), 0);

    int64_t t = T0 + SL_MS(1500); /* 0.375 tokens: 2.5 s to wait */
    req r = mkreq("192.0.2.1");
    sl_ratelimit_decision d;
    assert_int_equal(decide(rl, &r, t, &d), 0);
    assert_int_equal(d.status, 429);
    assert_int_equal(d.rule, 0);
    int64_t w = oracle_wait(0.25, 2, 2, t);
    assert_int_equal(w, SL_MS(2500));
    assert_int_equal(d.retry_after, ceil_s(w));
    assert_string_equal(get(&d, "Retry-After"), "3");
    assert_string_equal(get(&d, "RateLimit-Policy"), "\"global\";q=2;w=8");
    /* 1.625 tokens to refill at 0.25/s: 6.5 s -> 7. */
    assert_string_equal(get(&d, "RateLimit"), "\"global\";r=0;t=7");
    assert_string_equal(get(&d, "X-RateLimit-Limit"), "2");
    assert_string_equal(get(&d, "X-RateLimit-Remaining"), "0");
    assert_string_equal(get(&d, "X-RateLimit-Reset"), "7");
    assert_int_equal(d.nheaders, 6);
    assert_string_equal(d.content_type, "application/json");
    assert_int_equal(d.body_len, strlen(d.body));

    json_error_t err;
    json_t *j = json_loads(d.body, 0, &err);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "error")), "rate limit exceeded");
    assert_int_equal(json_integer_value(json_object_get(j, "retry_after")), 3);
    assert_int_equal(json_object_size(j), 2);
    json_decref(j);

    /* The rejection took nothing: still 0.375 + 1.5 s * 0.25 = 0.75 at t + 1.5 s; at t + 2.5 s
     * there is exactly one token again. */
    assert_int_equal(status_of(rl, "192.0.2.1", t + SL_MS(2499)), 429);
    assert_int_equal(status_of(rl, "192.0.2.1", t + SL_MS(2500)), 0);
    assert_int_equal(stats(rl, 0).rejected, 2);
    assert_int_equal(stats(rl, 0).allowed, 3);
    sl_ratelimit_free(rl);
}

static void test_retry_after_never_zero(void **state)
{
    (void)state;
    sl_ratelimit_rule rules[] = {{.kind = SL_RATELIMIT_GLOBAL, .limit = 1, .burst = 1}};
    /* A few ns short of a whole token: the wait is a few ns, or rounds to 0 (then x/time/rate
     * allows, and so must we). Either way the policy agrees with the limiter, and a wait of a
     * nanosecond is still "Retry-After: 1". */
    int waited = 0;
    for (int off = 1; off <= 64; off++) {
        sl_ratelimit *rl = make(rules, 1, NULL);
        assert_int_equal(status_of(rl, "192.0.2.1", T0), 0);
        int64_t t = T0 + SL_SEC(1) - off;
        int64_t w = oracle_wait(1, 1, 1, t);
        assert_true(w >= 0 && w < 100);
        req r = mkreq("192.0.2.1");
        sl_ratelimit_decision d;
        assert_int_equal(decide(rl, &r, t, &d), 0);
        assert_int_equal(d.status, w > 0 ? 429 : 0);
        if (w > 0) {
            assert_string_equal(get(&d, "Retry-After"), "1");
            assert_int_equal(d.retry_after, 1);
            waited++;
        }
        sl_ratelimit_free(rl);
    }
    assert_true(waited > 0);

    sl_ratelimit *rl = make(rules, 1, NULL);
    req r = mkreq("192.0.2.1");
    sl_ratelimit_decision d;
    assert_int_equal(status_of(rl, "192.0.2.1", T0), 0);
    /* Exactly whole seconds stay whole: 1 s of wait is "1", not "2". */
    assert_int_equal(decide(rl, &r, T0, &d), 0);
    assert_string_equal(get(&d, "Retry-After"), "1");
    /* A cost above the burst can never pass: capped at a day. */
    sl_ratelimit_input in = {.peer_key = &r.peer, .now_ns = T0 + SL_SEC(100), .cost = 2};
    assert_int_equal(sl_ratelimit_decide_at(rl, &in, &d), 0);
    assert_int_equal(d.status, 429);
    assert_string_equal(get(&d, "Retry-After"), "86400");
    sl_ratelimit_free(rl);
}

static void test_headers_switchable(void **state)
{
    (void)state;
    sl_ratelimit_rule rules[] = {{.kind = SL_RATELIMIT_GLOBAL, .limit = 1, .burst = 1}};
    static const struct {
        unsigned mask;
        size_t n429, nallow;
    } cases[] = {
        {0, 0, 0},
        {SL_RATELIMIT_HDR_RETRY_AFTER, 1, 0},
        {SL_RATELIMIT_HDR_DRAFT, 2, 2},
        {SL_RATELIMIT_HDR_LEGACY, 3, 3},
        {SL_RATELIMIT_HDR_RETRY_AFTER | SL_RATELIMIT_HDR_LEGACY, 4, 3},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sl_ratelimit_config cfg = {.headers_set = true, .headers = cases[i].mask};
        sl_ratelimit *rl = make(rules, 1, &cfg);
        req r = mkreq("192.0.2.1");
        sl_ratelimit_decision d;
        assert_int_equal(decide(rl, &r, T0, &d), 0);
        assert_int_equal(d.status, 0);
        assert_int_equal(d.nheaders, cases[i].nallow);
        assert_int_equal(decide(rl, &r, T0, &d), 0);
        assert_int_equal(d.status, 429);
        assert_int_equal(d.nheaders, cases[i].n429);
        assert_int_equal(get(&d, "Retry-After") != NULL,
                         (cases[i].mask & SL_RATELIMIT_HDR_RETRY_AFTER) != 0);
        assert_int_equal(get(&d, "RateLimit") != NULL,
                         (cases[i].mask & SL_RATELIMIT_HDR_DRAFT) != 0);
        assert_int_equal(get(&d, "X-RateLimit-Reset") != NULL,
                         (cases[i].mask & SL_RATELIMIT_HDR_LEGACY) != 0);
        /* Retry-After off does not change the body's figure. */
        assert_int_equal(d.retry_after, 1);
        sl_ratelimit_free(rl);
    }
}

static void test_problem_body(void **state)
{
    (void)state;
    sl_ratelimit_rule rules[] = {{.kind = SL_RATELIMIT_GLOBAL, .limit = 0.5, .burst = 1}};
    const char *types[] = {NULL, "https://example.com/probs/rate-limited"};
    for (int k = 0; k < 2; k++) {
        sl_ratelimit_config cfg = {.body = SL_RATELIMIT_BODY_PROBLEM, .problem_type = types[k]};
        sl_ratelimit *rl = make(rules, 1, &cfg);
        req r = mkreq("192.0.2.1");
        sl_ratelimit_decision d;
        assert_int_equal(decide(rl, &r, T0, &d), 0);
        assert_int_equal(decide(rl, &r, T0, &d), 0);
        assert_int_equal(d.status, 429);
        assert_string_equal(d.content_type, "application/problem+json");
        json_error_t err;
        json_t *j = json_loads(d.body, 0, &err);
        assert_non_null(j);
        assert_string_equal(json_string_value(json_object_get(j, "type")),
                            types[k] ? types[k] : "about:blank");
        assert_string_equal(json_string_value(json_object_get(j, "title")), "Too Many Requests");
        assert_int_equal(json_integer_value(json_object_get(j, "status")), 429);
        assert_true(json_is_string(json_object_get(j, "detail")));
        assert_int_equal(json_integer_value(json_object_get(j, "retry_after")), 2);
        json_decref(j);
        sl_ratelimit_free(rl);
    }
}

static void test_jitter(void **state)
{
    (void)state;
    sl_ratelimit_rule rules[] = {{.kind = SL_RATELIMIT_GLOBAL, .limit = 1, .burst = 1}};
    sl_ratelimit_config cfg = {.jitter_max_s = 5, .jitter_seed = 42};
    sl_ratelimit *a = make(rules, 1, &cfg);
    sl_ratelimit *b = make(rules, 1, &cfg);
    assert_int_equal(status_of(a, "192.0.2.1", T0), 0);
    assert_int_equal(status_of(b, "192.0.2.1", T0), 0);
    bool seen[7] = {false};
    for (int i = 0; i < 200; i++) {
        req r = mkreq("192.0.2.1");
        sl_ratelimit_decision da, db;
        assert_int_equal(decide(a, &r, T0, &da), 0);
        assert_int_equal(decide(b, &r, T0, &db), 0);
        assert_int_equal(da.status, 429);
        /* The same seed gives the same sequence; the base wait is 1 s. */
        assert_int_equal(da.retry_after, db.retry_after);
        assert_true(da.retry_after >= 1 && da.retry_after <= 6);
        char want[8];
        snprintf(want, sizeof want, "%d", (int)da.retry_after);
        assert_string_equal(get(&da, "Retry-After"), want);
        seen[da.retry_after] = true;
    }
    for (int s = 1; s <= 6; s++)
        assert_true(seen[s]);
    sl_ratelimit_free(a);
    sl_ratelimit_free(b);
}

/* ---- API keys ------------------------------------------------------------------------------ */

static void test_missing_key_401(void **state)
{
    (void)state;
    sl_ratelimit_rule rules[] = {
        {.kind = SL_RATELIMIT_GLOBAL, .limit = 1, .burst = 3},
        {.kind = SL_RATELIMIT_APIKEY, .limit = 1, .burst = 3},
    };
    sl_ratelimit *rl = make(rules, 2, NULL);
    req r = mkreq("192.0.2.1");
    sl_ratelimit_decision d;
    assert_int_equal(decide(rl, &r, T0, &d), 0);
    assert_int_equal(d.status, 401);
    assert_int_equal(d.rule, 1);
    assert_string_equal(d.content_type, "application/json");
    json_error_t err;
    json_t *j = json_loads(d.body, 0, &err);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "error")), "missing api key");
    assert_int_equal(json_object_size(j), 1);
    json_decref(j);
    assert_string_equal(get(&d, "WWW-Authenticate"), "APIKey realm=\"api\", header=\"X-API-Key\"");
    assert_null(get(&d, "Retry-After"));
    /* An empty value is missing too. */
    hdr(&r, "x-api-key", "  ");
    assert_int_equal(decide(rl, &r, T0, &d), 0);
    assert_int_equal(d.status, 401);
    /* The 401s took nothing from the global budget. */
    assert_true(sl_limiter_tokens_at(sl_ratelimit_limiter(rl, 0), T0) == 3.0);
    assert_int_equal(stats(rl, 1).missing_key, 2);
    assert_int_equal(stats(rl, 0).allowed, 0);
    /* With a key (trimmed), allowed. */
    r.value[0] = " k1 ";
    assert_int_equal(decide(rl, &r, T0, &d), 0);
    assert_int_equal(d.status, 0);
    assert_true(sl_keyed_tokens_at(sl_ratelimit_keyed(rl, 1), "k1", 2, T0) == 2.0);
    sl_ratelimit_free(rl);

    /* Optional key: skipped; problem bodies for 401 in problem mode. */
    rules[1].key_optional = true;
    rules[1].header = "Authorization-Key";
    rl = make(rules, 2, NULL);
    r = mkreq("192.0.2.1");
    assert_int_equal(decide(rl, &r, T0, &d), 0);
    assert_int_equal(d.status, 0);
    assert_int_equal(stats(rl, 1).skipped, 1);
    assert_int_equal(stats(rl, 1).missing_key, 1);
    sl_ratelimit_free(rl);

    rules[1].key_optional = false;
    sl_ratelimit_config cfg = {.body = SL_RATELIMIT_BODY_PROBLEM};
    rl = make(rules, 2, &cfg);
    assert_int_equal(decide(rl, &r, T0, &d), 0);
    assert_int_equal(d.status, 401);
    j = json_loads(d.body, 0, &err);
    assert_non_null(j);
    assert_int_equal(json_integer_value(json_object_get(j, "status")), 401);
    assert_string_equal(json_string_value(json_object_get(j, "title")), "Unauthorized");
    json_decref(j);
    sl_ratelimit_free(rl);
}

enum { FREE, PRO, ENTERPRISE };
static const sl_keyed_tier tiers[] = {
    [FREE] = {1, 2}, [PRO] = {1, 5}, [ENTERPRISE] = {SL_RATE_INF, 0}};

static int passes(sl_ratelimit *rl, const char *key, int tries)
{
    int ok = 0;
    for (int i = 0; i < tries; i++) {
        req r = mkreq("192.0.2.1");
        hdr(&r, "X-API-Key", key);
        sl_ratelimit_decision d;
        assert_int_equal(decide(rl, &r, T0, &d), 0);
        ok += d.status == 0;
    }
    return ok;
}

static int tier_cb(void *arg, const void *key, size_t len)
{
    (void)arg;
    if (len == 3 && !memcmp(key, "pro", 3)) return PRO;
    if (len == 3 && !memcmp(key, "ent", 3)) return ENTERPRISE;
    return -1;
}

static void test_tiers(void **state)
{
    (void)state;
    static const sl_ratelimit_tier_entry table[] = {
        {"pro", PRO}, {"ent", ENTERPRISE}, {"pro-2", PRO}};
    sl_ratelimit_rule rules[] = {{.kind = SL_RATELIMIT_APIKEY,
                                  .name = "key",
                                  .tiers = tiers,
                                  .ntiers = 3,
                                  .default_tier = FREE,
                                  .tier_table = table,
                                  .ntier_table = 3}};
    for (int variant = 0; variant < 2; variant++) {
        if (variant) {
            rules[0].tier_fn = tier_cb;
            rules[0].tier_table = NULL;
            rules[0].ntier_table = 0;
        }
        sl_ratelimit *rl = make(rules, 1, NULL);
        assert_int_equal(passes(rl, "anyone", 10), 2);
        assert_int_equal(passes(rl, "pro", 10), 5);
        assert_int_equal(passes(rl, "ent", 100), 100);
        if (!variant) assert_int_equal(passes(rl, "pro-2", 10), 5);
        /* Headers show the key's own tier. */
        req r = mkreq("192.0.2.1");
        hdr(&r, "X-API-Key", "pro");
        sl_ratelimit_decision d;
        assert_int_equal(decide(rl, &r, T0 + SL_SEC(2), &d), 0);
        assert_int_equal(d.status, 0);
        assert_string_equal(get(&d, "RateLimit-Policy"), "\"key\";q=5;w=5");
        assert_string_equal(get(&d, "RateLimit"), "\"key\";r=1;t=4");
        /* An unlimited tier is never described. */
        r.value[0] = "ent";
        assert_int_equal(decide(rl, &r, T0, &d), 0);
        assert_int_equal(d.nheaders, 0);
        assert_int_equal(d.rule, -1);
        sl_ratelimit_free(rl);
    }
}

/* ---- composition --------------------------------------------------------------------------- */

/* The seed's way: one middleware per limiter, each spending its token before the next
 * looks. A request rejected by the second still cost the first. */
static void test_rollback_vs_stacked(void **state)
{
    (void)state;
    sl_ratelimit_rule rules[] = {
        {.kind = SL_RATELIMIT_GLOBAL, .limit = 1, .burst = 10},
        {.kind = SL_RATELIMIT_IP, .limit = 1, .burst = 2},
    };
    sl_ratelimit *rl = make(rules, 2, NULL);
    for (int i = 0; i < 10; i++)
        status_of(rl, "192.0.2.1", T0);
    assert_int_equal(stats(rl, 0).allowed, 2);
    assert_int_equal(stats(rl, 1).rejected, 8);
    assert_true(sl_limiter_tokens_at(sl_ratelimit_limiter(rl, 0), T0) == 8.0);
    /* Another client still has the global budget. */
    assert_int_equal(status_of(rl, "192.0.2.2", T0), 0);
    assert_int_equal(status_of(rl, "192.0.2.2", T0), 0);
    assert_int_equal(status_of(rl, "192.0.2.2", T0), 429);
    sl_ratelimit_free(rl);

    /* Stacked: the same ten requests leave the global limiter empty. */
    sl_limiter *global, *ip;
    assert_int_equal(sl_limiter_new(1, 10, &global), 0);
    assert_int_equal(sl_limiter_new(1, 2, &ip), 0);
    for (int i = 0; i < 10; i++)
        if (sl_limiter_allow_n_at(global, 1, T0)) (void)sl_limiter_allow_n_at(ip, 1, T0);
    assert_true(sl_limiter_tokens_at(global, T0) == 0.0);
    sl_limiter_free(global);
    sl_limiter_free(ip);
}

static void test_rollback_keyed(void **state)
{
    (void)state;
    /* ip, then api key: a key's rejection gives the ip budget back, and a later rule's 401
     * gives back both. */
    sl_ratelimit_rule rules[] = {
        {.kind = SL_RATELIMIT_GLOBAL, .limit = 1, .burst = 100},
        {.kind = SL_RATELIMIT_IP, .limit = 1, .burst = 5},
        {.kind = SL_RATELIMIT_APIKEY, .limit = 1, .burst = 1},
    };
    sl_ratelimit *rl = make(rules, 3, NULL);
    sl_keyed *ipk = sl_ratelimit_keyed(rl, 1);
    sl_ipkey a;
    assert_int_equal(sl_ipkey_parse("192.0.2.1", 9, &a), 0);
    int ok = 0;
    for (int i = 0; i < 4; i++) {
        req r = mkreq("192.0.2.1");
        hdr(&r, "X-API-Key", "k");
        sl_ratelimit_decision d;
        assert_int_equal(decide(rl, &r, T0, &d), 0);
        ok += d.status == 0;
        if (i) assert_int_equal(d.rule, 2);
    }
    assert_int_equal(ok, 1);
    assert_true(sl_keyed_tokens_at(ipk, a.b, 16, T0) == 4.0);
    assert_true(sl_limiter_tokens_at(sl_ratelimit_limiter(rl, 0), T0) == 99.0);
    req r = mkreq("192.0.2.1");
    sl_ratelimit_decision d;
    assert_int_equal(decide(rl, &r, T0, &d), 0);
    assert_int_equal(d.status, 401);
    assert_true(sl_keyed_tokens_at(ipk, a.b, 16, T0) == 4.0);
    assert_true(sl_limiter_tokens_at(sl_ratelimit_limiter(rl, 0), T0) == 99.0);
    sl_ratelimit_free(rl);
}

static void test_tightest_described(void **state)
{
    (void)state;
    sl_ratelimit_rule rules[] = {
        {.kind = SL_RATELIMIT_GLOBAL, .limit = 100, .burst = 100},
        {.kind = SL_RATELIMIT_IP, .limit = 1, .burst = 3},
    };
    sl_ratelimit *rl = make(rules, 2, NULL);
    req r = mkreq("192.0.2.1");
    sl_ratelimit_decision d;
    assert_int_equal(decide(rl, &r, T0, &d), 0);
    assert_int_equal(d.rule, 1);
    /* Every policy, each with its own state (the draft's lists); the legacy trio: the
     * tightest. */
    assert_string_equal(get(&d, "RateLimit"), "\"global\";r=99;t=1, \"ip\";r=2;t=1");
    assert_string_equal(get(&d, "RateLimit-Policy"), "\"global\";q=100;w=1, \"ip\";q=3;w=3");
    assert_string_equal(get(&d, "X-RateLimit-Remaining"), "2");
    assert_string_equal(get(&d, "X-RateLimit-Limit"), "3");
    sl_ratelimit_free(rl);
}

/* ---- client addresses ---------------------------------------------------------------------- */

static void test_ipv6_grouping(void **state)
{
    (void)state;
    sl_ratelimit_rule rules[] = {
        {.kind = SL_RATELIMIT_IP, .name = "ip64", .limit = 1, .burst = 2},
        {.kind = SL_RATELIMIT_IP, .name = "ip48", .limit = 1, .burst = 5, .group = {32, 48}},
    };
    sl_ratelimit *rl = make(rules, 2, NULL);
    /* Two addresses of one /64 share its budget. */
    assert_int_equal(status_of(rl, "2001:db8:1:1::1", T0), 0);
    assert_int_equal(status_of(rl, "2001:db8:1:1:ffff::2", T0), 0);
    assert_int_equal(status_of(rl, "2001:db8:1:1::3", T0), 429);
    /* Another /64 of the same /48 has its own /64 budget but shares the /48's. */
    assert_int_equal(status_of(rl, "2001:db8:1:2::1", T0), 0);
    assert_int_equal(status_of(rl, "2001:db8:1:2::1", T0), 0);
    assert_int_equal(status_of(rl, "2001:db8:1:3::1", T0), 0); /* the /48's 5th */
    req r = mkreq("2001:db8:1:4::1");
    sl_ratelimit_decision d;
    assert_int_equal(decide(rl, &r, T0, &d), 0);
    assert_int_equal(d.status, 429);
    assert_int_equal(d.rule, 1);
    assert_string_equal(get(&d, "RateLimit"), "\"ip48\";r=0;t=5");
    /* ...and that rejection gave the fresh /64 its token back. */
    sl_ipkey g;
    assert_int_equal(sl_ipkey_parse("2001:db8:1:4::", 14, &g), 0);
    assert_true(sl_keyed_tokens_at(sl_ratelimit_keyed(rl, 0), g.b, 16, T0) == 2.0);
    /* Another /48 is untouched. */
    assert_int_equal(status_of(rl, "2001:db8:2:1::1", T0), 0);
    /* IPv4 addresses are each their own group. */
    assert_int_equal(status_of(rl, "192.0.2.1", T0), 0);
    assert_int_equal(status_of(rl, "192.0.2.2", T0), 0);
    assert_int_equal(status_of(rl, "192.0.2.1", T0), 0);
    assert_int_equal(status_of(rl, "192.0.2.1", T0), 429);
    /* Six /64s and two IPv4 addresses; the rejected /64 kept its (refunded) entry. */
    assert_int_equal(stats(rl, 0).keys, 7);
    sl_ratelimit_free(rl);
}

static void test_sockaddr_peer(void **state)
{
    (void)state;
    sl_ratelimit_rule rules[] = {{.kind = SL_RATELIMIT_IP, .limit = 1, .burst = 2}};
    sl_ratelimit *rl = make(rules, 1, NULL);
    struct sockaddr_in v4 = {.sin_family = AF_INET, .sin_port = htons(1234)};
    inet_pton(AF_INET, "198.51.100.4", &v4.sin_addr);
    struct sockaddr_in6 v6 = {.sin6_family = AF_INET6, .sin6_port = htons(99)};
    inet_pton(AF_INET6, "::ffff:198.51.100.4", &v6.sin6_addr);
    sl_ratelimit_decision d;
    sl_ratelimit_input in = {.peer = &v4, .peer_len = sizeof v4, .now_ns = T0};
    assert_int_equal(sl_ratelimit_decide_at(rl, &in, &d), 0);
    assert_int_equal(d.status, 0);
    assert_true(d.has_client);
    in.peer = &v6;
    in.peer_len = sizeof v6;
    assert_int_equal(sl_ratelimit_decide_at(rl, &in, &d), 0);
    assert_int_equal(d.status, 0);
    in.peer = &v4;
    in.peer_len = sizeof v4;
    assert_int_equal(sl_ratelimit_decide_at(rl, &in, &d), 0);
    assert_int_equal(d.status, 429); /* one client, whichever socket family */
    /* A peer without an address (AF_UNIX) is not limited per IP. */
    struct sockaddr_storage un = {.ss_family = AF_UNIX};
    in.peer = &un;
    in.peer_len = sizeof un;
    assert_int_equal(sl_ratelimit_decide_at(rl, &in, &d), 0);
    assert_int_equal(d.status, 0);
    assert_false(d.has_client);
    assert_int_equal(stats(rl, 0).skipped, 1);
    assert_int_equal(sl_ratelimit_decide_at(rl, NULL, &d), SL_EINVAL);
    sl_ratelimit_free(rl);
}

static void test_spoofed_xff(void **state)
{
    (void)state;
    sl_cidr proxies;
    assert_int_equal(sl_cidr_parse("10.0.0.0/8", 10, &proxies), 0);
    sl_ratelimit_rule rules[] = {{.kind = SL_RATELIMIT_IP, .limit = 1, .burst = 2}};
    sl_ratelimit_config cfg = {.clientip = {&proxies, 1, SL_CLIENTIP_XFF}};
    sl_ratelimit *rl = make(rules, 1, &cfg);
    /* An untrusted peer inventing a new address each time is still one client. */
    const char *fake[] = {"1.1.1.1", "2.2.2.2", "3.3.3.3", "4.4.4.4"};
    int ok = 0;
    for (int i = 0; i < 4; i++) {
        req r = mkreq("198.51.100.7");
        hdr(&r, "X-Forwarded-For", fake[i]);
        sl_ratelimit_decision d;
        assert_int_equal(decide(rl, &r, T0, &d), 0);
        ok += d.status == 0;
        char buf[SL_IPKEY_STRLEN];
        sl_ipkey_format(&d.client, buf, sizeof buf);
        assert_string_equal(buf, "198.51.100.7");
    }
    assert_int_equal(ok, 2);
    /* Through our proxy, each client has its own budget, whatever it prepends. */
    ok = 0;
    for (int i = 0; i < 4; i++) {
        req r = mkreq("10.0.0.1");
        char v[64];
        snprintf(v, sizeof v, "6.6.6.6, %s", fake[i]);
        hdr(&r, "X-Forwarded-For", v);
        sl_ratelimit_decision d;
        assert_int_equal(decide(rl, &r, T0, &d), 0);
        ok += d.status == 0;
    }
    assert_int_equal(ok, 4);
    /* Forwarded, multi-hop through two proxies. */
    for (int i = 0; i < 3; i++) {
        req r = mkreq("10.0.0.1");
        hdr(&r, "Forwarded", "for=\"[2001:db8::7]:4711\", for=10.9.9.9");
        sl_ratelimit_decision d;
        assert_int_equal(decide(rl, &r, T0, &d), 0);
        assert_int_equal(d.status, i < 2 ? 0 : 429);
    }
    sl_ratelimit_free(rl);
}

/* ---- custom keys, dry-run, stats, errors --------------------------------------------------- */

static int route_key(void *arg, const sl_ratelimit_input *in, const sl_ipkey *client, char *buf,
                     size_t cap)
{
    (void)arg;
    (void)client;
    const char *route = in->user;
    if (!route) return 0;
    if (!strcmp(route, "boom")) return SL_EIO;
    size_t n = strlen(route);
    if (n > cap) return SL_ERANGE;
    memcpy(buf, route, n);
    return (int)n;
}

static void test_custom_key(void **state)
{
    (void)state;
    sl_ratelimit_rule rules[] = {{.kind = SL_RATELIMIT_CUSTOM,
                                  .name = "route",
                                  .limit = 1,
                                  .burst = 1,
                                  .key_fn = route_key}};
    sl_ratelimit *rl = make(rules, 1, NULL);
    sl_ipkey peer;
    sl_ipkey_parse("192.0.2.1", 9, &peer);
    sl_ratelimit_input in = {.peer_key = &peer, .now_ns = T0, .user = "/search"};
    sl_ratelimit_decision d;
    assert_int_equal(sl_ratelimit_decide_at(rl, &in, &d), 0);
    assert_int_equal(d.status, 0);
    assert_int_equal(sl_ratelimit_decide_at(rl, &in, &d), 0);
    assert_int_equal(d.status, 429);
    assert_string_equal(get(&d, "RateLimit-Policy"), "\"route\";q=1;w=1");
    in.user = "/users";
    assert_int_equal(sl_ratelimit_decide_at(rl, &in, &d), 0);
    assert_int_equal(d.status, 0);
    in.user = NULL; /* 0: not this rule's business */
    assert_int_equal(sl_ratelimit_decide_at(rl, &in, &d), 0);
    assert_int_equal(d.status, 0);
    in.user = "boom"; /* an error skips the rule and is counted */
    assert_int_equal(sl_ratelimit_decide_at(rl, &in, &d), 0);
    assert_int_equal(d.status, 0);
    sl_ratelimit_stats st = stats(rl, 0);
    assert_int_equal(st.allowed, 2);
    assert_int_equal(st.rejected, 1);
    assert_int_equal(st.skipped, 2);
    assert_int_equal(st.errors, 1);
    assert_int_equal(st.keys, 2);
    assert_string_equal(st.name, "route");
    sl_ratelimit_free(rl);
}

typedef struct logbuf {
    char text[4096];
    size_t len;
    int lines;
} logbuf;

static void sink(void *arg, const char *line, size_t len)
{
    logbuf *b = arg;
    if (b->len + len < sizeof b->text) {
        memcpy(b->text + b->len, line, len);
        b->len += len;
        b->text[b->len] = 0;
    }
    b->lines++;
}

static void test_dry_run(void **state)
{
    (void)state;
    logbuf lb = {.len = 0};
    sl_log_opts lo = {.level = SL_LOG_INFO, .sink = sink, .sink_arg = &lb, .omit_time = true};
    sl_logger *lg;
    assert_int_equal(sl_logger_new(&lo, &lg), 0);
    sl_ratelimit_rule rules[] = {
        {.kind = SL_RATELIMIT_GLOBAL, .limit = 1, .burst = 100},
        {.kind = SL_RATELIMIT_IP, .limit = 1, .burst = 1, .dry_run = true},
        {.kind = SL_RATELIMIT_APIKEY, .limit = 1, .burst = 100, .dry_run = true},
    };
    sl_ratelimit_config cfg = {.log = lg};
    sl_ratelimit *rl = make(rules, 3, &cfg);
    for (int i = 0; i < 3; i++) {
        req r = mkreq("192.0.2.1");
        sl_ratelimit_decision d;
        assert_int_equal(decide(rl, &r, T0, &d), 0);
        assert_int_equal(d.status, 0);
        /* Only the enforcing rule is described. */
        assert_int_equal(d.rule, 0);
        assert_non_null(strstr(get(&d, "RateLimit"), "\"global\""));
    }
    sl_ratelimit_stats ip = stats(rl, 1), key = stats(rl, 2);
    assert_int_equal(ip.allowed, 1);
    assert_int_equal(ip.dry_run_rejected, 2);
    assert_int_equal(ip.rejected, 0);
    assert_int_equal(key.missing_key, 3);
    assert_int_equal(key.dry_run_rejected, 3);
    assert_int_equal(stats(rl, 0).allowed, 3);
    assert_int_equal(lb.lines, 5);
    assert_non_null(strstr(lb.text, "would reject"));
    assert_non_null(strstr(lb.text, "rule=ip"));
    assert_non_null(strstr(lb.text, "client=192.0.2.1"));
    assert_non_null(strstr(lb.text, "missing api key"));
    sl_ratelimit_free(rl);
    sl_logger_free(lg);
}

static void test_eviction_stats_and_full(void **state)
{
    (void)state;
    sl_ratelimit_rule rules[] = {
        {.kind = SL_RATELIMIT_GLOBAL, .limit = 1, .burst = 10},
        {.kind = SL_RATELIMIT_IP,
         .limit = 1,
         .burst = 1,
         .max_keys = 1,
         .idle_ttl_ns = SL_SEC(1),
         .on_full = SL_KEYED_FULL_ERROR},
    };
    sl_ratelimit *rl = make(rules, 2, NULL);
    assert_int_equal(status_of(rl, "192.0.2.1", T0), 0);
    /* The table is full of a fresh key: a new one is an error, 503, and nothing is spent. */
    req r = mkreq("192.0.2.2");
    sl_ratelimit_decision d;
    assert_int_equal(decide(rl, &r, T0, &d), SL_EFULL);
    assert_int_equal(d.status, 503);
    assert_string_equal(get(&d, "Retry-After"), "1");
    assert_true(sl_limiter_tokens_at(sl_ratelimit_limiter(rl, 0), T0) == 9.0);
    assert_int_equal(stats(rl, 1).errors, 1);
    /* Later the first key has refilled and goes. */
    assert_int_equal(status_of(rl, "192.0.2.2", T0 + SL_SEC(5)), 0);
    sl_ratelimit_stats st = stats(rl, 1);
    assert_int_equal(st.keys, 1);
    assert_int_equal(st.evicted, 1);
    sl_ratelimit_free(rl);
}

static void test_config_errors(void **state)
{
    (void)state;
    sl_ratelimit *rl = NULL;
    sl_ratelimit_rule ok = {.kind = SL_RATELIMIT_GLOBAL, .limit = 1, .burst = 1};
    sl_ratelimit_config cfg = {.rules = &ok, .nrules = 1};
    assert_int_equal(sl_ratelimit_new(NULL, &rl), SL_EINVAL);
    sl_ratelimit_config none = {.rules = &ok, .nrules = 0};
    assert_int_equal(sl_ratelimit_new(&none, &rl), SL_EINVAL);
    sl_ratelimit_rule bad[] = {
        {.kind = SL_RATELIMIT_GLOBAL, .name = "has space", .limit = 1, .burst = 1},
        {.kind = SL_RATELIMIT_GLOBAL, .name = "", .limit = 1, .burst = 1},
        {.kind = SL_RATELIMIT_GLOBAL, .name = "q\"uote", .limit = 1, .burst = 1},
        {.kind = SL_RATELIMIT_GLOBAL, .limit = 1, .burst = -1},
        {.kind = SL_RATELIMIT_CUSTOM, .limit = 1, .burst = 1},
        {.kind = SL_RATELIMIT_APIKEY, .header = "X Key", .limit = 1, .burst = 1},
        {.kind = SL_RATELIMIT_IP, .group = {33, 64}, .limit = 1, .burst = 1},
        {.kind = SL_RATELIMIT_APIKEY, .tiers = tiers, .ntiers = 3, .default_tier = 3},
        {.kind = (sl_ratelimit_kind)9, .limit = 1, .burst = 1},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cfg.rules = &bad[i];
        assert_int_equal(sl_ratelimit_new(&cfg, &rl), SL_EINVAL);
    }
    cfg.rules = &ok;
    cfg.problem_type = "bad\"type";
    assert_int_equal(sl_ratelimit_new(&cfg, &rl), SL_EINVAL);
    assert_null(rl);
    cfg.problem_type = NULL;
    /* Exactly one forwarding header may be trusted. */
    cfg.clientip.sources = SL_CLIENTIP_XFF | SL_CLIENTIP_FORWARDED;
    assert_int_equal(sl_ratelimit_new(&cfg, &rl), SL_EINVAL);
    assert_null(rl);
    cfg.clientip.sources = 0;
    assert_int_equal(sl_ratelimit_new(&cfg, &rl), 0);
    assert_int_equal(sl_ratelimit_count(rl), 1);
    sl_ratelimit_stats st;
    assert_int_equal(sl_ratelimit_stats_get(rl, 1, &st), SL_ERANGE);
    assert_null(sl_ratelimit_keyed(rl, 0));
    sl_ratelimit_free(rl);
    sl_ratelimit_free(NULL);
}

/* ---- threads ------------------------------------------------------------------------------- */

/* Several threads decide at one instant on shared keys: ip rules whose budgets run out, an
 * api-key rule that rejects some, a global budget. Whatever the interleaving, no rejected
 * request keeps a token anywhere: every bucket holds burst minus what allowed requests took. */
#define THREADS   4
#define PER       3000
#define NIPS      6
#define NKEYS     3
#define IP_BURST  400
#define KEY_BURST 700
#define G_BURST   5000

typedef struct worker {
    sl_ratelimit *rl;
    int id;
    int allowed_ip[NIPS];
    int allowed_key[NKEYS];
} worker;

static void *work(void *arg)
{
    worker *w = arg;
    char ip[32];
    char key[8];
    for (int i = 0; i < PER; i++) {
        /* Half the traffic from one address, which runs out of its own budget first; the
         * rest spread over the others until the keys run out. */
        int a = (i + w->id) % 2 ? 0 : 1 + (i / 2 + w->id) % (NIPS - 1);
        int k = (i * 5 + w->id * 3) % NKEYS;
        snprintf(ip, sizeof ip, "192.0.2.%d", a + 1);
        snprintf(key, sizeof key, "k%d", k);
        req r = mkreq(ip);
        hdr(&r, "X-API-Key", key);
        sl_ratelimit_decision d;
        sl_ratelimit_input in = {
            .peer_key = &r.peer, .headers = lookup, .headers_arg = &r, .now_ns = T0};
        if (sl_ratelimit_decide_at(w->rl, &in, &d) != 0) return (void *)1;
        if (d.status == 0) {
            w->allowed_ip[a]++;
            w->allowed_key[k]++;
        }
    }
    return NULL;
}

static void test_threads_no_leak(void **state)
{
    (void)state;
    sl_ratelimit_rule rules[] = {
        {.kind = SL_RATELIMIT_GLOBAL, .limit = 1, .burst = G_BURST},
        {.kind = SL_RATELIMIT_IP, .limit = 1, .burst = IP_BURST},
        {.kind = SL_RATELIMIT_APIKEY, .limit = 1, .burst = KEY_BURST},
    };
    sl_ratelimit *rl = make(rules, 3, NULL);
    pthread_t th[THREADS];
    worker w[THREADS];
    memset(w, 0, sizeof w);
    for (int i = 0; i < THREADS; i++) {
        w[i].rl = rl;
        w[i].id = i;
        assert_int_equal(pthread_create(&th[i], NULL, work, &w[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        void *rv;
        assert_int_equal(pthread_join(th[i], &rv), 0);
        assert_null(rv);
    }
    int total = 0;
    for (int a = 0; a < NIPS; a++) {
        int n = 0;
        for (int i = 0; i < THREADS; i++)
            n += w[i].allowed_ip[a];
        total += n;
        sl_ipkey k;
        char ip[32];
        snprintf(ip, sizeof ip, "192.0.2.%d", a + 1);
        sl_ipkey_parse(ip, strlen(ip), &k);
        assert_true(n <= IP_BURST);
        assert_true(sl_keyed_tokens_at(sl_ratelimit_keyed(rl, 1), k.b, 16, T0) ==
                    (double)(IP_BURST - n));
    }
    for (int k = 0; k < NKEYS; k++) {
        int n = 0;
        for (int i = 0; i < THREADS; i++)
            n += w[i].allowed_key[k];
        char key[8];
        snprintf(key, sizeof key, "k%d", k);
        assert_true(n <= KEY_BURST);
        assert_true(sl_keyed_tokens_at(sl_ratelimit_keyed(rl, 2), key, 2, T0) ==
                    (double)(KEY_BURST - n));
    }
    assert_true(sl_limiter_tokens_at(sl_ratelimit_limiter(rl, 0), T0) == (double)(G_BURST - total));
    /* The budgets really ran out and rejections really happened on both keyed rules. */
    assert_true(stats(rl, 1).rejected > 0);
    assert_true(stats(rl, 2).rejected > 0);
    assert_int_equal(stats(rl, 0).allowed, (uint64_t)total);
    assert_int_equal(stats(rl, 0).allowed + stats(rl, 1).rejected + stats(rl, 2).rejected,
                     THREADS * PER);
    sl_ratelimit_free(rl);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_allow_headers),
        cmocka_unit_test(test_429_exact),
        cmocka_unit_test(test_retry_after_never_zero),
        cmocka_unit_test(test_headers_switchable),
        cmocka_unit_test(test_problem_body),
        cmocka_unit_test(test_jitter),
        cmocka_unit_test(test_missing_key_401),
        cmocka_unit_test(test_tiers),
        cmocka_unit_test(test_rollback_vs_stacked),
        cmocka_unit_test(test_rollback_keyed),
        cmocka_unit_test(test_tightest_described),
        cmocka_unit_test(test_ipv6_grouping),
        cmocka_unit_test(test_sockaddr_peer),
        cmocka_unit_test(test_spoofed_xff),
        cmocka_unit_test(test_custom_key),
        cmocka_unit_test(test_dry_run),
        cmocka_unit_test(test_eviction_stats_and_full),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_threads_no_leak),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
