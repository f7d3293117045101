/*
 * Handlers for a session's telemetry (lists, stats, read-only SQL) and for
 * the user's policy file (api_telemetry.h). They parse the request, find
 * the session directory under $CAPSEM_HOME/sessions and leave the SQL to
 * tquery.c; the policy is checked with the policy engine itself
 * (policy_build) before it is written, atomically, where netsvc watches it.
 */
#include "api_telemetry.h"

#include "log.h"
#include "policy.h"
#include "session_dir.h"
#include "tquery.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SESSIONS_PREFIX "/api/v1/sessions/"

int api_capsem_home(char *buf, size_t len)
{
    const char *env = getenv("CAPSEM_HOME");
    const char *home = getenv("HOME");
    int n = env && env[0] ? snprintf(buf, len, "%s", env)
                          : snprintf(buf, len, "%s/.capsem", home && home[0] ? home : "/tmp");
    return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

/*
 * The session directory for the {id} in `path` (and the rest of the path
 * after it in *rest). 0, or an error already in resp (400 bad id, 404 no
 * such session): then returns the status.
 */
static int session_dir(const char *path, char *dir, size_t dirlen, const char **rest,
                       struct api_resp *resp)
{
    char id[SESSION_NAME_MAX + 2], home[4096];
    const char *p = path + strlen(SESSIONS_PREFIX);
    const char *slash = strchr(p, '/');
    size_t n = slash ? (size_t)(slash - p) : strlen(p);
    if (n == 0 || n > SESSION_NAME_MAX) {
        api_error(resp, 400, "bad session id");
        return 400;
    }
    memcpy(id, p, n);
    id[n] = '\0';
    if (!session_name_ok(id)) {
        api_error(resp, 400, "bad session id");
        return 400;
    }
    if (api_capsem_home(home, sizeof(home)) < 0) {
        api_error(resp, 500, "CAPSEM_HOME too long");
        return 500;
    }
    int k = snprintf(dir, dirlen, "%s/sessions/%s", home, id);
    struct stat st;
    if (k < 0 || (size_t)k >= dirlen || stat(dir, &st) < 0 || !S_ISDIR(st.st_mode)) {
        api_error(resp, 404, "no such session");
        return 404;
    }
    if (rest)
        *rest = slash ? slash + 1 : "";
    return 0;
}

static const char *arg(const struct api_req *req, const char *name)
{
    const char *v = req->arg ? req->arg(req->arg_ctx, name) : NULL;
    return v && v[0] ? v : NULL;
}

/* A signed decimal integer argument. 0, 1 when absent, -EINVAL when bad. */
static int arg_i64(const struct api_req *req, const char *name, int64_t *out)
{
    const char *v = arg(req, name);
    if (!v)
        return 1;
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || *end)
        return -EINVAL;
    *out = x;
    return 0;
}

int api_get_session_events(struct api *api, const struct api_req *req, struct api_resp *resp)
{
    (void)api;
    char dir[4400], err[512] = "";
    const char *rest;
    if (session_dir(req->path, dir, sizeof(dir), &rest, resp))
        return 0;
    enum tq_kind kind;
    if (tq_kind_parse(rest, &kind) < 0)
        return api_error(resp, 404, "no such route");
    struct tq_filter f = {0};
    int rc;
    if ((rc = arg_i64(req, "from", &f.from_us)) < 0)
        return api_error(resp, 400, "from must be microseconds since the epoch");
    f.has_from = rc == 0;
    if ((rc = arg_i64(req, "to", &f.to_us)) < 0)
        return api_error(resp, 400, "to must be microseconds since the epoch");
    f.has_to = rc == 0;
    int64_t lim = 0;
    if ((rc = arg_i64(req, "limit", &lim)) < 0 || (rc == 0 && (lim < 1 || lim > TQ_LIMIT_MAX)))
        return api_error(resp, 400, "limit must be an integer from 1 to 1000");
    f.limit = (unsigned)lim;
    const char *sort = arg(req, "sort");
    if (sort && strcmp(sort, "asc") && strcmp(sort, "desc"))
        return api_error(resp, 400, "sort must be asc or desc");
    f.desc = sort && !strcmp(sort, "desc");
    f.host = arg(req, "host");
    f.decision = arg(req, "decision");
    f.provider = arg(req, "provider");
    f.model = arg(req, "model");
    f.q = arg(req, "q");
    f.cursor = arg(req, "cursor");
    json_t *page = NULL;
    rc = tq_list(dir, kind, &f, &page, err, sizeof(err));
    if (rc == -EINVAL)
        return api_error(resp, 400, err);
    if (rc < 0) {
        LOG_WARN("event=telemetry_list_failed rc=%d reason=\"%s\"", rc, err);
        return api_error(resp, 500, err[0] ? err : "cannot read the session");
    }
    return api_json(resp, 200, page);
}

