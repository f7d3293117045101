/*
 * Request decode speed: a realistic 512 KiB Anthropic Messages request (a
 * system prompt, tool definitions with JSON schemas, and a conversation of
 * user text, assistant text with tool_use blocks, and tool results holding
 * file contents and command output, with escapes and multibyte characters)
 * read by json_loadb (the peer: what the model parser used before) and by
 * jscan_load with the request bound (4 KiB) and with no bound, in MB/s of
 * request bytes, each in the same run, with the ratio to json_loadb. Also
 * the whole request path of the model parser (body fed in 16 KiB pieces,
 * finish) per request. Time is this thread's CPU time. Not a ctest test.
 *
 *   bench_request [KiB per request, default 512]
 */
#include "jscan.h"
#include "model.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static uint64_t rng = 0x2545f4914f6cdd1du;

static uint32_t rnd(uint32_t n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng % n);
}

/* n bytes of text that look like source code or command output, JSON-escaped. */
static void text(json_t **out, size_t n)
{
    static const char *lines[] = {
        "    if (rc != 0) {\n        log_error(\"open %s: %s\", path, strerror(-rc));\n",
        "        goto out;\n    }\n",
        "def handle(self, request):\n\treturn self.app(request, \"default\")\n",
        "drwxr-xr-x  5 root root  4096 Nov 28 19:00 src\n",
        "The function returns the parsed value — or an error when the input is malformed.\n",
        "  \"name\": \"capsem\", \"version\": \"0.1.0\", \"path\": \"C:\\\\work\\\\x\"\n",
        "test_parse_request ... ok (0.12s) ✓\n",
        "// 日本語のコメント: 値を返す\n",
        "</div><span class='note'>edited</span>\n",
        "Error: ENOENT: no such file or directory, open '/root/.config/x.json' 🙂\n",
    };
    char *b = malloc(n + 256);
    size_t len = 0;
    if (!b)
        exit(1);
    while (len < n) {
        const char *l = lines[rnd(sizeof(lines) / sizeof(lines[0]))];
        size_t ll = strlen(l);
        memcpy(b + len, l, ll);
        len += ll;
    }
    *out = json_stringn(b, len);
    free(b);
    if (!*out)
        exit(1);
}

static json_t *text_block(size_t n)
{
    json_t *t;
    text(&t, n);
    return json_pack("{s:s,s:o}", "type", "text", "text", t);
}

static char *gen_request(size_t target, size_t *len)
{
    json_t *root =
        json_pack("{s:s,s:i,s:b}", "model", "claude-sonnet-4-5", "max_tokens", 32000, "stream", 1);
    json_t *sys = json_array();
    json_array_append_new(sys, text_block(12000));
    json_object_set_new(root, "system", sys);
    json_t *tools = json_array();
    for (int i = 0; i < 18; i++) {
        json_t *desc;
        text(&desc, 600 + rnd(1500));
        json_array_append_new(
            tools,
            json_pack("{s:s,s:o,s:{s:s,s:{s:{s:s,s:s},s:{s:s}},s:[s]}}", "name",
                      (const char *[]){"Bash", "Read", "Edit", "Write", "Grep", "Glob"}[i % 6],
                      "description", desc, "input_schema", "type", "object", "properties", "path",
                      "type", "string", "description", "The file to act on", "limit", "type",
                      "integer", "required", "path"));
    }
    json_object_set_new(root, "tools", tools);
    json_t *msgs = json_array();
    json_object_set_new(root, "messages", msgs);
    char id[64];
    int n = 0;
    for (;;) {
        char *probe = json_dumps(root, JSON_COMPACT);
        size_t pl = strlen(probe);
        free(probe);
        if (pl >= target)
            break;
        snprintf(id, sizeof(id), "toolu_01%08d", n++);
        json_t *user = json_array();
        json_array_append_new(user, text_block(100 + rnd(1500)));
        json_array_append_new(msgs, json_pack("{s:s,s:o}", "role", "user", "content", user));
        json_t *asst = json_array();
        json_array_append_new(asst, text_block(200 + rnd(1200)));
        json_t *cmd;
        text(&cmd, 60 + rnd(2000));
        json_array_append_new(asst, json_pack("{s:s,s:s,s:s,s:{s:o,s:s}}", "type", "tool_use", "id",
                                              id, "name", "Bash", "input", "command", cmd,
                                              "description", "run it"));
        json_array_append_new(msgs, json_pack("{s:s,s:o}", "role", "assistant", "content", asst));
        json_t *res;
        text(&res, rnd(4) == 0 ? 300 + rnd(800) : 2000 + rnd(28000));
        json_t *tr = json_array();
        json_array_append_new(tr, json_pack("{s:s,s:s,s:o,s:b}", "type", "tool_result",
                                            "tool_use_id", id, "content", res, "is_error", 0));
        json_array_append_new(msgs, json_pack("{s:s,s:o}", "role", "user", "content", tr));
    }
    char *s = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    *len = strlen(s);
    return s;
}

