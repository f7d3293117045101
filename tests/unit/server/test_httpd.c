/*
 * Tests of the daemon's one port (server/httpd.c with api.c and auth.c):
 * a real httpd on an ephemeral loopback port with a temporary CAPSEM_HOME,
 * spoken to over TCP with hand-written requests. Bad input and what it gives:
 * - no token, a wrong token, a wrong or stale cookie: 401;
 * - a login code used twice or never issued: 401;
 * - a Host that is not loopback or --allow-host (or the wrong port), or none: 403;
 * - a foreign Origin on a POST or a WebSocket upgrade: 403; a cookie-only
 *   POST or upgrade without Origin: 403;
 * - a body that is not a JSON object: 400; over 1 MiB (declared or streamed): 413;
 * - an unknown path: 404; a known path with another method: 405;
 * - a WebSocket upgrade refused: the JSON error, never a 101;
 * - an upgrade on a keep-alive connection MHD already owns: 503 + close;
 * - a silent client: closed after the sniff deadline while others are served;
 * - bytes that are not HTTP: routed at once (400), not after the deadline;
 * - more silent clients than sniff slots: newcomers wait in the backlog
 *   and are served when slots free up (none is closed unheard).
 */
#include "auth.h"
#include "httpd.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define SNIFF_MS 400
#define RESP_MAX (64 * 1024)

static char home[256];
static struct auth *auth;
static struct httpd *httpd;
static unsigned port;
static char token[AUTH_SECRET_HEX + 1];
static const char *const allow[] = {"capsem.test"};

static int setup(void **state)
{
    (void)state;
    char err[256];
    snprintf(home, sizeof(home), "/tmp/capsem-test-httpd-XXXXXX");
    if (!mkdtemp(home))
        return -1;
    if (auth_create(home, &auth, err, sizeof(err)) < 0)
        return -1;
    memcpy(token, auth_token(auth), sizeof(token));
    struct httpd_opts o = {.addr = "127.0.0.1",
                           .port = 0,
                           .auth = auth,
                           .version = "9.8.7",
                           .allow = allow,
                           .nallow = 1,
                           .sniff_timeout_ms = SNIFF_MS};
    if (httpd_create(&o, &httpd, err, sizeof(err)) < 0) {
        fprintf(stderr, "httpd_create: %s\n", err);
        return -1;
    }
    port = httpd_port(httpd);
    return port ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    httpd_destroy(httpd);
    auth_destroy(auth);
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", home);
    return system(cmd) == 0 ? 0 : -1;
}

static uint64_t ms_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int dial(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    struct timeval tv = {.tv_sec = 10};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

static void send_all(int fd, const char *s, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, s, len, MSG_NOSIGNAL);
        assert_true(n > 0);
        s += n;
        len -= (size_t)n;
    }
}

