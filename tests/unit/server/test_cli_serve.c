/*
 * Unit tests for `capsem serve` option parsing (server/cli_serve.c). Bad
 * input and what it gives: --listen without a port, with a name instead of
 * a numeric address, a port over 65535 or signed, or a missing value;
 * --allow-host empty or with a space, '/' or '@', or more than 16 of them;
 * an unknown argument: -EINVAL with a reason. A non-loopback --listen
 * parses (loopback=false) so that the caller can warn.
 *
 * cli_serve_main itself runs in a forked child with a temporary CAPSEM_HOME:
 * it prints one login URL whose code works once, stops with status 0 on
 * SIGTERM or SIGINT (closing the port), warns on stderr for a non-loopback
 * address, and exits 125 with a reason (printing no URL) when the token file
 * is readable by others.
 */
#include "cli_serve.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static int parse(struct cli_serve_opts *o, int argc, char **argv)
{
    char err[256] = "";
    int rc = cli_serve_parse(argc, argv, o, err, sizeof(err));
    if (rc < 0)
        assert_true(err[0] != '\0');
    return rc;
}

static void test_cli_serve_parse_defaults(void **state)
{
    (void)state;
    struct cli_serve_opts o;
    char *argv[] = {"serve"};
    assert_int_equal(parse(&o, 1, argv), 0);
    assert_string_equal(o.addr, "127.0.0.1");
    assert_int_equal(o.port, 7878);
    assert_true(o.loopback);
    assert_false(o.listen_given);
    assert_int_equal(o.nallow, 0);
}

static void test_cli_serve_parse_listen_forms(void **state)
{
    (void)state;
    struct cli_serve_opts o;
    char *a1[] = {"serve", "--listen", "127.0.0.2:0"};
    assert_int_equal(parse(&o, 3, a1), 0);
    assert_string_equal(o.addr, "127.0.0.2");
    assert_int_equal(o.port, 0);
    assert_true(o.loopback && o.listen_given);
    char *a2[] = {"serve", "--listen", "[::1]:9000"};
    assert_int_equal(parse(&o, 3, a2), 0);
    assert_string_equal(o.addr, "::1");
    assert_int_equal(o.port, 9000);
    assert_true(o.loopback);
    char *a3[] = {"serve", "--listen", "0.0.0.0:7878", "--allow-host", "box.lan"};
    assert_int_equal(parse(&o, 5, a3), 0);
    assert_false(o.loopback);
    assert_int_equal(o.nallow, 1);
    assert_string_equal(o.allow[0], "box.lan");
    char *a4[] = {"serve", "--listen", "[::]:7878"};
    assert_int_equal(parse(&o, 3, a4), 0);
    assert_false(o.loopback);
}

static void test_cli_serve_parse_bad(void **state)
{
    (void)state;
    struct cli_serve_opts o;
    const char *bad_listen[] = {"127.0.0.1",    "localhost:7878", "127.0.0.1:", "127.0.0.1:70000",
                                "127.0.0.1:-1", "127.0.0.1:+1",   "::1:7878",   "[::1]7878",
                                ":7878",        "127.0.0.1:80x"};
    for (size_t i = 0; i < sizeof(bad_listen) / sizeof(bad_listen[0]); i++) {
        char *argv[] = {"serve", "--listen", (char *)bad_listen[i]};
        assert_int_equal(parse(&o, 3, argv), -EINVAL);
    }
    char *a1[] = {"serve", "--listen"};
    assert_int_equal(parse(&o, 2, a1), -EINVAL);
    char *a2[] = {"serve", "--bogus"};
    assert_int_equal(parse(&o, 2, a2), -EINVAL);
    const char *bad_host[] = {"", "a b", "a/b", "u@h"};
    for (size_t i = 0; i < sizeof(bad_host) / sizeof(bad_host[0]); i++) {
        char *argv[] = {"serve", "--allow-host", (char *)bad_host[i]};
        assert_int_equal(parse(&o, 3, argv), -EINVAL);
    }
    char *many[2 + 2 * (CLI_SERVE_ALLOW_MAX + 1)];
    int n = 0;
    many[n++] = "serve";
    for (int i = 0; i <= CLI_SERVE_ALLOW_MAX; i++) {
        many[n++] = "--allow-host";
        many[n++] = "h";
    }
    assert_int_equal(parse(&o, n - 2, many), 0);
    assert_int_equal(parse(&o, n, many), -EINVAL);
}

struct child {
    pid_t pid;
    int out; /* its stdout */
    int err; /* its stderr */
};

/* Run cli_serve_main(argv) in a child with CAPSEM_HOME=home. */
static struct child spawn(const char *home, char **argv, int argc)
{
    int o[2], e[2];
    assert_int_equal(pipe(o), 0);
    assert_int_equal(pipe(e), 0);
    fflush(NULL);
    struct child c = {.pid = fork()};
    assert_true(c.pid >= 0);
    if (c.pid == 0) {
        dup2(o[1], 1);
        dup2(e[1], 2);
        close(o[0]);
        close(e[0]);
        setenv("CAPSEM_HOME", home, 1);
        setenv("CAPSEM_LOG", "warn", 1);
        _exit(cli_serve_main(argc, argv));
    }
    close(o[1]);
    close(e[1]);
    c.out = o[0];
    c.err = e[0];
    return c;
}

