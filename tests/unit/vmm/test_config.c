/*
 * Config parsing: a full file sets every field; defaults apply to absent
 * ones; each kind of bad input (invalid JSON, not an object, unknown field,
 * wrong type, out of range, missing vsock.uds, missing kernel) is refused
 * with one line that starts with the field's name. Flags override the file.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "config.h"

static int parse(struct vmm_config *c, const char *json, char *err, size_t errsz)
{
    vmm_config_init(c);
    return vmm_config_parse_json(c, json, strlen(json), err, errsz);
}

static void test_vmm_config_parse_json_full(void **state)
{
    (void)state;
    struct vmm_config c;
    char err[256] = "";
    const char *json = "{\"kernel\":\"/k/vmlinux\",\"initrd\":\"/k/initrd\","
                       "\"cmdline\":\"rdinit=/bin/sh\",\"memory_mib\":1024,\"vcpus\":4,"
                       "\"vsock\":{\"cid\":42,\"uds\":\"/tmp/v.sock\"},"
                       "\"serial\":{\"log\":\"/tmp/vm.log\",\"stdout\":true},"
                       "\"rng\":false,\"netns\":false,\"seccomp\":false}";
    assert_int_equal(parse(&c, json, err, sizeof(err)), 0);
    assert_string_equal(c.kernel, "/k/vmlinux");
    assert_string_equal(c.initrd, "/k/initrd");
    assert_string_equal(c.cmdline, "rdinit=/bin/sh");
    assert_int_equal(c.memory_mib, 1024);
    assert_int_equal(c.vcpus, 4);
    assert_true(c.vsock);
    assert_int_equal(c.vsock_cid, 42);
    assert_string_equal(c.vsock_uds, "/tmp/v.sock");
    assert_string_equal(c.serial_log, "/tmp/vm.log");
    assert_true(c.serial_stdout);
    assert_false(c.rng);
    assert_false(c.netns);
    assert_false(c.seccomp);
    assert_int_equal(vmm_config_validate(&c, err, sizeof(err)), 0);
    vmm_config_fini(&c);
}

static void test_vmm_config_parse_json_defaults(void **state)
{
    (void)state;
    struct vmm_config c;
    char err[256] = "";
    assert_int_equal(parse(&c, "{\"kernel\":\"/vmlinux\"}", err, sizeof(err)), 0);
    assert_int_equal(c.memory_mib, 512);
    assert_int_equal(c.vcpus, 1);
    assert_false(c.vsock);
    assert_null(c.initrd);
    assert_null(c.serial_log);
    assert_true(c.rng);
    assert_true(c.netns);
    assert_true(c.seccomp);
    vmm_config_fini(&c);
}

struct bad_case {
    const char *json;
    const char *prefix; /* the error must start with this */
};

