/*
 * Unit tests for mitm/policy.{h,c} and mitm/config.c: domain, method and path
 * matching; first match wins; the rule id in every decision; corp over user,
 * defaults, presets and the corp lock; DNS decisions; every kind of bad
 * config with its exact error path (nothing is built from a bad file);
 * loading files (missing = absent, bad JSON with line and column); the store
 * swapping policies under four reading threads; and every `json` example in
 * docs/policy.md checked against schemas/config.schema.json (with a small
 * validator for the keywords that schema uses) and against the C validator.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "policy.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <regex.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static json_t *parse(const char *text)
{
    json_error_t je;
    json_t *j = json_loads(text, 0, &je);
    if (!j)
        fail_msg("test JSON: %s: %s", text, je.text);
    return j;
}

/* Build from two JSON texts (either may be NULL); the build must succeed. */
static struct policy *build(const char *corp, const char *user)
{
    json_t *c = corp ? parse(corp) : NULL, *u = user ? parse(user) : NULL;
    struct policy *p = NULL;
    char err[512];
    int rc = policy_build(c, "corp.json", u, "user.json", &p, err, sizeof(err));
    if (rc != 0)
        fail_msg("build failed: %s", err);
    json_decref(c);
    json_decref(u);
    return p;
}

static void expect_http(const struct policy *p, const char *host, const char *method,
                        const char *path, enum decision d, const char *rule)
{
    struct policy_result r = policy_decide_http(p, host, method, path);
    if (r.decision != d || (rule == NULL) != (r.rule == NULL) || (rule && strcmp(rule, r.rule)))
        fail_msg("%s %s %s: got %s by %s, want %s by %s", method ? method : "-", host,
                 path ? path : "-", decision_name(r.decision), r.rule ? r.rule : "default",
                 decision_name(d), rule ? rule : "default");
}

static void expect_dns(const struct policy *p, const char *name, enum decision d, const char *rule)
{
    struct policy_result r = policy_decide_dns(p, name);
    if (r.decision != d || (rule == NULL) != (r.rule == NULL) || (rule && strcmp(rule, r.rule)))
        fail_msg("dns %s: got %s by %s, want %s by %s", name, decision_name(r.decision),
                 r.rule ? r.rule : "default", decision_name(d), rule ? rule : "default");
}

static void test_policy_build_nothing_blocks_everything(void **state)
{
    (void)state;
    struct policy *p = build(NULL, NULL);
    expect_http(p, "api.anthropic.com", "POST", "/v1/messages", DECISION_BLOCK, NULL);
    expect_dns(p, "api.anthropic.com", DECISION_BLOCK, NULL);
    const unsigned *ports = (const unsigned *)1;
    assert_int_equal(policy_http_ports(p, &ports), 0);
    assert_null(policy_upstream_ca_file(p));
    policy_unref(p);
    /* an empty document and one with an empty network section are the same */
    p = build("{}", "{\"network\":{}}");
    expect_http(p, "x.com", "GET", "/", DECISION_BLOCK, NULL);
    policy_unref(p);
}

static void test_policy_decide_http_exact_domain(void **state)
{
    (void)state;
    struct policy *p = build(NULL, "{\"network\":{\"rules\":[{\"id\":\"gh\",\"domain\":"
                                   "\"GitHub.com\",\"action\":\"allow\"}]}}");
    expect_http(p, "github.com", "GET", "/", DECISION_ALLOW, "gh");
    expect_http(p, "GITHUB.COM", "GET", "/", DECISION_ALLOW, "gh");
    expect_http(p, "github.com.", "GET", "/", DECISION_ALLOW, "gh"); /* trailing dot: same host */
    expect_http(p, "api.github.com", "GET", "/", DECISION_BLOCK, NULL);
    expect_http(p, "xgithub.com", "GET", "/", DECISION_BLOCK, NULL);
    expect_http(p, "github.com.evil.net", "GET", "/", DECISION_BLOCK, NULL);
    expect_http(p, "github.co", "GET", "/", DECISION_BLOCK, NULL);
    expect_http(p, "", "GET", "/", DECISION_BLOCK, NULL);
    expect_http(p, NULL, NULL, NULL, DECISION_BLOCK, NULL);
    policy_unref(p);
}

static void test_policy_decide_http_wildcard_domain(void **state)
{
    (void)state;
    struct policy *p = build(NULL, "{\"network\":{\"rules\":[{\"id\":\"w\",\"domain\":"
                                   "\"*.github.com\",\"action\":\"allow\"}]}}");
    expect_http(p, "api.github.com", "GET", "/", DECISION_ALLOW, "w");
    expect_http(p, "a.b.c.github.com", "GET", "/", DECISION_ALLOW, "w");
    expect_http(p, "github.com", "GET", "/", DECISION_BLOCK, NULL); /* not the apex */
    expect_http(p, "evilgithub.com", "GET", "/", DECISION_BLOCK, NULL);
    expect_http(p, "api.github.com.evil.net", "GET", "/", DECISION_BLOCK, NULL);
    expect_http(p, ".github.com", "GET", "/", DECISION_BLOCK, NULL);
    policy_unref(p);

    p = build(NULL, "{\"network\":{\"default\":\"allow\",\"rules\":[{\"id\":\"nodel\",\"domain\":"
                    "\"*\",\"methods\":[\"DELETE\"],\"action\":\"block\"}]}}");
    expect_http(p, "anything.example", "DELETE", "/x", DECISION_BLOCK, "nodel");
    expect_http(p, "anything.example", "GET", "/x", DECISION_ALLOW, NULL);
    policy_unref(p);
}

static void test_policy_decide_http_methods(void **state)
{
    (void)state;
    struct policy *p = build(NULL, "{\"network\":{\"rules\":[{\"id\":\"ro\",\"domain\":\"a.com\","
                                   "\"methods\":[\"get\",\"HEAD\"],\"action\":\"allow\"}]}}");
    expect_http(p, "a.com", "GET", "/", DECISION_ALLOW, "ro");
    expect_http(p, "a.com", "get", "/", DECISION_ALLOW, "ro"); /* case-insensitive */
    expect_http(p, "a.com", "HEAD", "/", DECISION_ALLOW, "ro");
    expect_http(p, "a.com", "POST", "/", DECISION_BLOCK, NULL);
    expect_http(p, "a.com", "GETX", "/", DECISION_BLOCK, NULL);
    expect_http(p, "a.com", NULL, "/", DECISION_BLOCK, NULL); /* no method: no method rule */
    policy_unref(p);
}

