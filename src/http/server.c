/* The server: options, listening sockets, its workers on a task runtime's loops, accepting
 * under a connection bound, and graceful shutdown.
 *
 * Loops: the server owns no I/O thread. Each loop of its runtime (opts.runtime, the default
 * runtime, or a private one for opts.reactors > 0) gets one worker. The loops are running
 * already, and may serve other servers and tasks, so everything a worker puts on its loop
 * (listeners, timer queues) is put there by a step posted to that loop (attach), and taken
 * off by another (stop); callbacks find their worker from the io/timer/task struct they get
 * (container_of), never from the reactor's data (the scheduler's).
 *
 * Accepting under max_connections: a worker reserves a slot (CAS on the process-wide count)
 * before accept(); at the bound it stops watching its listeners (pause). Whoever frees a slot
 * (a connection closing, or a reservation that found nothing to accept) posts a resume task to
 * each paused worker. The pause/resume race is closed Dekker-style: a pausing worker
 * publishes `paused` and then re-reads the count; a closer lowers the count and then reads
 * `npaused` (all seq_cst), so at least one of them sees the other and nobody stays paused
 * while there is room. New connections wait in the kernel backlog meanwhile.
 *
 * Shutdown: the controlling thread sets `draining`, posts a drain task to every worker (close
 * the listeners, close idle connections, mark the rest to close after their current response)
 * and parks on a condition variable until every worker acknowledged the drain and the
 * connection count reached zero, or the caller's ctx fires (an on-done hook signals the same
 * condition). Then it posts a stop task to every worker (close everything of this server,
 * remove its timer queues) and waits for each, then one more round trip to every loop (a
 * fence: a resume task another worker posted before the stop has run by then), after which
 * no loop holds a pointer into the server. A private runtime is then shut down (its threads
 * joined). Posted tasks are the only cross-thread entry into a worker. */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sluice/clock.h"
#include "sluice/ctx.h"
#include "sluice/error.h"
#include "base/base_int.h"
#include "http/http_int.h"
#include "task/task_int.h"

enum { SRV_NEW, SRV_SERVING, SRV_STOPPED, SRV_FAILED };

#define ACCEPT_BATCH     64
#define ACCEPT_BACKOFF   SL_MS(100)
#define LISTEN_BACKLOG   4096
#define MAX_BODY_LIMIT   (1ull << 30)
#define MAX_HEADER_LIMIT (1u << 20)

#define WORKER_OF(p, field) ((sl__worker *)(void *)((char *)(p)-offsetof(sl__worker, field)))

/* ---- options ---------------------------------------------------------------------------- */

static int64_t dflt_timeout(int64_t v, int64_t d)
{
    return v == 0 ? d : v; /* negative stays negative: disabled */
}

static int resolve_opts(const sl_server_opts *in, sl_server_opts *o, sl_http_limits *lim)
{
    if (!in) return sl__fail(SL_EINVAL, "sl_server_new: opts is NULL");
    if (!in->handler == !in->mux)
        return sl__fail(SL_EINVAL, "sl_server_opts: set exactly one of .handler and .mux (%s)",
                        in->mux ? "both are set" : "both are NULL");
    if (in->reactors < 0)
        return sl__fail(SL_EINVAL, "sl_server_opts.reactors is negative (%d)", in->reactors);
    if (in->max_connections < 0)
        return sl__fail(SL_EINVAL, "sl_server_opts.max_connections is negative (%d)",
                        in->max_connections);
    *o = *in;
    if (!o->reactors) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        o->reactors = n > 0 ? (int)(n > 256 ? 256 : n) : 1;
    }
    if (!o->max_connections) o->max_connections = 16384;
    if (!o->max_header_bytes) o->max_header_bytes = SL_HTTP_DEFAULT_MAX_HEADER_BYTES;
    if (!o->max_headers) o->max_headers = SL_HTTP_DEFAULT_MAX_HEADERS;
    if (!o->max_target) o->max_target = SL_HTTP_DEFAULT_MAX_TARGET;
    if (!o->max_body_bytes) o->max_body_bytes = SL_HTTP_DEFAULT_MAX_BODY;
    if (!o->max_pipeline) o->max_pipeline = 64;
    if (!o->max_output_bytes) o->max_output_bytes = 256 * 1024;
    if (o->max_header_bytes > MAX_HEADER_LIMIT)
        return sl__fail(SL_EINVAL, "sl_server_opts.max_header_bytes %u is above %u",
                        o->max_header_bytes, MAX_HEADER_LIMIT);
    if (o->max_body_bytes > MAX_BODY_LIMIT)
        return sl__fail(SL_EINVAL, "sl_server_opts.max_body_bytes %llu is above %llu",
                        (unsigned long long)o->max_body_bytes, (unsigned long long)MAX_BODY_LIMIT);
    if (o->max_headers > 4096)
        return sl__fail(SL_EINVAL, "sl_server_opts.max_headers %u is above 4096", o->max_headers);
    if (o->max_pipeline > 65535)
        return sl__fail(SL_EINVAL, "sl_server_opts.max_pipeline %u is above 65535",
                        o->max_pipeline);
    o->read_header_timeout_ns = dflt_timeout(o->read_header_timeout_ns, SL_SEC(10));
    o->read_body_timeout_ns = dflt_timeout(o->read_body_timeout_ns, SL_SEC(60));
    o->write_timeout_ns = dflt_timeout(o->write_timeout_ns, SL_SEC(60));
    o->idle_timeout_ns = dflt_timeout(o->idle_timeout_ns, SL_SEC(75));
    o->shutdown_timeout_ns = dflt_timeout(o->shutdown_timeout_ns, SL_SEC(30));
    if (!o->min_body_rate) o->min_body_rate = 1024;
    if (o->max_conns_per_ip < 0) return SL_EINVAL;
    if (!o->max_conns_per_ip)
        o->max_conns_per_ip = o->max_connections / 4 > 16 ? o->max_connections / 4 : 16;
    if (!o->max_body_memory) o->max_body_memory = 256u << 20;
    *lim = (sl_http_limits){.max_target = o->max_target,
                            .max_header_bytes = o->max_header_bytes,
                            .max_headers = o->max_headers,
                            .max_body = o->max_body_bytes};
    return 0;
}

