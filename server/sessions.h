/*
 * The daemon's session manager: many VM sessions at once, each booted the
 * way `capsem run` boots one (cli_session_prepare, cli_net_start,
 * cli_runner_config, vm_runner), all driven by one event loop on a thread
 * of the manager's own. Other threads (the HTTP handlers) call the
 * functions below; they take a mutex, hand loop work over through an
 * eventfd, and never touch a runner themselves. Every session keeps a
 * small session.json (name, created, command, status, reason, log) in its
 * directory under $CAPSEM_HOME/sessions, so a restarted daemon lists the
 * sessions it finds there as stopped.
 */
#ifndef CAPSEM_SERVER_SESSIONS_H
#define CAPSEM_SERVER_SESSIONS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* Bytes of stdout (and of stderr) an exec keeps; past this the output is cut and flagged. */
#define SESSIONS_EXEC_OUT_MAX (16u << 20)
/* Default and largest exec timeout, seconds. */
#define SESSIONS_EXEC_TIMEOUT_S 60u
#define SESSIONS_EXEC_TIMEOUT_MAX_S 3600u

struct sessions;

/* What a new session asks for; strings and arrays are borrowed for the call. */
struct sessions_spec {
    const char *name; /* NULL = a random id */
    const char *const
        *argv; /* command run once booted (the session stops when it exits), or NULL */
    size_t argc;
    unsigned mem_mib, cpus;
    const char *const *env; /* "K=V" for every command in the session */
    size_t n_env;
    const char *rootfs; /* NULL = default image, "none" = the initramfs alone, or a path */
    bool no_net;
    /* Network policy preset ("high", "medium", "open") in place of the user config's; NULL = as
     * configured. */
    const char *policy;
};

/* One exec request (strings borrowed for the call). */
struct sessions_exec {
    const char *const *argv;
    size_t argc;
    const char *const *env;
    size_t n_env;
    const char *cwd;        /* NULL = the agent's default */
    const void *stdin_data; /* fed then closed; NULL = no stdin */
    size_t stdin_len;
    unsigned timeout_s; /* 0 = SESSIONS_EXEC_TIMEOUT_S */
};

/* An exec's result: out/err malloc'd (free with sessions_exec_result_fini). */
struct sessions_exec_result {
    char *out, *err;
    size_t out_len, err_len;
    bool truncated;
    bool timed_out;  /* the command was killed at the timeout */
    int exit_code;   /* 0-255, or 128+signal */
    char error[256]; /* the guest's reason when the command could not run */
};

/*
 * Start the manager for `home` ($CAPSEM_HOME, borrowed copy taken): its loop
 * thread, and the sessions found under home/sessions listed as stopped.
 * 0 or -errno.
 */
__attribute__((warn_unused_result)) int sessions_create(const char *home, struct sessions **out);
/* Stop every running session (orderly, with a bounded wait), wait for preparations under way,
 * join the threads, free. NULL is fine. */
void sessions_destroy(struct sessions *s);

/*
 * Start a session: checks the name (-EINVAL bad, -EEXIST taken), then
 * prepares it on a thread of its own (asset integrity, directory) and boots
 * it on the loop thread. On success *out is the session's JSON (status
 * "booting"; the caller owns it); a later failure shows as status "failed"
 * with its reason (for a bad asset, naming the file). -errno with a reason
 * in err otherwise.
 */
__attribute__((warn_unused_result)) int sessions_start(struct sessions *s,
                                                       const struct sessions_spec *spec,
                                                       json_t **out, char *err, size_t errlen);
/* JSON array of every session, oldest first. NULL on allocation failure. */
json_t *sessions_list(struct sessions *s);
/* The session's JSON into *out, or -ENOENT. */
__attribute__((warn_unused_result)) int sessions_get(struct sessions *s, const char *id,
                                                     json_t **out);
/*
 * Stop session `id` (its data kept; with `purge` its directory is removed
 * once the VM is gone). *out (may be NULL) gets its JSON. -ENOENT unknown,
 * -EBUSY purge asked while another stop is under way.
 */
__attribute__((warn_unused_result)) int sessions_stop(struct sessions *s, const char *id,
                                                      bool purge, json_t **out);