static void test_policy_decide_http_paths(void **state)
{
    (void)state;
    struct policy *p = build(
        NULL, "{\"network\":{\"rules\":["
              "{\"id\":\"pre\",\"domain\":\"a.com\",\"paths\":[\"/api/\"],\"action\":\"allow\"},"
              "{\"id\":\"glob\",\"domain\":\"a.com\",\"paths\":[\"/org/*/issues\",\"/v?/x\"],"
              "\"action\":\"log\"}]}}");
    expect_http(p, "a.com", "GET", "/api/", DECISION_ALLOW, "pre");
    expect_http(p, "a.com", "GET", "/api/v1/x", DECISION_ALLOW, "pre");
    expect_http(p, "a.com", "GET", "/api", DECISION_BLOCK, NULL);
    expect_http(p, "a.com", "GET", "/apix/", DECISION_BLOCK, NULL);
    expect_http(p, "a.com", "GET", "/API/", DECISION_BLOCK, NULL); /* paths are case-sensitive */
    expect_http(p, "a.com", "GET", "/org/x/issues", DECISION_LOG, "glob");
    expect_http(p, "a.com", "GET", "/org/x/y/issues", DECISION_LOG, "glob"); /* '*' crosses '/' */
    expect_http(p, "a.com", "GET", "/org/x/issues/1", DECISION_BLOCK, NULL); /* whole path */
    expect_http(p, "a.com", "GET", "/v2/x", DECISION_LOG, "glob");
    expect_http(p, "a.com", "GET", "/v22/x", DECISION_BLOCK, NULL);
    expect_http(p, "a.com", "GET", NULL, DECISION_BLOCK, NULL);
    policy_unref(p);
}

static void test_policy_decide_http_first_match_and_generated_ids(void **state)
{
    (void)state;
    struct policy *p = build("{\"network\":{\"rules\":[{\"domain\":\"c.com\",\"action\":\"log\"},"
                             "{\"domain\":\"d.com\",\"action\":\"log\"}]}}",
                             "{\"network\":{\"rules\":["
                             "{\"domain\":\"api.github.com\",\"action\":\"block\"},"
                             "{\"id\":\"gh\",\"domain\":\"*.github.com\",\"action\":\"allow\"},"
                             "{\"domain\":\"*.github.com\",\"action\":\"log\"}]}}");
    expect_http(p, "api.github.com", "GET", "/", DECISION_BLOCK, "user:0");
    expect_http(p, "raw.github.com", "GET", "/", DECISION_ALLOW, "gh");
    expect_http(p, "c.com", "GET", "/", DECISION_LOG, "corp:0");
    expect_http(p, "d.com", "GET", "/", DECISION_LOG, "corp:1");
    policy_unref(p);
}

static void test_policy_build_corp_over_user(void **state)
{
    (void)state;
    struct policy *p =
        build("{\"network\":{\"default\":\"block\",\"rules\":[{\"id\":\"c\",\"domain\":\"x.com\","
              "\"action\":\"block\"}]}}",
              "{\"network\":{\"default\":\"allow\",\"rules\":["
              "{\"id\":\"ux\",\"domain\":\"x.com\",\"action\":\"allow\"},"
              "{\"id\":\"uy\",\"domain\":\"y.com\",\"action\":\"allow\"}]}}");
    expect_http(p, "x.com", "GET", "/", DECISION_BLOCK, "c");  /* corp rule first */
    expect_http(p, "y.com", "GET", "/", DECISION_ALLOW, "uy"); /* what corp left open */
    expect_http(p, "z.com", "GET", "/", DECISION_BLOCK, NULL); /* corp default beats user's */
    policy_unref(p);
}

static void test_policy_build_defaults(void **state)
{
    (void)state;
    struct policy *p = build("{}", "{\"network\":{\"default\":\"log\"}}");
    expect_http(p, "z.com", "GET", "/", DECISION_LOG, NULL); /* user default when corp has none */
    policy_unref(p);
    p = build("{\"network\":{\"preset\":\"open\"}}", "{\"network\":{\"default\":\"block\"}}");
    expect_http(p, "z.com", "GET", "/", DECISION_BLOCK, NULL); /* user default beats presets */
    policy_unref(p);
    p = build(NULL, "{\"network\":{\"preset\":\"open\"}}");
    expect_http(p, "z.com", "GET", "/", DECISION_LOG, NULL); /* preset default */
    policy_unref(p);
    p = build("{\"network\":{\"preset\":\"high\"}}", "{\"network\":{\"preset\":\"open\"}}");
    expect_http(p, "z.com", "GET", "/", DECISION_BLOCK, NULL); /* corp preset's default first */
    policy_unref(p);
    p = build("{\"network\":{\"default\":\"allow\"}}", NULL);
    expect_http(p, "z.com", "GET", "/", DECISION_ALLOW, NULL);
    policy_unref(p);
}

static void test_policy_build_presets(void **state)
{
    (void)state;
    struct policy *p = build(NULL, "{\"network\":{\"preset\":\"high\"}}");
    expect_http(p, "api.anthropic.com", "POST", "/v1/messages", DECISION_ALLOW,
                "high:api.anthropic.com");
    expect_http(p, "api.openai.com", "POST", "/v1/responses", DECISION_ALLOW,
                "high:api.openai.com");
    expect_http(p, "generativelanguage.googleapis.com", "POST", "/", DECISION_ALLOW,
                "high:generativelanguage.googleapis.com");
    expect_http(p, "github.com", "GET", "/", DECISION_BLOCK, NULL);
    expect_http(p, "statsig.anthropic.com", "GET", "/", DECISION_BLOCK, NULL);
    policy_unref(p);

    p = build(NULL, "{\"network\":{\"preset\":\"medium\"}}");
    expect_http(p, "api.anthropic.com", "POST", "/", DECISION_ALLOW, "medium:api.anthropic.com");
    expect_http(p, "github.com", "GET", "/", DECISION_ALLOW, "medium:github.com");
    expect_http(p, "api.github.com", "GET", "/", DECISION_ALLOW, "medium:*.github.com");
    expect_http(p, "raw.githubusercontent.com", "GET", "/", DECISION_ALLOW,
                "medium:*.githubusercontent.com");
    expect_http(p, "registry.npmjs.org", "GET", "/", DECISION_ALLOW, "medium:registry.npmjs.org");
    expect_http(p, "pypi.org", "GET", "/", DECISION_ALLOW, "medium:pypi.org");
    expect_http(p, "example.com", "GET", "/", DECISION_BLOCK, NULL);
    policy_unref(p);

    p = build(NULL, "{\"network\":{\"preset\":\"open\"}}");
    expect_http(p, "example.com", "GET", "/", DECISION_LOG, NULL);
    policy_unref(p);

    /* preset rules come after the user's own */
    p = build(NULL, "{\"network\":{\"preset\":\"high\",\"rules\":[{\"id\":\"no-oai\","
                    "\"domain\":\"api.openai.com\",\"action\":\"block\"}]}}");
    expect_http(p, "api.openai.com", "POST", "/", DECISION_BLOCK, "no-oai");
    policy_unref(p);

    /* both presets apply, corp's first */
    p = build("{\"network\":{\"preset\":\"high\"}}", "{\"network\":{\"preset\":\"medium\"}}");
    expect_http(p, "api.anthropic.com", "POST", "/", DECISION_ALLOW, "high:api.anthropic.com");
    expect_http(p, "github.com", "GET", "/", DECISION_ALLOW, "medium:github.com");
    policy_unref(p);
}

