/*
 * Unit tests for `capsem serve` option parsing (server/cli_serve.c). Bad
 * input and what it gives: --listen without a port, with a name instead of
 * a numeric address, a port over 65535 or signed, or a missing value;
 * --allow-host empty or with a space, '/' or '@', or more than 16 of them;
 * an unknown argument: -EINVAL with a reason. A non-loopback --listen
 * parses (loopback=false) so that the caller can warn.
 */
#include "cli_serve.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

static int parse(struct cli_serve_opts *o, int argc, char **argv)
{
    char err[256] = "";
    int rc = cli_serve_parse(argc, argv, o, err, sizeof(err));
    if (rc < 0)
        assert_true(err[0] != '\0');
    return rc;
}

static void test_cli_serve_parse_defaults(void **state)
{
    (void)state;
    struct cli_serve_opts o;
    char *argv[] = {"serve"};
    assert_int_equal(parse(&o, 1, argv), 0);
    assert_string_equal(o.addr, "127.0.0.1");
    assert_int_equal(o.port, 7878);
    assert_true(o.loopback);
    assert_false(o.listen_given);
    assert_int_equal(o.nallow, 0);
}

static void test_cli_serve_parse_listen_forms(void **state)
{
    (void)state;
    struct cli_serve_opts o;
    char *a1[] = {"serve", "--listen", "127.0.0.2:0"};
    assert_int_equal(parse(&o, 3, a1), 0);
    assert_string_equal(o.addr, "127.0.0.2");
    assert_int_equal(o.port, 0);
    assert_true(o.loopback && o.listen_given);
    char *a2[] = {"serve", "--listen", "[::1]:9000"};
    assert_int_equal(parse(&o, 3, a2), 0);
    assert_string_equal(o.addr, "::1");
    assert_int_equal(o.port, 9000);
    assert_true(o.loopback);
    char *a3[] = {"serve", "--listen", "0.0.0.0:7878", "--allow-host", "box.lan"};
    assert_int_equal(parse(&o, 5, a3), 0);
    assert_false(o.loopback);
    assert_int_equal(o.nallow, 1);
    assert_string_equal(o.allow[0], "box.lan");
    char *a4[] = {"serve", "--listen", "[::]:7878"};
    assert_int_equal(parse(&o, 3, a4), 0);
    assert_false(o.loopback);
}

static void test_cli_serve_parse_bad(void **state)
{
    (void)state;
    struct cli_serve_opts o;
    const char *bad_listen[] = {"127.0.0.1",    "localhost:7878", "127.0.0.1:", "127.0.0.1:70000",
                                "127.0.0.1:-1", "127.0.0.1:+1",   "::1:7878",   "[::1]7878",
                                ":7878",        "127.0.0.1:80x"};
    for (size_t i = 0; i < sizeof(bad_listen) / sizeof(bad_listen[0]); i++) {
        char *argv[] = {"serve", "--listen", (char *)bad_listen[i]};
        assert_int_equal(parse(&o, 3, argv), -EINVAL);
    }
    char *a1[] = {"serve", "--listen"};
    assert_int_equal(parse(&o, 2, a1), -EINVAL);
    char *a2[] = {"serve", "--bogus"};
    assert_int_equal(parse(&o, 2, a2), -EINVAL);
    const char *bad_host[] = {"", "a b", "a/b", "u@h"};
    for (size_t i = 0; i < sizeof(bad_host) / sizeof(bad_host[0]); i++) {
        char *argv[] = {"serve", "--allow-host", (char *)bad_host[i]};
        assert_int_equal(parse(&o, 3, argv), -EINVAL);
    }
    char *many[2 + 2 * (CLI_SERVE_ALLOW_MAX + 1)];
    int n = 0;
    many[n++] = "serve";
    for (int i = 0; i <= CLI_SERVE_ALLOW_MAX; i++) {
        many[n++] = "--allow-host";
        many[n++] = "h";
    }
    assert_int_equal(parse(&o, n - 2, many), 0);
    assert_int_equal(parse(&o, n, many), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cli_serve_parse_defaults),
        cmocka_unit_test(test_cli_serve_parse_listen_forms),
        cmocka_unit_test(test_cli_serve_parse_bad),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
