/*
 * `capsem shell`: the host end of the terminal channel. Boots a VM through
 * a vm_runner (with its terminal listener on), asks the guest for a PTY
 * running a login shell, then moves bytes: stdin -> data frames on the
 * terminal connection, the connection's raw bytes -> stdout, SIGWINCH ->
 * resize frames. A terminal stdin is put in raw mode (so Ctrl-C, Ctrl-Z and
 * friends are bytes for the guest's line discipline) and restored on every
 * way out: normal exit, errors, timeout and the signals capsem handles
 * (all through the signalfd, so the restore runs on the main path).
 */
#include "cli_shell.h"

#include "log.h"
#include "loop.h"
#include "tframe.h"
#include "vm_runner.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/select.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <termios.h>
#include <unistd.h>

#define IN_CHUNK (16u << 10)
/* Stop reading stdin while this much input waits for the guest. */
#define TERM_OUT_HIGH (1u << 20)

static const char usage_text[] =
    "usage: capsem shell [OPTIONS] [-- CMD [ARG...]]\n"
    "\n"
    "Boot a microVM and run an interactive login shell (bash when the guest has it,\n"
    "else sh; or CMD) on a terminal inside it. This terminal is put in raw mode and\n"
    "restored at exit; window size changes follow; Ctrl-C goes to the guest.\n"
    "Exits with the shell's status.\n"
    "\n"
    "options: as for `capsem run` (--mem, --cpus, --timeout, --boot-timeout, -e K=V,\n"
    "--kernel, --initrd, --rootfs, --name, --workspace, --scratch, --keep, --no-net);\n"
    "see capsem run --help.\n";

/* Default program: the guest's bash as a login shell when present, else sh. */
static char *default_cmd[] = {
    "/bin/sh", "-c", "if [ -x /bin/bash ]; then exec /bin/bash -l; fi; exec /bin/sh -l", NULL};

const char *cli_shell_usage(void)
{
    return usage_text;
}

int cli_shell_parse(int argc, char **argv, struct cli_run_opts *o, char *err, size_t errlen)
{
    bool has_cmd = false;
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--"))
            has_cmd = true;
    if (has_cmd)
        return cli_run_parse(argc, argv, o, err, errlen);
    /* No command: parse the options followed by "--" and the default shell. */
    char **v = calloc((size_t)argc + 5, sizeof(*v));
    if (!v) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    for (int i = 0; i < argc; i++)
        v[i] = argv[i];
    v[argc] = "--";
    for (int i = 0; default_cmd[i]; i++)
        v[argc + 1 + i] = default_cmd[i];
    int rc = cli_run_parse(argc + 4, v, o, err, errlen);
    if (!rc && o->cmd) {
        o->cmd = default_cmd; /* o->cmd must not point into v */
        o->n_cmd = 3;
    }
    free(v);
    return rc;
}

struct shell {
    struct cli_vm vm;
    struct cli_paths *paths;
    const struct cli_run_opts *opts;
    int tty_fd; /* the terminal whose size is followed (stdin or stdout), or -1 */
    bool raw;   /* stdin is in raw mode; `saved` restores it */
    struct termios saved;
    int term_fd; /* terminal connection from the guest, or -1 */
    bool term_seen;
    struct buf tq; /* frames for the guest not yet written */
    bool stdin_watched;
    bool stdin_done;
    bool pty_sent;
    uint32_t pty_id;
    bool have_status;
    int status;
    int exit_code;
    bool finished;
};

static void raw_restore(struct shell *s)
{
    if (!s->raw)
        return;
    if (tcsetattr(STDIN_FILENO, TCSADRAIN, &s->saved) < 0)
        LOG_WARN("event=terminal_restore err=\"%s\"", strerror(errno));
    s->raw = false;
}

static int raw_enter(struct shell *s)
{
    if (!isatty(STDIN_FILENO) || tcgetattr(STDIN_FILENO, &s->saved) < 0)
        return 0; /* not a terminal: bytes are forwarded as they are */
    struct termios t = s->saved;
    cfmakeraw(&t);
    if (tcsetattr(STDIN_FILENO, TCSADRAIN, &t) < 0)
        return -errno;
    s->raw = true;
    return 0;
}

