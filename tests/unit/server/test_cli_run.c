/*
 * Unit tests for `capsem run` option parsing (server/cli_run.c). Every bad
 * command line must be refused with -EINVAL and a reason naming the culprit:
 * bad numbers (--mem, --cpus, --timeout), a missing "--" or command, -e
 * without NAME=VALUE, unknown options and options missing their value.
 * The cli_run_main tests run the whole command in a child process with this
 * binary as a fake capsem-vmm (see fake_guest.h), checking stdin, stdout,
 * stderr, the exit status and signal handling without a VM.
 */
#include "cli_run.h"
#include "fake_guest.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
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
    assert_null(o.workspace); /* default: no share, /root is the guest's own */
    cli_run_opts_fini(&o);
    char *c[] = {"run", "--workspace", "", "--", "true"};
    expect_error(ARGC(c), c, "--workspace: expected a directory");
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
    char *argv[] = {"run", "--kernel", self_exe, "--initrd", self_exe, "--", "cat"};
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
    char *argv[] = {"run", "--kernel", self_exe, "--initrd", self_exe, "--", "sleep", "9"};
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
    char *argv[] = {"run", "--kernel", self_exe, "--initrd", self_exe, "--", "sleep", "9"};
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
    char *argv[] = {"run", "--kernel", self_exe, "--initrd", self_exe, "--", "yes"};
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
    char *argv[] = {"run",      "--timeout", "1",  "--kernel", self_exe,
                    "--initrd", self_exe,    "--", "sleep",    "9"};
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
    char *argv[] = {"run", "--kernel", self_exe, "--initrd", self_exe, "--", "true"};
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
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    char run[300];
    snprintf(run, sizeof(run), "%s/run", home);
    rmdir(run);
    rmdir(home);
    return rc;
}
