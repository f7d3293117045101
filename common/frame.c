/* Control-channel framing (see frame.h and schemas/vsock-control.md). */
#include "frame.h"

#include <errno.h>

int frame_parse(const uint8_t *p, size_t len, struct frame *f, size_t *consumed)
{
    if (len < FRAME_HDR_LEN)
        return 0;
    uint32_t plen = be32_load(p);
    uint8_t kind = p[4];
    if (plen > FRAME_MAX_PAYLOAD)
        return -EMSGSIZE;
    if (kind != FRAME_JSON && kind != FRAME_DATA)
        return -EPROTO;
    if (len - FRAME_HDR_LEN < plen)
        return 0;
    struct frame out = {.kind = (enum frame_kind)kind, .payload = {p + FRAME_HDR_LEN, plen}};
    if (kind == FRAME_DATA) {
        if (plen < FRAME_DATA_HDR_LEN)
            return -EPROTO;
        const uint8_t *d = p + FRAME_HDR_LEN;
        out.exec_id = be32_load(d);
        out.stream = d[4];
        if (out.stream > FRAME_STDERR)
            return -EPROTO;
        out.data = (struct slice){d + FRAME_DATA_HDR_LEN, plen - FRAME_DATA_HDR_LEN};
    }
    *f = out;
    *consumed = FRAME_HDR_LEN + plen;
    return 1;
}

static int put_header(struct buf *out, uint32_t plen, uint8_t kind)
{
    uint8_t h[FRAME_HDR_LEN];
    be32_store(h, plen);
    h[4] = kind;
    return buf_append(out, h, sizeof(h));
}

int frame_put_json(struct buf *out, const char *json, size_t len)
{
    if (len > FRAME_MAX_PAYLOAD)
        return -EMSGSIZE;
    int rc = buf_reserve(out, FRAME_HDR_LEN + len);
    if (rc)
        return rc;
    rc = put_header(out, (uint32_t)len, FRAME_JSON);
    if (!rc)
        rc = buf_append(out, json, len);
    return rc;
}

int frame_put_data(struct buf *out, uint32_t exec_id, uint8_t stream, const void *p, size_t len)
{
    if (len > FRAME_MAX_DATA)
        return -EMSGSIZE;
    int rc = buf_reserve(out, FRAME_HDR_LEN + FRAME_DATA_HDR_LEN + len);
    if (rc)
        return rc;
    uint8_t d[FRAME_DATA_HDR_LEN];
    be32_store(d, exec_id);
    d[4] = stream;
    rc = put_header(out, (uint32_t)(FRAME_DATA_HDR_LEN + len), FRAME_DATA);
    if (!rc)
        rc = buf_append(out, d, sizeof(d));
    if (!rc)
        rc = buf_append(out, p, len);
    return rc;
}