/* ---- accepting -------------------------------------------------------------------------- */

/* A CAS loop rather than add-then-undo: the count never exceeds the bound, not even for a
 * moment. A slot is taken before accept4 (which may then find nothing), so nconns runs ahead
 * of the connections really open; sl_server_stats_get reports nopen instead. */
static bool slot_reserve(sl_server *srv)
{
    int64_t n = atomic_load(&srv->nconns);
    do {
        if (n >= srv->o.max_connections) return false;
    } while (!atomic_compare_exchange_weak(&srv->nconns, &n, n + 1));
    return true;
}

static void listeners_set(sl__worker *w, bool on)
{
    for (int i = 0; i < w->nlis; i++)
        if (w->lis[i].io.fn) sl__io_set(w->r, &w->lis[i].io, on ? EPOLLIN : 0);
    w->accepting = on;
}

/* Loop thread. Turns accepting back on when nothing holds it off. */
static void maybe_resume(sl__worker *w)
{
    sl_server *srv = w->srv;
    if (w->accepting || w->draining || sl__timer_active(&w->backoff)) return;
    if (atomic_load(&w->paused)) {
        if (atomic_load(&srv->nconns) >= srv->o.max_connections) return; /* a close reposts */
        atomic_store(&w->paused, false);
        atomic_fetch_sub(&srv->npaused, 1);
    }
    listeners_set(w, true);
}

static void pause_at_limit(sl__worker *w)
{
    sl_server *srv = w->srv;
    /* A worker with an idle keep-alive connection keeps watching its listeners: the next
     * client takes that connection's slot (on_accept). */
    if (sl__conn_close_idle(w, 0) > 0) return;
    if (atomic_load(&w->paused)) return;
    listeners_set(w, false);
    atomic_store(&w->paused, true);
    atomic_fetch_add(&srv->npaused, 1);
    atomic_store_explicit(&w->st.pauses,
                          atomic_load_explicit(&w->st.pauses, memory_order_relaxed) + 1,
                          memory_order_relaxed);
    /* Re-check after publishing `paused`: a close that lowered the count before it could see
     * us paused would not post a resume. */
    if (atomic_load(&srv->nconns) < srv->o.max_connections) maybe_resume(w);
}

static void on_resume(sl__reactor *r, sl__task *t)
{
    sl__worker *w = WORKER_OF(t, resume_task);
    (void)r;
    atomic_store(&w->resume_posted, false);
    maybe_resume(w);
}

static void on_backoff(sl__reactor *r, sl__timer *t)
{
    (void)r;
    maybe_resume(WORKER_OF(t, backoff));
}

void sl__server_idle_avail(sl__worker *w)
{
    if (!atomic_load(&w->paused) || w->draining) return;
    atomic_store(&w->paused, false);
    atomic_fetch_sub(&w->srv->npaused, 1);
    if (!sl__timer_active(&w->backoff)) listeners_set(w, true);
}

void sl__server_conn_closed(sl_server *srv)
{
    int64_t left = atomic_fetch_sub(&srv->nconns, 1) - 1;
    if (left < srv->o.max_connections && atomic_load(&srv->npaused) > 0) {
        for (int i = 0; i < srv->nworkers; i++) {
            sl__worker *w = &srv->workers[i];
            if (atomic_load(&w->paused) && !atomic_exchange(&w->resume_posted, true))
                sl__reactor_post(w->r, &w->resume_task);
        }
    }
    if (left == 0 && atomic_load(&srv->draining)) {
        pthread_mutex_lock(&srv->mu);
        pthread_cond_broadcast(&srv->cv);
        pthread_mutex_unlock(&srv->mu);
    }
}

/* ---- per-IP connections and body memory -------------------------------------------------- */

static size_t ip_hash(const sl_ipkey *k)
{
    uint64_t a, b;
    memcpy(&a, k->b, 8);
    memcpy(&b, k->b + 8, 8);
    uint64_t h = (a ^ (b * 0x9E3779B97F4A7C15ull)) * 0xBF58476D1CE4E5B9ull;
    return (size_t)(h ^ (h >> 31));
}

