/*
 * `capsem list|create|exec|stop|logs` (cli_client.h): a small blocking
 * HTTP/1.1 client (one request per connection, Connection: close) and the
 * commands that print what the daemon answers, as a table or, with --json,
 * as the daemon's JSON.
 */
#include "cli_client.h"

#include "auth.h"
#include "buf.h"
#include "cli_run.h"
#include "log.h"
#include "session_dir.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

/* Largest answer read (an exec's output is at most 2 x 16 MiB, base64'd). */
#define RESP_MAX (64u << 20)

static void home_dir(char *out, size_t len)
{
    const char *h = getenv("CAPSEM_HOME");
    const char *u = getenv("HOME");
    if (h && h[0])
        snprintf(out, len, "%s", h);
    else
        snprintf(out, len, "%s/.capsem", u && u[0] ? u : "/tmp");
}

void cli_http_resp_fini(struct cli_http_resp *resp)
{
    free(resp->body);
    resp->body = NULL;
    resp->body_len = 0;
}

static int read_token(const char *home, char tok[AUTH_SECRET_HEX + 1], char *err, size_t errlen)
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/token", home);
    FILE *f = fopen(path, "r");
    if (!f) {
        int e = errno;
        snprintf(err, errlen, "cannot read %s: %s", path, strerror(e));
        return -e;
    }
    size_t n = fread(tok, 1, AUTH_SECRET_HEX, f);
    fclose(f);
    tok[n] = '\0';
    if (n != AUTH_SECRET_HEX) {
        snprintf(err, errlen, "%s does not hold a token", path);
        return -EINVAL;
    }
    return 0;
}

static bool send_all(int fd, const char *p, size_t len)
{
    while (len) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        p += n;
        len -= (size_t)n;
    }
    return true;
}

/* Where the daemon listens, from $CAPSEM_HOME/serve.json. */
struct daemon_addr {
    char sj[4200]; /* the serve.json path, for messages */
    char host[80]; /* Host header value: 127.0.0.1:7878 or [::1]:7878 */
    char addr[64];
    int port;
    struct sockaddr_storage ss;
    socklen_t sl;
};

