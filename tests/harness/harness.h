/* Test helpers shared by every sluice test.
 *
 * - Waiting: tests never sleep to coordinate. SL_WAIT_UNTIL(expr, ms) polls a condition until
 *   it holds or a deadline passes, and says which happened.
 * - Ports: sl_test_free_port() asks the kernel for a free loopback port.
 * - Processes: sl_test_proc_start/stop run a child (redis-server, the demo) and make sure it
 *   dies with the test, even when the test fails: the child gets PR_SET_PDEATHSIG, and every
 *   live child is killed at exit.
 *
 * Include this instead of <cmocka.h>: it brings cmocka with the headers cmocka needs. */
#ifndef SLUICE_TEST_HARNESS_H
#define SLUICE_TEST_HARNESS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <sys/types.h>
#include <cmocka.h>

#include "sluice/sluice.h"

/* Polls cond(arg) until it returns true (-> true) or timeout_ms of real time pass (-> false).
 * Polls quickly at first, then backs off to at most 2 ms between checks. */
bool sl_test_wait_until(bool (*cond)(void *), void *arg, int64_t timeout_ms);

/* The same for an expression; evaluates to true if it held before the deadline. */
#define SL_WAIT_UNTIL(expr, timeout_ms)                     \
    __extension__({                                         \
        int64_t sl__dl = sl_mono_ns() + SL_MS(timeout_ms);  \
        unsigned sl__n = 0;                                 \
        bool sl__ok;                                        \
        while (!(sl__ok = (expr)) && sl_mono_ns() < sl__dl) \
            sl_test_pause(sl__n++);                         \
        sl__ok;                                             \
    })

/* One poll interval of a bounded wait: short at first, then up to 2 ms. */
void sl_test_pause(unsigned attempt);

/* Returns a TCP port on 127.0.0.1 that was free a moment ago, or a negative SL_E* code. */
int sl_test_free_port(void);

/* Returns true once a TCP connect to 127.0.0.1:port succeeds, false after timeout_ms. */
bool sl_test_wait_port(int port, int64_t timeout_ms);

typedef struct sl_test_proc {
    pid_t pid;  /* > 0 while running */
    int status; /* waitpid status once reaped */
} sl_test_proc;

/* Starts argv[0] (searched in PATH) with argv. stdout/stderr go to the test's own unless
 * quiet. The child dies with the test. Returns 0 or a negative SL_E* code. */
int sl_test_proc_start(sl_test_proc *p, char *const argv[], bool quiet);

/* Sends sig to the child (SIGTERM usually), waits up to timeout_ms for it to exit, then
 * SIGKILLs and reaps it. Returns the exit code (0..255), 128+signal if killed by a signal,
 * or a negative SL_E* code. Safe to call twice. */
int sl_test_proc_stop(sl_test_proc *p, int sig, int64_t timeout_ms);

/* A redis-server on a free loopback port, with no persistence. */
typedef struct sl_test_redis {
    sl_test_proc proc;
    int port;
} sl_test_redis;

/* Starts redis-server and waits until it accepts connections (10 s at most). Returns 0 or a
 * negative code; fails (never skips) when redis-server is missing. */
int sl_test_redis_start(sl_test_redis *r);
int sl_test_redis_stop(sl_test_redis *r);

/* A private PostgreSQL cluster (tests/harness/pg.c): initdb into a temporary directory as the
 * postgres user (initdb refuses root), a postmaster on a free loopback port, trust auth.
 * init: initdb and pick the port (url is then set); start: run the postmaster and wait until it
 * accepts queries (30 s at most); stop: fast shutdown; kill: immediate shutdown (every backend
 * dies at once, like a crash: clients see their connections drop); start again after either
 * reuses the same directory and port; destroy: stop and remove the directory. Every function
 * returns 0 or a negative code; fails (never skips) when PostgreSQL is missing. */
typedef struct sl_test_pg {
    pid_t pid; /* the postmaster while running */
    int port;
    char bindir[256];
    char dir[64];
    char url[128]; /* postgres://postgres@127.0.0.1:<port>/postgres?sslmode=disable */
} sl_test_pg;

int sl_test_pg_init(sl_test_pg *pg);
int sl_test_pg_start(sl_test_pg *pg);
int sl_test_pg_stop(sl_test_pg *pg);
int sl_test_pg_kill(sl_test_pg *pg);
void sl_test_pg_destroy(sl_test_pg *pg);

/* Reads a whole file into a NUL-terminated heap string the caller frees. A missing or unreadable
 * file reads as "" (still to be freed): tests check contents, and an absent log is empty. */
char *sl_test_read_file(const char *path);

/* The source tree's root (for data files such as tests/http_cases). */
const char *sl_test_source_dir(void);

#endif
