/* Loader for tests/http_cases/NNN-name.http (format: tests/http_cases/README.md).
 *
 * Header-only so that unit tests (tests/unit/http) and integration tests (tests/integration)
 * share it without a library. Every function returns 0 or a negative SL_E* code and prints
 * why a file was refused, so a broken case fails loudly instead of testing nothing. */
#ifndef SLUICE_TEST_HTTP_CASES_H
#define SLUICE_TEST_HTTP_CASES_H

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

typedef struct sl_http_case {
    char path[1024];  /* the file */
    const char *name; /* its base name, inside path */
    int status;       /* expected status of the last request; 200 = parses */
    int requests;     /* pipelined requests in bytes (>= 1) */
    char why[256];
    char *bytes; /* the decoded request bytes (malloc'd, NUL-terminated for printing) */
    size_t len;
} sl_http_case;

static inline int sl__http_case_hex(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Parses a case from the file's text (text[0..n)). */
static inline int sl_http_case_parse(const char *text, size_t n, sl_http_case *c)
{
    c->status = 0;
    c->requests = 1;
    c->why[0] = 0;
    size_t i = 0;
    while (i < n && text[i] == '#') {
        size_t e = i;
        while (e < n && text[e] != '\n')
            e++;
        char line[512];
        size_t ll = e - i < sizeof(line) - 1 ? e - i : sizeof(line) - 1;
        memcpy(line, text + i, ll);
        line[ll] = 0;
        if (ll && line[ll - 1] == '\r') line[--ll] = 0;
        if (sscanf(line, "# status: %d", &c->status) == 1) {
        } else if (sscanf(line, "# requests: %d", &c->requests) == 1) {
        } else if (strncmp(line, "# why: ", 7) == 0) {
            size_t wl =
                strlen(line + 7) < sizeof(c->why) - 1 ? strlen(line + 7) : sizeof(c->why) - 1;
            memcpy(c->why, line + 7, wl);
            c->why[wl] = 0;
        } else {
            fprintf(stderr, "%s: unknown directive: %s\n", c->path, line);
            return SL_EPARSE;
        }
        i = e < n ? e + 1 : e;
    }
    if (c->status < 100 || c->status > 599 || c->requests < 1) {
        fprintf(stderr, "%s: missing or bad '# status:' / '# requests:'\n", c->path);
        return SL_EPARSE;
    }
    /* Line breaks go first, so escapes may be wrapped across lines. */
    char *flat = malloc(n - i + 1);
    c->bytes = malloc(n - i + 1);
    if (!flat || !c->bytes) {
        free(flat);
        free(c->bytes);
        c->bytes = NULL;
        return SL_ENOMEM;
    }
    size_t fl = 0;
    for (; i < n; i++)
        if (text[i] != '\n' && text[i] != '\r') flat[fl++] = text[i];
    size_t o = 0;
    for (size_t k = 0; k < fl; k++) {
        if (flat[k] != '\\') {
            c->bytes[o++] = flat[k];
            continue;
        }
        char e = k + 1 < fl ? flat[++k] : 0;
        int hi, lo;
        switch (e) {
        case 'r': c->bytes[o++] = '\r'; break;
        case 'n': c->bytes[o++] = '\n'; break;
        case 't': c->bytes[o++] = '\t'; break;
        case '0': c->bytes[o++] = '\0'; break;
        case '\\': c->bytes[o++] = '\\'; break;
        case 'x':
            hi = k + 1 < fl ? sl__http_case_hex((unsigned char)flat[k + 1]) : -1;
            lo = k + 2 < fl ? sl__http_case_hex((unsigned char)flat[k + 2]) : -1;
            if (hi < 0 || lo < 0) goto bad;
            c->bytes[o++] = (char)(hi * 16 + lo);
            k += 2;
            break;
        default: goto bad;
        }
    }
    free(flat);
    c->bytes[o] = 0;
    c->len = o;
    if (o == 0) {
        fprintf(stderr, "%s: no request bytes\n", c->path);
        free(c->bytes);
        c->bytes = NULL;
        return SL_EPARSE;
    }
    return 0;
bad:
    fprintf(stderr, "%s: bad escape\n", c->path);
    free(flat);
    free(c->bytes);
    c->bytes = NULL;
    return SL_EPARSE;
}

/* Loads one case file. Free it with sl_http_case_free. */
static inline int sl_http_case_load(const char *path, sl_http_case *c)
{
    memset(c, 0, sizeof(*c));
    snprintf(c->path, sizeof(c->path), "%s", path);
    const char *slash = strrchr(c->path, '/');
    c->name = slash ? slash + 1 : c->path;
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "%s: cannot open\n", path);
        return SL_ENOENT;
    }
    size_t cap = 1 << 16, n = 0;
    char *text = malloc(cap);
    size_t got;
    while (text && (got = fread(text + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) {
            char *t2 = realloc(text, cap * 2);
            if (!t2) {
                free(text);
                text = NULL;
                break;
            }
            text = t2;
            cap *= 2;
        }
    }
    fclose(f);
    if (!text) return SL_ENOMEM;
    int rc = sl_http_case_parse(text, n, c);
    free(text);
    return rc;
}

static inline void sl_http_case_free(sl_http_case *c)
{
    free(c->bytes);
    c->bytes = NULL;
}

/* The sorted paths of every *.http file in tests/http_cases of the source tree. */
typedef struct sl_http_case_list {
    char **paths;
    size_t n;
} sl_http_case_list;

static inline int sl__http_case_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static inline int sl_http_case_list_load(sl_http_case_list *l)
{
    char dir[1024];
    snprintf(dir, sizeof(dir), "%s/tests/http_cases", sl_test_source_dir());
    l->paths = NULL;
    l->n = 0;
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "%s: cannot open\n", dir);
        return SL_ENOENT;
    }
    size_t cap = 0;
    struct dirent *de;
    int rc = 0;
    while ((de = readdir(d)) != NULL) {
        size_t nl = strlen(de->d_name);
        if (nl < 6 || strcmp(de->d_name + nl - 5, ".http") != 0) continue;
        if (l->n == cap) {
            cap = cap ? cap * 2 : 64;
            char **p2 = realloc(l->paths, cap * sizeof(char *));
            if (!p2) {
                rc = SL_ENOMEM;
                break;
            }
            l->paths = p2;
        }
        size_t need = strlen(dir) + nl + 2;
        char *p = malloc(need);
        if (!p) {
            rc = SL_ENOMEM;
            break;
        }
        snprintf(p, need, "%s/%s", dir, de->d_name);
        l->paths[l->n++] = p;
    }
    closedir(d);
    if (l->n) qsort(l->paths, l->n, sizeof(char *), sl__http_case_cmp);
    return rc;
}

static inline void sl_http_case_list_free(sl_http_case_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->paths[i]);
    free(l->paths);
    l->paths = NULL;
    l->n = 0;
}

#endif /* SLUICE_TEST_HTTP_CASES_H */
