/*
 * Unix-socket muxer tests without a guest: the test speaks virtio-vsock
 * packets to the back-end interface (send_pkt as the guest's tx queue,
 * recv_pkt as its rx queue) and plays the host processes with real Unix
 * sockets. Covered: guest connect to <uds>_P (accepted and refused), data
 * both ways above 1 MiB with credit flow control, host-initiated CONNECT/OK,
 * guest RST and SHUTDOWN, and bad input of every kind: wrong CIDs, wrong
 * type, length mismatch, unknown op, packets for unknown connections, bad
 * CONNECT lines, a guest that ignores our credit.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "vsock_backend.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define CID 3u
#define OPS vsock_muxer_ops
#define GUEST_BUF (64u * 1024) /* buf_alloc the test guest advertises */

struct fx {
    char dir[64];
    char uds[128];
    struct vsock_muxer *m;
    int listen_fd; /* the test's host service at <uds>_5000, or -1 */
};

static int listen_at(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

    assert_true(fd >= 0);
    assert_true(strlen(path) < sizeof(sa.sun_path));
    memcpy(sa.sun_path, path, strlen(path));
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(fd, 8), 0);
    return fd;
}

static int connect_to(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

    assert_true(fd >= 0);
    memcpy(sa.sun_path, path, strlen(path));
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    return fd;
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    char path[160];

    assert_non_null(f);
    snprintf(f->dir, sizeof(f->dir), "/tmp/capsem-vsock-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->uds, sizeof(f->uds), "%s/v.sock", f->dir);
    assert_int_equal(vsock_muxer_create(&f->m, CID, f->uds), 0);
    snprintf(path, sizeof(path), "%s_5000", f->uds);
    f->listen_fd = listen_at(path);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    char path[160];

    OPS.destroy(f->m);
    close(f->listen_fd);
    snprintf(path, sizeof(path), "%s_5000", f->uds);
    unlink(path);
    rmdir(f->dir);
    free(f);
    return 0;
}

/* ---- the test guest ---- */

struct gconn {
    uint32_t gport, hport;
    uint32_t tx_cnt;                       /* bytes we sent */
    uint32_t peer_buf_alloc, peer_fwd_cnt; /* the muxer's credit */
    uint32_t fwd_cnt;                      /* bytes we consumed */
};

static int gsend(struct fx *f, struct gconn *g, uint16_t op, uint32_t flags, const void *data,
                 uint32_t len)
{
    struct vsock_hdr h = {.src_cid = CID,
                          .dst_cid = VSOCK_HOST_CID,
                          .src_port = g->gport,
                          .dst_port = g->hport,
                          .len = len,
                          .type = VSOCK_TYPE_STREAM,
                          .op = op,
                          .flags = flags,
                          .buf_alloc = GUEST_BUF,
                          .fwd_cnt = g->fwd_cnt};
    struct iovec iov = {(void *)data, len};
    int r = OPS.send_pkt(f->m, &h, &iov, len ? 1 : 0);

    if (r == 0 && op == VSOCK_OP_RW)
        g->tx_cnt += len;
    return r;
}

static void wait_fd(int fd, int ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};

    poll(&p, 1, ms);
}

/* Receive the next packet for the guest within ~2 s; -EAGAIN when none came. */
static int grecv_timeout(struct fx *f, struct vsock_hdr *h, void *buf, size_t cap, int ms)
{
    struct iovec iov = {buf, cap};

    for (int i = 0; i <= ms / 5; i++) {
        OPS.poll(f->m);
        if (OPS.recv_pkt(f->m, h, &iov, 1, cap) == 0)
            return 0;
        wait_fd(OPS.fd(f->m), 5);
    }
    return -EAGAIN;
}

static void grecv(struct fx *f, struct vsock_hdr *h, void *buf, size_t cap)
{
    assert_int_equal(grecv_timeout(f, h, buf, cap, 2000), 0);
    assert_int_equal(h->src_cid, VSOCK_HOST_CID);
    assert_int_equal(h->dst_cid, CID);
    assert_int_equal(h->type, VSOCK_TYPE_STREAM);
}

