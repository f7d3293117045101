/*
 * unit.mitm.upstream: the proxy's upstream connections against a real TLS
 * echo server on loopback (leaf from a CA made in a temp dir, trusted by the
 * client context): connect through an address override, keep-alive reuse
 * from the idle pool, a server-closed idle connection replaced instead of
 * handed out, TLS session resumption on the next connection, and each kind of
 * failure with its reason: refused, a bad override, an untrusted certificate,
 * a name the certificate does not carry, connecting after shutdown, a
 * connect that gets no answer (a listener with a full accept queue), and a
 * loopback, link-local, multicast or DNS-pool address reached without an
 * override.
 */
#include "upstream.h"

#include "tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ftw.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

struct fx {
    char home[64];
    struct mitm_ca *ca, *other;
    struct mitm_certs *certs, *other_certs;
    SSL_CTX *srv_ctx;
    SSL_CTX *client_ctx;
    int lfd, port;
    pthread_t th;
    int accepted;
    pthread_mutex_t lock;
};

static struct fx *F;

/* Echo server: per connection, answer each read with "ok:<bytes>". */
static void *echo_conn(void *arg)
{
    int fd = (int)(intptr_t)arg;
    SSL *ssl = SSL_new(F->srv_ctx);
    SSL_set_fd(ssl, fd);
    if (SSL_accept(ssl) == 1) {
        char buf[256];
        size_t n;
        while (SSL_read_ex(ssl, buf, sizeof(buf) - 4, &n) == 1) {
            char out[300];
            int m = snprintf(out, sizeof(out), "ok:%.*s", (int)n, buf);
            if (strncmp(buf, "bye", 3) == 0)
                break; /* the server ends this connection */
            size_t w;
            if (SSL_write_ex(ssl, out, (size_t)m, &w) != 1)
                break;
        }
    }
    SSL_free(ssl);
    close(fd);
    return NULL;
}

static void *srv_main(void *arg)
{
    (void)arg;
    for (;;) {
        int fd = accept(F->lfd, NULL, NULL);
        if (fd < 0)
            return NULL;
        pthread_mutex_lock(&F->lock);
        F->accepted++;
        pthread_mutex_unlock(&F->lock);
        pthread_t t;
        pthread_create(&t, NULL, echo_conn, (void *)(intptr_t)fd);
        pthread_detach(t);
    }
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int group_setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    F = calloc(1, sizeof(*F));
    pthread_mutex_init(&F->lock, NULL);
    snprintf(F->home, sizeof(F->home), "/tmp/capsem-upstream-XXXXXX");
    if (!mkdtemp(F->home))
        return -1;
    char dir[128], err[256];
    snprintf(dir, sizeof(dir), "%s/ca", F->home);
    if (mitm_ca_open(dir, &F->ca, err, sizeof(err)) || mitm_certs_create(F->ca, 4, &F->certs))
        return -1;
    snprintf(dir, sizeof(dir), "%s/other", F->home);
    if (mitm_ca_open(dir, &F->other, err, sizeof(err)) ||
        mitm_certs_create(F->other, 4, &F->other_certs))
        return -1;
    X509 *cert;
    EVP_PKEY *key;
    if (mitm_certs_get(F->certs, "up.test", &cert, &key))
        return -1;
    F->srv_ctx = SSL_CTX_new(TLS_server_method());
    SSL_CTX_use_certificate(F->srv_ctx, cert);
    SSL_CTX_use_PrivateKey(F->srv_ctx, key);
    X509_free(cert);
    EVP_PKEY_free(key);
    char cafile[160];
    snprintf(cafile, sizeof(cafile), "%s/ca/ca.crt", F->home);
    if (mitm_tls_client_ctx(cafile, &F->client_ctx, err, sizeof(err)))
        return -1;
    F->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(F->lfd, (struct sockaddr *)&a, sizeof(a)) || listen(F->lfd, 16))
        return -1;
    socklen_t sl = sizeof(a);
    getsockname(F->lfd, (struct sockaddr *)&a, &sl);
    F->port = ntohs(a.sin_port);
    pthread_create(&F->th, NULL, srv_main, NULL);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    shutdown(F->lfd, SHUT_RDWR);
    pthread_join(F->th, NULL);
    close(F->lfd);
    SSL_CTX_free(F->srv_ctx);
    SSL_CTX_free(F->client_ctx);
    mitm_certs_free(F->certs);
    mitm_certs_free(F->other_certs);
    mitm_ca_free(F->ca);
    mitm_ca_free(F->other);
    nftw(F->home, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    free(F);
    return 0;
}

