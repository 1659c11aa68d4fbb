/* docs/race.md, race 2 fixed: hits per user live in an sl_map, and each hit is one
 * sl_map_update: the read-modify-write runs under the key's shard lock, so no other thread sees
 * or changes the count in between (a get followed by a put would lose hits). */
#include "race_util.h"

typedef struct app {
    sl_map *hits; /* user -> long; Threads: any */
    sl_wg meet;
} app;

static int add_one(void *value, bool exists, void *arg)
{
    *(long *)value += 1; /* zero when the key is new */
    return SL_MAP_STORE;
}

static void handle(sl_req *req, sl_resp *resp, void *arg)
{
    app *a = arg;
    size_t len;
    const char *user = sl_req_path_value(req, "user", &len);
    if (sl_map_update(a->hits, user, len, add_one, NULL) != 0) {
        sl_resp_error(resp, 503, "out of memory");
        return;
    }
    rt_meet(&a->meet, sl_req_ctx(req));
    sl_resp_printf(resp, "ok\n");
}

int main(void)
{
    static app a;
    if (sl_map_new(&(sl_map_opts){.value_size = sizeof(long)}, &a.hits) != 0) return 2;
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
    long ada = 0, bob = 0;
    sl_map_get(a.hits, "ada", 3, &ada);
    sl_map_get(a.hits, "bob", 3, &bob);
    printf("users=%zu ada=%ld bob=%ld\n", sl_map_size(a.hits), ada, bob);
    int ok = sl_map_size(a.hits) == 2 && ada == 1 && bob == 1;
    sl_map_free(a.hits);
    sl_wg_destroy(&a.meet);
    return ok ? 0 : 1;
}
