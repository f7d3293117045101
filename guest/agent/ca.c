/* The host's CA certificate in the guest (see ca.h). */
#include "ca.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char begin[] = "-----BEGIN CERTIFICATE-----";
static const char end[] = "-----END CERTIFICATE-----";

static bool pem_ok(const char *pem, size_t len)
{
    if (len < sizeof(begin) - 1 || len > CA_PEM_MAX || memcmp(pem, begin, sizeof(begin) - 1) != 0)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)pem[i];
        if (!(c == '\n' || c == '\r' || (c >= 0x20 && c < 0x7f)))
            return false;
    }
    return memmem(pem, len, end, sizeof(end) - 1) != NULL;
}

static int path_join(char *out, size_t size, const char *root, const char *path)
{
    size_t rl = strlen(root);
    while (rl > 0 && root[rl - 1] == '/')
        rl--;
    int n = snprintf(out, size, "%.*s%s", (int)rl, root, path);
    return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

static int write_all(int fd, const char *p, size_t len)
{
    while (len) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -errno;
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

/* mkdir -p of every directory above `path`. */
static int make_parents(char *path)
{
    for (char *s = strchr(path + 1, '/'); s; s = strchr(s + 1, '/')) {
        *s = '\0';
        int r = mkdir(path, 0755);
        int err = errno;
        *s = '/';
        if (r < 0 && err != EEXIST)
            return -err;
    }
    return 0;
}

/* Does the file at `path` already contain pem? false when unreadable. */
static bool file_holds(const char *path, const char *pem, size_t len)
{
    bool found = false;
    FILE *f = fopen(path, "re");
    if (!f)
        return false;
    char *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 65536;
            if (nc > 64u * 1024u * 1024u)
                break;
            char *nb = realloc(buf, nc);
            if (!nb)
                break;
            buf = nb;
            cap = nc;
        }
        size_t r = fread(buf + n, 1, cap - n, f);
        if (r == 0)
            break;
        n += r;
    }
    found = buf && memmem(buf, n, pem, len) != NULL;
    free(buf);
    fclose(f);
    return found;
}

int ca_install(const char *root, const char *pem, size_t len)
{
    int ret = 0;
    int fd = -1;
    char path[4096], tmp[4200], bundle[4096];
    bool nl = len > 0 && pem[len - 1] == '\n';

    if (!pem_ok(pem, len))
        return -EINVAL;
    if ((ret = path_join(path, sizeof(path), root, CA_FILE)) ||
        (ret = path_join(bundle, sizeof(bundle), root, CA_BUNDLE)))
        return ret;
    if ((ret = make_parents(path)))
        return ret;
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    if ((ret = write_all(fd, pem, len)) || (!nl && (ret = write_all(fd, "\n", 1))))
        goto out;
    if (fchmod(fd, 0644) < 0 || close(fd) < 0) {
        ret = -errno;
        fd = -1;
        goto out;
    }
    fd = -1;
    if (rename(tmp, path) < 0) {
        ret = -errno;
        goto out;
    }
    if (access(bundle, F_OK) == 0 && !file_holds(bundle, pem, len)) {
        fd = open(bundle, O_WRONLY | O_APPEND | O_CLOEXEC);
        if (fd < 0) {
            ret = -errno;
            goto out;
        }
        /* The bundle may not end in a newline: start ours on a line of its own. */
        if ((ret = write_all(fd, "\n", 1)) || (ret = write_all(fd, pem, len)) ||
            (!nl && (ret = write_all(fd, "\n", 1))))
            goto out;
        if (close(fd) < 0) {
            fd = -1;
            ret = -errno;
            goto out;
        }
        fd = -1;
    }
out:
    if (fd >= 0)
        close(fd);
    if (ret)
        unlink(tmp);
    return ret;
}

size_t ca_env(const char *root, const char **out)
{
    char path[4096];
    size_t n = 0;
    if (path_join(path, sizeof(path), root, CA_FILE) == 0 && access(path, R_OK) == 0)
        out[n++] = "NODE_EXTRA_CA_CERTS=" CA_FILE;
    if (path_join(path, sizeof(path), root, CA_BUNDLE) == 0 && access(path, R_OK) == 0) {
        out[n++] = "SSL_CERT_FILE=" CA_BUNDLE;
        out[n++] = "REQUESTS_CA_BUNDLE=" CA_BUNDLE;
        out[n++] = "GIT_SSL_CAINFO=" CA_BUNDLE;
    }
    return n;
}
