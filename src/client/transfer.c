/* One transfer's setup and results: the easy-handle options a request turns into, the write
 * and header callbacks that fill sl_client_resp, and the mapping from curl's result codes to
 * sluice's error vocabulary.
 *
 * The body is capped while it arrives: CURLOPT_MAXFILESIZE rejects an announced Content-Length
 * above the cap before any byte is read, and the write callback rejects a chunked or
 * close-delimited body the moment it crosses the cap (returning short makes curl stop with
 * CURLE_WRITE_ERROR, which cb_err turns back into SL_ETOOLARGE). Headers are kept for the final
 * response only: a status line (a 100 Continue, a followed redirect) starts the block afresh.
 * Everything here runs on the client's loop thread. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "client/client_int.h"

#define HDR_MAX (256 * 1024) /* response header bytes kept; curl caps each line at 100 KiB */

/* Grows *buf (capacity *cap) to hold need+1 bytes. Returns false on overflow or OOM. */
static bool grow(char **buf, size_t *cap, size_t need)
{
    if (need + 1 <= *cap) return true;
    size_t n = *cap ? *cap : 1024;
    while (n < need + 1) {
        if (n > SIZE_MAX / 2) return false;
        n *= 2;
    }
    char *p = realloc(*buf, n);
    if (!p) return false;
    *buf = p;
    *cap = n;
    return true;
}

static size_t on_write(char *data, size_t size, size_t nmemb, void *arg)
{
    sl__call *k = arg;
    size_t len = size * nmemb;
    if (k->req->on_body) {
        int rc = k->req->on_body(data, len, k->req->on_body_arg);
        if (rc < 0) {
            k->cb_err = rc;
            return 0;
        }
        return len;
    }
    sl_client_resp *r = k->resp;
    if (len > k->max_body - r->body_len) {
        k->cb_err = SL_ETOOLARGE;
        return 0;
    }
    if (!grow(&r->body, &k->body_cap, r->body_len + len)) {
        k->cb_err = SL_ENOMEM;
        return 0;
    }
    memcpy(r->body + r->body_len, data, len);
    r->body_len += len;
    r->body[r->body_len] = 0;
    return len;
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *arg)
{
    sl__call *k = arg;
    size_t len = size * nmemb;
    sl_client_resp *r = k->resp;
    if (len >= 5 && memcmp(data, "HTTP/", 5) == 0) {
        r->headers_len = 0; /* a new response head: keep only the final one */
        return len;
    }
    if (len <= 2) return len; /* the blank line that ends the head */
    if (r->headers_len + len > HDR_MAX) {
        k->cb_err = SL_ETOOLARGE;
        return 0;
    }
    if (!grow(&r->headers, &k->hdr_cap, r->headers_len + len)) {
        k->cb_err = SL_ENOMEM;
        return 0;
    }
    memcpy(r->headers + r->headers_len, data, len);
    r->headers_len += len;
    r->headers[r->headers_len] = 0;
    return len;
}

/* Rejects header names and values that would split or smuggle a header line. */
static bool header_ok(const sl_client_header *h)
{
    if (!h->name || !h->value || !h->name[0]) return false;
    for (const char *p = h->name; *p; p++)
        if (*p <= ' ' || *p == ':' || *p == 0x7f) return false;
    return strpbrk(h->value, "\r\n") == NULL;
}

static int add_headers(sl__call *k)
{
    const sl_client_req *q = k->req;
    char line[1024];
    char *big = NULL;
    for (size_t i = 0; i < q->nheaders; i++) {
        const sl_client_header *h = &q->headers[i];
        if (!header_ok(h)) {
            snprintf(k->errbuf, sizeof k->errbuf, "invalid request header #%zu", i);
            return SL_EINVAL;
        }
        size_t n = strlen(h->name) + strlen(h->value) + 3;
        char *s = line;
        if (n > sizeof line && !(s = big = malloc(n))) return SL_ENOMEM;
        snprintf(s, n, "%s: %s", h->name, h->value);
        struct curl_slist *l = curl_slist_append(k->hdrs, s);
        free(big);
        big = NULL;
        if (!l) return SL_ENOMEM;
        k->hdrs = l;
    }
    /* curl would send "Expect: 100-continue" for large bodies and wait for the 100; Go never
     * does. An empty value removes curl's header. */
    if (q->body) {
        struct curl_slist *l = curl_slist_append(k->hdrs, "Expect:");
        if (!l) return SL_ENOMEM;
        k->hdrs = l;
    }
    return 0;
}