static void test_vmm_config_parse_json_bad(void **state)
{
    (void)state;
    static const struct bad_case cases[] = {
        {"{\"kernel\":", "config: invalid JSON"},
        {"", "config: invalid JSON"},
        {"[1,2]", "config: expected a JSON object"},
        {"{\"kernel\":\"/k\",\"kernel\":\"/j\"}", "config: invalid JSON"}, /* duplicate */
        {"{\"kernal\":\"/k\"}", "kernal: unknown field"},
        {"{\"kernel\":5}", "kernel: expected a non-empty string"},
        {"{\"kernel\":\"\"}", "kernel: expected a non-empty string"},
        {"{\"initrd\":null}", "initrd: expected a non-empty string"},
        {"{\"cmdline\":[\"a\"]}", "cmdline: expected a string"},
        {"{\"memory_mib\":\"512\"}", "memory_mib: expected an integer"},
        {"{\"memory_mib\":512.5}", "memory_mib: expected an integer"},
        {"{\"memory_mib\":-1}", "memory_mib: expected an integer"},
        {"{\"memory_mib\":1}", "memory_mib: expected an integer from 32"},
        {"{\"vcpus\":0}", "vcpus: expected an integer from 1 to 32"},
        {"{\"vcpus\":33}", "vcpus: expected an integer from 1 to 32"},
        {"{\"vcpus\":true}", "vcpus: expected an integer"},
        {"{\"vsock\":true}", "vsock: expected an object"},
        {"{\"vsock\":{\"cid\":3}}", "vsock.uds: missing"},
        {"{\"vsock\":{\"cid\":2,\"uds\":\"/s\"}}", "vsock.cid: expected an integer from 3"},
        {"{\"vsock\":{\"cid\":\"3\",\"uds\":\"/s\"}}", "vsock.cid: expected an integer"},
        {"{\"vsock\":{\"uds\":\"/s\",\"port\":1}}", "vsock.port: unknown field"},
        {"{\"serial\":{\"stdout\":1}}", "serial.stdout: expected true or false"},
        {"{\"serial\":{\"log\":7}}", "serial.log: expected a non-empty string"},
        {"{\"serial\":{\"colour\":true}}", "serial.colour: unknown field"},
        {"{\"serial\":\"/tmp/x\"}", "serial: expected an object"},
        {"{\"rng\":\"yes\"}", "rng: expected true or false"},
        {"{\"netns\":0}", "netns: expected true or false"},
        {"{\"seccomp\":null}", "seccomp: expected true or false"},
        {"{\"disks\":{\"path\":\"/d\"}}", "disks: expected an array"},
        {"{\"disks\":[\"/d\"]}", "disks[0]: expected an object"},
        {"{\"disks\":[{\"read_only\":true}]}", "disks[0].path: missing"},
        {"{\"disks\":[{\"path\":\"\"}]}", "disks[0].path: expected a non-empty path"},
        {"{\"disks\":[{\"path\":3}]}", "disks[0].path: expected a non-empty path"},
        {"{\"disks\":[{\"path\":\"/a\"},{\"path\":\"/b\",\"ro\":true}]}",
         "disks[1].ro: unknown field"},
        {"{\"disks\":[{\"path\":\"/a\",\"read_only\":\"yes\"}]}",
         "disks[0].read_only: expected true or false"},
        {"{\"disks\":[{\"path\":\"/1\"},{\"path\":\"/2\"},{\"path\":\"/3\"},"
         "{\"path\":\"/4\"},{\"path\":\"/5\"}]}",
         "disks[4].path: at most 4 disks"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct vmm_config c;
        char err[256] = "";
        int ret = parse(&c, cases[i].json, err, sizeof(err));
        if (ret != -EINVAL || strncmp(err, cases[i].prefix, strlen(cases[i].prefix)) != 0)
            fail_msg("case %zu (%s): ret=%d err=\"%s\", expected prefix \"%s\"", i, cases[i].json,
                     ret, err, cases[i].prefix);
        assert_null(strchr(err, '\n')); /* one line */
        vmm_config_fini(&c);
    }
}

static void test_vmm_config_validate_missing_kernel(void **state)
{
    (void)state;
    struct vmm_config c;
    char err[256] = "";
    assert_int_equal(parse(&c, "{\"memory_mib\":64}", err, sizeof(err)), 0);
    assert_int_equal(vmm_config_validate(&c, err, sizeof(err)), -EINVAL);
    assert_true(strncmp(err, "kernel: missing", 15) == 0);
    vmm_config_fini(&c);
}

static void test_vmm_config_parse_args_flags(void **state)
{
    (void)state;
    struct vmm_config c;
    enum vmm_action act;
    char err[256] = "";
    char *argv[] = {"capsem-vmm",
                    "--kernel",
                    "/vmlinux",
                    "--initrd",
                    "/initrd",
                    "--append",
                    "quiet",
                    "--mem",
                    "256",
                    "--cpus",
                    "2",
                    "--cid",
                    "7",
                    "--vsock-uds",
                    "/tmp/s",
                    "--serial-stdout",
                    "--no-netns",
                    "--no-seccomp",
                    "--serial-log",
                    "/tmp/l"};
    vmm_config_init(&c);
    assert_int_equal(vmm_config_parse_args(&c, 20, argv, &act, err, sizeof(err)), 0);
    assert_int_equal(act, VMM_ACTION_RUN);
    assert_string_equal(c.kernel, "/vmlinux");
    assert_string_equal(c.initrd, "/initrd");
    assert_string_equal(c.cmdline, "quiet");
    assert_int_equal(c.memory_mib, 256);
    assert_int_equal(c.vcpus, 2);
    assert_int_equal(c.vsock_cid, 7);
    assert_true(c.vsock);
    assert_true(c.serial_stdout);
    assert_false(c.netns);
    assert_false(c.seccomp);
    assert_string_equal(c.serial_log, "/tmp/l");
    vmm_config_fini(&c);
}

static void test_vmm_config_parse_json_disks(void **state)
{
    (void)state;
    struct vmm_config c;
    char err[256] = "";
    assert_int_equal(parse(&c,
                           "{\"disks\":[{\"path\":\"/root.sqfs\",\"read_only\":true},"
                           "{\"path\":\"/scratch.img\"}]}",
                           err, sizeof(err)),
                     0);
    assert_int_equal(c.ndisks, 2);
    assert_string_equal(c.disks[0].path, "/root.sqfs");
    assert_true(c.disks[0].read_only);
    assert_string_equal(c.disks[1].path, "/scratch.img");
    assert_false(c.disks[1].read_only);
    vmm_config_fini(&c);
}

static void test_vmm_config_parse_args_disks(void **state)
{
    (void)state;
    struct vmm_config c;
    enum vmm_action act;
    char err[256] = "";
    char *argv[] = {"capsem-vmm", "--disk", "/r.sqfs,ro", "--disk", "/a,b.img", "--disk", "/s,rw"};
    vmm_config_init(&c);
    assert_int_equal(vmm_config_parse_args(&c, 7, argv, &act, err, sizeof(err)), 0);
    assert_int_equal(c.ndisks, 3);
    assert_string_equal(c.disks[0].path, "/r.sqfs");
    assert_true(c.disks[0].read_only);
    /* A comma not followed by ro/rw is part of the path. */
    assert_string_equal(c.disks[1].path, "/a,b.img");
    assert_false(c.disks[1].read_only);
    assert_string_equal(c.disks[2].path, "/s");
    assert_false(c.disks[2].read_only);
    vmm_config_fini(&c);
}

static void test_vmm_config_parse_args_bad(void **state)
{
    (void)state;
    static const struct {
        int argc;
        const char *argv[3];
        const char *prefix;
    } cases[] = {
        {2, {"vmm", "--mem"}, "--mem: missing value"},
        {3, {"vmm", "--mem", "12x"}, "--mem: expected an integer"},
        {3, {"vmm", "--mem", "-5"}, "--mem: expected an integer"},
        {3, {"vmm", "--cpus", "99"}, "--cpus: expected an integer from 1 to 32"},
        {3, {"vmm", "--cid", "1"}, "--cid: expected an integer from 3"},
        {2, {"vmm", "--bogus"}, "--bogus: unknown flag"},
        {3, {"vmm", "--config", "/nonexistent.json"}, "config: cannot open /nonexistent.json"},
        {3, {"vmm", "--kernel", ""}, "--kernel: missing value"},
        {2, {"vmm", "--disk"}, "--disk: missing value"},
        {3, {"vmm", "--disk", ",ro"}, "--disk: expected a non-empty path"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct vmm_config c;
        enum vmm_action act = VMM_ACTION_HELP;
        char err[256] = "";
        vmm_config_init(&c);
        int ret = vmm_config_parse_args(&c, cases[i].argc, (char **)cases[i].argv, &act, err,
                                        sizeof(err));
        if (ret != -EINVAL || strncmp(err, cases[i].prefix, strlen(cases[i].prefix)) != 0)
            fail_msg("case %zu: ret=%d err=\"%s\" expected \"%s\"", i, ret, err, cases[i].prefix);
        vmm_config_fini(&c);
    }
}

static void test_vmm_config_parse_args_file_then_flags(void **state)
{
    (void)state;
    char path[] = "/tmp/test-vmm-config-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *json = "{\"kernel\":\"/from/file\",\"memory_mib\":128,\"vcpus\":2}";
    assert_int_equal(write(fd, json, strlen(json)), (ssize_t)strlen(json));
    close(fd);
    struct vmm_config c;
    enum vmm_action act;
    char err[256] = "";
    /* --mem before --config still wins: the file is read first */
    char *argv[] = {"vmm", "--mem", "64", "--config", path, "--probe"};
    vmm_config_init(&c);
    assert_int_equal(vmm_config_parse_args(&c, 6, argv, &act, err, sizeof(err)), 0);
    assert_int_equal(act, VMM_ACTION_PROBE);
    assert_string_equal(c.kernel, "/from/file");
    assert_int_equal(c.memory_mib, 64);
    assert_int_equal(c.vcpus, 2);
    vmm_config_fini(&c);
    /* a broken file names itself and the problem */
    fd = open(path, O_WRONLY | O_TRUNC);
    assert_int_equal(write(fd, "{\"vcpus\":\"two\"}", 15), 15);
    close(fd);
    char *argv2[] = {"vmm", "--config", path};
    vmm_config_init(&c);
    assert_int_equal(vmm_config_parse_args(&c, 3, argv2, &act, err, sizeof(err)), -EINVAL);
    assert_true(strncmp(err, "vcpus: expected an integer", 26) == 0);
    vmm_config_fini(&c);
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vmm_config_parse_json_full),
        cmocka_unit_test(test_vmm_config_parse_json_defaults),
        cmocka_unit_test(test_vmm_config_parse_json_bad),
        cmocka_unit_test(test_vmm_config_validate_missing_kernel),
        cmocka_unit_test(test_vmm_config_parse_args_flags),
        cmocka_unit_test(test_vmm_config_parse_args_bad),
        cmocka_unit_test(test_vmm_config_parse_json_disks),
        cmocka_unit_test(test_vmm_config_parse_args_disks),
        cmocka_unit_test(test_vmm_config_parse_args_file_then_flags),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
