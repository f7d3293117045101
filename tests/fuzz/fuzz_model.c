/*
 * Fuzz target for the model-call parsers (mitm/model.h with the SSE reader
 * and the three providers). Input: one byte choosing the route (Anthropic
 * messages, OpenAI chat or responses, Gemini generate or stream), one byte
 * choosing the response content type (with the first byte's top bit) and
 * where to split the body, then the
 * request body, a NUL, and the response body. Besides the sanitizers'
 * checks, the target aborts when the parser contradicts itself: the body fed
 * whole, in two pieces and byte by byte giving different results, or a
 * result out of its bounds. Replayed over the corpus by replay_main.c in the
 * normal test run; a libFuzzer build with clang.
 */
#include "model.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const struct {
    const char *host, *target;
} routes[] = {
    {"api.anthropic.com", "/v1/messages?beta=true"},
    {"api.openai.com", "/v1/chat/completions"},
    {"api.openai.com", "/v1/responses"},
    {"generativelanguage.googleapis.com", "/v1beta/models/gemini-2.5-flash:generateContent"},
    {"generativelanguage.googleapis.com",
     "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"},
};

struct out {
    char *p;
    size_t len, cap;
};

static void cat(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void cat(struct out *o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        abort();
    if (o->len + (size_t)n + 1 > o->cap) {
        o->cap = (o->len + (size_t)n + 1) * 2;
        o->p = realloc(o->p, o->cap);
        if (!o->p)
            abort();
    }
    va_start(ap, fmt);
    vsnprintf(o->p + o->len, o->cap - o->len, fmt, ap);
    va_end(ap);
    o->len += (size_t)n;
}

#define S(x) ((x) ? (x) : "-")

static void render(const struct model_call *c, struct out *o)
{
    o->len = 0;
    cat(o, "%s|%s|%s|%s|%d|%d|%s|%s|%s|%s|%lld|%lld|%lld|%lld|%lld|%lld|%lld|%s|%d|%d\n",
        S(c->model_requested), S(c->model_answered), S(c->response_id), S(c->status), c->stream,
        c->http_status, S(c->error_type), S(c->error_message), S(c->stop_reason),
        S(c->system_preview), (long long)c->input_tokens, (long long)c->output_tokens,
        (long long)c->cache_read_tokens, (long long)c->cache_write_tokens,
        (long long)c->reasoning_tokens, (long long)c->message_count, (long long)c->tool_count,
        S(c->provider), c->parse_error, c->truncated);
    for (size_t i = 0; i < c->n_tool_calls; i++)
        cat(o, "c %s %s %s\n", S(c->tool_calls[i].id), S(c->tool_calls[i].name),
            S(c->tool_calls[i].arguments));
    for (size_t i = 0; i < c->n_tool_results; i++)
        cat(o, "r %s %d %s\n", S(c->tool_results[i].id), c->tool_results[i].is_error,
            S(c->tool_results[i].preview));
}

/* split: SIZE_MAX whole, SIZE_MAX - 1 byte by byte, else two pieces. */
static void run(size_t route, const char *ct, const uint8_t *req, size_t req_len,
                const uint8_t *body, size_t body_len, size_t split, struct out *o)
{
    struct model_route r;
    const char *t = routes[route].target;
    if (!model_detect(NULL, routes[route].host, "POST", t, strlen(t), &r))
        abort();
    struct model_parser *p = NULL;
    if (model_parser_create(&r, NULL, 0, &p) != 0)
        abort();
    model_parser_request(p, req, req_len);
    model_parser_response_head(p, 200, ct, strlen(ct), NULL, 0);
    if (split == SIZE_MAX) {
        model_parser_response(p, body, body_len, 1);
    } else if (split == SIZE_MAX - 1) {
        for (size_t i = 0; i < body_len; i++)
            model_parser_response(p, body + i, 1, 1);
    } else {
        model_parser_response(p, body, split, 1);
        model_parser_response(p, body + split, body_len - split, 1);
    }
    struct model_call *c = model_parser_finish(p, true, 2);
    if (!c || !c->status || c->n_tool_calls > 512 || c->n_tool_results > 512)
        abort();
    for (size_t i = 0; i < c->n_tool_calls; i++) {
        if (c->tool_calls[i].arguments && strlen(c->tool_calls[i].arguments) > (256u << 10))
            abort();
    }
    render(c, o);
    model_parser_destroy(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    size_t route = data[0] % (sizeof(routes) / sizeof(routes[0]));
    /* the content type: SSE, JSON, or a mislabelled body left to sniffing */
    const char *ct = data[1] & 1      ? "text/event-stream"
                     : data[0] & 0x80 ? "text/plain"
                                      : "application/json";
    const uint8_t *rest = data + 2;
    size_t n = size - 2;
    const uint8_t *nul = memchr(rest, 0, n);
    size_t req_len = nul ? (size_t)(nul - rest) : n;
    const uint8_t *body = nul ? nul + 1 : rest + n;
    size_t body_len = n - req_len - (nul ? 1 : 0);
    size_t split = body_len ? (size_t)(data[1] >> 1) * body_len / 127 : 0;
    if (split > body_len)
        split = body_len;

    struct out whole = {0}, other = {0};
    run(route, ct, rest, req_len, body, body_len, SIZE_MAX, &whole);
    run(route, ct, rest, req_len, body, body_len, split, &other);
    if (whole.len != other.len || memcmp(whole.p, other.p, whole.len) != 0)
        abort();
    if (body_len <= 4096) {
        run(route, ct, rest, req_len, body, body_len, SIZE_MAX - 1, &other);
        if (whole.len != other.len || memcmp(whole.p, other.p, whole.len) != 0)
            abort();
    }
    free(whole.p);
    free(other.p);
    return 0;
}
