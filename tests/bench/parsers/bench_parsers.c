/*
 * Model parser throughput: each provider's parser fed a large synthetic
 * response stream (mostly text deltas, with tool calls whose arguments
 * arrive over many deltas, as agents produce) in 16 KiB pieces, in MB/s of
 * response bytes. Peers measured in the same run on the same bytes: a
 * memchr line scan (a bound for any SSE parser) and a plain parser that
 * decodes every event's JSON with jansson (what the parsers would cost
 * without their skip of text-only events). Time is this thread's CPU time,
 * so other load on a shared machine slows the numbers less. Not a ctest test.
 *
 *   bench_parsers [MiB per stream, default 64 [only: "parser" skips the peers]]
 */
#include "decode.h"
#include "model.h"
#include "sse.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlib.h>

struct gen {
    char *p;
    size_t len, cap;
};

static void put(struct gen *g, const char *s)
{
    size_t n = strlen(s);
    if (g->len + n > g->cap) {
        g->cap = (g->cap + n) * 2;
        g->p = realloc(g->p, g->cap);
        if (!g->p)
            exit(1);
    }
    memcpy(g->p + g->len, s, n);
    g->len += n;
}

static const char *TEXT = "The quick brown fox jumps over the lazy dog, again. ";

static void gen_anthropic(struct gen *g, size_t target)
{
    char ev[512];
    put(g, "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\","
           "\"model\":\"claude-sonnet-4-5\",\"usage\":{\"input_tokens\":10,\"output_tokens\":1}}}"
           "\n\n");
    int idx = 0;
    while (g->len < target) {
        snprintf(ev, sizeof(ev),
                 "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":"
                 "%d,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
                 idx);
        put(g, ev);
        for (int i = 0; i < 200; i++) {
            snprintf(ev, sizeof(ev),
                     "event: content_block_delta\ndata: {\"type\":\"content_block_delta\","
                     "\"index\":%d,\"delta\":{\"type\":\"text_delta\",\"text\":\"%s\"}}\n\n",
                     idx, TEXT);
            put(g, ev);
        }
        idx++;
        snprintf(ev, sizeof(ev),
                 "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":"
                 "%d,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_%d\",\"name\":"
                 "\"Write\",\"input\":{}}}\n\n",
                 idx, idx);
        put(g, ev);
        for (int i = 0; i < 20; i++) {
            snprintf(ev, sizeof(ev),
                     "event: content_block_delta\ndata: {\"type\":\"content_block_delta\","
                     "\"index\":%d,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":"
                     "\"%s\"}}\n\n",
                     idx, i == 0 ? "{\\\"content\\\": \\\"" : "abcdefghij");
            put(g, ev);
        }
        idx++;
    }
    put(g, "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":"
           "\"tool_use\"},\"usage\":{\"output_tokens\":99}}\n\nevent: message_stop\ndata: "
           "{\"type\":\"message_stop\"}\n\n");
}

static void gen_chat(struct gen *g, size_t target)
{
    char ev[512];
    int tool = 0;
    while (g->len < target) {
        for (int i = 0; i < 200; i++) {
            snprintf(ev, sizeof(ev),
                     "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\","
                     "\"created\":1700000000,\"model\":\"gpt-5.4\",\"choices\":[{\"index\":0,"
                     "\"delta\":{\"content\":\"%s\"},\"finish_reason\":null}],\"usage\":null}\n\n",
                     TEXT);
            put(g, ev);
        }
        for (int i = 0; i < 20; i++) {
            snprintf(ev, sizeof(ev),
                     "data: {\"id\":\"chatcmpl-1\",\"model\":\"gpt-5.4\",\"choices\":[{\"index\":"
                     "0,\"delta\":{\"tool_calls\":[{\"index\":%d,%s\"function\":{%s\"arguments\":"
                     "\"abcdefghij\"}}]},\"finish_reason\":null}],\"usage\":null}\n\n",
                     tool, i == 0 ? "\"id\":\"call_x\",\"type\":\"function\"," : "",
                     i == 0 ? "\"name\":\"f\"," : "");
            put(g, ev);
        }
        tool++;
    }
    put(g, "data: {\"id\":\"chatcmpl-1\",\"choices\":[],\"usage\":{\"prompt_tokens\":5,"
           "\"completion_tokens\":6}}\n\ndata: [DONE]\n\n");
}

