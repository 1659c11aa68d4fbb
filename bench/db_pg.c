/* sl_db on PostgreSQL: select-by-primary-key queries/s from W concurrent callers sharing one
 * sl_db with C connections. Needs a server: scripts/bench_db_pg.sh starts a private cluster,
 * fills the table and runs this next to the same load from Go's database/sql + lib/pq.
 * Run alone (make bench) without SLUICE_BENCH_PG_URL it prints a "skipped" row.
 *
 * Until the task runtime lands, the W callers are threads (on 2 cores, 64 threads each blocked
 * in poll() on its connection or in the pool's wait); with tasks they become 64 tasks. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "sluice/sluice.h"

static sl_db *g_db;
static atomic_bool g_stop;
static atomic_long g_ok, g_err;
static int g_rows;

static void *worker(void *arg)
{
    unsigned seed = (unsigned)(uintptr_t)arg * 2654435761u;
    long ok = 0, err = 0;
    while (!atomic_load_explicit(&g_stop, memory_order_relaxed)) {
        seed = seed * 1103515245u + 12345u;
        int64_t id = (int64_t)(seed >> 8) % g_rows + 1;
        sl_rows *r;
        int rc = sl_db_query(g_db, NULL, "SELECT id, name FROM bench_users WHERE id = $1",
                             (sl_db_arg[]){SL_DB_INT(id)}, 1, &r);
        if (rc == 0 && sl_rows_next(r) && sl_rows_int64(r, 0) == id)
            ok++;
        else
            err++;
        if (rc == 0) sl_rows_free(r);
    }
    atomic_fetch_add(&g_ok, ok);
    atomic_fetch_add(&g_err, err);
    return NULL;
}

int main(void)
{
    const char *url = getenv("SLUICE_BENCH_PG_URL");
    if (!url) {
        printf("| db_pg select by pk | skipped | | run scripts/bench_db_pg.sh |\n");
        return 0;
    }
    int workers = getenv("WORKERS") ? atoi(getenv("WORKERS")) : 64;
    int conns = getenv("CONNS") ? atoi(getenv("CONNS")) : 8;
    double secs = getenv("DURATION") ? atof(getenv("DURATION")) : 5;
    g_rows = getenv("ROWS") ? atoi(getenv("ROWS")) : 10000;
    sl_db_opts o = {.max_open = conns, .max_idle = conns};
    if (sl_db_open(url, &o, &g_db) < 0 || sl_db_ping(g_db, NULL) < 0) {
        fprintf(stderr, "db_pg: cannot connect: %s\n", sl_db_errmsg());
        return 1;
    }
    pthread_t *t = calloc((size_t)workers, sizeof *t);
    sl_ctx *ctx;
    sl_ctx_with_timeout(NULL, (int64_t)(secs * 1e9), &ctx);
    int64_t t0 = sl_mono_ns();
    for (int i = 0; i < workers; i++)
        pthread_create(&t[i], NULL, worker, (void *)(uintptr_t)(i + 1));
    sl_ctx_wait(ctx);
    atomic_store(&g_stop, true);
    for (int i = 0; i < workers; i++)
        pthread_join(t[i], NULL);
    double el = (double)(sl_mono_ns() - t0) / 1e9;
    sl_ctx_release(ctx);
    printf(
        "| db_pg select by pk, sluice (%d threads, %d conns) | %.0f | queries/s | errors %ld |\n",
        workers, conns, (double)atomic_load(&g_ok) / el, atomic_load(&g_err));
    free(t);
    sl_db_close(g_db);
    return 0;
}