static void window_size(const struct shell *s, unsigned *cols, unsigned *rows)
{
    struct winsize ws;
    *cols = 80;
    *rows = 24;
    if (s->tty_fd >= 0 && ioctl(s->tty_fd, TIOCGWINSZ, &ws) == 0 && ws.ws_col && ws.ws_row) {
        *cols = ws.ws_col;
        *rows = ws.ws_row;
    }
}

static void end_shell(struct shell *s, int code)
{
    if (s->finished)
        return;
    s->finished = true;
    s->exit_code = code;
    loop_stop(s->vm.loop);
}

/* Write all of p[0..len) to a blocking or non-blocking fd; false when it broke. */
static bool write_all(int fd, const uint8_t *p, size_t len)
{
    while (len) {
        ssize_t n = write(fd, p, len);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
        } else if (n < 0 && errno == EAGAIN) {
            fd_set w;
            FD_ZERO(&w);
            FD_SET(fd, &w);
            (void)select(fd + 1, NULL, &w, NULL, NULL);
        } else if (!(n < 0 && errno == EINTR)) {
            return false;
        }
    }
    return true;
}

static void stdin_watch(struct shell *s, bool on);

static void term_update(struct shell *s)
{
    if (s->term_fd < 0)
        return;
    uint32_t ev = EPOLLIN | (s->tq.len ? EPOLLOUT : 0);
    if (loop_mod(s->vm.loop, s->term_fd, ev))
        LOG_WARN("event=terminal_watch_failed");
}

static void term_close(struct shell *s)
{
    if (s->term_fd < 0)
        return;
    loop_del(s->vm.loop, s->term_fd);
    close(s->term_fd);
    s->term_fd = -1;
    s->tq.len = 0;
    stdin_watch(s, false);
    if (s->have_status)
        vm_runner_stop(s->vm.runner);
}

