/* Private to sluice: the task runtime's internals, and the three functions every sluice wait
 * uses to park a task (sl__task_self / sl__task_park / sl__task_unpark).
 *
 * A task's header (struct sl_task) lives at the top of its own stack slot, so a spawn is one
 * cached slot and no malloc. Below the header is the stack; below the stack a guard page.
 * A scheduler (struct sl__sched) per loop thread runs tasks from its run queue: a 256-slot
 * ring (owner pushes at tail; owner and thieves take at head with a CAS, as Go's runq), an
 * owner-only overflow list, and an inbox (lock-free MPSC stack) that other threads push
 * woken or spawned tasks onto. */
#ifndef SLUICE_TASK_INT_H
#define SLUICE_TASK_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sluice/task.h"
#include "loop/reactor.h"

/* ---- the contract with src/sync (exact names) ------------------------------------------ */

struct sl_task; /* opaque outside src/task */

/* The task running on the calling thread, or NULL on a plain thread (including a loop
 * thread while it runs loop callbacks rather than a task). Cheap (a thread-local read). */
struct sl_task *sl__task_self(void);

/* Task only. Suspends the calling task until a permit is available, then consumes it. Each
 * task has ONE binary permit: sl__task_unpark sets it; if it was set before sl__task_park is
 * called, park returns at once. Callers re-check their condition in a loop. */
void sl__task_park(void);

/* Any thread. Sets t's permit and, if t is parked, makes it runnable on its loop (a
 * cross-thread post when called from another thread). unpark → park-return is a
 * release/acquire edge. t must be alive (a task cannot finish inside sl__task_park). */
void sl__task_unpark(struct sl_task *t);

/* ---- context switch (switch.c) --------------------------------------------------------- */

/* SLUICE_TASK_UCONTEXT forces the portable fallback (to test it on x86-64). */
#if (defined(__x86_64__) || defined(__aarch64__)) && !defined(SLUICE_TASK_UCONTEXT)
#define SL__TASK_ASM 1
typedef struct sl__cpu {
    void *sp; /* saved stack pointer; callee-saved registers are pushed below it */
} sl__cpu;
#else
#include <ucontext.h>
typedef struct sl__cpu {
    ucontext_t uc;
} sl__cpu;
#endif

/* Prepares c to start entry(arg) on the stack [lo, hi) (hi 16-byte aligned). entry must
 * never return. */
void sl__cpu_make(sl__cpu *c, char *lo, char *hi, void (*entry)(void *), void *arg);

/* Saves the caller's registers in from and resumes to. Returns when something switches back
 * to from. */
#if defined(SL__TASK_ASM)
void sl__ctx_swap(void **save_sp, void *to_sp);
static inline void sl__cpu_switch(sl__cpu *from, sl__cpu *to)
{
    sl__ctx_swap(&from->sp, to->sp);
}
#else
void sl__cpu_switch(sl__cpu *from, sl__cpu *to);
#endif

/* ---- tasks, stacks, schedulers ---------------------------------------------------------- */

struct sl__sched;

enum { SL__T_IDLE = 0, SL__T_NOTIFIED = 1, SL__T_PARKED = 2 };

struct sl_task {
    sl__cpu cpu;                     /* registers while switched out */
    struct sl__sched *_Atomic sched; /* the loop it runs (or will run) on */
    _Atomic int state;               /* SL__T_*: the permit and the parked flag */
    struct sl_task *_Atomic next;    /* inbox / overflow / free-list link */
    sl_task_fn fn;
    void *arg;
    const char *name; /* never NULL */
    struct sl_runtime *rt;
    char *lo, *hi;    /* usable stack [lo, hi) */
    int pin;          /* > 0: must stay on its loop (an fd wait is registered there) */
    bool done;        /* set by the task itself just before its last switch */
    bool guarded;     /* a PROT_NONE page lies just below lo */
    uint64_t *canary; /* unguarded: the word just below lo (top of the slot below), or NULL */
    bool in_use;      /* spawned and not finished (read at shutdown, after joins) */
    void *tsan_fiber;
    void *asan_fake;
    struct sl__slab *slab;
};

#define SL__RING 256

