/* Private to sluice: test hooks of sl_map (src/sync/map.c). */
#ifndef SLUICE_SYNC_MAP_INT_H
#define SLUICE_SYNC_MAP_INT_H

#include "sluice/common.h"

/* Fault injection for tests: after `n` more successful allocations, every allocation made by
 * any sl_map fails (returns NULL) until this is called again; n < 0 turns failures off.
 * Process-wide. Threads: any (tests call it while no map operation runs). */
void sl__map_fail_allocs_after(long n);

/* The keyed hash the map uses (SipHash-1-3 with the map's random key), exposed so tests can
 * build keys that land in one shard. */
uint64_t sl__map_hash(const void *m, const void *key, size_t klen);

/* The shard a hash selects. */
size_t sl__map_shard_of(const void *m, uint64_t hash);

#endif
