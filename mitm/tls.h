/*
 * TLS for the proxy: the local certificate authority (created on first use
 * in ~/.capsem/ca/, key mode 0600), per-host leaf certificates minted on
 * demand (ECDSA P-256, SAN = the host, backdated one hour, valid 7 days, one
 * shared leaf key pair) and kept in a bounded LRU cache, the server-side
 * context that presents them to the guest (TLS 1.2 and 1.3, ALPN http/1.1),
 * and the client-side context that verifies upstream servers against the
 * system trust store (plus an optional extra CA file, for tests). Thread-safe.
 */
#ifndef CAPSEM_MITM_TLS_H
#define CAPSEM_MITM_TLS_H

#include <openssl/ssl.h>
#include <stddef.h>

struct mitm_ca;

/*
 * Load the CA from dir/ca.key and dir/ca.crt, creating both (and dir, 0700)
 * when absent. A key file not owned by us or readable by others, or a pair
 * that does not match, is refused: -EINVAL with the file and reason in err.
 */
__attribute__((warn_unused_result)) int mitm_ca_open(const char *dir, struct mitm_ca **out,
                                                     char *err, size_t errlen);
void mitm_ca_free(struct mitm_ca *ca); /* accepts NULL */
/* The CA certificate in PEM (NUL-terminated), for the guest's trust store. */
const char *mitm_ca_pem(const struct mitm_ca *ca);

/* Leaf certificates and the guest-facing TLS context. */
struct mitm_certs;

/* `ca` is borrowed and must outlive the result; capacity = LRU size (>= 1). */
__attribute__((warn_unused_result)) int mitm_certs_create(struct mitm_ca *ca, size_t capacity,
                                                          struct mitm_certs **out);
void mitm_certs_free(struct mitm_certs *c);

/*
 * The leaf for `host` (a DNS name or an IPv4 literal), from the cache or
 * minted now. References for the caller (X509_free / EVP_PKEY_free). 0 or
 * -errno (-EINVAL for a name that is not a valid host).
 */
__attribute__((warn_unused_result)) int mitm_certs_get(struct mitm_certs *c, const char *host,
                                                       X509 **cert, EVP_PKEY **key);
/* Cache statistics: entries held, leaves minted so far. */
void mitm_certs_stats(struct mitm_certs *c, size_t *entries, unsigned long *minted);

/*
 * A new server-side SSL for one guest connection: during the handshake it
 * picks the leaf for the client's SNI, or for `fallback_name` (the DNS pool
 * name of the destination; may be NULL) when there is no SNI; with neither the
 * handshake fails. The caller sets the fd and runs SSL_accept.
 */
__attribute__((warn_unused_result)) int mitm_tls_server_new(struct mitm_certs *c,
                                                            const char *fallback_name, SSL **out);
/* The name the leaf was chosen for, lower-cased (after the handshake), or NULL. */
const char *mitm_tls_server_name(SSL *ssl);

/*
 * The upstream client context: peer verification on, the system trust
 * store plus `extra_ca_file` (may be NULL), TLS 1.2+, ALPN http/1.1, a
 * client session cache for resumption. The caller sets SNI and
 * SSL_set1_host per connection. 0 or -errno with a reason in err.
 * Resumption is the caller's: keep SSL_get1_session() per upstream host and
 * port once the first bytes were read (TLS 1.3 tickets come after the
 * handshake), close a connection that ended cleanly with SSL_shutdown()
 * before SSL_free() (OpenSSL marks the session of an SSL freed without it
 * not resumable), and hand a session for which SSL_SESSION_is_resumable()
 * to SSL_set_session() before the next SSL_connect to that host and port.
 */
__attribute__((warn_unused_result)) int
mitm_tls_client_ctx(const char *extra_ca_file, SSL_CTX **out, char *err, size_t errlen);

#endif
