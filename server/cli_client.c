/*
 * `capsem list|create|exec|stop|logs` (cli_client.h): a small blocking
 * HTTP/1.1 client (one request per connection, Connection: close) and the
 * commands that print what the daemon answers, as a table or, with --json,
 * as the daemon's JSON.
 */
#include "cli_client.h"

#include "auth.h"
#include "cli_run.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
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

int cli_http(const char *home, const char *method, const char *path, const char *body,
             struct cli_http_resp *resp, char *err, size_t errlen)
{
    char sj[4200], tok[AUTH_SECRET_HEX + 1], head[1024];
    int fd = -1, rc = 0;
    char *buf = NULL;
    size_t len = 0, cap = 0;
    json_t *cfg = NULL;
    memset(resp, 0, sizeof(*resp));
    snprintf(sj, sizeof(sj), "%s/serve.json", home);
    cfg = json_load_file(sj, 0, NULL);
    const char *addr = json_string_value(json_object_get(cfg, "addr"));
    json_int_t port = json_integer_value(json_object_get(cfg, "port"));
    if (!addr || port <= 0 || port > 65535) {
        snprintf(err, errlen, "no daemon: %s is missing or bad (start `capsem serve`)", sj);
        rc = -ENOENT;
        goto out;
    }
    rc = read_token(home, tok, err, errlen);
    if (rc)
        goto out;
    struct sockaddr_storage ss = {0};
    socklen_t sl;
    struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
    bool v6 = strchr(addr, ':') != NULL;
    if (!v6 && inet_pton(AF_INET, addr, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
        sl = sizeof(*a4);
    } else if (v6 && inet_pton(AF_INET6, addr, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        sl = sizeof(*a6);
    } else {
        snprintf(err, errlen, "%s: bad address '%.64s'", sj, addr);
        rc = -EINVAL;
        goto out;
    }
    fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&ss, sl) < 0) {
        rc = -errno;
        snprintf(err, errlen,
                 "cannot reach the daemon at %s port %d: %s (is `capsem serve` "
                 "running?)",
                 addr, (int)port, strerror(-rc));
        goto out;
    }
    size_t blen = body ? strlen(body) : 0;
    int hl = snprintf(head, sizeof(head),
                      "%s %s HTTP/1.1\r\nHost: %s%s%s:%d\r\nAuthorization: Bearer %s\r\n"
                      "Content-Type: application/json\r\nContent-Length: %zu\r\n"
                      "Connection: close\r\n\r\n",
                      method, path, v6 ? "[" : "", addr, v6 ? "]" : "", (int)port, tok, blen);
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
    json_decref(cfg);
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
        }
    }
    json_decref(j);
    return 0;
}

static const char create_usage[] =
    "usage: capsem create [--name NAME] [--rootfs FILE|none] [--mem MIB] [--cpus N]\n"
    "                     [-e K=V]... [--no-net] [--agent claude|gemini|codex] [--json]\n"
    "                     [-- CMD [ARG...]]\n";

int cli_create_main(int argc, char **argv)
{
    bool js = false;
    json_t *body = json_object(), *env = json_object(), *cmd = json_array();
    int code = CAPSEM_EXIT_USAGE;
    if (!body || !env || !cmd) {
        code = CAPSEM_EXIT_FAILED;
        goto out;
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool takes = !strcmp(a, "--name") || !strcmp(a, "--rootfs") || !strcmp(a, "--mem") ||
                     !strcmp(a, "--cpus") || !strcmp(a, "-e") || !strcmp(a, "--agent");
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
                const char *eq = strchr(v, '=');
                if (!eq || eq == v) {
                    usage_err("create", create_usage, "-e wants K=V, not", v);
                    goto out;
                }
                char k[256];
                size_t kl = (size_t)(eq - v);
                if (kl >= sizeof(k)) {
                    usage_err("create", create_usage, "-e name too long:", v);
                    goto out;
                }
                memcpy(k, v, kl);
                k[kl] = '\0';
                json_object_set_new(env, k, json_string(eq + 1));
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

static const char exec_usage[] =
    "usage: capsem exec [--json] [--timeout S] [-e K=V]... [--cwd DIR] [--stdin] ID -- CMD "
    "[ARG...]\n"
    "  --stdin   send this process's stdin to the command (read to the end first)\n";

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
            } else {
                const char *eq = strchr(v, '=');
                char k[256];
                if (!eq || eq == v || (size_t)(eq - v) >= sizeof(k)) {
                    usage_err("exec", exec_usage, "-e wants K=V, not", v);
                    goto out;
                }
                memcpy(k, v, (size_t)(eq - v));
                k[eq - v] = '\0';
                json_object_set_new(env, k, json_string(eq + 1));
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

/* Send one masked client frame. */
static bool ws_send(int fd, int opcode, const void *p, size_t n)
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
        return false;
    }
    if (RAND_bytes(mask, sizeof(mask)) != 1)
        return false;
    memcpy(hdr + hl, mask, 4);
    hl += 4;
    uint8_t buf[14 + 65536];
    memcpy(buf, hdr, hl);
    const uint8_t *s = p;
    for (size_t i = 0; i < n; i++)
        buf[hl + i] = s[i] ^ mask[i % 4];
    return send_all(fd, (const char *)buf, hl + n);
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
        ws_send(fd, 1, msg, (size_t)n);
}

