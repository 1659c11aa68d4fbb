/* The HTTP/1.1 request parser (private to sluice: the server and the tests use it).
 *
 * Strict RFC 9112 parsing of a request head, plus an incremental in-place decoder for chunked
 * bodies. Nothing here allocates or does I/O: results are views into the caller's buffer (or
 * into static storage, said where), valid as long as that buffer is. docs/http-parser.md lists
 * every rule and the status each rejection maps to.
 *
 * Use from a connection:
 *
 *     n = sl_http_parse_head(buf, len, &head, hdrs, &lim);   // hdrs has lim.max_headers slots
 *     n == SL_EAGAIN: read more and call again with the whole buffer from its start
 *     n == SL_EPARSE: answer head.status, then close the connection (never reuse it)
 *     n > 0         : the head is buf[0..n); the body follows:
 *                     head.chunked          -> sl_http_chunked_init + sl_http_chunked_decode
 *                     head.content_length>0 -> exactly that many bytes
 *                     otherwise             -> no body (requests never read to EOF)
 *
 * Threads: every function is reentrant; a sl_http_chunked belongs to one owner at a time. */
#ifndef SLUICE_HTTP_PARSER_H
#define SLUICE_HTTP_PARSER_H

#include "sluice/common.h"
#include "sluice/error.h"

/* One header field line, as views into the request buffer. The name is as received (compare
 * case-insensitively); the value has its leading and trailing whitespace removed and may be
 * empty. Neither is NUL-terminated. */
typedef struct sl_http_header {
    const char *name;
    const char *value;
    uint32_t name_len;
    uint32_t value_len;
} sl_http_header;

/* Size limits, each with the status its violation answers. */
typedef struct sl_http_limits {
    uint32_t max_target;       /* bytes of request-target; more -> 414 */
    uint32_t max_header_bytes; /* bytes of the head (request line .. final CRLF); more -> 431;
                                  also bounds a chunked body's trailer section (-> 431) */
    uint32_t max_headers;      /* header field lines; more -> 431. The hdrs array passed to
                                  sl_http_parse_head must have at least this many slots */
    uint64_t max_body;         /* body bytes (Content-Length, or decoded chunked data as it
                                  accumulates); more -> 413 */
} sl_http_limits;

#define SL_HTTP_DEFAULT_MAX_TARGET       8192u
#define SL_HTTP_DEFAULT_MAX_HEADER_BYTES 16384u
#define SL_HTTP_DEFAULT_MAX_HEADERS      64u
#define SL_HTTP_DEFAULT_MAX_BODY         (1024u * 1024u)

/* Longest chunk-size line (hex size plus chunk extensions, without CRLF); longer -> 400. */
#define SL_HTTP_CHUNK_LINE_MAX 4096u

/* The limits used when a NULL sl_http_limits * is passed. */
extern const sl_http_limits sl_http_default_limits;

/* Which of RFC 9112's four request-target forms the target has. */
typedef enum sl_http_target_form {
    SL_HTTP_TARGET_ORIGIN = 0, /* "/path?query" */
    SL_HTTP_TARGET_ABSOLUTE,   /* "http://host[:port]/path?query" (http and https only) */
    SL_HTTP_TARGET_AUTHORITY,  /* "host:port", CONNECT only (and CONNECT is answered 501) */
    SL_HTTP_TARGET_ASTERISK,   /* "*", OPTIONS only */
} sl_http_target_form;

/* A parsed request head. Every pointer is a view into the buffer given to sl_http_parse_head
 * unless said otherwise. Threads: single owner. */
