/*
 * MMIO bus: registration refuses overlaps, empty or wrapping windows and a
 * full table; dispatch hands the device its window-relative offset, and
 * accesses nobody claims (including ones straddling a window's end) read as
 * zeros and report false.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "mmio.h"

struct rec {
    uint64_t offset;
    uint32_t len;
    bool is_write;
    uint8_t written[8];
    int calls;
};

static void dev_fn(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
    struct rec *r = opaque;
    r->offset = offset;
    r->len = len;
    r->is_write = is_write;
    r->calls++;
    if (is_write)
        memcpy(r->written, data, len);
    else
        for (uint32_t i = 0; i < len; i++)
            data[i] = (uint8_t)(0xa0 + i);
}

static void test_vmm_mmio_register_overlap(void **state)
{
    (void)state;
    struct vmm_mmio_bus bus = {0};
    struct rec r = {0};
    assert_int_equal(vmm_mmio_register(&bus, 0x1000, 0x1000, dev_fn, &r), 0);
    assert_int_equal(vmm_mmio_register(&bus, 0x1800, 0x1000, dev_fn, &r), -EEXIST);
    assert_int_equal(vmm_mmio_register(&bus, 0x0800, 0x1000, dev_fn, &r), -EEXIST);
    assert_int_equal(vmm_mmio_register(&bus, 0x0, 0x10000, dev_fn, &r), -EEXIST);
    assert_int_equal(vmm_mmio_register(&bus, 0x2000, 0x1000, dev_fn, &r), 0); /* adjacent */
    assert_int_equal(vmm_mmio_register(&bus, 0x3000, 0, dev_fn, &r), -EINVAL);
    assert_int_equal(vmm_mmio_register(&bus, UINT64_MAX - 4, 0x10, dev_fn, &r), -EINVAL);
    assert_int_equal(vmm_mmio_register(&bus, 0x3000, 0x10, NULL, &r), -EINVAL);
    assert_int_equal(bus.n, 2);
}

static void test_vmm_mmio_register_full(void **state)
{
    (void)state;
    struct vmm_mmio_bus bus = {0};
    struct rec r = {0};
    for (unsigned i = 0; i < VMM_MMIO_MAX; i++)
        assert_int_equal(vmm_mmio_register(&bus, 0x1000ull * i, 0x1000, dev_fn, &r), 0);
    assert_int_equal(vmm_mmio_register(&bus, 0x100000, 0x1000, dev_fn, &r), -ENOSPC);
}

static void test_vmm_mmio_dispatch_read_write(void **state)
{
    (void)state;
    struct vmm_mmio_bus bus = {0};
    struct rec a = {0}, b = {0};
    assert_int_equal(vmm_mmio_register(&bus, 0xd0000000, 0x1000, dev_fn, &a), 0);
    assert_int_equal(vmm_mmio_register(&bus, 0xd0001000, 0x1000, dev_fn, &b), 0);
    uint8_t data[8] = {1, 2, 3, 4};
    assert_true(vmm_mmio_dispatch(&bus, 0xd0001070, data, 4, true));
    assert_int_equal(b.calls, 1);
    assert_int_equal(a.calls, 0);
    assert_int_equal(b.offset, 0x70);
    assert_int_equal(b.len, 4);
    assert_true(b.is_write);
    assert_memory_equal(b.written, data, 4);
    memset(data, 0, sizeof(data));
    assert_true(vmm_mmio_dispatch(&bus, 0xd0000ff8, data, 8, false));
    assert_int_equal(a.offset, 0xff8);
    assert_int_equal(data[0], 0xa0);
    assert_int_equal(data[7], 0xa7);
}

static void test_vmm_mmio_dispatch_unclaimed(void **state)
{
    (void)state;
    struct vmm_mmio_bus bus = {0};
    struct rec a = {0};
    assert_int_equal(vmm_mmio_register(&bus, 0xd0000000, 0x1000, dev_fn, &a), 0);
    uint8_t data[8];
    memset(data, 0xee, sizeof(data));
    assert_false(vmm_mmio_dispatch(&bus, 0xfee00000, data, 4, false));
    assert_int_equal(data[0], 0);
    assert_int_equal(data[3], 0);
    assert_int_equal(data[4], 0xee); /* only len bytes are touched */
    /* straddling the window end: not the device's, nothing called */
    memset(data, 0xee, sizeof(data));
    assert_false(vmm_mmio_dispatch(&bus, 0xd0000ffe, data, 4, false));
    assert_int_equal(data[0], 0);
    assert_false(vmm_mmio_dispatch(&bus, 0xd0000ffe, data, 4, true));
    assert_int_equal(a.calls, 0);
    /* empty bus */
    struct vmm_mmio_bus empty = {0};
    assert_false(vmm_mmio_dispatch(&empty, 0, data, 1, true));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vmm_mmio_register_overlap),
        cmocka_unit_test(test_vmm_mmio_register_full),
        cmocka_unit_test(test_vmm_mmio_dispatch_read_write),
        cmocka_unit_test(test_vmm_mmio_dispatch_unclaimed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
