/*
 * FUSE passthrough server (see fuse_server.h for the confinement rules).
 * Node ids and file handles are (generation << 32 | slot + 1): a forgotten
 * node id or a released handle never names a later object, and anything not
 * in the tables is an error reply. Regular files are reopened from their
 * O_PATH fd through /proc/self/fd (the magic link names exactly that inode,
 * which is already inside the root); directories through openat(fd, ".").
 *
 * Ownership: files belong to the VMM's user. SETATTR refuses uid/gid changes
 * (EPERM) unless they name the current owner. Set-user-ID and set-group-ID
 * bits are stripped from every mode the guest sets, so the guest cannot leave
 * a setuid program in a directory a host user may run things from.
 */
#include "fuse_server.h"

#include "log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <linux/fuse.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/types.h>
#include <unistd.h>

#define HASH_BUCKETS 16384u
#define ATTR_VALID_SEC 1u
#define NAME_MAX_LEN 255u
#define MODE_STRIP (S_ISUID | S_ISGID)

struct fnode {
    int fd; /* O_PATH | O_NOFOLLOW */
    uint32_t gen;
    bool used;
    uint64_t nlookup;
    dev_t dev;
    ino_t ino;
    int32_t hnext; /* next slot in the hash chain, -1 ends */
};

struct fhandle {
    bool used;
    bool written;
    uint32_t gen;
    int fd;
    DIR *dir;
    uint64_t nodeid;
    uint64_t dir_pos; /* READDIR offset the DIR stream is at */
};

struct vmm_fuse {
    struct fnode *nodes;
    int32_t *free_nodes;
    unsigned nfree_nodes;
    int32_t buckets[HASH_BUCKETS];
    struct fhandle *handles;
    unsigned nhandles;
    int proc_fd;
    char root_path[PATH_MAX];
    size_t root_path_len;
    bool inited;
    uint32_t max_readahead;
    vmm_fs_event_fn sink;
    void *opaque;
};

/* One request being handled. */
struct req {
    struct vmm_fuse *s;
    const struct fuse_in_header *hdr;
    const uint8_t *body;
    size_t body_len;
    uint8_t *out; /* reply payload (after the out header) */
    size_t out_cap;
    size_t out_len;
    bool no_reply;
};

const char *vmm_fs_event_kind_str(enum vmm_fs_event_kind k)
{
    switch (k) {
    case VMM_FS_EVENT_CREATE:
        return "create";
    case VMM_FS_EVENT_WRITE:
        return "write";
    case VMM_FS_EVENT_DELETE:
        return "delete";
    case VMM_FS_EVENT_RENAME:
        return "rename";
    }
    return "unknown";
}

/*
 * A JSON string for a guest path. Names need not be UTF-8; those are written
 * with every byte above 0x7f as '?' (and "lossy": true) rather than dropped,
 * so no event can be hidden behind an odd name.
 */
static json_t *path_string(const char *path, bool *lossy)
{
    json_t *s = json_string(path);
    if (s)
        return s;
    char *copy = strdup(path);
    if (!copy)
        return NULL;
    for (char *p = copy; *p; p++)
        if ((unsigned char)*p > 0x7f)
            *p = '?';
    s = json_string(copy);
    free(copy);
    *lossy = true;
    return s;
}

char *vmm_fs_event_json(const struct vmm_fs_event *ev)
{
    bool lossy = false;
    json_t *o = json_pack("{s:s, s:o, s:I, s:I, s:i}", "event", vmm_fs_event_kind_str(ev->kind),
                          "path", path_string(ev->path, &lossy), "size", (json_int_t)ev->size,
                          "time_s", (json_int_t)ev->time.tv_sec, "time_ns", (int)ev->time.tv_nsec);
    if (!o)
        return NULL;
    if (ev->to && json_object_set_new(o, "to", path_string(ev->to, &lossy)) < 0) {
        json_decref(o);
        return NULL;
    }
    if (lossy)
        json_object_set_new(o, "lossy", json_true());
    char *text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    if (!text)
        return NULL;
    size_t len = strlen(text);
    char *line = realloc(text, len + 2);
    if (!line) {
        free(text);
        return NULL;
    }
    line[len] = '\n';
    line[len + 1] = '\0';
    return line;
}

/* ---- inode table ---- */

static unsigned hash_ino(dev_t dev, ino_t ino)
{
    uint64_t h = (uint64_t)ino * 0x9e3779b97f4a7c15ull ^ (uint64_t)dev;
    return (unsigned)(h >> 40) % HASH_BUCKETS;
}

static uint64_t node_id(const struct vmm_fuse *s, const struct fnode *n)
{
    uint64_t slot = (uint64_t)(n - s->nodes);
    return ((uint64_t)n->gen << 32) | (slot + 1);
}

static struct fnode *node_get(struct vmm_fuse *s, uint64_t id)
{
    uint64_t slot = (id & 0xffffffffu);
    if (slot == 0 || slot > VMM_FUSE_MAX_INODES)
        return NULL;
    struct fnode *n = &s->nodes[slot - 1];
    if (!n->used || n->gen != (uint32_t)(id >> 32))
        return NULL;
    return n;
}

static void hash_remove(struct vmm_fuse *s, struct fnode *n)
{
    int32_t slot = (int32_t)(n - s->nodes);
    int32_t *pp = &s->buckets[hash_ino(n->dev, n->ino)];
    while (*pp >= 0) {
        if (*pp == slot) {
            *pp = n->hnext;
            return;
        }
        pp = &s->nodes[*pp].hnext;
    }
}

static void node_free(struct vmm_fuse *s, struct fnode *n)
{
    if (n == &s->nodes[0])
        return; /* the root stays */
    hash_remove(s, n);
    close(n->fd);
    n->fd = -1;
    n->used = false;
    n->nlookup = 0;
    n->gen++;
    if (n->gen == 0)
        n->gen = 1;
    s->free_nodes[s->nfree_nodes++] = (int32_t)(n - s->nodes);
}

