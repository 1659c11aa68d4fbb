#!/usr/bin/env bash
# Runs every benchmark binary in a build directory and prints one Markdown table, plus the same
# rows as CSV beside it (machine-readable, for comparing runs).
#   scripts/bench.sh [build-dir]          (default build/release)
#   env: REPS=3      runs of each bench binary; each row prints the median (and min..max)
#        CSV=file    where the CSV goes (default <build-dir>/bench.csv)
#        LOAD_MAX=n  a row is flagged "under load" when the 1-minute load average before or
#                    after its binary ran exceeded n (default: half the cores), since other
#                    work on the machine distorts it
# Each bench prints its own rows: "| benchmark | value | unit | note |". The HTTP scripts take
# REPS themselves and print medians already; their rows go to the CSV too.
set -euo pipefail
dir=${1:-build/release}
REPS=${REPS:-3}
CSV=${CSV:-$dir/bench.csv}
NCPU=$(nproc)
LOAD_MAX=${LOAD_MAX:-$(awk -v n="$NCPU" 'BEGIN {print n / 2}')}
export REPS
[[ $REPS =~ ^[1-9][0-9]*$ ]] || { echo "bench: REPS must be a positive integer" >&2; exit 2; }
# The Go side of the comparisons (bench only; see the script). GO_DEPS=0 skips it.
[ "${GO_DEPS:-1}" = 0 ] || scripts/bench_go_deps.sh || echo "bench: Go could not be installed; Go rows will be missing" >&2
tmp=$(mktemp -d /tmp/sluice-bench.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

load1() { cut -d' ' -f1 /proc/loadavg; }

echo "# sluice benchmarks — $(date -u +%Y-%m-%dT%H:%MZ) — $NCPU cores — $(uname -r) — median of $REPS"
echo
echo "| benchmark | value | unit | note |"
echo "|---|---:|---|---|"
echo "benchmark,value,unit,reps,min,max,load_before,load_after,under_load,note" >"$CSV"

# rows FILE... : merges the rows of several runs of one binary (same order, keyed by name and
# unit) into one row each: the median value, min..max in the note, the load flag. Prints the
# Markdown rows and appends CSV lines.
merge() {
    local l0=$1 l1=$2
    shift 2
    awk -F'|' -v l0="$l0" -v l1="$l1" -v max="$LOAD_MAX" -v csv="$CSV" '
    function trim(s) { gsub(/^[ \t]+|[ \t]+$/, "", s); return s }
    function csvq(s) { gsub(/"/, "\"\"", s); return "\"" s "\"" }
    /^\|/ {
        name = trim($2); val = trim($3); unit = trim($4); note = trim($5)
        k = name SUBSEP unit
        if (!(k in n)) { order[++nk] = k; names[k] = name; units[k] = unit; notes[k] = note }
        vals[k, ++n[k]] = val
    }
    END {
        loaded = (l0 + 0 > max + 0 || l1 + 0 > max + 0)
        for (i = 1; i <= nk; i++) {
            k = order[i]; m = n[k]
            numeric = 1
            for (j = 1; j <= m; j++) { a[j] = vals[k, j]; if (a[j] !~ /^-?[0-9.]+(e[-+]?[0-9]+)?$/) numeric = 0 }
            if (!numeric) { med = a[1]; lo = ""; hi = "" }
            else {
                for (x = 2; x <= m; x++) { v = a[x]; y = x - 1; while (y > 0 && a[y] + 0 > v + 0) { a[y + 1] = a[y]; y-- } a[y + 1] = v }
                med = (m % 2) ? a[(m + 1) / 2] : sprintf("%.4g", (a[m / 2] + a[m / 2 + 1]) / 2)
                lo = a[1]; hi = a[m]
            }
            note = notes[k]
            if (m > 1 && numeric && lo != hi) note = note (note == "" ? "" : "; ") "min " lo " max " hi
            if (loaded) note = note (note == "" ? "" : "; ") "UNDER LOAD: loadavg " l0 " -> " l1
            printf "| %s | %s | %s | %s |\n", names[k], med, units[k], note
            printf "%s,%s,%s,%d,%s,%s,%s,%s,%d,%s\n", csvq(names[k]), med, csvq(units[k]), m, lo, hi, l0, l1, loaded, csvq(notes[k]) >> csv
        }
    }' "$@"
}

found=0
for b in "$dir"/bench/bench_*; do
    [ -x "$b" ] || continue
    found=1
    l0=$(load1)
    for r in $(seq 1 "$REPS"); do
        "$b" >"$tmp/run.$r"
    done
    merge "$l0" "$(load1)" $(seq -f "$tmp/run.%g" 1 "$REPS")
done
[ $found -eq 1 ] || echo "| (no benchmarks yet) | | | |"
for s in bench_task_go bench_http bench_wait8k bench_client bench_redis_http bench_db_pg; do
    [ -x "scripts/$s.sh" ] || continue
    # Goroutine figures beside bench_task's rows, measured in the same run.
    [ $s = bench_task_go ] && [ ! -x "$dir/bench/bench_task" ] && continue
    [ $s = bench_http ] && [ ! -x "$dir/bench/http/sluice-bench-server" ] && continue
    [ $s = bench_wait8k ] && [ ! -x "$dir/bench/http/sluice-wait-load" ] && continue
    [ $s = bench_client ] && [ ! -x "$dir/bench/bench_client" ] && continue
    [ $s = bench_redis_http ] && [ ! -x "$dir/apps/sluice-demo" ] && continue
    [ $s = bench_db_pg ] && [ ! -x "$dir/bench/bench_db_pg" ] && continue
    l0=$(load1)
    # WIDE=0: bench_wait8k prints only the table's rows (its side-by-side table is for a run alone).
    WIDE=0 "scripts/$s.sh" "$dir" >"$tmp/run.http"
    REPS=1 merge "$l0" "$(load1)" "$tmp/run.http"
done
echo
echo "CSV: $CSV"
