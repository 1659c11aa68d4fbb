/* sl_rows: a query's whole result, built by a driver and read by the caller.
 *
 * Cells are fixed-size records in one array (row-major, ncols per row); text and blob bytes
 * live in one growable arena and cells hold offsets into it (the arena moves as it grows).
 * Text is stored with a NUL after it so sl_rows_text can return it as a C string. Reading is
 * a bounds check and an index: no allocation, no conversion except the documented numeric
 * ones. */
#include <stdlib.h>
#include <string.h>

#include "db/db_int.h"

typedef struct cell {
    sl_db_type type;
    union {
        int64_t i;
        double d;
        struct {
            size_t off, len;
        } b;
    } v;
} cell;

struct sl_rows {
    int ncols;
    char **names; /* ncols copies */
    cell *cells;  /* ncells used, cap allocated */
    size_t ncells, cap;
    char *arena; /* text/blob bytes */
    size_t alen, acap;
    int cur;      /* current row; -1 before the first sl_rows_next */
    size_t limit; /* bytes at most (cells + arena); 0: none */
};

int sl__rows_new(int ncols, size_t limit, sl_rows **out)
{
    sl_rows *r = calloc(1, sizeof *r);
    if (!r) return SL_ENOMEM;
    r->ncols = ncols;
    r->limit = limit;
    r->cur = -1;
    if (ncols > 0 && !(r->names = calloc((size_t)ncols, sizeof *r->names))) {
        free(r);
        return SL_ENOMEM;
    }
    *out = r;
    return 0;
}

void sl_rows_free(sl_rows *r)
{
    if (!r) return;
    for (int i = 0; i < r->ncols; i++)
        free(r->names[i]);
    free(r->names);
    free(r->cells);
    free(r->arena);
    free(r);
}

int sl__rows_set_colname(sl_rows *r, int col, const char *name)
{
    if (col < 0 || col >= r->ncols) return SL_EINVAL;
    char *s = strdup(name ? name : "");
    if (!s) return SL_ENOMEM;
    free(r->names[col]);
    r->names[col] = s;
    return 0;
}

static bool over(const sl_rows *r, size_t more)
{
    return r->limit && (r->ncells + 1) * sizeof(cell) + r->alen + more > r->limit;
}

static cell *next_cell(sl_rows *r)
{
    if (r->ncells == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 64;
        cell *c = realloc(r->cells, cap * sizeof *c);
        if (!c) return NULL;
        r->cells = c;
        r->cap = cap;
    }
    return &r->cells[r->ncells++];
}

int sl__rows_put_int(sl_rows *r, int64_t v)
{
    if (over(r, 0)) return SL_EMSGSIZE;
    cell *c = next_cell(r);
    if (!c) return SL_ENOMEM;
    *c = (cell){.type = SL_DB_INT64, .v.i = v};
    return 0;
}

int sl__rows_put_double(sl_rows *r, double v)
{
    if (over(r, 0)) return SL_EMSGSIZE;
    cell *c = next_cell(r);
    if (!c) return SL_ENOMEM;
    *c = (cell){.type = SL_DB_DOUBLE, .v.d = v};
    return 0;
}

int sl__rows_put_null(sl_rows *r)
{
    if (over(r, 0)) return SL_EMSGSIZE;
    cell *c = next_cell(r);
    if (!c) return SL_ENOMEM;
    *c = (cell){.type = SL_DB_NULL};
    return 0;
}

int sl__rows_put_bytes(sl_rows *r, sl_db_type type, const void *p, size_t n)
{
    if (over(r, n + 1)) return SL_EMSGSIZE;
    if (r->alen + n + 1 > r->acap) {
        size_t cap = r->acap ? r->acap : 256;
        while (cap < r->alen + n + 1)
            cap *= 2;
        char *a = realloc(r->arena, cap);
        if (!a) return SL_ENOMEM;
        r->arena = a;
        r->acap = cap;
    }
    cell *c = next_cell(r);
    if (!c) return SL_ENOMEM;
    if (n) memcpy(r->arena + r->alen, p, n);
    r->arena[r->alen + n] = '\0';
    *c = (cell){.type = type, .v.b = {r->alen, n}};
    r->alen += n + 1;
    return 0;
}

bool sl_rows_next(sl_rows *r)
{
    if (!r || r->ncols == 0) return false;
    if ((size_t)(r->cur + 1) * (size_t)r->ncols >= r->ncells) return false;
    r->cur++;
    return true;
}

int sl_rows_count(const sl_rows *r)
{
    return r && r->ncols ? (int)(r->ncells / (size_t)r->ncols) : 0;
}

int sl_rows_ncols(const sl_rows *r)
{
    return r ? r->ncols : 0;
}

const char *sl_rows_colname(const sl_rows *r, int col)
{
    return r && col >= 0 && col < r->ncols ? r->names[col] : NULL;
}

static const cell *at(const sl_rows *r, int col)
{
    if (!r || r->cur < 0 || col < 0 || col >= r->ncols) return NULL;
    return &r->cells[(size_t)r->cur * (size_t)r->ncols + (size_t)col];
}

sl_db_type sl_rows_type(const sl_rows *r, int col)
{
    const cell *c = at(r, col);
    return c ? c->type : SL_DB_NULL;
}

bool sl_rows_is_null(const sl_rows *r, int col)
{
    return sl_rows_type(r, col) == SL_DB_NULL;
}

int64_t sl_rows_int64(const sl_rows *r, int col)
{
    const cell *c = at(r, col);
    if (!c) return 0;
    switch (c->type) {
    case SL_DB_INT64: return c->v.i;
    case SL_DB_DOUBLE: return (int64_t)c->v.d;
    case SL_DB_TEXT: return strtoll(r->arena + c->v.b.off, NULL, 10);
    default: return 0;
    }
}

double sl_rows_double(const sl_rows *r, int col)
{
    const cell *c = at(r, col);
    if (!c) return 0;
    switch (c->type) {
    case SL_DB_INT64: return (double)c->v.i;
    case SL_DB_DOUBLE: return c->v.d;
    case SL_DB_TEXT: return strtod(r->arena + c->v.b.off, NULL);
    default: return 0;
    }
}

const char *sl_rows_text(const sl_rows *r, int col)
{
    const cell *c = at(r, col);
    if (!c || (c->type != SL_DB_TEXT && c->type != SL_DB_BLOB)) return NULL;
    return r->arena + c->v.b.off;
}

const void *sl_rows_blob(const sl_rows *r, int col, size_t *len)
{
    const cell *c = at(r, col);
    if (!c || (c->type != SL_DB_TEXT && c->type != SL_DB_BLOB)) {
        if (len) *len = 0;
        return NULL;
    }
    if (len) *len = c->v.b.len;
    return r->arena + c->v.b.off;
}
