/* sl_map: a sharded concurrent hash map with byte-string keys and fixed-size values.
 *
 * The race-free replacement for Go's map + sync.RWMutex and for sync.Map. Keys are byte strings
 * (pointer + length, any bytes, the empty key included); values have one size fixed at creation
 * (value_size) and are copied in and out, so no pointer into the map ever escapes a call.
 *
 * The map is split into shards (a power of two), each an open-addressing table with its own
 * reader-writer lock: readers of a shard run in parallel, writers of different shards run in
 * parallel, and a resize stops only the one shard that grows. With the lockfree_reads option
 * reads take no lock at all (a seqlock), at the price of never returning memory. Entries live in
 * per-shard slabs with the key stored inline when it is short (key_inline bytes) and the value
 * inline, so a put with a short key allocates nothing once the shard's slab has room.
 *
 * Read-modify-write without a TOCTOU window goes through sl_map_update: a callback runs while
 * the key's shard is write-locked and may create, change or delete the entry.
 *
 * Threads: any — every function may be called from any thread, concurrently, except
 * sl_map_free, which needs every other call to have returned. */
#ifndef SLUICE_MAP_H
#define SLUICE_MAP_H

#include "sluice/common.h"

SL_BEGIN_DECLS

typedef struct sl_map sl_map;

/* Creation options. Zero-initialise and set what you need: {.value_size = 8} is a complete,
 * valid configuration. */
typedef struct sl_map_opts {
    size_t value_size;   /* bytes per value, 0..65536; 0 makes a set. Values are stored at 8-byte
                            alignment (the update callback may access them as such). */
    size_t key_inline;   /* keys up to this many bytes live inside the entry; longer keys are
                            allocated. Rounded up to a multiple of 8, at least 8, at most 256.
                            0 = 16. */
    size_t shards;       /* power of two, 1..4096; 0 = 64 */
    size_t capacity;     /* expected number of keys (a hint: sizes the tables up front); 0 = none */
    bool lockfree_reads; /* sl_map_get reads optimistically (seqlock) instead of taking the
                            shard's read lock, for keys up to key_inline bytes and values up to
                            256 bytes (others, and reads that meet a writer, take the lock).
                            Price: memory is never given back while the map lives (deleted
                            entries' room is reused; replaced index arrays are kept). */
} sl_map_opts;

/* Creates an empty map. Returns 0 and sets *out (free with sl_map_free), SL_EINVAL for options
 * out of range (*out untouched), or SL_ENOMEM. Threads: any. Does not block. */
SL_API int sl_map_new(const sl_map_opts *opts, sl_map **out);

/* Frees the map and every entry. NULL does nothing. No other call on m may be running or
 * start afterwards. */
SL_API void sl_map_free(sl_map *m);

/* Copies the value stored under key into value_out (value_size bytes; may be NULL to test for
 * presence only). Returns 0, or SL_ENOENT when the key is absent (value_out untouched).
 * key may be NULL when klen is 0. Threads: any; readers of one shard do not exclude each other.
 * Blocks only while a writer holds the key's shard. With lockfree_reads the read stores nothing
 * shared and takes the lock only when it meets a writer (or for a long key or a value over
 * 256 bytes). */
SL_API int sl_map_get(sl_map *m, const void *key, size_t klen, void *value_out);

/* Stores a copy of value (value_size bytes; NULL stores zeroes) under a copy of key, replacing
 * any previous value. Returns 1 when the key was inserted, 0 when an existing value was
 * replaced, SL_EINVAL when klen exceeds UINT32_MAX, SL_ENOMEM (the map is unchanged), or
 * SL_EFULL if the key's shard already holds 2^24-1 entries (use more shards). Threads: any. Blocks
 * only while another thread holds the key's shard. */
SL_API int sl_map_put(sl_map *m, const void *key, size_t klen, const void *value);

/* Stores value under key only if the key is absent (Go's LoadOrStore). Returns 0 when it
 * inserted; SL_EEXIST when the key was present, in which case the current value is copied into
 * existing_out if it is not NULL and nothing changes; or the errors of sl_map_put. Exactly one
 * of many racing callers for one key gets 0. Threads: any. */
