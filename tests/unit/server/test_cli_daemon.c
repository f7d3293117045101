/*
 * `capsem run` through a running daemon and `capsem exec` on the exec stream
 * (server/cli_client.c), end to end without a VM: a real `capsem serve`
 * (cli_serve_main in a child process) whose sessions boot this test binary
 * as a stand-in capsem-vmm, which starts the real capsem-agent (built next
 * to it) on this host. The CLI commands run in child processes with their
 * stdin, stdout and stderr on pipes. Which path a run took is seen from the
 * stand-in monitor's parent: the daemon, or the `capsem run` process itself.
 * Bad input and what it gives:
 * - no serve.json, or one whose daemon is gone: the standalone path, and for
 *   the stale file an info line saying why;
 * - an option a daemon session cannot take (--workspace): exit 2 naming it
 *   and --standalone;
 * - the daemon refusing the session (a name already running) or failing to
 *   boot it (a root image with no recorded hash): exit 125 with its message,
 *   which names the image;
 * - an unknown session for `capsem exec`: exit 1 with the daemon's reason;
 * - a command the guest cannot start: 127 with the guest's reason.
 */
#include "cli_client.h"
#include "cli_run.h"
#include "cli_serve.h"
#include "integrity.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char self_exe[1024];
static char agent[1100];
static char home[256];  /* the daemon's CAPSEM_HOME */
static char home2[300]; /* a CAPSEM_HOME without a daemon */
static pid_t daemon_pid = -1;
static bool usable;

/* What one CLI child did. */
struct outcome {
    int code;
    char out[1 << 16];
    size_t out_len;
    char err[1 << 16];
    size_t err_len;
    pid_t pid;
};

static int (*const mains[])(int, char **) = {cli_run_main, cli_exec_main, cli_create_main,
                                             cli_list_main};
enum { M_RUN, M_EXEC, M_CREATE, M_LIST };

/*
 * Run mains[which](argv) in a child with `in` (in_len bytes) on its stdin,
 * extra "K=V" environment entries set in the child only; collects stdout,
 * stderr (NUL-terminated) and the exit status in *o.
 */
static void cli(int which, char **argv, const char *in, size_t in_len, const char *const *env,
                struct outcome *o)
{
    int pi[2], po[2], pe[2];
    memset(o, 0, sizeof(*o));
    assert_int_equal(pipe(pi), 0);
    assert_int_equal(pipe(po), 0);
    assert_int_equal(pipe(pe), 0);
    int argc = 0;
    while (argv[argc])
        argc++;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(pi[0], 0);
        dup2(po[1], 1);
        dup2(pe[1], 2);
        for (int fd = 3; fd < 64; fd++)
            close(fd);
        for (size_t i = 0; env && env[i]; i++)
            putenv((char *)env[i]);
        int rc = mains[which](argc, argv);
        fflush(NULL);
        _exit(rc);
    }
    o->pid = pid;
    close(pi[0]);
    close(po[1]);
    close(pe[1]);
    fcntl(pi[1], F_SETFL, O_NONBLOCK);
    size_t sent = 0;
    int fds[3] = {po[0], pe[0], pi[1]};
    if (!in_len) {
        close(pi[1]);
        fds[2] = -1;
    }
    time_t end = time(NULL) + 100;
    while ((fds[0] >= 0 || fds[1] >= 0) && time(NULL) < end) {
        struct pollfd p[3] = {{.fd = fds[0], .events = POLLIN},
                              {.fd = fds[1], .events = POLLIN},
                              {.fd = fds[2], .events = POLLOUT}};
        if (poll(p, 3, 1000) < 0)
            break;
        for (int k = 0; k < 2; k++) {
            if (!(p[k].revents & (POLLIN | POLLHUP)))
                continue;
            char *b = k ? o->err : o->out;
            size_t *l = k ? &o->err_len : &o->out_len;
            size_t room = sizeof(o->out) - 1 - *l;
            char sink[4096];
            ssize_t n = room ? read(fds[k], b + *l, room) : read(fds[k], sink, sizeof(sink));
            if (n <= 0) {
                close(fds[k]);
                fds[k] = -1;
            } else if (room) {
                *l += (size_t)n;
            }
        }
        if (p[2].revents & (POLLOUT | POLLERR)) {
            ssize_t n = write(fds[2], in + sent, in_len - sent);
            if (n > 0)
                sent += (size_t)n;
            if (n < 0 || sent == in_len) {
                close(fds[2]);
                fds[2] = -1;
            }
        }
    }
    for (int k = 0; k < 3; k++)
        if (fds[k] >= 0)
            close(fds[k]);
    o->out[o->out_len] = '\0';
    o->err[o->err_len] = '\0';
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    o->code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* The parent pid the stand-in monitor of the last boot in `h` recorded. */
static long vmm_parent(const char *h)
{
    char path[400], line[64] = "";
    snprintf(path, sizeof(path), "%s/vmm-parent", h);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    if (!fgets(line, sizeof(line), f))
        line[0] = '\0';
    fclose(f);
    unlink(path);
    return strtol(line, NULL, 10);
}

