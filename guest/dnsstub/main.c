/*
 * capsem-dnsstub: the guest's DNS relay (schemas/vsock-net.md, port 5004).
 * capsem-init's rules redirect UDP and TCP port 53 to this program's loopback
 * port. Every query, UDP or TCP, goes over one vsock connection to host port
 * 5004 as a DNS-over-TCP message with its id rewritten to be unique on that
 * connection; the host's answer gets the client's id back and goes to the
 * client. A query with no answer after 5 s gets SERVFAIL; when the host
 * connection drops, every waiting query gets SERVFAIL and the next query
 * connects again.
 *
 * usage: capsem-dnsstub [--udp-fd N --tcp-fd M | --port P]
 */
#include "dnsid.h"
#include "log.h"
#include "loop.h"
#include "netcfg.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/vm_sockets.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define HOST_PORT 5004
#define QUERY_TIMEOUT_MS 5000
/* Bytes waiting for the host, and for one TCP client, before we stop taking more. */
#define HOST_OUT_MAX (256u * 1024u)
#define CLIENT_OUT_MAX (64u * 1024u)
#define IN_MAX (2u + DNS_MSG_MAX)
#define MAX_TCP_CLIENTS 256

struct bytes {
    uint8_t *p;
    size_t len, cap;
};

struct tcp_client {
    struct tcp_client *next;
    uint32_t num;
    int fd;
    struct bytes in, out;
    bool eof;
};

static struct {
    struct loop *loop;
    int udp, tcp;
    int host; /* -1 when not connected */
    bool host_connecting;
    struct bytes host_in, host_out;
    struct dnsid_table ids;
    struct tcp_client *clients;
    unsigned nclients;
    uint32_t next_num;
} S = {.udp = -1, .tcp = -1, .host = -1};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int bytes_add(struct bytes *b, const void *p, size_t n, size_t max)
{
    if (b->len + n > max)
        return -ENOBUFS;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n)
            cap *= 2;
        uint8_t *np = realloc(b->p, cap);
        if (!np)
            return -ENOMEM;
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
    return 0;
}

static void bytes_drop(struct bytes *b, size_t n)
{
    memmove(b->p, b->p + n, b->len - n);
    b->len -= n;
}

static struct tcp_client *client_find(uint32_t num)
{
    for (struct tcp_client *c = S.clients; c; c = c->next)
        if (c->num == num)
            return c;
    return NULL;
}

/* Send one answer (client id already restored) to whoever asked. */
static void deliver(const struct dnsid_client *cl, const uint8_t *msg, size_t len)
{
    if (cl->tcp_conn == 0) {
        if (sendto(S.udp, msg, len, MSG_DONTWAIT, (const struct sockaddr *)&cl->udp_peer,
                   sizeof(cl->udp_peer)) < 0)
            LOG_DEBUG("event=udp_reply err=\"%s\"", strerror(errno));
        return;
    }
    struct tcp_client *c = client_find(cl->tcp_conn);
    if (!c)
        return;
    uint8_t l[2] = {(uint8_t)(len >> 8), (uint8_t)len};
    if (c->out.len + 2 + len > CLIENT_OUT_MAX || bytes_add(&c->out, l, 2, CLIENT_OUT_MAX) ||
        bytes_add(&c->out, msg, len, CLIENT_OUT_MAX)) {
        LOG_WARN("event=tcp_reply problem=client_not_reading");
        return;
    }
    /* Sent from the client's own callback (which alone may free it). */
    if (loop_mod(S.loop, c->fd, (c->eof ? 0 : EPOLLIN) | EPOLLOUT))
        LOG_WARN("event=tcp_reply problem=loop_mod");
}

static void servfail(const struct dnsid_entry *e)
{
    uint8_t out[sizeof(e->q)];
    int n = dns_servfail(e->q, e->qlen, out, sizeof(out));
    if (n < 0)
        return;
    dns_set_id(out, e->orig_id);
    deliver(&e->client, out, (size_t)n);
}

