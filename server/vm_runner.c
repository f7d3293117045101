/*
 * VM session runner. States: booting (VMM spawned, waiting for the agent's
 * connection and hello under a boot timer), ready (execs flow), stopping
 * (shutdown sent, waiting for the VMM to exit under a grace timer) and
 * failing (something went wrong; waiting for the VMM to exit so its log can
 * be read, then killing it after a grace period). Every path ends in
 * finish(): the VMM reaped through its pidfd, the run directory emptied and
 * removed (vm.log kept on failure), on_done called once.
 */
#include "vm_runner.h"

#include "log.h"
#include "tframe.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

/* Grace periods: after shutdown, and after a lost connection (a panicking guest resets itself). */
#define STOP_GRACE_MS 5000
#define FAIL_GRACE_MS 3000
/* How much of the end of vm.log is searched for a panic or an error line. */
#define LOG_TAIL (256u << 10)
#define GUEST_CID 3
#define CONTROL_PORT 5000
#define TERMINAL_PORT 5001
/* Terminal connections that may be waiting for their header at once. */
#define TERM_PENDING 4

/* A terminal connection whose 8-byte header has not fully arrived. */
struct term_pending {
    struct vm_runner *r;
    int fd;
    uint8_t hdr[TFRAME_HELLO_LEN];
    size_t n;
};

enum state { ST_IDLE, ST_BOOTING, ST_READY, ST_STOPPING, ST_FAILING, ST_DONE };

struct vm_runner {
    struct loop *loop;
    const struct vm_runner_ops *ops;
    void *opaque;
    enum state state;
    bool keep_logs;
    char vmm_path[4096];
    char dir[1024];
    char uds[1100];
    char listen_path[1100];
    char log_path[1100];
    char hostname[65];
    int listen_fd;
    char term_path[1100]; /* <uds>_5001 when cfg.terminal, else "" */
    int term_listen_fd;
    struct term_pending pend[TERM_PENDING];
    /* Extra vsock ports (cfg.vsock_ports) and their listeners. */
    struct port_listener {
        struct vm_runner *r;
        unsigned port;
        int fd;
        char path[1100];
    } ports[VM_RUNNER_MAX_PORTS];
    size_t n_ports;
    const char *ca_pem;
    int timer_fd;
    int pid_fd;
    int vmm_pid;
    int vmm_status; /* raw wait status once reaped */
    bool vmm_reaped;
    struct ctl_conn *conn;
    int64_t spawn_ns;
    /* First failure seen; reported by finish(). */
    int fail_err;
    char fail_msg[512];
};

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

const char *vm_runner_vmm_status_text(int status)
{
    switch (status) {
    case 0:
        return "guest powered off";
    case 1:
        return "VMM error";
    case 2:
        return "bad VMM configuration";
    case 3:
        return "guest crashed";
    case 4:
        return "VMM stopped by a signal";
    default:
        return "unknown status";
    }
}

int vm_runner_create(struct loop *l, const struct vm_runner_ops *ops, void *opaque,
                     struct vm_runner **out)
{
    struct vm_runner *r = calloc(1, sizeof(*r));
    if (!r)
        return -ENOMEM;
    r->loop = l;
    r->ops = ops;
    r->opaque = opaque;
    r->listen_fd = r->timer_fd = r->pid_fd = r->term_listen_fd = -1;
    for (int i = 0; i < TERM_PENDING; i++)
        r->pend[i] = (struct term_pending){.r = r, .fd = -1};
    for (int i = 0; i < VM_RUNNER_MAX_PORTS; i++)
        r->ports[i] = (struct port_listener){.r = r, .fd = -1};
    r->vmm_pid = -1;
    *out = r;
    return 0;
}

static int arm_timer(struct vm_runner *r, unsigned ms)
{
    struct itimerspec its = {
        .it_value = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000}};
    if (!ms)
        its.it_value.tv_nsec = 1;
    if (timerfd_settime(r->timer_fd, 0, &its, NULL) < 0)
        return -errno;
    return 0;
}

static void kill_vmm(struct vm_runner *r)
{
    if (r->vmm_pid > 0 && !r->vmm_reaped)
        kill(-r->vmm_pid, SIGKILL);
}

/* Remove everything in the run directory (but vm.log/vmm.json when keeping), then the directory. */
static void remove_run_dir(struct vm_runner *r, bool keep_log)
{
    if (!r->dir[0])
        return;
    DIR *d = opendir(r->dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
                continue;
            if (keep_log && (!strcmp(e->d_name, "vm.log") || !strcmp(e->d_name, "vmm.json") ||
                             !strcmp(e->d_name, "fs-events.jsonl")))
                continue;
            if (unlinkat(dirfd(d), e->d_name, 0) < 0 && errno != ENOENT)
                LOG_WARN("event=run_dir_unlink name=%s errno=%d", e->d_name, errno);
        }
        closedir(d);
    }
    if (!keep_log && rmdir(r->dir) < 0 && errno != ENOENT)
        LOG_WARN("event=run_dir_rmdir dir=%s errno=%d", r->dir, errno);
}

