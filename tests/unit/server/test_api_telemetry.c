/*
 * Unit tests for the session telemetry routes, the read-only query route
 * and the policy routes (server/api_telemetry.c, server/tquery.c), through
 * the real gate and handlers (api_gate + api_handle) on session.db files
 * written by the real telemetry writer in a temporary CAPSEM_HOME. Bad
 * input and what it gives:
 * - no credentials: 401; a bad session id: 400; an unknown session: 404;
 * - limit outside 1..1000 or not a number, a bad cursor, sort not asc/desc,
 *   from/to not integers, decision not allow/block/log, a filter that does
 *   not apply to the kind (provider on dns-events): 400 naming the problem;
 * - query: no "sql", INSERT, ATTACH, PRAGMA writes, two statements, a
 *   syntax error: 400 with SQLite's message; a recursive CTE past the 2 s
 *   limit: 400 "time limit"; more than 10,000 rows or 64 MiB: cut, "truncated": true;
 *   a value over 16 MiB: 400 "string or blob too big";
 *   a session without a database: 404;
 * - policy PUT: not an object or an invalid config: 400 with the file and
 *   JSON path; a locked corp file: 403; the file is unchanged after each.
 * A session without a database lists nothing; stats are zeros.
 */
#include "api.h"
#include "api_telemetry.h"
#include "auth.h"
#include "events.h"
#include "httpd.h"
#include "telemetry.h"
#include "tquery.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define NET_ROWS 2500
#define T0 1700000000000000LL

static char home[256];
static char corp_path[300];
static struct auth *auth;
static struct api *api;
static char bearer[128];

/* Query arguments for a request: "k=v" pairs. */
struct args {
    const char *kv[16];
    size_t n;
};

static const char *arg_get(void *ctx, const char *name)
{
    struct args *a = ctx;
    size_t ln = strlen(name);
    for (size_t i = 0; i < a->n; i++)
        if (!strncmp(a->kv[i], name, ln) && a->kv[i][ln] == '=')
            return a->kv[i] + ln + 1;
    return NULL;
}

/* Run a request through the gate and the handler; returns the status, *body the parsed JSON. */
static int call(const char *method, const char *path, const char *authz, struct args *a,
                const char *body, json_t **out)
{
    struct api_req req = {.method = method,
                          .path = path,
                          .host = "127.0.0.1:7878",
                          .authorization = authz,
                          .arg = arg_get,
                          .arg_ctx = a,
                          .body = body,
                          .body_len = body ? strlen(body) : 0};
    struct args none = {0};
    if (!a)
        req.arg_ctx = &none;
    struct api_resp resp = {0};
    const struct api_route *r = api_gate(api, &req, &resp);
    if (r)
        assert_int_equal(api_handle(api, r, &req, &resp), 0);
    int status = resp.status;
    if (out) {
        *out = resp.body ? json_loadb(resp.body, resp.body_len, 0, NULL) : NULL;
        if (!*out)
            fprintf(stderr, "not JSON: %.*s\n", (int)resp.body_len, resp.body ? resp.body : "");
    }
    api_resp_fini(&resp);
    return status;
}

static int get(const char *path, json_t **out, ...)
{
    struct args a = {0};
    va_list ap;
    va_start(ap, out);
    for (const char *s = va_arg(ap, const char *); s && a.n < 16; s = va_arg(ap, const char *))
        a.kv[a.n++] = s;
    va_end(ap);
    return call("GET", path, bearer, &a, NULL, out);
}

/* The error text of a 4xx/5xx body. */
static const char *errtext(json_t *j)
{
    const char *s = json_string_value(json_object_get(j, "error"));
    return s ? s : "";
}

