/*
 * The policy engine: builds one immutable rule list from the corp and user
 * config documents (validated by config.c against schemas/config.schema.json)
 * plus the presets they name, and decides HTTP requests and DNS names by the
 * first rule that matches. The precedence, the presets and the corp lock are
 * described in docs/policy.md; this file is their one implementation.
 */
#include "policy.h"

#include "log.h"
#include "policy_doc.h"

#include <errno.h>
#include <fnmatch.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct policy {
    atomic_uint refs;
    struct pdoc_rule *rules; /* corp, user, corp preset, user preset */
    size_t nrules;
    enum decision def;
    char *ca_file;
    struct pdoc_resolve *resolves;
    size_t nresolves;
    unsigned *ports;
    size_t nports;
};

/* The presets' hosts; "medium" is "high" plus the developer hosts. */
static const char *const high_hosts[] = {
    "api.anthropic.com",
    "api.openai.com",
    "generativelanguage.googleapis.com",
};
static const char *const medium_hosts[] = {
    "github.com",
    "*.github.com",
    "*.githubusercontent.com",
    "registry.npmjs.org",
    "registry.yarnpkg.com",
    "pypi.org",
    "files.pythonhosted.org",
    "crates.io",
    "index.crates.io",
    "static.crates.io",
    "proxy.golang.org",
    "sum.golang.org",
    "deb.debian.org",
    "security.debian.org",
    "gitlab.com",
};

static const char *const preset_names[] = {"high", "medium", "open"};

const char *policy_preset_name(enum policy_preset p)
{
    return p >= 0 && (size_t)p < sizeof(preset_names) / sizeof(preset_names[0]) ? preset_names[p]
                                                                                : "none";
}

static void policy_free(struct policy *p)
{
    for (size_t i = 0; i < p->nrules; i++)
        pdoc_rule_fini(&p->rules[i]);
    free(p->rules);
    for (size_t i = 0; i < p->nresolves; i++) {
        free(p->resolves[i].host);
        free(p->resolves[i].target);
    }
    free(p->resolves);
    free(p->ca_file);
    free(p->ports);
    free(p);
}

/* Move rule *src into the policy's list (src is left empty). */
static void take_rule(struct policy *p, struct pdoc_rule *src)
{
    p->rules[p->nrules++] = *src;
    memset(src, 0, sizeof(*src));
}

/* Append the preset's rules, each with the id "<preset>:<domain>". */
static int add_preset(struct policy *p, enum policy_preset preset)
{
    const char *const *lists[2] = {high_hosts, medium_hosts};
    size_t counts[2] = {sizeof(high_hosts) / sizeof(high_hosts[0]),
                        sizeof(medium_hosts) / sizeof(medium_hosts[0])};
    size_t nlists = preset == PRESET_HIGH ? 1 : preset == PRESET_MEDIUM ? 2 : 0;
    for (size_t l = 0; l < nlists; l++) {
        for (size_t i = 0; i < counts[l]; i++) {
            struct pdoc_rule r = {.action = DECISION_ALLOW};
            char id[PDOC_MAX_DOMAIN + 16];
            snprintf(id, sizeof(id), "%s:%s", policy_preset_name(preset), lists[l][i]);
            r.id = strdup(id);
            r.domain = strdup(lists[l][i]);
            if (!r.id || !r.domain) {
                pdoc_rule_fini(&r);
                return -ENOMEM;
            }
            take_rule(p, &r);
        }
    }
    return 0;
}

static size_t preset_size(enum policy_preset preset)
{
    size_t high = sizeof(high_hosts) / sizeof(high_hosts[0]);
    if (preset == PRESET_HIGH)
        return high;
    if (preset == PRESET_MEDIUM)
        return high + sizeof(medium_hosts) / sizeof(medium_hosts[0]);
    return 0;
}

static int preset_default(enum policy_preset preset)
{
    switch (preset) {
    case PRESET_HIGH:
    case PRESET_MEDIUM:
        return DECISION_BLOCK;
    case PRESET_OPEN:
        return DECISION_LOG;
    case PRESET_NONE:
        break;
    }
    return -1;
}

