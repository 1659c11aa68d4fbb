/* The demo's HTTP handlers. Each one shows one pattern of the Go seed:
 *
 *   POST /users        (task) validate JSON -> store in an sl_map -> queue the welcome e-mail on
 *                      the job pool (waiting at most 1 s for room, never on the handler pool's
 *                      own threads' behalf beyond that) -> 201 + Location
 *   GET  /users/{id}   (inline) a map read: no lock shared with other shards, never blocks;
 *                      (task) with --db, a read of the users table
 *   POST /webhooks     (inline) try-submit a delivery (webhook.c) -> 202, or 503 + Retry-After
 *                      from the pool's drain rate
 *   POST /webhooks/receiver (inline, webhook.c) the default delivery target: logs and counts
 *   GET  /search?q=    (pooled) slow work that waits on the request ctx: a client that goes
 *                      away stops it at the next step
 *   POST /batch        (task) sl_group fan-out with a limit; the first error cancels the rest
 *                      and decides the answer; results come back in input order
 *   GET  /healthz, GET /metrics (inline)
 *
 * Handlers copy what must outlive them (job arguments) and never keep request views. */
#include <ctype.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "demo.h"
#include "routes.h"

static void send_json(sl_resp *resp, int status, json_t *o)
{
    sl_json_write_new(resp, status, o); /* takes o; NULL (json_pack failed) answers 500 */
}

/* ---- users --------------------------------------------------------------------------------- */

void demo_create_user(sl_req *req, sl_resp *resp, void *arg)
{
    demo_app *app = arg;
    size_t len;
    const void *body = sl_req_body(req, &len);
    if (len > app->cfg.users_max_body) { /* the route's limit answers first; this is a backstop */
        sl_resp_error(resp, 413, "body too large");
        return;
    }
    demo_user u;
    char err[160];
    if (demo_user_parse(body, len, &u, err, sizeof err) < 0) {
        sl_resp_error(resp, 400, err);
        return;
    }
    int cr = app->db ? demo_db_user_create(app, &u, sl_req_ctx(req)) : demo_user_create(app, &u);
    if (cr == SL_EUNIQUE) {
        sl_resp_error(resp, 409, "e-mail already registered");
        return;
    }
    if (cr == SL_EFULL) { /* the in-memory store is a bounded cache: full is not an error of ours */
        sl_resp_error(resp, 507, "user store full");
        return;
    }
    if (cr < 0) {
        sl_resp_error(resp, cr == SL_EUNAVAIL || cr == SL_ECONNLOST ? 503 : 500,
                      "could not store the user");
        return;
    }
    /* The e-mail job gets its own copy of what it needs and the pool's ctx, never this
     * request's: the request ends with the response. We wait for room at most 1 s. */
    sl_ctx *wait = NULL;
    int rc = sl_ctx_with_timeout(sl_req_ctx(req), SL_SEC(1), &wait);
    if (rc == 0) rc = demo_jobs_welcome(app, &u, wait);
    sl_ctx_release(wait);
    if (rc < 0) {
        /* The user exists; its e-mail will not be sent. Never silently: counted (in /metrics
         * as sluice_demo_jobs_not_queued and in the shutdown summary) and logged as an
         * error with the user's id, so it can be sent again by hand. */
        atomic_fetch_add(&app->jobs_not_queued, 1);
        sl_log_error(app->log, "welcome e-mail not queued", SL_A_INT("user_id", u.id),
                     SL_A_STR("email", u.email), SL_A_ERR("err", rc));
    }
    char *s = demo_user_json(&u);
    json_t *o = s ? json_loads(s, 0, NULL) : NULL;
    free(s);
    if (o) json_object_set_new(o, "welcome_email", json_string(rc == 0 ? "queued" : "not queued"));
    char loc[40];
    snprintf(loc, sizeof loc, "/users/%lld", (long long)u.id);
    sl_resp_set_header(resp, "Location", loc);
    send_json(resp, 201, o);
}

void demo_get_user(sl_req *req, sl_resp *resp, void *arg)
{
    demo_app *app = arg;
    size_t n;
    const char *id = sl_req_path_value(req, "id", &n);
    demo_user u;
    int gr = !id       ? SL_ENOENT
             : app->db ? demo_db_user_get(app, id, n, &u, sl_req_ctx(req))
                       : demo_user_get(app, id, n, &u);
    if (gr < 0) {
        if (gr == SL_ENOENT)
            sl_resp_error(resp, 404, "no such user");
        else
            sl_resp_error(resp, 503, "user store unavailable");
        return;
    }
    char *s = demo_user_json(&u);
    if (!s) {
        sl_resp_error(resp, 500, "out of memory");
        return;
    }
    sl_resp_json(resp, 200, s, strlen(s));
    free(s);
}

/* ---- webhooks ------------------------------------------------------------------------------ */

