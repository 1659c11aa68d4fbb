/* The M:N scheduler: tasks on loop threads, park/unpark, spawn, yield, stealing.
 *
 * Each loop thread runs sched_loop(): take a runnable task, switch to it, and when it switches
 * back (it parked, yielded or returned) take the next. Whenever the queue is empty, and every
 * 100 µs under load, the loop's epoll is polled without blocking, so fd events and posts keep
 * flowing. With nothing runnable the loop tries to steal half of another loop's ring,
 * spins a little (a wake from another loop is then caught without a system call), and finally
 * blocks in epoll_wait with `sleeping` set.
 *
 * Run queue (per loop): a 256-slot ring (owner puts at tail; owner and thieves take at head
 * with a CAS — Go's runq), an owner-only overflow FIFO behind it, and an inbox: a lock-free
 * MPSC stack that other threads push onto. Once the overflow is non-empty every put goes to
 * it, and it refills the ring when the ring runs dry, so the order stays FIFO and a yielding
 * task cannot starve the overflow.
 *
 * Park/unpark: each task has a state word, IDLE / NOTIFIED (the permit) / PARKED.
 *   park:   NOTIFIED→IDLE returns at once; else IDLE→PARKED and switch to the scheduler.
 *   unpark: PARKED→IDLE (the wake consumes the permit) and make the task runnable on its
 *           loop; else set NOTIFIED. One compare-and-swap on each side.
 * Why a parked task is never resumed before it has left its stack: unpark puts it either on
 * its loop's ring — only from that loop's own thread, which is busy running something else
 * — or on the loop's inbox, which only that thread drains, between tasks. Thieves take only
 * from rings. A task that yields is likewise requeued by its scheduler after the switch
 * back, never by itself. t->sched changes only when a thief takes t off a ring; an unparker
 * reads it after seeing PARKED, which t wrote after the last such change (acquire/release).
 *
 * The loops' wake-up: a loop sets `sleeping` then re-checks its inbox before epoll_wait; a
 * pusher pushes then reads `sleeping` (both seq_cst, so one sees the other) and writes the
 * loop's eventfd only if it wins the exchange of `sleeping` back to 0: one wake per sleep.
 *
 * Thread-locals are read through non-inlined functions after every switch: a task may resume
 * on another thread, and a compiler may keep the thread pointer in a register across a call. */
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sluice/clock.h"
#include "sluice/error.h"
#include "sluice/log.h"
#include "base/base_int.h"
#include "task/task_int.h"

#if defined(SLUICE_TSAN)
#include <sanitizer/tsan_interface.h>
#endif
#if defined(SLUICE_ASAN)
#include <sanitizer/common_interface_defs.h>
#endif

#define SPINS        256
#define POLL_EVERY   64
#define POLL_NS      SL_US(100)
#define MIN_STACK    ((size_t)16 * 1024)
#define REPORT_NAMES 16

static __thread sl__sched *tl_sched __attribute__((tls_model("initial-exec")));
static __thread struct sl_task *tl_cur __attribute__((tls_model("initial-exec")));

__attribute__((noinline)) sl__sched *sl__sched_self(void)
{
    sl__sched *s = tl_sched;
    __asm__ __volatile__("" ::: "memory");
    return s;
}

__attribute__((noinline)) struct sl_task *sl__task_self(void)
{
    struct sl_task *t = tl_cur;
    __asm__ __volatile__("" ::: "memory");
    return t;
}

__attribute__((noinline)) static void set_cur(struct sl_task *t)
{
    tl_cur = t;
}

/* ---- run queue ----------------------------------------------------------------------- */

static void wake_loop(sl__sched *s)
{
    if (atomic_load_explicit(&s->sleeping, memory_order_seq_cst) &&
        atomic_exchange_explicit(&s->sleeping, 0, memory_order_seq_cst)) {
        uint64_t one = 1;
        ssize_t n = write(s->r.evfd, &one, sizeof one);
        (void)n;
    }
}

/* Wakes one sleeping loop so it can steal (Go's wakep). */
static void wake_idle(sl_runtime *rt, sl__sched *self)
{
    for (int i = 0; i < rt->nloops; i++) {
        sl__sched *o = &rt->loops[i];
        if (o != self && atomic_load_explicit(&o->sleeping, memory_order_relaxed)) {
            wake_loop(o);
            return;
        }
    }
}