static void close_fd(struct vm_runner *r, int *fd)
{
    if (*fd >= 0) {
        loop_del(r->loop, *fd);
        close(*fd);
        *fd = -1;
    }
}

/* Release the VMM-side resources (no callbacks); kills and reaps the VMM. */
static void release(struct vm_runner *r, bool keep_log)
{
    if (r->conn) {
        ctl_conn_destroy(r->conn);
        r->conn = NULL;
    }
    close_fd(r, &r->listen_fd);
    close_fd(r, &r->term_listen_fd);
    for (int i = 0; i < TERM_PENDING; i++)
        close_fd(r, &r->pend[i].fd);
    for (size_t i = 0; i < r->n_ports; i++)
        close_fd(r, &r->ports[i].fd);
    close_fd(r, &r->timer_fd);
    if (r->vmm_pid > 0 && !r->vmm_reaped) {
        kill_vmm(r);
        int st;
        while (waitpid(r->vmm_pid, &st, 0) < 0 && errno == EINTR)
            ;
        r->vmm_reaped = true;
        r->vmm_status = st;
    }
    close_fd(r, &r->pid_fd);
    remove_run_dir(r, keep_log);
    r->dir[0] = '\0';
}

void vm_runner_destroy(struct vm_runner *r)
{
    if (!r)
        return;
    release(r, r->keep_logs);
    free(r);
}