static void write_session(const char *id, bool with_db)
{
    char dir[512], path[600], err[256];
    snprintf(dir, sizeof(dir), "%s/sessions/%s", home, id);
    char cmd[700];
    snprintf(cmd, sizeof(cmd), "mkdir -p '%s'", dir);
    assert_int_equal(system(cmd), 0);
    if (!with_db)
        return;
    snprintf(path, sizeof(path), "%s/session.db", dir);
    struct telemetry *t = NULL;
    assert_int_equal(telemetry_open(path, &t, err, sizeof(err)), 0);
    struct sink s = telemetry_sink(t);
    static const char *const hosts[] = {"api.anthropic.com", "github.com", "evil.example"};
    for (int i = 0; i < NET_ROWS; i++) {
        char p[64];
        snprintf(p, sizeof(p), "/item/%d", i);
        struct net_event ev = {
            .time_us = T0 + (int64_t)i * 1000,
            .process = i % 2 ? "node" : "curl",
            .pid = 100 + i,
            .method = "GET",
            .scheme = "https",
            .host = hosts[i % 3],
            .port = 443,
            .path = p,
            .status = i % 3 == 2 ? 403 : 200,
            .req_bytes = 10,
            .resp_bytes = 100,
            .duration_us = 5000,
            .ttfb_us = 1000,
            .decision = i % 3 == 2 ? DECISION_BLOCK : DECISION_ALLOW,
            .rule = i % 3 == 2 ? "no-evil" : NULL,
            .tls_version = "TLSv1.3",
            .error = i == 7 ? "upstream reset by peer" : NULL,
        };
        sink_net(&s, &ev);
    }
    for (int i = 0; i < 10; i++) {
        struct dns_event d = {.time_us = T0 + i,
                              .name = i % 2 ? "github.com" : "evil.example",
                              .type = "A",
                              .decision = i % 2 ? DECISION_ALLOW : DECISION_BLOCK,
                              .answer = i % 2 ? "198.18.0.7" : "NXDOMAIN"};
        sink_dns(&s, &d);
    }
    struct model_tool_call tc[2] = {{"call_1", "write_file", "{\"path\":\"a.txt\"}"},
                                    {"call_2", "bash", "{\"cmd\":\"ls\"}"}};
    for (int i = 0; i < 4; i++) {
        bool anth = i < 3;
        struct model_call m = {
            .time_us = T0 + 500000 + i * 10,
            .process = "claude",
            .host = anth ? "api.anthropic.com" : "api.openai.com",
            .path = anth ? "/v1/messages" : "/v1/responses",
            .provider = anth ? "anthropic" : "openai",
            .api = anth ? "messages" : "responses",
            .model_requested = anth ? "claude-sonnet-4" : "gpt-5",
            .model_answered = anth ? "claude-sonnet-4-20250514" : "gpt-5",
            .stream = true,
            .http_status = 200,
            .status = "ok",
            .stop_reason = "tool_use",
            .input_tokens = 100,
            .output_tokens = 20,
            .cache_read_tokens = 5,
            .cache_write_tokens = 0,
            .reasoning_tokens = -1,
            .message_count = 3,
            .tool_count = 2,
            .tool_calls = tc,
            .n_tool_calls = i == 0 ? 2 : (i == 3 ? 1 : 0),
            .ttft_us = 1000,
            .duration_us = 2000,
            .cost_known = anth,
            .cost_usd = anth ? 0.25 : 0,
        };
        sink_model(&s, &m);
    }
    assert_int_equal(telemetry_flush(t), 0);
    telemetry_close(t);
}

static int setup(void **state)
{
    (void)state;
    char err[256];
    snprintf(home, sizeof(home), "/tmp/capsem-test-apitel-XXXXXX");
    if (!mkdtemp(home) || auth_create(home, &auth, err, sizeof(err)) < 0)
        return -1;
    setenv("CAPSEM_HOME", home, 1);
    snprintf(corp_path, sizeof(corp_path), "%s/corp.json", home);
    setenv("CAPSEM_CORP_CONFIG", corp_path, 1);
    struct api_opts o = {.auth = auth, .version = "1.2.3", .port = 7878};
    if (api_create(&o, &api) < 0)
        return -1;
    snprintf(bearer, sizeof(bearer), "Bearer %s", auth_token(auth));
    write_session("s1", true);
    write_session("empty", false);
    /* File events as the VMM writes them, one line cut short at the end. */
    char path[600];
    snprintf(path, sizeof(path), "%s/sessions/s1/fs-events.jsonl", home);
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    for (int i = 0; i < 30; i++)
        fprintf(f,
                "{\"event\":\"%s\",\"path\":\"src/f%d.c\",\"size\":%d,\"time_s\":1700000000,"
                "\"time_ns\":%d}\n",
                i % 2 ? "write" : "create", i, i * 10, i * 1000);
    fprintf(f, "{\"event\":\"wri");
    fclose(f);
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

/* ---- lists ---- */

static void test_list_auth_id_and_unknown_session(void **state)
{
    (void)state;
    json_t *j = NULL;
    static const char *const paths[] = {"/api/v1/sessions/s1/net-events",
                                        "/api/v1/sessions/s1/dns-events",
                                        "/api/v1/sessions/s1/model-calls",
                                        "/api/v1/sessions/s1/tool-calls",
                                        "/api/v1/sessions/s1/file-events",
                                        "/api/v1/sessions/s1/stats",
                                        "/api/v1/policy"};
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        assert_int_equal(call("GET", paths[i], NULL, NULL, NULL, &j), 401);
        json_decref(j);
        assert_int_equal(call("GET", paths[i], "Bearer 00", NULL, NULL, &j), 401);
        json_decref(j);
        assert_int_equal(get(paths[i], &j, NULL), 200);
        json_decref(j);
    }
    assert_int_equal(call("POST", "/api/v1/sessions/s1/query", NULL, NULL, "{}", &j), 403);
    json_decref(j);
    assert_int_equal(get("/api/v1/sessions/nope/net-events", &j, NULL), 404);
    assert_string_equal(errtext(j), "no such session");
    json_decref(j);
    assert_int_equal(get("/api/v1/sessions/nope/stats", &j, NULL), 404);
    json_decref(j);
    assert_int_equal(get("/api/v1/sessions/Bad_Id/net-events", &j, NULL), 400);
    json_decref(j);
    assert_int_equal(get("/api/v1/sessions/../net-events", &j, NULL), 400);
    json_decref(j);
}

