/*
 * virtio-mmio transport, version 2 (virtio 1.1 section 4.2). Guest register
 * accesses arrive on vCPU threads and only touch the register file under
 * `lock`; they never run device work. Queue notifications travel to the loop
 * thread through one eventfd per queue (wired to KVM_IOEVENTFD when the host
 * offers it), status changes through a control eventfd. A reset bumps a
 * generation counter; the loop thread notices it at its next entry and
 * resets the device there, so back-end state is only ever touched by the
 * loop thread.
 */
#include "virtio.h"

#include "device.h"
#include "log.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define REG_MAGIC 0x000
#define REG_VERSION 0x004
#define REG_DEVICE_ID 0x008
#define REG_VENDOR_ID 0x00c
#define REG_DEVICE_FEATURES 0x010
#define REG_DEVICE_FEATURES_SEL 0x014
#define REG_DRIVER_FEATURES 0x020
#define REG_DRIVER_FEATURES_SEL 0x024
#define REG_QUEUE_SEL 0x030
#define REG_QUEUE_NUM_MAX 0x034
#define REG_QUEUE_NUM 0x038
#define REG_QUEUE_READY 0x044
#define REG_QUEUE_NOTIFY 0x050
#define REG_INTERRUPT_STATUS 0x060
#define REG_INTERRUPT_ACK 0x064
#define REG_STATUS 0x070
#define REG_QUEUE_DESC_LOW 0x080
#define REG_QUEUE_DESC_HIGH 0x084
#define REG_QUEUE_DRIVER_LOW 0x090
#define REG_QUEUE_DRIVER_HIGH 0x094
#define REG_QUEUE_DEVICE_LOW 0x0a0
#define REG_QUEUE_DEVICE_HIGH 0x0a4
#define REG_CONFIG_GENERATION 0x0fc
#define REG_CONFIG 0x100

#define MMIO_MAGIC 0x74726976u  /* "virt" */
#define MMIO_VENDOR 0x4d455343u /* "CSEM" */

struct queue_cfg {
    uint16_t num;
    bool ready;
    uint64_t desc, driver, device;
};

struct notify_ctx {
    struct virtio_mmio *t;
    unsigned q;
};

struct virtio_mmio {
    struct virtio_dev *dev;
    struct virtio_host host;
    uint64_t base;
    uint32_t irq;
    int irqfd;
    int ctl_fd;
    int notify_fd[VIRTIO_MAX_QUEUES];
    struct notify_ctx nctx[VIRTIO_MAX_QUEUES];
    bool in_loop[VIRTIO_MAX_QUEUES + 1];
    uint64_t offered;

    /* `lock` guards every field below (shared by vCPU threads and the loop thread). */
    pthread_mutex_t lock;
    uint32_t status;
    uint32_t dev_feat_sel, drv_feat_sel, queue_sel;
    uint64_t driver_features;
    uint32_t int_status;
    uint32_t config_gen;
    unsigned gen; /* bumped by every reset */
    struct queue_cfg q[VIRTIO_MAX_QUEUES];
};

static struct virtio_ratelimit mmio_rl;

bool virtio_log_allowed(struct virtio_ratelimit *rl, unsigned burst)
{
    struct timespec ts;
    bool ok;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    if (__atomic_load_n(&rl->sec, __ATOMIC_RELAXED) != ts.tv_sec) {
        __atomic_store_n(&rl->sec, ts.tv_sec, __ATOMIC_RELAXED);
        __atomic_store_n(&rl->n, 0, __ATOMIC_RELAXED);
    }
    ok = __atomic_fetch_add(&rl->n, 1, __ATOMIC_RELAXED) < burst;
    return ok;
}

static void signal_fd(int fd)
{
    uint64_t one = 1;

    /* An eventfd counter cannot overflow in practice; a failure only loses a wakeup. */
    if (write(fd, &one, sizeof(one)) < 0 && virtio_log_allowed(&mmio_rl, 5))
        LOG_WARN("msg=\"virtio eventfd write failed\" err=%d", errno);
}

static void drain_fd(int fd)
{
    uint64_t v;

    if (read(fd, &v, sizeof(v)) < 0 && errno != EAGAIN && virtio_log_allowed(&mmio_rl, 5))
        LOG_WARN("msg=\"virtio eventfd read failed\" err=%d", errno);
}

/* ---- loop-thread side ---- */

