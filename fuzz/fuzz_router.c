/* libFuzzer target for the router: patterns (configuration, but often built from data) and
 * request paths (attacker bytes). The input is "pattern\npattern\n...\0method path". Besides
 * "no crash, no sanitizer report" it checks: a match result is one of the documented
 * statuses; a 200 names a registered handler; every parameter value lies in the caller's
 * scratch; a 301's Location and a 405's Allow fit in scratch. Paths are exact-size heap copies
 * so ASan sees any read past the end. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/error.h"
#include "sluice/router.h"

#define CHECK(x)                    \
    do {                            \
        if (!(x)) __builtin_trap(); \
    } while (0)

static int handlers[16];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, 0, size);
    size_t plen = nul ? (size_t)(nul - data) : size;
    sl_router *r;
    if (sl_router_new(&r) < 0) return 0;
    int nh = 0;
    size_t start = 0;
    for (size_t i = 0; i <= plen && nh < 16; i++) {
        if (i == plen || data[i] == '\n') {
            char pat[512];
            size_t n = i - start < sizeof pat - 1 ? i - start : sizeof pat - 1;
            memcpy(pat, data + start, n);
            pat[n] = '\0';
            char err[128];
            if (sl_router_add(r, pat, &handlers[nh], err, sizeof err) == 0) nh++;
            start = i + 1;
        }
    }
    if (nul) {
        const uint8_t *req = nul + 1;
        size_t rlen = size - plen - 1;
        const uint8_t *sp = memchr(req, ' ', rlen);
        size_t mlen = sp ? (size_t)(sp - req) : 0;
        size_t pl = sp ? rlen - mlen - 1 : rlen;
        char *method = malloc(mlen ? mlen : 1), *path = malloc(pl ? pl : 1);
        size_t sclen = 6 * pl + 256;
        char *scratch = malloc(sclen);
        if (method && path && scratch) {
            memcpy(method, req, mlen);
            memcpy(path, req + rlen - pl, pl);
            sl_route_match m;
            int st = sl_router_match(r, method, mlen, path, pl, &m, scratch, sclen);
            CHECK(st == 200 || st == 301 || st == 404 || st == 405 || st == SL_EINVAL);
            if (st == 200) {
                CHECK(m.handler >= (void *)&handlers[0] && m.handler < (void *)&handlers[nh]);
                for (size_t i = 0; i < m.nparams; i++)
                    CHECK(m.params[i].value_len == 0 ||
                          (m.params[i].value >= scratch &&
                           m.params[i].value + m.params[i].value_len <= scratch + sclen) ||
                          (m.params[i].value >= path &&
                           m.params[i].value + m.params[i].value_len <= path + pl));
            }
            if (st == 301) CHECK(m.location_len <= sclen);
            if (st == 405) CHECK(m.allow_len <= sclen);
        }
        free(method);
        free(path);
        free(scratch);
    }
    sl_router_free(r);
    return 0;
}
