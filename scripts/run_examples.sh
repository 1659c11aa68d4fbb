#!/usr/bin/env bash
# Builds every program in examples/ under ASan+UBSan+LSan (build/asan) and RUNS each one the way
# a reader would, with a request that exercises it: a sanitizer report, a wrong answer or a
# non-zero exit fails. The README's example (hello_service) runs first. An example without a
# recipe below fails too, so a new example cannot be added without being run.
#   scripts/run_examples.sh [build-dir]      (default build/asan)
set -euo pipefail
cd "$(dirname "$0")/.."
B=${1:-build/asan}
JOBS=${JOBS:-2}
export ASAN_OPTIONS=halt_on_error=1:exitcode=66:detect_leaks=1:strict_string_checks=1
export UBSAN_OPTIONS=halt_on_error=1:exitcode=66:print_stacktrace=1
export LSAN_OPTIONS=exitcode=66

if [ ! -f "$B/CMakeCache.txt" ]; then
    cmake -S . -B "$B" -DCMAKE_BUILD_TYPE=Debug -DSLUICE_SANITIZE=address -DSLUICE_WERROR=ON \
        >/dev/null
else
    cmake -S . -B "$B" >/dev/null # an example added since the last configure gets its target
fi
mapfile -t names < <(cd examples && ls ./*.c | sed 's|^\./||; s|\.c$||')
cmake --build "$B" -j "$JOBS" --target "${names[@]/#/example_}" >/dev/null

TMP=$(mktemp -d)
PID=
cleanup() { [ -n "$PID" ] && kill -9 "$PID" 2>/dev/null; rm -rf "$TMP"; }
trap cleanup EXIT
fail() { echo "run_examples: $*" >&2; for f in "$TMP"/*; do [ -f "$f" ] || continue; echo "--- $f" >&2; cat "$f" >&2; done; exit 1; }

# want FILE TEXT: FILE contains TEXT.
want() { grep -qF -- "$2" "$1" || fail "expected '$2' in $1"; }

# A server example: start it on port 0, read the port it prints, run the curl checks in the
# function named $2, then stop it with SIGINT and require a clean exit (graceful shutdown, no
# leak report).
serve() {
    local name=$1 checks=$2
    mkfifo "$TMP/$name.fifo"
    exec 3<>"$TMP/$name.fifo" # read-write: opening does not wait for the writer
    "$B/examples/example_$name" 0 >&3 2>"$TMP/$name.err" &
    PID=$!
    local line= port=
    read -t 30 -r line <&3 || fail "$name printed no 'listening on' line within 30 s"
    port=$(sed -n 's|^listening on http://127.0.0.1:\([0-9]*\).*|\1|p' <<<"$line")
    [ -n "$port" ] || fail "$name printed '$line', not 'listening on http://127.0.0.1:PORT'"
    "$checks" "$port"
    kill -INT "$PID"
    local rc=0
    wait "$PID" || rc=$?
    PID=
    exec 3<&-
    [ "$rc" = 0 ] || fail "$name exited with $rc after SIGINT"
    echo "example $name: ok"
}

C="curl -sS --max-time 10"
hello_checks() {
    local u=http://127.0.0.1:$1
    local out
    out=$($C "$u/hello/ada") || fail "GET /hello/ada: curl failed"
    [ "$out" = "hello, ada" ] || fail "GET /hello/ada: '$out'"
    [ "$($C "$u/hello/J%C3%BCrgen")" = "hello, Jürgen" ] || fail "GET /hello/J%C3%BCrgen"
    [ "$($C -o /dev/null -w '%{http_code}' "$u/nope")" = 404 ] || fail "GET /nope is not 404"
    $C "$u/metrics" >"$TMP/metrics.txt" || fail "GET /metrics: curl failed"
    want "$TMP/metrics.txt" 'http_requests_total'
}

json_checks() {
    local u=http://127.0.0.1:$1
    local out
    out=$($C -H 'Content-Type: application/json' -d '{"name":"ada","n":2}' "$u/greet") ||
        fail "POST /greet: curl failed"
    [ "$out" = '{"greeting":"hello, ada","n":2}' ] || fail "POST /greet: $out"
    out=$($C -o "$TMP/bad.json" -w '%{http_code}' -d '{"name":' "$u/greet") ||
        fail "POST /greet (bad JSON): curl failed"
    [ "$out" = 400 ] || fail "POST /greet with bad JSON: $out"
    want "$TMP/bad.json" 'line 1'
}

fetch_checks() {
    local u=http://127.0.0.1:$1
    [ "$($C -o /dev/null -w '%{http_code}' "$u/fetch")" = 504 ] || fail "GET /fetch is not 504"
}

run() { # run NAME ARGS... : a program that runs to completion
    local name=$1
    shift
    "$B/examples/example_$name" "$@" >"$TMP/$name.out" 2>"$TMP/$name.err" ||
        fail "$name $* exited with $?"
}

# The README's example first.
serve hello_service hello_checks
for name in "${names[@]}"; do
    case $name in
    hello_service) ;;
    readme_jobs)
        run readme_jobs
        want "$TMP/readme_jobs.err" 'welcome sent'
        echo "example readme_jobs: ok"
        ;;
    log_and_metrics)
        run log_and_metrics
        want "$TMP/log_and_metrics.out" 'jobs_total{worker="0",result="ok"}'
        want "$TMP/log_and_metrics.err" 'job failed'
        run log_and_metrics json
        want "$TMP/log_and_metrics.err" '"after":'
        echo "example log_and_metrics: ok"
        ;;
    json_service) serve json_service json_checks ;;
    fetch_with_timeout) serve fetch_with_timeout fetch_checks ;;
    db_users)
        run db_users
        want "$TMP/db_users.out" 'ada@example.com: already taken'
        want "$TMP/db_users.out" "1 ada@example.com Ada"
        echo "example db_users: ok"
        ;;
    *) fail "examples/$name.c has no run recipe in scripts/run_examples.sh" ;;
    esac
done
echo "run_examples: every example ran clean under ASan"
