/* The client's address behind trusted proxies: X-Forwarded-For and Forwarded (RFC 7239).
 *
 * A forwarding header is a list that each proxy extends on the right with the address of
 * whoever connected to it. Only the entries that trusted proxies added can be believed, and
 * those are the rightmost ones: everything to the left of the first untrusted address was
 * written by the client, or by someone the client talked to, and may be invented. So the walk
 * starts at the peer (which must itself be trusted, or the headers are not even read) and
 * moves left while the address in hand is a trusted proxy. A client can therefore put
 * anything it likes in the header and still be keyed by the address our last trusted proxy
 * saw: it cannot spoof its way past its per-IP limit.
 *
 * An entry that names no usable address stops the walk, and the last address accepted (a
 * trusted proxy) is the answer. That is conservative: such a request is limited with
 * everything else that proxy forwards rather than under an address nobody vouched for.
 *
 * Entries are parsed left to right (Forwarded needs it: a quoted string may hold commas), and
 * the last SL_CLIENTIP_MAX_HOPS are kept in a ring, which is all a right-to-left walk can
 * reach before it gives up. Nothing allocates; the state is a few hundred bytes of stack. */
#include <string.h>
#include <strings.h>

#include "sluice/error.h"
#include "sluice/ratelimit.h"
#include "rate/rate_int.h"

typedef struct hop {
    bool ok; /* false: the entry names no usable address */
    sl_ipkey ip;
} hop;

typedef struct hops {
    hop ring[SL_CLIENTIP_MAX_HOPS];
    size_t n; /* entries seen; the last min(n, MAX_HOPS) are in ring */
} hops;

static void push(hops *h, bool ok, const sl_ipkey *ip)
{
    hop *e = &h->ring[h->n % SL_CLIENTIP_MAX_HOPS];
    e->ok = ok;
    if (ok) e->ip = *ip;
    h->n++;
}

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* RFC 9110 tchar. */
static bool is_tchar(char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c)) return true;
    return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static void trim(const char **s, size_t *len)
{
    while (*len && is_ows(**s))
        (*s)++, (*len)--;
    while (*len && is_ows((*s)[*len - 1]))
        (*len)--;
}

/* A decimal port 0..65535, 1-5 digits. */
static bool port_ok(const char *s, size_t len)
{
    if (len < 1 || len > 5) return false;
    unsigned v = 0;
    for (size_t i = 0; i < len; i++) {
        if (!is_digit(s[i])) return false;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    return v <= 65535;
}

/* RFC 7239 obfport: "_" 1*(ALPHA / DIGIT / "." / "_" / "-"). */
static bool obf_ok(const char *s, size_t len)
{
    if (len < 2 || s[0] != '_') return false;
    for (size_t i = 1; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) || c == '.' ||
              c == '_' || c == '-'))
            return false;
    }
    return true;
}

/* "[v6]" or "[v6]:port" (obfuscated ports allowed when obf). */
static bool parse_bracketed(const char *s, size_t len, bool obf, sl_ipkey *out)
{
    const char *close = memchr(s, ']', len);
    if (!close) return false;
    size_t alen = (size_t)(close - s) - 1;
    size_t rest = len - alen - 2;
    const char *port = close + 1;
    if (rest &&
        (port[0] != ':' || !(port_ok(port + 1, rest - 1) || (obf && obf_ok(port + 1, rest - 1)))))
        return false;
    sl_ipkey k;
    if (sl_ipkey_parse(s + 1, alen, &k) < 0 || sl_ipkey_is_v4(&k)) return false;
    *out = k;
    return true;
}

/* "v4:port": the one form where a colon separates a port from an unbracketed address. */
static bool parse_v4_port(const char *s, size_t len, const char *colon, bool obf, sl_ipkey *out)
{
    size_t alen = (size_t)(colon - s);
    const char *port = colon + 1;
    size_t plen = len - alen - 1;
    if (!(port_ok(port, plen) || (obf && obf_ok(port, plen)))) return false;
    sl_ipkey k;
    if (sl_ipkey_parse(s, alen, &k) < 0 || !sl_ipkey_is_v4(&k)) return false;
    *out = k;
    return true;
}

