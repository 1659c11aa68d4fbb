/* Private to sluice (src/loop): the reactor, one epoll event loop per thread.
 *
 * A reactor multiplexes file descriptors (callbacks per fd), fixed-duration timer queues, and
 * tasks posted from other threads. It knows nothing about HTTP. Everything here is loop-thread
 * only, except sl__reactor_post(), which is the one way into a reactor from another thread.
 *
 * Time: the reactor measures real monotonic time (sl_mono_ns), because epoll_wait sleeps in
 * real time; the test clock does not drive it. r->now is refreshed once per loop iteration. */
#ifndef SLUICE_LOOP_REACTOR_H
#define SLUICE_LOOP_REACTOR_H

#include <stdint.h>
#include <stdbool.h>
#include <stdatomic.h>

/* The struct tag is the public opaque name sl_loop (include/sluice/common.h), so public headers
 * can take a loop without showing its insides. */
typedef struct sl_loop sl__reactor;
typedef struct sl__io sl__io;
typedef struct sl__timer sl__timer;
typedef struct sl__tq sl__tq;
typedef struct sl__task sl__task;

/* Called with the epoll event bits (EPOLLIN, EPOLLOUT, EPOLLERR, EPOLLHUP, EPOLLRDHUP). */
typedef void (*sl__io_fn)(sl__reactor *r, sl__io *io, uint32_t events);

/* A watched fd, embedded in its owner's struct (container_of to get back). */
struct sl__io {
    sl__io_fn fn;
    int fd;
    uint32_t events; /* the interest currently registered; 0 = not registered */
};

/* A timer in one fixed-duration queue. Because every timer of a queue has the same duration,
 * (re)starting one appends it at the tail and the queue stays sorted by deadline: start, stop
 * and restart are O(1) and the loop only looks at each queue's head (nginx/libev's trick for
 * connection timeouts, which are reset on every request). */
struct sl__timer {
    sl__timer *prev, *next; /* NULL when not queued */
    int64_t deadline;       /* ns, sl_mono_ns() */
    sl__tq *q;
};

/* Called on the loop thread once the timer's deadline passed; the timer is already unqueued. */
typedef void (*sl__timer_fn)(sl__reactor *r, sl__timer *t);

struct sl__tq {
    sl__timer head; /* sentinel of a circular list */
    int64_t dur;    /* ns; <= 0 disables the queue (starting a timer in it does nothing) */
    sl__timer_fn fn;
    sl__tq *next_q; /* the reactor's list of queues */
};

/* A unit of work run on the loop thread. Posted tasks are intrusive: the poster owns the
 * storage and must keep it alive until fn runs (fn may free it). */
typedef void (*sl__task_fn)(sl__reactor *r, sl__task *t);
struct sl__task {
    sl__task *_Atomic next;
    sl__task_fn fn;
};

struct sl_loop {
    int epfd;
    int evfd;
    sl__io wake;              /* the eventfd's watcher */
    sl__task *_Atomic posted; /* MPSC stack of posted tasks (Treiber push, exchange-all pop) */
    sl__task *deferred;       /* loop thread only: run after the current batch of events (FIFO) */
    sl__task *deferred_tail;
    sl__task *local, *local_tail; /* loop thread only: sl__reactor_post_local's FIFO */
    sl__task *idle, *idle_tail;   /* loop thread only: sl__reactor_at_idle's FIFO */
    sl__tq *queues;               /* loop thread only */
    int64_t now;                  /* ns, sl_mono_ns() at the start of this iteration */
    bool stop;                    /* loop thread only: leave run() after this iteration */
    uint32_t awaiting; /* loop thread only: posts expected from other threads (pooled requests
                          in flight); a lone task loop spins before sleeping while nonzero */
    void *data;        /* the owner's */
};

/* Creates the epoll set and the wake-up eventfd. Returns 0 or a negative SL_E* code. */
int sl__reactor_init(sl__reactor *r);

