/* sl_db on a real SQLite file: schema, positional parameters (hostile text stays data), typed
 * columns, error codes with SQLite's message, transactions (commit, rollback, ctx cancel),
 * sqlite3_interrupt on ctx timeout, the statement cache past its size, data surviving a reopen,
 * and several threads sharing one sl_db. */
#include "harness.h"
#include "sluice/db.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char g_dir[64], g_url[256], g_path[128];

static int setup(void **state)
{
    snprintf(g_dir, sizeof g_dir, "/tmp/sluice-sqlite-XXXXXX");
    assert_non_null(mkdtemp(g_dir));
    snprintf(g_path, sizeof g_path, "%s/app.db", g_dir);
    snprintf(g_url, sizeof g_url, "sqlite://%s", g_path);
    return 0;
}

static int teardown(void **state)
{
    char p[160];
    const char *sfx[] = {"", "-wal", "-shm"};
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s%s", g_path, sfx[i]);
        unlink(p);
    }
    rmdir(g_dir);
    return 0;
}

static const char *SCHEMA = "CREATE TABLE IF NOT EXISTS users("
                            "  id INTEGER PRIMARY KEY, email TEXT NOT NULL UNIQUE,"
                            "  score REAL, avatar BLOB, age INTEGER CHECK (age >= 0));"
                            "CREATE TABLE IF NOT EXISTS audit(n INTEGER);";

static sl_db *open_db(const sl_db_opts *o)
{
    sl_db *db;
    assert_int_equal(sl_db_open(g_url, o, &db), 0);
    assert_string_equal(sl_db_driver(db), "sqlite");
    assert_int_equal(sl_db_exec(db, NULL, SCHEMA, NULL, 0, NULL), 0);
    return db;
}

static int64_t count_users(sl_db *db)
{
    sl_rows *r;
    assert_int_equal(sl_db_query(db, NULL, "SELECT count(*) FROM users", NULL, 0, &r), 0);
    assert_true(sl_rows_next(r));
    int64_t n = sl_rows_int64(r, 0);
    sl_rows_free(r);
    return n;
}

static void test_crud_types_errors(void **state)
{
    sl_db *db = open_db(NULL);
    const char *evil = "'; DROP TABLE users; --";
    const unsigned char blob[] = {0, 1, 2, 255};
    sl_db_arg a[] = {SL_DB_TEXT(evil), SL_DB_DBL(2.5), SL_DB_BLOB(blob, sizeof blob),
                     SL_DB_INT(41)};
    int64_t n = 0;
    assert_int_equal(sl_db_exec(db, NULL,
                                "INSERT INTO users(email, score, avatar, age) VALUES ($1,$2,$3,$4)",
                                a, 4, &n),
                     0);
    assert_int_equal(n, 1);
    sl_db_arg b[] = {SL_DB_TEXT("b@example.com"), SL_DB_NULLV, SL_DB_NULLV, SL_DB_INT(7)};
    assert_int_equal(sl_db_exec(db, NULL,
                                "INSERT INTO users(email, score, avatar, age) VALUES (?,?,?,?)", b,
                                4, NULL),
                     0);

    sl_rows *r;
    sl_db_arg q[] = {SL_DB_TEXT(evil)};
    assert_int_equal(sl_db_query(db, NULL,
                                 "SELECT id, email, score, avatar, age FROM users WHERE email = $1",
                                 q, 1, &r),
                     0);
    assert_int_equal(sl_rows_ncols(r), 5);
    assert_string_equal(sl_rows_colname(r, 1), "email");
    assert_true(sl_rows_next(r));
    assert_int_equal(sl_rows_type(r, 0), SL_DB_INT64);
    assert_string_equal(sl_rows_text(r, 1), evil); /* stored verbatim, table intact */
    assert_true(sl_rows_double(r, 2) == 2.5);
    size_t len;
    const unsigned char *got = sl_rows_blob(r, 3, &len);
    assert_int_equal(len, sizeof blob);
    assert_memory_equal(got, blob, sizeof blob);
    assert_int_equal(sl_rows_int64(r, 4), 41);
    assert_false(sl_rows_next(r));
    sl_rows_free(r);
    assert_int_equal(count_users(db), 2);

    /* NULLs and the empty result. */
    sl_db_arg e[] = {SL_DB_TEXT("b@example.com")};
    assert_int_equal(
        sl_db_query(db, NULL, "SELECT score, avatar FROM users WHERE email=$1", e, 1, &r), 0);
    assert_true(sl_rows_next(r));
    assert_true(sl_rows_is_null(r, 0));
    assert_null(sl_rows_text(r, 1));
    sl_rows_free(r);
    sl_db_arg none[] = {SL_DB_TEXT("nobody")};
    assert_int_equal(sl_db_query(db, NULL, "SELECT id FROM users WHERE email=$1", none, 1, &r), 0);
    assert_int_equal(sl_rows_count(r), 0);
    assert_false(sl_rows_next(r));
    sl_rows_free(r);

    /* Errors, each with SQLite's own message. */
    assert_int_equal(sl_db_exec(db, NULL, "INSERT INTO users(email) VALUES ($1)", e, 1, NULL),
                     SL_EUNIQUE);
    assert_non_null(strstr(sl_db_errmsg(), "UNIQUE"));
    sl_db_arg neg[] = {SL_DB_TEXT("c@example.com"), SL_DB_INT(-1)};
    assert_int_equal(
        sl_db_exec(db, NULL, "INSERT INTO users(email, age) VALUES ($1, $2)", neg, 2, NULL),
        SL_ECONSTRAINT);
    assert_int_equal(sl_db_exec(db, NULL, "SELEKT 1 FROM users WHERE id = $1", neg, 1, NULL),
                     SL_ESYNTAX);
    assert_non_null(strstr(sl_db_errmsg(), "syntax error"));
    assert_int_equal(sl_db_query(db, NULL, "SELECT * FROM nosuch", NULL, 0, &r), SL_ESYNTAX);
    assert_int_equal(sl_db_exec(db, NULL, "SELECT $1, $2", e, 1, NULL), SL_EINVAL);
    assert_int_equal(sl_db_exec(db, NULL, "SELECT 1", NULL, -1, NULL), SL_EINVAL);
    assert_int_equal(sl_db_exec(db, NULL, "SELECT 1", NULL, 0, NULL), 0);
    assert_string_equal(sl_db_errmsg(), "");
    /* A bare BEGIN cannot leak an open transaction into the pool. */
    assert_int_equal(sl_db_exec(db, NULL, "BEGIN", NULL, 0, NULL), SL_EINVAL);
    assert_int_equal(sl_db_exec(db, NULL, "INSERT INTO audit VALUES (1)", NULL, 0, NULL), 0);
    sl_db_close(db);

    /* The data survive closing and reopening the file. */
    db = open_db(NULL);
    assert_int_equal(count_users(db), 2);
    sl_db_close(db);

    assert_int_equal(sl_db_open("mysql://x", NULL, &db), SL_EINVAL);
    assert_int_equal(sl_db_open("sqlite:///nonexistent-dir/x/y.db", NULL, &db), SL_EUNAVAIL);
    assert_non_null(strstr(sl_db_errmsg(), "unable to open"));
}

