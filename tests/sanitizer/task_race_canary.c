/* A deliberate data race between two TASKS on different loops: each increments a plain int
 * with no synchronisation. Registered only in the TSan build, where it must fail with a race
 * report: proof that the runtime's fiber annotations (__tsan_switch_to_fiber on every switch)
 * leave TSan able to see races between tasks. If this passes there, task code is unchecked. */
#include <stdatomic.h>
#include <stdio.h>

#include "sluice/sluice.h"

static int counter;        /* racy on purpose */
static atomic_int arrived; /* relaxed only: a rendezvous that creates no happens-before */
static atomic_int finished;

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
