/*
 * Session directories under $CAPSEM_HOME/sessions: names, random ids and the
 * creation (or reuse) of `<id>/workspace`. A reused directory must be a real
 * directory of this user: a symlink planted there is refused, not followed.
 */
#include "session_dir.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

bool session_name_ok(const char *name)
{
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n > SESSION_NAME_MAX || name[0] == '-' || name[n - 1] == '-')
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
            return false;
    }
    return true;
}

int session_id_random(char out[SESSION_ID_HEX + 1])
{
    uint8_t rnd[SESSION_ID_HEX / 2];
    if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
        return -EIO;
    for (size_t i = 0; i < sizeof(rnd); i++)
        snprintf(out + 2 * i, 3, "%02x", rnd[i]);
    return 0;
}

int session_mkdir_p(const char *path, unsigned mode)
{
    char tmp[4096];
    int n = snprintf(tmp, sizeof(tmp), "%s", path);
    if (n <= 0 || (size_t)n >= sizeof(tmp))
        return -ENAMETOOLONG;
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(tmp, (mode_t)mode) < 0 && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    if (mkdir(tmp, (mode_t)mode) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

/* Create `path` 0700, or accept it when it is already a directory of ours. */
static int own_dir(const char *path, bool *created)
{
    struct stat st;
    *created = false;
    if (mkdir(path, 0700) == 0) {
        *created = true;
        return 0;
    }
    if (errno != EEXIST)
        return -errno;
    if (lstat(path, &st) < 0)
        return -errno;
    if (!S_ISDIR(st.st_mode))
        return -ENOTDIR;
    if (st.st_uid != geteuid())
        return -EPERM;
    return 0;
}

int session_dir_make(const char *home, const char *id, char *dir, size_t dirlen, char *ws,
                     size_t wslen, bool *created, char *err, size_t errlen)
{
    int rc = 0;
    char base[4096];
    bool made = false, ws_made = false;
    err[0] = '\0';
    if (!session_name_ok(id)) {
        snprintf(err, errlen, "bad session id '%.80s'", id);
        return -EINVAL;
    }
    int n1 = snprintf(base, sizeof(base), "%s/sessions", home);
    int n2 = snprintf(dir, dirlen, "%s/sessions/%s", home, id);
    int n3 = snprintf(ws, wslen, "%s/sessions/%s/workspace", home, id);
    if (n1 < 0 || (size_t)n1 >= sizeof(base) || n2 < 0 || (size_t)n2 >= dirlen || n3 < 0 ||
        (size_t)n3 >= wslen) {
        snprintf(err, errlen, "session directory path too long (CAPSEM_HOME %.200s)", home);
        return -ENAMETOOLONG;
    }
    rc = session_mkdir_p(base, 0700);
    if (rc) {
        snprintf(err, errlen, "cannot create %s: %s", base, strerror(-rc));
        return rc;
    }
    rc = own_dir(dir, &made);
    if (rc) {
        snprintf(err, errlen, "cannot use session directory %s: %s", dir, strerror(-rc));
        return rc;
    }
    rc = own_dir(ws, &ws_made);
    if (rc) {
        snprintf(err, errlen, "cannot use workspace %s: %s", ws, strerror(-rc));
        return rc;
    }
    *created = made;
    return 0;
}
