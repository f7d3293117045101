/*
 * unit.mitm.proxy: the proxy engine against a fake guest. Each test makes a
 * socketpair as the vsock connection, writes the CNET header and then
 * speaks TLS as a client that trusts the proxy's CA (or plain HTTP), while
 * real upstream servers run on loopback threads: HTTPS with a leaf from a
 * second CA (trusted through upstream_ca_file, reached through resolve
 * overrides for "api.test:443"), HTTPS with a leaf from a CA nobody trusts,
 * and plain HTTP. Every case checks what the guest receives and the
 * net_event the recording sink got. Bad input: a bad CNET header is closed
 * without an answer or an event; malformed HTTP gets a 400, an oversized
 * head a 431, both then closed, with a block event naming the error; no
 * server name at all closes the handshake with a block event "no server
 * name"; an unreachable or unverifiable upstream gives a 502 whose body and
 * event say why. Model calls: the recording sink's model op can be held at a
 * gate, which holds the proxy's model worker, to show that a connection's
 * next request never waits for the previous call's finishing, that calls come
 * out in request order, that a full queue holds the connection back without
 * dropping a call, and that drain and destroy wait for every queued call.
 */
#include "proxy.h"

#include "creds.h"
#include "dns.h"
#include "http.h"
#include "log.h"
#include "policy.h"
#include "tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ftw.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

/* ---- time ---- */

static int64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ---- recording sink ---- */

struct rec_event {
    char method[16], host[64], path[128], query[128], error[256], rule[64], process[65];
    char tls_version[16], req_headers[512], resp_preview[256];
    bool has_method, has_error, has_rule, has_req_headers, has_tls_version;
    int status;
    int64_t pid, req_bytes, resp_bytes, ttfb_us, duration_us;
    uint16_t port;
    enum decision decision;
};

#define REC_MAX 64
static pthread_mutex_t rec_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t rec_cond = PTHREAD_COND_INITIALIZER;
static struct rec_event rec[REC_MAX];
static size_t nrec;
static size_t net_total; /* every net event, also past REC_MAX */

static void copy_str(char *dst, size_t len, const char *src, bool *has)
{
    if (has)
        *has = src != NULL;
    snprintf(dst, len, "%s", src ? src : "");
}

/* A secret no event may hold (whole fields checked, before any truncation); NULL = none. */
static const char *rec_secret;
static bool rec_leaked;

static bool holds(const char *field, const char *secret)
{
    return field && secret && strstr(field, secret);
}

static void rec_net(void *opaque, const struct net_event *ev)
{
    (void)opaque;
    pthread_mutex_lock(&rec_lock);
    const char *fields[] = {ev->method,      ev->host,         ev->path,        ev->query,
                            ev->error,       ev->rule,         ev->req_headers, ev->resp_headers,
                            ev->req_preview, ev->resp_preview, ev->process};
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
        rec_leaked |= holds(fields[i], rec_secret);
    net_total++;
    if (nrec < REC_MAX) {
        struct rec_event *r = &rec[nrec++];
        memset(r, 0, sizeof(*r));
        copy_str(r->method, sizeof(r->method), ev->method, &r->has_method);
        copy_str(r->host, sizeof(r->host), ev->host, NULL);
        copy_str(r->path, sizeof(r->path), ev->path, NULL);
        copy_str(r->query, sizeof(r->query), ev->query, NULL);
        copy_str(r->error, sizeof(r->error), ev->error, &r->has_error);
        copy_str(r->rule, sizeof(r->rule), ev->rule, &r->has_rule);
        copy_str(r->process, sizeof(r->process), ev->process, NULL);
        copy_str(r->tls_version, sizeof(r->tls_version), ev->tls_version, &r->has_tls_version);
        copy_str(r->req_headers, sizeof(r->req_headers), ev->req_headers, &r->has_req_headers);
        copy_str(r->resp_preview, sizeof(r->resp_preview), ev->resp_preview, NULL);
        r->status = ev->status;
        r->pid = ev->pid;
        r->req_bytes = ev->req_bytes;
        r->resp_bytes = ev->resp_bytes;
        r->ttfb_us = ev->ttfb_us;
        r->duration_us = ev->duration_us;
        r->port = ev->port;
        r->decision = ev->decision;
    }
    pthread_cond_broadcast(&rec_cond);
    pthread_mutex_unlock(&rec_lock);
}

/* Model calls, as the proxy reports them through the sink's model op. */
struct rec_model {
    char provider[16], api[16], model[64], status[16], host[64], path[64], process[65];
    char tool_name[32], tool_id[32], tool_args[64];
    int http_status;
    int64_t input_tokens, output_tokens, ttft_us, pid, message_count;
    size_t n_tool_calls;
    bool stream, cost_known;
    int turn;
};
#define RECM_MAX 128
static struct rec_model recm[RECM_MAX];
static size_t nrecm;
/*
 * The model op's gate: while closed, the op waits inside the sink (holding up
 * the proxy's model worker), so tests can see what happens meanwhile.
 */
static bool model_gate_closed;
static int model_in_sink; /* model ops waiting at the gate */

static void gate_set(bool closed)
{
    pthread_mutex_lock(&rec_lock);
    model_gate_closed = closed;
    pthread_cond_broadcast(&rec_cond);
    pthread_mutex_unlock(&rec_lock);
}

static void rec_model_call(void *opaque, const struct model_call *mc)
{
    (void)opaque;
    pthread_mutex_lock(&rec_lock);
    model_in_sink++;
    pthread_cond_broadcast(&rec_cond);
    while (model_gate_closed)
        pthread_cond_wait(&rec_cond, &rec_lock);
    model_in_sink--;
    if (nrecm < RECM_MAX) {
        struct rec_model *r = &recm[nrecm++];
        memset(r, 0, sizeof(*r));
        copy_str(r->provider, sizeof(r->provider), mc->provider, NULL);
        copy_str(r->api, sizeof(r->api), mc->api, NULL);
        copy_str(r->model, sizeof(r->model), mc->model_answered, NULL);
        copy_str(r->status, sizeof(r->status), mc->status, NULL);
        copy_str(r->host, sizeof(r->host), mc->host, NULL);
        copy_str(r->path, sizeof(r->path), mc->path, NULL);
        copy_str(r->process, sizeof(r->process), mc->process, NULL);
        r->n_tool_calls = mc->n_tool_calls;
        if (mc->n_tool_calls) {
            copy_str(r->tool_name, sizeof(r->tool_name), mc->tool_calls[0].name, NULL);
            copy_str(r->tool_id, sizeof(r->tool_id), mc->tool_calls[0].id, NULL);
            copy_str(r->tool_args, sizeof(r->tool_args), mc->tool_calls[0].arguments, NULL);
        }
        r->http_status = mc->http_status;
        r->input_tokens = mc->input_tokens;
        r->output_tokens = mc->output_tokens;
        r->ttft_us = mc->ttft_us;
        r->pid = mc->pid;
        r->message_count = mc->message_count;
        r->stream = mc->stream;
        r->cost_known = mc->cost_known;
        r->turn = mc->turn;
    }
    pthread_cond_broadcast(&rec_cond);
    pthread_mutex_unlock(&rec_lock);
}

static const struct sink_ops rec_ops = {.net = rec_net, .model = rec_model_call};

/* Wait (up to 10 s) until n events have arrived; returns the count then. */
static size_t wait_events(size_t n)
{
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 10;
    pthread_mutex_lock(&rec_lock);
    while (nrec < n && pthread_cond_timedwait(&rec_cond, &rec_lock, &dl) == 0)
        ;
    size_t got = nrec;
    pthread_mutex_unlock(&rec_lock);
    return got;
}

/* ---- upstream servers on loopback ---- */

/* SSE send times, stamped by the upstream just before each event is written. */
#define SSE_EVENTS 100
static int64_t sse_sent_us[SSE_EVENTS];

struct upsrv {
    int lfd;
    int port;
    SSL_CTX *ctx; /* NULL: plain HTTP */
    pthread_t th;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int conns; /* handler threads running */
    int accepted;
};

struct sconn {
    struct upsrv *s;
    int fd;
    SSL *ssl;
};

static ssize_t s_read(struct sconn *c, void *buf, size_t len)
{
    if (c->ssl) {
        size_t n = 0;
        if (SSL_read_ex(c->ssl, buf, len, &n) == 1)
            return (ssize_t)n;
        return 0;
    }
    ssize_t n = recv(c->fd, buf, len, 0);
    return n < 0 ? 0 : n;
}

static bool s_write(struct sconn *c, const void *buf, size_t len)
{
    if (c->ssl) {
        size_t n = 0;
        return SSL_write_ex(c->ssl, buf, len, &n) == 1;
    }
    const char *p = buf;
    while (len) {
        ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);
        if (n <= 0)
            return false;
        p += n;
        len -= (size_t)n;
    }
    return true;
}