/* Read serve.json into *d. 0, or -ENOENT/-EINVAL with a reason in err. */
static int daemon_find(const char *home, struct daemon_addr *d, char *err, size_t errlen)
{
    int rc = 0;
    memset(d, 0, sizeof(*d));
    snprintf(d->sj, sizeof(d->sj), "%s/serve.json", home);
    json_t *cfg = json_load_file(d->sj, 0, NULL);
    const char *addr = json_string_value(json_object_get(cfg, "addr"));
    json_int_t port = json_integer_value(json_object_get(cfg, "port"));
    if (!addr || port <= 0 || port > 65535) {
        snprintf(err, errlen, "no daemon: %s is missing or bad (start `capsem serve`)", d->sj);
        rc = -ENOENT;
        goto out;
    }
    struct sockaddr_in *a4 = (struct sockaddr_in *)&d->ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&d->ss;
    bool v6 = strchr(addr, ':') != NULL;
    if (!v6 && inet_pton(AF_INET, addr, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
        d->sl = sizeof(*a4);
    } else if (v6 && inet_pton(AF_INET6, addr, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        d->sl = sizeof(*a6);
    } else {
        snprintf(err, errlen, "%s: bad address '%.64s'", d->sj, addr);
        rc = -EINVAL;
        goto out;
    }
    snprintf(d->addr, sizeof(d->addr), "%s", addr);
    d->port = (int)port;
    snprintf(d->host, sizeof(d->host), "%s%s%s:%d", v6 ? "[" : "", addr, v6 ? "]" : "", (int)port);
out:
    json_decref(cfg);
    return rc;
}

/* A blocking TCP connection to the daemon. 0 with *fd, or -errno with a reason in err. */
static int daemon_connect(const struct daemon_addr *d, int *fd, char *err, size_t errlen)
{
    int s = socket(d->ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0 || connect(s, (const struct sockaddr *)&d->ss, d->sl) < 0) {
        int e = errno;
        if (s >= 0)
            close(s);
        snprintf(err, errlen,
                 "cannot reach the daemon at %s port %d: %s (is `capsem serve` running?)", d->addr,
                 d->port, strerror(e));
        return -e;
    }
    *fd = s;
    return 0;
}

/*
 * Find the daemon of `home`, read the token into tok and connect. 0 with *fd
 * (and tok, which the caller wipes), or -errno with a reason in err.
 */
static int daemon_dial(const char *home, struct daemon_addr *d, char tok[AUTH_SECRET_HEX + 1],
                       int *fd, char *err, size_t errlen)
{
    int rc = daemon_find(home, d, err, errlen);
    if (rc)
        return rc;
    rc = read_token(home, tok, err, errlen);
    if (rc)
        return rc;
    rc = daemon_connect(d, fd, err, errlen);
    if (rc)
        memset(tok, 0, AUTH_SECRET_HEX + 1);
    return rc;
}

int cli_http(const char *home, const char *method, const char *path, const char *body,
             struct cli_http_resp *resp, char *err, size_t errlen)
{
    char tok[AUTH_SECRET_HEX + 1], head[1024];
    int fd = -1, rc = 0;
    char *buf = NULL;
    size_t len = 0, cap = 0;
    struct daemon_addr d;
    memset(resp, 0, sizeof(*resp));
    rc = daemon_dial(home, &d, tok, &fd, err, errlen);
    if (rc)
        goto out;
    size_t blen = body ? strlen(body) : 0;
    int hl = snprintf(head, sizeof(head),
                      "%s %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n"
                      "Content-Type: application/json\r\nContent-Length: %zu\r\n"
                      "Connection: close\r\n\r\n",
                      method, path, d.host, tok, blen);
    memset(tok, 0, sizeof(tok));
    if (hl < 0 || (size_t)hl >= sizeof(head) || !send_all(fd, head, (size_t)hl) ||
        (blen && !send_all(fd, body, blen))) {
        memset(head, 0, sizeof(head));
        rc = -EIO;
        snprintf(err, errlen, "cannot send the request to the daemon");
        goto out;
    }
    memset(head, 0, sizeof(head));
    for (;;) {
        if (len + 65536 + 1 > cap) {
            size_t c = cap ? cap * 2 : 131072;
            char *b = c <= 2 * RESP_MAX ? realloc(buf, c) : NULL;
            if (!b) {
                rc = -ENOMEM;
                snprintf(err, errlen, "answer too large");
                goto out;
            }
            buf = b;
            cap = c;
        }
        ssize_t n = recv(fd, buf + len, cap - len - 1, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = -errno;
            snprintf(err, errlen, "reading the answer: %s", strerror(-rc));
            goto out;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    if (!buf)
        goto bad;
    buf[len] = '\0';
    char *sp = strchr(buf, ' ');
    char *eoh = strstr(buf, "\r\n\r\n");
    if (strncmp(buf, "HTTP/1.", 7) || !sp || !eoh)
        goto bad;
    long st = strtol(sp + 1, NULL, 10);
    if (st < 100 || st > 599)
        goto bad;
    eoh += 4;
    size_t bl = len - (size_t)(eoh - buf);
    char *b = malloc(bl + 1);
    if (!b) {
        rc = -ENOMEM;
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    memcpy(b, eoh, bl);
    b[bl] = '\0';
    resp->status = (int)st;
    resp->body = b;
    resp->body_len = bl;
    goto out;
bad:
    rc = -EPROTO;
    snprintf(err, errlen, "the daemon's answer is not HTTP");
out:
    free(buf);
    if (fd >= 0)
        close(fd);
    return rc;
}

/* Print the daemon's error (or the status) for a non-2xx answer. */
static void print_http_error(const char *cmd, const struct cli_http_resp *r)
{
    json_t *j = json_loads(r->body ? r->body : "", 0, NULL);
    const char *e = json_string_value(json_object_get(j, "error"));
    fprintf(stderr, "capsem %s: %s (HTTP %d)\n", cmd, e ? e : "request failed", r->status);
    json_decref(j);
}

/* One request; 0 with *out holding the parsed JSON answer (2xx), else an exit status. */
static int call(const char *cmd, const char *method, const char *path, const char *body,
                json_t **out)
{
    char home[4096], err[512];
    struct cli_http_resp r;
    home_dir(home, sizeof(home));
    if (cli_http(home, method, path, body, &r, err, sizeof(err))) {
        fprintf(stderr, "capsem %s: %s\n", cmd, err);
        return CAPSEM_EXIT_FAILED;
    }
    int code = 0;
    if (r.status / 100 != 2) {
        print_http_error(cmd, &r);
        code = r.status == 404 ? 1 : CAPSEM_EXIT_FAILED;
    } else {
        *out = json_loadb(r.body, r.body_len, 0, NULL);
        if (!*out) {
            fprintf(stderr, "capsem %s: the daemon's answer is not JSON\n", cmd);
            code = CAPSEM_EXIT_FAILED;
        }
    }
    cli_http_resp_fini(&r);
    return code;
}

static void print_json(json_t *j)
{
    char *s = json_dumps(j, JSON_INDENT(2));
    if (s)
        printf("%s\n", s);
    free(s);
}

static bool usage_err(const char *cmd, const char *usage, const char *msg, const char *arg)
{
    fprintf(stderr, "capsem %s: %s%s%s\n%s", cmd, msg, arg ? " " : "", arg ? arg : "", usage);
    return false;
}

/* A session id in a path: only [a-z0-9-] reaches the URL. */
static bool id_ok(const char *cmd, const char *id)
{
    size_t n = strlen(id);
    if (n == 0 || n > 63 || strspn(id, "abcdefghijklmnopqrstuvwxyz0123456789-") != n) {
        fprintf(stderr, "capsem %s: '%.80s' is not a session id\n", cmd, id);
        return false;
    }
    return true;
}

/* -e K=V: set K in the env object; false when kv is not K=V with a non-empty K. */
static bool env_put(json_t *env, const char *kv)
{
    const char *eq = strchr(kv, '=');
    json_t *v = eq && eq != kv ? json_string(eq + 1) : NULL;
    return v && json_object_setn_new(env, kv, (size_t)(eq - kv), v) == 0;
}

static const char list_usage[] = "usage: capsem list [--json]\n";

int cli_list_main(int argc, char **argv)
{
    bool js = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json"))
            js = true;
        else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(list_usage, stdout);
            return 0;
        } else {
            usage_err("list", list_usage, "unknown argument", argv[i]);
            return CAPSEM_EXIT_USAGE;
        }
    }
    json_t *j = NULL;
    int code = call("list", "GET", "/api/v1/sessions", NULL, &j);
    if (code)
        return code;
    json_t *a = json_object_get(j, "sessions");
    if (js) {
        print_json(a);
    } else {
        printf("%-20s %-9s %-19s %9s %8s %9s %9s  %s\n", "ID", "STATUS", "CREATED", "UPTIME",
               "REQUESTS", "TOKENS", "COST", "COMMAND");
        size_t i;
        json_t *s;
        json_array_foreach(a, i, s)
        {
            char created[32] = "-", cmdl[256] = "";
            time_t t = (time_t)json_integer_value(json_object_get(s, "created"));
            struct tm tm;
            if (t && gmtime_r(&t, &tm))
                strftime(created, sizeof(created), "%Y-%m-%d %H:%M:%S", &tm);
            size_t k;
            json_t *w;
            size_t off = 0;
            json_array_foreach(json_object_get(s, "command"), k, w)
            {
                int n = snprintf(cmdl + off, sizeof(cmdl) - off, "%s%s", k ? " " : "",
                                 json_string_value(w) ? json_string_value(w) : "");
                if (n < 0 || (size_t)n >= sizeof(cmdl) - off)
                    break;
                off += (size_t)n;
            }
            printf("%-20s %-9s %-19s %8.0fs %8lld %9lld %9.4f  %s\n",
                   json_string_value(json_object_get(s, "id")),
                   json_string_value(json_object_get(s, "status")), created,
                   json_number_value(json_object_get(s, "uptime")),
                   (long long)json_integer_value(json_object_get(s, "requests")),
                   (long long)json_integer_value(json_object_get(s, "tokens")),
                   json_number_value(json_object_get(s, "cost")), cmdl);
            /* Why a session failed, on a line of its own under it. */
            const char *why = json_string_value(json_object_get(s, "reason"));
            const char *st = json_string_value(json_object_get(s, "status"));
            if (st && !strcmp(st, "failed") && why && why[0])
                printf("  failed: %s\n", why);
        }
    }
    json_decref(j);
    return 0;
}

static json_t *session_get(const char *home, const char *id, char *err, size_t errlen);
static int wait_running(const char *home, const char *id, bool stopped_ok, int64_t deadline,
                        unsigned timeout_s, int64_t boot_deadline, unsigned boot_timeout_s,
                        int sig_fd);
static int64_t mono_ms(void);

/* How long `capsem create` waits for its session to leave "booting" (the daemon has its own
 * limits). */
#define CREATE_WAIT_S 600u

static const char create_usage[] =
    "usage: capsem create [--name NAME] [--rootfs FILE|none] [--mem MIB] [--cpus N]\n"
    "                     [-e K=V]... [--no-net] [--policy high|medium|open]\n"
    "                     [--agent claude|gemini|codex] [--no-wait] [--json]\n"
    "                     [-- CMD [ARG...]]\n";

int cli_create_main(int argc, char **argv)
{
    bool js = false, no_wait = false;
    json_t *body = json_object(), *env = json_object(), *cmd = json_array();
    int code = CAPSEM_EXIT_USAGE;
    if (!body || !env || !cmd) {
        code = CAPSEM_EXIT_FAILED;
        goto out;
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool takes = !strcmp(a, "--name") || !strcmp(a, "--rootfs") || !strcmp(a, "--mem") ||
                     !strcmp(a, "--cpus") || !strcmp(a, "-e") || !strcmp(a, "--agent") ||
                     !strcmp(a, "--policy");
        if (!strcmp(a, "--")) {
            for (i++; i < argc; i++)
                json_array_append_new(cmd, json_string(argv[i]));
            break;
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(create_usage, stdout);
            code = 0;
            goto out;
        } else if (!strcmp(a, "--json")) {
            js = true;
        } else if (!strcmp(a, "--no-wait")) {
            no_wait = true;
        } else if (!strcmp(a, "--no-net")) {
            json_object_set_new(body, "no_net", json_true());
        } else if (takes) {
            if (i + 1 >= argc) {
                usage_err("create", create_usage, a, "needs a value");
                goto out;
            }
            const char *v = argv[++i];
            if (!strcmp(a, "--mem") || !strcmp(a, "--cpus")) {
                char *end = NULL;
                long n = strtol(v, &end, 10);
                if (!*v || *end || n < 0 || n > 1000000) {
                    usage_err("create", create_usage, a, "wants a number");
                    goto out;
                }
                json_object_set_new(body, a + 2, json_integer(n));
            } else if (!strcmp(a, "-e")) {
                if (!env_put(env, v)) {
                    usage_err("create", create_usage, "-e wants K=V, not", v);
                    goto out;
                }
            } else {
                json_object_set_new(body, a + 2, json_string(v));
            }
        } else {
            usage_err("create", create_usage, "unknown argument", a);
            goto out;
        }
    }
    if (json_array_size(cmd))
        json_object_set(body, "command", cmd);
    if (json_object_size(env))
        json_object_set(body, "env", env);
    char *s = json_dumps(body, JSON_COMPACT);
    json_t *j = NULL;
    code = s ? call("create", "POST", "/api/v1/sessions", s, &j) : CAPSEM_EXIT_FAILED;
    free(s);
    const char *id = json_string_value(json_object_get(j, "id"));
    if (!code && !no_wait && id) {
        /* Until it runs (or ran its command), as long as a boot may take. */
        char home[4096];
        home_dir(home, sizeof(home));
        int64_t bd = mono_ms() + (int64_t)CREATE_WAIT_S * 1000;
        code = wait_running(home, id, json_array_size(cmd) > 0, 0, 0, bd, CREATE_WAIT_S, -1);
        if (code == 0) {
            char gerr[600];
            json_t *now = session_get(home, id, gerr, sizeof(gerr));
            if (now) {
                json_decref(j);
                j = now;
            }
        }
    }
    if (!code) {
        if (js)
            print_json(j);
        else
            printf("%s\n", json_string_value(json_object_get(j, "id")));
    }
    json_decref(j);
out:
    json_decref(body);
    json_decref(env);
    json_decref(cmd);
    return code;
}

/* ---- WebSocket client (RFC 6455): shared by `capsem attach` and the exec stream ---- */

/* Largest frame accepted from the daemon (its messages are at most 1 MiB). */
#define WS_FRAME_MAX ((1u << 20) + 16)
/* Input buffer: a partial frame of WS_FRAME_MAX plus one read. */
#define WS_IN_CAP (WS_FRAME_MAX + 14 + 65536)

enum { WS_CONT = 0, WS_TEXT = 1, WS_BIN = 2, WS_CLOSE = 8, WS_PING = 9, WS_PONG = 10 };

/* Append one masked client frame to out. 0, or -errno (-E2BIG past out's cap). */
static int ws_frame_put(struct buf *out, int opcode, const void *p, size_t n)
{
    uint8_t hdr[14], mask[4];
    size_t hl = 0;
    hdr[hl++] = (uint8_t)(0x80 | opcode);
    if (n < 126) {
        hdr[hl++] = (uint8_t)(0x80 | n);
    } else if (n < 65536) {
        hdr[hl++] = 0x80 | 126;
        hdr[hl++] = (uint8_t)(n >> 8);
        hdr[hl++] = (uint8_t)n;
    } else {
        hdr[hl++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--)
            hdr[hl++] = (uint8_t)((uint64_t)n >> (8 * i));
    }
    if (RAND_bytes(mask, sizeof(mask)) != 1)
        return -EIO;
    memcpy(hdr + hl, mask, 4);
    hl += 4;
    int rc = buf_reserve(out, hl + n);
    if (rc)
        return rc;
    uint8_t *d = out->data + out->len;
    memcpy(d, hdr, hl);
    const uint8_t *s = p;
    for (size_t i = 0; i < n; i++)
        d[hl + i] = s[i] ^ mask[i % 4];
    out->len += hl + n;
    return 0;
}

/* Send one frame on a blocking socket; false on error. */
static bool ws_send(int fd, int opcode, const void *p, size_t n)
{
    struct buf b;
    buf_init(&b, 0);
    bool ok = ws_frame_put(&b, opcode, p, n) == 0 && send_all(fd, (const char *)b.data, b.len);
    buf_fini(&b);
    return ok;
}

/* One frame from the daemon. */
struct ws_frame {
    int op;
    bool fin;
    const uint8_t *p;
    size_t n;
    size_t size; /* header and payload: what to consume */
};

/*
 * The frame at the start of in[0..len): 1 with *f, 0 when more bytes are
 * needed, -EPROTO for what a server must not send (masked or reserved bits,
 * a frame over WS_FRAME_MAX).
 */
static int ws_frame_next(const uint8_t *in, size_t len, struct ws_frame *f)
{
    if (len < 2)
        return 0;
    if ((in[0] & 0x70) || (in[1] & 0x80))
        return -EPROTO;
    uint64_t n = in[1] & 0x7f;
    size_t off = 2;
    if (n == 126) {
        if (len < 4)
            return 0;
        n = ((uint64_t)in[2] << 8) | in[3];
        off = 4;
    } else if (n == 127) {
        if (len < 10)
            return 0;
        n = 0;
        for (int i = 0; i < 8; i++)
            n = (n << 8) | in[2 + i];
        off = 10;
    }
    if (n > WS_FRAME_MAX)
        return -EPROTO;
    if (len - off < n)
        return 0;
    f->op = in[0] & 0x0f;
    f->fin = (in[0] & 0x80) != 0;
    f->p = in + off;
    f->n = (size_t)n;
    f->size = off + (size_t)n;
    return 1;
}

/*
 * Open the daemon's WebSocket `path` (a route under /api/v1). 0 with *fd, a
 * blocking socket past the handshake; else -errno with the reason in err
 * (for a refused upgrade the daemon's JSON error and its status, also in
 * *status; 0 when nothing was answered).
 */
static int ws_open(const char *home, const char *path, int *fd_out, int *status, char *err,
                   size_t errlen)
{
    char tok[AUTH_SECRET_HEX + 1], head[1024], rh[4096], key64[32];
    uint8_t key[16];
    struct daemon_addr d;
    int fd = -1, rc;
    *status = 0;
    rc = daemon_dial(home, &d, tok, &fd, err, errlen);
    if (rc)
        return rc;
    if (RAND_bytes(key, sizeof(key)) != 1) {
        memset(tok, 0, sizeof(tok));
        snprintf(err, errlen, "no random bytes for the WebSocket key");
        rc = -EIO;
        goto out;
    }
    EVP_EncodeBlock((unsigned char *)key64, key, sizeof(key));
    int hl = snprintf(head, sizeof(head),
                      "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
                      "Authorization: Bearer %s\r\n\r\n",
                      path, d.host, key64, tok);
    memset(tok, 0, sizeof(tok));
    bool sent = hl > 0 && (size_t)hl < sizeof(head) && send_all(fd, head, (size_t)hl);
    memset(head, 0, sizeof(head));
    if (!sent) {
        snprintf(err, errlen, "cannot send the upgrade request to the daemon");
        rc = -EIO;
        goto out;
    }
    /* The answer head, byte by byte so no frame bytes are taken with it. */
    size_t rl = 0;
    while (rl + 1 < sizeof(rh) && (rl < 4 || memcmp(rh + rl - 4, "\r\n\r\n", 4))) {
        ssize_t n = recv(fd, rh + rl, 1, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        rl++;
    }
    rh[rl] = '\0';
    if (!strncmp(rh, "HTTP/1.1 101", 12) && rl >= 4 && !memcmp(rh + rl - 4, "\r\n\r\n", 4)) {
        *fd_out = fd;
        return 0;
    }
    /* Refused: the status and the JSON body {"error": ...} (the daemon closes after it). */
    long st = !strncmp(rh, "HTTP/1.", 7) && rl > 9 ? strtol(rh + 9, NULL, 10) : 0;
    *status = st >= 100 && st <= 599 ? (int)st : 0;
    char body[1024];
    size_t bl = 0;
    while (rl > 0 && bl + 1 < sizeof(body)) {
        ssize_t n = recv(fd, body + bl, sizeof(body) - 1 - bl, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        bl += (size_t)n;
    }
    body[bl] = '\0';
    json_t *j = json_loadb(body, bl, 0, NULL);
    const char *e = json_string_value(json_object_get(j, "error"));
    if (*status)
        snprintf(err, errlen, "%s (HTTP %d)", e ? e : "the daemon refused the WebSocket", *status);
    else
        snprintf(err, errlen, "the daemon closed the connection during the WebSocket handshake");
    json_decref(j);
    rc = -ECONNREFUSED;
out:
    close(fd);
    return rc;
}

/* ---- the exec stream: GET /api/v1/sessions/{id}/exec (docs/api.md "Exec stream") ---- */

/* Stdin is read while less than this waits to be sent. */
#define XS_OUT_LOW (256u << 10)
#define XS_STDIN_CHUNK (32u << 10)

struct xstream {
    const char *prog; /* message prefix: "capsem" or "capsem exec" */
    const char *cmd;  /* the command's name, for the guest's reason it could not run */
    int fd;
    struct buf in, out;
    struct buf text;  /* a text message being put together from fragments */
    int msg_op;       /* opcode of the message in progress (for continuations) */
    int msg_stream;   /* 1 or 2: where a binary message's bytes go */
    bool started;     /* the daemon said "started" */
    bool interrupted; /* a SIGINT was forwarded */
    bool termed;      /* a SIGTERM was forwarded */
    bool stdin_open;
    bool stdout_broken;
    bool done;
    bool unknown_is_1; /* "no such session" exits 1 (capsem exec, like a 404) */
    int code;
};

static int xs_queue_text(struct xstream *x, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int xs_queue_text(struct xstream *x, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(msg))
        return -EINVAL;
    return ws_frame_put(&x->out, WS_TEXT, msg, (size_t)n);
}

/* Write all of p to fd, waiting for room when fd is non-blocking; false when it is gone. */
static bool write_fd_all(int fd, const uint8_t *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno == EAGAIN) {
            struct pollfd pf = {.fd = fd, .events = POLLOUT};
            if (poll(&pf, 1, -1) < 0 && errno != EINTR)
                return false;
            continue;
        }
        return false;
    }
    return true;
}

static void xs_output(struct xstream *x, int stream, const uint8_t *p, size_t n)
{
    if (!n)
        return;
    if (stream == 2) {
        write_fd_all(STDERR_FILENO, p, n);
        return;
    }
    if (stream != 1 || x->stdout_broken)
        return;
    if (!write_fd_all(STDOUT_FILENO, p, n)) {
        /* Like a local pipeline: a closed stdout ends the writer with SIGPIPE. */
        x->stdout_broken = true;
        if (xs_queue_text(x, "{\"type\":\"signal\",\"signal\":%d}", SIGPIPE))
            LOG_WARN("event=sigpipe_forward_failed");
    }
}

static void xs_text(struct xstream *x, const uint8_t *p, size_t n)
{
    json_t *j = json_loadb((const char *)p, n, 0, NULL);
    const char *type = json_string_value(json_object_get(j, "type"));
    if (!type) {
        LOG_WARN("event=exec_stream_bad_message len=%zu", n);
    } else if (!strcmp(type, "started")) {
        x->started = true;
    } else if (!strcmp(type, "exit")) {
        json_int_t c = json_integer_value(json_object_get(j, "code"));
        /* Why the guest could not run it (126, 127), when the daemon says. */
        const char *e = json_string_value(json_object_get(j, "error"));
        if (e && e[0]) {
            char esc[600];
            log_escape(esc, sizeof(esc), e, strlen(e));
            fprintf(stderr, "%s: %s: %s\n", x->prog, x->cmd, esc);
        }
        if (json_is_true(json_object_get(j, "timed_out"))) {
            fprintf(stderr, "%s: timed out\n", x->prog);
            x->code = CAPSEM_EXIT_TIMEOUT;
        } else {
            x->code = c >= 0 && c <= 255 ? (int)c : CAPSEM_EXIT_FAILED;
        }
        x->done = true;
    } else if (!strcmp(type, "error")) {
        const char *e = json_string_value(json_object_get(j, "error"));
        char esc[600];
        log_escape(esc, sizeof(esc), e ? e : "", e ? strlen(e) : 0);
        fprintf(stderr, "%s: %s\n", x->prog, e ? esc : "the daemon ended the command");
        /* docs/api.md names this reason for an unknown session. */
        x->code = x->unknown_is_1 && e && !strcmp(e, "no such session") ? 1 : CAPSEM_EXIT_FAILED;
        x->done = true;
    }
    json_decref(j);
}

/* Handle one frame; false when the stream is over or broken. */
static bool xs_frame(struct xstream *x, const struct ws_frame *f)
{
    switch (f->op) {
    case WS_BIN:
        if (!f->n)
            return true;
        x->msg_op = WS_BIN;
        x->msg_stream = f->p[0];
        xs_output(x, x->msg_stream, f->p + 1, f->n - 1);
        return true;
    case WS_TEXT:
        x->msg_op = WS_TEXT;
        x->text.len = 0;
        __attribute__((fallthrough));
    case WS_CONT:
        if (x->msg_op == WS_BIN) {
            xs_output(x, x->msg_stream, f->p, f->n);
            return true;
        }
        if (x->msg_op != WS_TEXT || buf_append(&x->text, f->p, f->n)) {
            fprintf(stderr, "%s: bad message from the daemon\n", x->prog);
            return false;
        }
        if (f->fin) {
            x->msg_op = WS_CONT;
            xs_text(x, x->text.data, x->text.len);
        }
        return !x->done;
    case WS_PING:
        return ws_frame_put(&x->out, WS_PONG, f->p, f->n) == 0;
    case WS_CLOSE:
        if (!x->done) {
            unsigned cc = f->n >= 2 ? ((unsigned)f->p[0] << 8) | f->p[1] : 1005;
            fprintf(stderr, "%s: the daemon closed the command's stream (%u) before its exit\n",
                    x->prog, cc);
            x->code = CAPSEM_EXIT_FAILED;
            x->done = true;
        }
        return false;
    default:
        return true;
    }
}

/* Send what is queued without blocking; false when the connection is gone. */
static bool xs_flush(struct xstream *x)
{
    while (x->out.len) {
        ssize_t n = send(x->fd, x->out.data, x->out.len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            buf_consume(&x->out, (size_t)n);
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
    }
    return true;
}

static void xs_stdin(struct xstream *x)
{
    static uint8_t chunk[XS_STDIN_CHUNK];
    ssize_t n = read(STDIN_FILENO, chunk, sizeof(chunk));
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return;
    if (n > 0 && ws_frame_put(&x->out, WS_BIN, chunk, (size_t)n) == 0)
        return;
    x->stdin_open = false;
    if (xs_queue_text(x, "{\"type\":\"eof\"}"))
        LOG_WARN("event=stdin_eof_not_sent");
}

/* A signal while the command runs; false when capsem leaves now. */
static bool xs_signal(struct xstream *x, int sig)
{
    bool *sent = sig == SIGINT ? &x->interrupted : sig == SIGTERM ? &x->termed : NULL;
    /* The first Ctrl-C (or SIGTERM) goes to the command, as ssh does; a second leaves. */
    if (sent && !*sent && x->started) {
        *sent = true;
        if (xs_queue_text(x, "{\"type\":\"signal\",\"signal\":%d}", sig) == 0)
            return true;
    }
    x->code = 128 + sig;
    return false;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int cli_exec_stream(const char *home, const char *id, const struct cli_exec_stream_req *rq)
{
    struct xstream x = {.prog = rq->prog ? rq->prog : "capsem",
                        .cmd = rq->argc ? rq->argv[0] : "",
                        .fd = -1,
                        .stdin_open = true,
                        .unknown_is_1 = rq->unknown_session_1};
    char path[160], err[1200];
    char *start = NULL;
    int status = 0;
    json_t *msg = NULL, *av = NULL;
    buf_init(&x.in, WS_IN_CAP);
    buf_init(&x.out, 0);
    buf_init(&x.text, WS_FRAME_MAX);
    x.code = CAPSEM_EXIT_FAILED;
    msg = json_object();
    av = json_array();
    if (!msg || !av)
        goto out;
    for (size_t i = 0; i < rq->argc; i++)
        json_array_append_new(av, json_string(rq->argv[i]));
    json_object_set_new(msg, "type", json_string("start"));
    json_object_set(msg, "argv", av);
    if (json_object_size(rq->env))
        json_object_set(msg, "env", rq->env);
    if (rq->cwd)
        json_object_set_new(msg, "cwd", json_string(rq->cwd));
    json_object_set_new(msg, "timeout_s", json_integer(rq->timeout_s));
    json_object_set_new(msg, "tty", json_false());
    start = json_dumps(msg, JSON_COMPACT);
    if (!start)
        goto out;
    snprintf(path, sizeof(path), "/api/v1/sessions/%s/exec", id);
    if (ws_open(home, path, &x.fd, &status, err, sizeof(err))) {
        fprintf(stderr, "%s: %s\n", x.prog, err);
        x.code = status == 404 ? 1 : CAPSEM_EXIT_FAILED;
        goto out;
    }
    if (ws_frame_put(&x.out, WS_TEXT, start, strlen(start)))
        goto out;
    struct stat st;
    if (fstat(STDIN_FILENO, &st) < 0) /* stdin closed: the command sees an empty input */
        xs_stdin(&x);
    while (!x.done) {
        int timeout = -1;
        if (rq->deadline_ms) {
            int64_t left = rq->deadline_ms - mono_ms();
            if (left <= 0) {
                fprintf(stderr, "capsem: timed out after %u s\n", rq->timeout_total_s);
                x.code = CAPSEM_EXIT_TIMEOUT;
                break;
            }
            timeout = left > INT_MAX ? INT_MAX : (int)left;
        }
        if (!xs_flush(&x)) {
            fprintf(stderr, "%s: lost the connection to the daemon\n", x.prog);
            break;
        }
        bool want_in = x.stdin_open && x.out.len < XS_OUT_LOW;
        struct pollfd p[3] = {
            {.fd = x.fd, .events = (short)(POLLIN | (x.out.len ? POLLOUT : 0))},
            {.fd = want_in ? STDIN_FILENO : -1, .events = POLLIN},
            {.fd = rq->sig_fd, .events = POLLIN},
        };
        if (poll(p, 3, timeout) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (p[2].revents & POLLIN) {
            struct signalfd_siginfo si;
            if (read(rq->sig_fd, &si, sizeof(si)) == (ssize_t)sizeof(si) &&
                !xs_signal(&x, (int)si.ssi_signo))
                break;
        }
        if (p[1].revents & (POLLIN | POLLHUP | POLLERR))
            xs_stdin(&x);
        if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
            if (buf_reserve(&x.in, 65536)) {
                fprintf(stderr, "%s: bad frame from the daemon\n", x.prog);
                break;
            }
            ssize_t n = recv(x.fd, x.in.data + x.in.len, 65536, MSG_DONTWAIT);
            if (n < 0 && (errno == EINTR || errno == EAGAIN))
                continue;
            if (n <= 0) {
                fprintf(stderr, "%s: the daemon closed the connection before the command's exit\n",
                        x.prog);
                break;
            }
            x.in.len += (size_t)n;
            size_t used = 0;
            struct ws_frame f;
            int r;
            bool go = true;
            while (go && (r = ws_frame_next(x.in.data + used, x.in.len - used, &f)) > 0) {
                used += f.size;
                go = xs_frame(&x, &f);
            }
            buf_consume(&x.in, used);
            if (go && r < 0) {
                fprintf(stderr, "%s: bad frame from the daemon\n", x.prog);
                break;
            }
            if (!go)
                break;
        }
    }
    /* A normal close; leaving without an exit kills the command (docs/api.md). */
    x.out.len = 0;
    if (x.fd >= 0 && ws_frame_put(&x.out, WS_CLOSE, "\x03\xe8", 2) == 0)
        send(x.fd, x.out.data, x.out.len, MSG_NOSIGNAL | MSG_DONTWAIT);
out:
    if (x.fd >= 0)
        close(x.fd);
    free(start);
    json_decref(msg);
    json_decref(av);
    buf_fini(&x.in);
    buf_fini(&x.out);
    buf_fini(&x.text);
    return x.code;
}

static const char exec_usage[] =
    "usage: capsem exec [--json] [--timeout S] [-e K=V]... [--cwd DIR] [--stdin] ID -- CMD "
    "[ARG...]\n"
    "Run CMD in running session ID: its output as it comes, this process's stdin sent to\n"
    "it, capsem's exit status is its status. The first Ctrl-C goes to the command.\n"
    "  --timeout S  kill the command after S seconds (1-3600; exit 124)\n"
    "  --json       wait for the end and print the daemon's JSON answer (default limit\n"
    "               60 s; stdin only with --stdin, read to the end first, up to 768 KiB)\n";

/* Write decoded output field `f` of j to fd. */
static void emit(json_t *j, const char *f, bool b64, FILE *to)
{
    const char *s = json_string_value(json_object_get(j, f));
    size_t n = json_string_length(json_object_get(j, f));
    if (!s || !n)
        return;
    if (!b64) {
        fwrite(s, 1, n, to);
        return;
    }
    unsigned char *o = malloc(n / 4 * 3 + 4);
    int k = o ? EVP_DecodeBlock(o, (const unsigned char *)s, (int)n) : -1;
    if (k > 0) {
        size_t len = (size_t)k;
        if (n >= 1 && s[n - 1] == '=')
            len--;
        if (n >= 2 && s[n - 2] == '=')
            len--;
        fwrite(o, 1, len, to);
    }
    free(o);
}

int cli_exec_main(int argc, char **argv)
{
    bool js = false, with_stdin = false;
    const char *id = NULL;
    json_t *body = json_object(), *env = json_object(), *av = json_array();
    int code = CAPSEM_EXIT_USAGE;
    char *in = NULL;
    if (!body || !env || !av) {
        code = CAPSEM_EXIT_FAILED;
        goto out;
    }
    int i = 1;
    for (; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--")) {
            i++;
            break;
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(exec_usage, stdout);
            code = 0;
            goto out;
        } else if (!strcmp(a, "--json")) {
            js = true;
        } else if (!strcmp(a, "--stdin")) {
            with_stdin = true;
        } else if (!strcmp(a, "--timeout") || !strcmp(a, "-e") || !strcmp(a, "--cwd")) {
            if (i + 1 >= argc) {
                usage_err("exec", exec_usage, a, "needs a value");
                goto out;
            }
            const char *v = argv[++i];
            if (!strcmp(a, "--timeout")) {
                char *end = NULL;
                long n = strtol(v, &end, 10);
                if (!*v || *end || n < 1 || n > 3600) {
                    usage_err("exec", exec_usage, "--timeout wants 1..3600 seconds, not", v);
                    goto out;
                }
                json_object_set_new(body, "timeout", json_integer(n));
            } else if (!strcmp(a, "--cwd")) {
                json_object_set_new(body, "cwd", json_string(v));
            } else if (!env_put(env, v)) {
                usage_err("exec", exec_usage, "-e wants K=V, not", v);
                goto out;
            }
        } else if (!id && a[0] != '-') {
            id = a;
        } else {
            usage_err("exec", exec_usage, "unknown argument", a);
            goto out;
        }
    }
    if (!id || i >= argc) {
        usage_err("exec", exec_usage, id ? "no command after --" : "no session id", NULL);
        goto out;
    }
    if (!id_ok("exec", id))
        goto out;
    if (!js) {
        /* Streamed: output as it comes, stdin forwarded, signals passed on. */
        char home[4096];
        sigset_t mask, old;
        bool masked = cli_block_signals(0, &mask, &old);
        signal(SIGPIPE, SIG_IGN);
        int sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
        struct cli_exec_stream_req rq = {
            .prog = "capsem exec",
            .argv = (const char *const *)argv + i,
            .argc = (size_t)(argc - i),
            .env = env,
            .cwd = json_string_value(json_object_get(body, "cwd")),
            .timeout_s = (unsigned)json_integer_value(json_object_get(body, "timeout")),
            .sig_fd = sfd,
            .unknown_session_1 = true,
        };
        home_dir(home, sizeof(home));
        code = CAPSEM_EXIT_FAILED;
        if (sfd < 0)
            fprintf(stderr, "capsem exec: cannot watch signals: %s\n", strerror(errno));
        else
            code = cli_exec_stream(home, id, &rq);
        if (sfd >= 0)
            close(sfd);
        if (masked)
            sigprocmask(SIG_SETMASK, &old, NULL);
        goto out;
    }
    for (; i < argc; i++)
        json_array_append_new(av, json_string(argv[i]));
    json_object_set(body, "argv", av);
    if (json_object_size(env))
        json_object_set(body, "env", env);
    json_object_set_new(body, "text", json_false());
    if (with_stdin) {
        size_t len = 0, cap = 0;
        for (;;) {
            if (len + 65536 > cap) {
                cap = cap ? cap * 2 : 65536;
                char *b = cap <= (768u << 10) ? realloc(in, cap) : NULL;
                if (!b) {
                    fprintf(stderr, "capsem exec: stdin over 768 KiB is not supported\n");
                    code = CAPSEM_EXIT_FAILED;
                    goto out;
                }
                in = b;
            }
            ssize_t n = read(0, in + len, cap - len);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                break;
            len += (size_t)n;
        }
        size_t elen = 4 * ((len + 2) / 3) + 1;
        unsigned char *e = malloc(elen);
        if (!e) {
            code = CAPSEM_EXIT_FAILED;
            goto out;
        }
        int en = EVP_EncodeBlock(e, (const unsigned char *)(in ? in : ""), (int)len);
        json_object_set_new(body, "stdin", json_stringn((const char *)e, en > 0 ? (size_t)en : 0));
        json_object_set_new(body, "stdin_base64", json_true());
        free(e);
    }
    char path[128];
    snprintf(path, sizeof(path), "/api/v1/sessions/%s/exec", id);
    char *s = json_dumps(body, JSON_COMPACT);
    json_t *j = NULL;
    code = s ? call("exec", "POST", path, s, &j) : CAPSEM_EXIT_FAILED;
    free(s);
    if (code)
        goto out;
    if (js) {
        print_json(j);
    } else {
        bool b64 = json_is_true(json_object_get(j, "base64"));
        emit(j, "stdout", b64, stdout);
        fflush(stdout);
        emit(j, "stderr", b64, stderr);
        const char *e = json_string_value(json_object_get(j, "error"));
        if (e && e[0])
            fprintf(stderr, "capsem exec: %s\n", e);
        if (json_is_true(json_object_get(j, "truncated")))
            fprintf(stderr, "capsem exec: output truncated at 16 MiB\n");
    }
    if (json_is_true(json_object_get(j, "timed_out"))) {
        if (!js)
            fprintf(stderr, "capsem exec: timed out\n");
        code = CAPSEM_EXIT_TIMEOUT;
    } else {
        json_int_t ec = json_integer_value(json_object_get(j, "exit_code"));
        code = ec >= 0 && ec <= 255 ? (int)ec : CAPSEM_EXIT_FAILED;
    }
    json_decref(j);
out:
    free(in);
    json_decref(body);
    json_decref(env);
    json_decref(av);
    return code;
}

static const char stop_usage[] = "usage: capsem stop [--purge] [--json] ID\n";

int cli_stop_main(int argc, char **argv)
{
    bool js = false, purge = false;
    const char *id = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json"))
            js = true;
        else if (!strcmp(argv[i], "--purge"))
            purge = true;
        else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(stop_usage, stdout);
            return 0;
        } else if (!id && argv[i][0] != '-') {
            id = argv[i];
        } else {
            usage_err("stop", stop_usage, "unknown argument", argv[i]);
            return CAPSEM_EXIT_USAGE;
        }
    }
    if (!id) {
        usage_err("stop", stop_usage, "no session id", NULL);
        return CAPSEM_EXIT_USAGE;
    }
    if (!id_ok("stop", id))
        return CAPSEM_EXIT_USAGE;
    char path[128];
    snprintf(path, sizeof(path), "/api/v1/sessions/%s%s", id, purge ? "?purge=1" : "");
    json_t *j = NULL;
    int code = call("stop", "DELETE", path, NULL, &j);
    if (code)
        return code;
    if (js)
        print_json(j);
    else
        printf("%s %s\n", id, json_string_value(json_object_get(j, "status")));
    json_decref(j);
    return 0;
}

static const char logs_usage[] = "usage: capsem logs ID\n"
                                 "Print the session's VM console log (vm.log).\n";

int cli_logs_main(int argc, char **argv)
{
    const char *id = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(logs_usage, stdout);
            return 0;
        } else if (!id && argv[i][0] != '-') {
            id = argv[i];
        } else {
            usage_err("logs", logs_usage, "unknown argument", argv[i]);
            return CAPSEM_EXIT_USAGE;
        }
    }
    if (!id) {
        usage_err("logs", logs_usage, "no session id", NULL);
        return CAPSEM_EXIT_USAGE;
    }
    if (!id_ok("logs", id))
        return CAPSEM_EXIT_USAGE;
    char path[128], home[4096], err[512], log[4096] = "";
    home_dir(home, sizeof(home));
    snprintf(path, sizeof(path), "/api/v1/sessions/%s", id);
    struct cli_http_resp r;
    json_t *j = NULL;
    if (cli_http(home, "GET", path, NULL, &r, err, sizeof(err)) == 0) {
        if (r.status == 404) {
            fprintf(stderr, "capsem logs: no session '%s'\n", id);
            cli_http_resp_fini(&r);
            return 1;
        }
        j = json_loadb(r.body, r.body_len, 0, NULL);
        cli_http_resp_fini(&r);
    } else {
        /* No daemon: the session's own record. */
        char sj[4300];
        snprintf(sj, sizeof(sj), "%s/sessions/%s/session.json", home, id);
        j = json_load_file(sj, 0, NULL);
    }
    const char *lp = json_string_value(json_object_get(j, "log"));
    if (lp)
        snprintf(log, sizeof(log), "%s", lp);
    json_decref(j);
    if (!log[0]) {
        fprintf(stderr, "capsem logs: no log is known for session '%s'\n", id);
        return 1;
    }
    FILE *f = fopen(log, "r");
    if (!f) {
        fprintf(stderr, "capsem logs: cannot open %s: %s\n", log, strerror(errno));
        return 1;
    }
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
        fwrite(buf, 1, n, stdout);
    fclose(f);
    return 0;
}

