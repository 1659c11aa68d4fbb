/* docs/race.md, race 3: a slice appended from tasks. A /batch handler fans out with sl_group
 * and each task appends its result to one growable array: two tasks write `len` (and maybe
 * realloc the array) at once: ThreadSanitizer reports it. Fixed in slice_fixed.c with sl_chan. */
#include "race_util.h"

typedef struct results { /* BUG: appended from every task, unguarded */
    int *v;
    size_t len, cap;
} results;

typedef struct batch {
    results out;
    sl_wg meet;
} batch;

static int work(sl_ctx *ctx, void *arg)
{
    batch *b = arg;
    if (b->out.len == b->out.cap) {
        b->out.cap = b->out.cap ? 2 * b->out.cap : 1;
        b->out.v = realloc(b->out.v, b->out.cap * sizeof *b->out.v);
    }
    b->out.v[b->out.len++] = 42;
    return rt_meet(&b->meet, ctx);
}

static sl_executor *ex;

static void handle(sl_req *req, sl_resp *resp, void *arg)
{
    batch b = {0};
    sl_group *g;
    sl_wg_init(&b.meet);
    sl_wg_add(&b.meet, 2);
    if (sl_group_new_on(sl_req_ctx(req), ex, &g) != 0) RT_DIE("group_new");
    sl_group_go(g, work, &b);
    sl_group_go(g, work, &b);
    int rc = sl_group_wait(g);
    sl_group_free(g);
    sl_wg_destroy(&b.meet);
    sl_resp_printf(resp, "rc=%d results=%zu\n", rc, b.out.len);
    free(b.out.v);
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
    return strcmp(bodies[0], "rc=0 results=2\n") == 0 ? 0 : 1;
}
