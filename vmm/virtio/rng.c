/*
 * virtio-rng (device id 4): one request queue whose writable buffers are
 * filled from getrandom(2). Work per notify is bounded by the queue size;
 * the rest is picked up by a self-kick so one busy guest cannot starve the
 * loop.
 */
#include "virtio.h"

#include "device.h"
#include "log.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/random.h>

#define RNG_QUEUE_SIZE 256u

struct rng_dev {
    struct virtio_dev base;
    struct virtio_ratelimit rl;
    struct vq_chain chain;
};

static uint16_t rng_queue_max(struct virtio_dev *d, unsigned q)
{
    (void)d;
    (void)q;
    return RNG_QUEUE_SIZE;
}

static uint64_t rng_features(struct virtio_dev *d)
{
    (void)d;
    return 0;
}

/* Fill `len` bytes; returns bytes filled (short only if getrandom fails). */
static size_t fill_random(void *p, size_t len)
{
    size_t done = 0;

    while (done < len) {
        ssize_t n = getrandom((uint8_t *)p + done, len - done, 0);

        if (n < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        done += (size_t)n;
    }
    return done;
}

static uint32_t serve_rng(void *ctx, struct vq_chain *c)
{
    uint32_t written = 0;

    (void)ctx;
    for (unsigned i = 0; i < c->nwr; i++) {
        size_t n = fill_random(c->wr[i].iov_base, c->wr[i].iov_len);

        written += (uint32_t)n;
        if (n < c->wr[i].iov_len)
            break;
    }
    return written;
}

static void rng_notify(struct virtio_dev *d, unsigned qi)
{
    struct rng_dev *r = (struct rng_dev *)d;

    virtio_dev_serve_queue(d, qi, &r->chain, 0, &r->rl, serve_rng, r);
}

static void rng_reset(struct virtio_dev *d)
{
    (void)d;
}

static void rng_destroy(struct virtio_dev *d)
{
    free(d);
}

static const struct virtio_dev_ops rng_ops = {
    .name = "rng",
    .device_id = VIRTIO_ID_RNG,
    .nqueues = 1,
    .queue_max = rng_queue_max,
    .features = rng_features,
    .config_len = 0,
    .notify = rng_notify,
    .reset = rng_reset,
    .destroy = rng_destroy,
};

int virtio_rng_create(struct virtio_dev **out)
{
    struct rng_dev *r = calloc(1, sizeof(*r));

    if (!r)
        return -ENOMEM;
    r->base.ops = &rng_ops;
    *out = &r->base;
    return 0;
}
