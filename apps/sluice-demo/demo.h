/* sluice-demo: the pieces of the service shared by its files (private to the app).
 *
 * main.c     flags, start-up banner, signals, the shutdown sequence and its summary
 * config.c   flag parsing and --help
 * store.c    the user store (sl_map) and JSON encoding/validation of users (jansson)
 * store_db.c --db: the users table in SQLite (default) or PostgreSQL (shared by instances)
 * jobs.c     the background job pool: welcome e-mails and webhooks, with their hooks
 * webhook.c  webhook delivery with sl_client (--webhook-url), its counters and the receiver
 * rjobs.c    --redis: the same jobs as durable jobs on Redis Streams, shared by instances
 * rlimit.c   --redis: the Redis limiter behind the policy's per-client-IP rule (shared)
 * routes.c   the HTTP handlers and the route table
 *
 * Threads: a demo_app is built by main before serving and only read afterwards, except the
 * atomic counters, which any thread updates. */
#ifndef SLUICE_DEMO_H
#define SLUICE_DEMO_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "sluice/ratelimit.h"
#include "sluice/sluice.h"

#define DEMO_MAX_KEYS    32 /* API keys given with --api-key (plus the built-in ones) */
#define DEMO_MAX_PROXIES 16 /* CIDRs in --trusted-proxies */

enum { DEMO_TIER_FREE, DEMO_TIER_PRO, DEMO_TIER_ENTERPRISE, DEMO_NTIERS };

typedef struct demo_config {
    const char *addr; /* listen address */
    int port;
    int reactors;        /* 0: one per CPU */
    int handler_workers; /* pooled-handler threads; 0: the library's default */
    int job_workers;     /* background job threads */
    int queue;           /* job queue capacity */
    /* limits, events/s and bursts */
    double global_rate;
    int64_t global_burst;
    double ip_rate;
    int64_t ip_burst;
    double tier_rate[DEMO_NTIERS];
    int64_t tier_burst[DEMO_NTIERS];
    bool no_limits;
    /* API keys: key -> tier (the built-in demo keys unless --no-demo-keys) */
    const char *key_name[DEMO_MAX_KEYS];
    int key_tier[DEMO_MAX_KEYS];
    size_t nkeys;
    /* trusted proxies */
    sl_cidr proxies[DEMO_MAX_PROXIES];
    size_t nproxies;
    unsigned client_ip_header; /* SL_CLIENTIP_XFF or SL_CLIENTIP_FORWARDED: the one believed */
    /* simulated work */
    int64_t email_ns;   /* one welcome e-mail */
    int64_t webhook_ns; /* --webhook-ms: ignored (webhooks are delivered for real) */
    int64_t search_ns;  /* one search */
    int64_t item_ns;    /* one batch item */
    int batch_limit;    /* batch items in flight */
    int batch_max;      /* items in one batch */
    size_t users_max_body;
    int users_max; /* users kept in memory at most (the store is a bounded cache) */
    uint64_t max_body;
    /* shutdown */
    int64_t grace_ns;      /* server: in-flight requests */
    int64_t jobs_drain_ns; /* job pool: queued jobs */
    /* logs */
    sl_log_format log_format;
    sl_log_level log_level;
    const char *db;             /* --db: SQLite path or URL, postgres://..., "none": in memory */
    const char *redis;          /* --redis URL, or NULL */
    char redis_host[256];       /* parsed from redis */
    int redis_port;             /* parsed from redis */
    int64_t visibility_ns;      /* Redis jobs: a job pending this long is reclaimed */
    int redis_fail;             /* sl_redis_fail_policy of the shared per-IP limit */
    int64_t redis_timeout_ns;   /* one per-IP check's Redis round trip, then the policy */
    const char *webhook_url;    /* --webhook-url, or NULL: this demo's own receiver */
    int64_t webhook_timeout_ns; /* one delivery attempt */
} demo_config;

