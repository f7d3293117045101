/*
 * OpenAI: Chat Completions (POST /v1/chat/completions) and Responses (POST
 * /v1/responses), each as JSON or SSE. Chat streams tool calls as deltas by
 * index and usage in a last chunk before [DONE]; Responses streams
 * response.* events: output items (function_call, custom_tool_call) with
 * their argument deltas, and response.completed (or .incomplete / .failed)
 * with usage. OpenAI counts cached tokens inside the input and reasoning
 * tokens inside the output; struct model_call takes the cached ones out of
 * input_tokens and keeps reasoning inside output_tokens.
 */
#include "model_impl.h"

#include <string.h>

static bool str_is(json_t *v, const char *s)
{
    return json_is_string(v) && strcmp(json_string_value(v), s) == 0;
}

/* ---- requests ---- */

static void chat_request(struct model_parser *p, json_t *root)
{
    struct model_call *c = &p->call;
    json_t *msgs = json_object_get(root, "messages");
    if (!json_is_array(msgs))
        return;
    c->message_count = (int64_t)json_array_size(msgs);
    size_t i;
    json_t *m;
    json_array_foreach(msgs, i, m)
    {
        json_t *role = json_object_get(m, "role");
        if (str_is(role, "system") || str_is(role, "developer")) {
            c->system_preview = model_keep_content(p, json_object_get(m, "content"), 512);
            break;
        }
    }
    /* the new tool results: the trailing role=tool messages */
    size_t start = json_array_size(msgs);
    while (start > 0 && str_is(json_object_get(json_array_get(msgs, start - 1), "role"), "tool"))
        start--;
    for (i = start; i < json_array_size(msgs); i++) {
        m = json_array_get(msgs, i);
        const char *id = NULL;
        model_set_str(p, &id, json_object_get(m, "tool_call_id"), 256);
        model_add_result(p, id, false,
                         model_keep_content(p, json_object_get(m, "content"), MODEL_PREVIEW_MAX));
    }
}

static bool is_call_output(json_t *item)
{
    json_t *type = json_object_get(item, "type");
    return str_is(type, "function_call_output") || str_is(type, "custom_tool_call_output");
}

static int64_t count_tools(json_t *tools)
{
    int64_t n = 0;
    size_t i;
    json_t *t;
    json_array_foreach(tools, i, t)
    {
        json_t *inner = json_object_get(t, "tools");
        if (str_is(json_object_get(t, "type"), "namespace") && json_is_array(inner))
            n += count_tools(inner);
        else
            n++;
    }
    return n;
}

static void responses_request(struct model_parser *p, json_t *root)
{
    struct model_call *c = &p->call;
    json_t *instr = json_object_get(root, "instructions");
    if (instr)
        c->system_preview = model_keep_content(p, instr, MODEL_PREVIEW_MAX);
    json_t *input = json_object_get(root, "input");
    if (json_is_string(input)) {
        c->message_count = 1;
        return;
    }
    if (!json_is_array(input))
        return;
    c->message_count = (int64_t)json_array_size(input);
    size_t i;
    json_t *item;
    json_array_foreach(input, i, item)
    {
        /* tools handed over as an input item (Codex "code mode") */
        json_t *tools = json_object_get(item, "tools");
        if (str_is(json_object_get(item, "type"), "additional_tools") && json_is_array(tools))
            c->tool_count = (c->tool_count < 0 ? 0 : c->tool_count) + count_tools(tools);
    }
    size_t start = json_array_size(input);
    while (start > 0 && is_call_output(json_array_get(input, start - 1)))
        start--;
    for (i = start; i < json_array_size(input); i++) {
        item = json_array_get(input, i);
        const char *id = NULL;
        model_set_str(p, &id, json_object_get(item, "call_id"), 256);
        model_add_result(p, id, false,
                         model_keep_content(p, json_object_get(item, "output"), MODEL_PREVIEW_MAX));
    }
}

static void request(struct model_parser *p, json_t *root)
{
    struct model_call *c = &p->call;
    model_set_str(p, &c->model_requested, json_object_get(root, "model"), 256);
    if (json_is_true(json_object_get(root, "stream")))
        c->stream = true;
    json_t *tools = json_object_get(root, "tools");
    if (json_is_array(tools))
        c->tool_count = count_tools(tools);
    if (p->route.api == MODEL_API_CHAT)
        chat_request(p, root);
    else
        responses_request(p, root);
}

