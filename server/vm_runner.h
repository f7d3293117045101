/*
 * One VM session: makes the run directory, writes the monitor's config,
 * listens for the guest agent on <uds>_5000, spawns capsem-vmm in its own
 * process group, answers the agent's hello within a boot timeout, then
 * carries execs over the control connection and tears everything down
 * (VMM reaped, sockets and run directory removed). Event-driven on a
 * event loop (common/loop.h) with callbacks, so `capsem run` drives one and the daemon
 * can drive many on the same loop.
 */
#ifndef CAPSEM_SERVER_VM_RUNNER_H
#define CAPSEM_SERVER_VM_RUNNER_H

#include "ctl_conn.h"
#include "loop.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct vm_runner;

/* Everything a runner needs; strings are borrowed until vm_runner_start() returns. */
struct vm_runner_config {
    const char *vmm_path; /* capsem-vmm executable */
    const char *kernel;   /* uncompressed vmlinux */
    const char *initrd;
    const char *append; /* extra kernel command line, or NULL */
    /* Root filesystem image attached read-only as /dev/vda, init told capsem.root=/dev/vda; or
     * NULL. */
    const char *rootfs;
    /* Host directory shared at /root over virtio-fs (capsem.workspace=1), or NULL. */
    const char *workspace;
    /* Directory for the share's file events, fs-events.jsonl (appended to; the session
     * directory, where GET .../file-events reads them); NULL = the run directory. */
    const char *fs_events_dir;
    unsigned mem_mib;
    unsigned cpus;
    const char *run_base;     /* directory holding run dirs ($CAPSEM_HOME/run) */
    unsigned boot_timeout_ms; /* spawn to guest hello */
    bool keep_logs;           /* keep vm.log and vmm.json even after a clean run */
    const char *kvm_path;     /* device checked before booting; NULL = /dev/kvm */
    bool terminal;            /* also listen on <uds>_5001 for terminal connections (on_terminal) */
    /* More guest-to-host vsock ports to listen on (<uds>_P), each accepted connection going to
     * on_vsock; at most VM_RUNNER_MAX_PORTS. */
    const unsigned *vsock_ports;
    size_t n_vsock_ports;
    /* CA certificate (PEM) sent to the guest in the hello answer, or NULL. */
    const char *ca_pem;
    /* The guest's host name, sent in the hello answer; NULL = "capsem". */
    const char *hostname;
    /* ext4 image attached read-write after the root (/dev/vdb, or /dev/vda without a root),
     * init told capsem.scratch=<that device> to keep the root overlay's writable layer on it;
     * or NULL (the writable layer is in RAM). */
    const char *scratch;
};

#define VM_RUNNER_MAX_PORTS 8

/* Callbacks on the loop thread; any may be NULL except on_done. */
struct vm_runner_ops {
    /* The guest agent said hello; `boot_ms` is host time from spawn to hello. */
    void (*on_ready)(void *opaque, const struct ctl_hello *h, int64_t boot_ms);
    void (*on_started)(void *opaque, uint32_t id, int64_t pid);
    void (*on_output)(void *opaque, uint32_t id, int stream, const uint8_t *p, size_t len);
    void (*on_exit)(void *opaque, const struct ctl_exit *e);
    void (*on_guest_error)(void *opaque, uint32_t id, const char *msg);
    void (*on_drained)(void *opaque);
    /*
     * A terminal connection (vsock port 5001, schemas/vsock-terminal.md)
     * sent a valid header naming `id`. `fd` (non-blocking) now belongs to
     * the callee, which closes it if it did not ask for `id`. Only with
     * cfg.terminal; when NULL such connections are closed.
     */
    void (*on_terminal)(void *opaque, uint32_t id, int fd);
    /*
     * A guest connection to one of cfg.vsock_ports: `fd` (non-blocking) now
     * belongs to the callee. When NULL such connections are closed.
     */
    void (*on_vsock)(void *opaque, unsigned port, int fd);
    /*
     * The VM is gone and its run state removed. err 0 after a clean
     * vm_runner_stop(); otherwise -errno and a one-line reason, and
     * `log_path` names the kept vm.log (NULL when none was kept). The
     * runner may be destroyed from here.
     */
    void (*on_done)(void *opaque, int err, const char *msg, const char *log_path);
};

/* Allocate a runner on loop `l` (borrowed); `ops` is borrowed. 0 or -ENOMEM. */
__attribute__((warn_unused_result)) int vm_runner_create(struct loop *l,
                                                         const struct vm_runner_ops *ops,
                                                         void *opaque, struct vm_runner **out);
/*
 * Kill the VMM if it still runs, wait for it, remove the run directory
 * (vm.log kept only with keep_logs) and free. No callbacks. Accepts NULL.
 */
void vm_runner_destroy(struct vm_runner *r);

/*
 * Check the assets, the monitor and /dev/kvm, make the run directory, listen
 * and spawn the VMM. On failure returns -errno with a one-line reason in
 * err[0..errlen) and leaves nothing behind; on success on_ready or on_done
 * follows.
 */
__attribute__((warn_unused_result)) int
vm_runner_start(struct vm_runner *r, const struct vm_runner_config *cfg, char *err, size_t errlen);

/* Run a command in the guest (see ctl_conn_exec). -ENOTCONN before on_ready. */
__attribute__((warn_unused_result)) int vm_runner_exec(struct vm_runner *r, const char *const *argv,
                                                       size_t argc, const char *const *env,
                                                       size_t envc, const char *cwd,
                                                       bool with_stdin, uint32_t *id);
/* Run a program on a guest PTY (see ctl_conn_pty). -ENOTCONN before on_ready. */
__attribute__((warn_unused_result)) int vm_runner_pty(struct vm_runner *r, const char *const *argv,
                                                      size_t argc, const char *const *env,
                                                      size_t envc, const char *cwd, unsigned cols,
                                                      unsigned rows, uint32_t *id);
/* Forward stdin bytes (len 0 = EOF) to exec `id`. 0 or -errno. */
__attribute__((warn_unused_result)) int vm_runner_send_stdin(struct vm_runner *r, uint32_t id,
                                                             const void *p, size_t len);
/* Forward a signal to exec `id`. 0 or -errno. */
__attribute__((warn_unused_result)) int vm_runner_signal(struct vm_runner *r, uint32_t id, int sig);
/* Bytes queued towards the guest (0 when not connected). */
size_t vm_runner_pending(const struct vm_runner *r);
/* Stop or resume reading guest output (back-pressure). */
void vm_runner_pause(struct vm_runner *r, bool paused);
/*
 * Orderly end: ask the guest to shut down, wait for the VMM to exit (killed
 * after a grace period), clean up, then on_done(0). Safe to call twice.
 */
void vm_runner_stop(struct vm_runner *r);
/* Path of the run directory ("" before start). */
const char *vm_runner_dir(const struct vm_runner *r);
/* PID of the capsem-vmm process, or -1. */
int vm_runner_vmm_pid(const struct vm_runner *r);

/* Text for a capsem-vmm exit status (0 power-off, 1 error, 2 config, 3 crash, 4 signal). */
const char *vm_runner_vmm_status_text(int status);

#endif
