/*
 * Unit tests for the route table and the request gate (server/api.c), with
 * no sockets: requests are structs. Also checks that schemas/openapi.json
 * and the table list the same (method, path) pairs, with WebSocket routes
 * marked "x-websocket": true. Bad input and what it gives:
 * - a Host that is missing, foreign or on another port: 403 before routing;
 * - an unknown path: 404; a known path with another method: 405;
 * - no or wrong credentials on an API_AUTH route: 401;
 * - a foreign Origin on a POST or an upgrade: 403 (even with the token);
 *   no Origin with cookie auth only: 403;
 * - a body that is not a JSON object on an API_JSON_BODY route: 400;
 * - a path pattern segment "{x}" never matches an empty segment or a '/'.
 */
#include "api.h"
#include "auth.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static char home[256];
static struct auth *auth;
static struct api *api;
static char bearer[128];
static char cookie[128];
static const char *const allow[] = {"dev.box"};

static int setup(void **state)
{
    (void)state;
    char err[256], code[AUTH_SECRET_HEX + 1], session[AUTH_SECRET_HEX + 1];
    snprintf(home, sizeof(home), "/tmp/capsem-test-api-XXXXXX");
    if (!mkdtemp(home) || auth_create(home, &auth, err, sizeof(err)) < 0)
        return -1;
    struct api_opts o = {
        .auth = auth, .version = "1.2.3", .port = 7878, .allow = allow, .nallow = 1};
    if (api_create(&o, &api) < 0)
        return -1;
    snprintf(bearer, sizeof(bearer), "Bearer %s", auth_token(auth));
    if (auth_code_new(auth, 60, code) < 0 || auth_code_redeem(auth, code, session) < 0)
        return -1;
    snprintf(cookie, sizeof(cookie), "%s=%s", AUTH_COOKIE_NAME, session);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    api_destroy(api);
    auth_destroy(auth);
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", home);
    return system(cmd) == 0 ? 0 : -1;
}

/* Gate a request; returns 0 when it passes, else the error status. */
static int gate(const char *method, const char *path, const char *host, const char *origin,
                const char *authz, const char *ck)
{
    struct api_req req = {.method = method,
                          .path = path,
                          .host = host,
                          .origin = origin,
                          .authorization = authz,
                          .cookie = ck};
    struct api_resp resp = {0};
    const struct api_route *r = api_gate(api, &req, &resp);
    int status = r ? 0 : resp.status;
    if (!r) {
        assert_non_null(resp.body);
        json_t *j = json_loadb(resp.body, resp.body_len, 0, NULL);
        assert_true(json_is_string(json_object_get(j, "error")));
        json_decref(j);
    }
    api_resp_fini(&resp);
    return status;
}

static void test_api_gate_host(void **state)
{
    (void)state;
    assert_int_equal(gate("GET", "/healthz", NULL, NULL, NULL, NULL), 403);
    assert_int_equal(gate("GET", "/healthz", "evil.example", NULL, NULL, NULL), 403);
    assert_int_equal(gate("GET", "/healthz", "localhost:7879", NULL, NULL, NULL), 403);
    assert_int_equal(gate("GET", "/healthz", "localhost:7878", NULL, NULL, NULL), 0);
    assert_int_equal(gate("GET", "/healthz", "dev.box:7878", NULL, NULL, NULL), 0);
    /* Host is judged before the route, so a rebinding page learns nothing. */
    assert_int_equal(gate("GET", "/nope", "evil.example", NULL, NULL, NULL), 403);
}

static void test_api_gate_route_and_method(void **state)
{
    (void)state;
    assert_int_equal(gate("GET", "/nope", "localhost", NULL, bearer, NULL), 404);
    assert_int_equal(gate("DELETE", "/healthz", "localhost", NULL, bearer, NULL), 405);
    assert_int_equal(gate("HEAD", "/healthz", "localhost", NULL, NULL, NULL), 0);
    assert_int_equal(gate("GET", "/api/v1/version", "localhost", NULL, NULL, NULL), 401);
    assert_int_equal(gate("GET", "/api/v1/version", "localhost", NULL, bearer, NULL), 0);
    assert_int_equal(gate("GET", "/api/v1/version", "localhost", NULL, NULL, cookie), 0);
    assert_int_equal(gate("GET", "/api/v1/version", "localhost", NULL, "Bearer nope", NULL), 401);
}

