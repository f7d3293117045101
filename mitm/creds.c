/*
 * Credentials table and placeholder swap (creds.h). Building reads the
 * `credentials` object of the corp and user config (checked here against
 * schemas/config.schema.json; mitm/config.c only lets the key through) and
 * the host environment, and draws one random placeholder per provider with a
 * key. Checking and swapping work on a parsed head and never allocate: the
 * proxy calls them per request from many threads on one read-only table.
 */
#include "creds.h"

#include "policy_doc.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PH_HEX 32 /* random part of a placeholder: 16 bytes as hex */
#define PH_MAX (sizeof(CREDS_PLACEHOLDER_PREFIX) + 16 + PH_HEX)
#define HOST_LEN_MAX 253
#define ENV_NAME_MAX 128

struct prov {
    bool have;
    char key[CREDS_KEY_MAX + 1];
    size_t key_len;
    char ph[PH_MAX + 1];
    size_t ph_len;
    char hosts[CREDS_HOSTS_MAX][HOST_LEN_MAX + 1];
    size_t nhosts;
};

#define ENV_PER_PROV 2

struct creds {
    struct prov p[CREDS_NPROVIDERS];
    char env_store[CREDS_NPROVIDERS * ENV_PER_PROV][ENV_NAME_MAX + PH_MAX + 2];
    const char *env[CREDS_NPROVIDERS * ENV_PER_PROV];
    size_t nenv;
};

static const char *const prov_names[CREDS_NPROVIDERS] = {"anthropic", "openai", "gemini"};
static const char *const default_hosts[CREDS_NPROVIDERS] = {"api.anthropic.com", "api.openai.com",
                                                            "generativelanguage.googleapis.com"};
/* Host variables a key is read from, first set one wins; the guest gets all of them. */
static const char *const env_names[CREDS_NPROVIDERS][ENV_PER_PROV] = {
    {"ANTHROPIC_API_KEY", NULL},
    {"OPENAI_API_KEY", "CODEX_API_KEY"},
    {"GEMINI_API_KEY", "GOOGLE_API_KEY"},
};

const char *creds_provider_name(enum creds_provider pv)
{
    return (unsigned)pv < CREDS_NPROVIDERS ? prov_names[pv] : "?";
}

/* ---- config ---- */

__attribute__((format(printf, 4, 5))) static int cerr(char *err, size_t errlen, const char *file,
                                                      const char *fmt, ...)
{
    char reason[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);
    if (err && errlen)
        snprintf(err, errlen, "%s: %s", file, reason);
    return -EINVAL;
}

/* Visible ASCII only: a key goes into a header line, so no space, CR, LF or NUL. */
static bool valid_key(const char *k, size_t len)
{
    if (len == 0 || len > CREDS_KEY_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)k[i] <= 0x20 || (unsigned char)k[i] >= 0x7f)
            return false;
    return true;
}

static bool valid_env_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > ENV_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool alpha = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
        if (!alpha && !(i > 0 && c >= '0' && c <= '9'))
            return false;
    }
    return true;
}

/* "name" or "*.name", labels of [a-z0-9_-], stored lower case. */
static bool valid_host(const char *s, char *out)
{
    size_t n = strlen(s);
    size_t i = 0;
    if (n == 0 || n > HOST_LEN_MAX)
        return false;
    if (n > 2 && s[0] == '*' && s[1] == '.')
        i = 2;
    bool label_start = true;
    for (size_t j = i; j < n; j++) {
        char c = s[j];
        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        if (c == '.') {
            if (label_start)
                return false;
            label_start = true;
        } else if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-') {
            label_start = false;
        } else {
            return false;
        }
        out[j] = c;
    }
    if (label_start)
        return false;
    memcpy(out, s, i);
    out[n] = '\0';
    return true;
}

/* One file's entry for a provider, checked. */
struct entry {
    bool present;
    bool disabled;
    const char *api_key;     /* borrowed from the document */
    const char *api_key_env; /* borrowed */
    const json_t *hosts;
};

