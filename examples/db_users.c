/* sl_db in a few lines: open SQLite (or PostgreSQL: pass a postgres:// URL), create a table,
 * insert with positional parameters, hit a unique violation, read rows back, and run a
 * transaction under a deadline.
 *
 *   build/release/examples/example_db_users                 # sqlite::memory:
 *   build/release/examples/example_db_users sqlite:///tmp/users.db */
#include <stdio.h>

#include "sluice/sluice.h"

int main(int argc, char **argv)
{
    const char *url = argc > 1 ? argv[1] : "sqlite::memory:";
    sl_db *db;
    if (sl_db_open(url, NULL, &db) < 0) {
        fprintf(stderr, "open %s: %s\n", url, sl_db_errmsg());
        return 1;
    }
    int rc = sl_db_exec(db, NULL,
                        "CREATE TABLE IF NOT EXISTS users(id INTEGER PRIMARY KEY,"
                        " email TEXT NOT NULL UNIQUE, name TEXT)",
                        NULL, 0, NULL);
    const char *emails[] = {"ada@example.com", "grace@example.com", "ada@example.com"};
    for (int i = 0; rc == 0 && i < 3; i++) {
        sl_db_arg a[] = {SL_DB_TEXT(emails[i]), SL_DB_TEXT("'; DROP TABLE users; --")};
        int r = sl_db_exec(db, NULL, "INSERT INTO users(email, name) VALUES ($1, $2)", a, 2, NULL);
        if (r == SL_EUNIQUE)
            printf("%s: already taken (%s)\n", emails[i], sl_db_errmsg()); /* an HTTP 409 */
        else if (r < 0)
            rc = r;
    }

    /* A transaction bound to a 2 s deadline: if it passes, the statement stops and commit
     * rolls back. */
    sl_ctx *ctx = NULL;
    sl_tx *tx = NULL;
    if (rc == 0) rc = sl_ctx_with_timeout(NULL, SL_SEC(2), &ctx);
    if (rc == 0) rc = sl_db_begin(db, ctx, &tx);
    if (rc == 0) {
        sl_tx_exec(tx, "UPDATE users SET name = $1 WHERE email = $2",
                   (sl_db_arg[]){SL_DB_TEXT("Ada"), SL_DB_TEXT("ada@example.com")}, 2, NULL);
        rc = sl_tx_commit(tx);
    }
    sl_ctx_release(ctx);

    sl_rows *r = NULL;
    if (rc == 0)
        rc = sl_db_query(db, NULL, "SELECT id, email, name FROM users ORDER BY id", NULL, 0, &r);
    while (rc == 0 && sl_rows_next(r))
        printf("%lld %s %s\n", (long long)sl_rows_int64(r, 0), sl_rows_text(r, 1),
               sl_rows_text(r, 2));
    sl_rows_free(r);
    if (rc < 0) fprintf(stderr, "error: %s: %s\n", sl_strerror(rc), sl_db_errmsg());
    sl_db_close(db);
    return rc < 0;
}
