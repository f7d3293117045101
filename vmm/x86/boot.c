/*
 * Zero page, command line, GDT and page tables for the 64-bit Linux boot
 * protocol entry (startup_64 with RSI = boot_params). Offsets below are those
 * of struct boot_params / struct setup_header in Linux's
 * Documentation/x86/boot.rst and zero-page.rst.
 */
#include "boot.h"

#include <errno.h>
#include <string.h>

/* struct boot_params offsets. */
#define BP_EXT_RAMDISK_IMAGE 0x0c0
#define BP_EXT_RAMDISK_SIZE 0x0c4
#define BP_EXT_CMD_LINE_PTR 0x0c8
#define BP_E820_ENTRIES 0x1e8
#define BP_BOOT_FLAG 0x1fe
#define BP_HEADER 0x202
#define BP_VERSION 0x206
#define BP_TYPE_OF_LOADER 0x210
#define BP_LOADFLAGS 0x211
#define BP_RAMDISK_IMAGE 0x218
#define BP_RAMDISK_SIZE 0x21c
#define BP_HEAP_END_PTR 0x224
#define BP_CMD_LINE_PTR 0x228
#define BP_INITRD_ADDR_MAX 0x22c
#define BP_KERNEL_ALIGNMENT 0x230
#define BP_CMDLINE_SIZE 0x238
#define BP_E820_TABLE 0x2d0
#define BP_SIZE 0x1000

#define BOOT_FLAG_MAGIC 0xaa55
#define HDRS_MAGIC 0x53726448u /* "HdrS" */
#define BOOT_PROTOCOL 0x020c   /* 2.12: 64-bit entry, ext_* fields */
#define LOADER_UNDEFINED 0xff
#define LOADED_HIGH 0x01
#define CAN_USE_HEAP 0x80
#define KERNEL_ALIGN 0x1000000u

static void put16(uint8_t *p, uint16_t v)
{
    memcpy(p, &v, 2);
}
static void put32(uint8_t *p, uint32_t v)
{
    memcpy(p, &v, 4);
}
static void put64(uint8_t *p, uint64_t v)
{
    memcpy(p, &v, 8);
}

int x86_boot_params_setup(const struct vmm_mem *m, const char *cmdline, uint64_t initrd_gpa,
                          uint64_t initrd_size)
{
    int ret = 0;
    size_t clen = strnlen(cmdline, X86_BOOT_CMDLINE_MAX);
    if (clen >= X86_BOOT_CMDLINE_MAX)
        return -E2BIG;
    if (initrd_gpa > UINT32_MAX || initrd_size > UINT32_MAX ||
        initrd_gpa + initrd_size > (1ull << 32))
        return -EINVAL;
    uint8_t *cl = vmm_mem_ptr(m, X86_BOOT_CMDLINE, X86_BOOT_CMDLINE_MAX);
    uint8_t *bp = vmm_mem_ptr(m, X86_BOOT_ZERO_PAGE, BP_SIZE);
    if (!cl || !bp)
        return -EFAULT;

    struct x86_e820_entry map[X86_E820_MAX];
    unsigned n = 0;
    ret = x86_e820_build(m->total, map, X86_E820_MAX, &n);
    if (ret)
        goto out;

    memset(cl, 0, X86_BOOT_CMDLINE_MAX);
    memcpy(cl, cmdline, clen);

    memset(bp, 0, BP_SIZE);
    put16(bp + BP_BOOT_FLAG, BOOT_FLAG_MAGIC);
    put32(bp + BP_HEADER, HDRS_MAGIC);
    put16(bp + BP_VERSION, BOOT_PROTOCOL);
    bp[BP_TYPE_OF_LOADER] = LOADER_UNDEFINED;
    bp[BP_LOADFLAGS] = LOADED_HIGH | CAN_USE_HEAP;
    /* Heap end relative to the real-mode segment: unused on the 64-bit path. */
    put16(bp + BP_HEAP_END_PTR, 0xfe00);
    put32(bp + BP_CMD_LINE_PTR, (uint32_t)X86_BOOT_CMDLINE);
    put32(bp + BP_EXT_CMD_LINE_PTR, 0);
    put32(bp + BP_CMDLINE_SIZE, X86_BOOT_CMDLINE_MAX - 1);
    put32(bp + BP_INITRD_ADDR_MAX, (uint32_t)(X86_BOOT_INITRD_MAX - 1));
    put32(bp + BP_KERNEL_ALIGNMENT, KERNEL_ALIGN);
    put32(bp + BP_RAMDISK_IMAGE, (uint32_t)initrd_gpa);
    put32(bp + BP_RAMDISK_SIZE, (uint32_t)initrd_size);
    put32(bp + BP_EXT_RAMDISK_IMAGE, 0);
    put32(bp + BP_EXT_RAMDISK_SIZE, 0);
    bp[BP_E820_ENTRIES] = (uint8_t)n;
    for (unsigned i = 0; i < n; i++) {
        uint8_t *e = bp + BP_E820_TABLE + 20 * i;
        put64(e, map[i].addr);
        put64(e + 8, map[i].size);
        put32(e + 16, map[i].type);
    }
out:
    return ret;
}

uint64_t x86_gdt_entry(uint16_t flags, uint32_t base, uint32_t limit)
{
    return ((uint64_t)(base & 0xff000000u) << (56 - 24)) | ((uint64_t)(flags & 0xf0ffu) << 40) |
           ((uint64_t)(limit & 0x000f0000u) << (48 - 16)) | ((uint64_t)(base & 0x00ffffffu) << 16) |
           (uint64_t)(limit & 0x0000ffffu);
}

int x86_boot_tables_setup(const struct vmm_mem *m)
{
    uint8_t *gdt = vmm_mem_ptr(m, X86_BOOT_GDT, 4 * 8);
    uint8_t *idt = vmm_mem_ptr(m, X86_BOOT_IDT, 8);
    uint8_t *pml4 = vmm_mem_ptr(m, X86_BOOT_PML4, 0x1000);
    uint8_t *pdpt = vmm_mem_ptr(m, X86_BOOT_PDPT, 0x1000);
    uint8_t *pd = vmm_mem_ptr(m, X86_BOOT_PD, 0x1000);
    if (!gdt || !idt || !pml4 || !pdpt || !pd)
        return -EFAULT;
    put64(gdt, 0);
    put64(gdt + 8, x86_gdt_entry(0xa09b, 0, 0xfffff));  /* 64-bit code */
    put64(gdt + 16, x86_gdt_entry(0xc093, 0, 0xfffff)); /* data */
    put64(gdt + 24, x86_gdt_entry(0x808b, 0, 0xfffff)); /* busy 64-bit TSS */
    put64(idt, 0);
    memset(pml4, 0, 0x1000);
    memset(pdpt, 0, 0x1000);
    put64(pml4, X86_BOOT_PDPT | 0x03); /* present, writable */
    put64(pdpt, X86_BOOT_PD | 0x03);
    for (uint64_t i = 0; i < 512; i++)
        put64(pd + 8 * i, (i << 21) | 0x83); /* present, writable, 2 MiB page */
    return 0;
}