/* ---- usage and errors ---- */

static void usage(struct model_parser *p, json_t *u)
{
    if (!json_is_object(u))
        return;
    struct model_call *c = &p->call;
    bool chat = p->route.api == MODEL_API_CHAT;
    int64_t in = -1, cached = -1;
    model_set_int(&in, json_object_get(u, chat ? "prompt_tokens" : "input_tokens"));
    json_t *ind = json_object_get(u, chat ? "prompt_tokens_details" : "input_tokens_details");
    model_set_int(&cached, json_object_get(ind, "cached_tokens"));
    json_t *outd = json_object_get(u, chat ? "completion_tokens_details" : "output_tokens_details");
    model_set_int(&c->output_tokens,
                  json_object_get(u, chat ? "completion_tokens" : "output_tokens"));
    model_set_int(&c->reasoning_tokens, json_object_get(outd, "reasoning_tokens"));
    if (cached >= 0)
        c->cache_read_tokens = cached;
    if (in >= 0)
        c->input_tokens = cached > 0 && cached <= in ? in - cached : in;
}

static void error_obj(struct model_parser *p, json_t *e)
{
    json_t *type = json_object_get(e, "type");
    /* an "error" event carries its kind in "code"; its "type" is just "error" */
    if (!json_is_string(type) || str_is(type, "error"))
        type = json_object_get(e, "code");
    model_set_error(p, type, json_object_get(e, "message"));
}

/* ---- chat completions ---- */

static void chat_tool_delta(struct model_parser *p, json_t *tc, int64_t fallback)
{
    json_t *idx = json_object_get(tc, "index");
    int64_t key = json_is_integer(idx) ? (int64_t)json_integer_value(idx) : fallback;
    struct model_tool *t = model_tool(p, key, true);
    if (!t)
        return;
    model_set_str(p, &t->id, json_object_get(tc, "id"), 256);
    json_t *fn = json_object_get(tc, "function");
    model_set_str(p, &t->name, json_object_get(fn, "name"), 256);
    json_t *args = json_object_get(fn, "arguments");
    if (json_is_string(args))
        model_tool_args_append(p, t, json_string_value(args), json_string_length(args));
}

static void chat_object(struct model_parser *p, json_t *root)
{
    struct model_call *c = &p->call;
    json_t *err = json_object_get(root, "error");
    if (json_is_object(err)) {
        error_obj(p, err);
        return;
    }
    model_set_str(p, &c->response_id, json_object_get(root, "id"), 256);
    model_set_str(p, &c->model_answered, json_object_get(root, "model"), 256);
    usage(p, json_object_get(root, "usage"));
    size_t i;
    json_t *ch;
    json_array_foreach(json_object_get(root, "choices"), i, ch)
    {
        model_set_str(p, &c->stop_reason, json_object_get(ch, "finish_reason"), 64);
        /* a chunk has "delta", a whole response "message"; tool calls look alike */
        json_t *m = json_object_get(ch, "delta");
        if (!m)
            m = json_object_get(ch, "message");
        json_t *content = json_object_get(m, "content");
        if ((json_is_string(content) && json_string_length(content) > 0) ||
            json_array_size(json_object_get(m, "tool_calls")) > 0 ||
            json_is_string(json_object_get(m, "reasoning_content")))
            model_first_token(p);
        size_t j;
        json_t *tc;
        json_array_foreach(json_object_get(m, "tool_calls"), j, tc)
            chat_tool_delta(p, tc, (int64_t)j);
    }
}

/* ---- responses ---- */

static void responses_item(struct model_parser *p, json_t *item, int64_t key, bool whole)
{
    json_t *type = json_object_get(item, "type");
    bool fn = str_is(type, "function_call");
    if (!fn && !str_is(type, "custom_tool_call"))
        return;
    if (!whole)
        model_first_token(p); /* a streamed tool call begins */
    struct model_tool *t = model_tool(p, key, true);
    if (!t)
        return;
    model_set_str(p, &t->id, json_object_get(item, "call_id"), 256);
    model_set_str(p, &t->name, json_object_get(item, "name"), 256);
    json_t *args = json_object_get(item, fn ? "arguments" : "input");
    if (json_is_string(args) && (whole || json_string_length(args) > 0))
        model_tool_args_set(p, t, json_string_value(args), json_string_length(args));
}

