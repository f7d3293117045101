/*
 * A session's network services: wires the CA, the policy store, the DNS pool,
 * the price table and trace table for model calls, the MITM proxy, the DNS
 * service and the session database together, and
 * reloads the policy when a config file changes (inotify on the files'
 * directories, on the session's loop). See netsvc.h.
 */
#include "netsvc.h"

#include "creds.h"
#include "dns.h"
#include "log.h"
#include "policy.h"
#include "pricing_embed.h"
#include "proxy.h"
#include "telemetry.h"
#include "tls.h"
#include "trace.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/inotify.h>
#include <unistd.h>

#define NETSVC_CERT_CACHE 1024

struct netsvc {
    struct loop *loop;
    char corp_path[PATH_MAX];
    char user_path[PATH_MAX];
    char db_path[PATH_MAX];
    char http_ports[256];
    char preset[16]; /* the session's preset, "" = as configured */
    struct mitm_ca *ca;
    struct mitm_certs *certs;
    struct policy_store *store;
    struct dns_pool *pool;
    struct pricing *pricing;
    struct trace_table *traces;
    struct creds *creds; /* built once per session: the guest's placeholders must stay valid */
    struct telemetry *tel;
    struct sink sink;
    struct mitm_proxy *proxy;
    struct dns_service *dns;
    int ino_fd;
    int wd_user;
    int wd_corp;
};

static bool fits(int n, size_t cap)
{
    return n >= 0 && (size_t)n < cap;
}

/* The directory part and the last component of `path`. */
static bool split_path(const char *path, char *dir, size_t dirlen, const char **base)
{
    const char *slash = strrchr(path, '/');
    if (!slash) {
        *base = path;
        return fits(snprintf(dir, dirlen, "."), dirlen);
    }
    *base = slash + 1;
    size_t n = (size_t)(slash - path);
    if (n == 0)
        n = 1;
    if (n >= dirlen)
        return false;
    memcpy(dir, path, n);
    dir[n] = '\0';
    return true;
}

static int add_watch(struct netsvc *n, const char *path)
{
    char dir[PATH_MAX];
    const char *base;
    if (!split_path(path, dir, sizeof(dir), &base))
        return -1;
    return inotify_add_watch(n->ino_fd, dir,
                             IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_DELETE | IN_MOVED_FROM);
}

static bool event_names(const struct netsvc *n, const struct inotify_event *ev)
{
    if (!ev->len)
        return false;
    const char *b1 = strrchr(n->user_path, '/');
    const char *b2 = strrchr(n->corp_path, '/');
    b1 = b1 ? b1 + 1 : n->user_path;
    b2 = b2 ? b2 + 1 : n->corp_path;
    return (ev->wd == n->wd_user && strcmp(ev->name, b1) == 0) ||
           (ev->wd == n->wd_corp && strcmp(ev->name, b2) == 0);
}

static void on_inotify(void *opaque, uint32_t events)
{
    struct netsvc *n = opaque;
    (void)events;
    char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
    bool changed = false;
    for (;;) {
        ssize_t got = read(n->ino_fd, buf, sizeof(buf));
        if (got <= 0)
            break;
        for (ssize_t off = 0; off + (ssize_t)sizeof(struct inotify_event) <= got;) {
            const struct inotify_event *ev = (const struct inotify_event *)(buf + off);
            changed |= event_names(n, ev);
            off += (ssize_t)sizeof(*ev) + ev->len;
        }
    }
    if (!changed)
        return;
    char err[512];
    if (netsvc_reload(n, err, sizeof(err)) == 0)
        LOG_INFO("event=policy_reloaded user=\"%s\" corp=\"%s\"", n->user_path, n->corp_path);
    else
        LOG_WARN("event=policy_reload_refused reason=\"%s\" (previous policy stays)", err);
}

static void format_ports(struct netsvc *n, const struct policy *p)
{
    const unsigned *ports = NULL;
    size_t count = policy_http_ports(p, &ports);
    size_t off = 0;
    n->http_ports[0] = '\0';
    for (size_t i = 0; i < count; i++) {
        int w = snprintf(n->http_ports + off, sizeof(n->http_ports) - off, "%s%u", i ? "," : "",
                         ports[i]);
        if (!fits(w, sizeof(n->http_ports) - off))
            break;
        off += (size_t)w;
    }
}

