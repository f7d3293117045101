/*
 * Byte slices and growable byte buffers with a hard cap. Bytes travel as
 * {ptr, len}; nothing here relies on a trailing NUL.
 */
#ifndef CAPSEM_COMMON_BUF_H
#define CAPSEM_COMMON_BUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct slice {
    const uint8_t *ptr;
    size_t len;
};

/* A growable buffer. `cap` is the hard maximum of `len`; 0 means SIZE_MAX. */
struct buf {
    uint8_t *data;
    size_t len;
    size_t alloc;
    size_t cap;
};

/* Initialise an empty buffer that never grows past `cap` bytes. */
void buf_init(struct buf *b, size_t cap);
/* Free the storage; accepts a zeroed buffer. */
void buf_fini(struct buf *b);
/* Make room for `extra` more bytes. 0, -ENOMEM, or -E2BIG past the cap. */
__attribute__((warn_unused_result)) int buf_reserve(struct buf *b, size_t extra);
/* Append `len` bytes (copied). 0, -ENOMEM or -E2BIG; on error nothing is appended. */
__attribute__((warn_unused_result)) int buf_append(struct buf *b, const void *p, size_t len);
/* Drop the first `n` bytes (n <= len). */
void buf_consume(struct buf *b, size_t n);
static inline struct slice buf_slice(const struct buf *b)
{
    return (struct slice){b->data, b->len};
}

/* Big-endian helpers for wire formats. */
static inline uint32_t be32_load(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static inline void be32_store(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* a + b into *out unless it overflows; returns false on overflow. */
static inline bool add_overflows_u64(uint64_t a, uint64_t b, uint64_t *out)
{
    return __builtin_add_overflow(a, b, out);
}

#endif
