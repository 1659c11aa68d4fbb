/* sl_req and sl_resp: the request and response API every handler and middleware uses — the
 * request's views (method, target, headers, body, query, path values), its ctx, arena and
 * request-scoped values, and the response's status, headers, body and streaming. One header for
 * what a handler sees, whoever calls it: a plain sl_server_opts.handler (server.h) or a route of
 * an sl_mux (mux.h), inline, in a task or on a handler thread. server.h and mux.h include it, so
 * a program that includes either needs nothing more.
 *
 * Threads: the request's current thread (the handler's, or a hook's) unless a function says
 * otherwise. */
#ifndef SLUICE_REQUEST_H
#define SLUICE_REQUEST_H

#include "sluice/common.h"
#include "sluice/ctx.h"
#include "sluice/ipkey.h"

SL_BEGIN_DECLS

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

/* True when the caller (a before hook, a handler) runs off the reactor — in a task route's task
 * or on a pooled route's handler thread — so it may wait; false on the reactor (inline routes,
 * before hooks of pooled routes and of unmatched requests, every after hook): there it must not
 * block (a limiter would take its local decision instead of a network round trip). Threads:
 * the request's current thread. Does not block. */
SL_API bool sl_req_may_wait(const sl_req *req);

/* The peer address of req as an sl_ipkey (parsed from sl_req_remote_addr). Returns 0, or
 * SL_EPARSE when the peer has no IP address. For applications that key things by client. */
SL_API int sl_req_peer_ipkey(sl_req *req, sl_ipkey *out);

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

#endif /* SLUICE_REQUEST_H */
