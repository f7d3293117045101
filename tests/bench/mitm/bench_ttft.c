/*
 * Time to first token through the MITM proxy with model parsing on and off,
 * in one run. One HTTPS upstream on loopback (threads of this process, a
 * leaf for api.anthropic.com from a CA made in a temp dir) answers
 * POST /v1/messages with an Anthropic-shaped SSE stream: message_start,
 * content_block_start, ping and the first content_block_delta in one write,
 * then, after a pause, more deltas, message_delta (usage) and message_stop.
 * Two proxies share it through the policy's resolve override:
 *   off  a sink with a net op only, so no exchange is parsed;
 *   on   a sink with a model op, the price table and a trace table, so every
 *        exchange is parsed as it is forwarded and reported as a model_call
 *        (finished on the proxy's model worker, mitm/proxy.h).
 * One client connection per proxy (socketpair, CNET header, TLS trusting the
 * proxy's CA) sends the same request alternately through each (the order
 * swaps every pair), timing request sent -> first content_block_delta seen in
 * the de-chunked body, in two phases: "idle" (a pause before each request,
 * as when an agent's next call follows tool work) and "back to back" (the
 * next request right after the last answer, so whatever the proxy still does
 * for the previous exchange is in its way). Printed per phase: p50 and p99
 * for each, their differences and the median of the paired differences. The "on" model_calls are
 * checked (count, model, tokens, stop reason, cost): a wrong one fails the run. Not a test: numbers
 * only, plus that check.
 *
 * Usage: bench_ttft -p PRICING_JSON [-n PAIRS] [-r REQUEST_KIB] [-g GAP_US] [-w IDLE_US]
 */
#include "http.h"
#include "log.h"
#include "policy.h"
#include "pricing.h"
#include "proxy.h"
#include "tls.h"
#include "trace.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ftw.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define HOST "api.anthropic.com"
#define MODEL "claude-sonnet-4-5"
#define IN_TOKENS 2417
#define OUT_TOKENS 42
#define CACHE_READ 1024

enum mode { OFF, ON, NMODES };
static const char *const mode_names[NMODES] = {"off", "on"};

static char home[64] = "/tmp/capsem-bench-ttft-XXXXXX";
static SSL_CTX *up_srv_ctx;
static unsigned gap_us = 1000;
static unsigned idle_us = 5000; /* pause before each request of the idle phase */

/* What the "on" sink saw. */
static pthread_mutex_t seen_lock = PTHREAD_MUTEX_INITIALIZER;
static long model_calls, model_bad, net_events[NMODES];
static char first_bad[256];
static int64_t *proxy_ttft;
static size_t proxy_nttft, proxy_cap;

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void die(const char *what)
{
    fprintf(stderr, "bench_ttft: %s\n", what);
    ERR_print_errors_fp(stderr);
    exit(1);
}

static bool ssl_write_all(SSL *ssl, const void *p, size_t len)
{
    size_t n;
    return SSL_write_ex(ssl, p, len, &n) == 1;
}

/* ---- sinks ---- */

static void net_off(void *opaque, const struct net_event *ev)
{
    (void)opaque;
    (void)ev;
    pthread_mutex_lock(&seen_lock);
    net_events[OFF]++;
    pthread_mutex_unlock(&seen_lock);
}

static void net_on(void *opaque, const struct net_event *ev)
{
    (void)opaque;
    (void)ev;
    pthread_mutex_lock(&seen_lock);
    net_events[ON]++;
    pthread_mutex_unlock(&seen_lock);
}

static bool str_is(const char *s, const char *want)
{
    return s && strcmp(s, want) == 0;
}

