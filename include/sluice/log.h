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
    SL_ATTR_DUR,      /* int64_t ns, printed like Go's Duration.String(): "1.5s", "250ms" */
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

/* Receives one complete record (ending in '\n'); line is valid only during the call. */
typedef void (*sl_log_sink_fn)(void *arg, const char *line, size_t len);

typedef struct sl_log_opts {
    sl_log_level level;    /* records below it are dropped before formatting */
    sl_log_format format;  /* SL_LOG_TEXT (default) or SL_LOG_JSON */
    int fd;                /* written with one write(2) per record; used when sink is NULL */
    sl_log_sink_fn sink;   /* or: a callback per record */
    void *sink_arg;
    bool omit_time;        /* no time attribute (for tests and golden output) */
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

/* Records dropped because a write failed, since the logger was created. */
SL_API uint64_t sl_logger_write_errors(const sl_logger *lg);

/* Convenience macros: the level is checked before the attributes are even built. A leading
 * SL_ATTR_NONE entry makes zero attributes legal C11 (a trailing comma is allowed). */
#define sl_log(lg, lvl, msg, ...)                                                              \
    do {                                                                                       \
        if (sl_log_enabled((lg), (lvl))) {                                                     \
            const sl_attr sl__a[] = {{.kind = SL_ATTR_NONE}, __VA_ARGS__};                     \
            sl_log_attrs((lg), (lvl), (msg), sl__a, sizeof sl__a / sizeof sl__a[0]);           \
        }                                                                                      \
    } while (0)
#define sl_log_debug(lg, msg, ...) sl_log((lg), SL_LOG_DEBUG, (msg), __VA_ARGS__)
#define sl_log_info(lg, msg, ...)  sl_log((lg), SL_LOG_INFO, (msg), __VA_ARGS__)
#define sl_log_warn(lg, msg, ...)  sl_log((lg), SL_LOG_WARN, (msg), __VA_ARGS__)
#define sl_log_error(lg, msg, ...) sl_log((lg), SL_LOG_ERROR, (msg), __VA_ARGS__)

SL_END_DECLS

#endif /* SLUICE_LOG_H */
