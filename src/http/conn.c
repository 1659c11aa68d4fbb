/* One HTTP/1.1 connection: read, parse, call the handler, queue the response, write. This file
 * is the connection's state machine only (reading, parsing, writing, timeouts, close): the
 * request and response API the handler uses is request.c's, the mux side of a request
 * (routing, middleware, task and pooled handlers) handler.c's.
 *
 * A connection is driven by its reactor only (no locks). Each readiness event runs drive():
 * parse every complete request in the read buffer, call the handler inline for each and append
 * its response to the output buffer (so pipelined responses stay in request order by
 * construction), then write everything with one sendmsg (scatter/gather like writev, plus
 * MSG_NOSIGNAL so a dead peer cannot raise SIGPIPE in the application). Then the epoll interest
 * and the one armed timer are set from the state.
 *
 * Invariants:
 *  - Views handed to a handler point into rbuf; rbuf is only moved or grown when reading more,
 *    never while a handler runs. A head whose body arrived over several reads is parsed again
 *    when the body is complete (cheap, and it keeps no pointers across reads).
 *  - Bounded everything: the read buffer grows only up to head + body limits; the output is
 *    bounded by max_output_bytes and max_pipeline (past either we stop parsing and stop
 *    reading, so a client that never reads its responses cannot make us buffer without end).
 *  - Idle keep-alive connections hold no buffer: rbuf and wbuf go back to a per-worker pool
 *    once empty, so an idle connection costs its struct (about 200 bytes) and nothing else.
 *  - A closed connection is unlinked and marked dead at once, and freed by a deferred task at
 *    the end of the loop iteration, because a later event of the same epoll batch may still
 *    name it.
 *  - Server-initiated closes after a response shut the write side and drain input for a while
 *    (lingering close, as nginx does): closing with unread input would make the kernel send a
 *    reset that can destroy the response before the client reads it. */
#include <errno.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "sluice/clock.h"
#include "sluice/error.h"
#include "http/http_int.h"

#define CONN_OF_IO(p)    ((sl__conn *)((char *)(p)-offsetof(sl__conn, io)))
#define CONN_OF_TIMER(p) ((sl__conn *)((char *)(p)-offsetof(sl__conn, timer)))

static void drive(sl__conn *c, bool progress);

/* ---- buffers ---------------------------------------------------------------------------- */

static char *buf_get(sl__worker *w)
{
    if (w->pool) {
        void *b = w->pool;
        memcpy(&w->pool, b, sizeof(void *));
        w->npool--;
        return b;
    }
    return malloc(SL__BUF_SIZE);
}

static void buf_put(sl__worker *w, char *b, uint32_t cap)
{
    if (!b) return;
    if (cap == SL__BUF_SIZE && w->npool < SL__POOL_MAX) {
        memcpy(b, &w->pool, sizeof(void *));
        w->pool = b;
        w->npool++;
        return;
    }
    free(b);
    if (cap > SL__BUF_SIZE) w->freed_big += cap;
}

/* After a flood of large bodies the freed buffers stay in the allocator's arenas (glibc keeps
 * them for reuse, and its mmap threshold has risen by then): hand them back to the kernel
 * once enough was freed. At most once per SL__TRIM_BYTES freed, on the loop thread; a trim of
 * a large heap costs about a millisecond. */
static void maybe_trim(sl__worker *w)
{
    if (w->freed_big < SL__TRIM_BYTES) return;
    w->freed_big = 0;
#if defined(__GLIBC__)
    malloc_trim(0);
#endif
}

