/*
 * virtio-vsock device (device id 19): moves packets between the guest's rx
 * and tx queues and the back-end (vsock_backend.h). Queue 0 (rx) receives
 * host -> guest packets, queue 1 (tx) carries guest -> host packets, queue 2
 * (event) is never used by us. Header and payload may be split across any
 * number of descriptors. Work per call is bounded by the queue size; more
 * is resumed by a self-kick. Interrupts go out once per batch, filtered by
 * the event index.
 */
#include "virtio.h"

#include "device.h"
#include "log.h"
#include "vsock_backend.h"

#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

#define VSOCK_QUEUE_SIZE 256u
#define Q_RX 0u
#define Q_TX 1u
#define Q_EVENT 2u

struct vsock_dev {
    struct virtio_dev base;
    uint64_t guest_cid;
    const struct vsock_backend_ops *bops;
    void *b;
    bool in_loop;
    bool tx_blocked; /* the back-end refused a packet; resume when it says so */
    struct virtio_ratelimit rl;
    struct vq_chain chain;
    struct iovec iov[VQ_MAX_SIZE];
};

static uint16_t vsock_queue_max(struct virtio_dev *d, unsigned q)
{
    (void)d;
    (void)q;
    return VSOCK_QUEUE_SIZE;
}

static uint64_t vsock_features(struct virtio_dev *d)
{
    (void)d;
    return 0; /* stream sockets only (no feature bit needed) */
}

static void vsock_config_read(struct virtio_dev *d, uint32_t off, uint8_t *data, uint32_t len)
{
    struct vsock_dev *v = (struct vsock_dev *)d;
    uint64_t cid = htole64(v->guest_cid);

    memcpy(data, (const uint8_t *)&cid + off, len);
}

static void queue_broken(struct vsock_dev *v, unsigned q)
{
    if (virtio_log_allowed(&v->rl, 5))
        LOG_WARN("msg=\"virtio-vsock queue corrupt\" queue=%u err=\"%s\"", q,
                 vmm_vq_err_str(v->base.vqs[q].err));
    virtio_dev_needs_reset(&v->base);
}

static void bad_chain(struct vsock_dev *v, unsigned q, const char *why)
{
    if (virtio_log_allowed(&v->rl, 5))
        LOG_WARN("msg=\"virtio-vsock request dropped\" queue=%u err=\"%s\"", q, why);
}

/* Host -> guest: fill rx buffers while the back-end has packets. */
static void process_rx(struct vsock_dev *v)
{
    struct vq *q = &v->base.vqs[Q_RX];
    struct vq_chain *c = &v->chain;
    unsigned budget = q->size;

    if (!q->ready)
        return;
    while (v->bops->has_pending(v->b)) {
        struct vsock_hdr h;
        uint8_t raw[VSOCK_HDR_SIZE];
        unsigned n;
        int ret = vmm_vq_pop(q, c, VQ_POP_READ_BEFORE_WRITE);

        if (ret == 0) {
            if (!vmm_vq_enable_notify(q))
                break; /* no buffers: the guest notifies rx when it adds some */
            continue;
        }
        if (ret == -EPROTO) {
            queue_broken(v, Q_RX);
            return;
        }
        if (ret == -EIO || c->nrd || c->wr_len < VSOCK_HDR_SIZE) {
            bad_chain(v, Q_RX, ret == -EIO ? vmm_vq_err_str(c->err) : "rx buffer too small");
            if (vmm_vq_push(q, c->head, 0) < 0)
                break;
            continue;
        }
        n = vmm_vq_chain_iov(c, true, VSOCK_HDR_SIZE, c->wr_len - VSOCK_HDR_SIZE, v->iov,
                             VQ_MAX_SIZE);
        if (v->bops->recv_pkt(v->b, &h, v->iov, n, c->wr_len - VSOCK_HDR_SIZE) < 0) {
            vmm_vq_unpop(q);
            break;
        }
        vsock_hdr_encode(&h, raw);
        vmm_vq_chain_write(c, 0, raw, sizeof(raw));
        if (vmm_vq_push(q, c->head, VSOCK_HDR_SIZE + h.len) < 0)
            break;
        if (--budget == 0) {
            virtio_dev_kick(&v->base, Q_RX);
            break;
        }
    }
    virtio_dev_interrupt_queue(&v->base, Q_RX);
}

