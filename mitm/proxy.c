/*
 * The MITM proxy engine (proxy.h). Each guest connection gets a thread that
 * reads the CNET header, terminates TLS when the first byte is a handshake,
 * then serves HTTP/1.1 exchanges one after another on that connection: read
 * a request head, decide it by the policy current at that moment, answer a
 * block with a 403 or forward it to a pooled upstream connection, and relay
 * the request body and the response in one poll() loop, writing each piece
 * on as soon as it is read (so SSE and other streams are never held back).
 * A 101 to a WebSocket upgrade turns the connection into a byte relay. Each
 * exchange ends with one net_event to the sink; an exchange with a model API
 * (mitm/model.h) is also parsed, from the body bytes just forwarded, and
 * reported as a model_call. Finishing that parse (decoding the whole request
 * JSON), pricing, trace linking and the sink's model op run on the proxy's
 * one model worker, fed through a bounded FIFO, so the connection's next
 * request never waits for them and calls are linked in the order they ended.
 */
#include "proxy.h"

#include "buf.h"
#include "creds.h"
#include "http.h"
#include "io.h"
#include "log.h"
#include "redact.h"
#include "upstream.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define CNET_FIXED 18
#define CNET_NAME_MAX 64
#define GBUF_CAP (HTTP_MAX_HEAD + 4096) /* guest bytes not yet handled: a head and what follows */
#define UBUF_CAP (HTTP_MAX_HEAD + 4096) /* upstream response head being gathered */
#define CHUNK (256 * 1024)              /* one read while relaying a body */
#define WBUF_CAP (HTTP_MAX_HEAD + 1024) /* a rewritten head */
#define HOST_MAX 256
#define PEND_MAX 64              /* decoded body pieces waiting for the model parser */
#define MQ_MAX_ITEMS 64u         /* model calls waiting for the worker */
#define MQ_MAX_BYTES (32u << 20) /* body bytes those calls' parsers may hold */

/* One ended model exchange waiting for the worker: everything it needs is its own. */
struct mitem {
    struct mitem *next;
    struct model_parser *mp;
    bool complete;
    int64_t end_us; /* monotonic, when the exchange ended */
    int64_t time_us, pid;
    size_t bytes;        /* body bytes the parser may hold (counted against MQ_MAX_BYTES) */
    const char *process; /* these point into text[] (NULL when unknown) */
    const char *host;
    const char *path;
    char text[];
};

struct mitm_proxy {
    struct policy_store *policy;
    struct mitm_certs *certs;
    struct dns_pool *pool;
    struct sink sink;
    int connect_timeout_ms;
    int idle_timeout_ms;
    unsigned max_connections;
    SSL_CTX *client_ctx;
    struct upstream_pool *ups;
    const struct model_host *model_hosts; /* NULL = model_default_hosts */
    const struct pricing *pricing;
    struct trace_table *traces;
    const struct creds *creds; /* NULL = no placeholder swap */
    pthread_mutex_t lock;      /* guards conns, active, stopping */
    pthread_cond_t idle;       /* signalled when active drops */
    struct pconn *conns;
    unsigned active;
    bool stopping;
    /* The model worker (only when the sink has a model op). */
    bool has_worker;
    pthread_t worker;
    pthread_mutex_t mq_lock; /* guards everything below */
    pthread_cond_t mq_work;  /* an item was queued or finished, or mq_stop was set */
    pthread_cond_t mq_space; /* an item was finished: room, and mq_busy is clear */
    pthread_cond_t mq_done;  /* an item was sunk */
    struct mitem *mq_head, *mq_tail;
    size_t mq_n, mq_bytes;
    uint64_t mq_queued, mq_sunk; /* items ever queued / ever finished and sunk */
    bool mq_busy;                /* an item is being finished (by the worker or a connection) */
    bool mq_stop;                /* set by destroy once no connection is left */
};

/* One guest connection, owned by its thread. */
struct pconn {
    struct mitm_proxy *p;
    struct pconn *prev, *next; /* in p->conns, under p->lock */
    int fd;
    struct mitm_io g;
    /* From the CNET header. */
    uint16_t dport;
    struct in_addr daddr;
    int64_t pid;
    char process[CNET_NAME_MAX + 1];
    /* TLS: the name the leaf was chosen for (SNI or the DNS pool name). */
    bool tls;
    char tls_name[HOST_MAX];
    const char *tls_version;
    uint8_t *gbuf; /* guest bytes read but not yet handled */
    size_t glen;
    uint8_t *ubuf; /* upstream response head being gathered */
    size_t ulen;
    uint8_t *tmp;             /* relay buffer */
    char *wbuf;               /* rewritten head */
    char *cbuf;               /* swapped credential values (only with a creds table) */
    struct upstream_conn *up; /* kept from the last exchange for the next, or NULL */
};

/* What one exchange reports. */
struct exch {
    int64_t t0_wall_us, t0_us;
    char *method, *path, *query;
    char host[HOST_MAX];
    unsigned port;
    int status;
    int64_t ttfb_us;
    enum decision decision;
    const char *rule;
    char error[300];
    char *req_headers, *resp_headers;
    struct http_body reqb, respb;
    struct redact_capture reqcap, respcap;
    int64_t tunnel_up, tunnel_down; /* WebSocket bytes each way */
    bool upgraded;
    bool resp_complete; /* the response body ended where its framing said */
    /* Model-call parsing: body pieces are fed after they have been forwarded. */
    struct model_parser *mp;
    struct {
        const uint8_t *p;
        size_t len;
        bool resp;
    } pend[PEND_MAX];
    size_t npend;
};

static int64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int64_t wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static char *dup_slice(const char *p, size_t len)
{
    char *s = malloc(len + 1);
    if (s) {
        memcpy(s, p, len);
        s[len] = '\0';
    }
    return s;
}

/* Printable copy of a guest slice for events and logs (controls become '.'). */
static char *dup_printable(const char *p, size_t len)
{
    char *s = dup_slice(p, len);
    if (s)
        for (size_t i = 0; i < len; i++)
            if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] >= 0x7f)
                s[i] = '.';
    return s;
}

static void exch_fini(struct exch *x)
{
    model_parser_destroy(x->mp);
    free(x->method);
    free(x->path);
    free(x->query);
    free(x->req_headers);
    free(x->resp_headers);
}

/* Hand the pieces fed so far to the model parser (they have been forwarded by now). */
static void model_flush(struct exch *x)
{
    for (size_t i = 0; i < x->npend; i++) {
        if (x->pend[i].resp)
            model_parser_response(x->mp, x->pend[i].p, x->pend[i].len, mono_us());
        else
            model_parser_request(x->mp, x->pend[i].p, x->pend[i].len);
    }
    x->npend = 0;
}

static void model_pend(struct exch *x, const uint8_t *p, size_t len, bool resp)
{
    if (!x->mp || len == 0)
        return;
    if (x->npend == PEND_MAX)
        model_flush(x); /* many tiny chunks: parse these now rather than lose them */
    x->pend[x->npend].p = p;
    x->pend[x->npend].len = len;
    x->pend[x->npend].resp = resp;
    x->npend++;
}

/* http_data_fn for request bodies: preview capture and the model parser. */
static void req_data(void *opaque, const uint8_t *p, size_t len)
{
    struct exch *x = opaque;
    redact_capture_add(&x->reqcap, p, len);
    model_pend(x, p, len, false);
}

/* http_data_fn for response bodies. */
static void resp_data(void *opaque, const uint8_t *p, size_t len)
{
    struct exch *x = opaque;
    redact_capture_add(&x->respcap, p, len);
    model_pend(x, p, len, true);
}

