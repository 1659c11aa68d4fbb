/* The client's loop: libcurl's multi-socket interface driven by a sluice reactor.
 *
 * curl tells us which sockets it wants watched (CURLMOPT_SOCKETFUNCTION) and when it next
 * needs the clock (CURLMOPT_TIMERFUNCTION); the reactor watches those sockets in its epoll set
 * and a timerfd for the clock, and hands every readiness back to curl_multi_socket_action.
 * Every curl call happens on the loop thread, so curl needs no locks and there is no thread per
 * request and no curl thread. (A host *name* is resolved by curl's threaded resolver: a
 * short-lived helper thread per lookup, then curl's DNS cache; numeric hosts and "localhost"
 * never leave the loop.)
 *
 * A caller (any thread) fills an sl__call on its stack, posts it to the loop and waits on the
 * call's parking word (sync/park_int.h, the wait sluice's channels use: a task parks there, a
 * thread sleeps in a futex). The loop publishes results with one atomic exchange each, at the
 * end of the loop iteration (wake_callers), after the next transfers are on the wire. If the
 * caller's ctx fires first, its on-done hook posts the call's cancel task: the loop removes the
 * transfer from the multi handle (curl closes a connection it was using mid-way, so the server
 * sees the client go) and publishes the ctx's error. Lifetime rule: the caller returns only
 * after the result is published, the hook is stopped (sl_ctx_hook_stop waits out a running
 * one), and — if the hook posted a cancel — that cancel ran and published the second parking
 * word. After that the loop holds no pointer to the call, so the stack frame may vanish.
 *
 * Socket watchers are freed through the reactor's deferred queue, never inside the callback
 * that removes them: a later event in the same epoll batch may still point at one (the reactor
 * skips a stopped watcher, but it reads it). A kept-alive connection stays registered between
 * transfers (see open_cb), so reusing it costs no epoll_ctl. Easy handles are reused after
 * curl_easy_reset; connections live in the multi handle's cache, bounded by CURLMOPT_MAXCONNECTS.
 * The per-host limit is applied in front of curl (hostq.c), with CURLMOPT_MAX_HOST_CONNECTIONS
 * behind it as the backstop. */
#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "client/client_int.h"
#include "sluice/clock.h"
#include "sync/sync_int.h"

#define EASY_POOL_MAX 64

/* A socket curl asked us to watch. */
typedef struct sockw {
    sl__io io;
    sl__task free_task;        /* deferred free */
    struct sockw *prev, *next; /* the client's live watchers */
    bool owned;      /* opened and closed through our callbacks: its fd's lifetime is known */
    bool registered; /* in the reactor's epoll set */
} sockw;

struct sl_client {
    sl__reactor r;
    pthread_t thr;
    CURLM *multi;     /* loop thread only (after sl_client_new returns) */
    int tfd;          /* timerfd for curl's timeout */
    int64_t due_ns;   /* when curl wants socket_action(TIMEOUT), sl_mono_ns; loop thread */
    int64_t armed_ns; /* what tfd is armed for (INT64_MAX: disarmed); loop thread */
    bool run_now;     /* curl asked for its timeout at once; loop thread */
    sl__io tio;
    sockw *socks;       /* live watchers; loop thread */
    sl__hosts hosts;    /* per-host admission (max_conns_per_host > 0); loop thread */
    sl__call *ready;    /* admitted calls to start (a slot passed to them); loop thread */
    sl__call *wakes;    /* finished calls to wake at the end of this iteration; loop thread */
    bool wake_queued;   /* wake_task is deferred; loop thread */
    sl__task wake_task; /* runs wake_callers */
    sockw **byfd;       /* owned watchers by fd (nbyfd slots); loop thread */
    size_t nbyfd;
    CURL *easy_pool[EASY_POOL_MAX]; /* idle easy handles; loop thread */
    int neasy;
    sl_client_opts o; /* immutable; strings owned below */
    char *ca_file, *user_agent;
    char *noproxy; /* $no_proxy plus loopback; immutable */
    _Atomic uint64_t requests, failed, conns_opened;
};

/* The client whose loop runs on this thread (NULL elsewhere): a call from its own loop (an
 * on_body callback) could never be answered. */
