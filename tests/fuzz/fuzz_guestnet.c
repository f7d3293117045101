/*
 * Fuzz target for the guest network parsers that read text or bytes from
 * outside the program: /proc/net/tcp lines and /proc/PID/fd links
 * (guest/netproxy/cnet.c), the `capsem.http_ports` list
 * (guest/init/netcfg.c) and DNS queries from guest clients, which the stub
 * stores and echoes in SERVFAIL answers (guest/dnsstub/dnsid.c). The first
 * byte picks the parser; the rest is its input.
 */
#include "cnet.h"
#include "dnsid.h"
#include "netcfg.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t sel = data[0] % 4;
    const uint8_t *p = data + 1;
    size_t n = size - 1;
    /* A copy of exactly n bytes, so reading past the input shows up under ASan. */
    char *copy = malloc(n ? n : 1);
    if (!copy)
        return 0;
    memcpy(copy, p, n);
    switch (sel) {
    case 0: {
        uint64_t ino = 0;
        struct cnet_tcp_entry e;
        (void)cnet_tcp_find_inode(copy, n, 0x0a00020f, 0xa1b2, &ino);
        if (cnet_tcp_parse_line(copy, n, &e) == 0 && e.inode == 0 && n == 0)
            abort(); /* an empty line never parses */
        break;
    }
    case 1: {
        uint16_t ports[NETCFG_MAX_EXTRA_PORTS];
        size_t np = 0;
        char rules[4096];
        struct slice s = {(const uint8_t *)copy, n};
        if (netcfg_parse_ports(s, ports, NETCFG_MAX_EXTRA_PORTS, &np) == 0 &&
            netcfg_rules(rules, sizeof(rules), ports, np) < 0)
            abort(); /* any accepted port list must fit */
        break;
    }
    case 2: {
        uint8_t out[sizeof(((struct dnsid_entry *)0)->q)];
        static struct dnsid_table t;
        struct dnsid_client cl = {0};
        uint16_t id;
        int sl = dns_servfail((const uint8_t *)copy, n, out, sizeof(out));
        if (sl > 0 && (size_t)sl > n)
            abort(); /* the answer never holds more than the query had */
        dnsid_init(&t, 1);
        if (dnsid_add(&t, (const uint8_t *)copy, n, &cl, 0, &id) == 0) {
            struct dnsid_entry e;
            if (!dnsid_take(&t, id, &e) || e.qlen > sizeof(e.q) ||
                dns_servfail(e.q, e.qlen, out, sizeof(out)) < 0)
                abort();
        }
        break;
    }
    default:
        (void)cnet_link_is_socket(copy, n, 12345);
        (void)cnet_comm_trim(copy, n);
        break;
    }
    free(copy);
    return 0;
}
