/* sl_router: request routing with Go 1.22 net/http.ServeMux pattern semantics.
 *
 * A pattern is "[METHOD ]/path" where the path is made of segments:
 *   /users/{id}        {name} matches exactly one non-empty segment
 *   /files/{path...}   {name...} (last segment only) matches the rest of the path, maybe empty
 *   /static/           a trailing slash matches the whole subtree below it
 *   /posts/{$}         {$} (last segment only) matches only the path ending in that slash
 * "GET /x" also serves HEAD requests; a pattern with no method matches every method.
 *
 * Precedence is Go's: when two patterns match a request, the more specific one wins — the one
 * that matches a strict subset of the other's requests (a literal segment is more specific than
 * a wildcard; a method is more specific than none). Two patterns that overlap without one being
 * more specific than the other (e.g. "GET /" and "/index.html", or "/a/{x}" and "/{y}/b") are
 * rejected at registration with SL_ECONFLICT and a message naming both, as Go panics there.
 *
 * Matching is done on the escaped path, segment by segment, as Go does: the path is split on '/'
 * first and each segment is then percent-decoded, so "%2F" never splits a segment; wildcard
 * values are the decoded text. A path that is not clean ("//", "/./", "/../") gets a 301 to its
 * clean form; "/dir" gets a 301 to "/dir/" when only the subtree pattern "/dir/" would match;
 * a path that matches patterns for other methods only gets 405 with the Allow list.
 *
 * Threads: register every route before serving; after that sl_router_match may run on any
 * number of threads at once (it only reads). sl_router_add is not thread-safe. */
#ifndef SLUICE_ROUTER_H
#define SLUICE_ROUTER_H

#include "sluice/common.h"

SL_BEGIN_DECLS

typedef struct sl_router sl_router;

/* Most wildcards one pattern may hold. */
#define SL_ROUTER_MAX_PARAMS 16

typedef struct sl_route_param {
    const char *name; /* points into the router (lives as long as it); not NUL-terminated */
    size_t name_len;
    const char *value; /* decoded value, in the caller's scratch buffer */
    size_t value_len;
} sl_route_param;

/* The outcome of a match. status says what to do:
 *   200: handler/pattern are set, params hold the wildcard values;
 *   301: redirect to location (a clean path, or the subtree's slash form), query not included;
 *   404: nothing matches the path;
 *   405: patterns match the path for other methods only; allow lists them ("GET, HEAD, POST").
 * location and allow point into the scratch buffer. */
typedef struct sl_route_match {
    int status;
    void *handler;       /* the value registered with the winning pattern */
    const char *pattern; /* the winning pattern's text, NUL-terminated, owned by the router */
    size_t nparams;
    sl_route_param params[SL_ROUTER_MAX_PARAMS];
    const char *location;
    size_t location_len;
    const char *allow;
    size_t allow_len;
} sl_route_match;

/* Creates an empty router. Returns 0 or SL_ENOMEM (*out untouched). */
SL_API int sl_router_new(sl_router **out);

/* Frees the router and its patterns (not the handlers: they are the caller's). NULL is ok. */
SL_API void sl_router_free(sl_router *r);

/* Registers handler (opaque to the router; must not be NULL) under pattern. Returns 0;
 * SL_EINVAL for a malformed pattern (bad method token, path not starting with '/', empty or
 * unterminated wildcard, "{x...}" or "{$}" not last, a name used twice, too many wildcards);
 * SL_ECONFLICT when it overlaps an existing pattern without either being more specific, or
 * duplicates one; SL_ENOMEM. On failure nothing is registered and, if err is not NULL, a
 * NUL-terminated explanation is written to err (errlen bytes at most). Not thread-safe. */
SL_API int sl_router_add(sl_router *r, const char *pattern, void *handler, char *err,
                         size_t errlen);

/* Finds the route for method + path (path without the query, still percent-encoded, as it
 * came on the request line). Fills *m and returns m->status (200, 301, 404, 405), or
 * SL_ENOSPC when scratch (for decoded values, the redirect location and the Allow list) is too
 * small, or SL_EINVAL for a path that does not start with '/' or has bad percent-encoding
 * (answer 400). scratch needs at most 7 * path_len + 256 bytes. Threads: any, concurrently.
 * Does not block or allocate. */
SL_API int sl_router_match(const sl_router *r, const char *method, size_t method_len,
                           const char *path, size_t path_len, sl_route_match *m, char *scratch,
                           size_t scratch_len);

/* True when pattern was registered with sl_router_add, compared as text (the pattern a
 * match reports in m->pattern). Threads: any, concurrently with matches. */
SL_API bool sl_router_has(const sl_router *r, const char *pattern);

/* Returns the value of the wildcard called name in a 200 match, or NULL. *len gets its length. */
SL_API const char *sl_route_param_get(const sl_route_match *m, const char *name, size_t *len);

SL_END_DECLS

#endif /* SLUICE_ROUTER_H */
