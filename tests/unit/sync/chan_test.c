/* sl_chan: every operation and its edges — buffering, FIFO order, rendezvous hand-off, close
 * with blocked senders and receivers, a ctx firing while blocked, select, and the seed's
 * fetch-with-timeout leak pattern. Threads are always joined; waits are bounded conditions. */
#include "harness.h"
#include "sluice/chan.h"
#include "sync/chan_int.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static size_t senders_of(sl_chan *ch)
{
    size_t s;
    sl__chan_waiters(ch, &s, NULL);
    return s;
}

static size_t receivers_of(sl_chan *ch)
{
    size_t r;
    sl__chan_waiters(ch, NULL, &r);
    return r;
}

/* A thread that does one blocking op and records the result. */
typedef struct op {
    pthread_t th;
    sl_chan *ch;
    sl_ctx *ctx;
    int value;
    atomic_int rc;
    atomic_bool done;
} op;

static void *send_main(void *arg)
{
    op *o = arg;
    atomic_store(&o->rc, sl_chan_send(o->ch, &o->value, o->ctx));
    atomic_store(&o->done, true);
    return NULL;
}

static void *recv_main(void *arg)
{
    op *o = arg;
    int v = -1;
    int rc = sl_chan_recv(o->ch, &v, o->ctx);
    o->value = v;
    atomic_store(&o->rc, rc);
    atomic_store(&o->done, true);
    return NULL;
}

static void op_start(op *o, sl_chan *ch, sl_ctx *ctx, int value, void *(*fn)(void *))
{
    memset(o, 0, sizeof(*o));
    o->ch = ch;
    o->ctx = ctx;
    o->value = value;
    atomic_store(&o->rc, 1);
    assert_int_equal(pthread_create(&o->th, NULL, fn, o), 0);
}

static void op_join(op *o)
{
    assert_int_equal(pthread_join(o->th, NULL), 0);
}

static void test_new_invalid(void **state)
{
    sl_chan *ch = (sl_chan *)0x1;
    assert_int_equal(sl_chan_new(0, 4, &ch), SL_EINVAL);
    assert_int_equal(sl_chan_new(65537, 4, &ch), SL_EINVAL);
    assert_int_equal(sl_chan_new(4, (size_t)1 << 25, &ch), SL_EINVAL);
    assert_int_equal(sl_chan_new(4, 4, NULL), SL_EINVAL);
    assert_ptr_equal(ch, (sl_chan *)0x1); /* untouched on failure */
    sl_chan_free(NULL);
    assert_int_equal(sl_chan_send(NULL, &ch, NULL), SL_EINVAL);
    assert_int_equal(sl_chan_recv(NULL, NULL, NULL), SL_EINVAL);
}

static void test_buffered_fifo_len_cap(void **state)
{
    sl_chan *ch;
    assert_int_equal(sl_chan_new(sizeof(int), 3, &ch), 0);
    assert_int_equal(sl_chan_cap(ch), 3);
    assert_int_equal(sl_chan_len(ch), 0);
    int v;
    assert_int_equal(sl_chan_try_recv(ch, &v), SL_EEMPTY);
    /* Wrap the ring several times: order must survive. */
    int next_in = 0, next_out = 0;
    for (int round = 0; round < 5; round++) {
        while (sl_chan_len(ch) < 3) {
            assert_int_equal(sl_chan_try_send(ch, &next_in), 0);
            next_in++;
        }
        assert_int_equal(sl_chan_try_send(ch, &next_in), SL_EFULL);
        assert_int_equal(sl_chan_len(ch), 3);
        for (int k = 0; k < 2; k++) {
            assert_int_equal(sl_chan_recv(ch, &v, NULL), 0);
            assert_int_equal(v, next_out++);
        }
        assert_int_equal(sl_chan_len(ch), 1);
    }
    assert_int_equal(sl_chan_send(ch, &next_in, NULL), 0);
    next_in++;
    while (sl_chan_try_recv(ch, &v) == 0)
        assert_int_equal(v, next_out++);
    assert_int_equal(next_out, next_in);
    assert_int_equal(sl_chan_try_recv(ch, NULL), SL_EEMPTY);
    sl_chan_free(ch);
}

