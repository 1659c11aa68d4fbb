/* sl_keyed: per-key buckets with sl_limiter's semantics, tiers, idle eviction on a test clock,
 * the max_keys bound and what a full table answers, eviction that cannot reset a limit, long
 * keys, and the memory bound with 10M distinct keys (1M under the sanitizers, which are 10-20x
 * slower). */
#include "harness.h"
#include "sluice/keyed.h"
#include "sluice/limiter.h"
#include "rate/rate_int.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define T0 SL_SEC(1000)

/* A 16-byte key: IPv4 a.b.c.d mapped into IPv6 (::ffff:a.b.c.d), from a 32-bit number. */
typedef struct ip16 {
    uint8_t b[16];
} ip16;

static ip16 ip(uint32_t v)
{
    ip16 k;
    memset(k.b, 0, 10);
    k.b[10] = k.b[11] = 0xff;
    k.b[12] = (uint8_t)(v >> 24);
    k.b[13] = (uint8_t)(v >> 16);
    k.b[14] = (uint8_t)(v >> 8);
    k.b[15] = (uint8_t)v;
    return k;
}

static sl_keyed *new_table(double limit, int64_t burst, size_t max_keys, int shards, int64_t ttl,
                           sl_keyed_full on_full)
{
    sl_keyed_tier tier = {limit, burst};
    sl_keyed_config cfg = {.tiers = &tier,
                           .ntiers = 1,
                           .max_keys = max_keys,
                           .shards = shards,
                           .idle_ttl_ns = ttl,
                           .on_full = on_full,
                           .overflow = {10, 2}};
    sl_keyed *k = NULL;
    assert_int_equal(sl_keyed_new(&cfg, &k), 0);
    assert_non_null(k);
    return k;
}

static sl_keyed_stats stats(sl_keyed *k)
{
    sl_keyed_stats st;
    sl_keyed_stats_get(k, &st);
    return st;
}

static void test_per_key_buckets(void **state)
{
    sl_keyed *k = new_table(10, 3, 1000, 4, SL_SEC(60), SL_KEYED_FULL_LIMITED);
    ip16 a = ip(1), b = ip(2);
    assert_true(sl_keyed_tokens_at(k, a.b, 16, T0) == 3); /* new key: full */
    for (int i = 0; i < 3; i++)
        assert_int_equal(sl_keyed_allow_n_at(k, a.b, 16, 1, T0), 1);
    assert_int_equal(sl_keyed_allow_n_at(k, a.b, 16, 1, T0), 0);
    assert_int_equal(sl_keyed_allow_n_at(k, b.b, 16, 3, T0), 1); /* b has its own bucket */
    assert_int_equal(sl_keyed_allow_n_at(k, a.b, 16, 1, T0 + SL_MS(100)), 1);
    assert_int_equal(sl_keyed_allow_n_at(k, a.b, 16, 4, T0 + SL_SEC(9)), 0); /* n > burst */
    sl_keyed_stats st = stats(k);
    assert_int_equal(st.keys, 2);
    assert_int_equal(st.misses, 2);
    assert_int_equal(st.hits, 5);
    assert_int_equal(sl_keyed_remove(k, a.b, 16), 1);
    assert_int_equal(sl_keyed_remove(k, a.b, 16), 0);
    assert_int_equal(stats(k).keys, 1);
    /* Bad keys. */
    assert_int_equal(sl_keyed_allow_n_at(k, NULL, 3, 1, T0), SL_EINVAL);
    static char big[SL_KEYED_MAX_KEY + 1];
    assert_int_equal(sl_keyed_allow_n_at(k, big, sizeof big, 1, T0), SL_EINVAL);
    assert_int_equal(sl_keyed_allow_n_at(k, NULL, 0, 1, T0), 1); /* the empty key is a key */
    sl_keyed_free(k);
}

