/*
 * Unit tests for the host end of the terminal channel
 * (schemas/vsock-terminal.md): vm_runner's listener on <uds>_5001 and
 * ctl_conn_pty(), against a fake guest (this binary re-run as the fake
 * capsem-vmm) that plays the agent on both connections; and the option
 * parsing of `capsem shell`.
 *
 * Bad input and what it gives: a terminal connection whose header lacks
 * the magic -> closed by vm_runner; one naming an id the host did not ask
 * for -> handed to on_terminal, which closes it (the fake checks that it
 * sees EOF both times); a bad
 * `capsem shell` option -> -EINVAL with a one-line reason.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "cli_shell.h"
#include "fake_guest.h"
#include "tframe.h"
#include "vm_runner.h"

#include <signal.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

static char self_exe[1024];
static char base[256];

/* ---- the fake guest (runs in the fake VMM process) ---------------------------------- */

static int connect_path(const char *uds, int port)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s_%d", uds, port);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
        return -1;
    return fd;
}

#define FAKE_FAIL(...)                                                                             \
    do {                                                                                           \
        fprintf(stderr, "fake guest: " __VA_ARGS__);                                               \
        fprintf(stderr, "\n");                                                                     \
        return 9;                                                                                  \
    } while (0)

/* A header `h` the host must refuse: it closes the connection (we read EOF). */
static bool refused(const char *uds, const uint8_t h[TFRAME_HELLO_LEN])
{
    int fd = connect_path(uds, 5001);
    if (fd < 0 || !fg_write(fd, h, TFRAME_HELLO_LEN))
        return false;
    uint8_t b;
    bool eof = recv(fd, &b, 1, 0) == 0;
    close(fd);
    return eof;
}

/* Read one host -> guest terminal frame. */
static bool term_recv(int fd, struct tframe *f, uint8_t *store, size_t cap)
{
    if (!fg_read(fd, store, TFRAME_HDR_LEN))
        return false;
    uint32_t len = be32_load(store);
    if (len + TFRAME_HDR_LEN > cap || !fg_read(fd, store + TFRAME_HDR_LEN, len))
        return false;
    size_t used;
    return tframe_parse(store, TFRAME_HDR_LEN + len, f, &used) == 1;
}

static int fake_terminal_guest(const char *uds)
{
    struct fg_frame f;
    int ctl = connect_path(uds, 5000);
    if (ctl < 0)
        FAKE_FAIL("no control socket");
    if (!fg_send_json(ctl, "{\"type\":\"hello\",\"protocol\":1,\"agent\":\"fake\",\"kernel\":"
                           "\"6.1\",\"boot_ms\":1}") ||
        !fg_expect(ctl, "hello", &f))
        FAKE_FAIL("no host hello");
    fg_frame_free(&f);
    if (!fg_expect(ctl, "pty", &f))
        FAKE_FAIL("no pty request");
    json_int_t id = json_integer_value(json_object_get(f.json, "id"));
    json_t *argv = json_object_get(f.json, "argv");
    if (json_integer_value(json_object_get(f.json, "cols")) != 100 ||
        json_integer_value(json_object_get(f.json, "rows")) != 30 ||
        strcmp(json_string_value(json_array_get(argv, 0)), "/bin/sh") ||
        strcmp(json_string_value(json_object_get(f.json, "cwd")), "/root"))
        FAKE_FAIL("pty request has the wrong fields");
    fg_frame_free(&f);
    char msg[128];
    snprintf(msg, sizeof(msg), "{\"type\":\"started\",\"id\":%lld,\"pid\":42}", (long long)id);
    if (!fg_send_json(ctl, msg))
        FAKE_FAIL("cannot send started");

    uint8_t h[TFRAME_HELLO_LEN];
    memcpy(h, "XXXX\0\0\0\0", 8);
    if (!refused(uds, h))
        FAKE_FAIL("a header without the magic was not refused");
    tframe_hello(h, (uint32_t)id + 1);
    if (!refused(uds, h))
        FAKE_FAIL("a header naming an unknown id was not refused");

    int t = connect_path(uds, 5001);
    tframe_hello(h, (uint32_t)id);
    if (t < 0 || !fg_write(t, h, sizeof(h)) || !fg_write(t, "prompt$ ", 8))
        FAKE_FAIL("cannot open the terminal connection");
    static uint8_t store[TFRAME_HDR_LEN + TFRAME_MAX_PAYLOAD];
    struct tframe tf;
    if (!term_recv(t, &tf, store, sizeof(store)) || tf.kind != TFRAME_DATA || tf.len != 3 ||
        memcmp(tf.data, "ls\r", 3))
        FAKE_FAIL("expected the input 'ls\\r'");
    if (!term_recv(t, &tf, store, sizeof(store)) || tf.kind != TFRAME_RESIZE || tf.cols != 120 ||
        tf.rows != 40)
        FAKE_FAIL("expected a resize to 120x40");
    if (!fg_write(t, "got ls 40x120", 13))
        FAKE_FAIL("cannot answer");
    close(t);
    snprintf(msg, sizeof(msg), "{\"type\":\"exit\",\"id\":%lld,\"code\":3}", (long long)id);
    if (!fg_send_json(ctl, msg) || !fg_expect(ctl, "shutdown", &f))
        FAKE_FAIL("no shutdown after exit");
    fg_frame_free(&f);
    fg_send_json(ctl, "{\"type\":\"bye\"}");
    close(ctl);
    return 0;
}

