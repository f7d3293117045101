/*
 * capsem-netproxy: the guest's TCP relay (schemas/vsock-net.md, port 5002).
 * capsem-init's nftables rules redirect outgoing TCP connections to ports 80,
 * 443 and the configured HTTP ports to this program's loopback port. For each
 * accepted connection it reads the original destination (SO_ORIGINAL_DST),
 * finds the owning process (the client socket's inode in /proc/net/tcp, then
 * the /proc/PID/fd link naming it), connects to the host's vsock port 5002,
 * sends the header and copies bytes both ways through two bounded buffers on
 * one epoll loop, passing each half-close on with shutdown(SHUT_WR).
 *
 * usage: capsem-netproxy [--listen-fd N | --port P]
 *   --listen-fd N  serve the listening TCP socket N (capsem-init opens it, so
 *                  it listens before any user program runs)
 *   --port P       bind 127.0.0.1:P itself (default 15002)
 */
#include "cnet.h"
#include "log.h"
#include "loop.h"
#include "netcfg.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/netfilter_ipv4.h>
#include <linux/vm_sockets.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define HOST_PORT 5002
/* Bytes buffered per direction of one connection. */
#define RELAY_BUF (64u * 1024u)
/* Most connections relayed at once; more are closed at accept. */
#define MAX_CONNS 1024
/* /proc/net/tcp is read whole, up to this much. */
#define PROC_TCP_MAX (4u * 1024u * 1024u)

/* One direction: bytes read from `from` wait in buf[off, len) for `to`. */
struct dir {
    uint8_t *buf;
    size_t off, len;
    bool eof;  /* `from` reached end of file */
    bool shut; /* `to` got shutdown(SHUT_WR) */
};

struct conn {
    int cfd; /* guest client (TCP) */
    int vfd; /* host (vsock) */
    bool connecting;
    struct dir up;     /* client -> host */
    struct dir down;   /* host -> client */
    uint32_t cev, vev; /* registered events */
    bool cgone, vgone; /* fd left the loop: both its directions are finished */
};

struct proxy {
    struct loop *loop;
    int lfd;
    unsigned nconns;
};

static struct proxy P = {.lfd = -1};