bool virtio_dev_begin(struct virtio_dev *d)
{
    struct virtio_mmio *t = d->transport;
    struct queue_cfg q[VIRTIO_MAX_QUEUES];
    unsigned gen, nq = d->ops->nqueues;
    uint32_t status;
    uint64_t features;

    pthread_mutex_lock(&t->lock);
    gen = t->gen;
    status = t->status;
    features = t->driver_features;
    memcpy(q, t->q, sizeof(q));
    pthread_mutex_unlock(&t->lock);

    if (gen != d->seen_gen) {
        for (unsigned i = 0; i < nq; i++)
            vmm_vq_unbind(&d->vqs[i]);
        d->ops->reset(d);
        d->seen_gen = gen;
    }
    if (!(status & VIRTIO_STATUS_DRIVER_OK) || (status & VIRTIO_STATUS_NEEDS_RESET))
        return false;
    d->features = features;
    for (unsigned i = 0; i < nq; i++) {
        struct vq *vq = &d->vqs[i];
        bool evi = features & (1ull << VIRTIO_RING_F_EVENT_IDX);

        if (!q[i].ready || vq->ready)
            continue;
        if (vmm_vq_bind(vq, t->host.mem, q[i].num, q[i].desc, q[i].driver, q[i].device, evi) < 0) {
            LOG_WARN("msg=\"virtio queue setup rejected\" dev=%s queue=%u err=\"%s\"", d->ops->name,
                     i, vmm_vq_err_str(vq->err));
            virtio_dev_needs_reset(d);
            return false;
        }
    }
    return true;
}

static void raise_irq(struct virtio_mmio *t, uint32_t bits)
{
    pthread_mutex_lock(&t->lock);
    t->int_status |= bits;
    pthread_mutex_unlock(&t->lock);
    signal_fd(t->irqfd);
}

void virtio_dev_interrupt(struct virtio_dev *d)
{
    raise_irq(d->transport, VIRTIO_INT_VRING);
}

void virtio_dev_interrupt_queue(struct virtio_dev *d, unsigned q)
{
    if (q < d->ops->nqueues && vmm_vq_should_interrupt(&d->vqs[q]))
        raise_irq(d->transport, VIRTIO_INT_VRING);
}

void virtio_dev_needs_reset(struct virtio_dev *d)
{
    struct virtio_mmio *t = d->transport;

    pthread_mutex_lock(&t->lock);
    t->status |= VIRTIO_STATUS_NEEDS_RESET;
    pthread_mutex_unlock(&t->lock);
    raise_irq(t, VIRTIO_INT_CONFIG);
}

void virtio_dev_config_changed(struct virtio_dev *d)
{
    struct virtio_mmio *t = d->transport;

    pthread_mutex_lock(&t->lock);
    t->config_gen++;
    pthread_mutex_unlock(&t->lock);
    raise_irq(t, VIRTIO_INT_CONFIG);
}

void virtio_dev_kick(struct virtio_dev *d, unsigned q)
{
    if (q < d->ops->nqueues)
        signal_fd(d->transport->notify_fd[q]);
}

void virtio_dev_serve_queue(struct virtio_dev *d, unsigned qi, struct vq_chain *c,
                            unsigned pop_flags, struct virtio_ratelimit *rl, virtio_serve_fn serve,
                            void *ctx)
{
    struct vq *q = &d->vqs[qi];
    unsigned budget = q->size;

    for (;;) {
        int ret = vmm_vq_pop(q, c, pop_flags);
        uint32_t written = 0;

        if (ret == 0) {
            if (!vmm_vq_enable_notify(q))
                break;
            continue;
        }
        if (ret == -EPROTO) {
            if (virtio_log_allowed(rl, 5))
                LOG_WARN("msg=\"virtio-%s queue corrupt\" err=\"%s\"", d->ops->name,
                         vmm_vq_err_str(q->err));
            virtio_dev_needs_reset(d);
            return;
        }
        if (ret == -EIO) {
            if (virtio_log_allowed(rl, 5))
                LOG_WARN("msg=\"virtio-%s bad chain\" err=\"%s\"", d->ops->name,
                         vmm_vq_err_str(c->err));
        } else {
            written = serve(ctx, c);
        }
        if (vmm_vq_push(q, c->head, written) < 0)
            break;
        if (--budget == 0) {
            virtio_dev_kick(d, qi);
            break;
        }
    }
    virtio_dev_interrupt_queue(d, qi);
}

