/*
 * The vsock back-end: multiplexes guest stream connections onto Unix
 * sockets the way Firecracker does. A guest connection to host port P
 * becomes a connection to "<uds>_P"; a host process reaches guest port P by
 * connecting to <uds> and writing "CONNECT P\n" (answered "OK <port>\n").
 *
 * All sockets are non-blocking and watched by the muxer's own epoll fd,
 * which the device nests in the VMM loop. Flow control follows the virtio
 * credit scheme both ways: we read a Unix socket only while the guest has
 * advertised room (buf_alloc - (rx_cnt - fwd_cnt)), and we advertise a
 * per-connection buffer of CONN_BUF bytes, holding what the Unix socket
 * does not take at once and sending CREDIT_UPDATE as it drains. Packets for
 * the guest are produced on demand into guest buffers (recv_pkt), so a
 * connection never holds more than a few pending control flags.
 */
#include "vsock_backend.h"

#include "buf.h"
#include "log.h"
#include "queue.h"

#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define CONN_BUF (256u * 1024)          /* buf_alloc we advertise per connection */
#define CREDIT_THRESHOLD (CONN_BUF / 4) /* send CREDIT_UPDATE after this much drained */
#define MAX_PKT_DATA (64u * 1024)       /* payload bytes per RW packet to the guest */
#define MAX_CONNS 1024u
#define LINE_MAX_LEN 32u
#define RST_RING 64u
#define FIRST_LOCAL_PORT (1u << 30)
#define POLL_BATCH 64

enum conn_state {
    ST_HOST_LINE,   /* host client accepted, reading "CONNECT P\n" */
    ST_HOST_REQ,    /* REQUEST queued/sent to the guest, waiting for RESPONSE */
    ST_CONNECTING,  /* guest REQUEST, connect() to <uds>_P in progress */
    ST_ESTABLISHED, /* relaying */
    ST_CLOSING,     /* guest closed: flush what we hold, then RST and free */
    ST_DEAD,        /* socket closed, only a RST for the guest left */
};

#define P_REQUEST 1u
#define P_RESPONSE 2u
#define P_CREDIT_UPDATE 4u
#define P_CREDIT_REQUEST 8u
#define P_SHUTDOWN 16u
#define P_RST 32u

struct conn {
    struct conn *next, *prev; /* all connections */
    struct conn *rx_next;     /* pending-for-guest FIFO */
    bool in_rxq;
    enum conn_state st;
    int fd;
    uint32_t events;     /* epoll interest currently registered (0: not registered) */
    uint32_t local_port; /* host side (CID 2) */
    uint32_t peer_port;  /* guest side */
    uint32_t pend;       /* P_* control packets to send */
    uint32_t shut_flags; /* flags of the pending SHUTDOWN */
    /* host -> guest */
    uint32_t peer_buf_alloc, peer_fwd_cnt, rx_cnt;
    bool readable, host_eof, credit_req_sent;
    /* guest -> host */
    uint32_t fwd_cnt, last_fwd_sent;
    struct buf txbuf;
    bool guest_shut_send, guest_shut_rcv, wr_shut;
    char line[LINE_MAX_LEN];
    size_t line_len;
};

struct rst_entry {
    uint32_t local_port, peer_port;
};

struct vsock_muxer {
    uint64_t guest_cid;
    char *uds;
    int epfd;
    int listen_fd;
    struct conn *conns;
    struct conn *rxq_head, *rxq_tail;
    struct rst_entry rst[RST_RING];
    unsigned rst_head, rst_n;
    uint32_t next_port;
    bool tx_blocked, tx_unblocked;
    struct vsock_muxer_stats stats;
    time_t rl_sec;
    unsigned rl_n;
};

/* Log lines that a guest or host client can trigger: at most 10 a second. */
static bool log_ok(struct vsock_muxer *m)
{
    struct timespec ts;
    int saved = errno; /* callers log errno after this */

    clock_gettime(CLOCK_MONOTONIC, &ts);
    errno = saved;
    if (ts.tv_sec != m->rl_sec) {
        m->rl_sec = ts.tv_sec;
        m->rl_n = 0;
    }
    return m->rl_n++ < 10;
}

#define MLOG(m, level, ...)                                                                        \
    do {                                                                                           \
        if (log_ok(m))                                                                             \
            log_msg(level, __VA_ARGS__);                                                           \
    } while (0)

