/* Client-IP keys: strict address parsing, canonical formatting, prefixes.
 *
 * The one representation is 16 bytes in IPv6 form with IPv4 mapped into ::ffff:0:0/96, so
 * equality, hashing, masking and prefix containment are byte operations that need no family
 * field, and an IPv4 client reaching a dual-stack socket (which reports ::ffff:a.b.c.d) gets
 * the same key as over an IPv4 socket.
 *
 * The parsers are hand-written scanners rather than inet_pton: inet_pton's acceptance differs
 * between libcs (leading zeros, shortened IPv4 forms in some), while the rules here are fixed
 * and documented in ipkey.h after Go's net/netip. They read exactly len bytes, never past, and
 * write the output only on success. Formatting is RFC 5952 section 4; IPv4-mapped addresses are
 * printed as plain dotted decimal since they are the IPv4 addresses. */
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

#include "sluice/error.h"
#include "sluice/ipkey.h"

static const uint8_t v4_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

void sl_ipkey_from_v4(const uint8_t v4[4], sl_ipkey *out)
{
    uint8_t a[4];
    memcpy(a, v4, 4); /* v4 may point into *out */
    memcpy(out->b, v4_prefix, 12);
    memcpy(out->b + 12, a, 4);
}

bool sl_ipkey_is_v4(const sl_ipkey *k)
{
    return memcmp(k->b, v4_prefix, 12) == 0;
}

bool sl_ipkey_equal(const sl_ipkey *a, const sl_ipkey *b)
{
    return memcmp(a->b, b->b, 16) == 0;
}

/* ---- parsing ------------------------------------------------------------------------------ */

