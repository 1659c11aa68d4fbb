/* sl_keyed: a sharded, bounded table of token buckets by key.
 *
 * Layout. A key's 64-bit hash (seeded per table from getrandom, so that clients cannot aim
 * keys at one chain) picks a shard with its low bits; its high 32 bits are the entry's tag,
 * and the tag's low bits pick a bucket in the shard's index. A shard owns a fixed array of
 * entry slots (its share of max_keys), handed out from a free list or past a high-water mark,
 * so slots never move and are touched only when used; `heads` is the shard's bucket index
 * (slot + 1, 0 = empty), and entries chain through `next`. Entries are 56 bytes: the bucket
 * state (sl__tb: tokens, last, last_event), the key inline up to 16 bytes (else a malloc'd
 * copy), tag, chain link, last-seen tick, key length, tier and flags.
 *
 * Eviction without a sweeper. Each shard has a cursor over its used slots. An insert of a new
 * key first advances the cursor over two slots, removing entries idle for idle_ttl; if the
 * shard is still full it looks at the next SL_KEYED_SCAN_FULL slots and removes the idlest.
 * Either way only an entry whose bucket is full again can go (refilled and no reservation
 * pending): such an entry is indistinguishable from a new one, so eviction is invisible to
 * clients and cannot be used to reset a limit. If nothing can go, the key is not admitted and
 * on_full decides the answer.
 *
 * Last-seen is a 32-bit count of 2^20 ns ticks (about 1.05 ms), compared with wrap-around
 * arithmetic: ages up to 2^31 ticks (26 days) are exact, which bounds idle_ttl. Its precision
 * only decides which refilled entry goes first, never whether a client is limited.
 *
 * Locking: one spinlock per shard guards everything in the shard, counters included; the
 * overflow bucket has its own. No function holds two locks. Keys whose tier has limit 0 keep
 * Go's "spend the burst" semantics by storing the burst left in the entry's tokens field
 * (with limit 0 Go never reads tokens), so no entry needs a burst field. */
#include <stdlib.h>
#include <string.h>

#include "sluice/keyed.h"
#include "sluice/error.h"
#include "sluice/clock.h"
#include "base/hash_int.h"
#include "rate/rate_int.h"

#define F_USED 1u
#define F_LONG 2u

enum { WHERE_NONE = 0, WHERE_KEY = 1, WHERE_OVERFLOW = 2 };

typedef struct entry {
    sl__tb tb; /* guarded by the shard lock, as is every field */
    union {
        uint8_t inl[SL_KEYED_INLINE_KEY];
        uint8_t *ptr; /* F_LONG: malloc'd copy */
    } key;
    uint32_t tag;  /* high 32 bits of the hash */
    uint32_t next; /* slot + 1 of the next entry in the chain (or the free list); 0 ends */
    uint32_t seen; /* tick (2^20 ns) of the last use */
    uint16_t klen;
    uint8_t tier;
    uint8_t flags;
} entry;

_Static_assert(sizeof(entry) == SL_KEYED_ENTRY_BYTES, "entry size is documented in keyed.h");

typedef struct shard {
    sl__spin lock;
    uint32_t cap;       /* slots */
    uint32_t hw;        /* slots [0, hw) have been used at some time */
    uint32_t count;     /* entries in use */
    uint32_t free_head; /* slot + 1 of the first free slot below hw; 0 = none */
    uint32_t cursor;    /* sweep position, < hw */
    uint32_t bmask;     /* buckets - 1; grows with count, up to max_bmask */
    uint32_t max_bmask; /* (power of two >= cap) - 1 */
    uint32_t *heads;    /* bmask + 1 chain heads, slot + 1 */
    entry *slab;        /* cap slots */
    uint64_t hits, misses, ev_idle, ev_full, rejections, long_bytes;
} __attribute__((aligned(64))) shard;

