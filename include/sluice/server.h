/* sl_server: an HTTP/1.1 server (Go's http.Server): event loops, keep-alive, pipelining,
 * timeouts, limits and graceful shutdown.
 *
 * The server runs on the loops of a task runtime (task.h): opts.runtime, else the default
 * runtime (one loop per CPU), else (opts.reactors > 0) a private runtime of that many loops
 * that the server creates and stops with itself. On each loop the server has one worker: its
 * own SO_REUSEPORT listening socket per address (the kernel spreads new connections), its
 * connections, their buffers and their timers, all registered on that loop's epoll set;
 * nothing on the request path is shared between loops except one atomic connection counter
 * that enforces max_connections. The same loops run the runtime's tasks, including the
 * server's task-route handlers (mux.h), and may serve other servers too.
 *
 * A plain opts.handler runs inline in the loop's callback that read the request: it must not
 * block (no disk or network waits, no long computations). With opts.mux instead (mux.h), each
 * route is a task route (the default: its own task on the connection's loop, whose waits park
 * the task), inline, or pooled (a bounded handler pool owned by the server, whose response
 * travels back to the owning loop through its completion queue).
 *
 * Lifecycle: sl_server_new -> sl_server_listen (one or more addresses) -> sl_server_serve
 * (registers the listeners on the loops and returns) -> sl_server_shutdown (graceful, bounded
 * by a ctx) -> sl_server_free. sl_server_run does serve + wait for a ctx + shutdown in one
 * blocking call. A borrowed runtime must outlive the server: free the server before shutting
 * its runtime down (sl_runtime_shutdown returns SL_EBUSY, and sl_runtime_free does nothing but
 * log, while a server still uses the runtime).
 *
 * Threads: sl_server_new/listen/serve/shutdown/free from one controlling thread, which must not
 * be a task or a loop of the server's runtime (serve and shutdown wait for those loops: they
 * return SL_EDEADLK there); sl_server_port and sl_server_stats from any thread. */
#ifndef SLUICE_SERVER_H
#define SLUICE_SERVER_H

#include "sluice/common.h"
#include "sluice/ctx.h"

SL_BEGIN_DECLS

typedef struct sl_server sl_server;
typedef struct sl_mux sl_mux;         /* mux.h */
typedef struct sl_runtime sl_runtime; /* task.h */

/* A request as the handler sees it. Every view it returns points into the connection's
 * buffers (or the request's arena) and is valid until the handler returns; copy what must
 * outlive it.
 *
 * Strings: every string accessor returns a NUL-terminated C string, safe with printf("%s") and
 * strcmp: method, target, header names and values, path values, query names and values, pattern,
 * route name, remote address, request id. The one exception is sl_req_path, a view of the target up
 * to '?' (use sl_req_path_str for a C string) — and the body, which is bytes. The length
 * out-parameters stay for values that may hold a NUL (a decoded %00). None of this copies: the
 * server writes the NUL over the delimiter that follows each value in its buffer (docs/
 * handlers.md, "Strings"). Threads: the handler's thread only. */
typedef struct sl_req sl_req;

/* The response being built for a request. Valid until the handler returns; the server sends it
 * then (status 200 and an empty body unless set). Threads: the handler's thread only. */
typedef struct sl_resp sl_resp;

/* A request handler. As opts.handler or an inline route it runs in a loop's callback and must
 * not block; as a task route it runs in its own task and may wait with sluice waits (which park
 * the task); as a pooled route it runs on a handler thread and may block. Either way it passes
 * sl_req_ctx(req) to every wait. */
typedef void (*sl_handler_fn)(sl_req *req, sl_resp *resp, void *arg);

/* Server options. Zero-initialize, then set what you need: every 0 means the default written
 * next to the field. A negative timeout disables that timeout. */