/*
 * Run a command in session `id` and wait for it (up to the timeout, then it
 * is killed and the result says so). Blocks the calling thread, never the
 * loop. 0 with *res filled, -ENOENT unknown, -EAGAIN not running, or -errno
 * with a reason in err.
 */
__attribute__((warn_unused_result)) int sessions_exec_run(struct sessions *s, const char *id,
                                                          const struct sessions_exec *x,
                                                          struct sessions_exec_result *res,
                                                          char *err, size_t errlen);
void sessions_exec_result_fini(struct sessions_exec_result *res);
/* End every exec being waited for now (error "the daemon is stopping"), so waiters return. */
void sessions_cancel_execs(struct sessions *s);

/*
 * For tests: `hook(opaque, id)` is called on a booting session's preparing
 * thread, with no lock held, after the preparation (assets checked,
 * directory made) and before the boot goes back to the loop, so a test can
 * hold a session in "booting". NULL removes it.
 */
void sessions_set_prep_hook(struct sessions *s, void (*hook)(void *opaque, const char *id),
                            void *opaque);

/* Path of the session's log (vm.log) into buf, or -ENOENT when none is known. */
__attribute__((warn_unused_result)) int sessions_log_path(struct sessions *s, const char *id,
                                                          char *buf, size_t len);

/* ---- the terminal: one PTY per session, shared by its viewers ---- */
struct sessions_viewer;

/*
 * Attach a viewer to session `id`'s terminal: the last 64 KiB of output is
 * queued for it at once, then every new byte. `wake(opaque)` is called (on
 * the loop thread, with the manager's lock held: it must only signal) when
 * bytes arrive or the session ends. 0, -ENOENT unknown, -EAGAIN not
 * running, -ENOMEM.
 */
__attribute__((warn_unused_result)) int sessions_term_attach(struct sessions *s, const char *id,
                                                             void (*wake)(void *opaque),
                                                             void *opaque,
                                                             struct sessions_viewer **out);
/* Take up to max queued output bytes; *closed when the session is over and nothing is left. */
size_t sessions_term_take(struct sessions_viewer *v, void *buf, size_t max, bool *closed);
/* Whether take has anything to say (bytes, or the end). */
bool sessions_term_pending(struct sessions_viewer *v);
/* Keyboard bytes to the PTY. 0, -EPIPE when the session is over, -ENOBUFS/-ENOMEM. */
__attribute__((warn_unused_result)) int sessions_term_input(struct sessions_viewer *v,
                                                            const void *p, size_t len);
/* Resize the PTY (1..65535 each, else -EINVAL). */
__attribute__((warn_unused_result)) int sessions_term_resize(struct sessions_viewer *v,
                                                             unsigned cols, unsigned rows);
/* Detach and free the viewer. NULL is fine. */
void sessions_term_detach(struct sessions_viewer *v);

/* ---- the exec stream: one command, its bytes streamed both ways ---- */
struct sessions_xstream;

/* Output queued for a stream's reader past which the session's control connection is paused,
 * and the level under which it resumes. */
#define SESSIONS_XS_OUT_HIGH (1u << 20)
#define SESSIONS_XS_OUT_LOW (512u << 10)
/* Stdin queued towards the guest past which the caller should stop reading its client. */
#define SESSIONS_XS_IN_HIGH (1u << 20)

/* What sessions_xs_take hands over, in the order the guest produced it. */
enum sessions_xs_kind {
    SESSIONS_XS_NONE = 0,
    SESSIONS_XS_STDOUT = 1, /* bytes of stdout */
    SESSIONS_XS_STDERR = 2, /* bytes of stderr */
    SESSIONS_XS_STARTED,    /* the guest started it: pid */
    SESSIONS_XS_EXIT,       /* it ended: code, timed_out (the last event) */
    SESSIONS_XS_ERROR,      /* it could not start or its session ended: error (the last event) */
};

struct sessions_xs_event {
    enum sessions_xs_kind kind;
    size_t len; /* output bytes copied (STDOUT/STDERR) */
    long long pid;
    int code; /* 0-255 or 128+signal */
    bool timed_out;
    char error[256];
};

