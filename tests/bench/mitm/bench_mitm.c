/*
 * MITM proxy benchmark: one HTTPS upstream on loopback (threads of this
 * process, a leaf from a CA made in a temp dir) reached three ways in the
 * same run, by the same C load client:
 *   direct     TLS straight to the upstream;
 *   capsem     the guest side of our proxy: a socketpair per connection,
 *              the CNET header, TLS to the proxy (its CA trusted), which
 *              verifies and forwards to the upstream over its pooled TLS;
 *   mitmproxy  mitmdump in regular proxy mode (CONNECT, its CA trusted,
 *              upstream verified against the test CA, bodies streamed).
 * Measured: keep-alive small requests at concurrency 1, 10 and 50 (requests
 * per second, p50, p99), new connections per second (connect, handshake, one
 * request, close; 10 at once), one 100 MiB response body, and time to the
 * first SSE event of a response on an open connection. Ratios are printed.
 * Not a test: numbers only.
 *
 * Usage: bench_mitm [-t SECONDS per measurement] [-m MITMDUMP|none] [-b BODY_MIB]
 */
#include "http.h"
#include "log.h"
#include "policy.h"
#include "proxy.h"
#include "tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum mode { M_DIRECT, M_CAPSEM, M_MITM, M_COUNT };
static const char *const mode_names[M_COUNT] = {"direct", "capsem", "mitmproxy"};

static char home[64] = "/tmp/capsem-bench-mitm-XXXXXX";
static int up_port, mitm_port;
static SSL_CTX *up_srv_ctx;
static SSL_CTX *cli_ctx[M_COUNT];
static struct mitm_proxy *proxy;
static pid_t mitm_pid = -1;
static size_t body_bytes = 100u << 20;
static double seconds = 3;

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void die(const char *what)
{
    fprintf(stderr, "bench_mitm: %s\n", what);
    ERR_print_errors_fp(stderr);
    if (mitm_pid > 0)
        kill(mitm_pid, SIGTERM);
    exit(1);
}

/* ---- the upstream ---- */

static bool ssl_write_all(SSL *ssl, const void *p, size_t len)
{
    size_t n;
    return SSL_write_ex(ssl, p, len, &n) == 1;
}

static void *up_conn(void *arg)
{
    int fd = (int)(intptr_t)arg;
    SSL *ssl = SSL_new(up_srv_ctx);
    static uint8_t big[256 * 1024];
    char *buf = malloc(HTTP_MAX_HEAD);
    size_t len = 0;
    SSL_set_fd(ssl, fd);
    if (!buf || SSL_accept(ssl) != 1)
        goto out;
    for (;;) {
        struct http_head h;
        long hl;
        while ((hl = http_parse_head(buf, len, true, &h, NULL)) == 0) {
            size_t n;
            if (len == HTTP_MAX_HEAD || SSL_read_ex(ssl, buf + len, HTTP_MAX_HEAD - len, &n) != 1)
                goto out;
            len += n;
        }
        if (hl < 0)
            goto out;
        bool ok;
        if (http_str_eq((struct http_str){h.target.p, h.target.len}, "/big")) {
            char head[128];
            int n = snprintf(head, sizeof(head), "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n",
                             body_bytes);
            ok = ssl_write_all(ssl, head, (size_t)n);
            for (size_t left = body_bytes; ok && left;) {
                size_t k = left < sizeof(big) ? left : sizeof(big);
                ok = ssl_write_all(ssl, big, k);
                left -= k;
            }
        } else if (http_str_eq((struct http_str){h.target.p, h.target.len}, "/sse")) {
            static const char sse[] = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                                      "Transfer-Encoding: chunked\r\n\r\n"
                                      "c\r\ndata: first\n\r\n";
            ok = ssl_write_all(ssl, sse, sizeof(sse) - 1);
            usleep(2000); /* the rest of the stream comes later */
            static const char rest[] = "d\r\ndata: second\n\r\n0\r\n\r\n";
            ok = ok && ssl_write_all(ssl, rest, sizeof(rest) - 1);
        } else {
            static const char small[] = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                                        "Content-Length: 13\r\n\r\nhello, world\n";
            ok = ssl_write_all(ssl, small, sizeof(small) - 1);
        }
        memmove(buf, buf + hl, len - (size_t)hl);
        len -= (size_t)hl;
        if (!ok || !h.keep_alive)
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
            if (errno == EINTR || errno == ECONNABORTED || errno == EMFILE)
                continue;
            return NULL;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        pthread_t t;
        pthread_attr_t a;
        pthread_attr_init(&a);
        pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&t, &a, up_conn, (void *)(intptr_t)fd) != 0)
            close(fd);
        pthread_attr_destroy(&a);
    }
}

