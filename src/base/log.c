/* Structured logging (sl_log): one record = one formatted line = one write.
 *
 * The problem is making log lines from many threads come out whole, cheaply, and parseable
 * whatever bytes the caller hands us. Each record is formatted by the calling thread, without
 * any lock, into a buffer on its stack (grown onto the heap for large records); the finished
 * line is then handed to the output in one piece: one write(2) for an fd (looping only on
 * EINTR and partial writes) or one sink call.
 *
 * Whole lines need more than one write(2) per record: the kernel keeps a write contiguous
 * only sometimes. A pipe write of at most PIPE_BUF bytes is atomic (POSIX); so, in practice,
 * is any single write to a regular file (the inode lock) or a character device (ttys take a
 * write lock; /dev/null has nothing to mix). A larger pipe write, the tail after a partial
 * write, or a stream-socket write (journald's stdout is one) that must wait for buffer space
 * or is cut into several packets can be split and mixed with other writers' bytes; the stress
 * test shows large pipe records mangled within seconds without a lock. Sockets are treated
 * conservatively: POSIX promises nothing for them at any size. So an output has a reader-writer
 * lock: records of at most PIPE_BUF bytes to a pipe, file or character device take it shared
 * (writers run in parallel; the kernel does the rest), every other record (large, a socket or
 * unknown fd, a sink call) takes it exclusive. The fd's type is read once, by fstat on first
 * use. A plain mutex for everything would serialize, in user space, writes the kernel can run
 * in parallel (or serializes more cheaply itself); bench/log.c compares the two side by side.
 *
 * Invariants: the level is an atomic read before anything else, so a disabled record costs one
 * load and a compare (the macros in log.h also skip building the attributes); the formatter
 * never emits bytes that break the line's syntax: every value is escaped (quotes, backslashes,
 * control characters, bidi/format characters) and invalid UTF-8 becomes U+FFFD, byte by byte
 * as Go's decoder counts it; every record ends in exactly one '\n'.
 *
 * Ownership: an output (fd or sink, its lock, the write-error count) is shared by a root logger
 * and the children made with sl_logger_with, and reference-counted, so either may be freed
 * first. The built-in default and discard loggers are static and never freed. */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <errno.h>
#include <limits.h>
#include <sys/stat.h>

#include "sluice/clock.h"
#include "sluice/error.h"
#include "sluice/log.h"
#include "base/log_int.h"
#include "base/base_int.h"

/* ---- loggers ------------------------------------------------------------------------------ */

typedef struct log_out {
    pthread_rwlock_t lock;    /* shared: small atomic writes; exclusive: everything else */
    _Atomic int small_shared; /* -1 unknown yet; 1 if fd is a pipe, file or char device */
    int fd;                   /* used when sink is NULL; not owned */
    sl_log_sink_fn sink;
    void *sink_arg;
    _Atomic uint64_t errors; /* records dropped: write failed or no memory */
    _Atomic uint32_t refs;   /* loggers using this output; static outputs never reach 0 */
    bool is_static;
} log_out;

struct sl_logger {
    _Atomic int level; /* minimum sl_log_level written; relaxed: a hint, no ordering */
    bool discard;      /* drop everything (sl_log_discard and its children) */
    bool is_static;    /* built-in default/discard: never freed */
    bool omit_time;
    sl_log_format format;
    log_out *out; /* shared, reference-counted */
    char *prefix; /* pre-formatted sl_logger_with attributes, or NULL */
    size_t prefix_len;
};

static log_out g_stderr_out = {.lock = PTHREAD_RWLOCK_WRITER_NONRECURSIVE_INITIALIZER_NP,
                               .small_shared = -1,
                               .fd = 2,
                               .refs = 1,
                               .is_static = true};
static sl_logger g_builtin = {
    .level = SL_LOG_INFO, .is_static = true, .format = SL_LOG_TEXT, .out = &g_stderr_out};
static log_out g_null_out = {.lock = PTHREAD_RWLOCK_WRITER_NONRECURSIVE_INITIALIZER_NP,
                             .small_shared = 0,
                             .fd = -1,
                             .refs = 1,
                             .is_static = true};
static sl_logger g_discard = {
    .level = INT_MAX, .discard = true, .is_static = true, .out = &g_null_out};
static _Atomic(sl_logger *) g_default = &g_builtin;

sl_logger *sl_log_default(void)
{
    return atomic_load_explicit(&g_default, memory_order_acquire);
}

