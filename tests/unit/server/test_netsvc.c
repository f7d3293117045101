/*
 * Unit tests for server/netsvc.c: a session's network services started from
 * a temporary $CAPSEM_HOME, driven through the DNS port the way the guest's
 * stub drives it: the policy in config.json decides, a rewritten config.json
 * applies to the next query once the loop has seen the change, a bad one is
 * refused and the previous policy stays, a bad file at start is refused with
 * its name and JSON path, and every answer lands in session.db. With an API
 * key in capsem's environment, the guest environment holds only a
 * placeholder, a plain-HTTP upstream on loopback receives the real key, the
 * placeholder to another host is blocked, and the key is nowhere in the
 * session database's files; a bad credentials object is refused at start.
 */
#include "netsvc.h"

#include "tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <pthread.h>
#include <stdbool.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <setjmp.h>

#include <cmocka.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

static char home[256];
static char session[300];

static void write_file(const char *path, const char *text)
{
    char tmp[420];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(rename(tmp, path), 0);
}

static void write_config(const char *text)
{
    char path[400];
    snprintf(path, sizeof(path), "%s/config.json", home);
    write_file(path, text);
}

static int setup(void **state)
{
    (void)state;
    snprintf(home, sizeof(home), "/tmp/capsem-netsvc-XXXXXX");
    assert_non_null(mkdtemp(home));
    snprintf(session, sizeof(session), "%s/sessions/s1", home);
    char cmd[700];
    snprintf(cmd, sizeof(cmd), "mkdir -p '%s'", session);
    assert_int_equal(system(cmd), 0);
    /* No corp file: a path that does not exist counts as absent. */
    setenv("CAPSEM_CORP_CONFIG", "/nonexistent/corp.json", 1);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", home);
    return system(cmd);
}

/* A query for `name`, type A, with the 2-byte length of DNS over TCP in front. */
static size_t make_query(uint8_t *b, uint16_t id, const char *name)
{
    size_t n = 2;
    const uint8_t hdr[12] = {(uint8_t)(id >> 8), (uint8_t)id, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0};
    memcpy(b + n, hdr, sizeof(hdr));
    n += sizeof(hdr);
    const char *p = name;
    while (*p) {
        const char *dot = strchr(p, '.');
        size_t l = dot ? (size_t)(dot - p) : strlen(p);
        b[n++] = (uint8_t)l;
        memcpy(b + n, p, l);
        n += l;
        p += l + (dot ? 1 : 0);
    }
    b[n++] = 0;
    const uint8_t tail[4] = {0, 1, 0, 1};
    memcpy(b + n, tail, sizeof(tail));
    n += sizeof(tail);
    b[0] = (uint8_t)((n - 2) >> 8);
    b[1] = (uint8_t)(n - 2);
    return n;
}

static void read_exact(int fd, uint8_t *b, size_t len)
{
    size_t got = 0;
    while (got < len) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 10000) != 1)
            fail_msg("no answer in 10 s");
        ssize_t n = read(fd, b + got, len - got);
        assert_true(n > 0);
        got += (size_t)n;
    }
}

/* Ask `name` on the connection; returns the answer's rcode, and its answer count in *an. */
static int ask(int fd, uint16_t id, const char *name, int *an)
{
    uint8_t q[300], a[600];
    size_t n = make_query(q, id, name);
    assert_int_equal(write(fd, q, n), (ssize_t)n);
    read_exact(fd, a, 2);
    size_t len = (size_t)a[0] << 8 | a[1];
    assert_true(len >= 12 && len <= sizeof(a));
    read_exact(fd, a, len);
    assert_int_equal((a[0] << 8 | a[1]), id);
    *an = a[6] << 8 | a[7];
    return a[3] & 0x0f;
}

/* Run the loop until it has nothing more to do within `ms`. */
static void spin(struct loop *l, int ms)
{
    while (loop_run_once(l, ms) > 0)
        ;
}

static int count_rows(const char *db_path, const char *where)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    char sql[300];
    snprintf(sql, sizeof(sql), "select count(*) from dns_events where %s", where);
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int n = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}

