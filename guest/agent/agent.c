/*
 * The guest agent's core (see agent.h): one epoll loop over the control
 * socket, each exec's stdout/stderr/stdin pipes and each exec's pidfd.
 *
 * Output from children is framed straight into one outgoing queue; while
 * more than AGENT_OUT_HIGH bytes wait for the host, children's pipes leave
 * the epoll set (their writers then block on full pipes). Stdin frames from
 * the host go to per-exec queues; while more than AGENT_STDIN_HIGH bytes of
 * stdin wait, the socket leaves the epoll set for reading. Execs are freed
 * only between event batches, so no event can point at a freed exec.
 */
#include "agent.h"

#include "buf.h"
#include "ca.h"
#include "frame.h"
#include "log.h"
#include "tframe.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/pidfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Bytes read from a pipe or the socket per read(2). */
#define READ_CHUNK (128u * 1024u)
/* The incoming buffer holds the largest frame plus one read. */
#define IN_CAP (FRAME_HDR_LEN + FRAME_MAX_PAYLOAD + READ_CHUNK)
/* Stop reading the socket while this much waits to go out (a host that does not read). */
#define OUT_SOCK_HIGH (1024u * 1024u)
/* Hard caps; the thresholds above keep real use far below them. */
#define OUT_CAP (64u * 1024u * 1024u)
#define STDIN_CAP (AGENT_STDIN_HIGH + IN_CAP)
/* Requested pipe size for children's stdout (best effort). */
#define PIPE_SIZE (1024 * 1024)
/* How long `bye` may take to leave after `shutdown`. */
#define SHUTDOWN_FLUSH_MS 5000
/* Longest host name accepted from the host (HOST_NAME_MAX on Linux). */
#define HOSTNAME_MAX 64
/* Stop reading a PTY master while this much waits for its terminal connection. */
#define PTY_OUT_HIGH (256u * 1024u)
/* Incoming buffer of a terminal connection: the largest frame plus one read. */
#define TERM_IN_CAP (TFRAME_HDR_LEN + TFRAME_MAX_PAYLOAD + 64u * 1024u)

/* For a `pty` exec, W_STDOUT is the PTY master and W_STDIN a duplicate of it. */
enum watch_kind { W_SOCK, W_STDOUT, W_STDERR, W_STDIN, W_PIDFD, W_TERM };

/* One fd in the epoll set; `events` is the registered mask, 0 = not registered. */
struct watch {
    enum watch_kind kind;
    int fd;
    uint32_t events;
    struct exec *e; /* NULL for the socket */
};

/* A byte queue: bytes [off, b.len) of `b` are pending. */
struct queue {
    struct buf b;
    size_t off;
};

struct exec {
    struct exec *next;
    uint32_t id;
    pid_t pid;
    struct watch out[2]; /* stdout, stderr read ends; fd -1 after EOF */
    struct watch in;     /* stdin write end; fd -1 when closed or unused */
    struct watch pidw;   /* pidfd; fd -1 once reaped */
    struct queue stdin_q;
    bool want_stdin; /* started with "stdin": true */
    bool stdin_eof;  /* the host sent the empty stdin frame */
    bool reaped;
    int status; /* wait status, valid once reaped; -1 = lost */
    /* `pty` execs only (schemas/vsock-terminal.md): */
    bool pty;
    int slave_fd;          /* held until the child is reaped, so the master cannot read EIO early */
    struct watch term;     /* terminal connection (port 5001); fd -1 once closed */
    struct queue term_out; /* master output (after the 8-byte header) not yet sent */
    struct buf term_in;    /* partial frames from the terminal connection */
};

struct agent {
    int epfd;
    struct watch sock;
    struct buf in;
    struct queue out;
    struct exec *execs;
    unsigned nexecs;
    size_t stdin_total; /* bytes queued for all children's stdin */
    struct agent_options opt;
    bool shutting_down;
    uint8_t *scratch;               /* READ_CHUNK bytes for pipe reads */
    const char *ca_env[CA_ENV_MAX]; /* static strings, added to the base environment */
    size_t n_ca_env;
};

static const char *const base_env[] = {
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME=/root",
    "TERM=xterm-256color",
    "LANG=C.UTF-8",
    "USER=root",
    "LOGNAME=root",
    "SHELL=/bin/sh",
};
#define BASE_ENV_N (sizeof(base_env) / sizeof(base_env[0]))

static size_t q_len(const struct queue *q)
{
    return q->b.len - q->off;
}

static const uint8_t *q_ptr(const struct queue *q)
{
    return q->b.data + q->off;
}

/* Drop `n` sent bytes; compacts only when the dead prefix is large, so moves stay amortised. */
static void q_drop(struct queue *q, size_t n)
{
    q->off += n;
    if (q->off >= q->b.len) {
        q->b.len = 0;
        q->off = 0;
    } else if (q->off >= 64 * 1024 && q->off * 2 >= q->b.len) {
        buf_consume(&q->b, q->off);
        q->off = 0;
    }
}

/* Before appending `extra` bytes: drop the dead prefix rather than grow (or hit the cap). */
static void q_make_room(struct queue *q, size_t extra)
{
    if (q->off && q->b.len + extra > q->b.alloc) {
        buf_consume(&q->b, q->off);
        q->off = 0;
    }
}

static void q_clear(struct queue *q)
{
    q->b.len = 0;
    q->off = 0;
}

static int watch_set(struct agent *a, struct watch *w, uint32_t want)
{
    if (w->fd < 0 || want == w->events)
        return 0;
    int op = !w->events ? EPOLL_CTL_ADD : (!want ? EPOLL_CTL_DEL : EPOLL_CTL_MOD);
    struct epoll_event ev = {.events = want, .data.ptr = w};
    if (epoll_ctl(a->epfd, op, w->fd, &ev) < 0) {
        int err = errno;
        LOG_ERR("event=epoll_ctl fd=%d err=\"%s\"", w->fd, strerror(err));
        return -err;
    }
    w->events = want;
    return 0;
}

