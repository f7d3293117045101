/*
 * virtio-blk (device id 2): one request queue over a disk image file. A
 * request is a 16-byte readable header (type, reserved, sector), the data
 * buffers (readable for OUT, writable for IN and GET_ID) and one writable
 * status byte at the very end. IN, OUT, FLUSH and GET_ID are served; other
 * types get VIRTIO_BLK_S_UNSUPP. A read-only disk offers VIRTIO_BLK_F_RO and
 * refuses OUT with VIRTIO_BLK_S_IOERR. Every sector range is checked against
 * the capacity (without overflow) before any I/O, and a malformed request is
 * answered with IOERR, or with used length 0 when it has no status byte;
 * nothing a guest sends stops the device. I/O is plain pread/pwrite on the
 * loop thread for now: a slow disk stalls the other devices for the duration
 * of one request (bounded by the 64 MiB chain cap), which is acceptable for
 * an image in the page cache but is a candidate for an I/O thread later.
 */
#include "virtio.h"

#include "device.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define BLK_QUEUE_SIZE 256u
#define BLK_SECTOR 512u
/* Segments per request we tell the guest (queue size minus header and status). */
#define BLK_SEG_MAX (BLK_QUEUE_SIZE - 2u)

/* Feature bits (virtio 1.1 section 5.2.3). */
#define VIRTIO_BLK_F_SEG_MAX 2
#define VIRTIO_BLK_F_RO 5
#define VIRTIO_BLK_F_FLUSH 9

struct blk_dev {
    struct virtio_dev base;
    int fd;
    bool ro;
    uint64_t capacity; /* in 512-byte sectors */
    char id[VIRTIO_BLK_ID_BYTES];
    struct virtio_ratelimit rl;
    struct vq_chain chain;
    struct iovec iov[VQ_MAX_SIZE];
};

static uint16_t blk_queue_max(struct virtio_dev *d, unsigned q)
{
    (void)d;
    (void)q;
    return BLK_QUEUE_SIZE;
}

static uint64_t blk_features(struct virtio_dev *d)
{
    const struct blk_dev *b = (const struct blk_dev *)d;
    uint64_t f = (1ull << VIRTIO_BLK_F_SEG_MAX) | (1ull << VIRTIO_BLK_F_FLUSH);

    if (b->ro)
        f |= 1ull << VIRTIO_BLK_F_RO;
    return f;
}

/* struct virtio_blk_config up to blk_size: capacity, size_max, seg_max, geometry, blk_size. */
#define BLK_CONFIG_LEN 24u

static void blk_config_read(struct virtio_dev *d, uint32_t off, uint8_t *data, uint32_t len)
{
    const struct blk_dev *b = (const struct blk_dev *)d;
    uint8_t cfg[BLK_CONFIG_LEN] = {0};
    uint32_t seg_max = BLK_SEG_MAX, blk_size = BLK_SECTOR;

    memcpy(cfg, &b->capacity, 8);
    memcpy(cfg + 12, &seg_max, 4);
    memcpy(cfg + 20, &blk_size, 4);
    memcpy(data, cfg + off, len);
}

static void blk_config_write(struct virtio_dev *d, uint32_t off, const uint8_t *data, uint32_t len)
{
    /* Nothing in our config space is writable (no writeback toggle offered). */
    (void)d;
    (void)off;
    (void)data;
    (void)len;
}

static void blk_warn(struct blk_dev *b, const char *what, uint64_t sector, size_t len)
{
    if (virtio_log_allowed(&b->rl, 5))
        LOG_WARN("msg=\"virtio-blk bad request\" why=\"%s\" sector=%llu len=%zu", what,
                 (unsigned long long)sector, len);
}

/*
 * True when [sector, sector + len/512) lies inside the disk. `len` must be a
 * whole number of sectors.
 */
static bool blk_range_ok(const struct blk_dev *b, uint64_t sector, size_t len)
{
    uint64_t n = len / BLK_SECTOR;

    if (len % BLK_SECTOR)
        return false;
    return sector <= b->capacity && n <= b->capacity - sector;
}

/* Read or write `niov` buffers at byte offset `pos`. 0 or -errno; reads past EOF give zeros. */
static int blk_io(struct blk_dev *b, bool write, unsigned niov, uint64_t pos)
{
    for (unsigned i = 0; i < niov; i++) {
        uint8_t *p = b->iov[i].iov_base;
        size_t left = b->iov[i].iov_len;

        while (left) {
            ssize_t n =
                write ? pwrite(b->fd, p, left, (off_t)pos) : pread(b->fd, p, left, (off_t)pos);

            if (n < 0) {
                if (errno == EINTR)
                    continue;
                return -errno;
            }
            if (n == 0) {
                if (write)
                    return -EIO;
                memset(p, 0, left); /* the file shrank under us */
                n = (ssize_t)left;
            }
            p += n;
            pos += (uint64_t)n;
            left -= (size_t)n;
        }
    }
    return 0;
}