typedef struct sl_server_opts {
    sl_handler_fn handler; /* this, or mux: exactly one of them */
    void *handler_arg;
    int reactors;                   /* loops serving, when runtime is NULL: 0 = the loops of
                                       sl_runtime_default() (one per online CPU); N > 0 = a
                                       private runtime of N loops, created and freed with the
                                       server. With runtime set: 0 or its loop count */
    sl_runtime *runtime;            /* the task runtime whose loops serve (task.h): borrowed,
                                       must outlive the server and must not be shut down before
                                       sl_server_free (sl_runtime_shutdown returns SL_EBUSY
                                       while a server uses it); NULL = see reactors */
    int max_connections;            /* open connections, process-wide for this server; 0 = 16384.
                                       At the bound the server closes idle keep-alive connections
                                       (as nginx does) and stops accepting (new connections wait
                                       in the kernel's backlog) until it is below it again */
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
    int64_t read_body_timeout_ns;   /* longest wait between two reads of a body that keep up
                                       min_body_rate; 0 = 60 s; on expiry 408 and close */
    int64_t write_timeout_ns;       /* longest wait for the socket to accept more output; 0 = 60 s;
                                       on expiry the connection is closed. Also while a pooled or
                                       task request is in flight (a streaming handler, earlier
                                       pipelined responses unsent): its ctx is then cancelled
                                       (SL_ECANCELED) and sl_resp_stream_write fails */
    int64_t idle_timeout_ns;        /* keep-alive wait for the next request; 0 = 75 s */
    int64_t shutdown_timeout_ns;    /* grace period used by sl_server_run; 0 = 30 s */
    int64_t min_body_rate;          /* bytes/s a request body must average over each
                                       read_body_timeout window (reads slower than that do not
                                       extend it: a trickle gets 408); 0 = 1024; < 0 = none */
    int max_conns_per_ip;           /* open connections from one client address (IPv4 /32,
                                       IPv6 /64); 0 = max_connections / 4, at least 16. Past it a
                                       new connection gets 429 and is closed */
    uint64_t max_body_memory;       /* request-body bytes buffered at once, all connections
                                       together; 0 = 256 MiB. A body that would pass it gets 503
                                       with Retry-After and the connection closes */
    sl_mux *mux; /* routes + middleware (mux.h), instead of handler. Borrowed: must outlive the
                    server; frozen by sl_server_new (no more routes or middleware). The server
                    owns the handler pool sized by the mux's options */
} sl_server_opts;

/* Counters summed over the loops when read (each is exact for its loop; the sum is a
 * snapshot, not an atomic cut). */
typedef struct sl_server_stats {
    int64_t connections;    /* open now */
    uint64_t accepted;      /* connections accepted since serve */
    uint64_t requests;      /* requests answered (by the handler or with an error status) */
    uint64_t rejected;      /* requests answered with a 4xx/5xx by the engine (parse errors,
                               limits, timeouts) */
    uint64_t accept_pauses; /* times a loop stopped accepting at max_connections or on an
                               fd limit */
} sl_server_stats;

/* Creates a server (not yet listening). Copies opts. With a mux, runs every middleware's check
 * hook against the routes (mux.h) and starts the handler pool's threads. Returns 0 and sets
 * *out; SL_EINVAL when opts is NULL, when not exactly one of handler and mux is set, or a limit
 * is out of range; SL_EBUSY when the mux is used by another live server; a middleware check's
 * error (the rate limiter's: SL_ENOENT for a pattern that names no route); SL_ENOMEM. On
 * failure *out is untouched and sl_error_detail() names the field or the conflict. Threads:
 * any. Does not block. */
SL_API int sl_server_new(const sl_server_opts *opts, sl_server **out);

