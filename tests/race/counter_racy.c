/* docs/race.md, race 1: a counter on a shared struct, bumped by every request. Two requests
 * run at once on two handler threads; `app.requests++` is a read and a write that nothing
 * orders: ThreadSanitizer reports it. The fix is counter_fixed.c. */
#include "race_util.h"

typedef struct app {
    long requests; /* BUG: written by every handler thread, unguarded */
    sl_wg meet;
} app;

static void handle(sl_req *req, sl_resp *resp, void *arg)
{
    app *a = arg;
    a->requests++;
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
    printf("requests=%ld\n", a.requests);
    return a.requests == 2 ? 0 : 1;
}
