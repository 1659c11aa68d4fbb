#!/usr/bin/env bash
# Without hiredis the Redis API still links and answers SL_ENOTSUP: src/redis/*.c is compiled
# here WITHOUT SLUICE_HAVE_HIREDIS and linked, ahead of libsluice.a and without -lhiredis, into
# a program that calls every function of redis_limiter.h and redis_jobs.h. A missing stub is a
# link error; a hiredis reference is a link error; a wrong answer fails the program.
#   nohiredis_test.sh CC SOURCE_DIR BINARY_DIR
set -euo pipefail
CC=$1
SRC=$2
BIN=$3
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
FLAGS=(-std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -I"$SRC/include" -I"$SRC/src")
objs=()
for f in "$SRC"/src/redis/*.c; do
    "$CC" "${FLAGS[@]}" -c "$f" -o "$T/$(basename "$f" .c).o"
    objs+=("$T/$(basename "$f" .c).o")
done
cat >"$T/main.c" <<'C'
#include <stdio.h>
#include <string.h>
#include <sluice/sluice.h>
#define EXPECT(call)                                                                  \
    do {                                                                              \
        int rc_ = (call);                                                             \
        if (rc_ != SL_ENOTSUP) {                                                      \
            fprintf(stderr, "%s returned %d, want SL_ENOTSUP\n", #call, rc_);         \
            return 1;                                                                 \
        }                                                                             \
    } while (0)
int main(void)
{
    sl_redis_limiter *rl = (sl_redis_limiter *)0x1; /* must stay untouched */
    sl_redis_jobs *q = (sl_redis_jobs *)0x1;
    sl_rate_decision d;
    EXPECT(sl_redis_limiter_new(&(sl_redis_limiter_config){0}, &rl));
    if (rl != (sl_redis_limiter *)0x1) return 1;
    if (!strstr(sl_error_detail(), "without hiredis")) return 1;
    EXPECT(sl_redis_limiter_attach(NULL, NULL));
    EXPECT(sl_redis_limiter_detach(NULL, NULL));
    EXPECT(sl_redis_limiter_check(NULL, NULL, "k", 1, 1, NULL, NULL, &d));
    EXPECT(sl_redis_limiter_check_at(NULL, NULL, "k", 1, 1, 0, NULL, NULL, &d));
    EXPECT(sl_redis_limiter_check_wait(NULL, "k", 1, 1, 0, NULL, &d));
    if (sl_redis_limiter_connected(NULL, NULL)) return 1;
    sl_redis_limiter_stats st;
    sl_redis_limiter_stats_get(NULL, &st);
    sl_redis_limiter_free(NULL);
    EXPECT(sl_redis_jobs_new(&(sl_redis_jobs_config){0}, NULL, &q));
    if (q != (sl_redis_jobs *)0x1) return 1;
    EXPECT(sl_redis_jobs_submit(NULL, "id", NULL, NULL));
    sl_redis_job *job;
    EXPECT(sl_redis_jobs_fetch(NULL, NULL, &job));
    EXPECT(sl_redis_jobs_ack(NULL, NULL, NULL));
    EXPECT(sl_redis_jobs_fail(NULL, NULL, 0, NULL));
    EXPECT(sl_redis_jobs_work(NULL, NULL, NULL, NULL));
    EXPECT(sl_redis_jobs_spill(NULL, NULL, NULL));
    sl_redis_jobs_stats js;
    sl_redis_jobs_stats_get(NULL, &js);
    sl_redis_job_free(NULL, NULL);
    sl_redis_jobs_free(NULL);
    puts("redis API without hiredis: every call SL_ENOTSUP");
    return 0;
}
C
"$CC" "${FLAGS[@]}" "$T/main.c" "${objs[@]}" "$BIN/libsluice.a" -ljansson -lpthread -lm \
    -o "$T/nohiredis"
"$T/nohiredis"