static bool s_printf(struct sconn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static bool s_printf(struct sconn *c, const char *fmt, ...)
{
    char buf[4096];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    return n > 0 && (size_t)n < sizeof(buf) && s_write(c, buf, (size_t)n);
}

struct bodycap {
    char data[65536];
    size_t len;
};

static void bodycap_add(void *opaque, const uint8_t *p, size_t len)
{
    struct bodycap *b = opaque;
    if (len > sizeof(b->data) - b->len)
        len = sizeof(b->data) - b->len;
    memcpy(b->data + b->len, p, len);
    b->len += len;
}

/* The credentials the last request to /keys carried, as the upstream received them. */
static pthread_mutex_t keys_lock = PTHREAD_MUTEX_INITIALIZER;
static char keys_seen[4096];

static void keys_note(const struct http_head *h)
{
    static const char *const names[] = {"x-api-key", "authorization", "x-goog-api-key"};
    char line[4096];
    size_t o = 0;
    int n = snprintf(line, sizeof(line), "target=%.*s", (int)h->target.len, h->target.p);
    o = n > 0 ? (size_t)n : 0;
    for (size_t i = 0; i < 3 && o < sizeof(line); i++) {
        const struct http_header *hd = http_find_header(h, names[i]);
        if (hd)
            n = snprintf(line + o, sizeof(line) - o, ";%s=%.*s", names[i], (int)hd->value.len,
                         hd->value.p);
        else
            n = 0;
        o += n > 0 ? (size_t)n : 0;
    }
    pthread_mutex_lock(&keys_lock);
    snprintf(keys_seen, sizeof(keys_seen), "%s", line);
    pthread_mutex_unlock(&keys_lock);
}

/* Serve requests on one connection: routes by path. */
static void *sconn_main(void *arg)
{
    struct sconn *c = arg;
    char *hb = malloc(70000);
    struct bodycap *body = malloc(sizeof(*body));
    size_t hl = 0;
    if (c->ssl && SSL_accept(c->ssl) != 1)
        goto out;
    for (;;) {
        struct http_head h;
        long r;
        while ((r = http_parse_head(hb, hl, true, &h, NULL)) == 0) {
            ssize_t n = s_read(c, hb + hl, 70000 - hl);
            if (n <= 0)
                goto out;
            hl += (size_t)n;
        }
        if (r < 0)
            goto out;
        char path[256];
        snprintf(path, sizeof(path), "%.*s", (int)h.target.len, h.target.p);
        if (strncmp(path, "/hello", 6) != 0 && strchr(path, '?'))
            *strchr(path, '?') = '\0'; /* routes below match the path alone */
        bool keep = h.keep_alive;
        bool ws = h.upgrade;
        const struct http_header *hh = http_find_header(&h, "host");
        char host[128];
        snprintf(host, sizeof(host), "%.*s", hh ? (int)hh->value.len : 0, hh ? hh->value.p : "");
        bool has_conn = http_find_header(&h, "connection") != NULL;
        if (strncmp(path, "/keys", 5) == 0)
            keys_note(&h);
        bool expect = h.expect_continue;
        struct http_body b;
        http_body_init(&b, http_body_kind(&h, (struct http_str){NULL, 0}), h.content_length);
        memmove(hb, hb + r, hl - (size_t)r);
        hl -= (size_t)r;
        if (expect) {
            if (!s_printf(c, "HTTP/1.1 100 Continue\r\n\r\n"))
                goto out;
        }
        body->len = 0;
        while (b.kind != HTTP_BODY_NONE && !b.done &&
               !(b.kind == HTTP_BODY_LENGTH && b.remaining == 0)) {
            if (hl == 0) {
                ssize_t n = s_read(c, hb, 70000);
                if (n <= 0)
                    goto out;
                hl = (size_t)n;
            }
            long m = http_body_feed(&b, (const uint8_t *)hb, hl, bodycap_add, body);
            if (m < 0)
                goto out;
            memmove(hb, hb + m, hl - (size_t)m);
            hl -= (size_t)m;
        }
        body->data[body->len < sizeof(body->data) ? body->len : sizeof(body->data) - 1] = '\0';
        if (strncmp(path, "/hello", 6) == 0) {
            if (!s_printf(c,
                          "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 11\r\n"
                          "X-Upstream-Host: %s\r\nX-Saw-Connection: %s\r\n\r\nhello world",
                          host, has_conn ? "yes" : "no"))
                goto out;
        } else if (strcmp(path, "/v1/messages") == 0 && strstr(body->data, "\"stream\":true")) {
            /* An Anthropic streamed answer, one SSE event per chunk. */
            static const char *const evs[] = {
                "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":"
                "\"msg_s\",\"model\":\"claude-test-1\",\"usage\":{\"input_tokens\":21,"
                "\"output_tokens\":1}}}\n\n",
                "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,"
                "\"delta\":{\"type\":\"text_delta\",\"text\":\"hi\"}}\n\n",
                "event: message_delta\ndata: "
                "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":"
                "\"end_turn\"},\"usage\":{\"output_tokens\":9}}\n\n",
                "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
            };
            if (!s_printf(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                             "Transfer-Encoding: chunked\r\n\r\n"))
                goto out;
            for (size_t i = 0; i < sizeof(evs) / sizeof(evs[0]); i++)
                if (!s_printf(c, "%zx\r\n%s\r\n", strlen(evs[i]), evs[i]))
                    goto out;
            if (!s_printf(c, "0\r\n\r\n"))
                goto out;
        } else if (strcmp(path, "/v1/messages") == 0) {
            static const char js[] =
                "{\"id\":\"msg_1\",\"type\":\"message\",\"model\":\"claude-test-1\","
                "\"content\":[{\"type\":\"tool_use\",\"id\":\"toolu_1\",\"name\":\"bash\","
                "\"input\":{\"cmd\":\"ls\"}}],\"stop_reason\":\"tool_use\","
                "\"usage\":{\"input_tokens\":12,\"output_tokens\":5}}";
            if (!s_printf(c,
                          "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                          "Content-Length: %zu\r\n\r\n%s",
                          sizeof(js) - 1, js))
                goto out;
        } else if (strcmp(path, "/keys") == 0) {
            if (!s_printf(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
                goto out;
        } else if (strcmp(path, "/stall") == 0) {
            usleep(1500000); /* never answers in time, then hangs up */
            goto out;
        } else if (strcmp(path, "/echo") == 0) {
            if (!s_printf(c, "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n", body->len) ||
                !s_write(c, body->data, body->len))
                goto out;
        } else if (strcmp(path, "/sse") == 0) {
            if (!s_printf(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                             "Transfer-Encoding: chunked\r\n\r\n"))
                goto out;
            for (int i = 0; i < SSE_EVENTS; i++) {
                char ev[64];
                int n = snprintf(ev, sizeof(ev), "data: %d\n\n", i);
                sse_sent_us[i] = mono_us();
                if (!s_printf(c, "%x\r\n%s\r\n", n, ev))
                    goto out;
                usleep(10000);
            }
            if (!s_printf(c, "0\r\n\r\n"))
                goto out;
        } else if (strcmp(path, "/ws") == 0 && ws) {
            if (!s_printf(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                             "Connection: Upgrade\r\n\r\n"))
                goto out;
            for (;;) { /* echo raw bytes until the client closes */
                char e[4096];
                ssize_t n = hl ? (ssize_t)hl : s_read(c, e, sizeof(e));
                if (hl) {
                    memcpy(e, hb, hl);
                    hl = 0;
                }
                if (n <= 0 || !s_write(c, e, (size_t)n))
                    goto out;
            }
        } else {
            if (!s_printf(c, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"))
                goto out;
        }
        if (!keep)
            break;
    }
out:
    free(hb);
    free(body);
    if (c->ssl)
        SSL_free(c->ssl);
    close(c->fd);
    pthread_mutex_lock(&c->s->lock);
    c->s->conns--;
    pthread_cond_broadcast(&c->s->cond);
    pthread_mutex_unlock(&c->s->lock);
    free(c);
    return NULL;
}

static void *srv_main(void *arg)
{
    struct upsrv *s = arg;
    for (;;) {
        int fd = accept(s->lfd, NULL, NULL);
        if (fd < 0)
            return NULL; /* shut down */
        int one = 1;     /* as real streaming servers do: no Nagle wait per SSE event */
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        struct sconn *c = calloc(1, sizeof(*c));
        c->s = s;
        c->fd = fd;
        if (s->ctx) {
            c->ssl = SSL_new(s->ctx);
            SSL_set_fd(c->ssl, fd);
        }
        pthread_mutex_lock(&s->lock);
        s->conns++;
        s->accepted++;
        pthread_mutex_unlock(&s->lock);
        pthread_t th;
        pthread_attr_t a;
        pthread_attr_init(&a);
        pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
        pthread_create(&th, &a, sconn_main, c);
        pthread_attr_destroy(&a);
    }
}

static int listen_loopback(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(fd, 64), 0);
    socklen_t sl = sizeof(a);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &sl), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

/* Start a server; certs NULL = plain HTTP, else a leaf for `name` from certs. */
static struct upsrv *srv_start(struct mitm_certs *certs, const char *name)
{
    struct upsrv *s = calloc(1, sizeof(*s));
    assert_non_null(s);
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cond, NULL);
    if (certs) {
        X509 *cert = NULL;
        EVP_PKEY *key = NULL;
        assert_int_equal(mitm_certs_get(certs, name, &cert, &key), 0);
        s->ctx = SSL_CTX_new(TLS_server_method());
        assert_non_null(s->ctx);
        assert_int_equal(SSL_CTX_use_certificate(s->ctx, cert), 1);
        assert_int_equal(SSL_CTX_use_PrivateKey(s->ctx, key), 1);
        X509_free(cert);
        EVP_PKEY_free(key);
    }
    s->lfd = listen_loopback(&s->port);
    assert_int_equal(pthread_create(&s->th, NULL, srv_main, s), 0);
    return s;
}

static void srv_stop(struct upsrv *s)
{
    shutdown(s->lfd, SHUT_RDWR);
    pthread_join(s->th, NULL);
    close(s->lfd);
    pthread_mutex_lock(&s->lock);
    while (s->conns > 0)
        pthread_cond_wait(&s->cond, &s->lock);
    pthread_mutex_unlock(&s->lock);
    SSL_CTX_free(s->ctx);
    pthread_cond_destroy(&s->cond);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

/* ---- fixture ---- */

struct fx {
    char home[64];
    struct mitm_ca *ca, *upca, *badca;
    struct mitm_certs *certs, *upcerts, *badcerts;
    char upca_file[128];
    struct upsrv *api, *bad, *plain;
    int refused_port; /* a loopback port nobody listens on */
    struct policy_store *store;
    struct dns_pool *pool;
    struct mitm_proxy *proxy;
    SSL_CTX *gctx; /* the fake guest's client context: trusts the proxy CA */
};

static struct fx *F;

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* Build a policy: default allow, rule "no-blocked" blocks /blocked on api.test, plus `extra`. */
static struct policy *make_policy(const char *extra_rules)
{
    char doc[2048];
    snprintf(doc, sizeof(doc),
             "{\"network\":{\"default\":\"allow\",\"rules\":["
             "{\"id\":\"no-blocked\",\"domain\":\"api.test\",\"paths\":[\"/blocked\"],"
             "\"action\":\"block\"},"
             "{\"id\":\"watch-log\",\"domain\":\"api.test\",\"paths\":[\"/hello/log\"],"
             "\"action\":\"log\"}%s],"
             "\"upstream\":{\"resolve\":{\"api.test:443\":\"127.0.0.1:%d\","
             "\"bad.test:443\":\"127.0.0.1:%d\",\"down.test:443\":\"127.0.0.1:%d\","
             "\"plain.test:8080\":\"127.0.0.1:%d\"}}}}",
             extra_rules, F->api->port, F->bad->port, F->refused_port, F->plain->port);
    json_error_t je;
    json_t *j = json_loads(doc, 0, &je);
    if (!j)
        fail_msg("bad test policy JSON: %s", je.text);
    struct policy *p = NULL;
    char err[256] = "";
    int r = policy_build(NULL, NULL, j, "test", &p, err, sizeof(err));
    json_decref(j);
    if (r != 0)
        fail_msg("policy_build: %s", err);
    return p;
}

static struct mitm_ca *open_ca(const char *sub)
{
    char dir[128], err[256] = "";
    snprintf(dir, sizeof(dir), "%s/%s", F->home, sub);
    struct mitm_ca *ca = NULL;
    if (mitm_ca_open(dir, &ca, err, sizeof(err)) != 0)
        fail_msg("mitm_ca_open %s: %s", dir, err);
    return ca;
}

static int group_setup(void **state)
{
    (void)state;
    log_init("test", LOG_ERR);
    F = calloc(1, sizeof(*F));
    snprintf(F->home, sizeof(F->home), "/tmp/capsem-proxy-XXXXXX");
    if (!mkdtemp(F->home))
        return -1;
    F->ca = open_ca("ca");
    F->upca = open_ca("upca");
    F->badca = open_ca("badca");
    snprintf(F->upca_file, sizeof(F->upca_file), "%s/upca/ca.crt", F->home);
    if (mitm_certs_create(F->ca, 64, &F->certs) || mitm_certs_create(F->upca, 8, &F->upcerts) ||
        mitm_certs_create(F->badca, 8, &F->badcerts))
        return -1;
    F->api = srv_start(F->upcerts, "api.test");
    F->bad = srv_start(F->badcerts, "bad.test");
    F->plain = srv_start(NULL, NULL);
    int rfd = listen_loopback(&F->refused_port);
    close(rfd); /* nobody listens there now: connect is refused */

    F->gctx = SSL_CTX_new(TLS_client_method());
    BIO *bio = BIO_new_mem_buf(mitm_ca_pem(F->ca), -1);
    X509 *cacert = PEM_read_bio_X509(bio, NULL, NULL, NULL);
    BIO_free(bio);
    if (!cacert)
        return -1;
    X509_STORE_add_cert(SSL_CTX_get_cert_store(F->gctx), cacert);
    X509_free(cacert);
    SSL_CTX_set_verify(F->gctx, SSL_VERIFY_PEER, NULL);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    srv_stop(F->api);
    srv_stop(F->bad);
    srv_stop(F->plain);
    SSL_CTX_free(F->gctx);
    mitm_certs_free(F->certs);
    mitm_certs_free(F->upcerts);
    mitm_certs_free(F->badcerts);
    mitm_ca_free(F->ca);
    mitm_ca_free(F->upca);
    mitm_ca_free(F->badca);
    nftw(F->home, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    free(F);
    return 0;
}

/* A fresh proxy, policy and sink for every test. */
static int setup(void **state)
{
    (void)state;
    pthread_mutex_lock(&rec_lock);
    nrec = 0;
    nrecm = 0;
    net_total = 0;
    model_gate_closed = false;
    model_in_sink = 0;
    pthread_mutex_unlock(&rec_lock);
    if (policy_store_create(make_policy(""), &F->store) != 0)
        return -1;
    if (dns_pool_create(&F->pool) != 0)
        return -1;
    struct mitm_proxy_config cfg = {
        .policy = F->store,
        .certs = F->certs,
        .pool = F->pool,
        .sink = {.ops = &rec_ops},
        .upstream_ca_file = F->upca_file,
        .connect_timeout_ms = 5000,
        .idle_timeout_ms = 10000,
    };
    char err[256] = "";
    if (mitm_proxy_create(&cfg, &F->proxy, err, sizeof(err)) != 0) {
        fprintf(stderr, "mitm_proxy_create: %s\n", err);
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    gate_set(false); /* a failed test must not leave the model worker waiting */
    mitm_proxy_destroy(F->proxy);
    F->proxy = NULL;
    policy_store_destroy(F->store);
    dns_pool_free(F->pool);
    return 0;
}

/* ---- the fake guest ---- */

struct guest {
    int fd;
    SSL *ssl;
    char rbuf[70000]; /* bytes read but not yet used */
    size_t rlen;
};

/* The CNET header for dport/daddr with process "curl", pid 4242. */
static size_t cnet_header(uint8_t *h, uint16_t dport, uint32_t daddr_host_order)
{
    const char *name = "curl";
    memcpy(h, "CNET", 4);
    h[4] = 1;
    h[5] = 4;
    h[6] = (uint8_t)(dport >> 8);
    h[7] = (uint8_t)dport;
    h[8] = (uint8_t)(daddr_host_order >> 24);
    h[9] = (uint8_t)(daddr_host_order >> 16);
    h[10] = (uint8_t)(daddr_host_order >> 8);
    h[11] = (uint8_t)daddr_host_order;
    h[12] = 0;
    h[13] = 0;
    h[14] = 0x10;
    h[15] = 0x92; /* 4242 */
    h[16] = 0;
    h[17] = (uint8_t)strlen(name);
    memcpy(h + 18, name, strlen(name));
    return 18 + strlen(name);
}

/* Connect a fake guest: writes `pre` (a CNET header) and hands the other end to the proxy. */
static struct guest *guest_raw(const uint8_t *pre, size_t prelen)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    struct timeval tv = {.tv_sec = 10};
    setsockopt(sv[0], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(sv[0], SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (prelen)
        assert_int_equal(write(sv[0], pre, prelen), (ssize_t)prelen);
    assert_int_equal(mitm_proxy_serve(F->proxy, sv[1]), 0);
    struct guest *g = calloc(1, sizeof(*g));
    g->fd = sv[0];
    return g;
}

/* A guest connection to dport (daddr in host order); TLS with `sni` (NULL = none) when tls. */
static struct guest *guest_open_at(bool tls, const char *sni, const char *verify_name,
                                   uint16_t dport, uint32_t daddr)
{
    uint8_t h[96];
    size_t hl = cnet_header(h, dport, daddr);
    struct guest *g = guest_raw(h, hl);
    if (tls) {
        g->ssl = SSL_new(F->gctx);
        SSL_set_fd(g->ssl, g->fd);
        if (sni)
            SSL_set_tlsext_host_name(g->ssl, sni);
        if (verify_name)
            SSL_set1_host(g->ssl, verify_name);
    }
    return g;
}

static struct guest *guest_open(void)
{
    struct guest *g = guest_open_at(true, "api.test", "api.test", 443, 0x0a000001);
    assert_int_equal(SSL_connect(g->ssl), 1);
    return g;
}

static void guest_close(struct guest *g)
{
    if (g->ssl) {
        SSL_shutdown(g->ssl);
        SSL_free(g->ssl);
    }
    close(g->fd);
    free(g);
}

static void g_write(struct guest *g, const void *p, size_t len)
{
    if (g->ssl) {
        size_t n = 0;
        assert_int_equal(SSL_write_ex(g->ssl, p, len, &n), 1);
        return;
    }
    assert_int_equal(write(g->fd, p, len), (ssize_t)len);
}

static void g_puts(struct guest *g, const char *s)
{
    g_write(g, s, strlen(s));
}

/* Read more bytes into rbuf; returns the count, 0 at EOF or error. */
static size_t g_fill(struct guest *g)
{
    if (g->rlen >= sizeof(g->rbuf))
        return 0;
    if (g->ssl) {
        size_t n = 0;
        if (SSL_read_ex(g->ssl, g->rbuf + g->rlen, sizeof(g->rbuf) - g->rlen, &n) != 1)
            return 0;
        g->rlen += n;
        return n;
    }
    ssize_t n = read(g->fd, g->rbuf + g->rlen, sizeof(g->rbuf) - g->rlen);
    if (n <= 0)
        return 0;
    g->rlen += (size_t)n;
    return (size_t)n;
}

/* True when the proxy has closed the connection (nothing more to read). */
static bool g_eof(struct guest *g)
{
    return g->rlen == 0 && g_fill(g) == 0;
}

struct resp {
    int status;
    char headers[4096]; /* the head as received */
    struct bodycap body;
};

/* Read one response (head and body); for_method "HEAD" means no body. */
static void g_response(struct guest *g, struct resp *r, const char *req_method)
{
    memset(r, 0, sizeof(*r));
    struct http_head h;
    long hl;
    while ((hl = http_parse_head(g->rbuf, g->rlen, false, &h, NULL)) == 0)
        if (g_fill(g) == 0)
            fail_msg("connection closed before a response head (%zu bytes)", g->rlen);
    assert_true(hl > 0);
    r->status = h.status;
    snprintf(r->headers, sizeof(r->headers), "%.*s", (int)hl, g->rbuf);
    struct http_body b;
    http_body_init(&b, http_body_kind(&h, (struct http_str){req_method, strlen(req_method)}),
                   h.content_length);
    memmove(g->rbuf, g->rbuf + hl, g->rlen - (size_t)hl);
    g->rlen -= (size_t)hl;
    while (b.kind != HTTP_BODY_NONE && !b.done &&
           !(b.kind == HTTP_BODY_LENGTH && b.remaining == 0)) {
        if (g->rlen == 0 && g_fill(g) == 0) {
            if (b.kind == HTTP_BODY_CLOSE)
                break;
            fail_msg("connection closed in a response body");
        }
        long m = http_body_feed(&b, (const uint8_t *)g->rbuf, g->rlen, bodycap_add, &r->body);
        assert_true(m >= 0);
        memmove(g->rbuf, g->rbuf + m, g->rlen - (size_t)m);
        g->rlen -= (size_t)m;
    }
    r->body.data[r->body.len < sizeof(r->body.data) ? r->body.len : sizeof(r->body.data) - 1] =
        '\0';
}

static bool has_header(const struct resp *r, const char *line)
{
    return strstr(r->headers, line) != NULL;
}

static struct rec_event event_at(size_t i)
{
    pthread_mutex_lock(&rec_lock);
    struct rec_event e = rec[i];
    pthread_mutex_unlock(&rec_lock);
    return e;
}

/* ---- tests ---- */

static void test_serve_get_allowed(void **state)
{
    (void)state;
    struct guest *g = guest_open();
    g_puts(g, "GET /hello?x=1&api_key=sekrit HTTP/1.1\r\nHost: api.test\r\n"
              "User-Agent: t\r\nAuthorization: Bearer sekrit\r\nConnection: keep-alive\r\n\r\n");
    struct resp r;
    g_response(g, &r, "GET");
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body.data, "hello world");
    /* Hop-by-hop Connection was not forwarded; Host was, unchanged. */
    assert_true(has_header(&r, "X-Saw-Connection: no"));
    assert_true(has_header(&r, "X-Upstream-Host: api.test"));
    assert_int_equal(wait_events(1), 1);
    struct rec_event e = event_at(0);
    assert_string_equal(e.method, "GET");
    assert_string_equal(e.host, "api.test");
    assert_int_equal(e.port, 443);
    assert_string_equal(e.path, "/hello");
    assert_non_null(strstr(e.query, "x=1"));
    assert_null(strstr(e.query, "sekrit"));
    assert_int_equal(e.status, 200);
    assert_int_equal(e.decision, DECISION_ALLOW);
    assert_false(e.has_rule);
    assert_false(e.has_error);
    assert_string_equal(e.process, "curl");
    assert_int_equal(e.pid, 4242);
    assert_true(e.has_tls_version);
    assert_int_equal(strncmp(e.tls_version, "TLSv1.", 6), 0);
    assert_int_equal(e.resp_bytes, 11);
    assert_int_equal(e.req_bytes, 0);
    assert_true(e.ttfb_us >= 0);
    assert_true(e.duration_us >= e.ttfb_us);
    assert_true(e.has_req_headers);
    assert_non_null(strstr(e.req_headers, "user-agent"));
    assert_null(strstr(e.req_headers, "sekrit"));
    assert_string_equal(e.resp_preview, "hello world");
    guest_close(g);
}

static void test_serve_post_bodies(void **state)
{
    (void)state;
    struct guest *g = guest_open();
    g_puts(g, "POST /echo HTTP/1.1\r\nHost: api.test\r\nContent-Length: 12\r\n\r\nhello, there");
    struct resp r;
    g_response(g, &r, "POST");
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body.data, "hello, there");
    /* Chunked, in pieces, on the same keep-alive connection. */
    g_puts(g, "POST /echo HTTP/1.1\r\nHost: api.test\r\nTransfer-Encoding: chunked\r\n\r\n");
    g_puts(g, "5\r\nhello\r\n");
    usleep(20000);
    g_puts(g, "6\r\n world\r\n0\r\n\r\n");
    g_response(g, &r, "POST");
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body.data, "hello world");
    assert_int_equal(wait_events(2), 2);
    assert_int_equal(event_at(0).req_bytes, 12);
    assert_int_equal(event_at(1).req_bytes, 11);
    assert_int_equal(event_at(1).resp_bytes, 11);
    guest_close(g);
}

static void test_serve_blocked(void **state)
{
    (void)state;
    struct guest *g = guest_open();
    g_puts(g, "GET /blocked/x HTTP/1.1\r\nHost: api.test\r\n\r\n");
    struct resp r;
    g_response(g, &r, "GET");
    assert_int_equal(r.status, 403);
    assert_non_null(strstr(r.body.data, "no-blocked"));
    assert_non_null(strstr(r.body.data, "api.test"));
    /* Keep-alive survives a block of a request without a body. */
    g_puts(g, "GET /hello HTTP/1.1\r\nHost: api.test\r\n\r\n");
    g_response(g, &r, "GET");
    assert_int_equal(r.status, 200);
    assert_int_equal(wait_events(2), 2);
    struct rec_event e = event_at(0);
    assert_int_equal(e.decision, DECISION_BLOCK);
    assert_string_equal(e.rule, "no-blocked");
    assert_int_equal(e.status, 403);
    assert_string_equal(e.path, "/blocked/x");
    /* A log rule forwards and marks. */
    g_puts(g, "GET /hello/log HTTP/1.1\r\nHost: api.test\r\n\r\n");
    g_response(g, &r, "GET");
    assert_int_equal(r.status, 200);
    assert_int_equal(wait_events(3), 3);
    assert_int_equal(event_at(2).decision, DECISION_LOG);
    assert_string_equal(event_at(2).rule, "watch-log");
    guest_close(g);
}

static void test_serve_policy_changes_between_requests(void **state)
{
    (void)state;
    struct guest *g = guest_open();
    struct resp r;
    g_puts(g, "GET /hello HTTP/1.1\r\nHost: api.test\r\n\r\n");
    g_response(g, &r, "GET");
    assert_int_equal(r.status, 200);
    policy_store_set(F->store,
                     make_policy(",{\"id\":\"no-hello\",\"domain\":\"api.test\",\"paths\":"
                                 "[\"/hello\"],\"action\":\"block\"}"));
    g_puts(g, "GET /hello HTTP/1.1\r\nHost: api.test\r\n\r\n");
    g_response(g, &r, "GET");
    assert_int_equal(r.status, 403);
    assert_non_null(strstr(r.body.data, "no-hello"));
    assert_int_equal(wait_events(2), 2);
    assert_int_equal(event_at(1).decision, DECISION_BLOCK);
    assert_string_equal(event_at(1).rule, "no-hello");
    guest_close(g);
}

static void test_serve_upstream_refused(void **state)
{
    (void)state;
    struct guest *g = guest_open_at(true, "down.test", "down.test", 443, 0x0a000001);
    assert_int_equal(SSL_connect(g->ssl), 1);
    g_puts(g, "GET / HTTP/1.1\r\nHost: down.test\r\n\r\n");
    struct resp r;
    g_response(g, &r, "GET");
    assert_int_equal(r.status, 502);
    assert_non_null(strstr(r.body.data, "upstream down.test:443: connection refused"));
    assert_int_equal(wait_events(1), 1);
    struct rec_event e = event_at(0);
    assert_int_equal(e.status, 502);
    assert_int_equal(e.decision, DECISION_ALLOW);
    assert_string_equal(e.error, "upstream down.test:443: connection refused");
    guest_close(g);
}

static void test_serve_upstream_bad_cert(void **state)
{
    (void)state;
    struct guest *g = guest_open_at(true, "bad.test", "bad.test", 443, 0x0a000001);
    assert_int_equal(SSL_connect(g->ssl), 1);
    g_puts(g, "GET / HTTP/1.1\r\nHost: bad.test\r\n\r\n");
    struct resp r;
    g_response(g, &r, "GET");
    assert_int_equal(r.status, 502);
    assert_non_null(strstr(r.body.data, "certificate verify failed"));
    assert_non_null(strstr(r.body.data, "bad.test:443"));
    assert_int_equal(wait_events(1), 1);
    assert_non_null(strstr(event_at(0).error, "certificate verify failed"));
    guest_close(g);
}

struct sse_state {
    char line[64];
    size_t len;
    int next;
    int64_t got_us[SSE_EVENTS];
    bool order_ok;
};

static void sse_data(void *opaque, const uint8_t *p, size_t len)
{
    struct sse_state *s = opaque;
    for (size_t i = 0; i < len; i++) {
        if (s->len < sizeof(s->line) - 1)
            s->line[s->len++] = (char)p[i];
        if (s->len >= 2 && s->line[s->len - 1] == '\n' && s->line[s->len - 2] == '\n') {
            s->line[s->len] = '\0';
            char want[32];
            snprintf(want, sizeof(want), "data: %d\n\n", s->next);
            if (strcmp(s->line, want) != 0 || s->next >= SSE_EVENTS)
                s->order_ok = false;
            else
                s->got_us[s->next++] = mono_us();
            s->len = 0;
        }
    }
}

static void test_serve_sse_streams_each_event(void **state)
{
    (void)state;
    struct guest *g = guest_open();
    g_puts(g, "GET /sse HTTP/1.1\r\nHost: api.test\r\nAccept: text/event-stream\r\n\r\n");
    struct http_head h;
    long hl;
    while ((hl = http_parse_head(g->rbuf, g->rlen, false, &h, NULL)) == 0)
        assert_true(g_fill(g) > 0);
    assert_int_equal(h.status, 200);
    struct http_body b;
    http_body_init(&b, http_body_kind(&h, (struct http_str){"GET", 3}), h.content_length);
    assert_int_equal(b.kind, HTTP_BODY_CHUNKED);
    struct sse_state *s = calloc(1, sizeof(*s));
    s->order_ok = true;
    size_t off = (size_t)hl;
    while (!b.done) {
        if (off == g->rlen) {
            g->rlen = off = 0;
            assert_true(g_fill(g) > 0);
        }
        long m = http_body_feed(&b, (const uint8_t *)g->rbuf + off, g->rlen - off, sse_data, s);
        assert_true(m >= 0);
        off += (size_t)m;
    }
    assert_true(s->order_ok);
    assert_int_equal(s->next, SSE_EVENTS);
    /* Not all at the end: the first arrived long before the last was sent, and most
     * arrived soon after their own send (loose bounds: this is a shared machine). */
    assert_true(s->got_us[0] < sse_sent_us[SSE_EVENTS - 1] - 500000);
    int prompt = 0;
    int64_t worst = 0;
    for (int i = 0; i < SSE_EVENTS; i++) {
        int64_t lag = s->got_us[i] - sse_sent_us[i];
        if (lag < 50000)
            prompt++;
        if (lag > worst)
            worst = lag;
    }
    print_message("sse: %d/%d events within 50 ms of their send, worst lag %lld us\n", prompt,
                  SSE_EVENTS, (long long)worst);
    assert_true(prompt >= SSE_EVENTS / 2);
    free(s);
    guest_close(g);
}

static void test_serve_expect_continue(void **state)
{
    (void)state;
    struct guest *g = guest_open();
    g_puts(g, "POST /echo HTTP/1.1\r\nHost: api.test\r\nContent-Length: 5\r\n"
              "Expect: 100-continue\r\n\r\n");
    struct resp r;
    g_response(g, &r, "POST");
    assert_int_equal(r.status, 100);
    g_puts(g, "abcde");
    g_response(g, &r, "POST");
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body.data, "abcde");
    assert_int_equal(wait_events(1), 1);
    assert_int_equal(event_at(0).status, 200);
    assert_int_equal(event_at(0).req_bytes, 5);
    guest_close(g);
}

static void test_serve_websocket_echo(void **state)
{
    (void)state;
    struct guest *g = guest_open();
    g_puts(g, "GET /ws HTTP/1.1\r\nHost: api.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n");
    struct resp r;
    g_response(g, &r, "GET");
    assert_int_equal(r.status, 101);
    assert_true(has_header(&r, "Upgrade: websocket"));
    for (int i = 0; i < 3; i++) {
        char msg[32];
        snprintf(msg, sizeof(msg), "frame-%d", i);
        g_puts(g, msg);
        while (g->rlen < strlen(msg))
            assert_true(g_fill(g) > 0);
        assert_memory_equal(g->rbuf, msg, strlen(msg));
        g->rlen = 0;
    }
    guest_close(g);
    assert_int_equal(wait_events(1), 1);
    assert_int_equal(event_at(0).status, 101);
    assert_int_equal(event_at(0).req_bytes, 21);
    assert_int_equal(event_at(0).resp_bytes, 21);
}

static void test_serve_plain_http_host(void **state)
{
    (void)state;
    struct guest *g = guest_open_at(false, NULL, NULL, 8080, 0x0a000001);
    g_puts(g, "GET /hello HTTP/1.1\r\nHost: plain.test:8080\r\n\r\n");
    struct resp r;
    g_response(g, &r, "GET");
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body.data, "hello world");
    assert_int_equal(wait_events(1), 1);
    struct rec_event e = event_at(0);
    assert_string_equal(e.host, "plain.test");
    assert_false(e.has_tls_version);
    assert_int_equal(e.status, 200);
    /* Absolute form goes upstream in origin form. */
    g_puts(g, "GET http://plain.test:8080/hello HTTP/1.1\r\nHost: plain.test:8080\r\n\r\n");
    g_response(g, &r, "GET");
    assert_int_equal(r.status, 200);
    guest_close(g);
}

static void test_serve_plain_http_host_loopback_refused(void **state)
{
    (void)state;
    /* Default allow, no override: a Host naming the host itself still never reaches it. */
    struct guest *g = guest_open_at(false, NULL, NULL, 80, 0x0a000001);
    char req[128];
    snprintf(req, sizeof(req), "GET /hello HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n", F->plain->port);
    g_puts(g, req);
    struct resp r;
    g_response(g, &r, "GET");
    assert_int_equal(r.status, 502);
    assert_non_null(strstr(r.body.data, "loopback"));
    assert_int_equal(wait_events(1), 1);
    assert_non_null(strstr(event_at(0).error, "loopback"));
    guest_close(g);
}

static void test_serve_no_sni_pool_name(void **state)
{
    (void)state;
    struct in_addr a;
    assert_int_equal(dns_pool_assign(F->pool, "api.test", &a), 0);
    struct guest *g = guest_open_at(true, NULL, "api.test", 443, ntohl(a.s_addr));
    assert_int_equal(SSL_connect(g->ssl), 1);
    g_puts(g, "GET /hello HTTP/1.1\r\nHost: api.test\r\n\r\n");
    struct resp r;
    g_response(g, &r, "GET");
    assert_int_equal(r.status, 200);
    assert_int_equal(wait_events(1), 1);
    assert_string_equal(event_at(0).host, "api.test");
    guest_close(g);
}

static void test_serve_no_sni_no_name(void **state)
{
    (void)state;
    struct guest *g = guest_open_at(true, NULL, NULL, 443, 0x0a000001);
    assert_int_not_equal(SSL_connect(g->ssl), 1);
    ERR_clear_error();
    assert_int_equal(wait_events(1), 1);
    struct rec_event e = event_at(0);
    assert_int_equal(e.decision, DECISION_BLOCK);
    assert_string_equal(e.error, "no server name");
    assert_false(e.has_method);
    guest_close(g);
}

static void test_serve_bad_cnet_header(void **state)
{
    (void)state;
    uint8_t h[96];
    size_t hl = cnet_header(h, 443, 0x0a000001);
    const struct {
        int off;
        uint8_t val;
    } bad[] = {{0, 'X'}, {4, 2}, {5, 6}, {17, 65}};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint8_t c[96];
        memcpy(c, h, hl);
        c[bad[i].off] = bad[i].val;
        struct guest *g = guest_raw(c, hl);
        assert_true(g_eof(g));
        guest_close(g);
    }
    /* Short: the guest closes after 10 bytes. */
    struct guest *g = guest_raw(h, 10);
    shutdown(g->fd, SHUT_WR);
    assert_true(g_eof(g));
    guest_close(g);
    usleep(50000);
    assert_int_equal(wait_events(0), 0); /* no event for a connection without a header */
}

static void test_serve_malformed_request(void **state)
{
    (void)state;
    struct guest *g = guest_open();
    g_puts(g, "GET / HTTP/1.1\r\nHost api.test\r\n\r\n");
    struct resp r;
    g_response(g, &r, "GET");
    assert_int_equal(r.status, 400);
    assert_true(has_header(&r, "Connection: close"));
    assert_true(g_eof(g));
    assert_int_equal(wait_events(1), 1);
    assert_int_equal(event_at(0).status, 400);
    assert_int_equal(event_at(0).decision, DECISION_BLOCK);
    assert_non_null(strstr(event_at(0).error, "bad request"));
    guest_close(g);
}

static void test_serve_oversized_head(void **state)
{
    (void)state;
    struct guest *g = guest_open();
    g_puts(g, "GET / HTTP/1.1\r\nHost: api.test\r\n");
    char line[1024];
    memset(line, 'a', sizeof(line));
    memcpy(line, "X-Pad: ", 7);
    line[sizeof(line) - 2] = '\r';
    line[sizeof(line) - 1] = '\n';
    for (int i = 0; i < 66; i++)
        g_write(g, line, sizeof(line));
    struct resp r;
    g_response(g, &r, "GET");
    assert_int_equal(r.status, 431);
    assert_true(g_eof(g));
    assert_int_equal(wait_events(1), 1);
    assert_int_equal(event_at(0).status, 431);
    guest_close(g);
}

static void test_serve_host_differs_from_sni(void **state)
{
    (void)state;
    struct guest *g = guest_open();
    /* Decided on the SNI name and sent to its upstream; Host itself is passed on as sent. */
    g_puts(g, "GET /hello HTTP/1.1\r\nHost: elsewhere.test\r\n\r\n");
    struct resp r;
    g_response(g, &r, "GET");
    assert_int_equal(r.status, 200);
    assert_true(has_header(&r, "X-Upstream-Host: elsewhere.test"));
    assert_int_equal(wait_events(1), 1);
    assert_string_equal(event_at(0).host, "api.test");
    guest_close(g);
}

static void test_serve_reuses_upstream_connection(void **state)
{
    (void)state;
    pthread_mutex_lock(&F->api->lock);
    int before = F->api->accepted;
    pthread_mutex_unlock(&F->api->lock);
    for (int i = 0; i < 3; i++) { /* three guest connections, one after another */
        struct guest *g = guest_open();
        g_puts(g, "GET /hello HTTP/1.1\r\nHost: api.test\r\n\r\n");
        struct resp r;
        g_response(g, &r, "GET");
        assert_int_equal(r.status, 200);
        guest_close(g);
        assert_int_equal(wait_events((size_t)i + 1), (size_t)i + 1);
    }
    pthread_mutex_lock(&F->api->lock);
    int made = F->api->accepted - before;
    pthread_mutex_unlock(&F->api->lock);
    assert_int_equal(made, 1);
}

static void test_serve_idle_timeouts(void **state)
{
    (void)state;
    mitm_proxy_destroy(F->proxy);
    struct mitm_proxy_config cfg = {
        .policy = F->store,
        .certs = F->certs,
        .sink = {.ops = &rec_ops},
        .upstream_ca_file = F->upca_file,
        .idle_timeout_ms = 300,
    };
    char err[256] = "";
    assert_int_equal(mitm_proxy_create(&cfg, &F->proxy, err, sizeof(err)), 0);
    /* An upstream that never answers: a 502 saying so, in bounded time. */
    struct guest *g = guest_open();
    int64_t t0 = mono_us();
    g_puts(g, "GET /stall HTTP/1.1\r\nHost: api.test\r\n\r\n");
    struct resp r;
    g_response(g, &r, "GET");
    assert_int_equal(r.status, 502);
    assert_non_null(strstr(r.body.data, "upstream api.test:443: no response within 300 ms"));
    assert_true(mono_us() - t0 < 1400000);
    assert_true(g_eof(g));
    guest_close(g);
    /* A guest that stops half way through a head, and one that says nothing at all. */
    g = guest_open();
    g_puts(g, "GET /hello HTTP/1.1\r\nHo");
    assert_true(g_eof(g));
    guest_close(g);
    g = guest_open();
    assert_true(g_eof(g));
    guest_close(g);
    /* A guest that stops in the middle of a body. */
    g = guest_open();
    g_puts(g, "POST /echo HTTP/1.1\r\nHost: api.test\r\nContent-Length: 10\r\n\r\nabc");
    g_response(g, &r, "POST");
    assert_int_equal(r.status, 408);
    assert_non_null(strstr(r.body.data, "guest sent nothing for 300 ms"));
    assert_true(g_eof(g));
    guest_close(g);
    assert_int_equal(wait_events(2), 2);
}

static void test_serve_refuses_over_max_connections(void **state)
{
    (void)state;
    mitm_proxy_destroy(F->proxy);
    struct mitm_proxy_config cfg = {
        .policy = F->store,
        .certs = F->certs,
        .sink = {.ops = &rec_ops},
        .upstream_ca_file = F->upca_file,
        .max_connections = 1,
    };
    char err[256] = "";
    assert_int_equal(mitm_proxy_create(&cfg, &F->proxy, err, sizeof(err)), 0);
    struct guest *g = guest_open();
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    assert_int_equal(mitm_proxy_serve(F->proxy, sv[1]), -EBUSY);
    char c;
    assert_int_equal(read(sv[0], &c, 1), 0); /* the refused fd was closed */
    close(sv[0]);
    assert_int_equal(mitm_proxy_active(F->proxy), 1);
    guest_close(g);
}

/* api.test speaks the Anthropic API in these tests. */
static const struct model_host test_model_hosts[] = {{"api.test", MODEL_PROVIDER_ANTHROPIC},
                                                     {NULL, MODEL_PROVIDER_NONE}};

static size_t wait_models(size_t n)
{
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 10;
    pthread_mutex_lock(&rec_lock);
    while (nrecm < n && pthread_cond_timedwait(&rec_cond, &rec_lock, &dl) == 0)
        ;
    size_t got = nrecm;
    pthread_mutex_unlock(&rec_lock);
    return got;
}

static void test_serve_model_calls_reported(void **state)
{
    (void)state;
    mitm_proxy_destroy(F->proxy);
    struct trace_table *traces = NULL;
    assert_int_equal(trace_table_create(0, &traces), 0);
    struct mitm_proxy_config cfg = {
        .policy = F->store,
        .certs = F->certs,
        .sink = {.ops = &rec_ops},
        .upstream_ca_file = F->upca_file,
        .model_hosts = test_model_hosts,
        .traces = traces,
    };
    char err[256] = "";
    assert_int_equal(mitm_proxy_create(&cfg, &F->proxy, err, sizeof(err)), 0);
    struct guest *g = guest_open();
    static const char req1[] = "{\"model\":\"claude-test-1\",\"max_tokens\":10,"
                               "\"messages\":[{\"role\":\"user\",\"content\":\"list\"}]}";
    char buf[1024];
    snprintf(buf, sizeof(buf),
             "POST /v1/messages HTTP/1.1\r\nHost: api.test\r\nContent-Type: application/json\r\n"
             "Content-Length: %zu\r\n\r\n%s",
             sizeof(req1) - 1, req1);
    g_puts(g, buf);
    struct resp r;
    g_response(g, &r, "POST");
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body.data, "toolu_1")); /* forwarded unchanged */
    assert_int_equal(wait_models(1), 1);
    /* The tool result goes back, chunked and streamed: the same trace, one turn later. */
    static const char req2[] = "{\"model\":\"claude-test-1\",\"stream\":true,\"messages\":["
                               "{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\","
                               "\"tool_use_id\":\"toolu_1\",\"content\":\"a b\"}]}]}";
    g_puts(g, "POST /v1/messages?beta=true HTTP/1.1\r\nHost: api.test\r\n"
              "Transfer-Encoding: chunked\r\n\r\n");
    snprintf(buf, sizeof(buf), "%zx\r\n%s\r\n0\r\n\r\n", sizeof(req2) - 1, req2);
    g_puts(g, buf);
    g_response(g, &r, "POST");
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body.data, "message_stop"));
    assert_int_equal(wait_models(2), 2);
    pthread_mutex_lock(&rec_lock);
    struct rec_model m1 = recm[0], m2 = recm[1];
    pthread_mutex_unlock(&rec_lock);
    assert_string_equal(m1.provider, "anthropic");
    assert_string_equal(m1.api, "messages");
    assert_string_equal(m1.model, "claude-test-1");
    assert_string_equal(m1.host, "api.test");
    assert_string_equal(m1.path, "/v1/messages");
    assert_string_equal(m1.process, "curl");
    assert_int_equal(m1.pid, 4242);
    assert_int_equal(m1.http_status, 200);
    assert_int_equal(m1.input_tokens, 12);
    assert_int_equal(m1.output_tokens, 5);
    assert_int_equal(m1.n_tool_calls, 1);
    assert_string_equal(m1.tool_name, "bash");
    assert_string_equal(m1.tool_id, "toolu_1");
    assert_false(m1.stream);
    assert_false(m1.cost_known); /* no price table given */
    assert_int_equal(m1.turn, 1);
    assert_true(m2.stream);
    assert_int_equal(m2.input_tokens, 21);
    assert_int_equal(m2.output_tokens, 9);
    assert_string_equal(m2.status, "ok");
    assert_true(m2.ttft_us >= 0);
    assert_int_equal(m2.turn, 2);
    /* Other paths on the host are not model calls; the net events are there as always. */
    g_puts(g, "GET /hello HTTP/1.1\r\nHost: api.test\r\n\r\n");
    g_response(g, &r, "GET");
    assert_int_equal(wait_events(3), 3);
    guest_close(g);
    mitm_proxy_destroy(F->proxy); /* before the trace table it borrows; sinks what is queued */
    F->proxy = NULL;
    trace_table_destroy(traces);
    pthread_mutex_lock(&rec_lock);
    size_t models = nrecm;
    pthread_mutex_unlock(&rec_lock);
    assert_int_equal(models, 2);
}

