/*
 * Daemon authentication (auth.h): the token file, login codes, session
 * secrets and the Host / Origin rules. Secrets are compared with
 * CRYPTO_memcmp over the whole table so timing says nothing about which
 * entry (if any) matched; freed secrets are wiped with OPENSSL_cleanse.
 */
#include "auth.h"

#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

struct secret_slot {
    bool used;
    time_t expires;
    char hex[AUTH_SECRET_HEX + 1];
};

struct auth {
    char token[AUTH_SECRET_HEX + 1];
    time_t (*now)(void);
    pthread_mutex_t lock; /* guards codes[] and sessions[] */
    struct secret_slot codes[AUTH_MAX_CODES];
    struct secret_slot sessions[AUTH_MAX_SESSIONS];
};

static time_t mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec;
}

static int random_hex(char out[AUTH_SECRET_HEX + 1])
{
    static const char digits[] = "0123456789abcdef";
    unsigned char raw[AUTH_SECRET_HEX / 2];
    size_t got = 0;
    while (got < sizeof(raw)) {
        ssize_t n = getrandom(raw + got, sizeof(raw) - got, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -EIO;
        got += (size_t)n;
    }
    for (size_t i = 0; i < sizeof(raw); i++) {
        out[2 * i] = digits[raw[i] >> 4];
        out[2 * i + 1] = digits[raw[i] & 15];
    }
    out[AUTH_SECRET_HEX] = '\0';
    OPENSSL_cleanse(raw, sizeof(raw));
    return 0;
}

static bool is_hex_secret(const char *s, size_t len)
{
    if (len != AUTH_SECRET_HEX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')))
            return false;
    }
    return true;
}

/* Read an existing token file `path` (opened as `fd`) into a->token. */
static int token_read(struct auth *a, int fd, const char *path, char *err, size_t errlen)
{
    struct stat st;
    char buf[AUTH_SECRET_HEX + 3];
    int rc = 0;
    if (fstat(fd, &st) < 0) {
        rc = -errno;
        snprintf(err, errlen, "cannot stat %.300s: %s", path, strerror(-rc));
        goto out;
    }
    if (!S_ISREG(st.st_mode) || st.st_uid != geteuid()) {
        rc = -EPERM;
        snprintf(err, errlen, "%.300s is not a regular file owned by this user", path);
        goto out;
    }
    if (st.st_mode & 077) {
        rc = -EPERM;
        snprintf(err, errlen, "%.300s is accessible by others (mode %03o); run chmod 600 on it",
                 path, (unsigned)(st.st_mode & 0777));
        goto out;
    }
    size_t len = 0;
    while (len < sizeof(buf)) {
        ssize_t n = read(fd, buf + len, sizeof(buf) - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = -errno;
            snprintf(err, errlen, "cannot read %.300s: %s", path, strerror(-rc));
            goto out;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
        len--;
    if (!is_hex_secret(buf, len)) {
        rc = -EINVAL;
        snprintf(err, errlen, "%.300s does not hold a token (%d hex digits)", path,
                 AUTH_SECRET_HEX);
        goto out;
    }
    for (size_t i = 0; i < len; i++)
        a->token[i] = (char)(buf[i] >= 'A' && buf[i] <= 'F' ? buf[i] - 'A' + 'a' : buf[i]);
    a->token[len] = '\0';
out:
    OPENSSL_cleanse(buf, sizeof(buf));
    return rc;
}

static int token_load(struct auth *a, const char *home, char *err, size_t errlen)
{
    char path[4096];
    int fd = -1;
    int rc = 0;
    if ((size_t)snprintf(path, sizeof(path), "%s/token", home) >= sizeof(path)) {
        rc = -ENAMETOOLONG;
        snprintf(err, errlen, "CAPSEM_HOME path too long");
        goto out;
    }
    if (mkdir(home, 0700) < 0 && errno != EEXIST) {
        rc = -errno;
        snprintf(err, errlen, "cannot create %.300s: %s", home, strerror(-rc));
        goto out;
    }
    fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd >= 0) {
        rc = token_read(a, fd, path, err, errlen);
        goto out;
    }
    if (errno != ENOENT) {
        rc = -errno;
        snprintf(err, errlen, "cannot open %.300s: %s", path, strerror(-rc));
        goto out;
    }
    rc = random_hex(a->token);
    if (rc < 0) {
        snprintf(err, errlen, "no random bytes for the token");
        goto out;
    }
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc = -errno;
        snprintf(err, errlen, "cannot create %.300s: %s", path, strerror(-rc));
        goto out;
    }
    char line[AUTH_SECRET_HEX + 1];
    memcpy(line, a->token, AUTH_SECRET_HEX);
    line[AUTH_SECRET_HEX] = '\n';
    ssize_t n = write(fd, line, sizeof(line));
    OPENSSL_cleanse(line, sizeof(line));
    if (n != (ssize_t)sizeof(line) || fsync(fd) < 0) {
        rc = n < 0 ? -errno : -EIO;
        snprintf(err, errlen, "cannot write %.300s", path);
        unlink(path);
        goto out;
    }
    LOG_INFO("event=token_created path=%s", path);
out:
    if (fd >= 0)
        close(fd);
    return rc;
}

int auth_create(const char *home, struct auth **out, char *err, size_t errlen)
{
    struct auth *a = calloc(1, sizeof(*a));
    int rc = 0;
    if (!a) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    a->now = mono_now;
    pthread_mutex_init(&a->lock, NULL);
    rc = token_load(a, home, err, errlen);
    if (rc < 0)
        goto out;
    *out = a;
    a = NULL;
out:
    auth_destroy(a);
    return rc;
}

void auth_destroy(struct auth *a)
{
    if (!a)
        return;
    pthread_mutex_destroy(&a->lock);
    OPENSSL_cleanse(a, sizeof(*a));
    free(a);
}

const char *auth_token(const struct auth *a)
{
    return a->token;
}

void auth_set_clock(struct auth *a, time_t (*now)(void))
{
    a->now = now ? now : mono_now;
}

/* Constant-time: `s` (may be NULL) equals the secret `hex`. */
static bool secret_eq(const char *s, size_t len, const char *hex)
{
    if (!s || len != AUTH_SECRET_HEX)
        return false;
    return CRYPTO_memcmp(s, hex, AUTH_SECRET_HEX) == 0;
}

bool auth_bearer_ok(const struct auth *a, const char *authorization)
{
    if (!authorization || strncasecmp(authorization, "Bearer ", 7) != 0)
        return false;
    const char *t = authorization + 7;
    while (*t == ' ')
        t++;
    size_t len = strlen(t);
    while (len > 0 && (t[len - 1] == ' ' || t[len - 1] == '\t'))
        len--;
    return secret_eq(t, len, a->token);
}

/* A free or expired slot, else the one that expires first. Lock held. */
static struct secret_slot *slot_take(struct secret_slot *tab, size_t n, time_t now)
{
    struct secret_slot *best = &tab[0];
    for (size_t i = 0; i < n; i++) {
        if (!tab[i].used || tab[i].expires <= now)
            return &tab[i];
        if (tab[i].expires < best->expires)
            best = &tab[i];
    }
    return best;
}

/* Index of the live slot whose secret is s[0..len), or -1; scans every slot. */
static int slot_find(const struct secret_slot *tab, size_t n, const char *s, size_t len, time_t now)
{
    int found = -1;
    for (size_t i = 0; i < n; i++) {
        bool eq = secret_eq(s, len, tab[i].hex);
        if (eq && tab[i].used && tab[i].expires > now)
            found = (int)i;
    }
    return found;
}

int auth_code_new(struct auth *a, unsigned ttl_s, char out[AUTH_SECRET_HEX + 1])
{
    char code[AUTH_SECRET_HEX + 1];
    if (ttl_s == 0 || ttl_s > AUTH_CODE_TTL_S)
        return -EINVAL;
    int rc = random_hex(code);
    if (rc < 0)
        return rc;
    pthread_mutex_lock(&a->lock);
    time_t now = a->now();
    struct secret_slot *s = slot_take(a->codes, AUTH_MAX_CODES, now);
    s->used = true;
    s->expires = now + (time_t)ttl_s;
    memcpy(s->hex, code, sizeof(code));
    pthread_mutex_unlock(&a->lock);
    memcpy(out, code, sizeof(code));
    OPENSSL_cleanse(code, sizeof(code));
    return 0;
}

int auth_code_redeem(struct auth *a, const char *code, char session[AUTH_SECRET_HEX + 1])
{
    char secret[AUTH_SECRET_HEX + 1];
    int rc = random_hex(secret);
    if (rc < 0)
        return rc;
    size_t len = code ? strlen(code) : 0;
    pthread_mutex_lock(&a->lock);
    time_t now = a->now();
    int i = slot_find(a->codes, AUTH_MAX_CODES, code, len, now);
    if (i < 0) {
        rc = -EACCES;
    } else {
        OPENSSL_cleanse(&a->codes[i], sizeof(a->codes[i]));
        struct secret_slot *s = slot_take(a->sessions, AUTH_MAX_SESSIONS, now);
        s->used = true;
        s->expires = now + AUTH_SESSION_TTL_S;
        memcpy(s->hex, secret, sizeof(secret));
    }
    pthread_mutex_unlock(&a->lock);
    if (rc == 0)
        memcpy(session, secret, sizeof(secret));
    OPENSSL_cleanse(secret, sizeof(secret));
    return rc;
}

bool auth_cookie_ok(struct auth *a, const char *cookie)
{
    static const char name[] = AUTH_COOKIE_NAME "=";
    const size_t nlen = sizeof(name) - 1;
    bool ok = false;
    if (!cookie)
        return false;
    /* Cookie: a=b; c=d — look at each pair; any live session is enough. */
    const char *p = cookie;
    while (*p) {
        while (*p == ' ' || *p == ';')
            p++;
        const char *end = strchr(p, ';');
        size_t plen = end ? (size_t)(end - p) : strlen(p);
        if (plen > nlen && memcmp(p, name, nlen) == 0) {
            const char *v = p + nlen;
            size_t vlen = plen - nlen;
            while (vlen > 0 && v[vlen - 1] == ' ')
                vlen--;
            pthread_mutex_lock(&a->lock);
            if (slot_find(a->sessions, AUTH_MAX_SESSIONS, v, vlen, a->now()) >= 0)
                ok = true;
            pthread_mutex_unlock(&a->lock);
        }
        p += plen;
    }
    return ok;
}

/* host[0..len) is `name` (any case), optionally followed by ":port". */
static bool host_is(const char *host, size_t len, const char *name, unsigned port)
{
    size_t nlen = strlen(name);
    if (nlen == 0 || len < nlen || strncasecmp(host, name, nlen) != 0)
        return false;
    if (len == nlen)
        return true;
    char suffix[16];
    int slen = snprintf(suffix, sizeof(suffix), ":%u", port);
    return (size_t)slen == len - nlen && memcmp(host + nlen, suffix, (size_t)slen) == 0;
}

bool auth_host_ok(const char *host, unsigned port, const char *const *allow, size_t nallow)
{
    static const char *const loopback[] = {"localhost", "127.0.0.1", "[::1]"};
    if (!host)
        return false;
    size_t len = strlen(host);
    for (size_t i = 0; i < sizeof(loopback) / sizeof(loopback[0]); i++)
        if (host_is(host, len, loopback[i], port))
            return true;
    for (size_t i = 0; i < nallow; i++)
        if (allow[i] && host_is(host, len, allow[i], port))
            return true;
    return false;
}

bool auth_origin_ok(const char *origin, const char *host)
{
    static const char scheme[] = "http://";
    if (!origin || !host || strncasecmp(origin, scheme, sizeof(scheme) - 1) != 0)
        return false;
    return strcasecmp(origin + sizeof(scheme) - 1, host) == 0;
}
