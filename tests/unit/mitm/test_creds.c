/*
 * Credential placeholders (mitm/creds.h): building the table from config and
 * a fake environment, finding placeholders in real parsed heads, the swap in
 * each place a key travels, and the verdict for a host.
 *
 * Bad input: a bad credentials object (unknown provider or key, wrong type,
 * both api_key and api_key_env, a bad host) is -EINVAL naming the file and
 * JSON path; a key with a space or control character or over the limit is
 * -EINVAL naming where it came from, never the key; a named variable that is
 * unset is -EINVAL. A placeholder to a wrong host blocks the request; a head
 * without placeholders goes out byte for byte as it came.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "creds.h"
#include "http.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REAL_ANT "sk-ant-real-0123456789abcdef"
#define REAL_OAI "sk-proj-real-openai-key"
#define REAL_GEM "AIzaRealGeminiKey42"

struct fake_env {
    const char *names[8];
    const char *values[8];
};

static const char *fake_get(void *opaque, const char *name)
{
    struct fake_env *e = opaque;
    for (size_t i = 0; i < 8 && e->names[i]; i++)
        if (strcmp(e->names[i], name) == 0)
            return e->values[i];
    return NULL;
}

static struct creds *build_all(void)
{
    struct fake_env env = {{"ANTHROPIC_API_KEY", "OPENAI_API_KEY", "GOOGLE_API_KEY"},
                           {REAL_ANT, REAL_OAI, REAL_GEM}};
    struct creds *c = NULL;
    char err[512];
    int rc = creds_build(NULL, NULL, NULL, NULL, fake_get, &env, &c, err, sizeof(err));
    if (rc)
        fail_msg("creds_build: %d %s", rc, err);
    return c;
}

/* Rewrite head text to host; returns the malloc'ed output (NUL-terminated) or NULL when blocked. */
static char *rewrite(const struct creds *c, const char *host, const char *head,
                     struct creds_check *chk)
{
    size_t cap = 70000, outlen = 0;
    char *out = calloc(1, cap + 1);
    assert_non_null(out);
    int rc = creds_rewrite_head(c, host, true, head, strlen(head), out, cap, &outlen, chk);
    assert_int_equal(rc, 0);
    if (chk->block) {
        free(out);
        return NULL;
    }
    out[outlen] = '\0';
    return out;
}

/* f with its one "%s" replaced by a (a plain substitution, so tables of formats work). */
static char *fmt(const char *f, const char *a)
{
    const char *at = strstr(f, "%s");
    assert_non_null(at);
    size_t pre = (size_t)(at - f), al = strlen(a), post = strlen(at + 2);
    char *s = malloc(pre + al + post + 1);
    assert_non_null(s);
    memcpy(s, f, pre);
    memcpy(s + pre, a, al);
    memcpy(s + pre + al, at + 2, post + 1);
    return s;
}

static void test_creds_build_env_placeholders(void **state)
{
    (void)state;
    struct creds *c = build_all();
    for (int pv = 0; pv < CREDS_NPROVIDERS; pv++) {
        const char *ph = creds_placeholder(c, (enum creds_provider)pv);
        assert_non_null(ph);
        char pre[64];
        snprintf(pre, sizeof(pre), "capsem-placeholder-%s-", creds_provider_name(pv));
        assert_int_equal(strncmp(ph, pre, strlen(pre)), 0);
        assert_int_equal(strlen(ph), strlen(pre) + 32);
    }
    const char *const *env = NULL;
    size_t n = creds_guest_env(c, &env);
    assert_int_equal(n, 5);
    const char *want[] = {"ANTHROPIC_API_KEY=", "OPENAI_API_KEY=", "CODEX_API_KEY=",
                          "GEMINI_API_KEY=", "GOOGLE_API_KEY="};
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(strncmp(env[i], want[i], strlen(want[i])), 0);
        assert_non_null(strstr(env[i], "capsem-placeholder-"));
        assert_null(strstr(env[i], "real"));
        assert_null(strstr(env[i], "AIza"));
    }
    /* A second session draws different placeholders. */
    struct creds *c2 = build_all();
    assert_string_not_equal(creds_placeholder(c, CREDS_ANTHROPIC),
                            creds_placeholder(c2, CREDS_ANTHROPIC));
    creds_destroy(c2);
    creds_destroy(c);
}