/* Read up to LOG_TAIL bytes from the end of vm.log into a NUL-terminated heap string. */
static char *read_log_tail(const char *path, size_t *len_out)
{
    char *text = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    struct stat st;
    if (fstat(fd, &st) < 0)
        goto out;
    off_t start = st.st_size > (off_t)LOG_TAIL ? st.st_size - (off_t)LOG_TAIL : 0;
    size_t want = (size_t)(st.st_size - start);
    text = malloc(want + 1);
    if (!text)
        goto out;
    size_t got = 0;
    while (got < want) {
        ssize_t n = pread(fd, text + got, want - got, start + (off_t)got);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    text[got] = '\0';
    *len_out = got;
out:
    close(fd);
    return text;
}

/* The last line of the log that looks like an error (or the last line at all), escaped. */
static void last_error_line(const char *text, size_t len, char *out, size_t size)
{
    out[0] = '\0';
    const char *best = NULL, *last = NULL;
    size_t best_len = 0, last_len = 0;
    size_t i = 0;
    while (i < len) {
        size_t j = i;
        while (j < len && text[j] != '\n')
            j++;
        size_t n = j - i;
        if (n && text[i] != '\r') {
            last = text + i;
            last_len = n;
            if (memmem(text + i, n, " ERR ", 5) || memmem(text + i, n, "error", 5)) {
                best = text + i;
                best_len = n;
            }
        }
        i = j + 1;
    }
    if (!best) {
        best = last;
        best_len = last_len;
    }
    if (!best)
        return;
    /* Our log lines are "<time> <LEVEL> <component> key=value...": keep the key=values. */
    const char *end = best + best_len, *p = best;
    const char *tok[3];
    for (int k = 0; k < 3 && p < end; k++) {
        tok[k] = p;
        while (p < end && *p != ' ')
            p++;
        while (p < end && *p == ' ')
            p++;
    }
    if (p < end && tok[0][0] >= '0' && tok[0][0] <= '9' &&
        (!strncmp(tok[1], "ERR ", 4) || !strncmp(tok[1], "WARN ", 5) ||
         !strncmp(tok[1], "INFO ", 5) || !strncmp(tok[1], "DEBUG ", 6))) {
        best_len = (size_t)(end - p);
        best = p;
    }
    /* Peer text: control bytes become '?', and the line is cut at 300 bytes. */
    size_t n = best_len < size - 1 ? best_len : size - 1;
    if (n > 300)
        n = 300;
    for (size_t k = 0; k < n; k++)
        out[k] = (unsigned char)best[k] < 0x20 || best[k] == 0x7f ? '?' : best[k];
    out[n] = '\0';
}

/* Compose the failure reason from the log and the VMM's exit status. */
static void explain_vmm_exit(struct vm_runner *r)
{
    size_t len = 0;
    char *text = read_log_tail(r->log_path, &len);
    bool panic = text && memmem(text, len, "Kernel panic", 12);
    if (panic) {
        r->fail_err = -EIO;
        snprintf(r->fail_msg, sizeof(r->fail_msg),
                 "the guest kernel panicked (\"Kernel panic\" in the VM log)");
    } else if (r->fail_err && r->fail_err != -ETIMEDOUT && WIFEXITED(r->vmm_status) &&
               WEXITSTATUS(r->vmm_status) != 0) {
        /* Say what the VMM made of it too (a crashed guest drops the connection). */
        size_t n = strlen(r->fail_msg);
        snprintf(r->fail_msg + n, sizeof(r->fail_msg) - n,
                 " (capsem-vmm exited with status %d, %s)", WEXITSTATUS(r->vmm_status),
                 vm_runner_vmm_status_text(WEXITSTATUS(r->vmm_status)));
    } else if (!r->fail_err) {
        char line[320] = "";
        if (text)
            last_error_line(text, len, line, sizeof(line));
        int st = r->vmm_status;
        char what[96];
        if (WIFEXITED(st))
            snprintf(what, sizeof(what), "status %d, %s", WEXITSTATUS(st),
                     vm_runner_vmm_status_text(WEXITSTATUS(st)));
        else
            snprintf(what, sizeof(what), "killed by signal %d", WTERMSIG(st));
        r->fail_err = -ECHILD;
        snprintf(r->fail_msg, sizeof(r->fail_msg), "capsem-vmm exited %s (%s)%s%s",
                 r->state == ST_BOOTING ? "before the guest was ready" : "unexpectedly", what,
                 line[0] ? ": " : "", line);
    }
    free(text);
}

/* Everything is over: clean up and report once. The runner may be freed by on_done. */
static void finish(struct vm_runner *r)
{
    bool failed = r->state != ST_STOPPING || r->fail_err;
    if (r->state != ST_STOPPING && r->vmm_reaped)
        explain_vmm_exit(r);
    bool keep = r->keep_logs || failed;
    r->state = ST_DONE;
    char log_copy[sizeof(r->log_path)];
    snprintf(log_copy, sizeof(log_copy), "%s", r->log_path);
    release(r, keep);
    if (failed)
        LOG_INFO("event=vm_failed err=%d reason=\"%s\"", r->fail_err, r->fail_msg);
    r->ops->on_done(r->opaque, failed ? (r->fail_err ? r->fail_err : -EIO) : 0,
                    failed ? r->fail_msg : "", keep ? log_copy : NULL);
}

/* Record the first failure and start ending the VM: wait for the VMM a little, then kill. */
static void fail(struct vm_runner *r, int err, const char *msg, bool kill_now)
{
    if (r->state == ST_DONE)
        return;
    if (!r->fail_err) {
        r->fail_err = err;
        snprintf(r->fail_msg, sizeof(r->fail_msg), "%s", msg);
    }
    if (r->state != ST_FAILING) {
        r->state = ST_FAILING;
        if (kill_now)
            kill_vmm(r);
        else if (arm_timer(r, FAIL_GRACE_MS))
            kill_vmm(r);
    } else if (kill_now) {
        kill_vmm(r);
    }
}

/* Ask `capsem-vmm --probe` whether this KVM can run a guest at useful speed. */
static void probe_kvm(struct vm_runner *r, char *out, size_t size)
{
    out[0] = '\0';
    int pipefd[2] = {-1, -1};
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    sigset_t none;
    pid_t pid = -1;
    if (pipe2(pipefd, O_CLOEXEC) < 0)
        return;
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&at);
    sigemptyset(&none);
    posix_spawnattr_setsigmask(&at, &none);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK);
    posix_spawn_file_actions_adddup2(&fa, pipefd[1], 1);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    char *argv[] = {r->vmm_path, (char *)"--probe", NULL};
    if (posix_spawn(&pid, r->vmm_path, &fa, &at, argv, environ) != 0)
        pid = -1;
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    close(pipefd[1]);
    if (pid < 0) {
        close(pipefd[0]);
        return;
    }
    /* The probe bounds itself to about a second; give it five before killing it. */
    int st = 0;
    int64_t deadline = now_ns() + 5000000000LL;
    while (waitpid(pid, &st, WNOHANG) == 0) {
        if (now_ns() > deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            close(pipefd[0]);
            return;
        }
        usleep(20000);
    }
    char line[200];
    ssize_t n = read(pipefd[0], line, sizeof(line) - 1);
    close(pipefd[0]);
    if (n < 0)
        n = 0;
    line[n] = '\0';
    line[strcspn(line, "\n")] = '\0';
    if (WIFEXITED(st) && WEXITSTATUS(st) == 1)
        snprintf(out, size,
                 "; this KVM emulates guest code (nested virtualisation without hardware "
                 "support): run on a host with hardware KVM, or use tests/kvm-bed/run");
    else if (WIFEXITED(st) && WEXITSTATUS(st) == 2)
        snprintf(out, size, "; KVM is unavailable here (%.150s)", line);
}

