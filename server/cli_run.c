/*
 * `capsem run`: option parsing, finding the monitor and the guest assets,
 * and the glue between the host's terminal side (stdin, stdout, stderr,
 * signals, the --timeout timer) and one vm_runner, all on one event loop.
 * Signals arrive through a signalfd; the VMM and every file of the run are
 * gone before this returns, whatever ended the run.
 */
#include "cli_run.h"

#include "cli_client.h"
#include "integrity.h"
#include "log.h"
#include "loop.h"
#include "netsvc.h"
#include "vm_runner.h"

#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <unistd.h>

#ifndef CAPSEM_DEFAULT_ASSET_DIR
#define CAPSEM_DEFAULT_ASSET_DIR "assets"
#endif

#define STDIN_CHUNK (64u << 10)

static const char usage_text[] =
    "usage: capsem run [OPTIONS] -- CMD [ARG...]\n"
    "\n"
    "Boot a microVM, run CMD inside it with this terminal's stdin, stdout and stderr,\n"
    "and exit with CMD's status (128+N when a signal N killed it). When `capsem serve`\n"
    "runs (for $CAPSEM_HOME), the VM is a session of the daemon, shown in its dashboard\n"
    "and kept there as stopped after the run.\n"
    "\n"
    "options:\n"
    "  --mem MiB            guest memory (default 512)\n"
    "  --cpus N             virtual CPUs (default 1)\n"
    "  --timeout S          limit for the whole run in seconds; on expiry exit 124\n"
    "  --boot-timeout S     limit from start to guest agent ready (default 30)\n"
    "  -e, --env K=V        set an environment variable for CMD (repeatable)\n"
    "  --kernel FILE        guest kernel (default: vmlinux in the asset directory)\n"
    "  --initrd FILE        guest initramfs (default: initrd.img in the asset directory)\n"
    "  --rootfs FILE|none   boot into this root filesystem image (squashfs, attached\n"
    "                       read-only as /dev/vda; its SHA-256 must have been recorded at\n"
    "                       build); none: the initramfs alone; default: the built Debian\n"
    "                       image assets/rootfs.sqfs when there is one, else the initramfs\n"
    "  --name NAME          session name ([a-z0-9-], up to 63): the guest's host name and\n"
    "                       the session directory $CAPSEM_HOME/sessions/NAME (reused when\n"
    "                       it exists); default: a random id, host name capsem-<id>\n"
    "  --workspace DIR      share DIR with the guest at /root (virtio-fs); default: the\n"
    "                       session's workspace $CAPSEM_HOME/sessions/<id>/workspace,\n"
    "                       kept after the run\n"
    "  --no-net             no network for the guest (by default a Debian-root guest reaches\n"
    "                       the outside through the host's policy proxy: docs/policy.md)\n"
    "  --policy PRESET      this session's network preset (high, medium or open) in place\n"
    "                       of the config's; refused when the corp file locks the policy\n"
    "  --scratch SIZE       a writable disk of SIZE (e.g. 4G; sparse, ext4) in the session\n"
    "                       directory for the root's writable layer instead of RAM;\n"
    "                       needs a root image; removed after the run\n"
    "  --keep, --keep-logs  keep the run directory with its vm.log and vmm.json\n"
    "  --standalone         boot the VM here even when a daemon runs (also:\n"
    "                       CAPSEM_STANDALONE=1); --kernel, --initrd, --workspace and\n"
    "                       --scratch need it when a daemon runs\n"
    "  -h, --help           show this help\n"
    "\n"
    "exit status: CMD's status; 2 bad usage; 124 timed out; 125 capsem or the VM failed.\n"
    "environment: CAPSEM_HOME (default ~/.capsem), CAPSEM_ASSETS, CAPSEM_VMM, CAPSEM_LOG,\n"
    "CAPSEM_STANDALONE.\n";

const char *cli_run_usage(void)
{
    return usage_text;
}

static int parse_uint(const char *s, unsigned lo, unsigned hi, unsigned *out)
{
    if (!s || s[0] < '0' || s[0] > '9')
        return -EINVAL;
    errno = 0;
    char *end;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || *end || v < lo || v > hi)
        return -EINVAL;
    *out = (unsigned)v;
    return 0;
}

