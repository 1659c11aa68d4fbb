/* Task stacks: mmap'd slots with a guard page, committed lazily, cached for reuse; and the
 * SIGSEGV handler that turns a hit on a guard page into "task stack overflow: <name>".
 *
 * Layout of one slot (slot_size = one guard page + stack_size):
 *     [ guard page (PROT_NONE) | stack, grows down ...          | struct sl_task ]
 *     lo - page                lo                                hi              slot end
 * The task header sits at the top of its own stack, so a spawn is a slot and no malloc. The
 * mapping is MAP_NORESERVE: a shallow task touches one or two pages of it.
 *
 * Slots come in slabs of SLAB_SLOTS (one mmap). Every guard page splits the mapping, costing
 * two kernel VMAs per stack, and the process has vm.max_map_count of them (65530 by default)
 * for everything — malloc, thread stacks, sanitizers. So guard pages are given to the first
 * max_map_count/4 stacks of the process (16k by default). The lowest slot of a slab always
 * gets one. A later slot is unguarded: its guard page becomes stack, and a canary word at the
 * very top of the slot below (in that slot's header page, which is resident anyway: no page
 * is committed for it) is checked each time the task switches out. An overflow is then
 * caught late, but still reported by name before the process dies. docs/tasks.md says how
 * to raise the limit.
 *
 * Reuse: a finished task's slot goes to its loop's cache (SL__CACHE slots, no lock), then to
 * the runtime's free list (mutex). A loop about to sleep trims that list: slots past
 * FREE_WARM have their stack pages returned to the kernel (MADV_DONTNEED) and move to a cold
 * list, so a burst does not pin its memory forever. Trimming is kept off the exit path: each
 * madvise is a TLB shootdown across the process's threads. Slabs are unmapped when the
 * runtime is freed.
 *
 * Overflow: each loop thread runs on an alternate signal stack (a SIGSEGV on an exhausted
 * stack cannot run its handler there). The handler checks whether the fault address lies in
 * the guard page of the task running on this thread: if so it writes the report with
 * write(2) (async-signal-safe), restores the default action and returns, so the fault repeats
 * and the process dies of SIGSEGV. Any other fault goes to the handler installed before ours
 * (e.g. a sanitizer's) or to the default action. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "sluice/error.h"
#include "task/task_int.h"

#if defined(SLUICE_ASAN)
#include <sanitizer/asan_interface.h>
#endif
#if defined(SLUICE_TSAN)
#include <sanitizer/tsan_interface.h>
#endif

#define SLAB_SLOTS  16
#define SL__CACHE   256
#define FREE_WARM   4096
#define CANARY      0x5ac4a3e5deadbeefULL
#define ALTSTACK_SZ (64 * 1024)

static _Atomic long g_guard_budget = -1; /* guard pages this process may still create */

static long page_size(void)
{
    static long ps;
    if (!ps) ps = sysconf(_SC_PAGESIZE);
    return ps;
}

static long guard_budget_init(void)
{
    long v = 65530;
    FILE *f = fopen("/proc/sys/vm/max_map_count", "r");
    if (f) {
        if (fscanf(f, "%ld", &v) != 1) v = 65530;
        fclose(f);
    }
    return v / 4;
}

static bool take_guard(void)
{
    long b = atomic_load_explicit(&g_guard_budget, memory_order_relaxed);
    if (b < 0) {
        long init = guard_budget_init();
        atomic_compare_exchange_strong(&g_guard_budget, &b, init);
        b = atomic_load_explicit(&g_guard_budget, memory_order_relaxed);
    }
    while (b > 0) {
        if (atomic_compare_exchange_weak_explicit(&g_guard_budget, &b, b - 1, memory_order_relaxed,
                                                  memory_order_relaxed))
            return true;
    }
    return false;
}

/* The header sits at the top of the slot, below the slot's last 64 bytes: the canary of the
 * slot above it. */
#define TOP_RESERVE 64

struct sl_task *sl__slot_task(sl_runtime *rt, char *slot)
{
    size_t hdr = (sizeof(struct sl_task) + 63) & ~(size_t)63;
    return (struct sl_task *)(slot + rt->slot_size - TOP_RESERVE - hdr);
}

static uint64_t *slot_canary(sl_runtime *rt, char *slot)
{
    return (uint64_t *)(slot + rt->slot_size - 8);
}

