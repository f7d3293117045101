/*
 * `capsem serve`: the daemon. Loads or creates the API token, binds one port
 * for REST and WebSockets (httpd.h), prints a one-time login URL on stdout
 * and serves until SIGINT or SIGTERM. The routes are in api.h and
 * docs/api.md.
 */
#ifndef CAPSEM_SERVER_CLI_SERVE_H
#define CAPSEM_SERVER_CLI_SERVE_H

#include <stdbool.h>
#include <stddef.h>

#define CLI_SERVE_DEFAULT_ADDR "127.0.0.1"
#define CLI_SERVE_DEFAULT_PORT 7878
#define CLI_SERVE_ALLOW_MAX 16

struct cli_serve_opts {
    char addr[64]; /* numeric IP, without brackets */
    unsigned port;
    bool listen_given;                      /* --listen was on the command line */
    bool loopback;                          /* addr is a loopback address */
    const char *allow[CLI_SERVE_ALLOW_MAX]; /* --allow-host names (point into argv) */
    size_t nallow;
    bool help;
};

/*
 * Parse argv[1..argc) of `capsem serve` (argv[0] is "serve") into *o.
 * 0, or -EINVAL with a one-line reason in err[0..errlen).
 */
__attribute__((warn_unused_result)) int
cli_serve_parse(int argc, char **argv, struct cli_serve_opts *o, char *err, size_t errlen);

/* The usage text of `capsem serve`. */
const char *cli_serve_usage(void);

/* Run `capsem serve` with argv[0] == "serve"; returns the process exit status. */
int cli_serve_main(int argc, char **argv);

#endif