/* Page through every net event with `sort`; checks order, no duplicates, no gaps. */
static void page_all(const char *sort)
{
    bool desc = !strcmp(sort, "sort=desc");
    char cursor[128] = "";
    int seen = 0, pages = 0;
    json_int_t prev = desc ? INT64_MAX : -1;
    for (;;) {
        json_t *j = NULL;
        char cur_arg[160];
        snprintf(cur_arg, sizeof(cur_arg), "cursor=%s", cursor);
        assert_int_equal(get("/api/v1/sessions/s1/net-events", &j, "limit=1000", sort,
                             cursor[0] ? cur_arg : NULL, NULL),
                         200);
        json_t *items = json_object_get(j, "items");
        size_t i;
        json_t *it;
        json_array_foreach(items, i, it)
        {
            json_int_t id = json_integer_value(json_object_get(it, "id"));
            if (desc)
                assert_true(id < prev);
            else
                assert_true(id > prev);
            prev = id;
            seen++;
        }
        pages++;
        json_t *next = json_object_get(j, "next_cursor");
        if (json_is_null(next)) {
            json_decref(j);
            break;
        }
        assert_int_equal(json_array_size(items), 1000);
        snprintf(cursor, sizeof(cursor), "%s", json_string_value(next));
        json_decref(j);
        assert_true(pages < 10);
    }
    assert_int_equal(seen, NET_ROWS);
    assert_int_equal(pages, 3);
}

static void test_list_paging_2500_rows(void **state)
{
    (void)state;
    page_all("sort=asc");
    page_all("sort=desc");
    json_t *j = NULL;
    /* Default page size 100; an item carries every column. */
    assert_int_equal(get("/api/v1/sessions/s1/net-events", &j, NULL), 200);
    assert_int_equal(json_array_size(json_object_get(j, "items")), 100);
    json_t *first = json_array_get(json_object_get(j, "items"), 0);
    assert_int_equal(json_integer_value(json_object_get(first, "time_us")), T0);
    assert_string_equal(json_string_value(json_object_get(first, "path")), "/item/0");
    assert_string_equal(json_string_value(json_object_get(first, "tls_version")), "TLSv1.3");
    assert_true(json_is_null(json_object_get(first, "rule")));
    json_decref(j);
}

static size_t count(const char *path, ...)
{
    struct args a = {0};
    va_list ap;
    va_start(ap, path);
    for (const char *s = va_arg(ap, const char *); s && a.n < 15; s = va_arg(ap, const char *))
        a.kv[a.n++] = s;
    va_end(ap);
    a.kv[a.n++] = "limit=1000";
    json_t *j = NULL;
    assert_int_equal(call("GET", path, bearer, &a, NULL, &j), 200);
    size_t n = json_array_size(json_object_get(j, "items"));
    /* Filters here always fit in one page. */
    assert_true(json_is_null(json_object_get(j, "next_cursor")));
    json_decref(j);
    return n;
}

static void test_list_filters(void **state)
{
    (void)state;
    const char *net = "/api/v1/sessions/s1/net-events";
    char from[64], to[64];
    snprintf(from, sizeof(from), "from=%lld", T0 + 100 * 1000);
    snprintf(to, sizeof(to), "to=%lld", T0 + 200 * 1000);
    assert_int_equal(count(net, from, to, NULL), 100);
    assert_int_equal(count(net, "host=GitHub.com", from, to, NULL), 34); /* 100, 103 .. 199 */
    assert_int_equal(count(net, "decision=block", from, to, NULL), 33);  /* 101 .. 197 */
    assert_int_equal(count(net, "q=reset by", NULL), 1);
    assert_int_equal(count(net, "q=/item/24", NULL), 111); /* 24, 240-249, 2400-2499 */
    assert_int_equal(count(net, "q=%", NULL), 0);          /* LIKE wildcards are literal */
    const char *dns = "/api/v1/sessions/s1/dns-events";
    assert_int_equal(count(dns, NULL), 10);
    assert_int_equal(count(dns, "decision=block", NULL), 5);
    assert_int_equal(count(dns, "host=github.com", NULL), 5);
    assert_int_equal(count(dns, "q=nxdomain", NULL), 5);
    const char *mc = "/api/v1/sessions/s1/model-calls";
    assert_int_equal(count(mc, NULL), 4);
    assert_int_equal(count(mc, "provider=anthropic", NULL), 3);
    assert_int_equal(count(mc, "model=gpt-5", NULL), 1);
    assert_int_equal(count(mc, "model=claude-sonnet-4", NULL), 3); /* the requested name */
    assert_int_equal(count(mc, "host=api.openai.com", NULL), 1);
    const char *tc = "/api/v1/sessions/s1/tool-calls";
    assert_int_equal(count(tc, NULL), 3);
    assert_int_equal(count(tc, "provider=openai", NULL), 1);
    assert_int_equal(count(tc, "q=bash", NULL), 1);
    assert_int_equal(count(tc, "q=a.txt", NULL), 2);
    const char *fe = "/api/v1/sessions/s1/file-events";
    assert_int_equal(count(fe, NULL), 30); /* the cut last line is skipped */
    assert_int_equal(count(fe, "q=F1", NULL), 11);
    char ffrom[64];
    snprintf(ffrom, sizeof(ffrom), "from=%lld", 1700000000LL * 1000000 + 20);
    assert_int_equal(count(fe, ffrom, NULL), 10);
    /* A session without a database or file events lists nothing. */
    assert_int_equal(count("/api/v1/sessions/empty/net-events", NULL), 0);
    assert_int_equal(count("/api/v1/sessions/empty/file-events", NULL), 0);
}

