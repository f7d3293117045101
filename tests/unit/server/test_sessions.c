/*
 * Unit tests for the session manager (server/sessions.c) and its routes
 * (server/api_sessions.c), with requests as structs through api_gate and
 * api_handle, and this test binary as a stand-in capsem-vmm (fake_guest.h)
 * and as the guest kernel and initramfs. Bad input and what it gives:
 * - no credentials on any session route: 401;
 * - a body that is not a JSON object: 400;
 * - an unknown id on get, delete and exec: 404;
 * - a bad field (unknown key, name, mem, cpus, env, command, agent, rootfs,
 *   argv, cwd, timeout, stdin, purge): 400 naming that field, and no session
 *   is made;
 * - a name already running: 409; exec in a session that is not running: 409;
 * - a VM that fails to boot: status "failed" with its reason;
 * - a root image whose contents differ from the recorded SHA-256, or with
 *   no recorded SHA-256: status "failed" with a reason naming the file (in
 *   GET and in session.json), no VM started;
 * - a stop, a purge or the manager's end while a session is being prepared:
 *   it ends stopped (purged: gone with its directory) without a VM, once the
 *   preparation is over.
 */
#include "api.h"
#include "auth.h"
#include "integrity.h"
#include "sessions.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "fake_guest.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static char self_exe[1024];
static char home[256];
static struct auth *auth;
static struct api *api;
static struct sessions *mgr;
static char bearer[128];
static char self_hash[65];
static struct integrity_built built;

static bool kvm_usable(void)
{
    int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return false;
    close(fd);
    return true;
}

static const char *q_purge;
static const char *q_origin;
static const char *arg_fn(void *ctx, const char *name)
{
    (void)ctx;
    return !strcmp(name, "purge") ? q_purge : NULL;
}

/* One request through the gate and the handler: the status, the JSON answer in *out. */
static int call(const char *method, const char *path, const char *body, const char *authz,
                json_t **out)
{
    struct api_req req = {.method = method,
                          .path = path,
                          .host = "localhost:7878",
                          .origin = q_origin,
                          .authorization = authz,
                          .arg = arg_fn,
                          .body = body,
                          .body_len = body ? strlen(body) : 0};
    struct api_resp resp = {0};
    const struct api_route *r = api_gate(api, &req, &resp);
    if (r)
        assert_int_equal(api_handle(api, r, &req, &resp), 0);
    int st = resp.status;
    json_t *j = json_loadb(resp.body ? resp.body : "", resp.body_len, 0, NULL);
    assert_non_null(j);
    if (st >= 400)
        assert_true(json_is_string(json_object_get(j, "error")));
    api_resp_fini(&resp);
    if (out)
        *out = j;
    else
        json_decref(j);
    return st;
}

/* A 400 whose error names `field`. */
static void expect_400(const char *method, const char *path, const char *body, const char *field)
{
    json_t *j = NULL;
    assert_int_equal(call(method, path, body, bearer, &j), 400);
    const char *e = json_string_value(json_object_get(j, "error"));
    if (!strstr(e, field))
        fail_msg("error '%s' does not name '%s' (body %s)", e, field, body);
    json_decref(j);
}

static const char *status_of(const char *id)
{
    static char st[32];
    char path[128];
    json_t *j = NULL;
    snprintf(path, sizeof(path), "/api/v1/sessions/%s", id);
    if (call("GET", path, NULL, bearer, &j) != 200) {
        json_decref(j);
        return "gone";
    }
    snprintf(st, sizeof(st), "%s", json_string_value(json_object_get(j, "status")));
    json_decref(j);
    return st;
}

/* Wait up to 20 s for session `id` to reach `want`. */
static bool wait_status(const char *id, const char *want)
{
    for (int i = 0; i < 400; i++) {
        if (!strcmp(status_of(id), want))
            return true;
        usleep(50000);
    }
    fail_msg("session %s is %s, not %s", id, status_of(id), want);
    return false;
}

static void copy_file(const char *from, const char *to)
{
    char cmd[2200];
    snprintf(cmd, sizeof(cmd), "cp '%s' '%s'", from, to);
    assert_int_equal(system(cmd), 0);
}