/* Owner only. Returns the number of tasks that were queued before t. */
static uint32_t put_raw(sl__sched *s, struct sl_task *t)
{
    uint32_t h = atomic_load_explicit(&s->head, memory_order_acquire);
    uint32_t tl = atomic_load_explicit(&s->tail, memory_order_relaxed);
    if (!s->ovf_head && tl - h < SL__RING) {
        atomic_store_explicit(&s->ring[tl % SL__RING], t, memory_order_relaxed);
        atomic_store_explicit(&s->tail, tl + 1, memory_order_release);
        return tl - h;
    }
    atomic_store_explicit(&t->next, NULL, memory_order_relaxed);
    if (s->ovf_tail)
        atomic_store_explicit(&s->ovf_tail->next, t, memory_order_relaxed);
    else
        s->ovf_head = t;
    s->ovf_tail = t;
    return SL__RING;
}

static void put_local(sl__sched *s, struct sl_task *t)
{
    if (put_raw(s, t) > 0 && atomic_load_explicit(&s->rt->nsleeping, memory_order_relaxed) > 0)
        wake_idle(s->rt, s);
}

static struct sl_task *pop_local(sl__sched *s)
{
    for (;;) {
        uint32_t h = atomic_load_explicit(&s->head, memory_order_acquire);
        uint32_t tl = atomic_load_explicit(&s->tail, memory_order_relaxed);
        if (h == tl) break;
        struct sl_task *t = atomic_load_explicit(&s->ring[h % SL__RING], memory_order_relaxed);
        if (atomic_compare_exchange_weak_explicit(&s->head, &h, h + 1, memory_order_acq_rel,
                                                  memory_order_relaxed))
            return t;
    }
    if (!s->ovf_head) return NULL;
    struct sl_task *t = s->ovf_head;
    s->ovf_head = atomic_load_explicit(&t->next, memory_order_relaxed);
    if (!s->ovf_head) s->ovf_tail = NULL;
    /* Refill the ring from the overflow so thieves can see the backlog. */
    uint32_t tl = atomic_load_explicit(&s->tail, memory_order_relaxed);
    for (int i = 0; i < SL__RING / 2 && s->ovf_head; i++) {
        struct sl_task *x = s->ovf_head;
        s->ovf_head = atomic_load_explicit(&x->next, memory_order_relaxed);
        atomic_store_explicit(&s->ring[tl % SL__RING], x, memory_order_relaxed);
        tl++;
    }
    if (!s->ovf_head) s->ovf_tail = NULL;
    atomic_store_explicit(&s->tail, tl, memory_order_release);
    return t;
}

static bool has_local(sl__sched *s)
{
    return atomic_load_explicit(&s->head, memory_order_relaxed) !=
               atomic_load_explicit(&s->tail, memory_order_relaxed) ||
           s->ovf_head;
}

static void push_inbox(sl__sched *s, struct sl_task *t)
{
    struct sl_task *old = atomic_load_explicit(&s->inbox, memory_order_relaxed);
    do {
        atomic_store_explicit(&t->next, old, memory_order_relaxed);
    } while (!atomic_compare_exchange_weak_explicit(&s->inbox, &old, t, memory_order_seq_cst,
                                                    memory_order_relaxed));
    wake_loop(s);
}

static void drain_inbox(sl__sched *s)
{
    struct sl_task *l = atomic_exchange_explicit(&s->inbox, NULL, memory_order_acquire);
    struct sl_task *fifo = NULL;
    while (l) {
        struct sl_task *next = atomic_load_explicit(&l->next, memory_order_relaxed);
        atomic_store_explicit(&l->next, fifo, memory_order_relaxed);
        fifo = l;
        l = next;
    }
    while (fifo) {
        struct sl_task *next = atomic_load_explicit(&fifo->next, memory_order_relaxed);
        put_raw(s, fifo);
        fifo = next;
    }
}

/* Takes up to half of v's ring. */
static uint32_t grab(sl__sched *v, struct sl_task **buf)
{
    for (;;) {
        uint32_t h = atomic_load_explicit(&v->head, memory_order_acquire);
        uint32_t tl = atomic_load_explicit(&v->tail, memory_order_acquire);
        uint32_t n = tl - h;
        n = n - n / 2;
        if (n == 0) return 0;
        if (n > SL__RING / 2) continue; /* torn read of head/tail: retry */
        for (uint32_t i = 0; i < n; i++)
            buf[i] = atomic_load_explicit(&v->ring[(h + i) % SL__RING], memory_order_relaxed);
        if (atomic_compare_exchange_weak_explicit(&v->head, &h, h + n, memory_order_acq_rel,
                                                  memory_order_relaxed))
            return n;
    }
}

