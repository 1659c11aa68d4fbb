/* sl_log: structured logging like Go's log/slog.
 *
 * A record is a level, a message and key/value attributes. Output is logfmt text
 * (time=... level=INFO msg="job failed" worker=3 err="deadline exceeded") or one JSON object
 * per line. Each record is formatted into one buffer and written with a single write(2) (or one
 * sink call), so lines from many threads never interleave. The level is checked before any
 * formatting: a disabled call costs one load and a compare. Values are escaped correctly:
 * quotes, backslashes, newlines, control characters and invalid UTF-8 (replaced by U+FFFD).
 *
 *   sl_log_info(lg, "job failed", SL_A_INT("worker", 3), SL_A_STR("job_id", id),
 *               SL_A_ERR("err", rc));
 *
 * Threads: any — a logger may be shared by every thread. */
#ifndef SLUICE_LOG_H
#define SLUICE_LOG_H

#include "sluice/common.h"

SL_BEGIN_DECLS

typedef enum sl_log_level {
    SL_LOG_DEBUG = -4,
    SL_LOG_INFO = 0,
    SL_LOG_WARN = 4,
    SL_LOG_ERROR = 8,
} sl_log_level;

typedef enum sl_log_format { SL_LOG_TEXT = 0, SL_LOG_JSON = 1 } sl_log_format;

typedef enum sl_attr_kind {
    SL_ATTR_NONE = 0, /* skipped: lets the macros below take zero attributes */
    SL_ATTR_STR,      /* NUL-terminated string; NULL prints as an empty string */
    SL_ATTR_INT,      /* int64_t */
    SL_ATTR_UINT,     /* uint64_t */
    SL_ATTR_F64,      /* double; NaN/Inf print as strings in JSON */
    SL_ATTR_BOOL,     /* bool */
    SL_ATTR_DUR,      /* int64_t ns: text prints Go's Duration.String() ("1.5s", "250ms"),
                         JSON the integer nanoseconds (1500000000), as slog does */
    SL_ATTR_ERR,      /* int sluice error code, printed as sl_strerror() text */
} sl_attr_kind;

/* One key/value pair. Keys are NUL-terminated strings (escaped like values when needed). */
typedef struct sl_attr {
    const char *key;
    sl_attr_kind kind;
    union {
        const char *s;
        int64_t i;
        uint64_t u;
        double f;
        bool b;
        int err;
    } v;
} sl_attr;

#define SL_A_STR(k, x)  ((sl_attr){.key = (k), .kind = SL_ATTR_STR, .v.s = (x)})
#define SL_A_INT(k, x)  ((sl_attr){.key = (k), .kind = SL_ATTR_INT, .v.i = (int64_t)(x)})
#define SL_A_UINT(k, x) ((sl_attr){.key = (k), .kind = SL_ATTR_UINT, .v.u = (uint64_t)(x)})
#define SL_A_F64(k, x)  ((sl_attr){.key = (k), .kind = SL_ATTR_F64, .v.f = (double)(x)})
#define SL_A_BOOL(k, x) ((sl_attr){.key = (k), .kind = SL_ATTR_BOOL, .v.b = (x)})
#define SL_A_DUR(k, x)  ((sl_attr){.key = (k), .kind = SL_ATTR_DUR, .v.i = (int64_t)(x)})
#define SL_A_ERR(k, x)  ((sl_attr){.key = (k), .kind = SL_ATTR_ERR, .v.err = (x)})

typedef struct sl_logger sl_logger;

/* Receives one complete record (ending in '\n', not NUL-terminated); line is valid only during
 * the call. The logger serializes its sink calls (one at a time, in the order records finish
 * formatting), so a sink needs no lock of its own; it must not log to the same logger. */
typedef void (*sl_log_sink_fn)(void *arg, const char *line, size_t len);

typedef struct sl_log_opts {
    sl_log_level level;   /* records below it are dropped before formatting */
    sl_log_format format; /* SL_LOG_TEXT (default) or SL_LOG_JSON */
    int fd;               /* one write(2) per record when sink is NULL (0 is stdin: set it) */
    sl_log_sink_fn sink;  /* or: a callback per record */
    void *sink_arg;
    bool omit_time; /* no time attribute (for tests and golden output) */
} sl_log_opts;

/* Creates a logger. The logger does not own fd. Returns 0, SL_EINVAL (no sink and fd < 0,
 * unknown format) or SL_ENOMEM; *out untouched on failure. */
