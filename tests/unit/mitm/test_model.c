/*
 * unit.mitm.model: the parts every provider shares. Detection by host,
 * method and path (default and configured hosts, ports, absolute form,
 * paths that are not model calls). Compressed responses (gzip, brotli) parse
 * the same as plain ones, at every split. Bad input: a garbage body, a
 * truncated JSON body, an HTML error page, a non-JSON SSE event, an
 * oversized event, a request over the cap, a corrupt or unknown encoding,
 * no response at all; each gives a result marked parse_error / truncated /
 * incomplete with what could still be learned, never a crash.
 */
#include "compress_test.h"
#include "model_test.h"

static void test_model_detect_routes(void **state)
{
    (void)state;
    struct model_route r;
    const char *t = "/v1/messages?beta=true";
    assert_true(model_detect(NULL, "api.anthropic.com", "POST", t, strlen(t), &r));
    assert_int_equal(r.provider, MODEL_PROVIDER_ANTHROPIC);
    assert_int_equal(r.api, MODEL_API_MESSAGES);
    assert_true(model_detect(NULL, "API.Anthropic.com:443", "POST", t, strlen(t), &r));
    t = "https://api.openai.com/v1/responses";
    assert_true(model_detect(NULL, "api.openai.com", "POST", t, strlen(t), &r));
    assert_int_equal(r.api, MODEL_API_RESPONSES);
    t = "/v1/chat/completions";
    assert_true(model_detect(NULL, "api.openai.com", "POST", t, strlen(t), &r));
    assert_int_equal(r.api, MODEL_API_CHAT);
    t = "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse";
    assert_true(model_detect(NULL, "generativelanguage.googleapis.com", "POST", t, strlen(t), &r));
    assert_int_equal(r.provider, MODEL_PROVIDER_GEMINI);
    assert_true(r.stream_path);
    assert_string_equal(r.model, "gemini-2.5-flash");
    t = "/v1beta/models/gemini-3-flash-preview:generateContent";
    assert_true(model_detect(NULL, "generativelanguage.googleapis.com", "POST", t, strlen(t), &r));
    assert_false(r.stream_path);

    /* not model calls */
    const char *no[][3] = {
        {"api.anthropic.com", "GET", "/v1/messages"},
        {"api.anthropic.com", "POST", "/v1/messages/count_tokens"},
        {"api.anthropic.com", "POST", "/api/event_logging/v2/batch"},
        {"api.openai.com", "POST", "/v1/embeddings"},
        {"api.openai.com", "GET", "/v1/responses"},
        {"example.com", "POST", "/v1/messages"},
        {"api.anthropic.com.evil.com", "POST", "/v1/messages"},
        {"generativelanguage.googleapis.com", "POST", "/v1beta/models/gemini:countTokens"},
        {"generativelanguage.googleapis.com", "POST", "/v1beta/models/:generateContent"},
        {"generativelanguage.googleapis.com", "POST", "/v1beta/models/x"},
    };
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
        assert_false(model_detect(NULL, no[i][0], no[i][1], no[i][2], strlen(no[i][2]), &r));

    /* a configured table replaces the defaults */
    const struct model_host hosts[] = {{"llm.corp.example", MODEL_PROVIDER_OPENAI}, {NULL, 0}};
    t = "/v1/chat/completions";
    assert_true(model_detect(hosts, "llm.corp.example", "POST", t, strlen(t), &r));
    assert_int_equal(r.provider, MODEL_PROVIDER_OPENAI);
    assert_false(model_detect(hosts, "api.openai.com", "POST", t, strlen(t), &r));
}

static const char *SSE =
    "event: message_start\n"
    "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_z\",\"model\":"
    "\"claude-opus-4-5\",\"usage\":{\"input_tokens\":3,\"output_tokens\":1}}}\n\n"
    "event: content_block_start\n"
    "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":"
    "\"tool_use\",\"id\":\"toolu_z\",\"name\":\"Bash\",\"input\":{}}}\n\n"
    "event: content_block_delta\n"
    "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":"
    "\"input_json_delta\",\"partial_json\":\"{\\\"command\\\":\\\"ls\\\"}\"}}\n\n"
    "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n"
    "event: message_delta\n"
    "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\"},\"usage\":"
    "{\"output_tokens\":9}}\n\n"
    "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";