bool sl__iptab_acquire(sl__iptab *tab, const sl_ipkey *k, int cap)
{
    bool ok = true;
    pthread_mutex_lock(&tab->mu);
    size_t i = ip_hash(k) & tab->mask;
    while (tab->t[i].n && !sl_ipkey_equal(&tab->t[i].k, k))
        i = (i + 1) & tab->mask;
    if (tab->t[i].n >= cap) {
        ok = false;
    } else {
        tab->t[i].k = *k;
        tab->t[i].n++;
    }
    pthread_mutex_unlock(&tab->mu);
    return ok;
}

void sl__iptab_release(sl__iptab *tab, const sl_ipkey *k)
{
    pthread_mutex_lock(&tab->mu);
    size_t m = tab->mask, i = ip_hash(k) & m;
    while (tab->t[i].n && !sl_ipkey_equal(&tab->t[i].k, k))
        i = (i + 1) & m;
    if (tab->t[i].n && --tab->t[i].n == 0) {
        /* Backward-shift deletion: move later members of the probe run into the hole, so a
         * lookup never stops early at it (no tombstones to accumulate). */
        size_t hole = i, j = i;
        for (;;) {
            j = (j + 1) & m;
            if (!tab->t[j].n) break;
            size_t home = ip_hash(&tab->t[j].k) & m;
            bool movable = hole <= j ? (home <= hole || home > j) : (home <= hole && home > j);
            if (movable) {
                tab->t[hole] = tab->t[j];
                tab->t[j].n = 0;
                hole = j;
            }
        }
    }
    pthread_mutex_unlock(&tab->mu);
}

static int iptab_init(sl__iptab *tab, size_t keys)
{
    size_t slots = 16;
    while (slots < 2 * keys)
        slots *= 2;
    tab->t = calloc(slots, sizeof *tab->t);
    if (!tab->t) return SL_ENOMEM;
    tab->mask = slots - 1;
    pthread_mutex_init(&tab->mu, NULL);
    return 0;
}

static void iptab_destroy(sl__iptab *tab)
{
    if (!tab->t) return;
    free(tab->t);
    tab->t = NULL;
    pthread_mutex_destroy(&tab->mu);
}

void sl__server_ip_release(sl_server *srv, const sl_ipkey *k)
{
    sl__iptab_release(&srv->conns_ip, k);
}

int64_t sl__server_retry_after_s(sl_server *srv)
{
    sl_pool_stats st;
    sl_pool_stats_get(srv->hpool, &st);
    int64_t pool_ns = sl_pool_retry_after_ns(srv->hpool);
    /* The pool's estimate needs completions to measure a drain rate: a cold pool (nothing
     * finished yet) says 1 s whatever is queued. Ours: rounds of the workers over what is
     * queued and running, at the measured mean run time (cold: 1 s a round). */
    int64_t run = atomic_load_explicit(&srv->run_ewma_ns, memory_order_relaxed);
    if (run <= 0) run = SL_SEC(1);
    int workers = st.workers > 0 ? st.workers : 1;
    uint64_t rounds = (st.queued + st.running + (uint64_t)workers - 1) / (uint64_t)workers;
    int64_t ours = (int64_t)rounds * run;
    int64_t ns = ours > pool_ns ? ours : pool_ns;
    int64_t s = (ns + SL_SEC(1) - 1) / SL_SEC(1);
    return s < 1 ? 1 : s > 3600 ? 3600 : s;
}

bool sl__server_body_charge(sl_server *srv, int64_t delta)
{
    if (delta <= 0) {
        atomic_fetch_add(&srv->body_mem, delta);
        return true;
    }
    int64_t cur = atomic_load(&srv->body_mem);
    do {
        if ((uint64_t)(cur + delta) > srv->o.max_body_memory) return false;
    } while (!atomic_compare_exchange_weak(&srv->body_mem, &cur, cur + delta));
    return true;
}

/* Answers a connection over its address's cap and closes it. One small write to a fresh
 * socket: the kernel buffer takes it, or the client simply sees the close. */
static void refuse_per_ip(int fd)
{
    static const char msg[] = "HTTP/1.1 429 Too Many Requests\r\nServer: sluice\r\n"
                              "Content-Type: text/plain; charset=utf-8\r\nRetry-After: 1\r\n"
                              "Content-Length: 39\r\nConnection: close\r\n\r\n"
                              "too many connections from your address\n";
    ssize_t n = send(fd, msg, sizeof msg - 1, MSG_NOSIGNAL);
    (void)n;
    shutdown(fd, SHUT_WR);
    close(fd);
}