int netsvc_start(struct loop *l, const struct netsvc_config *cfg, struct netsvc **out, char *err,
                 size_t errlen)
{
    int rc;
    struct policy *pol = NULL;
    char ca_dir[PATH_MAX];
    struct netsvc *n = calloc(1, sizeof(*n));
    if (!n) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    n->loop = l;
    n->ino_fd = -1;
    n->wd_user = n->wd_corp = -1;
    const char *corp = cfg->corp_path;
    if (!corp)
        corp = getenv("CAPSEM_CORP_CONFIG");
    if (!corp || !corp[0])
        corp = "/etc/capsem/corp.json";
    bool ok = fits(snprintf(n->corp_path, sizeof(n->corp_path), "%s", corp), PATH_MAX);
    if (cfg->user_path)
        ok &= fits(snprintf(n->user_path, sizeof(n->user_path), "%s", cfg->user_path), PATH_MAX);
    else
        ok &= fits(snprintf(n->user_path, sizeof(n->user_path), "%s/config.json", cfg->home),
                   PATH_MAX);
    ok &=
        fits(snprintf(n->db_path, sizeof(n->db_path), "%s/session.db", cfg->session_dir), PATH_MAX);
    ok &= fits(snprintf(ca_dir, sizeof(ca_dir), "%s/ca", cfg->home), PATH_MAX);
    if (cfg->preset &&
        !fits(snprintf(n->preset, sizeof(n->preset), "%s", cfg->preset), sizeof(n->preset))) {
        snprintf(err, errlen, "preset: must be one of \"high\", \"medium\", \"open\"");
        rc = -EINVAL;
        goto out;
    }
    if (!ok) {
        snprintf(err, errlen, "a path under %s is too long", cfg->home);
        rc = -ENAMETOOLONG;
        goto out;
    }

    rc = policy_load_preset(n->corp_path, n->user_path, n->preset[0] ? n->preset : NULL, &pol, err,
                            errlen);
    if (rc < 0)
        goto out;
    format_ports(n, pol);
    const char *extra_ca = policy_upstream_ca_file(pol);
    char extra_ca_copy[PATH_MAX] = "";
    if (extra_ca && !fits(snprintf(extra_ca_copy, sizeof(extra_ca_copy), "%s", extra_ca),
                          sizeof(extra_ca_copy))) {
        snprintf(err, errlen, "upstream CA file path is too long");
        rc = -ENAMETOOLONG;
        goto out;
    }
    rc = policy_store_create(pol, &n->store);
    if (rc < 0) {
        snprintf(err, errlen, "policy store: %s", strerror(-rc));
        goto out;
    }
    pol = NULL; /* the store holds it */

    rc = mitm_ca_open(ca_dir, &n->ca, err, errlen);
    if (rc < 0)
        goto out;
    rc = mitm_certs_create(n->ca, NETSVC_CERT_CACHE, &n->certs);
    if (rc < 0) {
        snprintf(err, errlen, "certificate cache: %s", strerror(-rc));
        goto out;
    }
    rc = dns_pool_create(&n->pool);
    if (rc < 0) {
        snprintf(err, errlen, "DNS pool: %s", strerror(-rc));
        goto out;
    }
    /* A bad $CAPSEM_HOME/pricing.json is logged and the built-in table used. */
    rc = pricing_embed_load(cfg->home, &n->pricing, NULL, 0);
    if (rc < 0) {
        snprintf(err, errlen, "price table: %s", strerror(-rc));
        goto out;
    }
    rc = trace_table_create(0, &n->traces);
    if (rc < 0) {
        snprintf(err, errlen, "trace table: %s", strerror(-rc));
        goto out;
    }
    /* API keys from capsem's environment and the config's credentials (mitm/creds.h). */
    rc = creds_load(n->corp_path, n->user_path, &n->creds, err, errlen);
    if (rc < 0)
        goto out;
    rc = telemetry_open(n->db_path, &n->tel, err, errlen);
    if (rc < 0)
        goto out;
    n->sink = telemetry_sink(n->tel);

    struct mitm_proxy_config pc = {
        .policy = n->store,
        .certs = n->certs,
        .pool = n->pool,
        .sink = n->sink,
        .upstream_ca_file = extra_ca_copy[0] ? extra_ca_copy : NULL,
        .pricing = n->pricing,
        .traces = n->traces,
        .creds = n->creds,
    };
    rc = mitm_proxy_create(&pc, &n->proxy, err, errlen);
    if (rc < 0)
        goto out;
    rc = dns_service_create(n->store, n->pool, &n->sink, &n->dns);
    if (rc < 0) {
        snprintf(err, errlen, "DNS service: %s", strerror(-rc));
        goto out;
    }

    /* Watching is best effort: a missing directory just means no reloads from it. */
    n->ino_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (n->ino_fd >= 0) {
        n->wd_user = add_watch(n, n->user_path);
        n->wd_corp = add_watch(n, n->corp_path);
        if (loop_add(l, n->ino_fd, EPOLLIN, on_inotify, n) < 0) {
            close(n->ino_fd);
            n->ino_fd = -1;
        }
    }
    *out = n;
    n = NULL;
    rc = 0;
out:
    policy_unref(pol);
    netsvc_stop(n);
    return rc;
}