struct sl_keyed {
    sl__hseed seed;
    uint32_t shard_mask;
    uint32_t ttl_ticks;
    shard *shards;
    sl_keyed_tier tiers[SL_KEYED_MAX_TIERS];
    int ntiers, default_tier;
    sl_keyed_tier_fn tier_fn;
    void *tier_arg;
    sl_keyed_full on_full;
    size_t bytes;
    /* The overflow bucket, shared by keys not admitted while their shard is full. */
    sl__spin ovf_lock;
    double ovf_limit;
    int64_t ovf_burst; /* guarded by ovf_lock (limit 0 spends it, as in Go) */
    sl__tb ovf;        /* guarded by ovf_lock */
};

/* ---- hashing ------------------------------------------------------------------------------ */

/* The shared seeded hash (base/hash_int.h): clients cannot predict collisions. */
static inline uint64_t hash_key(const sl_keyed *k, const uint8_t *p, size_t len)
{
    return sl__hash_bytes(&k->seed, p, len);
}

/* ---- entries ------------------------------------------------------------------------------ */

static inline uint32_t ticks(int64_t t)
{
    return (uint32_t)((uint64_t)t >> 20);
}

static inline uint32_t age(const entry *e, uint32_t now)
{
    int32_t a = (int32_t)(now - e->seen);
    return a < 0 ? 0 : (uint32_t)a; /* seen "in the future": time went back */
}

static inline const uint8_t *key_of(const entry *e)
{
    return (e->flags & F_LONG) ? e->key.ptr : e->key.inl;
}

/* The limit and burst to run e's bucket with; limit-0 tiers keep the burst left in tokens. */
static inline void params(const sl_keyed *k, const entry *e, double *limit, int64_t *burst)
{
    const sl_keyed_tier *tr = &k->tiers[e->tier];
    *limit = tr->limit;
    *burst = tr->limit == 0 ? (int64_t)e->tb.tokens : tr->burst;
}

/* True if removing e loses nothing: its bucket is full again and no reservation is pending. */
static bool refilled(const sl_keyed *k, const entry *e, int64_t t)
{
    const sl_keyed_tier *tr = &k->tiers[e->tier];
    if (tr->limit == SL_RATE_INF) return true;
    if (tr->limit == 0) return e->tb.tokens >= (double)tr->burst;
    return e->tb.last_event <= t && sl__tb_advance(&e->tb, tr->limit, tr->burst, t) >= tr->burst;
}

/* Key equality; 16-byte keys (IPv6 and mapped IPv4 addresses) skip the memcmp call. */
static inline bool key_eq(const uint8_t *a, const uint8_t *b, size_t len)
{
    if (len == 16) return ((sl__rd64(a) ^ sl__rd64(b)) | (sl__rd64(a + 8) ^ sl__rd64(b + 8))) == 0;
    return memcmp(a, b, len) == 0;
}

static entry *find(shard *sh, uint32_t tag, const void *key, size_t len)
{
    uint32_t i = sh->heads[tag & sh->bmask];
    while (i) {
        entry *e = &sh->slab[i - 1];
        if (e->tag == tag && e->klen == len && key_eq(key_of(e), key, len)) return e;
        i = e->next;
    }
    return NULL;
}

static void evict(shard *sh, uint32_t slot)
{
    entry *e = &sh->slab[slot];
    uint32_t *link = &sh->heads[e->tag & sh->bmask];
    while (*link != slot + 1)
        link = &sh->slab[*link - 1].next;
    *link = e->next;
    if (e->flags & F_LONG) {
        sh->long_bytes -= e->klen;
        free(e->key.ptr);
    }
    e->flags = 0;
    e->next = sh->free_head;
    sh->free_head = slot + 1;
    sh->count--;
}

/* Advances the cursor over `steps` slots, removing refilled entries idle for the ttl. */
static void sweep_idle(const sl_keyed *k, shard *sh, int64_t t, int steps)
{
    uint32_t now = ticks(t);
    for (int i = 0; i < steps && sh->hw; i++) {
        uint32_t c = sh->cursor;
        entry *e = &sh->slab[c];
        if ((e->flags & F_USED) && age(e, now) >= k->ttl_ticks && refilled(k, e, t)) {
            evict(sh, c);
            sh->ev_idle++;
        }
        sh->cursor = c + 1 < sh->hw ? c + 1 : 0;
    }
}