static bool backlog_waiting(int lfd)
{
    struct pollfd p = {.fd = lfd, .events = POLLIN};
    return poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

static void on_accept(sl__reactor *r, sl__io *io, uint32_t events)
{
    sl__lis *l = (sl__lis *)(void *)((char *)io - offsetof(sl__lis, io));
    sl__worker *w = l->w;
    sl_server *srv = w->srv;
    (void)r;
    (void)events;
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        /* At the bound, an idle keep-alive connection gives its slot to a client waiting in
         * the backlog (nginx reuses connections the same way): the oldest of this worker's
         * goes, and only when a client is really waiting (a zero-timeout poll of the
         * listener). Workers with no idle connection pause. */
        if (!slot_reserve(srv) &&
            !(backlog_waiting(io->fd) && sl__conn_close_idle(w, 1) == 1 && slot_reserve(srv))) {
            pause_at_limit(w);
            return;
        }
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        int fd = accept4(io->fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            int e = errno;
            sl__server_conn_closed(srv);
            if (e == EINTR || e == ECONNABORTED || e == EPROTO) continue;
            if (e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM) {
                /* Out of descriptors or memory: stop accepting for a moment instead of
                 * spinning on a listener that stays readable. */
                listeners_set(w, false);
                sl__timer_start(w->r, &w->tq_backoff, &w->backoff);
                atomic_store_explicit(&w->st.pauses,
                                      atomic_load_explicit(&w->st.pauses, memory_order_relaxed) + 1,
                                      memory_order_relaxed);
            }
            return;
        }
        sl_ipkey ipk;
        bool has_ip = sl_ipkey_from_sockaddr(&ss, sl, &ipk) == 0 &&
                      sl_ipkey_group(&ipk, SL_IPGROUP_DEFAULT, &ipk) == 0;
        if (has_ip && !sl__iptab_acquire(&srv->conns_ip, &ipk, srv->o.max_conns_per_ip)) {
            refuse_per_ip(fd);
            sl__server_conn_closed(srv);
            sl__stat_inc(&w->st.rejected);
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        /* Counted before it opens: a connection's close path always finds itself counted. */
        atomic_fetch_add(&srv->nopen, 1);
        if (sl__conn_open(w, fd, (struct sockaddr *)&ss, sl, has_ip ? &ipk : NULL) < 0) {
            atomic_fetch_sub(&srv->nopen, 1);
            close(fd);
            if (has_ip) sl__server_ip_release(srv, &ipk);
            sl__server_conn_closed(srv);
            continue;
        }
        atomic_store_explicit(&w->st.accepted,
                              atomic_load_explicit(&w->st.accepted, memory_order_relaxed) + 1,
                              memory_order_relaxed);
    }
}

/* ---- worker tasks ----------------------------------------------------------------------- */

static void close_listeners(sl__worker *w)
{
    for (int i = 0; i < w->nlis; i++) {
        sl__lis *l = &w->lis[i];
        if (l->io.fn) sl__io_stop(w->r, &l->io);
        if (l->io.fd >= 0) close(l->io.fd);
        l->io.fd = -1;
    }
    w->accepting = false;
}

/* One worker's step of a server-wide phase (attach, stop, fence) is done; the controlling
 * thread waits for all of them under mu. After the last one of the fence phase the worker is
 * never touched by its loop again, so nothing may follow the unlock. */
static void ack(sl_server *srv, int rc)
{
    pthread_mutex_lock(&srv->mu);
    if (rc < 0 && !srv->attach_rc) srv->attach_rc = rc;
    srv->acked++;
    pthread_cond_broadcast(&srv->cv);
    pthread_mutex_unlock(&srv->mu);
}

/* The loop is already running when the server starts: everything the worker registers on it
 * (timer queues, listeners) is registered from the loop thread itself, by this posted step. */
static void on_attach(sl__reactor *r, sl__task *t)
{
    sl__worker *w = WORKER_OF(t, attach_task);
    sl__conn_worker_attach(w);
    sl__tq_init(r, &w->tq_backoff, ACCEPT_BACKOFF, on_backoff);
    w->attached = true;
    int rc = 0;
    for (int a = 0; a < w->nlis && rc == 0; a++)
        rc = sl__io_start(r, &w->lis[a].io, w->lis[a].io.fd, EPOLLIN, on_accept);
    w->accepting = rc == 0;
    if (rc < 0) close_listeners(w);
    ack(w->srv, rc);
}

static void on_drain(sl__reactor *r, sl__task *t)
{
    sl__worker *w = WORKER_OF(t, drain_task);
    sl_server *srv = w->srv;
    (void)r;
    close_listeners(w);
    sl__timer_stop(&w->backoff);
    sl__conn_drain_all(w);
    pthread_mutex_lock(&srv->mu);
    srv->drained++;
    pthread_cond_broadcast(&srv->cv);
    pthread_mutex_unlock(&srv->mu);
}

static void on_fence(sl__reactor *r, sl__task *t)
{
    (void)r;
    ack(WORKER_OF(t, fence_task)->srv, 0);
}

/* Closes everything of this server on the loop and takes its timer queues off the loop (the
 * loop itself goes on: it belongs to the runtime). Acknowledged by a deferred step, which runs
 * after the deferred free of the connections just closed. */
static void on_stop(sl__reactor *r, sl__task *t)
{
    sl__worker *w = WORKER_OF(t, stop_task);
    w->draining = true;
    close_listeners(w);
    sl__timer_stop(&w->backoff);
    sl__conn_close_all(w);
    if (w->attached) {
        sl__conn_worker_detach(w);
        sl__tq_remove(r, &w->tq_backoff);
        w->attached = false;
    }
    w->fence_task.fn = on_fence;
    sl__reactor_defer(r, &w->fence_task);
}

/* ---- lifecycle -------------------------------------------------------------------------- */

static void worker_destroy(sl__worker *w)
{
    if (!w->srv) return;
    close_listeners(w);
    sl__conn_worker_destroy(w);
    sl__preq_cache_free(w);
    free(w->lis);
    free(w->hdrs);
    free(w->scratch);
    free(w->tq_route);
    w->lis = NULL;
    w->hdrs = NULL;
    w->scratch = NULL;
    w->tq_route = NULL;
}

static int worker_init(sl_server *srv, sl__worker *w, int idx)
{
    w->srv = srv;
    w->r = &srv->rt->loops[idx].r;
    w->loop = idx + 1;
    w->hdrs = calloc(srv->o.max_headers, sizeof *w->hdrs);
    if (srv->mux) {
        /* The router's bound for a path of max_target bytes (router.h). */
        w->scratch_len = 7 * (size_t)srv->o.max_target + 256;
        w->scratch = malloc(w->scratch_len);
        w->tq_route = calloc((size_t)srv->mux->ntq + 1, sizeof *w->tq_route);
    }
    if (!w->hdrs || (srv->mux && (!w->scratch || !w->tq_route))) {
        free(w->hdrs);
        free(w->scratch);
        free(w->tq_route);
        w->hdrs = NULL;
        w->scratch = NULL;
        w->tq_route = NULL;
        return SL_ENOMEM;
    }
    atomic_init(&w->paused, false);
    atomic_init(&w->resume_posted, false);
    w->resume_task.fn = on_resume;
    w->drain_task.fn = on_drain;
    w->stop_task.fn = on_stop;
    w->attach_task.fn = on_attach;
    sl__conn_worker_init(w);
    return 0;
}

/* Lets go of the server's runtime: no longer counted as its user; shut down and freed if the
 * server created it. */
static void runtime_drop(sl_runtime *rt, bool own)
{
    sl__runtime_detach(rt);
    if (own) sl_runtime_free(rt);
}

/* The runtime whose loops serve (attached: counted as a user of it). opts.runtime; else the
 * default one (reactors 0), else a private one with `reactors` loops. (Loop threads take no
 * signals: sl_runtime_new blocks them.) */
static int server_runtime(const sl_server_opts *in, sl_runtime **out, bool *own)
{
    sl_runtime *rt = in->runtime;
    *own = false;
    if (rt && in->reactors && in->reactors != rt->nloops)
        return sl__fail(SL_EINVAL,
                        "sl_server_opts.reactors (%d) differs from the runtime's loops (%d): "
                        "leave it 0 with .runtime",
                        in->reactors, rt->nloops);
    if (!rt) {
        int rc = 0;
        if (in->reactors == 0) {
            rt = sl_runtime_default();
            if (!rt) rc = SL_ENOMEM;
        } else {
            sl_runtime_opts ro = {.loops = in->reactors};
            rc = sl_runtime_new(&ro, &rt);
            *own = rc == 0;
        }
        if (rc < 0) return sl__fail(rc, "sl_server_new: cannot start the runtime's loops");
    }
    int rc = sl__runtime_attach(rt);
    if (rc < 0) {
        if (*own) sl_runtime_free(rt);
        return sl__fail(rc, "sl_server_new: the runtime is shut down");
    }
    *out = rt;
    return 0;
}

int sl_server_new(const sl_server_opts *opts, sl_server **out)
{
    sl_server_opts o;
    sl_http_limits lim;
    int rc = resolve_opts(opts, &o, &lim);
    if (rc < 0) return rc;
    sl_runtime *rt = NULL;
    bool own = false;
    rc = server_runtime(opts, &rt, &own);
    if (rc < 0) return rc;
    o.reactors = rt->nloops;
    sl_server *srv = calloc(1, sizeof *srv);
    if (!srv) {
        runtime_drop(rt, own);
        return SL_ENOMEM;
    }
    srv->o = o;
    srv->lim = lim;
    srv->rt = rt;
    srv->own_rt = own;
    srv->rt_attached = true;
    if (sl_ctx_with_cancel(NULL, &srv->root) < 0) {
        runtime_drop(rt, own);
        free(srv);
        return SL_ENOMEM;
    }
    if (o.mux) {
        rc = sl__mux_attach(o.mux);
        if (rc < 0) {
            runtime_drop(rt, own);
            sl_ctx_release(srv->root);
            free(srv);
            return rc;
        }
        srv->mux = o.mux;
    }
    atomic_init(&srv->nconns, 0);
    atomic_init(&srv->nopen, 0);
    atomic_init(&srv->npaused, 0);
    atomic_init(&srv->draining, false);
    srv->workers = calloc((size_t)o.reactors, sizeof *srv->workers);
    if (!srv->workers) {
        runtime_drop(rt, own);
        if (srv->mux) sl__mux_detach(srv->mux);
        sl_ctx_release(srv->root);
        free(srv);
        return SL_ENOMEM;
    }
    if (pthread_mutex_init(&srv->mu, NULL) != 0) {
        free(srv->workers);
        runtime_drop(rt, own);
        if (srv->mux) sl__mux_detach(srv->mux);
        sl_ctx_release(srv->root);
        free(srv);
        return SL_ENOMEM;
    }
    pthread_cond_init(&srv->cv, NULL);
    atomic_init(&srv->body_mem, 0);
    atomic_init(&srv->run_ewma_ns, 0);
    atomic_init(&srv->ntask, 0);
    atomic_init(&srv->tasks_closed, false);
    if (iptab_init(&srv->conns_ip, (size_t)o.max_connections) < 0 ||
        (srv->mux && iptab_init(&srv->pooled_ip, (size_t)o.max_connections) < 0)) {
        sl_server_free(srv);
        return SL_ENOMEM;
    }
    if (srv->mux) {
        const sl_mux_opts *mo = &srv->mux->o;
        srv->queue_wait_ns = mo->max_queue_wait_ns ? mo->max_queue_wait_ns : SL_SEC(10);
        srv->pooled_cap = mo->max_pooled_per_client;
        srv->task_cap = mo->max_task_requests;
    }
    srv->nworkers = o.reactors;
    for (int i = 0; i < o.reactors; i++) {
        rc = worker_init(srv, &srv->workers[i], i);
        if (rc < 0) {
            sl_server_free(srv);
            return rc;
        }
    }
    if (srv->mux) {
        sl_pool_opts po = {.name = "handlers",
                           .workers = srv->mux->o.handler_workers,
                           /* sl_pool's ring needs 2 slots at least (a 1-slot ring
                              accepts without bound: see the report) */
                           .queue_capacity =
                               srv->mux->o.handler_queue < 2 ? 2 : srv->mux->o.handler_queue,
                           .retry = {.max_attempts = 1},
                           .logger = srv->mux->o.logger};
        rc = sl_pool_new(&po, &srv->hpool);
        if (rc < 0) {
            sl_server_free(srv);
            return rc;
        }
    }
    *out = srv;
    return 0;
}

/* Fills *ss from host: an IPv4 or IPv6 literal ("[::1]" too), or a name resolved once here
 * ("localhost"; the first IPv4 address, else the first IPv6 one, as Go's Listen prefers). */
static int resolve_host(const char *host, int port, struct sockaddr_storage *ss, socklen_t *len)
{
    memset(ss, 0, sizeof *ss);
    if (!host) host = "0.0.0.0";
    char lit[INET6_ADDRSTRLEN + 2];
    size_t hl = strlen(host);
    if (hl == 0) return sl__fail(SL_EINVAL, "sl_server_listen: host is \"\" (NULL means 0.0.0.0)");
    if (host[0] == '[' && host[hl - 1] == ']' && hl - 2 < sizeof lit) {
        memcpy(lit, host + 1, hl - 2);
        lit[hl - 2] = '\0';
        host = lit;
    }
    struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, host, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
    } else if (inet_pton(AF_INET6, host, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
    } else {
        struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *res, *ai;
        int g = getaddrinfo(host, NULL, &hints, &res);
        if (g != 0)
            return sl__fail(g == EAI_MEMORY ? SL_ENOMEM : SL_ENOENT,
                            "sl_server_listen: cannot resolve host \"%s\": %s", host,
                            gai_strerror(g));
        for (ai = res; ai && ai->ai_family != AF_INET; ai = ai->ai_next)
            ;
        for (ai = ai ? ai : res; ai && ai->ai_family != AF_INET6 && ai->ai_family != AF_INET;)
            ai = ai->ai_next;
        if (ai) memcpy(ss, ai->ai_addr, ai->ai_addrlen);
        freeaddrinfo(res);
        if (!ai)
            return sl__fail(SL_ENOENT, "sl_server_listen: host \"%s\" has no IP address", host);
    }
    if (ss->ss_family == AF_INET) {
        s4->sin_port = htons((uint16_t)port);
        *len = sizeof *s4;
    } else {
        s6->sin6_port = htons((uint16_t)port);
        *len = sizeof *s6;
    }
    return ss->ss_family;
}

/* A socket bound to the address; with reuseport, also SO_REUSEPORT and listening. */
static int open_socket(int fam, struct sockaddr_storage *ss, socklen_t len, bool reuseport)
{
    int fd = socket(fam, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0) ||
        (fam == AF_INET6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) < 0) ||
        bind(fd, (struct sockaddr *)ss, len) < 0 || (reuseport && listen(fd, LISTEN_BACKLOG) < 0)) {
        int e = -errno;
        close(fd);
        return e;
    }
    return fd;
}

