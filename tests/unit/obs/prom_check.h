/* A strict checker of Prometheus text format 0.0.4, for the metrics tests (not a general
 * parser: it also insists on the order sl_metrics writes within a histogram series).
 *
 * Every line is a "# HELP name text", a "# TYPE name type" or a sample
 * `name{label="value",...} value`. Names match [a-zA-Z_:][a-zA-Z0-9_:]*, label names
 * [a-zA-Z_][a-zA-Z0-9_]*; label values use only the escapes \\ \" \n; values are floats, NaN,
 * +Inf or -Inf. HELP and TYPE come at most once per family and before its samples; a family's
 * samples are contiguous; a series appears once. Each histogram series is its _bucket lines
 * with strictly increasing le ending at +Inf and non-decreasing (cumulative) counts, then _sum,
 * then _count equal to the +Inf bucket. Counters are >= 0. */
#ifndef SLUICE_TEST_PROM_CHECK_H
#define SLUICE_TEST_PROM_CHECK_H

#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PC_MAX_FAMS   256
#define PC_MAX_SERIES 4096

typedef struct pc_state {
    char err[512];
    int line;
    char fams[PC_MAX_FAMS][128]; /* families seen, in order */
    char types[PC_MAX_FAMS][16];
    bool has_help[PC_MAX_FAMS], has_type[PC_MAX_FAMS], has_samples[PC_MAX_FAMS];
    int nfams;
    int cur_fam; /* family of the previous sample, -1 none */
    char *series[PC_MAX_SERIES];
    int nseries;
    /* the histogram series in progress */
    char h_key[1024];
    int h_stage; /* 0 none, 1 in buckets, 2 after _sum */
    double h_last_le, h_last_count;
    bool h_saw_inf;
    int samples; /* sample lines accepted */
} pc_state;

static bool pc_fail(pc_state *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = snprintf(s->err, sizeof s->err, "line %d: ", s->line);
    vsnprintf(s->err + n, sizeof s->err - (size_t)n, fmt, ap);
    va_end(ap);
    return false;
}

static bool pc_name_char(char c, bool first, bool colon)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (colon && c == ':') ||
           (!first && c >= '0' && c <= '9');
}

/* Reads a name at *p into out (size 128); advances *p. */
static bool pc_name(const char **p, char *out, bool colon)
{
    size_t n = 0;
    while (pc_name_char((*p)[n], n == 0, colon) && n < 127)
        n++;
    if (n == 0) return false;
    memcpy(out, *p, n);
    out[n] = 0;
    *p += n;
    return true;
}

static bool pc_value(const char *s, double *v)
{
    if (!strcmp(s, "NaN"))
        *v = NAN;
    else if (!strcmp(s, "+Inf"))
        *v = INFINITY;
    else if (!strcmp(s, "-Inf"))
        *v = -INFINITY;
    else {
        char *end;
        if (!*s || !(s[0] == '-' || (s[0] >= '0' && s[0] <= '9'))) return false;
        *v = strtod(s, &end);
        if (*end) return false;
    }
    return true;
}

static int pc_family(pc_state *s, const char *name)
{
    for (int i = 0; i < s->nfams; i++)
        if (!strcmp(s->fams[i], name)) return i;
    if (s->nfams == PC_MAX_FAMS) return -1;
    snprintf(s->fams[s->nfams], sizeof s->fams[0], "%s", name);
    s->types[s->nfams][0] = 0;
    return s->nfams++;
}

