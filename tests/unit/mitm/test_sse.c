/*
 * unit.mitm.sse: the SSE reader on the spec's cases (event and data fields,
 * several data lines joined with LF, one optional space after the colon,
 * comments, id/retry/unknown fields ignored, a field without a colon, events
 * without data not delivered), CR, LF and CRLF line ends (mixed, and a CRLF
 * split across feeds), every split of a stream giving the same events, an
 * unterminated last event delivered at finish, and an event over the cap
 * dropped whole without losing the next one.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "sse.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct rec {
    char text[8192];
};

static void on_event(void *opaque, const char *event, size_t event_len, const char *data,
                     size_t data_len)
{
    struct rec *r = opaque;
    size_t n = strlen(r->text);
    assert_int_equal(data[data_len], '\0');
    snprintf(r->text + n, sizeof(r->text) - n, "[%.*s|%.*s]", (int)event_len, event, (int)data_len,
             data);
}

static void run(const char *s, size_t len, size_t split, size_t max, struct rec *r)
{
    struct sse_reader rd;
    memset(r, 0, sizeof(*r));
    sse_reader_init(&rd, max, on_event, r);
    if (split == SIZE_MAX) {
        for (size_t i = 0; i < len; i++)
            sse_reader_feed(&rd, (const uint8_t *)s + i, 1);
    } else {
        sse_reader_feed(&rd, (const uint8_t *)s, split);
        sse_reader_feed(&rd, (const uint8_t *)s + split, len - split);
    }
    sse_reader_finish(&rd);
    sse_reader_fini(&rd);
}

/* The events of s, asserting every split and byte-by-byte feeding agree. */
static void expect(const char *s, size_t max, const char *want)
{
    struct rec a, b;
    size_t len = strlen(s);
    run(s, len, len, max, &a);
    assert_string_equal(a.text, want);
    for (size_t i = 0; i <= len; i++) {
        run(s, len, i, max, &b);
        if (strcmp(a.text, b.text) != 0) {
            fprintf(stderr, "split %zu: %s\n", i, b.text);
            fail();
        }
    }
    run(s, len, SIZE_MAX, max, &b);
    assert_string_equal(a.text, b.text);
}

static void test_sse_reader_feed_fields(void **state)
{
    (void)state;
    expect("event: ping\ndata: {}\n\n", 0, "[ping|{}]");
    expect("data:no space\n\n", 0, "[|no space]");
    expect("data:  two spaces\n\n", 0, "[| two spaces]");
    expect("data: a\ndata: b\ndata:\n\n", 0, "[|a\nb\n]");
    expect(": comment\nevent: x\n: another\ndata: 1\n\n", 0, "[x|1]");
    expect("id: 7\nretry: 100\nfoo: bar\ndata: y\n\n", 0, "[|y]");
    expect("data\n\n", 0, "[|]");                          /* field without a colon */
    expect("event: lonely\n\ndata: z\n\n", 0, "[|z]");     /* no data: not delivered */
    expect("event: a\nevent: b\ndata: q\n\n", 0, "[b|q]"); /* last event field wins */
    expect("\n\n\ndata: after blanks\n\n", 0, "[|after blanks]");
    expect("data: ünïcödé\n\n", 0, "[|ünïcödé]");
}

static void test_sse_reader_feed_line_ends(void **state)
{
    (void)state;
    expect("event: a\r\ndata: 1\r\n\r\nevent: b\rdata: 2\r\rdata: 3\n\n", 0, "[a|1][b|2][|3]");
    expect("data: x\r\n\r\ndata: y\r\r", 0, "[|x][|y]");
    /* a CR at the end of one feed and LF at the start of the next are one line end */
    struct rec r;
    struct sse_reader rd;
    memset(&r, 0, sizeof(r));
    sse_reader_init(&rd, 0, on_event, &r);
    sse_reader_feed(&rd, (const uint8_t *)"data: 1\r", 8);
    sse_reader_feed(&rd, (const uint8_t *)"\ndata: 2\r", 9);
    sse_reader_feed(&rd, (const uint8_t *)"\n\r", 2);
    sse_reader_feed(&rd, (const uint8_t *)"\n", 1);
    assert_string_equal(r.text, "[|1\n2]");
    sse_reader_fini(&rd);
}

static void test_sse_reader_finish_unterminated(void **state)
{
    (void)state;
    /* the blank line never came: an observer still gets the event */
    expect("data: {\"a\":1}\n\ndata: last", 0, "[|{\"a\":1}][|last]");
    expect("event: e\ndata: last\n", 0, "[e|last]");
    expect("", 0, "");
}

static void test_sse_reader_feed_oversized(void **state)
{
    (void)state;
    char s[4096];
    int n = snprintf(s, sizeof(s), "data: small\n\nevent: big\ndata: ");
    memset(s + n, 'x', 200);
    n += 200;
    snprintf(s + n, sizeof(s) - (size_t)n, "\ndata: more\n\ndata: after\n\n");
    /* cap 64: the big event is dropped whole, its neighbours arrive */
    expect(s, 64, "[|small][|after]");
    struct rec r;
    struct sse_reader rd;
    memset(&r, 0, sizeof(r));
    sse_reader_init(&rd, 64, on_event, &r);
    sse_reader_feed(&rd, (const uint8_t *)s, strlen(s));
    sse_reader_finish(&rd);
    assert_int_equal(rd.events, 2);
    assert_int_equal(rd.dropped, 1);
    sse_reader_fini(&rd);
    /* many data lines that are small alone but too big together */
    char t[4096];
    size_t tl = 0;
    for (int i = 0; i < 40; i++)
        tl += (size_t)snprintf(t + tl, sizeof(t) - tl, "data: 0123456789\n");
    snprintf(t + tl, sizeof(t) - tl, "\ndata: ok\n\n");
    expect(t, 64, "[|ok]");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sse_reader_feed_fields),
        cmocka_unit_test(test_sse_reader_feed_line_ends),
        cmocka_unit_test(test_sse_reader_finish_unterminated),
        cmocka_unit_test(test_sse_reader_feed_oversized),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
