/*
 * Credentials: the user's real model-provider API keys stay on the host. A
 * session's table holds, per provider with a key, the real key, a random
 * placeholder the guest gets instead (in ANTHROPIC_API_KEY and the like) and
 * the hosts the key may go to. The proxy scans every request head for
 * placeholders: a request to one of that provider's hosts has the
 * placeholder replaced by the real key in the places a key travels
 * (x-api-key, Authorization: Bearer, x-goog-api-key, the key= query
 * parameter); a placeholder anywhere in a head sent to any other host blocks
 * the request. A table is immutable once built, so proxy threads share it
 * without locks. Nothing here logs or reports a key; see docs/credentials.md.
 */
#ifndef CAPSEM_MITM_CREDS_H
#define CAPSEM_MITM_CREDS_H

#include "http.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

enum creds_provider {
    CREDS_ANTHROPIC,
    CREDS_OPENAI,
    CREDS_GEMINI,
    CREDS_NPROVIDERS,
};

#define CREDS_PLACEHOLDER_PREFIX "capsem-placeholder-"
#define CREDS_KEY_MAX 1024 /* longest real key accepted */
#define CREDS_HOSTS_MAX 16 /* hosts per provider */

struct creds;

/* Looks up a host environment variable (getenv-like; NULL when unset). */
typedef const char *(*creds_getenv_fn)(void *opaque, const char *name);

/*
 * Build a session's table from the `credentials` objects of the corp and
 * user config documents (either may be NULL; the documents are the whole
 * config files, names used in errors) and the host environment read through
 * `get` (NULL = getenv). Each provider gets a fresh random placeholder when a
 * real key is found; a provider without one gets nothing. On a bad document
 * returns -EINVAL with "<file>: <json path>: <reason>" in err; a bad key
 * (empty, too long, a space or control character) is -EINVAL naming where it
 * came from, never its value. 0 or -errno; *out owned by the caller.
 */
__attribute__((warn_unused_result)) int creds_build(const json_t *corp, const char *corp_name,
                                                    const json_t *user, const char *user_name,
                                                    creds_getenv_fn get, void *opaque,
                                                    struct creds **out, char *err, size_t errlen);
/* creds_build() from files (a missing file counts as absent) and getenv. */
__attribute__((warn_unused_result)) int creds_load(const char *corp_path, const char *user_path,
                                                   struct creds **out, char *err, size_t errlen);
/* Wipe the keys and free. Accepts NULL. */
void creds_destroy(struct creds *c);

/* "anthropic", "openai", "gemini". */
const char *creds_provider_name(enum creds_provider pv);
/* The placeholder of a provider, or NULL when it has no key (c may be NULL). */
const char *creds_placeholder(const struct creds *c, enum creds_provider pv);
/*
 * The guest environment: "NAME=placeholder" strings (ANTHROPIC_API_KEY;
 * OPENAI_API_KEY and CODEX_API_KEY; GEMINI_API_KEY and GOOGLE_API_KEY) for
 * the providers with a key. Returns the count; *env borrows from c.
 */
size_t creds_guest_env(const struct creds *c, const char *const **env);
/* Whether `host` (lower case, no port) is one of the provider's hosts. */
bool creds_host_allowed(const struct creds *c, enum creds_provider pv, const char *host);

/* What a request head holds. */
struct creds_check {
    unsigned found;  /* bit 1 << provider for each placeholder anywhere in the head */
    bool block;      /* a placeholder goes to a host not its provider's, or in the clear */
    int provider;    /* when block: the first such provider */
    char error[320]; /* when block: "credential placeholder sent to <host>[ over plain HTTP]" */
};

/*
 * Scan a parsed request head (header values and the request target) for
 * placeholders and decide whether it may go to `host` (lower case, no
 * port): only to the provider's hosts, and only over TLS (`tls` false: plain
 * HTTP, where the swapped key would cross the network in the clear). Pure;
 * c may be NULL (nothing found).
 */
void creds_check(const struct creds *c, const struct http_head *h, struct http_str target,
                 const char *host, bool tls, struct creds_check *out);

/*
 * Swap placeholders for real keys in h (a request to `host` that
 * creds_check() did not block): header values of x-api-key, x-goog-api-key
 * (the whole value) and Authorization ("Bearer <placeholder>", scheme in any
 * casing), and a key=<placeholder> parameter in the query of *target. Only
 * placeholders of providers whose hosts include `host` are swapped; any
 * other header is left alone. Swapped slices point into arena[0..cap).
 * Returns the number of swaps, or -EMSGSIZE when the arena is too small (h
 * and *target are then unchanged).
 */
__attribute__((warn_unused_result)) int creds_swap(const struct creds *c, const char *host,
                                                   struct http_head *h, struct http_str *target,
                                                   char *arena, size_t cap);

/*
 * The whole path for one raw request head p[0..len) (as the guest sent it)
 * to `host` (over TLS when `tls`): parse, check and swap, writing the head as it would go
 * upstream into out[0..cap) (request line and headers in their order, only
 * the swapped values differ; the body is never touched, so Content-Length
 * stays right). *outlen gets its length. When the check blocks, *chk says
 * why and nothing is written. 0, -EBADMSG for an unparsable head, or
 * -EMSGSIZE when out is too small.
 */
__attribute__((warn_unused_result)) int creds_rewrite_head(const struct creds *c, const char *host,
                                                           bool tls, const char *p, size_t len,
                                                           char *out, size_t cap, size_t *outlen,
                                                           struct creds_check *chk);

#endif