/* A key behaves exactly as an sl_limiter fed the same operations (one algorithm). */
static void test_same_as_limiter(void **state)
{
    sl_keyed *k = new_table(7.7, 5, 100, 1, SL_SEC(60), SL_KEYED_FULL_LIMITED);
    sl_limiter *lim;
    assert_int_equal(sl_limiter_new(7.7, 5, &lim), 0);
    uint64_t x = 12345;
    int64_t t = T0;
    const char *key = "api-key-0123456789abcdefghij"; /* long: stored out of line */
    size_t len = strlen(key);
    sl_keyed_reservation kr[4];
    sl_reservation lr[4];
    memset(kr, 0, sizeof kr);
    memset(lr, 0, sizeof lr);
    for (int i = 0; i < 5000; i++) {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        unsigned r = (unsigned)(x >> 33);
        t += (int64_t)(r % 200) * SL_MS(1) - (r % 17 == 0 ? SL_MS(150) : 0);
        int64_t n = (int64_t)(r % 7);
        int slot = (int)(r % 4);
        switch (r % 3) {
        case 0:
            assert_int_equal(sl_keyed_allow_n_at(k, key, len, n, t),
                             sl_limiter_allow_n_at(lim, n, t));
            break;
        case 1:
            assert_int_equal(sl_keyed_reserve_n_at(k, key, len, n, t, &kr[slot]),
                             sl_limiter_reserve_n_at(lim, n, t, &lr[slot]));
            assert_int_equal(kr[slot].r.time_to_act, lr[slot].time_to_act);
            break;
        default:
            sl_keyed_cancel_at(k, key, len, &kr[slot], t);
            sl_reservation_cancel_at(&lr[slot], t);
            kr[slot].r.ok = lr[slot].ok = false;
        }
        assert_true(sl_keyed_tokens_at(k, key, len, t) == sl_limiter_tokens_at(lim, t));
    }
    sl_limiter_free(lim);
    sl_keyed_free(k);
}

/* Entries idle for the ttl vanish as new keys arrive; drained ones stay until refilled. */
static void test_idle_eviction(void **state)
{
    sl_test_clock_install(T0);
    sl_keyed *k = new_table(10, 5, 1000, 1, SL_SEC(1), SL_KEYED_FULL_LIMITED);
    for (uint32_t i = 0; i < 50; i++)
        assert_int_equal(sl_keyed_allow(k, ip(i).b, 16), 1);
    ip16 drained = ip(7);
    assert_int_equal(sl_keyed_allow_n(k, drained.b, 16, 4), 1); /* 0 left */
    assert_int_equal(stats(k).keys, 50);

    /* Before the ttl nothing goes, however many inserts sweep. */
    sl_test_clock_advance(SL_MS(900));
    for (uint32_t i = 1000; i < 1100; i++)
        assert_int_equal(sl_keyed_allow(k, ip(i).b, 16), 1);
    assert_int_equal(stats(k).evictions_idle, 0);
    assert_true(sl__keyed_has(k, ip(3).b, 16));

    /* After it, the first 50 go within one turn of the cursor: each insert sweeps two slots
     * and adds at most one, so 150 inserts cover the at most 300 slots in use. */
    sl_test_clock_advance(SL_MS(200));
    for (uint32_t i = 2000; i < 2150; i++)
        assert_int_equal(sl_keyed_allow(k, ip(i).b, 16), 1);
    sl_keyed_stats st = stats(k);
    assert_int_equal(st.evictions_idle, 50);
    assert_false(sl__keyed_has(k, ip(3).b, 16));
    assert_false(sl__keyed_has(k, drained.b, 16)); /* refilled after 0.5 s: gone too */
    assert_true(sl__keyed_has(k, ip(2000).b, 16));
    assert_int_equal(st.keys, 100 + 150);
    sl_keyed_free(k);
    sl_test_clock_uninstall();
}

