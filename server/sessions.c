/*
 * The daemon's session manager (sessions.h). One loop thread runs every
 * session's vm_runner and network services; HTTP threads queue work items
 * (boot, stop, exec, kill) under the manager's mutex and wake the loop
 * through an eventfd, then wait on a condition variable where they need an
 * answer (exec). The mutex is recursive because runner callbacks, which
 * take it, may run from inside runner calls made with it held.
 *
 * A boot starts in two halves. The preparation (asset paths, the SHA-256 of
 * the kernel, initramfs and root image, the session directory: file I/O
 * that takes seconds for a new image) runs on a thread of the session's own
 * without the mutex, so the loop keeps serving every other session; when it
 * ends, the thread queues W_PREPPED and the loop, which owns every runner
 * and network service, does the rest (network, preset, the VM). One thread
 * per booting session rather than one shared worker: a new image being
 * hashed for one session does not hold back another whose assets are
 * cached, and booting sessions are few.
 */
#include "sessions.h"

#include "cli_run.h"
#include "log.h"
#include "loop.h"
#include "buf.h"
#include "netsvc.h"
#include "session_dir.h"
#include "tframe.h"
#include "vm_runner.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum work_kind {
    W_BOOT,
    W_PREPPED, /* a session's preparation ended: boot it or settle it */
    W_STOP,
    W_EXEC,
    W_KILL,
    W_TFLUSH,
    W_XSTART,  /* start an exec stream */
    W_XFEED,   /* hand a stream's queued stdin (and EOF) to the guest */
    W_XSIG,    /* signal a stream's command */
    W_XKILL,   /* SIGKILL it (timeout, or the client left) */
    W_XRESUME, /* a stream's reader caught up: maybe unpause the control connection */
};

/* A stream's output queue and stdin queue at most (hard limits; the flow control keeps them far
 * below). */
#define XS_Q_MAX (64u << 20)
#define XS_IN_MAX (8u << 20)
/* Bytes of stdin handed to the runner at once. */
#define XS_FEED_CHUNK (64u << 10)

/* Bytes of terminal output replayed to a new viewer, and queued per viewer at most. */
#define TERM_REPLAY (64u << 10)
#define TERM_VIEWER_MAX (4u << 20)
#define TERM_RESTARTS_MAX 10

/* One terminal WebSocket on a session's PTY (all fields under the manager's mutex). */
struct sessions_viewer {
    struct sessions *m;
    struct sess *s; /* NULL once the session is gone */
    struct buf out; /* PTY bytes not yet taken */
    bool closed;
    void (*wake)(void *opaque);
    void *opaque;
    struct sessions_viewer *next;
};

struct sess;
struct work;

/*
 * A session's preparation on its own thread. The thread owns p and why
 * until it links `done` into the work queue (under the manager's mutex);
 * the loop then joins it and takes p. rc and why are written by the thread
 * before it links `done` and read by the loop after.
 */
struct prep {
    struct sessions *m;
    struct sess *s;
    pthread_t th;
    struct cli_paths *p;
    struct work *done; /* the W_PREPPED item, made before the thread starts */
    int rc;
    char why[1024];
};

/*
 * One exec stream (all fields under the manager's mutex). Freed when both
 * the client detached and the manager let go of it (ended: unlinked from
 * its session).
 */
struct sessions_xstream {
    struct sessions *m;
    struct sess *s; /* NULL once ended */
    char **argv;
    size_t argc;
    char **env;
    size_t n_env;
    char *cwd;
    uint32_t id;
    bool running;   /* the runner took it (id valid) */
    bool ended;     /* exit or error queued; unlinked */
    bool detached;  /* the client is gone */
    bool paused;    /* counted in its session's xpaused */
    bool timed_out; /* killed at the caller's time limit */
    bool eof_req, eof_sent;
    bool overflow; /* output could not be queued (memory): reported after the rest */
    struct buf q;  /* events: [kind u8][len be32][payload] */
    struct buf in; /* stdin not yet handed to the runner */
    void (*wake)(void *opaque);
    void *opaque;
    struct sessions_xstream *next;
};

/* One exec in flight; freed by whoever sees it last (waiter, or loop when abandoned). */
struct xrec {
    struct sess *sess;
    char **argv;
    size_t argc;
    char **env;
    size_t n_env;
    char *cwd;
    void *in;
    size_t in_len;
    bool with_stdin;
    uint32_t id;
    bool running, done, abandoned;
    size_t out_cap, err_cap;
    struct sessions_exec_result res;
    struct xrec *next;
};

struct work {
    enum work_kind kind;
    struct sess *sess;
    struct xrec *x;
    struct sessions_xstream *xs;
    int sig;
    struct work *next;
};

struct sess {
    struct sessions *m;
    char id[SESSION_NAME_MAX + 1];
    char status[16];
    char reason[1024];
    long long created;
    struct timespec t0; /* when it became running */
    json_t *command;    /* array of strings, or NULL */
    char rootfs[4096];  /* as asked ("" default) */
    char preset[16];    /* network policy preset asked for ("" = as configured) */
    unsigned mem_mib, cpus;
    char log[4096];
    char dir[4096];
    int exit_code; /* the session command's status, -1 none */
    struct cli_run_opts o;
    char **o_cmd;
    const char **o_env;
    struct cli_paths *p;
    struct prep *prep; /* the preparation under way (status booting), or NULL */
    struct vm_runner *r;
    uint32_t main_id;
    bool has_main, stopping, purge;
    struct xrec *execs;
    /* The session's terminal: one PTY in the guest shared by every viewer. */
    bool has_pty;
    uint32_t pty_id;
    unsigned pty_restarts;
    int tfd;             /* its vsock connection, or -1 */
    struct buf tout;     /* frames towards the guest */
    struct buf ring;     /* the last TERM_REPLAY bytes of output */
    unsigned cols, rows; /* last size asked for */
    struct sessions_viewer *viewers;
    struct sessions_xstream *xstreams; /* exec streams of this session */
    unsigned xpaused;                  /* streams whose reader is behind: runner paused */
    struct sess *next;
};

struct sessions {
    char home[3900]; /* room for /sessions/<id> in a session's dir */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct loop *loop;
    int efd;
    pthread_t th;
    bool started;
    struct work *q, **qtail;
    struct sess *list;
    /* Test hook (sessions_set_prep_hook), under mu. */
    void (*prep_hook)(void *opaque, const char *id);
    void *prep_opaque;
};

static const struct vm_runner_ops runner_ops;

static long long now_s(void)
{
    return (long long)time(NULL);
}

/* ---- session.json ---------------------------------------------------------- */

static bool live(const struct sess *s)
{
    return !strcmp(s->status, "booting") || !strcmp(s->status, "running");
}

static void persist(struct sess *s)
{
    char path[4200], tmp[4210];
    if (!s->dir[0])
        return;
    json_t *j = json_pack("{s:s,s:I,s:s,s:s,s:s}", "name", s->id, "created", (json_int_t)s->created,
                          "status", s->status, "reason", s->reason, "log", s->log);
    if (!j)
        return;
    if (s->command)
        json_object_set(j, "command", s->command);
    if (s->exit_code >= 0)
        json_object_set_new(j, "exit_code", json_integer(s->exit_code));
    if (s->preset[0])
        json_object_set_new(j, "policy", json_string(s->preset));
    snprintf(path, sizeof(path), "%s/session.json", s->dir);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    if (json_dump_file(j, tmp, JSON_COMPACT) == 0 && rename(tmp, path) == 0) {
        json_decref(j);
        return;
    }
    LOG_WARN("event=session_json_write_failed id=%s", s->id);
    unlink(tmp);
    json_decref(j);
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path) ? -1 : 0;
}

static void purge_dir(const char *dir)
{
    if (dir[0] && nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS) != 0)
        LOG_WARN("event=session_purge_failed dir=%s err=%s", dir, strerror(errno));
}

/* ---- JSON view --------------------------------------------------------------- */