static void on_timer(void *opaque, uint32_t events)
{
    (void)events;
    struct vm_runner *r = opaque;
    uint64_t ticks;
    if (read(r->timer_fd, &ticks, sizeof(ticks)) < 0 && errno == EAGAIN)
        return;
    if (r->state == ST_BOOTING) {
        char msg[512], hint[256];
        kill_vmm(r);
        size_t len = 0;
        char *text = read_log_tail(r->log_path, &len);
        bool panic = text && memmem(text, len, "Kernel panic", 12);
        free(text);
        if (panic) {
            fail(r, -EIO, "the guest kernel panicked", true);
            return;
        }
        probe_kvm(r, hint, sizeof(hint));
        snprintf(msg, sizeof(msg), "the guest agent did not say hello within %u ms%s",
                 (unsigned)((now_ns() - r->spawn_ns) / 1000000), hint);
        fail(r, -ETIMEDOUT, msg, true);
    } else if (r->state == ST_STOPPING || r->state == ST_FAILING) {
        LOG_WARN("event=vmm_grace_expired action=kill");
        kill_vmm(r);
    }
}

static void on_vmm_exit(void *opaque, uint32_t events)
{
    (void)events;
    struct vm_runner *r = opaque;
    int st;
    pid_t p = waitpid(r->vmm_pid, &st, WNOHANG);
    if (p == 0)
        return;
    if (p < 0) {
        st = 0;
        LOG_WARN("event=vmm_waitpid errno=%d", errno);
    }
    r->vmm_reaped = true;
    r->vmm_status = st;
    close_fd(r, &r->pid_fd);
    if (r->state == ST_STOPPING && !(WIFEXITED(st) && WEXITSTATUS(st) == 0))
        LOG_WARN("event=vmm_exit_after_shutdown status=%d", st);
    finish(r);
}

static void conn_hello(void *opaque, const struct ctl_hello *h)
{
    struct vm_runner *r = opaque;
    if (r->state != ST_BOOTING)
        return;
    r->state = ST_READY;
    struct itimerspec off = {0};
    timerfd_settime(r->timer_fd, 0, &off, NULL);
    int64_t boot_ms = (now_ns() - r->spawn_ns) / 1000000;
    LOG_INFO("event=vm_ready boot_ms=%lld guest_boot_ms=%lld kernel=\"%s\"", (long long)boot_ms,
             (long long)h->boot_ms, h->kernel);
    if (r->ops->on_ready)
        r->ops->on_ready(r->opaque, h, boot_ms);
}

static void conn_started(void *opaque, uint32_t id, int64_t pid)
{
    struct vm_runner *r = opaque;
    if (r->ops->on_started)
        r->ops->on_started(r->opaque, id, pid);
}

static void conn_output(void *opaque, uint32_t id, int stream, const uint8_t *p, size_t len)
{
    struct vm_runner *r = opaque;
    if (r->ops->on_output)
        r->ops->on_output(r->opaque, id, stream, p, len);
}

static void conn_exit(void *opaque, const struct ctl_exit *e)
{
    struct vm_runner *r = opaque;
    if (r->ops->on_exit)
        r->ops->on_exit(r->opaque, e);
}

static void conn_guest_error(void *opaque, uint32_t id, const char *msg)
{
    struct vm_runner *r = opaque;
    if (r->ops->on_guest_error)
        r->ops->on_guest_error(r->opaque, id, msg);
}

static void conn_drained(void *opaque)
{
    struct vm_runner *r = opaque;
    if (r->ops->on_drained)
        r->ops->on_drained(r->opaque);
}

static void conn_bye(void *opaque)
{
    (void)opaque;
    LOG_DEBUG("event=guest_bye");
}

static void conn_closed(void *opaque, int err, const char *msg)
{
    struct vm_runner *r = opaque;
    /* The socket is closed by ctl_conn_destroy in release(); only the state changes here. */
    if (r->state == ST_STOPPING || r->state == ST_DONE)
        return;
    /* A lost connection is often a dying guest: let the VMM exit on its own first. */
    fail(r, err ? err : -ECONNRESET, msg, err == -EPROTO || err == -EPROTONOSUPPORT);
}

static const struct ctl_conn_ops conn_ops = {
    .on_hello = conn_hello,
    .on_started = conn_started,
    .on_output = conn_output,
    .on_exit = conn_exit,
    .on_guest_error = conn_guest_error,
    .on_bye = conn_bye,
    .on_drained = conn_drained,
    .on_closed = conn_closed,
};