static void note_credit(struct gconn *g, const struct vsock_hdr *h)
{
    g->peer_buf_alloc = h->buf_alloc;
    g->peer_fwd_cnt = h->fwd_cnt;
}

/* Guest connects to host port 5000; returns the host side fd the test service accepted. */
static int guest_connect(struct fx *f, struct gconn *g, uint32_t gport)
{
    struct vsock_hdr h;
    uint8_t buf[16];
    int fd;

    *g = (struct gconn){.gport = gport, .hport = 5000};
    assert_int_equal(gsend(f, g, VSOCK_OP_REQUEST, 0, NULL, 0), 0);
    grecv(f, &h, buf, sizeof(buf));
    assert_int_equal(h.op, VSOCK_OP_RESPONSE);
    assert_int_equal(h.src_port, 5000);
    assert_int_equal(h.dst_port, gport);
    note_credit(g, &h);
    assert_true(g->peer_buf_alloc >= 64 * 1024);
    fd = accept4(f->listen_fd, NULL, NULL, SOCK_CLOEXEC);
    assert_true(fd >= 0);
    return fd;
}

static void read_exact(int fd, void *buf, size_t len)
{
    size_t got = 0;

    while (got < len) {
        ssize_t n = read(fd, (uint8_t *)buf + got, len - got);

        assert_true(n > 0);
        got += (size_t)n;
    }
}

/* True when the peer closed `fd` (read returns 0 within ~2 s). */
static bool sees_eof(int fd)
{
    uint8_t b[64];

    for (int i = 0; i < 400; i++) {
        ssize_t n = recv(fd, b, sizeof(b), MSG_DONTWAIT);

        if (n == 0)
            return true;
        if (n < 0 && errno != EAGAIN)
            return true;
        usleep(5000);
    }
    return false;
}

static void test_vsock_muxer_guest_connect_and_echo(void **state)
{
    struct fx *f = *state;
    struct gconn g;
    struct vsock_hdr h;
    char buf[64];
    int fd = guest_connect(f, &g, 1234);
    struct vsock_muxer_stats st;

    assert_int_equal(gsend(f, &g, VSOCK_OP_RW, 0, "ping", 4), 0);
    read_exact(fd, buf, 4);
    assert_memory_equal(buf, "ping", 4);
    assert_int_equal(write(fd, "pong!", 5), 5);
    grecv(f, &h, buf, sizeof(buf));
    assert_int_equal(h.op, VSOCK_OP_RW);
    assert_int_equal(h.len, 5);
    assert_int_equal(h.src_port, 5000);
    assert_int_equal(h.dst_port, 1234);
    assert_memory_equal(buf, "pong!", 5);
    vsock_muxer_get_stats(f->m, &st);
    assert_int_equal(st.conns, 1);
    close(fd);
}

static void test_vsock_muxer_guest_connect_refused_gets_rst(void **state)
{
    struct fx *f = *state;
    struct gconn g = {.gport = 99, .hport = 6000}; /* nobody listens at <uds>_6000 */
    struct vsock_hdr h;
    uint8_t buf[16];
    struct vsock_muxer_stats st;

    assert_int_equal(gsend(f, &g, VSOCK_OP_REQUEST, 0, NULL, 0), 0);
    grecv(f, &h, buf, sizeof(buf));
    assert_int_equal(h.op, VSOCK_OP_RST);
    assert_int_equal(h.src_port, 6000);
    assert_int_equal(h.dst_port, 99);
    vsock_muxer_get_stats(f->m, &st);
    assert_int_equal(st.conns, 0);
    assert_false(OPS.has_pending(f->m));
}

static uint8_t pattern(size_t i)
{
    return (uint8_t)(i * 7 + (i >> 13));
}

