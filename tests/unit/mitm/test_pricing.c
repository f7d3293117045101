/*
 * unit.mitm.pricing: the shipped schemas/pricing.json loads; exact matches,
 * dated snapshots through prefix entries, the longest prefix winning, and
 * unknown models (including look-alikes a loose prefix would catch) getting
 * no cost; the formula with cache reads and writes at their own rates, a
 * kind without a price charged at the input rate, the long-prompt tier; and
 * every kind of bad table refused with a reason naming the entry.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "pricing.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#ifndef CAPSEM_SOURCE_DIR
#define CAPSEM_SOURCE_DIR "."
#endif

static struct pricing *shipped(void)
{
    struct pricing *t = NULL;
    char err[256] = "";
    int rc = pricing_load_file(CAPSEM_SOURCE_DIR "/schemas/pricing.json", &t, err, sizeof(err));
    if (rc != 0)
        fprintf(stderr, "pricing.json: %s\n", err);
    assert_int_equal(rc, 0);
    return t;
}

static void assert_close(double a, double b)
{
    if (fabs(a - b) > 1e-12) {
        fprintf(stderr, "%.15f != %.15f\n", a, b);
        fail();
    }
}

static void test_pricing_find_shipped_table(void **state)
{
    (void)state;
    struct pricing *t = shipped();
    assert_non_null(pricing_as_of(t));
    const struct price *p = pricing_find(t, "anthropic", "claude-sonnet-4-5");
    assert_non_null(p);
    assert_close(p->input, 3);
    /* a dated snapshot through the prefix entry */
    assert_true(pricing_find(t, "anthropic", "claude-sonnet-4-5-20250929") == p ||
                pricing_find(t, "anthropic", "claude-sonnet-4-5-20250929")->input == 3);
    assert_close(pricing_find(t, "openai", "gpt-5.5-2026-04-01")->output, 30);
    /* gpt-5.5-pro is its own exact entry, not the gpt-5.5 snapshot prefix */
    assert_close(pricing_find(t, "openai", "gpt-5.5-pro")->output, 180);
    assert_close(pricing_find(t, "gemini", "gemini-2.5-flash")->cache_read, 0.03);
    /* unknown: never guessed from a near name */
    assert_null(pricing_find(t, "anthropic", "claude-opus-5-5"));
    assert_null(pricing_find(t, "anthropic", "claude-opus-4-6"));
    assert_null(pricing_find(t, "openai", "gpt-6.2-sol"));
    assert_null(pricing_find(t, "openai", "gpt-5.5-turbo"));
    assert_null(pricing_find(t, "gemini", "gemini-2.5-flash-lite"));
    assert_null(pricing_find(t, "openai", "claude-sonnet-4-5")); /* wrong provider */
    assert_null(pricing_find(t, "anthropic", NULL));
    pricing_destroy(t);
}

static void test_pricing_cost_formula(void **state)
{
    (void)state;
    struct pricing *t = shipped();
    double c = -1;
    /* claude-sonnet-4-5: 3 in, 15 out, 0.30 cache read, 3.75 cache write */
    assert_int_equal(
        pricing_cost(t, "anthropic", "claude-sonnet-4-5", 1000, 2000, 100000, 10000, &c), 0);
    assert_close(c, (1000 * 3 + 2000 * 15 + 100000 * 0.3 + 10000 * 3.75) / 1e6);
    /* unknown counts (-1) are zero */
    assert_int_equal(pricing_cost(t, "anthropic", "claude-sonnet-4-5", -1, 10, -1, -1, &c), 0);
    assert_close(c, 10 * 15 / 1e6);
    /* no cache-read price (gpt-5.5-pro): cached tokens at the input rate */
    assert_int_equal(pricing_cost(t, "openai", "gpt-5.5-pro", 100, 0, 900, 0, &c), 0);
    assert_close(c, 1000 * 30 / 1e6);
    /* gemini-2.5-pro: prompts over 200k tokens use the higher tier */
    assert_int_equal(pricing_cost(t, "gemini", "gemini-2.5-pro", 100000, 1000, 50000, 0, &c), 0);
    assert_close(c, (100000 * 1.25 + 1000 * 10 + 50000 * 0.125) / 1e6);
    assert_int_equal(pricing_cost(t, "gemini", "gemini-2.5-pro", 150000, 1000, 60000, 0, &c), 0);
    assert_close(c, (150000 * 2.5 + 1000 * 15 + 60000 * 0.25) / 1e6);
    /* unknown model: -ENOENT, *cost untouched */
    c = 42;
    assert_int_equal(pricing_cost(t, "openai", "gpt-6.2-sol", 1, 1, 1, 1, &c), -ENOENT);
    assert_close(c, 42);
    pricing_destroy(t);
}

