/* JSON in, JSON out: POST /greet {"name":"ada","n":2} answers {"greeting":"hello, ada","n":2}.
 * A malformed body gets a 400 that says where parsing stopped, written by sl_json_read_body.
 *   example_json_service [port]     then: curl -d '{"name":"ada"}' localhost:8082/greet */
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include "sluice/sluice.h"
#include "sluice/json.h"
#include "sluice/mux.h"

static void greet(sl_req *req, sl_resp *resp, void *arg)
{
    json_t *in;
    if (sl_json_read_body(req, resp, &(sl_json_opts){.max_bytes = 4096}, &in) < 0) return;
    const char *name = json_string_value(json_object_get(in, "name"));
    if (!name) {
        sl_resp_error(resp, 422, "\"name\" must be a string");
    } else {
        json_int_t n = json_integer_value(json_object_get(in, "n")); /* 0 when absent */
        sl_json_write_new(resp, 200, json_pack("{s:s+, s:I}", "greeting", "hello, ", name, "n", n));
    }
    json_decref(in);
}

int main(int argc, char **argv)
{
    sl_mux *mux;
    sl_server *srv;
    if (sl_mux_new(NULL, &mux) < 0 || sl_mux_handle_fn(mux, "POST /greet", greet, NULL) < 0)
        return fprintf(stderr, "json_service: %s\n", sl_error_detail()), 1;
    int port = -1;
    if (sl_server_new(&(sl_server_opts){.mux = mux}, &srv) == 0)
        port = sl_server_listen(srv, "127.0.0.1", argc > 1 ? atoi(argv[1]) : 8082);
    if (port < 0) return fprintf(stderr, "json_service: %s\n", sl_error_detail()), 1;
    printf("listening on http://127.0.0.1:%d\n", port);
    fflush(stdout);
    sl_ctx *stop;
    sl_signal_ctx(NULL, (const int[]){SIGINT, SIGTERM}, 2, &stop);
    int rc = sl_server_run(srv, stop);
    sl_signal_ctx_stop(stop);
    sl_server_free(srv);
    sl_mux_free(mux);
    return rc < 0 && rc != SL_ETIMEDOUT;
}