static int parse_entry(const json_t *v, const char *file, const char *pname, struct entry *e,
                       char *err, size_t errlen)
{
    memset(e, 0, sizeof(*e));
    if (!json_is_object(v))
        return cerr(err, errlen, file, "$.credentials.%s: must be an object", pname);
    const char *k;
    json_t *f;
    json_object_foreach((json_t *)v, k, f)
    {
        if (strcmp(k, "api_key") == 0) {
            if (!json_is_string(f) || !valid_key(json_string_value(f), json_string_length(f)) ||
                strlen(json_string_value(f)) != json_string_length(f))
                return cerr(err, errlen, file,
                            "$.credentials.%s.api_key: must be 1-%d visible ASCII characters",
                            pname, CREDS_KEY_MAX);
            e->api_key = json_string_value(f);
        } else if (strcmp(k, "api_key_env") == 0) {
            if (!json_is_string(f) || !valid_env_name(json_string_value(f)))
                return cerr(err, errlen, file,
                            "$.credentials.%s.api_key_env: must be an environment variable name",
                            pname);
            e->api_key_env = json_string_value(f);
        } else if (strcmp(k, "hosts") == 0) {
            if (!json_is_array(f) || json_array_size(f) == 0 ||
                json_array_size(f) > CREDS_HOSTS_MAX)
                return cerr(err, errlen, file,
                            "$.credentials.%s.hosts: must be an array of 1-%d host names", pname,
                            CREDS_HOSTS_MAX);
            size_t i;
            json_t *h;
            json_array_foreach(f, i, h)
            {
                char tmp[HOST_LEN_MAX + 1];
                if (!json_is_string(h) || !valid_host(json_string_value(h), tmp))
                    return cerr(err, errlen, file,
                                "$.credentials.%s.hosts[%zu]: must be a host name or *.name", pname,
                                i);
            }
            e->hosts = f;
        } else if (strcmp(k, "disabled") == 0) {
            if (!json_is_boolean(f))
                return cerr(err, errlen, file, "$.credentials.%s.disabled: must be a boolean",
                            pname);
            e->disabled = json_is_true(f);
        } else {
            return cerr(err, errlen, file, "$.credentials.%s.%s: unknown key", pname, k);
        }
    }
    if (e->api_key && e->api_key_env)
        return cerr(err, errlen, file, "$.credentials.%s: give api_key or api_key_env, not both",
                    pname);
    e->present = true;
    return 0;
}

