/*
 * Zero page, command line and boot tables written into a plain buffer used
 * as guest RAM: every field Linux reads on the 64-bit entry path is checked
 * by offset, the command line lands NUL-terminated at its address, and a
 * command line too long for Linux is refused without touching memory.
 * Also the pure CPU helpers: GDT entries to KVM segments, CPUID fix-ups.
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
#include "cpu.h"

#define RAM (64u << 20)

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

static uint16_t rd16(const uint8_t *p)
{
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}
static uint32_t rd32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}
static uint64_t rd64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static void test_x86_boot_params_setup_fields(void **state)
{
    (void)state;
    struct vmm_mem m;
    vmm_mem_init_buffer(&m, ram, RAM);
    memset(ram + X86_BOOT_ZERO_PAGE, 0xcc, 4096); /* stale bytes must be cleared */
    assert_int_equal(x86_boot_params_setup(&m, "console=ttyS0 quiet", 0x3000000, 0x12345), 0);
    const uint8_t *bp = ram + X86_BOOT_ZERO_PAGE;
    assert_int_equal(rd16(bp + 0x1fe), 0xaa55);                   /* boot_flag */
    assert_int_equal(rd32(bp + 0x202), 0x53726448);               /* "HdrS" */
    assert_true(rd16(bp + 0x206) >= 0x0206);                      /* version */
    assert_int_equal(bp[0x210], 0xff);                            /* type_of_loader */
    assert_true(bp[0x211] & 0x01);                                /* LOADED_HIGH */
    assert_int_equal(rd32(bp + 0x218), 0x3000000);                /* ramdisk_image */
    assert_int_equal(rd32(bp + 0x21c), 0x12345);                  /* ramdisk_size */
    assert_int_equal(rd32(bp + 0x228), X86_BOOT_CMDLINE);         /* cmd_line_ptr */
    assert_int_equal(rd32(bp + 0x230), 0x1000000);                /* kernel_alignment */
    assert_int_equal(rd32(bp + 0x238), X86_BOOT_CMDLINE_MAX - 1); /* cmdline_size */
    assert_int_equal(rd32(bp + 0xc0), 0);                         /* ext_ramdisk_image */
    assert_int_equal(bp[0x1ef], 0);                               /* sentinel */
    /* e820 table: 3 entries for 64 MiB, the last one RAM up to the end */
    assert_int_equal(bp[0x1e8], 3);
    const uint8_t *e = bp + 0x2d0 + 2 * 20;
    assert_int_equal(rd64(e), X86_BOOT_HIMEM);
    assert_int_equal(rd64(e + 8), RAM - X86_BOOT_HIMEM);
    assert_int_equal(rd32(e + 16), X86_E820_RAM);
    /* the command line, NUL-terminated, at its pointer */
    assert_string_equal((const char *)ram + X86_BOOT_CMDLINE, "console=ttyS0 quiet");
}

static void test_x86_boot_params_setup_cmdline_limits(void **state)
{
    (void)state;
    struct vmm_mem m;
    vmm_mem_init_buffer(&m, ram, RAM);
    char *line = malloc(X86_BOOT_CMDLINE_MAX + 1);
    assert_non_null(line);
    /* 2047 characters: the longest that fits with its NUL */
    memset(line, 'a', X86_BOOT_CMDLINE_MAX - 1);
    line[X86_BOOT_CMDLINE_MAX - 1] = '\0';
    memset(ram + X86_BOOT_CMDLINE, 0xcc, X86_BOOT_CMDLINE_MAX);
    assert_int_equal(x86_boot_params_setup(&m, line, 0, 0), 0);
    assert_int_equal(ram[X86_BOOT_CMDLINE + X86_BOOT_CMDLINE_MAX - 1], 0);
    assert_int_equal(strlen((char *)ram + X86_BOOT_CMDLINE), X86_BOOT_CMDLINE_MAX - 1);
    /* 2048 characters: refused, and memory keeps the previous line */
    memset(line, 'b', X86_BOOT_CMDLINE_MAX);
    line[X86_BOOT_CMDLINE_MAX] = '\0';
    assert_int_equal(x86_boot_params_setup(&m, line, 0, 0), -E2BIG);
    assert_int_equal(ram[X86_BOOT_CMDLINE], 'a');
    free(line);
}

static void test_x86_boot_params_setup_bad_initrd(void **state)
{
    (void)state;
    struct vmm_mem m;
    vmm_mem_init_buffer(&m, ram, RAM);
    /* an initrd above 4 GiB cannot be described in the 32-bit fields */
    assert_int_equal(x86_boot_params_setup(&m, "x", 0x100000000ull, 16), -EINVAL);
    assert_int_equal(x86_boot_params_setup(&m, "x", 0xfffff000ull, 0x2000), -EINVAL);
}