static _Thread_local sl_client *t_loop_client;

static pthread_once_t g_curl_once = PTHREAD_ONCE_INIT;
static CURLcode g_curl_init = CURLE_FAILED_INIT;

static void curl_init_once(void)
{
    g_curl_init = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* ---- curl's sockets and timer on the reactor ------------------------------------------------ */

static void check_done(sl_client *c);
static void drive(sl_client *c);
static void start_transfer(sl_client *c, sl__call *k);

static void sock_io(sl__reactor *r, sl__io *io, uint32_t events)
{
    sl_client *c = r->data;
    int flags = 0;
    if (events & EPOLLIN) flags |= CURL_CSELECT_IN;
    if (events & EPOLLOUT) flags |= CURL_CSELECT_OUT;
    if (events & (EPOLLERR | EPOLLHUP)) flags |= CURL_CSELECT_ERR;
    int running;
    curl_multi_socket_action(c->multi, io->fd, flags, &running);
    drive(c);
}

static void sock_free(sl__reactor *r, sl__task *t)
{
    (void)r;
    free((char *)t - offsetof(sockw, free_task));
}

static sockw *sock_new(sl_client *c, int fd, bool owned)
{
    sockw *w = calloc(1, sizeof *w);
    if (!w) return NULL;
    w->io.fd = fd;
    w->owned = owned;
    w->next = c->socks;
    if (c->socks) c->socks->prev = w;
    c->socks = w;
    if (owned) c->byfd[fd] = w;
    return w;
}

/* Unregisters and unlists w; frees it after the current batch of events (a later event of the
 * batch may still point at it). */
static void sock_release(sl_client *c, sockw *w)
{
    if (w->registered) sl__io_stop(&c->r, &w->io);
    w->registered = false;
    if (w->prev)
        w->prev->next = w->next;
    else
        c->socks = w->next;
    if (w->next) w->next->prev = w->prev;
    if (w->owned) c->byfd[w->io.fd] = NULL;
    w->free_task.fn = sock_free;
    sl__reactor_defer(&c->r, &w->free_task);
}

/* An event on a kept connection curl is not watching (the server closed it, or sent bytes it
 * should not have): stop watching, or level-triggered epoll would report it forever. curl finds
 * the connection dead when it next tries to reuse it and closes it. */
static void kept_io(sl__reactor *r, sl__io *io, uint32_t events)
{
    (void)events;
    sockw *w = (sockw *)((char *)io - offsetof(sockw, io));
    sl__io_stop(r, io);
    w->registered = false;
}

/* Connection sockets are opened and closed here so that their registration can outlive a
 * transfer: when curl stops watching a connection it keeps for reuse, the watcher stays in the
 * epoll set (switched to kept_io), and the next transfer on it costs no epoll_ctl at all. Only
 * sockets we close ourselves can be kept: for any other fd (curl's resolver wake-up pair) we
 * could not tell whether a later socket with the same number is the same one. */
static curl_socket_t open_cb(void *clientp, curlsocktype purpose, struct curl_sockaddr *a)
{
    sl_client *c = clientp;
    (void)purpose;
    int fd = socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
    if (fd < 0) return CURL_SOCKET_BAD;
    if ((size_t)fd >= c->nbyfd) {
        size_t n = c->nbyfd ? c->nbyfd : 64;
        while (n <= (size_t)fd)
            n *= 2;
        sockw **t = realloc(c->byfd, n * sizeof *t);
        if (!t) goto fail;
        memset(t + c->nbyfd, 0, (n - c->nbyfd) * sizeof *t);
        c->byfd = t;
        c->nbyfd = n;
    }
    if (!sock_new(c, fd, true)) goto fail;
    return fd;
fail:
    close(fd);
    return CURL_SOCKET_BAD;
}

static int close_cb(void *clientp, curl_socket_t fd)
{
    sl_client *c = clientp;
    if (fd >= 0 && (size_t)fd < c->nbyfd && c->byfd[fd]) sock_release(c, c->byfd[fd]);
    return close(fd);
}

void sl__client_sock_opts(CURL *e, struct sl_client *c)
{
    curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, open_cb);
    curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, c);
    curl_easy_setopt(e, CURLOPT_CLOSESOCKETFUNCTION, close_cb);
    curl_easy_setopt(e, CURLOPT_CLOSESOCKETDATA, c);
}