static void on_notify(void *opaque, uint32_t events)
{
    struct notify_ctx *c = opaque;
    struct virtio_dev *d = c->t->dev;

    (void)events;
    drain_fd(c->t->notify_fd[c->q]);
    if (virtio_dev_begin(d) && d->vqs[c->q].ready)
        d->ops->notify(d, c->q);
}

static void on_ctl(void *opaque, uint32_t events)
{
    struct virtio_mmio *t = opaque;
    struct virtio_dev *d = t->dev;

    (void)events;
    drain_fd(t->ctl_fd);
    /* Applies a reset; after DRIVER_OK let the device look at every queue once. */
    if (!virtio_dev_begin(d))
        return;
    for (unsigned i = 0; i < d->ops->nqueues; i++)
        if (d->vqs[i].ready)
            d->ops->notify(d, i);
}

void virtio_mmio_poll(struct virtio_mmio *t)
{
    struct virtio_dev *d = t->dev;
    uint64_t v;

    if (read(t->ctl_fd, &v, sizeof(v)) == sizeof(v))
        on_ctl(t, EPOLLIN);
    for (unsigned i = 0; i < d->ops->nqueues; i++) {
        if (read(t->notify_fd[i], &v, sizeof(v)) == sizeof(v)) {
            signal_fd(t->notify_fd[i]); /* on_notify drains it again */
            on_notify(&t->nctx[i], EPOLLIN);
        }
    }
    if (d->ops->poll)
        d->ops->poll(d);
}

/* ---- vCPU-thread side ---- */

static uint32_t get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put_le32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static void set_low(uint64_t *r, uint32_t v)
{
    *r = (*r & 0xffffffff00000000ull) | v;
}

static void set_high(uint64_t *r, uint32_t v)
{
    *r = (*r & 0xffffffffull) | (uint64_t)v << 32;
}

/* Caller holds t->lock. */
static uint32_t reg_read(struct virtio_mmio *t, uint64_t off)
{
    const struct virtio_dev_ops *ops = t->dev->ops;
    struct queue_cfg *q = t->queue_sel < ops->nqueues ? &t->q[t->queue_sel] : NULL;

    switch (off) {
    case REG_MAGIC:
        return MMIO_MAGIC;
    case REG_VERSION:
        return 2;
    case REG_DEVICE_ID:
        return ops->device_id;
    case REG_VENDOR_ID:
        return MMIO_VENDOR;
    case REG_DEVICE_FEATURES:
        return t->dev_feat_sel < 2 ? (uint32_t)(t->offered >> (32 * t->dev_feat_sel)) : 0;
    case REG_QUEUE_NUM_MAX:
        return q ? ops->queue_max(t->dev, t->queue_sel) : 0;
    case REG_QUEUE_READY:
        return q ? q->ready : 0;
    case REG_INTERRUPT_STATUS:
        return t->int_status;
    case REG_STATUS:
        return t->status;
    case REG_CONFIG_GENERATION:
        return t->config_gen;
    default:
        return 0;
    }
}

static void reset_locked(struct virtio_mmio *t)
{
    t->status = 0;
    t->dev_feat_sel = t->drv_feat_sel = t->queue_sel = 0;
    t->driver_features = 0;
    t->int_status = 0;
    memset(t->q, 0, sizeof(t->q));
    t->gen++;
}

/* Caller holds t->lock. Returns true when the loop thread must look at the device. */
static bool status_write(struct virtio_mmio *t, uint32_t v)
{
    uint32_t added;

    if (v == 0) {
        reset_locked(t);
        return true;
    }
    added = v & ~t->status;
    if (added & VIRTIO_STATUS_FEATURES_OK) {
        uint64_t f = t->driver_features;

        /* Refuse (leave FEATURES_OK clear) unless the driver is modern and asked for nothing extra.
         */
        if ((f & ~t->offered) || !(f & (1ull << VIRTIO_F_VERSION_1))) {
            if (virtio_log_allowed(&mmio_rl, 5))
                LOG_WARN("msg=\"virtio features refused\" dev=%s features=0x%" PRIx64,
                         t->dev->ops->name, f);
            v &= ~VIRTIO_STATUS_FEATURES_OK;
            added &= ~VIRTIO_STATUS_FEATURES_OK;
        }
    }
    if ((added & VIRTIO_STATUS_DRIVER_OK) && !(t->status & VIRTIO_STATUS_FEATURES_OK) &&
        !(v & VIRTIO_STATUS_FEATURES_OK)) {
        v &= ~VIRTIO_STATUS_DRIVER_OK;
        added &= ~VIRTIO_STATUS_DRIVER_OK;
    }
    /* The driver only ever adds bits; NEEDS_RESET stays until a reset. */
    t->status |= v;
    return added & VIRTIO_STATUS_DRIVER_OK;
}