static const char attach_usage[] =
    "usage: capsem attach ID   (also: capsem shell ID)\n"
    "Open session ID's terminal (shared with every other viewer). Ctrl-] detaches;\n"
    "the shell keeps running in the session.\n";

int cli_attach_main(int argc, char **argv)
{
    char home[4096], sj[4200], tok[AUTH_SECRET_HEX + 1], err[512], head[1024];
    const char *id = argc == 2 ? argv[1] : NULL;
    int fd = -1, code = CAPSEM_EXIT_FAILED;
    bool raw = false;
    struct termios saved;
    json_t *cfg = NULL;
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
    snprintf(sj, sizeof(sj), "%s/serve.json", home);
    cfg = json_load_file(sj, 0, NULL);
    const char *addr = json_string_value(json_object_get(cfg, "addr"));
    json_int_t port = json_integer_value(json_object_get(cfg, "port"));
    struct sockaddr_in a4 = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (!addr || port <= 0 || port > 65535 || inet_pton(AF_INET, addr, &a4.sin_addr) != 1) {
        fprintf(stderr, "capsem attach: no daemon: %s is missing or bad\n", sj);
        goto out;
    }
    if (read_token(home, tok, err, sizeof(err))) {
        fprintf(stderr, "capsem attach: %s\n", err);
        goto out;
    }
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a4, sizeof(a4)) < 0) {
        fprintf(stderr, "capsem attach: cannot reach the daemon: %s\n", strerror(errno));
        goto out;
    }
    uint8_t key[16];
    char key64[32];
    if (RAND_bytes(key, sizeof(key)) != 1)
        goto out;
    EVP_EncodeBlock((unsigned char *)key64, key, sizeof(key));
    int hl = snprintf(head, sizeof(head),
                      "GET /api/v1/sessions/%s/terminal HTTP/1.1\r\nHost: %s:%d\r\n"
                      "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                      "Sec-WebSocket-Version: 13\r\nAuthorization: Bearer %s\r\n\r\n",
                      id, addr, (int)port, key64, tok);
    memset(tok, 0, sizeof(tok));
    bool sent = hl > 0 && (size_t)hl < sizeof(head) && send_all(fd, head, (size_t)hl);
    memset(head, 0, sizeof(head));
    if (!sent)
        goto out;
    /* The answer head, byte by byte so no frame bytes are taken with it. */
    char rh[2048];
    size_t rl = 0;
    while (rl + 1 < sizeof(rh) && (rl < 4 || memcmp(rh + rl - 4, "\r\n\r\n", 4))) {
        ssize_t n = recv(fd, rh + rl, 1, 0);
        if (n <= 0)
            break;
        rl++;
    }
    rh[rl] = '\0';
    if (strncmp(rh, "HTTP/1.1 101", 12)) {
        char *body = strstr(rh, "\r\n\r\n");
        char more[512] = "";
        ssize_t n = recv(fd, more, sizeof(more) - 1, 0);
        if (n > 0)
            more[n] = '\0';
        fprintf(stderr, "capsem attach: refused: %.40s %s\n", rh, body ? more : "");
        code = 1;
        goto out;
    }
    if (isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &saved) == 0) {
        struct termios r = saved;
        cfmakeraw(&r);
        raw = tcsetattr(STDIN_FILENO, TCSANOW, &r) == 0;
    }
    signal(SIGWINCH, on_winch);
    ws_resize(fd);
    uint8_t *in = malloc(1u << 17);
    size_t il = 0;
    if (!in)
        goto out;
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
                if (k && !ws_send(fd, 2, b, k))
                    break;
                if (det)
                    break;
            }
        }
        if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
            ssize_t n = recv(fd, in + il, (1u << 17) - il, 0);
            if (n <= 0)
                break;
            il += (size_t)n;
            bool end = false;
            while (il >= 2) {
                size_t len = in[1] & 0x7f, off = 2;
                if (len == 126) {
                    if (il < 4)
                        break;
                    len = ((size_t)in[2] << 8) | in[3];
                    off = 4;
                } else if (len == 127) {
                    end = true; /* the daemon sends at most 16 KiB at once */
                    break;
                }
                if (il < off + len)
                    break;
                int op = in[0] & 0x0f;
                if (op == 2 && fwrite(in + off, 1, len, stdout) == len)
                    fflush(stdout);
                if (op == 8)
                    end = true;
                memmove(in, in + off + len, il - off - len);
                il -= off + len;
            }
            if (end)
                break;
        }
    }
    free(in);
out:
    if (raw) {
        tcsetattr(STDIN_FILENO, TCSANOW, &saved);
        fputs("\r\n", stderr);
    }
    if (fd >= 0)
        close(fd);
    json_decref(cfg);
    return code;
}
