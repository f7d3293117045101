/*
 * Session directories: `$CAPSEM_HOME/sessions/<id>/` holds what outlives a
 * VM — the workspace shared at /root (`workspace/`) and, when asked for, the
 * scratch disk. The id is the session's name (`capsem run --name`) or 12
 * random hex digits; the guest's host name is the name, or `capsem-<id>`.
 */
#ifndef CAPSEM_SERVER_SESSION_DIR_H
#define CAPSEM_SERVER_SESSION_DIR_H

#include <stdbool.h>
#include <stddef.h>

/* Longest session name (a host name label). */
#define SESSION_NAME_MAX 63
/* Length of a random session id in hex digits. */
#define SESSION_ID_HEX 12

/*
 * True when `name` is 1-63 characters of [a-z0-9-] that neither starts nor
 * ends with '-' (a valid host name label and a safe directory name).
 */
bool session_name_ok(const char *name);

/* A fresh random id: SESSION_ID_HEX lowercase hex digits and a NUL. 0 or -EIO. */
__attribute__((warn_unused_result)) int session_id_random(char out[SESSION_ID_HEX + 1]);

/*
 * Make `home`/sessions/`id`/workspace (each created 0700 when missing; an
 * existing one is reused if it is a directory owned by this user, not a
 * symlink). Fills dir[0..dirlen) with the session directory and
 * ws[0..wslen) with the workspace, and *created with whether the session
 * directory is new. 0, or -errno with a one-line reason in err[0..errlen).
 */
__attribute__((warn_unused_result)) int session_dir_make(const char *home, const char *id,
                                                         char *dir, size_t dirlen, char *ws,
                                                         size_t wslen, bool *created, char *err,
                                                         size_t errlen);

/* Smallest and largest --scratch size. */
#define SESSION_SCRATCH_MIN (64ull << 20)
#define SESSION_SCRATCH_MAX (4ull << 40)

/*
 * Parse a size such as "4G", "512M", "1T" or "1073741824" (bytes; suffixes K, M,
 * G, T are powers of 1024, optionally followed by "iB" or "B"). 0 with *bytes set,
 * or -EINVAL (not a size) / -ERANGE (outside SESSION_SCRATCH_MIN..MAX).
 */
__attribute__((warn_unused_result)) int session_size_parse(const char *s,
                                                           unsigned long long *bytes);

/*
 * Make the scratch disk `path`: a sparse file of `bytes` (an old one is replaced),
 * formatted ext4 by `mkfs` (a program path, or a name looked up in /usr/sbin,
 * /sbin and PATH) without a journal or reserved blocks, so nothing but what the
 * guest writes takes space. 0, or -errno with a one-line reason in err[0..errlen)
 * (and no file left behind).
 */
__attribute__((warn_unused_result)) int session_scratch_make(const char *path,
                                                             unsigned long long bytes,
                                                             const char *mkfs, char *err,
                                                             size_t errlen);

/* mkdir -p with `mode` for each created level. 0 or -errno. */
__attribute__((warn_unused_result)) int session_mkdir_p(const char *path, unsigned mode);

#endif