void vsock_hdr_decode(const uint8_t raw[VSOCK_HDR_SIZE], struct vsock_hdr *h)
{
    uint64_t v64;
    uint32_t v32;
    uint16_t v16;

    memcpy(&v64, raw, 8);
    h->src_cid = le64toh(v64);
    memcpy(&v64, raw + 8, 8);
    h->dst_cid = le64toh(v64);
    memcpy(&v32, raw + 16, 4);
    h->src_port = le32toh(v32);
    memcpy(&v32, raw + 20, 4);
    h->dst_port = le32toh(v32);
    memcpy(&v32, raw + 24, 4);
    h->len = le32toh(v32);
    memcpy(&v16, raw + 28, 2);
    h->type = le16toh(v16);
    memcpy(&v16, raw + 30, 2);
    h->op = le16toh(v16);
    memcpy(&v32, raw + 32, 4);
    h->flags = le32toh(v32);
    memcpy(&v32, raw + 36, 4);
    h->buf_alloc = le32toh(v32);
    memcpy(&v32, raw + 40, 4);
    h->fwd_cnt = le32toh(v32);
}

void vsock_hdr_encode(const struct vsock_hdr *h, uint8_t raw[VSOCK_HDR_SIZE])
{
    uint64_t v64;
    uint32_t v32;
    uint16_t v16;

    v64 = htole64(h->src_cid);
    memcpy(raw, &v64, 8);
    v64 = htole64(h->dst_cid);
    memcpy(raw + 8, &v64, 8);
    v32 = htole32(h->src_port);
    memcpy(raw + 16, &v32, 4);
    v32 = htole32(h->dst_port);
    memcpy(raw + 20, &v32, 4);
    v32 = htole32(h->len);
    memcpy(raw + 24, &v32, 4);
    v16 = htole16(h->type);
    memcpy(raw + 28, &v16, 2);
    v16 = htole16(h->op);
    memcpy(raw + 30, &v16, 2);
    v32 = htole32(h->flags);
    memcpy(raw + 32, &v32, 4);
    v32 = htole32(h->buf_alloc);
    memcpy(raw + 36, &v32, 4);
    v32 = htole32(h->fwd_cnt);
    memcpy(raw + 40, &v32, 4);
}

/* ---- connection bookkeeping ---- */

static struct conn *conn_find(struct vsock_muxer *m, uint32_t local, uint32_t peer)
{
    for (struct conn *c = m->conns; c; c = c->next)
        if (c->local_port == local && c->peer_port == peer && c->st != ST_DEAD)
            return c;
    return NULL;
}

static bool local_port_used(struct vsock_muxer *m, uint32_t port)
{
    for (struct conn *c = m->conns; c; c = c->next)
        if (c->local_port == port)
            return true;
    return false;
}

static uint32_t peer_credit(const struct conn *c)
{
    uint32_t in_flight = c->rx_cnt - c->peer_fwd_cnt;

    return in_flight >= c->peer_buf_alloc ? 0 : c->peer_buf_alloc - in_flight;
}

static bool wants_read(const struct conn *c)
{
    return c->st == ST_ESTABLISHED && !c->host_eof && !c->guest_shut_rcv;
}

static bool conn_has_rx(struct conn *c)
{
    if (c->pend)
        return true;
    if (!wants_read(c) || !c->readable)
        return false;
    if (peer_credit(c) > 0)
        return true;
    if (!c->credit_req_sent) {
        /* Data waits but the guest gave no room: ask it for a credit update once. */
        c->pend |= P_CREDIT_REQUEST;
        c->credit_req_sent = true;
        return true;
    }
    return false;
}

static void rxq_push(struct vsock_muxer *m, struct conn *c)
{
    if (c->in_rxq || !conn_has_rx(c))
        return;
    c->in_rxq = true;
    c->rx_next = NULL;
    if (m->rxq_tail)
        m->rxq_tail->rx_next = c;
    else
        m->rxq_head = c;
    m->rxq_tail = c;
}

static struct conn *rxq_pop(struct vsock_muxer *m)
{
    struct conn *c = m->rxq_head;

    if (!c)
        return NULL;
    m->rxq_head = c->rx_next;
    if (!m->rxq_head)
        m->rxq_tail = NULL;
    c->in_rxq = false;
    c->rx_next = NULL;
    return c;
}

static void rxq_remove(struct vsock_muxer *m, struct conn *c)
{
    struct conn *prev = NULL;

    if (!c->in_rxq)
        return;
    for (struct conn *i = m->rxq_head; i; prev = i, i = i->rx_next) {
        if (i != c)
            continue;
        if (prev)
            prev->rx_next = c->rx_next;
        else
            m->rxq_head = c->rx_next;
        if (m->rxq_tail == c)
            m->rxq_tail = prev;
        break;
    }
    c->in_rxq = false;
}