static void test_policy_build_corp_lock(void **state)
{
    (void)state;
    struct policy *p = build(
        "{\"network\":{\"locked\":true,\"rules\":[{\"id\":\"ca\",\"domain\":\"a.com\","
        "\"action\":\"allow\"}]}}",
        "{\"network\":{\"preset\":\"medium\",\"default\":\"allow\",\"rules\":["
        "{\"id\":\"ub\",\"domain\":\"b.com\",\"action\":\"block\"},"
        "{\"id\":\"uc\",\"domain\":\"c.com\",\"action\":\"allow\"},"
        "{\"id\":\"ud\",\"domain\":\"d.com\",\"action\":\"log\"},"
        "{\"id\":\"ua\",\"domain\":\"a.com\",\"action\":\"block\"}],"
        "\"upstream\":{\"ca_file\":\"/tmp/x.pem\",\"resolve\":{\"a.com:443\":\"127.0.0.1:1\"}}}}");
    expect_http(p, "a.com", "GET", "/", DECISION_ALLOW, "ca");      /* corp first */
    expect_http(p, "b.com", "GET", "/", DECISION_BLOCK, "ub");      /* stricter: kept */
    expect_http(p, "c.com", "GET", "/", DECISION_BLOCK, NULL);      /* allow ignored */
    expect_http(p, "d.com", "GET", "/", DECISION_BLOCK, NULL);      /* log ignored */
    expect_http(p, "github.com", "GET", "/", DECISION_BLOCK, NULL); /* user preset ignored */
    expect_http(p, "z.com", "GET", "/", DECISION_BLOCK, NULL);      /* user default allow ignored */
    assert_null(policy_upstream_ca_file(p));
    char out[64];
    assert_int_equal(policy_resolve_override(p, "a.com", 443, out, sizeof(out)), 0);
    policy_unref(p);

    /* a stricter user default is honoured under the lock */
    p = build("{\"network\":{\"locked\":true,\"preset\":\"open\"}}",
              "{\"network\":{\"default\":\"block\"}}");
    expect_http(p, "z.com", "GET", "/", DECISION_BLOCK, NULL);
    policy_unref(p);
    p = build("{\"network\":{\"locked\":true,\"preset\":\"open\"}}",
              "{\"network\":{\"default\":\"allow\"}}");
    expect_http(p, "z.com", "GET", "/", DECISION_LOG, NULL);
    policy_unref(p);
    /* locked: false is no lock */
    p = build(
        "{\"network\":{\"locked\":false}}",
        "{\"network\":{\"rules\":[{\"id\":\"uc\",\"domain\":\"c.com\",\"action\":\"allow\"}]}}");
    expect_http(p, "c.com", "GET", "/", DECISION_ALLOW, "uc");
    policy_unref(p);
}

static void test_policy_decide_dns_rules(void **state)
{
    (void)state;
    const char *rules =
        "\"rules\":["
        "{\"id\":\"get-api\",\"domain\":\"api.x.com\",\"methods\":[\"GET\"],\"action\":\"allow\"},"
        "{\"id\":\"some-paths\",\"domain\":\"*.x.com\",\"paths\":[\"/a\"],\"action\":\"block\"},"
        "{\"id\":\"b\",\"domain\":\"b.x.com\",\"action\":\"block\"},"
        "{\"id\":\"c-post\",\"domain\":\"c.x.com\",\"methods\":[\"POST\"],\"action\":\"block\"},"
        "{\"id\":\"l\",\"domain\":\"l.x.com\",\"action\":\"log\"},"
        "{\"id\":\"e\",\"domain\":\"e.x.com\",\"action\":\"block\"},"
        "{\"id\":\"e-get\",\"domain\":\"e.x.com\",\"methods\":[\"GET\"],\"action\":\"allow\"}]";
    char doc[2048];
    snprintf(doc, sizeof(doc), "{\"network\":{\"default\":\"allow\",%s}}", rules);
    struct policy *p = build(NULL, doc);
    expect_dns(p, "api.x.com", DECISION_ALLOW, "get-api"); /* a request could be allowed */
    expect_dns(p, "b.x.com", DECISION_BLOCK, "b");         /* conditional block passed over */
    expect_dns(p, "c.x.com", DECISION_ALLOW, NULL);        /* only conditional blocks: default */
    expect_dns(p, "l.x.com", DECISION_LOG, "l");
    expect_dns(p, "e.x.com", DECISION_BLOCK, "e"); /* domain-only block comes first */
    expect_dns(p, "other.net", DECISION_ALLOW, NULL);
    policy_unref(p);

    snprintf(doc, sizeof(doc), "{\"network\":{\"default\":\"block\",%s}}", rules);
    p = build(NULL, doc);
    expect_dns(p, "c.x.com", DECISION_BLOCK, NULL);
    expect_dns(p, "api.x.com", DECISION_ALLOW, "get-api");
    expect_dns(p, "API.X.COM", DECISION_ALLOW, "get-api");
    policy_unref(p);

    assert_int_equal(policy_decide_dns(NULL, "a.com").decision, DECISION_BLOCK);
    assert_int_equal(policy_decide_http(NULL, "a.com", "GET", "/").decision, DECISION_BLOCK);
}