/* ---- capsem attach: the terminal WebSocket from this terminal ---- */

static volatile sig_atomic_t winch;

static void on_winch(int sig)
{
    (void)sig;
    winch = 1;
}

static void ws_resize(int fd)
{
    struct winsize ws;
    char msg[96];
    if (ioctl(STDIN_FILENO, TIOCGWINSZ, &ws) < 0 || !ws.ws_col || !ws.ws_row)
        return;
    int n = snprintf(msg, sizeof(msg), "{\"type\":\"resize\",\"cols\":%u,\"rows\":%u}",
                     (unsigned)ws.ws_col, (unsigned)ws.ws_row);
    if (n > 0)
        ws_send(fd, WS_TEXT, msg, (size_t)n);
}

static const char attach_usage[] =
    "usage: capsem attach ID   (also: capsem shell ID)\n"
    "Open session ID's terminal (shared with every other viewer). Ctrl-] detaches;\n"
    "the shell keeps running in the session.\n";

int cli_attach_main(int argc, char **argv)
{
    char home[4096], err[1200], path[160];
    const char *id = argc == 2 ? argv[1] : NULL;
    int fd = -1, code = CAPSEM_EXIT_FAILED, status = 0;
    bool raw = false;
    struct termios saved;
    struct buf in;
    buf_init(&in, WS_IN_CAP);
    if (id && (!strcmp(id, "-h") || !strcmp(id, "--help"))) {
        fputs(attach_usage, stdout);
        return 0;
    }
    if (!id) {
        fputs(attach_usage, stderr);
        return CAPSEM_EXIT_USAGE;
    }
    if (!id_ok("attach", id))
        return CAPSEM_EXIT_USAGE;
    home_dir(home, sizeof(home));
    snprintf(path, sizeof(path), "/api/v1/sessions/%s/terminal", id);
    if (ws_open(home, path, &fd, &status, err, sizeof(err))) {
        fprintf(stderr, "capsem attach: %s\n", err);
        code = status ? 1 : CAPSEM_EXIT_FAILED;
        goto out;
    }
    if (isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &saved) == 0) {
        struct termios r = saved;
        cfmakeraw(&r);
        raw = tcsetattr(STDIN_FILENO, TCSANOW, &r) == 0;
    }
    signal(SIGWINCH, on_winch);
    ws_resize(fd);
    code = 0;
    bool stdin_open = true;
    for (;;) {
        if (winch) {
            winch = 0;
            ws_resize(fd);
        }
        struct pollfd p[2] = {{.fd = fd, .events = POLLIN},
                              {.fd = stdin_open ? STDIN_FILENO : -1, .events = POLLIN}};
        if (poll(p, 2, 250) < 0 && errno != EINTR)
            break;
        if (p[1].revents & (POLLIN | POLLHUP)) {
            uint8_t b[4096];
            ssize_t n = read(STDIN_FILENO, b, sizeof(b));
            if (n <= 0) {
                stdin_open = false;
            } else {
                uint8_t *det = memchr(b, 0x1d, (size_t)n);
                size_t k = det ? (size_t)(det - b) : (size_t)n;
                if (k && !ws_send(fd, WS_BIN, b, k))
                    break;
                if (det)
                    break;
            }
        }
        if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
            if (buf_reserve(&in, 65536))
                break;
            ssize_t n = recv(fd, in.data + in.len, 65536, 0);
            if (n <= 0)
                break;
            in.len += (size_t)n;
            size_t used = 0;
            struct ws_frame f;
            bool end = false;
            int r;
            while (!end && (r = ws_frame_next(in.data + used, in.len - used, &f)) > 0) {
                used += f.size;
                if ((f.op == WS_BIN || f.op == WS_CONT) && fwrite(f.p, 1, f.n, stdout) == f.n)
                    fflush(stdout);
                else if (f.op == WS_PING)
                    ws_send(fd, WS_PONG, f.p, f.n);
                else if (f.op == WS_CLOSE)
                    end = true;
            }
            buf_consume(&in, used);
            if (end || r < 0)
                break;
        }
    }