static void on_accept(void *opaque, uint32_t events)
{
    (void)events;
    struct vm_runner *r = opaque;
    int fd = accept4(r->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0)
        return;
    /* One control connection per boot: stop listening and remove the socket file. */
    close_fd(r, &r->listen_fd);
    unlink(r->listen_path);
    if (r->state != ST_BOOTING) {
        close(fd);
        return;
    }
    int rc = ctl_conn_create(r->loop, fd, &conn_ops, r, r->hostname, &r->conn);
    if (rc) {
        close(fd);
        fail(r, rc, "cannot serve the guest connection", true);
        return;
    }
    ctl_conn_set_ca(r->conn, r->ca_pem);
}

/* A guest connection to one of the extra ports: handed over as it is. */
static void on_port_accept(void *opaque, uint32_t events)
{
    (void)events;
    struct port_listener *pl = opaque;
    struct vm_runner *r = pl->r;
    int fd = accept4(pl->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0)
        return;
    if (!r->ops->on_vsock || r->state == ST_STOPPING || r->state == ST_DONE) {
        close(fd);
        return;
    }
    r->ops->on_vsock(r->opaque, pl->port, fd);
}

/* More of a terminal connection's header; hands the connection over once it is whole. */
static void on_term_header(void *opaque, uint32_t events)
{
    (void)events;
    struct term_pending *p = opaque;
    struct vm_runner *r = p->r;
    ssize_t n = read(p->fd, p->hdr + p->n, sizeof(p->hdr) - p->n);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    uint32_t id;
    if (n <= 0) {
        close_fd(r, &p->fd);
        return;
    }
    p->n += (size_t)n;
    if (p->n < sizeof(p->hdr))
        return;
    int fd = p->fd;
    loop_del(r->loop, fd);
    p->fd = -1;
    if (tframe_hello_parse(p->hdr, &id) || r->state != ST_READY || !r->ops->on_terminal) {
        LOG_WARN("event=terminal_refused reason=%s",
                 r->state != ST_READY ? "not_ready" : "bad_header_or_unwanted");
        close(fd);
        return;
    }
    r->ops->on_terminal(r->opaque, id, fd);
}

static void on_term_accept(void *opaque, uint32_t events)
{
    (void)events;
    struct vm_runner *r = opaque;
    int fd = accept4(r->term_listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0)
        return;
    for (int i = 0; i < TERM_PENDING; i++) {
        struct term_pending *p = &r->pend[i];
        if (p->fd >= 0)
            continue;
        p->fd = fd;
        p->n = 0;
        if (loop_add(r->loop, fd, EPOLLIN, on_term_header, p) == 0)
            return;
        p->fd = -1;
        break;
    }
    LOG_WARN("event=terminal_refused reason=too_many_pending");
    close(fd);
}

/* Listen on `path` (non-blocking, close-on-exec) with `fn(opaque)` on the loop. 0 or -errno. */
static int listen_unix(struct vm_runner *r, const char *path, int *fd_out, loop_fn fn, void *opaque)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa.sun_path))
        return -ENAMETOOLONG;
    memcpy(sa.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, TERM_PENDING) < 0) {
        int err = errno;
        close(fd);
        return -err;
    }
    int rc = loop_add(r->loop, fd, EPOLLIN, fn, opaque);
    if (rc) {
        close(fd);
        return rc;
    }
    *fd_out = fd;
    return 0;
}

static int check_file(const char *what, const char *path, int mode, char *err, size_t errlen)
{
    if (access(path, mode) == 0)
        return 0;
    int e = errno;
    if (e == ENOENT)
        snprintf(err, errlen, "%s not found: %s", what, path);
    else
        snprintf(err, errlen, "%s not usable: %s: %s", what, path, strerror(e));
    return -e;
}

static int check_kvm(const char *path, char *err, size_t errlen)
{
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd >= 0) {
        close(fd);
        return 0;
    }
    int e = errno;
    if (e == ENOENT || e == ENXIO || e == ENODEV)
        snprintf(err, errlen,
                 "%s not found: enable KVM (kvm_intel/kvm_amd) or run on a KVM-capable host", path);
    else if (e == EACCES || e == EPERM)
        snprintf(err, errlen,
                 "no permission to open %s: add your user to the 'kvm' group (then log in "
                 "again) or run as root",
                 path);
    else
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(e));
    return -e;
}