static int set_port(struct sockaddr_storage *ss, int fd)
{
    struct sockaddr_storage got;
    socklen_t gl = sizeof got;
    if (getsockname(fd, (struct sockaddr *)&got, &gl) < 0) return -errno;
    bool v4 = ss->ss_family == AF_INET;
    uint16_t p =
        v4 ? ((struct sockaddr_in *)&got)->sin_port : ((struct sockaddr_in6 *)&got)->sin6_port;
    if (v4)
        ((struct sockaddr_in *)ss)->sin_port = p;
    else
        ((struct sockaddr_in6 *)ss)->sin6_port = p;
    return ntohs(p);
}

/* SO_REUSEPORT lets every reactor own a listener on one port, but it would also let any other
 * socket of the same user with SO_REUSEPORT join the group and take part of the traffic:
 * another process, or another sl_server. So the port is first claimed by a probe bound WITHOUT
 * SO_REUSEPORT (and not listening): that bind fails with EADDRINUSE whenever any socket listens
 * there, reuse-port or not — Go's "address already in use". While the probe holds the port,
 * the reactors' sockets bind beside it (SO_REUSEADDR allows that next to a socket that does
 * not listen) and listen; then the probe closes. Another sluice server's probe now fails
 * against these listeners, so only the loops of one server share the port. */