static bool valid_env(const char *kv)
{
    const char *eq = strchr(kv, '=');
    if (!eq || eq == kv)
        return false;
    for (const char *p = kv; p < eq; p++) {
        bool alpha = (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || *p == '_';
        bool digit = *p >= '0' && *p <= '9';
        if (!alpha && !(digit && p != kv))
            return false;
    }
    return true;
}

void cli_run_opts_fini(struct cli_run_opts *o)
{
    free(o->env);
    memset(o, 0, sizeof(*o));
}

/* Options that take a value. */
enum opt_id {
    OPT_MEM,
    OPT_CPUS,
    OPT_TIMEOUT,
    OPT_BOOT_TIMEOUT,
    OPT_ENV,
    OPT_KERNEL,
    OPT_INITRD,
    OPT_APPEND,
    OPT_ROOTFS,
    OPT_WORKSPACE,
    OPT_NAME,
    OPT_SCRATCH,
    OPT_POLICY
};

static const struct {
    const char *name;
    enum opt_id id;
} value_opts[] = {
    {"--mem", OPT_MEM},
    {"--cpus", OPT_CPUS},
    {"--timeout", OPT_TIMEOUT},
    {"--boot-timeout", OPT_BOOT_TIMEOUT},
    {"--env", OPT_ENV},
    {"-e", OPT_ENV},
    {"--kernel", OPT_KERNEL},
    {"--initrd", OPT_INITRD},
    {"--append", OPT_APPEND},
    {"--rootfs", OPT_ROOTFS},
    {"--workspace", OPT_WORKSPACE},
    {"--name", OPT_NAME},
    {"--scratch", OPT_SCRATCH},
    {"--policy", OPT_POLICY},
};

static int apply_value(struct cli_run_opts *o, enum opt_id id, const char *name, const char *v,
                       char *err, size_t errlen)
{
    switch (id) {
    case OPT_MEM:
        if (parse_uint(v, 64, 65536, &o->mem_mib) == 0)
            return 0;
        snprintf(err, errlen, "%s '%s': expected a whole number of MiB from 64 to 65536", name, v);
        return -EINVAL;
    case OPT_CPUS:
        if (parse_uint(v, 1, 64, &o->cpus) == 0)
            return 0;
        snprintf(err, errlen, "%s '%s': expected a whole number from 1 to 64", name, v);
        return -EINVAL;
    case OPT_TIMEOUT:
        if (parse_uint(v, 1, 604800, &o->timeout_s) == 0)
            return 0;
        snprintf(err, errlen, "%s '%s': expected whole seconds from 1 to 604800", name, v);
        return -EINVAL;
    case OPT_BOOT_TIMEOUT:
        if (parse_uint(v, 1, 3600, &o->boot_timeout_s) == 0)
            return 0;
        snprintf(err, errlen, "%s '%s': expected whole seconds from 1 to 3600", name, v);
        return -EINVAL;
    case OPT_ENV: {
        if (!valid_env(v)) {
            snprintf(err, errlen, "%s '%s': expected NAME=VALUE (NAME: letters, digits, _)", name,
                     v);
            return -EINVAL;
        }
        const char **n = realloc(o->env, (o->n_env + 1) * sizeof(*n));
        if (!n) {
            snprintf(err, errlen, "out of memory");
            return -ENOMEM;
        }
        o->env = n;
        o->env[o->n_env++] = v;
        return 0;
    }
    case OPT_KERNEL:
        o->kernel = v;
        return 0;
    case OPT_INITRD:
        o->initrd = v;
        return 0;
    case OPT_APPEND:
        o->append = v;
        return 0;
    case OPT_WORKSPACE:
        if (!*v) {
            snprintf(err, errlen, "%s: expected a directory", name);
            return -EINVAL;
        }
        o->workspace = v;
        return 0;
    case OPT_ROOTFS:
        if (!*v) {
            snprintf(err, errlen, "%s: expected an image file or 'none'", name);
            return -EINVAL;
        }
        o->rootfs = v;
        return 0;
    case OPT_SCRATCH:
        if (session_size_parse(v, &o->scratch_bytes) == 0)
            return 0;
        snprintf(err, errlen, "%s '%.80s': expected a size from 64M to 4T, such as 4G", name, v);
        return -EINVAL;
    case OPT_POLICY:
        if (strcmp(v, "high") && strcmp(v, "medium") && strcmp(v, "open")) {
            snprintf(err, errlen, "%s '%.80s': expected high, medium or open", name, v);
            return -EINVAL;
        }
        o->policy = v;
        return 0;
    case OPT_NAME:
        if (!session_name_ok(v)) {
            snprintf(err, errlen,
                     "%s '%.80s': expected 1 to %d of a-z, 0-9 and '-', not starting or ending "
                     "with '-'",
                     name, v, SESSION_NAME_MAX);
            return -EINVAL;
        }
        o->name = v;
        return 0;
    }
    return -EINVAL;
}

int cli_run_parse(int argc, char **argv, struct cli_run_opts *o, char *err, size_t errlen)
{
    int rc = 0;
    bool dashdash = false;
    memset(o, 0, sizeof(*o));
    o->mem_mib = CLI_RUN_DEFAULT_MEM_MIB;
    o->cpus = CLI_RUN_DEFAULT_CPUS;
    o->boot_timeout_s = CLI_RUN_DEFAULT_BOOT_TIMEOUT_S;
    err[0] = '\0';
    int i = 1;
    for (; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--")) {
            dashdash = true;
            i++;
            break;
        }
        if (a[0] != '-') {
            snprintf(err, errlen, "missing '--' before the command '%s'", a);
            rc = -EINVAL;
            goto out;
        }
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            o->help = true;
            continue;
        }
        if (!strcmp(a, "--keep-logs") || !strcmp(a, "--keep")) {
            o->keep_logs = true;
            continue;
        }
        if (!strcmp(a, "--no-net")) {
            o->no_net = true;
            continue;
        }
        if (!strcmp(a, "--standalone")) {
            o->standalone = true;
            continue;
        }
        if (!strcmp(a, "--unverified-assets")) {
            o->unverified_assets = true;
            continue;
        }
        bool found = false;
        for (size_t k = 0; k < sizeof(value_opts) / sizeof(value_opts[0]); k++) {
            const char *name = value_opts[k].name;
            size_t nl = strlen(name);
            const char *v;
            if (!strcmp(a, name)) {
                if (i + 1 >= argc) {
                    snprintf(err, errlen, "option %s needs a value", name);
                    rc = -EINVAL;
                    goto out;
                }
                v = argv[++i];
            } else if (!strncmp(a, name, nl) && a[nl] == '=' && name[1] == '-') {
                v = a + nl + 1;
            } else {
                continue;
            }
            found = true;
            rc = apply_value(o, value_opts[k].id, name, v, err, errlen);
            if (rc)
                goto out;
            break;
        }
        if (!found) {
            snprintf(err, errlen, "unknown option '%s'", a);
            rc = -EINVAL;
            goto out;
        }
    }
    if (o->help)
        goto out;
    if (!dashdash) {
        snprintf(err, errlen, "missing '--' and the command to run");
        rc = -EINVAL;
        goto out;
    }
    if (i >= argc) {
        snprintf(err, errlen, "no command after '--'");
        rc = -EINVAL;
        goto out;
    }
    o->cmd = argv + i;
    o->n_cmd = (size_t)(argc - i);
