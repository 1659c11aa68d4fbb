#!/usr/bin/env bash
# Runs every libFuzzer target built in a directory for a bounded number of executions.
#   scripts/fuzz.sh [build-dir] [runs]      (defaults: build/fuzz, 1000000; or FUZZ_RUNS)
# Each target fuzz_<name> starts from fuzz/corpus/<name>/ (read-only: new inputs go to a
# scratch directory under the build dir, so the seed corpus stays small and reviewed).
# Exits non-zero as soon as a target crashes, leaks or trips a sanitizer; the reproducer is
# left in <build-dir>/crashes/.
set -euo pipefail
dir=${1:-build/fuzz}
runs=${2:-${FUZZ_RUNS:-1000000}}
root=$(cd "$(dirname "$0")/.." && pwd)
found=0
mkdir -p "$dir/crashes"
for bin in "$dir"/fuzz_*; do
    [ -x "$bin" ] || continue
    found=1
    name=$(basename "$bin")
    name=${name#fuzz_}
    seeds="$root/fuzz/corpus/$name"
    work="$dir/corpus-$name"
    mkdir -p "$work"
    echo "fuzz: $name, $runs runs, seeds from fuzz/corpus/$name"
    start=$(date +%s)
    if ! "$bin" -runs="$runs" -max_len=4096 -timeout=10 -rss_limit_mb=2048 \
        -artifact_prefix="$dir/crashes/$name-" -print_final_stats=1 \
        "$work" "$seeds" > "$dir/fuzz-$name.log" 2>&1; then
        tail -n 60 "$dir/fuzz-$name.log"
        echo "fuzz: $name FAILED (log: $dir/fuzz-$name.log, reproducer in $dir/crashes/)"
        exit 1
    fi
    grep -E "^(stat::number_of_executed_units|stat::peak_rss_mb|#[0-9]+ *DONE)" \
        "$dir/fuzz-$name.log" || true
    echo "fuzz: $name ok ($(( $(date +%s) - start )) s)"
done
if [ $found -eq 0 ]; then
    echo "fuzz: no fuzz_* targets in $dir"
    exit 1
fi