/* Read what fd has until EOF or `ms` pass without data; NUL-terminated. */
static size_t slurp(int fd, char *buf, size_t cap, int ms, bool one_line)
{
    size_t len = 0;
    while (len + 1 < cap) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, ms) <= 0)
            break;
        ssize_t n = read(fd, buf + len, one_line ? 1 : cap - 1 - len);
        if (n <= 0)
            break;
        len += (size_t)n;
        if (one_line && buf[len - 1] == '\n')
            break;
    }
    buf[len] = '\0';
    return len;
}

/* Wait up to 10 s for the child; returns its exit status (-1 when killed). */
static int reap(struct child *c)
{
    int st = 0;
    for (int i = 0; i < 1000; i++) {
        pid_t r = waitpid(c->pid, &st, WNOHANG);
        if (r == c->pid)
            break;
        if (i == 999) {
            kill(c->pid, SIGKILL);
            waitpid(c->pid, &st, 0);
        }
        usleep(10000);
    }
    close(c->out);
    close(c->err);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int http_status(unsigned port, const char *path)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        close(fd);
        return -errno;
    }
    char req[512], resp[4096];
    snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%u\r\nConnection: close\r\n\r\n",
             path, port);
    assert_int_equal(send(fd, req, strlen(req), MSG_NOSIGNAL), (ssize_t)strlen(req));
    size_t len = slurp(fd, resp, sizeof(resp), 5000, false);
    close(fd);
    return len > 12 ? (int)strtol(resp + 9, NULL, 10) : -1;
}

static void make_home(char *home, size_t cap)
{
    snprintf(home, cap, "/tmp/capsem-test-serve-XXXXXX");
    assert_non_null(mkdtemp(home));
}

static void rm_home(const char *home)
{
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", home);
    assert_int_equal(system(cmd), 0);
}

static void test_cli_serve_main_login_url_and_sigterm(void **state)
{
    (void)state;
    char home[256], line[512];
    make_home(home, sizeof(home));
    char *argv[] = {"serve", "--listen", "127.0.0.1:0"};
    struct child c = spawn(home, argv, 3);
    slurp(c.out, line, sizeof(line), 10000, true);
    const char *prefix = "http://127.0.0.1:";
    assert_memory_equal(line, prefix, strlen(prefix));
    char *end = NULL;
    unsigned long port = strtoul(line + strlen(prefix), &end, 10);
    assert_true(port > 0 && port < 65536);
    assert_memory_equal(end, "/login?t=", 9);
    char path[128];
    snprintf(path, sizeof(path), "%.*s", (int)strcspn(end, "\n"), end);
    assert_int_equal(strlen(path), 9 + 64);
    assert_int_equal(http_status((unsigned)port, "/healthz"), 200);
    assert_int_equal(http_status((unsigned)port, path), 303);
    assert_int_equal(http_status((unsigned)port, path), 401);
    /* The token file it made is private. */
    char tpath[400];
    struct stat st;
    snprintf(tpath, sizeof(tpath), "%s/token", home);
    assert_int_equal(stat(tpath, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    kill(c.pid, SIGTERM);
    assert_int_equal(reap(&c), 0);
    assert_int_equal(http_status((unsigned)port, "/healthz"), -ECONNREFUSED);
    rm_home(home);
}

static void test_cli_serve_main_non_loopback_warns_sigint(void **state)
{
    (void)state;
    char home[256], line[512], err[2048];
    make_home(home, sizeof(home));
    char *argv[] = {"serve", "--listen", "0.0.0.0:0"};
    struct child c = spawn(home, argv, 3);
    slurp(c.out, line, sizeof(line), 10000, true);
    assert_non_null(strstr(line, "/login?t="));
    slurp(c.err, err, sizeof(err), 200, false);
    assert_non_null(strstr(err, "warning"));
    assert_non_null(strstr(err, "non-loopback"));
    kill(c.pid, SIGINT);
    assert_int_equal(reap(&c), 0);
    rm_home(home);
}

static void test_cli_serve_main_refuses_open_token(void **state)
{
    (void)state;
    char home[256], out[512], err[2048], tpath[400];
    make_home(home, sizeof(home));
    snprintf(tpath, sizeof(tpath), "%s/token", home);
    int fd = open(tpath, O_WRONLY | O_CREAT | O_EXCL, 0644);
    assert_true(fd >= 0);
    const char *tok = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n";
    assert_int_equal(write(fd, tok, strlen(tok)), (ssize_t)strlen(tok));
    fchmod(fd, 0644);
    close(fd);
    char *argv[] = {"serve", "--listen", "127.0.0.1:0"};
    struct child c = spawn(home, argv, 3);
    slurp(c.out, out, sizeof(out), 5000, false);
    slurp(c.err, err, sizeof(err), 5000, false);
    assert_int_equal(reap(&c), 125);
    assert_string_equal(out, "");
    assert_non_null(strstr(err, "accessible by others"));
    /* The file is left as it was. */
    struct stat st;
    assert_int_equal(stat(tpath, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0644);
    char *bad[] = {"serve", "--listen", "nowhere"};
    c = spawn(home, bad, 3);
    slurp(c.err, err, sizeof(err), 5000, false);
    assert_int_equal(reap(&c), 2);
    rm_home(home);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cli_serve_parse_defaults),
        cmocka_unit_test(test_cli_serve_parse_listen_forms),
        cmocka_unit_test(test_cli_serve_parse_bad),
        cmocka_unit_test(test_cli_serve_main_login_url_and_sigterm),
        cmocka_unit_test(test_cli_serve_main_non_loopback_warns_sigint),
        cmocka_unit_test(test_cli_serve_main_refuses_open_token),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
