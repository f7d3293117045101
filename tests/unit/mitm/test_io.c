/*
 * unit.mitm.io: non-blocking reads and writes with and without TLS over a
 * socketpair. Plain: data, end of stream, a read that would wait (-EAGAIN
 * with no timeout, -ETIMEDOUT with one). TLS (a leaf from a CA made in a
 * temp dir, read-ahead on as the proxy runs it): a record that arrives in two
 * halves is not reported pending after a read found it incomplete (a poll
 * loop would spin on it), then reads whole once the rest arrives; several
 * records arriving at once are pending after the first read; close_notify is
 * the end of the stream.
 */
#include "io.h"

#include "tls.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
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
#include <unistd.h>

#include <cmocka.h>
#include <openssl/err.h>

static char home[64];
static struct mitm_ca *ca;
static struct mitm_certs *certs;

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
    snprintf(home, sizeof(home), "/tmp/capsem-io-XXXXXX");
    if (!mkdtemp(home))
        return -1;
    char dir[128], err[256];
    snprintf(dir, sizeof(dir), "%s/ca", home);
    if (mitm_ca_open(dir, &ca, err, sizeof(err)) || mitm_certs_create(ca, 2, &certs))
        return -1;
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    mitm_certs_free(certs);
    mitm_ca_free(ca);
    nftw(home, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}

static void set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    assert_int_equal(fcntl(fd, F_SETFL, fl | O_NONBLOCK), 0);
}

static void test_io_read_plain(void **state)
{
    (void)state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    set_nonblock(sv[1]);
    struct mitm_io io = {.fd = sv[1]};
    char buf[16];
    assert_int_equal(mitm_io_read(&io, buf, sizeof(buf), 0), -EAGAIN);
    assert_int_equal(mitm_io_read(&io, buf, sizeof(buf), 30), -ETIMEDOUT);
    assert_int_equal(write(sv[0], "abc", 3), 3);
    assert_int_equal(mitm_io_read(&io, buf, sizeof(buf), 1000), 3);
    assert_memory_equal(buf, "abc", 3);
    assert_false(mitm_io_pending(&io));
    assert_int_equal(mitm_io_write(&io, "xyz", 3, 1000), 0);
    assert_int_equal(read(sv[0], buf, sizeof(buf)), 3);
    close(sv[0]);
    assert_int_equal(mitm_io_read(&io, buf, sizeof(buf), 1000), 0);
    assert_int_equal(mitm_io_write(&io, "x", 1, 1000), -EPIPE);
    close(sv[1]);
}

struct tls_pair {
    int sv[2];
    SSL_CTX *sctx, *cctx;
    SSL *s, *c; /* s on sv[1] (the side under test), c on sv[0] */
};

static void *accept_main(void *arg)
{
    SSL *s = arg;
    return SSL_accept(s) == 1 ? s : NULL;
}

/* A TLS connection over a socketpair; the server side then runs non-blocking. */
static void tls_pair_open(struct tls_pair *t)
{
    X509 *cert;
    EVP_PKEY *key;
    assert_int_equal(mitm_certs_get(certs, "io.test", &cert, &key), 0);
    t->sctx = SSL_CTX_new(TLS_server_method());
    SSL_CTX_use_certificate(t->sctx, cert);
    SSL_CTX_use_PrivateKey(t->sctx, key);
    X509_free(cert);
    EVP_PKEY_free(key);
    t->cctx = SSL_CTX_new(TLS_client_method());
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, t->sv), 0);
    t->s = SSL_new(t->sctx);
    SSL_set_fd(t->s, t->sv[1]);
    SSL_set_read_ahead(t->s, 1);
    t->c = SSL_new(t->cctx);
    SSL_set_fd(t->c, t->sv[0]);
    pthread_t th;
    pthread_create(&th, NULL, accept_main, t->s);
    assert_int_equal(SSL_connect(t->c), 1);
    void *ok = NULL;
    pthread_join(th, &ok);
    assert_non_null(ok);
    set_nonblock(t->sv[1]);
    /* TLS 1.3 tickets from the server: let the client take them now. */
    char b;
    set_nonblock(t->sv[0]);
    SSL_read(t->c, &b, 1);
    ERR_clear_error();
    int fl = fcntl(t->sv[0], F_GETFL);
    fcntl(t->sv[0], F_SETFL, fl & ~O_NONBLOCK);
}

