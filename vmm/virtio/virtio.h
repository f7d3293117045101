/*
 * Public face of the virtio layer: the virtio-mmio transport (version 2,
 * split virtqueues with indirect descriptors and event index) and the
 * device models. The VM core creates a device, wraps it in a transport at an
 * MMIO window and IRQ, registers virtio_mmio_access() on the MMIO bus and
 * appends virtio_mmio_cmdline() to the kernel command line.
 */
#ifndef CAPSEM_VMM_VIRTIO_H
#define CAPSEM_VMM_VIRTIO_H

#include "loop.h"
#include "memory.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VIRTIO_MMIO_WINDOW 0x1000u

struct virtio_dev;  /* a device model */
struct virtio_mmio; /* a transport window bound to one device */

/* What a transport needs from the VM it lives in (all borrowed). */
struct virtio_host {
    const struct vmm_mem *mem;
    /* Device back-ends run on this loop's thread. */
    struct loop *loop;
    /*
     * Ask KVM to signal `fd` when the guest writes the 4-byte value
     * `datamatch` at guest physical `addr` (KVM_IOEVENTFD). NULL in unit
     * tests: the transport then signals `fd` itself on QueueNotify.
     */
    int (*add_ioeventfd)(void *opaque, uint64_t addr, uint32_t datamatch, int fd);
    void *opaque;
};

/*
 * Bind `dev` (owned, also on failure) to a transport at guest physical
 * `base` (VIRTIO_MMIO_WINDOW bytes) raising GSI `irq` by writing to `irqfd`
 * (owned; the caller has attached it with KVM_IRQFD). 0 or -errno.
 */
__attribute__((warn_unused_result)) int virtio_mmio_create(struct virtio_mmio **out,
                                                           const struct virtio_host *host,
                                                           struct virtio_dev *dev, uint64_t base,
                                                           uint32_t irq, int irqfd);
/* Stop the device, release its back-end and the transport. Accepts NULL. Loop thread. */
void virtio_mmio_destroy(struct virtio_mmio *t);

/* A vmm_mmio_fn: `opaque` is the struct virtio_mmio. vCPU threads. */
void virtio_mmio_access(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write);

/*
 * Run the transport's and the device back-end's pending loop-thread work
 * once, without waiting. For unit tests and hosts that run no event loop
 * (host->loop NULL); never call it while a loop owns the device.
 */
void virtio_mmio_poll(struct virtio_mmio *t);

/* Write "virtio_mmio.device=4K@0x<base>:<irq>" into buf. Returns chars written or -ENOSPC. */
int virtio_mmio_cmdline(const struct virtio_mmio *t, char *buf, size_t size);

/* virtio-rng, fed from getrandom(2). */
__attribute__((warn_unused_result)) int virtio_rng_create(struct virtio_dev **out);

/*
 * virtio-vsock with the Firecracker-compatible Unix socket mapping: a guest
 * connection to host port P becomes a connection to "<uds_path>_P"; a host
 * process reaches guest port P by connecting to `uds_path` (this device
 * listens there) and sending "CONNECT P\n", answered with "OK <port>\n".
 * `uds_path` is copied.
 */
__attribute__((warn_unused_result)) int
virtio_vsock_create(struct virtio_dev **out, uint64_t guest_cid, const char *uds_path);

/*
 * virtio-blk over the disk image at `path` (a regular file, opened here
 * before any sandboxing; capacity is its size in whole 512-byte sectors).
 * `read_only` opens it O_RDONLY, offers VIRTIO_BLK_F_RO and answers writes
 * with VIRTIO_BLK_S_IOERR. GET_ID returns the file's base name (20 bytes at
 * most). 0, -errno from open/fstat, or -EINVAL when `path` is not a regular file.
 */
__attribute__((warn_unused_result)) int virtio_blk_create(struct virtio_dev **out, const char *path,
                                                          bool read_only);

/* virtio-blk request types and status values (virtio 1.1 section 5.2.6). */
#define VIRTIO_BLK_T_IN 0u
#define VIRTIO_BLK_T_OUT 1u
#define VIRTIO_BLK_T_FLUSH 4u
#define VIRTIO_BLK_T_GET_ID 8u
#define VIRTIO_BLK_S_OK 0u
#define VIRTIO_BLK_S_IOERR 1u
#define VIRTIO_BLK_S_UNSUPP 2u
#define VIRTIO_BLK_ID_BYTES 20u

/*
 * virtio-fs (id 26) serving directory `dir` under mount tag `tag` (1..36
 * bytes) with the confined FUSE server of fuse_server.h. When `events_path`
 * is not NULL, file events are appended to it as JSON lines. Opens its
 * files here, so call it before seccomp. Strings are copied.
 */
__attribute__((warn_unused_result)) int virtio_fs_create(struct virtio_dev **out, const char *dir,
                                                         const char *tag, const char *events_path);

#endif
