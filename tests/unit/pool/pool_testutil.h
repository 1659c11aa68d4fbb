/* Helpers shared by the sl_pool tests: a log capture, a gate jobs can wait on, and a tracker
 * that records which hook saw each job (to prove "each job reported exactly once"). */
#ifndef SLUICE_POOL_TESTUTIL_H
#define SLUICE_POOL_TESTUTIL_H

#include "harness.h"
#include "sluice/pool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(SLUICE_TSAN) || defined(SLUICE_ASAN)
#define SLACK_MS 5000
#else
#define SLACK_MS 2000
#endif

/* ---- log capture ---- */
typedef struct logcap {
    pthread_mutex_t mu;
    char buf[1 << 16];
    size_t len;
    int lines;
} logcap;

static inline void logcap_sink(void *arg, const char *line, size_t len)
{
    logcap *c = arg;
    pthread_mutex_lock(&c->mu);
    if (c->len + len < sizeof c->buf) {
        memcpy(c->buf + c->len, line, len);
        c->len += len;
        c->buf[c->len] = '\0';
    }
    c->lines++;
    pthread_mutex_unlock(&c->mu);
}

static inline sl_logger *logcap_new(logcap *c, sl_log_level level)
{
    memset(c, 0, sizeof *c);
    pthread_mutex_init(&c->mu, NULL);
    sl_log_opts o = {
        .level = level, .fd = -1, .sink = logcap_sink, .sink_arg = c, .omit_time = true};
    sl_logger *lg = NULL;
    assert_int_equal(sl_logger_new(&o, &lg), 0);
    return lg;
}

static inline bool logcap_has(logcap *c, const char *needle)
{
    pthread_mutex_lock(&c->mu);
    bool has = strstr(c->buf, needle) != NULL;
    pthread_mutex_unlock(&c->mu);
    return has;
}

static inline int logcap_count(logcap *c, const char *needle)
{
    int n = 0;
    pthread_mutex_lock(&c->mu);
    for (const char *p = c->buf; (p = strstr(p, needle)) != NULL; p++)
        n++;
    pthread_mutex_unlock(&c->mu);
    return n;
}

/* ---- tracker: one record per job index ---- */
enum { R_NONE = 0, R_DONE_OK, R_DONE_FAIL, R_DEAD, R_ABANDONED };

typedef struct tracker {
    int n;
    _Atomic int *kind;    /* per job: R_* of the last report */
    _Atomic int *reports; /* per job: how many hook calls */
    _Atomic int *attempts;
    atomic_int freed; /* arg_free calls */
    atomic_int done, dead, abandoned;
} tracker;

typedef struct jarg {
    tracker *t;
    int index;
    void *user;
} jarg;

static tracker *g_tracker_for_free; /* arg_free has no context pointer: one tracker per test */

static inline void tracker_init(tracker *t, int n)
{
    memset(t, 0, sizeof *t);
    t->n = n;
    t->kind = calloc((size_t)n, sizeof *t->kind);
    t->reports = calloc((size_t)n, sizeof *t->reports);
    t->attempts = calloc((size_t)n, sizeof *t->attempts);
    g_tracker_for_free = t;
}

static inline void tracker_destroy(tracker *t)
{
    free(t->kind);
    free(t->reports);
    free(t->attempts);
}

static inline void jarg_free(void *p)
{
    atomic_fetch_add(&g_tracker_for_free->freed, 1);
    free(p);
}

static inline jarg *jarg_new(tracker *t, int index)
{
    jarg *a = malloc(sizeof *a);
    a->t = t;
    a->index = index;
    a->user = NULL;
    return a;
}

static inline void tr_record(tracker *t, const sl_pool_job *job, int kind, int attempts)
{
    jarg *a = job->arg;
    atomic_store(&t->kind[a->index], kind);
    atomic_store(&t->attempts[a->index], attempts);
    atomic_fetch_add(&t->reports[a->index], 1);
}

static inline void tr_on_done(void *h, const sl_pool_job *job, int rc, int attempts)
{
    tracker *t = h;
    tr_record(t, job, rc == 0 ? R_DONE_OK : R_DONE_FAIL, attempts);
    atomic_fetch_add(&t->done, 1);
}

static inline void tr_on_dead(void *h, const sl_pool_job *job, int last_rc)
{
    tracker *t = h;
    tr_record(t, job, R_DEAD, -1);
    atomic_fetch_add(&t->dead, 1);
}

/* on_abandoned owns arg. */
static inline void tr_on_abandoned(void *h, const sl_pool_job *job)
{
    tracker *t = h;
    tr_record(t, job, R_ABANDONED, -1);
    atomic_fetch_add(&t->abandoned, 1);
    jarg_free(job->arg);
}

static inline void tracker_hooks(tracker *t, sl_pool_opts *o)
{
    o->on_done = tr_on_done;
    o->on_dead = tr_on_dead;
    o->on_abandoned = tr_on_abandoned;
    o->hook_arg = t;
}

static inline int tracker_reported(tracker *t)
{
    return atomic_load(&t->done) + atomic_load(&t->dead) + atomic_load(&t->abandoned);
}

/* ---- a gate jobs park on until the test opens it (or their ctx is done) ---- */
#include "sync/sync_int.h"

typedef struct gate {
    pthread_mutex_t mu;
    sl__cond cv;
    bool open;
    atomic_int waiting; /* jobs parked now */
    atomic_int entered; /* jobs that ever entered */
} gate;

static inline void gate_init(gate *g)
{
    memset(g, 0, sizeof *g);
    pthread_mutex_init(&g->mu, NULL);
    sl__cond_init(&g->cv);
}

static inline void gate_open(gate *g)
{
    pthread_mutex_lock(&g->mu);
    g->open = true;
    sl__cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

static inline void gate_destroy(gate *g)
{
    pthread_mutex_destroy(&g->mu);
}

/* Waits until the gate opens (returns 0) or ctx is done (returns its error). */
static inline int gate_pass(gate *g, sl_ctx *ctx)
{
    int rc = 0;
    atomic_fetch_add(&g->entered, 1);
    pthread_mutex_lock(&g->mu);
    atomic_fetch_add(&g->waiting, 1);
    while (!g->open && rc == 0)
        rc = sl__cond_wait(&g->cv, &g->mu, ctx);
    atomic_fetch_sub(&g->waiting, 1);
    pthread_mutex_unlock(&g->mu);
    return rc < 0 ? rc : 0;
}

#endif
