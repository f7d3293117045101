/*
 * Configuration parsing with Jansson. Unknown keys are errors (a typo must
 * not silently become a default), every value is type- and range-checked,
 * and each error is one line that starts with the field's name.
 */
#include "config.h"

#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char vmm_config_usage[] =
    "usage: capsem-vmm --config FILE.json [flags]\n"
    "       capsem-vmm --kernel VMLINUX [--initrd FILE] [flags]\n"
    "       capsem-vmm --probe\n"
    "flags: --kernel P --initrd P --append STR --mem MIB --cpus N --vsock-uds P --cid N\n"
    "       --serial-log P --serial-stdout --no-rng --no-netns --no-seccomp\n"
    "       --share DIR:TAG (virtio-fs) --fs-events P (file events as JSON lines)\n"
    "       --disk PATH[,ro] (repeatable: /dev/vda, vdb… in order; ro = read-only)\n"
    "exit: 0 guest reset/power-off, 1 VMM error, 2 bad usage or config,\n"
    "      3 guest crashed, 4 stopped by SIGTERM/SIGINT\n";

static void errf(char *err, size_t errsz, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void errf(char *err, size_t errsz, const char *fmt, ...)
{
    if (!err || !errsz)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errsz, fmt, ap);
    va_end(ap);
}

void vmm_config_init(struct vmm_config *c)
{
    memset(c, 0, sizeof(*c));
    c->memory_mib = 512;
    c->vcpus = 1;
    c->vsock_cid = 3;
    c->rng = true;
    c->netns = true;
    c->seccomp = true;
}

void vmm_config_fini(struct vmm_config *c)
{
    free(c->kernel);
    free(c->initrd);
    free(c->cmdline);
    free(c->vsock_uds);
    free(c->serial_log);
    free(c->fs_dir);
    free(c->fs_tag);
    free(c->fs_events);
    for (unsigned i = 0; i < c->ndisks; i++)
        free(c->disks[i].path);
    memset(c, 0, sizeof(*c));
}

static int set_str(char **dst, const char *v)
{
    char *s = strdup(v);
    if (!s)
        return -ENOMEM;
    free(*dst);
    *dst = s;
    return 0;
}

static int get_str(json_t *v, const char *name, char **dst, char *err, size_t errsz)
{
    if (!json_is_string(v) || json_string_length(v) == 0 ||
        strlen(json_string_value(v)) != json_string_length(v)) {
        errf(err, errsz, "%s: expected a non-empty string", name);
        return -EINVAL;
    }
    return set_str(dst, json_string_value(v));
}

static int get_uint(json_t *v, const char *name, uint64_t lo, uint64_t hi, uint64_t *dst, char *err,
                    size_t errsz)
{
    if (!json_is_integer(v) || json_integer_value(v) < 0 || (uint64_t)json_integer_value(v) < lo ||
        (uint64_t)json_integer_value(v) > hi) {
        errf(err, errsz, "%s: expected an integer from %llu to %llu", name, (unsigned long long)lo,
             (unsigned long long)hi);
        return -EINVAL;
    }
    *dst = (uint64_t)json_integer_value(v);
    return 0;
}

static int get_bool(json_t *v, const char *name, bool *dst, char *err, size_t errsz)
{
    if (!json_is_boolean(v)) {
        errf(err, errsz, "%s: expected true or false", name);
        return -EINVAL;
    }
    *dst = json_is_true(v);
    return 0;
}

