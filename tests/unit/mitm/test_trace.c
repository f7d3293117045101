/*
 * unit.mitm.trace: three calls of one agent task linked into one trace
 * (turns 1, 2, 3) while an unrelated call starts its own; a request with
 * only unknown tool results starts a new trace; results matching calls of
 * two traces join the later turn; Gemini calls linked by function name; the
 * bound (the oldest ids forgotten first); and four threads linking their
 * own chains at once without mixing them up.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "trace.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

/* A call that answered with tool calls `calls` after sending results `results`. */
static struct model_call mk(const char *provider, struct model_tool_call *calls, size_t ncalls,
                            struct model_tool_result *results, size_t nresults)
{
    return (struct model_call){.provider = provider,
                               .tool_calls = calls,
                               .n_tool_calls = ncalls,
                               .tool_results = results,
                               .n_tool_results = nresults};
}

static void test_trace_link_three_calls(void **state)
{
    (void)state;
    struct trace_table *t = NULL;
    assert_int_equal(trace_table_create(0, &t), 0);
    /* call 1: a prompt, answered with two tool calls */
    struct model_tool_call c1[] = {{"toolu_a", "Read", "{}"}, {"toolu_b", "Bash", "{}"}};
    struct model_call m1 = mk("anthropic", c1, 2, NULL, 0);
    trace_link(t, &m1);
    assert_int_equal(m1.turn, 1);
    assert_true(m1.trace_id > 0);
    /* meanwhile another task starts */
    struct model_tool_call o1[] = {{"toolu_other", "Write", "{}"}};
    struct model_call other = mk("anthropic", o1, 1, NULL, 0);
    trace_link(t, &other);
    assert_int_equal(other.turn, 1);
    assert_true(other.trace_id != m1.trace_id);
    /* call 2 sends one result of call 1 and asks for another tool */
    struct model_tool_result r2[] = {{"toolu_b", false, "ok"}};
    struct model_tool_call c2[] = {{"toolu_c", "Write", "{}"}};
    struct model_call m2 = mk("anthropic", c2, 1, r2, 1);
    trace_link(t, &m2);
    assert_int_equal(m2.trace_id, m1.trace_id);
    assert_int_equal(m2.turn, 2);
    /* call 3 sends the result of call 2: the final answer, no tool calls */
    struct model_tool_result r3[] = {{"toolu_c", true, "EACCES"}};
    struct model_call m3 = mk("anthropic", NULL, 0, r3, 1);
    trace_link(t, &m3);
    assert_int_equal(m3.trace_id, m1.trace_id);
    assert_int_equal(m3.turn, 3);
    /* a fresh prompt: a new trace */
    struct model_call m4 = mk("anthropic", NULL, 0, NULL, 0);
    trace_link(t, &m4);
    assert_int_equal(m4.turn, 1);
    assert_true(m4.trace_id != m1.trace_id && m4.trace_id != other.trace_id);
    /* only unknown results (their calls were never seen): a new trace too */
    struct model_tool_result ru[] = {{"toolu_zzz", false, NULL}, {NULL, false, NULL}};
    struct model_call m5 = mk("anthropic", NULL, 0, ru, 2);
    trace_link(t, &m5);
    assert_int_equal(m5.turn, 1);
    assert_true(m5.trace_id != m4.trace_id);
    /* results of two traces: the later turn wins */
    struct model_tool_result both[] = {{"toolu_other", false, NULL}, {"toolu_c", false, NULL}};
    struct model_call m6 = mk("anthropic", NULL, 0, both, 2);
    trace_link(t, &m6);
    assert_int_equal(m6.trace_id, m1.trace_id);
    assert_int_equal(m6.turn, 3);
    trace_link(t, NULL);
    trace_link(NULL, &m6);
    trace_table_destroy(t);
    trace_table_destroy(NULL);
}