static const char *REQ = "{\"model\":\"claude-opus-4-5\",\"stream\":true,\"messages\":[]}";

static struct mt_exchange anthropic(const uint8_t *body, size_t len, const char *ct, const char *ce)
{
    return (struct mt_exchange){
        .host = "api.anthropic.com",
        .target = "/v1/messages",
        .request = REQ,
        .status = 200,
        .content_type = ct,
        .content_encoding = ce,
        .body = body,
        .body_len = len,
        .complete = true,
    };
}

static void test_model_parser_response_compressed(void **state)
{
    (void)state;
    struct mt_exchange x = anthropic((const uint8_t *)SSE, strlen(SSE), "text/event-stream", NULL);
    char plain[1 << 14];
    mt_run(&x, MT_WHOLE, plain, sizeof(plain));
    assert_has(plain, "status=ok ");
    assert_has(plain, "call toolu_z Bash {\"command\":\"ls\"}\n");
    size_t n;
    uint8_t *gz = ct_deflate(SSE, strlen(SSE), 15 + 16, &n);
    x = anthropic(gz, n, "text/event-stream", "gzip");
    char *r = mt_run_all_splits(&x);
    assert_string_equal(r, plain);
    free(r);
    free(gz);
    uint8_t *br = ct_brotli(SSE, strlen(SSE), &n);
    x = anthropic(br, n, "text/event-stream", "br");
    r = mt_run_all_splits(&x);
    assert_string_equal(r, plain);
    free(r);
    free(br);
    uint8_t *zs = ct_zstd(SSE, strlen(SSE), &n);
    x = anthropic(zs, n, "text/event-stream", "zstd");
    r = mt_run_all_splits(&x);
    assert_string_equal(r, plain);
    free(r);
    free(zs);
}

static void test_model_parser_bad_encoding(void **state)
{
    (void)state;
    char out[1 << 14];
    /* corrupt gzip: what decoded before the damage counts, the result is marked */
    size_t n;
    uint8_t *gz = ct_deflate(SSE, strlen(SSE), 15 + 16, &n);
    for (size_t i = n / 2; i < n; i++)
        gz[i] ^= 0x5A;
    struct mt_exchange x = anthropic(gz, n, "text/event-stream", "gzip");
    mt_run(&x, MT_WHOLE, out, sizeof(out));
    assert_has(out, "pe=1");
    assert_has(out, "status=incomplete ");
    free(gz);
    /* plain bytes labelled gzip */
    x = anthropic((const uint8_t *)SSE, strlen(SSE), "text/event-stream", "gzip");
    mt_run(&x, MT_WHOLE, out, sizeof(out));
    assert_has(out, "req=claude-opus-4-5 ans=(null) ");
    assert_has(out, "pe=1");
    /* an encoding not decoded (compress): the request is still parsed, the response marked */
    x = anthropic((const uint8_t *)SSE, strlen(SSE), "text/event-stream", "compress");
    mt_run(&x, MT_WHOLE, out, sizeof(out));
    assert_has(out, "req=claude-opus-4-5 ans=(null) id=(null) stream=1 http=200 ");
    assert_has(out, "pe=1");
}

static void test_model_parser_garbage_bodies(void **state)
{
    (void)state;
    char out[1 << 14];
    /* an HTML error page from a gateway */
    const char *html = "<html><body>502 Bad Gateway</body></html>";
    struct mt_exchange x = anthropic((const uint8_t *)html, strlen(html), "text/html", NULL);
    x.status = 502;
    char *r = mt_run_all_splits(&x);
    assert_has(r, "http=502 status=error err=(null)/(null) ");
    assert_has(r, "pe=1");
    free(r);
    /* a 200 JSON body cut in the middle */
    const char *cut = "{\"id\":\"msg_q\",\"model\":\"claude-opus-4-5\",\"content\":[{\"type\":";
    x = anthropic((const uint8_t *)cut, strlen(cut), "application/json", NULL);
    x.complete = false;
    r = mt_run_all_splits(&x);
    assert_has(r, "status=incomplete ");
    assert_has(r, "pe=1");
    free(r);
    /* SSE events whose data is not JSON, between good ones: skipped, marked */
    const char *mixed = "event: message_start\ndata: {not json\n\n"
                        "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":"
                        "{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":2}}\n\n"
                        "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
    x = anthropic((const uint8_t *)mixed, strlen(mixed), "text/event-stream", NULL);
    r = mt_run_all_splits(&x);
    assert_has(r, "status=ok err=(null)/(null) stop=end_turn in=-1 out=2 ");
    assert_has(r, "pe=1");
    free(r);
    /* binary junk */
    uint8_t junk[300];
    for (size_t i = 0; i < sizeof(junk); i++)
        junk[i] = (uint8_t)(i * 37 + 11);
    x = anthropic(junk, sizeof(junk), "application/json", NULL);
    r = mt_run_all_splits(&x);
    assert_has(r, "pe=1");
    free(r);
    x = anthropic(junk, sizeof(junk), "text/event-stream", NULL);
    r = mt_run_all_splits(&x);
    assert_has(r, "pe=1");
    assert_has(r, "status=incomplete ");
    free(r);
    /* an empty 200 body */
    x = anthropic((const uint8_t *)"", 0, "application/json", NULL);
    mt_run(&x, MT_WHOLE, out, sizeof(out));
    assert_has(out, "pe=1");
}