static void test_tx(void **state)
{
    sl_db *db = open_db(NULL);
    int64_t before = count_users(db);
    sl_tx *tx;
    assert_int_equal(sl_db_begin(db, NULL, &tx), 0);
    sl_db_arg a[] = {SL_DB_TEXT("tx1@example.com")};
    assert_int_equal(sl_tx_exec(tx, "INSERT INTO users(email) VALUES ($1)", a, 1, NULL), 0);
    sl_rows *r;
    assert_int_equal(sl_tx_query(tx, "SELECT count(*) FROM users", NULL, 0, &r), 0);
    assert_true(sl_rows_next(r));
    assert_int_equal(sl_rows_int64(r, 0), before + 1);
    sl_rows_free(r);
    assert_int_equal(sl_tx_commit(tx), 0);
    assert_int_equal(count_users(db), before + 1);

    assert_int_equal(sl_db_begin(db, NULL, &tx), 0);
    sl_db_arg b[] = {SL_DB_TEXT("tx2@example.com")};
    assert_int_equal(sl_tx_exec(tx, "INSERT INTO users(email) VALUES ($1)", b, 1, NULL), 0);
    assert_int_equal(sl_tx_rollback(tx), 0);
    assert_int_equal(count_users(db), before + 1);

    /* A tx whose ctx is cancelled: later statements fail, commit rolls back. */
    sl_ctx *ctx;
    assert_int_equal(sl_ctx_with_cancel(NULL, &ctx), 0);
    assert_int_equal(sl_db_begin(db, ctx, &tx), 0);
    assert_int_equal(sl_tx_exec(tx, "INSERT INTO users(email) VALUES ($1)", b, 1, NULL), 0);
    sl_ctx_cancel(ctx);
    sl_db_arg c[] = {SL_DB_TEXT("tx3@example.com")};
    assert_int_equal(sl_tx_exec(tx, "INSERT INTO users(email) VALUES ($1)", c, 1, NULL),
                     SL_ECANCELED);
    assert_int_equal(sl_tx_commit(tx), SL_ECANCELED);
    sl_ctx_release(ctx);
    assert_int_equal(count_users(db), before + 1);
    sl_rpool_stats st;
    sl_rpool_stats_get(sl_db_pool(db), &st);
    assert_int_equal(st.in_use, 0);
    sl_db_close(db);
}

