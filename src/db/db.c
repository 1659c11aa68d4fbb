/* sl_db: the part of database/sql above the drivers — URL dispatch, the connection pool
 * (sl_rpool with the driver's connect/close/check as its ops), statement calls, transactions
 * and error messages.
 *
 * A call takes a connection from the pool, runs the driver, and gives the connection back, or
 * discards it when the driver marked it broken (lost connection, cancel that could not be
 * confirmed): the pool then opens a fresh one for the next caller, which is how a restarted
 * server is picked up without restarting the app. Rows are materialised by the driver, so no
 * connection is ever held by an unread result.
 *
 * The database's message for a failure is copied from the connection (where the driver wrote
 * it, possibly on an offload thread) into a thread-local buffer of the caller before the call
 * returns: sl_db_errmsg() reads it.
 *
 * Transactions hold their connection from begin to commit/rollback. Cancellation is handled by
 * the drivers (each statement runs under the tx's ctx); once the ctx is done no statement of
 * the tx runs any more and commit turns into a rollback. The rollback itself runs under its
 * own short deadline (never the dead ctx), and a connection that cannot roll back is discarded
 * — closing it aborts the transaction on the server. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db/db_int.h"
#include "sluice/clock.h"

#define ROLLBACK_TIMEOUT SL_SEC(5)

static _Thread_local char t_errmsg[SL__DB_ERRMSG];

const char *sl_db_errmsg(void)
{
    return t_errmsg;
}

static void set_msg(const char *m)
{
    snprintf(t_errmsg, sizeof t_errmsg, "%s", m ? m : "");
}

static int p_open(void *arg, sl_ctx *ctx, void **out)
{
    sl_db *db = arg;
    char msg[SL__DB_ERRMSG] = "";
    sl__dbc *c = NULL;
    int rc = db->drv->connect(db, ctx, &c, msg, sizeof msg);
    if (rc < 0) {
        set_msg(msg);
        return rc;
    }
    c->drv = db->drv;
    c->db = db;
    *out = c;
    return 0;
}

static void p_close(void *arg, void *res)
{
    sl__dbc *c = res;
    c->drv->close(c);
}

static int p_check(void *arg, void *res, sl_ctx *ctx)
{
    sl__dbc *c = res;
    if (c->broken) return SL_ECONNLOST;
    return c->drv->check ? c->drv->check(c) : 0;
}

int sl_db_open(const char *url, const sl_db_opts *opts, sl_db **out)
{
    if (!url || !out) return SL_EINVAL;
    sl_db *db = calloc(1, sizeof *db);
    if (!db) return SL_ENOMEM;
    if (opts) db->o = *opts;
    if (db->o.max_open == 0) db->o.max_open = 16;
    if (db->o.busy_timeout_ns <= 0) db->o.busy_timeout_ns = SL_SEC(5);
    if (db->o.stmt_cache <= 0) db->o.stmt_cache = 64;
    if (db->o.max_result_bytes == 0) db->o.max_result_bytes = (size_t)64 << 20;
    int rc = SL_EINVAL;
    if (strcmp(url, "sqlite::memory:") == 0) {
        db->drv = &sl__drv_sqlite;
        db->target = strdup(":memory:");
        db->o.max_open = 1; /* each connection would be a separate empty database */
    } else if (strncmp(url, "sqlite://", 9) == 0 && url[9]) {
        db->drv = &sl__drv_sqlite;
        db->target = strdup(url + 9);
    } else if (strncmp(url, "postgres://", 11) == 0 || strncmp(url, "postgresql://", 13) == 0) {
        db->drv = &sl__drv_pg;
        db->target = strdup(url);
    } else {
        set_msg("unknown database URL scheme");
        goto fail;
    }
    rc = SL_ENOMEM;
    if (!db->target) goto fail;
    sl_rpool_opts po = {.ops = {p_open, p_close, p_check},
                        .arg = db,
                        .max_open = db->o.max_open,
                        .max_idle = db->o.max_idle,
                        .max_lifetime_ns = db->o.max_lifetime_ns,
                        .max_idle_time_ns = db->o.max_idle_time_ns,
                        .check_after_ns = db->o.check_after_ns};
    if ((rc = sl_rpool_new(&po, &db->pool)) < 0) goto fail;
    if (db->drv == &sl__drv_sqlite) {
        /* Open one connection now (it stays idle): creates the file and shows errors here. */
        sl_rpool_item *it;
        if ((rc = sl_rpool_acquire(db->pool, NULL, &it)) < 0) goto fail;
        sl_rpool_release(it);
    }
    *out = db;
    return 0;
