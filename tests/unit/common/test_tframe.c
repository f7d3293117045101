/*
 * Unit tests for the terminal channel framing (common/tframe.c): frames
 * built by tframe_put_* parse back to what went in, partial input asks for
 * more, and each kind of bad input gives its error: a length over the
 * limit -> -EMSGSIZE; an unknown kind, an empty data frame, a resize that
 * is not 4 bytes or has a zero size, a header without the magic -> -EPROTO.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "tframe.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static void test_tframe_put_data_roundtrip(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, 0);
    assert_int_equal(tframe_put_data(&b, "ls\r", 3), 0);
    assert_int_equal(b.len, TFRAME_HDR_LEN + 3);
    struct tframe f;
    size_t used = 0;
    assert_int_equal(tframe_parse(b.data, b.len, &f, &used), 1);
    assert_int_equal(used, b.len);
    assert_int_equal(f.kind, TFRAME_DATA);
    assert_int_equal(f.len, 3);
    assert_memory_equal(f.data, "ls\r", 3);
    buf_fini(&b);
}

static void test_tframe_put_data_splits_large_input(void **state)
{
    (void)state;
    size_t n = TFRAME_MAX_PAYLOAD * 2 + 10;
    uint8_t *p = malloc(n);
    assert_non_null(p);
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(i * 7);
    struct buf b;
    buf_init(&b, 0);
    assert_int_equal(tframe_put_data(&b, p, n), 0);
    size_t off = 0, got = 0;
    int frames = 0;
    while (off < b.len) {
        struct tframe f;
        size_t used;
        assert_int_equal(tframe_parse(b.data + off, b.len - off, &f, &used), 1);
        assert_true(f.len <= TFRAME_MAX_PAYLOAD);
        assert_memory_equal(f.data, p + got, f.len);
        got += f.len;
        off += used;
        frames++;
    }
    assert_int_equal(got, n);
    assert_int_equal(frames, 3);
    assert_int_equal(tframe_put_data(&b, p, 0), 0); /* nothing added */
    assert_int_equal(b.len, off);
    buf_fini(&b);
    free(p);
}

static void test_tframe_put_resize_roundtrip(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, 0);
    assert_int_equal(tframe_put_resize(&b, 300, 65535), 0);
    struct tframe f;
    size_t used;
    assert_int_equal(tframe_parse(b.data, b.len, &f, &used), 1);
    assert_int_equal(f.kind, TFRAME_RESIZE);
    assert_int_equal(f.cols, 300);
    assert_int_equal(f.rows, 65535);
    assert_int_equal(used, TFRAME_HDR_LEN + 4);
    assert_int_equal(tframe_put_resize(&b, 0, 24), -EINVAL);
    assert_int_equal(tframe_put_resize(&b, 80, 0), -EINVAL);
    assert_int_equal(b.len, used); /* the refused ones added nothing */
    buf_fini(&b);
}

static void test_tframe_parse_partial_needs_more(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, 0);
    assert_int_equal(tframe_put_data(&b, "hello", 5), 0);
    for (size_t n = 0; n < b.len; n++) {
        struct tframe f;
        size_t used = 99;
        assert_int_equal(tframe_parse(b.data, n, &f, &used), 0);
        assert_int_equal(used, 99);
    }
    buf_fini(&b);
}

static void test_tframe_parse_bad_input_errors(void **state)
{
    (void)state;
    struct tframe f;
    size_t used;
    /* Over the limit: refused from the header alone. */
    const uint8_t big[5] = {0, 1, 0, 1, TFRAME_DATA};
    assert_int_equal(tframe_parse(big, sizeof(big), &f, &used), -EMSGSIZE);
    /* Unknown kinds, including the control channel's 1 and 2. */
    for (uint8_t k = 0; k < 10; k++) {
        if (k == TFRAME_DATA || k == TFRAME_RESIZE)
            continue;
        const uint8_t h[6] = {0, 0, 0, 1, k, 'x'};
        assert_int_equal(tframe_parse(h, sizeof(h), &f, &used), -EPROTO);
    }
    const uint8_t empty[5] = {0, 0, 0, 0, TFRAME_DATA};
    assert_int_equal(tframe_parse(empty, sizeof(empty), &f, &used), -EPROTO);
    const uint8_t short_resize[8] = {0, 0, 0, 3, TFRAME_RESIZE, 0, 80, 0};
    assert_int_equal(tframe_parse(short_resize, sizeof(short_resize), &f, &used), -EPROTO);
    const uint8_t long_resize[10] = {0, 0, 0, 5, TFRAME_RESIZE, 0, 80, 0, 24, 0};
    assert_int_equal(tframe_parse(long_resize, sizeof(long_resize), &f, &used), -EPROTO);
    const uint8_t zero_cols[9] = {0, 0, 0, 4, TFRAME_RESIZE, 0, 0, 0, 24};
    assert_int_equal(tframe_parse(zero_cols, sizeof(zero_cols), &f, &used), -EPROTO);
    const uint8_t zero_rows[9] = {0, 0, 0, 4, TFRAME_RESIZE, 0, 80, 0, 0};
    assert_int_equal(tframe_parse(zero_rows, sizeof(zero_rows), &f, &used), -EPROTO);
}

static void test_tframe_hello_roundtrip_and_bad_magic(void **state)
{
    (void)state;
    uint8_t h[TFRAME_HELLO_LEN];
    tframe_hello(h, 0xdeadbeefu);
    assert_memory_equal(h, "CPTY\xde\xad\xbe\xef", 8);
    uint32_t id = 0;
    assert_int_equal(tframe_hello_parse(h, &id), 0);
    assert_int_equal(id, 0xdeadbeefu);
    h[0] = 'X';
    id = 7;
    assert_int_equal(tframe_hello_parse(h, &id), -EPROTO);
    assert_int_equal(id, 7);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tframe_put_data_roundtrip),
        cmocka_unit_test(test_tframe_put_data_splits_large_input),
        cmocka_unit_test(test_tframe_put_resize_roundtrip),
        cmocka_unit_test(test_tframe_parse_partial_needs_more),
        cmocka_unit_test(test_tframe_parse_bad_input_errors),
        cmocka_unit_test(test_tframe_hello_roundtrip_and_bad_magic),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
