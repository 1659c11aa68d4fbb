/* sl_map: a sharded hash map, each shard an open-addressing index over slab-allocated entries.
 *
 * Layout. A key's 64-bit SipHash-1-3 (keyed with random bytes per map, so a client choosing
 * keys — IP addresses, API keys — cannot aim them at one chain) picks the shard from bits 40..51
 * and its low 32 bits are the slot hash. A shard holds:
 *   - index: a power-of-two array of 4-byte slots {8-bit hash tag, entry number + 1}, 0 meaning
 *     empty, probed linearly, at most 3/4 full. Deletion shifts the following run back (no
 *     tombstones), so a probe always stops at the first empty slot.
 *   - entries: dense, numbered 0..count-1, stored in slabs whose sizes grow 16, 32, ... 256
 *     entries and then stay at 256, so an entry's address is computed from its number and
 *     never changes while it lives, a shard wastes less than one slab, and there is no
 *     malloc per entry. An entry is {hash32, klen, key area, value}: the key area holds the key
 *     when klen <= key_inline, otherwise a pointer to an allocated copy; the value starts at an
 *     8-byte boundary. Deleting entry i moves the last entry into i (and repoints its slot), so
 *     entries stay dense and a resize rebuilds the index by scanning them sequentially.
 *   Per entry that is 8 bytes of header plus 4/load bytes of index (5.3 to 10.7) plus slab
 *   slack: about 17 bytes beyond key and value at 1M keys (docs/map.md).
 * Invariants (under the shard's lock): every non-empty slot names a live entry and each live
 * entry is named by exactly one slot; count <= 3/4 of the slots; slab_slots >= count.
 *
 * Locking. One pthread rwlock per shard, writer-preferring so a stream of readers cannot starve
 * a writer. Writers always take it exclusively. Readers, by default, take it shared and copy
 * the value out; nothing the map owns is ever visible outside a call.
 *
 * lockfree_reads adds a seqlock read path (get_optimistic) that stores nothing shared, so
 * readers of a hot shard stop bouncing the lock's cache line between cores. Writers make the
 * shard's seq odd around every change, and store every byte a reader may load (slots, entries)
 * with atomic release stores; readers use acquire loads and retry or fall back to the lock
 * when seq moved (see "stores seen by optimistic readers" below: no fences, so TSan checks it
 * precisely). An optimistic reader may be looking at any index, slab-pointer array or slab at
 * any moment, so such a map frees none of them while it lives: replaced arrays are retired
 * until sl_map_free (doubling growth bounds them by the live ones), slabs and the index never
 * shrink, and long keys, which delete does free, are never followed: a key longer than
 * key_inline is read under the lock. docs/map.md compares the two modes.
 *
 * Ordering that matters. Insertion reserves everything it can fail on (index growth, a slab, a
 * long-key copy) before it changes anything, so SL_ENOMEM leaves the map as it was and
 * sl_map_update never calls its callback when it cannot carry out a creation. sl_map_range
 * copies one shard under the read lock and runs the callback after unlocking: that is what makes
 * "each key present throughout is visited exactly once" hold (a shard is copied once, a key lives
 * in one shard) and lets the callback call back into the map. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "sluice/clock.h"
#include "sluice/error.h"
#include "sluice/map.h"
#include "base/base_int.h"
#include "sync/map_int.h"

#define INDEX_MIN          16u /* slots */
#define SLAB_FIRST         16u /* entries in slab 0 */
#define SLAB_GEOM          5u  /* slabs 0..4 double: 16 .. 256 entries */
#define SLAB_MAX           256u
#define SLAB_GEOM_TOTAL    (SLAB_FIRST * ((1u << SLAB_GEOM) - 1u)) /* 496 entries */
#define SLOT_ENT_BITS      24u
#define SLOT_ENT_MASK      ((1u << SLOT_ENT_BITS) - 1u)
#define SHARD_MAX_ENTRIES  SLOT_ENT_MASK
#define HDR_BYTES          8u
#define KEY_INLINE_DEFAULT 16u
#define KEY_INLINE_MAX     256u
#define VALUE_MAX          65536u
#define SHARDS_DEFAULT     64u
#define SHARDS_MAX         4096u
#define CACHE_LINE         64u

/* An index slot: the top 8 bits of the key's 32-bit slot hash (a tag that spares reading the
 * entry of almost every non-matching slot) and the entry number + 1 in the low 24; 0 = empty. */
typedef uint32_t slot;

static inline slot mkslot(uint32_t h, uint32_t ent)
{
    return (h & ~SLOT_ENT_MASK) | (ent + 1);
}

static inline uint32_t slot_ent(slot sl) /* entry number; only for a non-empty slot */
{
    return (sl & SLOT_ENT_MASK) - 1;
}

/* The index and the slab-pointer array are each one allocation reached through an atomic
 * pointer, so an optimistic reader gets a consistent {mask, slots} or {slab pointers} from one
 * load. In a lockfree_reads map a replaced block is retired (kept until sl_map_free, linked
 * through `retired`) instead of freed, since a reader may still be inside it. */