int api_get_session_stats(struct api *api, const struct api_req *req, struct api_resp *resp)
{
    (void)api;
    char dir[4400], err[512] = "";
    if (session_dir(req->path, dir, sizeof(dir), NULL, resp))
        return 0;
    json_t *j = NULL;
    if (tq_stats(dir, &j, err, sizeof(err)) < 0)
        return api_error(resp, 500, err[0] ? err : "cannot read the session");
    return api_json(resp, 200, j);
}

int api_post_session_query(struct api *api, const struct api_req *req, struct api_resp *resp)
{
    (void)api;
    char dir[4400], err[512] = "";
    if (session_dir(req->path, dir, sizeof(dir), NULL, resp))
        return 0;
    json_t *body = json_loadb(req->body ? req->body : "", req->body_len, 0, NULL);
    const char *sql = json_string_value(json_object_get(body, "sql"));
    if (!sql || !sql[0]) {
        json_decref(body);
        return api_error(resp, 400, "body must be {\"sql\": \"SELECT ...\"}");
    }
    json_t *j = NULL;
    int rc = tq_sql(dir, sql, 0, 0, &j, err, sizeof(err));
    json_decref(body);
    if (rc == -EINVAL)
        return api_error(resp, 400, err);
    if (rc == -ENOENT)
        return api_error(resp, 404, err);
    if (rc < 0)
        return api_error(resp, 500, err[0] ? err : "cannot read the session");
    return api_json(resp, 200, j);
}

/* ---- policy ---- */

struct policy_paths {
    char user[4200];
    char corp[4200];
};

static int policy_paths(struct policy_paths *p)
{
    char home[4096];
    if (api_capsem_home(home, sizeof(home)) < 0)
        return -ENAMETOOLONG;
    const char *corp = getenv("CAPSEM_CORP_CONFIG");
    snprintf(p->user, sizeof(p->user), "%s/config.json", home);
    snprintf(p->corp, sizeof(p->corp), "%s", corp && corp[0] ? corp : "/etc/capsem/corp.json");
    return 0;
}

/* Read a JSON file: 0 with *out (NULL when missing), or -EINVAL with the reason. */
static int read_json(const char *path, json_t **out, char *err, size_t errlen)
{
    json_error_t je;
    *out = NULL;
    if (access(path, F_OK) < 0 && errno == ENOENT)
        return 0;
    *out = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (!*out) {
        snprintf(err, errlen, "%.300s: line %d column %d: %.200s", path, je.line, je.column,
                 je.text);
        return -EINVAL;
    }
    return 0;
}

#define REDACTED "(redacted)"

/* Replace every credentials.*.api_key in `cfg` with REDACTED (keys never leave the host). */
static void redact_keys(json_t *cfg)
{
    const char *prov;
    json_t *entry;
    json_object_foreach(json_object_get(cfg, "credentials"), prov, entry)
    {
        if (json_is_string(json_object_get(entry, "api_key")))
            json_object_set_new(entry, "api_key", json_string(REDACTED));
    }
}

/* Put back the current file's api_key wherever `cfg` still holds REDACTED. */
static void unredact_keys(json_t *cfg, const json_t *current)
{
    const char *prov;
    json_t *entry;
    json_object_foreach(json_object_get(cfg, "credentials"), prov, entry)
    {
        const char *k = json_string_value(json_object_get(entry, "api_key"));
        if (!k || strcmp(k, REDACTED))
            continue;
        json_t *old = json_object_get(
            json_object_get(json_object_get(current, "credentials"), prov), "api_key");
        if (json_is_string(old))
            json_object_set(entry, "api_key", old);
        else
            json_object_del(entry, "api_key");
    }
}

