/*
 * The guest net proxy's pure parts: the port 5002 connection header
 * (schemas/vsock-net.md) and the parsing of /proc/net/tcp lines that finds the
 * socket inode of a redirected connection's client. No I/O; unit-tested on
 * the host.
 */
#ifndef CAPSEM_GUEST_CNET_H
#define CAPSEM_GUEST_CNET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CNET_MAGIC "CNET"
#define CNET_VERSION 1
#define CNET_FAMILY_IPV4 4
#define CNET_FIXED_LEN 18
#define CNET_NAME_MAX 64
#define CNET_HDR_MAX (CNET_FIXED_LEN + CNET_NAME_MAX)

/*
 * Encode the header for a connection to `ip`:`port` (both in host byte order)
 * made by process `pid` named `name[0..name_len)` (NULL/0 when unknown; a
 * longer name is cut to CNET_NAME_MAX bytes) into out[0..size). Returns the
 * header length, or -ENOSPC when `size` is too small.
 */
__attribute__((warn_unused_result)) int cnet_header_encode(uint8_t *out, size_t size, uint32_t ip,
                                                           uint16_t port, uint32_t pid,
                                                           const char *name, size_t name_len);

/* One socket of /proc/net/tcp: addresses and ports in host byte order. */
struct cnet_tcp_entry {
    uint32_t local_ip, remote_ip;
    uint16_t local_port, remote_port;
    uint64_t inode;
};

/*
 * Parse one line of /proc/net/tcp (`line[0..len)`, with or without its
 * newline). Returns 0 and *e, or -EINVAL for the header line and anything
 * malformed (missing fields, bad hex, an address without a port).
 */
__attribute__((warn_unused_result)) int cnet_tcp_parse_line(const char *line, size_t len,
                                                            struct cnet_tcp_entry *e);

/*
 * Scan the whole text of /proc/net/tcp for the socket whose local end is
 * `ip`:`port` (host byte order) and whose inode is not 0. Returns true and
 * *inode when found; malformed lines are skipped.
 */
bool cnet_tcp_find_inode(const char *text, size_t len, uint32_t ip, uint16_t port, uint64_t *inode);

/*
 * Does the fd link text `link[0..len)` (from readlink of /proc/PID/fd/N)
 * name socket `inode` ("socket:[12345]")?
 */
bool cnet_link_is_socket(const char *link, size_t len, uint64_t inode);

/* Strip a trailing newline from /proc/PID/comm text; returns the new length. */
size_t cnet_comm_trim(const char *comm, size_t len);

#endif
