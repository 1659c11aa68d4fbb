/* Time for sluice: one monotonic clock in nanoseconds, wall time, and a test clock.
 *
 * Every time calculation in sluice goes through sl_now_ns() or takes an explicit `now`
 * (the `_at` functions), so tests drive time instead of waiting for it. A test installs the
 * test clock, advances it, and uninstalls it; while it is installed sl_now_ns() returns the
 * test time in every thread. Deadline machinery (sl_ctx timers) is told when the test clock
 * moves, so deadlines fire on test time too. */
#ifndef SLUICE_CLOCK_H
#define SLUICE_CLOCK_H

#include "sluice/common.h"

SL_BEGIN_DECLS

/* Returns monotonic time in ns (CLOCK_MONOTONIC), or the test clock's time while one is
 * installed. Never fails. Threads: any. Does not block. */
SL_API int64_t sl_now_ns(void);

/* Returns the real monotonic time in ns, ignoring any test clock. For code that must measure
 * real elapsed time (benchmarks, bounded test waits). Threads: any. */
SL_API int64_t sl_mono_ns(void);

/* Returns wall-clock time (CLOCK_REALTIME) in ns since the Unix epoch. Not affected by the
 * test clock: log timestamps and HTTP Date headers are about the real world. Threads: any. */
SL_API int64_t sl_wall_ns(void);

/* Installs the process-wide test clock, starting at start_ns (> 0). From now on sl_now_ns()
 * returns the test time in every thread. Threads: any, but install and uninstall from the
 * test's main thread while no other sluice thread depends on time jumping consistently. */
SL_API void sl_test_clock_install(int64_t start_ns);

/* Moves the test clock forward by delta_ns (may be 0; negative values move it back, which
 * sluice must tolerate as Go's limiter does). Wakes deadline timers so they re-check.
 * No effect unless the test clock is installed. Threads: any. */
SL_API void sl_test_clock_advance(int64_t delta_ns);

/* Sets the test clock to now_ns. Same rules as sl_test_clock_advance. */
SL_API void sl_test_clock_set(int64_t now_ns);

/* Removes the test clock; sl_now_ns() returns real monotonic time again. Threads: any. */
SL_API void sl_test_clock_uninstall(void);

/* True while the test clock is installed. Threads: any. */
SL_API bool sl_test_clock_installed(void);

SL_END_DECLS

#endif /* SLUICE_CLOCK_H */
