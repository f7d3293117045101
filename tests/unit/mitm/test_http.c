/*
 * HTTP/1.1 framing tests (mitm/http.h). Every stream is run the way the
 * proxy runs it: bytes accumulate until http_parse_head() answers, the rest
 * goes to http_body_feed(), whatever follows a finished message starts the
 * next one. Each stream is fed in one piece, split in two at every byte
 * boundary, and one byte at a time; the three runs must agree on every
 * message (head fields, reason, body kind, decoded data, bytes used, error,
 * end-of-stream verdict). Each piece is handed over in an exact-size heap
 * copy so the sanitizer build catches reads past it.
 *
 * Bad input: every malformed head is -EBADMSG with the named reason (or
 * -EMSGSIZE for the limits) whatever the split; bad chunk framing is
 * -EBADMSG and stays so; a body cut short is -EPIPE at end of stream.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "http.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_MSGS 4
#define DATA_MAX 8192

struct msg {
    bool present;
    long head;
    const char *why;
    char method[32];
    char target[128];
    int status;
    int minor;
    size_t nheaders;
    int64_t content_length;
    bool chunked, keep_alive, upgrade, expect_continue;
    enum http_body_kind kind;
    size_t body_len; /* raw body bytes used */
    long body_err;   /* from http_body_feed */
    int eof;         /* from http_body_eof at end of stream, 1 when not called */
    bool done;       /* body complete */
    uint8_t data[DATA_MAX];
    size_t data_len;
    bool data_overflow;
};

struct run {
    struct msg m[MAX_MSGS];
    size_t rest; /* bytes of an unfinished head at end of stream */
};

struct sim {
    bool is_request;
    const char *const *methods; /* responses: method of the request each answers, one each */
    struct run *r;
    size_t cur;
    bool in_body, stopped;
    struct http_body b;
    uint8_t *acc;
    size_t acc_len;
};

static void on_data(void *opaque, const uint8_t *p, size_t len)
{
    struct msg *m = opaque;

    if (m->data_len + len > DATA_MAX) {
        m->data_overflow = true;
        return;
    }
    memcpy(m->data + m->data_len, p, len);
    m->data_len += len;
}

static void slice_copy(char *dst, size_t size, struct http_str s)
{
    size_t n = s.len < size - 1 ? s.len : size - 1;

    memcpy(dst, s.p, n);
    dst[n] = '\0';
}

static void finish(struct sim *s)
{
    s->r->m[s->cur].done = true;
    s->in_body = false;
    s->cur++;
    if (s->cur == MAX_MSGS)
        s->stopped = true;
}

static void take(struct sim *s, const uint8_t *q, size_t qn);

static void parse_acc(struct sim *s)
{
    struct msg *m = &s->r->m[s->cur];
    struct http_head *h = malloc(sizeof(*h));
    char *copy = malloc(s->acc_len ? s->acc_len : 1);
    uint8_t *left = NULL;
    size_t nleft;
    long n;

    assert_non_null(h);
    assert_non_null(copy);
    memcpy(copy, s->acc, s->acc_len);
    n = http_parse_head(copy, s->acc_len, s->is_request, h, &m->why);
    if (n == 0)
        goto out;
    m->present = true;
    m->head = n;
    if (n < 0) {
        s->stopped = true;
        goto out;
    }
    assert_null(m->why);
    assert_true((size_t)n <= s->acc_len);
    slice_copy(m->method, sizeof(m->method), h->method);
    slice_copy(m->target, sizeof(m->target), h->target);
    m->status = h->status;
    m->minor = h->minor;
    m->nheaders = h->nheaders;
    m->content_length = h->content_length;
    m->chunked = h->chunked;
    m->keep_alive = h->keep_alive;
    m->upgrade = h->upgrade;
    m->expect_continue = h->expect_continue;
    m->eof = 1;
    {
        const char *meth = !s->is_request && s->methods ? s->methods[s->cur] : NULL;

        m->kind = http_body_kind(h, (struct http_str){meth, meth ? strlen(meth) : 0});
    }
    http_body_init(&s->b, m->kind, h->content_length);
    s->in_body = true;
    nleft = s->acc_len - (size_t)n;
    left = malloc(nleft ? nleft : 1);
    assert_non_null(left);
    memcpy(left, s->acc + n, nleft);
    s->acc_len = 0;
    if (s->b.done)
        finish(s);
    take(s, left, nleft);
out:
    free(left);
    free(copy);
    free(h);
}

static void take(struct sim *s, const uint8_t *q, size_t qn)
{
    while (qn > 0 && !s->stopped) {
        if (s->in_body) {
            struct msg *m = &s->r->m[s->cur];
            long c = http_body_feed(&s->b, q, qn, on_data, m);

            if (c < 0) {
                m->body_err = c;
                /* An error sticks. */
                assert_int_equal(http_body_feed(&s->b, q, qn, on_data, m), c);
                s->stopped = true;
                return;
            }
            assert_true((size_t)c <= qn);
            m->body_len += (size_t)c;
            q += c;
            qn -= (size_t)c;
            if (s->b.done)
                finish(s);
            else
                assert_int_equal(qn, 0);
            continue;
        }
        memcpy(s->acc + s->acc_len, q, qn);
        s->acc_len += qn;
        qn = 0;
        parse_acc(s);
    }
}

/* Run `in` cut at the sorted positions cuts[0..ncuts). */
static void run_cuts(const char *in, size_t n, const size_t *cuts, size_t ncuts, bool is_request,
                     const char *const *methods, struct run *r)
{
    struct sim s = {.is_request = is_request, .methods = methods, .r = r};
    size_t start = 0;

    memset(r, 0, sizeof(*r));
    s.acc = malloc(n ? n : 1);
    assert_non_null(s.acc);
    for (size_t i = 0; i <= ncuts; i++) {
        size_t end = i < ncuts ? cuts[i] : n;
        uint8_t *piece = malloc(end > start ? end - start : 1);

        assert_non_null(piece);
        memcpy(piece, in + start, end - start);
        take(&s, piece, end - start);
        free(piece);
        start = end;
    }
    if (!s.stopped && s.in_body) {
        struct msg *m = &r->m[s.cur];

        m->eof = http_body_eof(&s.b);
        if (s.b.done)
            finish(&s);
    }
    if (!s.stopped && !s.in_body)
        r->rest = s.acc_len;
    free(s.acc);
}