static int sock_cb(CURL *e, curl_socket_t s, int what, void *userp, void *socketp)
{
    (void)e;
    sl_client *c = userp;
    sockw *w = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (!w) return 0;
        curl_multi_assign(c->multi, s, NULL);
        if (!w->owned)
            sock_release(c, w);
        else if (w->registered)
            w->io.fn = kept_io;
        return 0;
    }
    uint32_t ev = (what & CURL_POLL_IN ? EPOLLIN : 0) | (what & CURL_POLL_OUT ? EPOLLOUT : 0);
    if (!w && s >= 0 && (size_t)s < c->nbyfd) w = c->byfd[s];
    if (!w && !(w = sock_new(c, s, false))) return -1;
    int rc;
    if (w->registered) {
        w->io.fn = sock_io;
        rc = sl__io_set(&c->r, &w->io, ev); /* no syscall when the interest is unchanged */
    } else {
        rc = sl__io_start(&c->r, &w->io, s, ev, sock_io);
        w->registered = rc == 0;
    }
    if (rc < 0) {
        if (!w->owned) sock_release(c, w);
        return -1;
    }
    curl_multi_assign(c->multi, s, w);
    return 0;
}

/* Arms the timerfd only when curl wants the clock earlier than it is armed for: curl moves its
 * timeout on almost every step of a transfer, and a syscall each time cost more than the rest
 * of the loop. A timerfd that fires early (curl moved its timeout later or cancelled it) is
 * re-armed or ignored in timer_io. */
static void timer_arm(sl_client *c)
{
    if (c->due_ns >= c->armed_ns) return;
    struct itimerspec its = {
        .it_value = {.tv_sec = c->due_ns / 1000000000LL, .tv_nsec = c->due_ns % 1000000000LL}};
    if (timerfd_settime(c->tfd, TFD_TIMER_ABSTIME, &its, NULL) == 0) c->armed_ns = c->due_ns;
}

static int timer_cb(CURLM *m, long ms, void *userp)
{
    (void)m;
    sl_client *c = userp;
    c->run_now = false;
    if (ms < 0) {
        c->due_ns = INT64_MAX;
    } else if (ms == 0) {
        /* "Call me at once": done by drive() right after curl returns (curl must not be
         * re-entered from its own callback), without a trip through the timerfd. */
        c->due_ns = INT64_MAX;
        c->run_now = true;
    } else {
        c->due_ns = sl_mono_ns() + (int64_t)ms * 1000000;
        timer_arm(c);
    }
    return 0;
}

/* Runs what curl asked to run at once, then hands finished transfers back to their callers
 * (finishing one may let a queued transfer start: loop until curl is quiet). */
static void drive(sl_client *c)
{
    do {
        while (c->ready) {
            sl__call *k = c->ready;
            c->ready = k->qnext;
            start_transfer(c, k);
        }
        while (c->run_now) {
            c->run_now = false;
            int running;
            curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
        }
        check_done(c);
    } while (c->run_now || c->ready);
}

static void timer_io(sl__reactor *r, sl__io *io, uint32_t events)
{
    (void)events;
    sl_client *c = r->data;
    uint64_t n;
    ssize_t got = read(io->fd, &n, sizeof n); /* EAGAIN: re-armed meanwhile, still fire */
    (void)got;
    c->armed_ns = INT64_MAX;
    if (c->due_ns <= sl_mono_ns()) {
        c->due_ns = INT64_MAX;
        c->run_now = true;
    }
    drive(c);
    timer_arm(c);
}

/* ---- calls -------------------------------------------------------------------------------- */

static CURL *easy_get(sl_client *c)
{
    return c->neasy ? c->easy_pool[--c->neasy] : curl_easy_init();
}

static void easy_put(sl_client *c, CURL *e)
{
    if (c->neasy < EASY_POOL_MAX) {
        curl_easy_reset(e);
        c->easy_pool[c->neasy++] = e;
    } else {
        curl_easy_cleanup(e);
    }
}