static bool steal(sl__sched *s)
{
    sl_runtime *rt = s->rt;
    struct sl_task *buf[SL__RING / 2];
    bool got = false;
    for (int k = 1; k < rt->nloops && !got; k++) {
        sl__sched *v = &rt->loops[(s->idx + k) % rt->nloops];
        uint32_t n = grab(v, buf);
        for (uint32_t i = 0; i < n; i++) {
            if (buf[i]->pin) { /* an fd wait is registered on v: give it back */
                push_inbox(v, buf[i]);
            } else {
                put_raw(s, buf[i]);
                got = true;
            }
        }
    }
    return got;
}

/* ---- switching ----------------------------------------------------------------------- */

static void switch_in(sl__sched *s, struct sl_task *t)
{
#if defined(SLUICE_TSAN)
    __tsan_switch_to_fiber(t->tsan_fiber, 0);
#endif
#if defined(SLUICE_ASAN)
    __sanitizer_start_switch_fiber(&s->asan_fake, t->lo, (size_t)(t->hi - t->lo));
#endif
    sl__cpu_switch(&s->main, &t->cpu);
#if defined(SLUICE_ASAN)
    __sanitizer_finish_switch_fiber(s->asan_fake, NULL, NULL);
#endif
}

/* From the task t to the scheduler of the current thread. Returns when t runs again,
 * possibly on another loop. */
static void switch_out(struct sl_task *t, bool dying)
{
    sl__sched *s = sl__sched_self();
#if defined(SLUICE_TSAN)
    __tsan_switch_to_fiber(s->tsan_fiber, 0);
#endif
#if defined(SLUICE_ASAN)
    __sanitizer_start_switch_fiber(dying ? NULL : &t->asan_fake, s->asan_bottom, s->asan_size);
#else
    (void)dying;
#endif
    sl__cpu_switch(&t->cpu, &s->main);
#if defined(SLUICE_ASAN)
    const void *bottom;
    size_t size;
    __sanitizer_finish_switch_fiber(t->asan_fake, &bottom, &size);
    s = sl__sched_self();
    s->asan_bottom = bottom;
    s->asan_size = size;
#endif
}

static void task_entry(void *p)
{
    struct sl_task *t = p;
#if defined(SLUICE_ASAN)
    const void *bottom;
    size_t size;
    __sanitizer_finish_switch_fiber(NULL, &bottom, &size);
    sl__sched *s = sl__sched_self();
    s->asan_bottom = bottom;
    s->asan_size = size;
#endif
    t->fn(t->arg);
    t->done = true;
    switch_out(t, true);
    abort(); /* a finished task is never resumed */
}

static void task_finish(sl__sched *s, struct sl_task *t)
{
    sl_runtime *rt = s->rt;
    sl__stack_put(rt, s, t);
    if (atomic_fetch_sub_explicit(&rt->live, 1, memory_order_seq_cst) == 1 &&
        atomic_load_explicit(&rt->waiting, memory_order_seq_cst)) {
        pthread_mutex_lock(&rt->mu);
        pthread_cond_broadcast(&rt->cv);
        pthread_mutex_unlock(&rt->mu);
    }
}

static void run_task(sl__sched *s, struct sl_task *t)
{
    atomic_store_explicit(&t->sched, s, memory_order_relaxed);
    s->cur = t;
    set_cur(t);
    atomic_store_explicit(&s->running, t->name, memory_order_relaxed);
    atomic_store_explicit(&s->switches,
                          atomic_load_explicit(&s->switches, memory_order_relaxed) + 1,
                          memory_order_relaxed);
    switch_in(s, t);
    atomic_store_explicit(&s->running, NULL, memory_order_relaxed);
    set_cur(NULL);
    s->cur = NULL;
    if (t->done) {
        task_finish(s, t);
        return;
    }
    sl__stack_check(t);
    if (s->yielded) {
        struct sl_task *y = s->yielded;
        s->yielded = NULL;
        put_raw(s, y);
    }
}

/* Spins briefly for work from other threads; true if some arrived. A runtime of one loop has
 * nothing to steal: its spin only waits for other threads' posts (to its inbox, or to its
 * reactor), which also wake it through the eventfd. So a lone loop spins only while that pays:
 * while its reactor awaits posts (r.awaiting: a handler pool's requests in flight, whose
 * completions arriving during the spin cost one poll and no sleep), or for SPIN_CREDIT idle
 * moments after a spin that caught inbox work. Otherwise (its tasks wait on the network: a
 * Redis reply, the next request) it goes straight to epoll, trying a spin every 64th idle
 * moment, instead of burning its core each time. */