void demo_webhook(sl_req *req, sl_resp *resp, void *arg)
{
    demo_app *app = arg;
    size_t len;
    const void *body = sl_req_body(req, &len);
    char id[SL_POOL_ID_MAX + 1];
    int rc = demo_jobs_webhook(app, body, len, sl_req_ctx(req), id);
    if (rc == SL_EFULL && app->jobs) {
        /* Retry-After: when the queue ahead should have drained, rounded up to a second. The
         * pool's estimate needs completions; cold (none yet) it says 1 s whatever is queued,
         * so take the larger of it and rounds of the workers at the job time: the attempts'
         * median once sampled, else the attempt deadline (the most one delivery may take). */
        int64_t ns = sl_pool_retry_after_ns(app->jobs);
        sl_pool_stats st;
        sl_pool_stats_get(app->jobs, &st);
        int64_t job = st.run_time_p50_ns > 0 ? st.run_time_p50_ns : app->cfg.webhook_timeout_ns;
        uint64_t w = st.workers > 0 ? (uint64_t)st.workers : 1;
        int64_t drain = (int64_t)((st.queued + st.running + w - 1) / w) * job;
        if (drain > ns) ns = drain;
        char ra[24];
        snprintf(ra, sizeof ra, "%lld", (long long)((ns + SL_SEC(1) - 1) / SL_SEC(1)));
        sl_resp_set_header(resp, "Retry-After", ra);
        sl_resp_error(resp, 503, "job queue full, retry later");
        return;
    }
    if (rc < 0) {
        /* Closed, or (--redis) Redis down or too slow: the job was not taken, retry later. */
        bool later = rc == SL_ECLOSED || rc == SL_EUNAVAIL || rc == SL_EREDIS ||
                     rc == SL_ETIMEDOUT || rc == SL_ECANCELED || rc == SL_ESHUTDOWN;
        if (later) sl_resp_set_header(resp, "Retry-After", "1"); /* every 503 says when */
        sl_resp_error(resp, later ? 503 : 500, sl_strerror(rc));
        return;
    }
    send_json(resp, 202, json_pack("{s:s, s:s}", "job_id", id, "status", "queued"));
}

/* ---- search -------------------------------------------------------------------------------- */

void demo_search(sl_req *req, sl_resp *resp, void *arg)
{
    demo_app *app = arg;
    size_t qlen;
    const char *q = sl_req_query_value(req, "q", &qlen);
    if (!q || qlen == 0) {
        sl_resp_error(resp, 400, "missing query parameter q");
        return;
    }
    sl_ctx *ctx = sl_req_ctx(req);
    int64_t start = sl_mono_ns();
    sl_log_info(app->log, "search started", SL_A_STR("request_id", sl_req_request_id(req)));
    /* The work is ten steps; each waits on the request ctx, as a real backend call would take
     * it. A done ctx means the client left (or the route's deadline passed): stop now. */
    const int steps = 10;
    for (int i = 0; i < steps; i++) {
        int rc = sl_ctx_wait_for(ctx, app->cfg.search_ns / steps);
        if (rc != SL_EAGAIN) {
            atomic_fetch_add(&app->searches_stopped, 1);
            sl_log_info(app->log, "search stopped", SL_A_ERR("reason", rc), SL_A_INT("step", i),
                        SL_A_INT("of", steps), SL_A_DUR("after", sl_mono_ns() - start));
            /* Nobody reads a 499 (the client left) but metrics and the access log do, as nginx
             * logs a client that closed. The route's deadline and a shutdown (SL_ESHUTDOWN)
             * are the server's doing: 503. */
            sl_resp_error(resp, rc == SL_ECANCELED ? 499 : 503, sl_strerror(rc));
            return;
        }
    }
    json_t *results = json_array();
    for (int i = 1; i <= 3; i++) {
        char t[200];
        snprintf(t, sizeof t, "result %d for %.*s", i, (int)(qlen > 150 ? 150 : qlen), q);
        json_array_append_new(results, json_pack("{s:i, s:s}", "rank", i, "title", t));
    }
    send_json(resp, 200,
              json_pack("{s:s%, s:o, s:I}", "q", q, qlen, "results", results, "took_ms",
                        (json_int_t)((sl_mono_ns() - start) / 1000000)));
}

/* ---- batch --------------------------------------------------------------------------------- */

typedef struct batch_item {
    const char *text; /* into the parsed document, alive until the handler returns */
    size_t len, index;
    int64_t work_ns;
    char *result;        /* malloc'd on success */
    _Atomic long *first; /* index of the first failure, -1 while none */
} batch_item;

/* One item's work: wait (on the group's ctx, so a failure elsewhere stops us), then "process".
 * Items named "fail" fail permanently (422), "fail-upstream" as an unavailable upstream (502). */