/* A full shard: removes the idlest of the first SL_KEYED_SAMPLE refilled entries among the
 * next SL_KEYED_SCAN_FULL. Stopping at a sample keeps the common case (most entries
 * refilled) to a few entries; the scan bound keeps the worst case (an attack of fresh keys)
 * to 64 entries per new key. */
static bool make_room(const sl_keyed *k, shard *sh, int64_t t)
{
    uint32_t now = ticks(t);
    uint32_t best = UINT32_MAX, best_age = 0, found = 0;
    uint32_t scan = sh->hw < SL_KEYED_SCAN_FULL ? sh->hw : SL_KEYED_SCAN_FULL;
    for (uint32_t i = 0; i < scan && found < SL_KEYED_SAMPLE; i++) {
        uint32_t c = sh->cursor;
        entry *e = &sh->slab[c];
        if ((e->flags & F_USED) && refilled(k, e, t)) {
            uint32_t a = age(e, now);
            if (best == UINT32_MAX || a > best_age) {
                best = c;
                best_age = a;
            }
            found++;
        }
        sh->cursor = c + 1 < sh->hw ? c + 1 : 0;
    }
    if (best == UINT32_MAX) return false;
    evict(sh, best);
    sh->ev_full++;
    return true;
}

/* Doubles the shard's chain index, keeping chains at one entry on average. The index starts
 * small and grows with the keys held, so a table sized for a million keys that holds ten
 * thousand keeps its index in cache. Chains are rebuilt from the tags (no key is rehashed);
 * free slots keep their free-list links. If memory is short the old index stays: chains just
 * get longer. */
static void grow_index(shard *sh)
{
    uint32_t nb = (sh->bmask + 1) * 2;
    uint32_t *heads = calloc(nb, sizeof *heads);
    if (!heads) return;
    for (uint32_t s = 0; s < sh->hw; s++) {
        entry *e = &sh->slab[s];
        if (!(e->flags & F_USED)) continue;
        uint32_t b = e->tag & (nb - 1);
        e->next = heads[b];
        heads[b] = s + 1;
    }
    free(sh->heads);
    sh->heads = heads;
    sh->bmask = nb - 1;
}

static int tier_of(const sl_keyed *k, const void *key, size_t len)
{
    if (!k->tier_fn) return k->default_tier;
    int i = k->tier_fn(k->tier_arg, key, len);
    return i >= 0 && i < k->ntiers ? i : k->default_tier;
}

/* Creates key's entry, full. Returns it, or NULL with *err = SL_EFULL or SL_ENOMEM. */
static entry *admit(sl_keyed *k, shard *sh, uint32_t tag, const void *key, size_t len, int64_t t,
                    int *err)
{
    sweep_idle(k, sh, t, 2);
    if (sh->count >= sh->cap && !make_room(k, sh, t)) {
        sh->rejections++;
        *err = SL_EFULL;
        return NULL;
    }
    uint8_t *copy = NULL;
    if (len > SL_KEYED_INLINE_KEY) {
        copy = malloc(len);
        if (!copy) {
            *err = SL_ENOMEM;
            return NULL;
        }
        memcpy(copy, key, len);
        sh->long_bytes += len;
    }
    /* Before the new entry is marked used: grow_index relinks every used entry. */
    if (sh->count > sh->bmask && sh->bmask < sh->max_bmask) grow_index(sh);
    uint32_t slot;
    if (sh->free_head) {
        slot = sh->free_head - 1;
        sh->free_head = sh->slab[slot].next;
    } else {
        slot = sh->hw++;
    }
    entry *e = &sh->slab[slot];
    int tier = tier_of(k, key, len);
    sl__tb_init(&e->tb);
    if (k->tiers[tier].limit == 0) e->tb.tokens = (double)k->tiers[tier].burst;
    if (copy) {
        e->key.ptr = copy;
        e->flags = F_USED | F_LONG;
    } else {
        memcpy(e->key.inl, key, len);
        e->flags = F_USED;
    }
    e->tag = tag;
    e->klen = (uint16_t)len;
    e->tier = (uint8_t)tier;
    uint32_t *head = &sh->heads[tag & sh->bmask];
    e->next = *head;
    *head = slot + 1;
    sh->count++;
    return e;
}

