/*
 * capsem-init's switch into the Debian root filesystem given by
 * `capsem.root=/dev/vdX` (squashfs lower, tmpfs upper, overlayfs root).
 */
#ifndef CAPSEM_GUEST_ROOTFS_H
#define CAPSEM_GUEST_ROOTFS_H

#include <stdbool.h>

/* Size limit of the tmpfs holding the overlay's writable layer (tmpfs syntax). */
#define ROOTFS_UPPER_SIZE "50%"
/* Where the agent is copied before the switch (inside /run, which moves along). */
#define ROOTFS_AGENT_PATH "/run/capsem-agent"

/* Copy the program `src` to `dst` with mode 0555 (used for files that must survive the switch). 0
 * or -errno. */
__attribute__((warn_unused_result)) int rootfs_copy_program(const char *src, const char *dst);

/*
 * Check that the program at `path` may be run by init: a regular file (not a
 * symlink) owned by root:root with mode exactly 0555 (no write bit, no
 * set-id, no sticky bit), as initramfs/build installs it. 0, or -ENOENT
 * (missing), -ELOOP (a symlink), -ENOEXEC (not a regular file), -EPERM
 * (another owner or group), -EACCES (another mode).
 */
__attribute__((warn_unused_result)) int rootfs_program_check(const char *path);

/* True when `dev` looks like a virtio-blk disk node: "/dev/vd" then 1-9 letters. */
bool rootfs_device_ok(const char *dev);

/*
 * Mount `dev` (squashfs) under an overlay with a tmpfs upper (or the ext4
 * disk `scratch` when not NULL and it mounts; else the tmpfs), copy the agent
 * from `agent_src` to `agent_dst` (mode 0555; must lie in /run), move /dev,
 * /proc, /sys, /run and /tmp into the new root and chroot into it. Call with
 * those mounted. 0 or -errno; on failure before the final switch everything
 * is undone and the initramfs is still `/`.
 */
int rootfs_switch(const char *dev, const char *scratch, const char *agent_src,
                  const char *agent_dst);

#endif
