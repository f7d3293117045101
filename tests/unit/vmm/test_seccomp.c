/*
 * The seccomp allowlist, installed for real in a forked child (it cannot be
 * removed again): forbidden calls (creating a file, execve, fork, an
 * AF_INET socket, an executable mapping, a non-KVM ioctl) fail with EPERM
 * and have no effect, while what the VMM needs (Unix sockets, eventfd,
 * getrandom, plain memory) still works. The child reports through its exit
 * status which check failed.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vmm_isolate_seccomp_refuses_forbidden),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