#define ALLOW_A                                                                                    \
    "{\"network\":{\"default\":\"block\",\"rules\":[{\"id\":\"a\",\"domain\":\"a.test\","          \
    "\"action\":\"allow\"}],\"http_ports\":[8080,3000]}}"
#define BLOCK_A                                                                                    \
    "{\"network\":{\"default\":\"block\",\"rules\":[{\"id\":\"no-a\",\"domain\":\"a.test\","       \
    "\"action\":\"block\"}]}}"

static void test_netsvc_policy_reload_applies_to_next_query(void **state)
{
    (void)state;
    write_config(ALLOW_A);
    struct loop *l = NULL;
    assert_int_equal(loop_create(&l), 0);
    struct netsvc *n = NULL;
    char err[600];
    struct netsvc_config cfg = {.home = home, .session_dir = session};
    assert_int_equal(netsvc_start(l, &cfg, &n, err, sizeof(err)), 0);
    /* The CA was made on first use; the ports come from the config. */
    assert_non_null(strstr(netsvc_ca_pem(n), "BEGIN CERTIFICATE"));
    assert_string_equal(netsvc_http_ports(n), "8080,3000");

    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    netsvc_accept(n, NETSVC_PORT_DNS, sv[1]);
    int an = 0; /* the test side is non-blocking too: it reads only after poll() */
    assert_int_equal(ask(sv[0], 1, "a.test", &an), 0);
    assert_int_equal(an, 1);
    assert_int_equal(ask(sv[0], 2, "b.test", &an), 3); /* default block: NXDOMAIN */

    /* The user blocks a.test: the next query on the same connection sees it. */
    write_config(BLOCK_A);
    spin(l, 300);
    assert_int_equal(ask(sv[0], 3, "a.test", &an), 3);

    /* A broken file is refused; the policy in force stays. */
    write_config("{\"network\":{\"default\":\"allow\",\"rules\":[{\"domain\":\"a.test\","
                 "\"action\":\"maybe\"}]}}");
    spin(l, 300);
    assert_int_equal(ask(sv[0], 4, "a.test", &an), 3);
    assert_int_equal(ask(sv[0], 5, "b.test", &an), 3); /* not the broken file's default allow */
    assert_true(netsvc_reload(n, err, sizeof(err)) < 0);
    assert_non_null(strstr(err, "config.json"));
    assert_non_null(strstr(err, "$.network.rules[0].action"));

    /* Every answer is in the session database. */
    assert_int_equal(netsvc_flush(n), 0);
    char db[400];
    snprintf(db, sizeof(db), "%s", netsvc_db_path(n));
    assert_int_equal(count_rows(db, "name='a.test' and decision=0 and rule='a'"), 1);
    assert_int_equal(count_rows(db, "name='a.test' and decision=1 and rule='no-a'"), 2);
    assert_int_equal(count_rows(db, "name='b.test' and answer='NXDOMAIN'"), 2);
    close(sv[0]);
    netsvc_stop(n);
    loop_destroy(l);
}

static void test_netsvc_bad_config_at_start_is_refused(void **state)
{
    (void)state;
    write_config("{\"network\": {\"default\": \"sometimes\"}}");
    struct loop *l = NULL;
    assert_int_equal(loop_create(&l), 0);
    struct netsvc *n = NULL;
    char err[600];
    struct netsvc_config cfg = {.home = home, .session_dir = session};
    assert_int_equal(netsvc_start(l, &cfg, &n, err, sizeof(err)), -EINVAL);
    assert_null(n);
    assert_non_null(strstr(err, "config.json"));
    assert_non_null(strstr(err, "$.network.default"));
    /* Not JSON at all: the line and column are named. */
    write_config("{\"network\": ");
    assert_true(netsvc_start(l, &cfg, &n, err, sizeof(err)) < 0);
    assert_non_null(strstr(err, "config.json"));
    assert_non_null(strstr(err, "line"));
    loop_destroy(l);
}

static void test_netsvc_unknown_port_closes_the_connection(void **state)
{
    (void)state;
    write_config(ALLOW_A);
    struct loop *l = NULL;
    assert_int_equal(loop_create(&l), 0);
    struct netsvc *n = NULL;
    char err[600];
    struct netsvc_config cfg = {.home = home, .session_dir = session};
    assert_int_equal(netsvc_start(l, &cfg, &n, err, sizeof(err)), 0);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    netsvc_accept(n, 5009, sv[1]);
    char c;
    assert_int_equal(read(sv[0], &c, 1), 0); /* closed, not served */
    close(sv[0]);
    netsvc_stop(n);
    loop_destroy(l);
}

