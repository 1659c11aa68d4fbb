/* Private to src/http: the server's internal types, shared by server.c (lifecycle, accept,
 * limits), conn.c (the per-connection HTTP/1.1 state machine), request.c (the request and
 * response API) and handler.c (the mux side of a request).
 *
 * Ownership: a sl_server owns its workers; a worker (the server's part of one task-runtime
 * loop, run by that loop's thread) owns its listening sockets' watchers, its connections, their
 * buffers and its scratch space. Only the fields marked atomic are read by other threads. */
#ifndef SLUICE_HTTP_INT_H
#define SLUICE_HTTP_INT_H

#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <string.h>

#include "sluice/ipkey.h"
#include "sluice/mux.h"
#include "sluice/pool.h"
#include "sluice/router.h"
#include "sluice/server.h"
#include "http/parser.h"
#include "loop/reactor.h"

/* A HEAD request: its response carries the head only. */
static inline bool sl__http_is_head(const sl_http_req_head *h)
{
    return h->method_len == 4 && memcmp(h->method, "HEAD", 4) == 0;
}

#define SL__HTTP_DATE_CAP 80 /* a Date value: 29 chars, room for anything gmtime_r yields */

/* A count per client group (open addressing, linear probing, backward-shift delete), for
 * caps per client address. Guarded by mu; sized at twice the most keys it can hold. */
typedef struct sl__iptab {
    pthread_mutex_t mu;
    struct sl__ipslot {
        sl_ipkey k;
        int n; /* 0 = empty */
    } * t;
    size_t mask;
} sl__iptab;

typedef struct sl__worker sl__worker;
typedef struct sl__conn sl__conn;
typedef struct sl__preq sl__preq;
typedef struct sl__arena sl__arena;

/* A registered route (mux.c). Immutable once the mux is frozen. */
typedef struct sl__route {
    sl_handler_fn fn;
    void *arg;
    sl_route_mode mode;
    int64_t timeout_ns; /* resolved: <= 0 none */
    uint64_t max_body;  /* 0 = the server's */
    char *name;         /* the route's name (the pattern by default); owned */
    sl_middleware *mw;  /* route middleware, after the mux's (sl_route_opts); owned copy */
    size_t nmw;
    int tq; /* index of this route's timeout queue in each worker, or -1 */
} sl__route;

struct sl_mux {
    sl_mux_opts o;
    sl_router *router;
    sl__route **routes;
    size_t nroutes, rcap;
    sl_middleware *mw;
    size_t nmw, mwcap;
    int ntq; /* distinct pooled-route timeouts: each worker has one timer queue per value */
    int64_t *tq_dur;
    _Atomic bool busy;   /* used by a live server: frozen */
    size_t ntask_routes; /* SL_ROUTE_TASK routes */
};

/* Number of middleware the request got through (for after hooks) lives in sl_req. */

/* Size of a pooled buffer (read or write). Requests and responses that fit use no other
 * allocation; larger ones grow a private buffer that is freed, not pooled. */
#define SL__BUF_SIZE 4096u
/* Free buffers a worker keeps for reuse; the rest go back to malloc. */
#define SL__POOL_MAX 64
/* Bytes of grown buffers a worker frees before it returns free memory to the kernel. */
#define SL__TRIM_BYTES (16u << 20)
/* Bodies larger than this are sent from their own memory (a second iovec) instead of being
 * copied into the output buffer. */
#define SL__COPY_MAX 16384u
/* How long a closing connection keeps draining input after its last response (so the peer
 * reads the response instead of a reset caused by unread data). */
#define SL__LINGER_NS SL_SEC(2)

/* Appends s[0..n) at p and returns the end: how conn.c writes a response head and request.c a
 * header line. SL__PUTS appends a string literal. */
static inline char *sl__put(char *p, const char *s, size_t n)
{
    if (n == 0) return p; /* s may be NULL (no headers yet): memcpy forbids that */
    memcpy(p, s, n);
    return p + n;
}

#define SL__PUTS(p, lit) sl__put((p), (lit), sizeof(lit) - 1)

/* The response under construction (one per worker: handlers run one at a time on a reactor). */
struct sl_resp {
    int status;
    bool close; /* the handler sent Connection: close */
    char *hdrs; /* "Name: value\r\n" lines */
    size_t hlen, hcap;
    char ctype[128]; /* Content-Type, NUL-terminated; "" = none */
    const char *body;
    size_t body_len;
    char *copy; /* the worker's body copy buffer (body may point into it) */
    size_t copy_cap;
    bool touched;      /* status, body or stream set by the handler (sl_resp_written) */
    uint64_t streamed; /* body bytes sent by sl_resp_stream_write */
    sl__preq *p;       /* the pooled request this response belongs to, else NULL */
};

