/*
 * capsem-init: PID 1 of the guest. Mounts the pseudo filesystems, brings
 * `lo` up, starts capsem-agent and reaps every orphan. When the agent ends
 * (after the host's `shutdown`, or because it died), or when PID 1 gets
 * SIGTERM/SIGINT/SIGPWR, it syncs, stops every process (SIGTERM, a short
 * grace, SIGKILL) and resets the machine with reboot(RB_AUTOBOOT); with
 * `reboot=k` that goes through the i8042, which ends our VMM.
 *
 * Kernel command line: `capsem.agent=0` keeps the agent from starting
 * (init then idles until told to stop); `capsem.poweroff=1` powers off right
 * after the mounts (boot-time measurements); `capsem.root=/dev/vdX` continues
 * in the Debian root filesystem on that disk (rootfs.c) before anything
 * starts, with the overlay's writable layer on `capsem.scratch=/dev/vdY`
 * when given. The console stays quiet unless something fails: every serial byte
 * is slow in emulation.
 */
#include "cmdline.h"
#include "log.h"
#include "net.h"
#include "rootfs.h"

#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define AGENT_PATH "/sbin/capsem-agent"
#define INIT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
/* Grace between SIGTERM and SIGKILL at power-off, then the wait for the killed. */
#define TERM_GRACE_MS 1000
#define KILL_WAIT_MS 500

struct mount_spec {
    const char *src, *target, *type;
    unsigned long flags;
    const char *data;
};