static void set_error(struct exch *x, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_error(struct exch *x, const char *fmt, ...)
{
    if (x->error[0])
        return; /* the first cause is the one worth reporting */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(x->error, sizeof(x->error), fmt, ap);
    va_end(ap);
}

/* ---- model calls, finished on the worker ---- */

static size_t str_room(const char *s)
{
    return s ? strlen(s) + 1 : 0;
}

static const char *str_put(char **dst, const char *s)
{
    if (!s)
        return NULL;
    size_t n = strlen(s) + 1;
    char *d = *dst;
    memcpy(d, s, n);
    *dst += n;
    return d;
}

/* An item for a model exchange that ended at end_us (copies ev's strings); NULL: no memory. */
static struct mitem *mitem_new(struct model_parser *mp, bool complete, int64_t end_us,
                               const struct net_event *ev, uint64_t req_bytes, uint64_t resp_bytes)
{
    size_t room = str_room(ev->process) + str_room(ev->host) + str_room(ev->path);
    struct mitem *it = malloc(sizeof(*it) + room);
    if (!it)
        return NULL;
    char *t = it->text;
    *it = (struct mitem){.mp = mp, .complete = complete, .end_us = end_us};
    it->time_us = ev->time_us;
    it->pid = ev->pid;
    /* What the parser may still hold: the request it keeps, a JSON response or SSE event. */
    it->bytes =
        (req_bytes < MODEL_REQ_MAX_DEFAULT ? (size_t)req_bytes : MODEL_REQ_MAX_DEFAULT) +
        (resp_bytes < MODEL_EVENT_MAX_DEFAULT ? (size_t)resp_bytes : MODEL_EVENT_MAX_DEFAULT);
    it->process = str_put(&t, ev->process);
    it->host = str_put(&t, ev->host);
    it->path = str_put(&t, ev->path);
    return it;
}

/* Finish the parse, fill the connection fields, price, link, sink; frees the parser. */
static void mitem_finish(struct mitm_proxy *p, struct mitem *it)
{
    struct model_call *mc = model_parser_finish(it->mp, it->complete, it->end_us);
    if (mc) {
        mc->time_us = it->time_us;
        mc->process = it->process;
        mc->pid = it->pid;
        mc->host = it->host;
        mc->path = it->path;
        pricing_apply(p->pricing, mc);
        if (p->traces)
            trace_link(p->traces, mc);
        sink_model(&p->sink, mc);
    }
    model_parser_destroy(it->mp);
    it->mp = NULL;
}

static bool mq_full(const struct mitm_proxy *p, const struct mitem *it)
{
    /* Too many items, or too many kept bytes (an item always fits an empty queue). */
    return p->mq_n >= MQ_MAX_ITEMS || (p->mq_n > 0 && p->mq_bytes + it->bytes > MQ_MAX_BYTES);
}

/*
 * Under mq_lock: take the oldest item, finish it with the lock released, count
 * it sunk. Only one thread finishes at a time (mq_busy), so items are
 * finished strictly in queue order whoever takes them.
 */
static void mq_finish_head(struct mitm_proxy *p)
{
    struct mitem *it = p->mq_head;
    p->mq_head = it->next;
    if (!p->mq_head)
        p->mq_tail = NULL;
    p->mq_n--;
    p->mq_bytes -= it->bytes;
    p->mq_busy = true;
    pthread_mutex_unlock(&p->mq_lock);
    mitem_finish(p, it);
    free(it);
    pthread_mutex_lock(&p->mq_lock);
    p->mq_busy = false;
    p->mq_sunk++;
    pthread_cond_broadcast(&p->mq_done);
    pthread_cond_broadcast(&p->mq_space); /* room, and finishing is free to take */
    pthread_cond_signal(&p->mq_work);
}

/*
 * Queue an item for the worker. When the queue is full the connection waits
 * (nothing is dropped), and finishes the oldest items itself while the worker
 * is not finishing one: a starved low-priority worker never holds it back.
 */
static void mq_push(struct mitm_proxy *p, struct mitem *it)
{
    pthread_mutex_lock(&p->mq_lock);
    while (mq_full(p, it)) {
        if (!p->mq_busy)
            mq_finish_head(p);
        else
            pthread_cond_wait(&p->mq_space, &p->mq_lock);
    }
    if (p->mq_tail)
        p->mq_tail->next = it;
    else
        p->mq_head = it;
    p->mq_tail = it;
    p->mq_n++;
    p->mq_bytes += it->bytes;
    p->mq_queued++;
    pthread_cond_signal(&p->mq_work);
    pthread_mutex_unlock(&p->mq_lock);
}

/* Finish `it` on this thread after every queued item, in the finishing turn (no memory for it). */
static void mq_finish_now(struct mitm_proxy *p, struct mitem *it)
{
    pthread_mutex_lock(&p->mq_lock);
    while (p->mq_head || p->mq_busy) {
        if (!p->mq_busy)
            mq_finish_head(p);
        else
            pthread_cond_wait(&p->mq_space, &p->mq_lock);
    }
    p->mq_busy = true;
    pthread_mutex_unlock(&p->mq_lock);
    mitem_finish(p, it);
    pthread_mutex_lock(&p->mq_lock);
    p->mq_busy = false;
    pthread_cond_broadcast(&p->mq_space);
    pthread_cond_signal(&p->mq_work);
    pthread_mutex_unlock(&p->mq_lock);
}

/* The model worker: finishes items in queue order until destroy stops it. */
static void *worker_main(void *arg)
{
    struct mitm_proxy *p = arg;
    /*
     * Lowest CPU priority (Linux: per thread): finishing is never urgent, and
     * on a busy host the connection threads carrying first tokens go first.
     * A connection that finds the queue full finishes items itself.
     */
    if (setpriority(PRIO_PROCESS, (id_t)gettid(), 19) < 0)
        LOG_DEBUG("component=proxy msg=\"cannot lower the model worker's priority\" err=%d", errno);
    pthread_mutex_lock(&p->mq_lock);
    for (;;) {
        if (p->mq_head && !p->mq_busy) {
            mq_finish_head(p);
            continue;
        }
        if (p->mq_stop && !p->mq_head && !p->mq_busy)
            break; /* stopped and nothing left */
        pthread_cond_wait(&p->mq_work, &p->mq_lock);
    }
    pthread_mutex_unlock(&p->mq_lock);
    return NULL;
}

void mitm_proxy_drain(struct mitm_proxy *p)
{
    if (!p || !p->has_worker)
        return;
    pthread_mutex_lock(&p->mq_lock);
    uint64_t want = p->mq_queued;
    while (p->mq_sunk < want)
        pthread_cond_wait(&p->mq_done, &p->mq_lock);
    pthread_mutex_unlock(&p->mq_lock);
}

/* Report one exchange (or one failed connection) to the sink. */
static void emit(struct pconn *pc, struct exch *x)
{
    int64_t end_us = mono_us();
    char *reqp = NULL, *respp = NULL;
    if (x->reqcap.seen && redact_capture_preview(&x->reqcap, &reqp) < 0)
        reqp = NULL;
    if (x->respcap.seen && redact_capture_preview(&x->respcap, &respp) < 0)
        respp = NULL;
    struct net_event ev = {
        .time_us = x->t0_wall_us ? x->t0_wall_us : wall_us(),
        .process = pc->process[0] ? pc->process : NULL,
        .pid = pc->pid,
        .method = x->method,
        .scheme = pc->tls ? "https" : "http",
        .host = x->host[0] ? x->host : NULL,
        .port = pc->dport,
        .path = x->path,
        .query = x->query,
        .status = x->status,
        .req_bytes = (int64_t)x->reqb.total + x->tunnel_up,
        .resp_bytes = (int64_t)x->respb.total + x->tunnel_down,
        .duration_us = x->t0_us ? end_us - x->t0_us : 0,
        .ttfb_us = x->ttfb_us,
        .decision = x->decision,
        .rule = x->rule,
        .tls_version = pc->tls ? pc->tls_version : NULL,
        .error = x->error[0] ? x->error : NULL,
        .req_headers = x->req_headers,
        .resp_headers = x->resp_headers,
        .req_preview = reqp,
        .resp_preview = respp,
    };
    sink_net(&pc->p->sink, &ev);
    free(reqp);
    free(respp);

    if (x->mp) {
        struct mitem *it =
            mitem_new(x->mp, x->resp_complete, end_us, &ev, x->reqb.total, x->respb.total);
        if (it) {
            x->mp = NULL; /* the item owns it now */
            mq_push(pc->p, it);
        } else {
            /* No memory for an item: finish here, after the queued calls, losing nothing. */
            struct mitem tmp = {.mp = x->mp,
                                .complete = x->resp_complete,
                                .end_us = end_us,
                                .time_us = ev.time_us,
                                .pid = ev.pid,
                                .process = ev.process,
                                .host = ev.host,
                                .path = ev.path};
            x->mp = NULL;
            mq_finish_now(pc->p, &tmp);
        }
    }
}

static void exch_start(struct exch *x)
{
    memset(x, 0, sizeof(*x));
    x->t0_wall_us = wall_us();
    x->t0_us = mono_us();
    x->ttfb_us = -1;
    redact_capture_init(&x->reqcap, 0);
    redact_capture_init(&x->respcap, 0);
}

/* ---- small answers from the proxy itself ---- */

/* Send a complete response with a text body; `close` adds Connection: close. */
static int send_simple(struct pconn *pc, struct exch *x, int status, const char *reason,
                       const char *body, bool close_after, bool head_only)
{
    char msg[1024];
    size_t blen = strlen(body);
    int n =
        snprintf(msg, sizeof(msg),
                 "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
                 "Content-Length: %zu\r\nConnection: %s\r\n\r\n%s",
                 status, reason, blen, close_after ? "close" : "keep-alive", head_only ? "" : body);
    if (n < 0 || (size_t)n >= sizeof(msg))
        return -EOVERFLOW;
    if (x) {
        x->status = status;
        if (x->ttfb_us < 0)
            x->ttfb_us = mono_us() - x->t0_us;
    }
    return mitm_io_write(&pc->g, msg, (size_t)n, pc->p->idle_timeout_ms);
}

/* ---- connection set-up ---- */

/*
 * Read exactly len bytes of the header (never past it: what follows is the
 * guest's). The guest's relay sends the header at once, so the short connect
 * timeout bounds it.
 */
static int read_exact(struct pconn *pc, uint8_t *buf, size_t len)
{
    struct mitm_io raw = {.fd = pc->fd, .ssl = NULL};
    size_t got = 0;
    while (got < len) {
        ssize_t n = mitm_io_read(&raw, buf + got, len - got, pc->p->connect_timeout_ms);
        if (n == 0)
            return -ECONNRESET;
        if (n < 0)
            return (int)n;
        got += (size_t)n;
    }
    return 0;
}

static int read_cnet(struct pconn *pc)
{
    uint8_t h[CNET_FIXED];
    int r = read_exact(pc, h, sizeof(h));
    if (r < 0) {
        LOG_WARN("component=proxy msg=\"bad CNET header\" reason=%s",
                 r == -ECONNRESET ? "short" : strerror(-r));
        return -EPROTO;
    }
    uint16_t nlen = (uint16_t)(h[16] << 8 | h[17]);
    const char *why = NULL;
    if (memcmp(h, "CNET", 4) != 0)
        why = "bad magic";
    else if (h[4] != 1)
        why = "unsupported version";
    else if (h[5] != 4)
        why = "unknown address family";
    else if (nlen > CNET_NAME_MAX)
        why = "process name too long";
    if (why) {
        LOG_WARN("component=proxy msg=\"bad CNET header\" reason=\"%s\"", why);
        return -EPROTO;
    }
    pc->dport = (uint16_t)(h[6] << 8 | h[7]);
    memcpy(&pc->daddr.s_addr, h + 8, 4); /* already network order */
    pc->pid = (int64_t)be32_load(h + 12);
    uint8_t name[CNET_NAME_MAX];
    if (nlen && read_exact(pc, name, nlen) < 0) {
        LOG_WARN("component=proxy msg=\"bad CNET header\" reason=\"short process name\"");
        return -EPROTO;
    }
    for (size_t i = 0; i < nlen; i++)
        pc->process[i] = (name[i] < 0x20 || name[i] >= 0x7f) ? '.' : (char)name[i];
    pc->process[nlen] = '\0';
    return 0;
}

/* Wait for and peek at the first guest byte after the header. */
static int peek_first(struct pconn *pc, uint8_t *b)
{
    for (;;) {
        ssize_t n = recv(pc->fd, b, 1, MSG_PEEK);
        if (n == 1)
            return 0;
        if (n == 0)
            return -ECONNRESET;
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return -errno;
        int r = mitm_io_wait(pc->fd, POLLIN, pc->p->idle_timeout_ms);
        if (r < 0)
            return r;
    }
}

/* Terminate the guest's TLS. On failure reports an event (decision block when no name). */
static int tls_accept(struct pconn *pc)
{
    char fallback[HOST_MAX];
    const char *fb = NULL;
    if (pc->p->pool && dns_pool_lookup(pc->p->pool, pc->daddr, fallback, sizeof(fallback)) == 0)
        fb = fallback;
    SSL *ssl = NULL;
    int r = mitm_tls_server_new(pc->p->certs, fb, &ssl);
    if (r < 0) {
        LOG_ERR("component=proxy msg=\"cannot create TLS session\" err=%d", r);
        return r;
    }
    pc->g.ssl = ssl;
    SSL_set_fd(ssl, pc->fd);
    SSL_set_options(ssl, SSL_OP_IGNORE_UNEXPECTED_EOF);
    SSL_set_read_ahead(ssl, 1);
    pc->tls = true;
    int64_t deadline = mono_us() + (int64_t)pc->p->connect_timeout_ms * 1000;
    for (;;) {
        ERR_clear_error();
        int a = SSL_accept(ssl);
        if (a == 1)
            break;
        int e = SSL_get_error(ssl, a);
        short want = e == SSL_ERROR_WANT_READ ? POLLIN : e == SSL_ERROR_WANT_WRITE ? POLLOUT : 0;
        int left = (int)((deadline - mono_us()) / 1000);
        if (want && left > 0 && mitm_io_wait(pc->fd, want, left) == 0)
            continue;
        struct exch x;
        exch_start(&x);
        x.decision = DECISION_ALLOW;
        const char *sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
        if (!fb && !sni) {
            x.decision = DECISION_BLOCK;
            set_error(&x, "no server name");
        } else {
            char tmp[200];
            set_error(&x, "guest TLS handshake: %s",
                      want ? "timed out" : mitm_io_tls_error(tmp, sizeof(tmp)));
            if (sni)
                snprintf(x.host, sizeof(x.host), "%s", sni);
            else if (fb)
                snprintf(x.host, sizeof(x.host), "%s", fb);
        }
        x.t0_us = 0;
        LOG_INFO("component=proxy msg=\"guest TLS handshake failed\" error=\"%s\"", x.error);
        emit(pc, &x);
        exch_fini(&x);
        return -EPROTO;
    }
    const char *name = mitm_tls_server_name(ssl);
    if (!name) {
        /* Cannot happen after a successful handshake; refuse rather than guess. */
        LOG_ERR("component=proxy msg=\"TLS handshake without a server name\"");
        return -EPROTO;
    }
    snprintf(pc->tls_name, sizeof(pc->tls_name), "%s", name);
    for (char *c = pc->tls_name; *c; c++)
        *c = (char)tolower((unsigned char)*c);
    pc->tls_version = SSL_get_version(ssl);
    return 0;
}

/* ---- request heads ---- */

/*
 * Gather a request head in gbuf. Returns its length, 0 when the guest closed
 * cleanly between requests, or -errno (-EMSGSIZE, -EBADMSG with *why).
 */
static long read_request_head(struct pconn *pc, struct http_head *h, const char **why)
{
    for (;;) {
        if (pc->glen) {
            long r = http_parse_head((const char *)pc->gbuf, pc->glen, true, h, why);
            if (r != 0)
                return r;
            if (pc->glen >= HTTP_MAX_HEAD)
                return -EMSGSIZE;
        }
        if (pc->glen >= GBUF_CAP)
            return -EMSGSIZE;
        /* Between requests nothing is usually there yet: wait first, saving a failed read. */
        if (pc->glen == 0 && !mitm_io_pending(&pc->g)) {
            int w = mitm_io_wait(pc->fd, POLLIN, pc->p->idle_timeout_ms);
            if (w < 0)
                return w;
        }
        ssize_t n =
            mitm_io_read(&pc->g, pc->gbuf + pc->glen, GBUF_CAP - pc->glen, pc->p->idle_timeout_ms);
        if (n == 0)
            return pc->glen ? -ECONNRESET : 0;
        if (n < 0)
            return n;
        pc->glen += (size_t)n;
    }
}

static void gbuf_consume(struct pconn *pc, size_t n)
{
    memmove(pc->gbuf, pc->gbuf + n, pc->glen - n);
    pc->glen -= n;
}

/* A host name as policy and upstreams see it: lower case, [a-z0-9.-_] only. */
static int normalize_host(const char *p, size_t len, char *out, size_t outlen)
{
    if (len == 0 || len >= outlen)
        return -EINVAL;
    for (size_t i = 0; i < len; i++) {
        char c = (char)tolower((unsigned char)p[i]);
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_'))
            return -EINVAL;
        out[i] = c;
    }
    out[len] = '\0';
    if (out[len - 1] == '.') /* a trailing dot names the same host */
        out[len - 1] = '\0';
    return out[0] ? 0 : -EINVAL;
}

/* Split a Host header value "name[:port]". */
static int parse_host_header(struct http_str v, char *host, size_t hostlen, unsigned *port)
{
    size_t nlen = v.len;
    unsigned prt = 80;
    const char *colon = memchr(v.p, ':', v.len);
    if (colon) {
        nlen = (size_t)(colon - v.p);
        size_t plen = v.len - nlen - 1;
        if (plen == 0 || plen > 5)
            return -EINVAL;
        unsigned val = 0;
        for (size_t i = 0; i < plen; i++) {
            if (colon[1 + i] < '0' || colon[1 + i] > '9')
                return -EINVAL;
            val = val * 10 + (unsigned)(colon[1 + i] - '0');
        }
        if (val == 0 || val > 65535)
            return -EINVAL;
        prt = val;
    }
    int r = normalize_host(v.p, nlen, host, hostlen);
    if (r < 0)
        return r;
    *port = prt;
    return 0;
}

/*
 * The origin-form target of a request (absolute form reduced to its path):
 * sets *o and *olen to the slice to send upstream. -EINVAL for other forms.
 */
static int origin_target(struct http_str t, const char **o, size_t *olen)
{
    static const char *const schemes[] = {"http://", "https://"};
    if (t.len >= 1 && (t.p[0] == '/' || (t.len == 1 && t.p[0] == '*'))) {
        *o = t.p;
        *olen = t.len;
        return 0;
    }
    for (size_t i = 0; i < 2; i++) {
        size_t sl = strlen(schemes[i]);
        if (t.len >= sl && strncasecmp(t.p, schemes[i], sl) == 0) {
            const char *rest = t.p + sl;
            size_t rlen = t.len - sl;
            const char *slash = memchr(rest, '/', rlen);
            if (!slash) {
                *o = "/";
                *olen = 1;
            } else {
                *o = slash;
                *olen = rlen - (size_t)(slash - rest);
            }
            return 0;
        }
    }
    return -EINVAL;
}

static bool is_hop_header(struct http_str name)
{
    return http_str_eq(name, "connection") || http_str_eq(name, "keep-alive") ||
           http_str_eq(name, "proxy-connection") || http_str_eq(name, "proxy-authorization");
}

/* Append to wbuf at *len; false when it does not fit. */
static bool wput(char *w, size_t *len, const char *p, size_t n)
{
    if (n > WBUF_CAP - *len)
        return false;
    memcpy(w + *len, p, n);
    *len += n;
    return true;
}

static bool wputs(char *w, size_t *len, const char *s)
{
    return wput(w, len, s, strlen(s));
}

/* Headers of h without the hop-by-hop ones (and without Upgrade unless kept). */
static bool put_headers(char *w, size_t *len, const struct http_head *h, bool keep_upgrade)
{
    for (size_t i = 0; i < h->nheaders; i++) {
        const struct http_header *hd = &h->headers[i];
        if (is_hop_header(hd->name))
            continue;
        if (!keep_upgrade && http_str_eq(hd->name, "upgrade"))
            continue;
        if (!wput(w, len, hd->name.p, hd->name.len) || !wputs(w, len, ": ") ||
            !wput(w, len, hd->value.p, hd->value.len) || !wputs(w, len, "\r\n"))
            return false;
    }
    return true;
}

/* ---- one exchange ---- */

struct reqinfo {
    bool keep_alive;
    bool websocket; /* an Upgrade: websocket request; the only upgrade passed on */
    int minor;
    enum http_body_kind kind;
    int64_t content_length;
};

enum xresult {
    XR_OK,          /* exchange finished; the guest connection may go on */
    XR_CLOSE,       /* finished, but the guest connection ends here */
    XR_RETRY,       /* a reused upstream connection died before answering; nothing sent */
    XR_GUEST_ERROR, /* guest side failed; close without answering */
};

static bool body_done(const struct http_body *b)
{
    return b->done || (b->kind == HTTP_BODY_LENGTH && b->remaining == 0) ||
           b->kind == HTTP_BODY_NONE;
}

/*
 * Read what io has now into buf[0..cap): the first read as mitm_io_read()
 * with no wait, then more while more is there without waiting, so one write
 * on carries it all. Nothing that has arrived is held back.
 */
static ssize_t read_batch(struct mitm_io *io, uint8_t *buf, size_t cap)
{
    ssize_t n = mitm_io_read(io, buf, cap, 0);
    if (n <= 0)
        return n;
    size_t got = (size_t)n;
    while (got < cap) {
        ssize_t more = mitm_io_read(io, buf + got, cap - got, 0);
        if (more <= 0)
            break; /* an end or error shows again on the next read */
        got += (size_t)more;
    }
    return (ssize_t)got;
}

/* Byte relay after a 101, until either side ends. */
static void tunnel(struct pconn *pc, struct upstream_conn *up, struct exch *x)
{
    struct mitm_io *io[2] = {&pc->g, &up->io};
    for (;;) {
        struct pollfd pfd[2] = {{.fd = pc->fd, .events = POLLIN},
                                {.fd = up->io.fd, .events = POLLIN}};
        bool pend = mitm_io_pending(io[0]) || mitm_io_pending(io[1]);
        int r = poll(pfd, 2, pend ? 0 : pc->p->idle_timeout_ms);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return;
        if (r == 0 && !pend) {
            set_error(x, "idle timeout");
            return;
        }
        for (int i = 0; i < 2; i++) {
            if (!pfd[i].revents && !mitm_io_pending(io[i]))
                continue;
            ssize_t n = mitm_io_read(io[i], pc->tmp, CHUNK, 0);
            if (n == -EAGAIN)
                continue;
            if (n <= 0)
                return;
            if (mitm_io_write(io[!i], pc->tmp, (size_t)n, pc->p->idle_timeout_ms) < 0)
                return;
            if (i == 0)
                x->tunnel_up += n;
            else
                x->tunnel_down += n;
        }
    }
}

/* Write the rewritten final response head; sets *close_guest. */
/*
 * The rewritten response head in pc->wbuf; returns its length or -EMSGSIZE.
 * Sent by the caller, together with the first body bytes when they fit.
 */
static long build_response_head(struct pconn *pc, const struct http_head *resp,
                                const struct reqinfo *ri, bool close_guest)
{
    size_t len = 0;
    char line[600];
    int n = snprintf(line, sizeof(line), "HTTP/1.%d %d %.*s\r\n", resp->minor, resp->status,
                     (int)(resp->reason.len > 512 ? 512 : resp->reason.len), resp->reason.p);
    if (n < 0 || (size_t)n >= sizeof(line))
        return -EOVERFLOW;
    bool ok = wput(pc->wbuf, &len, line, (size_t)n) &&
              put_headers(pc->wbuf, &len, resp, resp->status == 101);
    if (ok && resp->status == 101)
        ok = wputs(pc->wbuf, &len, "Connection: Upgrade\r\n");
    else if (ok && close_guest)
        ok = wputs(pc->wbuf, &len, "Connection: close\r\n");
    else if (ok && ri->minor == 0)
        ok = wputs(pc->wbuf, &len, "Connection: keep-alive\r\n");
    ok = ok && wputs(pc->wbuf, &len, "\r\n");
    if (!ok)
        return -EMSGSIZE;
    return (long)len;
}

/*
 * Write pc->wbuf[0..hlen) and then p[0..len) to io: as one write when they
 * fit in wbuf together (one TLS record and one wake-up for a small message
 * instead of two), else one after the other.
 */
static int write_head_and(struct pconn *pc, struct mitm_io *io, size_t hlen, const uint8_t *p,
                          size_t len)
{
    int idle = pc->p->idle_timeout_ms;
    if (len <= WBUF_CAP - hlen) {
        memcpy(pc->wbuf + hlen, p, len);
        return mitm_io_write(io, pc->wbuf, hlen + len, idle);
    }
    int r = mitm_io_write(io, pc->wbuf, hlen, idle);
    return r < 0 ? r : mitm_io_write(io, p, len, idle);
}

/*
 * Relay one exchange over `up`: the request head in pc->wbuf[0..hlen) is
 * sent first; then request body and response move in one poll loop.
 * *up_reusable says whether the upstream connection may go back to the pool.
 */
static enum xresult exchange(struct pconn *pc, struct upstream_conn *up, const struct reqinfo *ri,
                             size_t hlen, struct exch *x, bool *up_reusable)
{
    int idle = pc->p->idle_timeout_ms;
    *up_reusable = false;
    bool sent_to_guest = false; /* once true, errors can no longer become a 502 */
    bool close_guest = !ri->keep_alive;
    enum { R_HEAD, R_BODY, R_DONE } rs = R_HEAD;
    struct http_head resp;
    bool resp_keep = false;
    bool extra = false; /* the upstream sent bytes past the response */
    struct http_str mstr = {x->method, strlen(x->method)};

    /* The head, with whatever of the body came in with it. */
    http_body_init(&x->reqb, ri->kind, ri->content_length);
    long m0 = 0;
    if (!body_done(&x->reqb) && pc->glen) {
        m0 = http_body_feed(&x->reqb, pc->gbuf, pc->glen, req_data, x);
        if (m0 < 0) {
            model_flush(x);
            set_error(x, "bad chunked request body");
            goto bad_request;
        }
    }
    int w0 = write_head_and(pc, &up->io, hlen, pc->gbuf, (size_t)m0);
    model_flush(x);
    if (w0 < 0) {
        if (up->reused && ri->kind == HTTP_BODY_NONE)
            return XR_RETRY;
        set_error(x, "upstream %s:%u: connection lost while sending the request", x->host, x->port);
        goto fail;
    }
    gbuf_consume(pc, (size_t)m0);
    pc->ulen = 0;

    while (!(body_done(&x->reqb) && rs == R_DONE)) {
        bool want_g = !body_done(&x->reqb);
        bool want_u = rs != R_DONE;
        struct pollfd pfd[2];
        int nf = 0, gi = -1, ui = -1;
        if (want_g) {
            gi = nf;
            pfd[nf++] = (struct pollfd){.fd = pc->fd, .events = POLLIN};
        }
        if (want_u) {
            ui = nf;
            pfd[nf++] = (struct pollfd){.fd = up->io.fd, .events = POLLIN};
        }
        bool gpend = want_g && mitm_io_pending(&pc->g);
        bool upend = want_u && mitm_io_pending(&up->io);
        int r = poll(pfd, (nfds_t)nf, gpend || upend ? 0 : idle);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            set_error(x, "poll: %s", strerror(errno));
            goto fail;
        }
        if (r == 0 && !gpend && !upend) {
            if (want_g) { /* the upstream waits for the rest of the body: the guest stalled */
                set_error(x, "guest sent nothing for %d ms during the request body", idle);
                if (!sent_to_guest) {
                    char body[400];
                    snprintf(body, sizeof(body), "%s\n", x->error);
                    send_simple(pc, x, 408, "Request Timeout", body, true, false);
                }
                return XR_CLOSE;
            }
            if (rs == R_HEAD)
                set_error(x, "upstream %s:%u: no response within %d ms", x->host, x->port, idle);
            else
                set_error(x, "upstream %s:%u: response stalled for %d ms", x->host, x->port, idle);
            goto fail;
        }

        if (gi >= 0 && (gpend || pfd[gi].revents)) {
            ssize_t n = read_batch(&pc->g, pc->tmp, CHUNK);
            if (n == 0 || (n < 0 && n != -EAGAIN)) {
                set_error(x, "guest closed the connection during the request body");
                *up_reusable = false;
                return XR_GUEST_ERROR;
            }
            if (n > 0) {
                long m = http_body_feed(&x->reqb, pc->tmp, (size_t)n, req_data, x);
                int w = m >= 0 ? mitm_io_write(&up->io, pc->tmp, (size_t)m, idle) : 0;
                model_flush(x);
                if (m < 0) {
                    set_error(x, "bad chunked request body");
                    goto bad_request;
                }
                if (w < 0) {
                    set_error(x, "upstream %s:%u: connection lost while sending the request",
                              x->host, x->port);
                    goto fail;
                }
                if (m < n) { /* the next (pipelined) request has begun */
                    memcpy(pc->gbuf, pc->tmp + m, (size_t)(n - m));
                    pc->glen = (size_t)(n - m);
                }
            }
        }

        if (ui >= 0 && (upend || pfd[ui].revents)) {
            if (rs == R_HEAD) {
                if (pc->ulen >= UBUF_CAP) {
                    set_error(x, "upstream %s:%u: response head too large", x->host, x->port);
                    goto fail;
                }
                ssize_t n = mitm_io_read(&up->io, pc->ubuf + pc->ulen, UBUF_CAP - pc->ulen, 0);
                if (n == -EAGAIN)
                    continue;
                if (n <= 0) {
                    if (up->reused && !sent_to_guest && pc->ulen == 0 &&
                        ri->kind == HTTP_BODY_NONE && x->ttfb_us < 0)
                        return XR_RETRY;
                    set_error(x, "upstream %s:%u: %s", x->host, x->port,
                              n == 0         ? "connection closed before the response"
                              : n == -EPROTO ? "TLS error"
                                             : strerror((int)-n));
                    goto fail;
                }
                if (x->ttfb_us < 0)
                    x->ttfb_us = mono_us() - x->t0_us;
                pc->ulen += (size_t)n;
                for (;;) {
                    const char *why = NULL;
                    long hl = http_parse_head((const char *)pc->ubuf, pc->ulen, false, &resp, &why);
                    if (hl == 0)
                        break;
                    if (hl < 0) {
                        set_error(x, "upstream %s:%u: bad response: %s", x->host, x->port,
                                  why ? why : "malformed");
                        goto fail;
                    }
                    if (resp.status >= 100 && resp.status < 200 && resp.status != 101) {
                        /* Interim (100 Continue, 103): pass on as is. */
                        if (mitm_io_write(&pc->g, pc->ubuf, (size_t)hl, idle) < 0) {
                            set_error(x, "guest closed the connection");
                            return XR_GUEST_ERROR;
                        }
                        sent_to_guest = true;
                        memmove(pc->ubuf, pc->ubuf + hl, pc->ulen - (size_t)hl);
                        pc->ulen -= (size_t)hl;
                        continue;
                    }
                    x->status = resp.status;
                    free(x->resp_headers);
                    x->resp_headers = NULL;
                    if (redact_headers_json(&resp, &x->resp_headers) < 0)
                        x->resp_headers = NULL;
                    if (resp.status == 101) {
                        if (!ri->websocket) {
                            set_error(x, "upstream %s:%u: 101 without an upgrade request", x->host,
                                      x->port);
                            goto fail;
                        }
                        long rh = build_response_head(pc, &resp, ri, false);
                        if (rh < 0) {
                            set_error(x, "upstream %s:%u: response head too large", x->host,
                                      x->port);
                            goto fail;
                        }
                        if (write_head_and(pc, &pc->g, (size_t)rh, pc->ubuf + hl,
                                           pc->ulen - (size_t)hl) < 0) {
                            set_error(x, "guest closed the connection");
                            return XR_GUEST_ERROR;
                        }
                        x->tunnel_down += (int64_t)(pc->ulen - (size_t)hl);
                        if (pc->glen) {
                            if (mitm_io_write(&up->io, pc->gbuf, pc->glen, idle) < 0)
                                return XR_CLOSE;
                            x->tunnel_up += (int64_t)pc->glen;
                            pc->glen = 0;
                        }
                        x->upgraded = true;
                        tunnel(pc, up, x);
                        return XR_CLOSE;
                    }
                    enum http_body_kind k = http_body_kind(&resp, mstr);
                    resp_keep = resp.keep_alive;
                    if (k == HTTP_BODY_CLOSE)
                        close_guest = true;
                    long rh = build_response_head(pc, &resp, ri, close_guest);
                    if (rh < 0) {
                        set_error(x, "upstream %s:%u: response head too large", x->host, x->port);
                        goto fail;
                    }
                    if (x->mp) {
                        const struct http_header *ct = http_find_header(&resp, "content-type");
                        const struct http_header *ce = http_find_header(&resp, "content-encoding");
                        model_parser_response_head(x->mp, resp.status, ct ? ct->value.p : NULL,
                                                   ct ? ct->value.len : 0, ce ? ce->value.p : NULL,
                                                   ce ? ce->value.len : 0);
                    }
                    /* The head goes out with whatever of the body came in with it. */
                    http_body_init(&x->respb, k, resp.content_length);
                    size_t rest = pc->ulen - (size_t)hl;
                    long m = 0;
                    if (rest && !body_done(&x->respb)) {
                        m = http_body_feed(&x->respb, pc->ubuf + hl, rest, resp_data, x);
                        if (m < 0) {
                            model_flush(x);
                            set_error(x, "upstream %s:%u: bad chunked response body", x->host,
                                      x->port);
                            goto fail;
                        }
                    }
                    if ((size_t)m < rest)
                        extra = true;
                    int w = write_head_and(pc, &pc->g, (size_t)rh, pc->ubuf + hl, (size_t)m);
                    model_flush(x);
                    if (w < 0) {
                        set_error(x, "guest closed the connection");
                        return XR_GUEST_ERROR;
                    }
                    sent_to_guest = true;
                    pc->ulen = 0;
                    rs = body_done(&x->respb) ? R_DONE : R_BODY;
                    break;
                }
            } else if (rs == R_BODY) {
                ssize_t n = read_batch(&up->io, pc->tmp, CHUNK);
                if (n == -EAGAIN)
                    continue;
                if (n <= 0) {
                    if (n == 0 && x->respb.kind == HTTP_BODY_CLOSE &&
                        http_body_eof(&x->respb) == 0) {
                        rs = R_DONE;
                        resp_keep = false;
                        continue;
                    }
                    set_error(x, "upstream %s:%u: response body cut short", x->host, x->port);
                    goto fail;
                }
                long m = http_body_feed(&x->respb, pc->tmp, (size_t)n, resp_data, x);
                int w = m >= 0 ? mitm_io_write(&pc->g, pc->tmp, (size_t)m, idle) : 0;
                model_flush(x);
                if (m < 0) {
                    set_error(x, "upstream %s:%u: bad chunked response body", x->host, x->port);
                    goto fail;
                }
                if (w < 0) {
                    set_error(x, "guest closed the connection");
                    return XR_GUEST_ERROR;
                }
                if (m < n)
                    extra = true;
                if (body_done(&x->respb))
                    rs = R_DONE;
            }
        }
        /* An answer that came before the whole request body: end the connection after it. */
        if (rs == R_DONE && !body_done(&x->reqb)) {
            close_guest = true;
            break;
        }
    }
    x->resp_complete = rs == R_DONE;
    *up_reusable = resp_keep && !extra && body_done(&x->reqb) && rs == R_DONE &&
                   x->respb.kind != HTTP_BODY_CLOSE;
    return close_guest ? XR_CLOSE : XR_OK;

bad_request:
    if (!sent_to_guest)
        send_simple(pc, NULL, 400, "Bad Request", "bad request body\n", true, false);
    x->status = sent_to_guest ? x->status : 400;
    return XR_CLOSE;
fail:
    if (!sent_to_guest) {
        char body[400];
        snprintf(body, sizeof(body), "%s\n", x->error);
        send_simple(pc, x, 502, "Bad Gateway", body, true, strcmp(x->method, "HEAD") == 0);
    }
    return XR_CLOSE;
}