static int listen_any(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) || listen(fd, 1024))
        die("listen");
    socklen_t sl = sizeof(a);
    getsockname(fd, (struct sockaddr *)&a, &sl);
    *port = ntohs(a.sin_port);
    return fd;
}

/* ---- the client ---- */

struct bconn {
    int fd;
    SSL *ssl;
    char buf[256 * 1024];
    size_t len;
};

static int tcp_to(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                            .sin_port = htons((uint16_t)port)};
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

static struct bconn *conn_open(enum mode m)
{
    int fd = -1;
    if (m == M_DIRECT) {
        fd = tcp_to(up_port);
    } else if (m == M_CAPSEM) {
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
            return NULL;
        static const uint8_t hdr[] = {'C', 'N', 'E', 'T', 1, 4, 0x01, 0xbb, 10,  0,   0,  1,
                                      0,   0,   0,   7,   0, 5, 'b',  'e',  'n', 'c', 'h'};
        if (write(sv[0], hdr, sizeof(hdr)) != (ssize_t)sizeof(hdr) ||
            mitm_proxy_serve(proxy, sv[1]) != 0) {
            close(sv[0]);
            return NULL;
        }
        fd = sv[0];
    } else {
        fd = tcp_to(mitm_port);
        if (fd >= 0) {
            char req[128];
            int n = snprintf(req, sizeof(req),
                             "CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: "
                             "127.0.0.1:%d\r\n\r\n",
                             up_port, up_port);
            char resp[512];
            size_t got = 0;
            if (write(fd, req, (size_t)n) != n)
                goto fail;
            while (got < sizeof(resp) - 1) { /* byte by byte: nothing past the blank line */
                if (read(fd, resp + got, 1) != 1)
                    goto fail;
                got++;
                if (got >= 4 && memcmp(resp + got - 4, "\r\n\r\n", 4) == 0)
                    break;
            }
            if (got < 12 || memcmp(resp + 9, "200", 3) != 0)
                goto fail;
        }
    }
    if (fd < 0)
        return NULL;
    struct bconn *c = calloc(1, sizeof(*c));
    c->fd = fd;
    c->ssl = SSL_new(cli_ctx[m]);
    SSL_set_fd(c->ssl, fd);
    if (getenv("BENCH_READ_AHEAD"))
        SSL_set_read_ahead(c->ssl, 1);
    SSL_set_tlsext_host_name(c->ssl, "api.test");
    SSL_set1_host(c->ssl, "api.test");
    if (SSL_connect(c->ssl) != 1) {
        SSL_free(c->ssl);
        free(c);
        goto fail;
    }
    return c;
fail:
    close(fd);
    return NULL;
}

