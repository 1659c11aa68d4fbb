/* sl_chan under load: many producers and consumers, plain and select-based, on rendezvous,
 * tiny and larger buffers, with the channels closed either after the producers finish or while
 * they are still sending. Every value whose send returned 0 must be received exactly once: the
 * test compares count, sum and a mixed-hash sum of everything sent and received. Each round runs
 * for a bounded real time, so the test takes ~2 s plain and stays bounded under TSan. */
#include "harness.h"
#include "sluice/chan.h"

#include <pthread.h>
#include <stdatomic.h>

enum { PRODUCERS = 4, CONSUMERS = 4 };

typedef struct tally {
    uint64_t count, sum, mix;
} tally;

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return x;
}

static void tally_add(tally *t, uint64_t v)
{
    t->count++;
    t->sum += v;
    t->mix += mix64(v);
}

typedef struct round {
    sl_chan *a, *b;
    int64_t stop_ns;        /* producers stop sending at this sl_mono_ns() */
    atomic_int running;     /* producers still sending */
    atomic_ullong received; /* values received so far, all consumers */
    tally sent[PRODUCERS];
    tally got[CONSUMERS];
} round;

typedef struct worker {
    round *r;
    int id;
    pthread_t th;
} worker;

static void *producer(void *arg)
{
    worker *w = arg;
    round *r = w->r;
    uint64_t seq = 0;
    for (;;) {
        /* At least 64 values each, even if the thread starts after the deadline. */
        if (seq >= 64 && (seq & 63) == 0 && sl_mono_ns() > r->stop_ns) break;
        uint64_t v = ((uint64_t)(w->id + 1) << 40) | seq++;
        int rc;
        if (w->id % 2 == 0) {
            rc = sl_chan_send(r->a, &v, NULL);
        } else {
            sl_chan_case cs[2] = {{r->a, SL_CHAN_SEND, &v}, {r->b, SL_CHAN_SEND, &v}};
            int err = 0;
            rc = sl_chan_select(cs, 2, &err, NULL);
            if (rc >= 0) rc = err;
        }
        if (rc == SL_ECLOSED) break;
        assert_int_equal(rc, 0);
        tally_add(&r->sent[w->id], v);
    }
    atomic_fetch_sub(&r->running, 1);
    return NULL;
}

static void *consumer(void *arg)
{
    worker *w = arg;
    round *r = w->r;
    sl_chan *both[2] = {r->a, r->b};
    for (;;) {
        uint64_t v;
        int rc = w->id == 0 ? sl_chan_recv(r->a, &v, NULL) : sl_chan_select_recv(both, 2, &v, NULL);
        if (rc == SL_ECLOSED) break;
        assert_true(rc >= 0);
        tally_add(&r->got[w->id], v);
        atomic_fetch_add_explicit(&r->received, 1, memory_order_relaxed);
    }
    return NULL;
}

static void run_round(size_t cap, bool close_early, int64_t dur_ms)
{
    round r = {0};
    assert_int_equal(sl_chan_new(sizeof(uint64_t), cap, &r.a), 0);
    assert_int_equal(sl_chan_new(sizeof(uint64_t), cap, &r.b), 0);
    r.stop_ns = sl_mono_ns() + SL_MS(dur_ms) * (close_early ? 100 : 1);
    atomic_store(&r.running, PRODUCERS);
    worker p[PRODUCERS], c[CONSUMERS];
    for (int i = 0; i < CONSUMERS; i++) {
        c[i] = (worker){.r = &r, .id = i};
        assert_int_equal(pthread_create(&c[i].th, NULL, consumer, &c[i]), 0);
    }
    for (int i = 0; i < PRODUCERS; i++) {
        p[i] = (worker){.r = &r, .id = i};
        assert_int_equal(pthread_create(&p[i].th, NULL, producer, &p[i]), 0);
    }
    if (close_early) {
        /* Close while producers are still sending: they must stop with SL_ECLOSED. */
        assert_true(SL_WAIT_UNTIL(atomic_load(&r.received) >= 20000, 60000));
        assert_int_equal(atomic_load(&r.running), PRODUCERS);
    } else {
        assert_true(SL_WAIT_UNTIL(atomic_load(&r.running) == 0, 60000));
    }
    assert_int_equal(sl_chan_close(r.a), 0);
    assert_int_equal(sl_chan_close(r.b), 0);
    for (int i = 0; i < PRODUCERS; i++)
        assert_int_equal(pthread_join(p[i].th, NULL), 0);
    for (int i = 0; i < CONSUMERS; i++)
        assert_int_equal(pthread_join(c[i].th, NULL), 0);

    tally sent = {0}, got = {0};
    for (int i = 0; i < PRODUCERS; i++) {
        sent.count += r.sent[i].count;
        sent.sum += r.sent[i].sum;
        sent.mix += r.sent[i].mix;
    }
    for (int i = 0; i < CONSUMERS; i++) {
        got.count += r.got[i].count;
        got.sum += r.got[i].sum;
        got.mix += r.got[i].mix;
    }
    assert_true(sent.count > 0);
    assert_int_equal(got.count, sent.count);
    assert_int_equal(got.sum, sent.sum);
    assert_int_equal(got.mix, sent.mix);
    assert_int_equal(sl_chan_len(r.a) + sl_chan_len(r.b), 0);
    sl_chan_free(r.a);
    sl_chan_free(r.b);
}

static void test_stress(void **state)
{
    const size_t caps[] = {0, 1, 64};
    for (size_t i = 0; i < sizeof(caps) / sizeof(caps[0]); i++) {
        run_round(caps[i], false, 250);
        run_round(caps[i], true, 250);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stress),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