out:
    if (raw) {
        tcsetattr(STDIN_FILENO, TCSANOW, &saved);
        fputs("\r\n", stderr);
    }
    if (fd >= 0)
        close(fd);
    buf_fini(&in);
    return code;
}

/* ---- capsem run inside a running daemon ---- */

/* Session `id`'s JSON from the daemon, or NULL with the reason in err. */
static json_t *session_get(const char *home, const char *id, char *err, size_t errlen)
{
    char path[160];
    struct cli_http_resp r;
    json_t *j = NULL;
    snprintf(path, sizeof(path), "/api/v1/sessions/%s", id);
    if (cli_http(home, "GET", path, NULL, &r, err, errlen))
        return NULL;
    if (r.status == 200)
        j = json_loadb(r.body, r.body_len, 0, NULL);
    if (!j)
        snprintf(err, errlen, "the daemon answered HTTP %d about session %s", r.status, id);
    cli_http_resp_fini(&r);
    return j;
}

/*
 * Wait up to 100 ms for a signal on sig_fd; returns it, or 0 when none came.
 * The wait is what paces the polling of the session's status.
 */
static int wait_signal(int sig_fd, int ms)
{
    struct pollfd p = {.fd = sig_fd, .events = POLLIN};
    if (poll(&p, 1, ms) <= 0)
        return 0;
    struct signalfd_siginfo si;
    if (read(sig_fd, &si, sizeof(si)) != (ssize_t)sizeof(si))
        return 0;
    return (int)si.ssi_signo;
}