static void test_x86_boot_params_setup_tiny_ram(void **state)
{
    (void)state;
    /* RAM too small for the zero page is an error, not a write past the buffer. */
    struct vmm_mem m;
    vmm_mem_init_buffer(&m, ram, 0x4000);
    assert_int_equal(x86_boot_params_setup(&m, "x", 0, 0), -EFAULT);
    assert_int_equal(x86_boot_tables_setup(&m), -EFAULT);
}

static void test_x86_boot_tables_setup_identity_map(void **state)
{
    (void)state;
    struct vmm_mem m;
    vmm_mem_init_buffer(&m, ram, RAM);
    assert_int_equal(x86_boot_tables_setup(&m), 0);
    assert_int_equal(rd64(ram + X86_BOOT_PML4) & ~0xfffull, X86_BOOT_PDPT);
    assert_int_equal(rd64(ram + X86_BOOT_PML4) & 1, 1);
    assert_int_equal(rd64(ram + X86_BOOT_PDPT) & ~0xfffull, X86_BOOT_PD);
    for (uint64_t i = 0; i < 512; i++) {
        uint64_t pde = rd64(ram + X86_BOOT_PD + 8 * i);
        assert_int_equal(pde & ~0xfffull, i << 21);
        assert_int_equal(pde & 0x83, 0x83); /* present, writable, large */
    }
    assert_int_equal(rd64(ram + X86_BOOT_GDT), 0);
    assert_int_equal(rd64(ram + X86_BOOT_GDT + 8), 0x00af9b000000ffffull);
    assert_int_equal(rd64(ram + X86_BOOT_GDT + 16), 0x00cf93000000ffffull);
}

static void test_x86_segment_from_gdt_code64(void **state)
{
    (void)state;
    struct kvm_segment s;
    x86_segment_from_gdt(x86_gdt_entry(0xa09b, 0, 0xfffff), 0x08, &s);
    assert_int_equal(s.base, 0);
    assert_int_equal(s.limit, 0xffffffff);
    assert_int_equal(s.selector, 0x08);
    assert_int_equal(s.type, 0xb);
    assert_int_equal(s.present, 1);
    assert_int_equal(s.s, 1);
    assert_int_equal(s.l, 1);
    assert_int_equal(s.db, 0);
    assert_int_equal(s.g, 1);
    assert_int_equal(s.unusable, 0);
    x86_segment_from_gdt(x86_gdt_entry(0xc093, 0x12345678, 0xfffff), 0x10, &s);
    assert_int_equal(s.base, 0x12345678);
    assert_int_equal(s.db, 1);
    assert_int_equal(s.l, 0);
    assert_int_equal(s.type, 0x3);
    x86_segment_from_gdt(0, 0, &s);
    assert_int_equal(s.unusable, 1);
}

static void test_x86_cpuid_patch_apic_id(void **state)
{
    (void)state;
    struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + 3 * sizeof(struct kvm_cpuid_entry2));
    assert_non_null(c);
    c->nent = 3;
    c->entries[0].function = 1;
    c->entries[0].ebx = 0xff00abcd; /* stale APIC id and count */
    c->entries[1].function = 0xb;
    c->entries[2].function = 0x40000000;
    c->entries[2].ebx = 0x4b4d564b; /* "KVMK" */
    x86_cpuid_patch(c, 3, 4, true);
    assert_int_equal(c->entries[0].ebx >> 24, 3);
    assert_int_equal((c->entries[0].ebx >> 16) & 0xff, 4);
    assert_int_equal(c->entries[0].ebx & 0xffff, 0xabcd);
    assert_true(c->entries[0].ecx & (1u << 31));
    assert_true(c->entries[0].edx & (1u << 28));
    assert_true(c->entries[0].ecx & (1u << 24)); /* TSC deadline */
    assert_int_equal(c->entries[1].edx, 3);
    assert_int_equal(c->entries[2].ebx, 0x4b4d564b); /* paravirtual leaf kept */
    assert_int_equal(x86_cpuid_signature(c), c->entries[0].eax);
    c->entries[0].ecx = 0;
    x86_cpuid_patch(c, 0, 1, false);
    assert_false(c->entries[0].ecx & (1u << 24));
    assert_int_equal(c->entries[0].ebx >> 24, 0);
    free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_x86_boot_params_setup_fields),
        cmocka_unit_test(test_x86_boot_params_setup_cmdline_limits),
        cmocka_unit_test(test_x86_boot_params_setup_bad_initrd),
        cmocka_unit_test(test_x86_boot_params_setup_tiny_ram),
        cmocka_unit_test(test_x86_boot_tables_setup_identity_map),
        cmocka_unit_test(test_x86_segment_from_gdt_code64),
        cmocka_unit_test(test_x86_cpuid_patch_apic_id),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
