/*
 * capsem: command-line entry point. Dispatches to the subcommands; each
 * lives in its own cli_<command>.c inside the capsem_server library.
 */
#include "cli_client.h"
#include "cli_run.h"
#include "cli_serve.h"
#include "cli_shell.h"
#include "integrity.h"

#include <stdio.h>
#include <string.h>

#ifndef CAPSEM_VERSION
#define CAPSEM_VERSION "0.0.0"
#endif

static const char main_usage[] =
    "usage: capsem [--help | --version] COMMAND [ARGS...]\n"
    "\n"
    "Run AI coding agents inside KVM microVMs.\n"
    "\n"
    "commands:\n"
    "  run [OPTIONS] -- CMD [ARG...]   boot a VM, run CMD in it, exit with its status\n"
    "                                  (a session of the daemon when `capsem serve` runs)\n"
    "  shell [OPTIONS]                 boot a VM, open an interactive shell in it\n"
    "  serve [OPTIONS]                 run the daemon (REST + WebSocket API on one port)\n"
    "  list [--json]                   the daemon's sessions\n"
    "  create [OPTIONS] [-- CMD...]    boot a session in the daemon, print its id\n"
    "  exec [OPTIONS] ID -- CMD...     run CMD in a daemon session (streamed), exit with\n"
    "                                  its status\n"
    "  stop [--purge] ID               stop a daemon session (--purge: remove its data)\n"
    "  logs ID                         print a session's VM console log\n"
    "  attach ID (or shell ID)         open a daemon session's terminal (Ctrl-] detaches)\n"
    "\n"
    "`capsem COMMAND --help` shows a command's options. Exit statuses: see docs/cli.md\n"
    "(2 bad usage, 124 timed out, 125 capsem or the VM failed, otherwise the command's).\n";

int main(int argc, char **argv)
{
    integrity_set_built(&capsem_built_hashes);
    if (argc < 2) {
        fputs(main_usage, stderr);
        return CAPSEM_EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        fputs(main_usage, stdout);
        return 0;
    }
    if (!strcmp(cmd, "--version")) {
        printf("capsem %s\n", CAPSEM_VERSION);
        return 0;
    }
    if (!strcmp(cmd, "run"))
        return cli_run_main(argc - 1, argv + 1);
    /* `capsem shell ID`: a daemon session's terminal; options or nothing: a new VM. */
    if (!strcmp(cmd, "shell") && argc == 3 && argv[2][0] != '-')
        return cli_attach_main(argc - 1, argv + 1);
    if (!strcmp(cmd, "shell"))
        return cli_shell_main(argc - 1, argv + 1);
    if (!strcmp(cmd, "attach"))
        return cli_attach_main(argc - 1, argv + 1);
    if (!strcmp(cmd, "serve"))
        return cli_serve_main(argc - 1, argv + 1);
    if (!strcmp(cmd, "list"))
        return cli_list_main(argc - 1, argv + 1);
    if (!strcmp(cmd, "create"))
        return cli_create_main(argc - 1, argv + 1);
    if (!strcmp(cmd, "exec"))
        return cli_exec_main(argc - 1, argv + 1);
    if (!strcmp(cmd, "stop"))
        return cli_stop_main(argc - 1, argv + 1);
    if (!strcmp(cmd, "logs"))
        return cli_logs_main(argc - 1, argv + 1);
    fprintf(stderr, "capsem: unknown %s '%s'\n", cmd[0] == '-' ? "option" : "command", cmd);
    fputs("usage: capsem [--help | --version] COMMAND [ARGS...]\n", stderr);
    return CAPSEM_EXIT_USAGE;
}