/* Read until EOF (or RESP_MAX); returns the length, out NUL-terminated. */
static size_t read_all(int fd, char *out, size_t cap)
{
    size_t len = 0;
    while (len + 1 < cap) {
        ssize_t n = recv(fd, out + len, cap - 1 - len, 0);
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    out[len] = '\0';
    return len;
}

static int status_of(const char *resp)
{
    if (strncmp(resp, "HTTP/1.1 ", 9) != 0)
        return -1;
    return (int)strtol(resp + 9, NULL, 10);
}

/* Send `req` on a new connection, read the whole answer into out; returns the status. */
static int roundtrip(const char *req, char *out, size_t cap)
{
    int fd = dial();
    send_all(fd, req, strlen(req));
    read_all(fd, out, cap);
    close(fd);
    return status_of(out);
}

/* GET `path` with extra header lines `hdrs` ("" or "Name: v\r\n..."). */
static int get(const char *path, const char *hdrs, char *out, size_t cap)
{
    char req[4096];
    snprintf(req, sizeof(req),
             "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%u\r\n%sConnection: close\r\n\r\n", path, port,
             hdrs);
    return roundtrip(req, out, cap);
}

static int post(const char *path, const char *hdrs, const char *body, char *out, size_t cap)
{
    char req[8192];
    snprintf(req, sizeof(req),
             "POST %s HTTP/1.1\r\nHost: 127.0.0.1:%u\r\n%sContent-Type: application/json\r\n"
             "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
             path, port, hdrs, strlen(body), body);
    return roundtrip(req, out, cap);
}

static const char *body_of(const char *resp)
{
    const char *b = strstr(resp, "\r\n\r\n");
    return b ? b + 4 : "";
}

static void bearer(char *out, size_t cap)
{
    snprintf(out, cap, "Authorization: Bearer %s\r\n", token);
}

/* Log in with a fresh code; writes "Cookie: capsem_session=...\r\n" into out. */
static void login_cookie(char *out, size_t cap)
{
    char code[AUTH_SECRET_HEX + 1], path[128], resp[RESP_MAX];
    assert_int_equal(auth_code_new(auth, 60, code), 0);
    snprintf(path, sizeof(path), "/login?t=%s", code);
    assert_int_equal(get(path, "", resp, sizeof(resp)), 303);
    const char *sc = strstr(resp, "Set-Cookie: ");
    assert_non_null(sc);
    sc += strlen("Set-Cookie: ");
    const char *semi = strchr(sc, ';');
    assert_non_null(semi);
    snprintf(out, cap, "Cookie: %.*s\r\n", (int)(semi - sc), sc);
}

static void test_healthz_no_auth(void **state)
{
    (void)state;
    char resp[RESP_MAX];
    assert_int_equal(get("/healthz", "", resp, sizeof(resp)), 200);
    assert_string_equal(body_of(resp), "{\"status\":\"ok\"}");
    assert_non_null(strstr(resp, "Content-Type: application/json"));
}

static void test_auth_token_missing_wrong_right(void **state)
{
    (void)state;
    char resp[RESP_MAX], h[256];
    assert_int_equal(get("/api/v1/version", "", resp, sizeof(resp)), 401);
    assert_non_null(strstr(body_of(resp), "\"error\""));
    char wrong[AUTH_SECRET_HEX + 1];
    memcpy(wrong, token, sizeof(wrong));
    wrong[10] = wrong[10] == 'a' ? 'b' : 'a';
    snprintf(h, sizeof(h), "Authorization: Bearer %s\r\n", wrong);
    assert_int_equal(get("/api/v1/version", h, resp, sizeof(resp)), 401);
    snprintf(h, sizeof(h), "Authorization: Bearer %.63s\r\n", token);
    assert_int_equal(get("/api/v1/version", h, resp, sizeof(resp)), 401);
    snprintf(h, sizeof(h), "Authorization: Basic %s\r\n", token);
    assert_int_equal(get("/api/v1/version", h, resp, sizeof(resp)), 401);
    bearer(h, sizeof(h));
    assert_int_equal(get("/api/v1/version", h, resp, sizeof(resp)), 200);
    assert_string_equal(body_of(resp), "{\"name\":\"capsem\",\"version\":\"9.8.7\"}");
    assert_int_equal(get("/metrics", "", resp, sizeof(resp)), 401);
}

static void test_login_code_once_then_cookie(void **state)
{
    (void)state;
    char code[AUTH_SECRET_HEX + 1], path[128], resp[RESP_MAX], cookie[256];
    assert_int_equal(auth_code_new(auth, 60, code), 0);
    snprintf(path, sizeof(path), "/login?t=%s", code);
    assert_int_equal(get(path, "", resp, sizeof(resp)), 303);
    assert_non_null(strstr(resp, "Location: /\r\n"));
    const char *sc = strstr(resp, "Set-Cookie: capsem_session=");
    assert_non_null(sc);
    const char *eol = strstr(sc, "\r\n");
    char line[256];
    snprintf(line, sizeof(line), "%.*s", (int)(eol - sc), sc);
    assert_non_null(strstr(line, "; HttpOnly"));
    assert_non_null(strstr(line, "; SameSite=Strict"));
    assert_non_null(strstr(line, "; Path=/"));
    const char *v = sc + strlen("Set-Cookie: ");
    snprintf(cookie, sizeof(cookie), "Cookie: other=1; %.*s\r\n", (int)(strchr(v, ';') - v), v);
    /* Second use of the same code. */
    assert_int_equal(get(path, "", resp, sizeof(resp)), 401);
    assert_int_equal(get("/login?t=", "", resp, sizeof(resp)), 401);
    assert_int_equal(get("/login", "", resp, sizeof(resp)), 401);
    assert_int_equal(get("/api/v1/version", cookie, resp, sizeof(resp)), 200);
    assert_int_equal(get("/metrics", cookie, resp, sizeof(resp)), 200);
    /* A made-up session secret. */
    char forged[160];
    snprintf(forged, sizeof(forged), "Cookie: capsem_session=%s\r\n", token);
    assert_int_equal(get("/api/v1/version", forged, resp, sizeof(resp)), 401);
}

static void test_host_checked(void **state)
{
    (void)state;
    char req[512], resp[RESP_MAX], h[256];
    bearer(h, sizeof(h));
    /* name, and whether ":<port>" is appended */
    struct {
        const char *name;
        bool with_port;
    } bad[] = {{"evil.example", false}, {"evil.example", true},   {"127.0.0.1:1", false},
               {"127.0.0.2", true},     {"localhost.evil", true}, {"capsem.test:1", false}};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char host[64];
        if (bad[i].with_port)
            snprintf(host, sizeof(host), "%s:%u", bad[i].name, port);
        else
            snprintf(host, sizeof(host), "%s", bad[i].name);
        snprintf(req, sizeof(req),
                 "GET /api/v1/version HTTP/1.1\r\nHost: %s\r\n%sConnection: close\r\n\r\n", host,
                 h);
        assert_int_equal(roundtrip(req, resp, sizeof(resp)), 403);
        assert_non_null(strstr(body_of(resp), "host"));
        /* Even the unauthenticated health check. */
        snprintf(req, sizeof(req), "GET /healthz HTTP/1.1\r\nHost: %s\r\n\r\n", host);
        assert_int_equal(roundtrip(req, resp, sizeof(resp)), 403);
    }
    snprintf(req, sizeof(req), "GET /healthz HTTP/1.0\r\n\r\n");
    assert_int_equal(roundtrip(req, resp, sizeof(resp)), 403);
    struct {
        const char *name;
        bool with_port;
    } good[] = {{"localhost", true}, {"LOCALHOST", false},  {"127.0.0.1", false},
                {"[::1]", true},     {"capsem.test", true}, {"capsem.test", false}};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        char host[64];
        if (good[i].with_port)
            snprintf(host, sizeof(host), "%s:%u", good[i].name, port);
        else
            snprintf(host, sizeof(host), "%s", good[i].name);
        snprintf(req, sizeof(req),
                 "GET /api/v1/version HTTP/1.1\r\nHost: %s\r\n%sConnection: close\r\n\r\n", host,
                 h);
        assert_int_equal(roundtrip(req, resp, sizeof(resp)), 200);
    }
}

