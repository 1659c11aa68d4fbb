/* sl_mux: routes (on sl_router), route options and the middleware list, plus the standard
 * middleware (request id, access log).
 *
 * A mux is built on one thread, then frozen when a server takes it (sl__mux_attach sets
 * `busy`): from then on every reactor reads it without locks, which is safe because nothing
 * writes it until the server detaches at free. Per-route timeouts of pooled routes are grouped
 * by value: each distinct value gets one fixed-duration timer queue per reactor (the reactor's
 * timer queues need one duration per queue), so a thousand routes with the same timeout cost
 * one queue. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sluice/clock.h"
#include "sluice/error.h"
#include "base/base_int.h"
#include "http/http_int.h"

int sl_mux_new(const sl_mux_opts *opts, sl_mux **out)
{
    sl_mux_opts o = opts ? *opts : (sl_mux_opts){0};
    if (!out) return sl__fail(SL_EINVAL, "sl_mux_new: out is NULL");
    if (o.handler_workers < 0)
        return sl__fail(SL_EINVAL, "sl_mux_opts.handler_workers is negative (%d)",
                        o.handler_workers);
    if (o.default_timeout_ns < 0)
        return sl__fail(SL_EINVAL, "sl_mux_opts.default_timeout_ns is negative (%lld)",
                        (long long)o.default_timeout_ns);
    if (!o.handler_workers) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        o.handler_workers = 4 * (n > 0 ? (int)(n > 64 ? 64 : n) : 1);
    }
    if (o.max_task_requests < 0)
        return sl__fail(SL_EINVAL, "sl_mux_opts.max_task_requests is negative (%d)",
                        o.max_task_requests);
    if (!o.max_task_requests) o.max_task_requests = 10000;
    if (!o.handler_queue) o.handler_queue = 256;
    if (!o.logger) o.logger = sl_log_default();
    sl_mux *m = calloc(1, sizeof *m);
    if (!m) return SL_ENOMEM;
    if (sl_router_new(&m->router) < 0) {
        free(m);
        return SL_ENOMEM;
    }
    m->o = o;
    atomic_init(&m->busy, false);
    *out = m;
    return 0;
}

void sl_mux_free(sl_mux *mux)
{
    if (!mux) return;
    for (size_t i = 0; i < mux->nroutes; i++) {
        free(mux->routes[i]->name);
        free(mux->routes[i]->mw);
        free(mux->routes[i]);
    }
    free(mux->routes);
    free(mux->mw);
    free(mux->tq_dur);
    sl_router_free(mux->router);
    free(mux);
}

/* Index of the timer queue for a pooled timeout of d ns, adding one if new; -1 on ENOMEM. */
static int tq_index(sl_mux *mux, int64_t d)
{
    for (int i = 0; i < mux->ntq; i++)
        if (mux->tq_dur[i] == d) return i;
    int64_t *nd = realloc(mux->tq_dur, (size_t)(mux->ntq + 1) * sizeof *nd);
    if (!nd) return -1;
    mux->tq_dur = nd;
    nd[mux->ntq] = d;
    return mux->ntq++;
}

/* Records msg as the explanation of rc (err buffer, sl_error_detail, a WARN line). */
static int reject(sl_mux *mux, const char *pattern, int rc, const char *msg, char *err,
                  size_t errlen)
{
    if (err && errlen) snprintf(err, errlen, "%s", msg);
    sl__fail(rc, "%s", msg);
    if (mux)
        sl_log_warn(mux->o.logger, "route rejected", SL_A_STR("pattern", pattern),
                    SL_A_STR("reason", msg), SL_A_ERR("err", rc));
    return rc;
}

static int busy_msg(char *buf, size_t n, const char *what, const char *name)
{
    snprintf(buf, n,
             "%s%s%s: the mux is already used by a server (sl_server_new freezes it): add "
             "routes and middleware before sl_server_new",
             what, name ? " " : "", name ? name : "");
    return SL_EBUSY;
}