static void model_on(void *opaque, const struct model_call *c)
{
    (void)opaque;
    /* sonnet-4-5: $3 input, $15 output, $0.30 cache read per million. */
    double cost = (IN_TOKENS * 3.0 + OUT_TOKENS * 15.0 + CACHE_READ * 0.3) / 1e6;
    char why[256] = "";
    if (!str_is(c->provider, "anthropic") || !str_is(c->api, "messages") || !c->stream)
        snprintf(why, sizeof(why), "provider/api/stream %s/%s/%d", c->provider ? c->provider : "-",
                 c->api ? c->api : "-", c->stream);
    else if (!str_is(c->model_requested, MODEL) || !str_is(c->model_answered, MODEL))
        snprintf(why, sizeof(why), "model %s / %s", c->model_requested ? c->model_requested : "-",
                 c->model_answered ? c->model_answered : "-");
    else if (c->input_tokens != IN_TOKENS || c->output_tokens != OUT_TOKENS ||
             c->cache_read_tokens != CACHE_READ)
        snprintf(why, sizeof(why), "tokens in %lld out %lld cache_read %lld",
                 (long long)c->input_tokens, (long long)c->output_tokens,
                 (long long)c->cache_read_tokens);
    else if (!str_is(c->status, "ok") || !str_is(c->stop_reason, "end_turn") || c->parse_error)
        snprintf(why, sizeof(why), "status %s stop %s parse_error %d", c->status ? c->status : "-",
                 c->stop_reason ? c->stop_reason : "-", c->parse_error);
    else if (!c->cost_known || c->cost_usd < cost * 0.999 || c->cost_usd > cost * 1.001)
        snprintf(why, sizeof(why), "cost %.9f (known %d), want %.9f", c->cost_usd, c->cost_known,
                 cost);
    else if (c->ttft_us < 0)
        snprintf(why, sizeof(why), "no ttft");
    pthread_mutex_lock(&seen_lock);
    model_calls++;
    if (why[0]) {
        if (!model_bad++)
            memcpy(first_bad, why, sizeof(why));
    } else if (proxy_nttft < proxy_cap) {
        proxy_ttft[proxy_nttft++] = c->ttft_us;
    }
    pthread_mutex_unlock(&seen_lock);
}

static const struct sink_ops ops_off = {.net = net_off};
static const struct sink_ops ops_on = {.net = net_on, .model = model_on};

/* ---- the upstream ---- */

/* Write one HTTP chunk holding `s`. */
static bool chunk(SSL *ssl, const char *s)
{
    char buf[4096];
    size_t len = strlen(s);
    int n = snprintf(buf, sizeof(buf), "%zx\r\n%s\r\n", len, s);
    return n > 0 && (size_t)n < sizeof(buf) && ssl_write_all(ssl, buf, (size_t)n);
}

static bool answer(SSL *ssl)
{
    static const char head[] =
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n"
        "Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n";
    char first[2048];
    snprintf(first, sizeof(first),
             "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":"
             "\"msg_bench\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"" MODEL "\","
             "\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{"
             "\"input_tokens\":%d,\"cache_creation_input_tokens\":0,"
             "\"cache_read_input_tokens\":%d,\"output_tokens\":1}}}\n\n"
             "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,"
             "\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n"
             "event: ping\ndata: {\"type\": \"ping\"}\n\n"
             "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,"
             "\"delta\":{\"type\":\"text_delta\",\"text\":\"Hello\"}}\n\n",
             IN_TOKENS, CACHE_READ);
    char rest[2048];
    snprintf(rest, sizeof(rest),
             "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,"
             "\"delta\":{\"type\":\"text_delta\",\"text\":\", world. This is a benchmark.\"}}\n\n"
             "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n"
             "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":"
             "\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":%d}}\n\n"
             "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
             OUT_TOKENS);
    char buf[8192];
    int n = snprintf(buf, sizeof(buf), "%s%zx\r\n%s\r\n", head, strlen(first), first);
    if (n <= 0 || (size_t)n >= sizeof(buf) || !ssl_write_all(ssl, buf, (size_t)n))
        return false;
    usleep(gap_us); /* the rest of the answer comes later */
    return chunk(ssl, rest) && ssl_write_all(ssl, "0\r\n\r\n", 5);
}

static void skip_body(void *opaque, const uint8_t *p, size_t len)
{
    (void)opaque;
    (void)p;
    (void)len;
}

