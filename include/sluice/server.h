/* sl_server: an HTTP/1.1 server (Go's http.Server): reactors, keep-alive, pipelining,
 * timeouts, limits and graceful shutdown.
 *
 * The server runs N reactor threads (default: one per CPU). Each owns an epoll loop, its own
 * SO_REUSEPORT listening socket per address (the kernel spreads new connections), its
 * connections, their buffers and their timers; nothing on the request path is shared between
 * reactors except one atomic connection counter that enforces max_connections.
 *
 * Handlers run inline on the reactor thread that read the request: they must not block (no
 * disk or network waits, no long computations). Pooled handlers, whose response travels back
 * to the reactor through its completion queue, come with the router/middleware work; the
 * request and response types below are opaque so that they can grow for it.
 *
 * Lifecycle: sl_server_new -> sl_server_listen (one or more addresses) -> sl_server_serve
 * (starts the threads and returns) -> sl_server_shutdown (graceful, bounded by a ctx) ->
 * sl_server_free. sl_server_run does serve + wait for a ctx + shutdown in one blocking call.
 *
 * Threads: sl_server_new/listen/serve/shutdown/free from one controlling thread;
 * sl_server_port and sl_server_stats from any thread. */
#ifndef SLUICE_SERVER_H
#define SLUICE_SERVER_H

#include "sluice/common.h"
#include "sluice/ctx.h"

SL_BEGIN_DECLS

typedef struct sl_server sl_server;

/* A request as the handler sees it. Every view it returns points into the connection's
 * buffers and is valid until the handler returns; copy what must outlive it. Views are not
 * NUL-terminated unless said. Threads: the handler's thread only. */
typedef struct sl_req sl_req;

/* The response being built for a request. Valid until the handler returns; the server sends it
 * then (status 200 and an empty body unless set). Threads: the handler's thread only. */
typedef struct sl_resp sl_resp;

/* A request handler. Runs on a reactor thread: must not block. */
typedef void (*sl_handler_fn)(sl_req *req, sl_resp *resp, void *arg);

/* Server options. Zero-initialize, then set what you need: every 0 means the default written
 * next to the field. A negative timeout disables that timeout. */
typedef struct sl_server_opts {
    sl_handler_fn handler; /* required */
    void *handler_arg;
    int reactors;                   /* reactor threads; 0 = one per online CPU */
    int max_connections;            /* open connections, process-wide for this server; 0 = 16384.
                                       At the bound the server stops accepting (new connections wait
                                       in the kernel's backlog) and resumes below it */
    uint32_t max_header_bytes;      /* request line + headers; 0 = 16 KiB; more -> 431 */
    uint32_t max_headers;           /* header lines; 0 = 64; more -> 431 */
    uint32_t max_target;            /* request-target bytes; 0 = 8 KiB; more -> 414 */
    uint64_t max_body_bytes;        /* request body; 0 = 1 MiB; more -> 413 */
    uint32_t max_pipeline;          /* responses queued but unsent per connection before the server
                                       stops reading from it; 0 = 64 */
    uint32_t max_output_bytes;      /* unsent response bytes per connection before the server stops
                                       reading from it; 0 = 256 KiB (one response may exceed it) */
    int64_t read_header_timeout_ns; /* from a request's first byte (a new connection: from
                                       accept) to the end of its head; 0 = 10 s. On expiry:
                                       408 if bytes of a request arrived, else a silent close */
    int64_t read_body_timeout_ns;   /* longest wait between two reads of a body; 0 = 60 s;
                                       on expiry 408 */
    int64_t write_timeout_ns;       /* longest wait for the socket to accept more output; 0 = 60 s;
                                       on expiry the connection is closed */
    int64_t idle_timeout_ns;        /* keep-alive wait for the next request; 0 = 75 s */
    int64_t shutdown_timeout_ns;    /* grace period used by sl_server_run; 0 = 30 s */
} sl_server_opts;

/* Counters summed over the reactors when read (each is exact for its reactor; the sum is a
 * snapshot, not an atomic cut). */
typedef struct sl_server_stats {
    int64_t connections;    /* open now */
    uint64_t accepted;      /* connections accepted since serve */
    uint64_t requests;      /* requests answered (by the handler or with an error status) */
    uint64_t rejected;      /* requests answered with a 4xx/5xx by the engine (parse errors,
                               limits, timeouts) */
    uint64_t accept_pauses; /* times a reactor stopped accepting at max_connections or on an
                               fd limit */
} sl_server_stats;

/* Creates a server (not yet listening). Copies opts. Returns 0 and sets *out; SL_EINVAL when
 * opts or its handler is NULL or a limit is out of range; SL_ENOMEM (then *out is untouched).
 * Threads: any. Does not block. */
SL_API int sl_server_new(const sl_server_opts *opts, sl_server **out);

/* Binds and listens on host:port (host: an IPv4 or IPv6 literal, e.g. "127.0.0.1", "::1",
 * "0.0.0.0", "::"; NULL = "0.0.0.0"). Port 0 picks a free port. One SO_REUSEPORT socket is
 * opened per reactor. May be called several times (several addresses) before serve. Returns
 * the bound port (> 0), or SL_EINVAL (bad host, or called after serve), SL_EADDRINUSE, or
 * another -errno. Threads: the controlling thread. Does not block. */