static void test_close_semantics(void **state)
{
    sl_chan *ch;
    assert_int_equal(sl_chan_new(sizeof(int), 4, &ch), 0);
    int a = 1, b = 2, v = 0;
    assert_int_equal(sl_chan_send(ch, &a, NULL), 0);
    assert_int_equal(sl_chan_send(ch, &b, NULL), 0);
    assert_false(sl_chan_closed(ch));
    assert_int_equal(sl_chan_close(ch), 0);
    assert_true(sl_chan_closed(ch));
    assert_int_equal(sl_chan_close(ch), SL_ECLOSED); /* twice */
    assert_int_equal(sl_chan_send(ch, &a, NULL), SL_ECLOSED);
    assert_int_equal(sl_chan_try_send(ch, &a), SL_ECLOSED);
    /* Receivers drain what is buffered, then see SL_ECLOSED. */
    assert_int_equal(sl_chan_recv(ch, &v, NULL), 0);
    assert_int_equal(v, 1);
    assert_int_equal(sl_chan_try_recv(ch, &v), 0);
    assert_int_equal(v, 2);
    assert_int_equal(sl_chan_recv(ch, &v, NULL), SL_ECLOSED);
    assert_int_equal(sl_chan_try_recv(ch, &v), SL_ECLOSED);
    sl_chan_free(ch);
}

static void test_close_wakes_blocked_receivers(void **state)
{
    sl_chan *ch;
    assert_int_equal(sl_chan_new(sizeof(int), 2, &ch), 0);
    op r[4];
    for (int i = 0; i < 4; i++)
        op_start(&r[i], ch, NULL, 0, recv_main);
    assert_true(SL_WAIT_UNTIL(receivers_of(ch) == 4, 5000));
    assert_int_equal(sl_chan_close(ch), 0);
    for (int i = 0; i < 4; i++) {
        op_join(&r[i]);
        assert_int_equal(atomic_load(&r[i].rc), SL_ECLOSED);
    }
    assert_int_equal(receivers_of(ch), 0);
    sl_chan_free(ch);
}

static void test_close_wakes_blocked_senders(void **state)
{
    sl_chan *ch;
    assert_int_equal(sl_chan_new(sizeof(int), 1, &ch), 0);
    int x = 100, v;
    assert_int_equal(sl_chan_send(ch, &x, NULL), 0);
    op s[3];
    for (int i = 0; i < 3; i++)
        op_start(&s[i], ch, NULL, i, send_main);
    assert_true(SL_WAIT_UNTIL(senders_of(ch) == 3, 5000));
    assert_int_equal(sl_chan_close(ch), 0);
    for (int i = 0; i < 3; i++) {
        op_join(&s[i]);
        assert_int_equal(atomic_load(&s[i].rc), SL_ECLOSED);
    }
    /* Only what was buffered before close comes out: the blocked sends were not sent. */
    assert_int_equal(sl_chan_recv(ch, &v, NULL), 0);
    assert_int_equal(v, 100);
    assert_int_equal(sl_chan_recv(ch, &v, NULL), SL_ECLOSED);
    sl_chan_free(ch);
}

static void test_rendezvous(void **state)
{
    sl_chan *ch;
    assert_int_equal(sl_chan_new(sizeof(int), 0, &ch), 0);
    int v = 7;
    assert_int_equal(sl_chan_cap(ch), 0);
    assert_int_equal(sl_chan_try_send(ch, &v), SL_EFULL); /* nobody receiving */
    assert_int_equal(sl_chan_try_recv(ch, &v), SL_EEMPTY);

    /* A send stays blocked until a receiver takes the value. */
    op s;
    op_start(&s, ch, NULL, 42, send_main);
    assert_true(SL_WAIT_UNTIL(senders_of(ch) == 1, 5000));
    assert_false(atomic_load(&s.done));
    assert_int_equal(sl_chan_len(ch), 0);
    int got = 0;
    assert_int_equal(sl_chan_recv(ch, &got, NULL), 0);
    assert_int_equal(got, 42);
    op_join(&s);
    assert_int_equal(atomic_load(&s.rc), 0);

    /* A parked receiver gets the value handed over directly; try_send succeeds then. */
    op r;
    op_start(&r, ch, NULL, 0, recv_main);
    assert_true(SL_WAIT_UNTIL(receivers_of(ch) == 1, 5000));
    v = 99;
    assert_int_equal(sl_chan_try_send(ch, &v), 0);
    op_join(&r);
    assert_int_equal(atomic_load(&r.rc), 0);
    assert_int_equal(r.value, 99);
    sl_chan_free(ch);
}

