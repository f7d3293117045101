/*
 * Unit tests for `capsem run` option parsing (server/cli_run.c). Every bad
 * command line must be refused with -EINVAL and a reason naming the culprit:
 * bad numbers (--mem, --cpus, --timeout), a missing "--" or command, -e
 * without NAME=VALUE, unknown options and options missing their value.
 * The cli_run_main tests run the whole command in a child process with this
 * binary as a fake capsem-vmm (see fake_guest.h), checking stdin, stdout,
 * stderr, the exit status and signal handling without a VM. This binary
 * stands in for the kernel and initramfs too: its own SHA-256 is recorded
 * as theirs, so the integrity check before boot is the real one. Before a
 * boot: a tampered kernel, a --rootfs image with no recorded hash, a bad
 * --name each end in one line and exit 125 (2 for usage) with no session
 * or run directory made; the default session directory is made, printed
 * once, kept and reused by name, and its name is the guest's host name.
 */
#include "cli_run.h"
#include "fake_guest.h"
#include "integrity.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#define ARGC(a) ((int)(sizeof(a) / sizeof((a)[0])))

static void expect_error(int argc, char **argv, const char *want)
{
    struct cli_run_opts o;
    char err[256];
    assert_int_equal(cli_run_parse(argc, argv, &o, err, sizeof(err)), -EINVAL);
    if (!strstr(err, want))
        fail_msg("error '%s' lacks '%s'", err, want);
    assert_null(o.cmd);
    assert_null(o.env);
}

static void test_cli_run_parse_defaults(void **state)
{
    (void)state;
    char *argv[] = {"run", "--", "echo", "hi"};
    struct cli_run_opts o;
    char err[256];
    assert_int_equal(cli_run_parse(ARGC(argv), argv, &o, err, sizeof(err)), 0);
    assert_int_equal(o.mem_mib, CLI_RUN_DEFAULT_MEM_MIB);
    assert_int_equal(o.cpus, CLI_RUN_DEFAULT_CPUS);
    assert_int_equal(o.timeout_s, 0);
    assert_int_equal(o.boot_timeout_s, CLI_RUN_DEFAULT_BOOT_TIMEOUT_S);
    assert_int_equal(o.n_cmd, 2);
    assert_string_equal(o.cmd[0], "echo");
    assert_string_equal(o.cmd[1], "hi");
    assert_int_equal(o.n_env, 0);
    assert_null(o.kernel);
    assert_false(o.keep_logs);
    cli_run_opts_fini(&o);
}

static void test_cli_run_parse_all_options(void **state)
{
    (void)state;
    char *argv[] = {"run",
                    "--mem",
                    "1024",
                    "--cpus=2",
                    "--timeout",
                    "5",
                    "--boot-timeout=9",
                    "-e",
                    "A=1",
                    "--env",
                    "B=x=y",
                    "--env=C=",
                    "--kernel",
                    "k",
                    "--initrd=i",
                    "--keep-logs",
                    "--append",
                    "rdinit=/x",
                    "--",
                    "ls",
                    "--mem",
                    "-e"};
    struct cli_run_opts o;
    char err[256];
    assert_int_equal(cli_run_parse(ARGC(argv), argv, &o, err, sizeof(err)), 0);
    assert_int_equal(o.mem_mib, 1024);
    assert_int_equal(o.cpus, 2);
    assert_int_equal(o.timeout_s, 5);
    assert_int_equal(o.boot_timeout_s, 9);
    assert_int_equal(o.n_env, 3);
    assert_string_equal(o.env[0], "A=1");
    assert_string_equal(o.env[1], "B=x=y");
    assert_string_equal(o.env[2], "C=");
    assert_string_equal(o.kernel, "k");
    assert_string_equal(o.initrd, "i");
    assert_string_equal(o.append, "rdinit=/x");
    assert_true(o.keep_logs);
    /* Everything after "--" belongs to the command, even option-like words. */
    assert_int_equal(o.n_cmd, 3);
    assert_string_equal(o.cmd[1], "--mem");
    assert_string_equal(o.cmd[2], "-e");
    cli_run_opts_fini(&o);
}

static void test_cli_run_parse_bad_mem(void **state)
{
    (void)state;
    const char *bad[] = {"x",  "0",    "-5", "+5", " 5", "12abc", "", "99999999999999999999",
                         "63", "65537"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char *argv[] = {"run", "--mem", (char *)bad[i], "--", "true"};
        expect_error(ARGC(argv), argv, "--mem");
    }
    char *eq[] = {"run", "--mem=lots", "--", "true"};
    expect_error(ARGC(eq), eq, "'lots'");
}

