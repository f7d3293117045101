/*
 * Daemon authentication: the API token in $CAPSEM_HOME/token, one-time login
 * codes that a browser trades for a session cookie, the session secrets
 * behind those cookies, and the Host / Origin checks that stop DNS
 * rebinding and cross-site requests. Every secret comparison is constant
 * time. All functions on a struct auth are thread-safe (one mutex guards the
 * code and session tables).
 */
#ifndef CAPSEM_SERVER_AUTH_H
#define CAPSEM_SERVER_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

/* Hex digits in the token, a login code and a session secret (32 random bytes). */
#define AUTH_SECRET_HEX 64
/* How long a login code is valid, and how long a session cookie lives. */
#define AUTH_CODE_TTL_S 600
#define AUTH_SESSION_TTL_S (24 * 3600)
/* Live codes and sessions kept; the oldest is dropped when a table is full. */
#define AUTH_MAX_CODES 16
#define AUTH_MAX_SESSIONS 64
/* Name of the session cookie. */
#define AUTH_COOKIE_NAME "capsem_session"

struct auth;

/*
 * Load the token from `home`/token, or create it (32 random bytes as hex, mode
 * 0600; `home` is created 0700 when missing). A token file that is not a
 * regular file owned by this user, has any group/other permission, or does
 * not hold 64 hex digits is refused. 0 with *out set, or -errno with a
 * one-line reason in err[0..errlen). `home` is borrowed.
 */
__attribute__((warn_unused_result)) int auth_create(const char *home, struct auth **out, char *err,
                                                    size_t errlen);
/* Free `a` and wipe its secrets. NULL is fine. */
void auth_destroy(struct auth *a);

/* The token (AUTH_SECRET_HEX hex digits, NUL-terminated), owned by `a`. */
const char *auth_token(const struct auth *a);

/*
 * True when `authorization` (an Authorization header value, may be NULL) is
 * "Bearer <token>" with the right token.
 */
bool auth_bearer_ok(const struct auth *a, const char *authorization);

/*
 * Mint a one-time login code valid for `ttl_s` seconds (1..AUTH_CODE_TTL_S)
 * into out[AUTH_SECRET_HEX + 1]. 0, -EINVAL or -EIO.
 */
__attribute__((warn_unused_result)) int auth_code_new(struct auth *a, unsigned ttl_s,
                                                      char out[AUTH_SECRET_HEX + 1]);

/*
 * Consume login code `code` (may be NULL): when it is live, it is removed, a
 * new session is made and its secret written to session[AUTH_SECRET_HEX + 1].
 * 0, -EACCES (unknown, used or expired code) or -EIO.
 */
__attribute__((warn_unused_result)) int auth_code_redeem(struct auth *a, const char *code,
                                                         char session[AUTH_SECRET_HEX + 1]);

/*
 * True when the Cookie header value `cookie` (may be NULL) carries
 * AUTH_COOKIE_NAME with a live session secret.
 */
bool auth_cookie_ok(struct auth *a, const char *cookie);

/*
 * True when the Host header value `host` names this server: localhost,
 * 127.0.0.1 or [::1] (any case), or one of allow[0..nallow), each optionally
 * followed by ":" and `port`.
 */
bool auth_host_ok(const char *host, unsigned port, const char *const *allow, size_t nallow);

/*
 * True when the Origin header value `origin` is exactly "http://" + `host`
 * (case-insensitive). NULL origin or host gives false.
 */
bool auth_origin_ok(const char *origin, const char *host);

/* Time source for codes and sessions (monotonic seconds); tests replace it. */
void auth_set_clock(struct auth *a, time_t (*now)(void));

#endif
