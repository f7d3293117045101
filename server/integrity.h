/*
 * Integrity of the guest assets: the SHA-256 of the kernel, the initramfs
 * and the root filesystem image are recorded when they are built and
 * compiled into `capsem` (a generated file sets them with
 * integrity_set_built()); before a boot each file is hashed and compared.
 * A hash is cached per user in a small JSON file keyed by path, inode,
 * size, mtime and ctime, so an unchanged 500 MB image is not read again on
 * every boot. The cache is only trusted when it is a regular file owned by
 * this user and writable by no one else; anything odd in it is ignored.
 */
#ifndef CAPSEM_SERVER_INTEGRITY_H
#define CAPSEM_SERVER_INTEGRITY_H

#include <stdbool.h>
#include <stddef.h>

/* Length of a SHA-256 in lowercase hex, without the NUL. */
#define INTEGRITY_HEX_LEN 64
/* Entries kept in the cache file (the oldest go first). */
#define INTEGRITY_CACHE_MAX 32
/*
 * A file changed less than this long before it was hashed is not cached:
 * a rewrite within the same timestamp tick would otherwise look unchanged.
 */
#define INTEGRITY_RACY_MS 1000

/* SHA-256 (hex, or NULL when that asset was not built) of the assets capsem was built with. */
struct integrity_built {
    const char *kernel;
    const char *initrd;
    const char *rootfs;
};

/*
 * The hashes of the assets in the build directory when `capsem` was linked,
 * defined by the generated asset_hashes.c that only the capsem executable
 * links (server/gen-asset-hashes.cmake).
 */
extern const struct integrity_built capsem_built_hashes;

/* Record the built hashes (borrowed for the life of the process). Not thread-safe. */
void integrity_set_built(const struct integrity_built *b);
/* The recorded hashes; all NULL when none were set. */
const struct integrity_built *integrity_get_built(void);

/* True when `s` is exactly 64 lowercase hex digits. */
bool integrity_hex_ok(const char *s);

/* How a file's hash is looked up. */
struct integrity_opts {
    const char *cache_path; /* cache file (borrowed), or NULL for no cache */
    unsigned racy_ms;       /* see INTEGRITY_RACY_MS */
};

/*
 * SHA-256 of the file at `path` into hex[0..65) (NUL-terminated), from the
 * cache when an entry matches the file's inode, size, mtime and ctime; else
 * by reading it (then the cache is updated, best effort). *cached tells
 * which (may be NULL). 0 or -errno (the file could not be opened or read).
 */
__attribute__((warn_unused_result)) int
integrity_file_sha256(const struct integrity_opts *o, const char *path, char hex[65], bool *cached);

/* One asset to check: what it is ("guest kernel"), where, and its recorded hash (NULL unknown). */
struct integrity_asset {
    const char *what;
    const char *path;
    const char *sha256;
};

/*
 * Check each asset in order. 0 when all match. Otherwise *bad (may be NULL)
 * is the index of the first failing asset, a one-line reason naming the file
 * is in err[0..errlen), and the result is -ENOENT (or another -errno) when
 * it cannot be read, -ENOKEY when no hash was recorded for it, -EBADMSG when
 * its contents differ from the recorded hash.
 */
__attribute__((warn_unused_result)) int integrity_verify(const struct integrity_opts *o,
                                                         const struct integrity_asset *assets,
                                                         size_t n, size_t *bad, char *err,
                                                         size_t errlen);

#endif
