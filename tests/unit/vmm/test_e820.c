/*
 * e820 map for small memory, memory that crosses the 3 GiB hole, and large
 * memory; plus the errors: too little RAM and too small an output table.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "boot.h"

static void expect(const struct x86_e820_entry *e, uint64_t addr, uint64_t size, uint32_t type)
{
    assert_int_equal(e->addr, addr);
    assert_int_equal(e->size, size);
    assert_int_equal(e->type, type);
}

static void test_x86_e820_build_small(void **state)
{
    (void)state;
    struct x86_e820_entry map[8];
    unsigned n = 0;
    assert_int_equal(x86_e820_build(128ull << 20, map, 8, &n), 0);
    assert_int_equal(n, 3);
    expect(&map[0], 0, 0x9fc00, X86_E820_RAM);
    expect(&map[1], 0x9fc00, 0x100000 - 0x9fc00, X86_E820_RESERVED);
    expect(&map[2], 0x100000, (128ull << 20) - 0x100000, X86_E820_RAM);
}

static void test_x86_e820_build_exactly_3g(void **state)
{
    (void)state;
    struct x86_e820_entry map[8];
    unsigned n = 0;
    assert_int_equal(x86_e820_build(3ull << 30, map, 8, &n), 0);
    assert_int_equal(n, 3); /* nothing above the hole */
    expect(&map[2], 0x100000, (3ull << 30) - 0x100000, X86_E820_RAM);
}

static void test_x86_e820_build_crossing_3g(void **state)
{
    (void)state;
    struct x86_e820_entry map[8];
    unsigned n = 0;
    uint64_t mem = (3ull << 30) + (256ull << 20);
    assert_int_equal(x86_e820_build(mem, map, 8, &n), 0);
    assert_int_equal(n, 4);
    expect(&map[2], 0x100000, VMM_MEM_HOLE_START - 0x100000, X86_E820_RAM);
    expect(&map[3], VMM_MEM_HIGH_START, 256ull << 20, X86_E820_RAM);
}

static void test_x86_e820_build_large(void **state)
{
    (void)state;
    struct x86_e820_entry map[8];
    unsigned n = 0;
    uint64_t mem = 64ull << 30;
    assert_int_equal(x86_e820_build(mem, map, 8, &n), 0);
    assert_int_equal(n, 4);
    expect(&map[3], VMM_MEM_HIGH_START, mem - VMM_MEM_HOLE_START, X86_E820_RAM);
    /* RAM entries add up to the guest's memory minus the reserved EBDA/BIOS area */
    uint64_t ram = 0;
    for (unsigned i = 0; i < n; i++)
        if (map[i].type == X86_E820_RAM)
            ram += map[i].size;
    assert_int_equal(ram, mem - (0x100000 - 0x9fc00));
}

static void test_x86_e820_build_errors(void **state)
{
    (void)state;
    struct x86_e820_entry map[8];
    unsigned n = 77;
    assert_int_equal(x86_e820_build(1ull << 20, map, 8, &n), -EINVAL);
    assert_int_equal(x86_e820_build(8ull << 30, map, 3, &n), -ENOSPC);
    assert_int_equal(n, 77); /* out-param untouched on error */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_x86_e820_build_small),
        cmocka_unit_test(test_x86_e820_build_exactly_3g),
        cmocka_unit_test(test_x86_e820_build_crossing_3g),
        cmocka_unit_test(test_x86_e820_build_large),
        cmocka_unit_test(test_x86_e820_build_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
