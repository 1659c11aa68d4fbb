/* The sluice-demo process for the integration tests that drive the real binary: started on a
 * free port with its stdout and stderr in a fresh temporary directory, and ready once it
 * accepts connections. Shared by demo_e2e_test.c and demo_webhook_test.c. */
#ifndef SLUICE_TEST_DEMO_PROC_H
#define SLUICE_TEST_DEMO_PROC_H

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include "harness.h"

typedef struct demo {
    sl_test_proc proc;
    int port;
    char dir[64];
    char out[128], err[128];
} demo;

/* Starts the demo with the flags in base (one string), then each of the NULL-terminated flags,
 * and waits until it accepts; fails the test (with the demo's stderr) if it does not. */
static inline void demo_start_with(demo *d, const char *base, const char *const *flags)
{
    const char *bindir = getenv("SLUICE_BINARY_DIR");
    assert_non_null(bindir);
    snprintf(d->dir, sizeof d->dir, "/tmp/sluice-demo-XXXXXX");
    assert_non_null(mkdtemp(d->dir));
    snprintf(d->out, sizeof d->out, "%s/out", d->dir);
    snprintf(d->err, sizeof d->err, "%s/err", d->dir);
    d->port = sl_test_free_port();
    assert_true(d->port > 0);
    char cmd[2048];
    int n = snprintf(cmd, sizeof cmd, "exec '%s/apps/sluice-demo' --port %d --reactors 2 %s",
                     bindir, d->port, base);
    for (size_t i = 0; flags && flags[i]; i++)
        n += snprintf(cmd + n, sizeof cmd - (size_t)n, " %s", flags[i]);
    snprintf(cmd + n, sizeof cmd - (size_t)n, " >'%s' 2>'%s'", d->out, d->err);
    char *argv[] = {"/bin/sh", "-c", cmd, NULL};
    assert_int_equal(sl_test_proc_start(&d->proc, argv, false), 0);
    if (!sl_test_wait_port(d->port, 30000)) {
        sl_test_proc_stop(&d->proc, SIGKILL, 1000);
        fail_msg("sluice-demo did not start: %s\n%s", cmd, sl_test_read_file(d->err));
    }
}

#endif