static void *up_conn(void *arg)
{
    int fd = (int)(intptr_t)arg;
    SSL *ssl = SSL_new(up_srv_ctx);
    size_t cap = 1u << 20, len = 0;
    char *buf = malloc(cap);
    SSL_set_fd(ssl, fd);
    if (!buf || SSL_accept(ssl) != 1)
        goto out;
    for (;;) {
        struct http_head h;
        long hl;
        while ((hl = http_parse_head(buf, len, true, &h, NULL)) == 0) {
            size_t n;
            if (len == cap || SSL_read_ex(ssl, buf + len, cap - len, &n) != 1)
                goto out;
            len += n;
        }
        if (hl < 0)
            goto out;
        bool keep = h.keep_alive;
        struct http_body b;
        http_body_init(&b, http_body_kind(&h, h.method), h.content_length);
        memmove(buf, buf + hl, len - (size_t)hl);
        len -= (size_t)hl;
        while (!b.done && !(b.kind == HTTP_BODY_LENGTH && b.remaining == 0)) {
            size_t n;
            if (len == 0) {
                if (SSL_read_ex(ssl, buf, cap, &n) != 1)
                    goto out;
                len = n;
            }
            long m = http_body_feed(&b, (const uint8_t *)buf, len, skip_body, NULL);
            if (m < 0)
                goto out;
            memmove(buf, buf + m, len - (size_t)m);
            len -= (size_t)m;
        }
        if (!answer(ssl) || !keep)
            break;
    }
out:
    SSL_shutdown(ssl);
    SSL_free(ssl);
    close(fd);
    free(buf);
    return NULL;
}

static void *up_main(void *arg)
{
    int lfd = (int)(intptr_t)arg;
    for (;;) {
        int fd = accept(lfd, NULL, NULL);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            return NULL;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        pthread_t t;
        if (pthread_create(&t, NULL, up_conn, (void *)(intptr_t)fd) != 0)
            close(fd);
        else
            pthread_detach(t);
    }
}

/* ---- the client ---- */

struct bconn {
    int fd;
    SSL *ssl;
    char buf[64 * 1024];
    size_t len;
    char body[8192]; /* de-chunked response body so far */
    size_t blen;
    int64_t first_ns; /* when the first content_block_delta was complete */
};

static struct bconn *conn_open(struct mitm_proxy *p, SSL_CTX *ctx)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        return NULL;
    static const uint8_t hdr[] = {'C', 'N', 'E', 'T', 1, 4, 0x01, 0xbb, 10,  0,   0,  1,
                                  0,   0,   0,   7,   0, 5, 'b',  'e',  'n', 'c', 'h'};
    if (write(sv[0], hdr, sizeof(hdr)) != (ssize_t)sizeof(hdr) || mitm_proxy_serve(p, sv[1]) != 0) {
        close(sv[0]);
        return NULL;
    }
    struct bconn *c = calloc(1, sizeof(*c));
    if (!c)
        die("out of memory");
    c->fd = sv[0];
    c->ssl = SSL_new(ctx);
    SSL_set_fd(c->ssl, c->fd);
    SSL_set_tlsext_host_name(c->ssl, HOST);
    SSL_set1_host(c->ssl, HOST);
    if (SSL_connect(c->ssl) != 1)
        die("TLS to the proxy");
    return c;
}

static void conn_close(struct bconn *c)
{
    SSL_shutdown(c->ssl);
    SSL_free(c->ssl);
    close(c->fd);
    free(c);
}

static bool fill(struct bconn *c)
{
    size_t n;
    if (c->len == sizeof(c->buf) ||
        SSL_read_ex(c->ssl, c->buf + c->len, sizeof(c->buf) - c->len, &n) != 1)
        return false;
    c->len += n;
    return true;
}

/* De-chunked body bytes: note when the first content event is complete. */
static void on_body(void *opaque, const uint8_t *p, size_t len)
{
    struct bconn *c = opaque;
    if (c->first_ns)
        return;
    size_t k = len < sizeof(c->body) - c->blen ? len : sizeof(c->body) - c->blen;
    memcpy(c->body + c->blen, p, k);
    c->blen += k;
    static const char ev[] = "event: content_block_delta\n";
    char *at = memmem(c->body, c->blen, ev, sizeof(ev) - 1);
    if (at && memmem(at, c->blen - (size_t)(at - c->body), "\n\n", 2))
        c->first_ns = now_ns();
}

/*
 * POST the request on `c` and read the whole answer; the time from sending
 * to the first content event in ns, or -1.
 */
