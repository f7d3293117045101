/*
 * Unit tests for guest/agent/ca.c: installing the host's CA under a
 * temporary root and the environment that points TLS clients at it. Bad
 * input (not PEM, no END line, control bytes, over CA_PEM_MAX) gives -EINVAL
 * and writes nothing; installing twice does not append twice; a bundle
 * without a final newline keeps its last certificate intact.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "ca.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char pem[] = "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n";

static char *mkroot(void)
{
    char *d = strdup("/tmp/capsem-ca-test.XXXXXX");
    assert_non_null(mkdtemp(d));
    return d;
}

static void rmroot(char *d)
{
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", d);
    assert_int_equal(system(cmd), 0);
    free(d);
}

static char *slurp(const char *root, const char *path, size_t *len)
{
    char p[512];
    snprintf(p, sizeof(p), "%s%s", root, path);
    FILE *f = fopen(p, "r");
    if (!f)
        return NULL;
    char *b = calloc(1, 1 << 16);
    *len = fread(b, 1, (1 << 16) - 1, f);
    fclose(f);
    return b;
}

static void put(const char *root, const char *path, const char *text)
{
    char p[512];
    snprintf(p, sizeof(p), "%s/etc", root);
    mkdir(p, 0755);
    snprintf(p, sizeof(p), "%s/etc/ssl", root);
    mkdir(p, 0755);
    snprintf(p, sizeof(p), "%s/etc/ssl/certs", root);
    mkdir(p, 0755);
    snprintf(p, sizeof(p), "%s%s", root, path);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_ca_install_file_only(void **state)
{
    (void)state;
    char *root = mkroot();
    const char *env[CA_ENV_MAX];
    assert_int_equal(ca_env(root, env), 0);
    assert_int_equal(ca_install(root, pem, strlen(pem)), 0);
    size_t len;
    char *got = slurp(root, CA_FILE, &len);
    assert_non_null(got);
    assert_string_equal(got, pem);
    free(got);
    char p[512];
    struct stat st;
    snprintf(p, sizeof(p), "%s%s", root, CA_FILE);
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0644);
    /* No bundle in this root: none is created, only NODE_EXTRA_CA_CERTS applies. */
    assert_null(slurp(root, CA_BUNDLE, &len));
    assert_int_equal(ca_env(root, env), 1);
    assert_string_equal(env[0], "NODE_EXTRA_CA_CERTS=/etc/capsem/ca.crt");
    rmroot(root);
}

static void test_ca_install_appends_bundle_once(void **state)
{
    (void)state;
    char *root = mkroot();
    const char *old = "-----BEGIN CERTIFICATE-----\nOLD\n-----END CERTIFICATE-----"; /* no \n */
    put(root, CA_BUNDLE, old);
    assert_int_equal(ca_install(root, pem, strlen(pem)), 0);
    assert_int_equal(ca_install(root, pem, strlen(pem)), 0);
    size_t len;
    char *got = slurp(root, CA_BUNDLE, &len);
    char want[512];
    snprintf(want, sizeof(want), "%s\n%s", old, pem);
    assert_string_equal(got, want);
    free(got);
    const char *env[CA_ENV_MAX];
    assert_int_equal(ca_env(root, env), 4);
    assert_string_equal(env[0], "NODE_EXTRA_CA_CERTS=/etc/capsem/ca.crt");
    assert_string_equal(env[1], "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt");
    assert_string_equal(env[2], "REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt");
    assert_string_equal(env[3], "GIT_SSL_CAINFO=/etc/ssl/certs/ca-certificates.crt");
    rmroot(root);
}

static void test_ca_install_no_final_newline(void **state)
{
    (void)state;
    char *root = mkroot();
    size_t l = strlen(pem) - 1;
    assert_int_equal(ca_install(root, pem, l), 0);
    size_t len;
    char *got = slurp(root, CA_FILE, &len);
    assert_string_equal(got, pem); /* newline added */
    free(got);
    rmroot(root);
}

static void test_ca_install_bad_pem(void **state)
{
    (void)state;
    char *root = mkroot();
    const char *bad[] = {
        "",
        "hello",
        "-----BEGIN CERTIFICATE-----\nMIIB\n",                            /* no END */
        "-----BEGIN PRIVATE KEY-----\nX\n-----END PRIVATE KEY-----\n",    /* not a cert */
        "-----BEGIN CERTIFICATE-----\n\x01\n-----END CERTIFICATE-----\n", /* control byte */
        " -----BEGIN CERTIFICATE-----\nX\n-----END CERTIFICATE-----\n",   /* leading junk */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(ca_install(root, bad[i], strlen(bad[i])), -EINVAL);
    /* A NUL inside (JSON strings may carry one) is refused too. */
    char withnul[sizeof(pem)];
    memcpy(withnul, pem, sizeof(pem));
    withnul[30] = '\0';
    assert_int_equal(ca_install(root, withnul, sizeof(pem) - 1), -EINVAL);
    size_t big = CA_PEM_MAX + 1;
    char *huge = malloc(big);
    memset(huge, 'A', big);
    memcpy(huge, pem, strlen(pem));
    assert_int_equal(ca_install(root, huge, big), -EINVAL);
    free(huge);
    size_t len;
    assert_null(slurp(root, CA_FILE, &len));
    const char *env[CA_ENV_MAX];
    assert_int_equal(ca_env(root, env), 0);
    rmroot(root);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ca_install_file_only),
        cmocka_unit_test(test_ca_install_appends_bundle_once),
        cmocka_unit_test(test_ca_install_no_final_newline),
        cmocka_unit_test(test_ca_install_bad_pem),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
