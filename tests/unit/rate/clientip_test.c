/* sl_clientip_resolve: which address a request is limited under, behind trusted proxies. */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "harness.h"
#include "sluice/ratelimit.h"

typedef struct hdrs {
    const char *name[40];
    const char *value[40];
    size_t n;
} hdrs;

static size_t lookup(void *arg, const char *name, sl_ratelimit_str *out, size_t cap)
{
    hdrs *h = arg;
    size_t n = 0;
    for (size_t i = 0; i < h->n; i++) {
        if (strcasecmp(h->name[i], name)) continue;
        if (n < cap) out[n] = (sl_ratelimit_str){h->value[i], strlen(h->value[i])};
        n++;
    }
    return n;
}

static void add(hdrs *h, const char *name, const char *value)
{
    h->name[h->n] = name;
    h->value[h->n] = value;
    h->n++;
}

static sl_ipkey ip(const char *s)
{
    sl_ipkey k;
    assert_int_equal(sl_ipkey_parse(s, strlen(s), &k), 0);
    return k;
}

static sl_cidr trusted[2];

static sl_clientip_config config(unsigned sources)
{
    assert_int_equal(sl_cidr_parse("10.0.0.0/8", 10, &trusted[0]), 0);
    assert_int_equal(sl_cidr_parse("fd00::/8", 8, &trusted[1]), 0);
    return (sl_clientip_config){trusted, 2, sources};
}

/* Resolves with peer and the headers, checks the address (text) and the source. */
static void expect(unsigned sources, const char *peer, hdrs *h, const char *want, int from)
{
    sl_clientip_config cfg = config(sources);
    sl_ipkey p = ip(peer), got;
    int rc = sl_clientip_resolve(&cfg, &p, lookup, h, &got);
    char buf[SL_IPKEY_STRLEN];
    sl_ipkey_format(&got, buf, sizeof buf);
    assert_string_equal(buf, want);
    assert_int_equal(rc, from);
}

static void xff_one(const char *value, const char *want, int from)
{
    hdrs h = {.n = 0};
    add(&h, "X-Forwarded-For", value);
    expect(SL_CLIENTIP_XFF, "10.0.0.1", &h, want, from);
}

static void fwd_one(const char *value, const char *want, int from)
{
    hdrs h = {.n = 0};
    add(&h, "Forwarded", value);
    expect(SL_CLIENTIP_FORWARDED, "10.0.0.1", &h, want, from);
}

static void test_untrusted_peer_spoof_ignored(void **state)
{
    (void)state;
    hdrs h = {.n = 0};
    add(&h, "X-Forwarded-For", "1.2.3.4");
    add(&h, "Forwarded", "for=5.6.7.8");
    expect(SL_CLIENTIP_XFF, "198.51.100.7", &h, "198.51.100.7", SL_CLIENTIP_FROM_PEER);
    expect(SL_CLIENTIP_FORWARDED, "198.51.100.7", &h, "198.51.100.7", SL_CLIENTIP_FROM_PEER);
    /* No trusted list at all: never read. */
    sl_clientip_config none = {NULL, 0, SL_CLIENTIP_XFF};
    sl_ipkey p = ip("10.0.0.1"), got;
    assert_int_equal(sl_clientip_resolve(&none, &p, lookup, &h, &got), SL_CLIENTIP_FROM_PEER);
    assert_true(sl_ipkey_equal(&got, &p));
    /* Sources 0 is the default, X-Forwarded-For. */
    expect(0, "10.0.0.1", &h, "1.2.3.4", SL_CLIENTIP_FROM_XFF);
    assert_int_equal(sl_clientip_resolve(NULL, &p, lookup, &h, &got), SL_EINVAL);
}

