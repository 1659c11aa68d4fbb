/* HTTP/1.1 request head parser and chunked body decoder (RFC 9112, strict).
 *
 * The head parser is stateless: each call scans buf from its start (as picohttpparser does),
 * so a connection only keeps its buffer and the parser never holds pointers between calls.
 * The scan runs left to right and decides every rejection at the first byte that proves it,
 * which gives the property the tests check: a prefix of a request yields SL_EAGAIN or the very
 * error the whole request yields, never a different one. Limits follow the same rule: the scan
 * stops at max_header_bytes and at max_target bytes of target, so an endless line is refused
 * once it crosses the limit rather than when the head ends. Checks that need the whole head
 * (framing: Content-Length against Transfer-Encoding, Host presence, CONNECT) run once the
 * empty line is seen, in a fixed order documented in docs/http-parser.md.
 *
 * Header values and the target, the long runs of a head, are scanned 16 bytes at a time with
 * SSE2 (baseline on x86-64): a block of ordinary bytes is skipped with a few compares and the
 * scalar code classifies the byte that stopped it. A block load never reads past the caller's
 * len; the portable loops do the same work byte by byte (SL_HTTP_NO_SIMD selects them).
 *
 * The chunked decoder is the opposite: a resumable byte-level state machine, because a body
 * can be far larger than any buffer. It decodes in place (data only moves toward the front),
 * so the output never overtakes unread input and bytes after the body stay where they are. */
#include "http/parser.h"

#include <string.h>

/* SL_HTTP_NO_SIMD forces the portable loops (to measure the difference, or for a build that
 * must not use them). */
#if defined(__SSE2__) && !defined(SL_HTTP_NO_SIMD)
#define SL_HTTP_SSE2 1
#include <emmintrin.h>
#endif

const sl_http_limits sl_http_default_limits = {
    .max_target = SL_HTTP_DEFAULT_MAX_TARGET,
    .max_header_bytes = SL_HTTP_DEFAULT_MAX_HEADER_BYTES,
    .max_headers = SL_HTTP_DEFAULT_MAX_HEADERS,
    .max_body = SL_HTTP_DEFAULT_MAX_BODY,
};

/* Character classes, one bit each, in a 256-entry table. */
enum {
    C_TCHAR = 1,  /* token (RFC 9110 5.6.2): method, field names, codings */
    C_TARGET = 2, /* allowed in a request-target: VCHAR except '#' */
    C_VALUE = 4,  /* field-vchar: VCHAR and obs-text (SP/HTAB handled apart) */
    C_HOST = 8,   /* uri-host and port: unreserved, pct-encoded, sub-delims, ':', '[', ']' */
    C_HEX = 16,
};

/* The classes above, byte by byte (generated once; test_char_classes in parser_test.c pushes
 * every byte through the parser in each role and compares with the RFC sets, so a wrong entry
 * fails a test). */
/* clang-format off */
static const unsigned char cls[256] = {
     0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  /* 0x00 */
     0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  /* 0x10 */
     0, 15,  6,  5, 15, 15, 15, 15, 14, 14, 15, 15, 14, 15, 15,  6,  /* 0x20 */
    31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 14, 14,  6, 14,  6,  6,  /* 0x30 */
     6, 31, 31, 31, 31, 31, 31, 15, 15, 15, 15, 15, 15, 15, 15, 15,  /* 0x40 */
    15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 14,  6, 14,  7, 15,  /* 0x50 */
     7, 31, 31, 31, 31, 31, 31, 15, 15, 15, 15, 15, 15, 15, 15, 15,  /* 0x60 */
    15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15,  6,  7,  6, 15,  0,  /* 0x70 */
     4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  /* 0x80 */
     4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  /* 0x90 */
     4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  /* 0xa0 */
     4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  /* 0xb0 */
     4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  /* 0xc0 */
     4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  /* 0xd0 */
     4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  /* 0xe0 */
     4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  /* 0xf0 */
};
/* clang-format on */

#define IS(c, k) (cls[(unsigned char)(c)] & (k))

bool sl__http_is_tchar(unsigned char c)
{
    return IS(c, C_TCHAR);
}

static inline int lower(int c)
{
    return (c >= 'A' && c <= 'Z') ? c + 32 : c;
}