static void test_vsock_muxer_guest_to_host_bulk_with_credit(void **state)
{
    struct fx *f = *state;
    const size_t total = 3u << 20; /* 3 MiB, 12x the advertised buffer */
    uint8_t *chunk = malloc(64 * 1024), *rbuf = malloc(256 * 1024);
    size_t sent = 0, got = 0;
    struct gconn g;
    struct vsock_muxer_stats st;
    int fd = guest_connect(f, &g, 2000);

    assert_non_null(chunk);
    assert_non_null(rbuf);
    fcntl(fd, F_SETFL, O_NONBLOCK);
    for (int iter = 0; iter < 100000 && got < total; iter++) {
        uint32_t credit = g.peer_buf_alloc - (g.tx_cnt - g.peer_fwd_cnt);
        struct vsock_hdr h;
        ssize_t n;

        /* Never more than the muxer's advertised credit. */
        assert_true(g.tx_cnt - g.peer_fwd_cnt <= g.peer_buf_alloc);
        if (sent < total && credit > 0) {
            size_t len = total - sent;

            if (len > 64 * 1024)
                len = 64 * 1024;
            if (len > credit)
                len = credit;
            for (size_t i = 0; i < len; i++)
                chunk[i] = pattern(sent + i);
            assert_int_equal(gsend(f, &g, VSOCK_OP_RW, 0, chunk, (uint32_t)len), 0);
            sent += len;
        }
        /* The host service reads a little at a time. */
        n = read(fd, rbuf, 48 * 1024);
        if (n > 0) {
            for (ssize_t i = 0; i < n; i++)
                assert_int_equal(rbuf[i], pattern(got + (size_t)i));
            got += (size_t)n;
        }
        OPS.poll(f->m);
        while (OPS.recv_pkt(f->m, &h, &(struct iovec){rbuf, 4096}, 1, 4096) == 0) {
            assert_true(h.op == VSOCK_OP_CREDIT_UPDATE);
            note_credit(&g, &h);
        }
    }
    assert_int_equal(got, total);
    vsock_muxer_get_stats(f->m, &st);
    assert_true(st.credit_updates > 0);
    free(chunk);
    free(rbuf);
    close(fd);
}

static void test_vsock_muxer_host_to_guest_bulk_respects_credit(void **state)
{
    struct fx *f = *state;
    const size_t total = (3u << 20) / 2; /* 1.5 MiB */
    uint8_t *wbuf = malloc(total), rbuf[4096];
    size_t written = 0, got = 0;
    uint32_t rx = 0; /* bytes received but not yet "consumed" by the guest app */
    struct gconn g;
    int fd = guest_connect(f, &g, 2001);

    assert_non_null(wbuf);
    for (size_t i = 0; i < total; i++)
        wbuf[i] = pattern(i);
    fcntl(fd, F_SETFL, O_NONBLOCK);
    for (int iter = 0; iter < 200000 && got < total; iter++) {
        struct vsock_hdr h;

        if (written < total) {
            ssize_t n = write(fd, wbuf + written, total - written);

            if (n > 0)
                written += (size_t)n;
        }
        OPS.poll(f->m);
        while (OPS.recv_pkt(f->m, &h, &(struct iovec){rbuf, sizeof(rbuf)}, 1, sizeof(rbuf)) == 0) {
            if (h.op == VSOCK_OP_CREDIT_REQUEST) {
                assert_int_equal(gsend(f, &g, VSOCK_OP_CREDIT_UPDATE, 0, NULL, 0), 0);
                continue;
            }
            assert_int_equal(h.op, VSOCK_OP_RW);
            assert_true(h.len > 0 && h.len <= sizeof(rbuf));
            assert_memory_equal(rbuf, wbuf + got, h.len);
            got += h.len;
            rx += h.len;
            /* The muxer must stay within the buffer we advertised. */
            assert_true(rx <= GUEST_BUF);
        }
        /* The guest app consumes in 32 KiB steps and then advertises the room. */
        if (rx >= 32 * 1024 || (rx && written == total)) {
            g.fwd_cnt += rx;
            rx = 0;
            assert_int_equal(gsend(f, &g, VSOCK_OP_CREDIT_UPDATE, 0, NULL, 0), 0);
        }
        if (written < total)
            continue;
        wait_fd(OPS.fd(f->m), 1);
    }
    assert_int_equal(got, total);
    free(wbuf);
    close(fd);
}

