/*
 * Framing of the host -> guest direction of the terminal channel (vsock
 * port 5001, schemas/vsock-terminal.md): the control channel's 5-byte
 * header with kind 3 (input bytes) or 4 (window size), plus the 8-byte
 * header the guest sends first to name its terminal. Shared by the agent
 * and capsem; builds and splits frames only.
 */
#ifndef CAPSEM_COMMON_TFRAME_H
#define CAPSEM_COMMON_TFRAME_H

#include "buf.h"

#include <stddef.h>
#include <stdint.h>

#define TFRAME_HDR_LEN 5u
#define TFRAME_MAX_PAYLOAD (64u * 1024u)
#define TFRAME_HELLO_LEN 8u
#define TFRAME_HELLO_MAGIC "CPTY"

enum tframe_kind { TFRAME_DATA = 3, TFRAME_RESIZE = 4 };

struct tframe {
    enum tframe_kind kind;
    const uint8_t *data; /* TFRAME_DATA: bytes (borrowed from the input) */
    size_t len;
    uint16_t cols, rows; /* TFRAME_RESIZE */
};

/*
 * Parse one frame from the front of p[0..len). 1 with *f and *consumed set,
 * 0 when more bytes are needed, -EMSGSIZE (length over TFRAME_MAX_PAYLOAD)
 * or -EPROTO (unknown kind, empty data, resize not 4 bytes or with a zero).
 */
__attribute__((warn_unused_result)) int tframe_parse(const uint8_t *p, size_t len, struct tframe *f,
                                                     size_t *consumed);

/* Append data frames for p[0..len) (split at TFRAME_MAX_PAYLOAD); len 0 adds nothing. */
__attribute__((warn_unused_result)) int tframe_put_data(struct buf *out, const void *p, size_t len);

/* Append a resize frame. -EINVAL when cols or rows is 0. */
__attribute__((warn_unused_result)) int tframe_put_resize(struct buf *out, uint16_t cols,
                                                          uint16_t rows);

/* Write the guest's 8-byte header for terminal `id` into out. */
void tframe_hello(uint8_t out[TFRAME_HELLO_LEN], uint32_t id);

/* Check an 8-byte header; 0 and *id, or -EPROTO. */
__attribute__((warn_unused_result)) int tframe_hello_parse(const uint8_t in[TFRAME_HELLO_LEN],
                                                           uint32_t *id);

#endif
