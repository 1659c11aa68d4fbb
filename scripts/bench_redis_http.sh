#!/usr/bin/env bash
# Redis-limited vs in-memory-limited HTTP throughput, side by side in one run, and latency while
# Redis is down (fail-open). Starts its own redis-server and one sluice-bench-server (--limits 1
# --redis-port) on free loopback ports; every step is bounded by `timeout`; everything it starts
# is stopped on exit. Both routes are task routes applying one sl_ratelimit policy (global +
# per-IP + per-API-key, limits that never bind) with sl_mw_ratelimit_apply; on /limited-redis
# the per-IP rule counts in Redis (the task parks for the round trip). Runs alternate between
# the two routes REPS times; the medians are reported. With PIN=1 (the default on 2+ CPUs) the
# server runs on CPU 0, redis-server and wrk on CPU 1, the same for both routes (Redis as if on
# another host; wrk shares its core with it, which can only slow the Redis route). CONNS
# connections (default 64: enough in flight that Redis's round trip is hidden). Prints Markdown rows
# "| name | value | unit | note |". Called by scripts/bench.sh.
set -uo pipefail
dir=${1:-build/release}
DURATION=${DURATION:-5}
REPS=${REPS:-3}
CONNS=${CONNS:-64}
PIN=${PIN:-$([ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null && echo 1 || echo 0)}
cpu0=() cpu1=() # command prefixes (taskset execs: $! stays the server's pid)
if [ "$PIN" = 1 ]; then cpu0=(taskset -c 0) cpu1=(taskset -c 1); fi
srv="$dir/bench/http/sluice-bench-server"
if ! command -v redis-server >/dev/null || ! command -v wrk >/dev/null || [ ! -x "$srv" ]; then
    echo "| redis http bench | skipped | | redis-server, wrk or $srv missing |"
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
"${cpu1[@]}" redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no >/dev/null 2>&1 &
rpid=$!
pids+=("$rpid")
wait_port "$rport" || { echo "| redis http bench | failed | | redis-server did not start |"; exit 0; }
port=$(free_port)
"${cpu0[@]}" "$srv" --port "$port" --reactors 1 --mux 1 --limits 1 --redis-port "$rport" >"$tmp/srv.log" 2>&1 &
spid=$!
pids+=("$spid")
wait_port "$port" || { echo "| redis http bench | failed | | sluice-bench-server did not start |"; exit 0; }
# Redis answers (the "ip" policy is described only when Redis counted the request; the first
# check also connects and loads the script, which a loaded machine can push past the 50 ms
# per-call timeout: a few tries).
answered=0
for _ in $(seq 10); do
    curl -s -D - -o /dev/null "http://127.0.0.1:$port/limited-redis" | grep -q '"ip";r=' && { answered=1; break; }
done
[ "$answered" = 1 ] || { echo "| redis http bench | failed | | /limited-redis not answered by Redis |"; exit 0; }
hz=$(getconf CLK_TCK)
ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
declare -A cpu_srv=() cpu_red=() cpu_wrk=() reqs=()
# Sets ct to the CPU this shell's waited-for children used, in ticks (bash's `times`, second
# line: user, sys). Not called as $(...): a subshell would report its own, empty, children.
child_ticks() {
    times >"$tmp/times"
    ct=$(awk -v hz="$hz" 'NR == 2 {t = 0; for (i = 1; i <= 2; i++) {split($i, a, "m"); t += a[1] * 60 + a[2]}
                          printf "%.0f\n", t * hz}' "$tmp/times")
}

run_wrk() { # path -> "req/s p99_ms non2xx"; adds the CPU both servers spent to cpu_srv/cpu_red
    local s0 r0 w0
    child_ticks
    s0=$(ticks "$spid") r0=$(ticks "$rpid") w0=$ct
    timeout $((DURATION + 20)) "${cpu1[@]}" wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency --timeout 5s \
        -H 'X-API-Key: bench' "http://127.0.0.1:$port$1" >"$tmp/wrk.out" 2>&1
    cpu_srv[$1]=$((${cpu_srv[$1]:-0} + $(ticks "$spid") - s0))
    cpu_red[$1]=$((${cpu_red[$1]:-0} + $(ticks "$rpid") - r0))
    child_ticks
    cpu_wrk[$1]=$((${cpu_wrk[$1]:-0} + ct - w0))
    reqs[$1]=$((${reqs[$1]:-0} + $(awk '/requests in/ {print $1}' "$tmp/wrk.out")))
    awk '/Requests\/sec/ {r=$2} /^ +99%/ {p=$2} /Non-2xx/ {n=$NF}
         END {u=p; v=p+0; if (u ~ /us$/) v/=1000; else if (u ~ /ms$/) v+=0; else if (u ~ /s$/) v*=1000;
              printf "%.0f %.2f %s\n", r, v, (n==""?0:n)}' "$tmp/wrk.out"
}
median() { sort -n | awk '{a[NR]=$1} END {print (NR ? a[int((NR+1)/2)] : 0)}'; }
mem=() red=() memp=() redp=() bad=0
for _ in $(seq "$REPS"); do
    run_wrk /limited-task >"$tmp/r"; read -r r p n <"$tmp/r"; mem+=("$r"); memp+=("$p"); bad=$((bad + n))
    run_wrk /limited-redis >"$tmp/r"; read -r r p n <"$tmp/r"; red+=("$r"); redp+=("$p"); bad=$((bad + n))
done
mem_rps=$(printf '%s\n' "${mem[@]}" | median); red_rps=$(printf '%s\n' "${red[@]}" | median)
mem_p99=$(printf '%s\n' "${memp[@]}" | median); red_p99=$(printf '%s\n' "${redp[@]}" | median)
note="wrk -t1 -c$CONNS -d${DURATION}s x$REPS alternating, medians; task routes, 1 reactor; same run; PIN=$PIN"
echo "| http limited, in-memory policy (task route): sluice-bench-server /limited-task | $mem_rps | req/s | $note; runs ${mem[*]}; p99 ${mem_p99} ms |"
echo "| http limited, per-IP rule in Redis (task parks): sluice-bench-server /limited-redis | $red_rps | req/s | $note; runs ${red[*]}; p99 ${red_p99} ms; non-2xx total ${bad} |"
awk -v a="$red_rps" -v b="$mem_rps" 'BEGIN {printf "| http Redis-limited / in-memory-limited | %.2f | x | target >= 0.8 |\n", (b > 0 ? a / b : 0)}'
for r in /limited-task /limited-redis; do # CPU per request over all runs (less load-sensitive)
    awk -v r="$r" -v s="${cpu_srv[$r]:-0}" -v d="${cpu_red[$r]:-0}" -v w="${cpu_wrk[$r]:-0}" -v n="${reqs[$r]:-0}" -v hz="$hz" \
        'BEGIN {if (n > 0) printf "| http %s CPU per request: server / redis-server / wrk | %.1f / %.1f / %.1f | us | utime+stime over all runs (server CPU 0; redis-server and wrk share CPU 1 when pinned) |\n", r, s * 1e6 / hz / n, d * 1e6 / hz / n, w * 1e6 / hz / n}'
done

# The same ratio per server CPU-second (requests / the server's CPU time): what the Redis rule
# costs the server itself, whichever core the load generator and redis-server saturate.
awk -v sm="${cpu_srv[/limited-task]:-0}" -v nm="${reqs[/limited-task]:-0}" \
    -v sr="${cpu_srv[/limited-redis]:-0}" -v nr="${reqs[/limited-redis]:-0}" \
    'BEGIN {if (sm > 0 && sr > 0 && nm > 0) printf "| http Redis-limited / in-memory-limited per server core | %.2f | x | requests per server CPU-second, same run |\n", (nr / sr) / (nm / sm)}'

kill -TERM "$rpid" 2>/dev/null
timeout 10 tail --pid="$rpid" -f /dev/null
read -r down_rps down_p99 down_bad < <(run_wrk /limited-redis)
echo "| http limited while Redis is down (fail-open): /limited-redis | $down_rps | req/s | p99 ${down_p99} ms (target < per-call timeout 50 ms + 1 ms); non-2xx ${down_bad} |"
