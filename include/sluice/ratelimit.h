/* sl_ratelimit: the policy core of the rate-limit middleware, independent of any server.
 *
 * A policy is an ordered list of rules, each one token bucket or one table of buckets:
 *   SL_RATELIMIT_GLOBAL  one sl_limiter shared by every request;
 *   SL_RATELIMIT_IP      an sl_keyed table keyed by the client's address, grouped by prefix
 *                        (IPv4 /32, IPv6 /64 by default). For /64 and /48 at once, add two IP
 *                        rules (each its own table): every rule must allow, so the tightest
 *                        wins;
 *   SL_RATELIMIT_APIKEY  an sl_keyed table keyed by a request header ("X-API-Key"), with tiers
 *                        (free/pro/enterprise: key -> {limit, burst} by callback or table); a
 *                        missing key answers 401 unless the rule says the key is optional;
 *   SL_RATELIMIT_CUSTOM  an sl_keyed table keyed by what a callback computes from the request.
 *
 * One decision (sl_ratelimit_decide_at) reserves the request's cost on each rule in order. A
 * rule that cannot grant it without a wait rejects the request (nothing is queued), and the
 * reservations already made on the earlier rules are cancelled, which gives their tokens back
 * exactly: a request rejected by one rule consumes no other rule's budget. (Middlewares stacked
 * one per limiter, as in the Go seed, leak them.) Dry-run rules count and log what they would
 * reject and reject nothing.
 *
 * The answer is data, not I/O: a status (0 = allow, 429, 401, or 503 on an internal error),
 * header lines and a body in caller storage, so the middleware writes it with any response
 * API. Headers, switchable:
 *   Retry-After: <s>                            (rejections) the wait rounded up, never 0,
 *                                               plus optional jitter;
 *   RateLimit-Policy: "<name>";q=<q>;w=<w>      IETF draft-ietf-httpapi-ratelimit-headers;
 *   RateLimit: "<name>";r=<r>;t=<t>
 *   X-RateLimit-Limit/-Remaining/-Reset: q, r, t (the legacy trio).
 * For a rule of limit L events/s and burst B, with T tokens left after this request:
 *   q = B (the most requests a full bucket passes at once),
 *   w = ceil(B / L) seconds (the time an empty bucket takes to fill again),
 *   r = floor(T) (never negative),
 *   t = ceil((B - T) / L) seconds (until the bucket is full again; 0 when full).
 * RateLimit-Policy lists (a Structured Field List) the policy of every rule that applies to
 * the request, in rule order (on a rejection also the untiered rules after the rejecting one);
 * RateLimit lists each reached rule's state on success, only the rejecting rule's on a
 * rejection. The legacy trio describes one rule: the rejecting one, or on success the tightest
 * (fewest remaining, the first such in order). Rules with SL_RATE_INF, dry-run rules and a
 * Redis rule answered fail-open are never described. Bodies: {"error":"rate limit
 * exceeded","retry_after":N} or an RFC 9457 problem (application/problem+json: type, title, status,
 * detail, retry_after).
 *
 * The client address is the peer's, or, when the peer is a trusted proxy, the one that
 * X-Forwarded-For or Forwarded (RFC 7239) names: see sl_clientip_resolve below.
 *
 * A rule may count in Redis instead of in memory (sl_ratelimit_rule.redis): same keys, tiers,
 * rollback and answers; a decision reaching it waits for one round trip (sl_ratelimit_decide:
 * a task parks, a plain thread blocks, a loop thread outside a task does not wait and the
 * limiter's fail policy answers). docs/ratelimit.md has the details and how exact the
 * rollback is.
 *
 * Threads: any. A policy is shared by every reactor thread; decide and stats may run
 * concurrently from any number of threads. Without Redis rules nothing here blocks. */
#ifndef SLUICE_RATELIMIT_H
#define SLUICE_RATELIMIT_H

#include "sluice/common.h"
#include "sluice/ctx.h"
#include "sluice/ipkey.h"
#include "sluice/keyed.h"
#include "sluice/log.h"
#include "sluice/redis_limiter.h"

SL_BEGIN_DECLS

