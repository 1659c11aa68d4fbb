/* The reactor: one level-triggered epoll loop per thread.
 *
 * One iteration: compute the nearest timer deadline, epoll_wait until then, dispatch each
 * ready fd's callback, then run the tasks posted from other threads, then expired timers, then
 * the deferred tasks, then the idle ones (sl__reactor_poll is one iteration: the task scheduler
 * drives the loop with it, see src/task/sched.c). Ordering matters in two places:
 *  - posted tasks and timers run after the whole batch of fd events, and objects closed
 *    during the iteration are freed by deferred tasks at its very end, so no event of the
 *    batch can reach freed memory (a posted "close every idle connection" may close a
 *    connection whose event is later in the same batch; the owner marks it dead, the deferred
 *    free happens after the batch);
 *  - the wake-up eventfd is read before the posted stack is taken, so a post that lands
 *    between the two is either in the taken list or re-arms the eventfd: never lost.
 *
 * Posting is a Treiber stack: producers CAS-push; the loop exchanges the whole stack for NULL
 * and reverses it to run tasks in posting order. Exchange-all has no ABA problem. A producer
 * writes the eventfd only when it pushed onto an empty stack. */
#include <errno.h>
#include <stddef.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "sluice/clock.h"
#include "sluice/error.h"
#include "loop/reactor.h"

#define MAX_EVENTS 256

static void wake_cb(sl__reactor *r, sl__io *io, uint32_t events)
{
    (void)r;
    (void)io;
    (void)events;
    /* Handled after the batch: see run_posted(). */
}

int sl__reactor_init(sl__reactor *r)
{
    *r = (sl__reactor){.epfd = -1, .evfd = -1};
    atomic_init(&r->posted, NULL);
    r->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (r->epfd < 0) return -errno;
    r->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (r->evfd < 0) {
        int e = -errno;
        close(r->epfd);
        return e;
    }
    int rc = sl__io_start(r, &r->wake, r->evfd, EPOLLIN, wake_cb);
    if (rc < 0) {
        close(r->evfd);
        close(r->epfd);
        return rc;
    }
    r->now = sl_mono_ns();
    return 0;
}

void sl__reactor_destroy(sl__reactor *r)
{
    if (r->evfd >= 0) close(r->evfd);
    if (r->epfd >= 0) close(r->epfd);
    r->evfd = r->epfd = -1;
}