/* Closes the fds. Posted tasks that never ran are not run (the owner frees them). */
void sl__reactor_destroy(sl__reactor *r);

/* Runs the loop on the calling thread until sl__reactor_stop() is called on it. */
void sl__reactor_run(sl__reactor *r);

/* Runs one iteration: waits for events (until the nearest timer if block, else not at all),
 * dispatches them, then runs posted tasks, expired timers and deferred tasks. The task
 * scheduler drives its loops with this. Loop thread only. */
void sl__reactor_poll(sl__reactor *r, bool block);

/* Makes run() return after the current iteration. Loop thread only. */
void sl__reactor_stop(sl__reactor *r);

/* Registers io->fd with interest events (level-triggered). Returns 0 or -errno. */
int sl__io_start(sl__reactor *r, sl__io *io, int fd, uint32_t events, sl__io_fn fn);

/* Changes the interest (0 keeps the fd registered but silent). Returns 0 or -errno. */
int sl__io_set(sl__reactor *r, sl__io *io, uint32_t events);

/* Unregisters the fd (does not close it). Safe on an io that was never started. */
void sl__io_stop(sl__reactor *r, sl__io *io);

/* Adds a timer queue of duration dur_ns with callback fn. The queue must outlive the reactor
 * loop. */
void sl__tq_init(sl__reactor *r, sl__tq *q, int64_t dur_ns, sl__timer_fn fn);

/* Unlinks q from r's queues (its timers must be stopped). Loop thread only: a reactor shared
 * by several owners (a task runtime's loop serving several servers) loses one owner's queues
 * this way. */
void sl__tq_remove(sl__reactor *r, sl__tq *q);

/* (Re)starts t in q: deadline = r->now + q->dur. No-op (t stays stopped) if q is disabled. */
void sl__timer_start(sl__reactor *r, sl__tq *q, sl__timer *t);

/* Stops t if queued. */
void sl__timer_stop(sl__timer *t);

static inline bool sl__timer_active(const sl__timer *t)
{
    return t->next != NULL;
}

/* Queues t to run on r's loop thread and wakes the loop. Threads: any. Lock-free; never
 * fails. The eventfd is written only when the queue was empty, so a burst costs one wake. */
void sl__reactor_post(sl__reactor *r, sl__task *t);

/* Runs t on this loop after the current batch of events (used to free objects that later
 * events of the same batch may still point to), in the order deferred. Loop thread only. */
void sl__reactor_defer(sl__reactor *r, sl__task *t);

/* Queues t to run on this loop soon, without the eventfd: from a task running on the loop's
 * own thread (the scheduler runs the queue after every task switch, src/task/sched.c) or a
 * loop callback (run at the end of this iteration). FIFO. Loop thread only. */
void sl__reactor_post_local(sl__reactor *r, sl__task *t);

/* Runs what sl__reactor_post_local queued, including what those tasks queue. Loop thread
 * only, from the loop's own stack (not a task's). */
void sl__reactor_run_local(sl__reactor *r);

/* Queues t to run once this loop has nothing else to do this round: at the end of an
 * iteration (after events, posted tasks, timers and deferred tasks), and on a task loop also
 * as soon as its run queue drains. So t sees everything the round produced: the Redis limiter
 * sends the checks the round's tasks made as one write, without asking epoll for a write
 * event. The loop never sleeps with t queued. FIFO. Loop thread only; t stays alive until it
 * runs or sl__reactor_idle_cancel() removes it. */
void sl__reactor_at_idle(sl__reactor *r, sl__task *t);

/* Removes t from the idle queue if it is there. Loop thread only. */
void sl__reactor_idle_cancel(sl__reactor *r, sl__task *t);

/* Runs the idle queue, including what those tasks queue. Loop thread only, from the loop's
 * own stack. */
void sl__reactor_run_idle(sl__reactor *r);

#endif
