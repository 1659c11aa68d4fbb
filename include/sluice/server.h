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
#include "sluice/request.h"

SL_BEGIN_DECLS

typedef struct sl_server sl_server;
typedef struct sl_mux sl_mux;         /* mux.h */
typedef struct sl_runtime sl_runtime; /* task.h */

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

SL_END_DECLS

#endif /* SLUICE_SERVER_H */