out:
    if (rc)
        cli_run_opts_fini(o);
    return rc;
}

/* ---- running ---------------------------------------------------------- */

struct run {
    struct cli_vm vm;
    struct cli_paths *paths;
    const struct cli_run_opts *opts;
    int stdin_fd;  /* fd watched for stdin: 0, or an always-ready eventfd */
    int always_fd; /* eventfd standing in for an unpollable stdin, or -1 */
    bool stdin_watched;
    bool stdin_done;
    bool exec_started;
    bool exec_sent;
    bool interrupted; /* one SIGINT already forwarded */
    bool stdout_broken;
    bool have_status;
    uint32_t exec_id;
    int status;    /* command's status once known */
    int exit_code; /* final exit status of capsem */
    bool finished;
};

static void stdin_watch(struct run *r, bool on);

static bool handle_signal(struct run *r, int sig, bool in_runner_callback);

/*
 * Write all of p[0..len) to fd. A pipe or socket stdout is non-blocking
 * (see cli_run_main), so a stalled reader cannot keep signals from being
 * handled: while waiting for room the signalfd is watched too, and a
 * terminating signal abandons the rest of the output.
 */
static void write_all(struct run *r, int fd, const uint8_t *p, size_t len, bool *broken)
{
    while (len && !*broken && !r->finished) {
        ssize_t n = write(fd, p, len);
        if (n >= 0) {
            p += n;
            len -= (size_t)n;
            continue;
        }
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN) {
            *broken = true;
            return;
        }
        struct pollfd pf[2] = {{.fd = fd, .events = POLLOUT},
                               {.fd = r->vm.sig_fd, .events = POLLIN}};
        if (poll(pf, 2, -1) < 0 && errno != EINTR) {
            *broken = true;
            return;
        }
        struct signalfd_siginfo si;
        if ((pf[1].revents & POLLIN) && read(r->vm.sig_fd, &si, sizeof(si)) == (ssize_t)sizeof(si))
            handle_signal(r, (int)si.ssi_signo, true);
    }
}

static void end_run(struct run *r, int code)
{
    if (r->finished)
        return;
    r->finished = true;
    r->exit_code = code;
    loop_stop(r->vm.loop);
}

static void on_ready(void *opaque, const struct ctl_hello *h, int64_t boot_ms)
{
    (void)h;
    (void)boot_ms;
    struct run *r = opaque;
    size_t nenv = 0;
    const char *const *env = cli_exec_env(r->opts, r->paths, &nenv);
    int rc = vm_runner_exec(r->vm.runner, (const char *const *)r->opts->cmd, r->opts->n_cmd, env,
                            nenv, "/", true, &r->exec_id);
    if (rc) {
        fprintf(stderr, "capsem: cannot send the command to the guest: %s\n", strerror(-rc));
        vm_runner_stop(r->vm.runner);
        r->status = CAPSEM_EXIT_FAILED;
        r->have_status = true;
        return;
    }
    r->exec_sent = true;
    stdin_watch(r, true);
}

static void on_started(void *opaque, uint32_t id, int64_t pid)
{
    struct run *r = opaque;
    (void)pid;
    if (id == r->exec_id)
        r->exec_started = true;
}

static void on_output(void *opaque, uint32_t id, int stream, const uint8_t *p, size_t len)
{
    struct run *r = opaque;
    if (id != r->exec_id || !len)
        return;
    if (stream == 1) {
        bool was = r->stdout_broken;
        write_all(r, STDOUT_FILENO, p, len, &r->stdout_broken);
        /* Like a local pipeline: a closed stdout ends the writer with SIGPIPE. */
        if (!was && r->stdout_broken && vm_runner_signal(r->vm.runner, r->exec_id, SIGPIPE))
            LOG_WARN("event=sigpipe_forward_failed");
    } else {
        bool ignored = false;
        write_all(r, STDERR_FILENO, p, len, &ignored);
    }
}

static void on_exit_msg(void *opaque, const struct ctl_exit *e)
{
    struct run *r = opaque;
    if (e->id != r->exec_id)
        return;
    r->status = ctl_exit_status(e);
    r->have_status = true;
    if (e->error[0])
        fprintf(stderr, "capsem: %s: %s\n", r->opts->cmd[0], e->error);
    stdin_watch(r, false);
    vm_runner_stop(r->vm.runner);
}