typedef struct sl__qpair {
    const char *name, *value; /* decoded, in the arena */
    size_t name_len, value_len;
} sl__qpair;

struct sl_req {
    const sl_http_req_head *h;
    const char *body;
    size_t body_len;
    const char *query;
    size_t query_len, path_len;
    sl__conn *c;
    const sl__route *rt;     /* matched route, or NULL */
    const sl_route_match *m; /* router result (mux only), else NULL */
    sl_ctx *ctx;             /* created lazily for inline requests; owned */
    int64_t start_ns;        /* sl_mono_ns when the head was complete */
    sl__arena *arena;        /* blocks past arena0, lazily; freed at the end of the request */
    uint32_t arena0_used;    /* bytes of arena0 handed out */
    _Alignas(max_align_t) unsigned char arena0[256]; /* first allocations: no malloc */
    sl__qpair *qp;                                   /* decoded query, lazily */
    int nqp;                                         /* -1 until decoded */
    uint32_t nmw;                                    /* middleware whose before hook ran */
    bool hooks_deferred; /* a task route: its before hooks run in its task, not yet run */
    bool may_wait;       /* runs off the reactor now (sl_req_may_wait) */
    uint32_t nvals;
    struct {
        const void *key;
        void *value;
    } vals[SL_REQ_MAX_VALUES];
    char addr[64]; /* "" until sl_req_remote_addr formats it */
};

/* A request handed to the handler pool. Created and freed by the owning reactor; between
 * sl_pool_try_submit and the done task, req/resp belong to the handler thread, except `answered`
 * and the timer (loop thread). Stream chunks and the done task are posted to the reactor, in
 * order (one producer). */
struct sl__preq {
    sl__task done_task;
    sl__conn *c;
    sl_req req;
    struct sl_resp resp;
    sl_http_req_head head; /* copy of the parsed head; headers follow this struct */
    sl_route_match m;      /* copy; param values rebased into the trailing storage */
    bool answered;         /* loop thread: a 503 went out at the route timeout */
    bool head_method;
    bool shed;           /* not started: it waited longer than max_queue_wait_ns */
    bool awaited;        /* pooled: its loop counts it in r->awaiting until on_done */
    bool client_counted; /* holds a slot in the server's per-client pooled table */
    bool early_hooks;    /* a task route's request with a body: its task runs the before hooks
                            now, before the body is read (handler.c: sl__mux_early) */
    int64_t queued_ns;   /* sl_mono_ns when handed to the pool */
    bool ran;            /* the handler ran (written by the handler thread before the done
                            task is posted; read by the loop thread in that task) */
    bool cacheable;      /* sized for its worker's cache of free requests (handler.c) */
    /* streaming (see handler.c): guarded by mu */
    bool streaming;         /* stream_begin was called (also read by the loop under mu) */
    size_t stream_unsent;   /* bytes in the connection's output, not yet written */
    size_t stream_posted;   /* bytes posted to the reactor, not yet in its output */
    sl_ctx_hook *hook;      /* wakes a blocked stream_write when the ctx is done */
    struct sl_task *waiter; /* a task route's task parked in stream_write, else NULL */
    const char *mw_hdrs;    /* the headers the before hooks set (a copy in the request's
                               arena), for the route-timeout 503; guarded by mu */
    size_t mw_hlen;
    sl__timer wtimer; /* loop thread: the write timeout while the request is in flight */
    /* Last, and not cleared by preq_new: they stay initialized while the struct waits in its
     * worker's cache. */
    pthread_mutex_t mu;
    pthread_cond_t cv;
};

