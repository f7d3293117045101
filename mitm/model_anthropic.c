/*
 * Anthropic Messages API (POST /v1/messages): the request (model, stream,
 * system prompt, messages, tools, the tool results the agent sends back),
 * the JSON response and the SSE stream (message_start, content_block_start /
 * delta / stop with tool_use input assembled from input_json_delta pieces,
 * message_delta with the stop reason and final usage, message_stop, error,
 * ping). Anthropic reports input_tokens without cache reads and writes,
 * which is how struct model_call counts them.
 */
#include "model_impl.h"

#include <string.h>

static void request(struct model_parser *p, json_t *root)
{
    struct model_call *c = &p->call;
    model_set_str(p, &c->model_requested, json_object_get(root, "model"), 256);
    if (json_is_true(json_object_get(root, "stream")))
        c->stream = true;
    json_t *sys = json_object_get(root, "system");
    if (sys)
        c->system_preview = model_keep_content(p, sys, MODEL_PREVIEW_MAX);
    json_t *tools = json_object_get(root, "tools");
    if (json_is_array(tools))
        c->tool_count = (int64_t)json_array_size(tools);
    json_t *msgs = json_object_get(root, "messages");
    if (!json_is_array(msgs))
        return;
    c->message_count = (int64_t)json_array_size(msgs);
    /* the new tool results: those after the last assistant message */
    size_t start = json_array_size(msgs);
    while (start > 0) {
        json_t *role = json_object_get(json_array_get(msgs, start - 1), "role");
        if (json_is_string(role) && strcmp(json_string_value(role), "assistant") == 0)
            break;
        start--;
    }
    for (size_t i = start; i < json_array_size(msgs); i++) {
        json_t *content = json_object_get(json_array_get(msgs, i), "content");
        size_t j;
        json_t *b;
        json_array_foreach(content, j, b)
        {
            json_t *type = json_object_get(b, "type");
            if (!json_is_string(type) || strcmp(json_string_value(type), "tool_result") != 0)
                continue;
            const char *id = NULL;
            model_set_str(p, &id, json_object_get(b, "tool_use_id"), 256);
            model_add_result(
                p, id, json_is_true(json_object_get(b, "is_error")),
                model_keep_content(p, json_object_get(b, "content"), MODEL_PREVIEW_MAX));
        }
    }
}

static void usage(struct model_parser *p, json_t *u)
{
    if (!json_is_object(u))
        return;
    struct model_call *c = &p->call;
    model_set_int(&c->input_tokens, json_object_get(u, "input_tokens"));
    model_set_int(&c->output_tokens, json_object_get(u, "output_tokens"));
    model_set_int(&c->cache_read_tokens, json_object_get(u, "cache_read_input_tokens"));
    model_set_int(&c->cache_write_tokens, json_object_get(u, "cache_creation_input_tokens"));
}

static void message(struct model_parser *p, json_t *m)
{
    struct model_call *c = &p->call;
    model_set_str(p, &c->response_id, json_object_get(m, "id"), 256);
    model_set_str(p, &c->model_answered, json_object_get(m, "model"), 256);
    model_set_str(p, &c->stop_reason, json_object_get(m, "stop_reason"), 64);
    usage(p, json_object_get(m, "usage"));
}

static bool is_tool_use(json_t *block)
{
    json_t *type = json_object_get(block, "type");
    return json_is_string(type) && strcmp(json_string_value(type), "tool_use") == 0;
}

static void error_obj(struct model_parser *p, json_t *root)
{
    json_t *e = json_object_get(root, "error");
    model_set_error(p, json_object_get(e, "type"), json_object_get(e, "message"));
}

