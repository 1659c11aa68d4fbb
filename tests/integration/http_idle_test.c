/* 10,000 concurrent idle keep-alive connections held by one server, and what they cost.
 *
 * The clients live in a forked child (its own descriptor table: the hard RLIMIT_NOFILE here is
 * often 20,000, too few for both ends in one process). Each client sends one request, reads
 * its response and stays connected: an idle keep-alive connection. The server must hold them
 * all, report them, and shut down closing every one at once. The RSS growth per connection is
 * printed, and checked against 600 bytes in plain builds (sanitizers add their own per
 * allocation overhead). Under TSan 2,000 connections are used: each one costs TSan shadow
 * memory and time, and the behaviour checked does not depend on the count. */
#include "harness.h"
#include "http_client.h"

#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>

#ifdef SLUICE_TSAN
#define NCONN 2000
#else
#define NCONN 10000
#endif

static void handler(sl_req *req, sl_resp *resp, void *arg)
{
    (void)req;
    (void)arg;
    sl_resp_set_body_static(resp, "Hello, World!", 13);
}

static long rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long size = 0, res = 0;
    if (f) {
        if (fscanf(f, "%ld %ld", &size, &res) != 2) res = 0;
        fclose(f);
    }
    return res * sysconf(_SC_PAGESIZE);
}

static int raise_nofile(rlim_t want)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0) return -errno;
    if (rl.rlim_cur >= want) return 0;
    if (rl.rlim_max < want) return SL_EMFILE;
    rl.rlim_cur = want;
    return setrlimit(RLIMIT_NOFILE, &rl) < 0 ? -errno : 0;
}

/* The child: NCONN clients, one request each, then idle until told to quit. */
static int child_main(int port, int go_fd, int ready_fd)
{
    static int fds[NCONN];
    char b;
    if (read(go_fd, &b, 1) != 1) return 10;
    if (raise_nofile(NCONN + 64) < 0) return 11;
    static const char req[] = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    for (int i = 0; i < NCONN; i++) {
        fds[i] = tc_connect(port);
        if (fds[i] < 0) return 12;
        if (!tc_send(fds[i], req, sizeof req - 1)) return 13;
    }
    for (int i = 0; i < NCONN; i++) {
        char buf[512];
        size_t got = 0;
        /* The response is small and arrives whole or in a few pieces; read until its end. */
        while (!(got >= 4 && memmem(buf, got, "Hello, World!", 13))) {
            if (!tc_readable(fds[i], 20000)) return 14;
            ssize_t n = recv(fds[i], buf + got, sizeof buf - got, 0);
            if (n <= 0) return 15;
            got += (size_t)n;
        }
    }
    if (write(ready_fd, "R", 1) != 1) return 16;
    (void)!read(go_fd, &b, 1); /* "quit", or EOF when the parent dies */
    return 0;
}

static void test_10k_idle(void **state)
{
    (void)state;
    assert_int_equal(raise_nofile(NCONN + 256), 0);
    int go[2], ready[2];
    assert_int_equal(pipe(go), 0);
    assert_int_equal(pipe(ready), 0);
    sl_server_opts o = {.handler = handler,
                        .reactors = 2,
                        .max_connections = NCONN + 100,
                        .max_conns_per_ip = NCONN + 100}; /* all from 127.0.0.1 */
    sl_server *srv;
    assert_int_equal(sl_server_new(&o, &srv), 0);
    int port = sl_server_listen(srv, "127.0.0.1", 0);
    assert_true(port > 0);
    /* Fork before any thread exists; the child keeps only its pipe ends. */
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        for (int fd = 3; fd < 1024; fd++)
            if (fd != go[0] && fd != ready[1]) close(fd);
        _exit(child_main(port, go[0], ready[1]));
    }
    close(go[0]);
    close(ready[1]);
    assert_int_equal(sl_server_serve(srv), 0);
    /* Warm the server (buffer pools, scratch) so the baseline excludes one-time costs. */
    for (int i = 0; i < 4; i++)
        assert_int_equal(tc_get_status(port, "GET / HTTP/1.1\r\nHost: a\r\n\r\n"), 200);
    assert_true(SL_WAIT_UNTIL(tc_stat_conns(srv) == 0, 5000));
    long before = rss_bytes();
    int64_t t0 = sl_mono_ns();
    assert_int_equal(write(go[1], "G", 1), 1);
    assert_true(tc_readable(ready[0], 120000));
    char b = 0;
    assert_int_equal(read(ready[0], &b, 1), 1);
    assert_int_equal(b, 'R');
    assert_true(SL_WAIT_UNTIL(tc_stat_conns(srv) == NCONN, 10000));
    long after = rss_bytes();
    double per = (double)(after - before) / NCONN;
    fprintf(stderr,
            "%d idle keep-alive connections held (%.1f s to set up); RSS %ld -> %ld: "
            "%.0f bytes per connection\n",
            NCONN, (double)(sl_mono_ns() - t0) / 1e9, before, after, per);
#if !defined(SLUICE_TSAN) && !defined(SLUICE_ASAN)
    assert_true(per <= 600.0);
#endif
    sl_server_stats st;
    sl_server_stats_get(srv, &st);
    assert_int_equal(st.connections, NCONN);
    assert_true(st.requests >= NCONN);
    /* Shutdown closes every idle connection at once: clean, and quick. */
    sl_ctx *ctx;
    assert_int_equal(sl_ctx_with_timeout(NULL, SL_SEC(30), &ctx), 0);
    t0 = sl_mono_ns();
    assert_int_equal(sl_server_shutdown(srv, ctx), 0);
    fprintf(stderr, "shutdown closed %d idle connections in %.3f s\n", NCONN,
            (double)(sl_mono_ns() - t0) / 1e9);
    sl_ctx_release(ctx);
    assert_int_equal(tc_stat_conns(srv), 0);
    sl_server_free(srv);
    assert_int_equal(write(go[1], "Q", 1), 1);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    close(go[1]);
    close(ready[0]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_10k_idle)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
