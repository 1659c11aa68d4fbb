/* docs/race.md, race 4: check-then-act on a cache. Two requests for the same user miss a plain
 * cache entry at once, both load the user and both write the entry: ThreadSanitizer reports
 * the two unordered writes. Fixed in cache_fixed.c (sl_map_put_if_absent). */
#include <stdatomic.h>
#include "race_util.h"

typedef struct app {
    struct { /* BUG: checked and filled by every handler thread, unguarded */
        bool present;
        long version;
    } user42;
    _Atomic long loads; /* how many times the "database" was asked */
    sl_wg meet;
} app;

static long load_user(app *a) /* stands for a database read: each returns the current row */
{
    return atomic_fetch_add(&a->loads, 1) + 1;
}

static void handle(sl_req *req, sl_resp *resp, void *arg)
{
    app *a = arg;
    bool hit = a->user42.present;       /* check */
    rt_meet(&a->meet, sl_req_ctx(req)); /* both requests miss, as under load */
    if (!hit) {
        a->user42.version = load_user(a); /* act */
        a->user42.present = true;
    }
    sl_resp_printf(resp, "%ld", a->user42.version);
}

int main(void)
{
    static app a;
    sl_wg_init(&a.meet);
    sl_wg_add(&a.meet, 2);
    sl_mux *mux = rt_mux(2);
    sl_mux_handle(mux, "GET /users/42", handle, &a, &(sl_route_opts){.mode = SL_ROUTE_POOLED}, NULL,
                  0);
    int port;
    sl_server *srv = rt_serve(mux, &port);
    char bodies[2][256];
    rt_get_all(port, (const char *[]){"/users/42", "/users/42"}, 2, bodies);
    rt_stop(srv, mux);
    sl_wg_destroy(&a.meet);
    printf("answers %s %s, loads=%ld\n", bodies[0], bodies[1], atomic_load(&a.loads));
    return strcmp(bodies[0], bodies[1]) == 0 ? 0 : 1;
}