static void test_api_gate_origin(void **state)
{
    (void)state;
    const char *p = "/api/v1/auth/codes";
    assert_int_equal(gate("POST", p, "localhost:7878", NULL, bearer, NULL), 0);
    assert_int_equal(gate("POST", p, "localhost:7878", "http://localhost:7878", bearer, NULL), 0);
    assert_int_equal(gate("POST", p, "localhost:7878", "http://evil.example", bearer, NULL), 403);
    assert_int_equal(gate("POST", p, "localhost:7878", "http://localhost:7878", NULL, cookie), 0);
    assert_int_equal(gate("POST", p, "localhost:7878", NULL, NULL, cookie), 403);
    assert_int_equal(gate("POST", p, "localhost:7878", "http://localhost:7878", NULL, NULL), 401);
    /* WebSocket upgrades follow the same rule. */
    const char *ws = "/api/v1/events";
    assert_int_equal(gate("GET", ws, "127.0.0.1:7878", "http://127.0.0.1:7878", NULL, cookie), 0);
    assert_int_equal(gate("GET", ws, "127.0.0.1:7878", "http://localhost:7878", NULL, cookie), 403);
    assert_int_equal(gate("GET", ws, "127.0.0.1:7878", NULL, NULL, cookie), 403);
    assert_int_equal(gate("GET", ws, "127.0.0.1:7878", NULL, bearer, NULL), 0);
    /* A GET that changes nothing does not need Origin. */
    assert_int_equal(
        gate("GET", "/api/v1/version", "localhost", "http://evil.example", NULL, cookie), 0);
}

static void test_api_handle_json_body(void **state)
{
    (void)state;
    size_t n;
    const struct api_route *routes = api_routes(&n);
    const struct api_route *codes = NULL;
    for (size_t i = 0; i < n; i++)
        if (!strcmp(routes[i].pattern, "/api/v1/auth/codes"))
            codes = &routes[i];
    assert_non_null(codes);
    const char *bad[] = {"{", "[]", "1", "{\"a\":1} {}", "{\"ttl_seconds\":0}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct api_req req = {.method = "POST",
                              .path = codes->pattern,
                              .host = "localhost",
                              .body = bad[i],
                              .body_len = strlen(bad[i])};
        struct api_resp resp = {0};
        assert_int_equal(api_handle(api, codes, &req, &resp), 0);
        assert_int_equal(resp.status, 400);
        api_resp_fini(&resp);
    }
    struct api_req req = {.method = "POST", .path = codes->pattern, .host = "localhost"};
    struct api_resp resp = {0};
    assert_int_equal(api_handle(api, codes, &req, &resp), 0);
    assert_int_equal(resp.status, 201);
    json_t *j = json_loadb(resp.body, resp.body_len, 0, NULL);
    const char *code = json_string_value(json_object_get(j, "code"));
    assert_non_null(code);
    /* The minted code signs a browser in once. */
    char session[AUTH_SECRET_HEX + 1];
    assert_int_equal(auth_code_redeem(auth, code, session), 0);
    assert_int_equal(auth_code_redeem(auth, code, session), -EACCES);
    json_decref(j);
    api_resp_fini(&resp);
}

static void test_api_path_match_params(void **state)
{
    (void)state;
    assert_true(api_path_match("/a/{id}/b", "/a/x1/b"));
    assert_false(api_path_match("/a/{id}/b", "/a//b"));
    assert_false(api_path_match("/a/{id}/b", "/a/x/y/b"));
    assert_false(api_path_match("/a/{id}", "/a/"));
    assert_true(api_path_match("/a/{id}", "/a/z"));
    assert_false(api_path_match("/a", "/a/"));
    assert_false(api_path_match("/a", "/ab"));
    assert_true(api_path_match("/", "/"));
}

