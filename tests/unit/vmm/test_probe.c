/*
 * Unit tests for the KVM speed probe (vmm/probe.c): classification around the
 * threshold, the one-line verdicts and exit codes, what each kind of bad
 * device gives (a verdict of "unavailable" with the reason, never a crash),
 * and a real probe of this machine's /dev/kvm bounded in time.
 */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "probe.h"

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void test_vmm_kvm_probe_classify_threshold(void **state)
{
    (void)state;
    assert_int_equal(vmm_kvm_probe_classify(0.0), VMM_KVM_NATIVE);
    assert_int_equal(vmm_kvm_probe_classify(3.1), VMM_KVM_NATIVE);
    assert_int_equal(vmm_kvm_probe_classify(VMM_KVM_PROBE_SLOW_MS - 0.01), VMM_KVM_NATIVE);
    assert_int_equal(vmm_kvm_probe_classify(VMM_KVM_PROBE_SLOW_MS), VMM_KVM_SLOW);
    assert_int_equal(vmm_kvm_probe_classify(5400.0), VMM_KVM_SLOW);
}

static void test_vmm_kvm_probe_classify_bad_values(void **state)
{
    (void)state;
    /* Values no measurement can give are "unavailable", never "native". */
    assert_int_equal(vmm_kvm_probe_classify(-1.0), VMM_KVM_UNAVAILABLE);
    assert_int_equal(vmm_kvm_probe_classify(NAN), VMM_KVM_UNAVAILABLE);
    assert_int_equal(vmm_kvm_probe_classify(INFINITY), VMM_KVM_UNAVAILABLE);
}

static void test_vmm_kvm_probe_format_native(void **state)
{
    (void)state;
    struct vmm_kvm_probe_result r = {.speed = VMM_KVM_NATIVE, .ref_ms = 3.14};
    char line[128];
    assert_int_equal(vmm_kvm_probe_format(0, &r, line, sizeof(line)), 0);
    assert_string_equal(line, "kvm: native 3.1 ms");
}

static void test_vmm_kvm_probe_format_slow(void **state)
{
    (void)state;
    struct vmm_kvm_probe_result r = {.speed = VMM_KVM_SLOW, .ref_ms = 1840.4};
    char line[128];
    assert_int_equal(vmm_kvm_probe_format(0, &r, line, sizeof(line)), 1);
    assert_string_equal(line, "kvm: slow 1840 ms (nested KVM emulating guest ring 0)");
}

static void test_vmm_kvm_probe_format_unavailable(void **state)
{
    (void)state;
    struct vmm_kvm_probe_result r = {.speed = VMM_KVM_UNAVAILABLE};
    char line[128];
    memcpy(r.reason, "/dev/kvm: Permission denied", sizeof("/dev/kvm: Permission denied"));
    assert_int_equal(vmm_kvm_probe_format(0, &r, line, sizeof(line)), 2);
    assert_string_equal(line, "kvm: unavailable: /dev/kvm: Permission denied");
    /* No reason recorded still gives a complete line. */
    r.reason[0] = '\0';
    assert_int_equal(vmm_kvm_probe_format(0, &r, line, sizeof(line)), 2);
    assert_string_equal(line, "kvm: unavailable: unknown reason");
}

static void test_vmm_kvm_probe_format_failed_probe(void **state)
{
    (void)state;
    char line[128];
    /* A probe that failed (not a verdict) is reported as unavailable with errno text. */
    assert_int_equal(vmm_kvm_probe_format(-ENOMEM, NULL, line, sizeof(line)), 2);
    assert_string_equal(line, "kvm: unavailable: probe failed: Cannot allocate memory");
}

