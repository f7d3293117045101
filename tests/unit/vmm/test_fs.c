/*
 * FUSE server tests: the test is the guest kernel, building request buffers
 * by hand against a fresh temporary directory ("root") that sits next to an
 * "outside" directory holding a secret file. What each kind of bad input
 * gets:
 *   - a buffer shorter than a FUSE header, or a len field that does not
 *     match the buffer, or an argument struct cut short: EINVAL reply;
 *   - a name with '/', ".", "..", no NUL, or over 255 bytes: EINVAL or
 *     ENAMETOOLONG, nothing touched on the host;
 *   - a node id never handed out or already forgotten: ESTALE;
 *   - a file handle never handed out or already released: EBADF;
 *   - MKNOD: EPERM; RENAME_WHITEOUT: EINVAL; unknown opcode: ENOSYS; xattr
 *     ops: EOPNOTSUPP; anything before INIT: EIO.
 * Symlinks are stored as given and never followed on the host, so every
 * escape attempt through one ends in ENOTDIR/ELOOP.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "fuse_server.h"
#include "isolate.h"

#include <dirent.h>
#include <stdbool.h>
#include <sys/sysmacros.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/fuse.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_EVENTS 64

struct fx {
    char base[64];
    char root[96];
    char outside[96];
    struct vmm_fuse *s;
    uint8_t *in;
    uint8_t *out;
    size_t in_len;
    uint64_t unique;
    /* last reply */
    int32_t error;
    const uint8_t *payload;
    size_t payload_len;
    /* recorded events */
    unsigned nev;
    enum vmm_fs_event_kind ev_kind[MAX_EVENTS];
    char ev_path[MAX_EVENTS][128];
    char ev_to[MAX_EVENTS][128];
    uint64_t ev_size[MAX_EVENTS];
};

static void sink(void *opaque, const struct vmm_fs_event *ev)
{
    struct fx *f = opaque;
    if (f->nev >= MAX_EVENTS)
        return;
    f->ev_kind[f->nev] = ev->kind;
    snprintf(f->ev_path[f->nev], 128, "%s", ev->path);
    snprintf(f->ev_to[f->nev], 128, "%s", ev->to ? ev->to : "");
    f->ev_size[f->nev] = ev->size;
    f->nev++;
}

static void host_write(const char *path, const char *text)
{
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
}

/* Start a request: header with `op` and `nodeid`. */
static void req(struct fx *f, uint32_t op, uint64_t nodeid)
{
    struct fuse_in_header h = {.opcode = op, .nodeid = nodeid, .unique = ++f->unique};
    memcpy(f->in, &h, sizeof(h));
    f->in_len = sizeof(h);
}

static void add(struct fx *f, const void *p, size_t len)
{
    memcpy(f->in + f->in_len, p, len);
    f->in_len += len;
}

static void add_str(struct fx *f, const char *s)
{
    add(f, s, strlen(s) + 1);
}

/* Send the built request with the len field set right; returns the error (0 or -errno). */
static int32_t send_raw(struct fx *f, size_t len_field, size_t in_len)
{
    struct fuse_in_header h;
    memcpy(&h, f->in, sizeof(h));
    h.len = (uint32_t)len_field;
    memcpy(f->in, &h, sizeof(h));
    size_t n = vmm_fuse_handle(f->s, f->in, in_len, f->out, VMM_FUSE_BUF_SIZE);
    if (n == 0) {
        f->error = 1; /* no reply */
        f->payload_len = 0;
        return 1;
    }
    struct fuse_out_header oh;
    assert_true(n >= sizeof(oh));
    memcpy(&oh, f->out, sizeof(oh));
    assert_int_equal(oh.len, n);
    if (in_len >= sizeof(h))
        assert_int_equal(oh.unique, h.unique);
    f->error = oh.error;
    f->payload = f->out + sizeof(oh);
    f->payload_len = n - sizeof(oh);
    return oh.error;
}

static int32_t send(struct fx *f)
{
    return send_raw(f, f->in_len, f->in_len);
}

static void do_init(struct fx *f)
{
    struct fuse_init_in in = {.major = 7,
                              .minor = 36,
                              .max_readahead = 1u << 30,
                              .flags = FUSE_DO_READDIRPLUS | FUSE_MAX_PAGES | FUSE_BIG_WRITES};
    req(f, FUSE_INIT, 0);
    add(f, &in, sizeof(in));
    assert_int_equal(send(f), 0);
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    snprintf(f->base, sizeof(f->base), "/tmp/capsem-test-fs.XXXXXX");
    assert_non_null(mkdtemp(f->base));
    snprintf(f->root, sizeof(f->root), "%s/root", f->base);
    snprintf(f->outside, sizeof(f->outside), "%s/outside", f->base);
    assert_int_equal(mkdir(f->root, 0755), 0);
    assert_int_equal(mkdir(f->outside, 0755), 0);
    char p[160];
    snprintf(p, sizeof(p), "%s/secret", f->outside);
    host_write(p, "secret\n");
    f->in = malloc(VMM_FUSE_BUF_SIZE);
    f->out = malloc(VMM_FUSE_BUF_SIZE);
    assert_non_null(f->in);
    assert_non_null(f->out);
    int fd = open(f->root, O_RDONLY | O_DIRECTORY);
    assert_true(fd >= 0);
    assert_int_equal(vmm_fuse_create(&f->s, fd, sink, f), 0);
    *state = f;
    return 0;
}

static int rm_tree(const char *path)
{
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", path);
    return system(cmd);
}

static int teardown(void **state)
{
    struct fx *f = *state;
    vmm_fuse_destroy(f->s);
    (void)rm_tree(f->base);
    free(f->in);
    free(f->out);
    free(f);
    return 0;
}

static char *hpath(struct fx *f, const char *rel)
{
    static char p[256];
    snprintf(p, sizeof(p), "%s/%s", f->root, rel);
    return p;
}

/* LOOKUP `name` under `parent`: nodeid, or 0 with f->error set. */
static uint64_t lookup(struct fx *f, uint64_t parent, const char *name)
{
    req(f, FUSE_LOOKUP, parent);
    add_str(f, name);
    if (send(f))
        return 0;
    struct fuse_entry_out e;
    assert_int_equal(f->payload_len, sizeof(e));
    memcpy(&e, f->payload, sizeof(e));
    return e.nodeid;
}