int sl_server_listen(sl_server *srv, const char *host, int port)
{
    if (!srv) return sl__fail(SL_EINVAL, "sl_server_listen: srv is NULL");
    if (srv->state != SRV_NEW)
        return sl__fail(SL_EINVAL, "sl_server_listen: called after sl_server_serve");
    if (port < 0 || port > 65535)
        return sl__fail(SL_EINVAL, "sl_server_listen: port %d is outside 0..65535", port);
    struct sockaddr_storage ss;
    socklen_t len = 0;
    int fam = resolve_host(host, port, &ss, &len);
    if (fam < 0) return fam;
    char shown[INET6_ADDRSTRLEN] = "?";
    inet_ntop(fam,
              fam == AF_INET ? (void *)&((struct sockaddr_in *)&ss)->sin_addr
                             : (void *)&((struct sockaddr_in6 *)&ss)->sin6_addr,
              shown, sizeof shown);
    int n = srv->nworkers;
    int *fds = realloc(srv->lfds, (size_t)(srv->nlis + 1) * (size_t)n * sizeof *fds);
    if (!fds) return SL_ENOMEM;
    srv->lfds = fds;
    int *mine = fds + srv->nlis * n;
    int probe = open_socket(fam, &ss, len, false);
    if (probe < 0)
        return sl__fail(probe, "sl_server_listen: %s%s%s:%d: %s%s", fam == AF_INET6 ? "[" : "",
                        shown, fam == AF_INET6 ? "]" : "", port, sl_strerror(probe),
                        probe == SL_EADDRINUSE ? " (another process or server listens there)" : "");
    int bound = set_port(&ss, probe); /* port 0: the probe picked it */
    for (int i = 0; i < n && bound > 0; i++) {
        int fd = open_socket(fam, &ss, len, true);
        if (fd < 0) {
            while (i--)
                close(mine[i]);
            bound = fd;
            break;
        }
        mine[i] = fd;
    }
    close(probe);
    if (bound < 0)
        return sl__fail(bound, "sl_server_listen: %s port %d: %s", shown, port, sl_strerror(bound));
    srv->nlis++;
    if (!srv->port) srv->port = bound;
    return bound;
}

