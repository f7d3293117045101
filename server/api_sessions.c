/*
 * The session routes (/api/v1/sessions...): body checks that name the bad
 * field, then calls into the session manager (sessions.h). The handlers run
 * on libmicrohttpd's thread; create, list, get and stop answer at once, exec
 * waits for the command (bounded by its timeout).
 */
#include "sessions.h"

#include "api.h"
#include "cli_run.h"
#include "log.h"
#include "netsvc.h"

#include <errno.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PREFIX "/api/v1/sessions/"
#define ARGV_MAX 1024
#define ENV_MAX 256

static _Atomic(struct sessions *) attached;

void api_sessions_attach(struct sessions *s)
{
    atomic_store(&attached, s);
}

/* The {id} segment of the path into id[]; false when it is not a session name. */
static bool path_id(const struct api_req *req, char *id, size_t len)
{
    const char *p = req->path + strlen(PREFIX);
    size_t n = strcspn(p, "/");
    if (strncmp(req->path, PREFIX, strlen(PREFIX)) || n == 0 || n >= len)
        return false;
    memcpy(id, p, n);
    id[n] = '\0';
    return true;
}

struct sessions *api_sessions_attached(void)
{
    return atomic_load(&attached);
}

static struct sessions *mgr(struct api_resp *resp)
{
    struct sessions *s = atomic_load(&attached);
    if (!s)
        api_error(resp, 503, "sessions are not available in this daemon");
    return s;
}

static json_t *body_object(const struct api_req *req)
{
    if (!req->body_len)
        return json_object();
    return json_loadb(req->body, req->body_len, JSON_REJECT_DUPLICATES, NULL);
}

/*
 * An array of strings (argv) or NULL when absent; false with `what` named in
 * err when present but not an array of up to max strings (nonempty when
 * `nonempty`).
 */
static bool str_array(json_t *v, const char *what, size_t max, bool nonempty, const char ***out,
                      size_t *n, char *err, size_t errlen)
{
    *out = NULL;
    *n = 0;
    if (!v || json_is_null(v))
        return true;
    size_t k = json_array_size(v);
    if (!json_is_array(v) || k > max || (nonempty && k == 0)) {
        snprintf(err, errlen, "%s must be %san array of at most %zu strings", what,
                 nonempty ? "a non-empty " : "", max);
        return false;
    }
    const char **a = calloc(k + 1, sizeof(*a));
    if (!a) {
        snprintf(err, errlen, "out of memory");
        return false;
    }
    for (size_t i = 0; i < k; i++) {
        a[i] = json_string_value(json_array_get(v, i));
        if (!a[i]) {
            snprintf(err, errlen, "%s[%zu] must be a string", what, i);
            free(a);
            return false;
        }
    }
    *out = a;
    *n = k;
    return true;
}

/* env: an object of string values, as "K=V" strings (malloc'd, in *out). */
static bool env_object(json_t *v, char ***out, size_t *n, char *err, size_t errlen)
{
    *out = NULL;
    *n = 0;
    if (!v || json_is_null(v))
        return true;
    if (!json_is_object(v) || json_object_size(v) > ENV_MAX) {
        snprintf(err, errlen, "env must be an object of at most %d string values", ENV_MAX);
        return false;
    }
    char **a = calloc(json_object_size(v) + 1, sizeof(*a));
    if (!a) {
        snprintf(err, errlen, "out of memory");
        return false;
    }
    const char *k;
    json_t *val;
    size_t i = 0;
    json_object_foreach(v, k, val)
    {
        const char *sv = json_string_value(val);
        if (!sv || !k[0] || strchr(k, '=')) {
            snprintf(err, errlen, "env.%.64s must be a string under a name without '='", k);
            goto bad;
        }
        size_t len = strlen(k) + strlen(sv) + 2;
        a[i] = malloc(len);
        if (!a[i]) {
            snprintf(err, errlen, "out of memory");
            goto bad;
        }
        snprintf(a[i], len, "%s=%s", k, sv);
        i++;
    }
    *out = a;
    *n = i;
    return true;
bad:
    for (size_t j = 0; j < i; j++)
        free(a[j]);
    free(a);
    return false;
}

static void env_free(char **a, size_t n)
{
    for (size_t i = 0; a && i < n; i++)
        free(a[i]);
    free(a);
}

/* An optional integer field in [lo, hi]; false with the field named in err. */
static bool uint_field(json_t *o, const char *name, unsigned lo, unsigned hi, unsigned *out,
                       char *err, size_t errlen)
{
    json_t *v = json_object_get(o, name);
    if (!v)
        return true;
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi) {
        snprintf(err, errlen, "%s must be an integer from %u to %u", name, lo, hi);
        return false;
    }
    *out = (unsigned)json_integer_value(v);
    return true;
}

