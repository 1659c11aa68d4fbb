/* Client-IP keys: table-driven valid and invalid addresses, canonical formatting, sockaddrs,
 * grouping and levels, CIDR parsing and containment, round trips against the libc. */
#include "harness.h"
#include "sluice/ipkey.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

static sl_ipkey parse_ok(const char *s)
{
    sl_ipkey k;
    memset(&k, 0xcc, sizeof k);
    int rc = sl_ipkey_parse(s, strlen(s), &k);
    if (rc != 0) fail_msg("expected \"%s\" to parse, got %s", s, sl_errname(rc));
    return k;
}

static void test_valid(void **state)
{
    /* input, canonical text */
    static const char *cases[][2] = {
        {"0.0.0.0", "0.0.0.0"},
        {"1.2.3.4", "1.2.3.4"},
        {"255.255.255.255", "255.255.255.255"},
        {"192.168.0.10", "192.168.0.10"},
        {"10.0.100.0", "10.0.100.0"},
        {"::", "::"},
        {"::1", "::1"},
        {"1::", "1::"},
        {"2001:db8::1", "2001:db8::1"},
        {"2001:DB8::1", "2001:db8::1"},
        {"2001:0db8:0000:0000:0000:0000:0000:0001", "2001:db8::1"},
        {"2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"},    /* first of equal runs */
        {"2001:0:0:1:0:0:0:1", "2001:0:0:1::1"},          /* longest run wins */
        {"2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"}, /* one zero group stays */
        {"1:2:3:4:5:6:7::", "1:2:3:4:5:6:7:0"},           /* :: for one group in input */
        {"::2:3:4:5:6:7:8", "0:2:3:4:5:6:7:8"},
        {"1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8"},
        {"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"},
        {"fe80::1:2", "fe80::1:2"},
        {"::ffff:1.2.3.4", "1.2.3.4"}, /* IPv4-mapped is the IPv4 address */
        {"::FFFF:10.0.0.1", "10.0.0.1"},
        {"0:0:0:0:0:ffff:192.0.2.128", "192.0.2.128"},
        {"::ffff:0102:0304", "1.2.3.4"},
        {"::1.2.3.4", "::102:304"}, /* IPv4-compatible: not mapped */
        {"64:ff9b::192.0.2.33", "64:ff9b::c000:221"},
        {"1:2:3:4:5:6:1.2.3.4", "1:2:3:4:5:6:102:304"},
        {"::2:3:4:5:6:1.2.3.4", "0:2:3:4:5:6:102:304"},
        {"0:0::0:0", "::"},
        {"a:b:c:d:e:f:0:0", "a:b:c:d:e:f::"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sl_ipkey k = parse_ok(cases[i][0]);
        char buf[SL_IPKEY_STRLEN];
        int n = sl_ipkey_format(&k, buf, sizeof buf);
        assert_int_equal(n, (int)strlen(cases[i][1]));
        if (strcmp(buf, cases[i][1]) != 0)
            fail_msg("%s: formatted %s, want %s", cases[i][0], buf, cases[i][1]);
        /* the canonical text parses back to the same key and formats identically */
        sl_ipkey k2 = parse_ok(buf);
        assert_true(sl_ipkey_equal(&k, &k2));
    }
}

static void test_invalid(void **state)
{
    static const char *cases[] = {
        "",
        " ",
        "1.2.3",
        "1.2.3.4.5",
        "1.2.3.4.",
        ".1.2.3.4",
        "1..2.3",
        "256.1.1.1",
        "1.2.3.1000",
        "010.1.1.1", /* leading zero: octal in some parsers */
        "1.2.3.04",
        "00.0.0.0",
        "0x1.2.3.4",
        "1.2.3.4 ",
        " 1.2.3.4",
        "+1.2.3.4",
        "-1.2.3.4",
        "1.2.3.-4",
        "1.2.3.4/8",
        "1.2.3.4:80",
        "1.2.3",
        "1",
        "1234",
        "a.b.c.d",
        ":",
        ":::",
        ":1",
        "1:",
        ":1::",
        "1::2::3",
        "1:::2",
        "12345::",
        "1:2:3:4:5:6:7",
        "1:2:3:4:5:6:7:8:9",
        "1:2:3:4:5:6:7:8::",
        "::1:2:3:4:5:6:7:8",
        "1:2:3:4:5:6:7:8:",
        "g::1",
        "::ffff:1.2.3",
        "::ffff:1.2.3.4.5",
        "::ffff:01.2.3.4",
        "::ffff:256.2.3.4",
        "1:2:3:4:5:6:7:1.2.3.4",
        "::1.2.3.4:5",
        "::1.2.3.4::",
        "1.2.3.4::",
        "::a.2.3.4",
        "fe80::1%eth0", /* zone ids are refused */
        "fe80::1%",
        "[::1]",
        "::1 ",
        "2001:db8::/32",
        "1.2.3.4\n",
        "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sl_ipkey k;
        memset(&k, 0x5a, sizeof k);
        int rc = sl_ipkey_parse(cases[i], strlen(cases[i]), &k);
        if (rc != SL_EPARSE) fail_msg("\"%s\" parsed (rc %d)", cases[i], rc);
        for (int j = 0; j < 16; j++)
            assert_int_equal(k.b[j], 0x5a); /* untouched on failure */
    }
    sl_ipkey k;
    assert_int_equal(sl_ipkey_parse(NULL, 0, &k), SL_EPARSE);
    assert_int_equal(sl_ipkey_parse("1.2.3.4\0", 8, &k), SL_EPARSE); /* NUL inside the length */
    /* length is honoured: no read past it, a prefix of a longer buffer parses */
    assert_int_equal(sl_ipkey_parse("1.2.3.45", 7, &k), 0);
    char buf[SL_IPKEY_STRLEN];
    sl_ipkey_format(&k, buf, sizeof buf);
    assert_string_equal(buf, "1.2.3.4");
    assert_int_equal(sl_ipkey_parse("::1:2", 3, &k), 0); /* "::1" */
    assert_true(sl_ipkey_equal(&k, &(sl_ipkey){.b = {[15] = 1}}));
}

static void test_v4_mapped_equal(void **state)
{
    sl_ipkey a = parse_ok("203.0.113.7"), b = parse_ok("::ffff:203.0.113.7");
    sl_ipkey c = parse_ok("::ffff:cb00:7107");
    assert_true(sl_ipkey_equal(&a, &b));
    assert_true(sl_ipkey_equal(&a, &c));
    assert_true(sl_ipkey_is_v4(&a));
    sl_ipkey d = parse_ok("::203.0.113.7");
    assert_false(sl_ipkey_is_v4(&d));
    assert_false(sl_ipkey_equal(&a, &d));
    sl_ipkey e;
    sl_ipkey_from_v4((const uint8_t[4]){203, 0, 113, 7}, &e);
    assert_true(sl_ipkey_equal(&a, &e));

    /* sockaddr_in, and sockaddr_in6 carrying the mapped form, give the same key */
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(80)};
    inet_pton(AF_INET, "203.0.113.7", &sin.sin_addr);
    struct sockaddr_in6 sin6 = {.sin6_family = AF_INET6, .sin6_scope_id = 3};
    inet_pton(AF_INET6, "::ffff:203.0.113.7", &sin6.sin6_addr);
    sl_ipkey f, g;
    assert_int_equal(sl_ipkey_from_sockaddr(&sin, sizeof sin, &f), 0);
    assert_int_equal(sl_ipkey_from_sockaddr(&sin6, sizeof sin6, &g), 0);
    assert_true(sl_ipkey_equal(&a, &f));
    assert_true(sl_ipkey_equal(&a, &g));
    /* through sockaddr_storage as accept() fills it */
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    memcpy(&ss, &sin6, sizeof sin6);
    assert_int_equal(sl_ipkey_from_sockaddr(&ss, sizeof ss, &g), 0);
    assert_true(sl_ipkey_equal(&a, &g));

    inet_pton(AF_INET6, "2001:db8::42", &sin6.sin6_addr);
    assert_int_equal(sl_ipkey_from_sockaddr(&sin6, sizeof sin6, &g), 0);
    sl_ipkey h = parse_ok("2001:db8::42");
    assert_true(sl_ipkey_equal(&g, &h));

    assert_int_equal(sl_ipkey_from_sockaddr(&sin, sizeof sin - 1, &f), SL_EINVAL);
    assert_int_equal(sl_ipkey_from_sockaddr(&sin6, sizeof sin - 1, &f), SL_EINVAL);
    assert_int_equal(sl_ipkey_from_sockaddr(NULL, 16, &f), SL_EINVAL);
    assert_int_equal(sl_ipkey_from_sockaddr(&sin, 1, &f), SL_EINVAL);
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    assert_int_equal(sl_ipkey_from_sockaddr(&sun, sizeof sun, &f), SL_ENOTSUP);
}

