/*
 * HTTP/1.1 message framing for the proxy: an incremental head parser and a
 * body decoder. Nothing here does I/O or allocates; the proxy feeds bytes as
 * they arrive and forwards them unchanged, using the parser only to learn
 * where a head ends, what it says and where the body ends (content-length,
 * chunked, or until close). Limits are fixed and bad input is an error code,
 * never a crash.
 */
#ifndef CAPSEM_MITM_HTTP_H
#define CAPSEM_MITM_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HTTP_MAX_HEAD 65536 /* request line or status line plus headers */
#define HTTP_MAX_HEADERS 128

/* A slice of the caller's head buffer (not NUL-terminated). */
struct http_str {
    const char *p;
    size_t len;
};

struct http_header {
    struct http_str name;
    struct http_str value; /* surrounding whitespace trimmed */
};

struct http_head {
    bool is_request;
    struct http_str method; /* requests */
    struct http_str target; /* requests: as sent (origin form, or absolute form) */
    int minor;              /* HTTP/1.<minor>: 0 or 1 */
    int status;             /* responses: 100-599 */
    struct http_str reason; /* responses */
    struct http_header headers[HTTP_MAX_HEADERS];
    size_t nheaders;
    /* Derived from the headers: */
    int64_t content_length; /* -1 when absent */
    bool chunked;           /* Transfer-Encoding ends in chunked */
    bool keep_alive;        /* connection persists after this message (version + Connection) */
    bool upgrade;           /* Connection: upgrade with an Upgrade header */
    bool expect_continue;   /* requests: Expect: 100-continue */
};

/*
 * Parse a head from p[0..len). Returns the number of bytes the head uses
 * (through the blank line) with *h filled, slices pointing into p; 0 when more
 * bytes are needed; or a negative errno: -EMSGSIZE when no complete head fits
 * in HTTP_MAX_HEAD or there are more than HTTP_MAX_HEADERS headers, -EBADMSG
 * for anything malformed (bad request line or status line, bare CR, header
 * without a colon, whitespace before the colon, obs-fold, invalid token
 * characters, an unsupported version, conflicting or invalid Content-Length,
 * Transfer-Encoding not ending in chunked on a request, both Transfer-Encoding
 * and Content-Length; also bare LF, a request with more than one Host header,
 * an HTTP/1.1 request without one). *why, when not NULL, gets a short static
 * reason (NULL on success). Errors are found as soon as the bytes showing
 * them have arrived, with the same answer whatever the pieces the head came
 * in. *h is scratch unless the head is complete.
 */
long http_parse_head(const char *p, size_t len, bool is_request, struct http_head *h,
                     const char **why);

/* First header named `name` (case-insensitive), or NULL. */
const struct http_header *http_find_header(const struct http_head *h, const char *name);
/* Case-insensitive comparison of a slice with a C string. */
bool http_str_eq(struct http_str s, const char *c);

/* How a body is delimited. */
enum http_body_kind {
    HTTP_BODY_NONE,    /* no body */
    HTTP_BODY_LENGTH,  /* exactly content_length bytes */
    HTTP_BODY_CHUNKED, /* chunked, with trailers */
    HTTP_BODY_CLOSE,   /* responses only: until the connection closes */
};

/*
 * The body kind of a message. For a response, `req_method` is the method of
 * the request it answers (HEAD and 1xx/204/304 have no body; a 2xx to
 * CONNECT none either).
 */
enum http_body_kind http_body_kind(const struct http_head *h, struct http_str req_method);

/* Incremental body decoder. */
struct http_body {
    enum http_body_kind kind;
    uint64_t remaining; /* LENGTH: bytes left; CHUNKED: bytes left in this chunk */
    int state;          /* private chunked-parser state */
    uint32_t line_len;  /* private: length of the chunk-size or trailer line so far */
    uint64_t total;     /* decoded body bytes so far */
    bool done;
};

/* Start decoding a body of `kind` (content_length used for LENGTH). */
void http_body_init(struct http_body *b, enum http_body_kind kind, int64_t content_length);

/* Called with decoded body bytes (chunk framing removed). May be NULL. */
typedef void (*http_data_fn)(void *opaque, const uint8_t *p, size_t len);

/*
 * Feed raw bytes. Returns how many of them belong to this message (the rest
 * start the next one) and sets b->done at the end of the message; calls `fn`
 * with decoded data. -EBADMSG on bad chunk framing (bad hex, size over 2^40,
 * missing CRLF, a chunk-size or trailer line over 8 KiB, trailers over 64 KiB).
 * For HTTP_BODY_CLOSE every byte belongs to the body; call
 * http_body_eof() when the connection ends.
 */
long http_body_feed(struct http_body *b, const uint8_t *p, size_t len, http_data_fn fn,
                    void *opaque);
/* The connection ended: 0 when that was a valid end of the body, -EPIPE when truncated. */
int http_body_eof(struct http_body *b);

#endif
