/*
 * Unit tests for the VM session runner (server/vm_runner.c) without a VM:
 * this test binary doubles as a fake capsem-vmm. Run as
 * `test_server_vm_runner --config FILE` it reads the config the runner
 * wrote, and, as FAKE_VMM_MODE says, plays the guest agent on <uds>_5000,
 * prints an error and exits 1, prints a kernel panic, or never connects.
 * `--probe` answers like a slow nested KVM. The tests check the run
 * directory, the messages for each failure, and that no process or file
 * is left behind.
 */
#include "vm_runner.h"
#include "fake_guest.h"
#include "loop.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>

static char self_exe[1024];
static char base[256];

/* ---- harness ------------------------------------------------------------------ */

struct result {
    bool ready;
    bool done;
    int err;
    char msg[512];
    char log[1100];
    char out[256];
    size_t out_len;
    int status;
    uint32_t id;
    struct vm_runner *r;
};

static void t_ready(void *opaque, const struct ctl_hello *h, int64_t boot_ms)
{
    struct result *res = opaque;
    assert_string_equal(h->kernel, "6.1.0-fake");
    assert_true(boot_ms >= 0);
    res->ready = true;
    const char *argv[] = {"true"};
    assert_int_equal(vm_runner_exec(res->r, argv, 1, NULL, 0, "/", false, &res->id), 0);
}

static void t_output(void *opaque, uint32_t id, int stream, const uint8_t *p, size_t len)
{
    struct result *res = opaque;
    (void)id;
    if (stream == 1 && res->out_len + len < sizeof(res->out)) {
        memcpy(res->out + res->out_len, p, len);
        res->out_len += len;
    }
}

static void t_exit(void *opaque, const struct ctl_exit *e)
{
    struct result *res = opaque;
    res->status = ctl_exit_status(e);
    vm_runner_stop(res->r);
}

static void t_done(void *opaque, int err, const char *msg, const char *log_path)
{
    struct result *res = opaque;
    res->done = true;
    res->err = err;
    snprintf(res->msg, sizeof(res->msg), "%s", msg);
    snprintf(res->log, sizeof(res->log), "%s", log_path ? log_path : "");
}

static const struct vm_runner_ops t_ops = {
    .on_ready = t_ready,
    .on_output = t_output,
    .on_exit = t_exit,
    .on_done = t_done,
};

static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            n++;
    closedir(d);
    return n;
}

