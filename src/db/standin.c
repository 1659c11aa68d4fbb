/* Stand-ins for the task runtime's sl_offload and sl_wait_fd (include/sluice/task.h, branch
 * `tasks`), with the same contract on a plain thread, so the database drivers are written
 * against their final interface. When `tasks` lands these two functions become calls to the
 * real ones (which park the calling task instead of blocking its thread).
 *
 * sl__db_wait_fd blocks in poll() on the caller's fd and on a per-thread eventfd. A ctx that
 * can be done gets an on-done hook that writes to that eventfd, so cancellation and deadlines
 * wake the poll at once: no polling loop, no timeout slices. The hook is stopped before
 * returning (sl_ctx_hook_stop waits for a running hook), then the eventfd is drained, so a
 * late wake-up can never leak into the thread's next wait. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "db/db_int.h"

int sl__db_offload(sl__offload_fn fn, void *arg, sl_ctx *ctx)
{
    int rc = sl_ctx_err(ctx);
    if (rc < 0) return rc;
    fn(arg);
    return 0;
}

/* One eventfd per thread, closed by the key's destructor when the thread exits. */
static _Thread_local int t_wake_fd = -1;
static pthread_key_t g_key;
static pthread_once_t g_key_once = PTHREAD_ONCE_INIT;

static void close_wake_fd(void *p)
{
    close((int)(intptr_t)p - 1);
}

static void make_key(void)
{
    pthread_key_create(&g_key, close_wake_fd);
}

static void wake(void *arg, int err)
{
    (void)err;
    uint64_t one = 1;
    ssize_t n = write((int)(intptr_t)arg, &one, sizeof one);
    (void)n; /* a full counter already means "woken" */
}

static int wake_fd(void)
{
    if (t_wake_fd >= 0) return t_wake_fd;
    pthread_once(&g_key_once, make_key);
    t_wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (t_wake_fd >= 0) pthread_setspecific(g_key, (void *)(intptr_t)(t_wake_fd + 1));
    return t_wake_fd;
}

int sl__db_wait_fd(int fd, int events, sl_ctx *ctx)
{
    int rc = sl_ctx_err(ctx);
    if (rc < 0) return rc;
    struct pollfd p[2] = {{.fd = fd}, {.fd = -1, .events = POLLIN}};
    if (events & SL__WAIT_READ) p[0].events |= POLLIN;
    if (events & SL__WAIT_WRITE) p[0].events |= POLLOUT;
    sl_ctx_hook *hook = NULL;
    if (ctx && ctx != sl_ctx_background()) {
        p[1].fd = wake_fd();
        if (p[1].fd < 0) return sl_from_errno(errno);
        rc = sl_ctx_on_done(ctx, wake, (void *)(intptr_t)p[1].fd, &hook);
        if (rc < 0) return rc;
    }
    for (;;) {
        int n = poll(p, 2, -1); /* sleep-ok: blocks on the fd and the ctx's eventfd, no timeout */
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) rc = sl_from_errno(errno);
        break;
    }
    if (hook || p[1].fd >= 0) {
        sl_ctx_hook_stop(hook);
        uint64_t v;
        while (read(p[1].fd, &v, sizeof v) == (ssize_t)sizeof v) {
        }
    }
    if (rc < 0) return rc;
    int ready = 0;
    if (p[0].revents & (POLLERR | POLLHUP | POLLNVAL)) ready = SL__WAIT_READ | SL__WAIT_WRITE;
    if (p[0].revents & POLLIN) ready |= SL__WAIT_READ;
    if (p[0].revents & POLLOUT) ready |= SL__WAIT_WRITE;
    if (ready) return ready & (events | SL__WAIT_READ | SL__WAIT_WRITE);
    rc = sl_ctx_err(ctx);
    return rc < 0 ? rc : SL_EAGAIN;
}
