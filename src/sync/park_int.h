/* Private to sluice's waiting primitives: a small futex lock and the one waiter every blocking
 * sluice call parks on (sl__parker), for a task or a thread alike.
 *
 * sl__lock is a three-state futex mutex (0 free, 1 held, 2 held with sleepers) that spins a
 * little before sleeping: the sections it guards are a few dozen instructions, so a short spin
 * usually wins the lock without a system call. TSan sees its acquire/release atomics, so it
 * checks code under it like any mutex.
 *
 * A parker is a uint32 parking word plus its owner: the task that waits (sl__task_self() when
 * the parker was set up) or NULL for a plain thread. The word's low bits are set by whoever
 * completes the waiter, and its SL__PARKED bit says the owner sleeps (a thread in futex_wait, a
 * task in sl__task_park). The owner is read from the parker BEFORE the final state is
 * published, because the waiter may return (and its stack frame vanish) the moment it sees it.
 *
 * Thread owner: the completer swaps in the final state with one atomic exchange and calls
 * futex_wake only if the old value had SL__PARKED, touching nothing after the exchange. A
 * futex_wake on an address that is no longer a futex at worst wakes some other futex
 * spuriously, which every futex user tolerates.
 *
 * Task owner: sl__task_unpark needs the task alive, and a task can return from sl__task_park
 * early (a permit left by an unpark meant for an earlier wait), see the final state and run on
 * to its end. So a completer that finds SL__PARKED publishes the final state together with
 * SL__WAKING, unparks, and only then clears SL__WAKING (its last touch of the parker); the task
 * does not leave a wait while SL__WAKING is set. That window is one unpark call on another
 * thread (on the task's own loop it cannot be observed: tasks are cooperative). */
#ifndef SLUICE_SYNC_PARK_INT_H
#define SLUICE_SYNC_PARK_INT_H

#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "base/base_int.h" /* sl__cpu_relax */
#include "sync/task_link.h"

static inline void sl__futex_wait(_Atomic uint32_t *addr, uint32_t expect)
{
    syscall(SYS_futex, (void *)addr, FUTEX_WAIT_PRIVATE, expect, NULL, NULL, 0);
}

/* Like sl__futex_wait, but gives up at the absolute CLOCK_MONOTONIC instant abs. */
static inline void sl__futex_wait_abs(_Atomic uint32_t *addr, uint32_t expect,
                                      const struct timespec *abs)
{
    syscall(SYS_futex, (void *)addr, FUTEX_WAIT_BITSET_PRIVATE, expect, abs, NULL,
            FUTEX_BITSET_MATCH_ANY);
}

static inline void sl__futex_wake(_Atomic uint32_t *addr, int n)
{
    syscall(SYS_futex, (void *)addr, FUTEX_WAKE_PRIVATE, n, NULL, NULL, 0);
}

/* Spin iterations before sleeping (each a pause instruction, ~10-40 ns). Measured in
 * bench/chan.c: without spinning, ping-pong costs a futex round trip per message. The parking
 * spin is a variable (defined in chan.c) so the bench can compare settings side by side. */
#define SL__LOCK_SPIN         100
#define SL__PARK_SPIN_DEFAULT 1000
extern int sl__park_spins;
extern int sl__park_spin_floor; /* the adaptive budget never drops below this */

typedef struct sl__lock {
    _Atomic uint32_t v; /* 0 free, 1 held, 2 held and someone may sleep on it */
} sl__lock;

#define SL__LOCK_INIT \
    {                 \
        0             \
    }

static inline void sl__lock_slow(sl__lock *l)
{
    for (int i = 0; i < SL__LOCK_SPIN; i++) {
        uint32_t z = 0;
        if (atomic_load_explicit(&l->v, memory_order_relaxed) == 0 &&
            atomic_compare_exchange_weak_explicit(&l->v, &z, 1, memory_order_acquire,
                                                  memory_order_relaxed))
            return;
        sl__cpu_relax();
    }
    while (atomic_exchange_explicit(&l->v, 2, memory_order_acquire) != 0)
        sl__futex_wait(&l->v, 2);
}

static inline void sl__lock_acquire(sl__lock *l)
{
    uint32_t z = 0;
    if (!atomic_compare_exchange_strong_explicit(&l->v, &z, 1, memory_order_acquire,
                                                 memory_order_relaxed))
        sl__lock_slow(l);
}

static inline void sl__lock_release(sl__lock *l)
{
    if (atomic_exchange_explicit(&l->v, 0, memory_order_release) == 2) sl__futex_wake(&l->v, 1);
}

/* Parking word states (low bits) and flags. */
enum {
    SL__WAITING = 0,  /* nobody has completed the waiter yet */
    SL__CLAIMED = 1,  /* a completer owns it and is copying data; final state follows */
    SL__DONE = 2,     /* final: completed by a peer (see the owner's result fields) */
    SL__CANCELED = 3, /* final: the ctx fired first (or the wait timed out) */
    SL__STATE_MASK = 0xf,
    SL__PARKED = 0x10, /* the owner sleeps (or is about to): the completer must wake it */
    SL__WAKING = 0x20, /* task owner only: a completer is unparking it and still holds it */
};

/* One waiter. Threads: word is atomic; task is written by the owner before the parker is
 * published and is immutable after. */