/* Binds and listens on host:port. host: an IPv4 or IPv6 literal ("127.0.0.1", "::1", "[::1]",
 * "0.0.0.0", "::"), or a name resolved here once ("localhost": its first IPv4 address, else its
 * first IPv6 one, as Go prefers); NULL = "0.0.0.0". Port 0 picks a free port. One SO_REUSEPORT
 * socket is opened per loop, but the port is first claimed by a socket without
 * SO_REUSEPORT, so the call fails with SL_EADDRINUSE when anything else listens there —
 * another process, another sl_server, or this server on the same address already; only this
 * server's own loops share the port. IPv6 sockets are IPv6-only: listen on "0.0.0.0" and "::"
 * to take both families. May be called several times (several addresses) before serve.
 * Returns the bound port (> 0), or SL_EINVAL (bad port, empty host, called after serve),
 * SL_ENOENT (a name that does not resolve), SL_EADDRINUSE, or another -errno; sl_error_detail()
 * names the address and the cause. Threads: the controlling thread. Blocks only to resolve a
 * host name (getaddrinfo: /etc/hosts, DNS). */
SL_API int sl_server_listen(sl_server *srv, const char *host, int port);

/* Returns the port of the first successful sl_server_listen, or SL_ENOENT if none. Threads:
 * any. */
SL_API int sl_server_port(const sl_server *srv);

/* Registers the listeners and timers on every loop of the server's runtime (a step posted to
 * each running loop, waited for) and returns; connections are accepted from now on. Returns
 * 0; SL_EINVAL if nothing is listening or serve was already called; SL_EDEADLK from a task or
 * loop of the server's runtime; another -errno when a loop cannot watch a listener (then the
 * server was taken off every loop again and may only be freed). Threads: the controlling
 * thread. Blocks until every loop has run its step. */
SL_API int sl_server_serve(sl_server *srv);

/* Shuts the server down gracefully (Go's Server.Shutdown): stops accepting, closes idle
 * keep-alive connections at once, lets requests in flight finish (their responses carry
 * Connection: close), and waits until every connection is closed or ctx is done (NULL: no
 * limit); then cancels the ctx of every pooled request still running with SL_ESHUTDOWN, waits
 * for those handlers to return (a handler that ignores its ctx delays this), shuts the handler
 * pool down (pooled requests still queued are not started: they are answered 503 with
 * Retry-After and Connection: close, never a success), does the same for task requests, closes
 * whatever is left on every loop and takes the server off the loops (a private runtime's
 * threads are joined; a borrowed runtime's loops go on). Returns 0 when
 * every connection finished on its own, the ctx's error (SL_ETIMEDOUT, SL_ECANCELED) when
 * some had to be closed, SL_EINVAL if the server was never served or is already shut down, or
 * SL_EDEADLK from a task or loop of the server's runtime. Blocks (parks the thread). Threads:
 * the controlling thread. */
SL_API int sl_server_shutdown(sl_server *srv, sl_ctx *ctx);

/* Serves until ctx is done (e.g. a signal ctx from sl_signal_ctx), then shuts down with
 * opts.shutdown_timeout_ns as the grace period. Returns sl_server_serve's error, or
 * sl_server_shutdown's result. Blocks. ctx must be able to become done (not NULL): SL_EINVAL
 * otherwise. Threads: the controlling thread. */
SL_API int sl_server_run(sl_server *srv, sl_ctx *ctx);

/* Fills *st. Threads: any. */
SL_API void sl_server_stats_get(const sl_server *srv, sl_server_stats *st);

typedef struct sl_pool sl_pool;

/* The server's pool of pooled handlers (a mux's), for its load (sl_pool_stats_get: running,
 * queued, workers) in a health check; NULL for a server with a plain handler. Borrowed: valid
 * until sl_server_free. Threads: any. */
SL_API sl_pool *sl_server_handler_pool(sl_server *srv);

/* Frees the server. If it is still serving, shuts it down first with no grace (every
 * connection is closed at once); then lets go of its runtime (a private one is freed). NULL is
 * ignored. Threads: the controlling thread, not a task or loop of the server's runtime. Blocks
 * until the loops have dropped the server. */
SL_API void sl_server_free(sl_server *srv);

/* ---- the request (handler thread only; views valid until the handler returns) ---- */