/* The session id from the "capsem: session ID: workspace ..." line, into id. */
static bool session_of(const char *err, char id[64])
{
    const char *p = strstr(err, "capsem: session ");
    if (!p)
        return false;
    p += strlen("capsem: session ");
    size_t n = strcspn(p, ":");
    if (!n || n >= 64)
        return false;
    memcpy(id, p, n);
    id[n] = '\0';
    return true;
}

/* Session id's status in the daemon's list (GET /api/v1/sessions), or "absent". */
static const char *listed_status(const char *id)
{
    static char st[32];
    char err[512];
    struct cli_http_resp r;
    snprintf(st, sizeof(st), "absent");
    assert_int_equal(cli_http(home, "GET", "/api/v1/sessions", NULL, &r, err, sizeof(err)), 0);
    assert_int_equal(r.status, 200);
    json_t *j = json_loadb(r.body, r.body_len, 0, NULL);
    size_t i;
    json_t *s;
    json_array_foreach(json_object_get(j, "sessions"), i, s)
    {
        if (!strcmp(json_string_value(json_object_get(s, "id")), id))
            snprintf(st, sizeof(st), "%s", json_string_value(json_object_get(s, "status")));
    }
    json_decref(j);
    cli_http_resp_fini(&r);
    return st;
}

/* The session's "policy" as GET /api/v1/sessions/ID shows it ("null" when none). */
static const char *session_policy(const char *id)
{
    static char pol[32];
    char err[512], path[160];
    struct cli_http_resp r;
    snprintf(path, sizeof(path), "/api/v1/sessions/%s", id);
    assert_int_equal(cli_http(home, "GET", path, NULL, &r, err, sizeof(err)), 0);
    assert_int_equal(r.status, 200);
    json_t *j = json_loadb(r.body, r.body_len, 0, NULL);
    json_t *v = json_object_get(j, "policy");
    snprintf(pol, sizeof(pol), "%s", json_is_string(v) ? json_string_value(v) : "null");
    json_decref(j);
    cli_http_resp_fini(&r);
    return pol;
}

static bool wait_listed(const char *id, const char *want)
{
    for (int i = 0; i < 300; i++) {
        if (!strcmp(listed_status(id), want))
            return true;
        usleep(100000);
    }
    return false;
}

static void copy_file(const char *from, const char *to)
{
    char cmd[2400];
    snprintf(cmd, sizeof(cmd), "cp '%s' '%s'", from, to);
    assert_int_equal(system(cmd), 0);
}

static bool kvm_usable(void)
{
    int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return false;
    close(fd);
    return true;
}