static bool pc_comment(pc_state *s, const char *l)
{
    bool help = !strncmp(l, "# HELP ", 7), type = !strncmp(l, "# TYPE ", 7);
    if (!help && !type) return pc_fail(s, "unexpected comment");
    const char *p = l + 7;
    char name[128];
    if (!pc_name(&p, name, true) || *p != ' ') return pc_fail(s, "bad name in comment");
    p++;
    int f = pc_family(s, name);
    if (f < 0) return pc_fail(s, "too many families");
    if (s->has_samples[f])
        return pc_fail(s, "%s after samples of %s", help ? "HELP" : "TYPE", name);
    if (help) {
        if (s->has_help[f]) return pc_fail(s, "second HELP for %s", name);
        s->has_help[f] = true;
        for (; *p; p++)
            if (*p == '\\' && p[1] != '\\' && p[1] != 'n')
                return pc_fail(s, "bad HELP escape");
            else if (*p == '\\')
                p++;
        return true;
    }
    if (s->has_type[f]) return pc_fail(s, "second TYPE for %s", name);
    if (strcmp(p, "counter") && strcmp(p, "gauge") && strcmp(p, "histogram") &&
        strcmp(p, "summary") && strcmp(p, "untyped"))
        return pc_fail(s, "bad type '%s'", p);
    s->has_type[f] = true;
    snprintf(s->types[f], sizeof s->types[0], "%s", p);
    return true;
}

/* Parses {a="x",...}: writes the canonical label text without le to key, le's value to le. */
static bool pc_labels(pc_state *s, const char **pp, char *key, size_t keycap, char *le)
{
    const char *p = *pp;
    size_t k = 0;
    key[0] = 0;
    le[0] = 0;
    if (*p != '{') return true;
    p++;
    char seen[16][128];
    int nseen = 0;
    while (*p != '}') {
        char lname[128], val[1024];
        size_t vn = 0;
        if (!pc_name(&p, lname, false)) return pc_fail(s, "bad label name");
        for (int i = 0; i < nseen; i++)
            if (!strcmp(seen[i], lname)) return pc_fail(s, "duplicate label %s", lname);
        if (nseen < 16) snprintf(seen[nseen++], 128, "%s", lname);
        if (p[0] != '=' || p[1] != '"') return pc_fail(s, "expected =\" after %s", lname);
        p += 2;
        while (*p != '"') {
            if (!*p) return pc_fail(s, "unterminated label value");
            if (*p == '\\') {
                if (p[1] != '\\' && p[1] != '"' && p[1] != 'n') return pc_fail(s, "bad escape");
                p++;
            }
            if (vn < sizeof val - 1) val[vn++] = *p;
            p++;
        }
        val[vn] = 0;
        p++;
        if (!strcmp(lname, "le")) {
            if (vn >= 64) return pc_fail(s, "le too long");
            memcpy(le, val, vn + 1);
        } else
            k += (size_t)snprintf(key + k, keycap - k, "%s=%s,", lname, val);
        if (k >= keycap) return pc_fail(s, "labels too long");
        if (*p == ',')
            p++;
        else if (*p != '}')
            return pc_fail(s, "expected , or }");
    }
    *pp = p + 1;
    return true;
}

static bool pc_histogram(pc_state *s, const char *suffix, const char *key, const char *le, double v)
{
    if (!strcmp(suffix, "_bucket")) {
        double lev;
        if (!le[0] || !pc_value(le, &lev) || isnan(lev)) return pc_fail(s, "bad le '%s'", le);
        if (s->h_stage == 1 && strcmp(s->h_key, key) != 0)
            return pc_fail(s, "series %s ended without +Inf", s->h_key);
        if (s->h_stage != 1) {
            if (s->h_stage == 2) return pc_fail(s, "_bucket after _sum");
            s->h_stage = 1;
            snprintf(s->h_key, sizeof s->h_key, "%s", key);
            s->h_last_le = -INFINITY;
            s->h_last_count = 0;
            s->h_saw_inf = false;
        } else if (!(lev > s->h_last_le) || s->h_saw_inf) {
            return pc_fail(s, "le not increasing");
        }
        if (v < s->h_last_count) return pc_fail(s, "buckets not cumulative");
        s->h_last_le = lev;
        s->h_last_count = v;
        s->h_saw_inf = isinf(lev) && lev > 0;
        return true;
    }
    if (le[0]) return pc_fail(s, "le on %s", suffix);
    if (s->h_stage == 0 || strcmp(s->h_key, key) != 0)
        return pc_fail(s, "%s without buckets", suffix);
    if (!strcmp(suffix, "_sum")) {
        if (s->h_stage != 1 || !s->h_saw_inf) return pc_fail(s, "_sum before the +Inf bucket");
        s->h_stage = 2;
        return true;
    }
    if (s->h_stage != 2) return pc_fail(s, "_count before _sum");
    if (v != s->h_last_count) return pc_fail(s, "_count %g != +Inf bucket %g", v, s->h_last_count);
    s->h_stage = 0;
    return true;
}

