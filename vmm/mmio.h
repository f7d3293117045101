/*
 * The MMIO bus: vCPU threads look up the device for a KVM_EXIT_MMIO address
 * here. Registration happens before the first KVM_RUN; dispatch is then
 * lock-free (the table never changes while vCPUs run).
 */
#ifndef CAPSEM_VMM_MMIO_H
#define CAPSEM_VMM_MMIO_H

#include <stdbool.h>
#include <stdint.h>

#define VMM_MMIO_MAX 16

/*
 * Handle an access of `len` (1, 2, 4 or 8) bytes at `offset` inside the
 * device's window. For reads, fill `data`; for writes, `data` holds the
 * little-endian value. Called on a vCPU thread; must not block on guest-
 * controlled work.
 */
typedef void (*vmm_mmio_fn)(void *opaque, uint64_t offset, uint8_t *data, uint32_t len,
                            bool is_write);

struct vmm_mmio_range {
    uint64_t base;
    uint64_t len;
    vmm_mmio_fn fn;
    void *opaque;
};

struct vmm_mmio_bus {
    struct vmm_mmio_range ranges[VMM_MMIO_MAX];
    unsigned n;
};

/* Add a window; -EEXIST on overlap, -ENOSPC when full. */
__attribute__((warn_unused_result)) int vmm_mmio_register(struct vmm_mmio_bus *bus, uint64_t base,
                                                          uint64_t len, vmm_mmio_fn fn,
                                                          void *opaque);
/* Dispatch an access; false when no device claims `addr` (reads then see zeros). */
bool vmm_mmio_dispatch(const struct vmm_mmio_bus *bus, uint64_t addr, uint8_t *data, uint32_t len,
                       bool is_write);

#endif
