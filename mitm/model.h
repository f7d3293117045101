/*
 * Model-call parsing for the proxy: which exchanges are LLM API calls, and a
 * per-exchange parser that learns what each call asked for and got back
 * (models, tokens, tool calls and results, stop reason, errors, timing) from
 * the bytes the proxy has already forwarded. Feeding never fails and never
 * touches the bytes; memory is bounded (request JSON up to a cap, response
 * streams event by event). No I/O. The result is a struct model_call
 * (mitm/sink.h) ready for pricing (mitm/pricing.h), trace linking
 * (mitm/trace.h) and the sink.
 *
 * One exchange, as the proxy drives it (each call after forwarding the bytes):
 *
 *   if (model_detect(hosts, host, method, target, target_len, &route))
 *       model_parser_create(&route, NULL, head_arrival_us, &mp);
 *   model_parser_request_head(mp, ce, ce_len);       // when the request has one
 *   model_parser_request(mp, body, n);               // request body, de-chunked
 *   model_parser_response_head(mp, status, ct, ct_len, ce, ce_len);
 *   model_parser_response(mp, body, n, now_us);      // response body, de-chunked
 *   struct model_call *c = model_parser_finish(mp, body_complete, now_us);
 *   c->time_us = ...; c->process = ...; c->pid = ...; c->host = ...; c->path = ...;
 *   pricing_apply(prices, c);
 *   trace_link(session_traces, c);
 *   sink_model(&sink, c);
 *   model_parser_destroy(mp);
 */
#ifndef CAPSEM_MITM_MODEL_H
#define CAPSEM_MITM_MODEL_H

#include "sink.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum model_provider {
    MODEL_PROVIDER_NONE = 0,
    MODEL_PROVIDER_ANTHROPIC,
    MODEL_PROVIDER_OPENAI,
    MODEL_PROVIDER_GEMINI,
};

enum model_api {
    MODEL_API_MESSAGES,  /* Anthropic POST /v1/messages */
    MODEL_API_CHAT,      /* OpenAI POST /v1/chat/completions */
    MODEL_API_RESPONSES, /* OpenAI POST /v1/responses */
    MODEL_API_GENERATE,  /* Gemini POST /v1beta/models/M:(stream)GenerateContent */
};

/* A host whose API calls are parsed as `provider`. */
struct model_host {
    const char *host; /* lower case, no port */
    enum model_provider provider;
};

/* api.anthropic.com, api.openai.com, generativelanguage.googleapis.com; ends with {NULL}. */
extern const struct model_host model_default_hosts[];

/* What model_detect() found. */
struct model_route {
    enum model_provider provider;
    enum model_api api;
    bool stream_path; /* Gemini streamGenerateContent */
    char model[128];  /* Gemini: the model named in the path, "" otherwise */
};

/*
 * Is `method` `host` `target` a model call? `hosts` is a {NULL}-terminated
 * table (NULL = model_default_hosts); `host` is compared case-insensitively
 * and may carry a ":port"; `target` is the request target as sent (path and
 * query, origin or absolute form; not NUL-terminated). Fills *r and returns
 * true when it is.
 */
bool model_detect(const struct model_host *hosts, const char *host, const char *method,
                  const char *target, size_t target_len, struct model_route *r);

/* Text for a provider / API: "anthropic", "messages"... */
const char *model_provider_name(enum model_provider p);
const char *model_api_name(enum model_api a);

#define MODEL_REQ_MAX_DEFAULT (8u << 20)       /* request JSON kept for parsing */
#define MODEL_EVENT_MAX_DEFAULT (8u << 20)     /* one SSE event or one JSON response */
#define MODEL_DECODED_MAX_DEFAULT (1ull << 32) /* decoded response bytes parsed */

struct model_limits {
    size_t req_max;       /* 0 = default */
    size_t event_max;     /* 0 = default */
    uint64_t decoded_max; /* 0 = default */
};

struct model_parser;

/*
 * A parser for one exchange routed by `r` (copied); `limits` may be NULL.
 * `start_us` is when the request head arrived (any monotonic clock, the one
 * later `now_us` values use). 0 or -ENOMEM. Not thread-safe: one exchange,
 * one thread at a time.
 */
__attribute__((warn_unused_result)) int model_parser_create(const struct model_route *r,
                                                            const struct model_limits *limits,
                                                            int64_t start_us,
                                                            struct model_parser **out);
/* Free the parser and every string of its result; accepts NULL. */
void model_parser_destroy(struct model_parser *p);

/*
 * The request's Content-Encoding value (a slice; optional, before the body):
 * a compressed request body (gzip, deflate, br, zstd) is decoded at finish,
 * up to the same cap. An unknown coding marks the result parse_error.
 */
void model_parser_request_head(struct model_parser *p, const char *content_encoding,
                               size_t content_encoding_len);

/* Request body bytes (de-chunked, as sent). Past the cap the rest is counted, not kept. */
void model_parser_request(struct model_parser *p, const uint8_t *data, size_t len);

/*
 * The response head: status and the Content-Type and Content-Encoding
 * values (slices, may be NULL/0). Call once, before response bytes.
 */
void model_parser_response_head(struct model_parser *p, int status, const char *content_type,
                                size_t content_type_len, const char *content_encoding,
                                size_t content_encoding_len);

/* Response body bytes (de-chunked, still content-encoded) seen at `now_us`. */
void model_parser_response(struct model_parser *p, const uint8_t *data, size_t len, int64_t now_us);

/*
 * The exchange is over at `now_us`; `complete` says whether the response body
 * ended where its framing said (false: the connection broke). Returns the
 * result, owned by the parser until model_parser_destroy(); the proxy fills
 * the connection fields (time_us, process, pid, host, path), then
 * pricing_apply() and trace_link(). Call once.
 */
struct model_call *model_parser_finish(struct model_parser *p, bool complete, int64_t now_us);

#endif
