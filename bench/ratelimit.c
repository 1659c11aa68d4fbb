/* What does one rate-limit decision cost? sl_ratelimit_decide_at with a global, a per-IP and
 * a per-API-key rule, on the allow path (headers for the tightest rule built) and on the 429
 * path (rejected by the last rule, so two reservations are rolled back, plus the body and
 * six headers), next to the bare cost of the three limiter calls it composes, and the client
 * address found behind two trusted proxies. Each row is the median of 5 runs of the
 * measuring thread's CPU time per operation (CLOCK_THREAD_CPUTIME_ID): the machine is shared,
 * so wall time would mostly measure other jobs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "sluice/sluice.h"
#include "sluice/keyed.h"
#include "sluice/limiter.h"
#include "sluice/ratelimit.h"

#define RUNS  5
#define N     200000
#define NIPS  1024
#define NKEYS 64

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return v[n / 2];
}

static void row(const char *name, double value, const char *unit, const char *note)
{
    printf("| %s | %.1f | %s | %s |\n", name, value, unit, note);
}

static int64_t cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static volatile int64_t g_sink;

typedef struct req {
    sl_ipkey peer;
    const char *xff;
    char key[16];
} req;

static size_t lookup(void *arg, const char *name, sl_ratelimit_str *out, size_t cap)
{
    req *r = arg;
    const char *v = NULL;
    if (!strcasecmp(name, "X-API-Key"))
        v = r->key;
    else if (!strcasecmp(name, "X-Forwarded-For"))
        v = r->xff;
    if (!v) return 0;
    if (cap) out[0] = (sl_ratelimit_str){v, strlen(v)};
    return 1;
}

static req reqs[NIPS];

static void make_reqs(void)
{
    for (int i = 0; i < NIPS; i++) {
        uint8_t v4[4] = {198, 51, (uint8_t)(i >> 8), (uint8_t)i};
        sl_ipkey_from_v4(v4, &reqs[i].peer);
        snprintf(reqs[i].key, sizeof reqs[i].key, "key-%d", i % NKEYS);
        reqs[i].xff = NULL;
    }
}

static sl_ratelimit *policy3(double g_limit, int64_t g_burst, double ip_limit, int64_t ip_burst,
                             bool headers);

static sl_ratelimit *policy(double ip_limit, int64_t ip_burst, bool headers)
{
    return policy3(1e12, 1000000000, ip_limit, ip_burst, headers);
}

static sl_ratelimit *policy3(double g_limit, int64_t g_burst, double ip_limit, int64_t ip_burst,
                             bool headers)
{
    sl_ratelimit_rule rules[] = {
        {.kind = SL_RATELIMIT_GLOBAL, .limit = g_limit, .burst = g_burst},
        {.kind = SL_RATELIMIT_APIKEY, .limit = 1e9, .burst = 1000000000},
        {.kind = SL_RATELIMIT_IP, .limit = ip_limit, .burst = ip_burst},
    };
    sl_ratelimit_config cfg = {.rules = rules, .nrules = 3, .headers_set = !headers, .headers = 0};
    sl_ratelimit *rl;
    if (sl_ratelimit_new(&cfg, &rl)) exit(1);
    return rl;
}

/* want: the status every measured decision must have (-1: any, for warm-ups). */
static double bench_decide(sl_ratelimit *rl, int want)
{
    int64_t now = sl_now_ns(), bad = 0;
    sl_ratelimit_decision d;
    int64_t t0 = cpu_ns();
    for (int i = 0; i < N; i++) {
        req *r = &reqs[i % NIPS];
        sl_ratelimit_input in = {
            .peer_key = &r->peer, .headers = lookup, .headers_arg = r, .now_ns = now + i};
        sl_ratelimit_decide_at(rl, &in, &d);
        bad += want >= 0 && d.status != want;
    }
    double ns = (double)(cpu_ns() - t0) / N;
    if (bad) {
        fprintf(stderr, "bench_ratelimit: %lld decisions had the wrong status\n", (long long)bad);
        exit(1);
    }
    return ns;
}

static double run_allow(bool headers)
{
    sl_ratelimit *rl = policy(1e9, 1000000000, headers);
    bench_decide(rl, 0); /* every key in the tables */
    double ns = bench_decide(rl, 0);
    sl_ratelimit_free(rl);
    return ns;
}

