/*
 * Guest asset integrity: SHA-256 of a file (OpenSSL EVP), a per-user cache
 * of those hashes keyed by the file's path, inode, size, mtime and ctime,
 * and the comparison with the hashes recorded at build time.
 *
 * The cache is a JSON file {"version":1,"entries":[{path, ino, size,
 * mtime_ns, ctime_ns, sha256}...]}. It is read only when it is a regular
 * file (not a symlink) owned by the effective user, writable by nobody
 * else and at most CACHE_MAX_BYTES; a corrupt file or entry is ignored, so
 * the worst a bad cache can do is cost a rehash. ctime cannot be set by a
 * user, so an entry cannot be made to match a rewritten file; a file
 * changed within racy_ms of being hashed is not cached, because a second
 * change in the same timestamp tick would leave its times as they were.
 * Writes go to a temporary file renamed over the old one.
 */
#include "integrity.h"

#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define CACHE_VERSION 1
#define CACHE_MAX_BYTES (256u << 10)
#define READ_CHUNK (1u << 20)

static const struct integrity_built no_hashes;
static const struct integrity_built *built = &no_hashes;

void integrity_set_built(const struct integrity_built *b)
{
    built = b ? b : &no_hashes;
}

const struct integrity_built *integrity_get_built(void)
{
    return built;
}

bool integrity_hex_ok(const char *s)
{
    if (!s)
        return false;
    for (size_t i = 0; i < INTEGRITY_HEX_LEN; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return s[INTEGRITY_HEX_LEN] == '\0';
}

static int64_t ts_ns(const struct timespec *t)
{
    return (int64_t)t->tv_sec * 1000000000 + t->tv_nsec;
}

/* What identifies one version of a file for the cache. */
struct file_id {
    const char *path;
    int64_t ino, size, mtime_ns, ctime_ns;
};

static void file_id_from(struct file_id *id, const char *path, const struct stat *st)
{
    *id = (struct file_id){.path = path,
                           .ino = (int64_t)st->st_ino,
                           .size = (int64_t)st->st_size,
                           .mtime_ns = ts_ns(&st->st_mtim),
                           .ctime_ns = ts_ns(&st->st_ctim)};
}

/*
 * The cache's root object when the file is trustworthy and well formed, else
 * NULL; why it was ignored is logged unless `quiet` (a second look at it).
 */
static json_t *cache_load(const char *cache_path, bool quiet)
{
    json_t *root = NULL;
    int fd = open(cache_path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        if (errno != ENOENT && !quiet)
            LOG_WARN("event=integrity_cache_ignored path=%s reason=\"%s\"", cache_path,
                     strerror(errno));
        return NULL;
    }
    struct stat st;
    const char *why = NULL;
    if (fstat(fd, &st) < 0)
        why = "stat failed";
    else if (!S_ISREG(st.st_mode))
        why = "not a regular file";
    else if (st.st_uid != geteuid())
        why = "owned by another user";
    else if (st.st_mode & (S_IWGRP | S_IWOTH))
        why = "writable by others";
    else if ((uint64_t)st.st_size > CACHE_MAX_BYTES)
        why = "too large";
    if (!why) {
        json_error_t jerr;
        root = json_loadfd(fd, JSON_REJECT_DUPLICATES, &jerr);
        if (!root || !json_is_object(root) ||
            json_integer_value(json_object_get(root, "version")) != CACHE_VERSION ||
            !json_is_array(json_object_get(root, "entries")))
            why = "corrupt";
    }
    close(fd);
    if (why) {
        if (!quiet)
            LOG_WARN("event=integrity_cache_ignored path=%s reason=\"%s\"", cache_path, why);
        json_decref(root);
        return NULL;
    }
    return root;
}

/* True when cache entry `e` describes exactly `id`. */
static bool entry_matches(json_t *e, const struct file_id *id)
{
    const char *path = json_string_value(json_object_get(e, "path"));
    json_t *ino = json_object_get(e, "ino"), *size = json_object_get(e, "size");
    json_t *mt = json_object_get(e, "mtime_ns"), *ct = json_object_get(e, "ctime_ns");
    return path && !strcmp(path, id->path) && json_is_integer(ino) && json_is_integer(size) &&
           json_is_integer(mt) && json_is_integer(ct) && json_integer_value(ino) == id->ino &&
           json_integer_value(size) == id->size && json_integer_value(mt) == id->mtime_ns &&
           json_integer_value(ct) == id->ctime_ns;
}

/* The cached hash of `id`, copied into hex; false when there is none. */
static bool cache_lookup(const char *cache_path, const struct file_id *id, char hex[65])
{
    bool found = false;
    json_t *root = cache_load(cache_path, false);
    if (!root)
        return false;
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(root, "entries"), i, e)
    {
        const char *h = json_string_value(json_object_get(e, "sha256"));
        if (!json_is_object(e) || !integrity_hex_ok(h) || !entry_matches(e, id))
            continue;
        memcpy(hex, h, INTEGRITY_HEX_LEN + 1);
        found = true;
    }
    json_decref(root);
    return found;
}