static void test_format_space(void **state)
{
    sl_ipkey k = parse_ok("255.255.255.255");
    char buf[16];
    assert_int_equal(sl_ipkey_format(&k, buf, 16), 15);
    assert_string_equal(buf, "255.255.255.255");
    buf[0] = 'x';
    assert_int_equal(sl_ipkey_format(&k, buf, 15), SL_ENOSPC);
    assert_string_equal(buf, "");
    assert_int_equal(sl_ipkey_format(&k, NULL, 0), SL_ENOSPC);
    sl_ipkey w = parse_ok("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
    char big[SL_IPKEY_STRLEN];
    assert_int_equal(sl_ipkey_format(&w, big, sizeof big), SL_IPKEY_STRLEN - 1);
    sl_cidr c = {.addr = w, .bits = 128};
    char cb[SL_CIDR_STRLEN];
    assert_int_equal(sl_cidr_format(&c, cb, sizeof cb), SL_CIDR_STRLEN - 1);
    assert_int_equal(sl_cidr_format(&c, cb, sizeof cb - 1), SL_ENOSPC);
}

/* Random keys: format, parse back, compare; the libc must read our text as the same address
 * and, for IPv4, print the same text. */
static void test_round_trip_random(void **state)
{
    unsigned seed = 12345;
    for (int i = 0; i < 20000; i++) {
        sl_ipkey k;
        for (int j = 0; j < 16; j++) {
            int r = rand_r(&seed);
            /* plenty of zero groups, so "::" placement gets exercised */
            k.b[j] = (r & 0x100) ? (uint8_t)r : 0;
        }
        if (i % 4 == 0) sl_ipkey_from_v4(k.b + 12, &k);
        char buf[SL_IPKEY_STRLEN];
        int n = sl_ipkey_format(&k, buf, sizeof buf);
        assert_true(n > 0 && n < SL_IPKEY_STRLEN);
        sl_ipkey back = parse_ok(buf);
        assert_true(sl_ipkey_equal(&k, &back));
        if (sl_ipkey_is_v4(&k)) {
            char lib[INET_ADDRSTRLEN];
            inet_ntop(AF_INET, k.b + 12, lib, sizeof lib);
            assert_string_equal(buf, lib);
        } else {
            unsigned char lib[16];
            assert_int_equal(inet_pton(AF_INET6, buf, lib), 1);
            assert_memory_equal(lib, k.b, 16);
            assert_null(strstr(buf, ":::"));
        }
    }
}

/* Differential check against glibc's inet_pton, whose acceptance matches the rules here (it
 * also refuses leading zeros in IPv4 parts and zones): strings assembled from tokens that
 * produce valid and nearly valid addresses must be accepted by both or by neither, with the
 * same bytes. */
static void test_differential_inet_pton(void **state)
{
    static const char *toks[] = {"0",   "1", "00", "ff",      "FFFF", "12345", "db8",
                                 "::",  ":", ".",  "1.2.3.4", "255",  "256",   "01",
                                 "0.0", "a", "%e", "9",       ":::"};
    unsigned seed = 1;
    long accepted = 0;
    for (int it = 0; it < 200000; it++) {
        char s[96] = "";
        int n = 1 + rand_r(&seed) % 9;
        for (int i = 0; i < n; i++)
            strcat(s, toks[rand_r(&seed) % (int)(sizeof toks / sizeof toks[0])]);
        sl_ipkey k;
        bool ours = sl_ipkey_parse(s, strlen(s), &k) == 0;
        unsigned char b[16], b4[4];
        bool lib6 = inet_pton(AF_INET6, s, b) == 1, lib4 = inet_pton(AF_INET, s, b4) == 1;
        if (lib4) { /* the expected key of an IPv4 address is its mapped form */
            memset(b, 0, 10);
            b[10] = b[11] = 0xff;
            memcpy(b + 12, b4, 4);
        }
        if (ours != (lib4 || lib6))
            fail_msg("\"%s\": ours %d, inet_pton %d", s, ours, lib4 || lib6);
        if (ours) assert_memory_equal(k.b, b, 16);
        accepted += ours;
    }
    assert_true(accepted > 1000); /* the generator does produce valid addresses */
}

static void test_group_and_levels(void **state)
{
    sl_ipkey a = parse_ok("2001:db8:1:2:3:4:5:6"), b = parse_ok("2001:db8:1:2:ffff::1");
    sl_ipkey c = parse_ok("2001:db8:1:3::1");
    sl_ipkey ga, gb, gc;
    sl_ipgroup def = SL_IPGROUP_DEFAULT;
    assert_int_equal(sl_ipkey_group(&a, def, &ga), 0);
    assert_int_equal(sl_ipkey_group(&b, def, &gb), 0);
    assert_int_equal(sl_ipkey_group(&c, def, &gc), 0);
    assert_true(sl_ipkey_equal(&ga, &gb)); /* same /64 */
    assert_false(sl_ipkey_equal(&ga, &gc));
    char buf[SL_IPKEY_STRLEN];
    sl_ipkey_format(&ga, buf, sizeof buf);
    assert_string_equal(buf, "2001:db8:1:2::");

    /* IPv4 keeps /32 by default; /24 when configured; stays IPv4-mapped */
    sl_ipkey v = parse_ok("198.51.100.77"), gv;
    assert_int_equal(sl_ipkey_group(&v, def, &gv), 0);
    assert_true(sl_ipkey_equal(&v, &gv));
    assert_int_equal(sl_ipkey_group(&v, (sl_ipgroup){24, 64}, &gv), 0);
    sl_ipkey_format(&gv, buf, sizeof buf);
    assert_string_equal(buf, "198.51.100.0");
    assert_int_equal(sl_ipkey_group(&v, (sl_ipgroup){0, 0}, &gv), 0);
    assert_true(sl_ipkey_is_v4(&gv)); /* even /0 never collides with an IPv6 group */
    sl_ipkey_format(&gv, buf, sizeof buf);
    assert_string_equal(buf, "0.0.0.0");
    assert_int_equal(sl_ipkey_group(&v, (sl_ipgroup){33, 64}, &gv), SL_EINVAL);
    assert_int_equal(sl_ipkey_group(&v, (sl_ipgroup){32, 129}, &gv), SL_EINVAL);
    /* in place */
    sl_ipkey inplace = a;
    assert_int_equal(sl_ipkey_group(&inplace, def, &inplace), 0);
    assert_true(sl_ipkey_equal(&inplace, &ga));

    /* several levels at once: /64 and /48 for IPv6, /32 and /24 for IPv4 */
    sl_ipgroup lv[2] = {{32, 64}, {24, 48}};
    sl_ipkey out[2];
    assert_int_equal(sl_ipkey_levels(&c, lv, 2, out), 2);
    sl_ipkey_format(&out[0], buf, sizeof buf);
    assert_string_equal(buf, "2001:db8:1:3::");
    sl_ipkey_format(&out[1], buf, sizeof buf);
    assert_string_equal(buf, "2001:db8:1::");
    sl_ipkey out_a[2];
    sl_ipkey_levels(&a, lv, 2, out_a);
    assert_false(sl_ipkey_equal(&out[0], &out_a[0])); /* different /64s ... */
    assert_true(sl_ipkey_equal(&out[1], &out_a[1]));  /* ... same /48 */
    assert_int_equal(sl_ipkey_levels(&v, lv, 2, out), 2);
    sl_ipkey_format(&out[1], buf, sizeof buf);
    assert_string_equal(buf, "198.51.100.0");
    assert_int_equal(sl_ipkey_levels(&v, lv, 0, NULL), 0);
    lv[1].v6_bits = 200;
    assert_int_equal(sl_ipkey_levels(&v, lv, 2, out), SL_EINVAL);

    /* mask at every length keeps exactly the first bits */
    sl_ipkey ones;
    memset(&ones, 0xff, sizeof ones);
    for (unsigned bits = 0; bits <= 128; bits++) {
        sl_ipkey m;
        assert_int_equal(sl_ipkey_mask(&ones, bits, &m), 0);
        unsigned count = 0;
        for (int j = 0; j < 16; j++)
            count += (unsigned)__builtin_popcount(m.b[j]);
        assert_int_equal(count, bits);
        if (bits > 0 && bits < 128) assert_true(m.b[(bits - 1) / 8] & (0x80 >> ((bits - 1) % 8)));
    }
    assert_int_equal(sl_ipkey_mask(&ones, 129, &ones), SL_EINVAL);
}

static void test_cidr(void **state)
{
    /* text, canonical text */
    static const char *valid[][2] = {
        {"10.0.0.0/8", "10.0.0.0/8"},
        {"10.1.2.3/8", "10.0.0.0/8"}, /* host bits cleared */
        {"0.0.0.0/0", "0.0.0.0/0"},
        {"192.168.1.1/32", "192.168.1.1/32"},
        {"192.168.1.1", "192.168.1.1/32"}, /* a bare address */
        {"172.16.0.0/12", "172.16.0.0/12"},
        {"2001:db8::/32", "2001:db8::/32"},
        {"2001:DB8:1:2:3:4:5:6/64", "2001:db8:1:2::/64"},
        {"::/0", "::/0"},
        {"::1", "::1/128"},
        {"::1/128", "::1/128"},
        {"fe80::/10", "fe80::/10"},
        {"::ffff:10.0.0.0/104", "10.0.0.0/8"},
        {"::ffff:0:0/96", "0.0.0.0/0"},
    };
    for (size_t i = 0; i < sizeof valid / sizeof valid[0]; i++) {
        sl_cidr c;
        int rc = sl_cidr_parse(valid[i][0], strlen(valid[i][0]), &c);
        if (rc != 0) fail_msg("cidr \"%s\": %s", valid[i][0], sl_errname(rc));
        char buf[SL_CIDR_STRLEN];
        assert_int_equal(sl_cidr_format(&c, buf, sizeof buf), (int)strlen(valid[i][1]));
        if (strcmp(buf, valid[i][1]) != 0) fail_msg("cidr %s -> %s", valid[i][0], buf);
        sl_cidr c2;
        assert_int_equal(sl_cidr_parse(buf, strlen(buf), &c2), 0);
        assert_int_equal(c.bits, c2.bits);
        assert_true(sl_ipkey_equal(&c.addr, &c2.addr));
    }
    static const char *invalid[] = {
        "",
        "/8",
        "10.0.0.0/",
        "10.0.0.0/33",
        "10.0.0.0/08",
        "10.0.0.0/-1",
        "10.0.0.0/8/8",
        "10.0.0.0 /8",
        "10.0.0.0/ 8",
        "10.0.0.0/8 ",
        "10.0.0/8",
        "010.0.0.0/8",
        "::/129",
        "::/1000",
        "::/0x10",
        "fe80::1%eth0/64",
        "10.0.0.0/a",
        "2001:db8::/032",
    };
    for (size_t i = 0; i < sizeof invalid / sizeof invalid[0]; i++) {
        sl_cidr c = {.bits = 77};
        if (sl_cidr_parse(invalid[i], strlen(invalid[i]), &c) != SL_EPARSE)
            fail_msg("cidr \"%s\" parsed", invalid[i]);
        assert_int_equal(c.bits, 77);
    }
}

static bool in(const char *cidr, const char *addr)
{
    sl_cidr c;
    assert_int_equal(sl_cidr_parse(cidr, strlen(cidr), &c), 0);
    sl_ipkey a = parse_ok(addr);
    return sl_cidr_contains(&c, &a);
}

static void test_cidr_contains(void **state)
{
    assert_true(in("10.0.0.0/8", "10.255.1.2"));
    assert_true(in("10.0.0.0/8", "10.0.0.0"));
    assert_false(in("10.0.0.0/8", "11.0.0.0"));
    assert_false(in("10.0.0.0/8", "9.255.255.255"));
    assert_true(in("10.0.0.0/8", "::ffff:10.9.8.7")); /* mapped form of an IPv4 peer */
    assert_true(in("172.16.0.0/12", "172.31.255.255"));
    assert_false(in("172.16.0.0/12", "172.32.0.0"));
    assert_true(in("127.0.0.1", "127.0.0.1"));
    assert_false(in("127.0.0.1", "127.0.0.2"));
    assert_true(in("0.0.0.0/0", "1.2.3.4"));
    assert_false(in("0.0.0.0/0", "2001:db8::1")); /* IPv4 /0 holds IPv4 only */
    assert_true(in("::/0", "2001:db8::1"));
    assert_true(in("::/0", "1.2.3.4")); /* the 128-bit space includes mapped IPv4 */
    assert_true(in("2001:db8::/32", "2001:db8:ffff::1"));
    assert_false(in("2001:db8::/32", "2001:db9::1"));
    assert_true(in("2001:db8:1:2::/64", "2001:db8:1:2:aaaa:bbbb:cccc:dddd"));
    assert_false(in("2001:db8:1:2::/64", "2001:db8:1:3::"));
    assert_true(in("::1", "::1"));
    assert_false(in("::1", "::2"));
    assert_true(in("fe80::/10", "febf::1"));
    assert_false(in("fe80::/10", "fec0::1"));
    assert_false(in("::ffff:10.0.0.0/104", "2001:db8::1"));
    /* every prefix length against an address just inside and just outside */
    sl_ipkey base = parse_ok("2001:db8:aaaa:bbbb:cccc:dddd:eeee:ffff");
    for (unsigned bits = 1; bits <= 128; bits++) {
        sl_cidr c;
        sl_ipkey_mask(&base, bits, &c.addr);
        c.bits = (uint8_t)bits;
        assert_true(sl_cidr_contains(&c, &base));
        sl_ipkey flip = base;
        flip.b[(bits - 1) / 8] ^= (uint8_t)(0x80 >> ((bits - 1) % 8)); /* last prefix bit */
        assert_false(sl_cidr_contains(&c, &flip));
        if (bits < 128) {
            flip = base;
            flip.b[bits / 8] ^= (uint8_t)(0x80 >> (bits % 8)); /* first host bit */
            assert_true(sl_cidr_contains(&c, &flip));
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid),
        cmocka_unit_test(test_invalid),
        cmocka_unit_test(test_v4_mapped_equal),
        cmocka_unit_test(test_format_space),
        cmocka_unit_test(test_round_trip_random),
        cmocka_unit_test(test_differential_inet_pton),
        cmocka_unit_test(test_group_and_levels),
        cmocka_unit_test(test_cidr),
        cmocka_unit_test(test_cidr_contains),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
