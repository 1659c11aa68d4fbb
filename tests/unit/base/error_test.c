/* The error table: every code has a distinct value, a name and a message. */
#include "harness.h"

#include <string.h>

static void test_names_and_messages(void **state)
{
    assert_string_equal(sl_errname(SL_OK), "SL_OK");
    assert_string_equal(sl_errname(SL_ETIMEDOUT), "SL_ETIMEDOUT");
    assert_string_equal(sl_errname(SL_ECLOSED), "SL_ECLOSED");
    assert_string_equal(sl_strerror(SL_ECANCELED), "context canceled");
    assert_string_equal(sl_strerror(SL_EFULL), "full");
    assert_string_equal(sl_errname(-999999), "SL_EUNKNOWN");
    assert_string_equal(sl_strerror(-999999), "unknown error");
    assert_int_equal(SL_ETIMEDOUT, -ETIMEDOUT);
    assert_int_equal(sl_from_errno(ENOMEM), SL_ENOMEM);
}

static void test_codes_distinct(void **state)
{
    static const int codes[] = {
#define X(name, value, msg) SL_##name,
        SL_ERRNO_MAP(X) SL_OWN_ERROR_MAP(X)
#undef X
    };
    size_t n = sizeof codes / sizeof codes[0];
    for (size_t i = 0; i < n; i++) {
        assert_true(codes[i] < 0);
        assert_string_not_equal(sl_errname(codes[i]), "SL_EUNKNOWN");
        assert_true(strlen(sl_strerror(codes[i])) > 0);
        for (size_t j = i + 1; j < n; j++)
            assert_int_not_equal(codes[i], codes[j]);
    }
}

static void test_unnamed_errno_has_os_text(void **state)
{
    /* EXDEV is not in our table; its OS text still comes through. */
    assert_string_equal(sl_errname(-EXDEV), "SL_EUNKNOWN");
    assert_string_not_equal(sl_strerror(-EXDEV), "unknown error");
}

static void test_positive_errno(void **state)
{
    /* A user passes errno itself: the same text as the sluice code, named or not. */
    assert_string_equal(sl_strerror(EADDRINUSE), "address already in use");
    assert_string_equal(sl_strerror(ENOENT), sl_strerror(SL_ENOENT));
    assert_string_equal(sl_strerror(EXDEV), sl_strerror(-EXDEV));
    assert_string_not_equal(sl_strerror(EXDEV), "unknown error");
    assert_string_equal(sl_strerror(4001), "unknown error"); /* not an errno, not ours */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names_and_messages),
        cmocka_unit_test(test_codes_distinct),
        cmocka_unit_test(test_unnamed_errno_has_os_text),
        cmocka_unit_test(test_positive_errno),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
