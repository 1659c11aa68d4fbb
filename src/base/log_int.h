/* Private to sluice: sl_log's text helpers that other modules reuse (the metrics exposition),
 * and knobs on sl_log for tests and benchmarks. */
#ifndef SLUICE_LOG_INT_H
#define SLUICE_LOG_INT_H

#include "sluice/log.h"

/* Decodes one UTF-8 sequence at s (n > 0 bytes, s[0] >= 0x80): returns its length (2-4) and
 * the code point, or 0 if s[0] does not start a valid, complete, shortest-form sequence of a
 * Unicode scalar value (then the caller treats that one byte as invalid, as Go does). */
size_t sl__utf8_decode(const unsigned char *s, size_t n, uint32_t *cp);

/* Writes the shortest of %.15g/%.16g/%.17g that reads back as v (finite v; "." as the decimal
 * point whatever the locale) into out, which must hold 32 bytes. Returns the length. */
size_t sl__fmt_double(char *out, double v);

/* Overrides how lg's fd output locks: 1 lets records of at most PIPE_BUF bytes write under the
 * shared lock (the default for pipes, files and character devices), 0 makes every write take
 * the exclusive lock (the default for sockets), -1 re-reads the fd's type on the next record.
 * Affects every logger sharing lg's output. For the benchmark that compares the two. Threads:
 * any. */
void sl__log_set_small_shared(sl_logger *lg, int v);

#endif