static void test_blocked_fifo_order(void **state)
{
    /* Senders parked on a full channel are served in the order they parked, after the buffer. */
    sl_chan *ch;
    assert_int_equal(sl_chan_new(sizeof(int), 2, &ch), 0);
    int a = 0, b = 1;
    assert_int_equal(sl_chan_send(ch, &a, NULL), 0);
    assert_int_equal(sl_chan_send(ch, &b, NULL), 0);
    op s[3];
    for (int i = 0; i < 3; i++) {
        op_start(&s[i], ch, NULL, 2 + i, send_main);
        assert_true(SL_WAIT_UNTIL(senders_of(ch) == (size_t)i + 1, 5000));
    }
    for (int want = 0; want < 5; want++) {
        int v = -1;
        assert_int_equal(sl_chan_recv(ch, &v, NULL), 0);
        assert_int_equal(v, want);
    }
    for (int i = 0; i < 3; i++) {
        op_join(&s[i]);
        assert_int_equal(atomic_load(&s[i].rc), 0);
    }
    assert_int_equal(sl_chan_len(ch), 0);
    sl_chan_free(ch);
}

static void test_ctx_fires_while_blocked(void **state)
{
    sl_chan *ch;
    assert_int_equal(sl_chan_new(sizeof(int), 1, &ch), 0);

    /* recv on an empty channel */
    sl_ctx *ctx;
    assert_int_equal(sl_ctx_with_cancel(NULL, &ctx), 0);
    op r;
    op_start(&r, ch, ctx, 0, recv_main);
    assert_true(SL_WAIT_UNTIL(receivers_of(ch) == 1, 5000));
    sl_ctx_cancel(ctx);
    op_join(&r);
    assert_int_equal(atomic_load(&r.rc), SL_ECANCELED);
    assert_int_equal(receivers_of(ch), 0);
    /* A done ctx fails at once when the op would block, but not when it can proceed. */
    int v = 5;
    assert_int_equal(sl_chan_recv(ch, &v, ctx), SL_ECANCELED);
    assert_int_equal(sl_chan_send(ch, &v, ctx), 0);
    assert_int_equal(sl_chan_send(ch, &v, ctx), SL_ECANCELED);
    sl_ctx_release(ctx);

    /* send on a full channel: nothing is sent */
    assert_int_equal(sl_ctx_with_cancel(NULL, &ctx), 0);
    op s;
    op_start(&s, ch, ctx, 77, send_main);
    assert_true(SL_WAIT_UNTIL(senders_of(ch) == 1, 5000));
    sl_ctx_cancel(ctx);
    op_join(&s);
    assert_int_equal(atomic_load(&s.rc), SL_ECANCELED);
    assert_int_equal(senders_of(ch), 0);
    assert_int_equal(sl_chan_len(ch), 1);
    assert_int_equal(sl_chan_recv(ch, &v, NULL), 0);
    assert_int_equal(v, 5);
    assert_int_equal(sl_chan_try_recv(ch, &v), SL_EEMPTY);
    sl_ctx_release(ctx);
    sl_chan_free(ch);
}

