/*
 * unit.mitm.model_anthropic: the Messages API parser on the shapes Claude
 * Code sends and receives: a streamed turn with text, thinking and a tool
 * call whose input arrives over many input_json_delta pieces; a JSON
 * response; an error event mid-stream; a stream cut before message_stop; an
 * HTTP error. Every stream is also fed split at every byte boundary and byte
 * by byte, which must give the same result.
 */
#include "model_test.h"

static const char *REQ =
    "{\"model\":\"claude-sonnet-4-5\",\"stream\":true,\"max_tokens\":128000,"
    "\"system\":[{\"type\":\"text\",\"text\":\"You are Claude Code.\"},"
    "{\"type\":\"text\",\"text\":\"Be brief.\",\"cache_control\":{\"type\":\"ephemeral\"}}],"
    "\"tools\":[{\"name\":\"Write\"},{\"name\":\"Bash\"},{\"name\":\"Read\"}],"
    "\"messages\":["
    "{\"role\":\"user\",\"content\":\"make hello.txt\"},"
    "{\"role\":\"assistant\",\"content\":[{\"type\":\"tool_use\",\"id\":\"toolu_old\","
    "\"name\":\"Bash\",\"input\":{}}]},"
    "{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\",\"tool_use_id\":\"toolu_old\","
    "\"content\":\"done\"}]},"
    "{\"role\":\"assistant\",\"content\":[{\"type\":\"tool_use\",\"id\":\"toolu_1\","
    "\"name\":\"Write\",\"input\":{}}]},"
    "{\"role\":\"system\",\"content\":\"env block\"},"
    "{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\",\"tool_use_id\":\"toolu_1\","
    "\"is_error\":true,\"content\":[{\"type\":\"text\",\"text\":\"EACCES: permission "
    "denied\"}]},{\"type\":\"text\",\"text\":\"try again\"}]}]}";

static const char *STREAM =
    "event: message_start\n"
    "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_01\",\"type\":\"message\","
    "\"role\":\"assistant\",\"model\":\"claude-sonnet-4-5-20250929\",\"content\":[],"
    "\"stop_reason\":null,\"usage\":{\"input_tokens\":12,\"cache_creation_input_tokens\":300,"
    "\"cache_read_input_tokens\":4000,\"output_tokens\":1}}}\n\n"
    "event: ping\ndata: {\"type\": \"ping\"}\n\n"
    "event: content_block_start\n"
    "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":"
    "\"thinking\",\"thinking\":\"\"}}\n\n"
    "event: content_block_delta\n"
    "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"thinking_delta\","
    "\"thinking\":\"hmm\"}}\n\n"
    "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n"
    "event: content_block_start\n"
    "data: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"text\","
    "\"text\":\"\"}}\n\n"
    "event: content_block_delta\n"
    "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"text_delta\","
    "\"text\":\"I'll write it. \\\"type\\\":\\\"input_json_delta\\\"\"}}\n\n"
    "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":1}\n\n"
    "event: content_block_start\n"
    "data: {\"type\":\"content_block_start\",\"index\":2,\"content_block\":{\"type\":"
    "\"tool_use\",\"id\":\"toolu_2\",\"name\":\"Write\",\"input\":{}}}\n\n"
    "event: content_block_delta\n"
    "data: {\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":"
    "\"input_json_delta\",\"partial_json\":\"\"}}\n\n"
    "event: content_block_delta\n"
    "data: {\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":"
    "\"input_json_delta\",\"partial_json\":\"{\\\"file_path\\\": \\\"/r\"}}\n\n"
    "event: content_block_delta\n"
    "data: {\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":"
    "\"input_json_delta\",\"partial_json\":\"oot/hello.txt\\\", \\\"con\"}}\n\n"
    "event: content_block_delta\n"
    "data: {\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":"
    "\"input_json_delta\",\"partial_json\":\"tent\\\": \\\"hi\\\"}\"}}\n\n"
    "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":2}\n\n"
    "event: content_block_start\n"
    "data: {\"type\":\"content_block_start\",\"index\":3,\"content_block\":{\"type\":"
    "\"tool_use\",\"id\":\"toolu_3\",\"name\":\"Bash\",\"input\":{}}}\n\n"
    "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":3}\n\n"
    "event: message_delta\n"
    "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\","
    "\"stop_sequence\":null},\"usage\":{\"output_tokens\":87}}\n\n"
    "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";