static void test_cli_run_parse_bad_cpus_and_timeouts(void **state)
{
    (void)state;
    char *a[] = {"run", "--cpus", "0", "--", "true"};
    expect_error(ARGC(a), a, "--cpus");
    char *b[] = {"run", "--cpus", "65", "--", "true"};
    expect_error(ARGC(b), b, "--cpus");
    char *c[] = {"run", "--timeout", "1.5", "--", "true"};
    expect_error(ARGC(c), c, "--timeout");
    char *d[] = {"run", "--boot-timeout", "0", "--", "true"};
    expect_error(ARGC(d), d, "--boot-timeout");
}

static void test_cli_run_parse_missing_dashdash(void **state)
{
    (void)state;
    char *a[] = {"run", "echo", "hi"};
    expect_error(ARGC(a), a, "missing '--' before the command 'echo'");
    char *b[] = {"run", "--mem", "512"};
    expect_error(ARGC(b), b, "missing '--'");
    char *c[] = {"run"};
    expect_error(ARGC(c), c, "missing '--'");
}

static void test_cli_run_parse_no_command_after_dashdash(void **state)
{
    (void)state;
    char *a[] = {"run", "--cpus", "2", "--"};
    expect_error(ARGC(a), a, "no command");
}

static void test_cli_run_parse_env_without_equals(void **state)
{
    (void)state;
    char *a[] = {"run", "-e", "FOO", "--", "true"};
    expect_error(ARGC(a), a, "'FOO': expected NAME=VALUE");
    char *b[] = {"run", "-e", "=x", "--", "true"};
    expect_error(ARGC(b), b, "expected NAME=VALUE");
    char *c[] = {"run", "--env", "1A=x", "--", "true"};
    expect_error(ARGC(c), c, "expected NAME=VALUE");
    char *d[] = {"run", "-e", "A B=x", "--", "true"};
    expect_error(ARGC(d), d, "expected NAME=VALUE");
    /* A good -e before the bad one is not leaked (the struct comes back empty). */
    char *e[] = {"run", "-e", "OK=1", "-e", "BAD", "--", "true"};
    expect_error(ARGC(e), e, "'BAD'");
}

static void test_cli_run_parse_unknown_option(void **state)
{
    (void)state;
    char *a[] = {"run", "--frobnicate", "/tmp", "--", "true"};
    expect_error(ARGC(a), a, "unknown option '--frobnicate'");
    char *b[] = {"run", "-x", "--", "true"};
    expect_error(ARGC(b), b, "unknown option '-x'");
    /* Short -e takes no "=" form: "-e=A=1" is not an option we know. */
    char *c[] = {"run", "-e=A=1", "--", "true"};
    expect_error(ARGC(c), c, "unknown option");
}

static void test_cli_run_parse_workspace(void **state)
{
    (void)state;
    struct cli_run_opts o;
    char err[256];
    char *a[] = {"run", "--workspace", "/srv/ws", "--", "true"};
    assert_int_equal(cli_run_parse(ARGC(a), a, &o, err, sizeof(err)), 0);
    assert_string_equal(o.workspace, "/srv/ws");
    cli_run_opts_fini(&o);
    char *b[] = {"run", "--", "true"};
    assert_int_equal(cli_run_parse(ARGC(b), b, &o, err, sizeof(err)), 0);
    assert_null(o.workspace); /* default: the session's own workspace */
    cli_run_opts_fini(&o);
    char *c[] = {"run", "--workspace", "", "--", "true"};
    expect_error(ARGC(c), c, "--workspace: expected a directory");
}

static void test_cli_run_parse_name_and_rootfs(void **state)
{
    (void)state;
    struct cli_run_opts o;
    char err[256];
    char *a[] = {"run", "--name", "web-2", "--rootfs", "none", "--unverified-assets", "--", "true"};
    assert_int_equal(cli_run_parse(ARGC(a), a, &o, err, sizeof(err)), 0);
    assert_string_equal(o.name, "web-2");
    assert_string_equal(o.rootfs, "none");
    assert_true(o.unverified_assets);
    cli_run_opts_fini(&o);
    char *b[] = {"run", "--", "true"};
    assert_int_equal(cli_run_parse(ARGC(b), b, &o, err, sizeof(err)), 0);
    assert_null(o.name);
    assert_null(o.rootfs);
    assert_false(o.unverified_assets);
    cli_run_opts_fini(&o);
    /* 63 characters is a host name label's limit; 64 is one too many. */
    char long_ok[64], too_long[65];
    memset(long_ok, 'a', 63);
    long_ok[63] = '\0';
    memset(too_long, 'a', 64);
    too_long[64] = '\0';
    char *c[] = {"run", "--name", long_ok, "--", "true"};
    assert_int_equal(cli_run_parse(ARGC(c), c, &o, err, sizeof(err)), 0);
    cli_run_opts_fini(&o);
    const char *bad[] = {"",    "Web", "-web", "web-", "a_b",   "a.b",
                         "a/b", "..",  "a b",  "é",    too_long};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char *d[] = {"run", "--name", (char *)bad[i], "--", "true"};
        expect_error(ARGC(d), d, "--name");
    }
    char *e[] = {"run", "--rootfs=", "--", "true"};
    expect_error(ARGC(e), e, "--rootfs: expected an image file or 'none'");
    char *f[] = {"run", "--scratch", "4G", "--", "true"};
    assert_int_equal(cli_run_parse(ARGC(f), f, &o, err, sizeof(err)), 0);
    assert_true(o.scratch_bytes == 4ull << 30);
    cli_run_opts_fini(&o);
    const char *bad_sizes[] = {"", "4X", "-4G", "1K", "63M", "5T", "lots"};
    for (size_t i = 0; i < sizeof(bad_sizes) / sizeof(bad_sizes[0]); i++) {
        char *g[] = {"run", "--scratch", (char *)bad_sizes[i], "--", "true"};
        expect_error(ARGC(g), g, "--scratch");
    }
}