static int64_t exchange(struct bconn *c, const char *req, size_t req_len)
{
    c->blen = 0;
    c->first_ns = 0;
    int64_t t0 = now_ns();
    if (!ssl_write_all(c->ssl, req, req_len))
        return -1;
    struct http_head h;
    long hl;
    while ((hl = http_parse_head(c->buf, c->len, false, &h, NULL)) == 0)
        if (!fill(c))
            return -1;
    if (hl < 0 || h.status != 200)
        return -1;
    struct http_body b;
    http_body_init(&b, http_body_kind(&h, (struct http_str){"POST", 4}), h.content_length);
    memmove(c->buf, c->buf + hl, c->len - (size_t)hl);
    c->len -= (size_t)hl;
    while (!b.done && !(b.kind == HTTP_BODY_LENGTH && b.remaining == 0)) {
        if (c->len == 0 && !fill(c))
            return -1;
        long m = http_body_feed(&b, (const uint8_t *)c->buf, c->len, on_body, c);
        if (m < 0)
            return -1;
        memmove(c->buf, c->buf + m, c->len - (size_t)m);
        c->len -= (size_t)m;
    }
    return c->first_ns ? c->first_ns - t0 : -1;
}

/* An Anthropic streaming request whose body is about `kib` KiB of conversation. */
static char *make_request(size_t kib, size_t *out_len)
{
    size_t body_cap = kib * 1024 + 4096;
    char *body = malloc(body_cap);
    char *req = malloc(body_cap + 1024);
    if (!body || !req)
        die("out of memory");
    size_t n = (size_t)snprintf(body, body_cap,
                                "{\"model\":\"" MODEL "\",\"max_tokens\":1024,\"stream\":true,"
                                "\"system\":\"You are a coding agent.\",\"messages\":[");
    int i = 0;
    do {
        int k = snprintf(body + n, body_cap - n,
                         "%s{\"role\":\"%s\",\"content\":\"Message %d: please look at the file "
                         "src/main.c and tell me what the function on line %d does, then "
                         "suggest a smaller version of it.\"}",
                         i ? "," : "", i % 2 ? "assistant" : "user", i, i * 7);
        n += (size_t)k;
        i++;
    } while (n + 256 < kib * 1024);
    if (i % 2 == 0) /* the last message is the user's */
        n += (size_t)snprintf(body + n, body_cap - n, ",{\"role\":\"user\",\"content\":\"go\"}");
    n += (size_t)snprintf(body + n, body_cap - n, "]}");
    int hn = snprintf(req, 1024,
                      "POST /v1/messages HTTP/1.1\r\nHost: " HOST "\r\n"
                      "Content-Type: application/json\r\nAccept: text/event-stream\r\n"
                      "anthropic-version: 2023-06-01\r\nx-api-key: sk-ant-bench\r\n"
                      "Content-Length: %zu\r\n\r\n",
                      n);
    memcpy(req + hn, body, n);
    free(body);
    *out_len = (size_t)hn + n;
    return req;
}

/* ---- set-up ---- */

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static SSL_CTX *client_ctx_trusting(const char *pem_file)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx || SSL_CTX_load_verify_locations(ctx, pem_file, NULL) != 1)
        die("client context");
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    return ctx;
}

static int cmp64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* Sort v[0..n) and return its q-quantile (0..1) in µs. */
static double quant_us(int64_t *v, size_t n, double q)
{
    qsort(v, n, sizeof(*v), cmp64);
    size_t i = (size_t)((double)n * q);
    if (i >= n)
        i = n - 1;
    return (double)v[i] / 1e3;
}