static int parse_vsock(struct vmm_config *c, json_t *o, char *err, size_t errsz)
{
    const char *key;
    json_t *v;
    int ret = 0;
    if (!json_is_object(o)) {
        errf(err, errsz, "vsock: expected an object with cid and uds");
        return -EINVAL;
    }
    if (!json_object_get(o, "uds")) {
        errf(err, errsz, "vsock.uds: missing");
        return -EINVAL;
    }
    json_object_foreach(o, key, v)
    {
        if (strcmp(key, "cid") == 0)
            ret = get_uint(v, "vsock.cid", 3, 0xfffffffeu, &c->vsock_cid, err, errsz);
        else if (strcmp(key, "uds") == 0)
            ret = get_str(v, "vsock.uds", &c->vsock_uds, err, errsz);
        else {
            errf(err, errsz, "vsock.%.64s: unknown field", key);
            ret = -EINVAL;
        }
        if (ret)
            return ret;
    }
    c->vsock = true;
    return 0;
}

/* Append a disk; `path` is copied. */
static int add_disk(struct vmm_config *c, const char *path, size_t len, bool ro, const char *name,
                    char *err, size_t errsz)
{
    if (c->ndisks >= VMM_CONFIG_DISKS_MAX) {
        errf(err, errsz, "%s: at most %u disks", name, VMM_CONFIG_DISKS_MAX);
        return -EINVAL;
    }
    if (len == 0 || memchr(path, '\0', len)) {
        errf(err, errsz, "%s: expected a non-empty path", name);
        return -EINVAL;
    }
    char *s = strndup(path, len);
    if (!s)
        return -ENOMEM;
    c->disks[c->ndisks].path = s;
    c->disks[c->ndisks].read_only = ro;
    c->ndisks++;
    return 0;
}

static int parse_disks(struct vmm_config *c, json_t *a, char *err, size_t errsz)
{
    size_t i;
    json_t *o;
    if (!json_is_array(a)) {
        errf(err, errsz, "disks: expected an array of {path, read_only}");
        return -EINVAL;
    }
    json_array_foreach(a, i, o)
    {
        const char *key;
        json_t *v;
        json_t *path = json_object_get(o, "path");
        bool ro = false;
        int ret = 0;
        if (!json_is_object(o)) {
            errf(err, errsz, "disks[%zu]: expected an object with path and read_only", i);
            return -EINVAL;
        }
        json_object_foreach(o, key, v)
        {
            if (strcmp(key, "read_only") == 0) {
                char name[48];
                snprintf(name, sizeof(name), "disks[%zu].read_only", i);
                ret = get_bool(v, name, &ro, err, errsz);
            } else if (strcmp(key, "path") != 0) {
                errf(err, errsz, "disks[%zu].%.64s: unknown field", i, key);
                ret = -EINVAL;
            }
            if (ret)
                return ret;
        }
        char name[48];
        snprintf(name, sizeof(name), "disks[%zu].path", i);
        if (!path) {
            errf(err, errsz, "%s: missing", name);
            return -EINVAL;
        }
        if (!json_is_string(path)) {
            errf(err, errsz, "%s: expected a non-empty path", name);
            return -EINVAL;
        }
        ret = add_disk(c, json_string_value(path), json_string_length(path), ro, name, err, errsz);
        if (ret)
            return ret;
    }
    return 0;
}

/* "--disk PATH[,ro]" */
static int parse_disk_flag(struct vmm_config *c, const char *val, char *err, size_t errsz)
{
    size_t len = strlen(val);
    bool ro = false;
    const char *comma = strrchr(val, ',');
    if (comma && strcmp(comma, ",ro") == 0) {
        ro = true;
        len = (size_t)(comma - val);
    } else if (comma && strcmp(comma, ",rw") == 0) {
        len = (size_t)(comma - val);
    }
    return add_disk(c, val, len, ro, "--disk", err, errsz);
}

