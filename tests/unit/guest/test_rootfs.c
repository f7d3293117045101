/*
 * capsem-init's disk-root switch on the host: the device name check, and
 * rootfs_switch() refusing bad input before it touches anything. A name
 * that is not "/dev/vd" plus letters gives -EINVAL at once; a well-formed
 * name with no such node gives -ENOENT after the 2 s wait; neither leaves a
 * mount or a copied agent behind. (The switch itself needs PID 1 in a VM:
 * kvm.rootfs.blk.) The program check init runs before starting the agent:
 * only a root:root regular file of mode 0555 passes; a writable, set-id,
 * sticky or unexecutable mode, another owner or group, a symlink, a
 * directory or a missing file are each refused with their own error.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "rootfs.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A file in a fresh directory with `mode` and `uid:gid` (root only for other owners). */
static void make_program(char *path, size_t size, const char *dir, const char *name, mode_t mode,
                         uid_t uid, gid_t gid)
{
    snprintf(path, size, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("#!/bin/sh\n", f);
    fclose(f);
    assert_int_equal(chown(path, uid, gid), 0);
    assert_int_equal(chmod(path, mode), 0);
}

static void test_rootfs_program_check_accepts_root_0555(void **state)
{
    (void)state;
    if (geteuid() != 0)
        skip(); /* only root can make root-owned files */
    char dir[] = "/tmp/capsem-test-prog-XXXXXX", p[300];
    assert_non_null(mkdtemp(dir));
    make_program(p, sizeof(p), dir, "agent", 0555, 0, 0);
    assert_int_equal(rootfs_program_check(p), 0);
    /* rootfs_copy_program makes copies that pass. */
    char copy[300];
    snprintf(copy, sizeof(copy), "%s/copy", dir);
    assert_int_equal(rootfs_copy_program(p, copy), 0);
    assert_int_equal(rootfs_program_check(copy), 0);
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

static void test_rootfs_program_check_refuses_bad_programs(void **state)
{
    (void)state;
    if (geteuid() != 0)
        skip();
    char dir[] = "/tmp/capsem-test-prog-XXXXXX", p[300];
    assert_non_null(mkdtemp(dir));
    static const struct {
        const char *name;
        mode_t mode;
        uid_t uid;
        gid_t gid;
        int want;
    } cases[] = {
        {"writable", 0755, 0, 0, -EACCES},     {"group-writable", 0575, 0, 0, -EACCES},
        {"setuid", 04555, 0, 0, -EACCES},      {"setgid", 02555, 0, 0, -EACCES},
        {"sticky", 01555, 0, 0, -EACCES},      {"not-executable", 0444, 0, 0, -EACCES},
        {"user-owned", 0555, 1000, 0, -EPERM}, {"group-owned", 0555, 0, 1000, -EPERM},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        make_program(p, sizeof(p), dir, cases[i].name, cases[i].mode, cases[i].uid, cases[i].gid);
        if (rootfs_program_check(p) != cases[i].want)
            fail_msg("%s: got %d, want %d", cases[i].name, rootfs_program_check(p), cases[i].want);
    }
    /* A symlink to a good program is refused (not followed), as are a directory and nothing. */
    make_program(p, sizeof(p), dir, "good", 0555, 0, 0);
    char link[300];
    snprintf(link, sizeof(link), "%s/link", dir);
    assert_int_equal(symlink(p, link), 0);
    assert_int_equal(rootfs_program_check(link), -ELOOP);
    assert_int_equal(rootfs_program_check(dir), -ENOEXEC);
    snprintf(link, sizeof(link), "%s/missing", dir);
    assert_int_equal(rootfs_program_check(link), -ENOENT);
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

static void test_rootfs_device_ok_accepts_virtio_disks(void **state)
{
    (void)state;
    assert_true(rootfs_device_ok("/dev/vda"));
    assert_true(rootfs_device_ok("/dev/vdb"));
    assert_true(rootfs_device_ok("/dev/vdaa"));
}

static void test_rootfs_device_ok_refuses_others(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",          "/dev/vd",         "/dev/sda",  "/dev/vda1",
        "/dev/vdA",  "dev/vda",         "/dev/vd/a", "/dev/vda ",
        "/dev/vd-a", "/dev/vda/../sda", "/dev/xvda", "/dev/vdaaaaaaaaaaaaaaa",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (rootfs_device_ok(bad[i]))
            fail_msg("accepted \"%s\"", bad[i]);
}

static void test_rootfs_switch_bad_name_einval(void **state)
{
    (void)state;
    char dst[64];
    snprintf(dst, sizeof(dst), "/tmp/rootfs-test-agent-%d", (int)getpid());
    assert_int_equal(rootfs_switch("/dev/sda", NULL, "/bin/sh", dst), -EINVAL);
    assert_int_equal(rootfs_switch("/dev/vda1", "/dev/vdb", "/bin/sh", dst), -EINVAL);
    assert_int_equal(access(dst, F_OK), -1); /* nothing copied */
}

static void test_rootfs_switch_missing_disk_enoent(void **state)
{
    (void)state;
    char dst[64];
    snprintf(dst, sizeof(dst), "/tmp/rootfs-test-agent-%d", (int)getpid());
    /* No virtio disk with that many letters exists on a test host. */
    assert_int_equal(rootfs_switch("/dev/vdzzzzzz", NULL, "/bin/sh", dst), -ENOENT);
    assert_int_equal(access(dst, F_OK), -1);
}

static void write_text(const char *path, const char *text, mode_t mode)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    assert_int_equal(chmod(path, mode), 0);
}

static void read_text(const char *path, char *buf, size_t len)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    size_t n = fread(buf, 1, len - 1, f);
    buf[n] = '\0';
    fclose(f);
}

/*
 * The image's home seeds a workspace: missing entries are copied whole (files with
 * their modes, directories, symlinks as they are), what the workspace has is kept,
 * set-id bits are dropped, a file over 1 MiB and a fifo are not copied.
 */
static void test_rootfs_seed_home_copies_what_is_missing(void **state)
{
    (void)state;
    char skel[] = "/tmp/capsem-skel-XXXXXX", home[] = "/tmp/capsem-home-XXXXXX";
    assert_non_null(mkdtemp(skel));
    assert_non_null(mkdtemp(home));
    char p[512], buf[256];
    snprintf(p, sizeof(p), "%s/.codex", skel);
    assert_int_equal(mkdir(p, 0700), 0);
    snprintf(p, sizeof(p), "%s/.codex/config.toml", skel);
    write_text(p, "approval_policy = \"never\"\n", 0600);
    snprintf(p, sizeof(p), "%s/.bashrc", skel);
    write_text(p, "image bashrc\n", 0644);
    snprintf(p, sizeof(p), "%s/tool", skel);
    write_text(p, "#!/bin/sh\n", 04755);
    snprintf(p, sizeof(p), "%s/link", skel);
    assert_int_equal(symlink("/etc/passwd", p), 0);
    snprintf(p, sizeof(p), "%s/fifo", skel);
    assert_int_equal(mkfifo(p, 0644), 0);
    snprintf(p, sizeof(p), "%s/big", skel);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    assert_int_equal(fseek(f, (2 << 20) - 1, SEEK_SET), 0);
    fputc('x', f);
    fclose(f);
    /* The workspace already has its own .bashrc. */
    snprintf(p, sizeof(p), "%s/.bashrc", home);
    write_text(p, "user bashrc\n", 0644);

    int s = open(skel, O_RDONLY | O_DIRECTORY);
    int h = open(home, O_RDONLY | O_DIRECTORY);
    assert_true(s >= 0 && h >= 0);
    assert_int_equal(rootfs_seed_home(s, h), 0);
    struct stat st;
    snprintf(p, sizeof(p), "%s/.codex/config.toml", home);
    read_text(p, buf, sizeof(buf));
    assert_string_equal(buf, "approval_policy = \"never\"\n");
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    snprintf(p, sizeof(p), "%s/.bashrc", home);
    read_text(p, buf, sizeof(buf));
    assert_string_equal(buf, "user bashrc\n");
    snprintf(p, sizeof(p), "%s/tool", home);
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0755);
    snprintf(p, sizeof(p), "%s/link", home);
    ssize_t n = readlink(p, buf, sizeof(buf) - 1);
    assert_int_equal(n, 11);
    buf[n] = '\0';
    assert_string_equal(buf, "/etc/passwd");
    snprintf(p, sizeof(p), "%s/fifo", home);
    assert_int_equal(lstat(p, &st), -1);
    snprintf(p, sizeof(p), "%s/big", home);
    assert_int_equal(lstat(p, &st), -1);
    /* A second boot changes nothing: everything is there now. */
    snprintf(p, sizeof(p), "%s/.codex/config.toml", home);
    write_text(p, "edited by the user\n", 0600);
    assert_int_equal(rootfs_seed_home(s, h), 0);
    read_text(p, buf, sizeof(buf));
    assert_string_equal(buf, "edited by the user\n");
    close(s);
    close(h);
    snprintf(p, sizeof(p), "rm -rf '%s' '%s'", skel, home);
    assert_int_equal(system(p), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rootfs_program_check_accepts_root_0555),
        cmocka_unit_test(test_rootfs_program_check_refuses_bad_programs),
        cmocka_unit_test(test_rootfs_device_ok_accepts_virtio_disks),
        cmocka_unit_test(test_rootfs_device_ok_refuses_others),
        cmocka_unit_test(test_rootfs_switch_bad_name_einval),
        cmocka_unit_test(test_rootfs_switch_missing_disk_enoent),
        cmocka_unit_test(test_rootfs_seed_home_copies_what_is_missing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
