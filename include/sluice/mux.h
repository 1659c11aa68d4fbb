/* sl_mux: the application-facing request multiplexer — Go 1.22 ServeMux routing, a middleware
 * chain, and task, inline or pooled handlers.
 *
 *   sl_mux_opts mo = {.max_task_requests = 10000};
 *   sl_mux *mux;
 *   sl_mux_new(&mo, &mux);
 *   sl_mux_use_request_id(mux);             // outermost first
 *   sl_mux_use_access_log(mux, NULL);
 *   sl_mux_handle_fn(mux, "POST /users", create_user, db);               // a task (default)
 *   sl_mux_handle_inline(mux, "GET /healthz", healthz, NULL);            // on the loop
 *   sl_route_opts ro = {.timeout_ns = SL_SEC(2)};                        // the full form
 *   sl_mux_handle(mux, "GET /users/{id}", get_user, db, &ro, NULL, 0);
 *   sl_route_opts cpu = {.mode = SL_ROUTE_POOLED};                       // a handler thread
 *   sl_mux_handle(mux, "POST /thumbnails", resize, NULL, &cpu, NULL, 0);
 *   sl_server_opts so = {.mux = mux};
 *   sl_server_new(&so, &srv);  ...  sl_server_free(srv);  sl_mux_free(mux);
 *
 * Modes (docs/handlers.md says which to pick). A TASK handler (SL_ROUTE_TASK, the default)
 * runs in its own task (task.h) on the loop that read its request: the server's loops are
 * its runtime's loops (sl_server_opts.runtime), so the spawn is a push on that loop's own run
 * queue and the response goes back without crossing threads (an idle loop may steal the
 * task: then it is posted back). A handler that waits with a sluice wait (sl_ctx_wait_for on
 * its ctx, sl_chan, sl_sem, sl_pool_submit, sl_db, sl_client, sl_wait_fd) parks only its
 * task, so thousands of waiting requests cost a task stack each, not a thread; a foreign
 * blocking call (a blocking library, sleep, a long computation) would hold the loop and every
 * connection on it. It runs on its task's stack (the runtime's stack_size,
 * SL_TASK_STACK_DEFAULT = 256 KiB): no large stack arrays. At most max_task_requests are in
 * flight; past it the server answers 503 with Retry-After at once.
 *
 * An INLINE handler runs in the loop's callback that read the request and must not wait at
 * all. A POOLED handler runs on the server's bounded handler pool (handler_workers threads,
 * handler_queue waiting requests) and may block; when the pool is saturated the server answers
 * 503 with Retry-After at once.
 *
 * Task and pooled requests share everything else: the request is copied out of the loop's
 * scratch, the ctx (sl_req_ctx) is cancelled when the client goes away (SL_ECANCELED), when
 * the route's timeout passes (SL_ETIMEDOUT; then, if the handler has not started streaming,
 * the server answers 503 at once and discards what the handler builds later), and at the end
 * of shutdown's grace period (SL_ESHUTDOWN); streaming with back-pressure, the arena and path
 * values work; max_pooled_per_client counts both. Shutdown cancels the ctx of every request
 * still running when the grace period ends and waits until each has returned before it takes
 * the server off its loops.
 *
 * Middleware runs after routing and before the handler, outermost first. The rule for a
 * middleware author: a `before` hook may wait (sl_ctx_wait on sl_req_ctx(req), sl_chan, sl_sem,
 * sl_client, sl_db, a Redis call) only on a task route, where it runs in the request's task;
 * everywhere else (inline and pooled routes, unmatched requests) it runs on the reactor and must
 * not block — sl_req_may_wait(req) tells which. `before` may stop the chain by returning
 * SL_MW_STOP with the response it set (a 401, a 429): the handler is never called (on a pooled
 * route the request never costs a handler thread; on a task route it costs its task, within
 * max_task_requests). On every route the hooks run as soon as the head is parsed, before the
 * body is read (on a task route in a task of their own; 100 Continue and the body follow only
 * if they let the request through, and a refusal closes the connection: a refused request's
 * body is never read; hooks therefore never see the body), count in the route's timeout
 * (a hook parked past it: the client gets 503 at the deadline and the hook's ctx is done), and
 * a client that leaves cancels the ctx a parked hook waits on. `after` hooks run on the reactor
 * when the response is queued for sending, innermost first (access logs, metrics); a task
 * request answered before its task ran the before hooks (503 at max_task_requests or shed,
 * shutdown) runs the after hooks of the middleware that have no before hook only. Headers a
 * before hook set stay on the route-timeout 503 (RateLimit, X-Request-Id, CORS). Why not Go's
 * wrapping closures (func(http.Handler) http.Handler)? A wrapped chain runs on one stack around the
 * handler, but a pooled handler runs later on another thread: the part of the chain before the
 * handler and the part after it are two separate calls, so a middleware is exactly that pair.
 * Middleware also runs for unmatched requests (404, 405, 301), so they are logged and limited.
 *
 * Unmatched requests: 404 {"error":"not found"}; 405 {"error":"method not allowed"} with
 * Allow; 301 to the clean path (query kept) for unclean paths and "/dir" -> "/dir/"; 400 for
 * bad percent-encoding in the path.
 *
 * Threads: build the mux (new, use, handle) on one thread before giving it to sl_server_new;
 * after that it is read-only and shared by every reactor; sl_mux_handle/use then return
 * SL_EBUSY. The mux must outlive every server using it. */