static int parse_fs(struct vmm_config *c, json_t *o, char *err, size_t errsz)
{
    const char *key;
    json_t *v;
    int ret = 0;
    if (!json_is_object(o)) {
        errf(err, errsz, "fs: expected an object with path, tag and events");
        return -EINVAL;
    }
    if (!json_object_get(o, "path")) {
        errf(err, errsz, "fs.path: missing");
        return -EINVAL;
    }
    json_object_foreach(o, key, v)
    {
        if (strcmp(key, "path") == 0)
            ret = get_str(v, "fs.path", &c->fs_dir, err, errsz);
        else if (strcmp(key, "tag") == 0)
            ret = get_str(v, "fs.tag", &c->fs_tag, err, errsz);
        else if (strcmp(key, "events") == 0)
            ret = get_str(v, "fs.events", &c->fs_events, err, errsz);
        else {
            errf(err, errsz, "fs.%.64s: unknown field", key);
            ret = -EINVAL;
        }
        if (ret)
            return ret;
    }
    return 0;
}

/* "--share DIR:TAG": the tag is what follows the last ':'. */
static int parse_share_flag(struct vmm_config *c, const char *val, char *err, size_t errsz)
{
    const char *colon = strrchr(val, ':');
    if (!colon || colon == val || !colon[1]) {
        errf(err, errsz, "--share: expected DIR:TAG");
        return -EINVAL;
    }
    char *dir = strndup(val, (size_t)(colon - val));
    if (!dir)
        return -ENOMEM;
    int ret = set_str(&c->fs_tag, colon + 1);
    if (ret) {
        free(dir);
        return ret;
    }
    free(c->fs_dir);
    c->fs_dir = dir;
    return 0;
}

static int parse_serial(struct vmm_config *c, json_t *o, char *err, size_t errsz)
{
    const char *key;
    json_t *v;
    int ret = 0;
    if (!json_is_object(o)) {
        errf(err, errsz, "serial: expected an object with log and/or stdout");
        return -EINVAL;
    }
    json_object_foreach(o, key, v)
    {
        if (strcmp(key, "log") == 0)
            ret = get_str(v, "serial.log", &c->serial_log, err, errsz);
        else if (strcmp(key, "stdout") == 0)
            ret = get_bool(v, "serial.stdout", &c->serial_stdout, err, errsz);
        else {
            errf(err, errsz, "serial.%.64s: unknown field", key);
            ret = -EINVAL;
        }
        if (ret)
            return ret;
    }
    return 0;
}

int vmm_config_parse_json(struct vmm_config *c, const char *text, size_t len, char *err,
                          size_t errsz)
{
    json_error_t jerr;
    int ret = 0;
    const char *key;
    json_t *v;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        errf(err, errsz, "config: invalid JSON at line %d: %s", jerr.line, jerr.text);
        return -EINVAL;
    }
    if (!json_is_object(root)) {
        errf(err, errsz, "config: expected a JSON object");
        ret = -EINVAL;
        goto out;
    }
    json_object_foreach(root, key, v)
    {
        uint64_t u = 0;
        if (strcmp(key, "kernel") == 0) {
            ret = get_str(v, "kernel", &c->kernel, err, errsz);
        } else if (strcmp(key, "initrd") == 0) {
            ret = get_str(v, "initrd", &c->initrd, err, errsz);
        } else if (strcmp(key, "cmdline") == 0) {
            if (!json_is_string(v)) {
                errf(err, errsz, "cmdline: expected a string");
                ret = -EINVAL;
            } else {
                ret = set_str(&c->cmdline, json_string_value(v));
            }
        } else if (strcmp(key, "memory_mib") == 0) {
            ret = get_uint(v, "memory_mib", VMM_CONFIG_MEM_MIN_MIB, VMM_CONFIG_MEM_MAX_MIB, &u, err,
                           errsz);
            if (!ret)
                c->memory_mib = u;
        } else if (strcmp(key, "vcpus") == 0) {
            ret = get_uint(v, "vcpus", 1, VMM_CONFIG_VCPUS_MAX, &u, err, errsz);
            if (!ret)
                c->vcpus = (unsigned)u;
        } else if (strcmp(key, "vsock") == 0) {
            ret = parse_vsock(c, v, err, errsz);
        } else if (strcmp(key, "serial") == 0) {
            ret = parse_serial(c, v, err, errsz);
        } else if (strcmp(key, "fs") == 0) {
            ret = parse_fs(c, v, err, errsz);
        } else if (strcmp(key, "rng") == 0) {
            ret = get_bool(v, "rng", &c->rng, err, errsz);
        } else if (strcmp(key, "disks") == 0) {
            ret = parse_disks(c, v, err, errsz);
        } else if (strcmp(key, "netns") == 0) {
            ret = get_bool(v, "netns", &c->netns, err, errsz);
        } else if (strcmp(key, "seccomp") == 0) {
            ret = get_bool(v, "seccomp", &c->seccomp, err, errsz);
        } else {
            errf(err, errsz, "%.64s: unknown field", key);
            ret = -EINVAL;
        }
        if (ret == -ENOMEM)
            errf(err, errsz, "%.64s: out of memory", key);
        if (ret)
            goto out;
    }
