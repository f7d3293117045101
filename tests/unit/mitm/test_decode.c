/*
 * unit.mitm.decode: gzip, zlib deflate, raw deflate, brotli and zstd bodies
 * decoded fed whole, split at every byte and byte by byte; Content-Encoding
 * names; what each kind of bad input gives: corrupt data -EBADMSG (and the
 * same error after), bytes after the end -EBADMSG, a cut stream -EPIPE at
 * finish, output past the cap -E2BIG with only the cap's worth delivered,
 * an unknown coding -ENOTSUP.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "compress_test.h"
#include "decode.h"

#include <errno.h>
#include <stdio.h>

struct sinkbuf {
    uint8_t *p;
    size_t len, cap;
};

static void collect(void *opaque, const uint8_t *p, size_t len)
{
    struct sinkbuf *s = opaque;
    assert_true(s->len + len <= s->cap);
    memcpy(s->p + s->len, p, len);
    s->len += len;
}

static char *plain_text(size_t *len)
{
    size_t n = 200000;
    char *t = malloc(n);
    for (size_t i = 0; i < n; i++)
        t[i] = "data: {\"type\":\"content_block_delta\"}\n\n"[i % 39] + (char)((i / 997) % 3);
    *len = n;
    return t;
}

/* Decode enc[0..n) split at `split` (or byte by byte when split == SIZE_MAX). */
static void decode_check(enum decode_kind kind, const uint8_t *enc, size_t n, const char *plain,
                         size_t plain_len, size_t split)
{
    struct decoder *d = NULL;
    assert_int_equal(decode_create(kind, UINT64_MAX, &d), 0);
    struct sinkbuf s = {.p = malloc(plain_len + 1), .cap = plain_len};
    if (split == SIZE_MAX) {
        for (size_t i = 0; i < n; i++)
            assert_int_equal(decode_feed(d, enc + i, 1, collect, &s), 0);
    } else {
        assert_int_equal(decode_feed(d, enc, split, collect, &s), 0);
        assert_int_equal(decode_feed(d, enc + split, n - split, collect, &s), 0);
    }
    assert_int_equal(decode_finish(d), 0);
    assert_int_equal(s.len, plain_len);
    assert_memory_equal(s.p, plain, plain_len);
    free(s.p);
    decode_destroy(d);
}

static void check_kind(enum decode_kind kind, const uint8_t *enc, size_t n, const char *plain,
                       size_t plain_len)
{
    decode_check(kind, enc, n, plain, plain_len, n);
    decode_check(kind, enc, n, plain, plain_len, SIZE_MAX);
    for (size_t i = 0; i <= n; i += (n > 4000 ? 7 : 1))
        decode_check(kind, enc, n, plain, plain_len, i);
}

static void test_decode_feed_gzip_deflate_raw(void **state)
{
    (void)state;
    size_t plen, n;
    char *plain = plain_text(&plen);
    static const struct {
        int bits;
        enum decode_kind kind;
    } cases[] = {{15 + 16, DECODE_GZIP}, {15, DECODE_DEFLATE}, {-15, DECODE_DEFLATE}};
    for (size_t c = 0; c < 3; c++) {
        uint8_t *enc = ct_deflate(plain, plen, cases[c].bits, &n);
        assert_non_null(enc);
        check_kind(cases[c].kind, enc, n, plain, plen);
        free(enc);
    }
    free(plain);
}

static void test_decode_feed_brotli(void **state)
{
    (void)state;
    size_t plen, n;
    char *plain = plain_text(&plen);
    uint8_t *enc = ct_brotli(plain, plen, &n);
    assert_non_null(enc);
    check_kind(DECODE_BROTLI, enc, n, plain, plen);
    free(enc);
    free(plain);
}