/* --policy takes one of the three presets; anything else is refused, naming the option. */
static void test_cli_run_parse_policy(void **state)
{
    (void)state;
    struct cli_run_opts o;
    char err[256];
    const char *good[] = {"high", "medium", "open"};
    for (size_t i = 0; i < 3; i++) {
        char *a[] = {"run", "--policy", (char *)good[i], "--", "true"};
        assert_int_equal(cli_run_parse(ARGC(a), a, &o, err, sizeof(err)), 0);
        assert_string_equal(o.policy, good[i]);
        cli_run_opts_fini(&o);
    }
    char *b[] = {"run", "--", "true"};
    assert_int_equal(cli_run_parse(ARGC(b), b, &o, err, sizeof(err)), 0);
    assert_null(o.policy);
    cli_run_opts_fini(&o);
    const char *bad[] = {"", "High", "strict", "default", "open "};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char *c[] = {"run", "--policy", (char *)bad[i], "--", "true"};
        expect_error(ARGC(c), c, "--policy");
    }
    char *d[] = {"run", "--policy"};
    expect_error(ARGC(d), d, "--policy needs a value");
}

static void test_cli_run_parse_option_without_value(void **state)
{
    (void)state;
    char *a[] = {"run", "--mem"};
    expect_error(ARGC(a), a, "--mem needs a value");
    char *b[] = {"run", "-e"};
    expect_error(ARGC(b), b, "-e needs a value");
}

static void test_cli_run_parse_help_needs_no_command(void **state)
{
    (void)state;
    char *argv[] = {"run", "--help"};
    struct cli_run_opts o;
    char err[256];
    assert_int_equal(cli_run_parse(ARGC(argv), argv, &o, err, sizeof(err)), 0);
    assert_true(o.help);
    cli_run_opts_fini(&o);
    assert_non_null(strstr(cli_run_usage(), "capsem run [OPTIONS] -- CMD"));
}

static void test_cli_run_main_usage_error_exit_2(void **state)
{
    (void)state;
    char *argv[] = {"run", "--mem", "abc", "--", "true"};
    assert_int_equal(cli_run_main(ARGC(argv), argv), CAPSEM_EXIT_USAGE);
}

/* ---- whole command with a fake VMM ------------------------------------------ */

static char self_exe[1024];
static char home[256];

struct cli_result {
    int status;
    char out[4096];
    size_t out_len;
    char err[4096];
    size_t err_len;
};

static bool kvm_usable(void)
{
    int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return false;
    close(fd);
    return true;
}

static int count_sessions(void);
static void rm_in_home(const char *sub);

static int count_run_dirs(void)
{
    char path[300];
    snprintf(path, sizeof(path), "%s/run", home);
    DIR *d = opendir(path);
    if (!d)
        return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            n++;
    closedir(d);
    return n;
}

/*
 * Run `capsem run ARGS` in a child with FAKE_VMM_MODE=mode, feeding `in`;
 * once stdout shows "running", send `sig` (0 = none) to the child.
 */