static int batch_task(sl_ctx *ctx, void *arg)
{
    batch_item *it = arg;
    int rc = it->work_ns > 0 ? sl_ctx_wait_for(ctx, it->work_ns) : SL_EAGAIN;
    if (rc != SL_EAGAIN) return rc;
    if (it->len == 4 && !memcmp(it->text, "fail", 4))
        rc = SL_EPERMANENT;
    else if (it->len == 13 && !memcmp(it->text, "fail-upstream", 13))
        rc = SL_EUNAVAIL;
    if (rc != SL_EAGAIN) {
        long none = -1;
        atomic_compare_exchange_strong(it->first, &none, (long)it->index);
        return rc;
    }
    it->result = malloc(it->len + 1);
    if (!it->result) return SL_ENOMEM;
    for (size_t i = 0; i < it->len; i++)
        it->result[i] = (char)toupper((unsigned char)it->text[i]);
    it->result[it->len] = '\0';
    return 0;
}

static int batch_items(json_t *root, size_t max, json_t **items, char *err, size_t errlen)
{
    *items = json_is_object(root) ? json_object_get(root, "items") : NULL;
    if (!json_is_array(*items)) {
        snprintf(err, errlen, "want {\"items\":[\"...\", ...]}");
        return SL_EINVAL;
    }
    size_t n = json_array_size(*items);
    if (n == 0 || n > max) {
        snprintf(err, errlen, "want 1..%zu items", max);
        return SL_EINVAL;
    }
    for (size_t i = 0; i < n; i++)
        if (!json_is_string(json_array_get(*items, i))) {
            snprintf(err, errlen, "item %zu is not a string", i);
            return SL_EINVAL;
        }
    return 0;
}

static void batch_answer(sl_resp *resp, batch_item *its, size_t n, int rc, long first)
{
    if (rc == 0) {
        json_t *res = json_array();
        for (size_t i = 0; i < n; i++)
            json_array_append_new(res, json_pack("{s:s%, s:s}", "item", its[i].text, its[i].len,
                                                 "result", its[i].result));
        send_json(resp, 200, json_pack("{s:o}", "results", res));
        return;
    }
    if (first < 0) { /* no item failed: the request itself was cancelled or out of memory */
        sl_resp_error(resp, rc == SL_ENOMEM ? 500 : 503, sl_strerror(rc));
        return;
    }
    int status = rc == SL_EPERMANENT ? 422 : 502;
    char msg[200];
    snprintf(msg, sizeof msg, "item %ld (\"%.*s\") failed: %s", first,
             (int)(its[first].len > 60 ? 60 : its[first].len), its[first].text, sl_strerror(rc));
    send_json(resp, status, json_pack("{s:s, s:i}", "error", msg, "index", (int)first));
}

void demo_batch(sl_req *req, sl_resp *resp, void *arg)
{
    demo_app *app = arg;
    json_t *root, *items;
    char err[200];
    if (sl_json_read_body(req, resp, NULL, &root) < 0) return; /* 400 says where it failed */
    if (batch_items(root, (size_t)app->cfg.batch_max, &items, err, sizeof err) < 0) {
        sl_resp_error(resp, 400, err);
        json_decref(root);
        return;
    }
    size_t n = json_array_size(items);
    batch_item *its = calloc(n, sizeof *its);
    _Atomic long first = -1;
    sl_group *g = NULL;
    int rc = its ? sl_group_new(sl_req_ctx(req), &g) : SL_ENOMEM;
    if (rc == 0) rc = sl_group_set_limit(g, app->cfg.batch_limit);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        json_t *s = json_array_get(items, i);
        its[i] = (batch_item){.text = json_string_value(s),
                              .len = json_string_length(s),
                              .index = i,
                              .work_ns = app->cfg.item_ns,
                              .first = &first};
        /* Waits while `batch_limit` items are in flight (maybe running one itself). */
        rc = sl_group_go(g, batch_task, &its[i]);
    }
    int wrc = g ? sl_group_wait(g) : 0;
    if (rc == 0) rc = wrc;
    batch_answer(resp, its, n, rc, atomic_load(&first));
    sl_group_free(g);
    for (size_t i = 0; its && i < n; i++)
        free(its[i].result);
    free(its);
    json_decref(root);
}

/* ---- health -------------------------------------------------------------------------------- */

/* Saturated: every handler thread busy and requests waiting for one. A load balancer then
 * sends new clients elsewhere (503) instead of queueing them behind a slow route; the numbers
 * say why. */
void demo_healthz(sl_req *req, sl_resp *resp, void *arg)
{
    demo_app *app = arg;
    (void)req;
    sl_pool_stats st = {0};
    if (app->handlers) sl_pool_stats_get(app->handlers, &st);
    bool saturated = st.workers > 0 && st.running >= (uint64_t)st.workers && st.queued > 0;
    if (saturated) sl_resp_set_header(resp, "Retry-After", "1");
    send_json(resp, saturated ? 503 : 200,
              json_pack("{s:s, s:{s:i, s:I, s:I}}", "status", saturated ? "saturated" : "ok",
                        "handlers", "workers", st.workers, "running", (json_int_t)st.running,
                        "queued", (json_int_t)st.queued));
}
