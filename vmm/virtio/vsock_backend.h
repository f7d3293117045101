/*
 * virtio-vsock packets and the interface between the vsock device (which
 * moves packets between guest queues and this interface) and its back-end
 * (which owns host connections). The only back-end is the Unix socket
 * muxer; the split lets the muxer be tested without a guest. Data travels
 * as iovecs that point straight into guest buffers, so bytes are copied
 * once, by the socket syscall.
 */
#ifndef CAPSEM_VMM_VIRTIO_VSOCK_BACKEND_H
#define CAPSEM_VMM_VIRTIO_VSOCK_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#define VSOCK_HOST_CID 2u
#define VSOCK_HDR_SIZE 44u
#define VSOCK_TYPE_STREAM 1u

enum vsock_op {
    VSOCK_OP_INVALID = 0,
    VSOCK_OP_REQUEST = 1,
    VSOCK_OP_RESPONSE = 2,
    VSOCK_OP_RST = 3,
    VSOCK_OP_SHUTDOWN = 4,
    VSOCK_OP_RW = 5,
    VSOCK_OP_CREDIT_UPDATE = 6,
    VSOCK_OP_CREDIT_REQUEST = 7,
};

#define VSOCK_SHUTDOWN_RCV 1u
#define VSOCK_SHUTDOWN_SEND 2u

/* A packet header in host byte order. */
struct vsock_hdr {
    uint64_t src_cid;
    uint64_t dst_cid;
    uint32_t src_port;
    uint32_t dst_port;
    uint32_t len;
    uint16_t type;
    uint16_t op;
    uint32_t flags;
    uint32_t buf_alloc;
    uint32_t fwd_cnt;
};

/* Wire (little-endian, 44 bytes) <-> struct. */
void vsock_hdr_decode(const uint8_t raw[VSOCK_HDR_SIZE], struct vsock_hdr *h);
void vsock_hdr_encode(const struct vsock_hdr *h, uint8_t raw[VSOCK_HDR_SIZE]);

/* Back-end interface; `b` is the back-end object. Loop thread. */
struct vsock_backend_ops {
    /*
     * Guest -> host: take one packet whose payload (h->len bytes) is `iov`.
     * 0 when consumed (also when dropped as invalid: a bad packet is the
     * guest's loss, logged, answered with RST where one is due), -EAGAIN
     * when the connection's buffer is full (retry after poll()), -errno on
     * an internal failure.
     */
    int (*send_pkt)(void *b, const struct vsock_hdr *h, const struct iovec *iov, unsigned iovcnt);
    /*
     * Host -> guest: produce the next packet into `h`, its payload into the
     * `iov` buffers (total `cap` bytes). 0 with h->len set, or -EAGAIN when
     * nothing is pending.
     */
    int (*recv_pkt)(void *b, struct vsock_hdr *h, const struct iovec *iov, unsigned iovcnt,
                    size_t cap);
    /* True when recv_pkt would produce a packet. */
    bool (*has_pending)(void *b);
    /* The fd to watch for EPOLLIN; poll() then handles what is ready. */
    int (*fd)(void *b);
    void (*poll)(void *b);
    /* True (once) when a send_pkt that returned -EAGAIN may now succeed. */
    bool (*tx_unblocked)(void *b);
    /* Close every connection (device reset); the listener stays. */
    void (*reset)(void *b);
    void (*destroy)(void *b);
};

struct vsock_muxer;

/*
 * Create the Unix-socket muxer for guest `guest_cid`: listens on `uds_path`
 * (copied; a stale socket file is unlinked first) and maps guest
 * connections to host port P onto "<uds_path>_P". 0 or -errno.
 */
__attribute__((warn_unused_result)) int
vsock_muxer_create(struct vsock_muxer **out, uint64_t guest_cid, const char *uds_path);
/* The muxer's operations table; pass the muxer as `b`. */
extern const struct vsock_backend_ops vsock_muxer_ops;

/* Counters for tests and metrics. */
struct vsock_muxer_stats {
    unsigned conns;          /* live connections */
    unsigned dropped;        /* invalid guest packets dropped */
    unsigned rst_sent;       /* RST packets produced */
    unsigned credit_updates; /* CREDIT_UPDATE packets produced */
};
void vsock_muxer_get_stats(const struct vsock_muxer *m, struct vsock_muxer_stats *s);

#endif