static void test_vmm_kvm_probe_format_small_buffer(void **state)
{
    (void)state;
    struct vmm_kvm_probe_result r = {.speed = VMM_KVM_SLOW, .ref_ms = 1840.0};
    char line[12];
    memset(line, 'x', sizeof(line));
    /* Truncated but terminated; the exit code does not depend on the buffer. */
    assert_int_equal(vmm_kvm_probe_format(0, &r, line, sizeof(line)), 1);
    assert_int_equal(strlen(line), sizeof(line) - 1);
    assert_memory_equal(line, "kvm: slow 1", sizeof(line) - 1);
    assert_int_equal(vmm_kvm_probe_format(0, &r, NULL, 0), 2);
}

static void test_vmm_kvm_probe_null_result(void **state)
{
    (void)state;
    assert_int_equal(vmm_kvm_probe(NULL), -EINVAL);
    assert_int_equal(vmm_kvm_probe_path(NULL, NULL), -EINVAL);
}

static void test_vmm_kvm_probe_path_missing_device(void **state)
{
    (void)state;
    struct vmm_kvm_probe_result r;
    memset(&r, 0xff, sizeof(r));
    assert_int_equal(vmm_kvm_probe_path("/nonexistent/kvm", &r), 0);
    assert_int_equal(r.speed, VMM_KVM_UNAVAILABLE);
    assert_string_equal(r.reason, "/nonexistent/kvm: No such file or directory");
    assert_int_equal(r.iterations, 0);
}

static void test_vmm_kvm_probe_path_not_kvm(void **state)
{
    (void)state;
    struct vmm_kvm_probe_result r;
    /* A device that is not KVM: the API-version ioctl fails, nothing runs. */
    assert_int_equal(vmm_kvm_probe_path("/dev/null", &r), 0);
    assert_int_equal(r.speed, VMM_KVM_UNAVAILABLE);
    assert_non_null(strstr(r.reason, "/dev/null is not a usable KVM device"));
    char line[256];
    assert_int_equal(vmm_kvm_probe_format(0, &r, line, sizeof(line)), 2);
}

static void test_vmm_kvm_probe_real_device_bounded(void **state)
{
    (void)state;
    struct vmm_kvm_probe_result r;
    double t0 = now_ms();
    assert_int_equal(vmm_kvm_probe(&r), 0);
    double took = now_ms() - t0;
    print_message("probe: speed %d, %.1f ms reference, %.3f ns/iteration, %.0f ms wall%s%s\n",
                  (int)r.speed, r.ref_ms, r.ns_per_iter, took, r.reason[0] ? ", " : "", r.reason);
    /* The budget is 250 ms of guest time; allow for a slow, loaded machine. */
    assert_true(took < 1500.0);
    if (access("/dev/kvm", R_OK | W_OK) != 0) {
        assert_int_equal(r.speed, VMM_KVM_UNAVAILABLE);
        assert_true(r.reason[0] != '\0');
        return;
    }
    if (r.speed == VMM_KVM_UNAVAILABLE) {
        /* /dev/kvm opened but a VM could not run: the reason must say why. */
        assert_true(r.reason[0] != '\0');
        return;
    }
    assert_true(r.iterations > 0);
    assert_true(r.ns_per_iter > 0);
    assert_true(r.elapsed_ms > 0 && r.elapsed_ms <= took);
    assert_int_equal(r.speed, vmm_kvm_probe_classify(r.ref_ms));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vmm_kvm_probe_classify_threshold),
        cmocka_unit_test(test_vmm_kvm_probe_classify_bad_values),
        cmocka_unit_test(test_vmm_kvm_probe_format_native),
        cmocka_unit_test(test_vmm_kvm_probe_format_slow),
        cmocka_unit_test(test_vmm_kvm_probe_format_unavailable),
        cmocka_unit_test(test_vmm_kvm_probe_format_failed_probe),
        cmocka_unit_test(test_vmm_kvm_probe_format_small_buffer),
        cmocka_unit_test(test_vmm_kvm_probe_null_result),
        cmocka_unit_test(test_vmm_kvm_probe_path_missing_device),
        cmocka_unit_test(test_vmm_kvm_probe_path_not_kvm),
        cmocka_unit_test(test_vmm_kvm_probe_real_device_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