static int setup(void **state)
{
    (void)state;
    char assets[300], f[400], line[512] = "";
    usable = access(agent, X_OK) == 0 && kvm_usable();
    if (!usable)
        return 0;
    snprintf(home, sizeof(home), "/tmp/capsem-test-cli-daemon-XXXXXX");
    if (!mkdtemp(home))
        return -1;
    snprintf(home2, sizeof(home2), "%s/nodaemon", home);
    if (mkdir(home2, 0700))
        return -1;
    snprintf(assets, sizeof(assets), "%s/assets", home);
    mkdir(assets, 0700);
    snprintf(f, sizeof(f), "%s/vmlinux", assets);
    copy_file(self_exe, f);
    snprintf(f, sizeof(f), "%s/initrd.img", assets);
    copy_file(self_exe, f);
    setenv("CAPSEM_ASSETS", assets, 1);
    setenv("CAPSEM_VMM", self_exe, 1);
    setenv("CAPSEM_HOME", home, 1);
    setenv("CAPSEM_LOG", "info", 1);
    unsetenv("CAPSEM_STANDALONE");
    int p[2];
    if (pipe(p))
        return -1;
    daemon_pid = fork();
    if (daemon_pid < 0)
        return -1;
    if (daemon_pid == 0) {
        dup2(p[1], 1);
        close(p[0]);
        close(p[1]);
        char log[400];
        snprintf(log, sizeof(log), "%s/serve.log", home);
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        if (fd >= 0)
            dup2(fd, 2);
        char *av[] = {"serve", "--listen", "127.0.0.1:0", NULL};
        _exit(cli_serve_main(3, av));
    }
    close(p[1]);
    /* The login URL is printed once the daemon listens (serve.json is written before it). */
    FILE *in = fdopen(p[0], "r");
    bool up = in && fgets(line, sizeof(line), in) && strstr(line, "/login?t=");
    if (in)
        fclose(in);
    return up ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    if (daemon_pid > 0) {
        kill(daemon_pid, SIGTERM);
        waitpid(daemon_pid, NULL, 0);
    }
    if (!home[0])
        return 0;
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", home);
    return system(cmd) == 0 ? 0 : -1;
}

#define NEED_HOST_AGENT()                                                                          \
    do {                                                                                           \
        if (!usable) {                                                                             \
            print_message("capsem-agent next to this test or /dev/kvm missing: skipped\n");        \
            skip();                                                                                \
        }                                                                                          \
    } while (0)

static void test_cli_run_daemon_streams_and_lists_stopped(void **state)
{
    (void)state;
    NEED_HOST_AGENT();
    struct outcome o;
    char id[64];
    char *av[] = {"run", "--rootfs", "none", "--", "sh", "-c", "echo out; echo err >&2; exit 3",
                  NULL};
    cli(M_RUN, av, NULL, 0, NULL, &o);
    assert_int_equal(o.code, 3);
    assert_string_equal(o.out, "out\n");
    assert_non_null(strstr(o.err, "\nerr\n"));
    assert_non_null(strstr(o.err, "event=daemon_session"));
    /* The daemon started the monitor, not the run. */
    assert_int_equal(vmm_parent(home), (long)daemon_pid);
    assert_true(session_of(o.err, id));
    /* The run returns once the VM is gone: listed, stopped, right away. */
    assert_string_equal(listed_status(id), "stopped");
    /* A command the guest cannot start: 127 and the guest's reason, as standalone. */
    char *av2[] = {"run", "--rootfs", "none", "--", "/nonexistent-prog", NULL};
    cli(M_RUN, av2, NULL, 0, NULL, &o);
    assert_int_equal(o.code, 127);
    assert_string_equal(o.out, "");
    assert_non_null(strstr(o.err, "capsem: /nonexistent-prog: "));
}

/* --policy reaches the daemon's session; without it the session has none. */
static void test_cli_run_daemon_policy(void **state)
{
    (void)state;
    NEED_HOST_AGENT();
    struct outcome o;
    char id[64];
    char *av[] = {"run", "--rootfs", "none", "--policy", "medium", "--", "true", NULL};
    cli(M_RUN, av, NULL, 0, NULL, &o);
    assert_int_equal(o.code, 0);
    assert_true(session_of(o.err, id));
    assert_string_equal(session_policy(id), "medium");
    char *av2[] = {"run", "--rootfs", "none", "--", "true", NULL};
    cli(M_RUN, av2, NULL, 0, NULL, &o);
    assert_int_equal(o.code, 0);
    assert_true(session_of(o.err, id));
    assert_string_equal(session_policy(id), "null");
}

static void test_cli_run_daemon_stdin_piped(void **state)
{
    (void)state;
    NEED_HOST_AGENT();
    struct outcome o;
    char *av[] = {"run", "--rootfs", "none", "--", "cat", NULL};
    cli(M_RUN, av, "abc", 3, NULL, &o);
    assert_int_equal(o.code, 0);
    assert_string_equal(o.out, "abc");
    /* 48 KiB of every byte value, through binary frames both ways. */
    size_t n = 48u << 10;
    char *in = malloc(n);
    assert_non_null(in);
    for (size_t i = 0; i < n; i++)
        in[i] = (char)(i * 7 + i / 256);
    char *av2[] = {"run", "--rootfs", "none", "--", "cat", NULL};
    cli(M_RUN, av2, in, n, NULL, &o);
    assert_int_equal(o.code, 0);
    assert_int_equal(o.out_len, n);
    assert_memory_equal(o.out, in, n);
    free(in);
}