struct sl__conn {
    sl__io io;
    sl__timer timer;       /* the one timeout currently armed (see conn.c: arm_timer) */
    sl__conn *prev, *next; /* the worker's list; the worker's graveyard once closed */
    sl__worker *w;
    char *rbuf;             /* NULL while idle */
    uint32_t rcap;          /* bytes */
    uint32_t rlen;          /* bytes received */
    uint32_t rpos;          /* start of the current request */
    uint32_t head_len;      /* 0 until the current request's head is parsed */
    uint64_t body_have;     /* body bytes received (decoded, for chunked) */
    int64_t body_len;       /* Content-Length, or -1 for chunked */
    sl_http_chunked *chunk; /* allocated while a chunked body is being read */
    char *wbuf;
    uint32_t wcap, wlen, woff; /* output bytes: [woff, wlen) unsent */
    const char *ext;           /* a large body sent from its own memory after wbuf */
    size_t ext_len, ext_off;
    bool ext_owned;           /* free(ext) once sent */
    bool closing;             /* no more requests: close once output is flushed */
    bool lingering;           /* output done, write side shut, draining input until EOF */
    bool peer_eof;            /* the peer shut its write side */
    bool dead;                /* closed; freed at the end of the loop iteration */
    bool fresh;               /* no request completed yet on this connection */
    bool peer_gone;           /* the client closed or reset while a pooled request ran */
    sl__preq *inflight;       /* the pooled request running now: no parsing or reading until
                                 it completes (keeps pipelined responses in order and rbuf
                                 still while the handler reads its views) */
    sl__preq *early;          /* the current request, routed and through its before hooks
                                 while its body arrives (handler.c: sl__mux_early) */
    bool want_out;            /* output is blocked on EPOLLOUT */
    uint16_t pending;         /* responses in wbuf since it was last empty */
    struct sockaddr_in6 peer; /* or a sockaddr_in in the same storage */
    sl_ipkey ipk;             /* the peer's group for the per-IP connection cap */
    bool ip_counted;          /* ipk holds a slot in the server's per-IP table */
    uint32_t rbuf_charged;    /* bytes of rbuf past SL__BUF_SIZE, charged to body_mem */
    uint32_t body_mark;       /* body bytes received when the body timer last (re)started */
};

typedef struct sl__lis {
    sl__io io;
    sl__worker *w;
} sl__lis;

typedef struct sl__worker_stats {
    _Atomic uint64_t accepted, requests, rejected, pauses; /* written by the owner only */
} sl__worker_stats;

struct sl__worker {
    sl__reactor *r; /* the runtime loop this worker lives on (borrowed: shared with the loop's
                       tasks and with other servers on the same runtime) */
    int loop;       /* 1-based index of that loop in the runtime (sl_go_opts.loop) */
    sl_server *srv;
    bool attached; /* its listeners and timer queues are registered on r (loop thread) */
    sl__lis *lis;  /* one per server address; lis[i].io.fd is this worker's socket */
    int nlis;
    bool accepting;             /* listeners registered for EPOLLIN (loop thread) */
    bool draining;              /* shutdown began (loop thread) */
    _Atomic bool paused;        /* stopped accepting at max_connections */
    _Atomic bool resume_posted; /* resume_task is queued */
    sl__task resume_task, drain_task, stop_task, reap_task, attach_task, fence_task;
    bool reap_queued;
    sl__tq tq_header, tq_body, tq_write, tq_idle, tq_linger, tq_backoff;
    sl__tq tq_write_inflight; /* write_timeout_ns for a connection with a request in flight */
    sl__timer backoff;
    sl__conn conns;  /* sentinel of the open connections */
    sl__conn *grave; /* closed, freed by reap_task */
    void *pool;      /* free SL__BUF_SIZE buffers, linked through their first bytes */
    int npool;
    uint64_t freed_big;           /* bytes of grown buffers freed since the last malloc_trim */
    char date[SL__HTTP_DATE_CAP]; /* IMF-fixdate (sl__http_date) */
    int64_t date_sec;
    sl_http_header *hdrs; /* max_headers slots for the parser */
    sl_http_req_head head;
    struct sl_resp resp;
    sl__worker_stats st;
    /* mux only */
    sl_route_match m;
    char *scratch; /* router scratch: 6 * max_target + 256 bytes */
    size_t scratch_len;
    sl__tq *tq_route;     /* one per distinct pooled-route timeout (mux->ntq) */
    sl__preq *preq_cache; /* free requests of the cacheable size, linked through .c */
    int npreq_cache;
};

