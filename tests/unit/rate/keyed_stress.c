/* sl_keyed under threads (label stress: runs under TSan in `make test-race`): two threads
 * hammer one hot key while each also inserts half a million distinct keys through a table
 * that must evict to keep up. The hot key is asked at one fixed instant, so exactly `burst`
 * of its requests may pass, whatever the interleaving; and the table never exceeds max_keys. */
#include "harness.h"
#include "sluice/keyed.h"

#include <pthread.h>
#include <string.h>

#define T0 SL_SEC(1000)

enum { PER_THREAD = 500000, HOT_BURST = 1000, MAX_KEYS = 50000 };

typedef struct worker {
    sl_keyed *k;
    uint32_t base;
    int64_t hot_allowed;
    int64_t errors;
} worker;

static void *worker_main(void *p)
{
    worker *w = p;
    static const uint8_t hot[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 1};
    uint8_t key[16];
    memcpy(key, hot, 16);
    for (uint32_t j = 0; j < PER_THREAD; j++) {
        int rc = sl_keyed_allow_n_at(w->k, hot, 16, 1, T0);
        if (rc == 1) w->hot_allowed++;
        uint32_t v = w->base + j;
        memcpy(key + 12, &v, 4);
        key[11] = 0xfe; /* never the hot key */
        rc = sl_keyed_allow_n_at(w->k, key, 16, 1, T0 + SL_US(j));
        if (rc < 0) w->errors++;
    }
    return NULL;
}

static void test_hot_key_and_a_million_keys(void **state)
{
    sl_keyed_tier tier = {1000, HOT_BURST};
    sl_keyed_config cfg = {
        .tiers = &tier, .ntiers = 1, .max_keys = MAX_KEYS, .shards = 16, .idle_ttl_ns = SL_MS(10)};
    sl_keyed *k;
    assert_int_equal(sl_keyed_new(&cfg, &k), 0);
    worker w[2] = {{k, 0, 0, 0}, {k, PER_THREAD, 0, 0}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&th[i], NULL, worker_main, &w[i]), 0);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(w[0].hot_allowed + w[1].hot_allowed, HOT_BURST);
    assert_int_equal(w[0].errors + w[1].errors, 0);
    sl_keyed_stats st;
    sl_keyed_stats_get(k, &st);
    assert_true(st.keys <= MAX_KEYS);
    assert_int_equal(st.misses, 2 * PER_THREAD + 1);
    sl_keyed_free(k);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hot_key_and_a_million_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
