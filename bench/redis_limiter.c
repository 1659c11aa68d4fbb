/* How fast is a Redis-backed limit next to an in-memory one?
 *
 * Starts its own redis-server (loopback, free port, no persistence; killed at exit), then in
 * one run: async checks pipelined on one connection from one reactor (a window of in-flight
 * EVALSHAs), unpipelined check latency (p50/p99 of one check at a time), and in-memory
 * sl_keyed allows/s on the same keys. Prints a skip row if redis-server is absent. Bounded:
 * about 4 s of measurement. */
#if !__has_include(<hiredis/hiredis.h>)
#include <stdio.h>
int main(void)
{
    printf("| redis limiter checks/s | skipped | - | built without hiredis |\n");
    return 0;
}
#else
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sluice/sluice.h"
#include "sluice/keyed.h"
#include "sluice/redis_limiter.h"
#include "loop/reactor.h"

#define NKEYS  1000
#define WINDOW 256

static char keys[NKEYS][16];
static size_t key_len[NKEYS];

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t l = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) < 0 ||
        getsockname(fd, (struct sockaddr *)&a, &l) < 0) {
        if (fd >= 0) close(fd);
        return -1;
    }
    close(fd);
    return ntohs(a.sin_port);
}

/* Starts redis-server and waits for its "Ready to accept connections" line (no polling). */
static pid_t start_redis(int port)
{
    int p[2];
    if (pipe(p) < 0) return -1;
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        dup2(p[1], 1);
        close(p[0]);
        close(p[1]);
        char ps[16];
        snprintf(ps, sizeof ps, "%d", port);
        execlp("redis-server", "redis-server", "--port", ps, "--bind", "127.0.0.1", "--save", "",
               "--appendonly", "no", (char *)NULL);
        _exit(127);
    }
    close(p[1]);
    char buf[8192];
    size_t have = 0;
    int64_t deadline = sl_mono_ns() + SL_SEC(10);
    for (;;) {
        struct pollfd pf = {.fd = p[0], .events = POLLIN};
        int left = (int)((deadline - sl_mono_ns()) / SL_MS(1));
        if (left <= 0 || poll(&pf, 1, left) <= 0) break;
        ssize_t n = read(p[0], buf + have, sizeof buf - 1 - have);
        if (n <= 0) break;
        have += (size_t)n;
        buf[have] = '\0';
        if (strstr(buf, "Ready to accept")) {
            close(p[0]); /* redis ignores SIGPIPE: its later log lines are just lost */
            return pid;
        }
        if (have > sizeof buf / 2) { /* keep the tail */
            memmove(buf, buf + have - 256, 256);
            have = 256;
        }
    }
    close(p[0]);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return -1;
}

typedef struct run {
    sl__reactor r;
    sl_redis_limiter *rl;
    sl__task start;
    int64_t until, sent, done, allowed, errors;
    int window;
    /* latency mode (window 1) */
    int64_t *lat;
    int64_t nlat, cap, t_sent;
} run;

static void issue(run *x);

static void on_answer(void *arg, const sl_rate_decision *d)
{
    run *x = arg;
    x->done++;
    x->allowed += d->allowed;
    x->errors += d->err != 0;
    if (x->lat && x->nlat < x->cap) x->lat[x->nlat++] = sl_mono_ns() - x->t_sent;
    if (sl_mono_ns() < x->until) issue(x);
    if (x->done == x->sent) sl__reactor_stop(&x->r);
}

static void issue(run *x)
{
    int k = (int)(x->sent % NKEYS);
    sl_rate_decision d;
    x->t_sent = sl_mono_ns();
    int rc = sl_redis_limiter_check(x->rl, &x->r, keys[k], key_len[k], 1, on_answer, x, &d);
    x->sent++;
    if (rc != 0) { /* answered at once (not connected): count it, keep going later */
        x->done++;
        x->errors++;
    }
}

static void start_fn(sl__reactor *r, sl__task *t)
{
    run *x = r->data;
    (void)t;
    for (int i = 0; i < x->window; i++)
        issue(x);
    if (x->done == x->sent) sl__reactor_stop(r);
}

static int cmp64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static bool wait_connected(run *x);

static void run_for(run *x, int window, int64_t dur)
{
    x->window = window;
    x->sent = x->done = x->allowed = x->errors = 0;
    x->until = sl_mono_ns() + dur;
    x->r.stop = false;
    x->start.fn = start_fn;
    sl__reactor_post(&x->r, &x->start);
    sl__reactor_run(&x->r);
}