/* One X-Forwarded-For entry (trimmed): "v4", "v6", "[v6]", "[v6]:port" or "v4:port". */
static bool parse_xff_entry(const char *s, size_t len, sl_ipkey *out)
{
    if (!len) return false;
    if (s[0] == '[') return parse_bracketed(s, len, false, out);
    const char *colon = memchr(s, ':', len);
    if (colon && !memchr(colon + 1, ':', len - (size_t)(colon - s) - 1))
        return parse_v4_port(s, len, colon, false, out);
    return sl_ipkey_parse(s, len, out) == 0;
}

static void scan_xff_line(hops *h, const char *s, size_t len)
{
    while (len) {
        const char *comma = memchr(s, ',', len);
        size_t elen = comma ? (size_t)(comma - s) : len;
        const char *e = s;
        size_t el = elen;
        trim(&e, &el);
        if (el) { /* empty list elements are skipped (RFC 9110 5.6.1) */
            sl_ipkey k;
            bool ok = parse_xff_entry(e, el, &k);
            push(h, ok, &k);
        }
        if (!comma) break;
        s = comma + 1;
        len -= elen + 1;
    }
}

/* A Forwarded node (RFC 7239 6): "v4", "v4:port", "[v6]", "[v6]:port". "unknown" and
 * obfuscated identifiers ("_x") are valid syntax but name no address: not usable. */
static bool parse_node(const char *s, size_t len, sl_ipkey *out)
{
    if (!len || s[0] == '_') return false;
    if (s[0] == '[') return parse_bracketed(s, len, true, out);
    const char *colon = memchr(s, ':', len);
    if (colon) return parse_v4_port(s, len, colon, true, out);
    sl_ipkey k;
    if (sl_ipkey_parse(s, len, &k) < 0 || !sl_ipkey_is_v4(&k)) return false;
    *out = k;
    return true;
}

/* A Forwarded pair's value at s[*pos]: a token or a quoted string (quoted-pairs unescaped)
 * into val (cap bytes; longer values are not addresses: *vlen = cap + 1 marks them). Returns
 * false on a syntax error (an unterminated quote, nothing there). */
#define NODE_MAX 64
static bool scan_value(const char *s, size_t len, size_t *pos, char *val, size_t *vlen)
{
    size_t i = *pos, n = 0;
    if (i < len && s[i] == '"') {
        for (i++; i < len && s[i] != '"'; i++) {
            if (s[i] == '\\' && ++i == len) return false;
            if (n < NODE_MAX) val[n] = s[i];
            n++;
        }
        if (i == len) return false;
        i++;
    } else {
        for (; i < len && is_tchar(s[i]); i++) {
            if (n < NODE_MAX) val[n] = s[i];
            n++;
        }
        /* An unquoted IPv6 node ("for=[::1]") is not a token: the '[' ends it with nothing
         * read, a syntax error; RFC 7239 requires the quotes. */
        if (!n) return false;
    }
    *vlen = n > NODE_MAX ? NODE_MAX + 1 : n;
    *pos = i;
    return true;
}

/* One forwarded-element starting at s[*pos], up to the next top-level ',' (consumed). Returns
 * false on a syntax error: then the rest of the line cannot be split reliably. */
