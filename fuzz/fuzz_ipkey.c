/* libFuzzer target for IP keys and CIDRs (sl_ipkey_parse, sl_cidr_parse): addresses come from
 * forwarding headers and configuration. Besides "no crash, no sanitizer report" it checks:
 *   - a parsed address formats, and the text parses back to the same key;
 *   - grouping is idempotent and the group of an address contains... itself under the CIDR of
 *     that group;
 *   - a parsed CIDR formats and parses back to the same prefix, and contains its own base.
 * The input is an exact-size heap copy so ASan sees any read past the end. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/ipkey.h"

#define CHECK(x)                    \
    do {                            \
        if (!(x)) __builtin_trap(); \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size ? size : 1);
    if (!s) return 0;
    memcpy(s, data, size);
    sl_ipkey k, k2, g, g2;
    if (sl_ipkey_parse(s, size, &k) == 0) {
        char buf[SL_IPKEY_STRLEN];
        CHECK(sl_ipkey_format(&k, buf, sizeof buf) > 0 || buf[0] != '\0');
        CHECK(sl_ipkey_parse(buf, strlen(buf), &k2) == 0);
        CHECK(sl_ipkey_equal(&k, &k2));
        CHECK(sl_ipkey_group(&k, SL_IPGROUP_DEFAULT, &g) == 0);
        CHECK(sl_ipkey_group(&g, SL_IPGROUP_DEFAULT, &g2) == 0);
        CHECK(sl_ipkey_equal(&g, &g2));
    }
    sl_cidr c, c2;
    if (sl_cidr_parse(s, size, &c) == 0) {
        char buf[SL_CIDR_STRLEN];
        CHECK(sl_cidr_format(&c, buf, sizeof buf) >= 0);
        CHECK(sl_cidr_parse(buf, strlen(buf), &c2) == 0);
        char buf2[SL_CIDR_STRLEN];
        CHECK(sl_cidr_format(&c2, buf2, sizeof buf2) >= 0);
        CHECK(strcmp(buf, buf2) == 0);
    }
    free(s);
    return 0;
}