/* ---- model calls finished on the proxy's worker ---- */

/* Replace the fixture's proxy with one that parses api.test as Anthropic; returns its traces. */
static struct trace_table *proxy_with_models(void)
{
    mitm_proxy_destroy(F->proxy);
    F->proxy = NULL;
    struct trace_table *traces = NULL;
    assert_int_equal(trace_table_create(0, &traces), 0);
    struct mitm_proxy_config cfg = {
        .policy = F->store,
        .certs = F->certs,
        .pool = F->pool,
        .sink = {.ops = &rec_ops},
        .upstream_ca_file = F->upca_file,
        .connect_timeout_ms = 5000,
        .idle_timeout_ms = 10000,
        .model_hosts = test_model_hosts,
        .traces = traces,
    };
    char err[256] = "";
    assert_int_equal(mitm_proxy_create(&cfg, &F->proxy, err, sizeof(err)), 0);
    return traces;
}

/*
 * Send a JSON (non-streamed) messages request carrying `nmsg` messages (the
 * last a result for toolu_1 when `tool_result`) and read the answer.
 */
static int model_request(struct guest *g, int nmsg, bool tool_result)
{
    char body[8192], buf[9000];
    size_t o = 0;
    int n = snprintf(body, sizeof(body), "{\"model\":\"claude-test-1\",\"messages\":[");
    o = (size_t)n;
    for (int i = 0; i < nmsg; i++) {
        bool last = i == nmsg - 1;
        n = snprintf(body + o, sizeof(body) - o, "%s{\"role\":\"user\",\"content\":%s}",
                     i ? "," : "",
                     last && tool_result ? "[{\"type\":\"tool_result\",\"tool_use_id\":"
                                           "\"toolu_1\",\"content\":\"ok\"}]"
                                         : "\"m\"");
        assert_true(n > 0 && (size_t)n < sizeof(body) - o);
        o += (size_t)n;
    }
    n = snprintf(body + o, sizeof(body) - o, "]}");
    assert_true(n > 0 && (size_t)n < sizeof(body) - o);
    o += (size_t)n;
    n = snprintf(buf, sizeof(buf),
                 "POST /v1/messages HTTP/1.1\r\nHost: api.test\r\n"
                 "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
                 o, body);
    assert_true(n > 0 && (size_t)n < sizeof(buf));
    g_puts(g, buf);
    struct resp r;
    g_response(g, &r, "POST");
    return r.status;
}