/* Totals from the session database when there is one. */
static void add_totals(json_t *j, const char *dir)
{
    char path[4200];
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    json_int_t req = 0, in = 0, outk = 0;
    double cost = 0;
    snprintf(path, sizeof(path), "%s/session.db", dir);
    if (dir[0] && access(path, R_OK) == 0 &&
        sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK) {
        sqlite3_busy_timeout(db, 200);
        if (sqlite3_prepare_v2(db,
                               "SELECT requests, input_tokens, output_tokens, cost_usd "
                               "FROM session_totals WHERE id = 1",
                               -1, &st, NULL) == SQLITE_OK &&
            sqlite3_step(st) == SQLITE_ROW) {
            req = sqlite3_column_int64(st, 0);
            in = sqlite3_column_int64(st, 1);
            outk = sqlite3_column_int64(st, 2);
            cost = sqlite3_column_double(st, 3);
        }
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    json_object_set_new(j, "requests", json_integer(req));
    json_object_set_new(j, "tokens", json_integer(in + outk));
    json_object_set_new(j, "input_tokens", json_integer(in));
    json_object_set_new(j, "output_tokens", json_integer(outk));
    json_object_set_new(j, "cost", json_real(cost));
}

/* The session's JSON; lock held. NULL on allocation failure. */
static json_t *view(const struct sess *s)
{
    double up = 0;
    if (!strcmp(s->status, "running")) {
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        up = (double)(t.tv_sec - s->t0.tv_sec) + (double)(t.tv_nsec - s->t0.tv_nsec) / 1e9;
    }
    json_t *j =
        json_pack("{s:s,s:s,s:s,s:I,s:f,s:s}", "id", s->id, "name", s->id, "status", s->status,
                  "created", (json_int_t)s->created, "uptime", up, "dir", s->dir);
    if (!j)
        return NULL;
    json_object_set_new(j, "command", s->command ? json_incref(s->command) : json_null());
    json_object_set_new(j, "policy", s->preset[0] ? json_string(s->preset) : json_null());
    if (s->reason[0])
        json_object_set_new(j, "reason", json_string(s->reason));
    if (s->log[0])
        json_object_set_new(j, "log", json_string(s->log));
    if (s->mem_mib)
        json_object_set_new(j, "mem", json_integer(s->mem_mib));
    if (s->cpus)
        json_object_set_new(j, "cpus", json_integer(s->cpus));
    if (s->exit_code >= 0)
        json_object_set_new(j, "exit_code", json_integer(s->exit_code));
    add_totals(j, s->dir);
    return j;
}

/* ---- allocation helpers ------------------------------------------------------ */

static void strv_free(char **v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        free(v[i]);
    free(v);
}

static int strv_dup(const char *const *src, size_t n, char ***out)
{
    char **v = calloc(n + 1, sizeof(*v));
    if (!v)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        v[i] = strdup(src[i]);
        if (!v[i]) {
            strv_free(v, n);
            return -ENOMEM;
        }
    }
    *out = v;
    return 0;
}

static void xrec_free(struct xrec *x)
{
    if (!x)
        return;
    strv_free(x->argv, x->argc);
    strv_free(x->env, x->n_env);
    free(x->cwd);
    free(x->in);
    sessions_exec_result_fini(&x->res);
    free(x);
}

static void sess_free(struct sess *s)
{
    if (!s)
        return;
    json_decref(s->command);
    strv_free(s->o_cmd, s->o.n_cmd);
    if (s->o_env) {
        for (size_t i = 0; i < s->o.n_env; i++)
            free((char *)s->o_env[i]);
        free(s->o_env);
    }
    free(s->p);
    buf_fini(&s->tout);
    buf_fini(&s->ring);
    free(s);
}

static struct sess *find(struct sessions *m, const char *id)
{
    for (struct sess *s = m->list; s; s = s->next)
        if (!strcmp(s->id, id))
            return s;
    return NULL;
}

static void unlink_sess(struct sessions *m, struct sess *s)
{
    for (struct sess **pp = &m->list; *pp; pp = &(*pp)->next)
        if (*pp == s) {
            *pp = s->next;
            return;
        }
}