static uint64_t create(struct fx *f, uint64_t parent, const char *name, uint32_t mode, uint64_t *fh)
{
    struct fuse_create_in in = {.flags = O_RDWR | O_CREAT | O_EXCL, .mode = S_IFREG | mode};
    req(f, FUSE_CREATE, parent);
    add(f, &in, sizeof(in));
    add_str(f, name);
    if (send(f))
        return 0;
    struct fuse_entry_out e;
    struct fuse_open_out o;
    assert_int_equal(f->payload_len, sizeof(e) + sizeof(o));
    memcpy(&e, f->payload, sizeof(e));
    memcpy(&o, f->payload + sizeof(e), sizeof(o));
    *fh = o.fh;
    return e.nodeid;
}

static uint64_t open_node(struct fx *f, uint64_t node, uint32_t flags)
{
    struct fuse_open_in in = {.flags = flags};
    req(f, FUSE_OPEN, node);
    add(f, &in, sizeof(in));
    if (send(f))
        return 0;
    struct fuse_open_out o;
    memcpy(&o, f->payload, sizeof(o));
    return o.fh;
}

static int32_t write_fh(struct fx *f, uint64_t node, uint64_t fh, uint64_t off, const void *data,
                        uint32_t len)
{
    struct fuse_write_in in = {.fh = fh, .offset = off, .size = len};
    req(f, FUSE_WRITE, node);
    add(f, &in, sizeof(in));
    add(f, data, len);
    int32_t e = send(f);
    if (e == 0) {
        struct fuse_write_out o;
        memcpy(&o, f->payload, sizeof(o));
        assert_int_equal(o.size, len);
    }
    return e;
}

static int32_t read_fh(struct fx *f, uint64_t node, uint64_t fh, uint64_t off, uint32_t len)
{
    struct fuse_read_in in = {.fh = fh, .offset = off, .size = len};
    req(f, FUSE_READ, node);
    add(f, &in, sizeof(in));
    return send(f);
}

static int32_t release(struct fx *f, uint64_t node, uint64_t fh, bool dir)
{
    struct fuse_release_in in = {.fh = fh};
    req(f, dir ? FUSE_RELEASEDIR : FUSE_RELEASE, node);
    add(f, &in, sizeof(in));
    return send(f);
}

static int32_t getattr(struct fx *f, uint64_t node, struct fuse_attr *a)
{
    struct fuse_getattr_in in = {0};
    req(f, FUSE_GETATTR, node);
    add(f, &in, sizeof(in));
    int32_t e = send(f);
    if (e == 0) {
        struct fuse_attr_out o;
        assert_int_equal(f->payload_len, sizeof(o));
        memcpy(&o, f->payload, sizeof(o));
        *a = o.attr;
    }
    return e;
}

static int32_t setattr(struct fx *f, uint64_t node, const struct fuse_setattr_in *in)
{
    req(f, FUSE_SETATTR, node);
    add(f, in, sizeof(*in));
    return send(f);
}

static uint64_t mkdir_node(struct fx *f, uint64_t parent, const char *name, uint32_t mode)
{
    struct fuse_mkdir_in in = {.mode = mode};
    req(f, FUSE_MKDIR, parent);
    add(f, &in, sizeof(in));
    add_str(f, name);
    if (send(f))
        return 0;
    struct fuse_entry_out e;
    memcpy(&e, f->payload, sizeof(e));
    return e.nodeid;
}

static int32_t symlink_node(struct fx *f, uint64_t parent, const char *name, const char *target)
{
    req(f, FUSE_SYMLINK, parent);
    add_str(f, name);
    add_str(f, target);
    return send(f);
}

static int32_t rename_node(struct fx *f, uint64_t olddir, const char *a, uint64_t newdir,
                           const char *b, uint32_t flags)
{
    struct fuse_rename2_in in = {.newdir = newdir, .flags = flags};
    req(f, FUSE_RENAME2, olddir);
    add(f, &in, sizeof(in));
    add_str(f, a);
    add_str(f, b);
    return send(f);
}

static int32_t link_node(struct fx *f, uint64_t oldnode, uint64_t newparent, const char *name)
{
    struct fuse_link_in in = {.oldnodeid = oldnode};
    req(f, FUSE_LINK, newparent);
    add(f, &in, sizeof(in));
    add_str(f, name);
    return send(f);
}

static void forget(struct fx *f, uint64_t node, uint64_t n)
{
    struct fuse_forget_in in = {.nlookup = n};
    req(f, FUSE_FORGET, node);
    add(f, &in, sizeof(in));
    assert_int_equal(send(f), 1); /* no reply */
}

static bool host_exists(const char *p)
{
    struct stat st;
    return lstat(p, &st) == 0;
}

/* ---- tests ---- */

static void test_handle_before_init_eio(void **state)
{
    struct fx *f = *state;
    req(f, FUSE_LOOKUP, FUSE_ROOT_ID);
    add_str(f, "x");
    assert_int_equal(send(f), -EIO);
}

static void test_init_negotiates_bounds(void **state)
{
    struct fx *f = *state;
    struct fuse_init_in in = {.major = 7,
                              .minor = 31,
                              .max_readahead = 1u << 30,
                              .flags = FUSE_DO_READDIRPLUS | FUSE_MAX_PAGES | FUSE_POSIX_ACL};
    req(f, FUSE_INIT, 0);
    add(f, &in, sizeof(in));
    assert_int_equal(send(f), 0);
    struct fuse_init_out o;
    assert_int_equal(f->payload_len, sizeof(o));
    memcpy(&o, f->payload, sizeof(o));
    assert_int_equal(o.major, 7);
    assert_int_equal(o.minor, 31); /* the guest's older minor wins */
    assert_int_equal(o.max_write, VMM_FUSE_MAX_WRITE);
    assert_true(o.max_readahead <= VMM_FUSE_MAX_WRITE);
    assert_true(o.flags & FUSE_DO_READDIRPLUS);
    assert_false(o.flags & FUSE_POSIX_ACL); /* not offered, never granted */
    assert_int_equal(o.max_pages, VMM_FUSE_MAX_WRITE / 4096);
    /* too old a major: an error */
    in.major = 6;
    req(f, FUSE_INIT, 0);
    add(f, &in, sizeof(in));
    assert_int_equal(send(f), -EPROTO);
    /* a newer major: our major comes back so the guest can retry */
    in.major = 8;
    req(f, FUSE_INIT, 0);
    add(f, &in, sizeof(in));
    assert_int_equal(send(f), 0);
    memcpy(&o, f->payload, sizeof(o));
    assert_int_equal(o.major, 7);
    /* truncated INIT */
    req(f, FUSE_INIT, 0);
    add(f, &in, 8);
    assert_int_equal(send(f), -EINVAL);
}

