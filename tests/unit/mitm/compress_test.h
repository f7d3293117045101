/*
 * Test helpers that compress a buffer with zlib (gzip, zlib-wrapped or raw
 * deflate) or brotli, so decoder tests start from real encoder output.
 */
#ifndef CAPSEM_TEST_COMPRESS_TEST_H
#define CAPSEM_TEST_COMPRESS_TEST_H

#include <brotli/encode.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include <zstd.h>

/* window_bits: 15+16 gzip, 15 zlib, -15 raw. Returns a malloc'd buffer, length in *out_len. */
static __attribute__((unused)) uint8_t *ct_deflate(const void *in, size_t len, int window_bits,
                                                   size_t *out_len)
{
    z_stream z;
    memset(&z, 0, sizeof(z));
    if (deflateInit2(&z, 6, Z_DEFLATED, window_bits, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return NULL;
    size_t cap = deflateBound(&z, (uLong)len) + 64;
    uint8_t *out = malloc(cap);
    z.next_in = (Bytef *)in;
    z.avail_in = (uInt)len;
    z.next_out = out;
    z.avail_out = (uInt)cap;
    int rc = deflate(&z, Z_FINISH);
    *out_len = cap - z.avail_out;
    deflateEnd(&z);
    if (rc != Z_STREAM_END) {
        free(out);
        return NULL;
    }
    return out;
}

static __attribute__((unused)) uint8_t *ct_brotli(const void *in, size_t len, size_t *out_len)
{
    size_t cap = BrotliEncoderMaxCompressedSize(len) + 64;
    uint8_t *out = malloc(cap);
    *out_len = cap;
    if (!BrotliEncoderCompress(5, BROTLI_DEFAULT_WINDOW, BROTLI_MODE_TEXT, len, in, out_len, out)) {
        free(out);
        return NULL;
    }
    return out;
}

static __attribute__((unused)) uint8_t *ct_zstd(const void *in, size_t len, size_t *out_len)
{
    size_t cap = ZSTD_compressBound(len);
    uint8_t *out = malloc(cap);
    size_t n = ZSTD_compress(out, cap, in, len, 3);
    if (ZSTD_isError(n)) {
        free(out);
        return NULL;
    }
    *out_len = n;
    return out;
}

#endif
