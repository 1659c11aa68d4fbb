/* The request and response API (include/sluice/request.h): every sl_req_* and sl_resp_*
 * function but the two streaming calls, sl_resp_stream_begin/write, which live in handler.c
 * with the pooled/task request machinery they drive (they post chunks to the owning loop and
 * wait on its back-pressure). The views of the request (method, target, headers, body) point
 * into the connection's buffer (conn.c parses it there); the response is built here and
 * serialized by conn.c when the request ends. Here too: the request ctx, path values, decoded
 * query, multi-value headers, the per-request arena and request-scoped values, the request id
 * and the peer address as an sl_ipkey; response headers (add, replace, delete), buffered
 * writes, JSON helpers and the one Retry-After of src/http.
 *
 * The arena is a list of blocks (h2o's pool): allocation bumps a pointer, the end of the
 * request frees every block at once, so handlers and middleware can allocate freely without
 * tracking lifetimes. The query is decoded lazily, once, into the arena: requests that never
 * ask pay nothing. The peer address comes from sl_req_remote_addr's text ("1.2.3.4:5",
 * "[::1]:5"): the request keeps no sockaddr of its own, and parsing a short literal is cheap.
 * Everything here runs on the one thread that owns the request at the time (the reactor, a
 * task route's task, or the handler thread of a pooled request). */
#include <stdarg.h>
#include <stdalign.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <arpa/inet.h>
#include <sys/socket.h>

#include "sluice/clock.h"
#include "sluice/error.h"
#include "http/http_int.h"

/* ---- arena -------------------------------------------------------------------------------- */

#define ARENA_BLOCK 4096u

struct sl__arena {
    sl__arena *next;
    size_t cap, used; /* bytes of data[] */
    alignas(max_align_t) unsigned char data[];
};

void *sl_req_alloc(sl_req *req, size_t n)
{
    if (n == 0 || n > SIZE_MAX / 2) return NULL;
    const size_t al = alignof(max_align_t);
    n = (n + al - 1) & ~(al - 1);
    if (sizeof req->arena0 - req->arena0_used >= n) {
        void *p = req->arena0 + req->arena0_used;
        req->arena0_used += (uint32_t)n;
        return p;
    }
    sl__arena *a = req->arena;
    if (!a || a->cap - a->used < n) {
        size_t cap = n > ARENA_BLOCK - sizeof *a ? n : ARENA_BLOCK - sizeof *a;
        sl__arena *b = malloc(sizeof *b + cap);
        if (!b) return NULL;
        b->cap = cap;
        b->used = 0;
        /* A big one-off block goes behind the current one so the current keeps serving small
         * allocations. */
        if (a && n > ARENA_BLOCK / 2) {
            b->next = a->next;
            a->next = b;
        } else {
            b->next = a;
            req->arena = b;
        }
        a = b;
    }
    void *p = a->data + a->used;
    a->used += n;
    return p;
}

void sl__req_end(sl_req *req)
{
    if (req->ctx) {
        sl_ctx_cancel(req->ctx);
        sl_ctx_release(req->ctx);
        req->ctx = NULL;
    }
    while (req->arena) {
        sl__arena *a = req->arena;
        req->arena = a->next;
        free(a);
    }
}

/* ---- request -------------------------------------------------------------------------------- */

/* Every view below ends where the parser found a delimiter that the handler API never exposes:
 * the SP after the method and the target, the ':' after a header name, the whitespace or CR
 * after a header value. Writing a
 * NUL there makes the views C strings at the cost of one store each, and no copy. The parser
 * already checked the whole head, so nothing reads those delimiters again. */
void sl__req_terminate(const sl_http_req_head *h)
{
    ((char *)h->method)[h->method_len] = '\0';
    ((char *)h->target)[h->target_len] = '\0';
    for (uint32_t i = 0; i < h->num_headers; i++) {
        ((char *)h->headers[i].name)[h->headers[i].name_len] = '\0'; /* over the ':' */
        ((char *)h->headers[i].value)[h->headers[i].value_len] = '\0';
    }
}

const char *sl_req_method(const sl_req *req, size_t *len)
{
    *len = req->h->method_len;
    return req->h->method;
}

const char *sl_req_target(const sl_req *req, size_t *len)
{
    *len = req->h->target_len;
    return req->h->target;
}

const char *sl_req_path(const sl_req *req, size_t *len)
{
    *len = req->path_len;
    return req->h->path;
}