/* Case-insensitive compare of a view against a lowercase literal of the same length. */
static bool ieq(const char *s, size_t n, const char *lit, size_t lit_len)
{
    if (n != lit_len) return false;
    for (size_t i = 0; i < n; i++)
        if (lower((unsigned char)s[i]) != lit[i]) return false;
    return true;
}
#define IEQ(s, n, lit) ieq((s), (n), (lit), sizeof(lit) - 1)

const sl_http_header *sl_http_find_header(const sl_http_req_head *h, const char *name,
                                          size_t name_len)
{
    for (uint32_t i = 0; i < h->num_headers; i++) {
        const sl_http_header *f = &h->headers[i];
        if (f->name_len != name_len) continue;
        size_t j = 0;
        while (j < name_len && lower((unsigned char)f->name[j]) == lower((unsigned char)name[j]))
            j++;
        if (j == name_len) return f;
    }
    return NULL;
}

/* ---- the head ---------------------------------------------------------------------------- */

/* What the header lines told us, gathered while scanning and judged at the end. */
typedef struct facts {
    const char *host;
    uint32_t host_len;
    bool has_host;
    bool has_cl;
    bool has_te;
    bool te_seen_chunked;
    bool te_chunked_twice; /* "chunked" seen more than once */
    bool te_last_chunked;  /* the final coding so far is chunked */
    bool te_other;         /* a coding other than chunked */
    bool conn_close;
    bool conn_keep_alive;
    bool expect_continue;
    bool expect_other;
    int64_t cl;
} facts;

/* The bounds of one parse: where the bytes end, and whether that end is the data's (more may
 * come: SL_EAGAIN) or the header-bytes limit (more cannot help: 431). */
typedef struct scan {
    const char *end; /* buf + min(len, max_header_bytes) */
    bool at_limit;   /* end is the header-bytes limit, not the data's end */
    sl_http_req_head *h;
} scan;

static int fail(sl_http_req_head *h, int status)
{
    h->status = status;
    h->keep_alive = false;
    return SL_EPARSE;
}

static int need_more(const scan *s)
{
    return s->at_limit ? fail(s->h, 431) : SL_EAGAIN;
}

/* Returns the first byte at or after p that is below 0x20 or DEL (or end). */
static const char *skip_value_bytes(const char *p, const char *end)
{
#ifdef SL_HTTP_SSE2
    const __m128i lo = _mm_set1_epi8(0x1f), del = _mm_set1_epi8(0x7f);
    while (end - p >= 16) {
        __m128i x = _mm_loadu_si128((const __m128i *)(const void *)p);
        /* x <= 0x1f unsigned <=> min(x, 0x1f) == x */
        __m128i ctl = _mm_cmpeq_epi8(_mm_min_epu8(x, lo), x);
        __m128i stop = _mm_or_si128(ctl, _mm_cmpeq_epi8(x, del));
        int m = _mm_movemask_epi8(stop);
        if (m) return p + __builtin_ctz((unsigned)m);
        p += 16;
    }
#endif
    while (p < end && (unsigned char)*p >= 0x20 && *p != 0x7f)
        p++;
    return p;
}

/* Returns the first non-token byte at or after p (or end). Names are short, so this stays
 * scalar, but unrolled: one bounds check per four bytes. */
static inline const char *skip_tchars(const char *p, const char *end)
{
    while (end - p >= 4) {
        if (!IS(p[0], C_TCHAR)) return p;
        if (!IS(p[1], C_TCHAR)) return p + 1;
        if (!IS(p[2], C_TCHAR)) return p + 2;
        if (!IS(p[3], C_TCHAR)) return p + 3;
        p += 4;
    }
    while (p < end && IS(*p, C_TCHAR))
        p++;
    return p;
}

/* Returns the first byte at or after p that cannot be in a request-target (or end). */
static const char *skip_target_bytes(const char *p, const char *end)
{
#ifdef SL_HTTP_SSE2
    /* Signed compare: 0x21..0x7e are > 0x20, while 0x80..0xff are negative and stop. */
    const __m128i sp = _mm_set1_epi8(0x20), del = _mm_set1_epi8(0x7f), hash = _mm_set1_epi8('#');
    while (end - p >= 16) {
        __m128i x = _mm_loadu_si128((const __m128i *)(const void *)p);
        __m128i ok = _mm_cmpgt_epi8(x, sp);
        __m128i bad = _mm_or_si128(_mm_cmpeq_epi8(x, del), _mm_cmpeq_epi8(x, hash));
        int m = _mm_movemask_epi8(_mm_andnot_si128(ok, _mm_set1_epi8(-1))) | _mm_movemask_epi8(bad);
        if (m) return p + __builtin_ctz((unsigned)m);
        p += 16;
    }
#endif
    while (p < end && IS(*p, C_TARGET))
        p++;
    return p;
}

