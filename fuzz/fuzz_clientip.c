/* libFuzzer target for the client address behind trusted proxies (sl_clientip_resolve):
 * X-Forwarded-For and Forwarded are attacker bytes. The first input byte picks the header and
 * the peer; the rest is split at '\n' into header lines. Besides "no crash, no sanitizer
 * report" it checks the promises a limiter relies on:
 *   - the answer is the peer or comes from the configured header, never from the other one;
 *   - an untrusted peer is its own client whatever the headers say;
 *   - the same lines resolve to the same address twice (pure function).
 * Lines are exact-size heap copies so ASan sees any read past the end. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/ratelimit.h"

#define CHECK(x)                    \
    do {                            \
        if (!(x)) __builtin_trap(); \
    } while (0)

#define MAXL (SL_CLIENTIP_MAX_LINES + 2)

typedef struct lines {
    const char *name; /* the one header name the lines belong to */
    char *v[MAXL];
    size_t len[MAXL], n;
} lines;

static size_t lookup(void *arg, const char *name, sl_ratelimit_str *out, size_t cap)
{
    lines *l = arg;
    if (strcasecmp(name, l->name) != 0) return 0;
    for (size_t i = 0; i < l->n && i < cap; i++)
        out[i] = (sl_ratelimit_str){.p = l->v[i], .len = l->len[i]};
    return l->n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    uint8_t ctl = data[0];
    data++, size--;
    static sl_cidr trusted[2];
    static int init;
    if (!init) {
        sl_cidr_parse("10.0.0.0/8", 10, &trusted[0]);
        sl_cidr_parse("fd00::/8", 8, &trusted[1]);
        init = 1;
    }
    unsigned src = ctl & 1 ? SL_CLIENTIP_FORWARDED : SL_CLIENTIP_XFF;
    sl_clientip_config cfg = {trusted, 2, src};
    lines l = {.name = ctl & 2 ? "Forwarded" : "X-Forwarded-For"};
    size_t start = 0;
    for (size_t i = 0; i <= size && l.n < MAXL; i++) {
        if (i == size || data[i] == '\n') {
            size_t n = i - start;
            l.v[l.n] = malloc(n ? n : 1);
            if (!l.v[l.n]) break;
            memcpy(l.v[l.n], data + start, n);
            l.len[l.n++] = n;
            start = i + 1;
        }
    }
    const char *peers[] = {"10.1.2.3", "fd00::5", "198.51.100.7"};
    sl_ipkey peer, out, again;
    sl_ipkey_parse(peers[(ctl >> 2) % 3], strlen(peers[(ctl >> 2) % 3]), &peer);
    int rc = sl_clientip_resolve(&cfg, &peer, lookup, &l, &out);
    CHECK(rc == SL_CLIENTIP_FROM_PEER ||
          rc == (src == SL_CLIENTIP_XFF ? SL_CLIENTIP_FROM_XFF : SL_CLIENTIP_FROM_FORWARDED));
    bool header_is_configured = (src == SL_CLIENTIP_FORWARDED) == ((ctl & 2) != 0);
    if (!header_is_configured) CHECK(rc == SL_CLIENTIP_FROM_PEER && sl_ipkey_equal(&out, &peer));
    if ((ctl >> 2) % 3 == 2) CHECK(rc == SL_CLIENTIP_FROM_PEER && sl_ipkey_equal(&out, &peer));
    CHECK(sl_clientip_resolve(&cfg, &peer, lookup, &l, &again) == rc);
    CHECK(sl_ipkey_equal(&out, &again));
    for (size_t i = 0; i < l.n; i++)
        free(l.v[i]);
    return 0;
}