static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

#define PIECE 16384

static void model_request_once(const char *body, size_t len)
{
    struct model_route r;
    const char *target = "/v1/messages?beta=true";
    if (!model_detect(NULL, "api.anthropic.com", "POST", target, strlen(target), &r))
        exit(2);
    struct model_parser *p = NULL;
    if (model_parser_create(&r, NULL, 0, &p) != 0)
        exit(3);
    for (size_t off = 0; off < len; off += PIECE)
        model_parser_request(p, (const uint8_t *)body + off, len - off < PIECE ? len - off : PIECE);
    static const char resp[] =
        "{\"id\":\"msg_1\",\"type\":\"message\",\"model\":\"claude-sonnet-4-5\","
        "\"content\":[],\"stop_reason\":\"end_turn\",\"usage\":{"
        "\"input_tokens\":1,\"output_tokens\":1}}";
    model_parser_response_head(p, 200, "application/json", 16, NULL, 0);
    model_parser_response(p, (const uint8_t *)resp, sizeof(resp) - 1, 1);
    struct model_call *c = model_parser_finish(p, true, 2);
    if (c->parse_error || c->message_count < 3 || c->n_tool_results != 1 || !c->system_preview) {
        fprintf(stderr, "bench: request parsed wrong (parse_error %d, %lld messages)\n",
                c->parse_error, (long long)c->message_count);
        exit(4);
    }
    model_parser_destroy(p);
}

enum way { WAY_LOADB, WAY_JSCAN, WAY_JSCAN_FULL, WAY_MODEL };

static double run(enum way w, const char *body, size_t len)
{
    double t0 = cpu_now(), t;
    size_t iters = 0;
    do {
        json_t *v = NULL;
        switch (w) {
        case WAY_LOADB:
            v = json_loadb(body, len, 0, NULL);
            break;
        case WAY_JSCAN:
            if (jscan_load(body, len, JSCAN_STRING_MAX, &v, NULL) != 0)
                v = NULL;
            break;
        case WAY_JSCAN_FULL:
            if (jscan_load(body, len, SIZE_MAX, &v, NULL) != 0)
                v = NULL;
            break;
        case WAY_MODEL:
            model_request_once(body, len);
            v = json_null();
            break;
        }
        if (!v) {
            fprintf(stderr, "bench: the request was refused\n");
            exit(5);
        }
        json_decref(v);
        iters++;
        t = cpu_now() - t0;
    } while (t < 1.0 || iters < 5);
    return t / (double)iters; /* seconds per request */
}

int main(int argc, char **argv)
{
    size_t kib = argc > 1 ? strtoul(argv[1], NULL, 10) : 512;
    if (kib == 0)
        kib = 512;
    size_t len;
    char *body = gen_request(kib << 10, &len);
    size_t long_strings = 0, long_bytes = 0;
    {
        json_t *v = json_loadb(body, len, 0, NULL);
        json_t *m;
        size_t i;
        json_array_foreach(json_object_get(v, "messages"), i, m)
        {
            size_t j;
            json_t *b;
            json_array_foreach(json_object_get(m, "content"), j, b)
            {
                json_t *s = json_object_get(b, "content");
                if (!s)
                    s = json_object_get(b, "text");
                if (json_string_length(s) > JSCAN_STRING_MAX) {
                    long_strings++;
                    long_bytes += json_string_length(s);
                }
            }
        }
        printf("request: %zu bytes, %zu messages, %zu strings over %u bytes holding %zu bytes\n",
               len, json_array_size(json_object_get(v, "messages")), long_strings, JSCAN_STRING_MAX,
               long_bytes);
        json_decref(v);
    }
    double mb = (double)len / 1e6;
    double loadb = run(WAY_LOADB, body, len);
    double js = run(WAY_JSCAN, body, len);
    double full = run(WAY_JSCAN_FULL, body, len);
    double model = run(WAY_MODEL, body, len);
    printf("%-34s %9s %11s %9s\n", "request decode", "MB/s", "ms/request", "vs loadb");
    printf("%-34s %9.0f %11.3f %8.2fx\n", "json_loadb (peer)", mb / loadb, loadb * 1e3, 1.0);
    printf("%-34s %9.0f %11.3f %8.2fx\n", "jscan_load, 4 KiB string bound", mb / js, js * 1e3,
           loadb / js);
    printf("%-34s %9.0f %11.3f %8.2fx\n", "jscan_load, no bound", mb / full, full * 1e3,
           loadb / full);
    printf("%-34s %9.0f %11.3f %8.2fx\n", "model parser, whole request path", mb / model,
           model * 1e3, loadb / model);
    free(body);
    return 0;
}