/* Takes the transfer off the loop, sets the result, passes k's host slot on, and queues the
 * caller's wake-up for the end of the iteration (wake_callers). */
static void call_finish(sl_client *c, sl__call *k, int rc)
{
    sl_client_resp *resp = k->resp;
    if (k->easy) {
        long n = 0;
        if (curl_easy_getinfo(k->easy, CURLINFO_NUM_CONNECTS, &n) == CURLE_OK && n > 0) {
            resp->new_conns = (uint32_t)n;
            atomic_fetch_add_explicit(&c->conns_opened, (uint64_t)n, memory_order_relaxed);
        }
        if (rc == 0) {
            long status = 0;
            curl_easy_getinfo(k->easy, CURLINFO_RESPONSE_CODE, &status);
            resp->status = (int)status;
        }
        curl_multi_remove_handle(c->multi, k->easy);
        easy_put(c, k->easy);
        k->easy = NULL;
    }
    curl_slist_free_all(k->hdrs);
    k->hdrs = NULL;
    if (rc < 0) {
        free(resp->headers);
        free(resp->body);
        resp->headers = resp->body = NULL;
        resp->headers_len = resp->body_len = 0;
        resp->status = 0;
        const char *msg = k->errbuf[0] ? k->errbuf : sl_strerror(rc);
        snprintf(resp->errmsg, sizeof resp->errmsg, "%s", msg);
        atomic_fetch_add_explicit(&c->failed, 1, memory_order_relaxed);
    }
    if (k->hq) {
        sl__call *next = sl__hosts_release(&c->hosts, k);
        if (next) { /* started by drive(), never from here: no recursion through failures */
            next->qnext = c->ready;
            c->ready = next;
        }
    }
    k->rc = rc;
    k->finished = true;
    k->wake_next = c->wakes;
    c->wakes = k;
    if (!c->wake_queued) {
        c->wake_queued = true;
        sl__reactor_defer(&c->r, &c->wake_task);
    }
}

/* Wakes the callers whose calls finished during this loop iteration, after the iteration's
 * curl work: a woken caller thread may preempt the loop on its CPU, and the transfers waiting
 * for a connection should be on the wire before that. Nothing touches a call after its wake. */
static void wake_callers(sl__reactor *r, sl__task *t)
{
    (void)t;
    sl_client *c = r->data;
    sl__call *k = c->wakes;
    c->wakes = NULL;
    c->wake_queued = false;
    while (k) {
        sl__call *next = k->wake_next;
        sl__park_finish(&k->done, SL__DONE);
        k = next;
    }
}

static void check_done(sl_client *c)
{
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(c->multi, &left))) {
        if (m->msg != CURLMSG_DONE) continue;
        sl__call *k = NULL;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&k);
        CURLcode res = m->data.result; /* m is invalid once the handle is removed */
        call_finish(c, k, sl__client_map_result(k, res));
    }
}

/* Hands k's transfer to curl (k holds its host slot, if limits are on). */
static void start_transfer(sl_client *c, sl__call *k)
{
    CURL *e = easy_get(c);
    if (!e) {
        call_finish(c, k, SL_ENOMEM);
        return;
    }
    int rc = sl__client_setup(k, e, &c->o, c->noproxy);
    if (rc == 0 && curl_multi_add_handle(c->multi, e) != CURLM_OK) rc = SL_ENOMEM;
    if (rc < 0) {
        easy_put(c, e);
        call_finish(c, k, rc);
        return;
    }
    k->easy = e;
}

static void call_start(sl__reactor *r, sl__task *t)
{
    sl_client *c = r->data;
    sl__call *k = (sl__call *)((char *)t - offsetof(sl__call, start));
    atomic_fetch_add_explicit(&c->requests, 1, memory_order_relaxed);
    int limit = c->o.max_conns_per_host;
    if (limit > 0 && !sl__hosts_admit(&c->hosts, k, limit)) return; /* queued for its host */
    start_transfer(c, k);
    drive(c);
}

/* The cancel posted by the ctx hook. It always runs after the call's start (the hook is
 * registered after start was posted, and posts run in order), maybe after the transfer
 * finished by itself: then there is nothing to stop. */