/* ---- operations --------------------------------------------------------------------------- */

/* The wait of a refusal: how long until n tokens are there when tok are (Go's reserveN). */
static int64_t refusal_wait(double limit, int64_t burst, double tok, int64_t n)
{
    if (n > burst || limit <= 0) return SL_FOREVER;
    if (limit == SL_RATE_INF) return 0;
    int64_t w = sl__dur_from_tokens(limit, (double)n - tok);
    return w > 0 ? w : 0;
}

/* Fills what out reports about the bucket after sl__tb_reserve on s (limit, burst: the
 * bucket's, burst before a limit-0 spend). */
static void report(sl_keyed_reservation *out, const sl__tb *s, double limit, int64_t burst,
                   int64_t burst_left, int64_t t, int64_t n)
{
    out->limit = limit;
    out->burst = limit == 0 ? burst : burst_left;
    if (limit == SL_RATE_INF) {
        out->tokens = (double)burst_left;
    } else if (limit == 0) {
        out->tokens = (double)burst_left;
        if (!out->r.ok) out->wait = SL_FOREVER;
    } else if (out->r.ok) {
        out->tokens = s->tokens; /* brought up to date at t by the reservation */
    } else {
        out->tokens = sl__tb_advance(s, limit, burst, t);
        out->wait = refusal_wait(limit, burst, out->tokens, n);
    }
}

static int overflow_reserve(sl_keyed *k, int64_t n, int64_t t, int64_t max_future,
                            sl_keyed_reservation *out)
{
    sl__spin_lock(&k->ovf_lock);
    int64_t burst = k->ovf_burst;
    sl__tb_reserve(&k->ovf, k->ovf_limit, &k->ovf_burst, t, n, max_future, &out->r);
    report(out, &k->ovf, k->ovf_limit, burst, k->ovf_burst, t, n);
    sl__spin_unlock(&k->ovf_lock);
    out->r.lim = NULL;
    out->where = out->r.ok ? WHERE_OVERFLOW : WHERE_NONE;
    return out->r.ok ? 1 : 0;
}

static inline shard *shard_of(const sl_keyed *k, uint64_t h)
{
    return &k->shards[(uint32_t)h & k->shard_mask];
}

static void refuse(sl_keyed_reservation *out)
{
    memset(out, 0, sizeof *out);
    out->r.time_to_act = SL__TIME_ZERO;
    out->where = WHERE_NONE;
}

/* rep: fill what out reports about the bucket (allow does not want it; inlined per caller,
 * so the allow path pays nothing for it). */
