/*
 * Byte I/O for the proxy on one non-blocking socket, with or without TLS on
 * it: reads that return what is there (or wait up to a timeout), writes that
 * finish or time out, and the poll events a caller should wait for. Both the
 * guest side and the upstream side of a proxied connection use it, so the
 * relay loops need not care which one is TLS.
 */
#ifndef CAPSEM_MITM_IO_H
#define CAPSEM_MITM_IO_H

#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct mitm_io {
    int fd;       /* non-blocking socket, borrowed */
    SSL *ssl;     /* TLS on fd, or NULL for plain bytes; borrowed */
    bool starved; /* private: the last TLS read found only part of a record */
};

/*
 * Read up to len bytes. Waits up to timeout_ms (0 = do not wait, < 0 =
 * forever) for something to arrive. Returns the count (> 0), 0 at the end of
 * the stream (TLS close_notify or a TCP FIN), -EAGAIN when nothing came in
 * time (-ETIMEDOUT instead when timeout_ms > 0), -EPROTO for a TLS error, or
 * another -errno.
 */
ssize_t mitm_io_read(struct mitm_io *io, void *buf, size_t len, int timeout_ms);

/*
 * Write all len bytes, waiting up to timeout_ms for each bit of progress.
 * 0, -ETIMEDOUT, -EPIPE, -EPROTO or another -errno.
 */
__attribute__((warn_unused_result)) int mitm_io_write(struct mitm_io *io, const void *buf,
                                                      size_t len, int timeout_ms);

/*
 * True when TLS holds bytes a read can use without the socket: decrypted
 * data, or buffered records not yet tried. Bytes of an incomplete record do
 * not count once a read has found them incomplete (the socket must bring the
 * rest), so a poll loop never spins on them.
 */
bool mitm_io_pending(const struct mitm_io *io);

/*
 * Wait up to timeout_ms for fd to become ready for `events` (POLLIN/POLLOUT).
 * 0 ready (or hung up, which the next read or write reports), -ETIMEDOUT,
 * or -errno.
 */
int mitm_io_wait(int fd, short events, int timeout_ms);

/* A short text for the last TLS error on this thread (clears the queue). */
const char *mitm_io_tls_error(char *buf, size_t len);

#endif