static void host_close(void)
{
    if (S.host >= 0) {
        loop_del(S.loop, S.host);
        close(S.host);
    }
    S.host = -1;
    S.host_connecting = false;
    S.host_in.len = 0;
    S.host_out.len = 0;
    struct dnsid_entry e;
    while (dnsid_take_expired(&S.ids, 0, true, &e))
        servfail(&e);
}

static void on_host(void *opaque, uint32_t events);

static void host_update(void)
{
    if (S.host < 0)
        return;
    uint32_t ev = EPOLLIN;
    if (S.host_connecting || S.host_out.len)
        ev |= EPOLLOUT;
    if (S.host_connecting)
        ev = EPOLLOUT;
    if (loop_mod(S.loop, S.host, ev))
        host_close();
}

static int host_connect(void)
{
    int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -errno;
    struct sockaddr_vm sa = {
        .svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_HOST, .svm_port = HOST_PORT};
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
        S.host_connecting = false;
    } else if (errno == EINPROGRESS) {
        S.host_connecting = true;
    } else {
        int err = errno;
        close(fd);
        return -err;
    }
    int rc = loop_add(S.loop, fd, EPOLLOUT, on_host, NULL);
    if (rc) {
        close(fd);
        return rc;
    }
    S.host = fd;
    return 0;
}

static void host_flush(void)
{
    while (S.host >= 0 && !S.host_connecting && S.host_out.len) {
        ssize_t n = send(S.host, S.host_out.p, S.host_out.len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                break;
            LOG_WARN("event=host_send err=\"%s\"", strerror(errno));
            host_close();
            return;
        }
        bytes_drop(&S.host_out, (size_t)n);
    }
    host_update();
}

/* Answers from the host: restore the id, hand over. */
static void host_read(void)
{
    for (;;) {
        uint8_t tmp[8192];
        ssize_t n = recv(S.host, tmp, sizeof(tmp), MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            break;
        if (n <= 0) {
            LOG_WARN("event=host_closed err=\"%s\"", n < 0 ? strerror(errno) : "end of file");
            host_close();
            return;
        }
        if (bytes_add(&S.host_in, tmp, (size_t)n, IN_MAX + sizeof(tmp))) {
            host_close();
            return;
        }
        while (S.host_in.len >= 2) {
            size_t ml = (size_t)S.host_in.p[0] << 8 | S.host_in.p[1];
            if (ml > DNS_MSG_MAX) {
                LOG_WARN("event=host_answer problem=too_long len=%zu", ml);
                host_close();
                return;
            }
            if (S.host_in.len < 2 + ml)
                break;
            uint8_t *m = S.host_in.p + 2;
            struct dnsid_entry e;
            if (ml >= DNS_HDR_LEN && dnsid_take(&S.ids, dns_get_id(m), &e)) {
                dns_set_id(m, e.orig_id);
                deliver(&e.client, m, ml);
            } else {
                LOG_DEBUG("event=host_answer problem=unknown_id");
            }
            bytes_drop(&S.host_in, 2 + ml);
        }
    }
}

static void on_host(void *opaque, uint32_t events)
{
    (void)opaque;
    if (S.host_connecting) {
        int err = 0;
        socklen_t el = sizeof(err);
        if (getsockopt(S.host, SOL_SOCKET, SO_ERROR, &err, &el) < 0)
            err = errno;
        if (err) {
            LOG_WARN("event=host_connect port=%d err=\"%s\"", HOST_PORT, strerror(err));
            host_close();
            return;
        }
        S.host_connecting = false;
    }
    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR))
        host_read();
    host_flush();
}