static bool queue_num_ok(struct virtio_mmio *t, struct queue_cfg *q)
{
    uint16_t max = t->dev->ops->queue_max(t->dev, t->queue_sel);

    return q->num && q->num <= max && !(q->num & (q->num - 1));
}

/* Caller holds t->lock. Returns the queue index to notify, or -1. */
static int reg_write(struct virtio_mmio *t, uint64_t off, uint32_t v, bool *ctl)
{
    const struct virtio_dev_ops *ops = t->dev->ops;
    struct queue_cfg *q = t->queue_sel < ops->nqueues ? &t->q[t->queue_sel] : NULL;
    bool features_open = !(t->status & VIRTIO_STATUS_FEATURES_OK);

    switch (off) {
    case REG_DEVICE_FEATURES_SEL:
        t->dev_feat_sel = v;
        break;
    case REG_DRIVER_FEATURES:
        if (features_open && t->drv_feat_sel < 2) {
            if (t->drv_feat_sel)
                set_high(&t->driver_features, v);
            else
                set_low(&t->driver_features, v);
        }
        break;
    case REG_DRIVER_FEATURES_SEL:
        t->drv_feat_sel = v;
        break;
    case REG_QUEUE_SEL:
        t->queue_sel = v;
        break;
    case REG_QUEUE_NUM:
        if (q && !q->ready)
            q->num = v > UINT16_MAX ? 0 : (uint16_t)v;
        break;
    case REG_QUEUE_READY:
        if (!q)
            break;
        if (v == 0) {
            q->ready = false;
        } else if (queue_num_ok(t, q)) {
            q->ready = true;
        } else if (virtio_log_allowed(&mmio_rl, 5)) {
            LOG_WARN("msg=\"virtio queue size rejected\" dev=%s queue=%u num=%u", ops->name,
                     t->queue_sel, q->num);
        }
        break;
    case REG_QUEUE_NOTIFY:
        if (v < ops->nqueues)
            return (int)v;
        break;
    case REG_INTERRUPT_ACK:
        t->int_status &= ~v;
        break;
    case REG_STATUS:
        *ctl = status_write(t, v);
        break;
    case REG_QUEUE_DESC_LOW:
    case REG_QUEUE_DESC_HIGH:
    case REG_QUEUE_DRIVER_LOW:
    case REG_QUEUE_DRIVER_HIGH:
    case REG_QUEUE_DEVICE_LOW:
    case REG_QUEUE_DEVICE_HIGH: {
        uint64_t *r;

        if (!q || q->ready)
            break;
        r = off < REG_QUEUE_DRIVER_LOW   ? &q->desc
            : off < REG_QUEUE_DEVICE_LOW ? &q->driver
                                         : &q->device;
        if (off & 4)
            set_high(r, v);
        else
            set_low(r, v);
        break;
    }
    default:
        if (virtio_log_allowed(&mmio_rl, 5))
            LOG_DEBUG("msg=\"virtio write to unknown register\" dev=%s off=0x%" PRIx64, ops->name,
                      off);
        break;
    }
    return -1;
}

void virtio_mmio_access(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
    struct virtio_mmio *t = opaque;
    const struct virtio_dev_ops *ops = t->dev->ops;
    int notify = -1;
    bool ctl = false;

    if (!is_write)
        memset(data, 0, len <= 8 ? len : 8);
    if (len == 0 || len > 8 || offset >= VIRTIO_MMIO_WINDOW)
        return;

    pthread_mutex_lock(&t->lock);
    if (offset >= REG_CONFIG) {
        uint64_t off = offset - REG_CONFIG;

        if (off + len <= ops->config_len) {
            if (is_write && ops->config_write)
                ops->config_write(t->dev, (uint32_t)off, data, len);
            else if (!is_write && ops->config_read)
                ops->config_read(t->dev, (uint32_t)off, data, len);
        }
    } else if (len != 4 || (offset & 3)) {
        /* Registers are 32-bit only (spec 4.2.2.2); anything else is ignored. */
        if (virtio_log_allowed(&mmio_rl, 5))
            LOG_DEBUG("msg=\"virtio bad register access\" dev=%s off=0x%" PRIx64 " len=%u",
                      ops->name, offset, len);
    } else if (is_write) {
        notify = reg_write(t, offset, get_le32(data), &ctl);
    } else {
        put_le32(data, reg_read(t, offset));
    }
    pthread_mutex_unlock(&t->lock);

    if (notify >= 0)
        signal_fd(t->notify_fd[notify]);
    if (ctl)
        signal_fd(t->ctl_fd);
}

