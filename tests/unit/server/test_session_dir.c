/*
 * Unit tests for session directories and scratch disks (server/session_dir.c)
 * on real files. Bad input and what it gives:
 * - a session name with upper case, '_', '.', '/', a space, a leading or
 *   trailing '-', nothing, or over 63 characters: refused;
 * - a session path that is a symlink or a plain file: -ENOTDIR, and the
 *   symlink's target is left alone;
 * - a size that is not a number with an optional K/M/G/T(iB) suffix: -EINVAL;
 *   below 64 MiB or above 4 TiB (or overflowing): -ERANGE;
 * - a mkfs that is missing or fails: an error naming it, no file left;
 * - an old scratch file or a symlink where the scratch goes: replaced by a new
 *   file, the symlink's target untouched.
 */
#include "session_dir.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[256];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/capsem-test-session-XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void test_session_name_ok_shapes(void **state)
{
    (void)state;
    assert_true(session_name_ok("a"));
    assert_true(session_name_ok("web-2"));
    assert_true(session_name_ok("0123456789abcdef"));
    char max[64], over[65];
    memset(max, 'z', 63);
    max[63] = '\0';
    memset(over, 'z', 64);
    over[64] = '\0';
    assert_true(session_name_ok(max));
    const char *bad[] = {NULL, "",    "A",  "web_2", "web.2", "a/b",
                         "..", "a b", "-a", "a-",    "-",     over};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (session_name_ok(bad[i]))
            fail_msg("accepted '%s'", bad[i] ? bad[i] : "(null)");
}

static void test_session_id_random_is_hex_and_varies(void **state)
{
    (void)state;
    char a[SESSION_ID_HEX + 1], b[SESSION_ID_HEX + 1];
    assert_int_equal(session_id_random(a), 0);
    assert_int_equal(session_id_random(b), 0);
    assert_int_equal(strlen(a), SESSION_ID_HEX);
    assert_true(session_name_ok(a));
    assert_int_equal(strspn(a, "0123456789abcdef"), SESSION_ID_HEX);
    assert_string_not_equal(a, b);
}

