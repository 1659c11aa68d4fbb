/* Running out of file descriptors: a server whose RLIMIT_NOFILE is far below the number of
 * clients must neither spin on its readable listener nor stall. It pauses accepting (100 ms
 * back-off), serves what it holds, and accepts the rest as descriptors free up.
 *
 * The server runs in a forked child (its own, lowered fd limit; forked before any thread
 * exists); this process is the clients. */
#include "harness.h"
#include "http_client.h"

#include <poll.h>
#include <sys/resource.h>
#include <sys/wait.h>

#define NCLIENTS 120
#define FD_LIMIT 64

static void handler(sl_req *req, sl_resp *resp, void *arg)
{
    (void)req;
    (void)arg;
    sl_resp_set_body_static(resp, "Hello, World!", 13);
}

/* The child: serve under a tight fd limit until told to quit; report the pause count. */
static int server_main(int port, int cmd_fd, int rep_fd)
{
    struct rlimit rl = {FD_LIMIT, FD_LIMIT};
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0) return 10;
    sl_server_opts o = {.handler = handler, .reactors = 1};
    sl_server *srv;
    if (sl_server_new(&o, &srv) < 0) return 11;
    if (sl_server_listen(srv, "127.0.0.1", port) != port) return 12;
    if (sl_server_serve(srv) < 0) return 13;
    if (write(rep_fd, "R", 1) != 1) return 14;
    char b;
    (void)!read(cmd_fd, &b, 1);
    sl_server_stats st;
    sl_server_stats_get(srv, &st);
    int rc = sl_server_shutdown(srv, NULL);
    sl_server_free(srv);
    uint64_t rep[3] = {st.accept_pauses, st.accepted, (uint64_t)(rc == 0)};
    if (write(rep_fd, rep, sizeof rep) != (ssize_t)sizeof rep) return 15;
    return 0;
}

static void test_emfile_backoff(void **state)
{
    (void)state;
    int port = sl_test_free_port();
    assert_true(port > 0);
    int cmd[2], rep[2];
    assert_int_equal(pipe(cmd), 0);
    assert_int_equal(pipe(rep), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(cmd[1]);
        close(rep[0]);
        _exit(server_main(port, cmd[0], rep[1]));
    }
    close(cmd[0]);
    close(rep[1]);
    assert_true(tc_readable(rep[0], 10000));
    char b;
    assert_int_equal(read(rep[0], &b, 1), 1);
    /* Every client connects (the kernel backlog holds them) and sends its request. */
    int fds[NCLIENTS];
    for (int i = 0; i < NCLIENTS; i++) {
        fds[i] = tc_connect(port);
        assert_true(fds[i] >= 0);
        assert_true(tc_sends(fds[i], "GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
    }
    /* Each answered client hangs up, which frees a descriptor in the server. */
    int served = 0;
    int64_t dl = sl_mono_ns() + SL_SEC(20);
    while (served < NCLIENTS && sl_mono_ns() < dl) {
        struct pollfd p[NCLIENTS];
        int map[NCLIENTS], n = 0;
        for (int i = 0; i < NCLIENTS; i++)
            if (fds[i] >= 0) {
                p[n] = (struct pollfd){.fd = fds[i], .events = POLLIN};
                map[n++] = i;
            }
        if (poll(p, (nfds_t)n, 100) <= 0) continue;
        for (int k = 0; k < n; k++) {
            if (!(p[k].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            char buf[1024];
            ssize_t got = recv(p[k].fd, buf, sizeof buf, 0);
            if (got > 0 && memmem(buf, (size_t)got, "Hello, World!", 13)) served++;
            close(p[k].fd);
            fds[map[k]] = -1;
        }
    }
    assert_int_equal(served, NCLIENTS);
    assert_int_equal(write(cmd[1], "Q", 1), 1);
    uint64_t r[3] = {0};
    assert_true(tc_readable(rep[0], 10000));
    assert_int_equal(read(rep[0], r, sizeof r), (ssize_t)sizeof r);
    fprintf(stderr, "fd limit %d, %d clients: %llu accept pauses, %llu accepted\n", FD_LIMIT,
            NCLIENTS, (unsigned long long)r[0], (unsigned long long)r[1]);
    assert_true(r[0] >= 1);           /* it did run out, and backed off */
    assert_int_equal(r[1], NCLIENTS); /* and still accepted every client */
    assert_int_equal(r[2], 1);        /* clean shutdown */
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    close(cmd[1]);
    close(rep[0]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_emfile_backoff)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
