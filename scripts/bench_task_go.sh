#!/usr/bin/env bash
# Builds bench/go/taskbench.go from source (GOPATH mode, standard library only, offline) and
# prints its rows: the Go figures that bench_task's rows are compared with, in the same run.
# Installs Debian's golang-go if `go` is missing (scripts/bench_go_deps.sh: benchmarks only).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/bench_go_deps.sh"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/src/taskbench" "$work/cache"
cp "$root/bench/go/taskbench.go" "$work/src/taskbench/main.go"
(cd "$work/src/taskbench" && GO111MODULE=off GOPATH="$work" GOCACHE="$work/cache" GOFLAGS= \
    GOPROXY=off go build -o "$work/taskbench" .)
"$work/taskbench"