struct sl_server {
    sl_server_opts o; /* defaults resolved */
    sl_http_limits lim;
    int nworkers;
    sl__worker *workers;
    int *lfds; /* nlis * nworkers listening sockets, [addr * nworkers + worker] */
    int nlis;
    int port;               /* first bound port, or 0 */
    int state;              /* SRV_*: controlling thread */
    sl_runtime *rt;         /* whose loops serve: borrowed, or owned when own_rt */
    bool own_rt;            /* created by sl_server_new for opts.reactors > 0 */
    bool rt_attached;       /* counted in rt's users (sl__runtime_attach) */
    int acked;              /* workers that ran the attach / stop / fence step; guarded by mu */
    int attach_rc;          /* first attach failure; guarded by mu */
    _Atomic int64_t nconns; /* slots: open connections plus accepts in progress (the bound) */
    _Atomic int64_t nopen;  /* connections open and being served (what stats report) */
    _Atomic int npaused;
    _Atomic bool draining;
    pthread_mutex_t mu; /* guards fired; pairs with cv for shutdown's wait */
    pthread_cond_t cv;
    bool fired;                  /* guarded by mu */
    int drained;                 /* workers that ran their drain task; guarded by mu */
    sl_mux *mux;                 /* borrowed; NULL for a plain handler */
    sl_pool *hpool;              /* pooled handlers (mux only) */
    sl_ctx *root;                /* parent of every request ctx; cancelled at shutdown's end */
    _Atomic int64_t body_mem;    /* bytes charged by connections' grown read buffers */
    sl__iptab conns_ip;          /* open connections per client group */
    sl__iptab pooled_ip;         /* pooled requests (queued + running) per client group */
    int pooled_cap;              /* resolved max_pooled_per_client; <= 0 none */
    int64_t queue_wait_ns;       /* resolved max_queue_wait_ns; <= 0 none */
    _Atomic int64_t run_ewma_ns; /* mean pooled handler run time (EWMA); 0 = no sample yet */
    /* task routes (handler.c): they run on rt, on the loop of their connection; the in-flight
     * bound, the number in flight (a task decrements it after posting its done task, then
     * signals cv under mu when it reaches 0), and the flag shutdown sets before it waits for 0 */
    int task_cap;
    _Atomic int ntask;
    _Atomic bool tasks_closed;
};

/* conn.c */
/* ipk: the peer's group, counted in the server's per-IP table (released at close), or NULL. */
int sl__conn_open(sl__worker *w, int fd, const struct sockaddr *sa, socklen_t salen,
                  const sl_ipkey *ipk);
void sl__conn_close(sl__conn *c);
/* Shutdown's first step on this worker: closes idle connections, marks the rest to close
 * after their current request. */
void sl__conn_drain_all(sl__worker *w);
void sl__conn_close_all(sl__worker *w);
void sl__conn_worker_init(sl__worker *w);
/* Loop thread: registers / unregisters w's connection timer queues on w->r. */
void sl__conn_worker_attach(sl__worker *w);
void sl__conn_worker_detach(sl__worker *w);
void sl__conn_worker_destroy(sl__worker *w);

/* conn.c, used by handler.c */
int sl__conn_queue_resp(sl__conn *c, sl_resp *rp, bool head_method, bool keep, bool v10);
/* The one path from a finished response to its request's end, for every handler (plain, inline,
 * task, pooled) and every answer the mux gives for a request (a before hook's stop, 503 at the
 * bounds, the route timeout): sl__conn_queue_answer queues resp as the answer to the request
 * whose head is h (keep-alive unless h, resp or a draining server says close; no memory for it:
 * the connection closes after what is queued); sl__conn_answer does that, then runs the after
 * hooks (sl__mux_finish; without a mux it only ends the request: arena, ctx). head_method: a
 * HEAD request (no body sent); a parameter because a pooled request keeps it from its first
 * parse. Only the route-timeout 503 calls sl__conn_queue_answer alone: its request is still
 * running, and its hooks run when it returns. Loop thread. */
void sl__conn_queue_answer(sl__conn *c, const sl_http_req_head *h, sl_resp *resp, bool head_method);
void sl__conn_answer(sl__conn *c, sl_req *req, sl_resp *resp, bool head_method);
void sl__conn_drive(sl__conn *c, bool progress);
/* The task that ran c->early's before hooks let it through: read its body now (with 100
 * Continue first when the client asked for it). */
void sl__conn_resume_body(sl__conn *c, bool expect_continue);
int sl__conn_flush(sl__conn *c, bool *progress);
int sl__conn_wbuf_append(sl__conn *c, const void *data, size_t len);
void sl__stat_inc(_Atomic uint64_t *v);
/* The IMF-fixdate of sec (seconds since the epoch), for the Date header: "Sun, 06 Nov 1994
 * 08:49:37 GMT" (RFC 9110 section 5.6.7), NUL-terminated. Any thread. */
void sl__http_date(char out[SL__HTTP_DATE_CAP], int64_t sec);
const char *sl__http_reason(int status);

/* handler.c: the mux side of a request. sl__mux_dispatch routes req (its head, body and
 * connection set) and runs middleware and the handler inline, or hands it to the pool. Returns
 * true when the response is in w->resp and the caller must answer with it (sl__conn_answer);
 * false when the request went to the pool or was answered already. */
