/* The SQLite driver: one sqlite3 handle per pooled connection, WAL mode, a busy timeout, and an
 * LRU cache of prepared statements per connection.
 *
 * Every call into SQLite blocks (disk, locks), so each run is one offload job (sl_offload's
 * contract: the calling task parks while a thread runs it). A ctx that fires while the job
 * runs calls sqlite3_interrupt on the handle from its on-done hook — the one SQLite call that
 * is safe from another thread — and the running step returns SQLITE_INTERRUPT. The hook is
 * stopped (sl_ctx_hook_stop waits for a running hook) before the connection goes back to the
 * pool, so an interrupt never reaches the connection's next user; a stale interrupt flag is
 * cleared by SQLite itself when the next statement starts with none active.
 *
 * sqlite3_interrupt alone can be lost: a statement that starts while no other is active clears
 * a pending interrupt, so a ctx firing between the hook's registration and the first step would
 * go unseen. A progress handler closes that window: every PROGRESS_OPS VM instructions it reads
 * the ctx (one atomic load) and stops the statement once it is done. The interrupt remains for
 * what the handler does not see quickly (a long sort inside one step).
 *
 * A connection is used by one caller at a time (the pool guarantees it), so handles are opened
 * SQLITE_OPEN_NOMUTEX. Statements are cached by their SQL text; the cache is a small array
 * scanned linearly (a service has a few dozen distinct statements), least recently used
 * evicted. Statements with parameters must be a single statement; without parameters an exec
 * may run a whole script (schemas), which is prepared and finalised on the spot. */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db/db_int.h"
#include "sluice/task.h"
#include "sluice/clock.h"

#define PROGRESS_OPS 1000

typedef struct stmt_ent {
    char *sql;
    sqlite3_stmt *st;
    uint64_t used; /* tick of last use */
} stmt_ent;

typedef struct sqc {
    sl__dbc h;
    sqlite3 *db;
    sl_ctx *run_ctx;      /* the running call's ctx (busy handler); set by the job's thread */
    int64_t busy_start;   /* sl_mono_ns() when the current lock wait began */
    int64_t busy_timeout; /* ns */
    stmt_ent *cache;
    int ncache, cap;
    uint64_t tick;
} sqc;

static int map_err(sqc *c, int rc, bool compile)
{
    snprintf(c->h.errmsg, sizeof c->h.errmsg, "%s", sqlite3_errmsg(c->db));
    int ext = sqlite3_extended_errcode(c->db);
    switch (rc & 0xff) {
    case SQLITE_CONSTRAINT:
        return ext == SQLITE_CONSTRAINT_UNIQUE || ext == SQLITE_CONSTRAINT_PRIMARYKEY
                   ? SL_EUNIQUE
                   : SL_ECONSTRAINT;
    case SQLITE_INTERRUPT: return SL_ECANCELED;
    case SQLITE_BUSY:
    case SQLITE_LOCKED: return SL_EBUSY;
    case SQLITE_NOMEM: return SL_ENOMEM;
    case SQLITE_RANGE:
    case SQLITE_MISUSE: return SL_EINVAL;
    case SQLITE_ERROR: return compile ? SL_ESYNTAX : SL_EDB;
    default: return SL_EDB;
    }
}

/* ---- connect / close ------------------------------------------------------------------------ */

/* SQLite's lock wait (another connection writes): retried with short sleeps until the busy
 * timeout, or until the call's ctx is done. There is nothing to block on instead — SQLite's own
 * busy timeout sleeps the same way — and this runs on an offload thread. */
static int busy(void *arg, int n)
{
    sqc *c = arg;
    if (n == 0) c->busy_start = sl_mono_ns();
    if (c->run_ctx && sl_ctx_err(c->run_ctx)) return 0;
    if (sl_mono_ns() - c->busy_start >= c->busy_timeout) return 0;
    sqlite3_sleep(n < 10 ? 1 : 5); /* sleep-ok: SQLite's lock wait offers no wakeup */
    return 1;
}

struct open_job {
    sl_db *db;
    sqc *c;
    int rc;
    char *msg;
    size_t msgsz;
};

static void open_fn(void *arg)
{
    struct open_job *j = arg;
    sqc *c = j->c;
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
    int rc = sqlite3_open_v2(j->db->target, &c->db, flags, NULL);
    if (rc == SQLITE_OK) {
        c->busy_timeout = j->db->o.busy_timeout_ns;
        sqlite3_busy_handler(c->db, busy, c);
        sqlite3_extended_result_codes(c->db, 1);
        rc = sqlite3_exec(c->db,
                          "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
                          " PRAGMA foreign_keys=ON;",
                          NULL, NULL, NULL);
    }
    if (rc != SQLITE_OK) {
        snprintf(j->msg, j->msgsz, "%s: %s", j->db->target,
                 c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc));
        sqlite3_close_v2(c->db);
        c->db = NULL;
        j->rc = rc == SQLITE_NOMEM ? SL_ENOMEM : SL_EUNAVAIL;
    }
}