/* Register the epoll interest this connection needs now. */
static void conn_update_events(struct vsock_muxer *m, struct conn *c)
{
    uint32_t want = 0;
    struct epoll_event ev;
    int op;

    if (c->fd < 0)
        return;
    if (c->st == ST_HOST_LINE || (wants_read(c) && !c->readable))
        want |= EPOLLIN;
    if (c->st == ST_CONNECTING || c->txbuf.len)
        want |= EPOLLOUT;
    if (want == c->events)
        return;
    /* With no interest the fd leaves the set: EPOLLHUP would otherwise fire forever. */
    op = !want ? EPOLL_CTL_DEL : c->events ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    ev.events = want;
    ev.data.ptr = c;
    if (epoll_ctl(m->epfd, op, c->fd, &ev) < 0) {
        MLOG(m, LOG_WARN, "msg=\"vsock epoll_ctl failed\" port=%" PRIu32 " err=%d", c->local_port,
             errno);
        return;
    }
    c->events = want;
}

static void conn_close_fd(struct vsock_muxer *m, struct conn *c)
{
    if (c->fd < 0)
        return;
    if (c->events)
        epoll_ctl(m->epfd, EPOLL_CTL_DEL, c->fd, NULL);
    c->events = 0;
    close(c->fd);
    c->fd = -1;
}

static void conn_free(struct vsock_muxer *m, struct conn *c)
{
    conn_close_fd(m, c);
    rxq_remove(m, c);
    if (c->prev)
        c->prev->next = c->next;
    else
        m->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    buf_fini(&c->txbuf);
    free(c);
    m->stats.conns--;
    /* A blocked TX packet may have been for this connection: let the device retry. */
    if (m->tx_blocked)
        m->tx_unblocked = true;
}

/* Close the host side; with `rst`, keep the entry until a RST reached the guest. */
static void conn_kill(struct vsock_muxer *m, struct conn *c, bool rst)
{
    if (!rst) {
        conn_free(m, c);
        return;
    }
    conn_close_fd(m, c);
    buf_fini(&c->txbuf);
    c->st = ST_DEAD;
    c->pend = P_RST;
    rxq_push(m, c);
    if (m->tx_blocked)
        m->tx_unblocked = true;
}

static struct conn *conn_new(struct vsock_muxer *m, int fd, enum conn_state st)
{
    struct conn *c;

    if (m->stats.conns >= MAX_CONNS)
        return NULL;
    c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->fd = fd;
    c->st = st;
    buf_init(&c->txbuf, CONN_BUF);
    c->next = m->conns;
    if (m->conns)
        m->conns->prev = c;
    m->conns = c;
    m->stats.conns++;
    return c;
}

/* Queue a RST for a connection we do not know (bounded; dropped when full). */
static void queue_rst(struct vsock_muxer *m, uint32_t local, uint32_t peer)
{
    if (m->rst_n == RST_RING) {
        MLOG(m, LOG_WARN, "msg=\"vsock RST queue full, dropping RST\" port=%" PRIu32, local);
        return;
    }
    m->rst[(m->rst_head + m->rst_n) % RST_RING] = (struct rst_entry){local, peer};
    m->rst_n++;
}

/* After guest bytes left our buffer: maybe tell the guest it has room again. */
static void maybe_credit_update(struct vsock_muxer *m, struct conn *c)
{
    if (c->fwd_cnt - c->last_fwd_sent >= CREDIT_THRESHOLD) {
        c->pend |= P_CREDIT_UPDATE;
        rxq_push(m, c);
    }
}

/* Write what the buffer holds; 0 or -errno (connection broken). */
static int conn_flush(struct vsock_muxer *m, struct conn *c)
{
    while (c->txbuf.len) {
        ssize_t n = send(c->fd, c->txbuf.data, c->txbuf.len, MSG_NOSIGNAL);

        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            return -errno;
        }
        buf_consume(&c->txbuf, (size_t)n);
        c->fwd_cnt += (uint32_t)n;
    }
    maybe_credit_update(m, c);
    return 0;
}

