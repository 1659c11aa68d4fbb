/* sluice's one error vocabulary (libuv's model).
 *
 * Functions return int: 0 is success, > 0 a count where that is natural, < 0 an error code
 * SL_E*. OS errors pass through as -errno under their usual names; sluice's own codes live in
 * a reserved range (-4000 and below) that no errno reaches. One X-macro table below generates
 * the enum, sl_strerror() and sl_errname(), so a code cannot exist without its text. */
#ifndef SLUICE_ERROR_H
#define SLUICE_ERROR_H

#include <errno.h>
#include "sluice/common.h"

SL_BEGIN_DECLS

/* X(name, value, message) */
#define SL_ERRNO_MAP(X)                                    \
    X(EAGAIN, -EAGAIN, "resource temporarily unavailable") \
    X(ENOMEM, -ENOMEM, "out of memory")                    \
    X(EINVAL, -EINVAL, "invalid argument")                 \
    X(ETIMEDOUT, -ETIMEDOUT, "deadline exceeded")          \
    X(ECANCELED, -ECANCELED, "context canceled")           \
    X(EBUSY, -EBUSY, "resource busy")                      \
    X(ENOENT, -ENOENT, "not found")                        \
    X(EEXIST, -EEXIST, "already exists")                   \
    X(ERANGE, -ERANGE, "result out of range")              \
    X(EIO, -EIO, "i/o error")                              \
    X(EPIPE, -EPIPE, "broken pipe")                        \
    X(ECONNRESET, -ECONNRESET, "connection reset by peer") \
    X(ECONNREFUSED, -ECONNREFUSED, "connection refused")   \
    X(EADDRINUSE, -EADDRINUSE, "address already in use")   \
    X(EMFILE, -EMFILE, "too many open files")              \
    X(ENOSPC, -ENOSPC, "no space left")                    \
    X(EOVERFLOW, -EOVERFLOW, "value too large")            \
    X(ENOTSUP, -ENOTSUP, "operation not supported")        \
    X(EPROTO, -EPROTO, "protocol error")                   \
    X(EMSGSIZE, -EMSGSIZE, "message too long")             \
    X(EPERM, -EPERM, "operation not permitted")            \
    X(EDEADLK, -EDEADLK, "resource deadlock would occur")

/* sluice's own codes. -4004 (rate limited) was never returned and is retired: a rate limit
 * answers with a decision (ratelimit.h), not an error. Two codes are for applications, which
 * sluice itself never returns: SL_EFAILED, a job's or a group task's own failure, and
 * SL_ESHUTDOWN, a cause for sl_ctx_cancel_with when the application shuts down. */
#define SL_OWN_ERROR_MAP(X)                                   \
    X(ECLOSED, -4001, "closed")                               \
    X(EFULL, -4002, "full")                                   \
    X(EEMPTY, -4003, "empty")                                 \
    X(EEXCEEDS, -4005, "request exceeds the limiter's burst") \
    X(ECONFLICT, -4006, "conflicting registration")           \
    X(EPERMANENT, -4007, "permanent failure: do not retry")   \
    X(ESHUTDOWN, -4008, "shutting down")                      \
    X(EPARSE, -4009, "malformed input")                       \
    X(EREDIS, -4010, "redis error")                           \
    X(EUNAVAIL, -4011, "service unavailable")                 \
    X(EABANDONED, -4012, "abandoned at shutdown")             \
    X(EFAILED, -4013, "operation failed")                     \
    X(EDNS, -4020, "host name could not be resolved")         \
    X(ETLS, -4021, "TLS handshake or verification failed")    \
    X(ETOOLARGE, -4022, "response too large")                 \
    X(EUNIQUE, -4030, "unique constraint violated")           \
    X(ECONSTRAINT, -4031, "constraint violated")              \
    X(ESYNTAX, -4032, "SQL does not compile")                 \
    X(ECONNLOST, -4033, "database connection lost")           \
    X(EDB, -4034, "database error")

#define SL__ERR_ENUM(name, value, msg) SL_##name = (value),
typedef enum sl_err { SL_OK = 0, SL_ERRNO_MAP(SL__ERR_ENUM) SL_OWN_ERROR_MAP(SL__ERR_ENUM) } sl_err;
#undef SL__ERR_ENUM

/* Returns a static, human-readable message for an error code ("deadline exceeded"). Unknown
 * values get the OS's strerror text when they are an errno — negative (sluice's -errno) or
 * positive (errno itself, as a user may pass it) — else "unknown error". Never returns NULL.
 * Threads: any. */
SL_API const char *sl_strerror(int err);

/* Returns the code's name as a static string ("SL_ETIMEDOUT", "SL_OK"), or "SL_EUNKNOWN".
 * Threads: any. */
SL_API const char *sl_errname(int err);

/* What the last failing constructor, registration or listen call on this thread said about
 * its error, naming the field or the conflicting thing ("sl_server_opts: set exactly one of
 * .handler and .mux (both are NULL)"); "" when it left no explanation. Valid until the next
 * sluice call that fails on this thread; a successful call leaves it as it was. The calls that
 * record one: sl_server_new, sl_server_listen, sl_mux_new, sl_mux_handle (and its short
 * forms), sl_mux_use, sl_mw_ratelimit_new, sl_pool_new, sl_chan_new, sl_map_new,
 * sl_logger_new, and the Redis API of a build without hiredis. Never returns NULL. Threads: any
 * (thread-local). */
SL_API const char *sl_error_detail(void);

/* Converts an errno value (positive, as in errno) to a sluice code: -e. */
static inline int sl_from_errno(int e)
{
    return e > 0 ? -e : (e == 0 ? 0 : e);
}

SL_END_DECLS

#endif /* SLUICE_ERROR_H */