static void test_creds_build_no_key_no_placeholder(void **state)
{
    (void)state;
    struct fake_env env = {{"ANTHROPIC_API_KEY", "OPENAI_API_KEY"}, {REAL_ANT, ""}};
    struct creds *c = NULL;
    char err[256];
    assert_int_equal(creds_build(NULL, NULL, NULL, NULL, fake_get, &env, &c, err, sizeof(err)), 0);
    assert_non_null(creds_placeholder(c, CREDS_ANTHROPIC));
    assert_null(creds_placeholder(c, CREDS_OPENAI)); /* empty counts as unset */
    assert_null(creds_placeholder(c, CREDS_GEMINI));
    const char *const *e = NULL;
    assert_int_equal(creds_guest_env(c, &e), 1);
    creds_destroy(c);
}

static void test_creds_build_config(void **state)
{
    (void)state;
    json_t *user = json_loads("{\"credentials\":{\"anthropic\":{\"api_key\":\"sk-ant-from-file\","
                              "\"hosts\":[\"api.anthropic.com\",\"*.corp-proxy.test\"]},"
                              "\"openai\":{\"api_key_env\":\"MY_OAI\"},"
                              "\"gemini\":{\"disabled\":true}}}",
                              0, NULL);
    assert_non_null(user);
    struct fake_env env = {{"MY_OAI", "GEMINI_API_KEY", "ANTHROPIC_API_KEY"},
                           {REAL_OAI, REAL_GEM, "sk-ant-env-ignored"}};
    struct creds *c = NULL;
    char err[256];
    assert_int_equal(
        creds_build(NULL, NULL, user, "config.json", fake_get, &env, &c, err, sizeof(err)), 0);
    assert_non_null(creds_placeholder(c, CREDS_ANTHROPIC));
    assert_non_null(creds_placeholder(c, CREDS_OPENAI));
    assert_null(creds_placeholder(c, CREDS_GEMINI));
    assert_true(creds_host_allowed(c, CREDS_ANTHROPIC, "api.anthropic.com"));
    assert_true(creds_host_allowed(c, CREDS_ANTHROPIC, "eu.corp-proxy.test"));
    assert_false(creds_host_allowed(c, CREDS_ANTHROPIC, "corp-proxy.test"));
    assert_false(creds_host_allowed(c, CREDS_ANTHROPIC, "api.openai.com"));

    char *head = fmt("GET / HTTP/1.1\r\nHost: api.anthropic.com\r\nx-api-key: %s\r\n\r\n",
                     creds_placeholder(c, CREDS_ANTHROPIC));
    struct creds_check chk;
    char *out = rewrite(c, "api.anthropic.com", head, &chk);
    assert_non_null(strstr(out, "x-api-key: sk-ant-from-file\r\n"));
    free(out);
    free(head);
    creds_destroy(c);

    /* The corp file pins hosts and can forbid a provider whatever the user says. */
    json_t *corp = json_loads("{\"credentials\":{\"anthropic\":{\"hosts\":[\"gw.corp.test\"]},"
                              "\"openai\":{\"disabled\":true}}}",
                              0, NULL);
    assert_int_equal(
        creds_build(corp, "corp.json", user, "config.json", fake_get, &env, &c, err, sizeof(err)),
        0);
    assert_true(creds_host_allowed(c, CREDS_ANTHROPIC, "gw.corp.test"));
    assert_false(creds_host_allowed(c, CREDS_ANTHROPIC, "api.anthropic.com"));
    assert_null(creds_placeholder(c, CREDS_OPENAI));
    creds_destroy(c);
    json_decref(corp);
    json_decref(user);
}

static void expect_bad(const char *doc, const char *want)
{
    json_t *user = json_loads(doc, 0, NULL);
    assert_non_null(user);
    struct fake_env env = {{"ANTHROPIC_API_KEY"}, {REAL_ANT}};
    struct creds *c = NULL;
    char err[512] = "";
    assert_int_equal(
        creds_build(NULL, NULL, user, "config.json", fake_get, &env, &c, err, sizeof(err)),
        -EINVAL);
    assert_null(c);
    if (!strstr(err, want))
        fail_msg("error '%s' lacks '%s'", err, want);
    json_decref(user);
}