sl_logger *sl_log_discard(void)
{
    return &g_discard;
}

void sl_log_set_default(sl_logger *lg)
{
    atomic_store_explicit(&g_default, lg ? lg : &g_builtin, memory_order_release);
}

static log_out *out_new(int fd, sl_log_sink_fn sink, void *sink_arg)
{
    log_out *o = calloc(1, sizeof *o);
    if (!o) return NULL;
    /* Writer preference: a steady stream of small shared writes must not starve a large
     * record waiting for the exclusive lock. */
    pthread_rwlockattr_t ra;
    pthread_rwlockattr_init(&ra);
    pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    int rc = pthread_rwlock_init(&o->lock, &ra);
    pthread_rwlockattr_destroy(&ra);
    if (rc != 0) {
        free(o);
        return NULL;
    }
    o->fd = fd;
    o->sink = sink;
    o->sink_arg = sink_arg;
    atomic_init(&o->small_shared, -1);
    atomic_init(&o->refs, 1);
    return o;
}

static void out_release(log_out *o)
{
    if (o->is_static) return;
    if (atomic_fetch_sub_explicit(&o->refs, 1, memory_order_acq_rel) != 1) return;
    pthread_rwlock_destroy(&o->lock);
    free(o);
}

int sl_logger_new(const sl_log_opts *opts, sl_logger **out)
{
    if (!opts || !out)
        return sl__fail(SL_EINVAL, "sl_logger_new: %s is NULL", opts ? "out" : "opts");
    if (!opts->sink && opts->fd < 0)
        return sl__fail(SL_EINVAL, "sl_log_opts: .fd is negative (%d) and .sink is NULL", opts->fd);
    if (opts->format != SL_LOG_TEXT && opts->format != SL_LOG_JSON)
        return sl__fail(SL_EINVAL, "sl_log_opts.format %d is neither TEXT nor JSON",
                        (int)opts->format);
    sl_logger *lg = calloc(1, sizeof *lg);
    if (!lg) return SL_ENOMEM;
    lg->out = out_new(opts->fd, opts->sink, opts->sink_arg);
    if (!lg->out) {
        free(lg);
        return SL_ENOMEM;
    }
    atomic_init(&lg->level, (int)opts->level);
    lg->format = opts->format;
    lg->omit_time = opts->omit_time;
    *out = lg;
    return 0;
}

void sl_logger_free(sl_logger *lg)
{
    if (!lg || lg->is_static) return;
    /* Freeing the installed default puts the built-in back, so that the next NULL-logger call
     * does not reach freed memory (callers still must not free it while others log). */
    sl_logger *expect = lg;
    atomic_compare_exchange_strong(&g_default, &expect, &g_builtin);
    out_release(lg->out);
    free(lg->prefix);
    free(lg);
}

void sl_logger_set_level(sl_logger *lg, sl_log_level level)
{
    if (!lg) lg = sl_log_default();
    if (lg->discard) return;
    atomic_store_explicit(&lg->level, (int)level, memory_order_relaxed);
}

bool sl_log_enabled(const sl_logger *lg, sl_log_level level)
{
    if (!lg) lg = sl_log_default();
    return !lg->discard &&
           (int)level >= atomic_load_explicit(&((sl_logger *)lg)->level, memory_order_relaxed);
}

uint64_t sl_logger_write_errors(const sl_logger *lg)
{
    if (!lg) lg = sl_log_default();
    return atomic_load_explicit(&lg->out->errors, memory_order_relaxed);
}

const char *sl_log_level_name(sl_log_level level, char buf[24])
{
    static const char *const names[] = {"DEBUG", "INFO", "WARN", "ERROR"};
    int l = (int)level, base;
    if (l < SL_LOG_INFO)
        base = 0;
    else if (l < SL_LOG_WARN)
        base = 1;
    else if (l < SL_LOG_ERROR)
        base = 2;
    else
        base = 3;
    int off = l - (base * 4 - 4);
    if (off == 0)
        snprintf(buf, 24, "%s", names[base]);
    else
        snprintf(buf, 24, "%s%+d", names[base], off);
    return buf;
}

/* ---- the record buffer --------------------------------------------------------------------- */

/* Starts on the caller's stack; moves to the heap past its size. After a failed allocation
 * every append is a no-op and the record is dropped (and counted) instead of written. */
