#!/usr/bin/env bash
# Every public header compiles on its own (include/sluice/*.h, one translation unit each, strict
# ISO C11 with -Wpedantic -Werror), and a snippet of what a user writes most — logging with and
# without attributes, the short registration forms — compiles clean under the same flags.
#   check_headers.sh CC SOURCE_DIR
set -euo pipefail
CC=$1
SRC=$2
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
FLAGS=(-std=c11 -Wall -Wextra -Wpedantic -Wshadow -Wstrict-prototypes -Werror -fsyntax-only
       -I"$SRC/include")
n=0
for h in "$SRC"/include/sluice/*.h; do
    name=$(basename "$h")
    printf '#include <sluice/%s>\n' "$name" >"$TMP/one.c"
    # Twice: the include guard must hold.
    printf '#include <sluice/%s>\n' "$name" >>"$TMP/one.c"
    "$CC" "${FLAGS[@]}" "$TMP/one.c" || { echo "header $name does not compile on its own"; exit 1; }
    n=$((n + 1))
done
cat >"$TMP/snippet.c" <<'C'
#include <sluice/sluice.h>
#include <sluice/mux.h>
static void h(sl_req *req, sl_resp *resp, void *arg)
{
    (void)arg;
    sl_log_info(NULL, "no attributes");
    sl_log_warn(NULL, "one", SL_A_STR("path", sl_req_path_str(req)));
    sl_log(NULL, SL_LOG_ERROR, "plain");
    sl_resp_printf(resp, "%s", sl_req_header(req, "Host", NULL));
}
int main(void)
{
    sl_mux *mux;
    if (sl_mux_new(NULL, &mux) != 0) return 1;
    sl_mux_handle_fn(mux, "GET /x", h, NULL);
    sl_log_debug(NULL, "done");
    sl_mux_free(mux);
    return 0;
}
C
"$CC" "${FLAGS[@]}" "$TMP/snippet.c" || { echo "the user snippet does not compile clean"; exit 1; }
echo "headers: $n compile on their own; snippet clean under -Wpedantic"
