/* Monotonic, wall and test clocks.
 *
 * The fast path of sl_now_ns() is one relaxed atomic load (is a test clock installed?) and a
 * vDSO clock_gettime: no syscall, no lock. The test clock is a process-wide atomic value;
 * moving it calls the advance hook so that anything waiting on a deadline (the ctx timer
 * thread) wakes and re-reads the time. */
#include <stdatomic.h>
#include <time.h>

#include "sluice/clock.h"
#include "base/base_int.h"

static atomic_bool g_test_on;
static _Atomic int64_t g_test_now;
static _Atomic(void (*)(void)) g_advance_hook;

static int64_t read_clock(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int64_t sl_mono_ns(void)
{
    return read_clock(CLOCK_MONOTONIC);
}

int64_t sl_now_ns(void)
{
    if (atomic_load_explicit(&g_test_on, memory_order_acquire))
        return atomic_load_explicit(&g_test_now, memory_order_acquire);
    return read_clock(CLOCK_MONOTONIC);
}

int64_t sl_wall_ns(void)
{
    return read_clock(CLOCK_REALTIME);
}

static void notify_advance(void)
{
    void (*fn)(void) = atomic_load_explicit(&g_advance_hook, memory_order_acquire);
    if (fn) fn();
}

void sl_test_clock_install(int64_t start_ns)
{
    atomic_store_explicit(&g_test_now, start_ns, memory_order_release);
    atomic_store_explicit(&g_test_on, true, memory_order_release);
    notify_advance();
}

void sl_test_clock_advance(int64_t delta_ns)
{
    if (!atomic_load_explicit(&g_test_on, memory_order_acquire)) return;
    atomic_fetch_add_explicit(&g_test_now, delta_ns, memory_order_acq_rel);
    notify_advance();
}

void sl_test_clock_set(int64_t now_ns)
{
    if (!atomic_load_explicit(&g_test_on, memory_order_acquire)) return;
    atomic_store_explicit(&g_test_now, now_ns, memory_order_release);
    notify_advance();
}

void sl_test_clock_uninstall(void)
{
    atomic_store_explicit(&g_test_on, false, memory_order_release);
    notify_advance();
}

bool sl_test_clock_installed(void)
{
    return atomic_load_explicit(&g_test_on, memory_order_acquire);
}

void sl__clock_set_advance_hook(void (*fn)(void))
{
    atomic_store_explicit(&g_advance_hook, fn, memory_order_release);
}
