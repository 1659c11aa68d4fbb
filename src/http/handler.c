/* The mux side of a request: routing, the middleware chain, inline handlers, and the hand-off
 * of pooled handlers to the server's handler pool and back.
 *
 * A pooled request travels like this (all on the owning reactor except step 3):
 *  1. the head is routed; the request (head copy, headers, path values) moves into an sl__preq;
 *     middleware `before` hooks run on it, on the reactor: a stop answers at once;
 *  2. sl_pool_try_submit hands it to the pool — or, when the pool is saturated, the client
 *     gets 503 with Retry-After at once. The connection then stops parsing and reading (so a
 *     later pipelined response cannot overtake this one and rbuf, which the request's views
 *     point into, cannot move) and watches only EPOLLRDHUP: a client that goes away cancels
 *     the request's ctx. The connection's one timer runs the route's timeout; the request's
 *     own timer (wtimer) runs the write timeout while the connection's output is stalled (a
 *     client that stops reading a stream or earlier pipelined responses): on expiry the
 *     connection closes as for a client gone;
 *  3. a handler thread runs the handler, then posts the done task to the reactor (stream chunks
 *     are posted before it, from the same thread, so they arrive first);
 *  4. the done task queues the response (unless a 503 already went out at the timeout), runs
 *     the after hooks innermost first, frees the request, and resumes the connection, which
 *     goes on with any pipelined request already buffered.
 * The connection is never freed while a pooled request is in flight: a close (peer gone, write
 * error) only cancels the ctx and marks it; the done task completes the close. Shutdown keeps
 * that true: the server shuts the pool down (every done task posted) before stopping reactors,
 * and a reactor runs posted tasks in order, so every done task runs before the stop task.
 *
 * A task route (SL_ROUTE_TASK, the default) travels the same way; only steps 1 and 3 differ:
 * instead of a pool job, the request gets its own task, spawned on the connection's own loop
 * (the server's loops are its runtime's: a push on the local run queue), which runs the before
 * hooks and then the handler (their waits park the task, not a thread) and hands back the same
 * done task: queued locally (sl__reactor_post_local: run by the scheduler right after the
 * task's last switch, no eventfd) when it finished on that loop, posted when an idle loop had
 * stolen it. (A request with a body takes two tasks when its route has before hooks: one for
 * the hooks before the body is read, one for the handler after: sl__mux_early.) The headers
 * the hooks set are copied (keep_mw_headers) for the 503 the loop may
 * send at the route timeout while the task still runs. The server
 * counts task requests in flight (ntask, bounded by max_task_requests: past it 503); shutdown
 * waits for that count to reach 0 after cancelling the root ctx, the analogue of shutting the
 * pool down, so again every done task is posted (or run) before the server leaves its loops. A
 * streaming task that is over the high-water mark parks its task (sl__task_park) instead of its
 * thread. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "sluice/clock.h"
#include "sluice/error.h"
#include "http/http_int.h"
#include "task/task_int.h"

#define PREQ_OF_TASK(t)  ((sl__preq *)((char *)(t)-offsetof(sl__preq, done_task)))
#define CONN_OF_TIMER(p) ((sl__conn *)((char *)(p)-offsetof(sl__conn, timer)))
/* Unsent bytes of one streaming response above which sl_resp_stream_write waits. */
#define STREAM_HIGH_WATER (256u * 1024u)

static int route(sl__worker *w, const sl_http_req_head *h, size_t path_len)
{
    return sl_router_match(w->srv->mux->router, h->method, h->method_len, h->path, path_len, &w->m,
                           w->scratch, w->scratch_len);
}

static size_t path_len_of(const sl_http_req_head *h)
{
    const char *q = memchr(h->path, '?', h->path_len);
    return q ? (size_t)(q - h->path) : h->path_len;
}

uint64_t sl__mux_body_limit(sl__worker *w, const sl_http_req_head *h)
{
    if (route(w, h, path_len_of(h)) != 200) return 0;
    const sl__route *rt = w->m.handler;
    return rt->max_body;
}

/* The mux's own answers for requests no route takes. */
static void unmatched(sl_req *req, sl_resp *resp, int st)
{
    const sl_route_match *m = req->m;
    switch (st) {
    case 301: {
        size_t n = m->location_len + (req->query ? req->query_len + 1 : 0);
        char *loc = sl_req_alloc(req, n + 1);
        if (!loc) {
            sl_resp_error(resp, 500, "out of memory");
            return;
        }
        memcpy(loc, m->location, m->location_len);
        if (req->query) {
            loc[m->location_len] = '?';
            memcpy(loc + m->location_len + 1, req->query, req->query_len);
        }
        loc[n] = '\0';
        sl_resp_set_status(resp, 301);
        sl_resp_set_header(resp, "Location", loc);
        return;
    }
    case 405: {
        char allow[256];
        size_t n = m->allow_len < sizeof allow - 1 ? m->allow_len : sizeof allow - 1;
        memcpy(allow, m->allow, n);
        allow[n] = '\0';
        sl_resp_set_header(resp, "Allow", allow);
        sl_resp_error(resp, 405, "method not allowed");
        return;
    }
    case 404: sl_resp_error(resp, 404, "not found"); return;
    default:
        sl_resp_error(resp, st == SL_EINVAL ? 400 : 500,
                      st == SL_EINVAL ? "bad path" : "routing failed");
    }
}