/* A drained bucket is not evicted by the ttl before it refilled: its debt survives. */
static void test_idle_eviction_waits_for_refill(void **state)
{
    sl_keyed *k = new_table(0.1, 5, 1000, 1, SL_SEC(1), SL_KEYED_FULL_LIMITED);
    ip16 a = ip(1);
    assert_int_equal(sl_keyed_allow_n_at(k, a.b, 16, 5, T0), 1);
    int64_t t = T0 + SL_SEC(10); /* idle 10 ttls, but refilled only 1 of 5 tokens */
    for (uint32_t i = 100; i < 200; i++)
        assert_int_equal(sl_keyed_allow_n_at(k, ip(i).b, 16, 1, t), 1);
    assert_true(sl__keyed_has(k, a.b, 16));
    assert_true(sl_keyed_tokens_at(k, a.b, 16, t) == 1);
    t = T0 + SL_SEC(51); /* refilled: now it may go */
    for (uint32_t i = 200; i < 400; i++)
        assert_int_equal(sl_keyed_allow_n_at(k, ip(i).b, 16, 1, t), 1);
    assert_false(sl__keyed_has(k, a.b, 16));
    sl_keyed_free(k);
}

/* A full shard of fresh entries: new keys are answered per on_full; old keys are unaffected. */
static void test_full_policies(void **state)
{
    sl_keyed_full pol[] = {SL_KEYED_FULL_LIMITED, SL_KEYED_FULL_ERROR, SL_KEYED_FULL_OVERFLOW};
    for (int p = 0; p < 3; p++) {
        sl_keyed *k = new_table(1, 2, 8, 1, SL_SEC(3600), pol[p]);
        for (uint32_t i = 0; i < 8; i++)
            assert_int_equal(sl_keyed_allow_n_at(k, ip(i).b, 16, 1, T0), 1);
        assert_int_equal(stats(k).keys, 8);
        int want = pol[p] == SL_KEYED_FULL_ERROR ? SL_EFULL : 0;
        if (pol[p] == SL_KEYED_FULL_OVERFLOW) {
            /* The shared overflow bucket (10/s, burst 2) takes two events among all new keys. */
            assert_int_equal(sl_keyed_allow_n_at(k, ip(100).b, 16, 1, T0), 1);
            assert_int_equal(sl_keyed_allow_n_at(k, ip(101).b, 16, 1, T0), 1);
            sl_keyed_reservation r;
            assert_int_equal(sl_keyed_reserve_n_at(k, ip(102).b, 16, 1, T0, &r), 1);
            assert_int_equal(sl_reservation_delay_from(&r.r, T0), SL_MS(100));
            sl_keyed_cancel_at(k, ip(102).b, 16, &r, T0); /* back to the overflow bucket */
            assert_int_equal(sl_keyed_allow_n_at(k, ip(103).b, 16, 1, T0), 0);
        } else {
            assert_int_equal(sl_keyed_allow_n_at(k, ip(100).b, 16, 1, T0), want);
            sl_keyed_reservation r;
            assert_int_equal(sl_keyed_reserve_n_at(k, ip(100).b, 16, 1, T0, &r), want);
            assert_false(r.r.ok);
            assert_int_equal(sl_reservation_delay_from(&r.r, T0), SL_FOREVER);
        }
        assert_false(sl__keyed_has(k, ip(100).b, 16));
        assert_true(stats(k).rejections >= 1);
        assert_int_equal(stats(k).keys, 8);
        /* Keys in the table still work. */
        assert_int_equal(sl_keyed_allow_n_at(k, ip(3).b, 16, 1, T0), 1);
        assert_int_equal(sl_keyed_allow_n_at(k, ip(3).b, 16, 1, T0), 0);
        /* Once entries refilled (1 token at 1/s), a new key gets in. */
        assert_int_equal(sl_keyed_allow_n_at(k, ip(200).b, 16, 1, T0 + SL_SEC(2)), 1);
        assert_true(sl__keyed_has(k, ip(200).b, 16));
        assert_int_equal(stats(k).keys, 8);
        assert_int_equal(stats(k).evictions_full + stats(k).evictions_idle, 1);
        sl_keyed_free(k);
    }
}

