/*
 * unit.mitm.decode: gzip, zlib deflate, raw deflate and brotli bodies
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
    assert_int_equal(decode_kind_parse("zstd", 4, &k), -ENOTSUP);
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
        cmocka_unit_test(test_decode_feed_identity),
        cmocka_unit_test(test_decode_kind_parse_names),
        cmocka_unit_test(test_decode_feed_corrupt),
        cmocka_unit_test(test_decode_finish_cut_and_trailing),
        cmocka_unit_test(test_decode_feed_cap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