static void add_port(struct policy *p, unsigned port)
{
    for (size_t i = 0; i < p->nports; i++)
        if (p->ports[i] == port)
            return;
    p->ports[p->nports++] = port;
}

static int move_resolves(struct policy *p, struct pdoc *d)
{
    for (size_t i = 0; i < d->nresolves; i++) {
        p->resolves[p->nresolves++] = d->resolves[i];
        memset(&d->resolves[i], 0, sizeof(d->resolves[i]));
    }
    d->nresolves = 0;
    return 0;
}

/*
 * Combine the two validated documents. Corp rules come first, then user
 * rules, then the corp preset's, then the user preset's; the default is the
 * corp one, else the user's, else the corp preset's, else the user preset's,
 * else block. With corp "locked", the user may only tighten: only the user's
 * block rules and a "block" default are kept; its allow/log rules, other
 * defaults, preset and upstream settings are dropped (with a warning).
 */
static int combine(struct pdoc *corp, struct pdoc *user, struct policy **out)
{
    int rc = 0;
    struct policy *p = calloc(1, sizeof(*p));
    if (!p)
        return -ENOMEM;
    atomic_init(&p->refs, 1);
    bool locked = corp->locked;
    enum policy_preset up = locked ? PRESET_NONE : user->preset;
    if (up == corp->preset)
        up = PRESET_NONE; /* the same preset twice adds nothing */
    size_t cap = corp->nrules + user->nrules + preset_size(corp->preset) + preset_size(up);
    p->rules = calloc(cap ? cap : 1, sizeof(*p->rules));
    p->ports = calloc(corp->nports + user->nports + 1, sizeof(*p->ports));
    p->resolves = calloc(corp->nresolves + user->nresolves + 1, sizeof(*p->resolves));
    if (!p->rules || !p->ports || !p->resolves) {
        rc = -ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < corp->nrules; i++)
        take_rule(p, &corp->rules[i]);
    for (size_t i = 0; i < user->nrules; i++) {
        if (locked && user->rules[i].action != DECISION_BLOCK) {
            LOG_WARN("policy: ignoring_user_rule id=%s reason=corp_locked", user->rules[i].id);
            continue;
        }
        take_rule(p, &user->rules[i]);
    }
    rc = add_preset(p, corp->preset);
    if (rc == 0)
        rc = add_preset(p, up);
    if (rc < 0)
        goto out;
    if (locked && user->preset != PRESET_NONE)
        LOG_WARN("policy: ignoring_user_preset preset=%s reason=corp_locked",
                 policy_preset_name(user->preset));

    int def = corp->def;
    if (def < 0 && user->def >= 0) {
        if (!locked || user->def == DECISION_BLOCK)
            def = user->def;
        else
            LOG_WARN("policy: ignoring_user_default default=%s reason=corp_locked",
                     decision_name((enum decision)user->def));
    }
    if (def < 0)
        def = preset_default(corp->preset);
    if (def < 0)
        def = preset_default(up);
    p->def = def < 0 ? DECISION_BLOCK : (enum decision)def;

    for (size_t i = 0; i < corp->nports; i++)
        add_port(p, corp->ports[i]);
    for (size_t i = 0; i < user->nports; i++)
        add_port(p, user->ports[i]);

    move_resolves(p, corp);
    if (corp->ca_file) {
        p->ca_file = corp->ca_file;
        corp->ca_file = NULL;
    }
    if (!locked) {
        move_resolves(p, user);
        if (!p->ca_file && user->ca_file) {
            p->ca_file = user->ca_file;
            user->ca_file = NULL;
        }
    } else if (user->nresolves || user->ca_file) {
        LOG_WARN("policy: ignoring_user_upstream reason=corp_locked");
    }
out:
    if (rc < 0) {
        policy_free(p);
        return rc;
    }
    *out = p;
    return 0;
}

/* The preset named `name`, or PRESET_NONE when it names none. */
static enum policy_preset preset_by_name(const char *name)
{
    for (size_t i = 0; i < sizeof(preset_names) / sizeof(preset_names[0]); i++)
        if (!strcmp(name, preset_names[i]))
            return (enum policy_preset)i;
    return PRESET_NONE;
}