static void node_forget(struct vmm_fuse *s, struct fnode *n, uint64_t count)
{
    if (n == &s->nodes[0])
        return;
    n->nlookup = count >= n->nlookup ? 0 : n->nlookup - count;
    if (n->nlookup == 0)
        node_free(s, n);
}

/*
 * Find or add the inode of `fd` (owned: kept or closed) with stat `st`.
 * Adds one lookup reference. 0 or -ENFILE when the table is full.
 */
static int node_add(struct vmm_fuse *s, int fd, const struct stat *st, struct fnode **out)
{
    unsigned b = hash_ino(st->st_dev, st->st_ino);
    for (int32_t i = s->buckets[b]; i >= 0; i = s->nodes[i].hnext) {
        struct fnode *n = &s->nodes[i];
        if (n->dev == st->st_dev && n->ino == st->st_ino) {
            close(fd);
            if (n != &s->nodes[0])
                n->nlookup++;
            *out = n;
            return 0;
        }
    }
    if (s->nfree_nodes == 0) {
        close(fd);
        return -ENFILE;
    }
    struct fnode *n = &s->nodes[s->free_nodes[--s->nfree_nodes]];
    n->fd = fd;
    n->used = true;
    n->nlookup = 1;
    n->dev = st->st_dev;
    n->ino = st->st_ino;
    n->hnext = s->buckets[b];
    s->buckets[b] = (int32_t)(n - s->nodes);
    *out = n;
    return 0;
}

/* ---- handles ---- */

static int handle_new(struct vmm_fuse *s, int fd, DIR *dir, uint64_t nodeid, uint64_t *fh)
{
    for (unsigned i = 0; i < VMM_FUSE_MAX_HANDLES; i++) {
        struct fhandle *h = &s->handles[i];
        if (h->used)
            continue;
        h->used = true;
        h->written = false;
        h->fd = fd;
        h->dir = dir;
        h->nodeid = nodeid;
        h->dir_pos = 0;
        s->nhandles++;
        *fh = ((uint64_t)h->gen << 32) | (i + 1);
        return 0;
    }
    return -ENFILE;
}

static struct fhandle *handle_get(struct vmm_fuse *s, uint64_t fh, bool dir)
{
    uint64_t slot = fh & 0xffffffffu;
    if (slot == 0 || slot > VMM_FUSE_MAX_HANDLES)
        return NULL;
    struct fhandle *h = &s->handles[slot - 1];
    if (!h->used || h->gen != (uint32_t)(fh >> 32) || (h->dir != NULL) != dir)
        return NULL;
    return h;
}

static void handle_close(struct vmm_fuse *s, struct fhandle *h)
{
    if (h->dir)
        closedir(h->dir);
    else if (h->fd >= 0)
        close(h->fd);
    h->dir = NULL;
    h->fd = -1;
    h->used = false;
    h->gen++;
    s->nhandles--;
}

/* ---- helpers ---- */