static int setup(void **state)
{
    (void)state;
    char err[256], assets[300], f[400];
    snprintf(home, sizeof(home), "/tmp/capsem-test-sessions-XXXXXX");
    if (!mkdtemp(home) || auth_create(home, &auth, err, sizeof(err)) < 0)
        return -1;
    struct api_opts o = {.auth = auth, .version = "1.2.3", .port = 7878};
    if (api_create(&o, &api) < 0)
        return -1;
    snprintf(bearer, sizeof(bearer), "Bearer %s", auth_token(auth));
    snprintf(assets, sizeof(assets), "%s/assets", home);
    mkdir(assets, 0700);
    snprintf(f, sizeof(f), "%s/vmlinux", assets);
    copy_file(self_exe, f);
    snprintf(f, sizeof(f), "%s/initrd.img", assets);
    copy_file(self_exe, f);
    setenv("CAPSEM_ASSETS", assets, 1);
    setenv("CAPSEM_VMM", self_exe, 1);
    setenv("CAPSEM_HOME", home, 1);
    if (sessions_create(home, &mgr) < 0)
        return -1;
    api_sessions_attach(mgr);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    api_sessions_attach(NULL);
    sessions_destroy(mgr);
    api_destroy(api);
    auth_destroy(auth);
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", home);
    return system(cmd) == 0 ? 0 : -1;
}

static void test_sessions_routes_need_auth(void **state)
{
    (void)state;
    assert_int_equal(call("GET", "/api/v1/sessions", NULL, NULL, NULL), 401);
    assert_int_equal(call("POST", "/api/v1/sessions", "{}", NULL, NULL), 403); /* no Origin */
    assert_int_equal(call("GET", "/api/v1/sessions/x", NULL, "Bearer nope", NULL), 401);
    /* A state-changing request from a browser page (Origin of this server) needs auth too. */
    q_origin = "http://localhost:7878";
    assert_int_equal(call("POST", "/api/v1/sessions", "{}", NULL, NULL), 401);
    assert_int_equal(call("DELETE", "/api/v1/sessions/x", NULL, "Bearer nope", NULL), 401);
    assert_int_equal(call("POST", "/api/v1/sessions/x/exec", "{}", "Bearer nope", NULL), 401);
    q_origin = NULL;
    assert_int_equal(call("PUT", "/api/v1/sessions/x", NULL, bearer, NULL), 405);
}

static void test_sessions_create_bad_fields(void **state)
{
    (void)state;
    const char *p = "/api/v1/sessions";
    expect_400("POST", p, "[1]", "JSON object");
    expect_400("POST", p, "{\"name\":", "JSON object");
    expect_400("POST", p, "{\"bogus\":1}", "bogus");
    expect_400("POST", p, "{\"name\":7}", "name");
    expect_400("POST", p, "{\"name\":\"Bad_Name\"}", "name");
    expect_400("POST", p, "{\"name\":\"-x\"}", "name");
    expect_400("POST", p, "{\"mem\":1}", "mem");
    expect_400("POST", p, "{\"mem\":\"512\"}", "mem");
    expect_400("POST", p, "{\"cpus\":0}", "cpus");
    expect_400("POST", p, "{\"cpus\":65}", "cpus");
    expect_400("POST", p, "{\"env\":[\"A=1\"]}", "env");
    expect_400("POST", p, "{\"env\":{\"A\":1}}", "env.A");
    expect_400("POST", p, "{\"env\":{\"A=B\":\"1\"}}", "env");
    expect_400("POST", p, "{\"command\":\"ls\"}", "command");
    expect_400("POST", p, "{\"command\":[]}", "command");
    expect_400("POST", p, "{\"command\":[\"ls\",3]}", "command[1]");
    expect_400("POST", p, "{\"agent\":\"vim\"}", "agent");
    expect_400("POST", p, "{\"agent\":\"claude\",\"command\":[\"ls\"]}", "agent");
    expect_400("POST", p, "{\"rootfs\":\"\"}", "rootfs");
    expect_400("POST", p, "{\"no_net\":1}", "no_net");
    /* None of them made a session. */
    json_t *j = NULL;
    assert_int_equal(call("GET", p, NULL, bearer, &j), 200);
    assert_int_equal(json_array_size(json_object_get(j, "sessions")), 0);
    json_decref(j);
}

