/* sl_chan: Go's chan T — a bounded FIFO channel of fixed-size elements.
 *
 * Elements are copied in and out by value (elem_size bytes each, fixed at creation), so a
 * channel of pointers is a channel with elem_size == sizeof(void *). A channel has a capacity:
 * with capacity > 0 sends complete while there is room in the buffer; with capacity 0 the
 * channel is a rendezvous, as an unbuffered Go channel: a send completes only once a receiver
 * has taken the value.
 *
 * Blocking calls take an sl_ctx (NULL = wait forever) and return its error (SL_ECANCELED,
 * SL_ETIMEDOUT, ...) when it fires first; then nothing was sent or received. Waiting on a ctx
 * that can be done registers an on-done hook, which allocates: if that fails the call returns
 * SL_ENOMEM, again with nothing sent or received. Closing wakes every
 * waiter: blocked senders get SL_ECLOSED, receivers drain what is buffered and then get
 * SL_ECLOSED. Unlike Go, sending on (or closing) a closed channel is not a crash: it returns
 * SL_ECLOSED.
 *
 * Waiters queue in FIFO order and each one is woken on its own (one wake-up per element, no
 * broadcast). A waiter spins briefly before it parks, then uses no CPU until woken.
 *
 * Threads: any — every function may be called from any thread, except sl_chan_free (no other
 * call may run or start on the channel). */
#ifndef SLUICE_CHAN_H
#define SLUICE_CHAN_H

#include "sluice/common.h"
#include "sluice/ctx.h"

SL_BEGIN_DECLS

/* A bounded channel. Opaque; Threads: any. */
typedef struct sl_chan sl_chan;

/* Creates a channel of elements of elem_size bytes (1 .. 65536) holding at most cap buffered
 * elements (0 = rendezvous, at most 2^24). Returns 0 and *out, SL_EINVAL (bad size or cap) or
 * SL_ENOMEM; on failure *out is untouched. Does not block. */
SL_API int sl_chan_new(size_t elem_size, size_t cap, sl_chan **out);

/* Frees the channel and any elements still buffered (elements are plain bytes: if they are
 * pointers to owned memory, drain the channel first). NULL is ignored. No thread may be blocked
 * on, or later use, the channel. Does not block. */
SL_API void sl_chan_free(sl_chan *ch);

/* Sends one element (copies elem_size bytes from elem), waiting while the buffer is full (or,
 * for capacity 0, until a receiver takes it). Returns 0; SL_ECLOSED if the channel is or
 * becomes closed before the element was taken; or the ctx's error if it fires first. On any
 * error nothing was sent and the caller still owns what elem describes. Blocks. */
SL_API int sl_chan_send(sl_chan *ch, const void *elem, sl_ctx *ctx);

/* Receives one element into out (elem_size bytes; out may be NULL to discard), waiting while
 * the channel is empty. Returns 0; SL_ECLOSED once the channel is closed and drained; or the
 * ctx's error if it fires first (nothing was received). Blocks. */
SL_API int sl_chan_recv(sl_chan *ch, void *out, sl_ctx *ctx);

/* Sends without waiting: hands the element to a waiting receiver or buffers it. Returns 0,
 * SL_EFULL (no room, no receiver waiting; for capacity 0: no receiver waiting), or SL_ECLOSED.
 * Never blocks (the channel's internal lock is held for a few instructions). */
SL_API int sl_chan_try_send(sl_chan *ch, const void *elem);

/* Receives without waiting. Returns 0, SL_EEMPTY (nothing buffered and no sender waiting), or
 * SL_ECLOSED (closed and drained). Never blocks. */
SL_API int sl_chan_try_recv(sl_chan *ch, void *out);

/* Closes the channel: later sends fail with SL_ECLOSED, every blocked sender wakes with
 * SL_ECLOSED, every blocked receiver wakes with SL_ECLOSED (a receiver only blocks when nothing
 * is buffered), and later receives drain the buffer then return SL_ECLOSED. Returns 0, or
 * SL_ECLOSED if it was already closed. Does not block. */
SL_API int sl_chan_close(sl_chan *ch);

/* Number of elements buffered now (a snapshot; 0 for capacity 0). Does not block. */
SL_API size_t sl_chan_len(sl_chan *ch);

/* Capacity given at creation. */
SL_API size_t sl_chan_cap(const sl_chan *ch);

/* True once sl_chan_close has been called (buffered elements may remain). */
SL_API bool sl_chan_closed(sl_chan *ch);

/* --- select ----------------------------------------------------------------------------- */

/* Direction of one select case. */
typedef enum sl_chan_dir { SL_CHAN_RECV = 0, SL_CHAN_SEND = 1 } sl_chan_dir;

/* One case of sl_chan_select: receive into elem, or send from elem, on chan. A case whose chan
 * is NULL is never ready (Go's nil-channel idiom for switching a case off). */
typedef struct sl_chan_case {
    sl_chan *chan;
    sl_chan_dir dir;
    void *elem; /* recv: where to copy (may be NULL); send: what to copy */
} sl_chan_case;

/* Go's select over send and receive cases plus a ctx (the ctx plays `case <-ctx.Done()`).
 * Waits until one case can proceed, performs exactly that one and returns its index (>= 0).
 * When several are ready at once the choice is pseudo-random, so no case starves. A case on a
 * closed channel is ready: a receive on a closed, drained channel and a send on a closed channel
 * complete with that case's *err_out set to SL_ECLOSED (else *err_out is 0); err_out may be
 * NULL. Returns the ctx's error if it fires first (no case was performed); SL_EINVAL (n == 0,
 * n > 4096, or a send case without elem); SL_ENOMEM (n > 8 needs memory). With every chan NULL
 * it just waits for the ctx, or returns SL_EDEADLK at once when the ctx is NULL. Blocks. */
SL_API int sl_chan_select(sl_chan_case *cases, size_t n, int *err_out, sl_ctx *ctx);

/* Like sl_chan_select but never waits: returns the index of a case performed, or SL_EAGAIN if
 * none was ready (Go's select with a default case). Same err_out and error rules. */
SL_API int sl_chan_try_select(sl_chan_case *cases, size_t n, int *err_out);

/* Receive-from-any: waits until one of the n channels has an element, receives it into out
 * (elem_size bytes; all channels must have the same elem_size) and returns that channel's
 * index. Closed, drained channels are skipped; once every channel is closed and drained returns
 * SL_ECLOSED. NULL entries are skipped (but all NULL returns SL_EINVAL). Returns the ctx's error
 * if it fires first (nothing received), SL_EINVAL, or SL_ENOMEM (n > 8 needs memory). Blocks. */
SL_API int sl_chan_select_recv(sl_chan **chans, size_t n, void *out, sl_ctx *ctx);

SL_END_DECLS

#endif /* SLUICE_CHAN_H */
