/* How fast is a rate-limit decision? sl_limiter's allow (with and without reading the clock,
 * alone and with two threads on one limiter) and sl_keyed's allow (one hot key, 10k keys,
 * 1M keys), plus resident bytes per key at 1M IPv4 keys. Each row is the median of 5 runs.
 * Times are the measuring thread's CPU time (CLOCK_THREAD_CPUTIME_ID) per operation: the
 * machine is shared, and wall time would mostly measure other jobs' time slices.
 * Go's x/time/rate v0.3.0 for comparison (its BenchmarkAllowN, same machine class): 42 ns at
 * a fixed time, ~102 ns with time.Now(). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sluice/sluice.h"
#include "sluice/limiter.h"
#include "sluice/keyed.h"
#include "rate/rate_int.h"

#define RUNS 5

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

static volatile int64_t g_sink;

static int64_t cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static double bench_clock(void)
{
    const int n = 300000;
    int64_t t0 = cpu_ns(), acc = 0;
    for (int i = 0; i < n; i++)
        acc += sl_now_ns();
    g_sink = acc;
    return (double)(cpu_ns() - t0) / n;
}

static double bench_allow(bool with_clock)
{
    sl_limiter *lim;
    if (sl_limiter_new(1e12, 1000000000, &lim)) exit(1);
    const int n = 300000;
    int64_t now = sl_now_ns(), ok = 0;
    int64_t t0 = cpu_ns();
    if (with_clock)
        for (int i = 0; i < n; i++)
            ok += sl_limiter_allow(lim);
    else
        for (int i = 0; i < n; i++)
            ok += sl_limiter_allow_n_at(lim, 1, now);
    double ns = (double)(cpu_ns() - t0) / n;
    g_sink = ok;
    sl_limiter_free(lim);
    return ns;
}

/* The lock choice: an uncontended lock + unlock pair, spinlock (used) vs pthread mutex. */
static double bench_lock(bool mutex)
{
    static sl__spin spin;
    static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    static volatile int64_t shared;
    const int n = 1000000;
    int64_t t0 = cpu_ns();
    for (int i = 0; i < n; i++) {
        if (mutex) {
            pthread_mutex_lock(&mu);
            shared++;
            pthread_mutex_unlock(&mu);
        } else {
            sl__spin_lock(&spin);
            shared++;
            sl__spin_unlock(&spin);
        }
    }
    return (double)(cpu_ns() - t0) / n;
}

typedef struct par {
    sl_limiter *lim;
    int n;
    int64_t ns;
} par;

static void *par_main(void *p)
{
    par *a = p;
    int64_t t0 = cpu_ns(), ok = 0;
    for (int i = 0; i < a->n; i++)
        ok += sl_limiter_allow(a->lim);
    a->ns = cpu_ns() - t0;
    g_sink = ok;
    return NULL;
}

/* ns per allow per thread, two threads on one limiter. */
static double bench_allow_2threads(void)
{
    sl_limiter *lim;
    if (sl_limiter_new(1e12, 1000000000, &lim)) exit(1);
    par a[2] = {{lim, 300000, 0}, {lim, 300000, 0}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        pthread_create(&th[i], NULL, par_main, &a[i]);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    sl_limiter_free(lim);
    return (double)(a[0].ns + a[1].ns) / 2 / 300000;
}

static void ip_key(uint8_t k[16], uint32_t v)
{
    memset(k, 0, 10);
    k[10] = k[11] = 0xff;
    k[12] = (uint8_t)(v >> 24);
    k[13] = (uint8_t)(v >> 16);
    k[14] = (uint8_t)(v >> 8);
    k[15] = (uint8_t)v;
}

static sl_keyed *new_keyed(size_t max_keys)
{
    sl_keyed_tier tier = {1e9, 1000000000};
    sl_keyed_config cfg = {.tiers = &tier, .ntiers = 1, .max_keys = max_keys};
    sl_keyed *k;
    if (sl_keyed_new(&cfg, &k)) exit(1);
    return k;
}

/* ns per keyed allow over nkeys keys already in the table, in random order. */
static double bench_keyed(sl_keyed *k, uint32_t nkeys, bool with_clock)
{
    const int n = 200000;
    uint8_t key[16];
    uint64_t x = 88172645463325252ULL;
    int64_t now = sl_now_ns(), ok = 0;
    int64_t t0 = cpu_ns();
    for (int i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        ip_key(key, nkeys == 1 ? 7 : (uint32_t)(x % nkeys));
        ok += with_clock ? sl_keyed_allow(k, key, 16) : sl_keyed_allow_n_at(k, key, 16, 1, now);
    }
    double ns = (double)(cpu_ns() - t0) / n;
    g_sink = ok;
    return ns;
}

static long rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long size = 0, rss = 0;
    if (f) {
        if (fscanf(f, "%ld %ld", &size, &rss) != 2) rss = 0;
        fclose(f);
    }
    return rss * sysconf(_SC_PAGESIZE);
}