/* ---- credentials ---- */

#define SECRET_KEY "sk-ant-real-NETSVC-SECRET-42"

/* An HTTPS upstream on loopback with a leaf for api.anthropic.com from a test CA. */
struct upstream {
    int lfd, port;
    SSL_CTX *ctx;
    pthread_t th;
    char head[4096]; /* the last request head received */
};

/* Answer each request on each connection with 200 "ok", keeping the head. */
static void *upstream_main(void *arg)
{
    struct upstream *u = arg;
    for (;;) {
        int fd = accept(u->lfd, NULL, NULL);
        if (fd < 0)
            return NULL;
        SSL *ssl = SSL_new(u->ctx);
        SSL_set_fd(ssl, fd);
        char buf[4096];
        size_t len = 0;
        if (SSL_accept(ssl) == 1) {
            for (;;) {
                int n = SSL_read(ssl, buf + len, (int)(sizeof(buf) - 1 - len));
                if (n <= 0)
                    break;
                len += (size_t)n;
                buf[len] = '\0';
                char *end = strstr(buf, "\r\n\r\n");
                if (!end)
                    continue;
                size_t hl = (size_t)(end + 4 - buf);
                memcpy(u->head, buf, hl);
                u->head[hl] = '\0';
                const char *ok = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                if (SSL_write(ssl, ok, (int)strlen(ok)) <= 0)
                    break;
                memmove(buf, buf + hl, len - hl);
                len -= hl;
            }
        }
        SSL_free(ssl);
        close(fd);
    }
}

static void upstream_start(struct upstream *u, const char *ca_dir)
{
    memset(u, 0, sizeof(*u));
    struct mitm_ca *ca = NULL;
    struct mitm_certs *certs = NULL;
    char err[256];
    assert_int_equal(mitm_ca_open(ca_dir, &ca, err, sizeof(err)), 0);
    assert_int_equal(mitm_certs_create(ca, 4, &certs), 0);
    X509 *cert = NULL;
    EVP_PKEY *key = NULL;
    assert_int_equal(mitm_certs_get(certs, "api.anthropic.com", &cert, &key), 0);
    u->ctx = SSL_CTX_new(TLS_server_method());
    assert_int_equal(SSL_CTX_use_certificate(u->ctx, cert), 1);
    assert_int_equal(SSL_CTX_use_PrivateKey(u->ctx, key), 1);
    X509_free(cert);
    EVP_PKEY_free(key);
    mitm_certs_free(certs);
    mitm_ca_free(ca);
    u->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(u->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(u->lfd, 8), 0);
    socklen_t al = sizeof(a);
    assert_int_equal(getsockname(u->lfd, (struct sockaddr *)&a, &al), 0);
    u->port = ntohs(a.sin_port);
    assert_int_equal(pthread_create(&u->th, NULL, upstream_main, u), 0);
}

static void upstream_stop(struct upstream *u)
{
    shutdown(u->lfd, SHUT_RDWR);
    close(u->lfd);
    pthread_join(u->th, NULL);
    SSL_CTX_free(u->ctx);
}

/*
 * One request from a fake guest through the proxy port: TLS with SNI `sni`
 * trusting the session CA, or plain HTTP when sni is NULL. Returns the status.
 */
