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

/* True when `dev` looks like a virtio-blk disk node: "/dev/vd" then 1-9 letters. */
bool rootfs_device_ok(const char *dev);

/*
 * Mount `dev` (squashfs) under an overlay with a tmpfs upper, copy the agent
 * from `agent_src` to `agent_dst` (mode 0555; must lie in /run), move /dev,
 * /proc, /sys, /run and /tmp into the new root and chroot into it. Call with
 * those mounted. 0 or -errno; on failure before the final switch everything
 * is undone and the initramfs is still `/`.
 */
int rootfs_switch(const char *dev, const char *agent_src, const char *agent_dst);

#endif
