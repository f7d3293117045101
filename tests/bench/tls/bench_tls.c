/*
 * TLS microbenchmark for mitm/tls.c, each figure next to a peer measured in
 * the same run:
 *
 *   mint        leaves per second from mitm_certs_get on hosts never seen
 *               (every call mints), against the same certificate built the
 *               way a per-host-key MITM would (a new P-256 key pair for each
 *               leaf), and against one bare ECDSA P-256 signature (the floor).
 *   cache hit   mitm_certs_get on a cached host.
 *   handshake   full TLS 1.3 handshakes per second over a socketpair (client
 *               in a second thread, verifying against the CA) with the server
 *               SSL from mitm_tls_server_new and a cached leaf, against a
 *               plain OpenSSL server context holding one fixed certificate
 *               and key (no client-hello callback, no cache).
 *
 * Each figure is the median of 5 interleaved runs.
 *
 * Usage: bench_tls [SECONDS per measured thing, split over the 5 runs; default 5].
 * Not a ctest test.
 */
#include "tls.h"

#include <errno.h>
#include <ftw.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "log.h"

#define ROUNDS 5

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double v[ROUNDS])
{
    double s[ROUNDS];
    memcpy(s, v, sizeof(s));
    qsort(s, ROUNDS, sizeof(s[0]), cmp_double);
    return s[ROUNDS / 2];
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
    fprintf(stderr, "bench_tls: %s\n", what);
    ERR_print_errors_fp(stderr);
    exit(1);
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* ---- minting ---- */

static double bench_mint(struct mitm_ca *ca, double secs)
{
    struct mitm_certs *c = NULL;
    if (mitm_certs_create(ca, 1u << 20, &c) != 0)
        die("mitm_certs_create");
    unsigned long n = 0;
    double t0 = now_s(), t;
    char host[64];
    do {
        for (int i = 0; i < 50; i++) {
            snprintf(host, sizeof(host), "h%lu.bench.test", n++);
            X509 *x = NULL;
            EVP_PKEY *k = NULL;
            if (mitm_certs_get(c, host, &x, &k) != 0)
                die("mitm_certs_get");
            X509_free(x);
            EVP_PKEY_free(k);
        }
        t = now_s() - t0;
    } while (t < secs);
    unsigned long minted = 0;
    mitm_certs_stats(c, NULL, &minted);
    if (minted != n)
        die("minted count does not match the calls");
    mitm_certs_free(c);
    return (double)n / t;
}

static double bench_hit(struct mitm_ca *ca, double secs)
{
    struct mitm_certs *c = NULL;
    if (mitm_certs_create(ca, 64, &c) != 0)
        die("mitm_certs_create");
    unsigned long n = 0;
    double t0 = now_s(), t;
    do {
        for (int i = 0; i < 1000; i++, n++) {
            X509 *x = NULL;
            EVP_PKEY *k = NULL;
            if (mitm_certs_get(c, "cached.bench.test", &x, &k) != 0)
                die("mitm_certs_get");
            X509_free(x);
            EVP_PKEY_free(k);
        }
        t = now_s() - t0;
    } while (t < secs);
    mitm_certs_free(c);
    return (double)n / t;
}

/* The peer: the same leaf, but with a new key pair each time. */
static X509 *peer_leaf(X509 *ca_cert, EVP_PKEY *ca_key, const char *host, EVP_PKEY **key_out)
{
    EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    X509 *x = X509_new();
    char san[128];
    if (!key || !x)
        die("peer keygen");
    X509_set_version(x, X509_VERSION_3);
    ASN1_INTEGER_set_int64(X509_get_serialNumber(x), (int64_t)rand() << 20 | 1);
    X509_NAME *name = X509_NAME_new();
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)host, -1, -1, 0);
    X509_set_subject_name(x, name);
    X509_NAME_free(name);
    X509_set_issuer_name(x, X509_get_subject_name(ca_cert));
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 7 * 86400);
    X509_set_pubkey(x, key);
    X509V3_CTX v3;
    X509V3_set_ctx(&v3, ca_cert, x, NULL, NULL, 0);
    snprintf(san, sizeof(san), "DNS:%s", host);
    const struct {
        int nid;
        const char *v;
    } ext[] = {{NID_basic_constraints, "critical,CA:FALSE"},
               {NID_key_usage, "critical,digitalSignature"},
               {NID_ext_key_usage, "serverAuth"},
               {NID_subject_alt_name, san},
               {NID_subject_key_identifier, "hash"},
               {NID_authority_key_identifier, "keyid"}};
    for (size_t i = 0; i < sizeof(ext) / sizeof(ext[0]); i++) {
        X509_EXTENSION *e = X509V3_EXT_nconf_nid(NULL, &v3, ext[i].nid, ext[i].v);
        if (!e)
            die("peer extension");
        X509_add_ext(x, e, -1);
        X509_EXTENSION_free(e);
    }
    if (X509_sign(x, ca_key, EVP_sha256()) <= 0)
        die("peer sign");
    *key_out = key;
    return x;
}