/*
 * Poll session id every 100 ms until it runs (or, with stopped_ok, has
 * already run its command and stopped): 0, or the exit code after a line on
 * stderr (CAPSEM_EXIT_FAILED when it failed or stopped, with its reason; CAPSEM_EXIT_TIMEOUT past
 * `deadline` (0 = none); 128+N on a signal from sig_fd (-1 = none)). boot_deadline bounds the boot
 * itself.
 */
static int wait_running(const char *home, const char *id, bool stopped_ok, int64_t deadline,
                        unsigned timeout_s, int64_t boot_deadline, unsigned boot_timeout_s,
                        int sig_fd)
{
    char err[600];
    for (;;) {
        json_t *j = session_get(home, id, err, sizeof(err));
        const char *st = json_string_value(json_object_get(j, "status"));
        if (!j || !st) {
            fprintf(stderr, "capsem: %s\n", err);
            json_decref(j);
            return CAPSEM_EXIT_FAILED;
        }
        if (!strcmp(st, "running") || (stopped_ok && !strcmp(st, "stopped"))) {
            json_decref(j);
            return 0;
        }
        if (strcmp(st, "booting")) {
            const char *why = json_string_value(json_object_get(j, "reason"));
            const char *log = json_string_value(json_object_get(j, "log"));
            fprintf(stderr, "capsem: the daemon's session %s %s: %s\n", id, st,
                    why && why[0] ? why : "no reason given");
            if (log && log[0])
                fprintf(stderr, "capsem: the VM log is kept at %s\n", log);
            json_decref(j);
            return CAPSEM_EXIT_FAILED;
        }
        json_decref(j);
        int64_t now = mono_ms();
        if (deadline && now >= deadline) {
            fprintf(stderr, "capsem: timed out after %u s\n", timeout_s);
            return CAPSEM_EXIT_TIMEOUT;
        }
        if (now >= boot_deadline) {
            /* Only `capsem run` (the caller with a signal fd) has --boot-timeout. */
            fprintf(stderr, "capsem: the guest was not ready within %u s%s\n", boot_timeout_s,
                    sig_fd >= 0 ? " (--boot-timeout)" : "");
            return CAPSEM_EXIT_FAILED;
        }
        int sig = sig_fd >= 0 ? wait_signal(sig_fd, 100) : (poll(NULL, 0, 100), 0);
        if (sig)
            return 128 + sig;
    }
}

