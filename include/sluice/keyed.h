/* sl_keyed: many token buckets by key (client IPs, API keys), in one bounded table.
 *
 * Each key gets its own bucket with sl_limiter's exact semantics (the same code does the token
 * math), created full on first use with the limit and burst of the key's tier. Keys are byte
 * strings of up to SL_KEYED_MAX_KEY bytes, compared by content: a 16-byte binary IP (IPv4
 * mapped into IPv6), an API-key string, anything.
 *
 * Memory. The table is split into shards, each with a fixed slot array (max_keys / shards
 * entries, rounded down) reserved at creation but touched only as keys arrive, so resident
 * memory grows with the keys actually held. Every entry takes SL_KEYED_ENTRY_BYTES (56)
 * bytes with its key inline when the key is at most SL_KEYED_INLINE_KEY (16) bytes; a longer
 * key also takes one malloc of its length. Each shard's bucket index grows with the entries
 * it holds (4 to 8 bytes per entry; doubling it holds the shard lock for one pass over the
 * shard), up to 4 bytes x the power of two at or above the shard's slot count. So the table
 * never holds more than max_keys entries, and its memory never exceeds about
 * max_keys x (56 + 8) bytes + the long keys + 64 bytes x shards, whatever keys arrive. Each
 * shard fills on its own: eviction may start in one shard a little before the table as a
 * whole holds max_keys.
 *
 * Eviction, and what sluice guarantees about it. No thread sweeps: each insert of a new key
 * examines the next couple of entries in its shard (a cursor goes round) and removes those
 * idle for idle_ttl. When a shard is full, an insert examines the next entries, up to
 * SL_KEYED_SCAN_FULL of them or until it has found SL_KEYED_SAMPLE candidates, and evicts
 * the idlest candidate. In both cases an entry is removed only if its bucket is full again
 * (it has been idle long enough to refill, and it has no reservation still to act), so
 * removing it loses nothing: a key that comes back finds exactly the bucket it would have
 * had. Hence:
 *   - churning keys never resets anyone's limit: a key is never given more tokens than its
 *     own bucket would hold had it never been evicted;
 *   - an entry idle for idle_ttl is gone after at most one full turn of its shard's cursor,
 *     if its bucket had refilled (choose idle_ttl >= burst / limit so that it has);
 *   - "idlest first" is approximate: the idlest of a sample of up to SL_KEYED_SAMPLE
 *     evictable entries taken in cursor order (at most SL_KEYED_SCAN_FULL examined), as
 *     Redis approximates LRU by sampling; the cursor goes round, so every entry is sampled;
 *   - when none of those is evictable (every entry fresh: an attack, or max_keys too small),
 *     the new key is not admitted, and on_full decides its answer: SL_KEYED_FULL_LIMITED
 *     answers "limited" (allow returns 0), SL_KEYED_FULL_ERROR returns SL_EFULL, and
 *     SL_KEYED_FULL_OVERFLOW runs it against one shared overflow bucket (its own limit and
 *     burst), so unknown keys share a budget while the table is full. Keys already in the
 *     table are never affected by a full table.
 *
 * Tiers. A key's tier (limit, burst) is chosen when its entry is created: tier_fn(key) returns
 * an index into tiers[], and any index out of range (or no tier_fn) means default_tier. A key
 * keeps its tier while its entry lives; sl_keyed_remove forgets a key so that the next use
 * asks tier_fn again.
 *
 * Threads: any. Every function may be called from any thread, except sl_keyed_free. Keys in
 * different shards never contend; one shard's lock is held for a lookup and the token math.
 * tier_fn is called with that lock held: it must be fast and must not call into this table.
 * Nothing blocks. */
#ifndef SLUICE_KEYED_H
#define SLUICE_KEYED_H

#include "sluice/common.h"
#include "sluice/limiter.h"

SL_BEGIN_DECLS

typedef struct sl_keyed sl_keyed;

