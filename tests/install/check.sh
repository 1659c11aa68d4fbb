#!/usr/bin/env bash
# `make install-check`: ONE install (plain + race + asan variants) into a scratch prefix, then
# consumers built against it the way a user would, with pkg-config and with find_package:
#   plain  consumer.c (shared, pkg-config); redis_static.c fully static with
#          `pkg-config --static` (proves Requires.private); consumer.c via find_package
#   race   race_consumer.c racy -> must print a ThreadSanitizer data-race report and fail;
#          clean -> must print none and pass; via pkg-config sluice-race and sluice::race
#   asan   consumer.c clean; asan_consumer.c heap overflow -> must print AddressSanitizer's
#          heap-buffer-overflow report; via pkg-config sluice-asan and sluice::asan
# Usage: tests/install/check.sh <stage-dir> <work-dir>   (the Makefile passes build/ paths)
set -euo pipefail
STAGE=$1
WORK=$2
SRC=$(cd "$(dirname "$0")" && pwd)
export PKG_CONFIG_PATH=$STAGE/lib/pkgconfig
LIBDIR=$STAGE/lib
mkdir -p "$WORK"

fail() { echo "install-check: FAIL: $*" >&2; exit 1; }
pc() { pkg-config "$@"; }

# Runs a program expected to fail with a sanitizer report matching a pattern.
expect_report() { # name pattern cmd...
    local name=$1 pat=$2; shift 2
    local out=$WORK/$name.out
    if "$@" >"$out" 2>&1; then cat "$out"; fail "$name exited 0: no sanitizer report"; fi
    grep -q "$pat" "$out" || { cat "$out"; fail "$name failed without '$pat'"; }
    echo "  $name: reported ($(grep -m1 "$pat" "$out" | sed 's/^==[0-9]*==//'))"
}
# Runs a program expected to pass with no sanitizer report.
expect_clean() { # name cmd...
    local name=$1; shift
    local out=$WORK/$name.out
    "$@" >"$out" 2>&1 || { cat "$out"; fail "$name exited non-zero"; }
    if grep -q "Sanitizer" "$out"; then cat "$out"; fail "$name printed a sanitizer report"; fi
    echo "  $name: clean"
}

echo "== plain (sluice.pc, sluice::sluice_static)"
for f in sluice sluice-race sluice-asan; do
    [ -f "$PKG_CONFIG_PATH/$f.pc" ] || fail "$f.pc not installed"
done
cc "$SRC/consumer.c" -o "$WORK/consumer-pc" $(pc --cflags --libs sluice) -Wl,-rpath,"$LIBDIR"
expect_clean consumer-pc "$WORK/consumer-pc"
if pc --exists hiredis; then # sluice is then built with its Redis parts
    pc --print-requires-private sluice | grep -q hiredis || fail "sluice.pc lacks Requires.private hiredis"
    cc "$SRC/redis_static.c" -o "$WORK/redis-static" -static \
        $(pc --static --cflags --libs sluice) 2>"$WORK/redis-static.ld" \
        || { cat "$WORK/redis-static.ld"; fail "static link with pkg-config --static"; }
    if readelf -d "$WORK/redis-static" 2>/dev/null | grep -q NEEDED; then fail "redis-static is not static"; fi
    expect_clean redis-static "$WORK/redis-static" 1
fi
cmake -S "$SRC" -B "$WORK/cmake-plain" -DCMAKE_PREFIX_PATH="$STAGE" >/dev/null
cmake --build "$WORK/cmake-plain" >/dev/null
expect_clean consumer-cmake "$WORK/cmake-plain/consumer_cmake"

echo "== race (sluice-race.pc, sluice::race)"
pc --cflags sluice-race | grep -q -- -fsanitize=thread || fail "sluice-race.pc lacks -fsanitize=thread"
pc --libs sluice-race | grep -q -- -fsanitize=thread || fail "sluice-race.pc Libs lack -fsanitize=thread"
RPC="$(pc --cflags --libs sluice-race) -Wl,-rpath,$LIBDIR"
cc -g "$SRC/race_consumer.c" -o "$WORK/race-clean-pc" $RPC
cc -g -DSLUICE_CHECK_RACY=1 "$SRC/race_consumer.c" -o "$WORK/race-racy-pc" $RPC
cc -g "$SRC/consumer.c" -o "$WORK/race-consumer-pc" $RPC
expect_clean race-consumer-pc "$WORK/race-consumer-pc"
expect_clean race-clean-pc "$WORK/race-clean-pc"
expect_report race-racy-pc "WARNING: ThreadSanitizer: data race" "$WORK/race-racy-pc"
grep -q "bump.*race_consumer.c" "$WORK/race-racy-pc.out" || fail "race report does not name bump()"
cmake -S "$SRC" -B "$WORK/cmake-race" -DCMAKE_PREFIX_PATH="$STAGE" -DSLUICE_VARIANT=race \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$WORK/cmake-race" >/dev/null
expect_clean race-cmake-static "$WORK/cmake-race/consumer_cmake"
expect_clean race-cmake-shared "$WORK/cmake-race/consumer_cmake_shared"
expect_clean race-clean-cmake "$WORK/cmake-race/race_clean"
expect_report race-racy-cmake "WARNING: ThreadSanitizer: data race" "$WORK/cmake-race/race_racy"

echo "== asan (sluice-asan.pc, sluice::asan)"
pc --cflags sluice-asan | grep -q -- -fsanitize=address || fail "sluice-asan.pc lacks -fsanitize=address"
APC="$(pc --cflags --libs sluice-asan) -Wl,-rpath,$LIBDIR"
cc -g "$SRC/consumer.c" -o "$WORK/asan-consumer-pc" $APC
cc -g "$SRC/asan_consumer.c" -o "$WORK/asan-overflow-pc" $APC
expect_clean asan-consumer-pc "$WORK/asan-consumer-pc"
expect_report asan-overflow-pc "ERROR: AddressSanitizer: heap-buffer-overflow" "$WORK/asan-overflow-pc"
cmake -S "$SRC" -B "$WORK/cmake-asan" -DCMAKE_PREFIX_PATH="$STAGE" -DSLUICE_VARIANT=asan \
    -DCMAKE_BUILD_TYPE=Debug >/dev/null
cmake --build "$WORK/cmake-asan" >/dev/null
expect_clean asan-cmake-static "$WORK/cmake-asan/consumer_cmake"
expect_clean asan-cmake-shared "$WORK/cmake-asan/consumer_cmake_shared"
expect_report asan-overflow-cmake "ERROR: AddressSanitizer: heap-buffer-overflow" \
    "$WORK/cmake-asan/asan_overflow"
echo "install-check: ok (plain, race, asan; pkg-config and find_package)"