/* What to do once the buffer is empty and the guest stopped sending. */
static void conn_after_drain(struct vsock_muxer *m, struct conn *c)
{
    if (c->txbuf.len)
        return;
    if (c->st == ST_CLOSING) {
        conn_kill(m, c, true);
        return;
    }
    if (c->guest_shut_send && !c->wr_shut && c->fd >= 0) {
        shutdown(c->fd, SHUT_WR);
        c->wr_shut = true;
    }
    /* Both directions finished: nothing more can travel, close it. */
    if (c->st == ST_ESTABLISHED && c->guest_shut_send && c->host_eof)
        conn_kill(m, c, true);
}

/* ---- guest -> host ---- */

static void guest_connect(struct vsock_muxer *m, const struct vsock_hdr *h)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    struct conn *c;
    int fd, n;

    /* The guest reuses the address of a connection whose RST is still queued: drop that RST. */
    for (c = m->conns; c; c = c->next) {
        if (c->st == ST_DEAD && c->local_port == h->dst_port && c->peer_port == h->src_port) {
            conn_free(m, c);
            break;
        }
    }
    n = snprintf(sa.sun_path, sizeof(sa.sun_path), "%s_%" PRIu32, m->uds, h->dst_port);
    if (n < 0 || (size_t)n >= sizeof(sa.sun_path)) {
        queue_rst(m, h->dst_port, h->src_port);
        return;
    }
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        queue_rst(m, h->dst_port, h->src_port);
        return;
    }
    c = conn_new(m, fd, ST_CONNECTING);
    if (!c) {
        MLOG(m, LOG_WARN, "msg=\"vsock connection refused (limit or memory)\" port=%" PRIu32,
             h->dst_port);
        close(fd);
        queue_rst(m, h->dst_port, h->src_port);
        return;
    }
    c->local_port = h->dst_port;
    c->peer_port = h->src_port;
    c->peer_buf_alloc = h->buf_alloc;
    c->peer_fwd_cnt = h->fwd_cnt;
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
        c->st = ST_ESTABLISHED;
        c->pend |= P_RESPONSE;
        rxq_push(m, c);
    } else if (errno == EINPROGRESS) {
        /* finished in conn_event() on EPOLLOUT */
    } else {
        MLOG(m, LOG_INFO, "msg=\"vsock guest connect refused\" port=%" PRIu32 " err=%d",
             h->dst_port, errno);
        conn_kill(m, c, true);
        return;
    }
    conn_update_events(m, c);
}

static int guest_rw(struct vsock_muxer *m, struct conn *c, const struct iovec *iov, unsigned iovcnt,
                    uint32_t len)
{
    size_t off = 0;

    if (len == 0)
        return 0;
    if (c->txbuf.len + len > CONN_BUF) {
        /* The guest ignored our credit: stop taking its TX until the socket drains. */
        m->tx_blocked = true;
        conn_update_events(m, c);
        return -EAGAIN;
    }
    if (c->txbuf.len == 0) {
        struct msghdr msg = {.msg_iov = (struct iovec *)iov, .msg_iovlen = iovcnt};
        ssize_t n;

        do {
            n = sendmsg(c->fd, &msg, MSG_NOSIGNAL);
        } while (n < 0 && errno == EINTR);
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
            MLOG(m, LOG_INFO, "msg=\"vsock host socket write failed\" port=%" PRIu32 " err=%d",
                 c->local_port, errno);
            conn_kill(m, c, true);
            return 0;
        }
        if (n > 0) {
            off = (size_t)n;
            c->fwd_cnt += (uint32_t)n;
        }
    }
    /* Keep the rest (never more than CONN_BUF, checked above). */
    for (unsigned i = 0; i < iovcnt; i++) {
        size_t l = iov[i].iov_len;

        if (off >= l) {
            off -= l;
            continue;
        }
        if (buf_append(&c->txbuf, (const uint8_t *)iov[i].iov_base + off, l - off) < 0) {
            MLOG(m, LOG_WARN, "msg=\"vsock buffer allocation failed\" port=%" PRIu32,
                 c->local_port);
            conn_kill(m, c, true);
            return 0;
        }
        off = 0;
    }
    maybe_credit_update(m, c);
    conn_update_events(m, c);
    return 0;
}

static void guest_shutdown(struct vsock_muxer *m, struct conn *c, uint32_t flags)
{
    if (flags & VSOCK_SHUTDOWN_SEND)
        c->guest_shut_send = true;
    if (flags & VSOCK_SHUTDOWN_RCV)
        c->guest_shut_rcv = true;
    if (c->guest_shut_send && c->guest_shut_rcv)
        c->st = ST_CLOSING;
    conn_after_drain(m, c);
    if (c->st != ST_DEAD)
        conn_update_events(m, c);
}

