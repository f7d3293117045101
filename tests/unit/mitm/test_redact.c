/*
 * What the proxy stores (mitm/redact.h). Heads come from the real parser.
 * The central property: a secret planted in any credential-bearing header
 * or query parameter, in any casing and repeated, never appears in the
 * output; the output is always valid JSON / valid UTF-8 of bounded size.
 *
 * Bad input: invalid UTF-8 and control bytes in values or bodies become '.',
 * over-long values are cut, a multi-byte character cut by the limit is
 * dropped; none of it fails or loses the rest of the headers.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "http.h"
#include "redact.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *headers_json_of(const char *head_text, bool is_request)
{
    struct http_head *h = malloc(sizeof(*h));
    const char *why = NULL;
    char *out = NULL;
    long n;

    assert_non_null(h);
    n = http_parse_head(head_text, strlen(head_text), is_request, h, &why);
    if (n <= 0)
        fail_msg("parse: %ld %s", n, why ? why : "-");
    assert_int_equal(redact_headers_json(h, &out), 0);
    assert_non_null(out);
    free(h);
    return out;
}

/* The parsed JSON object; the test fails when it is not one. */
static json_t *parse_object(const char *text)
{
    json_error_t err;
    json_t *o = json_loads(text, 0, &err);

    if (!o || !json_is_object(o))
        fail_msg("not a JSON object: %s (%s)", text, err.text);
    return o;
}

/* The string value of `key`; the test fails when it is missing. */
static const char *field(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);

    if (!v || !json_is_string(v))
        fail_msg("no string field %s", key);
    return json_string_value(v);
}

static void test_redact_headers_json_allowlist(void **state)
{
    char *s = headers_json_of("POST /v1/messages HTTP/1.1\r\n"
                              "Host: api.anthropic.com\r\n"
                              "Content-Type: application/json\r\n"
                              "Content-Length: 12\r\n"
                              "User-Agent: claude-cli/1.0 \"quoted\" \\back\r\n"
                              "anthropic-version: 2023-06-01\r\n"
                              "X-Stainless-Lang: js\r\n"
                              "X-Private-Thing: do not store\r\n"
                              "Accept: application/json\r\n"
                              "Accept: text/event-stream\r\n"
                              "\r\n",
                              true);
    json_t *o = parse_object(s);
    (void)state;

    assert_string_equal(field(o, "host"), "api.anthropic.com");
    assert_string_equal(field(o, "content-type"), "application/json");
    assert_string_equal(field(o, "content-length"), "12");
    assert_string_equal(field(o, "user-agent"), "claude-cli/1.0 \"quoted\" \\back");
    assert_string_equal(field(o, "anthropic-version"), "2023-06-01");
    assert_string_equal(field(o, "x-stainless-lang"), "js");
    /* A repeated name appears once, its values joined. */
    assert_string_equal(field(o, "accept"), "application/json, text/event-stream");
    assert_null(json_object_get(o, "x-private-thing"));
    assert_null(strstr(s, "do not store"));
    assert_int_equal(json_object_size(o), 7);
    /* Names lower-cased, first-seen order. */
    assert_true(strncmp(s, "{\"host\":", 8) == 0);
    json_decref(o);
    free(s);
}

static void test_redact_headers_json_response(void **state)
{
    char *s = headers_json_of("HTTP/1.1 302 Found\r\n"
                              "Server: envoy\r\n"
                              "Date: Sat, 28 Nov 2026 16:00:00 GMT\r\n"
                              "request-id: req_0123\r\n"
                              "Set-Cookie: sid=SECRETCOOKIE1; HttpOnly\r\n"
                              "set-cookie: other=SECRETCOOKIE2\r\n"
                              "Location: https://x.test/cb?code=ok&access_token=SECRETLOC#frag\r\n"
                              "\r\n",
                              false);
    json_t *o = parse_object(s);
    (void)state;

    assert_string_equal(field(o, "server"), "envoy");
    assert_string_equal(field(o, "request-id"), "req_0123");
    assert_string_equal(field(o, "set-cookie"), REDACTED);
    assert_string_equal(field(o, "location"),
                        "https://x.test/cb?code=ok&access_token=" REDACTED "#frag");
    assert_null(strstr(s, "SECRET"));
    json_decref(o);
    free(s);
}

/* Spell `name` in the casing selected by `variant`. */
static void cased(char *out, const char *name, unsigned variant)
{
    size_t i;

    for (i = 0; name[i]; i++) {
        char c = name[i];
        bool up = variant == 1 || (variant == 2 && i % 2) || (variant == 3 && !(i % 2)) ||
                  (variant == 4 && i == 0);

        out[i] = (char)(up && c >= 'a' && c <= 'z' ? c - 'a' + 'A' : c);
    }
    out[i] = '\0';
}