static void assert_same(const struct run *a, const struct run *b, size_t cut)
{
    for (size_t i = 0; i < MAX_MSGS; i++) {
        const struct msg *x = &a->m[i], *y = &b->m[i];

        if (x->present != y->present || x->head != y->head || x->why != y->why)
            fail_msg("cut %zu msg %zu: head %ld (%s) vs %ld (%s)", cut, i, x->head,
                     x->why ? x->why : "-", y->head, y->why ? y->why : "-");
        assert_string_equal(x->method, y->method);
        assert_string_equal(x->target, y->target);
        assert_int_equal(x->status, y->status);
        assert_int_equal(x->minor, y->minor);
        assert_int_equal(x->nheaders, y->nheaders);
        assert_int_equal(x->content_length, y->content_length);
        assert_int_equal(x->chunked, y->chunked);
        assert_int_equal(x->keep_alive, y->keep_alive);
        assert_int_equal(x->upgrade, y->upgrade);
        assert_int_equal(x->expect_continue, y->expect_continue);
        assert_int_equal(x->kind, y->kind);
        /* After an error, how many bytes earlier pieces used depends on the cuts. */
        if ((x->body_len != y->body_len && !x->body_err) || x->body_err != y->body_err ||
            x->done != y->done)
            fail_msg("cut %zu msg %zu: body %zu/%ld/%d vs %zu/%ld/%d", cut, i, x->body_len,
                     x->body_err, x->done, y->body_len, y->body_err, y->done);
        assert_int_equal(x->eof, y->eof);
        assert_false(x->data_overflow);
        assert_int_equal(x->data_len, y->data_len);
        assert_memory_equal(x->data, y->data, x->data_len);
    }
    assert_int_equal(a->rest, b->rest);
}

/* Run whole, split at every byte, and byte by byte; all must agree. *r gets the whole run. */
static void run_all(const char *in, size_t n, bool is_request, const char *const *methods,
                    struct run *r)
{
    struct run *alt = malloc(sizeof(*alt));
    size_t *cuts = malloc((n ? n : 1) * sizeof(*cuts));

    assert_non_null(alt);
    assert_non_null(cuts);
    run_cuts(in, n, NULL, 0, is_request, methods, r);
    for (size_t k = 1; k < n; k++) {
        run_cuts(in, n, &k, 1, is_request, methods, alt);
        assert_same(r, alt, k);
    }
    for (size_t k = 1; k < n; k++)
        cuts[k - 1] = k;
    run_cuts(in, n, cuts, n ? n - 1 : 0, is_request, methods, alt);
    assert_same(r, alt, 0);
    free(cuts);
    free(alt);
}

static struct run *run_str(const char *in, bool is_request, const char *const *methods)
{
    struct run *r = malloc(sizeof(*r));

    assert_non_null(r);
    run_all(in, strlen(in), is_request, methods, r);
    return r;
}

static void assert_data(const struct msg *m, const char *want)
{
    assert_int_equal(m->data_len, strlen(want));
    assert_memory_equal(m->data, want, m->data_len);
}

/* A head that must fail with `err` and `why`, whatever the split. */
static void expect_head_error(const char *in, bool is_request, long err, const char *why)
{
    struct run *r = run_str(in, is_request, NULL);

    if (!r->m[0].present || r->m[0].head != err || !r->m[0].why || strcmp(r->m[0].why, why) != 0)
        fail_msg("%s: got %ld (%s), want %ld (%s)", in, r->m[0].head,
                 r->m[0].why ? r->m[0].why : "-", err, why);
    free(r);
}

static void expect_bad_request(const char *in, const char *why)
{
    expect_head_error(in, true, -EBADMSG, why);
}

static void expect_bad_response(const char *in, const char *why)
{
    expect_head_error(in, false, -EBADMSG, why);
}

/* ---- requests ---- */

static void test_http_parse_head_get_without_body(void **state)
{
    struct run *r = run_str("GET /index.html?q=1 HTTP/1.1\r\nHost: example.com\r\n"
                            "User-Agent:  curl/8 \t\r\nAccept: */*\r\n\r\n",
                            true, NULL);
    (void)state;

    assert_int_equal(r->m[0].head, 87);
    assert_string_equal(r->m[0].method, "GET");
    assert_string_equal(r->m[0].target, "/index.html?q=1");
    assert_int_equal(r->m[0].minor, 1);
    assert_int_equal(r->m[0].nheaders, 3);
    assert_int_equal(r->m[0].content_length, -1);
    assert_int_equal(r->m[0].kind, HTTP_BODY_NONE);
    assert_true(r->m[0].keep_alive);
    assert_true(r->m[0].done);
    assert_false(r->m[1].present);
    assert_int_equal(r->rest, 0);
    free(r);
}

static void test_http_parse_head_slices_and_lookup(void **state)
{
    const char *in = "POST /v1/messages HTTP/1.1\r\nHost: api.test\r\n"
                     "X-Empty:\r\nContent-Type:   application/json  \r\n\r\n";
    struct http_head h;
    const struct http_header *ct, *e;
    const char *why = "unset";
    (void)state;

    assert_int_equal(http_parse_head(in, strlen(in), true, &h, &why), (long)strlen(in));
    assert_null(why);
    assert_true(h.is_request);
    assert_true(http_str_eq(h.method, "post"));
    ct = http_find_header(&h, "CONTENT-type");
    assert_non_null(ct);
    assert_true(ct->value.len == 16 && memcmp(ct->value.p, "application/json", 16) == 0);
    e = http_find_header(&h, "x-empty");
    assert_non_null(e);
    assert_int_equal(e->value.len, 0);
    assert_null(http_find_header(&h, "content-length"));
    assert_false(http_str_eq(h.method, "POS"));
    assert_false(http_str_eq(h.method, "POSTS"));
    /* Slices point into the caller's buffer. */
    assert_ptr_equal(h.target.p, in + 5);
}