typedef struct lbuf {
    char *p;
    size_t len, cap;
    bool heap, failed;
} lbuf;

static bool lb_grow(lbuf *b, size_t n)
{
    if (b->failed) return false;
    size_t cap = b->cap * 2;
    while (cap - b->len < n) {
        if (cap > SIZE_MAX / 2) {
            b->failed = true;
            return false;
        }
        cap *= 2;
    }
    char *p = b->heap ? realloc(b->p, cap) : malloc(cap);
    if (!p) {
        b->failed = true;
        return false;
    }
    if (!b->heap) memcpy(p, b->p, b->len);
    b->p = p;
    b->cap = cap;
    b->heap = true;
    return true;
}

/* Returns room for n more bytes, or NULL after an allocation failure. */
static inline char *lb_room(lbuf *b, size_t n)
{
    if (b->cap - b->len < n && !lb_grow(b, n)) return NULL;
    return b->p + b->len;
}

static inline void lb_put(lbuf *b, const void *s, size_t n)
{
    char *d = lb_room(b, n);
    if (!d) return;
    memcpy(d, s, n);
    b->len += n;
}

static inline void lb_putc(lbuf *b, char c)
{
    char *d = lb_room(b, 1);
    if (!d) return;
    *d = c;
    b->len++;
}

#define LB_LIT(b, s) lb_put((b), (s), sizeof(s) - 1)

static void lb_u64(lbuf *b, uint64_t v)
{
    char tmp[20];
    size_t i = sizeof tmp;
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    lb_put(b, tmp + i, sizeof tmp - i);
}

static void lb_i64(lbuf *b, int64_t v)
{
    if (v < 0) {
        lb_putc(b, '-');
        lb_u64(b, (uint64_t)0 - (uint64_t)v); /* INT64_MIN has no positive int64 */
    } else {
        lb_u64(b, (uint64_t)v);
    }
}

/* ---- escaping ------------------------------------------------------------------------------ */

/* Decodes one UTF-8 sequence at s (n > 0 bytes available, s[0] >= 0x80). Returns its length
 * and the code point, or 0 when s[0] does not start a valid, complete, shortest-form sequence
 * of a scalar value: continuation bytes, overlongs (C0, C1, E0 80.., F0 80..), surrogates
 * (ED A0..), values past U+10FFFF and truncated sequences all count as one bad byte, as in
 * Go's utf8.DecodeRune. */
size_t sl__utf8_decode(const unsigned char *s, size_t n, uint32_t *cp)
{
    unsigned c = s[0];
    if (c < 0xC2 || c > 0xF4) return 0;
    if (c < 0xE0) {
        if (n < 2 || (s[1] & 0xC0) != 0x80) return 0;
        *cp = ((uint32_t)(c & 0x1F) << 6) | (s[1] & 0x3F);
        return 2;
    }
    unsigned lo = 0x80, hi = 0xBF;
    if (c == 0xE0)
        lo = 0xA0;
    else if (c == 0xED)
        hi = 0x9F;
    else if (c == 0xF0)
        lo = 0x90;
    else if (c == 0xF4)
        hi = 0x8F;
    if (n < 2 || s[1] < lo || s[1] > hi) return 0;
    if (c < 0xF0) {
        if (n < 3 || (s[2] & 0xC0) != 0x80) return 0;
        *cp = ((uint32_t)(c & 0x0F) << 12) | ((uint32_t)(s[1] & 0x3F) << 6) | (s[2] & 0x3F);
        return 3;
    }
    if (n < 4 || (s[2] & 0xC0) != 0x80 || (s[3] & 0xC0) != 0x80) return 0;
    *cp = ((uint32_t)(c & 0x07) << 18) | ((uint32_t)(s[1] & 0x3F) << 12) |
          ((uint32_t)(s[2] & 0x3F) << 6) | (s[3] & 0x3F);
    return 4;
}

/* Valid code points that are invisible or reorder text: C1 controls, non-ASCII spaces, format
 * and bidi controls, line/paragraph separators, BOM. Printed as \uXXXX so that a log line
 * shows what it holds (a subset of what Go's unicode.IsPrint rejects; no tables needed). */
static bool cp_hidden(uint32_t cp)
{
    return (cp >= 0x80 && cp <= 0xA0) || cp == 0xAD || (cp >= 0x2000 && cp <= 0x200F) ||
           (cp >= 0x2028 && cp <= 0x202F) || (cp >= 0x205F && cp <= 0x206F) || cp == 0x3000 ||
           cp == 0xFEFF;
}