static void test_creds_build_bad_config(void **state)
{
    (void)state;
    expect_bad("{\"credentials\":[]}", "config.json: $.credentials: must be an object");
    expect_bad("{\"credentials\":{\"mistral\":{}}}", "unknown provider");
    expect_bad("{\"credentials\":{\"anthropic\":{\"apikey\":\"x\"}}}",
               "$.credentials.anthropic.apikey: unknown key");
    expect_bad("{\"credentials\":{\"anthropic\":{\"api_key\":5}}}",
               "$.credentials.anthropic.api_key: must be");
    expect_bad("{\"credentials\":{\"anthropic\":{\"api_key\":\"two words\"}}}",
               "$.credentials.anthropic.api_key: must be");
    expect_bad("{\"credentials\":{\"anthropic\":{\"api_key\":\"a\",\"api_key_env\":\"B\"}}}",
               "not both");
    expect_bad("{\"credentials\":{\"anthropic\":{\"api_key_env\":\"1BAD\"}}}",
               "$.credentials.anthropic.api_key_env: must be");
    expect_bad("{\"credentials\":{\"anthropic\":{\"api_key_env\":\"UNSET_VAR\"}}}",
               "UNSET_VAR is not set");
    expect_bad("{\"credentials\":{\"anthropic\":{\"hosts\":[]}}}",
               "$.credentials.anthropic.hosts: must be");
    expect_bad("{\"credentials\":{\"anthropic\":{\"hosts\":[\"a..b\"]}}}",
               "$.credentials.anthropic.hosts[0]: must be");
    expect_bad("{\"credentials\":{\"anthropic\":{\"disabled\":\"yes\"}}}",
               "$.credentials.anthropic.disabled: must be a boolean");
}