static void test_http_parse_head_incomplete_is_zero(void **state)
{
    const char *in = "GET / HTTP/1.1\r\nHost: a\r\n\r";
    struct http_head h;
    const char *why = "unset";
    (void)state;

    assert_int_equal(http_parse_head(in, strlen(in), true, &h, &why), 0);
    assert_null(why);
    assert_int_equal(http_parse_head(in, 0, true, &h, NULL), 0);
    assert_int_equal(http_parse_head(NULL, 0, false, &h, &why), 0);
}

static void test_http_body_content_length_and_pipelining(void **state)
{
    struct run *r = run_str("POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhello world"
                            "GET /b HTTP/1.1\r\nHost: a\r\n\r\n"
                            "PUT /c HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n"
                            "DELETE /d HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nxy",
                            true, NULL);
    (void)state;

    assert_int_equal(r->m[0].kind, HTTP_BODY_LENGTH);
    assert_int_equal(r->m[0].content_length, 11);
    assert_int_equal(r->m[0].body_len, 11);
    assert_data(&r->m[0], "hello world");
    assert_true(r->m[0].done);
    assert_string_equal(r->m[1].target, "/b");
    assert_int_equal(r->m[1].kind, HTTP_BODY_NONE);
    assert_true(r->m[1].done);
    assert_int_equal(r->m[2].kind, HTTP_BODY_LENGTH);
    assert_int_equal(r->m[2].body_len, 0);
    assert_true(r->m[2].done);
    /* The last body is one byte short: truncated at end of stream. */
    assert_string_equal(r->m[3].method, "DELETE");
    assert_false(r->m[3].done);
    assert_int_equal(r->m[3].eof, -EPIPE);
    assert_data(&r->m[3], "xy");
    free(r);
}

static void test_http_body_chunked_extensions_and_trailers(void **state)
{
    struct run *r =
        run_str("POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n"
                "4;name=val;q=\"x y\"\r\nWiki\r\n"
                "5 \t;ext\r\npedia\r\n"
                "00E\r\n in\r\n\r\nchunks.\r\n"
                "0;last\r\nExpires: never\r\nX-Sum:1\r\n\r\n"
                "GET /next HTTP/1.1\r\nHost: a\r\n\r\n",
                true, NULL);
    (void)state;

    assert_true(r->m[0].chunked);
    assert_int_equal(r->m[0].kind, HTTP_BODY_CHUNKED);
    assert_data(&r->m[0], "Wikipedia in\r\n\r\nchunks.");
    assert_true(r->m[0].done);
    assert_int_equal(r->m[0].body_len, 98);
    assert_string_equal(r->m[1].target, "/next");
    assert_true(r->m[1].done);
    free(r);
}

static void test_http_body_chunked_without_trailers(void **state)
{
    struct run *r = run_str(
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n", true,
        NULL);
    (void)state;

    assert_data(&r->m[0], "x");
    assert_true(r->m[0].done);
    assert_int_equal(r->m[0].body_len, 11);
    free(r);
}

static void test_http_parse_head_expect_continue(void **state)
{
    struct run *r =
        run_str("PUT /f HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 2\r\n\r\nhi",
                true, NULL);
    (void)state;

    assert_true(r->m[0].expect_continue);
    assert_data(&r->m[0], "hi");
    free(r);
    /* HTTP/1.0 expectations are ignored (RFC 9110 10.1.1); other values are not 100-continue. */
    r = run_str("PUT /f HTTP/1.0\r\nExpect: 100-continue\r\n\r\n", true, NULL);
    assert_false(r->m[0].expect_continue);
    free(r);
    r = run_str("PUT /f HTTP/1.1\r\nHost: a\r\nExpect: something\r\n\r\n", true, NULL);
    assert_false(r->m[0].expect_continue);
    free(r);
}

static void test_http_parse_head_target_forms(void **state)
{
    struct run *r;
    (void)state;

    r = run_str("GET http://example.com:8080/a?b=1 HTTP/1.1\r\nHost: example.com:8080\r\n\r\n",
                true, NULL);
    assert_int_equal(r->m[0].head, 70);
    assert_string_equal(r->m[0].target, "http://example.com:8080/a?b=1");
    free(r);
    r = run_str("CONNECT api.test:443 HTTP/1.1\r\nHost: api.test:443\r\n\r\n", true, NULL);
    assert_string_equal(r->m[0].target, "api.test:443");
    assert_int_equal(r->m[0].kind, HTTP_BODY_NONE);
    free(r);
    r = run_str("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", true, NULL);
    assert_string_equal(r->m[0].target, "*");
    free(r);
    expect_bad_request("GET example.com/ HTTP/1.1\r\nHost: a\r\n\r\n", "bad request target");
    expect_bad_request("GET * HTTP/1.1\r\nHost: a\r\n\r\n", "bad request target");
    expect_bad_request("GET http:/x HTTP/1.1\r\nHost: a\r\n\r\n", "bad request target");
    expect_bad_request("CONNECT /x:1 HTTP/1.1\r\nHost: a\r\n\r\n", "bad request target");
    expect_bad_request("CONNECT a.test HTTP/1.1\r\nHost: a\r\n\r\n", "bad request target");
    expect_bad_request("CONNECT a.test:1/x HTTP/1.1\r\nHost: a\r\n\r\n", "bad request target");
    expect_bad_request("GET /a\x80 HTTP/1.1\r\nHost: a\r\n\r\n", "bad request target");
    expect_bad_request("GET /a\tb HTTP/1.1\r\nHost: a\r\n\r\n", "bad request target");
}