/* Wait (up to 10 s) until `n` model ops wait at the closed gate; returns the count then. */
static int wait_in_sink(int n)
{
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 10;
    pthread_mutex_lock(&rec_lock);
    while (model_in_sink < n && pthread_cond_timedwait(&rec_cond, &rec_lock, &dl) == 0)
        ;
    int got = model_in_sink;
    pthread_mutex_unlock(&rec_lock);
    return got;
}

struct drainer {
    pthread_t th;
    bool done;          /* under rec_lock */
    size_t models_then; /* nrecm when drain returned */
};

static void *drain_main(void *arg)
{
    struct drainer *d = arg;
    mitm_proxy_drain(F->proxy);
    pthread_mutex_lock(&rec_lock);
    d->done = true;
    d->models_then = nrecm;
    pthread_mutex_unlock(&rec_lock);
    return NULL;
}

/*
 * The first call's finishing and sinking are held (the gate): the next
 * requests on the same keep-alive connection are answered all the same, the
 * calls come out in request order once the gate opens (the third, a tool
 * result, joins a trace one turn later), and drain returns only after the
 * last one is sunk.
 */
static void test_serve_model_finish_off_connection_thread(void **state)
{
    (void)state;
    struct trace_table *traces = proxy_with_models();
    gate_set(true);
    struct guest *g = guest_open();
    assert_int_equal(model_request(g, 1, false), 200);
    assert_int_equal(wait_in_sink(1), 1); /* the worker holds call 1 inside the sink */
    /* With call 1 still unfinished, the same connection serves two more requests. */
    assert_int_equal(model_request(g, 2, false), 200);
    assert_int_equal(model_request(g, 3, true), 200);
    /* Answered on the same connection, so call 3 had been queued before it was read. */
    struct resp r;
    g_puts(g, "GET /hello HTTP/1.1\r\nHost: api.test\r\n\r\n");
    g_response(g, &r, "GET");
    assert_int_equal(r.status, 200);
    struct drainer d = {0};
    assert_int_equal(pthread_create(&d.th, NULL, drain_main, &d), 0);
    usleep(200000);
    pthread_mutex_lock(&rec_lock);
    bool early = d.done;
    size_t models = nrecm;
    pthread_mutex_unlock(&rec_lock);
    gate_set(false);
    pthread_join(d.th, NULL);
    assert_false(early); /* drain waited while calls were unsunk */
    assert_int_equal(models, 0);
    /* Drain returned with every call sunk (all three had ended before it was called). */
    assert_int_equal(d.models_then, 3);
    pthread_mutex_lock(&rec_lock);
    struct rec_model m[3] = {recm[0], recm[1], recm[2]};
    pthread_mutex_unlock(&rec_lock);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(m[i].message_count, i + 1); /* request order */
        assert_string_equal(m[i].host, "api.test");
        assert_string_equal(m[i].path, "/v1/messages");
        assert_string_equal(m[i].process, "curl");
        assert_int_equal(m[i].pid, 4242);
    }
    assert_int_equal(m[0].turn, 1);
    assert_int_equal(m[1].turn, 1);
    assert_int_equal(m[2].turn, 2); /* linked after the calls before it */
    guest_close(g);
    mitm_proxy_destroy(F->proxy);
    F->proxy = NULL;
    trace_table_destroy(traces);
}

