/*
 * capsem-init's switch into the Debian root filesystem. With
 * `capsem.root=/dev/vdX` on the kernel command line, init mounts that disk
 * (squashfs, read-only) as the lower layer of an overlayfs whose upper layer
 * is a size-limited tmpfs (or, with `capsem.scratch=/dev/vdX`, the ext4
 * scratch disk the host formatted), binds /usr read-only over itself, copies
 * capsem-agent to /run (mode 0555, so the agent keeps coming from the
 * initramfs the host built), moves /dev, /proc, /sys, /run and /tmp into the
 * new root and makes it `/`. The initramfs stays in memory underneath (it is
 * a few MiB). Any failure leaves init in the initramfs, says why on the
 * console and returns an error: the caller carries on there.
 */
#include "rootfs.h"

#include "log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define LOWER "/.capsem-lower"
#define RW "/.capsem-rw"
#define NEWROOT "/.capsem-root"

/* Mounts moved from the initramfs into the new root (their sub-mounts go along). */
static const char *const moved[] = {"/dev", "/proc", "/sys", "/run", "/tmp"};

static int mkdir_p(const char *path, mode_t mode)
{
    if (mkdir(path, mode) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

static int do_mount(const char *src, const char *dst, const char *type, unsigned long flags,
                    const char *data)
{
    if (mount(src, dst, type, flags, data) < 0) {
        int e = errno;
        LOG_ERR("event=rootfs_mount src=%s path=%s type=%s err=\"%s\"", src, dst, type ? type : "-",
                strerror(e));
        return -e;
    }
    return 0;
}

/* Copy `src` to `dst` (created 0555). 0 or -errno. */
static int copy_file(const char *src, const char *dst)
{
    int ret = 0;
    char buf[65536];
    int in = open(src, O_RDONLY | O_CLOEXEC);
    int out = -1;
    if (in < 0) {
        ret = -errno;
        goto out;
    }
    out = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0555);
    if (out < 0) {
        ret = -errno;
        goto out;
    }
    for (;;) {
        ssize_t n = read(in, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            ret = -errno;
            goto out;
        }
        if (n == 0)
            break;
        for (ssize_t done = 0; done < n;) {
            ssize_t w = write(out, buf + done, (size_t)(n - done));
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0) {
                ret = -errno;
                goto out;
            }
            done += w;
        }
    }
    if (fchmod(out, 0555) < 0)
        ret = -errno;
out:
    if (in >= 0)
        close(in);
    if (out >= 0 && close(out) < 0 && !ret)
        ret = -errno;
    return ret;
}

int rootfs_copy_program(const char *src, const char *dst)
{
    return copy_file(src, dst);
}

int rootfs_program_check(const char *path)
{
    struct stat st;
    if (lstat(path, &st) < 0)
        return -errno;
    if (S_ISLNK(st.st_mode))
        return -ELOOP;
    if (!S_ISREG(st.st_mode))
        return -ENOEXEC;
    if (st.st_uid != 0 || st.st_gid != 0)
        return -EPERM;
    if ((st.st_mode & 07777) != 0555)
        return -EACCES;
    return 0;
}

bool rootfs_device_ok(const char *dev)
{
    size_t n = strlen(dev);
    if (n < 8 || n > 16 || strncmp(dev, "/dev/vd", 7) != 0)
        return false;
    for (size_t i = 7; i < n; i++)
        if (dev[i] < 'a' || dev[i] > 'z')
            return false;
    return true;
}

