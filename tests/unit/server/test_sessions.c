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
 * - a VM that fails to boot: status "failed" with its reason.
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
    static char self_hash[65];
    if (integrity_file_sha256(NULL, self_exe, self_hash, NULL))
        return 1;
    static struct integrity_built built;
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
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
