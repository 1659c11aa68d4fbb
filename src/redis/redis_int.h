/* Private to src/redis: SHA-1 (script digests for EVALSHA) and the reactor helpers. */
#ifndef SLUICE_REDIS_INT_H
#define SLUICE_REDIS_INT_H

#include <stddef.h>
#include <stdint.h>

#include "loop/reactor.h"

/* Writes the lowercase hex SHA-1 of data (41 bytes with the NUL): what Redis's SCRIPT LOAD
 * answers, so EVALSHA can be sent before that answer arrives. */
void sl__redis_sha1_hex(const void *data, size_t len, char out[41]);

/* Removes timer queue q from r's list (the reactor has no such call: its queues live as long
 * as it does; a detached Redis connection does not). Loop thread only. */
void sl__redis_tq_remove(sl__reactor *r, sl__tq *q);

#endif
