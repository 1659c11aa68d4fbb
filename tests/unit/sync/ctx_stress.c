/* sl_ctx under contention: threads build, cancel and release trees under shared parents that
 * other threads cancel and replace, register and stop hooks while deadlines fire on the timer
 * thread, and wait on a primitive's condvar through sl__cond_wait. Invariants checked:
 * every hook runs at most once; hook_stop == true means it never ran, false means it has run
 * to completion; every waiter is woken by its ctx. TSan/ASan/LSan check the rest. */
#include "harness.h"
#include "sync/sync_int.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#define NSHARED  8
#define NWORKERS 4
#define NWAITERS 2
#define RUN_MS   1500

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static sl_ctx *g_root;
static sl_ctx *g_shared[NSHARED]; /* guarded by g_mu */
static atomic_bool g_stop;
static atomic_long g_hooks_ran, g_hooks_stopped, g_iters, g_waits;

static unsigned rnd(unsigned *s)
{
    *s = *s * 1103515245u + 12345u;
    return (*s >> 16) & 0x7fff;
}

static sl_ctx *grab_shared(unsigned *seed)
{
    pthread_mutex_lock(&g_mu);
    sl_ctx *c = sl_ctx_ref(g_shared[rnd(seed) % NSHARED]);
    pthread_mutex_unlock(&g_mu);
    return c;
}

static void replace_shared(unsigned *seed)
{
    sl_ctx *fresh;
    assert_int_equal(sl_ctx_with_cancel(g_root, &fresh), 0);
    pthread_mutex_lock(&g_mu);
    unsigned i = rnd(seed) % NSHARED;
    sl_ctx *old = g_shared[i];
    g_shared[i] = fresh;
    pthread_mutex_unlock(&g_mu);
    sl_ctx_cancel(old); /* outside g_mu: hooks run here */
    sl_ctx_release(old);
}

struct hook_rec {
    atomic_int ran;
    sl_ctx_hook *h;
    bool registered;
};
static void count_hook(void *arg, int err)
{
    struct hook_rec *r = arg;
    if (err >= 0) fail_msg("hook got err %d", err);
    if (atomic_fetch_add(&r->ran, 1) != 0) fail_msg("hook ran twice");
    atomic_fetch_add(&g_hooks_ran, 1);
}

static const char g_key;

static void *worker(void *arg)
{
    unsigned seed = (unsigned)(uintptr_t)arg * 7919u + 1;
    while (!atomic_load(&g_stop)) {
        sl_ctx *chain[4];
        int n = 0;
        chain[n++] = grab_shared(&seed);
        int depth = 1 + (int)(rnd(&seed) % 3);
        for (int d = 0; d < depth; d++) {
            sl_ctx *c = NULL;
            switch (rnd(&seed) % 3) {
            case 0: assert_int_equal(sl_ctx_with_cancel(chain[n - 1], &c), 0); break;
            case 1: assert_int_equal(sl_ctx_with_value(chain[n - 1], &g_key, chain, &c), 0); break;
            default:
                assert_int_equal(sl_ctx_with_timeout(chain[n - 1], SL_US(rnd(&seed) % 2000), &c),
                                 0);
            }
            chain[n++] = c;
        }
        struct hook_rec recs[2] = {0};
        for (int i = 0; i < 2; i++) {
            if (rnd(&seed) % 2) continue;
            int rc = sl_ctx_on_done(chain[rnd(&seed) % n], count_hook, &recs[i], &recs[i].h);
            assert_true(rc == 0 || rc == 1);
            recs[i].registered = rc == 0;
        }
        switch (rnd(&seed) % 4) {
        case 0: sl_ctx_cancel(chain[rnd(&seed) % n]); break;
        case 1: sl_ctx_cancel_with(chain[n - 1], SL_EIO); break;
        case 2:
            if (rnd(&seed) % 8 == 0) replace_shared(&seed);
            break;
        default: break;
        }
        if (sl_ctx_value(chain[n - 1], &g_key) != NULL &&
            sl_ctx_value(chain[n - 1], &g_key) != chain)
            fail_msg("value lookup");
        for (int i = 0; i < 2; i++) {
            if (!recs[i].registered) continue;
            if (sl_ctx_hook_stop(recs[i].h)) {
                atomic_fetch_add(&g_hooks_stopped, 1);
                assert_int_equal(atomic_load(&recs[i].ran), 0);
            } else {
                assert_int_equal(atomic_load(&recs[i].ran), 1); /* stop waited for it */
            }
        }
        /* Release in a random order: children keep their parents alive. */
        while (n > 0) {
            int i = (int)(rnd(&seed) % (unsigned)n);
            sl_ctx_release(chain[i]);
            chain[i] = chain[--n];
        }
        for (int i = 0; i < 2; i++)
            if (!recs[i].registered) assert_true(atomic_load(&recs[i].ran) <= 1);
        atomic_fetch_add(&g_iters, 1);
    }
    return NULL;
}

