/*
 * `capsem run`: boot a VM, run one command in it with the host's stdin,
 * stdout and stderr, and exit with the command's status. Parsing is separate
 * from running so the unit tests can check every option without a VM.
 */
#ifndef CAPSEM_SERVER_CLI_RUN_H
#define CAPSEM_SERVER_CLI_RUN_H

#include "session_dir.h"

#include "loop.h"

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
    /* --rootfs FILE: root filesystem on /dev/vda, read-only; "none": the initramfs alone; NULL:
     * the built image when there is one (see cli_session_prepare) */
    const char *rootfs;
    const char *append; /* hidden debug option: extra kernel command line */
    /* --workspace DIR: shared at /root over virtio-fs; NULL = the session's own workspace */
    const char *workspace;
    const char *name;   /* --name NAME: session id and host name; NULL = random */
    const char *policy; /* --policy high|medium|open: the session's preset; NULL = as configured */
    unsigned long long scratch_bytes; /* --scratch SIZE: scratch disk size; 0 = none */
    bool keep_logs;
    bool no_net;            /* --no-net: the guest gets no network at all */
    bool unverified_assets; /* hidden test option: boot assets whose hash was not recorded */
    bool standalone;        /* --standalone: never through a running daemon */
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

struct netsvc;

/* Where a run finds its monitor, guest assets, run and session directories. */
struct cli_paths {
    char vmm[4096];
    char kernel[4096];
    char initrd[4096];
    char rootfs[4096];   /* "" = boot the initramfs alone */
    bool rootfs_default; /* rootfs is the asset directory's image, not named by --rootfs */
    char home[4096];     /* $CAPSEM_HOME */
    char run_base[4096];
    /* Filled by cli_session_prepare(): */
    char session_id[SESSION_NAME_MAX + 1];
    char hostname[SESSION_NAME_MAX + 1];
    char session_dir[4096]; /* "" when the run needs none (--workspace given) */
    char workspace[4096];   /* shared at /root */
    bool session_created;   /* this run made session_dir */
    char scratch[4096];     /* the scratch disk made for this run, or "" */
    /* Filled by cli_net_start(): */
    struct netsvc *net; /* the session's network services, or NULL when the guest has none */
    char append[2048];  /* kernel command line: the network's settings and --append */
    /* The credential placeholders followed by the -e entries (heap array), or NULL: */
    const char **exec_env;
    size_t n_exec_env;
};

/*
 * Fill *p from the options and CAPSEM_VMM, CAPSEM_ASSETS, CAPSEM_HOME and
 * HOME (see docs/cli.md). 0, or -ENAMETOOLONG with a message printed.
 */
__attribute__((warn_unused_result)) int cli_run_paths(const struct cli_run_opts *o,
                                                      struct cli_paths *p);

/*
 * Everything between the paths and the boot, shared by `capsem run` and
 * `capsem shell`: settle the root filesystem (the built Debian image by
 * default when its hash was recorded and the file is there, else the
 * initramfs with a note on stderr), check the SHA-256 of the kernel,
 * initramfs and root image against the recorded ones (cached in
 * $CAPSEM_HOME/integrity-cache.json), then pick the session id and host
 * name and make the session directory with its workspace unless
 * --workspace was given (its path printed once on stderr when new), and
 * with --scratch the scratch disk in it (p->scratch; needs a root image).
 * 0, or -errno with the reason (naming the file for an integrity failure)
 * in why[0..whylen) when why is not NULL, else printed as one `capsem: ...`
 * line (the caller exits 125). Notes that are not failures still go to
 * stderr. Any thread: it reads the environment, so nothing may change it
 * meanwhile.
 */
__attribute__((warn_unused_result)) int
cli_session_prepare(const struct cli_run_opts *o, struct cli_paths *p, char *why, size_t whylen);

/* Remove the scratch disk this run made (if any); at the end of every run. */
void cli_scratch_remove(struct cli_paths *p);

/*
 * The VM could not be started: remove the session directory again when this
 * run made it and nothing was put in it since (rmdir only removes empty ones).
 */
void cli_session_abandon(const struct cli_paths *p);

/*
 * Start the session's network services (server/netsvc.h) when the guest
 * gets a network: it boots the Debian root (where the guest's redirect rules
 * and relays live) and --no-net was not given. The policy comes from
 * /etc/capsem/corp.json and $CAPSEM_HOME/config.json; the session database
 * is session.db in the session directory. Fills p->net and p->append. 0
 * (also when no network is wanted), or -errno with one `capsem: ...` line
 * printed (a bad config names the file, the JSON path and the reason).
 */
__attribute__((warn_unused_result)) int cli_net_start(struct loop *l, const struct cli_run_opts *o,
                                                      struct cli_paths *p);
/* Stop what cli_net_start() started: connections closed, the database flushed. */
void cli_net_stop(struct cli_paths *p);
/*
 * The environment for every command run in the guest: the network's
 * credential placeholders (ANTHROPIC_API_KEY=capsem-placeholder-..., one per
 * provider with a key on the host, see docs/credentials.md) and then the -e
 * entries, so an explicit -e wins. Sets *n; the array borrows from o and p.
 */
const char *const *cli_exec_env(const struct cli_run_opts *o, const struct cli_paths *p, size_t *n);
/* The runners' on_vsock for both CLIs: hands the connection to p->net (closes it without). */
void cli_on_vsock(void *paths, unsigned port, int fd);

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

struct vm_runner;
struct vm_runner_ops;

/*
 * What `capsem run` and `capsem shell` set up alike around one VM: the event
 * loop, the signalfd of the blocked signals, the --timeout timer and the
 * runner. Start from CLI_VM_INIT.
 */
struct cli_vm {
    struct loop *loop;
    struct vm_runner *runner;
    int sig_fd;     /* signalfd, or -1 */
    int timeout_fd; /* --timeout timer, or -1 */
    sigset_t old_mask;
    bool masked; /* old_mask is to be restored */
};
#define CLI_VM_INIT                                                                                \
    {                                                                                              \
        .sig_fd = -1, .timeout_fd = -1                                                             \
    }

/*
 * Block the session's signals (cli_block_signals with `extra_signal`), ignore
 * SIGPIPE, create the loop, watch the signalfd with signal_cb, arm
 * o->timeout_s with timeout_cb and create the runner with ops and opaque
 * (borrowed). 0, or -errno with one `capsem: ...` line printed; release
 * with cli_vm_stop() and cli_vm_close() either way.
 */
__attribute__((warn_unused_result)) int cli_vm_open(struct cli_vm *v, const struct cli_run_opts *o,
                                                    int extra_signal, loop_fn signal_cb,
                                                    loop_fn timeout_cb,
                                                    const struct vm_runner_ops *ops, void *opaque);
/*
 * Prepare the session (cli_session_prepare), start its network
 * (cli_net_start) and start the VM (with a terminal channel when `terminal`).
 * 0, or -errno with the reason printed (a session directory made for
 * nothing is removed again).
 */
__attribute__((warn_unused_result)) int cli_vm_boot(struct cli_vm *v, const struct cli_run_opts *o,
                                                    struct cli_paths *p, bool terminal);
/* Destroy the runner (the VMM killed and reaped), stop the network, remove the scratch disk. */
void cli_vm_stop(struct cli_vm *v, struct cli_paths *p);
/* Close the signalfd and timer, destroy the loop and restore the signal mask. */
void cli_vm_close(struct cli_vm *v);

/* The usage text of `capsem run`. */
const char *cli_run_usage(void);

/* Run `capsem run` with argv[0] == "run"; returns the process exit status. */
int cli_run_main(int argc, char **argv);

#endif
