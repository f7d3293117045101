/*
 * Unit tests for daemon authentication (server/auth.c) on real files and a
 * fake clock. Bad input and what it gives:
 * - a token file with any group/other permission, not a regular file, a
 *   symlink, or not 64 hex digits: refused with a reason, file untouched;
 * - a Bearer value with the wrong token, a short one, another scheme: false;
 * - a login code unknown, expired (after 10 min) or used: -EACCES;
 * - a cookie whose session is unknown or past 24 h: false;
 * - a Host that only starts or ends like a loopback name, or has another
 *   port: false; an Origin with another scheme, host or port: false.
 */
#include "auth.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdbool.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[256];
static time_t fake_now = 1000;

static time_t fake_clock(void)
{
    return fake_now;
}

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/capsem-test-auth-XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void write_token(const char *home, const char *text, mode_t mode)
{
    char path[512];
    mkdir(home, 0700);
    snprintf(path, sizeof(path), "%s/token", home);
    unlink(path);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    assert_int_equal(fchmod(fd, mode), 0);
    close(fd);
}

static void test_auth_create_makes_token_0600(void **state)
{
    (void)state;
    char home[300], path[400], err[256], buf[128] = {0};
    struct auth *a = NULL, *b = NULL;
    snprintf(home, sizeof(home), "%s/new-home", dir);
    assert_int_equal(auth_create(home, &a, err, sizeof(err)), 0);
    snprintf(path, sizeof(path), "%s/token", home);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(stat(home, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    int fd = open(path, O_RDONLY);
    assert_int_equal(read(fd, buf, sizeof(buf) - 1), AUTH_SECRET_HEX + 1);
    close(fd);
    assert_int_equal(strlen(auth_token(a)), AUTH_SECRET_HEX);
    assert_memory_equal(buf, auth_token(a), AUTH_SECRET_HEX);
    /* The second run reads the same token. */
    assert_int_equal(auth_create(home, &b, err, sizeof(err)), 0);
    assert_string_equal(auth_token(a), auth_token(b));
    auth_destroy(a);
    auth_destroy(b);
    auth_destroy(NULL);
}

static void test_auth_create_refuses_bad_token_file(void **state)
{
    (void)state;
    char home[300], err[256];
    struct auth *a = NULL;
    const char *good = "0123456789abcdef0123456789abcdef0123456789ABCDEF0123456789abcdef\n";
    snprintf(home, sizeof(home), "%s/bad-home", dir);
    write_token(home, good, 0644);
    assert_int_equal(auth_create(home, &a, err, sizeof(err)), -EPERM);
    assert_non_null(strstr(err, "chmod 600"));
    assert_null(a);
    write_token(home, good, 0640);
    assert_int_equal(auth_create(home, &a, err, sizeof(err)), -EPERM);
    write_token(home, good, 0602);
    assert_int_equal(auth_create(home, &a, err, sizeof(err)), -EPERM);
    write_token(home, "short\n", 0600);
    assert_int_equal(auth_create(home, &a, err, sizeof(err)), -EINVAL);
    write_token(home, "", 0600);
    assert_int_equal(auth_create(home, &a, err, sizeof(err)), -EINVAL);
    write_token(home, "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdeg", 0600);
    assert_int_equal(auth_create(home, &a, err, sizeof(err)), -EINVAL);
    write_token(home, "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0", 0600);
    assert_int_equal(auth_create(home, &a, err, sizeof(err)), -EINVAL);
    /* A symlink is not followed. */
    char path[400], target[400];
    snprintf(path, sizeof(path), "%s/token", home);
    snprintf(target, sizeof(target), "%s/elsewhere", dir);
    write_token(dir, good, 0600);
    snprintf(target, sizeof(target), "%s/token", dir);
    unlink(path);
    assert_int_equal(symlink(target, path), 0);
    assert_int_not_equal(auth_create(home, &a, err, sizeof(err)), 0);
    /* A directory is not a token. */
    unlink(path);
    assert_int_equal(mkdir(path, 0700), 0);
    assert_int_not_equal(auth_create(home, &a, err, sizeof(err)), 0);
    rmdir(path);
    /* Upper-case hex is fine and read as lower case. */
    write_token(home, good, 0600);
    assert_int_equal(auth_create(home, &a, err, sizeof(err)), 0);
    assert_string_equal(auth_token(a),
                        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
    auth_destroy(a);
}

static struct auth *make_auth(const char *name)
{
    char home[300], err[256];
    struct auth *a = NULL;
    snprintf(home, sizeof(home), "%s/%s", dir, name);
    assert_int_equal(auth_create(home, &a, err, sizeof(err)), 0);
    auth_set_clock(a, fake_clock);
    return a;
}

static void test_auth_bearer_ok_variants(void **state)
{
    (void)state;
    struct auth *a = make_auth("bearer");
    char h[160];
    snprintf(h, sizeof(h), "Bearer %s", auth_token(a));
    assert_true(auth_bearer_ok(a, h));
    snprintf(h, sizeof(h), "bearer %s", auth_token(a));
    assert_true(auth_bearer_ok(a, h));
    snprintf(h, sizeof(h), "Bearer %s ", auth_token(a));
    assert_true(auth_bearer_ok(a, h));
    snprintf(h, sizeof(h), "Bearer %sa", auth_token(a));
    assert_false(auth_bearer_ok(a, h));
    snprintf(h, sizeof(h), "Bearer %.63s", auth_token(a));
    assert_false(auth_bearer_ok(a, h));
    snprintf(h, sizeof(h), "Token %s", auth_token(a));
    assert_false(auth_bearer_ok(a, h));
    assert_false(auth_bearer_ok(a, "Bearer "));
    assert_false(auth_bearer_ok(a, ""));
    assert_false(auth_bearer_ok(a, NULL));
    auth_destroy(a);
}

static void test_auth_code_redeem_once_and_expiry(void **state)
{
    (void)state;
    struct auth *a = make_auth("codes");
    char code[AUTH_SECRET_HEX + 1], s1[AUTH_SECRET_HEX + 1], s2[AUTH_SECRET_HEX + 1];
    assert_int_equal(auth_code_new(a, 0, code), -EINVAL);
    assert_int_equal(auth_code_new(a, AUTH_CODE_TTL_S + 1, code), -EINVAL);
    assert_int_equal(auth_code_new(a, AUTH_CODE_TTL_S, code), 0);
    assert_int_equal(auth_code_redeem(a, code, s1), 0);
    assert_int_equal(auth_code_redeem(a, code, s2), -EACCES);
    assert_int_equal(auth_code_redeem(a, NULL, s2), -EACCES);
    assert_int_equal(auth_code_redeem(a, "", s2), -EACCES);
    /* A code that was never issued (the token is not a code). */
    assert_int_equal(auth_code_redeem(a, auth_token(a), s2), -EACCES);
    /* Expiry: valid at 599 s, gone at 600 s. */
    assert_int_equal(auth_code_new(a, AUTH_CODE_TTL_S, code), 0);
    fake_now += AUTH_CODE_TTL_S - 1;
    char keep[AUTH_SECRET_HEX + 1];
    memcpy(keep, code, sizeof(keep));
    assert_int_equal(auth_code_new(a, AUTH_CODE_TTL_S, code), 0);
    fake_now += 1;
    assert_int_equal(auth_code_redeem(a, keep, s2), -EACCES);
    assert_int_equal(auth_code_redeem(a, code, s2), 0);
    assert_string_not_equal(s1, s2);
    /* More codes than slots: the oldest is dropped, the newest all work. */
    char many[AUTH_MAX_CODES + 1][AUTH_SECRET_HEX + 1];
    for (int i = 0; i <= AUTH_MAX_CODES; i++) {
        fake_now += 1;
        assert_int_equal(auth_code_new(a, AUTH_CODE_TTL_S, many[i]), 0);
    }
    assert_int_equal(auth_code_redeem(a, many[0], s2), -EACCES);
    for (int i = 1; i <= AUTH_MAX_CODES; i++)
        assert_int_equal(auth_code_redeem(a, many[i], s2), 0);
    auth_destroy(a);
}

static void test_auth_cookie_ok_sessions(void **state)
{
    (void)state;
    struct auth *a = make_auth("cookies");
    char code[AUTH_SECRET_HEX + 1], s[AUTH_SECRET_HEX + 1], c[256];
    assert_int_equal(auth_code_new(a, 60, code), 0);
    assert_int_equal(auth_code_redeem(a, code, s), 0);
    snprintf(c, sizeof(c), "%s=%s", AUTH_COOKIE_NAME, s);
    assert_true(auth_cookie_ok(a, c));
    snprintf(c, sizeof(c), "theme=dark; %s=%s; x=y", AUTH_COOKIE_NAME, s);
    assert_true(auth_cookie_ok(a, c));
    snprintf(c, sizeof(c), "x%s=%s", AUTH_COOKIE_NAME, s);
    assert_false(auth_cookie_ok(a, c));
    snprintf(c, sizeof(c), "%s=%s", AUTH_COOKIE_NAME, auth_token(a));
    assert_false(auth_cookie_ok(a, c));
    snprintf(c, sizeof(c), "%s=", AUTH_COOKIE_NAME);
    assert_false(auth_cookie_ok(a, c));
    assert_false(auth_cookie_ok(a, NULL));
    assert_false(auth_cookie_ok(a, ""));
    /* Sessions end after 24 hours. */
    snprintf(c, sizeof(c), "%s=%s", AUTH_COOKIE_NAME, s);
    fake_now += AUTH_SESSION_TTL_S - 1;
    assert_true(auth_cookie_ok(a, c));
    fake_now += 1;
    assert_false(auth_cookie_ok(a, c));
    auth_destroy(a);
}

static void test_auth_host_ok_names(void **state)
{
    (void)state;
    const char *allow[] = {"box.lan"};
    assert_true(auth_host_ok("localhost", 7878, NULL, 0));
    assert_true(auth_host_ok("localhost:7878", 7878, NULL, 0));
    assert_true(auth_host_ok("LocalHost:7878", 7878, NULL, 0));
    assert_true(auth_host_ok("127.0.0.1:7878", 7878, NULL, 0));
    assert_true(auth_host_ok("[::1]:7878", 7878, NULL, 0));
    assert_true(auth_host_ok("box.lan:7878", 7878, allow, 1));
    assert_false(auth_host_ok("box.lan:7878", 7878, NULL, 0));
    assert_false(auth_host_ok("localhost:7879", 7878, NULL, 0));
    assert_false(auth_host_ok("localhost:", 7878, NULL, 0));
    assert_false(auth_host_ok("localhost:07878", 7878, NULL, 0));
    assert_false(auth_host_ok("localhost.evil.example", 7878, NULL, 0));
    assert_false(auth_host_ok("evil-localhost", 7878, NULL, 0));
    assert_false(auth_host_ok("127.0.0.1.nip.io", 7878, NULL, 0));
    assert_false(auth_host_ok("::1", 7878, NULL, 0));
    assert_false(auth_host_ok("", 7878, NULL, 0));
    assert_false(auth_host_ok(NULL, 7878, NULL, 0));
}

static void test_auth_origin_ok_exact(void **state)
{
    (void)state;
    assert_true(auth_origin_ok("http://localhost:7878", "localhost:7878"));
    assert_true(auth_origin_ok("HTTP://LOCALHOST:7878", "localhost:7878"));
    assert_false(auth_origin_ok("https://localhost:7878", "localhost:7878"));
    assert_false(auth_origin_ok("http://localhost:7879", "localhost:7878"));
    assert_false(auth_origin_ok("http://127.0.0.1:7878", "localhost:7878"));
    assert_false(auth_origin_ok("http://localhost:7878/", "localhost:7878"));
    assert_false(auth_origin_ok("null", "localhost:7878"));
    assert_false(auth_origin_ok(NULL, "localhost:7878"));
    assert_false(auth_origin_ok("http://localhost:7878", NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_auth_create_makes_token_0600),
        cmocka_unit_test(test_auth_create_refuses_bad_token_file),
        cmocka_unit_test(test_auth_bearer_ok_variants),
        cmocka_unit_test(test_auth_code_redeem_once_and_expiry),
        cmocka_unit_test(test_auth_cookie_ok_sessions),
        cmocka_unit_test(test_auth_host_ok_names),
        cmocka_unit_test(test_auth_origin_ok_exact),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
