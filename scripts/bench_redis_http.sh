#!/usr/bin/env bash
# Redis-limited vs in-memory-limited HTTP throughput, side by side in one run, and latency while
# Redis is down (fail-open). Starts its own redis-server and two sluice-demo instances on free
# loopback ports; every step is bounded by `timeout`; everything it starts is stopped on exit.
# Prints Markdown rows "| name | value | unit | note |". Called by scripts/bench.sh.
set -uo pipefail
dir=${1:-build/release}
DURATION=${DURATION:-5}
demo="$dir/apps/sluice-demo"
if ! command -v redis-server >/dev/null || ! command -v wrk >/dev/null || [ ! -x "$demo" ]; then
    echo "| redis http bench | skipped | | redis-server, wrk or $demo missing |"
    exit 0
fi
tmp=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
    for p in "${pids[@]}"; do timeout 10 tail --pid="$p" -f /dev/null 2>/dev/null || kill -KILL "$p" 2>/dev/null; done
    rm -rf "$tmp"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; timeout 0.05 tail -f /dev/null; done; return 1; }

rport=$(free_port)
redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no >/dev/null 2>&1 &
rpid=$!
pids+=("$rpid")
wait_port "$rport" || { echo "| redis http bench | failed | | redis-server did not start |"; exit 0; }

# Limits high enough that every request is allowed: the cost measured is the check itself.
LIMITS=(--global-rate inf --ip-rate 1000000 --ip-burst 1000000 --enterprise-rate 1000000
        --enterprise-burst 1000000 --reactors 1 --log-level error)
start_demo() { # port [extra flags...]
    local port=$1; shift
    "$demo" --port "$port" "${LIMITS[@]}" "$@" >"$tmp/demo-$port.log" 2>&1 &
    pids+=("$!")
    wait_port "$port" || return 1
    curl -s -o /dev/null -H 'X-API-Key: demo-enterprise' \
        -d '{"name":"Ada","email":"ada@example.com"}' "http://127.0.0.1:$port/users"
}
pmem=$(free_port); pred=$(free_port)
start_demo "$pmem" || { echo "| redis http bench | failed | | demo did not start |"; exit 0; }
start_demo "$pred" --redis "redis://127.0.0.1:$rport" --redis-fail open ||
    { echo "| redis http bench | failed | | demo --redis did not start |"; exit 0; }

run_wrk() { # port -> "req/s p99_ms non2xx"
    timeout $((DURATION + 20)) wrk -t1 -c32 -d"${DURATION}s" --latency --timeout 5s \
        -H 'X-API-Key: demo-enterprise' "http://127.0.0.1:$1/users/1" >"$tmp/wrk.out" 2>&1
    awk '/Requests\/sec/ {r=$2} /^ +99%/ {p=$2} /Non-2xx/ {n=$NF}
         END {u=p; v=p+0; if (u ~ /us$/) v/=1000; else if (u ~ /ms$/) v+=0; else if (u ~ /s$/) v*=1000;
              printf "%.0f %.2f %s\n", r, v, (n==""?0:n)}' "$tmp/wrk.out"
}
read -r mem_rps mem_p99 mem_bad < <(run_wrk "$pmem")
read -r red_rps red_p99 red_bad < <(run_wrk "$pred")
note="wrk -t1 -c32 -d${DURATION}s, GET /users/1 (X-API-Key), every request allowed, 1 reactor; same run"
echo "| http limited, in-memory limits: sluice-demo | $mem_rps | req/s | $note; p99 ${mem_p99} ms; non-2xx ${mem_bad} |"
echo "| http limited, per-IP limit in Redis: sluice-demo --redis | $red_rps | req/s | $note; p99 ${red_p99} ms; non-2xx ${red_bad} |"
awk -v a="$red_rps" -v b="$mem_rps" 'BEGIN {printf "| http Redis-limited / in-memory-limited | %.2f | x | target >= 0.5 |\n", (b > 0 ? a / b : 0)}'

kill -TERM "$rpid" 2>/dev/null
timeout 10 tail --pid="$rpid" -f /dev/null
read -r down_rps down_p99 down_bad < <(run_wrk "$pred")
echo "| http limited while Redis is down (fail-open): sluice-demo --redis | $down_rps | req/s | p99 ${down_p99} ms (target < per-call timeout 50 ms + 1 ms); non-2xx ${down_bad} |"