static void test_cli_run_no_daemon_is_standalone(void **state)
{
    (void)state;
    NEED_HOST_AGENT();
    struct outcome o;
    char env_home[400];
    snprintf(env_home, sizeof(env_home), "CAPSEM_HOME=%s", home2);
    const char *env[] = {env_home, NULL};
    char *av[] = {"run", "--rootfs", "none", "--", "sh", "-c", "echo here; exit 4", NULL};
    cli(M_RUN, av, NULL, 0, env, &o);
    assert_int_equal(o.code, 4);
    assert_string_equal(o.out, "here\n");
    assert_non_null(strstr(o.err, "event=standalone_run"));
    assert_null(strstr(o.err, "event=standalone reason="));
    assert_int_equal(vmm_parent(home2), (long)o.pid);

    /* A serve.json left by a daemon that is gone (a port nothing listens on). */
    char sj[400], tok[400];
    snprintf(sj, sizeof(sj), "%s/serve.json", home2);
    snprintf(tok, sizeof(tok), "%s/token", home);
    FILE *f = fopen(sj, "w");
    assert_non_null(f);
    fprintf(f, "{\"addr\":\"127.0.0.1\",\"port\":1,\"pid\":1}\n");
    fclose(f);
    char tok2[400];
    snprintf(tok2, sizeof(tok2), "%s/token", home2);
    copy_file(tok, tok2);
    cli(M_RUN, av, NULL, 0, env, &o);
    unlink(sj);
    assert_int_equal(o.code, 4);
    assert_string_equal(o.out, "here\n");
    assert_non_null(strstr(o.err, "INFO capsem event=standalone reason=\"cannot reach the daemon"));
    assert_int_equal(vmm_parent(home2), (long)o.pid);
}

static void test_cli_run_standalone_forced(void **state)
{
    (void)state;
    NEED_HOST_AGENT();
    struct outcome o;
    char *av[] = {"run", "--standalone", "--rootfs", "none", "--", "echo", "s", NULL};
    cli(M_RUN, av, NULL, 0, NULL, &o);
    assert_int_equal(o.code, 0);
    assert_string_equal(o.out, "s\n");
    assert_int_equal(vmm_parent(home), (long)o.pid);
    const char *env[] = {"CAPSEM_STANDALONE=1", NULL};
    char *av2[] = {"run", "--rootfs", "none", "--", "echo", "e", NULL};
    cli(M_RUN, av2, NULL, 0, env, &o);
    assert_int_equal(o.code, 0);
    assert_string_equal(o.out, "e\n");
    assert_int_equal(vmm_parent(home), (long)o.pid);
}

static void test_cli_run_daemon_refused_option(void **state)
{
    (void)state;
    NEED_HOST_AGENT();
    struct outcome o;
    vmm_parent(home); /* forget earlier boots */
    char *av[] = {"run", "--workspace", "/tmp", "--", "true", NULL};
    cli(M_RUN, av, NULL, 0, NULL, &o);
    assert_int_equal(o.code, CAPSEM_EXIT_USAGE);
    assert_non_null(strstr(o.err, "--workspace"));
    assert_non_null(strstr(o.err, "--standalone"));
    assert_int_equal(vmm_parent(home), -1);
}