/* The method token ("GET"), NUL-terminated. *len gets its length. */
SL_API const char *sl_req_method(const sl_req *req, size_t *len);

/* The request-target as received ("/a/b?x=1"), NUL-terminated. */
SL_API const char *sl_req_target(const sl_req *req, size_t *len);

/* The path: the target up to '?' ("/a/b"; for an absolute-form target, the part after the
 * authority). Still percent-encoded. A view: NOT NUL-terminated when a query follows (use
 * *len, or sl_req_path_str). */
SL_API const char *sl_req_path(const sl_req *req, size_t *len);

/* The path as a NUL-terminated string: the view itself when the target has no query, else a
 * copy in the request's arena. Returns NULL only when out of memory. */
SL_API const char *sl_req_path_str(sl_req *req);

/* The raw query after '?' without the '?' (NUL-terminated), or NULL (and *len = 0) when there
 * is none. */
SL_API const char *sl_req_query(const sl_req *req, size_t *len);

/* The value of the first header named name (case-insensitive), trimmed and NUL-terminated, or
 * NULL when absent. len may be NULL. */
SL_API const char *sl_req_header(const sl_req *req, const char *name, size_t *len);

/* Number of header lines, and the i-th one (0-based) through the out pointers (name and value
 * NUL-terminated). Returns 0, or SL_ERANGE when i is out of range. */
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

/* The request's context. Pooled routes: cancelled (SL_ECANCELED) when the client closes or
 * resets the connection, done with SL_ETIMEDOUT at the route's timeout, cancelled with
 * SL_ESHUTDOWN at the end of shutdown's grace period: sl_ctx_err tells the three apart. A
 * client that half-closes after a complete request still gets the response its handler
 * returns (when the socket takes it); if not, the after hooks see status 499. Inline routes and
 * plain handlers get it on first call (same parents). Valid until the handler returns (take a
 * reference with sl_ctx_ref to keep it longer; it is cancelled when the request ends). Returns NULL
 * only when out of memory (NULL is the background ctx: never done). */
SL_API sl_ctx *sl_req_ctx(sl_req *req);

/* The value of the wildcard {name} of the matched route (decoded, NUL-terminated), or NULL
 * when there is no such wildcard (or no mux). len may be NULL. */
SL_API const char *sl_req_path_value(const sl_req *req, const char *name, size_t *len);

/* The pattern of the matched route ("GET /users/{id}", NUL-terminated, owned by the mux), or
 * NULL when nothing matched or there is no mux. */
SL_API const char *sl_req_pattern(const sl_req *req);

/* The matched route's name (route option, default the pattern), or NULL as above. */
SL_API const char *sl_req_route_name(const sl_req *req);

/* The first value of query parameter name, decoded ('+' is a space, %XX decoded; a malformed
 * escape is kept as is) and NUL-terminated, or NULL when absent. "?a&b=" gives a = "" and b = "".
 * The decoded pairs live in the request's arena. len may be NULL. Returns NULL also when out of
 * memory. */
SL_API const char *sl_req_query_value(sl_req *req, const char *name, size_t *len);

/* Number of decoded query parameters (in order, duplicates kept), or SL_ENOMEM. */
SL_API int sl_req_query_count(sl_req *req);

/* The i-th decoded query parameter (name and value NUL-terminated). Returns 0, SL_ERANGE (i out
 * of range) or SL_ENOMEM. */
SL_API int sl_req_query_at(sl_req *req, size_t i, const char **name, size_t *name_len,
                           const char **value, size_t *value_len);

/* Collects the values of every header line named name (case-insensitive), in order: stores at
 * most max of them in values[]/lens[] (lens may be NULL) and returns how many exist (may be
 * more than max). Values are views, trimmed, NUL-terminated, not split on commas. */
SL_API size_t sl_req_header_values(const sl_req *req, const char *name, const char **values,
                                   size_t *lens, size_t max);

/* Allocates n bytes (aligned for any type) from the request's arena; everything is freed at
 * once when the request ends. Returns NULL when out of memory (or n == 0). */