static void test_list_file_events_paging(void **state)
{
    (void)state;
    json_t *j = NULL;
    assert_int_equal(get("/api/v1/sessions/s1/file-events", &j, "limit=20", "sort=desc", NULL),
                     200);
    json_t *items = json_object_get(j, "items");
    assert_int_equal(json_array_size(items), 20);
    assert_string_equal(json_string_value(json_object_get(json_array_get(items, 0), "path")),
                        "src/f29.c");
    char cur[160];
    snprintf(cur, sizeof(cur), "cursor=%s", json_string_value(json_object_get(j, "next_cursor")));
    json_decref(j);
    assert_int_equal(get("/api/v1/sessions/s1/file-events", &j, "limit=20", "sort=desc", cur, NULL),
                     200);
    items = json_object_get(j, "items");
    assert_int_equal(json_array_size(items), 10);
    assert_string_equal(json_string_value(json_object_get(json_array_get(items, 9), "path")),
                        "src/f0.c");
    assert_true(json_is_null(json_object_get(j, "next_cursor")));
    json_decref(j);
}

static void test_list_bad_params(void **state)
{
    (void)state;
    const char *net = "/api/v1/sessions/s1/net-events";
    static const char *const bad[][2] = {
        {"limit=0", "limit"},           {"limit=1001", "limit"},
        {"limit=ten", "limit"},         {"cursor=zzz", "cursor"},
        {"cursor=1.", "cursor"},        {"sort=sideways", "sort"},
        {"from=yesterday", "from"},     {"to=1e9", "to"},
        {"decision=maybe", "decision"}, {"provider=openai", "provider"},
        {"model=gpt-5", "model"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        json_t *j = NULL;
        assert_int_equal(get(net, &j, bad[i][0], NULL), 400);
        if (!strstr(errtext(j), bad[i][1]))
            fail_msg("%s: error '%s' does not name %s", bad[i][0], errtext(j), bad[i][1]);
        json_decref(j);
    }
    json_t *j = NULL;
    assert_int_equal(get("/api/v1/sessions/s1/dns-events", &j, "provider=openai", NULL), 400);
    json_decref(j);
    assert_int_equal(get("/api/v1/sessions/s1/file-events", &j, "host=x", NULL), 400);
    json_decref(j);
    assert_int_equal(get("/api/v1/sessions/s1/model-calls", &j, "decision=allow", NULL), 400);
    json_decref(j);
}

static void test_stats_totals(void **state)
{
    (void)state;
    json_t *j = NULL;
    assert_int_equal(get("/api/v1/sessions/s1/stats", &j, NULL), 200);
    json_t *t = json_object_get(j, "totals");
    assert_int_equal(json_integer_value(json_object_get(t, "requests")), NET_ROWS);
    assert_int_equal(json_integer_value(json_object_get(t, "model_calls")), 4);
    assert_int_equal(json_integer_value(json_object_get(t, "input_tokens")), 400);
    assert_true(json_real_value(json_object_get(t, "cost_usd")) > 0.74 &&
                json_real_value(json_object_get(t, "cost_usd")) < 0.76);
    json_t *models = json_object_get(j, "models");
    assert_int_equal(json_array_size(models), 2);
    json_t *m0 = json_array_get(models, 0);
    assert_string_equal(json_string_value(json_object_get(m0, "model")),
                        "claude-sonnet-4-20250514");
    assert_int_equal(json_integer_value(json_object_get(m0, "calls")), 3);
    assert_int_equal(json_integer_value(json_object_get(m0, "output_tokens")), 60);
    json_t *m1 = json_array_get(models, 1);
    assert_int_equal(json_integer_value(json_object_get(m1, "unpriced_calls")), 1);
    json_t *hosts = json_object_get(j, "hosts");
    assert_int_equal(json_array_size(hosts), 3);
    size_t i;
    json_t *h;
    json_array_foreach(hosts, i, h)
    {
        const char *name = json_string_value(json_object_get(h, "host"));
        json_int_t blocked = json_integer_value(json_object_get(h, "blocked"));
        assert_int_equal(blocked, !strcmp(name, "evil.example") ? 833 : 0);
    }
    assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "dns"), "queries")), 10);
    assert_int_equal(json_integer_value(json_object_get(j, "file_events")), 30);
    json_decref(j);
    assert_int_equal(get("/api/v1/sessions/empty/stats", &j, NULL), 200);
    assert_int_equal(json_array_size(json_object_get(j, "models")), 0);
    json_decref(j);
}

