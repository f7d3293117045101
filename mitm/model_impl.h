/*
 * What the provider parsers (model_anthropic.c, model_openai.c,
 * model_gemini.c) share with the core in model.c: the parser state, an
 * arena for result strings, tool-call accumulation by key and helpers that
 * read jansson values defensively. Private to the model parsers.
 */
#ifndef CAPSEM_MITM_MODEL_IMPL_H
#define CAPSEM_MITM_MODEL_IMPL_H

#include "buf.h"
#include "decode.h"
#include "model.h"
#include "sse.h"

#include <jansson.h>

#define MODEL_ARGS_MAX (256u << 10)     /* arguments kept per tool call */
#define MODEL_ARGS_TOTAL_MAX (4u << 20) /* arguments kept for all tool calls of a response */
#define MODEL_TOOLS_MAX 512             /* tool calls kept per response */
#define MODEL_RESULTS_MAX 512           /* tool results kept per request */
#define MODEL_PREVIEW_MAX 512           /* tool result and system prompt previews */
#define MODEL_TEXT_MAX 1024             /* error messages */
#define MODEL_ARENA_MAX (16u << 20)     /* all result strings of one call */

/* A tool call being assembled from a response. */
struct model_tool {
    int64_t key; /* provider's index / output_index / arrival order */
    const char *id;
    const char *name;
    struct buf args;
    bool streamed; /* args come from deltas: the first one replaces any initial value */
};

struct model_parser;

struct model_provider_ops {
    /* The whole request body parsed (root is an object). */
    void (*request)(struct model_parser *p, json_t *root);
    /* One SSE event; data is NUL-terminated. */
    void (*event)(struct model_parser *p, const char *event, size_t event_len, const char *data,
                  size_t data_len);
    /* One JSON response object (a whole response, or one element of a JSON-array stream). */
    void (*json)(struct model_parser *p, json_t *obj);
};

extern const struct model_provider_ops model_anthropic_ops;
extern const struct model_provider_ops model_openai_ops;
extern const struct model_provider_ops model_gemini_ops;

/* The JSON-element splitter for non-SSE bodies (an object, or an array of objects). */
struct model_jsplit {
    int depth;
    bool in_string, escape, in_array, in_elem, started, done, bad, oversized;
    struct buf elem;
};

struct model_parser {
    struct model_route route;
    const struct model_provider_ops *ops;
    struct model_call call;
    int64_t start_us;
    int64_t now_us; /* the time of the response bytes being parsed */
    int64_t first_byte_us;
    bool first_seen;
    bool first_token; /* ttft_us is set from the first content event */
    bool finished;
    /* request */
    struct buf req;
    uint64_t req_total;
    enum decode_kind req_kind; /* the request's Content-Encoding */
    bool req_kind_bad;
    /* response */
    bool sse;
    bool sniff; /* no JSON or SSE content type: the first bytes decide */
    struct decoder *dec;
    uint64_t decoded_max;
    bool dec_failed;
    struct sse_reader reader;
    struct model_jsplit js;
    bool saw_end;      /* the provider's terminal event or finish reason came */
    bool saw_response; /* something was parsed from the response */
    /* result strings */
    char **strs;
    size_t nstrs, astrs;
    size_t arena_bytes;
    /* tool calls and results */
    struct model_tool *tools;
    size_t ntools, atools;
    size_t args_total; /* bytes held in all tools' args */
    struct model_tool_call *calls_out;
    struct model_tool_result *results;
    size_t nresults, aresults;
    /* provider scratch */
    int64_t seq;
    struct buf scratch; /* fast-path string unescaping */
};

/*
 * A bounded copy of s[0..n) kept until destroy (cut at a UTF-8 boundary; a cut
 * preview does not mark the call truncated). NULL on failure.
 */
const char *model_keep(struct model_parser *p, const char *s, size_t n, size_t max);
/* *field = bounded copy of v when v is a JSON string. */
void model_set_str(struct model_parser *p, const char **field, json_t *v, size_t max);
/* *field = v when v is a non-negative JSON integer. */
void model_set_int(int64_t *field, json_t *v);
/* A compact JSON dump of v, bounded; NULL when v is NULL. */
const char *model_keep_json(struct model_parser *p, json_t *v, size_t max);
/* A preview of message content: a string, text blocks joined, else compact JSON. */
const char *model_keep_content(struct model_parser *p, json_t *content, size_t max);

/* The tool with `key`, created when absent and `create`; NULL past the cap. */
struct model_tool *model_tool(struct model_parser *p, int64_t key, bool create);
void model_tool_args_append(struct model_parser *p, struct model_tool *t, const char *s, size_t n);
void model_tool_args_set(struct model_parser *p, struct model_tool *t, const char *s, size_t n);
/* Append a tool result found in the request. */
void model_add_result(struct model_parser *p, const char *id, bool is_error, const char *preview);
/* Record a provider error (type and message from JSON values, either may be NULL). */
void model_set_error(struct model_parser *p, json_t *type, json_t *message);
/* Parse an SSE event's data as JSON: NULL (and parse_error set) when it is not an object. */
json_t *model_parse_json(struct model_parser *p, const char *data, size_t len);
/* The first needle in s[0..n), or NULL. */
const char *model_find(const char *s, size_t n, const char *needle);
/* A streamed response's first content (text, thinking or tool call) came now. */
void model_first_token(struct model_parser *p);
/* Does s[0..n) contain needle? */
bool model_contains(const char *s, size_t n, const char *needle);
/*
 * Fast paths for the hot events (argument deltas, usage counters), used only
 * where a raw-quoted key cannot come from inside a string value (strings in
 * JSON escape their quotes). Each returns false when the input is not the
 * simple shape expected; the caller then parses the event in full.
 */
/* The value after `"key"` (quoted_key includes the quotes) and its colon, from d[0..n). */
const char *model_fast_key(const char *d, size_t n, const char *quoted_key);
/* The value after the key at k (as model_find returned it), or NULL when no colon follows. */
const char *model_fast_value(const char *k, const char *end, const char *quoted_key);
/* A non-negative integer at v (before end). */
bool model_fast_int(const char *v, const char *end, int64_t *out);
/* The JSON string at v (before end), unescaped into the parser's scratch buffer. */
bool model_fast_str(struct model_parser *p, const char *v, const char *end, const char **s,
                    size_t *n);
/* Is the event name e[0..n) equal to name? */
bool model_event_is(const char *e, size_t n, const char *name);

#endif