static void test_origin_on_post(void **state)
{
    (void)state;
    char resp[RESP_MAX], h[512], cookie[256];
    bearer(h, sizeof(h));
    /* Bearer, no Origin (a non-browser client): fine. */
    assert_int_equal(post("/api/v1/auth/codes", h, "{}", resp, sizeof(resp)), 201);
    assert_non_null(strstr(body_of(resp), "\"code\""));
    size_t hl = strlen(h);
    snprintf(h + hl, sizeof(h) - hl, "Origin: http://evil.example\r\n");
    assert_int_equal(post("/api/v1/auth/codes", h, "{}", resp, sizeof(resp)), 403);
    assert_non_null(strstr(body_of(resp), "origin"));
    snprintf(h + hl, sizeof(h) - hl, "Origin: null\r\n");
    assert_int_equal(post("/api/v1/auth/codes", h, "{}", resp, sizeof(resp)), 403);
    snprintf(h + hl, sizeof(h) - hl, "Origin: http://127.0.0.1:%u\r\n", port);
    assert_int_equal(post("/api/v1/auth/codes", h, "{}", resp, sizeof(resp)), 201);
    /* A browser session: Origin must be there and match. */
    login_cookie(cookie, sizeof(cookie));
    assert_int_equal(post("/api/v1/auth/codes", cookie, "{}", resp, sizeof(resp)), 403);
    hl = strlen(cookie);
    snprintf(cookie + hl, sizeof(cookie) - hl, "Origin: https://127.0.0.1:%u\r\n", port);
    assert_int_equal(post("/api/v1/auth/codes", cookie, "{}", resp, sizeof(resp)), 403);
    snprintf(cookie + hl, sizeof(cookie) - hl, "Origin: http://127.0.0.1:%u\r\n", port);
    assert_int_equal(post("/api/v1/auth/codes", cookie, "{\"ttl_seconds\":5}", resp, sizeof(resp)),
                     201);
    assert_non_null(strstr(body_of(resp), "\"expires_in\":5"));
}

