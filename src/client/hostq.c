/* Per-host admission: at most max_conns_per_host transfers of one client in flight to one
 * scheme://host:port, the rest waiting in FIFO order in front of curl.
 *
 * curl enforces CURLMOPT_MAX_HOST_CONNECTIONS itself, but a transfer over the limit still goes
 * through connection setup before curl parks it, and again when it is let through: with 64
 * callers and 8 connections that doubled the loop's work per request. Queuing here costs a
 * hash lookup. curl's limit stays set as the backstop (a redirect to another host, or a URL
 * spelled two ways, e.g. with and without its default port, which are two keys here).
 *
 * A host's entry exists while it has a transfer in flight or queued. Everything here runs on
 * the client's loop thread. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "client/client_int.h"

struct sl__hostq {
    struct sl__hostq *next; /* bucket chain */
    int active;             /* transfers admitted and not finished */
    sl__call *head, *tail;  /* waiting, FIFO */
    size_t len;
    char key[];
};

static uint32_t hash(const char *s, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)s[i]) * 16777619u;
    return h;
}

/* "scheme://host[:port]" of url: the part between "://" and the path, without userinfo. */
static bool url_key(const char *url, const char **start, size_t *len)
{
    const char *p = strstr(url, "://");
    if (!p) return false;
    const char *auth = p + 3;
    const char *end = auth + strcspn(auth, "/?#");
    const char *at = NULL;
    for (const char *q = auth; q < end; q++)
        if (*q == '@') at = q;
    *start = url;
    *len = (size_t)(end - url);
    if (at) return false; /* rare: not worth a copy; curl's own limit still applies */
    return true;
}

static sl__hostq **bucket(sl__hosts *hs, const char *key, size_t len)
{
    return &hs->b[hash(key, len) % SL__HOST_BUCKETS];
}

bool sl__hosts_admit(sl__hosts *hs, sl__call *k, int limit)
{
    const char *key;
    size_t len;
    k->hq = NULL;
    if (!url_key(k->req->url, &key, &len)) return true;
    sl__hostq **b = bucket(hs, key, len), *h;
    for (h = *b; h; h = h->next)
        if (h->len == len && strncasecmp(h->key, key, len) == 0) break;
    if (!h) {
        if (!(h = calloc(1, sizeof *h + len + 1))) return true; /* no queue: curl's limit */
        memcpy(h->key, key, len);
        h->len = len;
        h->next = *b;
        *b = h;
    }
    k->hq = h;
    if (h->active < limit) {
        h->active++;
        k->has_slot = true;
        return true;
    }
    k->qnext = NULL;
    k->qprev = h->tail;
    if (h->tail)
        h->tail->qnext = k;
    else
        h->head = k;
    h->tail = k;
    return false;
}

static void unqueue(sl__hostq *h, sl__call *k)
{
    if (k->qprev)
        k->qprev->qnext = k->qnext;
    else
        h->head = k->qnext;
    if (k->qnext)
        k->qnext->qprev = k->qprev;
    else
        h->tail = k->qprev;
}

sl__call *sl__hosts_release(sl__hosts *hs, sl__call *k)
{
    sl__hostq *h = k->hq;
    if (!h) return NULL;
    k->hq = NULL;
    sl__call *next = NULL;
    if (!k->has_slot) {
        unqueue(h, k);
    } else if (h->head) {
        next = h->head; /* k's slot passes to the first waiter */
        unqueue(h, next);
        next->has_slot = true;
    } else {
        h->active--;
    }
    k->has_slot = false;
    if (h->active == 0 && !h->head) {
        sl__hostq **p = bucket(hs, h->key, h->len);
        while (*p != h)
            p = &(*p)->next;
        *p = h->next;
        free(h);
    }
    return next;
}

void sl__hosts_free(sl__hosts *hs)
{
    for (int i = 0; i < SL__HOST_BUCKETS; i++) {
        while (hs->b[i]) {
            sl__hostq *h = hs->b[i];
            hs->b[i] = h->next;
            free(h);
        }
    }
}