#define SL_KEYED_MAX_KEY     1024 /* bytes */
#define SL_KEYED_INLINE_KEY  16   /* keys up to this length live inside the entry */
#define SL_KEYED_ENTRY_BYTES 56   /* bytes per entry, key inline */
#define SL_KEYED_SCAN_FULL   64   /* at most this many entries examined to make room */
#define SL_KEYED_SAMPLE      8    /* ...stopping at this many eviction candidates */
#define SL_KEYED_MAX_TIERS   255

/* A tier: the limit (events/s; SL_RATE_INF allowed) and burst of every key in it. */
typedef struct sl_keyed_tier {
    double limit;
    int64_t burst;
} sl_keyed_tier;

/* Returns the tier index of key (len bytes), or an out-of-range value for the default tier.
 * Called when a key's entry is created (or a new key is refused by a full table, to report
 * its tier), with the shard lock held. */
typedef int (*sl_keyed_tier_fn)(void *arg, const void *key, size_t len);

/* What a new key gets while its shard is full of fresh entries (see above). */
typedef enum sl_keyed_full {
    SL_KEYED_FULL_LIMITED = 0, /* answered "limited" (0) */
    SL_KEYED_FULL_ERROR,       /* SL_EFULL */
    SL_KEYED_FULL_OVERFLOW,    /* the shared overflow bucket decides */
} sl_keyed_full;

typedef struct sl_keyed_config {
    const sl_keyed_tier *tiers; /* copied; ntiers in 1..SL_KEYED_MAX_TIERS */
    int ntiers;
    int default_tier;         /* index into tiers */
    sl_keyed_tier_fn tier_fn; /* NULL: every key in default_tier */
    void *tier_arg;
    size_t max_keys;     /* hard bound on entries, >= 1 (0 means 1 << 20) */
    int64_t idle_ttl_ns; /* idle time after which a refilled entry goes (0: 10 min); <= 24 days */
    int shards;          /* power of two, 1..4096 (0: 64, fewer if max_keys is small) */
    sl_keyed_full on_full;
    sl_keyed_tier overflow; /* the shared bucket of SL_KEYED_FULL_OVERFLOW */
} sl_keyed_config;

/* Counters, summed over shards when read (each shard's part is exact; the sum is not one
 * instant's snapshot while other threads run). */
typedef struct sl_keyed_stats {
    uint64_t keys;           /* entries held now */
    uint64_t hits;           /* uses of a key that had an entry */
    uint64_t misses;         /* uses of a key that had none (an entry was created, or not) */
    uint64_t evictions_idle; /* entries removed after idle_ttl */
    uint64_t evictions_full; /* entries removed to make room in a full shard */
    uint64_t rejections;     /* new keys not admitted because their shard was full */
    uint64_t bytes;          /* bytes allocated (slots reserved, indexes, long keys) */
} sl_keyed_stats;

/* A reservation on one key. Caller storage; copyable. r is an sl_reservation whose fields
 * mean what they mean for sl_limiter (r.lim is NULL: cancel through sl_keyed_cancel_at). */
typedef struct sl_keyed_reservation {
    sl_reservation r;
    /* What the bucket looked like, for rate-limit headers and Retry-After, read under the
     * same lock as the reservation (no second lookup needed). Filled by every reserve. */
    double tokens; /* tokens left after a grant; held when refused (limit 0: the burst left) */
    double limit;  /* the limit and burst of the bucket that decided (the key's tier, or the */
    int64_t burst; /* overflow bucket); a key not admitted reports its tier's */
    int64_t wait;  /* refused: the wait n tokens need (SL_FOREVER: never); 0 otherwise, or
                    * when the table refused a new key */
    uint64_t hash; /* private: the key's hash, so that cancel does not hash it again */
    int where;     /* private: which bucket (the key's, the overflow one, or none) */
} sl_keyed_reservation;

