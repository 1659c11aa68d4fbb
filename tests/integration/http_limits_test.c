/* Bounded memory and bounded holding, over real sockets (issue 13):
 *  - a body trickled a byte at a time gets 408 and a close within about one read_body_timeout,
 *    because reads slower than min_body_rate do not extend the body timer;
 *  - max_conns_per_ip: the connection past it gets 429 and a close; another address and a
 *    freed slot are served;
 *  - max_body_memory: a body whose buffer would pass the server-wide budget gets 503 with
 *    Retry-After (a server condition, not the client's), and the other body completes. */
#include "harness.h"
#include "http_client.h"

static void h_len(sl_req *req, sl_resp *resp, void *arg)
{
    (void)arg;
    size_t n;
    sl_req_body(req, &n);
    char b[32];
    int k = snprintf(b, sizeof b, "%zu", n);
    sl_resp_set_body(resp, b, (size_t)k);
}

/* Connects from src (an address in 127.0.0.0/8). */
static int connect_from(int port, const char *src)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in me = {.sin_family = AF_INET};
    inet_pton(AF_INET, src, &me.sin_addr);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    assert_int_equal(bind(fd, (struct sockaddr *)&me, sizeof me), 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    return fd;
}

static void test_trickle_body_408(void **state)
{
    (void)state;
    sl_server_opts o = {.handler = h_len, .reactors = 1, .read_body_timeout_ns = SL_SEC(1)};
    int port;
    sl_server *srv = tc_server_start(&o, &port);
    tc_conn c;
    tc_init(&c, tc_connect(port));
    assert_true(tc_sends(c.fd, "POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\n"));
    int64_t t0 = sl_mono_ns();
    /* A byte every 50 ms (the poll for the server's answer paces it): 20 bytes/s. */
    while (sl_mono_ns() - t0 < SL_SEC(6) && !tc_readable(c.fd, 50))
        if (!tc_sends(c.fd, "x")) break;
    int64_t took = sl_mono_ns() - t0;
    tc_resp r;
    assert_int_equal(tc_read_response(&c, &r), 0);
    assert_int_equal(r.status, 408);
    tc_resp_free(&r);
    assert_true(took < SL_MS(3000)); /* about one window (1 s), not the 6 s of trickle */
    assert_true(tc_wait_eof(&c, 3000));
    close(c.fd);
    /* A body that keeps up is not cut, however slowly its last bytes come. */
    tc_init(&c, tc_connect(port));
    assert_true(tc_sends(c.fd, "POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nab"));
    assert_false(tc_readable(c.fd, 100));
    assert_true(tc_sends(c.fd, "cd"));
    assert_int_equal(tc_read_response(&c, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "4");
    tc_resp_free(&r);
    close(c.fd);
    sl_server_free(srv);
}

static void test_per_ip_cap_429(void **state)
{
    (void)state;
    sl_server_opts o = {.handler = h_len, .reactors = 2, .max_conns_per_ip = 3};
    int port;
    sl_server *srv = tc_server_start(&o, &port);
    const char *get = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    tc_conn *c[3];
    for (int i = 0; i < 3; i++) {
        c[i] = malloc(sizeof *c[i]);
        tc_init(c[i], connect_from(port, "127.0.0.7"));
        assert_true(tc_sends(c[i]->fd, get));
        tc_resp r;
        assert_int_equal(tc_read_response(c[i], &r), 0);
        assert_int_equal(r.status, 200);
        tc_resp_free(&r);
    }
    tc_conn x;
    tc_init(&x, connect_from(port, "127.0.0.7"));
    tc_resp r;
    assert_int_equal(tc_read_response(&x, &r), 0);
    assert_int_equal(r.status, 429);
    char v[32];
    assert_non_null(tc_find_hdr(r.head, "Connection", v, sizeof v));
    assert_string_equal(v, "close");
    tc_resp_free(&r);
    assert_true(tc_wait_eof(&x, 2000));
    close(x.fd);
    /* Another address has its own budget. */
    tc_init(&x, connect_from(port, "127.0.0.8"));
    assert_true(tc_sends(x.fd, get));
    assert_int_equal(tc_read_response(&x, &r), 0);
    assert_int_equal(r.status, 200);
    tc_resp_free(&r);
    close(x.fd);
    /* A freed slot is reusable. */
    close(c[0]->fd);
    free(c[0]);
    assert_true(SL_WAIT_UNTIL(tc_stat_conns(srv) == 2, 2000));
    tc_init(&x, connect_from(port, "127.0.0.7"));
    assert_true(tc_sends(x.fd, get));
    assert_int_equal(tc_read_response(&x, &r), 0);
    assert_int_equal(r.status, 200);
    tc_resp_free(&r);
    close(x.fd);
    for (int i = 1; i < 3; i++) {
        close(c[i]->fd);
        free(c[i]);
    }
    sl_server_free(srv);
}

static void test_body_memory_budget_503(void **state)
{
    (void)state;
    sl_server_opts o = {
        .handler = h_len, .reactors = 1, .max_body_memory = 80 * 1024, .max_conns_per_ip = 100};
    int port;
    sl_server *srv = tc_server_start(&o, &port);
    enum { ABODY = 50000, BBODY = 30000 };
    char *junk = malloc(ABODY);
    memset(junk, 'x', ABODY);
    tc_conn a, b;
    tc_init(&a, tc_connect(port));
    tc_init(&b, tc_connect(port));
    char head[128];
    snprintf(head, sizeof head, "POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n",
             ABODY + 10);
    assert_true(tc_sends(a.fd, head));
    assert_true(tc_send(a.fd, junk, ABODY)); /* held: 10 bytes still to come */
    assert_false(tc_readable(a.fd, 200));
    snprintf(head, sizeof head, "POST /b HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n", BBODY);
    assert_true(tc_sends(b.fd, head));
    tc_send(b.fd, junk, BBODY); /* may fail once the server closed */
    tc_resp r;
    assert_int_equal(tc_read_response(&b, &r), 0);
    assert_int_equal(r.status, 503);
    char v[32];
    assert_non_null(tc_find_hdr(r.head, "Retry-After", v, sizeof v));
    tc_resp_free(&r);
    close(b.fd);
    assert_true(tc_sends(a.fd, "0123456789"));
    assert_int_equal(tc_read_response(&a, &r), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(atoi(r.body), ABODY + 10);
    tc_resp_free(&r);
    close(a.fd);
    free(junk);
    sl_server_free(srv);
}

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SANITIZED 1
#endif
#endif

#ifndef SANITIZED
static long rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long size = 0, res = 0;
    if (f) {
        if (fscanf(f, "%ld %ld", &size, &res) != 2) res = 0;
        fclose(f);
    }
    return res * sysconf(_SC_PAGESIZE);
}
#endif

/* A flood of large bodies, then quiet: the memory goes back to the kernel (measured as RSS;
 * not under sanitizers, whose allocators keep freed memory on purpose). */
static void test_memory_returned_after_flood(void **state)
{
    (void)state;
#ifdef SANITIZED
    skip();
#else
    sl_server_opts o = {.handler = h_len, .reactors = 2};
    int port;
    sl_server *srv = tc_server_start(&o, &port);
    enum { N = 48, BODY = 600000 };
    char *junk = malloc(BODY);
    memset(junk, 'y', BODY);
    assert_int_equal(tc_get_status(port, "GET / HTTP/1.1\r\nHost: a\r\n\r\n"), 200);
    long before = rss_bytes();
    tc_conn *c = calloc(N, sizeof *c);
    char head[128];
    snprintf(head, sizeof head, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n", BODY);
    for (int i = 0; i < N; i++) {
        tc_init(&c[i], tc_connect(port));
        assert_true(tc_sends(c[i].fd, head));
        assert_true(tc_send(c[i].fd, junk, BODY - 1)); /* all held at once */
    }
    /* Every body is buffered (the server read all but the last byte of each). */
    assert_true(SL_WAIT_UNTIL(rss_bytes() - before > (long)N * BODY / 2, 10000));
    long peak = rss_bytes();
    for (int i = 0; i < N; i++) {
        assert_true(tc_sends(c[i].fd, "y"));
        tc_resp r;
        assert_int_equal(tc_read_response(&c[i], &r), 0);
        assert_int_equal(r.status, 200);
        tc_resp_free(&r);
        close(c[i].fd);
    }
    assert_true(SL_WAIT_UNTIL(tc_stat_conns(srv) == 0, 5000));
    long after = rss_bytes();
    fprintf(stderr, "flood of %d x %d-byte bodies: RSS %ld -> peak %ld -> after %ld KiB\n", N, BODY,
            before / 1024, peak / 1024, after / 1024);
    assert_true(after - before < 4L << 20); /* without the trim: about 10 MiB stays */
    free(c);
    free(junk);
    sl_server_free(srv);
#endif
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_trickle_body_408),
        cmocka_unit_test(test_per_ip_cap_429),
        cmocka_unit_test(test_body_memory_budget_503),
        cmocka_unit_test(test_memory_returned_after_flood),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
