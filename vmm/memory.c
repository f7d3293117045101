/*
 * Guest physical memory: one anonymous host mapping split into a low region
 * at GPA 0 (up to the 3 GiB hole) and a high region at 4 GiB for the rest.
 * vmm_mem_ptr() is the single bounds-checked way from a guest address to a
 * host pointer.
 */
#include "memory.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#include "buf.h"

/* Stage-2 huge page size on x86-64. */
#define HUGE_ALIGN (2ull << 20)
/* The inaccessible page kept below guest RAM (see vmm_mem_init). */
#define GUARD 0x1000ull

static void layout(struct vmm_mem *m, uint8_t *base, uint64_t size)
{
    memset(m, 0, sizeof(*m));
    m->base = base;
    m->total = size;
    uint64_t low = size < VMM_MEM_HOLE_START ? size : VMM_MEM_HOLE_START;
    m->regions[0] = (struct vmm_mem_region){.gpa = 0, .size = low, .host = base};
    m->nregions = 1;
    if (size > low) {
        m->regions[1] = (struct vmm_mem_region){
            .gpa = VMM_MEM_HIGH_START, .size = size - low, .host = base + low};
        m->nregions = 2;
    }
}

int vmm_mem_init(struct vmm_mem *m, uint64_t size)
{
    if (size == 0 || size > (1ull << 40) || (size & 0xfff))
        return -EINVAL;
    /*
     * Map 2 MiB more than needed and keep a 2 MiB-aligned window: KVM maps a
     * guest page with a 2 MiB stage-2 entry only when the host address and the
     * guest address agree modulo 2 MiB. Unaligned, every 4 KiB the guest first
     * touches is a nested page fault (~7500 of them in a boot, about 0.8 s in
     * the KVM test bed); aligned, one fault covers 512 pages.
     *
     * One inaccessible page stays mapped just below the window. Without it
     * the next mapping (a vCPU thread's stack) would end exactly at the
     * aligned base, and its first touch would then take a whole 2 MiB huge
     * page: 2 MiB more RSS and zeroing for a few KiB of stack.
     */
    uint64_t span = size + HUGE_ALIGN + GUARD;
    uint8_t *raw = mmap(NULL, span, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (raw == MAP_FAILED)
        return -errno;
    uint8_t *p =
        (uint8_t *)(((uintptr_t)raw + GUARD + HUGE_ALIGN - 1) & ~(uintptr_t)(HUGE_ALIGN - 1));
    if (p - GUARD > raw)
        munmap(raw, (size_t)(p - GUARD - raw));
    if (raw + span > p + size)
        munmap(p + size, (size_t)(raw + span - (p + size)));
    if (mprotect(p - GUARD, GUARD, PROT_NONE) < 0) {
        int err = errno;
        munmap(p - GUARD, size + GUARD);
        return -err;
    }
    /* Best effort: huge pages cut EPT walks; guest RAM stays out of core dumps. */
    madvise(p, size, MADV_HUGEPAGE);
    madvise(p, size, MADV_DONTDUMP);
    layout(m, p, size);
    m->owned = true;
    return 0;
}

void vmm_mem_init_buffer(struct vmm_mem *m, void *buf, uint64_t size)
{
    layout(m, buf, size);
    m->owned = false;
}

void vmm_mem_fini(struct vmm_mem *m)
{
    if (m->owned && m->base)
        munmap(m->base - GUARD, m->total + GUARD);
    memset(m, 0, sizeof(*m));
}

void *vmm_mem_ptr(const struct vmm_mem *m, uint64_t gpa, uint64_t len)
{
    uint64_t end;
    if (add_overflows_u64(gpa, len, &end))
        return NULL;
    for (unsigned i = 0; i < m->nregions; i++) {
        const struct vmm_mem_region *r = &m->regions[i];
        if (gpa >= r->gpa && gpa - r->gpa <= r->size && end - r->gpa <= r->size)
            return r->host + (gpa - r->gpa);
    }
    return NULL;
}
