/* The PostgreSQL driver: non-blocking libpq, waiting on the connection's socket.
 *
 * Nothing here blocks a thread on the network except the cancel request: the connection is in
 * non-blocking mode, every send is followed by PQflush until the output buffer is empty, and
 * every wait for the server is sl_wait_fd(socket) followed by PQconsumeInput until PQisBusy is
 * false (the socket wait parks a task on its loop, or blocks a plain thread in poll()). All
 * waits take the caller's ctx.
 *
 * Cancellation: when the ctx fires during a statement the driver sends a cancel request
 * (PQcancel: a short separate connection to the server — libpq 15 has no non-blocking form),
 * then drains the statement's results under a deadline of its own, so the connection is back
 * in a known state before it returns to the pool; if that cannot be confirmed the connection is
 * marked broken and the pool drops it. Lost connections (socket closed, server gone: libpq's
 * CONNECTION_BAD, SQLSTATE class 08, 57P0x) are marked broken the same way and reported as
 * SL_ECONNLOST; the pool opens fresh connections for the next callers, which is how a restarted
 * server is picked up.
 *
 * Statements with parameters (or returning rows) are prepared once per connection under names
 * sl_1, sl_2, ... and cached by SQL text (LRU, DEALLOCATE on eviction); parameters travel in
 * text format (numbers formatted here) or binary (blobs), always apart from the SQL text.
 * Parameterless execs use the simple protocol, so a schema script may hold several statements.
 *
 * Health check of an idle connection: readable while idle means the server closed it or sent a
 * fatal notice (shutdown), so the connection is dead; one poll() with no timeout. */
#include <libpq-fe.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db/db_int.h"
#include "sluice/task.h"
#include "sluice/clock.h"

#define DRAIN_TIMEOUT SL_SEC(5)

typedef struct pstmt {
    char *sql;
    char name[24];
    uint64_t used;
} pstmt;

typedef struct pgc {
    sl__dbc h;
    PGconn *pg;
    pstmt *cache;
    int ncache, cap;
    uint64_t tick;
    unsigned next_id;
    bool pending; /* a command was sent and its results are not all read */
} pgc;

static int lost(pgc *c)
{
    c->h.broken = true;
    snprintf(c->h.errmsg, sizeof c->h.errmsg, "%s", PQerrorMessage(c->pg));
    return SL_ECONNLOST;
}

/* ---- connect / close ------------------------------------------------------------------------ */

/* Server notices (warnings, "terminating connection") are not errors of any call: libpq would
 * print them on stderr; they are dropped (errors carry their own message). */
static void quiet(void *arg, const char *msg) {}

static int pg_connect(sl_db *db, sl_ctx *ctx, sl__dbc **out, char *msg, size_t msgsz)
{
    pgc *c = calloc(1, sizeof *c);
    if (!c) return SL_ENOMEM;
    c->cap = db->o.stmt_cache;
    if (!(c->cache = calloc((size_t)c->cap, sizeof *c->cache))) goto nomem;
    if (!(c->pg = PQconnectStart(db->target))) goto nomem;
    int rc = 0;
    PostgresPollingStatusType st = PGRES_POLLING_WRITING;
    if (PQstatus(c->pg) == CONNECTION_BAD) st = PGRES_POLLING_FAILED;
    while (st != PGRES_POLLING_OK && st != PGRES_POLLING_FAILED) {
        int ev = st == PGRES_POLLING_READING ? SL_WAIT_READ : SL_WAIT_WRITE;
        if ((rc = sl_wait_fd(PQsocket(c->pg), ev, ctx)) < 0) break;
        rc = 0;
        st = PQconnectPoll(c->pg);
    }
    if (rc == 0 && st == PGRES_POLLING_FAILED) rc = SL_EUNAVAIL;
    if (rc == 0 && PQsetnonblocking(c->pg, 1) != 0) rc = SL_EUNAVAIL;
    if (rc == 0) PQsetNoticeProcessor(c->pg, quiet, NULL);
    if (rc < 0) {
        snprintf(msg, msgsz, "%s", PQerrorMessage(c->pg));
        PQfinish(c->pg);
        free(c->cache);
        free(c);
        return rc;
    }
    *out = &c->h;
    return 0;
nomem:
    free(c->cache);
    free(c);
    return SL_ENOMEM;
}

static void pg_close(sl__dbc *h)
{
    pgc *c = (pgc *)h;
    for (int i = 0; i < c->ncache; i++)
        free(c->cache[i].sql);
    free(c->cache);
    PQfinish(c->pg);
    free(c);
}