const char *sl_req_query(const sl_req *req, size_t *len)
{
    *len = req->query_len;
    return req->query;
}

const char *sl_req_header(const sl_req *req, const char *name, size_t *len)
{
    const sl_http_header *hd = sl_http_find_header(req->h, name, strlen(name));
    if (len) *len = hd ? hd->value_len : 0;
    return hd ? hd->value : NULL;
}

size_t sl_req_header_count(const sl_req *req)
{
    return req->h->num_headers;
}

int sl_req_header_at(const sl_req *req, size_t i, const char **name, size_t *name_len,
                     const char **value, size_t *value_len)
{
    if (i >= req->h->num_headers) return SL_ERANGE;
    const sl_http_header *hd = &req->h->headers[i];
    *name = hd->name;
    *name_len = hd->name_len;
    *value = hd->value;
    *value_len = hd->value_len;
    return 0;
}

const void *sl_req_body(const sl_req *req, size_t *len)
{
    *len = req->body_len;
    return req->body;
}

int sl_req_version(const sl_req *req)
{
    return req->h->version_minor ? 11 : 10;
}

const char *sl_req_remote_addr(sl_req *req)
{
    if (req->addr[0]) return req->addr;
    const struct sockaddr_in6 *s6 = &req->c->peer;
    char ip[INET6_ADDRSTRLEN] = "?";
    if (s6->sin6_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)(const void *)s6;
        inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof ip);
        snprintf(req->addr, sizeof req->addr, "%s:%u", ip, ntohs(s4->sin_port));
    } else {
        inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof ip);
        snprintf(req->addr, sizeof req->addr, "[%s]:%u", ip, ntohs(s6->sin6_port));
    }
    return req->addr;
}

const char *sl_req_path_str(sl_req *req)
{
    const char *p = req->h->path;
    if (!req->query) return p; /* the path ends the target: terminated */
    char *d = sl_req_alloc(req, req->path_len + 1);
    if (!d) return NULL;
    memcpy(d, p, req->path_len);
    d[req->path_len] = '\0';
    return d;
}

sl_ctx *sl_req_ctx(sl_req *req)
{
    if (req->ctx) return req->ctx;
    sl_ctx *root = req->c->w->srv->root;
    int rc = req->rt && req->rt->timeout_ns > 0
                 ? sl_ctx_with_timeout(root, req->rt->timeout_ns, &req->ctx)
                 : sl_ctx_with_cancel(root, &req->ctx);
    return rc < 0 ? NULL : req->ctx;
}

const char *sl_req_path_value(const sl_req *req, const char *name, size_t *len)
{
    size_t dummy;
    if (!len) len = &dummy;
    *len = 0;
    if (!req->m || req->m->status != 200) return NULL;
    return sl_route_param_get(req->m, name, len);
}

const char *sl_req_pattern(const sl_req *req)
{
    return req->m && req->m->status == 200 ? req->m->pattern : NULL;
}

const char *sl_req_route_name(const sl_req *req)
{
    return req->rt ? req->rt->name : NULL;
}

int64_t sl_req_start_ns(const sl_req *req)
{
    return req->start_ns;
}

static int hexv(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Form-decodes s[0..n) into the arena ('+' -> ' ', %XX; a malformed escape stays as is). */
static const char *qdecode(sl_req *req, const char *s, size_t n, size_t *out_len)
{
    char *d = sl_req_alloc(req, n + 1);
    if (!d) return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        int hi, lo;
        if (s[i] == '+') {
            d[k++] = ' ';
        } else if (s[i] == '%' && i + 2 < n && (hi = hexv(s[i + 1])) >= 0 &&
                   (lo = hexv(s[i + 2])) >= 0) {
            d[k++] = (char)(hi * 16 + lo);
            i += 2;
        } else {
            d[k++] = s[i];
        }
    }
    d[k] = '\0';
    *out_len = k;
    return d;
}