/* The i-th middleware of req's chain: the mux's, then its route's (sl_route_opts.middleware). */
static const sl_middleware *mw_at(const sl_mux *mux, const sl_req *req, size_t i)
{
    return i < mux->nmw ? &mux->mw[i] : &req->rt->mw[i - mux->nmw];
}

/* Runs the before hooks in order. Returns true when one stopped the chain. */
static bool run_before(const sl_mux *mux, sl_req *req, sl_resp *resp)
{
    size_t n = mux->nmw + (req->rt ? req->rt->nmw : 0);
    for (size_t i = 0; i < n; i++) {
        const sl_middleware *mw = mw_at(mux, req, i);
        req->nmw = (uint32_t)i + 1;
        if (mw->before && mw->before(req, resp, mw->arg) == SL_MW_STOP) return true;
    }
    return false;
}

/* Whether a request on route rt has a before hook to run. */
static bool has_before(const sl_mux *mux, const sl__route *rt)
{
    for (size_t i = 0; i < mux->nmw; i++)
        if (mux->mw[i].before) return true;
    for (size_t i = 0; i < rt->nmw; i++)
        if (rt->mw[i].before) return true;
    return false;
}

/* Runs the after hooks of the middleware whose before hook ran, innermost first. A task request
 * answered before its task ran its hooks (max_task_requests, shed, shutdown, a body that never
 * came) ran none: the middleware with no before hook (an access log) still see it. */
void sl__mux_finish(sl_req *req, const sl_resp *resp)
{
    const sl_mux *mux = req->c->w->srv->mux;
    req->may_wait = false; /* after hooks run on the reactor */
    bool observers = req->hooks_deferred;
    size_t n = observers ? mux->nmw + (req->rt ? req->rt->nmw : 0) : req->nmw;
    for (size_t i = n; i-- > 0;) {
        const sl_middleware *mw = mw_at(mux, req, i);
        if (mw->after && (!observers || !mw->before)) mw->after(req, resp, mw->arg);
    }
    sl__req_end(req);
}

/* Keeps a copy of the headers the before hooks set (in the request's arena, under p->mu) for
 * the route-timeout 503, which replaces whatever the handler builds but keeps these (RateLimit,
 * X-Request-Id, CORS). The loop thread reads the copy while the handler writes p->resp. */
static void keep_mw_headers(sl__preq *p)
{
    size_t n = p->resp.hlen;
    if (n == p->mw_hlen && (!n || memcmp(p->mw_hdrs, p->resp.hdrs, n) == 0)) return;
    char *d = n ? sl_req_alloc(&p->req, n) : NULL;
    if (n && !d) return; /* no memory: the 503 goes with the headers kept before */
    if (n) memcpy(d, p->resp.hdrs, n);
    pthread_mutex_lock(&p->mu);
    p->mw_hdrs = d;
    p->mw_hlen = n;
    pthread_mutex_unlock(&p->mu);
}

/* The route-timeout 503 on rp, with the middleware headers hdrs[0..n). Loop thread. */
static void timeout_503(sl_resp *rp, const char *hdrs, size_t n)
{
    sl__resp_reset(rp);
    if (n && rp->hcap < n) {
        char *nb = realloc(rp->hdrs, n);
        if (!nb) n = 0; /* no memory: the 503 without them */
        if (nb) {
            rp->hdrs = nb;
            rp->hcap = n;
        }
    }
    if (n) memcpy(rp->hdrs, hdrs, n);
    rp->hlen = n;
    sl_resp_error(rp, 503, "handler timeout");
}

/* A task route's before hooks, in its task: they may park (sl_req_ctx(req) is set, with the
 * route deadline). Returns true when one stopped the chain. */
static bool task_before(sl__preq *p)
{
    const sl_mux *mux = p->c->w->srv->mux;
    sl_req *req = &p->req;
    size_t n = mux->nmw + req->rt->nmw;
    req->hooks_deferred = false;
    for (size_t i = 0; i < n; i++) {
        const sl_middleware *mw = mw_at(mux, req, i);
        req->nmw = (uint32_t)i + 1;
        if (!mw->before) continue;
        bool stop = mw->before(req, &p->resp, mw->arg) == SL_MW_STOP;
        keep_mw_headers(p);
        if (stop) return true;
    }
    return false;
}

static void on_early_passed(sl__reactor *r, sl__task *t);

/* A started task request: its before hooks, then (unless one stopped: its response is sent as a
 * handler's is) the handler. */
static void task_handle(sl__preq *p)
{
    if (p->req.hooks_deferred && task_before(p)) return;
    /* A hook that parked until the client left, the deadline or shutdown: the handler is not
     * started (the client gets 499 / 503, never an empty 200). */
    if (sl_ctx_done(p->req.ctx))
        p->ran = false;
    else if (p->early_hooks)
        p->done_task.fn = on_early_passed; /* the body next, then a task for the handler */
    else
        p->req.rt->fn(&p->req, &p->resp, p->req.rt->arg);
}

/* ---- pooled requests --------------------------------------------------------------------- */