static void test_sessions_unknown_id_404(void **state)
{
    (void)state;
    assert_int_equal(call("GET", "/api/v1/sessions/nosuch", NULL, bearer, NULL), 404);
    assert_int_equal(call("DELETE", "/api/v1/sessions/nosuch", NULL, bearer, NULL), 404);
    assert_int_equal(
        call("POST", "/api/v1/sessions/nosuch/exec", "{\"argv\":[\"true\"]}", bearer, NULL), 404);
}

static void test_sessions_exec_bad_fields(void **state)
{
    (void)state;
    const char *p = "/api/v1/sessions/nosuch/exec";
    expect_400("POST", p, "[]", "JSON object");
    expect_400("POST", p, "{}", "argv");
    expect_400("POST", p, "{\"argv\":[]}", "argv");
    expect_400("POST", p, "{\"argv\":\"ls\"}", "argv");
    expect_400("POST", p, "{\"argv\":[\"ls\"],\"cwd\":\"rel\"}", "cwd");
    expect_400("POST", p, "{\"argv\":[\"ls\"],\"timeout\":0}", "timeout");
    expect_400("POST", p, "{\"argv\":[\"ls\"],\"timeout\":99999}", "timeout");
    expect_400("POST", p, "{\"argv\":[\"ls\"],\"stdin\":5}", "stdin");
    expect_400("POST", p, "{\"argv\":[\"ls\"],\"stdin\":\"@@@\",\"stdin_base64\":true}", "stdin");
    expect_400("POST", p, "{\"argv\":[\"ls\"],\"text\":\"yes\"}", "text");
    expect_400("POST", p, "{\"argv\":[\"ls\"],\"env\":{\"K\":[]}}", "env.K");
    q_purge = "yes";
    expect_400("DELETE", "/api/v1/sessions/nosuch", NULL, "purge");
    q_purge = NULL;
}