SL_API int sl_server_listen(sl_server *srv, const char *host, int port);

/* Returns the port of the first successful sl_server_listen, or SL_ENOENT if none. Threads:
 * any. */
SL_API int sl_server_port(const sl_server *srv);

/* Starts the reactor threads and returns at once; connections are accepted from now on.
 * Returns 0; SL_EINVAL if nothing is listening or serve was already called; SL_ENOMEM or
 * another -errno when a reactor cannot start (then every started thread was stopped and
 * joined, and the server may only be freed). Threads: the controlling thread. */
SL_API int sl_server_serve(sl_server *srv);

/* Shuts the server down gracefully (Go's Server.Shutdown): stops accepting, closes idle
 * keep-alive connections at once, lets requests in flight finish (their responses carry
 * Connection: close), and waits until every connection is closed or ctx is done (NULL: no
 * limit); then closes whatever is left, stops and joins every reactor thread. Returns 0 when
 * every connection finished on its own, the ctx's error (SL_ETIMEDOUT, SL_ECANCELED) when
 * some had to be closed, or SL_EINVAL if the server was never served or is already shut down.
 * Blocks (parks the thread). Threads: the controlling thread. */
SL_API int sl_server_shutdown(sl_server *srv, sl_ctx *ctx);

/* Serves until ctx is done (e.g. a signal ctx from sl_signal_ctx), then shuts down with
 * opts.shutdown_timeout_ns as the grace period. Returns sl_server_serve's error, or
 * sl_server_shutdown's result. Blocks. ctx must be able to become done (not NULL): SL_EINVAL
 * otherwise. Threads: the controlling thread. */
SL_API int sl_server_run(sl_server *srv, sl_ctx *ctx);

/* Fills *st. Threads: any. */
SL_API void sl_server_stats_get(const sl_server *srv, sl_server_stats *st);

/* Frees the server. If it is still serving, shuts it down first with no grace (every
 * connection is closed at once). NULL is ignored. Threads: the controlling thread. Blocks
 * until the reactor threads are joined. */
SL_API void sl_server_free(sl_server *srv);

/* ---- the request (handler thread only; views valid until the handler returns) ---- */

/* The method token ("GET"). *len gets its length. */
SL_API const char *sl_req_method(const sl_req *req, size_t *len);

/* The request-target as received ("/a/b?x=1"). */
SL_API const char *sl_req_target(const sl_req *req, size_t *len);

/* The path: the target up to '?' ("/a/b"; for an absolute-form target, the part after the
 * authority). Still percent-encoded. */
SL_API const char *sl_req_path(const sl_req *req, size_t *len);

/* The query after '?' without the '?', or NULL (and *len = 0) when there is none. */
SL_API const char *sl_req_query(const sl_req *req, size_t *len);

/* The value of the first header named name (case-insensitive), trimmed, or NULL when absent.
 * len may be NULL. */
SL_API const char *sl_req_header(const sl_req *req, const char *name, size_t *len);

/* Number of header lines, and the i-th one (0-based) through the out pointers. Returns 0, or
 * SL_ERANGE when i is out of range. */
SL_API size_t sl_req_header_count(const sl_req *req);
SL_API int sl_req_header_at(const sl_req *req, size_t i, const char **name, size_t *name_len,
                            const char **value, size_t *value_len);

/* The whole body (Content-Length or decoded chunked), or NULL with *len = 0 when empty. The
 * server reads it completely, up to max_body_bytes, before calling the handler. */
SL_API const void *sl_req_body(const sl_req *req, size_t *len);

/* 10 for HTTP/1.0, 11 for HTTP/1.1. */
SL_API int sl_req_version(const sl_req *req);

/* The peer's address as a NUL-terminated string, "1.2.3.4:5678" or "[::1]:5678". */
SL_API const char *sl_req_remote_addr(sl_req *req);

/* ---- the response (handler thread only) ---- */

/* Sets the status code (100..999 are accepted; 200 by default). 1xx, 204 and 304 responses
 * are sent without a body or Content-Length. Returns 0 or SL_EINVAL. */
SL_API int sl_resp_set_status(sl_resp *resp, int status);

/* Adds a header line (copied). Content-Length, Transfer-Encoding and Date are the server's:
 * SL_EINVAL, as for names that are not tokens or values with CR, LF or NUL. "Connection:
 * close" makes the server close the connection after this response. Returns 0, SL_EINVAL or
 * SL_ENOMEM. */
SL_API int sl_resp_add_header(sl_resp *resp, const char *name, const char *value);

/* Sets Content-Type (shorthand for add_header, replacing an earlier one set this way). */
SL_API int sl_resp_set_content_type(sl_resp *resp, const char *type);

/* Sets the body to a copy of data[0..len). Content-Length is computed. Replaces any earlier
 * body. Returns 0 or SL_ENOMEM (the body is then empty). */
SL_API int sl_resp_set_body(sl_resp *resp, const void *data, size_t len);

/* Sets the body to data[0..len) without copying: data must stay valid and unchanged for the
 * server's lifetime (string literals, static tables). Returns 0. */
SL_API int sl_resp_set_body_static(sl_resp *resp, const void *data, size_t len);

SL_END_DECLS

#endif /* SLUICE_SERVER_H */