const char *netsvc_ca_pem(const struct netsvc *n)
{
    return mitm_ca_pem(n->ca);
}

const char *netsvc_http_ports(const struct netsvc *n)
{
    return n->http_ports;
}

size_t netsvc_guest_env(const struct netsvc *n, const char *const **env)
{
    return creds_guest_env(n ? n->creds : NULL, env);
}

const char *netsvc_db_path(const struct netsvc *n)
{
    return n->db_path;
}

void netsvc_accept(struct netsvc *n, unsigned port, int fd)
{
    int rc;
    if (port == NETSVC_PORT_PROXY)
        rc = mitm_proxy_serve(n->proxy, fd);
    else if (port == NETSVC_PORT_DNS)
        rc = dns_service_serve(n->dns, fd);
    else {
        close(fd);
        rc = -EPROTONOSUPPORT;
    }
    if (rc < 0)
        LOG_WARN("event=net_accept_failed port=%u err=\"%s\"", port, strerror(-rc));
}

int netsvc_reload(struct netsvc *n, char *err, size_t errlen)
{
    struct policy *pol = NULL;
    int rc = policy_load_preset(n->corp_path, n->user_path, n->preset[0] ? n->preset : NULL, &pol,
                                err, errlen);
    if (rc < 0)
        return rc;
    policy_store_set(n->store, pol);
    return 0;
}

int netsvc_set_preset(struct netsvc *n, const char *preset, char *err, size_t errlen)
{
    struct policy *pol = NULL;
    if (preset && strlen(preset) >= sizeof(n->preset)) {
        snprintf(err, errlen, "preset: must be one of \"high\", \"medium\", \"open\"");
        return -EINVAL;
    }
    int rc = policy_load_preset(n->corp_path, n->user_path, preset, &pol, err, errlen);
    if (rc < 0)
        return rc;
    snprintf(n->preset, sizeof(n->preset), "%s", preset ? preset : "");
    policy_store_set(n->store, pol);
    return 0;
}

bool netsvc_corp_locked(char *path, size_t len)
{
    const char *c = getenv("CAPSEM_CORP_CONFIG");
    snprintf(path, len, "%s", c && c[0] ? c : "/etc/capsem/corp.json");
    json_t *j = json_load_file(path, JSON_REJECT_DUPLICATES, NULL);
    bool locked = json_is_true(json_object_get(json_object_get(j, "network"), "locked"));
    json_decref(j);
    return locked;
}

int netsvc_flush(struct netsvc *n)
{
    mitm_proxy_drain(n->proxy); /* model calls still being finished reach the writer first */
    return telemetry_flush(n->tel);
}

void netsvc_stop(struct netsvc *n)
{
    if (!n)
        return;
    if (n->ino_fd >= 0) {
        loop_del(n->loop, n->ino_fd);
        close(n->ino_fd);
    }
    mitm_proxy_destroy(n->proxy); /* drains its queued model calls into tel first */
    dns_service_destroy(n->dns);
    telemetry_close(n->tel);
    trace_table_destroy(n->traces);
    pricing_destroy(n->pricing);
    creds_destroy(n->creds); /* after the proxy that borrowed it */
    dns_pool_free(n->pool);
    mitm_certs_free(n->certs);
    mitm_ca_free(n->ca);
    policy_store_destroy(n->store);
    free(n);
}
