/* Private to src/http: the server's internal types, shared by server.c (lifecycle, accept,
 * limits) and conn.c (the per-connection HTTP/1.1 state machine and the handler API).
 *
 * Ownership: a sl_server owns its workers; a worker (one reactor thread) owns its listening
 * sockets' watchers, its connections, their buffers and its scratch space. Only the fields
 * marked atomic are read by other threads. */
#ifndef SLUICE_HTTP_INT_H
#define SLUICE_HTTP_INT_H

#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>

#include "sluice/server.h"
#include "http/parser.h"
#include "http/reactor.h"

typedef struct sl__worker sl__worker;
typedef struct sl__conn sl__conn;

/* Size of a pooled buffer (read or write). Requests and responses that fit use no other
 * allocation; larger ones grow a private buffer that is freed, not pooled. */
#define SL__BUF_SIZE 4096u
/* Free buffers a worker keeps for reuse; the rest go back to malloc. */
#define SL__POOL_MAX 64
/* Bodies larger than this are sent from their own memory (a second iovec) instead of being
 * copied into the output buffer. */
#define SL__COPY_MAX 16384u
/* How long a closing connection keeps draining input after its last response (so the peer
 * reads the response instead of a reset caused by unread data). */
#define SL__LINGER_NS SL_SEC(2)

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
};

struct sl_req {
    const sl_http_req_head *h;
    const char *body;
    size_t body_len;
    const char *query;
    size_t query_len, path_len;
    sl__conn *c;
    char addr[64]; /* "" until sl_req_remote_addr formats it */
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
    bool want_out;            /* output is blocked on EPOLLOUT */
    uint16_t pending;         /* responses in wbuf since it was last empty */
    struct sockaddr_in6 peer; /* or a sockaddr_in in the same storage */
};

typedef struct sl__lis {
    sl__io io;
    sl__worker *w;
} sl__lis;

typedef struct sl__worker_stats {
    _Atomic uint64_t accepted, requests, rejected, pauses; /* written by the owner only */
} sl__worker_stats;

struct sl__worker {
    sl__reactor r;
    sl_server *srv;
    pthread_t thread;
    bool thread_started;
    sl__lis *lis; /* one per server address; lis[i].io.fd is this worker's socket */
    int nlis;
    bool accepting;             /* listeners registered for EPOLLIN (loop thread) */
    bool draining;              /* shutdown began (loop thread) */
    _Atomic bool paused;        /* stopped accepting at max_connections */
    _Atomic bool resume_posted; /* resume_task is queued */
    sl__task resume_task, drain_task, stop_task, reap_task;
    bool reap_queued;
    sl__tq tq_header, tq_body, tq_write, tq_idle, tq_linger, tq_backoff;
    sl__timer backoff;
    sl__conn conns;  /* sentinel of the open connections */
    sl__conn *grave; /* closed, freed by reap_task */
    void *pool;      /* free SL__BUF_SIZE buffers, linked through their first bytes */
    int npool;
    char date[80]; /* IMF-fixdate, 29 chars (room for anything gmtime_r yields) */
    int64_t date_sec;
    sl_http_header *hdrs; /* max_headers slots for the parser */
    sl_http_req_head head;
    struct sl_resp resp;
    sl__worker_stats st;
};

struct sl_server {
    sl_server_opts o; /* defaults resolved */
    sl_http_limits lim;
    int nworkers;
    sl__worker *workers;
    int *lfds; /* nlis * nworkers listening sockets, [addr * nworkers + worker] */
    int nlis;
    int port;  /* first bound port, or 0 */
    int state; /* SRV_*: controlling thread */
    _Atomic int64_t nconns;
    _Atomic int npaused;
    _Atomic bool draining;
    pthread_mutex_t mu; /* guards fired; pairs with cv for shutdown's wait */
    pthread_cond_t cv;
    bool fired;  /* guarded by mu */
    int drained; /* workers that ran their drain task; guarded by mu */
};

/* conn.c */
int sl__conn_open(sl__worker *w, int fd, const struct sockaddr *sa, socklen_t salen);
void sl__conn_close(sl__conn *c);
/* Shutdown's first step on this worker: closes idle connections, marks the rest to close
 * after their current request. */
void sl__conn_drain_all(sl__worker *w);
void sl__conn_close_all(sl__worker *w);
void sl__conn_worker_init(sl__worker *w);
void sl__conn_worker_destroy(sl__worker *w);

/* server.c: a connection closed (the slot it held is free). */
void sl__server_conn_closed(sl_server *srv);

#endif