static void test_http_parse_head_upgrade(void **state)
{
    static const char *const get[] = {"GET"};
    struct run *r;
    (void)state;

    r = run_str("GET /ws HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\n"
                "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\r\n",
                true, NULL);
    assert_true(r->m[0].upgrade);
    assert_true(r->m[0].keep_alive);
    free(r);
    r = run_str(
        "HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n"
        "\x81\x02hi",
        false, get);
    assert_true(r->m[0].upgrade);
    assert_int_equal(r->m[0].kind, HTTP_BODY_NONE);
    assert_true(r->m[0].done);
    /* What follows the 101 is not HTTP; the caller relays it, here it is a failed next head. */
    assert_int_equal(r->m[1].head, -EBADMSG);
    free(r);
    /* Both the Connection token and the Upgrade header are needed. */
    r = run_str("GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\n\r\n", true, NULL);
    assert_false(r->m[0].upgrade);
    free(r);
    r = run_str("GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n", true, NULL);
    assert_false(r->m[0].upgrade);
    free(r);
}

/* ---- keep-alive ---- */

static void test_http_parse_head_keep_alive_rules(void **state)
{
    static const struct {
        const char *in;
        bool keep_alive;
    } cases[] = {
        {"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", true},
        {"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", false},
        {"HTTP/1.1 200 OK\r\nConnection: Keep-Alive, CLOSE\r\nContent-Length: 0\r\n\r\n", false},
        {"HTTP/1.1 200 OK\r\nConnection: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
         false},
        {"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", false},
        {"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n", true},
        {"HTTP/1.0 200 OK\r\nConnection: KEEP-ALIVE\r\nContent-Length: 0\r\n\r\n", true},
        {"HTTP/1.0 200 OK\r\nConnection: keep-alive, close\r\nContent-Length: 0\r\n\r\n", false},
        /* HTTP/1.0 with Transfer-Encoding: suspect framing, never reused. */
        {"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n"
         "0\r\n\r\n",
         false},
    };
    (void)state;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct run *r = run_str(cases[i].in, false, NULL);

        if (r->m[0].head <= 0 || r->m[0].keep_alive != cases[i].keep_alive)
            fail_msg("case %zu: head %ld keep_alive %d", i, r->m[0].head, r->m[0].keep_alive);
        assert_true(r->m[0].done);
        free(r);
    }
    /* Requests follow the same rules. */
    {
        struct run *r = run_str("GET / HTTP/1.0\r\n\r\nGET / HTTP/1.0\r\nConnection: keep-alive\r\n"
                                "\r\nGET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
                                true, NULL);

        assert_false(r->m[0].keep_alive);
        assert_int_equal(r->m[0].minor, 0);
        assert_true(r->m[1].keep_alive);
        assert_false(r->m[2].keep_alive);
        free(r);
    }
}

/* ---- responses ---- */

static void test_http_body_kind_head_response(void **state)
{
    static const char *const meth[] = {"HEAD", "GET"};
    struct run *r = run_str("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"
                            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc",
                            false, meth);
    (void)state;

    assert_int_equal(r->m[0].kind, HTTP_BODY_NONE);
    assert_int_equal(r->m[0].content_length, 100);
    assert_true(r->m[0].done);
    assert_int_equal(r->m[1].kind, HTTP_BODY_LENGTH);
    assert_data(&r->m[1], "abc");
    assert_true(r->m[1].done);
    free(r);
}

static void test_http_body_kind_1xx_then_final(void **state)
{
    static const char *const meth[] = {"POST", "POST", "POST"};
    struct run *r = run_str("HTTP/1.1 100 Continue\r\n\r\n"
                            "HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n"
                            "HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok",
                            false, meth);
    (void)state;

    assert_int_equal(r->m[0].status, 100);
    assert_int_equal(r->m[0].kind, HTTP_BODY_NONE);
    assert_int_equal(r->m[1].status, 103);
    assert_int_equal(r->m[1].kind, HTTP_BODY_NONE);
    assert_int_equal(r->m[2].status, 201);
    assert_data(&r->m[2], "ok");
    free(r);
}

static void test_http_body_kind_204_304(void **state)
{
    static const char *const meth[] = {"GET", "GET", "GET"};
    struct run *r = run_str("HTTP/1.1 204 No Content\r\n\r\n"
                            "HTTP/1.1 304 Not Modified\r\nContent-Length: 50\r\nETag: \"x\"\r\n\r\n"
                            "HTTP/1.1 200\r\nContent-Length: 1\r\n\r\n!",
                            false, meth);
    (void)state;

    assert_int_equal(r->m[0].kind, HTTP_BODY_NONE);
    assert_int_equal(r->m[1].kind, HTTP_BODY_NONE);
    assert_int_equal(r->m[1].content_length, 50);
    /* A status line without a reason phrase is accepted. */
    assert_int_equal(r->m[2].status, 200);
    assert_data(&r->m[2], "!");
    free(r);
}

static void test_http_body_kind_connect_2xx(void **state)
{
    static const char *const meth[] = {"CONNECT"};
    struct run *r = run_str("HTTP/1.1 200 Connection Established\r\n\r\n", false, meth);
    (void)state;

    assert_int_equal(r->m[0].kind, HTTP_BODY_NONE);
    free(r);
    r = run_str("HTTP/1.1 407 Auth\r\nContent-Length: 1\r\n\r\nx", false, meth);
    assert_int_equal(r->m[0].kind, HTTP_BODY_LENGTH);
    free(r);
}