static void gen_responses(struct gen *g, size_t target)
{
    char ev[512];
    int item = 0;
    put(g, "event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"id\":"
           "\"resp_1\",\"model\":\"gpt-5.5\"}}\n\n");
    while (g->len < target) {
        for (int i = 0; i < 200; i++) {
            snprintf(ev, sizeof(ev),
                     "event: response.output_text.delta\ndata: {\"type\":"
                     "\"response.output_text.delta\",\"sequence_number\":%d,\"item_id\":"
                     "\"msg_1\",\"output_index\":%d,\"content_index\":0,\"delta\":\"%s\"}\n\n",
                     i, item, TEXT);
            put(g, ev);
        }
        item++;
        snprintf(ev, sizeof(ev),
                 "event: response.output_item.added\ndata: {\"type\":"
                 "\"response.output_item.added\",\"output_index\":%d,\"item\":{\"type\":"
                 "\"function_call\",\"call_id\":\"call_%d\",\"name\":\"f\",\"arguments\":\"\"}}"
                 "\n\n",
                 item, item);
        put(g, ev);
        for (int i = 0; i < 20; i++) {
            snprintf(ev, sizeof(ev),
                     "event: response.function_call_arguments.delta\ndata: {\"type\":"
                     "\"response.function_call_arguments.delta\",\"output_index\":%d,\"delta\":"
                     "\"abcdefghij\"}\n\n",
                     item);
            put(g, ev);
        }
        item++;
    }
    put(g, "event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{"
           "\"id\":\"resp_1\",\"status\":\"completed\",\"usage\":{\"input_tokens\":5,"
           "\"output_tokens\":6}}}\n\n");
}