/* Append a made work item (taking it) and wake the loop; lock held. */
static void queue_link(struct sessions *m, struct work *w)
{
    w->next = NULL;
    *m->qtail = w;
    m->qtail = &w->next;
    uint64_t one = 1;
    if (write(m->efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
        LOG_WARN("event=sessions_wake_failed err=%s", strerror(errno));
}

/* Queue a work item and wake the loop; lock held. */
static int queue_full(struct sessions *m, enum work_kind k, struct sess *s, struct xrec *x,
                      struct sessions_xstream *xs, int sig)
{
    struct work *w = calloc(1, sizeof(*w));
    if (!w)
        return -ENOMEM;
    w->kind = k;
    w->sess = s;
    w->x = x;
    w->xs = xs;
    w->sig = sig;
    queue_link(m, w);
    return 0;
}

static int queue(struct sessions *m, enum work_kind k, struct sess *s, struct xrec *x)
{
    return queue_full(m, k, s, x, NULL, 0);
}

/*
 * Forget queued work naming s, x or xs (each may be NULL: it matches nothing),
 * about to be freed; lock held.
 */
static void drop_work_of(struct sessions *m, struct sess *s, struct xrec *x,
                         struct sessions_xstream *xs)
{
    for (struct work **pp = &m->q; *pp;) {
        struct work *w = *pp;
        if ((s && w->sess == s) || (x && w->x == x) || (xs && w->xs == xs)) {
            *pp = w->next;
            free(w);
        } else {
            pp = &w->next;
        }
    }
    m->qtail = &m->q;
    while (*m->qtail)
        m->qtail = &(*m->qtail)->next;
}

/* ---- loop thread ---------------------------------------------------------- */

static void exec_finish(struct xrec *x)
{
    x->done = true;
    struct sess *s = x->sess;
    drop_work_of(s->m, NULL, x, NULL);
    for (struct xrec **pp = &s->execs; *pp; pp = &(*pp)->next)
        if (*pp == x) {
            *pp = x->next;
            break;
        }
    x->next = NULL;
    if (x->abandoned)
        xrec_free(x);
    else
        pthread_cond_broadcast(&s->m->cv);
}

/* Free a stream; queued work naming it must be gone (drop_work_of, lock held) or never made. */
static void xs_free(struct sessions_xstream *xs)
{
    strv_free(xs->argv, xs->argc);
    strv_free(xs->env, xs->n_env);
    free(xs->cwd);
    buf_fini(&xs->q);
    buf_fini(&xs->in);
    free(xs);
}

/* Queue an event record for the stream's reader; lock held. */
static int xs_push(struct sessions_xstream *xs, enum sessions_xs_kind kind, const void *p,
                   size_t len)
{
    uint8_t h[5];
    if (xs->detached)
        return 0;
    h[0] = (uint8_t)kind;
    be32_store(h + 1, (uint32_t)len);
    int rc = buf_reserve(&xs->q, sizeof(h) + len);
    if (rc == 0) {
        rc = buf_append(&xs->q, h, sizeof(h));
        if (rc == 0 && len)
            rc = buf_append(&xs->q, p, len);
    }
    if (rc)
        xs->overflow = true;
    if (xs->wake)
        xs->wake(xs->opaque);
    return rc;
}

/* Let go of a paused stream's share of the pause; lock held, loop thread. */
static void xs_unpause(struct sessions_xstream *xs)
{
    struct sess *s = xs->s;
    if (!xs->paused || !s)
        return;
    xs->paused = false;
    LOG_DEBUG("event=xs_resume id=%s queued=%zu", s->id, xs->q.len);
    if (s->xpaused && --s->xpaused == 0 && s->r)
        vm_runner_pause(s->r, false);
}

/* The stream is over: its last event queued (unless the client left), unlinked; lock held. */
static void xs_end(struct sessions_xstream *xs, enum sessions_xs_kind kind, int code,
                   const char *error)
{
    struct sess *s = xs->s;
    if (xs->ended)
        return;
    if (kind == SESSIONS_XS_EXIT) {
        uint8_t p[5];
        be32_store(p, (uint32_t)code);
        p[4] = xs->timed_out;
        size_t el = error ? strlen(error) : 0;
        uint8_t rec[5 + 256];
        memcpy(rec, p, 5);
        if (el > 255)
            el = 255;
        if (el)
            memcpy(rec + 5, error, el);
        (void)xs_push(xs, kind, rec, 5 + el);
    } else {
        (void)xs_push(xs, SESSIONS_XS_ERROR, error, strlen(error));
    }
    xs_unpause(xs);
    xs->ended = true;
    xs->running = false;
    if (s)
        for (struct sessions_xstream **pp = &s->xstreams; *pp; pp = &(*pp)->next)
            if (*pp == xs) {
                *pp = xs->next;
                break;
            }
    xs->next = NULL;
    xs->s = NULL;
    if (xs->detached) {
        drop_work_of(xs->m, NULL, NULL, xs);
        xs_free(xs);
    }
}

static struct sessions_xstream *xs_by_id(struct sess *s, uint32_t id)
{
    for (struct sessions_xstream *xs = s->xstreams; xs; xs = xs->next)
        if (xs->running && xs->id == id)
            return xs;
    return NULL;
}

/* Hand queued stdin to the runner while the control connection has room; lock held. */
static void xs_feed(struct sessions_xstream *xs)
{
    struct sess *s = xs->s;
    if (!s || !s->r || !xs->running)
        return;
    size_t before = xs->in.len;
    while (xs->in.len && vm_runner_pending(s->r) < CTL_CONN_HIGH_WATER) {
        size_t n = xs->in.len < XS_FEED_CHUNK ? xs->in.len : XS_FEED_CHUNK;
        if (vm_runner_send_stdin(s->r, xs->id, xs->in.data, n) < 0) {
            LOG_WARN("event=xs_stdin_failed id=%s", s->id);
            buf_consume(&xs->in, xs->in.len);
            break;
        }
        buf_consume(&xs->in, n);
    }
    if (!xs->in.len && xs->eof_req && !xs->eof_sent) {
        xs->eof_sent = true;
        if (vm_runner_send_stdin(s->r, xs->id, NULL, 0) < 0)
            LOG_WARN("event=xs_stdin_eof_failed id=%s", s->id);
    }
    if (xs->in.len < before && xs->wake)
        xs->wake(xs->opaque);
}

static void xs_start(struct sessions_xstream *xs)
{
    struct sess *s = xs->s;
    char why[300];
    int rc = -ENOTCONN;
    if (!s)
        return;
    if (xs->detached) {
        xs_end(xs, SESSIONS_XS_ERROR, 0, "the client left");
        return;
    }
    if (s->r && !s->stopping) {
        const char **env = calloc(xs->n_env + 1 + 64, sizeof(*env));
        size_t n = 0, ne = 0;
        const char *const *base = cli_exec_env(&s->o, s->p, &n);
        if (env) {
            for (size_t i = 0; i < n && ne < 64; i++)
                env[ne++] = base[i];
            for (size_t i = 0; i < xs->n_env; i++)
                env[ne++] = xs->env[i];
            rc = vm_runner_exec(s->r, (const char *const *)xs->argv, xs->argc, env, ne, xs->cwd,
                                true, &xs->id);
        } else {
            rc = -ENOMEM;
        }
        free(env);
    }
    if (rc) {
        snprintf(why, sizeof(why), "cannot start the command: %s", strerror(-rc));
        xs_end(xs, SESSIONS_XS_ERROR, 0, why);
        return;
    }
    xs->running = true;
    xs_feed(xs);
}

static struct xrec *exec_by_id(struct sess *s, uint32_t id)
{
    for (struct xrec *x = s->execs; x; x = x->next)
        if (x->running && x->id == id)
            return x;
    return NULL;
}

static void term_end(struct sess *s);

/* The VM is gone (or never came): settle the status, release everything; lock held. */
static void sess_ended(struct sess *s, bool failed, const char *msg)
{
    snprintf(s->status, sizeof(s->status), "%s", failed ? "failed" : "stopped");
    snprintf(s->reason, sizeof(s->reason), "%s", failed && msg ? msg : "");
    while (s->execs) {
        struct xrec *x = s->execs;
        snprintf(x->res.error, sizeof(x->res.error), "the session ended");
        x->res.exit_code = -1;
        exec_finish(x);
    }
    while (s->xstreams) {
        struct sessions_xstream *xs = s->xstreams;
        xs->paused = false; /* the runner is gone */
        xs_end(xs, SESSIONS_XS_ERROR, 0, "the session ended");
    }
    s->xpaused = 0;
    term_end(s);
    if (s->p) {
        cli_net_stop(s->p);
        cli_scratch_remove(s->p);
    }
    persist(s);
    LOG_INFO("event=session_%s id=%s", s->status, s->id);
    if (s->purge) {
        purge_dir(s->dir);
        drop_work_of(s->m, s, NULL, NULL);
        unlink_sess(s->m, s);
        sess_free(s);
    }
}

/* ---- the session's terminal (loop thread, lock held) ---- */

static void wake_viewers(struct sess *s)
{
    for (struct sessions_viewer *v = s->viewers; v; v = v->next)
        if (v->wake)
            v->wake(v->opaque);
}

static void term_close(struct sess *s)
{
    if (s->tfd >= 0) {
        loop_del(s->m->loop, s->tfd);
        close(s->tfd);
        s->tfd = -1;
    }
    buf_consume(&s->tout, s->tout.len);
}

/* The session is over: its viewers see the end. */
static void term_end(struct sess *s)
{
    term_close(s);
    s->has_pty = false;
    while (s->viewers) {
        struct sessions_viewer *v = s->viewers;
        s->viewers = v->next;
        v->next = NULL;
        v->s = NULL;
        v->closed = true;
        if (v->wake)
            v->wake(v->opaque);
    }
}

static void term_start(struct sess *s)
{
    static const char *const argv[] = {
        "/bin/sh", "-c", "if [ -x /bin/bash ]; then exec /bin/bash -l; fi; exec /bin/sh -l"};
    const char *env[80];
    size_t n = 0, ne = 0;
    const char *const *base = cli_exec_env(&s->o, s->p, &n);
    for (size_t i = 0; i < n && ne < 78; i++)
        env[ne++] = base[i];
    env[ne++] = "TERM=xterm-256color";
    if (!s->r || s->stopping || s->pty_restarts >= TERM_RESTARTS_MAX)
        return;
    s->pty_restarts++;
    if (vm_runner_pty(s->r, argv, 3, env, ne, NULL, s->cols ? s->cols : 80, s->rows ? s->rows : 24,
                      &s->pty_id) == 0)
        s->has_pty = true;
    else
        LOG_WARN("event=session_pty_failed id=%s", s->id);
}

static void term_flush(struct sess *s)
{
    while (s->tfd >= 0 && s->tout.len) {
        ssize_t n = write(s->tfd, s->tout.data, s->tout.len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            break;
        if (n <= 0) {
            term_close(s);
            return;
        }
        buf_consume(&s->tout, (size_t)n);
    }
    if (s->tfd >= 0 && loop_mod(s->m->loop, s->tfd, EPOLLIN | (s->tout.len ? EPOLLOUT : 0u)))
        LOG_WARN("event=term_mod_failed id=%s", s->id);
}

static void term_output(struct sess *s, const uint8_t *p, size_t n)
{
    if (buf_append(&s->ring, p, n) == 0 && s->ring.len > TERM_REPLAY)
        buf_consume(&s->ring, s->ring.len - TERM_REPLAY);
    for (struct sessions_viewer *v = s->viewers; v; v = v->next) {
        if (v->closed)
            continue;
        /* A viewer that does not keep up is dropped rather than holding memory. */
        if (buf_append(&v->out, p, n) < 0)
            v->closed = true;
    }
    wake_viewers(s);
}

static void term_io(void *opaque, uint32_t events)
{
    struct sess *s = opaque;
    pthread_mutex_lock(&s->m->mu);
    if (events & EPOLLOUT)
        term_flush(s);
    if (s->tfd >= 0 && (events & (EPOLLIN | EPOLLHUP | EPOLLERR))) {
        uint8_t b[16384];
        ssize_t n = read(s->tfd, b, sizeof(b));
        if (n > 0)
            term_output(s, b, (size_t)n);
        else if (n == 0 || (errno != EAGAIN && errno != EINTR))
            term_close(s);
    }
    pthread_mutex_unlock(&s->m->mu);
}

static void on_terminal(void *opaque, uint32_t id, int fd)
{
    struct sess *s = opaque;
    pthread_mutex_lock(&s->m->mu);
    if (!s->has_pty || id != s->pty_id || s->tfd >= 0 ||
        loop_add(s->m->loop, fd, EPOLLIN, term_io, s)) {
        close(fd);
    } else {
        s->tfd = fd;
        term_flush(s);
    }
    pthread_mutex_unlock(&s->m->mu);
}

static void on_ready(void *opaque, const struct ctl_hello *h, int64_t boot_ms)
{
    struct sess *s = opaque;
    (void)h;
    pthread_mutex_lock(&s->m->mu);
    clock_gettime(CLOCK_MONOTONIC, &s->t0);
    snprintf(s->status, sizeof(s->status), "running");
    snprintf(s->log, sizeof(s->log), "%s/vm.log", vm_runner_dir(s->r));
    LOG_INFO("event=session_running id=%s boot_ms=%lld", s->id, (long long)boot_ms);
    if (s->o.n_cmd && !s->stopping) {
        size_t n = 0;
        const char *const *env = cli_exec_env(&s->o, s->p, &n);
        if (vm_runner_exec(s->r, (const char *const *)s->o.cmd, s->o.n_cmd, env, n, NULL, false,
                           &s->main_id) == 0)
            s->has_main = true;
        else
            vm_runner_stop(s->r);
    }
    term_start(s);
    persist(s);
    pthread_mutex_unlock(&s->m->mu);
}

static void append(char **buf, size_t *len, size_t *cap, const uint8_t *p, size_t n, bool *cut)
{
    if (n > SESSIONS_EXEC_OUT_MAX - *len) {
        n = SESSIONS_EXEC_OUT_MAX - *len;
        *cut = true;
    }
    if (!n)
        return;
    if (*len + n + 1 > *cap) {
        size_t c = *cap ? *cap : 4096;
        while (c < *len + n + 1)
            c *= 2;
        char *b = realloc(*buf, c);
        if (!b) {
            *cut = true;
            return;
        }
        *buf = b;
        *cap = c;
    }
    memcpy(*buf + *len, p, n);
    *len += n;
    (*buf)[*len] = '\0';
}

static void on_output(void *opaque, uint32_t id, int stream, const uint8_t *p, size_t len)
{
    struct sess *s = opaque;
    pthread_mutex_lock(&s->m->mu);
    struct sessions_xstream *xs = len ? xs_by_id(s, id) : NULL;
    if (xs && !xs->detached) {
        (void)xs_push(xs, stream == 2 ? SESSIONS_XS_STDERR : SESSIONS_XS_STDOUT, p, len);
        /* A reader that falls behind holds the control connection rather than memory. */
        if (!xs->paused && xs->q.len > SESSIONS_XS_OUT_HIGH) {
            xs->paused = true;
            LOG_DEBUG("event=xs_pause id=%s queued=%zu", s->id, xs->q.len);
            if (s->xpaused++ == 0 && s->r)
                vm_runner_pause(s->r, true);
        }
    }
    struct xrec *x = exec_by_id(s, id);
    if (x && len) {
        if (stream == 2)
            append(&x->res.err, &x->res.err_len, &x->err_cap, p, len, &x->res.truncated);
        else
            append(&x->res.out, &x->res.out_len, &x->out_cap, p, len, &x->res.truncated);
    }
    pthread_mutex_unlock(&s->m->mu);
}

static void on_exit_cb(void *opaque, const struct ctl_exit *e)
{
    struct sess *s = opaque;
    pthread_mutex_lock(&s->m->mu);
    if (s->has_main && e->id == s->main_id) {
        s->exit_code = ctl_exit_status(e);
        s->has_main = false;
        s->stopping = true;
        vm_runner_stop(s->r);
    } else if (s->has_pty && e->id == s->pty_id) {
        /* The shell ended: the terminal lives as long as the session, so a new one starts. */
        static const char bye[] = "\r\n[capsem: the shell exited; a new one starts]\r\n";
        s->has_pty = false;
        term_close(s);
        term_output(s, (const uint8_t *)bye, sizeof(bye) - 1);
        term_start(s);
    } else if (xs_by_id(s, e->id)) {
        xs_end(xs_by_id(s, e->id), SESSIONS_XS_EXIT, ctl_exit_status(e), e->error);
    } else {
        struct xrec *x = exec_by_id(s, e->id);
        if (x) {
            x->res.exit_code = ctl_exit_status(e);
            snprintf(x->res.error, sizeof(x->res.error), "%s", e->error);
            exec_finish(x);
        }
    }
    pthread_mutex_unlock(&s->m->mu);
}

static void on_guest_error(void *opaque, uint32_t id, const char *msg)
{
    struct sess *s = opaque;
    pthread_mutex_lock(&s->m->mu);
    struct xrec *x = exec_by_id(s, id);
    struct sessions_xstream *xs = xs_by_id(s, id);
    if (x) {
        x->res.exit_code = -1;
        snprintf(x->res.error, sizeof(x->res.error), "%s", msg);
        exec_finish(x);
    } else if (xs) {
        xs_end(xs, SESSIONS_XS_ERROR, 0, msg);
    } else {
        LOG_WARN("event=guest_error id=%s msg=\"%s\"", s->id, msg);
    }
    pthread_mutex_unlock(&s->m->mu);
}

static void on_started(void *opaque, uint32_t id, int64_t pid)
{
    struct sess *s = opaque;
    pthread_mutex_lock(&s->m->mu);
    struct sessions_xstream *xs = xs_by_id(s, id);
    if (xs) {
        uint8_t p[8];
        be32_store(p, (uint32_t)((uint64_t)pid >> 32));
        be32_store(p + 4, (uint32_t)pid);
        (void)xs_push(xs, SESSIONS_XS_STARTED, p, sizeof(p));
    }
    pthread_mutex_unlock(&s->m->mu);
}

/* The control connection has room again: feed the streams' stdin. */
static void on_drained(void *opaque)
{
    struct sess *s = opaque;
    pthread_mutex_lock(&s->m->mu);
    for (struct sessions_xstream *xs = s->xstreams; xs; xs = xs->next)
        xs_feed(xs);
    pthread_mutex_unlock(&s->m->mu);
}

static void on_vsock(void *opaque, unsigned port, int fd)
{
    struct sess *s = opaque;
    cli_on_vsock(s->p, port, fd);
}

static void on_done(void *opaque, int err, const char *msg, const char *log_path)
{
    struct sess *s = opaque;
    pthread_mutex_lock(&s->m->mu);
    struct sessions *m = s->m;
    if (log_path)
        snprintf(s->log, sizeof(s->log), "%s", log_path);
    char why[512];
    /* msg lives in the runner: keep a copy before it goes. */
    snprintf(why, sizeof(why), "%s", msg ? msg : "");
    struct vm_runner *r = s->r;
    s->r = NULL;
    vm_runner_destroy(r);
    sess_ended(s, err != 0 && !s->stopping, why);
    pthread_cond_broadcast(&m->cv);
    pthread_mutex_unlock(&m->mu);
}

static const struct vm_runner_ops runner_ops = {
    .on_ready = on_ready,
    .on_started = on_started,
    .on_drained = on_drained,
    .on_output = on_output,
    .on_exit = on_exit_cb,
    .on_guest_error = on_guest_error,
    .on_vsock = on_vsock,
    .on_terminal = on_terminal,
    .on_done = on_done,
};

/* The preparing thread: paths, integrity, directory; no lock held while it works. */
static void *prep_main(void *arg)
{
    struct prep *pr = arg;
    struct sessions *m = pr->m;
    /* s->o and s->id stay as they are while the session is booting (sessions_start refuses a
     * live name), so they are read here without the lock. */
    struct sess *s = pr->s;
    int rc = cli_run_paths(&s->o, pr->p);
    if (rc)
        snprintf(pr->why, sizeof(pr->why),
                 "a path (CAPSEM_HOME, CAPSEM_ASSETS, CAPSEM_VMM or the root image) is too long");
    else
        rc = cli_session_prepare(&s->o, pr->p, pr->why, sizeof(pr->why));
    pthread_mutex_lock(&m->mu);
    void (*hook)(void *, const char *) = m->prep_hook;
    void *hook_opaque = m->prep_opaque;
    pthread_mutex_unlock(&m->mu);
    if (hook)
        hook(hook_opaque, s->id);
    pthread_mutex_lock(&m->mu);
    pr->rc = rc;
    queue_link(m, pr->done);
    pthread_mutex_unlock(&m->mu);
    return NULL;
}

/* Start session s's preparation on a thread of its own; lock held. */
static void do_boot(struct sessions *m, struct sess *s)
{
    if (s->stopping) {
        sess_ended(s, false, NULL);
        return;
    }
    struct prep *pr = calloc(1, sizeof(*pr));
    if (!pr || !(pr->p = calloc(1, sizeof(*pr->p))) || !(pr->done = calloc(1, sizeof(*pr->done)))) {
        if (pr) {
            free(pr->p);
            free(pr->done);
        }
        free(pr);
        sess_ended(s, true, "out of memory");
        return;
    }
    pr->m = m;
    pr->s = s;
    pr->done->kind = W_PREPPED;
    pr->done->sess = s;
    int rc = pthread_create(&pr->th, NULL, prep_main, pr);
    if (rc) {
        free(pr->p);
        free(pr->done);
        free(pr);
        char why[128];
        snprintf(why, sizeof(why), "cannot start the session's preparation: %s", strerror(rc));
        sess_ended(s, true, why);
        return;
    }
    s->prep = pr;
}

/*
 * Wait for s's preparing thread (it has queued its W_PREPPED or is about to)
 * and take its paths into s; the result into *rc and why. Lock held or not.
 */
static void prep_join(struct sess *s, int *rc, char *why, size_t whylen)
{
    struct prep *pr = s->prep;
    pthread_join(pr->th, NULL);
    s->prep = NULL;
    free(s->p);
    s->p = pr->p;
    *rc = pr->rc;
    snprintf(why, whylen, "%s", pr->why);
    free(pr);
}

/* The preparation ended (W_PREPPED): boot the VM the way `capsem run` does; lock held. */
static void boot_prepared(struct sessions *m, struct sess *s)
{
    char err[1024];
    int rc = 0;
    if (!s->prep)
        return;
    prep_join(s, &rc, err, sizeof(err));
    pthread_cond_broadcast(&m->cv);
    if (s->p->session_dir[0])
        snprintf(s->dir, sizeof(s->dir), "%s", s->p->session_dir);
    if (s->stopping) {
        /* Stopped (or purged) while it was prepared: no VM. */
        sess_ended(s, false, NULL);
        return;
    }
    if (rc) {
        LOG_WARN("event=session_prepare_failed id=%s reason=\"%s\"", s->id, err);
        sess_ended(s, true, err[0] ? err : "cannot prepare the session");
        return;
    }
    if (cli_net_start(m->loop, &s->o, s->p)) {
        sess_ended(s, true, "cannot start the network services (see the daemon's log)");
        return;
    }
    /* The session's own preset, in force before the guest can send anything. */
    if (s->preset[0] && s->p->net && netsvc_set_preset(s->p->net, s->preset, err, sizeof(err))) {
        sess_ended(s, true, err);
        return;
    }
    if (vm_runner_create(m->loop, &runner_ops, s, &s->r)) {
        sess_ended(s, true, "out of memory");
        return;
    }
    struct vm_runner_config cfg;
    cli_runner_config(&s->o, s->p, &cfg);
    cfg.terminal = true;
    if (vm_runner_start(s->r, &cfg, err, sizeof(err))) {
        vm_runner_destroy(s->r);
        s->r = NULL;
        sess_ended(s, true, err);
        return;
    }
    persist(s);
}

static void on_wake(void *opaque, uint32_t events)
{
    struct sessions *m = opaque;
    uint64_t v;
    (void)events;
    if (read(m->efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
        LOG_WARN("event=sessions_wake_read_failed err=%s", strerror(errno));
    pthread_mutex_lock(&m->mu);
    while (m->q) {
        struct work *w = m->q;
        m->q = w->next;
        if (!m->q)
            m->qtail = &m->q;
        struct sess *s = w->sess;
        struct xrec *x = w->x;
        struct sessions_xstream *xs = w->xs;
        int sig = w->sig;
        enum work_kind kind = w->kind;
        free(w);
        switch (kind) {
        case W_BOOT:
            do_boot(m, s);
            break;
        case W_PREPPED:
            boot_prepared(m, s);
            break;
        case W_STOP:
            if (s->r)
                vm_runner_stop(s->r);
            break;
        case W_EXEC: {
            int rc = -ENOTCONN;
            if (s->r) {
                const char **env = calloc(x->n_env + 1 + 64, sizeof(*env));
                size_t n = 0, ne = 0;
                const char *const *base = cli_exec_env(&s->o, s->p, &n);
                if (env) {
                    for (size_t i = 0; i < n && ne < 64; i++)
                        env[ne++] = base[i];
                    for (size_t i = 0; i < x->n_env; i++)
                        env[ne++] = x->env[i];
                    rc = vm_runner_exec(s->r, (const char *const *)x->argv, x->argc, env, ne,
                                        x->cwd, x->with_stdin, &x->id);
                } else {
                    rc = -ENOMEM;
                }
                free(env);
            }
            if (rc == 0) {
                x->running = true;
                if (x->with_stdin &&
                    ((x->in_len && vm_runner_send_stdin(s->r, x->id, x->in, x->in_len) < 0) ||
                     vm_runner_send_stdin(s->r, x->id, NULL, 0) < 0))
                    LOG_WARN("event=exec_stdin_failed id=%s", s->id);
            } else {
                x->res.exit_code = -1;
                snprintf(x->res.error, sizeof(x->res.error), "cannot start the command: %s",
                         strerror(-rc));
                exec_finish(x);
            }
            break;
        }
        case W_TFLUSH:
            term_flush(s);
            break;
        case W_XSTART:
            xs_start(xs);
            break;
        case W_XFEED:
            xs_feed(xs);
            break;
        case W_XSIG:
        case W_XKILL:
            if (kind == W_XKILL)
                sig = SIGKILL;
            if (xs->running && xs->s && xs->s->r && vm_runner_signal(xs->s->r, xs->id, sig) < 0)
                LOG_WARN("event=xs_signal_failed id=%s", xs->s->id);
            /* A client that left reads nothing more: let the session read on. */
            if (xs->detached)
                xs_unpause(xs);
            break;
        case W_XRESUME:
            if (xs->paused && xs->q.len < SESSIONS_XS_OUT_LOW)
                xs_unpause(xs);
            break;
        case W_KILL:
            /* x may be gone already (finished meanwhile): look it up. */
            for (struct sess *t = m->list; t; t = t->next)
                for (struct xrec *y = t->execs; y; y = y->next)
                    if (y == x && y->running && t->r && vm_runner_signal(t->r, y->id, SIGKILL) < 0)
                        LOG_WARN("event=exec_kill_failed id=%s", t->id);
            break;
        }
    }
    pthread_mutex_unlock(&m->mu);
}

static void *loop_main(void *arg)
{
    struct sessions *m = arg;
    int rc = loop_run(m->loop);
    if (rc)
        LOG_ERR("event=sessions_loop_failed err=%s", strerror(-rc));
    return NULL;
}

/* ---- public ---------------------------------------------------------------- */

/* A session found on disk: listed as stopped (or failed, as it was). */
static void load_one(struct sessions *m, const char *id)
{
    char path[4200];
    struct stat st;
    if (!session_name_ok(id) || find(m, id))
        return;
    struct sess *s = calloc(1, sizeof(*s));
    if (!s)
        return;
    s->m = m;
    s->tfd = -1;
    buf_init(&s->tout, 2 * TERM_VIEWER_MAX);
    buf_init(&s->ring, 2 * TERM_REPLAY);
    s->exit_code = -1;
    snprintf(s->id, sizeof(s->id), "%.63s", id); /* session_name_ok: at most 63 */
    snprintf(s->dir, sizeof(s->dir), "%s/sessions/%.63s", m->home, id);
    snprintf(s->status, sizeof(s->status), "stopped");
    if (stat(s->dir, &st) == 0)
        s->created = (long long)st.st_mtime;
    snprintf(path, sizeof(path), "%s/session.json", s->dir);
    json_t *j = json_load_file(path, 0, NULL);
    if (json_is_object(j)) {
        json_t *v;
        if (json_is_integer(v = json_object_get(j, "created")))
            s->created = json_integer_value(v);
        if (json_is_array(v = json_object_get(j, "command")))
            s->command = json_incref(v);
        if (json_is_string(v = json_object_get(j, "log")))
            snprintf(s->log, sizeof(s->log), "%s", json_string_value(v));
        if (json_is_integer(v = json_object_get(j, "exit_code")))
            s->exit_code = (int)json_integer_value(v);
        if (json_is_string(v = json_object_get(j, "policy")))
            snprintf(s->preset, sizeof(s->preset), "%.15s", json_string_value(v));
        if (json_is_string(v = json_object_get(j, "status")) &&
            !strcmp(json_string_value(v), "failed")) {
            snprintf(s->status, sizeof(s->status), "failed");
            if (json_is_string(v = json_object_get(j, "reason")))
                snprintf(s->reason, sizeof(s->reason), "%s", json_string_value(v));
        }
    }
    json_decref(j);
    /* Oldest first. */
    struct sess **pp = &m->list;
    while (*pp && (*pp)->created <= s->created)
        pp = &(*pp)->next;
    s->next = *pp;
    *pp = s;
}

int sessions_create(const char *home, struct sessions **out)
{
    int rc = 0;
    struct sessions *m = calloc(1, sizeof(*m));
    if (!m)
        return -ENOMEM;
    m->efd = -1;
    m->qtail = &m->q;
    if (strlen(home) >= sizeof(m->home)) {
        free(m);
        return -ENAMETOOLONG;
    }
    snprintf(m->home, sizeof(m->home), "%s", home);
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&m->mu, &a);
    pthread_mutexattr_destroy(&a);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&m->cv, &ca);
    pthread_condattr_destroy(&ca);

    char dir[4200];
    snprintf(dir, sizeof(dir), "%s/sessions", home);
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)))
            if (e->d_name[0] != '.')
                load_one(m, e->d_name);
        closedir(d);
    }
    rc = loop_create(&m->loop);
    if (rc)
        goto out;
    m->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (m->efd < 0) {
        rc = -errno;
        goto out;
    }
    rc = loop_add(m->loop, m->efd, EPOLLIN, on_wake, m);
    if (rc)
        goto out;
    /* The VMMs must not inherit a blocked SIGTERM/SIGINT from this thread (vm_runner unblocks
     * for its child); the loop thread gets the caller's mask. */
    rc = -pthread_create(&m->th, NULL, loop_main, m);
    if (rc)
        goto out;
    m->started = true;
    *out = m;
    return 0;
