/*
 * capsem-init's guest networking (`capsem.net=1`): `dummy0` with an address
 * and a default route, the nftables rules from netcfg.c (through the Debian
 * root's /usr/sbin/nft), /etc/resolv.conf pointing at the DNS stub, and the
 * two relays started on listening sockets init opens itself, so both listen
 * before the agent (and so any user program) starts.
 */
#ifndef CAPSEM_GUEST_NET_H
#define CAPSEM_GUEST_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* Where the relays live in the initramfs, and their copies in /run for the Debian root. */
#define NET_PROXY_SRC "/sbin/capsem-netproxy"
#define NET_DNS_SRC "/sbin/capsem-dnsstub"
#define NET_PROXY_RUN "/run/capsem-netproxy"
#define NET_DNS_RUN "/run/capsem-dnsstub"
#define NET_NFT "/usr/sbin/nft"

/*
 * Set up the network as above from the kernel command line `cmdline[0..len)`
 * (`capsem.http_ports=`), running the relays from `proxy` and `dns`. Call
 * after the switch into the Debian root, before the agent starts. 0 or
 * -errno, with each failure logged; the caller must not go on without it.
 */
__attribute__((warn_unused_result)) int net_setup(const char *cmdline, size_t len,
                                                  const char *proxy, const char *dns);

/*
 * Called by init for every child it reaps: when `pid` is one of the relays,
 * log that it ended (its listening socket is gone with it, so from then on
 * connections it served are refused, never let through) and return true.
 */
bool net_relay_reaped(pid_t pid, int status);

#endif
