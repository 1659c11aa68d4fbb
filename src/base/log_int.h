/* Private to sluice: knobs on sl_log for tests and benchmarks. */
#ifndef SLUICE_LOG_INT_H
#define SLUICE_LOG_INT_H

#include "sluice/log.h"

/* Overrides how lg's fd output locks: 1 lets records of at most PIPE_BUF bytes write under the
 * shared lock (the default for pipes, files and character devices), 0 makes every write take
 * the exclusive lock (the default for sockets), -1 re-reads the fd's type on the next record.
 * Affects every logger sharing lg's output. For the benchmark that compares the two. Threads:
 * any. */
void sl__log_set_small_shared(sl_logger *lg, int v);

#endif
