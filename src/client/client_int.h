/* Private to src/client: one in-flight request (a "call") and the helpers that turn libcurl's
 * callbacks and result codes into sluice's response and errors (transfer.c), shared with the
 * loop driver (client.c). */
#ifndef SLUICE_CLIENT_INT_H
#define SLUICE_CLIENT_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <curl/curl.h>

#include "sluice/client.h"
#include "sluice/error.h"
#include "http/reactor.h"

/* One sl_client_do in flight. Lives on the caller's stack: the caller keeps it alive until the
 * loop has published its result (done) and, if the caller posted a cancel, until that cancel
 * ran (cancel_ran): after that the loop never touches it again.
 * Threads: the caller fills it before posting `start` (the post is the release edge); from then
 * on the loop thread owns every field except those marked "guarded by mu". */
typedef struct sl__call {
    sl__task start;  /* posted by the caller: add the transfer to the multi handle */
    sl__task cancel; /* posted by the caller when its ctx fired first */
    struct sl_client *client;
    const sl_client_req *req;
    sl_client_resp *resp;
    CURL *easy;               /* loop thread; NULL once removed from the multi handle */
    struct curl_slist *hdrs;  /* loop thread */
    size_t body_cap, hdr_cap; /* bytes allocated for resp->body / resp->headers */
    uint64_t max_body;
    int cb_err;     /* set by a callback that stopped the transfer (SL_ETOOLARGE, on_body's) */
    int cancel_err; /* the ctx's error; written by the caller before posting cancel */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int rc;          /* the result; guarded by mu */
    bool done;       /* result published; guarded by mu */
    bool cancel_ran; /* the cancel task ran (the loop let go of the call); guarded by mu */
    char errbuf[CURL_ERROR_SIZE];
} sl__call;

/* Configures easy for call k (URL, method, headers, body, callbacks, limits, TLS). Returns 0 or
 * SL_ENOMEM / SL_EINVAL with k->errbuf saying why. Loop thread. */
int sl__client_setup(sl__call *k, CURL *easy, const sl_client_opts *o);

/* The sluice code for a finished transfer's curl result (uses k->cb_err, and the OS errno for
 * connect failures). Loop thread. */
int sl__client_map_result(sl__call *k, CURLcode res);

#endif