static void guest_response(struct vsock_muxer *m, struct conn *c)
{
    char line[24];
    int n;

    if (c->st != ST_HOST_REQ) {
        conn_kill(m, c, true);
        return;
    }
    n = snprintf(line, sizeof(line), "OK %" PRIu32 "\n", c->local_port);
    if (send(c->fd, line, (size_t)n, MSG_NOSIGNAL) != n) {
        MLOG(m, LOG_INFO, "msg=\"vsock host client gone before OK\" port=%" PRIu32, c->local_port);
        conn_kill(m, c, true);
        return;
    }
    c->st = ST_ESTABLISHED;
    conn_update_events(m, c);
}

static const char *op_name(uint16_t op)
{
    static const char *const names[] = {"invalid",  "request", "response",      "rst",
                                        "shutdown", "rw",      "credit_update", "credit_request"};

    return op < sizeof(names) / sizeof(names[0]) ? names[op] : "unknown";
}

static int mux_send_pkt(void *b, const struct vsock_hdr *h, const struct iovec *iov,
                        unsigned iovcnt)
{
    struct vsock_muxer *m = b;
    struct conn *c;
    size_t total = 0;
    uint32_t old_credit;

    for (unsigned i = 0; i < iovcnt; i++)
        total += iov[i].iov_len;
    if (h->src_cid != m->guest_cid || h->dst_cid != VSOCK_HOST_CID) {
        /* Never answer a forged address. */

        MLOG(m, LOG_WARN, "msg=\"vsock packet dropped: bad cid\" src=%" PRIu64 " dst=%" PRIu64,
             h->src_cid, h->dst_cid);
        m->stats.dropped++;
        return 0;
    }
    if (total != h->len || (h->op != VSOCK_OP_RW && h->len != 0)) {
        MLOG(m, LOG_WARN, "msg=\"vsock packet dropped: %s\" op=%s len=%" PRIu32 " data=%zu",
             total != h->len ? "len mismatch" : "payload on a control packet", op_name(h->op),
             h->len, total);
        m->stats.dropped++;
        return 0;
    }
    c = conn_find(m, h->dst_port, h->src_port);
    if (h->type != VSOCK_TYPE_STREAM || h->op == VSOCK_OP_INVALID ||
        h->op > VSOCK_OP_CREDIT_REQUEST) {
        MLOG(m, LOG_WARN, "msg=\"vsock packet dropped: bad type or op\" type=%u op=%u", h->type,
             h->op);
        m->stats.dropped++;
        if (c)
            conn_kill(m, c, true);
        else if (h->op != VSOCK_OP_RST)
            queue_rst(m, h->dst_port, h->src_port);
        return 0;
    }
    if (!c) {
        if (h->op == VSOCK_OP_REQUEST)
            guest_connect(m, h);
        else if (h->op != VSOCK_OP_RST)
            queue_rst(m, h->dst_port, h->src_port);
        return 0;
    }
    if (h->op == VSOCK_OP_RW && c->txbuf.len + h->len > CONN_BUF) {
        /* Credit ignored and buffer full: retry later without touching state. */
        return guest_rw(m, c, iov, iovcnt, h->len);
    }

    old_credit = peer_credit(c);
    c->peer_buf_alloc = h->buf_alloc;
    c->peer_fwd_cnt = h->fwd_cnt;
    if (peer_credit(c) > 0)
        c->credit_req_sent = false;
    if (old_credit == 0 && peer_credit(c) > 0)
        rxq_push(m, c);

    switch (h->op) {
    case VSOCK_OP_REQUEST:
        /* A second REQUEST on a live connection. */
        conn_kill(m, c, true);
        return 0;
    case VSOCK_OP_RESPONSE:
        guest_response(m, c);
        return 0;
    case VSOCK_OP_RST:
        conn_kill(m, c, false);
        return 0;
    case VSOCK_OP_SHUTDOWN:
        guest_shutdown(m, c, h->flags);
        return 0;
    case VSOCK_OP_RW:
        if (c->st != ST_ESTABLISHED || c->guest_shut_send) {
            conn_kill(m, c, true);
            return 0;
        }
        return guest_rw(m, c, iov, iovcnt, h->len);
    case VSOCK_OP_CREDIT_UPDATE:
        return 0;
    case VSOCK_OP_CREDIT_REQUEST:
        c->pend |= P_CREDIT_UPDATE;
        rxq_push(m, c);
        return 0;
    default:
        return 0;
    }
}

/* ---- host -> guest ---- */

