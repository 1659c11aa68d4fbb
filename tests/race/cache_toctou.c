/* docs/race.md, what TSan does not catch: the cache of cache_racy.c moved into an sl_map, still
 * check-then-act (sl_map_get, load on a miss, sl_map_put). Every access is now synchronised, so
 * ThreadSanitizer is silent, but the race is still there: two requests miss at once, each
 * loads and stores its own version, and the two answers disagree (the second put silently
 * replaced the first). This program passes when it shows exactly that, with no report. */
#include <stdatomic.h>
#include "race_util.h"

typedef struct app {
    sl_map *cache; /* user id -> version; Threads: any */
    _Atomic long loads;
    sl_wg meet;
} app;

static void handle(sl_req *req, sl_resp *resp, void *arg)
{
    app *a = arg;
    long version;
    int miss = sl_map_get(a->cache, "42", 2, &version) == SL_ENOENT; /* check */
    rt_meet(&a->meet, sl_req_ctx(req));
    if (miss) {
        version = atomic_fetch_add(&a->loads, 1) + 1; /* load */
        sl_map_put(a->cache, "42", 2, &version);      /* act: overwrites the other's */
    }
    sl_resp_printf(resp, "%ld", version);
}

int main(void)
{
    static app a;
    if (sl_map_new(&(sl_map_opts){.value_size = sizeof(long)}, &a.cache) != 0) return 2;
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
    sl_map_free(a.cache);
    sl_wg_destroy(&a.meet);
    printf("answers %s %s, loads=%ld (TSan: nothing to report)\n", bodies[0], bodies[1],
           atomic_load(&a.loads));
    return strcmp(bodies[0], bodies[1]) != 0 && atomic_load(&a.loads) == 2 ? 0 : 1;
}