static bool parse_digits(const char *s, size_t n, int64_t *out)
{
    if (n == 0) return false;
    int64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return false;
        if (v > (INT64_MAX - (s[i] - '0')) / 10) return false;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
}

/* Iterates the non-empty elements of a comma-separated list (RFC 9110 5.6.1), OWS trimmed. */
typedef struct list_it {
    const char *v;
    size_t n, i;
} list_it;

static bool list_next(list_it *it, const char **e, size_t *elen)
{
    while (it->i <= it->n) {
        size_t j = it->i;
        while (j < it->n && it->v[j] != ',')
            j++;
        size_t a = it->i, b = j;
        it->i = j + 1;
        while (a < b && (it->v[a] == ' ' || it->v[a] == '\t'))
            a++;
        while (b > a && (it->v[b - 1] == ' ' || it->v[b - 1] == '\t'))
            b--;
        if (b > a) {
            *e = it->v + a;
            *elen = b - a;
            return true;
        }
    }
    return false;
}

/* Transfer-Encoding: a list of codings, each a token maybe followed by parameters. Lines add
 * up: "gzip" then "chunked" on a second line is the list "gzip, chunked". */
static int note_te(facts *f, const char *v, size_t n)
{
    list_it it = {v, n, 0};
    const char *e;
    size_t elen;
    bool any = false;
    while (list_next(&it, &e, &elen)) {
        size_t k = 0;
        while (k < elen && IS(e[k], C_TCHAR))
            k++;
        if (k == 0 || (k < elen && e[k] != ';' && e[k] != ' ' && e[k] != '\t')) return 400;
        any = true;
        if (k == elen && IEQ(e, k, "chunked")) {
            f->te_chunked_twice |= f->te_seen_chunked;
            f->te_seen_chunked = true;
            f->te_last_chunked = true;
        } else {
            f->te_last_chunked = false;
            f->te_other = true;
        }
    }
    f->has_te = true;
    return any ? 0 : 400;
}

/* Judges one header line as it is stored. Returns 0 or the status to fail with. */
static int note_header(facts *f, const sl_http_header *hd)
{
    const char *n = hd->name, *v = hd->value;
    size_t nl = hd->name_len, vl = hd->value_len;
    switch (nl) {
    case 4:
        if (!IEQ(n, nl, "host")) return 0;
        if (f->has_host) return 400; /* RFC 9112 3.2: more than one Host line */
        for (size_t i = 0; i < vl; i++)
            if (!IS(v[i], C_HOST)) return 400;
        f->has_host = true;
        f->host = v;
        f->host_len = (uint32_t)vl;
        return 0;
    case 6:
        if (!IEQ(n, nl, "expect")) return 0;
        {
            list_it it = {v, vl, 0};
            const char *e;
            size_t elen;
            while (list_next(&it, &e, &elen)) {
                if (IEQ(e, elen, "100-continue"))
                    f->expect_continue = true;
                else
                    f->expect_other = true;
            }
            return 0;
        }
    case 10:
        if (!IEQ(n, nl, "connection")) return 0;
        {
            list_it it = {v, vl, 0};
            const char *e;
            size_t elen;
            while (list_next(&it, &e, &elen)) {
                if (IEQ(e, elen, "close"))
                    f->conn_close = true;
                else if (IEQ(e, elen, "keep-alive"))
                    f->conn_keep_alive = true;
            }
            return 0;
        }
    case 14: {
        if (!IEQ(n, nl, "content-length")) return 0;
        int64_t cl;
        if (!parse_digits(v, vl, &cl))
            return 400; /* not 1*DIGIT: a list, a sign, garbage or overflow */
        if (f->has_cl && cl != f->cl) return 400;
        f->has_cl = true;
        f->cl = cl;
        return 0;
    }
    case 17:
        if (!IEQ(n, nl, "transfer-encoding")) return 0;
        return note_te(f, v, vl);
    default: return 0;
    }
}

