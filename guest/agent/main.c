/*
 * capsem-agent: connects to the host over vsock (CID 2, port 5000), then
 * hands the connection to the agent core (agent.c), which serves the control
 * protocol until the host asks for shutdown. Exits 0 after `bye`, 1 on any
 * failure; capsem-init powers the VM off when this process ends.
 *
 * For host-side tests of the whole control path without a VM,
 * CAPSEM_AGENT_UNIX=PATH makes it connect to that Unix socket instead; it
 * then leaves the clock and the host name alone (it is not in a guest), and
 * when PATH ends in "_5000" it opens terminal connections (`pty`, port 5001)
 * to the same PATH ending in "_5001".
 */
#include "agent.h"

#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <linux/vm_sockets.h>

#define CONTROL_PORT 5000
#define TERMINAL_PORT 5001
/*
 * The vsock device may come up a little after us (its probe resets the
 * transport): retry, first after 1 ms, the delay doubling up to 50 ms, so a
 * device that is only just late costs a millisecond rather than a fixed 50 ms
 * step. 106 tries: 1+2+...+32 ms, then 50 ms steps, about 5 s in all.
 */
#define CONNECT_TRIES 106
#define CONNECT_DELAY_MIN_NS (1000l * 1000)
#define CONNECT_DELAY_MAX_NS (50l * 1000 * 1000)
/* Receive buffer the host may fill before it waits for credit (the default is 256 KiB). */
#define VSOCK_BUFFER (1024ull * 1024ull)

static int set_clock(void *ctx, int64_t time_ns)
{
    (void)ctx;
    struct timespec ts = {.tv_sec = time_ns / 1000000000, .tv_nsec = time_ns % 1000000000};
    if (time_ns < 0)
        return -EINVAL;
    return clock_settime(CLOCK_REALTIME, &ts) < 0 ? -errno : 0;
}

/*
 * Set the host name, and name it in /etc/hosts (127.0.1.1) so that programs
 * looking up their own host name find it locally instead of asking the host's
 * DNS policy. A read-only or missing /etc only costs the hosts line.
 */
static int set_hostname(void *ctx, const char *name, size_t len)
{
    (void)ctx;
    if (sethostname(name, len) < 0)
        return -errno;
    char text[256];
    int n = snprintf(text, sizeof(text), "127.0.0.1\tlocalhost\n127.0.1.1\t%.*s\n", (int)len, name);
    if (n < 0 || (size_t)n >= sizeof(text))
        return 0;
    int fd =
        open("/etc/hosts.capsem-tmp", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0)
        return 0;
    bool ok = write(fd, text, (size_t)n) == n;
    ok &= close(fd) == 0;
    if (!ok || rename("/etc/hosts.capsem-tmp", "/etc/hosts") < 0)
        unlink("/etc/hosts.capsem-tmp");
    return 0;
}

/* Connect to the host's vsock `port`; 0 and *out, or -errno after `tries` attempts. */
static int connect_host(unsigned port, int tries, int *out)
{
    int err = 0;
    long delay = CONNECT_DELAY_MIN_NS;
    for (int i = 0; i < tries; i++) {
        if (i > 0) {
            struct timespec d = {0, delay};
            nanosleep(&d, NULL);
            delay = delay * 2 > CONNECT_DELAY_MAX_NS ? CONNECT_DELAY_MAX_NS : delay * 2;
        }
        int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return -errno;
        /* Bigger credit for stdin throughput; the default still works when refused. */
        unsigned long long size = VSOCK_BUFFER;
        (void)setsockopt(fd, AF_VSOCK, SO_VM_SOCKETS_BUFFER_MAX_SIZE, &size, sizeof(size));
        (void)setsockopt(fd, AF_VSOCK, SO_VM_SOCKETS_BUFFER_SIZE, &size, sizeof(size));
        struct sockaddr_vm sa = {
            .svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_HOST, .svm_port = port};
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
            *out = fd;
            return 0;
        }
        err = errno;
        close(fd);
    }
    return -err;
}

/* Connect to the Unix socket `path` (test hook); 0 and *out or -errno. */
static int connect_unix(const char *path, int *out)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if ((size_t)snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path) >= sizeof(sa.sun_path))
        return -ENAMETOOLONG;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        int err = errno;
        close(fd);
        return -err;
    }
    *out = fd;
    return 0;
}

/* Unix socket for terminal connections in the host-side test mode, or "". */
static char term_unix[108];

static int connect_terminal(void *ctx, uint32_t id)
{
    (void)ctx;
    (void)id;
    int fd = -1;
    int rc = term_unix[0] ? connect_unix(term_unix, &fd) : connect_host(TERMINAL_PORT, 1, &fd);
    return rc ? rc : fd;
}

int main(void)
{
    struct agent *a = NULL;
    int fd = -1;
    int rc;

    log_init("capsem-agent", LOG_WARN);
    const char *unix_path = getenv("CAPSEM_AGENT_UNIX");
    struct agent_options opt = {.version = AGENT_VERSION, .connect_terminal = connect_terminal};
    if (unix_path) {
        size_t ul = strlen(unix_path);
        if (ul > 5 && ul < sizeof(term_unix) && strcmp(unix_path + ul - 5, "_5000") == 0) {
            memcpy(term_unix, unix_path, ul - 1);
            term_unix[ul - 1] = '1';
        } else {
            opt.connect_terminal = NULL; /* `pty` is answered with an error */
        }
        rc = connect_unix(unix_path, &fd);
        if (rc) {
            LOG_ERR("event=connect path=%s err=\"%s\"", unix_path, strerror(-rc));
            goto out;
        }
    } else {
        rc = connect_host(CONTROL_PORT, CONNECT_TRIES, &fd);
        if (rc) {
            LOG_ERR("event=connect cid=2 port=%d err=\"%s\"", CONTROL_PORT, strerror(-rc));
            goto out;
        }
        opt.set_clock = set_clock;
        opt.set_hostname = set_hostname;
        opt.ca_root = "/";
    }
    rc = agent_create(fd, &opt, &a);
    if (rc) {
        LOG_ERR("event=agent_create err=\"%s\"", strerror(-rc));
        close(fd);
        goto out;
    }
    rc = agent_run(a);
out:
    agent_destroy(a);
    return rc ? 1 : 0;
}
