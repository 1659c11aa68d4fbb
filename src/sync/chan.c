/* sl_chan: a bounded channel built like Go's runtime channel (hchan + sudog queues).
 *
 * One lock per channel guards a ring buffer of cap elements and two FIFO queues of waiter
 * nodes: receivers parked because the channel was empty, senders parked because it was full (or,
 * for cap 0, because no receiver was waiting). Every operation first tries to complete at once
 * under the lock:
 *   - send: a parked receiver gets the element copied straight into its destination (direct
 *     hand-off, no trip through the ring); else the element goes into the ring if there is room.
 *   - recv: take the ring's head; if a sender is parked, its element moves into the freed ring
 *     slot (FIFO order is kept: the parked sender's element is newer than everything buffered);
 *     with an empty ring (cap 0) the element is copied straight from the parked sender.
 * Only when neither works does the caller enqueue a node and park on its own parker (see
 * park_int.h), so every wake-up is aimed at one waiter: no broadcast, no thundering herd, and a
 * sender that finds no parked receiver makes no system call at all. The waiter is a task or a
 * thread: a task parks (its loop runs other tasks) and never spins; a thread spins a little,
 * then sleeps on a futex.
 *
 * Invariants (under the lock): receivers are parked only while the ring is empty; senders only
 * while it is full; both queues are empty once the channel is closed.
 *
 * A blocked operation is a `sel` (one parking word plus the result) and one node per channel it
 * waits on: a plain send/recv has one node, a select has one per case. Whoever completes a sel —
 * a peer on any of its channels, close, or the ctx's on-done hook — must first win the CAS from
 * WAITING to CLAIMED; a peer that loses simply drops that node and looks at the next one. The
 * peer copies the data while it holds the channel lock and publishes DONE after unlocking; the
 * owner then unlinks its remaining nodes channel by channel. A select locks all its channels at
 * once (in address order, so two selects cannot deadlock) while it polls and enqueues, so no peer
 * can claim it halfway through enqueueing.
 *
 * ctx: a blocked operation with a ctx registers an on-done hook (a stack node, sl__ctx_hook_add)
 * that claims the sel as CANCELED. The hook never takes a channel lock, and sl__ctx_hook_del is
 * never called with
 * one held, so the ctx's internal locks and ours never nest. */
#include <stdlib.h>
#include <string.h>

#include "sluice/chan.h"
#include "sluice/error.h"
#include "base/base_int.h"
#include "sync/chan_int.h"
#include "sync/ctx_int.h"
#include "sync/park_int.h"
#include "sync/sync_int.h"

#define ELEM_MAX  65536u
#define CAP_MAX   (1u << 24)
#define CASES_MAX 4096u
#define STACK_N   8

int sl__park_spins = SL__PARK_SPIN_DEFAULT;
int sl__park_spin_floor = 16;

/* One blocked operation. pk is its parker; fired and err are written by whoever
 * claimed it, before the final state is published (release), and read by the owner after. */
typedef struct sel {
    sl__parker pk;
    int fired; /* index of the case that completed */
    int err;   /* 0, SL_ECLOSED, or the ctx's error */
} sel;

/* One (operation, channel) pair in a channel's queue. Fields guarded by that channel's lock. */
typedef struct wnode {
    struct wnode *prev, *next;
    sel *s;
    void *elem; /* recv: destination (may be NULL); send: source */
    int idx;    /* case index reported in s->fired */
    bool linked;
} wnode;

typedef struct wq {
    wnode *head, *tail;
} wq;

struct sl_chan {
    sl__lock lock;
    size_t esz;          /* bytes per element; immutable */
    size_t cap;          /* ring slots; immutable */
    size_t head;         /* ring index of the oldest element; guarded by lock */
    size_t count;        /* elements in the ring; guarded by lock */
    bool closed;         /* guarded by lock */
    wq recvq, sendq;     /* guarded by lock */
    unsigned char *ring; /* cap * esz bytes */
};

/* ---- queues ------------------------------------------------------------------------------ */

static void wq_push(wq *q, wnode *n)
{
    n->next = NULL;
    n->prev = q->tail;
    if (q->tail)
        q->tail->next = n;
    else
        q->head = n;
    q->tail = n;
    n->linked = true;
}

static void wq_unlink(wq *q, wnode *n)
{
    if (n->prev)
        n->prev->next = n->next;
    else
        q->head = n->next;
    if (n->next)
        n->next->prev = n->prev;
    else
        q->tail = n->prev;
    n->prev = n->next = NULL;
    n->linked = false;
}