static int pg_check(sl__dbc *h)
{
    pgc *c = (pgc *)h;
    if (PQstatus(c->pg) != CONNECTION_OK) return SL_ECONNLOST;
    struct pollfd p = {.fd = PQsocket(c->pg), .events = POLLIN};
    int n = poll(&p, 1, 0); /* sleep-ok: zero timeout, a readiness probe */
    return n == 0 ? 0 : SL_ECONNLOST;
}

/* ---- I/O under a ctx ------------------------------------------------------------------------- */

static int flush(pgc *c, sl_ctx *ctx)
{
    for (;;) {
        int r = PQflush(c->pg);
        if (r == 0) return 0;
        if (r < 0) return lost(c);
        int ev = sl_wait_fd(PQsocket(c->pg), SL_WAIT_READ | SL_WAIT_WRITE, ctx);
        if (ev < 0 && ev != SL_EAGAIN) return ev;
        if (ev > 0 && (ev & SL_WAIT_READ) && !PQconsumeInput(c->pg)) return lost(c);
    }
}

/* Waits until a whole result can be read without blocking. */
static int await(pgc *c, sl_ctx *ctx)
{
    while (PQisBusy(c->pg)) {
        int ev = sl_wait_fd(PQsocket(c->pg), SL_WAIT_READ, ctx);
        if (ev < 0 && ev != SL_EAGAIN) return ev;
        if (!PQconsumeInput(c->pg)) return lost(c);
    }
    return 0;
}

static int res_err(pgc *c, const PGresult *res)
{
    snprintf(c->h.errmsg, sizeof c->h.errmsg, "%s", PQresultErrorMessage(res));
    size_t n = strlen(c->h.errmsg);
    while (n && c->h.errmsg[n - 1] == '\n')
        c->h.errmsg[--n] = '\0';
    const char *s = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    if (!s) return PQstatus(c->pg) == CONNECTION_BAD ? lost(c) : SL_EDB;
    if (strcmp(s, "23505") == 0) return SL_EUNIQUE;
    if (strncmp(s, "23", 2) == 0) return SL_ECONSTRAINT;
    if (strncmp(s, "42", 2) == 0) return SL_ESYNTAX;
    if (strcmp(s, "57014") == 0) return SL_ECANCELED;
    if (strcmp(s, "08P01") == 0) return SL_EINVAL; /* e.g. wrong parameter count: not lost */
    if (strncmp(s, "08", 2) == 0 || strncmp(s, "57P0", 4) == 0) {
        c->h.broken = true;
        return SL_ECONNLOST;
    }
    if (strcmp(s, "53300") == 0) return SL_EBUSY; /* too many connections */
    return SL_EDB;
}

static int64_t cell_int(const char *s, Oid type)
{
    if (type == 16) return s[0] == 't';
    return strtoll(s, NULL, 10);
}

static int convert(pgc *c, const PGresult *res, sl_rows **out)
{
    int ncols = PQnfields(res), nrows = PQntuples(res);
    sl_rows *r = NULL;
    int rc = sl__rows_new(ncols, c->h.db->o.max_result_bytes, &r);
    for (int i = 0; i < ncols && rc == 0; i++)
        rc = sl__rows_set_colname(r, i, PQfname(res, i));
    for (int row = 0; row < nrows && rc == 0; row++) {
        for (int i = 0; i < ncols && rc == 0; i++) {
            Oid t = PQftype(res, i);
            const char *v = PQgetvalue(res, row, i);
            if (PQgetisnull(res, row, i)) {
                rc = sl__rows_put_null(r);
            } else if (t == 20 || t == 21 || t == 23 || t == 26 || t == 16) {
                rc = sl__rows_put_int(r, cell_int(v, t));
            } else if (t == 700 || t == 701) {
                rc = sl__rows_put_double(r, strtod(v, NULL));
            } else if (t == 17) {
                size_t n = 0;
                unsigned char *b = PQunescapeBytea((const unsigned char *)v, &n);
                rc = b ? sl__rows_put_bytes(r, SL_DB_BLOB, b, n) : SL_ENOMEM;
                PQfreemem(b);
            } else {
                rc = sl__rows_put_bytes(r, SL_DB_TEXT, v, (size_t)PQgetlength(res, row, i));
            }
        }
    }
    if (rc < 0 && r) sl_rows_free(r);
    if (rc == SL_EMSGSIZE)
        snprintf(c->h.errmsg, sizeof c->h.errmsg, "result larger than max_result_bytes");
    if (rc == 0) *out = r;
    return rc;
}

