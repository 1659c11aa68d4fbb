/* sluice-wait-load: the load side of scripts/bench_wait8k.sh — N concurrent keep-alive clients,
 * each sending one GET after another to a server whose handler takes a while (1 s), counting
 * what is served inside a measurement window that starts after a warm-up.
 *
 *   sluice-wait-load --port P [--path /wait1s] [--conns 8000] [--warmup-s 3] [--seconds 10]
 *                    [--timeout-s 5] [--pid SERVER_PID]
 *
 * Why not wrk: at 8000 connections most of a 10 s wrk run is the connect ramp through a
 * listen backlog (somaxconn caps it at 4096 here), which wrk's requests/s includes; and wrk's
 * timeout counter counts every connection whose request is older than the timeout at each
 * 2 s sweep without closing it (one slow request is counted again and again). Here: all
 * connections are opened during the warm-up; the window counts responses that complete in it
 * (by status), requests that took longer than the timeout (the connection is then closed and
 * reopened: a timeout counts once), and connection errors.
 *
 * One thread, one epoll set, non-blocking sockets, one request in flight per connection; no
 * sluice code (the thing under test). Every phase is bounded: the program ends after
 * warmup + seconds (+ 1 s to close). With --pid it samples the server's VmRSS every 100 ms
 * and reads its VmHWM and CPU time (user + system) over the window from /proc.
 *
 * Prints one line of key=value pairs (served, rps, ok, non200, timeouts, errors, ...) for the
 * script to parse. Exit status 0, or 2 for bad arguments / too few file descriptors. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>

enum { RBUF = 1024, LAT_BUCKETS = 1000 }; /* latency histogram: 10 ms buckets up to 10 s */

typedef struct conn {
    int fd;           /* -1 when closed */
    int connected;    /* connect completed */
    int64_t start_ns; /* the request in flight was sent at; 0 = none */
    size_t have;      /* bytes in buf */
    char buf[RBUF];
} conn;

static struct {
    int port, nconns, warmup_s, seconds, timeout_s, pid;
    const char *path;
    char req[256];
    size_t reqlen;
    struct sockaddr_in sa;
    int ep;
    conn *c;
    int64_t win_start, win_end; /* ns, monotonic */
    /* counted inside the window */
    long ok, non200, timeouts, errors, conn_errors;
    long lat[LAT_BUCKETS + 1];
    long lat_max_ms;
    long rss_peak_kb;
    int open_at_window; /* connections established when the window opened */
} g;

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int in_window(int64_t t)
{
    return t >= g.win_start && t < g.win_end;
}

static long proc_status_kb(const char *key)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", g.pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    long v = -1;
    size_t kl = strlen(key);
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, key, kl) && line[kl] == ':') {
            v = strtol(line + kl + 1, NULL, 10);
            break;
        }
    fclose(f);
    return v;
}

/* The server's user + system CPU time in clock ticks, or -1. */
static long proc_cpu_ticks(void)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", g.pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')'); /* the command name may hold spaces */
    if (!p) return -1;
    unsigned long ut = 0, st = 0;
    /* after ")": state(3) ... utime is field 14, stime 15 */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
        return -1;
    return (long)(ut + st);
}

static void conn_close(conn *c)
{
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
    c->connected = 0;
    c->start_ns = 0;
    c->have = 0;
}

static void conn_send(conn *c)
{
    /* A fresh request on an idle keep-alive connection: the kernel buffer always takes it. */
    ssize_t n = send(c->fd, g.req, g.reqlen, MSG_NOSIGNAL);
    c->start_ns = now_ns();
    c->have = 0;
    if (n != (ssize_t)g.reqlen) {
        if (in_window(c->start_ns)) g.errors++;
        conn_close(c);
    }
}

static void conn_open(conn *c)
{
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        if (in_window(now_ns())) g.conn_errors++;
        return;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    int rc = connect(c->fd, (struct sockaddr *)&g.sa, sizeof g.sa);
    if (rc < 0 && errno != EINPROGRESS) {
        if (in_window(now_ns())) g.conn_errors++;
        conn_close(c);
        return;
    }
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP,
                             .data.u32 = (uint32_t)(c - g.c)};
    if (epoll_ctl(g.ep, EPOLL_CTL_ADD, c->fd, &ev) < 0) {
        conn_close(c);
        return;
    }
    c->start_ns = now_ns(); /* the connect counts against the timeout too */
}

