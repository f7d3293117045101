/*
 * unit.server.netsvc_model: model calls recorded by a whole session's network
 * services. netsvc is started from a temporary $CAPSEM_HOME whose config.json
 * sends api.anthropic.com:443 to a loopback HTTPS server (a leaf from a
 * second CA, trusted through network.upstream.ca_file); a fake guest speaks
 * the port-5002 protocol (CNET header, then TLS trusting the session CA) and
 * makes two Anthropic-shaped JSON calls on one connection: the first answers
 * with a tool call, the second sends its result. Both must land in
 * session.db's model_calls with tokens, cost from the price table, the tool
 * call and result rows and one trace, and session_totals must count them.
 * The price table: the embedded one; $CAPSEM_HOME/pricing.json instead when
 * present; a bad pricing.json is named in the warning and the embedded table
 * used (the session still starts and prices calls).
 */
#include "netsvc.h"
#include "pricing_embed.h"
#include "tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <setjmp.h>

#include <cmocka.h>

static char home[256];
static char session[300];

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
}

static int setup(void **state)
{
    (void)state;
    snprintf(home, sizeof(home), "/tmp/capsem-netsvc-model-XXXXXX");
    assert_non_null(mkdtemp(home));
    snprintf(session, sizeof(session), "%s/sessions/s1", home);
    char cmd[700];
    snprintf(cmd, sizeof(cmd), "mkdir -p '%s'", session);
    assert_int_equal(system(cmd), 0);
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

/* ---- the upstream: a loopback HTTPS server playing api.anthropic.com ---- */

#define RESP_TOOL                                                                                  \
    "{\"id\":\"msg_01\",\"type\":\"message\",\"role\":\"assistant\","                              \
    "\"model\":\"claude-sonnet-4-5-20250929\",\"content\":[{\"type\":\"tool_use\","                \
    "\"id\":\"toolu_01\",\"name\":\"Bash\",\"input\":{\"command\":\"ls\"}}],"                      \
    "\"stop_reason\":\"tool_use\",\"usage\":{\"input_tokens\":1000,\"output_tokens\":200,"         \
    "\"cache_read_input_tokens\":3000,\"cache_creation_input_tokens\":400}}"
#define RESP_DONE                                                                                  \
    "{\"id\":\"msg_02\",\"type\":\"message\",\"role\":\"assistant\","                              \
    "\"model\":\"claude-sonnet-4-5-20250929\",\"content\":[{\"type\":\"text\","                    \
    "\"text\":\"a.txt\"}],\"stop_reason\":\"end_turn\",\"usage\":{\"input_tokens\":50,"            \
    "\"output_tokens\":20,\"cache_read_input_tokens\":4000,\"cache_creation_input_tokens\":0}}"
#define REQ_FIRST                                                                                  \
    "{\"model\":\"claude-sonnet-4-5\",\"max_tokens\":100,\"system\":\"Be brief.\","                \
    "\"tools\":[{\"name\":\"Bash\",\"input_schema\":{\"type\":\"object\"}}],"                      \
    "\"messages\":[{\"role\":\"user\",\"content\":\"list files\"}]}"
#define REQ_SECOND                                                                                 \
    "{\"model\":\"claude-sonnet-4-5\",\"max_tokens\":100,\"system\":\"Be brief.\","                \
    "\"tools\":[{\"name\":\"Bash\",\"input_schema\":{\"type\":\"object\"}}],"                      \
    "\"messages\":[{\"role\":\"user\",\"content\":\"list files\"},{\"role\":\"assistant\","        \
    "\"content\":[{\"type\":\"tool_use\",\"id\":\"toolu_01\",\"name\":\"Bash\","                   \
    "\"input\":{\"command\":\"ls\"}}]},{\"role\":\"user\",\"content\":[{\"type\":"                 \
    "\"tool_result\",\"tool_use_id\":\"toolu_01\",\"content\":\"a.txt\"}]}]}"

struct upstream {
    int lfd;
    int port;
    SSL_CTX *ctx;
    pthread_t th;
    int requests; /* answered so far */
};

/* Read one request (head and Content-Length body) into buf; its length, 0 at EOF. */
static size_t read_message(SSL *ssl, char *buf, size_t cap, size_t *body_off)
{
    size_t len = 0, need = 0;
    char *end = NULL;
    for (;;) {
        if (!end && (end = memmem(buf, len, "\r\n\r\n", 4))) {
            *body_off = (size_t)(end - buf) + 4;
            buf[*body_off - 1] = '\0';
            const char *cl = strcasestr(buf, "\r\ncontent-length:");
            need = *body_off + (cl ? (size_t)strtoul(cl + 17, NULL, 10) : 0);
            buf[*body_off - 1] = '\n';
        }
        if (end && len >= need)
            return need;
        size_t n = 0;
        if (len >= cap || SSL_read_ex(ssl, buf + len, cap - len, &n) != 1)
            return 0;
        len += n;
    }
}

static void *upstream_main(void *arg)
{
    struct upstream *u = arg;
    static char buf[65536];
    int fd;
    while ((fd = accept(u->lfd, NULL, NULL)) >= 0) {
        SSL *ssl = SSL_new(u->ctx);
        SSL_set_fd(ssl, fd);
        if (SSL_accept(ssl) == 1) {
            size_t off = 0, n;
            while ((n = read_message(ssl, buf, sizeof(buf) - 1, &off)) > 0) {
                buf[n] = '\0';
                const char *body = strstr(buf + off, "tool_result") ? RESP_DONE : RESP_TOOL;
                char head[200];
                int hl = snprintf(head, sizeof(head),
                                  "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                  "Content-Length: %zu\r\n\r\n",
                                  strlen(body));
                size_t w = 0;
                if (SSL_write_ex(ssl, head, (size_t)hl, &w) != 1 ||
                    SSL_write_ex(ssl, body, strlen(body), &w) != 1)
                    break;
                __atomic_add_fetch(&u->requests, 1, __ATOMIC_RELAXED);
            }
        }
        SSL_free(ssl);
        close(fd);
    }
    return NULL;
}

static void upstream_start(struct upstream *u, struct mitm_certs *certs)
{
    X509 *cert = NULL;
    EVP_PKEY *key = NULL;
    memset(u, 0, sizeof(*u));
    assert_int_equal(mitm_certs_get(certs, "api.anthropic.com", &cert, &key), 0);
    u->ctx = SSL_CTX_new(TLS_server_method());
    assert_non_null(u->ctx);
    assert_int_equal(SSL_CTX_use_certificate(u->ctx, cert), 1);
    assert_int_equal(SSL_CTX_use_PrivateKey(u->ctx, key), 1);
    X509_free(cert);
    EVP_PKEY_free(key);
    u->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(u->lfd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(u->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(u->lfd, 16), 0);
    socklen_t sl = sizeof(a);
    assert_int_equal(getsockname(u->lfd, (struct sockaddr *)&a, &sl), 0);
    u->port = ntohs(a.sin_port);
    assert_int_equal(pthread_create(&u->th, NULL, upstream_main, u), 0);
}

static void upstream_stop(struct upstream *u)
{
    shutdown(u->lfd, SHUT_RDWR);
    pthread_join(u->th, NULL);
    close(u->lfd);
    SSL_CTX_free(u->ctx);
}

/* ---- the fake guest ---- */

/* CNET header (schemas/vsock-net.md) for 10.0.0.1:443, process "claude", pid 4242. */
static size_t cnet_header(uint8_t *h)
{
    const char *name = "claude";
    const uint8_t fixed[18] = {'C', 'N', 'E', 'T', 1, 4,    0x01, 0xbb, 10,
                               0,   0,   1,   0,   0, 0x10, 0x92, 0,    (uint8_t)strlen(name)};
    memcpy(h, fixed, sizeof(fixed));
    memcpy(h + sizeof(fixed), name, strlen(name));
    return sizeof(fixed) + strlen(name);
}

/* POST `body` to /v1/messages and read the whole response; its status. */
static int guest_call(SSL *ssl, const char *body, char *resp, size_t cap)
{
    char req[4096];
    int n = snprintf(req, sizeof(req),
                     "POST /v1/messages HTTP/1.1\r\nHost: api.anthropic.com\r\n"
                     "Content-Type: application/json\r\nanthropic-version: 2023-06-01\r\n"
                     "Content-Length: %zu\r\n\r\n%s",
                     strlen(body), body);
    assert_true(n > 0 && (size_t)n < sizeof(req));
    size_t w = 0;
    assert_int_equal(SSL_write_ex(ssl, req, (size_t)n, &w), 1);
    size_t off = 0, len = read_message(ssl, resp, cap - 1, &off);
    assert_true(len > 0);
    resp[len] = '\0';
    int status = 0;
    if (strncmp(resp, "HTTP/1.1 ", 9) == 0)
        status = (int)strtol(resp + 9, NULL, 10);
    return status;
}

/* ---- the database ---- */

static sqlite3 *db_open(const char *path)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    return db;
}

static int64_t db_int(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        fail_msg("%s: %s", sql, sqlite3_errmsg(db));
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

static void db_text(sqlite3 *db, const char *sql, char *out, size_t cap)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        fail_msg("%s: %s", sql, sqlite3_errmsg(db));
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    const unsigned char *s = sqlite3_column_text(st, 0);
    snprintf(out, cap, "%s", s ? (const char *)s : "<NULL>");
    sqlite3_finalize(st);
}

/* Flush until `want` model calls are stored (the proxy reports after the response ends). */
static void wait_model_calls(struct netsvc *n, int64_t want)
{
    for (int i = 0; i < 500; i++) {
        assert_int_equal(netsvc_flush(n), 0);
        sqlite3 *db = db_open(netsvc_db_path(n));
        int64_t got = db_int(db, "SELECT count(*) FROM model_calls");
        sqlite3_close(db);
        if (got >= want)
            return;
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    fail_msg("fewer than %lld model calls recorded within 10 s", (long long)want);
}

/*
 * Start a session's services against the upstream, make the two calls
 * through port 5002 and wait for both model calls. Leaves the netsvc running.
 */
static struct netsvc *run_session(struct loop *l, struct upstream *u)
{
    char err[600] = "", cfgtext[1024], path[400];
    snprintf(cfgtext, sizeof(cfgtext),
             "{\"network\":{\"default\":\"allow\",\"upstream\":{\"ca_file\":\"%s/upca/ca.crt\","
             "\"resolve\":{\"api.anthropic.com:443\":\"127.0.0.1:%d\"}}}}",
             home, u->port);
    snprintf(path, sizeof(path), "%s/config.json", home);
    write_file(path, cfgtext);
    struct netsvc *n = NULL;
    struct netsvc_config cfg = {.home = home, .session_dir = session};
    if (netsvc_start(l, &cfg, &n, err, sizeof(err)) != 0)
        fail_msg("netsvc_start: %s", err);

    /* The guest trusts the session CA, as the real guest does. */
    SSL_CTX *gctx = SSL_CTX_new(TLS_client_method());
    BIO *bio = BIO_new_mem_buf(netsvc_ca_pem(n), -1);
    X509 *cacert = PEM_read_bio_X509(bio, NULL, NULL, NULL);
    BIO_free(bio);
    assert_non_null(cacert);
    X509_STORE_add_cert(SSL_CTX_get_cert_store(gctx), cacert);
    X509_free(cacert);
    SSL_CTX_set_verify(gctx, SSL_VERIFY_PEER, NULL);

    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    struct timeval tv = {.tv_sec = 10};
    setsockopt(sv[0], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    uint8_t h[64];
    size_t hl = cnet_header(h);
    assert_int_equal(write(sv[0], h, hl), (ssize_t)hl);
    netsvc_accept(n, NETSVC_PORT_PROXY, sv[1]);
    SSL *ssl = SSL_new(gctx);
    SSL_set_fd(ssl, sv[0]);
    SSL_set_tlsext_host_name(ssl, "api.anthropic.com");
    SSL_set1_host(ssl, "api.anthropic.com");
    assert_int_equal(SSL_connect(ssl), 1);

    static char resp[16384];
    assert_int_equal(guest_call(ssl, REQ_FIRST, resp, sizeof(resp)), 200);
    assert_non_null(strstr(resp, "toolu_01"));
    assert_int_equal(guest_call(ssl, REQ_SECOND, resp, sizeof(resp)), 200);
    assert_non_null(strstr(resp, "end_turn"));
    SSL_shutdown(ssl);
    SSL_free(ssl);
    close(sv[0]);
    SSL_CTX_free(gctx);
    wait_model_calls(n, 2);
    assert_int_equal(__atomic_load_n(&u->requests, __ATOMIC_RELAXED), 2);
    return n;
}

struct env {
    struct mitm_ca *upca;
    struct mitm_certs *upcerts;
    struct upstream up;
    struct loop *loop;
};

static void env_start(struct env *e)
{
    char dir[300], err[256] = "";
    snprintf(dir, sizeof(dir), "%s/upca", home);
    if (mitm_ca_open(dir, &e->upca, err, sizeof(err)) != 0)
        fail_msg("mitm_ca_open: %s", err);
    assert_int_equal(mitm_certs_create(e->upca, 4, &e->upcerts), 0);
    upstream_start(&e->up, e->upcerts);
    assert_int_equal(loop_create(&e->loop), 0);
}

static void env_stop(struct env *e)
{
    upstream_stop(&e->up);
    mitm_certs_free(e->upcerts);
    mitm_ca_free(e->upca);
    loop_destroy(e->loop);
}

/* The model call matching `where` is priced at `want` USD. */
static void assert_cost(sqlite3 *db, const char *where, double want)
{
    char sql[300];
    snprintf(sql, sizeof(sql),
             "SELECT cost_known = 1 AND abs(cost_usd - %.9f) < 1e-12 FROM model_calls WHERE %s",
             want, where);
    if (db_int(db, sql) != 1) {
        char got[64];
        snprintf(sql, sizeof(sql), "SELECT cost_usd FROM model_calls WHERE %s", where);
        db_text(db, sql, got, sizeof(got));
        fail_msg("cost of %s: got %s, want %.9f", where, got, want);
    }
}

static void test_netsvc_model_calls_recorded_with_tokens_cost_and_trace(void **state)
{
    (void)state;
    struct env e;
    env_start(&e);
    struct netsvc *n = run_session(e.loop, &e.up);
    sqlite3 *db = db_open(netsvc_db_path(n));
    char text[2048];

    db_text(db,
            "SELECT printf('%s|%s|%d|%s|%s|%s|%s|%s|%s|%d|%d|%s|%s|%d|%d|%d|%d|%d|%d|%s|%d|%d',"
            " process, host, pid, path, provider, api, model_requested, model_answered,"
            " response_id, stream, http_status, status, stop_reason, input_tokens, output_tokens,"
            " cache_read_tokens, cache_write_tokens, message_count, tool_count, system_preview,"
            " tool_call_count, tool_result_count) FROM model_calls ORDER BY id LIMIT 1",
            text, sizeof(text));
    assert_string_equal(text, "claude|api.anthropic.com|4242|/v1/messages|anthropic|messages|"
                              "claude-sonnet-4-5|claude-sonnet-4-5-20250929|msg_01|0|200|ok|"
                              "tool_use|1000|200|3000|400|1|1|Be brief.|1|0");
    /* sonnet 4.5: 3 in, 15 out, 0.3 cache read, 3.75 cache write per million. */
    assert_cost(db, "response_id = 'msg_01'",
                (1000 * 3 + 200 * 15 + 3000 * 0.3 + 400 * 3.75) / 1e6);
    assert_cost(db, "response_id = 'msg_02'", (50 * 3 + 20 * 15 + 4000 * 0.3) / 1e6);
    db_text(db, "SELECT name || ' ' || call_id || ' ' || arguments FROM tool_calls", text,
            sizeof(text));
    assert_string_equal(text, "Bash toolu_01 {\"command\":\"ls\"}");
    db_text(db,
            "SELECT r.call_id || ' ' || r.is_error || ' ' || r.preview || ' ' || m.response_id"
            " FROM tool_results r JOIN model_calls m ON m.id = r.model_call_id",
            text, sizeof(text));
    assert_string_equal(text, "toolu_01 0 a.txt msg_02");
    /* One trace: the result of the first call's tool call makes the second its turn 2. */
    assert_int_equal(db_int(db, "SELECT count(DISTINCT trace_id) FROM model_calls"
                                " WHERE trace_id IS NOT NULL"),
                     1);
    db_text(db, "SELECT group_concat(turn) FROM (SELECT turn FROM model_calls ORDER BY id)", text,
            sizeof(text));
    assert_string_equal(text, "1,2");
    assert_int_equal(db_int(db, "SELECT min(ttft_us) > 0 AND min(duration_us) >= min(ttft_us)"
                                " FROM model_calls"),
                     1);
    /* The totals: two requests (net events) and two model calls, their tokens and cost. */
    assert_int_equal(db_int(db, "SELECT count(*) FROM net_events WHERE host = 'api.anthropic.com'"
                                " AND status = 200"),
                     2);
    db_text(db,
            "SELECT printf('%d|%d|%d|%d|%d|%d|%d', requests, model_calls, input_tokens,"
            " output_tokens, cache_read_tokens, cache_write_tokens, unpriced_calls)"
            " FROM session_totals",
            text, sizeof(text));
    assert_string_equal(text, "2|2|1050|220|7000|400|0");
    assert_int_equal(db_int(db, "SELECT abs(cost_usd - (SELECT sum(cost_usd) FROM model_calls))"
                                " < 1e-12 AND last_time_us = (SELECT max(time_us) FROM"
                                " model_calls) FROM session_totals"),
                     1);
    sqlite3_close(db);
    netsvc_stop(n);
    env_stop(&e);
}

static void test_netsvc_model_user_pricing_file_used(void **state)
{
    (void)state;
    char path[400];
    snprintf(path, sizeof(path), "%s/pricing.json", home);
    write_file(path, "{\"prices_as_of\":\"2030-01-01\",\"models\":[{\"provider\":\"anthropic\","
                     "\"model\":\"claude-sonnet-4-5-\",\"match\":\"prefix\",\"input\":100,"
                     "\"output\":1000}]}");
    struct env e;
    env_start(&e);
    struct netsvc *n = run_session(e.loop, &e.up);
    sqlite3 *db = db_open(netsvc_db_path(n));
    /* No cache prices in this table: cache tokens are charged at `input`. */
    assert_cost(db, "response_id = 'msg_01'", ((1000 + 3000 + 400) * 100.0 + 200 * 1000.0) / 1e6);
    assert_cost(db, "response_id = 'msg_02'", ((50 + 4000) * 100.0 + 20 * 1000.0) / 1e6);
    sqlite3_close(db);
    netsvc_stop(n);
    env_stop(&e);
}

static void test_netsvc_model_bad_pricing_file_falls_back(void **state)
{
    (void)state;
    char path[400];
    snprintf(path, sizeof(path), "%s/pricing.json", home);
    write_file(path, "{\"prices_as_of\":\"2030-01-01\",\"models\":[{\"provider\":\"anthropic\"");
    struct env e;
    env_start(&e);
    /* The session starts anyway and prices with the embedded table. */
    struct netsvc *n = run_session(e.loop, &e.up);
    sqlite3 *db = db_open(netsvc_db_path(n));
    assert_cost(db, "response_id = 'msg_01'",
                (1000 * 3 + 200 * 15 + 3000 * 0.3 + 400 * 3.75) / 1e6);
    sqlite3_close(db);
    netsvc_stop(n);
    env_stop(&e);
}

static void test_pricing_embed_load_choices(void **state)
{
    (void)state;
    struct pricing *t = NULL;
    char warn[1024], path[400];
    double cost = 0;

    /* No home, or no file in it: the embedded table, no warning. */
    assert_int_equal(pricing_embed_load(NULL, &t, warn, sizeof(warn)), 0);
    assert_string_equal(warn, "");
    assert_int_equal(pricing_cost(t, "anthropic", "claude-sonnet-4-5", 1000000, 0, 0, 0, &cost), 0);
    assert_true(cost == 3.0);
    pricing_destroy(t);
    t = NULL;
    assert_int_equal(pricing_embed_load(home, &t, warn, sizeof(warn)), 0);
    assert_string_equal(warn, "");
    assert_int_equal(pricing_cost(t, "anthropic", "claude-sonnet-4-5", 1000000, 0, 0, 0, &cost), 0);
    assert_true(cost == 3.0);
    pricing_destroy(t);
    t = NULL;

    /* A table that breaks the format: named, with the reason; the embedded one is used. */
    snprintf(path, sizeof(path), "%s/pricing.json", home);
    write_file(path, "{\"prices_as_of\":\"2030-01-01\",\"models\":[{\"provider\":\"anthropic\","
                     "\"model\":\"x\",\"match\":\"exact\",\"input\":-1,\"output\":1}]}");
    assert_int_equal(pricing_embed_load(home, &t, warn, sizeof(warn)), 0);
    assert_non_null(strstr(warn, path));
    assert_non_null(strstr(warn, "models[0]"));
    assert_non_null(strstr(warn, "built-in"));
    assert_int_equal(pricing_cost(t, "anthropic", "claude-sonnet-4-5", 1000000, 0, 0, 0, &cost), 0);
    assert_true(cost == 3.0);
    pricing_destroy(t);
    t = NULL;

    /* Not JSON, and not readable (a directory): named too. */
    write_file(path, "not json");
    assert_int_equal(pricing_embed_load(home, &t, warn, sizeof(warn)), 0);
    assert_non_null(strstr(warn, path));
    pricing_destroy(t);
    t = NULL;
    assert_int_equal(unlink(path), 0);
    char cmd[500];
    snprintf(cmd, sizeof(cmd), "mkdir '%s'", path);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(pricing_embed_load(home, &t, warn, sizeof(warn)), 0);
    assert_non_null(strstr(warn, path));
    assert_non_null(t);
    pricing_destroy(t);
    t = NULL;
    assert_int_equal(rmdir(path), 0);

    /* A good file replaces the embedded table. */
    write_file(path, "{\"prices_as_of\":\"2030-01-01\",\"models\":[{\"provider\":\"anthropic\","
                     "\"model\":\"claude-sonnet-4-5\",\"match\":\"exact\",\"input\":7,"
                     "\"output\":1}]}");
    assert_int_equal(pricing_embed_load(home, &t, warn, sizeof(warn)), 0);
    assert_string_equal(warn, "");
    assert_string_equal(pricing_as_of(t), "2030-01-01");
    assert_int_equal(pricing_cost(t, "anthropic", "claude-sonnet-4-5", 1000000, 0, 0, 0, &cost), 0);
    assert_true(cost == 7.0);
    assert_int_equal(pricing_cost(t, "anthropic", "claude-opus-4-5", 1, 0, 0, 0, &cost), -ENOENT);
    pricing_destroy(t);
}

int main(void)
{
    /* As in the daemon: a peer that closes first is an error return, not a signal. */
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_netsvc_model_calls_recorded_with_tokens_cost_and_trace,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_netsvc_model_user_pricing_file_used, setup, teardown),
        cmocka_unit_test_setup_teardown(test_netsvc_model_bad_pricing_file_falls_back, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_pricing_embed_load_choices, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
