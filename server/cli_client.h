/*
 * The CLI against a running daemon: `capsem list`, `create`, `exec`, `stop`,
 * `logs` and `attach`, and `capsem run` when a daemon runs. The daemon's address comes from
 * $CAPSEM_HOME/serve.json (written by `capsem serve`), the token from $CAPSEM_HOME/token; requests
 * are plain HTTP/1.1 on loopback with the Bearer token.
 */
#ifndef CAPSEM_SERVER_CLI_CLIENT_H
#define CAPSEM_SERVER_CLI_CLIENT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A daemon answer: status and malloc'd NUL-terminated body. */
struct cli_http_resp {
    int status;
    char *body;
    size_t body_len;
};

/*
 * Send `method path` with `body` (NULL = none) to the daemon of `home`
 * ($CAPSEM_HOME) and read the whole answer into *resp. 0, or -errno with
 * a one-line reason in err (no serve.json, cannot connect, bad answer).
 */
__attribute__((warn_unused_result)) int cli_http(const char *home, const char *method,
                                                 const char *path, const char *body,
                                                 struct cli_http_resp *resp, char *err,
                                                 size_t errlen);
void cli_http_resp_fini(struct cli_http_resp *resp);

/* One command through a session's exec stream (docs/api.md "Exec stream"). */
struct cli_exec_stream_req {
    const char *prog;        /* prefix of messages on stderr ("capsem exec") */
    const char *const *argv; /* the command (borrowed) */
    size_t argc;
    json_t *env;              /* object of strings for the command (borrowed), or NULL */
    const char *cwd;          /* absolute, or NULL for the agent's default */
    unsigned timeout_s;       /* the daemon kills the command after it; 0 = never */
    int64_t deadline_ms;      /* CLOCK_MONOTONIC ms: then capsem leaves (124); 0 = none */
    unsigned timeout_total_s; /* the limit deadline_ms stands for, for the message */
    int sig_fd;               /* signalfd of SIGINT/SIGTERM/SIGHUP/SIGQUIT, or -1 */
    bool unknown_session_1;   /* an unknown session gives 1, not 125 */
};

/*
 * Run rq->argv in running session `id` of the daemon of `home` through the
 * exec WebSocket: capsem's stdin is streamed to it (its end closes the
 * command's stdin), its stdout and stderr go to fds 1 and 2 as they come.
 * The first SIGINT and the first SIGTERM on sig_fd are sent to the command,
 * a second one (or SIGHUP, SIGQUIT) leaves at once, which kills it. Returns
 * the exit status for capsem: the command's, 124 when timed out, 125 when
 * the daemon refused or ended it (the reason on stderr; 1 for an unknown
 * session with rq->unknown_session_1), 128+N when signal N made capsem leave.
 */
int cli_exec_stream(const char *home, const char *id, const struct cli_exec_stream_req *rq);

struct cli_run_opts;
/*
 * `capsem run` inside the running daemon of $CAPSEM_HOME: when serve.json
 * names a daemon that answers, create a session with the run's options,
 * wait until it runs, run the command through the exec stream, then stop
 * the session (its data is kept) and set *handled. Without a daemon (no
 * serve.json, or one left by a daemon that is gone: logged at info level)
 * *handled is false and nothing was done. Returns the exit status.
 */
int cli_run_daemon(const struct cli_run_opts *o, bool *handled);

/* Entry points, argv[0] being the command name; each returns the exit status. */
int cli_list_main(int argc, char **argv);
int cli_create_main(int argc, char **argv);
int cli_exec_main(int argc, char **argv);
int cli_stop_main(int argc, char **argv);
int cli_logs_main(int argc, char **argv);
/* `capsem attach ID` (and `capsem shell ID`): the session's terminal from this terminal. */
int cli_attach_main(int argc, char **argv);

#endif