int policy_build(const json_t *corp, const char *corp_name, const json_t *user,
                 const char *user_name, struct policy **out, char *err, size_t errlen)
{
    return policy_build_preset(corp, corp_name, user, user_name, NULL, out, err, errlen);
}

int policy_build_preset(const json_t *corp, const char *corp_name, const json_t *user,
                        const char *user_name, const char *preset, struct policy **out, char *err,
                        size_t errlen)
{
    struct pdoc c, u;
    pdoc_init(&c);
    pdoc_init(&u);
    struct policy *p = NULL;
    int rc = 0;
    if (err && errlen)
        err[0] = '\0';
    enum policy_preset ov = preset ? preset_by_name(preset) : PRESET_NONE;
    if (preset && ov == PRESET_NONE) {
        if (err && errlen)
            snprintf(err, errlen, "preset: must be one of \"high\", \"medium\", \"open\"");
        return -EINVAL;
    }
    if (corp) {
        rc = pdoc_parse(corp, corp_name ? corp_name : "corp", true, &c, err, errlen);
        if (rc < 0)
            goto out;
    }
    if (user) {
        rc = pdoc_parse(user, user_name ? user_name : "user", false, &u, err, errlen);
        if (rc < 0)
            goto out;
    }
    if (ov != PRESET_NONE)
        u.preset = ov; /* in place of the user's own; the lock still applies in combine */
    rc = combine(&c, &u, &p);
    if (rc == -ENOMEM && err && errlen)
        snprintf(err, errlen, "policy: out of memory");
out:
    pdoc_fini(&c);
    pdoc_fini(&u);
    if (rc == 0)
        *out = p;
    return rc;
}

int policy_load(const char *corp_path, const char *user_path, struct policy **out, char *err,
                size_t errlen)
{
    return policy_load_preset(corp_path, user_path, NULL, out, err, errlen);
}

int policy_load_preset(const char *corp_path, const char *user_path, const char *preset,
                       struct policy **out, char *err, size_t errlen)
{
    json_t *corp = NULL, *user = NULL;
    int rc = 0;
    if (err && errlen)
        err[0] = '\0';
    if (corp_path) {
        rc = pdoc_read_file(corp_path, &corp, err, errlen);
        if (rc < 0)
            goto out;
    }
    if (user_path) {
        rc = pdoc_read_file(user_path, &user, err, errlen);
        if (rc < 0)
            goto out;
    }
    if (!corp && !user) {
        /* Nothing configured: the agents reach their model APIs and nothing else. */
        user = json_pack("{s:{s:s}}", "network", "preset", "high");
        if (!user) {
            rc = -ENOMEM;
            goto out;
        }
        user_path = "(built-in default)";
    }
    rc = policy_build_preset(corp, corp_path, user, user_path, preset, out, err, errlen);
out:
    json_decref(corp);
    json_decref(user);
    return rc;
}

struct policy *policy_ref(struct policy *p)
{
    if (p)
        atomic_fetch_add(&p->refs, 1);
    return p;
}

void policy_unref(struct policy *p)
{
    if (p && atomic_fetch_sub(&p->refs, 1) == 1)
        policy_free(p);
}

/* `host` of length hlen (no trailing dot) against "*", "*.x.com" or "x.com". */
static bool domain_match(const char *pat, const char *host, size_t hlen)
{
    if (pat[0] == '*' && pat[1] == '\0')
        return true;
    if (pat[0] == '*') {
        const char *suffix = pat + 1; /* ".x.com": at least one label must precede it */
        size_t sl = strlen(suffix);
        return hlen > sl && strncasecmp(host + hlen - sl, suffix, sl) == 0;
    }
    return strlen(pat) == hlen && strncasecmp(pat, host, hlen) == 0;
}

static bool method_match(const struct pdoc_rule *r, const char *method)
{
    if (r->nmethods == 0)
        return true;
    if (!method)
        return false;
    for (size_t i = 0; i < r->nmethods; i++)
        if (strcasecmp(r->methods[i], method) == 0)
            return true;
    return false;
}