struct gate_opener {
    pthread_t th;
    size_t at_net;                /* open once this many net events have come */
    size_t net_seen, models_seen; /* what had come 300 ms later, just before opening */
};

static void *gate_open_main(void *arg)
{
    struct gate_opener *o = arg;
    pthread_mutex_lock(&rec_lock);
    while (net_total < o->at_net)
        pthread_cond_wait(&rec_cond, &rec_lock);
    pthread_mutex_unlock(&rec_lock);
    usleep(300000);
    pthread_mutex_lock(&rec_lock);
    o->net_seen = net_total;
    o->models_seen = nrecm;
    model_gate_closed = false;
    pthread_cond_broadcast(&rec_cond);
    pthread_mutex_unlock(&rec_lock);
    return NULL;
}

/*
 * A full queue holds the connection back, drops nothing: with the worker held
 * in the sink by call 1 and 64 calls queued, the connection that ends call 66
 * waits for room (request 67 is not read meanwhile); once the worker moves,
 * all 70 calls are sunk, in order.
 */
static void test_serve_model_queue_full_waits(void **state)
{
    (void)state;
    struct trace_table *traces = proxy_with_models();
    gate_set(true);
    struct gate_opener o = {.at_net = 66};
    assert_int_equal(pthread_create(&o.th, NULL, gate_open_main, &o), 0);
    struct guest *g = guest_open();
    for (int i = 1; i <= 70; i++)
        assert_int_equal(model_request(g, i, false), 200);
    struct resp r; /* answered once call 70 is queued */
    g_puts(g, "GET /hello HTTP/1.1\r\nHost: api.test\r\n\r\n");
    g_response(g, &r, "GET");
    pthread_join(o.th, NULL);
    assert_int_equal(o.net_seen, 66); /* exchange 67 waited for room in the queue */
    assert_int_equal(o.models_seen, 0);
    mitm_proxy_drain(F->proxy);
    pthread_mutex_lock(&rec_lock);
    size_t models = nrecm;
    bool ordered = true;
    for (size_t i = 0; i < models; i++)
        ordered &= recm[i].message_count == (int64_t)i + 1;
    pthread_mutex_unlock(&rec_lock);
    assert_int_equal(models, 70);
    assert_true(ordered);
    guest_close(g);
    mitm_proxy_destroy(F->proxy);
    F->proxy = NULL;
    trace_table_destroy(traces);
}

