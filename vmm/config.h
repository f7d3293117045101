/*
 * capsem-vmm configuration: a JSON file (schemas/vmm-config.schema.json)
 * and/or command-line flags for humans. Errors name the field in one line.
 */
#ifndef CAPSEM_VMM_CONFIG_H
#define CAPSEM_VMM_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VMM_CONFIG_MEM_MIN_MIB 32u
#define VMM_CONFIG_MEM_MAX_MIB (1024u * 1024u)
#define VMM_CONFIG_VCPUS_MAX 32u
#define VMM_CONFIG_DISKS_MAX 4u

/* A virtio-blk disk (added after vsock and rng, in order: /dev/vda, vdb…). */
struct vmm_disk {
    char *path;
    bool read_only;
};

struct vmm_config {
    char *kernel;  /* vmlinux path (required) */
    char *initrd;  /* NULL: none */
    char *cmdline; /* appended to the built-in line; NULL: nothing */
    uint64_t memory_mib;
    unsigned vcpus;
    bool vsock; /* a vsock device is configured */
    uint64_t vsock_cid;
    char *vsock_uds;
    char *serial_log; /* NULL: no log file */
    bool serial_stdout;
    bool rng;
    char *fs_dir;    /* virtio-fs: the shared host directory; NULL: no fs device */
    char *fs_tag;    /* its mount tag; NULL: "capsem-workspace" */
    char *fs_events; /* file events appended as JSON lines; NULL: not recorded */
    struct vmm_disk disks[VMM_CONFIG_DISKS_MAX];
    unsigned ndisks;
    bool netns;
    bool seccomp;
};

/* What the command line asks for. */
enum vmm_action {
    VMM_ACTION_RUN,
    VMM_ACTION_PROBE,
    VMM_ACTION_SECCOMP_SELFTEST,
    VMM_ACTION_HELP,
};

/* Defaults: 512 MiB, 1 vCPU, rng, netns and seccomp on, no vsock, no serial log. */
void vmm_config_init(struct vmm_config *c);
/* Free the strings; accepts an initialised or zeroed config. */
void vmm_config_fini(struct vmm_config *c);

/*
 * Merge the JSON object in `text` (`len` bytes) into `c`. On error returns
 * -EINVAL and writes one line naming the field ("memory_mib: expected an
 * integer…") to `err`; `c` may then hold part of the file's values.
 */
__attribute__((warn_unused_result)) int
vmm_config_parse_json(struct vmm_config *c, const char *text, size_t len, char *err, size_t errsz);
/* Read `path` and vmm_config_parse_json() it. -errno for I/O, -EINVAL as above. */
__attribute__((warn_unused_result)) int vmm_config_load_file(struct vmm_config *c, const char *path,
                                                             char *err, size_t errsz);

/*
 * Parse argv: --config FILE first (wherever it is), then the other flags in
 * order over it. Sets *action. 0 or -EINVAL with a one-line message in `err`.
 */
__attribute__((warn_unused_result)) int vmm_config_parse_args(struct vmm_config *c, int argc,
                                                              char **argv, enum vmm_action *action,
                                                              char *err, size_t errsz);

/* Check cross-field rules for running a VM (kernel present…). 0 or -EINVAL + `err`. */
__attribute__((warn_unused_result)) int vmm_config_validate(const struct vmm_config *c, char *err,
                                                            size_t errsz);

/* Usage text for --help. */
extern const char vmm_config_usage[];

#endif