/* Classifies the target and sets path and (for absolute-form) host. Returns 0 or a status. */
static int parse_target(sl_http_req_head *h)
{
    const char *t = h->target;
    uint32_t n = h->target_len;
    bool connect = h->method_len == 7 && memcmp(h->method, "CONNECT", 7) == 0;
    if (connect) {
        /* authority-form: uri-host ":" port, nothing else (RFC 9112 3.2.3) */
        uint32_t colon = n;
        for (uint32_t i = 0; i < n; i++) {
            if (!IS(t[i], C_HOST) || t[i] == '@') return 400;
            if (t[i] == ':') colon = i;
        }
        if (colon == 0 || colon + 1 >= n) return 400;
        for (uint32_t i = colon + 1; i < n; i++)
            if (t[i] < '0' || t[i] > '9') return 400;
        h->target_form = SL_HTTP_TARGET_AUTHORITY;
        h->path = "";
        h->path_len = 0;
        return 0;
    }
    if (t[0] == '/') {
        h->target_form = SL_HTTP_TARGET_ORIGIN;
        h->path = t;
        h->path_len = n;
        return 0;
    }
    if (t[0] == '*') {
        bool options = h->method_len == 7 && memcmp(h->method, "OPTIONS", 7) == 0;
        if (n != 1 || !options) return 400;
        h->target_form = SL_HTTP_TARGET_ASTERISK;
        h->path = t;
        h->path_len = 1;
        return 0;
    }
    /* absolute-form, http and https only: "scheme://authority[/path-abempty][?query]" */
    uint32_t skip;
    if (n >= 7 && IEQ(t, 7, "http://"))
        skip = 7;
    else if (n >= 8 && IEQ(t, 8, "https://"))
        skip = 8;
    else
        return 400;
    uint32_t a = skip;
    while (a < n && t[a] != '/' && t[a] != '?') {
        if (!IS(t[a], C_HOST)) /* '@' (userinfo) is refused here too: RFC 9110 4.2.4 */
            return 400;
        a++;
    }
    if (a == skip || (a < n && t[a] == '?'))
        return 400; /* empty authority; or a query with no path, which has no origin-form view */
    h->target_form = SL_HTTP_TARGET_ABSOLUTE;
    h->host = t + skip;
    h->host_len = a - skip;
    h->path = a < n ? t + a : "/";
    h->path_len = a < n ? n - a : 1;
    return 0;
}

/* Scans "METHOD SP target SP HTTP/x.y CRLF" at *pp. Returns 0 (and *pp past it) or as
 * sl_http_parse_head does. */
static int parse_request_line(scan *s, const char **pp, const sl_http_limits *lim)
{
    sl_http_req_head *h = s->h;
    const char *p = *pp, *end = s->end;

    /* RFC 9112 2.2: a server SHOULD ignore empty lines before the request line. */
    while (p < end && *p == '\r') {
        if (p + 1 == end) return need_more(s);
        if (p[1] != '\n') return fail(h, 400);
        p += 2;
    }
    const char *m = p;
    p = skip_tchars(p, end);
    if (p == end) return need_more(s);
    if (*p != ' ' || p == m) return fail(h, 400);
    h->method = m;
    h->method_len = (uint32_t)(p - m);
    p++;

    /* Stop one byte past max_target: a target of exactly max_target bytes is fine. */
    const char *t = p;
    const char *tend = (size_t)(end - t) > lim->max_target ? t + lim->max_target + 1 : end;
    p = skip_target_bytes(p, tend);
    if ((size_t)(p - t) > lim->max_target) return fail(h, 414);
    if (p == end) return need_more(s);
    if (*p != ' ' || p == t) return fail(h, 400);
    h->target = t;
    h->target_len = (uint32_t)(p - t);
    p++;

    /* "HTTP/" DIGIT "." DIGIT CRLF, byte by byte so that a prefix is judged as it arrives. */
    static const char pat[] = "HTTP/0.0\r\n";
    for (int i = 0; i < 10; i++) {
        if (p + i == end) return need_more(s);
        char c = p[i];
        bool ok = (i == 5 || i == 7) ? (c >= '0' && c <= '9') : c == pat[i];
        if (!ok) return fail(h, 400);
    }
    if (p[5] != '1' || (p[7] != '0' && p[7] != '1')) return fail(h, 505);
    h->version_minor = (uint8_t)(p[7] - '0');
    *pp = p + 10;
    return 0;
}