out:
    sessions_destroy(m);
    return rc;
}

static bool any_live(struct sessions *m)
{
    for (struct sess *s = m->list; s; s = s->next)
        if (s->r || s->prep)
            return true;
    return false;
}

void sessions_destroy(struct sessions *m)
{
    if (!m)
        return;
    if (m->started) {
        pthread_mutex_lock(&m->mu);
        for (struct sess *s = m->list; s; s = s->next)
            if (live(s)) {
                s->stopping = true;
                if (queue(m, W_STOP, s, NULL) < 0)
                    LOG_WARN("event=session_stop_queue_failed id=%s", s->id);
            }
        struct timespec dl;
        clock_gettime(CLOCK_MONOTONIC, &dl);
        dl.tv_sec += 30;
        while (any_live(m) && pthread_cond_timedwait(&m->cv, &m->mu, &dl) == 0)
            ;
        pthread_mutex_unlock(&m->mu);
        loop_stop(m->loop);
        pthread_join(m->th, NULL);
    }
    /* The loop is stopped: whatever is left is torn down here. A preparation still running
     * (hashing a large image past the wait) is waited for: its thread uses the session and
     * links its W_PREPPED into the queue, freed below. */
    for (struct sess *s = m->list; s; s = s->next)
        if (s->prep) {
            int rc = 0;
            char why[1024];
            prep_join(s, &rc, why, sizeof(why));
            s->stopping = true;
            s->purge = false;
            sess_ended(s, false, NULL);
        }
    while (m->q) {
        struct work *w = m->q;
        m->q = w->next;
        free(w);
    }
    while (m->list) {
        struct sess *s = m->list;
        m->list = s->next;
        if (s->r) {
            vm_runner_destroy(s->r);
            s->r = NULL;
            s->purge = false;
            sess_ended(s, false, NULL);
        }
        sess_free(s);
    }
    if (m->efd >= 0) {
        if (m->loop)
            loop_del(m->loop, m->efd);
        close(m->efd);
    }
    loop_destroy(m->loop);
    pthread_cond_destroy(&m->cv);
    pthread_mutex_destroy(&m->mu);
    free(m);
}

