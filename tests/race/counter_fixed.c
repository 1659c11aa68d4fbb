/* docs/race.md, race 1 fixed: the shared counter is _Atomic and bumped with one atomic
 * read-modify-write (Go's atomic.Int64.Add). ThreadSanitizer stays silent. */
#include <stdatomic.h>
#include "race_util.h"

typedef struct app {
    _Atomic long requests; /* atomic: any thread */
    sl_wg meet;
} app;

static void handle(sl_req *req, sl_resp *resp, void *arg)
{
    app *a = arg;
    atomic_fetch_add_explicit(&a->requests, 1, memory_order_relaxed);
    rt_meet(&a->meet, sl_req_ctx(req));
    sl_resp_printf(resp, "ok\n");
}

int main(void)
{
    static app a;
    sl_wg_init(&a.meet);
    sl_wg_add(&a.meet, 2);
    sl_mux *mux = rt_mux(2);
    sl_mux_handle(mux, "GET /", handle, &a, &(sl_route_opts){.mode = SL_ROUTE_POOLED}, NULL, 0);
    int port;
    sl_server *srv = rt_serve(mux, &port);
    char bodies[2][256];
    rt_get_all(port, (const char *[]){"/", "/"}, 2, bodies);
    rt_stop(srv, mux);
    sl_wg_destroy(&a.meet);
    printf("requests=%ld\n", atomic_load(&a.requests));
    return atomic_load(&a.requests) == 2 ? 0 : 1;
}
