/*
 * Fuzz target for the HTTP/1.1 framing (mitm/http.h) and what the proxy
 * stores about a message (mitm/redact.h). Input: one flags byte (bit 0: the
 * stream holds requests; bits 1-2: the method each response answers), one
 * byte choosing where to split body input, then the stream. Messages are
 * parsed one after another as the proxy does. Besides the sanitizers'
 * checks, the target aborts when the parser contradicts itself: a prefix of
 * the head answering differently from the whole, a body fed in two pieces
 * decoding differently from one, or a result outside its bounds. Built as a
 * libFuzzer target with clang, and replayed over the corpus by replay_main.c
 * in the normal test run.
 */
#include "http.h"
#include "redact.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_MESSAGES 8
#define PREFIX_CHECKS 64

struct digest {
    uint64_t hash, len;
    struct redact_capture cap;
};

static void on_data(void *opaque, const uint8_t *p, size_t len)
{
    struct digest *d = opaque;

    for (size_t i = 0; i < len; i++)
        d->hash = (d->hash ^ p[i]) * 1099511628211ull;
    d->len += len;
    redact_capture_add(&d->cap, p, len);
}

static void check(bool ok)
{
    if (!ok)
        abort();
}

/* Whole vs. prefixes: each prefix answers 0 or exactly what the whole does. */
static void check_prefixes(const char *p, size_t len, bool req, long whole, const char *why)
{
    struct http_head *h = malloc(sizeof(*h));
    size_t step = len / PREFIX_CHECKS + 1;

    if (!h)
        return;
    for (size_t k = 0; k < len; k += step) {
        const char *w = NULL;
        long r = http_parse_head(p, k, req, h, &w);

        if (r == 0)
            continue;
        /* A prefix that holds the whole head gives the whole answer. */
        check(r == whole && w == why);
    }
    free(h);
}

/* Decode body bytes in one piece and in two; both must agree. Returns bytes used or <0. */
static long run_body(enum http_body_kind kind, int64_t cl, const uint8_t *p, size_t len, size_t cut)
{
    struct http_body a, b;
    struct digest da = {0}, db = {0};
    long ra, rb1, rb2 = 0, rb;

    redact_capture_init(&da.cap, 0);
    redact_capture_init(&db.cap, 0);
    http_body_init(&a, kind, cl);
    http_body_init(&b, kind, cl);
    ra = http_body_feed(&a, p, len, on_data, &da);
    if (cut > len)
        cut = len;
    rb1 = http_body_feed(&b, p, cut, on_data, &db);
    if (rb1 >= 0 && !b.done) {
        check((size_t)rb1 == cut);
        rb2 = http_body_feed(&b, p + cut, len - cut, on_data, &db);
    }
    rb = rb1 < 0 ? rb1 : rb2 < 0 ? rb2 : rb1 + rb2;
    check((ra < 0) == (rb < 0));
    check(ra < 0 || (ra == rb && (size_t)ra <= len));
    check(a.done == b.done);
    check(a.total == b.total && da.len == a.total);
    if (ra >= 0)
        check(da.hash == db.hash);
    check(a.done || ra < 0 || (size_t)ra == len);
    if (!a.done) {
        int e = http_body_eof(&a);

        check(e == 0 || e == -EPIPE);
        check((e == 0) == (kind == HTTP_BODY_CLOSE && ra >= 0));
    }
    {
        char *prev = NULL;

        if (redact_capture_preview(&da.cap, &prev) == 0) {
            check(strlen(prev) <= REDACT_PREVIEW_DEFAULT);
            free(prev);
        }
    }
    return ra < 0 ? ra : (a.done ? ra : (long)len);
}

static void store(const struct http_head *h)
{
    char *json = NULL, *q = NULL;
    const char *qm;

    if (redact_headers_json(h, &json) == 0)
        free(json);
    if (h->is_request && (qm = memchr(h->target.p, '?', h->target.len)) != NULL) {
        size_t off = (size_t)(qm - h->target.p) + 1;

        if (redact_query(qm + 1, h->target.len - off, &q) == 0)
            free(q);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const methods[] = {"GET", "HEAD", "CONNECT", "POST"};
    struct http_head *h;
    const char *meth;
    size_t off = 2;
    bool req;

    if (size < 2)
        return 0;
    req = data[0] & 1;
    meth = methods[(data[0] >> 1) & 3];
    h = malloc(sizeof(*h));
    if (!h)
        return 0;
    for (int m = 0; m < MAX_MESSAGES && off < size; m++) {
        size_t len = size - off;
        /* An exact-size copy, so a read past the input is caught. */
        char *p = malloc(len);
        const char *why = NULL;
        long n, used;

        if (!p)
            break;
        memcpy(p, data + off, len);
        n = http_parse_head(p, len, req, h, &why);
        check(n <= (long)len && n <= HTTP_MAX_HEAD);
        check((n < 0) == (why != NULL));
        check_prefixes(p, len, req, n, why);
        if (n <= 0) {
            free(p);
            break;
        }
        check(h->nheaders <= HTTP_MAX_HEADERS);
        for (size_t i = 0; i < h->nheaders; i++) {
            check(h->headers[i].name.p >= p &&
                  h->headers[i].name.p + h->headers[i].name.len <= p + n);
            check(h->headers[i].value.p >= p &&
                  h->headers[i].value.p + h->headers[i].value.len <= p + n);
        }
        store(h);
        used = run_body(http_body_kind(h, (struct http_str){meth, strlen(meth)}), h->content_length,
                        (const uint8_t *)p + n, len - (size_t)n, data[1] % (len - (size_t)n + 1));
        free(p);
        if (used < 0)
            break;
        off += (size_t)n + (size_t)used;
    }
    free(h);
    return 0;
}