/* Maps a slab and threads its slots onto the runtime's free list. Caller holds rt->mu. */
static int slab_new_locked(sl_runtime *rt)
{
    size_t len = rt->slot_size * SLAB_SLOTS;
    char *base = mmap(NULL, len, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    if (base == MAP_FAILED) return SL_ENOMEM;
    struct sl__slab *sb = malloc(sizeof *sb);
    if (!sb) {
        munmap(base, len);
        return SL_ENOMEM;
    }
    *sb = (struct sl__slab){.next = rt->slabs, .base = base, .len = len};
    rt->slabs = sb;
    size_t ps = (size_t)page_size();
    for (int i = SLAB_SLOTS - 1; i >= 0; i--) {
        char *slot = base + (size_t)i * rt->slot_size;
        bool guarded = (i == 0 || take_guard()) && mprotect(slot, ps, PROT_NONE) == 0;
        struct sl_task *t = sl__slot_task(rt, slot);
        *slot_canary(rt, slot) = CANARY;
        t->lo = guarded ? slot + ps : slot;
        t->hi = (char *)t;
        t->guarded = guarded;
        t->canary = guarded || i == 0 ? NULL : slot_canary(rt, slot - rt->slot_size);
        t->slab = sb;
        t->in_use = false;
        atomic_store_explicit(&t->next, rt->free, memory_order_relaxed);
        rt->free = t;
        rt->nfree++;
        atomic_store_explicit(&rt->nfree_hint, rt->nfree, memory_order_relaxed);
    }
    return 0;
}

int sl__stack_get(sl_runtime *rt, sl__sched *s, struct sl_task **out)
{
    struct sl_task *t;
    if (s && s->cache) {
        t = s->cache;
        s->cache = atomic_load_explicit(&t->next, memory_order_relaxed);
        s->ncache--;
    } else {
        pthread_mutex_lock(&rt->mu);
        if (!rt->free && rt->cold) {
            t = rt->cold;
            rt->cold = atomic_load_explicit(&t->next, memory_order_relaxed);
            atomic_store_explicit(&t->next, NULL, memory_order_relaxed);
            rt->free = t;
            rt->nfree++;
        }
        if (!rt->free) {
            int rc = slab_new_locked(rt);
            if (rc < 0) {
                pthread_mutex_unlock(&rt->mu);
                return rc;
            }
        }
        t = rt->free;
        rt->free = atomic_load_explicit(&t->next, memory_order_relaxed);
        rt->nfree--;
        /* A loop takes a few more for its cache while it holds the lock. */
        for (int i = 0; s && i < 31 && rt->free; i++) {
            struct sl_task *x = rt->free;
            rt->free = atomic_load_explicit(&x->next, memory_order_relaxed);
            rt->nfree--;
            atomic_store_explicit(&x->next, s->cache, memory_order_relaxed);
            s->cache = x;
            s->ncache++;
        }
        atomic_store_explicit(&rt->nfree_hint, rt->nfree, memory_order_relaxed);
        pthread_mutex_unlock(&rt->mu);
    }
    *out = t;
    return 0;
}

void sl__stack_put(sl_runtime *rt, sl__sched *s, struct sl_task *t)
{
#if defined(SLUICE_ASAN)
    /* Frames that never returned (the task's entry) leave poisoned shadow behind. */
    __asan_unpoison_memory_region(t->lo, (size_t)(t->hi - t->lo));
#endif
    t->in_use = false;
    if (!s) {
        pthread_mutex_lock(&rt->mu);
        atomic_store_explicit(&t->next, rt->free, memory_order_relaxed);
        rt->free = t;
        rt->nfree++;
        atomic_store_explicit(&rt->nfree_hint, rt->nfree, memory_order_relaxed);
        pthread_mutex_unlock(&rt->mu);
        return;
    }
    atomic_store_explicit(&t->next, s->cache, memory_order_relaxed);
    s->cache = t;
    if (++s->ncache < SL__CACHE) return;
    /* The cache is full: hand its older half to the runtime in one locked splice (a burst of
     * exits costs one lock per SL__CACHE/2 stacks, not one each). */
    struct sl_task *keep_tail = s->cache;
    for (int i = 1; i < SL__CACHE / 2; i++)
        keep_tail = atomic_load_explicit(&keep_tail->next, memory_order_relaxed);
    struct sl_task *first = atomic_load_explicit(&keep_tail->next, memory_order_relaxed);
    atomic_store_explicit(&keep_tail->next, NULL, memory_order_relaxed);
    int moved = s->ncache - SL__CACHE / 2;
    s->ncache = SL__CACHE / 2;
    struct sl_task *last = first;
    while (atomic_load_explicit(&last->next, memory_order_relaxed))
        last = atomic_load_explicit(&last->next, memory_order_relaxed);
    pthread_mutex_lock(&rt->mu);
    atomic_store_explicit(&last->next, rt->free, memory_order_relaxed);
    rt->free = first;
    rt->nfree += moved;
    atomic_store_explicit(&rt->nfree_hint, rt->nfree, memory_order_relaxed);
    pthread_mutex_unlock(&rt->mu);
}

bool sl__stack_trim(sl_runtime *rt)
{
    if (atomic_load_explicit(&rt->nfree_hint, memory_order_relaxed) <= FREE_WARM) return false;
    struct sl_task *batch = NULL;
    pthread_mutex_lock(&rt->mu);
    for (int i = 0; i < 64 && rt->nfree > FREE_WARM; i++) {
        struct sl_task *t = rt->free;
        rt->free = atomic_load_explicit(&t->next, memory_order_relaxed);
        rt->nfree--;
        atomic_store_explicit(&rt->nfree_hint, rt->nfree, memory_order_relaxed);
        atomic_store_explicit(&t->next, batch, memory_order_relaxed);
        batch = t;
    }
    pthread_mutex_unlock(&rt->mu);
    /* Off every list now: nobody else touches these slots while their pages go. Keep the
     * page holding the header (and the list link). */
    size_t ps = (size_t)page_size();
    for (struct sl_task *t = batch; t; t = atomic_load_explicit(&t->next, memory_order_relaxed)) {
        char *hdr_page = (char *)((uintptr_t)t & ~(uintptr_t)(ps - 1));
        if (hdr_page > t->lo) madvise(t->lo, (size_t)(hdr_page - t->lo), MADV_DONTNEED);
    }
    pthread_mutex_lock(&rt->mu);
    while (batch) {
        struct sl_task *t = batch;
        batch = atomic_load_explicit(&t->next, memory_order_relaxed);
        atomic_store_explicit(&t->next, rt->cold, memory_order_relaxed);
        rt->cold = t;
    }
    pthread_mutex_unlock(&rt->mu);
    return true;
}

void sl__stack_free_all(sl_runtime *rt)
{
    struct sl__slab *sb = rt->slabs;
    while (sb) {
        struct sl__slab *next = sb->next;
#if defined(SLUICE_TSAN)
        for (size_t off = 0; off + rt->slot_size <= sb->len; off += rt->slot_size) {
            struct sl_task *t = sl__slot_task(rt, sb->base + off);
            if (t->tsan_fiber) __tsan_destroy_fiber(t->tsan_fiber);
        }
#endif
        munmap(sb->base, sb->len);
        free(sb);
        sb = next;
    }
    rt->slabs = NULL;
    rt->free = NULL;
    rt->cold = NULL;
    rt->nfree = 0;
    for (int i = 0; i < rt->nloops; i++) {
        rt->loops[i].cache = NULL;
        rt->loops[i].ncache = 0;
    }
}

/* Reports and kills: an unguarded stack's canary was overwritten. */
static void overflow_report(const char *name)
{
    char buf[160];
    int n = snprintf(buf, sizeof buf, "sluice: task stack overflow: task \"%s\"\n", name);
    if (n > 0) {
        ssize_t w = write(2, buf, (size_t)n > sizeof buf ? sizeof buf : (size_t)n);
        (void)w;
    }
}

void sl__stack_check(struct sl_task *t)
{
    if (!t->canary || *t->canary == CANARY) return;
    overflow_report(t->name);
    abort();
}

/* ---- the SIGSEGV handler ---------------------------------------------------------------- */

static struct sigaction g_old_segv;
static pthread_once_t g_segv_once = PTHREAD_ONCE_INIT;
static int g_segv_rc;

static void sig_write(const char *s)
{
    ssize_t w = write(2, s, strlen(s));
    (void)w;
}

static void segv_handler(int sig, siginfo_t *si, void *uc)
{
    struct sl_task *t = sl__task_self();
    char *addr = si->si_addr;
    if (t && t->guarded && addr >= t->lo - page_size() && addr < t->lo) {
        sig_write("sluice: task stack overflow: task \"");
        sig_write(t->name);
        sig_write("\" ran past its stack (raise sl_runtime_opts.stack_size)\n");
        signal(SIGSEGV, SIG_DFL);
        return; /* the faulting instruction runs again and kills the process */
    }
    if (g_old_segv.sa_flags & SA_SIGINFO) {
        if (g_old_segv.sa_sigaction) {
            g_old_segv.sa_sigaction(sig, si, uc);
            return;
        }
    } else if (g_old_segv.sa_handler != SIG_DFL && g_old_segv.sa_handler != SIG_IGN) {
        g_old_segv.sa_handler(sig);
        return;
    }
    signal(SIGSEGV, SIG_DFL);
}

static void segv_install(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = segv_handler;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGSEGV, &sa, &g_old_segv) < 0) g_segv_rc = -errno;
}

int sl__overflow_install(void)
{
    pthread_once(&g_segv_once, segv_install);
    return g_segv_rc;
}

int sl__altstack_start(sl__sched *s)
{
    void *p = mmap(NULL, ALTSTACK_SZ, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return SL_ENOMEM;
    stack_t ss = {.ss_sp = p, .ss_size = ALTSTACK_SZ, .ss_flags = 0};
    if (sigaltstack(&ss, NULL) < 0) {
        int e = -errno;
        munmap(p, ALTSTACK_SZ);
        return e;
    }
    s->altstack = p;
    return 0;
}

void sl__altstack_stop(sl__sched *s)
{
    if (!s->altstack) return;
    stack_t ss = {.ss_flags = SS_DISABLE};
    sigaltstack(&ss, NULL);
    munmap(s->altstack, ALTSTACK_SZ);
    s->altstack = NULL;
}
