/*
 * Unit tests for guest/dnsstub/dnsid.c: the DNS stub's table of waiting
 * queries (unique rewritten ids, restore, timeouts, a TCP client leaving)
 * and its SERVFAIL replies. Bad input: a message shorter than a header gives
 * -EINVAL; a full table -ENOSPC; an unknown id is "not found"; a question
 * that does not parse (compression, running off the end) gives a SERVFAIL
 * without a question rather than a read past the message.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "dnsid.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* A query for example.com A with id 0x1234, RD set. */
static const uint8_t query[] = {0x12, 0x34, 0x01, 0x00, 0,   1, 0,   0,   0,   0, 0, 0, 7, 'e', 'x',
                                'a',  'm',  'p',  'l',  'e', 3, 'c', 'o', 'm', 0, 0, 1, 0, 1};

static struct dnsid_table *table(uint16_t seed)
{
    struct dnsid_table *t = malloc(sizeof(*t));
    assert_non_null(t);
    dnsid_init(t, seed);
    return t;
}

static void test_dnsid_add_unique_ids(void **state)
{
    (void)state;
    struct dnsid_table *t = table(0xfffe);
    struct dnsid_client cl = {0};
    uint16_t a, b, c;
    assert_int_equal(dnsid_add(t, query, sizeof(query), &cl, 100, &a), 0);
    assert_int_equal(dnsid_add(t, query, sizeof(query), &cl, 100, &b), 0);
    assert_int_equal(dnsid_add(t, query, sizeof(query), &cl, 100, &c), 0);
    /* Same client id three times, three different ids, wrapping past 0xffff. */
    assert_int_equal(a, 0xfffe);
    assert_int_equal(b, 0xffff);
    assert_int_equal(c, 0);
    struct dnsid_entry e;
    assert_true(dnsid_take(t, b, &e));
    assert_int_equal(e.orig_id, 0x1234);
    assert_false(dnsid_take(t, b, &e));
    /* Ids still waiting are skipped when the counter comes round again. */
    dnsid_init(t, 5);
    uint16_t x, y;
    assert_int_equal(dnsid_add(t, query, sizeof(query), &cl, 100, &x), 0);
    t->next = 5;
    assert_int_equal(dnsid_add(t, query, sizeof(query), &cl, 100, &y), 0);
    assert_int_equal(x, 5);
    assert_int_equal(y, 6);
    free(t);
}

static void test_dnsid_take_restores_client(void **state)
{
    (void)state;
    struct dnsid_table *t = table(1);
    struct dnsid_client cl = {.tcp_conn = 0};
    cl.udp_peer.sin_port = 4242;
    uint16_t id;
    assert_int_equal(dnsid_add(t, query, sizeof(query), &cl, 100, &id), 0);
    struct dnsid_entry e;
    assert_false(dnsid_take(t, (uint16_t)(id + 1), &e));
    assert_true(dnsid_take(t, id, &e));
    assert_int_equal(e.client.udp_peer.sin_port, 4242);
    assert_int_equal(e.orig_id, 0x1234);
    assert_int_equal(e.qlen, sizeof(query));
    assert_int_equal(t->n, 0);
    free(t);
}

static void test_dnsid_expire_by_deadline(void **state)
{
    (void)state;
    struct dnsid_table *t = table(1);
    struct dnsid_client cl = {0};
    uint16_t a, b;
    assert_int_equal(dnsid_add(t, query, sizeof(query), &cl, 1000, &a), 0);
    assert_int_equal(dnsid_add(t, query, sizeof(query), &cl, 6000, &b), 0);
    struct dnsid_entry e;
    assert_false(dnsid_take_expired(t, 999, false, &e));
    assert_true(dnsid_take_expired(t, 1000, false, &e));
    assert_int_equal(e.new_id, a);
    assert_false(dnsid_take_expired(t, 5999, false, &e));
    assert_true(dnsid_take_expired(t, 0, true, &e));
    assert_int_equal(e.new_id, b);
    assert_false(dnsid_take_expired(t, 99999, true, &e));
    free(t);
}

