#!/usr/bin/env bash
# 8000 concurrent clients whose requests each wait 1 s on the request's ctx, on one loop:
# sluice-bench-server's GET /wait1s (a task route: sl_ctx_wait_for(sl_req_ctx(req), 1 s)) side
# by side with Go net/http (bench/go/waitserver.go: select on a 1 s timer / r.Context().Done(),
# GOMAXPROCS=1), in the same run, alternating sluice, Go, sluice, Go.
#
#   scripts/bench_wait8k.sh [build-dir]      (default build/release)
#   env: CONNS=8000, SECONDS_PER_RUN=10 (measured window), WARMUP=3 (s before the window: the
#        connections open and start their first requests), TIMEOUT_S=5 (a request older than
#        this counts as a timeout; its connection is closed and reopened), ROUNDS=2,
#        GO_DEPS=0 (sluice only: no Go toolchain), WIDE=0 (only the bench.sh rows, without
#        the side-by-side table), SLUICE_LOOP_FLAGS (how sluice gets one loop; see below)
#
# Both servers are pinned to CPU 0, the load (build/.../sluice-wait-load: epoll, one thread; see
# its header for why not wrk) to CPU 1. The load samples the server's VmRSS every 100 ms over
# the window and reads its VmHWM at the end (each server is started fresh for each run). Every
# step is bounded by `timeout`; the servers are stopped on exit and on Ctrl-C. Prints Markdown
# rows "| name | value | unit | note |" (bench.sh merges them into its table and CSV), then,
# unless WIDE=0, one side-by-side table. Loopback only.
set -euo pipefail

dir=${1:-build/release}
root=$(cd "$(dirname "$0")/.." && pwd)
srv_bin="$dir/bench/http/sluice-bench-server"
load_bin="$dir/bench/http/sluice-wait-load"
CONNS=${CONNS:-8000}
SECS=${SECONDS_PER_RUN:-10}
WARMUP=${WARMUP:-3}
TIMEOUT_S=${TIMEOUT_S:-5}
ROUNDS=${ROUNDS:-2}
WIDE=${WIDE:-1}
PY=${PYTHON:-$(command -v /usr/bin/python3 || command -v python3 || true)}
# One loop for sluice: the server runs on its runtime's loops, and --reactors 1 is a private
# runtime of one loop that serves the connections and runs the task routes' tasks.
SLUICE_LOOP_FLAGS=${SLUICE_LOOP_FLAGS:---reactors 1}
read -ra SLUICE_ONE_LOOP <<<"$SLUICE_LOOP_FLAGS"

note_skip() {
    echo "| wait8k | skipped | | $1 |"
    echo "bench_wait8k: skipped: $1" >&2
    exit 0
}
[ -x "$srv_bin" ] || note_skip "no $srv_bin"
[ -x "$load_bin" ] || note_skip "no $load_bin"
[ -n "$PY" ] || note_skip "python3 not installed"
for v in CONNS SECS WARMUP TIMEOUT_S ROUNDS; do
    [[ ${!v} =~ ^[0-9]+$ ]] || { echo "bench_wait8k: $v must be a non-negative integer" >&2; exit 2; }
done

# Each side holds CONNS sockets (the load one per client, the server one per connection).
need=$((CONNS + 1024))
hard=$(ulimit -Hn)
if [ "$hard" != unlimited ] && [ "$hard" -lt "$need" ]; then
    note_skip "$CONNS connections need $need file descriptors per process; ulimit -Hn is $hard (raise the hard limit)"
fi
ulimit -n "$need"