/* Pops the first node whose operation this thread can claim, skipping (and dropping) nodes whose
 * sel someone else completed. Nodes of `self` (a select waiting on both ends of one channel) stay
 * queued: an operation never matches itself. Returns NULL if none. */
static wnode *wq_claim(wq *q, const sel *self)
{
    wnode *n = q->head;
    while (n) {
        wnode *next = n->next;
        if (n->s != self) {
            wq_unlink(q, n);
            if (sl__park_claim(&n->s->pk, SL__CLAIMED)) return n;
        }
        n = next;
    }
    return NULL;
}

static void *slot(sl_chan *ch, size_t i)
{
    return ch->ring + i * ch->esz;
}

static size_t tail_index(const sl_chan *ch)
{
    size_t t = ch->head + ch->count;
    return t >= ch->cap ? t - ch->cap : t;
}

static void complete(wnode *n, int err, sl__parker **finish)
{
    n->s->fired = n->idx;
    n->s->err = err;
    *finish = &n->s->pk;
}

/* ---- the operations, under the lock ---------------------------------------------------- */

/* Returns 0 (done), SL_ECLOSED or SL_EFULL. *finish gets a claimed peer to publish after the
 * unlock. */
static int send_locked(sl_chan *ch, const void *elem, const sel *self, sl__parker **finish)
{
    if (ch->closed) return SL_ECLOSED;
    wnode *r = wq_claim(&ch->recvq, self);
    if (r) {
        if (r->elem) memcpy(r->elem, elem, ch->esz);
        complete(r, 0, finish);
        return 0;
    }
    if (ch->count < ch->cap) {
        memcpy(slot(ch, tail_index(ch)), elem, ch->esz);
        ch->count++;
        return 0;
    }
    return SL_EFULL;
}

/* Returns 0 (done), SL_ECLOSED (closed and drained) or SL_EEMPTY. */
static int recv_locked(sl_chan *ch, void *out, const sel *self, sl__parker **finish)
{
    if (ch->count > 0) {
        if (out) memcpy(out, slot(ch, ch->head), ch->esz);
        ch->head = ch->head + 1 == ch->cap ? 0 : ch->head + 1;
        ch->count--;
        wnode *s = wq_claim(&ch->sendq, self);
        if (s) {
            memcpy(slot(ch, tail_index(ch)), s->elem, ch->esz);
            ch->count++;
            complete(s, 0, finish);
        }
        return 0;
    }
    wnode *s = wq_claim(&ch->sendq, self);
    if (s) {
        if (out) memcpy(out, s->elem, ch->esz);
        complete(s, 0, finish);
        return 0;
    }
    return ch->closed ? SL_ECLOSED : SL_EEMPTY;
}

static void finish_peer(sl__parker *finish)
{
    if (finish) sl__park_finish(finish, SL__DONE);
}

/* ---- waiting ------------------------------------------------------------------------------ */

static void on_ctx_done(void *arg, int err)
{
    sel *s = arg;
    if (sl__park_claim(&s->pk, SL__CLAIMED)) {
        s->err = err;
        sl__park_finish(&s->pk, SL__CANCELED);
    }
}

/* Waits until s is completed by a peer, by close, or by the ctx. Returns the final state. No
 * channel lock may be held. */
static _Thread_local int t_spin_budget = -1; /* adaptive spin, per thread; -1: not yet set */

/* Spins for a completion with an adaptive budget (glibc's adaptive mutex does the same): a
 * spin that succeeded after k pauses pulls the budget towards 2k + 16; one that failed halves
 * it. On a quiet machine ping-pong keeps spinning just long enough; on an oversubscribed one,
 * where the peer is often not even running, spinning would only steal its CPU, and the budget
 * shrinks to a few pauses. Returns the final state or SL__WAITING. */
static uint32_t spin_sel(sel *s)
{
    int max = sl__park_spins;
    if (max <= 0 || s->pk.task) return SL__WAITING; /* a task never spins: its loop would stall */
    int budget = t_spin_budget < 0 || t_spin_budget > max ? max : t_spin_budget;
    for (int i = 0; i < budget; i++) {
        uint32_t st = atomic_load_explicit(&s->pk.word, memory_order_acquire) & SL__STATE_MASK;
        if (st >= SL__DONE) {
            budget += (2 * i + 16 - budget) / 4;
            t_spin_budget = budget > max ? max : budget;
            return st;
        }
        sl__cpu_relax();
    }
    t_spin_budget = budget / 2 < sl__park_spin_floor ? sl__park_spin_floor : budget / 2;
    return SL__WAITING;
}

