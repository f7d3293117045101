/*
 * Network namespace and seccomp allowlist. The list is what the VMM does
 * after setup: vCPU threads run KVM_RUN and a few KVM ioctls, the loop
 * thread does epoll and Unix-socket I/O for the vsock muxer, eventfds, and
 * getrandom for virtio-rng; the main thread kicks and joins vCPU threads and
 * unlinks its sockets at the end. Everything else is refused with EPERM.
 */
#include "isolate.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <sched.h>
#include <seccomp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "log.h"

static int write_file(const char *path, const char *text)
{
    int ret = 0;
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    size_t len = strlen(text);
    if (write(fd, text, len) != (ssize_t)len)
        ret = -errno;
    close(fd);
    return ret;
}

int vmm_isolate_netns(void)
{
    if (geteuid() == 0)
        return unshare(CLONE_NEWNET) < 0 ? -errno : 0;
    uid_t uid = geteuid();
    gid_t gid = getegid();
    if (unshare(CLONE_NEWUSER | CLONE_NEWNET) < 0)
        return -errno;
    /* Keep our own ids visible inside; failure only changes how ids display. */
    char map[64];
    snprintf(map, sizeof(map), "%u %u 1\n", (unsigned)uid, (unsigned)uid);
    if (write_file("/proc/self/uid_map", map) < 0)
        LOG_WARN("msg=\"cannot write uid_map in the new user namespace\"");
    if (write_file("/proc/self/setgroups", "deny") == 0) {
        snprintf(map, sizeof(map), "%u %u 1\n", (unsigned)gid, (unsigned)gid);
        if (write_file("/proc/self/gid_map", map) < 0)
            LOG_WARN("msg=\"cannot write gid_map in the new user namespace\"");
    }
    return 0;
}

static const int plain_syscalls[] = {
    SCMP_SYS(read),
    SCMP_SYS(write),
    SCMP_SYS(readv),
    SCMP_SYS(writev),
    SCMP_SYS(pread64),
    SCMP_SYS(pwrite64),
    SCMP_SYS(close),
    SCMP_SYS(lseek),
    SCMP_SYS(epoll_wait),
    SCMP_SYS(epoll_pwait),
    SCMP_SYS(epoll_ctl),
    SCMP_SYS(eventfd2),
    SCMP_SYS(poll),
    SCMP_SYS(ppoll),
    SCMP_SYS(timerfd_create),
    SCMP_SYS(timerfd_settime),
    SCMP_SYS(timerfd_gettime),
    SCMP_SYS(accept),
    SCMP_SYS(accept4),
    SCMP_SYS(connect),
    SCMP_SYS(sendmsg),
    SCMP_SYS(recvmsg),
    SCMP_SYS(sendto),
    SCMP_SYS(recvfrom),
    SCMP_SYS(shutdown),
    SCMP_SYS(getsockopt),
    SCMP_SYS(setsockopt),
    SCMP_SYS(getsockname),
    SCMP_SYS(getpeername),
    SCMP_SYS(fcntl),
    SCMP_SYS(futex),
    SCMP_SYS(clock_gettime),
    SCMP_SYS(clock_getres),
    SCMP_SYS(gettimeofday),
    SCMP_SYS(clock_nanosleep),
    SCMP_SYS(nanosleep),
    SCMP_SYS(exit),
    SCMP_SYS(exit_group),
    SCMP_SYS(munmap),
    SCMP_SYS(madvise),
    SCMP_SYS(brk),
    SCMP_SYS(mremap),
    SCMP_SYS(getrandom),
    SCMP_SYS(rt_sigreturn),
    SCMP_SYS(rt_sigprocmask),
    SCMP_SYS(restart_syscall),
    SCMP_SYS(tgkill),
    SCMP_SYS(gettid),
    SCMP_SYS(getpid),
    SCMP_SYS(sched_yield),
    SCMP_SYS(unlink),
    SCMP_SYS(unlinkat),
    SCMP_SYS(fstat),
    SCMP_SYS(pipe2),
    SCMP_SYS(ftruncate),   /* restarting the size-capped serial log */
    SCMP_SYS(sigaltstack), /* sanitizer builds query it on every intercepted signal */
    SCMP_SYS(dup),
    SCMP_SYS(fdatasync), /* virtio-blk FLUSH */
};

/* virtio-fs calls on fds the FUSE server already holds. */
static const int fs_fd_syscalls[] = {
    SCMP_SYS(fsync),   SCMP_SYS(fdatasync),  SCMP_SYS(fallocate),
    SCMP_SYS(fstatfs), SCMP_SYS(getdents64),
};

/* virtio-fs *at calls, allowed only with a real directory fd as the first argument. */
static const int fs_at_syscalls[] = {
    SCMP_SYS(openat),    SCMP_SYS(newfstatat), SCMP_SYS(mkdirat),    SCMP_SYS(unlinkat),
    SCMP_SYS(renameat2), SCMP_SYS(symlinkat),  SCMP_SYS(readlinkat), SCMP_SYS(linkat),
    SCMP_SYS(fchmodat),  SCMP_SYS(utimensat),  SCMP_SYS(faccessat),  SCMP_SYS(faccessat2),
    SCMP_SYS(renameat), /* glibc's renameat2() with flags 0 */
};