static void run_cli(int argc, char **argv, const char *mode, const char *in, int sig,
                    struct cli_result *res)
{
    int pin[2], pout[2], perr[2];
    memset(res, 0, sizeof(*res));
    assert_int_equal(pipe(pin), 0);
    assert_int_equal(pipe(pout), 0);
    assert_int_equal(pipe(perr), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(pin[0], 0);
        dup2(pout[1], 1);
        dup2(perr[1], 2);
        close(pin[1]);
        close(pout[0]);
        close(perr[0]);
        setenv("FAKE_VMM_MODE", mode, 1);
        setenv("CAPSEM_VMM", self_exe, 1);
        setenv("CAPSEM_HOME", home, 1);
        _exit(cli_run_main(argc, argv));
    }
    close(pin[0]);
    close(pout[1]);
    close(perr[1]);
    if (in)
        assert_true(write(pin[1], in, strlen(in)) == (ssize_t)strlen(in));
    close(pin[1]);
    struct pollfd p[2] = {{.fd = pout[0], .events = POLLIN}, {.fd = perr[0], .events = POLLIN}};
    int open_fds = 2;
    bool signalled = false;
    time_t deadline = time(NULL) + 30;
    while (open_fds && time(NULL) < deadline) {
        assert_true(poll(p, 2, 200) >= 0);
        for (int i = 0; i < 2; i++) {
            if (p[i].fd < 0 || !(p[i].revents & (POLLIN | POLLHUP)))
                continue;
            char *dst = i ? res->err : res->out;
            size_t *len = i ? &res->err_len : &res->out_len;
            ssize_t n = read(p[i].fd, dst + *len, 4095 - *len);
            if (n <= 0) {
                close(p[i].fd);
                p[i].fd = -1;
                open_fds--;
            } else {
                *len += (size_t)n;
            }
        }
        if (sig && !signalled && strstr(res->out, "running")) {
            kill(pid, sig);
            signalled = true;
        }
    }
    assert_int_equal(open_fds, 0);
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    res->status = WEXITSTATUS(st);
}

static void test_cli_run_main_streams_stdin_and_status(void **state)
{
    (void)state;
    if (!kvm_usable())
        skip();
    char *argv[] = {"run",  "--kernel",    self_exe, "--initrd", self_exe, "--rootfs",
                    "none", "--workspace", "/tmp",   "--",       "cat"};
    struct cli_result r;
    run_cli(ARGC(argv), argv, "echo", "line one\nline two\n", 0, &r);
    assert_int_equal(r.status, 42);
    assert_string_equal(r.out, "line one\nline two\n");
    assert_string_equal(r.err, "fake stderr\n");
    assert_int_equal(count_run_dirs(), 0);
}

static void test_cli_run_main_first_sigint_goes_to_the_command(void **state)
{
    (void)state;
    if (!kvm_usable())
        skip();
    char *argv[] = {"run",  "--kernel",    self_exe, "--initrd", self_exe, "--rootfs",
                    "none", "--workspace", "/tmp",   "--",       "sleep",  "9"};
    struct cli_result r;
    run_cli(ARGC(argv), argv, "hang", NULL, SIGINT, &r);
    /* The fake command exits 50 + the signal it was sent. */
    assert_int_equal(r.status, 50 + SIGINT);
    assert_int_equal(count_run_dirs(), 0);
}

static void test_cli_run_main_sigterm_tears_down(void **state)
{
    (void)state;
    if (!kvm_usable())
        skip();
    char *argv[] = {"run",  "--kernel",    self_exe, "--initrd", self_exe, "--rootfs",
                    "none", "--workspace", "/tmp",   "--",       "sleep",  "9"};
    struct cli_result r;
    run_cli(ARGC(argv), argv, "hang", NULL, SIGTERM, &r);
    assert_int_equal(r.status, 128 + SIGTERM);
    assert_int_equal(count_run_dirs(), 0);
}

static void test_cli_run_main_sigterm_while_stdout_stalled(void **state)
{
    (void)state;
    if (!kvm_usable())
        skip();
    /* Nobody reads capsem's stdout: it must still obey SIGTERM and clean up. */
    char *argv[] = {"run",  "--kernel",    self_exe, "--initrd", self_exe, "--rootfs",
                    "none", "--workspace", "/tmp",   "--",       "yes"};
    int pout[2];
    assert_int_equal(pipe(pout), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int devnull = open("/dev/null", O_RDWR);
        dup2(devnull, 0);
        dup2(pout[1], 1);
        dup2(devnull, 2);
        close(pout[0]);
        setenv("FAKE_VMM_MODE", "flood", 1);
        setenv("CAPSEM_VMM", self_exe, 1);
        setenv("CAPSEM_HOME", home, 1);
        _exit(cli_run_main(ARGC(argv), argv));
    }
    close(pout[1]);
    usleep(1500 * 1000);
    kill(pid, SIGTERM);
    int st = 0;
    time_t deadline = time(NULL) + 10;
    while (waitpid(pid, &st, WNOHANG) == 0 && time(NULL) < deadline)
        usleep(20 * 1000);
    if (time(NULL) >= deadline) {
        kill(pid, SIGKILL);
        waitpid(pid, &st, 0);
        fail_msg("capsem ignored SIGTERM while its stdout was stalled");
    }
    close(pout[0]);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 128 + SIGTERM);
    assert_int_equal(count_run_dirs(), 0);
}

