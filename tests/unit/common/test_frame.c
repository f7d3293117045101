/*
 * Unit tests for common/frame.{h,c}: parsing every header and payload case
 * (short, exact, oversize, unknown kind, short data frame, bad stream), input
 * split at every byte boundary, many frames in one buffer, and building
 * frames (limits, caps: on error nothing is appended).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "frame.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static void put_hdr(uint8_t *p, uint32_t len, uint8_t kind)
{
    be32_store(p, len);
    p[4] = kind;
}

static void test_frame_parse_short_header(void **state)
{
    (void)state;
    uint8_t p[5] = {0, 0, 0, 2, FRAME_JSON};
    struct frame f;
    size_t used = 99;
    for (size_t len = 0; len < FRAME_HDR_LEN; len++) {
        assert_int_equal(frame_parse(p, len, &f, &used), 0);
        assert_int_equal(used, 99); /* untouched while incomplete */
    }
}

static void test_frame_parse_short_payload(void **state)
{
    (void)state;
    uint8_t p[5 + 10];
    put_hdr(p, 10, FRAME_JSON);
    memset(p + 5, 'x', 10);
    struct frame f;
    size_t used;
    for (size_t len = FRAME_HDR_LEN; len < sizeof(p); len++)
        assert_int_equal(frame_parse(p, len, &f, &used), 0);
}

static void test_frame_parse_exact(void **state)
{
    (void)state;
    const char *json = "{\"type\":\"ping\"}";
    size_t jl = strlen(json);
    uint8_t p[64];
    put_hdr(p, (uint32_t)jl, FRAME_JSON);
    memcpy(p + 5, json, jl);
    struct frame f;
    size_t used = 0;
    assert_int_equal(frame_parse(p, 5 + jl, &f, &used), 1);
    assert_int_equal(used, 5 + jl);
    assert_int_equal(f.kind, FRAME_JSON);
    assert_int_equal(f.payload.len, jl);
    assert_ptr_equal(f.payload.ptr, p + 5);
    assert_memory_equal(f.payload.ptr, json, jl);
}

static void test_frame_parse_empty_json(void **state)
{
    (void)state;
    uint8_t p[5];
    put_hdr(p, 0, FRAME_JSON);
    struct frame f;
    size_t used = 0;
    assert_int_equal(frame_parse(p, 5, &f, &used), 1);
    assert_int_equal(used, 5);
    assert_int_equal(f.payload.len, 0);
}

static void test_frame_parse_oversize(void **state)
{
    (void)state;
    uint8_t p[5];
    struct frame f;
    size_t used = 7;
    /* Rejected from the header alone: no need to wait for a megabyte first. */
    put_hdr(p, FRAME_MAX_PAYLOAD + 1, FRAME_JSON);
    assert_int_equal(frame_parse(p, 5, &f, &used), -EMSGSIZE);
    put_hdr(p, UINT32_MAX, FRAME_DATA);
    assert_int_equal(frame_parse(p, 5, &f, &used), -EMSGSIZE);
    assert_int_equal(used, 7);
    /* Exactly the limit is legal: it only needs more bytes. */
    put_hdr(p, FRAME_MAX_PAYLOAD, FRAME_JSON);
    assert_int_equal(frame_parse(p, 5, &f, &used), 0);
}

static void test_frame_parse_max_payload(void **state)
{
    (void)state;
    size_t n = FRAME_HDR_LEN + FRAME_MAX_PAYLOAD;
    uint8_t *p = calloc(1, n);
    assert_non_null(p);
    put_hdr(p, FRAME_MAX_PAYLOAD, FRAME_DATA);
    be32_store(p + 5, 3);
    p[9] = FRAME_STDOUT;
    struct frame f;
    size_t used;
    assert_int_equal(frame_parse(p, n, &f, &used), 1);
    assert_int_equal(used, n);
    assert_int_equal(f.data.len, FRAME_MAX_DATA);
    free(p);
}

static void test_frame_parse_unknown_kind(void **state)
{
    (void)state;
    uint8_t kinds[] = {0, 3, 7, 255};
    uint8_t p[5 + 4] = {0};
    struct frame f;
    size_t used;
    for (size_t i = 0; i < sizeof(kinds); i++) {
        put_hdr(p, 4, kinds[i]);
        /* Known as soon as the header is there, whether or not the payload is. */
        assert_int_equal(frame_parse(p, 5, &f, &used), -EPROTO);
        assert_int_equal(frame_parse(p, sizeof(p), &f, &used), -EPROTO);
    }
}