#define SPIN_CREDIT 4
static bool spin(sl__sched *s)
{
    bool lone = s->rt->nloops == 1;
    if (lone && s->r.awaiting == 0 && s->spin_credit == 0 && (++s->spin_skips & 63) != 0)
        return false;
    for (int i = 0; i < SPINS; i++) {
        if (atomic_load_explicit(&s->inbox, memory_order_relaxed) ||
            atomic_load_explicit(&s->rt->stop, memory_order_relaxed) ||
            ((i & 31) == 31 && steal(s))) {
            s->spin_credit = SPIN_CREDIT;
            return true;
        }
        sl__cpu_relax();
    }
    if (s->spin_credit > 0) s->spin_credit--;
    return false;
}

static void sched_loop(sl__sched *s)
{
    sl_runtime *rt = s->rt;
    for (;;) {
        if (atomic_load_explicit(&s->inbox, memory_order_relaxed)) drain_inbox(s);
        struct sl_task *t = pop_local(s);
        if (t) {
            run_task(s, t);
            /* What the task queued for its loop (an HTTP task route's done step) runs now, on
             * the loop's stack, without an eventfd round. */
            if (s->r.local) sl__reactor_run_local(&s->r);
            if ((++s->ticks % POLL_EVERY) == 0) {
                /* Under a steady stream of tasks, still look at the fds every POLL_NS (a clock
                 * read per 64 tasks; an epoll_wait per 64 would cost more than the switches). */
                int64_t now = sl_mono_ns();
                if (now - s->last_poll >= POLL_NS) {
                    s->last_poll = now;
                    sl__reactor_poll(&s->r, false);
                }
                if (atomic_load_explicit(&rt->stop, memory_order_relaxed)) break;
            }
            continue;
        }
        if (s->r.idle) {
            /* The run queue drained: what waits for the end of the round goes now (the Redis
             * limiter's batch of this round's checks), before any spinning or sleeping. */
            sl__reactor_run_idle(&s->r);
            if (s->r.local) sl__reactor_run_local(&s->r);
            continue;
        }
        if (atomic_load_explicit(&rt->stop, memory_order_acquire)) break;
        if (steal(s) || spin(s)) continue;
        s->last_poll = sl_mono_ns();
        sl__reactor_poll(&s->r, false);
        if (has_local(s)) continue;
        while (sl__stack_trim(rt) && !atomic_load_explicit(&s->inbox, memory_order_relaxed)) {
        }
        atomic_store_explicit(&s->sleeping, 1, memory_order_seq_cst);
        atomic_fetch_add_explicit(&rt->nsleeping, 1, memory_order_relaxed);
        if (!atomic_load_explicit(&s->inbox, memory_order_seq_cst) &&
            !atomic_load_explicit(&rt->stop, memory_order_seq_cst))
            sl__reactor_poll(&s->r, true);
        atomic_fetch_sub_explicit(&rt->nsleeping, 1, memory_order_relaxed);
        atomic_store_explicit(&s->sleeping, 0, memory_order_seq_cst);
    }
}

static void *loop_thread(void *arg)
{
    sl__sched *s = arg;
    tl_sched = s;
    (void)sl__altstack_start(s); /* without it an overflow is a bare SIGSEGV, nothing worse */
#if defined(SLUICE_TSAN)
    s->tsan_fiber = __tsan_get_current_fiber();
#endif
    sched_loop(s);
    sl__altstack_stop(s);
    tl_sched = NULL;
    return NULL;
}

/* ---- the contract ---------------------------------------------------------------------- */

void sl__task_park(void)
{
    struct sl_task *t = sl__task_self();
    if (!t) return;
    int old = atomic_load_explicit(&t->state, memory_order_acquire);
    for (;;) {
        if (old == SL__T_NOTIFIED) { /* consume the permit */
            if (atomic_compare_exchange_weak_explicit(&t->state, &old, SL__T_IDLE,
                                                      memory_order_acquire, memory_order_acquire))
                return;
            continue;
        }
        if (atomic_compare_exchange_weak_explicit(&t->state, &old, SL__T_PARKED,
                                                  memory_order_release, memory_order_acquire))
            break;
    }
    switch_out(t, false);
}

void sl__task_unpark(struct sl_task *t)
{
    /* One RMW: PARKED→IDLE (the wake consumes the permit; we enqueue), IDLE→NOTIFIED, or
     * NOTIFIED→NOTIFIED (still a release, so a later park acquires this waker's writes). */
    int old = atomic_load_explicit(&t->state, memory_order_relaxed);
    for (;;) {
        int want = old == SL__T_PARKED ? SL__T_IDLE : SL__T_NOTIFIED;
        if (atomic_compare_exchange_weak_explicit(&t->state, &old, want, memory_order_acq_rel,
                                                  memory_order_relaxed))
            break;
    }
    if (old != SL__T_PARKED) return;
    sl__sched *s = atomic_load_explicit(&t->sched, memory_order_relaxed);
    if (sl__sched_self() == s)
        put_local(s, t);
    else
        push_inbox(s, t);
}