static void test_cli_run_main_timeout_exit_124(void **state)
{
    (void)state;
    if (!kvm_usable())
        skip();
    char *argv[] = {"run",      "--timeout", "1",        "--kernel", self_exe,
                    "--initrd", self_exe,    "--rootfs", "none",     "--workspace",
                    "/tmp",     "--",        "sleep",    "9"};
    struct cli_result r;
    run_cli(ARGC(argv), argv, "hang", NULL, 0, &r);
    assert_int_equal(r.status, CAPSEM_EXIT_TIMEOUT);
    assert_string_equal(r.err, "capsem: timed out after 1 s\n");
    assert_int_equal(count_run_dirs(), 0);
}

static void test_cli_run_main_vmm_failure_exit_125(void **state)
{
    (void)state;
    if (!kvm_usable())
        skip();
    char *argv[] = {"run",  "--kernel",    self_exe, "--initrd", self_exe, "--rootfs",
                    "none", "--workspace", "/tmp",   "--",       "true"};
    struct cli_result r;
    run_cli(ARGC(argv), argv, "exit1", NULL, 0, &r);
    assert_int_equal(r.status, CAPSEM_EXIT_FAILED);
    assert_non_null(strstr(r.err, "capsem: capsem-vmm exited before the guest was ready"));
    assert_non_null(strstr(r.err, "capsem: the VM log is kept at "));
    /* The kept directory holds only the log and the config. */
    assert_int_equal(count_run_dirs(), 1);
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s/run'", home);
    assert_int_equal(system(cmd), 0);
}

static void test_cli_run_main_missing_assets_exit_125(void **state)
{
    (void)state;
    char *argv[] = {"run", "--kernel", "/nonexistent/vmlinux", "--", "true"};
    struct cli_result r;
    run_cli(ARGC(argv), argv, "ok", NULL, 0, &r);
    assert_int_equal(r.status, CAPSEM_EXIT_FAILED);
    assert_non_null(strstr(r.err, "capsem: guest kernel not found: /nonexistent/vmlinux"));
    assert_int_equal(count_sessions(), 0);
    /* Failing after the session was made (no monitor): the new, empty session goes again. */
    char *b[] = {"run",      "--kernel", self_exe, "--initrd", self_exe,
                 "--rootfs", "none",     "--",     "true"};
    setenv("CAPSEM_VMM", "/nonexistent/capsem-vmm", 1);
    int st = 0;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int devnull = open("/dev/null", O_RDWR);
        dup2(devnull, 1);
        dup2(devnull, 2);
        setenv("CAPSEM_HOME", home, 1);
        _exit(cli_run_main(ARGC(b), b));
    }
    assert_int_equal(waitpid(pid, &st, 0), pid);
    unsetenv("CAPSEM_VMM");
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), CAPSEM_EXIT_FAILED);
    assert_int_equal(count_sessions(), 0);
    rm_in_home("sessions");
}

static int count_sessions(void)
{
    char path[300];
    snprintf(path, sizeof(path), "%s/sessions", home);
    DIR *d = opendir(path);
    if (!d)
        return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            n++;
    closedir(d);
    return n;
}

static void rm_in_home(const char *sub)
{
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s/%s'", home, sub);
    assert_int_equal(system(cmd), 0);
}

static void copy_file(const char *from, const char *to)
{
    char cmd[2200];
    snprintf(cmd, sizeof(cmd), "cp '%s' '%s'", from, to);
    assert_int_equal(system(cmd), 0);
}