static bool pc_sample(pc_state *s, const char *l)
{
    const char *p = l;
    char name[128], key[2048], le[64];
    if (!pc_name(&p, name, true)) return pc_fail(s, "bad metric name");
    if (!pc_labels(s, &p, key, sizeof key, le)) return false;
    if (*p != ' ') return pc_fail(s, "expected a space before the value");
    double v;
    if (!pc_value(p + 1, &v)) return pc_fail(s, "bad value '%s'", p + 1);
    /* The family: a histogram's base name when a suffix matches a declared histogram. */
    char fam[128];
    const char *suffix = "";
    snprintf(fam, sizeof fam, "%s", name);
    static const char *const sfx[] = {"_bucket", "_sum", "_count"};
    for (int i = 0; i < 3; i++) {
        size_t n = strlen(name), m = strlen(sfx[i]);
        if (n > m && !strcmp(name + n - m, sfx[i])) {
            char base[128];
            snprintf(base, sizeof base, "%.*s", (int)(n - m), name);
            for (int f = 0; f < s->nfams; f++)
                if (!strcmp(s->fams[f], base) && !strcmp(s->types[f], "histogram")) {
                    snprintf(fam, sizeof fam, "%s", base);
                    suffix = sfx[i];
                }
        }
    }
    int f = pc_family(s, fam);
    if (f < 0) return pc_fail(s, "too many families");
    if (!s->has_type[f]) return pc_fail(s, "sample of %s before its TYPE", fam);
    if (s->cur_fam != f && s->has_samples[f]) return pc_fail(s, "%s is not contiguous", fam);
    if (s->cur_fam != f && s->h_stage != 0) return pc_fail(s, "histogram %s unfinished", s->h_key);
    s->cur_fam = f;
    s->has_samples[f] = true;
    bool histo = !strcmp(s->types[f], "histogram");
    if (histo && !*suffix) return pc_fail(s, "histogram sample without suffix");
    if (!strcmp(s->types[f], "counter") && !(v >= 0)) return pc_fail(s, "negative counter");
    if (histo && !pc_histogram(s, suffix, key, le, v)) return false;
    /* No series twice. */
    char id[2304];
    snprintf(id, sizeof id, "%s{%sle=%s}", name, key, le);
    for (int i = 0; i < s->nseries; i++)
        if (!strcmp(s->series[i], id)) return pc_fail(s, "duplicate series %s", id);
    if (s->nseries < PC_MAX_SERIES) s->series[s->nseries++] = strdup(id);
    s->samples++;
    return true;
}

/* Checks text; returns true, or false with s->err set. Free with pc_done. */
static bool pc_check(pc_state *s, const char *text)
{
    memset(s, 0, sizeof *s);
    s->cur_fam = -1;
    const char *p = text;
    while (*p) {
        s->line++;
        const char *nl = strchr(p, '\n');
        if (!nl) return pc_fail(s, "last line has no newline");
        size_t n = (size_t)(nl - p);
        char *l = malloc(n + 1);
        memcpy(l, p, n);
        l[n] = 0;
        bool ok = n > 0 && (l[0] == '#' ? pc_comment(s, l) : pc_sample(s, l));
        if (n == 0) pc_fail(s, "empty line");
        free(l);
        if (!ok) return false;
        p = nl + 1;
    }
    if (s->h_stage != 0) return pc_fail(s, "histogram %s unfinished at the end", s->h_key);
    return true;
}

static void pc_done(pc_state *s)
{
    for (int i = 0; i < s->nseries; i++)
        free(s->series[i]);
    s->nseries = 0;
}

#endif