static void test_policy_build_upstream_and_ports(void **state)
{
    (void)state;
    struct policy *p = build(
        "{\"network\":{\"http_ports\":[8080,3000],\"upstream\":{\"resolve\":"
        "{\"api.test:443\":\"127.0.0.1:8443\"}}}}",
        "{\"network\":{\"http_ports\":[3000,9000],\"upstream\":{\"ca_file\":\"/tmp/ca.crt\","
        "\"resolve\":{\"API.test:443\":\"127.0.0.2:1\",\"api.test:80\":\"10.0.0.1:8080\"}}}}");
    const unsigned *ports = NULL;
    assert_int_equal(policy_http_ports(p, &ports), 3);
    assert_int_equal(ports[0], 8080);
    assert_int_equal(ports[1], 3000);
    assert_int_equal(ports[2], 9000);
    assert_string_equal(policy_upstream_ca_file(p), "/tmp/ca.crt");
    char out[32];
    assert_int_equal(policy_resolve_override(p, "api.test", 443, out, sizeof(out)), 1);
    assert_string_equal(out, "127.0.0.1:8443"); /* corp entry first */
    assert_int_equal(policy_resolve_override(p, "Api.Test", 80, out, sizeof(out)), 1);
    assert_string_equal(out, "10.0.0.1:8080");
    assert_int_equal(policy_resolve_override(p, "api.test", 8443, out, sizeof(out)), 0);
    assert_int_equal(policy_resolve_override(p, "other.test", 443, out, sizeof(out)), 0);
    char tiny[8];
    assert_int_equal(policy_resolve_override(p, "api.test", 443, tiny, sizeof(tiny)), 0);
    policy_unref(p);

    p = build("{\"network\":{\"upstream\":{\"ca_file\":\"/corp/ca.pem\"}}}",
              "{\"network\":{\"upstream\":{\"ca_file\":\"/user/ca.pem\"}}}");
    assert_string_equal(policy_upstream_ca_file(p), "/corp/ca.pem");
    policy_unref(p);
}

/* One bad document: the exact error, and whether the schema (not only C) rejects it. */
struct bad_case {
    bool corp;
    const char *json;
    const char *err;
    bool schema_rejects;
};

#define NET(x) "{\"network\":" x "}"
#define RULE(x) NET("{\"rules\":[" x "]}")
#define LONG63 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"