int sl_server_port(const sl_server *srv)
{
    return srv && srv->port ? srv->port : SL_ENOENT;
}

/* Posts one step to every worker and waits until each acknowledged it (ack()). */
static void phase(sl_server *srv, size_t task_off)
{
    pthread_mutex_lock(&srv->mu);
    srv->acked = 0;
    pthread_mutex_unlock(&srv->mu);
    for (int i = 0; i < srv->nworkers; i++) {
        sl__worker *w = &srv->workers[i];
        sl__reactor_post(w->r, (sl__task *)(void *)((char *)w + task_off));
    }
    pthread_mutex_lock(&srv->mu);
    while (srv->acked < srv->nworkers)
        pthread_cond_wait(&srv->cv, &srv->mu);
    pthread_mutex_unlock(&srv->mu);
}

/* Takes the server off its loops: every worker closes its listeners and connections and
 * removes its timer queues (stop), then one more round trip to every loop (fence) so that a
 * resume step another worker posted before the stop has run too: after it no loop holds a
 * pointer into the server. The loops go on running (the runtime's). */
static void stop_workers(sl_server *srv)
{
    phase(srv, offsetof(sl__worker, stop_task));
    for (int i = 0; i < srv->nworkers; i++)
        srv->workers[i].fence_task.fn = on_fence;
    phase(srv, offsetof(sl__worker, fence_task));
}

/* Hands this worker its listening sockets (registered by its attach step, on its loop). */
static int worker_listen(sl_server *srv, int idx)
{
    sl__worker *w = &srv->workers[idx];
    w->lis = calloc((size_t)srv->nlis, sizeof *w->lis);
    if (!w->lis) return SL_ENOMEM;
    w->nlis = srv->nlis;
    for (int a = 0; a < srv->nlis; a++) {
        w->lis[a].w = w;
        w->lis[a].io.fd = srv->lfds[a * srv->nworkers + idx];
        srv->lfds[a * srv->nworkers + idx] = -1; /* the worker owns it now */
    }
    return 0;
}

static bool on_own_loop(const sl_server *srv)
{
    sl__sched *s = sl__sched_self();
    return s && s->rt == srv->rt;
}

int sl_server_serve(sl_server *srv)
{
    if (!srv || srv->state != SRV_NEW || srv->nlis == 0) return SL_EINVAL;
    if (on_own_loop(srv))
        return sl__fail(SL_EDEADLK, "sl_server_serve: called from a loop of the server's runtime");
    int rc = 0;
    for (int i = 0; i < srv->nworkers && rc == 0; i++)
        rc = worker_listen(srv, i);
    if (rc < 0) {
        srv->state = SRV_FAILED;
        return rc;
    }
    phase(srv, offsetof(sl__worker, attach_task));
    rc = srv->attach_rc;
    if (rc < 0) {
        stop_workers(srv);
        srv->state = SRV_FAILED;
        return rc;
    }
    srv->state = SRV_SERVING;
    return 0;
}

static void on_fired(void *arg, int err)
{
    sl_server *srv = arg;
    (void)err;
    pthread_mutex_lock(&srv->mu);
    srv->fired = true;
    pthread_cond_broadcast(&srv->cv);
    pthread_mutex_unlock(&srv->mu);
}