typedef struct demo_rjobs demo_rjobs;
typedef struct demo_rlimit demo_rlimit;
typedef struct demo_webhooks demo_webhooks;

typedef struct demo_app {
    demo_config cfg;
    sl_logger *log;
    sl_map *users;           /* id (decimal text) -> demo_user (without --db) */
    sl_db *db;               /* the users table (--db), else NULL */
    _Atomic int64_t next_id; /* last id handed out */
    _Atomic int64_t nusers;  /* users stored (<= cfg.users_max) */
    sl_pool *jobs;           /* the in-memory job pool (without --redis), else NULL */
    demo_rjobs *rjobs;       /* the Redis job queues (with --redis), else NULL */
    demo_rlimit *rlimit;     /* the shared per-IP limit (with --redis and limits), else NULL */
    demo_webhooks *webhooks; /* webhook delivery (webhook.c) */
    sl_pool *handlers;       /* the server's handler pool (for /healthz), set before serving */
    /* job outcomes, reported by the pool's hooks */
    _Atomic uint64_t jobs_done, jobs_failed, jobs_dead, jobs_abandoned;
    _Atomic uint64_t searches_stopped; /* searches whose client went away */
    _Atomic uint64_t jobs_not_queued;  /* accepted work (a stored user's welcome e-mail) that
                                          could not be queued: counted, logged, in /metrics */
} demo_app;

/* A stored user. Fixed size: sl_map values are copied in and out. */
typedef struct demo_user {
    int64_t id;
    int64_t created_ms; /* wall clock, ms since the epoch */
    char name[101];
    char email[255];
} demo_user;

/* config.c */
/* Parses argv into *cfg (defaults first). Returns 0 to run, 1 after printing --help (exit 0),
 * or -1 after printing an error (exit 2). */
int demo_config_parse(demo_config *cfg, int argc, char **argv);
void demo_config_usage(FILE *out);
const char *demo_tier_name(int tier);

/* store.c */
int demo_store_init(demo_app *app);
void demo_store_destroy(demo_app *app);
/* Validates a POST /users body. Returns 0 and fills *u (id and time not set), or writes a
 * NUL-terminated reason into err and returns SL_EINVAL. */
int demo_user_parse(const void *body, size_t len, demo_user *u, char *err, size_t errlen);
/* Gives u an id and stores it. Returns 0 or an SL_E* code. */
int demo_user_create(demo_app *app, demo_user *u);
/* Looks the user up by id text. Returns 0 or SL_ENOENT. */
int demo_user_get(demo_app *app, const char *id, size_t idlen, demo_user *out);
/* The user as JSON (malloc'd, NUL-terminated), or NULL when out of memory. */
char *demo_user_json(const demo_user *u);

/* store_db.c: open (schema at start; nothing with --db none) and close the database; create
 * (SL_EUNIQUE for a taken e-mail: 409) and get (SL_ENOENT) users in it, under the request's
 * ctx. */
int demo_db_open(demo_app *app);
void demo_db_close(demo_app *app);
int demo_db_user_create(demo_app *app, demo_user *u, sl_ctx *ctx);
int demo_db_user_get(demo_app *app, const char *id, size_t idlen, demo_user *out, sl_ctx *ctx);

/* jobs.c */
int demo_jobs_init(demo_app *app);
/* With --redis the calls below go to rjobs.c: the same contracts, errors from Redis
 * (SL_EUNAVAIL, SL_EREDIS, the ctx's) instead of SL_EFULL. */
/* Queues the welcome e-mail of u, waiting up to ctx for room. Returns sl_pool_submit's code. */
int demo_jobs_welcome(demo_app *app, const demo_user *u, sl_ctx *ctx);
/* Try-submits one webhook delivery (event: the request body's first bytes, copied). Returns
 * 0, SL_EFULL (answer 503), SL_ECLOSED or SL_ENOMEM. *job_id gets the job id. */