/* A borrowed byte string (a header value: not NUL-terminated). */
typedef struct sl_ratelimit_str {
    const char *p;
    size_t len;
} sl_ratelimit_str;

/* Looks up the header `name` (case-insensitive; ASCII, NUL-terminated): stores the values of
 * up to cap lines with that name into out, in the order they appear in the request, and
 * returns how many such lines the request has (which may exceed cap). Values are the field
 * values as received, leading and trailing whitespace optional. They must stay valid for the
 * decision. Called on the deciding thread, any number of times per decision. */
typedef size_t (*sl_ratelimit_headers_fn)(void *arg, const char *name, sl_ratelimit_str *out,
                                          size_t cap);

/* ---- client address ---------------------------------------------------------------------- */

/* Which one header names the client behind a trusted proxy. Exactly one is trusted: a
 * proxy that appends X-Forwarded-For passes a client's own Forwarded header through untouched
 * (and the other way round), so believing both would let a client pick its own key. */
#define SL_CLIENTIP_XFF       1u /* X-Forwarded-For (the default: sources 0 means this) */
#define SL_CLIENTIP_FORWARDED 2u /* Forwarded (RFC 7239) */

/* Where sl_clientip_resolve found the address. */
#define SL_CLIENTIP_FROM_PEER      0
#define SL_CLIENTIP_FROM_XFF       1
#define SL_CLIENTIP_FROM_FORWARDED 2

#define SL_CLIENTIP_MAX_HOPS  32 /* forwarding entries examined, rightmost first */
#define SL_CLIENTIP_MAX_LINES 16 /* header lines of one name read */

typedef struct sl_clientip_config {
    const sl_cidr *trusted; /* the proxies whose forwarding headers are believed */
    size_t ntrusted;
    unsigned sources; /* SL_CLIENTIP_XFF (also 0) or SL_CLIENTIP_FORWARDED, not both */
} sl_clientip_config;

/* Finds the client's address: the peer's, unless the peer is in cfg->trusted. Then the one
 * forwarding header cfg->sources names is read, and the other ignored (several lines of one
 * name are one list, in order; empty list elements are skipped as RFC 9110 section 5.6.1
 * asks). No trusted proxy: the peer, headers unread. Its entries are walked from the
 * right: each entry is the address of whoever connected to the hop that added it; while that
 * address is a trusted proxy the walk goes on to the left; the first address that is not a
 * trusted proxy is the client. The walk stops, and the client is the last address it accepted
 * (the trusted proxy that reported the unusable entry), at an entry that names no usable
 * address: malformed text, Forwarded's "unknown" or an obfuscated identifier
 * ("_hidden"), a Forwarded element without for=, or more than SL_CLIENTIP_MAX_HOPS entries.
 * When every entry is a trusted proxy the client is the leftmost. More than
 * SL_CLIENTIP_MAX_LINES lines of the header: the header is not believed (client = peer).
 * An X-Forwarded-For entry is an address, optionally "[v6]", "[v6]:port" or "v4:port"; a
 * Forwarded for= value is a token or quoted string holding "v4", "v4:port", "[v6]" or
 * "[v6]:port" (ports may be obfuscated), parameter names case-insensitive.
 * Returns SL_CLIENTIP_FROM_* and fills *out, or SL_EINVAL (cfg, peer or out NULL, or sources
 * naming both headers or an unknown one; *out is then the peer when peer is set). headers may
 * be NULL (no headers). Pure: no allocation, no locks. Threads: any. Does not block. */
SL_API int sl_clientip_resolve(const sl_clientip_config *cfg, const sl_ipkey *peer,
                               sl_ratelimit_headers_fn headers, void *headers_arg, sl_ipkey *out);

/* ---- the policy --------------------------------------------------------------------------- */

typedef struct sl_ratelimit sl_ratelimit;

typedef enum sl_ratelimit_kind {
    SL_RATELIMIT_GLOBAL = 0,
    SL_RATELIMIT_IP,
    SL_RATELIMIT_APIKEY,
    SL_RATELIMIT_CUSTOM,
} sl_ratelimit_kind;