void sl__task_pin(struct sl_task *t, int delta)
{
    t->pin += delta;
}

/* ---- public task API ---------------------------------------------------------------------- */

void sl_task_yield(void)
{
    struct sl_task *t = sl__task_self();
    if (!t) {
        if (!sl__sched_self()) sched_yield();
        return;
    }
    sl__sched_self()->yielded = t;
    switch_out(t, false);
}

bool sl_task_in(void)
{
    return sl__task_self() != NULL;
}

const char *sl_task_name(void)
{
    struct sl_task *t = sl__task_self();
    return t ? t->name : NULL;
}

sl_loop *sl_loop_current(void)
{
    sl__sched *s = sl__sched_self();
    return s ? &s->r : NULL;
}

int sl_task_loop(void)
{
    sl__sched *s = sl__sched_self();
    return s ? s->idx + 1 : 0;
}

int sl_go_with(const sl_go_opts *o, sl_task_fn fn, void *arg)
{
    if (!fn) return SL_EINVAL;
    sl__sched *self = sl__sched_self();
    sl_runtime *rt = o && o->rt ? o->rt : NULL;
    if (!rt) rt = self ? self->rt : sl_runtime_default();
    if (!rt) return SL_ENOMEM;
    int loop = o ? o->loop : 0;
    if (loop < 0 || loop > rt->nloops) return SL_EINVAL;
    /* live before closed (both seq_cst): shutdown sets closed, then reads live. */
    atomic_fetch_add_explicit(&rt->live, 1, memory_order_seq_cst);
    if (atomic_load_explicit(&rt->closed, memory_order_seq_cst)) {
        atomic_fetch_sub_explicit(&rt->live, 1, memory_order_seq_cst);
        return SL_ECLOSED;
    }
    sl__sched *here = self && self->rt == rt ? self : NULL;
    struct sl_task *t;
    int rc = sl__stack_get(rt, here, &t);
    if (rc < 0) {
        atomic_fetch_sub_explicit(&rt->live, 1, memory_order_seq_cst);
        return rc;
    }
    t->fn = fn;
    t->arg = arg;
    t->name = o && o->name ? o->name : "task";
    t->rt = rt;
    t->pin = 0;
    t->done = false;
    t->in_use = true;
    t->asan_fake = NULL;
    atomic_store_explicit(&t->state, SL__T_IDLE, memory_order_relaxed);
    sl__cpu_make(&t->cpu, t->lo, t->hi, task_entry, t);
#if defined(SLUICE_TSAN)
    /* One TSan fiber per stack slot, kept with it: creating one costs TSan a ~1 MB clear.
     * A reused fiber carries its last task's history; that task finished before this one
     * got the slot, so the order TSan sees is the real one. */
    if (!t->tsan_fiber) t->tsan_fiber = __tsan_create_fiber(0);
    __tsan_set_fiber_name(t->tsan_fiber, t->name);
#endif
    sl__sched *target;
    if (loop)
        target = &rt->loops[loop - 1];
    else if (here)
        target = here;
    else
        target = &rt->loops[atomic_fetch_add_explicit(&rt->rr, 1, memory_order_relaxed) %
                            (uint32_t)rt->nloops];
    atomic_store_explicit(&t->sched, target, memory_order_relaxed);
    if (target == here)
        put_local(here, t);
    else
        push_inbox(target, t);
    return 0;
}

int sl_go(sl_task_fn fn, void *arg)
{
    return sl_go_with(NULL, fn, arg);
}

/* ---- watchdog ----------------------------------------------------------------------------- */

static struct timespec mono_abs(int64_t ns_from_now)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int64_t t = (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec + ns_from_now;
    ts.tv_sec = (time_t)(t / 1000000000LL);
    ts.tv_nsec = (long)(t % 1000000000LL);
    return ts;
}

/* Every quarter threshold, looks at each loop: the same task still running with the same
 * switch count as last time means it held the loop for the whole interval. Reported once per
 * episode. The hot path pays two relaxed stores per switch, no clock read. */