static EVP_PKEY *ca_key_of(const char *dir)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/ca.key", dir);
    FILE *fp = fopen(path, "r");
    if (!fp)
        die("open ca.key");
    EVP_PKEY *k = PEM_read_PrivateKey(fp, NULL, NULL, NULL);
    fclose(fp);
    if (!k)
        die("read ca.key");
    return k;
}

static X509 *ca_cert_of(struct mitm_ca *ca)
{
    BIO *b = BIO_new_mem_buf(mitm_ca_pem(ca), -1);
    X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);
    BIO_free(b);
    if (!x)
        die("read CA pem");
    return x;
}

static double bench_peer_mint(X509 *ca_cert, EVP_PKEY *ca_key, double secs)
{
    unsigned long n = 0;
    double t0 = now_s(), t;
    char host[64];
    do {
        for (int i = 0; i < 20; i++) {
            snprintf(host, sizeof(host), "p%lu.bench.test", n++);
            EVP_PKEY *k = NULL;
            X509 *x = peer_leaf(ca_cert, ca_key, host, &k);
            X509_free(x);
            EVP_PKEY_free(k);
        }
        t = now_s() - t0;
    } while (t < secs);
    return (double)n / t;
}

static double bench_sign(EVP_PKEY *key, double secs)
{
    unsigned char msg[32] = {1}, sig[128];
    unsigned long n = 0;
    double t0 = now_s(), t;
    do {
        for (int i = 0; i < 50; i++, n++) {
            EVP_MD_CTX *md = EVP_MD_CTX_new();
            size_t slen = sizeof(sig);
            if (!md || EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key) != 1 ||
                EVP_DigestSign(md, sig, &slen, msg, sizeof(msg)) != 1)
                die("sign");
            EVP_MD_CTX_free(md);
        }
        t = now_s() - t0;
    } while (t < secs);
    return (double)n / t;
}

/* ---- handshakes ---- */

struct client_args {
    SSL_CTX *ctx;
    int fd;
    int ok;
};

static void *client_main(void *arg)
{
    struct client_args *a = arg;
    SSL *ssl = SSL_new(a->ctx);
    SSL_set_fd(ssl, a->fd);
    SSL_set_tlsext_host_name(ssl, "api.bench.test");
    SSL_set1_host(ssl, "api.bench.test");
    SSL_set_alpn_protos(ssl, (const unsigned char *)"\x08http/1.1", 9);
    char b;
    a->ok = SSL_connect(ssl) == 1 && SSL_write(ssl, "x", 1) == 1 && SSL_read(ssl, &b, 1) == 1;
    SSL_free(ssl);
    return NULL;
}

/* One handshake; `server` is taken. */
static void one_handshake(SSL *server, SSL_CTX *client_ctx)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        die("socketpair");
    struct client_args a = {.ctx = client_ctx, .fd = sv[1]};
    pthread_t th;
    if (pthread_create(&th, NULL, client_main, &a) != 0)
        die("pthread_create");
    SSL_set_fd(server, sv[0]);
    char b;
    int ok =
        SSL_accept(server) == 1 && SSL_read(server, &b, 1) == 1 && SSL_write(server, "y", 1) == 1;
    pthread_join(th, NULL);
    if (!ok || !a.ok)
        die("handshake failed");
    SSL_free(server);
    close(sv[0]);
    close(sv[1]);
}

