/* capsem-init's guest networking (see net.h). */
#include "net.h"

#include "cmdline.h"
#include "log.h"
#include "netcfg.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <net/route.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define RULES_MAX 4096

struct nlreq {
    struct nlmsghdr nh;
    struct ifinfomsg ifi;
    uint8_t attrs[256];
};

static struct rtattr *rta_add(struct nlreq *r, unsigned short type, const void *data, size_t len)
{
    size_t off = NLMSG_ALIGN(r->nh.nlmsg_len);
    size_t need = RTA_SPACE(len);
    if (off + need > sizeof(*r))
        return NULL;
    struct rtattr *a = (struct rtattr *)((uint8_t *)r + off);
    a->rta_type = type;
    a->rta_len = (unsigned short)RTA_LENGTH(len);
    if (len)
        memcpy(RTA_DATA(a), data, len);
    r->nh.nlmsg_len = (uint32_t)(off + need);
    return a;
}

/* RTM_NEWLINK for a dummy interface named NETCFG_DUMMY_NAME. 0 or -errno. */
static int create_dummy(void)
{
    int ret = 0;
    struct nlreq r;
    memset(&r, 0, sizeof(r));
    r.nh.nlmsg_len = NLMSG_LENGTH(sizeof(r.ifi));
    r.nh.nlmsg_type = RTM_NEWLINK;
    r.nh.nlmsg_flags = NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK;
    r.nh.nlmsg_seq = 1;
    r.ifi.ifi_family = AF_UNSPEC;
    struct rtattr *info;
    if (!rta_add(&r, IFLA_IFNAME, NETCFG_DUMMY_NAME, sizeof(NETCFG_DUMMY_NAME)) ||
        !(info = rta_add(&r, IFLA_LINKINFO, NULL, 0)) || !rta_add(&r, IFLA_INFO_KIND, "dummy", 5))
        return -ENOSPC;
    info->rta_len = (unsigned short)((uint8_t *)&r + r.nh.nlmsg_len - (uint8_t *)info);

    int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (fd < 0)
        return -errno;
    struct sockaddr_nl sa = {.nl_family = AF_NETLINK};
    if (sendto(fd, &r, r.nh.nlmsg_len, 0, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        ret = -errno;
        goto out;
    }
    union {
        struct nlmsghdr nh;
        uint8_t b[1024];
    } ans;
    ssize_t n = recv(fd, &ans, sizeof(ans), 0);
    if (n < 0) {
        ret = -errno;
        goto out;
    }
    if ((size_t)n < NLMSG_LENGTH(sizeof(struct nlmsgerr)) || ans.nh.nlmsg_type != NLMSG_ERROR) {
        ret = -EPROTO;
        goto out;
    }
    const struct nlmsgerr *e = NLMSG_DATA(&ans.nh);
    ret = e->error; /* 0 = ack, else -errno */
out:
    close(fd);
    return ret;
}

static int set_addr(int s, unsigned long req, const char *ip)
{
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    memcpy(ifr.ifr_name, NETCFG_DUMMY_NAME, sizeof(NETCFG_DUMMY_NAME));
    struct sockaddr_in *sin = (struct sockaddr_in *)&ifr.ifr_addr;
    sin->sin_family = AF_INET;
    if (inet_pton(AF_INET, ip, &sin->sin_addr) != 1)
        return -EINVAL;
    return ioctl(s, req, &ifr) < 0 ? -errno : 0;
}

/* Address, netmask, up, default route through dummy0. 0 or -errno. */
static int configure_dummy(void)
{
    int ret = 0;
    char mask[16];
    uint32_t m = NETCFG_DUMMY_PREFIX ? ~0u << (32 - NETCFG_DUMMY_PREFIX) : 0;
    struct in_addr ma = {.s_addr = htonl(m)};
    inet_ntop(AF_INET, &ma, mask, sizeof(mask));
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        return -errno;
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    memcpy(ifr.ifr_name, NETCFG_DUMMY_NAME, sizeof(NETCFG_DUMMY_NAME));
    if ((ret = set_addr(s, SIOCSIFADDR, NETCFG_DUMMY_ADDR)) ||
        (ret = set_addr(s, SIOCSIFNETMASK, mask)))
        goto out;
    if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0) {
        ret = -errno;
        goto out;
    }
    ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
    if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0) {
        ret = -errno;
        goto out;
    }
    struct rtentry rt;
    memset(&rt, 0, sizeof(rt));
    ((struct sockaddr_in *)&rt.rt_dst)->sin_family = AF_INET;
    ((struct sockaddr_in *)&rt.rt_genmask)->sin_family = AF_INET;
    ((struct sockaddr_in *)&rt.rt_gateway)->sin_family = AF_INET;
    rt.rt_flags = RTF_UP;
    char dev[] = NETCFG_DUMMY_NAME;
    rt.rt_dev = dev;
    if (ioctl(s, SIOCADDRT, &rt) < 0)
        ret = -errno;