SL_API void *sl_req_alloc(sl_req *req, size_t n);

/* Most request-scoped values (sl_req_set_value) one request holds. */
#define SL_REQ_MAX_VALUES 8

/* Binds value to key (compared by pointer identity) for the rest of the request, replacing an
 * earlier binding: how middleware passes data (a user id, a request id) to the handler and to
 * after hooks. The request does not own value (allocate it with sl_req_alloc to tie it to the
 * request). Returns 0 or SL_ENOSPC (SL_REQ_MAX_VALUES distinct keys already bound). */
SL_API int sl_req_set_value(sl_req *req, const void *key, void *value);

/* The value bound to key, or NULL. */
SL_API void *sl_req_get_value(const sl_req *req, const void *key);

/* The request id set by sl_mw_request_id (NUL-terminated), or NULL without that middleware. */
SL_API const char *sl_req_request_id(const sl_req *req);

/* When the request's head was complete (sl_mono_ns instant), for latency measurements. */
SL_API int64_t sl_req_start_ns(const sl_req *req);

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

/* Sets header name to value, removing earlier lines of that name first (add_header appends).
 * Same rules and returns as sl_resp_add_header. */
SL_API int sl_resp_set_header(sl_resp *resp, const char *name, const char *value);

/* Removes every header line named name (case-insensitive; Content-Type too). Returns the
 * number removed (0 if none). */
SL_API int sl_resp_del_header(sl_resp *resp, const char *name);

/* Appends data[0..len) to the body (copied; a static body set before is copied first).
 * Returns 0 or SL_ENOMEM (the body is then unchanged). During streaming, use
 * sl_resp_stream_write instead (SL_EINVAL here). */
SL_API int sl_resp_write(sl_resp *resp, const void *data, size_t len);

/* Appends printf-formatted text to the body. Returns the bytes appended, or SL_ENOMEM /
 * SL_EINVAL (bad format or streaming). */
SL_API int sl_resp_printf(sl_resp *resp, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Sets status, Content-Type: application/json and the body to a copy of json[0..len) (not
 * validated). Returns 0, SL_EINVAL (bad status) or SL_ENOMEM. */
SL_API int sl_resp_json(sl_resp *resp, int status, const char *json, size_t len);

/* Sets status and the body {"error":"<msg>"} with msg JSON-escaped (quotes, backslashes,
 * control characters), Content-Type application/json. Returns as sl_resp_json. */
SL_API int sl_resp_error(sl_resp *resp, int status, const char *msg);

/* True once the handler set a status, a body, or began streaming. */
SL_API bool sl_resp_written(const sl_resp *resp);

/* The status (200 unless set), and the body bytes set or streamed so far. For after hooks. */
SL_API int sl_resp_status(const sl_resp *resp);
SL_API uint64_t sl_resp_bytes(const sl_resp *resp);

/* Streaming (chunked) responses, pooled handlers only. stream_begin sends the status and
 * headers set so far with Transfer-Encoding: chunked (HTTP/1.0 clients: no length, close at
 * the end) and commits the response: the route timeout no longer replaces it by a 503.
 * Returns 0, SL_EINVAL (inline handler, or already begun) or SL_ENOMEM.
 * stream_write sends data[0..len) as one chunk: it is copied and travels to the owning
 * reactor, which writes it. Blocks while more than 256 KiB of this response are unsent
 * (backpressure), until the request ctx is done. Returns 0, the ctx's error (SL_ECANCELED when
 * the client went away, SL_ETIMEDOUT), SL_EINVAL (not begun) or SL_ENOMEM. The stream ends when
 * the handler returns (the terminating chunk is sent then). Threads: the handler's. */
SL_API int sl_resp_stream_begin(sl_resp *resp);
SL_API int sl_resp_stream_write(sl_resp *resp, const void *data, size_t len);

SL_END_DECLS

#endif /* SLUICE_SERVER_H */