typedef struct sl__sched {
    sl__reactor r; /* the loop; r.data points back here */
    struct sl_runtime *rt;
    int idx; /* 0-based */
    pthread_t thr;
    sl__cpu main;            /* the scheduler's context on the loop thread's own stack */
    struct sl_task *cur;     /* loop thread only */
    struct sl_task *yielded; /* loop thread only: requeue after the switch back */

    _Alignas(64) _Atomic uint32_t head; /* taken by the owner and thieves (CAS) */
    _Atomic uint32_t tail;              /* written by the owner only */
    _Atomic(struct sl_task *) ring[SL__RING];
    struct sl_task *ovf_head, *ovf_tail; /* loop thread only */

    _Alignas(64) struct sl_task *_Atomic inbox; /* MPSC Treiber stack */
    _Atomic int sleeping;                       /* 1 while blocked (or about to) in epoll */

    _Alignas(64) struct sl_task *cache; /* free stack slots, loop thread only */
    int ncache;
    uint64_t ticks;
    int64_t last_poll;             /* ns, sl_mono_ns() of the last epoll look */
    uint32_t spin_credit;          /* a lone loop's failed spins left before it stops spinning */
    uint32_t spin_skips;           /* idle moments a lone loop did not spin (tries every 64th) */
    _Atomic uint64_t switches;     /* watchdog: bumped each time a task starts running */
    _Atomic(const char *) running; /* watchdog: name of the running task, NULL if none */

    void *tsan_fiber;
    const void *asan_bottom;
    size_t asan_size;
    void *asan_fake;
    void *altstack;
} sl__sched;

/* One mmap of SLAB stack slots (stack.c). */
struct sl__slab {
    struct sl__slab *next;
    char *base;
    size_t len;
};

struct sl_runtime {
    int nloops;
    sl__sched *loops;
    size_t stack_size; /* usable bytes per stack, page multiple */
    size_t slot_size;  /* guard + stack */
    int64_t watchdog_ns;
    int64_t grace_ns;
    sl_ctx *ctx;
    _Atomic int64_t live;  /* spawned, not returned */
    _Atomic int nsleeping; /* loops blocked in epoll */
    _Atomic uint32_t rr;   /* round-robin spawn cursor */
    _Atomic bool closed;   /* no more spawns */
    _Atomic bool stop;     /* loops leave their scheduler */
    bool shut;             /* shutdown ran (guarded by mu) */
    int users;             /* servers attached to the loops (guarded by mu) */
    int refs;              /* holders of loop memory (sl__runtime_ref; guarded by mu) */
    bool free_pending;     /* sl_runtime_free ran while refs > 0 (guarded by mu) */
    int abandoned;

    pthread_mutex_t mu;     /* slabs, free list, shutdown wait */
    pthread_cond_t cv;      /* live reached 0 */
    _Atomic bool waiting;   /* shutdown waits for live == 0 */
    struct sl__slab *slabs; /* guarded by mu */
    struct sl_task *free;   /* guarded by mu: warm free slots */
    struct sl_task *cold;   /* guarded by mu: free slots whose stack pages were dropped */
    int nfree;              /* guarded by mu: length of free */
    _Atomic int nfree_hint; /* nfree, for a lock-free look */

    pthread_t wd_thr; /* watchdog */
    bool wd_started;
    bool wd_stop; /* guarded by mu */
    pthread_cond_t wd_cv;

    struct sl__offload *off;
};

/* A server borrows rt's loops: sl_runtime_shutdown returns SL_EBUSY while any is attached.
 * attach returns 0, or SL_ECLOSED when rt was shut down already. */
int sl__runtime_attach(sl_runtime *rt);
void sl__runtime_detach(sl_runtime *rt);

/* Keeps rt's memory (its loops' reactors) alive after sl_runtime_free, for a component that
 * registered on a loop and cleans up later from another thread (a Redis limiter attached
 * lazily by a task). sl_runtime_free still shuts the runtime down, but the last unref frees
 * it. Any thread. */
void sl__runtime_ref(sl_runtime *rt);
void sl__runtime_unref(sl_runtime *rt);

/* The reactor of the loop the calling thread runs (a task's current loop, or a loop callback's),
 * or NULL on a plain thread. Never cached across a switch. */
sl__reactor *sl__loop_self(void);

/* The scheduler of the calling thread, or NULL. Never cached across a switch: a task may
 * resume on another thread. */
sl__sched *sl__sched_self(void);

/* stack.c */
int sl__stack_get(sl_runtime *rt, sl__sched *s, struct sl_task **out);
void sl__stack_put(sl_runtime *rt, sl__sched *s, struct sl_task *t);
void sl__stack_free_all(sl_runtime *rt);
struct sl_task *sl__slot_task(sl_runtime *rt, char *slot); /* the header of a slot */
int sl__overflow_install(void);
int sl__altstack_start(sl__sched *s);
void sl__altstack_stop(sl__sched *s);
void sl__stack_check(struct sl_task *t); /* canary of unguarded stacks */
/* Idle loops: drops the pages of surplus free slots; true if it did some. */
bool sl__stack_trim(sl_runtime *rt);
/* Tests: how many more guard pages new stacks may get (the lowest slot of a slab always gets
 * one). */
void sl__stack_guard_budget(long n);

/* offload.c */
int sl__offload_start(sl_runtime *rt, int threads);
void sl__offload_stop(sl_runtime *rt);

/* Pins/unpins the calling task to its current loop (no stealing) around an fd wait. */
void sl__task_pin(struct sl_task *t, int delta);

#endif