/* Boot with the stand-in VMM, exec with stdin, stop, purge; a second name clash gives 409. */
static void test_sessions_lifecycle_with_fake_vmm(void **state)
{
    (void)state;
    if (!kvm_usable())
        skip();
    setenv("FAKE_VMM_MODE", "echo", 1);
    json_t *j = NULL;
    assert_int_equal(
        call("POST", "/api/v1/sessions",
             "{\"name\":\"one\",\"rootfs\":\"none\",\"mem\":256,\"env\":{\"A\":\"1\"}}", bearer,
             &j),
        201);
    assert_string_equal(json_string_value(json_object_get(j, "id")), "one");
    assert_string_equal(json_string_value(json_object_get(j, "status")), "booting");
    assert_int_equal(json_integer_value(json_object_get(j, "mem")), 256);
    json_decref(j);
    assert_int_equal(call("POST", "/api/v1/sessions", "{\"name\":\"one\"}", bearer, NULL), 409);
    wait_status("one", "running");
    /* session.json is on disk. */
    char sj[400];
    snprintf(sj, sizeof(sj), "%s/sessions/one/session.json", home);
    json_t *disk = json_load_file(sj, 0, NULL);
    assert_non_null(disk);
    assert_string_equal(json_string_value(json_object_get(disk, "status")), "running");
    json_decref(disk);

    assert_int_equal(call("POST", "/api/v1/sessions/one/exec",
                          "{\"argv\":[\"cat\"],\"stdin\":\"hi there\\n\"}", bearer, &j),
                     200);
    assert_string_equal(json_string_value(json_object_get(j, "stdout")), "hi there\n");
    assert_string_equal(json_string_value(json_object_get(j, "stderr")), "fake stderr\n");
    assert_int_equal(json_integer_value(json_object_get(j, "exit_code")), 42);
    assert_true(json_is_false(json_object_get(j, "base64")));
    assert_true(json_is_false(json_object_get(j, "truncated")));
    assert_true(json_is_false(json_object_get(j, "timed_out")));
    json_decref(j);

    /* The list has it, running, with the totals fields. */
    assert_int_equal(call("GET", "/api/v1/sessions", NULL, bearer, &j), 200);
    json_t *a = json_object_get(j, "sessions");
    assert_int_equal(json_array_size(a), 1);
    json_t *s0 = json_array_get(a, 0);
    assert_string_equal(json_string_value(json_object_get(s0, "status")), "running");
    assert_true(json_is_integer(json_object_get(s0, "requests")));
    assert_true(json_is_integer(json_object_get(s0, "tokens")));
    assert_true(json_is_number(json_object_get(s0, "cost")));
    json_decref(j);

    assert_int_equal(call("DELETE", "/api/v1/sessions/one", NULL, bearer, &j), 200);
    assert_string_equal(json_string_value(json_object_get(j, "status")), "stopping");
    json_decref(j);
    wait_status("one", "stopped");
    assert_int_equal(
        call("POST", "/api/v1/sessions/one/exec", "{\"argv\":[\"true\"]}", bearer, NULL), 409);
    disk = json_load_file(sj, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(disk, "status")), "stopped");
    json_decref(disk);

    /* A restarted manager lists it as stopped, from disk. */
    api_sessions_attach(NULL);
    sessions_destroy(mgr);
    assert_int_equal(sessions_create(home, &mgr), 0);
    api_sessions_attach(mgr);
    assert_string_equal(status_of("one"), "stopped");

    /* Purge removes the directory and the entry. */
    q_purge = "1";
    assert_int_equal(call("DELETE", "/api/v1/sessions/one", NULL, bearer, NULL), 200);
    q_purge = NULL;
    assert_string_equal(status_of("one"), "gone");
    char dir[400];
    snprintf(dir, sizeof(dir), "%s/sessions/one", home);
    assert_int_equal(access(dir, F_OK), -1);
}

/* A command that never ends is killed at the exec timeout; stopping a running session with
 * purge removes it once the VM is gone. */
static void test_sessions_exec_timeout_and_purge_running(void **state)
{
    (void)state;
    if (!kvm_usable())
        skip();
    setenv("FAKE_VMM_MODE", "hang", 1);
    json_t *j = NULL;
    assert_int_equal(
        call("POST", "/api/v1/sessions", "{\"name\":\"two\",\"rootfs\":\"none\"}", bearer, NULL),
        201);
    wait_status("two", "running");
    time_t t0 = time(NULL);
    assert_int_equal(call("POST", "/api/v1/sessions/two/exec",
                          "{\"argv\":[\"sleep\",\"99\"],\"timeout\":1}", bearer, &j),
                     200);
    assert_true(time(NULL) - t0 < 10);
    assert_true(json_is_true(json_object_get(j, "timed_out")));
    assert_string_equal(json_string_value(json_object_get(j, "stdout")), "running\n");
    /* The fake exits 50 + the signal it got: SIGKILL. */
    assert_int_equal(json_integer_value(json_object_get(j, "exit_code")), 50 + SIGKILL);
    json_decref(j);
    q_purge = "1";
    assert_int_equal(call("DELETE", "/api/v1/sessions/two", NULL, bearer, NULL), 200);
    q_purge = NULL;
    wait_status("two", "gone");
    char dir[400];
    snprintf(dir, sizeof(dir), "%s/sessions/two", home);
    assert_int_equal(access(dir, F_OK), -1);
}

static void test_sessions_boot_failure_is_reported(void **state)
{
    (void)state;
    if (!kvm_usable())
        skip();
    setenv("FAKE_VMM_MODE", "exit1", 1);
    json_t *j = NULL;
    assert_int_equal(call("POST", "/api/v1/sessions", "{\"rootfs\":\"none\"}", bearer, &j), 201);
    char id[64];
    snprintf(id, sizeof(id), "%s", json_string_value(json_object_get(j, "id")));
    json_decref(j);
    assert_int_equal(strlen(id), 12);
    wait_status(id, "failed");
    char path[128];
    snprintf(path, sizeof(path), "/api/v1/sessions/%s", id);
    assert_int_equal(call("GET", path, NULL, bearer, &j), 200);
    const char *reason = json_string_value(json_object_get(j, "reason"));
    assert_non_null(reason);
    assert_true(strlen(reason) > 0);
    json_decref(j);
}