static void test_http_body_close_delimited(void **state)
{
    static const char *const meth[] = {"GET"};
    struct run *r = run_str("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n"
                            "until the end HTTP/1.1 200 OK\r\n\r\n",
                            false, meth);
    (void)state;

    assert_int_equal(r->m[0].kind, HTTP_BODY_CLOSE);
    assert_data(&r->m[0], "until the end HTTP/1.1 200 OK\r\n\r\n");
    assert_int_equal(r->m[0].eof, 0);
    assert_true(r->m[0].done);
    free(r);
    /* Transfer-Encoding not ending in chunked on a response: read until close. */
    r = run_str("HTTP/1.0 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nzz", false, meth);
    assert_int_equal(r->m[0].kind, HTTP_BODY_CLOSE);
    assert_false(r->m[0].chunked);
    assert_data(&r->m[0], "zz");
    free(r);
}

static void test_http_body_chunked_response(void **state)
{
    static const char *const meth[] = {"GET", "GET"};
    struct run *r = run_str("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                            "7\r\ndata: 1\r\n7\r\ndata: 2\r\n0\r\n\r\n"
                            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nz",
                            false, meth);
    (void)state;

    assert_data(&r->m[0], "data: 1data: 2");
    assert_true(r->m[0].done);
    assert_data(&r->m[1], "z");
    free(r);
}

static void test_http_parse_head_content_length_lists(void **state)
{
    struct run *r;
    (void)state;

    r = run_str(
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\nContent-Length: 3\r\n\r\nabc", true,
        NULL);
    assert_int_equal(r->m[0].content_length, 3);
    assert_data(&r->m[0], "abc");
    free(r);
    r = run_str("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 000\r\n\r\n", true, NULL);
    assert_int_equal(r->m[0].content_length, 0);
    assert_true(r->m[0].done);
    free(r);
}

/* ---- limits ---- */

/* A request head of exactly `size` bytes: one padded header. */
static char *head_of_size(size_t size, size_t *len)
{
    const char *start = "GET / HTTP/1.1\r\nHost: a\r\nX-Pad: ";
    size_t s = strlen(start);
    char *p = malloc(size);

    assert_non_null(p);
    assert_true(size > s + 4);
    memcpy(p, start, s);
    memset(p + s, 'p', size - s - 4);
    memcpy(p + size - 4, "\r\n\r\n", 4);
    *len = size;
    return p;
}

static void test_http_parse_head_size_limit(void **state)
{
    struct http_head *h = malloc(sizeof(*h));
    const char *why;
    size_t n;
    char *p;
    (void)state;

    assert_non_null(h);
    p = head_of_size(HTTP_MAX_HEAD, &n);
    assert_int_equal(http_parse_head(p, n, true, h, &why), HTTP_MAX_HEAD);
    /* Any prefix is just "more, please". */
    assert_int_equal(http_parse_head(p, n - 1, true, h, &why), 0);
    free(p);

    p = head_of_size(HTTP_MAX_HEAD + 1, &n);
    assert_int_equal(http_parse_head(p, n, true, h, &why), -EMSGSIZE);
    assert_string_equal(why, "head too large");
    /* Exactly the limit without the end of the head cannot become a head. */
    assert_int_equal(http_parse_head(p, HTTP_MAX_HEAD, true, h, &why), -EMSGSIZE);
    assert_int_equal(http_parse_head(p, HTTP_MAX_HEAD - 1, true, h, &why), 0);
    free(p);
    free(h);
}

static char *head_with_headers(size_t count)
{
    size_t cap = 64 + count * 16, off = 0;
    char *p = malloc(cap);

    assert_non_null(p);
    off += (size_t)snprintf(p + off, cap - off, "GET / HTTP/1.1\r\nHost: a\r\n");
    for (size_t i = 1; i < count; i++)
        off += (size_t)snprintf(p + off, cap - off, "X-%zu: v\r\n", i);
    snprintf(p + off, cap - off, "\r\n");
    return p;
}

static void test_http_parse_head_header_count_limit(void **state)
{
    char *p = head_with_headers(HTTP_MAX_HEADERS);
    struct run *r;
    (void)state;

    r = run_str(p, true, NULL);
    assert_true(r->m[0].head > 0);
    assert_int_equal(r->m[0].nheaders, HTTP_MAX_HEADERS);
    free(r);
    free(p);
    p = head_with_headers(HTTP_MAX_HEADERS + 1);
    r = run_str(p, true, NULL);
    assert_int_equal(r->m[0].head, -EMSGSIZE);
    assert_string_equal(r->m[0].why, "too many headers");
    free(r);
    free(p);
}

static long feed_str(struct http_body *b, const char *s)
{
    return http_body_feed(b, (const uint8_t *)s, strlen(s), NULL, NULL);
}

static void test_http_body_feed_chunk_size_limit(void **state)
{
    struct http_body b;
    (void)state;

    /* 2^40 exactly is allowed. */
    http_body_init(&b, HTTP_BODY_CHUNKED, -1);
    assert_int_equal(feed_str(&b, "10000000000\r\nab"), 15);
    assert_int_equal(b.remaining, (1ull << 40) - 2);
    assert_int_equal(b.total, 2);
    assert_int_equal(http_body_eof(&b), -EPIPE);
    /* One more is not. */
    http_body_init(&b, HTTP_BODY_CHUNKED, -1);
    assert_int_equal(feed_str(&b, "10000000001\r\n"), -EBADMSG);
    /* Nor is a size that would wrap 64 bits. */
    http_body_init(&b, HTTP_BODY_CHUNKED, -1);
    assert_int_equal(feed_str(&b, "1000000000000000000000001\r\n"), -EBADMSG);
    /* Leading zeros do not count toward the size. */
    http_body_init(&b, HTTP_BODY_CHUNKED, -1);
    assert_int_equal(feed_str(&b, "00000000000000000000001\r\nx\r\n0\r\n\r\n"), 33);
    assert_true(b.done);
}