static const char *const agent_claude[] = {"claude"};
static const char *const agent_gemini[] = {"gemini"};
static const char *const agent_codex[] = {"codex"};

int api_sessions_create(struct api *api, const struct api_req *req, struct api_resp *resp)
{
    (void)api;
    char err[512] = "";
    struct sessions *m = mgr(resp);
    if (!m)
        return 0;
    int rc = 0;
    json_t *o = body_object(req), *out = NULL;
    const char **argv = NULL;
    char **env = NULL;
    size_t argc = 0, n_env = 0;
    struct sessions_spec spec = {0};
    if (!json_is_object(o)) {
        rc = api_error(resp, 400, "body is not a JSON object");
        goto done;
    }
    const char *known[] = {"name",   "command", "mem",    "cpus",  "env",
                           "rootfs", "agent",   "no_net", "policy"};
    const char *key;
    json_t *val;
    json_object_foreach(o, key, val)
    {
        bool ok = false;
        for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
            ok = ok || !strcmp(key, known[i]);
        if (!ok) {
            snprintf(err, sizeof(err), "%.64s: unknown field", key);
            goto bad;
        }
    }
    json_t *v = json_object_get(o, "name");
    if (v && !json_is_null(v)) {
        if (!json_is_string(v)) {
            snprintf(err, sizeof(err), "name must be a string");
            goto bad;
        }
        spec.name = json_string_value(v);
    }
    if (!str_array(json_object_get(o, "command"), "command", ARGV_MAX, true, &argv, &argc, err,
                   sizeof(err)))
        goto bad;
    v = json_object_get(o, "agent");
    if (v && !json_is_null(v)) {
        const char *a = json_string_value(v);
        const char *const *preset = NULL;
        if (a && !strcmp(a, "claude"))
            preset = agent_claude;
        else if (a && !strcmp(a, "gemini"))
            preset = agent_gemini;
        else if (a && !strcmp(a, "codex"))
            preset = agent_codex;
        if (!preset) {
            snprintf(err, sizeof(err), "agent must be one of claude, gemini, codex");
            goto bad;
        }
        if (argc) {
            snprintf(err, sizeof(err), "agent: give either agent or command, not both");
            goto bad;
        }
        spec.argv = preset;
        spec.argc = 1;
    } else {
        spec.argv = argv;
        spec.argc = argc;
    }
    if (!uint_field(o, "mem", 64, 65536, &spec.mem_mib, err, sizeof(err)) ||
        !uint_field(o, "cpus", 1, 64, &spec.cpus, err, sizeof(err)))
        goto bad;
    if (!env_object(json_object_get(o, "env"), &env, &n_env, err, sizeof(err)))
        goto bad;
    spec.env = (const char *const *)env;
    spec.n_env = n_env;
    v = json_object_get(o, "rootfs");
    if (v && !json_is_null(v)) {
        if (!json_is_string(v) || !json_string_value(v)[0]) {
            snprintf(err, sizeof(err), "rootfs must be \"none\" or a file path");
            goto bad;
        }
        spec.rootfs = json_string_value(v);
    }
    v = json_object_get(o, "no_net");
    if (v && !json_is_boolean(v)) {
        snprintf(err, sizeof(err), "no_net must be true or false");
        goto bad;
    }
    spec.no_net = json_is_true(v);
    v = json_object_get(o, "policy");
    if (v && !json_is_null(v)) {
        const char *pv = json_string_value(v);
        if (!pv || (strcmp(pv, "high") && strcmp(pv, "medium") && strcmp(pv, "open"))) {
            snprintf(err, sizeof(err), "policy must be one of high, medium, open");
            goto bad;
        }
        char corp[4096];
        if (netsvc_corp_locked(corp, sizeof(corp))) {
            snprintf(err, sizeof(err), "policy: the network policy is locked by %.400s", corp);
            rc = api_error(resp, 403, err);
            goto done;
        }
        spec.policy = pv;
    }
    int src = sessions_start(m, &spec, &out, err, sizeof(err));
    if (src == -EINVAL)
        goto bad;
    if (src == -EEXIST)
        rc = api_error(resp, 409, err);
    else if (src < 0)
        rc = api_error(resp, 500, err);
    else {
        snprintf(resp->location, sizeof(resp->location), PREFIX "%.40s",
                 json_string_value(json_object_get(out, "id")));
        rc = api_json(resp, 201, out);
    }
    goto done;
bad:
    rc = api_error(resp, 400, err);
done:
    free(argv);
    env_free(env, n_env);
    json_decref(o);
    return rc;
}

