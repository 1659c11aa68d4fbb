/* sl_once: one-time initialization that remembers its result (Go's sync.OnceValue for an int).
 *
 * Caller storage with a static initializer:
 *
 *     static sl_once g_init = SL_ONCE_INIT;
 *     int rc = sl_once_do(&g_init, init_tables, NULL);   // every caller gets init_tables' rc
 *
 * The first caller runs fn; callers arriving while it runs wait for it; every caller, then and
 * later, gets fn's return value. A failed init (rc < 0) is remembered too, as Go's OnceValue
 * does: retrying is the caller's decision (use a fresh sl_once).
 * Threads: any. */
#ifndef SLUICE_ONCE_H
#define SLUICE_ONCE_H

#include "sluice/common.h"

SL_BEGIN_DECLS

/* Fields are private to sluice (accessed atomically). */
typedef struct sl_once {
    int state_;  /* 0 new, 1 running, 2 running and someone waits, 3 done */
    int result_; /* fn's return value once state_ == 3 */
} sl_once;

#define SL_ONCE_INIT \
    {                \
        0, 0         \
    }

/* Initializes a once at run time (same as SL_ONCE_INIT). */
static inline void sl_once_init(sl_once *once)
{
    once->state_ = 0;
    once->result_ = 0;
}

/* The function run once; its return value is what every sl_once_do returns. */
typedef int (*sl_once_fn)(void *arg);

/* Runs fn(arg) if no call on once has run it yet, and returns its return value; concurrent
 * callers block until it returns, then get the same value; later callers return it at once
 * without blocking. fn must not call sl_once_do on the same once (deadlock, as in Go).
 * Returns SL_EINVAL if once or fn is NULL. Threads: any. Blocks only while fn runs elsewhere
 * (parked, no CPU). */
SL_API int sl_once_do(sl_once *once, sl_once_fn fn, void *arg);

/* True once fn has returned. Does not block. */
SL_API bool sl_once_done(const sl_once *once);

SL_END_DECLS

#endif /* SLUICE_ONCE_H */
