/*
 * unit.mitm.model_openai: Chat Completions (JSON; SSE with tool-call
 * deltas by index, the final usage chunk and [DONE]) and Responses (JSON;
 * SSE response.* events with function_call and custom_tool_call items and
 * their argument deltas, response.completed usage; an error event; a stream
 * without response.completed). Every stream is also fed split at every byte
 * boundary and byte by byte.
 */
#include "model_test.h"

static const char *CHAT_REQ =
    "{\"model\":\"gpt-5.4\",\"stream\":true,\"stream_options\":{\"include_usage\":true},"
    "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\"}},"
    "{\"type\":\"function\",\"function\":{\"name\":\"get_time\"}}],"
    "\"messages\":[{\"role\":\"developer\",\"content\":\"You help.\"},"
    "{\"role\":\"user\",\"content\":\"weather?\"},"
    "{\"role\":\"assistant\",\"tool_calls\":[{\"id\":\"call_a\",\"type\":\"function\","
    "\"function\":{\"name\":\"get_weather\",\"arguments\":\"{}\"}},{\"id\":\"call_b\"}]},"
    "{\"role\":\"tool\",\"tool_call_id\":\"call_a\",\"content\":\"sunny\"},"
    "{\"role\":\"tool\",\"tool_call_id\":\"call_b\",\"content\":[{\"type\":\"text\","
    "\"text\":\"noon\"}]}]}";

static const char *CHAT_STREAM =
    "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"model\":"
    "\"gpt-5.4-2026-03-05\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\","
    "\"content\":null,\"tool_calls\":[{\"index\":0,\"id\":\"call_x\",\"type\":\"function\","
    "\"function\":{\"name\":\"get_weather\",\"arguments\":\"\"}}]},\"finish_reason\":null}],"
    "\"usage\":null}\n\n"
    "data: {\"id\":\"chatcmpl-1\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":"
    "[{\"index\":0,\"function\":{\"arguments\":\"{\\\"loc\"}}]},\"finish_reason\":null}],"
    "\"usage\":null}\n\n"
    "data: {\"id\":\"chatcmpl-1\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":"
    "[{\"index\":1,\"id\":\"call_y\",\"type\":\"function\",\"function\":{\"name\":\"get_time\","
    "\"arguments\":\"{\\\"tz\\\":\"}}]},\"finish_reason\":null}],\"usage\":null}\n\n"
    "data: {\"id\":\"chatcmpl-1\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":"
    "[{\"index\":0,\"function\":{\"arguments\":\"ation\\\":\\\"Paris\\\"}\"}}]},"
    "\"finish_reason\":null}],\"usage\":null}\n\n"
    "data: {\"id\":\"chatcmpl-1\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":"
    "[{\"index\":1,\"function\":{\"arguments\":\"\\\"CET\\\"}\"}}]},\"finish_reason\":null}],"
    "\"usage\":null}\n\n"
    "data: {\"id\":\"chatcmpl-1\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":"
    "\"tool_calls\"}],\"usage\":null}\n\n"
    "data: {\"id\":\"chatcmpl-1\",\"choices\":[],\"usage\":{\"prompt_tokens\":1200,"
    "\"completion_tokens\":340,\"total_tokens\":1540,\"prompt_tokens_details\":"
    "{\"cached_tokens\":1024},\"completion_tokens_details\":{\"reasoning_tokens\":256}}}\n\n"
    "data: [DONE]\n\n";

static struct mt_exchange ex(const char *target, const char *req, const char *ct, const char *body)
{
    return (struct mt_exchange){
        .host = "api.openai.com",
        .target = target,
        .request = req,
        .status = 200,
        .content_type = ct,
        .body = (const uint8_t *)body,
        .body_len = strlen(body),
        .complete = true,
    };
}

static void test_chat_stream_tool_calls(void **state)
{
    (void)state;
    struct mt_exchange x = ex("/v1/chat/completions", CHAT_REQ, "text/event-stream", CHAT_STREAM);
    char *r = mt_run_all_splits(&x);
    /* cached tokens come out of the input; reasoning stays inside the output */
    assert_has(r, "provider=openai api=chat req=gpt-5.4 ans=gpt-5.4-2026-03-05 id=chatcmpl-1 "
                  "stream=1 http=200 status=ok err=(null)/(null) stop=tool_calls in=176 out=340 "
                  "cr=1024 cw=-1 rs=256 msgs=5 tools=2 sys=You help. pe=0 tr=0\n");
    assert_has(r, "call call_x get_weather {\"location\":\"Paris\"}\n");
    assert_has(r, "call call_y get_time {\"tz\":\"CET\"}\n");
    assert_has(r, "result call_a 0 sunny\nresult call_b 0 noon\n");
    free(r);
}

