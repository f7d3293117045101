/*
 * Unit tests for `capsem run` option parsing (server/cli_run.c). Every bad
 * command line must be refused with -EINVAL and a reason naming the culprit:
 * bad numbers (--mem, --cpus, --timeout), a missing "--" or command, -e
 * without NAME=VALUE, unknown options and options missing their value.
 */
#include "cli_run.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#define ARGC(a) ((int)(sizeof(a) / sizeof((a)[0])))

static void expect_error(int argc, char **argv, const char *want)
{
    struct cli_run_opts o;
    char err[256];
    assert_int_equal(cli_run_parse(argc, argv, &o, err, sizeof(err)), -EINVAL);
    if (!strstr(err, want))
        fail_msg("error '%s' lacks '%s'", err, want);
    assert_null(o.cmd);
    assert_null(o.env);
}

static void test_cli_run_parse_defaults(void **state)
{
    (void)state;
    char *argv[] = {"run", "--", "echo", "hi"};
    struct cli_run_opts o;
    char err[256];
    assert_int_equal(cli_run_parse(ARGC(argv), argv, &o, err, sizeof(err)), 0);
    assert_int_equal(o.mem_mib, CLI_RUN_DEFAULT_MEM_MIB);
    assert_int_equal(o.cpus, CLI_RUN_DEFAULT_CPUS);
    assert_int_equal(o.timeout_s, 0);
    assert_int_equal(o.boot_timeout_s, CLI_RUN_DEFAULT_BOOT_TIMEOUT_S);
    assert_int_equal(o.n_cmd, 2);
    assert_string_equal(o.cmd[0], "echo");
    assert_string_equal(o.cmd[1], "hi");
    assert_int_equal(o.n_env, 0);
    assert_null(o.kernel);
    assert_false(o.keep_logs);
    cli_run_opts_fini(&o);
}

static void test_cli_run_parse_all_options(void **state)
{
    (void)state;
    char *argv[] = {"run",
                    "--mem",
                    "1024",
                    "--cpus=2",
                    "--timeout",
                    "5",
                    "--boot-timeout=9",
                    "-e",
                    "A=1",
                    "--env",
                    "B=x=y",
                    "--env=C=",
                    "--kernel",
                    "k",
                    "--initrd=i",
                    "--keep-logs",
                    "--append",
                    "rdinit=/x",
                    "--",
                    "ls",
                    "--mem",
                    "-e"};
    struct cli_run_opts o;
    char err[256];
    assert_int_equal(cli_run_parse(ARGC(argv), argv, &o, err, sizeof(err)), 0);
    assert_int_equal(o.mem_mib, 1024);
    assert_int_equal(o.cpus, 2);
    assert_int_equal(o.timeout_s, 5);
    assert_int_equal(o.boot_timeout_s, 9);
    assert_int_equal(o.n_env, 3);
    assert_string_equal(o.env[0], "A=1");
    assert_string_equal(o.env[1], "B=x=y");
    assert_string_equal(o.env[2], "C=");
    assert_string_equal(o.kernel, "k");
    assert_string_equal(o.initrd, "i");
    assert_string_equal(o.append, "rdinit=/x");
    assert_true(o.keep_logs);
    /* Everything after "--" belongs to the command, even option-like words. */
    assert_int_equal(o.n_cmd, 3);
    assert_string_equal(o.cmd[1], "--mem");
    assert_string_equal(o.cmd[2], "-e");
    cli_run_opts_fini(&o);
}

static void test_cli_run_parse_bad_mem(void **state)
{
    (void)state;
    const char *bad[] = {"x",  "0",    "-5", "+5", " 5", "12abc", "", "99999999999999999999",
                         "63", "65537"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char *argv[] = {"run", "--mem", (char *)bad[i], "--", "true"};
        expect_error(ARGC(argv), argv, "--mem");
    }
    char *eq[] = {"run", "--mem=lots", "--", "true"};
    expect_error(ARGC(eq), eq, "'lots'");
}

