/*
 * Content-Encoding decoding for the model parsers: gzip, deflate, brotli and zstd
 * response bodies are inflated incrementally, as the proxy passes them on,
 * into a callback. Output is bounded: past `max_out` decoded bytes decoding
 * stops with -E2BIG. Nothing here does I/O.
 */
#ifndef CAPSEM_MITM_DECODE_H
#define CAPSEM_MITM_DECODE_H

#include <stddef.h>
#include <stdint.h>

enum decode_kind {
    DECODE_IDENTITY = 0, /* no Content-Encoding, or "identity" */
    DECODE_GZIP,
    DECODE_DEFLATE, /* zlib-wrapped, or raw deflate as some servers send */
    DECODE_BROTLI,
    DECODE_ZSTD, /* frames with a window up to 8 MiB */
};

/*
 * The kind for a Content-Encoding value p[0..len) (case-insensitive,
 * surrounding whitespace ignored). -ENOTSUP for anything else (compress, a
 * list of several codings).
 */
int decode_kind_parse(const char *p, size_t len, enum decode_kind *out);

/* Decoded bytes, borrowed for the call. */
typedef void (*decode_out_fn)(void *opaque, const uint8_t *p, size_t len);

struct decoder;

/* A decoder of `kind` that stops after `max_out` decoded bytes. 0 or -ENOMEM. */
__attribute__((warn_unused_result)) int decode_create(enum decode_kind kind, uint64_t max_out,
                                                      struct decoder **out);
/* Free; accepts NULL. */
void decode_destroy(struct decoder *d);

/*
 * Feed encoded bytes, calling `fn` with what they decode to. 0, -EBADMSG for
 * corrupt data (or bytes after the end of the encoded stream), -E2BIG past
 * max_out, -ENOMEM. After an error further feeds return the same error.
 */
__attribute__((warn_unused_result)) int decode_feed(struct decoder *d, const uint8_t *p, size_t len,
                                                    decode_out_fn fn, void *opaque);
/* The body ended: 0 when the encoded stream was complete, -EPIPE when cut short. */
int decode_finish(struct decoder *d);

#endif