/* ---- the host side -------------------------------------------------------------------- */

struct session {
    struct loop *loop;
    struct vm_runner *r;
    bool terminal; /* cfg.terminal */
    bool ready;
    bool sock_5001; /* <dir>/vsock.sock_5001 existed at on_ready */
    uint32_t id;
    int terminals;   /* connections handed over by on_terminal for our id */
    int unknown_ids; /* ... and for another id (closed) */
    int term_fd;
    char screen[256];
    size_t screen_len;
    bool sent_input;
    int status;
    bool done;
    int err;
    char msg[256];
};

static void s_term(void *opaque, uint32_t events)
{
    (void)events;
    struct session *s = opaque;
    ssize_t n = read(s->term_fd, s->screen + s->screen_len, sizeof(s->screen) - 1 - s->screen_len);
    if (n <= 0) {
        loop_del(s->loop, s->term_fd);
        close(s->term_fd);
        s->term_fd = -1;
        return;
    }
    s->screen_len += (size_t)n;
    s->screen[s->screen_len] = '\0';
    if (!s->sent_input && strstr(s->screen, "prompt$ ")) {
        struct buf b;
        buf_init(&b, 0);
        assert_int_equal(tframe_put_data(&b, "ls\r", 3), 0);
        assert_int_equal(tframe_put_resize(&b, 120, 40), 0);
        assert_true(fg_write(s->term_fd, b.data, b.len));
        buf_fini(&b);
        s->sent_input = true;
    }
}

static void s_ready(void *opaque, const struct ctl_hello *h, int64_t boot_ms)
{
    (void)h;
    (void)boot_ms;
    struct session *s = opaque;
    s->ready = true;
    char p[1200];
    snprintf(p, sizeof(p), "%s/vsock.sock_5001", vm_runner_dir(s->r));
    s->sock_5001 = access(p, F_OK) == 0;
    if (!s->terminal) {
        vm_runner_stop(s->r);
        return;
    }
    const char *argv[] = {"/bin/sh", "-l"};
    assert_int_equal(vm_runner_pty(s->r, argv, 2, NULL, 0, "/root", 100, 30, &s->id), 0);
}

static void s_terminal(void *opaque, uint32_t id, int fd)
{
    struct session *s = opaque;
    if (id != s->id) { /* as capsem shell does: not asked for, closed */
        s->unknown_ids++;
        close(fd);
        return;
    }
    s->terminals++;
    s->term_fd = fd;
    assert_int_equal(loop_add(s->loop, fd, EPOLLIN, s_term, s), 0);
}

static void s_exit(void *opaque, const struct ctl_exit *e)
{
    struct session *s = opaque;
    s->status = ctl_exit_status(e);
    vm_runner_stop(s->r);
}

static void s_done(void *opaque, int err, const char *msg, const char *log_path)
{
    (void)log_path;
    struct session *s = opaque;
    s->done = true;
    s->err = err;
    snprintf(s->msg, sizeof(s->msg), "%s", msg ? msg : "");
}

static const struct vm_runner_ops s_ops = {
    .on_ready = s_ready, .on_terminal = s_terminal, .on_exit = s_exit, .on_done = s_done};

static void run_session(struct session *s)
{
    char err[512];
    s->term_fd = -1;
    s->status = -1;
    setenv("FAKE_TERM_MODE", s->terminal ? "pty" : "plain", 1);
    assert_int_equal(loop_create(&s->loop), 0);
    assert_int_equal(vm_runner_create(s->loop, &s_ops, s, &s->r), 0);
    struct vm_runner_config cfg = {
        .vmm_path = self_exe,
        .kernel = self_exe,
        .initrd = self_exe,
        .mem_mib = 128,
        .cpus = 1,
        .run_base = base,
        .boot_timeout_ms = 10000,
        .kvm_path = "/dev/null",
        .keep_logs = true,
        .terminal = s->terminal,
    };
    assert_int_equal(vm_runner_start(s->r, &cfg, err, sizeof(err)), 0);
    time_t deadline = time(NULL) + 30;
    while (!s->done && time(NULL) < deadline)
        assert_true(loop_run_once(s->loop, 200) >= 0);
    assert_true(s->done);
    if (s->term_fd >= 0) {
        loop_del(s->loop, s->term_fd);
        close(s->term_fd);
    }
    vm_runner_destroy(s->r);
    loop_destroy(s->loop);
}