static uint32_t wait_sel(sel *s, sl_ctx *ctx)
{
    uint32_t st = spin_sel(s);
    if (st != SL__WAITING) return st;
    if (!sl__ctx_can_be_done(ctx)) return sl__park_wait(&s->pk);
    struct sl_ctx_hook hook;
    int rc = sl__ctx_hook_add(ctx, &hook, on_ctx_done, s);
    if (rc < 0 && sl__park_claim(&s->pk, SL__CLAIMED)) {
        /* Already done: the hook was not registered, so give up now rather than wait blind. */
        s->err = rc;
        sl__park_finish(&s->pk, SL__CANCELED);
    }
    st = sl__park_wait(&s->pk);
    if (rc == 0) sl__ctx_hook_del(&hook); /* waits out a running hook, which may still touch s */
    return st;
}

static void unlink_node(sl_chan *ch, wnode *n, sl_chan_dir dir)
{
    sl__lock_acquire(&ch->lock);
    if (n->linked) wq_unlink(dir == SL_CHAN_SEND ? &ch->sendq : &ch->recvq, n);
    sl__lock_release(&ch->lock);
}

/* Parks one send or recv whose node the caller just enqueued (and unlocked). */
static int block_one(sl_chan *ch, wnode *n, sl_chan_dir dir, sl_ctx *ctx)
{
    uint32_t st = wait_sel(n->s, ctx);
    if (st == SL__CANCELED) unlink_node(ch, n, dir);
    return n->s->err;
}

/* ---- public API ------------------------------------------------------------------------- */

int sl_chan_new(size_t elem_size, size_t cap, sl_chan **out)
{
    if (!out) return sl__fail(SL_EINVAL, "sl_chan_new: out is NULL");
    if (elem_size == 0 || elem_size > ELEM_MAX)
        return sl__fail(SL_EINVAL, "sl_chan_new: elem_size %zu is outside 1..%zu",
                        (size_t)elem_size, (size_t)ELEM_MAX);
    if (cap > CAP_MAX)
        return sl__fail(SL_EINVAL, "sl_chan_new: capacity %zu is above %zu", (size_t)cap,
                        (size_t)CAP_MAX);
    sl_chan *ch = calloc(1, sizeof(*ch));
    if (!ch) return SL_ENOMEM;
    if (cap > 0) {
        ch->ring = malloc(cap * elem_size);
        if (!ch->ring) {
            free(ch);
            return SL_ENOMEM;
        }
    }
    ch->esz = elem_size;
    ch->cap = cap;
    *out = ch;
    return 0;
}

void sl_chan_free(sl_chan *ch)
{
    if (!ch) return;
    free(ch->ring);
    free(ch);
}

int sl_chan_try_send(sl_chan *ch, const void *elem)
{
    if (!ch || !elem) return SL_EINVAL;
    sl__parker *fin = NULL;
    sl__lock_acquire(&ch->lock);
    int rc = send_locked(ch, elem, NULL, &fin);
    sl__lock_release(&ch->lock);
    finish_peer(fin);
    return rc;
}

int sl_chan_try_recv(sl_chan *ch, void *out)
{
    if (!ch) return SL_EINVAL;
    sl__parker *fin = NULL;
    sl__lock_acquire(&ch->lock);
    int rc = recv_locked(ch, out, NULL, &fin);
    sl__lock_release(&ch->lock);
    finish_peer(fin);
    return rc;
}

int sl_chan_send(sl_chan *ch, const void *elem, sl_ctx *ctx)
{
    if (!ch || !elem) return SL_EINVAL;
    sl__parker *fin = NULL;
    sl__lock_acquire(&ch->lock);
    int rc = send_locked(ch, elem, NULL, &fin);
    if (rc != SL_EFULL) {
        sl__lock_release(&ch->lock);
        finish_peer(fin);
        return rc;
    }
    int err = sl_ctx_err(ctx);
    if (err) {
        sl__lock_release(&ch->lock);
        return err;
    }
    sel s = {0};
    sl__parker_init(&s.pk);
    wnode n = {.s = &s, .elem = (void *)elem};
    wq_push(&ch->sendq, &n);
    sl__lock_release(&ch->lock);
    return block_one(ch, &n, SL_CHAN_SEND, ctx);
}

