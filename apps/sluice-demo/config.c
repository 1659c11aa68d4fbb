/* sluice-demo flags. Every flag is "--name value" (or "--name=value"); booleans take no value.
 * One table drives both the parser and --help, so the help cannot drift from what is parsed.
 * Numbers are checked strictly (the whole text must be a number in range): a typo in a limit
 * must not silently become 0. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "demo.h"

static const char *const tier_names[DEMO_NTIERS] = {"free", "pro", "enterprise"};

const char *demo_tier_name(int tier)
{
    return tier >= 0 && tier < DEMO_NTIERS ? tier_names[tier] : "?";
}

typedef enum { F_STR, F_INT, F_RATE, F_BURST, F_MS, F_BOOL, F_BYTES, F_SPECIAL } ftype;

typedef struct flag {
    const char *name;
    ftype type;
    size_t off; /* into demo_config */
    const char *help;
} flag;

#define OFF(f) offsetof(demo_config, f)

static const flag flags[] = {
    {"addr", F_STR, OFF(addr), "listen address (IPv4 or IPv6 literal) [127.0.0.1]"},
    {"port", F_INT, OFF(port), "listen port, 0 picks a free one [8080]"},
    {"reactors", F_INT, OFF(reactors), "reactor (event loop) threads, 0 = one per CPU [0]"},
    {"handler-workers", F_INT, OFF(handler_workers),
     "threads running pooled handlers, 0 = library default [0]"},
    {"job-workers", F_INT, OFF(job_workers), "background job threads [4]"},
    {"queue", F_INT, OFF(queue), "background job queue capacity, >= 2 [1024]"},
    {"global-rate", F_RATE, OFF(global_rate), "global limit, requests/s, 'inf' = none [1000]"},
    {"global-burst", F_BURST, OFF(global_burst), "global burst [2000]"},
    {"ip-rate", F_RATE, OFF(ip_rate), "per client IP limit, requests/s [50]"},
    {"ip-burst", F_BURST, OFF(ip_burst), "per client IP burst [100]"},
    {"free-rate", F_RATE, OFF(tier_rate[DEMO_TIER_FREE]), "API key tier free: requests/s [5]"},
    {"free-burst", F_BURST, OFF(tier_burst[DEMO_TIER_FREE]), "API key tier free: burst [10]"},
    {"pro-rate", F_RATE, OFF(tier_rate[DEMO_TIER_PRO]), "API key tier pro: requests/s [50]"},
    {"pro-burst", F_BURST, OFF(tier_burst[DEMO_TIER_PRO]), "API key tier pro: burst [100]"},
    {"enterprise-rate", F_RATE, OFF(tier_rate[DEMO_TIER_ENTERPRISE]),
     "API key tier enterprise: requests/s [500]"},
    {"enterprise-burst", F_BURST, OFF(tier_burst[DEMO_TIER_ENTERPRISE]),
     "API key tier enterprise: burst [1000]"},
    {"no-limits", F_BOOL, OFF(no_limits), "no rate limits at all (API keys still required)"},
    {"api-key", F_SPECIAL, 0,
     "KEY:TIER, an API key and its tier (free|pro|enterprise); repeatable. Unknown keys are "
     "free. Built in: demo-free, demo-pro, demo-enterprise"},
    {"no-demo-keys", F_SPECIAL, 0, "forget the built-in demo keys"},
    {"trusted-proxies", F_SPECIAL, 0,
     "comma-separated CIDRs whose --client-ip-header is believed [none]"},
    {"client-ip-header", F_SPECIAL, 0,
     "x-forwarded-for|forwarded: the one header trusted proxies set; the other is ignored "
     "[x-forwarded-for]"},
    {"email-ms", F_MS, OFF(email_ns), "simulated welcome e-mail send time, ms [200]"},
    {"webhook-ms", F_MS, OFF(webhook_ns),
     "ignored: webhooks are really delivered now (see --webhook-url); kept so that older "
     "command lines still start"},
    {"webhook-url", F_STR, OFF(webhook_url),
     "http(s):// target every webhook is POSTed to (never taken from a request) "
     "[this demo's POST /webhooks/receiver]"},
    {"webhook-timeout-ms", F_MS, OFF(webhook_timeout_ns),
     "deadline of one webhook delivery attempt, ms [10000]"},
    {"search-ms", F_MS, OFF(search_ns), "simulated search time, ms [1500]"},
    {"item-ms", F_MS, OFF(item_ns), "simulated time per batch item, ms [20]"},
    {"batch-limit", F_INT, OFF(batch_limit), "batch items processed at once (sl_group limit) [4]"},
    {"batch-max", F_INT, OFF(batch_max), "items accepted in one batch [100]"},
    {"users-max", F_INT, OFF(users_max),
     "users kept in memory; past it POST /users answers 507 [100000]"},
    {"users-max-body", F_BYTES, OFF(users_max_body), "POST /users body limit, bytes [4096]"},
    {"max-body", F_BYTES, OFF(max_body), "any request body limit, bytes [1048576]"},
    {"grace-ms", F_MS, OFF(grace_ns), "shutdown: time for in-flight requests, ms [10000]"},
    {"jobs-drain-ms", F_MS, OFF(jobs_drain_ns), "shutdown: time to drain the job queue, ms [5000]"},
    {"log-format", F_SPECIAL, 0, "text|json [text]"},
    {"log-level", F_SPECIAL, 0, "debug|info|warn|error [info]"},
    {"db", F_STR, OFF(db),
     "users' database: a SQLite file path, sqlite::memory:, postgres://... (shared by "
     "instances), or none (in memory) [sluice-demo.db]"},
    {"redis", F_STR, OFF(redis),
     "redis://host[:port]: keep background jobs in Redis Streams and check the per-IP limit "
     "in Redis, shared by instances [none]"},
    {"redis-fail", F_SPECIAL, 0,
     "--redis: when Redis is down the shared per-IP limit answers open|closed (503)|local "
     "(this instance alone) [open]"},
    {"redis-timeout-ms", F_MS, OFF(redis_timeout_ns),
     "--redis: a per-IP check Redis has not answered by then gets the --redis-fail answer, "
     "ms [50]"},
    {"jobs-visibility-ms", F_MS, OFF(visibility_ns),
     "--redis: a job left running this long (its instance died) is rerun elsewhere [30000]"},
    {"help", F_SPECIAL, 0, "this text"},
};

