/* sl_log: golden logfmt output, JSON that jansson parses back to the values logged (awkward
 * strings, extreme integers, doubles, NaN), Go-style durations, level filtering that skips
 * formatting and even the attribute expressions, write errors counted, child loggers. */
#include "harness.h"
#include "sluice/log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* A sink that keeps every record. The logger serializes sink calls, so no lock here. */
typedef struct capture {
    char *buf;
    size_t len, cap;
    int calls;
} capture;

static void cap_sink(void *arg, const char *line, size_t len)
{
    capture *c = arg;
    if (c->len + len + 1 > c->cap) {
        c->cap = (c->len + len + 1) * 2;
        c->buf = realloc(c->buf, c->cap);
        assert_non_null(c->buf);
    }
    memcpy(c->buf + c->len, line, len);
    c->len += len;
    c->buf[c->len] = 0;
    c->calls++;
}

static void cap_reset(capture *c)
{
    c->len = 0;
    c->calls = 0;
    if (c->buf) c->buf[0] = 0;
}

static sl_logger *new_logger(capture *c, sl_log_format fmt, sl_log_level level)
{
    sl_log_opts o = {.level = level,
                     .format = fmt,
                     .fd = -1,
                     .sink = cap_sink,
                     .sink_arg = c,
                     .omit_time = true};
    sl_logger *lg = NULL;
    assert_int_equal(sl_logger_new(&o, &lg), 0);
    assert_non_null(lg);
    return lg;
}

/* ---- text --------------------------------------------------------------------------------- */

static void test_text_golden(void **state)
{
    capture c = {0};
    sl_logger *lg = new_logger(&c, SL_LOG_TEXT, SL_LOG_DEBUG);

    sl_log_info(lg, "hello world", SL_A_INT("n", 3), SL_A_STR("s", "plain"), SL_A_STR("e", ""),
                SL_A_STR("sp", "a b"), SL_A_BOOL("ok", true), SL_A_BOOL("no", false),
                SL_A_F64("f", 0.1), SL_A_DUR("d", SL_MS(1500)), SL_A_ERR("err", SL_ETIMEDOUT),
                SL_A_UINT("u", UINT64_MAX), SL_A_INT("min", INT64_MIN), SL_A_STR("null", NULL));
    assert_string_equal(c.buf, "level=INFO msg=\"hello world\" n=3 s=plain e=\"\" sp=\"a b\" "
                               "ok=true no=false f=0.1 d=1.5s err=\"deadline exceeded\" "
                               "u=18446744073709551615 min=-9223372036854775808 null=\"\"\n");
    assert_int_equal(c.calls, 1);

    /* Keys are quoted by the same rule as values. */
    cap_reset(&c);
    sl_log_warn(lg, "k", SL_A_STR("a key", "v"), SL_A_STR("k=v", "x"), SL_A_INT("", 1),
                SL_A_INT(NULL, 2), SL_A_STR("q\"k", "y"));
    assert_string_equal(c.buf,
                        "level=WARN msg=k \"a key\"=v \"k=v\"=x \"\"=1 \"\"=2 \"q\\\"k\"=y\n");

    /* Escapes: Go's strconv.Quote forms; backslash alone needs no quotes; é prints as itself;
     * invalid UTF-8 becomes U+FFFD; bidi controls are shown, not obeyed. */
    cap_reset(&c);
    sl_log_error(lg, "", SL_A_STR("q", "say \"hi\""), SL_A_STR("bs", "C:\\dir"),
                 SL_A_STR("nl", "a\nb\r\tc"), SL_A_STR("ctl", "\x01\x1f\x7f\a\v"),
                 SL_A_STR("bad", "x\xffy"), SL_A_STR("utf", "caf\xC3\xA9"), SL_A_STR("eq", "a=b"),
                 SL_A_STR("bidi", "\xE2\x80\xAE"), SL_A_STR("nbsp", "a\xC2\xA0"));
    assert_string_equal(c.buf, "level=ERROR msg=\"\" q=\"say \\\"hi\\\"\" bs=C:\\dir "
                               "nl=\"a\\nb\\r\\tc\" ctl=\"\\x01\\x1f\\x7f\\a\\v\" "
                               "bad=\"x\xEF\xBF\xBDy\" utf=caf\xC3\xA9 eq=\"a=b\" "
                               "bidi=\"\\u202e\" nbsp=\"a\\u00a0\"\n");

    /* Levels between the named ones print as offsets, like slog. */
    cap_reset(&c);
    sl_log(lg, SL_LOG_DEBUG, "d");
    sl_log(lg, SL_LOG_INFO + 2, "i2");
    sl_log(lg, SL_LOG_ERROR + 4, "e4");
    assert_string_equal(c.buf, "level=DEBUG msg=d\nlevel=INFO+2 msg=i2\nlevel=ERROR+4 msg=e4\n");
    char name[24];
    assert_string_equal(sl_log_level_name(SL_LOG_DEBUG - 1, name), "DEBUG-1");
    assert_string_equal(sl_log_level_name(SL_LOG_WARN + 1, name), "WARN+1");

    sl_logger_free(lg);
    free(c.buf);
}