/* A chunk-size line of exactly `n` bytes before its CRLF. */
static char *chunk_line(size_t n)
{
    char *p = malloc(n + 64);

    assert_non_null(p);
    memcpy(p, "1;e=", 4);
    memset(p + 4, 'x', n - 4);
    memcpy(p + n, "\r\nZ\r\n0\r\n\r\n", 11);
    return p;
}

static void test_http_body_feed_chunk_line_limit(void **state)
{
    struct http_body b;
    char *p;
    (void)state;

    p = chunk_line(8192);
    http_body_init(&b, HTTP_BODY_CHUNKED, -1);
    assert_int_equal(feed_str(&b, p), 8192 + 10);
    assert_true(b.done);
    free(p);
    p = chunk_line(8193);
    http_body_init(&b, HTTP_BODY_CHUNKED, -1);
    assert_int_equal(feed_str(&b, p), -EBADMSG);
    free(p);
}

static void test_http_body_feed_trailer_limits(void **state)
{
    struct http_body b;
    size_t cap = 80000;
    char *p = malloc(cap);
    size_t off;
    (void)state;

    assert_non_null(p);
    /* One trailer line of 8192 bytes is fine, 8193 is not. */
    for (size_t n = 8192; n <= 8193; n++) {
        memcpy(p, "0\r\nT:", 5);
        memset(p + 5, 'v', n - 2);
        memcpy(p + 3 + n, "\r\n\r\n", 5);
        http_body_init(&b, HTTP_BODY_CHUNKED, -1);
        assert_int_equal(feed_str(&b, p), n == 8192 ? (long)(3 + n + 4) : -EBADMSG);
    }
    /* Trailers of more than 64 KiB in all. */
    off = 0;
    memcpy(p, "0\r\n", 3);
    off = 3;
    for (int i = 0; i < 9; i++) {
        memcpy(p + off, "T:", 2);
        memset(p + off + 2, 'v', 7998);
        memcpy(p + off + 8000, "\r\n", 2);
        off += 8002;
    }
    memcpy(p + off, "\r\n", 3);
    http_body_init(&b, HTTP_BODY_CHUNKED, -1);
    assert_int_equal(feed_str(&b, p), -EBADMSG);
    /* Eight such lines (64016 bytes) are within the limit. */
    memcpy(p + 3 + 8 * 8002, "\r\n", 3);
    http_body_init(&b, HTTP_BODY_CHUNKED, -1);
    assert_int_equal(feed_str(&b, p), 3 + 8 * 8002 + 2);
    free(p);
}

/* ---- malformed heads: one case per reason ---- */

static void test_http_parse_head_bad_request_line(void **state)
{
    (void)state;
    expect_bad_request("GET /\r\n\r\n", "bad request line");                      /* HTTP/0.9 */
    expect_bad_request("GET  / HTTP/1.1\r\nHost: a\r\n\r\n", "bad request line"); /* two spaces */
    expect_bad_request("GET / HTTP/1.1 \r\nHost: a\r\n\r\n", "bad request line");
    expect_bad_request("GET / HTTP/1.x\r\nHost: a\r\n\r\n", "bad request line");
    expect_bad_request("GET / http/1.1\r\nHost: a\r\n\r\n", "bad request line");
    expect_bad_request("GET\r\n\r\n", "bad request line");
    expect_bad_request("\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", "bad request line");
}

static void test_http_parse_head_bad_method(void **state)
{
    (void)state;
    expect_bad_request("G(T / HTTP/1.1\r\nHost: a\r\n\r\n", "bad method");
    expect_bad_request(" GET / HTTP/1.1\r\nHost: a\r\n\r\n", "bad method");
    /* A TLS ClientHello on the plain port fails at its first byte. */
    expect_bad_request("\x16\x03\x01\x02", "bad method");
}

static void test_http_parse_head_unsupported_version(void **state)
{
    (void)state;
    expect_bad_request("GET / HTTP/1.2\r\nHost: a\r\n\r\n", "unsupported version");
    expect_bad_request("GET / HTTP/2.0\r\nHost: a\r\n\r\n", "unsupported version");
    expect_bad_response("HTTP/0.9 200 OK\r\n\r\n", "unsupported version");
}

static void test_http_parse_head_bad_status_line(void **state)
{
    (void)state;
    expect_bad_response("ICY 200 OK\r\n\r\n", "bad status line");
    expect_bad_response("HTTP/1.1 2000 OK\r\n\r\n", "bad status line");
    expect_bad_response("HTTP/1.1 20 OK\r\n\r\n", "bad status line");
    expect_bad_response("HTTP/1.1 200OK\r\n\r\n", "bad status line");
    expect_bad_response("HTTP/1.1  200 OK\r\n\r\n", "bad status line");
    expect_bad_response("HTTP/1.x 200 OK\r\n\r\n", "bad status line");
    expect_bad_response("\r\n\r\n", "bad status line");
    expect_bad_response("HTTP/1.1 099 Low\r\n\r\n", "bad status code");
    expect_bad_response("HTTP/1.1 600 High\r\n\r\n", "bad status code");
}

static void test_http_parse_head_bare_cr(void **state)
{
    (void)state;
    expect_bad_request("GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n", "bare CR");
    expect_bad_request("GET /\r HTTP/1.1\r\nHost: a\r\n\r\n", "bare CR");
    expect_bad_response("HTTP/1.1 200 O\rK\r\n\r\n", "bare CR");
    expect_bad_request("GET / HTTP/1.1\r\nHost: a\r\n\r\r\n", "bare CR");
}

static void test_http_parse_head_bare_lf(void **state)
{
    (void)state;
    expect_bad_request("GET / HTTP/1.1\nHost: a\n\n", "bare LF");
    expect_bad_request("GET / HTTP/1.1\r\nHost: a\n\r\n", "bare LF");
    expect_bad_request("GET / HTTP/1.1\r\nHost: a\r\n\n", "bare LF");
    expect_bad_response("HTTP/1.1 200 OK\n\n", "bare LF");
}