out:
    json_decref(root);
    return ret;
}

int vmm_config_load_file(struct vmm_config *c, const char *path, char *err, size_t errsz)
{
    int ret = 0;
    char *text = NULL;
    size_t len = 0, cap = 0;
    FILE *f = fopen(path, "re");
    if (!f) {
        ret = -errno;
        errf(err, errsz, "config: cannot open %s: %s", path, strerror(-ret));
        goto out;
    }
    for (;;) {
        if (cap - len < 4096) {
            if (cap >= (1u << 20)) {
                errf(err, errsz, "config: %s is larger than 1 MiB", path);
                ret = -EINVAL;
                goto out;
            }
            char *t = realloc(text, cap + 8192);
            if (!t) {
                ret = -ENOMEM;
                errf(err, errsz, "config: out of memory");
                goto out;
            }
            text = t;
            cap += 8192;
        }
        size_t n = fread(text + len, 1, cap - len, f);
        len += n;
        if (n == 0) {
            if (ferror(f)) {
                ret = -EIO;
                errf(err, errsz, "config: cannot read %s", path);
                goto out;
            }
            break;
        }
    }
    ret = vmm_config_parse_json(c, text ? text : "", len, err, errsz);
out:
    if (f)
        fclose(f);
    free(text);
    return ret;
}

static int parse_num(const char *flag, const char *s, uint64_t lo, uint64_t hi, uint64_t *out,
                     char *err, size_t errsz)
{
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (!*s || *s == '-' || *end || errno || v < lo || v > hi) {
        errf(err, errsz, "%s: expected an integer from %llu to %llu", flag, (unsigned long long)lo,
             (unsigned long long)hi);
        return -EINVAL;
    }
    *out = v;
    return 0;
}

