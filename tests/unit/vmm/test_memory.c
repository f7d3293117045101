/*
 * Guest memory accessor: in-bounds ranges get pointers, anything touching a
 * byte outside RAM, crossing from one region to the other, or overflowing
 * gpa+len gets NULL. The 3 GiB layout split is checked with a fake base
 * (no access through it), since a 4 GiB buffer is too big for a unit test.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "memory.h"

static void test_vmm_mem_ptr_inside(void **state)
{
    (void)state;
    static uint8_t buf[4096];
    struct vmm_mem m;
    vmm_mem_init_buffer(&m, buf, sizeof(buf));
    assert_ptr_equal(vmm_mem_ptr(&m, 0, 4096), buf);
    assert_ptr_equal(vmm_mem_ptr(&m, 100, 8), buf + 100);
    assert_ptr_equal(vmm_mem_ptr(&m, 4095, 1), buf + 4095);
    /* len 0 at the very end is a valid empty range */
    assert_ptr_equal(vmm_mem_ptr(&m, 4096, 0), buf + 4096);
}

static void test_vmm_mem_ptr_outside(void **state)
{
    (void)state;
    static uint8_t buf[4096];
    struct vmm_mem m;
    vmm_mem_init_buffer(&m, buf, sizeof(buf));
    assert_null(vmm_mem_ptr(&m, 4095, 2)); /* last byte past the end */
    assert_null(vmm_mem_ptr(&m, 4096, 1));
    assert_null(vmm_mem_ptr(&m, 4097, 0));
    assert_null(vmm_mem_ptr(&m, 0, 4097));
    assert_null(vmm_mem_ptr(&m, 0x100000000ull, 1));
}

static void test_vmm_mem_ptr_overflow(void **state)
{
    (void)state;
    static uint8_t buf[4096];
    struct vmm_mem m;
    vmm_mem_init_buffer(&m, buf, sizeof(buf));
    assert_null(vmm_mem_ptr(&m, 16, UINT64_MAX));
    assert_null(vmm_mem_ptr(&m, UINT64_MAX, 2));
    assert_null(vmm_mem_ptr(&m, UINT64_MAX - 1, UINT64_MAX));
}

static void test_vmm_mem_init_buffer_regions(void **state)
{
    (void)state;
    /* Layout only: the fake base is never dereferenced. */
    uint8_t *fake = (uint8_t *)(uintptr_t)0x10000000ull;
    struct vmm_mem m;
    vmm_mem_init_buffer(&m, fake, 4ull << 30);
    assert_int_equal(m.nregions, 2);
    assert_int_equal(m.regions[0].gpa, 0);
    assert_int_equal(m.regions[0].size, VMM_MEM_HOLE_START);
    assert_int_equal(m.regions[1].gpa, VMM_MEM_HIGH_START);
    assert_int_equal(m.regions[1].size, (4ull << 30) - VMM_MEM_HOLE_START);
    assert_ptr_equal(m.regions[1].host, fake + VMM_MEM_HOLE_START);
    /* hole: nothing maps there */
    assert_null(vmm_mem_ptr(&m, VMM_MEM_HOLE_START, 1));
    assert_null(vmm_mem_ptr(&m, 0xfec00000ull, 4));
    /* last low byte and first high byte */
    assert_ptr_equal(vmm_mem_ptr(&m, VMM_MEM_HOLE_START - 1, 1), fake + VMM_MEM_HOLE_START - 1);
    assert_ptr_equal(vmm_mem_ptr(&m, VMM_MEM_HIGH_START, 1), fake + VMM_MEM_HOLE_START);
    /* crossing the hole is refused even though host memory is contiguous */
    assert_null(vmm_mem_ptr(&m, VMM_MEM_HOLE_START - 1, 2));
    assert_null(vmm_mem_ptr(&m, VMM_MEM_HOLE_START - 8, VMM_MEM_HIGH_START));
    /* end of the high region */
    uint64_t end = VMM_MEM_HIGH_START + m.regions[1].size;
    assert_non_null(vmm_mem_ptr(&m, end - 8, 8));
    assert_null(vmm_mem_ptr(&m, end - 8, 9));
}

static void test_vmm_mem_init_small(void **state)
{
    (void)state;
    struct vmm_mem m;
    assert_int_equal(vmm_mem_init(&m, 1 << 20), 0);
    assert_int_equal(m.nregions, 1);
    uint8_t *p = vmm_mem_ptr(&m, (1 << 20) - 1, 1);
    assert_non_null(p);
    *p = 0x5a; /* the mapping is writable */
    assert_int_equal(*p, 0x5a);
    vmm_mem_fini(&m);
    assert_int_equal(m.nregions, 0);
    vmm_mem_fini(&m); /* a finished (zeroed) struct is accepted */
}

static void test_vmm_mem_init_bad_size(void **state)
{
    (void)state;
    struct vmm_mem m;
    assert_int_equal(vmm_mem_init(&m, 0), -EINVAL);
    assert_int_equal(vmm_mem_init(&m, 4097), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vmm_mem_ptr_inside),
        cmocka_unit_test(test_vmm_mem_ptr_outside),
        cmocka_unit_test(test_vmm_mem_ptr_overflow),
        cmocka_unit_test(test_vmm_mem_init_buffer_regions),
        cmocka_unit_test(test_vmm_mem_init_small),
        cmocka_unit_test(test_vmm_mem_init_bad_size),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