/* Each worker keeps up to PREQ_CACHE free requests whose trailing storage (header array and
 * path values) is PREQ_TAIL bytes: a task or pooled request then costs no malloc, no free and
 * no mutex/cond setup (they stay initialized in the cache). Larger requests are allocated to
 * size and freed. Only the worker's loop thread allocates and frees them. Off under ASan, so
 * a use after free of a request is still caught there. */
#if defined(SLUICE_ASAN)
#define PREQ_CACHE 0
#else
#define PREQ_CACHE 256
#endif
#define PREQ_TAIL (32 * sizeof(sl_http_header) + 512)

static void preq_destroy(sl__preq *p)
{
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

static void preq_free(sl__preq *p)
{
    sl__worker *w = p->c->w;
    sl__timer_stop(&p->wtimer);
    if (p->client_counted) sl__iptab_release(&w->srv->pooled_ip, &p->c->ipk);
    if (p->hook) sl_ctx_hook_stop(p->hook);
    sl__req_end(&p->req);
    sl__resp_release(&p->resp);
    if (p->cacheable && w->npreq_cache < PREQ_CACHE) {
        p->c = (sl__conn *)(void *)w->preq_cache;
        w->preq_cache = p;
        w->npreq_cache++;
        return;
    }
    preq_destroy(p);
}

void sl__preq_cache_free(sl__worker *w)
{
    while (w->preq_cache) {
        sl__preq *p = w->preq_cache;
        w->preq_cache = (sl__preq *)(void *)p->c;
        preq_destroy(p);
    }
    w->npreq_cache = 0;
}

/* Copies the routed request out of the worker's shared scratch (head, headers, match) into
 * its own allocation; the views keep pointing into the connection's rbuf. */
static sl__preq *preq_new(sl__conn *c, const sl_req *req)
{
    sl__worker *w = c->w;
    const sl_http_req_head *h = req->h;
    size_t vbytes = 0;
    for (size_t i = 0; i < w->m.nparams; i++)
        vbytes += w->m.params[i].value_len + 1; /* values stay NUL-terminated */
    size_t hb = h->num_headers * sizeof(sl_http_header);
    bool cacheable = PREQ_CACHE > 0 && hb + vbytes <= PREQ_TAIL;
    sl__preq *p = NULL;
    if (cacheable && w->preq_cache) {
        p = w->preq_cache;
        w->preq_cache = (sl__preq *)(void *)p->c;
        w->npreq_cache--;
    } else {
        p = malloc(sizeof *p + (cacheable ? PREQ_TAIL : hb + vbytes));
        if (!p) return NULL;
        if (pthread_mutex_init(&p->mu, NULL) != 0) {
            free(p);
            return NULL;
        }
        pthread_cond_init(&p->cv, NULL);
    }
    /* req, resp, head and m are all assigned below: clear only the rest (mu and cv excluded). */
    _Static_assert(offsetof(sl__preq, answered) > offsetof(sl__preq, m) &&
                       offsetof(sl__preq, m) > offsetof(sl__preq, req),
                   "sl__preq: the fields preq_new assigns come before `answered`");
    p->done_task = (sl__task){0};
    memset(&p->answered, 0, offsetof(sl__preq, mu) - offsetof(sl__preq, answered));
    p->cacheable = cacheable;
    p->c = c;
    p->head = *h;
    p->head.headers = (sl_http_header *)(void *)(p + 1);
    if (hb) memcpy(p->head.headers, h->headers, hb);
    p->m = w->m;
    char *vs = (char *)(p + 1) + hb;
    for (size_t i = 0; i < p->m.nparams; i++) {
        sl_route_param *pr = &p->m.params[i];
        memcpy(vs, pr->value, pr->value_len + 1);
        pr->value = vs;
        vs += pr->value_len + 1;
    }
    p->m.location = p->m.allow = NULL;
    p->req = *req;
    p->req.h = &p->head;
    p->req.m = &p->m;
    p->head_method = sl__http_is_head(h);
    sl__resp_init(&p->resp);
    p->resp.p = p;
    return p;
}

static int run_pooled(sl_ctx *pool_ctx, void *arg)
{
    sl__preq *p = arg;
    (void)pool_ctx; /* the request has its own ctx (client gone, route deadline, shutdown) */
    /* A request whose client left (or whose server is shutting down) before a thread was free
     * is not worth starting. */
    /* The root too: a shutdown cancels the root first and the request ctxs one by one, so a
     * handler woken by that cancel may pop this request before its own ctx is marked. */
    sl_server *srv = p->c->w->srv;
    int64_t start = sl_mono_ns();
    if (srv->queue_wait_ns > 0 && start - p->queued_ns > srv->queue_wait_ns) {
        p->shed = true; /* its client has waited long enough: a quick 503 serves it better */
    } else if (!sl_ctx_done(p->req.ctx) && !sl_ctx_done(srv->root)) {
        p->ran = true;
        p->req.rt->fn(&p->req, &p->resp, p->req.rt->arg);
        /* The mean run time for Retry-After: an EWMA (1/8); racy by design between handler
         * threads (a lost update loses one sample). */
        int64_t d = sl_mono_ns() - start;
        int64_t m = atomic_load_explicit(&srv->run_ewma_ns, memory_order_relaxed);
        atomic_store_explicit(&srv->run_ewma_ns, m ? m + (d - m) / 8 : d, memory_order_relaxed);
    }
    sl__reactor_post(p->c->w->r, &p->done_task);
    return 0;
}

/* ---- task routes ------------------------------------------------------------------------- */

/* One task request fewer in flight. Shutdown waits under srv->mu for ntask to reach 0 and
 * then frees srv, so a task may touch srv after its decrement only while it holds mu: a
 * decrement that cannot reach 0 is a plain CAS; the one that may is made under mu, with the
 * broadcast (the waiter cannot return before the unlock). */
static void task_leave(sl_server *srv)
{
    int n = atomic_load(&srv->ntask);
    while (n > 1)
        if (atomic_compare_exchange_weak(&srv->ntask, &n, n - 1)) return;
    pthread_mutex_lock(&srv->mu);
    if (atomic_fetch_sub(&srv->ntask, 1) == 1) pthread_cond_broadcast(&srv->cv);
    pthread_mutex_unlock(&srv->mu);
}

/* The body of a task route's task: run_pooled on a task. The handler's waits park the task. */
static void run_task(void *arg)
{
    sl__preq *p = arg;
    sl_server *srv = p->c->w->srv;
    if (srv->queue_wait_ns > 0 && sl_mono_ns() - p->queued_ns > srv->queue_wait_ns)
        p->shed = true; /* its loop was too busy to start it in time */
    else if (!sl_ctx_done(p->req.ctx) && !sl_ctx_done(srv->root)) {
        p->ran = true;
        task_handle(p);
    }
    /* From here p belongs to the loop; srv lives until shutdown has seen ntask reach 0. A
     * task still on its connection's loop (the usual case: it was spawned there and not
     * stolen) queues its done step for the scheduler to run right after this task switches
     * out, on the loop's stack: no eventfd, no wake. Queued before task_leave, so shutdown,
     * which posts its stop step once ntask is 0, finds it run first. */
    sl__reactor *r = p->c->w->r;
    /* A streaming response posted its chunks (sl__reactor_post): the done step follows them
     * on the same queue, never overtakes them. */
    if (!p->streaming && sl__loop_self() == r)
        sl__reactor_post_local(r, &p->done_task);
    else
        sl__reactor_post(r, &p->done_task);
    task_leave(srv);
}

/* Starts p's task. Returns 0, SL_EFULL (max_task_requests in flight, or no memory for a
 * stack) or SL_ECLOSED (shutting down). */
static int spawn_task(sl_server *srv, sl__preq *p)
{
    int n = atomic_fetch_add(&srv->ntask, 1);
    int rc;
    if (atomic_load(&srv->tasks_closed)) {
        rc = SL_ECLOSED;
    } else if (n >= srv->task_cap) {
        rc = SL_EFULL;
    } else {
        /* On the connection's own loop: from its loop thread, a push on the local run queue. */
        sl_go_opts go = {.name = "http-request", .rt = srv->rt, .loop = p->c->w->loop};
        rc = sl_go_with(&go, run_task, p);
        if (rc == SL_ENOMEM || rc == SL_EINVAL) rc = SL_EFULL;
    }
    if (rc < 0) task_leave(srv);
    return rc;
}

static void answer_now(sl__conn *c, sl__preq *p)
{
    /* Answered before its body was read: nobody will read that body, the connection closes. */
    if (p->early_hooks) p->resp.close = true;
    sl__conn_answer(c, &p->req, &p->resp, p->head_method);
    preq_free(p);
}

static void on_done(sl__reactor *r, sl__task *t);

/* What the after hooks (access log, metrics) see for a response the client did not get: 499,
 * as nginx logs a client that closed its connection first. */
#define STATUS_CLIENT_GONE 499

/* The handler never ran: its ctx was done before a handler thread took it. Never a success
 * status for work that did not happen: a client that left gets nothing (the hooks see 499);
 * otherwise (shutdown) the client gets 503 with Retry-After and the connection closes. */
static void answer_unstarted(sl__conn *c, sl__preq *p)
{
    sl__resp_reset(&p->resp);
    if (c->peer_gone) {
        sl_resp_set_status(&p->resp, STATUS_CLIENT_GONE);
        sl__mux_finish(&p->req, &p->resp);
        preq_free(p);
        return;
    }
    sl__resp_retry_after(&p->resp, p->shed ? sl__server_retry_after_s(c->w->srv) : 1);
    if (p->shed) { /* the connection stays usable */
        sl_resp_error(&p->resp, 503, "server busy: waited too long for a handler");
    } else {
        int err = sl_ctx_err(p->req.ctx);
        sl_resp_error(&p->resp, 503,
                      err == SL_ESHUTDOWN   ? "shutting down"
                      : err == SL_ETIMEDOUT ? "handler timeout"
                                            : "not started");
        p->resp.close = true;
    }
    answer_now(c, p);
}

/* The handler ran but the client half-closed (or left) meanwhile. A client that only shut its
 * write side after a complete request still reads: send the response now, with one write, then
 * close. Whatever could not be written is what the client did not get: the hooks then see 499
 * instead of a success nobody received. Not sl__conn_answer: the write must happen between
 * queuing and the after hooks, which see its outcome. */
static void answer_gone(sl__conn *c, sl__preq *p)
{
    bool v10 = p->head.version_minor == 0;
    bool sent = false;
    if (sl__conn_queue_resp(c, &p->resp, p->head_method, false, v10) == 0) {
        bool progress = false;
        sent = sl__conn_flush(c, &progress) == 0 && !c->want_out;
    }
    if (sent) {
        /* Read what the client sent after its request before the close: unread input would
         * make the kernel answer with a reset that can destroy the response in flight. */
        char sink[1024];
        for (int i = 0; i < 8 && read(c->io.fd, sink, sizeof sink) > 0; i++) {
        }
    } else {
        p->resp.status = STATUS_CLIENT_GONE; /* the bytes (if any) were queued already */
        p->resp.touched = true;
    }
    sl__mux_finish(&p->req, &p->resp);
    preq_free(p);
}

/* Hands p (its before hooks passed) to the handler pool, or to a new task (task routes). */
static void submit_pooled(sl__conn *c, sl__preq *p)
{
    sl__worker *w = c->w;
    sl_server *srv = w->srv;
    if (!sl_req_ctx(&p->req)) {
        sl_resp_error(&p->resp, 503, "out of memory");
        answer_now(c, p);
        return;
    }
    /* One client may not hold every handler thread (and the queue before them). */
    if (srv->pooled_cap > 0 && c->ip_counted && !p->client_counted) {
        if (!sl__iptab_acquire(&srv->pooled_ip, &c->ipk, srv->pooled_cap)) {
            sl__resp_reset(&p->resp);
            sl__resp_retry_after(&p->resp, 1);
            sl_resp_error(&p->resp, 429, "too many requests in progress from your address");
            answer_now(c, p);
            return;
        }
        p->client_counted = true;
    }
    p->queued_ns = sl_mono_ns();
    int rc;
    p->req.may_wait = true; /* from here the request runs off the reactor */
    if (p->req.rt->mode == SL_ROUTE_TASK) {
        rc = spawn_task(srv, p);
    } else {
        keep_mw_headers(p); /* the hooks ran on this thread */
        sl_pool_job job = {.fn = run_pooled, .arg = p, .timeout_ns = -1};
        rc = sl_pool_try_submit(srv->hpool, &job);
        if (rc == 0) {
            p->awaited = true; /* its done step comes back as a post: worth a spin */
            w->r->awaiting++;
        }
    }
    if (rc < 0) {
        p->req.may_wait = false;
        /* Saturated (or shutting down): answer at once, never queue without bound. */
        sl__resp_reset(&p->resp);
        sl__resp_retry_after(&p->resp, sl__server_retry_after_s(srv));
        sl_resp_error(&p->resp, 503, rc == SL_EFULL ? "server busy" : "shutting down");
        answer_now(c, p);
        return;
    }
    c->inflight = p;
    const sl__route *rt = p->req.rt;
    if (rt->tq >= 0) sl__timer_start(w->r, &w->tq_route[rt->tq], &c->timer);
}

static void start_pooled(sl__conn *c, sl_req *req)
{
    sl__worker *w = c->w;
    sl__preq *p = preq_new(c, req);
    if (!p) {
        sl_resp_error(&w->resp, 503, "out of memory");
        w->resp.close = true; /* no hook ran: sl__conn_answer runs none */
        sl__conn_answer(c, req, &w->resp, sl__http_is_head(req->h));
        return;
    }
    p->done_task.fn = on_done;
    /* A task route's hooks run in its task (they may wait); the others' here, on the reactor. */
    p->req.hooks_deferred = p->req.rt->mode == SL_ROUTE_TASK;
    if (!p->req.hooks_deferred && run_before(w->srv->mux, &p->req, &p->resp)) {
        answer_now(c, p);
        return;
    }
    submit_pooled(c, p);
}

/* ---- before the body ---------------------------------------------------------------------- */

/* A request with a body is routed and goes through the before hooks (authentication, rate
 * limits) as soon as its head is parsed, before a byte of the body is read or 100 Continue is
 * sent: a request that will be refused costs no body memory. Its state (values the hooks set,
 * its arena, how many hooks ran) waits in an sl__preq, whose address does not change, until
 * the body is complete; then sl__mux_dispatch_early refreshes the head's views (the read
 * buffer may have moved while the body arrived) and runs the handler, inline or pooled.
 *
 * A task route's hooks may park, so they cannot run here: the request gets a task for its hooks
 * alone (early_hooks) and is in flight while it runs, so the connection reads nothing (the
 * head's views stay valid wherever the task runs). A refusal is answered as any task response
 * and closes the connection (its body is never read). If the hooks let it through,
 * on_early_passed makes it c->early, 100 Continue goes out and the body is read as above; its
 * handler then runs in a second task (task_handle skips the hooks: hooks_deferred is clear). */
bool sl__mux_early(sl__conn *c)
{
    sl__worker *w = c->w;
    const sl_http_req_head *h = &w->head;
    sl_req req = {.h = h, .c = c, .nqp = -1, .start_ns = w->r->now};
    const char *q = memchr(h->path, '?', h->path_len);
    req.path_len = q ? (size_t)(q - h->path) : h->path_len;
    if (q) {
        req.query = q + 1;
        req.query_len = h->path_len - req.path_len - 1;
    }
    int st = route(w, h, req.path_len);
    req.m = &w->m;
    req.rt = st == 200 ? w->m.handler : NULL;
    sl__preq *p = preq_new(c, &req);
    if (!p) return true; /* the request goes the ordinary way, body first */
    p->done_task.fn = on_done;
    /* A task route's hooks run in its task (they may wait): one is spawned for them now, and
     * the body is read only if they let the request through (on_early_passed). */
    p->req.hooks_deferred = p->req.rt && p->req.rt->mode == SL_ROUTE_TASK;
    if (p->req.hooks_deferred && has_before(w->srv->mux, p->req.rt)) {
        p->early_hooks = true;
        submit_pooled(c, p); /* in flight, or answered at once (and closing) */
        if (!c->inflight) sl__stat_inc(&w->st.requests); /* else on_done, or dispatch */
        return false;
    }
    bool stop = !p->req.hooks_deferred && run_before(w->srv->mux, &p->req, &p->resp);
    if (!stop && !p->req.rt) { /* nothing will take the body: answer 404/405/301 now */
        p->req.m = &w->m;      /* Location and Allow are views into the worker's scratch, */
        unmatched(&p->req, &p->resp, st);
        p->req.m = &p->m; /* valid until the next routing: the response copies them */
        stop = true;
    }
    if (!stop) {
        c->early = p;
        return true;
    }
    /* Refused before the body: answer, and close rather than read a body nobody wants. */
    sl__stat_inc(&w->st.requests);
    p->resp.close = true;
    answer_now(c, p);
    return false;
}

/* The same head bytes parsed again (the read buffer may have moved): same header count, new
 * addresses. */
static void refresh_head(sl__preq *p, const sl_http_req_head *h)
{
    sl_http_header *hdrs = p->head.headers;
    p->head = *h;
    p->head.headers = hdrs;
    if (p->head.num_headers) memcpy(hdrs, h->headers, p->head.num_headers * sizeof *hdrs);
}

void sl__mux_early_abort(sl__conn *c, int status, const sl_http_req_head *h)
{
    sl__preq *p = c->early;
    c->early = NULL;
    if (h) { /* else (cannot happen: the same bytes parsed before) no hook sees stale views */
        refresh_head(p, h);
        const char *q = memchr(h->path, '?', h->path_len);
        p->req.path_len = q ? (size_t)(q - h->path) : h->path_len;
        p->req.query = q ? q + 1 : NULL;
        p->req.query_len = q ? h->path_len - p->req.path_len - 1 : 0;
        sl__resp_reset(&p->resp);
        sl_resp_set_status(&p->resp, status);
        sl__mux_finish(&p->req, &p->resp);
    }
    preq_free(p);
}

void sl__mux_dispatch_early(sl__conn *c, const sl_req *fresh)
{
    sl__worker *w = c->w;
    sl__preq *p = c->early;
    c->early = NULL;
    refresh_head(p, fresh->h);
    p->req.body = fresh->body;
    p->req.body_len = fresh->body_len;
    p->req.query = fresh->query;
    p->req.query_len = fresh->query_len;
    p->req.path_len = fresh->path_len;
    if (p->req.rt->mode != SL_ROUTE_INLINE) {
        submit_pooled(c, p);
        return;
    }
    /* Inline: the worker's response, as for any inline request. */
    sl_resp *resp = &w->resp;
    p->req.rt->fn(&p->req, resp, p->req.rt->arg);
    sl__conn_answer(c, &p->req, resp, p->head_method);
    preq_free(p);
}

bool sl__mux_dispatch(sl__conn *c, sl_req *req)
{
    sl__worker *w = c->w;
    sl_mux *mux = w->srv->mux;
    int st = route(w, req->h, req->path_len);
    req->m = &w->m;
    req->rt = st == 200 ? w->m.handler : NULL;
    if (req->rt && req->rt->mode != SL_ROUTE_INLINE) {
        start_pooled(c, req);
        return false;
    }
    sl_resp *resp = &w->resp;
    if (!run_before(mux, req, resp)) {
        if (req->rt)
            req->rt->fn(req, resp, req->rt->arg);
        else
            unmatched(req, resp, st);
    }
    return true;
}

static void stream_end(sl__conn *c, sl__preq *p)
{
    if (p->head_method) return;
    if (p->head.version_minor == 0) {
        c->closing = true; /* HTTP/1.0: the end of the body is the end of the connection */
        return;
    }
    if (sl__conn_wbuf_append(c, "0\r\n\r\n", 5) < 0) c->closing = true;
}

static void on_done(sl__reactor *r, sl__task *t)
{
    sl__preq *p = PREQ_OF_TASK(t);
    sl__conn *c = p->c;
    bool early = p->early_hooks; /* ended before its body was read: the connection closes */
    if (early) sl__stat_inc(&c->w->st.requests);
    if (p->awaited) r->awaiting--;
    c->inflight = NULL;
    sl__timer_stop(&c->timer);
    sl__timer_stop(&p->wtimer);
    /* A handler that returns after its route deadline (it may well, woken by that very
     * deadline, before the reactor's timer fires) gets the same 503 as one still running. */
    bool late = !p->answered && !p->streaming && sl_ctx_err(p->req.ctx) == SL_ETIMEDOUT;
    if (p->answered || late) {
        /* After hooks see what the client got. The copy is read without mu: the task or
         * handler thread that wrote it is done (its done task is running). */
        timeout_503(&p->resp, p->mw_hdrs, p->mw_hlen);
        if (late) {
            answer_now(c, p);
        } else {
            sl__mux_finish(&p->req, &p->resp);
            preq_free(p);
        }
    } else if (p->streaming) {
        /* A stream cut by its deadline must not look complete: no terminating chunk, close. */
        if (sl_ctx_err(p->req.ctx) == SL_ETIMEDOUT)
            c->closing = true;
        else if (!c->peer_gone)
            stream_end(c, p);
        if (!p->head.keep_alive || p->resp.close || c->w->draining) c->closing = true;
        sl__mux_finish(&p->req, &p->resp);
        preq_free(p);
    } else if (!p->ran) {
        answer_unstarted(c, p);
    } else if (c->peer_gone) {
        answer_gone(c, p);
    } else {
        answer_now(c, p);
    }
    if (c->peer_gone) {
        sl__conn_close(c);
        return;
    }
    if (early) c->closing = true;
    sl__conn_drive(c, false);
}

/* A task route's before hooks let its request through before its body was read: the
 * connection reads the body now (as c->early), and sl__mux_dispatch_early spawns the task that
 * runs the handler. If meanwhile the route deadline's 503 went out, the client left or the ctx
 * is done, it ends here as a request whose handler never started. */
static void on_early_passed(sl__reactor *r, sl__task *t)
{
    sl__preq *p = PREQ_OF_TASK(t);
    sl__conn *c = p->c;
    p->done_task.fn = on_done;
    if (p->answered || c->peer_gone || sl_ctx_done(p->req.ctx)) {
        p->ran = false;
        on_done(r, t);
        return;
    }
    c->inflight = NULL;
    sl__timer_stop(&c->timer); /* the route timer: the body's own timers run while it comes */
    sl__timer_stop(&p->wtimer);
    p->early_hooks = false;
    p->req.may_wait = false;
    c->early = p;
    sl__conn_resume_body(c, p->head.expect_continue);
}

/* Wakes whoever waits in sl_resp_stream_write: a handler thread or a task. Under p->mu. */
static void wake_locked(sl__preq *p)
{
    pthread_cond_broadcast(&p->cv);
    if (p->waiter) sl__task_unpark(p->waiter);
}

void sl__preq_timeout(sl__reactor *r, sl__timer *t)
{
    sl__conn *c = CONN_OF_TIMER(t);
    sl__preq *p = c->inflight;
    (void)r;
    if (!p || p->answered || c->peer_gone) return;
    pthread_mutex_lock(&p->mu);
    bool streaming = p->streaming;
    if (!streaming) p->answered = true; /* under mu: stream_begin sees it */
    const char *mh = p->mw_hdrs;        /* in the arena, which lives until p is freed here */
    size_t ml = p->mw_hlen;
    pthread_mutex_unlock(&p->mu);
    if (streaming) return; /* committed: the ctx deadline stops the handler */
    sl__worker *w = c->w;
    timeout_503(&w->resp, mh, ml);
    w->resp.close = p->early_hooks; /* its body was never read */
    /* The request still runs: its after hooks run when it returns (on_done), not here. */
    sl__conn_queue_answer(c, &p->head, &w->resp, p->head_method);
    sl__conn_drive(c, false);
}

void sl__preq_peer_gone(sl__conn *c)
{
    sl__preq *p = c->inflight;
    if (c->peer_gone) return;
    c->peer_gone = true;
    /* Unregister rather than set the interest to 0: epoll reports EPOLLHUP and EPOLLERR
     * whatever the interest, so a reset socket would spin the loop until the handler returns.
     * The close that follows the done task does not unregister twice (io.fn is cleared). */
    sl__io_stop(c->w->r, &c->io);
    sl__timer_stop(&p->wtimer);
    pthread_mutex_lock(&p->mu);
    wake_locked(p);
    pthread_mutex_unlock(&p->mu);
    sl_ctx_cancel(p->req.ctx);
}

void sl__preq_write_watch(sl__conn *c, bool progress)
{
    sl__preq *p = c->inflight;
    if (!c->want_out)
        sl__timer_stop(&p->wtimer);
    else if (progress || !sl__timer_active(&p->wtimer))
        sl__timer_start(c->w->r, &c->w->tq_write_inflight, &p->wtimer);
}

void sl__preq_write_timeout(sl__reactor *r, sl__timer *t)
{
    sl__preq *p = (sl__preq *)(void *)((char *)t - offsetof(sl__preq, wtimer));
    (void)r;
    /* The client stopped reading: close (the request is in flight, so this cancels its ctx, a
     * streaming writer gets the error, and the done task completes the close). */
    sl__conn_close(p->c);
}

/* ---- streaming ---------------------------------------------------------------------------- */

typedef struct smsg {
    sl__task t;
    sl__preq *p;
    bool head; /* the response head (data: formatted by the handler thread) */
    size_t len;
    char data[];
} smsg;

void sl__preq_stream_progress(sl__conn *c)
{
    sl__preq *p = c->inflight;
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    if (p->streaming) {
        size_t un = (size_t)(c->wlen - c->woff) + (c->ext ? c->ext_len - c->ext_off : 0);
        p->stream_unsent = un;
        wake_locked(p);
    }
    pthread_mutex_unlock(&p->mu);
}

static void on_smsg(sl__reactor *r, sl__task *t)
{
    smsg *m = (smsg *)(void *)t;
    sl__preq *p = m->p;
    sl__conn *c = p->c;
    (void)r;
    pthread_mutex_lock(&p->mu);
    p->stream_posted -= m->len;
    pthread_mutex_unlock(&p->mu);
    if (!c->peer_gone && !p->answered) {
        if (sl__conn_wbuf_append(c, m->data, m->len) < 0) sl__preq_peer_gone(c);
    }
    free(m);
    if (!c->peer_gone) sl__conn_drive(c, false); /* flushes, then updates stream_unsent */
}

static smsg *smsg_new(sl__preq *p, size_t cap)
{
    smsg *m = malloc(sizeof *m + cap);
    if (!m) return NULL;
    m->t.fn = on_smsg;
    m->p = p;
    m->len = 0;
    return m;
}

static void wake(void *arg, int err)
{
    sl__preq *p = arg;
    (void)err;
    pthread_mutex_lock(&p->mu);
    wake_locked(p);
    pthread_mutex_unlock(&p->mu);
}

int sl_resp_stream_begin(sl_resp *resp)
{
    sl__preq *p = resp->p;
    if (!p) return SL_EINVAL;
    int err = sl_ctx_err(p->req.ctx);
    if (err) return err;
    pthread_mutex_lock(&p->mu);
    bool bad = p->streaming || p->answered;
    pthread_mutex_unlock(&p->mu);
    if (bad) return SL_EINVAL;
    int st = resp->status;
    size_t cl = strlen(resp->ctype);
    smsg *m = smsg_new(p, 256 + cl + resp->hlen);
    if (!m) return SL_ENOMEM;
    bool v10 = p->head.version_minor == 0;
    bool keep = p->head.keep_alive && !resp->close && !v10;
    char *d = m->data;
    /* Date too (RFC 9110 section 6.6.1), formatted here: the loop's cached one is its own. */
    char date[SL__HTTP_DATE_CAP];
    sl__http_date(date, sl_wall_ns() / SL_SEC(1));
    d += sprintf(d, "HTTP/1.1 %d %s\r\nServer: sluice\r\nDate: %s\r\n", st, sl__http_reason(st),
                 date);
    if (cl) d += sprintf(d, "Content-Type: %s\r\n", resp->ctype);
    if (!v10) d += sprintf(d, "Transfer-Encoding: chunked\r\n");
    if (!keep) d += sprintf(d, "Connection: close\r\n");
    if (resp->hlen) memcpy(d, resp->hdrs, resp->hlen);
    d += resp->hlen;
    d += sprintf(d, "\r\n");
    m->len = (size_t)(d - m->data);
    m->head = true;
    if (!keep) resp->close = true;
    sl_ctx_hook *hook = NULL;
    if (sl_ctx_on_done(p->req.ctx, wake, p, &hook) < 0) {
        free(m);
        return SL_ENOMEM;
    }
    pthread_mutex_lock(&p->mu);
    bad = p->answered; /* the timeout may have fired meanwhile */
    if (!bad) {
        p->streaming = true;
        p->hook = hook;
        p->stream_posted += m->len;
    }
    pthread_mutex_unlock(&p->mu);
    if (bad) {
        sl_ctx_hook_stop(hook);
        free(m);
        return SL_ETIMEDOUT;
    }
    resp->touched = true;
    sl__reactor_post(p->c->w->r, &m->t);
    return 0;
}

int sl_resp_stream_write(sl_resp *resp, const void *data, size_t len)
{
    sl__preq *p = resp->p;
    if (!p) return SL_EINVAL;
    pthread_mutex_lock(&p->mu);
    bool on = p->streaming;
    pthread_mutex_unlock(&p->mu);
    if (!on) return SL_EINVAL;
    if (len == 0) return 0;
    smsg *m = smsg_new(p, len + 32);
    if (!m) return SL_ENOMEM;
    char *d = m->data;
    bool chunked = p->head.version_minor != 0;
    if (!p->head_method) {
        if (chunked) d += sprintf(d, "%zx\r\n", len);
        memcpy(d, data, len);
        d += len;
        if (chunked) d += sprintf(d, "\r\n");
    }
    m->len = (size_t)(d - m->data);
    int err = 0;
    pthread_mutex_lock(&p->mu);
    struct sl_task *self = sl__task_self(); /* a task route: park the task, not its loop */
    while (p->stream_posted + p->stream_unsent > STREAM_HIGH_WATER &&
           !(err = sl_ctx_err(p->req.ctx))) {
        if (self) {
            p->waiter = self;
            pthread_mutex_unlock(&p->mu);
            sl__task_park();
            pthread_mutex_lock(&p->mu);
            p->waiter = NULL;
        } else {
            pthread_cond_wait(&p->cv, &p->mu);
        }
    }
    if (!err) err = sl_ctx_err(p->req.ctx);
    if (!err) p->stream_posted += m->len;
    pthread_mutex_unlock(&p->mu);
    if (err) {
        free(m);
        return err;
    }
    resp->streamed += len;
    sl__reactor_post(p->c->w->r, &m->t);
    return 0;
}
