/*
 * Upstream connections (upstream.h). A pool keeps two lists under one mutex:
 * every connection it has made and not yet closed (so a shutdown reaches the
 * ones in use), and the idle keep-alive ones, newest first. TLS sessions are
 * remembered per destination key and offered on the next handshake there.
 */
#include "upstream.h"

#include "log.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define IDLE_PER_KEY 8
#define IDLE_TOTAL 64
#define SESSIONS 64

struct session_slot {
    char key[320];
    SSL_SESSION *sess;
    uint64_t used; /* for least-recently-used replacement */
};

struct upstream_pool {
    SSL_CTX *ctx;
    unsigned connect_timeout_ms;
    unsigned idle_timeout_ms;
    pthread_mutex_t lock; /* guards everything below */
    bool stopping;
    struct upstream_conn *idle; /* newest first, linked by next */
    size_t nidle;
    struct upstream_conn *all; /* every open connection, linked by all_prev/all_next */
    struct session_slot sessions[SESSIONS];
    uint64_t clock;
    unsigned long connects, resumed, reuses;
};

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int upstream_pool_create(SSL_CTX *ctx, unsigned connect_timeout_ms, unsigned idle_timeout_ms,
                         struct upstream_pool **out)
{
    struct upstream_pool *p = calloc(1, sizeof(*p));
    if (!p)
        return -ENOMEM;
    p->ctx = ctx;
    p->connect_timeout_ms = connect_timeout_ms ? connect_timeout_ms : 10000;
    p->idle_timeout_ms = idle_timeout_ms ? idle_timeout_ms : 300000;
    pthread_mutex_init(&p->lock, NULL);
    *out = p;
    return 0;
}

/* Unlink from the all-list; the caller holds the lock. */
static void all_unlink(struct upstream_pool *p, struct upstream_conn *c)
{
    if (c->all_prev)
        c->all_prev->all_next = c->all_next;
    else if (p->all == c)
        p->all = c->all_next;
    if (c->all_next)
        c->all_next->all_prev = c->all_prev;
    c->all_prev = c->all_next = NULL;
}

/* Remember c's TLS session for its key when it can be resumed. */
static void session_save(struct upstream_pool *p, struct upstream_conn *c)
{
    if (!c->io.ssl || c->session_saved)
        return;
    c->session_saved = true; /* one session per connection is enough to resume from */
    SSL_SESSION *s = SSL_get1_session(c->io.ssl);
    if (!s)
        return;
    if (!SSL_SESSION_is_resumable(s)) {
        SSL_SESSION_free(s);
        return;
    }
    pthread_mutex_lock(&p->lock);
    struct session_slot *slot = NULL;
    for (size_t i = 0; i < SESSIONS; i++) {
        struct session_slot *q = &p->sessions[i];
        if (q->sess && strcmp(q->key, c->key) == 0) {
            slot = q;
            break;
        }
        if (!slot || q->used < slot->used)
            slot = q;
    }
    SSL_SESSION *old = slot->sess;
    slot->sess = s;
    slot->used = ++p->clock;
    snprintf(slot->key, sizeof(slot->key), "%s", c->key);
    pthread_mutex_unlock(&p->lock);
    SSL_SESSION_free(old);
}

/* Close and free a connection that is in no idle list. */
static void conn_close(struct upstream_pool *p, struct upstream_conn *c)
{
    pthread_mutex_lock(&p->lock);
    all_unlink(p, c);
    pthread_mutex_unlock(&p->lock);
    if (c->io.ssl) {
        SSL_shutdown(c->io.ssl); /* one try at close_notify; never waits */
        SSL_free(c->io.ssl);
    }
    if (c->io.fd >= 0)
        close(c->io.fd);
    free(c);
}

void upstream_pool_shutdown(struct upstream_pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    p->stopping = true;
    for (struct upstream_conn *c = p->all; c; c = c->all_next)
        if (c->io.fd >= 0)
            shutdown(c->io.fd, SHUT_RDWR);
    pthread_mutex_unlock(&p->lock);
}