/* Creates a table. Returns 0 and sets *out, or SL_EINVAL (cfg NULL, no tiers, bad
 * default_tier, shards not a power of two, NaN limit, ttl out of range), or SL_ENOMEM;
 * *out is then untouched. Free with sl_keyed_free. Threads: any. Does not block. */
SL_API int sl_keyed_new(const sl_keyed_config *cfg, sl_keyed **out);

/* Frees the table and every entry; NULL is ignored. No other thread may be using it. */
SL_API void sl_keyed_free(sl_keyed *k);

/* Takes n tokens from key's bucket at now_ns if they are there (sl_limiter_allow_n_at on
 * the key's bucket, created full if the key is new). Returns 1 if allowed, 0 if limited, or
 * SL_EINVAL (key NULL with len > 0, len > SL_KEYED_MAX_KEY), SL_EFULL (see on_full), or
 * SL_ENOMEM (a long key could not be copied: the key is not admitted). Threads: any. */
SL_API int sl_keyed_allow_n_at(sl_keyed *k, const void *key, size_t len, int64_t n, int64_t now_ns);
SL_API int sl_keyed_allow_n(sl_keyed *k, const void *key, size_t len, int64_t n);
SL_API int sl_keyed_allow(sl_keyed *k, const void *key, size_t len);

/* Reserves n tokens of key's bucket at now_ns (sl_limiter_reserve_n_at). Returns 1 if
 * granted (out->r says when to act), 0 if refused (n > burst), or the errors of allow.
 * out is always filled (not ok on failure). Threads: any. */
SL_API int sl_keyed_reserve_n_at(sl_keyed *k, const void *key, size_t len, int64_t n,
                                 int64_t now_ns, sl_keyed_reservation *out);

/* Reserves n tokens of key's bucket at now_ns only if they are there within max_wait_ns
 * (x/time/rate's reserveN(now, n, maxFutureReserve); sl_limiter_reserve_n_max_at on the key's
 * bucket). With max_wait_ns = 0 it is allow_n_at that keeps a reservation to cancel: a grant
 * then acts now and takes nothing from the future, so cancelling it at the same instant gives
 * back exactly what it took. One lookup, under one shard lock; out->tokens, limit, burst and
 * wait describe the bucket as the decision saw it. Returns 1 if granted, 0 if refused
 * (out->wait says how long n tokens would take; 0 if the table refused a new key), or the
 * errors of allow. out is always filled. Threads: any. Does not block. */
SL_API int sl_keyed_reserve_n_max_at(sl_keyed *k, const void *key, size_t len, int64_t n,
                                     int64_t now_ns, int64_t max_wait_ns,
                                     sl_keyed_reservation *out);

/* Gives back what res reserved on key, as sl_reservation_cancel_at does. Does nothing if the
 * key's entry is gone (it was evicted, which needs its bucket full: nothing to give back).
 * Pass the same key as to reserve. Threads: any. */
SL_API void sl_keyed_cancel_at(sl_keyed *k, const void *key, size_t len,
                               const sl_keyed_reservation *res, int64_t now_ns);

/* The tokens key's bucket holds at now_ns, or its tier's burst if the key has no entry (what
 * it would start with). For a limit-0 tier it is the burst left, which is what limits such a
 * key (Go's TokensAt reports an unused field there). Creates nothing. Threads: any. */
SL_API double sl_keyed_tokens_at(sl_keyed *k, const void *key, size_t len, int64_t now_ns);

/* Forgets key at once (its bucket too, refilled or not: the caller decides). Returns 1 if it
 * was there, 0 if not, SL_EINVAL on a bad key. Threads: any. */
SL_API int sl_keyed_remove(sl_keyed *k, const void *key, size_t len);

/* Fills *st with the counters. Threads: any. */
SL_API void sl_keyed_stats_get(sl_keyed *k, sl_keyed_stats *st);

SL_END_DECLS

#endif /* SLUICE_KEYED_H */