/* A writer waiting for another connection's lock: bounded by the busy timeout (SL_EBUSY) and
 * stopped early by its ctx. */
static void test_busy(void **state)
{
    sl_db_opts o = {.max_open = 2, .max_idle = 2, .busy_timeout_ns = SL_MS(100)};
    sl_db *db = open_db(&o);
    sl_tx *tx;
    assert_int_equal(sl_db_begin(db, NULL, &tx), 0);
    assert_int_equal(
        sl_tx_exec(tx, "INSERT INTO audit VALUES ($1)", (sl_db_arg[]){SL_DB_INT(1)}, 1, NULL), 0);
    int64_t t0 = sl_mono_ns();
    assert_int_equal(
        sl_db_exec(db, NULL, "INSERT INTO audit VALUES ($1)", (sl_db_arg[]){SL_DB_INT(2)}, 1, NULL),
        SL_EBUSY);
    assert_true(sl_mono_ns() - t0 >= SL_MS(90));
    assert_int_equal(sl_tx_rollback(tx), 0);
    sl_db_close(db);

    o.busy_timeout_ns = SL_SEC(30);
    db = open_db(&o);
    assert_int_equal(sl_db_begin(db, NULL, &tx), 0);
    assert_int_equal(
        sl_tx_exec(tx, "INSERT INTO audit VALUES ($1)", (sl_db_arg[]){SL_DB_INT(1)}, 1, NULL), 0);
    sl_ctx *ctx;
    t0 = sl_mono_ns();
    assert_int_equal(sl_ctx_with_timeout(NULL, SL_MS(150), &ctx), 0);
    assert_int_equal(
        sl_db_exec(db, ctx, "INSERT INTO audit VALUES ($1)", (sl_db_arg[]){SL_DB_INT(2)}, 1, NULL),
        SL_ETIMEDOUT);
    assert_true(sl_mono_ns() - t0 < SL_SEC(10));
    sl_ctx_release(ctx);
    assert_int_equal(sl_tx_commit(tx), 0);
    sl_db_close(db);
}

/* A query that would run forever is interrupted when its ctx's deadline passes. */
static void test_interrupt(void **state)
{
    sl_db *db = open_db(NULL);
    sl_ctx *ctx;
    assert_int_equal(sl_ctx_with_timeout(NULL, SL_MS(100), &ctx), 0);
    sl_rows *r = NULL;
    int64_t t0 = sl_mono_ns();
    int rc = sl_db_query(db, ctx,
                         "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "
                         "SELECT count(*) FROM c WHERE x > $1",
                         (sl_db_arg[]){SL_DB_INT(0)}, 1, &r);
    int64_t took = sl_mono_ns() - t0;
    assert_int_equal(rc, SL_ETIMEDOUT);
    assert_null(r);
    assert_true(took < SL_SEC(5));
    sl_ctx_release(ctx);
    /* The connection is fine afterwards: the interrupt did not leak into the next call. */
    assert_int_equal(sl_db_exec(db, NULL, "SELECT 1", NULL, 0, NULL), 0);
    assert_true(count_users(db) >= 0);
    sl_db_close(db);
}

/* More distinct statements than the cache holds: evictions keep every call correct. */
static void test_stmt_cache(void **state)
{
    sl_db_opts o = {.stmt_cache = 2, .max_open = 1};
    sl_db *db = open_db(&o);
    for (int round = 0; round < 3; round++) {
        for (int k = 0; k < 4; k++) {
            char sql[64];
            snprintf(sql, sizeof sql, "SELECT $1 + %d", k);
            sl_rows *r;
            assert_int_equal(sl_db_query(db, NULL, sql, (sl_db_arg[]){SL_DB_INT(10)}, 1, &r), 0);
            assert_true(sl_rows_next(r));
            assert_int_equal(sl_rows_int64(r, 0), 10 + k);
            sl_rows_free(r);
        }
    }
    sl_db_close(db);
}

struct worker {
    sl_db *db;
    int id, ok;
    pthread_t t;
};
static void *worker_main(void *arg)
{
    struct worker *w = arg;
    for (int i = 0; i < 50; i++) {
        char email[64];
        snprintf(email, sizeof email, "w%d-%d@example.com", w->id, i);
        if (sl_db_exec(w->db, NULL, "INSERT INTO users(email) VALUES ($1)",
                       (sl_db_arg[]){SL_DB_TEXT(email)}, 1, NULL) == 0)
            w->ok++;
    }
    return NULL;
}