static void test_trusted_peer_xff(void **state)
{
    (void)state;
    xff_one("1.2.3.4", "1.2.3.4", SL_CLIENTIP_FROM_XFF);
    xff_one(" 1.2.3.4 ", "1.2.3.4", SL_CLIENTIP_FROM_XFF);
    /* The client wrote 9.9.9.9; our proxy appended the address it saw. */
    xff_one("9.9.9.9, 1.2.3.4", "1.2.3.4", SL_CLIENTIP_FROM_XFF);
    /* No header: the peer. */
    hdrs h = {.n = 0};
    expect(SL_CLIENTIP_XFF, "10.0.0.1", &h, "10.0.0.1", SL_CLIENTIP_FROM_PEER);
    sl_clientip_config cfg = config(SL_CLIENTIP_XFF);
    sl_ipkey p = ip("10.0.0.1"), got;
    assert_int_equal(sl_clientip_resolve(&cfg, &p, NULL, NULL, &got), SL_CLIENTIP_FROM_PEER);
    assert_true(sl_ipkey_equal(&got, &p));
}

static void test_multi_hop_chain(void **state)
{
    (void)state;
    /* client -> 10.0.0.3 -> 10.0.0.2 -> peer 10.0.0.1 */
    xff_one("6.6.6.6, 203.0.113.9, 10.0.0.3, 10.0.0.2", "203.0.113.9", SL_CLIENTIP_FROM_XFF);
    /* Every entry trusted: the leftmost. */
    xff_one("10.0.0.3, 10.0.0.2", "10.0.0.3", SL_CLIENTIP_FROM_XFF);
    /* IPv6 proxies and clients. */
    xff_one("2001:db8::1, fd00::5", "2001:db8::1", SL_CLIENTIP_FROM_XFF);
    /* Lines concatenate in order: the rightmost entry is in the last line. */
    hdrs h = {.n = 0};
    add(&h, "X-Forwarded-For", "6.6.6.6, 203.0.113.9");
    add(&h, "Content-Type", "text/plain");
    add(&h, "x-forwarded-for", "10.0.0.2");
    expect(SL_CLIENTIP_XFF, "10.0.0.1", &h, "203.0.113.9", SL_CLIENTIP_FROM_XFF);
    hdrs h2 = {.n = 0};
    add(&h2, "X-Forwarded-For", "10.0.0.2");
    add(&h2, "X-Forwarded-For", "203.0.113.9");
    expect(SL_CLIENTIP_XFF, "10.0.0.1", &h2, "203.0.113.9", SL_CLIENTIP_FROM_XFF);
}

static void test_xff_malformed_stops(void **state)
{
    (void)state;
    /* The rightmost entry is junk: the last good address is the peer. */
    xff_one("1.2.3.4, garbage", "10.0.0.1", SL_CLIENTIP_FROM_PEER);
    /* Junk behind a trusted hop: that hop is the last good address. */
    xff_one("1.2.3.4, garbage, 10.0.0.2", "10.0.0.2", SL_CLIENTIP_FROM_XFF);
    /* Junk left of the first untrusted address is never reached. */
    xff_one("garbage, 1.2.3.4", "1.2.3.4", SL_CLIENTIP_FROM_XFF);
    xff_one("1.2.3.4, 010.0.0.2", "10.0.0.1", SL_CLIENTIP_FROM_PEER); /* octal-looking */
    xff_one("1.2.3.4, fe80::1%eth0", "10.0.0.1", SL_CLIENTIP_FROM_PEER);
    xff_one("1.2.3.4:99999", "10.0.0.1", SL_CLIENTIP_FROM_PEER);
    xff_one("[1.2.3.4]", "10.0.0.1", SL_CLIENTIP_FROM_PEER);
    xff_one("[2001:db8::1", "10.0.0.1", SL_CLIENTIP_FROM_PEER);
    /* Empty list elements are skipped (RFC 9110 5.6.1), not junk. */
    xff_one("1.2.3.4, , 10.0.0.2,", "1.2.3.4", SL_CLIENTIP_FROM_XFF);
    xff_one("", "10.0.0.1", SL_CLIENTIP_FROM_PEER);
}

static void test_xff_ports_and_brackets(void **state)
{
    (void)state;
    xff_one("1.2.3.4:5678", "1.2.3.4", SL_CLIENTIP_FROM_XFF);
    xff_one("[2001:db8::1]:4711", "2001:db8::1", SL_CLIENTIP_FROM_XFF);
    xff_one("[2001:db8::1]", "2001:db8::1", SL_CLIENTIP_FROM_XFF);
    xff_one("2001:db8::1", "2001:db8::1", SL_CLIENTIP_FROM_XFF);
    xff_one("::ffff:1.2.3.4", "1.2.3.4", SL_CLIENTIP_FROM_XFF);
}