static void fill_hdr(struct vsock_muxer *m, struct conn *c, struct vsock_hdr *h, uint16_t op)
{
    memset(h, 0, sizeof(*h));
    h->src_cid = VSOCK_HOST_CID;
    h->dst_cid = m->guest_cid;
    h->src_port = c->local_port;
    h->dst_port = c->peer_port;
    h->type = VSOCK_TYPE_STREAM;
    h->op = op;
    h->buf_alloc = CONN_BUF;
    h->fwd_cnt = c->fwd_cnt;
    c->last_fwd_sent = c->fwd_cnt;
}

/* Produce one packet for `c`: 1 produced, 0 nothing (after all), or 2 produced and `c` freed. */
static int conn_next_pkt(struct vsock_muxer *m, struct conn *c, struct vsock_hdr *h,
                         const struct iovec *iov, unsigned iovcnt, size_t cap)
{
    static const struct {
        uint32_t bit;
        uint16_t op;
    } ctl[] = {
        {P_REQUEST, VSOCK_OP_REQUEST},
        {P_RESPONSE, VSOCK_OP_RESPONSE},
        {P_CREDIT_REQUEST, VSOCK_OP_CREDIT_REQUEST},
    };

    if (c->pend & P_RST) {
        fill_hdr(m, c, h, VSOCK_OP_RST);
        m->stats.rst_sent++;
        conn_free(m, c);
        return 2;
    }
    for (unsigned i = 0; i < sizeof(ctl) / sizeof(ctl[0]); i++) {
        if (c->pend & ctl[i].bit) {
            c->pend &= ~ctl[i].bit;
            fill_hdr(m, c, h, ctl[i].op);
            return 1;
        }
    }
    if (wants_read(c) && c->readable && peer_credit(c) > 0 && cap > 0) {
        struct iovec v[VQ_MAX_SIZE];
        size_t want = peer_credit(c), left;
        unsigned n = 0;
        ssize_t r;

        if (want > cap)
            want = cap;
        if (want > MAX_PKT_DATA)
            want = MAX_PKT_DATA;
        left = want;
        for (unsigned i = 0; i < iovcnt && left && n < VQ_MAX_SIZE; i++) {
            size_t l = iov[i].iov_len < left ? iov[i].iov_len : left;

            v[n++] = (struct iovec){iov[i].iov_base, l};
            left -= l;
        }
        do {
            r = readv(c->fd, v, (int)n);
        } while (r < 0 && errno == EINTR);
        if (r > 0) {
            fill_hdr(m, c, h, VSOCK_OP_RW);
            h->len = (uint32_t)r;
            c->rx_cnt += (uint32_t)r;
            return 1;
        }
        if (r == 0) {
            /* The host side will send nothing more. */
            c->host_eof = true;
            c->readable = false;
            c->pend |= P_SHUTDOWN;
            c->shut_flags |= VSOCK_SHUTDOWN_SEND;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            c->readable = false;
        } else {
            MLOG(m, LOG_INFO, "msg=\"vsock host socket read failed\" port=%" PRIu32 " err=%d",
                 c->local_port, errno);
            conn_kill(m, c, true);
            return 0;
        }
        conn_update_events(m, c);
    }
    if (c->pend & P_SHUTDOWN) {
        c->pend &= ~P_SHUTDOWN;
        fill_hdr(m, c, h, VSOCK_OP_SHUTDOWN);
        h->flags = c->shut_flags;
        /* The guest may have finished too: then close. */
        conn_after_drain(m, c);
        return 1;
    }
    if (c->pend & P_CREDIT_UPDATE) {
        c->pend &= ~P_CREDIT_UPDATE;
        fill_hdr(m, c, h, VSOCK_OP_CREDIT_UPDATE);
        m->stats.credit_updates++;
        return 1;
    }
    return 0;
}

static int mux_recv_pkt(void *b, struct vsock_hdr *h, const struct iovec *iov, unsigned iovcnt,
                        size_t cap)
{
    struct vsock_muxer *m = b;
    struct conn *c;

    if (m->rst_n) {
        struct rst_entry e = m->rst[m->rst_head];

        m->rst_head = (m->rst_head + 1) % RST_RING;
        m->rst_n--;
        memset(h, 0, sizeof(*h));
        h->src_cid = VSOCK_HOST_CID;
        h->dst_cid = m->guest_cid;
        h->src_port = e.local_port;
        h->dst_port = e.peer_port;
        h->type = VSOCK_TYPE_STREAM;
        h->op = VSOCK_OP_RST;
        m->stats.rst_sent++;
        return 0;
    }
    /* Each connection gets at most one turn per call. */
    for (unsigned turns = m->stats.conns + 1; turns && (c = rxq_pop(m)) != NULL; turns--) {
        int r = conn_next_pkt(m, c, h, iov, iovcnt, cap);

        if (r == 2)
            return 0;
        rxq_push(m, c);
        if (r == 1)
            return 0;
    }
    return -EAGAIN;
}

