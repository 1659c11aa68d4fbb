/* Private to src/client: one in-flight request (a "call") and the helpers that turn libcurl's
 * callbacks and result codes into sluice's response and errors (transfer.c), shared with the
 * loop driver (client.c). */
#ifndef SLUICE_CLIENT_INT_H
#define SLUICE_CLIENT_INT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <curl/curl.h>

#include "sluice/client.h"
#include "sluice/error.h"
#include "loop/reactor.h"
#include "sync/park_int.h"

/* The caller's wait is the one every sluice primitive parks on (sync/park_int.h): a task
 * parks, a thread sleeps in a futex. Initialised on the waiter (it records the waiting task). */

/* One sl_client_do in flight. Lives on the caller's stack: the caller keeps it alive until the
 * loop has published the result on `done` and, if the ctx hook posted a cancel, until that
 * cancel ran and published `cancel_done`: after that the loop never touches it again.
 * Threads: the caller fills it before posting `start` (the post is the release edge); from then
 * on the loop thread owns every plain field; the park words carry the hand-backs. */
typedef struct sl__call {
    sl__task start;  /* posted by the caller: add the transfer to the multi handle */
    sl__task cancel; /* posted by the ctx's on-done hook (any thread) */
    struct sl_client *client;
    const sl_client_req *req;
    sl_client_resp *resp;
    CURL *easy;               /* loop thread; NULL once removed from the multi handle */
    struct curl_slist *hdrs;  /* loop thread */
    size_t body_cap, hdr_cap; /* bytes allocated for resp->body / resp->headers */
    uint64_t max_body;
    int cb_err;    /* set by a callback that stopped the transfer (SL_ETOOLARGE, on_body's) */
    int rc;        /* the result; written by the loop before it publishes word */
    bool finished; /* the result is set (done is published at the iteration's end); loop thread */
    struct sl__call *wake_next;     /* in the client's list of calls to wake; loop thread */
    struct sl__hostq *hq;           /* its host's admission entry, or NULL; loop thread */
    bool has_slot;                  /* admitted (counted in hq->active); loop thread */
    struct sl__call *qprev, *qnext; /* in hq's waiting queue, or the client's ready list */
    _Atomic int cancel_err;         /* the ctx's error; written by the hook before posting cancel */
    atomic_bool cancel_posted; /* the hook posted cancel: the caller must wait for cancel_done */
    sl__parker done;           /* DONE once rc and resp are set */
    sl__parker cancel_done;    /* DONE once the cancel task ran */
    char errbuf[CURL_ERROR_SIZE];
} sl__call;

/* Per-host admission (hostq.c): a small hash of scheme://host:port entries. */
#define SL__HOST_BUCKETS 64
typedef struct sl__hostq sl__hostq;
typedef struct sl__hosts {
    sl__hostq *b[SL__HOST_BUCKETS];
} sl__hosts;

/* Admits k for its URL's host: true if it may start now (it took one of limit slots), false
 * if it was queued behind the host's transfers in flight. Loop thread. */
bool sl__hosts_admit(sl__hosts *hs, sl__call *k, int limit);

/* Gives up k's slot, or takes k out of its host's queue. Returns the queued call that now holds
 * the slot (the caller starts it), or NULL. Loop thread. */
sl__call *sl__hosts_release(sl__hosts *hs, sl__call *k);

/* Frees every entry (no call may be in flight). */
void sl__hosts_free(sl__hosts *hs);

/* Configures easy for call k (URL, method, headers, body, callbacks, limits, TLS; noproxy: the
 * hosts never sent through a proxy). Returns 0 or SL_ENOMEM / SL_EINVAL with k->errbuf saying
 * why. Loop thread. */
int sl__client_setup(sl__call *k, CURL *easy, const sl_client_opts *o, const char *noproxy);

/* Points easy's socket open/close callbacks at client c (client.c). Loop thread. */
void sl__client_sock_opts(CURL *easy, struct sl_client *c);

/* The sluice code for a finished transfer's curl result (uses k->cb_err, and the OS errno for
 * connect failures). Loop thread. */
int sl__client_map_result(sl__call *k, CURLcode res);

#endif