static void test_select_picks_ready(void **state)
{
    sl_chan *a, *b, *c;
    assert_int_equal(sl_chan_new(sizeof(int), 1, &a), 0);
    assert_int_equal(sl_chan_new(sizeof(int), 1, &b), 0);
    assert_int_equal(sl_chan_new(sizeof(int), 0, &c), 0);
    int v = 0, err = 1;
    sl_chan *chans[3] = {a, b, c};
    assert_int_equal(
        sl_chan_try_select((sl_chan_case[]){{a, SL_CHAN_RECV, &v}, {b, SL_CHAN_RECV, &v}}, 2, &err),
        SL_EAGAIN);
    int x = 11;
    assert_int_equal(sl_chan_send(b, &x, NULL), 0);
    assert_int_equal(sl_chan_select_recv(chans, 3, &v, NULL), 1);
    assert_int_equal(v, 11);

    /* Send cases: only a has room once filled b. */
    int y = 22;
    assert_int_equal(sl_chan_send(b, &x, NULL), 0);
    sl_chan_case sc[3] = {{b, SL_CHAN_SEND, &y}, {c, SL_CHAN_SEND, &y}, {a, SL_CHAN_SEND, &y}};
    assert_int_equal(sl_chan_select(sc, 3, &err, NULL), 2);
    assert_int_equal(err, 0);
    assert_int_equal(sl_chan_len(a), 1);

    /* Both ready: over many rounds each gets picked (pseudo-random choice, no starvation). */
    int hits[2] = {0, 0};
    for (int i = 0; i < 200; i++) {
        int r = sl_chan_select_recv(chans, 2, &v, NULL); /* a and b both hold one */
        assert_true(r == 0 || r == 1);
        hits[r]++;
        assert_int_equal(sl_chan_send(chans[r], &v, NULL), 0);
    }
    assert_true(hits[0] > 10 && hits[1] > 10);

    /* A blocked select is woken by a send on any of its channels, and by nothing else. */
    assert_int_equal(sl_chan_recv(a, &v, NULL), 0);
    assert_int_equal(sl_chan_recv(b, &v, NULL), 0);
    op s;
    op_start(&s, c, NULL, 33, send_main);
    assert_true(SL_WAIT_UNTIL(senders_of(c) == 1, 5000));
    assert_int_equal(sl_chan_select_recv(chans, 3, &v, NULL), 2);
    assert_int_equal(v, 33);
    op_join(&s);
    assert_int_equal(atomic_load(&s.rc), 0);

    /* Closed, drained channels are skipped; all closed -> SL_ECLOSED. */
    assert_int_equal(sl_chan_close(a), 0);
    assert_int_equal(sl_chan_send(b, &x, NULL), 0);
    assert_int_equal(sl_chan_select_recv(chans, 2, &v, NULL), 1);
    assert_int_equal(sl_chan_close(b), 0);
    assert_int_equal(sl_chan_select_recv(chans, 2, &v, NULL), SL_ECLOSED);
    /* ... while the general select reports the closed case. */
    sl_chan_case rc2[2] = {{NULL, SL_CHAN_RECV, &v}, {b, SL_CHAN_RECV, &v}};
    assert_int_equal(sl_chan_select(rc2, 2, &err, NULL), 1);
    assert_int_equal(err, SL_ECLOSED);
    sl_chan_case none[1] = {{NULL, SL_CHAN_RECV, &v}};
    assert_int_equal(sl_chan_select(none, 1, &err, NULL), SL_EDEADLK);
    assert_int_equal(sl_chan_select(none, 0, &err, NULL), SL_EINVAL);
    sl_chan_case badsend[1] = {{c, SL_CHAN_SEND, NULL}};
    assert_int_equal(sl_chan_select(badsend, 1, &err, NULL), SL_EINVAL);
    sl_chan_free(a);
    sl_chan_free(b);
    sl_chan_free(c);
}

typedef struct sel_op {
    pthread_t th;
    sl_chan **chans;
    size_t n;
    sl_ctx *ctx;
    int value;
    atomic_int rc;
} sel_op;

static void *select_main(void *arg)
{
    sel_op *o = arg;
    atomic_store(&o->rc, sl_chan_select_recv(o->chans, o->n, &o->value, o->ctx));
    return NULL;
}

static void test_select_ctx(void **state)
{
    enum { N = 12 }; /* more than the on-stack case count */
    sl_chan *chans[N];
    for (int i = 0; i < N; i++)
        assert_int_equal(sl_chan_new(sizeof(int), i % 2, &chans[i]), 0);
    sl_ctx *ctx;
    assert_int_equal(sl_ctx_with_cancel(NULL, &ctx), 0);
    sel_op o = {.chans = chans, .n = N, .ctx = ctx};
    atomic_store(&o.rc, 1);
    assert_int_equal(pthread_create(&o.th, NULL, select_main, &o), 0);
    assert_true(SL_WAIT_UNTIL(receivers_of(chans[N - 1]) == 1, 5000));
    sl_ctx_cancel(ctx);
    assert_int_equal(pthread_join(o.th, NULL), 0);
    assert_int_equal(atomic_load(&o.rc), SL_ECANCELED);
    for (int i = 0; i < N; i++)
        assert_int_equal(receivers_of(chans[i]), 0); /* every node unlinked */
    /* Done ctx, nothing ready: fails at once; a ready case still wins. */
    int v = 3;
    assert_int_equal(sl_chan_select_recv(chans, N, &v, ctx), SL_ECANCELED);
    assert_int_equal(sl_chan_try_send(chans[5], &v), 0);
    assert_int_equal(sl_chan_select_recv(chans, N, &v, ctx), 5);
    sl_ctx_release(ctx);

    /* Select woken by a send on one of many channels (a rendezvous one). */
    o.ctx = NULL;
    atomic_store(&o.rc, 1);
    assert_int_equal(pthread_create(&o.th, NULL, select_main, &o), 0);
    assert_true(SL_WAIT_UNTIL(receivers_of(chans[N - 2]) == 1, 5000));
    v = 1234;
    assert_int_equal(sl_chan_send(chans[N - 2], &v, NULL), 0);
    assert_int_equal(pthread_join(o.th, NULL), 0);
    assert_int_equal(atomic_load(&o.rc), N - 2);
    assert_int_equal(o.value, 1234);
    for (int i = 0; i < N; i++) {
        assert_int_equal(receivers_of(chans[i]), 0);
        sl_chan_free(chans[i]);
    }
}