out:
    close(s);
    return ret;
}

/* Feed `rules` to `nft -f -`; 0 when nft exits 0, else -EIO (nft printed why). */
static int load_rules(const char *rules, size_t len)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return -errno;
    pid_t pid = fork();
    if (pid < 0) {
        int err = errno;
        close(p[0]);
        close(p[1]);
        return -err;
    }
    if (pid == 0) {
        sigset_t all;
        sigemptyset(&all);
        sigprocmask(SIG_SETMASK, &all, NULL);
        dup2(p[0], 0);
        char *const argv[] = {"nft", "-f", "-", NULL};
        execv(NET_NFT, argv);
        _exit(127);
    }
    close(p[0]);
    int ret = 0;
    for (size_t done = 0; done < len;) {
        ssize_t w = write(p[1], rules + done, len - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            ret = -errno;
            break;
        }
        done += (size_t)w;
    }
    close(p[1]);
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return -errno;
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        LOG_ERR("event=nft status=%d err=\"nft -f - refused the rules\"",
                WIFEXITED(st) ? WEXITSTATUS(st) : -1);
        return -EIO;
    }
    return ret;
}

static int write_resolv_conf(void)
{
    static const char text[] = NETCFG_RESOLV_CONF;
    /* Debian may ship it as a symlink (resolvconf, systemd-resolved): replace it. */
    if (unlink("/etc/resolv.conf") < 0 && errno != ENOENT)
        return -errno;
    int fd = open("/etc/resolv.conf", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    int ret = write(fd, text, sizeof(text) - 1) == (ssize_t)(sizeof(text) - 1) ? 0 : -EIO;
    if (close(fd) < 0 && !ret)
        ret = -errno;
    return ret;
}

static int open_listener(int type, uint16_t port, int *out)
{
    int fd = socket(AF_INET, type | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in sa = {
        .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
        (type == SOCK_STREAM && listen(fd, 512) < 0)) {
        int err = errno;
        close(fd);
        return -err;
    }
    *out = fd;
    return 0;
}

/* The relays' pids, for net_relay_reaped(). */
static pid_t relay_pid[2];
static const char *const relay_name[2] = {"capsem-netproxy", "capsem-dnsstub"};

bool net_relay_reaped(pid_t pid, int status)
{
    for (int i = 0; i < 2; i++) {
        if (pid <= 0 || relay_pid[i] != pid)
            continue;
        relay_pid[i] = 0;
        LOG_ERR("event=relay_exit name=%s status=%d signal=%d result=\"its connections are "
                "refused from now on\"",
                relay_name[i], WIFEXITED(status) ? WEXITSTATUS(status) : -1,
                WIFSIGNALED(status) ? WTERMSIG(status) : 0);
        return true;
    }
    return false;
}

/* Start `path` with fds[0..n) as fds 3.. and `args`; 0 and *out (its pid) or -errno. */
static int spawn_relay(const char *path, const int *fds, int n, char *const *argv, pid_t *out)
{
    pid_t pid = fork();
    if (pid < 0)
        return -errno;
    if (pid == 0) {
        sigset_t all;
        sigemptyset(&all);
        sigprocmask(SIG_SETMASK, &all, NULL);
        setsid();
        /* Move them out of the way first, so dup2 never clobbers one not yet moved. */
        int tmp[2];
        for (int i = 0; i < n; i++)
            tmp[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 10);
        for (int i = 0; i < n; i++)
            if (tmp[i] < 0 || dup2(tmp[i], 3 + i) < 0)
                _exit(126);
        execv(path, argv);
        LOG_ERR("event=start_relay path=%s err=\"%s\"", path, strerror(errno));
        _exit(127);
    }
    *out = pid;
    return 0;
}

int net_setup(const char *cmdline, size_t len, const char *proxy, const char *dns)
{
    int ret = 0;
    uint16_t extra[NETCFG_MAX_EXTRA_PORTS];
    size_t n_extra = 0;
    char rules[RULES_MAX];
    int lp = -1, du = -1, dt = -1;
    struct slice v;

    if (access(proxy, X_OK) < 0 || access(dns, X_OK) < 0) {
        ret = -errno;
        LOG_ERR("event=net_relays proxy=%s dns=%s err=\"%s\"", proxy, dns, strerror(-ret));
        goto out;
    }
    if (cmdline_get(cmdline, len, "capsem.http_ports", &v) &&
        (ret = netcfg_parse_ports(v, extra, NETCFG_MAX_EXTRA_PORTS, &n_extra))) {
        LOG_ERR("event=net err=\"capsem.http_ports: expected up to %d comma-separated ports "
                "1-65535\"",
                NETCFG_MAX_EXTRA_PORTS);
        goto out;
    }
    int rl = netcfg_rules(rules, sizeof(rules), extra, n_extra);
    if (rl < 0) {
        ret = rl;
        LOG_ERR("event=net_rules err=\"%s\"", strerror(-ret));
        goto out;
    }
    /* The kernel may have made it already (dummy's numdummies defaults to 1). */
    if ((ret = create_dummy()) && ret != -EEXIST) {
        LOG_ERR("event=net_dummy err=\"%s\"", strerror(-ret));
        goto out;
    }
    if ((ret = configure_dummy())) {
        LOG_ERR("event=net_dummy_config err=\"%s\"", strerror(-ret));
        goto out;
    }
    if ((ret = load_rules(rules, (size_t)rl)))
        goto out;
    if ((ret = write_resolv_conf())) {
        LOG_ERR("event=net_resolv_conf err=\"%s\"", strerror(-ret));
        goto out;
    }
    if ((ret = open_listener(SOCK_STREAM, NETCFG_PROXY_PORT, &lp)) ||
        (ret = open_listener(SOCK_DGRAM, NETCFG_DNS_PORT, &du)) ||
        (ret = open_listener(SOCK_STREAM, NETCFG_DNS_PORT, &dt))) {
        LOG_ERR("event=net_listen err=\"%s\"", strerror(-ret));
        goto out;
    }
    char *const pargv[] = {"capsem-netproxy", "--listen-fd", "3", NULL};
    char *const dargv[] = {"capsem-dnsstub", "--udp-fd", "3", "--tcp-fd", "4", NULL};
    int dfds[2] = {du, dt};
    if ((ret = spawn_relay(proxy, &lp, 1, pargv, &relay_pid[0])) ||
        (ret = spawn_relay(dns, dfds, 2, dargv, &relay_pid[1]))) {
        LOG_ERR("event=net_start_relays err=\"%s\"", strerror(-ret));
        goto out;
    }
out:
    if (lp >= 0)
        close(lp);
    if (du >= 0)
        close(du);
    if (dt >= 0)
        close(dt);
    return ret;
}