int sl_chan_recv(sl_chan *ch, void *out, sl_ctx *ctx)
{
    if (!ch) return SL_EINVAL;
    sl__parker *fin = NULL;
    sl__lock_acquire(&ch->lock);
    int rc = recv_locked(ch, out, NULL, &fin);
    if (rc != SL_EEMPTY) {
        sl__lock_release(&ch->lock);
        finish_peer(fin);
        return rc;
    }
    int err = sl_ctx_err(ctx);
    if (err) {
        sl__lock_release(&ch->lock);
        return err;
    }
    sel s = {0};
    sl__parker_init(&s.pk);
    wnode n = {.s = &s, .elem = out};
    wq_push(&ch->recvq, &n);
    sl__lock_release(&ch->lock);
    return block_one(ch, &n, SL_CHAN_RECV, ctx);
}

/* Completes every node of q with SL_ECLOSED (those still claimable). Runs under the lock; the
 * final state is published right away, since the node is not touched after it. */
static void close_queue(wq *q)
{
    wnode *n;
    while ((n = q->head) != NULL) {
        wq_unlink(q, n);
        if (sl__park_claim(&n->s->pk, SL__CLAIMED)) {
            n->s->fired = n->idx;
            n->s->err = SL_ECLOSED;
            sl__park_finish(&n->s->pk, SL__DONE);
        }
    }
}

int sl_chan_close(sl_chan *ch)
{
    if (!ch) return SL_EINVAL;
    sl__lock_acquire(&ch->lock);
    if (ch->closed) {
        sl__lock_release(&ch->lock);
        return SL_ECLOSED;
    }
    ch->closed = true;
    close_queue(&ch->recvq);
    close_queue(&ch->sendq);
    sl__lock_release(&ch->lock);
    return 0;
}

size_t sl_chan_len(sl_chan *ch)
{
    if (!ch) return 0;
    sl__lock_acquire(&ch->lock);
    size_t n = ch->count;
    sl__lock_release(&ch->lock);
    return n;
}

size_t sl_chan_cap(const sl_chan *ch)
{
    return ch ? ch->cap : 0;
}

bool sl_chan_closed(sl_chan *ch)
{
    if (!ch) return false;
    sl__lock_acquire(&ch->lock);
    bool c = ch->closed;
    sl__lock_release(&ch->lock);
    return c;
}

/* ---- select --------------------------------------------------------------------------------- */

static _Thread_local uint32_t t_rng;

static uint32_t rng_next(void)
{
    uint32_t x = t_rng;
    if (x == 0) x = (uint32_t)(uintptr_t)&t_rng | 1u;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    t_rng = x;
    return x;
}

static int cmp_chan(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t) * (sl_chan *const *)a, y = (uintptr_t) * (sl_chan *const *)b;
    return x < y ? -1 : x > y;
}

/* Locks the distinct channels of cases in address order; returns how many (in order[]). */
static size_t lock_all(const sl_chan_case *cases, size_t n, sl_chan **order)
{
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (cases[i].chan) order[m++] = cases[i].chan;
    qsort(order, m, sizeof(*order), cmp_chan);
    size_t u = 0;
    for (size_t i = 0; i < m; i++)
        if (u == 0 || order[u - 1] != order[i]) order[u++] = order[i];
    for (size_t i = 0; i < u; i++)
        sl__lock_acquire(&order[i]->lock);
    return u;
}

static void unlock_all(sl_chan **order, size_t u)
{
    for (size_t i = u; i-- > 0;)
        sl__lock_release(&order[i]->lock);
}

static int validate_cases(const sl_chan_case *cases, size_t n, bool *any)
{
    if (!cases || n == 0 || n > CASES_MAX) return SL_EINVAL;
    *any = false;
    for (size_t i = 0; i < n; i++) {
        if (cases[i].dir != SL_CHAN_SEND && cases[i].dir != SL_CHAN_RECV) return SL_EINVAL;
        if (!cases[i].chan) continue;
        if (cases[i].dir == SL_CHAN_SEND && !cases[i].elem) return SL_EINVAL;
        *any = true;
    }
    return 0;
}

/* Tries every case once, starting at a random one, with all locks held. Returns the index done
 * (result in *err) or -1. */
static int poll_locked(const sl_chan_case *cases, size_t n, int *err, sl__parker **fin)
{
    size_t start = rng_next() % n;
    for (size_t k = 0; k < n; k++) {
        size_t i = start + k < n ? start + k : start + k - n;
        const sl_chan_case *c = &cases[i];
        if (!c->chan) continue;
        int rc = c->dir == SL_CHAN_SEND ? send_locked(c->chan, c->elem, NULL, fin)
                                        : recv_locked(c->chan, c->elem, NULL, fin);
        if (rc == 0 || rc == SL_ECLOSED) {
            *err = rc;
            return (int)i;
        }
    }
    return -1;
}

