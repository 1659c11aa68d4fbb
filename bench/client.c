/* bench_client: requests/s of sl_client with C concurrent callers against one local server,
 * and how many TCP connections that took.
 *
 *   bench_client [--url URL] [--callers 64] [--seconds 3] [--max-conns-per-host 64]
 *
 * Each caller is a thread looping sl_client_get on one shared client for the given time (every
 * caller blocks on its own request; the client's one loop thread runs every transfer). Without
 * --url it starts an in-process sl_server (one reactor) on a free port, which shares the CPU
 * with the callers: scripts/bench_client.sh runs it against a separate server, side by side with
 * Go's http.Client. Prints rows "| name | value | unit | note |". */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/sluice.h"

typedef struct run {
    sl_client *c;
    const char *url;
    int64_t until;
    _Atomic uint64_t ok, errs;
} run;

static void *caller(void *arg)
{
    run *r = arg;
    uint64_t ok = 0, errs = 0;
    while (sl_mono_ns() < r->until) {
        sl_client_resp resp;
        if (sl_client_get(r->c, r->url, &resp, NULL) == 0 && resp.status == 200)
            ok++;
        else
            errs++;
        sl_client_resp_destroy(&resp);
    }
    atomic_fetch_add(&r->ok, ok);
    atomic_fetch_add(&r->errs, errs);
    return NULL;
}

static void handle(sl_req *req, sl_resp *resp, void *arg)
{
    (void)req;
    (void)arg;
    sl_resp_set_body_static(resp, "OK", 2);
}

int main(int argc, char **argv)
{
    const char *url = NULL;
    int callers = 64, seconds = 3, per_host = 64;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--url"))
            url = argv[i + 1];
        else if (!strcmp(argv[i], "--callers"))
            callers = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--seconds"))
            seconds = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--max-conns-per-host"))
            per_host = atoi(argv[i + 1]);
    }
    if (callers < 1 || callers > 4096 || seconds < 1 || seconds > 600 || per_host < 0) {
        fprintf(stderr, "bench_client: bad arguments\n");
        return 2;
    }
    sl_server *srv = NULL;
    char own[64];
    if (!url) {
        sl_server_opts so = {.handler = handle, .reactors = 1};
        int port;
        if (sl_server_new(&so, &srv) < 0 || (port = sl_server_listen(srv, "127.0.0.1", 0)) < 0 ||
            sl_server_serve(srv) < 0) {
            fprintf(stderr, "bench_client: cannot start the server\n");
            return 1;
        }
        snprintf(own, sizeof own, "http://127.0.0.1:%d/", port);
        url = own;
    }
    sl_client_opts o = {.max_conns_per_host = per_host, .max_idle_conns = per_host + 8};
    sl_client *c;
    if (sl_client_new(&o, &c) < 0) return 1;
    run r = {.c = c, .url = url, .until = sl_mono_ns() + SL_SEC(seconds)};
    pthread_t *th = calloc((size_t)callers, sizeof *th);
    int64_t t0 = sl_mono_ns();
    int started = 0;
    for (; started < callers; started++)
        if (pthread_create(&th[started], NULL, caller, &r) != 0) break;
    for (int i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    double secs = (double)(sl_mono_ns() - t0) / 1e9;
    sl_client_stats st;
    sl_client_stats_get(c, &st);
    uint64_t ok = atomic_load(&r.ok), errs = atomic_load(&r.errs);
    const char *where = srv ? "in-process server" : "external server";
    printf("| sl_client GET, %d callers (%s) | %.0f | req/s | %llu errors |\n", started, where,
           (double)ok / secs, (unsigned long long)errs);
    printf("| sl_client TCP connections opened | %llu | conns | per-host limit %d |\n",
           (unsigned long long)st.conns_opened, per_host);
    free(th);
    sl_client_free(c);
    sl_server_free(srv);
    return errs ? 1 : 0;
}