/* The seed's fetchWithTimeout, done right: the helper sends into a 1-buffered channel, so it
 * can finish even after the caller gave up; it is joined and its response freed. */
typedef struct fetch {
    sl_chan *ch;
    sl_chan *gate; /* the "network": closed when the response arrives */
    atomic_int send_rc;
} fetch;

static void *fetch_helper(void *arg)
{
    fetch *f = arg;
    sl_chan_recv(f->gate, NULL, NULL); /* blocks until the slow response arrives */
    char *resp = malloc(64);
    strcpy(resp, "200 OK");
    int rc = sl_chan_send(f->ch, &resp, NULL); /* never blocks: one slot, one sender */
    if (rc != 0) free(resp);
    atomic_store(&f->send_rc, rc);
    return NULL;
}

static void test_fetch_with_timeout_no_leak(void **state)
{
    fetch f = {0};
    atomic_store(&f.send_rc, 1);
    assert_int_equal(sl_chan_new(sizeof(char *), 1, &f.ch), 0);
    assert_int_equal(sl_chan_new(1, 0, &f.gate), 0);
    sl_ctx *ctx;
    assert_int_equal(sl_ctx_with_cancel(NULL, &ctx), 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, fetch_helper, &f), 0);

    /* The caller waits on the channel with its ctx; the ctx fires first. */
    sl_ctx_cancel(ctx);
    char *resp = NULL;
    assert_int_equal(sl_chan_recv(f.ch, &resp, ctx), SL_ECANCELED);
    assert_null(resp);

    /* The response arrives late: the helper's send completes (buffered) and it exits. */
    assert_int_equal(sl_chan_close(f.gate), 0);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_int_equal(atomic_load(&f.send_rc), 0);
    /* The owner of the channel drains what is left before freeing it (elements are bytes). */
    assert_int_equal(sl_chan_try_recv(f.ch, &resp), 0);
    assert_string_equal(resp, "200 OK");
    free(resp);
    sl_ctx_release(ctx);
    sl_chan_free(f.ch);
    sl_chan_free(f.gate);
}

static void test_timeout_while_blocked_idle(void **state)
{
    /* A receiver blocked for 200 ms of real time times out with SL_ETIMEDOUT and, while it
     * waited, was parked: it used (almost) no CPU. */
    sl_chan *ch;
    assert_int_equal(sl_chan_new(sizeof(int), 4, &ch), 0);
    sl_ctx *ctx;
    assert_int_equal(sl_ctx_with_timeout(NULL, SL_MS(200), &ctx), 0);
    struct timespec c0, c1;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c0);
    int64_t t0 = sl_mono_ns();
    int v;
    assert_int_equal(sl_chan_recv(ch, &v, ctx), SL_ETIMEDOUT);
    int64_t waited = sl_mono_ns() - t0;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c1);
    int64_t cpu = (c1.tv_sec - c0.tv_sec) * 1000000000LL + (c1.tv_nsec - c0.tv_nsec);
    assert_true(waited >= SL_MS(150));
    assert_true(cpu < SL_MS(30)); /* the bounded spin is ~20 us; the rest is parked */
    assert_int_equal(receivers_of(ch), 0);
    sl_ctx_release(ctx);

    /* The same through a select with a send case on a full channel. */
    int x = 1;
    for (int i = 0; i < 4; i++)
        assert_int_equal(sl_chan_try_send(ch, &x), 0);
    assert_int_equal(sl_ctx_with_timeout(NULL, SL_MS(20), &ctx), 0);
    sl_chan_case cs[2] = {{ch, SL_CHAN_SEND, &x}, {NULL, SL_CHAN_RECV, NULL}};
    assert_int_equal(sl_chan_select(cs, 2, NULL, ctx), SL_ETIMEDOUT);
    assert_int_equal(senders_of(ch), 0);
    assert_int_equal(sl_chan_len(ch), 4);
    sl_ctx_release(ctx);
    /* Every case off: the select just waits for the ctx. */
    assert_int_equal(sl_ctx_with_timeout(NULL, SL_MS(10), &ctx), 0);
    assert_int_equal(sl_chan_select(cs + 1, 1, NULL, ctx), SL_ETIMEDOUT);
    sl_ctx_release(ctx);
    sl_chan_free(ch);
}

