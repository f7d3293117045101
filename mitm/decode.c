/*
 * Decoders over zlib (gzip, deflate), brotli's and zstd's streaming APIs. Output goes
 * through a fixed stack buffer to the callback, so memory stays the
 * libraries' own window state however large the body.
 */
#include "decode.h"

#include <brotli/decode.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>
#include <zstd.h>

#define OUT_CHUNK 16384
#define DECODE_ZSTD_WINDOW_LOG 23 /* 8 MiB: a larger window is refused, bounding memory */

struct decoder {
    enum decode_kind kind;
    uint64_t max_out;
    uint64_t total_out;
    int err;
    bool ended;      /* the encoded stream reached its end */
    bool zinit;      /* z is initialised */
    uint8_t head[2]; /* deflate: the first bytes fed, for a raw retry */
    size_t head_len;
    bool raw_retried; /* deflate: fell back to raw deflate */
    z_stream z;
    BrotliDecoderState *br;
    ZSTD_DStream *zs;
};

int decode_kind_parse(const char *p, size_t len, enum decode_kind *out)
{
    while (len > 0 && (p[0] == ' ' || p[0] == '\t')) {
        p++;
        len--;
    }
    while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t'))
        len--;
    static const struct {
        const char *name;
        enum decode_kind kind;
    } names[] = {{"identity", DECODE_IDENTITY}, {"gzip", DECODE_GZIP}, {"x-gzip", DECODE_GZIP},
                 {"deflate", DECODE_DEFLATE},   {"br", DECODE_BROTLI}, {"zstd", DECODE_ZSTD}};
    if (len == 0) {
        *out = DECODE_IDENTITY;
        return 0;
    }
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (strlen(names[i].name) == len && strncasecmp(names[i].name, p, len) == 0) {
            *out = names[i].kind;
            return 0;
        }
    }
    return -ENOTSUP;
}

static int zinit(struct decoder *d, int window_bits)
{
    memset(&d->z, 0, sizeof(d->z));
    if (inflateInit2(&d->z, window_bits) != Z_OK)
        return -ENOMEM;
    d->zinit = true;
    return 0;
}

int decode_create(enum decode_kind kind, uint64_t max_out, struct decoder **out)
{
    int rc = 0;
    struct decoder *d = calloc(1, sizeof(*d));
    if (!d)
        return -ENOMEM;
    d->kind = kind;
    d->max_out = max_out;
    switch (kind) {
    case DECODE_IDENTITY:
        break;
    case DECODE_GZIP:
        rc = zinit(d, 15 + 16);
        break;
    case DECODE_DEFLATE:
        rc = zinit(d, 15);
        break;
    case DECODE_BROTLI:
        d->br = BrotliDecoderCreateInstance(NULL, NULL, NULL);
        if (!d->br)
            rc = -ENOMEM;
        break;
    case DECODE_ZSTD:
        d->zs = ZSTD_createDStream();
        if (!d->zs || ZSTD_isError(ZSTD_initDStream(d->zs)) ||
            ZSTD_isError(
                ZSTD_DCtx_setParameter(d->zs, ZSTD_d_windowLogMax, DECODE_ZSTD_WINDOW_LOG)))
            rc = -ENOMEM;
        break;
    }
    if (rc != 0)
        goto out;
    *out = d;
    d = NULL;
out:
    decode_destroy(d);
    return rc;
}

void decode_destroy(struct decoder *d)
{
    if (!d)
        return;
    if (d->zinit)
        inflateEnd(&d->z);
    if (d->br)
        BrotliDecoderDestroyInstance(d->br);
    if (d->zs)
        ZSTD_freeDStream(d->zs);
    free(d);
}

/* Pass n decoded bytes on, within the cap. */
static int emit(struct decoder *d, const uint8_t *p, size_t n, decode_out_fn fn, void *opaque)
{
    if (n == 0)
        return 0;
    if (d->total_out + n > d->max_out) {
        size_t room = (size_t)(d->max_out - d->total_out);
        if (room > 0 && fn)
            fn(opaque, p, room);
        d->total_out = d->max_out;
        return -E2BIG;
    }
    d->total_out += n;
    if (fn)
        fn(opaque, p, n);
    return 0;
}

static int inflate_some(struct decoder *d, const uint8_t *p, size_t len, decode_out_fn fn,
                        void *opaque);

/* "deflate" sent without the zlib wrapper: start again as raw deflate. */
static int retry_raw(struct decoder *d, const uint8_t *p, size_t len, decode_out_fn fn,
                     void *opaque)
{
    uint8_t early[2];
    size_t nearly = d->head_len;
    memcpy(early, d->head, nearly);
    inflateEnd(&d->z);
    d->zinit = false;
    d->raw_retried = true;
    int rc = zinit(d, -15);
    if (rc == 0 && nearly > 0)
        rc = inflate_some(d, early, nearly, fn, opaque);
    if (rc == 0)
        rc = inflate_some(d, p, len, fn, opaque);
    return rc;
}

