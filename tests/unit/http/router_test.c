/* Router: Go 1.22 ServeMux semantics, case by case from the net/http documentation. */
#include "harness.h"
#include "sluice/router.h"

#include <string.h>

static char H[32][1]; /* distinct handler identities */
#define h(i) ((void *)H[i])

static sl_router *mk(const char **patterns)
{
    sl_router *r;
    assert_int_equal(sl_router_new(&r), 0);
    for (int i = 0; patterns[i]; i++) {
        char err[256];
        int rc = sl_router_add(r, patterns[i], h(i), err, sizeof err);
        if (rc != 0) fail_msg("add %s: %s (%s)", patterns[i], sl_errname(rc), err);
    }
    return r;
}

/* Matches and returns the status; *which gets the index of the winning pattern or -1. */
static int go(sl_router *r, const char *method, const char *path, int *which, sl_route_match *m)
{
    static char scratch[4096];
    int st =
        sl_router_match(r, method, strlen(method), path, strlen(path), m, scratch, sizeof scratch);
    *which = -1;
    for (int i = 0; i < 32 && st == 200; i++)
        if (m->handler == h(i)) *which = i;
    return st;
}

static void expect(sl_router *r, const char *method, const char *path, int status, int which)
{
    sl_route_match m;
    int w;
    int st = go(r, method, path, &w, &m);
    if (st != status || w != which)
        fail_msg("%s %s: got %d (pattern %d), want %d (pattern %d)", method, path, st, w, status,
                 which);
}

static void expect_param(sl_router *r, const char *path, const char *name, const char *want)
{
    sl_route_match m;
    int w;
    assert_int_equal(go(r, "GET", path, &w, &m), 200);
    size_t len;
    const char *v = sl_route_param_get(&m, name, &len);
    if (!want) {
        assert_null(v);
        return;
    }
    assert_non_null(v);
    if (len != strlen(want) || memcmp(v, want, len) != 0)
        fail_msg("%s {%s}: got \"%.*s\", want \"%s\"", path, name, (int)len, v, want);
}

static void test_basic_and_wildcards(void **state)
{
    const char *p[] = {"/index.html",                   /* 0 */
                       "GET /static/",                  /* 1 */
                       "/b/{bucket}/o/{objectname...}", /* 2 */
                       "/{$}",                          /* 3 */
                       "/users/{id}",                   /* 4 */
                       NULL};
    sl_router *r = mk(p);
    expect(r, "GET", "/index.html", 200, 0);
    expect(r, "POST", "/index.html", 200, 0); /* no method: every method */
    expect(r, "GET", "/static/css/a.css", 200, 1);
    expect(r, "HEAD", "/static/x", 200, 1); /* GET serves HEAD */
    expect(r, "GET", "/b/mybucket/o/a/b/c", 200, 2);
    expect(r, "GET", "/", 200, 3);
    expect(r, "GET", "/users/42", 200, 4);
    expect(r, "GET", "/users/", 404, -1); /* {id} needs a non-empty segment */
    expect(r, "GET", "/users/42/x", 404, -1);
    expect(r, "GET", "/nothing", 404, -1);
    expect_param(r, "/users/42", "id", "42");
    expect_param(r, "/b/mybucket/o/a/b/c", "bucket", "mybucket");
    expect_param(r, "/b/mybucket/o/a/b/c", "objectname", "a/b/c");
    expect_param(r, "/b/x/o/", "objectname", "");
    expect_param(r, "/users/42", "nope", NULL);
    sl_router_free(r);
}

static void test_most_specific_wins(void **state)
{
    const char *p[] = {"/images/",              /* 0 */
                       "/images/thumbnails/",   /* 1 */
                       "/b/{bucket}/o/default", /* 2 */
                       "/b/{bucket}/o/{noun}",  /* 3 */
                       "/posts/{id}",           /* 4 */
                       "/posts/latest",         /* 5 */
                       "GET /items/{id}",       /* 6 */
                       "/items/{id}",           /* 7 */
                       "HEAD /items/{id}",      /* 8 */
                       "/",                     /* 9 */
                       NULL};
    sl_router *r = mk(p);
    expect(r, "GET", "/images/thumbnails/x.png", 200, 1);
    expect(r, "GET", "/images/x.png", 200, 0);
    expect(r, "GET", "/b/k/o/default", 200, 2);
    expect(r, "GET", "/b/k/o/other", 200, 3);
    expect(r, "GET", "/posts/latest", 200, 5);
    expect(r, "GET", "/posts/7", 200, 4);
    expect(r, "GET", "/items/1", 200, 6);
    expect(r, "HEAD", "/items/1", 200, 8); /* an explicit HEAD beats GET for HEAD */
    expect(r, "DELETE", "/items/1", 200, 7);
    expect(r, "GET", "/anything/else", 200, 9);
    sl_router_free(r);
}

