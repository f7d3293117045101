/*
 * Framing for the guest control channel (vsock port 5000), shared by the
 * guest agent and the host. The wire format is specified in
 * schemas/vsock-control.md; this module only splits and builds frames and
 * never interprets the JSON inside them.
 */
#ifndef CAPSEM_COMMON_FRAME_H
#define CAPSEM_COMMON_FRAME_H

#include "buf.h"

#include <stddef.h>
#include <stdint.h>

#define FRAME_PROTOCOL_VERSION 1
#define FRAME_HDR_LEN 5u
#define FRAME_MAX_PAYLOAD (1u << 20)
#define FRAME_DATA_HDR_LEN 5u
/* Most bytes of stream data one data frame carries. */
#define FRAME_MAX_DATA (FRAME_MAX_PAYLOAD - FRAME_DATA_HDR_LEN)

enum frame_kind { FRAME_JSON = 1, FRAME_DATA = 2 };
enum frame_stream { FRAME_STDIN = 0, FRAME_STDOUT = 1, FRAME_STDERR = 2 };

struct frame {
    enum frame_kind kind;
    struct slice payload; /* whole payload (borrowed from the input) */
    /* FRAME_DATA only: */
    uint32_t exec_id;
    uint8_t stream;
    struct slice data; /* empty = end of that stream */
};

/*
 * Parse one frame from the front of `p[0..len)`. Returns 1 and sets *f and
 * *consumed when a whole frame is there, 0 when more bytes are needed, or
 * -EMSGSIZE (payload over FRAME_MAX_PAYLOAD), -EPROTO (unknown kind, data
 * frame shorter than its header, bad stream number). Slices in *f borrow `p`.
 */
__attribute__((warn_unused_result)) int frame_parse(const uint8_t *p, size_t len, struct frame *f,
                                                    size_t *consumed);

/* Append a JSON frame holding `json[0..len)`. 0, -EMSGSIZE, -ENOMEM or -E2BIG. */
__attribute__((warn_unused_result)) int frame_put_json(struct buf *out, const char *json,
                                                       size_t len);

/* Append a data frame; len <= FRAME_MAX_DATA (0 = end of stream). */
__attribute__((warn_unused_result)) int frame_put_data(struct buf *out, uint32_t exec_id,
                                                       uint8_t stream, const void *p, size_t len);

#endif
