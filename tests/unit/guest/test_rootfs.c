/*
 * capsem-init's disk-root switch on the host: the device name check, and
 * rootfs_switch() refusing bad input before it touches anything. A name
 * that is not "/dev/vd" plus letters gives -EINVAL at once; a well-formed
 * name with no such node gives -ENOENT after the 2 s wait; neither leaves a
 * mount or a copied agent behind. (The switch itself needs PID 1 in a VM:
 * kvm.rootfs.blk.)
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "rootfs.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
    assert_int_equal(rootfs_switch("/dev/sda", "/bin/sh", dst), -EINVAL);
    assert_int_equal(rootfs_switch("/dev/vda1", "/bin/sh", dst), -EINVAL);
    assert_int_equal(access(dst, F_OK), -1); /* nothing copied */
}

static void test_rootfs_switch_missing_disk_enoent(void **state)
{
    (void)state;
    char dst[64];
    snprintf(dst, sizeof(dst), "/tmp/rootfs-test-agent-%d", (int)getpid());
    /* No virtio disk with that many letters exists on a test host. */
    assert_int_equal(rootfs_switch("/dev/vdzzzzzz", "/bin/sh", dst), -ENOENT);
    assert_int_equal(access(dst, F_OK), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rootfs_device_ok_accepts_virtio_disks),
        cmocka_unit_test(test_rootfs_device_ok_refuses_others),
        cmocka_unit_test(test_rootfs_switch_bad_name_einval),
        cmocka_unit_test(test_rootfs_switch_missing_disk_enoent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