/* Run one session with the fake VMM in `mode`; the runner is destroyed before returning. */
static void run_mode(const char *mode, unsigned boot_timeout_ms, struct result *res, char *dir_out,
                     size_t dir_size, int *pid_out)
{
    struct loop *l;
    char err[512];
    setenv("FAKE_VMM_MODE", mode, 1);
    assert_int_equal(loop_create(&l), 0);
    assert_int_equal(vm_runner_create(l, &t_ops, res, &res->r), 0);
    struct vm_runner_config cfg = {
        .vmm_path = self_exe,
        .kernel = self_exe, /* any readable file stands in for the assets */
        .initrd = self_exe,
        .mem_mib = 128,
        .cpus = 1,
        .run_base = base,
        .boot_timeout_ms = boot_timeout_ms,
        .kvm_path = "/dev/null",
    };
    assert_int_equal(vm_runner_start(res->r, &cfg, err, sizeof(err)), 0);
    snprintf(dir_out, dir_size, "%s", vm_runner_dir(res->r));
    *pid_out = vm_runner_vmm_pid(res->r);
    assert_true(*pid_out > 0);
    struct stat st;
    assert_int_equal(stat(dir_out, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    time_t deadline = time(NULL) + 30;
    while (!res->done && time(NULL) < deadline)
        assert_true(loop_run_once(l, 200) >= 0);
    assert_true(res->done);
    vm_runner_destroy(res->r);
    loop_destroy(l);
    /* The VMM is reaped: its pid no longer exists (or belongs to no child of ours). */
    assert_int_equal(waitpid(*pid_out, NULL, WNOHANG), -1);
    assert_int_equal(kill(*pid_out, 0), -1);
}

/* ---- tests ------------------------------------------------------------------------ */

static void test_vm_runner_start_clean_run_leaves_nothing(void **state)
{
    (void)state;
    struct result res = {0};
    char dir[1100];
    int pid;
    run_mode("ok", 10000, &res, dir, sizeof(dir), &pid);
    assert_true(res.ready);
    assert_int_equal(res.err, 0);
    assert_int_equal(res.status, 7);
    assert_int_equal(res.out_len, 16);
    assert_memory_equal(res.out, "hello from fake\n", 16);
    assert_string_equal(res.log, "");
    /* Sockets, config, log and the directory itself are gone. */
    assert_int_equal(access(dir, F_OK), -1);
    assert_int_equal(count_entries(base), 0);
}

static void test_vm_runner_start_vmm_error_shows_last_error_line(void **state)
{
    (void)state;
    struct result res = {0};
    char dir[1100];
    int pid;
    run_mode("exit1", 10000, &res, dir, sizeof(dir), &pid);
    assert_false(res.ready);
    assert_true(res.err < 0);
    assert_non_null(strstr(res.msg, "before the guest was ready"));
    assert_non_null(strstr(res.msg, "status 1, VMM error"));
    assert_non_null(strstr(res.msg, "event=kvm_create_vm err=-13"));
    /* On failure vm.log stays (and is named); sockets do not. */
    assert_int_equal(access(res.log, R_OK), 0);
    char sock[1200];
    snprintf(sock, sizeof(sock), "%s/vsock.sock_5000", dir);
    assert_int_equal(access(sock, F_OK), -1);
    unlink(res.log);
    snprintf(sock, sizeof(sock), "%s/vmm.json", dir);
    unlink(sock);
    assert_int_equal(rmdir(dir), 0);
}

static void test_vm_runner_start_kernel_panic_is_named(void **state)
{
    (void)state;
    struct result res = {0};
    char dir[1100];
    int pid;
    run_mode("panic", 10000, &res, dir, sizeof(dir), &pid);
    assert_true(res.err < 0);
    assert_non_null(strstr(res.msg, "kernel panicked"));
    assert_int_equal(access(res.log, R_OK), 0);
    char p[1200];
    unlink(res.log);
    snprintf(p, sizeof(p), "%s/vmm.json", dir);
    unlink(p);
    assert_int_equal(rmdir(dir), 0);
}

static void test_vm_runner_start_boot_timeout_probes_kvm(void **state)
{
    (void)state;
    struct result res = {0};
    char dir[1100];
    int pid;
    time_t t0 = time(NULL);
    run_mode("silent", 1000, &res, dir, sizeof(dir), &pid);
    assert_true(time(NULL) - t0 < 10);
    assert_int_equal(res.err, -ETIMEDOUT);
    assert_non_null(strstr(res.msg, "did not say hello within"));
    /* The fake's --probe says "slow": the message explains nested emulation. */
    assert_non_null(strstr(res.msg, "emulates guest code"));
    assert_non_null(strstr(res.msg, "tests/kvm-bed/run"));
    char p[1200];
    unlink(res.log);
    snprintf(p, sizeof(p), "%s/vmm.json", dir);
    unlink(p);
    assert_int_equal(rmdir(dir), 0);
}

static void test_vm_runner_start_connection_lost(void **state)
{
    (void)state;
    struct result res = {0};
    char dir[1100];
    int pid;
    run_mode("lost", 10000, &res, dir, sizeof(dir), &pid);
    assert_true(res.ready);
    assert_true(res.err < 0);
    assert_non_null(strstr(res.msg, "connection lost"));
    assert_non_null(strstr(res.msg, "status 3, guest crashed"));
    char p[1200];
    unlink(res.log);
    snprintf(p, sizeof(p), "%s/vmm.json", dir);
    unlink(p);
    assert_int_equal(rmdir(dir), 0);
}

static void test_vm_runner_destroy_mid_boot_kills_and_cleans(void **state)
{
    (void)state;
    struct loop *l;
    struct result res = {0};
    char err[512];
    setenv("FAKE_VMM_MODE", "silent", 1);
    assert_int_equal(loop_create(&l), 0);
    assert_int_equal(vm_runner_create(l, &t_ops, &res, &res.r), 0);
    struct vm_runner_config cfg = {.vmm_path = self_exe,
                                   .kernel = self_exe,
                                   .initrd = self_exe,
                                   .mem_mib = 128,
                                   .cpus = 1,
                                   .run_base = base,
                                   .boot_timeout_ms = 30000,
                                   .kvm_path = "/dev/null"};
    assert_int_equal(vm_runner_start(res.r, &cfg, err, sizeof(err)), 0);
    int pid = vm_runner_vmm_pid(res.r);
    char dir[1100];
    snprintf(dir, sizeof(dir), "%s", vm_runner_dir(res.r));
    loop_run_once(l, 100);
    vm_runner_destroy(res.r);
    loop_destroy(l);
    assert_false(res.done); /* no callbacks from destroy */
    assert_int_equal(kill(pid, 0), -1);
    assert_int_equal(access(dir, F_OK), -1);
}

static void test_vm_runner_start_missing_pieces(void **state)
{
    (void)state;
    struct loop *l;
    struct vm_runner *r;
    struct result res = {0};
    char err[512];
    assert_int_equal(loop_create(&l), 0);
    struct vm_runner_config cfg = {.vmm_path = self_exe,
                                   .kernel = self_exe,
                                   .initrd = self_exe,
                                   .mem_mib = 128,
                                   .cpus = 1,
                                   .run_base = base,
                                   .boot_timeout_ms = 1000,
                                   .kvm_path = "/nonexistent/kvm"};
    assert_int_equal(vm_runner_create(l, &t_ops, &res, &r), 0);
    assert_int_equal(vm_runner_start(r, &cfg, err, sizeof(err)), -ENOENT);
    assert_non_null(strstr(err, "/nonexistent/kvm not found: enable KVM (kvm_intel/kvm_amd)"));
    vm_runner_destroy(r);

    cfg.kvm_path = "/dev/null";
    cfg.kernel = "/nonexistent/vmlinux";
    assert_int_equal(vm_runner_create(l, &t_ops, &res, &r), 0);
    assert_int_equal(vm_runner_start(r, &cfg, err, sizeof(err)), -ENOENT);
    assert_non_null(strstr(err, "guest kernel not found: /nonexistent/vmlinux"));
    assert_non_null(strstr(err, "cmake --build build"));
    vm_runner_destroy(r);

    cfg.kernel = self_exe;
    cfg.vmm_path = "/nonexistent/capsem-vmm";
    assert_int_equal(vm_runner_create(l, &t_ops, &res, &r), 0);
    assert_int_equal(vm_runner_start(r, &cfg, err, sizeof(err)), -ENOENT);
    assert_non_null(strstr(err, "capsem-vmm not found"));
    vm_runner_destroy(r);

    assert_int_equal(count_entries(base), 0);
    assert_false(res.done);
    loop_destroy(l);
}

static void test_vm_runner_vmm_status_text_names_each_status(void **state)
{
    (void)state;
    assert_string_equal(vm_runner_vmm_status_text(0), "guest powered off");
    assert_string_equal(vm_runner_vmm_status_text(3), "guest crashed");
    assert_string_equal(vm_runner_vmm_status_text(99), "unknown status");
}

int main(int argc, char **argv)
{
    if (argc >= 3 && !strcmp(argv[1], "--config"))
        return fake_vmm_main(argv[2]);
    if (argc >= 2 && !strcmp(argv[1], "--probe")) {
        printf("kvm: slow 1840 ms (nested KVM emulating guest ring 0)\n");
        return 1;
    }
    /* The fake VMM children exit with their own statuses, whatever the sanitizers think. */
    setenv("ASAN_OPTIONS", "detect_leaks=0", 1);
    ssize_t n = readlink("/proc/self/exe", self_exe, sizeof(self_exe) - 1);
    if (n <= 0)
        return 1;
    self_exe[n] = '\0';
    snprintf(base, sizeof(base), "/tmp/capsem-test-runner-%d", (int)getpid());
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vm_runner_start_clean_run_leaves_nothing),
        cmocka_unit_test(test_vm_runner_start_vmm_error_shows_last_error_line),
        cmocka_unit_test(test_vm_runner_start_kernel_panic_is_named),
        cmocka_unit_test(test_vm_runner_start_boot_timeout_probes_kvm),
        cmocka_unit_test(test_vm_runner_start_connection_lost),
        cmocka_unit_test(test_vm_runner_destroy_mid_boot_kills_and_cleans),
        cmocka_unit_test(test_vm_runner_start_missing_pieces),
        cmocka_unit_test(test_vm_runner_vmm_status_text_names_each_status),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    rmdir(base);
    return rc;
}
