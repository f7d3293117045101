/*
 * Split virtqueue (virtio 1.1 section 2.6) as seen by the device side: pop
 * available descriptor chains (with indirect tables), push used elements,
 * and decide when the guest wants an interrupt (event index or flags). Every
 * guest address goes through vmm_mem_ptr(); every malformed chain is reported
 * as a named vq_err, and every loop is bounded by the queue size. A queue is
 * used by one thread at a time (the VMM loop thread).
 */
#ifndef CAPSEM_VMM_VIRTIO_QUEUE_H
#define CAPSEM_VMM_VIRTIO_QUEUE_H

#include "memory.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

/* Largest queue size any of our devices offers (QueueNumMax). */
#define VQ_MAX_SIZE 1024u
/* Hard cap on the bytes one chain may describe. */
#define VQ_MAX_CHAIN_BYTES (64u << 20)

#define VRING_DESC_F_NEXT 1u
#define VRING_DESC_F_WRITE 2u
#define VRING_DESC_F_INDIRECT 4u
#define VRING_AVAIL_F_NO_INTERRUPT 1u
#define VRING_USED_F_NO_NOTIFY 1u

/* Every way a guest can corrupt a chain or a queue. */
enum vq_err {
    VQ_OK = 0,
    VQ_ERR_DESC_INDEX,        /* a descriptor index (head or next) >= queue size */
    VQ_ERR_LOOP,              /* chain longer than the queue size (a loop) */
    VQ_ERR_NESTED_INDIRECT,   /* indirect flag inside an indirect table */
    VQ_ERR_INDIRECT_NEXT,     /* indirect and next flags on one descriptor */
    VQ_ERR_INDIRECT_LEN,      /* indirect table length 0, not a multiple of 16, too large */
    VQ_ERR_ADDR,              /* a buffer or table outside guest RAM */
    VQ_ERR_LEN_OVERFLOW,      /* addr + len wraps around */
    VQ_ERR_TOTAL_LEN,         /* the chain describes more than VQ_MAX_CHAIN_BYTES */
    VQ_ERR_WRITE_BEFORE_READ, /* readable descriptor after a writable one */
    VQ_ERR_AVAIL_IDX,         /* avail idx moved more than the queue size */
    VQ_ERR_RING_ADDR,         /* ring outside guest RAM or misaligned */
    VQ_ERR_NOT_READY,         /* queue used before it was set up */
    VQ_ERR_COUNT
};

/* Runtime state of one queue. Loop thread only once bound. */
struct vq {
    const struct vmm_mem *mem;
    uint16_t size;
    bool ready;
    bool event_idx;
    bool broken;     /* a queue-level error was seen; nothing more is popped */
    enum vq_err err; /* the queue-level error */
    uint8_t *desc;   /* host pointers to the rings (checked at bind) */
    uint8_t *avail;
    uint8_t *used;
    uint16_t last_avail;     /* next avail ring entry to pop */
    uint16_t used_idx;       /* our copy of used->idx */
    uint16_t signalled_used; /* used idx at the last interrupt */
    bool signalled_valid;
};

/* A popped chain: host views of its readable then writable buffers. */
struct vq_chain {
    uint16_t head;
    enum vq_err err; /* why the last pop of this chain failed */
    unsigned nrd, nwr;
    size_t rd_len, wr_len;
    struct iovec rd[VQ_MAX_SIZE];
    struct iovec wr[VQ_MAX_SIZE];
};

/* Flags for vmm_vq_pop(). */
#define VQ_POP_READ_BEFORE_WRITE 1u /* a readable buffer after a writable one is an error */

/*
 * Bind `q` to rings at guest physical desc/avail/used for `size` entries
 * (a power of two <= VQ_MAX_SIZE). `mem` is borrowed. 0, or -EINVAL with
 * q->err set (VQ_ERR_RING_ADDR) when a ring is outside RAM or misaligned.
 */
__attribute__((warn_unused_result)) int vmm_vq_bind(struct vq *q, const struct vmm_mem *mem,
                                                    uint16_t size, uint64_t desc, uint64_t avail,
                                                    uint64_t used, bool event_idx);
/* Forget the rings (device reset). */
void vmm_vq_unbind(struct vq *q);

/*
 * Pop the next available chain into `c`. Returns 1 when a chain was popped,
 * 0 when the ring is empty, -EIO when the chain is malformed (c->err names
 * why; c->head is valid, the chain is consumed and the caller should push it
 * back with length 0), or -EPROTO when the queue itself is corrupt (q->err,
 * q->broken set; the device should ask for a reset).
 */
__attribute__((warn_unused_result)) int vmm_vq_pop(struct vq *q, struct vq_chain *c,
                                                   unsigned flags);
/* Give back the last popped chain (it will be popped again). */
void vmm_vq_unpop(struct vq *q);
/* Mark chain `head` used with `len` bytes written. 0, or -EINVAL when not ready. */
__attribute__((warn_unused_result)) int vmm_vq_push(struct vq *q, uint16_t head, uint32_t len);
/* True when the guest asked to be interrupted for the pushes since the last true. */
bool vmm_vq_should_interrupt(struct vq *q);
/* True when the avail ring holds chains we have not popped. */
bool vmm_vq_has_avail(struct vq *q);
/*
 * Ask the guest to notify us at the next new buffer (event index: write
 * avail_event). Returns true when buffers arrived meanwhile (pop again).
 */
bool vmm_vq_enable_notify(struct vq *q);
/* A short name for `e`, for logs and tests. */
const char *vmm_vq_err_str(enum vq_err e);

/* Copy up to `len` bytes at offset `off` of the chain's readable part into `dst`. Returns bytes
 * copied. */
size_t vmm_vq_chain_read(const struct vq_chain *c, size_t off, void *dst, size_t len);
/* Copy `len` bytes of `src` into the writable part at offset `off`. Returns bytes copied. */
size_t vmm_vq_chain_write(const struct vq_chain *c, size_t off, const void *src, size_t len);
/*
 * Describe bytes [off, off+len) of the readable (`writable` false) or
 * writable part as at most `max` iovecs in `out`. Returns the count; the
 * described range is clipped to what the chain holds.
 */
unsigned vmm_vq_chain_iov(const struct vq_chain *c, bool writable, size_t off, size_t len,
                          struct iovec *out, unsigned max);

#endif
