/*
 * The daemon's route table and handlers (api.h). A new resource adds rows
 * to `routes` (and its handlers, in api_<resource>.c once they grow), a
 * path in schemas/openapi.json and a section in docs/api.md;
 * unit.server.api fails when the table and openapi.json disagree.
 */
#include "api.h"

#include "api_telemetry.h"
#include "events.h"
#include "log.h"
#include "sessions.h"
#include "webassets.h"

#include <errno.h>
#include <jansson.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define STATUS_MAX 600

struct api {
    struct auth *auth;
    const char *version;
    unsigned port;
    const char *const *allow;
    size_t nallow;
    struct timespec started;
    atomic_ulong responses[STATUS_MAX];
    atomic_long ws_open;
};

static int get_root(struct api *api, const struct api_req *req, struct api_resp *resp);
static int get_asset(struct api *api, const struct api_req *req, struct api_resp *resp);
static int get_healthz(struct api *api, const struct api_req *req, struct api_resp *resp);
static int get_login(struct api *api, const struct api_req *req, struct api_resp *resp);
static int get_metrics(struct api *api, const struct api_req *req, struct api_resp *resp);
static int get_version(struct api *api, const struct api_req *req, struct api_resp *resp);
static int post_auth_codes(struct api *api, const struct api_req *req, struct api_resp *resp);

static const struct api_route routes[] = {
    {"GET", "/", API_REST, 0, get_root, "The dashboard (a placeholder page when built without it)"},
    {"GET", "/assets/{name}", API_REST, 0, get_asset, "A file of the embedded dashboard"},
    {"GET", "/healthz", API_REST, 0, get_healthz, "Liveness check"},
    {"GET", "/login", API_REST, 0, get_login, "Trade a one-time login code for a session cookie"},
    {"GET", "/metrics", API_REST, API_AUTH, get_metrics, "Prometheus metrics"},
    {"GET", "/api/v1/version", API_REST, API_AUTH, get_version, "Server version"},
    {"POST", "/api/v1/auth/codes", API_REST, API_AUTH | API_JSON_BODY, post_auth_codes,
     "Mint a one-time login code"},
    {"GET", "/api/v1/events", API_WS, API_AUTH, NULL, "Event stream (WebSocket)"},
    {"GET", "/api/v1/sessions/{id}/net-events", API_REST, API_AUTH, api_get_session_events,
     "A session's HTTP exchanges (filters, cursor paging)"},
    {"GET", "/api/v1/sessions/{id}/dns-events", API_REST, API_AUTH, api_get_session_events,
     "A session's DNS questions"},
    {"GET", "/api/v1/sessions/{id}/model-calls", API_REST, API_AUTH, api_get_session_events,
     "A session's LLM API calls"},
    {"GET", "/api/v1/sessions/{id}/tool-calls", API_REST, API_AUTH, api_get_session_events,
     "Tool calls the models asked for in a session"},
    {"GET", "/api/v1/sessions/{id}/file-events", API_REST, API_AUTH, api_get_session_events,
     "A session's workspace file events"},
    {"GET", "/api/v1/sessions/{id}/stats", API_REST, API_AUTH, api_get_session_stats,
     "A session's totals, tokens and cost per model, requests per host"},
    {"POST", "/api/v1/sessions/{id}/query", API_REST, API_AUTH | API_JSON_BODY,
     api_post_session_query, "Read-only SQL on a session's database"},
    {"GET", "/api/v1/policy", API_REST, API_AUTH, api_get_policy,
     "The user's policy (config.json)"},
    {"PUT", "/api/v1/policy", API_REST, API_AUTH | API_JSON_BODY, api_put_policy,
     "Replace the user's policy (validated, written atomically)"},
    {"POST", "/api/v1/sessions", API_REST, API_AUTH | API_JSON_BODY, api_sessions_create,
     "Boot a new session"},
    {"GET", "/api/v1/sessions", API_REST, API_AUTH, api_sessions_list, "List the sessions"},
    {"GET", "/api/v1/sessions/{id}", API_REST, API_AUTH, api_sessions_get, "One session"},
    {"DELETE", "/api/v1/sessions/{id}", API_REST, API_AUTH, api_sessions_delete,
     "Stop a session (?purge=1 also removes its directory)"},
    {"POST", "/api/v1/sessions/{id}/exec", API_REST, API_AUTH | API_JSON_BODY | API_SLOW,
     api_sessions_exec, "Run a command in a session and wait for it"},
    {"GET", "/api/v1/sessions/{id}/terminal", API_WS, API_AUTH, NULL,
     "The session's terminal (WebSocket)"},
    {"GET", "/api/v1/sessions/{id}/exec", API_WS, API_AUTH, NULL,
     "Run a command with its stdin, stdout and stderr streamed (WebSocket)"},
};