static void test_chat_stream_without_done(void **state)
{
    (void)state;
    char body[8192];
    const char *done = strstr(CHAT_STREAM, "data: [DONE]");
    size_t n = (size_t)(done - CHAT_STREAM);
    memcpy(body, CHAT_STREAM, n);
    body[n] = '\0';
    struct mt_exchange x = ex("/v1/chat/completions", CHAT_REQ, "text/event-stream", body);
    char *r = mt_run_all_splits(&x);
    assert_has(r, "status=incomplete ");
    assert_has(r, "in=176 out=340 ");
    free(r);
}

static void test_chat_stream_error_chunk(void **state)
{
    (void)state;
    const char *body =
        "data: {\"id\":\"chatcmpl-2\",\"model\":\"gpt-5.4\",\"choices\":[{\"index\":0,\"delta\":"
        "{\"content\":\"Hel\"},\"finish_reason\":null}]}\n\n"
        "data: {\"error\":{\"message\":\"The server had an error\",\"type\":\"server_error\","
        "\"code\":null}}\n\n";
    struct mt_exchange x = ex("/v1/chat/completions", CHAT_REQ, "text/event-stream", body);
    char *r = mt_run_all_splits(&x);
    assert_has(r, "status=error err=server_error/The server had an error ");
    free(r);
}

static void test_chat_json_response(void **state)
{
    (void)state;
    const char *body =
        "{\"id\":\"chatcmpl-3\",\"object\":\"chat.completion\",\"model\":\"gpt-5-mini\","
        "\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":null,"
        "\"tool_calls\":[{\"id\":\"call_z\",\"type\":\"function\",\"function\":{\"name\":"
        "\"lookup\",\"arguments\":\"{\\\"q\\\":1}\"}}]},\"finish_reason\":\"tool_calls\"}],"
        "\"usage\":{\"prompt_tokens\":50,\"completion_tokens\":7,\"total_tokens\":57}}";
    struct mt_exchange x =
        ex("/v1/chat/completions",
           "{\"model\":\"gpt-5-mini\",\"messages\":[{\"role\":\"user\",\"content\":\"q\"}]}",
           "application/json", body);
    char *r = mt_run_all_splits(&x);
    assert_has(r, "req=gpt-5-mini ans=gpt-5-mini id=chatcmpl-3 stream=0 http=200 status=ok "
                  "err=(null)/(null) stop=tool_calls in=50 out=7 cr=-1 cw=-1 rs=-1 msgs=1 ");
    assert_has(r, "call call_z lookup {\"q\":1}\n");
    free(r);
}

/* What Codex sends: code mode, tools as an input item, a function call output at the end. */
static const char *RESP_REQ =
    "{\"model\":\"gpt-5.5\",\"stream\":true,\"instructions\":\"You are Codex.\","
    "\"tool_choice\":\"auto\",\"tools\":[{\"type\":\"function\",\"name\":\"exec_command\"},"
    "{\"type\":\"custom\",\"name\":\"apply_patch\"}],"
    "\"input\":[{\"type\":\"message\",\"role\":\"user\",\"content\":[{\"type\":\"input_text\","
    "\"text\":\"hi\"}]},"
    "{\"type\":\"additional_tools\",\"tools\":[{\"type\":\"namespace\",\"name\":\"functions\","
    "\"tools\":[{\"name\":\"exec\"},{\"name\":\"wait\"},{\"name\":\"clock.sleep\"}]}]},"
    "{\"type\":\"function_call\",\"call_id\":\"call_1\",\"name\":\"exec_command\","
    "\"arguments\":\"{}\"},"
    "{\"type\":\"function_call_output\",\"call_id\":\"call_1\",\"output\":\"exit 0\"}]}";