static void test_text_time(void **state)
{
    capture c = {0};
    sl_log_opts o = {.level = SL_LOG_INFO, .fd = -1, .sink = cap_sink, .sink_arg = &c};
    sl_logger *lg = NULL;
    assert_int_equal(sl_logger_new(&o, &lg), 0);
    int64_t before = sl_wall_ns() / SL_SEC(1);
    sl_log_info(lg, "t");
    int64_t after = sl_wall_ns() / SL_SEC(1);
    /* time=2026-11-27T22:39:21.123Z level=INFO msg=t */
    int Y, M, D, h, m, s, ms, n = 0;
    assert_int_equal(sscanf(c.buf, "time=%4d-%2d-%2dT%2d:%2d:%2d.%3dZ level=INFO msg=t\n%n", &Y, &M,
                            &D, &h, &m, &s, &ms, &n),
                     7);
    assert_int_equal((size_t)n, c.len);
    assert_int_equal(strlen("time=2026-11-27T22:39:21.123Z "), strchr(c.buf, 'l') - c.buf);
    struct tm tm = {
        .tm_year = Y - 1900, .tm_mon = M - 1, .tm_mday = D, .tm_hour = h, .tm_min = m, .tm_sec = s};
    int64_t t = (int64_t)timegm(&tm);
    assert_true(t >= before && t <= after);
    assert_true(ms >= 0 && ms < 1000);

    /* JSON carries the same timestamp, first. */
    sl_logger_free(lg);
    cap_reset(&c);
    o.format = SL_LOG_JSON;
    assert_int_equal(sl_logger_new(&o, &lg), 0);
    sl_log_info(lg, "t");
    assert_int_equal(strncmp(c.buf, "{\"time\":\"", 9), 0);
    assert_int_equal(strncmp(c.buf + 9 + 24, "\",\"level\":\"INFO\",\"msg\":\"t\"}\n", 28), 0);
    sl_logger_free(lg);
    free(c.buf);
}

static const char *text_of_dur(capture *c, sl_logger *lg, int64_t d)
{
    cap_reset(c);
    sl_log_info(lg, "m", SL_A_DUR("d", d));
    static char out[64];
    const char *p = strstr(c->buf, " d=");
    assert_non_null(p);
    snprintf(out, sizeof out, "%.*s", (int)(strlen(p + 3) - 1), p + 3);
    return out;
}

