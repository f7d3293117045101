/*
 * unit.mitm.model_gemini: generateContent (JSON) and streamGenerateContent
 * both as SSE (alt=sse, what Gemini CLI uses) and as a JSON array arriving
 * over time; cumulative usageMetadata (cached and thinking tokens);
 * functionCall parts; functionResponse results in the request; an error in
 * the stream; an HTTP error. Every body is also fed split at every byte
 * boundary and byte by byte.
 */
#include "model_test.h"

static const char *REQ =
    "{\"contents\":[{\"role\":\"user\",\"parts\":[{\"text\":\"make hello.txt\"}]},"
    "{\"role\":\"model\",\"parts\":[{\"functionCall\":{\"id\":\"c1\",\"name\":\"write_file\","
    "\"args\":{}},\"thoughtSignature\":\"skip\"}]},"
    "{\"role\":\"user\",\"parts\":[{\"functionResponse\":{\"id\":\"c1\",\"name\":\"write_file\","
    "\"response\":{\"output\":\"Successfully created and wrote to new file\"}}},"
    "{\"functionResponse\":{\"name\":\"read_file\",\"response\":{\"error\":\"ENOENT\"}}}]}],"
    "\"systemInstruction\":{\"role\":\"user\",\"parts\":[{\"text\":\"You are Gemini CLI.\"}]},"
    "\"tools\":[{\"functionDeclarations\":[{\"name\":\"write_file\"},{\"name\":\"read_file\"},"
    "{\"name\":\"glob\"}]}],\"generationConfig\":{\"temperature\":1}}";