void sl__stat_inc(_Atomic uint64_t *v)
{
    /* Single writer: a load and a store, no read-modify-write needed. */
    atomic_store_explicit(v, atomic_load_explicit(v, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

/* ---- Date header, cached per second ------------------------------------------------------ */

void sl__http_date(char out[SL__HTTP_DATE_CAP], int64_t sec)
{
    static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char mons[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                     "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    time_t t = (time_t)sec;
    struct tm tm;
    gmtime_r(&t, &tm);
    /* Formatted by hand: strftime's %a and %b follow the locale; HTTP's names do not. */
    snprintf(out, SL__HTTP_DATE_CAP, "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday],
             tm.tm_mday, mons[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

static void date_refresh(sl__worker *w)
{
    int64_t sec = sl_wall_ns() / SL_SEC(1);
    if (sec == w->date_sec) return;
    sl__http_date(w->date, sec);
    w->date_sec = sec;
}

const char *sl__http_reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 417: return "Expectation Failed";
    case 422: return "Unprocessable Content";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    case 507: return "Insufficient Storage";
    default: return status < 200 ? "Informational" : status < 400 ? "OK" : "Error";
    }
}

/* ---- output --------------------------------------------------------------------------- */

static size_t unsent(const sl__conn *c)
{
    return (size_t)(c->wlen - c->woff) + (c->ext ? c->ext_len - c->ext_off : 0);
}

/* Makes room for need more bytes at wbuf + wlen. Returns 0 or SL_ENOMEM. */
static int wbuf_reserve(sl__conn *c, size_t need)
{
    if (!c->wbuf) {
        size_t cap = need <= SL__BUF_SIZE ? SL__BUF_SIZE : need;
        c->wbuf = cap == SL__BUF_SIZE ? buf_get(c->w) : malloc(cap);
        if (!c->wbuf) return SL_ENOMEM;
        c->wcap = (uint32_t)cap;
        c->wlen = c->woff = 0;
        return 0;
    }
    if (c->woff > 0) {
        memmove(c->wbuf, c->wbuf + c->woff, c->wlen - c->woff);
        c->wlen -= c->woff;
        c->woff = 0;
    }
    if ((size_t)c->wcap - c->wlen >= need) return 0;
    size_t cap = (size_t)c->wcap * 2;
    if (cap < c->wlen + need) cap = c->wlen + need;
    if (cap > UINT32_MAX) return SL_ENOMEM;
    char *nb = malloc(cap);
    if (!nb) return SL_ENOMEM;
    memcpy(nb, c->wbuf, c->wlen);
    buf_put(c->w, c->wbuf, c->wcap);
    c->wbuf = nb;
    c->wcap = (uint32_t)cap;
    return 0;
}

static char *put_u64(char *p, uint64_t v)
{
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        *p++ = tmp[--n];
    return p;
}

/* Writes the status line, Date and Server. 96 + strlen(reason) bytes at most. */
static char *put_status(sl__worker *w, char *p, int status)
{
    p = SL__PUTS(p, "HTTP/1.1 ");
    p = put_u64(p, (uint64_t)status);
    *p++ = ' ';
    const char *rs = sl__http_reason(status);
    p = sl__put(p, rs, strlen(rs));
    p = SL__PUTS(p, "\r\nServer: sluice\r\nDate: ");
    p = sl__put(p, w->date, 29);
    return SL__PUTS(p, "\r\n");
}

static void early_abort(sl__conn *c, int status);

/* Queues an engine-generated error response and marks the connection closing. A failure to
 * allocate just closes without an answer. */
static void queue_error(sl__conn *c, int status)
{
    sl__worker *w = c->w;
    if (c->early) early_abort(c, status); /* its hooks see what was sent */
    const char *rs = sl__http_reason(status);
    size_t rl = strlen(rs);
    sl__stat_inc(&w->st.requests);
    sl__stat_inc(&w->st.rejected);
    c->closing = true;
    if (wbuf_reserve(c, 256 + 2 * rl) < 0) return;
    date_refresh(w);
    char *p = put_status(w, c->wbuf + c->wlen, status);
    p = SL__PUTS(p, "Content-Type: text/plain; charset=utf-8\r\nContent-Length: ");
    p = put_u64(p, rl + 1);
    p = SL__PUTS(p, "\r\nConnection: close\r\n");
    if (status == 503) p += sl__retry_after_line(p, 1);
    p = SL__PUTS(p, "\r\n");
    p = sl__put(p, rs, rl);
    *p++ = '\n';
    c->wlen = (uint32_t)(p - c->wbuf);
    c->pending++;
}

static void queue_continue(sl__conn *c)
{
    static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
    if (wbuf_reserve(c, sizeof cont) < 0) return;
    memcpy(c->wbuf + c->wlen, cont, sizeof cont - 1);
    c->wlen += sizeof cont - 1;
}

int sl__conn_wbuf_append(sl__conn *c, const void *data, size_t len)
{
    if (wbuf_reserve(c, len) < 0) return SL_ENOMEM;
    memcpy(c->wbuf + c->wlen, data, len);
    c->wlen += (uint32_t)len;
    return 0;
}

/* Appends the handler's response. Returns 0 or SL_ENOMEM. */
int sl__conn_queue_resp(sl__conn *c, sl_resp *rp, bool head_method, bool keep, bool v10)
{
    sl__worker *w = c->w;
    int st = rp->status;
    bool bodyless = st < 200 || st == 204 || st == 304;
    size_t blen = bodyless ? 0 : rp->body_len;
    bool copy = !head_method && blen > 0 && blen <= SL__COPY_MAX;
    size_t clen = strlen(rp->ctype);
    size_t need = 160 + strlen(sl__http_reason(st)) + clen + rp->hlen + (copy ? blen : 0);
    if (wbuf_reserve(c, need) < 0) return SL_ENOMEM;
    date_refresh(w);
    char *p = put_status(w, c->wbuf + c->wlen, st);
    if (clen) {
        p = SL__PUTS(p, "Content-Type: ");
        p = sl__put(p, rp->ctype, clen);
        p = SL__PUTS(p, "\r\n");
    }
    if (!bodyless) {
        p = SL__PUTS(p, "Content-Length: ");
        p = put_u64(p, blen);
        p = SL__PUTS(p, "\r\n");
    }
    if (!keep)
        p = SL__PUTS(p, "Connection: close\r\n");
    else if (v10)
        p = SL__PUTS(p, "Connection: keep-alive\r\n");
    p = sl__put(p, rp->hdrs, rp->hlen);
    p = SL__PUTS(p, "\r\n");
    if (copy) p = sl__put(p, rp->body, blen);
    c->wlen = (uint32_t)(p - c->wbuf);
    c->pending++;
    if (!head_method && blen > SL__COPY_MAX) {
        c->ext = rp->body;
        c->ext_len = blen;
        c->ext_off = 0;
        c->ext_owned = rp->body == rp->copy;
        if (c->ext_owned) { /* the connection takes the copy; the worker allocates anew */
            rp->copy = NULL;
            rp->copy_cap = 0;
        }
    }
    return 0;
}

void sl__conn_queue_answer(sl__conn *c, const sl_http_req_head *h, sl_resp *resp, bool head_method)
{
    bool keep = h->keep_alive && !resp->close && !c->w->draining;
    /* No memory for the answer: send what is queued (earlier pipelined responses are intact;
     * wbuf_reserve failed before writing), then close without this one. */
    if (sl__conn_queue_resp(c, resp, head_method, keep, h->version_minor == 0) < 0 || !keep)
        c->closing = true;
}

void sl__conn_answer(sl__conn *c, sl_req *req, sl_resp *resp, bool head_method)
{
    sl__conn_queue_answer(c, req->h, resp, head_method);
    if (c->w->srv->mux)
        sl__mux_finish(req, resp);
    else
        sl__req_end(req);
}

static void ext_release(sl__conn *c)
{
    if (c->ext_owned) free((void *)c->ext);
    c->ext = NULL;
    c->ext_len = c->ext_off = 0;
    c->ext_owned = false;
}

/* Writes what is queued. Returns 0 (all written, or the socket is full: want_out set) or a
 * negative error (the connection must be closed). *progress is set when bytes went out. */
int sl__conn_flush(sl__conn *c, bool *progress)
{
    while (c->woff < c->wlen || c->ext) {
        struct iovec iov[2];
        int n = 0;
        if (c->woff < c->wlen) iov[n++] = (struct iovec){c->wbuf + c->woff, c->wlen - c->woff};
        if (c->ext) iov[n++] = (struct iovec){(char *)c->ext + c->ext_off, c->ext_len - c->ext_off};
        struct msghdr m = {.msg_iov = iov, .msg_iovlen = (size_t)n};
        ssize_t k = sendmsg(c->io.fd, &m, MSG_NOSIGNAL);
        if (k < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                c->want_out = true;
                return 0;
            }
            return -errno;
        }
        *progress = true;
        size_t a = (size_t)k < c->wlen - c->woff ? (size_t)k : c->wlen - c->woff;
        c->woff += (uint32_t)a;
        if (c->ext) {
            c->ext_off += (size_t)k - a;
            if (c->ext_off == c->ext_len) ext_release(c);
        }
    }
    c->want_out = false;
    c->woff = c->wlen = 0;
    c->pending = 0;
    return 0;
}

/* A request routed at head time whose body will not complete: its after hooks run with its
 * head parsed again (the views must point into the buffer as it is now). */
static void early_abort(sl__conn *c, int status)
{
    sl__worker *w = c->w;
    const sl_http_req_head *h = NULL;
    if (c->rbuf && c->head_len &&
        sl_http_parse_head(c->rbuf + c->rpos, c->head_len, &w->head, w->hdrs, &w->srv->lim) > 0)
        h = &w->head;
    sl__mux_early_abort(c, status, h);
}

/* Gives the read buffer back (to the pool, or to malloc when it grew) and its charge to the
 * server's body-memory budget. A request still waiting for its body ends here (499: the body
 * never came, nothing was sent for it). */
static void rbuf_release(sl__conn *c)
{
    if (c->early) early_abort(c, 499);
    buf_put(c->w, c->rbuf, c->rcap);
    if (c->rbuf_charged) sl__server_body_charge(c->w->srv, -(int64_t)c->rbuf_charged);
    c->rbuf_charged = 0;
    maybe_trim(c->w);
    c->rbuf = NULL;
    c->rcap = c->rlen = c->rpos = 0;
}

/* ---- close ------------------------------------------------------------------------------ */

static void reap_worker(sl__worker *w)
{
    w->reap_queued = false;
    while (w->grave) {
        sl__conn *c = w->grave;
        w->grave = c->next;
        free(c);
    }
    maybe_trim(w);
}

static void reap(sl__reactor *r, sl__task *t)
{
    (void)r;
    reap_worker((sl__worker *)(void *)((char *)t - offsetof(sl__worker, reap_task)));
}

void sl__conn_close(sl__conn *c)
{
    if (c->dead) return;
    if (c->inflight) {
        /* A pooled handler still points at this connection: cancel it; its done task
         * completes the close. */
        sl__preq_peer_gone(c);
        return;
    }
    sl__worker *w = c->w;
    c->dead = true;
    sl__io_stop(w->r, &c->io);
    close(c->io.fd);
    sl__timer_stop(&c->timer);
    c->prev->next = c->next;
    c->next->prev = c->prev;
    rbuf_release(c);
    buf_put(w, c->wbuf, c->wcap);
    c->wbuf = NULL;
    ext_release(c);
    if (c->ip_counted) sl__server_ip_release(w->srv, &c->ipk);
    c->ip_counted = false;
    free(c->chunk);
    c->chunk = NULL;
    c->next = w->grave;
    w->grave = c;
    if (!w->reap_queued) {
        w->reap_queued = true;
        sl__reactor_defer(w->r, &w->reap_task);
    }
    atomic_fetch_sub(&w->srv->nopen, 1);
    sl__server_conn_closed(w->srv);
}

/* ---- timers ----------------------------------------------------------------------------- */

static void on_header_timeout(sl__reactor *r, sl__timer *t)
{
    sl__conn *c = CONN_OF_TIMER(t);
    (void)r;
    if (c->rlen > c->rpos || c->head_len) {
        queue_error(c, 408);
        drive(c, false);
    } else {
        sl__conn_close(c);
    }
}

static void on_body_timeout(sl__reactor *r, sl__timer *t)
{
    sl__conn *c = CONN_OF_TIMER(t);
    (void)r;
    queue_error(c, 408);
    drive(c, false);
}

static void on_close_timeout(sl__reactor *r, sl__timer *t)
{
    (void)r;
    sl__conn_close(CONN_OF_TIMER(t));
}

static bool body_pending(const sl__conn *c)
{
    return c->head_len != 0;
}

/* Arms the one timeout that matters in the current state. Timers that measure a total (header,
 * idle, linger) keep running while they stay the relevant one; the others (body, write) measure
 * inactivity and restart on progress. */
static void arm_timer(sl__conn *c, bool progress)
{
    sl__worker *w = c->w;
    sl__tq *q;
    bool restart = false;
    if (c->want_out) {
        q = &w->tq_write;
        restart = progress;
    } else if (c->lingering) {
        q = &w->tq_linger;
    } else if (body_pending(c)) {
        q = &w->tq_body;
        /* Reads restart the body timer only while the body keeps up min_body_rate over the
         * window: a trickle of a byte per interval cannot hold the connection forever. */
        uint32_t got = c->rlen - c->rpos - c->head_len;
        int64_t rate = w->srv->o.min_body_rate, win = w->srv->o.read_body_timeout_ns;
        uint64_t need = rate > 0 && win > 0 ? (uint64_t)((double)rate * (double)win / 1e9) : 0;
        restart = progress && got >= c->body_mark + need;
        if (restart || c->timer.q != q) c->body_mark = got;
    } else if (c->rlen > c->rpos || c->fresh) {
        q = &w->tq_header;
    } else {
        q = &w->tq_idle;
    }
    if (c->timer.q != q || restart || !sl__timer_active(&c->timer)) {
        sl__timer_start(w->r, q, &c->timer);
        c->timer.q = q; /* remember the state even when q is disabled (not queued) */
    }
}

/* ---- requests --------------------------------------------------------------------------- */

static void dispatch(sl__conn *c, const char *body, size_t blen)
{
    sl__worker *w = c->w;
    sl_server *srv = w->srv;
    const sl_http_req_head *h = &w->head;
    sl__stat_inc(&w->st.requests);
    sl_req req = {.h = h,
                  .body = blen ? body : NULL,
                  .body_len = blen,
                  .c = c,
                  .nqp = -1,
                  .start_ns = w->r->now};
    const char *q = memchr(h->path, '?', h->path_len);
    req.path_len = q ? (size_t)(q - h->path) : h->path_len;
    if (q) {
        req.query = q + 1;
        req.query_len = h->path_len - req.path_len - 1;
    }
    sl__req_terminate(h);
    sl__resp_reset(&w->resp);
    if (c->early) { /* routed and through its before hooks at head time */
        sl__mux_dispatch_early(c, &req);
        return;
    }
    if (srv->mux) {
        if (!sl__mux_dispatch(c, &req)) return; /* pooled, or answered already */
    } else {
        srv->o.handler(&req, &w->resp, srv->o.handler_arg);
    }
    sl__conn_answer(c, &req, &w->resp, sl__http_is_head(h));
}

static bool output_full(const sl__conn *c)
{
    const sl_server *srv = c->w->srv;
    return c->pending >= srv->o.max_pipeline || unsent(c) >= srv->o.max_output_bytes || c->ext;
}

/* Invites the body with 100 Continue when the client asked for it and it is not all here. */
static void invite_body(sl__conn *c, bool expect_continue)
{
    uint32_t have = c->rlen - c->rpos - c->head_len;
    if (expect_continue && (c->body_len < 0 || (uint64_t)c->body_len > have)) queue_continue(c);
}

/* Starts the current request's body after its head was parsed into w->head. Returns false
 * when processing stops here: the connection is closing, or a task runs the request's before
 * hooks first (the request is in flight). */
static bool body_begin(sl__conn *c)
{
    sl__worker *w = c->w;
    c->body_have = 0;
    if (w->head.chunked) {
        c->chunk = malloc(sizeof *c->chunk);
        if (!c->chunk) {
            queue_error(c, 503);
            return false;
        }
        sl_http_chunked_init(c->chunk, &w->srv->lim);
        c->body_len = -1;
    } else {
        c->body_len = w->head.content_length > 0 ? w->head.content_length : 0;
    }
    if (w->srv->mux && (c->body_len != 0)) {
        /* Routed once the head is here, so a route's smaller limit answers 413 before the
         * body is read. */
        uint64_t lim = sl__mux_body_limit(w, &w->head);
        if (lim && c->chunk && lim < c->chunk->max_body) c->chunk->max_body = lim;
        if (lim && c->body_len > 0 && (uint64_t)c->body_len > lim) {
            queue_error(c, 413);
            return false;
        }
        /* Route, authenticate, rate-limit before the body is read (and before 100 Continue
         * invites it). False: answered, or a task runs the hooks (its request is in flight;
         * sl__conn_resume_body goes on with the body if they let it through). */
        if (!sl__mux_early(c)) return false;
    }
    invite_body(c, w->head.expect_continue);
    return true;
}

/* Handles every complete request in rbuf, in order, until the output bounds are reached.
 * Returns true when it stopped on those bounds (more may be buffered). */
static bool process(sl__conn *c)
{
    sl__worker *w = c->w;
    sl_server *srv = w->srv;
    bool head_ok = false; /* w->head describes this connection's current request */
    for (;;) {
        if (c->closing || c->inflight) return false;
        if (output_full(c)) return true;
        if (c->head_len == 0) {
            if (c->rlen == c->rpos) break;
            int n = sl_http_parse_head(c->rbuf + c->rpos, c->rlen - c->rpos, &w->head, w->hdrs,
                                       &srv->lim);
            if (n == SL_EAGAIN) break;
            if (n < 0) {
                queue_error(c, w->head.status ? w->head.status : 400);
                break;
            }
            c->head_len = (uint32_t)n;
            head_ok = true;
            if (!body_begin(c)) break;
        }
        uint32_t bstart = c->rpos + c->head_len;
        uint32_t next;
        if (c->body_len >= 0) {
            if ((uint64_t)(c->rlen - bstart) < (uint64_t)c->body_len) break;
            c->body_have = (uint64_t)c->body_len;
            next = bstart + (uint32_t)c->body_len;
        } else {
            uint32_t in = bstart + (uint32_t)c->body_have;
            size_t len = c->rlen - in, used = 0;
            int rc = sl_http_chunked_decode(c->chunk, c->rbuf + in, &len, &used);
            c->body_have += len;
            if (rc == SL_EAGAIN) {
                c->rlen = bstart + (uint32_t)c->body_have;
                break;
            }
            if (rc < 0) {
                queue_error(c, c->chunk->status ? c->chunk->status : 400);
                break;
            }
            next = in + (uint32_t)used;
        }
        if (!head_ok &&
            sl_http_parse_head(c->rbuf + c->rpos, c->head_len, &w->head, w->hdrs, &srv->lim) <= 0) {
            queue_error(c, 500); /* cannot happen: the same bytes parsed before */
            break;
        }
        sl__timer_stop(&c->timer); /* the next request's timeouts start afresh */
        dispatch(c, c->rbuf + bstart, (size_t)c->body_have);
        free(c->chunk);
        c->chunk = NULL;
        c->rpos = next;
        c->head_len = 0;
        c->body_have = 0;
        c->fresh = false;
        head_ok = false;
    }
    return false;
}

/* ---- reading ---------------------------------------------------------------------------- */

static uint32_t rbuf_max(const sl_server *srv)
{
    return srv->lim.max_header_bytes + (uint32_t)srv->lim.max_body + SL_HTTP_CHUNK_LINE_MAX +
           SL__BUF_SIZE;
}

/* Reads once. Returns 1 when bytes arrived, 0 on EOF or nothing to read, < 0 on error. */
static int read_some(sl__conn *c)
{
    sl__worker *w = c->w;
    if (!c->rbuf) {
        c->rbuf = buf_get(w);
        if (!c->rbuf) return SL_ENOMEM;
        c->rcap = SL__BUF_SIZE;
        c->rlen = c->rpos = 0;
    }
    if (c->rpos > 0 && c->rlen == c->rcap) {
        memmove(c->rbuf, c->rbuf + c->rpos, c->rlen - c->rpos);
        c->rlen -= c->rpos;
        c->rpos = 0;
    }
    if (c->rlen == c->rcap) {
        uint32_t max = rbuf_max(w->srv);
        if (c->rcap >= max) return SL_EMSGSIZE; /* the parser's limits make this unreachable */
        uint64_t cap = (uint64_t)c->rcap * 2;
        if (cap > max) cap = max;
        /* Every byte past the first buffer is charged to the server's body-memory budget:
         * many connections each holding a large body cannot take the process's memory. */
        int64_t more = (int64_t)cap - SL__BUF_SIZE - (int64_t)c->rbuf_charged;
        if (!sl__server_body_charge(w->srv, more)) return SL_ENOSPC;
        char *nb = malloc(cap);
        if (!nb) {
            sl__server_body_charge(w->srv, -more);
            return SL_ENOMEM;
        }
        memcpy(nb, c->rbuf, c->rlen);
        buf_put(w, c->rbuf, c->rcap);
        c->rbuf = nb;
        c->rcap = (uint32_t)cap;
        c->rbuf_charged += (uint32_t)more;
    }
    for (;;) {
        ssize_t n = read(c->io.fd, c->rbuf + c->rlen, c->rcap - c->rlen);
        if (n > 0) {
            c->rlen += (uint32_t)n;
            return 1;
        }
        if (n == 0) {
            c->peer_eof = true;
            return 0;
        }
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
        return -errno;
    }
}

static void linger_read(sl__conn *c)
{
    char sink[4096];
    for (int i = 0; i < 4; i++) {
        ssize_t n = read(c->io.fd, sink, sizeof sink);
        if (n > 0) continue;
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        sl__conn_close(c); /* EOF or error: done */
        return;
    }
}

static void start_linger(sl__conn *c)
{
    sl__worker *w = c->w;
    if (c->peer_eof || shutdown(c->io.fd, SHUT_WR) < 0) {
        sl__conn_close(c);
        return;
    }
    c->lingering = true;
    rbuf_release(c);
    if (sl__io_set(w->r, &c->io, EPOLLIN) < 0) {
        sl__conn_close(c);
        return;
    }
    arm_timer(c, false);
}

/* A pooled or task request is running: no reading, no parsing, and rbuf stays put (the
 * handler reads views into it); watch only for the client going away and for room to write.
 * The connection's timer runs the route's timeout meanwhile; the request's own timer runs the
 * write timeout while output is stalled (a streaming handler, or earlier pipelined responses
 * unsent). The EPOLLIN interest the connection had is kept (no epoll_ctl on the request path):
 * a client that goes away makes the socket readable (EOF), and only a client that sends more
 * meanwhile (pipelining) costs the switch to EPOLLRDHUP (on_io), so a readable socket does not
 * spin the loop. */
static void drive_inflight(sl__conn *c, bool progress)
{
    sl__preq_stream_progress(c);
    if (c->peer_gone) return;
    sl__preq_write_watch(c, progress);
    uint32_t ev = (c->io.events & EPOLLIN ? EPOLLIN : EPOLLRDHUP) | (c->want_out ? EPOLLOUT : 0);
    if (sl__io_set(c->w->r, &c->io, ev) < 0) sl__conn_close(c);
}

void sl__conn_drive(sl__conn *c, bool progress)
{
    drive(c, progress);
}

void sl__conn_resume_body(sl__conn *c, bool expect_continue)
{
    invite_body(c, expect_continue);
    drive(c, false);
}

/* After reading or writing: handle requests, write, then set interest and timer. */
static void drive(sl__conn *c, bool progress)
{
    sl__worker *w = c->w;
    bool out = false;
    for (;;) {
        bool more = process(c);
        if (c->peer_eof) c->closing = true; /* a partial request can never complete */
        if (sl__conn_flush(c, &out) < 0) {
            sl__conn_close(c);
            return;
        }
        if (c->inflight) {
            drive_inflight(c, out);
            return;
        }
        /* Stopped on the output bounds and the output drained at once: go on with the
         * requests still buffered rather than wait for a read event that may never come. */
        if (!more || c->want_out) break;
    }
    if (!c->want_out) {
        if (c->closing) {
            start_linger(c);
            return;
        }
        if (c->wbuf) {
            buf_put(w, c->wbuf, c->wcap);
            c->wbuf = NULL;
            c->wcap = 0;
        }
        if (c->rbuf && c->rpos == c->rlen) {
            /* Nothing buffered: give the buffer back so idle connections stay small. */
            rbuf_release(c);
            if (atomic_load_explicit(&w->paused, memory_order_relaxed) && !c->fresh)
                sl__server_idle_avail(w);
        } else if (c->rpos > 0 && c->head_len == 0) {
            memmove(c->rbuf, c->rbuf + c->rpos, c->rlen - c->rpos);
            c->rlen -= c->rpos;
            c->rpos = 0;
        }
    }
    uint32_t ev = 0;
    if (!c->closing && !output_full(c)) ev |= EPOLLIN;
    if (c->want_out) ev |= EPOLLOUT;
    if (sl__io_set(w->r, &c->io, ev) < 0) {
        sl__conn_close(c);
        return;
    }
    arm_timer(c, progress || out);
}

static void on_io(sl__reactor *r, sl__io *io, uint32_t events)
{
    sl__conn *c = CONN_OF_IO(io);
    (void)r;
    if (events & EPOLLERR) {
        sl__conn_close(c);
        return;
    }
    if (c->lingering) {
        linger_read(c);
        return;
    }
    if (c->inflight) {
        if (events & (EPOLLRDHUP | EPOLLHUP)) {
            sl__preq_peer_gone(c);
            return;
        }
        if (events & EPOLLIN) {
            /* Readable under a running request (drive_inflight): EOF is the client gone;
             * bytes are its next request, read once this one is answered. */
            char b;
            ssize_t n = recv(c->io.fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
            if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
                sl__preq_peer_gone(c);
                return;
            }
            uint32_t ev = EPOLLRDHUP | (c->want_out ? EPOLLOUT : 0);
            if (sl__io_set(c->w->r, &c->io, ev) < 0) {
                sl__conn_close(c);
                return;
            }
        }
        if (events & EPOLLOUT) drive(c, false);
        return;
    }
    bool progress = false;
    /* A closing connection reads no more requests; a hang-up then shows as a failed write. */
    if ((events & (EPOLLIN | EPOLLHUP)) && !c->closing) {
        if (c->rlen == c->rpos && !c->head_len && c->timer.q == &c->w->tq_idle)
            sl__timer_stop(&c->timer); /* a new request: its header timeout starts now */
        int rc = read_some(c);
        if (rc == SL_ENOSPC) {
            /* Over the body-memory budget: a server-side condition, so 503 (a per-client
             * limit would be 429), and the connection closes without reading the rest. */
            queue_error(c, 503);
            drive(c, false);
            return;
        }
        if (rc < 0) {
            sl__conn_close(c);
            return;
        }
        progress = rc > 0;
    }
    drive(c, progress);
}

/* ---- connections and workers ------------------------------------------------------------ */

int sl__conn_open(sl__worker *w, int fd, const struct sockaddr *sa, socklen_t salen,
                  const sl_ipkey *ipk)
{
    sl__conn *c = calloc(1, sizeof *c);
    if (!c) return SL_ENOMEM;
    c->w = w;
    c->fresh = true;
    if (ipk) c->ipk = *ipk;
    memcpy(&c->peer, sa, salen < sizeof c->peer ? salen : sizeof c->peer);
    int rc = sl__io_start(w->r, &c->io, fd, EPOLLIN, on_io);
    if (rc < 0) {
        free(c);
        return rc;
    }
    c->ip_counted = ipk != NULL; /* only now: a failed open is released by the caller */
    c->next = w->conns.next;
    c->prev = &w->conns;
    w->conns.next->prev = c;
    w->conns.next = c;
    arm_timer(c, false);
    return 0;
}

static bool conn_idle(const sl__conn *c)
{
    return c->rlen == c->rpos && !c->head_len && !unsent(c) && !c->lingering && !c->inflight &&
           !c->dead;
}

int sl__conn_close_idle(sl__worker *w, int max)
{
    int n = 0;
    /* New connections go to the head of the list: walk from the tail, the oldest. Only
     * connections that finished a request count as keep-alive idle; a fresh one is a client
     * that has not spoken yet (the header timeout governs it). */
    sl__conn *c = w->conns.prev;
    while (c != &w->conns && (n < max || max == 0)) {
        sl__conn *prev = c->prev;
        if (conn_idle(c) && !c->fresh) {
            if (max == 0) return 1;
            sl__conn_close(c);
            n++;
        }
        c = prev;
    }
    return n;
}

void sl__conn_drain_all(sl__worker *w)
{
    w->draining = true;
    sl__conn *c = w->conns.next;
    while (c != &w->conns) {
        sl__conn *next = c->next;
        if (conn_idle(c)) sl__conn_close(c);
        c = next;
    }
}

void sl__conn_close_all(sl__worker *w)
{
    /* No pooled request can be in flight here: the server shuts the handler pool down before
     * stopping reactors, and every done task runs before the stop task (handler.c). Walk with
     * a saved next pointer anyway, so a connection that refuses to close cannot spin us. */
    sl__conn *c = w->conns.next;
    while (c != &w->conns) {
        sl__conn *next = c->next;
        sl__conn_close(c);
        c = next;
    }
}

void sl__conn_worker_init(sl__worker *w)
{
    w->conns.next = w->conns.prev = &w->conns;
    w->reap_task.fn = reap;
}

void sl__conn_worker_attach(sl__worker *w)
{
    sl_server *srv = w->srv;
    sl__tq_init(w->r, &w->tq_header, srv->o.read_header_timeout_ns, on_header_timeout);
    sl__tq_init(w->r, &w->tq_body, srv->o.read_body_timeout_ns, on_body_timeout);
    sl__tq_init(w->r, &w->tq_write, srv->o.write_timeout_ns, on_close_timeout);
    sl__tq_init(w->r, &w->tq_write_inflight, srv->o.write_timeout_ns, sl__preq_write_timeout);
    sl__tq_init(w->r, &w->tq_idle, srv->o.idle_timeout_ns, on_close_timeout);
    sl__tq_init(w->r, &w->tq_linger, SL__LINGER_NS, on_close_timeout);
    for (int i = 0; srv->mux && i < srv->mux->ntq; i++)
        sl__tq_init(w->r, &w->tq_route[i], srv->mux->tq_dur[i], sl__preq_timeout);
}

void sl__conn_worker_detach(sl__worker *w)
{
    sl__tq_remove(w->r, &w->tq_header);
    sl__tq_remove(w->r, &w->tq_body);
    sl__tq_remove(w->r, &w->tq_write);
    sl__tq_remove(w->r, &w->tq_write_inflight);
    sl__tq_remove(w->r, &w->tq_idle);
    sl__tq_remove(w->r, &w->tq_linger);
    for (int i = 0; w->srv->mux && i < w->srv->mux->ntq; i++)
        sl__tq_remove(w->r, &w->tq_route[i]);
}

void sl__conn_worker_destroy(sl__worker *w)
{
    /* Every connection was closed on the loop (the stop step), which also ran the reap. */
    reap_worker(w);
    while (w->pool) {
        void *b = w->pool;
        memcpy(&w->pool, b, sizeof(void *));
        free(b);
    }
    w->npool = 0;
    sl__resp_release(&w->resp);
}