static void test_model_parser_request_bad(void **state)
{
    (void)state;
    struct model_route r;
    const char *t = "/v1/messages";
    assert_true(model_detect(NULL, "api.anthropic.com", "POST", t, strlen(t), &r));
    /* over the cap: the prefix still says the model and the stream flag */
    struct model_limits lim = {.req_max = 64};
    struct model_parser *p = NULL;
    assert_int_equal(model_parser_create(&r, &lim, 0, &p), 0);
    const char *big = "{\"model\": \"claude-opus-4-5\", \"stream\":true, \"messages\":[{\"role\":"
                      "\"user\",\"content\":\"a very long prompt that goes past the cap\"}]}";
    for (size_t i = 0; big[i]; i++)
        model_parser_request(p, (const uint8_t *)big + i, 1);
    struct model_call *c = model_parser_finish(p, true, 10);
    assert_string_equal(c->model_requested, "claude-opus-4-5");
    assert_true(c->stream);
    assert_true(c->truncated);
    assert_true(c->parse_error);
    assert_string_equal(c->status, "incomplete"); /* no response head came */
    assert_int_equal(c->http_status, 0);
    assert_int_equal(c->ttft_us, -1);
    model_parser_destroy(p);
    /* not JSON at all */
    assert_int_equal(model_parser_create(&r, NULL, 0, &p), 0);
    model_parser_request(p, (const uint8_t *)"\x00\x01garbage", 9);
    c = model_parser_finish(p, true, 10);
    assert_null(c->model_requested);
    assert_true(c->parse_error);
    assert_false(c->truncated);
    model_parser_destroy(p);
}