typedef struct sl_http_req_head {
    const char *method; /* a token, case-sensitive ("GET") */
    const char *target; /* the request-target exactly as received */
    const char *path;   /* origin-form part: the target itself for origin-form; for
                           absolute-form what follows the authority, or the static string "/"
                           when that is empty; "*" for asterisk-form; "" for authority-form */
    const char *host;   /* authority from an absolute-form target, else the Host value;
                           "" (static) when neither exists (HTTP/1.0 without Host) */
    uint32_t method_len;
    uint32_t target_len;
    uint32_t path_len;
    uint32_t host_len;
    sl_http_header *headers; /* the caller's hdrs array; num_headers filled entries */
    uint32_t num_headers;
    uint8_t version_minor;  /* 0 or 1 (HTTP/1.0, HTTP/1.1) */
    uint8_t target_form;    /* an sl_http_target_form */
    int64_t content_length; /* -1 when absent (and always -1 when chunked) */
    bool chunked;           /* Transfer-Encoding: chunked (the only coding accepted) */
    bool keep_alive;        /* 1.1: unless Connection: close; 1.0: only with keep-alive */
    bool expect_continue;   /* HTTP/1.1 with Expect: 100-continue */
    int status;             /* 0 unless SL_EPARSE: then the HTTP status to answer */
} sl_http_req_head;

/* True when c is a token character (RFC 9110 section 5.6.2: tchar), by the parser's own
 * table: route methods and header names are checked against the same set it parses with. */
bool sl__http_is_tchar(unsigned char c);

/* Parses the request head at buf[0..len). Returns the head's length in bytes (> 0: the body or
 * the next request starts at buf + that), SL_EAGAIN when buf holds an incomplete but so far
 * valid head (call again with more bytes; the parse restarts from buf[0]), or SL_EPARSE with
 * h->status set (400, 413, 414, 417, 431, 501 or 505) and h->keep_alive false: answer that
 * status and close. Limits are enforced on partial input too, so an endless line or an
 * oversized target is rejected as soon as it crosses its limit. hdrs must have
 * lim->max_headers slots; lim may be NULL for sl_http_default_limits. On success every field
 * of *h is set; on SL_EAGAIN/SL_EPARSE only status and keep_alive are meaningful.
 * Threads: any (reentrant). Never blocks. */
int sl_http_parse_head(const char *buf, size_t len, sl_http_req_head *h, sl_http_header *hdrs,
                       const sl_http_limits *lim);

/* Returns the first header named name (case-insensitive, name_len bytes), or NULL. The result
 * points into h->headers. Threads: any (read-only). Never blocks. */
const sl_http_header *sl_http_find_header(const sl_http_req_head *h, const char *name,
                                          size_t name_len);

/* The state of one chunked body being decoded. Caller storage; no destroy needed.
 * Threads: single owner. */
typedef struct sl_http_chunked {
    uint64_t remaining;  /* bytes left in the current chunk's data */
    uint64_t total;      /* decoded body bytes so far */
    uint64_t max_body;   /* from the limits */
    uint32_t line_bytes; /* bytes of the current chunk-size or trailer line so far */
    uint32_t trailer_bytes;
    uint32_t max_trailer;
    uint8_t state;  /* private */
    uint8_t digits; /* hex digits seen in the current size */
    int status;     /* 0 unless SL_EPARSE: then the HTTP status to answer (400, 413, 431) */
} sl_http_chunked;

/* Prepares st to decode one chunked body under lim (NULL: sl_http_default_limits): max_body
 * bounds the decoded bytes, max_header_bytes the trailer section. Threads: single owner of
 * st. Never blocks. */
void sl_http_chunked_init(sl_http_chunked *st, const sl_http_limits *lim);

/* Decodes the chunked-encoded bytes buf[0..*len) in place. On return buf[0..*len) holds the
 * body bytes this call decoded (the caller consumes or copies them before the next call) and
 * *consumed is how many input bytes were used. Returns 0 when the body ended (last chunk,
 * trailers and final CRLF seen): the bytes from buf + *consumed on (a pipelined request) are
 * untouched; SL_EAGAIN when every input byte was used and the body continues (call again with
 * the next bytes only); SL_EPARSE with st->status (400 bad syntax or size overflow, 413 body
 * over max_body, 431 trailers over max_header_bytes): answer and close. Chunk extensions and
 * trailer fields are checked for syntax, then dropped. Calling again after 0 returns 0 with
 * nothing consumed. Threads: single owner of st. Never blocks. */
int sl_http_chunked_decode(sl_http_chunked *st, char *buf, size_t *len, size_t *consumed);

#endif /* SLUICE_HTTP_PARSER_H */
