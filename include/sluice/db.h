/* sl_db: Go's *sql.DB for C — a pool of database connections, SQLite or PostgreSQL.
 *
 *   sl_db *db;
 *   sl_db_open("sqlite:///var/lib/app/app.db", NULL, &db);        // or postgres://u@h/db
 *   sl_db_arg args[] = {SL_DB_TEXT(email), SL_DB_INT(age)};
 *   rc = sl_db_exec(db, ctx, "INSERT INTO users(email, age) VALUES ($1, $2)", args, 2, NULL);
 *   if (rc == SL_EUNIQUE) ...409...                                 // sl_db_errmsg(): why
 *   sl_rows *r;
 *   rc = sl_db_query(db, ctx, "SELECT id, email FROM users WHERE age > $1", args + 1, 1, &r);
 *   while (rc == 0 && sl_rows_next(r)) printf("%lld %s\n", sl_rows_int64(r, 0), sl_rows_text(r,
 * 1)); sl_rows_free(r);
 *
 * Parameters are positional ($1, $2, ... — SQLite also accepts ?) and travel apart from the SQL
 * text (bound values, never string building), so a value like "'; DROP TABLE users; --" is
 * only ever data. Every statement is prepared once per connection and cached (an LRU of
 * stmt_cache entries per connection).
 *
 * Rows are read whole before the call returns (the connection goes straight back to the pool):
 * ask for what you need (LIMIT). A result past opts.max_result_bytes (64 MiB) fails with
 * SL_EMSGSIZE instead of growing without bound (PostgreSQL: libpq has received it by then).
 *
 * A ctx that fires cancels the running statement on the server: sqlite3_interrupt for SQLite,
 * a PostgreSQL cancel request for PostgreSQL; the call then returns the ctx's error
 * (SL_ECANCELED or SL_ETIMEDOUT).
 *
 * Errors: SL_EUNIQUE (unique or primary key violation), SL_ECONSTRAINT (another constraint),
 * SL_ESYNTAX (the statement does not compile: syntax, unknown table or column), SL_ECONNLOST
 * (the connection broke; it is dropped from the pool, the next call opens a new one),
 * SL_EUNAVAIL (cannot connect), SL_EBUSY (SQLite: locked past the busy timeout), SL_EDB (any
 * other database error), SL_EINVAL (bad arguments), the ctx's error, SL_ENOMEM. After a failed
 * call sl_db_errmsg() holds the database's own message.
 *
 * What runs where: SQLite calls are blocking library calls run through the task offload pool
 * (the calling task parks); PostgreSQL uses non-blocking libpq and waits on its socket
 * (sl_wait_fd): a task parks, the loop keeps running. See docs/db.md.
 *
 * Threads: any. sl_db is shared by every thread; an sl_rows or sl_tx is single owner. */
#ifndef SLUICE_DB_H
#define SLUICE_DB_H

#include <string.h>

#include "sluice/common.h"
#include "sluice/ctx.h"
#include "sluice/rpool.h"

SL_BEGIN_DECLS

typedef struct sl_db sl_db;
typedef struct sl_rows sl_rows;
typedef struct sl_tx sl_tx;

typedef enum sl_db_type {
    SL_DB_NULL = 0,
    SL_DB_INT64,
    SL_DB_DOUBLE,
    SL_DB_TEXT,
    SL_DB_BLOB,
} sl_db_type;

/* One parameter value. Text and blob bytes are borrowed for the duration of the call. */
typedef struct sl_db_arg {
    sl_db_type type;
    union {
        int64_t i;
        double d;
        struct {
            const void *p;
            size_t n;
        } b;
    } v;
} sl_db_arg;

#define SL_DB_INT(x)      ((sl_db_arg){.type = SL_DB_INT64, .v.i = (int64_t)(x)})
#define SL_DB_DBL(x)      ((sl_db_arg){.type = SL_DB_DOUBLE, .v.d = (double)(x)})
#define SL_DB_TEXT(s)     ((sl_db_arg){.type = SL_DB_TEXT, .v.b = {(s), strlen(s)}})
#define SL_DB_TEXTN(s, n) ((sl_db_arg){.type = SL_DB_TEXT, .v.b = {(s), (n)}})
#define SL_DB_BLOB(p, n)  ((sl_db_arg){.type = SL_DB_BLOB, .v.b = {(p), (n)}})
#define SL_DB_NULLV       ((sl_db_arg){.type = SL_DB_NULL})

typedef struct sl_db_opts {
    int max_open;             /* connections at once; 0: 16 (sqlite::memory: is always 1) */
    int max_idle;             /* 0: 2 (database/sql's default); < 0: none */
    int64_t max_lifetime_ns;  /* 0: forever */
    int64_t max_idle_time_ns; /* 0: forever */
    int64_t check_after_ns;   /* health-check idle connections older than this; 0: always */
    int64_t busy_timeout_ns;  /* SQLite: wait for locks this long; 0: 5 s */
    int stmt_cache;           /* prepared statements kept per connection; 0: 64 */
    size_t max_result_bytes;  /* a query's rows at most (SL_EMSGSIZE past it); 0: 64 MiB */
} sl_db_opts;