/* Guest -> host: hand every tx packet to the back-end. */
static void process_tx(struct vsock_dev *v)
{
    struct vq *q = &v->base.vqs[Q_TX];
    struct vq_chain *c = &v->chain;
    unsigned budget = q->size;

    if (!q->ready)
        return;
    v->tx_blocked = false;
    for (;;) {
        struct vsock_hdr h;
        uint8_t raw[VSOCK_HDR_SIZE];
        unsigned n;
        int ret = vmm_vq_pop(q, c, 0);

        if (ret == 0) {
            if (!vmm_vq_enable_notify(q))
                break;
            continue;
        }
        if (ret == -EPROTO) {
            queue_broken(v, Q_TX);
            return;
        }
        if (ret == -EIO || c->rd_len < VSOCK_HDR_SIZE) {
            bad_chain(v, Q_TX, ret == -EIO ? vmm_vq_err_str(c->err) : "packet shorter than header");
        } else {
            vmm_vq_chain_read(c, 0, raw, sizeof(raw));
            vsock_hdr_decode(raw, &h);
            if (c->rd_len - VSOCK_HDR_SIZE != h.len) {
                bad_chain(v, Q_TX, "len does not match the buffers");
            } else {
                n = vmm_vq_chain_iov(c, false, VSOCK_HDR_SIZE, h.len, v->iov, VQ_MAX_SIZE);
                if (v->bops->send_pkt(v->b, &h, v->iov, n) == -EAGAIN) {
                    /* Back-pressure: leave the packet in the ring until the socket drains. */
                    vmm_vq_unpop(q);
                    v->tx_blocked = true;
                    break;
                }
            }
        }
        if (vmm_vq_push(q, c->head, 0) < 0)
            break;
        if (--budget == 0) {
            virtio_dev_kick(&v->base, Q_TX);
            break;
        }
    }
    virtio_dev_interrupt_queue(&v->base, Q_TX);
}

static void vsock_notify(struct virtio_dev *d, unsigned q)
{
    struct vsock_dev *v = (struct vsock_dev *)d;

    if (q == Q_TX && !v->tx_blocked)
        process_tx(v);
    /* tx may have produced replies; rx may have new buffers. */
    if (q == Q_TX || q == Q_RX)
        process_rx(v);
}

static void vsock_poll(struct virtio_dev *d)
{
    struct vsock_dev *v = (struct vsock_dev *)d;
    bool active = virtio_dev_begin(d);

    v->bops->poll(v->b);
    if (!active)
        return;
    if (v->bops->tx_unblocked(v->b))
        process_tx(v);
    process_rx(v);
}

static void on_backend(void *opaque, uint32_t events)
{
    (void)events;
    vsock_poll(opaque);
}

static int vsock_attach(struct virtio_dev *d)
{
    struct vsock_dev *v = (struct vsock_dev *)d;
    int ret;

    if (!d->host->loop)
        return 0;
    ret = loop_add(d->host->loop, v->bops->fd(v->b), EPOLLIN, on_backend, v);
    if (ret == 0)
        v->in_loop = true;
    return ret;
}

static void vsock_reset(struct virtio_dev *d)
{
    struct vsock_dev *v = (struct vsock_dev *)d;

    v->bops->reset(v->b);
    v->tx_blocked = false;
}

static void vsock_destroy(struct virtio_dev *d)
{
    struct vsock_dev *v = (struct vsock_dev *)d;

    if (!v)
        return;
    if (v->in_loop)
        loop_del(d->host->loop, v->bops->fd(v->b));
    if (v->b)
        v->bops->destroy(v->b);
    free(v);
}

static const struct virtio_dev_ops vsock_ops = {
    .name = "vsock",
    .device_id = VIRTIO_ID_VSOCK,
    .nqueues = 3,
    .queue_max = vsock_queue_max,
    .features = vsock_features,
    .config_len = 8,
    .config_read = vsock_config_read,
    .attach = vsock_attach,
    .notify = vsock_notify,
    .poll = vsock_poll,
    .reset = vsock_reset,
    .destroy = vsock_destroy,
};

int virtio_vsock_create(struct virtio_dev **out, uint64_t guest_cid, const char *uds_path)
{
    struct vsock_dev *v = NULL;
    struct vsock_muxer *m = NULL;
    int ret;

    ret = vsock_muxer_create(&m, guest_cid, uds_path);
    if (ret < 0)
        goto out;
    v = calloc(1, sizeof(*v));
    if (!v) {
        ret = -ENOMEM;
        goto out;
    }
    v->base.ops = &vsock_ops;
    v->guest_cid = guest_cid;
    v->bops = &vsock_muxer_ops;
    v->b = m;
    m = NULL;
    *out = &v->base;
out:
    if (m)
        vsock_muxer_ops.destroy(m);
    return ret;
}
