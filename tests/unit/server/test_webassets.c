/*
 * unit.server.webassets: the embedded dashboard's lookup and serving
 * (server/webassets.h) on a table built here from real gzip members:
 * lookup by path, If-None-Match (304), Accept-Encoding (gzip or inflated
 * bytes), and what happens on each kind of bad input: an unknown path is a
 * 404, a corrupt or short gzip member is a 500 with nothing served, a
 * malformed header is treated as absent. Without a table the answer is a
 * clear 404. This file defines webassets_table itself (overriding the weak
 * one, as the generated file does in capsem) so each case picks its table.
 */
#include "webassets.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include <cmocka.h>

static const struct webasset *cur_tab;
static size_t cur_n;

const struct webasset *webassets_table(size_t *count)
{
    *count = cur_n;
    return cur_n ? cur_tab : NULL;
}

static const char hello[] = "<!doctype html><p>hello, dashboard</p>\n";

/* A gzip member of src[0..len) in a malloc'd buffer. */
static unsigned char *gzip_of(const char *src, size_t len, size_t *out_len)
{
    z_stream zs = {0};
    assert_int_equal(deflateInit2(&zs, 9, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY), Z_OK);
    size_t cap = deflateBound(&zs, (uLong)len);
    unsigned char *buf = malloc(cap);
    assert_non_null(buf);
    zs.next_in = (Bytef *)(uintptr_t)src;
    zs.avail_in = (uInt)len;
    zs.next_out = buf;
    zs.avail_out = (uInt)cap;
    assert_int_equal(deflate(&zs, Z_FINISH), Z_STREAM_END);
    *out_len = zs.total_out;
    deflateEnd(&zs);
    return buf;
}

static const char *no_arg(void *ctx, const char *name)
{
    (void)ctx;
    (void)name;
    return NULL;
}

static struct api_req req_with(const char *inm, const char *ae)
{
    return (struct api_req){
        .method = "GET", .path = "/", .if_none_match = inm, .accept_encoding = ae, .arg = no_arg};
}

static void test_webassets_find_by_path(void **state)
{
    (void)state;
    static const unsigned char a[] = "a", b[] = "b";
    const struct webasset tab[] = {
        {"index.html", a, 1, 1, false, "\"1\"", "text/html"},
        {"app.js", b, 1, 1, false, "\"2\"", "text/javascript"},
    };
    assert_ptr_equal(webassets_find(tab, 2, "app.js"), &tab[1]);
    assert_ptr_equal(webassets_find(tab, 2, "/app.js"), &tab[1]);
    assert_ptr_equal(webassets_find(tab, 2, "//index.html"), &tab[0]);
    assert_null(webassets_find(tab, 2, "app.j"));
    assert_null(webassets_find(tab, 2, "app.js/"));
    assert_null(webassets_find(tab, 2, "../app.js"));
    assert_null(webassets_find(tab, 2, ""));
    assert_null(webassets_find(tab, 2, NULL));
    assert_null(webassets_find(tab, 0, "app.js"));
}

static void test_webassets_etag_match_lists_and_weak(void **state)
{
    (void)state;
    const char *e = "\"abc\"";
    assert_true(webassets_etag_match("\"abc\"", e));
    assert_true(webassets_etag_match("\"x\", \"abc\"", e));
    assert_true(webassets_etag_match("W/\"abc\"", e));
    assert_true(webassets_etag_match("*", e));
    assert_true(webassets_etag_match(" \"abc\" ", e));
    assert_false(webassets_etag_match("\"abcd\"", e));
    assert_false(webassets_etag_match("abc", e));
    assert_false(webassets_etag_match("\"ab\"", e));
    assert_false(webassets_etag_match("", e));
    assert_false(webassets_etag_match(",,,", e));
    assert_false(webassets_etag_match(NULL, e));
}

static void test_webassets_accepts_gzip_q_values(void **state)
{
    (void)state;
    assert_true(webassets_accepts_gzip("gzip"));
    assert_true(webassets_accepts_gzip("gzip, deflate, br"));
    assert_true(webassets_accepts_gzip("br;q=1.0, GZIP;q=0.5"));
    assert_true(webassets_accepts_gzip("x-gzip"));
    assert_true(webassets_accepts_gzip("gzip;q=0.01"));
    assert_false(webassets_accepts_gzip("gzip;q=0"));
    assert_false(webassets_accepts_gzip("gzip;q=0.000"));
    assert_false(webassets_accepts_gzip("deflate, br"));
    assert_false(webassets_accepts_gzip("gzipx"));
    assert_false(webassets_accepts_gzip("identity"));
    assert_false(webassets_accepts_gzip(""));
    assert_false(webassets_accepts_gzip(NULL));
}