static void on_guest_error(void *opaque, uint32_t id, const char *msg)
{
    struct run *r = opaque;
    if (id != r->exec_id || r->have_status)
        return;
    fprintf(stderr, "capsem: the guest refused the command: %s\n", msg);
    r->status = CAPSEM_EXIT_FAILED;
    r->have_status = true;
    stdin_watch(r, false);
    vm_runner_stop(r->vm.runner);
}

static void on_drained(void *opaque)
{
    struct run *r = opaque;
    if (!r->stdin_done && r->exec_sent && !r->have_status)
        stdin_watch(r, true);
}

static void on_done(void *opaque, int err, const char *msg, const char *log_path)
{
    struct run *r = opaque;
    if (err) {
        fprintf(stderr, "capsem: %s\n", msg);
        if (log_path)
            fprintf(stderr, "capsem: the VM log is kept at %s\n", log_path);
    }
    if (r->have_status)
        end_run(r, r->status);
    else
        end_run(r, CAPSEM_EXIT_FAILED);
}

static void on_vsock(void *opaque, unsigned port, int fd)
{
    struct run *r = opaque;
    cli_on_vsock(r->paths, port, fd);
}

static const struct vm_runner_ops runner_ops = {
    .on_ready = on_ready,
    .on_vsock = on_vsock,
    .on_started = on_started,
    .on_output = on_output,
    .on_exit = on_exit_msg,
    .on_guest_error = on_guest_error,
    .on_drained = on_drained,
    .on_done = on_done,
};

static void stdin_eof(struct run *r)
{
    stdin_watch(r, false);
    r->stdin_done = true;
    if (vm_runner_send_stdin(r->vm.runner, r->exec_id, NULL, 0))
        LOG_DEBUG("event=stdin_eof_not_sent");
}

static void on_stdin(void *opaque, uint32_t events)
{
    (void)events;
    struct run *r = opaque;
    uint8_t chunk[STDIN_CHUNK];
    ssize_t n = read(STDIN_FILENO, chunk, sizeof(chunk));
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return;
    if (n <= 0) {
        stdin_eof(r);
        return;
    }
    int rc = vm_runner_send_stdin(r->vm.runner, r->exec_id, chunk, (size_t)n);
    if (rc) {
        LOG_WARN("event=stdin_forward_failed err=%d", rc);
        stdin_watch(r, false);
        r->stdin_done = true;
        return;
    }
    if (vm_runner_pending(r->vm.runner) >= CTL_CONN_HIGH_WATER)
        stdin_watch(r, false);
}

static void stdin_watch(struct run *r, bool on)
{
    if (r->stdin_done || on == r->stdin_watched)
        return;
    if (!on) {
        loop_del(r->vm.loop, r->stdin_fd);
        r->stdin_watched = false;
        return;
    }
    struct stat st;
    if (fstat(STDIN_FILENO, &st) < 0) {
        stdin_eof(r); /* stdin is closed: the command sees an empty input */
        return;
    }
    int rc = loop_add(r->vm.loop, r->stdin_fd, EPOLLIN, on_stdin, r);
    if (rc == -EPERM && r->always_fd < 0) {
        /* Regular files and /dev/null cannot be polled: they are always readable. */
        r->always_fd = eventfd(1, EFD_CLOEXEC | EFD_NONBLOCK);
        if (r->always_fd >= 0) {
            r->stdin_fd = r->always_fd;
            rc = loop_add(r->vm.loop, r->stdin_fd, EPOLLIN, on_stdin, r);
        }
    }
    if (rc) {
        LOG_WARN("event=stdin_unwatchable err=%d", rc);
        stdin_eof(r);
        return;
    }
    r->stdin_watched = true;
}

/*
 * React to a signal; returns true when the run is ending. Inside a runner
 * callback the runner must not be destroyed, so the loop is only stopped
 * and cli_run_main's exit path destroys it.
 */
static bool handle_signal(struct run *r, int sig, bool in_runner_callback)
{
    if (sig == SIGINT && r->exec_started && !r->interrupted && !r->have_status) {
        /* First Ctrl-C goes to the command, as ssh does; a second one ends everything. */
        r->interrupted = true;
        if (vm_runner_signal(r->vm.runner, r->exec_id, SIGINT) == 0)
            return false;
    }
    if (!in_runner_callback) {
        vm_runner_destroy(r->vm.runner);
        r->vm.runner = NULL;
    }
    end_run(r, 128 + sig);
    return true;
}

static void on_signal(void *opaque, uint32_t events)
{
    (void)events;
    struct run *r = opaque;
    struct signalfd_siginfo si;
    if (read(r->vm.sig_fd, &si, sizeof(si)) != (ssize_t)sizeof(si))
        return;
    handle_signal(r, (int)si.ssi_signo, false);
}

static void on_timeout(void *opaque, uint32_t events)
{
    (void)events;
    struct run *r = opaque;
    vm_runner_destroy(r->vm.runner);
    r->vm.runner = NULL;
    fprintf(stderr, "capsem: timed out after %u s\n", r->opts->timeout_s);
    end_run(r, CAPSEM_EXIT_TIMEOUT);
}

/*
 * Make fd non-blocking when it is a pipe or a socket (where a stalled reader
 * could block us forever); *saved gets the flags to restore, or -1.
 */