static void test_cli_run_parse_bad_cpus_and_timeouts(void **state)
{
    (void)state;
    char *a[] = {"run", "--cpus", "0", "--", "true"};
    expect_error(ARGC(a), a, "--cpus");
    char *b[] = {"run", "--cpus", "65", "--", "true"};
    expect_error(ARGC(b), b, "--cpus");
    char *c[] = {"run", "--timeout", "1.5", "--", "true"};
    expect_error(ARGC(c), c, "--timeout");
    char *d[] = {"run", "--boot-timeout", "0", "--", "true"};
    expect_error(ARGC(d), d, "--boot-timeout");
}

static void test_cli_run_parse_missing_dashdash(void **state)
{
    (void)state;
    char *a[] = {"run", "echo", "hi"};
    expect_error(ARGC(a), a, "missing '--' before the command 'echo'");
    char *b[] = {"run", "--mem", "512"};
    expect_error(ARGC(b), b, "missing '--'");
    char *c[] = {"run"};
    expect_error(ARGC(c), c, "missing '--'");
}

static void test_cli_run_parse_no_command_after_dashdash(void **state)
{
    (void)state;
    char *a[] = {"run", "--cpus", "2", "--"};
    expect_error(ARGC(a), a, "no command");
}

static void test_cli_run_parse_env_without_equals(void **state)
{
    (void)state;
    char *a[] = {"run", "-e", "FOO", "--", "true"};
    expect_error(ARGC(a), a, "'FOO': expected NAME=VALUE");
    char *b[] = {"run", "-e", "=x", "--", "true"};
    expect_error(ARGC(b), b, "expected NAME=VALUE");
    char *c[] = {"run", "--env", "1A=x", "--", "true"};
    expect_error(ARGC(c), c, "expected NAME=VALUE");
    char *d[] = {"run", "-e", "A B=x", "--", "true"};
    expect_error(ARGC(d), d, "expected NAME=VALUE");
    /* A good -e before the bad one is not leaked (the struct comes back empty). */
    char *e[] = {"run", "-e", "OK=1", "-e", "BAD", "--", "true"};
    expect_error(ARGC(e), e, "'BAD'");
}

static void test_cli_run_parse_unknown_option(void **state)
{
    (void)state;
    char *a[] = {"run", "--workspace", "/tmp", "--", "true"};
    expect_error(ARGC(a), a, "unknown option '--workspace'");
    char *b[] = {"run", "-x", "--", "true"};
    expect_error(ARGC(b), b, "unknown option '-x'");
    /* Short -e takes no "=" form: "-e=A=1" is not an option we know. */
    char *c[] = {"run", "-e=A=1", "--", "true"};
    expect_error(ARGC(c), c, "unknown option");
}

static void test_cli_run_parse_option_without_value(void **state)
{
    (void)state;
    char *a[] = {"run", "--mem"};
    expect_error(ARGC(a), a, "--mem needs a value");
    char *b[] = {"run", "-e"};
    expect_error(ARGC(b), b, "-e needs a value");
}

static void test_cli_run_parse_help_needs_no_command(void **state)
{
    (void)state;
    char *argv[] = {"run", "--help"};
    struct cli_run_opts o;
    char err[256];
    assert_int_equal(cli_run_parse(ARGC(argv), argv, &o, err, sizeof(err)), 0);
    assert_true(o.help);
    cli_run_opts_fini(&o);
    assert_non_null(strstr(cli_run_usage(), "capsem run [OPTIONS] -- CMD"));
}

static void test_cli_run_main_usage_error_exit_2(void **state)
{
    (void)state;
    char *argv[] = {"run", "--mem", "abc", "--", "true"};
    assert_int_equal(cli_run_main(ARGC(argv), argv), CAPSEM_EXIT_USAGE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cli_run_parse_defaults),
        cmocka_unit_test(test_cli_run_parse_all_options),
        cmocka_unit_test(test_cli_run_parse_bad_mem),
        cmocka_unit_test(test_cli_run_parse_bad_cpus_and_timeouts),
        cmocka_unit_test(test_cli_run_parse_missing_dashdash),
        cmocka_unit_test(test_cli_run_parse_no_command_after_dashdash),
        cmocka_unit_test(test_cli_run_parse_env_without_equals),
        cmocka_unit_test(test_cli_run_parse_unknown_option),
        cmocka_unit_test(test_cli_run_parse_option_without_value),
        cmocka_unit_test(test_cli_run_parse_help_needs_no_command),
        cmocka_unit_test(test_cli_run_main_usage_error_exit_2),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