static const struct bad_case bad_cases[] = {
    {false, "[]", "user.json: $: expected an object, got an array", true},
    {false, "{\"net\":{}}", "user.json: $.net: unknown key", true},
    {false, NET("[]"), "user.json: $.network: expected an object, got an array", true},
    {false, NET("{\"defaults\":\"block\"}"), "user.json: $.network.defaults: unknown key", true},
    {false, NET("{\"default\":\"deny\"}"),
     "user.json: $.network.default: must be one of \"allow\", \"block\", \"log\"", true},
    {false, NET("{\"default\":1}"),
     "user.json: $.network.default: expected a string, got an integer", true},
    {false, NET("{\"preset\":\"low\"}"),
     "user.json: $.network.preset: must be one of \"high\", \"medium\", \"open\"", true},
    {false, NET("{\"locked\":true}"),
     "user.json: $.network.locked: only the corp file can lock the policy", false},
    {true, NET("{\"locked\":\"yes\"}"),
     "corp.json: $.network.locked: expected true or false, got a string", true},
    {false, NET("{\"rules\":{}}"), "user.json: $.network.rules: expected an array, got an object",
     true},
    {false, RULE("\"a.com\""), "user.json: $.network.rules[0]: expected an object, got a string",
     true},
    {false, RULE("{\"domain\":\"a.com\",\"action\":\"allow\"},{\"host\":\"a\"}"),
     "user.json: $.network.rules[1].host: unknown key", true},
    {false, RULE("{\"action\":\"allow\"}"), "user.json: $.network.rules[0]: missing \"domain\"",
     true},
    {false, RULE("{\"domain\":\"a.com\"}"), "user.json: $.network.rules[0]: missing \"action\"",
     true},
    {false,
     RULE("{\"domain\":\"a.com\",\"action\":\"allow\"},{\"domain\":\"b.com\",\"action\":"
          "\"allow\"},{\"domain\":\"c.com\",\"action\":\"permit\"}"),
     "user.json: $.network.rules[2].action: must be one of \"allow\", \"block\", \"log\"", true},
    {false, RULE("{\"domain\":5,\"action\":\"allow\"}"),
     "user.json: $.network.rules[0].domain: expected a string, got an integer", true},
    {false, RULE("{\"domain\":\"git*hub.com\",\"action\":\"allow\"}"),
     "user.json: $.network.rules[0].domain: bad domain pattern: '*' is allowed only as \"*\" or a "
     "leading \"*.\"",
     true},
    {false, RULE("{\"domain\":\"*x.com\",\"action\":\"allow\"}"),
     "user.json: $.network.rules[0].domain: bad domain pattern: '*' is allowed only as \"*\" or a "
     "leading \"*.\"",
     true},
    {false, RULE("{\"domain\":\"a.*.com\",\"action\":\"allow\"}"),
     "user.json: $.network.rules[0].domain: bad domain pattern: '*' is allowed only as \"*\" or a "
     "leading \"*.\"",
     true},
    {false, RULE("{\"domain\":\"*.\",\"action\":\"allow\"}"),
     "user.json: $.network.rules[0].domain: bad domain pattern: empty label", true},
    {false, RULE("{\"domain\":\"a..com\",\"action\":\"allow\"}"),
     "user.json: $.network.rules[0].domain: bad domain pattern: empty label", true},
    {false, RULE("{\"domain\":\"a.com.\",\"action\":\"allow\"}"),
     "user.json: $.network.rules[0].domain: bad domain pattern: empty label", true},
    {false, RULE("{\"domain\":\"\",\"action\":\"allow\"}"),
     "user.json: $.network.rules[0].domain: bad domain pattern: empty", true},
    {false, RULE("{\"domain\":\"-a.com\",\"action\":\"allow\"}"),
     "user.json: $.network.rules[0].domain: bad domain pattern: a label starts with '-'", true},
    {false, RULE("{\"domain\":\"a-.com\",\"action\":\"allow\"}"),
     "user.json: $.network.rules[0].domain: bad domain pattern: a label ends with '-'", true},
    {false, RULE("{\"domain\":\"exa mple.com\",\"action\":\"allow\"}"),
     "user.json: $.network.rules[0].domain: bad domain pattern: only letters, digits, '-', '_' and "
     "'.' are allowed",
     true},
    {false, RULE("{\"domain\":\"https://a.com\",\"action\":\"allow\"}"),
     "user.json: $.network.rules[0].domain: bad domain pattern: only letters, digits, '-', '_' and "
     "'.' are allowed",
     true},
    {false, RULE("{\"domain\":\"a" LONG63 ".com\",\"action\":\"allow\"}"),
     "user.json: $.network.rules[0].domain: bad domain pattern: a label is longer than 63 "
     "characters",
     true},
    {false, RULE("{\"domain\":\"a.com\",\"methods\":[],\"action\":\"allow\"}"),
     "user.json: $.network.rules[0].methods: empty methods list (leave \"methods\" out to match "
     "every method)",
     true},
    {false, RULE("{\"domain\":\"a.com\",\"methods\":\"GET\",\"action\":\"allow\"}"),
     "user.json: $.network.rules[0].methods: expected an array, got a string", true},
    {false, RULE("{\"domain\":\"a.com\",\"methods\":[\"GET\",\"GE T\"],\"action\":\"allow\"}"),
     "user.json: $.network.rules[0].methods[1]: not an HTTP method (letters, '-' and '_', at most "
     "32)",
     true},
    {false, RULE("{\"domain\":\"a.com\",\"methods\":[1],\"action\":\"allow\"}"),
     "user.json: $.network.rules[0].methods[0]: expected a string, got an integer", true},
    {false, RULE("{\"domain\":\"a.com\",\"paths\":[],\"action\":\"allow\"}"),
     "user.json: $.network.rules[0].paths: empty paths list (leave \"paths\" out to match every "
     "path)",
     true},
    {false, RULE("{\"domain\":\"a.com\",\"paths\":[\"/ok\",\"api/\"],\"action\":\"allow\"}"),
     "user.json: $.network.rules[0].paths[1]: bad path pattern: must start with '/'", true},
    {false, RULE("{\"domain\":\"a.com\",\"paths\":[\"/a b\"],\"action\":\"allow\"}"),
     "user.json: $.network.rules[0].paths[0]: bad path pattern: only printable ASCII without "
     "spaces is allowed",
     true},
    {false, RULE("{\"id\":\"x y\",\"domain\":\"a.com\",\"action\":\"allow\"}"),
     "user.json: $.network.rules[0].id: bad rule id (letters, digits, '.', '_', '-', at most 64, "
     "starting with a letter or digit)",
     true},
    {false, RULE("{\"id\":\"user:1\",\"domain\":\"a.com\",\"action\":\"allow\"}"),
     "user.json: $.network.rules[0].id: bad rule id (letters, digits, '.', '_', '-', at most 64, "
     "starting with a letter or digit)",
     true},
    {false,
     RULE("{\"id\":\"gh\",\"domain\":\"a.com\",\"action\":\"allow\"},{\"id\":\"gh\",\"domain\":"
          "\"b.com\",\"action\":\"allow\"}"),
     "user.json: $.network.rules[1].id: duplicate rule id \"gh\"", false},
    {false, NET("{\"http_ports\":[\"8080\"]}"),
     "user.json: $.network.http_ports[0]: expected an integer, got a string", true},
    {false, NET("{\"http_ports\":[8080,0]}"),
     "user.json: $.network.http_ports[1]: bad port 0: must be from 1 to 65535", true},
    {false, NET("{\"http_ports\":[70000]}"),
     "user.json: $.network.http_ports[0]: bad port 70000: must be from 1 to 65535", true},
    {false, NET("{\"http_ports\":[80.5]}"),
     "user.json: $.network.http_ports[0]: expected an integer, got a number", true},
    {false, NET("{\"http_ports\":8080}"),
     "user.json: $.network.http_ports: expected an array, got an integer", true},
    {false, NET("{\"upstream\":{\"cafile\":\"/x\"}}"),
     "user.json: $.network.upstream.cafile: unknown key", true},
    {false, NET("{\"upstream\":{\"ca_file\":\"ca.crt\"}}"),
     "user.json: $.network.upstream.ca_file: must be an absolute path", true},
    {false, NET("{\"upstream\":{\"resolve\":[]}}"),
     "user.json: $.network.upstream.resolve: expected an object, got an array", true},
    {false, NET("{\"upstream\":{\"resolve\":{\"api.test\":\"127.0.0.1:1\"}}}"),
     "user.json: $.network.upstream.resolve[\"api.test\"]: bad resolve key: expected \"host:port\"",
     true},
    {false, NET("{\"upstream\":{\"resolve\":{\"api.test:0\":\"127.0.0.1:1\"}}}"),
     "user.json: $.network.upstream.resolve[\"api.test:0\"]: bad resolve key: port must be from 1 "
     "to 65535",
     true},
    {false, NET("{\"upstream\":{\"resolve\":{\"api.test:65536\":\"127.0.0.1:1\"}}}"),
     "user.json: $.network.upstream.resolve[\"api.test:65536\"]: bad resolve key: port must be "
     "from 1 to 65535",
     true},
    {false, NET("{\"upstream\":{\"resolve\":{\"api.test:0443\":\"127.0.0.1:1\"}}}"),
     "user.json: $.network.upstream.resolve[\"api.test:0443\"]: bad resolve key: port must be "
     "from 1 to 65535",
     true},
    {false, NET("{\"upstream\":{\"resolve\":{\"a..b:443\":\"127.0.0.1:1\"}}}"),
     "user.json: $.network.upstream.resolve[\"a..b:443\"]: bad resolve key: host: empty label",
     true},
    {false, NET("{\"upstream\":{\"resolve\":{\"*.a.com:443\":\"127.0.0.1:1\"}}}"),
     "user.json: $.network.upstream.resolve[\"*.a.com:443\"]: bad resolve key: host: '*' is not "
     "allowed here",
     true},
    {false, NET("{\"upstream\":{\"resolve\":{\"a.test:443\":8443}}}"),
     "user.json: $.network.upstream.resolve[\"a.test:443\"]: expected a string, got an integer",
     true},
    {false, NET("{\"upstream\":{\"resolve\":{\"a.test:443\":\"localhost:8443\"}}}"),
     "user.json: $.network.upstream.resolve[\"a.test:443\"]: bad resolve target: \"localhost\" is "
     "not an IPv4 address",
     true},
    {false, NET("{\"upstream\":{\"resolve\":{\"a.test:443\":\"127.0.0.1\"}}}"),
     "user.json: $.network.upstream.resolve[\"a.test:443\"]: bad resolve target: expected "
     "\"IPv4-address:port\"",
     true},
    {false, NET("{\"upstream\":{\"resolve\":{\"a.test:443\":\"127.0.0.1:99999\"}}}"),
     "user.json: $.network.upstream.resolve[\"a.test:443\"]: bad resolve target: port must be "
     "from 1 to 65535",
     true},
    {false, NET("{\"upstream\":{\"resolve\":{\"a.test:443\":\"127.0.0.01:80\"}}}"),
     "user.json: $.network.upstream.resolve[\"a.test:443\"]: bad resolve target: \"127.0.0.01\" is "
     "not an IPv4 address",
     true},
};

