/* Go 1.22 ServeMux routing.
 *
 * Patterns are parsed into segments: literal (percent-decoded at registration), {name} (one
 * non-empty segment), {name...} or a trailing slash (a "multi": the rest of the path, at least the
 * empty segment after a slash), and {$} (only the empty segment after a final slash).
 *
 * Precedence. Two patterns are compared as Go compares them: path segment by segment and method
 * against method, each comparison giving equivalent / more specific / more general / overlapping
 * / disjoint, combined into one relation. Registration rejects a new pattern that is equivalent
 * to or overlaps (without either being more specific) any existing one. That rule has a useful
 * consequence: any two patterns that both match one request are ordered by specificity, so if the
 * pattern list is kept in an order where every pattern comes before the patterns more general
 * than it, the first match in the list is the most specific. sl_router_add inserts each pattern
 * at such a place (just after the last pattern more specific than it), so matching is one scan
 * with no comparison at request time. That is O(routes) per request; services with hundreds of
 * routes would want a trie, which this ordering can sit under later without changing semantics.
 *
 * Requests are matched on the escaped path: it is split on '/' first, then each segment is
 * decoded into the caller's scratch buffer, so an encoded slash stays inside its segment. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/error.h"
#include "sluice/router.h"
#include "http/parser.h"

#define MAX_SEGS 32 /* per pattern; a request's segments past this can only meet a multi */

enum seg_kind { SEG_LIT, SEG_WILD, SEG_MULTI, SEG_DOLLAR };

typedef struct seg {
    enum seg_kind kind;
    char *s; /* literal text (decoded) or wildcard name (NULL for an anonymous multi) */
    size_t len;
} seg;

typedef struct route {
    char *text;   /* the pattern as registered */
    char *method; /* NULL: any method */
    size_t method_len;
    seg segs[MAX_SEGS];
    size_t nsegs;
    void *handler;
} route;

struct sl_router {
    route **routes; /* most specific first (see the file comment) */
    size_t n, cap;
};

enum rel { REL_EQUIV, REL_MORE_SPECIFIC, REL_MORE_GENERAL, REL_OVERLAPS, REL_DISJOINT };

/* ---- parsing ----------------------------------------------------------------------------- */

static bool is_ident(const char *s, size_t n)
{
    if (n == 0) return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c >= 0x80;
        if (!alpha && !(i > 0 && c >= '0' && c <= '9')) return false;
    }
    return true;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Percent-decodes src into dst (which may be src); returns the decoded length or -1. */
static long unescape(const char *src, size_t n, char *dst)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (src[i] != '%') {
            dst[o++] = src[i];
            continue;
        }
        if (i + 2 >= n) return -1;
        int hi = hexval(src[i + 1]), lo = hexval(src[i + 2]);
        if (hi < 0 || lo < 0) return -1;
        dst[o++] = (char)(hi << 4 | lo);
        i += 2;
    }
    return (long)o;
}

static void route_free(route *rt)
{
    if (!rt) return;
    for (size_t i = 0; i < rt->nsegs; i++)
        free(rt->segs[i].s);
    free(rt->method);
    free(rt->text);
    free(rt);
}

#define FAIL(code, ...)                                        \
    do {                                                       \
        if (err && errlen) snprintf(err, errlen, __VA_ARGS__); \
        rc = (code);                                           \
        goto fail;                                             \
    } while (0)

