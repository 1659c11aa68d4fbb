/* Test helpers: bounded waits, free ports, child processes that cannot outlive the test. */
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

void sl_test_pause(unsigned attempt)
{
    /* sleep-ok: this is the poll interval of a condition wait with a deadline, not
     * coordination; the condition decides, the interval only bounds CPU use. */
    long us = attempt < 10 ? 50 : (attempt < 50 ? 500 : 2000);
    struct timespec ts = {0, us * 1000L};
    nanosleep(&ts, NULL); /* sleep-ok: bounded poll interval, see above */
}

bool sl_test_wait_until(bool (*cond)(void *), void *arg, int64_t timeout_ms)
{
    return SL_WAIT_UNTIL(cond(arg), timeout_ms);
}

int sl_test_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    int rc = 0;
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &len) < 0)
        rc = -errno;
    close(fd);
    return rc < 0 ? rc : ntohs(sa.sin_port);
}

static bool try_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return false;
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bool ok = connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
    close(fd);
    return ok;
}

bool sl_test_wait_port(int port, int64_t timeout_ms)
{
    return SL_WAIT_UNTIL(try_connect(port), timeout_ms);
}

/* Children still running; killed at exit so a failed assertion (cmocka longjmps out of the
 * test body) never leaves a redis-server behind. */
#define MAX_CHILDREN 64
static pid_t g_children[MAX_CHILDREN];
static pthread_mutex_t g_children_mu = PTHREAD_MUTEX_INITIALIZER;
static bool g_atexit_set;

static void kill_children(void)
{
    pthread_mutex_lock(&g_children_mu);
    for (int i = 0; i < MAX_CHILDREN; i++) {
        if (g_children[i] > 0) {
            kill(g_children[i], SIGKILL);
            waitpid(g_children[i], NULL, 0);
            g_children[i] = 0;
        }
    }
    pthread_mutex_unlock(&g_children_mu);
}

static void track(pid_t pid, bool add)
{
    pthread_mutex_lock(&g_children_mu);
    if (!g_atexit_set) {
        atexit(kill_children);
        g_atexit_set = true;
    }
    for (int i = 0; i < MAX_CHILDREN; i++) {
        if (add ? g_children[i] == 0 : g_children[i] == pid) {
            g_children[i] = add ? pid : 0;
            break;
        }
    }
    pthread_mutex_unlock(&g_children_mu);
}

int sl_test_proc_start(sl_test_proc *p, char *const argv[], bool quiet)
{
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) return -errno;
    if (pid == 0) {
        /* Die with the parent, even if it crashes before its atexit handlers run. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(127);
        if (quiet) {
            int devnull = open("/dev/null", O_WRONLY);
            if (devnull >= 0) {
                dup2(devnull, 1);
                dup2(devnull, 2);
                close(devnull);
            }
        }
        execvp(argv[0], argv);
        fprintf(stderr, "harness: cannot exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    p->pid = pid;
    p->status = 0;
    track(pid, true);
    return 0;
}

int sl_test_proc_stop(sl_test_proc *p, int sig, int64_t timeout_ms)
{
    if (p->pid <= 0) goto decode;
    kill(p->pid, sig);
    int64_t deadline = sl_mono_ns() + SL_MS(timeout_ms);
    unsigned n = 0;
    pid_t r;
    while ((r = waitpid(p->pid, &p->status, WNOHANG)) == 0 && sl_mono_ns() < deadline)
        sl_test_pause(n++);
    if (r == 0) {
        kill(p->pid, SIGKILL);
        waitpid(p->pid, &p->status, 0);
    }
    track(p->pid, false);
    p->pid = 0;
decode:
    if (WIFEXITED(p->status)) return WEXITSTATUS(p->status);
    if (WIFSIGNALED(p->status)) return 128 + WTERMSIG(p->status);
    return SL_EINVAL;
}

int sl_test_redis_start(sl_test_redis *r)
{
    int port = sl_test_free_port();
    if (port < 0) return port;
    char portbuf[16];
    snprintf(portbuf, sizeof portbuf, "%d", port);
    char *argv[] = {"redis-server", "--port", portbuf,       "--bind", "127.0.0.1", "--save", "",
                    "--appendonly", "no",     "--daemonize", "no",     NULL};
    int rc = sl_test_proc_start(&r->proc, argv, true);
    if (rc < 0) return rc;
    r->port = port;
    if (!sl_test_wait_port(port, 10000)) {
        sl_test_proc_stop(&r->proc, SIGKILL, 1000);
        return SL_ETIMEDOUT;
    }
    return 0;
}

int sl_test_redis_stop(sl_test_redis *r)
{
    return sl_test_proc_stop(&r->proc, SIGTERM, 5000);
}

char *sl_test_read_file(const char *path)
{
    FILE *f = fopen(path, "r");
    char *s = NULL;
    long n = -1;
    if (f && fseek(f, 0, SEEK_END) == 0) n = ftell(f);
    if (n >= 0 && fseek(f, 0, SEEK_SET) == 0 && (s = malloc((size_t)n + 1))) {
        size_t got = fread(s, 1, (size_t)n, f);
        s[got] = '\0';
    }
    if (f) fclose(f);
    return s ? s : strdup("");
}

const char *sl_test_source_dir(void)
{
    const char *d = getenv("SLUICE_SOURCE_DIR");
    return d ? d : ".";
}
