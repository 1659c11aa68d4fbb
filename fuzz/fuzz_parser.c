/* libFuzzer target for the HTTP request parser: the head parser and the chunked decoder.
 *
 * The first input byte steers the run (which limits, where to split); the rest is the
 * request. Besides "no crash, no sanitizer report" it checks the parser's promises and traps
 * when one breaks:
 *   - a prefix of the input gives SL_EAGAIN or the same answer as the whole input (a
 *     complete head at the same length, or the same rejection status);
 *   - every view lies inside the head it was parsed from;
 *   - a chunked body decoded in two calls (split anywhere) gives the same bytes, the same
 *     consumed count and the same result as in one call.
 * Buffers are exact-size heap copies so ASan sees any read past the end. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/parser.h"

#define CHECK(x)                    \
    do {                            \
        if (!(x)) __builtin_trap(); \
    } while (0)

static bool inside(const char *p, uint32_t n, const char *lo, const char *hi)
{
    return n == 0 || (p >= lo && p + n <= hi);
}

static int head(const char *buf, size_t len, sl_http_req_head *h, sl_http_header *hdrs,
                const sl_http_limits *lim)
{
    char *copy = malloc(len ? len : 1);
    if (!copy) return SL_ENOMEM;
    memcpy(copy, buf, len);
    int rc = sl_http_parse_head(copy, len, h, hdrs, lim);
    free(copy);
    return rc;
}

/* Decodes buf[0..len) in one call (cut == len) or two (split at cut); returns the result and
 * the decoded bytes in out (caller storage of len bytes). */
static int chunked(const char *in, size_t len, size_t cut, const sl_http_limits *lim, char *out,
                   size_t *out_len, size_t *used_total, int *status)
{
    char *buf = malloc(len ? len : 1);
    if (!buf) return SL_ENOMEM;
    memcpy(buf, in, len);
    sl_http_chunked st;
    sl_http_chunked_init(&st, lim);
    size_t dl = cut, used;
    int rc = sl_http_chunked_decode(&st, buf, &dl, &used);
    CHECK(dl <= used && used <= cut);
    memcpy(out, buf, dl);
    *out_len = dl;
    *used_total = used;
    if (rc == SL_EAGAIN) {
        CHECK(used == cut);
        dl = len - cut;
        rc = sl_http_chunked_decode(&st, buf + cut, &dl, &used);
        CHECK(dl <= used && used <= len - cut);
        memcpy(out + *out_len, buf + cut, dl);
        *out_len += dl;
        *used_total += used;
    }
    CHECK(rc == 0 || rc == SL_EAGAIN || rc == SL_EPARSE);
    CHECK(st.total <= st.max_body);
    *status = st.status;
    free(buf);
    return rc;
}

static void check_chunked(const char *p, size_t len, size_t cut, const sl_http_limits *lim)
{
    char *a = malloc(len + 1), *b = malloc(len + 1);
    if (a && b) {
        size_t al, bl, au, bu;
        int as, bs;
        int ra = chunked(p, len, len, lim, a, &al, &au, &as);
        int rb = chunked(p, len, cut, lim, b, &bl, &bu, &bs);
        CHECK(ra == rb && al == bl && au == bu && as == bs);
        CHECK(memcmp(a, b, al) == 0);
    }
    free(a);
    free(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2) return 0;
    uint8_t ctl = data[0];
    const char *req = (const char *)data + 1;
    size_t len = size - 1;
    sl_http_limits small = {
        .max_target = 32, .max_header_bytes = 256, .max_headers = 4, .max_body = 64};
    const sl_http_limits *lim = (ctl & 1) ? &small : &sl_http_default_limits;
    size_t cut = ((size_t)ctl * 2654435761u) % (len + 1);

    static sl_http_header hdrs[SL_HTTP_DEFAULT_MAX_HEADERS];
    sl_http_req_head h, hp;
    char *buf = malloc(len);
    if (!buf) return 0;
    memcpy(buf, req, len);
    int rc = sl_http_parse_head(buf, len, &h, hdrs, lim);
    CHECK(rc == SL_EAGAIN || rc == SL_EPARSE || (rc > 0 && (size_t)rc <= len));
    if (rc == SL_EPARSE) CHECK(h.status >= 400 && h.status <= 505 && !h.keep_alive);
    if (rc > 0) {
        const char *lo = buf, *hi = buf + rc;
        CHECK(h.status == 0 && h.num_headers <= lim->max_headers);
        CHECK(inside(h.method, h.method_len, lo, hi) && h.method_len > 0);
        CHECK(inside(h.target, h.target_len, lo, hi) && h.target_len <= lim->max_target);
        CHECK(h.version_minor <= 1);
        CHECK(!(h.chunked && h.content_length >= 0));
        CHECK(h.content_length < 0 || (uint64_t)h.content_length <= lim->max_body);
        for (uint32_t i = 0; i < h.num_headers; i++) {
            CHECK(inside(hdrs[i].name, hdrs[i].name_len, lo, hi) && hdrs[i].name_len > 0);
            CHECK(inside(hdrs[i].value, hdrs[i].value_len, lo, hi));
        }
    }

    /* a prefix agrees with the whole */
    int rp = head(req, cut, &hp, hdrs, lim);
    if (rc > 0)
        CHECK((size_t)rc <= cut ? rp == rc : rp == SL_EAGAIN);
    else if (rc == SL_EAGAIN)
        CHECK(rp == SL_EAGAIN);
    else
        CHECK(rp == SL_EAGAIN || (rp == SL_EPARSE && hp.status == h.status));

    /* the body after a chunked head, or the raw input as a chunked body */
    if (rc > 0 && h.chunked) {
        size_t blen = len - (size_t)rc;
        check_chunked(req + rc, blen, cut % (blen + 1), lim);
    } else if (ctl & 2) {
        check_chunked(req, len, cut, lim);
    }
    free(buf);
    return 0;
}