/* When full, the idlest refilled entry goes first. */
static void test_full_evicts_idlest(void **state)
{
    sl_keyed *k = new_table(100, 1, 8, 1, SL_SEC(3600), SL_KEYED_FULL_LIMITED);
    /* Key i last used at T0 + i s; key 5 is touched again last: the idlest is key 0. */
    for (uint32_t i = 0; i < 8; i++)
        assert_int_equal(sl_keyed_allow_n_at(k, ip(i).b, 16, 1, T0 + SL_SEC(i)), 1);
    assert_int_equal(sl_keyed_allow_n_at(k, ip(0).b, 16, 1, T0 + SL_SEC(9)), 1);
    int64_t t = T0 + SL_SEC(20);
    assert_int_equal(sl_keyed_allow_n_at(k, ip(100).b, 16, 1, t), 1);
    assert_false(sl__keyed_has(k, ip(1).b, 16)); /* idlest (key 0 was touched at 9 s) */
    assert_true(sl__keyed_has(k, ip(0).b, 16));
    assert_int_equal(sl_keyed_allow_n_at(k, ip(101).b, 16, 1, t), 1);
    assert_false(sl__keyed_has(k, ip(2).b, 16));
    assert_int_equal(stats(k).evictions_full, 2);
    sl_keyed_free(k);
}

/* An attacker churning keys cannot push a drained key out to reset its limit. */
static void test_churn_does_not_reset(void **state)
{
    sl_keyed *k = new_table(1, 5, 16, 1, SL_MS(1), SL_KEYED_FULL_LIMITED);
    ip16 victim = ip(0xdead);
    assert_int_equal(sl_keyed_allow_n_at(k, victim.b, 16, 5, T0), 1);
    int64_t t = T0;
    /* The attacker's keys ask for 0 tokens: their buckets stay full, so they are evicted as
     * fast as they come, the best case for pushing the victim out. */
    for (uint32_t i = 0; i < 100000; i++) {
        t += SL_US(10); /* 1 s of churn in all: less than the 5 s to refill */
        assert_int_equal(sl_keyed_allow_n_at(k, ip(i).b, 16, 0, t), 1);
    }
    assert_true(sl__keyed_has(k, victim.b, 16));
    /* Exactly what 1 s refilled: one token. */
    assert_int_equal(sl_keyed_allow_n_at(k, victim.b, 16, 1, t), 1);
    assert_int_equal(sl_keyed_allow_n_at(k, victim.b, 16, 1, t), 0);
    assert_true(stats(k).evictions_full + stats(k).evictions_idle > 1000); /* churn evicts */
    sl_keyed_free(k);
}

enum { FREE_TIER, PRO_TIER, ENTERPRISE_TIER };

static int tier_by_prefix(void *arg, const void *key, size_t len)
{
    int *calls = arg;
    (*calls)++;
    if (len >= 4 && memcmp(key, "ent_", 4) == 0) return ENTERPRISE_TIER;
    if (len >= 4 && memcmp(key, "pro_", 4) == 0) return PRO_TIER;
    if (len >= 4 && memcmp(key, "bad_", 4) == 0) return 99; /* out of range: default */
    return -1;
}