bool sl__mux_dispatch(sl__conn *c, sl_req *req);
void sl__mux_finish(sl_req *req, const sl_resp *resp);
/* Loop thread, at head time of a request with a body (w->head): routes it and runs the before
 * hooks. Returns true when the body is to be read (c->early holds the request, or NULL when out
 * of memory: then the ordinary path runs after the body); false when it was answered (the
 * connection is closing), or when a task route's task runs its hooks first (c->inflight holds
 * the request; sl__conn_resume_body follows if they let it through). */
bool sl__mux_early(sl__conn *c);
/* The body is complete: runs c->early's handler with fresh's head views, body, path and query
 * (inline: queues the response; pooled: hands it to the pool). */
void sl__mux_dispatch_early(sl__conn *c, const sl_req *fresh);
/* c->early's body will never complete: the after hooks see status, with h (its head parsed
 * again from the read buffer, or NULL: no hooks run); frees it. */
void sl__mux_early_abort(sl__conn *c, int status, const sl_http_req_head *h);
/* Route lookup at head time for the body limit: returns the route's max body or 0. */
uint64_t sl__mux_body_limit(sl__worker *w, const sl_http_req_head *h);
/* Loop thread: the client of c's pooled request went away (or c must close). */
void sl__preq_peer_gone(sl__conn *c);
/* Loop thread: output made progress on a connection with a streaming pooled request. */
void sl__preq_stream_progress(sl__conn *c);
void sl__preq_timeout(sl__reactor *r, sl__timer *t);
/* Loop thread, after a write attempt on c with a request in flight: runs write_timeout_ns while
 * c's output is stalled (restarted when progress: bytes went out), stops it once drained. */
void sl__preq_write_watch(sl__conn *c, bool progress);
/* tq_write_inflight's expiry: the connection closes, the in-flight request's ctx is cancelled. */
void sl__preq_write_timeout(sl__reactor *r, sl__timer *t);
/* Frees w's cache of free requests (worker teardown). */
void sl__preq_cache_free(sl__worker *w);
/* request.c: writes a NUL after the method, the target and every header value of a parsed
 * head (over the SP, CR or whitespace that follows each in the connection's buffer), so the
 * views the handler API returns are C strings. Called once per request, before routing. */
void sl__req_terminate(const sl_http_req_head *h);
/* Frees a request's arena and releases its ctx. */
void sl__req_end(sl_req *req);
/* request.c: a response's storage: init (status 200, nothing set), reset for the next request
 * (keeps the buffers), release (frees them). */
void sl__resp_init(sl_resp *rp);
void sl__resp_reset(sl_resp *rp);
void sl__resp_release(sl_resp *rp);
/* mux.c: the key sl_mw_request_id binds the request id to (sl_req_request_id reads it). */
extern const char sl__rid_key;
int sl__mux_attach(sl_mux *mux);
void sl__mux_detach(sl_mux *mux);

/* server.c: a connection closed (the slot it held is free). */
void sl__server_conn_closed(sl_server *srv);
/* server.c: one more of k in tab, unless it has cap already (then false, nothing counted). */
bool sl__iptab_acquire(sl__iptab *tab, const sl_ipkey *k, int cap);
void sl__iptab_release(sl__iptab *tab, const sl_ipkey *k);
/* server.c: the per-IP count of a closing connection that held one. */
void sl__server_ip_release(sl_server *srv, const sl_ipkey *k);
/* request.c: the one Retry-After of src/http. Writes "Retry-After: <secs>\r\n" (secs, at
 * least 1) to line (SL__RETRY_AFTER_MAX bytes) and returns its length. */
#define SL__RETRY_AFTER_MAX 40
size_t sl__retry_after_line(char *line, int64_t secs);
/* request.c: sets Retry-After: <secs> (at least 1) on rp. Returns as sl_resp_set_header. */
int sl__resp_retry_after(sl_resp *rp, int64_t secs);
/* server.c: seconds for a Retry-After on a 503 from the handler pool: its real drain (queued
 * and running requests over the workers, at the measured run time), never less than 1. */
int64_t sl__server_retry_after_s(sl_server *srv);
/* server.c: charges delta bytes (may be negative) of read buffer to the body-memory budget.
 * Returns false, charging nothing, when a positive delta would pass it. */
bool sl__server_body_charge(sl_server *srv, int64_t delta);
/* server.c, loop thread: a connection of w became idle; a worker paused at max_connections
 * watches its listeners again (an idle connection can give its slot to a new client). */
void sl__server_idle_avail(sl__worker *w);
/* conn.c: closes up to max idle keep-alive connections of w, oldest first. Returns how many;
 * max 0 only tells whether w has one (1) or not (0). */
int sl__conn_close_idle(sl__worker *w, int max);

#endif
