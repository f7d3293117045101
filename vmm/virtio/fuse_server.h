/*
 * FUSE passthrough server behind virtio-fs: takes one request buffer (a
 * fuse_in_header and its arguments), performs it on one host directory and
 * writes the reply buffer. Every guest-visible inode is an O_PATH fd opened
 * one validated name at a time relative to its parent's fd, with O_NOFOLLOW,
 * so no request can reach outside the shared directory: no "..", no '/', no
 * symlink followed on the host, no hardlink source outside the inode table,
 * no device nodes. Tables of inodes and open handles are bounded. No I/O
 * beyond the shared directory itself; one thread (the VMM loop) at a time.
 */
#ifndef CAPSEM_VMM_FUSE_SERVER_H
#define CAPSEM_VMM_FUSE_SERVER_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* Largest WRITE payload we accept and READ we answer (negotiated in INIT). */
#define VMM_FUSE_MAX_WRITE (1u << 20)
/* Request/reply buffers must hold this much: the largest payload plus headers. */
#define VMM_FUSE_BUF_SIZE (VMM_FUSE_MAX_WRITE + 4096u)
/* Bounds on what one guest can make us hold open. */
#define VMM_FUSE_MAX_INODES 65536u
#define VMM_FUSE_MAX_HANDLES 4096u

enum vmm_fs_event_kind {
    VMM_FS_EVENT_CREATE,
    VMM_FS_EVENT_WRITE, /* reported when a handle that was written is released */
    VMM_FS_EVENT_DELETE,
    VMM_FS_EVENT_RENAME,
};

/* One file event. Strings are borrowed for the duration of the callback. */
struct vmm_fs_event {
    enum vmm_fs_event_kind kind;
    const char *path; /* relative to the shared root, no leading '/' */
    const char *to;   /* RENAME: the new path; otherwise NULL */
    uint64_t size;    /* file size after the change (0 for deletes and directories) */
    struct timespec time;
};

/* Receives file events (loop thread). Must not call back into the server. */
typedef void (*vmm_fs_event_fn)(void *opaque, const struct vmm_fs_event *ev);

struct vmm_fuse;

/*
 * One event as a JSON line ("...}\n", NUL-terminated, caller frees):
 * {"event","path","size","time_s","time_ns"} plus "to" for renames and
 * "lossy": true when a name was not UTF-8 (its bytes above 0x7f become '?').
 * NULL when out of memory.
 */
char *vmm_fs_event_json(const struct vmm_fs_event *ev);

/* Short name of an event kind ("create", "write", "delete", "rename"). */
const char *vmm_fs_event_kind_str(enum vmm_fs_event_kind k);

/*
 * Serve the directory `root_fd` (owned, also on failure; any fd on a
 * directory). `sink` may be NULL. Opens /proc/self/fd (needed to reopen
 * O_PATH inodes) and raises RLIMIT_NOFILE, so call it before seccomp.
 * 0 or -errno.
 */
__attribute__((warn_unused_result)) int vmm_fuse_create(struct vmm_fuse **out, int root_fd,
                                                        vmm_fs_event_fn sink, void *opaque);
/* Close every inode and handle. Accepts NULL. */
void vmm_fuse_destroy(struct vmm_fuse *s);
/* Forget all guest state (device reset): only the root stays, INIT is needed again. */
void vmm_fuse_reset(struct vmm_fuse *s);

/*
 * Handle the request in `in` (`in_len` bytes, borrowed) and write the reply
 * into `out` (`out_size` bytes). Returns the reply length, or 0 when the
 * request gets no reply (FORGET, BATCH_FORGET, INTERRUPT, or a buffer too
 * short to hold even a header). Never fails otherwise: bad requests get an
 * error reply.
 */
size_t vmm_fuse_handle(struct vmm_fuse *s, const uint8_t *in, size_t in_len, uint8_t *out,
                       size_t out_size);

/* Inodes and handles currently held (tests and diagnostics). */
void vmm_fuse_counts(const struct vmm_fuse *s, unsigned *inodes, unsigned *handles);

#endif