static void responses_object(struct model_parser *p, json_t *r)
{
    struct model_call *c = &p->call;
    if (!json_is_object(r))
        return;
    model_set_str(p, &c->response_id, json_object_get(r, "id"), 256);
    model_set_str(p, &c->model_answered, json_object_get(r, "model"), 256);
    json_t *status = json_object_get(r, "status");
    json_t *inc = json_object_get(json_object_get(r, "incomplete_details"), "reason");
    if (json_is_string(inc))
        model_set_str(p, &c->stop_reason, inc, 64);
    else if (json_is_string(status) && strcmp(json_string_value(status), "in_progress") != 0)
        model_set_str(p, &c->stop_reason, status, 64);
    usage(p, json_object_get(r, "usage"));
    json_t *err = json_object_get(r, "error");
    if (json_is_object(err))
        error_obj(p, err);
    /* the output list is authoritative when no item event was seen */
    if (p->ntools == 0) {
        size_t i;
        json_t *item;
        json_array_foreach(json_object_get(r, "output"), i, item)
            responses_item(p, item, (int64_t)i, true);
    }
}

static int64_t output_index(json_t *root)
{
    json_t *i = json_object_get(root, "output_index");
    return json_is_integer(i) ? (int64_t)json_integer_value(i) : -1;
}

static void responses_event(struct model_parser *p, json_t *root)
{
    const char *type = json_string_value(json_object_get(root, "type"));
    if (!type)
        return;
    if (strcmp(type, "response.created") == 0 || strcmp(type, "response.in_progress") == 0) {
        responses_object(p, json_object_get(root, "response"));
    } else if (strcmp(type, "response.completed") == 0 ||
               strcmp(type, "response.incomplete") == 0 || strcmp(type, "response.failed") == 0) {
        responses_object(p, json_object_get(root, "response"));
        p->saw_end = true;
    } else if (strcmp(type, "response.output_text.delta") == 0 ||
               strcmp(type, "response.function_call_arguments.delta") == 0 ||
               strcmp(type, "response.custom_tool_call_input.delta") == 0) {
        model_first_token(p);
        if (strcmp(type, "response.output_text.delta") != 0) {
            json_t *d = json_object_get(root, "delta");
            if (json_is_string(d))
                model_tool_args_append(p, model_tool(p, output_index(root), false),
                                       json_string_value(d), json_string_length(d));
        }
    } else if (strcmp(type, "response.output_item.added") == 0) {
        responses_item(p, json_object_get(root, "item"), output_index(root), false);
    } else if (strcmp(type, "response.output_item.done") == 0) {
        responses_item(p, json_object_get(root, "item"), output_index(root), true);
    } else if (strcmp(type, "response.function_call_arguments.done") == 0 ||
               strcmp(type, "response.custom_tool_call_input.done") == 0) {
        json_t *a = json_object_get(root, "arguments");
        if (!a)
            a = json_object_get(root, "input");
        if (json_is_string(a))
            model_tool_args_set(p, model_tool(p, output_index(root), false), json_string_value(a),
                                json_string_length(a));
    } else if (strcmp(type, "error") == 0) {
        json_t *e = json_object_get(root, "error");
        error_obj(p, json_is_object(e) ? e : root);
    }
}

/* ---- entry points ---- */

/* Count the occurrences of needle in s[0..n), up to 2. */
static int count2(const char *s, size_t n, const char *needle)
{
    const char *a = model_find(s, n, needle);
    if (!a)
        return 0;
    size_t off = (size_t)(a - s) + 1;
    return model_find(s + off, n - off, needle) ? 2 : 1;
}

/* A key that is absent or null in s[0..n) (a single occurrence checked). */
static bool absent_or_null(const char *s, size_t n, const char *key)
{
    const char *k = model_find(s, n, key);
    if (!k)
        return true;
    const char *v = model_fast_value(k, s + n, key);
    return v && (size_t)(s + n - v) >= 4 && memcmp(v, "null", 4) == 0;
}

/*
 * The hot chat chunks without jansson: text-only chunks (nothing kept) and
 * chunks that only add argument text to one tool call. True when handled.
 */
