/* Error names and messages, generated from the one table in sluice/error.h.
 * A switch per lookup keeps both functions free of any table that could go out of step.
 *
 * The error detail (sl_error_detail) is one thread-local buffer: constructors fail on the
 * thread that called them, so the explanation is there for that caller and no other, and a
 * constructor's signature does not grow an error buffer. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "sluice/error.h"
#include "base/base_int.h"

static _Thread_local char detail[512];

const char *sl_error_detail(void)
{
    return detail;
}

int sl__fail(int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    return rc;
}

const char *sl_strerror(int err)
{
    switch (err) {
    case SL_OK: return "ok";
#define X(name, value, msg) \
    case SL_##name: return msg;
        SL_ERRNO_MAP(X)
        SL_OWN_ERROR_MAP(X)
#undef X
    default: break;
    }
    /* An errno we have no name for: the OS text is still the best answer. strerror's buffer is
     * static for known values on glibc; the thread-safe variant cannot return a static string
     * for unknown ones, so those get a fixed answer. */
    if (err > 0 && err < 4000)
        return sl_strerror(-err); /* a positive errno: same text as its sluice code */
    if (err < 0 && err > -4000)
        return strerrordesc_np(-err) ? strerrordesc_np(-err) : "unknown error";
    return "unknown error";
}

const char *sl_errname(int err)
{
    switch (err) {
    case SL_OK: return "SL_OK";
#define X(name, value, msg) \
    case SL_##name: return "SL_" #name;
        SL_ERRNO_MAP(X)
        SL_OWN_ERROR_MAP(X)
#undef X
    default: return "SL_EUNKNOWN";
    }
}
