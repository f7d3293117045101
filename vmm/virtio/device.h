/*
 * What a device model and the virtio-mmio transport know of each other. A
 * device embeds struct virtio_dev and fills a `static const` ops table; the
 * transport only calls through that table. Register accesses arrive on vCPU
 * threads and are handled by the transport under its mutex; everything a
 * device does with its queues and back-end runs on the loop thread.
 */
#ifndef CAPSEM_VMM_VIRTIO_DEVICE_H
#define CAPSEM_VMM_VIRTIO_DEVICE_H

#include "queue.h"
#include "virtio.h"

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

/* Feature bits (virtio 1.1 section 6). */
#define VIRTIO_RING_F_INDIRECT_DESC 28
#define VIRTIO_RING_F_EVENT_IDX 29
#define VIRTIO_F_VERSION_1 32

/* Device status bits. */
#define VIRTIO_STATUS_ACKNOWLEDGE 1u
#define VIRTIO_STATUS_DRIVER 2u
#define VIRTIO_STATUS_DRIVER_OK 4u
#define VIRTIO_STATUS_FEATURES_OK 8u
#define VIRTIO_STATUS_NEEDS_RESET 64u
#define VIRTIO_STATUS_FAILED 128u

/* InterruptStatus bits. */
#define VIRTIO_INT_VRING 1u
#define VIRTIO_INT_CONFIG 2u

#define VIRTIO_MAX_QUEUES 8u

#define VIRTIO_ID_BLK 2u
#define VIRTIO_ID_RNG 4u
#define VIRTIO_ID_VSOCK 19u

struct virtio_dev;

struct virtio_dev_ops {
    const char *name;
    uint32_t device_id;
    unsigned nqueues;
    /* QueueNumMax for queue `q` (a power of two <= VQ_MAX_SIZE). */
    uint16_t (*queue_max)(struct virtio_dev *d, unsigned q);
    /* Device-specific feature bits (the transport adds the ring and version bits). */
    uint64_t (*features)(struct virtio_dev *d);
    /* Config space access at `off` (already bounds-checked against config_len). vCPU thread. */
    uint32_t config_len;
    void (*config_read)(struct virtio_dev *d, uint32_t off, uint8_t *data, uint32_t len);
    void (*config_write)(struct virtio_dev *d, uint32_t off, const uint8_t *data, uint32_t len);
    /* The transport is set up: register back-end fds on d->host->loop. Before the loop runs. */
    int (*attach)(struct virtio_dev *d);
    /* The guest notified queue `q` (loop thread, device active). */
    void (*notify)(struct virtio_dev *d, unsigned q);
    /* Handle the back-end's ready fds once (what the loop callback does); optional. */
    void (*poll)(struct virtio_dev *d);
    /* The guest reset the device: drop all back-end state (loop thread). */
    void (*reset)(struct virtio_dev *d);
    /* Free the device and its back-end (loop thread or after it stopped). */
    void (*destroy)(struct virtio_dev *d);
};

/* Base of every device model. The transport fills the fields after `ops`. */
struct virtio_dev {
    const struct virtio_dev_ops *ops;
    struct virtio_mmio *transport;
    const struct virtio_host *host;
    uint64_t features; /* negotiated, valid while active */
    unsigned seen_gen; /* reset generation the device state belongs to (loop thread) */
    struct vq vqs[VIRTIO_MAX_QUEUES]; /* runtime queue state (loop thread) */
};

/*
 * Called by a device at the top of every loop-thread entry point that is
 * not a queue notify (its own fds). Applies a pending reset and binds the
 * queues the guest made ready. Returns true when the device is running
 * (DRIVER_OK and not NEEDS_RESET).
 */
bool virtio_dev_begin(struct virtio_dev *d);
/* Raise the used-buffer interrupt. Loop thread. */
void virtio_dev_interrupt(struct virtio_dev *d);
/* Raise the interrupt for queue `q` if the guest wants one (event index/flags). */
void virtio_dev_interrupt_queue(struct virtio_dev *d, unsigned q);
/* Queue-level corruption: set NEEDS_RESET and raise a config interrupt. */
void virtio_dev_needs_reset(struct virtio_dev *d);
/* The device changed its config space: bump ConfigGeneration, raise a config interrupt. */
void virtio_dev_config_changed(struct virtio_dev *d);
/* Ask the loop thread to call notify(q) again later (bounded work per call). */
void virtio_dev_kick(struct virtio_dev *d, unsigned q);

/* Rate limit for guest-triggered log lines: at most `burst` per second. */
struct virtio_ratelimit {
    time_t sec;
    unsigned n;
};
bool virtio_log_allowed(struct virtio_ratelimit *rl, unsigned burst);

/*
 * Serve one request (the popped `c`) and return the bytes written into its
 * device-writable part. `ctx` is the device's own pointer.
 */
typedef uint32_t (*virtio_serve_fn)(void *ctx, struct vq_chain *c);

/*
 * The request loop of a device that answers each chain by itself (rng, blk,
 * fs): pop chains from queue `qi` with `pop_flags` into `c`, serve them, push
 * them used; a malformed chain is returned with length 0 and logged (rate
 * limited by `rl`), a corrupt queue sets NEEDS_RESET. Work per call is bounded
 * by the queue size (the rest is kicked to a later call); the interrupt is
 * raised once at the end if the guest wants it. Loop thread.
 */
void virtio_dev_serve_queue(struct virtio_dev *d, unsigned qi, struct vq_chain *c,
                            unsigned pop_flags, struct virtio_ratelimit *rl, virtio_serve_fn serve,
                            void *ctx);

#endif