static int inflate_some(struct decoder *d, const uint8_t *p, size_t len, decode_out_fn fn,
                        void *opaque)
{
    uint8_t outb[OUT_CHUNK];
    d->z.next_in = (Bytef *)p;
    d->z.avail_in = (uInt)len;
    for (;;) {
        if (d->ended)
            return d->z.avail_in > 0 ? -EBADMSG : 0; /* bytes after the end of the stream */
        d->z.next_out = outb;
        d->z.avail_out = sizeof(outb);
        int zr = inflate(&d->z, Z_NO_FLUSH);
        size_t got = sizeof(outb) - d->z.avail_out;
        if (zr == Z_DATA_ERROR && d->kind == DECODE_DEFLATE && !d->raw_retried && d->total_out == 0)
            return retry_raw(d, p, len, fn, opaque);
        int rc = emit(d, outb, got, fn, opaque);
        if (rc != 0)
            return rc;
        if (zr == Z_STREAM_END) {
            d->ended = true;
            continue;
        }
        if (zr == Z_OK) {
            if (d->z.avail_out == 0 || d->z.avail_in > 0)
                continue;
            return 0;
        }
        if (zr == Z_BUF_ERROR)
            return 0; /* needs more input */
        if (zr == Z_MEM_ERROR)
            return -ENOMEM;
        return -EBADMSG;
    }
}

static int feed_zlib(struct decoder *d, const uint8_t *p, size_t len, decode_out_fn fn,
                     void *opaque)
{
    int rc = inflate_some(d, p, len, fn, opaque);
    /* keep the first two bytes: a raw-deflate retry must see them again */
    for (size_t i = 0; i < len && d->head_len < 2; i++)
        d->head[d->head_len++] = p[i];
    return rc;
}

static int feed_brotli(struct decoder *d, const uint8_t *p, size_t len, decode_out_fn fn,
                       void *opaque)
{
    uint8_t outb[OUT_CHUNK];
    size_t avail_in = len;
    const uint8_t *next_in = p;
    for (;;) {
        if (d->ended)
            return avail_in > 0 ? -EBADMSG : 0;
        size_t avail_out = sizeof(outb);
        uint8_t *next_out = outb;
        BrotliDecoderResult br =
            BrotliDecoderDecompressStream(d->br, &avail_in, &next_in, &avail_out, &next_out, NULL);
        int rc = emit(d, outb, sizeof(outb) - avail_out, fn, opaque);
        if (rc != 0)
            return rc;
        switch (br) {
        case BROTLI_DECODER_RESULT_SUCCESS:
            d->ended = true;
            continue;
        case BROTLI_DECODER_RESULT_NEEDS_MORE_OUTPUT:
            continue;
        case BROTLI_DECODER_RESULT_NEEDS_MORE_INPUT:
            return 0;
        case BROTLI_DECODER_RESULT_ERROR:
            return -EBADMSG;
        }
        return -EBADMSG;
    }
}

static int feed_zstd(struct decoder *d, const uint8_t *p, size_t len, decode_out_fn fn,
                     void *opaque)
{
    uint8_t outb[OUT_CHUNK];
    ZSTD_inBuffer in = {p, len, 0};
    for (;;) {
        ZSTD_outBuffer out = {outb, sizeof(outb), 0};
        size_t r = ZSTD_decompressStream(d->zs, &out, &in);
        if (ZSTD_isError(r))
            return -EBADMSG; /* corrupt, or a window larger than we allow */
        int rc = emit(d, outb, out.pos, fn, opaque);
        if (rc != 0)
            return rc;
        /* 0: a frame ended exactly here (more frames may follow, as zstd allows) */
        d->ended = r == 0;
        if (in.pos == in.size && out.pos < out.size)
            return 0;
    }
}

int decode_feed(struct decoder *d, const uint8_t *p, size_t len, decode_out_fn fn, void *opaque)
{
    if (d->err)
        return d->err;
    if (len == 0)
        return 0;
    int rc = 0;
    switch (d->kind) {
    case DECODE_IDENTITY:
        rc = emit(d, p, len, fn, opaque);
        break;
    case DECODE_GZIP:
    case DECODE_DEFLATE:
        rc = feed_zlib(d, p, len, fn, opaque);
        break;
    case DECODE_BROTLI:
        rc = feed_brotli(d, p, len, fn, opaque);
        break;
    case DECODE_ZSTD:
        rc = feed_zstd(d, p, len, fn, opaque);
        break;
    }
    d->err = rc;
    return rc;
}

int decode_finish(struct decoder *d)
{
    if (d->err)
        return d->err;
    if (d->kind == DECODE_IDENTITY || d->ended)
        return 0;
    return -EPIPE;
}