static bool scan_element(hops *h, const char *s, size_t len, size_t *pos)
{
    size_t i = *pos;
    bool have_for = false, usable = false;
    sl_ipkey ip = {{0}};
    for (;;) {
        while (i < len && (is_ows(s[i]) || s[i] == ';'))
            i++;
        if (i == len || s[i] == ',') break;
        size_t name = i;
        while (i < len && is_tchar(s[i]))
            i++;
        size_t nlen = i - name;
        if (!nlen || i == len || s[i] != '=') return false;
        i++;
        char val[NODE_MAX];
        size_t vlen;
        if (!scan_value(s, len, &i, val, &vlen)) return false;
        if (nlen == 3 && strncasecmp(s + name, "for", 3) == 0) {
            /* Two for= in one element: which hop is it? Neither. */
            usable = !have_for && vlen <= NODE_MAX && parse_node(val, vlen, &ip);
            have_for = true;
        }
        while (i < len && is_ows(s[i]))
            i++;
        if (i < len && s[i] != ';' && s[i] != ',') return false;
    }
    push(h, have_for && usable, &ip);
    *pos = i < len ? i + 1 : i;
    return true;
}

static void scan_forwarded_line(hops *h, const char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        size_t j = i;
        while (j < len && is_ows(s[j]))
            j++;
        if (j == len) break;
        if (s[j] == ',') { /* empty element */
            i = j + 1;
            continue;
        }
        if (!scan_element(h, s, len, &i)) {
            push(h, false, NULL);
            return;
        }
    }
}

bool sl__clientip_sources_ok(unsigned sources)
{
    return sources == 0 || sources == SL_CLIENTIP_XFF || sources == SL_CLIENTIP_FORWARDED;
}

static bool trusted(const sl_clientip_config *cfg, const sl_ipkey *ip)
{
    for (size_t i = 0; i < cfg->ntrusted; i++)
        if (sl_cidr_contains(&cfg->trusted[i], ip)) return true;
    return false;
}

/* Reads every line of header name into h. Returns false when there are too many lines. */
static bool collect(hops *h, const char *name, bool forwarded, sl_ratelimit_headers_fn headers,
                    void *arg, size_t *nlines)
{
    sl_ratelimit_str lines[SL_CLIENTIP_MAX_LINES];
    size_t n = headers(arg, name, lines, SL_CLIENTIP_MAX_LINES);
    *nlines = n;
    if (n > SL_CLIENTIP_MAX_LINES) return false;
    for (size_t i = 0; i < n; i++) {
        if (!lines[i].p) continue;
        if (forwarded)
            scan_forwarded_line(h, lines[i].p, lines[i].len);
        else
            scan_xff_line(h, lines[i].p, lines[i].len);
    }
    return true;
}

int sl_clientip_resolve(const sl_clientip_config *cfg, const sl_ipkey *peer,
                        sl_ratelimit_headers_fn headers, void *headers_arg, sl_ipkey *out)
{
    if (!cfg || !peer || !out) return SL_EINVAL;
    *out = *peer;
    if (!sl__clientip_sources_ok(cfg->sources)) return SL_EINVAL;
    if (!headers || !cfg->ntrusted || !trusted(cfg, peer)) return SL_CLIENTIP_FROM_PEER;

    /* One header only, never a fallback to the other: a client can always add the header our
     * proxy does not write, and our proxy passes it through untouched. */
    hops h;
    h.n = 0;
    size_t nlines = 0;
    bool fwd = cfg->sources == SL_CLIENTIP_FORWARDED;
    int src = fwd ? SL_CLIENTIP_FROM_FORWARDED : SL_CLIENTIP_FROM_XFF;
    if (!collect(&h, fwd ? "Forwarded" : "X-Forwarded-For", fwd, headers, headers_arg, &nlines))
        return SL_CLIENTIP_FROM_PEER;

    int from = SL_CLIENTIP_FROM_PEER;
    size_t oldest = h.n > SL_CLIENTIP_MAX_HOPS ? h.n - SL_CLIENTIP_MAX_HOPS : 0;
    for (size_t i = h.n; i > oldest; i--) {
        const hop *e = &h.ring[(i - 1) % SL_CLIENTIP_MAX_HOPS];
        if (!e->ok) break;
        *out = e->ip;
        from = src;
        if (!trusted(cfg, &e->ip)) break;
    }
    return from;
}
