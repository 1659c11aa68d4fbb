/* A private PostgreSQL cluster for tests: initdb into a temporary directory, a postmaster on a
 * free loopback port (and a socket directory inside the cluster's), stopped and removed at the
 * end. initdb and postgres refuse to run as root, so when the test runs as root the child
 * switches to the `postgres` user before exec (and only then sets PR_SET_PDEATHSIG: a
 * credential change clears it). The postmaster leads its own process group; every cluster still
 * running at exit gets an immediate shutdown (SIGQUIT), so a failed assertion leaves no server
 * behind. Binaries are found under /usr/lib/postgresql/<version>/bin (Debian's layout). */
#include "harness.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_PG 8
static sl_test_pg *g_live[MAX_PG];
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static bool g_atexit;

static void sweep(void)
{
    sl_test_pg *live[MAX_PG];
    pthread_mutex_lock(&g_mu);
    memcpy(live, g_live, sizeof live);
    pthread_mutex_unlock(&g_mu);
    for (int i = 0; i < MAX_PG; i++)
        if (live[i]) sl_test_pg_kill(live[i]);
}

static void track(sl_test_pg *pg, bool add)
{
    pthread_mutex_lock(&g_mu);
    if (!g_atexit) {
        atexit(sweep);
        g_atexit = true;
    }
    for (int i = 0; i < MAX_PG; i++) {
        if (add ? g_live[i] == NULL : g_live[i] == pg) {
            g_live[i] = add ? pg : NULL;
            break;
        }
    }
    pthread_mutex_unlock(&g_mu);
}

static int find_bindir(char *out, size_t n)
{
    DIR *d = opendir("/usr/lib/postgresql");
    if (!d) return SL_ENOENT;
    int best = -1;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        int v = atoi(e->d_name);
        if (v > best) best = v;
    }
    closedir(d);
    if (best < 0) return SL_ENOENT;
    snprintf(out, n, "/usr/lib/postgresql/%d/bin", best);
    return 0;
}

/* Forks and execs argv as the postgres user when root; returns the pid or a negative code. */
static pid_t spawn(char *const argv[], bool group_leader)
{
    struct passwd *pw = getuid() == 0 ? getpwnam("postgres") : NULL;
    if (getuid() == 0 && !pw) return SL_ENOENT;
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) return -errno;
    if (pid == 0) {
        if (group_leader) setpgid(0, 0);
        if (pw && (setgid(pw->pw_gid) != 0 || setuid(pw->pw_uid) != 0)) _exit(126);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(127);
        int devnull = open("/dev/null", O_WRONLY);
        if (devnull >= 0) {
            dup2(devnull, 1);
            dup2(devnull, 2);
            close(devnull);
        }
        execv(argv[0], argv);
        _exit(127);
    }
    return pid;
}

static int wait_exit(pid_t pid, int64_t timeout_ms)
{
    int st = 0;
    int64_t dl = sl_mono_ns() + SL_MS(timeout_ms);
    unsigned n = 0;
    pid_t r;
    while ((r = waitpid(pid, &st, WNOHANG)) == 0 && sl_mono_ns() < dl)
        sl_test_pause(n++);
    if (r == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &st, 0);
        return SL_ETIMEDOUT;
    }
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : SL_EFAILED;
}

int sl_test_pg_init(sl_test_pg *pg)
{
    memset(pg, 0, sizeof *pg);
    int rc = find_bindir(pg->bindir, sizeof pg->bindir);
    if (rc < 0) return rc;
    snprintf(pg->dir, sizeof pg->dir, "/tmp/sluice-pg-XXXXXX");
    if (!mkdtemp(pg->dir)) return -errno;
    struct passwd *pw = getuid() == 0 ? getpwnam("postgres") : NULL;
    if (pw && chown(pg->dir, pw->pw_uid, pw->pw_gid) != 0) return -errno;
    char initdb[300], data[160];
    snprintf(initdb, sizeof initdb, "%s/initdb", pg->bindir);
    snprintf(data, sizeof data, "%s/data", pg->dir);
    char *argv[] = {initdb,
                    "-D",
                    data,
                    "-A",
                    "trust",
                    "-U",
                    "postgres",
                    "-E",
                    "UTF8",
                    "--no-sync",
                    "--no-instructions",
                    NULL};
    pid_t pid = spawn(argv, false);
    if (pid < 0) return pid;
    if ((rc = wait_exit(pid, 120000)) < 0) return rc;
    int port = sl_test_free_port();
    if (port < 0) return port;
    pg->port = port;
    snprintf(pg->url, sizeof pg->url, "postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable",
             port);
    return 0;
}

static bool ready(const sl_test_pg *pg)
{
    return PQping(pg->url) == PQPING_OK;
}

int sl_test_pg_start(sl_test_pg *pg)
{
    char postgres[300], data[160], port[16], sock[200];
    snprintf(postgres, sizeof postgres, "%s/postgres", pg->bindir);
    snprintf(data, sizeof data, "%s/data", pg->dir);
    snprintf(port, sizeof port, "%d", pg->port);
    snprintf(sock, sizeof sock, "unix_socket_directories=%s", pg->dir);
    char *argv[] = {postgres,
                    "-D",
                    data,
                    "-p",
                    port,
                    "-c",
                    "listen_addresses=127.0.0.1",
                    "-c",
                    sock,
                    "-c",
                    "fsync=off",
                    "-c",
                    "max_connections=200",
                    "-c",
                    "full_page_writes=off",
                    NULL};
    pid_t pid = spawn(argv, true);
    if (pid < 0) return pid;
    pg->pid = pid;
    track(pg, true);
    if (!SL_WAIT_UNTIL(ready(pg), 30000)) {
        sl_test_pg_kill(pg);
        return SL_ETIMEDOUT;
    }
    return 0;
}

/* Signals the postmaster (SIGINT fast, SIGQUIT immediate shutdown) and reaps it. */
static int stop_with(sl_test_pg *pg, int sig)
{
    if (pg->pid <= 0) return 0;
    kill(pg->pid, sig);
    int rc = wait_exit(pg->pid, 30000);
    track(pg, false);
    pg->pid = 0;
    return rc == SL_EFAILED ? 0 : rc; /* a killed server exits non-zero by design */
}

int sl_test_pg_stop(sl_test_pg *pg)
{
    return stop_with(pg, SIGINT); /* fast shutdown: disconnect clients, checkpoint */
}

int sl_test_pg_kill(sl_test_pg *pg)
{
    return stop_with(pg, SIGQUIT); /* immediate shutdown: every backend dies at once */
}

void sl_test_pg_destroy(sl_test_pg *pg)
{
    sl_test_pg_stop(pg);
    if (!pg->dir[0]) return;
    sl_test_proc p;
    char *argv[] = {"rm", "-rf", pg->dir, NULL};
    if (sl_test_proc_start(&p, argv, true) == 0) sl_test_proc_stop(&p, 0, 30000);
    pg->dir[0] = '\0';
}
