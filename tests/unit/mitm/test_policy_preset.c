/*
 * Unit tests for a session's own preset (policy_build_preset,
 * policy_load_preset in mitm/policy.h): it takes the place of the user
 * document's preset, corp and user rules still come first, a locked corp
 * file ignores it, the built-in default is replaced by it, and an unknown
 * name is refused with nothing built.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "policy.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static json_t *parse(const char *text)
{
    json_error_t je;
    json_t *j = text ? json_loads(text, 0, &je) : NULL;
    if (text && !j)
        fail_msg("test JSON: %s: %s", text, je.text);
    return j;
}

/* Build from two JSON texts (either may be NULL) with `preset`; the build must succeed. */
static struct policy *build(const char *corp, const char *user, const char *preset)
{
    json_t *c = parse(corp), *u = parse(user);
    struct policy *p = NULL;
    char err[512];
    int rc = policy_build_preset(c, "corp.json", u, "config.json", preset, &p, err, sizeof(err));
    json_decref(c);
    json_decref(u);
    if (rc != 0)
        fail_msg("build failed: %s", err);
    return p;
}

static enum decision get(const struct policy *p, const char *host)
{
    return policy_decide_http(p, host, "GET", "/").decision;
}

static void test_policy_build_preset_replaces_user_preset(void **state)
{
    (void)state;
    const char *user = "{\"network\":{\"preset\":\"high\"}}";
    struct policy *p = build(NULL, user, "medium");
    assert_int_equal(get(p, "github.com"), DECISION_ALLOW); /* medium's, not high's */
    assert_string_equal(policy_decide_http(p, "github.com", "GET", "/").rule, "medium:github.com");
    assert_int_equal(get(p, "example.org"), DECISION_BLOCK);
    policy_unref(p);
    p = build(NULL, user, "open");
    assert_int_equal(get(p, "example.org"), DECISION_LOG); /* open: default log */
    policy_unref(p);
    p = build(NULL, "{\"network\":{\"preset\":\"open\"}}", "high");
    assert_int_equal(get(p, "example.org"), DECISION_BLOCK);
    assert_int_equal(get(p, "api.anthropic.com"), DECISION_ALLOW);
    policy_unref(p);
    /* NULL: as the document says. */
    p = build(NULL, user, NULL);
    assert_int_equal(get(p, "github.com"), DECISION_BLOCK);
    policy_unref(p);
}

static void test_policy_build_preset_keeps_rules(void **state)
{
    (void)state;
    const char *corp =
        "{\"network\":{\"rules\":[{\"domain\":\"github.com\",\"action\":\"block\"}]}}";
    const char *user = "{\"network\":{\"preset\":\"high\",\"rules\":"
                       "[{\"id\":\"mine\",\"domain\":\"example.org\",\"action\":\"allow\"}]}}";
    struct policy *p = build(corp, user, "open");
    assert_int_equal(get(p, "github.com"), DECISION_BLOCK); /* corp rule still first */
    assert_string_equal(policy_decide_http(p, "example.org", "GET", "/").rule, "mine");
    assert_int_equal(get(p, "other.example"), DECISION_LOG); /* the session's open preset */
    policy_unref(p);
    /* A user default still beats the preset's default. */
    p = build(NULL, "{\"network\":{\"default\":\"block\"}}", "open");
    assert_int_equal(get(p, "other.example"), DECISION_BLOCK);
    policy_unref(p);
}

static void test_policy_build_preset_locked_corp_ignores_it(void **state)
{
    (void)state;
    const char *corp = "{\"network\":{\"locked\":true,\"preset\":\"high\"}}";
    struct policy *p = build(corp, NULL, "open");
    assert_int_equal(get(p, "example.org"), DECISION_BLOCK);
    assert_int_equal(get(p, "api.openai.com"), DECISION_ALLOW);
    policy_unref(p);
}

static void test_policy_build_preset_unknown_name(void **state)
{
    (void)state;
    struct policy *p = NULL;
    char err[256] = "";
    const char *bad[] = {"", "HIGH", "wide", "none", "high "};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(policy_build_preset(NULL, NULL, NULL, NULL, bad[i], &p, err, sizeof(err)),
                         -EINVAL);
        assert_null(p);
        assert_non_null(strstr(err, "preset"));
    }
    assert_int_equal(policy_load_preset(NULL, NULL, "wide", &p, err, sizeof(err)), -EINVAL);
    assert_null(p);
}

static void test_policy_load_preset_files(void **state)
{
    (void)state;
    char dir[] = "/tmp/capsem-preset.XXXXXX", user[64], corp[64];
    assert_non_null(mkdtemp(dir));
    snprintf(user, sizeof(user), "%s/config.json", dir);
    snprintf(corp, sizeof(corp), "%s/corp.json", dir);
    struct policy *p = NULL;
    char err[512];
    /* Neither file: the built-in default (high) is replaced by the session's preset. */
    assert_int_equal(policy_load_preset(corp, user, "medium", &p, err, sizeof(err)), 0);
    assert_int_equal(get(p, "github.com"), DECISION_ALLOW);
    policy_unref(p);
    assert_int_equal(policy_load_preset(corp, user, NULL, &p, err, sizeof(err)), 0);
    assert_int_equal(get(p, "github.com"), DECISION_BLOCK);
    policy_unref(p);
    /* A bad user file is still refused, naming it, with a preset asked for. */
    FILE *f = fopen(user, "w");
    assert_non_null(f);
    fputs("{\"network\":{\"preset\":\"x\"}}", f);
    fclose(f);
    p = NULL;
    assert_int_equal(policy_load_preset(corp, user, "open", &p, err, sizeof(err)), -EINVAL);
    assert_null(p);
    assert_non_null(strstr(err, user));
    unlink(user);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_policy_build_preset_replaces_user_preset),
        cmocka_unit_test(test_policy_build_preset_keeps_rules),
        cmocka_unit_test(test_policy_build_preset_locked_corp_ignores_it),
        cmocka_unit_test(test_policy_build_preset_unknown_name),
        cmocka_unit_test(test_policy_load_preset_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