struct destroyer {
    pthread_t th;
    bool done; /* under rec_lock */
};

static void *destroy_main(void *arg)
{
    struct destroyer *d = arg;
    mitm_proxy_destroy(F->proxy);
    pthread_mutex_lock(&rec_lock);
    d->done = true;
    pthread_mutex_unlock(&rec_lock);
    return NULL;
}

/*
 * Destroy with calls queued (the worker held in the sink by the first):
 * destroy waits, then every queued call is sunk, in order, and freed (the
 * ASan build checks that nothing leaks).
 */
static void test_destroy_sinks_queued_model_calls(void **state)
{
    (void)state;
    struct trace_table *traces = proxy_with_models();
    gate_set(true);
    struct guest *g1 = guest_open();
    struct guest *g2 = guest_open();
    assert_int_equal(model_request(g1, 1, false), 200);
    assert_int_equal(wait_in_sink(1), 1);
    assert_int_equal(model_request(g1, 2, false), 200);
    assert_int_equal(model_request(g2, 3, false), 200);
    assert_int_equal(wait_events(3), 3);
    guest_close(g1);
    struct destroyer d = {0};
    assert_int_equal(pthread_create(&d.th, NULL, destroy_main, &d), 0);
    assert_true(g_eof(g2)); /* destroy closed the open connection */
    guest_close(g2);
    usleep(200000);
    pthread_mutex_lock(&rec_lock);
    bool early = d.done;
    pthread_mutex_unlock(&rec_lock);
    gate_set(false);
    pthread_join(d.th, NULL);
    F->proxy = NULL;
    assert_false(early); /* destroy waited for the queued calls */
    pthread_mutex_lock(&rec_lock);
    size_t models = nrecm;
    int64_t c0 = recm[0].message_count, c1 = recm[1].message_count, c2 = recm[2].message_count;
    pthread_mutex_unlock(&rec_lock);
    assert_int_equal(models, 3);
    assert_int_equal(c0, 1);
    assert_int_equal(c1, 2);
    assert_int_equal(c2, 3);
    trace_table_destroy(traces);
}