SL_API int sl_logger_new(const sl_log_opts *opts, sl_logger **out);

/* Frees a logger (NULL, the default and the discard logger are ignored). */
SL_API void sl_logger_free(sl_logger *lg);

/* The process-wide default: text to stderr at INFO. Never NULL. */
SL_API sl_logger *sl_log_default(void);

/* A logger that drops everything without formatting (for benchmarks). Never NULL. */
SL_API sl_logger *sl_log_discard(void);

/* Changes the minimum level at run time. Threads: any. */
SL_API void sl_logger_set_level(sl_logger *lg, sl_log_level level);

/* True if a record at level would be written. NULL means the default logger. */
SL_API bool sl_log_enabled(const sl_logger *lg, sl_log_level level);

/* Writes one record with n attributes (SL_ATTR_NONE entries are skipped). NULL logger means
 * the default. Never fails visibly: a write error is counted, not reported. Blocks only in
 * write(2) or the sink. */
SL_API void sl_log_attrs(sl_logger *lg, sl_log_level level, const char *msg, const sl_attr *attrs,
                         size_t n);

/* Records dropped because a write failed (or, rarely, because a record larger than the stack
 * buffer could not get heap memory), since the logger was created. Loggers made by
 * sl_logger_with share their root's output and therefore its count. NULL means the default. */
SL_API uint64_t sl_logger_write_errors(const sl_logger *lg);

/* Creates a child logger (slog's Logger.With) that writes parent's output with the n given
 * attributes added to every record, after msg and before the call's own attributes. The
 * attributes are formatted once, here: strings are copied, so the caller keeps ownership of
 * attrs. The child starts at the parent's current level but has its own (set_level on one does
 * not change the other). The child shares the parent's output (fd or sink, serialization, write
 * error count), which stays alive until the last logger using it is freed: the parent may be
 * freed before the child. A child of the discard logger discards; a child of the default
 * logger writes where the default writes at creation time. NULL parent means the default.
 * Returns 0 or SL_ENOMEM (*out untouched). Threads: any. Does not block. */
SL_API int sl_logger_with(sl_logger *parent, const sl_attr *attrs, size_t n, sl_logger **out);

/* Replaces the process-wide default logger (what sl_log_default() and a NULL logger mean);
 * NULL restores the built-in one (text to stderr). The caller keeps ownership of lg and must
 * keep it alive while any thread may still log through the default; freeing the installed
 * default restores the built-in one first. Threads: any. Does not block. */
SL_API void sl_log_set_default(sl_logger *lg);

/* The level's name as slog prints it: "DEBUG", "INFO", "WARN", "ERROR", or an offset from the
 * nearest lower one ("INFO+2", "DEBUG-1"). Writes a NUL-terminated string into buf (24 bytes
 * are always enough) and returns buf. Threads: any. */
SL_API const char *sl_log_level_name(sl_log_level level, char buf[24]);

/* Convenience macros: the level is checked before the attributes are even built. msg is part
 * of the variadic arguments and a trailing SL_ATTR_NONE entry is appended, so a call with no
 * attributes (sl_log_info(lg, "started")) is valid ISO C11, clean under -Wpedantic. */
#define sl_log(lg, lvl, ...) SL__LOG((lg), (lvl), __VA_ARGS__, (sl_attr){.kind = SL_ATTR_NONE})
#define SL__LOG(lg, lvl, msg, ...)                                                   \
    do {                                                                             \
        if (sl_log_enabled((lg), (lvl))) {                                           \
            const sl_attr sl__a[] = {__VA_ARGS__};                                   \
            sl_log_attrs((lg), (lvl), (msg), sl__a, sizeof sl__a / sizeof sl__a[0]); \
        }                                                                            \
    } while (0)
#define sl_log_debug(lg, ...) sl_log((lg), SL_LOG_DEBUG, __VA_ARGS__)
#define sl_log_info(lg, ...)  sl_log((lg), SL_LOG_INFO, __VA_ARGS__)
#define sl_log_warn(lg, ...)  sl_log((lg), SL_LOG_WARN, __VA_ARGS__)
#define sl_log_error(lg, ...) sl_log((lg), SL_LOG_ERROR, __VA_ARGS__)

SL_END_DECLS

#endif /* SLUICE_LOG_H */
