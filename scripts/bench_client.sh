#!/usr/bin/env bash
# Outbound HTTP: sl_client side by side with Go's http.Client, in the same run, against the same
# local server (sluice-bench-server, one reactor, pinned to CPU 0). Both clients run pinned to
# CPU 1 with CALLERS concurrent callers GETting "/" for SECONDS, with the same per-host
# connection limit; each prints requests/s and the TCP connections it opened.
#
#   scripts/bench_client.sh [build-dir]       (default build/release)
#   env: SECONDS_PER_RUN=3, CALLERS=64, PER_HOST="64 8" (one round per limit), REPS=3 (runs
#        alternate sluice / Go)
#
# The Go program (bench/go/httpclient.go, standard library only) is built from source here,
# offline, in GOPATH mode. Loopback only; every step bounded by `timeout`.
set -euo pipefail

dir=${1:-build/release}
srv_bin="$dir/bench/http/sluice-bench-server"
cli_bin="$dir/bench/bench_client"
SECS=${SECONDS_PER_RUN:-3}
CALLERS=${CALLERS:-64}
PER_HOST=${PER_HOST:-64 8}
REPS=${REPS:-3}
PY=${PYTHON:-$(command -v /usr/bin/python3 || command -v python3 || true)}

note_skip() { echo "| client benchmarks | skipped | | $1 |"; exit 0; }
[ -x "$srv_bin" ] || note_skip "no $srv_bin"
[ -x "$cli_bin" ] || note_skip "no $cli_bin"
command -v go >/dev/null || note_skip "go not installed (golang-go)"
[ -n "$PY" ] || note_skip "python3 not installed"

tmp=$(mktemp -d /tmp/sluice-bench-client.XXXXXX)
srv_pid=""
cleanup() {
    [ -n "$srv_pid" ] && kill "$srv_pid" 2>/dev/null && wait "$srv_pid" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT

mkdir -p "$tmp/gopath/src/httpclient" "$tmp/gocache"
cp "$(dirname "$0")/../bench/go/httpclient.go" "$tmp/gopath/src/httpclient/"
(cd "$tmp/gopath/src/httpclient" &&
    GO111MODULE=off GOPATH="$tmp/gopath" GOCACHE="$tmp/gocache" GOFLAGS= GOPROXY=off \
        timeout 300 go build -o "$tmp/httpclient" .) || note_skip "go build failed"

port=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
taskset -c 0 "$srv_bin" --addr 127.0.0.1 --port "$port" --reactors 1 >"$tmp/srv.log" 2>&1 &
srv_pid=$!
for _ in $(seq 1 100); do
    "$PY" -c "import socket,sys; s=socket.socket(); s.settimeout(0.2); sys.exit(s.connect_ex(('127.0.0.1',$port)))" && break
    sleep 0.05 # sleep-ok: polling a port with a bounded number of tries
done
url="http://127.0.0.1:$port/"
lim=$((SECS + 60))
for limit in $PER_HOST; do
    args=(--url "$url" --callers "$CALLERS" --seconds "$SECS" --max-conns-per-host "$limit")
    for i in $(seq 1 "$REPS"); do
        timeout "$lim" taskset -c 1 "$cli_bin" "${args[@]}" | sed "s/ |\$/, run $i |/"
        timeout "$lim" taskset -c 1 "$tmp/httpclient" "${args[@]}" | sed "s/ |\$/, run $i |/"
    done
done
