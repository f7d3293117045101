/*
 * virtio-vsock device tests through the mmio transport: the test is the
 * guest driver (rx buffers of a 44-byte header descriptor plus a 4 KiB data
 * descriptor, as Linux posts them; tx packets split or whole) and the host
 * service behind <uds>_5000. Covers config space, connect/relay, bulk data
 * both ways with credit (throughput printed, never asserted), malformed tx
 * chains, a corrupt ring (NEEDS_RESET), device reset closing host sockets,
 * and one run on a real event-loop thread.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "device.h"
#include "loop.h"
#include "virtio_guest.h"
#include "vsock_backend.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define RAM_SIZE (8u << 20)
#define CID 42u
#define QSZ 128u
#define NRX 64u /* rx chains of header + data */
#define RXDATA 4096u
#define RXBUF 0x100000u /* rx buffers: NRX * 8 KiB */
#define TXBUF 0x300000u /* tx packets: slot i at TXBUF + i * 72 KiB */
#define TXSLOT (72u * 1024)
#define GUEST_BUF (256u * 1024)

struct fx {
    char dir[64];
    char uds[128];
    uint8_t *ram;
    struct vmm_mem mem;
    struct virtio_host host;
    struct virtio_mmio *t;
    int irqfd;
    int listen_fd;
    struct tq q[3];
    uint16_t tx_next; /* next tx slot (each uses descriptors 2i, 2i+1) */
    bool rx_single;   /* repost rx buffers as one descriptor (header + data), like Linux 6.1 */
    bool rx_is_single[NRX];
    unsigned tx_inflight;
    /* guest-side stream state for the one connection under test */
    uint32_t gport, tx_cnt, fwd_cnt, peer_buf_alloc, peer_fwd_cnt;
};

static int listen_at(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

    assert_true(fd >= 0);
    memcpy(sa.sun_path, path, strlen(path));
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(fd, 8), 0);
    return fd;
}

static void post_rx(struct fx *f, uint16_t i)
{
    uint64_t b = RXBUF + 8192u * i;

    f->rx_is_single[i] = f->rx_single;
    if (f->rx_single) {
        tq_desc(f->ram, &f->q[0], (uint16_t)(2 * i), b, VSOCK_HDR_SIZE + RXDATA, VRING_DESC_F_WRITE,
                0);
        tq_avail(f->ram, &f->q[0], (uint16_t)(2 * i));
        return;
    }
    tq_desc(f->ram, &f->q[0], (uint16_t)(2 * i), b, VSOCK_HDR_SIZE,
            VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, (uint16_t)(2 * i + 1));
    tq_desc(f->ram, &f->q[0], (uint16_t)(2 * i + 1), b + 64, RXDATA, VRING_DESC_F_WRITE, 0);
    tq_avail(f->ram, &f->q[0], (uint16_t)(2 * i));
}