/* ---- credential placeholders ---- */

#define REAL_KEY "sk-ant-real-SECRET-0123456789"
#define REAL_GKEY "AIzaREAL-gemini-SECRET"

static const char *cr_get(void *opaque, const char *name)
{
    (void)opaque;
    if (strcmp(name, "ANTHROPIC_API_KEY") == 0)
        return REAL_KEY;
    if (strcmp(name, "GEMINI_API_KEY") == 0)
        return REAL_GKEY;
    return NULL;
}

/* Replace the fixture's proxy with one whose creds table sends both keys to api.test only. */
static struct creds *proxy_with_creds(void)
{
    json_t *user = json_loads("{\"credentials\":{\"anthropic\":{\"hosts\":[\"api.test\"]},"
                              "\"gemini\":{\"hosts\":[\"api.test\"]}}}",
                              0, NULL);
    assert_non_null(user);
    struct creds *c = NULL;
    char err[256] = "";
    if (creds_build(NULL, NULL, user, "test", cr_get, NULL, &c, err, sizeof(err)) != 0)
        fail_msg("creds_build: %s", err);
    json_decref(user);
    mitm_proxy_destroy(F->proxy);
    F->proxy = NULL;
    struct mitm_proxy_config cfg = {
        .policy = F->store,
        .certs = F->certs,
        .pool = F->pool,
        .sink = {.ops = &rec_ops},
        .upstream_ca_file = F->upca_file,
        .connect_timeout_ms = 5000,
        .idle_timeout_ms = 10000,
        .creds = c,
    };
    assert_int_equal(mitm_proxy_create(&cfg, &F->proxy, err, sizeof(err)), 0);
    pthread_mutex_lock(&rec_lock);
    rec_secret = "SECRET";
    rec_leaked = false;
    pthread_mutex_unlock(&rec_lock);
    return c;
}

