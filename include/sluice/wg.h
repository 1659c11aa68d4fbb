/* sl_wg: Go's sync.WaitGroup — wait until a counter of outstanding tasks drops to zero.
 *
 * Caller storage (init/destroy): embed an sl_wg in your own struct. sl_wg_add/sl_wg_done are one
 * atomic operation unless a waiter must be woken; sl_wg_wait parks until the counter is zero or
 * the ctx is done. As in Go, add the tasks before starting them (an add from 0 racing with a
 * wait is the caller's logic error, not a crash).
 * Threads: any, except init/destroy (single owner; destroy only when nobody waits). */
#ifndef SLUICE_WG_H
#define SLUICE_WG_H

#include "sluice/common.h"
#include "sluice/ctx.h"

SL_BEGIN_DECLS

/* Opaque storage; the layout is private to sluice. */
typedef struct sl_wg {
    union {
        unsigned char bytes[128];
        int64_t align_i;
        void *align_p;
    } opaque_;
} sl_wg;

/* Initializes wg with a zero counter. Returns 0, or SL_ENOMEM / SL_EAGAIN if the OS refuses a
 * mutex or condvar (wg is then unusable and needs no destroy). Does not block. */
SL_API int sl_wg_init(sl_wg *wg);

/* Releases wg's resources. Call once, when no thread uses it; as in Go, that includes right
 * after sl_wg_wait returned 0 to the only waiter, even if the sl_wg_done that released it has
 * not returned yet (it no longer touches wg). Threads: one. Does not block. */
SL_API void sl_wg_destroy(sl_wg *wg);

/* Adds delta (may be negative) to the counter. Returns 0, or SL_EINVAL if the counter would go
 * negative or past INT32_MAX (the counter is then unchanged). When the counter reaches zero,
 * every waiter wakes. Threads: any. Does not block. */
SL_API int sl_wg_add(sl_wg *wg, int delta);

/* sl_wg_add(wg, -1). Returns 0 or SL_EINVAL (more done than added). */
SL_API int sl_wg_done(sl_wg *wg);

/* Blocks until the counter is zero (returns 0 at once if it is) or ctx is done (returns the
 * ctx's error: SL_ECANCELED, SL_ETIMEDOUT, ...; the counter is not affected). ctx NULL waits
 * without limit. Parks the thread: no CPU while waiting. Threads: any, many at once. */
SL_API int sl_wg_wait(sl_wg *wg, sl_ctx *ctx);

/* Returns the current counter (a snapshot, for tests and metrics). Threads: any. */
SL_API int sl_wg_count(const sl_wg *wg);

SL_END_DECLS

#endif /* SLUICE_WG_H */