static void test_frame_parse_data_too_short(void **state)
{
    (void)state;
    uint8_t p[5 + 5] = {0};
    struct frame f;
    size_t used;
    for (uint32_t plen = 0; plen < FRAME_DATA_HDR_LEN; plen++) {
        put_hdr(p, plen, FRAME_DATA);
        assert_int_equal(frame_parse(p, 5 + plen, &f, &used), -EPROTO);
    }
}

static void test_frame_parse_bad_stream(void **state)
{
    (void)state;
    uint8_t p[5 + 5 + 1];
    put_hdr(p, 6, FRAME_DATA);
    be32_store(p + 5, 1);
    p[10] = 'z';
    struct frame f;
    size_t used;
    for (int s = 0; s < 256; s++) {
        p[9] = (uint8_t)s;
        int rc = frame_parse(p, sizeof(p), &f, &used);
        if (s <= FRAME_STDERR)
            assert_int_equal(rc, 1);
        else
            assert_int_equal(rc, -EPROTO);
    }
}

static void test_frame_parse_data_fields(void **state)
{
    (void)state;
    uint8_t p[5 + 5 + 3];
    put_hdr(p, 8, FRAME_DATA);
    be32_store(p + 5, 0xdeadbeef);
    p[9] = FRAME_STDERR;
    memcpy(p + 10, "abc", 3);
    struct frame f;
    size_t used;
    assert_int_equal(frame_parse(p, sizeof(p), &f, &used), 1);
    assert_int_equal(f.kind, FRAME_DATA);
    assert_int_equal(f.exec_id, 0xdeadbeef);
    assert_int_equal(f.stream, FRAME_STDERR);
    assert_int_equal(f.data.len, 3);
    assert_memory_equal(f.data.ptr, "abc", 3);
    /* Empty data = end of stream. */
    put_hdr(p, 5, FRAME_DATA);
    assert_int_equal(frame_parse(p, 10, &f, &used), 1);
    assert_int_equal(used, 10);
    assert_int_equal(f.data.len, 0);
}

/* A few frames of every kind, built with the frame_put_* functions. */
static void build_sample(struct buf *b)
{
    buf_init(b, 0);
    assert_int_equal(frame_put_json(b, "{\"type\":\"hello\"}", 16), 0);
    assert_int_equal(frame_put_data(b, 1, FRAME_STDOUT, "out", 3), 0);
    assert_int_equal(frame_put_data(b, 2, FRAME_STDERR, "e", 1), 0);
    assert_int_equal(frame_put_data(b, 1, FRAME_STDOUT, NULL, 0), 0);
    assert_int_equal(frame_put_json(b, "", 0), 0);
    assert_int_equal(frame_put_data(b, 0xffffffffu, FRAME_STDIN, "0123456789", 10), 0);
}

struct seen {
    int n;
    enum frame_kind kind[8];
    uint32_t id[8];
    size_t len[8];
    char first[8];
};

/* Parse everything complete in `b`, consuming it; records what came out. */
static void drain(struct buf *b, struct seen *s)
{
    for (;;) {
        struct frame f;
        size_t used;
        int rc = frame_parse(b->data, b->len, &f, &used);
        assert_true(rc >= 0);
        if (rc == 0)
            return;
        assert_true(s->n < 8);
        s->kind[s->n] = f.kind;
        s->id[s->n] = f.exec_id;
        s->len[s->n] = f.kind == FRAME_DATA ? f.data.len : f.payload.len;
        s->first[s->n] =
            s->len[s->n] ? (char)(f.kind == FRAME_DATA ? f.data.ptr[0] : f.payload.ptr[0]) : 0;
        s->n++;
        buf_consume(b, used);
    }
}

static void test_frame_parse_split_every_boundary(void **state)
{
    (void)state;
    struct buf all;
    build_sample(&all);
    struct seen want;
    memset(&want, 0, sizeof(want)); /* memset: padding is compared too */
    struct buf copy;
    buf_init(&copy, 0);
    assert_int_equal(buf_append(&copy, all.data, all.len), 0);
    drain(&copy, &want);
    assert_int_equal(want.n, 6);
    assert_int_equal(copy.len, 0);
    for (size_t cut = 0; cut <= all.len; cut++) {
        struct buf rx;
        struct seen got;
        memset(&got, 0, sizeof(got));
        buf_init(&rx, 0);
        assert_int_equal(buf_append(&rx, all.data, cut), 0);
        drain(&rx, &got);
        assert_int_equal(buf_append(&rx, all.data + cut, all.len - cut), 0);
        drain(&rx, &got);
        assert_int_equal(rx.len, 0);
        assert_int_equal(got.n, want.n);
        assert_memory_equal(&got, &want, sizeof(got));
        buf_fini(&rx);
    }
    /* And byte by byte. */
    struct buf rx;
    struct seen got;
    memset(&got, 0, sizeof(got));
    buf_init(&rx, 0);
    for (size_t i = 0; i < all.len; i++) {
        assert_int_equal(buf_append(&rx, all.data + i, 1), 0);
        drain(&rx, &got);
    }
    assert_memory_equal(&got, &want, sizeof(got));
    buf_fini(&rx);
    buf_fini(&copy);
    buf_fini(&all);
}

