/* JSON request bodies in, JSON responses out, on jansson (Go's json.NewDecoder(r.Body).Decode
 * and json.NewEncoder(w).Encode, with the 400 written for you).
 *
 *   static void create(sl_req *req, sl_resp *resp, void *arg)
 *   {
 *       json_t *in;
 *       if (sl_json_read_body(req, resp, NULL, &in) < 0) return; // 400/413 already written
 *       const char *name = json_string_value(json_object_get(in, "name"));
 *       ...
 *       sl_json_write_new(resp, 201, json_pack("{s:s}", "name", name ? name : ""));
 *       json_decref(in);
 *   }
 *
 * The values are jansson's json_t: include <jansson.h> to work with them and link jansson
 * (pkg-config jansson). This header does not include <jansson.h> itself (public headers
 * include only standard and sluice headers): it declares the json_t type name only,
 * which C11 lets jansson's own identical typedef repeat. Threads: the handler's thread. */
#ifndef SLUICE_JSON_H
#define SLUICE_JSON_H

#include "sluice/common.h"
#include "sluice/request.h"

SL_BEGIN_DECLS

typedef struct json_t json_t; /* jansson's value type (same typedef as <jansson.h>) */

/* Limits for sl_json_read_body. Zero-initialize; each 0 means the default next to it. */
typedef struct sl_json_opts {
    size_t max_bytes; /* body bytes; 0 = no limit beyond the route's/server's body limit; more
                         -> 413 */
    int max_depth;    /* nesting of arrays and objects; 0 = 64; deeper -> 400 */
} sl_json_opts;

/* Parses the request body as one JSON value (any type; use json_is_object to require an
 * object). On success returns 0 and *out, a new reference the caller releases with
 * json_decref. On failure *out is NULL and the response is already set, so the handler only
 * returns:
 *   400 {"error":"invalid JSON at line L, column C: <jansson's reason>"} for malformed JSON,
 *       an empty body, trailing data, or an object with a duplicate key (SL_EPARSE);
 *   400 {"error":"JSON nested deeper than N levels at line L, column C"} (SL_ERANGE);
 *   413 {"error":"JSON body larger than N bytes"} (SL_EMSGSIZE);
 *   500 {"error":"out of memory"} (SL_ENOMEM).
 * opts may be NULL (defaults). Does not block (the server has read the body already). */
SL_API int sl_json_read_body(sl_req *req, sl_resp *resp, const sl_json_opts *opts, json_t **out);

/* Sets status, Content-Type: application/json and the body to v serialized compactly. v is
 * borrowed. Returns 0, SL_EINVAL (v NULL, bad status) or SL_ENOMEM (then the response is a 500
 * {"error":"out of memory"}). */
SL_API int sl_json_write(sl_resp *resp, int status, const json_t *v);

/* As sl_json_write, but takes ownership of v (released before returning, whatever happens), so
 * a json_pack(...) result can be passed directly. v NULL (json_pack failed) answers 500
 * {"error":"cannot build the JSON response"} and returns SL_ENOMEM. */
SL_API int sl_json_write_new(sl_resp *resp, int status, json_t *v);

SL_END_DECLS

#endif /* SLUICE_JSON_H */