static int guest_request(struct netsvc *n, const char *sni, const char *req, char *resp,
                         size_t resplen)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    struct timeval tv = {.tv_sec = 10};
    setsockopt(sv[0], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    uint8_t h[22] = {
        'C', 'N', 'E', 'T', 1,   4,  sni ? 0x01 : 0x00, sni ? 0xbb : 0x50, 10, 0, 0, 1, 0, 0, 0, 7,
        0,   4,   'c', 'u', 'r', 'l'};
    assert_int_equal(write(sv[0], h, sizeof(h)), (ssize_t)sizeof(h));
    netsvc_accept(n, NETSVC_PORT_PROXY, sv[1]);
    SSL_CTX *ctx = NULL;
    SSL *ssl = NULL;
    if (sni) {
        ctx = SSL_CTX_new(TLS_client_method());
        BIO *bio = BIO_new_mem_buf(netsvc_ca_pem(n), -1);
        X509 *ca = PEM_read_bio_X509(bio, NULL, NULL, NULL);
        BIO_free(bio);
        assert_non_null(ca);
        X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx), ca);
        X509_free(ca);
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        ssl = SSL_new(ctx);
        SSL_set_fd(ssl, sv[0]);
        SSL_set_tlsext_host_name(ssl, sni);
        SSL_set1_host(ssl, sni);
        assert_int_equal(SSL_connect(ssl), 1);
        assert_int_equal(SSL_write(ssl, req, (int)strlen(req)), (int)strlen(req));
    } else {
        assert_int_equal(write(sv[0], req, strlen(req)), (ssize_t)strlen(req));
    }
    size_t len = 0;
    for (;;) {
        ssize_t got = ssl ? SSL_read(ssl, resp + len, (int)(resplen - 1 - len))
                          : read(sv[0], resp + len, resplen - 1 - len);
        if (got <= 0)
            break;
        len += (size_t)got;
        resp[len] = '\0';
        char *end = strstr(resp, "\r\n\r\n");
        const char *cl = strstr(resp, "Content-Length: ");
        if (end && cl && len >= (size_t)(end + 4 - resp) + strtoul(cl + 16, NULL, 10))
            break;
    }
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    close(sv[0]);
    assert_true(len > 12);
    return (int)strtol(resp + 9, NULL, 10);
}

/* Whether a file holds `needle` anywhere (a missing file holds nothing). */
static bool file_holds(const char *path, const char *needle)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return false;
    static char buf[4 << 20];
    size_t n = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    return memmem(buf, n, needle, strlen(needle)) != NULL;
}

/* Rows of net_events matching `where`, waiting up to 5 s (events follow the answers). */
static int wait_net_rows(struct netsvc *n, const char *where, int want)
{
    int got = 0;
    for (int i = 0; i < 50; i++) {
        assert_int_equal(netsvc_flush(n), 0);
        sqlite3 *h = NULL;
        assert_int_equal(sqlite3_open_v2(netsvc_db_path(n), &h, SQLITE_OPEN_READONLY, NULL),
                         SQLITE_OK);
        char sql[600];
        snprintf(sql, sizeof(sql), "select count(*) from net_events where %s", where);
        sqlite3_stmt *st = NULL;
        assert_int_equal(sqlite3_prepare_v2(h, sql, -1, &st, NULL), SQLITE_OK);
        assert_int_equal(sqlite3_step(st), SQLITE_ROW);
        got = sqlite3_column_int(st, 0);
        sqlite3_finalize(st);
        sqlite3_close(h);
        if (got >= want)
            break;
        usleep(100000);
    }
    return got;
}