/* ---- the connection loop ---- */

/* Reject a request the proxy cannot serve: answer, report, end the connection. */
static void reject(struct pconn *pc, struct exch *x, int status, const char *reason,
                   const char *what)
{
    char body[300];
    snprintf(body, sizeof(body), "%s\n", what);
    set_error(x, "%s", what);
    x->decision = DECISION_BLOCK;
    send_simple(pc, x, status, reason, body, true, false);
    emit(pc, x);
}

/* Serve requests until the guest closes, an error, or a Connection: close. */
static void serve_http(struct pconn *pc)
{
    struct mitm_proxy *p = pc->p;
    for (;;) {
        struct http_head req;
        const char *why = NULL;
        long hl = read_request_head(pc, &req, &why);
        if (hl == 0)
            return;
        struct exch x;
        exch_start(&x);
        if (pc->tls)
            snprintf(x.host, sizeof(x.host), "%s", pc->tls_name);
        if (hl == -EMSGSIZE) {
            reject(pc, &x, 431, "Request Header Fields Too Large", "request head too large");
            exch_fini(&x);
            return;
        }
        if (hl == -EBADMSG) {
            char what[200];
            snprintf(what, sizeof(what), "bad request: %s", why ? why : "malformed");
            reject(pc, &x, 400, "Bad Request", what);
            exch_fini(&x);
            return;
        }
        if (hl < 0) {
            LOG_DEBUG("component=proxy msg=\"guest read failed\" err=%ld", hl);
            exch_fini(&x);
            return;
        }
        x.method = dup_printable(req.method.p, req.method.len);
        const char *ot = NULL;
        size_t olen = 0;
        if (!x.method) {
            exch_fini(&x);
            return;
        }
        if (origin_target(req.target, &ot, &olen) < 0) {
            x.path = dup_printable(req.target.p, req.target.len);
            reject(pc, &x, 400, "Bad Request", "bad request: unsupported request target");
            exch_fini(&x);
            return;
        }
        const char *qm = memchr(ot, '?', olen);
        size_t plen = qm ? (size_t)(qm - ot) : olen;
        x.path = dup_printable(ot, plen);
        if (qm && redact_query(qm + 1, olen - plen - 1, &x.query) < 0)
            x.query = NULL;
        if (redact_headers_json(&req, &x.req_headers) < 0)
            x.req_headers = NULL;
        if (pc->tls) {
            x.port = pc->dport;
        } else {
            const struct http_header *hh = http_find_header(&req, "host");
            if (!hh || parse_host_header(hh->value, x.host, sizeof(x.host), &x.port) < 0) {
                x.host[0] = '\0';
                reject(pc, &x, 400, "Bad Request",
                       hh ? "bad request: bad Host header" : "bad request: no Host header");
                exch_fini(&x);
                return;
            }
        }
        if (!x.path) {
            exch_fini(&x);
            return;
        }

        struct reqinfo ri = {.keep_alive = req.keep_alive,
                             .minor = req.minor,
                             .kind = http_body_kind(&req, (struct http_str){NULL, 0}),
                             .content_length = req.content_length};
        const struct http_header *uh = http_find_header(&req, "upgrade");
        ri.websocket = req.upgrade && uh && http_str_eq(uh->value, "websocket");

        struct policy *pol = policy_store_get(p->policy);
        if (!pol) { /* never expected; without a policy nothing is forwarded */
            reject(pc, &x, 403, "Forbidden", "no policy loaded");
            exch_fini(&x);
            return;
        }
        struct policy_result pr = policy_decide_http(pol, x.host, x.method, x.path);
        x.decision = pr.decision;
        x.rule = pr.rule;
        bool has_body = ri.kind != HTTP_BODY_NONE;

        if (pr.decision == DECISION_BLOCK) {
            char body[600];
            snprintf(body, sizeof(body), "Blocked by capsem policy: rule %s denies %s %s on %s\n",
                     pr.rule ? pr.rule : "(default)", x.method, x.path, x.host);
            bool close_after = !ri.keep_alive || has_body;
            gbuf_consume(pc, (size_t)hl);
            int w = send_simple(pc, &x, 403, "Forbidden", body, close_after,
                                strcmp(x.method, "HEAD") == 0);
            emit(pc, &x);
            policy_unref(pol);
            exch_fini(&x);
            if (close_after || w < 0)
                return;
            continue;
        }

        /*
         * Credential placeholders (mitm/creds.h): one sent anywhere but its
         * provider's hosts blocks the request; to those hosts it becomes the
         * real key. The event keeps what the guest sent (redacted above), so
         * the real key reaches only the upstream connection.
         */
        struct http_str tgt = {ot, olen};
        if (p->creds) {
            struct creds_check cc;
            creds_check(p->creds, &req, tgt, x.host, pc->tls, &cc);
            if (cc.block) {
                LOG_WARN("component=proxy msg=\"credential placeholder sent to another host\" "
                         "provider=%s host=%s",
                         creds_provider_name((enum creds_provider)cc.provider), x.host);
                x.decision = DECISION_BLOCK;
                x.rule = "credentials";
                set_error(&x, "%s", cc.error);
                char body[600];
                const char *pn = creds_provider_name((enum creds_provider)cc.provider);
                snprintf(body, sizeof(body),
                         "Blocked by capsem: %s (the %s API key placeholder); capsem swaps it for "
                         "the real key only on HTTPS requests to %s's own hosts\n",
                         cc.error, pn, pn);
                bool close_after = !ri.keep_alive || has_body;
                gbuf_consume(pc, (size_t)hl);
                int w = send_simple(pc, &x, 403, "Forbidden", body, close_after,
                                    strcmp(x.method, "HEAD") == 0);
                emit(pc, &x);
                policy_unref(pol);
                exch_fini(&x);
                if (close_after || w < 0)
                    return;
                continue;
            }
            if (cc.found && creds_swap(p->creds, x.host, &req, &tgt, pc->cbuf, WBUF_CAP) < 0) {
                gbuf_consume(pc, (size_t)hl);
                reject(pc, &x, 431, "Request Header Fields Too Large", "request head too large");
                policy_unref(pol);
                exch_fini(&x);
                return;
            }
        }

        /* The request head as it goes upstream: origin form, hop-by-hop headers dropped. */
        size_t wl = 0;
        bool ok = wput(pc->wbuf, &wl, req.method.p, req.method.len) && wputs(pc->wbuf, &wl, " ") &&
                  wput(pc->wbuf, &wl, tgt.p, tgt.len) &&
                  wputs(pc->wbuf, &wl, req.minor ? " HTTP/1.1\r\n" : " HTTP/1.0\r\n") &&
                  put_headers(pc->wbuf, &wl, &req, ri.websocket) &&
                  (!ri.websocket || wputs(pc->wbuf, &wl, "Connection: Upgrade\r\n")) &&
                  wputs(pc->wbuf, &wl, "\r\n");
        /* A model API call is parsed as it passes (only when someone takes the result). */
        struct model_route route;
        if (ok && p->sink.ops && p->sink.ops->model &&
            model_detect(p->model_hosts, x.host, x.method, req.target.p, req.target.len, &route) &&
            model_parser_create(&route, NULL, x.t0_us, &x.mp) < 0)
            x.mp = NULL; /* out of memory: the exchange goes on unparsed */
        gbuf_consume(pc, (size_t)hl);
        if (!ok) {
            reject(pc, &x, 431, "Request Header Fields Too Large", "request head too large");
            policy_unref(pol); /* after the event: x.rule points into it */
            exch_fini(&x);
            return;
        }

        char addr[300];
        const char *ovr =
            policy_resolve_override(pol, x.host, x.port, addr, sizeof(addr)) == 1 ? addr : NULL;
        enum xresult xr = XR_CLOSE;
        for (int attempt = 0; attempt < 2; attempt++) {
            struct upstream_conn *up = NULL;
            char err[256];
            int r = 0;
            /* The connection the last exchange used goes on when it fits; else to the pool. */
            if (pc->up && upstream_conn_usable(pc->up, x.host, x.port, pc->tls, ovr)) {
                up = pc->up;
                up->reused = true;
            } else if (pc->up) {
                upstream_put(p->ups, pc->up, true);
            }
            pc->up = NULL;
            if (!up)
                r = upstream_get(p->ups, x.host, x.port, pc->tls, ovr, &up, err, sizeof(err));
            if (r < 0) {
                char body[400];
                set_error(&x, "upstream %s:%u: %s", x.host, x.port, err);
                snprintf(body, sizeof(body), "%s\n", x.error);
                LOG_INFO("component=proxy msg=\"upstream failed\" host=%s port=%u error=\"%s\"",
                         x.host, x.port, err);
                bool close_after = !ri.keep_alive || has_body;
                int w = send_simple(pc, &x, 502, "Bad Gateway", body, close_after,
                                    strcmp(x.method, "HEAD") == 0);
                xr = close_after || w < 0 ? XR_CLOSE : XR_OK;
                break;
            }
            bool reusable = false;
            xr = exchange(pc, up, &ri, wl, &x, &reusable);
            if (reusable && xr == XR_OK)
                pc->up = up; /* kept for this guest's next request */
            else
                upstream_put(p->ups, up, reusable && xr != XR_RETRY);
            if (xr != XR_RETRY)
                break;
            if (attempt == 1) { /* a second connection failed the same way: a real 502 */
                set_error(&x, "upstream %s:%u: connection closed before the response", x.host,
                          x.port);
                send_simple(pc, &x, 502, "Bad Gateway", "upstream closed the connection\n", true,
                            false);
                xr = XR_CLOSE;
            }
        }
        emit(pc, &x);
        policy_unref(pol);
        exch_fini(&x);
        if (xr != XR_OK)
            return;
    }
}

