/* docs/race.md, race 5: a request's data kept after the handler returns. The handler hands a
 * background job the user name as sl_req_path_value returned it: a view into the
 * connection's read buffer, valid only until the handler returns. By the time the job reads
 * it the server has reused that buffer for the next request: ThreadSanitizer reports the job's
 * read against the server's write (and the job would send the e-mail to the wrong name).
 * Fixed in reqdata_fixed.c by copying the name into the job.
 *
 * "By the time" is made certain, not left to timing: the job starts, then waits until the
 * client has had the next response, on a relaxed atomic flag (which orders nothing). */
#include <stdatomic.h>
#include "race_util.h"

typedef struct app {
    sl_pool *jobs;
    _Atomic int started, go; /* relaxed: test scaffolding that must not order anything */
    char sent_to[64];        /* written by the job, read after sl_pool_shutdown */
} app;

typedef struct welcome {
    app *a;
    const char *name; /* BUG: a view into the request, dangling once the handler returns */
    size_t len;
} welcome;

static int send_welcome(sl_ctx *ctx, void *arg)
{
    welcome *w = arg;
    atomic_store_explicit(&w->a->started, 1, memory_order_relaxed);
    rt_wait_relaxed(&w->a->go); /* the e-mail provider is slow today */
    size_t n = w->len < sizeof w->a->sent_to - 1 ? w->len : sizeof w->a->sent_to - 1;
    for (size_t i = 0; i < n; i++) /* the e-mail is addressed to w->name */
        w->a->sent_to[i] = w->name[i];
    w->a->sent_to[n] = 0;
    return 0;
}

static void signup(sl_req *req, sl_resp *resp, void *arg)
{
    app *a = arg;
    welcome *w = malloc(sizeof *w);
    if (!w) return (void)sl_resp_error(resp, 503, "busy");
    w->a = a;
    w->name = sl_req_path_value(req, "name", &w->len);
    sl_pool_job job = {.id = "welcome", .fn = send_welcome, .arg = w, .arg_free = free};
    if (sl_pool_try_submit(a->jobs, &job) != 0) {
        free(w);
        return (void)sl_resp_error(resp, 503, "busy");
    }
    sl_resp_set_status(resp, 202);
}

static void other(sl_req *req, sl_resp *resp, void *arg)
{
    sl_resp_printf(resp, "ok\n");
}

int main(void)
{
    static app a;
    if (sl_pool_new(&(sl_pool_opts){.name = "email", .workers = 1}, &a.jobs) != 0) return 2;
    sl_mux *mux = rt_mux(1);
    sl_mux_handle(mux, "POST /signup/{name}", signup, &a, &(sl_route_opts){.mode = SL_ROUTE_POOLED},
                  NULL, 0);
    sl_mux_handle(mux, "GET /other/{x}", other, NULL, &(sl_route_opts){.mode = SL_ROUTE_POOLED},
                  NULL, 0);
    int port;
    sl_server *srv = rt_serve(mux, &port);
    int fd = rt_connect(port);
    const char *req = "POST /signup/ada HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n";
    if (send(fd, req, strlen(req), MSG_NOSIGNAL) != (ssize_t)strlen(req)) return 2;
    char body[256];
    if (rt_read(fd, body, sizeof body) != 202) return 2;
    if (!rt_wait_relaxed(&a.started)) return 2;
    rt_send_get(fd, "/other/xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
    if (rt_read(fd, body, sizeof body) != 200) return 2; /* the buffer has been reused */
    atomic_store_explicit(&a.go, 1, memory_order_relaxed);
    close(fd);
    sl_ctx *grace;
    sl_ctx_with_timeout(NULL, SL_SEC(10), &grace);
    sl_pool_shutdown(a.jobs, grace, NULL);
    sl_ctx_release(grace);
    sl_pool_free(a.jobs);
    rt_stop(srv, mux);
    printf("welcome sent to \"%s\"\n", a.sent_to);
    return strcmp(a.sent_to, "ada") == 0 ? 0 : 1;
}
