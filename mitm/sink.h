/*
 * The event sink: how the MITM proxy, the DNS service (and later the model
 * parsers and the MCP gateway) report what happened, without knowing where it
 * goes. The telemetry writer (server/telemetry.h) is the real sink; tests use
 * a recording one. Callbacks may come from any thread at the same time; the
 * event and every string in it are borrowed for the duration of the call
 * only, so a sink copies what it keeps and never blocks for long. Strings are
 * NUL-terminated and may be NULL when unknown.
 */
#ifndef CAPSEM_MITM_SINK_H
#define CAPSEM_MITM_SINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What policy decided. Numbers are stable: they are stored. */
enum decision {
    DECISION_ALLOW = 0,
    DECISION_BLOCK = 1,
    DECISION_LOG = 2, /* allowed and marked as worth a look */
};

/* Text for a decision: "allow", "block", "log". */
const char *decision_name(enum decision d);

/* One HTTP request/response exchange (or one failed connection). */
struct net_event {
    int64_t time_us;     /* wall clock when the request head arrived, µs since the epoch */
    const char *process; /* guest process name */
    int64_t pid;         /* guest pid, 0 unknown */
    const char *method;  /* NULL when no request could be read */
    const char *scheme;  /* "https" or "http" */
    const char *host;    /* SNI, Host header or DNS pool name */
    uint16_t port;       /* original destination port */
    const char *path;    /* without the query */
    const char *query;   /* without '?', NULL when none */
    int status;          /* response status sent to the guest, 0 when none */
    int64_t req_bytes;   /* request body bytes from the guest */
    int64_t resp_bytes;  /* response body bytes to the guest */
    int64_t duration_us; /* request head to end of response */
    int64_t ttfb_us;     /* request head to first response byte, -1 when none */
    enum decision decision;
    const char *rule;        /* id of the rule that decided, NULL = default */
    const char *tls_version; /* "TLSv1.3", NULL for plain HTTP */
    const char *error;       /* what went wrong, NULL when nothing */
    /* Allowlisted, redacted headers as a JSON object text, or NULL. */
    const char *req_headers;
    const char *resp_headers;
    /* Bounded previews of the bodies (UTF-8 text, or NULL). */
    const char *req_preview;
    const char *resp_preview;
};

/* One DNS question answered by the host. */
struct dns_event {
    int64_t time_us;
    const char *name; /* lower case, no trailing dot */
    const char *type; /* "A", "AAAA", "TXT", or the number as text */
    enum decision decision;
    const char *rule;   /* NULL = default */
    const char *answer; /* "198.18.0.7", "NXDOMAIN", "NODATA", "FORMERR" */
};

/* A tool call the model asked for, found in a response. */
struct model_tool_call {
    const char *id;        /* provider's call id (Gemini: may be NULL) */
    const char *name;      /* tool name */
    const char *arguments; /* arguments as JSON text (bounded), NULL when none */
};

/* A tool result the agent sent back, found in a request. */
struct model_tool_result {
    const char *id;      /* the call id it answers (Gemini: the function name) */
    bool is_error;       /* the agent marked it as an error */
    const char *preview; /* bounded UTF-8 preview of the content, or NULL */
};

/*
 * One LLM API call seen by the proxy, parsed by mitm/model.h. Counts are -1
 * when the provider did not say. The proxy fills the connection fields,
 * pricing (mitm/pricing.h) the cost and mitm/trace.h the trace fields.
 */
struct model_call {
    int64_t time_us;     /* wall clock when the request head arrived, µs since the epoch */
    const char *process; /* guest process name */
    int64_t pid;         /* guest pid, 0 unknown */
    const char *host;
    const char *path;     /* without the query */
    const char *provider; /* "anthropic", "openai", "gemini" */
    const char *api;      /* "messages", "chat", "responses", "generate" */
    const char *model_requested;
    const char *model_answered; /* what the response says it used */
    const char *response_id;
    bool stream;
    int http_status;           /* 0 when no response head */
    const char *status;        /* "ok", "error", "incomplete" (stream cut short) */
    const char *error_type;    /* provider's error type, NULL when none */
    const char *error_message; /* bounded */
    const char *stop_reason;
    int64_t input_tokens;  /* not counting cache reads and writes */
    int64_t output_tokens; /* including reasoning */
    int64_t cache_read_tokens;
    int64_t cache_write_tokens;
    int64_t reasoning_tokens;
    int64_t message_count; /* messages / input items / contents in the request */
    int64_t tool_count;    /* tools offered in the request */
    const char *system_preview;
    const struct model_tool_call *tool_calls;
    size_t n_tool_calls;
    const struct model_tool_result *tool_results;
    size_t n_tool_results;
    /* Request head to the first content of a stream (text, thinking or a tool call), or
     * to the first body byte of a JSON response or a stream without content; -1 none. */
    int64_t ttft_us;
    int64_t duration_us; /* request head to end of response */
    bool cost_known;     /* false: model not in the price table, cost_usd is 0 */
    double cost_usd;
    int64_t trace_id; /* 0 when not linked */
    int turn;         /* 1 for a trace's first call */
    bool parse_error; /* some body could not be parsed; fields hold what was learned */
    bool truncated;   /* a body was larger than the parser keeps */
};

struct sink_ops {
    void (*net)(void *opaque, const struct net_event *ev);
    void (*dns)(void *opaque, const struct dns_event *ev);
    void (*model)(void *opaque, const struct model_call *ev);
};

/* A sink: ops may be NULL (events dropped); any op may be NULL. */
struct sink {
    const struct sink_ops *ops;
    void *opaque;
};

/* Deliver through `s`, tolerating a NULL sink or op. */
void sink_net(const struct sink *s, const struct net_event *ev);
void sink_dns(const struct sink *s, const struct dns_event *ev);
void sink_model(const struct sink *s, const struct model_call *ev);

#endif