static void test_policy_build_bad_config_errors(void **state)
{
    (void)state;
    const char *good = "{\"network\":{\"default\":\"allow\"}}";
    for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
        const struct bad_case *c = &bad_cases[i];
        json_t *bad = parse(c->json), *ok = parse(good);
        struct policy *p = (struct policy *)0x1;
        char err[512] = "";
        int rc = c->corp ? policy_build(bad, "corp.json", ok, "user.json", &p, err, sizeof(err))
                         : policy_build(ok, "corp.json", bad, "user.json", &p, err, sizeof(err));
        if (rc != -EINVAL || strcmp(err, c->err) != 0)
            fail_msg("case %zu %s: rc %d\n got: %s\nwant: %s", i, c->json, rc, err, c->err);
        assert_ptr_equal(p, (struct policy *)0x1); /* nothing built, out untouched */
        json_decref(bad);
        json_decref(ok);
    }
}

/* ---- files ---- */

static char tmpdir[] = "/tmp/capsem-test-policy-XXXXXX";

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_policy_load_files(void **state)
{
    (void)state;
    char corp[256], user[256], dir[256], err[512];
    snprintf(corp, sizeof(corp), "%s/corp.json", tmpdir);
    snprintf(user, sizeof(user), "%s/config.json", tmpdir);
    snprintf(dir, sizeof(dir), "%s/sub", tmpdir);
    unlink(corp);
    unlink(user);
    struct policy *p = NULL;

    /* both missing: the built-in default, the "high" preset (model APIs only) */
    assert_int_equal(policy_load(corp, user, &p, err, sizeof(err)), 0);
    expect_http(p, "a.com", "GET", "/", DECISION_BLOCK, NULL);
    assert_int_equal(policy_decide_http(p, "api.anthropic.com", "POST", "/v1/messages").decision,
                     DECISION_ALLOW);
    assert_int_equal(policy_decide_dns(p, "api.openai.com").decision, DECISION_ALLOW);
    policy_unref(p);
    assert_int_equal(policy_load(NULL, NULL, &p, err, sizeof(err)), 0);
    policy_unref(p);

    write_file(corp, "{\"network\":{\"rules\":[{\"id\":\"c\",\"domain\":\"a.com\",\"action\":"
                     "\"block\"}]}}");
    write_file(user, "{\"network\":{\"default\":\"allow\"}}");
    assert_int_equal(policy_load(corp, user, &p, err, sizeof(err)), 0);
    expect_http(p, "a.com", "GET", "/", DECISION_BLOCK, "c");
    expect_http(p, "b.com", "GET", "/", DECISION_ALLOW, NULL);
    policy_unref(p);

    /* a schema error names the file it is in */
    write_file(user, "{\"network\":{\"default\":\"deny\"}}");
    p = NULL;
    assert_int_equal(policy_load(corp, user, &p, err, sizeof(err)), -EINVAL);
    assert_null(p);
    char want[1024];
    snprintf(want, sizeof(want),
             "%s: $.network.default: must be one of \"allow\", \"block\", \"log\"", user);
    assert_string_equal(err, want);

    /* bad JSON: line and column */
    write_file(user, "{\n  \"network\": {\n    \"default\": \"allow\",\n  }\n}\n");
    assert_int_equal(policy_load(corp, user, &p, err, sizeof(err)), -EINVAL);
    snprintf(want, sizeof(want), "%s: line 4 column 3: string or '}' expected near '}'", user);
    assert_string_equal(err, want);

    /* duplicate keys are refused (which one would win is not obvious) */
    write_file(user, "{\"network\":{\"default\":\"allow\",\"default\":\"block\"}}");
    assert_int_equal(policy_load(corp, user, &p, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "duplicate object key"));

    /* empty file */
    write_file(user, "");
    assert_int_equal(policy_load(corp, user, &p, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "line 1"));

    /* not a regular file */
    mkdir(dir, 0700);
    assert_int_equal(policy_load(dir, NULL, &p, err, sizeof(err)), -EINVAL);
    snprintf(want, sizeof(want), "%s: not a regular file", dir);
    assert_string_equal(err, want);
    rmdir(dir);

    /* too large */
    FILE *f = fopen(user, "w");
    assert_non_null(f);
    fputc('[', f);
    for (int i = 0; i < 600000; i++)
        fputs("1,", f);
    fputs("1]", f);
    fclose(f);
    assert_int_equal(policy_load(NULL, user, &p, err, sizeof(err)), -EFBIG);
    assert_non_null(strstr(err, "larger than"));

    /* bad corp file: its name in the error */
    write_file(corp, "{\"network\":{\"rules\":[{\"domain\":\"a.com\",\"action\":\"ok\"}]}}");
    write_file(user, "{}");
    assert_int_equal(policy_load(corp, user, &p, err, sizeof(err)), -EINVAL);
    snprintf(want, sizeof(want),
             "%s: $.network.rules[0].action: must be one of \"allow\", \"block\", \"log\"", corp);
    assert_string_equal(err, want);

    /* a path under a file: not ENOENT, an error */
    char under[300];
    snprintf(under, sizeof(under), "%s/x.json", user);
    assert_int_equal(policy_load(NULL, under, &p, err, sizeof(err)), -ENOTDIR);
    assert_non_null(strstr(err, "cannot open"));
    unlink(corp);
    unlink(user);
}

/* ---- the store under concurrent readers ---- */

struct reader {
    struct policy_store *store;
    atomic_bool *stop;
    atomic_long bad;
    long reads;
};

static void *reader_main(void *arg)
{
    struct reader *r = arg;
    while (!atomic_load(r->stop)) {
        struct policy *p = policy_store_get(r->store);
        struct policy_result res = policy_decide_http(p, "x.com", "GET", "/");
        bool ok = (res.decision == DECISION_ALLOW && res.rule && strcmp(res.rule, "a") == 0) ||
                  (res.decision == DECISION_BLOCK && res.rule && strcmp(res.rule, "b") == 0);
        if (!ok)
            atomic_fetch_add(&r->bad, 1);
        policy_unref(p);
        r->reads++;
    }
    return NULL;
}

