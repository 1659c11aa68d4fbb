/* Private to sluice's waiting primitives: the three functions of the task runtime they need
 * (the contract in src/task/task_int.h) — who is running (a task or a plain thread), park the
 * running task, unpark a parked one. Until the task module exists, task_stub.c provides a
 * sl__task_self() that always returns NULL, so every wait takes the thread path. */
#ifndef SLUICE_SYNC_TASK_LINK_H
#define SLUICE_SYNC_TASK_LINK_H

#if __has_include("task/task_int.h")
#include "task/task_int.h"
#else
struct sl_task;
struct sl_task *sl__task_self(void);
void sl__task_park(void);
void sl__task_unpark(struct sl_task *t);
#endif

#endif /* SLUICE_SYNC_TASK_LINK_H */
