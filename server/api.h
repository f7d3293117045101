/*
 * The daemon's routes: one table of (method, path pattern, kind, flags,
 * handler) that both the REST side (libmicrohttpd) and the WebSocket side
 * (libwebsockets) consult, the checks every request passes first (Host,
 * route, method, auth, Origin, body size and JSON), and the request
 * counters behind /metrics. Nothing here does I/O: httpd.c turns a parsed
 * request into a struct api_req and a struct api_resp back into bytes.
 * docs/api.md and schemas/openapi.json describe the same table.
 */
#ifndef CAPSEM_SERVER_API_H
#define CAPSEM_SERVER_API_H

#include "auth.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* Largest request body; a bigger one gets 413. */
#define API_BODY_MAX (1u << 20)

enum api_kind { API_REST, API_WS };

/* Route flags. */
#define API_AUTH 1u      /* needs the Bearer token or a session cookie */
#define API_JSON_BODY 2u /* a non-empty body must be a JSON object */
#define API_SLOW 4u      /* the handler may wait: httpd runs it on a worker thread */

struct api;
struct api_req;
struct api_resp;

/* A route's handler: fills `resp` (status and body). 0 or -ENOMEM. */
typedef int (*api_handler_fn)(struct api *api, const struct api_req *req, struct api_resp *resp);

struct api_route {
    const char *method;  /* "GET", "POST", ... */
    const char *pattern; /* "/api/v1/x"; a "{name}" segment matches one non-empty segment */
    enum api_kind kind;
    unsigned flags;
    api_handler_fn handler; /* NULL for API_WS routes (httpd.c serves them) */
    const char *summary;
};

/* The request as the checks and handlers see it; every string is borrowed and may be NULL. */
struct api_req {
    const char *method;
    const char *path; /* without the query string */
    const char *host;
    const char *origin;
    const char *authorization;
    const char *cookie;
    bool upgrade;                /* carries Upgrade: websocket */
    const char *if_none_match;   /* If-None-Match (static files) */
    const char *accept_encoding; /* Accept-Encoding (static files) */
    /* Query argument lookup (NULL when there is none). */
    const char *(*arg)(void *ctx, const char *name);
    void *arg_ctx;
    const char *body; /* not NUL-terminated */
    size_t body_len;
};

/* A response; body is malloc'd and owned by the struct (api_resp_fini frees it). */
struct api_resp {
    int status;
    const char *content_type;
    char *body;
    size_t body_len;
    char location[64];    /* Location header when not empty */
    char set_cookie[160]; /* Set-Cookie header when not empty */
    bool close;           /* send Connection: close */
    const char *etag;     /* ETag header when set (static string); then Cache-Control: no-cache */
    const char *content_encoding; /* Content-Encoding header when set (static string) */
    bool vary_encoding;           /* send Vary: Accept-Encoding */
};

struct api_opts {
    struct auth *auth;        /* borrowed */
    const char *version;      /* borrowed */
    unsigned port;            /* the listening port, for Host checks */
    const char *const *allow; /* extra Host names (borrowed) */
    size_t nallow;
};

/* Make the route state. 0 or -ENOMEM. */
__attribute__((warn_unused_result)) int api_create(const struct api_opts *o, struct api **out);
/* NULL is fine. */
void api_destroy(struct api *api);

/* True when `path` matches `pattern`, where "{name}" matches one non-empty segment. */
bool api_path_match(const char *pattern, const char *path);

/* The route table and its length. */
const struct api_route *api_routes(size_t *count);

/*
 * Checks a request passes before any handler, on its head alone: Host (403),
 * route (404), method (405), auth (401), Origin on WebSocket upgrades and
 * state-changing methods (403). Returns the route when all pass; otherwise
 * NULL with the error in `resp`. Thread-safe.
 */
const struct api_route *api_gate(struct api *api, const struct api_req *req, struct api_resp *resp);

/*
 * Run `route`'s handler on `req` (which passed api_gate, body complete):
 * checks the body (400 when API_JSON_BODY and it is not a JSON object), then
 * fills `resp`. 0 or -ENOMEM. Thread-safe.
 */
__attribute__((warn_unused_result)) int api_handle(struct api *api, const struct api_route *route,
                                                   const struct api_req *req,
                                                   struct api_resp *resp);

/* Fill `resp` with the compact JSON of `j` (taken; NULL counts as out of memory) and
 * `status`. 0, or -ENOMEM with an empty 500. */
int api_json(struct api_resp *resp, int status, json_t *j);
/* Fill `resp` with {"error": msg} and `status`. 0 or -ENOMEM (then status is still set). */
int api_error(struct api_resp *resp, int status, const char *msg);
/* Free the body. */
void api_resp_fini(struct api_resp *resp);

/* Count a response sent with `status`, and WebSockets opened (+1) or closed (-1). */
void api_count_response(struct api *api, int status);
void api_count_ws(struct api *api, int delta);

/*
 * The hello a new /api/v1/events WebSocket gets: a JSON text, malloc'd, in
 * *out with its length. 0 or -ENOMEM.
 */
__attribute__((warn_unused_result)) int api_events_hello(struct api *api, char **out, size_t *len);

#endif