/* Reads every result of the command sent last. The first error wins; rows come from the first
 * tuples result. COMMIT answered "ROLLBACK" (the transaction had failed) is an error. */
static int collect(pgc *c, sl_ctx *ctx, sl_rows **rows, int64_t *affected, bool commit)
{
    int rc = 0;
    for (;;) {
        int w = await(c, ctx);
        if (w < 0) return w;
        PGresult *res = PQgetResult(c->pg);
        if (!res) {
            c->pending = false;
            break;
        }
        switch (PQresultStatus(res)) {
        case PGRES_TUPLES_OK:
            if (rc == 0 && rows && !*rows) rc = convert(c, res, rows);
            break;
        case PGRES_COMMAND_OK:
            if (affected) *affected += strtoll(PQcmdTuples(res), NULL, 10);
            if (commit && strcmp(PQcmdStatus(res), "ROLLBACK") == 0 && rc == 0) {
                snprintf(c->h.errmsg, sizeof c->h.errmsg,
                         "transaction rolled back: a statement in it had failed");
                rc = SL_EDB;
            }
            break;
        case PGRES_EMPTY_QUERY: break;
        default:
            if (rc == 0) rc = res_err(c, res);
            break;
        }
        PQclear(res);
    }
    if (PQstatus(c->pg) == CONNECTION_BAD) return lost(c);
    return rc;
}

/* The ctx fired mid-command: ask the server to stop, then drain under a deadline of our own. */
static int cancel(pgc *c, int err)
{
    PGcancel *cn = PQgetCancel(c->pg);
    char buf[256];
    if (!cn || !PQcancel(cn, buf, sizeof buf)) c->h.broken = true;
    PQfreeCancel(cn);
    sl_ctx *dctx = NULL;
    if (c->h.broken || sl_ctx_with_timeout(NULL, DRAIN_TIMEOUT, &dctx) < 0) {
        c->h.broken = true;
    } else {
        sl_rows *junk = NULL;
        int rc = flush(c, dctx);
        if (rc == 0) rc = collect(c, dctx, &junk, NULL, false);
        sl_rows_free(junk);
        if (rc < 0 && rc != SL_ECANCELED) c->h.broken = true;
    }
    sl_ctx_release(dctx);
    snprintf(c->h.errmsg, sizeof c->h.errmsg, "statement cancelled: %s", sl_strerror(err));
    return err;
}

/* ---- statements ------------------------------------------------------------------------------ */

static int roundtrip(pgc *c, sl_ctx *ctx, int sent)
{
    if (!sent) return lost(c);
    c->pending = true;
    int rc = flush(c, ctx);
    if (rc == 0) rc = collect(c, ctx, NULL, NULL, false);
    return rc;
}

/* Finds or prepares the named statement for sql. */
static int prepare(pgc *c, sl_ctx *ctx, const char *sql, int nargs, const char **name)
{
    c->tick++;
    for (int i = 0; i < c->ncache; i++) {
        if (strcmp(c->cache[i].sql, sql) == 0) {
            c->cache[i].used = c->tick;
            *name = c->cache[i].name;
            return 0;
        }
    }
    int slot = c->ncache, rc;
    if (slot == c->cap) {
        slot = 0;
        for (int i = 1; i < c->ncache; i++)
            if (c->cache[i].used < c->cache[slot].used) slot = i;
        char q[64];
        snprintf(q, sizeof q, "DEALLOCATE %s", c->cache[slot].name);
        if ((rc = roundtrip(c, ctx, PQsendQuery(c->pg, q))) < 0) return rc;
        free(c->cache[slot].sql);
        c->cache[slot] = c->cache[--c->ncache];
        slot = c->ncache;
    }
    pstmt e = {.sql = strdup(sql), .used = c->tick};
    if (!e.sql) return SL_ENOMEM;
    snprintf(e.name, sizeof e.name, "sl_%u", ++c->next_id);
    if ((rc = roundtrip(c, ctx, PQsendPrepare(c->pg, e.name, sql, nargs, NULL))) < 0) {
        free(e.sql);
        return rc;
    }
    c->cache[slot] = e;
    c->ncache++;
    *name = c->cache[slot].name;
    return 0;
}

/* Formats the parameters for libpq: text (NUL-terminated copies) or binary (blobs). */
#define SMALL_PARAMS 8
#define SMALL_BUF    512

/* Small calls (the common case) use the arrays inside the struct; larger ones allocate. */
typedef struct params {
    const char **values;
    int *lengths, *formats;
    char *buf;
    bool heap;
    const char *v_small[SMALL_PARAMS];
    int l_small[SMALL_PARAMS], f_small[SMALL_PARAMS];
    char b_small[SMALL_BUF];
} params;

