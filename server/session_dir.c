/*
 * Session directories under $CAPSEM_HOME/sessions: names, random ids and the
 * creation (or reuse) of `<id>/workspace`. A reused directory must be a real
 * directory of this user: a symlink planted there is refused, not followed.
 * Also the scratch disk: a sparse file formatted ext4 by mkfs.ext4, which the
 * guest uses for the root overlay's writable layer instead of RAM.
 */
#include "session_dir.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

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

int session_size_parse(const char *s, unsigned long long *bytes)
{
    if (!s || s[0] < '0' || s[0] > '9')
        return -EINVAL;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno)
        return -ERANGE;
    unsigned shift = 0;
    switch (*end) {
    case 'K':
    case 'k':
        shift = 10;
        break;
    case 'M':
    case 'm':
        shift = 20;
        break;
    case 'G':
    case 'g':
        shift = 30;
        break;
    case 'T':
    case 't':
        shift = 40;
        break;
    case '\0':
        break;
    default:
        return -EINVAL;
    }
    if (shift) {
        end++;
        if (!strcmp(end, "iB") || !strcmp(end, "B"))
            end += strlen(end);
    }
    if (*end)
        return -EINVAL;
    if (v > (SESSION_SCRATCH_MAX >> shift))
        return -ERANGE;
    v <<= shift;
    if (v < SESSION_SCRATCH_MIN)
        return -ERANGE;
    *bytes = v;
    return 0;
}

/* Run mkfs on `path`; 0, or -errno with its first line of output in err. */
static int run_mkfs(const char *mkfs, const char *path, char *err, size_t errlen)
{
    static const char *const dirs[] = {"/usr/sbin/", "/sbin/"};
    char prog[512];
    int rc = 0;
    int pipefd[2] = {-1, -1};
    snprintf(prog, sizeof(prog), "%s", mkfs);
    if (!strchr(mkfs, '/')) {
        for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
            char cand[512];
            snprintf(cand, sizeof(cand), "%s%s", dirs[i], mkfs);
            if (access(cand, X_OK) == 0) {
                snprintf(prog, sizeof(prog), "%s", cand);
                break;
            }
        }
    }
    if (pipe2(pipefd, O_CLOEXEC) < 0)
        return -errno;
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    sigset_t none;
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&at);
    sigemptyset(&none);
    posix_spawnattr_setsigmask(&at, &none);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, pipefd[1], 1);
    posix_spawn_file_actions_adddup2(&fa, pipefd[1], 2);
    /* No journal, no reserved blocks, lazy tables: a sparse file stays small. */
    char *argv[] = {prog,
                    (char *)"-q",
                    (char *)"-F",
                    (char *)"-m",
                    (char *)"0",
                    (char *)"-O",
                    (char *)"^has_journal",
                    (char *)"-E",
                    (char *)"lazy_itable_init=1,lazy_journal_init=1,root_owner=0:0",
                    (char *)"-L",
                    (char *)"capsem-scratch",
                    (char *)path,
                    NULL};
    pid_t pid;
    int sp = posix_spawnp(&pid, prog, &fa, &at, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    close(pipefd[1]);
    if (sp) {
        close(pipefd[0]);
        snprintf(err, errlen, "cannot run %s: %s (apt-get install e2fsprogs)", prog, strerror(sp));
        return -sp;
    }
    char out[512];
    size_t got = 0;
    for (;;) {
        ssize_t n = read(pipefd[0], out + got, sizeof(out) - 1 - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
        if (got == sizeof(out) - 1) {
            char sink[512];
            while (read(pipefd[0], sink, sizeof(sink)) > 0)
                ;
            break;
        }
    }
    close(pipefd[0]);
    out[got] = '\0';
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        out[strcspn(out, "\n")] = '\0';
        for (char *c = out; *c; c++)
            if ((unsigned char)*c < 0x20)
                *c = '?';
        snprintf(err, errlen, "%s failed (status %d): %.200s", prog,
                 WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st), out);
        rc = -EIO;
    }
    return rc;
}

int session_scratch_make(const char *path, unsigned long long bytes, const char *mkfs, char *err,
                         size_t errlen)
{
    int rc = 0;
    err[0] = '\0';
    /* A fresh file every time: never format through a symlink or someone else's file. */
    if (unlink(path) < 0 && errno != ENOENT) {
        rc = -errno;
        snprintf(err, errlen, "cannot replace %s: %s", path, strerror(-rc));
        return rc;
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc = -errno;
        snprintf(err, errlen, "cannot create %s: %s", path, strerror(-rc));
        return rc;
    }
    if (ftruncate(fd, (off_t)bytes) < 0) {
        rc = -errno;
        snprintf(err, errlen, "cannot size %s to %llu bytes: %s", path, bytes, strerror(-rc));
    }
    close(fd);
    if (!rc)
        rc = run_mkfs(mkfs, path, err, errlen);
    if (rc)
        unlink(path);
    return rc;
}
