/*
 * Guest network configuration for capsem-init, the pure parts: parsing
 * `capsem.http_ports=` and writing the nftables rules text that sends HTTP(S)
 * connections to capsem-netproxy, DNS to capsem-dnsstub and refuses
 * everything else. No I/O, so it is unit-tested on the host; net.c applies it.
 */
#ifndef CAPSEM_GUEST_NETCFG_H
#define CAPSEM_GUEST_NETCFG_H

#include "buf.h"

#include <stddef.h>
#include <stdint.h>

/* Guest loopback ports of the two relays (see schemas/vsock-net.md). */
#define NETCFG_PROXY_PORT 15002
#define NETCFG_DNS_PORT 15004
/* Ports always sent to the proxy, and the most extra ports `capsem.http_ports` may add. */
#define NETCFG_MAX_EXTRA_PORTS 16
/* The dummy interface's address, prefix length and the resolver the guest uses. */
#define NETCFG_DUMMY_NAME "dummy0"
#define NETCFG_DUMMY_ADDR "10.0.2.15"
#define NETCFG_DUMMY_PREFIX 24
#define NETCFG_RESOLV_CONF "nameserver 127.0.0.1\noptions timeout:5 attempts:1\n"

/*
 * Parse a comma-separated list of TCP ports (`8080,3000`), each 1-65535 in
 * decimal, into out[0..*n). An empty list gives *n = 0. Duplicates, 80, 443,
 * 53 and the relays' own ports are dropped silently. Returns 0, or -EINVAL
 * (an empty item, a non-digit, a value outside 1-65535) or -E2BIG (more than
 * `max` distinct ports); on error *n is left alone.
 */
__attribute__((warn_unused_result)) int netcfg_parse_ports(struct slice list, uint16_t *out,
                                                           size_t max, size_t *n);

/*
 * Write the nftables ruleset (input for `nft -f -`) into out[0..size) with a
 * NUL; `extra` are the additional HTTP ports. Returns the length, or -ENOSPC
 * when it does not fit.
 */
__attribute__((warn_unused_result)) int netcfg_rules(char *out, size_t size, const uint16_t *extra,
                                                     size_t n_extra);

#endif
