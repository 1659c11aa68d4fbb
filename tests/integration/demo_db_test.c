/* sluice-demo with a database (--db): users survive a restart of the demo (SQLite file), a
 * second POST with the same e-mail is 409, GET /users/{id} reads the database, and two
 * instances on one PostgreSQL (a private cluster) share their users. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "http_client.h"

typedef struct demo {
    sl_test_proc proc;
    int port;
} demo;

static void demo_start(demo *d, const char *db)
{
    const char *bindir = getenv("SLUICE_BINARY_DIR");
    assert_non_null(bindir);
    d->port = sl_test_free_port();
    assert_true(d->port > 0);
    char bin[512], port[16];
    snprintf(bin, sizeof bin, "%s/apps/sluice-demo", bindir);
    snprintf(port, sizeof port, "%d", d->port);
    char *argv[] = {bin,    "--port",   port,          "--reactors", "1", "--no-limits",
                    "--db", (char *)db, "--log-level", "error",      NULL};
    assert_int_equal(sl_test_proc_start(&d->proc, argv, true), 0);
    if (!sl_test_wait_port(d->port, 30000)) {
        sl_test_proc_stop(&d->proc, SIGKILL, 1000);
        fail_msg("sluice-demo did not start with --db %s", db);
    }
}

static void demo_stop(demo *d)
{
    assert_int_equal(sl_test_proc_stop(&d->proc, SIGTERM, 30000), 0);
}

/* POST /users; returns the status and the id from Location (or -1). */
static int post_user(int port, const char *name, const char *email, long long *id)
{
    char body[256], raw[512];
    int n = snprintf(body, sizeof body, "{\"name\":\"%s\",\"email\":\"%s\"}", name, email);
    snprintf(raw, sizeof raw,
             "POST /users HTTP/1.1\r\nHost: x\r\nX-API-Key: demo-pro\r\nContent-Type: "
             "application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
             n, body);
    int fd = tc_connect(port);
    if (fd < 0) return -1;
    tc_conn c;
    tc_init(&c, fd);
    tc_resp r = {0};
    int st = -1;
    if (tc_sends(fd, raw) && tc_read_response(&c, &r) == 0) {
        st = r.status;
        char loc[64];
        if (id) *id = tc_find_hdr(r.head, "Location", loc, sizeof loc) ? atoll(loc + 7) : -1;
    }
    tc_resp_free(&r);
    close(fd);
    return st;
}

/* GET /users/{id}; returns the status, and whether the body holds want. */
static int get_user(int port, long long id, const char *want, bool *has)
{
    char raw[256];
    snprintf(raw, sizeof raw,
             "GET /users/%lld HTTP/1.1\r\nHost: x\r\nX-API-Key: demo-pro\r\nConnection: "
             "close\r\n\r\n",
             id);
    int fd = tc_connect(port);
    if (fd < 0) return -1;
    tc_conn c;
    tc_init(&c, fd);
    tc_resp r = {0};
    int st = -1;
    if (tc_sends(fd, raw) && tc_read_response(&c, &r) == 0) {
        st = r.status;
        if (has) *has = r.body && strstr(r.body, want);
    }
    tc_resp_free(&r);
    close(fd);
    return st;
}

static void test_sqlite_survives_restart(void **state)
{
    char dir[64] = "/tmp/sluice-demo-db-XXXXXX", db[128];
    assert_non_null(mkdtemp(dir));
    snprintf(db, sizeof db, "%s/users.db", dir);
    demo d;
    demo_start(&d, db);
    long long id = 0, id2 = 0;
    assert_int_equal(post_user(d.port, "Ada", "ada@example.com", &id), 201);
    assert_true(id > 0);
    assert_int_equal(post_user(d.port, "Ada again", "ada@example.com", NULL), 409);
    bool has = false;
    assert_int_equal(get_user(d.port, id, "ada@example.com", &has), 200);
    assert_true(has);
    assert_int_equal(get_user(d.port, id + 100, "", NULL), 404);
    /* The users table's pool is on /metrics (sql.DBStats fields). */
    tc_resp r = {0};
    int fd = tc_connect(d.port);
    tc_conn c;
    tc_init(&c, fd);
    assert_true(tc_sends(fd, "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
    assert_int_equal(tc_read_response(&c, &r), 0);
    assert_non_null(strstr(r.body, "sluice_db_open_connections{db=\"users\"}"));
    tc_resp_free(&r);
    close(fd);
    demo_stop(&d);

    demo_start(&d, db); /* a new process: only the file remembers */
    assert_int_equal(get_user(d.port, id, "ada@example.com", &has), 200);
    assert_true(has);
    assert_int_equal(post_user(d.port, "Ada", "ada@example.com", NULL), 409);
    assert_int_equal(post_user(d.port, "Grace", "grace@example.com", &id2), 201);
    assert_true(id2 > id);
    demo_stop(&d);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

static void test_postgres_shared(void **state)
{
    static sl_test_pg pg;
    assert_int_equal(sl_test_pg_init(&pg), 0);
    assert_int_equal(sl_test_pg_start(&pg), 0);
    demo a, b;
    demo_start(&a, pg.url);
    demo_start(&b, pg.url);
    long long id = 0;
    assert_int_equal(post_user(a.port, "Ada", "ada@example.com", &id), 201);
    bool has = false;
    assert_int_equal(get_user(b.port, id, "ada@example.com", &has), 200); /* made on a */
    assert_true(has);
    assert_int_equal(post_user(b.port, "Ada", "ada@example.com", NULL), 409);
    demo_stop(&a);
    demo_stop(&b);
    sl_test_pg_destroy(&pg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sqlite_survives_restart),
        cmocka_unit_test(test_postgres_shared),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
