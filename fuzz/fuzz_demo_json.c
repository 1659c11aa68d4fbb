/* libFuzzer target for the demo's JSON request bodies (POST /users: demo_user_parse). Besides
 * "no crash, no sanitizer report" it checks what the handler relies on: an accepted body gives
 * a NUL-terminated name and e-mail within their sizes, holding no NUL; a body jansson itself
 * refuses (including one with a duplicate key) is refused with a reason. The body is an
 * exact-size heap copy so ASan sees any read past the end. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "demo.h"

#define CHECK(x)                    \
    do {                            \
        if (!(x)) __builtin_trap(); \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *body = malloc(size ? size : 1);
    if (!body) return 0;
    memcpy(body, data, size);
    demo_user u;
    char err[160] = "";
    int rc = demo_user_parse(body, size, &u, err, sizeof err);
    json_error_t je;
    json_t *strict = json_loadb(body, size, JSON_REJECT_DUPLICATES, &je);
    if (rc == 0) {
        CHECK(strict != NULL);
        size_t nl = strnlen(u.name, sizeof u.name), el = strnlen(u.email, sizeof u.email);
        CHECK(nl > 0 && nl < sizeof u.name);
        CHECK(el > 0 && el < sizeof u.email);
        CHECK(strchr(u.email, '@') != NULL);
    } else {
        CHECK(err[0] != '\0');
    }
    json_decref(strict);
    free(body);
    return 0;
}