static inline __attribute__((always_inline)) int reserve(sl_keyed *k, const void *key, size_t len,
                                                         int64_t n, int64_t t, int64_t max_future,
                                                         sl_keyed_reservation *out, bool rep)
{
    refuse(out);
    if (len > SL_KEYED_MAX_KEY || (!key && len)) return SL_EINVAL;
    if (!len) key = ""; /* memcmp/memcpy want a pointer even for 0 bytes */
    uint64_t h = hash_key(k, key, len);
    uint32_t tag = (uint32_t)(h >> 32);
    shard *sh = shard_of(k, h);
    out->hash = h;

    sl__spin_lock(&sh->lock);
    entry *e = find(sh, tag, key, len);
    if (e) {
        sh->hits++;
    } else {
        sh->misses++;
        int err = 0;
        e = admit(k, sh, tag, key, len, t, &err);
        if (!e) {
            if (rep && err == SL_EFULL && k->on_full == SL_KEYED_FULL_LIMITED) {
                /* Report the tier the key would have had (tier_fn wants the lock held). */
                const sl_keyed_tier *tr = &k->tiers[tier_of(k, key, len)];
                out->limit = tr->limit;
                out->burst = tr->burst;
            }
            sl__spin_unlock(&sh->lock);
            if (err != SL_EFULL) return err;
            switch (k->on_full) {
            case SL_KEYED_FULL_ERROR: return SL_EFULL;
            case SL_KEYED_FULL_OVERFLOW: return overflow_reserve(k, n, t, max_future, out);
            default: return 0;
            }
        }
    }
    e->seen = ticks(t);
    double limit;
    int64_t burst;
    params(k, e, &limit, &burst);
    int64_t left = burst;
    sl__tb_reserve(&e->tb, limit, &left, t, n, max_future, &out->r);
    if (limit == 0) e->tb.tokens = (double)left;
    if (rep) report(out, &e->tb, limit, limit == 0 ? k->tiers[e->tier].burst : burst, left, t, n);
    sl__spin_unlock(&sh->lock);
    out->r.lim = NULL;
    out->where = out->r.ok ? WHERE_KEY : WHERE_NONE;
    return out->r.ok ? 1 : 0;
}

int sl_keyed_allow_n_at(sl_keyed *k, const void *key, size_t len, int64_t n, int64_t now_ns)
{
    sl_keyed_reservation r;
    return reserve(k, key, len, n, now_ns, 0, &r, false);
}

int sl_keyed_allow_n(sl_keyed *k, const void *key, size_t len, int64_t n)
{
    return sl_keyed_allow_n_at(k, key, len, n, sl_now_ns());
}

int sl_keyed_allow(sl_keyed *k, const void *key, size_t len)
{
    return sl_keyed_allow_n_at(k, key, len, 1, sl_now_ns());
}

int sl_keyed_reserve_n_at(sl_keyed *k, const void *key, size_t len, int64_t n, int64_t now_ns,
                          sl_keyed_reservation *out)
{
    return reserve(k, key, len, n, now_ns, SL_FOREVER, out, true);
}

int sl_keyed_reserve_n_max_at(sl_keyed *k, const void *key, size_t len, int64_t n, int64_t now_ns,
                              int64_t max_wait_ns, sl_keyed_reservation *out)
{
    return reserve(k, key, len, n, now_ns, max_wait_ns, out, true);
}

/* Gives res's tokens back to its bucket: cancel (x/time/rate's CancelAt: exact, at the instant
 * the reservation was made) or refund (adds them back at t, capped at the burst: for a give-back
 * that comes after a wait, when other reservations may have moved the bucket). One lookup under
 * the key's shard lock; a key evicted meanwhile has nothing to give back to. */
static void give_back(sl_keyed *k, const void *key, size_t len, const sl_keyed_reservation *res,
                      int64_t t, bool refund)
{
    if (!res->r.ok) return;
    sl__spin *lock;
    sl__tb *tb;
    double limit;
    int64_t burst;
    shard *sh = NULL;
    if (res->where == WHERE_OVERFLOW) {
        lock = &k->ovf_lock;
        sl__spin_lock(lock);
        tb = &k->ovf;
        limit = k->ovf_limit;
        burst = k->ovf_burst;
    } else {
        if (res->where != WHERE_KEY || len > SL_KEYED_MAX_KEY || (!key && len)) return;
        if (!len) key = "";
        /* The hash reserve computed: the key is the same (the caller's contract). */
        uint64_t h = res->hash;
        sh = shard_of(k, h);
        lock = &sh->lock;
        sl__spin_lock(lock);
        entry *e = find(sh, (uint32_t)(h >> 32), key, len);
        if (!e) {
            sl__spin_unlock(lock);
            return;
        }
        tb = &e->tb;
        params(k, e, &limit, &burst);
    }
    if (refund)
        sl__tb_refund(tb, limit, burst, res->r.tokens, t);
    else if (limit != 0 || !sh)
        /* A key at limit 0: cancel restores nothing to the burst (Go's tokens field, which it
         * would change, is unused at limit 0); keep the encoding intact. */
        sl__tb_cancel(tb, limit, burst, &res->r, t);
    sl__spin_unlock(lock);
}