static void defaults(demo_config *c)
{
    memset(c, 0, sizeof *c);
    c->addr = "127.0.0.1";
    c->port = 8080;
    c->job_workers = 4;
    c->queue = 1024;
    c->global_rate = 1000;
    c->global_burst = 2000;
    c->ip_rate = 50;
    c->ip_burst = 100;
    c->tier_rate[DEMO_TIER_FREE] = 5, c->tier_burst[DEMO_TIER_FREE] = 10;
    c->tier_rate[DEMO_TIER_PRO] = 50, c->tier_burst[DEMO_TIER_PRO] = 100;
    c->tier_rate[DEMO_TIER_ENTERPRISE] = 500, c->tier_burst[DEMO_TIER_ENTERPRISE] = 1000;
    c->key_name[0] = "demo-free", c->key_tier[0] = DEMO_TIER_FREE;
    c->key_name[1] = "demo-pro", c->key_tier[1] = DEMO_TIER_PRO;
    c->key_name[2] = "demo-enterprise", c->key_tier[2] = DEMO_TIER_ENTERPRISE;
    c->nkeys = 3;
    c->email_ns = SL_MS(200);
    c->webhook_ns = SL_MS(100);
    c->search_ns = SL_MS(1500);
    c->item_ns = SL_MS(20);
    c->batch_limit = 4;
    c->batch_max = 100;
    c->users_max_body = 4096;
    c->users_max = 100000;
    c->max_body = 1 << 20;
    c->grace_ns = SL_SEC(10);
    c->jobs_drain_ns = SL_SEC(5);
    c->log_format = SL_LOG_TEXT;
    c->log_level = SL_LOG_INFO;
    c->visibility_ns = SL_SEC(30);
    c->redis_timeout_ns = SL_MS(50);
    c->db = "sluice-demo.db";
    c->webhook_timeout_ns = SL_SEC(10);
}

/* An absolute http(s) URL without spaces or control characters (curl checks the rest). */
static bool webhook_url_ok(const char *u)
{
    size_t n = strlen(u);
    if (n > 2048 || (strncmp(u, "http://", 7) && strncmp(u, "https://", 8))) return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)u[i] <= ' ' || u[i] == 0x7f) return false;
    return n > 8;
}

/* redis://host[:port][/db] (db is ignored: the demo's keys have their own prefix). */
static int parse_redis_url(demo_config *c)
{
    const char *u = c->redis;
    if (strncmp(u, "redis://", 8)) return -1;
    u += 8;
    size_t hl = strcspn(u, ":/");
    if (hl == 0 || hl >= sizeof c->redis_host) return -1;
    memcpy(c->redis_host, u, hl);
    c->redis_host[hl] = 0;
    c->redis_port = 6379;
    if (u[hl] == ':') {
        char *end;
        long p = strtol(u + hl + 1, &end, 10);
        if (end == u + hl + 1 || p <= 0 || p > 65535 || (*end && *end != '/')) return -1;
        c->redis_port = (int)p;
    }
    return 0;
}