static const unsigned long allowed_ioctls[] = {
    KVM_RUN,   KVM_IRQ_LINE, KVM_IRQ_LINE_STATUS, KVM_IOEVENTFD,
    KVM_IRQFD, KVM_GET_REGS, KVM_GET_SREGS,       FIONBIO,
    FIONREAD,  FIOCLEX,
};

int vmm_isolate_seccomp(void)
{
    int ret = 0;
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ERRNO(EPERM));
    if (!ctx)
        return -ENOMEM;
    ret = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_TSYNC, 1);
    if (ret)
        goto out;
    for (size_t i = 0; i < sizeof(plain_syscalls) / sizeof(plain_syscalls[0]); i++) {
        ret = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, plain_syscalls[i], 0);
        if (ret)
            goto out;
    }
    for (size_t i = 0; i < sizeof(fs_fd_syscalls) / sizeof(fs_fd_syscalls[0]); i++) {
        ret = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, fs_fd_syscalls[i], 0);
        if (ret)
            goto out;
    }
    for (size_t i = 0; i < sizeof(allowed_ioctls) / sizeof(allowed_ioctls[0]); i++) {
        ret = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1,
                               SCMP_A1(SCMP_CMP_EQ, allowed_ioctls[i]));
        if (ret)
            goto out;
    }
    /* Unix sockets only: the vsock muxer's. */
    ret = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socket), 1, SCMP_A0(SCMP_CMP_EQ, AF_UNIX));
    if (ret)
        goto out;
    ret = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socketpair), 1,
                           SCMP_A0(SCMP_CMP_EQ, AF_UNIX));
    if (ret)
        goto out;
    /* fstat() on an open fd (stdio does one before its first write), not a path lookup. */
    ret = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(newfstatat), 1,
                           SCMP_A3(SCMP_CMP_MASKED_EQ, AT_EMPTY_PATH, AT_EMPTY_PATH));
    if (ret)
        goto out;
    /*
     * virtio-fs: path calls relative to a directory fd the FUSE server holds
     * (never AT_FDCWD, so nothing is resolved from the VMM's working
     * directory; absolute names never reach these calls, see fuse_server.c).
     */
    for (size_t i = 0; i < sizeof(fs_at_syscalls) / sizeof(fs_at_syscalls[0]); i++) {
        ret = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, fs_at_syscalls[i], 1,
                               SCMP_A0_32(SCMP_CMP_NE, (uint32_t)AT_FDCWD));
        if (ret)
            goto out;
    }
    /* Memory for buffers, never executable. */
    ret = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(mmap), 1,
                           SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0));
    if (ret)
        goto out;
    ret = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(mprotect), 1,
                           SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0));
    if (ret)
        goto out;
    ret = seccomp_load(ctx);
out:
    seccomp_release(ctx);
    return ret > 0 ? -ret : ret;
}

static int check(const char *what, bool ok, int *failures)
{
    printf("seccomp-selftest: %s: %s\n", what, ok ? "ok" : "FAILED");
    if (!ok)
        (*failures)++;
    return 0;
}

int vmm_isolate_selftest(void)
{
    int failures = 0;
    char path[64];
    snprintf(path, sizeof(path), "/tmp/capsem-seccomp-selftest.%d", (int)getpid());
    fflush(stdout);
    int ret = vmm_isolate_seccomp();
    if (ret) {
        printf("seccomp-selftest: cannot install the filter: %s\n", strerror(-ret));
        return 1;
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    int err = errno;
    check("open(O_CREAT) of a new file is refused with EPERM", fd < 0 && err == EPERM, &failures);
    if (fd >= 0) {
        close(fd);
        unlink(path);
    }
    char *const argv[] = {(char *)"/bin/true", NULL};
    char *const envp[] = {NULL};
    int r = execve("/bin/true", argv, envp);
    err = errno;
    check("execve is refused with EPERM", r < 0 && err == EPERM, &failures);
    fd = socket(AF_INET, SOCK_STREAM, 0);
    err = errno;
    check("socket(AF_INET) is refused with EPERM", fd < 0 && err == EPERM, &failures);
    if (fd >= 0)
        close(fd);
    void *p = mmap(NULL, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    err = errno;
    check("mmap(PROT_EXEC) is refused with EPERM", p == MAP_FAILED && err == EPERM, &failures);
    if (p != MAP_FAILED)
        munmap(p, 4096);
    r = (int)syscall(SYS_fork);
    err = errno;
    check("fork is refused with EPERM", r < 0 && err == EPERM, &failures);
    if (r == 0)
        _exit(0);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    check("socket(AF_UNIX) is allowed", fd >= 0, &failures);
    if (fd >= 0)
        close(fd);
    uint8_t rnd[8];
    check("getrandom is allowed", getrandom(rnd, sizeof(rnd), 0) == (ssize_t)sizeof(rnd),
          &failures);
    printf("seccomp-selftest: %s\n", failures ? "FAILED" : "passed");
    fflush(stdout);
    return failures ? 1 : 0;
}