#define SL_RATELIMIT_MAX_RULES 16
#define SL_RATELIMIT_MAX_NAME  32  /* bytes of a rule name: [A-Za-z0-9_.-]+ */
#define SL_RATELIMIT_MAX_KEY   256 /* bytes of an API key or custom key */

typedef struct sl_ratelimit_input sl_ratelimit_input;

/* Computes a custom rule's key for one request into buf (cap = SL_RATELIMIT_MAX_KEY bytes).
 * client is the resolved client address (NULL when the peer has none). Returns the key's
 * length (1..cap), 0 when the rule does not apply to this request (it is skipped), or a
 * negative SL_E* code (the rule is skipped and the error counted). Called on the deciding
 * thread; must not block. */
typedef int (*sl_ratelimit_key_fn)(void *arg, const sl_ratelimit_input *in, const sl_ipkey *client,
                                   char *buf, size_t cap);

/* Maps an API key to a tier index (the table form of sl_keyed_tier_fn). */
typedef struct sl_ratelimit_tier_entry {
    const char *key; /* NUL-terminated API key */
    int tier;        /* index into the rule's tiers */
} sl_ratelimit_tier_entry;

/* One rule. Strings and tables are copied by sl_ratelimit_new. */
typedef struct sl_ratelimit_rule {
    sl_ratelimit_kind kind;
    const char *name; /* in headers, logs, stats; NULL: "global", "ip", "apikey", "custom" */
    double limit;     /* events/s (SL_RATE_INF allowed); the single tier when tiers is NULL */
    int64_t burst;
    bool dry_run; /* count and log would-be rejections; reject nothing */

    /* SL_RATELIMIT_IP */
    sl_ipgroup group; /* {0, 0}: SL_IPGROUP_DEFAULT (IPv4 /32, IPv6 /64) */

    /* SL_RATELIMIT_APIKEY */
    const char *header; /* NULL: "X-API-Key"; the first line's value, trimmed, is the key;
                           empty or longer than SL_RATELIMIT_MAX_KEY counts as missing */
    bool key_optional;  /* a request without the key skips this rule instead of 401 */
    const char *realm;  /* WWW-Authenticate realm on 401; NULL: "api" */

    /* SL_RATELIMIT_CUSTOM */
    sl_ratelimit_key_fn key_fn;
    void *key_arg;

    /* Tiers (APIKEY, CUSTOM; ignored elsewhere). tiers NULL: one tier {limit, burst}. A key's
     * tier comes from tier_fn when set, else from tier_table (exact match), else default_tier.
     * tier_fn is called from any thread, sometimes under a table lock: fast, no blocking, and
     * a pure function of the key (a key keeps the tier its table entry was created with; the
     * headers and waits are computed from what tier_fn says now). */
    const sl_keyed_tier *tiers;
    int ntiers;
    int default_tier;
    sl_keyed_tier_fn tier_fn;
    void *tier_arg;
    const sl_ratelimit_tier_entry *tier_table;
    size_t ntier_table;

    /* The table (IP, APIKEY, CUSTOM): see sl_keyed_config. 0 picks sl_keyed's defaults. */
    size_t max_keys;
    int64_t idle_ttl_ns;
    sl_keyed_full on_full;
    sl_keyed_tier overflow;

    /* Counted in Redis instead of in memory (borrowed: must outlive the policy; several rules
     * and policies may share one limiter). The rule keeps its kind, key, tiers, dry-run and
     * answers; its bucket is the Redis key "<limiter prefix>{<rule name>:<key>}" (IP rules:
     * the group as text, "203.0.113.7/32", "2001:db8:1:2::/64"; GLOBAL: "{<rule name>}"). A
     * decision reaching it waits for one round trip (see sl_ratelimit_decide). When Redis
     * cannot answer (down, slow past the limiter's timeout, the ctx fired, or a caller that
     * must not wait) the limiter's fail policy answers: OPEN allows (the rule is then not
     * described), CLOSED answers 503, LOCAL decides with the rule's own in-memory bucket (this
     * instance alone). The limiter's own tiers and fallback table are not used. */
    sl_redis_limiter *redis;
} sl_ratelimit_rule;

