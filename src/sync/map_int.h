/* Private to sluice: test hooks of sl_map (src/sync/map.c). */
#ifndef SLUICE_SYNC_MAP_INT_H
#define SLUICE_SYNC_MAP_INT_H

#include "sluice/common.h"

/* Fault injection for tests: after `n` more successful allocations, every allocation made by
 * any sl_map fails (returns NULL) until this is called again; n < 0 turns failures off.
 * Process-wide. Threads: any (tests call it while no map operation runs). */
void sl__map_fail_allocs_after(long n);

#endif