/*
 * Start a command in session `id` with stdin, stdout and stderr streamed
 * (x->stdin_data and x->timeout_s are ignored: stdin comes through
 * sessions_xs_input, a timeout through sessions_xs_timeout). `wake(opaque)`
 * is called on the loop thread with the manager's lock held (it must only
 * signal) whenever sessions_xs_pending may have turned true or the stdin
 * queue shrank. 0 with *out, -ENOENT unknown, -EAGAIN not running, -ENOMEM;
 * err gets a reason.
 */
__attribute__((warn_unused_result)) int sessions_xs_start(struct sessions *s, const char *id,
                                                          const struct sessions_exec *x,
                                                          void (*wake)(void *opaque), void *opaque,
                                                          struct sessions_xstream **out, char *err,
                                                          size_t errlen);
/*
 * The next event into *ev (kind NONE when there is none yet); output bytes,
 * at most max, go to buf. Below SESSIONS_XS_OUT_LOW queued bytes a paused
 * session resumes.
 */
void sessions_xs_take(struct sessions_xstream *xs, void *buf, size_t max,
                      struct sessions_xs_event *ev);
/* Whether take has an event. */
bool sessions_xs_pending(struct sessions_xstream *xs);
/* Stdin bytes for the command (kept until the guest takes them). 0, -EPIPE when over,
 * -ENOBUFS past 8 MiB queued, -ENOMEM. */
__attribute__((warn_unused_result)) int sessions_xs_input(struct sessions_xstream *xs,
                                                          const void *p, size_t len);
/* Stdin bytes queued and not yet handed to the guest. */
size_t sessions_xs_input_queued(struct sessions_xstream *xs);
/* Close the command's stdin once the queued bytes are in. 0 or -EPIPE/-ENOMEM. */
__attribute__((warn_unused_result)) int sessions_xs_eof(struct sessions_xstream *xs);
/* Send signal `sig` (1-64, else -EINVAL) to the command. 0 or -EPIPE/-ENOMEM. */
__attribute__((warn_unused_result)) int sessions_xs_signal(struct sessions_xstream *xs, int sig);
/* The caller's time limit passed: kill the command (SIGKILL); its exit says timed_out. */
void sessions_xs_timeout(struct sessions_xstream *xs);
/* The client is gone: kill the command if it still runs (SIGKILL), drop its output, free the
 * handle (the manager frees the rest once the command ended). NULL is fine. */
void sessions_xs_detach(struct sessions_xstream *xs);

/* ---- routes (api_sessions.c) ---- */
struct api;
struct api_req;
struct api_resp;

/* The manager the session routes use (borrowed; NULL = none: they answer 503). */
void api_sessions_attach(struct sessions *s);
/* The attached manager, or NULL. */
struct sessions *api_sessions_attached(void);
int api_sessions_create(struct api *api, const struct api_req *req, struct api_resp *resp);
int api_sessions_list(struct api *api, const struct api_req *req, struct api_resp *resp);
int api_sessions_get(struct api *api, const struct api_req *req, struct api_resp *resp);
int api_sessions_delete(struct api *api, const struct api_req *req, struct api_resp *resp);
int api_sessions_exec(struct api *api, const struct api_req *req, struct api_resp *resp);

/* The exec stream's start message, checked (argv, env, cwd as for POST exec). */
struct api_xstart {
    const char **argv; /* malloc'd array of strings borrowed from the message */
    size_t argc;
    char **env; /* malloc'd "K=V" strings */
    size_t n_env;
    const char *cwd;    /* borrowed from the message, or NULL */
    unsigned timeout_s; /* 0 = none */
};
/*
 * Check the exec stream's `start` object `j` (borrowed; must outlive *out).
 * 0, or -EINVAL with a reason naming the field in err (unknown key, bad
 * argv/env/cwd/timeout_s, tty not false).
 */
__attribute__((warn_unused_result)) int api_sessions_xstart_parse(json_t *j, struct api_xstart *out,
                                                                  char *err, size_t errlen);
/* Free what api_sessions_xstart_parse allocated. */
void api_sessions_xstart_fini(struct api_xstart *x);

#endif
