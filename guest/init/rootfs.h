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

/*
 * Seed a workspace mounted over the image's home like /etc/skel: every entry of
 * the directory `skel_fd` (the image's /root, opened before the mount hid it)
 * that `home_fd` lacks is copied in, whole (files up to 1 MiB with their modes,
 * directories, symlinks as they are; set-id bits dropped; nothing else). An
 * entry the workspace already has is left alone. Returns 0, or the first -errno
 * (the other entries are still tried).
 */
int rootfs_seed_home(int skel_fd, int home_fd);

#endif