/* The run's options that a daemon session cannot take, or NULL. */
static const char *daemon_refuses(const struct cli_run_opts *o)
{
    if (o->kernel)
        return "--kernel";
    if (o->initrd)
        return "--initrd";
    if (o->append)
        return "--append";
    if (o->workspace)
        return "--workspace";
    if (o->scratch_bytes)
        return "--scratch";
    return NULL;
}

/* The create body for these options (see docs/api.md, Sessions), or NULL. */
static json_t *create_body(const struct cli_run_opts *o)
{
    json_t *b = json_object(), *env = json_object();
    if (!b || !env)
        goto fail;
    if (o->name)
        json_object_set_new(b, "name", json_string(o->name));
    json_object_set_new(b, "mem", json_integer(o->mem_mib));
    json_object_set_new(b, "cpus", json_integer(o->cpus));
    for (size_t i = 0; i < o->n_env; i++) {
        /* cli_run_parse checked NAME=VALUE with a NAME of letters, digits and _. */
        const char *eq = strchr(o->env[i], '=');
        json_t *v = json_string(eq + 1);
        if (!v || json_object_setn_new(env, o->env[i], (size_t)(eq - o->env[i]), v))
            goto fail;
    }
    if (json_object_size(env))
        json_object_set(b, "env", env);
    if (o->rootfs && !strcmp(o->rootfs, "none")) {
        json_object_set_new(b, "rootfs", json_string("none"));
    } else if (o->rootfs) {
        /* The daemon has its own working directory: name the image absolutely. */
        char *abs = realpath(o->rootfs, NULL);
        json_object_set_new(b, "rootfs", json_string(abs ? abs : o->rootfs));
        free(abs);
    }
    if (o->no_net)
        json_object_set_new(b, "no_net", json_true());
    if (o->policy)
        json_object_set_new(b, "policy", json_string(o->policy));
    json_decref(env);
    return b;
fail:
    json_decref(b);
    json_decref(env);
    return NULL;
}