static int sq_connect(sl_db *db, sl_ctx *ctx, sl__dbc **out, char *msg, size_t msgsz)
{
    sqc *c = calloc(1, sizeof *c);
    if (!c) return SL_ENOMEM;
    c->cap = db->o.stmt_cache;
    c->cache = calloc((size_t)c->cap, sizeof *c->cache);
    struct open_job j = {.db = db, .c = c, .msg = msg, .msgsz = msgsz};
    int rc = c->cache ? sl_offload(open_fn, &j, ctx) : SL_ENOMEM;
    if (rc == 0) rc = j.rc;
    if (rc < 0) {
        if (c->db) sqlite3_close_v2(c->db);
        free(c->cache);
        free(c);
        return rc;
    }
    *out = &c->h;
    return 0;
}

static void sq_close(sl__dbc *h)
{
    sqc *c = (sqc *)h;
    for (int i = 0; i < c->ncache; i++) {
        sqlite3_finalize(c->cache[i].st);
        free(c->cache[i].sql);
    }
    free(c->cache);
    sqlite3_close_v2(c->db);
    free(c);
}

/* ---- statements ------------------------------------------------------------------------------ */

/* Returns the cached statement for sql, preparing (and caching) it on a miss. */
static int get_stmt(sqc *c, const char *sql, sqlite3_stmt **out)
{
    c->tick++;
    for (int i = 0; i < c->ncache; i++) {
        if (strcmp(c->cache[i].sql, sql) == 0) {
            c->cache[i].used = c->tick;
            *out = c->cache[i].st;
            return 0;
        }
    }
    sqlite3_stmt *st = NULL;
    const char *tail = NULL;
    int rc = sqlite3_prepare_v3(c->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, &tail);
    if (rc != SQLITE_OK) return map_err(c, rc, true);
    if (!st) {
        snprintf(c->h.errmsg, sizeof c->h.errmsg, "empty statement");
        return SL_EINVAL;
    }
    while (tail && (*tail == ' ' || *tail == '\n' || *tail == '\t' || *tail == ';'))
        tail++;
    if (tail && *tail) {
        sqlite3_finalize(st);
        snprintf(c->h.errmsg, sizeof c->h.errmsg, "one statement per call with parameters");
        return SL_EINVAL;
    }
    char *copy = strdup(sql);
    if (!copy) {
        sqlite3_finalize(st);
        return SL_ENOMEM;
    }
    int slot = c->ncache;
    if (slot == c->cap) {
        slot = 0;
        for (int i = 1; i < c->ncache; i++)
            if (c->cache[i].used < c->cache[slot].used) slot = i;
        sqlite3_finalize(c->cache[slot].st);
        free(c->cache[slot].sql);
    } else {
        c->ncache++;
    }
    c->cache[slot] = (stmt_ent){.sql = copy, .st = st, .used = c->tick};
    *out = st;
    return 0;
}

static int bind(sqc *c, sqlite3_stmt *st, const sl_db_arg *args, int nargs)
{
    if (sqlite3_bind_parameter_count(st) != nargs) {
        snprintf(c->h.errmsg, sizeof c->h.errmsg, "statement takes %d parameters, got %d",
                 sqlite3_bind_parameter_count(st), nargs);
        return SL_EINVAL;
    }
    for (int i = 0; i < nargs; i++) {
        const sl_db_arg *a = &args[i];
        int rc;
        switch (a->type) {
        case SL_DB_INT64: rc = sqlite3_bind_int64(st, i + 1, a->v.i); break;
        case SL_DB_DOUBLE: rc = sqlite3_bind_double(st, i + 1, a->v.d); break;
        case SL_DB_TEXT:
            rc = sqlite3_bind_text64(st, i + 1, a->v.b.p ? a->v.b.p : "", a->v.b.n, SQLITE_STATIC,
                                     SQLITE_UTF8);
            break;
        case SL_DB_BLOB:
            rc = sqlite3_bind_blob64(st, i + 1, a->v.b.p ? a->v.b.p : "", a->v.b.n, SQLITE_STATIC);
            break;
        default: rc = sqlite3_bind_null(st, i + 1); break;
        }
        if (rc != SQLITE_OK) return map_err(c, rc, false);
    }
    return 0;
}

static int put_col(sl_rows *r, sqlite3_stmt *st, int i)
{
    switch (sqlite3_column_type(st, i)) {
    case SQLITE_INTEGER: return sl__rows_put_int(r, sqlite3_column_int64(st, i));
    case SQLITE_FLOAT: return sl__rows_put_double(r, sqlite3_column_double(st, i));
    case SQLITE_TEXT: {
        const unsigned char *p = sqlite3_column_text(st, i);
        return sl__rows_put_bytes(r, SL_DB_TEXT, p, (size_t)sqlite3_column_bytes(st, i));
    }
    case SQLITE_BLOB: {
        const void *p = sqlite3_column_blob(st, i);
        return sl__rows_put_bytes(r, SL_DB_BLOB, p, (size_t)sqlite3_column_bytes(st, i));
    }
    default: return sl__rows_put_null(r);
    }
}