static void test_create_write_read_roundtrip(void **state)
{
    struct fx *f = *state;
    do_init(f);
    uint64_t fh = 0;
    uint64_t node = create(f, FUSE_ROOT_ID, "hello.txt", 0640, &fh);
    assert_int_not_equal(node, 0);
    const char msg[] = "hello from the guest\n";
    assert_int_equal(write_fh(f, node, fh, 0, msg, sizeof(msg) - 1), 0);
    assert_int_equal(read_fh(f, node, fh, 6, 4), 0);
    assert_int_equal(f->payload_len, 4);
    assert_memory_equal(f->payload, "from", 4);
    struct fuse_flush_in fl = {.fh = fh};
    req(f, FUSE_FLUSH, node);
    add(f, &fl, sizeof(fl));
    assert_int_equal(send(f), 0);
    struct fuse_fsync_in fs = {.fh = fh, .fsync_flags = 1};
    req(f, FUSE_FSYNC, node);
    add(f, &fs, sizeof(fs));
    assert_int_equal(send(f), 0);
    assert_int_equal(release(f, node, fh, false), 0);
    /* on the host: same bytes and mode */
    char buf[64] = {0};
    int fd = open(hpath(f, "hello.txt"), O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(read(fd, buf, sizeof(buf)), sizeof(msg) - 1);
    close(fd);
    assert_string_equal(buf, msg);
    struct stat st;
    assert_int_equal(stat(hpath(f, "hello.txt"), &st), 0);
    assert_int_equal(st.st_mode & 07777, 0640);
    assert_int_equal(st.st_uid, geteuid());
    /* events: create then write with the final size */
    assert_int_equal(f->nev, 2);
    assert_int_equal(f->ev_kind[0], VMM_FS_EVENT_CREATE);
    assert_string_equal(f->ev_path[0], "hello.txt");
    assert_int_equal(f->ev_kind[1], VMM_FS_EVENT_WRITE);
    assert_string_equal(f->ev_path[1], "hello.txt");
    assert_int_equal(f->ev_size[1], sizeof(msg) - 1);
    /* a host file is seen by the guest */
    host_write(hpath(f, "from-host"), "abc");
    uint64_t hn = lookup(f, FUSE_ROOT_ID, "from-host");
    assert_int_not_equal(hn, 0);
    struct fuse_attr a;
    assert_int_equal(getattr(f, hn, &a), 0);
    assert_int_equal(a.size, 3);
    uint64_t rfh = open_node(f, hn, O_RDONLY);
    assert_int_not_equal(rfh, 0);
    assert_int_equal(read_fh(f, hn, rfh, 0, 100), 0);
    assert_int_equal(f->payload_len, 3);
    assert_memory_equal(f->payload, "abc", 3);
    /* writing through a read-only handle fails on the host side */
    assert_int_equal(write_fh(f, hn, rfh, 0, "x", 1), -EBADF);
    assert_int_equal(release(f, hn, rfh, false), 0);
}

static void test_handle_fh_reuse_ebadf(void **state)
{
    struct fx *f = *state;
    do_init(f);
    uint64_t fh = 0;
    uint64_t node = create(f, FUSE_ROOT_ID, "f", 0600, &fh);
    assert_int_equal(release(f, node, fh, false), 0);
    assert_int_equal(release(f, node, fh, false), -EBADF);
    assert_int_equal(read_fh(f, node, fh, 0, 10), -EBADF);
    assert_int_equal(write_fh(f, node, fh, 0, "x", 1), -EBADF);
    /* a new handle in the same slot does not answer to the old number */
    uint64_t fh2 = open_node(f, node, O_RDWR);
    assert_int_not_equal(fh2, 0);
    assert_int_not_equal(fh2, fh);
    assert_int_equal(read_fh(f, node, fh, 0, 10), -EBADF);
    assert_int_equal(read_fh(f, node, 0xdeadbeef00000007ull, 0, 10), -EBADF);
    /* a file handle is not a directory handle */
    assert_int_equal(release(f, node, fh2, true), -EBADF);
    assert_int_equal(release(f, node, fh2, false), 0);
    unsigned ni, nh;
    vmm_fuse_counts(f->s, &ni, &nh);
    assert_int_equal(nh, 0);
}

static void test_setattr_mode_size_times_owner(void **state)
{
    struct fx *f = *state;
    do_init(f);
    host_write(hpath(f, "s"), "0123456789");
    uint64_t n = lookup(f, FUSE_ROOT_ID, "s");
    assert_int_not_equal(n, 0);
    struct fuse_setattr_in in = {.valid = FATTR_MODE, .mode = S_IFREG | 04755};
    assert_int_equal(setattr(f, n, &in), 0);
    struct stat st;
    assert_int_equal(stat(hpath(f, "s"), &st), 0);
    assert_int_equal(st.st_mode & 07777, 0755); /* setuid stripped */
    in = (struct fuse_setattr_in){.valid = FATTR_SIZE, .size = 4};
    assert_int_equal(setattr(f, n, &in), 0);
    assert_int_equal(stat(hpath(f, "s"), &st), 0);
    assert_int_equal(st.st_size, 4);
    in = (struct fuse_setattr_in){.valid = FATTR_MTIME | FATTR_ATIME,
                                  .mtime = 1000000000,
                                  .mtimensec = 123456789,
                                  .atime = 999};
    assert_int_equal(setattr(f, n, &in), 0);
    assert_int_equal(stat(hpath(f, "s"), &st), 0);
    assert_int_equal(st.st_mtim.tv_sec, 1000000000);
    assert_int_equal(st.st_mtim.tv_nsec, 123456789);
    assert_int_equal(st.st_atim.tv_sec, 999);
    struct fuse_attr a;
    assert_int_equal(getattr(f, n, &a), 0);
    assert_int_equal(a.mtime, 1000000000);
    assert_int_equal(a.mtimensec, 123456789);
    /* giving the file to someone else is refused; naming the owner is a no-op */
    in = (struct fuse_setattr_in){.valid = FATTR_UID, .uid = st.st_uid + 1};
    assert_int_equal(setattr(f, n, &in), -EPERM);
    in = (struct fuse_setattr_in){.valid = FATTR_GID, .gid = st.st_gid + 1};
    assert_int_equal(setattr(f, n, &in), -EPERM);
    in = (struct fuse_setattr_in){
        .valid = FATTR_UID | FATTR_GID, .uid = st.st_uid, .gid = st.st_gid};
    assert_int_equal(setattr(f, n, &in), 0);
    /* truncated setattr */
    req(f, FUSE_SETATTR, n);
    add(f, &in, 10);
    assert_int_equal(send(f), -EINVAL);
}

static void test_dirs_mkdir_readdir_rmdir(void **state)
{
    struct fx *f = *state;
    do_init(f);
    uint64_t d = mkdir_node(f, FUSE_ROOT_ID, "dir", 0750);
    assert_int_not_equal(d, 0);
    struct stat st;
    assert_int_equal(stat(hpath(f, "dir"), &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(st.st_mode & 07777, 0750);
    uint64_t fh;
    for (int i = 0; i < 3; i++) {
        char name[16];
        snprintf(name, sizeof(name), "f%d", i);
        uint64_t n = create(f, d, name, 0644, &fh);
        assert_int_not_equal(n, 0);
        assert_int_equal(release(f, n, fh, false), 0);
    }
    struct fuse_open_in oi = {0};
    req(f, FUSE_OPENDIR, d);
    add(f, &oi, sizeof(oi));
    assert_int_equal(send(f), 0);
    struct fuse_open_out oo;
    memcpy(&oo, f->payload, sizeof(oo));
    uint64_t dfh = oo.fh;
    /* READDIR with a small buffer, resumed by offset */
    unsigned seen = 0, files = 0;
    uint64_t off = 0;
    for (int round = 0; round < 20; round++) {
        struct fuse_read_in ri = {.fh = dfh, .offset = off, .size = 64};
        req(f, FUSE_READDIR, d);
        add(f, &ri, sizeof(ri));
        assert_int_equal(send(f), 0);
        if (f->payload_len == 0)
            break;
        size_t p = 0;
        while (p < f->payload_len) {
            struct fuse_dirent de;
            memcpy(&de, f->payload + p, sizeof(de));
            const char *nm = (const char *)f->payload + p + sizeof(de);
            if (de.namelen == 2 && nm[0] == 'f')
                files++;
            seen++;
            off = de.off;
            p += (sizeof(de) + de.namelen + 7) & ~(size_t)7;
        }
    }
    assert_int_equal(seen, 5); /* ".", ".." and three files */
    assert_int_equal(files, 3);
    /* READDIRPLUS from the start hands out node ids */
    struct fuse_read_in ri = {.fh = dfh, .offset = 0, .size = 4096};
    req(f, FUSE_READDIRPLUS, d);
    add(f, &ri, sizeof(ri));
    assert_int_equal(send(f), 0);
    size_t p = 0;
    unsigned with_ids = 0;
    while (p < f->payload_len) {
        struct fuse_direntplus dp;
        memcpy(&dp, f->payload + p, sizeof(dp));
        if (dp.entry_out.nodeid)
            with_ids++;
        p += (sizeof(dp) + dp.dirent.namelen + 7) & ~(size_t)7;
    }
    assert_int_equal(with_ids, 3);
    struct fuse_fsync_in fs = {.fh = dfh};
    req(f, FUSE_FSYNCDIR, d);
    add(f, &fs, sizeof(fs));
    assert_int_equal(send(f), 0);
    assert_int_equal(release(f, d, dfh, true), 0);
    /* rmdir of a non-empty dir fails, then unlink the files and it works */
    req(f, FUSE_RMDIR, FUSE_ROOT_ID);
    add_str(f, "dir");
    assert_int_equal(send(f), -ENOTEMPTY);
    for (int i = 0; i < 3; i++) {
        char name[16];
        snprintf(name, sizeof(name), "f%d", i);
        req(f, FUSE_UNLINK, d);
        add_str(f, name);
        assert_int_equal(send(f), 0);
    }
    req(f, FUSE_RMDIR, FUSE_ROOT_ID);
    add_str(f, "dir");
    assert_int_equal(send(f), 0);
    assert_false(host_exists(hpath(f, "dir")));
    assert_int_equal(f->ev_kind[f->nev - 1], VMM_FS_EVENT_DELETE);
    assert_string_equal(f->ev_path[f->nev - 1], "dir");
    assert_string_equal(f->ev_path[f->nev - 2], "dir/f2");
}

static void test_rename_flags(void **state)
{
    struct fx *f = *state;
    do_init(f);
    host_write(hpath(f, "a"), "A");
    host_write(hpath(f, "b"), "B");
    uint64_t d = mkdir_node(f, FUSE_ROOT_ID, "sub", 0755);
    assert_int_equal(rename_node(f, FUSE_ROOT_ID, "a", FUSE_ROOT_ID, "b", RENAME_NOREPLACE),
                     -EEXIST);
    assert_int_equal(rename_node(f, FUSE_ROOT_ID, "a", FUSE_ROOT_ID, "b", RENAME_EXCHANGE), 0);
    char buf[4] = {0};
    int fd = open(hpath(f, "a"), O_RDONLY);
    assert_int_equal(read(fd, buf, 1), 1);
    close(fd);
    assert_string_equal(buf, "B");
    assert_int_equal(rename_node(f, FUSE_ROOT_ID, "a", d, "moved", 0), 0);
    assert_true(host_exists(hpath(f, "sub/moved")));
    assert_int_equal(f->ev_kind[f->nev - 1], VMM_FS_EVENT_RENAME);
    assert_string_equal(f->ev_path[f->nev - 1], "a");
    assert_string_equal(f->ev_to[f->nev - 1], "sub/moved");
    /* RENAME_WHITEOUT would make a device node */
    assert_int_equal(rename_node(f, FUSE_ROOT_ID, "b", FUSE_ROOT_ID, "c", RENAME_WHITEOUT),
                     -EINVAL);
    /* plain RENAME (old opcode) */
    struct fuse_rename_in ri = {.newdir = FUSE_ROOT_ID};
    req(f, FUSE_RENAME, FUSE_ROOT_ID);
    add(f, &ri, sizeof(ri));
    add_str(f, "b");
    add_str(f, "c");
    assert_int_equal(send(f), 0);
    assert_true(host_exists(hpath(f, "c")));
}

static void test_rename_out_of_root_refused(void **state)
{
    struct fx *f = *state;
    do_init(f);
    host_write(hpath(f, "x"), "X");
    assert_int_equal(rename_node(f, FUSE_ROOT_ID, "x", FUSE_ROOT_ID, "../x", 0), -EINVAL);
    assert_int_equal(rename_node(f, FUSE_ROOT_ID, "x", FUSE_ROOT_ID, "..", 0), -EINVAL);
    assert_int_equal(rename_node(f, FUSE_ROOT_ID, "x", 0x7777, "x", 0), -ESTALE);
    assert_int_equal(rename_node(f, FUSE_ROOT_ID, "../outside/secret", FUSE_ROOT_ID, "y", 0),
                     -EINVAL);
    char p[160];
    snprintf(p, sizeof(p), "%s/x", f->base);
    assert_false(host_exists(p));
    assert_true(host_exists(hpath(f, "x")));
}

static void test_symlink_escape_refused(void **state)
{
    struct fx *f = *state;
    do_init(f);
    /* stored as given */
    assert_int_equal(symlink_node(f, FUSE_ROOT_ID, "etc", "/etc"), 0);
    char target[64] = {0};
    assert_int_equal(readlink(hpath(f, "etc"), target, sizeof(target) - 1), 4);
    assert_string_equal(target, "/etc");
    assert_int_equal(symlink_node(f, FUSE_ROOT_ID, "up", "../outside"), 0);
    uint64_t l = lookup(f, FUSE_ROOT_ID, "etc");
    assert_int_not_equal(l, 0);
    req(f, FUSE_READLINK, l);
    assert_int_equal(send(f), 0);
    assert_int_equal(f->payload_len, 4);
    assert_memory_equal(f->payload, "/etc", 4);
    /* walking through the link is a lookup under a symlink: never followed */
    assert_int_equal(lookup(f, l, "passwd"), 0);
    assert_int_equal(f->error, -ENOTDIR);
    uint64_t up = lookup(f, FUSE_ROOT_ID, "up");
    assert_int_equal(lookup(f, up, "secret"), 0);
    assert_int_equal(f->error, -ENOTDIR);
    /* opening the link itself does not follow it */
    assert_int_equal(open_node(f, l, O_RDONLY), 0);
    assert_int_equal(f->error, -ELOOP);
    req(f, FUSE_OPENDIR, up);
    struct fuse_open_in oi = {0};
    add(f, &oi, sizeof(oi));
    assert_int_not_equal(send(f), 0);
    /* creating through a link to outside: O_NOFOLLOW refuses */
    assert_int_equal(symlink_node(f, FUSE_ROOT_ID, "trap", "../outside/new"), 0);
    uint64_t fh;
    assert_int_equal(create(f, FUSE_ROOT_ID, "trap", 0644, &fh), 0);
    assert_true(f->error == -EEXIST || f->error == -ELOOP);
    char p[160];
    snprintf(p, sizeof(p), "%s/new", f->outside);
    assert_false(host_exists(p));
    /* truncating through a symlink node does not touch the target */
    uint64_t s = lookup(f, FUSE_ROOT_ID, "up");
    struct fuse_setattr_in in = {.valid = FATTR_SIZE, .size = 0};
    assert_int_not_equal(setattr(f, s, &in), 0);
    struct stat st;
    snprintf(p, sizeof(p), "%s/secret", f->outside);
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_size, 7);
    /* an empty target is refused */
    assert_int_equal(symlink_node(f, FUSE_ROOT_ID, "empty", ""), -ENOENT);
}

static void test_lookup_bad_names(void **state)
{
    struct fx *f = *state;
    do_init(f);
    assert_int_equal(lookup(f, FUSE_ROOT_ID, ".."), 0);
    assert_int_equal(f->error, -EINVAL);
    assert_int_equal(lookup(f, FUSE_ROOT_ID, "."), 0);
    assert_int_equal(f->error, -EINVAL);
    assert_int_equal(lookup(f, FUSE_ROOT_ID, "../outside"), 0);
    assert_int_equal(f->error, -EINVAL);
    assert_int_equal(lookup(f, FUSE_ROOT_ID, "/etc"), 0);
    assert_int_equal(f->error, -EINVAL);
    assert_int_equal(lookup(f, FUSE_ROOT_ID, ""), 0);
    assert_int_equal(f->error, -EINVAL);
    char longname[300];
    memset(longname, 'a', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    assert_int_equal(lookup(f, FUSE_ROOT_ID, longname), 0);
    assert_int_equal(f->error, -ENAMETOOLONG);
    /* a name without its NUL */
    req(f, FUSE_LOOKUP, FUSE_ROOT_ID);
    add(f, "abc", 3);
    assert_int_equal(send(f), -EINVAL);
    /* mkdir with a bad name touches nothing */
    assert_int_equal(mkdir_node(f, FUSE_ROOT_ID, "../evil", 0755), 0);
    assert_int_equal(f->error, -EINVAL);
    char p[160];
    snprintf(p, sizeof(p), "%s/evil", f->base);
    assert_false(host_exists(p));
    assert_int_equal(lookup(f, FUSE_ROOT_ID, "missing"), 0);
    assert_int_equal(f->error, -ENOENT);
}

static void test_link_inside_and_crafted_nodeid(void **state)
{
    struct fx *f = *state;
    do_init(f);
    host_write(hpath(f, "orig"), "data");
    uint64_t n = lookup(f, FUSE_ROOT_ID, "orig");
    assert_int_equal(link_node(f, n, FUSE_ROOT_ID, "copy"), 0);
    struct stat a, b;
    assert_int_equal(stat(hpath(f, "orig"), &a), 0);
    assert_int_equal(stat(hpath(f, "copy"), &b), 0);
    assert_int_equal(a.st_ino, b.st_ino);
    /* node ids never handed out: the outside file cannot be named */
    assert_int_equal(link_node(f, 2, FUSE_ROOT_ID, "x1"), -ESTALE);
    assert_int_equal(link_node(f, 0xdeadbeefull << 32 | 5, FUSE_ROOT_ID, "x2"), -ESTALE);
    assert_int_equal(link_node(f, 0, FUSE_ROOT_ID, "x3"), -ESTALE);
    assert_int_equal(link_node(f, UINT64_MAX, FUSE_ROOT_ID, "x4"), -ESTALE);
    /* a forgotten node id is stale too */
    uint64_t c = lookup(f, FUSE_ROOT_ID, "copy");
    assert_int_equal(c, n); /* same inode, same node */
    forget(f, n, 3);        /* lookup, the LINK reply, lookup */
    assert_int_equal(link_node(f, n, FUSE_ROOT_ID, "x5"), -ESTALE);
    struct fuse_attr at;
    assert_int_equal(getattr(f, n, &at), -ESTALE);
    /* directories cannot be hardlinked */
    uint64_t d = mkdir_node(f, FUSE_ROOT_ID, "d", 0755);
    assert_int_equal(link_node(f, d, FUSE_ROOT_ID, "dlink"), -EPERM);
    assert_false(host_exists(hpath(f, "x1")));
    assert_false(host_exists(hpath(f, "x5")));
}

static void test_mknod_refused(void **state)
{
    struct fx *f = *state;
    do_init(f);
    struct fuse_mknod_in in = {.mode = S_IFCHR | 0666, .rdev = makedev(1, 3)};
    req(f, FUSE_MKNOD, FUSE_ROOT_ID);
    add(f, &in, sizeof(in));
    add_str(f, "null");
    assert_int_equal(send(f), -EPERM);
    in.mode = S_IFIFO | 0644;
    req(f, FUSE_MKNOD, FUSE_ROOT_ID);
    add(f, &in, sizeof(in));
    add_str(f, "fifo");
    assert_int_equal(send(f), -EPERM);
    assert_false(host_exists(hpath(f, "null")));
    assert_false(host_exists(hpath(f, "fifo")));
    /* a fifo the host left there: CREATE without O_EXCL neither blocks nor opens it */
    assert_int_equal(mkfifo(hpath(f, "hostfifo"), 0644), 0);
    struct fuse_create_in ci = {.flags = O_WRONLY | O_CREAT, .mode = S_IFREG | 0644};
    req(f, FUSE_CREATE, FUSE_ROOT_ID);
    add(f, &ci, sizeof(ci));
    add_str(f, "hostfifo");
    assert_int_equal(send(f), -ENXIO); /* O_NONBLOCK write-only open of a fifo with no reader */
    ci.flags = O_RDWR | O_CREAT;
    req(f, FUSE_CREATE, FUSE_ROOT_ID);
    add(f, &ci, sizeof(ci));
    add_str(f, "hostfifo");
    assert_int_equal(send(f), -EACCES); /* opened without blocking, then refused */
    unsigned ni, nh;
    vmm_fuse_counts(f->s, &ni, &nh);
    assert_int_equal(nh, 0);
    /* a device node placed by the host is never opened */
    if (mknod(hpath(f, "hostnull"), S_IFCHR | 0666, makedev(1, 3)) == 0) {
        uint64_t n = lookup(f, FUSE_ROOT_ID, "hostnull");
        assert_int_not_equal(n, 0);
        assert_int_equal(open_node(f, n, O_RDWR), 0);
        assert_int_equal(f->error, -EACCES);
    }
}

static void test_handle_malformed_requests(void **state)
{
    struct fx *f = *state;
    do_init(f);
    /* shorter than a header: EINVAL with unique 0 */
    uint8_t small[10] = {0};
    size_t n = vmm_fuse_handle(f->s, small, sizeof(small), f->out, VMM_FUSE_BUF_SIZE);
    assert_int_equal(n, sizeof(struct fuse_out_header));
    struct fuse_out_header oh;
    memcpy(&oh, f->out, sizeof(oh));
    assert_int_equal(oh.error, -EINVAL);
    /* reply buffer too small for a header: no reply */
    req(f, FUSE_GETATTR, FUSE_ROOT_ID);
    assert_int_equal(vmm_fuse_handle(f->s, f->in, f->in_len, f->out, 8), 0);
    /* len field larger or smaller than the buffer */
    req(f, FUSE_LOOKUP, FUSE_ROOT_ID);
    add_str(f, "x");
    assert_int_equal(send_raw(f, f->in_len + 100, f->in_len), -EINVAL);
    assert_int_equal(send_raw(f, f->in_len - 1, f->in_len), -EINVAL);
    assert_int_equal(send_raw(f, 0, f->in_len), -EINVAL);
    /* unknown and unsupported opcodes */
    req(f, 9999, FUSE_ROOT_ID);
    assert_int_equal(send(f), -ENOSYS);
    req(f, FUSE_SETUPMAPPING, FUSE_ROOT_ID);
    assert_int_equal(send(f), -ENOSYS);
    req(f, FUSE_GETXATTR, FUSE_ROOT_ID);
    assert_int_equal(send(f), -EOPNOTSUPP);
    req(f, FUSE_LISTXATTR, FUSE_ROOT_ID);
    assert_int_equal(send(f), -EOPNOTSUPP);
    req(f, FUSE_SETXATTR, FUSE_ROOT_ID);
    assert_int_equal(send(f), -EOPNOTSUPP);
    req(f, FUSE_REMOVEXATTR, FUSE_ROOT_ID);
    assert_int_equal(send(f), -EOPNOTSUPP);
    /* bogus node ids */
    struct fuse_attr a;
    assert_int_equal(getattr(f, 0, &a), -ESTALE);
    assert_int_equal(getattr(f, 12345, &a), -ESTALE);
    assert_int_equal(getattr(f, UINT64_MAX, &a), -ESTALE);
    assert_int_equal(getattr(f, (uint64_t)VMM_FUSE_MAX_INODES + 1, &a), -ESTALE);
    /* truncated argument structs */
    req(f, FUSE_READ, FUSE_ROOT_ID);
    add(f, "abc", 3);
    assert_int_equal(send(f), -EINVAL);
    req(f, FUSE_WRITE, FUSE_ROOT_ID);
    add(f, "abc", 3);
    assert_int_equal(send(f), -EINVAL);
    req(f, FUSE_CREATE, FUSE_ROOT_ID);
    add(f, "abc", 3);
    assert_int_equal(send(f), -EINVAL);
    /* WRITE whose size field disagrees with the data */
    uint64_t fh;
    uint64_t node = create(f, FUSE_ROOT_ID, "w", 0644, &fh);
    struct fuse_write_in wi = {.fh = fh, .size = 100};
    req(f, FUSE_WRITE, node);
    add(f, &wi, sizeof(wi));
    add(f, "short", 5);
    assert_int_equal(send(f), -EINVAL);
    /* FORGET of a bogus id and a truncated BATCH_FORGET: no reply, nothing breaks */
    forget(f, 0xabcdef, 1);
    forget(f, FUSE_ROOT_ID, 1000); /* the root is never forgotten */
    struct fuse_batch_forget_in bf = {.count = 1000};
    req(f, FUSE_BATCH_FORGET, 0);
    add(f, &bf, sizeof(bf));
    assert_int_equal(send(f), 1);
    assert_int_equal(getattr(f, FUSE_ROOT_ID, &a), 0);
    assert_true(S_ISDIR(a.mode));
    assert_int_equal(release(f, node, fh, false), 0);
}

static void test_batch_forget_frees_nodes(void **state)
{
    struct fx *f = *state;
    do_init(f);
    host_write(hpath(f, "p"), "");
    host_write(hpath(f, "q"), "");
    uint64_t p = lookup(f, FUSE_ROOT_ID, "p");
    uint64_t q = lookup(f, FUSE_ROOT_ID, "q");
    unsigned ni, nh;
    vmm_fuse_counts(f->s, &ni, &nh);
    assert_int_equal(ni, 3);
    struct fuse_batch_forget_in bf = {.count = 2};
    struct fuse_forget_one one[2] = {{.nodeid = p, .nlookup = 1}, {.nodeid = q, .nlookup = 1}};
    req(f, FUSE_BATCH_FORGET, 0);
    add(f, &bf, sizeof(bf));
    add(f, one, sizeof(one));
    assert_int_equal(send(f), 1);
    vmm_fuse_counts(f->s, &ni, &nh);
    assert_int_equal(ni, 1);
    struct fuse_attr a;
    assert_int_equal(getattr(f, p, &a), -ESTALE);
    /* the slot comes back under a new id */
    uint64_t p2 = lookup(f, FUSE_ROOT_ID, "p");
    assert_int_not_equal(p2, 0);
    assert_int_not_equal(p2, p);
}

static void test_misc_statfs_fallocate_lseek_access_destroy(void **state)
{
    struct fx *f = *state;
    do_init(f);
    req(f, FUSE_STATFS, FUSE_ROOT_ID);
    assert_int_equal(send(f), 0);
    struct fuse_statfs_out so;
    memcpy(&so, f->payload, sizeof(so));
    assert_true(so.st.bsize > 0);
    assert_int_equal(so.st.namelen, 255);
    uint64_t fh;
    uint64_t n = create(f, FUSE_ROOT_ID, "sparse", 0644, &fh);
    struct fuse_fallocate_in fa = {.fh = fh, .offset = 0, .length = 65536};
    req(f, FUSE_FALLOCATE, n);
    add(f, &fa, sizeof(fa));
    int32_t e = send(f);
    assert_true(e == 0 || e == -EOPNOTSUPP);
    if (e == 0) {
        struct stat st;
        assert_int_equal(stat(hpath(f, "sparse"), &st), 0);
        assert_int_equal(st.st_size, 65536);
    }
    fa.mode = 0x40; /* an unsupported mode bit */
    req(f, FUSE_FALLOCATE, n);
    add(f, &fa, sizeof(fa));
    assert_int_equal(send(f), -EOPNOTSUPP);
    assert_int_equal(write_fh(f, n, fh, 100000, "z", 1), 0);
    struct fuse_lseek_in li = {.fh = fh, .offset = 0, .whence = SEEK_END};
    req(f, FUSE_LSEEK, n);
    add(f, &li, sizeof(li));
    assert_int_equal(send(f), 0);
    struct fuse_lseek_out lo;
    memcpy(&lo, f->payload, sizeof(lo));
    assert_int_equal(lo.offset, 100001);
    li.whence = 77;
    req(f, FUSE_LSEEK, n);
    add(f, &li, sizeof(li));
    assert_int_equal(send(f), -EINVAL);
    struct fuse_access_in ai = {.mask = X_OK};
    req(f, FUSE_ACCESS, n);
    add(f, &ai, sizeof(ai));
    assert_int_equal(send(f), -EACCES); /* 0644: no execute bit */
    ai.mask = R_OK | W_OK;
    req(f, FUSE_ACCESS, n);
    add(f, &ai, sizeof(ai));
    assert_int_equal(send(f), 0);
    /* DESTROY drops every handle and node but the root; INIT is needed again */
    req(f, FUSE_DESTROY, FUSE_ROOT_ID);
    assert_int_equal(send(f), 0);
    unsigned ni, nh;
    vmm_fuse_counts(f->s, &ni, &nh);
    assert_int_equal(ni, 1);
    assert_int_equal(nh, 0);
    struct fuse_attr a;
    assert_int_equal(getattr(f, FUSE_ROOT_ID, &a), -EIO);
    do_init(f);
    assert_int_equal(getattr(f, FUSE_ROOT_ID, &a), 0);
    assert_int_equal(getattr(f, n, &a), -ESTALE);
}

static void test_handle_table_bounded(void **state)
{
    struct fx *f = *state;
    do_init(f);
    host_write(hpath(f, "many"), "m");
    uint64_t n = lookup(f, FUSE_ROOT_ID, "many");
    unsigned opened = 0;
    int32_t last = 0;
    for (unsigned i = 0; i < VMM_FUSE_MAX_HANDLES + 2; i++) {
        if (open_node(f, n, O_RDONLY) == 0) {
            last = f->error;
            break;
        }
        opened++;
    }
    /* the table (or the fd limit) stops us with an error, not a crash */
    assert_true(opened <= VMM_FUSE_MAX_HANDLES);
    assert_true(last == -ENFILE || last == -EMFILE);
    assert_int_equal(getattr(f, n, &(struct fuse_attr){0}), 0);
}

/*
 * Every operation again, in a child under capsem-vmm's real seccomp filter
 * (installed after the server was created, as the VMM does): a call the
 * allowlist forgot shows up as EPERM here.
 */
static void test_handle_under_seccomp(void **state)
{
    struct fx *f = *state;
    host_write(hpath(f, "host"), "abc");
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int bad = 0;
        /* The VMM's order: create the server in this process, then seccomp. */
        vmm_fuse_destroy(f->s);
        int root = open(f->root, O_RDONLY | O_DIRECTORY);
        if (root < 0 || vmm_fuse_create(&f->s, root, sink, f) != 0)
            _exit(101);
        do_init(f);
        if (vmm_isolate_seccomp() != 0)
            _exit(100);
#define CHECK(expr)                                                                                \
    do {                                                                                           \
        if (!(expr)) {                                                                             \
            fprintf(stderr, "under seccomp: %s failed (error %d)\n", #expr, f->error);             \
            bad++;                                                                                 \
        }                                                                                          \
    } while (0)
        uint64_t fh = 0;
        uint64_t n = create(f, FUSE_ROOT_ID, "file", 0644, &fh);
        CHECK(n != 0);
        CHECK(write_fh(f, n, fh, 0, "hello", 5) == 0);
        CHECK(read_fh(f, n, fh, 0, 5) == 0 && f->payload_len == 5);
        struct fuse_fsync_in fs = {.fh = fh};
        req(f, FUSE_FSYNC, n);
        add(f, &fs, sizeof(fs));
        CHECK(send(f) == 0);
        struct fuse_fallocate_in fa = {.fh = fh, .length = 4096};
        req(f, FUSE_FALLOCATE, n);
        add(f, &fa, sizeof(fa));
        CHECK(send(f) == 0);
        struct fuse_lseek_in li = {.fh = fh, .whence = SEEK_END};
        req(f, FUSE_LSEEK, n);
        add(f, &li, sizeof(li));
        CHECK(send(f) == 0);
        CHECK(release(f, n, fh, false) == 0);
        uint64_t h = lookup(f, FUSE_ROOT_ID, "host");
        CHECK(h != 0);
        uint64_t rfh = open_node(f, h, O_RDONLY);
        CHECK(rfh != 0);
        CHECK(release(f, h, rfh, false) == 0);
        struct fuse_setattr_in sa = {.valid = FATTR_MODE | FATTR_SIZE | FATTR_MTIME,
                                     .mode = 0600,
                                     .size = 1,
                                     .mtime = 12345};
        CHECK(setattr(f, h, &sa) == 0);
        uint64_t d = mkdir_node(f, FUSE_ROOT_ID, "dir", 0755);
        CHECK(d != 0);
        CHECK(rename_node(f, FUSE_ROOT_ID, "file", d, "moved", 0) == 0);
        CHECK(rename_node(f, d, "moved", FUSE_ROOT_ID, "file", RENAME_NOREPLACE) == 0);
        struct fuse_rename_in ri = {.newdir = FUSE_ROOT_ID};
        req(f, FUSE_RENAME, FUSE_ROOT_ID);
        add(f, &ri, sizeof(ri));
        add_str(f, "file");
        add_str(f, "file2");
        CHECK(send(f) == 0);
        CHECK(symlink_node(f, FUSE_ROOT_ID, "sl", "/etc") == 0);
        uint64_t sl = lookup(f, FUSE_ROOT_ID, "sl");
        req(f, FUSE_READLINK, sl);
        CHECK(send(f) == 0 && f->payload_len == 4);
        CHECK(link_node(f, h, FUSE_ROOT_ID, "hl") == 0);
        struct fuse_open_in oi = {0};
        req(f, FUSE_OPENDIR, FUSE_ROOT_ID);
        add(f, &oi, sizeof(oi));
        CHECK(send(f) == 0);
        struct fuse_open_out oo = {0};
        memcpy(&oo, f->payload, sizeof(oo));
        struct fuse_read_in rd = {.fh = oo.fh, .size = 4096};
        req(f, FUSE_READDIRPLUS, FUSE_ROOT_ID);
        add(f, &rd, sizeof(rd));
        CHECK(send(f) == 0 && f->payload_len > 0);
        req(f, FUSE_FSYNCDIR, FUSE_ROOT_ID);
        struct fuse_fsync_in fsd = {.fh = oo.fh};
        add(f, &fsd, sizeof(fsd));
        CHECK(send(f) == 0);
        CHECK(release(f, FUSE_ROOT_ID, oo.fh, true) == 0);
        req(f, FUSE_STATFS, FUSE_ROOT_ID);
        CHECK(send(f) == 0);
        struct fuse_access_in ai = {.mask = R_OK};
        req(f, FUSE_ACCESS, h);
        add(f, &ai, sizeof(ai));
        CHECK(send(f) == 0);
        req(f, FUSE_UNLINK, FUSE_ROOT_ID);
        add_str(f, "file2");
        CHECK(send(f) == 0);
        req(f, FUSE_RMDIR, FUSE_ROOT_ID);
        add_str(f, "dir");
        CHECK(send(f) == 0);
#undef CHECK
        _exit(bad);
    }
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    assert_false(host_exists(hpath(f, "dir")));
    assert_true(host_exists(hpath(f, "hl")));
}

static void test_fs_event_json_lines(void **state)
{
    (void)state;
    struct vmm_fs_event ev = {.kind = VMM_FS_EVENT_RENAME,
                              .path = "a/\"q\"\n",
                              .to = "b",
                              .size = 42,
                              .time = {.tv_sec = 1700000000, .tv_nsec = 5}};
    char *line = vmm_fs_event_json(&ev);
    assert_non_null(line);
    assert_string_equal(line, "{\"event\":\"rename\",\"path\":\"a/\\\"q\\\"\\n\",\"size\":42,"
                              "\"time_s\":1700000000,\"time_ns\":5,\"to\":\"b\"}\n");
    free(line);
    /* a name that is not UTF-8 is still reported, marked lossy */
    ev = (struct vmm_fs_event){.kind = VMM_FS_EVENT_CREATE, .path = "bad\xff\xfe"};
    line = vmm_fs_event_json(&ev);
    assert_non_null(line);
    assert_non_null(strstr(line, "\"path\":\"bad??\""));
    assert_non_null(strstr(line, "\"lossy\":true"));
    free(line);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_handle_before_init_eio, setup, teardown),
        cmocka_unit_test_setup_teardown(test_init_negotiates_bounds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_create_write_read_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_handle_fh_reuse_ebadf, setup, teardown),
        cmocka_unit_test_setup_teardown(test_setattr_mode_size_times_owner, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dirs_mkdir_readdir_rmdir, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rename_flags, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rename_out_of_root_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_symlink_escape_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lookup_bad_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_link_inside_and_crafted_nodeid, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mknod_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_handle_malformed_requests, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batch_forget_frees_nodes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_misc_statfs_fallocate_lseek_access_destroy, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_handle_table_bounded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_handle_under_seccomp, setup, teardown),
        cmocka_unit_test(test_fs_event_json_lines),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