static int mkdir_p(const char *path, mode_t mode)
{
    char tmp[4096];
    int n = snprintf(tmp, sizeof(tmp), "%s", path);
    if (n < 0 || (size_t)n >= sizeof(tmp))
        return -ENAMETOOLONG;
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(tmp, mode) < 0 && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    if (mkdir(tmp, mode) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

static int write_config(struct vm_runner *r, const struct vm_runner_config *cfg, const char *path)
{
    int rc = 0;
    json_t *root =
        json_pack("{s:s, s:s, s:s, s:i, s:i, s:{s:i, s:s}, s:{s:b}, s:b}", "kernel", cfg->kernel,
                  "initrd", cfg->initrd, "cmdline", cfg->append ? cfg->append : "", "memory_mib",
                  (int)cfg->mem_mib, "vcpus", (int)cfg->cpus, "vsock", "cid", GUEST_CID, "uds",
                  r->uds, "serial", "stdout", 1, "rng", 1);
    if (!root)
        return -ENOMEM;
    if (cfg->workspace) {
        /* The share, its file events (fs_events_dir or the run directory), and the guest told to
         * mount it. */
        char events[4200];
        const char *edir = cfg->fs_events_dir ? cfg->fs_events_dir : r->dir;
        if ((size_t)snprintf(events, sizeof(events), "%s/fs-events.jsonl", edir) >=
            sizeof(events)) {
            json_decref(root);
            return -ENAMETOOLONG;
        }
        char *line = NULL;
        const char *extra = cfg->append ? cfg->append : "";
        if (asprintf(&line, "%s%scapsem.workspace=1", extra, *extra ? " " : "") < 0)
            line = NULL;
        json_t *fs = json_pack("{s:s, s:s, s:s}", "path", cfg->workspace, "tag", "capsem-workspace",
                               "events", events);
        if (!line || !fs || json_object_set_new(root, "fs", fs) < 0 ||
            json_object_set_new(root, "cmdline", json_string(line)) < 0)
            rc = -ENOMEM;
        free(line);
        if (rc) {
            json_decref(root);
            return rc;
        }
    }
    if (cfg->rootfs) {
        /* The root image as the first disk (/dev/vda, read-only) and init told to switch to it. */
        const char *prev = json_string_value(json_object_get(root, "cmdline"));
        char *line = NULL;
        if (asprintf(&line, "%s%scapsem.root=/dev/vda", prev ? prev : "",
                     prev && *prev ? " " : "") < 0)
            line = NULL;
        json_t *disks = json_pack("[{s:s, s:b}]", "path", cfg->rootfs, "read_only", 1);
        if (!line || !disks || json_object_set_new(root, "disks", disks) < 0 ||
            json_object_set_new(root, "cmdline", json_string(line)) < 0)
            rc = -ENOMEM;
        free(line);
        if (rc) {
            json_decref(root);
            return rc;
        }
    }
    if (cfg->scratch) {
        /* The scratch disk after the root (read-write) and init told where it is. */
        json_t *disks = json_object_get(root, "disks");
        const char *dev = disks ? "/dev/vdb" : "/dev/vda";
        const char *prev = json_string_value(json_object_get(root, "cmdline"));
        char *line = NULL;
        if (asprintf(&line, "%s%scapsem.scratch=%s", prev ? prev : "", prev && *prev ? " " : "",
                     dev) < 0)
            line = NULL;
        if (!disks && json_object_set_new(root, "disks", json_array()) < 0)
            rc = -ENOMEM;
        disks = json_object_get(root, "disks");
        json_t *disk = json_pack("{s:s, s:b}", "path", cfg->scratch, "read_only", 0);
        if (rc || !line || !disks || !disk || json_array_append_new(disks, disk) < 0 ||
            json_object_set_new(root, "cmdline", json_string(line)) < 0)
            rc = -ENOMEM;
        free(line);
        if (rc) {
            json_decref(root);
            return rc;
        }
    }
    if (json_dump_file(root, path, JSON_INDENT(2)) < 0)
        rc = -EIO;
    json_decref(root);
    return rc;
}

static int spawn_vmm(struct vm_runner *r, const char *config_path)
{
    int rc;
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    sigset_t none, defs;
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&at);
    sigemptyset(&none);
    sigemptyset(&defs);
    sigaddset(&defs, SIGINT);
    sigaddset(&defs, SIGTERM);
    sigaddset(&defs, SIGPIPE);
    sigaddset(&defs, SIGHUP);
    sigaddset(&defs, SIGQUIT);
    posix_spawnattr_setsigmask(&at, &none);
    posix_spawnattr_setsigdefault(&at, &defs);
    posix_spawnattr_setpgroup(&at, 0);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF |
                                      POSIX_SPAWN_SETPGROUP);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, r->log_path, O_WRONLY | O_CREAT | O_APPEND, 0600);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    char *argv[] = {r->vmm_path, (char *)"--config", (char *)config_path, NULL};
    pid_t pid;
    rc = -posix_spawn(&pid, r->vmm_path, &fa, &at, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    if (rc)
        return rc;
    r->vmm_pid = pid;
    r->spawn_ns = now_ns();
    int pfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (pfd < 0)
        return -errno;
    r->pid_fd = pfd;
    return loop_add(r->loop, pfd, EPOLLIN, on_vmm_exit, r);
}

