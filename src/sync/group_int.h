/* Private to src/sync: the executor's task interface, used by group.c (and tests).
 *
 * A task is an intrusive node the submitter owns until run() is called; run() gets the node
 * back and decides what to free. Every task is on the executor's FIFO and, when submitted with
 * an owner queue, also on that queue, so the owner (a group waiting for its tasks) can take its
 * own queued tasks back and run them itself. Both lists are guarded by the executor's lock. */
#ifndef SLUICE_SYNC_GROUP_INT_H
#define SLUICE_SYNC_GROUP_INT_H

#include <pthread.h>

#include "sluice/group.h"

typedef struct sl__job sl__job;

/* A per-owner queue of tasks not yet started. Guarded by the executor's lock. */
typedef struct sl__jobq {
    sl__job *head, *tail;
} sl__jobq;

struct sl__job {
    sl__job *next, *prev;   /* executor FIFO */
    sl__job *onext, *oprev; /* owner queue */
    sl__jobq *owner;        /* NULL if submitted without one */
    void (*run)(sl__job *t);
};

/* Iterations (pause instructions) an idle worker spins before sleeping; bench/group.c
 * compares settings. */
extern int sl__executor_spins;

/* Queues t (and links it on owner, if not NULL); a worker will call t->run(t) unless the owner
 * steals it first. Never fails. Threads: any. Does not block. */
void sl__executor_submit(sl_executor *ex, sl__job *t, sl__jobq *owner);

/* Takes the oldest task still queued on owner off both lists and returns it (the caller must
 * run it), or NULL if owner has nothing queued. Threads: any. Does not block. */
sl__job *sl__executor_steal(sl_executor *ex, sl__jobq *owner);

/* Returns the process-wide executor in *out, starting it on first use. Returns 0, SL_ENOMEM or
 * SL_EAGAIN. Threads: any. */
int sl__executor_default(sl_executor **out);

/* Stops and joins the default executor (the atexit path; tests call it to prove the join). A
 * later sl__executor_default starts a new one. No group may be using it. */
void sl__executor_default_shutdown(void);

/* True while the default executor exists (tests). */
bool sl__executor_default_running(void);

#endif
