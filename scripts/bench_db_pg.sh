#!/usr/bin/env bash
# sl_db vs Go database/sql + lib/pq on the same private PostgreSQL, side by side in one run:
# select-by-primary-key queries/s from 64 concurrent callers sharing CONNS connections.
# Starts its own cluster (initdb into a temp dir as the postgres user, a free loopback port),
# fills bench_users, runs bench/db_pg (sluice) then the Go program (built from source here in
# GOPATH mode, offline, against Debian's golang-github-lib-pq-dev), stops and removes all.
# Prints Markdown rows "| name | value | unit | note |". Called by scripts/bench.sh.
# Knobs (environment): DURATION s per side [5], WORKERS [64], CONNS [8], ROWS [10000], REPS
# rounds [1], SKIP_GO=1, BENCH_WRAP="perf record --" (prefix for both programs).
set -uo pipefail
dir=${1:-build/release}
export DURATION=${DURATION:-5} WORKERS=${WORKERS:-64} CONNS=${CONNS:-8} ROWS=${ROWS:-10000}
src=$(cd "$(dirname "$0")/.." && pwd)
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
if [ -z "$bin" ] || [ ! -x "$dir/bench/bench_db_pg" ] || ! command -v go >/dev/null; then
    echo "| db_pg bench | skipped | | postgresql, go or $dir/bench/bench_db_pg missing |"
    exit 0
fi
tmp=$(mktemp -d /tmp/sluice-bench-pg-XXXXXX)
as_pg=()
if [ "$(id -u)" -eq 0 ]; then
    chown postgres: "$tmp"
    as_pg=(setpriv --reuid=postgres --regid=postgres --init-groups)
fi
pgpid=
cleanup() {
    if [ -n "$pgpid" ]; then
        kill -INT "$pgpid" 2>/dev/null
        timeout 30 tail --pid="$pgpid" -f /dev/null 2>/dev/null || kill -KILL "$pgpid" 2>/dev/null
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"${as_pg[@]}" "$bin/initdb" -D "$tmp/data" -A trust -U postgres -E UTF8 --no-sync \
    --no-instructions >"$tmp/initdb.log" 2>&1 || { echo "| db_pg bench | failed | | initdb |"; exit 0; }
"${as_pg[@]}" "$bin/postgres" -D "$tmp/data" -p "$port" -k "$tmp" -c listen_addresses=127.0.0.1 \
    -c fsync=off -c max_connections=100 >"$tmp/pg.log" 2>&1 &
pgpid=$!
url="postgres://postgres@127.0.0.1:$port/postgres?sslmode=disable"
for _ in $(seq 300); do "$bin/pg_isready" -q -h 127.0.0.1 -p "$port" && break; timeout 0.1 tail -f /dev/null; done
"$bin/psql" -q "$url" -c "CREATE TABLE bench_users(id BIGINT PRIMARY KEY, name TEXT NOT NULL);
    INSERT INTO bench_users SELECT g, 'user-' || g FROM generate_series(1, $ROWS) g; ANALYZE bench_users;" \
    || { echo "| db_pg bench | failed | | psql setup |"; exit 0; }
export SLUICE_BENCH_PG_URL=$url

mkdir -p "$tmp/go/src/dbpg"
cp "$src/bench/go/dbpg/main.go" "$tmp/go/src/dbpg/"
if ! (cd "$tmp/go/src/dbpg" && GOPATH="$tmp/go:/usr/share/gocode" GO111MODULE=off GOFLAGS=-mod=mod \
      GOCACHE="$tmp/gocache" GOPROXY=off timeout 300 go build -o "$tmp/dbpg" . ) >"$tmp/go.log" 2>&1; then
    echo "| db_pg bench, Go | failed | | go build: $(head -c 200 "$tmp/go.log" | tr '\n|' '  ') |"
fi
# REPS rounds, alternating which side goes first so neither always meets a warmer server.
for r in $(seq "${REPS:-1}"); do
    sides=(sluice go)
    [ $((r % 2)) -eq 0 ] && sides=(go sluice)
    for side in "${sides[@]}"; do
        if [ "$side" = sluice ]; then
            ${BENCH_WRAP:-} timeout $((DURATION + 60)) "$dir/bench/bench_db_pg"
        elif [ -x "$tmp/dbpg" ] && [ -z "${SKIP_GO:-}" ]; then
            ${BENCH_WRAP:-} timeout $((DURATION + 60)) "$tmp/dbpg"
        fi
    done
done
exit 0