static void test_registration_order_does_not_matter(void **state)
{
    /* The same patterns registered general-first give the same winners. */
    const char *p[] = {"/", "/posts/{id}", "/images/", "/posts/latest", "/images/thumbnails/",
                       NULL};
    sl_router *r = mk(p);
    expect(r, "GET", "/posts/latest", 200, 3);
    expect(r, "GET", "/posts/9", 200, 1);
    expect(r, "GET", "/images/thumbnails/a", 200, 4);
    expect(r, "GET", "/images/a", 200, 2);
    expect(r, "GET", "/x", 200, 0);
    sl_router_free(r);
}

static void expect_add(sl_router *r, const char *pattern, int want)
{
    char err[256] = "";
    int rc = sl_router_add(r, pattern, h(31), err, sizeof err);
    if (rc != want)
        fail_msg("add \"%s\": got %s, want %s (%s)", pattern, sl_errname(rc), sl_errname(want),
                 err);
    if (want != 0) assert_true(strlen(err) > 0);
}

static void test_conflicts(void **state)
{
    sl_router *r;
    assert_int_equal(sl_router_new(&r), 0);
    expect_add(r, "GET /", 0);
    expect_add(r, "/index.html", SL_ECONFLICT); /* method vs path specificity cross */
    expect_add(r, "GET /", SL_ECONFLICT);       /* duplicate */
    expect_add(r, "/a/{x}", SL_ECONFLICT);      /* GET /a/b: method vs path again */
    expect_add(r, "GET /a/{x}", 0);             /* more specific than GET / in both */
    sl_router_free(r);

    assert_int_equal(sl_router_new(&r), 0);
    expect_add(r, "/a/{x}", 0);
    expect_add(r, "/{y}/b", SL_ECONFLICT); /* /a/b matches both, neither more specific */
    expect_add(r, "/a/{z}", SL_ECONFLICT); /* same as /a/{x}: names do not matter */
    expect_add(r, "POST /a/{x}", 0);       /* more specific than /a/{x} */
    expect_add(r, "GET /a/{x}", 0);
    expect_add(r, "HEAD /a/{x}", 0);
    expect_add(r, "HEAD /{y}/b", SL_ECONFLICT); /* still crosses /a/{x} */
    expect_add(r, "/c/{$}", 0);
    expect_add(r, "/c/", 0);                     /* more general than /c/{$} */
    expect_add(r, "/c/{rest...}", SL_ECONFLICT); /* same requests as /c/ */
    sl_route_match m;
    int w;
    assert_int_equal(go(r, "GET", "/a/b", &w, &m), 200);
    assert_string_equal(m.pattern, "GET /a/{x}");
    assert_int_equal(go(r, "HEAD", "/a/b", &w, &m), 200);
    assert_string_equal(m.pattern, "HEAD /a/{x}");
    assert_int_equal(go(r, "PUT", "/a/b", &w, &m), 200);
    assert_string_equal(m.pattern, "/a/{x}");
    assert_int_equal(go(r, "GET", "/c/", &w, &m), 200);
    assert_string_equal(m.pattern, "/c/{$}");
    assert_int_equal(go(r, "GET", "/c/x", &w, &m), 200);
    assert_string_equal(m.pattern, "/c/");
    sl_router_free(r);
}

static void test_malformed_patterns(void **state)
{
    sl_router *r;
    assert_int_equal(sl_router_new(&r), 0);
    const char *bad[] = {"",        "GET",       "x/y",    "GET x",    "/a/{", "/a/{x}b",
                         "/a/b{x}", "/{x...}/y", "/{$}/y", "/{x}/{x}", "/{}",  "/{1x}",
                         "G@T /",   "/a//b",     "/a/%zz", "/{x.}",    NULL};
    for (int i = 0; bad[i]; i++)
        expect_add(r, bad[i], SL_EINVAL);
    assert_int_equal(sl_router_add(r, "/x", NULL, NULL, 0), SL_EINVAL);
    sl_router_free(r);
}