static void fx_init(struct fx *f, struct loop *loop)
{
    struct virtio_dev *d;
    char path[160];
    int irqfd;

    snprintf(f->dir, sizeof(f->dir), "/tmp/capsem-vsockdev-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->uds, sizeof(f->uds), "%s/v.sock", f->dir);
    snprintf(path, sizeof(path), "%s_5000", f->uds);
    f->listen_fd = listen_at(path);
    f->ram = aligned_alloc(4096, RAM_SIZE);
    assert_non_null(f->ram);
    memset(f->ram, 0, RAM_SIZE);
    vmm_mem_init_buffer(&f->mem, f->ram, RAM_SIZE);
    f->host = (struct virtio_host){.mem = &f->mem, .loop = loop};
    irqfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    assert_true(irqfd >= 0);
    f->irqfd = dup(irqfd);
    assert_int_equal(virtio_vsock_create(&d, CID, f->uds), 0);
    assert_int_equal(virtio_mmio_create(&f->t, &f->host, d, 0xd0002000ull, 7, irqfd), 0);
    for (unsigned i = 0; i < 3; i++)
        tq_init(&f->q[i], 0x10000u * (i + 1), QSZ);
    tg_driver_init(f->t, TG_F_VERSION_1 | TG_F_INDIRECT | TG_F_EVENT_IDX, f->q, 3);
    for (uint16_t i = 0; i < NRX; i++)
        post_rx(f, i);
    mmio_wr(f->t, 0x50, 0);
}

static void fx_fini(struct fx *f)
{
    char path[160];

    virtio_mmio_destroy(f->t);
    close(f->irqfd);
    close(f->listen_fd);
    snprintf(path, sizeof(path), "%s_5000", f->uds);
    unlink(path);
    /* The device removed its own listening socket. */
    assert_int_equal(access(f->uds, F_OK), -1);
    rmdir(f->dir);
    free(f->ram);
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    fx_init(f, NULL);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;

    fx_fini(f);
    free(f);
    return 0;
}

/* Send one packet on the tx queue. `split`: header and data in separate descriptors. */
static void gtx(struct fx *f, uint16_t op, uint32_t flags, const void *data, uint32_t len,
                bool split)
{
    uint16_t slot = f->tx_next;
    uint64_t b = TXBUF + (uint64_t)TXSLOT * slot;
    struct vsock_hdr h = {.src_cid = CID,
                          .dst_cid = VSOCK_HOST_CID,
                          .src_port = f->gport,
                          .dst_port = 5000,
                          .len = len,
                          .type = VSOCK_TYPE_STREAM,
                          .op = op,
                          .flags = flags,
                          .buf_alloc = GUEST_BUF,
                          .fwd_cnt = f->fwd_cnt};

    assert_true(len <= TXSLOT - 128);
    f->tx_next = (uint16_t)((slot + 1) % (QSZ / 2));
    vsock_hdr_encode(&h, f->ram + b);
    if (split && len) {
        memcpy(f->ram + b + 64, data, len);
        tq_desc(f->ram, &f->q[1], (uint16_t)(2 * slot), b, VSOCK_HDR_SIZE, VRING_DESC_F_NEXT,
                (uint16_t)(2 * slot + 1));
        tq_desc(f->ram, &f->q[1], (uint16_t)(2 * slot + 1), b + 64, len, 0, 0);
    } else {
        if (len)
            memcpy(f->ram + b + VSOCK_HDR_SIZE, data, len);
        tq_desc(f->ram, &f->q[1], (uint16_t)(2 * slot), b, VSOCK_HDR_SIZE + len, 0, 0);
    }
    tq_avail(f->ram, &f->q[1], (uint16_t)(2 * slot));
    f->tx_inflight++;
    if (op == VSOCK_OP_RW)
        f->tx_cnt += len;
    mmio_wr(f->t, 0x50, 1);
}

/* Reap tx used entries (tx buffers come back with length 0). */
static void reap_tx(struct fx *f)
{
    uint32_t id, len;

    while (tq_take_used(f->ram, &f->q[1], &id, &len)) {
        assert_int_equal(len, 0);
        f->tx_inflight--;
    }
}

/* Take one rx packet (recycling its buffer); false when none is used yet. */
static bool grx_once(struct fx *f, struct vsock_hdr *h, uint8_t *data)
{
    uint32_t id, len;
    uint64_t b;

    if (!tq_take_used(f->ram, &f->q[0], &id, &len))
        return false;
    assert_true(id % 2 == 0 && id < 2 * NRX);
    assert_true(len >= VSOCK_HDR_SIZE);
    b = RXBUF + 8192u * (id / 2);
    vsock_hdr_decode(f->ram + b, h);
    assert_int_equal(len, VSOCK_HDR_SIZE + h->len);
    assert_true(h->len <= RXDATA);
    if (data)
        memcpy(data, f->ram + b + (f->rx_is_single[id / 2] ? VSOCK_HDR_SIZE : 64), h->len);
    f->peer_buf_alloc = h->buf_alloc;
    f->peer_fwd_cnt = h->fwd_cnt;
    post_rx(f, (uint16_t)(id / 2));
    /* Like Linux: ask for an interrupt at the next used entry after what we consumed. */
    tq_set_used_event(f->ram, &f->q[0], f->q[0].used_seen);
    mmio_wr(f->t, 0x50, 0);
    return true;
}

static void grx(struct fx *f, struct vsock_hdr *h, uint8_t *data)
{
    for (int i = 0; i < 400; i++) {
        virtio_mmio_poll(f->t);
        if (grx_once(f, h, data))
            return;
        usleep(5000);
    }
    fail_msg("no rx packet");
}

static int guest_connect(struct fx *f, uint32_t gport)
{
    struct vsock_hdr h;
    int fd;

    f->gport = gport;
    f->tx_cnt = f->fwd_cnt = 0;
    gtx(f, VSOCK_OP_REQUEST, 0, NULL, 0, false);
    grx(f, &h, NULL);
    assert_int_equal(h.op, VSOCK_OP_RESPONSE);
    assert_int_equal(h.dst_port, gport);
    assert_int_equal(h.dst_cid, CID);
    fd = accept4(f->listen_fd, NULL, NULL, SOCK_CLOEXEC);
    assert_true(fd >= 0);
    return fd;
}

static void test_vsock_config_and_identity(void **state)
{
    struct fx *f = *state;
    uint8_t b[8];
    uint64_t cid;

    assert_int_equal(mmio_rd(f->t, 0x008), 19);
    mmio_wr(f->t, 0x030, 2);
    assert_int_equal(mmio_rd(f->t, 0x034), 256);
    mmio_wr(f->t, 0x030, 3);
    assert_int_equal(mmio_rd(f->t, 0x034), 0);
    virtio_mmio_access(f->t, 0x100, b, 8, false);
    memcpy(&cid, b, 8);
    assert_int_equal(cid, CID);
    assert_int_equal(mmio_rd(f->t, 0x100), CID);
    assert_int_equal(mmio_rd(f->t, 0x104), 0);
    /* Past the 8-byte config: zero. */
    assert_int_equal(mmio_rd(f->t, 0x108), 0);
    virtio_mmio_access(f->t, 0x106, b, 4, false);
    assert_int_equal(b[0] | b[1] | b[2] | b[3], 0);
}

static void test_vsock_connect_and_relay(void **state)
{
    struct fx *f = *state;
    struct vsock_hdr h;
    uint8_t data[RXDATA];
    char buf[32];
    int fd = guest_connect(f, 1024);

    gtx(f, VSOCK_OP_RW, 0, "split packet", 12, true);
    gtx(f, VSOCK_OP_RW, 0, " whole", 6, false);
    virtio_mmio_poll(f->t);
    reap_tx(f);
    assert_int_equal(f->tx_inflight, 0);
    assert_int_equal(read(fd, buf, sizeof(buf)), 18);
    assert_memory_equal(buf, "split packet whole", 18);
    assert_int_equal(write(fd, "from host", 9), 9);
    grx(f, &h, data);
    assert_int_equal(h.op, VSOCK_OP_RW);
    assert_int_equal(h.len, 9);
    assert_memory_equal(data, "from host", 9);
    close(fd);
}

static void test_vsock_connect_refused_rst(void **state)
{
    struct fx *f = *state;
    struct vsock_hdr hd = {.src_cid = CID,
                           .dst_cid = VSOCK_HOST_CID,
                           .src_port = 5,
                           .dst_port = 5999,
                           .type = VSOCK_TYPE_STREAM,
                           .op = VSOCK_OP_REQUEST};
    struct vsock_hdr h;

    /* Hand-made REQUEST to a port nobody serves. */
    vsock_hdr_encode(&hd, f->ram + TXBUF);
    tq_desc(f->ram, &f->q[1], 0, TXBUF, VSOCK_HDR_SIZE, 0, 0);
    tq_avail(f->ram, &f->q[1], 0);
    mmio_wr(f->t, 0x50, 1);
    grx(f, &h, NULL);
    assert_int_equal(h.op, VSOCK_OP_RST);
    assert_int_equal(h.src_port, 5999);
    assert_int_equal(h.dst_port, 5);
}

static void test_vsock_host_connect_via_device(void **state)
{
    struct fx *f = *state;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    struct vsock_hdr h;
    uint8_t data[RXDATA];
    char line[32], expect[32];
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

    assert_true(fd >= 0);
    memcpy(sa.sun_path, f->uds, strlen(f->uds));
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(write(fd, "CONNECT 1234\n", 13), 13);
    grx(f, &h, NULL);
    assert_int_equal(h.op, VSOCK_OP_REQUEST);
    assert_int_equal(h.dst_port, 1234);
    assert_int_equal(h.dst_cid, CID);
    /* The guest accepts: answer from port 1234 to the host's port. */
    {
        struct vsock_hdr r = {.src_cid = CID,
                              .dst_cid = VSOCK_HOST_CID,
                              .src_port = 1234,
                              .dst_port = h.src_port,
                              .type = VSOCK_TYPE_STREAM,
                              .op = VSOCK_OP_RESPONSE,
                              .buf_alloc = GUEST_BUF};
        uint64_t b = TXBUF + (uint64_t)TXSLOT * f->tx_next;

        vsock_hdr_encode(&r, f->ram + b);
        tq_desc(f->ram, &f->q[1], (uint16_t)(2 * f->tx_next), b, VSOCK_HDR_SIZE, 0, 0);
        tq_avail(f->ram, &f->q[1], (uint16_t)(2 * f->tx_next));
        f->tx_next++;
        mmio_wr(f->t, 0x50, 1);
    }
    virtio_mmio_poll(f->t);
    snprintf(expect, sizeof(expect), "OK %u\n", h.src_port);
    assert_int_equal(read(fd, line, sizeof(line)), (ssize_t)strlen(expect));
    assert_memory_equal(line, expect, strlen(expect));
    assert_int_equal(write(fd, "to guest", 8), 8);
    grx(f, &h, data);
    assert_int_equal(h.op, VSOCK_OP_RW);
    assert_int_equal(h.dst_port, 1234);
    assert_memory_equal(data, "to guest", 8);
    close(fd);
}

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint8_t pattern(size_t i)
{
    return (uint8_t)(i * 13 + (i >> 11));
}

static void test_vsock_bulk_host_to_guest(void **state)
{
    struct fx *f = *state;
    const size_t total = 50u << 20;
    uint8_t *src = malloc(256 * 1024), data[RXDATA];
    size_t written = 0, got = 0;
    uint32_t unacked = 0;
    uint64_t irqs = 0, v;
    unsigned pkts = 0;
    double t0;
    int fd;

    /* From here on rx buffers are single descriptors holding header and data. */
    f->rx_single = true;
    fd = guest_connect(f, 2048);
    assert_non_null(src);
    fcntl(fd, F_SETFL, O_NONBLOCK);
    t0 = now_s();
    for (int iter = 0; iter < 2000000 && got < total; iter++) {
        struct vsock_hdr h;

        if (written < total) {
            size_t n = total - written < 256 * 1024 ? total - written : 256 * 1024;
            ssize_t w;

            for (size_t i = 0; i < n; i++)
                src[i] = pattern(written + i);
            w = write(fd, src, n);
            if (w > 0)
                written += (size_t)w;
        }
        virtio_mmio_poll(f->t);
        if (read(f->irqfd, &v, sizeof(v)) == sizeof(v))
            irqs += v;
        while (grx_once(f, &h, data)) {
            if (h.op == VSOCK_OP_CREDIT_REQUEST) {
                gtx(f, VSOCK_OP_CREDIT_UPDATE, 0, NULL, 0, false);
                continue;
            }
            assert_int_equal(h.op, VSOCK_OP_RW);
            for (uint32_t i = 0; i < h.len; i++)
                if (data[i] != pattern(got + i))
                    fail_msg("byte %zu differs", got + i);
            got += h.len;
            unacked += h.len;
            pkts++;
            /* In flight never exceeds what we advertised. */
            assert_true(unacked <= GUEST_BUF);
        }
        /* Like Linux: consume, then send a credit update when room is low. */
        if (unacked >= GUEST_BUF / 2 || (unacked && written == total)) {
            f->fwd_cnt += unacked;
            unacked = 0;
            gtx(f, VSOCK_OP_CREDIT_UPDATE, 0, NULL, 0, false);
        }
        reap_tx(f);
    }
    assert_int_equal(got, total);
    print_message("host->guest: %zu MiB in %.3f s, %u packets, %llu interrupts\n", total >> 20,
                  now_s() - t0, pkts, (unsigned long long)irqs);
    /* Event index: far fewer interrupts than packets. */
    assert_true(irqs < pkts);
    free(src);
    close(fd);
}

static void test_vsock_bulk_guest_to_host(void **state)
{
    struct fx *f = *state;
    const size_t total = 50u << 20;
    uint8_t *chunk = malloc(64 * 1024), *rbuf = malloc(256 * 1024);
    size_t sent = 0, got = 0;
    double t0;
    int fd = guest_connect(f, 2049);

    assert_non_null(chunk);
    assert_non_null(rbuf);
    fcntl(fd, F_SETFL, O_NONBLOCK);
    t0 = now_s();
    for (int iter = 0; iter < 2000000 && got < total; iter++) {
        uint32_t credit = f->peer_buf_alloc - (f->tx_cnt - f->peer_fwd_cnt);
        struct vsock_hdr h;
        ssize_t n;

        assert_true(f->tx_cnt - f->peer_fwd_cnt <= f->peer_buf_alloc);
        while (sent < total && credit > 0 && f->tx_inflight < QSZ / 2 - 1) {
            size_t len = total - sent < 64 * 1024 ? total - sent : 64 * 1024;

            if (len > credit)
                len = credit;
            for (size_t i = 0; i < len; i++)
                chunk[i] = pattern(sent + i);
            gtx(f, VSOCK_OP_RW, 0, chunk, (uint32_t)len, true);
            sent += len;
            credit -= (uint32_t)len;
        }
        virtio_mmio_poll(f->t);
        reap_tx(f);
        while ((n = read(fd, rbuf, 256 * 1024)) > 0) {
            for (ssize_t i = 0; i < n; i++)
                if (rbuf[i] != pattern(got + (size_t)i))
                    fail_msg("byte %zu differs", got + (size_t)i);
            got += (size_t)n;
        }
        virtio_mmio_poll(f->t);
        while (grx_once(f, &h, NULL))
            assert_int_equal(h.op, VSOCK_OP_CREDIT_UPDATE);
    }
    assert_int_equal(got, total);
    print_message("guest->host: %zu MiB in %.3f s\n", total >> 20, now_s() - t0);
    free(chunk);
    free(rbuf);
    close(fd);
}

static void test_vsock_tx_malformed_chains_dropped(void **state)
{
    struct fx *f = *state;
    struct vsock_hdr hd = {.src_cid = CID,
                           .dst_cid = VSOCK_HOST_CID,
                           .src_port = 9,
                           .dst_port = 5000,
                           .len = 100,
                           .type = VSOCK_TYPE_STREAM,
                           .op = VSOCK_OP_RW};
    struct vsock_hdr h;
    uint32_t id, len;
    int fd;

    /* Shorter than a header; len larger than the data; buffer outside RAM. */
    tq_desc(f->ram, &f->q[1], 0, TXBUF, 20, 0, 0);
    tq_avail(f->ram, &f->q[1], 0);
    vsock_hdr_encode(&hd, f->ram + TXBUF + 0x100);
    tq_desc(f->ram, &f->q[1], 1, TXBUF + 0x100, VSOCK_HDR_SIZE + 10, 0, 0);
    tq_avail(f->ram, &f->q[1], 1);
    tq_desc(f->ram, &f->q[1], 2, RAM_SIZE - 8, VSOCK_HDR_SIZE, 0, 0);
    tq_avail(f->ram, &f->q[1], 2);
    mmio_wr(f->t, 0x50, 1);
    virtio_mmio_poll(f->t);
    for (uint32_t want = 0; want < 3; want++) {
        assert_true(tq_take_used(f->ram, &f->q[1], &id, &len));
        assert_int_equal(id, want);
        assert_int_equal(len, 0);
    }
    /* Nothing reached the guest's rx and the device still works. */
    assert_int_equal(tq_used_idx(f->ram, &f->q[0]), 0);
    f->tx_next = 3;
    fd = guest_connect(f, 77);
    (void)h;
    close(fd);
    assert_int_equal(mmio_rd(f->t, 0x70) & 0x40, 0);
}

static void test_vsock_tx_random_packets_survive(void **state)
{
    struct fx *f = *state;
    unsigned seed = 12345;
    uint8_t pkt[256];
    int fd;

    fcntl(f->listen_fd, F_SETFL, O_NONBLOCK);
    /* 2000 random headers, half of them with a valid CID pair and type so ops/ports vary. */
    for (unsigned i = 0; i < 2000; i++) {
        uint16_t slot = (uint16_t)(i % (QSZ / 2));
        uint64_t b = TXBUF + (uint64_t)TXSLOT * slot;
        uint32_t len = (uint32_t)(rand_r(&seed) % sizeof(pkt));
        struct vsock_hdr h;

        for (size_t j = 0; j < sizeof(pkt); j++)
            pkt[j] = (uint8_t)rand_r(&seed);
        if (i & 1) {
            vsock_hdr_decode(pkt, &h);
            h.src_cid = CID;
            h.dst_cid = VSOCK_HOST_CID;
            h.type = VSOCK_TYPE_STREAM;
            h.op = (uint16_t)(h.op % 9);
            h.dst_port = 5000 + h.dst_port % 3;
            h.src_port %= 8;
            h.len = len >= VSOCK_HDR_SIZE ? len - VSOCK_HDR_SIZE : 0;
            vsock_hdr_encode(&h, pkt);
        }
        memcpy(f->ram + b, pkt, len);
        tq_desc(f->ram, &f->q[1], (uint16_t)(2 * slot), b, len, 0, 0);
        tq_avail(f->ram, &f->q[1], (uint16_t)(2 * slot));
        mmio_wr(f->t, 0x50, 1);
        if (slot == QSZ / 2 - 1) {
            struct vsock_hdr r;

            virtio_mmio_poll(f->t);
            reap_tx(f);
            while (grx_once(f, &r, NULL))
                ;
            while ((fd = accept4(f->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0)
                close(fd);
        }
    }
    /* Drain whatever the device still answers (RSTs, RESPONSEs). */
    for (int quiet = 0; quiet < 20;) {
        struct vsock_hdr r;

        virtio_mmio_poll(f->t);
        reap_tx(f);
        quiet = grx_once(f, &r, NULL) ? 0 : quiet + 1;
    }
    /* Only bad packets: the device is still healthy and serves a real connection. */
    assert_int_equal(mmio_rd(f->t, 0x70) & 0x40, 0);
    f->tx_next = 0;
    f->q[1].used_seen = tq_used_idx(f->ram, &f->q[1]);
    fcntl(f->listen_fd, F_SETFL, 0);
    fd = guest_connect(f, 4242);
    close(fd);
}

static void test_vsock_corrupt_ring_needs_reset_and_reset_closes(void **state)
{
    struct fx *f = *state;
    int fd = guest_connect(f, 88);
    uint8_t b;

    tg_w16(f->ram, f->q[1].avail + 2, (uint16_t)(f->q[1].avail_idx + 500));
    mmio_wr(f->t, 0x50, 1);
    virtio_mmio_poll(f->t);
    assert_int_equal(mmio_rd(f->t, 0x70) & 0x40, 0x40);
    /* The guest resets the device: host connections are closed. */
    mmio_wr(f->t, 0x70, 0);
    virtio_mmio_poll(f->t);
    assert_int_equal(read(fd, &b, 1), 0);
    close(fd);
}

struct loop_thread {
    struct loop *loop;
    pthread_t th;
};

static void *run_loop(void *arg)
{
    struct loop_thread *lt = arg;

    (void)loop_run(lt->loop);
    return NULL;
}

static void test_vsock_on_loop_thread(void **state)
{
    struct fx f = {0};
    struct loop_thread lt;
    struct vsock_hdr h;
    uint32_t id = 0, len = 0;
    char buf[16];
    int fd = -1;

    (void)state;
    assert_int_equal(loop_create(&lt.loop), 0);
    fx_init(&f, lt.loop);
    assert_int_equal(pthread_create(&lt.th, NULL, run_loop, &lt), 0);
    f.gport = 300;
    gtx(&f, VSOCK_OP_REQUEST, 0, NULL, 0, false);
    for (int i = 0; i < 400 && !tq_take_used(f.ram, &f.q[0], &id, &len); i++)
        usleep(5000);
    vsock_hdr_decode(f.ram + RXBUF + 8192u * (id / 2), &h);
    assert_int_equal(h.op, VSOCK_OP_RESPONSE);
    fd = accept4(f.listen_fd, NULL, NULL, SOCK_CLOEXEC);
    assert_true(fd >= 0);
    gtx(&f, VSOCK_OP_RW, 0, "via loop", 8, true);
    assert_int_equal(read(fd, buf, sizeof(buf)), 8);
    assert_memory_equal(buf, "via loop", 8);
    /* Host -> guest wakes the loop through the muxer's epoll fd. */
    assert_int_equal(write(fd, "back", 4), 4);
    for (int i = 0; i < 400 && !tq_take_used(f.ram, &f.q[0], &id, &len); i++)
        usleep(5000);
    assert_int_equal(len, VSOCK_HDR_SIZE + 4);
    assert_memory_equal(f.ram + RXBUF + 8192u * (id / 2) + 64, "back", 4);
    loop_stop(lt.loop);
    pthread_join(lt.th, NULL);
    close(fd);
    fx_fini(&f);
    loop_destroy(lt.loop);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_vsock_config_and_identity),
        T(test_vsock_connect_and_relay),
        T(test_vsock_connect_refused_rst),
        T(test_vsock_host_connect_via_device),
        T(test_vsock_bulk_host_to_guest),
        T(test_vsock_bulk_guest_to_host),
        T(test_vsock_tx_malformed_chains_dropped),
        T(test_vsock_tx_random_packets_survive),
        T(test_vsock_corrupt_ring_needs_reset_and_reset_closes),
        cmocka_unit_test(test_vsock_on_loop_thread),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
