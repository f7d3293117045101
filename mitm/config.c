/*
 * Config validation for the policy engine: reads a config file with Jansson
 * and checks one document against exactly what schemas/config.schema.json
 * allows (unknown keys, types, enums, domain patterns, methods, paths,
 * ports, upstream overrides), turning it into a struct pdoc for policy.c.
 * Every error names the file and the JSON path of the offending value, e.g.
 * "config.json: $.network.rules[2].action: must be one of ...".
 */
#include "policy_doc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define JPATH_MAX 512

struct vctx {
    const char *file;
    char *err;
    size_t errlen;
};

__attribute__((format(printf, 3, 4))) static int verr(const struct vctx *v, const char *path,
                                                      const char *fmt, ...)
{
    char reason[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);
    if (v->err && v->errlen)
        snprintf(v->err, v->errlen, "%s: %s: %s", v->file, path, reason);
    return -EINVAL;
}

static bool is_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static char lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

static char upper(char c)
{
    return c >= 'a' && c <= 'z' ? (char)(c - 'a' + 'A') : c;
}

/* A path cut short by snprintf ends in "..." (long resolve keys only). */
static void mark_cut(char *out, size_t outlen)
{
    if (outlen >= 4)
        memcpy(out + outlen - 4, "...", 4);
}

/* "$.a" for identifier-like keys, `$["a:b"]` otherwise (quotes and controls escaped). */
static void jpath_key(char *out, size_t outlen, const char *parent, const char *key)
{
    bool plain = key[0] != '\0';
    for (const char *k = key; *k; k++)
        if (!is_alnum(*k) && *k != '_')
            plain = false;
    if (plain) {
        int n = snprintf(out, outlen, "%s.%s", parent, key);
        if (n < 0 || (size_t)n >= outlen)
            mark_cut(out, outlen);
        return;
    }
    char esc[128];
    size_t o = 0;
    for (const char *k = key; *k && o + 5 < sizeof(esc); k++) {
        unsigned char c = (unsigned char)*k;
        if (c == '"' || c == '\\') {
            esc[o++] = '\\';
            esc[o++] = (char)c;
        } else if (c < 0x20 || c == 0x7f) {
            esc[o++] = '?';
        } else {
            esc[o++] = (char)c;
        }
    }
    esc[o] = '\0';
    int n = snprintf(out, outlen, "%s[\"%s\"]", parent, esc);
    if (n < 0 || (size_t)n >= outlen)
        mark_cut(out, outlen);
}

static void jpath_index(char *out, size_t outlen, const char *parent, size_t i)
{
    int n = snprintf(out, outlen, "%s[%zu]", parent, i);
    if (n < 0 || (size_t)n >= outlen)
        mark_cut(out, outlen);
}

/* Every key of `obj` must be in `allowed` (NULL-terminated). */
static int check_keys(const struct vctx *v, const json_t *obj, const char *path,
                      const char *const *allowed)
{
    /* Jansson's iterator takes a non-const object; it only reads. */
    json_t *o = (json_t *)obj;
    for (void *it = json_object_iter(o); it; it = json_object_iter_next(o, it)) {
        const char *key = json_object_iter_key(it);
        bool known = false;
        for (size_t i = 0; allowed[i]; i++)
            if (strcmp(allowed[i], key) == 0)
                known = true;
        if (!known) {
            char kp[JPATH_MAX];
            jpath_key(kp, sizeof(kp), path, key);
            return verr(v, kp, "unknown key");
        }
    }
    return 0;
}

static const char *type_name(const json_t *j)
{
    switch (json_typeof(j)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
        return "an integer";
    case JSON_REAL:
        return "a number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    case JSON_NULL:
        return "null";
    }
    return "something else";
}

static int want(const struct vctx *v, const char *path, const json_t *j, json_type t)
{
    if (json_typeof(j) == t || (t == JSON_TRUE && json_is_boolean(j)))
        return 0;
    const char *exp = t == JSON_OBJECT   ? "an object"
                      : t == JSON_ARRAY  ? "an array"
                      : t == JSON_STRING ? "a string"
                      : t == JSON_TRUE   ? "true or false"
                                         : "an integer";
    return verr(v, path, "expected %s, got %s", exp, type_name(j));
}

