/*
 * A session's network services on the host: the local CA, the policy (corp
 * file, then the user's config; reloaded when either file changes, the old
 * policy kept when the new one is bad), the DNS address pool, the MITM proxy
 * (vsock port 5002), the DNS service (port 5004) and the session database
 * they report to. The session runner hands every accepted guest connection on
 * those ports to netsvc_accept(); each service serves it on threads of its
 * own, so the loop never blocks.
 */
#ifndef CAPSEM_SERVER_NETSVC_H
#define CAPSEM_SERVER_NETSVC_H

#include "loop.h"

#include <stdbool.h>
#include <stddef.h>

#define NETSVC_PORT_PROXY 5002u
#define NETSVC_PORT_DNS 5004u

struct netsvc;

struct netsvc_config {
    const char *home;        /* $CAPSEM_HOME: holds ca/ and config.json */
    const char *session_dir; /* holds session.db */
    const char *corp_path;   /* NULL = $CAPSEM_CORP_CONFIG or /etc/capsem/corp.json */
    const char *user_path;   /* NULL = <home>/config.json */
    /* The session's preset ("high", "medium", "open") in place of the user config's; NULL = as
     * configured. Kept across reloads. */
    const char *preset;
};

/*
 * Open the CA (creating it on first use), load the policy, open the session
 * database and start the services; watch the two config files on `l`
 * (borrowed, loop thread). On failure returns -errno with a one-line reason
 * in err (a bad config file names the file, the JSON path and the problem).
 */
__attribute__((warn_unused_result)) int netsvc_start(struct loop *l,
                                                     const struct netsvc_config *cfg,
                                                     struct netsvc **out, char *err, size_t errlen);
/* The CA certificate (PEM) the guest must trust. */
const char *netsvc_ca_pem(const struct netsvc *n);
/* The extra HTTP ports as "8080,3000" for the kernel command line ("" when none). */
const char *netsvc_http_ports(const struct netsvc *n);
/*
 * The credential placeholders every command in the guest gets, as "K=V"
 * strings (ANTHROPIC_API_KEY=capsem-placeholder-..., see mitm/creds.h); the
 * real keys stay here. Returns the count; *env borrows from n (valid until
 * netsvc_stop). n may be NULL (none).
 */
size_t netsvc_guest_env(const struct netsvc *n, const char *const **env);
/* Path of the session database. */
const char *netsvc_db_path(const struct netsvc *n);
/* Serve an accepted guest connection on vsock `port` (takes `fd`). */
void netsvc_accept(struct netsvc *n, unsigned port, int fd);
/*
 * Re-read the config files now. 0 with the new policy in force for the next
 * request, or -errno with the reason in err and the previous policy kept.
 */
int netsvc_reload(struct netsvc *n, char *err, size_t errlen);
/*
 * Use `preset` (as netsvc_config.preset; NULL = as configured) from now on,
 * this reload and every later one. 0, or -errno with the reason in err and
 * nothing changed (-EINVAL for an unknown preset or a bad config file).
 */
__attribute__((warn_unused_result)) int netsvc_set_preset(struct netsvc *n, const char *preset,
                                                          char *err, size_t errlen);
/*
 * Whether the corp file ($CAPSEM_CORP_CONFIG, else /etc/capsem/corp.json; its
 * path into path) sets network.locked, so a session's own preset may not
 * replace the user's. A missing or unreadable file locks nothing here (a bad
 * one fails netsvc_start with its own error).
 */
bool netsvc_corp_locked(char *path, size_t len);
/* Wait until every event so far is in the database. 0 or -errno. */
int netsvc_flush(struct netsvc *n);
/* Close every connection, stop the services, flush and close the database. Accepts NULL. */
void netsvc_stop(struct netsvc *n);

#endif
