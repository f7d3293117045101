/*
 * The daemon's one TCP port. httpd owns the listening socket; a sniffer
 * thread peeks (MSG_PEEK, never consuming) at each new connection's request
 * head on a non-blocking epoll with a deadline, then hands the socket to
 * libmicrohttpd (REST, MHD_add_connection) or, for a WebSocket upgrade that
 * passed the api_gate checks, to libwebsockets (lws_adopt_socket_vhost, on
 * the lws service thread). A refused upgrade gets its JSON error from the
 * sniffer itself. Three threads: sniffer, MHD's epoll thread, lws service.
 */
#ifndef CAPSEM_SERVER_HTTPD_H
#define CAPSEM_SERVER_HTTPD_H

#include "auth.h"

#include <stddef.h>

/* Default deadline for a new connection's request head. */
#define HTTPD_SNIFF_TIMEOUT_MS 5000
/* Largest request head the sniffer looks at; a longer one goes to MHD, which refuses it. */
#define HTTPD_HEAD_MAX 4096
/* Connections being sniffed at once; while all are busy, new ones wait in the listen backlog. */
#define HTTPD_PENDING_MAX 1024

struct httpd_opts {
    const char *addr;         /* numeric IPv4 or IPv6 address to bind (borrowed) */
    unsigned port;            /* 0 picks a free port (see httpd_port) */
    struct auth *auth;        /* borrowed; must outlive the httpd */
    const char *version;      /* reported by /api/v1/version (borrowed) */
    const char *const *allow; /* extra Host names (borrowed) */
    size_t nallow;
    unsigned sniff_timeout_ms; /* 0 means HTTPD_SNIFF_TIMEOUT_MS */
};

struct httpd;

/*
 * Bind, listen and start the three threads. 0 with *out set, or -errno with
 * a one-line reason in err[0..errlen) (nothing left running).
 */
__attribute__((warn_unused_result)) int httpd_create(const struct httpd_opts *o, struct httpd **out,
                                                     char *err, size_t errlen);

/* The port actually bound. */
unsigned httpd_port(const struct httpd *h);

/*
 * Stop accepting, close connections being sniffed, stop lws and MHD (closing
 * their connections), join the threads and free everything. NULL is fine.
 * Call from one thread, not from a callback.
 */
void httpd_destroy(struct httpd *h);

#endif