int sessions_start(struct sessions *m, const struct sessions_spec *spec, json_t **out, char *err,
                   size_t errlen)
{
    char id[SESSION_NAME_MAX + 1];
    int rc = 0;
    struct sess *s = NULL;
    if (spec->name) {
        if (!session_name_ok(spec->name)) {
            snprintf(err, errlen,
                     "name: 1-63 characters of a-z, 0-9 and '-', not starting or "
                     "ending with '-'");
            return -EINVAL;
        }
        snprintf(id, sizeof(id), "%s", spec->name);
    } else {
        char r[SESSION_ID_HEX + 1];
        if (session_id_random(r)) {
            snprintf(err, errlen, "cannot make a session id");
            return -EIO;
        }
        snprintf(id, sizeof(id), "%s", r);
    }
    pthread_mutex_lock(&m->mu);
    s = find(m, id);
    if (s && (live(s) || s->r || s->purge)) {
        snprintf(err, errlen, "name: session '%s' is already running", id);
        rc = -EEXIST;
        s = NULL;
        goto out;
    }
    bool fresh = !s;
    if (fresh) {
        s = calloc(1, sizeof(*s));
        if (!s) {
            rc = -ENOMEM;
            goto nomem;
        }
        s->m = m;
        s->tfd = -1;
        buf_init(&s->tout, 2 * TERM_VIEWER_MAX);
        buf_init(&s->ring, 2 * TERM_REPLAY);
        snprintf(s->id, sizeof(s->id), "%s", id);
        snprintf(s->dir, sizeof(s->dir), "%s/sessions/%s", m->home, id);
    } else {
        /* A stopped session of that name boots again on its own directory. */
        json_decref(s->command);
        s->command = NULL;
        strv_free(s->o_cmd, s->o.n_cmd);
        s->o_cmd = NULL;
        if (s->o_env) {
            for (size_t i = 0; i < s->o.n_env; i++)
                free((char *)s->o_env[i]);
            free(s->o_env);
            s->o_env = NULL;
        }
        free(s->p);
        s->p = NULL;
        s->log[0] = s->reason[0] = '\0';
        s->has_main = s->stopping = s->has_pty = false;
        s->pty_restarts = 0;
        buf_fini(&s->ring);
        buf_init(&s->ring, 2 * TERM_REPLAY);
    }
    s->created = now_s();
    s->exit_code = -1;
    s->mem_mib = spec->mem_mib ? spec->mem_mib : CLI_RUN_DEFAULT_MEM_MIB;
    s->cpus = spec->cpus ? spec->cpus : CLI_RUN_DEFAULT_CPUS;
    snprintf(s->status, sizeof(s->status), "booting");
    snprintf(s->rootfs, sizeof(s->rootfs), "%s", spec->rootfs ? spec->rootfs : "");
    snprintf(s->preset, sizeof(s->preset), "%.15s", spec->policy ? spec->policy : "");
    memset(&s->o, 0, sizeof(s->o));
    s->o.mem_mib = s->mem_mib;
    s->o.cpus = s->cpus;
    s->o.boot_timeout_s = CLI_RUN_DEFAULT_BOOT_TIMEOUT_S;
    s->o.rootfs = s->rootfs[0] ? s->rootfs : NULL;
    s->o.name = s->id;
    s->o.keep_logs = true;
    s->o.no_net = spec->no_net;
    /* Test beds boot stand-in assets (as `capsem run --unverified-assets`); only the daemon's
     * own environment can ask for it, like CAPSEM_VMM. */
    const char *unv = getenv("CAPSEM_TEST_UNVERIFIED_ASSETS");
    s->o.unverified_assets = unv && !strcmp(unv, "1");
    if (spec->argc) {
        if (strv_dup(spec->argv, spec->argc, &s->o_cmd))
            goto nomem;
        s->o.cmd = s->o_cmd;
        s->o.n_cmd = spec->argc;
        s->command = json_array();
        for (size_t i = 0; s->command && i < spec->argc; i++)
            json_array_append_new(s->command, json_string(spec->argv[i]));
    }
    if (spec->n_env) {
        char **e = NULL;
        if (strv_dup(spec->env, spec->n_env, &e))
            goto nomem;
        s->o_env = (const char **)e;
        s->o.env = s->o_env;
        s->o.n_env = spec->n_env;
    }
    if (fresh) {
        s->next = NULL;
        struct sess **pp = &m->list;
        while (*pp)
            pp = &(*pp)->next;
        *pp = s;
    }
    rc = queue(m, W_BOOT, s, NULL);
    if (rc)
        goto nomem_linked;
    LOG_INFO("event=session_booting id=%s", s->id);
    *out = view(s);
    if (!*out)
        rc = -ENOMEM;
    goto out;
nomem_linked:
    snprintf(s->status, sizeof(s->status), "failed");
    snprintf(s->reason, sizeof(s->reason), "out of memory");
    snprintf(err, errlen, "out of memory");
    goto out;
nomem:
    snprintf(err, errlen, "out of memory");
    rc = -ENOMEM;
    if (s && fresh)
        sess_free(s);
    else if (s)
        snprintf(s->status, sizeof(s->status), "failed");
out:
    pthread_mutex_unlock(&m->mu);
    return rc;
}

