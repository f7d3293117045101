/*
 * Shared by the model parser tests: run one exchange through a parser (the
 * response body fed whole, split in two at a given offset, or byte by byte)
 * and render the result as text, so runs can be compared field by field.
 */
#ifndef CAPSEM_TEST_MODEL_TEST_H
#define CAPSEM_TEST_MODEL_TEST_H

#include "model.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define MT_WHOLE ((size_t)-1)
#define MT_BYTES ((size_t)-2)

struct mt_exchange {
    const char *host;
    const char *target;
    const char *request; /* NUL-terminated JSON, or NULL */
    int status;
    const char *content_type;
    const char *content_encoding; /* NULL: none */
    const uint8_t *body;
    size_t body_len;
    bool complete;
};

static void mt_cat(char *out, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void mt_cat(char *out, size_t size, const char *fmt, ...)
{
    size_t n = strlen(out);
    if (n + 1 >= size)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out + n, size - n, fmt, ap);
    va_end(ap);
}

#define MT_S(x) ((x) ? (x) : "(null)")

/* Every field of a result as text. */
static __attribute__((unused)) void mt_render(const struct model_call *c, char *out, size_t size)
{
    out[0] = '\0';
    mt_cat(out, size,
           "provider=%s api=%s req=%s ans=%s id=%s stream=%d http=%d status=%s err=%s/%s "
           "stop=%s in=%lld out=%lld cr=%lld cw=%lld rs=%lld msgs=%lld tools=%lld sys=%s "
           "pe=%d tr=%d\n",
           MT_S(c->provider), MT_S(c->api), MT_S(c->model_requested), MT_S(c->model_answered),
           MT_S(c->response_id), c->stream, c->http_status, MT_S(c->status), MT_S(c->error_type),
           MT_S(c->error_message), MT_S(c->stop_reason), (long long)c->input_tokens,
           (long long)c->output_tokens, (long long)c->cache_read_tokens,
           (long long)c->cache_write_tokens, (long long)c->reasoning_tokens,
           (long long)c->message_count, (long long)c->tool_count, MT_S(c->system_preview),
           c->parse_error, c->truncated);
    for (size_t i = 0; i < c->n_tool_calls; i++)
        mt_cat(out, size, "call %s %s %s\n", MT_S(c->tool_calls[i].id), MT_S(c->tool_calls[i].name),
               MT_S(c->tool_calls[i].arguments));
    for (size_t i = 0; i < c->n_tool_results; i++)
        mt_cat(out, size, "result %s %d %s\n", MT_S(c->tool_results[i].id),
               c->tool_results[i].is_error, MT_S(c->tool_results[i].preview));
}

/* Run `x`, feeding the response body as `split` says; the result rendered into out. */
static __attribute__((unused)) void mt_run(const struct mt_exchange *x, size_t split, char *out,
                                           size_t size)
{
    struct model_route r;
    const char *host = x->host;
    assert_true(model_detect(NULL, host, "POST", x->target, strlen(x->target), &r));
    struct model_parser *p = NULL;
    assert_int_equal(model_parser_create(&r, NULL, 1000, &p), 0);
    if (x->request) {
        /* the request split too: it must not matter */
        size_t rl = strlen(x->request);
        model_parser_request(p, (const uint8_t *)x->request, rl / 2);
        model_parser_request(p, (const uint8_t *)x->request + rl / 2, rl - rl / 2);
    }
    const char *ce = x->content_encoding;
    model_parser_response_head(p, x->status, x->content_type, strlen(x->content_type), ce,
                               ce ? strlen(ce) : 0);
    if (split == MT_WHOLE) {
        model_parser_response(p, x->body, x->body_len, 1500);
    } else if (split == MT_BYTES) {
        for (size_t i = 0; i < x->body_len; i++)
            model_parser_response(p, x->body + i, 1, 1500);
    } else {
        model_parser_response(p, x->body, split, 1500);
        model_parser_response(p, x->body + split, x->body_len - split, 1500);
    }
    struct model_call *c = model_parser_finish(p, x->complete, 5000);
    assert_non_null(c);
    if (x->body_len > 0)
        assert_int_equal(c->ttft_us, 500);
    assert_int_equal(c->duration_us, 4000);
    mt_render(c, out, size);
    model_parser_destroy(p);
}

/* The whole-body result; asserts every split and byte-by-byte feeding give the same. */
static __attribute__((unused)) char *mt_run_all_splits(const struct mt_exchange *x)
{
    size_t size = 1 << 16;
    char *whole = malloc(size), *other = malloc(size);
    assert_non_null(whole);
    assert_non_null(other);
    mt_run(x, MT_WHOLE, whole, size);
    for (size_t i = 0; i <= x->body_len; i++) {
        mt_run(x, i, other, size);
        if (strcmp(whole, other) != 0) {
            fprintf(stderr, "split at %zu differs:\n--- whole\n%s--- split\n%s", i, whole, other);
            fail();
        }
    }
    mt_run(x, MT_BYTES, other, size);
    assert_string_equal(whole, other);
    free(other);
    return whole;
}

/* Does the rendered result contain `needle`? Prints it when not. */
#define assert_has(text, needle)                                                                   \
    do {                                                                                           \
        if (!strstr((text), (needle))) {                                                           \
            fprintf(stderr, "missing [%s] in:\n%s", (needle), (text));                             \
            fail();                                                                                \
        }                                                                                          \
    } while (0)

#endif