static bool path_match(const struct pdoc_rule *r, const char *path)
{
    if (r->npaths == 0)
        return true;
    if (!path)
        return false;
    for (size_t i = 0; i < r->npaths; i++) {
        const struct pdoc_path *pp = &r->paths[i];
        if (pp->glob ? fnmatch(pp->pat, path, 0) == 0
                     : strncmp(path, pp->pat, strlen(pp->pat)) == 0)
            return true;
    }
    return false;
}

/* Length of `host` without one trailing dot ("a.com." names the same host). */
static size_t host_len(const char *host)
{
    size_t n = host ? strlen(host) : 0;
    if (n && host[n - 1] == '.')
        n--;
    return n;
}

struct policy_result policy_decide_http(const struct policy *p, const char *host,
                                        const char *method, const char *path)
{
    struct policy_result res = {.decision = DECISION_BLOCK, .rule = NULL};
    if (!p)
        return res;
    const char *h = host ? host : "";
    size_t hlen = host_len(h);
    for (size_t i = 0; i < p->nrules; i++) {
        const struct pdoc_rule *r = &p->rules[i];
        if (domain_match(r->domain, h, hlen) && method_match(r, method) && path_match(r, path)) {
            res.decision = r->action;
            res.rule = r->id;
            return res;
        }
    }
    res.decision = p->def;
    return res;
}

/*
 * A name resolves when some request to it could be allowed: the first rule
 * matching the name decides if it has no method/path condition; a
 * conditional allow/log rule met first lets the name resolve (HTTP then
 * decides each request); a conditional block rule is passed over.
 */
struct policy_result policy_decide_dns(const struct policy *p, const char *name)
{
    struct policy_result res = {.decision = DECISION_BLOCK, .rule = NULL};
    if (!p)
        return res;
    const char *h = name ? name : "";
    size_t hlen = host_len(h);
    for (size_t i = 0; i < p->nrules; i++) {
        const struct pdoc_rule *r = &p->rules[i];
        if (!domain_match(r->domain, h, hlen))
            continue;
        bool conditional = r->nmethods || r->npaths;
        if (conditional && r->action == DECISION_BLOCK)
            continue;
        res.decision = r->action;
        res.rule = r->id;
        return res;
    }
    res.decision = p->def;
    return res;
}

const char *policy_upstream_ca_file(const struct policy *p)
{
    return p ? p->ca_file : NULL;
}

int policy_resolve_override(const struct policy *p, const char *host, unsigned port, char *out,
                            size_t outlen)
{
    if (!p || !host || !out)
        return 0;
    size_t hlen = host_len(host);
    for (size_t i = 0; i < p->nresolves; i++) {
        const struct pdoc_resolve *r = &p->resolves[i];
        if (r->port != port || strlen(r->host) != hlen || strncasecmp(r->host, host, hlen) != 0)
            continue;
        int n = snprintf(out, outlen, "%s", r->target);
        return n >= 0 && (size_t)n < outlen ? 1 : 0;
    }
    return 0;
}

size_t policy_http_ports(const struct policy *p, const unsigned **ports)
{
    if (ports)
        *ports = p ? p->ports : NULL;
    return p ? p->nports : 0;
}

struct policy_store {
    pthread_mutex_t lock;
    struct policy *cur; /* guarded by lock */
};

int policy_store_create(struct policy *initial, struct policy_store **out)
{
    struct policy_store *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    int rc = pthread_mutex_init(&s->lock, NULL);
    if (rc != 0) {
        free(s);
        return -rc;
    }
    s->cur = initial; /* the caller's reference, taken on success only */
    *out = s;
    return 0;
}

void policy_store_destroy(struct policy_store *s)
{
    if (!s)
        return;
    policy_unref(s->cur);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

struct policy *policy_store_get(struct policy_store *s)
{
    if (!s)
        return NULL;
    pthread_mutex_lock(&s->lock);
    struct policy *p = policy_ref(s->cur);
    pthread_mutex_unlock(&s->lock);
    return p;
}

void policy_store_set(struct policy_store *s, struct policy *p)
{
    if (!s) {
        policy_unref(p);
        return;
    }
    pthread_mutex_lock(&s->lock);
    struct policy *old = s->cur;
    s->cur = p;
    pthread_mutex_unlock(&s->lock);
    policy_unref(old); /* outside the lock: freeing may take a while */
}