const struct api_route *api_routes(size_t *count)
{
    *count = sizeof(routes) / sizeof(routes[0]);
    return routes;
}

int api_create(const struct api_opts *o, struct api **out)
{
    struct api *api = calloc(1, sizeof(*api));
    if (!api)
        return -ENOMEM;
    api->auth = o->auth;
    api->version = o->version ? o->version : "0.0.0";
    api->port = o->port;
    api->allow = o->allow;
    api->nallow = o->nallow;
    clock_gettime(CLOCK_MONOTONIC, &api->started);
    *out = api;
    return 0;
}

void api_destroy(struct api *api)
{
    free(api);
}

void api_resp_fini(struct api_resp *resp)
{
    free(resp->body);
    resp->body = NULL;
    resp->body_len = 0;
}

/* Replace resp's body with `body` (taken) of type `type`. */
static void resp_set(struct api_resp *resp, int status, const char *type, char *body)
{
    api_resp_fini(resp);
    resp->status = status;
    resp->content_type = type;
    resp->body = body;
    resp->body_len = body ? strlen(body) : 0;
}

int api_json(struct api_resp *resp, int status, json_t *j)
{
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!s) {
        resp_set(resp, 500, "application/json", NULL);
        return -ENOMEM;
    }
    /* json_dumps memory comes from malloc (jansson's default allocator). */
    resp_set(resp, status, "application/json", s);
    return 0;
}

int api_error(struct api_resp *resp, int status, const char *msg)
{
    return api_json(resp, status, json_pack("{s:s}", "error", msg));
}

void api_count_response(struct api *api, int status)
{
    if (status >= 100 && status < STATUS_MAX)
        atomic_fetch_add(&api->responses[status], 1);
}

void api_count_ws(struct api *api, int delta)
{
    atomic_fetch_add(&api->ws_open, delta);
}

bool api_path_match(const char *pattern, const char *path)
{
    const char *p = pattern, *s = path;
    while (*p && *s) {
        if (*p == '{') {
            const char *pe = strchr(p, '}');
            if (!pe)
                return false;
            const char *se = s;
            while (*se && *se != '/')
                se++;
            if (se == s)
                return false;
            p = pe + 1;
            s = se;
            continue;
        }
        if (*p != *s)
            return false;
        p++;
        s++;
    }
    return *p == '\0' && *s == '\0';
}

static bool state_changing(const char *method)
{
    return !strcmp(method, "POST") || !strcmp(method, "PUT") || !strcmp(method, "PATCH") ||
           !strcmp(method, "DELETE");
}

const struct api_route *api_gate(struct api *api, const struct api_req *req, struct api_resp *resp)
{
    const struct api_route *route = NULL;
    bool path_known = false;
    if (!auth_host_ok(req->host, api->port, api->allow, api->nallow)) {
        api_error(resp, 403, "host not allowed");
        return NULL;
    }
    if (!req->method || !req->path) {
        api_error(resp, 400, "bad request");
        return NULL;
    }
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        if (!api_path_match(routes[i].pattern, req->path))
            continue;
        path_known = true;
        if (!strcmp(routes[i].method, req->method) ||
            (!strcmp(req->method, "HEAD") && !strcmp(routes[i].method, "GET") &&
             routes[i].kind == API_REST)) {
            route = &routes[i];
            break;
        }
    }
    if (!route) {
        api_error(resp, path_known ? 405 : 404,
                  path_known ? "method not allowed" : "no such route");
        return NULL;
    }
    bool bearer = auth_bearer_ok(api->auth, req->authorization);
    if (route->kind == API_WS || state_changing(req->method)) {
        /* A browser always sends Origin here; it must be this server. Only a
         * non-browser client (Bearer token) may leave it out. */
        if (req->origin ? !auth_origin_ok(req->origin, req->host)
                        : (route->flags & API_AUTH) && !bearer) {
            api_error(resp, 403, req->origin ? "origin not allowed" : "origin required");
            return NULL;
        }
    }
    if ((route->flags & API_AUTH) && !bearer && !auth_cookie_ok(api->auth, req->cookie)) {
        api_error(resp, 401, "authentication required");
        return NULL;
    }
    return route;
}