static void nonblock_if_pipe(int fd, int *saved)
{
    struct stat st;
    *saved = -1;
    if (fstat(fd, &st) < 0 || !(S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode)))
        return;
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || (fl & O_NONBLOCK))
        return;
    if (fcntl(fd, F_SETFL, fl | O_NONBLOCK) == 0)
        *saved = fl;
}

/* Directory of this executable, for finding capsem-vmm next to it. */
static int self_dir(char *out, size_t size)
{
    ssize_t n = readlink("/proc/self/exe", out, size - 1);
    if (n <= 0)
        return -errno;
    out[n] = '\0';
    char *slash = strrchr(out, '/');
    if (!slash)
        return -ENOENT;
    *slash = '\0';
    return 0;
}

/* out = a followed by b (NUL-terminated); false when it does not fit. */
static bool join_path(char *out, size_t size, const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la + lb >= size)
        return false;
    memcpy(out, a, la);
    memcpy(out + la, b, lb + 1);
    return true;
}

static void print_usage_error(const char *err)
{
    fprintf(stderr,
            "capsem: %s\nusage: capsem run [OPTIONS] -- CMD [ARG...] (see capsem run "
            "--help)\n",
            err);
}

int cli_run_paths(const struct cli_run_opts *o, struct cli_paths *p)
{
    char dir[4096];
    const char *env_vmm = getenv("CAPSEM_VMM");
    const char *assets = getenv("CAPSEM_ASSETS");
    const char *home = getenv("CAPSEM_HOME");
    const char *user_home = getenv("HOME");
    if (!assets || !assets[0])
        assets = CAPSEM_DEFAULT_ASSET_DIR;
    if (!user_home || !user_home[0])
        user_home = "/tmp";
    bool ok = true;
    if (env_vmm && env_vmm[0])
        ok &= join_path(p->vmm, sizeof(p->vmm), env_vmm, "");
    else if (self_dir(dir, sizeof(dir)) == 0)
        ok &= join_path(p->vmm, sizeof(p->vmm), dir, "/capsem-vmm");
    else
        ok &= join_path(p->vmm, sizeof(p->vmm), "capsem-vmm", "");
    if (o->kernel)
        ok &= join_path(p->kernel, sizeof(p->kernel), o->kernel, "");
    else
        ok &= join_path(p->kernel, sizeof(p->kernel), assets, "/vmlinux");
    if (o->initrd)
        ok &= join_path(p->initrd, sizeof(p->initrd), o->initrd, "");
    else
        ok &= join_path(p->initrd, sizeof(p->initrd), assets, "/initrd.img");
    p->rootfs_default = !o->rootfs;
    if (!o->rootfs)
        ok &= join_path(p->rootfs, sizeof(p->rootfs), assets, "/rootfs.sqfs");
    else if (strcmp(o->rootfs, "none") != 0)
        ok &= join_path(p->rootfs, sizeof(p->rootfs), o->rootfs, "");
    else
        p->rootfs[0] = '\0';
    if (home && home[0])
        ok &= join_path(p->home, sizeof(p->home), home, "");
    else
        ok &= join_path(p->home, sizeof(p->home), user_home, "/.capsem");
    ok &= join_path(p->run_base, sizeof(p->run_base), p->home, "/run");
    p->session_id[0] = p->hostname[0] = p->session_dir[0] = p->workspace[0] = '\0';
    p->session_created = false;
    p->scratch[0] = '\0';
    if (!ok) {
        fprintf(stderr, "capsem: a path (CAPSEM_HOME, CAPSEM_ASSETS, CAPSEM_VMM, --kernel, "
                        "--initrd or --rootfs) is too long\n");
        return -ENAMETOOLONG;
    }
    return 0;
}

/* Which assets to check, with their recorded hashes; returns how many. */
static size_t assets_to_check(const struct cli_paths *p, struct integrity_asset a[3])
{
    const struct integrity_built *b = integrity_get_built();
    size_t n = 0;
    a[n++] = (struct integrity_asset){"guest kernel", p->kernel, b->kernel};
    a[n++] = (struct integrity_asset){"guest initramfs", p->initrd, b->initrd};
    if (p->rootfs[0])
        a[n++] = (struct integrity_asset){"guest root filesystem", p->rootfs, b->rootfs};
    return n;
}

/* The default root: the built image when its hash is known and it is there, else none. */
static void settle_rootfs(struct cli_paths *p)
{
    if (!p->rootfs_default)
        return;
    if (!integrity_hex_ok(integrity_get_built()->rootfs)) {
        fprintf(stderr, "capsem: note: this capsem was built without a Debian root filesystem "
                        "(cmake --build build --target guest-rootfs, then cmake --build build); "
                        "booting the initramfs alone (--rootfs none does so without this note)\n");
        p->rootfs[0] = '\0';
    } else if (access(p->rootfs, F_OK) < 0) {
        fprintf(stderr,
                "capsem: note: no root filesystem image at %s; booting the initramfs alone "
                "(--rootfs none does so without this note)\n",
                p->rootfs);
        p->rootfs[0] = '\0';
    }
}

/*
 * A preparation failure: the reason into err when the caller gave one (the
 * daemon shows it as the session's reason), else one `capsem: ...` line on
 * stderr as `capsem run` prints it.
 */
