/* docs/race.md, race 2: a map written from handlers. Hits per user are kept in a plain hash
 * table (hand-rolled here; uthash or any unguarded table is the same); two requests insert at
 * once and both write the table's slots and count: ThreadSanitizer reports it. Fixed in
 * map_fixed.c with sl_map_update. */
#include "race_util.h"

typedef struct hits_table { /* BUG: shared by every handler thread, unguarded */
    struct {
        char user[32];
        long hits;
    } slot[16];
    size_t used;
} hits_table;

typedef struct app {
    hits_table hits;
    sl_wg meet;
} app;

static void hit(hits_table *t, const char *user, size_t len)
{
    for (size_t i = 0; i < t->used; i++) {
        if (strlen(t->slot[i].user) == len && memcmp(t->slot[i].user, user, len) == 0) {
            t->slot[i].hits++;
            return;
        }
    }
    if (t->used == 16) return;
    snprintf(t->slot[t->used].user, sizeof t->slot[0].user, "%.*s", (int)len, user);
    t->slot[t->used].hits = 1;
    t->used++;
}

static void handle(sl_req *req, sl_resp *resp, void *arg)
{
    app *a = arg;
    size_t len;
    const char *user = sl_req_path_value(req, "user", &len);
    hit(&a->hits, user, len);
    rt_meet(&a->meet, sl_req_ctx(req));
    sl_resp_printf(resp, "ok\n");
}

int main(void)
{
    static app a;
    sl_wg_init(&a.meet);
    sl_wg_add(&a.meet, 2);
    sl_mux *mux = rt_mux(2);
    sl_mux_handle(mux, "GET /hit/{user}", handle, &a, &(sl_route_opts){.mode = SL_ROUTE_POOLED},
                  NULL, 0);
    int port;
    sl_server *srv = rt_serve(mux, &port);
    char bodies[2][256];
    rt_get_all(port, (const char *[]){"/hit/ada", "/hit/bob"}, 2, bodies);
    rt_stop(srv, mux);
    sl_wg_destroy(&a.meet);
    printf("users=%zu\n", a.hits.used);
    return a.hits.used == 2 ? 0 : 1;
}