/* Host client: connect to <uds>, ask for guest port `port`. */
static int host_connect(struct fx *f, uint32_t port, struct vsock_hdr *req)
{
    char line[32];
    uint8_t buf[16];
    int fd = connect_to(f->uds);
    int n = snprintf(line, sizeof(line), "CONNECT %u\n", port);

    assert_int_equal(write(fd, line, (size_t)n), n);
    grecv(f, req, buf, sizeof(buf));
    assert_int_equal(req->op, VSOCK_OP_REQUEST);
    assert_int_equal(req->dst_port, port);
    assert_true(req->src_port >= (1u << 30));
    return fd;
}

static void test_vsock_muxer_host_connect_ok_and_relay(void **state)
{
    struct fx *f = *state;
    struct vsock_hdr req, h;
    char line[32], expect[32], buf[64];
    int fd = host_connect(f, 52, &req);
    struct gconn g = {.gport = 52, .hport = req.src_port};
    ssize_t n;

    assert_int_equal(gsend(f, &g, VSOCK_OP_RESPONSE, 0, NULL, 0), 0);
    n = read(fd, line, sizeof(line));
    snprintf(expect, sizeof(expect), "OK %u\n", req.src_port);
    assert_int_equal(n, (ssize_t)strlen(expect));
    assert_memory_equal(line, expect, (size_t)n);
    /* host -> guest */
    assert_int_equal(write(fd, "hello guest", 11), 11);
    grecv(f, &h, buf, sizeof(buf));
    assert_int_equal(h.op, VSOCK_OP_RW);
    assert_int_equal(h.len, 11);
    assert_int_equal(h.dst_port, 52);
    assert_memory_equal(buf, "hello guest", 11);
    /* guest -> host */
    assert_int_equal(gsend(f, &g, VSOCK_OP_RW, 0, "hi host", 7), 0);
    read_exact(fd, buf, 7);
    assert_memory_equal(buf, "hi host", 7);
    close(fd);
}

static void test_vsock_muxer_host_connect_guest_rst_closes_client(void **state)
{
    struct fx *f = *state;
    struct vsock_hdr req;
    int fd = host_connect(f, 77, &req);
    struct gconn g = {.gport = 77, .hport = req.src_port};
    struct vsock_muxer_stats st;

    assert_int_equal(gsend(f, &g, VSOCK_OP_RST, 0, NULL, 0), 0);
    assert_true(sees_eof(fd));
    vsock_muxer_get_stats(f->m, &st);
    assert_int_equal(st.conns, 0);
    close(fd);
}

static void check_bad_line(struct fx *f, const char *line, size_t len)
{
    struct vsock_hdr h;
    uint8_t buf[16];
    struct vsock_muxer_stats st;
    int fd = connect_to(f->uds);

    assert_int_equal(write(fd, line, len), (ssize_t)len);
    /* The client is dropped and the guest never hears of it. */
    assert_int_equal(grecv_timeout(f, &h, buf, sizeof(buf), 100), -EAGAIN);
    assert_true(sees_eof(fd));
    vsock_muxer_get_stats(f->m, &st);
    assert_int_equal(st.conns, 0);
    close(fd);
}

static void test_vsock_muxer_host_connect_bad_line_closes(void **state)
{
    struct fx *f = *state;
    char longline[64];

    check_bad_line(f, "CONNECT abc\n", 12);
    check_bad_line(f, "connect 5\n", 10);
    check_bad_line(f, "CONNECT \n", 9);
    check_bad_line(f, "CONNECT -5\n", 11);
    check_bad_line(f, "CONNECT 99999999999\n", 20);
    check_bad_line(f, "CONNECT 5 6\n", 12);
    /* No newline within the line limit. */
    memset(longline, '7', sizeof(longline));
    memcpy(longline, "CONNECT ", 8);
    check_bad_line(f, longline, sizeof(longline));
}