void sl_keyed_cancel_at(sl_keyed *k, const void *key, size_t len, const sl_keyed_reservation *res,
                        int64_t now_ns)
{
    give_back(k, key, len, res, now_ns, false);
}

void sl__keyed_refund(sl_keyed *k, const void *key, size_t len, const sl_keyed_reservation *res,
                      int64_t t)
{
    give_back(k, key, len, res, t, true);
}

double sl_keyed_tokens_at(sl_keyed *k, const void *key, size_t len, int64_t now_ns)
{
    if (len > SL_KEYED_MAX_KEY || (!key && len)) return 0;
    if (!len) key = "";
    uint64_t h = hash_key(k, key, len);
    shard *sh = shard_of(k, h);
    sl__spin_lock(&sh->lock);
    entry *e = find(sh, (uint32_t)(h >> 32), key, len);
    double tokens;
    if (e) {
        double limit;
        int64_t burst;
        params(k, e, &limit, &burst);
        tokens = limit == 0 ? (double)burst : sl__tb_advance(&e->tb, limit, burst, now_ns);
    } else {
        tokens = (double)k->tiers[tier_of(k, key, len)].burst;
    }
    sl__spin_unlock(&sh->lock);
    return tokens;
}

bool sl__keyed_has(sl_keyed *k, const void *key, size_t len)
{
    if (len > SL_KEYED_MAX_KEY || (!key && len)) return false;
    if (!len) key = "";
    uint64_t h = hash_key(k, key, len);
    shard *sh = shard_of(k, h);
    sl__spin_lock(&sh->lock);
    bool has = find(sh, (uint32_t)(h >> 32), key, len) != NULL;
    sl__spin_unlock(&sh->lock);
    return has;
}

int sl_keyed_remove(sl_keyed *k, const void *key, size_t len)
{
    if (len > SL_KEYED_MAX_KEY || (!key && len)) return SL_EINVAL;
    if (!len) key = "";
    uint64_t h = hash_key(k, key, len);
    shard *sh = shard_of(k, h);
    sl__spin_lock(&sh->lock);
    entry *e = find(sh, (uint32_t)(h >> 32), key, len);
    if (e) evict(sh, (uint32_t)(e - sh->slab));
    sl__spin_unlock(&sh->lock);
    return e ? 1 : 0;
}

void sl_keyed_stats_get(sl_keyed *k, sl_keyed_stats *st)
{
    memset(st, 0, sizeof *st);
    st->bytes = k->bytes;
    for (uint32_t i = 0; i <= k->shard_mask; i++) {
        shard *sh = &k->shards[i];
        sl__spin_lock(&sh->lock);
        st->keys += sh->count;
        st->hits += sh->hits;
        st->misses += sh->misses;
        st->evictions_idle += sh->ev_idle;
        st->evictions_full += sh->ev_full;
        st->rejections += sh->rejections;
        st->bytes += sh->long_bytes + (sh->bmask + 1) * sizeof(uint32_t);
        sl__spin_unlock(&sh->lock);
    }
}

/* ---- lifecycle ---------------------------------------------------------------------------- */

static bool valid_tier(const sl_keyed_tier *t)
{
    return t->limit == t->limit; /* not NaN */
}