/* The entries of one document, one per provider (absent ones zeroed). */
static int parse_doc(const json_t *doc, const char *file, struct entry e[CREDS_NPROVIDERS],
                     char *err, size_t errlen)
{
    memset(e, 0, sizeof(struct entry) * CREDS_NPROVIDERS);
    const json_t *cr = doc && json_is_object(doc) ? json_object_get(doc, "credentials") : NULL;
    if (!cr)
        return 0;
    if (!json_is_object(cr))
        return cerr(err, errlen, file, "$.credentials: must be an object");
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)cr, k, v)
    {
        int pv = -1;
        for (int i = 0; i < CREDS_NPROVIDERS; i++)
            if (strcmp(k, prov_names[i]) == 0)
                pv = i;
        if (pv < 0)
            return cerr(err, errlen, file,
                        "$.credentials: unknown provider (one of anthropic, openai, gemini)");
        int rc = parse_entry(v, file, k, &e[pv], err, errlen);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static const char *std_getenv(void *opaque, const char *name)
{
    (void)opaque;
    return getenv(name);
}

static int make_placeholder(struct prov *p, enum creds_provider pv)
{
    unsigned char rnd[PH_HEX / 2];
    static const char hex[] = "0123456789abcdef";
    if (RAND_bytes(rnd, sizeof(rnd)) != 1)
        return -EIO;
    char h[PH_HEX + 1];
    for (size_t i = 0; i < sizeof(rnd); i++) {
        h[2 * i] = hex[rnd[i] >> 4];
        h[2 * i + 1] = hex[rnd[i] & 15];
    }
    h[PH_HEX] = '\0';
    int n = snprintf(p->ph, sizeof(p->ph), "%s%s-%s", CREDS_PLACEHOLDER_PREFIX, prov_names[pv], h);
    if (n < 0 || (size_t)n >= sizeof(p->ph))
        return -EOVERFLOW;
    p->ph_len = (size_t)n;
    return 0;
}

/* Fill one provider from the corp entry, the user entry and the environment. */
static int fill_provider(struct creds *c, enum creds_provider pv, const struct entry *ce,
                         const char *cname, const struct entry *ue, const char *uname,
                         creds_getenv_fn get, void *opaque, char *err, size_t errlen)
{
    struct prov *p = &c->p[pv];
    const char *pname = prov_names[pv];
    if (ce->disabled || (!ce->present && ue->disabled))
        return 0;
    /* Hosts: the corp file pins them when it names them. */
    const json_t *hosts = ce->hosts ? ce->hosts : ue->hosts;
    if (hosts) {
        size_t i;
        json_t *h;
        json_array_foreach((json_t *)hosts, i, h)
        {
            if (!valid_host(json_string_value(h), p->hosts[p->nhosts]))
                return -EINVAL; /* checked in parse_entry */
            p->nhosts++;
        }
    } else {
        snprintf(p->hosts[0], sizeof(p->hosts[0]), "%s", default_hosts[pv]);
        p->nhosts = 1;
    }
    /* The key: the corp entry's source, else the user's, else the standard variables. */
    const struct entry *src = (ce->api_key || ce->api_key_env) ? ce : ue;
    const char *file = src == ce ? cname : uname;
    const char *key = NULL;
    char where[200];
    if (src->api_key) {
        key = src->api_key;
        snprintf(where, sizeof(where), "%s: $.credentials.%s.api_key", file, pname);
    } else if (src->api_key_env) {
        key = get(opaque, src->api_key_env);
        snprintf(where, sizeof(where), "environment variable %s (named by %s)", src->api_key_env,
                 file);
        if (!key || !key[0]) {
            if (err && errlen)
                snprintf(err, errlen, "%s: $.credentials.%s.api_key_env: %s is not set", file,
                         pname, src->api_key_env);
            return -EINVAL;
        }
    } else {
        for (size_t i = 0; i < ENV_PER_PROV && env_names[pv][i] && !key; i++) {
            const char *v = get(opaque, env_names[pv][i]);
            if (v && v[0]) {
                key = v;
                snprintf(where, sizeof(where), "environment variable %s", env_names[pv][i]);
            }
        }
    }
    if (!key)
        return 0; /* no key: no placeholder */
    size_t klen = strlen(key);
    if (!valid_key(key, klen)) {
        if (err && errlen)
            snprintf(err, errlen, "%s: the %s API key must be 1-%d visible ASCII characters", where,
                     pname, CREDS_KEY_MAX);
        return -EINVAL;
    }
    memcpy(p->key, key, klen);
    p->key[klen] = '\0';
    p->key_len = klen;
    int rc = make_placeholder(p, pv);
    if (rc < 0) {
        if (err && errlen)
            snprintf(err, errlen, "cannot draw a random placeholder");
        return rc;
    }
    p->have = true;
    for (size_t i = 0; i < ENV_PER_PROV && env_names[pv][i]; i++) {
        /* Built apart: the placeholder and the slot are both inside *c. */
        char kv[sizeof(c->env_store[0])];
        snprintf(kv, sizeof(kv), "%s=%s", env_names[pv][i], p->ph);
        memcpy(c->env_store[c->nenv], kv, sizeof(kv));
        c->env[c->nenv] = c->env_store[c->nenv];
        c->nenv++;
    }
    return 0;
}

int creds_build(const json_t *corp, const char *corp_name, const json_t *user,
                const char *user_name, creds_getenv_fn get, void *opaque, struct creds **out,
                char *err, size_t errlen)
{
    int rc;
    struct entry ce[CREDS_NPROVIDERS], ue[CREDS_NPROVIDERS];
    const char *cname = corp_name ? corp_name : "corp";
    const char *uname = user_name ? user_name : "user";
    struct creds *c = NULL;
    rc = parse_doc(corp, cname, ce, err, errlen);
    if (rc == 0)
        rc = parse_doc(user, uname, ue, err, errlen);
    if (rc < 0)
        goto out;
    c = calloc(1, sizeof(*c));
    if (!c) {
        rc = -ENOMEM;
        if (err && errlen)
            snprintf(err, errlen, "out of memory");
        goto out;
    }
    for (int pv = 0; pv < CREDS_NPROVIDERS; pv++) {
        rc = fill_provider(c, (enum creds_provider)pv, &ce[pv], cname, &ue[pv], uname,
                           get ? get : std_getenv, opaque, err, errlen);
        if (rc < 0)
            goto out;
    }
    *out = c;
    c = NULL;
out:
    creds_destroy(c);
    return rc;
}

int creds_load(const char *corp_path, const char *user_path, struct creds **out, char *err,
               size_t errlen)
{
    json_t *corp = NULL, *user = NULL;
    int rc = 0;
    if (corp_path)
        rc = pdoc_read_file(corp_path, &corp, err, errlen);
    if (rc == 0 && user_path)
        rc = pdoc_read_file(user_path, &user, err, errlen);
    if (rc == 0)
        rc = creds_build(corp, corp_path, user, user_path, NULL, NULL, out, err, errlen);
    json_decref(corp);
    json_decref(user);
    return rc;
}

void creds_destroy(struct creds *c)
{
    if (!c)
        return;
    OPENSSL_cleanse(c, sizeof(*c));
    free(c);
}

const char *creds_placeholder(const struct creds *c, enum creds_provider pv)
{
    if (!c || (unsigned)pv >= CREDS_NPROVIDERS || !c->p[pv].have)
        return NULL;
    return c->p[pv].ph;
}

size_t creds_guest_env(const struct creds *c, const char *const **env)
{
    *env = c ? c->env : NULL;
    return c ? c->nenv : 0;
}

bool creds_host_allowed(const struct creds *c, enum creds_provider pv, const char *host)
{
    if (!c || (unsigned)pv >= CREDS_NPROVIDERS || !host)
        return false;
    const struct prov *p = &c->p[pv];
    size_t hl = strlen(host);
    for (size_t i = 0; i < p->nhosts; i++) {
        const char *h = p->hosts[i];
        if (h[0] == '*' && h[1] == '.') {
            size_t sl = strlen(h + 1); /* ".suffix" */
            if (hl > sl && strcasecmp(host + hl - sl, h + 1) == 0)
                return true;
        } else if (strcasecmp(host, h) == 0) {
            return true;
        }
    }
    return false;
}

/* ---- scanning and swapping ---- */

static bool contains(const char *p, size_t len, const char *needle, size_t nlen)
{
    return len >= nlen && memmem(p, len, needle, nlen) != NULL;
}

void creds_check(const struct creds *c, const struct http_head *h, struct http_str target,
                 const char *host, bool tls, struct creds_check *out)
{
    memset(out, 0, sizeof(*out));
    out->provider = -1;
    if (!c)
        return;
    for (int pv = 0; pv < CREDS_NPROVIDERS; pv++) {
        const struct prov *p = &c->p[pv];
        if (!p->have)
            continue;
        bool hit = target.p && contains(target.p, target.len, p->ph, p->ph_len);
        for (size_t i = 0; i < h->nheaders && !hit; i++)
            hit = contains(h->headers[i].value.p, h->headers[i].value.len, p->ph, p->ph_len) ||
                  contains(h->headers[i].name.p, h->headers[i].name.len, p->ph, p->ph_len);
        if (!hit)
            continue;
        out->found |= 1u << pv;
        bool allowed = creds_host_allowed(c, (enum creds_provider)pv, host);
        if (!out->block && (!allowed || !tls)) {
            out->block = true;
            out->provider = pv;
            snprintf(out->error, sizeof(out->error), "credential placeholder sent to %s%s",
                     host && host[0] ? host : "(unknown host)", allowed ? " over plain HTTP" : "");
        }
    }
}

/* The provider whose placeholder is exactly s[0..len) and may go to host, or -1. */
static int match_ph(const struct creds *c, const char *host, const char *s, size_t len)
{
    for (int pv = 0; pv < CREDS_NPROVIDERS; pv++) {
        const struct prov *p = &c->p[pv];
        if (p->have && len == p->ph_len && memcmp(s, p->ph, len) == 0 &&
            creds_host_allowed(c, (enum creds_provider)pv, host))
            return pv;
    }
    return -1;
}

struct arena {
    char *p;
    size_t cap, used;
};

/* Copy pieces into the arena; NULL when they do not fit. */
static const char *arena_put3(struct arena *a, const char *p1, size_t l1, const char *p2, size_t l2,
                              const char *p3, size_t l3)
{
    size_t n = l1 + l2 + l3;
    if (n > a->cap - a->used)
        return NULL;
    char *o = a->p + a->used;
    memcpy(o, p1, l1);
    memcpy(o + l1, p2, l2);
    memcpy(o + l1 + l2, p3, l3);
    a->used += n;
    return o;
}

struct swap {
    size_t idx; /* header index, or SIZE_MAX for the target */
    struct http_str v;
};

int creds_swap(const struct creds *c, const char *host, struct http_head *h,
               struct http_str *target, char *arena, size_t cap)
{
    if (!c)
        return 0;
    struct arena a = {.p = arena, .cap = cap};
    struct swap sw[HTTP_MAX_HEADERS + 1];
    size_t n = 0;
    for (size_t i = 0; i < h->nheaders; i++) {
        struct http_header *hd = &h->headers[i];
        const char *v = hd->value.p;
        size_t vl = hd->value.len;
        int pv = -1;
        size_t off = 0;
        if (http_str_eq(hd->name, "x-api-key") || http_str_eq(hd->name, "x-goog-api-key")) {
            pv = match_ph(c, host, v, vl);
        } else if (http_str_eq(hd->name, "authorization") && vl > 7 &&
                   strncasecmp(v, "bearer ", 7) == 0) {
            off = 7;
            while (off < vl && v[off] == ' ')
                off++;
            pv = match_ph(c, host, v + off, vl - off);
        }
        if (pv < 0)
            continue;
        const struct prov *p = &c->p[pv];
        const char *o = arena_put3(&a, v, off, p->key, p->key_len, "", 0);
        if (!o)
            return -EMSGSIZE;
        sw[n++] = (struct swap){i, {o, off + p->key_len}};
    }
    /* key=<placeholder> in the query. */
    const char *q = target && target->p ? memchr(target->p, '?', target->len) : NULL;
    if (q) {
        const char *t = target->p;
        size_t tl = target->len;
        size_t pos = (size_t)(q - t) + 1;
        size_t copied = 0; /* bytes of t already in the new target */
        const char *base = NULL;
        while (pos <= tl) {
            const char *amp = memchr(t + pos, '&', tl - pos);
            size_t end = amp ? (size_t)(amp - t) : tl;
            size_t plen = end - pos;
            int pv = -1;
            if (plen > 4 && memcmp(t + pos, "key=", 4) == 0)
                pv = match_ph(c, host, t + pos + 4, plen - 4);
            if (pv >= 0) {
                const struct prov *p = &c->p[pv];
                const char *o =
                    arena_put3(&a, t + copied, pos + 4 - copied, p->key, p->key_len, "", 0);
                if (!o)
                    return -EMSGSIZE;
                if (!base)
                    base = o;
                copied = end;
            }
            pos = end + 1;
        }
        if (base) {
            const char *o = arena_put3(&a, t + copied, tl - copied, "", 0, "", 0);
            if (!o)
                return -EMSGSIZE;
            sw[n++] = (struct swap){SIZE_MAX, {base, (size_t)(o + (tl - copied) - base)}};
        }
    }
    /* Everything fit: apply. */
    for (size_t i = 0; i < n; i++) {
        if (sw[i].idx == SIZE_MAX)
            *target = sw[i].v;
        else
            h->headers[sw[i].idx].value = sw[i].v;
    }
    return (int)n;
}

static bool put(char *out, size_t cap, size_t *len, const char *p, size_t n)
{
    if (n > cap - *len)
        return false;
    memcpy(out + *len, p, n);
    *len += n;
    return true;
}

int creds_rewrite_head(const struct creds *c, const char *host, bool tls, const char *p, size_t len,
                       char *out, size_t cap, size_t *outlen, struct creds_check *chk)
{
    int rc = 0;
    char *arena = NULL;
    size_t acap = 0;
    struct http_head *h = malloc(sizeof(*h));
    if (!h)
        return -ENOMEM;
    long hl = http_parse_head(p, len, true, h, NULL);
    if (hl <= 0) {
        rc = hl == -EMSGSIZE ? -EMSGSIZE : -EBADMSG;
        goto out;
    }
    struct http_str target = h->target;
    creds_check(c, h, target, host, tls, chk);
    if (chk->block)
        goto out;
    acap = (size_t)hl + (size_t)(HTTP_MAX_HEADERS + 1) * CREDS_KEY_MAX;
    arena = malloc(acap);
    if (!arena) {
        rc = -ENOMEM;
        goto out;
    }
    rc = creds_swap(c, host, h, &target, arena, acap);
    if (rc < 0)
        goto out;
    rc = 0;
    size_t o = 0;
    bool ok = put(out, cap, &o, h->method.p, h->method.len) && put(out, cap, &o, " ", 1) &&
              put(out, cap, &o, target.p, target.len) &&
              put(out, cap, &o, h->minor ? " HTTP/1.1\r\n" : " HTTP/1.0\r\n", 11);
    for (size_t i = 0; ok && i < h->nheaders; i++)
        ok = put(out, cap, &o, h->headers[i].name.p, h->headers[i].name.len) &&
             put(out, cap, &o, ": ", 2) &&
             put(out, cap, &o, h->headers[i].value.p, h->headers[i].value.len) &&
             put(out, cap, &o, "\r\n", 2);
    ok = ok && put(out, cap, &o, "\r\n", 2);
    if (!ok) {
        rc = -EMSGSIZE;
        goto out;
    }
    *outlen = o;
out:
    if (arena)
        OPENSSL_cleanse(arena, acap); /* it held real keys */
    free(arena);
    free(h);
    return rc;
}
