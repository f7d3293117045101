/*
 * The policy engine: one set of rules decides HTTP requests and DNS names
 * (MCP tools will join). A policy is built from JSON config (schemas/
 * config.schema.json): the system file /etc/capsem/corp.json, whose rules
 * come first and cannot be overridden, then the user's ~/.capsem/config.json.
 * A built policy is immutable and reference-counted, so a proxy thread keeps
 * the one it took for the request it is deciding while a reload swaps in a
 * new one for the next request (policy_store).
 */
#ifndef CAPSEM_MITM_POLICY_H
#define CAPSEM_MITM_POLICY_H

#include "sink.h"

#include <jansson.h>
#include <stddef.h>

struct policy;

/* A decision and the rule that made it (rule NULL = the default action). */
struct policy_result {
    enum decision decision;
    const char *rule; /* borrowed from the policy; valid while it is held */
};

/*
 * Build a policy from the corp document (may be NULL) and the user document
 * (may be NULL). Both are validated; on a bad document returns -EINVAL and
 * writes "<file>: <json path>: <reason>" into err (the file names given in
 * corp_name/user_name). 0 or -errno; *out holds one reference.
 */
__attribute__((warn_unused_result)) int policy_build(const json_t *corp, const char *corp_name,
                                                     const json_t *user, const char *user_name,
                                                     struct policy **out, char *err, size_t errlen);
/* Read and build from files; a missing file counts as absent (NULL). */
__attribute__((warn_unused_result)) int policy_load(const char *corp_path, const char *user_path,
                                                    struct policy **out, char *err, size_t errlen);
/*
 * As policy_build / policy_load, with `preset` ("high", "medium" or "open")
 * in place of the user document's network.preset (a session's own preset;
 * corp rules, the corp preset and the user's rules are unchanged; a locked
 * corp file ignores it like a user preset). NULL = as the documents say.
 * Another name gives -EINVAL with "preset: ..." in err.
 */
__attribute__((warn_unused_result)) int
policy_build_preset(const json_t *corp, const char *corp_name, const json_t *user,
                    const char *user_name, const char *preset, struct policy **out, char *err,
                    size_t errlen);
__attribute__((warn_unused_result)) int policy_load_preset(const char *corp_path,
                                                           const char *user_path,
                                                           const char *preset, struct policy **out,
                                                           char *err, size_t errlen);
struct policy *policy_ref(struct policy *p);
void policy_unref(struct policy *p); /* accepts NULL */

/*
 * Decide an HTTP request. `host` lower case without port; `method` as sent;
 * `path` without query. Never fails.
 */
struct policy_result policy_decide_http(const struct policy *p, const char *host,
                                        const char *method, const char *path);
/* Decide a DNS name (lower case, no trailing dot). Never fails. */
struct policy_result policy_decide_dns(const struct policy *p, const char *name);

/* Upstream settings from the config (off by default; for tests). */
/* Extra CA file to trust for upstream TLS, or NULL. */
const char *policy_upstream_ca_file(const struct policy *p);
/*
 * Resolve override for "host:port": writes the "address:port" it maps to
 * into out and returns 1, or 0 when none (or when it does not fit).
 */
int policy_resolve_override(const struct policy *p, const char *host, unsigned port, char *out,
                            size_t outlen);
/* Extra TCP ports (besides 80 and 443) the guest sends to the proxy. */
size_t policy_http_ports(const struct policy *p, const unsigned **ports);

/*
 * Holds the current policy; thread-safe. Create takes the caller's reference
 * to `initial` on success (none on failure).
 */
struct policy_store;
__attribute__((warn_unused_result)) int policy_store_create(struct policy *initial,
                                                            struct policy_store **out);
void policy_store_destroy(struct policy_store *s);
/* A reference to the current policy; the caller policy_unref()s it. */
struct policy *policy_store_get(struct policy_store *s);
/* Replace the current policy (takes the caller's reference). */
void policy_store_set(struct policy_store *s, struct policy *p);

#endif
