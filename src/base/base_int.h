/* Private to sluice: hooks between base and the modules above it, and the small inline helpers
 * that every layer above base shares (sync and pool include this header rather than keep their
 * own copies). */
#ifndef SLUICE_BASE_INT_H
#define SLUICE_BASE_INT_H

#include <stdint.h>

#include "sluice/common.h"

/* Registers the one function called after the test clock moves (the ctx timer thread uses it
 * to re-check deadlines against test time). NULL removes it. Threads: any. */
void sl__clock_set_advance_hook(void (*fn)(void));

/* Records a printf-formatted explanation of an error for sl_error_detail() on this thread and
 * returns rc, so a constructor can `return sl__fail(SL_EINVAL, "...", ...);`. */
int sl__fail(int rc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* a + b for ns instants and durations, clamped to [INT64_MIN, INT64_MAX] instead of wrapping:
 * "now + SL_FOREVER" must stay "never", not become a deadline in the past. Threads: any. */
static inline int64_t sl__ns_add_sat(int64_t a, int64_t b)
{
    int64_t r;
    if (__builtin_add_overflow(a, b, &r)) return b > 0 ? INT64_MAX : INT64_MIN;
    return r;
}

/* One spin-wait hint (pause/yield): lets the sibling hyperthread run and saves power while a
 * loop waits for another core's store. No-op on other architectures. */
static inline void sl__cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

#endif