static int set_method(sl__call *k, CURL *e)
{
    const sl_client_req *q = k->req;
    const char *m = q->method ? q->method : (q->body ? "POST" : "GET");
    for (const char *p = m; *p; p++)
        if (*p <= ' ' || *p == 0x7f) return SL_EINVAL;
    if (!m[0]) return SL_EINVAL;
    if (q->body) {
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)q->body_len);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, q->body);
        if (strcmp(m, "POST") != 0) curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, m);
    } else if (strcmp(m, "HEAD") == 0) {
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    } else if (strcmp(m, "GET") != 0) {
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, m);
    }
    return 0;
}

static long ms_of(int64_t ns)
{
    int64_t ms = (ns + 999999) / 1000000;
    return ms > 0x7fffffff ? 0x7fffffff : (long)ms;
}

int sl__client_setup(sl__call *k, CURL *e, const sl_client_opts *o, const char *noproxy)
{
    const sl_client_req *q = k->req;
    if (!q->url || (q->body_len && !q->body)) return SL_EINVAL;
    int rc = set_method(k, e);
    if (rc < 0) {
        snprintf(k->errbuf, sizeof k->errbuf, "invalid method");
        return rc;
    }
    if ((rc = add_headers(k)) < 0) return rc;
    if (curl_easy_setopt(e, CURLOPT_URL, q->url) != CURLE_OK) return SL_ENOMEM;
    curl_easy_setopt(e, CURLOPT_PRIVATE, k);
    sl__client_sock_opts(e, k->client);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, k->errbuf);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_NOPROXY, noproxy);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, k);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, k);
    if (k->hdrs) curl_easy_setopt(e, CURLOPT_HTTPHEADER, k->hdrs);
    curl_easy_setopt(e, CURLOPT_USERAGENT, o->user_agent);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, ms_of(o->connect_timeout_ns));
    int64_t t = q->timeout_ns > 0 ? q->timeout_ns : o->timeout_ns;
    if (t > 0) curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, ms_of(t));
    if (o->max_redirects > 0) {
        curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 1L);
        curl_easy_setopt(e, CURLOPT_MAXREDIRS, (long)o->max_redirects);
    }
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
    if (o->ca_file) curl_easy_setopt(e, CURLOPT_CAINFO, o->ca_file);
    if (!q->on_body) {
        k->max_body = o->max_response_bytes;
        curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)k->max_body);
    }
    return 0;
}

int sl__client_map_result(sl__call *k, CURLcode res)
{
    if (k->cb_err && (res == CURLE_WRITE_ERROR || res == CURLE_ABORTED_BY_CALLBACK ||
                      res == CURLE_FILESIZE_EXCEEDED || res == CURLE_OUT_OF_MEMORY))
        return k->cb_err;
    switch (res) {
    case CURLE_OK: return 0;
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
    case CURLE_BAD_FUNCTION_ARGUMENT: return SL_EINVAL;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY: return SL_EDNS;
    case CURLE_COULDNT_CONNECT: {
        long e = 0;
        curl_easy_getinfo(k->easy, CURLINFO_OS_ERRNO, &e);
        return e > 0 && e != ECONNREFUSED ? sl_from_errno((int)e) : SL_ECONNREFUSED;
    }
    case CURLE_OPERATION_TIMEDOUT: return SL_ETIMEDOUT;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_ENGINE_INITFAILED:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_SHUTDOWN_FAILED:
    case CURLE_USE_SSL_FAILED: return SL_ETLS;
    case CURLE_FILESIZE_EXCEEDED: return SL_ETOOLARGE;
    case CURLE_OUT_OF_MEMORY: return SL_ENOMEM;
    case CURLE_GOT_NOTHING:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_PARTIAL_FILE: return SL_ECONNRESET;
    case CURLE_WEIRD_SERVER_REPLY:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_TOO_MANY_REDIRECTS:
    case CURLE_BAD_CONTENT_ENCODING: return SL_EPROTO;
    default: return SL_EIO;
    }
}

const char *sl_client_resp_header(const sl_client_resp *resp, const char *name, size_t *len)
{
    if (!resp || !resp->headers || !name) return NULL;
    size_t nl = strlen(name);
    const char *p = resp->headers, *end = resp->headers + resp->headers_len;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol) eol = end;
        const char *colon = memchr(p, ':', (size_t)(eol - p));
        if (colon && (size_t)(colon - p) == nl && strncasecmp(p, name, nl) == 0) {
            const char *v = colon + 1, *ve = eol;
            while (v < ve && (*v == ' ' || *v == '\t'))
                v++;
            while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t'))
                ve--;
            if (len) *len = (size_t)(ve - v);
            return v;
        }
        p = eol + 1;
    }
    return NULL;
}

void sl_client_resp_destroy(sl_client_resp *resp)
{
    if (!resp) return;
    free(resp->headers);
    free(resp->body);
    memset(resp, 0, sizeof *resp);
}