static void test_decode_feed_zstd(void **state)
{
    (void)state;
    size_t plen, n, n2;
    char *plain = plain_text(&plen);
    uint8_t *enc = ct_zstd(plain, plen, &n);
    assert_non_null(enc);
    check_kind(DECODE_ZSTD, enc, n, plain, plen);
    /* two frames back to back are one body */
    uint8_t *one = ct_zstd(plain, 1000, &n2);
    uint8_t *two = malloc(n2 * 2);
    memcpy(two, one, n2);
    memcpy(two + n2, one, n2);
    char *twice = malloc(2000);
    memcpy(twice, plain, 1000);
    memcpy(twice + 1000, plain, 1000);
    check_kind(DECODE_ZSTD, two, 2 * n2, twice, 2000);
    /* cut short, corrupt */
    struct decoder *d = NULL;
    struct sinkbuf s = {.p = malloc(4 * plen), .cap = 4 * plen};
    assert_int_equal(decode_create(DECODE_ZSTD, UINT64_MAX, &d), 0);
    assert_int_equal(decode_feed(d, enc, n / 2, collect, &s), 0);
    assert_int_equal(decode_finish(d), -EPIPE);
    decode_destroy(d);
    const uint8_t junk[] = "<html>502</html>";
    assert_int_equal(decode_create(DECODE_ZSTD, UINT64_MAX, &d), 0);
    assert_int_equal(decode_feed(d, junk, sizeof(junk) - 1, collect, &s), -EBADMSG);
    decode_destroy(d);
    /* a frame whose window is larger than 8 MiB is refused, not allocated */
    ZSTD_CCtx *cc = ZSTD_createCCtx();
    ZSTD_CCtx_setParameter(cc, ZSTD_c_windowLog, 26);
    ZSTD_CCtx_setParameter(cc, ZSTD_c_enableLongDistanceMatching, 1);
    size_t big_len = 40u << 20;
    char *big = calloc(1, big_len);
    uint8_t *bigz = malloc(ZSTD_compressBound(big_len));
    size_t bn = ZSTD_compress2(cc, bigz, ZSTD_compressBound(big_len), big, big_len);
    assert_false(ZSTD_isError(bn));
    s.len = 0;
    assert_int_equal(decode_create(DECODE_ZSTD, UINT64_MAX, &d), 0);
    assert_int_equal(decode_feed(d, bigz, bn, NULL, NULL), -EBADMSG);
    decode_destroy(d);
    ZSTD_freeCCtx(cc);
    free(big);
    free(bigz);
    free(s.p);
    free(twice);
    free(two);
    free(one);
    free(enc);
    free(plain);
}

static void test_decode_feed_identity(void **state)
{
    (void)state;
    const char *t = "hello";
    check_kind(DECODE_IDENTITY, (const uint8_t *)t, 5, t, 5);
}

static void test_decode_kind_parse_names(void **state)
{
    (void)state;
    enum decode_kind k = DECODE_BROTLI;
    assert_int_equal(decode_kind_parse("  GZip ", 7, &k), 0);
    assert_int_equal(k, DECODE_GZIP);
    assert_int_equal(decode_kind_parse("br", 2, &k), 0);
    assert_int_equal(k, DECODE_BROTLI);
    assert_int_equal(decode_kind_parse("deflate", 7, &k), 0);
    assert_int_equal(k, DECODE_DEFLATE);
    assert_int_equal(decode_kind_parse("", 0, &k), 0);
    assert_int_equal(k, DECODE_IDENTITY);
    assert_int_equal(decode_kind_parse("zstd", 4, &k), 0);
    assert_int_equal(k, DECODE_ZSTD);
    assert_int_equal(decode_kind_parse("compress", 8, &k), -ENOTSUP);
    assert_int_equal(decode_kind_parse("gzip, br", 8, &k), -ENOTSUP);
}

