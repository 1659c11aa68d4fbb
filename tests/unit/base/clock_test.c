/* Clocks: monotonic never goes back; the test clock replaces it everywhere and moves only when
 * told; the advance hook fires on every move. */
#include "harness.h"
#include "base/base_int.h"

#include <stdatomic.h>

static void test_monotonic(void **state)
{
    int64_t a = sl_now_ns();
    int64_t b = sl_now_ns();
    assert_true(a > 0);
    assert_true(b >= a);
    int64_t w = sl_wall_ns();
    assert_true(w > SL_SEC(1700000000)); /* after 2023: a real epoch time */
}

static atomic_int g_hook_calls;
static void hook(void)
{
    atomic_fetch_add(&g_hook_calls, 1);
}

static void test_test_clock(void **state)
{
    sl__clock_set_advance_hook(hook);
    sl_test_clock_install(SL_SEC(1000));
    assert_true(sl_test_clock_installed());
    assert_int_equal(sl_now_ns(), SL_SEC(1000));
    assert_int_equal(sl_now_ns(), SL_SEC(1000)); /* does not move by itself */
    sl_test_clock_advance(SL_MS(5));
    assert_int_equal(sl_now_ns(), SL_SEC(1000) + SL_MS(5));
    sl_test_clock_advance(-SL_MS(10)); /* backwards is allowed */
    assert_int_equal(sl_now_ns(), SL_SEC(1000) - SL_MS(5));
    sl_test_clock_set(SL_SEC(7));
    assert_int_equal(sl_now_ns(), SL_SEC(7));
    assert_true(sl_mono_ns() != SL_SEC(7));
    sl_test_clock_uninstall();
    assert_false(sl_test_clock_installed());
    assert_true(sl_now_ns() > 0);
    assert_int_equal(atomic_load(&g_hook_calls), 5);
    sl_test_clock_advance(1); /* no effect when not installed */
    assert_int_equal(atomic_load(&g_hook_calls), 5);
    sl__clock_set_advance_hook(NULL);
}

/* Deadline arithmetic clamps instead of wrapping: now + SL_FOREVER stays "never". */
static void test_ns_add_sat(void **state)
{
    assert_int_equal(sl__ns_add_sat(SL_SEC(1), SL_MS(5)), SL_SEC(1) + SL_MS(5));
    assert_int_equal(sl__ns_add_sat(SL_SEC(1), -SL_SEC(2)), -SL_SEC(1));
    assert_true(sl__ns_add_sat(SL_SEC(1), SL_FOREVER) == SL_FOREVER);
    assert_true(sl__ns_add_sat(SL_FOREVER, 1) == SL_FOREVER);
    assert_true(sl__ns_add_sat(-SL_SEC(1), INT64_MIN) == INT64_MIN);
    assert_true(sl__ns_add_sat(SL_FOREVER, INT64_MIN) == -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_monotonic),
        cmocka_unit_test(test_test_clock),
        cmocka_unit_test(test_ns_add_sat),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