static void test_http_parse_head_control_character(void **state)
{
    (void)state;
    expect_bad_request("GET / HTTP/1.1\r\nHost: a\r\nX: a\x01"
                       "b\r\n\r\n",
                       "control character");
    expect_bad_request("GET / HTTP/1.1\r\nHost: a\r\nX: a\x7f\r\n\r\n", "control character");
    {
        static const char in[] = "GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n";
        struct run *r = malloc(sizeof(*r));

        assert_non_null(r);
        run_all(in, sizeof(in) - 1, true, NULL, r);
        assert_int_equal(r->m[0].head, -EBADMSG);
        assert_string_equal(r->m[0].why, "control character");
        free(r);
    }
    /* Tabs and obs-text are field content. */
    {
        struct run *r = run_str("GET / HTTP/1.1\r\nHost: a\r\nX: \ta\xe9\tb\r\n\r\n", true, NULL);

        assert_true(r->m[0].head > 0);
        free(r);
    }
}

static void test_http_parse_head_header_without_colon(void **state)
{
    (void)state;
    expect_bad_request("GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n", "header without colon");
    expect_bad_request("GET / HTTP/1.1\r\nHost a\r\n\r\n", "header without colon");
}

static void test_http_parse_head_whitespace_before_colon(void **state)
{
    (void)state;
    expect_bad_request("GET / HTTP/1.1\r\nHost : a\r\n\r\n", "whitespace before colon");
    expect_bad_response("HTTP/1.1 200 OK\r\nContent-Length\t: 0\r\n\r\n",
                        "whitespace before colon");
}

static void test_http_parse_head_obs_fold(void **state)
{
    (void)state;
    expect_bad_request("GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n  b\r\n\r\n", "obs-fold");
    expect_bad_response("HTTP/1.1 200 OK\r\nX: a\r\n\tb\r\n\r\n", "obs-fold");
}

static void test_http_parse_head_bad_header_name(void **state)
{
    (void)state;
    expect_bad_request("GET / HTTP/1.1\r\nHost: a\r\nX@Y: z\r\n\r\n", "bad header name");
    expect_bad_request("GET / HTTP/1.1\r\nHo\"st: a\r\n\r\n", "bad header name");
    expect_bad_request("GET / HTTP/1.1\r\nHost: a\r\nX\xc3\xa9: z\r\n\r\n", "bad header name");
    expect_bad_request("GET / HTTP/1.1\r\nHost: a\r\n: z\r\n\r\n", "empty header name");
}

static void test_http_parse_head_invalid_content_length(void **state)
{
    (void)state;
    expect_bad_request("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: abc\r\n\r\n",
                       "invalid Content-Length");
    expect_bad_request("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n",
                       "invalid Content-Length");
    expect_bad_request("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n",
                       "invalid Content-Length");
    expect_bad_request("POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n",
                       "invalid Content-Length");
    expect_bad_request("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1 2\r\n\r\n",
                       "invalid Content-Length");
    expect_bad_request("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1234567890123456789\r\n\r\n",
                       "invalid Content-Length");
    expect_bad_response("HTTP/1.1 200 OK\r\nContent-Length: 0x10\r\n\r\n",
                        "invalid Content-Length");
}

static void test_http_parse_head_conflicting_content_length(void **state)
{
    (void)state;
    expect_bad_request(
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
        "conflicting Content-Length");
    expect_bad_request("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\n",
                       "conflicting Content-Length");
    expect_bad_response("HTTP/1.1 200 OK\r\nContent-Length: 1\r\ncontent-length: 2\r\n\r\n",
                        "conflicting Content-Length");
}

static void test_http_parse_head_transfer_encoding_errors(void **state)
{
    (void)state;
    expect_bad_request("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n",
                       "Transfer-Encoding not ending in chunked");
    expect_bad_request("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
                       "Transfer-Encoding not ending in chunked");
    expect_bad_request("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: "
                       "chunked\r\nTransfer-Encoding: gzip\r\n\r\n",
                       "Transfer-Encoding not ending in chunked");
    expect_bad_request("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
                       "invalid Transfer-Encoding");
    expect_bad_request("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked;x=1\r\n\r\n",
                       "invalid Transfer-Encoding");
    expect_bad_request("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: , \r\n\r\n",
                       "invalid Transfer-Encoding");
    expect_bad_response("HTTP/1.1 200 OK\r\nTransfer-Encoding: ch@nked\r\n\r\n",
                        "invalid Transfer-Encoding");
    expect_bad_request(
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
        "both Transfer-Encoding and Content-Length");
    expect_bad_response(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
        "both Transfer-Encoding and Content-Length");
}

static void test_http_parse_head_host_rules(void **state)
{
    struct run *r;
    (void)state;

    expect_bad_request("GET / HTTP/1.1\r\n\r\n", "missing Host");
    expect_bad_request("GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n", "multiple Host headers");
    expect_bad_request("GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n", "multiple Host headers");
    /* HTTP/1.0 may omit it; responses never need it. */
    r = run_str("GET / HTTP/1.0\r\n\r\n", true, NULL);
    assert_true(r->m[0].head > 0);
    free(r);
}

/* ---- malformed chunked bodies ---- */

static void expect_bad_chunked(const char *body)
{
    char in[512];
    struct run *r;
    int n = snprintf(in, sizeof(in),
                     "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n%s", body);

    assert_true(n > 0 && (size_t)n < sizeof(in));
    r = run_str(in, true, NULL);
    if (r->m[0].body_err != -EBADMSG)
        fail_msg("%s: body_err %ld", body, r->m[0].body_err);
    assert_false(r->m[0].done);
    free(r);
}