static void watch_close(struct agent *a, struct watch *w)
{
    if (w->fd < 0)
        return;
    if (w->events)
        epoll_ctl(a->epfd, EPOLL_CTL_DEL, w->fd, NULL);
    close(w->fd);
    w->fd = -1;
    w->events = 0;
}

/* Copy peer text for an error message: printable ASCII only, at most 64 bytes. */
static void safe_text(char *out, size_t size, const char *in, size_t len)
{
    size_t o = 0;
    for (size_t i = 0; i < len && o + 4 < size; i++) {
        if (o >= 64) {
            memcpy(out + o, "...", 3);
            o += 3;
            break;
        }
        unsigned char c = (unsigned char)in[i];
        out[o++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    out[o] = '\0';
}

/* Queue one JSON message; takes the reference to `m`. */
static int send_json(struct agent *a, json_t *m)
{
    int rc = -ENOMEM;
    char *s = NULL;
    if (!m)
        goto out;
    s = json_dumps(m, JSON_COMPACT);
    if (!s)
        goto out;
    q_make_room(&a->out, FRAME_HDR_LEN + strlen(s));
    rc = frame_put_json(&a->out.b, s, strlen(s));
    if (rc)
        LOG_ERR("event=queue_message err=%d", rc);
out:
    free(s);
    json_decref(m);
    return rc;
}

__attribute__((format(printf, 4, 5))) static int send_error(struct agent *a, bool has_id,
                                                            uint32_t id, const char *fmt, ...)
{
    char text[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    json_t *m = json_pack("{s:s,s:s}", "type", "error", "message", text);
    if (m && has_id && json_object_set_new(m, "id", json_integer(id)) < 0) {
        json_decref(m);
        m = NULL;
    }
    return send_json(a, m);
}

static struct exec *find_exec(struct agent *a, uint32_t id)
{
    for (struct exec *e = a->execs; e; e = e->next)
        if (e->id == id)
            return e;
    return NULL;
}

static void stdin_drop(struct agent *a, struct exec *e, size_t n)
{
    a->stdin_total -= n;
    q_drop(&e->stdin_q, n);
}

/* Close the child's stdin and forget what was queued for it. */
static void stdin_close(struct agent *a, struct exec *e)
{
    a->stdin_total -= q_len(&e->stdin_q);
    q_clear(&e->stdin_q);
    watch_close(a, &e->in);
}

/* Write queued stdin until the pipe is full; closes it when drained after EOF. */
static void stdin_flush(struct agent *a, struct exec *e)
{
    while (e->in.fd >= 0 && q_len(&e->stdin_q)) {
        ssize_t n = write(e->in.fd, q_ptr(&e->stdin_q), q_len(&e->stdin_q));
        if (n > 0) {
            stdin_drop(a, e, (size_t)n);
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return;
        /* EPIPE: the child closed its stdin; what it did not read is dropped. */
        stdin_close(a, e);
        return;
    }
    if (e->in.fd >= 0 && e->stdin_eof)
        watch_close(a, &e->in);
}

static void exec_free(struct agent *a, struct exec *e)
{
    if (!e)
        return;
    stdin_close(a, e);
    watch_close(a, &e->out[0]);
    watch_close(a, &e->out[1]);
    watch_close(a, &e->pidw);
    watch_close(a, &e->term);
    if (e->slave_fd >= 0)
        close(e->slave_fd);
    buf_fini(&e->stdin_q.b);
    buf_fini(&e->term_out.b);
    buf_fini(&e->term_in);
    free(e);
}

/* Exit code for a failed start, like a shell: not found 127, found but not runnable 126. */
static int start_error_code(int err)
{
    return (err == ENOENT || err == ENOTDIR) ? 127 : 126;
}

/*
 * End an exec that never ran: both end-of-stream frames, then `exit` with the
 * error. The text does not repeat the program name (the host prints it first,
 * shell style: "capsem: prog: command not found").
 */
static int send_start_failure(struct agent *a, uint32_t id, int err, const char *dir, bool streams)
{
    char safe[80];
    char text[256];
    if (dir) {
        safe_text(safe, sizeof(safe), dir, strlen(dir));
        snprintf(text, sizeof(text), "cannot change directory to %s: %s", safe, strerror(err));
    } else if (err == ESRCH) {
        snprintf(text, sizeof(text), "command not found");
        err = ENOENT;
    } else {
        snprintf(text, sizeof(text), "%s", strerror(err));
    }
    q_make_room(&a->out, 2 * (FRAME_HDR_LEN + FRAME_DATA_HDR_LEN));
    int rc = streams ? frame_put_data(&a->out.b, id, FRAME_STDOUT, NULL, 0) : 0;
    if (!rc && streams)
        rc = frame_put_data(&a->out.b, id, FRAME_STDERR, NULL, 0);
    if (!rc)
        rc = send_json(a, json_pack("{s:s,s:I,s:i,s:s}", "type", "exit", "id", (json_int_t)id,
                                    "code", start_error_code(err), "error", text));
    return rc;
}

/*
 * Find `name` on the PATH found in `envp`, like execvp. 0 and `out`; -ESRCH
 * when a bare name is on no PATH entry ("command not found"), -EACCES when it
 * is there but not executable, -ENAMETOOLONG.
 */
static int resolve_path(const char *name, char *const *envp, char *out, size_t out_size)
{
    if (strchr(name, '/')) {
        if ((size_t)snprintf(out, out_size, "%s", name) >= out_size)
            return -ENAMETOOLONG;
        return 0;
    }
    const char *path = "/usr/local/bin:/usr/bin:/bin";
    for (size_t i = 0; envp[i]; i++)
        if (strncmp(envp[i], "PATH=", 5) == 0)
            path = envp[i] + 5;
    int rc = -ESRCH;
    const char *p = path;
    for (;;) {
        const char *end = strchr(p, ':');
        size_t dlen = end ? (size_t)(end - p) : strlen(p);
        const char *dir = dlen ? p : ".";
        int dl = dlen ? (int)dlen : 1;
        int n = snprintf(out, out_size, "%.*s/%s", dl, dir, name);
        struct stat st;
        if (n > 0 && (size_t)n < out_size && stat(out, &st) == 0 && S_ISREG(st.st_mode)) {
            if (access(out, X_OK) == 0)
                return 0;
            rc = -EACCES;
        }
        if (!end)
            break;
        p = end + 1;
    }
    return rc;
}

/* Base environment plus the host's "K=V" entries (a host entry replaces one with its key). */
static char **build_env(const struct agent *a, json_t *env)
{
    size_t extra = json_is_array(env) ? json_array_size(env) : 0;
    char **envp = calloc(BASE_ENV_N + CA_ENV_MAX + extra + 1, sizeof(*envp));
    if (!envp)
        return NULL;
    size_t n = 0;
    for (size_t i = 0; i < BASE_ENV_N; i++)
        envp[n++] = (char *)base_env[i];
    for (size_t i = 0; i < a->n_ca_env; i++)
        envp[n++] = (char *)a->ca_env[i];
    for (size_t i = 0; i < extra; i++) {
        const char *kv = json_string_value(json_array_get(env, i));
        size_t klen = (size_t)(strchr(kv, '=') - kv) + 1;
        size_t j = 0;
        while (j < n && strncmp(envp[j], kv, klen) != 0)
            j++;
        envp[j] = (char *)kv;
        if (j == n)
            n++;
    }
    envp[n] = NULL;
    return envp;
}

static bool json_plain_string(const json_t *v)
{
    return json_is_string(v) && strlen(json_string_value(v)) == json_string_length(v);
}

static int pipe_pair(int p[2], bool parent_reads)
{
    if (pipe2(p, O_CLOEXEC) < 0)
        return -errno;
    int mine = parent_reads ? p[0] : p[1];
    int fl = fcntl(mine, F_GETFL);
    if (fl < 0 || fcntl(mine, F_SETFL, fl | O_NONBLOCK) < 0) {
        int err = errno;
        close(p[0]);
        close(p[1]);
        p[0] = p[1] = -1;
        return -err;
    }
    return 0;
}

/*
 * posix_spawn `path` with default signal dispositions, an empty signal mask
 * and `flags` (POSIX_SPAWN_SETPGROUP for a new process group, or
 * POSIX_SPAWN_SETSID for a new session), then open a pidfd for the child so
 * the loop learns of its end without signal handlers. On failure no child is
 * left running. 0 or -errno.
 */
static int spawn_watched(const char *path, const posix_spawn_file_actions_t *fa, short flags,
                         char *const argv[], char *const envp[], pid_t *pid_out, int *pidfd_out)
{
    posix_spawnattr_t at;
    sigset_t none, all;
    pid_t pid;
    int rc = -posix_spawnattr_init(&at);
    if (rc)
        return rc;
    sigemptyset(&none);
    sigfillset(&all);
    rc = -posix_spawnattr_setflags(&at, flags | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    if (!rc && (flags & POSIX_SPAWN_SETPGROUP))
        rc = -posix_spawnattr_setpgroup(&at, 0);
    if (!rc)
        rc = -posix_spawnattr_setsigmask(&at, &none);
    if (!rc)
        rc = -posix_spawnattr_setsigdefault(&at, &all);
    if (!rc)
        rc = -posix_spawn(&pid, path, fa, &at, argv, envp);
    posix_spawnattr_destroy(&at);
    if (rc)
        return rc;
    int pfd = pidfd_open(pid, 0);
    if (pfd < 0) {
        rc = -errno;
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        return rc;
    }
    *pid_out = pid;
    *pidfd_out = pfd;
    return 0;
}

/*
 * Start `argv` for exec `e` with posix_spawn (vfork-like, so starting is
 * cheap even from a big process); the child gets its own process group,
 * default signal dispositions and an empty signal mask. 0 or -errno.
 */
static int spawn_child(struct exec *e, const char *path, char *const *argv, char *const *envp,
                       const char *cwd)
{
    int in_p[2] = {-1, -1}, out_p[2] = {-1, -1}, err_p[2] = {-1, -1};
    posix_spawn_file_actions_t fa;
    bool fa_ok = false;
    int rc;

    if ((rc = pipe_pair(out_p, true)) || (rc = pipe_pair(err_p, true)))
        goto out;
    if (e->want_stdin && (rc = pipe_pair(in_p, false)))
        goto out;
    /* Bigger pipe: fewer wake-ups for bulk output; the default is fine when refused. */
    (void)fcntl(out_p[0], F_SETPIPE_SZ, PIPE_SIZE);
    if (e->want_stdin)
        (void)fcntl(in_p[1], F_SETPIPE_SZ, PIPE_SIZE);

    rc = -posix_spawn_file_actions_init(&fa);
    if (rc)
        goto out;
    fa_ok = true;
    if (e->want_stdin)
        rc = -posix_spawn_file_actions_adddup2(&fa, in_p[0], 0);
    else
        rc = -posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    if (!rc)
        rc = -posix_spawn_file_actions_adddup2(&fa, out_p[1], 1);
    if (!rc)
        rc = -posix_spawn_file_actions_adddup2(&fa, err_p[1], 2);
    if (!rc)
        rc = -posix_spawn_file_actions_addchdir_np(&fa, cwd);
    if (rc)
        goto out;

    pid_t pid;
    int pfd;
    rc = spawn_watched(path, &fa, POSIX_SPAWN_SETPGROUP, argv, envp, &pid, &pfd);
    if (rc)
        goto out;
    e->pid = pid;
    e->pidw.fd = pfd;
    e->out[0].fd = out_p[0];
    e->out[1].fd = err_p[0];
    out_p[0] = err_p[0] = -1;
    if (e->want_stdin) {
        e->in.fd = in_p[1];
        in_p[1] = -1;
    }
out:
    if (fa_ok)
        posix_spawn_file_actions_destroy(&fa);
    for (int i = 0; i < 2; i++) {
        if (in_p[i] >= 0)
            close(in_p[i]);
        if (out_p[i] >= 0)
            close(out_p[i]);
        if (err_p[i] >= 0)
            close(err_p[i]);
    }
    return rc;
}

/*
 * Start `argv` for `pty` exec `e` on a new PTY of cols x rows: the child
 * starts a new session and opens the slave by name without O_NOCTTY, which
 * makes it its controlling terminal, as stdin, stdout and stderr. The
 * master (non-blocking) becomes e->out[0] (reads) and e->in (writes, a
 * duplicate, so each has its own epoll registration). 0 or -errno.
 */
static int spawn_pty(struct exec *e, const char *path, char *const *argv, char *const *envp,
                     const char *cwd, uint16_t cols, uint16_t rows)
{
    int master = -1, slave = -1, wr = -1;
    char name[128];
    posix_spawn_file_actions_t fa;
    bool fa_ok = false;
    int rc;

    master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC | O_NONBLOCK);
    if (master < 0 || grantpt(master) < 0 || unlockpt(master) < 0) {
        rc = -errno;
        goto out;
    }
    rc = -ptsname_r(master, name, sizeof(name));
    if (rc)
        goto out;
    struct winsize ws = {.ws_row = rows, .ws_col = cols};
    if (ioctl(master, TIOCSWINSZ, &ws) < 0) {
        rc = -errno;
        goto out;
    }
    slave = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
    wr = slave < 0 ? -1 : fcntl(master, F_DUPFD_CLOEXEC, 0);
    if (slave < 0 || wr < 0) {
        rc = -errno;
        goto out;
    }
    rc = -posix_spawn_file_actions_init(&fa);
    if (rc)
        goto out;
    fa_ok = true;
    rc = -posix_spawn_file_actions_addopen(&fa, 0, name, O_RDWR, 0);
    if (!rc)
        rc = -posix_spawn_file_actions_adddup2(&fa, 0, 1);
    if (!rc)
        rc = -posix_spawn_file_actions_adddup2(&fa, 0, 2);
    if (!rc)
        rc = -posix_spawn_file_actions_addchdir_np(&fa, cwd);
    if (rc)
        goto out;
    pid_t pid;
    int pfd;
    rc = spawn_watched(path, &fa, POSIX_SPAWN_SETSID, argv, envp, &pid, &pfd);
    if (rc)
        goto out;
    e->pid = pid;
    e->pidw.fd = pfd;
    e->out[0].fd = master;
    e->in.fd = wr;
    e->slave_fd = slave;
    master = wr = slave = -1;
out:
    if (fa_ok)
        posix_spawn_file_actions_destroy(&fa);
    if (master >= 0)
        close(master);
    if (slave >= 0)
        close(slave);
    if (wr >= 0)
        close(wr);
    return rc;
}

/* Read a JSON "id" as u32. */
static bool get_id(json_t *m, uint32_t *id)
{
    json_t *v = json_object_get(m, "id");
    if (!json_is_integer(v))
        return false;
    json_int_t x = json_integer_value(v);
    if (x < 0 || x > (json_int_t)UINT32_MAX)
        return false;
    *id = (uint32_t)x;
    return true;
}

/* A `pty` cols/rows field: absent = `def`, else an integer 1..65535. */
static bool get_size(json_t *m, const char *key, uint16_t def, uint16_t *out)
{
    json_t *v = json_object_get(m, key);
    if (!v || json_is_null(v)) {
        *out = def;
        return true;
    }
    if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 65535)
        return false;
    *out = (uint16_t)json_integer_value(v);
    return true;
}

/* Open the terminal connection of `pty` exec `e` and queue its 8-byte header. 0 or -errno. */
static int term_open(struct agent *a, struct exec *e)
{
    int fd = a->opt.connect_terminal(a->opt.ctx, e->id);
    if (fd < 0)
        return fd;
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 || fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) {
        int err = errno;
        close(fd);
        return -err;
    }
    e->term.fd = fd;
    uint8_t h[TFRAME_HELLO_LEN];
    tframe_hello(h, e->id);
    return buf_append(&e->term_out.b, h, sizeof(h));
}

/* Handle `exec` (pty false) or `pty` (pty true). */
static int handle_exec(struct agent *a, json_t *m, bool pty)
{
    uint32_t id;
    char **envp = NULL;
    const char **argv = NULL;
    struct exec *e = NULL;
    char path[PATH_MAX];
    int rc = 0;

    if (!get_id(m, &id))
        return send_error(a, false, 0, "exec needs an integer id (0..4294967295)");
    if (find_exec(a, id))
        return send_error(a, true, id, "duplicate id: exec %u is still running", id);
    if (a->nexecs >= AGENT_MAX_EXECS)
        return send_error(a, true, id, "too many execs at once (limit %d)", AGENT_MAX_EXECS);
    json_t *jargv = json_object_get(m, "argv");
    if (!json_is_array(jargv) || json_array_size(jargv) == 0)
        return send_error(a, true, id, "exec argv must be a non-empty array of strings");
    size_t argc = json_array_size(jargv);
    for (size_t i = 0; i < argc; i++)
        if (!json_plain_string(json_array_get(jargv, i)))
            return send_error(a, true, id, "exec argv[%zu] is not a string without NUL", i);
    json_t *jenv = json_object_get(m, "env");
    if (jenv && !json_is_null(jenv)) {
        if (!json_is_array(jenv))
            return send_error(a, true, id, "exec env must be an array of \"K=V\" strings");
        for (size_t i = 0; i < json_array_size(jenv); i++) {
            json_t *kv = json_array_get(jenv, i);
            const char *s = json_string_value(kv);
            if (!json_plain_string(kv) || !strchr(s, '=') || s[0] == '=')
                return send_error(a, true, id, "exec env[%zu] is not a \"K=V\" string", i);
        }
    }
    const char *cwd = "/";
    json_t *jcwd = json_object_get(m, "cwd");
    if (jcwd && !json_is_null(jcwd)) {
        if (!json_plain_string(jcwd) || json_string_length(jcwd) == 0)
            return send_error(a, true, id, "exec cwd must be a non-empty string");
        cwd = json_string_value(jcwd);
    }
    bool want_stdin = false;
    json_t *jstdin = json_object_get(m, "stdin");
    if (jstdin && !json_is_null(jstdin)) {
        if (!json_is_boolean(jstdin))
            return send_error(a, true, id, "exec stdin must be true or false");
        want_stdin = json_is_true(jstdin);
    }
    uint16_t cols = 80, rows = 24;
    if (pty) {
        if (!a->opt.connect_terminal)
            return send_error(a, true, id, "this agent has no terminal channel");
        if (!get_size(m, "cols", 80, &cols) || !get_size(m, "rows", 24, &rows))
            return send_error(a, true, id, "pty cols and rows must be integers from 1 to 65535");
        want_stdin = false; /* input arrives on the terminal connection */
    }

    rc = -ENOMEM;
    argv = calloc(argc + 1, sizeof(*argv));
    envp = build_env(a, jenv);
    e = calloc(1, sizeof(*e));
    if (!argv || !envp || !e)
        goto out;
    for (size_t i = 0; i < argc; i++)
        argv[i] = json_string_value(json_array_get(jargv, i));
    e->id = id;
    e->want_stdin = want_stdin;
    e->out[0] = (struct watch){.kind = W_STDOUT, .fd = -1, .e = e};
    e->out[1] = (struct watch){.kind = W_STDERR, .fd = -1, .e = e};
    e->in = (struct watch){.kind = W_STDIN, .fd = -1, .e = e};
    e->pidw = (struct watch){.kind = W_PIDFD, .fd = -1, .e = e};
    e->term = (struct watch){.kind = W_TERM, .fd = -1, .e = e};
    e->pty = pty;
    e->slave_fd = -1;
    buf_init(&e->stdin_q.b, STDIN_CAP);
    buf_init(&e->term_out.b, OUT_CAP);
    buf_init(&e->term_in, TERM_IN_CAP);

    struct stat st;
    int cwd_err = stat(cwd, &st) < 0 ? errno : (S_ISDIR(st.st_mode) ? 0 : ENOTDIR);
    if (cwd_err) {
        rc = send_start_failure(a, id, cwd_err, cwd, !pty);
        goto out;
    }
    int prc = resolve_path(argv[0], envp, path, sizeof(path));
    if (!prc && pty) {
        int trc = term_open(a, e);
        if (trc) {
            LOG_WARN("event=terminal_connect id=%u err=\"%s\"", id, strerror(-trc));
            rc = send_json(a, json_pack("{s:s,s:I,s:i,s:s}", "type", "exit", "id", (json_int_t)id,
                                        "code", 126, "error",
                                        "cannot open the terminal connection (vsock port 5001)"));
            goto out;
        }
        prc = spawn_pty(e, path, (char *const *)argv, envp, cwd, cols, rows);
    } else if (!prc) {
        prc = spawn_child(e, path, (char *const *)argv, envp, cwd);
    }
    if (prc) {
        rc = send_start_failure(a, id, -prc, NULL, !pty);
        goto out;
    }
    e->next = a->execs;
    a->execs = e;
    a->nexecs++;
    json_t *started =
        json_pack("{s:s,s:I,s:i}", "type", "started", "id", (json_int_t)id, "pid", (int)e->pid);
    e = NULL;
    rc = send_json(a, started);
out:
    free(argv);
    free(envp);
    if (e)
        exec_free(a, e);
    return rc;
}

static int handle_signal(struct agent *a, json_t *m)
{
    uint32_t id;
    if (!get_id(m, &id))
        return send_error(a, false, 0, "signal needs an integer id");
    json_t *js = json_object_get(m, "signal");
    json_int_t sig = json_is_integer(js) ? json_integer_value(js) : -1;
    if (sig < 1 || sig > SIGRTMAX)
        return send_error(a, true, id, "signal must be an integer from 1 to %d", SIGRTMAX);
    struct exec *e = find_exec(a, id);
    if (!e)
        return send_error(a, true, id, "no running exec with id %u", id);
    if (kill(-e->pid, (int)sig) < 0 && errno != ESRCH)
        return send_error(a, true, id, "kill: %s", strerror(errno));
    return 0;
}

static bool hostname_ok(const char *s, size_t len)
{
    if (len == 0 || len > HOSTNAME_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '-' || c == '.';
        if (!ok)
            return false;
    }
    return true;
}

static int handle_hello(struct agent *a, json_t *m)
{
    json_t *p = json_object_get(m, "protocol");
    if (!json_is_integer(p) || json_integer_value(p) != FRAME_PROTOCOL_VERSION)
        LOG_WARN("event=host_hello problem=protocol_mismatch want=%d", FRAME_PROTOCOL_VERSION);
    json_t *t = json_object_get(m, "time_ns");
    if (json_is_integer(t) && a->opt.set_clock) {
        int rc = a->opt.set_clock(a->opt.ctx, (int64_t)json_integer_value(t));
        if (rc)
            LOG_WARN("event=set_clock err=\"%s\"", strerror(-rc));
    } else if (t && !json_is_integer(t)) {
        return send_error(a, false, 0, "hello time_ns must be an integer");
    }
    json_t *h = json_object_get(m, "hostname");
    if (h && !json_is_null(h)) {
        if (!json_is_string(h) || !hostname_ok(json_string_value(h), json_string_length(h)))
            return send_error(a, false, 0, "hello hostname must be 1-64 of [A-Za-z0-9.-]");
        if (a->opt.set_hostname) {
            int rc = a->opt.set_hostname(a->opt.ctx, json_string_value(h), json_string_length(h));
            if (rc)
                LOG_WARN("event=set_hostname err=\"%s\"", strerror(-rc));
        }
    }
    json_t *ca = json_object_get(m, "ca_pem");
    if (ca && !json_is_null(ca)) {
        if (!json_is_string(ca))
            return send_error(a, false, 0, "hello ca_pem must be a string");
        if (!a->opt.ca_root) {
            LOG_WARN("event=ca_install problem=no_ca_root action=ignored");
            return 0;
        }
        int rc = ca_install(a->opt.ca_root, json_string_value(ca), json_string_length(ca));
        if (rc) {
            LOG_WARN("event=ca_install err=\"%s\"", strerror(-rc));
            return send_error(a, false, 0, "hello ca_pem not installed: %s",
                              rc == -EINVAL ? "not a PEM certificate" : strerror(-rc));
        }
        a->n_ca_env = ca_env(a->opt.ca_root, a->ca_env);
    }
    return 0;
}

static int handle_shutdown(struct agent *a)
{
    for (struct exec *e = a->execs; e; e = e->next)
        if (!e->reaped || e->out[0].fd >= 0 || e->out[1].fd >= 0)
            kill(-e->pid, SIGKILL);
    a->shutting_down = true;
    return send_json(a, json_pack("{s:s}", "type", "bye"));
}

static int handle_json(struct agent *a, const struct frame *f)
{
    json_error_t jerr;
    json_t *m = json_loadb((const char *)f->payload.ptr, f->payload.len, 0, &jerr);
    int rc;
    if (!m) {
        char safe[80];
        safe_text(safe, sizeof(safe), jerr.text, strlen(jerr.text));
        return send_error(a, false, 0, "bad JSON: %s", safe);
    }
    const char *type = json_string_value(json_object_get(m, "type"));
    if (!json_is_object(m) || !type)
        rc = send_error(a, false, 0, "message must be a JSON object with a string \"type\"");
    else if (strcmp(type, "exec") == 0)
        rc = handle_exec(a, m, false);
    else if (strcmp(type, "pty") == 0)
        rc = handle_exec(a, m, true);
    else if (strcmp(type, "signal") == 0)
        rc = handle_signal(a, m);
    else if (strcmp(type, "ping") == 0)
        rc = send_json(
            a, json_pack("{s:s,s:O}", "type", "pong", "seq",
                         json_object_get(m, "seq") ? json_object_get(m, "seq") : json_null()));
    else if (strcmp(type, "hello") == 0)
        rc = handle_hello(a, m);
    else if (strcmp(type, "shutdown") == 0)
        rc = handle_shutdown(a);
    else {
        char safe[80];
        safe_text(safe, sizeof(safe), type, strlen(type));
        rc = send_error(a, false, 0, "unknown message type \"%s\"", safe);
    }
    json_decref(m);
    return rc;
}

static int stdin_feed(struct agent *a, struct exec *e, const uint8_t *p, size_t len);

static int handle_data(struct agent *a, const struct frame *f)
{
    if (f->stream != FRAME_STDIN)
        return send_error(a, true, f->exec_id, "the host may only send stdin (stream 0) data");
    struct exec *e = find_exec(a, f->exec_id);
    if (!e)
        return 0; /* the exec already ended (or never was): its stdin is dropped */
    if (!e->want_stdin)
        return send_error(a, true, e->id, "exec %u was started without stdin", e->id);
    if (e->stdin_eof)
        return send_error(a, true, e->id, "stdin of exec %u was already closed", e->id);
    if (f->data.len == 0) {
        e->stdin_eof = true;
        stdin_flush(a, e);
        return 0;
    }
    if (stdin_feed(a, e, f->data.ptr, f->data.len))
        return send_error(a, true, e->id, "stdin queue of exec %u is full", e->id);
    return 0;
}

/* Give p[0..len) to the child's stdin (or PTY master). 0, or -ENOBUFS when the queue is full. */
static int stdin_feed(struct agent *a, struct exec *e, const uint8_t *p, size_t len)
{
    if (e->in.fd < 0)
        return 0; /* the child closed its stdin */
    /* Write straight through when nothing is queued: saves a copy and a wake-up. */
    while (len && !q_len(&e->stdin_q)) {
        ssize_t n = write(e->in.fd, p, len);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && errno == EAGAIN) {
            break;
        } else {
            stdin_close(a, e);
            return 0;
        }
    }
    if (!len)
        return 0;
    q_make_room(&e->stdin_q, len);
    if (buf_append(&e->stdin_q.b, p, len))
        return -ENOBUFS;
    a->stdin_total += len;
    return 0;
}

static int handle_frame(struct agent *a, const struct frame *f)
{
    if (f->kind == FRAME_JSON)
        return handle_json(a, f);
    return handle_data(a, f);
}

static int read_sock(struct agent *a)
{
    size_t room = READ_CHUNK;
    if (a->in.cap - a->in.len < room)
        room = a->in.cap - a->in.len;
    int rc = buf_reserve(&a->in, room);
    if (rc)
        return rc;
    ssize_t n = read(a->sock.fd, a->in.data + a->in.len, room);
    if (n < 0)
        return (errno == EAGAIN || errno == EINTR) ? 0 : -errno;
    if (n == 0)
        return -ECONNRESET;
    a->in.len += (size_t)n;
    size_t off = 0;
    while (!a->shutting_down) {
        struct frame f;
        size_t used;
        int r = frame_parse(a->in.data + off, a->in.len - off, &f, &used);
        if (r == 0)
            break;
        if (r < 0) {
            LOG_ERR("event=protocol_error err=\"%s\" action=closing", strerror(-r));
            return r;
        }
        off += used;
        rc = handle_frame(a, &f);
        if (rc)
            return rc;
    }
    buf_consume(&a->in, a->shutting_down ? a->in.len : off);
    return 0;
}

/* Frame what a child wrote; stops at EAGAIN, EOF or the output threshold. */
static int read_pipe(struct agent *a, struct watch *w)
{
    uint8_t stream = w->kind == W_STDOUT ? FRAME_STDOUT : FRAME_STDERR;
    while (w->fd >= 0 && q_len(&a->out) <= AGENT_OUT_HIGH) {
        ssize_t n = read(w->fd, a->scratch, READ_CHUNK);
        if (n > 0) {
            q_make_room(&a->out, FRAME_HDR_LEN + FRAME_DATA_HDR_LEN + (size_t)n);
            int rc = frame_put_data(&a->out.b, w->e->id, stream, a->scratch, (size_t)n);
            if (rc)
                return rc;
            if ((size_t)n < READ_CHUNK)
                break; /* the pipe is most likely empty: skip the EAGAIN round trip */
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            break;
        watch_close(a, w); /* EOF (or a read error, which ends the stream the same way) */
    }
    return 0;
}

/* The PTY master is finished (EIO: no process holds the slave, or drained after reaping). */
static void pty_master_done(struct agent *a, struct exec *e)
{
    watch_close(a, &e->out[0]);
    stdin_close(a, e);
}

/* The terminal connection is gone (closed by the host, failed or broke the framing). */
static void term_hangup(struct agent *a, struct exec *e)
{
    watch_close(a, &e->term);
    q_clear(&e->term_out);
    if (!e->reaped)
        kill(-e->pid, SIGHUP);
}

/* Send queued master output; closes the connection once the master is done and all is sent. */
static void term_flush(struct agent *a, struct exec *e)
{
    while (e->term.fd >= 0 && q_len(&e->term_out)) {
        ssize_t n = send(e->term.fd, q_ptr(&e->term_out), q_len(&e->term_out), MSG_NOSIGNAL);
        if (n > 0) {
            q_drop(&e->term_out, (size_t)n);
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return;
        term_hangup(a, e);
        return;
    }
    if (e->term.fd >= 0 && e->out[0].fd < 0)
        watch_close(a, &e->term);
}

/* Move what the PTY master has into the terminal queue; after reaping, EAGAIN ends it too. */
static int read_pty(struct agent *a, struct exec *e)
{
    while (e->out[0].fd >= 0 && q_len(&e->term_out) <= PTY_OUT_HIGH) {
        ssize_t n = read(e->out[0].fd, a->scratch, READ_CHUNK);
        if (n > 0) {
            if (e->term.fd < 0)
                continue; /* nobody listens any more: discard */
            q_make_room(&e->term_out, (size_t)n);
            int rc = buf_append(&e->term_out.b, a->scratch, (size_t)n);
            if (rc)
                return rc;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN && !e->reaped)
            break;
        pty_master_done(a, e); /* EIO (slave closed by all), or drained after the child ended */
    }
    term_flush(a, e);
    return 0;
}

/* Frames from the terminal connection: input bytes for the master, window sizes. */
static void read_term(struct agent *a, struct exec *e)
{
    if (e->term.fd < 0)
        return;
    size_t room = e->term_in.cap - e->term_in.len;
    if (room > 64u * 1024u)
        room = 64u * 1024u;
    if (buf_reserve(&e->term_in, room)) {
        term_hangup(a, e);
        return;
    }
    ssize_t n = read(e->term.fd, e->term_in.data + e->term_in.len, room);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        term_hangup(a, e);
        return;
    }
    e->term_in.len += (size_t)n;
    size_t off = 0;
    for (;;) {
        struct tframe f;
        size_t used;
        int r = tframe_parse(e->term_in.data + off, e->term_in.len - off, &f, &used);
        if (r == 0)
            break;
        if (r < 0) {
            LOG_WARN("event=terminal_protocol_error id=%u err=\"%s\" action=hangup", e->id,
                     strerror(-r));
            term_hangup(a, e);
            e->term_in.len = 0;
            return;
        }
        off += used;
        if (f.kind == TFRAME_RESIZE) {
            struct winsize ws = {.ws_row = f.rows, .ws_col = f.cols};
            if (e->in.fd >= 0 && ioctl(e->in.fd, TIOCSWINSZ, &ws) < 0)
                LOG_WARN("event=terminal_resize id=%u err=\"%s\"", e->id, strerror(errno));
        } else if (stdin_feed(a, e, f.data, f.len)) {
            LOG_WARN("event=terminal_input_dropped id=%u bytes=%zu", e->id, f.len);
        }
    }
    buf_consume(&e->term_in, off);
}

static void reap(struct agent *a, struct exec *e)
{
    int st;
    pid_t r = waitpid(e->pid, &st, WNOHANG);
    if (r == 0)
        return;
    if (r < 0 && errno == EINTR)
        return;
    e->reaped = true;
    e->status = r == e->pid ? st : -1;
    watch_close(a, &e->pidw);
}

/* Send end-of-stream and `exit` for every exec whose streams ended and whose process was reaped. */
static int finish_execs(struct agent *a)
{
    struct exec **pp = &a->execs;
    while (*pp) {
        struct exec *e = *pp;
        if (e->pty && e->reaped && e->slave_fd >= 0) {
            close(e->slave_fd); /* the master now reads EIO once nobody else holds the slave */
            e->slave_fd = -1;
        }
        if (e->pty && e->reaped && e->out[0].fd >= 0 && q_len(&e->term_out) <= PTY_OUT_HIGH) {
            int prc = read_pty(a, e); /* drain what the child left, then end the terminal */
            if (prc)
                return prc;
        }
        if (!e->reaped || e->out[0].fd >= 0 || e->out[1].fd >= 0 || e->term.fd >= 0) {
            pp = &e->next;
            continue;
        }
        q_make_room(&a->out, 2 * (FRAME_HDR_LEN + FRAME_DATA_HDR_LEN));
        int rc = e->pty ? 0 : frame_put_data(&a->out.b, e->id, FRAME_STDOUT, NULL, 0);
        if (!rc && !e->pty)
            rc = frame_put_data(&a->out.b, e->id, FRAME_STDERR, NULL, 0);
        json_t *m;
        if (e->status < 0)
            m = json_pack("{s:s,s:I,s:i,s:s}", "type", "exit", "id", (json_int_t)e->id, "code", 255,
                          "error", "exit status lost");
        else if (WIFSIGNALED(e->status))
            m = json_pack("{s:s,s:I,s:i}", "type", "exit", "id", (json_int_t)e->id, "signal",
                          WTERMSIG(e->status));
        else
            m = json_pack("{s:s,s:I,s:i}", "type", "exit", "id", (json_int_t)e->id, "code",
                          WEXITSTATUS(e->status));
        if (!rc)
            rc = send_json(a, m);
        else
            json_decref(m);
        *pp = e->next;
        a->nexecs--;
        exec_free(a, e);
        if (rc)
            return rc;
    }
    return 0;
}

/* Write what is queued for the host until the socket is full. */
static int flush_out(struct agent *a)
{
    while (q_len(&a->out)) {
        ssize_t n = send(a->sock.fd, q_ptr(&a->out), q_len(&a->out), MSG_NOSIGNAL);
        if (n > 0) {
            q_drop(&a->out, (size_t)n);
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return 0;
        return -ECONNRESET;
    }
    return 0;
}

static int update_interests(struct agent *a)
{
    size_t outq = q_len(&a->out);
    bool sock_read =
        !a->shutting_down && a->stdin_total <= AGENT_STDIN_HIGH && outq <= OUT_SOCK_HIGH;
    int rc = watch_set(a, &a->sock, (sock_read ? EPOLLIN : 0) | (outq ? EPOLLOUT : 0));
    bool pipes = !a->shutting_down && outq <= AGENT_OUT_HIGH;
    for (struct exec *e = a->execs; e && !rc; e = e->next) {
        if (e->pty) {
            bool master = !a->shutting_down && q_len(&e->term_out) <= PTY_OUT_HIGH;
            bool term_in = !a->shutting_down && q_len(&e->stdin_q) <= AGENT_STDIN_HIGH;
            rc = watch_set(a, &e->out[0], master ? EPOLLIN : 0);
            if (!rc)
                rc = watch_set(a, &e->term,
                               (term_in ? EPOLLIN : 0) | (q_len(&e->term_out) ? EPOLLOUT : 0));
        } else {
            rc = watch_set(a, &e->out[0], pipes ? EPOLLIN : 0);
        }
        if (!rc)
            rc = watch_set(a, &e->out[1], pipes ? EPOLLIN : 0);
        if (!rc)
            rc = watch_set(a, &e->in, !a->shutting_down && q_len(&e->stdin_q) ? EPOLLOUT : 0);
        if (!rc)
            rc = watch_set(a, &e->pidw, a->shutting_down ? 0 : EPOLLIN);
    }
    return rc;
}

static int send_hello(struct agent *a)
{
    struct utsname u;
    struct timespec ts;
    if (uname(&u) < 0)
        snprintf(u.release, sizeof(u.release), "unknown");
    if (clock_gettime(CLOCK_BOOTTIME, &ts) < 0)
        clock_gettime(CLOCK_MONOTONIC, &ts);
    json_int_t boot_ms = (json_int_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    return send_json(a, json_pack("{s:s,s:i,s:s,s:s,s:I}", "type", "hello", "protocol",
                                  FRAME_PROTOCOL_VERSION, "agent", a->opt.version, "kernel",
                                  u.release, "boot_ms", boot_ms));
}

int agent_create(int fd, const struct agent_options *opt, struct agent **out)
{
    int rc = -ENOMEM;
    struct agent *a = calloc(1, sizeof(*a));
    if (!a)
        goto out;
    a->epfd = -1;
    a->sock = (struct watch){.kind = W_SOCK, .fd = -1};
    buf_init(&a->in, IN_CAP);
    buf_init(&a->out.b, OUT_CAP);
    if (opt)
        a->opt = *opt;
    if (!a->opt.version)
        a->opt.version = AGENT_VERSION;
    a->scratch = malloc(READ_CHUNK);
    if (!a->scratch)
        goto out;
    a->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (a->epfd < 0) {
        rc = -errno;
        goto out;
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 || fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) {
        rc = -errno;
        goto out;
    }
    a->sock.fd = fd;
    *out = a;
    a = NULL;
    rc = 0;
out:
    agent_destroy(a);
    return rc;
}

int agent_run(struct agent *a)
{
    struct sigaction sa = {.sa_handler = SIG_IGN};
    sigaction(SIGPIPE, &sa, NULL);
    int rc = send_hello(a);
    while (!rc) {
        rc = flush_out(a);
        if (a->shutting_down && (rc || !q_len(&a->out)))
            return 0; /* bye is out (or the host already left) */
        if (!rc)
            rc = update_interests(a);
        if (rc)
            break;
        struct epoll_event ev[64];
        int n = epoll_wait(a->epfd, ev, 64, a->shutting_down ? SHUTDOWN_FLUSH_MS : -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            rc = -errno;
            break;
        }
        if (n == 0 && a->shutting_down) {
            LOG_WARN("event=shutdown problem=bye_not_flushed");
            return 0;
        }
        for (int i = 0; i < n && !rc; i++) {
            struct watch *w = ev[i].data.ptr;
            switch (w->kind) {
            case W_SOCK:
                if (ev[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
                    rc = read_sock(a);
                break;
            case W_STDOUT:
            case W_STDERR:
                rc = w->e->pty ? read_pty(a, w->e) : read_pipe(a, w);
                break;
            case W_TERM:
                if (ev[i].events & EPOLLOUT)
                    term_flush(a, w->e);
                if (ev[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
                    read_term(a, w->e);
                break;
            case W_STDIN:
                stdin_flush(a, w->e);
                break;
            case W_PIDFD:
                reap(a, w->e);
                break;
            }
        }
        if (!rc && !a->shutting_down)
            rc = finish_execs(a);
    }
    if (rc == -ECONNRESET && a->shutting_down)
        return 0;
    if (rc == -ECONNRESET)
        LOG_WARN("event=host_closed");
    else if (rc != -EPROTO && rc != -EMSGSIZE)
        LOG_ERR("event=agent_failed err=\"%s\"", strerror(-rc));
    return rc;
}

void agent_destroy(struct agent *a)
{
    if (!a)
        return;
    for (struct exec *e = a->execs; e; e = e->next)
        if (!e->reaped || e->out[0].fd >= 0 || e->out[1].fd >= 0)
            kill(-e->pid, SIGKILL);
    while (a->execs) {
        struct exec *e = a->execs;
        a->execs = e->next;
        if (!e->reaped)
            while (waitpid(e->pid, NULL, 0) < 0 && errno == EINTR)
                ;
        exec_free(a, e);
    }
    if (a->sock.fd >= 0)
        close(a->sock.fd);
    if (a->epfd >= 0)
        close(a->epfd);
    buf_fini(&a->in);
    buf_fini(&a->out.b);
    free(a->scratch);
    free(a);
}