SL_API int sl_map_put_if_absent(sl_map *m, const void *key, size_t klen, const void *value,
                                void *existing_out);

/* Removes key (Go's LoadAndDelete). If value_out is not NULL the removed value is copied into
 * it first. Returns 0, or SL_ENOENT when the key was absent. Never fails for lack of memory.
 * Threads: any. */
SL_API int sl_map_delete(sl_map *m, const void *key, size_t klen, void *value_out);

/* What an update callback asks for. */
enum {
    SL_MAP_STORE = 0,  /* keep *value as the entry's value (creating the entry if absent) */
    SL_MAP_DELETE = 1, /* remove the entry (or do not create it) */
};

/* The read-modify-write callback of sl_map_update. value points to value_size bytes holding
 * the current value when exists is true, or zeroes when the key is absent; the callback edits
 * it in place and returns SL_MAP_STORE or SL_MAP_DELETE, or a negative code to abandon the
 * update (the map is left exactly as it was, whatever the callback wrote into value). It runs
 * with the key's shard write-locked: it must be short, must not block, and must not call any
 * sl_map function on the same map (that may deadlock). */
typedef int (*sl_map_update_fn)(void *value, bool exists, void *arg);

/* Runs fn on key's value under the shard's write lock, so no other thread sees or changes the
 * entry between the read and the write. Space for a new entry is reserved before fn runs, so
 * once fn is called the outcome is exactly what fn asked for. Returns 0 when fn's request was
 * carried out, fn's own negative code when it abandoned the update, SL_EINVAL (klen too long),
 * or SL_ENOMEM / SL_EFULL when a new entry could not be reserved — then fn was not called.
 * Threads: any. Blocks while another thread holds the key's shard. */
SL_API int sl_map_update(sl_map *m, const void *key, size_t klen, sl_map_update_fn fn, void *arg);

/* Called by sl_map_range for each entry: key bytes, key length, and value_size bytes of value,
 * all valid only during the call (copies, not the map's storage). Return 0 to continue; any
 * other value stops the iteration and is returned by sl_map_range. */
typedef int (*sl_map_range_fn)(const void *key, size_t klen, const void *value, void *arg);

/* Visits the entries, weakly consistently, while other threads keep reading and writing.
 * Guarantees: every key present for the whole call is visited exactly once, with a value it held
 * at some moment during the call; a key inserted or deleted during the call may or may not be
 * visited, and never more than once (a key deleted and re-inserted may be visited once with
 * either value). Each shard is copied under its read lock and the callback runs on the copy with
 * no lock held, so fn may call any sl_map function on m, including put and delete (changes made
 * by fn follow the same rule as concurrent ones). Returns 0 after the last entry, fn's non-zero
 * value if it stopped early, or SL_ENOMEM if a shard's copy could not be allocated (some
 * entries may then have been visited). Threads: any. Blocks while a writer holds a shard. */
SL_API int sl_map_range(sl_map *m, sl_map_range_fn fn, void *arg);

/* Returns the number of entries. Exact when no writer runs concurrently; otherwise a value the
 * count held at some moment during the call on each shard (the sum is not a snapshot).
 * Lock-free. Threads: any. */
SL_API size_t sl_map_size(const sl_map *m);

/* Returns the fixed value size the map was created with. Threads: any. */
SL_API size_t sl_map_value_size(const sl_map *m);

/* Memory accounting, for benchmarks and metrics. */
typedef struct sl_map_stats {
    size_t entries;     /* entries stored */
    size_t bytes;       /* heap bytes held: shard structs, indexes, slabs, long keys, and
                           (lockfree_reads) retired arrays */
    size_t index_slots; /* open-addressing slots over all shards */
    size_t slab_slots;  /* entry slots allocated in slabs over all shards */
    size_t entry_bytes; /* bytes of one slab entry: header + inline key + value */
} sl_map_stats;

/* Fills *st, taking each shard's read lock in turn (so the totals are per-shard consistent,
 * not a global snapshot). Threads: any. */
SL_API void sl_map_get_stats(sl_map *m, sl_map_stats *st);

SL_END_DECLS

#endif /* SLUICE_MAP_H */