/* Several threads write through one sl_db (WAL, busy timeout): every insert lands. */
static void test_threads(void **state)
{
    sl_db_opts o = {.max_open = 4, .max_idle = 4};
    sl_db *db = open_db(&o);
    int64_t before = count_users(db);
    struct worker w[4];
    for (int i = 0; i < 4; i++) {
        w[i] = (struct worker){.db = db, .id = i};
        assert_int_equal(pthread_create(&w[i].t, NULL, worker_main, &w[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(w[i].t, NULL);
        assert_int_equal(w[i].ok, 50);
    }
    assert_int_equal(count_users(db), before + 200);
    sl_db_close(db);
}

/* Threads cancel statements at random moments (deadlines of 0-3 ms on a query that would run
 * forever, between quick correct queries): every call ends, the interrupt never reaches the
 * next statement of a connection, and the answers stay right. */
struct storm {
    sl_db *db;
    int id, wrong, bad_rc;
    pthread_t t;
};
static void *storm_main(void *arg)
{
    struct storm *s = arg;
    for (int i = 0; i < 60; i++) {
        sl_ctx *ctx;
        if (sl_ctx_with_timeout(NULL, SL_MS(i % 4), &ctx) < 0) continue;
        sl_rows *r = NULL;
        int rc = sl_db_query(s->db, ctx,
                             "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c)"
                             " SELECT count(*) FROM c WHERE x > $1",
                             (sl_db_arg[]){SL_DB_INT(i)}, 1, &r);
        sl_ctx_release(ctx);
        if (rc != SL_ETIMEDOUT) s->bad_rc = rc ? rc : 1;
        sl_rows_free(r);
        rc = sl_db_query(s->db, NULL, "SELECT $1 * 2", (sl_db_arg[]){SL_DB_INT(s->id + i)}, 1, &r);
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
    sl_db_opts o = {.max_open = 3, .max_idle = 3};
    sl_db *db = open_db(&o);
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
    sl_rpool_stats st;
    sl_rpool_stats_get(sl_db_pool(db), &st);
    assert_int_equal(st.in_use, 0);
    sl_db_close(db);
}

/* A result past max_result_bytes fails instead of growing without bound. */
static void test_result_limit(void **state)
{
    sl_db_opts o = {.max_result_bytes = 4096};
    sl_db *db = open_db(&o);
    sl_rows *r = NULL;
    const char *q = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < $1)"
                    " SELECT x, 'some text' FROM c";
    assert_int_equal(sl_db_query(db, NULL, q, (sl_db_arg[]){SL_DB_INT(100000)}, 1, &r),
                     SL_EMSGSIZE);
    assert_null(r);
    assert_non_null(strstr(sl_db_errmsg(), "max_result_bytes"));
    assert_int_equal(sl_db_query(db, NULL, q, (sl_db_arg[]){SL_DB_INT(10)}, 1, &r), 0);
    assert_int_equal(sl_rows_count(r), 10);
    sl_rows_free(r);
    /* NULLs are refused, not crashed on. */
    assert_int_equal(sl_db_query(NULL, NULL, q, NULL, 0, &r), SL_EINVAL);
    assert_int_equal(sl_db_query(db, NULL, NULL, NULL, 0, &r), SL_EINVAL);
    assert_int_equal(sl_db_query(db, NULL, q, NULL, 1, &r), SL_EINVAL);
    assert_int_equal(sl_db_begin(db, NULL, NULL), SL_EINVAL);
    assert_int_equal(sl_tx_commit(NULL), SL_EINVAL);
    assert_false(sl_rows_next(NULL));
    assert_null(sl_rows_text(NULL, 0));
    assert_int_equal(sl_rpool_acquire(NULL, NULL, NULL), SL_EINVAL);
    sl_db_close(db);
}

static void test_memory(void **state)
{
    sl_db *db;
    assert_int_equal(sl_db_open("sqlite::memory:", NULL, &db), 0);
    assert_int_equal(
        sl_db_exec(db, NULL, "CREATE TABLE t(x); INSERT INTO t VALUES (1), (2);", NULL, 0, NULL),
        0);
    sl_rows *r;
    assert_int_equal(sl_db_query(db, NULL, "SELECT sum(x) FROM t", NULL, 0, &r), 0);
    assert_true(sl_rows_next(r));
    assert_int_equal(sl_rows_int64(r, 0), 3);
    sl_rows_free(r);
    sl_rpool_stats st;
    sl_rpool_stats_get(sl_db_pool(db), &st);
    assert_int_equal(st.max_open, 1);
    sl_db_close(db);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crud_types_errors),
        cmocka_unit_test(test_tx),
        cmocka_unit_test(test_interrupt),
        cmocka_unit_test(test_stmt_cache),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_memory),
        cmocka_unit_test(test_cancel_storm),
        cmocka_unit_test(test_result_limit),
        cmocka_unit_test(test_busy),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
