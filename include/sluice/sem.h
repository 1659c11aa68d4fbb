/* sl_sem: a weighted semaphore (golang.org/x/sync/semaphore.Weighted).
 *
 * Holds `size` tokens; sl_sem_acquire(n) takes n, waiting in FIFO order: a large request at the
 * head of the queue blocks later small ones even when they would fit, so large requests are not
 * starved (the read/write-lock pattern: readers take 1, a writer takes size). A waiter whose ctx
 * fires leaves the queue; if it was at the head and tokens are free, the followers that now fit
 * are woken, exactly as x/sync does.
 * Threads: any (sl_sem_free: single owner, nobody waiting). Heap object: new/free. */
#ifndef SLUICE_SEM_H
#define SLUICE_SEM_H

#include "sluice/common.h"
#include "sluice/ctx.h"

SL_BEGIN_DECLS

typedef struct sl_sem sl_sem;

/* Creates a semaphore with size tokens (size >= 0). Returns 0 with *out set, SL_EINVAL
 * (size < 0) or SL_ENOMEM; on failure *out is untouched. */
SL_API int sl_sem_new(int64_t size, sl_sem **out);

/* Frees sem (NULL is ignored). No thread may be waiting in it. */
SL_API void sl_sem_free(sl_sem *sem);

/* Acquires n tokens (n >= 0), waiting in FIFO order until they are free or ctx is done.
 * Returns 0 (the tokens are the caller's, give them back with sl_sem_release), the ctx's error
 * (SL_ECANCELED, SL_ETIMEDOUT, a cause; nothing acquired), or SL_EINVAL (n < 0).
 * A ctx already done fails at once even if tokens are free (as current x/sync does).
 * n > size can never succeed: like Go it waits for ctx to be done and returns its error,
 * without blocking anyone else; with a ctx that can never be done (NULL, background) it returns
 * SL_EDEADLK at once instead of hanging forever. Blocks (parked, no CPU). Threads: any. */
SL_API int sl_sem_acquire(sl_sem *sem, int64_t n, sl_ctx *ctx);

/* Acquires n tokens only if that needs no waiting: they are free and nobody is queued.
 * Returns true if acquired. Never blocks. */
SL_API bool sl_sem_try_acquire(sl_sem *sem, int64_t n);

/* Returns n tokens and wakes the queued waiters that now fit, in order. Returns 0, or SL_EINVAL
 * (n < 0, or more than currently held: nothing is released; Go panics here). Never blocks. */
SL_API int sl_sem_release(sl_sem *sem, int64_t n);

/* Tokens currently held (a snapshot, for tests and metrics). */
SL_API int64_t sl_sem_held(const sl_sem *sem);

/* Number of queued waiters (a snapshot). */
SL_API int sl_sem_waiters(const sl_sem *sem);

SL_END_DECLS

#endif /* SLUICE_SEM_H */
