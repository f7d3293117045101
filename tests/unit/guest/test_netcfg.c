/*
 * Unit tests for guest/init/netcfg.c: `capsem.http_ports=` parsing and the
 * nftables rules text. Bad port lists (empty items, non-digits, 0, values
 * above 65535, too many ports) give -EINVAL/-E2BIG and leave the output
 * count alone; a buffer too small for the rules gives -ENOSPC.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "netcfg.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static int parse(const char *s, uint16_t *out, size_t max, size_t *n)
{
    struct slice v = {(const uint8_t *)s, strlen(s)};
    return netcfg_parse_ports(v, out, max, n);
}

static void test_netcfg_parse_ports_list(void **state)
{
    (void)state;
    uint16_t p[8];
    size_t n = 99;
    assert_int_equal(parse("8080,3000", p, 8, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(p[0], 8080);
    assert_int_equal(p[1], 3000);
    assert_int_equal(parse("1,65535", p, 8, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(p[1], 65535);
    assert_int_equal(parse("", p, 8, &n), 0);
    assert_int_equal(n, 0);
}

static void test_netcfg_parse_ports_drops_duplicates_and_reserved(void **state)
{
    (void)state;
    uint16_t p[8];
    size_t n = 99;
    assert_int_equal(parse("8080,80,443,8080,53,15002,15004,9000", p, 8, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(p[0], 8080);
    assert_int_equal(p[1], 9000);
}

static void test_netcfg_parse_ports_bad(void **state)
{
    (void)state;
    uint16_t p[8];
    const char *bad[] = {",",  "8080,", ",8080", "80a",        "0",   "65536", "99999999999",
                         "-1", " 80",   "80 ",   "8080,,3000", "+80", "0x50"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        size_t n = 77;
        assert_int_equal(parse(bad[i], p, 8, &n), -EINVAL);
        assert_int_equal(n, 77);
    }
}

static void test_netcfg_parse_ports_too_many(void **state)
{
    (void)state;
    uint16_t p[NETCFG_MAX_EXTRA_PORTS];
    size_t n = 77;
    assert_int_equal(parse("1,2,3", p, 2, &n), -E2BIG);
    assert_int_equal(n, 77);
    char list[256] = "";
    size_t len = 0;
    for (int i = 0; i <= NETCFG_MAX_EXTRA_PORTS; i++)
        len += (size_t)snprintf(list + len, sizeof(list) - len, "%s%d", i ? "," : "", 1000 + i);
    assert_int_equal(parse(list, p, 1000, &n), -E2BIG);
    assert_int_equal(n, 77);
}

static void test_netcfg_rules_text(void **state)
{
    (void)state;
    char r[4096];
    uint16_t extra[] = {8080, 3000};
    int n = netcfg_rules(r, sizeof(r), extra, 2);
    assert_true(n > 0);
    assert_int_equal((size_t)n, strlen(r));
    assert_non_null(strstr(r, "flush ruleset\n"));
    assert_non_null(strstr(r, "type nat hook output priority -100; policy accept;"));
    assert_non_null(strstr(r, "tcp dport { 80, 443, 8080, 3000 } redirect to :15002\n"));
    assert_non_null(strstr(r, "udp dport 53 redirect to :15004\n"));
    assert_non_null(strstr(r, "tcp dport 53 redirect to :15004\n"));
    assert_non_null(strstr(r, "type filter hook output priority 0; policy drop;"));
    assert_non_null(strstr(r, "meta l4proto tcp reject with tcp reset\n"));
    assert_non_null(strstr(r, "reject with icmp type port-unreachable\n"));
    /* DNS redirects come before loopback is left alone (the resolver is 127.0.0.1). */
    assert_true(strstr(r, "udp dport 53") < strstr(r, "ip daddr 127.0.0.0/8 return"));
    assert_true(strstr(r, "ip daddr 127.0.0.0/8 return") < strstr(r, "tcp dport { 80"));
    /* Loopback accepted before the rejects. */
    assert_true(strstr(r, "ip daddr 127.0.0.0/8 accept") < strstr(r, "reject with tcp reset"));
}

static void test_netcfg_rules_no_extra(void **state)
{
    (void)state;
    char r[4096];
    assert_true(netcfg_rules(r, sizeof(r), NULL, 0) > 0);
    assert_non_null(strstr(r, "tcp dport { 80, 443 } redirect to :15002\n"));
}

static void test_netcfg_rules_small_buffer(void **state)
{
    (void)state;
    char r[4096];
    int full = netcfg_rules(r, sizeof(r), NULL, 0);
    assert_true(full > 0);
    assert_int_equal(netcfg_rules(r, (size_t)full, NULL, 0), -ENOSPC);
    assert_int_equal(netcfg_rules(r, 10, NULL, 0), -ENOSPC);
    assert_int_equal(netcfg_rules(r, 0, NULL, 0), -ENOSPC);
    assert_int_equal(netcfg_rules(r, (size_t)full + 1, NULL, 0), full);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_netcfg_parse_ports_list),
        cmocka_unit_test(test_netcfg_parse_ports_drops_duplicates_and_reserved),
        cmocka_unit_test(test_netcfg_parse_ports_bad),
        cmocka_unit_test(test_netcfg_parse_ports_too_many),
        cmocka_unit_test(test_netcfg_rules_text),
        cmocka_unit_test(test_netcfg_rules_no_extra),
        cmocka_unit_test(test_netcfg_rules_small_buffer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