static void test_forwarded_basic(void **state)
{
    (void)state;
    /* RFC 7239 section 4 examples. */
    fwd_one("for=\"_gazonk\"", "10.0.0.1", SL_CLIENTIP_FROM_PEER);
    fwd_one("For=\"[2001:db8:cafe::17]:4711\"", "2001:db8:cafe::17", SL_CLIENTIP_FROM_FORWARDED);
    fwd_one("for=192.0.2.60;proto=http;by=203.0.113.43", "192.0.2.60", SL_CLIENTIP_FROM_FORWARDED);
    fwd_one("for=192.0.2.43, for=198.51.100.17", "198.51.100.17", SL_CLIENTIP_FROM_FORWARDED);
    /* Chains through trusted hops, quoted and unquoted. */
    fwd_one("for=6.6.6.6, for=203.0.113.9;proto=https, for=\"10.0.0.2:80\"", "203.0.113.9",
            SL_CLIENTIP_FROM_FORWARDED);
    fwd_one("for=\"[fd00::9]\", for=10.0.0.2", "fd00::9", SL_CLIENTIP_FROM_FORWARDED);
    /* Whitespace around ';' as many proxies write it; FOR in capitals. */
    fwd_one("proto=https ; FOR=203.0.113.9 ; by=x", "203.0.113.9", SL_CLIENTIP_FROM_FORWARDED);
    /* Obfuscated port. */
    fwd_one("for=\"203.0.113.9:_p1\"", "203.0.113.9", SL_CLIENTIP_FROM_FORWARDED);
    fwd_one("for=\"[2001:db8::2]:_x\"", "2001:db8::2", SL_CLIENTIP_FROM_FORWARDED);
    /* A quoted-pair is unescaped. */
    fwd_one("for=\"\\1.2.3.4\"", "1.2.3.4", SL_CLIENTIP_FROM_FORWARDED);
}

static void test_forwarded_edges(void **state)
{
    (void)state;
    /* unknown / obfuscated identifiers name no address: the walk stops. */
    fwd_one("for=1.2.3.4, for=unknown", "10.0.0.1", SL_CLIENTIP_FROM_PEER);
    fwd_one("for=1.2.3.4, for=_hidden, for=10.0.0.2", "10.0.0.2", SL_CLIENTIP_FROM_FORWARDED);
    /* A comma inside a quoted string does not split elements. */
    fwd_one("for=9.9.9.9;x=\"a,b\", for=203.0.113.9", "203.0.113.9", SL_CLIENTIP_FROM_FORWARDED);
    fwd_one("for=203.0.113.9;x=\"a, for=6.6.6.6\"", "203.0.113.9", SL_CLIENTIP_FROM_FORWARDED);
    /* An element without for= cannot be attributed. */
    fwd_one("for=1.2.3.4, proto=https", "10.0.0.1", SL_CLIENTIP_FROM_PEER);
    /* Two for= in one element: neither is believed. */
    fwd_one("for=1.2.3.4;for=5.6.7.8", "10.0.0.1", SL_CLIENTIP_FROM_PEER);
    /* IPv6 must be bracketed and quoted. */
    fwd_one("for=[2001:db8::1]", "10.0.0.1", SL_CLIENTIP_FROM_PEER);
    fwd_one("for=\"2001:db8::1\"", "10.0.0.1", SL_CLIENTIP_FROM_PEER);
    fwd_one("for=\"[1.2.3.4]\"", "10.0.0.1", SL_CLIENTIP_FROM_PEER);
    /* Syntax errors: an unterminated quote, a missing '=', junk after a value. */
    fwd_one("for=1.2.3.4, for=\"5.6.7.8", "10.0.0.1", SL_CLIENTIP_FROM_PEER);
    fwd_one("for=1.2.3.4, for", "10.0.0.1", SL_CLIENTIP_FROM_PEER);
    fwd_one("for=1.2.3.4 x", "10.0.0.1", SL_CLIENTIP_FROM_PEER);
    fwd_one("for=\"1.2.3.4\\", "10.0.0.1", SL_CLIENTIP_FROM_PEER);
    /* Empty elements are skipped. */
    fwd_one(", ,for=203.0.113.9,", "203.0.113.9", SL_CLIENTIP_FROM_FORWARDED);
    /* Bad port. */
    fwd_one("for=\"1.2.3.4:\"", "10.0.0.1", SL_CLIENTIP_FROM_PEER);
    fwd_one("for=\"1.2.3.4:_\"", "10.0.0.1", SL_CLIENTIP_FROM_PEER);
    /* A very long value is not an address. */
    fwd_one("for=\"1.2.3.4aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"",
            "10.0.0.1", SL_CLIENTIP_FROM_PEER);
}