static void test_vm_runner_terminal_session_end_to_end(void **state)
{
    (void)state;
    struct session s = {.terminal = true};
    run_session(&s);
    assert_true(s.ready);
    assert_true(s.sock_5001);
    assert_int_equal(s.err, 0); /* the fake saw every check pass and exited 0 */
    assert_int_equal(s.terminals, 1);
    assert_int_equal(s.unknown_ids, 1); /* the bad magic never reached on_terminal */
    assert_string_equal(s.screen, "prompt$ got ls 40x120");
    assert_int_equal(s.status, 3);
}

static void test_vm_runner_terminal_off_has_no_listener(void **state)
{
    (void)state;
    struct session s = {.terminal = false};
    run_session(&s);
    assert_true(s.ready);
    assert_false(s.sock_5001);
    assert_int_equal(s.terminals, 0);
}

static void test_cli_shell_parse_default_and_command(void **state)
{
    (void)state;
    struct cli_run_opts o;
    char err[256];
    char *a1[] = {"shell", "--keep", "--mem", "256", "-e", "A=b"};
    assert_int_equal(cli_shell_parse(6, a1, &o, err, sizeof(err)), 0);
    assert_true(o.keep_logs);
    assert_int_equal(o.mem_mib, 256);
    assert_int_equal(o.n_env, 1);
    assert_int_equal(o.n_cmd, 3);
    assert_string_equal(o.cmd[0], "/bin/sh");
    assert_non_null(strstr(o.cmd[2], "/bin/bash -l"));
    cli_run_opts_fini(&o);
    char *a2[] = {"shell", "--", "top", "-b"};
    assert_int_equal(cli_shell_parse(4, a2, &o, err, sizeof(err)), 0);
    assert_int_equal(o.n_cmd, 2);
    assert_string_equal(o.cmd[0], "top");
    cli_run_opts_fini(&o);
    char *a3[] = {"shell", "--help"};
    assert_int_equal(cli_shell_parse(2, a3, &o, err, sizeof(err)), 0);
    assert_true(o.help);
    cli_run_opts_fini(&o);
}

static void test_cli_shell_parse_bad_options_error(void **state)
{
    (void)state;
    struct cli_run_opts o;
    char err[256];
    char *a1[] = {"shell", "--bogus"};
    assert_int_equal(cli_shell_parse(2, a1, &o, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "--bogus"));
    char *a2[] = {"shell", "--mem", "1"};
    assert_int_equal(cli_shell_parse(3, a2, &o, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "--mem"));
    char *a3[] = {"shell", "--"};
    assert_int_equal(cli_shell_parse(2, a3, &o, err, sizeof(err)), -EINVAL);
    char *a4[] = {"shell", "-e", "=x"};
    assert_int_equal(cli_shell_parse(3, a4, &o, err, sizeof(err)), -EINVAL);
}

int main(int argc, char **argv)
{
    if (argc >= 3 && !strcmp(argv[1], "--config")) {
        json_t *c = json_load_file(argv[2], 0, NULL);
        const char *uds = json_string_value(json_object_get(json_object_get(c, "vsock"), "uds"));
        const char *mode = getenv("FAKE_TERM_MODE");
        if (!uds || !mode)
            return 2;
        if (!strcmp(mode, "pty"))
            return fake_terminal_guest(uds);
        setenv("FAKE_VMM_MODE", "ok", 1);
        return fake_agent(uds);
    }
    setenv("ASAN_OPTIONS", "detect_leaks=0", 1);
    ssize_t n = readlink("/proc/self/exe", self_exe, sizeof(self_exe) - 1);
    if (n <= 0)
        return 1;
    self_exe[n] = '\0';
    snprintf(base, sizeof(base), "/tmp/capsem-test-terminal-%d", (int)getpid());
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vm_runner_terminal_session_end_to_end),
        cmocka_unit_test(test_vm_runner_terminal_off_has_no_listener),
        cmocka_unit_test(test_cli_shell_parse_default_and_command),
        cmocka_unit_test(test_cli_shell_parse_bad_options_error),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", base);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", base);
    return rc;
}
