#!/usr/bin/env bash
# HTTP benchmarks: sluice-bench-server side by side with Debian's nginx, in the same run.
#
#   scripts/bench_http.sh [build-dir]      (default build/release)
#   env: DURATION=5 (s per wrk run), REPS=1 (runs per row; the median is printed),
#        CONNS=64, DEPTH=16 (pipeline depth), IDLE=10000 (idle connections for the RSS row),
#        ONLY=handlers (just the inline / pooled / middleware rows)
#
# Both servers are pinned to CPU 0 with one reactor / one worker; wrk and the idle-connection
# client are pinned to CPU 1. Loopback only, every step bounded by `timeout`. Prints Markdown
# rows "| name | value | unit | note |". The machine may be shared: compare the rows of one
# run with each other (the ratio rows), not with other runs.
set -euo pipefail

dir=${1:-build/release}
srv_bin="$dir/bench/http/sluice-bench-server"
DURATION=${DURATION:-5}
REPS=${REPS:-1}
CONNS=${CONNS:-64}
DEPTH=${DEPTH:-16}
IDLE=${IDLE:-10000}
NGINX=${NGINX:-/usr/sbin/nginx}
# The system interpreter starts much faster than a pyenv shim; any python3 works.
PY=${PYTHON:-$(command -v /usr/bin/python3 || command -v python3 || true)}

note_skip() { echo "| http benchmarks | skipped | | $1 |"; exit 0; }
[ -x "$srv_bin" ] || note_skip "no $srv_bin"
command -v wrk >/dev/null || note_skip "wrk not installed"
[ -n "$PY" ] || note_skip "python3 not installed"
have_nginx=1
[ -x "$NGINX" ] || have_nginx=0