/* One dependent random load over 64 MB (a pointer chase): the floor for any lookup whose
 * data is not in cache, which a 1M-key table's is not. */
static double bench_dram_miss(void)
{
    size_t n = (64u << 20) / sizeof(uint32_t);
    uint32_t *a = malloc(n * sizeof *a);
    if (!a) exit(1);
    for (size_t i = 0; i < n; i++)
        a[i] = (uint32_t)i;
    uint64_t x = 88172645463325252ULL;
    for (size_t i = n - 1; i > 0; i--) { /* Sattolo: one cycle through every element */
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        size_t j = (size_t)(x % i);
        uint32_t t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
    const int steps = 300000;
    uint32_t p = 0;
    int64_t t0 = cpu_ns();
    for (int i = 0; i < steps; i++)
        p = a[p];
    double ns = (double)(cpu_ns() - t0) / steps;
    g_sink = p;
    free(a);
    return ns;
}

int main(void)
{
    double v[RUNS];
    /* The 1M-key table first, before any other allocation can leave reusable heap behind and
     * hide part of its growth. Its timing row is printed after the small-table rows. */
    uint8_t key[16];
    long rss0 = rss_bytes();
    sl_keyed *k = new_keyed(1 << 20);
    const uint32_t million = 1000000;
    for (uint32_t i = 0; i < million; i++) {
        ip_key(key, i);
        (void)sl_keyed_allow(k, key, 16);
    }
    long grown = rss_bytes() - rss0;
    sl_keyed_stats st;
    sl_keyed_stats_get(k, &st);
    char note[160];
    snprintf(note, sizeof note, "RSS growth / keys held (%llu); 56 B entry + index; target <= 64",
             (unsigned long long)st.keys);
    double bytes_per_key = (double)grown / (double)st.keys;
    sl_keyed *big = k;

    for (int r = 0; r < RUNS; r++)
        v[r] = bench_clock();
    row("sl_now_ns (clock read alone)", median(v, RUNS), "ns", "vDSO CLOCK_MONOTONIC, kvm-clock");
    for (int r = 0; r < RUNS; r++)
        v[r] = bench_allow(true);
    row("limiter allow, uncontended, with clock", median(v, RUNS), "ns/op",
        "target <= 25; Go 102 (time.Now)");
    for (int r = 0; r < RUNS; r++)
        v[r] = bench_allow(false);
    row("limiter allow_at, uncontended, fixed time", median(v, RUNS), "ns/op", "Go 42");
    for (int r = 0; r < RUNS; r++)
        v[r] = bench_lock(false);
    row("lock+unlock uncontended: spinlock (used)", median(v, RUNS), "ns", "");
    for (int r = 0; r < RUNS; r++)
        v[r] = bench_lock(true);
    row("lock+unlock uncontended: pthread mutex", median(v, RUNS), "ns",
        "not used: no faster inside allow (docs/limiter.md)");
    for (int r = 0; r < RUNS; r++)
        v[r] = bench_allow_2threads();
    row("limiter allow, 2 threads on one limiter", median(v, RUNS), "ns/op per thread",
        "CPU time incl. spinning");

    k = new_keyed(1 << 20);
    ip_key(key, 7);
    (void)sl_keyed_allow(k, key, 16);
    for (int r = 0; r < RUNS; r++)
        v[r] = bench_keyed(k, 1, true);
    row("keyed allow, 1 hot key, with clock", median(v, RUNS), "ns/op", "target <= 60");
    for (int r = 0; r < RUNS; r++)
        v[r] = bench_keyed(k, 1, false);
    row("keyed allow_at, 1 hot key", median(v, RUNS), "ns/op", "");
    sl_keyed_free(k);

    k = new_keyed(1 << 20);
    for (uint32_t i = 0; i < 10000; i++) {
        ip_key(key, i);
        (void)sl_keyed_allow(k, key, 16);
    }
    for (int r = 0; r < RUNS; r++)
        v[r] = bench_keyed(k, 10000, true);
    row("keyed allow, 10k keys, random order, with clock", median(v, RUNS), "ns/op", "");
    sl_keyed_free(k);

    for (int r = 0; r < RUNS; r++)
        v[r] = bench_keyed(big, million, true);
    row("keyed allow, 1M keys, random order, with clock", median(v, RUNS), "ns/op",
        "target <= 150");
    row("memory: one dependent random load over 64 MB", bench_dram_miss(), "ns",
        "pointer chase; the floor for an uncached lookup (keyed needs two)");
    row("keyed bytes per IPv4 key at 1M keys", bytes_per_key, "bytes", note);
    sl_keyed_free(big);
    return 0;
}