static void *watchdog(void *arg)
{
    sl_runtime *rt = arg;
    int64_t step = rt->watchdog_ns / 4;
    if (step < SL_MS(1)) step = SL_MS(1);
    int n = rt->nloops;
    uint64_t *last = calloc((size_t)n, sizeof *last);
    int64_t *held = calloc((size_t)n, sizeof *held);
    bool *told = calloc((size_t)n, sizeof *told);
    pthread_mutex_lock(&rt->mu);
    while (!rt->wd_stop) {
        struct timespec ts = mono_abs(step);
        pthread_cond_timedwait(&rt->wd_cv, &rt->mu, &ts);
        if (rt->wd_stop || !last || !held || !told) continue;
        for (int i = 0; i < n; i++) {
            sl__sched *s = &rt->loops[i];
            uint64_t sw = atomic_load_explicit(&s->switches, memory_order_relaxed);
            const char *name = atomic_load_explicit(&s->running, memory_order_relaxed);
            if (!name || sw != last[i]) {
                last[i] = sw;
                held[i] = 0;
                told[i] = false;
                continue;
            }
            held[i] += step;
            if (held[i] >= rt->watchdog_ns && !told[i]) {
                told[i] = true;
                sl_log_warn(NULL, "task holds its loop (it must park or sl_task_yield)",
                            SL_A_STR("task", name), SL_A_INT("loop", i + 1),
                            SL_A_DUR("held", held[i]));
            }
        }
    }
    pthread_mutex_unlock(&rt->mu);
    free(last);
    free(held);
    free(told);
    return NULL;
}

/* ---- runtime ------------------------------------------------------------------------------ */

static pthread_mutex_t g_def_mu = PTHREAD_MUTEX_INITIALIZER;
static sl_runtime *_Atomic g_def;

static void stop_loops(sl_runtime *rt, int started)
{
    atomic_store_explicit(&rt->stop, true, memory_order_seq_cst);
    for (int i = 0; i < started; i++) {
        sl__sched *s = &rt->loops[i];
        uint64_t one = 1;
        ssize_t w = write(s->r.evfd, &one, sizeof one);
        (void)w;
    }
    for (int i = 0; i < started; i++)
        pthread_join(rt->loops[i].thr, NULL);
}

static void stop_watchdog(sl_runtime *rt)
{
    if (!rt->wd_started) return;
    pthread_mutex_lock(&rt->mu);
    rt->wd_stop = true;
    pthread_cond_broadcast(&rt->wd_cv);
    pthread_mutex_unlock(&rt->mu);
    pthread_join(rt->wd_thr, NULL);
    rt->wd_started = false;
}

static void rt_release(sl_runtime *rt, int inited)
{
    for (int i = 0; i < inited; i++)
        sl__reactor_destroy(&rt->loops[i].r);
    sl__stack_free_all(rt);
    sl_ctx_release(rt->ctx);
    pthread_cond_destroy(&rt->wd_cv);
    pthread_cond_destroy(&rt->cv);
    pthread_mutex_destroy(&rt->mu);
    free(rt->loops);
    free(rt);
}

static int cond_init_mono(pthread_cond_t *cv)
{
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    int rc = pthread_cond_init(cv, &a);
    pthread_condattr_destroy(&a);
    return -rc;
}