/* ---- query ---- */

static int query(const char *id, const char *sql, json_t **out)
{
    char path[128];
    snprintf(path, sizeof(path), "/api/v1/sessions/%s/query", id);
    json_t *b = json_pack("{s:s}", "sql", sql);
    char *body = json_dumps(b, JSON_COMPACT);
    json_decref(b);
    int st = call("POST", path, bearer, NULL, body, out);
    free(body);
    return st;
}

static void test_query_select(void **state)
{
    (void)state;
    json_t *j = NULL;
    assert_int_equal(
        query("s1", "SELECT host, count(*) AS n FROM net_events GROUP BY host ORDER BY host", &j),
        200);
    assert_string_equal(json_string_value(json_array_get(json_object_get(j, "columns"), 1)), "n");
    json_t *rows = json_object_get(j, "rows");
    assert_int_equal(json_array_size(rows), 3);
    assert_string_equal(json_string_value(json_array_get(json_array_get(rows, 0), 0)),
                        "api.anthropic.com");
    assert_int_equal(json_integer_value(json_array_get(json_array_get(rows, 0), 1)), 834);
    assert_false(json_is_true(json_object_get(j, "truncated")));
    json_decref(j);
}

static void test_query_refuses_writes(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "INSERT INTO decisions VALUES (9, 'x')",
        "DELETE FROM net_events",
        "UPDATE net_events SET host = 'x'",
        "DROP TABLE net_events",
        "CREATE TABLE x (a)",
        "ATTACH DATABASE '/tmp/capsem-x.db' AS x",
        "PRAGMA writable_schema = 1",
        "PRAGMA query_only = 0",
        "PRAGMA journal_mode = DELETE",
        "SELECT 1; DELETE FROM net_events",
        "SELEC 1",
        "",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        json_t *j = NULL;
        assert_int_equal(query("s1", bad[i], &j), 400);
        assert_true(errtext(j)[0] != '\0');
        json_decref(j);
    }
    json_t *j = NULL;
    assert_int_equal(call("POST", "/api/v1/sessions/s1/query", bearer, NULL, "{\"sql\":1}", &j),
                     400);
    json_decref(j);
    assert_int_equal(call("POST", "/api/v1/sessions/s1/query", bearer, NULL, "[1]", &j), 400);
    json_decref(j);
    /* Nothing was changed. */
    assert_int_equal(query("s1", "SELECT count(*) FROM net_events", &j), 200);
    assert_int_equal(
        json_integer_value(json_array_get(json_array_get(json_object_get(j, "rows"), 0), 0)),
        NET_ROWS);
    json_decref(j);
    assert_int_equal(query("empty", "SELECT 1", &j), 404);
    json_decref(j);
    assert_int_equal(query("nope", "SELECT 1", &j), 404);
    json_decref(j);
}

static void test_query_time_limit(void **state)
{
    (void)state;
    json_t *j = NULL;
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    assert_int_equal(query("s1",
                           "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "
                           "SELECT count(*) FROM c",
                           &j),
                     400);
    clock_gettime(CLOCK_MONOTONIC, &b);
    assert_non_null(strstr(errtext(j), "time limit"));
    json_decref(j);
    double secs = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
    assert_true(secs >= 1.9 && secs < 5.0);
}

static void test_query_row_limit(void **state)
{
    (void)state;
    json_t *j = NULL;
    assert_int_equal(query("s1", "SELECT id FROM net_events", &j), 200);
    assert_int_equal(json_array_size(json_object_get(j, "rows")), NET_ROWS);
    assert_false(json_is_true(json_object_get(j, "truncated")));
    json_decref(j);
    assert_int_equal(query("s1",
                           "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
                           "WHERE x < 20000) SELECT x FROM c",
                           &j),
                     200);
    assert_int_equal(json_array_size(json_object_get(j, "rows")), TQ_SQL_ROWS_MAX);
    assert_true(json_is_true(json_object_get(j, "truncated")));
    json_decref(j);
    /* A value over 16 MiB is refused; results past 64 MiB are cut. */
    assert_int_equal(query("s1", "SELECT randomblob(100000000)", &j), 400);
    assert_non_null(strstr(errtext(j), "too big"));
    json_decref(j);
    assert_int_equal(query("s1",
                           "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
                           "WHERE x < 100) SELECT printf('%.*c', 1000000, 'x') FROM c",
                           &j),
                     200);
    size_t nrows = json_array_size(json_object_get(j, "rows"));
    assert_true(nrows >= 64 && nrows < 70);
    assert_true(json_is_true(json_object_get(j, "truncated")));
    json_decref(j);
}

/* ---- policy ---- */

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    char *buf = calloc(1, 65536);
    size_t n = buf ? fread(buf, 1, 65535, f) : 0;
    (void)n;
    fclose(f);
    return buf;
}