static void test_api_metrics_counts(void **state)
{
    (void)state;
    size_t n;
    const struct api_route *routes = api_routes(&n);
    const struct api_route *metrics = NULL;
    for (size_t i = 0; i < n; i++)
        if (!strcmp(routes[i].pattern, "/metrics"))
            metrics = &routes[i];
    assert_non_null(metrics);
    api_count_response(api, 418);
    api_count_response(api, 418);
    api_count_response(api, 99);  /* out of range: ignored */
    api_count_response(api, 600); /* out of range: ignored */
    api_count_ws(api, 1);
    api_count_ws(api, 1);
    api_count_ws(api, -1);
    struct api_req req = {.method = "GET", .path = "/metrics", .host = "localhost"};
    struct api_resp resp = {0};
    assert_int_equal(api_handle(api, metrics, &req, &resp), 0);
    assert_int_equal(resp.status, 200);
    assert_non_null(strstr(resp.body, "capsem_http_requests_total{code=\"418\"} 2\n"));
    assert_null(strstr(resp.body, "code=\"99\""));
    assert_null(strstr(resp.body, "code=\"600\""));
    assert_non_null(strstr(resp.body, "\ncapsem_websockets_open 1\n"));
    api_count_ws(api, -1);
    api_resp_fini(&resp);
}

/* schemas/openapi.json, found from this file's path (tests/unit/server/). */
static json_t *load_openapi(void)
{
    char path[4096];
    const char *me = __FILE__;
    const char *cut = strstr(me, "tests/unit/server/test_api.c");
    assert_non_null(cut);
    snprintf(path, sizeof(path), "%.*sschemas/openapi.json", (int)(cut - me), me);
    json_error_t err;
    json_t *j = json_load_file(path, 0, &err);
    if (!j)
        fail_msg("%s:%d: %s", path, err.line, err.text);
    return j;
}

static void test_api_routes_match_openapi(void **state)
{
    (void)state;
    json_t *doc = load_openapi();
    assert_string_equal(json_string_value(json_object_get(doc, "openapi")), "3.1.0");
    json_t *paths = json_object_get(doc, "paths");
    assert_true(json_is_object(paths));
    size_t n;
    const struct api_route *routes = api_routes(&n);
    assert_true(n > 0);
    /* Every table row is in openapi.json... */
    for (size_t i = 0; i < n; i++) {
        char m[16];
        size_t ml = strlen(routes[i].method);
        assert_true(ml < sizeof(m));
        for (size_t k = 0; k <= ml; k++)
            m[k] = (char)(routes[i].method[k] >= 'A' && routes[i].method[k] <= 'Z'
                              ? routes[i].method[k] - 'A' + 'a'
                              : routes[i].method[k]);
        json_t *op = json_object_get(json_object_get(paths, routes[i].pattern), m);
        if (!op)
            fail_msg("route %s %s is not in schemas/openapi.json", routes[i].method,
                     routes[i].pattern);
        bool ws = json_is_true(json_object_get(op, "x-websocket"));
        if (ws != (routes[i].kind == API_WS))
            fail_msg("%s %s: x-websocket disagrees with the table", routes[i].method,
                     routes[i].pattern);
        bool open = json_is_array(json_object_get(op, "security")) &&
                    json_array_size(json_object_get(op, "security")) == 0;
        if (open != !(routes[i].flags & API_AUTH))
            fail_msg("%s %s: security disagrees with API_AUTH", routes[i].method,
                     routes[i].pattern);
    }
    /* ...and every operation in openapi.json is a table row. */
    const char *p;
    json_t *item;
    json_object_foreach(paths, p, item)
    {
        const char *m;
        json_t *op;
        json_object_foreach(item, m, op)
        {
            static const char *const methods[] = {"get",     "put",  "post",  "delete",
                                                  "options", "head", "patch", "trace"};
            bool is_method = false;
            for (size_t k = 0; k < sizeof(methods) / sizeof(methods[0]); k++)
                is_method |= !strcmp(m, methods[k]);
            if (!is_method)
                continue;
            bool found = false;
            for (size_t i = 0; i < n; i++)
                found |= !strcmp(routes[i].pattern, p) && !strcasecmp(routes[i].method, m);
            if (!found)
                fail_msg("schemas/openapi.json has %s %s, the route table does not", m, p);
        }
    }
    json_decref(doc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_api_gate_host),
        cmocka_unit_test(test_api_gate_route_and_method),
        cmocka_unit_test(test_api_gate_origin),
        cmocka_unit_test(test_api_handle_json_body),
        cmocka_unit_test(test_api_path_match_params),
        cmocka_unit_test(test_api_metrics_counts),
        cmocka_unit_test(test_api_routes_match_openapi),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