/* Scans header lines from *pp through the empty line. */
static int parse_headers(scan *s, const char **pp, sl_http_header *hdrs, const sl_http_limits *lim,
                         facts *f)
{
    sl_http_req_head *h = s->h;
    const char *p = *pp, *end = s->end;
    for (;;) {
        if (p == end) return need_more(s);
        if (*p == '\r') {
            if (p + 1 == end) return need_more(s);
            if (p[1] != '\n') return fail(h, 400);
            *pp = p + 2;
            return 0;
        }
        /* A line starting with whitespace is obs-fold (or whitespace before the first
         * field, RFC 9112 2.2); both are rejected, as is a bare LF. */
        if (h->num_headers == lim->max_headers) return fail(h, 431);
        const char *name = p;
        p = skip_tchars(p, end);
        if (p == end) return need_more(s);
        if (*p != ':' || p == name) return fail(h, 400);
        const char *name_end = p++;
        while (p < end && (*p == ' ' || *p == '\t'))
            p++;
        const char *value = p;
        for (;;) {
            p = skip_value_bytes(p, end);
            if (p == end) return need_more(s);
            if (*p != '\t') break;
            p++;
        }
        const char *vend = p;
        while (vend > value && (vend[-1] == ' ' || vend[-1] == '\t'))
            vend--;
        if (*p != '\r') return fail(h, 400); /* a control byte, NUL, DEL or a bare LF in a value */
        if (p + 1 == end) return need_more(s);
        if (p[1] != '\n') return fail(h, 400);
        p += 2;
        sl_http_header *hd = &hdrs[h->num_headers++];
        hd->name = name;
        hd->name_len = (uint32_t)(name_end - name);
        hd->value = value;
        hd->value_len = (uint32_t)(vend - value);
        int st = note_header(f, hd);
        if (st) return fail(h, st);
    }
}

/* The checks that need the whole head, in the order docs/http-parser.md gives. */
static int judge(sl_http_req_head *h, facts *f, const sl_http_limits *lim)
{
    if (f->has_te) {
        if (h->version_minor == 0) return 400; /* RFC 9112 6.1: faulty framing from a 1.0 peer */
        if (f->has_cl) return 400; /* RFC 9112 6.1: smuggling vector; answer and close */
        if (f->te_chunked_twice || !f->te_last_chunked)
            return 400;              /* RFC 9112 6.3: chunked must be final, and only once */
        if (f->te_other) return 501; /* RFC 9112 6.1: a coding we do not implement */
        h->chunked = true;
    }
    if (f->has_cl) {
        if ((uint64_t)f->cl > lim->max_body) return 413;
        h->content_length = f->cl;
    }
    if (h->version_minor == 1 && !f->has_host) return 400;      /* RFC 9112 3.2 */
    if (h->target_form == SL_HTTP_TARGET_AUTHORITY) return 501; /* CONNECT: sluice is not a proxy */
    if (f->expect_other) return 417;                            /* RFC 9110 10.1.1 */
    h->expect_continue = f->expect_continue && h->version_minor == 1;
    h->keep_alive = !f->conn_close && (h->version_minor == 1 || f->conn_keep_alive);
    return 0;
}

int sl_http_parse_head(const char *buf, size_t len, sl_http_req_head *h, sl_http_header *hdrs,
                       const sl_http_limits *lim)
{
    if (!lim) lim = &sl_http_default_limits;
    h->status = 0;
    h->keep_alive = false;
    h->num_headers = 0;
    h->headers = hdrs;
    h->content_length = -1;
    h->chunked = false;
    h->expect_continue = false;

    /* An int return caps the head near 2 GiB whatever the limit says. */
    size_t limit = lim->max_header_bytes < 0x7fffffffu ? lim->max_header_bytes : 0x7fffffffu;
    scan s = {.end = buf + (len < limit ? len : limit), .at_limit = len >= limit, .h = h};
    facts f = {.cl = -1};
    const char *p = buf;
    int rc = parse_request_line(&s, &p, lim);
    if (rc) return rc;
    int st = parse_target(h);
    if (st) return fail(h, st);
    rc = parse_headers(&s, &p, hdrs, lim, &f);
    if (rc) return rc;
    if (h->target_form != SL_HTTP_TARGET_ABSOLUTE) {
        /* RFC 9112 3.2.2: with absolute-form the target's authority wins over Host. */
        h->host = f.has_host ? f.host : "";
        h->host_len = f.has_host ? f.host_len : 0;
    }
    st = judge(h, &f, lim);
    if (st) return fail(h, st);
    return (int)(p - buf);
}

