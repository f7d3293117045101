/*
 * Terminal channel framing (see tframe.h and schemas/vsock-terminal.md).
 * Parsing never trusts the peer: lengths are checked before anything is
 * read, and a resize must carry exactly two non-zero sizes.
 */
#include "tframe.h"

#include <errno.h>
#include <string.h>

int tframe_parse(const uint8_t *p, size_t len, struct tframe *f, size_t *consumed)
{
    if (len < TFRAME_HDR_LEN)
        return 0;
    uint32_t plen = be32_load(p);
    if (plen > TFRAME_MAX_PAYLOAD)
        return -EMSGSIZE;
    uint8_t kind = p[4];
    if (kind != TFRAME_DATA && kind != TFRAME_RESIZE)
        return -EPROTO;
    if (kind == TFRAME_DATA && plen == 0)
        return -EPROTO;
    if (kind == TFRAME_RESIZE && plen != 4)
        return -EPROTO;
    if (len - TFRAME_HDR_LEN < plen)
        return 0;
    const uint8_t *d = p + TFRAME_HDR_LEN;
    memset(f, 0, sizeof(*f));
    f->kind = (enum tframe_kind)kind;
    if (kind == TFRAME_RESIZE) {
        f->cols = (uint16_t)((d[0] << 8) | d[1]);
        f->rows = (uint16_t)((d[2] << 8) | d[3]);
        if (!f->cols || !f->rows)
            return -EPROTO;
    } else {
        f->data = d;
        f->len = plen;
    }
    *consumed = TFRAME_HDR_LEN + plen;
    return 1;
}

static int put_frame(struct buf *out, uint8_t kind, const void *p, size_t len)
{
    uint8_t h[TFRAME_HDR_LEN];
    be32_store(h, (uint32_t)len);
    h[4] = kind;
    int rc = buf_reserve(out, sizeof(h) + len);
    if (rc)
        return rc;
    rc = buf_append(out, h, sizeof(h));
    if (!rc)
        rc = buf_append(out, p, len);
    return rc;
}

int tframe_put_data(struct buf *out, const void *p, size_t len)
{
    const uint8_t *b = p;
    while (len) {
        size_t n = len > TFRAME_MAX_PAYLOAD ? TFRAME_MAX_PAYLOAD : len;
        int rc = put_frame(out, TFRAME_DATA, b, n);
        if (rc)
            return rc;
        b += n;
        len -= n;
    }
    return 0;
}

int tframe_put_resize(struct buf *out, uint16_t cols, uint16_t rows)
{
    if (!cols || !rows)
        return -EINVAL;
    uint8_t d[4] = {(uint8_t)(cols >> 8), (uint8_t)cols, (uint8_t)(rows >> 8), (uint8_t)rows};
    return put_frame(out, TFRAME_RESIZE, d, sizeof(d));
}

void tframe_hello(uint8_t out[TFRAME_HELLO_LEN], uint32_t id)
{
    memcpy(out, TFRAME_HELLO_MAGIC, 4);
    be32_store(out + 4, id);
}

int tframe_hello_parse(const uint8_t in[TFRAME_HELLO_LEN], uint32_t *id)
{
    if (memcmp(in, TFRAME_HELLO_MAGIC, 4) != 0)
        return -EPROTO;
    *id = be32_load(in + 4);
    return 0;
}
