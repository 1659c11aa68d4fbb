/* docs/race.md, race 4 fixed: check and act in one step. A request that misses loads the user
 * and offers it with sl_map_put_if_absent (Go's LoadOrStore): exactly one offer is stored, and
 * a request that loses the race answers with the stored winner instead of its own load, so
 * every request sees the same cached version. */
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
    int miss = sl_map_get(a->cache, "42", 2, &version) == SL_ENOENT;
    rt_meet(&a->meet, sl_req_ctx(req));
    if (miss) {
        long loaded = atomic_fetch_add(&a->loads, 1) + 1;
        int rc = sl_map_put_if_absent(a->cache, "42", 2, &loaded, &version);
        if (rc == 0)
            version = loaded; /* ours was stored; SL_EEXIST: version = the winner */
        else if (rc != SL_EEXIST) {
            sl_resp_error(resp, 503, "cache full");
            return;
        }
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
    printf("answers %s %s, loads=%ld\n", bodies[0], bodies[1], atomic_load(&a.loads));
    return strcmp(bodies[0], bodies[1]) == 0 ? 0 : 1;
}