static int query_parse(sl_req *req)
{
    if (req->nqp >= 0) return req->nqp;
    const char *q = req->query;
    size_t n = req->query_len, cnt = 0;
    for (size_t i = 0; i < n; i++)
        if (q[i] == '&') cnt++;
    cnt++;
    sl__qpair *qp = n ? sl_req_alloc(req, cnt * sizeof *qp) : NULL;
    if (n && !qp) return SL_ENOMEM;
    int k = 0;
    size_t i = 0;
    while (i < n) {
        const char *amp = memchr(q + i, '&', n - i);
        size_t end = amp ? (size_t)(amp - q) : n;
        if (end > i) { /* empty pieces ("a&&b") are skipped, as Go does */
            const char *eq = memchr(q + i, '=', end - i);
            size_t nend = eq ? (size_t)(eq - q) : end;
            sl__qpair *p = &qp[k];
            p->name = qdecode(req, q + i, nend - i, &p->name_len);
            p->value = eq ? qdecode(req, eq + 1, end - nend - 1, &p->value_len) : "";
            if (!eq) p->value_len = 0;
            if (!p->name || !p->value) return SL_ENOMEM;
            k++;
        }
        i = end + 1;
    }
    req->qp = qp;
    req->nqp = k;
    return k;
}

const char *sl_req_query_value(sl_req *req, const char *name, size_t *len)
{
    size_t dummy;
    if (!len) len = &dummy;
    *len = 0;
    int n = query_parse(req);
    size_t nl = strlen(name);
    for (int i = 0; i < n; i++) {
        if (req->qp[i].name_len == nl && memcmp(req->qp[i].name, name, nl) == 0) {
            *len = req->qp[i].value_len;
            return req->qp[i].value;
        }
    }
    return NULL;
}

int sl_req_query_count(sl_req *req)
{
    return query_parse(req);
}

int sl_req_query_at(sl_req *req, size_t i, const char **name, size_t *name_len, const char **value,
                    size_t *value_len)
{
    int n = query_parse(req);
    if (n < 0) return n;
    if (i >= (size_t)n) return SL_ERANGE;
    *name = req->qp[i].name;
    *name_len = req->qp[i].name_len;
    *value = req->qp[i].value;
    *value_len = req->qp[i].value_len;
    return 0;
}

size_t sl_req_header_values(const sl_req *req, const char *name, const char **values, size_t *lens,
                            size_t max)
{
    size_t nl = strlen(name), found = 0;
    for (uint32_t i = 0; i < req->h->num_headers; i++) {
        const sl_http_header *hd = &req->h->headers[i];
        if (hd->name_len != nl || strncasecmp(hd->name, name, nl) != 0) continue;
        if (found < max) {
            values[found] = hd->value;
            if (lens) lens[found] = hd->value_len;
        }
        found++;
    }
    return found;
}

int sl_req_set_value(sl_req *req, const void *key, void *value)
{
    for (uint32_t i = 0; i < req->nvals; i++) {
        if (req->vals[i].key == key) {
            req->vals[i].value = value;
            return 0;
        }
    }
    if (req->nvals == SL_REQ_MAX_VALUES) return SL_ENOSPC;
    req->vals[req->nvals].key = key;
    req->vals[req->nvals].value = value;
    req->nvals++;
    return 0;
}

void *sl_req_get_value(const sl_req *req, const void *key)
{
    for (uint32_t i = 0; i < req->nvals; i++)
        if (req->vals[i].key == key) return req->vals[i].value;
    return NULL;
}

const char *sl_req_request_id(const sl_req *req)
{
    return sl_req_get_value(req, &sl__rid_key);
}

int sl_req_peer_ipkey(sl_req *req, sl_ipkey *out)
{
    const char *a = sl_req_remote_addr(req);
    if (!a) return SL_EPARSE;
    size_t n = strlen(a);
    if (a[0] == '[') {
        const char *e = memchr(a, ']', n);
        if (!e) return SL_EPARSE;
        return sl_ipkey_parse(a + 1, (size_t)(e - a - 1), out);
    }
    const char *colon = memchr(a, ':', n);
    return sl_ipkey_parse(a, colon ? (size_t)(colon - a) : n, out);
}

/* ---- response ------------------------------------------------------------------------------- */

void sl__resp_init(sl_resp *rp)
{
    memset(rp, 0, sizeof *rp);
    rp->status = 200;
}

void sl__resp_release(sl_resp *rp)
{
    free(rp->hdrs);
    free(rp->copy);
    rp->hdrs = rp->copy = NULL;
    rp->hcap = rp->copy_cap = 0;
}