static void test_policy_get_put(void **state)
{
    (void)state;
    char user[400];
    snprintf(user, sizeof(user), "%s/config.json", home);
    unlink(user);
    unlink(corp_path);
    json_t *j = NULL;
    assert_int_equal(get("/api/v1/policy", &j, NULL), 200);
    assert_int_equal(json_object_size(json_object_get(j, "config")), 0);
    assert_false(json_is_true(json_object_get(j, "locked")));
    json_decref(j);

    const char *good = "{\"network\":{\"default\":\"block\",\"rules\":[{\"id\":\"gh\","
                       "\"domain\":\"github.com\",\"action\":\"allow\"}]},"
                       "\"credentials\":{\"anthropic\":{\"api_key\":\"sk-secret-1\"}}}";
    assert_int_equal(call("PUT", "/api/v1/policy", bearer, NULL, good, &j), 200);
    json_decref(j);
    char *text = slurp(user);
    assert_non_null(text);
    assert_non_null(strstr(text, "\"gh\""));
    assert_non_null(strstr(text, "sk-secret-1"));
    free(text);
    struct stat st;
    assert_int_equal(stat(user, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);

    /* GET hides the key; a PUT of what GET gave keeps it. */
    assert_int_equal(get("/api/v1/policy", &j, NULL), 200);
    char *got = json_dumps(json_object_get(j, "config"), JSON_COMPACT);
    json_decref(j);
    assert_null(strstr(got, "sk-secret-1"));
    assert_int_equal(call("PUT", "/api/v1/policy", bearer, NULL, got, &j), 200);
    json_decref(j);
    free(got);
    text = slurp(user);
    assert_non_null(strstr(text, "sk-secret-1"));
    free(text);

    /* Bad documents: 400 naming the file and the JSON path; the file is unchanged. */
    char *before = slurp(user);
    assert_int_equal(call("PUT", "/api/v1/policy", bearer, NULL,
                          "{\"network\":{\"rules\":[{\"domain\":\"x.com\",\"action\":\"maybe\"}]}}",
                          &j),
                     400);
    assert_non_null(strstr(errtext(j), "config.json"));
    assert_non_null(strstr(errtext(j), "$.network.rules[0].action"));
    json_decref(j);
    assert_int_equal(call("PUT", "/api/v1/policy", bearer, NULL, "{\"nonsense\":true}", &j), 400);
    json_decref(j);
    assert_int_equal(call("PUT", "/api/v1/policy", bearer, NULL, "", &j), 400);
    json_decref(j);
    assert_int_equal(call("PUT", "/api/v1/policy", bearer, NULL, "[]", &j), 400);
    json_decref(j);
    assert_int_equal(call("PUT", "/api/v1/policy", NULL, NULL, good, &j), 403); /* no Origin */
    json_decref(j);
    char *after = slurp(user);
    assert_string_equal(before, after);
    free(after);

    /* A locked corp file: 403, file unchanged; GET says locked. */
    FILE *f = fopen(corp_path, "w");
    assert_non_null(f);
    fputs("{\"network\":{\"locked\":true,\"default\":\"block\"}}", f);
    fclose(f);
    assert_int_equal(call("PUT", "/api/v1/policy", bearer, NULL, good, &j), 403);
    assert_non_null(strstr(errtext(j), "locked"));
    json_decref(j);
    assert_int_equal(get("/api/v1/policy", &j, NULL), 200);
    assert_true(json_is_true(json_object_get(j, "locked")));
    json_decref(j);
    after = slurp(user);
    assert_string_equal(before, after);
    free(after);
    free(before);
    unlink(corp_path);
}

/* ---- events ---- */

static void test_events_ring_and_lost(void **state)
{
    (void)state;
    events_reset();
    uint64_t seq = 0;
    char *msg = NULL;
    size_t len = 0;
    assert_int_equal(events_next(&seq, &msg, &len), 0);
    assert_int_equal(events_publish("not json"), -EINVAL);
    assert_int_equal(events_publish("[1]"), -EINVAL);
    assert_int_equal(events_publish("{\"type\":\"a\"}"), 0);
    assert_int_equal(events_next(&seq, &msg, &len), 1);
    assert_string_equal(msg, "{\"type\":\"a\"}");
    assert_int_equal(len, strlen(msg));
    free(msg);
    assert_int_equal(seq, 1);
    for (int i = 0; i < EVENTS_RING + 10; i++) {
        char b[64];
        snprintf(b, sizeof(b), "{\"n\":%d}", i);
        assert_int_equal(events_publish(b), 0);
    }
    /* A reader at seq 1 missed the first 10 of the new messages. */
    assert_int_equal(events_next(&seq, &msg, &len), 1);
    assert_string_equal(msg, "{\"type\":\"lost\",\"count\":10}");
    free(msg);
    assert_int_equal(events_next(&seq, &msg, &len), 1);
    assert_string_equal(msg, "{\"n\":10}");
    free(msg);
    events_reset();
}

static void test_events_poller_publishes_new_rows(void **state)
{
    (void)state;
    events_reset();
    char dir[400], path[500], err[256];
    snprintf(dir, sizeof(dir), "%s/sessions/live", home);
    mkdir(dir, 0700);
    snprintf(path, sizeof(path), "%s/session.db", dir);
    struct telemetry *t = NULL;
    assert_int_equal(telemetry_open(path, &t, err, sizeof(err)), 0);
    struct sink s = telemetry_sink(t);
    struct dns_event d = {.time_us = T0, .name = "old.example", .type = "A", .answer = "NXDOMAIN"};
    sink_dns(&s, &d);
    assert_int_equal(telemetry_flush(t), 0);
    assert_int_equal(events_poll_start(home), 0);
    usleep(3 * EVENTS_POLL_MS * 1000); /* the first look records what is there */
    uint64_t seq = events_last_seq();
    d.name = "new.example";
    sink_dns(&s, &d);
    struct net_event n = {.time_us = T0, .host = "live.example", .method = "GET", .port = 80};
    sink_net(&s, &n);
    assert_int_equal(telemetry_flush(t), 0);
    /* File events: a file that did not exist at the first look; a cut line waits. */
    char fpath[600];
    snprintf(fpath, sizeof(fpath), "%s/fs-events.jsonl", dir);
    FILE *fe = fopen(fpath, "w");
    assert_non_null(fe);
    fputs("{\"event\":\"create\",\"path\":\"a\",\"size\":0,\"time_s\":1,\"time_ns\":2000}\n"
          "{\"event\":\"write\",\"path\":\"a\",\"size\":5,\"time_s\":2,\"time_ns\":0}\n"
          "{\"event\":\"wr",
          fe);
    fclose(fe);
    /* The session manager's session.json: a status change is announced. */
    char sjpath[600];
    snprintf(sjpath, sizeof(sjpath), "%s/session.json", dir);
    FILE *sj = fopen(sjpath, "w");
    assert_non_null(sj);
    fputs("{\"name\":\"live\",\"created\":1,\"status\":\"stopped\",\"reason\":\"\","
          "\"exit_code\":3}",
          sj);
    fclose(sj);
    bool got_dns = false, got_net = false, got_old = false, got_state = false;
    int files = 0;
    for (int i = 0; i < 40 && !(got_dns && got_net && files == 2 && got_state); i++) {
        usleep(100000);
        char *msg;
        size_t len;
        while (events_next(&seq, &msg, &len) == 1) {
            json_t *j = json_loads(msg, 0, NULL);
            free(msg);
            const char *sess = json_string_value(json_object_get(j, "session"));
            const char *type = json_string_value(json_object_get(j, "type"));
            if (type && !strcmp(type, "session") && sess && !strcmp(sess, "live")) {
                assert_string_equal(json_string_value(json_object_get(j, "status")), "stopped");
                assert_int_equal(json_integer_value(json_object_get(j, "exit_code")), 3);
                assert_null(json_object_get(j, "reason")); /* empty: left out */
                got_state = true;
            }
            const char *kind = json_string_value(json_object_get(j, "kind"));
            json_t *row = json_object_get(j, "row");
            if (sess && !strcmp(sess, "live") && kind) {
                const char *name = json_string_value(json_object_get(row, "name"));
                const char *host = json_string_value(json_object_get(row, "host"));
                if (!strcmp(kind, "dns-events") && name && !strcmp(name, "new.example"))
                    got_dns = true;
                if (!strcmp(kind, "dns-events") && name && !strcmp(name, "old.example"))
                    got_old = true;
                if (!strcmp(kind, "net-events") && host && !strcmp(host, "live.example"))
                    got_net = true;
                if (!strcmp(kind, "file-events")) {
                    files++;
                    assert_int_equal(json_integer_value(json_object_get(row, "id")), files);
                    assert_int_equal(json_integer_value(json_object_get(row, "time_us")),
                                     files == 1 ? 1000002 : 2000000);
                }
            }
            json_decref(j);
        }
    }
    /* /metrics has the rows of every watched database ("live" has 2 DNS rows, s1 10). */
    struct api_req req = {
        .method = "GET", .path = "/metrics", .host = "127.0.0.1:7878", .authorization = bearer};
    struct api_resp resp = {0};
    const struct api_route *r = api_gate(api, &req, &resp);
    assert_non_null(r);
    assert_int_equal(api_handle(api, r, &req, &resp), 0);
    assert_int_equal(resp.status, 200);
    assert_non_null(strstr(resp.body, "capsem_telemetry_rows{table=\"dns_events\"} 12\n"));
    assert_non_null(strstr(resp.body, "capsem_telemetry_rows{table=\"net_events\"} 2501\n"));
    assert_non_null(strstr(resp.body, "capsem_sessions{status=\"running\"} 0\n"));
    api_resp_fini(&resp);
    events_poll_stop();
    telemetry_close(t);
    assert_true(got_dns);
    assert_true(got_net);
    assert_int_equal(files, 2);
    assert_true(got_state);
    assert_false(got_old);
    assert_true(events_rows_total(0) >= 1);
    events_reset();
}

/* ---- the /api/v1/events WebSocket through a real daemon ---- */

/* Read exactly n bytes. */
static void recv_n(int fd, unsigned char *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t k = recv(fd, buf + got, n - got, 0);
        if (k <= 0)
            fail_msg("connection ended or timed out after %zu of %zu bytes", got, n);
        got += (size_t)k;
    }
}

