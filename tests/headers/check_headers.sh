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
# The async Redis API from a task, with public types only (sl_loop from sl_loop_current): what an
# installed-library user writes; and a policy whose per-IP rule counts in Redis.
cat >"$TMP/redis_task.c" <<'C'
#include <sluice/sluice.h>
#include <sluice/ratelimit.h>
static void on_decision(void *arg, const sl_rate_decision *d)
{
    *(int *)arg = d->allowed ? 1 : 2;
}
static void task(void *arg)
{
    sl_redis_limiter *rl = arg;
    sl_loop *loop = sl_loop_current();
    int answer = 0;
    sl_rate_decision now;
    if (!sl_redis_limiter_connected(rl, loop)) (void)sl_redis_limiter_attach(rl, loop);
    if (sl_redis_limiter_check(rl, loop, "k", 1, 1, on_decision, &answer, &now) == 1)
        answer = now.allowed ? 1 : 2;
}
int main(void)
{
    sl_keyed_tier tier = {10, 10};
    sl_redis_limiter_config cfg = {.tiers = &tier, .ntiers = 1};
    sl_redis_limiter *rl;
    if (sl_redis_limiter_new(&cfg, &rl) != 0) return 1;
    sl_ratelimit_rule rule = {.kind = SL_RATELIMIT_IP, .limit = 10, .burst = 10, .redis = rl};
    sl_ratelimit_config pc = {.rules = &rule, .nrules = 1};
    sl_ratelimit *policy;
    if (sl_ratelimit_new(&pc, &policy) != 0) return 1;
    sl_ratelimit_input in = {.now_ns = sl_now_ns()};
    sl_ratelimit_decision d;
    (void)sl_ratelimit_decide(policy, &in, NULL, &d);
    sl_go(task, rl);
    sl_ratelimit_free(policy);
    sl_redis_limiter_free(rl);
    return 0;
}
C
"$CC" "${FLAGS[@]}" "$TMP/redis_task.c" || { echo "the Redis-from-a-task snippet does not compile with the public headers"; exit 1; }
echo "headers: $n compile on their own; snippets clean under -Wpedantic"