/* Read a whole (small) file into a malloc'd buffer; 0 and *out and *len, or -errno. */
static int read_all(const char *path, size_t max, char **out, size_t *len)
{
    int ret = 0;
    size_t n = 0, alloc = 16384;
    char *b = malloc(alloc);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (!b || fd < 0) {
        ret = b ? -errno : -ENOMEM;
        goto out;
    }
    for (;;) {
        if (n == alloc) {
            if (alloc >= max) {
                ret = -EFBIG;
                goto out;
            }
            char *nb = realloc(b, alloc * 2);
            if (!nb) {
                ret = -ENOMEM;
                goto out;
            }
            b = nb;
            alloc *= 2;
        }
        ssize_t r = read(fd, b + n, alloc - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            ret = -errno;
            goto out;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    *out = b;
    *len = n;
    b = NULL;
out:
    if (fd >= 0)
        close(fd);
    free(b);
    return ret;
}

/* The pid whose fd table holds socket `inode`, or 0. */
static pid_t find_pid(uint64_t inode)
{
    pid_t found = 0;
    pid_t self = getpid();
    DIR *proc = opendir("/proc");
    if (!proc)
        return 0;
    struct dirent *de;
    while (!found && (de = readdir(proc))) {
        char *end;
        long pid = strtol(de->d_name, &end, 10);
        if (*end || pid <= 0 || pid == self)
            continue;
        char path[64];
        snprintf(path, sizeof(path), "/proc/%ld/fd", pid);
        DIR *fds = opendir(path);
        if (!fds)
            continue;
        struct dirent *fe;
        while ((fe = readdir(fds))) {
            if (fe->d_name[0] == '.')
                continue;
            char lp[320], link[64];
            snprintf(lp, sizeof(lp), "/proc/%ld/fd/%s", pid, fe->d_name);
            ssize_t l = readlink(lp, link, sizeof(link));
            if (l > 0 && cnet_link_is_socket(link, (size_t)l, inode)) {
                found = (pid_t)pid;
                break;
            }
        }
        closedir(fds);
    }
    closedir(proc);
    return found;
}

/* Owner of the client socket whose address is `peer`: pid and comm, or 0 and "". */
static void find_owner(const struct sockaddr_in *peer, uint32_t *pid, char *comm, size_t *clen)
{
    char *text = NULL;
    size_t len = 0;
    uint64_t inode;
    *pid = 0;
    *clen = 0;
    if (read_all("/proc/net/tcp", PROC_TCP_MAX, &text, &len))
        return;
    bool ok =
        cnet_tcp_find_inode(text, len, ntohl(peer->sin_addr.s_addr), ntohs(peer->sin_port), &inode);
    free(text);
    if (!ok)
        return;
    pid_t p = find_pid(inode);
    if (!p)
        return;
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/comm", (int)p);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t n = read(fd, comm, CNET_NAME_MAX);
        close(fd);
        if (n > 0)
            *clen = cnet_comm_trim(comm, (size_t)n);
    }
    *pid = (uint32_t)p;
}

static void conn_free(struct conn *c)
{
    if (c->cfd >= 0) {
        loop_del(P.loop, c->cfd);
        close(c->cfd);
    }
    if (c->vfd >= 0) {
        loop_del(P.loop, c->vfd);
        close(c->vfd);
    }
    free(c->up.buf);
    free(c->down.buf);
    free(c);
    P.nconns--;
}

/* Events `fd` needs: read while its buffer has room, write while the other has bytes. */
static uint32_t want(const struct dir *rd, const struct dir *wr)
{
    uint32_t ev = 0;
    if (!rd->eof && rd->len < RELAY_BUF)
        ev |= EPOLLIN;
    if (wr->len > wr->off)
        ev |= EPOLLOUT;
    return ev;
}

static int update(struct conn *c)
{
    /* While the host connect is under way nothing moves: the client waits too. */
    uint32_t cev = c->connecting ? 0 : want(&c->up, &c->down);
    uint32_t vev = c->connecting ? EPOLLOUT : want(&c->down, &c->up);
    if (!c->cgone && cev != c->cev) {
        if (loop_mod(P.loop, c->cfd, cev))
            return -EIO;
        c->cev = cev;
    }
    if (!c->vgone && vev != c->vev) {
        if (loop_mod(P.loop, c->vfd, vev))
            return -EIO;
        c->vev = vev;
    }
    return 0;
}

/* Read from `from` into d. 0, or -errno on a hard error. */
static int fill(int from, struct dir *d)
{
    if (d->off == d->len)
        d->off = d->len = 0;
    if (d->off > 0 && d->len == RELAY_BUF) {
        memmove(d->buf, d->buf + d->off, d->len - d->off);
        d->len -= d->off;
        d->off = 0;
    }
    if (d->eof || d->len == RELAY_BUF)
        return 0;
    ssize_t n = read(from, d->buf + d->len, RELAY_BUF - d->len);
    if (n < 0)
        return (errno == EAGAIN || errno == EINTR) ? 0 : -errno;
    if (n == 0)
        d->eof = true;
    d->len += (size_t)n;
    return 0;
}

/* Write d's bytes to `to`; pass on end of file once drained. 0 or -errno. */
static int drain(int to, struct dir *d)
{
    while (d->len > d->off) {
        ssize_t n = send(to, d->buf + d->off, d->len - d->off, MSG_NOSIGNAL);
        if (n < 0)
            return (errno == EAGAIN || errno == EINTR) ? 0 : -errno;
        d->off += (size_t)n;
    }
    d->off = d->len = 0;
    if (d->eof && !d->shut) {
        d->shut = true;
        shutdown(to, SHUT_WR);
    }
    return 0;
}

/* Move what can move; free the connection when both directions are done or one fails. */
static void pump(struct conn *c)
{
    int rc = 0;
    if (!c->connecting) {
        if ((rc = fill(c->cfd, &c->up)) || (rc = fill(c->vfd, &c->down)) ||
            (rc = drain(c->vfd, &c->up)) || (rc = drain(c->cfd, &c->down)))
            goto out;
        /* Room may have appeared: one more read each way keeps latency low. */
        if ((rc = fill(c->cfd, &c->up)) || (rc = fill(c->vfd, &c->down)) ||
            (rc = drain(c->vfd, &c->up)) || (rc = drain(c->cfd, &c->down)))
            goto out;
        if (c->up.shut && c->down.shut) {
            conn_free(c);
            return;
        }
    }
    rc = update(c);
out:
    if (rc) {
        LOG_DEBUG("event=relay_end err=\"%s\"", strerror(-rc));
        conn_free(c);
    }
}

/*
 * Level-triggered epoll keeps reporting EPOLLHUP once both directions of a
 * socket are shut; such an fd has nothing left to do and leaves the loop.
 * EPOLLERR (a reset) ends the connection.
 */
static bool hangup(struct conn *c, uint32_t events, int fd, const struct dir *rd,
                   const struct dir *wr, bool *gone)
{
    if (events & EPOLLERR) {
        conn_free(c);
        return true;
    }
    if ((events & EPOLLHUP) && rd->eof && wr->shut && !*gone) {
        loop_del(P.loop, fd);
        *gone = true;
    }
    return false;
}

static void on_client(void *opaque, uint32_t events)
{
    struct conn *c = opaque;
    if (hangup(c, events, c->cfd, &c->up, &c->down, &c->cgone))
        return;
    pump(c);
}

static void on_host(void *opaque, uint32_t events)
{
    struct conn *c = opaque;
    if (c->connecting) {
        int err = 0;
        socklen_t el = sizeof(err);
        if (getsockopt(c->vfd, SOL_SOCKET, SO_ERROR, &err, &el) < 0)
            err = errno;
        if (err == 0 && !(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
            return;
        if (err) {
            LOG_WARN("event=host_connect port=%d err=\"%s\"", HOST_PORT, strerror(err));
            conn_free(c);
            return;
        }
        c->connecting = false;
    } else if (hangup(c, events, c->vfd, &c->down, &c->up, &c->vgone)) {
        return;
    }
    pump(c);
}

static void accept_one(int cfd)
{
    struct sockaddr_in dst, peer;
    socklen_t dl = sizeof(dst), pl = sizeof(peer);
    struct conn *c = NULL;
    int vfd = -1;
    char comm[CNET_NAME_MAX];
    size_t clen = 0;
    uint32_t pid = 0;

    if (getsockopt(cfd, SOL_IP, SO_ORIGINAL_DST, &dst, &dl) < 0 || dst.sin_family != AF_INET) {
        /* A direct connection to our port, not a redirected one: nothing to relay. */
        LOG_WARN("event=accept problem=no_original_destination err=\"%s\"", strerror(errno));
        goto fail;
    }
    if (getpeername(cfd, (struct sockaddr *)&peer, &pl) == 0 && peer.sin_family == AF_INET)
        find_owner(&peer, &pid, comm, &clen);
    c = calloc(1, sizeof(*c));
    if (!c)
        goto fail;
    c->cfd = c->vfd = -1;
    c->up.buf = malloc(RELAY_BUF);
    c->down.buf = malloc(RELAY_BUF);
    if (!c->up.buf || !c->down.buf)
        goto fail;
    int hl = cnet_header_encode(c->up.buf, RELAY_BUF, ntohl(dst.sin_addr.s_addr),
                                ntohs(dst.sin_port), pid, comm, clen);
    if (hl < 0)
        goto fail;
    c->up.len = (size_t)hl;
    vfd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (vfd < 0) {
        LOG_WARN("event=vsock_socket err=\"%s\"", strerror(errno));
        goto fail;
    }
    struct sockaddr_vm sa = {
        .svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_HOST, .svm_port = HOST_PORT};
    if (connect(vfd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
        c->connecting = false;
    } else if (errno == EINPROGRESS) {
        c->connecting = true;
    } else {
        LOG_WARN("event=host_connect port=%d err=\"%s\"", HOST_PORT, strerror(errno));
        goto fail;
    }
    c->cfd = cfd;
    c->vfd = vfd;
    P.nconns++;
    c->cev = 0;
    c->vev = c->connecting ? EPOLLOUT : 0;
    if (loop_add(P.loop, cfd, 0, on_client, c) || loop_add(P.loop, vfd, c->vev, on_host, c)) {
        conn_free(c);
        return;
    }
    if (c->connecting) {
        if (update(c))
            conn_free(c);
    } else {
        pump(c);
    }
    return;
fail:
    if (c) {
        free(c->up.buf);
        free(c->down.buf);
        free(c);
    }
    if (vfd >= 0)
        close(vfd);
    close(cfd);
}

static void on_listen(void *opaque, uint32_t events)
{
    (void)opaque;
    (void)events;
    for (int i = 0; i < 64; i++) {
        int cfd = accept4(P.lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd < 0) {
            if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
                LOG_WARN("event=accept err=\"%s\"", strerror(errno));
            return;
        }
        if (P.nconns >= MAX_CONNS) {
            LOG_WARN("event=accept problem=too_many_connections max=%d", MAX_CONNS);
            close(cfd);
            continue;
        }
        accept_one(cfd);
    }
}

static int listen_port(long port, int *out)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 512) < 0) {
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

int main(int argc, char **argv)
{
    long fd = -1, port = NETCFG_PROXY_PORT;
    int rc = 0;

    log_init("capsem-netproxy", LOG_WARN);
    signal(SIGPIPE, SIG_IGN);
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--listen-fd") == 0 && i + 1 < argc &&
            parse_long(argv[i + 1], 0, 65535, &fd) == 0) {
            i++;
        } else if (strcmp(argv[i], "--port") == 0 && i + 1 < argc &&
                   parse_long(argv[i + 1], 1, 65535, &port) == 0) {
            i++;
        } else {
            fprintf(stderr, "usage: capsem-netproxy [--listen-fd N | --port P]\n");
            return 2;
        }
    }
    if (fd >= 0) {
        P.lfd = (int)fd;
        int fl = fcntl(P.lfd, F_GETFL);
        if (fl < 0 || fcntl(P.lfd, F_SETFL, fl | O_NONBLOCK) < 0 ||
            fcntl(P.lfd, F_SETFD, FD_CLOEXEC) < 0) {
            LOG_ERR("event=listen_fd fd=%ld err=\"%s\"", fd, strerror(errno));
            return 1;
        }
    } else if ((rc = listen_port(port, &P.lfd))) {
        LOG_ERR("event=listen port=%ld err=\"%s\"", port, strerror(-rc));
        return 1;
    }
    if ((rc = loop_create(&P.loop)) || (rc = loop_add(P.loop, P.lfd, EPOLLIN, on_listen, NULL))) {
        LOG_ERR("event=loop err=\"%s\"", strerror(-rc));
        return 1;
    }
    rc = loop_run(P.loop);
    LOG_ERR("event=loop_end err=\"%s\"", strerror(-rc));
    return 1;
}
