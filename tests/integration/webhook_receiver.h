/* A webhook receiver for the demo's tests: a raw-socket HTTP/1.1 server on a loopback port, run
 * by one thread, that answers each POST according to its mode and records what it got.
 *
 *   WR_FAIL_FIRST  the first `fail` requests get a 500, the rest a 200
 *   WR_STATUS      every request gets `status` (500: always fails; 404: refused for good)
 *   WR_HANG        accepts and reads nothing, answers nothing (a target that hangs): the
 *                  connections stay open until wr_stop
 *
 * One connection at a time, one request per connection (answers carry Connection: close).
 * wr_stop wakes the thread with shutdown() on the listening socket and joins it. */
#ifndef SLUICE_TEST_WEBHOOK_RECEIVER_H
#define SLUICE_TEST_WEBHOOK_RECEIVER_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

enum { WR_FAIL_FIRST, WR_STATUS, WR_HANG };

#define WR_MAX_HELD 64

typedef struct wr {
    int mode, fail, status;
    int lfd, port;
    pthread_t th;
    _Atomic int requests;  /* requests read in full */
    _Atomic int ok;        /* of those, answered 2xx: deliveries */
    _Atomic int accepted;  /* connections accepted */
    pthread_mutex_t mu;    /* guards what follows */
    char body[512];        /* the last request's body */
    char ids[8][80];       /* X-Sluice-Webhook-Id of the first 8 requests */
    char attempts[8][16];  /* X-Sluice-Attempt of the first 8 requests */
    int held[WR_MAX_HELD]; /* WR_HANG: open connections */
    int nheld;
} wr;

/* Reads one request (head + Content-Length body) from fd into the receiver's record. */
static inline bool wr_read_request(wr *w, int fd)
{
    char buf[8192];
    size_t n = 0;
    char *end = NULL;
    while (!(end = n ? strstr(buf, "\r\n\r\n") : NULL)) {
        if (n >= sizeof buf - 1) return false;
        ssize_t r = read(fd, buf + n, sizeof buf - 1 - n);
        if (r <= 0) return false;
        n += (size_t)r;
        buf[n] = 0;
    }
    size_t head = (size_t)(end + 4 - buf);
    char v[80];
    const char *cl = tc_find_hdr(buf, "Content-Length", v, sizeof v);
    size_t want = cl ? (size_t)strtoul(v, NULL, 10) : 0;
    while (n < head + want) {
        if (n >= sizeof buf - 1) return false;
        ssize_t r = read(fd, buf + n, sizeof buf - 1 - n);
        if (r <= 0) return false;
        n += (size_t)r;
        buf[n] = 0;
    }
    int k = atomic_load(&w->requests);
    pthread_mutex_lock(&w->mu);
    snprintf(w->body, sizeof w->body, "%.*s", (int)want, buf + head);
    if (k < 8) {
        if (!tc_find_hdr(buf, "X-Sluice-Webhook-Id", w->ids[k], sizeof w->ids[k])) w->ids[k][0] = 0;
        if (!tc_find_hdr(buf, "X-Sluice-Attempt", w->attempts[k], sizeof w->attempts[k]))
            w->attempts[k][0] = 0;
    }
    pthread_mutex_unlock(&w->mu);
    return true;
}

static inline void *wr_main(void *arg)
{
    wr *w = arg;
    for (;;) {
        int fd = accept4(w->lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) break; /* wr_stop shut the listening socket down */
        atomic_fetch_add(&w->accepted, 1);
        if (w->mode == WR_HANG) {
            pthread_mutex_lock(&w->mu);
            if (w->nheld < WR_MAX_HELD)
                w->held[w->nheld++] = fd;
            else
                close(fd);
            pthread_mutex_unlock(&w->mu);
            continue;
        }
        struct timeval tv = {.tv_sec = 10}; /* a stuck client cannot stall the receiver */
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        if (wr_read_request(w, fd)) {
            int k = atomic_load(&w->requests);
            int st = w->mode == WR_STATUS ? w->status : k < w->fail ? 500 : 200;
            char resp[160];
            snprintf(resp, sizeof resp,
                     "HTTP/1.1 %d X\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n"
                     "Connection: close\r\n\r\nok",
                     st);
            /* Counted before answering: once the demo has the answer, the count is there. */
            if (st >= 200 && st < 300) atomic_fetch_add(&w->ok, 1);
            atomic_fetch_add(&w->requests, 1);
            (void)!write(fd, resp, strlen(resp));
        }
        close(fd);
    }
    return NULL;
}

/* Starts a receiver on a free 127.0.0.1 port (w->port). Returns 0 or -1. */
static inline int wr_start(wr *w, int mode, int fail_or_status)
{
    memset(w, 0, sizeof *w);
    w->mode = mode;
    w->fail = fail_or_status;
    w->status = fail_or_status;
    pthread_mutex_init(&w->mu, NULL);
    w->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof sa;
    if (w->lfd < 0 || bind(w->lfd, (struct sockaddr *)&sa, sizeof sa) < 0 ||
        listen(w->lfd, 64) < 0 || getsockname(w->lfd, (struct sockaddr *)&sa, &sl) < 0)
        return -1;
    w->port = ntohs(sa.sin_port);
    return pthread_create(&w->th, NULL, wr_main, w) == 0 ? 0 : -1;
}

static inline void wr_stop(wr *w)
{
    shutdown(w->lfd, SHUT_RDWR);
    pthread_join(w->th, NULL);
    close(w->lfd);
    for (int i = 0; i < w->nheld; i++)
        close(w->held[i]);
    pthread_mutex_destroy(&w->mu);
}

/* --webhook-url for w. */
static inline void wr_url(const wr *w, char *out, size_t cap)
{
    snprintf(out, cap, "http://127.0.0.1:%d/hook", w->port);
}

#endif