static void creds_done(struct creds *c)
{
    mitm_proxy_destroy(F->proxy); /* the table must outlive the proxy */
    F->proxy = NULL;
    creds_destroy(c);
    pthread_mutex_lock(&rec_lock);
    bool leaked = rec_leaked;
    rec_secret = NULL;
    pthread_mutex_unlock(&rec_lock);
    assert_false(leaked);
}

static void keys_seen_get(char *out, size_t len)
{
    pthread_mutex_lock(&keys_lock);
    snprintf(out, len, "%s", keys_seen);
    keys_seen[0] = '\0';
    pthread_mutex_unlock(&keys_lock);
}

/* The upstream gets the real key; the guest's bytes and the events only ever the placeholder. */
static void test_serve_creds_swapped(void **state)
{
    (void)state;
    struct creds *c = proxy_with_creds();
    const char *ph = creds_placeholder(c, CREDS_ANTHROPIC);
    const char *gph = creds_placeholder(c, CREDS_GEMINI);
    char req[1024], seen[4096], want[512];
    struct guest *g = guest_open();
    struct resp r;

    snprintf(req, sizeof(req),
             "POST /keys HTTP/1.1\r\nHost: api.test\r\nX-API-KEY: %s\r\n"
             "Content-Length: 5\r\n\r\nhello",
             ph);
    g_puts(g, req);
    g_response(g, &r, "POST");
    assert_int_equal(r.status, 200);
    keys_seen_get(seen, sizeof(seen));
    assert_non_null(strstr(seen, ";x-api-key=" REAL_KEY));
    assert_null(strstr(seen, "capsem-placeholder"));

    snprintf(req, sizeof(req),
             "GET /keys HTTP/1.1\r\nHost: api.test\r\nauthorization: bearer %s\r\n\r\n", ph);
    g_puts(g, req);
    g_response(g, &r, "GET");
    keys_seen_get(seen, sizeof(seen));
    assert_non_null(strstr(seen, ";authorization=bearer " REAL_KEY));

    snprintf(req, sizeof(req), "GET /keys HTTP/1.1\r\nHost: api.test\r\nx-goog-api-key: %s\r\n\r\n",
             gph);
    g_puts(g, req);
    g_response(g, &r, "GET");
    keys_seen_get(seen, sizeof(seen));
    assert_non_null(strstr(seen, ";x-goog-api-key=" REAL_GKEY));

    snprintf(req, sizeof(req), "GET /keys?alt=sse&key=%s HTTP/1.1\r\nHost: api.test\r\n\r\n", gph);
    g_puts(g, req);
    g_response(g, &r, "GET");
    keys_seen_get(seen, sizeof(seen));
    snprintf(want, sizeof(want), "target=/keys?alt=sse&key=%s", REAL_GKEY);
    assert_non_null(strstr(seen, want));

    /* Nothing the guest received holds a key (it was not echoed). */
    assert_null(strstr(r.headers, "SECRET"));
    assert_int_equal(wait_events(4), 4);
    for (size_t i = 0; i < 4; i++) {
        struct rec_event e = event_at(i);
        assert_int_equal(e.decision, DECISION_ALLOW);
        assert_int_equal(e.status, 200);
        assert_false(e.has_error);
    }
    assert_int_equal(event_at(0).req_bytes, 5); /* the body went on whole */
    guest_close(g);
    creds_done(c);
}

/* A placeholder to a host not its provider's: 403, block event, nothing sent upstream. */
static void test_serve_creds_wrong_host_blocked(void **state)
{
    (void)state;
    struct creds *c = proxy_with_creds();
    const char *ph = creds_placeholder(c, CREDS_ANTHROPIC);
    char req[1024], seen[4096];
    struct guest *g = guest_open_at(false, NULL, NULL, 8080, 0x0a000002);
    snprintf(req, sizeof(req),
             "GET /keys HTTP/1.1\r\nHost: plain.test:8080\r\nx-api-key: %s\r\n\r\n", ph);
    g_puts(g, req);
    struct resp r;
    g_response(g, &r, "GET");
    assert_int_equal(r.status, 403);
    assert_non_null(
        strstr(r.body.data,
               "credential placeholder sent to plain.test (the anthropic API key placeholder)"));
    assert_null(strstr(r.body.data, "SECRET"));
    /* The connection stays usable; a placeholder in any header counts. */
    snprintf(req, sizeof(req), "GET /keys HTTP/1.1\r\nHost: plain.test:8080\r\nX-Other: %s\r\n\r\n",
             ph);
    g_puts(g, req);
    g_response(g, &r, "GET");
    assert_int_equal(r.status, 403);
    /* Without a placeholder the same request goes through. */
    g_puts(g, "GET /keys HTTP/1.1\r\nHost: plain.test:8080\r\nx-api-key: mine\r\n\r\n");
    g_response(g, &r, "GET");
    assert_int_equal(r.status, 200);
    keys_seen_get(seen, sizeof(seen));
    assert_non_null(strstr(seen, ";x-api-key=mine"));
    assert_int_equal(wait_events(3), 3);
    for (size_t i = 0; i < 2; i++) {
        struct rec_event e = event_at(i);
        assert_int_equal(e.decision, DECISION_BLOCK);
        assert_int_equal(e.status, 403);
        assert_string_equal(e.error, "credential placeholder sent to plain.test");
        assert_string_equal(e.rule, "credentials");
    }
    assert_int_equal(event_at(2).decision, DECISION_ALLOW);
    guest_close(g);
    creds_done(c);
}

static void test_destroy_closes_open_connections(void **state)
{
    (void)state;
    struct guest *g1 = guest_open();
    struct guest *g2 = guest_open();
    g_puts(g2, "GET /hello HTTP/1.1\r\nHost: api.test\r\n\r\n");
    struct resp r;
    g_response(g2, &r, "GET");
    assert_int_equal(mitm_proxy_active(F->proxy), 2);
    mitm_proxy_destroy(F->proxy);
    F->proxy = NULL;
    assert_true(g_eof(g1));
    assert_true(g_eof(g2));
    guest_close(g1);
    guest_close(g2);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN); /* the upstream servers write to sockets the proxy may close */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_serve_get_allowed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_serve_post_bodies, setup, teardown),
        cmocka_unit_test_setup_teardown(test_serve_blocked, setup, teardown),
        cmocka_unit_test_setup_teardown(test_serve_policy_changes_between_requests, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_serve_upstream_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_serve_upstream_bad_cert, setup, teardown),
        cmocka_unit_test_setup_teardown(test_serve_sse_streams_each_event, setup, teardown),
        cmocka_unit_test_setup_teardown(test_serve_expect_continue, setup, teardown),
        cmocka_unit_test_setup_teardown(test_serve_websocket_echo, setup, teardown),
        cmocka_unit_test_setup_teardown(test_serve_plain_http_host, setup, teardown),
        cmocka_unit_test_setup_teardown(test_serve_plain_http_host_loopback_refused, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_serve_no_sni_pool_name, setup, teardown),
        cmocka_unit_test_setup_teardown(test_serve_no_sni_no_name, setup, teardown),
        cmocka_unit_test_setup_teardown(test_serve_bad_cnet_header, setup, teardown),
        cmocka_unit_test_setup_teardown(test_serve_malformed_request, setup, teardown),
        cmocka_unit_test_setup_teardown(test_serve_oversized_head, setup, teardown),
        cmocka_unit_test_setup_teardown(test_serve_host_differs_from_sni, setup, teardown),
        cmocka_unit_test_setup_teardown(test_serve_reuses_upstream_connection, setup, teardown),
        cmocka_unit_test_setup_teardown(test_serve_idle_timeouts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_serve_refuses_over_max_connections, setup, teardown),
        cmocka_unit_test_setup_teardown(test_serve_model_calls_reported, setup, teardown),
        cmocka_unit_test_setup_teardown(test_serve_model_finish_off_connection_thread, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_serve_model_queue_full_waits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_destroy_sinks_queued_model_calls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_serve_creds_swapped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_serve_creds_wrong_host_blocked, setup, teardown),
        cmocka_unit_test_setup_teardown(test_destroy_closes_open_connections, setup, teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
