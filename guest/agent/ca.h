/*
 * The host's CA certificate in the guest (`ca_pem` in the host's hello,
 * schemas/vsock-control.md): written to /etc/capsem/ca.crt and appended to
 * the system bundle, and the environment variables that point TLS clients
 * (Node, OpenSSL, Python requests, git) at it. Every path is under a root
 * directory ("/" in the guest, a temporary directory in the unit tests).
 */
#ifndef CAPSEM_GUEST_CA_H
#define CAPSEM_GUEST_CA_H

#include <stddef.h>

#define CA_FILE "/etc/capsem/ca.crt"
#define CA_BUNDLE "/etc/ssl/certs/ca-certificates.crt"
/* Longest `ca_pem` accepted. */
#define CA_PEM_MAX (64u * 1024u)
/* Most environment entries ca_env() gives. */
#define CA_ENV_MAX 4

/*
 * Check `pem[0..len)` (one or more PEM certificates: printable ASCII and
 * newlines, starting with "-----BEGIN CERTIFICATE-----" and holding an END
 * line, at most CA_PEM_MAX bytes), then write it to root + CA_FILE (mode
 * 0644, directories made, replaced atomically) and append it to root +
 * CA_BUNDLE when that file exists and does not already hold it. Returns 0,
 * -EINVAL for a pem that fails the check (nothing written), or -errno.
 */
__attribute__((warn_unused_result)) int ca_install(const char *root, const char *pem, size_t len);

/*
 * The environment entries ("K=V", static strings) for the files present
 * under `root`: NODE_EXTRA_CA_CERTS for CA_FILE; SSL_CERT_FILE,
 * REQUESTS_CA_BUNDLE and GIT_SSL_CAINFO for CA_BUNDLE. Writes up to
 * CA_ENV_MAX pointers to out[]; returns how many.
 */
size_t ca_env(const char *root, const char **out);

#endif
