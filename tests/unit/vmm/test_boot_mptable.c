/*
 * MP table: floating pointer and configuration table checksums, and the
 * entries Linux parses (processors with APIC ids 0..n-1 and the BSP flag,
 * the ISA bus, the IOAPIC with id n at 0xfec00000, I/O interrupts for ISA
 * IRQs 0-15 and for virtio IRQs above them, LINT0 ExtINT and LINT1 NMI).
 * Bad counts and IRQs are refused.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "boot.h"

#define RAM (2u << 20)
static uint8_t *ram;

static int setup(void **state)
{
    (void)state;
    ram = calloc(1, RAM);
    return ram ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    free(ram);
    return 0;
}

static uint8_t sum(const uint8_t *p, size_t n)
{
    uint8_t s = 0;
    for (size_t i = 0; i < n; i++)
        s = (uint8_t)(s + p[i]);
    return s;
}

static uint32_t rd32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static uint16_t rd16(const uint8_t *p)
{
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}

struct counts {
    unsigned cpus, bsp, buses, ioapics, intsrc, lint;
    uint8_t ioapic_id;
    uint32_t ioapic_addr;
    bool irq_seen[24];
    bool extint_lint0, nmi_lint1;
};

static void walk(struct counts *c)
{
    memset(c, 0, sizeof(*c));
    const uint8_t *mpf = ram + X86_BOOT_MPTABLE;
    assert_memory_equal(mpf, "_MP_", 4);
    assert_int_equal(mpf[8], 1);
    assert_int_equal(mpf[9], 4);
    assert_int_equal(sum(mpf, 16), 0);
    uint32_t phys = rd32(mpf + 4);
    assert_true(phys + 44 <= 0xa0000);
    const uint8_t *mpc = ram + phys;
    assert_memory_equal(mpc, "PCMP", 4);
    uint16_t len = rd16(mpc + 4);
    assert_true(phys + len <= 0xa0000);
    assert_int_equal(sum(mpc, len), 0);
    assert_int_equal(rd32(mpc + 36), 0xfee00000);
    unsigned n = rd16(mpc + 34);
    const uint8_t *p = mpc + 44;
    for (unsigned i = 0; i < n; i++) {
        assert_true(p < mpc + len);
        switch (p[0]) {
        case 0:
            assert_int_equal(p[1], c->cpus); /* APIC ids in order */
            assert_true(p[3] & 1);
            if (p[3] & 2)
                c->bsp++;
            c->cpus++;
            p += 20;
            continue;
        case 1:
            assert_memory_equal(p + 2, "ISA   ", 6);
            c->buses++;
            break;
        case 2:
            c->ioapics++;
            c->ioapic_id = p[1];
            c->ioapic_addr = rd32(p + 4);
            assert_int_equal(p[3] & 1, 1);
            break;
        case 3:
            assert_int_equal(p[1], 0);        /* INT */
            assert_int_equal(rd16(p + 2), 0); /* conforms to bus: edge, high */
            assert_int_equal(p[5], p[7]);     /* identity-mapped */
            assert_true(p[7] < 24);
            c->irq_seen[p[7]] = true;
            c->intsrc++;
            break;
        case 4:
            if (p[1] == 3 && p[7] == 0)
                c->extint_lint0 = true;
            if (p[1] == 1 && p[7] == 1)
                c->nmi_lint1 = true;
            c->lint++;
            break;
        default:
            fail_msg("unknown MP entry type %u", p[0]);
        }
        p += 8;
    }
    assert_ptr_equal(p, mpc + len);
}

static void test_x86_mptable_setup_one_cpu(void **state)
{
    (void)state;
    struct vmm_mem m;
    vmm_mem_init_buffer(&m, ram, RAM);
    uint32_t irqs[] = {5, 6};
    assert_int_equal(x86_mptable_setup(&m, 1, irqs, 2, 0x800f12), 0);
    struct counts c;
    walk(&c);
    assert_int_equal(c.cpus, 1);
    assert_int_equal(c.bsp, 1);
    assert_int_equal(c.buses, 1);
    assert_int_equal(c.ioapics, 1);
    assert_int_equal(c.ioapic_id, 1);
    assert_int_equal(c.ioapic_addr, 0xfec00000);
    assert_int_equal(c.intsrc, 16);
    for (unsigned i = 0; i < 16; i++)
        assert_true(c.irq_seen[i]);
    assert_true(c.extint_lint0);
    assert_true(c.nmi_lint1);
    /* processor signature */
    assert_int_equal(rd32(ram + X86_BOOT_MPTABLE + 16 + 44 + 4), 0x800f12);
}

static void test_x86_mptable_setup_eight_cpus_high_irqs(void **state)
{
    (void)state;
    struct vmm_mem m;
    vmm_mem_init_buffer(&m, ram, RAM);
    uint32_t irqs[] = {5, 16, 23};
    assert_int_equal(x86_mptable_setup(&m, 8, irqs, 3, 0), 0);
    struct counts c;
    walk(&c);
    assert_int_equal(c.cpus, 8);
    assert_int_equal(c.bsp, 1);
    assert_int_equal(c.ioapic_id, 8);
    assert_int_equal(c.intsrc, 18);
    assert_true(c.irq_seen[16]);
    assert_true(c.irq_seen[23]);
    assert_false(c.irq_seen[20]);
}

static void test_x86_mptable_setup_bad_input(void **state)
{
    (void)state;
    struct vmm_mem m;
    vmm_mem_init_buffer(&m, ram, RAM);
    uint32_t bad[] = {24};
    assert_int_equal(x86_mptable_setup(&m, 0, NULL, 0, 0), -EINVAL);
    assert_int_equal(x86_mptable_setup(&m, X86_MP_MAX_CPUS + 1, NULL, 0, 0), -EINVAL);
    assert_int_equal(x86_mptable_setup(&m, 1, bad, 1, 0), -EINVAL);
    /* too many CPUs for the reserved KiB below 640 KiB */
    assert_int_equal(x86_mptable_setup(&m, 48, NULL, 0, 0), -ENOSPC);
    /* guest RAM that ends before 640 KiB */
    vmm_mem_init_buffer(&m, ram, 0x80000);
    assert_int_equal(x86_mptable_setup(&m, 1, NULL, 0, 0), -EFAULT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_x86_mptable_setup_one_cpu),
        cmocka_unit_test(test_x86_mptable_setup_eight_cpus_high_irqs),
        cmocka_unit_test(test_x86_mptable_setup_bad_input),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
