/* Built by `make install-check` against the installed asan variant. A map holds 8-byte values;
 * the program reads one into a 4-byte heap buffer, a heap overflow inside the (instrumented)
 * sl_map_get: AddressSanitizer must report it. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sluice/sluice.h>

int main(void)
{
    sl_map *m;
    uint64_t v = 42;
    if (sl_map_new(&(sl_map_opts){.value_size = sizeof v}, &m) != 0) return 2;
    sl_map_put(m, "k", 1, &v);
    uint32_t *small = malloc(sizeof *small); /* too small for the map's 8-byte value */
    int rc = sl_map_get(m, "k", 1, small);
    printf("rc=%d first=%u\n", rc, small ? (unsigned)*small : 0u);
    free(small);
    sl_map_free(m);
    return 0;
}