static int check_config(const sl_keyed_config *cfg)
{
    if (!cfg || !cfg->tiers || cfg->ntiers < 1 || cfg->ntiers > SL_KEYED_MAX_TIERS)
        return SL_EINVAL;
    if (cfg->default_tier < 0 || cfg->default_tier >= cfg->ntiers) return SL_EINVAL;
    for (int i = 0; i < cfg->ntiers; i++)
        if (!valid_tier(&cfg->tiers[i])) return SL_EINVAL;
    if (cfg->on_full == SL_KEYED_FULL_OVERFLOW && !valid_tier(&cfg->overflow)) return SL_EINVAL;
    if (cfg->shards < 0 || cfg->shards > 4096 || (cfg->shards & (cfg->shards - 1)))
        return SL_EINVAL;
    if (cfg->idle_ttl_ns < 0 || cfg->idle_ttl_ns > SL_SEC(24 * 86400)) return SL_EINVAL;
    if (cfg->max_keys > ((size_t)1 << 40)) return SL_EINVAL;
    return 0;
}

void sl_keyed_free(sl_keyed *k)
{
    if (!k) return;
    for (uint32_t i = 0; k->shards && i <= k->shard_mask; i++) {
        shard *sh = &k->shards[i];
        for (uint32_t j = 0; sh->slab && j < sh->hw; j++)
            if (sh->slab[j].flags & F_LONG) free(sh->slab[j].key.ptr);
        free(sh->slab);
        free(sh->heads);
    }
    free(k->shards);
    free(k);
}

int sl_keyed_new(const sl_keyed_config *cfg, sl_keyed **out)
{
    int err = check_config(cfg);
    if (err) return err;
    if (!out) return SL_EINVAL;
    size_t max_keys = cfg->max_keys ? cfg->max_keys : (size_t)1 << 20;
    uint32_t nshards = cfg->shards ? (uint32_t)cfg->shards : 64;
    while (nshards > 1 && nshards > max_keys)
        nshards >>= 1;
    if (max_keys / nshards >= UINT32_MAX) return SL_EINVAL;

    sl_keyed *k = calloc(1, sizeof *k);
    if (!k) return SL_ENOMEM;
    sl__hseed_init(&k->seed, k);
    memcpy(k->tiers, cfg->tiers, (size_t)cfg->ntiers * sizeof *cfg->tiers);
    k->ntiers = cfg->ntiers;
    k->default_tier = cfg->default_tier;
    k->tier_fn = cfg->tier_fn;
    k->tier_arg = cfg->tier_arg;
    k->on_full = cfg->on_full;
    int64_t ttl = cfg->idle_ttl_ns ? cfg->idle_ttl_ns : SL_SEC(600);
    k->ttl_ticks = (uint32_t)((ttl + (1 << 20) - 1) >> 20);
    k->ovf_limit = cfg->overflow.limit;
    k->ovf_burst = cfg->overflow.burst;
    sl__tb_init(&k->ovf);
    atomic_init(&k->ovf_lock.v, 0);
    k->shard_mask = nshards - 1;
    k->bytes = sizeof *k + nshards * sizeof(shard);

    k->shards = aligned_alloc(64, nshards * sizeof(shard));
    if (!k->shards) goto nomem;
    memset(k->shards, 0, nshards * sizeof(shard));
    uint32_t cap = (uint32_t)(max_keys / nshards);
    uint32_t nb = 1;
    while (nb < cap)
        nb <<= 1;
    for (uint32_t i = 0; i < nshards; i++) {
        shard *sh = &k->shards[i];
        atomic_init(&sh->lock.v, 0);
        sh->cap = cap;
        sh->max_bmask = nb - 1;
        sh->bmask = (nb < 16 ? nb : 16) - 1;
        /* calloc of a large block maps fresh zero pages: memory is resident only once the
         * slots are used. */
        sh->slab = calloc(cap, sizeof(entry));
        sh->heads = calloc(sh->bmask + 1, sizeof(uint32_t));
        if (!sh->slab || !sh->heads) goto nomem;
        k->bytes += (size_t)cap * sizeof(entry);
    }
    *out = k;
    return 0;
nomem:
    sl_keyed_free(k);
    return SL_ENOMEM;
}
