/* Built against an installed sluice (pkg-config and find_package) by `make install-check`:
 * proof that the installed headers compile on their own and the library links. */
#include <stdio.h>
#include <sluice/sluice.h>

int main(void)
{
    printf("%s %lld\n", sl_errname(SL_ETIMEDOUT), (long long)(sl_now_ns() > 0));
    return sl_now_ns() > 0 ? 0 : 1;
}
