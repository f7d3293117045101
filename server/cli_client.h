/*
 * The CLI against a running daemon: `capsem list`, `create`, `exec`, `stop`,
 * `logs` and `attach`. The daemon's address comes from $CAPSEM_HOME/serve.json
 * (written by `capsem serve`), the token from $CAPSEM_HOME/token; requests
 * are plain HTTP/1.1 on loopback with the Bearer token.
 */
#ifndef CAPSEM_SERVER_CLI_CLIENT_H
#define CAPSEM_SERVER_CLI_CLIENT_H

#include <stddef.h>

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

/* Entry points, argv[0] being the command name; each returns the exit status. */
int cli_list_main(int argc, char **argv);
int cli_create_main(int argc, char **argv);
int cli_exec_main(int argc, char **argv);
int cli_stop_main(int argc, char **argv);
int cli_logs_main(int argc, char **argv);
/* `capsem attach ID` (and `capsem shell ID`): the session's terminal from this terminal. */
int cli_attach_main(int argc, char **argv);

#endif