int sl_runtime_new(const sl_runtime_opts *o, sl_runtime **out)
{
    sl_runtime_opts d = o ? *o : (sl_runtime_opts){0};
    if (d.loops < 0 || d.offload_threads < 0 || (d.stack_size && d.stack_size < MIN_STACK))
        return SL_EINVAL;
    long ps = sysconf(_SC_PAGESIZE);
    int n = d.loops;
    if (!n) {
        long c = sysconf(_SC_NPROCESSORS_ONLN);
        n = c > 0 ? (int)c : 1;
    }
    size_t stack = d.stack_size ? d.stack_size : SL_TASK_STACK_DEFAULT;
    stack = (stack + (size_t)ps - 1) & ~((size_t)ps - 1);

    sl_runtime *rt = calloc(1, sizeof *rt);
    if (!rt) return SL_ENOMEM;
    rt->loops = aligned_alloc(64, sizeof(sl__sched) * (size_t)n);
    if (!rt->loops) {
        free(rt);
        return SL_ENOMEM;
    }
    memset(rt->loops, 0, sizeof(sl__sched) * (size_t)n);
    rt->nloops = n;
    rt->stack_size = stack;
    rt->slot_size = stack + (size_t)ps;
    rt->watchdog_ns = d.watchdog_ns ? d.watchdog_ns : SL_MS(100);
    rt->grace_ns = d.cancel_grace_ns > 0 ? d.cancel_grace_ns : SL_MS(100);
    pthread_mutex_init(&rt->mu, NULL);
    int rc = cond_init_mono(&rt->cv);
    if (rc == 0) rc = cond_init_mono(&rt->wd_cv);
    if (rc == 0) rc = sl_ctx_with_cancel(NULL, &rt->ctx);
    if (rc == 0) rc = sl__overflow_install();
    int inited = 0;
    for (; rc == 0 && inited < n; inited++) {
        sl__sched *s = &rt->loops[inited];
        s->rt = rt;
        s->idx = inited;
        rc = sl__reactor_init(&s->r);
        if (rc < 0) break;
        s->r.data = s;
    }
    if (rc < 0) {
        rt_release(rt, inited);
        return rc;
    }
    rc = sl__offload_start(rt, d.offload_threads ? d.offload_threads : 4);
    if (rc < 0) {
        rt_release(rt, n);
        return rc;
    }
    /* Loop threads take no asynchronous signals (they serve HTTP, among others): the
     * application's signal handling (a signal ctx, or the default action) happens elsewhere.
     * The synchronous ones stay open: a fault in a loop thread must reach its handler (the
     * stack-overflow report, stack.c), a blocked SIGSEGV would kill the process silently. */
    sigset_t all, old;
    sigfillset(&all);
    int sync_sigs[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS};
    for (size_t i = 0; i < sizeof sync_sigs / sizeof sync_sigs[0]; i++)
        sigdelset(&all, sync_sigs[i]);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int started = 0;
    for (; started < n; started++) {
        int e = pthread_create(&rt->loops[started].thr, NULL, loop_thread, &rt->loops[started]);
        if (e) {
            rc = -e;
            break;
        }
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc == 0 && rt->watchdog_ns > 0) {
        int e = pthread_create(&rt->wd_thr, NULL, watchdog, rt);
        if (e)
            rc = -e;
        else
            rt->wd_started = true;
    }
    if (rc < 0) {
        stop_loops(rt, started);
        sl__offload_stop(rt);
        rt_release(rt, n);
        return rc;
    }
    *out = rt;
    return 0;
}

static void on_ctx_done(void *arg, int err)
{
    (void)err;
    sl_runtime *rt = arg;
    pthread_mutex_lock(&rt->mu);
    pthread_cond_broadcast(&rt->cv);
    pthread_mutex_unlock(&rt->mu);
}

/* Waits until no task is live, ctx (may be NULL) is done, or the monotonic deadline passes. */
static void wait_idle(sl_runtime *rt, sl_ctx *ctx, int64_t deadline)
{
    sl_ctx_hook *hook = NULL;
    if (ctx && sl_ctx_on_done(ctx, on_ctx_done, rt, &hook) < 0) ctx = NULL;
    atomic_store_explicit(&rt->waiting, true, memory_order_seq_cst);
    pthread_mutex_lock(&rt->mu);
    while (atomic_load_explicit(&rt->live, memory_order_seq_cst) > 0 &&
           !(ctx && sl_ctx_done(ctx))) {
        if (deadline == INT64_MAX) {
            pthread_cond_wait(&rt->cv, &rt->mu);
            continue;
        }
        int64_t left = deadline - sl_mono_ns();
        if (left <= 0) break;
        struct timespec ts = mono_abs(left);
        pthread_cond_timedwait(&rt->cv, &rt->mu, &ts);
    }
    pthread_mutex_unlock(&rt->mu);
    atomic_store_explicit(&rt->waiting, false, memory_order_seq_cst);
    sl_ctx_hook_stop(hook);
}

/* After the joins: counts the tasks left behind and reports them by name. */
static int report_abandoned(sl_runtime *rt)
{
    char names[512];
    size_t len = 0;
    int count = 0, listed = 0;
    names[0] = 0;
    for (int i = 0; i < rt->nloops; i++) {
        sl__sched *s = &rt->loops[i];
        while (pop_local(s)) {
        }
        drain_inbox(s);
        while (pop_local(s)) {
        }
    }
    for (struct sl__slab *sb = rt->slabs; sb; sb = sb->next) {
        for (size_t off = 0; off + rt->slot_size <= sb->len; off += rt->slot_size) {
            struct sl_task *t = sl__slot_task(rt, sb->base + off);
            if (!t->in_use) continue;
            count++;
            t->in_use = false;
            if (listed < REPORT_NAMES && len + strlen(t->name) + 3 < sizeof names) {
                len += (size_t)snprintf(names + len, sizeof names - len, "%s%s", listed ? "," : "",
                                        t->name);
                listed++;
            }
        }
    }
    if (count)
        sl_log_warn(NULL, "runtime shutdown: tasks still parked were abandoned",
                    SL_A_INT("count", count), SL_A_STR("tasks", names));
    return count;
}