static void conn_close(struct bconn *c)
{
    if (!c)
        return;
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

static void sse_first(void *opaque, const uint8_t *p, size_t len)
{
    int64_t *t = opaque;
    (void)p;
    if (len && !*t)
        *t = now_ns();
}

/*
 * Send GET path and read the whole response; returns body bytes or -1.
 * *first_ns, when not NULL, gets the time the first body bytes arrived.
 */
static int64_t request(struct bconn *c, const char *path, int64_t *first_ns)
{
    char req[128];
    int n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: api.test\r\n\r\n", path);
    if (!ssl_write_all(c->ssl, req, (size_t)n))
        return -1;
    struct http_head h;
    long hl;
    while ((hl = http_parse_head(c->buf, c->len, false, &h, NULL)) == 0)
        if (!fill(c))
            return -1;
    if (hl < 0 || h.status != 200)
        return -1;
    struct http_body b;
    http_body_init(&b, http_body_kind(&h, (struct http_str){"GET", 3}), h.content_length);
    memmove(c->buf, c->buf + hl, c->len - (size_t)hl);
    c->len -= (size_t)hl;
    int64_t first = 0;
    while (!b.done && !(b.kind == HTTP_BODY_LENGTH && b.remaining == 0)) {
        if (c->len == 0 && !fill(c))
            return -1;
        long m = http_body_feed(&b, (const uint8_t *)c->buf, c->len, first_ns ? sse_first : NULL,
                                &first);
        if (m < 0)
            return -1;
        memmove(c->buf, c->buf + m, c->len - (size_t)m);
        c->len -= (size_t)m;
    }
    if (first_ns)
        *first_ns = first;
    return (int64_t)b.total;
}

/* ---- measurements ---- */

struct load {
    enum mode m;
    bool new_conns; /* a new connection per request */
    int64_t end_ns;
    int64_t *lat;
    size_t nlat, cap;
    long errors;
};

static void *load_main(void *arg)
{
    struct load *l = arg;
    struct bconn *c = NULL;
    while (now_ns() < l->end_ns) {
        int64_t t0 = now_ns();
        if (!c && !(c = conn_open(l->m))) {
            l->errors++;
            usleep(1000);
            continue;
        }
        if (request(c, "/small", NULL) != 13) {
            l->errors++;
            conn_close(c);
            c = NULL;
            continue;
        }
        if (l->new_conns) {
            conn_close(c);
            c = NULL;
        }
        if (l->nlat < l->cap)
            l->lat[l->nlat++] = now_ns() - t0;
    }
    conn_close(c);
    return NULL;
}

static int cmp64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

struct result {
    double rps, p50_ms, p99_ms;
    double cpu_us; /* CPU per request: this process, plus mitmdump's in its mode */
    long errors;
};

/* CPU seconds used so far by this process and, when running, by mitmdump. */
static double cpu_seconds(enum mode m)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double t = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
               (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
    if (m == M_MITM && mitm_pid > 0) {
        char path[64], line[1024];
        snprintf(path, sizeof(path), "/proc/%d/stat", (int)mitm_pid);
        FILE *f = fopen(path, "r");
        if (f && fgets(line, sizeof(line), f)) {
            /* Fields after the ")" that ends the command name: 14 utime, 15 stime. */
            char *p = strrchr(line, ')');
            int field = 2;
            unsigned long long ut = 0, st = 0;
            for (char *q = p; q && *q; q++) {
                if (*q != ' ')
                    continue;
                field++;
                if (field == 14)
                    ut = strtoull(q + 1, NULL, 10);
                else if (field == 15)
                    st = strtoull(q + 1, NULL, 10);
            }
            t += (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
        }
        if (f)
            fclose(f);
    }
    return t;
}

static struct result run_load(enum mode m, int conc, bool new_conns)
{
    struct load *ls = calloc((size_t)conc, sizeof(*ls));
    pthread_t *th = calloc((size_t)conc, sizeof(*th));
    double cpu0 = cpu_seconds(m);
    int64_t start = now_ns();
    int64_t end = start + (int64_t)(seconds * 1e9);
    for (int i = 0; i < conc; i++) {
        ls[i] = (struct load){.m = m, .new_conns = new_conns, .end_ns = end, .cap = 1u << 20};
        ls[i].lat = malloc(ls[i].cap * sizeof(int64_t));
        pthread_create(&th[i], NULL, load_main, &ls[i]);
    }
    size_t total = 0;
    struct result r = {0};
    for (int i = 0; i < conc; i++) {
        pthread_join(th[i], NULL);
        total += ls[i].nlat;
        r.errors += ls[i].errors;
    }
    double el = (double)(now_ns() - start) / 1e9;
    if (total)
        r.cpu_us = (cpu_seconds(m) - cpu0) / (double)total * 1e6;
    int64_t *all = malloc((total ? total : 1) * sizeof(int64_t));
    size_t k = 0;
    for (int i = 0; i < conc; i++) {
        memcpy(all + k, ls[i].lat, ls[i].nlat * sizeof(int64_t));
        k += ls[i].nlat;
        free(ls[i].lat);
    }
    qsort(all, total, sizeof(int64_t), cmp64);
    r.rps = (double)total / el;
    if (total) {
        r.p50_ms = (double)all[total / 2] / 1e6;
        r.p99_ms = (double)all[(size_t)((double)total * 0.99)] / 1e6;
    }
    free(all);
    free(ls);
    free(th);
    return r;
}

/*
 * Bytes per second of one body of body_bytes over a fresh connection; *cpu
 * gets the CPU seconds all parties used per GB (1e9 bytes).
 */
static double run_body(enum mode m, double *cpu)
{
    struct bconn *c = conn_open(m);
    if (!c)
        return 0;
    double cpu0 = cpu_seconds(m);
    int64_t t0 = now_ns();
    int64_t got = request(c, "/big", NULL);
    int64_t el = now_ns() - t0;
    *cpu = (cpu_seconds(m) - cpu0) / ((double)body_bytes / 1e9);
    conn_close(c);
    return got == (int64_t)body_bytes ? (double)got / ((double)el / 1e9) : 0;
}

/* Median ms from sending a request to the first SSE event, over 21 requests on one connection. */
static double run_sse(enum mode m)
{
    struct bconn *c = conn_open(m);
    if (!c)
        return -1;
    int64_t v[21];
    int n = 0;
    request(c, "/sse", NULL); /* warm: the upstream connection exists */
    for (int i = 0; i < 21; i++) {
        int64_t first = 0, t0 = now_ns();
        if (request(c, "/sse", &first) < 0 || !first)
            break;
        v[n++] = first - t0;
    }
    conn_close(c);
    if (n == 0)
        return -1;
    qsort(v, (size_t)n, sizeof(v[0]), cmp64);
    return (double)v[n / 2] / 1e6;
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

static bool start_mitmdump(const char *exe)
{
    int probe = listen_any(&mitm_port);
    close(probe);
    char confdir[128], port[16], ca[160], ca_opt[200];
    snprintf(confdir, sizeof(confdir), "confdir=%s/mitmproxy", home);
    snprintf(port, sizeof(port), "%d", mitm_port);
    snprintf(ca, sizeof(ca), "%s/upca/ca.crt", home);
    snprintf(ca_opt, sizeof(ca_opt), "ssl_verify_upstream_trusted_ca=%s", ca);
    mitm_pid = fork();
    if (mitm_pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        dup2(devnull, 1);
        execlp(exe, exe, "-q", "--listen-host", "127.0.0.1", "--listen-port", port, "--set",
               confdir, "--set", ca_opt, "--set", "stream_large_bodies=1", (char *)NULL);
        _exit(127);
    }
    char cert[160];
    snprintf(cert, sizeof(cert), "%s/mitmproxy/mitmproxy-ca-cert.pem", home);
    for (int i = 0; i < 300; i++) { /* up to 30 s for Python to start */
        int fd = tcp_to(mitm_port);
        if (fd >= 0 && access(cert, R_OK) == 0) {
            close(fd);
            cli_ctx[M_MITM] = client_ctx_trusting(cert);
            return true;
        }
        if (fd >= 0)
            close(fd);
        if (waitpid(mitm_pid, NULL, WNOHANG) == mitm_pid) {
            mitm_pid = -1;
            return false;
        }
        usleep(100000);
    }
    return false;
}

int main(int argc, char **argv)
{
    const char *mitm_exe = "mitmdump";
    int opt;
    while ((opt = getopt(argc, argv, "t:m:b:")) != -1) {
        if (opt == 't')
            seconds = strtod(optarg, NULL);
        else if (opt == 'm')
            mitm_exe = optarg;
        else if (opt == 'b')
            body_bytes = (size_t)strtoul(optarg, NULL, 10) << 20;
        else {
            fprintf(stderr, "usage: bench_mitm [-t SECONDS] [-m MITMDUMP|none] [-b BODY_MIB]\n");
            return 2;
        }
    }
    signal(SIGPIPE, SIG_IGN);
    log_init("bench", LOG_ERR);
    if (!mkdtemp(home))
        die("mkdtemp");

    /* Upstream: a CA of its own, a leaf for api.test. */
    char dir[128], err[256];
    struct mitm_ca *upca = NULL, *pca = NULL;
    struct mitm_certs *upcerts = NULL, *pcerts = NULL;
    snprintf(dir, sizeof(dir), "%s/upca", home);
    if (mitm_ca_open(dir, &upca, err, sizeof(err)) || mitm_certs_create(upca, 4, &upcerts))
        die(err);
    X509 *cert;
    EVP_PKEY *key;
    if (mitm_certs_get(upcerts, "api.test", &cert, &key))
        die("upstream leaf");
    up_srv_ctx = SSL_CTX_new(TLS_server_method());
    SSL_CTX_use_certificate(up_srv_ctx, cert);
    SSL_CTX_use_PrivateKey(up_srv_ctx, key);
    X509_free(cert);
    EVP_PKEY_free(key);
    int lfd = listen_any(&up_port);
    pthread_t upt;
    pthread_create(&upt, NULL, up_main, (void *)(intptr_t)lfd);
    char upca_file[160];
    snprintf(upca_file, sizeof(upca_file), "%s/upca/ca.crt", home);
    cli_ctx[M_DIRECT] = client_ctx_trusting(upca_file);

    /* Our proxy: its own CA, allow everything, api.test:443 -> the upstream. */
    snprintf(dir, sizeof(dir), "%s/ca", home);
    if (mitm_ca_open(dir, &pca, err, sizeof(err)) || mitm_certs_create(pca, 64, &pcerts))
        die(err);
    char doc[512];
    snprintf(doc, sizeof(doc),
             "{\"network\":{\"default\":\"allow\",\"upstream\":{\"resolve\":"
             "{\"api.test:443\":\"127.0.0.1:%d\"}}}}",
             up_port);
    json_t *j = json_loads(doc, 0, NULL);
    struct policy *pol = NULL;
    struct policy_store *store = NULL;
    if (!j || policy_build(NULL, NULL, j, "bench", &pol, err, sizeof(err)) ||
        policy_store_create(pol, &store))
        die("policy");
    json_decref(j);
    struct mitm_proxy_config cfg = {
        .policy = store, .certs = pcerts, .upstream_ca_file = upca_file, .max_connections = 4096};
    if (mitm_proxy_create(&cfg, &proxy, err, sizeof(err)))
        die(err);
    snprintf(dir, sizeof(dir), "%s/ca/ca.crt", home);
    cli_ctx[M_CAPSEM] = client_ctx_trusting(dir);

    bool have_mitm = strcmp(mitm_exe, "none") != 0 && start_mitmdump(mitm_exe);
    if (strcmp(mitm_exe, "none") != 0 && !have_mitm)
        fprintf(stderr, "bench_mitm: %s did not start; skipping it\n", mitm_exe);

    double load[3];
    getloadavg(load, 3);
    printf("bench_mitm: %.1f s per measurement, body %zu MiB, load average %.2f %.2f %.2f, "
           "%ld CPUs\n\n",
           seconds, body_bytes >> 20, load[0], load[1], load[2], sysconf(_SC_NPROCESSORS_ONLN));

    static const int concs[] = {1, 10, 50};
    struct result ka[M_COUNT][3], nc[M_COUNT];
    double body[M_COUNT], body_cpu[M_COUNT], sse[M_COUNT];
    memset(ka, 0, sizeof(ka));
    memset(nc, 0, sizeof(nc));
    memset(body, 0, sizeof(body));
    memset(body_cpu, 0, sizeof(body_cpu));
    memset(sse, 0, sizeof(sse));
    for (int m = 0; m < M_COUNT; m++) {
        if (m == M_MITM && !have_mitm)
            continue;
        for (int i = 0; i < 3; i++) {
            ka[m][i] = run_load((enum mode)m, concs[i], false);
            printf("%-9s keep-alive c=%-2d  %9.0f req/s  p50 %7.3f ms  p99 %7.3f ms  "
                   "cpu %7.1f us/req%s\n",
                   mode_names[m], concs[i], ka[m][i].rps, ka[m][i].p50_ms, ka[m][i].p99_ms,
                   ka[m][i].cpu_us, ka[m][i].errors ? "  (errors)" : "");
            fflush(stdout);
        }
        nc[m] = run_load((enum mode)m, 10, true);
        printf("%-9s new connections c=10  %7.0f conn/s  p50 %7.3f ms  cpu %7.1f us/conn%s\n",
               mode_names[m], nc[m].rps, nc[m].p50_ms, nc[m].cpu_us,
               nc[m].errors ? "  (errors)" : "");
        body[m] = run_body((enum mode)m, &body_cpu[m]);
        printf("%-9s %zu MiB body  %7.3f GB/s  cpu %.2f s/GB\n", mode_names[m], body_bytes >> 20,
               body[m] / 1e9, body_cpu[m]);
        sse[m] = run_sse((enum mode)m);
        printf("%-9s first SSE event  %7.3f ms (median of 21)\n\n", mode_names[m], sse[m]);
        fflush(stdout);
    }

    printf("ratios (target):\n");
    for (int i = 0; i < 3; i++) {
        printf("  c=%-2d capsem/direct rps %.2f (>= 0.70)", concs[i],
               ka[M_CAPSEM][i].rps / ka[M_DIRECT][i].rps);
        if (have_mitm)
            printf("   capsem/mitmproxy rps %.1fx (>= 100x)",
                   ka[M_CAPSEM][i].rps / ka[M_MITM][i].rps);
        printf("   added p50 %.3f ms (<= 0.15)\n", ka[M_CAPSEM][i].p50_ms - ka[M_DIRECT][i].p50_ms);
        /* CPU the proxy adds per request: independent of how busy the machine is. */
        double dc = ka[M_DIRECT][i].cpu_us;
        printf("        proxy CPU per request: capsem %.1f us", ka[M_CAPSEM][i].cpu_us - dc);
        if (have_mitm)
            printf(", mitmproxy %.1f us (%.1fx)", ka[M_MITM][i].cpu_us - dc,
                   (ka[M_MITM][i].cpu_us - dc) / (ka[M_CAPSEM][i].cpu_us - dc));
        printf("\n");
    }
    printf("  new connections capsem/direct %.2f", nc[M_CAPSEM].rps / nc[M_DIRECT].rps);
    if (have_mitm)
        printf("   capsem/mitmproxy %.1fx", nc[M_CAPSEM].rps / nc[M_MITM].rps);
    printf("\n  body capsem %.2f GB/s (>= 1), capsem/direct %.2f", body[M_CAPSEM] / 1e9,
           body[M_CAPSEM] / body[M_DIRECT]);
    if (have_mitm && body[M_MITM] > 0)
        printf("   capsem/mitmproxy %.1fx", body[M_CAPSEM] / body[M_MITM]);
    printf("\n        proxy CPU per GB of body: capsem %.2f s (%.2f GB per CPU-second)",
           body_cpu[M_CAPSEM] - body_cpu[M_DIRECT], 1 / (body_cpu[M_CAPSEM] - body_cpu[M_DIRECT]));
    if (have_mitm && body[M_MITM] > 0)
        printf(", mitmproxy %.2f s", body_cpu[M_MITM] - body_cpu[M_DIRECT]);
    printf("\n  first SSE event added %.3f ms (<= 1)", sse[M_CAPSEM] - sse[M_DIRECT]);
    if (have_mitm)
        printf("   mitmproxy added %.3f ms", sse[M_MITM] - sse[M_DIRECT]);
    printf("\n");

    if (mitm_pid > 0) {
        kill(mitm_pid, SIGTERM);
        waitpid(mitm_pid, NULL, 0);
    }
    mitm_proxy_destroy(proxy);
    policy_store_destroy(store);
    shutdown(lfd, SHUT_RDWR);
    pthread_join(upt, NULL);
    close(lfd);
    mitm_certs_free(pcerts);
    mitm_certs_free(upcerts);
    mitm_ca_free(pca);
    mitm_ca_free(upca);
    nftw(home, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}