static void gen_gemini(struct gen *g, size_t target)
{
    char ev[1024];
    int n = 0;
    while (g->len < target) {
        snprintf(ev, sizeof(ev),
                 "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"%s%s%s\"}],"
                 "\"role\":\"model\"},\"index\":0}],\"usageMetadata\":{\"promptTokenCount\":5000,"
                 "\"candidatesTokenCount\":%d,\"totalTokenCount\":%d},\"modelVersion\":"
                 "\"gemini-2.5-flash\",\"responseId\":\"abc\"}\r\n\r\n",
                 TEXT, TEXT, TEXT, n, 5000 + n);
        put(g, ev);
        if (++n % 50 == 0)
            put(g, "data: {\"candidates\":[{\"content\":{\"parts\":[{\"functionCall\":{\"name\":"
                   "\"write_file\",\"args\":{\"file_path\":\"/a\",\"content\":\"x\"}}}],"
                   "\"role\":\"model\"},\"index\":0}],\"modelVersion\":\"gemini-2.5-flash\"}"
                   "\r\n\r\n");
    }
    put(g, "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"\"}]},\"finishReason\":"
           "\"STOP\"}],\"usageMetadata\":{\"promptTokenCount\":5000,\"candidatesTokenCount\":9}}"
           "\r\n\r\n");
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

#define PIECE 16384

static size_t parse_once(const char *host, const char *target, const uint8_t *body, size_t len,
                         const char *ce)
{
    struct model_route r;
    if (!model_detect(NULL, host, "POST", target, strlen(target), &r))
        exit(2);
    struct model_parser *p = NULL;
    if (model_parser_create(&r, NULL, 0, &p) != 0)
        exit(3);
    model_parser_response_head(p, 200, "text/event-stream", 17, ce, ce ? strlen(ce) : 0);
    for (size_t off = 0; off < len; off += PIECE)
        model_parser_response(p, body + off, len - off < PIECE ? len - off : PIECE, 1);
    struct model_call *c = model_parser_finish(p, true, 2);
    size_t calls = c->n_tool_calls;
    if (c->parse_error || strcmp(c->status, "ok") != 0) {
        fprintf(stderr, "bench: %s%s parsed with status %s parse_error %d\n", host, target,
                c->status, c->parse_error);
        exit(4);
    }
    model_parser_destroy(p);
    return calls;
}

static size_t scan_once(const uint8_t *body, size_t len)
{
    size_t lines = 0;
    for (size_t off = 0; off < len; off += PIECE) {
        size_t n = len - off < PIECE ? len - off : PIECE;
        const uint8_t *s = body + off, *e = s + n;
        while ((s = memchr(s, '\n', (size_t)(e - s))) != NULL) {
            lines++;
            s++;
        }
    }
    return lines;
}

static void on_plain(void *opaque, const char *event, size_t event_len, const char *data,
                     size_t data_len)
{
    (void)event;
    (void)event_len;
    size_t *n = opaque;
    json_t *v = json_loadb(data, data_len, JSON_DECODE_ANY, NULL);
    if (v)
        (*n)++;
    json_decref(v);
}

static size_t plain_once(const uint8_t *body, size_t len)
{
    size_t n = 0;
    struct sse_reader rd;
    sse_reader_init(&rd, 0, on_plain, &n);
    for (size_t off = 0; off < len; off += PIECE)
        sse_reader_feed(&rd, body + off, len - off < PIECE ? len - off : PIECE);
    sse_reader_finish(&rd);
    sse_reader_fini(&rd);
    return n;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

enum what { PARSER, SCAN, PLAIN };

/* Median MB/s of five runs. */
static double measure(enum what w, const char *host, const char *target, const uint8_t *body,
                      size_t len, size_t plain_len, const char *ce, size_t *out)
{
    double mbs[5];
    for (int i = 0; i < 5; i++) {
        double t0 = now();
        if (w == PARSER)
            *out = parse_once(host, target, body, len, ce);
        else if (w == SCAN)
            *out = scan_once(body, len);
        else
            *out = plain_once(body, len);
        mbs[i] = (double)plain_len / 1e6 / (now() - t0);
    }
    qsort(mbs, 5, sizeof(mbs[0]), cmp);
    return mbs[2];
}

int main(int argc, char **argv)
{
    size_t mib = argc > 1 ? strtoul(argv[1], NULL, 10) : 64;
    size_t target = mib << 20;
    bool peers = !(argc > 2 && strcmp(argv[2], "parser") == 0);
    static const struct {
        const char *name, *host, *path;
        void (*gen)(struct gen *, size_t);
    } cases[] = {
        {"anthropic messages", "api.anthropic.com", "/v1/messages", gen_anthropic},
        {"openai chat", "api.openai.com", "/v1/chat/completions", gen_chat},
        {"openai responses", "api.openai.com", "/v1/responses", gen_responses},
        {"gemini sse", "generativelanguage.googleapis.com",
         "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse", gen_gemini},
    };
    printf("stream size %zu MiB, fed in %d-byte pieces; MB/s of response bytes per CPU second, "
           "median of 5\n",
           mib, PIECE);
    printf("%-20s %12s %12s %12s %8s\n", "stream", "parser", "memchr scan", "json every", "calls");
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct gen g = {0};
        cases[i].gen(&g, target);
        const uint8_t *b = (const uint8_t *)g.p;
        size_t calls, lines, events;
        double p = measure(PARSER, cases[i].host, cases[i].path, b, g.len, g.len, NULL, &calls);
        double s = peers ? measure(SCAN, NULL, NULL, b, g.len, g.len, NULL, &lines) : 0;
        double j = peers ? measure(PLAIN, NULL, NULL, b, g.len, g.len, NULL, &events) : 0;
        printf("%-20s %12.0f %12.0f %12.0f %8zu\n", cases[i].name, p, s, j, calls);
        if (i == 0) {
            /* the same stream gzip-compressed, as a server may send it */
            uLongf zl = compressBound((uLong)g.len) + 64;
            uint8_t *z = malloc(zl);
            z_stream zs;
            memset(&zs, 0, sizeof(zs));
            deflateInit2(&zs, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);
            zs.next_in = (Bytef *)g.p;
            zs.avail_in = (uInt)g.len;
            zs.next_out = z;
            zs.avail_out = (uInt)zl;
            deflate(&zs, Z_FINISH);
            size_t zlen = zl - zs.avail_out;
            deflateEnd(&zs);
            p = measure(PARSER, cases[i].host, cases[i].path, z, zlen, g.len, "gzip", &calls);
            printf("%-20s %12.0f %12s %12s %8zu  (MB/s of decoded bytes)\n", "anthropic gzip", p,
                   "-", "-", calls);
            free(z);
        }
        free(g.p);
    }
    return 0;
}
