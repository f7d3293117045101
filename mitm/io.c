/*
 * Non-blocking socket and TLS I/O with timeouts for the proxy (io.h). OpenSSL
 * runs on non-blocking sockets here: a WANT_READ or WANT_WRITE becomes a
 * poll() for that event, bounded by the caller's timeout, so a stalled peer
 * costs a timeout and never a stuck thread.
 */
#include "io.h"

#include <errno.h>
#include <openssl/err.h>
#include <poll.h>
#include <stdio.h>
#include <sys/socket.h>

int mitm_io_wait(int fd, short events, int timeout_ms)
{
    struct pollfd pfd = {.fd = fd, .events = events};
    for (;;) {
        int r = poll(&pfd, 1, timeout_ms < 0 ? -1 : timeout_ms);
        if (r > 0)
            return 0;
        if (r == 0)
            return -ETIMEDOUT;
        if (errno != EINTR)
            return -errno;
    }
}

bool mitm_io_pending(const struct mitm_io *io)
{
    return io->ssl && (SSL_pending(io->ssl) > 0 || (!io->starved && SSL_has_pending(io->ssl)));
}

const char *mitm_io_tls_error(char *buf, size_t len)
{
    unsigned long e = ERR_get_error();
    unsigned long last = e;
    while (e) {
        last = e;
        e = ERR_get_error();
    }
    if (!last)
        snprintf(buf, len, "TLS error");
    else
        ERR_error_string_n(last, buf, len);
    return buf;
}

/* What to wait for after SSL error `e`: POLLIN, POLLOUT, or 0 = a real end/error. */
static short ssl_wants(int e)
{
    if (e == SSL_ERROR_WANT_READ)
        return POLLIN;
    if (e == SSL_ERROR_WANT_WRITE)
        return POLLOUT;
    return 0;
}

ssize_t mitm_io_read(struct mitm_io *io, void *buf, size_t len, int timeout_ms)
{
    for (;;) {
        short want = POLLIN;
        if (io->ssl) {
            size_t n = 0;
            ERR_clear_error();
            if (SSL_read_ex(io->ssl, buf, len, &n) == 1) {
                io->starved = false;
                return (ssize_t)n;
            }
            int e = SSL_get_error(io->ssl, 0);
            io->starved = e == SSL_ERROR_WANT_READ;
            if (e == SSL_ERROR_ZERO_RETURN)
                return 0;
            want = ssl_wants(e);
            if (!want) {
                if (e == SSL_ERROR_SYSCALL) {
                    int saved = errno;
                    ERR_clear_error();
                    return saved ? -saved : 0;
                }
                return -EPROTO;
            }
        } else {
            ssize_t n = recv(io->fd, buf, len, 0);
            if (n >= 0)
                return n;
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                return -errno;
        }
        if (timeout_ms == 0)
            return -EAGAIN;
        int r = mitm_io_wait(io->fd, want, timeout_ms);
        if (r < 0)
            return r;
    }
}

int mitm_io_write(struct mitm_io *io, const void *buf, size_t len, int timeout_ms)
{
    const unsigned char *p = buf;
    while (len > 0) {
        short want = POLLOUT;
        if (io->ssl) {
            size_t n = 0;
            ERR_clear_error();
            if (SSL_write_ex(io->ssl, p, len, &n) == 1) {
                p += n;
                len -= n;
                continue;
            }
            int e = SSL_get_error(io->ssl, 0);
            want = ssl_wants(e);
            if (!want) {
                if (e == SSL_ERROR_SYSCALL) {
                    int saved = errno;
                    ERR_clear_error();
                    return saved ? -saved : -EPIPE;
                }
                return -EPROTO;
            }
        } else {
            ssize_t n = send(io->fd, p, len, MSG_NOSIGNAL);
            if (n > 0) {
                p += n;
                len -= (size_t)n;
                continue;
            }
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
                return -errno;
        }
        int r = mitm_io_wait(io->fd, want, timeout_ms);
        if (r < 0)
            return r;
    }
    return 0;
}