static void test_vsock_muxer_unknown_connection_gets_rst(void **state)
{
    struct fx *f = *state;
    struct gconn g = {.gport = 10, .hport = 5000};
    struct vsock_hdr h;
    uint8_t buf[16];

    assert_int_equal(gsend(f, &g, VSOCK_OP_RW, 0, "x", 1), 0);
    grecv(f, &h, buf, sizeof(buf));
    assert_int_equal(h.op, VSOCK_OP_RST);
    assert_int_equal(h.dst_port, 10);
    /* A RST for an unknown connection is not answered. */
    assert_int_equal(gsend(f, &g, VSOCK_OP_RST, 0, NULL, 0), 0);
    assert_false(OPS.has_pending(f->m));
}

static void test_vsock_muxer_bad_packets_dropped(void **state)
{
    struct fx *f = *state;
    struct gconn g;
    struct vsock_hdr h = {.src_cid = CID,
                          .dst_cid = VSOCK_HOST_CID,
                          .src_port = 3000,
                          .dst_port = 5000,
                          .type = VSOCK_TYPE_STREAM,
                          .op = VSOCK_OP_REQUEST};
    struct vsock_hdr r;
    struct vsock_muxer_stats st;
    struct iovec iov = {"abcde", 5};
    uint8_t buf[16];
    int fd;

    /* Forged source CID: dropped silently, no connection made. */
    h.src_cid = 7;
    assert_int_equal(OPS.send_pkt(f->m, &h, NULL, 0), 0);
    /* Not addressed to the host. */
    h.src_cid = CID;
    h.dst_cid = 5;
    assert_int_equal(OPS.send_pkt(f->m, &h, NULL, 0), 0);
    /* len says 10, 5 bytes came. */
    h.dst_cid = VSOCK_HOST_CID;
    h.op = VSOCK_OP_RW;
    h.len = 10;
    assert_int_equal(OPS.send_pkt(f->m, &h, &iov, 1), 0);
    /* Payload on a control packet. */
    h.op = VSOCK_OP_REQUEST;
    h.len = 5;
    assert_int_equal(OPS.send_pkt(f->m, &h, &iov, 1), 0);
    assert_false(OPS.has_pending(f->m));
    {
        struct pollfd p = {.fd = f->listen_fd, .events = POLLIN};

        assert_int_equal(poll(&p, 1, 50), 0); /* nobody connected to the service */
    }
    vsock_muxer_get_stats(f->m, &st);
    assert_int_equal(st.dropped, 4);
    assert_int_equal(st.conns, 0);

    /* Wrong socket type: RST. */
    h.len = 0;
    h.type = 2;
    assert_int_equal(OPS.send_pkt(f->m, &h, NULL, 0), 0);
    grecv(f, &r, buf, sizeof(buf));
    assert_int_equal(r.op, VSOCK_OP_RST);

    /* Unknown op on a live connection: RST and the host side is closed. */
    fd = guest_connect(f, &g, 3001);
    assert_int_equal(gsend(f, &g, 99, 0, NULL, 0), 0);
    grecv(f, &r, buf, sizeof(buf));
    assert_int_equal(r.op, VSOCK_OP_RST);
    assert_int_equal(r.dst_port, 3001);
    assert_true(sees_eof(fd));
    vsock_muxer_get_stats(f->m, &st);
    assert_int_equal(st.conns, 0);
    close(fd);
}

static void test_vsock_muxer_guest_shutdown_flushes_then_rst(void **state)
{
    struct fx *f = *state;
    struct gconn g;
    struct vsock_hdr h;
    uint8_t buf[16];
    int fd = guest_connect(f, &g, 4000);

    assert_int_equal(gsend(f, &g, VSOCK_OP_RW, 0, "last words", 10), 0);
    assert_int_equal(
        gsend(f, &g, VSOCK_OP_SHUTDOWN, VSOCK_SHUTDOWN_RCV | VSOCK_SHUTDOWN_SEND, NULL, 0), 0);
    grecv(f, &h, buf, sizeof(buf));
    assert_int_equal(h.op, VSOCK_OP_RST);
    read_exact(fd, buf, 10);
    assert_memory_equal(buf, "last words", 10);
    assert_true(sees_eof(fd));
    close(fd);
}

