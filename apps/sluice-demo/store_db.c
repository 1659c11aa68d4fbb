/* --db: the users table in a database (sl_db) — SQLite by default (a file whose path is the flag,
 * created with its schema at start), PostgreSQL with --db postgres://... so that several
 * instances (--redis) share one set of users.
 *
 * GET /users/{id} reads the table (the route is pooled with --db: a read may wait); POST /users
 * inserts and gets the id back (RETURNING). E-mail addresses are unique in the table, so a
 * second POST with the same address fails with SL_EUNIQUE and the handler answers 409. With
 * PostgreSQL, instances behind one load balancer see one set of users.
 *
 * Every statement takes the request's ctx: a client that goes away, or the route's deadline,
 * cancels the statement in the database. Statements are parameterised, never built from text. */
#include <stdio.h>
#include <string.h>

#include "demo.h"

static const char *const SCHEMA_SQLITE =
    "CREATE TABLE IF NOT EXISTS demo_users(id INTEGER PRIMARY KEY, name TEXT NOT NULL,"
    " email TEXT NOT NULL UNIQUE, created_ms INTEGER NOT NULL)";
static const char *const SCHEMA_PG =
    "CREATE TABLE IF NOT EXISTS demo_users(id BIGSERIAL PRIMARY KEY, name TEXT NOT NULL,"
    " email TEXT NOT NULL UNIQUE, created_ms BIGINT NOT NULL)";

int demo_db_open(demo_app *app)
{
    const char *url = app->cfg.db;
    if (!url || !strcmp(url, "none")) return 0;
    char buf[512];
    if (!strstr(url, "://") && strncmp(url, "sqlite:", 7)) {
        /* A bare path: a SQLite file. */
        snprintf(buf, sizeof buf, "sqlite://%s", url);
        url = buf;
    }
    sl_db_opts o = {.max_open = 16, .max_idle = 16};
    int rc = sl_db_open(url, &o, &app->db);
    if (rc == 0) {
        const char *schema = strcmp(sl_db_driver(app->db), "sqlite") ? SCHEMA_PG : SCHEMA_SQLITE;
        sl_ctx *ctx = NULL;
        rc = sl_ctx_with_timeout(NULL, SL_SEC(30), &ctx);
        if (rc == 0) rc = sl_db_exec(app->db, ctx, schema, NULL, 0, NULL);
        sl_ctx_release(ctx);
    }
    if (rc < 0) {
        sl_log_error(app->log, "cannot open the database", SL_A_STR("db", app->cfg.db),
                     SL_A_ERR("err", rc), SL_A_STR("detail", sl_db_errmsg()));
        sl_db_close(app->db);
        app->db = NULL;
    }
    return rc;
}

void demo_db_close(demo_app *app)
{
    sl_db_close(app->db);
    app->db = NULL;
}

int demo_db_user_create(demo_app *app, demo_user *u, sl_ctx *ctx)
{
    u->created_ms = sl_wall_ns() / 1000000;
    sl_db_arg a[] = {SL_DB_TEXT(u->name), SL_DB_TEXT(u->email), SL_DB_INT(u->created_ms)};
    sl_rows *r;
    int rc = sl_db_query(app->db, ctx,
                         "INSERT INTO demo_users(name, email, created_ms) VALUES ($1, $2, $3)"
                         " RETURNING id",
                         a, 3, &r);
    if (rc < 0) {
        if (rc != SL_EUNIQUE)
            sl_log_warn(app->log, "user not stored", SL_A_ERR("err", rc),
                        SL_A_STR("detail", sl_db_errmsg()));
        return rc;
    }
    rc = sl_rows_next(r) ? 0 : SL_EDB;
    if (rc == 0) u->id = sl_rows_int64(r, 0);
    sl_rows_free(r);
    return rc;
}

int demo_db_user_get(demo_app *app, const char *idtext, size_t idlen, demo_user *out, sl_ctx *ctx)
{
    /* Canonical decimal ids only ("7", not "007" or "+7"), as the in-memory store. */
    if (idlen == 0 || idlen > 18 || (idtext[0] == '0' && idlen > 1)) return SL_ENOENT;
    int64_t id = 0;
    for (size_t i = 0; i < idlen; i++) {
        if (idtext[i] < '0' || idtext[i] > '9') return SL_ENOENT;
        id = id * 10 + (idtext[i] - '0');
    }
    sl_rows *r;
    int rc = sl_db_query(app->db, ctx,
                         "SELECT id, name, email, created_ms FROM demo_users WHERE id = $1",
                         (sl_db_arg[]){SL_DB_INT(id)}, 1, &r);
    if (rc < 0) return rc;
    if (!sl_rows_next(r)) {
        sl_rows_free(r);
        return SL_ENOENT;
    }
    memset(out, 0, sizeof *out);
    out->id = sl_rows_int64(r, 0);
    snprintf(out->name, sizeof out->name, "%s", sl_rows_text(r, 1) ? sl_rows_text(r, 1) : "");
    snprintf(out->email, sizeof out->email, "%s", sl_rows_text(r, 2) ? sl_rows_text(r, 2) : "");
    out->created_ms = sl_rows_int64(r, 3);
    sl_rows_free(r);
    return 0;
}
