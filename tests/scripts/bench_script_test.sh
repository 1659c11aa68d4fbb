#!/usr/bin/env bash
# scripts/bench.sh on a fake build directory: each bench binary runs REPS times (3 by default),
# each row shows the median with min and max, rows taken under load are flagged with the load
# averages, and a CSV file with the same rows lands beside the table.
#   bench_script_test.sh SOURCE_DIR
set -euo pipefail
SRC=$1
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
mkdir -p "$T/bench"
# A fake bench: prints 10, 30, 20 on its 1st, 2nd, 3rd run (median 20), and a text row.
cat >"$T/bench/bench_fake" <<SH
#!/usr/bin/env bash
n=\$(( \$(cat "$T/count" 2>/dev/null || echo 0) + 1 ))
echo \$n >"$T/count"
case \$n in 1) v=10 ;; 2) v=30 ;; *) v=20 ;; esac
echo "| fake op | \$v | ns/op | a note |"
echo "| fake text | n/a | | |"
SH
chmod +x "$T/bench/bench_fake"
cd "$SRC"
out=$(GO_DEPS=0 LOAD_MAX=100000 scripts/bench.sh "$T")
[ "$(cat "$T/count")" = 3 ] || { echo "expected 3 runs, got $(cat "$T/count")"; exit 1; }
grep -qF '| fake op | 20 | ns/op | a note; min 10 max 30 |' <<<"$out" || { echo "$out"; exit 1; }
grep -qF '| fake text | n/a |' <<<"$out" || { echo "$out"; exit 1; }
grep -q '^"fake op",20,"ns/op",3,10,30,' "$T/bench.csv" || { cat "$T/bench.csv"; exit 1; }
# REPS=1 and a load threshold every machine exceeds: the row says so.
rm -f "$T/count"
out=$(GO_DEPS=0 REPS=1 LOAD_MAX=-1 CSV="$T/x.csv" scripts/bench.sh "$T")
grep -q '| fake op | 10 | ns/op | a note; UNDER LOAD: loadavg [0-9.]* -> [0-9.]* |' <<<"$out" ||
    { echo "$out"; exit 1; }
grep -q '^"fake op",10,"ns/op",1,10,10,[0-9.]*,[0-9.]*,1,' "$T/x.csv" || { cat "$T/x.csv"; exit 1; }
echo "bench.sh: median of 3, load flag, CSV: ok"