static void test_cli_run_daemon_errors_exit_125(void **state)
{
    (void)state;
    NEED_HOST_AGENT();
    struct outcome o;
    /* A boot the daemon fails: its reason. */
    char *av[] = {"run", "--rootfs", "/nonexistent/root.sqfs", "--", "true", NULL};
    cli(M_RUN, av, NULL, 0, NULL, &o);
    assert_int_equal(o.code, CAPSEM_EXIT_FAILED);
    char id[64], path[128], err[512];
    assert_true(session_of(o.err, id));
    snprintf(path, sizeof(path), "/api/v1/sessions/%s", id);
    struct cli_http_resp r;
    assert_int_equal(cli_http(home, "GET", path, NULL, &r, err, sizeof(err)), 0);
    json_t *j = json_loadb(r.body, r.body_len, 0, NULL);
    cli_http_resp_fini(&r);
    const char *why = json_string_value(json_object_get(j, "reason"));
    assert_string_equal(json_string_value(json_object_get(j, "status")), "failed");
    assert_non_null(why);
    /* The real reason, naming the image, not a pointer to the daemon's log. */
    assert_non_null(strstr(why, "guest root filesystem /nonexistent/root.sqfs"));
    assert_non_null(strstr(o.err, why));
    /* `capsem list` shows it under the failed session's line. */
    char *lv[] = {"list", NULL};
    char line[700];
    snprintf(line, sizeof(line), "\n  failed: %s\n", why);
    json_decref(j);
    cli(M_LIST, lv, NULL, 0, NULL, &o);
    assert_int_equal(o.code, 0);
    assert_non_null(strstr(o.out, line));
    /* A session the daemon refuses: a name that is running. */
    char *cv[] = {"create", "--rootfs", "none", "--name", "busy", NULL};
    cli(M_CREATE, cv, NULL, 0, NULL, &o);
    assert_int_equal(o.code, 0);
    assert_true(wait_listed("busy", "running"));
    char *av2[] = {"run", "--rootfs", "none", "--name", "busy", "--", "true", NULL};
    cli(M_RUN, av2, NULL, 0, NULL, &o);
    assert_int_equal(o.code, CAPSEM_EXIT_FAILED);
    assert_non_null(strstr(o.err, "the daemon refused the session: "));
    assert_non_null(strstr(o.err, "HTTP 409"));
    /* The running session was left alone. */
    assert_string_equal(listed_status("busy"), "running");
}

/* create waits until its session runs (or ran its command), or says why it failed. */
static void test_cli_create_waits(void **state)
{
    (void)state;
    NEED_HOST_AGENT();
    struct outcome o;
    char *av[] = {"create", "--rootfs", "none", "--name", "waited", NULL};
    cli(M_CREATE, av, NULL, 0, NULL, &o);
    assert_int_equal(o.code, 0);
    assert_string_equal(o.out, "waited\n");
    assert_string_equal(listed_status("waited"), "running");
    /* A command that ends at once: stopped is what it was asked for. */
    char *bv[] = {"create", "--rootfs", "none", "--name", "oneshot", "--", "true", NULL};
    cli(M_CREATE, bv, NULL, 0, NULL, &o);
    assert_int_equal(o.code, 0);
    assert_string_equal(o.out, "oneshot\n");
    /* A boot that fails: 125 and the reason. */
    char *cv[] = {"create", "--rootfs", "/nonexistent/create.sqfs", "--name", "broken", NULL};
    cli(M_CREATE, cv, NULL, 0, NULL, &o);
    assert_int_equal(o.code, CAPSEM_EXIT_FAILED);
    assert_string_equal(o.out, "");
    assert_non_null(strstr(o.err, "capsem: the daemon's session broken failed: "));
    assert_non_null(strstr(o.err, "/nonexistent/create.sqfs"));
    /* --no-wait: the id at once, whatever the session's state. */
    char *dv[] = {"create", "--rootfs", "none", "--name", "nowait", "--no-wait", NULL};
    cli(M_CREATE, dv, NULL, 0, NULL, &o);
    assert_int_equal(o.code, 0);
    assert_string_equal(o.out, "nowait\n");
    assert_true(wait_listed("nowait", "running"));
}

static void test_cli_run_daemon_timeout(void **state)
{
    (void)state;
    NEED_HOST_AGENT();
    struct outcome o;
    char id[64];
    char *av[] = {"run", "--rootfs", "none", "--timeout", "2", "--", "sleep", "30", NULL};
    time_t t0 = time(NULL);
    cli(M_RUN, av, NULL, 0, NULL, &o);
    assert_int_equal(o.code, CAPSEM_EXIT_TIMEOUT);
    assert_non_null(strstr(o.err, "timed out after 2 s"));
    assert_true(time(NULL) - t0 < 25);
    assert_true(session_of(o.err, id));
    assert_string_equal(listed_status(id), "stopped");
}