int virtio_mmio_cmdline(const struct virtio_mmio *t, char *buf, size_t size)
{
    int n = snprintf(buf, size, "virtio_mmio.device=4K@0x%" PRIx64 ":%" PRIu32, t->base, t->irq);

    if (n < 0 || (size_t)n >= size)
        return -ENOSPC;
    return n;
}

int virtio_mmio_create(struct virtio_mmio **out, const struct virtio_host *host,
                       struct virtio_dev *dev, uint64_t base, uint32_t irq, int irqfd)
{
    struct virtio_mmio *t = NULL;
    unsigned nq = dev->ops->nqueues;
    int ret = 0;

    if (nq == 0 || nq > VIRTIO_MAX_QUEUES || !host || !host->mem) {
        ret = -EINVAL;
        goto out;
    }
    t = calloc(1, sizeof(*t));
    if (!t) {
        ret = -ENOMEM;
        goto out;
    }
    t->dev = dev;
    t->host = *host;
    t->base = base;
    t->irq = irq;
    t->irqfd = irqfd;
    t->ctl_fd = -1;
    for (unsigned i = 0; i < VIRTIO_MAX_QUEUES; i++)
        t->notify_fd[i] = -1;
    pthread_mutex_init(&t->lock, NULL);
    t->offered = dev->ops->features(dev) | 1ull << VIRTIO_F_VERSION_1 |
                 1ull << VIRTIO_RING_F_INDIRECT_DESC | 1ull << VIRTIO_RING_F_EVENT_IDX;
    dev->transport = t;
    dev->host = &t->host;

    t->ctl_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (t->ctl_fd < 0) {
        ret = -errno;
        goto out;
    }
    for (unsigned i = 0; i < nq; i++) {
        t->nctx[i] = (struct notify_ctx){t, i};
        t->notify_fd[i] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (t->notify_fd[i] < 0) {
            ret = -errno;
            goto out;
        }
        if (host->add_ioeventfd) {
            ret = host->add_ioeventfd(host->opaque, base + REG_QUEUE_NOTIFY, i, t->notify_fd[i]);
            if (ret < 0)
                goto out;
        }
    }
    if (host->loop) {
        ret = loop_add(host->loop, t->ctl_fd, EPOLLIN, on_ctl, t);
        if (ret < 0)
            goto out;
        t->in_loop[VIRTIO_MAX_QUEUES] = true;
        for (unsigned i = 0; i < nq; i++) {
            ret = loop_add(host->loop, t->notify_fd[i], EPOLLIN, on_notify, &t->nctx[i]);
            if (ret < 0)
                goto out;
            t->in_loop[i] = true;
        }
    }
    if (dev->ops->attach) {
        ret = dev->ops->attach(dev);
        if (ret < 0)
            goto out;
    }
    *out = t;
    t = NULL;
out:
    if (ret < 0) {
        LOG_ERR("msg=\"virtio device setup failed\" dev=%s err=%d", dev->ops->name, ret);
        if (t) {
            virtio_mmio_destroy(t);
        } else {
            dev->ops->destroy(dev);
            if (irqfd >= 0)
                close(irqfd);
        }
    }
    return ret;
}

void virtio_mmio_destroy(struct virtio_mmio *t)
{
    if (!t)
        return;
    for (unsigned i = 0; i < VIRTIO_MAX_QUEUES; i++) {
        if (t->in_loop[i])
            loop_del(t->host.loop, t->notify_fd[i]);
        if (t->notify_fd[i] >= 0)
            close(t->notify_fd[i]);
    }
    if (t->in_loop[VIRTIO_MAX_QUEUES])
        loop_del(t->host.loop, t->ctl_fd);
    if (t->ctl_fd >= 0)
        close(t->ctl_fd);
    t->dev->ops->destroy(t->dev);
    if (t->irqfd >= 0)
        close(t->irqfd);
    pthread_mutex_destroy(&t->lock);
    free(t);
}
