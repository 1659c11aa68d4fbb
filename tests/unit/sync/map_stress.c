/* sl_map under load: 4 threads mix every operation on overlapping keys for ~0.75 s, once with
 * rwlock reads and once with lockfree_reads.
 *
 * Model-consistent invariants checked:
 *   - counter keys are only ever changed by update (+1 to both halves of a 16-byte value): at
 *     the end each holds exactly the number of increments all threads made, and no reader ever
 *     sees the halves differ (no torn value);
 *   - churn keys are put/deleted/put_if_absent'ed by everyone with values that name the key:
 *     any value read belongs to the key it was read under;
 *   - ranges running concurrently visit every counter key (never deleted) exactly once. */
#include "harness.h"
#include "sluice/map.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define THREADS  4
#define COUNTERS 64
#define CHURN    512
#define RUN_MS   750 /* per read mode */

typedef struct pair {
    uint64_t a, b;
} pair;

typedef struct worker {
    sl_map *m;
    int id;
    unsigned seed;
    int64_t deadline;
    uint64_t incs[COUNTERS];
    long ops, ranges;
} worker;

static int incr_pair(void *value, bool exists, void *arg)
{
    pair p;
    memcpy(&p, value, sizeof p);
    if (p.a != p.b) return SL_EFAILED;
    p.a++;
    p.b++;
    memcpy(value, &p, sizeof p);
    return SL_MAP_STORE;
}

static int drop(void *value, bool exists, void *arg)
{
    return SL_MAP_DELETE;
}

typedef struct range_check {
    int seen[COUNTERS];
    bool bad;
} range_check;

static int check_entry(const void *key, size_t klen, const void *value, void *arg)
{
    range_check *rc = arg;
    pair p;
    memcpy(&p, value, sizeof p);
    unsigned n;
    char kind;
    char buf[64];
    if (klen >= sizeof buf) return rc->bad = true, 1;
    memcpy(buf, key, klen);
    buf[klen] = 0;
    if (sscanf(buf, "%c/%u", &kind, &n) != 2) return rc->bad = true, 1;
    if (kind == 'c') {
        if (n >= COUNTERS || p.a != p.b)
            rc->bad = true;
        else
            rc->seen[n]++;
    } else if (p.a != n) {
        rc->bad = true;
    }
    return 0;
}

static int key_of(char *buf, char kind, unsigned n)
{
    /* churn keys get long tails now and then, so long-key allocation is exercised too */
    if (kind == 'x' && n % 7 == 0) return snprintf(buf, 64, "x/%u/%040u", n, n);
    return snprintf(buf, 64, "%c/%u", kind, n);
}

static void *work(void *arg)
{
    worker *w = arg;
    char key[64];
    while (w->ops < 500 || sl_mono_ns() < w->deadline) { /* a floor: threads may start late */
        unsigned r = (unsigned)rand_r(&w->seed);
        unsigned what = r % 8, n = (r / 8);
        pair p = {0, 0}, got;
        if (what <= 2) {
            n %= COUNTERS;
            int len = key_of(key, 'c', n);
            assert_int_equal(sl_map_update(w->m, key, (size_t)len, incr_pair, NULL), 0);
            w->incs[n]++;
        } else if (what == 3) {
            n %= COUNTERS;
            int len = key_of(key, 'c', n);
            if (sl_map_get(w->m, key, (size_t)len, &got) == 0) assert_true(got.a == got.b);
        } else {
            n %= CHURN;
            int len = key_of(key, 'x', n);
            p.a = n;
            p.b = (uint64_t)w->id;
            int rc;
            switch (what) {
            case 4: assert_true(sl_map_put(w->m, key, (size_t)len, &p) >= 0); break;
            case 5:
                rc = sl_map_put_if_absent(w->m, key, (size_t)len, &p, &got);
                assert_true(rc == 0 || (rc == SL_EEXIST && got.a == n));
                break;
            case 6:
                rc = sl_map_delete(w->m, key, (size_t)len, &got);
                assert_true(rc == SL_ENOENT || (rc == 0 && got.a == n));
                break;
            default:
                if (r % 64 == 7) {
                    assert_int_equal(sl_map_update(w->m, key, (size_t)len, drop, NULL), 0);
                } else if (r % 512 == 15) {
                    range_check rcx;
                    memset(&rcx, 0, sizeof rcx);
                    assert_int_equal(sl_map_range(w->m, check_entry, &rcx), 0);
                    assert_false(rcx.bad);
                    for (int i = 0; i < COUNTERS; i++)
                        assert_int_equal(rcx.seen[i], 1);
                    w->ranges++;
                } else {
                    rc = sl_map_get(w->m, key, (size_t)len, &got);
                    assert_true(rc == SL_ENOENT || (rc == 0 && got.a == n));
                }
            }
        }
        w->ops++;
    }
    return NULL;
}

static void run_stress(bool lockfree)
{
    sl_map *m = NULL;
    sl_map_opts o = {.value_size = sizeof(pair), .shards = 8, .lockfree_reads = lockfree};
    assert_int_equal(sl_map_new(&o, &m), 0);
    /* Counters exist from the start, so every range must see each exactly once. */
    char key[64];
    for (unsigned n = 0; n < COUNTERS; n++) {
        int len = key_of(key, 'c', n);
        assert_int_equal(sl_map_put(m, key, (size_t)len, NULL), 1);
    }
    static worker w[THREADS];
    pthread_t t[THREADS];
    int64_t deadline = sl_mono_ns() + SL_MS(RUN_MS);
    for (int i = 0; i < THREADS; i++) {
        memset(&w[i], 0, sizeof w[i]);
        w[i] = (worker){.m = m, .id = i, .seed = (unsigned)i * 7919u + 1, .deadline = deadline};
        assert_int_equal(pthread_create(&t[i], NULL, work, &w[i]), 0);
    }
    long ops = 0, ranges = 0;
    for (int i = 0; i < THREADS; i++) {
        assert_int_equal(pthread_join(t[i], NULL), 0);
        ops += w[i].ops;
        ranges += w[i].ranges;
    }
    /* The whole-run invariant: each counter equals the increments made. */
    for (unsigned n = 0; n < COUNTERS; n++) {
        uint64_t want = 0;
        for (int i = 0; i < THREADS; i++)
            want += w[i].incs[n];
        pair p;
        int len = key_of(key, 'c', n);
        assert_int_equal(sl_map_get(m, key, (size_t)len, &p), 0);
        assert_int_equal(p.a, want);
        assert_int_equal(p.b, want);
    }
    size_t churn_live = 0;
    for (unsigned n = 0; n < CHURN; n++) {
        int len = key_of(key, 'x', n);
        churn_live += sl_map_get(m, key, (size_t)len, NULL) == 0;
    }
    assert_int_equal(sl_map_size(m), COUNTERS + churn_live);
    range_check rcx;
    memset(&rcx, 0, sizeof rcx);
    assert_int_equal(sl_map_range(m, check_entry, &rcx), 0);
    assert_false(rcx.bad);
    for (int i = 0; i < COUNTERS; i++)
        assert_int_equal(rcx.seen[i], 1);
    print_message("map stress (%s reads): %ld ops, %ld ranges, %zu churn keys live\n",
                  lockfree ? "lock-free" : "rwlock", ops, ranges, churn_live);
    assert_true(ops > 1000);
    sl_map_free(m);
}

static void test_stress(void **state)
{
    run_stress(false);
    run_stress(true);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stress),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