int main(int argc, char **argv)
{
    size_t pairs = 1000, req_kib = 64;
    const char *pricing_file = NULL;
    int opt;
    while ((opt = getopt(argc, argv, "n:r:p:g:w:")) != -1) {
        if (opt == 'n')
            pairs = strtoul(optarg, NULL, 10);
        else if (opt == 'r')
            req_kib = strtoul(optarg, NULL, 10);
        else if (opt == 'p')
            pricing_file = optarg;
        else if (opt == 'w')
            idle_us = (unsigned)strtoul(optarg, NULL, 10);
        else if (opt == 'g')
            gap_us = (unsigned)strtoul(optarg, NULL, 10);
        else {
            fprintf(stderr, "usage: bench_ttft [-n PAIRS] [-r REQUEST_KIB] [-p PRICING_JSON] "
                            "[-g GAP_US] [-w IDLE_US]\n");
            return 2;
        }
    }
    if (!pricing_file || pairs == 0 || req_kib == 0 || req_kib > 4096) {
        fprintf(stderr, "bench_ttft: need -p PRICING_JSON, 1 <= PAIRS, 1 <= REQUEST_KIB <= 4096\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    log_init("bench", LOG_ERR);
    if (!mkdtemp(home))
        die("mkdtemp");

    char dir[160], err[256];
    struct pricing *prices = NULL;
    struct trace_table *traces = NULL;
    if (pricing_load_file(pricing_file, &prices, err, sizeof(err)) ||
        trace_table_create(0, &traces))
        die(err);

    /* Upstream: a CA of its own, a leaf for api.anthropic.com. */
    struct mitm_ca *upca = NULL, *pca = NULL;
    struct mitm_certs *upcerts = NULL, *pcerts = NULL;
    snprintf(dir, sizeof(dir), "%s/upca", home);
    if (mitm_ca_open(dir, &upca, err, sizeof(err)) || mitm_certs_create(upca, 4, &upcerts))
        die(err);
    X509 *cert;
    EVP_PKEY *key;
    if (mitm_certs_get(upcerts, HOST, &cert, &key))
        die("upstream leaf");
    up_srv_ctx = SSL_CTX_new(TLS_server_method());
    SSL_CTX_use_certificate(up_srv_ctx, cert);
    SSL_CTX_use_PrivateKey(up_srv_ctx, key);
    X509_free(cert);
    EVP_PKEY_free(key);
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(a);
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof(a)) || listen(lfd, 64) ||
        getsockname(lfd, (struct sockaddr *)&a, &sl))
        die("listen");
    pthread_t upt;
    pthread_create(&upt, NULL, up_main, (void *)(intptr_t)lfd);
    char upca_file[200];
    snprintf(upca_file, sizeof(upca_file), "%s/upca/ca.crt", home);

    /* Two proxies, one CA: allow everything, api.anthropic.com:443 -> the upstream. */
    snprintf(dir, sizeof(dir), "%s/ca", home);
    if (mitm_ca_open(dir, &pca, err, sizeof(err)) || mitm_certs_create(pca, 8, &pcerts))
        die(err);
    char doc[512];
    snprintf(doc, sizeof(doc),
             "{\"network\":{\"default\":\"allow\",\"upstream\":{\"resolve\":"
             "{\"" HOST ":443\":\"127.0.0.1:%d\"}}}}",
             ntohs(a.sin_port));
    json_t *j = json_loads(doc, 0, NULL);
    struct policy *pol = NULL;
    struct policy_store *store = NULL;
    if (!j || policy_build(NULL, NULL, j, "bench", &pol, err, sizeof(err)) ||
        policy_store_create(pol, &store))
        die("policy");
    json_decref(j);
    struct mitm_proxy *proxy[NMODES] = {NULL, NULL};
    struct mitm_proxy_config cfg = {
        .policy = store, .certs = pcerts, .upstream_ca_file = upca_file, .max_connections = 16};
    cfg.sink = (struct sink){&ops_off, NULL};
    if (mitm_proxy_create(&cfg, &proxy[OFF], err, sizeof(err)))
        die(err);
    cfg.sink = (struct sink){&ops_on, NULL};
    cfg.pricing = prices;
    cfg.traces = traces;
    if (mitm_proxy_create(&cfg, &proxy[ON], err, sizeof(err)))
        die(err);
    snprintf(dir, sizeof(dir), "%s/ca/ca.crt", home);
    SSL_CTX *cctx = client_ctx_trusting(dir);

    size_t req_len;
    char *req = make_request(req_kib, &req_len);
    struct bconn *c[NMODES];
    for (int m = 0; m < NMODES; m++) {
        c[m] = conn_open(proxy[m], cctx);
        if (!c[m])
            die("connection to the proxy");
        for (int w = 0; w < 20; w++) /* warm: upstream connection, caches */
            if (exchange(c[m], req, req_len) < 0)
                die("warm-up exchange failed");
    }

    int64_t *v[NMODES], *diff = malloc(pairs * sizeof(int64_t));
    proxy_cap = 2 * pairs;
    proxy_ttft = malloc(proxy_cap * sizeof(int64_t));
    for (int m = 0; m < NMODES; m++)
        v[m] = malloc(pairs * sizeof(int64_t));
    if (!diff || !proxy_ttft || !v[OFF] || !v[ON])
        die("out of memory");
    usleep(100000);              /* the warm-up's last exchange has ended and queued its call */
    mitm_proxy_drain(proxy[ON]); /* ... and it has been sunk */
    pthread_mutex_lock(&seen_lock);
    model_calls = model_bad = 0;
    proxy_nttft = 0;
    pthread_mutex_unlock(&seen_lock);

    printf("bench_ttft: request body %zu KiB, rest of the stream %u us after the first content "
           "event, %zu on/off pairs per phase, %ld CPUs\n",
           req_kib, gap_us, pairs, sysconf(_SC_NPROCESSORS_ONLN));
    /* Phase 1: the proxy idle when each request comes; phase 2: back to back. */
    const unsigned idles[2] = {idle_us, 0};
    for (int ph = 0; ph < 2; ph++) {
        double load0[3], load1[3];
        getloadavg(load0, 3);
        int64_t start = now_ns();
        for (size_t i = 0; i < pairs; i++) {
            for (int k = 0; k < NMODES; k++) {
                int m = (int)((i + (size_t)k) % 2); /* off,on then on,off */
                if (idles[ph])
                    usleep(idles[ph]);
                int64_t t = exchange(c[m], req, req_len);
                if (t < 0)
                    die("exchange failed");
                v[m][i] = t;
            }
            diff[i] = v[ON][i] - v[OFF][i];
        }
        double el = (double)(now_ns() - start) / 1e9;
        getloadavg(load1, 3);
        printf("\n%s (%u us idle before each request): %.1f s, load average %.2f %.2f %.2f -> "
               "%.2f %.2f %.2f\n",
               idles[ph] ? "idle" : "back to back", idles[ph], el, load0[0], load0[1], load0[2],
               load1[0], load1[1], load1[2]);
        double p50[NMODES], p99[NMODES];
        for (int m = 0; m < NMODES; m++) {
            p50[m] = quant_us(v[m], pairs, 0.5);
            p99[m] = quant_us(v[m], pairs, 0.99);
            printf("  parsing %-3s  request sent -> first content event  p50 %8.1f us  p99 %8.1f "
                   "us\n",
                   mode_names[m], p50[m], p99[m]);
        }
        printf("  on - off     p50 %+8.1f us  p99 %+8.1f us  median of paired differences %+.1f "
               "us (target <= 50 us)\n",
               p50[ON] - p50[OFF], p99[ON] - p99[OFF], quant_us(diff, pairs, 0.5));
        fflush(stdout);
    }
    for (int m = 0; m < NMODES; m++)
        conn_close(c[m]);
    /* Destroying the proxies waits for their connections and sinks every queued call. */
    mitm_proxy_destroy(proxy[ON]);
    mitm_proxy_destroy(proxy[OFF]);

    pthread_mutex_lock(&seen_lock);
    long want = 2 * (long)pairs;
    printf("\nmodel_call events: %ld for %ld parsed exchanges, %ld wrong%s%s; net events off %ld "
           "on %ld",
           model_calls, want, model_bad, model_bad ? ", first: " : "", first_bad, net_events[OFF],
           net_events[ON]);
    if (proxy_nttft)
        printf("; the proxy's own ttft_us p50 %.1f us", /* µs values: quant_us divides by 1e3 */
               quant_us(proxy_ttft, proxy_nttft, 0.5) * 1e3);
    printf("\n");
    bool ok = model_calls == want && model_bad == 0;
    pthread_mutex_unlock(&seen_lock);

    policy_store_destroy(store);
    shutdown(lfd, SHUT_RDWR);
    pthread_join(upt, NULL);
    close(lfd);
    SSL_CTX_free(cctx);
    mitm_certs_free(pcerts);
    mitm_certs_free(upcerts);
    mitm_ca_free(pca);
    mitm_ca_free(upca);
    trace_table_destroy(traces);
    pricing_destroy(prices);
    free(req);
    free(diff);
    free(proxy_ttft);
    free(v[OFF]);
    free(v[ON]);
    nftw(home, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    if (!ok) {
        fprintf(stderr, "bench_ttft: the parsed run's model_call events are wrong\n");
        return 1;
    }
    return 0;
}