#ifndef SLUICE_MUX_H
#define SLUICE_MUX_H

#include "sluice/common.h"
#include "sluice/log.h"
#include "sluice/request.h"
#include "sluice/server.h"
#include "sluice/task.h"

SL_BEGIN_DECLS

/* Which to pick: docs/handlers.md. 0 is TASK so that a zeroed sl_route_opts (and
 * sl_mux_handle_fn) gives the mode that suits most handlers; the other two are opt-ins. */
typedef enum sl_route_mode {
    SL_ROUTE_TASK = 0,   /* (default) in its own task on the loop that read the request
                            (task.h): may wait with sluice waits (ctx, chan, sem, db, client,
                            redis), which park only the task; must not block its loop thread
                            with foreign blocking calls or long computations */
    SL_ROUTE_POOLED = 1, /* on the server's handler pool threads: may block (foreign blocking
                            calls, CPU-heavy work), should honour its ctx */
    SL_ROUTE_INLINE = 2, /* on the loop, in its callback: tiny, must not wait at all */
} sl_route_mode;

/* Per-route options. Zero-initialize; NULL route options mean all defaults. */
typedef struct sl_route_opts {
    sl_route_mode mode;
    int64_t timeout_ns;      /* request ctx deadline; 0 = the mux's default_timeout_ns; < 0 none.
                                Pooled and task routes: on expiry, 503 if nothing was
                                streamed yet */
    uint64_t max_body_bytes; /* 0 = the server's max_body_bytes; a larger Content-Length gets
                                413 before the body is read (chunked: once it exceeds it) */
    const char *name;        /* for logs and metrics; copied; NULL = the pattern */
    const struct sl_middleware *middleware; /* this route's own middleware, run after the mux's
                                               (sl_mux_use) in this order; copied */
    size_t nmiddleware;
} sl_route_opts;

typedef struct sl_mux_opts {
    int handler_workers;        /* pooled-handler threads; 0 = 4 x online CPUs */
    size_t handler_queue;       /* pooled requests waiting for a thread; 0 = 256 (1 counts as 2);
                                   rounded up to a power of 2; beyond it -> 503 */
    int64_t default_timeout_ns; /* route timeout when the route says 0; 0 = none */
    int64_t max_queue_wait_ns;  /* a pooled request that waited longer for a thread is not
                                   started: 503 with Retry-After; 0 = 10 s; < 0 = no bound */
    int max_pooled_per_client;  /* pooled requests (queued + running) of one client address
                                   (the peer: IPv4 /32, IPv6 /64) at once; past it 429 with
                                   Retry-After, so one client cannot take every handler thread
                                   (half of handler_workers is a good value); 0 = no cap (behind
                                   a proxy every client has the proxy's address) */
    sl_logger *logger;          /* engine messages; NULL = sl_log_default(); must outlive the mux */
    int max_task_requests;      /* task-route requests in flight at once (server-wide); past it
                                   503 with Retry-After; 0 = 10000 */
} sl_mux_opts;

/* What a middleware's before hook tells the chain. */
typedef enum sl_mw_action {
    SL_MW_NEXT = 0, /* go on: next middleware, then the handler */
    SL_MW_STOP = 1, /* stop: send the response as set now (the handler does not run) */
} sl_mw_action;

/* Runs before the handler: in the request's task on a task route (may wait with sluice waits,
 * passing sl_req_ctx(req)), else on the reactor (must not block). The request is routed
 * (sl_req_pattern, sl_req_path_value work; the pattern is NULL for unmatched requests). */
typedef sl_mw_action (*sl_mw_before_fn)(sl_req *req, sl_resp *resp, void *arg);
/* Runs on the reactor once the response is final and queued (status, sl_resp_bytes known),
 * for every request whose before hook ran (also when a later middleware stopped the chain).
 * The request (and its values) is still valid. Must not block. */
typedef void (*sl_mw_after_fn)(sl_req *req, const sl_resp *resp, void *arg);

/* Checks a middleware's configuration against the finished mux, once, when a server takes the
 * mux (sl_server_new): e.g. that every route pattern the middleware names is registered. Returns
 * 0, or an error code after writing a NUL-terminated explanation naming the culprit to err
 * (errlen bytes); sl_server_new then fails with that code and explanation. */
typedef int (*sl_mw_check_fn)(const sl_mux *mux, void *arg, char *err, size_t errlen);