fail:
    sl_rpool_free(db->pool);
    free(db->target);
    free(db);
    return rc;
}

void sl_db_close(sl_db *db)
{
    if (!db) return;
    sl_rpool_free(db->pool);
    free(db->target);
    free(db);
}

sl_rpool *sl_db_pool(sl_db *db)
{
    return db ? db->pool : NULL;
}

const char *sl_db_driver(const sl_db *db)
{
    return db ? db->drv->name : "";
}

/* Gives a connection back after a call that returned rc. */
static void finish(sl_rpool_item *it, sl__dbc *c, int rc)
{
    if (rc < 0) set_msg(c->errmsg);
    c->errmsg[0] = '\0';
    if (c->broken)
        sl_rpool_discard(it);
    else
        sl_rpool_release(it);
}

static int check_args(const char *sql, const sl_db_arg *args, int nargs)
{
    if (!sql || nargs < 0 || (nargs > 0 && !args)) return SL_EINVAL;
    for (int i = 0; i < nargs; i++) {
        if (args[i].type < SL_DB_NULL || args[i].type > SL_DB_BLOB) return SL_EINVAL;
        if ((args[i].type == SL_DB_TEXT || args[i].type == SL_DB_BLOB) && !args[i].v.b.p &&
            args[i].v.b.n)
            return SL_EINVAL;
    }
    return 0;
}

static int call(sl_db *db, sl_ctx *ctx, const char *sql, const sl_db_arg *args, int nargs,
                sl_rows **rows, int64_t *affected)
{
    t_errmsg[0] = '\0';
    if (!db) return SL_EINVAL;
    int rc = check_args(sql, args, nargs);
    if (rc < 0) return rc;
    sl_rpool_item *it;
    if ((rc = sl_rpool_acquire(db->pool, ctx, &it)) < 0) return rc;
    sl__dbc *c = sl_rpool_item_res(it);
    rc = c->drv->run(c, ctx, sql, args, nargs, rows, affected);
    if (!c->broken && c->drv->in_tx(c)) {
        /* A BEGIN outside sl_db_begin would leave the next user of this connection inside
         * someone else's transaction: drop the connection (which rolls it back). */
        c->broken = true;
        if (rc == 0) {
            snprintf(c->errmsg, sizeof c->errmsg, "use sl_db_begin for transactions");
            rc = SL_EINVAL;
        }
    }
    finish(it, c, rc);
    return rc;
}

int sl_db_exec(sl_db *db, sl_ctx *ctx, const char *sql, const sl_db_arg *args, int nargs,
               int64_t *affected)
{
    int64_t n = 0;
    int rc = call(db, ctx, sql, args, nargs, NULL, &n);
    if (rc == 0 && affected) *affected = n;
    return rc;
}

int sl_db_query(sl_db *db, sl_ctx *ctx, const char *sql, const sl_db_arg *args, int nargs,
                sl_rows **out)
{
    if (!out) return SL_EINVAL;
    sl_rows *r = NULL;
    int rc = call(db, ctx, sql, args, nargs, &r, NULL);
    if (rc == 0) *out = r;
    return rc;
}

int sl_db_ping(sl_db *db, sl_ctx *ctx)
{
    return sl_db_exec(db, ctx, "SELECT 1", NULL, 0, NULL);
}