static void term_flush(struct shell *s)
{
    while (s->term_fd >= 0 && s->tq.len) {
        ssize_t n = send(s->term_fd, s->tq.data, s->tq.len, MSG_NOSIGNAL);
        if (n > 0) {
            buf_consume(&s->tq, (size_t)n);
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            break;
        term_close(s);
        return;
    }
    if (s->tq.len < TERM_OUT_HIGH && !s->stdin_done)
        stdin_watch(s, true);
    term_update(s);
}

static void on_term(void *opaque, uint32_t events)
{
    struct shell *s = opaque;
    if (events & EPOLLOUT)
        term_flush(s);
    if (s->term_fd < 0 || !(events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
        return;
    uint8_t chunk[64 << 10];
    ssize_t n = read(s->term_fd, chunk, sizeof(chunk));
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        term_close(s); /* the guest's side of the PTY is gone */
        return;
    }
    if (!write_all(STDOUT_FILENO, chunk, (size_t)n))
        LOG_DEBUG("event=stdout_broken");
}

/* Tell the guest the current window size. */
static void term_queue_resize(struct shell *s)
{
    unsigned cols, rows;
    if (s->term_fd < 0)
        return;
    window_size(s, &cols, &rows);
    if (tframe_put_resize(&s->tq, (uint16_t)(cols > 65535 ? 65535 : cols),
                          (uint16_t)(rows > 65535 ? 65535 : rows)) == 0)
        term_flush(s);
}

static void on_stdin(void *opaque, uint32_t events)
{
    (void)events;
    struct shell *s = opaque;
    uint8_t chunk[IN_CHUNK];
    ssize_t n = read(STDIN_FILENO, chunk, sizeof(chunk));
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return;
    if (n <= 0) {
        /* End of input: one Ctrl-D, which the guest's line discipline turns into EOF. */
        stdin_watch(s, false);
        s->stdin_done = true;
        chunk[0] = 4;
        n = 1;
    }
    if (tframe_put_data(&s->tq, chunk, (size_t)n)) {
        LOG_WARN("event=terminal_input_dropped bytes=%zd", n);
        return;
    }
    term_flush(s);
    if (s->tq.len >= TERM_OUT_HIGH)
        stdin_watch(s, false);
}

static void stdin_watch(struct shell *s, bool on)
{
    if (on == s->stdin_watched || (on && (s->stdin_done || s->term_fd < 0)))
        return;
    if (!on) {
        loop_del(s->vm.loop, STDIN_FILENO);
        s->stdin_watched = false;
        return;
    }
    int rc = loop_add(s->vm.loop, STDIN_FILENO, EPOLLIN, on_stdin, s);
    if (rc) {
        /* /dev/null or a regular file: forward it whole, then the Ctrl-D. */
        uint8_t chunk[IN_CHUNK];
        ssize_t n;
        while ((n = read(STDIN_FILENO, chunk, sizeof(chunk))) > 0)
            if (tframe_put_data(&s->tq, chunk, (size_t)n))
                break;
        chunk[0] = 4;
        if (tframe_put_data(&s->tq, chunk, 1))
            LOG_WARN("event=terminal_eof_not_sent");
        s->stdin_done = true;
        term_flush(s);
        return;
    }
    s->stdin_watched = true;
}

static void on_ready(void *opaque, const struct ctl_hello *h, int64_t boot_ms)
{
    (void)h;
    (void)boot_ms;
    struct shell *s = opaque;
    unsigned cols, rows;
    window_size(s, &cols, &rows);
    size_t nenv = 0;
    const char *const *env = cli_exec_env(s->opts, s->paths, &nenv);
    int rc = vm_runner_pty(s->vm.runner, (const char *const *)s->opts->cmd, s->opts->n_cmd, env,
                           nenv, "/root", cols, rows, &s->pty_id);
    if (rc) {
        fprintf(stderr, "capsem: cannot ask the guest for a terminal: %s\n", strerror(-rc));
        s->status = CAPSEM_EXIT_FAILED;
        s->have_status = true;
        vm_runner_stop(s->vm.runner);
        return;
    }
    s->pty_sent = true;
}

static void on_terminal(void *opaque, uint32_t id, int fd)
{
    struct shell *s = opaque;
    if (!s->pty_sent || id != s->pty_id || s->term_seen) {
        LOG_WARN("event=terminal_refused id=%u", id);
        close(fd);
        return;
    }
    s->term_seen = true;
    if (loop_add(s->vm.loop, fd, EPOLLIN, on_term, s)) {
        close(fd);
        fprintf(stderr, "capsem: cannot watch the terminal connection\n");
        vm_runner_stop(s->vm.runner);
        return;
    }
    s->term_fd = fd;
    stdin_watch(s, true);
    term_flush(s);
}

static void on_exit_msg(void *opaque, const struct ctl_exit *e)
{
    struct shell *s = opaque;
    if (!s->pty_sent || e->id != s->pty_id)
        return;
    s->status = ctl_exit_status(e);
    s->have_status = true;
    if (e->error[0]) {
        raw_restore(s);
        fprintf(stderr, "capsem: %s: %s\n", s->opts->cmd[0], e->error);
    }
    /* The agent closed the terminal before `exit`: finish once its bytes are read. */
    if (s->term_fd < 0)
        vm_runner_stop(s->vm.runner);
}

static void on_guest_error(void *opaque, uint32_t id, const char *msg)
{
    struct shell *s = opaque;
    if (!s->pty_sent || id != s->pty_id || s->have_status)
        return;
    raw_restore(s);
    fprintf(stderr, "capsem: the guest refused the terminal: %s\n", msg);
    s->status = CAPSEM_EXIT_FAILED;
    s->have_status = true;
    vm_runner_stop(s->vm.runner);
}

static void on_done(void *opaque, int err, const char *msg, const char *log_path)
{
    struct shell *s = opaque;
    if (err) {
        raw_restore(s);
        fprintf(stderr, "capsem: %s\n", msg);
        if (log_path)
            fprintf(stderr, "capsem: the VM log is kept at %s\n", log_path);
    }
    end_shell(s, s->have_status ? s->status : CAPSEM_EXIT_FAILED);
}

static void on_vsock(void *opaque, unsigned port, int fd)
{
    struct shell *s = opaque;
    cli_on_vsock(s->paths, port, fd);
}

static const struct vm_runner_ops runner_ops = {
    .on_ready = on_ready,
    .on_vsock = on_vsock,
    .on_exit = on_exit_msg,
    .on_guest_error = on_guest_error,
    .on_terminal = on_terminal,
    .on_done = on_done,
};

static void on_signal(void *opaque, uint32_t events)
{
    (void)events;
    struct shell *s = opaque;
    struct signalfd_siginfo si;
    if (read(s->vm.sig_fd, &si, sizeof(si)) != (ssize_t)sizeof(si))
        return;
    if (si.ssi_signo == SIGWINCH) {
        term_queue_resize(s);
        return;
    }
    vm_runner_destroy(s->vm.runner);
    s->vm.runner = NULL;
    end_shell(s, 128 + (int)si.ssi_signo);
}

static void on_timeout(void *opaque, uint32_t events)
{
    (void)events;
    struct shell *s = opaque;
    vm_runner_destroy(s->vm.runner);
    s->vm.runner = NULL;
    raw_restore(s);
    fprintf(stderr, "capsem: timed out after %u s\n", s->opts->timeout_s);
    end_shell(s, CAPSEM_EXIT_TIMEOUT);
}

int cli_shell_main(int argc, char **argv)
{
    struct cli_run_opts o;
    char err[1024];
    static struct cli_paths paths;
    struct shell s = {.vm = CLI_VM_INIT, .tty_fd = -1, .term_fd = -1};
    int code = CAPSEM_EXIT_FAILED;

    buf_init(&s.tq, 64u << 20);
    if (cli_shell_parse(argc, argv, &o, err, sizeof(err))) {
        fprintf(stderr,
                "capsem: %s\nusage: capsem shell [OPTIONS] [-- CMD [ARG...]] (see capsem "
                "shell --help)\n",
                err);
        return CAPSEM_EXIT_USAGE;
    }
    if (o.help) {
        fputs(usage_text, stdout);
        cli_run_opts_fini(&o);
        return 0;
    }
    s.opts = &o;
    const char *lvl = getenv("CAPSEM_LOG");
    int level = lvl ? log_level_parse(lvl) : -1;
    log_init("capsem", level >= 0 ? (enum log_level)level : LOG_WARN);
    if (cli_run_paths(&o, &paths))
        goto out;

    /* TERM of this terminal for the guest, unless -e sets it. */
    const char *term = getenv("TERM");
    static char term_kv[128];
    bool user_term = false;
    for (size_t i = 0; i < o.n_env; i++)
        user_term |= !strncmp(o.env[i], "TERM=", 5);
    if (!user_term && term && term[0] && strlen(term) < sizeof(term_kv) - 5) {
        const char **n = realloc(o.env, (o.n_env + 1) * sizeof(*n));
        if (!n) {
            fprintf(stderr, "capsem: out of memory\n");
            goto out;
        }
        snprintf(term_kv, sizeof(term_kv), "TERM=%s", term);
        memmove(n + 1, n, o.n_env * sizeof(*n));
        n[0] = term_kv;
        o.env = n;
        o.n_env++;
    }
    s.tty_fd = isatty(STDIN_FILENO) ? STDIN_FILENO : (isatty(STDOUT_FILENO) ? STDOUT_FILENO : -1);

    s.paths = &paths;
    if (cli_vm_open(&s.vm, &o, SIGWINCH, on_signal, on_timeout, &runner_ops, &s) ||
        cli_vm_boot(&s.vm, &o, &paths, true))
        goto out;
    int rc = raw_enter(&s);
    if (rc) {
        fprintf(stderr, "capsem: cannot put the terminal in raw mode: %s\n", strerror(-rc));
        goto out;
    }
    rc = loop_run(s.vm.loop);
    if (rc) {
        raw_restore(&s);
        fprintf(stderr, "capsem: event loop failed: %s\n", strerror(-rc));
        goto out;
    }
    code = s.exit_code;
out:
    cli_vm_stop(&s.vm, &paths);
    raw_restore(&s);
    if (s.stdin_watched)
        loop_del(s.vm.loop, STDIN_FILENO);
    if (s.term_fd >= 0) {
        loop_del(s.vm.loop, s.term_fd);
        close(s.term_fd);
    }
    cli_vm_close(&s.vm);
    buf_fini(&s.tq);
    cli_run_opts_fini(&o);
    return code;
}