static const char *SSE =
    "data: {\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":[{\"text\":\"Sure\","
    "\"thought\":true}]}}],\"usageMetadata\":{\"promptTokenCount\":5000,"
    "\"cachedContentTokenCount\":4000,\"thoughtsTokenCount\":40,\"totalTokenCount\":5040},"
    "\"modelVersion\":\"gemini-2.5-flash\",\"responseId\":\"r-1\"}\r\n\r\n"
    "data: {\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":[{\"functionCall\":"
    "{\"name\":\"write_file\",\"args\":{\"file_path\":\"/root/hello.txt\",\"content\":"
    "\"hi\"}}},{\"functionCall\":{\"name\":\"glob\",\"args\":{\"pattern\":\"*\"}}}]},"
    "\"finishReason\":\"STOP\",\"index\":0}],\"usageMetadata\":{\"promptTokenCount\":5000,"
    "\"candidatesTokenCount\":25,\"cachedContentTokenCount\":4000,\"thoughtsTokenCount\":60,"
    "\"totalTokenCount\":5085},\"modelVersion\":\"gemini-2.5-flash\",\"responseId\":"
    "\"r-1\"}\r\n\r\n";

static struct mt_exchange ex(const char *target, const char *ct, const char *body)
{
    return (struct mt_exchange){
        .host = "generativelanguage.googleapis.com",
        .target = target,
        .request = REQ,
        .status = 200,
        .content_type = ct,
        .body = (const uint8_t *)body,
        .body_len = strlen(body),
        .complete = true,
    };
}

static const char *EXPECT_HEAD =
    "provider=gemini api=generate req=gemini-2.5-flash ans=gemini-2.5-flash id=r-1 stream=1 "
    "http=200 status=ok err=(null)/(null) stop=STOP in=1000 out=85 cr=4000 cw=-1 rs=60 msgs=3 "
    "tools=3 sys=You are Gemini CLI. pe=0 tr=0\n";

static void check_calls(const char *r)
{
    assert_has(r, EXPECT_HEAD);
    assert_has(r,
               "call (null) write_file {\"file_path\":\"/root/hello.txt\",\"content\":\"hi\"}\n");
    assert_has(r, "call (null) glob {\"pattern\":\"*\"}\n");
    /* results are named by function (API calls may have no id); an error response is flagged */
    assert_has(r, "result write_file 0 Successfully created and wrote to new file\n");
    assert_has(r, "result read_file 1 ENOENT\n");
}

static void test_gemini_sse_function_calls(void **state)
{
    (void)state;
    struct mt_exchange x = ex("/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
                              "text/event-stream", SSE);
    char *r = mt_run_all_splits(&x);
    check_calls(r);
    free(r);
}

static void test_gemini_json_array_stream(void **state)
{
    (void)state;
    /* the same chunks as a JSON array (no alt=sse) */
    const char *body =
        "[{\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":[{\"text\":\"Sure }]\\\"\","
        "\"thought\":true}]}}],\"usageMetadata\":{\"promptTokenCount\":5000,"
        "\"cachedContentTokenCount\":4000,\"thoughtsTokenCount\":40,\"totalTokenCount\":5040},"
        "\"modelVersion\":\"gemini-2.5-flash\",\"responseId\":\"r-1\"}\r\n,\r\n"
        "{\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":[{\"functionCall\":"
        "{\"name\":\"write_file\",\"args\":{\"file_path\":\"/root/hello.txt\",\"content\":"
        "\"hi\"}}},{\"functionCall\":{\"name\":\"glob\",\"args\":{\"pattern\":\"*\"}}}]},"
        "\"finishReason\":\"STOP\",\"index\":0}],\"usageMetadata\":{\"promptTokenCount\":5000,"
        "\"candidatesTokenCount\":25,\"cachedContentTokenCount\":4000,\"thoughtsTokenCount\":60,"
        "\"totalTokenCount\":5085},\"modelVersion\":\"gemini-2.5-flash\",\"responseId\":"
        "\"r-1\"}\r\n]";
    struct mt_exchange x =
        ex("/v1beta/models/gemini-2.5-flash:streamGenerateContent", "application/json", body);
    char *r = mt_run_all_splits(&x);
    check_calls(r);
    free(r);
}

static void test_gemini_generate_json(void **state)
{
    (void)state;
    const char *body = "{\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":[{\"text\":"
                       "\"{\\\"complexity_score\\\": 2}\"}]},\"finishReason\":\"STOP\"}],"
                       "\"usageMetadata\":{\"promptTokenCount\":300,\"candidatesTokenCount\":12,"
                       "\"totalTokenCount\":312},\"modelVersion\":\"gemini-3-flash-preview\"}";
    struct mt_exchange x =
        ex("/v1beta/models/gemini-3-flash-preview:generateContent", "application/json", body);
    x.request = "{\"contents\":[{\"role\":\"user\",\"parts\":[{\"text\":\"rate\"}]}]}";
    char *r = mt_run_all_splits(&x);
    assert_has(r, "req=gemini-3-flash-preview ans=gemini-3-flash-preview id=(null) stream=0 "
                  "http=200 status=ok err=(null)/(null) stop=STOP in=300 out=12 cr=-1 cw=-1 "
                  "rs=-1 msgs=1 tools=-1 sys=(null) pe=0 tr=0\n");
    free(r);
}

static void test_gemini_sse_error_and_cut(void **state)
{
    (void)state;
    const char *body =
        "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"a\"}]}}],"
        "\"modelVersion\":\"gemini-2.5-pro\"}\n\n"
        "data: {\"error\":{\"code\":503,\"message\":\"The model is overloaded.\",\"status\":"
        "\"UNAVAILABLE\"}}\n\n";
    struct mt_exchange x = ex("/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse",
                              "text/event-stream", body);
    char *r = mt_run_all_splits(&x);
    assert_has(r, "status=error err=UNAVAILABLE/The model is overloaded. ");
    free(r);
    /* no finishReason and no error: the stream was cut */
    const char *cut = "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"a\"}]}}]}\n\n";
    x = ex("/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse", "text/event-stream", cut);
    x.complete = false;
    r = mt_run_all_splits(&x);
    assert_has(r, "status=incomplete ");
    free(r);
}

static void test_gemini_http_error(void **state)
{
    (void)state;
    const char *body = "{\n  \"error\": {\n    \"code\": 400,\n    \"message\": \"API key not "
                       "valid.\",\n    \"status\": \"INVALID_ARGUMENT\"\n  }\n}\n";
    struct mt_exchange x =
        ex("/v1beta/models/gemini-2.5-flash:generateContent", "application/json", body);
    x.status = 400;
    char *r = mt_run_all_splits(&x);
    assert_has(r, "http=400 status=error err=INVALID_ARGUMENT/API key not valid. ");
    assert_has(r, "pe=0");
    free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gemini_sse_function_calls),
        cmocka_unit_test(test_gemini_json_array_stream),
        cmocka_unit_test(test_gemini_generate_json),
        cmocka_unit_test(test_gemini_sse_error_and_cut),
        cmocka_unit_test(test_gemini_http_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