/* Waits for the ctx alone (every case is switched off). */
static int wait_ctx_only(sl_ctx *ctx)
{
    if (!sl__ctx_can_be_done(ctx)) return SL_EDEADLK;
    sel s = {0};
    sl__parker_init(&s.pk);
    wait_sel(&s, ctx);
    return s.err;
}

static int select_impl(sl_chan_case *cases, size_t n, int *err_out, sl_ctx *ctx, bool block)
{
    bool any;
    int rc = validate_cases(cases, n, &any);
    if (rc) return rc;
    if (!any) return block ? wait_ctx_only(ctx) : SL_EAGAIN;

    sl_chan *order_stack[STACK_N];
    wnode nodes_stack[STACK_N];
    sl_chan **order = order_stack;
    wnode *nodes = nodes_stack;
    if (n > STACK_N) {
        order = malloc(n * sizeof(*order));
        nodes = malloc(n * sizeof(*nodes));
        if (!order || !nodes) {
            free(order);
            free(nodes);
            return SL_ENOMEM;
        }
    }

    sl__parker *fin = NULL;
    int err = 0;
    size_t u = lock_all(cases, n, order);
    int idx = poll_locked(cases, n, &err, &fin);
    int ctx_err = idx < 0 && block ? sl_ctx_err(ctx) : 0;
    if (idx >= 0 || !block || ctx_err) {
        unlock_all(order, u);
        finish_peer(fin);
        if (idx >= 0 && err_out) *err_out = err;
        rc = idx >= 0 ? idx : (ctx_err ? ctx_err : SL_EAGAIN);
        goto out;
    }

    sel s = {0};
    sl__parker_init(&s.pk);
    for (size_t i = 0; i < n; i++) {
        nodes[i] = (wnode){.s = &s, .elem = cases[i].elem, .idx = (int)i};
        sl_chan *ch = cases[i].chan;
        if (ch) wq_push(cases[i].dir == SL_CHAN_SEND ? &ch->sendq : &ch->recvq, &nodes[i]);
    }
    unlock_all(order, u);

    uint32_t st = wait_sel(&s, ctx);
    for (size_t i = 0; i < n; i++)
        if (cases[i].chan) unlink_node(cases[i].chan, &nodes[i], cases[i].dir);
    if (st == SL__CANCELED) {
        rc = s.err;
    } else {
        if (err_out) *err_out = s.err;
        rc = s.fired;
    }
out:
    if (n > STACK_N) {
        free(order);
        free(nodes);
    }
    return rc;
}

int sl_chan_select(sl_chan_case *cases, size_t n, int *err_out, sl_ctx *ctx)
{
    return select_impl(cases, n, err_out, ctx, true);
}

int sl_chan_try_select(sl_chan_case *cases, size_t n, int *err_out)
{
    return select_impl(cases, n, err_out, NULL, false);
}

int sl_chan_select_recv(sl_chan **chans, size_t n, void *out, sl_ctx *ctx)
{
    if (!chans || n == 0 || n > CASES_MAX) return SL_EINVAL;
    sl_chan_case stack[STACK_N];
    sl_chan_case *cases = stack;
    if (n > STACK_N && !(cases = malloc(n * sizeof(*cases)))) return SL_ENOMEM;
    size_t open = 0;
    size_t esz = 0;
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        cases[i] = (sl_chan_case){.chan = chans[i], .dir = SL_CHAN_RECV, .elem = out};
        if (!chans[i]) continue;
        if (esz && chans[i]->esz != esz) rc = SL_EINVAL;
        esz = chans[i]->esz;
        open++;
    }
    if (open == 0) rc = SL_EINVAL;
    while (rc == 0) {
        int err = 0;
        int i = select_impl(cases, n, &err, ctx, true);
        if (i < 0 || err == 0) {
            rc = i;
            break;
        }
        cases[i].chan = NULL; /* closed and drained: skip it from now on */
        if (--open == 0) rc = SL_ECLOSED;
    }
    if (cases != stack) free(cases);
    return rc;
}

void sl__chan_waiters(sl_chan *ch, size_t *senders, size_t *receivers)
{
    size_t s = 0, r = 0;
    sl__lock_acquire(&ch->lock);
    for (wnode *n = ch->sendq.head; n; n = n->next)
        s++;
    for (wnode *n = ch->recvq.head; n; n = n->next)
        r++;
    sl__lock_release(&ch->lock);
    if (senders) *senders = s;
    if (receivers) *receivers = r;
}