static void test_vsock_muxer_host_close_sends_shutdown(void **state)
{
    struct fx *f = *state;
    struct gconn g;
    struct vsock_hdr h;
    uint8_t buf[16];
    int fd = guest_connect(f, &g, 4001);

    assert_int_equal(write(fd, "bye", 3), 3);
    close(fd);
    grecv(f, &h, buf, sizeof(buf));
    assert_int_equal(h.op, VSOCK_OP_RW);
    grecv(f, &h, buf, sizeof(buf));
    assert_int_equal(h.op, VSOCK_OP_SHUTDOWN);
    assert_true(h.flags & VSOCK_SHUTDOWN_SEND);
    /* The guest closes too: the connection ends with a RST. */
    assert_int_equal(
        gsend(f, &g, VSOCK_OP_SHUTDOWN, VSOCK_SHUTDOWN_RCV | VSOCK_SHUTDOWN_SEND, NULL, 0), 0);
    grecv(f, &h, buf, sizeof(buf));
    assert_int_equal(h.op, VSOCK_OP_RST);
}

static void test_vsock_muxer_reused_address_drops_stale_rst(void **state)
{
    struct fx *f = *state;
    struct gconn g;
    struct vsock_hdr h;
    uint8_t buf[16];
    int fd = guest_connect(f, &g, 4005), fd2;

    /* Our RST for the old connection is still queued when the guest connects again. */
    close(fd);
    assert_int_equal(gsend(f, &g, 99, 0, NULL, 0), 0); /* bad op: conn killed, RST queued */
    fd2 = guest_connect(f, &g, 4005);
    /* The stale RST must not reach the guest: nothing else is pending. */
    assert_int_equal(grecv_timeout(f, &h, buf, sizeof(buf), 50), -EAGAIN);
    assert_int_equal(gsend(f, &g, VSOCK_OP_RW, 0, "ok", 2), 0);
    read_exact(fd2, buf, 2);
    assert_memory_equal(buf, "ok", 2);
    close(fd2);
}

static void test_vsock_muxer_credit_request_answered(void **state)
{
    struct fx *f = *state;
    struct gconn g;
    struct vsock_hdr h;
    uint8_t buf[16];
    int fd = guest_connect(f, &g, 4002);

    assert_int_equal(gsend(f, &g, VSOCK_OP_CREDIT_REQUEST, 0, NULL, 0), 0);
    grecv(f, &h, buf, sizeof(buf));
    assert_int_equal(h.op, VSOCK_OP_CREDIT_UPDATE);
    assert_true(h.buf_alloc > 0);
    close(fd);
}

static void test_vsock_muxer_guest_ignoring_credit_is_held_back(void **state)
{
    struct fx *f = *state;
    uint8_t *chunk = calloc(1, 64 * 1024), *rbuf = malloc(64 * 1024);
    struct gconn g;
    size_t sent = 0, got = 0;
    int r = 0, fd = guest_connect(f, &g, 4003);

    assert_non_null(chunk);
    assert_non_null(rbuf);
    /* Nobody reads on the host side: the muxer buffers up to its limit, then refuses. */
    for (int i = 0; i < 200 && r == 0; i++) {
        r = gsend(f, &g, VSOCK_OP_RW, 0, chunk, 64 * 1024);
        if (r == 0)
            sent += 64 * 1024;
    }
    assert_int_equal(r, -EAGAIN);
    assert_false(OPS.tx_unblocked(f->m));
    /* The host drains; the muxer says the guest's tx may resume and nothing was lost. */
    fcntl(fd, F_SETFL, O_NONBLOCK);
    for (int i = 0; i < 1000 && !OPS.tx_unblocked(f->m); i++) {
        ssize_t n = read(fd, rbuf, 64 * 1024);

        if (n > 0)
            got += (size_t)n;
        OPS.poll(f->m);
    }
    assert_int_equal(gsend(f, &g, VSOCK_OP_RW, 0, chunk, 64 * 1024), 0);
    sent += 64 * 1024;
    for (int i = 0; i < 1000 && got < sent; i++) {
        ssize_t n = read(fd, rbuf, 64 * 1024);

        if (n > 0)
            got += (size_t)n;
        OPS.poll(f->m);
        usleep(100);
    }
    assert_int_equal(got, sent);
    free(chunk);
    free(rbuf);
    close(fd);
}

