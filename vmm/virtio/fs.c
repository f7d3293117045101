/*
 * virtio-fs device (device id 26): queue 0 is the high-priority queue
 * (FORGET, INTERRUPT), queue 1 the one request queue. Each chain's readable
 * part is one FUSE request, its writable part takes the reply; the FUSE
 * server (fuse_server.c) does the work on the shared directory. Requests are
 * copied through two bounded buffers, so a chain larger than a request can
 * be (VMM_FUSE_BUF_SIZE) gets an error reply. Work per notify is bounded by
 * the queue size; more is resumed by a self-kick. File events go to a JSON
 * lines file when one is configured.
 */
#include "virtio.h"

#include "device.h"
#include "fuse_server.h"
#include "log.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/fuse.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define VIRTIO_ID_FS 26u
#define FS_QUEUE_SIZE 128u
#define FS_NQUEUES 2u
#define FS_TAG_LEN 36u

struct fs_config {
    uint8_t tag[FS_TAG_LEN];
    uint32_t num_request_queues; /* little endian */
} __attribute__((packed));

struct fs_dev {
    struct virtio_dev base;
    struct vmm_fuse *fuse;
    struct fs_config cfg;
    int events_fd;
    struct virtio_ratelimit rl;
    uint8_t *in;
    uint8_t *out;
    struct vq_chain chain;
};

static uint16_t fs_queue_max(struct virtio_dev *d, unsigned q)
{
    (void)d;
    (void)q;
    return FS_QUEUE_SIZE;
}

static uint64_t fs_features(struct virtio_dev *d)
{
    (void)d;
    return 0;
}

static void fs_config_read(struct virtio_dev *d, uint32_t off, uint8_t *data, uint32_t len)
{
    struct fs_dev *f = (struct fs_dev *)d;
    memcpy(data, (const uint8_t *)&f->cfg + off, len);
}

static void fs_config_write(struct virtio_dev *d, uint32_t off, const uint8_t *data, uint32_t len)
{
    (void)d;
    (void)off;
    (void)data;
    (void)len; /* read-only config */
}

/* Serve one popped chain; returns the bytes written into it. */
static uint32_t serve(void *ctx, struct vq_chain *c)
{
    struct fs_dev *f = ctx;
    size_t in_len = c->rd_len;
    size_t reply;
    if (in_len > VMM_FUSE_BUF_SIZE) {
        /* Too large to be ours: answer the header's unique with EINVAL. */
        struct fuse_in_header h;
        if (vmm_vq_chain_read(c, 0, &h, sizeof(h)) != sizeof(h))
            return 0;
        struct fuse_out_header o = {.len = sizeof(o), .error = -EINVAL, .unique = h.unique};
        if (virtio_log_allowed(&f->rl, 5))
            LOG_WARN("msg=\"virtio-fs request too large\" len=%zu", in_len);
        return (uint32_t)vmm_vq_chain_write(c, 0, &o, sizeof(o));
    }
    in_len = vmm_vq_chain_read(c, 0, f->in, in_len);
    size_t out_cap = c->wr_len < VMM_FUSE_BUF_SIZE ? c->wr_len : VMM_FUSE_BUF_SIZE;
    reply = vmm_fuse_handle(f->fuse, f->in, in_len, f->out, out_cap);
    if (reply == 0)
        return 0;
    return (uint32_t)vmm_vq_chain_write(c, 0, f->out, reply);
}

static void fs_notify(struct virtio_dev *d, unsigned qi)
{
    struct fs_dev *f = (struct fs_dev *)d;

    virtio_dev_serve_queue(d, qi, &f->chain, VQ_POP_READ_BEFORE_WRITE, &f->rl, serve, f);
}

static void fs_reset(struct virtio_dev *d)
{
    struct fs_dev *f = (struct fs_dev *)d;
    vmm_fuse_reset(f->fuse);
}

static void fs_destroy(struct virtio_dev *d)
{
    struct fs_dev *f = (struct fs_dev *)d;
    if (!f)
        return;
    vmm_fuse_destroy(f->fuse);
    if (f->events_fd >= 0)
        close(f->events_fd);
    free(f->in);
    free(f->out);
    free(f);
}

static const struct virtio_dev_ops fs_ops = {
    .name = "fs",
    .device_id = VIRTIO_ID_FS,
    .nqueues = FS_NQUEUES,
    .queue_max = fs_queue_max,
    .features = fs_features,
    .config_len = sizeof(struct fs_config),
    .config_read = fs_config_read,
    .config_write = fs_config_write,
    .notify = fs_notify,
    .reset = fs_reset,
    .destroy = fs_destroy,
};

/* The JSON-lines sink: one line per event, written with one write(2). */
static void write_event(void *opaque, const struct vmm_fs_event *ev)
{
    struct fs_dev *f = opaque;
    char *line = vmm_fs_event_json(ev);
    if (!line)
        return;
    size_t len = strlen(line);
    ssize_t n = write(f->events_fd, line, len);
    if (n != (ssize_t)len && virtio_log_allowed(&f->rl, 5))
        LOG_WARN("msg=\"virtio-fs: cannot write file event\" errno=%d", n < 0 ? errno : 0);
    free(line);
}

int virtio_fs_create(struct virtio_dev **out, const char *dir, const char *tag,
                     const char *events_path)
{
    int ret = 0;
    size_t tag_len = strlen(tag);
    struct fs_dev *f = NULL;
    if (tag_len == 0 || tag_len > FS_TAG_LEN)
        return -EINVAL;
    int root = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (root < 0)
        return -errno;
    f = calloc(1, sizeof(*f));
    if (!f) {
        close(root);
        return -ENOMEM;
    }
    f->events_fd = -1;
    f->in = malloc(VMM_FUSE_BUF_SIZE);
    f->out = malloc(VMM_FUSE_BUF_SIZE);
    if (!f->in || !f->out) {
        close(root);
        ret = -ENOMEM;
        goto out;
    }
    memcpy(f->cfg.tag, tag, tag_len);
    f->cfg.num_request_queues = htole32(1);
    if (events_path) {
        f->events_fd = open(events_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
        if (f->events_fd < 0) {
            ret = -errno;
            close(root);
            goto out;
        }
    }
    ret = vmm_fuse_create(&f->fuse, root, events_path ? write_event : NULL, f);
    if (ret)
        goto out;
    f->base.ops = &fs_ops;
out:
    if (ret) {
        fs_destroy(&f->base);
        return ret;
    }
    *out = &f->base;
    return 0;
}
