/*
 * Gemini API: generateContent (JSON) and streamGenerateContent, either as
 * SSE (alt=sse) or as one JSON array whose elements arrive over time; each
 * chunk is a GenerateContentResponse merged the same way. Function calls
 * come whole in functionCall parts; usageMetadata is cumulative, so the
 * last one wins. Gemini counts cached tokens inside promptTokenCount and
 * thinking tokens apart from candidatesTokenCount; struct model_call takes
 * the cached ones out of input_tokens and adds thoughts to output_tokens.
 */
#include "model_impl.h"

#include <string.h>

static bool str_is(json_t *v, const char *s)
{
    return json_is_string(v) && strcmp(json_string_value(v), s) == 0;
}

/* Does this content hold only what the agent sends back (function responses)? */
static bool has_function_response(json_t *content)
{
    size_t i;
    json_t *part;
    json_array_foreach(json_object_get(content, "parts"), i, part)
    {
        if (json_object_get(part, "functionResponse"))
            return true;
    }
    return false;
}

static void request(struct model_parser *p, json_t *root)
{
    struct model_call *c = &p->call;
    json_t *sys = json_object_get(root, "systemInstruction");
    if (!sys)
        sys = json_object_get(root, "system_instruction");
    if (json_is_object(sys))
        c->system_preview = model_keep_content(p, json_object_get(sys, "parts"), MODEL_PREVIEW_MAX);
    else if (json_is_string(sys))
        c->system_preview = model_keep_content(p, sys, MODEL_PREVIEW_MAX);
    json_t *tools = json_object_get(root, "tools");
    if (json_is_array(tools)) {
        int64_t n = 0;
        size_t i;
        json_t *t;
        json_array_foreach(tools, i, t)
        {
            json_t *decl = json_object_get(t, "functionDeclarations");
            if (!decl)
                decl = json_object_get(t, "function_declarations");
            n += json_is_array(decl) ? (int64_t)json_array_size(decl) : 1;
        }
        c->tool_count = n;
    }
    json_t *contents = json_object_get(root, "contents");
    if (!json_is_array(contents))
        return;
    c->message_count = (int64_t)json_array_size(contents);
    /* the new tool results: function responses after the last model turn */
    size_t start = json_array_size(contents);
    while (start > 0) {
        json_t *ct = json_array_get(contents, start - 1);
        if (str_is(json_object_get(ct, "role"), "model") && !has_function_response(ct))
            break;
        start--;
    }
    for (size_t i = start; i < json_array_size(contents); i++) {
        size_t j;
        json_t *part;
        json_array_foreach(json_object_get(json_array_get(contents, i), "parts"), j, part)
        {
            json_t *fr = json_object_get(part, "functionResponse");
            if (!json_is_object(fr))
                continue;
            const char *id = NULL;
            /* the API's function calls may carry no id: the name is what links them */
            model_set_str(p, &id, json_object_get(fr, "name"), 256);
            json_t *resp = json_object_get(fr, "response");
            bool is_error = json_object_get(resp, "error") != NULL;
            json_t *shown = json_object_get(resp, is_error ? "error" : "output");
            model_add_result(p, id, is_error,
                             model_keep_content(p, shown ? shown : resp, MODEL_PREVIEW_MAX));
        }
    }
}

static void usage(struct model_call *c, int64_t prompt, int64_t cached, int64_t cand_n,
                  int64_t thoughts)
{
    if (prompt >= 0)
        c->input_tokens = cached > 0 && cached <= prompt ? prompt - cached : prompt;
    if (cached >= 0)
        c->cache_read_tokens = cached;
    if (thoughts >= 0)
        c->reasoning_tokens = thoughts;
    if (cand_n >= 0 || thoughts >= 0)
        c->output_tokens = (cand_n > 0 ? cand_n : 0) + (thoughts > 0 ? thoughts : 0);
}

