/* Private to sluice: introspection of sl_chan for tests and benches. */
#ifndef SLUICE_SYNC_CHAN_INT_H
#define SLUICE_SYNC_CHAN_INT_H

#include "sluice/chan.h"

/* Counts the nodes queued on ch right now (parked senders and receivers, including select
 * nodes that are about to be dropped). Threads: any. Does not block (takes the channel lock). */
void sl__chan_waiters(sl_chan *ch, size_t *senders, size_t *receivers);

#endif