__attribute__((format(printf, 3, 4))) static void prep_fail(char *err, size_t errlen,
                                                            const char *fmt, ...)
{
    char line[1600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (err && errlen)
        snprintf(err, errlen, "%s", line);
    else
        fprintf(stderr, "capsem: %s\n", line);
}

int cli_session_prepare(const struct cli_run_opts *o, struct cli_paths *p, char *why, size_t whylen)
{
    int rc;
    char err[1200];
    char cache[4200];
    settle_rootfs(p);
    if (o->scratch_bytes && !p->rootfs[0]) {
        prep_fail(why, whylen,
                  "--scratch holds the root filesystem's writable layer: it needs a root image "
                  "(the built Debian image, or --rootfs IMG)");
        return -EINVAL;
    }
    if (o->unverified_assets) {
        LOG_WARN("event=assets_not_verified reason=--unverified-assets");
    } else {
        struct integrity_asset a[3];
        size_t n = assets_to_check(p, a);
        struct integrity_opts io = {.cache_path = cache, .racy_ms = INTEGRITY_RACY_MS};
        const char *cache_env = getenv("CAPSEM_INTEGRITY_CACHE");
        if (cache_env && cache_env[0]) {
            if (snprintf(cache, sizeof(cache), "%s", cache_env) >= (int)sizeof(cache))
                io.cache_path = NULL;
        } else if (snprintf(cache, sizeof(cache), "%s/integrity-cache.json", p->home) >=
                       (int)sizeof(cache) ||
                   session_mkdir_p(p->home, 0700))
            io.cache_path = NULL; /* no cache: every boot hashes its assets */
        size_t bad = 0;
        rc = integrity_verify(&io, a, n, &bad, err, sizeof(err));
        if (rc) {
            const char *hint = "";
            if (rc == -ENOKEY && bad == 2)
                hint = " (only the image built with this capsem boots: build it with `cmake "
                       "--build build --target guest-rootfs`, rebuild capsem, or use --rootfs "
                       "none)";
            else if (rc == -ENOKEY)
                hint = " (this capsem was built without the guest assets: configure with "
                       "-DCAPSEM_GUEST=ON and rebuild)";
            else if (rc == -EBADMSG)
                hint = " (changed since the build: rebuild with `cmake --build build`)";
            else
                hint = " (`cmake --build build` makes the guest assets; or set CAPSEM_ASSETS, "
                       "or pass --kernel/--initrd)";
            prep_fail(why, whylen, "%s%s", err, hint);
            return rc;
        }
    }
    if (o->name) {
        snprintf(p->session_id, sizeof(p->session_id), "%s", o->name);
        snprintf(p->hostname, sizeof(p->hostname), "%s", o->name);
    } else {
        rc = session_id_random(p->session_id);
        if (rc) {
            prep_fail(why, whylen, "cannot pick a session id: %s", strerror(-rc));
            return rc;
        }
        /* "capsem-" and 12 hex digits: well within the 63 of a host name. */
        memcpy(p->hostname, "capsem-", 7);
        memcpy(p->hostname + 7, p->session_id, SESSION_ID_HEX + 1);
    }
    /* The session directory holds the session's workspace and the scratch disk. */
    if (!o->workspace || o->scratch_bytes) {
        bool created = false;
        char ws[4096];
        rc = session_dir_make(p->home, p->session_id, p->session_dir, sizeof(p->session_dir), ws,
                              sizeof(ws), &created, err, sizeof(err));
        if (rc) {
            prep_fail(why, whylen, "%s", err);
            return rc;
        }
        p->session_created = created;
        if (!o->workspace) {
            memcpy(p->workspace, ws, sizeof(ws));
            if (created)
                fprintf(stderr, "capsem: session %s: workspace %s (kept after the run)\n",
                        p->session_id, p->workspace);
        }
    }
    if (o->workspace)
        snprintf(p->workspace, sizeof(p->workspace), "%s", o->workspace);
    if (o->scratch_bytes) {
        char path[4200];
        snprintf(path, sizeof(path), "%s/scratch.img", p->session_dir);
        rc = session_scratch_make(path, o->scratch_bytes, "mkfs.ext4", err, sizeof(err));
        if (rc) {
            prep_fail(why, whylen, "scratch disk: %s", err);
            cli_session_abandon(p);
            return rc;
        }
        memcpy(p->scratch, path, sizeof(p->scratch));
    }
    return 0;
}

void cli_scratch_remove(struct cli_paths *p)
{
    if (p->scratch[0] && unlink(p->scratch) < 0 && errno != ENOENT)
        LOG_WARN("event=scratch_remove path=%s errno=%d", p->scratch, errno);
    p->scratch[0] = '\0';
}

void cli_session_abandon(const struct cli_paths *p)
{
    if (!p->session_created)
        return;
    /* The session's own workspace, never a --workspace directory. */
    char ws[4200];
    if (snprintf(ws, sizeof(ws), "%s/workspace", p->session_dir) >= (int)sizeof(ws))
        return;
    if (rmdir(ws) == 0 && rmdir(p->session_dir) < 0)
        LOG_INFO("event=session_dir_kept dir=%s errno=%d", p->session_dir, errno);
}

int cli_net_start(struct loop *l, const struct cli_run_opts *o, struct cli_paths *p)
{
    char err[1200];
    p->net = NULL;
    int n = snprintf(p->append, sizeof(p->append), "%s", o->append ? o->append : "");
    if (n < 0 || (size_t)n >= sizeof(p->append)) {
        fprintf(stderr, "capsem: --append is too long\n");
        return -ENAMETOOLONG;
    }
    if (o->no_net || !p->rootfs[0])
        return 0;
    if (!p->session_dir[0]) {
        /* --workspace named the shared directory: the database still lives in the session's. */
        n = snprintf(p->session_dir, sizeof(p->session_dir), "%s/sessions/%s", p->home,
                     p->session_id);
        int rc = n < 0 || (size_t)n >= sizeof(p->session_dir)
                     ? -ENAMETOOLONG
                     : session_mkdir_p(p->session_dir, 0700);
        if (rc) {
            fprintf(stderr, "capsem: cannot create %s: %s\n", p->session_dir, strerror(-rc));
            return rc;
        }
    }
    if (o->policy) {
        char corp[4096];
        if (netsvc_corp_locked(corp, sizeof(corp))) {
            fprintf(stderr, "capsem: --policy: the network policy is locked by %s\n", corp);
            return -EPERM;
        }
    }
    struct netsvc_config nc = {.home = p->home, .session_dir = p->session_dir, .preset = o->policy};
    int rc = netsvc_start(l, &nc, &p->net, err, sizeof(err));
    if (rc) {
        fprintf(stderr, "capsem: network: %s\n", err);
        return rc;
    }
    /* Placeholders first: the guest agent lets a later entry with the same name replace it. */
    const char *const *ph = NULL;
    size_t nph = netsvc_guest_env(p->net, &ph);
    if (nph) {
        p->exec_env = calloc(nph + o->n_env, sizeof(*p->exec_env));
        if (!p->exec_env) {
            fprintf(stderr, "capsem: out of memory\n");
            cli_net_stop(p);
            return -ENOMEM;
        }
        memcpy(p->exec_env, ph, nph * sizeof(*ph));
        if (o->n_env)
            memcpy(p->exec_env + nph, o->env, o->n_env * sizeof(*o->env));
        p->n_exec_env = nph + o->n_env;
    }
    const char *ports = netsvc_http_ports(p->net);
    n = snprintf(p->append, sizeof(p->append), "capsem.net=1%s%s%s%s",
                 ports[0] ? " capsem.http_ports=" : "", ports, o->append ? " " : "",
                 o->append ? o->append : "");
    if (n < 0 || (size_t)n >= sizeof(p->append)) {
        fprintf(stderr, "capsem: --append is too long\n");
        cli_net_stop(p);
        return -ENAMETOOLONG;
    }
    return 0;
}

void cli_net_stop(struct cli_paths *p)
{
    netsvc_stop(p->net);
    p->net = NULL;
    free(p->exec_env);
    p->exec_env = NULL;
    p->n_exec_env = 0;
}

const char *const *cli_exec_env(const struct cli_run_opts *o, const struct cli_paths *p, size_t *n)
{
    if (p && p->exec_env) {
        *n = p->n_exec_env;
        return p->exec_env;
    }
    *n = o->n_env;
    return o->env;
}

static const unsigned net_ports[] = {NETSVC_PORT_PROXY, NETSVC_PORT_DNS};

void cli_runner_config(const struct cli_run_opts *o, const struct cli_paths *p,
                       struct vm_runner_config *cfg)
{
    *cfg = (struct vm_runner_config){
        .vmm_path = p->vmm,
        .kernel = p->kernel,
        .initrd = p->initrd,
        .append = p->append[0] ? p->append : NULL,
        .workspace = p->workspace[0] ? p->workspace : NULL,
        .fs_events_dir = p->session_dir[0] ? p->session_dir : NULL,
        .rootfs = p->rootfs[0] ? p->rootfs : NULL,
        .hostname = p->hostname[0] ? p->hostname : NULL,
        .scratch = p->scratch[0] ? p->scratch : NULL,
        .mem_mib = o->mem_mib,
        .cpus = o->cpus,
        .run_base = p->run_base,
        .boot_timeout_ms = o->boot_timeout_s * 1000u,
        .keep_logs = o->keep_logs,
    };
    if (p->net) {
        cfg->vsock_ports = net_ports;
        cfg->n_vsock_ports = sizeof(net_ports) / sizeof(net_ports[0]);
        cfg->ca_pem = netsvc_ca_pem(p->net);
    }
}

void cli_on_vsock(void *paths, unsigned port, int fd)
{
    struct cli_paths *p = paths;
    if (p->net)
        netsvc_accept(p->net, port, fd);
    else
        close(fd);
}

bool cli_block_signals(int extra, sigset_t *mask, sigset_t *old)
{
    static const int optional[] = {SIGINT, SIGHUP, SIGQUIT};
    sigemptyset(mask);
    sigaddset(mask, SIGTERM);
    if (extra)
        sigaddset(mask, extra);
    for (size_t i = 0; i < sizeof(optional) / sizeof(optional[0]); i++) {
        struct sigaction sa;
        if (sigaction(optional[i], NULL, &sa) == 0 && sa.sa_handler != SIG_IGN)
            sigaddset(mask, optional[i]);
    }
    return sigprocmask(SIG_BLOCK, mask, old) == 0;
}

int cli_vm_open(struct cli_vm *v, const struct cli_run_opts *o, int extra_signal, loop_fn signal_cb,
                loop_fn timeout_cb, const struct vm_runner_ops *ops, void *opaque)
{
    sigset_t mask;
    v->masked = cli_block_signals(extra_signal, &mask, &v->old_mask);
    signal(SIGPIPE, SIG_IGN);
    if (loop_create(&v->loop)) {
        fprintf(stderr, "capsem: cannot create the event loop\n");
        return -ENOMEM;
    }
    v->sig_fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    int rc = v->sig_fd < 0 ? -errno : loop_add(v->loop, v->sig_fd, EPOLLIN, signal_cb, opaque);
    if (rc) {
        fprintf(stderr, "capsem: cannot watch signals: %s\n", strerror(-rc));
        return rc;
    }
    if (o->timeout_s) {
        struct itimerspec its = {.it_value = {.tv_sec = o->timeout_s}};
        v->timeout_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
        rc = v->timeout_fd < 0 || timerfd_settime(v->timeout_fd, 0, &its, NULL) < 0
                 ? -errno
                 : loop_add(v->loop, v->timeout_fd, EPOLLIN, timeout_cb, opaque);
        if (rc) {
            fprintf(stderr, "capsem: cannot arm the timeout: %s\n", strerror(-rc));
            return rc;
        }
    }
    if (vm_runner_create(v->loop, ops, opaque, &v->runner)) {
        fprintf(stderr, "capsem: out of memory\n");
        return -ENOMEM;
    }
    return 0;
}

int cli_vm_boot(struct cli_vm *v, const struct cli_run_opts *o, struct cli_paths *p, bool terminal)
{
    char err[1024];
    int rc = cli_session_prepare(o, p, NULL, 0);
    if (!rc)
        rc = cli_net_start(v->loop, o, p);
    if (rc)
        return rc;
    struct vm_runner_config cfg;
    cli_runner_config(o, p, &cfg);
    cfg.terminal = terminal;
    rc = vm_runner_start(v->runner, &cfg, err, sizeof(err));
    if (rc) {
        fprintf(stderr, "capsem: %s\n", err);
        cli_session_abandon(p);
    }
    return rc;
}

void cli_vm_stop(struct cli_vm *v, struct cli_paths *p)
{
    vm_runner_destroy(v->runner);
    v->runner = NULL;
    cli_net_stop(p);
    cli_scratch_remove(p);
}

void cli_vm_close(struct cli_vm *v)
{
    if (v->timeout_fd >= 0)
        close(v->timeout_fd);
    if (v->sig_fd >= 0)
        close(v->sig_fd);
    v->timeout_fd = v->sig_fd = -1;
    loop_destroy(v->loop);
    v->loop = NULL;
    if (v->masked)
        sigprocmask(SIG_SETMASK, &v->old_mask, NULL);
    v->masked = false;
}

int cli_run_main(int argc, char **argv)
{
    struct cli_run_opts o;
    char err[1024];
    static struct cli_paths paths;
    struct run r = {.vm = CLI_VM_INIT, .stdin_fd = STDIN_FILENO, .always_fd = -1};
    int code = CAPSEM_EXIT_FAILED;
    int saved_out = -1, saved_err = -1;

    if (cli_run_parse(argc, argv, &o, err, sizeof(err))) {
        print_usage_error(err);
        return CAPSEM_EXIT_USAGE;
    }
    if (o.help) {
        fputs(usage_text, stdout);
        cli_run_opts_fini(&o);
        return 0;
    }
    r.opts = &o;
    const char *lvl = getenv("CAPSEM_LOG");
    int level = lvl ? log_level_parse(lvl) : -1;
    log_init("capsem", level >= 0 ? (enum log_level)level : LOG_WARN);

    const char *sa = getenv("CAPSEM_STANDALONE");
    if (!o.standalone && !(sa && !strcmp(sa, "1"))) {
        bool handled = false;
        code = cli_run_daemon(&o, &handled);
        if (handled) {
            cli_run_opts_fini(&o);
            return code;
        }
        code = CAPSEM_EXIT_FAILED;
    }
    LOG_INFO("event=standalone_run");
    if (cli_run_paths(&o, &paths))
        goto out;

    nonblock_if_pipe(STDOUT_FILENO, &saved_out);
    nonblock_if_pipe(STDERR_FILENO, &saved_err);
    /* Signals become events on the loop; the VMM gets them unblocked (see vm_runner). */
    r.paths = &paths;
    if (cli_vm_open(&r.vm, &o, 0, on_signal, on_timeout, &runner_ops, &r) ||
        cli_vm_boot(&r.vm, &o, &paths, false))
        goto out;
    int rc = loop_run(r.vm.loop);
    if (rc) {
        fprintf(stderr, "capsem: event loop failed: %s\n", strerror(-rc));
        goto out;
    }
    code = r.exit_code;
out:
    cli_vm_stop(&r.vm, &paths);
    if (r.stdin_watched)
        loop_del(r.vm.loop, r.stdin_fd);
    if (r.always_fd >= 0)
        close(r.always_fd);
    cli_vm_close(&r.vm);
    if (saved_out >= 0)
        fcntl(STDOUT_FILENO, F_SETFL, saved_out);
    if (saved_err >= 0)
        fcntl(STDERR_FILENO, F_SETFL, saved_err);
    cli_run_opts_fini(&o);
    return code;
}