static bool corp_locked(const json_t *corp)
{
    return json_is_true(json_object_get(json_object_get(corp, "network"), "locked"));
}

int api_get_policy(struct api *api, const struct api_req *req, struct api_resp *resp)
{
    (void)api;
    (void)req;
    struct policy_paths pp;
    char err[600] = "";
    json_t *user = NULL, *corp = NULL;
    if (policy_paths(&pp) < 0)
        return api_error(resp, 500, "CAPSEM_HOME too long");
    if (read_json(pp.user, &user, err, sizeof(err)) < 0 ||
        read_json(pp.corp, &corp, err, sizeof(err)) < 0) {
        json_decref(user);
        return api_error(resp, 500, err);
    }
    redact_keys(user);
    redact_keys(corp);
    json_t *j = json_pack("{s:s,s:o,s:b,s:O*}", "path", pp.user, "config",
                          user ? user : json_object(), "locked", corp_locked(corp), "corp", corp);
    json_decref(corp);
    return api_json(resp, 200, j);
}

/* Write `text` to `path` atomically (a temporary file in the same directory, fsync, rename). */
static int write_atomic(const char *path, const char *text)
{
    char tmp[4300];
    snprintf(tmp, sizeof(tmp), "%s.XXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd < 0)
        return -errno;
    int rc = 0;
    size_t len = strlen(text), off = 0;
    while (off < len) {
        ssize_t w = write(fd, text + off, len - off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            rc = -errno;
            goto out;
        }
        off += (size_t)w;
    }
    if (fchmod(fd, 0600) < 0 || fsync(fd) < 0) {
        rc = -errno;
        goto out;
    }
    if (rename(tmp, path) < 0)
        rc = -errno;
out:
    close(fd);
    if (rc < 0)
        unlink(tmp);
    return rc;
}

int api_put_policy(struct api *api, const struct api_req *req, struct api_resp *resp)
{
    (void)api;
    struct policy_paths pp;
    char err[600] = "", home[4096];
    json_t *corp = NULL, *user = NULL;
    struct policy *p = NULL;
    int rc = 0;
    if (policy_paths(&pp) < 0 || api_capsem_home(home, sizeof(home)) < 0)
        return api_error(resp, 500, "CAPSEM_HOME too long");
    if (req->body_len == 0)
        return api_error(resp, 400, "body must be the config.json object");
    if (read_json(pp.corp, &corp, err, sizeof(err)) < 0) {
        rc = api_error(resp, 500, err);
        goto out;
    }
    if (corp_locked(corp)) {
        snprintf(err, sizeof(err), "the policy is locked by %.400s", pp.corp);
        rc = api_error(resp, 403, err);
        goto out;
    }
    user = json_loadb(req->body, req->body_len, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(user)) {
        rc = api_error(resp, 400, "body must be the config.json object");
        goto out;
    }
    json_t *current = NULL;
    if (read_json(pp.user, &current, err, sizeof(err)) == 0) {
        unredact_keys(user, current);
        json_decref(current);
    }
    err[0] = '\0';
    int brc = policy_build(corp, pp.corp, user, pp.user, &p, err, sizeof(err));
    if (brc == -EINVAL) {
        rc = api_error(resp, 400, err);
        goto out;
    }
    if (brc < 0) {
        rc = api_error(resp, 500, err[0] ? err : "cannot build the policy");
        goto out;
    }
    char *text = json_dumps(user, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    if (!text) {
        rc = api_error(resp, 500, "out of memory");
        goto out;
    }
    int wrc = session_mkdir_p(home, 0700);
    if (wrc == 0)
        wrc = write_atomic(pp.user, text);
    free(text);
    if (wrc < 0) {
        LOG_WARN("event=policy_write_failed errno=%d", -wrc);
        snprintf(err, sizeof(err), "cannot write %.400s: %s", pp.user, strerror(-wrc));
        rc = api_error(resp, 500, err);
        goto out;
    }
    LOG_INFO("event=policy_written path=\"%s\"", pp.user);
    redact_keys(user);
    rc = api_json(resp, 200,
                  json_pack("{s:s,s:O,s:b}", "path", pp.user, "config", user, "locked", false));
out:
    policy_unref(p);
    json_decref(user);
    json_decref(corp);
    return rc;
}
