/* How fast is the request parser? ns per request and MB/s for a typical browser GET (~500
 * bytes, 10 header lines), a minimal GET, and a chunked body, with Debian's libhttp-parser
 * measured side by side in the same run when its shared library can be loaded (dlopen: the
 * bench links only libsluice, so nothing changes in the build). Each figure is the median of
 * 5 timed runs of ~100 ms; the machine is shared and noisy, so compare columns of one run.
 * Both parsers do comparable work: ours returns views; libhttp-parser's callbacks record the
 * same views (method, target, header name/value pointers). */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "http/parser.h"

#if defined(__has_include)
#if __has_include(<http_parser.h>)
#include <http_parser.h>
#define HAVE_HP 1
#endif
#endif

static const char k_browser[] =
    "GET /index.html?lang=en&q=caf%C3%A9&page=2 HTTP/1.1\r\n"
    "Host: www.example.com\r\n"
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n"
    "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
    "Accept-Language: en-US,en;q=0.5\r\n"
    "Accept-Encoding: gzip, deflate, br, zstd\r\n"
    "Connection: keep-alive\r\n"
    "Cookie: session=8f14e45fceea167a5a36dedd4bea2543; theme=dark; consent=1\r\n"
    "Upgrade-Insecure-Requests: 1\r\n"
    "Sec-Fetch-Dest: document\r\n"
    "If-None-Match: \"33a64df551425fcc55e4d42a148795d9f25f89d4\"\r\n"
    "\r\n";
static const char k_minimal[] = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static volatile size_t g_sink;

typedef size_t (*parse_fn)(const char *req, size_t len);

/* Median ns per call of fn over 5 runs, each sized to ~100 ms by a calibration run. */
static double measure(parse_fn fn, const char *req, size_t len)
{
    size_t iters = 1000;
    double t0 = now_ns();
    for (size_t i = 0; i < iters; i++)
        g_sink += fn(req, len);
    double per = (now_ns() - t0) / (double)iters;
    iters = (size_t)(1e8 / (per > 1 ? per : 1));
    double runs[5];
    for (int r = 0; r < 5; r++) {
        t0 = now_ns();
        for (size_t i = 0; i < iters; i++)
            g_sink += fn(req, len);
        runs[r] = (now_ns() - t0) / (double)iters;
    }
    qsort(runs, 5, sizeof(double), cmp_double);
    return runs[2];
}

static sl_http_header g_hdrs[SL_HTTP_DEFAULT_MAX_HEADERS];

static size_t ours(const char *req, size_t len)
{
    sl_http_req_head h;
    int n = sl_http_parse_head(req, len, &h, g_hdrs, NULL);
    if (n <= 0) {
        fprintf(stderr, "bench_http_parser: sluice rejected the request (%d)\n", h.status);
        exit(1);
    }
    return (size_t)n + h.num_headers;
}

/* A 64 KiB body in 4 KiB chunks, decoded in place (re-encoded before each call). */
static char *g_chunked, *g_work;
static size_t g_chunked_len, g_body_len;

static size_t ours_chunked(const char *req, size_t len)
{
    (void)req;
    memcpy(g_work, g_chunked, len);
    sl_http_chunked st;
    sl_http_chunked_init(&st, NULL);
    size_t dl = len, used;
    if (sl_http_chunked_decode(&st, g_work, &dl, &used) != 0 || dl != g_body_len) {
        fprintf(stderr, "bench_http_parser: chunked decode failed\n");
        exit(1);
    }
    return dl;
}

static size_t copy_only(const char *req, size_t len)
{
    (void)req;
    memcpy(g_work, g_chunked, len);
    return (size_t)(unsigned char)g_work[len / 2];
}

#ifdef HAVE_HP
typedef struct hp_api {
    void (*init)(http_parser *, enum http_parser_type);
    void (*settings_init)(http_parser_settings *);
    size_t (*execute)(http_parser *, const http_parser_settings *, const char *, size_t);
} hp_api;
static hp_api g_hp;
static http_parser_settings g_hps;

typedef struct hp_rec {
    const char *url;
    size_t url_len;
    const char *f[64], *v[64];
    size_t fl[64], vl[64];
    int n;
    int done;
} hp_rec;

