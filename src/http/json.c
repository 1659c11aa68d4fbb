/* JSON helpers for handlers, on jansson: the request body parsed with limits and a 400 that
 * says where parsing stopped, and a JSON value written as the response.
 *
 * jansson has no runtime nesting limit (only a compile-time 2048), so the depth is checked by
 * one pass over the bytes before parsing: brackets outside strings are counted, and the line
 * and column of the first one past the limit go in the answer. The pass also rejects early
 * what would have cost jansson a deep recursion. Sizes are bytes; columns are 1-based bytes in
 * the depth message and jansson's (characters) in parse errors. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/error.h"
#include "sluice/json.h"

#define DEFAULT_DEPTH 64

/* Returns 0, or the offset of the first bracket that opens level max + 1, plus one. */
static size_t too_deep(const char *s, size_t n, int max)
{
    int depth = 0;
    bool in_str = false;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (in_str) {
            if (ch == '\\')
                i++;
            else if (ch == '"')
                in_str = false;
        } else if (ch == '"') {
            in_str = true;
        } else if (ch == '[' || ch == '{') {
            if (++depth > max) return i + 1;
        } else if (ch == ']' || ch == '}') {
            depth--;
        }
    }
    return 0;
}

static void line_col(const char *s, size_t off, int *line, int *col)
{
    *line = 1;
    *col = 1;
    for (size_t i = 0; i < off; i++) {
        if (s[i] == '\n') {
            (*line)++;
            *col = 1;
        } else {
            (*col)++;
        }
    }
}

int sl_json_read_body(sl_req *req, sl_resp *resp, const sl_json_opts *opts, json_t **out)
{
    *out = NULL;
    sl_json_opts o = opts ? *opts : (sl_json_opts){0};
    int max_depth = o.max_depth > 0 ? o.max_depth : DEFAULT_DEPTH;
    size_t n;
    const char *s = sl_req_body(req, &n);
    char msg[320];
    if (o.max_bytes && n > o.max_bytes) {
        snprintf(msg, sizeof msg, "JSON body larger than %zu bytes", o.max_bytes);
        sl_resp_error(resp, 413, msg);
        return SL_EMSGSIZE;
    }
    size_t deep = s ? too_deep(s, n, max_depth) : 0;
    if (deep) {
        int line, col;
        line_col(s, deep - 1, &line, &col);
        snprintf(msg, sizeof msg, "JSON nested deeper than %d levels at line %d, column %d",
                 max_depth, line, col);
        sl_resp_error(resp, 400, msg);
        return SL_ERANGE;
    }
    json_error_t je;
    /* Duplicate keys are refused: with "last one wins" two readers of one document (a proxy's
     * check and this handler) can disagree about what it says. */
    json_t *v = json_loadb(s ? s : "", n, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &je);
    if (!v) {
        if (json_error_code(&je) == json_error_out_of_memory) {
            sl_resp_error(resp, 500, "out of memory");
            return SL_ENOMEM;
        }
        snprintf(msg, sizeof msg, "invalid JSON at line %d, column %d: %s", je.line, je.column,
                 je.text);
        sl_resp_error(resp, 400, msg);
        return SL_EPARSE;
    }
    *out = v;
    return 0;
}

int sl_json_write(sl_resp *resp, int status, const json_t *v)
{
    if (!v || status < 100 || status > 999) return SL_EINVAL;
    char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!text) {
        sl_resp_error(resp, 500, "out of memory");
        return SL_ENOMEM;
    }
    int rc = sl_resp_json(resp, status, text, strlen(text));
    free(text);
    return rc;
}

int sl_json_write_new(sl_resp *resp, int status, json_t *v)
{
    if (!v) {
        sl_resp_error(resp, 500, "cannot build the JSON response");
        return SL_ENOMEM;
    }
    int rc = sl_json_write(resp, status, v);
    json_decref(v);
    return rc;
}