static void test_session_dir_make_creates_then_reuses(void **state)
{
    (void)state;
    char d[600], ws[600], err[300];
    bool created = false;
    char home[300];
    snprintf(home, sizeof(home), "%s/home/deeper", dir); /* missing levels are made */
    assert_int_equal(
        session_dir_make(home, "s1", d, sizeof(d), ws, sizeof(ws), &created, err, sizeof(err)), 0);
    assert_true(created);
    char want[600];
    snprintf(want, sizeof(want), "%s/sessions/s1/workspace", home);
    assert_string_equal(ws, want);
    struct stat st;
    assert_int_equal(stat(ws, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    assert_int_equal(stat(d, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    assert_int_equal(
        session_dir_make(home, "s1", d, sizeof(d), ws, sizeof(ws), &created, err, sizeof(err)), 0);
    assert_false(created);
}

static void test_session_dir_make_refuses_symlink_and_file(void **state)
{
    (void)state;
    char d[600], ws[600], err[300], path[600], target[300];
    bool created = true;
    snprintf(path, sizeof(path), "%s/sessions", dir);
    assert_int_equal(mkdir(path, 0700), 0);
    snprintf(target, sizeof(target), "%s/elsewhere", dir);
    assert_int_equal(mkdir(target, 0700), 0);
    snprintf(path, sizeof(path), "%s/sessions/link", dir);
    assert_int_equal(symlink(target, path), 0);
    assert_int_equal(
        session_dir_make(dir, "link", d, sizeof(d), ws, sizeof(ws), &created, err, sizeof(err)),
        -ENOTDIR);
    assert_non_null(strstr(err, "cannot use session directory"));
    snprintf(path, sizeof(path), "%s/elsewhere/workspace", dir);
    assert_int_equal(access(path, F_OK), -1); /* nothing made through the link */
    snprintf(path, sizeof(path), "%s/sessions/file", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fclose(f);
    assert_int_equal(
        session_dir_make(dir, "file", d, sizeof(d), ws, sizeof(ws), &created, err, sizeof(err)),
        -ENOTDIR);
    assert_int_equal(
        session_dir_make(dir, "Bad", d, sizeof(d), ws, sizeof(ws), &created, err, sizeof(err)),
        -EINVAL);
}

static void test_session_size_parse_values(void **state)
{
    (void)state;
    unsigned long long b = 0;
    assert_int_equal(session_size_parse("4G", &b), 0);
    assert_true(b == 4ull << 30);
    assert_int_equal(session_size_parse("512M", &b), 0);
    assert_true(b == 512ull << 20);
    assert_int_equal(session_size_parse("64MiB", &b), 0);
    assert_true(b == 64ull << 20);
    assert_int_equal(session_size_parse("2GB", &b), 0);
    assert_true(b == 2ull << 30);
    assert_int_equal(session_size_parse("1T", &b), 0);
    assert_true(b == 1ull << 40);
    assert_int_equal(session_size_parse("1073741824", &b), 0);
    assert_true(b == 1ull << 30);
    assert_int_equal(session_size_parse("65536K", &b), 0);
    assert_true(b == 64ull << 20);
    const char *bad[] = {"", "G", "-1G", "+1G", " 1G", "1.5G", "1X", "1GG", "1Gi", "1 G", "0x10G"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (session_size_parse(bad[i], &b) != -EINVAL)
            fail_msg("'%s' not -EINVAL", bad[i]);
    const char *range[] = {"0", "63M", "1K", "5T", "99999999999999999999", "17179869184G"};
    for (size_t i = 0; i < sizeof(range) / sizeof(range[0]); i++)
        if (session_size_parse(range[i], &b) != -ERANGE)
            fail_msg("'%s' not -ERANGE", range[i]);
}

/* The ext4 superblock magic 0xEF53 at byte 1024 + 56. */
static bool is_ext4(const char *path)
{
    unsigned char m[2];
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return false;
    bool ok = pread(fd, m, 2, 1024 + 56) == 2 && m[0] == 0x53 && m[1] == 0xef;
    close(fd);
    return ok;
}

static void test_session_scratch_make_sparse_ext4(void **state)
{
    (void)state;
    if (access("/usr/sbin/mkfs.ext4", X_OK) != 0 && access("/sbin/mkfs.ext4", X_OK) != 0)
        skip(); /* e2fsprogs missing */
    char p[300], err[300];
    snprintf(p, sizeof(p), "%s/scratch.img", dir);
    /* An old file is replaced. */
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs("old", f);
    fclose(f);
    assert_int_equal(session_scratch_make(p, 1ull << 30, "mkfs.ext4", err, sizeof(err)), 0);
    struct stat st;
    assert_int_equal(stat(p, &st), 0);
    assert_true(st.st_size == (off_t)(1ull << 30));
    assert_int_equal(st.st_mode & 0777, 0600);
    /* Sparse: a 1 GiB disk takes well under 32 MiB on the host. */
    if ((unsigned long long)st.st_blocks * 512 >= (32ull << 20))
        fail_msg("scratch takes %llu bytes", (unsigned long long)st.st_blocks * 512);
    assert_true(is_ext4(p));
}

static void test_session_scratch_make_symlink_replaced(void **state)
{
    (void)state;
    if (access("/usr/sbin/mkfs.ext4", X_OK) != 0 && access("/sbin/mkfs.ext4", X_OK) != 0)
        skip();
    char p[300], target[300], err[300];
    snprintf(p, sizeof(p), "%s/scratch.img", dir);
    snprintf(target, sizeof(target), "%s/precious", dir);
    FILE *f = fopen(target, "w");
    assert_non_null(f);
    fputs("precious", f);
    fclose(f);
    assert_int_equal(symlink(target, p), 0);
    assert_int_equal(session_scratch_make(p, 64ull << 20, "mkfs.ext4", err, sizeof(err)), 0);
    struct stat st;
    assert_int_equal(lstat(p, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    assert_int_equal(stat(target, &st), 0);
    assert_int_equal(st.st_size, 8); /* the link's target was not formatted */
}

static void test_session_scratch_make_mkfs_missing_or_failing(void **state)
{
    (void)state;
    char p[300], err[300];
    snprintf(p, sizeof(p), "%s/scratch.img", dir);
    assert_int_equal(session_scratch_make(p, 64ull << 20, "/nonexistent/mkfs", err, sizeof(err)),
                     -ENOENT);
    assert_non_null(strstr(err, "cannot run /nonexistent/mkfs"));
    assert_int_equal(access(p, F_OK), -1);
    assert_int_equal(session_scratch_make(p, 64ull << 20, "/bin/false", err, sizeof(err)), -EIO);
    assert_non_null(strstr(err, "/bin/false failed (status 1)"));
    assert_int_equal(access(p, F_OK), -1);
    /* A directory that does not exist: said so, nothing made. */
    char q[400];
    snprintf(q, sizeof(q), "%s/missing/scratch.img", dir);
    assert_int_equal(session_scratch_make(q, 64ull << 20, "mkfs.ext4", err, sizeof(err)), -ENOENT);
    assert_non_null(strstr(err, "cannot create"));
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_session_name_ok_shapes),
        T(test_session_id_random_is_hex_and_varies),
        T(test_session_dir_make_creates_then_reuses),
        T(test_session_dir_make_refuses_symlink_and_file),
        T(test_session_size_parse_values),
        T(test_session_scratch_make_sparse_ext4),
        T(test_session_scratch_make_symlink_replaced),
        T(test_session_scratch_make_mkfs_missing_or_failing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