static void conn_free(struct pconn *pc)
{
    if (pc->g.ssl) {
        SSL_shutdown(pc->g.ssl);
        SSL_free(pc->g.ssl);
    }
    if (pc->fd >= 0)
        close(pc->fd);
    free(pc->gbuf);
    free(pc->ubuf);
    free(pc->tmp);
    if (pc->cbuf && pc->wbuf)
        OPENSSL_cleanse(pc->wbuf, WBUF_CAP); /* a rewritten head may hold a real key */
    free(pc->wbuf);
    if (pc->cbuf)
        OPENSSL_cleanse(pc->cbuf, WBUF_CAP); /* it held real keys */
    free(pc->cbuf);
    free(pc);
}

static void *conn_main(void *arg)
{
    struct pconn *pc = arg;
    struct mitm_proxy *p = pc->p;
    uint8_t first = 0;
    /*
     * A peer that went away makes the next write raise SIGPIPE in the writing
     * thread (OpenSSL writes with write(), not send(MSG_NOSIGNAL)); blocked
     * here, the write just fails with EPIPE, whatever the process does with it.
     */
    sigset_t pipe_set;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, NULL);
    if (read_cnet(pc) == 0 && peek_first(pc, &first) == 0 && (first != 0x16 || tls_accept(pc) == 0))
        serve_http(pc);
    upstream_put(p->ups, pc->up, true); /* only ever kept after a clean exchange */
    pc->up = NULL;

    pthread_mutex_lock(&p->lock);
    if (pc->prev)
        pc->prev->next = pc->next;
    else
        p->conns = pc->next;
    if (pc->next)
        pc->next->prev = pc->prev;
    pthread_mutex_unlock(&p->lock);
    conn_free(pc); /* out of the list first: destroy must never shut down a reused fd */
    pthread_mutex_lock(&p->lock);
    p->active--;
    pthread_cond_broadcast(&p->idle);
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