/* ---- chunked bodies ---------------------------------------------------------------------- */

enum {
    CK_SIZE,    /* hex digits of a chunk size */
    CK_SIZE_WS, /* BWS after the size, before ';' */
    /* chunk-ext = *( BWS ";" BWS ext-name [ BWS "=" BWS ( token / quoted-string ) ] ),
     * RFC 9112 7.1.1: parsed to the grammar, then dropped */
    CK_EXT_PRE_NAME,
    CK_EXT_NAME,
    CK_EXT_POST_NAME,
    CK_EXT_PRE_VAL,
    CK_EXT_TOKEN,
    CK_EXT_QUOTED,
    CK_EXT_QUOTED_ESC,
    CK_EXT_POST_VAL,
    CK_SIZE_LF, /* the LF ending the size line; every state up to here counts line_bytes */
    CK_DATA,    /* chunk data */
    CK_DATA_CR, /* the CRLF after chunk data */
    CK_DATA_LF, /* */
    CK_TRAILER, /* start of a trailer line, or the final CRLF */
    CK_TRAILER_NAME,
    CK_TRAILER_VALUE,
    CK_TRAILER_LF,
    CK_END_LF,
    CK_DONE,
};

void sl_http_chunked_init(sl_http_chunked *st, const sl_http_limits *lim)
{
    if (!lim) lim = &sl_http_default_limits;
    memset(st, 0, sizeof(*st));
    st->max_body = lim->max_body;
    st->max_trailer = lim->max_header_bytes;
    st->state = CK_SIZE;
}

static int ck_fail(sl_http_chunked *st, int status)
{
    st->status = status;
    return SL_EPARSE;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    return lower(c) - 'a' + 10;
}

static bool is_ws(unsigned char c)
{
    return c == ' ' || c == '\t';
}

/* One byte of a chunk extension. Returns 0 or a status. */
static int ck_ext(sl_http_chunked *st, unsigned char c)
{
    switch (st->state) {
    case CK_EXT_PRE_NAME:
        if (IS(c, C_TCHAR))
            st->state = CK_EXT_NAME;
        else if (!is_ws(c))
            return 400;
        return 0;
    case CK_EXT_NAME:
    case CK_EXT_POST_NAME:
        if (IS(c, C_TCHAR) && st->state == CK_EXT_NAME) return 0;
        if (is_ws(c))
            st->state = CK_EXT_POST_NAME;
        else if (c == '=')
            st->state = CK_EXT_PRE_VAL;
        else if (c == ';')
            st->state = CK_EXT_PRE_NAME;
        else if (c == '\r')
            st->state = CK_SIZE_LF;
        else
            return 400;
        return 0;
    case CK_EXT_PRE_VAL:
        if (c == '"')
            st->state = CK_EXT_QUOTED;
        else if (IS(c, C_TCHAR))
            st->state = CK_EXT_TOKEN;
        else if (!is_ws(c))
            return 400;
        return 0;
    case CK_EXT_QUOTED:
        /* qdtext: HTAB, SP, VCHAR except '"' and '\\', obs-text */
        if (c == '"')
            st->state = CK_EXT_POST_VAL;
        else if (c == '\\')
            st->state = CK_EXT_QUOTED_ESC;
        else if (!IS(c, C_VALUE) && !is_ws(c))
            return 400;
        return 0;
    case CK_EXT_QUOTED_ESC:
        if (!IS(c, C_VALUE) && !is_ws(c)) return 400;
        st->state = CK_EXT_QUOTED;
        return 0;
    case CK_EXT_TOKEN:
    case CK_EXT_POST_VAL:
        if (IS(c, C_TCHAR) && st->state == CK_EXT_TOKEN) return 0;
        if (is_ws(c))
            st->state = CK_EXT_POST_VAL;
        else if (c == ';')
            st->state = CK_EXT_PRE_NAME;
        else if (c == '\r')
            st->state = CK_SIZE_LF;
        else
            return 400;
        return 0;
    default: return 400;
    }
}