typedef struct sl__parker {
    _Atomic uint32_t word;
    struct sl_task *task; /* the waiting task, or NULL for a plain thread */
} sl__parker;

/* Sets p up for a wait by the calling task or thread. */
static inline void sl__parker_init(sl__parker *p)
{
    atomic_store_explicit(&p->word, SL__WAITING, memory_order_relaxed);
    p->task = sl__task_self();
}

/* Moves a WAITING word to `to` (CLAIMED or CANCELED). Returns false if it was not WAITING (a
 * completer or the ctx got there first). */
static inline bool sl__park_claim(sl__parker *p, uint32_t to)
{
    uint32_t old = atomic_load_explicit(&p->word, memory_order_relaxed);
    for (;;) {
        if ((old & SL__STATE_MASK) != SL__WAITING) return false;
        if (atomic_compare_exchange_weak_explicit(&p->word, &old, to | (old & SL__PARKED),
                                                  memory_order_acq_rel, memory_order_relaxed))
            return true;
    }
}

/* Publishes a final state on a parker this thread claimed (or on a WAITING one, for the ctx
 * hook path) and wakes the owner if it sleeps. The parker must not be touched afterwards. */
static inline void sl__park_finish(sl__parker *p, uint32_t final)
{
    struct sl_task *t = p->task; /* before publishing: p may vanish right after */
    if (!t) {
        uint32_t old = atomic_exchange_explicit(&p->word, final, memory_order_acq_rel);
        if (old & SL__PARKED) sl__futex_wake(&p->word, 1);
        return;
    }
    uint32_t old = atomic_load_explicit(&p->word, memory_order_relaxed), next;
    do
        next = final | ((old & SL__PARKED) ? SL__WAKING : 0);
    while (!atomic_compare_exchange_weak_explicit(&p->word, &old, next, memory_order_acq_rel,
                                                  memory_order_relaxed));
    if (!(old & SL__PARKED)) return;
    sl__task_unpark(t);
    atomic_store_explicit(&p->word, final, memory_order_release);
}

/* Owner side: spins up to `spins` times for a final state; returns it, or SL__WAITING. Never
 * spins for a task (its loop could not run the peer meanwhile). */
static inline uint32_t sl__park_spin(sl__parker *p, int spins)
{
    if (p->task) return SL__WAITING;
    for (int i = 0; i < spins; i++) {
        uint32_t s = atomic_load_explicit(&p->word, memory_order_acquire) & SL__STATE_MASK;
        if (s >= SL__DONE) return s;
        sl__cpu_relax();
    }
    return SL__WAITING;
}

/* Owner side: parks the task until a final state is published and its completer let go.
 * SL__WAKING lasts one sl__task_unpark call on another thread, but on an oversubscribed
 * machine that thread is often preempted right there (the wake-up it just sent runs first), so
 * after a few pauses the wait gives its CPU away (sched_yield) instead of spinning through the
 * completer's time slice: measured on 2 shared CPUs, ping-pong across loops went from ~5 ms
 * to ~20 us per message. */
static inline uint32_t sl__park_wait_task(sl__parker *p)
{
    int pauses = 0;
    for (;;) {
        uint32_t old = atomic_load_explicit(&p->word, memory_order_acquire);
        if ((old & SL__STATE_MASK) >= SL__DONE) {
            if (!(old & SL__WAKING)) return old & SL__STATE_MASK;
            if (pauses++ < 64)
                sl__cpu_relax();
            else
                sched_yield();
            continue;
        }
        if (!(old & SL__PARKED) &&
            !atomic_compare_exchange_weak_explicit(&p->word, &old, old | SL__PARKED,
                                                   memory_order_acq_rel, memory_order_acquire))
            continue;
        sl__task_park();
    }
}

/* Owner side (thread): sleeps until the word holds a final state, or, if abs is not NULL,
 * until the CLOCK_MONOTONIC instant *abs; returns the final state or SL__WAITING (timed out:
 * the caller must then claim its own parker to stop a late completer). */
static inline uint32_t sl__park_wait_thread(sl__parker *p, const struct timespec *abs)
{
    for (;;) {
        uint32_t old = atomic_load_explicit(&p->word, memory_order_acquire);
        if ((old & SL__STATE_MASK) >= SL__DONE) return old & SL__STATE_MASK;
        if (!(old & SL__PARKED)) {
            if (!atomic_compare_exchange_weak_explicit(&p->word, &old, old | SL__PARKED,
                                                       memory_order_acq_rel, memory_order_acquire))
                continue;
            old |= SL__PARKED;
        }
        if (!abs) {
            sl__futex_wait(&p->word, old);
            continue;
        }
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec > abs->tv_sec || (now.tv_sec == abs->tv_sec && now.tv_nsec >= abs->tv_nsec))
            return SL__WAITING;
        sl__futex_wait_abs(&p->word, old, abs);
    }
}

/* Owner side: waits (parks the task, or sleeps the thread) until the parker holds a final
 * state (DONE or CANCELED) and returns it. */
static inline uint32_t sl__park_wait(sl__parker *p)
{
    return p->task ? sl__park_wait_task(p) : sl__park_wait_thread(p, NULL);
}

#endif /* SLUICE_SYNC_PARK_INT_H */