typedef struct index_blk {
    struct index_blk *retired;
    uint32_t mask; /* immutable once published */
    slot slots[];
} index_blk;

typedef struct slabs_blk {
    struct slabs_blk *retired;
    uint32_t cap;
    unsigned char *slab[];
} slabs_blk;

typedef struct shard {
    _Alignas(CACHE_LINE) pthread_rwlock_t lock;
    slot *index;             /* == ix->slots; guarded by lock */
    uint32_t mask;           /* == ix->mask; guarded by lock */
    _Atomic uint32_t count;  /* live entries; written under the write lock, read anywhere */
    unsigned char **slabs;   /* == sb->slab; guarded by lock */
    uint32_t slabs_cap;      /* guarded by lock */
    _Atomic uint32_t nslabs; /* written under the write lock (release), read by optimistic
                                readers (acquire) */
    _Atomic uint32_t seq;    /* seqlock: odd while a writer changes a lockfree_reads shard */
    _Atomic(index_blk *) ix; /* replaced under the write lock (release) */
    _Atomic(slabs_blk *) sb; /* replaced under the write lock (release); NULL until a slab */
    index_blk *retired_ix;   /* lockfree_reads only; freed by sl_map_free; lock */
    slabs_blk *retired_sb;   /* idem */
    size_t retired_bytes;    /* bytes in the two retired lists; lock */
    uint32_t slab_slots;     /* entries the allocated slabs can hold; guarded by lock */
    size_t long_key_bytes;   /* bytes allocated for keys longer than key_inline; lock */
    size_t key_bytes_r;      /* sum over entries of klen rounded up to 8 (range's copy); lock */
    unsigned char *scratch;  /* value_size bytes for update's callback; write lock */
} shard;

struct sl_map {
    size_t value_size; /* as created */
    size_t value_r;    /* value_size rounded up to 8 */
    size_t key_inline; /* multiple of 8, >= 8 */
    size_t stride;     /* bytes per entry: HDR_BYTES + key_inline + value_r */
    uint32_t nshards;  /* power of two */
    bool lockfree;     /* lockfree_reads: seqlock readers, retire instead of free, no shrink */
    uint64_t k0, k1;   /* SipHash key */
    shard *shards;
};

/* ---- allocation (with test fault injection) ------------------------------------------------ */

static _Atomic long g_fail_after = -1;

void sl__map_fail_allocs_after(long n)
{
    atomic_store(&g_fail_after, n);
}

static bool alloc_should_fail(void)
{
    long n = atomic_load_explicit(&g_fail_after, memory_order_relaxed);
    while (n >= 0) {
        if (n == 0) return true;
        if (atomic_compare_exchange_weak(&g_fail_after, &n, n - 1)) return false;
    }
    return false;
}

static void *map_malloc(size_t n)
{
    return alloc_should_fail() ? NULL : malloc(n);
}

static void *map_calloc(size_t n, size_t size)
{
    return alloc_should_fail() ? NULL : calloc(n, size);
}

static void *map_realloc(void *p, size_t n)
{
    return alloc_should_fail() ? NULL : realloc(p, n);
}

/* ---- hashing: SipHash-1-3 ------------------------------------------------------------------- */

static inline uint64_t rotl64(uint64_t x, int b)
{
    return (x << b) | (x >> (64 - b));
}

static inline uint64_t load_le64(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    return v;
}

#define SIPROUND                                                      \
    do {                                                              \
        v0 += v1, v1 = rotl64(v1, 13), v1 ^= v0, v0 = rotl64(v0, 32); \
        v2 += v3, v3 = rotl64(v3, 16), v3 ^= v2;                      \
        v0 += v3, v3 = rotl64(v3, 21), v3 ^= v0;                      \
        v2 += v1, v1 = rotl64(v1, 17), v1 ^= v2, v2 = rotl64(v2, 32); \
    } while (0)