int api_sessions_list(struct api *api, const struct api_req *req, struct api_resp *resp)
{
    (void)api;
    (void)req;
    struct sessions *m = mgr(resp);
    if (!m)
        return 0;
    json_t *a = sessions_list(m);
    if (!a)
        return api_error(resp, 500, "out of memory");
    return api_json(resp, 200, json_pack("{s:o}", "sessions", a));
}

int api_sessions_get(struct api *api, const struct api_req *req, struct api_resp *resp)
{
    (void)api;
    char id[128];
    json_t *out = NULL;
    struct sessions *m = mgr(resp);
    if (!m)
        return 0;
    if (!path_id(req, id, sizeof(id)) || sessions_get(m, id, &out) == -ENOENT)
        return api_error(resp, 404, "no such session");
    if (!out)
        return api_error(resp, 500, "out of memory");
    return api_json(resp, 200, out);
}

int api_sessions_delete(struct api *api, const struct api_req *req, struct api_resp *resp)
{
    (void)api;
    char id[128];
    json_t *out = NULL;
    struct sessions *m = mgr(resp);
    if (!m)
        return 0;
    const char *pg = req->arg ? req->arg(req->arg_ctx, "purge") : NULL;
    if (pg && strcmp(pg, "0") && strcmp(pg, "1"))
        return api_error(resp, 400, "purge must be 0 or 1");
    if (!path_id(req, id, sizeof(id)))
        return api_error(resp, 404, "no such session");
    int rc = sessions_stop(m, id, pg && !strcmp(pg, "1"), &out);
    if (rc == -ENOENT)
        return api_error(resp, 404, "no such session");
    if (rc < 0 || !out) {
        json_decref(out);
        return api_error(resp, 500, "cannot stop the session");
    }
    return api_json(resp, 200, out);
}

/* Bytes as a JSON string: text when asked and valid UTF-8 (else base64). */
static json_t *bytes_json(const char *p, size_t len, bool text, bool *b64)
{
    if (text) {
        json_t *s = json_stringn(p ? p : "", len);
        if (s) {
            *b64 = false;
            return s;
        }
    }
    *b64 = true;
    size_t cap = 4 * ((len + 2) / 3) + 1;
    unsigned char *o = malloc(cap);
    if (!o)
        return NULL;
    int n = EVP_EncodeBlock(o, (const unsigned char *)(p ? p : ""), (int)len);
    json_t *s = json_stringn((const char *)o, n > 0 ? (size_t)n : 0);
    free(o);
    return s;
}

int api_sessions_exec(struct api *api, const struct api_req *req, struct api_resp *resp)
{
    (void)api;
    char id[128], err[512] = "";
    struct sessions *m = mgr(resp);
    if (!m)
        return 0;
    int rc = 0;
    json_t *o = body_object(req);
    const char **argv = NULL;
    char **env = NULL;
    size_t argc = 0, n_env = 0;
    struct sessions_exec x = {0};
    struct sessions_exec_result res = {0};
    unsigned char *in = NULL;
    bool text = true;
    if (!path_id(req, id, sizeof(id))) {
        rc = api_error(resp, 404, "no such session");
        goto done;
    }
    if (!json_is_object(o)) {
        rc = api_error(resp, 400, "body is not a JSON object");
        goto done;
    }
    json_t *v = json_object_get(o, "argv");
    if (!v) {
        snprintf(err, sizeof(err), "argv is required");
        goto bad;
    }
    if (!str_array(v, "argv", ARGV_MAX, true, &argv, &argc, err, sizeof(err)))
        goto bad;
    if (!env_object(json_object_get(o, "env"), &env, &n_env, err, sizeof(err)))
        goto bad;
    v = json_object_get(o, "cwd");
    if (v && !json_is_null(v) && (!json_is_string(v) || json_string_value(v)[0] != '/')) {
        snprintf(err, sizeof(err), "cwd must be an absolute path");
        goto bad;
    }
    x.cwd = json_string_value(v);
    if (!uint_field(o, "timeout", 1, SESSIONS_EXEC_TIMEOUT_MAX_S, &x.timeout_s, err, sizeof(err)))
        goto bad;
    v = json_object_get(o, "text");
    if (v && !json_is_boolean(v)) {
        snprintf(err, sizeof(err), "text must be true or false");
        goto bad;
    }
    text = !v || json_is_true(v);
    v = json_object_get(o, "stdin");
    if (v && !json_is_null(v)) {
        if (!json_is_string(v)) {
            snprintf(err, sizeof(err), "stdin must be a string");
            goto bad;
        }
        json_t *enc = json_object_get(o, "stdin_base64");
        if (json_is_true(enc)) {
            size_t sl = json_string_length(v);
            in = malloc(sl / 4 * 3 + 4);
            int n =
                in ? EVP_DecodeBlock(in, (const unsigned char *)json_string_value(v), (int)sl) : -1;
            if (n < 0 || sl % 4) {
                snprintf(err, sizeof(err), "stdin is not valid base64");
                goto bad;
            }
            /* EVP_DecodeBlock counts the padding as zero bytes. */
            size_t len = (size_t)n;
            if (sl >= 1 && json_string_value(v)[sl - 1] == '=')
                len--;
            if (sl >= 2 && json_string_value(v)[sl - 2] == '=')
                len--;
            x.stdin_data = in;
            x.stdin_len = len;
        } else {
            x.stdin_data = json_string_value(v);
            x.stdin_len = json_string_length(v);
        }
    }
    x.argv = argv;
    x.argc = argc;
    x.env = (const char *const *)env;
    x.n_env = n_env;
    int src = sessions_exec_run(m, id, &x, &res, err, sizeof(err));
    if (src == -ENOENT) {
        rc = api_error(resp, 404, "no such session");
    } else if (src == -EAGAIN) {
        rc = api_error(resp, 409, err);
    } else if (src < 0) {
        rc = api_error(resp, 500, err);
    } else {
        bool b1 = false, b2 = false;
        json_t *so = bytes_json(res.out, res.out_len, text, &b1);
        json_t *se = bytes_json(res.err, res.err_len, text, &b2);
        json_t *j = json_pack("{s:o*,s:o*,s:b,s:i,s:b,s:b}", "stdout", so, "stderr", se, "base64",
                              b1 || b2, "exit_code", res.exit_code, "truncated", res.truncated,
                              "timed_out", res.timed_out);
        if (j && (b1 != b2)) {
            /* Both in one encoding: base64 when either needed it. */
            json_object_set_new(j, "stdout", bytes_json(res.out, res.out_len, false, &b1));
            json_object_set_new(j, "stderr", bytes_json(res.err, res.err_len, false, &b2));
        }
        if (j && res.error[0])
            json_object_set_new(j, "error", json_string(res.error));
        rc = api_json(resp, 200, j);
    }
    goto done;
bad:
    rc = api_error(resp, 400, err);
done:
    sessions_exec_result_fini(&res);
    free(in);
    free(argv);
    env_free(env, n_env);
    json_decref(o);
    return rc;
}

