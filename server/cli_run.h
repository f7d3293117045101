/*
 * `capsem run`: boot a VM, run one command in it with the host's stdin,
 * stdout and stderr, and exit with the command's status. Parsing is separate
 * from running so the unit tests can check every option without a VM.
 */
#ifndef CAPSEM_SERVER_CLI_RUN_H
#define CAPSEM_SERVER_CLI_RUN_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>

/* capsem's own exit statuses (documented in docs/cli.md). */
#define CAPSEM_EXIT_USAGE 2     /* bad command line */
#define CAPSEM_EXIT_TIMEOUT 124 /* --timeout expired */
#define CAPSEM_EXIT_FAILED 125  /* capsem or the VM failed; the command did not finish */

#define CLI_RUN_DEFAULT_MEM_MIB 512
#define CLI_RUN_DEFAULT_CPUS 1
#define CLI_RUN_DEFAULT_BOOT_TIMEOUT_S 30

/* Parsed `capsem run` options. Pointers borrow the argv that was parsed. */
struct cli_run_opts {
    unsigned mem_mib;
    unsigned cpus;
    unsigned timeout_s; /* 0 = no limit */
    unsigned boot_timeout_s;
    const char **env; /* "K=V" strings (heap array of borrowed pointers) */
    size_t n_env;
    const char *kernel; /* NULL = from the asset directory */
    const char *initrd;
    const char *rootfs;    /* --rootfs FILE: root filesystem on /dev/vda, read-only; NULL = none */
    const char *append;    /* hidden debug option: extra kernel command line */
    const char *workspace; /* --workspace DIR: shared at /root over virtio-fs; NULL = none */
    bool keep_logs;
    bool help;
    char **cmd; /* the command and its arguments, after "--" */
    size_t n_cmd;
};

/*
 * Parse argv[1..argc) of `capsem run` (argv[0] is "run"). On error returns
 * -EINVAL with a one-line reason in err[0..errlen); *o is then empty. With
 * --help, o->help is set and no command is required. Release with
 * cli_run_opts_fini().
 */
__attribute__((warn_unused_result)) int cli_run_parse(int argc, char **argv, struct cli_run_opts *o,
                                                      char *err, size_t errlen);
/* Free what cli_run_parse() allocated. Accepts a zeroed struct. */
void cli_run_opts_fini(struct cli_run_opts *o);

/* Where a run finds its monitor, guest assets and run directories. */
struct cli_paths {
    char vmm[4096];
    char kernel[4096];
    char initrd[4096];
    char run_base[4096];
};

/*
 * Fill *p from the options and CAPSEM_VMM, CAPSEM_ASSETS, CAPSEM_HOME and
 * HOME (see docs/cli.md). 0, or -ENAMETOOLONG with a message printed.
 */
__attribute__((warn_unused_result)) int cli_run_paths(const struct cli_run_opts *o,
                                                      struct cli_paths *p);

struct vm_runner_config;

/*
 * Fill *cfg for a VM booted with these options and paths (both borrowed: they
 * must outlive the runner's start). Shared by `capsem run` and `capsem shell`
 * so an option added to one boots the same VM in the other.
 */
void cli_runner_config(const struct cli_run_opts *o, const struct cli_paths *p,
                       struct vm_runner_config *cfg);

/*
 * Block the signals a CLI session handles on its signalfd: SIGTERM, `extra`
 * (0 for none), and SIGINT/SIGHUP/SIGQUIT unless they were inherited ignored
 * (nohup, background jobs: like ssh, keep ignoring them). Fills *mask with
 * that set and *old with the previous mask; returns true when the mask was
 * changed (restore it with sigprocmask(SIG_SETMASK, old, NULL)).
 */
bool cli_block_signals(int extra, sigset_t *mask, sigset_t *old);

/* The usage text of `capsem run`. */
const char *cli_run_usage(void);

/* Run `capsem run` with argv[0] == "run"; returns the process exit status. */
int cli_run_main(int argc, char **argv);

#endif