/* For the escape loop: 0 = copy as is, 1 = ASCII that needs an escape, 2 = non-ASCII. */
static const unsigned char esc_class[256] = {
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
};

static const char hexd[] = "0123456789abcdef";

static void put_u4(lbuf *b, uint32_t cp)
{
    char e[6] = {
        '\\',         'u', hexd[(cp >> 12) & 15], hexd[(cp >> 8) & 15], hexd[(cp >> 4) & 15],
        hexd[cp & 15]};
    lb_put(b, e, sizeof e);
}

/* One ASCII byte that needs an escape. JSON knows \" \\ \b \f \n \r \t and \u00XX; logfmt
 * values are quoted Go-style (strconv.Quote): \a \v and \xXX as well. */
static void put_ascii_escape(lbuf *b, unsigned char c, bool json)
{
    char e[2] = {'\\', 0};
    switch (c) {
    case '"': e[1] = '"'; break;
    case '\\': e[1] = '\\'; break;
    case '\n': e[1] = 'n'; break;
    case '\r': e[1] = 'r'; break;
    case '\t': e[1] = 't'; break;
    case '\b': e[1] = 'b'; break;
    case '\f': e[1] = 'f'; break;
    case '\a': e[1] = json ? 0 : 'a'; break;
    case '\v': e[1] = json ? 0 : 'v'; break;
    default: break;
    }
    if (e[1]) {
        lb_put(b, e, 2);
    } else if (json) {
        put_u4(b, c);
    } else {
        char x[4] = {'\\', 'x', hexd[c >> 4], hexd[c & 15]};
        lb_put(b, x, 4);
    }
}

/* Appends s[0..n) escaped for the inside of a double-quoted string (JSON or logfmt). */
static void put_escaped(lbuf *b, const char *str, size_t n, bool json)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < n) {
        size_t run = i;
        while (run < n && esc_class[s[run]] == 0)
            run++;
        if (run > i) lb_put(b, s + i, run - i);
        if (run == n) break;
        i = run;
        if (esc_class[s[i]] == 1) {
            put_ascii_escape(b, s[i], json);
            i++;
            continue;
        }
        uint32_t cp = 0;
        size_t len = sl__utf8_decode(s + i, n - i, &cp);
        if (len == 0) {
            if (json)
                LB_LIT(b, "\\ufffd");
            else
                LB_LIT(b, "\xEF\xBF\xBD");
            i++;
        } else if (cp_hidden(cp)) {
            put_u4(b, cp);
            i += len;
        } else {
            lb_put(b, s + i, len);
            i += len;
        }
    }
}

/* logfmt (and Go's TextHandler) quotes a value when it is empty or holds a space, '=', '"', a
 * control character, or anything that will not print as itself (invalid UTF-8, hidden code
 * points). A backslash alone does not need quotes: unquoted values have no escapes. */
static bool text_needs_quote(const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    if (n == 0) return true;
    for (size_t i = 0; i < n;) {
        unsigned char c = s[i];
        if (c < 0x80) {
            if (c <= ' ' || c == '=' || c == '"' || c == 0x7f) return true;
            i++;
            continue;
        }
        uint32_t cp = 0;
        size_t len = sl__utf8_decode(s + i, n - i, &cp);
        if (len == 0 || cp_hidden(cp)) return true;
        i += len;
    }
    return false;
}

static void put_text_str(lbuf *b, const char *s, size_t n)
{
    if (!text_needs_quote(s, n)) {
        lb_put(b, s, n);
        return;
    }
    lb_putc(b, '"');
    put_escaped(b, s, n, false);
    lb_putc(b, '"');
}

static void put_json_str(lbuf *b, const char *s, size_t n)
{
    lb_putc(b, '"');
    put_escaped(b, s, n, true);
    lb_putc(b, '"');
}

/* ---- values -------------------------------------------------------------------------------- */

/* Shortest of %.15g/%.16g/%.17g that reads back as the same double (17 digits always do).
 * Returns the length written to out (>= 32 bytes). */
size_t sl__fmt_double(char *out, double v)
{
    int len = 0;
    for (int prec = 15; prec <= 17; prec++) {
        len = snprintf(out, 32, "%.*g", prec, v);
        if (prec == 17 || strtod(out, NULL) == v) break;
    }
    /* A locale with a decimal comma would break both formats; logs are always "C". */
    for (int i = 0; i < len; i++)
        if (out[i] == ',') out[i] = '.';
    return (size_t)len;
}