int vmm_config_parse_args(struct vmm_config *c, int argc, char **argv, enum vmm_action *action,
                          char *err, size_t errsz)
{
    int ret = 0;
    enum vmm_action act = VMM_ACTION_RUN;
    /* --config first, so flags given on the command line override the file. */
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0) {
            if (i + 1 >= argc) {
                errf(err, errsz, "--config: missing file name");
                return -EINVAL;
            }
            ret = vmm_config_load_file(c, argv[++i], err, errsz);
            if (ret)
                return -EINVAL;
        }
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        uint64_t u = 0;
        bool takes = true;
        if (strcmp(a, "--probe") == 0) {
            act = VMM_ACTION_PROBE;
            takes = false;
        } else if (strcmp(a, "--seccomp-selftest") == 0) {
            act = VMM_ACTION_SECCOMP_SELFTEST;
            takes = false;
        } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            act = VMM_ACTION_HELP;
            takes = false;
        } else if (strcmp(a, "--serial-stdout") == 0) {
            c->serial_stdout = true;
            takes = false;
        } else if (strcmp(a, "--no-netns") == 0) {
            c->netns = false;
            takes = false;
        } else if (strcmp(a, "--no-seccomp") == 0) {
            c->seccomp = false;
            takes = false;
        } else if (strcmp(a, "--no-rng") == 0) {
            c->rng = false;
            takes = false;
        } else if (strcmp(a, "--config") == 0 || strcmp(a, "--kernel") == 0 ||
                   strcmp(a, "--initrd") == 0 || strcmp(a, "--append") == 0 ||
                   strcmp(a, "--mem") == 0 || strcmp(a, "--cpus") == 0 ||
                   strcmp(a, "--vsock-uds") == 0 || strcmp(a, "--cid") == 0 ||
                   strcmp(a, "--serial-log") == 0 || strcmp(a, "--log-level") == 0 ||
                   strcmp(a, "--share") == 0 || strcmp(a, "--fs-events") == 0 ||
                   strcmp(a, "--disk") == 0) {
            if (!val || (!*val && strcmp(a, "--append") != 0)) {
                errf(err, errsz, "%s: missing value", a);
                return -EINVAL;
            }
        } else {
            errf(err, errsz, "%.64s: unknown flag (see --help)", a);
            return -EINVAL;
        }
        if (!takes)
            continue;
        i++;
        if (strcmp(a, "--kernel") == 0)
            ret = set_str(&c->kernel, val);
        else if (strcmp(a, "--initrd") == 0)
            ret = set_str(&c->initrd, val);
        else if (strcmp(a, "--append") == 0)
            ret = set_str(&c->cmdline, val);
        else if (strcmp(a, "--serial-log") == 0)
            ret = set_str(&c->serial_log, val);
        else if (strcmp(a, "--share") == 0)
            ret = parse_share_flag(c, val, err, errsz);
        else if (strcmp(a, "--fs-events") == 0)
            ret = set_str(&c->fs_events, val);
        else if (strcmp(a, "--disk") == 0)
            ret = parse_disk_flag(c, val, err, errsz);
        else if (strcmp(a, "--vsock-uds") == 0) {
            ret = set_str(&c->vsock_uds, val);
            c->vsock = true;
        } else if (strcmp(a, "--mem") == 0) {
            ret = parse_num(a, val, VMM_CONFIG_MEM_MIN_MIB, VMM_CONFIG_MEM_MAX_MIB, &u, err, errsz);
            if (!ret)
                c->memory_mib = u;
        } else if (strcmp(a, "--cpus") == 0) {
            ret = parse_num(a, val, 1, VMM_CONFIG_VCPUS_MAX, &u, err, errsz);
            if (!ret)
                c->vcpus = (unsigned)u;
        } else if (strcmp(a, "--cid") == 0) {
            ret = parse_num(a, val, 3, 0xfffffffeu, &u, err, errsz);
            if (!ret)
                c->vsock_cid = u;
        }
        /* --config was handled above; --log-level is read by main. */
        if (ret == -ENOMEM)
            errf(err, errsz, "%s: out of memory", a);
        if (ret)
            return -EINVAL;
    }
    *action = act;
    return 0;
}

int vmm_config_validate(const struct vmm_config *c, char *err, size_t errsz)
{
    if (!c->kernel) {
        errf(err, errsz, "kernel: missing (give --kernel or \"kernel\" in the config)");
        return -EINVAL;
    }
    if (c->vsock && !c->vsock_uds) {
        errf(err, errsz, "vsock.uds: missing");
        return -EINVAL;
    }
    if (c->fs_tag && (!*c->fs_tag || strlen(c->fs_tag) > 36)) {
        errf(err, errsz, "fs.tag: expected 1 to 36 bytes");
        return -EINVAL;
    }
    if ((c->fs_tag || c->fs_events) && !c->fs_dir) {
        errf(err, errsz, "fs.path: missing");
        return -EINVAL;
    }
    if (c->vsock_uds && strlen(c->vsock_uds) > 90) {
        /* sun_path is 108 bytes and the muxer appends "_<port>". */
        errf(err, errsz, "vsock.uds: path longer than 90 bytes");
        return -EINVAL;
    }
    return 0;
}
