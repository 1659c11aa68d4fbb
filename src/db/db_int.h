/* Private to src/db: the driver interface between sl_db (db.c: URL, pool, tx, errors) and the
 * drivers (sqlite.c, pg.c), the result builder both drivers fill (rows.c). The drivers wait
 * through the task runtime (sluice/task.h): SQLite calls go through sl_offload, PostgreSQL waits
 * on its socket with sl_wait_fd, so a task parks and a plain thread blocks. */
#ifndef SLUICE_DB_INT_H
#define SLUICE_DB_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sluice/ctx.h"
#include "sluice/db.h"
#include "sluice/error.h"
#include "sluice/rpool.h"

#define SL__DB_ERRMSG 512

/* Every driver's connection starts with this header. */
typedef struct sl__dbc {
    const struct sl__drv *drv;
    sl_db *db;
    bool broken;                /* lost: must be discarded, not reused */
    char errmsg[SL__DB_ERRMSG]; /* the last error's message from the database */
} sl__dbc;

typedef struct sl__drv {
    const char *name;
    /* Opens a connection to db. Fills *out; on failure returns an error and may set msg. */
    int (*connect)(sl_db *db, sl_ctx *ctx, sl__dbc **out, char *msg, size_t msgsz);
    void (*close)(sl__dbc *c);
    /* Cheap liveness check of an idle connection: 0 or < 0 (discard). */
    int (*check)(sl__dbc *c);
    /* Runs sql with args. rows != NULL: collect the result into *rows. nargs == 0 and rows NULL
     * may run several statements. Returns 0 or an SL_E* code (c->errmsg set, c->broken if the
     * connection cannot be reused). */
    int (*run)(sl__dbc *c, sl_ctx *ctx, const char *sql, const sl_db_arg *args, int nargs,
               sl_rows **rows, int64_t *affected);
    /* True while the connection is inside a transaction (BEGIN without COMMIT/ROLLBACK). */
    bool (*in_tx)(sl__dbc *c);
} sl__drv;

extern const sl__drv sl__drv_sqlite;
extern const sl__drv sl__drv_pg;

struct sl_db {
    const sl__drv *drv;
    sl_rpool *pool;
    sl_db_opts o;
    char *target; /* SQLite: path or ":memory:"; PostgreSQL: the libpq URI */
};

/* ---- result builder (rows.c) ---------------------------------------------------------------- */

/* A result of ncols columns that may hold at most limit bytes (cells + text/blob bytes; 0: no
 * limit): a put past it returns SL_EMSGSIZE. */
int sl__rows_new(int ncols, size_t limit, sl_rows **out);
/* Copies the column's name. */
int sl__rows_set_colname(sl_rows *r, int col, const char *name);
/* Appends one cell to the row being built; the row is complete after ncols cells. Text and blob
 * bytes are copied. */
int sl__rows_put_int(sl_rows *r, int64_t v);
int sl__rows_put_double(sl_rows *r, double v);
int sl__rows_put_bytes(sl_rows *r, sl_db_type type, const void *p, size_t n);
int sl__rows_put_null(sl_rows *r);

#endif /* SLUICE_DB_INT_H */