static uint64_t siphash13(uint64_t k0, uint64_t k1, const void *data, size_t len)
{
    uint64_t v0 = k0 ^ 0x736f6d6570736575ull, v1 = k1 ^ 0x646f72616e646f6dull;
    uint64_t v2 = k0 ^ 0x6c7967656e657261ull, v3 = k1 ^ 0x7465646279746573ull;
    const unsigned char *p = data;
    size_t words = len / 8;
    for (size_t i = 0; i < words; i++, p += 8) {
        uint64_t w = load_le64(p);
        v3 ^= w;
        SIPROUND;
        v0 ^= w;
    }
    uint64_t last = (uint64_t)len << 56;
    for (size_t i = 0; i < (len & 7); i++)
        last |= (uint64_t)p[i] << (8 * i);
    v3 ^= last;
    SIPROUND;
    v0 ^= last;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

/* ---- entries ---------------------------------------------------------------------------- */

static inline uint32_t slab_size(uint32_t k)
{
    return k < SLAB_GEOM ? SLAB_FIRST << k : SLAB_MAX;
}

/* Entry number i lives in slab *k at position *off. */
static inline void slab_pos(uint32_t i, uint32_t *k, uint32_t *off)
{
    if (i < SLAB_GEOM_TOTAL) {
        uint32_t q = i / SLAB_FIRST + 1;
        *k = 31u - (uint32_t)__builtin_clz(q);
        *off = i - SLAB_FIRST * ((1u << *k) - 1u);
    } else {
        uint32_t r = i - SLAB_GEOM_TOTAL;
        *k = SLAB_GEOM + r / SLAB_MAX;
        *off = r % SLAB_MAX;
    }
}

static inline unsigned char *entry_at(const sl_map *m, const shard *s, uint32_t i)
{
    uint32_t k, off;
    slab_pos(i, &k, &off);
    return s->slabs[k] + (size_t)off * m->stride;
}

static inline uint32_t ent_hash(const unsigned char *e)
{
    uint32_t h;
    memcpy(&h, e, 4);
    return h;
}

static inline uint32_t ent_klen(const unsigned char *e)
{
    uint32_t n;
    memcpy(&n, e + 4, 4);
    return n;
}

static inline const unsigned char *ent_key(const sl_map *m, const unsigned char *e)
{
    if (ent_klen(e) <= m->key_inline) return e + HDR_BYTES;
    unsigned char *p;
    memcpy(&p, e + HDR_BYTES, sizeof p);
    return p;
}

static inline unsigned char *ent_val(const sl_map *m, unsigned char *e)
{
    return e + HDR_BYTES + m->key_inline;
}

static inline size_t round8(size_t n)
{
    return (n + 7) & ~(size_t)7;
}

/* ---- stores seen by optimistic readers ------------------------------------------------------
 * Every byte an optimistic reader may load (slots, entries) is stored with atomic release
 * stores and loaded with acquire loads (plain moves on x86): a reader that sees any byte of a
 * writer's update then also sees that writer's odd sequence number, so its validation fails.
 * This is Boehm's fence-free seqlock formulation; standalone fences are avoided because
 * ThreadSanitizer does not model them. In a map without lockfree_reads the same stores are
 * simply ordinary moves. */

static inline void slot_store(slot *p, slot v)
{
    __atomic_store_n(p, v, __ATOMIC_RELEASE);
}

/* Stores n bytes (a multiple of 8) at the 8-aligned dst, word by word: srclen bytes from src,
 * then zeroes. */
static void store_words(unsigned char *dst, const void *src, size_t srclen, size_t n)
{
    const unsigned char *p = src;
    for (size_t off = 0; off < n; off += 8) {
        uint64_t w = 0;
        if (off < srclen) memcpy(&w, p + off, srclen - off < 8 ? srclen - off : 8);
        __atomic_store_n((uint64_t *)(void *)(dst + off), w, __ATOMIC_RELEASE);
    }
}

static inline void write_begin(const sl_map *m, shard *s)
{
    if (!m->lockfree) return;
    uint32_t q = atomic_load_explicit(&s->seq, memory_order_relaxed);
    atomic_store_explicit(&s->seq, q + 1, memory_order_relaxed);
}

static inline void write_end(const sl_map *m, shard *s)
{
    if (!m->lockfree) return;
    uint32_t q = atomic_load_explicit(&s->seq, memory_order_relaxed);
    atomic_store_explicit(&s->seq, q + 1, memory_order_release);
}

static void retire_ix(const sl_map *m, shard *s, index_blk *old)
{
    if (!m->lockfree) {
        free(old);
        return;
    }
    old->retired = s->retired_ix;
    s->retired_ix = old;
    s->retired_bytes += sizeof *old + ((size_t)old->mask + 1) * sizeof(slot);
}

static void retire_sb(const sl_map *m, shard *s, slabs_blk *old)
{
    if (!old) return;
    if (!m->lockfree) {
        free(old);
        return;
    }
    old->retired = s->retired_sb;
    s->retired_sb = old;
    s->retired_bytes += sizeof *old + old->cap * sizeof(unsigned char *);
}

/* Returns the slot holding key, or, when absent, UINT32_MAX with *empty set to the first empty
 * slot of the probe (where an insertion without resize would go). */
static uint32_t find(const sl_map *m, const shard *s, uint32_t h, const void *key, size_t klen,
                     uint32_t *empty)
{
    uint32_t i = h & s->mask;
    for (;;) {
        slot sl = s->index[i];
        if (sl == 0) {
            *empty = i;
            return UINT32_MAX;
        }
        if (((sl ^ h) & ~SLOT_ENT_MASK) == 0) {
            const unsigned char *e = entry_at(m, s, slot_ent(sl));
            if (ent_hash(e) == h && ent_klen(e) == klen &&
                (klen == 0 || memcmp(ent_key(m, e), key, klen) == 0))
                return i;
        }
        i = (i + 1) & s->mask;
    }
}

static uint32_t first_empty(const shard *s, uint32_t h)
{
    uint32_t i = h & s->mask;
    while (s->index[i] != 0)
        i = (i + 1) & s->mask;
    return i;
}

/* Rebuilds the index with ncap slots from the entries, which are dense, so this reads memory
 * sequentially. The new block is filled before it is published. Returns 0 or SL_ENOMEM (index
 * unchanged). */
static int index_resize(const sl_map *m, shard *s, uint32_t ncap)
{
    index_blk *nb = map_calloc(1, sizeof *nb + (size_t)ncap * sizeof(slot));
    if (!nb) return SL_ENOMEM;
    uint32_t nmask = ncap - 1;
    nb->mask = nmask;
    uint32_t count = atomic_load_explicit(&s->count, memory_order_relaxed);
    for (uint32_t i = 0; i < count; i++) {
        uint32_t h = ent_hash(entry_at(m, s, i));
        uint32_t j = h & nmask;
        while (nb->slots[j] != 0)
            j = (j + 1) & nmask;
        nb->slots[j] = mkslot(h, i);
    }
    index_blk *old = atomic_load_explicit(&s->ix, memory_order_relaxed);
    atomic_store_explicit(&s->ix, nb, memory_order_release);
    s->index = nb->slots;
    s->mask = nmask;
    retire_ix(m, s, old);
    return 0;
}

/* Makes room for one more entry (index and slab), and copies a long key. Changes nothing the
 * map's contents depend on, so the caller may still decide not to insert. Returns 0 with *kcopy
 * set (NULL for an inline key), or SL_ENOMEM / SL_EFULL. Write lock held. */
static int reserve(const sl_map *m, shard *s, const void *key, size_t klen, unsigned char **kcopy)
{
    uint32_t count = atomic_load_explicit(&s->count, memory_order_relaxed);
    *kcopy = NULL;
    if (count >= SHARD_MAX_ENTRIES) return SL_EFULL;
    if ((uint64_t)(count + 1) * 4 > (uint64_t)(s->mask + 1) * 3) {
        int rc = index_resize(m, s, (s->mask + 1) * 2);
        if (rc < 0) return rc;
    }
    if (count == s->slab_slots) {
        uint32_t nslabs = atomic_load_explicit(&s->nslabs, memory_order_relaxed);
        if (nslabs == s->slabs_cap) {
            uint32_t ncap = s->slabs_cap ? s->slabs_cap * 2 : 8;
            slabs_blk *nb = map_malloc(sizeof *nb + ncap * sizeof(unsigned char *));
            if (!nb) return SL_ENOMEM;
            nb->retired = NULL;
            nb->cap = ncap;
            if (nslabs) memcpy(nb->slab, s->slabs, nslabs * sizeof *s->slabs);
            slabs_blk *old = atomic_load_explicit(&s->sb, memory_order_relaxed);
            atomic_store_explicit(&s->sb, nb, memory_order_release);
            s->slabs = nb->slab;
            s->slabs_cap = ncap;
            retire_sb(m, s, old);
        }
        uint32_t n = slab_size(nslabs);
        unsigned char *slab = map_malloc((size_t)n * m->stride);
        if (!slab) return SL_ENOMEM;
        /* The pointer is in place before nslabs says it exists (release). */
        s->slabs[nslabs] = slab;
        atomic_store_explicit(&s->nslabs, nslabs + 1, memory_order_release);
        s->slab_slots += n;
    }
    if (klen > m->key_inline) {
        *kcopy = map_malloc(klen);
        if (!*kcopy) return SL_ENOMEM;
        memcpy(*kcopy, key, klen);
    }
    return 0;
}

/* Inserts a reserved entry. The index may have grown since the caller's probe, so the slot is
 * found again. Write lock held. */
static void insert(const sl_map *m, shard *s, uint32_t h, const void *key, size_t klen,
                   unsigned char *kcopy, const void *value)
{
    uint32_t count = atomic_load_explicit(&s->count, memory_order_relaxed);
    unsigned char *e = entry_at(m, s, count);
    uint32_t kl = (uint32_t)klen;
    unsigned char hdr[HDR_BYTES];
    memcpy(hdr, &h, 4);
    memcpy(hdr + 4, &kl, 4);
    store_words(e, hdr, HDR_BYTES, HDR_BYTES);
    if (kcopy) {
        store_words(e + HDR_BYTES, &kcopy, sizeof kcopy, 8);
        s->long_key_bytes += klen;
    } else {
        store_words(e + HDR_BYTES, key, klen, round8(klen));
    }
    store_words(ent_val(m, e), value, value ? m->value_size : 0, m->value_r);
    /* The entry is complete before a slot names it. */
    slot_store(&s->index[first_empty(s, h)], mkslot(h, count));
    s->key_bytes_r += round8(klen);
    atomic_store_explicit(&s->count, count + 1, memory_order_relaxed);
}

/* Gives back memory after deletions: the last slab once it is empty and the one before is at
 * most half full (the slack stops an insert/delete pair at a boundary from thrashing), and half
 * the index once it is under 1/8 full. Failure to shrink is not an error. Write lock held. */
static void shrink(const sl_map *m, shard *s)
{
    if (m->lockfree) return; /* an optimistic reader may be inside any slab or index */
    uint32_t count = atomic_load_explicit(&s->count, memory_order_relaxed);
    uint32_t nslabs = atomic_load_explicit(&s->nslabs, memory_order_relaxed);
    while (nslabs > 1) {
        uint32_t last = nslabs - 1;
        uint32_t start = s->slab_slots - slab_size(last);
        if (count + slab_size(last - 1) / 2 > start) break;
        free(s->slabs[last]);
        nslabs--;
        s->slab_slots = start;
    }
    atomic_store_explicit(&s->nslabs, nslabs, memory_order_relaxed);
    if (s->mask + 1 > INDEX_MIN && (uint64_t)count * 8 < (uint64_t)(s->mask + 1))
        (void)index_resize(m, s, (s->mask + 1) / 2);
}

/* Removes the entry named by slot i. Write lock held. */
static void remove_at(const sl_map *m, shard *s, uint32_t i)
{
    uint32_t ent = slot_ent(s->index[i]);
    unsigned char *e = entry_at(m, s, ent);
    uint32_t klen = ent_klen(e);
    if (klen > m->key_inline) {
        unsigned char *p;
        memcpy(&p, e + HDR_BYTES, sizeof p);
        free(p);
        s->long_key_bytes -= klen;
    }
    s->key_bytes_r -= round8(klen);

    /* Backward-shift deletion: pull each later member of the probe run into the hole when its
     * home slot does not lie cyclically inside (hole, its position]. The home comes from the
     * entry's stored hash (the slot keeps only a tag). */
    uint32_t mask = s->mask, hole = i, j = i;
    for (;;) {
        j = (j + 1) & mask;
        slot sl = s->index[j];
        if (sl == 0) break;
        uint32_t home = ent_hash(entry_at(m, s, slot_ent(sl))) & mask;
        if (((j - home) & mask) >= ((j - hole) & mask)) {
            slot_store(&s->index[hole], sl);
            hole = j;
        }
    }
    slot_store(&s->index[hole], 0);

    /* Keep entries dense: the last one moves into the freed number. */
    uint32_t last = atomic_load_explicit(&s->count, memory_order_relaxed) - 1;
    if (ent != last) {
        unsigned char *le = entry_at(m, s, last);
        store_words(e, le, m->stride, m->stride);
        uint32_t k = ent_hash(e) & mask;
        while (s->index[k] == 0 || slot_ent(s->index[k]) != last)
            k = (k + 1) & mask;
        slot_store(&s->index[k], mkslot(ent_hash(e), ent));
    }
    atomic_store_explicit(&s->count, last, memory_order_relaxed);
    shrink(m, s);
}

/* ---- public API ------------------------------------------------------------------------- */

static int shard_init(shard *s, uint32_t index_cap, size_t value_size)
{
    memset(s, 0, sizeof *s);
    pthread_rwlockattr_t a;
    if (pthread_rwlockattr_init(&a) != 0) return SL_ENOMEM;
    pthread_rwlockattr_setkind_np(&a, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    int rc = pthread_rwlock_init(&s->lock, &a);
    pthread_rwlockattr_destroy(&a);
    if (rc != 0) return SL_ENOMEM;
    index_blk *ix = map_calloc(1, sizeof *ix + (size_t)index_cap * sizeof(slot));
    s->scratch = map_malloc(value_size ? value_size : 1);
    if (!ix || !s->scratch) {
        free(ix);
        free(s->scratch);
        pthread_rwlock_destroy(&s->lock);
        return SL_ENOMEM;
    }
    ix->mask = index_cap - 1;
    atomic_store_explicit(&s->ix, ix, memory_order_relaxed); /* published by sl_map_new's return */
    s->index = ix->slots;
    s->mask = ix->mask;
    return 0;
}

static void shard_destroy(const sl_map *m, shard *s)
{
    uint32_t count = atomic_load_explicit(&s->count, memory_order_relaxed);
    for (uint32_t i = 0; i < count; i++) {
        unsigned char *e = entry_at(m, s, i);
        if (ent_klen(e) > m->key_inline) {
            unsigned char *p;
            memcpy(&p, e + HDR_BYTES, sizeof p);
            free(p);
        }
    }
    uint32_t nslabs = atomic_load_explicit(&s->nslabs, memory_order_relaxed);
    for (uint32_t k = 0; k < nslabs; k++)
        free(s->slabs[k]);
    free(atomic_load_explicit(&s->sb, memory_order_relaxed));
    free(atomic_load_explicit(&s->ix, memory_order_relaxed));
    while (s->retired_ix) {
        index_blk *next = s->retired_ix->retired;
        free(s->retired_ix);
        s->retired_ix = next;
    }
    while (s->retired_sb) {
        slabs_blk *next = s->retired_sb->retired;
        free(s->retired_sb);
        s->retired_sb = next;
    }
    free(s->scratch);
    pthread_rwlock_destroy(&s->lock);
}

static uint32_t pow2_at_least(uint64_t n)
{
    uint32_t c = INDEX_MIN;
    while (c < n && c < (2u << SLOT_ENT_BITS))
        c *= 2;
    return c;
}

int sl_map_new(const sl_map_opts *opts, sl_map **out)
{
    sl_map_opts o = opts ? *opts : (sl_map_opts){0};
    if (!out) return sl__fail(SL_EINVAL, "sl_map_new: out is NULL");
    if (o.value_size > VALUE_MAX)
        return sl__fail(SL_EINVAL, "sl_map_opts.value_size %zu is above %zu", (size_t)o.value_size,
                        (size_t)VALUE_MAX);
    if (o.key_inline > KEY_INLINE_MAX)
        return sl__fail(SL_EINVAL, "sl_map_opts.key_inline %zu is above %zu", (size_t)o.key_inline,
                        (size_t)KEY_INLINE_MAX);
    if (o.shards == 0) o.shards = SHARDS_DEFAULT;
    if (o.shards > SHARDS_MAX || (o.shards & (o.shards - 1)) != 0)
        return sl__fail(SL_EINVAL, "sl_map_opts.shards %zu is not a power of two up to %zu",
                        (size_t)o.shards, (size_t)SHARDS_MAX);
    if (o.key_inline == 0) o.key_inline = KEY_INLINE_DEFAULT;

    sl_map *m = map_calloc(1, sizeof *m);
    if (!m) return SL_ENOMEM;
    m->value_size = o.value_size;
    m->value_r = round8(o.value_size);
    m->key_inline = round8(o.key_inline);
    m->stride = HDR_BYTES + m->key_inline + m->value_r;
    m->nshards = (uint32_t)o.shards;
    m->lockfree = o.lockfree_reads;
    uint64_t seed[2];
    if (getrandom(seed, sizeof seed, GRND_NONBLOCK) != (ssize_t)sizeof seed) {
        /* No entropy yet (early boot): fall back to addresses and time; still per-map. */
        seed[0] = (uint64_t)(uintptr_t)m ^ 0x9e3779b97f4a7c15ull;
        seed[1] = (uint64_t)(uintptr_t)&seed ^ (uint64_t)sl_mono_ns();
    }
    m->k0 = seed[0];
    m->k1 = seed[1];

    uint64_t per = o.capacity / o.shards + 1;
    uint32_t index_cap = pow2_at_least(per * 4 / 3 + 1);
    m->shards =
        alloc_should_fail() ? NULL : aligned_alloc(CACHE_LINE, o.shards * sizeof *m->shards);
    if (!m->shards) goto fail_map;
    uint32_t n;
    for (n = 0; n < m->nshards; n++)
        if (shard_init(&m->shards[n], index_cap, m->value_size) < 0) goto fail_shards;
    *out = m;
    return 0;

fail_shards:
    while (n-- > 0)
        shard_destroy(m, &m->shards[n]);
    free(m->shards);
fail_map:
    free(m);
    return SL_ENOMEM;
}

void sl_map_free(sl_map *m)
{
    if (!m) return;
    for (uint32_t n = 0; n < m->nshards; n++)
        shard_destroy(m, &m->shards[n]);
    free(m->shards);
    free(m);
}

static inline shard *shard_for(const sl_map *m, uint64_t h)
{
    return &m->shards[(h >> 40) & (m->nshards - 1)];
}

#define OPT_VALUE_MAX 256 /* larger values are read under the lock */
#define OPT_FALLBACK  1   /* get_optimistic could not get a consistent read */

static void load_words(unsigned char *dst, const unsigned char *src, size_t n)
{
    for (size_t off = 0; off < n; off += 8) {
        uint64_t w = __atomic_load_n((const uint64_t *)(const void *)(src + off), __ATOMIC_ACQUIRE);
        memcpy(dst + off, &w, 8);
    }
}

/* The seqlock read of a lockfree_reads map: no store to shared memory at all, so readers of
 * one shard never touch each other's cache lines. Everything read is copied into locals and
 * used only once the sequence number proves no writer ran meanwhile; whatever a torn read
 * yields, every address formed stays inside memory the shard keeps until sl_map_free (bounds:
 * probe count <= slots, slab number < published nslabs, long keys never followed). Returns 0,
 * SL_ENOENT, or OPT_FALLBACK when a writer is active or two tries were torn: then the caller
 * takes the read lock, which also means a busy writer is waited for instead of spun on. */
static int get_optimistic(const sl_map *m, shard *s, uint32_t h, const void *key, size_t klen,
                          void *value_out)
{
    unsigned char kbuf[KEY_INLINE_MAX], vbuf[OPT_VALUE_MAX];
    for (int attempt = 0; attempt < 2; attempt++) {
        uint32_t s1 = atomic_load_explicit(&s->seq, memory_order_acquire);
        if (s1 & 1) return OPT_FALLBACK;
        uint32_t nslabs = atomic_load_explicit(&s->nslabs, memory_order_acquire);
        const slabs_blk *sb = atomic_load_explicit(&s->sb, memory_order_acquire);
        const index_blk *ix = atomic_load_explicit(&s->ix, memory_order_acquire);
        uint32_t mask = ix->mask, i = h & mask;
        int rc = SL_ENOENT;
        for (uint32_t probes = 0; probes <= mask; probes++, i = (i + 1) & mask) {
            slot sl = __atomic_load_n(&ix->slots[i], __ATOMIC_ACQUIRE);
            if (sl == 0) break;
            if (((sl ^ h) & ~SLOT_ENT_MASK) != 0) continue;
            uint32_t k, off;
            slab_pos(slot_ent(sl), &k, &off);
            if (k >= nslabs) {
                rc = OPT_FALLBACK; /* torn: a slot newer than our slab count */
                break;
            }
            const unsigned char *e = sb->slab[k] + (size_t)off * m->stride;
            unsigned char hdr[HDR_BYTES];
            uint32_t eh, ekl;
            load_words(hdr, e, HDR_BYTES);
            memcpy(&eh, hdr, 4);
            memcpy(&ekl, hdr + 4, 4);
            if (eh != h || ekl != klen) continue; /* a long key never matches: klen is short */
            load_words(kbuf, e + HDR_BYTES, round8(klen));
            if (klen && memcmp(kbuf, key, klen) != 0) continue;
            load_words(vbuf, e + HDR_BYTES + m->key_inline, m->value_r);
            rc = 0;
            break;
        }
        /* The acquire loads above keep this load after them. */
        uint32_t s2 = atomic_load_explicit(&s->seq, memory_order_relaxed);
        if (s1 == s2 && rc != OPT_FALLBACK) {
            if (rc == 0 && value_out && m->value_size) memcpy(value_out, vbuf, m->value_size);
            return rc;
        }
    }
    return OPT_FALLBACK;
}

int sl_map_get(sl_map *m, const void *key, size_t klen, void *value_out)
{
    if (klen > UINT32_MAX) return SL_ENOENT;
    uint64_t h = siphash13(m->k0, m->k1, key, klen);
    shard *s = shard_for(m, h);
    if (m->lockfree && klen <= m->key_inline && m->value_r <= OPT_VALUE_MAX) {
        int rc = get_optimistic(m, s, (uint32_t)h, key, klen, value_out);
        if (rc != OPT_FALLBACK) return rc;
    }
    uint32_t empty;
    pthread_rwlock_rdlock(&s->lock);
    uint32_t i = find(m, s, (uint32_t)h, key, klen, &empty);
    if (i != UINT32_MAX && value_out && m->value_size)
        memcpy(value_out, ent_val(m, entry_at(m, s, slot_ent(s->index[i]))), m->value_size);
    pthread_rwlock_unlock(&s->lock);
    return i == UINT32_MAX ? SL_ENOENT : 0;
}

/* put and put_if_absent: replace says whether an existing value is overwritten. */
static int put(sl_map *m, const void *key, size_t klen, const void *value, bool replace,
               void *existing_out)
{
    if (klen > UINT32_MAX) return SL_EINVAL;
    uint64_t h = siphash13(m->k0, m->k1, key, klen);
    shard *s = shard_for(m, h);
    uint32_t empty;
    int rc;
    pthread_rwlock_wrlock(&s->lock);
    uint32_t i = find(m, s, (uint32_t)h, key, klen, &empty);
    if (i != UINT32_MAX) {
        unsigned char *v = ent_val(m, entry_at(m, s, slot_ent(s->index[i])));
        if (replace) {
            write_begin(m, s);
            store_words(v, value, value ? m->value_size : 0, m->value_r);
            write_end(m, s);
            rc = 0;
        } else {
            if (existing_out && m->value_size) memcpy(existing_out, v, m->value_size);
            rc = SL_EEXIST;
        }
    } else {
        unsigned char *kcopy;
        rc = reserve(m, s, key, klen, &kcopy);
        if (rc == 0) {
            write_begin(m, s);
            insert(m, s, (uint32_t)h, key, klen, kcopy, value);
            write_end(m, s);
            rc = replace ? 1 : 0;
        }
    }
    pthread_rwlock_unlock(&s->lock);
    return rc;
}

int sl_map_put(sl_map *m, const void *key, size_t klen, const void *value)
{
    return put(m, key, klen, value, true, NULL);
}

int sl_map_put_if_absent(sl_map *m, const void *key, size_t klen, const void *value,
                         void *existing_out)
{
    return put(m, key, klen, value, false, existing_out);
}

int sl_map_delete(sl_map *m, const void *key, size_t klen, void *value_out)
{
    if (klen > UINT32_MAX) return SL_ENOENT;
    uint64_t h = siphash13(m->k0, m->k1, key, klen);
    shard *s = shard_for(m, h);
    uint32_t empty;
    pthread_rwlock_wrlock(&s->lock);
    uint32_t i = find(m, s, (uint32_t)h, key, klen, &empty);
    if (i != UINT32_MAX) {
        if (value_out && m->value_size)
            memcpy(value_out, ent_val(m, entry_at(m, s, slot_ent(s->index[i]))), m->value_size);
        write_begin(m, s);
        remove_at(m, s, i);
        write_end(m, s);
    }
    pthread_rwlock_unlock(&s->lock);
    return i == UINT32_MAX ? SL_ENOENT : 0;
}

int sl_map_update(sl_map *m, const void *key, size_t klen, sl_map_update_fn fn, void *arg)
{
    if (klen > UINT32_MAX || !fn) return SL_EINVAL;
    uint64_t h = siphash13(m->k0, m->k1, key, klen);
    shard *s = shard_for(m, h);
    size_t vs = m->value_size;
    uint32_t empty;
    int rc;
    pthread_rwlock_wrlock(&s->lock);
    uint32_t i = find(m, s, (uint32_t)h, key, klen, &empty);
    if (i != UINT32_MAX) {
        /* The callback edits a copy so that abandoning leaves the stored value untouched. */
        unsigned char *v = ent_val(m, entry_at(m, s, slot_ent(s->index[i])));
        memcpy(s->scratch, v, vs);
        rc = fn(s->scratch, true, arg);
        write_begin(m, s);
        if (rc == SL_MAP_STORE)
            store_words(v, s->scratch, vs, m->value_r);
        else if (rc == SL_MAP_DELETE)
            remove_at(m, s, i);
        write_end(m, s);
    } else {
        unsigned char *kcopy;
        rc = reserve(m, s, key, klen, &kcopy);
        if (rc == 0) {
            memset(s->scratch, 0, vs ? vs : 1);
            rc = fn(s->scratch, false, arg);
            if (rc == SL_MAP_STORE) {
                write_begin(m, s);
                insert(m, s, (uint32_t)h, key, klen, kcopy, s->scratch);
                write_end(m, s);
            } else {
                free(kcopy);
            }
        }
    }
    pthread_rwlock_unlock(&s->lock);
    if (rc == SL_MAP_STORE || rc == SL_MAP_DELETE) return 0;
    return rc < 0 ? rc : SL_EINVAL;
}

/* Copies shard s into *buf as records {size_t klen; value (value_r bytes); key (rounded up to
 * 8)}. Returns the number of records, or SL_ENOMEM. Read lock held. */
static long copy_shard(const sl_map *m, shard *s, unsigned char **buf, size_t *cap)
{
    uint32_t count = atomic_load_explicit(&s->count, memory_order_relaxed);
    size_t need = (size_t)count * (sizeof(size_t) + m->value_r) + s->key_bytes_r;
    if (need > *cap) {
        unsigned char *nb = map_realloc(*buf, need);
        if (!nb) return SL_ENOMEM;
        *buf = nb;
        *cap = need;
    }
    unsigned char *p = *buf;
    for (uint32_t i = 0; i < count; i++) {
        unsigned char *e = entry_at(m, s, i);
        size_t klen = ent_klen(e);
        memcpy(p, &klen, sizeof klen);
        p += sizeof klen;
        memcpy(p, ent_val(m, e), m->value_size);
        p += m->value_r;
        if (klen) memcpy(p, ent_key(m, e), klen);
        p += round8(klen);
    }
    return (long)count;
}

int sl_map_range(sl_map *m, sl_map_range_fn fn, void *arg)
{
    unsigned char *buf = NULL;
    size_t cap = 0;
    int rc = 0;
    for (uint32_t n = 0; n < m->nshards && rc == 0; n++) {
        shard *s = &m->shards[n];
        pthread_rwlock_rdlock(&s->lock);
        long count = copy_shard(m, s, &buf, &cap);
        pthread_rwlock_unlock(&s->lock);
        if (count < 0) {
            rc = (int)count;
            break;
        }
        const unsigned char *p = buf;
        for (long i = 0; i < count && rc == 0; i++) {
            size_t klen;
            memcpy(&klen, p, sizeof klen);
            const unsigned char *v = p + sizeof klen;
            const unsigned char *k = v + m->value_r;
            rc = fn(k, klen, v, arg);
            p = k + round8(klen);
        }
    }
    free(buf);
    return rc;
}

size_t sl_map_size(const sl_map *m)
{
    size_t n = 0;
    for (uint32_t i = 0; i < m->nshards; i++)
        n += atomic_load_explicit(&m->shards[i].count, memory_order_relaxed);
    return n;
}

size_t sl_map_value_size(const sl_map *m)
{
    return m->value_size;
}

void sl_map_get_stats(sl_map *m, sl_map_stats *st)
{
    memset(st, 0, sizeof *st);
    st->entry_bytes = m->stride;
    st->bytes = sizeof *m + m->nshards * sizeof *m->shards;
    for (uint32_t n = 0; n < m->nshards; n++) {
        shard *s = &m->shards[n];
        pthread_rwlock_rdlock(&s->lock);
        st->entries += atomic_load_explicit(&s->count, memory_order_relaxed);
        st->index_slots += (size_t)s->mask + 1;
        st->slab_slots += s->slab_slots;
        st->bytes += sizeof(index_blk) + ((size_t)s->mask + 1) * sizeof(slot) +
                     (size_t)s->slab_slots * m->stride +
                     (s->slabs_cap ? sizeof(slabs_blk) + s->slabs_cap * sizeof *s->slabs : 0) +
                     s->retired_bytes + s->long_key_bytes + (m->value_size ? m->value_size : 1);
        pthread_rwlock_unlock(&s->lock);
    }
}