/* One byte of the framing (anything but chunk data). Returns 0 or a status. */
static int ck_byte(sl_http_chunked *st, unsigned char c)
{
    if (st->state >= CK_TRAILER && st->state <= CK_END_LF && ++st->trailer_bytes > st->max_trailer)
        return 431;
    if (st->state <= CK_SIZE_LF && ++st->line_bytes > SL_HTTP_CHUNK_LINE_MAX + 2) return 400;
    switch (st->state) {
    case CK_SIZE:
        if (IS(c, C_HEX)) {
            if (st->remaining >> 60) return 400; /* one more digit overflows 64 bits */
            st->remaining = (st->remaining << 4) | (uint64_t)hexval(c);
            st->digits++;
            return 0;
        }
        if (st->digits == 0) return 400;
        if (c == '\r')
            st->state = CK_SIZE_LF;
        else if (c == ';')
            st->state = CK_EXT_PRE_NAME;
        else if (c == ' ' || c == '\t')
            st->state = CK_SIZE_WS;
        else
            return 400;
        return 0;
    case CK_SIZE_WS:
        if (c == ';')
            st->state = CK_EXT_PRE_NAME;
        else if (c != ' ' && c != '\t')
            return 400; /* whitespace may only precede an extension */
        return 0;
    case CK_EXT_PRE_NAME:
    case CK_EXT_NAME:
    case CK_EXT_POST_NAME:
    case CK_EXT_PRE_VAL:
    case CK_EXT_TOKEN:
    case CK_EXT_QUOTED:
    case CK_EXT_QUOTED_ESC:
    case CK_EXT_POST_VAL: return ck_ext(st, c);
    case CK_SIZE_LF:
        if (c != '\n') return 400;
        if (st->remaining > st->max_body - st->total)
            return 413; /* refuse before the data arrives */
        st->line_bytes = 0;
        st->digits = 0;
        st->state = st->remaining ? CK_DATA : CK_TRAILER;
        return 0;
    case CK_DATA_CR:
        if (c != '\r') return 400;
        st->state = CK_DATA_LF;
        return 0;
    case CK_DATA_LF:
        if (c != '\n') return 400;
        st->state = CK_SIZE;
        return 0;
    case CK_TRAILER:
        if (c == '\r')
            st->state = CK_END_LF;
        else if (IS(c, C_TCHAR))
            st->state = CK_TRAILER_NAME;
        else
            return 400; /* obs-fold, whitespace or a bare LF */
        return 0;
    case CK_TRAILER_NAME:
        if (c == ':')
            st->state = CK_TRAILER_VALUE;
        else if (!IS(c, C_TCHAR))
            return 400;
        return 0;
    case CK_TRAILER_VALUE:
        if (c == '\r')
            st->state = CK_TRAILER_LF;
        else if (!IS(c, C_VALUE) && c != ' ' && c != '\t')
            return 400;
        return 0;
    case CK_TRAILER_LF:
        if (c != '\n') return 400;
        st->state = CK_TRAILER;
        return 0;
    case CK_END_LF:
        if (c != '\n') return 400;
        st->state = CK_DONE;
        return 0;
    default: return 400;
    }
}

int sl_http_chunked_decode(sl_http_chunked *st, char *buf, size_t *len, size_t *consumed)
{
    size_t in = 0, out = 0, n = *len;
    if (st->status) {
        *len = 0;
        *consumed = 0;
        return SL_EPARSE;
    }
    while (in < n && st->state != CK_DONE) {
        if (st->state == CK_DATA) {
            size_t take = n - in;
            if (take > st->remaining) take = (size_t)st->remaining;
            if (out != in) memmove(buf + out, buf + in, take);
            in += take;
            out += take;
            st->remaining -= take;
            st->total += take;
            if (st->remaining == 0) st->state = CK_DATA_CR;
            continue;
        }
        int status = ck_byte(st, (unsigned char)buf[in++]);
        if (status) {
            *len = out;
            *consumed = in;
            return ck_fail(st, status);
        }
    }
    *len = out;
    *consumed = in;
    return st->state == CK_DONE ? 0 : SL_EAGAIN;
}