/* Add (or replace) the entry for `id`; best effort, logged on failure. */
static void cache_store(const char *cache_path, const struct file_id *id, const char *hex)
{
    char tmp[4200];
    json_t *old = cache_load(cache_path, true);
    json_t *entries = json_array();
    json_t *root = json_object();
    int fd = -1;
    if (!entries || !root)
        goto out;
    if (old) {
        size_t i;
        json_t *e;
        json_array_foreach(json_object_get(old, "entries"), i, e)
        {
            const char *p = json_string_value(json_object_get(e, "path"));
            if (json_is_object(e) && p && strcmp(p, id->path) != 0 &&
                json_array_append(entries, e) < 0)
                goto out;
        }
    }
    json_t *ne =
        json_pack("{s:s, s:I, s:I, s:I, s:I, s:s}", "path", id->path, "ino", (json_int_t)id->ino,
                  "size", (json_int_t)id->size, "mtime_ns", (json_int_t)id->mtime_ns, "ctime_ns",
                  (json_int_t)id->ctime_ns, "sha256", hex);
    if (!ne || json_array_append_new(entries, ne) < 0)
        goto out;
    while (json_array_size(entries) > INTEGRITY_CACHE_MAX)
        json_array_remove(entries, 0);
    if (json_object_set_new(root, "version", json_integer(CACHE_VERSION)) < 0 ||
        json_object_set(root, "entries", entries) < 0)
        goto out;
    int n = snprintf(tmp, sizeof(tmp), "%s.tmp.%d", cache_path, (int)getpid());
    if (n < 0 || (size_t)n >= sizeof(tmp))
        goto out;
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        LOG_INFO("event=integrity_cache_write path=%s err=\"%s\"", tmp, strerror(errno));
        goto out;
    }
    int wr = json_dumpfd(root, fd, JSON_COMPACT);
    int cl = close(fd);
    fd = -1;
    if (wr < 0 || cl < 0) {
        unlink(tmp);
        LOG_INFO("event=integrity_cache_write path=%s err=write_failed", tmp);
        goto out;
    }
    if (rename(tmp, cache_path) < 0) {
        LOG_INFO("event=integrity_cache_write path=%s err=\"%s\"", cache_path, strerror(errno));
        unlink(tmp);
    }
out:
    if (fd >= 0)
        close(fd);
    json_decref(old);
    json_decref(entries);
    json_decref(root);
}

/* SHA-256 of everything readable from fd, as hex. 0 or -errno. */
static int hash_fd(int fd, char hex[65])
{
    int rc = 0;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    unsigned char *buf = malloc(READ_CHUNK);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!buf || !ctx) {
        rc = -ENOMEM;
        goto out;
    }
    if (EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
        rc = -EIO;
        goto out;
    }
    for (;;) {
        ssize_t n = read(fd, buf, READ_CHUNK);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = -errno;
            goto out;
        }
        if (n == 0)
            break;
        if (EVP_DigestUpdate(ctx, buf, (size_t)n) != 1) {
            rc = -EIO;
            goto out;
        }
    }
    if (EVP_DigestFinal_ex(ctx, md, &mdlen) != 1 || mdlen != INTEGRITY_HEX_LEN / 2) {
        rc = -EIO;
        goto out;
    }
    for (unsigned i = 0; i < mdlen; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
out:
    EVP_MD_CTX_free(ctx);
    free(buf);
    return rc;
}

int integrity_file_sha256(const struct integrity_opts *o, const char *path, char hex[65],
                          bool *cached)
{
    int rc = 0;
    char h[65];
    struct stat before, after;
    struct file_id id;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return -errno;
    if (fstat(fd, &before) < 0) {
        rc = -errno;
        goto out;
    }
    if (!S_ISREG(before.st_mode)) {
        rc = S_ISDIR(before.st_mode) ? -EISDIR : -EINVAL;
        goto out;
    }
    file_id_from(&id, path, &before);
    if (o && o->cache_path && cache_lookup(o->cache_path, &id, h)) {
        memcpy(hex, h, sizeof(h));
        if (cached)
            *cached = true;
        goto out;
    }
    struct timespec start;
    clock_gettime(CLOCK_REALTIME, &start);
    rc = hash_fd(fd, h);
    if (rc)
        goto out;
    if (fstat(fd, &after) < 0) {
        rc = -errno;
        goto out;
    }
    /* Cache only a file that stood still while it was read and for a while before. */
    int64_t settled = ts_ns(&start) - (int64_t)(o ? o->racy_ms : INTEGRITY_RACY_MS) * 1000000;
    struct file_id id2;
    file_id_from(&id2, path, &after);
    bool still = id2.ino == id.ino && id2.size == id.size && id2.mtime_ns == id.mtime_ns &&
                 id2.ctime_ns == id.ctime_ns;
    if (o && o->cache_path && still && id.mtime_ns <= settled && id.ctime_ns <= settled)
        cache_store(o->cache_path, &id, h);
    memcpy(hex, h, sizeof(h));
    if (cached)
        *cached = false;
out:
    close(fd);
    return rc;
}

int integrity_verify(const struct integrity_opts *o, const struct integrity_asset *assets, size_t n,
                     size_t *bad, char *err, size_t errlen)
{
    err[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        if (bad)
            *bad = i;
        const struct integrity_asset *a = &assets[i];
        char hex[65];
        bool cached = false;
        if (!integrity_hex_ok(a->sha256)) {
            snprintf(err, errlen, "no SHA-256 was recorded at build time for the %s %s", a->what,
                     a->path);
            return -ENOKEY;
        }
        int rc = integrity_file_sha256(o, a->path, hex, &cached);
        if (rc == -ENOENT) {
            snprintf(err, errlen, "%s not found: %s", a->what, a->path);
            return rc;
        }
        if (rc) {
            snprintf(err, errlen, "%s not usable: %s: %s", a->what, a->path, strerror(-rc));
            return rc;
        }
        LOG_DEBUG("event=integrity_checked what=\"%s\" path=%s cached=%d", a->what, a->path,
                  (int)cached);
        if (strcmp(hex, a->sha256) != 0) {
            snprintf(err, errlen,
                     "%s %s does not match the SHA-256 recorded when it was built "
                     "(recorded %.16s..., file has %.16s...); refusing to boot it",
                     a->what, a->path, a->sha256, hex);
            return -EBADMSG;
        }
    }
    return 0;
}
