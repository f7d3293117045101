/*
 * Kernel command line builder: pieces are joined by single spaces, empty
 * pieces change nothing, a piece that would push the line past 2047
 * characters is refused and leaves the line as it was, and control
 * characters (a newline would end the line early for some parsers) are refused.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "cmdline.h"

static void test_vmm_cmdline_append_joins(void **state)
{
    (void)state;
    struct vmm_cmdline c;
    vmm_cmdline_init(&c);
    assert_string_equal(c.buf, "");
    assert_int_equal(vmm_cmdline_append(&c, VMM_CMDLINE_BASE), 0);
    assert_int_equal(vmm_cmdline_append(&c, ""), 0);
    assert_int_equal(vmm_cmdline_append(&c, "virtio_mmio.device=4K@0xd0000000:5"), 0);
    assert_int_equal(vmm_cmdline_append(&c, "rdinit=/bin/sh"), 0);
    assert_string_equal(c.buf,
                        VMM_CMDLINE_BASE " virtio_mmio.device=4K@0xd0000000:5 rdinit=/bin/sh");
    assert_int_equal(c.len, strlen(c.buf));
}

static void test_vmm_cmdline_append_too_long(void **state)
{
    (void)state;
    struct vmm_cmdline c;
    vmm_cmdline_init(&c);
    char *big = malloc(VMM_CMDLINE_MAX + 1);
    assert_non_null(big);
    memset(big, 'x', VMM_CMDLINE_MAX - 1);
    big[VMM_CMDLINE_MAX - 1] = '\0';
    assert_int_equal(vmm_cmdline_append(&c, big), 0); /* 2047 fits exactly */
    assert_int_equal(c.len, VMM_CMDLINE_MAX - 1);
    assert_int_equal(vmm_cmdline_append(&c, "y"), -E2BIG);
    assert_int_equal(c.len, VMM_CMDLINE_MAX - 1); /* unchanged */

    vmm_cmdline_init(&c);
    assert_int_equal(vmm_cmdline_append(&c, "abc"), 0);
    big[VMM_CMDLINE_MAX - 5] = '\0'; /* "abc" + ' ' + 2043 = 2047: fits */
    assert_int_equal(vmm_cmdline_append(&c, big), 0);
    vmm_cmdline_init(&c);
    assert_int_equal(vmm_cmdline_append(&c, "abcd"), 0);
    assert_int_equal(vmm_cmdline_append(&c, big), -E2BIG); /* one over */
    assert_string_equal(c.buf, "abcd");
    free(big);
}

static void test_vmm_cmdline_append_control_chars(void **state)
{
    (void)state;
    struct vmm_cmdline c;
    vmm_cmdline_init(&c);
    assert_int_equal(vmm_cmdline_append(&c, "a"), 0);
    assert_int_equal(vmm_cmdline_append(&c, "init=/x\nroot=/dev/y"), -EINVAL);
    assert_int_equal(vmm_cmdline_append(&c, "tab\there"), -EINVAL);
    assert_string_equal(c.buf, "a");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vmm_cmdline_append_joins),
        cmocka_unit_test(test_vmm_cmdline_append_too_long),
        cmocka_unit_test(test_vmm_cmdline_append_control_chars),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