static void tls_pair_close(struct tls_pair *t)
{
    SSL_free(t->s);
    SSL_free(t->c);
    SSL_CTX_free(t->sctx);
    SSL_CTX_free(t->cctx);
    close(t->sv[0]);
    close(t->sv[1]);
}

/* The bytes of one TLS record carrying `text`, as the client would send them. */
static size_t record_bytes(struct tls_pair *t, const char *text, uint8_t *out, size_t cap)
{
    BIO *mem = BIO_new(BIO_s_mem());
    BIO *sock = SSL_get_wbio(t->c);
    BIO_up_ref(sock);
    SSL_set0_wbio(t->c, mem);
    size_t n;
    assert_int_equal(SSL_write_ex(t->c, text, strlen(text), &n), 1);
    size_t len = (size_t)BIO_read(mem, out, (int)cap);
    SSL_set0_wbio(t->c, sock); /* frees mem */
    return len;
}

static void test_io_pending_partial_record(void **state)
{
    (void)state;
    struct tls_pair t;
    tls_pair_open(&t);
    struct mitm_io io = {.fd = t.sv[1], .ssl = t.s};
    uint8_t rec[512];
    size_t len = record_bytes(&t, "hello", rec, sizeof(rec));
    assert_true(len > 10);
    /* Half a record: nothing to read yet, and not pending once a read found that out. */
    assert_int_equal(write(t.sv[0], rec, len / 2), (ssize_t)(len / 2));
    char buf[64];
    assert_int_equal(mitm_io_read(&io, buf, sizeof(buf), 0), -EAGAIN);
    assert_false(mitm_io_pending(&io));
    struct pollfd pfd = {.fd = t.sv[1], .events = POLLIN};
    assert_int_equal(poll(&pfd, 1, 0), 0); /* a poll loop would now sleep, not spin */
    /* The rest arrives: the whole record reads. */
    assert_int_equal(write(t.sv[0], rec + len / 2, len - len / 2), (ssize_t)(len - len / 2));
    assert_int_equal(mitm_io_read(&io, buf, sizeof(buf), 1000), 5);
    assert_memory_equal(buf, "hello", 5);
    assert_false(mitm_io_pending(&io));
    tls_pair_close(&t);
}

static void test_io_pending_buffered_records(void **state)
{
    (void)state;
    struct tls_pair t;
    tls_pair_open(&t);
    struct mitm_io io = {.fd = t.sv[1], .ssl = t.s};
    uint8_t recs[1024];
    size_t a = record_bytes(&t, "one", recs, sizeof(recs));
    size_t b = record_bytes(&t, "two", recs + a, sizeof(recs) - a);
    assert_int_equal(write(t.sv[0], recs, a + b), (ssize_t)(a + b));
    char buf[64];
    assert_int_equal(mitm_io_read(&io, buf, sizeof(buf), 1000), 3);
    /* Read-ahead took both records from the socket: the second is pending, not in poll. */
    assert_true(mitm_io_pending(&io));
    struct pollfd pfd = {.fd = t.sv[1], .events = POLLIN};
    assert_int_equal(poll(&pfd, 1, 0), 0);
    assert_int_equal(mitm_io_read(&io, buf, sizeof(buf), 0), 3);
    assert_memory_equal(buf, "two", 3);
    assert_false(mitm_io_pending(&io));
    /* close_notify is the end of the stream. */
    SSL_shutdown(t.c);
    assert_int_equal(mitm_io_read(&io, buf, sizeof(buf), 1000), 0);
    tls_pair_close(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_io_read_plain),
        cmocka_unit_test(test_io_pending_partial_record),
        cmocka_unit_test(test_io_pending_buffered_records),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