/* Exactly one header is believed: the other one passed through our proxy untouched, so it is
 * whatever the client wrote (issue 13: a client-sent Forwarded chose its own key). */
static void test_one_header_only(void **state)
{
    (void)state;
    hdrs h = {.n = 0};
    add(&h, "X-Forwarded-For", "1.1.1.1");
    add(&h, "Forwarded", "for=2.2.2.2");
    expect(SL_CLIENTIP_XFF, "10.0.0.1", &h, "1.1.1.1", SL_CLIENTIP_FROM_XFF);
    expect(0, "10.0.0.1", &h, "1.1.1.1", SL_CLIENTIP_FROM_XFF);
    expect(SL_CLIENTIP_FORWARDED, "10.0.0.1", &h, "2.2.2.2", SL_CLIENTIP_FROM_FORWARDED);
    /* The configured header is missing: the peer, never the other header. */
    hdrs f = {.n = 0};
    add(&f, "Forwarded", "for=2.2.2.2");
    expect(SL_CLIENTIP_XFF, "10.0.0.1", &f, "10.0.0.1", SL_CLIENTIP_FROM_PEER);
    hdrs x = {.n = 0};
    add(&x, "X-Forwarded-For", "1.1.1.1");
    expect(SL_CLIENTIP_FORWARDED, "10.0.0.1", &x, "10.0.0.1", SL_CLIENTIP_FROM_PEER);
    /* Both at once is a configuration error. */
    sl_clientip_config both = config(SL_CLIENTIP_XFF | SL_CLIENTIP_FORWARDED);
    sl_ipkey p = ip("10.0.0.1"), got;
    assert_int_equal(sl_clientip_resolve(&both, &p, lookup, &h, &got), SL_EINVAL);
    assert_true(sl_ipkey_equal(&got, &p));
    both.sources = 4;
    assert_int_equal(sl_clientip_resolve(&both, &p, lookup, &h, &got), SL_EINVAL);
}

static void test_limits(void **state)
{
    (void)state;
    /* More lines than SL_CLIENTIP_MAX_LINES: not believed. */
    hdrs h = {.n = 0};
    for (int i = 0; i < SL_CLIENTIP_MAX_LINES + 1; i++)
        add(&h, "X-Forwarded-For", "10.0.0.9");
    h.value[0] = "1.2.3.4";
    expect(SL_CLIENTIP_XFF, "10.0.0.1", &h, "10.0.0.1", SL_CLIENTIP_FROM_PEER);
    h.n = SL_CLIENTIP_MAX_LINES;
    expect(SL_CLIENTIP_XFF, "10.0.0.1", &h, "1.2.3.4", SL_CLIENTIP_FROM_XFF);

    /* A long chain of trusted hops: the walk gives up after SL_CLIENTIP_MAX_HOPS, at the last
     * (trusted) address it accepted; the client further left is never reached. */
    char line[1024] = "203.0.113.9";
    for (int i = 0; i < SL_CLIENTIP_MAX_HOPS; i++) {
        char hop[24];
        snprintf(hop, sizeof hop, ", 10.0.1.%d", i);
        strcat(line, hop);
    }
    xff_one(line, "10.0.1.0", SL_CLIENTIP_FROM_XFF);
    /* One hop fewer and the client is reached. */
    char shorter[1024] = "203.0.113.9";
    for (int i = 1; i < SL_CLIENTIP_MAX_HOPS; i++) {
        char hop[24];
        snprintf(hop, sizeof hop, ", 10.0.1.%d", i);
        strcat(shorter, hop);
    }
    xff_one(shorter, "203.0.113.9", SL_CLIENTIP_FROM_XFF);
}