static int shutdown_impl(sl_server *srv, sl_ctx *ctx, bool wait)
{
    atomic_store(&srv->draining, true);
    for (int i = 0; i < srv->nworkers; i++)
        sl__reactor_post(srv->workers[i].r, &srv->workers[i].drain_task);
    bool clean = false;
    if (wait) {
        sl_ctx_hook *hook = NULL;
        int hr = sl_ctx_on_done(ctx, on_fired, srv, &hook);
        pthread_mutex_lock(&srv->mu);
        if (hr < 0) srv->fired = true; /* cannot watch the ctx: do not wait blind */
        for (;;) {
            clean = srv->drained == srv->nworkers && atomic_load(&srv->nconns) == 0;
            if (clean || srv->fired) break;
            pthread_cond_wait(&srv->cv, &srv->mu);
        }
        pthread_mutex_unlock(&srv->mu);
        if (hr == 0) sl_ctx_hook_stop(hook);
    }
    /* The grace period is over: cancel every request still running, let the pooled handlers
     * return (their done tasks reach the reactors, which are still running), then stop the
     * reactors. This order is what lets a connection never be freed under a handler. */
    /* With its own cause, so a handler can tell "server shutting down" (SL_ESHUTDOWN) from
     * "client gone" (SL_ECANCELED) and its route's deadline (SL_ETIMEDOUT). */
    sl_ctx_cancel_with(srv->root, SL_ESHUTDOWN);
    if (srv->hpool) sl_pool_shutdown(srv->hpool, NULL, NULL);
    /* Task routes likewise: no new task starts, and every running one has posted its done
     * task (it decrements ntask after the post) before the reactors stop. */
    atomic_store(&srv->tasks_closed, true);
    pthread_mutex_lock(&srv->mu);
    while (atomic_load(&srv->ntask) > 0)
        pthread_cond_wait(&srv->cv, &srv->mu);
    pthread_mutex_unlock(&srv->mu);
    stop_workers(srv);
    /* A runtime the server created for itself stops with it: its threads are joined here,
     * as the server's own threads always were. */
    if (srv->own_rt) {
        sl__runtime_detach(srv->rt);
        srv->rt_attached = false;
        sl_runtime_shutdown(srv->rt, NULL);
    }
    srv->state = SRV_STOPPED;
    if (clean) return 0;
    int err = sl_ctx_err(ctx);
    return err ? err : SL_ECANCELED;
}

int sl_server_shutdown(sl_server *srv, sl_ctx *ctx)
{
    if (!srv || srv->state != SRV_SERVING) return SL_EINVAL;
    if (on_own_loop(srv))
        return sl__fail(SL_EDEADLK, "sl_server_shutdown: called from a loop of the server's "
                                    "runtime");
    return shutdown_impl(srv, ctx, true);
}

int sl_server_run(sl_server *srv, sl_ctx *ctx)
{
    if (!srv || !ctx) return SL_EINVAL;
    int rc = sl_server_serve(srv);
    if (rc < 0) return rc;
    sl_ctx_wait(ctx);
    sl_ctx *grace = NULL;
    if (srv->o.shutdown_timeout_ns > 0) {
        rc = sl_ctx_with_timeout(NULL, srv->o.shutdown_timeout_ns, &grace);
        if (rc < 0) grace = NULL;
    }
    rc = sl_server_shutdown(srv, grace);
    sl_ctx_release(grace);
    return rc;
}

void sl_server_stats_get(const sl_server *srv, sl_server_stats *st)
{
    *st = (sl_server_stats){.connections = atomic_load(&((sl_server *)srv)->nopen)};
    for (int i = 0; i < srv->nworkers; i++) {
        sl__worker_stats *ws = &srv->workers[i].st;
        st->accepted += atomic_load_explicit(&ws->accepted, memory_order_relaxed);
        st->requests += atomic_load_explicit(&ws->requests, memory_order_relaxed);
        st->rejected += atomic_load_explicit(&ws->rejected, memory_order_relaxed);
        st->accept_pauses += atomic_load_explicit(&ws->pauses, memory_order_relaxed);
    }
}

sl_pool *sl_server_handler_pool(sl_server *srv)
{
    return srv ? srv->hpool : NULL;
}

void sl_server_free(sl_server *srv)
{
    if (!srv) return;
    if (srv->state == SRV_SERVING) shutdown_impl(srv, NULL, false);
    for (int i = 0; i < srv->nworkers; i++)
        worker_destroy(&srv->workers[i]);
    for (int i = 0; i < srv->nlis * srv->nworkers; i++)
        if (srv->lfds[i] >= 0) close(srv->lfds[i]);
    free(srv->lfds);
    sl_pool_free(srv->hpool);
    sl_ctx_release(srv->root);
    if (srv->mux) sl__mux_detach(srv->mux);
    pthread_cond_destroy(&srv->cv);
    pthread_mutex_destroy(&srv->mu);
    iptab_destroy(&srv->conns_ip);
    iptab_destroy(&srv->pooled_ip);
    free(srv->workers);
    if (srv->rt_attached) sl__runtime_detach(srv->rt);
    if (srv->own_rt) sl_runtime_free(srv->rt);
    free(srv);
}