static void chunk(struct model_parser *p, json_t *root)
{
    struct model_call *c = &p->call;
    json_t *err = json_object_get(root, "error");
    if (json_is_object(err)) {
        json_t *type = json_object_get(err, "status");
        model_set_error(p, json_is_string(type) ? type : json_object_get(err, "code"),
                        json_object_get(err, "message"));
        return;
    }
    model_set_str(p, &c->model_answered, json_object_get(root, "modelVersion"), 256);
    model_set_str(p, &c->response_id, json_object_get(root, "responseId"), 256);
    json_t *cand = json_array_get(json_object_get(root, "candidates"), 0);
    json_t *fr = json_object_get(cand, "finishReason");
    if (json_is_string(fr)) {
        model_set_str(p, &c->stop_reason, fr, 64);
        p->saw_end = true;
    }
    size_t i;
    json_t *part;
    json_t *parts = json_object_get(json_object_get(cand, "content"), "parts");
    if (json_array_size(parts) > 0)
        model_first_token(p);
    json_array_foreach(parts, i, part)
    {
        json_t *fc = json_object_get(part, "functionCall");
        if (!json_is_object(fc))
            continue;
        struct model_tool *t = model_tool(p, p->seq++, true);
        if (!t)
            continue;
        model_set_str(p, &t->id, json_object_get(fc, "id"), 256);
        model_set_str(p, &t->name, json_object_get(fc, "name"), 256);
        const char *args = model_keep_json(p, json_object_get(fc, "args"), MODEL_ARGS_MAX);
        if (args)
            model_tool_args_set(p, t, args, strlen(args));
    }
    json_t *u = json_object_get(root, "usageMetadata");
    if (json_is_object(u)) {
        int64_t prompt = -1, cached = -1, cand_n = -1, thoughts = -1;
        model_set_int(&prompt, json_object_get(u, "promptTokenCount"));
        model_set_int(&cached, json_object_get(u, "cachedContentTokenCount"));
        model_set_int(&cand_n, json_object_get(u, "candidatesTokenCount"));
        model_set_int(&thoughts, json_object_get(u, "thoughtsTokenCount"));
        usage(c, prompt, cached, cand_n, thoughts);
    }
}

/* An integer counter straight from the text: -1 when absent; false when not simple. */
static bool fast_count(const char *data, const char *end, const char *key, int64_t *out)
{
    *out = -1;
    const char *k = model_find(data, (size_t)(end - data), key);
    if (!k)
        return true;
    const char *v = model_fast_value(k, end, key);
    return v && model_fast_int(v, end, out);
}

/*
 * Most chunks carry only text and the running usage: read the counters from
 * the text (keys with raw quotes cannot come from inside a text part) and
 * skip jansson. Chunks with calls, errors, the finish reason, or the first
 * one (model and response id) take the full path. True when handled.
 */
static bool chunk_fast(struct model_parser *p, const char *data, size_t len)
{
    if (!p->call.model_answered || model_contains(data, len, "\"functionCall\"") ||
        model_contains(data, len, "\"error\"") || model_contains(data, len, "\"finishReason\""))
        return false;
    const char *end = data + len;
    if (!p->first_token && model_contains(data, len, "\"parts\""))
        model_first_token(p);
    /* the counters live in usageMetadata, after the text: search only from there */
    const char *u = model_find(data, len, "\"usageMetadata\"");
    if (u) {
        int64_t prompt, cached, cand_n, thoughts;
        if (!fast_count(u, end, "\"promptTokenCount\"", &prompt) ||
            !fast_count(u, end, "\"cachedContentTokenCount\"", &cached) ||
            !fast_count(u, end, "\"candidatesTokenCount\"", &cand_n) ||
            !fast_count(u, end, "\"thoughtsTokenCount\"", &thoughts))
            return false;
        usage(&p->call, prompt, cached, cand_n, thoughts);
    }
    p->saw_response = true;
    return true;
}

static void event(struct model_parser *p, const char *ev, size_t ev_len, const char *data,
                  size_t len)
{
    (void)ev;
    (void)ev_len;
    if (chunk_fast(p, data, len))
        return;
    json_t *root = model_parse_json(p, data, len);
    if (!root)
        return;
    chunk(p, root);
    json_decref(root);
}

static void json_response(struct model_parser *p, json_t *root)
{
    chunk(p, root);
    if (!p->call.stream)
        p->saw_end = true;
}

const struct model_provider_ops model_gemini_ops = {
    .request = request,
    .event = event,
    .json = json_response,
};