static const char *const action_names[] = {"allow", "block", "log", NULL};
static const char *const preset_names[] = {"high", "medium", "open", NULL};

/* A string from `names` (NULL-terminated); *out = its index. */
static int parse_enum(const struct vctx *v, const char *path, const json_t *j,
                      const char *const *names, int *out)
{
    int rc = want(v, path, j, JSON_STRING);
    if (rc < 0)
        return rc;
    const char *s = json_string_value(j);
    for (int i = 0; names[i]; i++) {
        if (strcmp(names[i], s) == 0) {
            *out = i;
            return 0;
        }
    }
    char list[128] = "";
    size_t o = 0;
    for (size_t i = 0; names[i]; i++) {
        int n = snprintf(list + o, sizeof(list) - o, "%s\"%s\"", i ? ", " : "", names[i]);
        if (n < 0 || (size_t)n >= sizeof(list) - o)
            break;
        o += (size_t)n;
    }
    return verr(v, path, "must be one of %s", list);
}

/* Why `d` is not a domain pattern, or NULL when it is one. */
static const char *domain_problem(const char *d, bool allow_wildcard)
{
    if (d[0] == '\0')
        return "empty";
    if (allow_wildcard && strcmp(d, "*") == 0)
        return NULL;
    const char *p = d;
    if (p[0] == '*' && allow_wildcard) {
        if (p[1] != '.')
            return "'*' is allowed only as \"*\" or a leading \"*.\"";
        p += 2;
    }
    if (strlen(p) > PDOC_MAX_DOMAIN)
        return "longer than 253 characters";
    size_t label = 0;
    for (;; p++) {
        char c = *p;
        if (c == '.' || c == '\0') {
            if (label == 0)
                return "empty label";
            if (p[-1] == '-')
                return "a label ends with '-'";
            if (c == '\0')
                break;
            label = 0;
            continue;
        }
        if (c == '*')
            return allow_wildcard ? "'*' is allowed only as \"*\" or a leading \"*.\""
                                  : "'*' is not allowed here";
        if (!is_alnum(c) && c != '-' && c != '_')
            return "only letters, digits, '-', '_' and '.' are allowed";
        if (label == 0 && c == '-')
            return "a label starts with '-'";
        if (++label > 63)
            return "a label is longer than 63 characters";
    }
    return NULL;
}

static char *dup_lower(const char *s)
{
    char *d = strdup(s);
    if (d)
        for (char *p = d; *p; p++)
            *p = lower(*p);
    return d;
}

/* A port "1".."65535" written without leading zeros or signs; 0 when not one. */
static unsigned parse_port_text(const char *s, size_t len)
{
    if (len == 0 || len > 5 || s[0] < '1' || s[0] > '9')
        return 0;
    unsigned v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return 0;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    return v <= 65535 ? v : 0;
}

static bool id_ok(const char *id)
{
    size_t n = strlen(id);
    if (n == 0 || n > PDOC_MAX_ID || !is_alnum(id[0]))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!is_alnum(id[i]) && id[i] != '.' && id[i] != '_' && id[i] != '-')
            return false;
    return true;
}

static bool method_ok(const char *m)
{
    size_t n = strlen(m);
    if (n == 0 || n > 32 || !((m[0] >= 'a' && m[0] <= 'z') || (m[0] >= 'A' && m[0] <= 'Z')))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((m[i] >= 'a' && m[i] <= 'z') || (m[i] >= 'A' && m[i] <= 'Z') || m[i] == '-' ||
              m[i] == '_'))
            return false;
    return true;
}

/* Why `p` is not a path pattern, or NULL. */
static const char *path_problem(const char *p)
{
    size_t n = strlen(p);
    if (n == 0 || p[0] != '/')
        return "must start with '/'";
    if (n > PDOC_MAX_PATH)
        return "longer than 1024 characters";
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)p[i] <= 0x20 || (unsigned char)p[i] >= 0x7f)
            return "only printable ASCII without spaces is allowed";
    return NULL;
}