void sl__resp_reset(sl_resp *rp)
{
    if (rp->copy_cap > SL__COPY_MAX) { /* a big copy that was not handed over (HEAD) */
        free(rp->copy);
        rp->copy = NULL;
        rp->copy_cap = 0;
    }
    rp->status = 200;
    rp->close = false;
    rp->hlen = 0;
    rp->ctype[0] = '\0';
    rp->body = NULL;
    rp->body_len = 0;
    rp->touched = false;
    rp->streamed = 0;
}

int sl_resp_set_status(sl_resp *resp, int status)
{
    if (status < 100 || status > 999) return SL_EINVAL;
    resp->status = status;
    resp->touched = true;
    return 0;
}

static bool valid_value(const char *v)
{
    for (; *v; v++)
        if (*v == '\r' || *v == '\n') return false;
    return true;
}

int sl_resp_set_content_type(sl_resp *resp, const char *type)
{
    size_t n = strlen(type);
    if (n >= sizeof resp->ctype || !valid_value(type)) return SL_EINVAL;
    memcpy(resp->ctype, type, n + 1);
    return 0;
}

int sl_resp_add_header(sl_resp *resp, const char *name, const char *value)
{
    size_t nl = strlen(name), vl = strlen(value);
    if (nl == 0 || !valid_value(value)) return SL_EINVAL;
    for (size_t i = 0; i < nl; i++)
        if (!sl__http_is_tchar((unsigned char)name[i])) return SL_EINVAL;
    if (!strcasecmp(name, "Content-Length") || !strcasecmp(name, "Transfer-Encoding") ||
        !strcasecmp(name, "Date"))
        return SL_EINVAL;
    if (!strcasecmp(name, "Content-Type")) return sl_resp_set_content_type(resp, value);
    if (!strcasecmp(name, "Connection")) {
        /* The server owns connection management; the handler can only ask to close. */
        if (!strcasecmp(value, "close")) resp->close = true;
        return 0;
    }
    size_t need = nl + vl + 4;
    if (resp->hcap - resp->hlen < need) {
        size_t cap = resp->hcap ? resp->hcap * 2 : 256;
        while (cap - resp->hlen < need)
            cap *= 2;
        char *nb = realloc(resp->hdrs, cap);
        if (!nb) return SL_ENOMEM;
        resp->hdrs = nb;
        resp->hcap = cap;
    }
    char *p = resp->hdrs + resp->hlen;
    p = sl__put(p, name, nl);
    p = SL__PUTS(p, ": ");
    p = sl__put(p, value, vl);
    p = SL__PUTS(p, "\r\n");
    resp->hlen = (size_t)(p - resp->hdrs);
    return 0;
}

int sl_resp_set_body(sl_resp *resp, const void *data, size_t len)
{
    resp->touched = true;
    resp->body = NULL;
    resp->body_len = 0;
    if (len == 0) return 0;
    if (resp->copy_cap < len) {
        char *nb = malloc(len);
        if (!nb) return SL_ENOMEM;
        free(resp->copy);
        resp->copy = nb;
        resp->copy_cap = len;
    }
    memcpy(resp->copy, data, len);
    resp->body = resp->copy;
    resp->body_len = len;
    return 0;
}

int sl_resp_set_body_static(sl_resp *resp, const void *data, size_t len)
{
    resp->touched = true;
    resp->body = len ? data : NULL;
    resp->body_len = len;
    return 0;
}

int sl_resp_del_header(sl_resp *resp, const char *name)
{
    size_t nl = strlen(name);
    int removed = 0;
    if (!strcasecmp(name, "Content-Type") && resp->ctype[0]) {
        resp->ctype[0] = '\0';
        removed++;
    }
    size_t i = 0;
    while (i < resp->hlen) {
        char *line = resp->hdrs + i;
        char *eol = memchr(line, '\n', resp->hlen - i);
        size_t ll = (size_t)(eol - line) + 1;
        if (ll > nl + 1 && line[nl] == ':' && strncasecmp(line, name, nl) == 0) {
            memmove(line, line + ll, resp->hlen - i - ll);
            resp->hlen -= ll;
            removed++;
        } else {
            i += ll;
        }
    }
    return removed;
}

int sl_resp_set_header(sl_resp *resp, const char *name, const char *value)
{
    /* Validate first (through add on an empty name check) so a bad value removes nothing. */
    for (const char *v = value; *v; v++)
        if (*v == '\r' || *v == '\n') return SL_EINVAL;
    if (!*name) return SL_EINVAL;
    if (strcasecmp(name, "Content-Type") && strcasecmp(name, "Connection") &&
        strcasecmp(name, "Content-Length") && strcasecmp(name, "Transfer-Encoding") &&
        strcasecmp(name, "Date"))
        sl_resp_del_header(resp, name);
    return sl_resp_add_header(resp, name, value);
}