static void test_trace_link_gemini_by_name(void **state)
{
    (void)state;
    struct trace_table *t = NULL;
    assert_int_equal(trace_table_create(0, &t), 0);
    struct model_tool_call c1[] = {{NULL, "write_file", "{}"}};
    struct model_call m1 = mk("gemini", c1, 1, NULL, 0);
    trace_link(t, &m1);
    struct model_tool_result r2[] = {{"write_file", false, "done"}};
    struct model_call m2 = mk("gemini", NULL, 0, r2, 1);
    trace_link(t, &m2);
    assert_int_equal(m2.trace_id, m1.trace_id);
    assert_int_equal(m2.turn, 2);
    /* names are not keys for other providers */
    struct model_tool_call c3[] = {{"toolu_q", "Bash", "{}"}};
    struct model_call m3 = mk("anthropic", c3, 1, NULL, 0);
    trace_link(t, &m3);
    struct model_tool_result r4[] = {{"Bash", false, NULL}};
    struct model_call m4 = mk("anthropic", NULL, 0, r4, 1);
    trace_link(t, &m4);
    assert_int_equal(m4.turn, 1);
    trace_table_destroy(t);
}

static void test_trace_link_bounded(void **state)
{
    (void)state;
    struct trace_table *t = NULL;
    assert_int_equal(trace_table_create(4, &t), 0);
    char ids[10][16];
    struct model_tool_call calls[10];
    int64_t traces[10];
    for (int i = 0; i < 10; i++) {
        snprintf(ids[i], sizeof(ids[i]), "id%d", i);
        calls[i] = (struct model_tool_call){ids[i], "T", NULL};
        struct model_call m = mk("openai", &calls[i], 1, NULL, 0);
        trace_link(t, &m);
        traces[i] = m.trace_id;
    }
    /* only the last four are remembered */
    for (int i = 0; i < 10; i++) {
        struct model_tool_result r = {ids[i], false, NULL};
        struct model_call m = mk("openai", NULL, 0, &r, 1);
        trace_link(t, &m);
        if (i >= 6) {
            assert_int_equal(m.trace_id, traces[i]);
            assert_int_equal(m.turn, 2);
        } else {
            assert_int_equal(m.turn, 1);
        }
    }
    /* churn far past the bound keeps working (tombstones reused) */
    for (int i = 0; i < 5000; i++) {
        char id[32];
        snprintf(id, sizeof(id), "churn%d", i);
        struct model_tool_call c = {id, "T", NULL};
        struct model_call m = mk("openai", &c, 1, NULL, 0);
        trace_link(t, &m);
        struct model_tool_result r = {id, false, NULL};
        struct model_call n = mk("openai", NULL, 0, &r, 1);
        trace_link(t, &n);
        assert_int_equal(n.trace_id, m.trace_id);
    }
    trace_table_destroy(t);
}

struct chain {
    struct trace_table *t;
    int who;
    bool ok;
};

static void *chain_thread(void *arg)
{
    struct chain *c = arg;
    c->ok = true;
    for (int task = 0; task < 200; task++) {
        char prev[48] = "";
        int64_t trace = 0;
        for (int turn = 1; turn <= 5; turn++) {
            char id[48];
            snprintf(id, sizeof(id), "t%d-%d-%d", c->who, task, turn);
            struct model_tool_call call = {id, "T", NULL};
            struct model_tool_result res = {prev, false, NULL};
            struct model_call m = mk("anthropic", &call, 1, &res, turn > 1 ? 1 : 0);
            trace_link(c->t, &m);
            if (m.turn != turn || (turn > 1 && m.trace_id != trace))
                c->ok = false;
            trace = m.trace_id;
            memcpy(prev, id, sizeof(prev));
        }
    }
    return NULL;
}

static void test_trace_link_threads(void **state)
{
    (void)state;
    struct trace_table *t = NULL;
    assert_int_equal(trace_table_create(0, &t), 0);
    pthread_t th[4];
    struct chain ch[4];
    for (int i = 0; i < 4; i++) {
        ch[i] = (struct chain){.t = t, .who = i};
        assert_int_equal(pthread_create(&th[i], NULL, chain_thread, &ch[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        assert_true(ch[i].ok);
    }
    trace_table_destroy(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_trace_link_three_calls),
        cmocka_unit_test(test_trace_link_gemini_by_name),
        cmocka_unit_test(test_trace_link_bounded),
        cmocka_unit_test(test_trace_link_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
