/*
 * The e820 memory map handed to Linux in the zero page: RAM below the EBDA,
 * the EBDA/VGA/BIOS area reserved, RAM from 1 MiB up to the 3 GiB hole, and
 * the high region at 4 GiB when the guest has more than 3 GiB.
 */
#include "boot.h"

#include <errno.h>

static int add(struct x86_e820_entry *out, unsigned max, unsigned *n, uint64_t addr, uint64_t size,
               uint32_t type)
{
    if (*n >= max)
        return -ENOSPC;
    out[*n] = (struct x86_e820_entry){.addr = addr, .size = size, .type = type};
    (*n)++;
    return 0;
}

int x86_e820_build(uint64_t mem_size, struct x86_e820_entry *out, unsigned max, unsigned *n)
{
    unsigned k = 0;
    int ret;
    if (mem_size < 2 * X86_BOOT_HIMEM)
        return -EINVAL;
    uint64_t low_end = mem_size < VMM_MEM_HOLE_START ? mem_size : VMM_MEM_HOLE_START;
    ret = add(out, max, &k, 0, X86_BOOT_EBDA, X86_E820_RAM);
    if (ret)
        goto out;
    ret = add(out, max, &k, X86_BOOT_EBDA, X86_BOOT_HIMEM - X86_BOOT_EBDA, X86_E820_RESERVED);
    if (ret)
        goto out;
    ret = add(out, max, &k, X86_BOOT_HIMEM, low_end - X86_BOOT_HIMEM, X86_E820_RAM);
    if (ret)
        goto out;
    if (mem_size > low_end) {
        ret = add(out, max, &k, VMM_MEM_HIGH_START, mem_size - low_end, X86_E820_RAM);
        if (ret)
            goto out;
    }
    *n = k;
out:
    return ret;
}
