/* Private to src/redis: SHA-1 (script digests for EVALSHA) and the reactor helpers. */
#ifndef SLUICE_REDIS_INT_H
#define SLUICE_REDIS_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "loop/reactor.h"
#include "sluice/ctx.h"
#include "sluice/redis_limiter.h"

/* Writes the lowercase hex SHA-1 of data (41 bytes with the NUL): what Redis's SCRIPT LOAD
 * answers, so EVALSHA can be sent before that answer arrives. */
void sl__redis_sha1_hex(const void *data, size_t len, char out[41]);

/* SIGPIPE held back on the calling thread around a hiredis write (sigpipe.c): a write to a
 * reset or shut-down socket then fails with EPIPE instead of killing the process. Use as
 * hold; the hiredis call that may write; release, on the same thread, with nothing between
 * them that should receive SIGPIPE. Never fails; Threads: any (acts on the calling thread). */
typedef struct sl__sigpipe_guard {
    bool unblock;     /* the thread did not block SIGPIPE: release unblocks it */
    bool was_pending; /* one was pending already (the application's): left alone */
} sl__sigpipe_guard;
void sl__sigpipe_hold(sl__sigpipe_guard *g);
void sl__sigpipe_release(sl__sigpipe_guard *g);

/* Removes timer queue q from r's list (the reactor has no such call: its queues live as long
 * as it does; a detached Redis connection does not). Loop thread only. */
void sl__redis_tq_remove(sl__reactor *r, sl__tq *q);

/* An in-memory sl_keyed decision described as an sl_rate_decision (source SL_RATE_FROM_LOCAL):
 * a standalone limiter's fail-local answer. Returns 0 or sl_keyed_allow_n_at's error (then *d
 * is a refusal with d->err set). */
int sl__rate_decide_keyed_at(sl_keyed *k, const void *key, size_t len, int64_t n,
                             const sl_keyed_tier *tier, int64_t now_ns, sl_rate_decision *d);

/* ---- the contract with sl_ratelimit's Redis-backed rules (src/rate/ratelimit.c) ----------- */

/* Takes n tokens of key from its Redis bucket with the rule's tier (the limiter's own tiers are
 * not consulted), and waits for the answer: on a task, the check goes out on the task's loop
 * (the limiter attaches itself to that loop on first use, on its thread) and the task parks
 * until the reply or the limiter's timeout, or until ctx fires; on a plain thread it runs on
 * the limiter's private reactor and the thread blocks as long. No failure policy is applied:
 * Returns 0 with *d Redis's answer (d->err 0, source SL_RATE_FROM_REDIS, or FROM_LOCAL for an
 * infinite limit or n > burst), or 0 with d->err set (SL_ETIMEDOUT, SL_EUNAVAIL, SL_EREDIS,
 * SL_ECANCELED: Redis did not answer; the caller applies its policy), or without *d: ctx's
 * error, SL_EAGAIN (a loop thread outside a task: it must not block), SL_EUNAVAIL (the loop
 * cannot be attached), SL_EINVAL, SL_ENOMEM. */
int sl__redis_take(sl_redis_limiter *rl, const void *key, size_t len, int64_t n,
                   const sl_keyed_tier *tier, sl_ctx *ctx, sl_rate_decision *d);

/* Gives n tokens of key back to its Redis bucket, capped at the burst (the refund script), and
 * does not wait for the reply: sent on the calling loop's connection (a task or a loop
 * callback), else on the private reactor. Returns 0 (sent or queued), or SL_EUNAVAIL (not
 * connected: the refund is lost), SL_EINVAL, SL_ENOMEM. */
int sl__redis_refund(sl_redis_limiter *rl, const void *key, size_t len, int64_t n,
                     const sl_keyed_tier *tier);

/* The limiter's failure policy (a Redis-backed rule applies it with its own counters). */
sl_redis_fail_policy sl__redis_policy(const sl_redis_limiter *rl);

#endif
