/*
 * Intel MultiProcessor Specification 1.4 tables. The guest kernel has no
 * ACPI, so this is how it learns the vCPUs' APIC ids, where the in-kernel
 * IOAPIC is, and how ISA and virtio IRQs reach its pins. Layout: the 16-byte
 * floating pointer at X86_BOOT_MPTABLE, the configuration table right after.
 */
#include "boot.h"

#include <errno.h>
#include <string.h>

#define MPF_SIZE 16
#define MPC_HEADER_SIZE 44
#define MPC_CPU_SIZE 20
#define MPC_SMALL_SIZE 8 /* bus, IOAPIC, I/O and local interrupt entries */

#define MP_PROCESSOR 0
#define MP_BUS 1
#define MP_IOAPIC 2
#define MP_INTSRC 3
#define MP_LINTSRC 4

#define MP_IRQ_INT 0
#define MP_IRQ_NMI 1
#define MP_IRQ_EXTINT 3

#define CPU_ENABLED 1
#define CPU_BSP 2
#define APIC_VERSION 0x14
#define IOAPIC_VERSION 0x11
#define ISA_IRQS 16u

static uint8_t checksum(const uint8_t *p, size_t len)
{
    uint8_t sum = 0;
    for (size_t i = 0; i < len; i++)
        sum = (uint8_t)(sum + p[i]);
    return (uint8_t)(0x100 - sum);
}

static void put16(uint8_t *p, uint16_t v)
{
    memcpy(p, &v, 2);
}
static void put32(uint8_t *p, uint32_t v)
{
    memcpy(p, &v, 4);
}

static uint8_t *small_entry(uint8_t *p, uint8_t type, uint8_t b1, uint16_t w, uint8_t b4,
                            uint8_t b5, uint8_t b6, uint8_t b7)
{
    p[0] = type;
    p[1] = b1;
    put16(p + 2, w);
    p[4] = b4;
    p[5] = b5;
    p[6] = b6;
    p[7] = b7;
    return p + MPC_SMALL_SIZE;
}

int x86_mptable_setup(const struct vmm_mem *m, unsigned ncpus, const uint32_t *irqs, unsigned nirqs,
                      uint32_t cpu_signature)
{
    if (ncpus == 0 || ncpus > X86_MP_MAX_CPUS || nirqs > X86_MP_IOAPIC_PINS)
        return -EINVAL;
    unsigned extra = 0; /* virtio IRQs above the ISA range need their own entries */
    for (unsigned i = 0; i < nirqs; i++) {
        if (irqs[i] >= X86_MP_IOAPIC_PINS)
            return -EINVAL;
        if (irqs[i] >= ISA_IRQS)
            extra++;
    }
    unsigned nentries = ncpus + 1 + 1 + ISA_IRQS + extra + 2;
    size_t table_len =
        MPC_HEADER_SIZE + ncpus * MPC_CPU_SIZE + (nentries - ncpus) * (size_t)MPC_SMALL_SIZE;
    size_t total = MPF_SIZE + table_len;
    /* Everything must stay inside the reserved top KiB of base memory. */
    if (X86_BOOT_MPTABLE + total > 0xa0000)
        return -ENOSPC;
    uint8_t *base = vmm_mem_ptr(m, X86_BOOT_MPTABLE, total);
    if (!base)
        return -EFAULT;
    memset(base, 0, total);

    uint8_t *mpf = base;
    uint8_t *mpc = base + MPF_SIZE;
    uint8_t ioapic_id = (uint8_t)ncpus;

    memcpy(mpf, "_MP_", 4);
    put32(mpf + 4, (uint32_t)(X86_BOOT_MPTABLE + MPF_SIZE));
    mpf[8] = 1; /* length in 16-byte units */
    mpf[9] = 4; /* spec revision 1.4 */
    /* feature bytes 0: a configuration table is present, no IMCR */
    mpf[10] = checksum(mpf, MPF_SIZE);

    uint8_t *p = mpc + MPC_HEADER_SIZE;
    for (unsigned i = 0; i < ncpus; i++) {
        p[0] = MP_PROCESSOR;
        p[1] = (uint8_t)i;
        p[2] = APIC_VERSION;
        p[3] = CPU_ENABLED | (i == 0 ? CPU_BSP : 0);
        put32(p + 4, cpu_signature);
        put32(p + 8, 0x201); /* feature flags: FPU, APIC */
        p += MPC_CPU_SIZE;
    }
    p[0] = MP_BUS;
    p[1] = 0;
    memcpy(p + 2, "ISA   ", 6);
    p += MPC_SMALL_SIZE;
    p[0] = MP_IOAPIC;
    p[1] = ioapic_id;
    p[2] = IOAPIC_VERSION;
    p[3] = 1; /* usable */
    put32(p + 4, X86_MP_IOAPIC_ADDR);
    p += MPC_SMALL_SIZE;
    /* Flags 0 = conforms to the bus: edge-triggered, active high on ISA. */
    for (unsigned irq = 0; irq < ISA_IRQS; irq++)
        p = small_entry(p, MP_INTSRC, MP_IRQ_INT, 0, 0, (uint8_t)irq, ioapic_id, (uint8_t)irq);
    for (unsigned i = 0; i < nirqs; i++)
        if (irqs[i] >= ISA_IRQS)
            p = small_entry(p, MP_INTSRC, MP_IRQ_INT, 0, 0, (uint8_t)irqs[i], ioapic_id,
                            (uint8_t)irqs[i]);
    p = small_entry(p, MP_LINTSRC, MP_IRQ_EXTINT, 0, 0, 0, 0xff, 0);
    p = small_entry(p, MP_LINTSRC, MP_IRQ_NMI, 0, 0, 0, 0xff, 1);

    memcpy(mpc, "PCMP", 4);
    put16(mpc + 4, (uint16_t)table_len);
    mpc[6] = 4;
    memcpy(mpc + 8, "CAPSEM  ", 8);
    memcpy(mpc + 16, "MICROVM     ", 12);
    put16(mpc + 34, (uint16_t)nentries);
    put32(mpc + 36, X86_MP_LAPIC_ADDR);
    mpc[7] = checksum(mpc, table_len);
    return 0;
}