static void test_cli_exec_stream_output_status_stdin(void **state)
{
    (void)state;
    NEED_HOST_AGENT();
    struct outcome o;
    char *cv[] = {"create", "--rootfs", "none", "--name", "ex1", NULL};
    cli(M_CREATE, cv, NULL, 0, NULL, &o);
    assert_int_equal(o.code, 0);
    assert_true(wait_listed("ex1", "running"));
    char *av[] = {"exec", "-e", "V=42", "ex1", "--", "sh", "-c", "echo o$V; echo e >&2; exit 7",
                  NULL};
    cli(M_EXEC, av, NULL, 0, NULL, &o);
    assert_int_equal(o.code, 7);
    assert_string_equal(o.out, "o42\n");
    assert_string_equal(o.err, "e\n");
    char *av2[] = {"exec", "ex1", "--", "tr", "a-z", "A-Z", NULL};
    cli(M_EXEC, av2, "stream me", 9, NULL, &o);
    assert_int_equal(o.code, 0);
    assert_string_equal(o.out, "STREAM ME");
    char *av3[] = {"exec", "--timeout", "1", "ex1", "--", "sleep", "20", NULL};
    cli(M_EXEC, av3, NULL, 0, NULL, &o);
    assert_int_equal(o.code, CAPSEM_EXIT_TIMEOUT);
    /* --json keeps the buffered route: one JSON answer. */
    char *av4[] = {"exec", "--json", "ex1", "--", "true", NULL};
    cli(M_EXEC, av4, NULL, 0, NULL, &o);
    assert_int_equal(o.code, 0);
    json_t *j = json_loads(o.out, 0, NULL);
    assert_non_null(j);
    assert_int_equal(json_integer_value(json_object_get(j, "exit_code")), 0);
    json_decref(j);
    char *av5[] = {"exec", "nosuch", "--", "true", NULL};
    cli(M_EXEC, av5, NULL, 0, NULL, &o);
    assert_int_equal(o.code, 1);
    assert_non_null(strstr(o.err, "no such session"));
}

/* The stand-in capsem-vmm: record who started it, then become the real agent on this host. */
static int fake_vmm_main(const char *config)
{
    const char *h = getenv("CAPSEM_HOME");
    char path[4200], uds[4200];
    json_t *c = json_load_file(config, 0, NULL);
    const char *u = json_string_value(json_object_get(json_object_get(c, "vsock"), "uds"));
    if (!u || !h)
        return 2;
    snprintf(uds, sizeof(uds), "%s_5000", u);
    json_decref(c);
    snprintf(path, sizeof(path), "%s/vmm-parent", h);
    FILE *f = fopen(path, "w");
    if (f) {
        fprintf(f, "%ld\n", (long)getppid());
        fclose(f);
    }
    setenv("CAPSEM_AGENT_UNIX", uds, 1);
    printf("stand-in monitor\n");
    fflush(stdout);
    char *av[] = {agent, NULL};
    execv(agent, av);
    return 127;
}

int main(int argc, char **argv)
{
    ssize_t n = readlink("/proc/self/exe", self_exe, sizeof(self_exe) - 1);
    if (n <= 0)
        return 1;
    self_exe[n] = '\0';
    snprintf(agent, sizeof(agent), "%s", self_exe);
    char *slash = strrchr(agent, '/');
    if (slash)
        snprintf(slash + 1, sizeof(agent) - (size_t)(slash + 1 - agent), "capsem-agent");
    if (argc >= 3 && !strcmp(argv[1], "--config"))
        return fake_vmm_main(argv[2]);
    if (argc >= 2 && !strcmp(argv[1], "--probe")) {
        printf("kvm: native 1 ms\n");
        return 0;
    }
    static char self_hash[65];
    if (integrity_file_sha256(NULL, self_exe, self_hash, NULL))
        return 1;
    static struct integrity_built built;
    built.kernel = built.initrd = self_hash;
    integrity_set_built(&built);
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cli_run_daemon_streams_and_lists_stopped),
        cmocka_unit_test(test_cli_run_daemon_policy),
        cmocka_unit_test(test_cli_run_daemon_stdin_piped),
        cmocka_unit_test(test_cli_run_no_daemon_is_standalone),
        cmocka_unit_test(test_cli_run_standalone_forced),
        cmocka_unit_test(test_cli_run_daemon_refused_option),
        cmocka_unit_test(test_cli_run_daemon_errors_exit_125),
        cmocka_unit_test(test_cli_create_waits),
        cmocka_unit_test(test_cli_run_daemon_timeout),
        cmocka_unit_test(test_cli_exec_stream_output_status_stdin),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