/* A primitive whose predicate never becomes true: only the ctx can end the wait. A poker thread
 * broadcasts the condvar now and then to exercise spurious wakeups. */
struct prim {
    pthread_mutex_t mu;
    sl__cond cv;
};
static struct prim g_prim = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void *waiter(void *arg)
{
    unsigned seed = (unsigned)(uintptr_t)arg * 31u + 7;
    while (!atomic_load(&g_stop)) {
        sl_ctx *p = grab_shared(&seed), *c;
        assert_int_equal(sl_ctx_with_timeout(p, SL_US(100 + rnd(&seed) % 3000), &c), 0);
        pthread_mutex_lock(&g_prim.mu);
        int rc;
        while ((rc = sl__cond_wait(&g_prim.cv, &g_prim.mu, c)) == 0) {
        }
        pthread_mutex_unlock(&g_prim.mu);
        assert_true(rc < 0);
        assert_int_equal(rc, sl_ctx_err(c));
        sl_ctx_release(c);
        sl_ctx_release(p);
        atomic_fetch_add(&g_waits, 1);
    }
    return NULL;
}

static void *poker(void *arg)
{
    while (!atomic_load(&g_stop)) {
        pthread_mutex_lock(&g_prim.mu);
        sl__cond_broadcast(&g_prim.cv);
        pthread_mutex_unlock(&g_prim.mu);
        sl_ctx_wait_for(NULL, SL_US(200)); /* a parked pause, not a spin */
    }
    return NULL;
}

static void test_stress(void **state)
{
    assert_int_equal(sl_ctx_with_cancel(NULL, &g_root), 0);
    for (int i = 0; i < NSHARED; i++)
        assert_int_equal(sl_ctx_with_cancel(g_root, &g_shared[i]), 0);
    pthread_t w[NWORKERS], v[NWAITERS], pk;
    for (int i = 0; i < NWORKERS; i++)
        assert_int_equal(pthread_create(&w[i], NULL, worker, (void *)(uintptr_t)i), 0);
    for (int i = 0; i < NWAITERS; i++)
        assert_int_equal(pthread_create(&v[i], NULL, waiter, (void *)(uintptr_t)i), 0);
    assert_int_equal(pthread_create(&pk, NULL, poker, NULL), 0);
    sl_ctx_wait_for(NULL, SL_MS(RUN_MS)); /* the run's length: parked, not polling */
    atomic_store(&g_stop, true);
    for (int i = 0; i < NWORKERS; i++)
        pthread_join(w[i], NULL);
    for (int i = 0; i < NWAITERS; i++)
        pthread_join(v[i], NULL);
    pthread_join(pk, NULL);
    sl_ctx_cancel(g_root);
    for (int i = 0; i < NSHARED; i++)
        sl_ctx_release(g_shared[i]);
    sl_ctx_release(g_root);
    print_message("iterations %ld, hooks ran %ld, stopped %ld, waits %ld\n", atomic_load(&g_iters),
                  atomic_load(&g_hooks_ran), atomic_load(&g_hooks_stopped), atomic_load(&g_waits));
    assert_true(atomic_load(&g_iters) > 100);
    assert_true(atomic_load(&g_hooks_ran) > 0);
    assert_true(atomic_load(&g_hooks_stopped) > 0);
    assert_true(atomic_load(&g_waits) > 10);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_stress)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