static void record(int64_t t, int status)
{
    if (!in_window(t)) return;
    if (status == 200)
        g.ok++;
    else
        g.non200++;
}

static void record_latency(int64_t t, int64_t start)
{
    if (!in_window(t)) return;
    long ms = (long)((t - start) / 1000000);
    if (ms > g.lat_max_ms) g.lat_max_ms = ms;
    long b = ms / 10;
    g.lat[b > LAT_BUCKETS ? LAT_BUCKETS : b]++;
}

/* Parses complete responses out of c->buf. Returns 1 when one completed, 0 when more bytes are
 * needed, -1 on a malformed response. */
static int parse_one(conn *c, int *status)
{
    char *end = memmem(c->buf, c->have, "\r\n\r\n", 4);
    if (!end) return c->have == sizeof c->buf ? -1 : 0;
    size_t hlen = (size_t)(end - c->buf) + 4;
    if (c->have < 12 || memcmp(c->buf, "HTTP/1.", 7)) return -1;
    *status = atoi(c->buf + 9);
    long cl = 0;
    for (char *p = c->buf; p && p < end; p = memchr(p, '\n', (size_t)(end - p))) {
        if (*p == '\n') p++;
        if (!strncasecmp(p, "content-length:", 15)) cl = strtol(p + 15, NULL, 10);
    }
    if (cl < 0 || hlen + (size_t)cl > sizeof c->buf) return -1;
    if (c->have < hlen + (size_t)cl) return 0;
    c->have -= hlen + (size_t)cl;
    memmove(c->buf, c->buf + hlen + (size_t)cl, c->have);
    return 1;
}