/* Forward one query from `cl`; on any failure the client gets SERVFAIL at once. */
static void forward(uint8_t *msg, size_t len, const struct dnsid_client *cl)
{
    uint16_t nid;
    if (len < DNS_HDR_LEN || len > DNS_MSG_MAX)
        return; /* not a DNS message we can answer */
    int rc = dnsid_add(&S.ids, msg, len, cl, now_ms() + QUERY_TIMEOUT_MS, &nid);
    if (rc) {
        struct dnsid_entry tmp = {.client = *cl, .orig_id = dns_get_id(msg)};
        tmp.qlen = DNS_HDR_LEN;
        memcpy(tmp.q, msg, DNS_HDR_LEN);
        servfail(&tmp);
        return;
    }
    if (S.host < 0 && (rc = host_connect())) {
        LOG_WARN("event=host_connect port=%d err=\"%s\"", HOST_PORT, strerror(-rc));
        host_close(); /* SERVFAIL for everything waiting, this query included */
        return;
    }
    uint16_t orig = dns_get_id(msg);
    dns_set_id(msg, nid);
    uint8_t l[2] = {(uint8_t)(len >> 8), (uint8_t)len};
    if (S.host_out.len + 2 + len > HOST_OUT_MAX || bytes_add(&S.host_out, l, 2, HOST_OUT_MAX) ||
        bytes_add(&S.host_out, msg, len, HOST_OUT_MAX)) {
        struct dnsid_entry e;
        dns_set_id(msg, orig);
        if (dnsid_take(&S.ids, nid, &e))
            servfail(&e);
        return;
    }
    host_flush();
}

static void on_udp(void *opaque, uint32_t events)
{
    (void)opaque;
    (void)events;
    for (int i = 0; i < 64; i++) {
        uint8_t msg[DNS_MSG_MAX];
        struct dnsid_client cl = {0};
        socklen_t al = sizeof(cl.udp_peer);
        ssize_t n = recvfrom(S.udp, msg, sizeof(msg), MSG_DONTWAIT | MSG_TRUNC,
                             (struct sockaddr *)&cl.udp_peer, &al);
        if (n < 0)
            return;
        if ((size_t)n > sizeof(msg))
            continue; /* larger than any query we pass on */
        forward(msg, (size_t)n, &cl);
    }
}

static void client_free(struct tcp_client *c)
{
    for (struct tcp_client **pp = &S.clients; *pp; pp = &(*pp)->next)
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    struct dnsid_entry e;
    while (dnsid_take_client(&S.ids, c->num, &e))
        ;
    loop_del(S.loop, c->fd);
    close(c->fd);
    free(c->in.p);
    free(c->out.p);
    free(c);
    S.nclients--;
}

static void client_update(struct tcp_client *c)
{
    while (c->out.len) {
        ssize_t n = send(c->fd, c->out.p, c->out.len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                break;
            client_free(c);
            return;
        }
        bytes_drop(&c->out, (size_t)n);
    }
    if (c->eof && c->out.len == 0) {
        /* Wait for the answers still due to this client, then close. */
        bool waiting = false;
        for (size_t i = 0; i < DNSID_MAX && !waiting; i++)
            waiting = S.ids.e[i].used && S.ids.e[i].client.tcp_conn == c->num;
        if (!waiting) {
            client_free(c);
            return;
        }
    }
    uint32_t ev = (c->eof ? 0 : EPOLLIN) | (c->out.len ? EPOLLOUT : 0);
    if (loop_mod(S.loop, c->fd, ev))
        client_free(c);
}

