/* Built by `make install-check` against the installed race variant (pkg-config sluice-race and
 * find_package(sluice COMPONENTS race)). Two sl_group tasks bump one counter. Compiled with
 * -DSLUICE_CHECK_RACY the counter is a plain int: ThreadSanitizer must report the race. Without
 * it the counter is _Atomic and the run must be clean. Both tasks meet at a wait group after
 * their increment, so they overlap, as two requests do under load. */
#include <stdatomic.h>
#include <stdio.h>
#include <sluice/sluice.h>

#ifdef SLUICE_CHECK_RACY
static long hits; /* racy on purpose */
#define BUMP() (hits++)
#define READ() (hits)
#else
static _Atomic long hits;
#define BUMP() atomic_fetch_add_explicit(&hits, 1, memory_order_relaxed)
#define READ() atomic_load(&hits)
#endif

static sl_wg meet;

static int bump(sl_ctx *ctx, void *arg)
{
    BUMP();
    sl_wg_done(&meet);
    return sl_wg_wait(&meet, ctx); /* both tasks are in flight before either returns */
}

int main(void)
{
    sl_executor *ex;
    sl_group *g;
    sl_ctx *deadline;
    if (sl_wg_init(&meet) != 0 || sl_executor_new(2, &ex) != 0) return 2;
    if (sl_ctx_with_timeout(NULL, SL_SEC(10), &deadline) != 0) return 2;
    if (sl_group_new_on(deadline, ex, &g) != 0) return 2;
    sl_wg_add(&meet, 2);
    sl_group_go(g, bump, NULL);
    sl_group_go(g, bump, NULL);
    int rc = sl_group_wait(g);
    sl_group_free(g);
    sl_ctx_release(deadline);
    sl_executor_free(ex);
    sl_wg_destroy(&meet);
    printf("hits=%ld rc=%s\n", (long)READ(), rc ? sl_errname(rc) : "0");
    return rc == 0 && READ() == 2 ? 0 : 1;
}