int sl_runtime_shutdown(sl_runtime *rt, sl_ctx *ctx)
{
    sl__sched *self = sl__sched_self();
    if (self && self->rt == rt) return SL_EDEADLK; /* it would join its own thread */
    pthread_mutex_lock(&rt->mu);
    if (rt->users > 0 && !rt->shut) { /* a server still serves on these loops */
        pthread_mutex_unlock(&rt->mu);
        return sl__fail(SL_EBUSY,
                        "sl_runtime_shutdown: %d server(s) still use this runtime's "
                        "loops (free them first)",
                        rt->users);
    }
    bool again = rt->shut;
    rt->shut = true;
    pthread_mutex_unlock(&rt->mu);
    if (again) return rt->abandoned;
    if (ctx) wait_idle(rt, ctx, INT64_MAX);
    atomic_store_explicit(&rt->closed, true, memory_order_seq_cst);
    if (atomic_load_explicit(&rt->live, memory_order_seq_cst) > 0) {
        sl_ctx_cancel(rt->ctx);
        wait_idle(rt, NULL, sl__ns_add_sat(sl_mono_ns(), rt->grace_ns));
    }
    stop_loops(rt, rt->nloops);
    stop_watchdog(rt);
    sl__offload_stop(rt);
    rt->abandoned = report_abandoned(rt);
    atomic_store_explicit(&rt->live, 0, memory_order_relaxed);
    return rt->abandoned;
}

void sl_runtime_free(sl_runtime *rt)
{
    sl__sched *self = sl__sched_self();
    if (!rt || (self && self->rt == rt)) return;
    pthread_mutex_lock(&rt->mu);
    bool busy = rt->users > 0 && !rt->shut;
    pthread_mutex_unlock(&rt->mu);
    if (busy) {
        /* Freeing loops a server still runs on would crash it later: keep them (a leak). */
        sl_log_error(NULL, "sl_runtime_free: a server still uses this runtime; not freed");
        return;
    }
    pthread_mutex_lock(&g_def_mu);
    if (atomic_load(&g_def) == rt) atomic_store(&g_def, NULL);
    pthread_mutex_unlock(&g_def_mu);
    if (sl_runtime_shutdown(rt, NULL) == SL_EBUSY) return; /* a server attached meanwhile */
    pthread_mutex_lock(&rt->mu);
    bool held = rt->refs > 0;
    rt->free_pending = held;
    pthread_mutex_unlock(&rt->mu);
    if (!held) rt_release(rt, rt->nloops); /* else the last sl__runtime_unref does it */
}

void sl__runtime_ref(sl_runtime *rt)
{
    pthread_mutex_lock(&rt->mu);
    rt->refs++;
    pthread_mutex_unlock(&rt->mu);
}

void sl__runtime_unref(sl_runtime *rt)
{
    pthread_mutex_lock(&rt->mu);
    bool last = --rt->refs == 0 && rt->free_pending;
    pthread_mutex_unlock(&rt->mu);
    if (last) rt_release(rt, rt->nloops);
}

int sl__runtime_attach(sl_runtime *rt)
{
    pthread_mutex_lock(&rt->mu);
    bool shut = rt->shut;
    if (!shut) rt->users++;
    pthread_mutex_unlock(&rt->mu);
    return shut ? SL_ECLOSED : 0;
}

void sl__runtime_detach(sl_runtime *rt)
{
    pthread_mutex_lock(&rt->mu);
    rt->users--;
    pthread_mutex_unlock(&rt->mu);
}

sl__reactor *sl__loop_self(void)
{
    sl__sched *s = sl__sched_self();
    return s ? &s->r : NULL;
}

sl_runtime *sl_runtime_default(void)
{
    sl_runtime *rt = atomic_load_explicit(&g_def, memory_order_acquire);
    if (rt) return rt;
    pthread_mutex_lock(&g_def_mu);
    rt = atomic_load_explicit(&g_def, memory_order_relaxed);
    if (!rt && sl_runtime_new(NULL, &rt) == 0)
        atomic_store_explicit(&g_def, rt, memory_order_release);
    pthread_mutex_unlock(&g_def_mu);
    return rt;
}

sl_ctx *sl_runtime_ctx(sl_runtime *rt)
{
    return rt->ctx;
}

int sl_runtime_loops(const sl_runtime *rt)
{
    return rt->nloops;
}

int64_t sl_runtime_tasks(const sl_runtime *rt)
{
    return atomic_load_explicit(&((sl_runtime *)rt)->live, memory_order_relaxed);
}