static bool chat_fast(struct model_parser *p, const char *data, size_t len)
{
    if (!p->call.model_answered || model_contains(data, len, "\"error\"") ||
        !absent_or_null(data, len, "\"usage\"") || !absent_or_null(data, len, "\"finish_reason\""))
        return false;
    const char *tc = model_fast_key(data, len, "\"tool_calls\"");
    if (!tc) {
        /* text (or an empty role chunk): content only when "content" holds a string */
        const char *ct = p->first_token ? NULL : model_fast_key(data, len, "\"content\"");
        if (ct && *ct == '"' && (size_t)(data + len - ct) > 1 && ct[1] != '"')
            model_first_token(p);
        p->saw_response = true;
        return true;
    }
    size_t rest = len - (size_t)(tc - data);
    if (model_contains(tc, rest, "\"name\"") || model_contains(tc, rest, "\"id\"") ||
        count2(tc, rest, "\"arguments\"") != 1 || count2(tc, rest, "\"index\"") != 1)
        return false;
    const char *end = data + len, *v = model_fast_key(tc, rest, "\"index\"");
    const char *a = model_fast_key(tc, rest, "\"arguments\"");
    const char *s;
    size_t n;
    int64_t idx;
    if (!v || !a || !model_fast_int(v, end, &idx) || !model_fast_str(p, a, end, &s, &n))
        return false;
    p->saw_response = true;
    model_first_token(p);
    model_tool_args_append(p, model_tool(p, idx, true), s, n);
    return true;
}

/* Is this Responses event `name`? The event line, or else the data's first "type". */
static bool responses_is(const char *ev, size_t ev_len, const char *data, size_t len,
                         const char *name)
{
    if (ev_len > 0)
        return model_event_is(ev, ev_len, name);
    const char *v = model_fast_key(data, len, "\"type\"");
    size_t nl = strlen(name);
    return v && (size_t)(data + len - v) > nl + 1 && v[0] == '"' && memcmp(v + 1, name, nl) == 0 &&
           v[nl + 1] == '"';
}

/* The hot Responses events without jansson. True when handled. */
static bool responses_fast(struct model_parser *p, const char *ev, size_t ev_len, const char *data,
                           size_t len)
{
    if (responses_is(ev, ev_len, data, len, "response.output_text.delta") ||
        responses_is(ev, ev_len, data, len, "response.reasoning_summary_text.delta") ||
        responses_is(ev, ev_len, data, len, "response.reasoning_text.delta")) {
        p->saw_response = true; /* text: nothing the record keeps */
        model_first_token(p);
        return true;
    }
    if (!responses_is(ev, ev_len, data, len, "response.function_call_arguments.delta") &&
        !responses_is(ev, ev_len, data, len, "response.custom_tool_call_input.delta"))
        return false;
    const char *end = data + len, *v = model_fast_key(data, len, "\"output_index\"");
    const char *d = model_fast_key(data, len, "\"delta\"");
    const char *s;
    size_t n;
    int64_t idx;
    if (!v || !d || !model_fast_int(v, end, &idx) || !model_fast_str(p, d, end, &s, &n))
        return false;
    p->saw_response = true;
    model_first_token(p);
    model_tool_args_append(p, model_tool(p, idx, false), s, n);
    return true;
}

static void event(struct model_parser *p, const char *ev, size_t ev_len, const char *data,
                  size_t len)
{
    if (p->route.api == MODEL_API_CHAT) {
        if (len == 6 && memcmp(data, "[DONE]", 6) == 0) {
            p->saw_end = true;
            p->saw_response = true;
            return;
        }
        if (chat_fast(p, data, len))
            return;
    } else if (responses_fast(p, ev, ev_len, data, len)) {
        return;
    }
    json_t *root = model_parse_json(p, data, len);
    if (!root)
        return;
    if (p->route.api == MODEL_API_CHAT)
        chat_object(p, root);
    else
        responses_event(p, root);
    json_decref(root);
}

static void json_response(struct model_parser *p, json_t *root)
{
    if (p->route.api == MODEL_API_CHAT) {
        chat_object(p, root);
        return;
    }
    json_t *err = json_object_get(root, "error");
    if (json_is_object(err) && !json_object_get(root, "output")) {
        error_obj(p, err);
        return;
    }
    responses_object(p, root);
    p->saw_end = true;
}

const struct model_provider_ops model_openai_ops = {
    .request = request,
    .event = event,
    .json = json_response,
};