static void on_client(void *opaque, uint32_t events)
{
    struct tcp_client *c = opaque;
    if (events & EPOLLERR) {
        client_free(c);
        return;
    }
    while (!c->eof) {
        uint8_t tmp[4096];
        ssize_t n = recv(c->fd, tmp, sizeof(tmp), MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            break;
        if (n <= 0) {
            c->eof = true;
            break;
        }
        if (bytes_add(&c->in, tmp, (size_t)n, IN_MAX + sizeof(tmp))) {
            client_free(c);
            return;
        }
        while (c->in.len >= 2) {
            size_t ml = (size_t)c->in.p[0] << 8 | c->in.p[1];
            if (ml > DNS_MSG_MAX || ml < DNS_HDR_LEN) {
                client_free(c); /* not DNS over TCP */
                return;
            }
            if (c->in.len < 2 + ml)
                break;
            struct dnsid_client cl = {.tcp_conn = c->num};
            forward(c->in.p + 2, ml, &cl);
            /* forward() may have answered (SERVFAIL) and so written to c: still alive. */
            bytes_drop(&c->in, 2 + ml);
        }
    }
    client_update(c);
}

static void on_tcp(void *opaque, uint32_t events)
{
    (void)opaque;
    (void)events;
    for (int i = 0; i < 64; i++) {
        int fd = accept4(S.tcp, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        struct tcp_client *c = S.nclients < MAX_TCP_CLIENTS ? calloc(1, sizeof(*c)) : NULL;
        if (!c) {
            close(fd);
            continue;
        }
        c->fd = fd;
        if (++S.next_num == 0)
            S.next_num = 1;
        c->num = S.next_num;
        if (loop_add(S.loop, fd, EPOLLIN, on_client, c)) {
            close(fd);
            free(c);
            continue;
        }
        c->next = S.clients;
        S.clients = c;
        S.nclients++;
    }
}

static int open_socket(int type, long port, int *out)
{
    int fd = socket(AF_INET, type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
        (type == SOCK_STREAM && listen(fd, 64) < 0)) {
        int err = errno;
        close(fd);
        return -err;
    }
    *out = fd;
    return 0;
}

static int parse_long(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return -EINVAL;
    *out = v;
    return 0;
}

static int adopt_fd(long fd, int *out)
{
    int fl = fcntl((int)fd, F_GETFL);
    if (fl < 0 || fcntl((int)fd, F_SETFL, fl | O_NONBLOCK) < 0 ||
        fcntl((int)fd, F_SETFD, FD_CLOEXEC) < 0)
        return -errno;
    *out = (int)fd;
    return 0;
}

int main(int argc, char **argv)
{
    long ufd = -1, tfd = -1, port = NETCFG_DNS_PORT;
    int rc = 0;

    log_init("capsem-dnsstub", LOG_WARN);
    signal(SIGPIPE, SIG_IGN);
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--udp-fd") == 0 && i + 1 < argc &&
            parse_long(argv[i + 1], 0, 65535, &ufd) == 0) {
            i++;
        } else if (strcmp(argv[i], "--tcp-fd") == 0 && i + 1 < argc &&
                   parse_long(argv[i + 1], 0, 65535, &tfd) == 0) {
            i++;
        } else if (strcmp(argv[i], "--port") == 0 && i + 1 < argc &&
                   parse_long(argv[i + 1], 1, 65535, &port) == 0) {
            i++;
        } else {
            fprintf(stderr, "usage: capsem-dnsstub [--udp-fd N --tcp-fd M | --port P]\n");
            return 2;
        }
    }
    if ((ufd >= 0) != (tfd >= 0)) {
        fprintf(stderr, "capsem-dnsstub: --udp-fd and --tcp-fd go together\n");
        return 2;
    }
    if (ufd >= 0) {
        if ((rc = adopt_fd(ufd, &S.udp)) || (rc = adopt_fd(tfd, &S.tcp))) {
            LOG_ERR("event=listen_fd err=\"%s\"", strerror(-rc));
            return 1;
        }
    } else if ((rc = open_socket(SOCK_DGRAM, port, &S.udp)) ||
               (rc = open_socket(SOCK_STREAM, port, &S.tcp))) {
        LOG_ERR("event=listen port=%ld err=\"%s\"", port, strerror(-rc));
        return 1;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    dnsid_init(&S.ids, (uint16_t)(ts.tv_nsec ^ getpid()));
    if ((rc = loop_create(&S.loop)) || (rc = loop_add(S.loop, S.udp, EPOLLIN, on_udp, NULL)) ||
        (rc = loop_add(S.loop, S.tcp, EPOLLIN, on_tcp, NULL))) {
        LOG_ERR("event=loop err=\"%s\"", strerror(-rc));
        return 1;
    }
    for (;;) {
        rc = loop_run_once(S.loop, 250);
        if (rc < 0) {
            LOG_ERR("event=loop_end err=\"%s\"", strerror(-rc));
            return 1;
        }
        struct dnsid_entry e;
        int64_t now = now_ms();
        while (dnsid_take_expired(&S.ids, now, false, &e))
            servfail(&e);
        /* TCP clients that finished and were only waiting for expired answers. */
        for (struct tcp_client *c = S.clients, *next; c; c = next) {
            next = c->next;
            if (c->eof)
                client_update(c);
        }
    }
}