void demo_config_usage(FILE *out)
{
    fprintf(out, "usage: sluice-demo [flags]\n\n"
                 "The sluice demo service: users, webhooks, search, batch, rate limits, metrics.\n"
                 "Flags (defaults in brackets):\n");
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++) {
        const flag *f = &flags[i];
        const char *arg =
            f->type == F_BOOL || !strcmp(f->name, "help") || !strcmp(f->name, "no-demo-keys")
                ? ""
                : " V";
        char left[40];
        snprintf(left, sizeof left, "--%s%s", f->name, arg);
        fprintf(out, "  %-22s %s\n", left, f->help);
    }
    fprintf(out, "\nSIGINT/SIGTERM: graceful shutdown (requests, then jobs), summary on stdout.\n");
}

static int bad(const char *name, const char *v, const char *why)
{
    fprintf(stderr, "sluice-demo: --%s %s: %s (see --help)\n", name, v ? v : "", why);
    return -1;
}

static bool parse_ll(const char *v, long long lo, long long hi, long long *out)
{
    char *end;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    if (errno || end == v || *end || n < lo || n > hi) return false;
    *out = n;
    return true;
}

static int set_keys(demo_config *c, const char *v)
{
    const char *colon = strrchr(v, ':');
    if (!colon || colon == v) return bad("api-key", v, "want KEY:TIER");
    int tier = -1;
    for (int t = 0; t < DEMO_NTIERS; t++)
        if (!strcmp(colon + 1, tier_names[t])) tier = t;
    if (tier < 0) return bad("api-key", v, "tier must be free, pro or enterprise");
    if (c->nkeys == DEMO_MAX_KEYS) return bad("api-key", v, "too many keys");
    /* The key text is cut out of argv in place: argv outlives the config. */
    *(char *)colon = '\0';
    c->key_name[c->nkeys] = v;
    c->key_tier[c->nkeys++] = tier;
    return 0;
}

static int set_proxies(demo_config *c, const char *v)
{
    c->nproxies = 0;
    const char *p = v;
    while (*p) {
        const char *e = strchr(p, ',');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n > 0) {
            if (c->nproxies == DEMO_MAX_PROXIES) return bad("trusted-proxies", v, "too many");
            if (sl_cidr_parse(p, n, &c->proxies[c->nproxies]) < 0)
                return bad("trusted-proxies", v, "not a CIDR list");
            c->nproxies++;
        }
        p += n + (e != NULL);
    }
    return 0;
}

static int set_special(demo_config *c, const char *name, const char *v)
{
    if (!strcmp(name, "api-key")) return set_keys(c, v);
    if (!strcmp(name, "trusted-proxies")) return set_proxies(c, v);
    if (!strcmp(name, "client-ip-header")) {
        if (!strcasecmp(v, "x-forwarded-for"))
            c->client_ip_header = SL_CLIENTIP_XFF;
        else if (!strcasecmp(v, "forwarded"))
            c->client_ip_header = SL_CLIENTIP_FORWARDED;
        else
            return bad(name, v, "want x-forwarded-for or forwarded");
        return 0;
    }
    if (!strcmp(name, "redis-fail")) {
        if (!strcmp(v, "open"))
            c->redis_fail = 0;
        else if (!strcmp(v, "closed"))
            c->redis_fail = 1;
        else if (!strcmp(v, "local"))
            c->redis_fail = 2;
        else
            return bad(name, v, "want open, closed or local");
        return 0;
    }
    if (!strcmp(name, "log-format")) {
        if (!strcmp(v, "text"))
            c->log_format = SL_LOG_TEXT;
        else if (!strcmp(v, "json"))
            c->log_format = SL_LOG_JSON;
        else
            return bad(name, v, "want text or json");
        return 0;
    }
    if (!strcmp(name, "log-level")) {
        static const struct {
            const char *n;
            sl_log_level l;
        } lv[] = {{"debug", SL_LOG_DEBUG},
                  {"info", SL_LOG_INFO},
                  {"warn", SL_LOG_WARN},
                  {"error", SL_LOG_ERROR}};
        for (size_t i = 0; i < 4; i++)
            if (!strcasecmp(v, lv[i].n)) {
                c->log_level = lv[i].l;
                return 0;
            }
        return bad(name, v, "want debug, info, warn or error");
    }
    return bad(name, v, "unknown flag");
}