int vm_runner_start(struct vm_runner *r, const struct vm_runner_config *cfg, char *err,
                    size_t errlen)
{
    int rc;
    char config_path[1100];
    err[0] = '\0';
    if (r->state != ST_IDLE)
        return -EALREADY;
    r->keep_logs = cfg->keep_logs;
    snprintf(r->hostname, sizeof(r->hostname), "%s", cfg->hostname ? cfg->hostname : "capsem");
    rc = check_file("capsem-vmm", cfg->vmm_path, X_OK, err, errlen);
    if (rc) {
        size_t n = strlen(err);
        snprintf(err + n, errlen - n, " (build it with `cmake --build build`, or set CAPSEM_VMM)");
        goto out;
    }
    rc = check_file("guest kernel", cfg->kernel, R_OK, err, errlen);
    if (!rc)
        rc = check_file("guest initramfs", cfg->initrd, R_OK, err, errlen);
    if (!rc && cfg->rootfs)
        rc = check_file("guest root filesystem", cfg->rootfs, R_OK, err, errlen);
    if (!rc && cfg->scratch)
        rc = check_file("scratch disk", cfg->scratch, R_OK | W_OK, err, errlen);
    if (rc) {
        size_t n = strlen(err);
        snprintf(err + n, errlen - n,
                 " (`cmake --build build` makes the guest assets; or set CAPSEM_ASSETS, or "
                 "pass --kernel/--initrd)");
        goto out;
    }
    if (cfg->workspace) {
        struct stat st;
        rc = stat(cfg->workspace, &st) < 0 ? -errno : S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
        if (rc) {
            snprintf(err, errlen, "workspace not usable: %s: %s", cfg->workspace, strerror(-rc));
            goto out;
        }
    }
    rc = check_kvm(cfg->kvm_path ? cfg->kvm_path : "/dev/kvm", err, errlen);
    if (rc)
        goto out;
    snprintf(r->vmm_path, sizeof(r->vmm_path), "%s", cfg->vmm_path);

    rc = mkdir_p(cfg->run_base, 0700);
    if (rc) {
        snprintf(err, errlen, "cannot create %s: %s", cfg->run_base, strerror(-rc));
        goto out;
    }
    for (int tries = 0; tries < 16; tries++) {
        uint8_t rnd[4];
        if (getrandom(rnd, sizeof(rnd), 0) != sizeof(rnd)) {
            rc = -EIO;
            break;
        }
        int n = snprintf(r->dir, sizeof(r->dir), "%s/%02x%02x%02x%02x", cfg->run_base, rnd[0],
                         rnd[1], rnd[2], rnd[3]);
        if (n < 0 || (size_t)n >= sizeof(r->dir)) {
            rc = -ENAMETOOLONG;
            break;
        }
        rc = mkdir(r->dir, 0700) < 0 ? -errno : 0;
        if (rc != -EEXIST)
            break;
    }
    if (rc) {
        snprintf(err, errlen, "cannot create a run directory in %s: %s", cfg->run_base,
                 strerror(-rc));
        r->dir[0] = '\0';
        goto out;
    }
    /* dir is at most 1023 bytes, so these always fit; the checks keep it that way. */
    if (snprintf(r->uds, sizeof(r->uds), "%s/vsock.sock", r->dir) < 0 ||
        snprintf(r->listen_path, sizeof(r->listen_path), "%s_%d", r->uds, CONTROL_PORT) < 0 ||
        snprintf(r->log_path, sizeof(r->log_path), "%s/vm.log", r->dir) < 0 ||
        snprintf(config_path, sizeof(config_path), "%s/vmm.json", r->dir) < 0) {
        rc = -ENAMETOOLONG;
        goto out;
    }

    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(r->listen_path) >= sizeof(sa.sun_path)) {
        rc = -ENAMETOOLONG;
        snprintf(err, errlen,
                 "socket path too long (%zu bytes, limit %zu): %s; use a shorter "
                 "CAPSEM_HOME",
                 strlen(r->listen_path), sizeof(sa.sun_path) - 1, r->listen_path);
        goto out;
    }
    memcpy(sa.sun_path, r->listen_path, strlen(r->listen_path) + 1);
    r->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (r->listen_fd < 0 || bind(r->listen_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
        listen(r->listen_fd, 1) < 0) {
        rc = -errno;
        snprintf(err, errlen, "cannot listen on %s: %s", r->listen_path, strerror(-rc));
        goto out;
    }
    rc = loop_add(r->loop, r->listen_fd, EPOLLIN, on_accept, r);
    if (rc) {
        snprintf(err, errlen, "event loop: %s", strerror(-rc));
        goto out;
    }
    if (cfg->terminal) {
        if (snprintf(r->term_path, sizeof(r->term_path), "%s_%d", r->uds, TERMINAL_PORT) < 0)
            rc = -ENAMETOOLONG;
        else
            rc = listen_unix(r, r->term_path, &r->term_listen_fd, on_term_accept, r);
        if (rc) {
            snprintf(err, errlen, "cannot listen on %s: %s", r->term_path, strerror(-rc));
            goto out;
        }
    }
    if (cfg->n_vsock_ports > VM_RUNNER_MAX_PORTS) {
        rc = -E2BIG;
        snprintf(err, errlen, "too many vsock ports (%zu, limit %d)", cfg->n_vsock_ports,
                 VM_RUNNER_MAX_PORTS);
        goto out;
    }
    r->ca_pem = cfg->ca_pem;
    for (size_t i = 0; i < cfg->n_vsock_ports; i++) {
        struct port_listener *pl = &r->ports[i];
        pl->port = cfg->vsock_ports[i];
        r->n_ports = i + 1;
        if (snprintf(pl->path, sizeof(pl->path), "%s_%u", r->uds, pl->port) < 0)
            rc = -ENAMETOOLONG;
        else
            rc = listen_unix(r, pl->path, &pl->fd, on_port_accept, pl);
        if (rc) {
            snprintf(err, errlen, "cannot listen on %s: %s", pl->path, strerror(-rc));
            goto out;
        }
    }
    r->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (r->timer_fd < 0) {
        rc = -errno;
        snprintf(err, errlen, "timerfd: %s", strerror(-rc));
        goto out;
    }
    rc = loop_add(r->loop, r->timer_fd, EPOLLIN, on_timer, r);
    if (!rc)
        rc = write_config(r, cfg, config_path);
    if (rc) {
        snprintf(err, errlen, "cannot write %s: %s", config_path, strerror(-rc));
        goto out;
    }
    rc = spawn_vmm(r, config_path);
    if (rc) {
        snprintf(err, errlen, "cannot start %s: %s", r->vmm_path, strerror(-rc));
        goto out;
    }
    r->state = ST_BOOTING;
    rc = arm_timer(r, cfg->boot_timeout_ms);
    if (rc)
        snprintf(err, errlen, "timerfd: %s", strerror(-rc));
    LOG_DEBUG("event=vmm_spawned pid=%d dir=%s", r->vmm_pid, r->dir);
out:
    if (rc) {
        release(r, false);
        r->state = ST_DONE;
    }
    return rc;
}