static void json_response(struct model_parser *p, json_t *root)
{
    json_t *type = json_object_get(root, "type");
    if (json_is_string(type) && strcmp(json_string_value(type), "error") == 0) {
        error_obj(p, root);
        return;
    }
    message(p, root);
    json_t *content = json_object_get(root, "content");
    size_t i;
    json_t *b;
    json_array_foreach(content, i, b)
    {
        if (!is_tool_use(b))
            continue;
        struct model_tool *t = model_tool(p, (int64_t)i, true);
        if (!t)
            continue;
        model_set_str(p, &t->id, json_object_get(b, "id"), 256);
        model_set_str(p, &t->name, json_object_get(b, "name"), 256);
        const char *args = model_keep_json(p, json_object_get(b, "input"), MODEL_ARGS_MAX);
        if (args)
            model_tool_args_set(p, t, args, strlen(args));
    }
    p->saw_end = true;
}

static int64_t block_index(json_t *root)
{
    json_t *i = json_object_get(root, "index");
    return json_is_integer(i) ? (int64_t)json_integer_value(i) : -1;
}

static void event(struct model_parser *p, const char *ev, size_t ev_len, const char *data,
                  size_t len)
{
    if (model_event_is(ev, ev_len, "content_block_delta")) {
        /* text and thinking deltas carry nothing the record keeps: skip the JSON work */
        model_first_token(p);
        if (!model_contains(data, len, "\"input_json_delta\"")) {
            p->saw_response = true;
            return;
        }
        /* argument pieces: index and partial_json straight from the text */
        const char *end = data + len, *v = model_fast_key(data, len, "\"index\"");
        const char *pj = model_fast_key(data, len, "\"partial_json\"");
        const char *s;
        size_t n;
        int64_t idx;
        if (v && pj && model_fast_int(v, end, &idx) && model_fast_str(p, pj, end, &s, &n)) {
            p->saw_response = true;
            struct model_tool *t = model_tool(p, idx, false);
            if (t) {
                if (!t->streamed)
                    model_tool_args_set(p, t, NULL, 0);
                t->streamed = true;
                model_tool_args_append(p, t, s, n);
            }
            return;
        }
    }
    if (model_event_is(ev, ev_len, "ping")) {
        p->saw_response = true;
        return;
    }
    json_t *root = model_parse_json(p, data, len);
    if (!root)
        return;
    const char *type = json_string_value(json_object_get(root, "type"));
    if (!type)
        type = "";
    if (strcmp(type, "message_start") == 0) {
        message(p, json_object_get(root, "message"));
    } else if (strcmp(type, "content_block_start") == 0) {
        model_first_token(p);
        json_t *b = json_object_get(root, "content_block");
        if (is_tool_use(b)) {
            struct model_tool *t = model_tool(p, block_index(root), true);
            if (t) {
                model_set_str(p, &t->id, json_object_get(b, "id"), 256);
                model_set_str(p, &t->name, json_object_get(b, "name"), 256);
                /* the input given here ({} when deltas follow) stands until a delta comes */
                const char *args = model_keep_json(p, json_object_get(b, "input"), 4096);
                if (args)
                    model_tool_args_set(p, t, args, strlen(args));
            }
        }
    } else if (strcmp(type, "content_block_delta") == 0) {
        model_first_token(p);
        json_t *d = json_object_get(root, "delta");
        json_t *pj = json_object_get(d, "partial_json");
        struct model_tool *t = model_tool(p, block_index(root), false);
        if (t && json_is_string(pj)) {
            if (!t->streamed)
                model_tool_args_set(p, t, NULL, 0);
            t->streamed = true;
            model_tool_args_append(p, t, json_string_value(pj), json_string_length(pj));
        }
    } else if (strcmp(type, "message_delta") == 0) {
        model_set_str(p, &p->call.stop_reason,
                      json_object_get(json_object_get(root, "delta"), "stop_reason"), 64);
        usage(p, json_object_get(root, "usage"));
    } else if (strcmp(type, "message_stop") == 0) {
        p->saw_end = true;
    } else if (strcmp(type, "error") == 0) {
        error_obj(p, root);
    }
    json_decref(root);
}

const struct model_provider_ops model_anthropic_ops = {
    .request = request,
    .event = event,
    .json = json_response,
};
