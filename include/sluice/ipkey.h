/* Client-IP keys: one 16-byte key per client address, for per-IP rate limiting and the
 * trusted-proxy list.
 *
 * Every address, IPv4 or IPv6, from text or from a sockaddr, becomes an sl_ipkey holding the
 * IPv6 form of the address: IPv4 a.b.c.d is stored IPv4-mapped (::ffff:a.b.c.d), so
 * "1.2.3.4", "::ffff:1.2.3.4", a sockaddr_in for 1.2.3.4 and a sockaddr_in6 for
 * ::ffff:1.2.3.4 all give the same 16 bytes, usable directly as an sl_map key.
 *
 * Parsing is strict, after Go's net/netip: IPv4 is exactly four decimal parts 0..255 with no
 * leading zeros ("010.1.1.1" is refused: some parsers read it as octal); IPv6 is RFC 4291 text
 * (1-4 hex digits per group, one "::" at most, an optional trailing dotted IPv4 part); nothing
 * else is accepted — no whitespace, brackets, ports, or zone ids. A zone id ("fe80::1%eth0") is
 * refused rather than dropped: it names a link, and two hosts on different links may share a
 * link-local address, so keying them together would be wrong, and an HTTP peer address or an
 * X-Forwarded-For entry never legitimately carries one. (sockaddr_in6's sin6_scope_id is
 * ignored: the kernel's peer address is already the host on this machine's link.)
 *
 * Grouping: one IPv6 host usually owns a whole /64, so limiting per /128 lets it use 2^64 keys.
 * sl_ipkey_group masks an address to a prefix (IPv4 /32 and IPv6 /64 by default, both
 * configurable), and sl_ipkey_levels derives several levels at once (say /64 and /48) so a
 * limiter can apply each and take the tightest. Keys of different levels are byte-equal when
 * the masked bits are zero (2001:db8::/48 and 2001:db8::/64 give the same 16 bytes): keep one
 * table per level, or append the level to the key when sharing one map.
 *
 * Every function below: pure (no allocation, no locks, no global state), borrows its pointer
 * arguments for the call only, writes its output only on success. Threads: any. Never blocks. */
#ifndef SLUICE_IPKEY_H
#define SLUICE_IPKEY_H

#include "sluice/common.h"

SL_BEGIN_DECLS

/* An address in IPv6 form; IPv4 as IPv4-mapped. Compare with memcmp or sl_ipkey_equal. */
typedef struct sl_ipkey {
    uint8_t b[16];
} sl_ipkey;

/* Buffer sizes for the text forms, NUL included: the longest address sl_ipkey_format writes
 * ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff") and the longest prefix ("...ffff/128"). */
#define SL_IPKEY_STRLEN 40
#define SL_CIDR_STRLEN  44

/* Parses an IPv4 or IPv6 address from the len bytes at s (no NUL needed; a NUL inside is
 * junk). Returns 0 and fills *out, or SL_EPARSE (*out untouched) for anything that is not
 * exactly one address under the rules above. */
SL_API int sl_ipkey_parse(const char *s, size_t len, sl_ipkey *out);

/* Makes the key of a socket address: sa points to a struct sockaddr_in or sockaddr_in6 (taken
 * as const void * so this header needs no socket headers) of salen bytes. Returns 0, SL_EINVAL
 * when sa is NULL or salen is too short for its family, or SL_ENOTSUP for other families
 * (AF_UNIX peers have no address). */
SL_API int sl_ipkey_from_sockaddr(const void *sa, size_t salen, sl_ipkey *out);

/* The key of the IPv4 address a.b.c.d given as 4 bytes in network order. */
SL_API void sl_ipkey_from_v4(const uint8_t v4[4], sl_ipkey *out);

/* True when k is an IPv4 address (::ffff:0:0/96). */
SL_API bool sl_ipkey_is_v4(const sl_ipkey *k);

/* True when a and b are the same address. */
SL_API bool sl_ipkey_equal(const sl_ipkey *a, const sl_ipkey *b);

/* Writes k as text with a NUL: IPv4 addresses as dotted decimal ("192.0.2.1"), others in RFC
 * 5952 canonical form (lowercase hex, no leading zeros, the longest run of two or more zero
 * groups — the first of equal runs — as "::"). Returns the length without the NUL, or
 * SL_ENOSPC when cap is too small (then buf holds "" if cap > 0). SL_IPKEY_STRLEN always
 * suffices. */
SL_API int sl_ipkey_format(const sl_ipkey *k, char *buf, size_t cap);

/* Keeps the first `bits` bits of k (0..128, counted over the 16-byte key) and zeroes the rest
 * into *out (which may be k). Returns 0, or SL_EINVAL for bits > 128. */
SL_API int sl_ipkey_mask(const sl_ipkey *k, unsigned bits, sl_ipkey *out);

/* How addresses are grouped into one key: IPv4 addresses keep their first v4_bits bits
 * (0..32), IPv6 addresses their first v6_bits (0..128). */
typedef struct sl_ipgroup {
    uint8_t v4_bits;
    uint8_t v6_bits;
} sl_ipgroup;

/* The usual grouping: each IPv4 address alone, each IPv6 /64 together. */
#define SL_IPGROUP_DEFAULT ((sl_ipgroup){32, 64})

/* The key of addr's group under g, into *out (which may be addr). An IPv4 group keeps the
 * IPv4-mapped form, so it never equals an IPv6 group. Returns 0, or SL_EINVAL when g's bits are
 * out of range. */
SL_API int sl_ipkey_group(const sl_ipkey *addr, sl_ipgroup g, sl_ipkey *out);

/* Derives the key of addr at each of n levels: out[i] = group of addr under levels[i].
 * Returns n, or SL_EINVAL when a level is out of range (out is then unspecified). */
SL_API int sl_ipkey_levels(const sl_ipkey *addr, const sl_ipgroup *levels, size_t n, sl_ipkey *out);

/* An address prefix, for "is this peer a trusted proxy?". */
typedef struct sl_cidr {
    sl_ipkey addr; /* the network address: bits after `bits` are zero */
    uint8_t bits;  /* prefix length over the 16-byte key: IPv4 a.b.c.d/n has 96 + n */
} sl_cidr;

/* Parses "address/length" ("10.0.0.0/8", "2001:db8::/32") or a bare address (a one-address
 * prefix: /32 for IPv4 text, /128 for IPv6). The address follows sl_ipkey_parse's rules; the
 * length is decimal without leading zeros, at most 32 after IPv4 text and 128 after IPv6 text.
 * Host bits set after the prefix are cleared ("10.1.2.3/8" is 10.0.0.0/8, as Go's
 * net.ParseCIDR). IPv6 prefixes live in the same space as IPv4-mapped keys: "::/0" contains
 * every address, IPv4 included, and "::ffff:10.0.0.0/104" is 10.0.0.0/8. Returns 0, or
 * SL_EPARSE (*out untouched). */
SL_API int sl_cidr_parse(const char *s, size_t len, sl_cidr *out);

/* True when addr lies inside c. */
SL_API bool sl_cidr_contains(const sl_cidr *c, const sl_ipkey *addr);

/* Writes c as "address/length" with a NUL: IPv4 form ("10.0.0.0/8") when the prefix lies
 * inside ::ffff:0:0/96 (bits >= 96), IPv6 form otherwise. Returns the length without the NUL,
 * or SL_ENOSPC when cap is too small (SL_CIDR_STRLEN always suffices). */
SL_API int sl_cidr_format(const sl_cidr *c, char *buf, size_t cap);

SL_END_DECLS

#endif /* SLUICE_IPKEY_H */