static inline bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static inline int hex_val(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Dotted-quad IPv4 occupying all of s[0..len). Returns 0 or SL_EPARSE. */
static int parse_v4(const char *s, size_t len, uint8_t out[4])
{
    size_t i = 0;
    for (int part = 0; part < 4; part++) {
        if (part > 0) {
            if (i >= len || s[i] != '.') return SL_EPARSE;
            i++;
        }
        size_t start = i;
        unsigned v = 0;
        while (i < len && is_digit(s[i]) && i - start < 3)
            v = v * 10 + (unsigned)(s[i++] - '0');
        size_t nd = i - start;
        if (nd == 0 || v > 255) return SL_EPARSE;
        if (nd > 1 && s[start] == '0') return SL_EPARSE; /* "01": octal in some parsers */
        if (i < len && is_digit(s[i])) return SL_EPARSE; /* a fourth digit */
        out[part] = (uint8_t)v;
    }
    return i == len ? 0 : SL_EPARSE;
}

/* RFC 4291 text occupying all of s[0..len). Returns 0 or SL_EPARSE. */
static int parse_v6(const char *s, size_t len, uint8_t out[16])
{
    uint8_t b[16] = {0};
    int ngroups = 0;   /* 16-bit groups written to b (an IPv4 tail counts 2) */
    int ellipsis = -1; /* group index where "::" stands, or -1 */
    size_t i = 0;

    if (len >= 2 && s[0] == ':' && s[1] == ':') {
        ellipsis = 0;
        i = 2;
        if (i == len) goto done;
    }
    for (;;) {
        if (ngroups == 8) return SL_EPARSE;
        size_t start = i;
        unsigned v = 0;
        int d;
        while (i < len && i - start < 4 && (d = hex_val(s[i])) >= 0) {
            v = v * 16 + (unsigned)d;
            i++;
        }
        if (i == start) return SL_EPARSE; /* empty group: ":::", trailing ":" */
        if (i < len && s[i] == '.') {
            /* The IPv4 tail: must end the text and fill exactly the last 32 bits. */
            if (ngroups > 6) return SL_EPARSE;
            if (parse_v4(s + start, len - start, b + 2 * ngroups) < 0) return SL_EPARSE;
            ngroups += 2;
            break;
        }
        if (i < len && hex_val(s[i]) >= 0) return SL_EPARSE; /* a fifth hex digit */
        b[2 * ngroups] = (uint8_t)(v >> 8);
        b[2 * ngroups + 1] = (uint8_t)v;
        ngroups++;
        if (i == len) break;
        if (s[i] != ':') return SL_EPARSE; /* junk, a zone id ("%eth0"), brackets... */
        i++;
        if (i < len && s[i] == ':') {
            if (ellipsis >= 0) return SL_EPARSE; /* a second "::" */
            ellipsis = ngroups;
            i++;
            if (i == len) break;
        } else if (i == len) {
            return SL_EPARSE; /* a single trailing ':' */
        }
    }
done:
    if (ellipsis < 0) {
        if (ngroups != 8) return SL_EPARSE;
    } else {
        /* "::" stands for at least one zero group. */
        if (ngroups > 7) return SL_EPARSE;
        int tail = ngroups - ellipsis, gap = 8 - ngroups;
        memmove(b + 2 * (ellipsis + gap), b + 2 * ellipsis, (size_t)(2 * tail));
        memset(b + 2 * ellipsis, 0, (size_t)(2 * gap));
    }
    memcpy(out, b, 16);
    return 0;
}

int sl_ipkey_parse(const char *s, size_t len, sl_ipkey *out)
{
    if (!s || len == 0 || len > 64) return SL_EPARSE;
    /* The family shows in the first 5 bytes: IPv4 is digits then '.', IPv6 has a ':' there
     * ("1234:" at the latest) or a '.' only after a ':' (the IPv4 tail). */
    for (size_t i = 0; i < len; i++) {
        if (s[i] == ':') {
            uint8_t b[16];
            if (parse_v6(s, len, b) < 0) return SL_EPARSE;
            memcpy(out->b, b, 16);
            return 0;
        }
        if (s[i] == '.') {
            uint8_t v4[4];
            if (parse_v4(s, len, v4) < 0) return SL_EPARSE;
            sl_ipkey_from_v4(v4, out);
            return 0;
        }
    }
    return SL_EPARSE;
}

int sl_ipkey_from_sockaddr(const void *sa, size_t salen, sl_ipkey *out)
{
    if (!sa || salen < sizeof(sa_family_t)) return SL_EINVAL;
    sa_family_t fam;
    memcpy(&fam, (const char *)sa + offsetof(struct sockaddr, sa_family), sizeof fam);
    if (fam == AF_INET) {
        if (salen < sizeof(struct sockaddr_in)) return SL_EINVAL;
        struct sockaddr_in in;
        memcpy(&in, sa, sizeof in);
        sl_ipkey_from_v4((const uint8_t *)&in.sin_addr.s_addr, out);
        return 0;
    }
    if (fam == AF_INET6) {
        if (salen < sizeof(struct sockaddr_in6)) return SL_EINVAL;
        struct sockaddr_in6 in6;
        memcpy(&in6, sa, sizeof in6);
        memcpy(out->b, in6.sin6_addr.s6_addr, 16);
        return 0;
    }
    return SL_ENOTSUP;
}

/* ---- formatting ------------------------------------------------------------------------- */

static size_t fmt_v4(const uint8_t v[4], char *p)
{
    char *start = p;
    for (int i = 0; i < 4; i++) {
        unsigned x = v[i];
        if (i) *p++ = '.';
        if (x >= 100) *p++ = (char)('0' + x / 100);
        if (x >= 10) *p++ = (char)('0' + x / 10 % 10);
        *p++ = (char)('0' + x % 10);
    }
    return (size_t)(p - start);
}

static size_t fmt_v6(const uint8_t b[16], char *p)
{
    static const char hex[] = "0123456789abcdef";
    unsigned g[8];
    for (int i = 0; i < 8; i++)
        g[i] = (unsigned)b[2 * i] << 8 | b[2 * i + 1];
    /* The longest run of zero groups, first on ties; a lone zero group is not shortened. */
    int best = -1, best_len = 1;
    for (int i = 0; i < 8;) {
        if (g[i] != 0) {
            i++;
            continue;
        }
        int j = i;
        while (j < 8 && g[j] == 0)
            j++;
        if (j - i > best_len) {
            best = i;
            best_len = j - i;
        }
        i = j;
    }
    char *start = p;
    for (int i = 0; i < 8; i++) {
        if (i == best) {
            *p++ = ':';
            *p++ = ':';
            i += best_len - 1;
            continue;
        }
        if (i > 0 && i != best + best_len) *p++ = ':';
        bool any = false;
        for (int sh = 12; sh >= 0; sh -= 4) {
            unsigned d = (g[i] >> sh) & 15;
            if (d || any || sh == 0) {
                *p++ = hex[d];
                any = true;
            }
        }
    }
    return (size_t)(p - start);
}

static int emit(const char *tmp, size_t n, char *buf, size_t cap)
{
    if (n + 1 > cap) {
        if (cap > 0) buf[0] = '\0';
        return SL_ENOSPC;
    }
    memcpy(buf, tmp, n);
    buf[n] = '\0';
    return (int)n;
}

int sl_ipkey_format(const sl_ipkey *k, char *buf, size_t cap)
{
    char tmp[SL_IPKEY_STRLEN];
    size_t n = sl_ipkey_is_v4(k) ? fmt_v4(k->b + 12, tmp) : fmt_v6(k->b, tmp);
    return emit(tmp, n, buf, cap);
}

/* ---- prefixes ------------------------------------------------------------------------------ */

int sl_ipkey_mask(const sl_ipkey *k, unsigned bits, sl_ipkey *out)
{
    if (bits > 128) return SL_EINVAL;
    /* Two 64-bit words instead of 16 bytes: this runs on every per-IP rate-limit decision. */
    uint64_t hi_m = bits >= 64 ? ~0ULL : bits ? ~0ULL << (64 - bits) : 0;
    uint64_t lo_m = bits >= 128 ? ~0ULL : bits > 64 ? ~0ULL << (128 - bits) : 0;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    hi_m = __builtin_bswap64(hi_m); /* the masks in the address's (network) byte order */
    lo_m = __builtin_bswap64(lo_m);
#endif
    uint64_t w[2];
    memcpy(w, k->b, 16);
    w[0] &= hi_m;
    w[1] &= lo_m;
    memcpy(out->b, w, 16);
    return 0;
}

int sl_ipkey_group(const sl_ipkey *addr, sl_ipgroup g, sl_ipkey *out)
{
    if (g.v4_bits > 32 || g.v6_bits > 128) return SL_EINVAL;
    return sl_ipkey_mask(addr, sl_ipkey_is_v4(addr) ? 96u + g.v4_bits : g.v6_bits, out);
}

int sl_ipkey_levels(const sl_ipkey *addr, const sl_ipgroup *levels, size_t n, sl_ipkey *out)
{
    if (n > INT32_MAX || (n > 0 && (!levels || !out))) return SL_EINVAL;
    for (size_t i = 0; i < n; i++)
        if (sl_ipkey_group(addr, levels[i], &out[i]) < 0) return SL_EINVAL;
    return (int)n;
}

int sl_cidr_parse(const char *s, size_t len, sl_cidr *out)
{
    if (!s) return SL_EPARSE;
    const char *slash = memchr(s, '/', len);
    size_t alen = slash ? (size_t)(slash - s) : len;
    sl_ipkey a;
    if (sl_ipkey_parse(s, alen, &a) < 0) return SL_EPARSE;
    bool v4_text = memchr(s, ':', alen) == NULL;
    unsigned max = v4_text ? 32 : 128, bits = max;
    if (slash) {
        const char *p = slash + 1;
        size_t n = len - alen - 1;
        if (n == 0 || n > 3 || (n > 1 && p[0] == '0')) return SL_EPARSE;
        bits = 0;
        for (size_t i = 0; i < n; i++) {
            if (!is_digit(p[i])) return SL_EPARSE;
            bits = bits * 10 + (unsigned)(p[i] - '0');
        }
        if (bits > max) return SL_EPARSE;
    }
    if (v4_text) bits += 96;
    sl_cidr c;
    sl_ipkey_mask(&a, bits, &c.addr);
    c.bits = (uint8_t)bits;
    *out = c;
    return 0;
}

bool sl_cidr_contains(const sl_cidr *c, const sl_ipkey *addr)
{
    sl_ipkey m;
    if (sl_ipkey_mask(addr, c->bits, &m) < 0) return false;
    return sl_ipkey_equal(&m, &c->addr);
}

int sl_cidr_format(const sl_cidr *c, char *buf, size_t cap)
{
    char tmp[SL_CIDR_STRLEN];
    bool v4 = c->bits >= 96 && sl_ipkey_is_v4(&c->addr);
    size_t n = v4 ? fmt_v4(c->addr.b + 12, tmp) : fmt_v6(c->addr.b, tmp);
    unsigned bits = v4 ? c->bits - 96u : c->bits;
    tmp[n++] = '/';
    if (bits >= 100) tmp[n++] = (char)('0' + bits / 100);
    if (bits >= 10) tmp[n++] = (char)('0' + bits / 10 % 10);
    tmp[n++] = (char)('0' + bits % 10);
    return emit(tmp, n, buf, cap);
}