int sl_mux_handle(sl_mux *mux, const char *pattern, sl_handler_fn fn, void *arg,
                  const sl_route_opts *ro, char *err, size_t errlen)
{
    char msg[320];
    if (err && errlen) err[0] = '\0';
    if (!mux) return reject(NULL, pattern, SL_EINVAL, "sl_mux_handle: mux is NULL", err, errlen);
    if (!pattern) return reject(mux, "", SL_EINVAL, "sl_mux_handle: pattern is NULL", err, errlen);
    if (!fn) {
        snprintf(msg, sizeof msg, "%s: handler function is NULL", pattern);
        return reject(mux, pattern, SL_EINVAL, msg, err, errlen);
    }
    if (atomic_load(&mux->busy)) {
        int rc = busy_msg(msg, sizeof msg, "route", pattern);
        return reject(mux, pattern, rc, msg, err, errlen);
    }
    sl_route_opts o = ro ? *ro : (sl_route_opts){0};
    if (o.mode != SL_ROUTE_POOLED && o.mode != SL_ROUTE_INLINE && o.mode != SL_ROUTE_TASK) {
        snprintf(msg, sizeof msg, "%s: sl_route_opts.mode %d is not POOLED, INLINE or TASK",
                 pattern, (int)o.mode);
        return reject(mux, pattern, SL_EINVAL, msg, err, errlen);
    }
    for (size_t i = 0; i < o.nmiddleware; i++) {
        if (!o.middleware || (!o.middleware[i].before && !o.middleware[i].after)) {
            snprintf(msg, sizeof msg, "%s: sl_route_opts.middleware[%zu] has no hook", pattern, i);
            return reject(mux, pattern, SL_EINVAL, msg, err, errlen);
        }
    }
    if (mux->nroutes == mux->rcap) {
        size_t cap = mux->rcap ? mux->rcap * 2 : 16;
        sl__route **nr = realloc(mux->routes, cap * sizeof *nr);
        if (!nr) return sl__fail(SL_ENOMEM, "%s: out of memory", pattern);
        mux->routes = nr;
        mux->rcap = cap;
    }
    sl__route *rt = calloc(1, sizeof *rt);
    if (!rt) return sl__fail(SL_ENOMEM, "%s: out of memory", pattern);
    rt->fn = fn;
    rt->arg = arg;
    rt->mode = o.mode;
    rt->timeout_ns = o.timeout_ns ? o.timeout_ns : mux->o.default_timeout_ns;
    rt->max_body = o.max_body_bytes;
    rt->tq = -1;
    rt->name = strdup(o.name ? o.name : pattern);
    rt->mw = o.nmiddleware ? malloc(o.nmiddleware * sizeof *rt->mw) : NULL;
    if (!rt->name || (o.nmiddleware && !rt->mw)) {
        free(rt->name);
        free(rt->mw);
        free(rt);
        return sl__fail(SL_ENOMEM, "%s: out of memory", pattern);
    }
    if (o.nmiddleware) memcpy(rt->mw, o.middleware, o.nmiddleware * sizeof *rt->mw);
    rt->nmw = o.nmiddleware;
    if (rt->mode != SL_ROUTE_INLINE && rt->timeout_ns > 0) {
        rt->tq = tq_index(mux, rt->timeout_ns);
        if (rt->tq < 0) {
            free(rt->name);
            free(rt->mw);
            free(rt);
            return sl__fail(SL_ENOMEM, "%s: out of memory", pattern);
        }
    }
    int rc = sl_router_add(mux->router, pattern, rt, msg, sizeof msg);
    if (rc < 0) {
        /* A timer queue added for this route stays: harmless (an unused queue). */
        free(rt->name);
        free(rt->mw);
        free(rt);
        return reject(mux, pattern, rc, msg, err, errlen);
    }
    mux->routes[mux->nroutes++] = rt;
    if (rt->mode == SL_ROUTE_TASK) mux->ntask_routes++;
    return 0;
}

int sl_mux_handle_fn(sl_mux *mux, const char *pattern, sl_handler_fn fn, void *arg)
{
    return sl_mux_handle(mux, pattern, fn, arg, NULL, NULL, 0);
}

int sl_mux_handle_inline(sl_mux *mux, const char *pattern, sl_handler_fn fn, void *arg)
{
    return sl_mux_handle(mux, pattern, fn, arg, &(sl_route_opts){.mode = SL_ROUTE_INLINE}, NULL, 0);
}

bool sl_mux_has_pattern(const sl_mux *mux, const char *pattern)
{
    return mux && pattern && sl_router_has(mux->router, pattern);
}

int sl_mux_use(sl_mux *mux, const sl_middleware *mw)
{
    char msg[320];
    if (!mux || !mw) return sl__fail(SL_EINVAL, "sl_mux_use: %s is NULL", mux ? "mw" : "mux");
    const char *nm = mw->name ? mw->name : "(unnamed)";
    if (!mw->before && !mw->after)
        return sl__fail(SL_EINVAL, "middleware %s: both .before and .after are NULL", nm);
    if (atomic_load(&mux->busy))
        return sl__fail(busy_msg(msg, sizeof msg, "middleware", nm), "%s", msg);
    if (mux->nmw == mux->mwcap) {
        size_t cap = mux->mwcap ? mux->mwcap * 2 : 8;
        sl_middleware *n = realloc(mux->mw, cap * sizeof *n);
        if (!n) return sl__fail(SL_ENOMEM, "middleware %s: out of memory", nm);
        mux->mw = n;
        mux->mwcap = cap;
    }
    mux->mw[mux->nmw++] = *mw;
    return 0;
}

int sl_mux_use_request_id(sl_mux *mux)
{
    sl_middleware mw;
    sl_mw_request_id(&mw);
    return sl_mux_use(mux, &mw);
}

int sl_mux_use_access_log(sl_mux *mux, sl_logger *lg)
{
    sl_middleware mw;
    sl_mw_access_log(lg, &mw);
    return sl_mux_use(mux, &mw);
}

