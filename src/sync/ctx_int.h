/* Private to the sl_ctx implementation (ctx.c, timer.c, signal_ctx.c): the node layout and the
 * cross-file hooks between the tree and the deadline timer. Other primitives use sync_int.h. */
#ifndef SLUICE_SYNC_CTX_INT_H
#define SLUICE_SYNC_CTX_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "sluice/ctx.h"
#include "sync/sync_int.h"
#include "sync/task_link.h"

enum {
    CTX_BG = 1,        /* the static background ctx */
    CTX_CAN_DONE = 2,  /* some node on the chain can be cancelled or has a deadline */
    CTX_HAS_VALUE = 4, /* key/value are set */
    CTX_HAS_TIMER = 8, /* this node owns a deadline in the timer heap */
};

enum { HOOK_PENDING, HOOK_RUNNING, HOOK_DONE };

/* An on-done callback. Heap hooks (sl_ctx_on_done) own a memory reference on ctx; internal
 * waiters (sync_int.h) live on a waiting thread's stack and borrow the caller's reference. */
struct sl_ctx_hook {
    struct sl_ctx_hook *prev, *next; /* in ctx->hooks while PENDING; guarded by ctx->mu */
    sl_ctx *ctx;                     /* NULL for a hook on the background ctx; immutable */
    sl_ctx_done_fn fn;
    void *arg;
    int state;               /* HOOK_*; guarded by ctx->mu */
    pthread_t runner;        /* thread running fn while RUNNING; guarded by ctx->mu */
    struct sl_task *stopper; /* task parked until fn returns (unparked by the runner); mu */
    bool stop_in_fn; /* hook_stop was called from inside fn: the firer frees; guarded by mu */
    bool heap;       /* allocated by sl_ctx_on_done (freed by hook_stop) */
};

struct sl_ctx {
    _Atomic int err;    /* 0 while not done, else the first cause; written once by CAS */
    atomic_int refs;    /* strong references: owners + children; 0 => cancel, detach */
    atomic_int mrefs;   /* memory references: 1 for "strong alive" + hooks + timer + cancels */
    unsigned flags;     /* CTX_*; immutable */
    sl_ctx *parent;     /* strong reference; NULL when the parent is background; immutable */
    int64_t deadline;   /* effective deadline, sl_now_ns() instant or SL_FOREVER; immutable */
    const void *key;    /* immutable */
    void *value;        /* immutable */
    pthread_mutex_t mu; /* guards children, hooks, hook states */
    pthread_cond_t cv;  /* CLOCK_MONOTONIC; sl_ctx_wait waiters and hook_stop wait here */
    sl_ctx *children;   /* first live child; guarded by mu */
    sl_ctx *sib_prev;   /* sibling links; guarded by parent->mu */
    sl_ctx *sib_next;
    struct sl_ctx_hook *hooks, *hooks_tail; /* PENDING hooks, FIFO; guarded by mu */
    sl_ctx *visit_next; /* cancel scratch: pushed only by the parent's cancel winner */
    sl_ctx *won_next;   /* cancel scratch: linked only by this node's cancel winner */
    bool won_hooks;     /* cancel scratch: hooks were pending when the winner took mu */
    int heap_idx;       /* index in the timer heap or -1; guarded by the timer's lock */
};

/* Registers h (caller storage, e.g. a waiter's stack) to run fn(arg, err) once on the thread
 * that makes ctx done. Borrows the caller's reference on ctx. Returns 0, or ctx's error if it is
 * already done (then h is not registered and fn never runs). For the background ctx (never done)
 * it registers nothing and returns 0. Every 0 return must be paired with sl__ctx_hook_del. */
int sl__ctx_hook_add(sl_ctx *ctx, struct sl_ctx_hook *h, sl_ctx_done_fn fn, void *arg);

/* Unregisters h; if fn is running on another thread, waits (a task parks) until it returned, so
 * fn's arg may leave scope right after. Never call it with a lock that fn takes. */
void sl__ctx_hook_del(struct sl_ctx_hook *h);

/* Cancels ctx's subtree with cause (first cause wins). Caller guarantees ctx stays allocated. */
void sl__ctx_cancel_cause(sl_ctx *ctx, int cause);

/* Takes / drops a memory reference; the last drop frees the node. */
void sl__ctx_mref(sl_ctx *ctx);
void sl__ctx_munref(sl_ctx *ctx);

/* Timer (timer.c). add: takes a memory reference on ctx and arms its deadline; returns 0 or
 * SL_ENOMEM / SL_EAGAIN (thread could not start). remove: disarms (no-op if not armed). */
int sl__ctx_timer_add(sl_ctx *ctx);
void sl__ctx_timer_remove(sl_ctx *ctx);

/* The absolute timespec for a CLOCK_MONOTONIC instant in ns (ctx.c waits, timer.c's thread).
 * A negative instant would give a negative tv_nsec, which pthread_cond_timedwait rejects with
 * EINVAL (read as "woken"): it is clamped to 0, which is just as much in the past. */
static inline void sl__abs_timespec(int64_t ns, struct timespec *ts)
{
    if (ns < 0) ns = 0;
    ts->tv_sec = (time_t)(ns / 1000000000LL);
    ts->tv_nsec = (long)(ns % 1000000000LL);
}

#endif