static int hp_url(http_parser *p, const char *at, size_t n)
{
    hp_rec *r = p->data;
    r->url = at;
    r->url_len = n;
    return 0;
}
static int hp_field(http_parser *p, const char *at, size_t n)
{
    hp_rec *r = p->data;
    r->f[r->n] = at;
    r->fl[r->n] = n;
    return 0;
}
static int hp_value(http_parser *p, const char *at, size_t n)
{
    hp_rec *r = p->data;
    r->v[r->n] = at;
    r->vl[r->n] = n;
    r->n++;
    return 0;
}
static int hp_done(http_parser *p)
{
    ((hp_rec *)p->data)->done = 1;
    return 0;
}

static size_t theirs(const char *req, size_t len)
{
    http_parser p;
    hp_rec r;
    r.n = 0;
    r.done = 0;
    g_hp.init(&p, HTTP_REQUEST);
    p.data = &r;
    size_t n = g_hp.execute(&p, &g_hps, req, len);
    if (n != len || !r.done) {
        fprintf(stderr, "bench_http_parser: libhttp-parser rejected the request\n");
        exit(1);
    }
    return n + (size_t)r.n;
}

static bool load_hp(void)
{
    void *so = dlopen("libhttp_parser.so.2.9", RTLD_NOW | RTLD_LOCAL);
    if (!so) so = dlopen("libhttp_parser.so", RTLD_NOW | RTLD_LOCAL);
    if (!so) return false;
    *(void **)&g_hp.init = dlsym(so, "http_parser_init");
    *(void **)&g_hp.settings_init = dlsym(so, "http_parser_settings_init");
    *(void **)&g_hp.execute = dlsym(so, "http_parser_execute");
    if (!g_hp.init || !g_hp.settings_init || !g_hp.execute) return false;
    g_hp.settings_init(&g_hps);
    g_hps.on_url = hp_url;
    g_hps.on_header_field = hp_field;
    g_hps.on_header_value = hp_value;
    g_hps.on_message_complete = hp_done;
    return true;
}
#endif

static void row(const char *name, const char *who, double ns, size_t bytes, const char *note)
{
    printf("| http parser: %s (%zu B), %s | %.0f | ns/req | %s |\n", name, bytes, who, ns, note);
    printf("| http parser: %s, %s | %.0f | MB/s | %s |\n", name, who, (double)bytes * 1e3 / ns,
           note);
}

int main(void)
{
    bool hp = false;
#ifdef HAVE_HP
    hp = load_hp();
#endif
    const char *note = hp ? "median of 5; sluice and libhttp-parser 2.9 in the same run"
                          : "median of 5; libhttp-parser not loadable, sluice only";
    struct {
        const char *name;
        const char *req;
        size_t len;
    } reqs[] = {{"browser GET, 11 headers", k_browser, sizeof(k_browser) - 1},
                {"minimal GET", k_minimal, sizeof(k_minimal) - 1}};
    for (size_t i = 0; i < 2; i++) {
        row(reqs[i].name, "sluice", measure(ours, reqs[i].req, reqs[i].len), reqs[i].len, note);
#ifdef HAVE_HP
        if (hp)
            row(reqs[i].name, "libhttp-parser", measure(theirs, reqs[i].req, reqs[i].len),
                reqs[i].len, note);
#endif
    }

    /* chunked: 16 chunks of 4 KiB */
    g_body_len = 16 * 4096;
    g_chunked = malloc(g_body_len + 16 * 16 + 8);
    g_work = malloc(g_body_len + 16 * 16 + 8);
    if (!g_chunked || !g_work) return 1;
    size_t o = 0;
    for (int c = 0; c < 16; c++) {
        o += (size_t)sprintf(g_chunked + o, "1000\r\n");
        memset(g_chunked + o, 'a' + c, 4096);
        o += 4096;
        memcpy(g_chunked + o, "\r\n", 2);
        o += 2;
    }
    memcpy(g_chunked + o, "0\r\n\r\n", 5);
    g_chunked_len = o + 5;
    double dec = measure(ours_chunked, g_chunked, g_chunked_len);
    double cpy = measure(copy_only, g_chunked, g_chunked_len);
    printf("| http parser: chunked decode 64 KiB in 4 KiB chunks, sluice | %.0f | MB/s | median "
           "of 5; includes a %.0f ns memcpy to restore the input each call |\n",
           (double)g_body_len * 1e3 / dec, cpy);
    free(g_chunked);
    free(g_work);
    return g_sink == 42 ? 2 : 0;
}