static void test_creds_build_bad_key_not_echoed(void **state)
{
    (void)state;
    struct fake_env env = {{"ANTHROPIC_API_KEY"}, {"sk-ant-secret\r\nX-Injected: 1"}};
    struct creds *c = NULL;
    char err[512] = "";
    assert_int_equal(creds_build(NULL, NULL, NULL, NULL, fake_get, &env, &c, err, sizeof(err)),
                     -EINVAL);
    assert_non_null(strstr(err, "environment variable ANTHROPIC_API_KEY"));
    assert_null(strstr(err, "secret"));
    char big[CREDS_KEY_MAX + 2];
    memset(big, 'k', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    env.values[0] = big;
    assert_int_equal(creds_build(NULL, NULL, NULL, NULL, fake_get, &env, &c, err, sizeof(err)),
                     -EINVAL);
    assert_null(strstr(err, "kkkk"));
}

/* Each form a key travels in, with odd casing, to its provider's host. */
static void test_creds_rewrite_head_each_form(void **state)
{
    (void)state;
    struct creds *c = build_all();
    const char *ant = creds_placeholder(c, CREDS_ANTHROPIC);
    const char *oai = creds_placeholder(c, CREDS_OPENAI);
    const char *gem = creds_placeholder(c, CREDS_GEMINI);
    struct creds_check chk;
    struct {
        const char *host, *fmt, *ph, *want;
    } cases[] = {
        {"api.anthropic.com", "POST /v1/messages HTTP/1.1\r\nHost: a\r\nX-Api-Key: %s\r\n\r\n", ant,
         "X-Api-Key: " REAL_ANT "\r\n"},
        {"api.openai.com",
         "POST /v1/responses HTTP/1.1\r\nHost: a\r\nauthorization: Bearer %s\r\n\r\n", oai,
         "authorization: Bearer " REAL_OAI "\r\n"},
        {"api.openai.com",
         "POST /v1/responses HTTP/1.1\r\nHost: a\r\nAUTHORIZATION: bEaReR %s\r\n\r\n", oai,
         "AUTHORIZATION: bEaReR " REAL_OAI "\r\n"},
        {"generativelanguage.googleapis.com",
         "POST /v1beta/models/m:generateContent HTTP/1.1\r\nHost: a\r\nx-GOOG-api-key: %s\r\n\r\n",
         gem, "x-GOOG-api-key: " REAL_GEM "\r\n"},
        {"generativelanguage.googleapis.com",
         "GET /v1beta/models?alt=sse&key=%s&pageSize=5 HTTP/1.1\r\nHost: a\r\n\r\n", gem,
         "GET /v1beta/models?alt=sse&key=" REAL_GEM "&pageSize=5 HTTP/1.1\r\n"},
        {"generativelanguage.googleapis.com",
         "GET /v1beta/models?key=%s HTTP/1.1\r\nHost: a\r\n\r\n", gem,
         "GET /v1beta/models?key=" REAL_GEM " HTTP/1.1\r\n"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *head = fmt(cases[i].fmt, cases[i].ph);
        char *out = rewrite(c, cases[i].host, head, &chk);
        assert_non_null(out);
        assert_false(chk.block);
        if (!strstr(out, cases[i].want))
            fail_msg("case %zu: '%s' lacks '%s'", i, out, cases[i].want);
        assert_null(strstr(out, "capsem-placeholder-"));
        free(out);
        free(head);
    }
    creds_destroy(c);
}

/* A placeholder in some other header to the right host stays a placeholder. */
static void test_creds_rewrite_head_unrelated_header(void **state)
{
    (void)state;
    struct creds *c = build_all();
    const char *ant = creds_placeholder(c, CREDS_ANTHROPIC);
    char *head = fmt("POST /v1/messages HTTP/1.1\r\nHost: api.anthropic.com\r\nX-Note: %s\r\n"
                     "Authorization: Basic x\r\n\r\n",
                     ant);
    struct creds_check chk;
    char *out = rewrite(c, "api.anthropic.com", head, &chk);
    assert_non_null(out);
    assert_true(chk.found & (1u << CREDS_ANTHROPIC));
    assert_string_equal(out, head); /* nothing swapped */
    assert_null(strstr(out, REAL_ANT));
    free(out);
    free(head);

    /* key= only as a whole parameter: xkey= or a key in the path is not swapped. */
    const char *gem = creds_placeholder(c, CREDS_GEMINI);
    head = fmt("GET /p?xkey=%s HTTP/1.1\r\nHost: a\r\n\r\n", gem);
    out = rewrite(c, "generativelanguage.googleapis.com", head, &chk);
    assert_string_equal(out, head);
    free(out);
    free(head);
    creds_destroy(c);
}

static void test_creds_check_wrong_host_blocked(void **state)
{
    (void)state;
    struct creds *c = build_all();
    const char *ant = creds_placeholder(c, CREDS_ANTHROPIC);
    const char *gem = creds_placeholder(c, CREDS_GEMINI);
    struct creds_check chk;
    const char *fmts[] = {
        "GET /hello HTTP/1.1\r\nHost: upstream.test\r\nx-api-key: %s\r\n\r\n",
        "GET /hello HTTP/1.1\r\nHost: upstream.test\r\nX-Whatever: pre%spost\r\n\r\n",
        "GET /hello?q=%s HTTP/1.1\r\nHost: upstream.test\r\n\r\n",
    };
    for (size_t i = 0; i < 3; i++) {
        char *head = fmt(fmts[i], ant);
        assert_null(rewrite(c, "upstream.test", head, &chk));
        assert_true(chk.block);
        assert_int_equal(chk.provider, CREDS_ANTHROPIC);
        assert_string_equal(chk.error, "credential placeholder sent to upstream.test");
        free(head);
    }
    /* Another provider's host counts as a wrong host too. */
    char *head = fmt("GET / HTTP/1.1\r\nHost: a\r\nx-goog-api-key: %s\r\n\r\n", gem);
    assert_null(rewrite(c, "api.anthropic.com", head, &chk));
    assert_int_equal(chk.provider, CREDS_GEMINI);
    assert_null(strstr(chk.error, REAL_GEM));
    free(head);
    /* The provider's own host over plain HTTP: the key would go in the clear. */
    head = fmt("GET / HTTP/1.1\r\nHost: a\r\nx-api-key: %s\r\n\r\n", ant);
    size_t ol = 0;
    char out[512];
    assert_int_equal(creds_rewrite_head(c, "api.anthropic.com", false, head, strlen(head), out,
                                        sizeof(out), &ol, &chk),
                     0);
    assert_true(chk.block);
    assert_string_equal(chk.error,
                        "credential placeholder sent to api.anthropic.com over plain HTTP");
    free(head);
    /* A look-alike host is not the provider's. */
    head = fmt("GET / HTTP/1.1\r\nHost: a\r\nx-api-key: %s\r\n\r\n", ant);
    assert_null(rewrite(c, "api.anthropic.com.evil.test", head, &chk));
    assert_true(chk.block);
    free(head);
    creds_destroy(c);
}

static void test_creds_rewrite_head_untouched(void **state)
{
    (void)state;
    struct creds *c = build_all();
    const char *head = "POST /v1/messages?beta=true HTTP/1.1\r\nHost: api.anthropic.com\r\n"
                       "x-api-key: sk-ant-users-own\r\nContent-Length: 2\r\n\r\n";
    struct creds_check chk;
    char *out = rewrite(c, "api.anthropic.com", head, &chk);
    assert_int_equal(chk.found, 0);
    assert_string_equal(out, head);
    free(out);
    /* No table at all: same. */
    out = rewrite(NULL, "api.anthropic.com", head, &chk);
    assert_string_equal(out, head);
    free(out);
    creds_destroy(c);
}

/* Keys shorter and longer than the placeholder: the head is rebuilt, the body length unchanged. */
static void test_creds_rewrite_head_key_lengths(void **state)
{
    (void)state;
    char longkey[600];
    memset(longkey, 'L', sizeof(longkey) - 1);
    longkey[sizeof(longkey) - 1] = '\0';
    const char *keys[] = {"k", longkey};
    for (size_t i = 0; i < 2; i++) {
        struct fake_env env = {{"ANTHROPIC_API_KEY"}, {keys[i]}};
        struct creds *c = NULL;
        char err[256];
        assert_int_equal(creds_build(NULL, NULL, NULL, NULL, fake_get, &env, &c, err, sizeof(err)),
                         0);
        const char *ph = creds_placeholder(c, CREDS_ANTHROPIC);
        char *head = fmt("POST /v1/messages HTTP/1.1\r\nHost: api.anthropic.com\r\n"
                         "x-api-key: %s\r\nContent-Length: 17\r\nX-After: 1\r\n\r\n",
                         ph);
        struct creds_check chk;
        char *out = rewrite(c, "api.anthropic.com", head, &chk);
        assert_int_equal(strlen(out), strlen(head) - strlen(ph) + strlen(keys[i]));
        char want[700];
        snprintf(want, sizeof(want), "x-api-key: %s\r\nContent-Length: 17\r\nX-After: 1\r\n\r\n",
                 keys[i]);
        assert_non_null(strstr(out, want));
        /* What went out parses, with the same body length. */
        struct http_head *h = malloc(sizeof(*h));
        assert_true(http_parse_head(out, strlen(out), true, h, NULL) > 0);
        assert_int_equal(h->content_length, 17);
        free(h);
        free(out);
        free(head);
        creds_destroy(c);
    }
}

static void test_creds_swap_arena_too_small(void **state)
{
    (void)state;
    struct creds *c = build_all();
    char *head = fmt("GET / HTTP/1.1\r\nHost: a\r\nx-api-key: %s\r\n\r\n", creds_placeholder(c, 0));
    struct http_head *h = malloc(sizeof(*h));
    assert_true(http_parse_head(head, strlen(head), true, h, NULL) > 0);
    struct http_str t = h->target;
    struct http_str before = h->headers[1].value;
    char arena[4];
    assert_int_equal(creds_swap(c, "api.anthropic.com", h, &t, arena, sizeof(arena)), -EMSGSIZE);
    assert_ptr_equal(h->headers[1].value.p, before.p); /* unchanged */
    free(h);
    free(head);
    creds_destroy(c);
}

static void test_creds_rewrite_head_bad_head(void **state)
{
    (void)state;
    struct creds *c = build_all();
    struct creds_check chk;
    char out[100];
    size_t ol = 0;
    const char *bad = "GET / HTTP/1.1\r\nHost a\r\n\r\n";
    assert_int_equal(
        creds_rewrite_head(c, "x", true, bad, strlen(bad), out, sizeof(out), &ol, &chk), -EBADMSG);
    const char *ok = "GET / HTTP/1.1\r\nHost: a\r\nX-Long: 0123456789012345678901234567890123456789"
                     "012345678901234567890123456789\r\n\r\n";
    assert_int_equal(creds_rewrite_head(c, "x", true, ok, strlen(ok), out, sizeof(out), &ol, &chk),
                     -EMSGSIZE);
    creds_destroy(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_creds_build_env_placeholders),
        cmocka_unit_test(test_creds_build_no_key_no_placeholder),
        cmocka_unit_test(test_creds_build_config),
        cmocka_unit_test(test_creds_build_bad_config),
        cmocka_unit_test(test_creds_build_bad_key_not_echoed),
        cmocka_unit_test(test_creds_rewrite_head_each_form),
        cmocka_unit_test(test_creds_rewrite_head_unrelated_header),
        cmocka_unit_test(test_creds_check_wrong_host_blocked),
        cmocka_unit_test(test_creds_rewrite_head_untouched),
        cmocka_unit_test(test_creds_rewrite_head_key_lengths),
        cmocka_unit_test(test_creds_swap_arena_too_small),
        cmocka_unit_test(test_creds_rewrite_head_bad_head),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