/* ---- the preparation on its own thread ---- */

/* The prep hook's gate: sessions held in "booting" until the test opens it. */
static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int entered, left;
    bool open;
} gate = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, false};

static void gate_hook(void *opaque, const char *id)
{
    (void)opaque;
    (void)id;
    pthread_mutex_lock(&gate.mu);
    gate.entered++;
    pthread_cond_broadcast(&gate.cv);
    /* Bounded, so a broken test cannot hang the run: 60 s. */
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 60;
    while (!gate.open && pthread_cond_timedwait(&gate.cv, &gate.mu, &dl) == 0)
        ;
    gate.left++;
    pthread_cond_broadcast(&gate.cv);
    pthread_mutex_unlock(&gate.mu);
}

static void gate_close(void)
{
    pthread_mutex_lock(&gate.mu);
    gate.entered = gate.left = 0;
    gate.open = false;
    pthread_mutex_unlock(&gate.mu);
    sessions_set_prep_hook(mgr, gate_hook, NULL);
}

static void gate_open(void)
{
    pthread_mutex_lock(&gate.mu);
    gate.open = true;
    pthread_cond_broadcast(&gate.cv);
    pthread_mutex_unlock(&gate.mu);
}

/* Wait (up to 20 s) until n preparations are held at the gate at the same time. */
static void gate_wait_entered(int n)
{
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 20;
    pthread_mutex_lock(&gate.mu);
    while (gate.entered < n && pthread_cond_timedwait(&gate.cv, &gate.mu, &dl) == 0)
        ;
    int got = gate.entered, left = gate.left;
    pthread_mutex_unlock(&gate.mu);
    assert_int_equal(got, n);
    assert_int_equal(left, 0);
}

static void create(const char *body)
{
    assert_int_equal(call("POST", "/api/v1/sessions", body, bearer, NULL), 201);
}

static void purge(const char *id)
{
    char path[128];
    snprintf(path, sizeof(path), "/api/v1/sessions/%s", id);
    q_purge = "1";
    assert_int_equal(call("DELETE", path, NULL, bearer, NULL), 200);
    q_purge = NULL;
    wait_status(id, "gone");
}

/* One field of session id's JSON into buf ("" when absent). */
static const char *field_of(const char *id, const char *key, char *buf, size_t len)
{
    char path[128];
    json_t *j = NULL;
    snprintf(path, sizeof(path), "/api/v1/sessions/%s", id);
    assert_int_equal(call("GET", path, NULL, bearer, &j), 200);
    const char *v = json_string_value(json_object_get(j, key));
    snprintf(buf, len, "%s", v ? v : "");
    json_decref(j);
    return buf;
}

/* A session held in its preparation does not hold up an exec in a running one: the exec
 * completes while the other is still "booting". */
static void test_sessions_prepare_does_not_stall_exec(void **state)
{
    (void)state;
    if (!kvm_usable())
        skip();
    setenv("FAKE_VMM_MODE", "echo", 1);
    create("{\"name\":\"run1\",\"rootfs\":\"none\"}");
    wait_status("run1", "running");
    gate_close();
    create("{\"name\":\"prep1\",\"rootfs\":\"none\"}");
    gate_wait_entered(1);
    json_t *j = NULL;
    assert_int_equal(call("POST", "/api/v1/sessions/run1/exec",
                          "{\"argv\":[\"cat\"],\"stdin\":\"while booting\\n\"}", bearer, &j),
                     200);
    assert_string_equal(json_string_value(json_object_get(j, "stdout")), "while booting\n");
    json_decref(j);
    assert_string_equal(status_of("prep1"), "booting");
    /* An exec in the session being prepared is refused, not queued behind it. */
    assert_int_equal(
        call("POST", "/api/v1/sessions/prep1/exec", "{\"argv\":[\"true\"]}", bearer, NULL), 409);
    gate_open();
    wait_status("prep1", "running");
    sessions_set_prep_hook(mgr, NULL, NULL);
    purge("run1");
    purge("prep1");
}