static void test_frame_parse_many_frames(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, 0);
    for (uint32_t i = 0; i < 10000; i++) {
        char d[4];
        be32_store((uint8_t *)d, i);
        assert_int_equal(frame_put_data(&b, i, (uint8_t)(1 + i % 2), d, i % 5), 0);
    }
    size_t off = 0;
    for (uint32_t i = 0; i < 10000; i++) {
        struct frame f;
        size_t used;
        assert_int_equal(frame_parse(b.data + off, b.len - off, &f, &used), 1);
        assert_int_equal(f.exec_id, i);
        assert_int_equal(f.stream, 1 + i % 2);
        assert_int_equal(f.data.len, i % 5);
        off += used;
    }
    assert_int_equal(off, b.len);
    struct frame f;
    size_t used;
    assert_int_equal(frame_parse(b.data + off, 0, &f, &used), 0);
    buf_fini(&b);
}

static void test_frame_put_json_oversize(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, 0);
    assert_int_equal(frame_put_json(&b, "x", 1), 0);
    size_t before = b.len;
    char *big = calloc(1, FRAME_MAX_PAYLOAD + 1);
    assert_non_null(big);
    assert_int_equal(frame_put_json(&b, big, FRAME_MAX_PAYLOAD + 1), -EMSGSIZE);
    assert_int_equal(b.len, before);
    assert_int_equal(frame_put_json(&b, big, FRAME_MAX_PAYLOAD), 0);
    assert_int_equal(b.len, before + 5 + FRAME_MAX_PAYLOAD);
    free(big);
    buf_fini(&b);
}

static void test_frame_put_data_oversize(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, 0);
    char *big = calloc(1, FRAME_MAX_DATA + 1);
    assert_non_null(big);
    assert_int_equal(frame_put_data(&b, 1, FRAME_STDOUT, big, FRAME_MAX_DATA + 1), -EMSGSIZE);
    assert_int_equal(b.len, 0);
    assert_int_equal(frame_put_data(&b, 1, FRAME_STDOUT, big, FRAME_MAX_DATA), 0);
    struct frame f;
    size_t used;
    assert_int_equal(frame_parse(b.data, b.len, &f, &used), 1);
    assert_int_equal(f.data.len, FRAME_MAX_DATA);
    free(big);
    buf_fini(&b);
}

static void test_frame_put_cap_reached(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, 20);
    assert_int_equal(frame_put_json(&b, "0123456789", 10), 0);
    /* 15 bytes used; neither of these fits, and neither leaves a partial frame. */
    assert_int_equal(frame_put_json(&b, "abc", 3), -E2BIG);
    assert_int_equal(frame_put_data(&b, 1, FRAME_STDOUT, NULL, 0), -E2BIG);
    assert_int_equal(b.len, 15);
    struct frame f;
    size_t used;
    assert_int_equal(frame_parse(b.data, b.len, &f, &used), 1);
    assert_int_equal(used, 15);
    buf_fini(&b);
}

static void test_frame_put_data_roundtrip(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, 0);
    assert_int_equal(frame_put_data(&b, 0x01020304, FRAME_STDERR, "hi", 2), 0);
    const uint8_t want[] = {0, 0, 0, 7, 2, 1, 2, 3, 4, 2, 'h', 'i'};
    assert_int_equal(b.len, sizeof(want));
    assert_memory_equal(b.data, want, sizeof(want));
    buf_fini(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_frame_parse_short_header),
        cmocka_unit_test(test_frame_parse_short_payload),
        cmocka_unit_test(test_frame_parse_exact),
        cmocka_unit_test(test_frame_parse_empty_json),
        cmocka_unit_test(test_frame_parse_oversize),
        cmocka_unit_test(test_frame_parse_max_payload),
        cmocka_unit_test(test_frame_parse_unknown_kind),
        cmocka_unit_test(test_frame_parse_data_too_short),
        cmocka_unit_test(test_frame_parse_bad_stream),
        cmocka_unit_test(test_frame_parse_data_fields),
        cmocka_unit_test(test_frame_parse_split_every_boundary),
        cmocka_unit_test(test_frame_parse_many_frames),
        cmocka_unit_test(test_frame_put_json_oversize),
        cmocka_unit_test(test_frame_put_data_oversize),
        cmocka_unit_test(test_frame_put_cap_reached),
        cmocka_unit_test(test_frame_put_data_roundtrip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
