/*
 * The host side of guest DNS (vsock port 5004, schemas/vsock-net.md): a pool
 * that gives each allowed name a stable address in 198.18.0.0/15 and maps it
 * back, a pure function that answers one DNS query by policy, and a service
 * that serves the stub's connections on threads of its own. Thread-safe.
 */
#ifndef CAPSEM_MITM_DNS_H
#define CAPSEM_MITM_DNS_H

#include "policy.h"
#include "sink.h"

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>

struct dns_pool;

__attribute__((warn_unused_result)) int dns_pool_create(struct dns_pool **out);
void dns_pool_free(struct dns_pool *p);
/* The address for `name` (lower case), assigning one on first use. 0, -ENOSPC when full. */
__attribute__((warn_unused_result)) int dns_pool_assign(struct dns_pool *p, const char *name,
                                                        struct in_addr *out);
/* The name behind pool address `a`. 0, -ENOENT when unassigned, -ENAMETOOLONG when len is short. */
__attribute__((warn_unused_result)) int dns_pool_lookup(struct dns_pool *p, struct in_addr a,
                                                        char *name, size_t len);

/*
 * Answer the DNS query q[0..qlen) into out[0..outcap) by policy `pol`,
 * reporting one dns_event to `sink`. Returns the answer's length, or -EBADMSG
 * when the message is too broken to answer at all (drop it), or -ENOBUFS when
 * outcap is too small (DNS_ANSWER_MAX always suffices).
 */
#define DNS_ANSWER_MAX 512
long dns_answer(struct dns_pool *pool, const struct policy *pol, const struct sink *sink,
                const uint8_t *q, size_t qlen, uint8_t *out, size_t outcap);

struct dns_service;

/* `store`, `pool` and the sink are borrowed and must outlive the service. */
__attribute__((warn_unused_result)) int dns_service_create(struct policy_store *store,
                                                           struct dns_pool *pool,
                                                           const struct sink *sink,
                                                           struct dns_service **out);
/* Serve one accepted port-5004 connection (takes `fd`). 0 or -errno (fd closed). */
int dns_service_serve(struct dns_service *s, int fd);
/* Close every connection, join the threads, free. Accepts NULL. */
void dns_service_destroy(struct dns_service *s);

#endif