static void test_dnsid_take_client_only_that_one(void **state)
{
    (void)state;
    struct dnsid_table *t = table(1);
    struct dnsid_client c1 = {.tcp_conn = 1}, c2 = {.tcp_conn = 2}, udp = {0};
    uint16_t id;
    assert_int_equal(dnsid_add(t, query, sizeof(query), &c1, 100, &id), 0);
    assert_int_equal(dnsid_add(t, query, sizeof(query), &c2, 100, &id), 0);
    assert_int_equal(dnsid_add(t, query, sizeof(query), &c1, 100, &id), 0);
    assert_int_equal(dnsid_add(t, query, sizeof(query), &udp, 100, &id), 0);
    struct dnsid_entry e;
    int n = 0;
    while (dnsid_take_client(t, 1, &e)) {
        assert_int_equal(e.client.tcp_conn, 1);
        n++;
    }
    assert_int_equal(n, 2);
    assert_false(dnsid_take_client(t, 0, &e)); /* 0 is UDP, never a TCP client */
    assert_int_equal(t->n, 2);
    free(t);
}

static void test_dnsid_add_full_and_short(void **state)
{
    (void)state;
    struct dnsid_table *t = table(0);
    struct dnsid_client cl = {0};
    uint16_t id;
    assert_int_equal(dnsid_add(t, query, 11, &cl, 1, &id), -EINVAL);
    for (int i = 0; i < DNSID_MAX; i++)
        assert_int_equal(dnsid_add(t, query, sizeof(query), &cl, 1, &id), 0);
    assert_int_equal(dnsid_add(t, query, sizeof(query), &cl, 1, &id), -ENOSPC);
    assert_true(dnsid_take(t, 17, NULL));
    assert_int_equal(dnsid_add(t, query, sizeof(query), &cl, 1, &id), 0);
    assert_int_equal(id, DNSID_MAX); /* the counter moves on; 17 is free again */
    free(t);
}

static void test_dns_servfail_echoes_question(void **state)
{
    (void)state;
    uint8_t out[512];
    int n = dns_servfail(query, sizeof(query), out, sizeof(out));
    assert_int_equal(n, sizeof(query));
    assert_int_equal(dns_get_id(out), 0x1234);
    assert_int_equal(out[2], 0x81); /* QR, RD */
    assert_int_equal(out[3] & 0x0f, 2);
    assert_int_equal(out[5], 1);
    assert_int_equal(out[7] | out[9] | out[11], 0);
    assert_memory_equal(out + 12, query + 12, sizeof(query) - 12);
    /* An EDNS record after the question is not echoed. */
    uint8_t q2[sizeof(query) + 11];
    memcpy(q2, query, sizeof(query));
    memset(q2 + sizeof(query), 0, 11);
    q2[11] = 1;
    assert_int_equal(dns_servfail(q2, sizeof(q2), out, sizeof(out)), sizeof(query));
    assert_int_equal(out[11], 0);
}

static void test_dns_servfail_bad_question(void **state)
{
    (void)state;
    uint8_t out[512], q[sizeof(query)];
    /* Compression pointer in the question: header only. */
    memcpy(q, query, sizeof(q));
    q[12] = 0xc0;
    assert_int_equal(dns_servfail(q, sizeof(q), out, sizeof(out)), DNS_HDR_LEN);
    assert_int_equal(out[5], 0);
    /* Label running off the end. */
    memcpy(q, query, sizeof(q));
    q[12] = 60;
    assert_int_equal(dns_servfail(q, sizeof(q), out, sizeof(out)), DNS_HDR_LEN);
    /* Question cut before its type and class. */
    assert_int_equal(dns_servfail(query, sizeof(query) - 2, out, sizeof(out)), DNS_HDR_LEN);
    assert_int_equal(dns_servfail(query, 11, out, sizeof(out)), -EINVAL);
    assert_int_equal(dns_servfail(query, sizeof(query), out, 20), -ENOSPC);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dnsid_add_unique_ids),
        cmocka_unit_test(test_dnsid_take_restores_client),
        cmocka_unit_test(test_dnsid_expire_by_deadline),
        cmocka_unit_test(test_dnsid_take_client_only_that_one),
        cmocka_unit_test(test_dnsid_add_full_and_short),
        cmocka_unit_test(test_dns_servfail_echoes_question),
        cmocka_unit_test(test_dns_servfail_bad_question),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