int api_handle(struct api *api, const struct api_route *route, const struct api_req *req,
               struct api_resp *resp)
{
    if ((route->flags & API_JSON_BODY) && req->body_len > 0) {
        json_error_t jerr;
        json_t *j = json_loadb(req->body, req->body_len, JSON_REJECT_DUPLICATES, &jerr);
        bool ok = json_is_object(j);
        json_decref(j);
        if (!ok)
            return api_error(resp, 400, "body is not a JSON object");
    }
    if (!route->handler)
        return api_error(resp, 400, "websocket upgrade required");
    return route->handler(api, req, resp);
}

static int get_root(struct api *api, const struct api_req *req, struct api_resp *resp)
{
    static const char page[] =
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<title>Capsem</title></head>\n<body><h1>Capsem</h1>\n"
        "<p>The dashboard is coming. The daemon is running; its API is under /api/v1.</p>\n"
        "<p>Open the login URL that <code>capsem serve</code> printed to sign in.</p>\n"
        "</body></html>\n";
    (void)api;
    if (webassets_lookup("index.html"))
        return webassets_respond(req, resp, "index.html");
    char *s = strdup(page);
    if (!s)
        return api_error(resp, 500, "out of memory");
    resp_set(resp, 200, "text/html; charset=utf-8", s);
    return 0;
}

/* /assets/NAME: a file of the embedded dashboard (webassets.h). */
static int get_asset(struct api *api, const struct api_req *req, struct api_resp *resp)
{
    (void)api;
    return webassets_respond(req, resp, req->path + strlen("/assets"));
}

static int get_healthz(struct api *api, const struct api_req *req, struct api_resp *resp)
{
    (void)api;
    (void)req;
    return api_json(resp, 200, json_pack("{s:s}", "status", "ok"));
}

static int get_login(struct api *api, const struct api_req *req, struct api_resp *resp)
{
    char session[AUTH_SECRET_HEX + 1];
    const char *code = req->arg ? req->arg(req->arg_ctx, "t") : NULL;
    int rc = auth_code_redeem(api->auth, code, session);
    if (rc == -EACCES)
        return api_error(resp, 401, "login code unknown, used or expired");
    if (rc < 0)
        return api_error(resp, 500, "cannot make a session");
    snprintf(resp->set_cookie, sizeof(resp->set_cookie),
             "%s=%s; HttpOnly; SameSite=Strict; Path=/; Max-Age=%d", AUTH_COOKIE_NAME, session,
             AUTH_SESSION_TTL_S);
    memset(session, 0, sizeof(session));
    snprintf(resp->location, sizeof(resp->location), "/");
    LOG_INFO("event=login");
    return api_json(resp, 303, json_pack("{s:s}", "location", "/"));
}