static const char *addr(void)
{
    static char a[32];
    snprintf(a, sizeof(a), "127.0.0.1:%d", F->port);
    return a;
}

/* One round trip on c: send msg, expect "ok:msg". */
static void round_trip(struct upstream_conn *c, const char *msg)
{
    assert_int_equal(mitm_io_write(&c->io, msg, strlen(msg), 5000), 0);
    char buf[300];
    size_t want = strlen(msg) + 3, got = 0;
    while (got < want) {
        ssize_t n = mitm_io_read(&c->io, buf + got, sizeof(buf) - got, 5000);
        assert_true(n > 0);
        got += (size_t)n;
    }
    assert_int_equal(got, want);
    assert_memory_equal(buf + 3, msg, strlen(msg));
}

static void test_upstream_get_reuses_idle_connection(void **state)
{
    (void)state;
    struct upstream_pool *p;
    assert_int_equal(upstream_pool_create(F->client_ctx, 2000, 60000, &p), 0);
    char err[256];
    struct upstream_conn *c = NULL;
    assert_int_equal(upstream_get(p, "up.test", 443, true, addr(), &c, err, sizeof(err)), 0);
    assert_false(c->reused);
    round_trip(c, "one");
    upstream_put(p, c, true);
    assert_int_equal(upstream_get(p, "up.test", 443, true, addr(), &c, err, sizeof(err)), 0);
    assert_true(c->reused);
    round_trip(c, "two");
    /* Another port is another destination: not the idle one. */
    struct upstream_conn *d = NULL;
    upstream_put(p, c, true);
    assert_int_equal(upstream_get(p, "up.test", 8443, true, addr(), &d, err, sizeof(err)), 0);
    assert_false(d->reused);
    upstream_put(p, d, false);
    unsigned long connects, resumed, reuses;
    upstream_pool_stats(p, &connects, &resumed, &reuses);
    assert_int_equal(connects, 2);
    assert_int_equal(reuses, 1);
    upstream_pool_destroy(p);
}

static void test_upstream_get_drops_closed_idle_connection(void **state)
{
    (void)state;
    struct upstream_pool *p;
    assert_int_equal(upstream_pool_create(F->client_ctx, 2000, 60000, &p), 0);
    char err[256];
    struct upstream_conn *c = NULL;
    assert_int_equal(upstream_get(p, "up.test", 443, true, addr(), &c, err, sizeof(err)), 0);
    round_trip(c, "x");
    assert_int_equal(mitm_io_write(&c->io, "bye", 3, 5000), 0); /* the server closes */
    usleep(100000);
    upstream_put(p, c, true);
    assert_int_equal(upstream_get(p, "up.test", 443, true, addr(), &c, err, sizeof(err)), 0);
    assert_false(c->reused);
    round_trip(c, "fresh");
    upstream_put(p, c, false);
    upstream_pool_destroy(p);
}

static void test_upstream_get_resumes_tls_session(void **state)
{
    (void)state;
    struct upstream_pool *p;
    assert_int_equal(upstream_pool_create(F->client_ctx, 2000, 60000, &p), 0);
    char err[256];
    struct upstream_conn *c = NULL;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(upstream_get(p, "up.test", 443, true, addr(), &c, err, sizeof(err)), 0);
        assert_false(c->reused);
        round_trip(c, "hello"); /* TLS 1.3 tickets arrive with the first read */
        upstream_put(p, c, false);
    }
    unsigned long connects, resumed;
    upstream_pool_stats(p, &connects, &resumed, NULL);
    assert_int_equal(connects, 3);
    assert_int_equal(resumed, 2);
    upstream_pool_destroy(p);
}