/* Response headers and body, switchable. */
#define SL_RATELIMIT_HDR_RETRY_AFTER 1u /* Retry-After on 429 */
#define SL_RATELIMIT_HDR_DRAFT       2u /* RateLimit-Policy + RateLimit */
#define SL_RATELIMIT_HDR_LEGACY      4u /* X-RateLimit-Limit/-Remaining/-Reset */
#define SL_RATELIMIT_HDR_ALL         7u

typedef enum sl_ratelimit_body {
    SL_RATELIMIT_BODY_JSON = 0, /* application/json {"error":...,"retry_after":N} */
    SL_RATELIMIT_BODY_PROBLEM,  /* application/problem+json (RFC 9457) */
} sl_ratelimit_body;

typedef struct sl_ratelimit_config {
    const sl_ratelimit_rule *rules; /* evaluated in this order; 1..SL_RATELIMIT_MAX_RULES */
    size_t nrules;
    sl_clientip_config clientip; /* trusted proxies (copied) and forwarding headers */
    bool headers_set;            /* false: headers = SL_RATELIMIT_HDR_ALL */
    unsigned headers;            /* SL_RATELIMIT_HDR_* when headers_set */
    sl_ratelimit_body body;
    const char *problem_type; /* the problem's "type" URI; NULL: "about:blank" */
    uint32_t jitter_max_s;    /* Retry-After gets + uniform 0..jitter_max_s seconds */
    uint64_t jitter_seed;     /* PRNG seed (tests); 0: from the clock */
    sl_logger *log;           /* dry-run records; NULL: the default logger */
} sl_ratelimit_config;

/* What a decision reads from the request. */
struct sl_ratelimit_input {
    const void *peer; /* struct sockaddr_in / sockaddr_in6 of peer_len bytes, or NULL */
    size_t peer_len;
    const sl_ipkey *peer_key;        /* used instead of peer when not NULL */
    sl_ratelimit_headers_fn headers; /* NULL: the request has no headers */
    void *headers_arg;
    int64_t now_ns; /* monotonic instant of the decision (sl_now_ns() in production) */
    int64_t cost;   /* tokens this request takes from every rule; 0 means 1 */
    void *user;     /* passed through to custom key functions (the request, say) */
    bool no_wait;   /* the caller must not wait (a loop thread outside a task): Redis rules
                       are answered by their fail policy, counted in redis_nowait */
};

#define SL_RATELIMIT_MAX_HEADERS 8
#define SL_RATELIMIT_BUF         2048

typedef struct sl_ratelimit_header {
    const char *name;  /* static string */
    const char *value; /* NUL-terminated, inside the decision's buf */
} sl_ratelimit_header;

/* The answer to one request. Caller storage; no destroy. Pointers point into it (or are
 * static): valid while it is neither changed nor moved. */
typedef struct sl_ratelimit_decision {
    int status;          /* 0 allow; 429, 401, or 503 (internal error) reject */
    int rule;            /* index of the rule that decided a rejection, or the tightest rule
                            described on allow; -1 when none */
    int64_t retry_after; /* seconds, the Retry-After value (0 when allowed) */
    sl_ipkey client;     /* the resolved client address (when has_client) */
    bool has_client;
    size_t nheaders;
    sl_ratelimit_header headers[SL_RATELIMIT_MAX_HEADERS];
    const char *content_type; /* NULL when allowed */
    const char *body;         /* NUL-terminated, NULL when allowed */
    size_t body_len;
    char buf[SL_RATELIMIT_BUF]; /* private: storage for values and body */
} sl_ratelimit_decision;

/* Per-rule counters (each exact; a snapshot across counters is not one instant's). */
typedef struct sl_ratelimit_stats {
    const char *name;           /* the rule's name, owned by the policy */
    uint64_t allowed;           /* requests allowed with this rule's tokens taken */
    uint64_t rejected;          /* requests this rule rejected (429) */
    uint64_t dry_run_rejected;  /* requests this dry-run rule would have rejected */
    uint64_t missing_key;       /* APIKEY: requests without a key (401, or skipped if optional) */
    uint64_t skipped;           /* no key for this rule (optional key, custom 0, no IP peer) */
    uint64_t errors;            /* internal errors: table full (SL_EFULL), ENOMEM, key_fn < 0 */
    uint64_t redis_fail_open;   /* Redis rules: requests Redis did not answer for, decided by */
    uint64_t redis_fail_closed; /* the limiter's fail policy (open: allowed, closed: 503, */
    uint64_t redis_fallback;    /* local: the rule's in-memory bucket) */
    uint64_t redis_nowait;      /* of those: the caller could not wait (no_wait, loop thread) */
    uint64_t keys;              /* keys its in-memory table holds now (0 for GLOBAL) */
    uint64_t evicted;           /* keys its table evicted (idle + full) */
} sl_ratelimit_stats;