void upstream_pool_destroy(struct upstream_pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    struct upstream_conn *idle = p->idle;
    p->idle = NULL;
    p->nidle = 0;
    pthread_mutex_unlock(&p->lock);
    while (idle) {
        struct upstream_conn *next = idle->next;
        conn_close(p, idle);
        idle = next;
    }
    for (size_t i = 0; i < SESSIONS; i++)
        SSL_SESSION_free(p->sessions[i].sess);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

void upstream_pool_stats(struct upstream_pool *p, unsigned long *connects, unsigned long *resumed,
                         unsigned long *reuses)
{
    pthread_mutex_lock(&p->lock);
    if (connects)
        *connects = p->connects;
    if (resumed)
        *resumed = p->resumed;
    if (reuses)
        *reuses = p->reuses;
    pthread_mutex_unlock(&p->lock);
}

static bool looks_alive(const struct upstream_conn *c);

/* An idle connection for key that still looks alive, or NULL. */
static struct upstream_conn *idle_take(struct upstream_pool *p, const char *key)
{
    for (;;) {
        struct upstream_conn *c = NULL;
        pthread_mutex_lock(&p->lock);
        for (struct upstream_conn **pp = &p->idle; *pp; pp = &(*pp)->next) {
            if (strcmp((*pp)->key, key) == 0) {
                c = *pp;
                *pp = c->next;
                c->next = NULL;
                p->nidle--;
                break;
            }
        }
        pthread_mutex_unlock(&p->lock);
        if (!c)
            return NULL;
        /* Idle too long, or the server closed it (or sent something unasked): drop it. */
        bool stale = now_us() - c->idle_since_us > (int64_t)p->idle_timeout_ms * 1000;
        if (stale || !looks_alive(c)) {
            conn_close(p, c);
            continue;
        }
        pthread_mutex_lock(&p->lock);
        p->reuses++;
        pthread_mutex_unlock(&p->lock);
        c->reused = true;
        return c;
    }
}

/* strerror() text starting lower case, as the 502 bodies print it. */
static void errno_text(int e, char *err, size_t errlen)
{
    char tmp[128];
    snprintf(tmp, sizeof(tmp), "%s", strerror(e));
    tmp[0] = (char)tolower((unsigned char)tmp[0]);
    snprintf(err, errlen, "%s", tmp);
}

static int remaining_ms(int64_t deadline)
{
    int64_t left = (deadline - now_us()) / 1000;
    return left <= 0 ? 0 : (int)left;
}

/*
 * Why a looked-up address must not be dialled, or NULL. A name the guest
 * chose must never lead to the host itself (its control API listens on
 * loopback), a cloud metadata service (link-local) or the guest's own DNS
 * pool; only a resolve override from the config may point there.
 */
static const char *forbidden_address(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET) {
        uint32_t a = ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr);
        if ((a >> 24) == 127)
            return "loopback";
        if ((a >> 24) == 0)
            return "unspecified";
        if ((a >> 16) == 0xa9fe)
            return "link-local";
        if ((a >> 28) >= 0xe)
            return "multicast or reserved";
        if ((a >> 17) == (0xc612u >> 1)) /* 198.18.0.0/15 */
            return "DNS pool";
        return NULL;
    }
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(a) || IN6_IS_ADDR_V4COMPAT(a)) {
            struct sockaddr_in v4 = {.sin_family = AF_INET};
            memcpy(&v4.sin_addr, a->s6_addr + 12, 4);
            return forbidden_address((const struct sockaddr *)&v4);
        }
        if (IN6_IS_ADDR_LOOPBACK(a))
            return "loopback";
        if (IN6_IS_ADDR_UNSPECIFIED(a))
            return "unspecified";
        if (IN6_IS_ADDR_LINKLOCAL(a))
            return "link-local";
        if (IN6_IS_ADDR_MULTICAST(a))
            return "multicast";
        return NULL;
    }
    return "not an IP address";
}

/*
 * Open TCP to addr_host:port_text within the deadline, registered in the
 * all-list. `trusted` (a resolve override) may name any address.
 */