static void test_tiers(void **state)
{
    const sl_keyed_tier tiers[] = {{10, 20}, {100, 200}, {1000, 2000}};
    int calls = 0;
    sl_keyed_config cfg = {.tiers = tiers,
                           .ntiers = 3,
                           .default_tier = FREE_TIER,
                           .tier_fn = tier_by_prefix,
                           .tier_arg = &calls,
                           .max_keys = 1000};
    sl_keyed *k;
    assert_int_equal(sl_keyed_new(&cfg, &k), 0);
    struct {
        const char *key;
        int64_t burst;
    } cases[] = {{"free_user_1234567890", 20},
                 {"pro_abcdefghijklmnopqrstuvwxyz", 200},
                 {"ent_0123456789", 2000},
                 {"bad_tier", 20},
                 {"anon", 20}};
    for (size_t i = 0; i < 5; i++) {
        size_t len = strlen(cases[i].key);
        assert_true(sl_keyed_tokens_at(k, cases[i].key, len, T0) == (double)cases[i].burst);
        assert_int_equal(sl_keyed_allow_n_at(k, cases[i].key, len, cases[i].burst, T0), 1);
        assert_int_equal(sl_keyed_allow_n_at(k, cases[i].key, len, 1, T0), 0);
    }
    /* The tier is asked when the entry is created (tokens_at asks too), not on every hit. */
    int before = calls;
    assert_int_equal(sl_keyed_allow_n_at(k, "ent_0123456789", 14, 1, T0 + SL_MS(1)), 1);
    assert_int_equal(calls, before);
    sl_keyed_free(k);

    /* Bad configs. */
    sl_keyed *bad = (sl_keyed *)0x1;
    cfg.default_tier = 3;
    assert_int_equal(sl_keyed_new(&cfg, &bad), SL_EINVAL);
    cfg.default_tier = 0;
    cfg.shards = 3;
    assert_int_equal(sl_keyed_new(&cfg, &bad), SL_EINVAL);
    cfg.shards = 0;
    cfg.ntiers = 0;
    assert_int_equal(sl_keyed_new(&cfg, &bad), SL_EINVAL);
    assert_ptr_equal(bad, (sl_keyed *)0x1);
    assert_int_equal(sl_keyed_new(NULL, &bad), SL_EINVAL);
    sl_keyed_free(NULL);
}

/* Limit-0 and Inf tiers keep sl_limiter's semantics per key. */
static void test_zero_and_inf_tiers(void **state)
{
    const sl_keyed_tier tiers[] = {{0, 3}, {SL_RATE_INF, 0}};
    sl_keyed_config cfg = {.tiers = tiers, .ntiers = 2, .max_keys = 4, .shards = 1};
    sl_keyed *k;
    assert_int_equal(sl_keyed_new(&cfg, &k), 0);
    assert_int_equal(sl_keyed_allow_n_at(k, "a", 1, 2, T0), 1);
    assert_int_equal(sl_keyed_allow_n_at(k, "a", 1, 2, T0 + SL_SEC(100)), 0);
    assert_int_equal(sl_keyed_allow_n_at(k, "a", 1, 1, T0 + SL_SEC(100)), 1);
    assert_int_equal(sl_keyed_allow_n_at(k, "a", 1, 1, T0 + SL_SEC(200)), 0);
    assert_true(sl_keyed_tokens_at(k, "a", 1, T0) == 0);
    /* Never refills, so never evicted: a full table of spent keys rejects newcomers. */
    for (int i = 0; i < 3; i++)
        assert_int_equal(sl_keyed_allow_n_at(k, &"bcd"[i], 1, 3, T0), 1);
    assert_int_equal(sl_keyed_allow_n_at(k, "z", 1, 1, T0 + SL_SEC(1000000)), 0);
    sl_keyed_free(k);

    cfg.default_tier = 1;
    assert_int_equal(sl_keyed_new(&cfg, &k), 0);
    assert_int_equal(sl_keyed_allow_n_at(k, "a", 1, 1000, T0), 1);
    sl_keyed_free(k);
}

/* The index doubles as keys arrive, with removals (free slots) interleaved: every key stays
 * findable, removed ones stay gone, and the stats agree. */
