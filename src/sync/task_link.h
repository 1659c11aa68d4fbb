/* Private to sluice's waiting primitives: the three functions of the task runtime they use
 * (the contract in src/task/task_int.h) — who is running (a task or a plain thread), park the
 * running task, unpark a parked one. One include keeps src/sync's dependency on src/task in
 * one place. */
#ifndef SLUICE_SYNC_TASK_LINK_H
#define SLUICE_SYNC_TASK_LINK_H

#include "task/task_int.h"

#endif /* SLUICE_SYNC_TASK_LINK_H */