/* ---- transactions ---------------------------------------------------------------------------- */

struct sl_tx {
    sl_db *db;
    sl_ctx *ctx; /* borrowed: must outlive the tx */
    sl_rpool_item *it;
    sl__dbc *c;
};

int sl_db_begin(sl_db *db, sl_ctx *ctx, sl_tx **out)
{
    t_errmsg[0] = '\0';
    if (!db || !out) return SL_EINVAL;
    sl_tx *tx = calloc(1, sizeof *tx);
    if (!tx) return SL_ENOMEM;
    int rc = sl_rpool_acquire(db->pool, ctx, &tx->it);
    if (rc < 0) {
        free(tx);
        return rc;
    }
    tx->db = db;
    tx->ctx = ctx;
    tx->c = sl_rpool_item_res(tx->it);
    rc = tx->c->drv->run(tx->c, ctx, "BEGIN", NULL, 0, NULL, NULL);
    if (rc < 0) {
        tx->c->broken = true; /* state unknown: do not reuse */
        finish(tx->it, tx->c, rc);
        free(tx);
        return rc;
    }
    *out = tx;
    return 0;
}

static int tx_call(sl_tx *tx, const char *sql, const sl_db_arg *args, int nargs, sl_rows **rows,
                   int64_t *affected)
{
    t_errmsg[0] = '\0';
    if (!tx) return SL_EINVAL;
    int rc = check_args(sql, args, nargs);
    if (rc == 0) rc = sl_ctx_err(tx->ctx);
    if (rc == 0) rc = tx->c->drv->run(tx->c, tx->ctx, sql, args, nargs, rows, affected);
    if (rc < 0) set_msg(tx->c->errmsg);
    return rc;
}

int sl_tx_exec(sl_tx *tx, const char *sql, const sl_db_arg *args, int nargs, int64_t *affected)
{
    int64_t n = 0;
    int rc = tx_call(tx, sql, args, nargs, NULL, &n);
    if (rc == 0 && affected) *affected = n;
    return rc;
}

int sl_tx_query(sl_tx *tx, const char *sql, const sl_db_arg *args, int nargs, sl_rows **out)
{
    if (!out) return SL_EINVAL;
    sl_rows *r = NULL;
    int rc = tx_call(tx, sql, args, nargs, &r, NULL);
    if (rc == 0) *out = r;
    return rc;
}

/* Rolls back under a short deadline of its own; a connection that cannot is discarded (which
 * aborts the transaction server-side). Frees tx. */
static void tx_end_rollback(sl_tx *tx)
{
    sl_ctx *rctx = NULL;
    int rc = tx->c->broken ? SL_ECONNLOST : sl_ctx_with_timeout(NULL, ROLLBACK_TIMEOUT, &rctx);
    if (rc == 0) rc = tx->c->drv->run(tx->c, rctx, "ROLLBACK", NULL, 0, NULL, NULL);
    if (rc < 0) tx->c->broken = true;
    sl_ctx_release(rctx);
    tx->c->errmsg[0] = '\0';
    finish(tx->it, tx->c, 0);
    free(tx);
}

int sl_tx_commit(sl_tx *tx)
{
    t_errmsg[0] = '\0';
    if (!tx) return SL_EINVAL;
    int rc = sl_ctx_err(tx->ctx);
    if (rc == 0) rc = tx->c->drv->run(tx->c, tx->ctx, "COMMIT", NULL, 0, NULL, NULL);
    if (rc == 0) {
        finish(tx->it, tx->c, 0);
        free(tx);
        return 0;
    }
    set_msg(tx->c->errmsg);
    tx_end_rollback(tx);
    return rc;
}

int sl_tx_rollback(sl_tx *tx)
{
    t_errmsg[0] = '\0';
    if (!tx) return SL_EINVAL;
    tx_end_rollback(tx);
    return 0;
}
