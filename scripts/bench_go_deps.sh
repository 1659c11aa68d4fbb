#!/usr/bin/env bash
# Go is a benchmark dependency only: the Go side of each comparison (goroutines, http.Client,
# database/sql + lib/pq) is built from source in the bench run itself. This installs Debian's
# golang-go and golang-github-lib-pq-dev when they are missing, and is called by the bench
# scripts alone (never by scripts/deps.sh, so `make test` and CI do not carry a Go toolchain).
set -euo pipefail
PKGS=(golang-go golang-github-lib-pq-dev)
missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "bench: installing ${missing[*]} (benchmarks only)" >&2
SUDO=()
[ "$(id -u)" -eq 0 ] || SUDO=(sudo)
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 ||
    { "${SUDO[@]}" apt-get update -qq && "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2; }
