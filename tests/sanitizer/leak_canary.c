/* A deliberate leak: memory allocated and dropped. Registered only in the ASan build, where
 * LeakSanitizer must fail it. If this test ever passes there, the leak gate is broken. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void *volatile sink;

int main(void)
{
    char *p = malloc(64);
    if (!p) return 0;
    strcpy(p, "leaked on purpose");
    sink = p;
    sink = NULL; /* the last reference is gone */
    printf("done\n");
    return 0;
}