static int get_metrics(struct api *api, const struct api_req *req, struct api_resp *resp)
{
    (void)req;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    size_t cap = 4096, len = 0;
    char *s = malloc(cap);
    if (!s)
        return api_error(resp, 500, "out of memory");
#define EMIT(...)                                                                                  \
    do {                                                                                           \
        int n_ = snprintf(s + len, cap - len, __VA_ARGS__);                                        \
        if (n_ > 0 && (size_t)n_ < cap - len)                                                      \
            len += (size_t)n_;                                                                     \
    } while (0)
    EMIT("# HELP capsem_http_requests_total HTTP responses sent, by status code.\n"
         "# TYPE capsem_http_requests_total counter\n");
    for (int code = 100; code < STATUS_MAX; code++) {
        unsigned long n = atomic_load(&api->responses[code]);
        if (n)
            EMIT("capsem_http_requests_total{code=\"%d\"} %lu\n", code, n);
    }
    long ws = atomic_load(&api->ws_open);
    double up = (double)(now.tv_sec - api->started.tv_sec) +
                (double)(now.tv_nsec - api->started.tv_nsec) / 1e9;
    EMIT("# HELP capsem_websockets_open WebSocket connections open now.\n"
         "# TYPE capsem_websockets_open gauge\n"
         "capsem_websockets_open %ld\n"
         "# HELP capsem_uptime_seconds Seconds since the daemon started.\n"
         "# TYPE capsem_uptime_seconds gauge\n"
         "capsem_uptime_seconds %.3f\n",
         ws, up);
    /* Sessions by status (the daemon's manager) and rows in the sessions' databases. */
    struct sessions *m = api_sessions_attached();
    json_t *list = m ? sessions_list(m) : NULL;
    static const char *const statuses[] = {"booting", "running", "stopping", "stopped", "failed"};
    EMIT("# HELP capsem_sessions Sessions the daemon knows, by status.\n"
         "# TYPE capsem_sessions gauge\n");
    for (size_t k = 0; k < sizeof(statuses) / sizeof(statuses[0]); k++) {
        size_t i, n = 0;
        json_t *sj;
        json_array_foreach(list, i, sj)
        {
            const char *st = json_string_value(json_object_get(sj, "status"));
            n += st && !strcmp(st, statuses[k]);
        }
        EMIT("capsem_sessions{status=\"%s\"} %zu\n", statuses[k], n);
    }
    json_decref(list);
    static const char *const tables[] = {"net_events", "dns_events", "model_calls", "tool_calls"};
    EMIT("# HELP capsem_telemetry_rows Rows written to the sessions' databases, by table.\n"
         "# TYPE capsem_telemetry_rows gauge\n");
    for (int k = 0; k < 4; k++)
        EMIT("capsem_telemetry_rows{table=\"%s\"} %llu\n", tables[k],
             (unsigned long long)events_rows_total(k));
    EMIT("# HELP capsem_events_telemetry_published_total Telemetry rows sent to /api/v1/events.\n"
         "# TYPE capsem_events_telemetry_published_total counter\n"
         "capsem_events_telemetry_published_total %llu\n",
         (unsigned long long)events_rows_published());
#undef EMIT
    s[len] = '\0';
    resp_set(resp, 200, "text/plain; version=0.0.4", s);
    return 0;
}

static int get_version(struct api *api, const struct api_req *req, struct api_resp *resp)
{
    (void)req;
    return api_json(resp, 200, json_pack("{s:s,s:s}", "name", "capsem", "version", api->version));
}

static int post_auth_codes(struct api *api, const struct api_req *req, struct api_resp *resp)
{
    json_int_t ttl = AUTH_CODE_TTL_S;
    char code[AUTH_SECRET_HEX + 1];
    char url[256];
    if (req->body_len > 0) {
        json_t *j = json_loadb(req->body, req->body_len, 0, NULL);
        json_t *t = json_object_get(j, "ttl_seconds");
        bool bad = t && (!json_is_integer(t) || json_integer_value(t) < 1 ||
                         json_integer_value(t) > AUTH_CODE_TTL_S);
        if (t && !bad)
            ttl = json_integer_value(t);
        json_decref(j);
        if (bad)
            return api_error(resp, 400, "ttl_seconds must be an integer from 1 to 600");
    }
    if (auth_code_new(api->auth, (unsigned)ttl, code) < 0)
        return api_error(resp, 500, "cannot make a login code");
    snprintf(url, sizeof(url), "http://%s/login?t=%s", req->host, code);
    int rc = api_json(resp, 201,
                      json_pack("{s:s,s:s,s:I}", "code", code, "url", url, "expires_in", ttl));
    memset(code, 0, sizeof(code));
    return rc;
}

int api_events_hello(struct api *api, char **out, size_t *len)
{
    json_t *j =
        json_pack("{s:s,s:s,s:s}", "type", "hello", "server", "capsem", "version", api->version);
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!s)
        return -ENOMEM;
    *out = s;
    *len = strlen(s);
    return 0;
}