/* The disk node appears when virtio-blk has probed; wait up to 2 s for it. */
static int wait_for(const char *dev)
{
    struct stat st;
    for (int i = 0; i < 200; i++) {
        if (stat(dev, &st) == 0)
            return S_ISBLK(st.st_mode) ? 0 : -ENOTBLK;
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return -ENOENT;
}

/*
 * The overlay's writable layer at RW: the scratch disk (ext4) when one is
 * given and mounts, else a size-limited tmpfs. A scratch disk that is
 * missing or does not mount is logged and RAM is used instead.
 */
static int mount_upper(const char *scratch)
{
    char opts[128];
    if (scratch) {
        int rc = rootfs_device_ok(scratch) ? wait_for(scratch) : -EINVAL;
        /* noinit_itable: no background zeroing of inode tables, so the sparse file stays small. */
        if (!rc)
            rc = do_mount(scratch, RW, "ext4", MS_NOSUID | MS_NODEV, "noinit_itable");
        if (!rc)
            return 0;
        LOG_ERR("event=rootfs_scratch dev=\"%.32s\" err=\"%s\" action=upper_in_ram", scratch,
                strerror(-rc));
    }
    snprintf(opts, sizeof(opts), "size=%s,mode=0755", ROOTFS_UPPER_SIZE);
    return do_mount("tmpfs", RW, "tmpfs", MS_NOSUID | MS_NODEV, opts);
}

int rootfs_switch(const char *dev, const char *scratch, const char *agent_src,
                  const char *agent_dst)
{
    int ret = 0;
    char path[64];
    /* How far the set-up got, for the clean-up on failure. */
    enum { NONE, LOWER_UP, RW_UP, OVERLAY_UP, MOVING, SWITCHED } stage = NONE;

    if (!rootfs_device_ok(dev)) {
        LOG_ERR("event=rootfs dev=\"%.32s\" err=\"expected /dev/vd followed by letters\"", dev);
        ret = -EINVAL;
        goto out;
    }
    if ((ret = wait_for(dev))) {
        LOG_ERR("event=rootfs dev=%s err=\"%s\"", dev, strerror(-ret));
        goto out;
    }
    if ((ret = mkdir_p(LOWER, 0755)) || (ret = mkdir_p(RW, 0755)) ||
        (ret = mkdir_p(NEWROOT, 0755))) {
        LOG_ERR("event=rootfs_mkdir err=\"%s\"", strerror(-ret));
        goto out;
    }
    if ((ret = do_mount(dev, LOWER, "squashfs", MS_RDONLY | MS_NOSUID | MS_NODEV, NULL)))
        goto out;
    stage = LOWER_UP;
    if ((ret = mount_upper(scratch)))
        goto out;
    stage = RW_UP;
    if ((ret = mkdir_p(RW "/upper", 0755)) || (ret = mkdir_p(RW "/work", 0755))) {
        LOG_ERR("event=rootfs_mkdir err=\"%s\"", strerror(-ret));
        goto out;
    }
    if ((ret = do_mount("overlay", NEWROOT, "overlay", MS_NOSUID,
                        "lowerdir=" LOWER ",upperdir=" RW "/upper,workdir=" RW "/work")))
        goto out;
    stage = OVERLAY_UP;
    /* /usr stays read-only even though the overlay above it is writable. */
    if ((ret = do_mount(NEWROOT "/usr", NEWROOT "/usr", NULL, MS_BIND, NULL)) ||
        (ret = do_mount(NULL, NEWROOT "/usr", NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID,
                        NULL)))
        goto out;
    /* The agent runs from the host-built initramfs copy, not whatever the image holds. */
    if ((ret = copy_file(agent_src, agent_dst))) {
        LOG_ERR("event=rootfs_agent_copy src=%s dst=%s err=\"%s\"", agent_src, agent_dst,
                strerror(-ret));
        goto out;
    }
    stage = MOVING;
    for (size_t i = 0; i < sizeof(moved) / sizeof(moved[0]); i++) {
        snprintf(path, sizeof(path), NEWROOT "%s", moved[i]);
        if ((ret = mkdir_p(path, 0755))) {
            LOG_ERR("event=rootfs_mkdir path=%s err=\"%s\"", path, strerror(-ret));
            goto out;
        }
        if ((ret = do_mount(moved[i], path, NULL, MS_MOVE, NULL)))
            goto out;
    }
    stage = SWITCHED;
    if (chdir(NEWROOT) < 0 || mount(".", "/", NULL, MS_MOVE, NULL) < 0 || chroot(".") < 0 ||
        chdir("/") < 0) {
        /* Past the point of return: the pseudo filesystems already live in the new root. */
        ret = -errno;
        LOG_ERR("event=rootfs_switch err=\"%s\"", strerror(-ret));
    }
out:
    if (ret && stage >= MOVING && stage < SWITCHED) {
        /* Put back what was moved so the initramfs keeps working. */
        for (size_t i = 0; i < sizeof(moved) / sizeof(moved[0]); i++) {
            snprintf(path, sizeof(path), NEWROOT "%s", moved[i]);
            mount(path, moved[i], NULL, MS_MOVE, NULL);
        }
    }
    if (ret && stage >= OVERLAY_UP && stage < SWITCHED) {
        umount2(NEWROOT "/usr", MNT_DETACH);
        umount2(NEWROOT, MNT_DETACH);
    }
    if (ret && stage >= RW_UP && stage < SWITCHED)
        umount2(RW, MNT_DETACH);
    if (ret && stage >= LOWER_UP && stage < SWITCHED)
        umount2(LOWER, MNT_DETACH);
    return ret;
}

/* Copy regular file `name` from sdir to ddir with its mode; a file over 1 MiB is skipped. */
static int seed_file(int sdir, int ddir, const char *name, const struct stat *st)
{
    if (st->st_size > (1 << 20))
        return 0;
    int rc = 0;
    int in = openat(sdir, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (in < 0)
        return -errno;
    int out = openat(ddir, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                     st->st_mode & 07777 & ~(mode_t)(S_ISUID | S_ISGID));
    if (out < 0) {
        rc = -errno;
        goto out;
    }
    char buf[16384];
    for (;;) {
        ssize_t n = read(in, buf, sizeof(buf));
        if (n < 0) {
            rc = -errno;
            break;
        }
        if (n == 0)
            break;
        if (write(out, buf, (size_t)n) != n) {
            rc = -EIO;
            break;
        }
    }
    if (close(out) < 0 && !rc)
        rc = -errno;
out:
    close(in);
    return rc;
}

static int seed_tree(int sdir, int ddir, int depth);

/* Copy entry `name` (a file, directory or symlink) from sdir into ddir. */
static int seed_entry(int sdir, int ddir, const char *name, int depth)
{
    struct stat st;
    if (fstatat(sdir, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return -errno;
    if (S_ISREG(st.st_mode))
        return seed_file(sdir, ddir, name, &st);
    if (S_ISLNK(st.st_mode)) {
        char target[4096];
        ssize_t n = readlinkat(sdir, name, target, sizeof(target) - 1);
        if (n < 0)
            return -errno;
        target[n] = '\0';
        return symlinkat(target, ddir, name) < 0 ? -errno : 0;
    }
    if (!S_ISDIR(st.st_mode) || depth >= 8)
        return 0; /* devices, fifos, sockets and deep trees are not seeded */
    if (mkdirat(ddir, name, st.st_mode & 0777) < 0)
        return -errno;
    int s = openat(sdir, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    int d = openat(ddir, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    int rc = s < 0 || d < 0 ? -errno : seed_tree(s, d, depth + 1);
    if (s >= 0)
        close(s);
    if (d >= 0)
        close(d);
    return rc;
}

/* Every entry of sdir missing from ddir, copied; the first error is returned, the rest go on. */
static int seed_tree(int sdir, int ddir, int depth)
{
    int fd = dup(sdir);
    if (fd < 0)
        return -errno;
    DIR *dir = fdopendir(fd);
    if (!dir) {
        close(fd);
        return -errno;
    }
    rewinddir(dir);
    int rc = 0;
    struct dirent *e;
    while ((e = readdir(dir))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        struct stat st;
        if (fstatat(ddir, e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0)
            continue; /* what the workspace has wins, whole */
        int r = seed_entry(sdir, ddir, e->d_name, depth);
        if (r && !rc)
            rc = r;
    }
    closedir(dir);
    return rc;
}

int rootfs_seed_home(int skel_fd, int home_fd)
{
    return seed_tree(skel_fd, home_fd, 0);
}