int mitm_proxy_create(const struct mitm_proxy_config *cfg, struct mitm_proxy **out, char *err,
                      size_t errlen)
{
    int rc = 0;
    struct mitm_proxy *p = NULL;
    if (!cfg || !cfg->policy || !cfg->certs) {
        snprintf(err, errlen, "proxy needs a policy store and certificates");
        return -EINVAL;
    }
    p = calloc(1, sizeof(*p));
    if (!p) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    p->policy = cfg->policy;
    p->certs = cfg->certs;
    p->pool = cfg->pool;
    p->sink = cfg->sink;
    p->model_hosts = cfg->model_hosts;
    p->pricing = cfg->pricing;
    p->traces = cfg->traces;
    p->creds = cfg->creds;
    p->connect_timeout_ms = (int)(cfg->connect_timeout_ms ? cfg->connect_timeout_ms : 10000);
    p->idle_timeout_ms = (int)(cfg->idle_timeout_ms ? cfg->idle_timeout_ms : 300000);
    p->max_connections = cfg->max_connections ? cfg->max_connections : 512;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->idle, NULL);
    pthread_mutex_init(&p->mq_lock, NULL);
    pthread_cond_init(&p->mq_work, NULL);
    pthread_cond_init(&p->mq_space, NULL);
    pthread_cond_init(&p->mq_done, NULL);

    const char *ca = cfg->upstream_ca_file;
    struct policy *pol = policy_store_get(cfg->policy);
    if (!ca && pol)
        ca = policy_upstream_ca_file(pol);
    rc = mitm_tls_client_ctx(ca, &p->client_ctx, err, errlen);
    policy_unref(pol);
    if (rc < 0)
        goto out;
    rc = upstream_pool_create(p->client_ctx, (unsigned)p->connect_timeout_ms,
                              (unsigned)p->idle_timeout_ms, &p->ups);
    if (rc < 0) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    if (p->sink.ops && p->sink.ops->model) {
        int e = pthread_create(&p->worker, NULL, worker_main, p);
        if (e != 0) {
            snprintf(err, errlen, "cannot start the model worker: %s", strerror(e));
            rc = -e;
            goto out;
        }
        p->has_worker = true;
    }
    *out = p;
    p = NULL;