static int tcp_connect(struct upstream_pool *p, struct upstream_conn *c, const char *addr_host,
                       const char *port_text, bool trusted, int64_t deadline, char *err,
                       size_t errlen)
{
    const char *refused_why = NULL;
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    int gai = getaddrinfo(addr_host, port_text, &hints, &res);
    if (gai != 0) {
        snprintf(err, errlen, "cannot resolve %s: %s", addr_host, gai_strerror(gai));
        return -EHOSTUNREACH;
    }
    int rc = -ECONNREFUSED;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        const char *why = trusted ? NULL : forbidden_address(ai->ai_addr);
        if (why) {
            refused_why = why;
            rc = -EACCES;
            continue;
        }
        int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            rc = -errno;
            continue;
        }
        pthread_mutex_lock(&p->lock);
        if (p->stopping) {
            pthread_mutex_unlock(&p->lock);
            close(fd);
            rc = -ESHUTDOWN;
            break;
        }
        c->io.fd = fd;
        c->all_next = p->all;
        if (p->all)
            p->all->all_prev = c;
        p->all = c;
        pthread_mutex_unlock(&p->lock);

        int r = connect(fd, ai->ai_addr, ai->ai_addrlen);
        if (r < 0 && errno == EINPROGRESS) {
            r = mitm_io_wait(fd, POLLOUT, remaining_ms(deadline));
            if (r == 0) {
                int soerr = 0;
                socklen_t sl = sizeof(soerr);
                if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
                    soerr = errno;
                r = soerr ? -soerr : 0;
            }
        } else if (r < 0) {
            r = -errno;
        }
        if (r == 0) {
            rc = 0;
            break;
        }
        rc = r;
        pthread_mutex_lock(&p->lock);
        all_unlink(p, c);
        pthread_mutex_unlock(&p->lock);
        close(fd);
        c->io.fd = -1;
        if (rc == -ETIMEDOUT)
            break;
    }
    freeaddrinfo(res);
    if (rc == -EACCES && refused_why)
        snprintf(err, errlen, "%s resolves to a %s address, which is never dialled", addr_host,
                 refused_why);
    else if (rc == -ESHUTDOWN)
        snprintf(err, errlen, "proxy shutting down");
    else if (rc == -ETIMEDOUT)
        snprintf(err, errlen, "connect timed out");
    else if (rc < 0)
        errno_text(-rc, err, errlen);
    return rc;
}

/* TLS handshake on c within the deadline, checking the certificate names host. */
static int tls_connect(struct upstream_pool *p, struct upstream_conn *c, const char *host,
                       int64_t deadline, char *err, size_t errlen)
{
    if (!p->ctx) {
        snprintf(err, errlen, "no TLS client context");
        return -EINVAL;
    }
    SSL *ssl = SSL_new(p->ctx);
    if (!ssl) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    c->io.ssl = ssl;
    SSL_set_fd(ssl, c->io.fd);
    SSL_set_options(ssl, SSL_OP_IGNORE_UNEXPECTED_EOF);
    SSL_set_read_ahead(ssl, 1); /* fewer recv() calls; SSL_has_pending() sees what it buffers */
    struct in_addr ip4;
    int ok;
    if (inet_pton(AF_INET, host, &ip4) == 1)
        ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host);
    else
        ok = SSL_set_tlsext_host_name(ssl, host) == 1 && SSL_set1_host(ssl, host) == 1;
    if (!ok) {
        snprintf(err, errlen, "bad TLS name %s", host);
        return -EINVAL;
    }
    pthread_mutex_lock(&p->lock);
    for (size_t i = 0; i < SESSIONS; i++) {
        if (p->sessions[i].sess && strcmp(p->sessions[i].key, c->key) == 0) {
            SSL_set_session(ssl, p->sessions[i].sess);
            p->sessions[i].used = ++p->clock;
            break;
        }
    }
    pthread_mutex_unlock(&p->lock);
    for (;;) {
        ERR_clear_error();
        int r = SSL_connect(ssl);
        if (r == 1)
            break;
        int e = SSL_get_error(ssl, r);
        short want = e == SSL_ERROR_WANT_READ ? POLLIN : e == SSL_ERROR_WANT_WRITE ? POLLOUT : 0;
        if (want) {
            int w = mitm_io_wait(c->io.fd, want, remaining_ms(deadline));
            if (w == -ETIMEDOUT) {
                snprintf(err, errlen, "TLS handshake timed out");
                return w;
            }
            if (w < 0) {
                errno_text(-w, err, errlen);
                return w;
            }
            continue;
        }
        long vr = SSL_get_verify_result(ssl);
        if (vr != X509_V_OK) {
            snprintf(err, errlen, "certificate verify failed: %s",
                     X509_verify_cert_error_string(vr));
            ERR_clear_error();
            return -EPROTO;
        }
        if (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) {
            int saved = errno;
            snprintf(err, errlen, "TLS handshake: %s",
                     saved ? strerror(saved) : "connection closed by server");
            return saved ? -saved : -ECONNRESET;
        }
        char tmp[200];
        snprintf(err, errlen, "TLS handshake: %s", mitm_io_tls_error(tmp, sizeof(tmp)));
        return -EPROTO;
    }
    if (SSL_session_reused(ssl)) {
        pthread_mutex_lock(&p->lock);
        p->resumed++;
        pthread_mutex_unlock(&p->lock);
    }
    return 0;
}