static void test_cli_run_main_default_session_dir(void **state)
{
    (void)state;
    if (!kvm_usable())
        skip();
    char *argv[] = {"run",      "--kernel", self_exe, "--initrd", self_exe,
                    "--rootfs", "none",     "--",     "hostname"};
    struct cli_result r;
    run_cli(ARGC(argv), argv, "hostname", NULL, 0, &r);
    assert_int_equal(r.status, 7);
    /* stderr: exactly one line naming the new session and its workspace. */
    char id[SESSION_ID_HEX + 1];
    const char *p = strstr(r.err, "capsem: session ");
    assert_ptr_equal(p, r.err);
    memcpy(id, r.err + 16, SESSION_ID_HEX);
    id[SESSION_ID_HEX] = '\0';
    for (int i = 0; i < SESSION_ID_HEX; i++)
        assert_non_null(strchr("0123456789abcdef", id[i]));
    char want[600];
    snprintf(want, sizeof(want),
             "capsem: session %s: workspace %s/sessions/%s/workspace (kept after the run)\n", id,
             home, id);
    assert_string_equal(r.err, want);
    snprintf(want, sizeof(want), "host capsem-%s\n", id);
    assert_string_equal(r.out, want);
    /* The session and its workspace stay; the run directory goes. */
    snprintf(want, sizeof(want), "%s/sessions/%s/workspace", home, id);
    struct stat st;
    assert_int_equal(stat(want, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0700);
    assert_int_equal(count_run_dirs(), 0);
    assert_int_equal(count_sessions(), 1);
    /* A second run gets a session of its own. */
    run_cli(ARGC(argv), argv, "hostname", NULL, 0, &r);
    assert_int_equal(r.status, 7);
    assert_int_equal(count_sessions(), 2);
    rm_in_home("sessions");
}

static void test_cli_run_main_named_session_reused(void **state)
{
    (void)state;
    if (!kvm_usable())
        skip();
    char *argv[] = {"run",  "--kernel", self_exe, "--initrd", self_exe,  "--rootfs",
                    "none", "--name",   "web-2",  "--",       "hostname"};
    struct cli_result r;
    run_cli(ARGC(argv), argv, "hostname", NULL, 0, &r);
    assert_int_equal(r.status, 7);
    assert_string_equal(r.out, "host web-2\n");
    char want[600];
    snprintf(want, sizeof(want),
             "capsem: session web-2: workspace %s/sessions/web-2/workspace (kept after the run)\n",
             home);
    assert_string_equal(r.err, want);
    /* Something the guest left in the workspace is still there for the next run. */
    snprintf(want, sizeof(want), "%s/sessions/web-2/workspace/notes", home);
    FILE *f = fopen(want, "w");
    assert_non_null(f);
    fclose(f);
    run_cli(ARGC(argv), argv, "hostname", NULL, 0, &r);
    assert_int_equal(r.status, 7);
    assert_string_equal(r.out, "host web-2\n");
    assert_string_equal(r.err, ""); /* not created this time: nothing printed */
    assert_int_equal(access(want, F_OK), 0);
    assert_int_equal(count_sessions(), 1);
    /* A session path that is not a directory of ours is refused, not followed. */
    rm_in_home("sessions/web-2");
    snprintf(want, sizeof(want), "%s/sessions/web-2", home);
    assert_int_equal(symlink("/tmp", want), 0);
    run_cli(ARGC(argv), argv, "hostname", NULL, 0, &r);
    assert_int_equal(r.status, CAPSEM_EXIT_FAILED);
    assert_non_null(strstr(r.err, "capsem: cannot use session directory"));
    assert_int_equal(count_run_dirs(), 0);
    rm_in_home("sessions");
}

static void test_cli_run_main_tampered_kernel_refused(void **state)
{
    (void)state;
    char kernel[400];
    snprintf(kernel, sizeof(kernel), "%s/vmlinux", home);
    mkdir(home, 0700);
    copy_file(self_exe, kernel);
    /* The untouched copy passes the check (and the run goes on to the fake monitor). */
    char *argv[] = {"run",      "--kernel", kernel, "--initrd", self_exe,
                    "--rootfs", "none",     "--",   "true"};
    struct cli_result r;
    run_cli(ARGC(argv), argv, "exit1", NULL, 0, &r);
    assert_null(strstr(r.err, "does not match"));
    rm_in_home("sessions");
    rm_in_home("run");
    /* One byte changed in the middle: refused before anything is made. */
    int fd = open(kernel, O_RDWR);
    assert_true(fd >= 0);
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    unsigned char b;
    assert_int_equal(pread(fd, &b, 1, st.st_size / 2), 1);
    b ^= 0x01;
    assert_int_equal(pwrite(fd, &b, 1, st.st_size / 2), 1);
    close(fd);
    run_cli(ARGC(argv), argv, "ok", NULL, 0, &r);
    assert_int_equal(r.status, CAPSEM_EXIT_FAILED);
    char want[600];
    snprintf(want, sizeof(want), "capsem: guest kernel %s does not match the SHA-256 recorded",
             kernel);
    assert_ptr_equal(strstr(r.err, want), r.err);
    assert_int_equal(strchr(r.err, '\n') - r.err, (long)strlen(r.err) - 1); /* one line */
    assert_string_equal(r.out, "");
    assert_int_equal(count_sessions(), 0);
    assert_int_equal(count_run_dirs(), 0);
    unlink(kernel);
}

static void test_cli_run_main_rootfs_without_hash_refused(void **state)
{
    (void)state;
    char *argv[] = {"run",      "--kernel", self_exe, "--initrd", self_exe,
                    "--rootfs", self_exe,   "--",     "true"};
    struct cli_result r;
    run_cli(ARGC(argv), argv, "ok", NULL, 0, &r);
    assert_int_equal(r.status, CAPSEM_EXIT_FAILED);
    assert_non_null(strstr(r.err, "capsem: no SHA-256 was recorded at build time for the guest "
                                  "root filesystem"));
    assert_non_null(strstr(r.err, "--rootfs none"));
    assert_int_equal(count_sessions(), 0);
    assert_int_equal(count_run_dirs(), 0);
}

/* Read `<home>/run/<the one run dir>/vmm.json` into a new JSON value. */
static json_t *kept_vmm_config(void)
{
    char path[300];
    snprintf(path, sizeof(path), "%s/run", home);
    DIR *d = opendir(path);
    assert_non_null(d);
    struct dirent *e;
    json_t *cfg = NULL;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        char file[600];
        snprintf(file, sizeof(file), "%s/%s/vmm.json", path, e->d_name);
        cfg = json_load_file(file, 0, NULL);
    }
    closedir(d);
    assert_non_null(cfg);
    return cfg;
}

