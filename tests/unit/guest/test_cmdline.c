/*
 * Unit tests for guest/init/cmdline.c, the kernel command line lookup that
 * capsem-init uses for capsem.agent=0 and capsem.poweroff=1. Bad input (no
 * such key, a key that is only a prefix of a word, empty text, quotes) must
 * give "not found" or the exact value, never a read past the given length.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "cmdline.h"

#include <stdlib.h>
#include <string.h>

static bool is(const char *cmdline, const char *key, const char *want)
{
    return cmdline_is(cmdline, strlen(cmdline), key, want);
}

static void test_cmdline_get_value(void **state)
{
    (void)state;
    const char *c = "console=ttyS0 reboot=k capsem.agent=0 panic=-1\n";
    struct slice v;
    assert_true(cmdline_get(c, strlen(c), "capsem.agent", &v));
    assert_int_equal(v.len, 1);
    assert_memory_equal(v.ptr, "0", 1);
    assert_true(cmdline_get(c, strlen(c), "panic", &v));
    assert_int_equal(v.len, 2);
    assert_memory_equal(v.ptr, "-1", 2);
    assert_true(is(c, "console", "ttyS0"));
}

static void test_cmdline_get_missing(void **state)
{
    (void)state;
    const char *c = "console=ttyS0 capsem.agentx=0 xcapsem.agent=0 capsem.agen=0";
    struct slice v;
    assert_false(cmdline_get(c, strlen(c), "capsem.agent", &v));
    assert_false(cmdline_get("", 0, "capsem.agent", &v));
    assert_false(cmdline_get("   \n", 4, "capsem.agent", &v));
}

static void test_cmdline_get_bare_key(void **state)
{
    (void)state;
    struct slice v;
    assert_true(cmdline_get("quiet capsem.poweroff", 21, "capsem.poweroff", &v));
    assert_int_equal(v.len, 0);
    assert_false(is("quiet capsem.poweroff", "capsem.poweroff", "1"));
}

static void test_cmdline_get_last_wins(void **state)
{
    (void)state;
    assert_true(is("capsem.agent=0 capsem.agent=1", "capsem.agent", "1"));
    assert_true(is("capsem.agent=1 capsem.agent=0", "capsem.agent", "0"));
}

static void test_cmdline_get_quoted(void **state)
{
    (void)state;
    const char *c = "a=\"x y\" capsem.agent=0";
    assert_true(is(c, "a", "x y"));
    assert_true(is(c, "capsem.agent", "0"));
    /* A quoted blank does not start a new word. */
    assert_false(is("a=\"x capsem.agent=0\"", "capsem.agent", "0"));
}

static void test_cmdline_get_respects_length(void **state)
{
    (void)state;
    /* Only the first 14 bytes are the command line; the rest must not be seen. */
    char *c = malloc(14);
    assert_non_null(c);
    memcpy(c, "capsem.agent=0", 14);
    assert_true(cmdline_is(c, 14, "capsem.agent", "0"));
    assert_false(cmdline_is(c, 13, "capsem.agent", "0"));
    assert_true(cmdline_is(c, 13, "capsem.agent", ""));
    free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cmdline_get_value),
        cmocka_unit_test(test_cmdline_get_missing),
        cmocka_unit_test(test_cmdline_get_bare_key),
        cmocka_unit_test(test_cmdline_get_last_wins),
        cmocka_unit_test(test_cmdline_get_quoted),
        cmocka_unit_test(test_cmdline_get_respects_length),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