/* One unmasked server text frame into msg (NUL-terminated). */
static void ws_frame(int fd, char *msg, size_t cap)
{
    unsigned char h[8];
    recv_n(fd, h, 2);
    assert_int_equal(h[0], 0x81); /* FIN + text */
    size_t len = h[1] & 0x7f;
    if (len == 126) {
        recv_n(fd, h, 2);
        len = ((size_t)h[0] << 8) | h[1];
    }
    assert_true(len < 127 * 1024 && len < cap);
    recv_n(fd, (unsigned char *)msg, len);
    msg[len] = '\0';
}

static void test_events_websocket_live(void **state)
{
    (void)state;
    char err[256];
    struct httpd *h = NULL;
    struct httpd_opts o = {.addr = "127.0.0.1", .port = 0, .auth = auth, .version = "1.2.3"};
    assert_int_equal(httpd_create(&o, &h, err, sizeof(err)), 0);
    unsigned port = httpd_port(h);
    events_reset();
    assert_int_equal(events_poll_start(home), 0);
    usleep(2 * EVENTS_POLL_MS * 1000);

    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    struct timeval tv = {.tv_sec = 10};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    char req[1024];
    snprintf(req, sizeof(req),
             "GET /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1:%u\r\nUpgrade: websocket\r\n"
             "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
             "Sec-WebSocket-Version: 13\r\nAuthorization: %s\r\n\r\n",
             port, bearer);
    assert_int_equal(send(fd, req, strlen(req), MSG_NOSIGNAL), (ssize_t)strlen(req));
    /* The response head, byte by byte so no frame byte is taken with it. */
    char head[2048];
    size_t hl = 0;
    while (hl + 1 < sizeof(head) && (hl < 4 || memcmp(head + hl - 4, "\r\n\r\n", 4))) {
        recv_n(fd, (unsigned char *)head + hl, 1);
        hl++;
    }
    head[hl] = '\0';
    assert_non_null(strstr(head, " 101 "));
    char msg[128 * 1024];
    ws_frame(fd, msg, sizeof(msg));
    assert_non_null(strstr(msg, "\"type\":\"hello\""));

    /* Published messages arrive in order. */
    assert_int_equal(events_publish("{\"type\":\"session\",\"id\":\"a\",\"status\":\"running\"}"),
                     0);
    assert_int_equal(events_publish("{\"type\":\"session\",\"id\":\"a\",\"status\":\"stopped\"}"),
                     0);
    ws_frame(fd, msg, sizeof(msg));
    assert_string_equal(msg, "{\"type\":\"session\",\"id\":\"a\",\"status\":\"running\"}");
    ws_frame(fd, msg, sizeof(msg));
    assert_string_equal(msg, "{\"type\":\"session\",\"id\":\"a\",\"status\":\"stopped\"}");

    /* A new telemetry row in a session's database, live. */
    char dir[400], path[500];
    snprintf(dir, sizeof(dir), "%s/sessions/ws-live", home);
    mkdir(dir, 0700);
    usleep(2 * EVENTS_POLL_MS * 1000); /* seen without a database: every row is new */
    snprintf(path, sizeof(path), "%s/session.db", dir);
    struct telemetry *t = NULL;
    assert_int_equal(telemetry_open(path, &t, err, sizeof(err)), 0);
    struct sink s = telemetry_sink(t);
    struct net_event n = {.time_us = T0, .host = "ws.example", .method = "GET", .port = 443};
    sink_net(&s, &n);
    assert_int_equal(telemetry_flush(t), 0);
    ws_frame(fd, msg, sizeof(msg));
    json_t *j = json_loads(msg, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(j, "type")), "telemetry");
    assert_string_equal(json_string_value(json_object_get(j, "session")), "ws-live");
    assert_string_equal(json_string_value(json_object_get(j, "kind")), "net-events");
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "row"), "host")),
                        "ws.example");
    json_decref(j);
    telemetry_close(t);
    close(fd);
    events_poll_stop();
    httpd_destroy(h);
    events_reset();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_list_auth_id_and_unknown_session),
        cmocka_unit_test(test_list_paging_2500_rows),
        cmocka_unit_test(test_list_filters),
        cmocka_unit_test(test_list_file_events_paging),
        cmocka_unit_test(test_list_bad_params),
        cmocka_unit_test(test_stats_totals),
        cmocka_unit_test(test_query_select),
        cmocka_unit_test(test_query_refuses_writes),
        cmocka_unit_test(test_query_time_limit),
        cmocka_unit_test(test_query_row_limit),
        cmocka_unit_test(test_policy_get_put),
        cmocka_unit_test(test_events_ring_and_lost),
        cmocka_unit_test(test_events_poller_publishes_new_rows),
        cmocka_unit_test(test_events_websocket_live),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