static void test_durations(void **state)
{
    capture c = {0};
    sl_logger *lg = new_logger(&c, SL_LOG_TEXT, SL_LOG_INFO);
    static const struct {
        int64_t d;
        const char *want;
    } cases[] = {
        {0, "0s"},
        {1, "1ns"},
        {999, "999ns"},
        {1000, "1\xC2\xB5s"},
        {1500, "1.5\xC2\xB5s"},
        {SL_MS(250), "250ms"},
        {SL_US(1001), "1.001ms"},
        {SL_MS(1500), "1.5s"},
        {SL_SEC(1), "1s"},
        {SL_SEC(123), "2m3s"},
        {SL_SEC(120), "2m0s"},
        {SL_SEC(3600), "1h0m0s"},
        {SL_SEC(3600 * 3 + 25 * 60 + 45) + SL_MS(500), "3h25m45.5s"},
        {SL_SEC(59) + 1, "59.000000001s"},
        {-SL_MS(1500), "-1.5s"},
        {-1, "-1ns"},
        {INT64_MAX, "2562047h47m16.854775807s"},
        {INT64_MIN, "-2562047h47m16.854775808s"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        assert_string_equal(text_of_dur(&c, lg, cases[i].d), cases[i].want);
    sl_logger_free(lg);
    free(c.buf);
}

static const char *text_of_f64(capture *c, sl_logger *lg, double f)
{
    cap_reset(c);
    sl_log_info(lg, "m", SL_A_F64("f", f));
    static char out[64];
    const char *p = strstr(c->buf, " f=");
    assert_non_null(p);
    snprintf(out, sizeof out, "%.*s", (int)(strlen(p + 3) - 1), p + 3);
    return out;
}

static void test_doubles_text(void **state)
{
    capture c = {0};
    sl_logger *lg = new_logger(&c, SL_LOG_TEXT, SL_LOG_INFO);
    assert_string_equal(text_of_f64(&c, lg, 0.1), "0.1");
    assert_string_equal(text_of_f64(&c, lg, 1.0), "1");
    assert_string_equal(text_of_f64(&c, lg, -0.0), "-0");
    assert_string_equal(text_of_f64(&c, lg, 1e300), "1e+300");
    assert_string_equal(text_of_f64(&c, lg, 0.1 + 0.2), "0.30000000000000004");
    assert_string_equal(text_of_f64(&c, lg, NAN), "NaN");
    assert_string_equal(text_of_f64(&c, lg, INFINITY), "+Inf");
    assert_string_equal(text_of_f64(&c, lg, -INFINITY), "-Inf");
    /* Every printed double reads back exactly. */
    double vals[] = {1.0 / 3, 2.0 / 3, 5e-324, 1.7976931348623157e308, 123456.789, -2.5e-7};
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++)
        assert_true(strtod(text_of_f64(&c, lg, vals[i]), NULL) == vals[i]);
    sl_logger_free(lg);
    free(c.buf);
}

/* Undoes logfmt quoting (Go's strconv.Unquote subset the logger emits). */
static char *logfmt_unquote(const char *s, size_t n)
{
    char *out = malloc(n + 1), *o = out;
    assert_non_null(out);
    if (n == 0 || s[0] != '"') {
        memcpy(out, s, n);
        out[n] = 0;
        return out;
    }
    assert_true(n >= 2 && s[n - 1] == '"');
    for (size_t i = 1; i < n - 1; i++) {
        if (s[i] != '\\') {
            *o++ = s[i];
            continue;
        }
        char e = s[++i];
        switch (e) {
        case 'n': *o++ = '\n'; break;
        case 'r': *o++ = '\r'; break;
        case 't': *o++ = '\t'; break;
        case 'a': *o++ = '\a'; break;
        case 'b': *o++ = '\b'; break;
        case 'f': *o++ = '\f'; break;
        case 'v': *o++ = '\v'; break;
        case '"':
        case '\\': *o++ = e; break;
        case 'x': {
            char h[3] = {s[i + 1], s[i + 2], 0};
            *o++ = (char)strtol(h, NULL, 16);
            i += 2;
            break;
        }
        case 'u': {
            char h[5] = {s[i + 1], s[i + 2], s[i + 3], s[i + 4], 0};
            unsigned cp = (unsigned)strtol(h, NULL, 16);
            i += 4;
            if (cp < 0x800) {
                *o++ = (char)(0xC0 | cp >> 6);
                *o++ = (char)(0x80 | (cp & 0x3F));
            } else {
                *o++ = (char)(0xE0 | cp >> 12);
                *o++ = (char)(0x80 | ((cp >> 6) & 0x3F));
                *o++ = (char)(0x80 | (cp & 0x3F));
            }
            break;
        }
        default: fail_msg("unexpected escape \\%c", e);
        }
    }
    *o = 0;
    return out;
}

/* ---- the awkward strings, shared by the text and JSON round trips ----------------------- */

#define FFFD "\xEF\xBF\xBD"
static const struct {
    const char *in, *want; /* want: what a parser must read back (invalid UTF-8 replaced) */
} awkward[] = {
    {"plain", "plain"},
    {"", ""},
    {"say \"hi\"", "say \"hi\""},
    {"back\\slash\\", "back\\slash\\"},
    {"line1\nline2\r\n\ttab", "line1\nline2\r\n\ttab"},
    {"\x01\x1f\x7f", "\x01\x1f\x7f"},
    {"{\"json\":[1,2]}", "{\"json\":[1,2]}"},
    {"x\xffy", "x" FFFD "y"},
    {"\xfe\xff", FFFD FFFD},
    {"trunc\xE2\x82", "trunc" FFFD FFFD},
    {"\xE2\x82z", FFFD FFFD "z"},
    {"\xF0\x9F\x98", FFFD FFFD FFFD},
    {"over\xC0\xAF", "over" FFFD FFFD},
    {"\xE0\x80\xAF", FFFD FFFD FFFD},
    {"\xF0\x80\x80\xAF", FFFD FFFD FFFD FFFD},
    {"surr\xED\xA0\x80", "surr" FFFD FFFD FFFD},
    {"big\xF4\x90\x80\x80", "big" FFFD FFFD FFFD FFFD},
    {"\x80 lone continuation", FFFD " lone continuation"},
    {"caf\xC3\xA9 \xF0\x9F\x98\x80", "caf\xC3\xA9 \xF0\x9F\x98\x80"},
    {"\xE2\x82\xAC 20", "\xE2\x82\xAC 20"},
    {"ls\xE2\x80\xA8ps\xE2\x80\xA9", "ls\xE2\x80\xA8ps\xE2\x80\xA9"},
    {"key=value spaced", "key=value spaced"},
};
#define N_AWKWARD (sizeof awkward / sizeof awkward[0])

static void test_text_roundtrip(void **state)
{
    capture c = {0};
    sl_logger *lg = new_logger(&c, SL_LOG_TEXT, SL_LOG_INFO);
    for (size_t i = 0; i < N_AWKWARD; i++) {
        cap_reset(&c);
        sl_log_info(lg, "m", SL_A_STR("v", awkward[i].in));
        /* The line is one line: exactly one '\n', at the end. */
        assert_ptr_equal(strchr(c.buf, '\n'), c.buf + c.len - 1);
        const char *p = strstr(c.buf, " v=");
        assert_non_null(p);
        char *got = logfmt_unquote(p + 3, strlen(p + 3) - 1);
        if (strcmp(got, awkward[i].want) != 0)
            fail_msg("case %zu: got [%s] want [%s] line [%s]", i, got, awkward[i].want, c.buf);
        free(got);
    }
    sl_logger_free(lg);
    free(c.buf);
}

/* ---- JSON --------------------------------------------------------------------------------- */

static json_t *parse_line(const char *line, size_t flags)
{
    json_error_t err;
    json_t *j = json_loads(line, flags, &err);
    if (!j) fail_msg("json_loads: %s at %d: [%.200s]", err.text, err.position, line);
    assert_true(json_is_object(j));
    return j;
}

static void test_json_strings(void **state)
{
    capture c = {0};
    sl_logger *lg = new_logger(&c, SL_LOG_JSON, SL_LOG_INFO);
    for (size_t i = 0; i < N_AWKWARD; i++) {
        cap_reset(&c);
        /* The same string as message, key and value. */
        sl_log_info(lg, awkward[i].in, SL_A_STR(awkward[i].in, awkward[i].in));
        assert_ptr_equal(strchr(c.buf, '\n'), c.buf + c.len - 1);
        json_t *j = parse_line(c.buf, 0);
        assert_string_equal(json_string_value(json_object_get(j, "level")), "INFO");
        const char *msg = json_string_value(json_object_get(j, "msg"));
        if (!msg || strcmp(msg, awkward[i].want) != 0)
            fail_msg("case %zu: msg [%s] want [%s] line [%s]", i, msg, awkward[i].want, c.buf);
        json_t *v = json_object_get(j, awkward[i].want);
        assert_non_null(v);
        assert_string_equal(json_string_value(v), awkward[i].want);
        json_decref(j);
    }

    /* 64 KiB with something to escape every 97 bytes: grows the record onto the heap. */
    size_t big_n = 64 * 1024;
    char *big = malloc(big_n + 1);
    assert_non_null(big);
    for (size_t i = 0; i < big_n; i++)
        big[i] = i % 97 == 0 ? '"' : (i % 89 == 0 ? '\n' : (char)('a' + i % 26));
    big[big_n] = 0;
    cap_reset(&c);
    sl_log_info(lg, "big", SL_A_STR("big", big), SL_A_INT("after", 7));
    json_t *j = parse_line(c.buf, 0);
    assert_string_equal(json_string_value(json_object_get(j, "big")), big);
    assert_int_equal(json_integer_value(json_object_get(j, "after")), 7);
    json_decref(j);
    free(big);

    sl_logger_free(lg);
    free(c.buf);
}

static void test_json_values(void **state)
{
    capture c = {0};
    sl_logger *lg = new_logger(&c, SL_LOG_JSON, SL_LOG_INFO);
    sl_log_warn(lg, "vals", SL_A_INT("imin", INT64_MIN), SL_A_INT("imax", INT64_MAX),
                SL_A_INT("zero", 0), SL_A_F64("tenth", 0.1), SL_A_F64("huge", 1e300),
                SL_A_F64("negzero", -0.0), SL_A_F64("one", 1.0), SL_A_F64("third", 1.0 / 3),
                SL_A_F64("nan", NAN), SL_A_F64("inf", INFINITY), SL_A_F64("ninf", -INFINITY),
                SL_A_BOOL("t", true), SL_A_BOOL("f", false), SL_A_DUR("d", SL_SEC(123)),
                SL_A_DUR("dus", 1500), SL_A_ERR("err", SL_ECLOSED), SL_A_ERR("ok", 0));
    assert_int_equal(strncmp(c.buf, "{\"level\":\"WARN\",\"msg\":\"vals\",\"imin\":", 36), 0);
    json_t *j = parse_line(c.buf, 0);
    assert_true(json_integer_value(json_object_get(j, "imin")) == INT64_MIN);
    assert_true(json_integer_value(json_object_get(j, "imax")) == INT64_MAX);
    assert_true(json_is_integer(json_object_get(j, "zero")));
    assert_true(json_is_real(json_object_get(j, "tenth")));
    assert_true(json_real_value(json_object_get(j, "tenth")) == 0.1);
    assert_true(json_real_value(json_object_get(j, "huge")) == 1e300);
    json_t *nz = json_object_get(j, "negzero");
    assert_true(json_is_real(nz));
    assert_true(json_real_value(nz) == 0.0 && signbit(json_real_value(nz)));
    assert_true(json_is_real(json_object_get(j, "one")));
    assert_true(json_real_value(json_object_get(j, "one")) == 1.0);
    assert_true(json_real_value(json_object_get(j, "third")) == 1.0 / 3);
    assert_string_equal(json_string_value(json_object_get(j, "nan")), "NaN");
    assert_string_equal(json_string_value(json_object_get(j, "inf")), "+Inf");
    assert_string_equal(json_string_value(json_object_get(j, "ninf")), "-Inf");
    assert_true(json_is_true(json_object_get(j, "t")));
    assert_true(json_is_false(json_object_get(j, "f")));
    /* Durations are integer nanoseconds in JSON (slog's JSONHandler), text keeps "2m3s". */
    assert_true(json_is_integer(json_object_get(j, "d")));
    assert_true(json_integer_value(json_object_get(j, "d")) == SL_SEC(123));
    assert_true(json_integer_value(json_object_get(j, "dus")) == 1500);
    assert_string_equal(json_string_value(json_object_get(j, "err")), "closed");
    assert_string_equal(json_string_value(json_object_get(j, "ok")), "ok");
    json_decref(j);

    /* UINT64_MAX is past jansson's integers: read it as a real, and check the digits. */
    cap_reset(&c);
    sl_log_info(lg, "u", SL_A_UINT("u", UINT64_MAX));
    assert_string_equal(c.buf, "{\"level\":\"INFO\",\"msg\":\"u\",\"u\":18446744073709551615}\n");
    j = parse_line(c.buf, JSON_DECODE_INT_AS_REAL);
    assert_true(json_real_value(json_object_get(j, "u")) == 18446744073709551615.0);
    json_decref(j);
    sl_logger_free(lg);
    free(c.buf);
}

/* ---- levels -------------------------------------------------------------------------------- */

static int g_evals;
static int64_t counted(void)
{
    return ++g_evals;
}

static void test_level_filtering(void **state)
{
    capture c = {0};
    sl_logger *lg = new_logger(&c, SL_LOG_TEXT, SL_LOG_INFO);
    g_evals = 0;
    sl_log_debug(lg, "hidden", SL_A_INT("n", counted()));
    assert_int_equal(g_evals, 0); /* the attribute expression never ran */
    assert_int_equal(c.calls, 0); /* and the sink was not called */
    sl_log_attrs(lg, SL_LOG_DEBUG, "direct", NULL, 0);
    assert_int_equal(c.calls, 0);
    assert_false(sl_log_enabled(lg, SL_LOG_DEBUG));
    assert_true(sl_log_enabled(lg, SL_LOG_INFO));
    assert_true(sl_log_enabled(lg, SL_LOG_ERROR));

    sl_log_info(lg, "shown", SL_A_INT("n", counted()));
    assert_int_equal(g_evals, 1);
    assert_string_equal(c.buf, "level=INFO msg=shown n=1\n");

    sl_logger_set_level(lg, SL_LOG_DEBUG);
    sl_log_debug(lg, "now", SL_A_INT("n", counted()));
    assert_int_equal(g_evals, 2);
    assert_int_equal(c.calls, 2);
    sl_logger_set_level(lg, SL_LOG_ERROR);
    sl_log_warn(lg, "quiet", SL_A_INT("n", counted()));
    assert_int_equal(g_evals, 2);
    assert_int_equal(c.calls, 2);
    sl_log_error(lg, "loud");
    sl_log_error(lg, "no trailing comma"); /* ISO C11: msg is in the variadic part */
    assert_int_equal(c.calls, 4);
    sl_logger_free(lg);
    free(c.buf);
}

static void test_discard(void **state)
{
    sl_logger *d = sl_log_discard();
    assert_non_null(d);
    g_evals = 0;
    sl_log_error(d, "x", SL_A_INT("n", counted()));
    assert_int_equal(g_evals, 0);
    assert_false(sl_log_enabled(d, SL_LOG_ERROR + 100));
    sl_logger_set_level(d, SL_LOG_DEBUG); /* ignored: discard stays discard */
    assert_false(sl_log_enabled(d, SL_LOG_ERROR));
    sl_log_attrs(d, SL_LOG_ERROR, "x", NULL, 0);
    assert_int_equal(sl_logger_write_errors(d), 0);
    sl_logger_free(d); /* ignored */
    assert_ptr_equal(sl_log_discard(), d);
}

/* ---- fds and errors ------------------------------------------------------------------------ */

static void test_fd_output(void **state)
{
    int p[2];
    assert_int_equal(pipe(p), 0);
    sl_log_opts o = {.level = SL_LOG_INFO, .format = SL_LOG_JSON, .fd = p[1], .omit_time = true};
    sl_logger *lg = NULL;
    assert_int_equal(sl_logger_new(&o, &lg), 0);
    errno = 1234;
    sl_log_info(lg, "to fd", SL_A_INT("k", 1));
    assert_int_equal(errno, 1234); /* logging leaves errno alone */
    char buf[256];
    ssize_t n = read(p[0], buf, sizeof buf - 1);
    assert_true(n > 0);
    buf[n] = 0;
    assert_string_equal(buf, "{\"level\":\"INFO\",\"msg\":\"to fd\",\"k\":1}\n");
    assert_int_equal(sl_logger_write_errors(lg), 0);
    sl_logger_free(lg);
    close(p[0]);
    close(p[1]);
}

static void test_write_errors(void **state)
{
    struct sigaction ign = {.sa_handler = SIG_IGN}, old;
    sigemptyset(&ign.sa_mask);
    assert_int_equal(sigaction(SIGPIPE, &ign, &old), 0);
    int p[2];
    assert_int_equal(pipe(p), 0);
    close(p[0]); /* nobody reads: every write fails with EPIPE */
    sl_log_opts o = {.level = SL_LOG_INFO, .fd = p[1]};
    sl_logger *lg = NULL;
    assert_int_equal(sl_logger_new(&o, &lg), 0);
    for (int i = 0; i < 3; i++)
        sl_log_info(lg, "lost", SL_A_INT("i", i));
    sl_log_debug(lg, "filtered"); /* not attempted, not counted */
    assert_int_equal(sl_logger_write_errors(lg), 3);
    sl_logger_free(lg);
    close(p[1]);
    assert_int_equal(sigaction(SIGPIPE, &old, NULL), 0);
}

/* A write(2) interrupted by a signal handler installed without SA_RESTART returns what it wrote
 * so far (a partial write) or, before any byte, EINTR: both must end in the whole record. */
static atomic_int g_signals;
static void on_usr1(int sig)
{
    (void)sig;
    atomic_fetch_add(&g_signals, 1);
}

typedef struct big_writer {
    sl_logger *lg;
    const char *s;
    atomic_int tid;
} big_writer;

static void *big_writer_main(void *arg)
{
    big_writer *w = arg;
    atomic_store(&w->tid, (int)syscall(SYS_gettid));
    sl_log_info(w->lg, "big", SL_A_STR("s", w->s));
    return NULL;
}

/* True while thread tid sits in write(2) (/proc's view of its current system call). */
static bool in_write(int tid)
{
    char path[64], buf[32] = {0};
    snprintf(path, sizeof path, "/proc/self/task/%d/syscall", tid);
    FILE *f = fopen(path, "r");
    if (!f) return false;
    bool yes = fgets(buf, sizeof buf, f) && atol(buf) == SYS_write && strchr(buf, ' ');
    fclose(f);
    return yes;
}

static int pipe_bytes(int fd)
{
    int n = 0;
    return ioctl(fd, FIONREAD, &n) == 0 ? n : -1;
}

/* Reads from fd until the data ends with '\n' (one record, plus what was there before). Fails
 * after 10 s without it, rather than hanging, when the record never completes. */
static char *read_line(int fd, size_t *len)
{
    size_t cap = 1 << 17, n = 0;
    char *buf = malloc(cap);
    assert_non_null(buf);
    int64_t deadline = sl_mono_ns() + SL_SEC(10);
    while (n == 0 || buf[n - 1] != '\n') {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int left_ms = (int)((deadline - sl_mono_ns()) / SL_MS(1));
        if (left_ms <= 0 || poll(&pfd, 1, left_ms) <= 0)
            fail_msg("record incomplete after 10 s (%zu bytes read)", n);
        ssize_t r = read(fd, buf + n, cap - n - 1);
        assert_true(r > 0);
        n += (size_t)r;
    }
    buf[n] = 0;
    *len = n;
    return buf;
}

static void test_interrupted_writes(void **state)
{
    struct sigaction sa = {.sa_handler = on_usr1}, old; /* no SA_RESTART */
    sigemptyset(&sa.sa_mask);
    assert_int_equal(sigaction(SIGUSR1, &sa, &old), 0);
    int p[2];
    assert_int_equal(pipe(p), 0);
    int cap = fcntl(p[1], F_SETPIPE_SZ, 4096);
    assert_true(cap >= 4096);
    sl_log_opts o = {.format = SL_LOG_JSON, .fd = p[1], .omit_time = true};
    sl_logger *lg = NULL;
    assert_int_equal(sl_logger_new(&o, &lg), 0);

    /* 1: a 64 KiB record fills the pipe and blocks; the signal cuts the write short. */
    size_t big_n = 64 * 1024;
    char *big = malloc(big_n + 1);
    assert_non_null(big);
    for (size_t i = 0; i < big_n; i++)
        big[i] = (char)('a' + i % 26);
    big[big_n] = 0;
    big_writer w = {.lg = lg, .s = big};
    pthread_t t;
    atomic_store(&g_signals, 0);
    assert_int_equal(pthread_create(&t, NULL, big_writer_main, &w), 0);
    assert_true(SL_WAIT_UNTIL(atomic_load(&w.tid) != 0 && in_write(atomic_load(&w.tid)), 10000));
    assert_int_equal(pipe_bytes(p[0]), cap); /* blocked on a full pipe, record half-written */
    assert_int_equal(pthread_kill(t, SIGUSR1), 0);
    assert_true(SL_WAIT_UNTIL(atomic_load(&g_signals) == 1, 10000));
    size_t len;
    char *got = read_line(p[0], &len);
    assert_int_equal(pthread_join(t, NULL), 0);
    json_t *j = parse_line(got, 0);
    assert_string_equal(json_string_value(json_object_get(j, "s")), big);
    json_decref(j);
    free(got);

    /* 2: the pipe is full before the write starts: the signal gives EINTR with nothing written. */
    char junk[4096];
    memset(junk, 'j', sizeof junk);
    size_t filled = 0;
    while ((int)filled < cap) {
        ssize_t r = write(p[1], junk,
                          (size_t)cap - filled < sizeof junk ? (size_t)cap - filled : sizeof junk);
        assert_true(r > 0);
        filled += (size_t)r;
    }
    w.s = "small";
    atomic_store(&w.tid, 0);
    assert_int_equal(pthread_create(&t, NULL, big_writer_main, &w), 0);
    assert_true(SL_WAIT_UNTIL(atomic_load(&w.tid) != 0 && in_write(atomic_load(&w.tid)), 10000));
    assert_int_equal(pthread_kill(t, SIGUSR1), 0);
    assert_true(SL_WAIT_UNTIL(atomic_load(&g_signals) == 2, 10000));
    got = read_line(p[0], &len);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_true(len == filled + strlen("{\"level\":\"INFO\",\"msg\":\"big\",\"s\":\"small\"}\n"));
    assert_string_equal(got + filled, "{\"level\":\"INFO\",\"msg\":\"big\",\"s\":\"small\"}\n");
    free(got);

    assert_int_equal(sl_logger_write_errors(lg), 0);
    sl_logger_free(lg);
    close(p[0]);
    close(p[1]);
    free(big);
    assert_int_equal(sigaction(SIGUSR1, &old, NULL), 0);
}

static void test_new_invalid(void **state)
{
    sl_logger *lg = (sl_logger *)&lg; /* a sentinel that must stay untouched */
    sl_logger *const sentinel = lg;
    assert_int_equal(sl_logger_new(NULL, &lg), SL_EINVAL);
    sl_log_opts o = {.fd = -1};
    assert_int_equal(sl_logger_new(&o, &lg), SL_EINVAL);
    o.fd = 2;
    o.format = (sl_log_format)7;
    assert_int_equal(sl_logger_new(&o, &lg), SL_EINVAL);
    assert_ptr_equal(lg, sentinel);
    sl_logger_free(NULL);
}

/* ---- default and children ------------------------------------------------------------------ */

static void test_default(void **state)
{
    sl_logger *builtin = sl_log_default();
    assert_non_null(builtin);
    assert_true(sl_log_enabled(NULL, SL_LOG_INFO));
    assert_false(sl_log_enabled(NULL, SL_LOG_DEBUG));
    sl_logger_free(builtin); /* ignored */

    capture c = {0};
    sl_logger *lg = new_logger(&c, SL_LOG_TEXT, SL_LOG_INFO);
    sl_log_set_default(lg);
    assert_ptr_equal(sl_log_default(), lg);
    sl_log_info(NULL, "via default", SL_A_INT("k", 1));
    assert_string_equal(c.buf, "level=INFO msg=\"via default\" k=1\n");
    sl_logger_set_level(NULL, SL_LOG_WARN);
    assert_false(sl_log_enabled(lg, SL_LOG_INFO));
    sl_logger_free(lg); /* the installed default: the built-in comes back */
    assert_ptr_equal(sl_log_default(), builtin);
    sl_log_set_default(NULL);
    assert_ptr_equal(sl_log_default(), builtin);
    free(c.buf);
}

static void test_with(void **state)
{
    capture c = {0};
    sl_logger *root = new_logger(&c, SL_LOG_TEXT, SL_LOG_INFO);
    sl_logger *req = NULL, *sub = NULL;
    char id[16] = "req-1";
    const sl_attr a[] = {SL_A_STR("request_id", id), SL_A_STR("peer", "10.0.0.1:5000")};
    assert_int_equal(sl_logger_with(root, a, 2, &req), 0);
    strcpy(id, "changed"); /* the child copied the value */
    const sl_attr b = SL_A_INT("attempt", 2);
    assert_int_equal(sl_logger_with(req, &b, 1, &sub), 0);
    sl_logger_free(root); /* children keep the output alive */
    sl_log_info(req, "a", SL_A_INT("n", 1));
    sl_log_info(sub, "b");
    assert_string_equal(c.buf, "level=INFO msg=a request_id=req-1 peer=10.0.0.1:5000 n=1\n"
                               "level=INFO msg=b request_id=req-1 peer=10.0.0.1:5000 attempt=2\n");
    /* Levels are per logger. */
    sl_logger_set_level(sub, SL_LOG_ERROR);
    assert_true(sl_log_enabled(req, SL_LOG_INFO));
    assert_false(sl_log_enabled(sub, SL_LOG_INFO));
    sl_logger_free(req);
    sl_logger_free(sub);

    /* JSON children, and a child of the discard logger. */
    cap_reset(&c);
    root = new_logger(&c, SL_LOG_JSON, SL_LOG_INFO);
    assert_int_equal(sl_logger_with(root, a, 2, &req), 0);
    sl_log_info(req, "j", SL_A_BOOL("x", true));
    assert_string_equal(c.buf, "{\"level\":\"INFO\",\"msg\":\"j\",\"request_id\":\"changed\","
                               "\"peer\":\"10.0.0.1:5000\",\"x\":true}\n");
    sl_logger_free(req);
    sl_logger_free(root);
    assert_int_equal(sl_logger_with(sl_log_discard(), a, 2, &req), 0);
    assert_false(sl_log_enabled(req, SL_LOG_ERROR));
    sl_logger_free(req);
    free(c.buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text_golden),    cmocka_unit_test(test_text_time),
        cmocka_unit_test(test_durations),      cmocka_unit_test(test_doubles_text),
        cmocka_unit_test(test_text_roundtrip), cmocka_unit_test(test_json_strings),
        cmocka_unit_test(test_json_values),    cmocka_unit_test(test_level_filtering),
        cmocka_unit_test(test_discard),        cmocka_unit_test(test_fd_output),
        cmocka_unit_test(test_write_errors),   cmocka_unit_test(test_interrupted_writes),
        cmocka_unit_test(test_new_invalid),    cmocka_unit_test(test_default),
        cmocka_unit_test(test_with),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