static int parse_methods(const struct vctx *v, const char *path, const json_t *a,
                         struct pdoc_rule *r)
{
    int rc = want(v, path, a, JSON_ARRAY);
    if (rc < 0)
        return rc;
    size_t n = json_array_size(a);
    if (n == 0)
        return verr(v, path, "empty methods list (leave \"methods\" out to match every method)");
    if (n > PDOC_MAX_LIST)
        return verr(v, path, "more than %d methods", PDOC_MAX_LIST);
    r->methods = calloc(n, sizeof(*r->methods));
    if (!r->methods)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        char ip[JPATH_MAX];
        jpath_index(ip, sizeof(ip), path, i);
        const json_t *m = json_array_get(a, i);
        rc = want(v, ip, m, JSON_STRING);
        if (rc < 0)
            return rc;
        if (!method_ok(json_string_value(m)))
            return verr(v, ip, "not an HTTP method (letters, '-' and '_', at most 32)");
        char *up = strdup(json_string_value(m));
        if (!up)
            return -ENOMEM;
        for (char *c = up; *c; c++)
            *c = upper(*c);
        r->methods[r->nmethods++] = up;
    }
    return 0;
}

static int parse_paths(const struct vctx *v, const char *path, const json_t *a, struct pdoc_rule *r)
{
    int rc = want(v, path, a, JSON_ARRAY);
    if (rc < 0)
        return rc;
    size_t n = json_array_size(a);
    if (n == 0)
        return verr(v, path, "empty paths list (leave \"paths\" out to match every path)");
    if (n > PDOC_MAX_LIST)
        return verr(v, path, "more than %d paths", PDOC_MAX_LIST);
    r->paths = calloc(n, sizeof(*r->paths));
    if (!r->paths)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        char ip[JPATH_MAX];
        jpath_index(ip, sizeof(ip), path, i);
        const json_t *p = json_array_get(a, i);
        rc = want(v, ip, p, JSON_STRING);
        if (rc < 0)
            return rc;
        const char *s = json_string_value(p);
        const char *why = path_problem(s);
        if (why)
            return verr(v, ip, "bad path pattern: %s", why);
        char *copy = strdup(s);
        if (!copy)
            return -ENOMEM;
        r->paths[r->npaths].pat = copy;
        r->paths[r->npaths].glob = strpbrk(s, "*?[") != NULL;
        r->npaths++;
    }
    return 0;
}

static int parse_rule(const struct vctx *v, const char *path, const json_t *j, size_t index,
                      bool corp, struct pdoc *d)
{
    static const char *const keys[] = {"id", "domain", "methods", "paths", "action", NULL};
    int rc = want(v, path, j, JSON_OBJECT);
    if (rc < 0)
        return rc;
    rc = check_keys(v, j, path, keys);
    if (rc < 0)
        return rc;
    struct pdoc_rule *r = &d->rules[d->nrules];
    memset(r, 0, sizeof(*r));
    char kp[JPATH_MAX];

    const json_t *id = json_object_get(j, "id");
    if (id) {
        jpath_key(kp, sizeof(kp), path, "id");
        rc = want(v, kp, id, JSON_STRING);
        if (rc < 0)
            goto out;
        const char *s = json_string_value(id);
        if (!id_ok(s)) {
            rc = verr(v, kp,
                      "bad rule id (letters, digits, '.', '_', '-', at most 64, starting with a "
                      "letter or digit)");
            goto out;
        }
        for (size_t i = 0; i < d->nrules; i++) {
            if (strcmp(d->rules[i].id, s) == 0) {
                rc = verr(v, kp, "duplicate rule id \"%s\"", s);
                goto out;
            }
        }
        r->id = strdup(s);
    } else {
        char gen[32];
        snprintf(gen, sizeof(gen), "%s:%zu", corp ? "corp" : "user", index);
        r->id = strdup(gen);
    }
    if (!r->id) {
        rc = -ENOMEM;
        goto out;
    }

    const json_t *dom = json_object_get(j, "domain");
    if (!dom) {
        rc = verr(v, path, "missing \"domain\"");
        goto out;
    }
    jpath_key(kp, sizeof(kp), path, "domain");
    rc = want(v, kp, dom, JSON_STRING);
    if (rc < 0)
        goto out;
    const char *why = domain_problem(json_string_value(dom), true);
    if (why) {
        rc = verr(v, kp, "bad domain pattern: %s", why);
        goto out;
    }
    r->domain = dup_lower(json_string_value(dom));
    if (!r->domain) {
        rc = -ENOMEM;
        goto out;
    }

    const json_t *m = json_object_get(j, "methods");
    if (m) {
        jpath_key(kp, sizeof(kp), path, "methods");
        rc = parse_methods(v, kp, m, r);
        if (rc < 0)
            goto out;
    }
    const json_t *p = json_object_get(j, "paths");
    if (p) {
        jpath_key(kp, sizeof(kp), path, "paths");
        rc = parse_paths(v, kp, p, r);
        if (rc < 0)
            goto out;
    }
    const json_t *a = json_object_get(j, "action");
    if (!a) {
        rc = verr(v, path, "missing \"action\"");
        goto out;
    }
    jpath_key(kp, sizeof(kp), path, "action");
    int act = 0;
    rc = parse_enum(v, kp, a, action_names, &act);
    if (rc < 0)
        goto out;
    r->action = (enum decision)act;
    d->nrules++;
out:
    if (rc < 0)
        pdoc_rule_fini(r);
    return rc;
}