static struct mt_exchange stream_exchange(const char *body)
{
    return (struct mt_exchange){
        .host = "api.anthropic.com",
        .target = "/v1/messages?beta=true",
        .request = REQ,
        .status = 200,
        .content_type = "text/event-stream; charset=utf-8",
        .body = (const uint8_t *)body,
        .body_len = strlen(body),
        .complete = true,
    };
}

static void test_anthropic_stream_tool_use(void **state)
{
    (void)state;
    struct mt_exchange x = stream_exchange(STREAM);
    char *r = mt_run_all_splits(&x);
    assert_has(r, "provider=anthropic api=messages req=claude-sonnet-4-5 "
                  "ans=claude-sonnet-4-5-20250929 id=msg_01 stream=1 http=200 status=ok "
                  "err=(null)/(null) stop=tool_use in=12 out=87 cr=4000 cw=300 rs=-1 msgs=6 "
                  "tools=3 sys=You are Claude Code.\nBe brief. pe=0 tr=0\n");
    /* input assembled from the pieces; a tool without deltas keeps its {} */
    assert_has(r, "call toolu_2 Write {\"file_path\": \"/root/hello.txt\", \"content\": \"hi\"}\n");
    assert_has(r, "call toolu_3 Bash {}\n");
    /* only the results after the last assistant turn: the new one, an error */
    assert_has(r, "result toolu_1 1 EACCES: permission denied\n");
    assert_null(strstr(r, "toolu_old"));
    free(r);
}

static void test_anthropic_stream_crlf(void **state)
{
    (void)state;
    /* the same stream with CRLF line ends parses the same */
    size_t n = strlen(STREAM);
    char *crlf = malloc(2 * n + 1);
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        if (STREAM[i] == '\n')
            crlf[j++] = '\r';
        crlf[j++] = STREAM[i];
    }
    crlf[j] = '\0';
    struct mt_exchange x = stream_exchange(crlf);
    char *a = mt_run_all_splits(&x);
    x = stream_exchange(STREAM);
    char b[1 << 16];
    mt_run(&x, MT_WHOLE, b, sizeof(b));
    assert_string_equal(a, b);
    free(a);
    free(crlf);
}

static void test_anthropic_stream_error_midstream(void **state)
{
    (void)state;
    const char *body =
        "event: message_start\n"
        "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_02\",\"model\":"
        "\"claude-opus-4-5\",\"usage\":{\"input_tokens\":5,\"output_tokens\":1}}}\n\n"
        "event: content_block_start\n"
        "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":"
        "\"tool_use\",\"id\":\"toolu_9\",\"name\":\"Write\",\"input\":{}}}\n\n"
        "event: content_block_delta\n"
        "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":"
        "\"input_json_delta\",\"partial_json\":\"{\\\"file_pa\"}}\n\n"
        "event: error\n"
        "data: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":"
        "\"Overloaded\"}}\n\n";
    struct mt_exchange x = stream_exchange(body);
    char *r = mt_run_all_splits(&x);
    assert_has(r, "status=error err=overloaded_error/Overloaded ");
    assert_has(r, "in=5 out=1 ");
    /* what was learned before the error stays, partial arguments and all */
    assert_has(r, "call toolu_9 Write {\"file_pa\n");
    free(r);
}