static void test_vsock_muxer_reset_closes_everything(void **state)
{
    struct fx *f = *state;
    struct gconn g;
    struct vsock_muxer_stats st;
    int fd = guest_connect(f, &g, 4004);

    OPS.reset(f->m);
    vsock_muxer_get_stats(f->m, &st);
    assert_int_equal(st.conns, 0);
    assert_true(sees_eof(fd));
    assert_false(OPS.has_pending(f->m));
    close(fd);
}

static void test_vsock_muxer_create_replaces_stale_socket_and_unlinks(void **state)
{
    struct fx *f = *state;
    struct vsock_muxer *m2;
    struct stat sb;
    char path[160];
    int fd;

    snprintf(path, sizeof(path), "%s/stale.sock", f->dir);
    fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(vsock_muxer_create(&m2, CID, path), 0);
    assert_int_equal(stat(path, &sb), 0);
    assert_true(S_ISSOCK(sb.st_mode));
    OPS.destroy(m2);
    assert_int_equal(stat(path, &sb), -1);
    /* Bad arguments: host CID, empty and too-long paths. */
    assert_int_equal(vsock_muxer_create(&m2, 2, path), -EINVAL);
    assert_int_equal(vsock_muxer_create(&m2, CID, ""), -EINVAL);
    memset(path, 'a', sizeof(path) - 1);
    path[sizeof(path) - 1] = '\0';
    assert_int_equal(vsock_muxer_create(&m2, CID, path), -EINVAL);
}

static void test_vsock_hdr_roundtrip(void **state)
{
    struct vsock_hdr a = {0x1122334455667788ull, 2, 0xa1a2a3a4, 5, 6, 1, 5, 3, 0x10000, 77}, b;
    uint8_t raw[VSOCK_HDR_SIZE];

    (void)state;
    vsock_hdr_encode(&a, raw);
    /* Little-endian wire layout. */
    assert_int_equal(raw[0], 0x88);
    assert_int_equal(raw[16], 0xa4);
    assert_int_equal(raw[30], 5);
    vsock_hdr_decode(raw, &b);
    assert_int_equal(a.src_cid, b.src_cid);
    assert_int_equal(a.dst_cid, b.dst_cid);
    assert_int_equal(a.src_port, b.src_port);
    assert_int_equal(a.dst_port, b.dst_port);
    assert_int_equal(a.len, b.len);
    assert_int_equal(a.type, b.type);
    assert_int_equal(a.op, b.op);
    assert_int_equal(a.flags, b.flags);
    assert_int_equal(a.buf_alloc, b.buf_alloc);
    assert_int_equal(a.fwd_cnt, b.fwd_cnt);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_vsock_muxer_guest_connect_and_echo),
        T(test_vsock_muxer_guest_connect_refused_gets_rst),
        T(test_vsock_muxer_guest_to_host_bulk_with_credit),
        T(test_vsock_muxer_host_to_guest_bulk_respects_credit),
        T(test_vsock_muxer_host_connect_ok_and_relay),
        T(test_vsock_muxer_host_connect_guest_rst_closes_client),
        T(test_vsock_muxer_host_connect_bad_line_closes),
        T(test_vsock_muxer_unknown_connection_gets_rst),
        T(test_vsock_muxer_bad_packets_dropped),
        T(test_vsock_muxer_guest_shutdown_flushes_then_rst),
        T(test_vsock_muxer_host_close_sends_shutdown),
        T(test_vsock_muxer_reused_address_drops_stale_rst),
        T(test_vsock_muxer_credit_request_answered),
        T(test_vsock_muxer_guest_ignoring_credit_is_held_back),
        T(test_vsock_muxer_reset_closes_everything),
        T(test_vsock_muxer_create_replaces_stale_socket_and_unlinks),
        cmocka_unit_test(test_vsock_hdr_roundtrip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