static int check_one(sl_mux *mux, const sl_middleware *mw)
{
    if (!mw->check) return 0;
    char msg[400] = "";
    int rc = mw->check(mux, mw->arg, msg, sizeof msg);
    if (rc >= 0) return 0;
    const char *nm = mw->name ? mw->name : "-";
    sl_log_error(mux->o.logger, "middleware rejected the routes", SL_A_STR("middleware", nm),
                 SL_A_STR("reason", msg), SL_A_ERR("err", rc));
    return sl__fail(rc, "middleware %s: %s", nm, msg);
}

int sl__mux_attach(sl_mux *mux)
{
    bool expect = false;
    if (!atomic_compare_exchange_strong(&mux->busy, &expect, true))
        return sl__fail(SL_EBUSY, "sl_server_opts.mux is already used by another live server "
                                  "(one mux serves one server at a time)");
    /* The routes are final now: let each middleware check its configuration against them (a
     * rate limit naming "{id}" where the route says "{item}" would otherwise limit nothing). */
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < mux->nmw; i++)
        rc = check_one(mux, &mux->mw[i]);
    for (size_t r = 0; rc == 0 && r < mux->nroutes; r++)
        for (size_t i = 0; rc == 0 && i < mux->routes[r]->nmw; i++)
            rc = check_one(mux, &mux->routes[r]->mw[i]);
    if (rc < 0) atomic_store(&mux->busy, false);
    return rc;
}

void sl__mux_detach(sl_mux *mux)
{
    atomic_store(&mux->busy, false);
}

/* ---- request id ---------------------------------------------------------------------------- */

const char sl__rid_key = 0;

static bool rid_ok(const char *s, size_t n)
{
    if (n == 0 || n > SL_REQUEST_ID_MAX) return false;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                  (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == ':' || ch == '-';
        if (!ok) return false;
    }
    return true;
}

static _Atomic uint64_t rid_seq;

static sl_mw_action rid_before(sl_req *req, sl_resp *resp, void *arg)
{
    (void)arg;
    size_t n;
    const char *in = sl_req_header(req, "X-Request-Id", &n);
    char *id;
    if (in && rid_ok(in, n)) {
        id = sl_req_alloc(req, n + 1);
        if (!id) return SL_MW_NEXT;
        memcpy(id, in, n);
        id[n] = '\0';
    } else {
        /* A process-unique id: a per-process random-ish prefix mixed with a counter through a
         * bijective mixer, so ids do not reveal the request count. */
        static _Atomic uint64_t salt;
        uint64_t s = atomic_load_explicit(&salt, memory_order_relaxed);
        if (!s) {
            uint64_t want = (uint64_t)sl_wall_ns() | 1;
            atomic_compare_exchange_strong(&salt, &s, want);
            s = atomic_load(&salt);
        }
        uint64_t x = atomic_fetch_add_explicit(&rid_seq, 1, memory_order_relaxed) + s;
        x ^= x >> 30;
        x *= 0xbf58476d1ce4e5b9ull;
        x ^= x >> 27;
        x *= 0x94d049bb133111ebull;
        x ^= x >> 31;
        id = sl_req_alloc(req, 17);
        if (!id) return SL_MW_NEXT;
        static const char hex[] = "0123456789abcdef";
        for (int i = 15; i >= 0; i--, x >>= 4)
            id[i] = hex[x & 15];
        id[16] = '\0';
    }
    sl_req_set_value(req, &sl__rid_key, id);
    sl_resp_set_header(resp, "X-Request-Id", id);
    return SL_MW_NEXT;
}

void sl_mw_request_id(sl_middleware *out)
{
    *out = (sl_middleware){.name = "request_id", .before = rid_before};
}

/* ---- access log ---------------------------------------------------------------------------- */

/* A NUL-terminated copy of s[0..n): in buf when it fits, else in the request's arena. */
static const char *dupz(sl_req *req, const char *s, size_t n, char *buf, size_t cap)
{
    char *d = n < cap ? buf : sl_req_alloc(req, n + 1);
    if (!d) return "";
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

static void alog_after(sl_req *req, const sl_resp *resp, void *arg)
{
    sl_logger *lg = arg;
    if (!sl_log_enabled(lg, SL_LOG_INFO)) return;
    size_t ml, pl;
    char mb[16], pb[256];
    const char *m = sl_req_method(req, &ml);
    const char *p = sl_req_path(req, &pl);
    const char *route = sl_req_route_name(req);
    const char *rid = sl_req_request_id(req);
    sl_log_info(lg, "request", SL_A_STR("method", dupz(req, m, ml, mb, sizeof mb)),
                SL_A_STR("path", dupz(req, p, pl, pb, sizeof pb)),
                SL_A_STR("route", route ? route : "-"), SL_A_INT("status", sl_resp_status(resp)),
                SL_A_UINT("bytes", sl_resp_bytes(resp)),
                SL_A_DUR("dur", sl_mono_ns() - sl_req_start_ns(req)),
                SL_A_STR("remote", sl_req_remote_addr(req)),
                rid ? SL_A_STR("request_id", rid) : (sl_attr){.kind = SL_ATTR_NONE});
}

void sl_mw_access_log(sl_logger *lg, sl_middleware *out)
{
    *out = (sl_middleware){.name = "access_log", .after = alog_after, .arg = lg};
}