static void put_double(lbuf *b, double v, bool json)
{
    const char *special = NULL;
    if (isnan(v))
        special = "NaN";
    else if (isinf(v))
        special = v > 0 ? "+Inf" : "-Inf";
    if (special) {
        if (json) lb_putc(b, '"');
        lb_put(b, special, strlen(special));
        if (json) lb_putc(b, '"');
        return;
    }
    char tmp[40];
    size_t len = sl__fmt_double(tmp, v);
    lb_put(b, tmp, len);
    /* In JSON an integral double gets ".0" so that it parses back as a real, not an integer,
     * and -0.0 keeps its sign ("-0" reads as the integer 0). */
    if (json && strcspn(tmp, ".en") == len) LB_LIT(b, ".0");
}

/* Duration text is built backwards, from the unit to the sign, into the end of a small buffer;
 * *w is the index of the first byte written so far. */

/* Prepends v's low prec digits as a fraction (".5"), trailing zeros dropped, nothing if they
 * are all zero. Returns v without them. */
static uint64_t dur_frac(char *buf, size_t *w, uint64_t v, int prec)
{
    bool print = false;
    for (int k = 0; k < prec; k++) {
        unsigned dig = (unsigned)(v % 10);
        print = print || dig != 0;
        if (print) buf[--*w] = (char)('0' + dig);
        v /= 10;
    }
    if (print) buf[--*w] = '.';
    return v;
}

static void dur_int(char *buf, size_t *w, uint64_t v)
{
    do {
        buf[--*w] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
}

/* Appends d the way Go's time.Duration.String() prints it: "0s", "1.5µs", "250ms", "1.5s",
 * "2m3s", "1h0m0s", with the fraction's trailing zeros removed. */
static void put_duration(lbuf *b, int64_t d)
{
    char tmp[40];
    size_t w = sizeof tmp;
    uint64_t u = d < 0 ? (uint64_t)0 - (uint64_t)d : (uint64_t)d; /* INT64_MIN included */
    if (u == 0) {
        LB_LIT(b, "0s");
        return;
    }
    tmp[--w] = 's';
    if (u < 1000000000ULL) {
        /* Below a second: one unit, the largest that keeps the integer part non-zero. */
        if (u < 1000) {
            tmp[--w] = 'n';
        } else if (u < 1000000) {
            w -= 2;
            memcpy(tmp + w, "\xC2\xB5", 2); /* µ, U+00B5 as Go prints it */
            u = dur_frac(tmp, &w, u, 3);
        } else {
            tmp[--w] = 'm';
            u = dur_frac(tmp, &w, u, 6);
        }
        dur_int(tmp, &w, u);
    } else {
        /* Hours and minutes as integers, seconds with up to 9 fractional digits; a zero
         * minutes part is printed when there are hours ("1h0m0s"), as Go does. */
        uint64_t secs = dur_frac(tmp, &w, u, 9);
        dur_int(tmp, &w, secs % 60);
        uint64_t mins = secs / 60;
        if (mins > 0) {
            tmp[--w] = 'm';
            dur_int(tmp, &w, mins % 60);
            if (mins / 60 > 0) {
                tmp[--w] = 'h';
                dur_int(tmp, &w, mins / 60);
            }
        }
    }
    if (d < 0) tmp[--w] = '-';
    lb_put(b, tmp + w, sizeof tmp - w);
}

/* A value in logfmt: strings quoted when needed, numbers and bools bare. */
static void put_text_value(lbuf *b, const sl_attr *a)
{
    char tmp[48];
    switch (a->kind) {
    case SL_ATTR_STR: {
        const char *s = a->v.s ? a->v.s : "";
        put_text_str(b, s, strlen(s));
        break;
    }
    case SL_ATTR_INT: lb_i64(b, a->v.i); break;
    case SL_ATTR_UINT: lb_u64(b, a->v.u); break;
    case SL_ATTR_F64: put_double(b, a->v.f, false); break;
    case SL_ATTR_BOOL:
        if (a->v.b)
            LB_LIT(b, "true");
        else
            LB_LIT(b, "false");
        break;
    case SL_ATTR_DUR: put_duration(b, a->v.i); break;
    case SL_ATTR_ERR: {
        const char *s = sl_strerror(a->v.err);
        put_text_str(b, s, strlen(s));
        break;
    }
    default: {
        int n = snprintf(tmp, sizeof tmp, "!BADKIND(%d)", (int)a->kind);
        lb_put(b, tmp, (size_t)n);
        break;
    }
    }
}

/* A value in JSON: strings, errors and non-finite doubles as strings; durations as integer
 * nanoseconds. */
static void put_json_value(lbuf *b, const sl_attr *a)
{
    switch (a->kind) {
    case SL_ATTR_STR: {
        const char *s = a->v.s ? a->v.s : "";
        put_json_str(b, s, strlen(s));
        break;
    }
    case SL_ATTR_INT: lb_i64(b, a->v.i); break;
    case SL_ATTR_UINT: lb_u64(b, a->v.u); break;
    case SL_ATTR_F64: put_double(b, a->v.f, true); break;
    case SL_ATTR_BOOL:
        if (a->v.b)
            LB_LIT(b, "true");
        else
            LB_LIT(b, "false");
        break;
    case SL_ATTR_DUR: lb_i64(b, a->v.i); break; /* integer ns, as slog's JSONHandler */
    case SL_ATTR_ERR: {
        const char *s = sl_strerror(a->v.err);
        put_json_str(b, s, strlen(s));
        break;
    }
    default: {
        char tmp[48];
        int n = snprintf(tmp, sizeof tmp, "\"!BADKIND(%d)\"", (int)a->kind);
        lb_put(b, tmp, (size_t)n);
        break;
    }
    }
}

/* " key=value" or ",\"key\":value" for each attribute that is not SL_ATTR_NONE. */
static void put_attrs(lbuf *b, sl_log_format fmt, const sl_attr *attrs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const sl_attr *a = &attrs[i];
        if (a->kind == SL_ATTR_NONE) continue;
        const char *k = a->key ? a->key : "";
        if (fmt == SL_LOG_JSON) {
            lb_putc(b, ',');
            put_json_str(b, k, strlen(k));
            lb_putc(b, ':');
            put_json_value(b, a);
        } else {
            lb_putc(b, ' ');
            put_text_str(b, k, strlen(k));
            lb_putc(b, '=');
            put_text_value(b, a);
        }
    }
}

