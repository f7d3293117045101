/*
 * The DNS stub's pure parts: the table of queries waiting for the host's
 * answer, keyed by the DNS id the stub rewrote to be unique on its one host
 * connection, and the SERVFAIL reply it makes for a query that got no answer.
 * No I/O; unit-tested on the host.
 */
#ifndef CAPSEM_GUEST_DNSID_H
#define CAPSEM_GUEST_DNSID_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Most queries waiting at once; more are answered SERVFAIL at once. */
#define DNSID_MAX 1024
#define DNS_HDR_LEN 12
/* Largest DNS message the stub handles (schemas/vsock-net.md: the host closes above it). */
#define DNS_MSG_MAX 4096

/* Who asked: a UDP peer (tcp_conn 0) or the TCP client connection with that number. */
struct dnsid_client {
    uint32_t tcp_conn;
    struct sockaddr_in udp_peer;
};

struct dnsid_entry {
    bool used;
    uint16_t new_id, orig_id;
    int64_t deadline_ms;
    struct dnsid_client client;
    /* The query's bytes for a SERVFAIL reply: header and first question. */
    uint8_t q[DNS_HDR_LEN + 260];
    size_t qlen;
};

struct dnsid_table {
    struct dnsid_entry e[DNSID_MAX];
    size_t n;
    uint16_t next; /* next id to try */
};

/* Empty table; ids are handed out from `seed` upwards. */
void dnsid_init(struct dnsid_table *t, uint16_t seed);

/*
 * Remember query `msg[0..len)` (at least a header) from `cl`, due at
 * `deadline_ms`; pick an id no waiting query has. Returns 0 and *new_id, or
 * -ENOSPC when DNSID_MAX queries wait, -EINVAL for a message shorter than a
 * header.
 */
__attribute__((warn_unused_result)) int dnsid_add(struct dnsid_table *t, const uint8_t *msg,
                                                  size_t len, const struct dnsid_client *cl,
                                                  int64_t deadline_ms, uint16_t *new_id);

/* Remove the query with id `new_id` into *out (may be NULL); false when none waits. */
bool dnsid_take(struct dnsid_table *t, uint16_t new_id, struct dnsid_entry *out);

/*
 * Remove one query whose deadline is at or before `now_ms` (or, with
 * `all`, any query; or with tcp_conn != 0, any query of that TCP client)
 * into *out. False when there is none. Call until false.
 */
bool dnsid_take_expired(struct dnsid_table *t, int64_t now_ms, bool all, struct dnsid_entry *out);
bool dnsid_take_client(struct dnsid_table *t, uint32_t tcp_conn, struct dnsid_entry *out);

/* Write `id` into the message's header (len >= 2). */
void dns_set_id(uint8_t *msg, uint16_t id);
uint16_t dns_get_id(const uint8_t *msg);

/*
 * Build a SERVFAIL answer to query `q[0..qlen)` into out[0..size): the
 * query's id, RD bit and first question (when it parses; none otherwise),
 * QR and RA set, no records. Returns its length, or -EINVAL when `q` is
 * shorter than a header, -ENOSPC when it does not fit.
 */
__attribute__((warn_unused_result)) int dns_servfail(const uint8_t *q, size_t qlen, uint8_t *out,
                                                     size_t size);

#endif