tmp=$(mktemp -d /tmp/sluice-bench-http.XXXXXX)
sluice_pid=""
nginx_pid=""
cleanup() {
    [ -n "$sluice_pid" ] && kill "$sluice_pid" 2>/dev/null && wait "$sluice_pid" 2>/dev/null
    [ -n "$nginx_pid" ] && kill -QUIT "$nginx_pid" 2>/dev/null && wait "$nginx_pid" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT

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

# start_* set PORT and the server's pid (no command substitution: the pid must reach us).
# start_sluice takes extra server flags (--mux 1, --mw 1).
start_sluice() {
    local port
    port=$(free_port)
    taskset -c 0 "$srv_bin" --addr 127.0.0.1 --port "$port" --reactors 1 \
        --max-connections 20000 "$@" >"$tmp/sluice.log" 2>&1 &
    sluice_pid=$!
    wait_port "$port" || { echo "| sluice | failed to start | | $(cat "$tmp/sluice.log") |"; exit 1; }
    PORT=$port
}

stop_sluice() {
    kill -TERM "$sluice_pid" 2>/dev/null || true
    timeout 10 tail --pid="$sluice_pid" -f /dev/null || kill -KILL "$sluice_pid" 2>/dev/null || true
    wait "$sluice_pid" 2>/dev/null || true
    sluice_pid=""
}

start_nginx() {
    local port
    port=$(free_port)
    mkdir -p "$tmp/ngx"
    cat >"$tmp/ngx/nginx.conf" <<EOF
worker_processes 1;
worker_rlimit_nofile 30000;
daemon off;
pid $tmp/ngx/nginx.pid;
error_log $tmp/ngx/error.log warn;
events { worker_connections 20000; }
http {
    access_log off;
    keepalive_requests 100000000;
    keepalive_timeout 75s;
    client_body_temp_path $tmp/ngx/body;
    proxy_temp_path $tmp/ngx/proxy;
    fastcgi_temp_path $tmp/ngx/fastcgi;
    uwsgi_temp_path $tmp/ngx/uwsgi;
    scgi_temp_path $tmp/ngx/scgi;
    default_type text/plain;
    server {
        listen 127.0.0.1:$port;
        location / { return 200 "Hello, World!"; }
    }
}
EOF
    taskset -c 0 "$NGINX" -p "$tmp/ngx" -c "$tmp/ngx/nginx.conf" >"$tmp/ngx/out.log" 2>&1 &
    nginx_pid=$!
    wait_port "$port" || { echo "| nginx | failed to start | | $(cat "$tmp/ngx/error.log" "$tmp/ngx/out.log" 2>/dev/null | tr '\n' ' ') |"; exit 1; }
    PORT=$port
}

stop_nginx() {
    kill -QUIT "$nginx_pid" 2>/dev/null || true
    timeout 10 tail --pid="$nginx_pid" -f /dev/null || kill -KILL "$nginx_pid" 2>/dev/null || true
    wait "$nginx_pid" 2>/dev/null || true
    nginx_pid=""
}

cat >"$tmp/pipeline.lua" <<'EOF'
-- Sends `depth` requests back to back in one write (HTTP pipelining).
init = function(args)
    local depth = tonumber(args[1]) or 1
    local r = {}
    for i = 1, depth do r[i] = wrk.format() end
    req = table.concat(r)
end
request = function() return req end
EOF

# CPU time (clock ticks, user + system) used so far by the given pids.
cpu_ticks() {
    local t=0 p a b
    for p in "$@"; do
        read -r a b < <(awk '{print $14, $15}' "/proc/$p/stat")
        t=$((t + a + b))
    done
    echo "$t"
}
HZ=$(getconf CLK_TCK)

# wrk_rps port depth pids... -> prints "rps req_per_cpu_s errors". req_per_cpu_s is requests
# divided by the server's CPU seconds during the run: throughput per server core, which the
# load on a shared machine distorts much less than requests/s.
wrk_rps() {
    local port=$1 depth=$2 out c0 c1
    shift 2
    local args=(-t1 -c"$CONNS" -d"${DURATION}s" --timeout 5s)
    [ "$depth" -gt 1 ] && args+=(-s "$tmp/pipeline.lua")
    args+=("http://127.0.0.1:$port${URLPATH:-/plaintext}")
    [ "$depth" -gt 1 ] && args+=(-- "$depth")
    c0=$(cpu_ticks "$@")
    out=$(timeout $((DURATION + 20)) taskset -c 1 wrk "${args[@]}" 2>&1) || true
    c1=$(cpu_ticks "$@")
    local rps n errs per
    rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
    n=$(awk '/requests in/ {print $1}' <<<"$out")
    per=$(awk -v n="${n:-0}" -v t=$((c1 - c0)) -v hz="$HZ" 'BEGIN {printf "%.0f", (t > 0 ? n * hz / t : 0)}')
    errs=$(grep -E "Socket errors|Non-2xx" <<<"$out" | tr -s ' ' | tr '\n' ';' || true)
    echo "${rps:-0} $per ${errs:-none}"
}

median() { sort -g | awk '{a[NR]=$1} END {if (NR==0) print 0; else print a[int((NR+1)/2)]}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", (b > 0 ? a / b : 0)}'; }

# Handlers (sl_mux): hello world from an inline route, from a pooled route (handler pool and
# back through the reactor's completion queue), and inline behind the standard middleware
# chain (request id + access log to /dev/null). Same server binary, same pinning (every server
# thread, handler threads included, on CPU 0), alternating within each repetition.
handler_rows() {
    declare -A h hc hn
    for rep in $(seq 1 "$REPS"); do
        start_sluice --mux 1
        for route in inline pooled; do
            read -r rps per errs < <(URLPATH=/$route wrk_rps "$PORT" 1 "$sluice_pid")
            h[$route]+="$rps"$'\n'
            hc[$route]+="$per"$'\n'
            [ "$errs" != "none" ] && hn[$route]="errors: $errs"
        done
        stop_sluice
        start_sluice --mux 1 --mw 1
        read -r rps per errs < <(URLPATH=/mw wrk_rps "$PORT" 1 "$sluice_pid")
        h[mw]+="$rps"$'\n'
        hc[mw]+="$per"$'\n'
        [ "$errs" != "none" ] && hn[mw]="errors: $errs"
        stop_sluice
        # The same chain with the access log going to the discard logger: the chain's own
        # cost, without formatting and writing a log line.
        start_sluice --mux 1 --mw 1 --mw-log 0
        read -r rps per errs < <(URLPATH=/mw wrk_rps "$PORT" 1 "$sluice_pid")
        h[mw_nolog]+="$rps"$'\n'
        hc[mw_nolog]+="$per"$'\n'
        [ "$errs" != "none" ] && hn[mw_nolog]="errors: $errs"
        stop_sluice
    done
    local cfg="wrk -t1 -c$CONNS -d${DURATION}s on CPU 1; server (all threads) on CPU 0; median of $REPS"
    declare -A med medc
    for route in inline pooled mw mw_nolog; do
        med[$route]=$(printf "%s" "${h[$route]}" | median)
        medc[$route]=$(printf "%s" "${hc[$route]}" | median)
        echo "| http handlers hello $route | $(printf '%.0f' "${med[$route]}") | req/s | $cfg ${hn[$route]:-} |"
        echo "| http handlers hello $route per server CPU-second | ${medc[$route]} | req/cpu-s | requests / server CPU time |"
    done
    echo "| http handlers pooled / inline | $(ratio "${med[pooled]}" "${med[inline]}") | x | req/s, same run (target >= 0.7) |"
    echo "| http handlers pooled / inline per server core | $(ratio "${medc[pooled]}" "${medc[inline]}") | x | req per server CPU-second, same run |"
    echo "| http handlers middleware cost | $(awk -v a="${med[mw]}" -v b="${med[inline]}" 'BEGIN {printf "%.1f", (b > 0 ? 100 * (1 - a / b) : 0)}') | % | 1 - mw/inline req/s, same run (target <= 10) |"
    echo "| http handlers middleware cost per server core | $(awk -v a="${medc[mw]}" -v b="${medc[inline]}" 'BEGIN {printf "%.1f", (b > 0 ? 100 * (1 - a / b) : 0)}') | % | 1 - mw/inline req per server CPU-second |"
    echo "| http handlers middleware cost, log discarded, per server core | $(awk -v a="${medc[mw_nolog]}" -v b="${medc[inline]}" 'BEGIN {printf "%.1f", (b > 0 ? 100 * (1 - a / b) : 0)}') | % | request id + access log hook to the discard logger |"
}

if [ "${ONLY:-}" = "handlers" ]; then
    handler_rows
    exit 0
fi

# One reactor/worker each, alternating servers so that drifting background load hits both.
declare -A res cpu notes
for depth in 1 "$DEPTH"; do
    for rep in $(seq 1 "$REPS"); do
        start_sluice
        read -r rps per errs < <(wrk_rps "$PORT" "$depth" "$sluice_pid")
        stop_sluice
        res[sluice_$depth]+="$rps"$'\n'
        cpu[sluice_$depth]+="$per"$'\n'
        [ "$errs" != "none" ] && notes[sluice_$depth]="errors: $errs"
        if [ $have_nginx -eq 1 ]; then
            start_nginx
            read -r rps per errs < <(wrk_rps "$PORT" "$depth" $(pgrep -P "$nginx_pid"))
            stop_nginx
            res[nginx_$depth]+="$rps"$'\n'
            cpu[nginx_$depth]+="$per"$'\n'
            [ "$errs" != "none" ] && notes[nginx_$depth]="errors: $errs"
        fi
    done
done

for depth in 1 "$DEPTH"; do
    if [ "$depth" -eq 1 ]; then label="keep-alive"; else label="keep-alive, pipeline depth $depth"; fi
    s=$(printf "%s" "${res[sluice_$depth]}" | median)
    sc=$(printf "%s" "${cpu[sluice_$depth]}" | median)
    cfg="wrk -t1 -c$CONNS -d${DURATION}s on CPU 1; server on CPU 0; median of $REPS"
    echo "| http plaintext $label: sluice (1 reactor) | $(printf '%.0f' "$s") | req/s | $cfg ${notes[sluice_$depth]:-} |"
    echo "| http plaintext $label: sluice per server CPU-second | $sc | req/cpu-s | requests / server CPU time (user+sys) |"
    if [ $have_nginx -eq 1 ]; then
        n=$(printf "%s" "${res[nginx_$depth]}" | median)
        nc=$(printf "%s" "${cpu[nginx_$depth]}" | median)
        echo "| http plaintext $label: nginx (1 worker) | $(printf '%.0f' "$n") | req/s | same run, same pinning ${notes[nginx_$depth]:-} |"
        echo "| http plaintext $label: nginx per server CPU-second | $nc | req/cpu-s | nginx worker's CPU time |"
        echo "| http plaintext $label: sluice / nginx req/s | $(ratio "$s" "$n") | x | same run |"
        echo "| http plaintext $label: sluice / nginx per server core | $(ratio "$sc" "$nc") | x | requests per server CPU-second, same run |"
    fi
done

# RSS per idle keep-alive connection: IDLE clients each send one request, read the answer and
# stay connected; the server's RSS is read from /proc before and after.
cat >"$tmp/idle.py" <<'EOF'
import os, resource, select, socket, sys, time
port, n, pids = int(sys.argv[1]), int(sys.argv[2]), [int(p) for p in sys.argv[3].split(",")]
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, n + 256), hard))
def rss():
    total = 0
    for p in pids:
        with open(f"/proc/{p}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
    return total
req = b"GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n"
for _ in range(8):  # warm-up: one-time allocations are not per connection
    s = socket.create_connection(("127.0.0.1", port)); s.sendall(req); s.recv(4096); s.close()
time.sleep(0.2)  # sleep-ok: let the server settle closed warm-up connections
before = rss()
socks = []
for i in range(n):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(req)
    socks.append(s)
deadline = time.time() + 60
for i, s in enumerate(socks):
    got = b""
    while b"Hello, World!" not in got:
        if time.time() > deadline: sys.exit("timeout")
        chunk = s.recv(4096)
        if not chunk: sys.exit(f"connection {i} closed by the server: {got[:40]!r}")
        got += chunk
time.sleep(0.5)  # sleep-ok: let the server finish its bookkeeping before reading RSS
after = rss()
print((after - before) / n)
for s in socks: s.close()
EOF

idle_row() { # name port pids
    local v
    v=$(timeout 120 taskset -c 1 "$PY" "$tmp/idle.py" "$2" "$IDLE" "$3" 2>&1 | tail -1) || true
    if [[ "$v" =~ ^[0-9.]+$ ]]; then
        echo "| http RSS per idle keep-alive connection: $1 | $(printf '%.0f' "$v") | bytes | $IDLE connections, each served one request; /proc VmRSS before/after |"
    else
        echo "| http RSS per idle keep-alive connection: $1 | failed | bytes | $v |"
    fi
}

handler_rows

start_sluice --max-conns-per-ip 20000 # every idle client is 127.0.0.1 (default cap: 1/4)
idle_row "sluice" "$PORT" "$sluice_pid"
stop_sluice
if [ $have_nginx -eq 1 ]; then
    start_nginx
    workers=$(pgrep -P "$nginx_pid" | paste -sd, -)
    idle_row "nginx (worker)" "$PORT" "${workers:-$nginx_pid}"
    stop_nginx
fi

# ---- rate limiting and jobs (sluice-demo issue): limiters allowing vs none, the 429 path vs
# plaintext, nginx limit_req's 429 path, all in this run. /limited goes through global + per-IP
# + per-key rules that allow everything (the token math still runs); /limited-strict is per-IP
# 10 req/s burst 20, so nearly every request is a 429; nginx gets the same limit with
# limit_req (burst=20 nodelay, status 429). wrk counts 429s as "Non-2xx": expected there.
wrk_path() { # port path header-or-empty pids... -> "rps req_per_cpu_s"
    local port=$1 path=$2 hdr=$3 out c0 c1
    shift 3
    local args=(-t1 -c"$CONNS" -d"${DURATION}s" --timeout 5s)
    [ -n "$hdr" ] && args+=(-H "$hdr")
    c0=$(cpu_ticks "$@")
    out=$(timeout $((DURATION + 20)) taskset -c 1 wrk "${args[@]}" "http://127.0.0.1:$port$path" 2>&1) || true
    c1=$(cpu_ticks "$@")
    local rps n per
    rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
    n=$(awk '/requests in/ {print $1}' <<<"$out")
    per=$(awk -v n="${n:-0}" -v t=$((c1 - c0)) -v hz="$HZ" 'BEGIN {printf "%.0f", (t > 0 ? n * hz / t : 0)}')
    echo "${rps:-0} $per"
}

start_nginx_limited() {
    local port
    port=$(free_port)
    mkdir -p "$tmp/ngxl"
    cat >"$tmp/ngxl/nginx.conf" <<EOF
worker_processes 1;
worker_rlimit_nofile 30000;
daemon off;
pid $tmp/ngxl/nginx.pid;
error_log $tmp/ngxl/error.log error;
events { worker_connections 20000; }
http {
    access_log off;
    keepalive_requests 100000000;
    client_body_temp_path $tmp/ngxl/body;
    proxy_temp_path $tmp/ngxl/proxy;
    fastcgi_temp_path $tmp/ngxl/fastcgi;
    uwsgi_temp_path $tmp/ngxl/uwsgi;
    scgi_temp_path $tmp/ngxl/scgi;
    default_type text/plain;
    limit_req_zone \$binary_remote_addr zone=one:10m rate=10r/s;
    server {
        listen 127.0.0.1:$port;
        location /plaintext { return 200 "Hello, World!"; }
        location /limited-strict {
            limit_req zone=one burst=20 nodelay;
            limit_req_status 429;
            limit_req_log_level info;
            return 200 "Hello, World!";
        }
    }
}
EOF
    taskset -c 0 "$NGINX" -p "$tmp/ngxl" -c "$tmp/ngxl/nginx.conf" >"$tmp/ngxl/out.log" 2>&1 &
    nginx_pid=$!
    wait_port "$port" || { echo "| nginx limit_req | failed to start | | $(cat "$tmp/ngxl/error.log" 2>/dev/null | tr '\n' ' ') |"; exit 1; }
    PORT=$port
}

declare -A lim
for rep in $(seq 1 "$REPS"); do
    start_sluice --mux 1 --limits 1
    for row in "plaintext|/plaintext|" "limited|/limited|X-API-Key: bench-key" \
               "strict|/limited-strict|"; do
        IFS='|' read -r name path hdr <<<"$row"
        read -r rps per < <(wrk_path "$PORT" "$path" "$hdr" "$sluice_pid")
        lim[s_$name]+="$rps"$'\n'
        lim[sc_$name]+="$per"$'\n'
    done
    stop_sluice
    if [ $have_nginx -eq 1 ]; then
        start_nginx_limited
        for row in "plaintext|/plaintext" "strict|/limited-strict"; do
            IFS='|' read -r name path <<<"$row"
            read -r rps per < <(wrk_path "$PORT" "$path" "" $(pgrep -P "$nginx_pid"))
            lim[n_$name]+="$rps"$'\n'
            lim[nc_$name]+="$per"$'\n'
        done
        stop_nginx
    fi
done
med() { printf "%s" "${lim[$1]:-}" | median; }
cfg="wrk -t1 -c$CONNS -d${DURATION}s keep-alive; 1 reactor on CPU 0; median of $REPS; same run"
sp=$(med s_plaintext); sl=$(med s_limited); ss=$(med s_strict)
echo "| http GET /plaintext, no limiter: sluice | $(printf '%.0f' "$sp") | req/s | $cfg |"
echo "| http GET /limited, global + per-IP + per-key rules all allowing: sluice | $(printf '%.0f' "$sl") | req/s | $cfg |"
echo "| http limiters allowing / none: sluice | $(ratio "$sl" "$sp") | x | per server CPU-second: $(ratio "$(med sc_limited)" "$(med sc_plaintext)") |"
echo "| http GET /limited-strict (per-IP 10/s burst 20: ~all 429): sluice | $(printf '%.0f' "$ss") | req/s | $cfg; 429s are answered on the reactor |"
echo "| http 429 path / plaintext: sluice | $(ratio "$ss" "$sp") | x | per server CPU-second: $(ratio "$(med sc_strict)" "$(med sc_plaintext)") |"
if [ $have_nginx -eq 1 ]; then
    np=$(med n_plaintext); ns=$(med n_strict)
    echo "| http nginx limit_req 429 path (10r/s burst=20 nodelay) | $(printf '%.0f' "$ns") | req/s | nginx 1 worker, same pinning; its plaintext: $(printf '%.0f' "$np") req/s |"
    echo "| http 429 path sluice / nginx limit_req | $(ratio "$ss" "$ns") | x | per server CPU-second: $(ratio "$(med sc_strict)" "$(med nc_strict)") |"
fi
