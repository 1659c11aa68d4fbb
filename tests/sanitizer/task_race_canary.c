/* A deliberate data race between two TASKS on different loops: each increments a plain int
 * with no synchronisation. Registered only in the TSan build, where it must fail with a race
 * report: proof that the runtime's fiber annotations (__tsan_switch_to_fiber on every switch)
 * leave TSan able to see races between tasks. If this passes there, task code is unchecked. */
#include <stdalign.h>
#include <stdatomic.h>
#include <stdio.h>

#include "sluice/sluice.h"

/* Each variable on its own cache line. TSan keeps a few access records per 8-byte granule and
 * evicts them at random; when `counter` shared a granule with `arrived`, the spinning loads of
 * `arrived` evicted the other task's write to `counter` and the race went unseen (about 1 run in
 * 7). `volatile` keeps 1000 separate accesses instead of one folded read-modify-write. */
static alignas(64) volatile int counter; /* racy on purpose */
static alignas(64) atomic_int arrived;   /* relaxed only: a rendezvous with no happens-before */
static alignas(64) atomic_int finished;

static void bump(void *arg)
{
    (void)arg;
    atomic_fetch_add_explicit(&arrived, 1, memory_order_relaxed);
    while (atomic_load_explicit(&arrived, memory_order_relaxed) < 2) {
    }
    for (int i = 0; i < 1000; i++)
        counter++;
    atomic_fetch_add_explicit(&finished, 1, memory_order_release);
}

int main(void)
{
    sl_runtime *rt;
    sl_runtime_opts o = {.loops = 2, .watchdog_ns = -1};
    if (sl_runtime_new(&o, &rt) != 0) return 2;
    sl_go_with(&(sl_go_opts){.rt = rt, .loop = 1, .name = "racer-1"}, bump, NULL);
    sl_go_with(&(sl_go_opts){.rt = rt, .loop = 2, .name = "racer-2"}, bump, NULL);
    sl_ctx *ctx;
    sl_ctx_with_timeout(NULL, SL_SEC(30), &ctx);
    sl_runtime_shutdown(rt, ctx);
    sl_ctx_release(ctx);
    sl_runtime_free(rt);
    printf("counter=%d\n", counter);
    return 0;
}