/* Two sessions are prepared at the same time (both held at the gate at once), then both boot. */
static void test_sessions_prepare_two_at_once(void **state)
{
    (void)state;
    if (!kvm_usable())
        skip();
    setenv("FAKE_VMM_MODE", "echo", 1);
    gate_close();
    create("{\"name\":\"pa\",\"rootfs\":\"none\"}");
    create("{\"name\":\"pb\",\"rootfs\":\"none\"}");
    gate_wait_entered(2);
    assert_string_equal(status_of("pa"), "booting");
    assert_string_equal(status_of("pb"), "booting");
    gate_open();
    wait_status("pa", "running");
    wait_status("pb", "running");
    sessions_set_prep_hook(mgr, NULL, NULL);
    purge("pa");
    purge("pb");
}

/* Stopped while prepared: stopped without a VM (no log); purged: its directory, which the
 * preparation made, is gone once the preparation is over. */
static void test_sessions_stop_and_purge_while_preparing(void **state)
{
    (void)state;
    if (!kvm_usable())
        skip();
    setenv("FAKE_VMM_MODE", "echo", 1);
    gate_close();
    create("{\"name\":\"st1\",\"rootfs\":\"none\"}");
    create("{\"name\":\"pu1\",\"rootfs\":\"none\"}");
    gate_wait_entered(2);
    json_t *j = NULL;
    assert_int_equal(call("DELETE", "/api/v1/sessions/st1", NULL, bearer, &j), 200);
    assert_string_equal(json_string_value(json_object_get(j, "status")), "stopping");
    json_decref(j);
    q_purge = "1";
    assert_int_equal(call("DELETE", "/api/v1/sessions/pu1", NULL, bearer, NULL), 200);
    q_purge = NULL;
    char dir[400];
    snprintf(dir, sizeof(dir), "%s/sessions/pu1", home);
    assert_int_equal(access(dir, F_OK), 0); /* made by the preparation, kept until it ends */
    assert_string_equal(status_of("pu1"), "booting");
    gate_open();
    wait_status("st1", "stopped");
    wait_status("pu1", "gone");
    assert_int_equal(access(dir, F_OK), -1);
    char buf[512];
    assert_string_equal(field_of("st1", "log", buf, sizeof(buf)), "");
    assert_string_equal(field_of("st1", "reason", buf, sizeof(buf)), "");
    sessions_set_prep_hook(mgr, NULL, NULL);
    purge("st1");
}

static void *open_gate_later(void *arg)
{
    (void)arg;
    /* Lets sessions_destroy start waiting first; the outcome asserted holds either way. */
    usleep(300000);
    gate_open();
    return NULL;
}

/* The manager ends while a session is being prepared: it waits for the preparation, the
 * session is left stopped on disk, nothing leaks (ASan build). */
static void test_sessions_destroy_while_preparing(void **state)
{
    (void)state;
    if (!kvm_usable())
        skip();
    setenv("FAKE_VMM_MODE", "echo", 1);
    gate_close();
    create("{\"name\":\"de1\",\"rootfs\":\"none\"}");
    gate_wait_entered(1);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, open_gate_later, NULL), 0);
    api_sessions_attach(NULL);
    sessions_destroy(mgr);
    mgr = NULL;
    pthread_join(th, NULL);
    pthread_mutex_lock(&gate.mu);
    int left = gate.left;
    pthread_mutex_unlock(&gate.mu);
    assert_int_equal(left, 1); /* the preparation was over before destroy returned */
    char sj[400];
    snprintf(sj, sizeof(sj), "%s/sessions/de1/session.json", home);
    json_t *disk = json_load_file(sj, 0, NULL);
    assert_non_null(disk);
    assert_string_equal(json_string_value(json_object_get(disk, "status")), "stopped");
    json_decref(disk);
    assert_int_equal(sessions_create(home, &mgr), 0);
    api_sessions_attach(mgr);
    assert_string_equal(status_of("de1"), "stopped");
    purge("de1");
}