/* Opens a database handle from a URL: "sqlite:///abs/path.db", "sqlite://rel/path.db",
 * "sqlite::memory:", "postgres://user:pw@host:port/db?sslmode=disable" (or "postgresql://";
 * any libpq URI). No connection is made yet except for SQLite files, which are created and put
 * in WAL mode at once so that errors show here. opts NULL: defaults. Returns 0 and *out,
 * SL_EINVAL (unknown scheme), SL_EUNAVAIL (SQLite file cannot be opened) or SL_ENOMEM.
 * Threads: any. Blocks (SQLite open). */
SL_API int sl_db_open(const char *url, const sl_db_opts *opts, sl_db **out);

/* Closes every connection and frees db. No call may be running and every sl_tx must be
 * finished. NULL is ignored. */
SL_API void sl_db_close(sl_db *db);

/* The connection pool (for stats, sl_obs_rpool, sl_rpool_reap). Owned by db. */
SL_API sl_rpool *sl_db_pool(sl_db *db);

/* "sqlite" or "postgres". */
SL_API const char *sl_db_driver(const sl_db *db);

/* The database's message for the last failed sl_db call on this thread ("" if none). Valid
 * until the next sl_db call on this thread. */
SL_API const char *sl_db_errmsg(void);

/* Runs one statement that returns no rows (or whose rows are ignored). *affected (if not NULL)
 * gets the rows changed. With nargs == 0 the SQL may hold several statements separated by ';'
 * (schemas). Returns 0 or an error above. Blocks (ctx-bounded). */
SL_API int sl_db_exec(sl_db *db, sl_ctx *ctx, const char *sql, const sl_db_arg *args, int nargs,
                      int64_t *affected);

/* Runs a query and returns all its rows in *out (the caller frees with sl_rows_free). Returns 0
 * or an error above (*out untouched). Blocks (ctx-bounded). */
SL_API int sl_db_query(sl_db *db, sl_ctx *ctx, const char *sql, const sl_db_arg *args, int nargs,
                       sl_rows **out);

/* Checks that a connection can be had and answers (opens one if needed). */
SL_API int sl_db_ping(sl_db *db, sl_ctx *ctx);

/* ---- rows ------------------------------------------------------------------------------------ */

/* Moves to the next row (the first on the first call). False after the last. */
SL_API bool sl_rows_next(sl_rows *r);
SL_API int sl_rows_count(const sl_rows *r); /* rows in the result */
SL_API int sl_rows_ncols(const sl_rows *r);
SL_API const char *sl_rows_colname(const sl_rows *r, int col); /* NULL if out of range */

/* Typed access to column col of the current row. Out of range or NULL: 0 / 0.0 / NULL.
 * sl_rows_int64 and sl_rows_double convert between numbers and parse numeric text; text and
 * blob give the bytes (text NUL-terminated; len may be NULL), NULL for numbers. Pointers stay
 * valid until sl_rows_free. */
SL_API sl_db_type sl_rows_type(const sl_rows *r, int col);
SL_API bool sl_rows_is_null(const sl_rows *r, int col);
SL_API int64_t sl_rows_int64(const sl_rows *r, int col);
SL_API double sl_rows_double(const sl_rows *r, int col);
SL_API const char *sl_rows_text(const sl_rows *r, int col);
SL_API const void *sl_rows_blob(const sl_rows *r, int col, size_t *len);

SL_API void sl_rows_free(sl_rows *r);

/* ---- transactions ---------------------------------------------------------------------------- */

/* Takes a connection and begins a transaction on it, bound to ctx (Go's BeginTx): every
 * statement of the tx runs under ctx, and once ctx fires the running statement is cancelled
 * and the tx can only roll back — sl_tx_commit then rolls back and returns the ctx's error.
 * The caller must end it with exactly one sl_tx_commit or sl_tx_rollback (which free it).
 * ctx must outlive the tx. Returns 0 and *out, or an error above. Blocks. */
SL_API int sl_db_begin(sl_db *db, sl_ctx *ctx, sl_tx **out);

SL_API int sl_tx_exec(sl_tx *tx, const char *sql, const sl_db_arg *args, int nargs,
                      int64_t *affected);
SL_API int sl_tx_query(sl_tx *tx, const char *sql, const sl_db_arg *args, int nargs, sl_rows **out);

/* Commits and frees tx. Returns 0, the ctx's error (rolled back instead), or the commit's
 * error (the tx is rolled back: e.g. a deferred constraint). */
SL_API int sl_tx_commit(sl_tx *tx);

/* Rolls back and frees tx. Returns 0 or an error (the connection is then dropped). */
SL_API int sl_tx_rollback(sl_tx *tx);

SL_END_DECLS

#endif /* SLUICE_DB_H */