static int parse_ports(const struct vctx *v, const char *path, const json_t *a, struct pdoc *d)
{
    int rc = want(v, path, a, JSON_ARRAY);
    if (rc < 0)
        return rc;
    if (json_array_size(a) > PDOC_MAX_PORTS)
        return verr(v, path, "more than %d ports", PDOC_MAX_PORTS);
    for (size_t i = 0; i < json_array_size(a); i++) {
        char ip[JPATH_MAX];
        jpath_index(ip, sizeof(ip), path, i);
        const json_t *p = json_array_get(a, i);
        rc = want(v, ip, p, JSON_INTEGER);
        if (rc < 0)
            return rc;
        json_int_t n = json_integer_value(p);
        if (n < 1 || n > 65535)
            return verr(v, ip, "bad port %lld: must be from 1 to 65535", (long long)n);
        d->ports[d->nports++] = (unsigned)n;
    }
    return 0;
}

static int parse_resolve(const struct vctx *v, const char *path, const json_t *o, struct pdoc *d)
{
    int rc = want(v, path, o, JSON_OBJECT);
    if (rc < 0)
        return rc;
    size_t n = json_object_size(o);
    if (n > PDOC_MAX_RESOLVE)
        return verr(v, path, "more than %d entries", PDOC_MAX_RESOLVE);
    d->resolves = calloc(n ? n : 1, sizeof(*d->resolves));
    if (!d->resolves)
        return -ENOMEM;
    json_t *obj = (json_t *)o; /* iteration only reads */
    for (void *it = json_object_iter(obj); it; it = json_object_iter_next(obj, it)) {
        const char *key = json_object_iter_key(it);
        const json_t *val = json_object_iter_value(it);
        char kp[JPATH_MAX];
        jpath_key(kp, sizeof(kp), path, key);
        const char *colon = strrchr(key, ':');
        if (!colon)
            return verr(v, kp, "bad resolve key: expected \"host:port\"");
        char host[PDOC_MAX_DOMAIN + 2];
        size_t hlen = (size_t)(colon - key);
        if (hlen >= sizeof(host))
            return verr(v, kp, "bad resolve key: host longer than 253 characters");
        memcpy(host, key, hlen);
        host[hlen] = '\0';
        const char *why = domain_problem(host, false);
        if (why)
            return verr(v, kp, "bad resolve key: host: %s", why);
        unsigned port = parse_port_text(colon + 1, strlen(colon + 1));
        if (!port)
            return verr(v, kp, "bad resolve key: port must be from 1 to 65535");
        rc = want(v, kp, val, JSON_STRING);
        if (rc < 0)
            return rc;
        const char *t = json_string_value(val);
        const char *tc = strrchr(t, ':');
        char addr[INET_ADDRSTRLEN];
        struct in_addr ia;
        size_t alen = tc ? (size_t)(tc - t) : 0;
        if (!tc || alen == 0 || alen >= sizeof(addr))
            return verr(v, kp, "bad resolve target: expected \"IPv4-address:port\"");
        memcpy(addr, t, alen);
        addr[alen] = '\0';
        if (inet_pton(AF_INET, addr, &ia) != 1)
            return verr(v, kp, "bad resolve target: \"%s\" is not an IPv4 address", addr);
        if (!parse_port_text(tc + 1, strlen(tc + 1)))
            return verr(v, kp, "bad resolve target: port must be from 1 to 65535");
        struct pdoc_resolve *r = &d->resolves[d->nresolves];
        r->host = dup_lower(host);
        r->target = strdup(t);
        r->port = port;
        d->nresolves++; /* counted now so pdoc_fini frees a half-filled entry */
        if (!r->host || !r->target)
            return -ENOMEM;
    }
    return 0;
}