/* A root image that differs from its recorded SHA-256, and one with none recorded: failed,
 * with the reason naming the file, in GET and on disk; no VM started. */
static void test_sessions_bad_asset_reason_names_file(void **state)
{
    (void)state;
    if (!kvm_usable())
        skip();
    setenv("FAKE_VMM_MODE", "echo", 1);
    char img[400], body[600], buf[1200];
    snprintf(img, sizeof(img), "%s/tampered-root.img", home);
    copy_file(self_exe, img);
    /* Recorded: this binary's hash with its last digit changed. */
    static char other[65];
    memcpy(other, self_hash, sizeof(other));
    other[63] = other[63] == '0' ? '1' : '0';
    built.rootfs = other;
    snprintf(body, sizeof(body), "{\"name\":\"bad1\",\"rootfs\":\"%s\"}", img);
    create(body);
    wait_status("bad1", "failed");
    const char *why = field_of("bad1", "reason", buf, sizeof(buf));
    if (!strstr(why, img) || !strstr(why, "guest root filesystem") ||
        !strstr(why, "does not match the SHA-256 recorded"))
        fail_msg("reason: %s", why);
    assert_string_equal(field_of("bad1", "log", buf, sizeof(buf)), "");
    char sj[400];
    snprintf(sj, sizeof(sj), "%s/sessions/bad1/session.json", home);
    json_t *disk = json_load_file(sj, 0, NULL);
    if (disk) { /* the directory is made after the check: none is fine */
        assert_non_null(strstr(json_string_value(json_object_get(disk, "reason")), img));
        json_decref(disk);
    }
    /* No hash recorded for a root image. */
    built.rootfs = NULL;
    snprintf(body, sizeof(body), "{\"name\":\"bad2\",\"rootfs\":\"%s\"}", img);
    create(body);
    wait_status("bad2", "failed");
    why = field_of("bad2", "reason", buf, sizeof(buf));
    if (!strstr(why, img) || !strstr(why, "no SHA-256 was recorded"))
        fail_msg("reason: %s", why);
    /* The control: the same image with its own hash recorded boots. */
    built.rootfs = self_hash;
    snprintf(body, sizeof(body), "{\"name\":\"good1\",\"rootfs\":\"%s\"}", img);
    create(body);
    wait_status("good1", "running");
    built.rootfs = NULL;
    purge("bad1");
    purge("bad2");
    purge("good1");
}

int main(int argc, char **argv)
{
    if (argc >= 3 && !strcmp(argv[1], "--config"))
        return fake_vmm_main(argv[2]);
    if (argc >= 2 && !strcmp(argv[1], "--probe")) {
        printf("kvm: native 1 ms\n");
        return 0;
    }
    ssize_t n = readlink("/proc/self/exe", self_exe, sizeof(self_exe) - 1);
    if (n <= 0)
        return 1;
    self_exe[n] = '\0';
    if (integrity_file_sha256(NULL, self_exe, self_hash, NULL))
        return 1;
    built.kernel = built.initrd = self_hash;
    integrity_set_built(&built);
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sessions_routes_need_auth),
        cmocka_unit_test(test_sessions_create_bad_fields),
        cmocka_unit_test(test_sessions_unknown_id_404),
        cmocka_unit_test(test_sessions_exec_bad_fields),
        cmocka_unit_test(test_sessions_lifecycle_with_fake_vmm),
        cmocka_unit_test(test_sessions_exec_timeout_and_purge_running),
        cmocka_unit_test(test_sessions_boot_failure_is_reported),
        cmocka_unit_test(test_sessions_prepare_does_not_stall_exec),
        cmocka_unit_test(test_sessions_prepare_two_at_once),
        cmocka_unit_test(test_sessions_stop_and_purge_while_preparing),
        cmocka_unit_test(test_sessions_destroy_while_preparing),
        cmocka_unit_test(test_sessions_bad_asset_reason_names_file),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