static const struct mount_spec mounts[] = {
    {"proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL},
    {"sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL},
    {"devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "ptmxmode=0666,mode=0620"},
    {"tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777"},
    {"tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777"},
    {"tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755"},
};

static const char *const dev_links[][2] = {
    {"/proc/self/fd", "/dev/fd"},
    {"/proc/self/fd/0", "/dev/stdin"},
    {"/proc/self/fd/1", "/dev/stdout"},
    {"/proc/self/fd/2", "/dev/stderr"},
};

static void mount_one(const struct mount_spec *m)
{
    if (mkdir(m->target, 0755) < 0 && errno != EEXIST)
        LOG_ERR("event=mkdir path=%s err=\"%s\"", m->target, strerror(errno));
    if (mount(m->src, m->target, m->type, m->flags, m->data) < 0 && errno != EBUSY)
        LOG_ERR("event=mount path=%s type=%s err=\"%s\"", m->target, m->type, strerror(errno));
}

/* Make sure fds 0-2 exist (the kernel leaves them closed when /dev/console was missing). */
static void console_setup(void)
{
    int fd = -1;
    for (int i = 0; i <= 2; i++) {
        if (fcntl(i, F_GETFD) >= 0)
            continue;
        if (fd < 0)
            fd = open("/dev/console", O_RDWR | O_NOCTTY);
        if (fd < 0)
            fd = open("/dev/null", O_RDWR);
        if (fd < 0)
            return;
        if (fd != i)
            dup2(fd, i);
    }
    if (fd > 2)
        close(fd);
}

static void set_hostname_from_etc(void)
{
    char name[65];
    int fd = open("/etc/hostname", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    ssize_t n = read(fd, name, sizeof(name) - 1);
    close(fd);
    if (n <= 0)
        return;
    size_t len = (size_t)n;
    while (len && (name[len - 1] == '\n' || name[len - 1] == ' '))
        len--;
    if (len && sethostname(name, len) < 0)
        LOG_ERR("event=sethostname err=\"%s\"", strerror(errno));
}

static void loopback_up(void)
{
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0) {
        LOG_ERR("event=lo_up err=\"%s\"", strerror(errno));
        return;
    }
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    memcpy(ifr.ifr_name, "lo", 3);
    if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0) {
        LOG_ERR("event=lo_up err=\"%s\"", strerror(errno));
    } else {
        ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
        if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0)
            LOG_ERR("event=lo_up err=\"%s\"", strerror(errno));
    }
    close(s);
}

/* Read /proc/cmdline into buf (NUL-terminated); returns its length (0 on failure). */
static size_t read_cmdline(char *buf, size_t size)
{
    int fd = open("/proc/cmdline", O_RDONLY | O_CLOEXEC);
    size_t len = 0;
    if (fd < 0)
        goto out;
    while (len < size - 1) {
        ssize_t n = read(fd, buf + len, size - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    close(fd);
out:
    buf[len] = '\0';
    return len;
}

/* The initramfs copy, or its copy in /run once we switched into the Debian root. */
static const char *agent_path = AGENT_PATH;
/* True once the switch into the Debian root succeeded. */
static bool in_rootfs;

/* `capsem.root=/dev/vdX`: switch into that root; on failure stay in the initramfs. */
static void maybe_switch_root(void)
{
    char buf[4096];
    char dev[32];
    struct slice v;
    size_t len = read_cmdline(buf, sizeof(buf));
    if (!cmdline_get(buf, len, "capsem.root", &v))
        return;
    if (v.len == 0 || v.len >= sizeof(dev)) {
        LOG_ERR("event=rootfs err=\"capsem.root: expected a device such as /dev/vda\"");
        return;
    }
    memcpy(dev, v.ptr, v.len);
    dev[v.len] = '\0';
    /* The relays, like the agent, run from the initramfs copies, which /run carries over. */
    if (cmdline_is(buf, len, "capsem.net", "1")) {
        int rc;
        if ((rc = rootfs_copy_program(NET_PROXY_SRC, NET_PROXY_RUN)) ||
            (rc = rootfs_copy_program(NET_DNS_SRC, NET_DNS_RUN))) {
            LOG_ERR("event=net_copy err=\"%s\" action=stay_in_initramfs", strerror(-rc));
            return;
        }
    }
    /* `capsem.scratch=/dev/vdX`: the overlay's writable layer on that disk instead of RAM. */
    char scratch[32];
    struct slice sv;
    bool have_scratch =
        cmdline_get(buf, len, "capsem.scratch", &sv) && sv.len && sv.len < sizeof(scratch);
    if (have_scratch) {
        memcpy(scratch, sv.ptr, sv.len);
        scratch[sv.len] = '\0';
    }
    if (rootfs_switch(dev, have_scratch ? scratch : NULL, AGENT_PATH, ROOTFS_AGENT_PATH) == 0) {
        agent_path = ROOTFS_AGENT_PATH;
        in_rootfs = true;
    } else {
        LOG_ERR("event=rootfs dev=%s action=stay_in_initramfs", dev);
    }
}

/* The network relays' /run copies pass the same check as the agent (see start_agent). */
static bool relays_ok(void)
{
    static const char *const relays[] = {NET_PROXY_RUN, NET_DNS_RUN};
    for (size_t i = 0; i < sizeof(relays) / sizeof(relays[0]); i++) {
        int rc = rootfs_program_check(relays[i]);
        if (rc) {
            LOG_ERR("event=program_check path=%s err=\"%s\" want=\"root:root mode 0555 regular "
                    "file\"",
                    relays[i], strerror(-rc));
            return false;
        }
    }
    return true;
}

/*
 * The agent must be the program the initramfs shipped: root-owned, mode
 * 0555 (rootfs_program_check). The initramfs itself was hash-checked by the
 * host before boot, so its bytes are the built ones; this catches a build or
 * a copy that lost the owner or mode. A refused agent is not started.
 */
static pid_t start_agent(const sigset_t *blocked)
{
    int rc = rootfs_program_check(agent_path);
    if (rc) {
        LOG_ERR("event=program_check path=%s err=\"%s\" want=\"root:root mode 0555 regular "
                "file\" action=not_started",
                agent_path, strerror(-rc));
        return -1;
    }
    pid_t pid = fork();
    if (pid < 0) {
        LOG_ERR("event=start_agent err=\"%s\"", strerror(errno));
        return -1;
    }
    if (pid == 0) {
        char *const argv[] = {"capsem-agent", NULL};
        sigprocmask(SIG_UNBLOCK, blocked, NULL);
        setsid();
        execv(agent_path, argv);
        LOG_ERR("event=start_agent path=%s err=\"%s\"", agent_path, strerror(errno));
        _exit(127);
    }
    return pid;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Drain the signalfd; returns the last signal that is not SIGCHLD (0 if none). */
static int drain_signals(int sfd)
{
    struct signalfd_siginfo si;
    int other = 0;
    while (read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si))
        if (si.ssi_signo != SIGCHLD)
            other = (int)si.ssi_signo;
    return other;
}

/* Reap every exited child; returns true when `watch` was among them (status in *st). */
static bool reap_all(pid_t watch, int *st)
{
    bool seen = false;
    int s;
    pid_t pid;
    while ((pid = waitpid(-1, &s, WNOHANG)) > 0) {
        if (pid == watch) {
            seen = true;
            *st = s;
        } else {
            net_relay_reaped(pid, s);
        }
    }
    return seen;
}

/* Wait up to `ms` for every child to be gone. True when none is left. */
static bool wait_children(int sfd, int ms)
{
    int64_t end = now_ms() + ms;
    for (;;) {
        int s;
        pid_t pid;
        while ((pid = waitpid(-1, &s, WNOHANG)) > 0)
            ;
        if (pid < 0 && errno == ECHILD)
            return true;
        int64_t left = end - now_ms();
        if (left <= 0)
            return false;
        struct pollfd p = {.fd = sfd, .events = POLLIN};
        poll(&p, 1, (int)left);
        drain_signals(sfd);
    }
}

static void power_off(int sfd)
{
    sync();
    kill(-1, SIGTERM);
    if (!wait_children(sfd, TERM_GRACE_MS)) {
        kill(-1, SIGKILL);
        wait_children(sfd, KILL_WAIT_MS);
    }
    sync();
    reboot(RB_AUTOBOOT);
    LOG_ERR("event=reboot err=\"%s\"", strerror(errno));
    for (;;)
        pause();
}

/*
 * `capsem.workspace=1`: mount the host's workspace (virtio-fs tag
 * capsem-workspace) at /root, after any switch into the Debian root. Without
 * it /root stays what the root filesystem has. A failed mount is logged and
 * the boot goes on (commands then see an empty /root).
 */
static void mount_workspace(void)
{
    char buf[4096];
    size_t len = read_cmdline(buf, sizeof(buf));
    if (!cmdline_is(buf, len, "capsem.workspace", "1"))
        return;
    if (mkdir("/root", 0700) < 0 && errno != EEXIST)
        LOG_ERR("event=mkdir path=/root err=\"%s\"", strerror(errno));
    /* The image's /root (the agents' config files) before the workspace hides it. */
    int skel = open("/root", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (mount("capsem-workspace", "/root", "virtiofs", MS_NOSUID | MS_NODEV, NULL) < 0) {
        LOG_ERR("event=mount path=/root type=virtiofs err=\"%s\"", strerror(errno));
    } else if (skel >= 0) {
        int home = open("/root", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        int rc = home < 0 ? -errno : rootfs_seed_home(skel, home);
        if (rc)
            LOG_WARN("event=seed_workspace err=\"%s\"", strerror(-rc));
        if (home >= 0)
            close(home);
    }
    if (skel >= 0)
        close(skel);
}

int main(void)
{
    char cmdline[4096];
    sigset_t set;

    log_init("capsem-init", LOG_WARN);
    if (getpid() != 1) {
        LOG_ERR("event=start problem=not_pid_1");
        return 1;
    }
    /* /dev first: the console lives there. */
    if (mount("devtmpfs", "/dev", "devtmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755") < 0 &&
        errno != EBUSY) {
        console_setup();
        LOG_ERR("event=mount path=/dev type=devtmpfs err=\"%s\"", strerror(errno));
    }
    console_setup();
    umask(022);
    for (size_t i = 0; i < sizeof(mounts) / sizeof(mounts[0]); i++)
        mount_one(&mounts[i]);
    for (size_t i = 0; i < sizeof(dev_links) / sizeof(dev_links[0]); i++)
        if (symlink(dev_links[i][0], dev_links[i][1]) < 0 && errno != EEXIST)
            LOG_ERR("event=symlink path=%s err=\"%s\"", dev_links[i][1], strerror(errno));
    maybe_switch_root();
    mount_workspace();
    setenv("PATH", INIT_PATH, 1);
    setenv("HOME", "/root", 1);
    set_hostname_from_etc();
    loopback_up();
    if (chdir("/") < 0)
        LOG_ERR("event=chdir err=\"%s\"", strerror(errno));

    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGPWR);
    sigaddset(&set, SIGHUP);
    sigprocmask(SIG_BLOCK, &set, NULL);
    int sfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    if (sfd < 0) {
        LOG_ERR("event=signalfd err=\"%s\"", strerror(errno));
        for (;;)
            pause();
    }
    /* Ctrl-Alt-Del becomes SIGINT to us instead of an immediate reset. */
    reboot(RB_DISABLE_CAD);

    size_t clen = read_cmdline(cmdline, sizeof(cmdline));
    if (cmdline_is(cmdline, clen, "capsem.poweroff", "1"))
        power_off(sfd);
    if (cmdline_is(cmdline, clen, "capsem.net", "1")) {
        if (!in_rootfs) {
            LOG_WARN("event=net problem=no_root_filesystem result=\"no network: nft lives in "
                     "the Debian root\"");
        } else if (!relays_ok() || net_setup(cmdline, clen, NET_PROXY_RUN, NET_DNS_RUN) != 0) {
            /* Never an open network: no agent, no user program. */
            LOG_ERR("event=net err=\"guest network set-up failed\" action=power_off");
            power_off(sfd);
        }
    }
    pid_t agent = -1;
    if (!cmdline_is(cmdline, clen, "capsem.agent", "0"))
        agent = start_agent(&set);
    if (agent < 0 && !cmdline_is(cmdline, clen, "capsem.agent", "0"))
        power_off(sfd);

    for (;;) {
        struct pollfd p = {.fd = sfd, .events = POLLIN};
        if (poll(&p, 1, -1) < 0 && errno != EINTR)
            LOG_ERR("event=poll err=\"%s\"", strerror(errno));
        int sig = drain_signals(sfd);
        int st = 0;
        if (reap_all(agent, &st)) {
            if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
                LOG_ERR("event=agent_exit status=%d signal=%d action=power_off",
                        WIFEXITED(st) ? WEXITSTATUS(st) : -1, WIFSIGNALED(st) ? WTERMSIG(st) : 0);
            power_off(sfd);
        }
        if (sig == SIGTERM || sig == SIGINT || sig == SIGPWR)
            power_off(sfd);
    }
}