static void test_redact_headers_json_no_secret_survives(void **state)
{
    static const char *const names[] = {
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "x-api-key",
        "x-goog-api-key",
        "api-key",
        "x-my-token",
        "x-client-secret",
        "x-amz-security-token",
        "anthropic-ratelimit-tokens-remaining",
        "x-ratelimit-remaining-tokens",
        "x-session-id",
        "x-keyring",
        "x-password",
    };
    (void)state;

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        for (unsigned v = 0; v < 5; v++) {
            char head[1024], nm[64], *s;
            json_t *o;
            int n;

            cased(nm, names[i], v);
            /* Three times, among stored headers, with distinct values. */
            n = snprintf(head, sizeof(head),
                         "GET / HTTP/1.1\r\nHost: a\r\n%s: Bearer PLANTED-A-%zu\r\n"
                         "Accept: */*\r\n%s:PLANTED-B-%zu\r\n%s:  \tPLANTED-C-%zu \r\n\r\n",
                         nm, i, nm, i, nm, i);
            assert_true(n > 0 && (size_t)n < sizeof(head));
            s = headers_json_of(head, true);
            if (strstr(s, "PLANTED"))
                fail_msg("secret survived for %s: %s", nm, s);
            o = parse_object(s);
            assert_string_equal(field(o, names[i]), REDACTED);
            assert_string_equal(field(o, "accept"), "*/*");
            json_decref(o);
            free(s);
        }
    }
}

static void test_redact_name_is_secret_cases(void **state)
{
    (void)state;
    assert_true(redact_name_is_secret("Authorization", 13));
    assert_true(redact_name_is_secret("COOKIE", 6));
    assert_true(redact_name_is_secret("X-Goog-Api-Key", 14));
    assert_true(redact_name_is_secret("refresh_TOKEN", 13));
    /* Only the given length counts. */
    assert_false(redact_name_is_secret("keyX", 0));
    assert_false(redact_name_is_secret("ke", 2));
    assert_false(redact_name_is_secret("content-type", 12));
    assert_false(redact_name_is_secret("host", 4));
}

static void test_redact_headers_json_bad_bytes_and_long_values(void **state)
{
    char *head = malloc(8192), *s;
    json_t *o;
    const char *ua;
    int n;
    (void)state;

    assert_non_null(head);
    /* Invalid UTF-8 and a valid two-byte character in a stored value. */
    s = headers_json_of("GET / HTTP/1.1\r\nHost: a\r\nUser-Agent: a\xff\xc3\xa9z\xc0\x80\r\n\r\n",
                        true);
    o = parse_object(s);
    assert_string_equal(field(o, "user-agent"), "a.\xc3\xa9z..");
    json_decref(o);
    free(s);
    /* A value over REDACT_VALUE_MAX is cut, at a character boundary. */
    n = snprintf(head, 8192, "GET / HTTP/1.1\r\nHost: a\r\nUser-Agent: ");
    memset(head + n, 'u', REDACT_VALUE_MAX - 1);
    memcpy(head + n + REDACT_VALUE_MAX - 1, "\xc3\xa9tail\r\n\r\n", 11);
    s = headers_json_of(head, true);
    o = parse_object(s);
    ua = field(o, "user-agent");
    assert_non_null(ua);
    assert_int_equal(strlen(ua), REDACT_VALUE_MAX - 1);
    assert_null(strstr(ua, "tail"));
    json_decref(o);
    free(s);
    free(head);
}

static void test_redact_headers_json_empty(void **state)
{
    char *s = headers_json_of("HTTP/1.1 204 No Content\r\nX-Other: 1\r\n\r\n", false);
    (void)state;

    assert_string_equal(s, "{}");
    free(s);
}

static void test_redact_query_secret_params(void **state)
{
    static const char q[] = "a=1&key=S1&API_KEY=S2&access_token=S3&token=S4&Token=S5"
                            "&api%5Fkey=S6&b=2&k%65y=S7&x=&refresh_token=S8&client_secret=S9"
                            "&sig&&apiKey=S10&c=%20ok";
    char *out = NULL;
    (void)state;

    assert_int_equal(redact_query(q, strlen(q), &out), 0);
    assert_string_equal(out, "a=1&key=" REDACTED "&API_KEY=" REDACTED "&access_token=" REDACTED
                             "&token=" REDACTED "&Token=" REDACTED "&api%5Fkey=" REDACTED
                             "&b=2&k%65y=" REDACTED "&x=&refresh_token=" REDACTED
                             "&client_secret=" REDACTED "&sig&&apiKey=" REDACTED "&c=%20ok");
    assert_null(strstr(out, "=S"));
    free(out);
}

static void test_redact_query_odd_input(void **state)
{
    char *out = NULL;
    (void)state;

    assert_int_equal(redact_query(NULL, 0, &out), 0);
    assert_string_equal(out, "");
    free(out);
    /* Only `len` bytes are read; non-printable bytes become '.'. */
    assert_int_equal(redact_query("a=\x01\xff&token=x&b=2", 12, &out), 0);
    assert_string_equal(out, "a=..&token=" REDACTED);
    free(out);
    /* '=' inside a value does not start a new name. */
    assert_int_equal(redact_query("next=a=token=b", 14, &out), 0);
    assert_string_equal(out, "next=a=token=b");
    free(out);
    assert_int_equal(redact_query("token==x", 8, &out), 0);
    assert_string_equal(out, "token=" REDACTED);
    free(out);
}