static void test_bad_json_400(void **state)
{
    (void)state;
    char resp[RESP_MAX], h[256];
    bearer(h, sizeof(h));
    const char *bad[] = {"{", "not json", "[1,2]", "\"s\"", "{\"a\":1}x", "{\"a\":1,\"a\":2}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(post("/api/v1/auth/codes", h, bad[i], resp, sizeof(resp)), 400);
        assert_non_null(strstr(body_of(resp), "\"error\""));
    }
    /* Valid JSON, wrong value. */
    assert_int_equal(post("/api/v1/auth/codes", h, "{\"ttl_seconds\":601}", resp, sizeof(resp)),
                     400);
    assert_int_equal(post("/api/v1/auth/codes", h, "{\"ttl_seconds\":\"5\"}", resp, sizeof(resp)),
                     400);
}

static void test_route_unknown_404_method_405(void **state)
{
    (void)state;
    char resp[RESP_MAX], h[256];
    bearer(h, sizeof(h));
    assert_int_equal(get("/nope", h, resp, sizeof(resp)), 404);
    assert_string_equal(body_of(resp), "{\"error\":\"no such route\"}");
    assert_int_equal(get("/api/v1/version/", h, resp, sizeof(resp)), 404);
    assert_int_equal(get("/api/v1/auth/codes", h, resp, sizeof(resp)), 405);
    assert_int_equal(post("/healthz", h, "{}", resp, sizeof(resp)), 405);
}

static void test_body_over_1mib_413(void **state)
{
    (void)state;
    char resp[RESP_MAX], req[1024], h[256];
    bearer(h, sizeof(h));
    /* Declared too big: refused before any body is read. */
    snprintf(req, sizeof(req),
             "POST /api/v1/auth/codes HTTP/1.1\r\nHost: localhost\r\n%sContent-Length: %u\r\n\r\n",
             h, (1u << 20) + 1);
    assert_int_equal(roundtrip(req, resp, sizeof(resp)), 413);
    assert_non_null(strstr(body_of(resp), "1 MiB"));
    /* Streamed (chunked) past the limit: read and dropped, then 413. */
    int fd = dial();
    snprintf(req, sizeof(req),
             "POST /api/v1/auth/codes HTTP/1.1\r\nHost: localhost\r\n%s"
             "Transfer-Encoding: chunked\r\n\r\n",
             h);
    send_all(fd, req, strlen(req));
    static char chunk[64 * 1024 + 16];
    int cl = snprintf(chunk, sizeof(chunk), "10000\r\n");
    memset(chunk + cl, ' ', 0x10000);
    memcpy(chunk + cl + 0x10000, "\r\n", 2);
    for (int i = 0; i < 17; i++) /* 17 x 64 KiB > 1 MiB */
        send_all(fd, chunk, (size_t)cl + 0x10000 + 2);
    send_all(fd, "0\r\n\r\n", 5);
    read_all(fd, resp, sizeof(resp));
    close(fd);
    assert_int_equal(status_of(resp), 413);
    /* Exactly at the limit is read (and then judged as JSON). */
    char *big = malloc((1u << 20) + 1);
    assert_non_null(big);
    memset(big, ' ', 1u << 20);
    big[0] = '{';
    big[(1u << 20) - 1] = '}';
    big[1u << 20] = '\0';
    fd = dial();
    snprintf(req, sizeof(req),
             "POST /api/v1/auth/codes HTTP/1.1\r\nHost: localhost\r\n%sContent-Length: %u\r\n"
             "Connection: close\r\n\r\n",
             h, 1u << 20);
    send_all(fd, req, strlen(req));
    send_all(fd, big, 1u << 20);
    read_all(fd, resp, sizeof(resp));
    close(fd);
    free(big);
    assert_int_equal(status_of(resp), 201);
}

static const char ws_key_hdrs[] = "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                                  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                                  "Sec-WebSocket-Version: 13\r\n";

/*
 * Open /api/v1/events with extra header lines `hdrs`. Returns the HTTP status;
 * on 101 the first text frame's payload is copied into msg and fd is kept
 * open in *keep when keep is not NULL.
 */