static void test_cli_run_main_default_rootfs(void **state)
{
    (void)state;
    if (!kvm_usable())
        skip();
    char assets[300], image[400];
    snprintf(assets, sizeof(assets), "%s/assets", home);
    snprintf(image, sizeof(image), "%s/rootfs.sqfs", assets);
    mkdir(home, 0700);
    mkdir(assets, 0700);
    setenv("CAPSEM_ASSETS", assets, 1);
    char *argv[] = {"run",         "--kernel", self_exe,   "--initrd", self_exe, "--keep",
                    "--workspace", "/tmp",     "--no-net", "--",       "true"};
    struct cli_result r;
    /* No rootfs hash built in: the initramfs alone, with a note saying so. */
    run_cli(ARGC(argv), argv, "ok", NULL, 0, &r);
    assert_int_equal(r.status, 7);
    assert_non_null(strstr(r.err, "capsem: note: this capsem was built without a Debian root "
                                  "filesystem"));
    json_t *cfg = kept_vmm_config();
    assert_null(json_object_get(cfg, "disks"));
    json_decref(cfg);
    rm_in_home("run");
    /* A hash built in and the image there: it is the root disk. */
    const struct integrity_built *saved = integrity_get_built();
    struct integrity_built b = *saved;
    b.rootfs = saved->kernel;
    integrity_set_built(&b);
    copy_file(self_exe, image);
    run_cli(ARGC(argv), argv, "ok", NULL, 0, &r);
    assert_int_equal(r.status, 7);
    assert_string_equal(r.err, "");
    cfg = kept_vmm_config();
    json_t *disk = json_array_get(json_object_get(cfg, "disks"), 0);
    assert_string_equal(json_string_value(json_object_get(disk, "path")), image);
    assert_true(json_is_true(json_object_get(disk, "read_only")));
    json_decref(cfg);
    rm_in_home("run");
    /* --rootfs none: no disk and no note. */
    char *none[] = {"run",  "--kernel", self_exe, "--initrd", self_exe, "--keep", "--workspace",
                    "/tmp", "--rootfs", "none",   "--no-net", "--",     "true"};
    run_cli(ARGC(none), none, "ok", NULL, 0, &r);
    assert_int_equal(r.status, 7);
    assert_string_equal(r.err, "");
    cfg = kept_vmm_config();
    assert_null(json_object_get(cfg, "disks"));
    json_decref(cfg);
    rm_in_home("run");
    /* The image tampered with: refused by name. */
    int fd = open(image, O_WRONLY);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, "X", 1, 100), 1);
    close(fd);
    run_cli(ARGC(argv), argv, "ok", NULL, 0, &r);
    assert_int_equal(r.status, CAPSEM_EXIT_FAILED);
    char want[600];
    snprintf(want, sizeof(want),
             "capsem: guest root filesystem %s does not match the SHA-256 recorded", image);
    assert_ptr_equal(strstr(r.err, want), r.err);
    assert_int_equal(count_run_dirs(), 0);
    integrity_set_built(saved);
    unsetenv("CAPSEM_ASSETS");
    rm_in_home("assets");
}

