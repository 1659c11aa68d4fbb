#!/usr/bin/env bash
# Housekeeping the compiler cannot see: every sluice-own error code is returned somewhere in
# src/ (or is one of the two codes reserved for applications, error.h says which), and every
# internal sl__ function defined in src/ has a caller besides its own definition, and README.md
# and docs/ link only inside the repository.
#   housekeeping_test.sh SOURCE_DIR
set -euo pipefail
cd "$1"
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
bad=0
own=$(sed -n '/^#define SL_OWN_ERROR_MAP/,/^$/p' include/sluice/error.h | grep -oE 'X\(E[A-Z]+' | sed 's/X(//')
for n in $own; do
    case $n in EFAILED | ESHUTDOWN) continue ;; esac # for applications (error.h)
    if ! grep -rqw "SL_$n" src --exclude=error.c; then
        echo "SL_$n: nothing in src/ returns it (use it where it fits or remove it)"
        bad=1
    fi
done
# One pass: how often each sl__ name occurs in the tree, and how often it is declared.
grep -rhowE 'sl__[a-z0-9_]+' src apps tests bench fuzz 2>/dev/null | sort | uniq -c >"$T/uses"
grep -rhoE '^[a-z][a-z0-9_ *]*\bsl__[a-z0-9_]+\(' src --include=*.h | grep -oE 'sl__[a-z0-9_]+' |
    sort | uniq -c >"$T/decls" # prototypes start a line; calls in inline bodies are indented
for f in $(grep -rhoE '^[a-z_][a-z0-9_ *]*\bsl__[a-z0-9_]+\(' src --include=*.c | grep -oE 'sl__[a-z0-9_]+' | sort -u); do
    uses=$(awk -v f="$f" '$2 == f {print $1}' "$T/uses")
    decl=$(awk -v f="$f" '$2 == f {print $1}' "$T/decls")
    if [ $((${uses:-0} - ${decl:-0})) -le 1 ]; then
        echo "$f: defined in src/ but never called"
        bad=1
    fi
done
# Links stay inside the repository: nothing in README.md or docs/ points above it.
if grep -nE '\]\([^)]*\.\./|/work/|shared/DESIGN' README.md docs/*.md; then
    echo "README.md/docs link outside the repository (bring the text into docs/)"
    bad=1
fi
[ $bad = 0 ] && echo "housekeeping: every own error code is used, every sl__ helper has a caller"
exit $bad