static int ws_open(const char *path, const char *hdrs, char *msg, size_t msgcap, int *keep)
{
    char req[4096];
    snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%u\r\n%s%s\r\n", path, port,
             ws_key_hdrs, hdrs);
    int fd = dial();
    send_all(fd, req, strlen(req));
    static char buf[RESP_MAX];
    size_t len = 0;
    const char *end = NULL;
    while (!end && len + 1 < sizeof(buf)) {
        ssize_t n = recv(fd, buf + len, sizeof(buf) - 1 - len, 0);
        if (n <= 0)
            break;
        len += (size_t)n;
        buf[len] = '\0';
        end = strstr(buf, "\r\n\r\n");
    }
    int status = status_of(buf);
    if (status != 101) {
        /* Refusals close the connection after the JSON error. */
        len += read_all(fd, buf + len, sizeof(buf) - len);
        snprintf(msg, msgcap, "%s", end ? end + 4 : "");
        close(fd);
        return status;
    }
    assert_non_null(strstr(buf, "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
    size_t off = (size_t)(end + 4 - buf);
    while (len - off < 2 || len - off < 2 + (size_t)(buf[off + 1] & 0x7f)) {
        ssize_t n = recv(fd, buf + len, sizeof(buf) - 1 - len, 0);
        assert_true(n > 0);
        len += (size_t)n;
    }
    assert_int_equal((unsigned char)buf[off], 0x81); /* FIN + text */
    size_t plen = (size_t)(buf[off + 1] & 0x7f);
    assert_true(plen < 126 && plen < msgcap);
    memcpy(msg, buf + off + 2, plen);
    msg[plen] = '\0';
    if (keep)
        *keep = fd;
    else
        close(fd);
    return status;
}

static void test_ws_hello_with_cookie_and_origin(void **state)
{
    (void)state;
    char cookie[512], msg[512], h[512];
    login_cookie(cookie, sizeof(cookie));
    size_t cl = strlen(cookie);
    snprintf(cookie + cl, sizeof(cookie) - cl, "Origin: http://127.0.0.1:%u\r\n", port);
    assert_int_equal(ws_open("/api/v1/events", cookie, msg, sizeof(msg), NULL), 101);
    assert_string_equal(msg, "{\"type\":\"hello\",\"server\":\"capsem\",\"version\":\"9.8.7\"}");
    /* A non-browser client with the token and no Origin. */
    bearer(h, sizeof(h));
    assert_int_equal(ws_open("/api/v1/events", h, msg, sizeof(msg), NULL), 101);
    /* A query string does not change the route. */
    assert_int_equal(ws_open("/api/v1/events?since=0", h, msg, sizeof(msg), NULL), 101);
}

static void test_ws_refused_origin_auth_host(void **state)
{
    (void)state;
    char cookie[512], msg[512], h[512];
    login_cookie(cookie, sizeof(cookie));
    size_t cl = strlen(cookie);
    /* Foreign Origin with a good cookie. */
    snprintf(cookie + cl, sizeof(cookie) - cl, "Origin: http://evil.example\r\n");
    assert_int_equal(ws_open("/api/v1/events", cookie, msg, sizeof(msg), NULL), 403);
    assert_non_null(strstr(msg, "origin"));
    /* Cookie, no Origin: a browser would have sent one. */
    cookie[cl] = '\0';
    assert_int_equal(ws_open("/api/v1/events", cookie, msg, sizeof(msg), NULL), 403);
    /* Foreign Origin with the token. */
    bearer(h, sizeof(h));
    size_t hl = strlen(h);
    snprintf(h + hl, sizeof(h) - hl, "Origin: http://evil.example\r\n");
    assert_int_equal(ws_open("/api/v1/events", h, msg, sizeof(msg), NULL), 403);
    /* No auth at all, right Origin. */
    snprintf(h, sizeof(h), "Origin: http://127.0.0.1:%u\r\n", port);
    assert_int_equal(ws_open("/api/v1/events", h, msg, sizeof(msg), NULL), 401);
    assert_non_null(strstr(msg, "authentication"));
    /* Unknown WebSocket path. */
    bearer(h, sizeof(h));
    assert_int_equal(ws_open("/api/v1/nope", h, msg, sizeof(msg), NULL), 404);
    /* Two Authorization headers are ambiguous: not upgraded. */
    char two[600];
    snprintf(two, sizeof(two), "%sAuthorization: Bearer x\r\n", h);
    assert_int_not_equal(ws_open("/api/v1/events", two, msg, sizeof(msg), NULL), 101);
}

static void test_ws_upgrade_after_keepalive_503(void **state)
{
    (void)state;
    char req[2048], h[256], buf[RESP_MAX];
    bearer(h, sizeof(h));
    int fd = dial();
    snprintf(req, sizeof(req), "GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n");
    send_all(fd, req, strlen(req));
    ssize_t n = recv(fd, buf, sizeof(buf) - 1, 0);
    assert_true(n > 0);
    buf[n] = '\0';
    assert_int_equal(status_of(buf), 200);
    snprintf(req, sizeof(req), "GET /api/v1/events HTTP/1.1\r\nHost: localhost\r\n%s%s\r\n",
             ws_key_hdrs, h);
    send_all(fd, req, strlen(req));
    read_all(fd, buf, sizeof(buf));
    close(fd);
    assert_int_equal(status_of(buf), 503);
    assert_non_null(strstr(buf, "Connection: close"));
}

static void test_ws_head_trickled(void **state)
{
    (void)state;
    char req[2048], h[256], buf[RESP_MAX];
    bearer(h, sizeof(h));
    snprintf(req, sizeof(req), "GET /api/v1/events HTTP/1.1\r\nHost: localhost\r\n%s%s\r\n",
             ws_key_hdrs, h);
    int fd = dial();
    for (size_t i = 0; req[i]; i += 37) {
        size_t n = strlen(req + i);
        send_all(fd, req + i, n < 37 ? n : 37);
        usleep(2000);
    }
    ssize_t n = recv(fd, buf, sizeof(buf) - 1, 0);
    assert_true(n > 0);
    buf[n] = '\0';
    close(fd);
    assert_int_equal(status_of(buf), 101);
}

static void test_metrics_counts(void **state)
{
    (void)state;
    char h[256], resp[RESP_MAX], msg[512];
    bearer(h, sizeof(h));
    assert_int_equal(get("/does-not-exist", h, resp, sizeof(resp)), 404);
    int ws = -1;
    assert_int_equal(ws_open("/api/v1/events", h, msg, sizeof(msg), &ws), 101);
    assert_int_equal(get("/metrics", h, resp, sizeof(resp)), 200);
    assert_non_null(strstr(resp, "Content-Type: text/plain"));
    assert_non_null(strstr(resp, "capsem_http_requests_total{code=\"404\"} "));
    assert_non_null(strstr(resp, "capsem_http_requests_total{code=\"101\"} "));
    assert_non_null(strstr(resp, "\ncapsem_websockets_open 1\n"));
    assert_non_null(strstr(resp, "\ncapsem_uptime_seconds "));
    close(ws);
    /* The close reaches lws asynchronously. */
    bool zero = false;
    for (int i = 0; i < 100 && !zero; i++) {
        usleep(20000);
        assert_int_equal(get("/metrics", h, resp, sizeof(resp)), 200);
        zero = strstr(resp, "\ncapsem_websockets_open 0\n") != NULL;
    }
    assert_true(zero);
}

static void test_sniff_silent_client_dropped(void **state)
{
    (void)state;
    char resp[RESP_MAX];
    int silent = dial();
    uint64_t t0 = ms_now();
    /* Others are served at once while it says nothing. */
    for (int i = 0; i < 5; i++)
        assert_int_equal(get("/healthz", "", resp, sizeof(resp)), 200);
    assert_true(ms_now() - t0 < SNIFF_MS);
    char c;
    ssize_t n = recv(silent, &c, 1, 0);
    uint64_t waited = ms_now() - t0;
    close(silent);
    assert_int_equal(n, 0); /* closed by the server, not our 10 s timeout */
    assert_true(waited >= SNIFF_MS - 50);
    assert_true(waited < 3000);
    /* A half-sent head is also dropped at the deadline. */
    int half = dial();
    send_all(half, "GET /healthz HTTP/1.1\r\nHost: loc", 32);
    t0 = ms_now();
    n = recv(half, &c, 1, 0);
    close(half);
    assert_int_equal(n, 0);
    assert_true(ms_now() - t0 < 3000);
}

static void test_sniff_table_full_waits_in_backlog(void **state)
{
    (void)state;
    /* Fill every sniff slot with a silent client; a newcomer waits in the
     * listen backlog (not closed) and is served once slots free up. */
    enum { SILENT = HTTPD_PENDING_MAX + 8 };
    struct rlimit rl;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
    if (rl.rlim_cur < 2 * SILENT + 64) {
        if (rl.rlim_max < 2 * SILENT + 64)
            skip();
        rl.rlim_cur = 2 * SILENT + 64;
        assert_int_equal(setrlimit(RLIMIT_NOFILE, &rl), 0);
    }
    static int fds[SILENT];
    for (int i = 0; i < SILENT; i++)
        fds[i] = dial();
    char resp[RESP_MAX];
    uint64_t t0 = ms_now();
    assert_int_equal(get("/healthz", "", resp, sizeof(resp)), 200);
    assert_true(ms_now() - t0 < 5000);
    for (int i = 0; i < SILENT; i++)
        close(fds[i]);
}

static void test_sniff_non_http_routed_at_once(void **state)
{
    (void)state;
    char resp[RESP_MAX];
    uint64_t t0 = ms_now();
    int fd = dial();
    /* Looks like a TLS ClientHello, then a line end so MHD can judge it. */
    send_all(fd, "\x16\x03\x01\x00\x05hello\r\n\r\n", 14);
    read_all(fd, resp, sizeof(resp));
    close(fd);
    assert_true(ms_now() - t0 < SNIFF_MS);
    /* Closed before the sniff deadline, so the sniffer did not time it out:
     * MHD had it and dropped it (libmicrohttpd sends nothing for this). */
    assert_true(resp[0] == '\0' || status_of(resp) == 400);
}

struct par {
    int status;
};

static void *par_main(void *arg)
{
    struct par *p = arg;
    char h[256];
    static __thread char resp[RESP_MAX];
    bearer(h, sizeof(h));
    char req[1024];
    snprintf(req, sizeof(req),
             "GET /api/v1/version HTTP/1.1\r\nHost: localhost\r\n%sConnection: close\r\n\r\n", h);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    p->status = -1;
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
        goto out;
    struct timeval tv = {.tv_sec = 10};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (send(fd, req, strlen(req), MSG_NOSIGNAL) != (ssize_t)strlen(req))
        goto out;
    shutdown(fd, SHUT_WR);
    read_all(fd, resp, sizeof(resp));
    p->status = status_of(resp);
out:
    if (fd >= 0)
        close(fd);
    return NULL;
}

static void test_parallel_50_requests(void **state)
{
    (void)state;
    pthread_t t[50];
    struct par p[50];
    for (int i = 0; i < 50; i++)
        assert_int_equal(pthread_create(&t[i], NULL, par_main, &p[i]), 0);
    for (int i = 0; i < 50; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < 50; i++)
        assert_int_equal(p[i].status, 200);
}

static void test_root_placeholder(void **state)
{
    (void)state;
    char resp[RESP_MAX];
    assert_int_equal(get("/", "", resp, sizeof(resp)), 200);
    assert_non_null(strstr(resp, "Content-Type: text/html"));
    assert_non_null(strstr(body_of(resp), "dashboard is coming"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_healthz_no_auth),
        cmocka_unit_test(test_auth_token_missing_wrong_right),
        cmocka_unit_test(test_login_code_once_then_cookie),
        cmocka_unit_test(test_host_checked),
        cmocka_unit_test(test_origin_on_post),
        cmocka_unit_test(test_bad_json_400),
        cmocka_unit_test(test_route_unknown_404_method_405),
        cmocka_unit_test(test_body_over_1mib_413),
        cmocka_unit_test(test_ws_hello_with_cookie_and_origin),
        cmocka_unit_test(test_ws_refused_origin_auth_host),
        cmocka_unit_test(test_ws_upgrade_after_keepalive_503),
        cmocka_unit_test(test_ws_head_trickled),
        cmocka_unit_test(test_metrics_counts),
        cmocka_unit_test(test_sniff_silent_client_dropped),
        cmocka_unit_test(test_sniff_table_full_waits_in_backlog),
        cmocka_unit_test(test_sniff_non_http_routed_at_once),
        cmocka_unit_test(test_parallel_50_requests),
        cmocka_unit_test(test_root_placeholder),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