/* Serve one well-formed chain; returns the used length. */
static uint32_t blk_request(void *ctx, struct vq_chain *c)
{
    struct blk_dev *b = ctx;
    uint8_t hdr[16];
    uint32_t type;
    uint64_t sector;
    uint8_t status = VIRTIO_BLK_S_OK;
    uint32_t used = 1;
    size_t data_len = 0;

    if (c->wr_len == 0) {
        /* Nowhere to put a status: the request is returned untouched. */
        blk_warn(b, "no status byte", 0, c->rd_len);
        return 0;
    }
    if (vmm_vq_chain_read(c, 0, hdr, sizeof(hdr)) != sizeof(hdr)) {
        blk_warn(b, "header shorter than 16 bytes", 0, c->rd_len);
        status = VIRTIO_BLK_S_IOERR;
        goto out;
    }
    memcpy(&type, hdr, 4);
    memcpy(&sector, hdr + 8, 8);

    switch (type) {
    case VIRTIO_BLK_T_IN: {
        data_len = c->wr_len - 1;
        if (c->rd_len != sizeof(hdr) || !blk_range_ok(b, sector, data_len)) {
            blk_warn(b, "read outside the disk or not whole sectors", sector, data_len);
            status = VIRTIO_BLK_S_IOERR;
            break;
        }
        unsigned n = vmm_vq_chain_iov(c, true, 0, data_len, b->iov, VQ_MAX_SIZE);
        int ret = blk_io(b, false, n, sector * BLK_SECTOR);

        if (ret) {
            LOG_WARN("msg=\"virtio-blk read failed\" sector=%llu errno=%d",
                     (unsigned long long)sector, -ret);
            status = VIRTIO_BLK_S_IOERR;
            break;
        }
        used = (uint32_t)data_len + 1;
        break;
    }
    case VIRTIO_BLK_T_OUT: {
        data_len = c->rd_len - sizeof(hdr);
        if (b->ro) {
            blk_warn(b, "write to a read-only disk", sector, data_len);
            status = VIRTIO_BLK_S_IOERR;
            break;
        }
        if (c->wr_len != 1 || !blk_range_ok(b, sector, data_len)) {
            blk_warn(b, "write outside the disk or not whole sectors", sector, data_len);
            status = VIRTIO_BLK_S_IOERR;
            break;
        }
        unsigned n = vmm_vq_chain_iov(c, false, sizeof(hdr), data_len, b->iov, VQ_MAX_SIZE);
        int ret = blk_io(b, true, n, sector * BLK_SECTOR);

        if (ret) {
            LOG_WARN("msg=\"virtio-blk write failed\" sector=%llu errno=%d",
                     (unsigned long long)sector, -ret);
            status = VIRTIO_BLK_S_IOERR;
        }
        break;
    }
    case VIRTIO_BLK_T_FLUSH:
        if (!b->ro && fdatasync(b->fd) < 0) {
            LOG_WARN("msg=\"virtio-blk flush failed\" errno=%d", errno);
            status = VIRTIO_BLK_S_IOERR;
        }
        break;
    case VIRTIO_BLK_T_GET_ID: {
        size_t n = c->wr_len - 1;

        if (n > sizeof(b->id))
            n = sizeof(b->id);
        vmm_vq_chain_write(c, 0, b->id, n);
        used = (uint32_t)n + 1;
        break;
    }
    default:
        blk_warn(b, "unsupported request type", sector, 0);
        status = VIRTIO_BLK_S_UNSUPP;
        break;
    }
out:
    vmm_vq_chain_write(c, c->wr_len - 1, &status, 1);
    return used;
}

static void blk_notify(struct virtio_dev *d, unsigned qi)
{
    struct blk_dev *b = (struct blk_dev *)d;

    virtio_dev_serve_queue(d, qi, &b->chain, VQ_POP_READ_BEFORE_WRITE, &b->rl, blk_request, b);
}

static void blk_reset(struct virtio_dev *d)
{
    (void)d;
}

static void blk_destroy(struct virtio_dev *d)
{
    struct blk_dev *b = (struct blk_dev *)d;

    if (b->fd >= 0)
        close(b->fd);
    free(b);
}

static const struct virtio_dev_ops blk_ops = {
    .name = "blk",
    .device_id = VIRTIO_ID_BLK,
    .nqueues = 1,
    .queue_max = blk_queue_max,
    .features = blk_features,
    .config_len = BLK_CONFIG_LEN,
    .config_read = blk_config_read,
    .config_write = blk_config_write,
    .notify = blk_notify,
    .reset = blk_reset,
    .destroy = blk_destroy,
};

int virtio_blk_create(struct virtio_dev **out, const char *path, bool read_only)
{
    int ret = 0;
    struct stat st;
    struct blk_dev *b = calloc(1, sizeof(*b));

    if (!b) {
        ret = -ENOMEM;
        goto out;
    }
    b->fd = open(path, (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC);
    if (b->fd < 0) {
        ret = -errno;
        goto out;
    }
    if (fstat(b->fd, &st) < 0) {
        ret = -errno;
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        ret = -EINVAL;
        goto out;
    }
    b->ro = read_only;
    b->capacity = (uint64_t)st.st_size / BLK_SECTOR;
    /* GET_ID: the file's base name, cut to 20 bytes (not NUL-terminated when full). */
    const char *base = strrchr(path, '/');

    base = base ? base + 1 : path;
    memcpy(b->id, base, strnlen(base, sizeof(b->id)));
    b->base.ops = &blk_ops;
    *out = &b->base;
    b = NULL;
out:
    if (b) {
        if (b->fd >= 0)
            close(b->fd);
        free(b);
    }
    return ret;
}