int sl__io_start(sl__reactor *r, sl__io *io, int fd, uint32_t events, sl__io_fn fn)
{
    io->fd = fd;
    io->fn = fn;
    struct epoll_event ev = {.events = events, .data.ptr = io};
    if (epoll_ctl(r->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) return -errno;
    io->events = events;
    return 0;
}

int sl__io_set(sl__reactor *r, sl__io *io, uint32_t events)
{
    if (io->events == events) return 0;
    struct epoll_event ev = {.events = events, .data.ptr = io};
    if (epoll_ctl(r->epfd, EPOLL_CTL_MOD, io->fd, &ev) < 0) return -errno;
    io->events = events;
    return 0;
}

void sl__io_stop(sl__reactor *r, sl__io *io)
{
    if (io->fn && io->fd >= 0) epoll_ctl(r->epfd, EPOLL_CTL_DEL, io->fd, NULL);
    io->fn = NULL;
    io->events = 0;
}

void sl__tq_init(sl__reactor *r, sl__tq *q, int64_t dur_ns, sl__timer_fn fn)
{
    q->head.prev = q->head.next = &q->head;
    q->head.q = q;
    q->dur = dur_ns;
    q->fn = fn;
    q->next_q = r->queues;
    r->queues = q;
}

void sl__tq_remove(sl__reactor *r, sl__tq *q)
{
    for (sl__tq **pp = &r->queues; *pp; pp = &(*pp)->next_q) {
        if (*pp == q) {
            *pp = q->next_q;
            q->next_q = NULL;
            return;
        }
    }
}

void sl__timer_stop(sl__timer *t)
{
    if (!t->next) return;
    t->prev->next = t->next;
    t->next->prev = t->prev;
    t->prev = t->next = NULL;
    t->q = NULL;
}

void sl__timer_start(sl__reactor *r, sl__tq *q, sl__timer *t)
{
    sl__timer_stop(t);
    if (q->dur <= 0) return;
    t->deadline = r->now + q->dur;
    t->q = q;
    t->prev = q->head.prev;
    t->next = &q->head;
    q->head.prev->next = t;
    q->head.prev = t;
}

/* Milliseconds epoll_wait may sleep: until the earliest queue head, rounded up so that we
 * never wake just before a deadline and spin. */
static int wait_ms(sl__reactor *r)
{
    if (r->idle) return 0;
    int64_t next = INT64_MAX;
    for (sl__tq *q = r->queues; q; q = q->next_q) {
        sl__timer *h = q->head.next;
        if (h != &q->head && h->deadline < next) next = h->deadline;
    }
    if (next == INT64_MAX) return -1;
    int64_t d = next - sl_mono_ns();
    if (d <= 0) return 0;
    int64_t ms = (d + 999999) / 1000000;
    return ms > 60000 ? 60000 : (int)ms;
}

static void run_timers(sl__reactor *r)
{
    for (sl__tq *q = r->queues; q; q = q->next_q) {
        /* A callback may restart its timer (appended at the tail with a later deadline), so
         * the loop ends; it may also stop or restart other timers of this queue. */
        while (q->head.next != &q->head && q->head.next->deadline <= r->now) {
            sl__timer *t = q->head.next;
            sl__timer_stop(t);
            q->fn(r, t);
        }
    }
}

void sl__reactor_post(sl__reactor *r, sl__task *t)
{
    sl__task *old = atomic_load_explicit(&r->posted, memory_order_relaxed);
    do {
        atomic_store_explicit(&t->next, old, memory_order_relaxed);
    } while (!atomic_compare_exchange_weak_explicit(&r->posted, &old, t, memory_order_release,
                                                    memory_order_relaxed));
    if (old == NULL) {
        uint64_t one = 1;
        /* EAGAIN means the counter is already non-zero: the loop will wake anyway. */
        ssize_t n = write(r->evfd, &one, sizeof one);
        (void)n;
    }
}

static void run_posted(sl__reactor *r)
{
    uint64_t v;
    ssize_t n = read(r->evfd, &v, sizeof v);
    (void)n;
    sl__task *list = atomic_exchange_explicit(&r->posted, NULL, memory_order_acquire);
    sl__task *fifo = NULL;
    while (list) {
        sl__task *next = atomic_load_explicit(&list->next, memory_order_relaxed);
        atomic_store_explicit(&list->next, fifo, memory_order_relaxed);
        fifo = list;
        list = next;
    }
    while (fifo) {
        sl__task *next = atomic_load_explicit(&fifo->next, memory_order_relaxed);
        fifo->fn(r, fifo); /* may free fifo */
        fifo = next;
    }
}

/* Appends t to the FIFO [*head, *tail]. */
static void fifo_push(sl__task **head, sl__task **tail, sl__task *t)
{
    atomic_store_explicit(&t->next, NULL, memory_order_relaxed);
    if (*tail)
        atomic_store_explicit(&(*tail)->next, t, memory_order_relaxed);
    else
        *head = t;
    *tail = t;
}

static sl__task *fifo_pop(sl__task **head, sl__task **tail)
{
    sl__task *t = *head;
    if (!t) return NULL;
    *head = atomic_load_explicit(&t->next, memory_order_relaxed);
    if (!*head) *tail = NULL;
    return t;
}

void sl__reactor_defer(sl__reactor *r, sl__task *t)
{
    fifo_push(&r->deferred, &r->deferred_tail, t);
}

void sl__reactor_post_local(sl__reactor *r, sl__task *t)
{
    fifo_push(&r->local, &r->local_tail, t);
}

void sl__reactor_run_local(sl__reactor *r)
{
    sl__task *t;
    while ((t = fifo_pop(&r->local, &r->local_tail)))
        t->fn(r, t); /* may free t */
}

void sl__reactor_at_idle(sl__reactor *r, sl__task *t)
{
    fifo_push(&r->idle, &r->idle_tail, t);
}

void sl__reactor_idle_cancel(sl__reactor *r, sl__task *t)
{
    sl__task *prev = NULL;
    for (sl__task *x = r->idle; x;
         prev = x, x = atomic_load_explicit(&x->next, memory_order_relaxed)) {
        if (x != t) continue;
        sl__task *next = atomic_load_explicit(&x->next, memory_order_relaxed);
        if (prev)
            atomic_store_explicit(&prev->next, next, memory_order_relaxed);
        else
            r->idle = next;
        if (r->idle_tail == t) r->idle_tail = prev;
        return;
    }
}

void sl__reactor_run_idle(sl__reactor *r)
{
    sl__task *t;
    while ((t = fifo_pop(&r->idle, &r->idle_tail)))
        t->fn(r, t);
}

static void run_deferred(sl__reactor *r)
{
    sl__task *t;
    while ((t = fifo_pop(&r->deferred, &r->deferred_tail)))
        t->fn(r, t);
}

void sl__reactor_stop(sl__reactor *r)
{
    r->stop = true;
}

void sl__reactor_poll(sl__reactor *r, bool block)
{
    struct epoll_event evs[MAX_EVENTS];
    int n = epoll_wait(r->epfd, evs, MAX_EVENTS, block ? wait_ms(r) : 0);
    r->now = sl_mono_ns();
    bool woken = false;
    for (int i = 0; i < n; i++) {
        sl__io *io = evs[i].data.ptr;
        if (io == &r->wake) {
            woken = true;
            continue;
        }
        /* fn is NULL once the owner stopped the io during this batch. */
        if (io->fn) io->fn(r, io, evs[i].events);
    }
    if (woken) run_posted(r);
    sl__reactor_run_local(r);
    run_timers(r);
    run_deferred(r);
    sl__reactor_run_idle(r);
}

void sl__reactor_run(sl__reactor *r)
{
    while (!r->stop)
        sl__reactor_poll(r, true);
    /* Posts that raced with stop are left for the owner (see sl__reactor_destroy). */
}