static int make_params(pgc *c, const sl_db_arg *args, int n, params *p)
{
    size_t need = 1;
    for (int i = 0; i < n; i++)
        need += args[i].type == SL_DB_TEXT ? args[i].v.b.n + 1 : 32;
    if (n <= SMALL_PARAMS && need <= SMALL_BUF) {
        p->values = p->v_small;
        p->lengths = p->l_small;
        p->formats = p->f_small;
        p->buf = p->b_small;
        memset(p->l_small, 0, sizeof p->l_small);
        memset(p->f_small, 0, sizeof p->f_small);
    } else {
        p->heap = true;
        p->values = calloc((size_t)n + 1, sizeof *p->values);
        p->lengths = calloc((size_t)n + 1, sizeof *p->lengths);
        p->formats = calloc((size_t)n + 1, sizeof *p->formats);
        p->buf = malloc(need);
        if (!p->values || !p->lengths || !p->formats || !p->buf) return SL_ENOMEM;
    }
    char *b = p->buf;
    for (int i = 0; i < n; i++) {
        const sl_db_arg *a = &args[i];
        switch (a->type) {
        case SL_DB_INT64:
            p->values[i] = b;
            b += snprintf(b, 32, "%lld", (long long)a->v.i) + 1;
            break;
        case SL_DB_DOUBLE:
            p->values[i] = b;
            b += snprintf(b, 32, "%.17g", a->v.d) + 1;
            break;
        case SL_DB_TEXT:
            if (a->v.b.n && memchr(a->v.b.p, '\0', a->v.b.n)) {
                snprintf(c->h.errmsg, sizeof c->h.errmsg, "parameter %d: NUL in text", i + 1);
                return SL_EINVAL;
            }
            p->values[i] = b;
            if (a->v.b.n) memcpy(b, a->v.b.p, a->v.b.n);
            b[a->v.b.n] = '\0';
            b += a->v.b.n + 1;
            break;
        case SL_DB_BLOB:
            p->values[i] = a->v.b.p ? a->v.b.p : "";
            p->lengths[i] = (int)a->v.b.n;
            p->formats[i] = 1;
            break;
        default: p->values[i] = NULL; break;
        }
    }
    return 0;
}

static void free_params(params *p)
{
    if (!p->heap) return;
    free(p->values);
    free(p->lengths);
    free(p->formats);
    free(p->buf);
}

static int pg_run(sl__dbc *h, sl_ctx *ctx, const char *sql, const sl_db_arg *args, int nargs,
                  sl_rows **rows, int64_t *affected)
{
    pgc *c = (pgc *)h;
    int rc = sl_ctx_err(ctx);
    if (rc < 0) return rc;
    if (PQstatus(c->pg) != CONNECTION_OK) return lost(c);
    bool commit = strcmp(sql, "COMMIT") == 0;
    int sent;
    params p;
    p.heap = false;
    if (nargs == 0 && !rows) {
        sent = PQsendQuery(c->pg, sql);
    } else {
        const char *name = NULL;
        if ((rc = prepare(c, ctx, sql, nargs, &name)) < 0) goto out;
        if ((rc = make_params(c, args, nargs, &p)) < 0) goto out;
        sent = PQsendQueryPrepared(c->pg, name, nargs, p.values, p.lengths, p.formats, 0);
    }
    if (!sent) {
        rc = lost(c);
        goto out;
    }
    c->pending = true;
    int64_t n = 0;
    rc = flush(c, ctx);
    if (rc == 0) rc = collect(c, ctx, rows, &n, commit);
    if (rc == 0 && affected) *affected = n;
out:
    free_params(&p);
    int cerr = sl_ctx_err(ctx);
    if (rc < 0 && c->pending && !c->h.broken) rc = cancel(c, cerr < 0 ? cerr : rc);
    if (rc == SL_ECANCELED && cerr < 0) rc = cerr;
    if (rc < 0 && rows && *rows) {
        sl_rows_free(*rows);
        *rows = NULL;
    }
    return rc;
}

static bool pg_in_tx(sl__dbc *h)
{
    return PQtransactionStatus(((pgc *)h)->pg) != PQTRANS_IDLE;
}

const sl__drv sl__drv_pg = {
    .name = "postgres",
    .connect = pg_connect,
    .close = pg_close,
    .check = pg_check,
    .run = pg_run,
    .in_tx = pg_in_tx,
};