static bool valid_utf8(const char *s)
{
    json_t *j = json_string(s); /* jansson refuses invalid UTF-8 */
    bool ok = j != NULL;

    json_decref(j);
    return ok;
}

static void expect_preview(const char *in, size_t len, size_t max, const char *want)
{
    char *out = NULL;

    assert_int_equal(redact_preview((const uint8_t *)in, len, max, &out), 0);
    assert_string_equal(out, want);
    assert_true(valid_utf8(out));
    free(out);
}

static void test_redact_preview_text_and_cuts(void **state)
{
    (void)state;
    expect_preview("hello\tworld\r\n", 13, 0, "hello\tworld\r\n");
    expect_preview("hello", 5, 3, "hel");
    expect_preview("", 0, 10, "");
    /* é is two bytes, € three, 😀 four: a cut inside one drops it. */
    expect_preview("a\xc3\xa9", 3, 2, "a");
    expect_preview("a\xe2\x82\xac", 4, 3, "a");
    expect_preview("a\xe2\x82\xac", 4, 4, "a\xe2\x82\xac");
    expect_preview("a\xf0\x9f\x98\x80z", 6, 4, "a");
    expect_preview("a\xf0\x9f\x98\x80z", 6, 5, "a\xf0\x9f\x98\x80");
}

static void test_redact_preview_bad_bytes(void **state)
{
    (void)state;
    /* controls, DEL, stray continuation, overlong, surrogate, past U+10FFFF, bad lead */
    expect_preview("a\x00\x07\x7f"
                   "b",
                   5, 0, "a...b");
    expect_preview("\x80x", 2, 0, ".x");
    expect_preview("\xc0\xafx", 3, 0, "..x");
    expect_preview("\xe0\x80\x80x", 4, 0, "...x");
    expect_preview("\xed\xa0\x80x", 4, 0, "...x");
    expect_preview("\xf4\x90\x80\x80x", 5, 0, "....x");
    expect_preview("\xf8\x88\x80\x80\x80", 5, 0, ".....");
    /* A lead byte followed by a non-continuation is one bad byte, not a cut. */
    expect_preview("\xc3(", 2, 0, ".(");
}

static void test_redact_preview_default_limit(void **state)
{
    size_t n = 10000;
    uint8_t *big = malloc(n);
    char *out = NULL;
    (void)state;

    assert_non_null(big);
    memset(big, 'x', n);
    assert_int_equal(redact_preview(big, n, 0, &out), 0);
    assert_int_equal(strlen(out), REDACT_PREVIEW_DEFAULT);
    free(out);
    free(big);
}

static void test_redact_capture_add_through_body_feed(void **state)
{
    static const char body[] = "5\r\nhello\r\n6\r\n w\xc3\xb6rl\r\n1\r\nd\r\n0\r\n\r\n";
    struct redact_capture c;
    struct http_body b;
    char *out = NULL;
    (void)state;

    /* Piece by piece, as the proxy forwards it. */
    redact_capture_init(&c, 8);
    http_body_init(&b, HTTP_BODY_CHUNKED, -1);
    for (size_t i = 0; i < sizeof(body) - 1; i++)
        assert_int_equal(http_body_feed(&b, (const uint8_t *)body + i, 1, redact_capture_add, &c),
                         1);
    assert_true(b.done);
    assert_int_equal(c.seen, 12);
    assert_int_equal(c.len, 8);
    assert_int_equal(redact_capture_preview(&c, &out), 0);
    /* "hello wö" is 9 bytes: the cut falls inside ö, which is dropped. */
    assert_string_equal(out, "hello w");
    free(out);
    /* 0 means the default, and larger asks are clamped to the buffer. */
    redact_capture_init(&c, 0);
    assert_int_equal(c.max, REDACT_PREVIEW_DEFAULT);
    redact_capture_init(&c, 1u << 20);
    assert_int_equal(c.max, REDACT_PREVIEW_MAX);
    redact_capture_add(&c, NULL, 0);
    assert_int_equal(c.seen, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_redact_headers_json_allowlist),
        cmocka_unit_test(test_redact_headers_json_response),
        cmocka_unit_test(test_redact_headers_json_no_secret_survives),
        cmocka_unit_test(test_redact_name_is_secret_cases),
        cmocka_unit_test(test_redact_headers_json_bad_bytes_and_long_values),
        cmocka_unit_test(test_redact_headers_json_empty),
        cmocka_unit_test(test_redact_query_secret_params),
        cmocka_unit_test(test_redact_query_odd_input),
        cmocka_unit_test(test_redact_preview_text_and_cuts),
        cmocka_unit_test(test_redact_preview_bad_bytes),
        cmocka_unit_test(test_redact_preview_default_limit),
        cmocka_unit_test(test_redact_capture_add_through_body_feed),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