static const char *RESP_STREAM =
    "event: response.created\n"
    "data: {\"type\":\"response.created\",\"sequence_number\":0,\"response\":{\"id\":"
    "\"resp_1\",\"model\":\"gpt-5.5-2026-04-01\",\"status\":\"in_progress\",\"output\":[]}}\n\n"
    "event: response.in_progress\n"
    "data: {\"type\":\"response.in_progress\",\"response\":{\"id\":\"resp_1\",\"status\":"
    "\"in_progress\"}}\n\n"
    "event: response.output_item.added\n"
    "data: {\"type\":\"response.output_item.added\",\"output_index\":0,\"item\":{\"type\":"
    "\"reasoning\",\"id\":\"rs_1\"}}\n\n"
    "event: response.output_item.done\n"
    "data: {\"type\":\"response.output_item.done\",\"output_index\":0,\"item\":{\"type\":"
    "\"reasoning\",\"id\":\"rs_1\"}}\n\n"
    "event: response.output_item.added\n"
    "data: {\"type\":\"response.output_item.added\",\"output_index\":1,\"item\":{\"type\":"
    "\"function_call\",\"id\":\"fc_1\",\"call_id\":\"call_2\",\"name\":\"exec_command\","
    "\"arguments\":\"\"}}\n\n"
    "event: response.function_call_arguments.delta\n"
    "data: {\"type\":\"response.function_call_arguments.delta\",\"output_index\":1,"
    "\"item_id\":\"fc_1\",\"delta\":\"{\\\"cmd\\\":\"}\n\n"
    "event: response.function_call_arguments.delta\n"
    "data: {\"type\":\"response.function_call_arguments.delta\",\"output_index\":1,"
    "\"item_id\":\"fc_1\",\"delta\":\"\\\"ls -l\\\"}\"}\n\n"
    "event: response.function_call_arguments.done\n"
    "data: {\"type\":\"response.function_call_arguments.done\",\"output_index\":1,"
    "\"item_id\":\"fc_1\",\"arguments\":\"{\\\"cmd\\\":\\\"ls -l\\\"}\"}\n\n"
    "event: response.output_item.done\n"
    "data: {\"type\":\"response.output_item.done\",\"output_index\":1,\"item\":{\"type\":"
    "\"function_call\",\"id\":\"fc_1\",\"call_id\":\"call_2\",\"name\":\"exec_command\","
    "\"arguments\":\"{\\\"cmd\\\":\\\"ls -l\\\"}\",\"status\":\"completed\"}}\n\n"
    "event: response.output_item.added\n"
    "data: {\"type\":\"response.output_item.added\",\"output_index\":2,\"item\":{\"type\":"
    "\"custom_tool_call\",\"id\":\"ctc_1\",\"call_id\":\"call_3\",\"name\":\"apply_patch\","
    "\"input\":\"\"}}\n\n"
    "event: response.custom_tool_call_input.delta\n"
    "data: {\"type\":\"response.custom_tool_call_input.delta\",\"output_index\":2,"
    "\"delta\":\"*** Begin Patch\\n\"}\n\n"
    "event: response.custom_tool_call_input.delta\n"
    "data: {\"type\":\"response.custom_tool_call_input.delta\",\"output_index\":2,"
    "\"delta\":\"*** End Patch\\n\"}\n\n"
    "event: response.output_text.delta\n"
    "data: {\"type\":\"response.output_text.delta\",\"output_index\":3,\"delta\":\"Done\"}\n\n"
    "event: response.completed\n"
    "data: {\"type\":\"response.completed\",\"response\":{\"id\":\"resp_1\",\"model\":"
    "\"gpt-5.5-2026-04-01\",\"status\":\"completed\",\"output\":[],\"usage\":{"
    "\"input_tokens\":9000,\"input_tokens_details\":{\"cached_tokens\":8000},"
    "\"output_tokens\":500,\"output_tokens_details\":{\"reasoning_tokens\":300},"
    "\"total_tokens\":9500}}}\n\n";

static void test_responses_stream_calls(void **state)
{
    (void)state;
    struct mt_exchange x = ex("/v1/responses", RESP_REQ, "text/event-stream", RESP_STREAM);
    char *r = mt_run_all_splits(&x);
    assert_has(r, "provider=openai api=responses req=gpt-5.5 ans=gpt-5.5-2026-04-01 id=resp_1 "
                  "stream=1 http=200 status=ok err=(null)/(null) stop=completed in=1000 out=500 "
                  "cr=8000 cw=-1 rs=300 msgs=4 tools=5 sys=You are Codex. pe=0 tr=0\n");
    assert_has(r, "call call_2 exec_command {\"cmd\":\"ls -l\"}\n");
    /* a custom tool call without a .done event: the deltas joined */
    assert_has(r, "call call_3 apply_patch *** Begin Patch\n*** End Patch\n\n");
    assert_has(r, "result call_1 0 exit 0\n");
    free(r);
}