static double bench_handshake(struct mitm_certs *c, SSL_CTX *plain, SSL_CTX *client_ctx,
                              double secs)
{
    unsigned long n = 0;
    double t0 = now_s(), t;
    do {
        for (int i = 0; i < 10; i++, n++) {
            SSL *s = NULL;
            if (c) {
                if (mitm_tls_server_new(c, NULL, &s) != 0)
                    die("mitm_tls_server_new");
            } else {
                s = SSL_new(plain);
                if (!s)
                    die("SSL_new");
            }
            one_handshake(s, client_ctx);
        }
        t = now_s() - t0;
    } while (t < secs);
    return (double)n / t;
}

int main(int argc, char **argv)
{
    double secs = argc > 1 ? strtod(argv[1], NULL) : 5.0;
    if (!(secs > 0.0) || secs > 600.0) {
        fprintf(stderr, "usage: bench_tls [SECONDS per measurement]\n");
        return 2;
    }
    log_init("bench_tls", LOG_WARN);
    signal(SIGPIPE, SIG_IGN);
    char home[] = "/tmp/capsem-bench-tls-XXXXXX";
    if (!mkdtemp(home))
        die("mkdtemp");
    char dir[64];
    snprintf(dir, sizeof(dir), "%s/ca", home);
    struct mitm_ca *ca = NULL;
    char err[256];
    if (mitm_ca_open(dir, &ca, err, sizeof(err)) != 0)
        die(err);
    X509 *ca_cert = ca_cert_of(ca);
    EVP_PKEY *ca_key = ca_key_of(dir);

    /* Each figure is the median of ROUNDS runs, capsem and its peers interleaved so
     * that load from other processes falls on both alike. */
    double slice = secs / ROUNDS;
    double mint[ROUNDS], peer[ROUNDS], sign[ROUNDS], hit[ROUNDS];
    for (int r = 0; r < ROUNDS; r++) {
        mint[r] = bench_mint(ca, slice);
        peer[r] = bench_peer_mint(ca_cert, ca_key, slice);
        sign[r] = bench_sign(ca_key, slice);
        hit[r] = bench_hit(ca, slice);
    }
    double m = median(mint), p = median(peer), sg = median(sign);
    printf("mint       capsem %8.0f leaves/s | new key per leaf %8.0f /s (capsem %.2fx) | "
           "one ECDSA sign %8.0f /s (a mint costs %.1f signs)\n",
           m, p, m / p, sg, sg / m);
    printf("cache hit  capsem %8.0f gets/s\n", median(hit));

    /* Handshakes: the client trusts the CA; the server leaf is cached. */
    struct mitm_certs *c = NULL;
    if (mitm_certs_create(ca, 64, &c) != 0)
        die("mitm_certs_create");
    SSL_CTX *client_ctx = SSL_CTX_new(TLS_client_method());
    X509_STORE_add_cert(SSL_CTX_get_cert_store(client_ctx), ca_cert);
    SSL_CTX_set_verify(client_ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_session_cache_mode(client_ctx, SSL_SESS_CACHE_OFF);

    X509 *leaf = NULL;
    EVP_PKEY *leaf_key = NULL;
    if (mitm_certs_get(c, "api.bench.test", &leaf, &leaf_key) != 0)
        die("mitm_certs_get");
    SSL_CTX *plain = SSL_CTX_new(TLS_server_method());
    if (!plain || SSL_CTX_use_certificate(plain, leaf) != 1 ||
        SSL_CTX_use_PrivateKey(plain, leaf_key) != 1)
        die("plain server ctx");
    SSL_CTX_set_min_proto_version(plain, TLS1_2_VERSION);

    double hs_capsem[ROUNDS], hs_plain[ROUNDS];
    for (int r = 0; r < ROUNDS; r++) {
        hs_capsem[r] = bench_handshake(c, NULL, client_ctx, slice);
        hs_plain[r] = bench_handshake(NULL, plain, client_ctx, slice);
    }
    double hc = median(hs_capsem), hp = median(hs_plain);
    printf("handshake  capsem %8.0f /s (TLS 1.3, cached leaf) | plain OpenSSL, one fixed cert "
           "%8.0f /s (capsem %.2fx)\n",
           hc, hp, hc / hp);

    X509_free(leaf);
    EVP_PKEY_free(leaf_key);
    SSL_CTX_free(plain);
    SSL_CTX_free(client_ctx);
    mitm_certs_free(c);
    X509_free(ca_cert);
    EVP_PKEY_free(ca_key);
    mitm_ca_free(ca);
    nftw(home, rm_one, 8, FTW_DEPTH | FTW_PHYS);
    return 0;
}
