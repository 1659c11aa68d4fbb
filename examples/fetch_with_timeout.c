/* Go's fetchWithTimeout in C: a handler calls an upstream with a deadline derived from its own
 * request ctx, and answers 504 when the upstream is too slow, 502 when it fails. The client is
 * shared by every request (keep-alive, at most 8 connections to the upstream).
 *
 *   ./example_fetch_with_timeout [port [upstream-url]]   then: curl -i http://127.0.0.1:8081/fetch
 *
 * Without an upstream the upstream is this process's own /slow route, which takes 2 s: longer
 * than the 500 ms deadline, so /fetch answers 504 (and /slow sees its client go away). Port 0
 * picks a free port. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include "sluice/sluice.h"
#include "sluice/mux.h"

static sl_client *g_client;
static char g_upstream[512];

static void fetch(sl_req *req, sl_resp *resp, void *arg)
{
    (void)arg;
    sl_ctx *ctx; /* the request's ctx (client gone -> cancelled) plus our own deadline */
    if (sl_ctx_with_timeout(sl_req_ctx(req), SL_MS(500), &ctx) < 0) {
        sl_resp_error(resp, 500, "out of memory");
        return;
    }
    sl_client_resp up;
    int rc = sl_client_get(g_client, g_upstream, &up, ctx);
    sl_ctx_release(ctx);
    if (rc == SL_ETIMEDOUT) {
        sl_resp_error(resp, 504, "upstream too slow");
    } else if (rc < 0) {
        sl_resp_set_status(resp, 502);
        sl_resp_printf(resp, "upstream failed: %s (%s)\n", sl_errname(rc), up.errmsg);
    } else {
        sl_resp_printf(resp, "upstream said %d: %.*s\n", up.status, (int)up.body_len,
                       up.body ? up.body : "");
    }
    sl_client_resp_destroy(&up);
}

static void slow(sl_req *req, sl_resp *resp, void *arg)
{
    (void)arg;
    if (sl_ctx_wait_for(sl_req_ctx(req), SL_SEC(2)) != SL_EAGAIN) return; /* caller left */
    sl_resp_printf(resp, "finally\n");
}

int main(int argc, char **argv)
{
    sl_client_opts co = {.max_conns_per_host = 8, .timeout_ns = SL_SEC(10)};
    sl_mux *mux;
    sl_server *srv;
    if (sl_client_new(&co, &g_client) < 0 || sl_mux_new(NULL, &mux) < 0) return 1;
    /* Task routes (the default): each waits (the upstream, its ctx) by parking its task. */
    sl_mux_handle_fn(mux, "GET /fetch", fetch, NULL);
    sl_mux_handle_fn(mux, "GET /slow", slow, NULL);
    if (sl_server_new(&(sl_server_opts){.mux = mux}, &srv) < 0) return 1;
    int port = sl_server_listen(srv, "127.0.0.1", argc > 1 ? atoi(argv[1]) : 8081);
    if (port < 0) {
        fprintf(stderr, "listen: %s (%s)\n", sl_strerror(port), sl_error_detail());
        return 1;
    }
    if (argc > 2)
        snprintf(g_upstream, sizeof g_upstream, "%s", argv[2]);
    else
        snprintf(g_upstream, sizeof g_upstream, "http://127.0.0.1:%d/slow", port);
    printf("listening on http://127.0.0.1:%d\n", port);
    fflush(stdout);
    sl_ctx *stop; /* Ctrl-C or SIGTERM: graceful shutdown */
    sl_signal_ctx(NULL, (const int[]){SIGINT, SIGTERM}, 2, &stop);
    int rc = sl_server_run(srv, stop);
    sl_signal_ctx_stop(stop);
    sl_server_free(srv);
    sl_mux_free(mux);
    sl_client_free(g_client); /* after the server: no handler is still calling it */
    return rc < 0;
}