int api_sessions_xstart_parse(json_t *j, struct api_xstart *out, char *err, size_t errlen)
{
    struct api_xstart x = {0};
    const char *k;
    json_t *v;
    if (!json_is_object(j)) {
        snprintf(err, errlen, "start must be a JSON object");
        return -EINVAL;
    }
    json_object_foreach(j, k, v)
    {
        if (strcmp(k, "type") && strcmp(k, "argv") && strcmp(k, "env") && strcmp(k, "cwd") &&
            strcmp(k, "timeout_s") && strcmp(k, "tty")) {
            snprintf(err, errlen, "start: unknown key '%.64s'", k);
            return -EINVAL;
        }
    }
    v = json_object_get(j, "argv");
    if (!v) {
        snprintf(err, errlen, "argv is required");
        goto bad;
    }
    if (!str_array(v, "argv", ARGV_MAX, true, &x.argv, &x.argc, err, errlen))
        goto bad;
    if (!env_object(json_object_get(j, "env"), &x.env, &x.n_env, err, errlen))
        goto bad;
    v = json_object_get(j, "cwd");
    if (v && !json_is_null(v) && (!json_is_string(v) || json_string_value(v)[0] != '/')) {
        snprintf(err, errlen, "cwd must be an absolute path");
        goto bad;
    }
    x.cwd = json_string_value(v);
    v = json_object_get(j, "timeout_s");
    if (v && !json_is_null(v) &&
        (!json_is_integer(v) || json_integer_value(v) < 0 ||
         json_integer_value(v) > SESSIONS_EXEC_TIMEOUT_MAX_S)) {
        snprintf(err, errlen, "timeout_s must be an integer from 0 to %u",
                 SESSIONS_EXEC_TIMEOUT_MAX_S);
        goto bad;
    }
    x.timeout_s = json_is_integer(v) ? (unsigned)json_integer_value(v) : 0;
    v = json_object_get(j, "tty");
    if (v && !json_is_null(v) && !json_is_boolean(v)) {
        snprintf(err, errlen, "tty must be true or false");
        goto bad;
    }
    if (json_is_true(v)) {
        snprintf(err, errlen, "tty: a PTY is not available on the exec stream (use the terminal)");
        goto bad;
    }
    *out = x;
    return 0;
bad:
    api_sessions_xstart_fini(&x);
    return -EINVAL;
}

void api_sessions_xstart_fini(struct api_xstart *x)
{
    free(x->argv);
    env_free(x->env, x->n_env);
    memset(x, 0, sizeof(*x));
}
