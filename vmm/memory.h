/*
 * Guest physical memory. RAM starts at GPA 0; above 3 GiB it continues at
 * 4 GiB so the 32-bit MMIO hole (virtio-mmio devices, IOAPIC, LAPIC) stays
 * free. Every access to guest memory from device code goes through
 * vmm_mem_ptr(), which bounds-checks with overflow checks.
 */
#ifndef CAPSEM_VMM_MEMORY_H
#define CAPSEM_VMM_MEMORY_H

#include <stdbool.h>
#include <stdint.h>

#define VMM_MEM_HOLE_START 0xC0000000ull  /* 3 GiB */
#define VMM_MEM_HIGH_START 0x100000000ull /* 4 GiB */

struct vmm_mem_region {
    uint64_t gpa;
    uint64_t size;
    uint8_t *host;
};

struct vmm_mem {
    struct vmm_mem_region regions[2];
    unsigned nregions;
    uint8_t *base;  /* the whole host mapping */
    uint64_t total; /* bytes of guest RAM */
    bool owned;     /* base was mmapped by vmm_mem_init() */
};

/* Map `size` bytes of anonymous guest RAM (MAP_NORESERVE). 0 or -errno. */
__attribute__((warn_unused_result)) int vmm_mem_init(struct vmm_mem *m, uint64_t size);
/* Use a caller buffer (borrowed) as guest RAM at GPA 0, for unit tests. */
void vmm_mem_init_buffer(struct vmm_mem *m, void *buf, uint64_t size);
/* Unmap RAM mapped by vmm_mem_init(); accepts a zeroed struct. */
void vmm_mem_fini(struct vmm_mem *m);

/*
 * Host pointer for guest range [gpa, gpa+len), or NULL when any byte of it is
 * outside guest RAM, the range crosses a region boundary, or gpa+len
 * overflows. len 0 is valid when gpa is inside (or at the end of) a region.
 * Thread-safe (read-only).
 */
void *vmm_mem_ptr(const struct vmm_mem *m, uint64_t gpa, uint64_t len);

#endif
