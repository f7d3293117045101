/*
 * x86-64 direct boot of an uncompressed Linux vmlinux, the way Firecracker
 * does it: the ELF's PT_LOAD segments go to their physical addresses, the
 * BSP starts in 64-bit mode at the ELF entry (startup_64) with identity-
 * mapped page tables, a flat GDT and RSI pointing at the zero page
 * (struct boot_params). Everything is written into guest memory through
 * vmm_mem_ptr(), so a bad image or size is an error, never a stray write.
 * Low-memory layout (guest physical):
 *   0x500 GDT, 0x520 IDT, 0x7000 zero page, 0x8ff0 boot stack top,
 *   0x9000/0xa000/0xb000 PML4/PDPT/PD, 0x20000 command line,
 *   0x9fc00 MP table (top 1 KiB of base memory, reserved in the e820 map).
 */
#ifndef CAPSEM_VMM_X86_BOOT_H
#define CAPSEM_VMM_X86_BOOT_H

#include <stddef.h>
#include <stdint.h>

#include "memory.h"

#define X86_BOOT_GDT 0x500ull
#define X86_BOOT_IDT 0x520ull
#define X86_BOOT_ZERO_PAGE 0x7000ull
#define X86_BOOT_STACK 0x8ff0ull
#define X86_BOOT_PML4 0x9000ull
#define X86_BOOT_PDPT 0xa000ull
#define X86_BOOT_PD 0xb000ull
#define X86_BOOT_CMDLINE 0x20000ull
/* Linux's x86 COMMAND_LINE_SIZE, including the terminating NUL. */
#define X86_BOOT_CMDLINE_MAX 2048u
#define X86_BOOT_EBDA 0x9fc00ull
#define X86_BOOT_MPTABLE X86_BOOT_EBDA
#define X86_BOOT_HIMEM 0x100000ull
/* Highest initrd end for a 64-bit kernel without a setup header to ask. */
#define X86_BOOT_INITRD_MAX 0x80000000ull

/* Selectors of the boot GDT. */
#define X86_BOOT_CS 0x08
#define X86_BOOT_DS 0x10
#define X86_BOOT_TSS 0x18

#define X86_E820_RAM 1u
#define X86_E820_RESERVED 2u
#define X86_E820_MAX 128u

struct x86_e820_entry {
    uint64_t addr;
    uint64_t size;
    uint32_t type;
};

/* What the ELF loader found: entry point and the physical span loaded. */
struct x86_kernel {
    uint64_t entry;
    uint64_t start; /* lowest loaded physical address */
    uint64_t end;   /* one past the highest loaded byte (incl. bss) */
};

/*
 * Build the e820 map for `mem_size` bytes of RAM laid out as memory.h
 * describes. Writes up to `max` entries to `out` and their count to `*n`.
 * 0, -EINVAL when mem_size is below 2 MiB, -ENOSPC when `max` is too small.
 */
__attribute__((warn_unused_result)) int
x86_e820_build(uint64_t mem_size, struct x86_e820_entry *out, unsigned max, unsigned *n);

/*
 * Load an ELF64 x86-64 executable image (`img`, `len` bytes, borrowed) into
 * guest memory: each PT_LOAD at p_paddr, file bytes copied and the rest up to
 * p_memsz zeroed. 0; -ENOEXEC for a malformed or foreign image (truncated,
 * offsets past the file, overflowing sums); -ERANGE when a segment does not
 * fit in guest RAM. On error guest memory may hold a partial image.
 */
__attribute__((warn_unused_result)) int x86_elf_load(const struct vmm_mem *m, const uint8_t *img,
                                                     size_t len, struct x86_kernel *out);
/* x86_elf_load() on a file (read whole; at most 512 MiB). 0 or -errno. */
__attribute__((warn_unused_result)) int x86_elf_load_file(const struct vmm_mem *m, const char *path,
                                                          struct x86_kernel *out);

/*
 * Choose where an initrd of `size` bytes goes: as high as possible in the
 * low region, page aligned, ending below X86_BOOT_INITRD_MAX, starting at or
 * above `kernel_end`. 0, or -E2BIG when it cannot fit.
 */
__attribute__((warn_unused_result)) int
x86_initrd_place(const struct vmm_mem *m, uint64_t kernel_end, uint64_t size, uint64_t *gpa);
/* Read the initrd file at `path` into guest memory placed as above. 0 or -errno. */
__attribute__((warn_unused_result)) int x86_initrd_load_file(const struct vmm_mem *m,
                                                             const char *path, uint64_t kernel_end,
                                                             uint64_t *gpa, uint64_t *size);

/*
 * Write the command line (NUL-terminated at X86_BOOT_CMDLINE) and the zero
 * page: setup header fields, initrd location (size 0: none) and the e820
 * map for the guest's RAM. 0, -E2BIG for a command line of
 * X86_BOOT_CMDLINE_MAX bytes or more, -EFAULT when low memory is missing.
 */
__attribute__((warn_unused_result)) int x86_boot_params_setup(const struct vmm_mem *m,
                                                              const char *cmdline,
                                                              uint64_t initrd_gpa,
                                                              uint64_t initrd_size);

/* Write the boot GDT, an empty IDT and page tables identity-mapping 1 GiB. 0 or -EFAULT. */
__attribute__((warn_unused_result)) int x86_boot_tables_setup(const struct vmm_mem *m);

/* A GDT entry from flags (access byte + high nibble flags, as 0xa09b), base and limit. */
uint64_t x86_gdt_entry(uint16_t flags, uint32_t base, uint32_t limit);

#define X86_MP_IOAPIC_ADDR 0xfec00000u
#define X86_MP_LAPIC_ADDR 0xfee00000u
#define X86_MP_IOAPIC_PINS 24u
#define X86_MP_MAX_CPUS 64u

/*
 * Write an Intel MP 1.4 table at X86_BOOT_MPTABLE: `ncpus` processors
 * (APIC ids 0..ncpus-1, 0 is the BSP, `cpu_signature` from CPUID leaf 1), one
 * ISA bus, the IOAPIC (id ncpus) with 24 pins, I/O interrupts for ISA IRQs
 * 0-15 and for each of `irqs` (identity-mapped to IOAPIC pins, edge, active
 * high), ExtINT on LINT0 and NMI on LINT1. 0, -EINVAL for a bad count or an
 * IRQ above 23, -ENOSPC when it does not fit below 640 KiB.
 */
__attribute__((warn_unused_result)) int x86_mptable_setup(const struct vmm_mem *m, unsigned ncpus,
                                                          const uint32_t *irqs, unsigned nirqs,
                                                          uint32_t cpu_signature);

#endif
