/*
 * The guest agent's core: speaks the control protocol (schemas/vsock-control.md)
 * on one connected stream socket and runs the host's execs. It knows nothing
 * of vsock: capsem-agent's main.c connects to the host and hands the socket
 * over; the unit tests hand it one end of a socketpair. Everything runs in one
 * epoll loop on the calling thread; children are tracked with pidfds, so the
 * core installs no signal handlers (it only ignores SIGPIPE).
 */
#ifndef CAPSEM_GUEST_AGENT_H
#define CAPSEM_GUEST_AGENT_H

#include <stddef.h>
#include <stdint.h>

/* Agent version sent in the guest's hello. */
#define AGENT_VERSION "0.1.0"

/* Back-pressure thresholds from the protocol spec. */
#define AGENT_OUT_HIGH (256u * 1024u)    /* stop reading children's pipes above this */
#define AGENT_STDIN_HIGH (1024u * 1024u) /* stop reading the socket above this */
/* Most execs running at once; more are refused with an `error`. */
#define AGENT_MAX_EXECS 256

struct agent;

/* What the agent does with the host's hello. Callbacks may be NULL (ignored). */
struct agent_options {
    const char *version; /* borrowed; NULL = AGENT_VERSION */
    /* Set the wall clock to `time_ns` (ns since the epoch). 0 or -errno (logged). */
    int (*set_clock)(void *ctx, int64_t time_ns);
    /* Set the host name to `name[0..len)` (validated, NUL-terminated). 0 or -errno. */
    int (*set_hostname)(void *ctx, const char *name, size_t len);
    /*
     * Open the terminal connection for `pty` request `id` (vsock port 5001,
     * schemas/vsock-terminal.md): a connected stream socket (the agent
     * sends the header and owns the fd) or -errno. NULL = `pty` refused.
     */
    int (*connect_terminal)(void *ctx, uint32_t id);
    /*
     * Root directory under which the hello's `ca_pem` is installed (ca.h;
     * "/" in the guest; borrowed, must outlive the agent). NULL = a `ca_pem`
     * is ignored (logged). Once installed, every exec's base environment
     * gains the variables ca_env() names.
     */
    const char *ca_root;
    void *ctx; /* passed to the callbacks */
};

/*
 * Create an agent on the connected stream socket `fd`. Takes ownership of
 * `fd` on success only (it is made non-blocking and close-on-exec);
 * `opt` is copied. Returns 0 and *out, or -errno.
 */
__attribute__((warn_unused_result)) int agent_create(int fd, const struct agent_options *opt,
                                                     struct agent **out);

/*
 * Send hello and serve the connection until the host asks for `shutdown`
 * (returns 0 once `bye` is flushed) or the connection fails: -EPROTO or
 * -EMSGSIZE for a framing error (logged once), -ECONNRESET when the host
 * closed the connection, other -errno for local failures.
 */
__attribute__((warn_unused_result)) int agent_run(struct agent *a);

/* Kill what is left of every exec's process group, reap it, close everything. Accepts NULL. */
void agent_destroy(struct agent *a);

#endif