static void test_anthropic_stream_cut_short(void **state)
{
    (void)state;
    /* the connection broke after content_block_start: incomplete, not an error */
    char body[4096];
    const char *cut = strstr(
        STREAM, "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":2");
    assert_non_null(cut);
    size_t n = (size_t)(cut - STREAM);
    memcpy(body, STREAM, n);
    body[n] = '\0';
    struct mt_exchange x = stream_exchange(body);
    x.complete = false;
    char *r = mt_run_all_splits(&x);
    assert_has(r, "status=incomplete err=(null)/(null) stop=(null) in=12 out=1 ");
    assert_has(r, "call toolu_2 Write {}\n");
    free(r);
    /* framing said complete but message_stop never came: still incomplete */
    x.complete = true;
    char out[8192];
    mt_run(&x, MT_WHOLE, out, sizeof(out));
    assert_has(out, "status=incomplete ");
}

static void test_anthropic_json_response(void **state)
{
    (void)state;
    const char *body =
        "{\"id\":\"msg_03\",\"type\":\"message\",\"role\":\"assistant\",\"model\":"
        "\"claude-haiku-4-5-20251001\",\"content\":[{\"type\":\"text\",\"text\":\"ok\"},"
        "{\"type\":\"tool_use\",\"id\":\"toolu_4\",\"name\":\"Read\",\"input\":{\"file_path\":"
        "\"/etc/hosts\"}}],\"stop_reason\":\"tool_use\",\"usage\":{\"input_tokens\":20,"
        "\"output_tokens\":30,\"cache_read_input_tokens\":0,\"cache_creation_input_tokens\":0}}";
    struct mt_exchange x = {
        .host = "api.anthropic.com",
        .target = "/v1/messages",
        .request = "{\"model\":\"claude-haiku-4-5\",\"stream\":false,\"messages\":[{\"role\":"
                   "\"user\",\"content\":\"hi\"}],\"system\":\"plain system\"}",
        .status = 200,
        .content_type = "application/json",
        .body = (const uint8_t *)body,
        .body_len = strlen(body),
        .complete = true,
    };
    char *r = mt_run_all_splits(&x);
    assert_has(r, "req=claude-haiku-4-5 ans=claude-haiku-4-5-20251001 id=msg_03 stream=0 "
                  "http=200 status=ok err=(null)/(null) stop=tool_use in=20 out=30 cr=0 cw=0 "
                  "rs=-1 msgs=1 tools=-1 sys=plain system pe=0 tr=0\n");
    assert_has(r, "call toolu_4 Read {\"file_path\":\"/etc/hosts\"}\n");
    free(r);
}

static void test_anthropic_http_error(void **state)
{
    (void)state;
    const char *body = "{\"type\":\"error\",\"error\":{\"type\":\"rate_limit_error\","
                       "\"message\":\"Number of request tokens has exceeded your limit\"}}";
    struct mt_exchange x = {
        .host = "api.anthropic.com",
        .target = "/v1/messages?beta=true",
        .request = REQ,
        .status = 429,
        .content_type = "application/json",
        .body = (const uint8_t *)body,
        .body_len = strlen(body),
        .complete = true,
    };
    char *r = mt_run_all_splits(&x);
    assert_has(r, "http=429 status=error err=rate_limit_error/Number of request tokens has "
                  "exceeded your limit ");
    assert_has(r, "pe=0");
    free(r);
}

static void test_anthropic_stream_escapes_in_arguments(void **state)
{
    (void)state;
    /* escapes in argument pieces decode the same as a JSON parser would: \\u with surrogate
     * pairs, control escapes, an escape split between two pieces' values is not possible
     * (each piece is a whole JSON string), but a UTF-8 character split across pieces is */
    const char *body =
        "event: message_start\n"
        "data: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"model\":\"x\"}}\n\n"
        "event: content_block_start\n"
        "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":"
        "\"tool_use\",\"id\":\"t\",\"name\":\"W\",\"input\":{}}}\n\n"
        "event: content_block_delta\n"
        "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":"
        "\"input_json_delta\",\"partial_json\":\"{\\\"c\\\": \\\"caf\\u00e9 \\ud83d\\ude00 \"}}\n\n"
        "event: content_block_delta\n"
        "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":"
        "\"input_json_delta\",\"partial_json\":\"tab\\there\\\\n\\/ \\u20ac\\\"}\"}}\n\n"
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n"
        "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
    struct mt_exchange x = stream_exchange(body);
    char *r = mt_run_all_splits(&x);
    assert_has(r, "call t W {\"c\": \"caf\xc3\xa9 \xf0\x9f\x98\x80 tab\there\\n/ "
                  "\xe2\x82\xac\"}\n");
    assert_has(r, "pe=0");
    free(r);
    /* a lone surrogate is not valid JSON: that piece is lost and the result marked */
    const char *bad =
        "event: message_start\n"
        "data: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"model\":\"x\"}}\n\n"
        "event: content_block_start\n"
        "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":"
        "\"tool_use\",\"id\":\"t\",\"name\":\"W\",\"input\":{}}}\n\n"
        "event: content_block_delta\n"
        "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":"
        "\"input_json_delta\",\"partial_json\":\"\\ud83d{\"}}\n\n"
        "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
    x = stream_exchange(bad);
    r = mt_run_all_splits(&x);
    assert_has(r, "call t W {}\n");
    assert_has(r, "pe=1");
    free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_anthropic_stream_tool_use),
        cmocka_unit_test(test_anthropic_stream_crlf),
        cmocka_unit_test(test_anthropic_stream_error_midstream),
        cmocka_unit_test(test_anthropic_stream_cut_short),
        cmocka_unit_test(test_anthropic_json_response),
        cmocka_unit_test(test_anthropic_http_error),
        cmocka_unit_test(test_anthropic_stream_escapes_in_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