static void test_decode_feed_corrupt(void **state)
{
    (void)state;
    size_t plen, n;
    char *plain = plain_text(&plen);
    /* damaged data may decode to anything before the damage shows */
    struct sinkbuf s = {.p = malloc(4 * plen), .cap = 4 * plen};
    /* gzip with a damaged deflate stream */
    uint8_t *enc = ct_deflate(plain, plen, 15 + 16, &n);
    enc[n / 2] ^= 0x55;
    enc[n / 2 + 1] ^= 0xAA;
    struct decoder *d = NULL;
    assert_int_equal(decode_create(DECODE_GZIP, UINT64_MAX, &d), 0);
    int rc = decode_feed(d, enc, n, collect, &s);
    assert_int_equal(rc, -EBADMSG);
    assert_int_equal(decode_feed(d, enc, 1, collect, &s), -EBADMSG); /* sticky */
    assert_int_equal(decode_finish(d), -EBADMSG);
    decode_destroy(d);
    free(enc);
    /* garbage as brotli and as gzip */
    const uint8_t junk[] = "<html>502 Bad Gateway</html>";
    const enum decode_kind kinds[] = {DECODE_BROTLI, DECODE_GZIP, DECODE_DEFLATE};
    for (size_t i = 0; i < 3; i++) {
        s.len = 0;
        assert_int_equal(decode_create(kinds[i], UINT64_MAX, &d), 0);
        assert_int_equal(decode_feed(d, junk, sizeof(junk) - 1, collect, &s), -EBADMSG);
        decode_destroy(d);
    }
    free(s.p);
    free(plain);
}

static void test_decode_finish_cut_and_trailing(void **state)
{
    (void)state;
    size_t plen, n;
    char *plain = plain_text(&plen);
    struct sinkbuf s = {.p = malloc(plen), .cap = plen};
    uint8_t *gz = ct_deflate(plain, plen, 15 + 16, &n);
    size_t bn;
    uint8_t *br = ct_brotli(plain, plen, &bn);
    struct decoder *d = NULL;
    /* cut short: what came is delivered, finish says -EPIPE */
    assert_int_equal(decode_create(DECODE_GZIP, UINT64_MAX, &d), 0);
    assert_int_equal(decode_feed(d, gz, n / 2, collect, &s), 0);
    assert_true(s.len > 0 && s.len < plen);
    assert_memory_equal(s.p, plain, s.len);
    assert_int_equal(decode_finish(d), -EPIPE);
    decode_destroy(d);
    s.len = 0;
    assert_int_equal(decode_create(DECODE_BROTLI, UINT64_MAX, &d), 0);
    assert_int_equal(decode_feed(d, br, bn / 2, collect, &s), 0);
    assert_int_equal(decode_finish(d), -EPIPE);
    decode_destroy(d);
    /* bytes after the end of the encoded stream */
    uint8_t *more = malloc(n + 4);
    memcpy(more, gz, n);
    memcpy(more + n, "XXXX", 4);
    s.len = 0;
    assert_int_equal(decode_create(DECODE_GZIP, UINT64_MAX, &d), 0);
    assert_int_equal(decode_feed(d, more, n + 4, collect, &s), -EBADMSG);
    assert_int_equal(s.len, plen);
    decode_destroy(d);
    s.len = 0;
    assert_int_equal(decode_create(DECODE_GZIP, UINT64_MAX, &d), 0);
    assert_int_equal(decode_feed(d, gz, n, collect, &s), 0);
    assert_int_equal(decode_feed(d, (const uint8_t *)"X", 1, collect, &s), -EBADMSG);
    decode_destroy(d);
    free(more);
    free(gz);
    free(br);
    free(s.p);
    free(plain);
}

static void test_decode_feed_cap(void **state)
{
    (void)state;
    size_t plen, n;
    char *plain = plain_text(&plen);
    struct sinkbuf s = {.p = malloc(plen), .cap = plen};
    uint8_t *enc = ct_brotli(plain, plen, &n);
    struct decoder *d = NULL;
    assert_int_equal(decode_create(DECODE_BROTLI, 1000, &d), 0);
    assert_int_equal(decode_feed(d, enc, n, collect, &s), -E2BIG);
    assert_int_equal(s.len, 1000);
    assert_memory_equal(s.p, plain, 1000);
    decode_destroy(d);
    free(enc);
    free(s.p);
    free(plain);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decode_feed_gzip_deflate_raw),
        cmocka_unit_test(test_decode_feed_brotli),
        cmocka_unit_test(test_decode_feed_zstd),
        cmocka_unit_test(test_decode_feed_identity),
        cmocka_unit_test(test_decode_kind_parse_names),
        cmocka_unit_test(test_decode_feed_corrupt),
        cmocka_unit_test(test_decode_finish_cut_and_trailing),
        cmocka_unit_test(test_decode_feed_cap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