/* Stop session id (data kept) and wait, within a bound, until its VM is gone. */
static void session_stop_wait(const char *home, const char *id, int sig_fd)
{
    char path[160], err[600];
    struct cli_http_resp r;
    snprintf(path, sizeof(path), "/api/v1/sessions/%s", id);
    if (cli_http(home, "DELETE", path, NULL, &r, err, sizeof(err))) {
        LOG_WARN("event=daemon_stop_failed session=%s reason=\"%s\"", id, err);
        return;
    }
    int st = r.status;
    cli_http_resp_fini(&r);
    if (st != 200) {
        LOG_WARN("event=daemon_stop_failed session=%s status=%d", id, st);
        return;
    }
    /* Like a standalone run, return once the VM is gone (bounded: 30 s; a signal leaves). */
    int64_t end = mono_ms() + 30000;
    while (mono_ms() < end) {
        json_t *j = session_get(home, id, err, sizeof(err));
        const char *s = json_string_value(json_object_get(j, "status"));
        bool gone = !j || (s && (!strcmp(s, "stopped") || !strcmp(s, "failed")));
        json_decref(j);
        if (gone || wait_signal(sig_fd, 100))
            return;
    }
    LOG_WARN("event=daemon_stop_slow session=%s", id);
}

int cli_run_daemon(const struct cli_run_opts *o, bool *handled)
{
    char home[4096], err[1200], id[SESSION_NAME_MAX + 1] = "";
    struct cli_http_resp r = {0};
    json_t *body = NULL, *j = NULL;
    char *s = NULL;
    int code = CAPSEM_EXIT_FAILED, sig_fd = -1;
    sigset_t mask, old;
    bool masked = false;
    int64_t t0 = mono_ms();
    *handled = false;
    home_dir(home, sizeof(home));
    char sj[4200];
    snprintf(sj, sizeof(sj), "%s/serve.json", home);
    if (access(sj, F_OK) < 0) {
        LOG_DEBUG("event=standalone reason=no_daemon");
        return 0;
    }
    if (cli_http(home, "GET", "/api/v1/version", NULL, &r, err, sizeof(err))) {
        /* A serve.json left by a daemon that is gone: run as if there were none. */
        LOG_INFO("event=standalone reason=\"%s\"", err);
        return 0;
    }
    *handled = true;
    if (r.status != 200) {
        fprintf(stderr,
                "capsem: the daemon (%s/serve.json) answered HTTP %d; fix it or add --standalone "
                "to boot a VM of this run's own\n",
                home, r.status);
        goto out;
    }
    const char *no = daemon_refuses(o);
    if (no) {
        fprintf(stderr,
                "capsem: %s is not available in a session of the running daemon (capsem serve); "
                "add --standalone to boot a VM of this run's own\n",
                no);
        code = CAPSEM_EXIT_USAGE;
        goto out;
    }
    masked = cli_block_signals(0, &mask, &old);
    signal(SIGPIPE, SIG_IGN);
    sig_fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    if (sig_fd < 0) {
        fprintf(stderr, "capsem: cannot watch signals: %s\n", strerror(errno));
        goto out;
    }
    int64_t deadline = o->timeout_s ? t0 + (int64_t)o->timeout_s * 1000 : 0;
    int64_t boot_deadline = t0 + (int64_t)o->boot_timeout_s * 1000;
    bool existed = false;
    if (o->name) {
        char dir[4400];
        struct stat st;
        snprintf(dir, sizeof(dir), "%s/sessions/%s", home, o->name);
        existed = lstat(dir, &st) == 0;
    }
    body = create_body(o);
    s = body ? json_dumps(body, JSON_COMPACT) : NULL;
    if (!s)
        goto out;
    cli_http_resp_fini(&r);
    if (cli_http(home, "POST", "/api/v1/sessions", s, &r, err, sizeof(err))) {
        fprintf(stderr, "capsem: %s\n", err);
        goto out;
    }
    j = json_loadb(r.body, r.body_len, 0, NULL);
    const char *sid = json_string_value(json_object_get(j, "id"));
    if (r.status != 201 || !sid || !session_name_ok(sid)) {
        const char *e = json_string_value(json_object_get(j, "error"));
        fprintf(stderr, "capsem: the daemon refused the session: %s (HTTP %d)\n",
                e ? e : "no reason given", r.status);
        goto out;
    }
    snprintf(id, sizeof(id), "%s", sid);
    const char *dir = json_string_value(json_object_get(j, "dir"));
    if (!existed)
        fprintf(stderr, "capsem: session %s: workspace %s/workspace (kept after the run)\n", id,
                dir ? dir : "?");
    LOG_INFO("event=daemon_session session=%s", id);
    json_decref(j);
    j = NULL;
    /* Booting: the session's status, every 100 ms. */
    code = wait_running(home, id, false, deadline, o->timeout_s, boot_deadline, o->boot_timeout_s,
                        sig_fd);
    if (code)
        goto out;
    code = CAPSEM_EXIT_FAILED;
    LOG_INFO("event=vm_ready boot_ms=%lld session=%s", (long long)(mono_ms() - t0), id);
    struct cli_exec_stream_req rq = {
        .prog = "capsem",
        .argv = (const char *const *)o->cmd,
        .argc = o->n_cmd,
        .cwd = "/",
        .deadline_ms = deadline,
        .timeout_total_s = o->timeout_s,
        .sig_fd = sig_fd,
    };
    code = cli_exec_stream(home, id, &rq);
out:
    if (id[0])
        session_stop_wait(home, id, sig_fd);
    cli_http_resp_fini(&r);
    free(s);
    json_decref(body);
    json_decref(j);
    if (sig_fd >= 0)
        close(sig_fd);
    if (masked)
        sigprocmask(SIG_SETMASK, &old, NULL);
    return code;
}