static bool mux_has_pending(void *b)
{
    struct vsock_muxer *m = b;

    return m->rst_n || m->rxq_head;
}

/* ---- host events ---- */

static uint32_t alloc_local_port(struct vsock_muxer *m)
{
    for (unsigned tries = 0; tries < 2 * MAX_CONNS; tries++) {
        uint32_t p = m->next_port++;

        if (m->next_port < FIRST_LOCAL_PORT)
            m->next_port = FIRST_LOCAL_PORT;
        if (!local_port_used(m, p))
            return p;
    }
    return 0;
}

static void accept_clients(struct vsock_muxer *m)
{
    for (int i = 0; i < POLL_BATCH; i++) {
        int fd = accept4(m->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        struct conn *c;

        if (fd < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                MLOG(m, LOG_WARN, "msg=\"vsock accept failed\" err=%d", errno);
            return;
        }
        c = conn_new(m, fd, ST_HOST_LINE);
        if (!c) {
            MLOG(m, LOG_WARN, "msg=\"vsock host client refused (connection limit or memory)\"");
            close(fd);
            continue;
        }
        c->local_port = alloc_local_port(m);
        if (!c->local_port) {
            conn_free(m, c);
            continue;
        }
        conn_update_events(m, c);
    }
}

/* Parse "CONNECT <port>" (without the newline). */
static int parse_connect(const char *line, size_t len, uint32_t *port)
{
    static const char prefix[] = "CONNECT ";
    char digits[16];
    size_t plen = sizeof(prefix) - 1, dlen;
    unsigned long v;
    char *end;

    if (len <= plen || memcmp(line, prefix, plen) != 0)
        return -EINVAL;
    dlen = len - plen;
    if (dlen >= sizeof(digits))
        return -EINVAL;
    memcpy(digits, line + plen, dlen);
    digits[dlen] = '\0';
    for (size_t i = 0; i < dlen; i++)
        if (digits[i] < '0' || digits[i] > '9')
            return -EINVAL;
    errno = 0;
    v = strtoul(digits, &end, 10);
    if (errno || *end || v > UINT32_MAX)
        return -EINVAL;
    *port = (uint32_t)v;
    return 0;
}

static void read_connect_line(struct vsock_muxer *m, struct conn *c)
{
    char esc[64];

    /* One byte at a time so nothing after the newline is taken from the stream. */
    while (c->line_len < LINE_MAX_LEN) {
        ssize_t n = read(c->fd, &c->line[c->line_len], 1);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n <= 0) {
            conn_free(m, c);
            return;
        }
        if (c->line[c->line_len] == '\n') {
            uint32_t port;

            if (parse_connect(c->line, c->line_len, &port) < 0)
                break;
            c->peer_port = port;
            c->st = ST_HOST_REQ;
            c->peer_buf_alloc = 0;
            c->pend |= P_REQUEST;
            rxq_push(m, c);
            conn_update_events(m, c);
            return;
        }
        c->line_len++;
    }
    MLOG(m, LOG_WARN, "msg=\"vsock host client sent a bad CONNECT line\" line=\"%s\"",
         log_escape(esc, sizeof(esc), c->line, c->line_len));
    conn_free(m, c);
}

static void conn_event(struct vsock_muxer *m, struct conn *c, uint32_t ev)
{
    switch (c->st) {
    case ST_HOST_LINE:
        read_connect_line(m, c);
        return;
    case ST_CONNECTING: {
        int err = 0;
        socklen_t l = sizeof(err);

        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l) < 0)
            err = errno;
        if (err) {
            MLOG(m, LOG_INFO, "msg=\"vsock guest connect refused\" port=%" PRIu32 " err=%d",
                 c->local_port, err);
            conn_kill(m, c, true);
            return;
        }
        c->st = ST_ESTABLISHED;
        c->pend |= P_RESPONSE;
        rxq_push(m, c);
        conn_update_events(m, c);
        return;
    }
    case ST_ESTABLISHED:
    case ST_CLOSING:
        if ((ev & (EPOLLOUT | EPOLLERR | EPOLLHUP)) && c->txbuf.len) {
            if (conn_flush(m, c) < 0) {
                MLOG(m, LOG_INFO, "msg=\"vsock host socket write failed\" port=%" PRIu32,
                     c->local_port);
                conn_kill(m, c, true);
                return;
            }
            if (m->tx_blocked && !c->txbuf.len)
                m->tx_unblocked = true;
            conn_after_drain(m, c);
            if (c->st == ST_DEAD)
                return;
        }
        if ((ev & (EPOLLIN | EPOLLERR | EPOLLHUP)) && wants_read(c)) {
            c->readable = true;
            rxq_push(m, c);
        }
        conn_update_events(m, c);
        return;
    default:
        return;
    }
}