static void test_responses_stream_no_event_lines(void **state)
{
    (void)state;
    /* event: lines are optional; the data's type decides */
    char *body = strdup(RESP_STREAM);
    char *w = body;
    for (const char *s = RESP_STREAM; *s;) {
        const char *nl = strchr(s, '\n');
        size_t n = (size_t)(nl - s) + 1;
        if (strncmp(s, "event:", 6) != 0) {
            memmove(w, s, n);
            w += n;
        }
        s += n;
    }
    *w = '\0';
    struct mt_exchange x = ex("/v1/responses", RESP_REQ, "text/event-stream", body);
    char *a = mt_run_all_splits(&x);
    char b[1 << 16];
    x = ex("/v1/responses", RESP_REQ, "text/event-stream", RESP_STREAM);
    mt_run(&x, MT_WHOLE, b, sizeof(b));
    assert_string_equal(a, b);
    free(a);
    free(body);
}

static void test_responses_stream_error_event(void **state)
{
    (void)state;
    const char *body =
        "event: response.created\n"
        "data: {\"type\":\"response.created\",\"response\":{\"id\":\"resp_2\",\"model\":"
        "\"gpt-5.5\"}}\n\n"
        "event: error\n"
        "data: {\"type\":\"error\",\"code\":\"rate_limit_exceeded\",\"message\":\"Slow down\"}\n\n";
    struct mt_exchange x = ex("/v1/responses", RESP_REQ, "text/event-stream", body);
    char *r = mt_run_all_splits(&x);
    assert_has(r, "id=resp_2 stream=1 http=200 status=error err=rate_limit_exceeded/Slow down ");
    free(r);
}

static void test_responses_failed_event(void **state)
{
    (void)state;
    const char *body =
        "data: {\"type\":\"response.failed\",\"response\":{\"id\":\"resp_3\",\"status\":"
        "\"failed\",\"error\":{\"code\":\"server_error\",\"message\":\"boom\"}}}\n\n";
    struct mt_exchange x = ex("/v1/responses", RESP_REQ, "text/event-stream", body);
    char *r = mt_run_all_splits(&x);
    assert_has(r, "status=error err=server_error/boom stop=failed ");
    free(r);
}

static void test_responses_json(void **state)
{
    (void)state;
    const char *body =
        "{\"id\":\"resp_4\",\"object\":\"response\",\"model\":\"gpt-5.4-mini\",\"status\":"
        "\"incomplete\",\"incomplete_details\":{\"reason\":\"max_output_tokens\"},"
        "\"output\":[{\"type\":\"function_call\",\"call_id\":\"call_7\",\"name\":\"f\","
        "\"arguments\":\"{\\\"a\\\":[1,2]}\"},{\"type\":\"message\",\"content\":[]}],"
        "\"usage\":{\"input_tokens\":10,\"input_tokens_details\":{\"cached_tokens\":0},"
        "\"output_tokens\":4,\"output_tokens_details\":{\"reasoning_tokens\":0}}}";
    struct mt_exchange x = ex("/v1/responses", "{\"model\":\"gpt-5.4-mini\",\"input\":\"hello\"}",
                              "application/json", body);
    char *r = mt_run_all_splits(&x);
    assert_has(r, "req=gpt-5.4-mini ans=gpt-5.4-mini id=resp_4 stream=0 http=200 status=ok "
                  "err=(null)/(null) stop=max_output_tokens in=10 out=4 cr=0 cw=-1 rs=0 msgs=1 ");
    assert_has(r, "call call_7 f {\"a\":[1,2]}\n");
    free(r);
}

static void test_openai_http_error(void **state)
{
    (void)state;
    const char *body = "{\"error\":{\"message\":\"Incorrect API key provided\",\"type\":"
                       "\"invalid_request_error\",\"param\":null,\"code\":\"invalid_api_key\"}}";
    struct mt_exchange x = ex("/v1/responses", RESP_REQ, "application/json", body);
    x.status = 401;
    char *r = mt_run_all_splits(&x);
    assert_has(r, "http=401 status=error err=invalid_request_error/Incorrect API key provided ");
    free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chat_stream_tool_calls),
        cmocka_unit_test(test_chat_stream_without_done),
        cmocka_unit_test(test_chat_stream_error_chunk),
        cmocka_unit_test(test_chat_json_response),
        cmocka_unit_test(test_responses_stream_calls),
        cmocka_unit_test(test_responses_stream_no_event_lines),
        cmocka_unit_test(test_responses_stream_error_event),
        cmocka_unit_test(test_responses_failed_event),
        cmocka_unit_test(test_responses_json),
        cmocka_unit_test(test_openai_http_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