static void test_index_growth(void **state)
{
    enum { N = 6000 };
    static bool present[N];
    sl_keyed *k = new_table(10, 3, 8192, 1, SL_SEC(3600), SL_KEYED_FULL_LIMITED);
    for (uint32_t i = 0; i < N; i++) {
        assert_int_equal(sl_keyed_allow_n_at(k, ip(i).b, 16, 1, T0), 1);
        present[i] = true;
        if (i % 3 == 0) { /* remove an older key: frees a slot mid-growth */
            uint32_t j = i / 2;
            assert_int_equal(sl_keyed_remove(k, ip(j).b, 16), present[j]);
            present[j] = false;
        }
    }
    uint64_t held = 0;
    for (uint32_t i = 0; i < N; i++) {
        assert_int_equal(sl__keyed_has(k, ip(i).b, 16), present[i]);
        held += present[i];
        /* A held key answers from its own used bucket (2 left), a removed one as new (3). */
        assert_true(sl_keyed_tokens_at(k, ip(i).b, 16, T0) == (present[i] ? 2 : 3));
    }
    assert_int_equal(stats(k).keys, held);
    sl_keyed_free(k);
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

#if defined(SLUICE_TSAN) || defined(SLUICE_ASAN)
#define CHURN_KEYS 1000000u /* the sanitizers are 10-20x slower: 1M keys, same bound */
#else
#define CHURN_KEYS 10000000u
#endif

/* 10M distinct keys through a 32k-key table: never more than max_keys entries, and resident
 * memory grows by at most max_keys x (entry + index) + 1 MiB. */
/* reserve_n_max_at: Go's reserveN with a maximum wait, one lookup, reporting the bucket. A
 * zero-wait grant acts now, and cancelling it at the same instant restores every token. */
static void test_reserve_max_wait(void **state)
{
    (void)state;
    sl_keyed *k = new_table(10, 3, 1000, 4, SL_SEC(60), SL_KEYED_FULL_LIMITED);
    ip16 a = ip(7);
    sl_keyed_reservation r[3];
    for (int i = 0; i < 3; i++) {
        assert_int_equal(sl_keyed_reserve_n_max_at(k, a.b, 16, 1, T0, 0, &r[i]), 1);
        assert_true(r[i].r.ok);
        assert_int_equal(r[i].r.time_to_act, T0);
        assert_true(r[i].tokens == (double)(2 - i));
        assert_true(r[i].limit == 10);
        assert_int_equal(r[i].burst, 3);
        assert_int_equal(r[i].wait, 0);
    }
    /* Empty: refused with a zero wait, the wait for one token reported, nothing taken. */
    sl_keyed_reservation no;
    assert_int_equal(sl_keyed_reserve_n_max_at(k, a.b, 16, 1, T0, 0, &no), 0);
    assert_false(no.r.ok);
    assert_int_equal(no.wait, SL_MS(100));
    assert_true(no.tokens == 0);
    assert_true(sl_keyed_tokens_at(k, a.b, 16, T0) == 0);
    /* A wait within the maximum is granted and borrows from the future. */
    sl_keyed_reservation fut;
    assert_int_equal(sl_keyed_reserve_n_max_at(k, a.b, 16, 1, T0, SL_MS(100), &fut), 1);
    assert_int_equal(fut.r.time_to_act, T0 + SL_MS(100));
    assert_true(fut.tokens == -1);
    sl_keyed_cancel_at(k, a.b, 16, &fut, T0);
    assert_true(sl_keyed_tokens_at(k, a.b, 16, T0) == 0);
    /* Rollback of the zero-wait grants, latest first: exact. */
    for (int i = 2; i >= 0; i--)
        sl_keyed_cancel_at(k, a.b, 16, &r[i], T0);
    assert_true(sl_keyed_tokens_at(k, a.b, 16, T0) == 3);
    /* n > burst: never. */
    assert_int_equal(sl_keyed_reserve_n_max_at(k, a.b, 16, 4, T0, SL_FOREVER, &no), 0);
    assert_int_equal(no.wait, SL_FOREVER);
    assert_true(no.tokens == 3);
    sl_keyed_free(k);
}

/* A full table refusing a new key still reports the key's tier. */
static void test_reserve_max_wait_full(void **state)
{
    (void)state;
    sl_keyed *k = new_table(10, 3, 1, 1, SL_SEC(60), SL_KEYED_FULL_LIMITED);
    ip16 a = ip(1), b = ip(2);
    sl_keyed_reservation r;
    assert_int_equal(sl_keyed_reserve_n_max_at(k, a.b, 16, 1, T0, 0, &r), 1);
    assert_int_equal(sl_keyed_reserve_n_max_at(k, b.b, 16, 1, T0, 0, &r), 0);
    assert_int_equal(r.wait, 0);
    assert_true(r.limit == 10);
    assert_int_equal(r.burst, 3);
    sl_keyed_free(k);
    /* Overflow: the shared bucket decides and is reported. */
    k = new_table(10, 3, 1, 1, SL_SEC(60), SL_KEYED_FULL_OVERFLOW);
    assert_int_equal(sl_keyed_reserve_n_max_at(k, a.b, 16, 1, T0, 0, &r), 1);
    assert_int_equal(sl_keyed_reserve_n_max_at(k, b.b, 16, 1, T0, 0, &r), 1);
    assert_true(r.limit == 10);
    assert_int_equal(r.burst, 2);
    assert_true(r.tokens == 1);
    sl_keyed_cancel_at(k, b.b, 16, &r, T0);
    assert_int_equal(sl_keyed_reserve_n_max_at(k, b.b, 16, 2, T0, 0, &r), 1);
    assert_int_equal(sl_keyed_reserve_n_max_at(k, b.b, 16, 1, T0, 0, &r), 0);
    assert_int_equal(r.wait, SL_MS(100));
    sl_keyed_free(k);
}

static void test_bound_10m_keys(void **state)
{
    const size_t max_keys = 32768;
    long rss0 = rss_bytes();
    /* 1000/s, burst 1: an entry refills 1 ms after use; time moves 1 us per key. */
    /* The ttl is longer than the run, so room is made by full-shard eviction. */
    sl_keyed *k = new_table(1000, 1, max_keys, 16, SL_SEC(60), SL_KEYED_FULL_LIMITED);
    int64_t t = T0;
    uint64_t limited = 0;
    for (uint32_t i = 0; i < CHURN_KEYS; i++) {
        t += SL_US(1);
        ip16 a = ip(i);
        int rc = sl_keyed_allow_n_at(k, a.b, 16, 1, t);
        assert_true(rc >= 0);
        limited += rc == 0;
        if ((i & 0xffff) == 0) assert_true(stats(k).keys <= max_keys);
    }
    sl_keyed_stats st = stats(k);
    long grown = rss_bytes() - rss0;
    print_message("keyed: %u keys through max_keys %zu: keys %llu, evictions idle %llu full %llu, "
                  "rejections %llu, limited %llu, rss +%ld KiB\n",
                  CHURN_KEYS, max_keys, (unsigned long long)st.keys,
                  (unsigned long long)st.evictions_idle, (unsigned long long)st.evictions_full,
                  (unsigned long long)st.rejections, (unsigned long long)limited, grown / 1024);
    assert_true(st.keys <= max_keys);
    assert_int_equal(st.misses, CHURN_KEYS);
    assert_true(st.evictions_idle + st.evictions_full >= CHURN_KEYS - max_keys);
#ifndef SLUICE_TSAN
    /* (Under TSan every touched byte also maps 4+ bytes of shadow into RSS: no RSS bound.) */
    assert_true(grown <= (long)(max_keys * (SL_KEYED_ENTRY_BYTES + 8)) + (1L << 20));
#endif
    assert_true(st.bytes <= max_keys * (SL_KEYED_ENTRY_BYTES + 8) + 64 * 1024);
    sl_keyed_free(k);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_per_key_buckets),
        cmocka_unit_test(test_same_as_limiter),
        cmocka_unit_test(test_idle_eviction),
        cmocka_unit_test(test_idle_eviction_waits_for_refill),
        cmocka_unit_test(test_full_policies),
        cmocka_unit_test(test_full_evicts_idlest),
        cmocka_unit_test(test_churn_does_not_reset),
        cmocka_unit_test(test_tiers),
        cmocka_unit_test(test_zero_and_inf_tiers),
        cmocka_unit_test(test_index_growth),
        cmocka_unit_test(test_reserve_max_wait),
        cmocka_unit_test(test_reserve_max_wait_full),
        cmocka_unit_test(test_bound_10m_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