static void test_upstream_get_failures(void **state)
{
    (void)state;
    struct upstream_pool *p;
    assert_int_equal(upstream_pool_create(F->client_ctx, 2000, 60000, &p), 0);
    char err[256];
    struct upstream_conn *c = NULL;

    /* Refused: a port nobody listens on. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bind(fd, (struct sockaddr *)&a, sizeof(a));
    socklen_t sl = sizeof(a);
    getsockname(fd, (struct sockaddr *)&a, &sl);
    char refused[32];
    snprintf(refused, sizeof(refused), "127.0.0.1:%d", ntohs(a.sin_port));
    close(fd);
    assert_int_equal(upstream_get(p, "up.test", 443, true, refused, &c, err, sizeof(err)),
                     -ECONNREFUSED);
    assert_string_equal(err, "connection refused");

    /* Bad overrides. */
    const char *bad[] = {"127.0.0.1", ":443", "127.0.0.1:", "no-colon-here"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(upstream_get(p, "up.test", 443, true, bad[i], &c, err, sizeof(err)),
                         -EINVAL);
        assert_non_null(strstr(err, "bad resolve override"));
    }

    /* Without an override, the host's own and never-public addresses are not dialled. */
    const char *never[] = {"localhost",       "127.0.0.1",  "0.0.0.0",
                           "169.254.169.254", "198.18.0.7", "224.0.0.1"};
    for (size_t i = 0; i < sizeof(never) / sizeof(never[0]); i++) {
        assert_int_equal(
            upstream_get(p, never[i], (unsigned)F->port, false, NULL, &c, err, sizeof(err)),
            -EACCES);
        assert_non_null(strstr(err, "never dialled"));
    }
    assert_non_null(strstr(err, "multicast"));
    assert_int_equal(
        upstream_get(p, "127.0.0.1", (unsigned)F->port, false, NULL, &c, err, sizeof(err)),
        -EACCES);
    assert_string_equal(err, "127.0.0.1 resolves to a loopback address, which is never dialled");

    /* A name the certificate does not carry. */
    assert_int_equal(upstream_get(p, "other.test", 443, true, addr(), &c, err, sizeof(err)),
                     -EPROTO);
    assert_non_null(strstr(err, "certificate verify failed"));
    assert_non_null(strstr(err, "hostname mismatch"));

    /* After shutdown nothing new connects. */
    upstream_pool_shutdown(p);
    assert_int_equal(upstream_get(p, "up.test", 443, true, addr(), &c, err, sizeof(err)),
                     -ESHUTDOWN);
    upstream_pool_destroy(p);
}

static void test_upstream_get_connect_timeout(void **state)
{
    (void)state;
    /* A listener whose accept queue is full: its kernel drops further SYNs. */
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(lfd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(lfd, 0), 0);
    socklen_t sl = sizeof(a);
    getsockname(lfd, (struct sockaddr *)&a, &sl);
    int fill[4];
    for (int i = 0; i < 4; i++) {
        fill[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        connect(fill[i], (struct sockaddr *)&a, sizeof(a));
    }
    usleep(100000);
    char full[32], err[256];
    snprintf(full, sizeof(full), "127.0.0.1:%d", ntohs(a.sin_port));
    struct upstream_pool *p;
    assert_int_equal(upstream_pool_create(F->client_ctx, 300, 60000, &p), 0);
    struct upstream_conn *c = NULL;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(upstream_get(p, "up.test", 443, true, full, &c, err, sizeof(err)), -ETIMEDOUT);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    assert_string_equal(err, "connect timed out");
    long ms = (long)(t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    assert_true(ms >= 250 && ms < 3000);
    upstream_pool_destroy(p);
    for (int i = 0; i < 4; i++)
        close(fill[i]);
    close(lfd);
}

static void test_upstream_get_untrusted_ca(void **state)
{
    (void)state;
    SSL_CTX *ctx = NULL;
    char err[256];
    assert_int_equal(mitm_tls_client_ctx(NULL, &ctx, err, sizeof(err)), 0);
    struct upstream_pool *p;
    assert_int_equal(upstream_pool_create(ctx, 2000, 60000, &p), 0);
    struct upstream_conn *c = NULL;
    assert_int_equal(upstream_get(p, "up.test", 443, true, addr(), &c, err, sizeof(err)), -EPROTO);
    assert_non_null(strstr(err, "certificate verify failed"));
    upstream_pool_destroy(p);
    SSL_CTX_free(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_upstream_get_reuses_idle_connection),
        cmocka_unit_test(test_upstream_get_drops_closed_idle_connection),
        cmocka_unit_test(test_upstream_get_resumes_tls_session),
        cmocka_unit_test(test_upstream_get_failures),
        cmocka_unit_test(test_upstream_get_connect_timeout),
        cmocka_unit_test(test_upstream_get_untrusted_ca),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
