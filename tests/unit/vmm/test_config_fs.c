/*
 * capsem-vmm configuration of the virtio-fs share: the JSON "fs" object
 * ({path, tag, events}) and the --share DIR:TAG / --fs-events flags. Bad
 * input (not an object, missing path, unknown field, empty strings, a tag
 * over 36 bytes, --share without a tag) is a one-line error naming the field.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "config.h"

#include <errno.h>
#include <string.h>

static int parse(struct vmm_config *c, const char *json, char *err, size_t errsz)
{
    return vmm_config_parse_json(c, json, strlen(json), err, errsz);
}

static void test_parse_json_fs_fields(void **state)
{
    (void)state;
    struct vmm_config c;
    char err[256] = "";
    vmm_config_init(&c);
    assert_null(c.fs_dir);
    assert_int_equal(parse(&c,
                           "{\"kernel\":\"k\",\"fs\":{\"path\":\"/srv/w\",\"tag\":\"work\","
                           "\"events\":\"/tmp/ev.jsonl\"}}",
                           err, sizeof(err)),
                     0);
    assert_string_equal(c.fs_dir, "/srv/w");
    assert_string_equal(c.fs_tag, "work");
    assert_string_equal(c.fs_events, "/tmp/ev.jsonl");
    assert_int_equal(vmm_config_validate(&c, err, sizeof(err)), 0);
    vmm_config_fini(&c);
}

static void test_parse_json_fs_bad(void **state)
{
    (void)state;
    static const struct {
        const char *json;
        const char *field;
    } cases[] = {
        {"{\"fs\":\"/srv\"}", "fs:"},
        {"{\"fs\":{\"tag\":\"x\"}}", "fs.path: missing"},
        {"{\"fs\":{\"path\":\"\"}}", "fs.path:"},
        {"{\"fs\":{\"path\":\"/a\",\"mode\":1}}", "fs.mode: unknown field"},
        {"{\"fs\":{\"path\":\"/a\",\"events\":3}}", "fs.events:"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct vmm_config c;
        char err[256] = "";
        vmm_config_init(&c);
        assert_int_equal(parse(&c, cases[i].json, err, sizeof(err)), -EINVAL);
        assert_non_null(strstr(err, cases[i].field));
        vmm_config_fini(&c);
    }
}

static void test_parse_args_share(void **state)
{
    (void)state;
    struct vmm_config c;
    enum vmm_action act;
    char err[256] = "";
    char *argv[] = {"capsem-vmm", "--kernel",    "k",         "--share",
                    "/a:b:mytag", "--fs-events", "/tmp/e.jl", NULL};
    vmm_config_init(&c);
    assert_int_equal(vmm_config_parse_args(&c, 7, argv, &act, err, sizeof(err)), 0);
    assert_string_equal(c.fs_dir, "/a:b"); /* the tag follows the last ':' */
    assert_string_equal(c.fs_tag, "mytag");
    assert_string_equal(c.fs_events, "/tmp/e.jl");
    assert_int_equal(vmm_config_validate(&c, err, sizeof(err)), 0);
    vmm_config_fini(&c);
}

static void test_parse_args_share_bad(void **state)
{
    (void)state;
    const char *bad[] = {"/dir", "/dir:", ":tag"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct vmm_config c;
        enum vmm_action act;
        char err[256] = "";
        char *argv[] = {"capsem-vmm", "--share", (char *)bad[i], NULL};
        vmm_config_init(&c);
        assert_int_equal(vmm_config_parse_args(&c, 3, argv, &act, err, sizeof(err)), -EINVAL);
        assert_non_null(strstr(err, "--share"));
        vmm_config_fini(&c);
    }
}

static void test_validate_fs_tag_and_path(void **state)
{
    (void)state;
    struct vmm_config c;
    char err[256] = "";
    vmm_config_init(&c);
    assert_int_equal(parse(&c,
                           "{\"kernel\":\"k\",\"fs\":{\"path\":\"/a\",\"tag\":"
                           "\"0123456789012345678901234567890123456\"}}",
                           err, sizeof(err)),
                     0);
    assert_int_equal(vmm_config_validate(&c, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "fs.tag"));
    vmm_config_fini(&c);
    /* events without a directory */
    vmm_config_init(&c);
    char *argv[] = {"capsem-vmm", "--kernel", "k", "--fs-events", "/tmp/x", NULL};
    enum vmm_action act;
    assert_int_equal(vmm_config_parse_args(&c, 5, argv, &act, err, sizeof(err)), 0);
    assert_int_equal(vmm_config_validate(&c, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "fs.path"));
    vmm_config_fini(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_json_fs_fields),
        cmocka_unit_test(test_parse_json_fs_bad),
        cmocka_unit_test(test_parse_args_share),
        cmocka_unit_test(test_parse_args_share_bad),
        cmocka_unit_test(test_validate_fs_tag_and_path),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
