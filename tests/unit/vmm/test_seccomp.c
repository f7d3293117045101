/*
 * The seccomp allowlist, installed for real in a forked child (it cannot be
 * removed again): forbidden calls (creating a file, execve, fork, an
 * AF_INET socket, an executable mapping, a non-KVM ioctl) fail with EPERM
 * and have no effect, while what the VMM needs (Unix sockets, eventfd,
 * getrandom, plain memory) still works. The child reports through its exit
 * status which check failed. The empty network namespace is checked the
 * same way, as root and as an unprivileged user (through a user namespace):
 * a new namespace whose only interface is a loopback that is down.
 */
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>
#include <cmocka.h>

#include "isolate.h"

static char path[64];

/* Returns 0, or the number of the first failed check. */
static int child(void)
{
    if (vmm_isolate_seccomp() != 0)
        return 1;
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd >= 0 || errno != EPERM)
        return 2;
    char *const argv[] = {(char *)"/bin/true", NULL};
    char *const envp[] = {NULL};
    if (execve("/bin/true", argv, envp) == 0 || errno != EPERM)
        return 3;
    long pid = syscall(SYS_fork);
    if (pid == 0)
        _exit(0);
    if (pid >= 0 || errno != EPERM)
        return 4;
    if (socket(AF_INET, SOCK_STREAM, 0) >= 0 || errno != EPERM)
        return 5;
    if (socket(AF_INET6, SOCK_DGRAM, 0) >= 0 || errno != EPERM)
        return 6;
    if (mmap(NULL, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) != MAP_FAILED ||
        errno != EPERM)
        return 7;
    struct termios t;
    if (ioctl(0, TCGETS, &t) == 0 || errno != EPERM)
        return 8;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
        return 9;
    if (write(sv[0], "x", 1) != 1)
        return 10;
    char c;
    if (read(sv[1], &c, 1) != 1 || c != 'x')
        return 11;
    int efd = eventfd(0, EFD_CLOEXEC);
    if (efd < 0)
        return 12;
    uint8_t rnd[16];
    if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
        return 13;
    void *p = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return 14;
    memset(p, 1, 1 << 20);
    if (mprotect(p, 4096, PROT_READ | PROT_EXEC) == 0 || errno != EPERM)
        return 15;
    return 0;
}

static void test_vmm_isolate_seccomp_refuses_forbidden(void **state)
{
    (void)state;
    snprintf(path, sizeof(path), "/tmp/test-vmm-seccomp.%d", (int)getpid());
    unlink(path);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(child());
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    if (WEXITSTATUS(st) != 0)
        fail_msg("seccomp check %d failed in the child", WEXITSTATUS(st));
    struct stat sb;
    assert_int_equal(stat(path, &sb), -1); /* the refused open created nothing */
}

/* Returns 0, 77 when user namespaces are not available to this user, or the failed check. */
static int netns_child(bool drop_root)
{
    char before[64] = "", after[64] = "";
    if (drop_root && geteuid() == 0 &&
        (setresgid(65534, 65534, 65534) != 0 || setresuid(65534, 65534, 65534) != 0))
        return 1;
    /* A real unprivileged user is dumpable; setresuid() from root cleared it. */
    prctl(PR_SET_DUMPABLE, 1);
    if (readlink("/proc/self/ns/net", before, sizeof(before) - 1) <= 0)
        return 2;
    int ret = vmm_isolate_netns();
    if (ret == -EPERM || ret == -ENOSPC || ret == -EINVAL)
        return drop_root ? 77 : 3;
    if (ret != 0)
        return 4;
    if (readlink("/proc/self/ns/net", after, sizeof(after) - 1) <= 0)
        return 5;
    if (strcmp(before, after) == 0)
        return 6; /* still in the old namespace */
    struct if_nameindex *ifs = if_nameindex();
    if (!ifs)
        return 7;
    int n = 0;
    for (struct if_nameindex *i = ifs; i->if_index; i++, n++)
        if (strcmp(i->if_name, "lo") != 0)
            return 8;
    if_freenameindex(ifs);
    if (n > 1)
        return 9;
    /* nothing is reachable, not even loopback */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(9)};
    sa.sin_addr.s_addr = htonl(0x7f000001);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
        return 10;
    return 0;
}

static void run_netns(bool drop_root)
{
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(netns_child(drop_root));
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    if (WEXITSTATUS(st) == 77)
        skip();
    if (WEXITSTATUS(st) != 0)
        fail_msg("netns check %d failed in the child", WEXITSTATUS(st));
}

static void test_vmm_isolate_netns_empty(void **state)
{
    (void)state;
    run_netns(false);
}

static void test_vmm_isolate_netns_unprivileged(void **state)
{
    (void)state;
    run_netns(true);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vmm_isolate_seccomp_refuses_forbidden),
        cmocka_unit_test(test_vmm_isolate_netns_empty),
        cmocka_unit_test(test_vmm_isolate_netns_unprivileged),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