static void test_model_parser_oversized_event(void **state)
{
    (void)state;
    struct model_route r;
    const char *t = "/v1/messages";
    assert_true(model_detect(NULL, "api.anthropic.com", "POST", t, strlen(t), &r));
    struct model_limits lim = {.event_max = 256};
    struct model_parser *p = NULL;
    assert_int_equal(model_parser_create(&r, &lim, 0, &p), 0);
    model_parser_response_head(p, 200, "text/event-stream", 17, NULL, 0);
    char big[2048];
    int n = snprintf(big, sizeof(big),
                     "event: content_block_delta\ndata: {\"type\":\"content_block_delta\","
                     "\"index\":0,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"");
    memset(big + n, 'x', 1000);
    n += 1000;
    n += snprintf(big + n, sizeof(big) - (size_t)n, "\"}}\n\n");
    model_parser_response(p, (const uint8_t *)SSE, strlen(SSE) - 40, 5);
    model_parser_response(p, (const uint8_t *)big, (size_t)n, 6);
    model_parser_response(p, (const uint8_t *)SSE + strlen(SSE) - 40, 40, 7);
    struct model_call *c = model_parser_finish(p, true, 10);
    /* the oversized event is dropped whole; the events around it still count */
    assert_true(c->truncated);
    assert_true(c->parse_error);
    assert_string_equal(c->stop_reason, "tool_use");
    assert_int_equal(c->n_tool_calls, 1);
    assert_string_equal(c->tool_calls[0].arguments, "{\"command\":\"ls\"}");
    model_parser_destroy(p);
}

static void test_model_parser_no_response(void **state)
{
    (void)state;
    struct model_route r;
    const char *t = "/v1/chat/completions";
    assert_true(model_detect(NULL, "api.openai.com", "POST", t, strlen(t), &r));
    struct model_parser *p = NULL;
    assert_int_equal(model_parser_create(&r, NULL, 0, &p), 0);
    /* bytes without a head are ignored, not a crash */
    model_parser_response(p, (const uint8_t *)"data: x\n\n", 9, 3);
    struct model_call *c = model_parser_finish(p, false, 10);
    assert_string_equal(c->status, "incomplete");
    assert_int_equal(c->n_tool_calls, 0);
    assert_true(model_parser_finish(p, false, 20) == c); /* a second finish changes nothing */
    assert_int_equal(c->duration_us, 10);
    model_parser_destroy(p);
    model_parser_destroy(NULL);
}

static void test_model_parser_long_previews(void **state)
{
    (void)state;
    /* a long system prompt and tool result: previews are cut at 512 bytes on a UTF-8
     * boundary, and that alone does not mark the call truncated */
    size_t n = 3000;
    char *req = malloc(n + 512);
    size_t l = (size_t)snprintf(req, n + 512, "{\"model\":\"m\",\"system\":\"a");
    for (size_t i = 0; i < 1000; i++)
        l += (size_t)snprintf(req + l, n + 512 - l, "\xc3\xa9");
    snprintf(req + l, n + 512 - l, "\",\"messages\":[]}");
    struct model_route r;
    assert_true(model_detect(NULL, "api.anthropic.com", "POST", "/v1/messages", 12, &r));
    struct model_parser *p = NULL;
    assert_int_equal(model_parser_create(&r, NULL, 0, &p), 0);
    model_parser_request(p, (const uint8_t *)req, strlen(req));
    struct model_call *c = model_parser_finish(p, false, 1);
    assert_non_null(c->system_preview);
    assert_int_equal(strlen(c->system_preview), 511); /* not in the middle of an é */
    assert_false(c->truncated);
    assert_false(c->parse_error);
    model_parser_destroy(p);
    free(req);
}

static void test_model_parser_argument_caps(void **state)
{
    (void)state;
    /* 20 tool calls of 300 KiB arguments each: each is cut at 256 KiB, all of them
     * together at 4 MiB, and the call is marked truncated */
    size_t one = 300u << 10, cap = 20 * (one + 128) + 256;
    char *body = malloc(cap);
    size_t l = (size_t)snprintf(body, cap, "{\"id\":\"m\",\"model\":\"x\",\"content\":[");
    for (int i = 0; i < 20; i++) {
        l += (size_t)snprintf(body + l, cap - l,
                              "%s{\"type\":\"tool_use\",\"id\":\"t%d\",\"name\":\"W\","
                              "\"input\":{\"s\":\"",
                              i ? "," : "", i);
        memset(body + l, 'x', one);
        l += one;
        l += (size_t)snprintf(body + l, cap - l, "\"}}");
    }
    l += (size_t)snprintf(body + l, cap - l, "],\"stop_reason\":\"tool_use\"}");
    struct model_route r;
    assert_true(model_detect(NULL, "api.anthropic.com", "POST", "/v1/messages", 12, &r));
    struct model_parser *p = NULL;
    assert_int_equal(model_parser_create(&r, NULL, 0, &p), 0);
    model_parser_response_head(p, 200, "application/json", 16, NULL, 0);
    model_parser_response(p, (const uint8_t *)body, l, 1);
    struct model_call *c = model_parser_finish(p, true, 2);
    assert_int_equal(c->n_tool_calls, 20);
    assert_true(c->truncated);
    assert_false(c->parse_error);
    size_t total = 0;
    for (size_t i = 0; i < c->n_tool_calls; i++) {
        size_t al = c->tool_calls[i].arguments ? strlen(c->tool_calls[i].arguments) : 0;
        assert_true(al <= (256u << 10));
        total += al;
    }
    assert_true(total <= (4u << 20));
    assert_true(total >= (4u << 20) - (256u << 10));
    assert_int_equal(strlen(c->tool_calls[0].arguments), 256u << 10);
    model_parser_destroy(p);
    free(body);
}

static void test_model_parser_sniffed_content_type(void **state)
{
    (void)state;
    /* the same stream labelled text/plain, or with no content type, parses the same */
    struct mt_exchange x = anthropic((const uint8_t *)SSE, strlen(SSE), "text/event-stream", NULL);
    char want[1 << 14];
    mt_run(&x, MT_WHOLE, want, sizeof(want));
    char *lead = malloc(strlen(SSE) + 4);
    snprintf(lead, strlen(SSE) + 4, "\r\n\n%s", SSE);
    x = anthropic((const uint8_t *)lead, strlen(lead), "text/plain", NULL);
    char *r = mt_run_all_splits(&x);
    assert_string_equal(r, want);
    free(r);
    x = anthropic((const uint8_t *)SSE, strlen(SSE), "", NULL);
    r = mt_run_all_splits(&x);
    assert_string_equal(r, want);
    free(r);
    free(lead);
    /* a JSON body labelled text/plain */
    const char *json = " {\"id\":\"msg_j\",\"model\":\"claude-opus-4-5\",\"content\":[],"
                       "\"stop_reason\":\"end_turn\",\"usage\":{\"input_tokens\":1,"
                       "\"output_tokens\":2}}";
    x = anthropic((const uint8_t *)json, strlen(json), "text/plain", NULL);
    r = mt_run_all_splits(&x);
    assert_has(r,
               "id=msg_j stream=1 http=200 status=ok err=(null)/(null) stop=end_turn in=1 out=2 ");
    assert_has(r, "pe=0");
    free(r);
}

/* ttft_us of SSE fed in three timed pieces, cut before `second` and before `third`. */
static int64_t ttft_of(const char *host, const char *target, const char *ct, const char *body,
                       const char *second, const char *third)
{
    struct model_route r;
    assert_true(model_detect(NULL, host, "POST", target, strlen(target), &r));
    struct model_parser *p = NULL;
    assert_int_equal(model_parser_create(&r, NULL, 1000, &p), 0);
    model_parser_response_head(p, 200, ct, strlen(ct), NULL, 0);
    const char *b = second ? strstr(body, second) : body + strlen(body);
    const char *c = third ? strstr(body, third) : body + strlen(body);
    assert_non_null(b);
    assert_non_null(c);
    model_parser_response(p, (const uint8_t *)body, (size_t)(b - body), 1100);
    model_parser_response(p, (const uint8_t *)b, (size_t)(c - b), 1500);
    model_parser_response(p, (const uint8_t *)c, strlen(c), 1900);
    int64_t t = model_parser_finish(p, true, 3000)->ttft_us;
    model_parser_destroy(p);
    return t;
}

static void test_model_parser_ttft_first_content(void **state)
{
    (void)state;
    /* the time of the first content event, not of message_start or ping */
    const char *a = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":"
                    "\"m\",\"model\":\"x\"}}\n\nevent: ping\ndata: {\"type\":\"ping\"}\n\n"
                    "event: content_block_start\ndata: {\"type\":\"content_block_start\","
                    "\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n"
                    "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
    assert_int_equal(ttft_of("api.anthropic.com", "/v1/messages", "text/event-stream", a,
                             "event: ping", "event: content_block_start"),
                     900);
    const char *c = "data: {\"id\":\"c\",\"model\":\"g\",\"choices\":[{\"index\":0,\"delta\":"
                    "{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n"
                    "data: {\"id\":\"c\",\"model\":\"g\",\"choices\":[{\"index\":0,\"delta\":"
                    "{\"content\":null}}]}\n\n"
                    "data: {\"id\":\"c\",\"model\":\"g\",\"choices\":[{\"index\":0,\"delta\":"
                    "{\"content\":\"Hi\"}}]}\n\ndata: [DONE]\n\n";
    assert_int_equal(ttft_of("api.openai.com", "/v1/chat/completions", "text/event-stream", c,
                             "data: {\"id\":\"c\",\"model\":\"g\",\"choices\":[{\"index\":0,"
                             "\"delta\":{\"content\":null",
                             "data: {\"id\":\"c\",\"model\":\"g\",\"choices\":[{\"index\":0,"
                             "\"delta\":{\"content\":\"Hi"),
                     900);
    const char *rs = "data: {\"type\":\"response.created\",\"response\":{\"id\":\"r\"}}\n\n"
                     "data: {\"type\":\"response.output_item.added\",\"output_index\":0,"
                     "\"item\":{\"type\":\"function_call\",\"call_id\":\"k\",\"name\":\"f\"}}\n\n"
                     "data: {\"type\":\"response.completed\",\"response\":{\"id\":\"r\"}}\n\n";
    assert_int_equal(ttft_of("api.openai.com", "/v1/responses", "text/event-stream", rs,
                             "data: {\"type\":\"response.output_item.added\"", NULL),
                     500);
    const char *g = "data: {\"usageMetadata\":{\"promptTokenCount\":3},\"modelVersion\":\"m\"}\n\n"
                    "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"a\"}]}}],"
                    "\"modelVersion\":\"m\"}\n\n";
    assert_int_equal(ttft_of("generativelanguage.googleapis.com",
                             "/v1beta/models/m:streamGenerateContent?alt=sse", "text/event-stream",
                             g, "data: {\"candidates\"", NULL),
                     500);
    /* a JSON response, or a stream without content: the first byte */
    const char *j = "{\"id\":\"m\",\"model\":\"x\",\"content\":[{\"type\":\"text\",\"text\":"
                    "\"hi\"}]}";
    assert_int_equal(
        ttft_of("api.anthropic.com", "/v1/messages", "application/json", j, "\"content\"", NULL),
        100);
    const char *e = "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"x\"}}\n\n";
    assert_int_equal(
        ttft_of("api.anthropic.com", "/v1/messages", "text/event-stream", e, "data:", NULL), 100);
}

static void test_model_parser_request_compressed(void **state)
{
    (void)state;
    const char *req = "{\"model\":\"gpt-5.5\",\"stream\":true,\"input\":[{\"type\":"
                      "\"function_call_output\",\"call_id\":\"call_9\",\"output\":\"done\"}]}";
    struct model_route r;
    assert_true(model_detect(NULL, "api.openai.com", "POST", "/v1/responses", 13, &r));
    size_t n = 0;
    uint8_t *z = ct_zstd(req, strlen(req), &n);
    uint8_t *g = NULL;
    /* zstd and gzip request bodies, fed byte by byte */
    for (int k = 0; k < 2; k++) {
        const uint8_t *body = z;
        size_t bl = n;
        const char *ce = "zstd";
        if (k == 1) {
            g = ct_deflate(req, strlen(req), 15 + 16, &bl);
            body = g;
            ce = "gzip";
        }
        struct model_parser *p = NULL;
        assert_int_equal(model_parser_create(&r, NULL, 0, &p), 0);
        model_parser_request_head(p, ce, strlen(ce));
        for (size_t i = 0; i < bl; i++)
            model_parser_request(p, body + i, 1);
        struct model_call *c = model_parser_finish(p, false, 1);
        assert_string_equal(c->model_requested, "gpt-5.5");
        assert_true(c->stream);
        assert_int_equal(c->n_tool_results, 1);
        assert_string_equal(c->tool_results[0].id, "call_9");
        assert_false(c->parse_error);
        model_parser_destroy(p);
    }
    /* plain JSON labelled zstd, and an unknown coding: marked, nothing invented */
    const char *labels[] = {"zstd", "compress"};
    for (int k = 0; k < 2; k++) {
        struct model_parser *p = NULL;
        assert_int_equal(model_parser_create(&r, NULL, 0, &p), 0);
        model_parser_request_head(p, labels[k], strlen(labels[k]));
        model_parser_request(p, (const uint8_t *)req, strlen(req));
        struct model_call *c = model_parser_finish(p, false, 1);
        assert_true(c->parse_error);
        assert_int_equal(c->n_tool_results, 0);
        model_parser_destroy(p);
    }
    free(z);
    free(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_model_detect_routes),
        cmocka_unit_test(test_model_parser_response_compressed),
        cmocka_unit_test(test_model_parser_bad_encoding),
        cmocka_unit_test(test_model_parser_garbage_bodies),
        cmocka_unit_test(test_model_parser_request_bad),
        cmocka_unit_test(test_model_parser_oversized_event),
        cmocka_unit_test(test_model_parser_no_response),
        cmocka_unit_test(test_model_parser_long_previews),
        cmocka_unit_test(test_model_parser_argument_caps),
        cmocka_unit_test(test_model_parser_sniffed_content_type),
        cmocka_unit_test(test_model_parser_ttft_first_content),
        cmocka_unit_test(test_model_parser_request_compressed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
