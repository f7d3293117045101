/*
 * `capsem shell`: boot a VM like `capsem run` and run an interactive shell
 * on a PTY in the guest (schemas/vsock-terminal.md), with this terminal in
 * raw mode, window size changes followed, and the shell's exit status.
 */
#ifndef CAPSEM_SERVER_CLI_SHELL_H
#define CAPSEM_SERVER_CLI_SHELL_H

#include "cli_run.h"

/*
 * Parse argv[1..argc) of `capsem shell` (argv[0] is "shell"): the options of
 * `capsem run`, and optionally `-- CMD [ARG...]` instead of the default
 * login shell. Same results and errors as cli_run_parse(); o->cmd points
 * into a static default when no command is given.
 */
__attribute__((warn_unused_result)) int
cli_shell_parse(int argc, char **argv, struct cli_run_opts *o, char *err, size_t errlen);

/* The usage text of `capsem shell`. */
const char *cli_shell_usage(void);

/* Run `capsem shell` with argv[0] == "shell"; returns the process exit status. */
int cli_shell_main(int argc, char **argv);

#endif