json_t *sessions_list(struct sessions *m)
{
    json_t *a = json_array();
    if (!a)
        return NULL;
    pthread_mutex_lock(&m->mu);
    for (struct sess *s = m->list; s; s = s->next)
        if (json_array_append_new(a, view(s))) {
            json_decref(a);
            a = NULL;
            break;
        }
    pthread_mutex_unlock(&m->mu);
    return a;
}

int sessions_get(struct sessions *m, const char *id, json_t **out)
{
    int rc = -ENOENT;
    pthread_mutex_lock(&m->mu);
    struct sess *s = find(m, id);
    if (s) {
        *out = view(s);
        rc = *out ? 0 : -ENOMEM;
    }
    pthread_mutex_unlock(&m->mu);
    return rc;
}

int sessions_stop(struct sessions *m, const char *id, bool purge, json_t **out)
{
    int rc = 0;
    pthread_mutex_lock(&m->mu);
    struct sess *s = find(m, id);
    if (!s) {
        rc = -ENOENT;
        goto out;
    }
    if (s->r || !strcmp(s->status, "booting")) {
        s->stopping = true;
        s->purge = s->purge || purge;
        rc = queue(m, W_STOP, s, NULL);
        if (out && rc == 0) {
            *out = view(s);
            if (*out)
                json_object_set_new(*out, "status", json_string("stopping"));
        }
        goto out;
    }
    if (out)
        *out = view(s);
    if (purge) {
        purge_dir(s->dir);
        unlink_sess(m, s);
        sess_free(s);
        if (out && *out)
            json_object_set_new(*out, "status", json_string("purged"));
    }
out:
    pthread_mutex_unlock(&m->mu);
    return rc;
}

