/* Guest network configuration, pure parts (see netcfg.h). */
#include "netcfg.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>

static bool port_reserved(unsigned p)
{
    return p == 80 || p == 443 || p == 53 || p == NETCFG_PROXY_PORT || p == NETCFG_DNS_PORT;
}

int netcfg_parse_ports(struct slice list, uint16_t *out, size_t max, size_t *n)
{
    uint16_t tmp[NETCFG_MAX_EXTRA_PORTS];
    size_t cnt = 0;
    size_t i = 0;
    if (max > NETCFG_MAX_EXTRA_PORTS)
        max = NETCFG_MAX_EXTRA_PORTS;
    if (list.len == 0) {
        *n = 0;
        return 0;
    }
    while (i <= list.len) {
        unsigned v = 0;
        size_t digits = 0;
        while (i < list.len && list.ptr[i] != ',') {
            uint8_t c = list.ptr[i];
            if (c < '0' || c > '9')
                return -EINVAL;
            v = v * 10 + (unsigned)(c - '0');
            if (v > 65535)
                return -EINVAL;
            digits++;
            i++;
        }
        if (digits == 0 || v == 0)
            return -EINVAL;
        bool dup = port_reserved(v);
        for (size_t j = 0; j < cnt && !dup; j++)
            dup = tmp[j] == v;
        if (!dup) {
            if (cnt == max)
                return -E2BIG;
            tmp[cnt++] = (uint16_t)v;
        }
        i++; /* past the comma (or the end) */
    }
    for (size_t j = 0; j < cnt; j++)
        out[j] = tmp[j];
    *n = cnt;
    return 0;
}

struct writer {
    char *p;
    size_t size, len;
    bool full;
};

__attribute__((format(printf, 2, 3))) static void put(struct writer *w, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = vsnprintf(w->p + w->len, w->size - w->len, fmt, ap);
    va_end(ap);
    if (r < 0 || (size_t)r >= w->size - w->len) {
        w->full = true;
        return;
    }
    w->len += (size_t)r;
}

int netcfg_rules(char *out, size_t size, const uint16_t *extra, size_t n_extra)
{
    if (size == 0)
        return -ENOSPC;
    struct writer w = {out, size, 0, false};
    out[0] = '\0';
    put(&w,
        "flush ruleset\n"
        "table ip capsem {\n"
        "\tchain nat_out {\n"
        "\t\ttype nat hook output priority -100; policy accept;\n"
        /* DNS first: the guest's resolver is 127.0.0.1:53, which must reach the stub. */
        "\t\tudp dport 53 redirect to :%u\n"
        "\t\ttcp dport 53 redirect to :%u\n"
        "\t\tip daddr 127.0.0.0/8 return\n"
        "\t\ttcp dport { 80, 443",
        NETCFG_DNS_PORT, NETCFG_DNS_PORT);
    for (size_t i = 0; i < n_extra; i++)
        put(&w, ", %u", (unsigned)extra[i]);
    put(&w,
        " } redirect to :%u\n"
        "\t}\n"
        "\tchain filter_out {\n"
        "\t\ttype filter hook output priority 0; policy drop;\n"
        /* Loopback (redirected connections included, their address is 127.0.0.1 by now). */
        "\t\toifname \"lo\" accept\n"
        "\t\tip daddr 127.0.0.0/8 accept\n"
        /* Everything else fails at once rather than hanging. */
        "\t\tmeta l4proto tcp reject with tcp reset\n"
        "\t\treject with icmp type port-unreachable\n"
        "\t}\n"
        "}\n",
        NETCFG_PROXY_PORT);
    if (w.full)
        return -ENOSPC;
    return (int)w.len;
}