static void test_http_body_feed_bad_chunk_size(void **state)
{
    (void)state;
    expect_bad_chunked("xyz\r\n");
    expect_bad_chunked("-1\r\n");
    expect_bad_chunked("\r\n");
    expect_bad_chunked(" 4\r\nWiki\r\n0\r\n\r\n");
    expect_bad_chunked("4x\r\nWiki\r\n0\r\n\r\n");
    expect_bad_chunked("4 x\r\nWiki\r\n0\r\n\r\n");
    expect_bad_chunked("4;a\x01\r\nWiki\r\n0\r\n\r\n"); /* control in an extension */
}

static void test_http_body_feed_missing_crlf(void **state)
{
    (void)state;
    expect_bad_chunked("4\nWiki\r\n0\r\n\r\n");    /* bare LF after the size */
    expect_bad_chunked("4\rWiki\r\n0\r\n\r\n");    /* CR not followed by LF */
    expect_bad_chunked("4\r\nWikiX\r\n0\r\n\r\n"); /* data longer than the size */
    expect_bad_chunked("4\r\nWiki\n0\r\n\r\n");    /* bare LF after the data */
    expect_bad_chunked("4\r\nWiki\rX0\r\n\r\n");   /* CR then not LF after the data */
    expect_bad_chunked("0\r\n\rX");                /* final CRLF broken */
}

static void test_http_body_feed_bad_trailers(void **state)
{
    (void)state;
    expect_bad_chunked("0\r\nNoColon\r\n\r\n");
    expect_bad_chunked("0\r\nT: a\r\n folded\r\n\r\n");
    expect_bad_chunked("0\r\nT : a\r\n\r\n");
    expect_bad_chunked("0\r\n: a\r\n\r\n");
    expect_bad_chunked("0\r\nT: a\n\r\n");
    expect_bad_chunked("0\r\nT: a\x02\r\n\r\n");
    expect_bad_chunked("0\r\n\n");
}

static void test_http_body_eof_truncated(void **state)
{
    struct http_body b;
    (void)state;

    http_body_init(&b, HTTP_BODY_LENGTH, 10);
    assert_int_equal(feed_str(&b, "12345"), 5);
    assert_int_equal(http_body_eof(&b), -EPIPE);
    http_body_init(&b, HTTP_BODY_CHUNKED, -1);
    assert_int_equal(feed_str(&b, "3\r\nabc\r\n"), 8);
    assert_int_equal(http_body_eof(&b), -EPIPE);
    http_body_init(&b, HTTP_BODY_CHUNKED, -1);
    assert_int_equal(feed_str(&b, "zz"), -EBADMSG);
    assert_int_equal(http_body_eof(&b), -EPIPE);
    http_body_init(&b, HTTP_BODY_CLOSE, -1);
    assert_int_equal(feed_str(&b, "abc"), 3);
    assert_int_equal(http_body_eof(&b), 0);
    assert_true(b.done);
    assert_int_equal(b.total, 3);
    /* Nothing to read: NONE is done at once and uses no bytes. */
    http_body_init(&b, HTTP_BODY_NONE, -1);
    assert_true(b.done);
    assert_int_equal(feed_str(&b, "GET"), 0);
    assert_int_equal(http_body_eof(&b), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_http_parse_head_get_without_body),
        cmocka_unit_test(test_http_parse_head_slices_and_lookup),
        cmocka_unit_test(test_http_parse_head_incomplete_is_zero),
        cmocka_unit_test(test_http_body_content_length_and_pipelining),
        cmocka_unit_test(test_http_body_chunked_extensions_and_trailers),
        cmocka_unit_test(test_http_body_chunked_without_trailers),
        cmocka_unit_test(test_http_parse_head_expect_continue),
        cmocka_unit_test(test_http_parse_head_target_forms),
        cmocka_unit_test(test_http_parse_head_upgrade),
        cmocka_unit_test(test_http_parse_head_keep_alive_rules),
        cmocka_unit_test(test_http_body_kind_head_response),
        cmocka_unit_test(test_http_body_kind_1xx_then_final),
        cmocka_unit_test(test_http_body_kind_204_304),
        cmocka_unit_test(test_http_body_kind_connect_2xx),
        cmocka_unit_test(test_http_body_close_delimited),
        cmocka_unit_test(test_http_body_chunked_response),
        cmocka_unit_test(test_http_parse_head_content_length_lists),
        cmocka_unit_test(test_http_parse_head_size_limit),
        cmocka_unit_test(test_http_parse_head_header_count_limit),
        cmocka_unit_test(test_http_body_feed_chunk_size_limit),
        cmocka_unit_test(test_http_body_feed_chunk_line_limit),
        cmocka_unit_test(test_http_body_feed_trailer_limits),
        cmocka_unit_test(test_http_parse_head_bad_request_line),
        cmocka_unit_test(test_http_parse_head_bad_method),
        cmocka_unit_test(test_http_parse_head_unsupported_version),
        cmocka_unit_test(test_http_parse_head_bad_status_line),
        cmocka_unit_test(test_http_parse_head_bare_cr),
        cmocka_unit_test(test_http_parse_head_bare_lf),
        cmocka_unit_test(test_http_parse_head_control_character),
        cmocka_unit_test(test_http_parse_head_header_without_colon),
        cmocka_unit_test(test_http_parse_head_whitespace_before_colon),
        cmocka_unit_test(test_http_parse_head_obs_fold),
        cmocka_unit_test(test_http_parse_head_bad_header_name),
        cmocka_unit_test(test_http_parse_head_invalid_content_length),
        cmocka_unit_test(test_http_parse_head_conflicting_content_length),
        cmocka_unit_test(test_http_parse_head_transfer_encoding_errors),
        cmocka_unit_test(test_http_parse_head_host_rules),
        cmocka_unit_test(test_http_body_feed_bad_chunk_size),
        cmocka_unit_test(test_http_body_feed_missing_crlf),
        cmocka_unit_test(test_http_body_feed_bad_trailers),
        cmocka_unit_test(test_http_body_eof_truncated),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