tmp=$(mktemp -d /tmp/sluice-bench-wait8k.XXXXXX)
srv_pid=""
stop_srv() {
    [ -n "$srv_pid" ] || return 0
    kill -TERM "$srv_pid" 2>/dev/null || true
    timeout 10 tail --pid="$srv_pid" -f /dev/null || kill -KILL "$srv_pid" 2>/dev/null || true
    wait "$srv_pid" 2>/dev/null || true
    srv_pid=""
}
cleanup() {
    stop_srv
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

have_go=0
if [ "${GO_DEPS:-1}" != 0 ]; then
    "$root/scripts/bench_go_deps.sh" || true
    if command -v go >/dev/null; then
        mkdir -p "$tmp/gopath/src/waitserver" "$tmp/gocache"
        cp "$root/bench/go/waitserver.go" "$tmp/gopath/src/waitserver/main.go"
        if (cd "$tmp/gopath/src/waitserver" &&
            GO111MODULE=off GOPATH="$tmp/gopath" GOCACHE="$tmp/gocache" GOFLAGS='' GOPROXY=off \
                timeout 300 go build -o "$tmp/waitserver" .) >"$tmp/gobuild.log" 2>&1; then
            have_go=1
        else
            echo "bench_wait8k: go build failed: $(tr '\n' ' ' <"$tmp/gobuild.log")" >&2
        fi
    fi
fi

free_port() {
    "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_port() { # port
    for _ in $(seq 1 100); do
        "$PY" -c "import socket,sys; s=socket.socket(); s.settimeout(0.2); sys.exit(s.connect_ex(('127.0.0.1',$1)))" \
            && return 0
        sleep 0.05 # sleep-ok: polling a port with a bounded number of tries
    done
    return 1
}

# run_one sluice|go -> prints the load's key=value line. Starts a fresh server (so VmHWM is
# this run's), loads it, stops it.
run_one() {
    local port
    port=$(free_port)
    if [ "$1" = sluice ]; then
        taskset -c 0 "$srv_bin" --addr 127.0.0.1 --port "$port" --mux 1 "${SLUICE_ONE_LOOP[@]}" \
            --max-connections $((CONNS + 1000)) --max-conns-per-ip $((CONNS + 1000)) \
            >"$tmp/srv.log" 2>&1 &
    else
        GOMAXPROCS=1 taskset -c 0 "$tmp/waitserver" --addr 127.0.0.1 --port "$port" \
            >"$tmp/srv.log" 2>&1 &
    fi
    srv_pid=$!
    wait_port "$port" || { echo "bench_wait8k: $1 did not start: $(tr '\n' ' ' <"$tmp/srv.log")" >&2; stop_srv; return 1; }
    # --foreground: the load stays in our process group, so Ctrl-C stops it too.
    timeout --foreground $((WARMUP + SECS + 60)) taskset -c 1 "$load_bin" --port "$port" --conns "$CONNS" \
        --warmup-s "$WARMUP" --seconds "$SECS" --timeout-s "$TIMEOUT_S" --pid "$srv_pid" || true
    stop_srv
}

load0=$(cut -d' ' -f1 /proc/loadavg)
declare -A runs
sides=(sluice)
[ $have_go -eq 1 ] && sides+=(go)
for _ in $(seq 1 "$ROUNDS"); do
    for side in "${sides[@]}"; do
        # Not in a command substitution: srv_pid must stay visible to the cleanup trap.
        run_one "$side" >"$tmp/load.out" || true
        runs[$side]+="$(tail -1 "$tmp/load.out")"$'\n'
    done
done

# field side key -> that key's values over the runs, one per line
field() { printf "%s" "${runs[$1]:-}" | grep -o "\b$2=[-0-9.]*" | cut -d= -f2; }
median() { sort -g | awk '{a[NR]=$1} END {if (NR==0) print 0; else if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
sum() { awk '{s+=$1} END {print s+0}'; }
list() { paste -sd/ -; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", (b > 0 ? a / b : 0)}'; }

declare -A rps bad rss hwm p99 cpu detail
for side in "${sides[@]}"; do
    rps[$side]=$(field "$side" rps | median)
    bad[$side]=$(
        {
            field "$side" timeouts
            field "$side" errors
            field "$side" conn_errors
            field "$side" non200
        } | sum
    )
    rss[$side]=$(field "$side" rss_peak_kb | median)
    hwm[$side]=$(field "$side" hwm_kb | median)
    p99[$side]=$(field "$side" p99_ms | median)
    # server CPU seconds per 1000 responses, over the window
    cpu[$side]=$(awk -v c="$(field "$side" server_cpu_s | median)" -v n="$(field "$side" served | median)" \
        'BEGIN {printf "%.3f", (n > 0 ? 1000 * c / n : 0)}')
    detail[$side]="runs $(field "$side" rps | list) req/s; timeouts $(field "$side" timeouts | sum), errors $(field "$side" errors | sum), connect errors $(field "$side" conn_errors | sum), non-200 $(field "$side" non200 | sum); p99 $(field "$side" p99_ms | list) ms"
done

cfg="$CONNS keep-alive clients, GET back to back, handler waits 1 s; ${SECS} s window after ${WARMUP} s warm-up; server on CPU 0, load on CPU 1; median of $ROUNDS"
declare -A label=([sluice]="sluice ($SLUICE_LOOP_FLAGS)" [go]="Go net/http (GOMAXPROCS=1)")
for side in "${sides[@]}"; do
    echo "| wait8k served/s: ${label[$side]} | $(printf '%.0f' "${rps[$side]}") | req/s | $cfg; ${detail[$side]} |"
    echo "| wait8k timeouts + errors: ${label[$side]} | ${bad[$side]} | count | sum over $ROUNDS runs; client timeout ${TIMEOUT_S} s |"
    echo "| wait8k peak RSS: ${label[$side]} | $(awk -v k="${hwm[$side]}" 'BEGIN {printf "%.1f", k / 1024}') | MiB | VmHWM; VmRSS sampled every 100 ms peaked at $(awk -v k="${rss[$side]}" 'BEGIN {printf "%.1f", k / 1024}') MiB |"
    echo "| wait8k server CPU per 1000 served: ${label[$side]} | ${cpu[$side]} | cpu-s | user + system over the window |"
done
verdict="Go not run"
if [ $have_go -eq 1 ]; then
    rr=$(ratio "${rps[sluice]}" "${rps[go]}")
    mr=$(ratio "${hwm[sluice]}" "${hwm[go]}")
    echo "| wait8k served/s sluice / Go | $rr | x | same run (target >= 1) |"
    echo "| wait8k peak RSS sluice / Go | $mr | x | VmHWM, same run (target <= 1) |"
    met=$(awk -v r="$rr" -v m="$mr" -v b="${bad[sluice]}" 'BEGIN {print (r >= 1 && m <= 1 && b == 0) ? "met" : "not met"}')
    verdict="$met (served/s ${rr}x Go, RSS ${mr}x Go, ${bad[sluice]} timeouts + errors)"
    echo "| wait8k target: served/s >= Go, zero timeouts, RSS <= Go | $met | | same run |"
fi

if [ "$WIDE" != 0 ]; then
    echo
    echo "$(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, load average $load0 -> $(cut -d' ' -f1 /proc/loadavg); $cfg"
    echo "| server | served/s (runs) | timeouts / errors / connect errors / non-200 | p99 latency | peak RSS (VmHWM) | server CPU per 1000 served |"
    echo "|---|---:|---:|---:|---:|---:|"
    for side in "${sides[@]}"; do
        echo "| ${label[$side]} | $(printf '%.0f' "${rps[$side]}") ($(field "$side" rps | list)) | $(field "$side" timeouts | sum) / $(field "$side" errors | sum) / $(field "$side" conn_errors | sum) / $(field "$side" non200 | sum) | $(printf '%.0f' "${p99[$side]}") ms | $(awk -v k="${hwm[$side]}" 'BEGIN {printf "%.1f", k / 1024}') MiB | ${cpu[$side]} s |"
    done
    if [ $have_go -eq 1 ]; then
        echo "| sluice / Go | $(ratio "${rps[sluice]}" "${rps[go]}") | | | $(ratio "${hwm[sluice]}" "${hwm[go]}") | $(ratio "${cpu[sluice]}" "${cpu[go]}") |"
    fi
    echo
    echo "Target (served/s >= Go, zero timeouts, RSS <= Go): $verdict"
fi
