/* sl_client: outbound HTTP bound to an sl_ctx — Go's http.Client, on libcurl.
 *
 * A client owns an event loop that drives libcurl's multi-socket interface (curl's sockets on
 * the loop's epoll, curl's timer on a timerfd): no thread per request and no curl thread. A
 * caller hands its request to the loop and waits for the answer (a task parks, a plain thread
 * blocks); when the caller's ctx fires first the transfer is removed from the loop at once
 * (its connection closed) and the call returns the ctx's error.
 *
 * Connections are kept alive and reused between requests to the same host, within the limits
 * in sl_client_opts. Redirects are not followed unless asked for. TLS peers are verified
 * against the system's CA bundle. See docs/client.md (and its Go -> sluice map).
 * Threads: any — one client serves every thread of the process. */
#ifndef SLUICE_CLIENT_H
#define SLUICE_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sluice/common.h"
#include "sluice/ctx.h"

SL_BEGIN_DECLS

typedef struct sl_client sl_client;

/* Client settings (Go's http.Transport + http.Client.Timeout). Zero values take the default. */
typedef struct sl_client_opts {
    int max_conns_per_host;      /* open connections to one host:port, in use or idle (Go's
                                    MaxConnsPerHost); requests past it wait for a free one.
                                    0 = no limit */
    int max_idle_conns;          /* idle connections kept for reuse, all hosts together (curl
                                    keeps one cache; Go's MaxIdleConns). 0 = 100 */
    int64_t connect_timeout_ns;  /* TCP + TLS connect; 0 = 30 s */
    int64_t timeout_ns;          /* whole request, as Go's Client.Timeout; 0 = none (the ctx's
                                    deadline still applies) */
    uint64_t max_response_bytes; /* body bytes kept in sl_client_resp; more -> SL_ETOOLARGE.
                                    0 = 64 MiB. Not applied to a streamed body (on_body) */
    int max_redirects;           /* 0 = do not follow redirects (the 3xx is the answer) */
    const char *ca_file;         /* PEM bundle to verify TLS peers; NULL = the system's */
    const char *user_agent;      /* NULL = "sluice" */
} sl_client_opts;

/* One request header. */
typedef struct sl_client_header {
    const char *name;
    const char *value;
} sl_client_header;

/* Receives the response body in pieces instead of buffering it. Return 0 to go on, or a
 * negative SL_E* code to abort the transfer: sl_client_do then returns that code. Runs on the
 * client's loop thread, so it must not block (hand the bytes to a channel with try_send, or
 * copy them). */
typedef int (*sl_client_body_fn)(const void *data, size_t len, void *arg);

/* A request (Go's http.Request). Everything is borrowed for the duration of sl_client_do. */
typedef struct sl_client_req {
    const char *method;              /* NULL = "GET" ("POST" when body is set) */
    const char *url;                 /* http:// or https:// */
    const sl_client_header *headers; /* nheaders entries, sent in order */
    size_t nheaders;
    const void *body; /* request body (body_len bytes, Content-Length set); NULL = none */
    size_t body_len;
    sl_client_body_fn on_body; /* stream the response body here instead of resp->body */
    void *on_body_arg;
    int64_t timeout_ns; /* this request's whole-request timeout; 0 = the client's */
} sl_client_req;

#define SL_CLIENT_ERRMSG_MAX 256

/* A response (Go's http.Response), in caller storage: zero it (or not: sl_client_do fills every
 * field), pass it to sl_client_do, release it with sl_client_resp_destroy. */
typedef struct sl_client_resp {
    int status;    /* HTTP status; 0 if no response arrived */
    char *headers; /* "Name: value\r\n" lines of the final response */
    size_t headers_len;
    char *body; /* NUL-terminated (not counted in body_len); NULL when
                   streamed or empty */
    size_t body_len;
    uint32_t new_conns;                /* connections this request opened (0 = reused) */
    char errmsg[SL_CLIENT_ERRMSG_MAX]; /* why it failed (curl's message); "" on success */
} sl_client_resp;

/* Creates a client and starts its loop thread. opts may be NULL (defaults). Returns 0 and
 * *out, or SL_EINVAL (negative limits or timeouts), SL_ENOMEM, SL_EAGAIN (no thread, no fds),
 * SL_EIO (libcurl could not be initialised); *out untouched on failure. Threads: any. */
SL_API int sl_client_new(const sl_client_opts *opts, sl_client **out);

/* Stops the loop, closes every kept connection and joins the thread. No sl_client_do may be in
 * flight (as with any object, free it after its last use). NULL is a no-op. Blocks briefly. */
SL_API void sl_client_free(sl_client *c);

/* Sends req and waits for the whole response (or, with req->on_body, until the body has been
 * streamed). Returns 0 when a response arrived — whatever its status: a 500 is a response —
 * with resp filled; or a negative code with resp->errmsg saying why:
 *   SL_EINVAL       bad argument or malformed / unsupported URL
 *   SL_EDNS         the host name could not be resolved
 *   SL_ECONNREFUSED nobody listens there (or the connection could not be made)
 *   SL_ETIMEDOUT    the ctx's deadline, the request timeout or the connect timeout passed
 *   SL_ECANCELED    the ctx was cancelled (or a cause given to sl_ctx_cancel_with)
 *   SL_ETLS         TLS handshake or peer verification failed
 *   SL_ETOOLARGE    the body exceeded max_response_bytes (resp->body is then NULL)
 *   SL_ECONNRESET   the server closed or reset the connection before answering in full
 *   SL_EPROTO       the server's answer was not valid HTTP
 *   SL_EDEADLK      called from this client's own loop (an on_body callback)
 *   SL_ENOMEM, SL_EIO, or what req->on_body returned.
 * On every failure resp holds no memory (destroying it is still fine). When the ctx fires the
 * transfer stops and its connection is closed before this returns. Blocks: the calling task
 * parks or the calling thread blocks until the answer or the ctx. Threads: any. */
SL_API int sl_client_do(sl_client *c, const sl_client_req *req, sl_client_resp *resp, sl_ctx *ctx);

/* GET url: sl_client_do with a request that has only a URL. */
SL_API int sl_client_get(sl_client *c, const char *url, sl_client_resp *resp, sl_ctx *ctx);

/* Returns the value of the first response header called name (case-insensitive) and its
 * length in *len (may be NULL), or NULL if absent. A view into resp->headers, not
 * NUL-terminated. Threads: the owner of resp. */
SL_API const char *sl_client_resp_header(const sl_client_resp *resp, const char *name, size_t *len);

/* Frees the headers and body of resp and zeroes it. Safe twice and on a zeroed resp. */
SL_API void sl_client_resp_destroy(sl_client_resp *resp);

/* Counters since the client was created (summed when read). */
typedef struct sl_client_stats {
    uint64_t requests;     /* sl_client_do calls that reached the loop */
    uint64_t failed;       /* of those, the ones that returned an error */
    uint64_t conns_opened; /* TCP connections opened (each reuse saves one) */
} sl_client_stats;

/* Fills st. Threads: any. Does not block. */
SL_API void sl_client_stats_get(const sl_client *c, sl_client_stats *st);

SL_END_DECLS

#endif /* SLUICE_CLIENT_H */
