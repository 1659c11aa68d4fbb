/* Shared scaffolding for the race programs of docs/race.md: a server on 127.0.0.1 (one reactor,
 * pooled handlers on `workers` threads) and a small blocking HTTP client. Each program is a
 * main() that exits 0 when the behaviour it shows holds; under ThreadSanitizer the racy ones
 * must instead fail with a report (tests/race/CMakeLists.txt registers them so).
 *
 * rt_meet() is how the programs make a race certain instead of likely: each handler (or task)
 * reaches it right after its racy access and waits until all have, so the accesses overlap
 * the way they do under load. It adds no ordering between the accesses that precede it. */
#ifndef SLUICE_RACE_UTIL_H
#define SLUICE_RACE_UTIL_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <stdatomic.h>
#include <unistd.h>
#include "harness.h" /* sl_test_pause: the poll interval of a bounded wait */

#define RT_DIE(...) (fprintf(stderr, __VA_ARGS__), fputc('\n', stderr), exit(2))

/* Waits (at most 10 s, bounded by ctx too) until every participant has called it. */
static inline int rt_meet(sl_wg *wg, sl_ctx *ctx)
{
    sl_wg_done(wg);
    sl_ctx *limit;
    if (sl_ctx_with_timeout(ctx, SL_SEC(10), &limit) != 0) return SL_ENOMEM;
    int rc = sl_wg_wait(wg, limit);
    sl_ctx_release(limit);
    return rc;
}

/* Waits (10 s at most) until *flag is set, reading it relaxed: a wait that orders nothing,
 * for scaffolding that must not hide a race from TSan. Returns whether it was set. */
static inline bool rt_wait_relaxed(_Atomic int *flag)
{
    int64_t deadline = sl_mono_ns() + SL_SEC(10);
    unsigned n = 0;
    while (!atomic_load_explicit(flag, memory_order_relaxed))
        if (sl_mono_ns() > deadline)
            return false;
        else
            sl_test_pause(n++);
    return true;
}

/* Serves mux on 127.0.0.1 (a free port) with one reactor; returns the port. */
static inline sl_server *rt_serve(sl_mux *mux, int *port)
{
    sl_server *srv;
    if (sl_server_new(&(sl_server_opts){.mux = mux, .reactors = 1}, &srv) != 0)
        RT_DIE("server_new");
    *port = sl_server_listen(srv, "127.0.0.1", 0);
    if (*port <= 0 || sl_server_serve(srv) != 0) RT_DIE("listen/serve: %d", *port);
    return srv;
}

static inline sl_mux *rt_mux(int workers)
{
    sl_mux *mux;
    if (sl_mux_new(&(sl_mux_opts){.handler_workers = workers}, &mux) != 0) RT_DIE("mux_new");
    return mux;
}

/* Stops srv gracefully (5 s at most) and frees it with its mux. */
static inline void rt_stop(sl_server *srv, sl_mux *mux)
{
    sl_ctx *grace;
    sl_ctx_with_timeout(NULL, SL_SEC(5), &grace);
    sl_server_shutdown(srv, grace);
    sl_ctx_release(grace);
    sl_server_free(srv);
    sl_mux_free(mux);
}

static inline int rt_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) RT_DIE("connect");
    return fd;
}

/* Sends "GET path" (keep-alive) on fd. */
static inline void rt_send_get(int fd, const char *path)
{
    char req[512];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: t\r\n\r\n", path);
    if (n <= 0 || send(fd, req, (size_t)n, MSG_NOSIGNAL) != n) RT_DIE("send");
}

/* Reads one response (10 s at most) into body (NUL-terminated, truncated to cap). Returns the
 * status. */
static inline int rt_read(int fd, char *body, size_t cap)
{
    char buf[8192];
    size_t len = 0;
    for (;;) {
        buf[len] = 0;
        char *end = strstr(buf, "\r\n\r\n");
        if (end) {
            const char *cl = strstr(buf, "Content-Length: ");
            size_t blen = cl && cl < end ? strtoul(cl + 16, NULL, 10) : 0;
            if (len >= (size_t)(end + 4 - buf) + blen) {
                snprintf(body, cap, "%.*s", (int)blen, end + 4);
                return atoi(buf + 9);
            }
        }
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (len + 1 >= sizeof buf || poll(&p, 1, 10000) != 1) RT_DIE("response timed out");
        ssize_t n = recv(fd, buf + len, sizeof buf - 1 - len, 0);
        if (n <= 0) RT_DIE("connection closed");
        len += (size_t)n;
    }
}

/* GETs every path at once, each on its own connection, and reads every answer. */
static inline void rt_get_all(int port, const char **paths, int n, char (*bodies)[256])
{
    int fds[16];
    for (int i = 0; i < n; i++) {
        fds[i] = rt_connect(port);
        rt_send_get(fds[i], paths[i]);
    }
    for (int i = 0; i < n; i++) {
        int st = rt_read(fds[i], bodies[i], 256);
        if (st != 200) RT_DIE("GET %s: status %d", paths[i], st);
        close(fds[i]);
    }
}

#endif