static int mux_fd(void *b)
{
    return ((struct vsock_muxer *)b)->epfd;
}

static void mux_poll(void *b)
{
    struct vsock_muxer *m = b;
    struct epoll_event evs[POLL_BATCH];
    int n;

    do {
        n = epoll_wait(m->epfd, evs, POLL_BATCH, 0);
    } while (n < 0 && errno == EINTR);
    for (int i = 0; i < n; i++) {
        if (evs[i].data.ptr == NULL)
            accept_clients(m);
        else
            conn_event(m, evs[i].data.ptr, evs[i].events);
    }
}

static bool mux_tx_unblocked(void *b)
{
    struct vsock_muxer *m = b;
    bool r = m->tx_unblocked;

    if (r)
        m->tx_blocked = m->tx_unblocked = false;
    return r;
}

static void mux_reset(void *b)
{
    struct vsock_muxer *m = b;

    while (m->conns)
        conn_free(m, m->conns);
    m->rst_n = 0;
    m->tx_blocked = m->tx_unblocked = false;
}

static void mux_destroy(void *b)
{
    struct vsock_muxer *m = b;

    if (!m)
        return;
    mux_reset(m);
    if (m->listen_fd >= 0) {
        close(m->listen_fd);
        unlink(m->uds);
    }
    if (m->epfd >= 0)
        close(m->epfd);
    free(m->uds);
    free(m);
}

const struct vsock_backend_ops vsock_muxer_ops = {
    .send_pkt = mux_send_pkt,
    .recv_pkt = mux_recv_pkt,
    .has_pending = mux_has_pending,
    .fd = mux_fd,
    .poll = mux_poll,
    .tx_unblocked = mux_tx_unblocked,
    .reset = mux_reset,
    .destroy = mux_destroy,
};

void vsock_muxer_get_stats(const struct vsock_muxer *m, struct vsock_muxer_stats *s)
{
    *s = m->stats;
}

int vsock_muxer_create(struct vsock_muxer **out, uint64_t guest_cid, const char *uds_path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    struct vsock_muxer *m = NULL;
    size_t plen = strlen(uds_path);
    int ret = 0;

    /* Per-port paths that do not fit are refused (RST) when the guest asks for them. */
    if (plen == 0 || plen >= sizeof(sa.sun_path) || guest_cid <= VSOCK_HOST_CID ||
        guest_cid >= UINT32_MAX) {
        ret = -EINVAL;
        goto out;
    }
    m = calloc(1, sizeof(*m));
    if (!m) {
        ret = -ENOMEM;
        goto out;
    }
    m->epfd = m->listen_fd = -1;
    m->guest_cid = guest_cid;
    m->next_port = FIRST_LOCAL_PORT;
    m->uds = strdup(uds_path);
    if (!m->uds) {
        ret = -ENOMEM;
        goto out;
    }
    m->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (m->epfd < 0) {
        ret = -errno;
        goto out;
    }
    m->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (m->listen_fd < 0) {
        ret = -errno;
        goto out;
    }
    memcpy(sa.sun_path, uds_path, plen);
    if (unlink(uds_path) < 0 && errno != ENOENT) {
        ret = -errno;
        goto out;
    }
    if (bind(m->listen_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
        listen(m->listen_fd, 64) < 0) {
        ret = -errno;
        goto out;
    }
    if (epoll_ctl(m->epfd, EPOLL_CTL_ADD, m->listen_fd, &ev) < 0) {
        ret = -errno;
        unlink(uds_path);
        goto out;
    }
    *out = m;
    m = NULL;
out:
    if (ret < 0) {
        LOG_ERR("msg=\"vsock listener setup failed\" path=%s err=%d", uds_path, ret);
        if (m) {
            if (m->listen_fd >= 0)
                close(m->listen_fd);
            m->listen_fd = -1;
            mux_destroy(m);
        }
    }
    return ret;
}