static char *dupn(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

/* Parses one "{...}" segment body (without braces) into sg. */
static int parse_wild(route *rt, const char *s, size_t n, bool last, seg *sg, char *err,
                      size_t errlen)
{
    int rc = 0;
    if (n == 1 && s[0] == '$') {
        if (!last) FAIL(SL_EINVAL, "%s: {$} must be the last segment", rt->text);
        sg->kind = SEG_DOLLAR;
        return 0;
    }
    bool multi = n > 3 && memcmp(s + n - 3, "...", 3) == 0;
    size_t nl = multi ? n - 3 : n;
    if (!is_ident(s, nl)) FAIL(SL_EINVAL, "%s: bad wildcard name \"%.*s\"", rt->text, (int)n, s);
    if (multi && !last) FAIL(SL_EINVAL, "%s: {%.*s} must be the last segment", rt->text, (int)n, s);
    for (size_t i = 0; i < rt->nsegs; i++) {
        const seg *o = &rt->segs[i];
        if ((o->kind == SEG_WILD || o->kind == SEG_MULTI) && o->s && o->len == nl &&
            memcmp(o->s, s, nl) == 0)
            FAIL(SL_EINVAL, "%s: wildcard name \"%.*s\" used twice", rt->text, (int)nl, s);
    }
    sg->kind = multi ? SEG_MULTI : SEG_WILD;
    sg->len = nl;
    if (!(sg->s = dupn(s, nl))) return SL_ENOMEM;
    return 0;
fail:
    return rc;
}

static int parse_pattern(const char *pattern, route *rt, char *err, size_t errlen)
{
    int rc = 0;
    const char *p = pattern;
    const char *sp = strpbrk(p, " \t");
    if (sp) {
        size_t mlen = (size_t)(sp - p);
        for (size_t i = 0; i < mlen; i++)
            if (!sl__http_is_tchar((unsigned char)p[i])) FAIL(SL_EINVAL, "%s: bad method", pattern);
        if (mlen == 0) FAIL(SL_EINVAL, "%s: empty method", pattern);
        if (!(rt->method = dupn(p, mlen))) return SL_ENOMEM;
        rt->method_len = mlen;
        p = sp;
        while (*p == ' ' || *p == '\t')
            p++;
    }
    if (*p != '/')
        FAIL(SL_EINVAL, "%s: path must start with '/' (host patterns are not supported)", pattern);
    p++;
    for (;;) {
        const char *end = strchr(p, '/');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        bool last = end == NULL;
        if (rt->nsegs == MAX_SEGS) FAIL(SL_EINVAL, "%s: more than %d segments", pattern, MAX_SEGS);
        seg *sg = &rt->segs[rt->nsegs];
        if (n == 0 && last) { /* trailing slash: an anonymous multi */
            sg->kind = SEG_MULTI;
            rt->nsegs++;
            break;
        }
        if (n == 0) FAIL(SL_EINVAL, "%s: empty path segment", pattern);
        if (p[0] == '{') {
            if (p[n - 1] != '}' || n < 3)
                FAIL(SL_EINVAL, "%s: a wildcard must be a whole segment", pattern);
            if ((rc = parse_wild(rt, p + 1, n - 2, last, sg, err, errlen)) < 0) return rc;
        } else {
            if (memchr(p, '{', n) || memchr(p, '}', n))
                FAIL(SL_EINVAL, "%s: a wildcard must be a whole segment", pattern);
            if (!(sg->s = dupn(p, n))) return SL_ENOMEM;
            long dl = unescape(sg->s, n, sg->s);
            if (dl < 0) {
                free(sg->s);
                sg->s = NULL;
                FAIL(SL_EINVAL, "%s: bad percent-encoding", pattern);
            }
            sg->kind = SEG_LIT;
            sg->len = (size_t)dl;
        }
        rt->nsegs++;
        if (last) break;
        p = end + 1;
    }
    return 0;
fail:
    return rc;
}

/* ---- relations (Go's comparePaths / compareMethods / combineRelationships) ------------------ */

static enum rel inverse(enum rel r)
{
    return r == REL_MORE_SPECIFIC ? REL_MORE_GENERAL
                                  : (r == REL_MORE_GENERAL ? REL_MORE_SPECIFIC : r);
}

static enum rel combine(enum rel a, enum rel b)
{
    switch (a) {
    case REL_EQUIV: return b;
    case REL_DISJOINT: return REL_DISJOINT;
    case REL_OVERLAPS: return b == REL_DISJOINT ? REL_DISJOINT : REL_OVERLAPS;
    default:
        if (b == REL_EQUIV) return a;
        if (b == inverse(a)) return REL_OVERLAPS;
        return b;
    }
}

static enum rel compare_segs(const seg *a, const seg *b)
{
    if (a->kind == SEG_MULTI && b->kind == SEG_MULTI) return REL_EQUIV;
    if (a->kind == SEG_MULTI) return REL_MORE_GENERAL;
    if (b->kind == SEG_MULTI) return REL_MORE_SPECIFIC;
    if (a->kind == SEG_WILD && b->kind == SEG_WILD) return REL_EQUIV;
    /* {x} never matches the empty segment that {$} matches. */
    if (a->kind == SEG_WILD) return b->kind == SEG_DOLLAR ? REL_DISJOINT : REL_MORE_GENERAL;
    if (b->kind == SEG_WILD) return a->kind == SEG_DOLLAR ? REL_DISJOINT : REL_MORE_SPECIFIC;
    if (a->kind != b->kind) return REL_DISJOINT; /* literal vs {$} */
    if (a->kind == SEG_DOLLAR) return REL_EQUIV;
    return a->len == b->len && memcmp(a->s, b->s, a->len) == 0 ? REL_EQUIV : REL_DISJOINT;
}

static bool ends_multi(const route *r)
{
    return r->segs[r->nsegs - 1].kind == SEG_MULTI;
}

static enum rel compare_paths(const route *a, const route *b)
{
    if (a->nsegs != b->nsegs && !ends_multi(a) && !ends_multi(b)) return REL_DISJOINT;
    enum rel r = REL_EQUIV;
    size_t i;
    for (i = 0; i < a->nsegs && i < b->nsegs; i++) {
        r = combine(r, compare_segs(&a->segs[i], &b->segs[i]));
        if (r == REL_DISJOINT) return r;
    }
    if (a->nsegs == b->nsegs) return r;
    if (a->nsegs < b->nsegs && ends_multi(a)) return combine(r, REL_MORE_GENERAL);
    if (b->nsegs < a->nsegs && ends_multi(b)) return combine(r, REL_MORE_SPECIFIC);
    return REL_DISJOINT;
}

static bool meth_is(const route *r, const char *m)
{
    return r->method && strcmp(r->method, m) == 0;
}

static enum rel compare_methods(const route *a, const route *b)
{
    if (!a->method && !b->method) return REL_EQUIV;
    if (!a->method) return REL_MORE_GENERAL;
    if (!b->method) return REL_MORE_SPECIFIC;
    if (strcmp(a->method, b->method) == 0) return REL_EQUIV;
    if (meth_is(a, "GET") && meth_is(b, "HEAD")) return REL_MORE_GENERAL;
    if (meth_is(a, "HEAD") && meth_is(b, "GET")) return REL_MORE_SPECIFIC;
    return REL_DISJOINT;
}

static enum rel compare_routes(const route *a, const route *b)
{
    enum rel m = compare_methods(a, b);
    if (m == REL_DISJOINT) return m;
    return combine(m, compare_paths(a, b));
}

/* ---- registration ------------------------------------------------------------------------ */

int sl_router_new(sl_router **out)
{
    sl_router *r = calloc(1, sizeof *r);
    if (!r) return SL_ENOMEM;
    *out = r;
    return 0;
}

void sl_router_free(sl_router *r)
{
    if (!r) return;
    for (size_t i = 0; i < r->n; i++)
        route_free(r->routes[i]);
    free(r->routes);
    free(r);
}

int sl_router_add(sl_router *r, const char *pattern, void *handler, char *err, size_t errlen)
{
    int rc = 0;
    if (!r || !pattern || !handler) {
        if (err && errlen) snprintf(err, errlen, "router, pattern and handler are required");
        return SL_EINVAL;
    }
    route *rt = calloc(1, sizeof *rt);
    if (!rt || !(rt->text = dupn(pattern, strlen(pattern)))) {
        free(rt);
        return SL_ENOMEM;
    }
    rt->handler = handler;
    size_t nwild = 0;
    if ((rc = parse_pattern(pattern, rt, err, errlen)) < 0) goto fail;
    for (size_t i = 0; i < rt->nsegs; i++)
        nwild += rt->segs[i].kind == SEG_WILD || (rt->segs[i].kind == SEG_MULTI && rt->segs[i].s);
    if (nwild > SL_ROUTER_MAX_PARAMS)
        FAIL(SL_EINVAL, "%s: more than %d wildcards", pattern, SL_ROUTER_MAX_PARAMS);

    /* Reject conflicts; find the insertion point after the last more specific pattern. */
    size_t at = 0;
    for (size_t i = 0; i < r->n; i++) {
        enum rel rel = compare_routes(rt, r->routes[i]);
        if (rel == REL_EQUIV)
            FAIL(SL_ECONFLICT, "pattern \"%s\" duplicates \"%s\"", pattern, r->routes[i]->text);
        if (rel == REL_OVERLAPS)
            FAIL(SL_ECONFLICT,
                 "pattern \"%s\" conflicts with \"%s\": both match some requests and neither is "
                 "more specific",
                 pattern, r->routes[i]->text);
        if (rel == REL_MORE_GENERAL) at = i + 1;
    }
    if (r->n == r->cap) {
        size_t ncap = r->cap ? r->cap * 2 : 8;
        route **nr = realloc(r->routes, ncap * sizeof *nr);
        if (!nr) {
            rc = SL_ENOMEM;
            goto fail;
        }
        r->routes = nr;
        r->cap = ncap;
    }
    memmove(&r->routes[at + 1], &r->routes[at], (r->n - at) * sizeof *r->routes);
    r->routes[at] = rt;
    r->n++;
    return 0;
fail:
    route_free(rt);
    return rc;
}

/* ---- matching ---------------------------------------------------------------------------- */

/* A request path split into escaped segments; segment k spans [start[k], start[k]+len[k]). The
 * last recorded segment may stand for "everything after" when the path has more than MAX_SEGS
 * segments (only a multi can match there). */
typedef struct reqpath {
    const char *path;
    size_t path_len;
    size_t n;
    size_t start[MAX_SEGS + 1], len[MAX_SEGS + 1];
    const char *dec[MAX_SEGS + 1]; /* decoded segment text, in scratch */
    size_t dlen[MAX_SEGS + 1];
} reqpath;

typedef struct scratch {
    char *p;
    size_t left;
} scratch;

static char *take(scratch *s, size_t n)
{
    if (n > s->left) return NULL;
    char *p = s->p;
    s->p += n;
    s->left -= n;
    return p;
}

static int split_path(reqpath *rp, const char *path, size_t len, scratch *sc)
{
    rp->path = path;
    rp->path_len = len;
    rp->n = 0;
    size_t i = 1;
    for (;;) {
        size_t j = i;
        while (j < len && path[j] != '/')
            j++;
        size_t k = rp->n;
        if (k == MAX_SEGS) j = len; /* the rest, only for a multi */
        rp->start[k] = i;
        rp->len[k] = j - i;
        char *d = take(sc, j - i + 1); /* + NUL: path values are C strings */
        if (!d) return SL_ENOSPC;
        long dl = unescape(path + i, j - i, d);
        if (dl < 0) return SL_EINVAL;
        d[dl] = '\0';
        rp->dec[k] = d;
        rp->dlen[k] = (size_t)dl;
        rp->n++;
        if (j >= len) break;
        i = j + 1;
    }
    return 0;
}

/* Does rt's path match rp? On success fills params (decoding a multi's rest into scratch) and
 * says whether the match is exact (no multi, or a multi that matched just the final empty
 * segment). */
static bool match_path(const route *rt, const reqpath *rp, sl_route_match *m, bool *exact,
                       scratch *sc, int *rc)
{
    size_t np = 0;
    for (size_t i = 0; i < rt->nsegs; i++) {
        const seg *sg = &rt->segs[i];
        if (sg->kind == SEG_MULTI) {
            if (i >= rp->n) return false;
            *exact = i + 1 == rp->n && rp->len[i] == 0;
            if (sg->s) {
                size_t raw = rp->path_len - rp->start[i];
                char *d = take(sc, raw + 1);
                if (!d) return *rc = SL_ENOSPC, false;
                long dl = unescape(rp->path + rp->start[i], raw, d);
                d[dl] = '\0';
                m->params[np++] = (sl_route_param){sg->s, sg->len, d, (size_t)dl};
            }
            m->nparams = np;
            return true;
        }
        if (i >= rp->n) return false;
        /* Only a multi may stand for several segments: a too-long path's tail fails here. */
        if (i == MAX_SEGS) return false;
        switch (sg->kind) {
        case SEG_LIT:
            if (rp->dlen[i] != sg->len || memcmp(rp->dec[i], sg->s, sg->len) != 0) return false;
            break;
        case SEG_WILD:
            if (rp->dlen[i] == 0 && rp->len[i] == 0) return false;
            m->params[np++] = (sl_route_param){sg->s, sg->len, rp->dec[i], rp->dlen[i]};
            break;
        case SEG_DOLLAR:
            if (rp->len[i] != 0) return false;
            break;
        default: break;
        }
    }
    if (rt->nsegs != rp->n) return false;
    *exact = true;
    m->nparams = np;
    return true;
}

static bool method_matches(const route *rt, const char *method, size_t mlen)
{
    if (!rt->method) return true;
    if (rt->method_len == mlen && memcmp(rt->method, method, mlen) == 0) return true;
    return mlen == 4 && memcmp(method, "HEAD", 4) == 0 && meth_is(rt, "GET");
}

/* The first (= most specific) route matching method and path, or NULL. */
static const route *find(const sl_router *r, const char *method, size_t mlen, const reqpath *rp,
                         sl_route_match *m, bool *exact, scratch *sc, int *rc)
{
    for (size_t i = 0; i < r->n; i++) {
        const route *rt = r->routes[i];
        if (!method_matches(rt, method, mlen)) continue;
        scratch save = *sc;
        if (match_path(rt, rp, m, exact, sc, rc)) return rt;
        *sc = save;
        if (*rc < 0) return NULL;
    }
    return NULL;
}

/* Go's cleanPath: path.Clean plus the trailing slash kept. Writes into out (>= len + 2). */
static size_t clean_path(const char *p, size_t len, char *out)
{
    size_t o = 0;
    out[o++] = '/';
    size_t i = 0;
    while (i < len) {
        while (i < len && p[i] == '/')
            i++;
        size_t j = i;
        while (j < len && p[j] != '/')
            j++;
        size_t n = j - i;
        if (n == 0) break;
        if (n == 1 && p[i] == '.') {
            /* skip */
        } else if (n == 2 && p[i] == '.' && p[i + 1] == '.') {
            if (o > 1) {
                o--; /* drop the slash before the last element, then the element */
                while (o > 1 && out[o - 1] != '/')
                    o--;
            }
        } else {
            if (o > 1 && out[o - 1] != '/') out[o++] = '/';
            memcpy(out + o, p + i, n);
            o += n;
        }
        i = j;
    }
    if (o > 1 && out[o - 1] == '/') o--;
    if (len > 0 && p[len - 1] == '/' && !(o == 1)) out[o++] = '/';
    return o;
}

static int allow_list(const sl_router *r, const reqpath *rp, sl_route_match *m, scratch *sc)
{
    const char *ms[64];
    size_t nm = 0;
    bool get = false, head = false;
    for (size_t i = 0; i < r->n && nm < 62; i++) {
        const route *rt = r->routes[i];
        sl_route_match tmp;
        bool ex;
        int rc = 0;
        scratch save = *sc;
        bool ok = rt->method && match_path(rt, rp, &tmp, &ex, sc, &rc);
        *sc = save;
        if (!ok) continue;
        bool dup = false;
        for (size_t k = 0; k < nm; k++)
            dup |= strcmp(ms[k], rt->method) == 0;
        if (!dup) ms[nm++] = rt->method;
        get |= meth_is(rt, "GET");
        head |= meth_is(rt, "HEAD");
    }
    if (get && !head) ms[nm++] = "HEAD";
    /* insertion sort: a handful of methods */
    for (size_t i = 1; i < nm; i++)
        for (size_t k = i; k > 0 && strcmp(ms[k - 1], ms[k]) > 0; k--) {
            const char *t = ms[k];
            ms[k] = ms[k - 1];
            ms[k - 1] = t;
        }
    size_t total = 0;
    for (size_t i = 0; i < nm; i++)
        total += strlen(ms[i]) + 2;
    if (nm == 0) return 0;
    char *a = take(sc, total);
    if (!a) return SL_ENOSPC;
    size_t o = 0;
    for (size_t i = 0; i < nm; i++) {
        if (i) {
            memcpy(a + o, ", ", 2);
            o += 2;
        }
        memcpy(a + o, ms[i], strlen(ms[i]));
        o += strlen(ms[i]);
    }
    m->allow = a;
    m->allow_len = o;
    return (int)nm;
}

int sl_router_match(const sl_router *r, const char *method, size_t method_len, const char *path,
                    size_t path_len, sl_route_match *m, char *scratch_buf, size_t scratch_len)
{
    memset(m, 0, offsetof(sl_route_match, params));
    m->location = m->allow = NULL;
    m->location_len = m->allow_len = 0;
    if (path_len == 0 || path[0] != '/') return SL_EINVAL;
    scratch sc = {scratch_buf, scratch_len};

    /* A path that is not clean is redirected to its clean form (CONNECT excepted, as in Go). */
    bool connect = method_len == 7 && memcmp(method, "CONNECT", 7) == 0;
    char *clean = take(&sc, path_len + 2);
    if (!clean) return SL_ENOSPC;
    size_t clen = clean_path(path, path_len, clean);
    bool is_clean = clen == path_len && memcmp(clean, path, clen) == 0;
    if (!connect && !is_clean) {
        m->status = 301;
        m->location = clean;
        m->location_len = clen;
        return 301;
    }

    reqpath rp;
    int rc = split_path(&rp, path, path_len, &sc);
    if (rc < 0) return rc;
    bool exact = false;
    const route *rt = find(r, method, method_len, &rp, m, &exact, &sc, &rc);
    if (rc < 0) return rc;

    /* "/dir" when "/dir/" would match exactly: redirect to the slash form. */
    if ((!rt || !exact) && path[path_len - 1] != '/') {
        char *slash = take(&sc, path_len + 1);
        if (!slash) return SL_ENOSPC;
        memcpy(slash, path, path_len);
        slash[path_len] = '/';
        reqpath rp2;
        sl_route_match m2;
        bool ex2 = false;
        scratch save = sc;
        if ((rc = split_path(&rp2, slash, path_len + 1, &sc)) < 0) return rc;
        const route *rt2 = find(r, method, method_len, &rp2, &m2, &ex2, &sc, &rc);
        if (rc < 0) return rc;
        if (rt2 && ex2) {
            m->status = 301;
            m->location = slash;
            m->location_len = path_len + 1;
            return 301;
        }
        sc = save;
    }
    if (rt) {
        m->status = 200;
        m->handler = rt->handler;
        m->pattern = rt->text;
        return 200;
    }
    m->nparams = 0;
    if ((rc = allow_list(r, &rp, m, &sc)) < 0) return rc;
    m->status = rc > 0 ? 405 : 404;
    return m->status;
}

bool sl_router_has(const sl_router *r, const char *pattern)
{
    for (size_t i = 0; i < r->n; i++)
        if (strcmp(r->routes[i]->text, pattern) == 0) return true;
    return false;
}

const char *sl_route_param_get(const sl_route_match *m, const char *name, size_t *len)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < m->nparams; i++) {
        if (m->params[i].name_len == n && memcmp(m->params[i].name, name, n) == 0) {
            if (len) *len = m->params[i].value_len;
            return m->params[i].value;
        }
    }
    return NULL;
}