static void test_webassets_inflate_round_trip_and_corrupt(void **state)
{
    (void)state;
    size_t gzlen;
    unsigned char *gz = gzip_of(hello, strlen(hello), &gzlen);
    struct webasset a = {"index.html", gz, gzlen, strlen(hello), true, "\"h\"", "text/html"};
    char *out = NULL;
    size_t len = 0;
    assert_int_equal(webassets_inflate(&a, &out, &len), 0);
    assert_int_equal(len, strlen(hello));
    assert_memory_equal(out, hello, len);
    free(out);

    /* Wrong declared length, a cut member, flipped bytes: -EBADMSG, nothing out. */
    out = (char *)0x1;
    a.raw_len = strlen(hello) - 1;
    assert_int_equal(webassets_inflate(&a, &out, &len), -EBADMSG);
    a.raw_len = strlen(hello) + 1;
    assert_int_equal(webassets_inflate(&a, &out, &len), -EBADMSG);
    a.raw_len = strlen(hello);
    a.len = gzlen / 2;
    assert_int_equal(webassets_inflate(&a, &out, &len), -EBADMSG);
    a.len = gzlen;
    gz[gzlen / 2] ^= 0xff;
    gz[gzlen / 2 + 1] ^= 0xff;
    assert_int_equal(webassets_inflate(&a, &out, &len), -EBADMSG);
    assert_ptr_equal(out, (char *)0x1);
    free(gz);

    /* A file stored as is. */
    struct webasset plain = {"x.txt",     (const unsigned char *)"abc", 3, 3, false, "\"p\"",
                             "text/plain"};
    assert_int_equal(webassets_inflate(&plain, &out, &len), 0);
    assert_int_equal(len, 3);
    assert_memory_equal(out, "abc", 3);
    free(out);
    plain.raw_len = 4;
    assert_int_equal(webassets_inflate(&plain, &out, &len), -EBADMSG);
}

static void test_webassets_respond_gzip_plain_304_404(void **state)
{
    (void)state;
    size_t gzlen;
    unsigned char *gz = gzip_of(hello, strlen(hello), &gzlen);
    const struct webasset tab[] = {
        {"index.html", gz, gzlen, strlen(hello), true, "\"h1\"", "text/html; charset=utf-8"},
    };
    cur_tab = tab;
    cur_n = 1;
    struct api_resp resp = {0};

    /* A browser: the gzip bytes as stored, with their headers. */
    struct api_req req = req_with(NULL, "gzip, deflate, br");
    assert_int_equal(webassets_respond(&req, &resp, "/index.html"), 0);
    assert_int_equal(resp.status, 200);
    assert_int_equal(resp.body_len, gzlen);
    assert_memory_equal(resp.body, gz, gzlen);
    assert_string_equal(resp.content_encoding, "gzip");
    assert_string_equal(resp.etag, "\"h1\"");
    assert_string_equal(resp.content_type, "text/html; charset=utf-8");
    assert_true(resp.vary_encoding);
    api_resp_fini(&resp);

    /* No Accept-Encoding, or gzip refused: the same bytes inflated. */
    const char *plain_ae[] = {NULL, "identity", "gzip;q=0", "garbage,,;;=="};
    for (size_t i = 0; i < sizeof(plain_ae) / sizeof(plain_ae[0]); i++) {
        resp = (struct api_resp){0};
        req = req_with(NULL, plain_ae[i]);
        assert_int_equal(webassets_respond(&req, &resp, "index.html"), 0);
        assert_int_equal(resp.status, 200);
        assert_int_equal(resp.body_len, strlen(hello));
        assert_memory_equal(resp.body, hello, strlen(hello));
        assert_null(resp.content_encoding);
        assert_string_equal(resp.etag, "\"h1\"");
        api_resp_fini(&resp);
    }

    /* The current ETag: 304 without a body; an old one: 200. */
    resp = (struct api_resp){0};
    req = req_with("\"h1\"", "gzip");
    assert_int_equal(webassets_respond(&req, &resp, "index.html"), 0);
    assert_int_equal(resp.status, 304);
    assert_null(resp.body);
    assert_string_equal(resp.etag, "\"h1\"");
    resp = (struct api_resp){0};
    req = req_with("\"h0\"", "gzip");
    assert_int_equal(webassets_respond(&req, &resp, "index.html"), 0);
    assert_int_equal(resp.status, 200);
    api_resp_fini(&resp);

    /* Unknown file: 404 JSON, no ETag. */
    resp = (struct api_resp){0};
    assert_int_equal(webassets_respond(&req, &resp, "nope.js"), 0);
    assert_int_equal(resp.status, 404);
    assert_non_null(strstr(resp.body, "no such file"));
    assert_null(resp.etag);
    api_resp_fini(&resp);

    /* A corrupt member for a client without gzip: 500, no half body. */
    gz[gzlen / 2] ^= 0xff;
    gz[gzlen / 2 + 1] ^= 0xff;
    resp = (struct api_resp){0};
    req = req_with(NULL, NULL);
    assert_int_equal(webassets_respond(&req, &resp, "index.html"), 0);
    assert_int_equal(resp.status, 500);
    assert_non_null(strstr(resp.body, "corrupt"));
    assert_null(resp.etag);
    api_resp_fini(&resp);
    free(gz);
    cur_n = 0;
}

static void test_webassets_respond_without_table_is_404(void **state)
{
    (void)state;
    cur_n = 0;
    size_t n = 99;
    assert_null(webassets_table(&n));
    assert_int_equal(n, 0);
    assert_null(webassets_lookup("index.html"));
    struct api_req req = req_with(NULL, "gzip");
    struct api_resp resp = {0};
    assert_int_equal(webassets_respond(&req, &resp, "index.html"), 0);
    assert_int_equal(resp.status, 404);
    assert_non_null(strstr(resp.body, "without the dashboard"));
    assert_null(resp.etag);
    api_resp_fini(&resp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_webassets_find_by_path),
        cmocka_unit_test(test_webassets_etag_match_lists_and_weak),
        cmocka_unit_test(test_webassets_accepts_gzip_q_values),
        cmocka_unit_test(test_webassets_inflate_round_trip_and_corrupt),
        cmocka_unit_test(test_webassets_respond_gzip_plain_304_404),
        cmocka_unit_test(test_webassets_respond_without_table_is_404),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