static int parse_upstream(const struct vctx *v, const char *path, const json_t *o, struct pdoc *d)
{
    static const char *const keys[] = {"ca_file", "resolve", NULL};
    int rc = want(v, path, o, JSON_OBJECT);
    if (rc == 0)
        rc = check_keys(v, o, path, keys);
    if (rc < 0)
        return rc;
    char kp[JPATH_MAX];
    const json_t *ca = json_object_get(o, "ca_file");
    if (ca) {
        jpath_key(kp, sizeof(kp), path, "ca_file");
        rc = want(v, kp, ca, JSON_STRING);
        if (rc < 0)
            return rc;
        const char *s = json_string_value(ca);
        if (s[0] != '/')
            return verr(v, kp, "must be an absolute path");
        if (strlen(s) >= PDOC_MAX_FILE_PATH)
            return verr(v, kp, "path too long");
        d->ca_file = strdup(s);
        if (!d->ca_file)
            return -ENOMEM;
    }
    const json_t *res = json_object_get(o, "resolve");
    if (res) {
        jpath_key(kp, sizeof(kp), path, "resolve");
        rc = parse_resolve(v, kp, res, d);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static int parse_network(const struct vctx *v, const json_t *net, bool corp, struct pdoc *d)
{
    static const char *const keys[] = {"preset",     "default",  "locked", "rules",
                                       "http_ports", "upstream", NULL};
    const char *path = "$.network";
    int rc = want(v, path, net, JSON_OBJECT);
    if (rc == 0)
        rc = check_keys(v, net, path, keys);
    if (rc < 0)
        return rc;
    const json_t *j;
    int e;
    if ((j = json_object_get(net, "preset"))) {
        rc = parse_enum(v, "$.network.preset", j, preset_names, &e);
        if (rc < 0)
            return rc;
        d->preset = (enum policy_preset)e;
    }
    if ((j = json_object_get(net, "default"))) {
        rc = parse_enum(v, "$.network.default", j, action_names, &e);
        if (rc < 0)
            return rc;
        d->def = e;
    }
    if ((j = json_object_get(net, "locked"))) {
        rc = want(v, "$.network.locked", j, JSON_TRUE);
        if (rc < 0)
            return rc;
        if (!corp)
            return verr(v, "$.network.locked", "only the corp file can lock the policy");
        d->locked = json_is_true(j);
    }
    if ((j = json_object_get(net, "rules"))) {
        rc = want(v, "$.network.rules", j, JSON_ARRAY);
        if (rc < 0)
            return rc;
        size_t n = json_array_size(j);
        if (n > PDOC_MAX_RULES)
            return verr(v, "$.network.rules", "more than %d rules", PDOC_MAX_RULES);
        d->rules = calloc(n ? n : 1, sizeof(*d->rules));
        if (!d->rules)
            return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
            char rp[JPATH_MAX];
            jpath_index(rp, sizeof(rp), "$.network.rules", i);
            rc = parse_rule(v, rp, json_array_get(j, i), i, corp, d);
            if (rc < 0)
                return rc;
        }
    }
    if ((j = json_object_get(net, "http_ports"))) {
        rc = parse_ports(v, "$.network.http_ports", j, d);
        if (rc < 0)
            return rc;
    }
    if ((j = json_object_get(net, "upstream"))) {
        rc = parse_upstream(v, "$.network.upstream", j, d);
        if (rc < 0)
            return rc;
    }
    return 0;
}

void pdoc_init(struct pdoc *d)
{
    memset(d, 0, sizeof(*d));
    d->preset = PRESET_NONE;
    d->def = -1;
}

void pdoc_rule_fini(struct pdoc_rule *r)
{
    free(r->id);
    free(r->domain);
    for (size_t i = 0; i < r->nmethods; i++)
        free(r->methods[i]);
    free(r->methods);
    for (size_t i = 0; i < r->npaths; i++)
        free(r->paths[i].pat);
    free(r->paths);
    memset(r, 0, sizeof(*r));
}

void pdoc_fini(struct pdoc *d)
{
    if (!d)
        return;
    for (size_t i = 0; i < d->nrules; i++)
        pdoc_rule_fini(&d->rules[i]);
    free(d->rules);
    for (size_t i = 0; i < d->nresolves; i++) {
        free(d->resolves[i].host);
        free(d->resolves[i].target);
    }
    free(d->resolves);
    free(d->ca_file);
    pdoc_init(d);
}

int pdoc_parse(const json_t *doc, const char *file, bool corp, struct pdoc *d, char *err,
               size_t errlen)
{
    static const char *const keys[] = {"network", "credentials", NULL};
    struct vctx v = {.file = file ? file : (corp ? "corp" : "user"), .err = err, .errlen = errlen};
    pdoc_init(d);
    int rc = want(&v, "$", doc, JSON_OBJECT);
    if (rc == 0)
        rc = check_keys(&v, doc, "$", keys);
    const json_t *net = rc == 0 ? json_object_get(doc, "network") : NULL;
    if (net)
        rc = parse_network(&v, net, corp, d);
    if (rc == -ENOMEM && err && errlen)
        snprintf(err, errlen, "%s: out of memory", v.file);
    if (rc < 0)
        pdoc_fini(d);
    return rc;
}

int pdoc_read_file(const char *path, json_t **out, char *err, size_t errlen)
{
    int rc = 0;
    char *buf = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        rc = -errno;
        if (rc == -ENOENT) {
            *out = NULL;
            return 0;
        }
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(-rc));
        return rc;
    }
    struct stat st;
    if (fstat(fd, &st) < 0) {
        rc = -errno;
        snprintf(err, errlen, "%s: cannot stat: %s", path, strerror(-rc));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = -EINVAL;
        snprintf(err, errlen, "%s: not a regular file", path);
        goto out;
    }
    if (st.st_size > PDOC_MAX_BYTES) {
        rc = -EFBIG;
        snprintf(err, errlen, "%s: larger than %d bytes", path, PDOC_MAX_BYTES);
        goto out;
    }
    buf = malloc((size_t)st.st_size + 1);
    if (!buf) {
        rc = -ENOMEM;
        snprintf(err, errlen, "%s: out of memory", path);
        goto out;
    }
    size_t got = 0;
    while (got < (size_t)st.st_size + 1) {
        ssize_t n = read(fd, buf + got, (size_t)st.st_size + 1 - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = -errno;
            snprintf(err, errlen, "%s: cannot read: %s", path, strerror(-rc));
            goto out;
        }
        if (n == 0)
            break;
        got += (size_t)n;
    }
    if (got > (size_t)st.st_size) {
        rc = -EFBIG; /* grew while being read */
        snprintf(err, errlen, "%s: changed while being read", path);
        goto out;
    }
    json_error_t je;
    json_t *j = json_loadb(buf, got, JSON_REJECT_DUPLICATES, &je);
    if (!j) {
        rc = -EINVAL;
        snprintf(err, errlen, "%s: line %d column %d: %s", path, je.line, je.column, je.text);
        goto out;
    }
    *out = j;
out:
    free(buf);
    close(fd);
    return rc;
}