static void on_event(conn *c, uint32_t ev)
{
    int64_t t = now_ns();
    if (!c->connected) {
        int err = 0;
        socklen_t el = sizeof err;
        if ((ev & (EPOLLERR | EPOLLHUP)) ||
            getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0 || err) {
            if (in_window(t)) g.conn_errors++;
            conn_close(c);
            return;
        }
        c->connected = 1;
        struct epoll_event e = {.events = EPOLLIN | EPOLLRDHUP, .data.u32 = (uint32_t)(c - g.c)};
        epoll_ctl(g.ep, EPOLL_CTL_MOD, c->fd, &e);
        conn_send(c);
        return;
    }
    for (;;) {
        ssize_t n = recv(c->fd, c->buf + c->have, sizeof c->buf - c->have, 0);
        if (n > 0) {
            c->have += (size_t)n;
            int status, rc;
            while ((rc = parse_one(c, &status)) == 1) {
                record(t, status);
                record_latency(t, c->start_ns);
                if (c->have) { /* a response nobody asked for */
                    rc = -1;
                    break;
                }
                conn_send(c);
                if (c->fd < 0) return;
            }
            if (rc < 0) {
                if (in_window(t)) g.errors++;
                conn_close(c);
                return;
            }
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
        /* closed by the server or reset: an error if a request was in flight */
        if (c->start_ns && in_window(t)) g.errors++;
        conn_close(c);
        return;
    }
}

static void usage(void)
{
    fprintf(stderr, "usage: sluice-wait-load --port P [--path /wait1s] [--conns N] "
                    "[--warmup-s S] [--seconds S] [--timeout-s S] [--pid PID]\n");
}

int main(int argc, char **argv)
{
    g.path = "/wait1s";
    g.nconns = 8000;
    g.warmup_s = 3;
    g.seconds = 10;
    g.timeout_s = 5;
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *a = argv[i], *v = argv[i + 1];
        long n = strtol(v, NULL, 10);
        if (!strcmp(a, "--port"))
            g.port = (int)n;
        else if (!strcmp(a, "--path"))
            g.path = v;
        else if (!strcmp(a, "--conns"))
            g.nconns = (int)n;
        else if (!strcmp(a, "--warmup-s"))
            g.warmup_s = (int)n;
        else if (!strcmp(a, "--seconds"))
            g.seconds = (int)n;
        else if (!strcmp(a, "--timeout-s"))
            g.timeout_s = (int)n;
        else if (!strcmp(a, "--pid"))
            g.pid = (int)n;
        else {
            usage();
            return 2;
        }
    }
    if (argc % 2 == 0 || g.port <= 0 || g.port > 65535 || g.nconns <= 0 || g.nconns > 1000000 ||
        g.warmup_s < 0 || g.seconds <= 0 || g.timeout_s <= 0 || strlen(g.path) > 128) {
        usage();
        return 2;
    }
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rlim_t need = (rlim_t)g.nconns + 64;
    if (rl.rlim_cur < need) {
        rl.rlim_cur = rl.rlim_max < need ? rl.rlim_max : need;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur < need) {
        fprintf(stderr,
                "sluice-wait-load: %d connections need %lu file descriptors; the hard "
                "limit is %lu (raise it: ulimit -Hn)\n",
                g.nconns, (unsigned long)need, (unsigned long)rl.rlim_max);
        return 2;
    }
    g.reqlen =
        (size_t)snprintf(g.req, sizeof g.req, "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", g.path);
    g.sa.sin_family = AF_INET;
    g.sa.sin_port = htons((uint16_t)g.port);
    g.sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    g.ep = epoll_create1(EPOLL_CLOEXEC);
    g.c = calloc((size_t)g.nconns, sizeof *g.c);
    if (g.ep < 0 || !g.c) {
        perror("sluice-wait-load");
        return 1;
    }
    int64_t t0 = now_ns();
    g.win_start = t0 + (int64_t)g.warmup_s * 1000000000;
    g.win_end = g.win_start + (int64_t)g.seconds * 1000000000;
    int64_t timeout_ns = (int64_t)g.timeout_s * 1000000000;
    for (int i = 0; i < g.nconns; i++) {
        g.c[i].fd = -1;
        conn_open(&g.c[i]);
    }
    enum { MAXEV = 512 };
    struct epoll_event evs[MAXEV];
    int64_t next_tick = t0;
    long cpu0 = -1, cpu1 = -1;
    int window_open = 0;
    for (;;) {
        int64_t t = now_ns();
        if (t >= g.win_end) break;
        if (!window_open && t >= g.win_start) {
            window_open = 1;
            for (int i = 0; i < g.nconns; i++)
                g.open_at_window += g.c[i].connected;
            if (g.pid) cpu0 = proc_cpu_ticks();
        }
        if (t >= next_tick) { /* every 100 ms: timeouts, reopen closed connections, RSS */
            next_tick = t + 100000000;
            for (int i = 0; i < g.nconns; i++) {
                conn *c = &g.c[i];
                if (c->fd >= 0 && c->start_ns && t - c->start_ns > timeout_ns) {
                    if (in_window(t)) g.timeouts++;
                    conn_close(c);
                }
                if (c->fd < 0) conn_open(c);
            }
            if (g.pid && window_open) {
                long kb = proc_status_kb("VmRSS");
                if (kb > g.rss_peak_kb) g.rss_peak_kb = kb;
            }
        }
        int wait_ms = (int)((next_tick - t) / 1000000) + 1;
        int n = epoll_wait(g.ep, evs, MAXEV, wait_ms);
        for (int i = 0; i < n; i++) {
            conn *c = &g.c[evs[i].data.u32];
            if (c->fd >= 0) on_event(c, evs[i].events);
        }
    }
    if (g.pid) cpu1 = proc_cpu_ticks();
    long inflight = 0;
    for (int i = 0; i < g.nconns; i++)
        inflight += g.c[i].fd >= 0 && g.c[i].start_ns;
    long hwm = g.pid ? proc_status_kb("VmHWM") : -1;
    long served = g.ok + g.non200;
    long tot = 0, p50 = -1, p99 = -1;
    for (int b = 0; b <= LAT_BUCKETS; b++) {
        tot += g.lat[b];
        if (p50 < 0 && tot * 2 >= served) p50 = b * 10;
        if (p99 < 0 && tot * 100 >= served * 99) p99 = b * 10;
    }
    double cpu_s = (cpu0 >= 0 && cpu1 >= 0) ? (double)(cpu1 - cpu0) / sysconf(_SC_CLK_TCK) : -1;
    printf("served=%ld rps=%.1f ok=%ld non200=%ld timeouts=%ld errors=%ld conn_errors=%ld "
           "open_at_window=%d inflight_at_end=%ld p50_ms=%ld p99_ms=%ld max_ms=%ld "
           "rss_peak_kb=%ld hwm_kb=%ld server_cpu_s=%.2f\n",
           served, (double)g.ok / g.seconds, g.ok, g.non200, g.timeouts, g.errors, g.conn_errors,
           g.open_at_window, inflight, p50, p99, g.lat_max_ms, g.rss_peak_kb, hwm, cpu_s);
    for (int i = 0; i < g.nconns; i++)
        if (g.c[i].fd >= 0) close(g.c[i].fd);
    free(g.c);
    close(g.ep);
    return 0;
}