/* A middleware: either hook may be NULL. arg is passed to all three; the mux does not own it. */
typedef struct sl_middleware {
    const char *name; /* for diagnostics; may be NULL; not copied (use a literal) */
    sl_mw_before_fn before;
    sl_mw_after_fn after;
    void *arg;
    sl_mw_check_fn check; /* optional: validated at sl_server_new */
} sl_middleware;

/* Creates an empty mux. opts may be NULL (defaults). Returns 0 and *out; SL_EINVAL (negative
 * workers, timeout or max_task_requests, out NULL: sl_error_detail() names the field) or SL_ENOMEM
 * (*out untouched). Threads: any. Does not block. */
SL_API int sl_mux_new(const sl_mux_opts *opts, sl_mux **out);

/* Frees the mux (not the handlers' or middleware's args). Every server using it must have been
 * freed. NULL is ignored. */
SL_API void sl_mux_free(sl_mux *mux);

/* Registers fn(req, resp, arg) for a Go 1.22 pattern ("GET /users/{id}", "/static/",
 * "POST /items/{$}"; see router.h). ro may be NULL. Returns 0; SL_EINVAL (malformed pattern,
 * fn NULL, bad option); SL_ECONFLICT (overlaps an existing pattern without either being more
 * specific, or duplicates one); SL_EBUSY (the mux is already used by a server: routes must be
 * added before sl_server_new); SL_ENOMEM. On failure nothing is registered and a
 * NUL-terminated explanation naming the pattern (and the conflicting one) is written to err
 * when it is not NULL (errlen bytes at most), kept in sl_error_detail() and logged at WARN. */
SL_API int sl_mux_handle(sl_mux *mux, const char *pattern, sl_handler_fn fn, void *arg,
                         const sl_route_opts *ro, char *err, size_t errlen);

/* The common case in one call: sl_mux_handle with default route options (a task route, the
 * mux's default timeout). Returns as sl_mux_handle; the explanation of a failure is in
 * sl_error_detail() and logged at WARN.
 *   sl_mux_handle_fn(mux, "GET /users/{id}", get_user, db);                  */
SL_API int sl_mux_handle_fn(sl_mux *mux, const char *pattern, sl_handler_fn fn, void *arg);

/* The same for an inline route (runs in the loop's callback, must not wait): /healthz,
 * /metrics. */
SL_API int sl_mux_handle_inline(sl_mux *mux, const char *pattern, sl_handler_fn fn, void *arg);

/* True when pattern is registered on mux, compared as text ("GET /items/{id}" as it was given
 * to sl_mux_handle). For middleware checks (sl_mw_check_fn). Threads: any. */
SL_API bool sl_mux_has_pattern(const sl_mux *mux, const char *pattern);

/* Appends a middleware to the chain (the first added is the outermost: its before runs first
 * and its after runs last). The struct is copied. Returns 0, SL_EINVAL (both hooks NULL),
 * SL_EBUSY (already used by a server) or SL_ENOMEM; sl_error_detail() says which. The
 * standard middleware have one-call forms: sl_mux_use_request_id, sl_mux_use_access_log,
 * sl_mw_metrics_use (mw_metrics.h), sl_mw_ratelimit_use (mw_ratelimit.h).
 * Order: put metrics and the access log before (outside) the rate limiter, so the requests it
 * rejects are counted and logged. */
SL_API int sl_mux_use(sl_mux *mux, const sl_middleware *mw);

/* ---- standard middleware ------------------------------------------------------------------ */

/* Longest X-Request-Id accepted from a client; longer or non-printable ones are replaced. */
#define SL_REQUEST_ID_MAX 64

/* Fills *out with the request-id middleware: takes the client's X-Request-Id when it is 1..64
 * bytes of [A-Za-z0-9._:-], else generates one (16 hex digits, unique per process), stores it
 * (sl_req_request_id) and echoes it as X-Request-Id on the response. Never fails. */
SL_API void sl_mw_request_id(sl_middleware *out);

/* Fills *out with the access-log middleware: one INFO line per request on lg (NULL = the
 * default logger), written from the after hook:
 *   msg="request" method=GET path=/users/7 route="GET /users/{id}" status=200 bytes=42
 *   dur=1.2ms remote=127.0.0.1:5000 request_id=...
 * (route is the route's name, "-" when unmatched; request_id only with the request-id
 * middleware before it). lg must outlive the mux. Never fails. */
SL_API void sl_mw_access_log(sl_logger *lg, sl_middleware *out);

/* sl_mw_request_id + sl_mux_use, and sl_mw_access_log + sl_mux_use. Return as sl_mux_use. */
SL_API int sl_mux_use_request_id(sl_mux *mux);
SL_API int sl_mux_use_access_log(sl_mux *mux, sl_logger *lg);

SL_END_DECLS

#endif /* SLUICE_MUX_H */