static int fd_stat(int fd, struct stat *st)
{
    return fstatat(fd, "", st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0 ? -errno : 0;
}

static void proc_name(int fd, char buf[16])
{
    snprintf(buf, 16, "%d", fd);
}

/* Path of inode `fd` relative to the root (empty for the root). */
static void rel_path(struct vmm_fuse *s, int fd, const char *name, char *buf, size_t size)
{
    char p[16];
    char link[PATH_MAX];
    proc_name(fd, p);
    ssize_t n = readlinkat(s->proc_fd, p, link, sizeof(link) - 1);
    const char *rel = "";
    if (n > 0) {
        link[n] = '\0';
        if ((size_t)n >= s->root_path_len && memcmp(link, s->root_path, s->root_path_len) == 0 &&
            (link[s->root_path_len] == '/' || link[s->root_path_len] == '\0')) {
            rel = link + s->root_path_len;
            if (*rel == '/')
                rel++;
        }
    }
    if (name)
        snprintf(buf, size, "%s%s%s", rel, *rel ? "/" : "", name);
    else
        snprintf(buf, size, "%s", rel);
}

static void emit(struct vmm_fuse *s, enum vmm_fs_event_kind kind, const char *path, const char *to,
                 uint64_t size)
{
    if (!s->sink)
        return;
    struct vmm_fs_event ev = {.kind = kind, .path = path, .to = to, .size = size};
    clock_gettime(CLOCK_REALTIME, &ev.time);
    s->sink(s->opaque, &ev);
}

static void emit_at(struct vmm_fuse *s, enum vmm_fs_event_kind kind, int dirfd, const char *name,
                    uint64_t size)
{
    if (!s->sink)
        return;
    char path[PATH_MAX];
    rel_path(s, dirfd, name, path, sizeof(path));
    emit(s, kind, path, NULL, size);
}

/* A guest name: 1..255 bytes, no '/', not "." or "..". */
static int check_name(const char *name, size_t len)
{
    if (len == 0)
        return -EINVAL;
    if (len > NAME_MAX_LEN)
        return -ENAMETOOLONG;
    if (memchr(name, '/', len))
        return -EINVAL;
    if ((len == 1 && name[0] == '.') || (len == 2 && name[0] == '.' && name[1] == '.'))
        return -EINVAL;
    return 0;
}

/* Take a NUL-terminated string at *off of the body; advances *off. */
static int take_str(struct req *r, size_t *off, const char **out, size_t *len_out)
{
    if (*off >= r->body_len)
        return -EINVAL;
    const char *p = (const char *)r->body + *off;
    const char *nul = memchr(p, '\0', r->body_len - *off);
    if (!nul)
        return -EINVAL;
    *out = p;
    *len_out = (size_t)(nul - p);
    *off += *len_out + 1;
    return 0;
}

static int take_name(struct req *r, size_t *off, const char **out)
{
    size_t len;
    int ret = take_str(r, off, out, &len);
    return ret ? ret : check_name(*out, len);
}

static void *reply_room(struct req *r, size_t len)
{
    if (r->out_cap - r->out_len < len)
        return NULL;
    void *p = r->out + r->out_len;
    r->out_len += len;
    return p;
}

static int reply_put(struct req *r, const void *data, size_t len)
{
    void *p = reply_room(r, len);
    if (!p)
        return -ERANGE;
    memcpy(p, data, len);
    return 0;
}

static void fill_attr(struct fuse_attr *a, const struct stat *st)
{
    memset(a, 0, sizeof(*a));
    a->ino = st->st_ino;
    a->size = (uint64_t)st->st_size;
    a->blocks = (uint64_t)st->st_blocks;
    a->atime = (uint64_t)st->st_atim.tv_sec;
    a->mtime = (uint64_t)st->st_mtim.tv_sec;
    a->ctime = (uint64_t)st->st_ctim.tv_sec;
    a->atimensec = (uint32_t)st->st_atim.tv_nsec;
    a->mtimensec = (uint32_t)st->st_mtim.tv_nsec;
    a->ctimensec = (uint32_t)st->st_ctim.tv_nsec;
    a->mode = st->st_mode;
    a->nlink = (uint32_t)st->st_nlink;
    a->uid = st->st_uid;
    a->gid = st->st_gid;
    a->rdev = (uint32_t)st->st_rdev;
    a->blksize = (uint32_t)st->st_blksize;
}

static void fill_entry(struct vmm_fuse *s, struct fuse_entry_out *e, const struct fnode *n,
                       const struct stat *st)
{
    memset(e, 0, sizeof(*e));
    e->nodeid = node_id(s, n);
    e->entry_valid = ATTR_VALID_SEC;
    e->attr_valid = ATTR_VALID_SEC;
    fill_attr(&e->attr, st);
}

/* Look `name` up under `dir`: an entry (one more lookup reference) or -errno. */
static int do_lookup(struct vmm_fuse *s, struct fnode *dir, const char *name,
                     struct fuse_entry_out *e)
{
    struct stat st;
    int fd = openat(dir->fd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int ret = fd_stat(fd, &st);
    if (ret) {
        close(fd);
        return ret;
    }
    struct fnode *n;
    ret = node_add(s, fd, &st, &n);
    if (ret)
        return ret;
    fill_entry(s, e, n, &st);
    return 0;
}

/* Open inode `n` for I/O with `flags` (no O_CREAT). Returns an fd or -errno. */
static int reopen(struct vmm_fuse *s, struct fnode *n, int flags)
{
    struct stat st;
    int ret = fd_stat(n->fd, &st);
    if (ret)
        return ret;
    flags &= ~(O_CREAT | O_EXCL | O_NOFOLLOW | O_NOCTTY | O_DIRECT);
    flags |= O_CLOEXEC;
    int fd;
    if (S_ISDIR(st.st_mode)) {
        fd = openat(n->fd, ".", flags | O_DIRECTORY);
    } else if (S_ISREG(st.st_mode)) {
        char p[16];
        proc_name(n->fd, p);
        fd = openat(s->proc_fd, p, flags);
    } else if (S_ISLNK(st.st_mode)) {
        return -ELOOP;
    } else {
        return -EACCES; /* devices, fifos, sockets are never opened on the host */
    }
    return fd < 0 ? -errno : fd;
}

#define NEED(r, type)                                                                              \
    do {                                                                                           \
        if ((r)->body_len < sizeof(type))                                                          \
            return -EINVAL;                                                                        \
    } while (0)

#define NODE_OR_STALE(r, var)                                                                      \
    struct fnode *var = node_get((r)->s, (r)->hdr->nodeid);                                        \
    if (!var)                                                                                      \
    return -ESTALE

/* ---- operations ---- */

static int op_init(struct req *r)
{
    struct fuse_init_in in = {0};
    if (r->body_len < 16)
        return -EINVAL;
    memcpy(&in, r->body, r->body_len < sizeof(in) ? r->body_len : sizeof(in));
    struct fuse_init_out o = {0};
    o.major = FUSE_KERNEL_VERSION;
    o.minor = FUSE_KERNEL_MINOR_VERSION;
    if (in.major < 7) {
        LOG_WARN("msg=\"virtio-fs: guest FUSE too old\" major=%u", in.major);
        return -EPROTO;
    }
    if (in.major > 7) {
        /* Tell the guest our major; it retries with ours. */
        return reply_put(r, &o, sizeof(o));
    }
    if (in.minor < o.minor)
        o.minor = in.minor;
    uint32_t want = FUSE_ASYNC_READ | FUSE_BIG_WRITES | FUSE_ATOMIC_O_TRUNC | FUSE_DO_READDIRPLUS |
                    FUSE_READDIRPLUS_AUTO | FUSE_PARALLEL_DIROPS | FUSE_MAX_PAGES |
                    FUSE_AUTO_INVAL_DATA;
    o.flags = in.flags & want;
    r->s->max_readahead =
        in.max_readahead < VMM_FUSE_MAX_WRITE ? in.max_readahead : VMM_FUSE_MAX_WRITE;
    o.max_readahead = r->s->max_readahead;
    o.max_write = VMM_FUSE_MAX_WRITE;
    o.max_background = 64;
    o.congestion_threshold = 48;
    o.time_gran = 1;
    o.max_pages = (uint16_t)(VMM_FUSE_MAX_WRITE / 4096u);
    r->s->inited = true;
    return reply_put(r, &o, sizeof(o));
}

static int op_lookup(struct req *r)
{
    NODE_OR_STALE(r, dir);
    size_t off = 0;
    const char *name;
    int ret = take_name(r, &off, &name);
    if (ret)
        return ret;
    struct fuse_entry_out *e = reply_room(r, sizeof(*e));
    if (!e)
        return -ERANGE;
    return do_lookup(r->s, dir, name, e);
}

static int op_forget(struct req *r)
{
    r->no_reply = true;
    if (r->body_len < sizeof(struct fuse_forget_in))
        return 0;
    struct fuse_forget_in in;
    memcpy(&in, r->body, sizeof(in));
    struct fnode *n = node_get(r->s, r->hdr->nodeid);
    if (n)
        node_forget(r->s, n, in.nlookup);
    return 0;
}

static int op_batch_forget(struct req *r)
{
    r->no_reply = true;
    struct fuse_batch_forget_in in;
    if (r->body_len < sizeof(in))
        return 0;
    memcpy(&in, r->body, sizeof(in));
    size_t room = (r->body_len - sizeof(in)) / sizeof(struct fuse_forget_one);
    size_t count = in.count < room ? in.count : room;
    for (size_t i = 0; i < count; i++) {
        struct fuse_forget_one one;
        memcpy(&one, r->body + sizeof(in) + i * sizeof(one), sizeof(one));
        struct fnode *n = node_get(r->s, one.nodeid);
        if (n)
            node_forget(r->s, n, one.nlookup);
    }
    return 0;
}

static int reply_attr(struct req *r, const struct stat *st)
{
    struct fuse_attr_out *a = reply_room(r, sizeof(*a));
    if (!a)
        return -ERANGE;
    memset(a, 0, sizeof(*a));
    a->attr_valid = ATTR_VALID_SEC;
    fill_attr(&a->attr, st);
    return 0;
}

static int op_getattr(struct req *r)
{
    NODE_OR_STALE(r, n);
    struct stat st;
    int ret = fd_stat(n->fd, &st);
    return ret ? ret : reply_attr(r, &st);
}

static int op_setattr(struct req *r)
{
    NODE_OR_STALE(r, n);
    NEED(r, struct fuse_setattr_in);
    struct fuse_setattr_in in;
    memcpy(&in, r->body, sizeof(in));
    struct vmm_fuse *s = r->s;
    struct stat st;
    int ret = fd_stat(n->fd, &st);
    int own_fd = -1;
    char p[16];
    proc_name(n->fd, p);
    if (ret)
        return ret;
    if (((in.valid & FATTR_UID) && in.uid != st.st_uid) ||
        ((in.valid & FATTR_GID) && in.gid != st.st_gid))
        return -EPERM;
    if (in.valid & FATTR_MODE) {
        if (S_ISLNK(st.st_mode))
            return -EOPNOTSUPP;
        mode_t mode = in.mode & 07777 & ~(mode_t)MODE_STRIP;
        if (S_ISDIR(st.st_mode))
            mode |= st.st_mode & S_ISGID; /* keep an existing group-inherit bit on dirs */
        if (fchmodat(s->proc_fd, p, mode, 0) < 0)
            return -errno;
    }
    if (in.valid & FATTR_SIZE) {
        int fd = -1;
        if (in.valid & FATTR_FH) {
            struct fhandle *h = handle_get(s, in.fh, false);
            if (!h)
                return -EBADF;
            fd = h->fd;
            h->written = true;
        } else {
            if (!S_ISREG(st.st_mode))
                return S_ISDIR(st.st_mode) ? -EISDIR : -EINVAL;
            own_fd = reopen(s, n, O_WRONLY);
            if (own_fd < 0)
                return own_fd;
            fd = own_fd;
        }
        if (in.size > (uint64_t)INT64_MAX)
            ret = -EFBIG;
        else if (ftruncate(fd, (off_t)in.size) < 0)
            ret = -errno;
        if (own_fd >= 0)
            close(own_fd);
        if (ret)
            return ret;
        if (!(in.valid & FATTR_FH)) {
            char path[PATH_MAX];
            rel_path(s, n->fd, NULL, path, sizeof(path));
            emit(s, VMM_FS_EVENT_WRITE, path, NULL, in.size);
        }
    }
    if (in.valid & (FATTR_ATIME | FATTR_MTIME)) {
        struct timespec ts[2] = {{.tv_nsec = UTIME_OMIT}, {.tv_nsec = UTIME_OMIT}};
        if (in.valid & FATTR_ATIME) {
            ts[0].tv_sec = (time_t)in.atime;
            ts[0].tv_nsec = in.valid & FATTR_ATIME_NOW ? UTIME_NOW : (long)in.atimensec;
        }
        if (in.valid & FATTR_MTIME) {
            ts[1].tv_sec = (time_t)in.mtime;
            ts[1].tv_nsec = in.valid & FATTR_MTIME_NOW ? UTIME_NOW : (long)in.mtimensec;
        }
        if (utimensat(n->fd, "", ts, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0)
            return -errno;
    }
    ret = fd_stat(n->fd, &st);
    return ret ? ret : reply_attr(r, &st);
}

static int reply_open(struct req *r, uint64_t fh)
{
    struct fuse_open_out *o = reply_room(r, sizeof(*o));
    if (!o)
        return -ERANGE;
    memset(o, 0, sizeof(*o));
    o->fh = fh;
    return 0;
}

static int op_open(struct req *r)
{
    NODE_OR_STALE(r, n);
    NEED(r, struct fuse_open_in);
    struct fuse_open_in in;
    memcpy(&in, r->body, sizeof(in));
    int flags = (int)in.flags;
    struct stat st;
    int ret = fd_stat(n->fd, &st);
    if (ret)
        return ret;
    if (S_ISDIR(st.st_mode))
        return -EISDIR;
    int fd = reopen(r->s, n, flags);
    if (fd < 0)
        return fd;
    uint64_t fh;
    ret = handle_new(r->s, fd, NULL, r->hdr->nodeid, &fh);
    if (ret) {
        close(fd);
        return ret;
    }
    if (flags & O_TRUNC)
        r->s->handles[(fh & 0xffffffffu) - 1].written = true;
    return reply_open(r, fh);
}

static int op_create(struct req *r)
{
    NODE_OR_STALE(r, dir);
    NEED(r, struct fuse_create_in);
    struct fuse_create_in in;
    memcpy(&in, r->body, sizeof(in));
    size_t off = sizeof(in);
    const char *name;
    int ret = take_name(r, &off, &name);
    if (ret)
        return ret;
    struct fuse_entry_out *e = reply_room(r, sizeof(*e));
    struct fuse_open_out *o = reply_room(r, sizeof(*o));
    if (!e || !o)
        return -ERANGE;
    int flags = ((int)in.flags & ~(O_NOCTTY | O_DIRECT)) | O_CREAT | O_NOFOLLOW | O_CLOEXEC;
    mode_t mode = (in.mode & 07777) & ~(mode_t)MODE_STRIP;
    /*
     * O_NONBLOCK: an existing fifo the host left there must not block the
     * loop; anything but a regular file is then refused like in OPEN.
     */
    int fd = openat(dir->fd, name, flags | O_NONBLOCK, mode);
    if (fd < 0)
        return -errno;
    struct stat st;
    ret = fstat(fd, &st) < 0 ? -errno : S_ISREG(st.st_mode) ? 0 : -EACCES;
    if (!ret && !(flags & O_NONBLOCK) && fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) < 0)
        ret = -errno;
    if (ret) {
        close(fd);
        return ret;
    }
    ret = do_lookup(r->s, dir, name, e);
    if (ret) {
        close(fd);
        return ret;
    }
    uint64_t fh;
    ret = handle_new(r->s, fd, NULL, e->nodeid, &fh);
    if (ret) {
        close(fd);
        struct fnode *n = node_get(r->s, e->nodeid);
        if (n)
            node_forget(r->s, n, 1);
        return ret;
    }
    r->s->handles[(fh & 0xffffffffu) - 1].written = true;
    memset(o, 0, sizeof(*o));
    o->fh = fh;
    emit_at(r->s, VMM_FS_EVENT_CREATE, dir->fd, name, e->attr.size);
    return 0;
}

static int op_read(struct req *r)
{
    NEED(r, struct fuse_read_in);
    struct fuse_read_in in;
    memcpy(&in, r->body, sizeof(in));
    struct fhandle *h = handle_get(r->s, in.fh, false);
    if (!h)
        return -EBADF;
    size_t want = in.size;
    if (want > r->out_cap)
        want = r->out_cap;
    if (in.offset > (uint64_t)INT64_MAX)
        return -EINVAL;
    ssize_t n = pread(h->fd, r->out, want, (off_t)in.offset);
    if (n < 0)
        return -errno;
    r->out_len = (size_t)n;
    return 0;
}

static int op_write(struct req *r)
{
    NEED(r, struct fuse_write_in);
    struct fuse_write_in in;
    memcpy(&in, r->body, sizeof(in));
    if (in.size != r->body_len - sizeof(in) || in.size > VMM_FUSE_MAX_WRITE)
        return -EINVAL;
    if (in.offset > (uint64_t)INT64_MAX)
        return -EINVAL;
    struct fhandle *h = handle_get(r->s, in.fh, false);
    if (!h)
        return -EBADF;
    ssize_t n = pwrite(h->fd, r->body + sizeof(in), in.size, (off_t)in.offset);
    if (n < 0)
        return -errno;
    h->written = true;
    struct fuse_write_out *o = reply_room(r, sizeof(*o));
    if (!o)
        return -ERANGE;
    memset(o, 0, sizeof(*o));
    o->size = (uint32_t)n;
    return 0;
}

static int op_flush(struct req *r)
{
    NEED(r, struct fuse_flush_in);
    struct fuse_flush_in in;
    memcpy(&in, r->body, sizeof(in));
    return handle_get(r->s, in.fh, false) ? 0 : -EBADF;
}

static int op_fsync(struct req *r, bool dir)
{
    NEED(r, struct fuse_fsync_in);
    struct fuse_fsync_in in;
    memcpy(&in, r->body, sizeof(in));
    struct fhandle *h = handle_get(r->s, in.fh, dir);
    if (!h)
        return -EBADF;
    int fd = dir ? dirfd(h->dir) : h->fd;
    int ret = (in.fsync_flags & 1) ? fdatasync(fd) : fsync(fd);
    return ret < 0 ? -errno : 0;
}

static int op_release(struct req *r, bool dir)
{
    NEED(r, struct fuse_release_in);
    struct fuse_release_in in;
    memcpy(&in, r->body, sizeof(in));
    struct fhandle *h = handle_get(r->s, in.fh, dir);
    if (!h)
        return -EBADF;
    if (!dir && h->written && r->s->sink) {
        struct stat st;
        char path[PATH_MAX];
        uint64_t size = fd_stat(h->fd, &st) == 0 ? (uint64_t)st.st_size : 0;
        rel_path(r->s, h->fd, NULL, path, sizeof(path));
        emit(r->s, VMM_FS_EVENT_WRITE, path, NULL, size);
    }
    handle_close(r->s, h);
    return 0;
}

static int entry_after(struct req *r, struct fnode *dir, const char *name)
{
    struct fuse_entry_out *e = reply_room(r, sizeof(*e));
    if (!e)
        return -ERANGE;
    return do_lookup(r->s, dir, name, e);
}

static int op_mkdir(struct req *r)
{
    NODE_OR_STALE(r, dir);
    NEED(r, struct fuse_mkdir_in);
    struct fuse_mkdir_in in;
    memcpy(&in, r->body, sizeof(in));
    size_t off = sizeof(in);
    const char *name;
    int ret = take_name(r, &off, &name);
    if (ret)
        return ret;
    if (mkdirat(dir->fd, name, in.mode & 01777) < 0)
        return -errno;
    emit_at(r->s, VMM_FS_EVENT_CREATE, dir->fd, name, 0);
    return entry_after(r, dir, name);
}

static int op_mknod(struct req *r)
{
    NODE_OR_STALE(r, dir);
    (void)dir;
    return -EPERM; /* no device nodes, fifos or sockets on the host */
}

static int op_unlink(struct req *r, bool rmdir)
{
    NODE_OR_STALE(r, dir);
    size_t off = 0;
    const char *name;
    int ret = take_name(r, &off, &name);
    if (ret)
        return ret;
    char path[PATH_MAX] = "";
    if (r->s->sink)
        rel_path(r->s, dir->fd, name, path, sizeof(path));
    if (unlinkat(dir->fd, name, rmdir ? AT_REMOVEDIR : 0) < 0)
        return -errno;
    emit(r->s, VMM_FS_EVENT_DELETE, path, NULL, 0);
    return 0;
}

static int do_rename(struct req *r, uint64_t newdir_id, uint32_t flags, size_t off)
{
    NODE_OR_STALE(r, olddir);
    struct fnode *newdir = node_get(r->s, newdir_id);
    if (!newdir)
        return -ESTALE;
    if (flags & ~(uint32_t)(RENAME_NOREPLACE | RENAME_EXCHANGE))
        return -EINVAL; /* RENAME_WHITEOUT would create a device node */
    const char *oldname, *newname;
    int ret = take_name(r, &off, &oldname);
    if (ret)
        return ret;
    ret = take_name(r, &off, &newname);
    if (ret)
        return ret;
    if (renameat2(olddir->fd, oldname, newdir->fd, newname, flags) < 0)
        return -errno;
    if (r->s->sink) {
        char from[PATH_MAX], to[PATH_MAX];
        rel_path(r->s, olddir->fd, oldname, from, sizeof(from));
        rel_path(r->s, newdir->fd, newname, to, sizeof(to));
        emit(r->s, VMM_FS_EVENT_RENAME, from, to, 0);
    }
    return 0;
}

static int op_rename(struct req *r)
{
    NEED(r, struct fuse_rename_in);
    struct fuse_rename_in in;
    memcpy(&in, r->body, sizeof(in));
    return do_rename(r, in.newdir, 0, sizeof(in));
}

static int op_rename2(struct req *r)
{
    NEED(r, struct fuse_rename2_in);
    struct fuse_rename2_in in;
    memcpy(&in, r->body, sizeof(in));
    return do_rename(r, in.newdir, in.flags, sizeof(in));
}

static int op_symlink(struct req *r)
{
    NODE_OR_STALE(r, dir);
    size_t off = 0, tlen;
    const char *name, *target;
    int ret = take_name(r, &off, &name);
    if (ret)
        return ret;
    ret = take_str(r, &off, &target, &tlen);
    if (ret)
        return ret;
    if (tlen == 0)
        return -ENOENT;
    if (tlen >= PATH_MAX)
        return -ENAMETOOLONG;
    if (symlinkat(target, dir->fd, name) < 0)
        return -errno;
    emit_at(r->s, VMM_FS_EVENT_CREATE, dir->fd, name, tlen);
    return entry_after(r, dir, name);
}

static int op_readlink(struct req *r)
{
    NODE_OR_STALE(r, n);
    size_t cap = r->out_cap < PATH_MAX ? r->out_cap : PATH_MAX;
    ssize_t len = readlinkat(n->fd, "", (char *)r->out, cap);
    if (len < 0)
        return errno == ENOENT ? -EINVAL : -errno;
    r->out_len = (size_t)len;
    return 0;
}

static int op_link(struct req *r)
{
    NODE_OR_STALE(r, dir);
    NEED(r, struct fuse_link_in);
    struct fuse_link_in in;
    memcpy(&in, r->body, sizeof(in));
    struct fnode *src = node_get(r->s, in.oldnodeid);
    if (!src)
        return -ESTALE; /* only inodes we looked up under the root can be linked */
    size_t off = sizeof(in);
    const char *name;
    int ret = take_name(r, &off, &name);
    if (ret)
        return ret;
    struct stat st;
    ret = fd_stat(src->fd, &st);
    if (ret)
        return ret;
    if (S_ISDIR(st.st_mode))
        return -EPERM;
    char p[16];
    proc_name(src->fd, p);
    if (linkat(r->s->proc_fd, p, dir->fd, name, AT_SYMLINK_FOLLOW) < 0)
        return -errno;
    emit_at(r->s, VMM_FS_EVENT_CREATE, dir->fd, name, (uint64_t)st.st_size);
    return entry_after(r, dir, name);
}

static int op_opendir(struct req *r)
{
    NODE_OR_STALE(r, n);
    int fd = openat(n->fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    DIR *d = fdopendir(fd);
    if (!d) {
        int e = errno;
        close(fd);
        return -e;
    }
    uint64_t fh;
    int ret = handle_new(r->s, -1, d, r->hdr->nodeid, &fh);
    if (ret) {
        closedir(d);
        return ret;
    }
    return reply_open(r, fh);
}

static size_t dirent_size(size_t namelen, bool plus)
{
    size_t base = plus ? sizeof(struct fuse_direntplus) : sizeof(struct fuse_dirent);
    return (base + namelen + 7) & ~(size_t)7;
}

static int op_readdir(struct req *r, bool plus)
{
    NEED(r, struct fuse_read_in);
    struct fuse_read_in in;
    memcpy(&in, r->body, sizeof(in));
    struct fhandle *h = handle_get(r->s, in.fh, true);
    if (!h)
        return -EBADF;
    struct fnode *dir = node_get(r->s, h->nodeid);
    if (plus && !dir)
        return -ESTALE;
    size_t cap = in.size < r->out_cap ? in.size : r->out_cap;
    if (in.offset != h->dir_pos) {
        if (in.offset == 0)
            rewinddir(h->dir);
        else if (in.offset > (uint64_t)LONG_MAX)
            return -EINVAL;
        else
            seekdir(h->dir, (long)in.offset);
        h->dir_pos = in.offset;
    }
    for (;;) {
        long before = telldir(h->dir);
        errno = 0;
        struct dirent *de = readdir(h->dir);
        if (!de) {
            if (errno)
                return r->out_len ? 0 : -errno;
            break;
        }
        size_t namelen = strlen(de->d_name);
        size_t sz = dirent_size(namelen, plus);
        if (r->out_len + sz > cap) {
            seekdir(h->dir, before);
            break;
        }
        uint8_t *p = r->out + r->out_len;
        memset(p, 0, sz);
        struct fuse_dirent *d = (struct fuse_dirent *)p;
        if (plus) {
            struct fuse_direntplus *dp = (struct fuse_direntplus *)p;
            d = &dp->dirent;
            bool dot = strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0;
            /* nodeid 0 tells the guest not to instantiate the entry */
            if (!dot && do_lookup(r->s, dir, de->d_name, &dp->entry_out) != 0)
                memset(&dp->entry_out, 0, sizeof(dp->entry_out));
        }
        d->ino = de->d_ino;
        d->off = (uint64_t)telldir(h->dir);
        d->namelen = (uint32_t)namelen;
        d->type = de->d_type;
        memcpy(d->name, de->d_name, namelen);
        r->out_len += sz;
        h->dir_pos = d->off;
    }
    return 0;
}

static int op_statfs(struct req *r)
{
    NODE_OR_STALE(r, n);
    struct statfs sf;
    if (fstatfs(n->fd, &sf) < 0)
        return -errno;
    struct fuse_statfs_out *o = reply_room(r, sizeof(*o));
    if (!o)
        return -ERANGE;
    memset(o, 0, sizeof(*o));
    o->st.blocks = sf.f_blocks;
    o->st.bfree = sf.f_bfree;
    o->st.bavail = sf.f_bavail;
    o->st.files = sf.f_files;
    o->st.ffree = sf.f_ffree;
    o->st.bsize = (uint32_t)sf.f_bsize;
    o->st.namelen = NAME_MAX_LEN;
    o->st.frsize = (uint32_t)sf.f_frsize;
    return 0;
}

static int op_fallocate(struct req *r)
{
    NEED(r, struct fuse_fallocate_in);
    struct fuse_fallocate_in in;
    memcpy(&in, r->body, sizeof(in));
    struct fhandle *h = handle_get(r->s, in.fh, false);
    if (!h)
        return -EBADF;
    if (in.mode & ~(uint32_t)(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE))
        return -EOPNOTSUPP;
    if (in.offset > (uint64_t)INT64_MAX || in.length > (uint64_t)INT64_MAX)
        return -EINVAL;
    if (fallocate(h->fd, (int)in.mode, (off_t)in.offset, (off_t)in.length) < 0)
        return -errno;
    h->written = true;
    return 0;
}

static int op_lseek(struct req *r)
{
    NEED(r, struct fuse_lseek_in);
    struct fuse_lseek_in in;
    memcpy(&in, r->body, sizeof(in));
    struct fhandle *h = handle_get(r->s, in.fh, false);
    if (!h)
        return -EBADF;
    if (in.whence != SEEK_SET && in.whence != SEEK_CUR && in.whence != SEEK_END &&
        in.whence != SEEK_DATA && in.whence != SEEK_HOLE)
        return -EINVAL;
    off_t o = lseek(h->fd, (off_t)in.offset, (int)in.whence);
    if (o < 0)
        return -errno;
    struct fuse_lseek_out out = {.offset = (uint64_t)o};
    return reply_put(r, &out, sizeof(out));
}

static int op_access(struct req *r)
{
    NODE_OR_STALE(r, n);
    NEED(r, struct fuse_access_in);
    struct fuse_access_in in;
    memcpy(&in, r->body, sizeof(in));
    struct stat st;
    int ret = fd_stat(n->fd, &st);
    if (ret)
        return ret;
    if (in.mask & ~(uint32_t)(R_OK | W_OK | X_OK))
        return -EINVAL;
    /* The guest is root over its own workspace; only execute needs a bit set. */
    if ((in.mask & X_OK) && !S_ISDIR(st.st_mode) && !(st.st_mode & 0111))
        return -EACCES;
    return 0;
}

static int op_destroy(struct req *r)
{
    vmm_fuse_reset(r->s);
    return 0;
}

static int dispatch(struct req *r)
{
    uint32_t op = r->hdr->opcode;
    if (op == FUSE_INIT)
        return op_init(r);
    if (!r->s->inited) {
        if (op == FUSE_FORGET || op == FUSE_BATCH_FORGET || op == FUSE_INTERRUPT)
            r->no_reply = true;
        return -EIO;
    }
    switch (op) {
    case FUSE_LOOKUP:
        return op_lookup(r);
    case FUSE_FORGET:
        return op_forget(r);
    case FUSE_BATCH_FORGET:
        return op_batch_forget(r);
    case FUSE_GETATTR:
        return op_getattr(r);
    case FUSE_SETATTR:
        return op_setattr(r);
    case FUSE_OPEN:
        return op_open(r);
    case FUSE_CREATE:
        return op_create(r);
    case FUSE_READ:
        return op_read(r);
    case FUSE_WRITE:
        return op_write(r);
    case FUSE_FLUSH:
        return op_flush(r);
    case FUSE_FSYNC:
        return op_fsync(r, false);
    case FUSE_RELEASE:
        return op_release(r, false);
    case FUSE_MKDIR:
        return op_mkdir(r);
    case FUSE_MKNOD:
        return op_mknod(r);
    case FUSE_RMDIR:
        return op_unlink(r, true);
    case FUSE_UNLINK:
        return op_unlink(r, false);
    case FUSE_RENAME:
        return op_rename(r);
    case FUSE_RENAME2:
        return op_rename2(r);
    case FUSE_SYMLINK:
        return op_symlink(r);
    case FUSE_READLINK:
        return op_readlink(r);
    case FUSE_LINK:
        return op_link(r);
    case FUSE_OPENDIR:
        return op_opendir(r);
    case FUSE_READDIR:
        return op_readdir(r, false);
    case FUSE_READDIRPLUS:
        return op_readdir(r, true);
    case FUSE_RELEASEDIR:
        return op_release(r, true);
    case FUSE_FSYNCDIR:
        return op_fsync(r, true);
    case FUSE_STATFS:
        return op_statfs(r);
    case FUSE_FALLOCATE:
        return op_fallocate(r);
    case FUSE_LSEEK:
        return op_lseek(r);
    case FUSE_ACCESS:
        return op_access(r);
    case FUSE_DESTROY:
        return op_destroy(r);
    case FUSE_INTERRUPT:
        r->no_reply = true; /* every request here completes synchronously */
        return 0;
    case FUSE_SETXATTR:
    case FUSE_GETXATTR:
    case FUSE_LISTXATTR:
    case FUSE_REMOVEXATTR:
        return -EOPNOTSUPP;
    default:
        return -ENOSYS;
    }
}

size_t vmm_fuse_handle(struct vmm_fuse *s, const uint8_t *in, size_t in_len, uint8_t *out,
                       size_t out_size)
{
    struct fuse_out_header oh = {.len = sizeof(oh)};
    struct fuse_in_header hdr;
    if (out_size < sizeof(oh))
        return 0;
    if (in_len < sizeof(hdr)) {
        /* No unique id to answer: an error reply with unique 0 lets the guest see it. */
        oh.error = -EINVAL;
        memcpy(out, &oh, sizeof(oh));
        return sizeof(oh);
    }
    memcpy(&hdr, in, sizeof(hdr));
    oh.unique = hdr.unique;
    struct req r = {
        .s = s,
        .hdr = &hdr,
        .body = in + sizeof(hdr),
        .body_len = in_len - sizeof(hdr),
        .out = out + sizeof(oh),
        .out_cap = out_size - sizeof(oh),
    };
    int ret;
    if (hdr.len != in_len)
        ret = -EINVAL;
    else
        ret = dispatch(&r);
    if (r.no_reply)
        return 0;
    if (ret) {
        oh.error = ret;
        r.out_len = 0;
    }
    oh.len = (uint32_t)(sizeof(oh) + r.out_len);
    memcpy(out, &oh, sizeof(oh));
    return oh.len;
}

/* ---- lifetime ---- */

static void drop_all(struct vmm_fuse *s)
{
    for (unsigned i = 0; i < VMM_FUSE_MAX_HANDLES; i++)
        if (s->handles[i].used)
            handle_close(s, &s->handles[i]);
    for (unsigned i = 1; i < VMM_FUSE_MAX_INODES; i++)
        if (s->nodes[i].used)
            node_free(s, &s->nodes[i]);
}

void vmm_fuse_reset(struct vmm_fuse *s)
{
    if (!s)
        return;
    drop_all(s);
    s->inited = false;
}

void vmm_fuse_destroy(struct vmm_fuse *s)
{
    if (!s)
        return;
    if (s->nodes) {
        drop_all(s);
        if (s->nodes[0].fd >= 0)
            close(s->nodes[0].fd);
    }
    if (s->proc_fd >= 0)
        close(s->proc_fd);
    free(s->nodes);
    free(s->free_nodes);
    free(s->handles);
    free(s);
}

void vmm_fuse_counts(const struct vmm_fuse *s, unsigned *inodes, unsigned *handles)
{
    *inodes = VMM_FUSE_MAX_INODES - s->nfree_nodes;
    *handles = s->nhandles;
}

static void raise_nofile(void)
{
    struct rlimit rl;
    rlim_t want = VMM_FUSE_MAX_INODES + VMM_FUSE_MAX_HANDLES + 1024;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= want)
        return;
    /* A hard limit below the tables (4096 under a bare init, e.g. the test
     * bed) is raised too when the process may (CAP_SYS_RESOURCE). */
    if (rl.rlim_max < want) {
        struct rlimit all = {.rlim_cur = want, .rlim_max = want};
        if (setrlimit(RLIMIT_NOFILE, &all) == 0)
            return;
    }
    rl.rlim_cur = rl.rlim_max < want ? rl.rlim_max : want;
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
        LOG_WARN("msg=\"virtio-fs: cannot raise the open-file limit\" errno=%d", errno);
}

int vmm_fuse_create(struct vmm_fuse **out, int root_fd, vmm_fs_event_fn sink, void *opaque)
{
    int ret = 0;
    struct vmm_fuse *s = calloc(1, sizeof(*s));
    int fd = -1;
    if (!s) {
        close(root_fd);
        return -ENOMEM;
    }
    s->proc_fd = -1;
    s->sink = sink;
    s->opaque = opaque;
    s->nodes = calloc(VMM_FUSE_MAX_INODES, sizeof(*s->nodes));
    s->free_nodes = calloc(VMM_FUSE_MAX_INODES, sizeof(*s->free_nodes));
    s->handles = calloc(VMM_FUSE_MAX_HANDLES, sizeof(*s->handles));
    if (!s->nodes || !s->free_nodes || !s->handles) {
        ret = -ENOMEM;
        goto out;
    }
    for (unsigned i = 0; i < HASH_BUCKETS; i++)
        s->buckets[i] = -1;
    for (unsigned i = 0; i < VMM_FUSE_MAX_INODES; i++) {
        s->nodes[i].fd = -1;
        s->nodes[i].gen = i ? 1 : 0;
        s->nodes[i].hnext = -1;
    }
    for (unsigned i = VMM_FUSE_MAX_INODES; i > 1; i--)
        s->free_nodes[s->nfree_nodes++] = (int32_t)(i - 1);
    for (unsigned i = 0; i < VMM_FUSE_MAX_HANDLES; i++) {
        s->handles[i].fd = -1;
        s->handles[i].gen = 1;
    }
    fd = openat(root_fd, ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        ret = -errno;
        goto out;
    }
    struct stat st;
    ret = fd_stat(fd, &st);
    if (ret)
        goto out;
    s->proc_fd = open("/proc/self/fd", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (s->proc_fd < 0) {
        ret = -errno;
        goto out;
    }
    char p[16];
    proc_name(fd, p);
    ssize_t n = readlinkat(s->proc_fd, p, s->root_path, sizeof(s->root_path) - 1);
    if (n < 0) {
        ret = -errno;
        goto out;
    }
    s->root_path[n] = '\0';
    s->root_path_len = (size_t)n;
    if (n == 1) /* the root is "/": every path is below it */
        s->root_path_len = 0;
    struct fnode *root = &s->nodes[0];
    root->fd = fd;
    fd = -1;
    root->used = true;
    root->nlookup = 1;
    root->dev = st.st_dev;
    root->ino = st.st_ino;
    s->buckets[hash_ino(st.st_dev, st.st_ino)] = 0;
    raise_nofile();
out:
    close(root_fd);
    if (fd >= 0)
        close(fd);
    if (ret) {
        vmm_fuse_destroy(s);
        return ret;
    }
    *out = s;
    return 0;
}