static void test_netsvc_credentials_swapped_and_kept_out(void **state)
{
    (void)state;
    char ca_dir[400];
    snprintf(ca_dir, sizeof(ca_dir), "%s/upca", home);
    struct upstream u;
    upstream_start(&u, ca_dir);
    char conf[1200];
    snprintf(conf, sizeof(conf),
             "{\"network\":{\"default\":\"allow\","
             "\"upstream\":{\"ca_file\":\"%s/ca.crt\",\"resolve\":{"
             "\"api.anthropic.com:443\":\"127.0.0.1:%d\",\"other.test:443\":\"127.0.0.1:%d\"}}}}",
             ca_dir, u.port, u.port);
    write_config(conf);
    setenv("ANTHROPIC_API_KEY", SECRET_KEY, 1);
    unsetenv("OPENAI_API_KEY");
    unsetenv("CODEX_API_KEY");
    unsetenv("GEMINI_API_KEY");
    unsetenv("GOOGLE_API_KEY");
    struct loop *l = NULL;
    assert_int_equal(loop_create(&l), 0);
    struct netsvc *n = NULL;
    char err[600];
    struct netsvc_config cfg = {.home = home, .session_dir = session};
    assert_int_equal(netsvc_start(l, &cfg, &n, err, sizeof(err)), 0);

    /* The guest gets one entry, a placeholder. */
    const char *const *env = NULL;
    assert_int_equal(netsvc_guest_env(n, &env), 1);
    assert_int_equal(strncmp(env[0], "ANTHROPIC_API_KEY=capsem-placeholder-anthropic-", 47), 0);
    assert_null(strstr(env[0], SECRET_KEY));
    const char *ph = env[0] + strlen("ANTHROPIC_API_KEY=");

    /* To the provider over HTTPS: the upstream gets the real key. */
    char req[1024], resp[2048];
    snprintf(req, sizeof(req),
             "GET /v1/models HTTP/1.1\r\nHost: api.anthropic.com\r\nx-api-key: %s\r\n"
             "Connection: close\r\n\r\n",
             ph);
    assert_int_equal(guest_request(n, "api.anthropic.com", req, resp, sizeof(resp)), 200);
    assert_non_null(strstr(u.head, "x-api-key: " SECRET_KEY "\r\n"));
    assert_null(strstr(resp, SECRET_KEY));

    /* To another host, and to the provider in the clear: 403, nothing upstream. */
    u.head[0] = '\0';
    snprintf(req, sizeof(req),
             "GET /hello HTTP/1.1\r\nHost: other.test\r\nx-api-key: %s\r\n"
             "Connection: close\r\n\r\n",
             ph);
    assert_int_equal(guest_request(n, "other.test", req, resp, sizeof(resp)), 403);
    assert_non_null(strstr(resp, "credential placeholder sent to other.test"));
    snprintf(req, sizeof(req),
             "GET /hello HTTP/1.1\r\nHost: api.anthropic.com\r\nx-api-key: %s\r\n"
             "Connection: close\r\n\r\n",
             ph);
    assert_int_equal(guest_request(n, NULL, req, resp, sizeof(resp)), 403);
    assert_non_null(strstr(resp, "sent to api.anthropic.com over plain HTTP"));
    assert_string_equal(u.head, "");

    assert_int_equal(wait_net_rows(n,
                                   "host='other.test' and decision=1 and rule='credentials' and "
                                   "error='credential placeholder sent to other.test'",
                                   1),
                     1);
    assert_int_equal(wait_net_rows(n,
                                   "host='api.anthropic.com' and status=403 and error='credential "
                                   "placeholder sent to api.anthropic.com over plain HTTP'",
                                   1),
                     1);
    assert_int_equal(
        wait_net_rows(n, "host='api.anthropic.com' and path='/v1/models' and status=200", 1), 1);
    char db[400], path[420];
    snprintf(db, sizeof(db), "%s", netsvc_db_path(n));
    netsvc_stop(n);
    loop_destroy(l);
    /* Nowhere in the database files, whatever the column. */
    assert_false(file_holds(db, SECRET_KEY));
    snprintf(path, sizeof(path), "%s-wal", db);
    assert_false(file_holds(path, SECRET_KEY));
    assert_true(file_holds(db, "other.test")); /* the check can see what is there */
    unsetenv("ANTHROPIC_API_KEY");
    upstream_stop(&u);
}

static void test_netsvc_bad_credentials_refused(void **state)
{
    (void)state;
    write_config("{\"credentials\":{\"anthropic\":{\"api_key\":\"has space\"}}}");
    struct loop *l = NULL;
    assert_int_equal(loop_create(&l), 0);
    struct netsvc *n = NULL;
    char err[600];
    struct netsvc_config cfg = {.home = home, .session_dir = session};
    assert_int_equal(netsvc_start(l, &cfg, &n, err, sizeof(err)), -EINVAL);
    assert_null(n);
    assert_non_null(strstr(err, "config.json"));
    assert_non_null(strstr(err, "$.credentials.anthropic.api_key"));
    assert_null(strstr(err, "has space"));
    loop_destroy(l);
}

int main(void)
{
    /* The upstream thread may write to a connection the proxy has closed. */
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_netsvc_policy_reload_applies_to_next_query, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_netsvc_bad_config_at_start_is_refused, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_netsvc_unknown_port_closes_the_connection, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_netsvc_credentials_swapped_and_kept_out, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_netsvc_bad_credentials_refused, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