static void test_405_and_allow(void **state)
{
    const char *p[] = {"GET /things/{id}", "DELETE /things/{id}", "POST /things/", NULL};
    sl_router *r = mk(p);
    sl_route_match m;
    int w;
    assert_int_equal(go(r, "PUT", "/things/3", &w, &m), 405);
    assert_int_equal(m.allow_len, strlen("DELETE, GET, HEAD, POST"));
    assert_memory_equal(m.allow, "DELETE, GET, HEAD, POST", m.allow_len);
    assert_int_equal(go(r, "GET", "/other", &w, &m), 404);
    assert_null(m.allow);
    sl_router_free(r);
}

static void test_redirects(void **state)
{
    const char *p[] = {"/images/", "/", "/exact", "/dir/{$}", NULL};
    sl_router *r = mk(p);
    sl_route_match m;
    int w;
    /* /images names the subtree root without its slash: 301 even though "/" matches it. */
    assert_int_equal(go(r, "GET", "/images", &w, &m), 301);
    assert_int_equal(m.location_len, 8);
    assert_memory_equal(m.location, "/images/", 8);
    assert_int_equal(go(r, "GET", "/dir", &w, &m), 301);
    assert_memory_equal(m.location, "/dir/", 5);
    expect(r, "GET", "/exact", 200, 2);
    /* Unclean paths are redirected to the clean form. */
    assert_int_equal(go(r, "GET", "/a/../exact", &w, &m), 301);
    assert_int_equal(m.location_len, 6);
    assert_memory_equal(m.location, "/exact", 6);
    assert_int_equal(go(r, "GET", "//images//x", &w, &m), 301);
    assert_memory_equal(m.location, "/images/x", m.location_len);
    assert_int_equal(go(r, "GET", "/images/./x/", &w, &m), 301);
    assert_memory_equal(m.location, "/images/x/", m.location_len);
    assert_int_equal(go(r, "GET", "/..", &w, &m), 301);
    assert_memory_equal(m.location, "/", m.location_len);
    sl_router_free(r);
}

static void test_escaped_paths(void **state)
{
    const char *p[] = {"/files/{name}", "/raw/{p...}", "/lit%2Fslash", "/sp%20ace", NULL};
    sl_router *r = mk(p);
    /* %2F stays inside its segment: one segment "a/b". */
    expect_param(r, "/files/a%2Fb", "name", "a/b");
    expect(r, "GET", "/files/a/b", 404, -1);
    expect_param(r, "/raw/a/b%20c", "p", "a/b c");
    expect(r, "GET", "/lit%2Fslash", 200, 2);
    expect(r, "GET", "/lit/slash", 404, -1);
    expect(r, "GET", "/sp%20ace", 200, 3);
    sl_route_match m;
    char scratch[256];
    assert_int_equal(sl_router_match(r, "GET", 3, "/files/%zz", 10, &m, scratch, sizeof scratch),
                     SL_EINVAL);
    assert_int_equal(sl_router_match(r, "GET", 3, "files", 5, &m, scratch, sizeof scratch),
                     SL_EINVAL);
    assert_int_equal(sl_router_match(r, "GET", 3, "/files/abc", 10, &m, scratch, 4), SL_ENOSPC);
    sl_router_free(r);
}

static void test_deep_paths(void **state)
{
    const char *p[] = {"/deep/", NULL};
    sl_router *r = mk(p);
    char path[2048] = "/deep";
    for (int i = 0; i < 100; i++)
        strcat(path, "/s");
    expect(r, "GET", path, 200, 0);
    sl_router_free(r);
    const char *q[] = {"/{a}/{b}", NULL};
    r = mk(q);
    expect(r, "GET", path, 404, -1); /* 101 segments never meet a two-segment pattern */
    sl_router_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basic_and_wildcards),
        cmocka_unit_test(test_most_specific_wins),
        cmocka_unit_test(test_registration_order_does_not_matter),
        cmocka_unit_test(test_conflicts),
        cmocka_unit_test(test_malformed_patterns),
        cmocka_unit_test(test_405_and_allow),
        cmocka_unit_test(test_redirects),
        cmocka_unit_test(test_escaped_paths),
        cmocka_unit_test(test_deep_paths),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
