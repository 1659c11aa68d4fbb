#!/usr/bin/env bash
# The only place sluice's dependencies are installed. Idempotent: installs only what is
# missing, runs apt-get update only when something is. As root it installs directly, otherwise
# through sudo; without either it names the packages and fails.
set -euo pipefail

PKGS=(
    gcc make cmake pkg-config            # build
    libc6-dev libtsan2 libasan8 libubsan1 # sanitizer runtimes for gcc 12
    libcmocka-dev                        # unit tests
    libjansson-dev                       # JSON: demo, and the JSON log tests' real parser
    libhiredis-dev redis-server          # Redis backend and its integration tests
    libsqlite3-dev                       # sl_db: the embedded SQLite driver
    libpq-dev postgresql                 # sl_db: the PostgreSQL driver; tests start a private cluster
    libcurl4-openssl-dev                 # sl_client: outbound HTTP (src/client)
    openssl                              # sl_client's TLS test: a self-signed s_server
    libhttp-parser-dev                   # differential oracle for our HTTP parser (tests only)
    curl wrk                             # HTTP tests and load
    python3 procps                       # bench scripts (free ports, ps)
    nginx-light                          # the benchmark we compare against
    clang libclang-rt-14-dev             # libFuzzer (make fuzz)
    clang-format                         # formatting gate
)

missing=()
for p in "${PKGS[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$p")
    fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
else
    echo "deps.sh: missing packages: ${missing[*]}" >&2
    echo "deps.sh: run as root: apt-get install -y ${missing[*]}" >&2
    exit 1
fi

echo "deps.sh: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -qq
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