/* Whatever a client writes in front of what our proxy appends, it cannot choose the address
 * it is limited under. X-Forwarded-For: always the address the proxy saw. Forwarded: that
 * address, or (when the client's text leaves a quoted string open and swallows the proxy's
 * element) the proxy itself; never anything the client wrote. Random text from an alphabet
 * of the characters that matter, also run under ASan/UBSan for the parsers' bounds. */
static uint64_t rng = 0x2545f4914f6cdd1dULL;

static uint32_t next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 32);
}

static void random_text(char *buf, size_t cap)
{
    static const char *atoms[] = {"1.2.3.4", "10.0.0.7", "fd00::1", "[2001:db8::1]:80",
                                  ",",       ", ",       ";",       "=",
                                  "\"",      "\\",       "for",     "For=",
                                  "by=",     "_x",       "unknown", ":",
                                  "[",       "]",        " ",       "\t",
                                  "6.6.6.6", "::1",      "a"};
    size_t n = next() % 12, len = 0;
    buf[0] = 0;
    for (size_t i = 0; i < n; i++) {
        const char *a = atoms[next() % (sizeof atoms / sizeof atoms[0])];
        size_t al = strlen(a);
        if (len + al + 1 >= cap) break;
        memcpy(buf + len, a, al + 1);
        len += al;
    }
}

static void test_client_cannot_choose(void **state)
{
    (void)state;
    sl_clientip_config cx = config(SL_CLIENTIP_XFF), cf = config(SL_CLIENTIP_FORWARDED);
    sl_ipkey peer = ip("10.0.0.1"), seen = ip("203.0.113.9"), got;
    for (int i = 0; i < 20000; i++) {
        char junk[128], line[192];
        random_text(junk, sizeof junk);
        hdrs h = {.n = 0};
        bool fwd = i % 2;
        sl_clientip_config cfg = fwd ? cf : cx;
        /* The client's own line of the header our proxy does not write changes nothing. */
        add(&h, fwd ? "X-Forwarded-For" : "Forwarded", fwd ? "6.6.6.6" : "for=6.6.6.6");
        if (i % 4 < 2) { /* the proxy appends to the client's line */
            snprintf(line, sizeof line, fwd ? "%s, for=203.0.113.9" : "%s, 203.0.113.9", junk);
            add(&h, fwd ? "Forwarded" : "X-Forwarded-For", line);
        } else { /* the proxy adds a line of its own */
            add(&h, fwd ? "Forwarded" : "X-Forwarded-For", junk);
            add(&h, fwd ? "Forwarded" : "X-Forwarded-For", fwd ? "for=203.0.113.9" : "203.0.113.9");
        }
        int rc = sl_clientip_resolve(&cfg, &peer, lookup, &h, &got);
        if (fwd && i % 4 < 2 && sl_ipkey_equal(&got, &peer)) {
            assert_int_equal(rc, SL_CLIENTIP_FROM_PEER);
            continue;
        }
        if (!sl_ipkey_equal(&got, &seen)) print_error("junk: [%s]\n", junk);
        assert_true(sl_ipkey_equal(&got, &seen));
        assert_int_equal(rc, fwd ? SL_CLIENTIP_FROM_FORWARDED : SL_CLIENTIP_FROM_XFF);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_untrusted_peer_spoof_ignored),
        cmocka_unit_test(test_trusted_peer_xff),
        cmocka_unit_test(test_multi_hop_chain),
        cmocka_unit_test(test_xff_malformed_stops),
        cmocka_unit_test(test_xff_ports_and_brackets),
        cmocka_unit_test(test_forwarded_basic),
        cmocka_unit_test(test_forwarded_edges),
        cmocka_unit_test(test_one_header_only),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_client_cannot_choose),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
