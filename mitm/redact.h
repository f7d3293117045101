/*
 * What the proxy keeps about a message: the headers it may store (an
 * allowlist, with every credential-bearing value replaced by "[redacted]"),
 * a query string with secret parameters redacted, and bounded UTF-8 previews
 * of bodies. Nothing here does I/O; results are malloc'd text the caller
 * frees (they go into net_event's req_headers/resp_headers, query and
 * req_preview/resp_preview).
 *
 * Secret names (headers and query parameters, compared case-insensitively
 * after percent-decoding for parameters): authorization, proxy-authorization,
 * cookie, set-cookie, x-api-key, x-goog-api-key, api-key, and any name
 * containing "token", "secret", "key", "password", "passwd", "credential",
 * "signature", "session", "auth" or "cookie". Their values are always
 * "[redacted]".
 *
 * Stored headers (besides the secret ones, whose presence is kept): accept,
 * accept-encoding, accept-language, cache-control, connection, content-type,
 * content-length, content-encoding, date, etag, expect, host, last-modified,
 * location (its query redacted), retry-after, server, transfer-encoding,
 * upgrade, user-agent, vary, via, request ids (x-request-id, request-id,
 * x-amzn-requestid, x-amz-request-id, x-goog-request-id, cf-ray,
 * x-cloud-trace-context), provider metadata (anthropic-version,
 * anthropic-beta, anthropic-organization-id, openai-organization,
 * openai-project, openai-version, openai-processing-ms, openai-model), and
 * names starting with x-stainless-, x-ratelimit- or anthropic-ratelimit-
 * (rate-limit names that mention tokens fall under the secret rule and are
 * redacted: the secret rule always wins). Everything else is dropped.
 */
#ifndef CAPSEM_MITM_REDACT_H
#define CAPSEM_MITM_REDACT_H

#include "http.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define REDACTED "[redacted]"
#define REDACT_PREVIEW_DEFAULT 4096 /* body preview bytes when 0 is asked for */
#define REDACT_PREVIEW_MAX 4096     /* largest preview a capture can hold */
#define REDACT_VALUE_MAX 1024       /* longer stored header values are cut */

/* Whether a header or query parameter name (raw bytes, any case) is secret. */
bool redact_name_is_secret(const char *name, size_t len);

/*
 * The stored headers of `h` (borrowed) as a compact JSON object text: names
 * lower-cased, in first-seen order; a repeated name appears once with its
 * values joined by ", " (a secret one just "[redacted]"); values made valid
 * UTF-8 (bad bytes become '.') and cut to REDACT_VALUE_MAX bytes. *out gets
 * a malloc'd NUL-terminated string the caller frees. Returns 0 or -ENOMEM
 * (then *out is untouched). Thread-safe.
 */
int redact_headers_json(const struct http_head *h, char **out) __attribute__((warn_unused_result));

/*
 * Copy of the query string q[0..len) (without the '?'), parameters split on
 * '&', with the value of every parameter whose name is secret replaced by
 * "[redacted]" (a name without '=' is kept as is). Bytes other than
 * printable ASCII become '.'. *out gets a malloc'd NUL-terminated string.
 * Returns 0 or -ENOMEM. Thread-safe.
 */
int redact_query(const char *q, size_t len, char **out) __attribute__((warn_unused_result));

/*
 * A text preview of a body: the first `max` bytes of p[0..len) (max 0 means
 * REDACT_PREVIEW_DEFAULT), cut back to a UTF-8 character boundary, with
 * invalid UTF-8 and control characters other than tab, LF and CR replaced
 * by '.', so the result is valid UTF-8 of at most `max` bytes. *out gets a
 * malloc'd NUL-terminated string. Returns 0 or -ENOMEM. Thread-safe.
 */
int redact_preview(const uint8_t *p, size_t len, size_t max, char **out)
    __attribute__((warn_unused_result));

/*
 * A bounded capture of the start of a body that is forwarded piece by
 * piece: keeps the first `max` bytes fed, counts the rest. Embed it; no
 * cleanup needed.
 */
struct redact_capture {
    uint8_t buf[REDACT_PREVIEW_MAX];
    size_t len;    /* bytes kept */
    size_t max;    /* bytes to keep, at most REDACT_PREVIEW_MAX */
    uint64_t seen; /* bytes fed in all */
};

/* Start a capture keeping `max` bytes (0: REDACT_PREVIEW_DEFAULT; clamped to REDACT_PREVIEW_MAX).
 */
void redact_capture_init(struct redact_capture *c, size_t max);
/*
 * Feed body bytes; `capture` is a struct redact_capture. Has the shape of
 * http_data_fn, so it can be passed straight to http_body_feed().
 */
void redact_capture_add(void *capture, const uint8_t *p, size_t len);
/* The capture's preview as redact_preview() makes it. Returns 0 or -ENOMEM. */
int redact_capture_preview(const struct redact_capture *c, char **out)
    __attribute__((warn_unused_result));

#endif
