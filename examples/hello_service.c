/* A complete sluice service in about 40 lines: routes, a task handler that honours its ctx,
 * per-IP rate limiting with 429s, Prometheus metrics, graceful shutdown on Ctrl-C. (README's
 * example; `example_hello_service 0` picks a free port.) */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include "sluice/sluice.h"
#include "sluice/mux.h"
#include "sluice/mw_metrics.h"
#include "sluice/mw_ratelimit.h"

static void hello(sl_req *req, sl_resp *resp, void *arg)
{
    if (sl_ctx_wait_for(sl_req_ctx(req), SL_MS(50)) != SL_EAGAIN) return;      /* client left */
    sl_resp_printf(resp, "hello, %s\n", sl_req_path_value(req, "name", NULL)); /* a C string */
}

int main(int argc, char **argv)
{
    sl_mux *mux;
    sl_server *srv;
    sl_ratelimit *rl;
    sl_mw_ratelimit *lim;
    sl_mw_metrics *met;
    sl_ratelimit_rule ip = {.kind = SL_RATELIMIT_IP, .limit = 10, .burst = 20};
    sl_ratelimit_new(&(sl_ratelimit_config){.rules = &ip, .nrules = 1}, &rl);
    sl_mw_ratelimit_new(&(sl_mw_ratelimit_opts){.policy = rl}, &lim);
    sl_mw_metrics_new(NULL, &met); /* http_requests_total & co. in the default registry */
    sl_mux_new(NULL, &mux);
    sl_mw_metrics_use(met, mux); /* outermost: counts the 429s too */
    sl_mw_ratelimit_use(lim, mux);
    sl_mux_handle_fn(mux, "GET /hello/{name}", hello, NULL);             /* a task */
    sl_mux_handle_inline(mux, "GET /metrics", sl_metrics_handler, NULL); /* on the loop */
    int port = -1; /* argv[1]: the port (0 picks a free one) */
    if (sl_server_new(&(sl_server_opts){.mux = mux}, &srv) == 0)
        port = sl_server_listen(srv, "127.0.0.1", argc > 1 ? atoi(argv[1]) : 8081);
    if (port < 0) { /* sl_error_detail() says what is wrong: "127.0.0.1:8081: address ..." */
        fprintf(stderr, "hello_service: %s\n", sl_error_detail());
        return 1;
    }
    printf("listening on http://127.0.0.1:%d\n", port);
    fflush(stdout);
    sl_ctx *stop;
    sl_signal_ctx(NULL, (const int[]){SIGINT, SIGTERM}, 2, &stop);
    int rc = sl_server_run(srv, stop); /* serve until Ctrl-C, then drain gracefully */
    sl_signal_ctx_stop(stop);
    sl_server_free(srv), sl_mux_free(mux), sl_mw_ratelimit_free(lim), sl_ratelimit_free(rl);
    sl_mw_metrics_free(met);
    return rc < 0 && rc != SL_ETIMEDOUT;
}