static void probe_cb(void *arg, const sl_rate_decision *d)
{
    run *x = arg;
    x->errors = d->err;
    sl__reactor_stop(&x->r);
}

static void probe_fn(sl__reactor *r, sl__task *t)
{
    run *x = r->data;
    (void)t;
    sl_rate_decision d;
    if (sl_redis_limiter_check(x->rl, r, "probe", 5, 0, probe_cb, x, &d) != 0) {
        x->errors = -1;
        sl__reactor_stop(r);
    }
}

/* Runs the loop until one probe check is answered by Redis (bounded: 5 s). */
static bool wait_connected(run *x)
{
    int64_t deadline = sl_mono_ns() + SL_SEC(5);
    while (sl_mono_ns() < deadline) {
        x->r.stop = false;
        x->start.fn = probe_fn;
        sl__reactor_post(&x->r, &x->start);
        sl__reactor_run(&x->r);
        if (x->errors == 0) return true;
    }
    return false;
}

int main(void)
{
    for (int i = 0; i < NKEYS; i++)
        key_len[i] = (size_t)snprintf(keys[i], 16, "user-%d", i);
    sl_keyed_tier tier = {1e6, 1000}; /* high: measure the machinery, not refusals */

    /* In-memory first (no Redis needed). */
    sl_keyed_config kc = {.tiers = &tier, .ntiers = 1, .max_keys = 4 * NKEYS};
    sl_keyed *k = NULL;
    if (sl_keyed_new(&kc, &k) < 0) return 1;
    int64_t t0 = sl_mono_ns(), n = 0;
    while (sl_mono_ns() - t0 < SL_MS(500))
        for (int i = 0; i < 1000; i++, n++)
            sl_keyed_allow(k, keys[n % NKEYS], key_len[n % NKEYS]);
    double mem = (double)n / ((double)(sl_mono_ns() - t0) / 1e9);
    sl_keyed_free(k);
    printf("| in-memory sl_keyed allows/s (1 thread, %d keys) | %.0f | allows/s | same run |\n",
           NKEYS, mem);

    int port = free_port();
    pid_t redis = port > 0 ? start_redis(port) : -1;
    if (redis < 0) {
        printf("| redis limiter checks/s | skipped | - | redis-server not found or not ready |\n");
        return 0;
    }
    sl_redis_limiter_config cfg = {.port = port,
                                   .tiers = &tier,
                                   .ntiers = 1,
                                   .timeout_ns = SL_SEC(1),
                                   .logger = sl_log_discard()};
    run x = {0};
    if (sl_redis_limiter_new(&cfg, &x.rl) < 0 || sl__reactor_init(&x.r) < 0) return 1;
    x.r.data = &x;
    sl_redis_limiter_attach(x.rl, &x.r);
    if (!wait_connected(&x)) {
        printf("| redis limiter checks/s | skipped | - | could not connect |\n");
    } else {
        run_for(&x, WINDOW, SL_MS(1500));
        double rps = (double)x.done / 1.5;
        printf("| redis limiter checks/s (async, %d in flight, 1 connection, 1 reactor) | %.0f | "
               "checks/s | errors %lld; %.2fx in-memory |\n",
               WINDOW, rps, (long long)x.errors, rps / mem);
        x.cap = 20000;
        x.lat = malloc(sizeof *x.lat * (size_t)x.cap);
        x.nlat = 0;
        run_for(&x, 1, SL_MS(1000));
        if (x.nlat > 0) {
            qsort(x.lat, (size_t)x.nlat, sizeof *x.lat, cmp64);
            printf(
                "| redis limiter check latency p50 (one at a time) | %.1f | us | %lld checks |\n",
                (double)x.lat[x.nlat / 2] / 1e3, (long long)x.nlat);
            printf("| redis limiter check latency p99 (one at a time) | %.1f | us | |\n",
                   (double)x.lat[x.nlat * 99 / 100] / 1e3);
        }
        free(x.lat);
    }
    sl_redis_limiter_detach(x.rl, &x.r);
    sl__reactor_destroy(&x.r);
    sl_redis_limiter_free(x.rl);
    kill(redis, SIGTERM);
    waitpid(redis, NULL, 0);
    return 0;
}
#endif /* hiredis */