static void call_cancel(sl__reactor *r, sl__task *t)
{
    sl_client *c = r->data;
    sl__call *k = (sl__call *)((char *)t - offsetof(sl__call, cancel));
    if (!k->finished) {
        k->errbuf[0] = 0;
        call_finish(c, k, atomic_load_explicit(&k->cancel_err, memory_order_relaxed));
    }
    sl__park_finish(&k->cancel_done, SL__DONE); /* k may be gone after this */
    drive(c);
}

/* The ctx's on-done hook (the cancelling thread, or the ctx timer thread). */
static void call_ctx_done(void *arg, int err)
{
    sl__call *k = arg;
    atomic_store_explicit(&k->cancel_err, err, memory_order_relaxed);
    atomic_store_explicit(&k->cancel_posted, true, memory_order_release);
    sl__reactor_post(&k->client->r, &k->cancel);
}

int sl_client_do(sl_client *c, const sl_client_req *req, sl_client_resp *resp, sl_ctx *ctx)
{
    if (!c || !req || !resp) return SL_EINVAL;
    memset(resp, 0, sizeof *resp);
    if (!req->url || req->timeout_ns < 0) return SL_EINVAL;
    if (t_loop_client == c) return SL_EDEADLK;
    int rc = sl_ctx_err(ctx);
    if (rc < 0) {
        snprintf(resp->errmsg, sizeof resp->errmsg, "%s", sl_strerror(rc));
        return rc;
    }
    sl__call k = {.client = c, .req = req, .resp = resp};
    k.start.fn = call_start;
    k.cancel.fn = call_cancel;
    sl__parker_init(&k.done);
    sl__parker_init(&k.cancel_done);
    sl__reactor_post(&c->r, &k.start);
    /* The hook is registered after start was posted, so its cancel is queued behind start. */
    sl_ctx_hook *hook = NULL;
    if (sl__ctx_can_be_done(ctx) && sl_ctx_on_done(ctx, call_ctx_done, &k, &hook) < 0)
        call_ctx_done(&k, SL_ENOMEM); /* no hook: the ctx could not stop us, give up now */
    sl__park_wait(&k.done);
    /* Waits out a hook running right now, so cancel_posted is final after this. */
    sl_ctx_hook_stop(hook);
    if (atomic_load_explicit(&k.cancel_posted, memory_order_acquire)) sl__park_wait(&k.cancel_done);
    return k.rc;
}

int sl_client_get(sl_client *c, const char *url, sl_client_resp *resp, sl_ctx *ctx)
{
    sl_client_req q = {.url = url};
    return sl_client_do(c, &q, resp, ctx);
}

void sl_client_stats_get(const sl_client *c, sl_client_stats *st)
{
    sl_client *m = (sl_client *)c; /* atomics are read-only here */
    st->requests = atomic_load_explicit(&m->requests, memory_order_relaxed);
    st->failed = atomic_load_explicit(&m->failed, memory_order_relaxed);
    st->conns_opened = atomic_load_explicit(&m->conns_opened, memory_order_relaxed);
}

/* ---- lifecycle ---------------------------------------------------------------------------- */

static void *loop_main(void *arg)
{
    sl_client *c = arg;
    t_loop_client = c;
    sl__reactor_run(&c->r);
    return NULL;
}

/* Runs on the loop: closes curl's connections, frees its handles and watchers, stops the loop.
 * curl_multi_cleanup closes cached connections without always reporting CURL_POLL_REMOVE, so
 * the watchers still listed are freed here (their fds are closed: epoll dropped them). */
static void loop_stop(sl__reactor *r, sl__task *t)
{
    (void)t;
    sl_client *c = r->data;
    curl_multi_cleanup(c->multi);
    c->multi = NULL;
    while (c->neasy)
        curl_easy_cleanup(c->easy_pool[--c->neasy]);
    while (c->socks)
        sock_release(c, c->socks);
    free(c->byfd);
    c->byfd = NULL;
    sl__hosts_free(&c->hosts);
    c->nbyfd = 0;
    sl__io_stop(r, &c->tio);
    sl__reactor_stop(r);
}

