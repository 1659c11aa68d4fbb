/* sl_wait_fd: wait for an fd with a ctx, on a task (the loop's epoll) or a plain thread.
 *
 * On a task: the fd is added to the task's loop epoll, one-shot, with a watcher that lives on
 * the task's stack; the watcher callback (loop thread) records what is ready and unparks the
 * task, and a ctx on-done hook unparks it too. The task is pinned to its loop meanwhile (no
 * stealing), so it removes the registration on the loop thread that owns the epoll set, and
 * only between event batches: no batch can still hold a pointer to the watcher afterwards.
 *
 * On a plain thread: poll() on the fd plus an eventfd that the ctx's on-done hook writes. No
 * timeout is needed: a deadline ctx fires through its own timer. */
#include <errno.h>
#include <poll.h>
#include <stddef.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "sluice/error.h"
#include "task/task_int.h"

typedef struct fdwait {
    sl__io io;
    struct sl_task *task;
    int want;  /* SL_WAIT_* */
    int ready; /* SL_WAIT_*; loop thread only */
} fdwait;

static int from_epoll(uint32_t ev, int want)
{
    if (ev & (EPOLLERR | EPOLLHUP)) return want;
    int r = 0;
    if (ev & (EPOLLIN | EPOLLRDHUP)) r |= SL_WAIT_READ;
    if (ev & EPOLLOUT) r |= SL_WAIT_WRITE;
    return r & want;
}

static void fd_ready(sl__reactor *r, sl__io *io, uint32_t events)
{
    (void)r;
    fdwait *w = (fdwait *)((char *)io - offsetof(fdwait, io));
    w->ready = from_epoll(events, w->want);
    if (!w->ready) w->ready = w->want;
    sl__task_unpark(w->task);
}

static void wake_task(void *arg, int err)
{
    (void)err;
    sl__task_unpark(arg);
}

static int wait_task(struct sl_task *t, int fd, int events, sl_ctx *ctx)
{
    sl__task_pin(t, 1);
    sl__sched *s = sl__sched_self();
    fdwait w = {.task = t, .want = events};
    uint32_t ev = EPOLLONESHOT;
    if (events & SL_WAIT_READ) ev |= EPOLLIN | EPOLLRDHUP;
    if (events & SL_WAIT_WRITE) ev |= EPOLLOUT;
    int rc = sl__io_start(&s->r, &w.io, fd, ev, fd_ready);
    if (rc < 0) {
        sl__task_pin(t, -1);
        return rc == -EEXIST ? SL_EEXIST : rc == -ENOMEM ? SL_ENOMEM : SL_EINVAL;
    }
    sl_ctx_hook *hook = NULL;
    rc = sl_ctx_on_done(ctx, wake_task, t, &hook);
    if (rc >= 0) {
        for (;;) {
            if (w.ready) {
                rc = w.ready;
                break;
            }
            if ((rc = sl_ctx_err(ctx)) != 0) break;
            sl__task_park();
        }
    }
    sl__io_stop(&s->r, &w.io);
    sl_ctx_hook_stop(hook);
    sl__task_pin(t, -1);
    return rc;
}

static void wake_fd(void *arg, int err)
{
    (void)err;
    uint64_t one = 1;
    ssize_t n = write((int)(intptr_t)arg, &one, sizeof one);
    (void)n;
}

static int wait_thread(int fd, int events, sl_ctx *ctx)
{
    int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (efd < 0) return errno == ENOMEM ? SL_ENOMEM : -errno;
    sl_ctx_hook *hook = NULL;
    int rc = sl_ctx_on_done(ctx, wake_fd, (void *)(intptr_t)efd, &hook);
    if (rc < 0) {
        close(efd);
        return rc;
    }
    struct pollfd p[2] = {{.fd = fd, .events = 0}, {.fd = efd, .events = POLLIN}};
    if (events & SL_WAIT_READ) p[0].events |= POLLIN | POLLRDHUP;
    if (events & SL_WAIT_WRITE) p[0].events |= POLLOUT;
    for (;;) {
        if ((rc = sl_ctx_err(ctx)) != 0) break;
        int n = poll(p, 2, -1); /* sleep-ok: woken by the fd or by the ctx's hook */
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            rc = -errno;
            break;
        }
        if (p[0].revents & POLLNVAL) {
            rc = SL_EINVAL;
            break;
        }
        if (p[0].revents) {
            if (p[0].revents & (POLLERR | POLLHUP)) {
                rc = events;
            } else {
                rc = 0;
                if (p[0].revents & (POLLIN | POLLRDHUP)) rc |= SL_WAIT_READ;
                if (p[0].revents & POLLOUT) rc |= SL_WAIT_WRITE;
                rc &= events;
                if (!rc) rc = events;
            }
            break;
        }
    }
    sl_ctx_hook_stop(hook); /* waits for a running hook: efd is not written after this */
    close(efd);
    return rc;
}

int sl_wait_fd(int fd, int events, sl_ctx *ctx)
{
    if (fd < 0 || events <= 0 || (events & ~(SL_WAIT_READ | SL_WAIT_WRITE))) return SL_EINVAL;
    int err = sl_ctx_err(ctx);
    if (err) return err;
    struct sl_task *t = sl__task_self();
    if (t) return wait_task(t, fd, events, ctx);
    return wait_thread(fd, events, ctx);
}
