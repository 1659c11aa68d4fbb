/* sl_group under load: several threads call go / try_go / go_ctx on one limited group at once,
 * some tasks fail, some run nested groups on the same small executor. Checked: every accepted
 * task ran exactly once (count and sum), the limit was never exceeded, wait returned the (one)
 * error and only after every task ended, and every thread was joined. Bounded: a fixed amount of
 * work per round, ~1 s plain. */
#include "harness.h"
#include "sluice/group.h"

#include <pthread.h>
#include <stdatomic.h>

enum { SUBMITTERS = 3, PER_SUBMITTER = 10000, LIMIT = 4 };

typedef struct shared {
    sl_executor *ex;
    sl_group *g;
    atomic_int inflight, max_inflight;
    atomic_long ran, sum, accepted, accepted_sum;
} shared;

static int leaf(sl_ctx *ctx, void *arg)
{
    atomic_fetch_add((atomic_long *)arg, 1);
    return 0;
}

static int task(sl_ctx *ctx, void *arg)
{
    shared *s = *(shared **)arg;
    long id = ((long *)arg)[1];
    int n = atomic_fetch_add(&s->inflight, 1) + 1;
    int m = atomic_load(&s->max_inflight);
    while (n > m && !atomic_compare_exchange_weak(&s->max_inflight, &m, n)) {
    }
    int rc = 0;
    if (id % 101 == 0) {
        /* A nested group on the same executor, waited inside the task. */
        sl_group *inner;
        atomic_long leaves = 0;
        if (sl_group_new_on(ctx, s->ex, &inner) == 0) {
            sl_group_set_limit(inner, 2);
            for (int i = 0; i < 5; i++)
                sl_group_go(inner, leaf, &leaves);
            rc = sl_group_wait(inner);
            sl_group_free(inner);
            if (rc == 0 && atomic_load(&leaves) != 5) rc = SL_EFAILED;
        }
    }
    if (id == 1236) rc = SL_EIO; /* the one failure (a go(), never refused) */
    atomic_fetch_add(&s->ran, 1);
    atomic_fetch_add(&s->sum, id);
    atomic_fetch_sub(&s->inflight, 1);
    return rc;
}

typedef struct submitter {
    shared *s;
    int idx;
    pthread_t th;
    long args[PER_SUBMITTER][2];
} submitter;

static void *submit_main(void *arg)
{
    submitter *sb = arg;
    for (int i = 0; i < PER_SUBMITTER; i++) {
        long id = (long)sb->idx * PER_SUBMITTER + i;
        sb->args[i][0] = (long)(intptr_t)sb->s;
        sb->args[i][1] = id;
        int rc;
        switch (i % 3) {
        case 0: rc = sl_group_go(sb->s->g, task, sb->args[i]); break;
        case 1: rc = sl_group_try_go(sb->s->g, task, sb->args[i]); break;
        default: rc = sl_group_go_ctx(sb->s->g, task, sb->args[i], NULL); break;
        }
        if (rc == 0) {
            atomic_fetch_add(&sb->s->accepted, 1);
            atomic_fetch_add(&sb->s->accepted_sum, id);
        } else {
            assert_int_equal(rc, SL_EFULL); /* only try_go may refuse */
        }
    }
    return NULL;
}

static void test_group_stress(void **state)
{
    static submitter subs[SUBMITTERS]; /* large: off the stack */
    for (int round = 0; round < 4; round++) {
        shared s = {0};
        assert_int_equal(sl_executor_new(2 + (size_t)round, &s.ex), 0);
        assert_int_equal(sl_group_new_on(NULL, s.ex, &s.g), 0);
        assert_int_equal(sl_group_set_limit(s.g, LIMIT), 0);
        for (int i = 0; i < SUBMITTERS; i++) {
            subs[i].s = &s;
            subs[i].idx = i;
            assert_int_equal(pthread_create(&subs[i].th, NULL, submit_main, &subs[i]), 0);
        }
        for (int i = 0; i < SUBMITTERS; i++)
            assert_int_equal(pthread_join(subs[i].th, NULL), 0);
        int err = sl_group_wait(s.g);
        assert_int_equal(atomic_load(&s.ran), atomic_load(&s.accepted));
        assert_int_equal(atomic_load(&s.sum), atomic_load(&s.accepted_sum));
        assert_int_equal(atomic_load(&s.inflight), 0);
        assert_true(atomic_load(&s.max_inflight) <= LIMIT);
        assert_int_equal(err, SL_EIO);
        assert_true(sl_ctx_done(sl_group_ctx(s.g)));
        sl_group_free(s.g);
        sl_executor_free(s.ex);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_group_stress),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
