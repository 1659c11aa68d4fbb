/* Private to sluice: the seeded hash of client-controlled bytes (rate-limit keys, the Redis
 * limiter's buckets), so that clients cannot aim keys at one hash chain. A multiply-mix hash in
 * the manner of wyhash: one 64x64->128 multiply per 16 bytes. Not a cryptographic PRF, but
 * with per-table random seeds (sl__hseed_init: getrandom) collisions cannot be predicted.
 * (sl_map keeps its SipHash-1-3: its readers may run lock-free and its keys are arbitrary.)
 * Threads: any; a seed is written once, before its table is shared. */
#ifndef SLUICE_BASE_HASH_INT_H
#define SLUICE_BASE_HASH_INT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/random.h>

#include "sluice/clock.h"

typedef struct sl__hseed {
    uint64_t s0, s1;
} sl__hseed;

static inline uint64_t sl__mum(uint64_t a, uint64_t b)
{
    __uint128_t r = (__uint128_t)a * b;
    return (uint64_t)r ^ (uint64_t)(r >> 64);
}

static inline uint64_t sl__rd64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static inline uint64_t sl__rd_tail(const uint8_t *p, size_t n) /* n in 1..8 */
{
    uint64_t v = 0;
    memcpy(&v, p, n);
    return v;
}

/* A fresh random seed; salt (an address) varies it per table when the kernel has no entropy
 * yet (early boot). */
static inline void sl__hseed_init(sl__hseed *k, const void *salt)
{
    uint64_t s[2];
    if (getrandom(s, sizeof s, GRND_NONBLOCK) != (ssize_t)sizeof s) {
        s[0] = (uint64_t)sl_mono_ns() ^ (uint64_t)(uintptr_t)salt;
        s[1] = sl__mum(s[0] ^ 0x9E3779B97F4A7C15ULL, (uint64_t)sl_wall_ns());
    }
    k->s0 = s[0] | 1;
    k->s1 = s[1] | 1;
}

static inline uint64_t sl__hash_bytes(const sl__hseed *k, const void *data, size_t len)
{
    const uint8_t *p = data;
    uint64_t h = k->s0 ^ ((uint64_t)len * 0x9E3779B97F4A7C15ULL);
    size_t n = len;
    while (n > 16) {
        h = sl__mum(sl__rd64(p) ^ k->s1, sl__rd64(p + 8) ^ h);
        p += 16;
        n -= 16;
    }
    uint64_t a = 0, b = 0;
    if (n > 8) {
        a = sl__rd64(p);
        b = sl__rd_tail(p + 8, n - 8);
    } else if (n > 0) {
        a = sl__rd_tail(p, n);
    }
    return sl__mum(sl__mum(a ^ k->s1, b ^ h) ^ 0xE7037ED1A0B428DBULL, h ^ k->s0);
}

#endif