/* Creates a policy from cfg (everything is copied; cfg may be freed after). Returns 0 and sets
 * *out, or SL_EINVAL (no rules or too many, clientip.sources naming both headers, a bad name,
 * limit NaN or burst < 0, an IP group
 * out of range, a header name that is not a token, a custom rule without key_fn, bad tiers,
 * a problem_type with control characters), or SL_ENOMEM; *out is then untouched.
 * Threads: any. Does not block. */
SL_API int sl_ratelimit_new(const sl_ratelimit_config *cfg, sl_ratelimit **out);

/* Frees the policy; NULL is ignored. No thread may be deciding on it. */
SL_API void sl_ratelimit_free(sl_ratelimit *rl);

/* Decides one request at in->now_ns and fills *d (always, even on error). Returns 0 (see
 * d->status), SL_EINVAL (rl, in or d NULL: d untouched), or, with d->status 503 and every
 * reservation given back, the error of a rule's table (SL_EFULL with on_full =
 * SL_KEYED_FULL_ERROR, SL_ENOMEM). Threads: any. Without Redis rules it never blocks; with
 * them it is sl_ratelimit_decide(rl, in, NULL, d), which waits for their round trips. */
SL_API int sl_ratelimit_decide_at(sl_ratelimit *rl, const sl_ratelimit_input *in,
                                  sl_ratelimit_decision *d);

/* sl_ratelimit_decide_at for a policy that may have Redis rules: each Redis rule the decision
 * reaches costs one round trip, which this call waits for. On a task (sl_go, a task route, a
 * middleware hook running in the request's task) the check goes out on the task's loop (the
 * limiter attaches itself to that loop on first use) and the task parks until the reply: the
 * loop runs other tasks meanwhile. On a plain thread it blocks the thread (the check runs on
 * the limiter's private loop thread). On a loop thread outside a task, or with in->no_wait,
 * it does not wait: the Redis rules are answered by their fail policy (counted in
 * redis_nowait). The wait ends at the reply, at the limiter's timeout, or when ctx fires
 * (NULL: no ctx): a timeout or the ctx's SL_ECANCELED/SL_ETIMEDOUT is answered by the fail
 * policy, as when Redis is down. A policy without Redis rules never waits (this is then
 * sl_ratelimit_decide_at). Returns as sl_ratelimit_decide_at. Threads: any. */
SL_API int sl_ratelimit_decide(sl_ratelimit *rl, const sl_ratelimit_input *in, sl_ctx *ctx,
                               sl_ratelimit_decision *d);

/* True when some rule of the policy is Redis-backed (its decisions may wait). */
SL_API bool sl_ratelimit_waits(const sl_ratelimit *rl);

/* The number of rules (stats indexes are 0..count-1). */
SL_API size_t sl_ratelimit_count(const sl_ratelimit *rl);

/* Fills *st with rule i's counters. Returns 0, or SL_ERANGE for a bad index. Threads: any. */
SL_API int sl_ratelimit_stats_get(sl_ratelimit *rl, size_t i, sl_ratelimit_stats *st);

/* The underlying tables, for tests and for inspection: rule i's sl_keyed (NULL for GLOBAL or
 * a bad index), or its sl_limiter (NULL unless GLOBAL). Owned by the policy. */
SL_API sl_keyed *sl_ratelimit_keyed(sl_ratelimit *rl, size_t i);
SL_API sl_limiter *sl_ratelimit_limiter(sl_ratelimit *rl, size_t i);

SL_END_DECLS

#endif /* SLUICE_RATELIMIT_H */