/* The pool key of a destination; false when it does not fit. */
static bool make_key(char *key, size_t len, const char *host, unsigned port, bool tls,
                     const char *addr)
{
    int n = snprintf(key, len, "%s|%s:%u|%s", tls ? "https" : "http", host, port, addr ? addr : "");
    return n >= 0 && (size_t)n < len;
}

/* Open and quiet: no EOF, no unasked bytes, nothing buffered. */
static bool looks_alive(const struct upstream_conn *c)
{
    struct pollfd pfd = {.fd = c->io.fd, .events = POLLIN};
    return poll(&pfd, 1, 0) == 0 && !(c->io.ssl && SSL_has_pending(c->io.ssl));
}

bool upstream_conn_usable(const struct upstream_conn *c, const char *host, unsigned port, bool tls,
                          const char *addr)
{
    char key[320];
    return c && make_key(key, sizeof(key), host, port, tls, addr) && strcmp(key, c->key) == 0 &&
           looks_alive(c);
}

int upstream_get(struct upstream_pool *p, const char *host, unsigned port, bool tls,
                 const char *addr, struct upstream_conn **out, char *err, size_t errlen)
{
    char key[320];
    if (!make_key(key, sizeof(key), host, port, tls, addr)) {
        snprintf(err, errlen, "host name too long");
        return -ENAMETOOLONG;
    }
    struct upstream_conn *c = idle_take(p, key);
    if (c) {
        *out = c;
        return 0;
    }

    char ahost[300];
    char aport[16];
    if (addr) {
        const char *colon = strrchr(addr, ':');
        size_t hl = colon ? (size_t)(colon - addr) : 0;
        if (!colon || hl == 0 || hl >= sizeof(ahost) || strlen(colon + 1) >= sizeof(aport) ||
            colon[1] == '\0') {
            snprintf(err, errlen, "bad resolve override %s", addr);
            return -EINVAL;
        }
        memcpy(ahost, addr, hl);
        ahost[hl] = '\0';
        snprintf(aport, sizeof(aport), "%s", colon + 1);
    } else {
        snprintf(ahost, sizeof(ahost), "%s", host);
        snprintf(aport, sizeof(aport), "%u", port);
    }

    c = calloc(1, sizeof(*c));
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    c->io.fd = -1;
    snprintf(c->key, sizeof(c->key), "%s", key);
    int64_t deadline = now_us() + (int64_t)p->connect_timeout_ms * 1000;
    int rc = tcp_connect(p, c, ahost, aport, addr != NULL, deadline, err, errlen);
    if (rc < 0) {
        free(c);
        return rc;
    }
    int one = 1;
    setsockopt(c->io.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    pthread_mutex_lock(&p->lock);
    p->connects++;
    pthread_mutex_unlock(&p->lock);
    if (tls) {
        rc = tls_connect(p, c, host, deadline, err, errlen);
        if (rc < 0) {
            conn_close(p, c);
            return rc;
        }
    }
    *out = c;
    return 0;
}

void upstream_put(struct upstream_pool *p, struct upstream_conn *c, bool reusable)
{
    if (!c)
        return;
    session_save(p, c);
    if (!reusable) {
        conn_close(p, c);
        return;
    }
    c->idle_since_us = now_us();
    c->reused = false;
    struct upstream_conn *evict = NULL;
    pthread_mutex_lock(&p->lock);
    if (p->stopping) {
        pthread_mutex_unlock(&p->lock);
        conn_close(p, c);
        return;
    }
    c->next = p->idle;
    p->idle = c;
    p->nidle++;
    /* Over a limit: drop the oldest idle connection for this key, or overall. */
    size_t same = 0;
    struct upstream_conn **last_same = NULL, **last_any = NULL;
    for (struct upstream_conn **pp = &p->idle; *pp; pp = &(*pp)->next) {
        last_any = pp;
        if (strcmp((*pp)->key, c->key) == 0) {
            same++;
            last_same = pp;
        }
    }
    struct upstream_conn **victim = same > IDLE_PER_KEY     ? last_same
                                    : p->nidle > IDLE_TOTAL ? last_any
                                                            : NULL;
    if (victim) {
        evict = *victim;
        *victim = evict->next;
        evict->next = NULL;
        p->nidle--;
    }
    pthread_mutex_unlock(&p->lock);
    if (evict)
        conn_close(p, evict);
}
