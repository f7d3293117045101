/*
 * Upstream connections for the proxy: TCP to a host (through getaddrinfo, or
 * to the address a resolve override names), TLS verified against the client
 * context's trust store with SNI and host name checking, a small pool of idle
 * keep-alive connections per destination, and TLS session resumption per
 * destination. Thread-safe; every socket it owns can be shut down at once to
 * stop the proxy.
 */
#ifndef CAPSEM_MITM_UPSTREAM_H
#define CAPSEM_MITM_UPSTREAM_H

#include "io.h"

#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct upstream_pool;

/* One connection, owned by the thread that took it until it is released. */
struct upstream_conn {
    struct mitm_io io; /* fd non-blocking; ssl NULL for plain HTTP */
    bool reused;       /* came from the idle pool */
    /* private */
    char key[320];
    int64_t idle_since_us;
    bool session_saved;
    struct upstream_conn *next;
    struct upstream_conn *all_prev, *all_next;
};

/*
 * `ctx` (borrowed, may be NULL when only plain HTTP is used) verifies
 * upstream TLS. Timeouts in ms. 0 or -ENOMEM.
 */
__attribute__((warn_unused_result)) int upstream_pool_create(SSL_CTX *ctx,
                                                             unsigned connect_timeout_ms,
                                                             unsigned idle_timeout_ms,
                                                             struct upstream_pool **out);
/* Shut down every socket (idle and in use) and refuse new connections. Thread-safe. */
void upstream_pool_shutdown(struct upstream_pool *p);
/* Free the pool and its idle connections; no connection may be in use. Accepts NULL. */
void upstream_pool_destroy(struct upstream_pool *p);

/*
 * A connection to host:port (host lower case; TLS when `tls`), reusing an
 * idle one when there is a live one. `addr` ("a.b.c.d:port", from a resolve
 * override) replaces the name lookup when not NULL; the TLS name checked is
 * still `host`. Without an override, addresses of the host itself and other
 * never-public kinds (loopback, unspecified, link-local, multicast, the DNS
 * pool 198.18.0.0/15) are refused with -EACCES. On failure returns -errno
 * and writes a short reason ("connection refused", "certificate verify
 * failed: ...") into err.
 */
__attribute__((warn_unused_result)) int upstream_get(struct upstream_pool *p, const char *host,
                                                     unsigned port, bool tls, const char *addr,
                                                     struct upstream_conn **out, char *err,
                                                     size_t errlen);
/*
 * Give a connection back: into the idle pool when `reusable` (the exchange
 * ended cleanly and both sides keep the connection alive), closed otherwise.
 * Accepts NULL.
 */
void upstream_put(struct upstream_pool *p, struct upstream_conn *c, bool reusable);

/*
 * Whether `c`, held by the caller since its last exchange, can carry the next
 * request to host:port (same destination as upstream_get() would key it, and
 * the server has not closed it). Lets a guest connection keep its upstream
 * connection across requests without a round trip through the pool.
 */
bool upstream_conn_usable(const struct upstream_conn *c, const char *host, unsigned port, bool tls,
                          const char *addr);

/* Statistics for tests: connections made, TLS sessions resumed, idle connections reused. */
void upstream_pool_stats(struct upstream_pool *p, unsigned long *connects, unsigned long *resumed,
                         unsigned long *reuses);

#endif