int demo_jobs_webhook(demo_app *app, const void *body, size_t len, sl_ctx *ctx,
                      char job_id[SL_POOL_ID_MAX + 1]);
/* Without --redis: drains the pool within cfg.jobs_drain_ns and fills *r. With --redis: stops
 * and joins the Redis workers (their jobs in flight stay pending in Redis, for another
 * instance), and fills *r with this instance's counts (abandoned = jobs left running). */
/* Drains the jobs until the drain deadline or until hurry is done (a second signal), then
 * hands back (reports) every job still queued. hurry may be NULL. */
int demo_jobs_shutdown(demo_app *app, sl_ctx *hurry, sl_pool_report *r);
void demo_jobs_free(demo_app *app);

/* rjobs.c: the same jobs on Redis Streams (sl_redis_jobs), one queue per kind. */
int demo_rjobs_init(demo_app *app);
int demo_rjobs_welcome(demo_app *app, const demo_user *u, sl_ctx *ctx);
/* Submits one webhook (blocks one round trip: the route is pooled with --redis). A body holding
 * "slow":true makes a job that blocks on its first run until its worker stops: only a
 * reclaimed (or retried) run completes it, which shows that another instance takes over. */
int demo_rjobs_webhook(demo_app *app, const void *body, size_t len, sl_ctx *ctx,
                       char job_id[SL_POOL_ID_MAX + 1]);
int demo_rjobs_shutdown(demo_app *app, sl_pool_report *r);
void demo_rjobs_free(demo_app *app);

/* rlimit.c: the per-client-IP limit shared through Redis. */
int demo_rlimit_init(demo_app *app);
void demo_rlimit_free(demo_app *app);
/* The limiter backing the policy's "ip" rule (NULL without --redis). */
sl_redis_limiter *demo_rlimit_limiter(demo_app *app);

/* webhook.c: delivery of POST /webhooks payloads to the configured target with sl_client. */
/* Creates the client (and copies --webhook-url). Returns 0 or an sl_client_new error. */
int demo_webhooks_init(demo_app *app);
/* Without --webhook-url, points deliveries at this demo's POST /webhooks/receiver on port.
 * Call after listening, before serving. Returns 0 or SL_ENOMEM. */
int demo_webhooks_start(demo_app *app, int port);
const char *demo_webhooks_url(const demo_app *app);
/* One delivery attempt (number attempt, from 1) of body to the target under ctx (which holds
 * the attempt's deadline). Returns 0 (a 2xx), SL_EPERMANENT (another 3xx/4xx but 408/429, or a
 * URL curl refuses), SL_EUNAVAIL (5xx, 408, 429) or sl_client_do's error (retryable). Counts
 * deliveries and retries. Blocks. */
int demo_webhooks_deliver(demo_app *app, sl_ctx *ctx, const char *id, int attempt, const void *body,
                          size_t len);
/* Counts a webhook's final failure: rc SL_EPERMANENT (failed) or the last retryable rc (dead). */
void demo_webhooks_count_end(demo_app *app, int rc);
/* Try-submits the delivery of body (copied) on app->jobs as job job_id. Returns
 * sl_pool_try_submit's code, or SL_ENOMEM. */
int demo_webhooks_submit(demo_app *app, const void *body, size_t len, const char *job_id);
/* For the pool's hooks: is job a webhook delivery; count and report its end (on_done's rc, or
 * on_dead's last rc: then it is dead-lettered). */
bool demo_webhooks_owns(const sl_pool_job *job);
void demo_webhooks_ended(demo_app *app, const sl_pool_job *job, int rc);
const char *demo_webhooks_what(const sl_pool_job *job);
/* Registers the webhook counters (sluice_demo_webhooks_*_total) in reg. */
int demo_webhooks_metrics(demo_app *app, sl_metrics *reg);
/* Frees the client; after the job pool has stopped. NULL-safe. */
void demo_webhooks_free(demo_app *app);

#endif /* SLUICE_DEMO_H */