out:
    if (p) {
        upstream_pool_destroy(p->ups);
        SSL_CTX_free(p->client_ctx);
        pthread_cond_destroy(&p->mq_done);
        pthread_cond_destroy(&p->mq_space);
        pthread_cond_destroy(&p->mq_work);
        pthread_mutex_destroy(&p->mq_lock);
        pthread_cond_destroy(&p->idle);
        pthread_mutex_destroy(&p->lock);
        free(p);
    }
    return rc;
}

int mitm_proxy_serve(struct mitm_proxy *p, int fd)
{
    int rc = 0;
    struct pconn *pc = NULL;
    pthread_mutex_lock(&p->lock);
    if (p->stopping || p->active >= p->max_connections) {
        bool stopping = p->stopping;
        pthread_mutex_unlock(&p->lock);
        if (!stopping)
            LOG_WARN("component=proxy msg=\"connection refused: too many connections\" max=%u",
                     p->max_connections);
        close(fd);
        return stopping ? -ESHUTDOWN : -EBUSY;
    }
    p->active++;
    pthread_mutex_unlock(&p->lock);

    pc = calloc(1, sizeof(*pc));
    if (!pc) {
        rc = -ENOMEM;
        goto out;
    }
    pc->p = p;
    pc->fd = fd;
    pc->g.fd = fd;
    pc->gbuf = malloc(GBUF_CAP);
    pc->ubuf = malloc(UBUF_CAP);
    pc->tmp = malloc(CHUNK);
    pc->wbuf = malloc(WBUF_CAP);
    pc->cbuf = p->creds ? malloc(WBUF_CAP) : NULL;
    if (!pc->gbuf || !pc->ubuf || !pc->tmp || !pc->wbuf || (p->creds && !pc->cbuf)) {
        rc = -ENOMEM;
        goto out;
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
        rc = -errno;
        goto out;
    }
    pthread_mutex_lock(&p->lock);
    pc->next = p->conns;
    if (p->conns)
        p->conns->prev = pc;
    p->conns = pc;
    pthread_mutex_unlock(&p->lock);

    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_t th;
    int e = pthread_create(&th, &attr, conn_main, pc);
    pthread_attr_destroy(&attr);
    if (e != 0) {
        pthread_mutex_lock(&p->lock);
        if (pc->prev)
            pc->prev->next = pc->next;
        else
            p->conns = pc->next;
        if (pc->next)
            pc->next->prev = pc->prev;
        pthread_mutex_unlock(&p->lock);
        LOG_ERR("component=proxy msg=\"cannot start connection thread\" err=%d", e);
        rc = -e;
        goto out;
    }
    return 0;
out:
    if (pc) {
        pc->fd = -1;
        conn_free(pc);
    }
    close(fd);
    pthread_mutex_lock(&p->lock);
    p->active--;
    pthread_cond_broadcast(&p->idle);
    pthread_mutex_unlock(&p->lock);
    return rc;
}