/* ---- records ------------------------------------------------------------------------------- */

/* "2026-11-27T22:39:21.123Z": RFC 3339, UTC, milliseconds. The part up to the seconds is
 * cached per thread and rebuilt only when the second changes. */
static void put_time(lbuf *b)
{
    static _Thread_local int64_t t_sec = -1;
    static _Thread_local char t_text[64]; /* 19 used; room quiets -Wformat-truncation */
    int64_t ns = sl_wall_ns();
    int64_t sec = ns / 1000000000LL;
    unsigned ms = (unsigned)(ns % 1000000000LL / 1000000);
    if (sec != t_sec) {
        time_t tt = (time_t)sec;
        struct tm tm;
        gmtime_r(&tt, &tm);
        snprintf(t_text, sizeof t_text, "%04d-%02d-%02dT%02d:%02d:%02d", tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
        t_sec = sec;
    }
    lb_put(b, t_text, 19);
    char frac[5] = {'.', (char)('0' + ms / 100), (char)('0' + ms / 10 % 10), (char)('0' + ms % 10),
                    'Z'};
    lb_put(b, frac, sizeof frac);
}

static void put_level(lbuf *b, sl_log_level level)
{
    switch (level) { /* the common levels without snprintf */
    case SL_LOG_DEBUG: LB_LIT(b, "DEBUG"); return;
    case SL_LOG_INFO: LB_LIT(b, "INFO"); return;
    case SL_LOG_WARN: LB_LIT(b, "WARN"); return;
    case SL_LOG_ERROR: LB_LIT(b, "ERROR"); return;
    default: break;
    }
    char name[24];
    sl_log_level_name(level, name);
    lb_put(b, name, strlen(name));
}

static void format_record(lbuf *b, const sl_logger *lg, sl_log_level level, const char *msg,
                          const sl_attr *attrs, size_t n)
{
    bool json = lg->format == SL_LOG_JSON;
    if (!msg) msg = "";
    if (json) {
        lb_putc(b, '{');
        if (!lg->omit_time) {
            LB_LIT(b, "\"time\":\"");
            put_time(b);
            LB_LIT(b, "\",");
        }
        LB_LIT(b, "\"level\":\"");
        put_level(b, level);
        LB_LIT(b, "\",\"msg\":");
        put_json_str(b, msg, strlen(msg));
    } else {
        if (!lg->omit_time) {
            LB_LIT(b, "time=");
            put_time(b);
            lb_putc(b, ' ');
        }
        LB_LIT(b, "level=");
        put_level(b, level);
        LB_LIT(b, " msg=");
        put_text_str(b, msg, strlen(msg));
    }
    if (lg->prefix_len) lb_put(b, lg->prefix, lg->prefix_len);
    put_attrs(b, lg->format, attrs, n);
    if (json) lb_putc(b, '}');
    lb_putc(b, '\n');
}

/* Writes all of p, retrying on EINTR and continuing after partial writes. Returns 0 or -1. */
static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        if (w == 0) return -1; /* no progress and no error: do not spin */
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Whether a write of at most PIPE_BUF bytes to o->fd stays contiguous by itself. */
static bool small_writes_atomic(log_out *o)
{
    int v = atomic_load_explicit(&o->small_shared, memory_order_relaxed);
    if (v < 0) {
        struct stat st;
        v = fstat(o->fd, &st) == 0 &&
            (S_ISFIFO(st.st_mode) || S_ISREG(st.st_mode) || S_ISCHR(st.st_mode));
        atomic_store_explicit(&o->small_shared, v, memory_order_relaxed);
    }
    return v == 1;
}

static void emit(const sl_logger *lg, const char *p, size_t n)
{
    log_out *o = lg->out;
    if (o->sink) {
        pthread_rwlock_wrlock(&o->lock);
        o->sink(o->sink_arg, p, n);
        pthread_rwlock_unlock(&o->lock);
        return;
    }
    int saved = errno; /* logging must not clobber the caller's errno */
    if (n <= PIPE_BUF && small_writes_atomic(o))
        pthread_rwlock_rdlock(&o->lock);
    else
        pthread_rwlock_wrlock(&o->lock);
    if (write_all(o->fd, p, n) < 0) atomic_fetch_add_explicit(&o->errors, 1, memory_order_relaxed);
    pthread_rwlock_unlock(&o->lock);
    errno = saved;
}

void sl_log_attrs(sl_logger *lg, sl_log_level level, const char *msg, const sl_attr *attrs,
                  size_t n)
{
    if (!lg) lg = sl_log_default();
    if (!sl_log_enabled(lg, level)) return;
    char stack[2048];
    lbuf b = {.p = stack, .cap = sizeof stack};
    format_record(&b, lg, level, msg, attrs, n);
    if (b.failed)
        atomic_fetch_add_explicit(&lg->out->errors, 1, memory_order_relaxed);
    else
        emit(lg, b.p, b.len);
    if (b.heap) free(b.p);
}

int sl_logger_with(sl_logger *parent, const sl_attr *attrs, size_t n, sl_logger **out)
{
    if (!out) return SL_EINVAL;
    if (!parent) parent = sl_log_default();
    sl_logger *lg = calloc(1, sizeof *lg);
    if (!lg) return SL_ENOMEM;
    char stack[512];
    lbuf b = {.p = stack, .cap = sizeof stack};
    if (parent->prefix_len) lb_put(&b, parent->prefix, parent->prefix_len);
    put_attrs(&b, parent->format, attrs, n);
    if (!b.failed && b.len > 0) {
        lg->prefix = malloc(b.len);
        if (lg->prefix) memcpy(lg->prefix, b.p, b.len);
    }
    if (b.heap) free(b.p);
    if (b.failed || (b.len > 0 && !lg->prefix)) {
        free(lg);
        return SL_ENOMEM;
    }
    lg->prefix_len = b.len;
    atomic_init(&lg->level, atomic_load_explicit(&parent->level, memory_order_relaxed));
    lg->discard = parent->discard;
    lg->omit_time = parent->omit_time;
    lg->format = parent->format;
    lg->out = parent->out;
    if (!lg->out->is_static) atomic_fetch_add_explicit(&lg->out->refs, 1, memory_order_relaxed);
    *out = lg;
    return 0;
}

void sl__log_set_small_shared(sl_logger *lg, int v)
{
    if (!lg) lg = sl_log_default();
    if (lg->out->is_static && lg->out->fd < 0) return;
    atomic_store_explicit(&lg->out->small_shared, v, memory_order_relaxed);
}
