/*
 * Unit tests for the guest asset integrity check (server/integrity.c) on
 * real files in a temporary directory. What each kind of bad input does:
 * - an asset whose bytes differ from the recorded hash: -EBADMSG, the
 *   message names the asset and its path, *bad is its index;
 * - an asset with no recorded hash (NULL or not 64 lowercase hex): -ENOKEY;
 * - a missing asset: -ENOENT, "<what> not found: <path>"; a directory: -EISDIR;
 * - a cache file that is corrupt JSON, the wrong shape, too large, a
 *   symlink, writable by others or owned by another user: ignored (the file
 *   is hashed again and the right answer given), and a corrupt one is
 *   replaced by a good one on the next store;
 * - a file rewritten with the same size, or touched back to its old mtime:
 *   the cache misses (ctime and mtime are part of the key);
 * - a file changed just before it was hashed: not cached (racy window).
 * The cache hit is shown by planting a different hash in a trusted cache
 * entry for the file's exact identity: only a lookup can return it.
 */
#include "integrity.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define ABC_SHA256 "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
#define EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define FAKE_SHA256 "0000000000000000000000000000000000000000000000000000000000000001"

static char dir[256];
static char cache[300];

static void path_in(char *out, size_t size, const char *name)
{
    snprintf(out, size, "%s/%s", dir, name);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
    assert_int_equal(fclose(f), 0);
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/capsem-test-integrity-XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(cache, sizeof(cache), "%s/cache.json", dir);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* Options with the cache and no racy window (the tests wait out the tick themselves). */
static const struct integrity_opts opts = {.cache_path = cache, .racy_ms = 0};

static void hash_of(const char *path, char hex[65], bool *cached)
{
    assert_int_equal(integrity_file_sha256(&opts, path, hex, cached), 0);
}

/* Replace the sha256 of every cache entry for `path` with `hex`. */
static void plant_in_cache(const char *path, const char *hex)
{
    json_t *root = json_load_file(cache, 0, NULL);
    assert_non_null(root);
    size_t i;
    json_t *e;
    int n = 0;
    json_array_foreach(json_object_get(root, "entries"), i, e)
    {
        if (!strcmp(json_string_value(json_object_get(e, "path")), path)) {
            json_object_set_new(e, "sha256", json_string(hex));
            n++;
        }
    }
    assert_int_equal(n, 1);
    assert_int_equal(json_dump_file(root, cache, 0), 0);
    chmod(cache, 0600);
    json_decref(root);
}

static void test_integrity_file_sha256_known_values(void **state)
{
    (void)state;
    char p[300], hex[65];
    bool cached = true;
    path_in(p, sizeof(p), "abc");
    write_file(p, "abc");
    assert_int_equal(integrity_file_sha256(NULL, p, hex, &cached), 0);
    assert_string_equal(hex, ABC_SHA256);
    assert_false(cached);
    path_in(p, sizeof(p), "empty");
    write_file(p, "");
    assert_int_equal(integrity_file_sha256(NULL, p, hex, NULL), 0);
    assert_string_equal(hex, EMPTY_SHA256);
}

static void test_integrity_file_sha256_missing_or_directory(void **state)
{
    (void)state;
    char p[300], hex[65];
    path_in(p, sizeof(p), "nope");
    assert_int_equal(integrity_file_sha256(&opts, p, hex, NULL), -ENOENT);
    assert_int_equal(integrity_file_sha256(&opts, dir, hex, NULL), -EISDIR);
}

static void test_integrity_hex_ok_shapes(void **state)
{
    (void)state;
    assert_true(integrity_hex_ok(ABC_SHA256));
    assert_false(integrity_hex_ok(NULL));
    assert_false(integrity_hex_ok(""));
    assert_false(
        integrity_hex_ok("BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD"));
    assert_false(integrity_hex_ok(ABC_SHA256 "0"));
    assert_false(
        integrity_hex_ok("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015a"));
    assert_false(
        integrity_hex_ok("ga7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
}

/* Three assets with contents "k", "i", "r". */
static void make_assets(struct integrity_asset a[3], char paths[3][300], char hashes[3][65])
{
    static const char *const names[3] = {"vmlinux", "initrd.img", "rootfs.sqfs"};
    static const char *const whats[3] = {"guest kernel", "guest initramfs",
                                         "guest root filesystem"};
    static const char *const text[3] = {"k", "i", "r"};
    for (int i = 0; i < 3; i++) {
        path_in(paths[i], sizeof(paths[i]), names[i]);
        write_file(paths[i], text[i]);
        assert_int_equal(integrity_file_sha256(NULL, paths[i], hashes[i], NULL), 0);
        a[i] = (struct integrity_asset){whats[i], paths[i], hashes[i]};
    }
}

static void test_integrity_verify_all_match(void **state)
{
    (void)state;
    struct integrity_asset a[3];
    char paths[3][300], hashes[3][65], err[600];
    make_assets(a, paths, hashes);
    size_t bad = 99;
    assert_int_equal(integrity_verify(&opts, a, 3, &bad, err, sizeof(err)), 0);
    assert_string_equal(err, "");
}

/* Flip one byte of asset `which`: only it is refused, by name and path. */
static void check_tampered(int which)
{
    struct integrity_asset a[3];
    char paths[3][300], hashes[3][65], err[600];
    make_assets(a, paths, hashes);
    assert_int_equal(integrity_verify(&opts, a, 3, NULL, err, sizeof(err)), 0);
    static const char *const flipped[3] = {"K", "I", "R"};
    write_file(paths[which], flipped[which]);
    size_t bad = 99;
    assert_int_equal(integrity_verify(&opts, a, 3, &bad, err, sizeof(err)), -EBADMSG);
    assert_int_equal(bad, (size_t)which);
    if (!strstr(err, a[which].what) || !strstr(err, paths[which]) ||
        !strstr(err, "does not match the SHA-256 recorded"))
        fail_msg("refusal '%s' does not name %s %s", err, a[which].what, paths[which]);
    assert_null(strchr(err, '\n'));
}

static void test_integrity_verify_kernel_mismatch(void **state)
{
    (void)state;
    check_tampered(0);
}

static void test_integrity_verify_initrd_mismatch(void **state)
{
    (void)state;
    check_tampered(1);
}

static void test_integrity_verify_rootfs_mismatch(void **state)
{
    (void)state;
    check_tampered(2);
}

static void test_integrity_verify_unknown_hash(void **state)
{
    (void)state;
    struct integrity_asset a[3];
    char paths[3][300], hashes[3][65], err[600];
    make_assets(a, paths, hashes);
    a[2].sha256 = NULL;
    size_t bad = 99;
    assert_int_equal(integrity_verify(&opts, a, 3, &bad, err, sizeof(err)), -ENOKEY);
    assert_int_equal(bad, 2);
    assert_non_null(strstr(err, "no SHA-256 was recorded"));
    assert_non_null(strstr(err, paths[2]));
    a[2].sha256 = "ABC";
    assert_int_equal(integrity_verify(&opts, a, 3, &bad, err, sizeof(err)), -ENOKEY);
}

static void test_integrity_verify_missing_file(void **state)
{
    (void)state;
    struct integrity_asset a[3];
    char paths[3][300], hashes[3][65], err[600];
    make_assets(a, paths, hashes);
    unlink(paths[1]);
    size_t bad = 99;
    assert_int_equal(integrity_verify(&opts, a, 3, &bad, err, sizeof(err)), -ENOENT);
    assert_int_equal(bad, 1);
    char want[400];
    snprintf(want, sizeof(want), "guest initramfs not found: %s", paths[1]);
    assert_string_equal(err, want);
}

static void test_integrity_file_sha256_cache_hit(void **state)
{
    (void)state;
    char p[300], hex[65];
    bool cached = true;
    path_in(p, sizeof(p), "asset");
    write_file(p, "abc");
    sleep_ms(30); /* past the timestamp tick of the write */
    hash_of(p, hex, &cached);
    assert_false(cached);
    assert_string_equal(hex, ABC_SHA256);
    struct stat st;
    assert_int_equal(stat(cache, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    hash_of(p, hex, &cached);
    assert_true(cached);
    assert_string_equal(hex, ABC_SHA256);
    /* Only a lookup keyed by this very file can return a planted value. */
    plant_in_cache(p, FAKE_SHA256);
    hash_of(p, hex, &cached);
    assert_true(cached);
    assert_string_equal(hex, FAKE_SHA256);
}

static void test_integrity_file_sha256_cache_invalidated_by_rewrite(void **state)
{
    (void)state;
    char p[300], hex[65];
    bool cached;
    path_in(p, sizeof(p), "asset");
    write_file(p, "abc");
    sleep_ms(30);
    hash_of(p, hex, &cached);
    hash_of(p, hex, &cached);
    assert_true(cached);
    struct stat old;
    assert_int_equal(stat(p, &old), 0);
    /* Same size, other bytes, and the old mtime put back: ctime still moves. */
    sleep_ms(30);
    write_file(p, "abd");
    struct timespec times[2] = {old.st_atim, old.st_mtim};
    assert_int_equal(utimensat(AT_FDCWD, p, times, 0), 0);
    hash_of(p, hex, &cached);
    assert_false(cached);
    assert_string_not_equal(hex, ABC_SHA256);
    char want[65];
    assert_int_equal(integrity_file_sha256(NULL, p, want, NULL), 0);
    assert_string_equal(hex, want);
}

static void test_integrity_file_sha256_cache_invalidated_by_touch(void **state)
{
    (void)state;
    char p[300], hex[65];
    bool cached;
    path_in(p, sizeof(p), "asset");
    write_file(p, "abc");
    sleep_ms(30);
    hash_of(p, hex, &cached);
    plant_in_cache(p, FAKE_SHA256);
    sleep_ms(30);
    assert_int_equal(utimensat(AT_FDCWD, p, NULL, 0), 0); /* touch */
    hash_of(p, hex, &cached);
    assert_false(cached);
    assert_string_equal(hex, ABC_SHA256);
}

static void test_integrity_file_sha256_racy_file_not_cached(void **state)
{
    (void)state;
    char p[300], hex[65];
    bool cached;
    path_in(p, sizeof(p), "asset");
    write_file(p, "abc");
    struct integrity_opts racy = {.cache_path = cache, .racy_ms = INTEGRITY_RACY_MS};
    assert_int_equal(integrity_file_sha256(&racy, p, hex, &cached), 0);
    assert_int_equal(integrity_file_sha256(&racy, p, hex, &cached), 0);
    assert_false(cached);
    assert_string_equal(hex, ABC_SHA256);
}

/* Make the cache trusted with a planted entry for `p`, then spoil it with `spoil`. */
static void check_cache_ignored(void (*spoil)(void))
{
    char p[300], hex[65];
    bool cached = true;
    path_in(p, sizeof(p), "asset");
    write_file(p, "abc");
    sleep_ms(30);
    hash_of(p, hex, &cached);
    plant_in_cache(p, FAKE_SHA256);
    spoil();
    assert_int_equal(integrity_file_sha256(&opts, p, hex, &cached), 0);
    assert_false(cached);
    assert_string_equal(hex, ABC_SHA256);
}

static void spoil_world_writable(void)
{
    assert_int_equal(chmod(cache, 0666), 0);
}

static void spoil_group_writable(void)
{
    assert_int_equal(chmod(cache, 0620), 0);
}

static void spoil_other_owner(void)
{
    assert_int_equal(chown(cache, 65534, 65534), 0);
}

static void spoil_symlink(void)
{
    char real[320];
    snprintf(real, sizeof(real), "%s.real", cache);
    assert_int_equal(rename(cache, real), 0);
    assert_int_equal(symlink(real, cache), 0);
}

static void spoil_too_large(void)
{
    FILE *f = fopen(cache, "a");
    assert_non_null(f);
    for (int i = 0; i < 300 * 1024; i++)
        fputc(' ', f);
    fclose(f);
}

static void test_integrity_file_sha256_cache_writable_by_others_ignored(void **state)
{
    (void)state;
    check_cache_ignored(spoil_world_writable);
    check_cache_ignored(spoil_group_writable);
}

static void test_integrity_file_sha256_cache_of_other_user_ignored(void **state)
{
    (void)state;
    if (geteuid() != 0)
        skip(); /* only root can give a file away */
    check_cache_ignored(spoil_other_owner);
}

static void test_integrity_file_sha256_cache_symlink_ignored(void **state)
{
    (void)state;
    check_cache_ignored(spoil_symlink);
}

static void test_integrity_file_sha256_cache_too_large_ignored(void **state)
{
    (void)state;
    check_cache_ignored(spoil_too_large);
}

/* Write `text` as the cache (mode 0600); then hashing must still be right and fix the cache. */
static void check_corrupt_cache(const char *text)
{
    char p[300], hex[65];
    bool cached = true;
    path_in(p, sizeof(p), "asset");
    write_file(p, "abc");
    sleep_ms(30);
    write_file(cache, text);
    assert_int_equal(chmod(cache, 0600), 0);
    hash_of(p, hex, &cached);
    assert_false(cached);
    assert_string_equal(hex, ABC_SHA256);
    hash_of(p, hex, &cached); /* the corrupt cache was replaced by a good one */
    assert_true(cached);
    assert_string_equal(hex, ABC_SHA256);
}

static void test_integrity_file_sha256_corrupt_cache_ignored(void **state)
{
    (void)state;
    check_corrupt_cache("{\"version\":1,\"entries\":[{\"path\":");
    check_corrupt_cache("\x01\x02garbage\xff");
    check_corrupt_cache("[]");
    check_corrupt_cache("{\"version\":2,\"entries\":[]}");
    check_corrupt_cache("{\"version\":1,\"entries\":{}}");
    check_corrupt_cache("{\"version\":1,\"version\":1,\"entries\":[]}");
}

static void test_integrity_file_sha256_bad_cache_entries_skipped(void **state)
{
    (void)state;
    char p[300], hex[65];
    bool cached = true;
    path_in(p, sizeof(p), "asset");
    write_file(p, "abc");
    sleep_ms(30);
    hash_of(p, hex, &cached);
    json_t *root = json_load_file(cache, 0, NULL);
    assert_non_null(root);
    json_t *good = json_array_get(json_object_get(root, "entries"), 0);
    json_t *entries = json_array();
    /* Right identity, malformed values: none may be used. */
    const char *bad_hashes[] = {"", "XYZ", FAKE_SHA256 "00",
                                "000000000000000000000000000000000000000000000000000000000000000G"};
    for (size_t i = 0; i < sizeof(bad_hashes) / sizeof(bad_hashes[0]); i++) {
        json_t *e = json_deep_copy(good);
        json_object_set_new(e, "sha256", json_string(bad_hashes[i]));
        json_array_append_new(entries, e);
    }
    json_t *e = json_deep_copy(good);
    json_object_set_new(e, "sha256", json_string(FAKE_SHA256));
    json_object_set_new(e, "ino", json_string("1"));
    json_array_append_new(entries, e);
    json_array_append_new(entries, json_string("not an object"));
    json_array_append_new(entries, json_integer(7));
    json_object_set_new(root, "entries", entries);
    assert_int_equal(json_dump_file(root, cache, 0), 0);
    json_decref(root);
    assert_int_equal(chmod(cache, 0600), 0);
    hash_of(p, hex, &cached);
    assert_false(cached);
    assert_string_equal(hex, ABC_SHA256);
}

static void test_integrity_file_sha256_cache_bounded(void **state)
{
    (void)state;
    char p[300], hex[65];
    for (int i = 0; i < INTEGRITY_CACHE_MAX + 8; i++) {
        char name[32];
        snprintf(name, sizeof(name), "f%d", i);
        path_in(p, sizeof(p), name);
        write_file(p, name);
    }
    sleep_ms(30);
    for (int i = 0; i < INTEGRITY_CACHE_MAX + 8; i++) {
        char name[32];
        snprintf(name, sizeof(name), "f%d", i);
        path_in(p, sizeof(p), name);
        hash_of(p, hex, NULL);
    }
    json_t *root = json_load_file(cache, 0, NULL);
    assert_non_null(root);
    assert_int_equal(json_array_size(json_object_get(root, "entries")), INTEGRITY_CACHE_MAX);
    json_decref(root);
    bool cached = false;
    hash_of(p, hex, &cached); /* the newest is kept */
    assert_true(cached);
    path_in(p, sizeof(p), "f0"); /* the oldest went */
    hash_of(p, hex, &cached);
    assert_false(cached);
}

static void test_integrity_set_built_and_reset(void **state)
{
    (void)state;
    static const struct integrity_built b = {ABC_SHA256, EMPTY_SHA256, NULL};
    assert_null(integrity_get_built()->kernel);
    integrity_set_built(&b);
    assert_string_equal(integrity_get_built()->initrd, EMPTY_SHA256);
    integrity_set_built(NULL);
    assert_null(integrity_get_built()->kernel);
    assert_null(integrity_get_built()->rootfs);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_integrity_file_sha256_known_values),
        T(test_integrity_file_sha256_missing_or_directory),
        T(test_integrity_hex_ok_shapes),
        T(test_integrity_verify_all_match),
        T(test_integrity_verify_kernel_mismatch),
        T(test_integrity_verify_initrd_mismatch),
        T(test_integrity_verify_rootfs_mismatch),
        T(test_integrity_verify_unknown_hash),
        T(test_integrity_verify_missing_file),
        T(test_integrity_file_sha256_cache_hit),
        T(test_integrity_file_sha256_cache_invalidated_by_rewrite),
        T(test_integrity_file_sha256_cache_invalidated_by_touch),
        T(test_integrity_file_sha256_racy_file_not_cached),
        T(test_integrity_file_sha256_cache_writable_by_others_ignored),
        T(test_integrity_file_sha256_cache_of_other_user_ignored),
        T(test_integrity_file_sha256_cache_symlink_ignored),
        T(test_integrity_file_sha256_cache_too_large_ignored),
        T(test_integrity_file_sha256_corrupt_cache_ignored),
        T(test_integrity_file_sha256_bad_cache_entries_skipped),
        T(test_integrity_file_sha256_cache_bounded),
        T(test_integrity_set_built_and_reset),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