unsigned mitm_proxy_active(struct mitm_proxy *p)
{
    pthread_mutex_lock(&p->lock);
    unsigned n = p->active;
    pthread_mutex_unlock(&p->lock);
    return n;
}

void mitm_proxy_destroy(struct mitm_proxy *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    p->stopping = true;
    for (struct pconn *pc = p->conns; pc; pc = pc->next)
        shutdown(pc->fd, SHUT_RDWR);
    pthread_mutex_unlock(&p->lock);
    upstream_pool_shutdown(p->ups);
    pthread_mutex_lock(&p->lock);
    while (p->active > 0)
        pthread_cond_wait(&p->idle, &p->lock);
    pthread_mutex_unlock(&p->lock);
    /* No connection is left to queue more: the worker sinks what is queued, then ends. */
    if (p->has_worker) {
        pthread_mutex_lock(&p->mq_lock);
        p->mq_stop = true;
        pthread_cond_signal(&p->mq_work);
        pthread_mutex_unlock(&p->mq_lock);
        pthread_join(p->worker, NULL);
    }
    upstream_pool_destroy(p->ups);
    SSL_CTX_free(p->client_ctx);
    pthread_cond_destroy(&p->mq_done);
    pthread_cond_destroy(&p->mq_space);
    pthread_cond_destroy(&p->mq_work);
    pthread_mutex_destroy(&p->mq_lock);
    pthread_cond_destroy(&p->idle);
    pthread_mutex_destroy(&p->lock);
    free(p);
}
