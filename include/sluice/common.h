/* Definitions every sluice header shares: the export macro, C++ guards, durations. */
#ifndef SLUICE_COMMON_H
#define SLUICE_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#if defined(SL_BUILDING) && defined(__GNUC__)
#define SL_API __attribute__((visibility("default")))
#else
#define SL_API
#endif

#ifdef __cplusplus
#define SL_BEGIN_DECLS extern "C" {
#define SL_END_DECLS   }
#else
#define SL_BEGIN_DECLS
#define SL_END_DECLS
#endif

/* Durations and instants are int64_t nanoseconds throughout sluice (as Go's time.Duration).
 * Instants come from sl_now_ns() (monotonic) unless a name says "wall". */
#define SL_NS(x)  ((int64_t)(x))
#define SL_US(x)  ((int64_t)(x)*1000LL)
#define SL_MS(x)  ((int64_t)(x)*1000000LL)
#define SL_SEC(x) ((int64_t)(x)*1000000000LL)

/* The largest instant/duration: "never" / "forever". */
#define SL_FOREVER INT64_MAX

/* One sluice event loop (epoll, timers, cross-thread posts; the thread a task runs on).
 * Opaque: the HTTP server and the task runtime own their loops; some APIs take one. */
typedef struct sl_loop sl_loop;

#endif /* SLUICE_COMMON_H */
