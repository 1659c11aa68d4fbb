/* sl_db against a real PostgreSQL (a private cluster started by the harness): parameters carry
 * hostile text safely, typed columns, error codes with the server's message, transactions
 * (commit, rollback, ctx cancel), pool exhaustion then a ctx timeout, a long query cancelled by
 * its ctx and gone from pg_stat_activity, the health check dropping a connection the server
 * terminated, and the server killed mid-load then restarted: the pool recovers and no call
 * hangs. */
#include "harness.h"
#include "sluice/db.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

static sl_test_pg g_pg;

static int setup(void **state)
{
    if (sl_test_pg_init(&g_pg) < 0 || sl_test_pg_start(&g_pg) < 0) {
        fprintf(stderr, "db_pg_test: cannot start PostgreSQL\n");
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    sl_test_pg_destroy(&g_pg);
    return 0;
}

static sl_db *open_db(int max_open)
{
    sl_db_opts o = {.max_open = max_open, .max_idle = max_open};
    sl_db *db;
    assert_int_equal(sl_db_open(g_pg.url, &o, &db), 0);
    assert_string_equal(sl_db_driver(db), "postgres");
    return db;
}

static int64_t scalar(sl_db *db, const char *sql, const sl_db_arg *a, int n)
{
    sl_rows *r;
    int rc = sl_db_query(db, NULL, sql, a, n, &r);
    assert_int_equal(rc, 0);
    assert_true(sl_rows_next(r));
    int64_t v = sl_rows_int64(r, 0);
    sl_rows_free(r);
    return v;
}

static void test_crud(void **state)
{
    sl_db *db = open_db(4);
    assert_int_equal(sl_db_exec(db, NULL,
                                "DROP TABLE IF EXISTS users;"
                                "CREATE TABLE users(id BIGSERIAL PRIMARY KEY, email TEXT NOT NULL"
                                " UNIQUE, score DOUBLE PRECISION, avatar BYTEA, age INT CHECK"
                                " (age >= 0), active BOOLEAN DEFAULT true);",
                                NULL, 0, NULL),
                     0);
    const char *evil = "'; DROP TABLE users; --";
    const unsigned char blob[] = {0, 1, 2, 255, '\\'};
    sl_db_arg a[] = {SL_DB_TEXT(evil), SL_DB_DBL(2.5), SL_DB_BLOB(blob, sizeof blob),
                     SL_DB_INT(41)};
    sl_rows *r;
    assert_int_equal(sl_db_query(db, NULL,
                                 "INSERT INTO users(email, score, avatar, age) VALUES"
                                 " ($1,$2,$3,$4) RETURNING id",
                                 a, 4, &r),
                     0);
    assert_true(sl_rows_next(r));
    int64_t id = sl_rows_int64(r, 0);
    assert_true(id > 0);
    sl_rows_free(r);

    assert_int_equal(sl_db_query(db, NULL,
                                 "SELECT id, email, score, avatar, age, active, NULL::text AS n"
                                 " FROM users WHERE id = $1",
                                 (sl_db_arg[]){SL_DB_INT(id)}, 1, &r),
                     0);
    assert_true(sl_rows_next(r));
    assert_int_equal(sl_rows_type(r, 0), SL_DB_INT64);
    assert_string_equal(sl_rows_text(r, 1), evil);
    assert_true(sl_rows_double(r, 2) == 2.5);
    size_t len;
    const unsigned char *got = sl_rows_blob(r, 3, &len);
    assert_int_equal(len, sizeof blob);
    assert_memory_equal(got, blob, sizeof blob);
    assert_int_equal(sl_rows_int64(r, 4), 41);
    assert_int_equal(sl_rows_int64(r, 5), 1);
    assert_true(sl_rows_is_null(r, 6));
    assert_string_equal(sl_rows_colname(r, 6), "n");
    sl_rows_free(r);
    assert_int_equal(scalar(db, "SELECT count(*) FROM users", NULL, 0), 1);

    int64_t n = 0;
    assert_int_equal(sl_db_exec(db, NULL, "UPDATE users SET age = age + $1 WHERE id = $2",
                                (sl_db_arg[]){SL_DB_INT(1), SL_DB_INT(id)}, 2, &n),
                     0);
    assert_int_equal(n, 1);

    assert_int_equal(sl_db_exec(db, NULL, "INSERT INTO users(email) VALUES ($1)", a, 1, NULL),
                     SL_EUNIQUE);
    assert_non_null(strstr(sl_db_errmsg(), "duplicate key"));
    assert_int_equal(sl_db_exec(db, NULL, "INSERT INTO users(email, age) VALUES ($1, $2)",
                                (sl_db_arg[]){SL_DB_TEXT("x@y"), SL_DB_INT(-1)}, 2, NULL),
                     SL_ECONSTRAINT);
    assert_int_equal(sl_db_exec(db, NULL, "SELEKT $1", a, 1, NULL), SL_ESYNTAX);
    assert_non_null(strstr(sl_db_errmsg(), "syntax error"));
    assert_int_equal(sl_db_query(db, NULL, "SELECT * FROM nosuch", NULL, 0, &r), SL_ESYNTAX);
    assert_int_equal(
        sl_db_exec(db, NULL, "SELECT $1", (sl_db_arg[]){SL_DB_TEXTN("a\0b", 3)}, 1, NULL),
        SL_EINVAL);
    /* Large parameters (past the driver's small inline buffers) and many of them. */
    static char big[4000];
    memset(big, 'x', sizeof big - 1);
    assert_int_equal(scalar(db, "SELECT length($1)", (sl_db_arg[]){SL_DB_TEXT(big)}, 1),
                     (int64_t)sizeof big - 1);
    sl_db_arg many[10];
    for (int i = 0; i < 10; i++)
        many[i] = SL_DB_INT(i + 1);
    assert_int_equal(scalar(db,
                            "SELECT $1::int+$2::int+$3::int+$4::int+$5::int+$6::int+$7::int"
                            "+$8::int+$9::int+$10::int",
                            many, 10),
                     55);
    /* The wrong number of parameters is the caller's error, not a lost connection. */
    assert_int_equal(
        sl_db_exec(db, NULL, "SELECT $1::int", (sl_db_arg[]){SL_DB_INT(1), SL_DB_INT(2)}, 2, NULL),
        SL_EINVAL);
    assert_int_equal(
        sl_db_exec(db, NULL, "SELECT $1::int, $2::int", (sl_db_arg[]){SL_DB_INT(1)}, 1, NULL),
        SL_EINVAL);
    /* Errors did not cost connections. */
    sl_rpool_stats st;
    sl_rpool_stats_get(sl_db_pool(db), &st);
    assert_int_equal((int)st.discarded, 0);
    sl_db_close(db);
}

/* A result past max_result_bytes fails; the connection stays usable. */
static void test_result_limit(void **state)
{
    sl_db_opts o = {.max_open = 1, .max_result_bytes = 4096};
    sl_db *db;
    assert_int_equal(sl_db_open(g_pg.url, &o, &db), 0);
    sl_rows *r = NULL;
    assert_int_equal(sl_db_query(db, NULL, "SELECT g, 'text' FROM generate_series(1, $1) g",
                                 (sl_db_arg[]){SL_DB_INT(100000)}, 1, &r),
                     SL_EMSGSIZE);
    assert_null(r);
    assert_int_equal(scalar(db, "SELECT $1::int + 1", (sl_db_arg[]){SL_DB_INT(1)}, 1), 2);
    sl_rpool_stats st;
    sl_rpool_stats_get(sl_db_pool(db), &st);
    assert_int_equal((int)st.discarded, 0);
    sl_db_close(db);
}

static void test_tx(void **state)
{
    sl_db *db = open_db(2);
    assert_int_equal(sl_db_exec(db, NULL,
                                "CREATE TABLE IF NOT EXISTS acct(id INT PRIMARY KEY, bal INT)",
                                NULL, 0, NULL),
                     0);
    assert_int_equal(sl_db_exec(db, NULL, "TRUNCATE acct", NULL, 0, NULL), 0);
    sl_tx *tx;
    assert_int_equal(sl_db_begin(db, NULL, &tx), 0);
    assert_int_equal(sl_tx_exec(tx, "INSERT INTO acct VALUES ($1, $2)",
                                (sl_db_arg[]){SL_DB_INT(1), SL_DB_INT(100)}, 2, NULL),
                     0);
    assert_int_equal(sl_tx_commit(tx), 0);
    assert_int_equal(scalar(db, "SELECT count(*) FROM acct", NULL, 0), 1);

    assert_int_equal(sl_db_begin(db, NULL, &tx), 0);
    assert_int_equal(sl_tx_exec(tx, "INSERT INTO acct VALUES ($1, $2)",
                                (sl_db_arg[]){SL_DB_INT(2), SL_DB_INT(5)}, 2, NULL),
                     0);
    assert_int_equal(sl_tx_rollback(tx), 0);
    assert_int_equal(scalar(db, "SELECT count(*) FROM acct", NULL, 0), 1);

    /* A failed statement inside a tx: commit reports it and nothing lands. */
    assert_int_equal(sl_db_begin(db, NULL, &tx), 0);
    assert_int_equal(sl_tx_exec(tx, "INSERT INTO acct VALUES ($1, $2)",
                                (sl_db_arg[]){SL_DB_INT(3), SL_DB_INT(5)}, 2, NULL),
                     0);
    assert_int_equal(sl_tx_exec(tx, "INSERT INTO acct VALUES ($1, $2)",
                                (sl_db_arg[]){SL_DB_INT(1), SL_DB_INT(5)}, 2, NULL),
                     SL_EUNIQUE);
    assert_int_equal(sl_tx_commit(tx), SL_EDB);
    assert_int_equal(scalar(db, "SELECT count(*) FROM acct", NULL, 0), 1);

    /* The tx's ctx times out during a long statement: cancelled, rolled back. */
    sl_ctx *ctx;
    assert_int_equal(sl_ctx_with_timeout(NULL, SL_SEC(1), &ctx), 0);
    assert_int_equal(sl_db_begin(db, ctx, &tx), 0);
    assert_int_equal(sl_tx_exec(tx, "INSERT INTO acct VALUES ($1, $2)",
                                (sl_db_arg[]){SL_DB_INT(4), SL_DB_INT(5)}, 2, NULL),
                     0);
    assert_int_equal(sl_tx_exec(tx, "SELECT pg_sleep(20)", NULL, 0, NULL), SL_ETIMEDOUT);
    assert_int_equal(sl_tx_commit(tx), SL_ETIMEDOUT);
    sl_ctx_release(ctx);
    assert_int_equal(scalar(db, "SELECT count(*) FROM acct", NULL, 0), 1);
    sl_rpool_stats st;
    sl_rpool_stats_get(sl_db_pool(db), &st);
    assert_int_equal(st.in_use, 0);
    sl_db_close(db);
}

/* Every connection is taken: the next caller waits, then fails with its ctx's error. */
static void test_exhaustion(void **state)
{
    sl_db *db = open_db(2);
    sl_tx *t1, *t2;
    assert_int_equal(sl_db_begin(db, NULL, &t1), 0);
    assert_int_equal(sl_db_begin(db, NULL, &t2), 0);
    sl_ctx *ctx;
    int64_t t0 = sl_mono_ns();
    assert_int_equal(sl_ctx_with_timeout(NULL, SL_MS(300), &ctx), 0);
    assert_int_equal(sl_db_exec(db, ctx, "SELECT 1", NULL, 0, NULL), SL_ETIMEDOUT);
    assert_true(sl_mono_ns() - t0 >= SL_MS(250));
    sl_ctx_release(ctx);
    sl_rpool_stats st;
    sl_rpool_stats_get(sl_db_pool(db), &st);
    assert_int_equal((int)st.wait_count, 1);
    assert_int_equal(st.in_use, 2);
    assert_int_equal(sl_tx_rollback(t1), 0);
    assert_int_equal(sl_db_exec(db, NULL, "SELECT 1", NULL, 0, NULL), 0);
    assert_int_equal(sl_tx_rollback(t2), 0);
    sl_db_close(db);
}

/* A long query cancelled by its ctx stops on the server, not only in the client. */
static void test_cancel_on_server(void **state)
{
    sl_db *db = open_db(2);
    sl_ctx *ctx;
    assert_int_equal(sl_ctx_with_timeout(NULL, SL_MS(200), &ctx), 0);
    int64_t t0 = sl_mono_ns();
    sl_rows *r = NULL;
    assert_int_equal(
        sl_db_query(db, ctx, "SELECT pg_sleep($1)", (sl_db_arg[]){SL_DB_INT(30)}, 1, &r),
        SL_ETIMEDOUT);
    assert_true(sl_mono_ns() - t0 < SL_SEC(5));
    assert_null(r);
    sl_ctx_release(ctx);
    const char *q = "SELECT count(*) FROM pg_stat_activity WHERE state = 'active'"
                    " AND query LIKE $1 AND pid <> pg_backend_pid()";
    sl_db_arg like[] = {SL_DB_TEXT("SELECT pg_sleep(%")};
    assert_true(SL_WAIT_UNTIL(scalar(db, q, like, 1) == 0, 5000));
    /* The connection that ran it is reusable (the cancel did not leak into it). */
    assert_int_equal(scalar(db, "SELECT 41 + $1", (sl_db_arg[]){SL_DB_INT(1)}, 1), 42);
    sl_db_close(db);
}

/* The server terminates an idle pooled connection: the health check drops it at checkout and
 * the caller gets a fresh one instead of an error. */
static void test_health_check(void **state)
{
    sl_db *db = open_db(1);
    sl_db *admin = open_db(1);
    int64_t pid = scalar(db, "SELECT pg_backend_pid()", NULL, 0);
    assert_int_equal(
        scalar(admin, "SELECT pg_terminate_backend($1)::int", (sl_db_arg[]){SL_DB_INT(pid)}, 1), 1);
    assert_true(SL_WAIT_UNTIL(scalar(admin, "SELECT count(*) FROM pg_stat_activity WHERE pid = $1",
                                     (sl_db_arg[]){SL_DB_INT(pid)}, 1) == 0,
                              5000));
    int64_t pid2 = scalar(db, "SELECT pg_backend_pid()", NULL, 0);
    assert_int_not_equal(pid2, pid);
    sl_rpool_stats st;
    sl_rpool_stats_get(sl_db_pool(db), &st);
    assert_int_equal((int)st.check_failed, 1);
    sl_db_close(admin);
    sl_db_close(db);
}

/* Statements cancelled at random moments from several threads: every call ends, a cancel
 * never hits the next statement on the same connection, answers stay right. */
struct storm {
    sl_db *db;
    int id, wrong, bad_rc;
    pthread_t t;
};
static void *storm_main(void *arg)
{
    struct storm *s = arg;
    for (int i = 0; i < 25; i++) {
        sl_ctx *ctx;
        if (sl_ctx_with_timeout(NULL, SL_MS(1 + i % 5), &ctx) < 0) continue;
        int rc =
            sl_db_exec(s->db, ctx, "SELECT pg_sleep($1)", (sl_db_arg[]){SL_DB_INT(5)}, 1, NULL);
        sl_ctx_release(ctx);
        if (rc != SL_ETIMEDOUT) s->bad_rc = rc ? rc : 1;
        sl_rows *r;
        rc = sl_db_query(s->db, NULL, "SELECT $1::int * 2", (sl_db_arg[]){SL_DB_INT(s->id + i)}, 1,
                         &r);
        if (rc < 0) {
            s->bad_rc = rc;
            continue;
        }
        if (!sl_rows_next(r) || sl_rows_int64(r, 0) != 2 * (s->id + i)) s->wrong++;
        sl_rows_free(r);
    }
    return NULL;
}
static void test_cancel_storm(void **state)
{
    sl_db *db = open_db(3);
    struct storm s[4];
    for (int i = 0; i < 4; i++) {
        s[i] = (struct storm){.db = db, .id = i * 1000};
        assert_int_equal(pthread_create(&s[i].t, NULL, storm_main, &s[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(s[i].t, NULL);
        assert_int_equal(s[i].bad_rc, 0);
        assert_int_equal(s[i].wrong, 0);
    }
    const char *q = "SELECT count(*) FROM pg_stat_activity WHERE state = 'active'"
                    " AND query LIKE $1 AND pid <> pg_backend_pid()";
    assert_true(
        SL_WAIT_UNTIL(scalar(db, q, (sl_db_arg[]){SL_DB_TEXT("SELECT pg_sleep(%")}, 1) == 0, 5000));
    sl_db_close(db);
}

struct load {
    sl_db *db;
    atomic_bool stop;
    atomic_long ok, failed, ok_after;
    atomic_bool restarted;
    atomic_llong max_ns;
    atomic_int bad_rc;
};

static void *load_main(void *arg)
{
    struct load *l = arg;
    while (!atomic_load(&l->stop)) {
        sl_ctx *ctx;
        if (sl_ctx_with_timeout(NULL, SL_SEC(3), &ctx) < 0) break;
        int64_t t0 = sl_mono_ns();
        sl_rows *r = NULL;
        int rc = sl_db_query(l->db, ctx, "SELECT $1::int + 1", (sl_db_arg[]){SL_DB_INT(1)}, 1, &r);
        int64_t took = sl_mono_ns() - t0;
        sl_ctx_release(ctx);
        long long m = atomic_load(&l->max_ns);
        while (took > m && !atomic_compare_exchange_weak(&l->max_ns, &m, took)) {
        }
        if (rc == 0) {
            atomic_fetch_add(&l->ok, 1);
            if (atomic_load(&l->restarted)) atomic_fetch_add(&l->ok_after, 1);
            sl_rows_free(r);
        } else {
            atomic_fetch_add(&l->failed, 1);
            if (rc != SL_ECONNLOST && rc != SL_EUNAVAIL && rc != SL_ETIMEDOUT)
                atomic_store(&l->bad_rc, rc);
        }
    }
    return NULL;
}

/* PostgreSQL dies under load and comes back: calls fail fast (lost connection / unavailable),
 * none hangs, and once the server is back the same sl_db serves again without a restart. */
static void test_server_restart(void **state)
{
    struct load l = {.db = open_db(4)};
    pthread_t t[6];
    for (int i = 0; i < 6; i++)
        assert_int_equal(pthread_create(&t[i], NULL, load_main, &l), 0);
    assert_true(SL_WAIT_UNTIL(atomic_load(&l.ok) > 200, 20000));
    assert_int_equal(sl_test_pg_kill(&g_pg), 0);
    assert_true(SL_WAIT_UNTIL(atomic_load(&l.failed) > 20, 20000));
    assert_int_equal(sl_test_pg_start(&g_pg), 0);
    atomic_store(&l.restarted, true);
    assert_true(SL_WAIT_UNTIL(atomic_load(&l.ok_after) > 200, 30000));
    atomic_store(&l.stop, true);
    for (int i = 0; i < 6; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(atomic_load(&l.bad_rc), 0);
    assert_true(atomic_load(&l.max_ns) < SL_SEC(4)); /* every call ended within its ctx */
    sl_rpool_stats st;
    sl_rpool_stats_get(sl_db_pool(l.db), &st);
    assert_int_equal(st.in_use, 0);
    assert_true(st.open <= 4);
    assert_true(st.discarded + st.check_failed > 0);
    sl_db_close(l.db);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crud),
        cmocka_unit_test(test_tx),
        cmocka_unit_test(test_result_limit),
        cmocka_unit_test(test_exhaustion),
        cmocka_unit_test(test_cancel_on_server),
        cmocka_unit_test(test_health_check),
        cmocka_unit_test(test_cancel_storm),
        cmocka_unit_test(test_server_restart),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