static void test_policy_store_swap_under_readers(void **state)
{
    (void)state;
    const char *a = "{\"network\":{\"rules\":[{\"id\":\"a\",\"domain\":\"x.com\",\"action\":"
                    "\"allow\"}]}}";
    const char *b = "{\"network\":{\"rules\":[{\"id\":\"b\",\"domain\":\"x.com\",\"action\":"
                    "\"block\"}]}}";
    struct policy_store *s = NULL;
    assert_int_equal(policy_store_create(build(NULL, a), &s), 0);
    atomic_bool stop = false;
    struct reader r[4];
    pthread_t t[4];
    for (int i = 0; i < 4; i++) {
        r[i].store = s;
        r[i].stop = &stop;
        atomic_init(&r[i].bad, 0);
        r[i].reads = 0;
        assert_int_equal(pthread_create(&t[i], NULL, reader_main, &r[i]), 0);
    }
    for (int i = 0; i < 2000; i++)
        policy_store_set(s, build(NULL, i % 2 ? a : b));
    atomic_store(&stop, true);
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(atomic_load(&r[i].bad), 0);
        assert_true(r[i].reads > 0);
    }
    /* the last set (i = 1999, odd) was policy a */
    struct policy *p = policy_store_get(s);
    expect_http(p, "x.com", "GET", "/", DECISION_ALLOW, "a");
    /* a policy taken from the store outlives a swap and the store itself */
    policy_store_set(s, build(NULL, b));
    policy_store_destroy(s);
    expect_http(p, "x.com", "GET", "/", DECISION_ALLOW, "a");
    policy_unref(p);
    policy_store_destroy(NULL);
    policy_unref(NULL);
}

/* ---- docs/policy.md examples against the schema file and the C validator ---- */

/*
 * The JSON Schema keywords schemas/config.schema.json uses, evaluated as 2020-12
 * defines them. An unknown keyword fails the test, so the schema stays within
 * what is checked here. `pattern` is compiled as a POSIX ERE: the schema's
 * patterns use only syntax on which ECMA-262 and POSIX agree.
 */
static bool schema_ok(const json_t *root, const json_t *s, const json_t *v, char *why,
                      size_t whylen);

static size_t utf8_len(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        if (((unsigned char)*s & 0xC0) != 0x80)
            n++;
    return n;
}

static bool type_is(const char *t, const json_t *v)
{
    if (!strcmp(t, "object"))
        return json_is_object(v);
    if (!strcmp(t, "array"))
        return json_is_array(v);
    if (!strcmp(t, "string"))
        return json_is_string(v);
    if (!strcmp(t, "integer"))
        return json_is_integer(v);
    if (!strcmp(t, "number"))
        return json_is_number(v);
    if (!strcmp(t, "boolean"))
        return json_is_boolean(v);
    if (!strcmp(t, "null"))
        return json_is_null(v);
    fail_msg("schema: unknown type %s", t);
    return false;
}

static bool pattern_ok(const char *pat, const char *s)
{
    regex_t re;
    if (regcomp(&re, pat, REG_EXTENDED | REG_NOSUB) != 0)
        fail_msg("schema: pattern does not compile: %s", pat);
    bool ok = regexec(&re, s, 0, NULL, 0) == 0;
    regfree(&re);
    return ok;
}

static bool schema_ok(const json_t *root, const json_t *s, const json_t *v, char *why,
                      size_t whylen)
{
    const char *k;
    json_t *kw;
    json_object_foreach((json_t *)s, k, kw)
    {
        bool ok = true;
        if (!strcmp(k, "$schema") || !strcmp(k, "$id") || !strcmp(k, "title") ||
            !strcmp(k, "description") || !strcmp(k, "$defs") || !strcmp(k, "examples") ||
            !strcmp(k, "$comment") || !strcmp(k, "default")) {
            continue;
        } else if (!strcmp(k, "$ref")) {
            const char *ref = json_string_value(kw);
            assert_non_null(ref);
            assert_int_equal(strncmp(ref, "#/$defs/", 8), 0);
            const json_t *target = json_object_get(json_object_get(root, "$defs"), ref + 8);
            assert_non_null(target);
            ok = schema_ok(root, target, v, why, whylen);
            if (!ok)
                return false;
        } else if (!strcmp(k, "type")) {
            ok = type_is(json_string_value(kw), v);
        } else if (!strcmp(k, "enum")) {
            ok = false;
            size_t i;
            json_t *e;
            json_array_foreach(kw, i, e) ok |= json_equal(e, v);
        } else if (!strcmp(k, "const")) {
            ok = json_equal(kw, v);
        } else if (!strcmp(k, "properties")) {
            const char *pk;
            json_t *ps;
            if (json_is_object(v))
                json_object_foreach(kw, pk, ps)
                {
                    const json_t *pv = json_object_get(v, pk);
                    if (pv && !schema_ok(root, ps, pv, why, whylen))
                        return false;
                }
        } else if (!strcmp(k, "additionalProperties")) {
            const json_t *props = json_object_get(s, "properties");
            const char *pk;
            json_t *pv;
            if (json_is_object(v))
                json_object_foreach((json_t *)v, pk, pv)
                {
                    if (props && json_object_get(props, pk))
                        continue;
                    if (json_is_false(kw)) {
                        snprintf(why, whylen, "additional property %s", pk);
                        return false;
                    }
                    if (!schema_ok(root, kw, pv, why, whylen))
                        return false;
                }
        } else if (!strcmp(k, "required")) {
            size_t i;
            json_t *e;
            if (json_is_object(v))
                json_array_foreach(kw, i, e) ok &= json_object_get(v, json_string_value(e)) != NULL;
        } else if (!strcmp(k, "propertyNames")) {
            const char *pk;
            json_t *pv;
            if (json_is_object(v))
                json_object_foreach((json_t *)v, pk, pv)
                {
                    json_t *name = json_string(pk);
                    bool nok = schema_ok(root, kw, name, why, whylen);
                    json_decref(name);
                    if (!nok)
                        return false;
                }
        } else if (!strcmp(k, "maxProperties")) {
            ok = !json_is_object(v) || json_object_size(v) <= (size_t)json_integer_value(kw);
        } else if (!strcmp(k, "items")) {
            size_t i;
            json_t *e;
            if (json_is_array(v))
                json_array_foreach(v, i, e) if (!schema_ok(root, kw, e, why, whylen)) return false;
        } else if (!strcmp(k, "minItems")) {
            ok = !json_is_array(v) || json_array_size(v) >= (size_t)json_integer_value(kw);
        } else if (!strcmp(k, "maxItems")) {
            ok = !json_is_array(v) || json_array_size(v) <= (size_t)json_integer_value(kw);
        } else if (!strcmp(k, "minLength")) {
            ok = !json_is_string(v) ||
                 utf8_len(json_string_value(v)) >= (size_t)json_integer_value(kw);
        } else if (!strcmp(k, "maxLength")) {
            ok = !json_is_string(v) ||
                 utf8_len(json_string_value(v)) <= (size_t)json_integer_value(kw);
        } else if (!strcmp(k, "pattern")) {
            ok = !json_is_string(v) || pattern_ok(json_string_value(kw), json_string_value(v));
        } else if (!strcmp(k, "minimum")) {
            ok = !json_is_number(v) || json_number_value(v) >= json_number_value(kw);
        } else if (!strcmp(k, "maximum")) {
            ok = !json_is_number(v) || json_number_value(v) <= json_number_value(kw);
        } else {
            fail_msg("schema: keyword %s is not understood by this test", k);
        }
        if (!ok) {
            char *text = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
            snprintf(why, whylen, "%s fails %s", text ? text : "?", k);
            free(text);
            return false;
        }
    }
    return true;
}