typedef struct cs_arg {
    sl_chan_case *cs;
    atomic_int rc;
} cs_arg;

static void *cases_main(void *arg)
{
    cs_arg *a = arg;
    atomic_store(&a->rc, sl_chan_select(a->cs, 2, NULL, NULL));
    return NULL;
}

static void test_select_self_and_duplicates(void **state)
{
    /* A select on both ends of one rendezvous channel must not match itself. */
    sl_chan *c;
    assert_int_equal(sl_chan_new(sizeof(int), 0, &c), 0);
    int out = 0, in = 5, err = 1;
    sl_chan_case cs[2] = {{c, SL_CHAN_SEND, &in}, {c, SL_CHAN_RECV, &out}};
    assert_int_equal(sl_chan_try_select(cs, 2, &err), SL_EAGAIN);
    sl_ctx *ctx;
    assert_int_equal(sl_ctx_with_timeout(NULL, SL_MS(20), &ctx), 0);
    assert_int_equal(sl_chan_select(cs, 2, &err, ctx), SL_ETIMEDOUT);
    sl_ctx_release(ctx);
    assert_int_equal(senders_of(c) + receivers_of(c), 0);

    /* Another thread's receive pairs with the select's send case. */
    op r;
    op_start(&r, c, NULL, 0, recv_main);
    assert_true(SL_WAIT_UNTIL(receivers_of(c) == 1, 5000));
    assert_int_equal(sl_chan_select(cs, 2, &err, NULL), 0);
    assert_int_equal(err, 0);
    op_join(&r);
    assert_int_equal(r.value, 5);

    /* ... and a parked select (both ends of c) is found by another thread's send. */
    cs_arg a = {.cs = cs};
    atomic_store(&a.rc, 100);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, cases_main, &a), 0);
    assert_true(SL_WAIT_UNTIL(receivers_of(c) == 1 && senders_of(c) == 1, 5000));
    int y = 77;
    assert_int_equal(sl_chan_send(c, &y, NULL), 0);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_int_equal(atomic_load(&a.rc), 1);
    assert_int_equal(out, 77);
    assert_int_equal(senders_of(c) + receivers_of(c), 0);

    /* The same channel twice: one element satisfies exactly one case. */
    sl_chan *b;
    assert_int_equal(sl_chan_new(sizeof(int), 2, &b), 0);
    int v1 = -1, v2 = -1, x = 9;
    sl_chan_case dup[2] = {{b, SL_CHAN_RECV, &v1}, {b, SL_CHAN_RECV, &v2}};
    assert_int_equal(sl_chan_try_send(b, &x), 0);
    int i = sl_chan_select(dup, 2, &err, NULL);
    assert_true(i == 0 || i == 1);
    assert_int_equal(i == 0 ? v1 : v2, 9);
    assert_int_equal(i == 0 ? v2 : v1, -1);
    assert_int_equal(sl_chan_len(b), 0);
    /* recv into NULL discards */
    assert_int_equal(sl_chan_try_send(b, &x), 0);
    assert_int_equal(sl_chan_recv(b, NULL, NULL), 0);
    assert_int_equal(sl_chan_len(b), 0);
    sl_chan_free(b);
    sl_chan_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_invalid),
        cmocka_unit_test(test_buffered_fifo_len_cap),
        cmocka_unit_test(test_close_semantics),
        cmocka_unit_test(test_close_wakes_blocked_receivers),
        cmocka_unit_test(test_close_wakes_blocked_senders),
        cmocka_unit_test(test_rendezvous),
        cmocka_unit_test(test_blocked_fifo_order),
        cmocka_unit_test(test_ctx_fires_while_blocked),
        cmocka_unit_test(test_select_picks_ready),
        cmocka_unit_test(test_select_ctx),
        cmocka_unit_test(test_fetch_with_timeout_no_leak),
        cmocka_unit_test(test_timeout_while_blocked_idle),
        cmocka_unit_test(test_select_self_and_duplicates),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