int sessions_exec_run(struct sessions *m, const char *id, const struct sessions_exec *xs,
                      struct sessions_exec_result *res, char *err, size_t errlen)
{
    int rc = 0;
    struct xrec *x = calloc(1, sizeof(*x));
    if (!x || strv_dup(xs->argv, xs->argc, &x->argv) || strv_dup(xs->env, xs->n_env, &x->env) ||
        (xs->cwd && !(x->cwd = strdup(xs->cwd)))) {
        if (x)
            x->argc = xs->argc, x->n_env = xs->n_env;
        xrec_free(x);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    x->argc = xs->argc;
    x->n_env = xs->n_env;
    if (xs->stdin_data) {
        x->with_stdin = true;
        x->in = malloc(xs->stdin_len ? xs->stdin_len : 1);
        if (!x->in) {
            xrec_free(x);
            snprintf(err, errlen, "out of memory");
            return -ENOMEM;
        }
        memcpy(x->in, xs->stdin_data, xs->stdin_len);
        x->in_len = xs->stdin_len;
    }
    unsigned t = xs->timeout_s ? xs->timeout_s : SESSIONS_EXEC_TIMEOUT_S;
    pthread_mutex_lock(&m->mu);
    struct sess *s = find(m, id);
    if (!s) {
        rc = -ENOENT;
        snprintf(err, errlen, "no such session");
        goto fail;
    }
    if (strcmp(s->status, "running") || s->stopping || !s->r) {
        rc = -EAGAIN;
        snprintf(err, errlen, "session '%s' is %s, not running", s->id,
                 s->stopping ? "stopping" : s->status);
        goto fail;
    }
    x->sess = s;
    x->next = s->execs;
    s->execs = x;
    rc = queue(m, W_EXEC, s, x);
    if (rc) {
        s->execs = x->next;
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    struct timespec dl;
    clock_gettime(CLOCK_MONOTONIC, &dl);
    dl.tv_sec += t;
    while (!x->done && pthread_cond_timedwait(&m->cv, &m->mu, &dl) != ETIMEDOUT)
        ;
    if (!x->done) {
        x->res.timed_out = true;
        if (queue(m, W_KILL, s, x) == 0) {
            dl.tv_sec += 5;
            while (!x->done && pthread_cond_timedwait(&m->cv, &m->mu, &dl) != ETIMEDOUT)
                ;
        }
    }
    if (!x->done) {
        /* Still not over: hand what came so far, the loop frees x when it ends. */
        x->abandoned = true;
        *res = x->res;
        res->out = x->res.out ? strdup(x->res.out) : NULL;
        res->err = x->res.err ? strdup(x->res.err) : NULL;
        res->out_len = res->out ? x->res.out_len : 0;
        res->err_len = res->err ? x->res.err_len : 0;
        res->exit_code = -1;
        pthread_mutex_unlock(&m->mu);
        return 0;
    }
    bool timed_out = x->res.timed_out;
    *res = x->res;
    res->timed_out = timed_out;
    memset(&x->res, 0, sizeof(x->res));
    pthread_mutex_unlock(&m->mu);
    xrec_free(x);
    return 0;
fail:
    pthread_mutex_unlock(&m->mu);
    xrec_free(x);
    return rc;
}

void sessions_exec_result_fini(struct sessions_exec_result *res)
{
    free(res->out);
    free(res->err);
    res->out = res->err = NULL;
    res->out_len = res->err_len = 0;
}

void sessions_set_prep_hook(struct sessions *m, void (*hook)(void *opaque, const char *id),
                            void *opaque)
{
    pthread_mutex_lock(&m->mu);
    m->prep_hook = hook;
    m->prep_opaque = opaque;
    pthread_mutex_unlock(&m->mu);
}

int sessions_log_path(struct sessions *m, const char *id, char *buf, size_t len)
{
    int rc = -ENOENT;
    pthread_mutex_lock(&m->mu);
    struct sess *s = find(m, id);
    if (s && s->log[0]) {
        snprintf(buf, len, "%s", s->log);
        rc = 0;
    }
    pthread_mutex_unlock(&m->mu);
    return rc;
}

/* ---- terminal viewers (any thread) ---- */

int sessions_term_attach(struct sessions *m, const char *id, void (*wake)(void *opaque),
                         void *opaque, struct sessions_viewer **out)
{
    int rc = 0;
    struct sessions_viewer *v = calloc(1, sizeof(*v));
    if (!v)
        return -ENOMEM;
    buf_init(&v->out, TERM_VIEWER_MAX);
    v->m = m;
    v->wake = wake;
    v->opaque = opaque;
    pthread_mutex_lock(&m->mu);
    struct sess *s = find(m, id);
    if (!s) {
        rc = -ENOENT;
    } else if (!s->r || strcmp(s->status, "running")) {
        rc = -EAGAIN;
    } else if (buf_append(&v->out, s->ring.data, s->ring.len) < 0) {
        rc = -ENOMEM;
    } else {
        v->s = s;
        v->next = s->viewers;
        s->viewers = v;
    }
    pthread_mutex_unlock(&m->mu);
    if (rc) {
        buf_fini(&v->out);
        free(v);
        return rc;
    }
    *out = v;
    return 0;
}

size_t sessions_term_take(struct sessions_viewer *v, void *buf, size_t max, bool *closed)
{
    pthread_mutex_lock(&v->m->mu);
    size_t n = v->out.len < max ? v->out.len : max;
    if (n > 0) /* an empty buffer may have no storage yet (memcpy from NULL) */
        memcpy(buf, v->out.data, n);
    buf_consume(&v->out, n);
    *closed = v->closed && v->out.len == 0;
    pthread_mutex_unlock(&v->m->mu);
    return n;
}

bool sessions_term_pending(struct sessions_viewer *v)
{
    pthread_mutex_lock(&v->m->mu);
    bool p = v->out.len > 0 || v->closed;
    pthread_mutex_unlock(&v->m->mu);
    return p;
}

/* Queue frames for the guest and have the loop write them; lock held. */
static int term_send(struct sessions_viewer *v, const void *p, size_t len, int cols, int rows)
{
    struct sess *s = v->s;
    if (!s || v->closed)
        return -EPIPE;
    int rc = 0;
    if (p) {
        const uint8_t *b = p;
        while (len && rc == 0) {
            size_t n = len < TFRAME_MAX_PAYLOAD ? len : TFRAME_MAX_PAYLOAD;
            rc = s->tout.len > TERM_VIEWER_MAX ? -ENOBUFS : tframe_put_data(&s->tout, b, n);
            b += n;
            len -= n;
        }
    } else {
        s->cols = (unsigned)cols;
        s->rows = (unsigned)rows;
        rc = tframe_put_resize(&s->tout, (uint16_t)cols, (uint16_t)rows);
    }
    if (rc == 0)
        rc = queue(v->m, W_TFLUSH, s, NULL);
    return rc;
}

int sessions_term_input(struct sessions_viewer *v, const void *p, size_t len)
{
    if (!len)
        return 0;
    pthread_mutex_lock(&v->m->mu);
    int rc = term_send(v, p, len, 0, 0);
    pthread_mutex_unlock(&v->m->mu);
    return rc;
}

int sessions_term_resize(struct sessions_viewer *v, unsigned cols, unsigned rows)
{
    if (cols < 1 || rows < 1 || cols > 65535 || rows > 65535)
        return -EINVAL;
    pthread_mutex_lock(&v->m->mu);
    int rc = term_send(v, NULL, 0, (int)cols, (int)rows);
    pthread_mutex_unlock(&v->m->mu);
    return rc;
}

void sessions_term_detach(struct sessions_viewer *v)
{
    if (!v)
        return;
    pthread_mutex_lock(&v->m->mu);
    if (v->s)
        for (struct sessions_viewer **pp = &v->s->viewers; *pp; pp = &(*pp)->next)
            if (*pp == v) {
                *pp = v->next;
                break;
            }
    pthread_mutex_unlock(&v->m->mu);
    buf_fini(&v->out);
    free(v);
}

void sessions_cancel_execs(struct sessions *m)
{
    if (!m)
        return;
    pthread_mutex_lock(&m->mu);
    for (struct sess *s = m->list; s; s = s->next)
        while (s->execs) {
            struct xrec *x = s->execs;
            snprintf(x->res.error, sizeof(x->res.error), "the daemon is stopping");
            x->res.exit_code = -1;
            exec_finish(x);
        }
    pthread_cond_broadcast(&m->cv);
    pthread_mutex_unlock(&m->mu);
}

/* ---- exec streams (any thread) ---- */

int sessions_xs_start(struct sessions *m, const char *id, const struct sessions_exec *x,
                      void (*wake)(void *opaque), void *opaque, struct sessions_xstream **out,
                      char *err, size_t errlen)
{
    int rc = 0;
    struct sessions_xstream *xs = calloc(1, sizeof(*xs));
    if (!xs) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    xs->m = m;
    xs->wake = wake;
    xs->opaque = opaque;
    buf_init(&xs->q, XS_Q_MAX);
    buf_init(&xs->in, XS_IN_MAX);
    if (strv_dup(x->argv, x->argc, &xs->argv)) {
        xs_free(xs);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    xs->argc = x->argc;
    if (strv_dup(x->env, x->n_env, &xs->env) || (x->cwd && !(xs->cwd = strdup(x->cwd)))) {
        if (xs->env)
            xs->n_env = x->n_env;
        xs_free(xs);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    xs->n_env = x->n_env;
    pthread_mutex_lock(&m->mu);
    struct sess *s = find(m, id);
    if (!s) {
        rc = -ENOENT;
        snprintf(err, errlen, "no such session");
        goto out;
    }
    if (strcmp(s->status, "running") || s->stopping || !s->r) {
        rc = -EAGAIN;
        snprintf(err, errlen, "session '%s' is %s, not running", s->id,
                 s->stopping ? "stopping" : s->status);
        goto out;
    }
    xs->s = s;
    rc = queue_full(m, W_XSTART, s, NULL, xs, 0);
    if (rc) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    xs->next = s->xstreams;
    s->xstreams = xs;
    *out = xs;
out:
    if (rc) {
        xs->s = NULL;
        xs_free(xs);
    }
    pthread_mutex_unlock(&m->mu);
    return rc;
}

void sessions_xs_take(struct sessions_xstream *xs, void *buf, size_t max,
                      struct sessions_xs_event *ev)
{
    memset(ev, 0, sizeof(*ev));
    pthread_mutex_lock(&xs->m->mu);
    struct buf *q = &xs->q;
    if (q->len < 5) {
        if (xs->overflow) {
            ev->kind = SESSIONS_XS_ERROR;
            snprintf(ev->error, sizeof(ev->error), "out of memory for the command's output");
        }
        goto out;
    }
    enum sessions_xs_kind kind = q->data[0];
    size_t len = be32_load(q->data + 1);
    const uint8_t *p = q->data + 5;
    ev->kind = kind;
    if (kind == SESSIONS_XS_STDOUT || kind == SESSIONS_XS_STDERR) {
        size_t n = len < max ? len : max;
        memcpy(buf, p, n);
        ev->len = n;
        if (n == len || n < 5) {
            buf_consume(q, 5 + n);
            if (n < len) { /* max under 5: keep what is left as a record of its own */
                ev->len = 0;
                ev->kind = SESSIONS_XS_NONE;
            }
        } else {
            /* Part of the record: its header moves over the bytes just copied. */
            buf_consume(q, n);
            q->data[0] = (uint8_t)kind;
            be32_store(q->data + 1, (uint32_t)(len - n));
        }
    } else {
        if (kind == SESSIONS_XS_STARTED && len == 8)
            ev->pid = (long long)(((uint64_t)be32_load(p) << 32) | be32_load(p + 4));
        else if (kind == SESSIONS_XS_EXIT && len >= 5) {
            ev->code = (int)be32_load(p);
            ev->timed_out = p[4] != 0;
            size_t el = len - 5 < sizeof(ev->error) - 1 ? len - 5 : sizeof(ev->error) - 1;
            memcpy(ev->error, p + 5, el);
            ev->error[el] = '\0';
        } else if (kind == SESSIONS_XS_ERROR) {
            size_t el = len < sizeof(ev->error) - 1 ? len : sizeof(ev->error) - 1;
            memcpy(ev->error, p, el);
            ev->error[el] = '\0';
        }
        buf_consume(q, 5 + len);
    }
    if (xs->paused && q->len < SESSIONS_XS_OUT_LOW && xs->s &&
        queue_full(xs->m, W_XRESUME, xs->s, NULL, xs, 0) < 0)
        LOG_WARN("event=xs_resume_queue_failed");
out:
    pthread_mutex_unlock(&xs->m->mu);
}

bool sessions_xs_pending(struct sessions_xstream *xs)
{
    pthread_mutex_lock(&xs->m->mu);
    bool p = xs->q.len >= 5 || xs->overflow;
    pthread_mutex_unlock(&xs->m->mu);
    return p;
}

int sessions_xs_input(struct sessions_xstream *xs, const void *p, size_t len)
{
    int rc = 0;
    if (!len)
        return 0;
    pthread_mutex_lock(&xs->m->mu);
    if (xs->ended || xs->eof_req || !xs->s) {
        rc = -EPIPE;
        goto out;
    }
    rc = buf_append(&xs->in, p, len);
    if (rc)
        goto out;
    rc = queue_full(xs->m, W_XFEED, xs->s, NULL, xs, 0);
out:
    pthread_mutex_unlock(&xs->m->mu);
    return rc;
}

size_t sessions_xs_input_queued(struct sessions_xstream *xs)
{
    pthread_mutex_lock(&xs->m->mu);
    size_t n = xs->in.len;
    pthread_mutex_unlock(&xs->m->mu);
    return n;
}

int sessions_xs_eof(struct sessions_xstream *xs)
{
    int rc = 0;
    pthread_mutex_lock(&xs->m->mu);
    if (xs->ended || !xs->s)
        rc = -EPIPE;
    else if (!xs->eof_req) {
        xs->eof_req = true;
        rc = queue_full(xs->m, W_XFEED, xs->s, NULL, xs, 0);
    }
    pthread_mutex_unlock(&xs->m->mu);
    return rc;
}

int sessions_xs_signal(struct sessions_xstream *xs, int sig)
{
    if (sig < 1 || sig > 64)
        return -EINVAL;
    int rc = 0;
    pthread_mutex_lock(&xs->m->mu);
    if (xs->ended || !xs->s)
        rc = -EPIPE;
    else
        rc = queue_full(xs->m, W_XSIG, xs->s, NULL, xs, sig);
    pthread_mutex_unlock(&xs->m->mu);
    return rc;
}

void sessions_xs_timeout(struct sessions_xstream *xs)
{
    pthread_mutex_lock(&xs->m->mu);
    if (!xs->ended && xs->s) {
        xs->timed_out = true;
        if (queue_full(xs->m, W_XKILL, xs->s, NULL, xs, SIGKILL) < 0)
            LOG_WARN("event=xs_kill_queue_failed");
    }
    pthread_mutex_unlock(&xs->m->mu);
}

void sessions_xs_detach(struct sessions_xstream *xs)
{
    if (!xs)
        return;
    struct sessions *m = xs->m;
    pthread_mutex_lock(&m->mu);
    xs->detached = true;
    xs->wake = NULL;
    buf_consume(&xs->q, xs->q.len);
    buf_consume(&xs->in, xs->in.len);
    if (xs->ended || !xs->s) {
        drop_work_of(m, NULL, NULL, xs);
        xs_free(xs);
    } else if (queue_full(m, W_XKILL, xs->s, NULL, xs, SIGKILL) < 0) {
        /* Cannot reach the loop: the command lives until it ends; xs is freed then. */
        LOG_WARN("event=xs_kill_queue_failed");
    }
    pthread_mutex_unlock(&m->mu);
}