/* The repository's top directory, from this file's path (tests/unit/mitm/). */
static void repo_path(char *out, size_t outlen, const char *rel)
{
    char here[1024];
    snprintf(here, sizeof(here), "%s", __FILE__);
    char *cut = strstr(here, "tests/unit/mitm/");
    assert_non_null(cut);
    if (cut == here) /* a relative __FILE__: run from the top directory */
        snprintf(out, outlen, "%s", rel);
    else
        snprintf(out, outlen, "%.*s%s", (int)(cut - here), here, rel);
}

static json_t *load_schema(void)
{
    char path[1200];
    repo_path(path, sizeof(path), "schemas/config.schema.json");
    json_error_t je;
    json_t *schema = json_load_file(path, 0, &je);
    if (!schema)
        fail_msg("%s: %s", path, je.text);
    return schema;
}

static void test_policy_build_docs_examples(void **state)
{
    (void)state;
    json_t *schema = load_schema();
    char path[1200];
    repo_path(path, sizeof(path), "docs/policy.md");
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char line[1024], block[16384];
    size_t blen = 0, examples = 0;
    bool in = false;
    while (fgets(line, sizeof(line), f)) {
        if (!in && strcmp(line, "```json\n") == 0) {
            in = true;
            blen = 0;
            continue;
        }
        if (in && strcmp(line, "```\n") == 0) {
            in = false;
            block[blen] = '\0';
            json_t *doc = parse(block);
            char why[512] = "";
            if (!schema_ok(schema, schema, doc, why, sizeof(why)))
                fail_msg("docs example %zu breaks the schema: %s\n%s", examples, why, block);
            /* the locked example is a corp file; the others are user files */
            bool corp = strstr(block, "\"locked\"") != NULL;
            struct policy *p = NULL;
            char err[512];
            int rc = corp ? policy_build(doc, "corp.json", NULL, NULL, &p, err, sizeof(err))
                          : policy_build(NULL, NULL, doc, "user.json", &p, err, sizeof(err));
            if (rc != 0)
                fail_msg("docs example %zu: %s", examples, err);
            policy_unref(p);
            json_decref(doc);
            examples++;
            continue;
        }
        if (in) {
            size_t l = strlen(line);
            assert_true(blen + l < sizeof(block));
            memcpy(block + blen, line, l);
            blen += l;
        }
    }
    fclose(f);
    assert_false(in);
    assert_true(examples >= 4);
    json_decref(schema);
}

/* The schema agrees with the C validator on every bad case it can express. */
static void test_policy_build_bad_config_schema_agrees(void **state)
{
    (void)state;
    json_t *schema = load_schema();
    for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
        json_t *doc = parse(bad_cases[i].json);
        char why[512];
        bool ok = schema_ok(schema, schema, doc, why, sizeof(why));
        if (ok == bad_cases[i].schema_rejects)
            fail_msg("case %zu %s: schema %s it", i, bad_cases[i].json, ok ? "accepts" : "rejects");
        json_decref(doc);
    }
    /* and accepts what the C validator accepts */
    const char *good[] = {
        "{}",
        NET("{\"preset\":\"open\",\"default\":\"log\",\"http_ports\":[1,65535]}"),
        RULE("{\"id\":\"A.b_c-9\",\"domain\":\"*\",\"methods\":[\"M-SEARCH\"],\"paths\":[\"/"
             "a*[b]?\"],"
             "\"action\":\"block\"}"),
        RULE("{\"domain\":\"*.a-b.c_d.e9\",\"action\":\"allow\"}"),
        RULE("{\"domain\":\"" LONG63 ".b\",\"action\":\"allow\"}"),
        NET("{\"upstream\":{\"ca_file\":\"/x\",\"resolve\":{\"a.b:65535\":\"255.0.0.1:1\"}}}"),
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        json_t *doc = parse(good[i]);
        char why[512];
        if (!schema_ok(schema, schema, doc, why, sizeof(why)))
            fail_msg("good %zu: schema rejects: %s", i, why);
        struct policy *p = NULL;
        char err[512];
        if (policy_build(NULL, NULL, doc, "user.json", &p, err, sizeof(err)) != 0)
            fail_msg("good %zu: %s", i, err);
        policy_unref(p);
        json_decref(doc);
    }
    json_decref(schema);
}

static int setup(void **state)
{
    (void)state;
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    return rmdir(tmpdir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_policy_build_nothing_blocks_everything),
        cmocka_unit_test(test_policy_decide_http_exact_domain),
        cmocka_unit_test(test_policy_decide_http_wildcard_domain),
        cmocka_unit_test(test_policy_decide_http_methods),
        cmocka_unit_test(test_policy_decide_http_paths),
        cmocka_unit_test(test_policy_decide_http_first_match_and_generated_ids),
        cmocka_unit_test(test_policy_build_corp_over_user),
        cmocka_unit_test(test_policy_build_defaults),
        cmocka_unit_test(test_policy_build_presets),
        cmocka_unit_test(test_policy_build_corp_lock),
        cmocka_unit_test(test_policy_decide_dns_rules),
        cmocka_unit_test(test_policy_build_upstream_and_ports),
        cmocka_unit_test(test_policy_build_bad_config_errors),
        cmocka_unit_test(test_policy_load_files),
        cmocka_unit_test(test_policy_store_swap_under_readers),
        cmocka_unit_test(test_policy_build_docs_examples),
        cmocka_unit_test(test_policy_build_bad_config_schema_agrees),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