int vm_runner_exec(struct vm_runner *r, const char *const *argv, size_t argc,
                   const char *const *env, size_t envc, const char *cwd, bool with_stdin,
                   uint32_t *id)
{
    if (r->state != ST_READY || !r->conn)
        return -ENOTCONN;
    return ctl_conn_exec(r->conn, argv, argc, env, envc, cwd, with_stdin, id);
}

int vm_runner_pty(struct vm_runner *r, const char *const *argv, size_t argc, const char *const *env,
                  size_t envc, const char *cwd, unsigned cols, unsigned rows, uint32_t *id)
{
    if (r->state != ST_READY || !r->conn)
        return -ENOTCONN;
    return ctl_conn_pty(r->conn, argv, argc, env, envc, cwd, cols, rows, id);
}

int vm_runner_send_stdin(struct vm_runner *r, uint32_t id, const void *p, size_t len)
{
    if (r->state != ST_READY || !r->conn)
        return -ENOTCONN;
    return ctl_conn_send_stdin(r->conn, id, p, len);
}

int vm_runner_signal(struct vm_runner *r, uint32_t id, int sig)
{
    if (r->state != ST_READY || !r->conn)
        return -ENOTCONN;
    return ctl_conn_signal(r->conn, id, sig);
}

size_t vm_runner_pending(const struct vm_runner *r)
{
    return r->conn && r->state == ST_READY ? ctl_conn_pending(r->conn) : 0;
}

void vm_runner_pause(struct vm_runner *r, bool paused)
{
    if (r->conn && r->state == ST_READY)
        ctl_conn_pause(r->conn, paused);
}

void vm_runner_stop(struct vm_runner *r)
{
    if (r->state == ST_STOPPING || r->state == ST_FAILING || r->state == ST_DONE ||
        r->state == ST_IDLE)
        return;
    bool asked = r->state == ST_READY && r->conn && ctl_conn_shutdown(r->conn) == 0;
    r->state = ST_STOPPING;
    if (!asked || arm_timer(r, STOP_GRACE_MS))
        kill_vmm(r);
}

const char *vm_runner_dir(const struct vm_runner *r)
{
    return r->dir;
}

int vm_runner_vmm_pid(const struct vm_runner *r)
{
    return r->vmm_reaped ? -1 : r->vmm_pid;
}