/* Steps st to the end, collecting rows into *rows if asked. */
static int step_all(sqc *c, sqlite3_stmt *st, sl_rows **rows)
{
    int ncols = sqlite3_column_count(st), rc = 0;
    sl_rows *r = NULL;
    if (rows) {
        if ((rc = sl__rows_new(ncols, c->h.db->o.max_result_bytes, &r)) < 0) return rc;
        for (int i = 0; i < ncols && rc == 0; i++)
            rc = sl__rows_set_colname(r, i, sqlite3_column_name(st, i));
    }
    int s;
    while (rc == 0 && (s = sqlite3_step(st)) == SQLITE_ROW) {
        for (int i = 0; r && i < ncols && rc == 0; i++)
            rc = put_col(r, st, i);
    }
    if (rc == 0 && s != SQLITE_DONE) rc = map_err(c, s, false);
    if (rc == SL_EMSGSIZE)
        snprintf(c->h.errmsg, sizeof c->h.errmsg, "result larger than max_result_bytes");
    if (rc < 0) {
        sl_rows_free(r);
        return rc;
    }
    if (rows) *rows = r;
    return 0;
}

/* A parameterless script: every statement in turn, nothing cached. */
static int run_script(sqc *c, const char *sql)
{
    while (sql && *sql) {
        sqlite3_stmt *st = NULL;
        const char *tail = NULL;
        int rc = sqlite3_prepare_v2(c->db, sql, -1, &st, &tail);
        if (rc != SQLITE_OK) return map_err(c, rc, true);
        if (!st) break; /* only whitespace or comments left */
        rc = step_all(c, st, NULL);
        sqlite3_finalize(st);
        if (rc < 0) return rc;
        sql = tail;
    }
    return 0;
}

struct run_job {
    sl_ctx *ctx;
    sqc *c;
    const char *sql;
    const sl_db_arg *args;
    int nargs;
    sl_rows **rows;
    int64_t *affected;
    int rc;
};

/* Called by SQLite every PROGRESS_OPS virtual-machine instructions: non-zero stops the
 * statement with SQLITE_INTERRUPT. One lock-free load. */
static int progress(void *arg)
{
    return sl_ctx_err(arg) != 0;
}

static void run_fn(void *arg)
{
    struct run_job *j = arg;
    sqc *c = j->c;
    c->run_ctx = j->ctx;
    if (j->ctx) sqlite3_progress_handler(c->db, PROGRESS_OPS, progress, j->ctx);
    if (j->nargs == 0 && !j->rows) {
        j->rc = run_script(c, j->sql);
    } else {
        sqlite3_stmt *st = NULL;
        j->rc = get_stmt(c, j->sql, &st);
        if (j->rc == 0) j->rc = bind(c, st, j->args, j->nargs);
        if (j->rc == 0) j->rc = step_all(c, st, j->rows);
        if (st) {
            sqlite3_reset(st);
            sqlite3_clear_bindings(st);
        }
    }
    if (j->rc == 0 && j->affected) *j->affected = sqlite3_changes64(c->db);
    if (j->ctx) sqlite3_progress_handler(c->db, 0, NULL, NULL);
    c->run_ctx = NULL;
}

static void interrupt(void *arg, int err)
{
    sqlite3_interrupt(arg);
}

static int sq_run(sl__dbc *h, sl_ctx *ctx, const char *sql, const sl_db_arg *args, int nargs,
                  sl_rows **rows, int64_t *affected)
{
    sqc *c = (sqc *)h;
    sl_ctx_hook *hook = NULL;
    int rc = 0;
    if (ctx && ctx != sl_ctx_background()) {
        rc = sl_ctx_on_done(ctx, interrupt, c->db, &hook);
        if (rc != 0) return rc < 0 ? rc : sl_ctx_err(ctx); /* 1: ctx already done */
    }
    struct run_job j = {hook ? ctx : NULL, c, sql, args, nargs, rows, affected, 0};
    rc = sl_offload(run_fn, &j, ctx);
    sl_ctx_hook_stop(hook);
    if (rc == 0) rc = j.rc;
    if ((rc == SL_ECANCELED || rc == SL_EBUSY) && sl_ctx_err(ctx) < 0) rc = sl_ctx_err(ctx);
    return rc;
}

static bool sq_in_tx(sl__dbc *h)
{
    return !sqlite3_get_autocommit(((sqc *)h)->db);
}

const sl__drv sl__drv_sqlite = {
    .name = "sqlite",
    .connect = sq_connect,
    .close = sq_close,
    .check = NULL,
    .run = sq_run,
    .in_tx = sq_in_tx,
};
