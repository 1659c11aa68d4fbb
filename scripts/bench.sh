#!/usr/bin/env bash
# Runs every benchmark binary in a build directory and prints one Markdown table.
# Each bench prints its own rows: "| benchmark | value | unit | note |".
# Benches are bounded in time by construction; this script adds nothing but the header.
set -euo pipefail
dir=${1:-build/release}
echo "# sluice benchmarks — $(date -u +%Y-%m-%dT%H:%MZ) — $(nproc) cores — $(uname -r)"
echo
echo "| benchmark | value | unit | note |"
echo "|---|---:|---|---|"
found=0
for b in "$dir"/bench/bench_*; do
    [ -x "$b" ] || continue
    found=1
    "$b"
done
[ $found -eq 1 ] || echo "| (no benchmarks yet) | | | |"
# Goroutine figures beside bench_task's rows, measured in the same run.
if [ -x scripts/bench_task_go.sh ] && [ -x "$dir/bench/bench_task" ]; then
    scripts/bench_task_go.sh || echo "| go: (taskbench could not be built) | | | |"
fi
if [ -x scripts/bench_http.sh ] && [ -x "$dir/bench/http/sluice-bench-server" ]; then
    scripts/bench_http.sh "$dir"
fi
if [ -x scripts/bench_client.sh ] && [ -x "$dir/bench/bench_client" ]; then
    scripts/bench_client.sh "$dir"
fi
if [ -x scripts/bench_redis_http.sh ] && [ -x "$dir/apps/sluice-demo" ]; then
    scripts/bench_redis_http.sh "$dir"
fi