static void client_destroy(sl_client *c)
{
    if (c->multi) curl_multi_cleanup(c->multi);
    if (c->tfd >= 0) close(c->tfd);
    sl__reactor_destroy(&c->r);
    free(c->ca_file);
    free(c->user_agent);
    free(c->noproxy);
    free(c);
}

void sl_client_free(sl_client *c)
{
    if (!c) return;
    sl__task stop = {.fn = loop_stop};
    sl__reactor_post(&c->r, &stop);
    pthread_join(c->thr, NULL);
    client_destroy(c);
}

static int opts_check(const sl_client_opts *o)
{
    if (o->max_conns_per_host < 0 || o->max_idle_conns < 0 || o->connect_timeout_ns < 0 ||
        o->timeout_ns < 0 || o->max_redirects < 0)
        return SL_EINVAL;
    return 0;
}

static int multi_setup(sl_client *c)
{
    if (!(c->multi = curl_multi_init())) return SL_ENOMEM;
    CURLM *m = c->multi;
    curl_multi_setopt(m, CURLMOPT_SOCKETFUNCTION, sock_cb);
    curl_multi_setopt(m, CURLMOPT_SOCKETDATA, c);
    curl_multi_setopt(m, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(m, CURLMOPT_TIMERDATA, c);
    curl_multi_setopt(m, CURLMOPT_MAXCONNECTS, (long)c->o.max_idle_conns);
    if (c->o.max_conns_per_host > 0)
        curl_multi_setopt(m, CURLMOPT_MAX_HOST_CONNECTIONS, (long)c->o.max_conns_per_host);
    return 0;
}

int sl_client_new(const sl_client_opts *opts, sl_client **out)
{
    sl_client_opts o = opts ? *opts : (sl_client_opts){0};
    if (!out || opts_check(&o) < 0) return SL_EINVAL;
    pthread_once(&g_curl_once, curl_init_once);
    if (g_curl_init != CURLE_OK) return SL_EIO;
    if (!o.max_idle_conns) o.max_idle_conns = 100;
    if (!o.connect_timeout_ns) o.connect_timeout_ns = SL_SEC(30);
    if (!o.max_response_bytes) o.max_response_bytes = 64u << 20;
    sl_client *c = calloc(1, sizeof *c);
    if (!c) return SL_ENOMEM;
    c->tfd = -1;
    c->due_ns = c->armed_ns = INT64_MAX;
    c->wake_task.fn = wake_callers;
    c->o = o;
    c->ca_file = o.ca_file ? strdup(o.ca_file) : NULL;
    c->user_agent = strdup(o.user_agent ? o.user_agent : "sluice");
    /* Proxies come from the environment (http_proxy, https_proxy, no_proxy) as with Go's
     * DefaultTransport, which also never proxies loopback: no_proxy is read once, here, and
     * loopback added (CURLOPT_NOPROXY replaces the variable, it does not extend it). */
    const char *np = getenv("no_proxy") ? getenv("no_proxy") : getenv("NO_PROXY");
    if (asprintf(&c->noproxy, "%s%slocalhost,127.0.0.1,::1", np ? np : "", np && np[0] ? "," : "") <
        0)
        c->noproxy = NULL;
    c->o.ca_file = c->ca_file;
    c->o.user_agent = c->user_agent;
    int rc = sl__reactor_init(&c->r);
    if (rc < 0) goto fail;
    c->r.data = c;
    rc = SL_ENOMEM;
    if ((o.ca_file && !c->ca_file) || !c->user_agent || !c->noproxy) goto fail;
    if ((c->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC)) < 0) {
        rc = sl_from_errno(errno);
        goto fail;
    }
    if ((rc = sl__io_start(&c->r, &c->tio, c->tfd, EPOLLIN, timer_io)) < 0) goto fail;
    if ((rc = multi_setup(c)) < 0) goto fail;
    /* The thread is created last: from here on only the loop touches multi. */
    if ((rc = pthread_create(&c->thr, NULL, loop_main, c)) != 0) {
        rc = sl_from_errno(rc);
        goto fail;
    }
    *out = c;
    return 0;
fail:
    client_destroy(c);
    return rc;
}
