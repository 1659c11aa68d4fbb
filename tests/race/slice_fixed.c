/* docs/race.md, race 3 fixed: the tasks send their results on an sl_chan sized for all of
 * them, and the handler alone collects them into its array after sl_group_wait (Go: results
 * through a channel, or one slot per task). No task touches the array. */
#include "race_util.h"

typedef struct batch {
    sl_chan *out; /* int results; Threads: any */
    sl_wg meet;
} batch;

static int work(sl_ctx *ctx, void *arg)
{
    batch *b = arg;
    int result = 42;
    int rc = sl_chan_send(b->out, &result, ctx);
    if (rc != 0) return rc;
    return rt_meet(&b->meet, ctx);
}

static sl_executor *ex;

static void handle(sl_req *req, sl_resp *resp, void *arg)
{
    enum { TASKS = 2 };
    batch b = {0};
    sl_group *g;
    if (sl_chan_new(sizeof(int), TASKS, &b.out) != 0) RT_DIE("chan_new");
    sl_wg_init(&b.meet);
    sl_wg_add(&b.meet, TASKS);
    if (sl_group_new_on(sl_req_ctx(req), ex, &g) != 0) RT_DIE("group_new");
    for (int i = 0; i < TASKS; i++)
        sl_group_go(g, work, &b);
    int rc = sl_group_wait(g);
    sl_group_free(g);
    int results[TASKS], n = 0, sum = 0;
    while (n < TASKS && sl_chan_try_recv(b.out, &results[n]) == 0)
        sum += results[n++];
    sl_chan_free(b.out);
    sl_wg_destroy(&b.meet);
    sl_resp_printf(resp, "rc=%d results=%d sum=%d\n", rc, n, sum);
}

int main(void)
{
    if (sl_executor_new(2, &ex) != 0) return 2;
    sl_mux *mux = rt_mux(1);
    sl_mux_handle(mux, "GET /batch", handle, NULL, &(sl_route_opts){.mode = SL_ROUTE_POOLED}, NULL,
                  0);
    int port;
    sl_server *srv = rt_serve(mux, &port);
    char bodies[1][256];
    rt_get_all(port, (const char *[]){"/batch"}, 1, bodies);
    rt_stop(srv, mux);
    sl_executor_free(ex);
    printf("%s", bodies[0]);
    return strcmp(bodies[0], "rc=0 results=2 sum=84\n") == 0 ? 0 : 1;
}