static int set(demo_config *c, const flag *f, const char *v)
{
    char *base = (char *)c;
    long long n;
    switch (f->type) {
    case F_STR: *(const char **)(base + f->off) = v; return 0;
    case F_INT:
        if (!parse_ll(v, 0, 1 << 20, &n)) return bad(f->name, v, "want an integer 0..1048576");
        *(int *)(base + f->off) = (int)n;
        return 0;
    case F_BURST:
        if (!parse_ll(v, 0, INT32_MAX, &n)) return bad(f->name, v, "want an integer >= 0");
        *(int64_t *)(base + f->off) = n;
        return 0;
    case F_MS:
        if (!parse_ll(v, 0, 86400000, &n)) return bad(f->name, v, "want milliseconds");
        *(int64_t *)(base + f->off) = SL_MS(n);
        return 0;
    case F_BYTES:
        if (!parse_ll(v, 1, 1LL << 30, &n)) return bad(f->name, v, "want bytes, 1..1 GiB");
        if (f->off == OFF(max_body))
            c->max_body = (uint64_t)n;
        else
            c->users_max_body = (size_t)n;
        return 0;
    case F_RATE: {
        double r;
        if (!strcasecmp(v, "inf")) {
            r = SL_RATE_INF;
        } else {
            char *end;
            r = strtod(v, &end);
            if (end == v || *end || !(r >= 0) || isinf(r)) return bad(f->name, v, "want a rate");
        }
        *(double *)(base + f->off) = r;
        return 0;
    }
    case F_BOOL: *(bool *)(base + f->off) = true; return 0;
    case F_SPECIAL: return set_special(c, f->name, v);
    }
    return -1;
}

static bool takes_value(const flag *f)
{
    return f->type != F_BOOL && strcmp(f->name, "help") && strcmp(f->name, "no-demo-keys");
}

int demo_config_parse(demo_config *cfg, int argc, char **argv)
{
    defaults(cfg);
    bool builtin_keys = true;
    for (int i = 1; i < argc; i++) {
        char *a = argv[i];
        if (strncmp(a, "--", 2)) return bad(a, NULL, "not a flag");
        char *name = a + 2, *v = strchr(name, '=');
        size_t nlen = v ? (size_t)(v - name) : strlen(name);
        const flag *f = NULL;
        for (size_t k = 0; k < sizeof flags / sizeof flags[0]; k++)
            if (strlen(flags[k].name) == nlen && !strncmp(flags[k].name, name, nlen)) f = &flags[k];
        if (!f) return bad(name, NULL, "unknown flag");
        if (!strcmp(f->name, "help")) return 1;
        if (!strcmp(f->name, "no-demo-keys")) {
            /* Keys given before this flag stay; the three built-in ones go. */
            if (!builtin_keys) continue;
            builtin_keys = false;
            memmove(cfg->key_name, cfg->key_name + 3, (cfg->nkeys - 3) * sizeof cfg->key_name[0]);
            memmove(cfg->key_tier, cfg->key_tier + 3, (cfg->nkeys - 3) * sizeof cfg->key_tier[0]);
            cfg->nkeys -= 3;
            continue;
        }
        if (!takes_value(f)) {
            if (v) return bad(f->name, v + 1, "takes no value");
        } else if (v) {
            v++;
        } else if (i + 1 < argc) {
            v = argv[++i];
        } else {
            return bad(f->name, NULL, "needs a value");
        }
        if (set(cfg, f, v) < 0) return -1;
    }
    if (cfg->job_workers < 1 || cfg->batch_limit < 1 || cfg->batch_max < 1)
        return bad("job-workers/batch-limit/batch-max", NULL, "must be >= 1");
    /* sl_pool's ring needs two slots at least (a one-slot ring cannot tell full from empty). */
    if (cfg->queue < 2) return bad("queue", NULL, "must be >= 2");
    if (cfg->port > 65535) return bad("port", NULL, "must be <= 65535");
    if (cfg->redis && parse_redis_url(cfg) < 0)
        return bad("redis", cfg->redis, "want redis://host[:port]");
    if (cfg->visibility_ns < SL_MS(100)) return bad("jobs-visibility-ms", NULL, "must be >= 100");
    if (cfg->redis_timeout_ns < SL_MS(1) || cfg->redis_timeout_ns > SL_SEC(60))
        return bad("redis-timeout-ms", NULL, "must be 1..60000");
    if (cfg->webhook_url && !webhook_url_ok(cfg->webhook_url))
        return bad("webhook-url", cfg->webhook_url, "want http://host[:port]/path or https://...");
    if (cfg->webhook_timeout_ns <= 0) return bad("webhook-timeout-ms", NULL, "must be >= 1");
    return 0;
}