static void test_cli_run_main_scratch_disk(void **state)
{
    (void)state;
    if (!kvm_usable())
        skip();
    /* Without a root image there is no overlay to put on it: refused, nothing made. */
    char *none[] = {"run",  "--kernel",  self_exe, "--initrd", self_exe, "--rootfs",
                    "none", "--scratch", "64M",    "--",       "true"};
    struct cli_result r;
    run_cli(ARGC(none), none, "ok", NULL, 0, &r);
    assert_int_equal(r.status, CAPSEM_EXIT_FAILED);
    assert_non_null(strstr(r.err, "capsem: --scratch holds the root filesystem's writable layer"));
    if (count_sessions() != 0) {
        char cmd[400];
        snprintf(cmd, sizeof(cmd), "ls -la %s/sessions >&2", home);
        (void)!system(cmd);
    }
    assert_int_equal(count_sessions(), 0);
    if (access("/usr/sbin/mkfs.ext4", X_OK) != 0 && access("/sbin/mkfs.ext4", X_OK) != 0)
        skip();
    /* With a root: the second disk, read-write, and init told where it is. */
    const struct integrity_built *saved = integrity_get_built();
    struct integrity_built b = *saved;
    b.rootfs = saved->kernel;
    integrity_set_built(&b);
    char *argv[] = {"run",      "--kernel",  self_exe, "--initrd", self_exe,
                    "--rootfs", self_exe,    "--name", "scr",      "--keep",
                    "--no-net", "--scratch", "64M",    "--",       "true"};
    run_cli(ARGC(argv), argv, "ok", NULL, 0, &r);
    integrity_set_built(saved);
    assert_int_equal(r.status, 7);
    json_t *cfg = kept_vmm_config();
    json_t *disks = json_object_get(cfg, "disks");
    assert_int_equal(json_array_size(disks), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(disks, 0), "path")),
                        self_exe);
    char want[600];
    snprintf(want, sizeof(want), "%s/sessions/scr/scratch.img", home);
    assert_string_equal(json_string_value(json_object_get(json_array_get(disks, 1), "path")), want);
    assert_true(json_is_false(json_object_get(json_array_get(disks, 1), "read_only")));
    const char *line = json_string_value(json_object_get(cfg, "cmdline"));
    assert_non_null(strstr(line, "capsem.root=/dev/vda"));
    assert_non_null(strstr(line, "capsem.scratch=/dev/vdb"));
    json_decref(cfg);
    /* Scratch is scratch: gone after the run; the session stays. */
    assert_int_equal(access(want, F_OK), -1);
    assert_int_equal(count_sessions(), 1);
    rm_in_home("run");
    rm_in_home("sessions");
}

int main(int argc, char **argv)
{
    if (argc >= 3 && !strcmp(argv[1], "--config"))
        return fake_vmm_main(argv[2]);
    if (argc >= 2 && !strcmp(argv[1], "--probe")) {
        printf("kvm: native 1 ms\n");
        return 0;
    }
    setenv("ASAN_OPTIONS", "detect_leaks=0", 1);
    ssize_t n = readlink("/proc/self/exe", self_exe, sizeof(self_exe) - 1);
    if (n <= 0)
        return 1;
    self_exe[n] = '\0';
    snprintf(home, sizeof(home), "/tmp/capsem-test-cli-%d", (int)getpid());
    /* This binary is the kernel and initramfs of the runs: record its hash as theirs. */
    static char self_hash[65];
    if (integrity_file_sha256(NULL, self_exe, self_hash, NULL))
        return 1;
    static struct integrity_built built;
    built.kernel = built.initrd = self_hash;
    integrity_set_built(&built);
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cli_run_parse_defaults),
        cmocka_unit_test(test_cli_run_parse_all_options),
        cmocka_unit_test(test_cli_run_parse_bad_mem),
        cmocka_unit_test(test_cli_run_parse_bad_cpus_and_timeouts),
        cmocka_unit_test(test_cli_run_parse_missing_dashdash),
        cmocka_unit_test(test_cli_run_parse_no_command_after_dashdash),
        cmocka_unit_test(test_cli_run_parse_env_without_equals),
        cmocka_unit_test(test_cli_run_parse_unknown_option),
        cmocka_unit_test(test_cli_run_parse_workspace),
        cmocka_unit_test(test_cli_run_parse_name_and_rootfs),
        cmocka_unit_test(test_cli_run_parse_policy),
        cmocka_unit_test(test_cli_run_parse_option_without_value),
        cmocka_unit_test(test_cli_run_parse_help_needs_no_command),
        cmocka_unit_test(test_cli_run_main_usage_error_exit_2),
        cmocka_unit_test(test_cli_run_main_streams_stdin_and_status),
        cmocka_unit_test(test_cli_run_main_first_sigint_goes_to_the_command),
        cmocka_unit_test(test_cli_run_main_sigterm_tears_down),
        cmocka_unit_test(test_cli_run_main_sigterm_while_stdout_stalled),
        cmocka_unit_test(test_cli_run_main_timeout_exit_124),
        cmocka_unit_test(test_cli_run_main_vmm_failure_exit_125),
        cmocka_unit_test(test_cli_run_main_missing_assets_exit_125),
        cmocka_unit_test(test_cli_run_main_default_session_dir),
        cmocka_unit_test(test_cli_run_main_named_session_reused),
        cmocka_unit_test(test_cli_run_main_tampered_kernel_refused),
        cmocka_unit_test(test_cli_run_main_rootfs_without_hash_refused),
        cmocka_unit_test(test_cli_run_main_default_rootfs),
        cmocka_unit_test(test_cli_run_main_scratch_disk),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    char run[300];
    snprintf(run, sizeof(run), "%s/run", home);
    rmdir(run);
    snprintf(run, sizeof(run), "%s/integrity-cache.json", home);
    unlink(run);
    rmdir(home);
    return rc;
}