/* Makes the body a private, growable copy with room for extra more bytes. */
static int body_own(sl_resp *resp, size_t extra)
{
    size_t need = resp->body_len + extra;
    bool owned = resp->body && resp->body == resp->copy;
    if (owned && resp->copy_cap >= need) return 0;
    if (!owned && resp->copy && resp->copy_cap >= need) {
        /* A static body (never inside copy) or none: bring it into the copy buffer. */
        if (resp->body_len) memcpy(resp->copy, resp->body, resp->body_len);
        resp->body = resp->copy;
        return 0;
    }
    size_t cap = 256;
    while (cap < need)
        cap *= 2;
    char *nb = malloc(cap);
    if (!nb) return SL_ENOMEM;
    if (resp->body_len) memcpy(nb, resp->body, resp->body_len);
    free(resp->copy);
    resp->copy = nb;
    resp->copy_cap = cap;
    resp->body = nb;
    return 0;
}

int sl_resp_write(sl_resp *resp, const void *data, size_t len)
{
    if (resp->p && resp->p->streaming) return SL_EINVAL;
    resp->touched = true;
    if (len == 0) return 0;
    if (!resp->body) resp->body_len = 0;
    int rc = body_own(resp, len);
    if (rc < 0) return rc;
    memcpy(resp->copy + resp->body_len, data, len);
    resp->body_len += len;
    return 0;
}

int sl_resp_printf(sl_resp *resp, const char *fmt, ...)
{
    char small[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) return SL_EINVAL;
    if ((size_t)n < sizeof small) {
        int rc = sl_resp_write(resp, small, (size_t)n);
        return rc < 0 ? rc : n;
    }
    char *big = malloc((size_t)n + 1);
    if (!big) return SL_ENOMEM;
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    int rc = sl_resp_write(resp, big, (size_t)n);
    free(big);
    return rc < 0 ? rc : n;
}

int sl_resp_json(sl_resp *resp, int status, const char *json, size_t len)
{
    int rc = sl_resp_set_status(resp, status);
    if (rc < 0) return rc;
    sl_resp_set_content_type(resp, "application/json");
    resp->touched = true;
    return sl_resp_set_body(resp, json, len);
}

int sl_resp_error(sl_resp *resp, int status, const char *msg)
{
    if (status < 100 || status > 999) return SL_EINVAL;
    size_t n = strlen(msg);
    char small[256];
    char *buf = n * 6 + 16 <= sizeof small ? small : malloc(n * 6 + 16);
    if (!buf) return SL_ENOMEM;
    char *p = buf;
    p += sprintf(p, "{\"error\":\"");
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)msg[i];
        if (ch == '"' || ch == '\\') {
            *p++ = '\\';
            *p++ = (char)ch;
        } else if (ch == '\n') {
            p += sprintf(p, "\\n");
        } else if (ch < 0x20 || ch == 0x7f) {
            p += sprintf(p, "\\u%04x", ch);
        } else {
            *p++ = (char)ch;
        }
    }
    p += sprintf(p, "\"}");
    int rc = sl_resp_json(resp, status, buf, (size_t)(p - buf));
    if (buf != small) free(buf);
    return rc;
}

bool sl_resp_written(const sl_resp *resp)
{
    return resp->touched;
}

int sl_resp_status(const sl_resp *resp)
{
    return resp->status;
}

uint64_t sl_resp_bytes(const sl_resp *resp)
{
    return resp->streamed ? resp->streamed : resp->body_len;
}

size_t sl__retry_after_line(char *line, int64_t secs)
{
    return (size_t)snprintf(line, SL__RETRY_AFTER_MAX, "Retry-After: %lld\r\n",
                            (long long)(secs < 1 ? 1 : secs));
}

int sl__resp_retry_after(sl_resp *rp, int64_t secs)
{
    char line[SL__RETRY_AFTER_MAX];
    size_t n = sl__retry_after_line(line, secs);
    line[n - 2] = '\0'; /* the value alone, without CRLF */
    return sl_resp_set_header(rp, "Retry-After", line + sizeof "Retry-After: " - 1);
}

bool sl_req_may_wait(const sl_req *req)
{
    return req->may_wait;
}
