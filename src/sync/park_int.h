/* Private to src/sync: a small futex lock and a one-shot parking word, shared by chan.c and
 * group.c.
 *
 * sl__lock is a three-state futex mutex (0 free, 1 held, 2 held with sleepers) that spins a
 * little before sleeping: the sections it guards are a few dozen instructions, so a short spin
 * usually wins the lock without a system call. TSan sees its acquire/release atomics, so it
 * checks code under it like any mutex.
 *
 * The parking word is a uint32 state whose low bits are set by whoever completes the waiter
 * and whose SL__PARKED bit says the owner sleeps in futex_wait. A completer swaps in the final
 * state with one atomic exchange and calls futex_wake only if the old value had SL__PARKED: it
 * never reads the waiter's memory after that exchange, because the waiter may return (and its
 * stack frame vanish) the moment it sees the final state. A futex_wake on an address that is no
 * longer a futex at worst wakes some other futex spuriously, which every futex user tolerates. */
#ifndef SLUICE_SYNC_PARK_INT_H
#define SLUICE_SYNC_PARK_INT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "base/base_int.h" /* sl__cpu_relax */

static inline void sl__futex_wait(_Atomic uint32_t *addr, uint32_t expect)
{
    syscall(SYS_futex, (void *)addr, FUTEX_WAIT_PRIVATE, expect, NULL, NULL, 0);
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

/* Parking word states (low bits) and the parked flag. */
enum {
    SL__WAITING = 0,  /* nobody has completed the waiter yet */
    SL__CLAIMED = 1,  /* a completer owns it and is copying data; final state follows */
    SL__DONE = 2,     /* final: completed by a peer (see the owner's result fields) */
    SL__CANCELED = 3, /* final: the ctx fired first */
    SL__STATE_MASK = 0xf,
    SL__PARKED = 0x10,
};

/* Moves a WAITING word to `to` (CLAIMED or CANCELED). Returns false if it was not WAITING (a
 * completer or the ctx got there first). */
static inline bool sl__park_claim(_Atomic uint32_t *w, uint32_t to)
{
    uint32_t old = atomic_load_explicit(w, memory_order_relaxed);
    for (;;) {
        if ((old & SL__STATE_MASK) != SL__WAITING) return false;
        if (atomic_compare_exchange_weak_explicit(w, &old, to | (old & SL__PARKED),
                                                  memory_order_acq_rel, memory_order_relaxed))
            return true;
    }
}

/* Publishes a final state on a word this thread claimed (or on a WAITING word, for the ctx
 * hook path) and wakes the owner if it sleeps. The word must not be touched afterwards. */
static inline void sl__park_finish(_Atomic uint32_t *w, uint32_t final)
{
    uint32_t old = atomic_exchange_explicit(w, final, memory_order_acq_rel);
    if (old & SL__PARKED) sl__futex_wake(w, 1);
}

/* Owner side: spins up to `spins` times for a final state; returns it, or SL__WAITING. */
static inline uint32_t sl__park_spin(_Atomic uint32_t *w, int spins)
{
    for (int i = 0; i < spins; i++) {
        uint32_t s = atomic_load_explicit(w, memory_order_acquire) & SL__STATE_MASK;
        if (s >= SL__DONE) return s;
        sl__cpu_relax();
    }
    return SL__WAITING;
}

/* Owner side: sleeps until the word holds a final state (DONE or CANCELED) and returns it. */
static inline uint32_t sl__park_wait(_Atomic uint32_t *w)
{
    for (;;) {
        uint32_t old = atomic_load_explicit(w, memory_order_acquire);
        if ((old & SL__STATE_MASK) >= SL__DONE) return old & SL__STATE_MASK;
        if (!(old & SL__PARKED)) {
            if (!atomic_compare_exchange_weak_explicit(w, &old, old | SL__PARKED,
                                                       memory_order_acq_rel, memory_order_acquire))
                continue;
            old |= SL__PARKED;
        }
        sl__futex_wait(w, old);
    }
}

#endif /* SLUICE_SYNC_PARK_INT_H */