static void test_pricing_apply_model_call(void **state)
{
    (void)state;
    struct pricing *t = shipped();
    struct model_call c = {.provider = "openai",
                           .model_requested = "gpt-5.4",
                           .model_answered = "gpt-5.4-2026-03-05",
                           .input_tokens = 176,
                           .output_tokens = 340,
                           .cache_read_tokens = 1024,
                           .cache_write_tokens = -1};
    pricing_apply(t, &c);
    assert_true(c.cost_known);
    assert_close(c.cost_usd, (176 * 2.5 + 340 * 15 + 1024 * 0.25) / 1e6);
    /* answered model unknown: flagged, not priced by the requested one */
    c.model_answered = "gpt-5.4-experimental";
    pricing_apply(t, &c);
    assert_false(c.cost_known);
    assert_close(c.cost_usd, 0);
    /* Gemini's "models/" prefix */
    struct model_call g = {.provider = "gemini",
                           .model_answered = "models/gemini-2.5-flash",
                           .input_tokens = 1000,
                           .output_tokens = 85,
                           .cache_read_tokens = 4000,
                           .cache_write_tokens = -1};
    pricing_apply(t, &g);
    assert_true(g.cost_known);
    assert_close(g.cost_usd, (1000 * 0.3 + 85 * 2.5 + 4000 * 0.03) / 1e6);
    /* no table, no model */
    pricing_apply(NULL, &g);
    assert_false(g.cost_known);
    struct model_call none = {.provider = "anthropic"};
    pricing_apply(t, &none);
    assert_false(none.cost_known);
    pricing_destroy(t);
}

static void test_pricing_find_longest_prefix(void **state)
{
    (void)state;
    const char *j =
        "{\"prices_as_of\":\"2026-01-01\",\"models\":["
        "{\"provider\":\"openai\",\"model\":\"m-\",\"match\":\"prefix\",\"input\":1,"
        "\"output\":1},"
        "{\"provider\":\"openai\",\"model\":\"m-big-\",\"match\":\"prefix\",\"input\":2,"
        "\"output\":2},"
        "{\"provider\":\"openai\",\"model\":\"m-big-x\",\"match\":\"exact\",\"input\":3,"
        "\"output\":3}]}";
    struct pricing *t = NULL;
    assert_int_equal(pricing_load_json(j, strlen(j), &t, NULL, 0), 0);
    assert_close(pricing_find(t, "openai", "m-small")->input, 1);
    assert_close(pricing_find(t, "openai", "m-big-1")->input, 2);
    assert_close(pricing_find(t, "openai", "m-big-x")->input, 3);
    assert_close(pricing_find(t, "openai", "m-big-xl")->input, 2);
    assert_null(pricing_find(t, "openai", "m"));
    pricing_destroy(t);
}

static void test_pricing_load_json_bad(void **state)
{
    (void)state;
    static const struct {
        const char *json;
        const char *why;
    } bad[] = {
        {"not json", "not JSON"},
        {"[]", "needs \"prices_as_of\""},
        {"{\"prices_as_of\":\"x\"}", "needs \"prices_as_of\""},
        {"{\"prices_as_of\":\"x\",\"models\":[7]}", "models[0]: not an object"},
        {"{\"prices_as_of\":\"x\",\"models\":[{\"provider\":\"acme\",\"model\":\"m\",\"match\":"
         "\"exact\",\"input\":1,\"output\":1}]}",
         "models[0]: provider"},
        {"{\"prices_as_of\":\"x\",\"models\":[{\"provider\":\"openai\",\"model\":\"\",\"match\":"
         "\"exact\",\"input\":1,\"output\":1}]}",
         "models[0]: model"},
        {"{\"prices_as_of\":\"x\",\"models\":[{\"provider\":\"openai\",\"model\":\"m\",\"match\":"
         "\"glob\",\"input\":1,\"output\":1}]}",
         "models[0]: match"},
        {"{\"prices_as_of\":\"x\",\"models\":[{\"provider\":\"openai\",\"model\":\"m\",\"match\":"
         "\"exact\",\"input\":-1,\"output\":1}]}",
         "models[0]: input and output"},
        {"{\"prices_as_of\":\"x\",\"models\":[{\"provider\":\"openai\",\"model\":\"m\",\"match\":"
         "\"exact\",\"input\":1}]}",
         "models[0]: input and output"},
        {"{\"prices_as_of\":\"x\",\"models\":[{\"provider\":\"openai\",\"model\":\"m\",\"match\":"
         "\"exact\",\"input\":1,\"output\":1,\"cache_read\":\"cheap\"}]}",
         "models[0]: cache_read"},
        {"{\"prices_as_of\":\"x\",\"models\":[{\"provider\":\"openai\",\"model\":\"m\",\"match\":"
         "\"exact\",\"input\":1,\"output\":1,\"above_tokens\":5}]}",
         "models[0]: above_tokens"},
        {"{\"prices_as_of\":\"x\",\"models\":[{\"provider\":\"openai\",\"model\":\"m\",\"match\":"
         "\"exact\",\"input\":1,\"output\":1},{\"provider\":\"openai\",\"model\":\"m\",\"match\":"
         "\"exact\",\"input\":2,\"output\":2}]}",
         "models[1]: duplicate"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct pricing *t = NULL;
        char err[256] = "";
        assert_int_equal(pricing_load_json(bad[i].json, strlen(bad[i].json), &t, err, sizeof(err)),
                         -EINVAL);
        assert_null(t);
        if (!strstr(err, bad[i].why)) {
            fprintf(stderr, "case %zu: [%s] lacks [%s]\n", i, err, bad[i].why);
            fail();
        }
    }
    struct pricing *t = NULL;
    char err[256] = "";
    assert_int_equal(pricing_load_file("/nonexistent/pricing.json", &t, err, sizeof(err)), -ENOENT);
    assert_non_null(strstr(err, "/nonexistent/pricing.json"));
    pricing_destroy(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pricing_find_shipped_table),
        cmocka_unit_test(test_pricing_cost_formula),
        cmocka_unit_test(test_pricing_apply_model_call),
        cmocka_unit_test(test_pricing_find_longest_prefix),
        cmocka_unit_test(test_pricing_load_json_bad),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
