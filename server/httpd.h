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

/* A parsed request head; the strings point into buf and are NULL when absent. */
struct httpd_head {
    char buf[HTTPD_HEAD_MAX + 1];
    const char *method, *path, *host, *origin, *authorization, *cookie, *upgrade;
};

enum httpd_sniff {
    HTTPD_SNIFF_WAIT,    /* not enough bytes yet */
    HTTPD_SNIFF_REST,    /* hand to libmicrohttpd */
    HTTPD_SNIFF_UPGRADE, /* a complete WebSocket upgrade head, parsed into *head */
};

/*
 * The sniffer's decision on the first buf[0..len) bytes of a connection (no
 * I/O). On HTTPD_SNIFF_UPGRADE, *head is filled (path without the query;
 * a repeated Host, Origin, Authorization, Cookie or Upgrade header makes the
 * head go to REST instead) and *head_len is the head's length with its
 * blank line. Thread-safe; `head` is the caller's.
 */
enum httpd_sniff httpd_sniff_route(const char *buf, size_t len, struct httpd_head *head,
                                   size_t *head_len);

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