static double run_429(void)
{
    /* Every address spends its one token in the warm-up; then each decision takes from the
     * global and key rules, is refused by the IP rule, and gives both back. */
    sl_ratelimit *rl = policy(1e-9, 1, true);
    bench_decide(rl, -1);
    double ns = bench_decide(rl, 429);
    sl_ratelimit_free(rl);
    return ns;
}

static double run_429_first(void)
{
    /* The global budget is spent: each decision is one look at it and the answer. */
    sl_ratelimit *rl = policy3(1e-9, 1, 1e9, 1000000000, true);
    bench_decide(rl, -1);
    double ns = bench_decide(rl, 429);
    sl_ratelimit_free(rl);
    return ns;
}

static double run_bare(void)
{
    sl_limiter *g;
    sl_keyed *ip, *key;
    sl_keyed_tier t = {1e9, 1000000000};
    sl_keyed_config kc = {.tiers = &t, .ntiers = 1};
    if (sl_limiter_new(1e12, 1000000000, &g) || sl_keyed_new(&kc, &ip) || sl_keyed_new(&kc, &key))
        exit(1);
    int64_t now = sl_now_ns(), ok = 0, t0 = 0;
    for (int pass = 0; pass < 2; pass++) {
        t0 = cpu_ns();
        for (int i = 0; i < N; i++) {
            req *r = &reqs[i % NIPS];
            ok += sl_limiter_allow_n_at(g, 1, now + i);
            ok += sl_keyed_allow_n_at(key, r->key, strlen(r->key), 1, now + i);
            ok += sl_keyed_allow_n_at(ip, r->peer.b, 16, 1, now + i);
        }
    }
    double ns = (double)(cpu_ns() - t0) / N;
    g_sink = ok;
    sl_limiter_free(g);
    sl_keyed_free(ip);
    sl_keyed_free(key);
    return ns;
}

static double run_clientip(void)
{
    sl_cidr proxies;
    if (sl_cidr_parse("10.0.0.0/8", 10, &proxies)) exit(1);
    sl_clientip_config cfg = {&proxies, 1, SL_CLIENTIP_XFF | SL_CLIENTIP_FORWARDED};
    req r = {.xff = "203.0.113.9, 198.51.100.7, 10.1.2.3, 10.0.0.2"};
    sl_ipkey peer, out;
    if (sl_ipkey_parse("10.0.0.1", 8, &peer)) exit(1);
    int64_t acc = 0, t0 = cpu_ns();
    for (int i = 0; i < N; i++) {
        acc += sl_clientip_resolve(&cfg, &peer, lookup, &r, &out);
        acc += out.b[15];
    }
    double ns = (double)(cpu_ns() - t0) / N;
    g_sink = acc;
    return ns;
}

int main(void)
{
    make_reqs();
    double allow[RUNS], quiet[RUNS], rej[RUNS], rej1[RUNS], bare[RUNS], cip[RUNS];
    for (int i = 0; i < RUNS; i++) {
        allow[i] = run_allow(true);
        quiet[i] = run_allow(false);
        rej[i] = run_429();
        rej1[i] = run_429_first();
        bare[i] = run_bare();
        cip[i] = run_clientip();
    }
    row("ratelimit decide, allow (global+key+ip, 1024 IPs, 64 keys)", median(allow, RUNS), "ns/op",
        "headers for the tightest rule built");
    row("ratelimit decide, allow, rate headers off", median(quiet, RUNS), "ns/op",
        "the composition alone");
    row("ratelimit decide, 429 by the 3rd rule (2 rollbacks)", median(rej, RUNS), "ns/op",
        "Retry-After, 5 rate headers, JSON body");
    row("ratelimit decide, 429 by the 1st rule", median(rej1, RUNS), "ns/op",
        "the flood path: no reservation made");
    row("bare limiter calls (1 sl_limiter + 2 sl_keyed allow)", median(bare, RUNS), "ns/op",
        "what the policy composes, no headers");
    row("client ip behind 2 trusted proxies (XFF, 4 entries)", median(cip, RUNS), "ns/op",
        "sl_clientip_resolve");
    return 0;
}
