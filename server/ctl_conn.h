/*
 * Host side of the guest control channel (vsock port 5000, protocol 1, see
 * schemas/vsock-control.md). A ctl_conn owns one connected stream socket to
 * a guest agent, answers the agent's hello, sends exec/stdin/signal/shutdown
 * requests and reports what the guest says through callbacks, all on a
 * event loop (common/loop.h). It knows nothing of VMs or terminals, so `capsem run`, the
 * daemon and the unit tests (with a fake guest on a socketpair) share it.
 */
#ifndef CAPSEM_SERVER_CTL_CONN_H
#define CAPSEM_SERVER_CTL_CONN_H

#include "loop.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ctl_conn;

/* What the guest's hello said. Strings are escaped copies, NUL-terminated. */
struct ctl_hello {
    int protocol;
    char agent[64];
    char kernel[128];
    int64_t boot_ms;
};

/* How an exec ended. Exactly one of code (>= 0) and signal (> 0) is set. */
struct ctl_exit {
    uint32_t id;
    int code;        /* 0-255, or -1 when killed by a signal */
    int signal;      /* signal number, or 0 */
    char error[256]; /* the agent's explanation (e.g. why exec failed), or "" */
};

/*
 * Callbacks, all run on the loop thread. Any may be NULL. None of them may
 * call ctl_conn_destroy() except on_closed, after which the conn makes no
 * more calls.
 */
struct ctl_conn_ops {
    /* The guest said hello and was answered; execs may be sent now. */
    void (*on_hello)(void *opaque, const struct ctl_hello *h);
    void (*on_started)(void *opaque, uint32_t id, int64_t pid);
    /* Output of exec `id` on stream 1 (stdout) or 2 (stderr); len 0 = stream ended. */
    void (*on_output)(void *opaque, uint32_t id, int stream, const uint8_t *p, size_t len);
    void (*on_exit)(void *opaque, const struct ctl_exit *e);
    /* The guest answered an `error`; id is UINT32_MAX when it named no exec. */
    void (*on_guest_error)(void *opaque, uint32_t id, const char *msg);
    /* The guest answered `shutdown` with `bye`. */
    void (*on_bye)(void *opaque);
    /* The send queue dropped below CTL_CONN_LOW_WATER (after being above it). */
    void (*on_drained)(void *opaque);
    /*
     * The connection is over: err 0 after bye and a clean close, otherwise
     * -errno (-ECONNRESET lost, -EPROTO bad frame or message,
     * -EPROTONOSUPPORT version mismatch) with a one-line reason.
     */
    void (*on_closed)(void *opaque, int err, const char *msg);
};

/* Callers stop feeding stdin while ctl_conn_pending() is above this. */
#define CTL_CONN_HIGH_WATER (1u << 20)
#define CTL_CONN_LOW_WATER (256u << 10)

/*
 * Start serving the control connection `fd` (taken: closed by destroy) on
 * loop `l` (borrowed). `ops` and `hostname` (may be NULL) are borrowed and
 * must outlive the conn. 0 or -errno.
 */
__attribute__((warn_unused_result)) int ctl_conn_create(struct loop *l, int fd,
                                                        const struct ctl_conn_ops *ops,
                                                        void *opaque, const char *hostname,
                                                        struct ctl_conn **out);
/*
 * The CA certificate (PEM, borrowed, must outlive the conn) sent as `ca_pem`
 * in the answer to the guest's hello, for its trust store. Call before the
 * hello arrives (right after ctl_conn_create); NULL sends none.
 */
void ctl_conn_set_ca(struct ctl_conn *c, const char *ca_pem);
/* Stop watching and close the socket. Accepts NULL. */
void ctl_conn_destroy(struct ctl_conn *c);

/*
 * Ask the guest to run argv[0..argc) with `env` ("K=V" strings, envc may be
 * 0), working directory `cwd` (NULL = "/") and stdin fed by
 * ctl_conn_send_stdin() when `with_stdin`. Strings are copied. On success
 * *id is the new exec id. 0, -ENOTCONN before hello or after close,
 * -EINVAL (empty argv), -ENOMEM.
 */
__attribute__((warn_unused_result)) int ctl_conn_exec(struct ctl_conn *c, const char *const *argv,
                                                      size_t argc, const char *const *env,
                                                      size_t envc, const char *cwd, bool with_stdin,
                                                      uint32_t *id);
/*
 * Ask the guest to run argv on a PTY of cols x rows (message `pty`,
 * schemas/vsock-terminal.md); its bytes travel on the terminal connection
 * the agent opens to port 5001, its `started` and `exit` come as for an
 * exec. Same arguments, id space and errors as ctl_conn_exec(), plus
 * -EINVAL when cols or rows is 0.
 */
__attribute__((warn_unused_result)) int ctl_conn_pty(struct ctl_conn *c, const char *const *argv,
                                                     size_t argc, const char *const *env,
                                                     size_t envc, const char *cwd, unsigned cols,
                                                     unsigned rows, uint32_t *id);
/* Queue stdin bytes for exec `id`; len 0 closes its stdin. 0, -ENOTCONN, -ENOBUFS. */
__attribute__((warn_unused_result)) int ctl_conn_send_stdin(struct ctl_conn *c, uint32_t id,
                                                            const void *p, size_t len);
/* Send signal `sig` to exec `id`'s process group. 0 or -errno. */
__attribute__((warn_unused_result)) int ctl_conn_signal(struct ctl_conn *c, uint32_t id, int sig);
/* Ask the guest to stop everything and power off (it answers bye). 0 or -errno. */
__attribute__((warn_unused_result)) int ctl_conn_shutdown(struct ctl_conn *c);
/* Bytes queued for the guest and not yet written. */
size_t ctl_conn_pending(const struct ctl_conn *c);
/* Stop (true) or resume reading from the guest, for output back-pressure. */
void ctl_conn_pause(struct ctl_conn *c, bool paused);

/* The shell-style status of an exit: the code, or 128 + signal. */
int ctl_exit_status(const struct ctl_exit *e);

#endif
