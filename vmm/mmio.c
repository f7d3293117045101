/*
 * The MMIO bus: a small fixed table of device windows filled before the
 * vCPUs start and only read afterwards, so dispatch needs no lock.
 */
#include "mmio.h"

#include <errno.h>
#include <string.h>

int vmm_mmio_register(struct vmm_mmio_bus *bus, uint64_t base, uint64_t len, vmm_mmio_fn fn,
                      void *opaque)
{
    if (len == 0 || base + len < base || !fn)
        return -EINVAL;
    for (unsigned i = 0; i < bus->n; i++) {
        const struct vmm_mmio_range *r = &bus->ranges[i];
        if (base < r->base + r->len && r->base < base + len)
            return -EEXIST;
    }
    if (bus->n >= VMM_MMIO_MAX)
        return -ENOSPC;
    bus->ranges[bus->n++] = (struct vmm_mmio_range){base, len, fn, opaque};
    return 0;
}

bool vmm_mmio_dispatch(const struct vmm_mmio_bus *bus, uint64_t addr, uint8_t *data, uint32_t len,
                       bool is_write)
{
    for (unsigned i = 0; i < bus->n; i++) {
        const struct vmm_mmio_range *r = &bus->ranges[i];
        if (addr >= r->base && addr - r->base < r->len) {
            uint64_t off = addr - r->base;
            /* An access straddling the window end is not the device's: ignore it. */
            if (len > r->len - off)
                break;
            r->fn(r->opaque, off, data, len, is_write);
            return true;
        }
    }
    if (!is_write)
        memset(data, 0, len);
    return false;
}
