/*
 * Unit tests for mitm/dns.{h,c}: the address pool (same address for the same
 * name, .0/.255 skipped, full at 130048 names with -ENOSPC, reverse lookup,
 * threads); dns_answer() with every answer parsed back byte by byte (A,
 * NODATA for AAAA and other types, NXDOMAIN when blocked, REFUSED for the
 * root, EDNS OPT tolerated) and every kind of malformed query (FORMERR when
 * the id is readable, dropped otherwise; compression loops; truncation at
 * every length; random corruption); and the service over a socketpair (two
 * queries answered, a policy swap seen by the next query, an oversized length
 * closing the connection, destroy with a connection still open, the cap of
 * 64 connections).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "dns.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- a sink that records events (callbacks come from service threads) ---- */

#define REC_MAX 64

struct rec_event {
    char name[256], type[16], rule[80], answer[32];
    bool has_name, has_type, has_rule;
    enum decision decision;
};

struct recorder {
    pthread_mutex_t lock;
    struct rec_event ev[REC_MAX];
    size_t n;
};

static void copy_opt(char *dst, size_t len, const char *src, bool *has)
{
    if (has)
        *has = src != NULL;
    snprintf(dst, len, "%s", src ? src : "");
}

static void rec_dns(void *opaque, const struct dns_event *ev)
{
    struct recorder *r = opaque;
    pthread_mutex_lock(&r->lock);
    if (r->n < REC_MAX) {
        struct rec_event *e = &r->ev[r->n++];
        copy_opt(e->name, sizeof(e->name), ev->name, &e->has_name);
        copy_opt(e->type, sizeof(e->type), ev->type, &e->has_type);
        copy_opt(e->rule, sizeof(e->rule), ev->rule, &e->has_rule);
        copy_opt(e->answer, sizeof(e->answer), ev->answer, NULL);
        e->decision = ev->decision;
    }
    pthread_mutex_unlock(&r->lock);
}

static const struct sink_ops rec_ops = {.dns = rec_dns};

static struct recorder rec;
static struct sink rec_sink = {.ops = &rec_ops, .opaque = &rec};

static size_t rec_count(void)
{
    pthread_mutex_lock(&rec.lock);
    size_t n = rec.n;
    pthread_mutex_unlock(&rec.lock);
    return n;
}

static void rec_reset(void)
{
    pthread_mutex_lock(&rec.lock);
    rec.n = 0;
    pthread_mutex_unlock(&rec.lock);
}

/* ---- policies ---- */

static struct policy *make_policy(const char *text)
{
    json_error_t je;
    json_t *j = json_loads(text, 0, &je);
    assert_non_null(j);
    struct policy *p = NULL;
    char err[256];
    if (policy_build(NULL, NULL, j, "user.json", &p, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    json_decref(j);
    return p;
}

static const char *const POLICY_TEXT =
    "{\"network\":{\"default\":\"block\",\"rules\":["
    "{\"id\":\"ex\",\"domain\":\"example.com\",\"action\":\"allow\"},"
    "{\"id\":\"bad\",\"domain\":\"evil.example.org\",\"action\":\"block\"},"
    "{\"id\":\"wild\",\"domain\":\"*.example.org\",\"action\":\"allow\"},"
    "{\"id\":\"watch\",\"domain\":\"watched.net\",\"action\":\"log\"}]}}";

/* ---- building queries ---- */

struct qbuf {
    uint8_t b[600];
    size_t len;
};

static void put8(struct qbuf *q, uint8_t v)
{
    assert_true(q->len < sizeof(q->b));
    q->b[q->len++] = v;
}

static void put16(struct qbuf *q, uint16_t v)
{
    put8(q, (uint8_t)(v >> 8));
    put8(q, (uint8_t)v);
}

static void put_header(struct qbuf *q, uint16_t id, uint16_t flags, uint16_t qd, uint16_t an,
                       uint16_t ns, uint16_t ar)
{
    q->len = 0;
    put16(q, id);
    put16(q, flags);
    put16(q, qd);
    put16(q, an);
    put16(q, ns);
    put16(q, ar);
}

/* "a.b.c" as labels, root-terminated. */
static void put_name(struct qbuf *q, const char *name)
{
    const char *p = name;
    while (*p) {
        const char *dot = strchr(p, '.');
        size_t l = dot ? (size_t)(dot - p) : strlen(p);
        put8(q, (uint8_t)l);
        for (size_t i = 0; i < l; i++)
            put8(q, (uint8_t)p[i]);
        p += l;
        if (*p == '.')
            p++;
    }
    put8(q, 0);
}

static void put_opt(struct qbuf *q, uint16_t rdlen)
{
    put8(q, 0);       /* root owner */
    put16(q, 41);     /* OPT */
    put16(q, 1232);   /* UDP payload size */
    put16(q, 0);      /* extended rcode, version */
    put16(q, 0x8000); /* DO bit */
    put16(q, rdlen);
    for (uint16_t i = 0; i < rdlen; i++)
        put8(q, 0);
}

static void make_query(struct qbuf *q, uint16_t id, const char *name, uint16_t type, bool edns)
{
    put_header(q, id, 0x0100, 1, 0, 0, edns ? 1 : 0);
    put_name(q, name);
    put16(q, type);
    put16(q, 1);
    if (edns)
        put_opt(q, 0);
}

/* ---- parsing answers back ---- */

struct parsed {
    uint16_t id, flags, qd, an, ns, ar;
    char qname[256]; /* as spelled on the wire, dotted */
    uint16_t qtype, qclass;
    bool has_a;
    uint32_t ttl;
    struct in_addr a;
};

static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

/* Parse an answer strictly the way a resolver would; the test fails on any surprise. */
static void parse_answer(const uint8_t *m, long len, struct parsed *r)
{
    memset(r, 0, sizeof(*r));
    assert_true(len >= 12);
    r->id = get16(m);
    r->flags = get16(m + 2);
    r->qd = get16(m + 4);
    r->an = get16(m + 6);
    r->ns = get16(m + 8);
    r->ar = get16(m + 10);
    assert_int_equal(r->ns, 0);
    assert_int_equal(r->ar, 0);
    size_t pos = 12;
    if (r->qd) {
        assert_int_equal(r->qd, 1);
        size_t o = 0;
        while (m[pos]) {
            uint8_t l = m[pos];
            assert_true(l < 64);
            assert_true(pos + 1 + l < (size_t)len);
            if (o)
                r->qname[o++] = '.';
            memcpy(r->qname + o, m + pos + 1, l);
            o += l;
            pos += 1u + l;
        }
        r->qname[o] = '\0';
        pos++;
        assert_true(pos + 4 <= (size_t)len);
        r->qtype = get16(m + pos);
        r->qclass = get16(m + pos + 2);
        pos += 4;
    }
    if (r->an) {
        assert_int_equal(r->an, 1);
        assert_true(pos + 16 <= (size_t)len);
        assert_int_equal(get16(m + pos), 0xC00C); /* points at the question's name */
        assert_int_equal(get16(m + pos + 2), 1);  /* A */
        assert_int_equal(get16(m + pos + 4), 1);  /* IN */
        r->ttl = (uint32_t)get16(m + pos + 6) << 16 | get16(m + pos + 8);
        assert_int_equal(get16(m + pos + 10), 4);
        memcpy(&r->a.s_addr, m + pos + 12, 4);
        r->has_a = true;
        pos += 16;
    }
    assert_int_equal(pos, (size_t)len); /* nothing after */
}

#define RCODE(p) ((p)->flags & 0xF)
#define QR 0x8000
#define RD 0x0100
#define RA 0x0080

static bool in_pool(struct in_addr a)
{
    uint32_t h = ntohl(a.s_addr);
    return h >= 0xC6120000u && h <= 0xC613FFFFu && (h & 255) != 0 && (h & 255) != 255;
}

/* ---- pool ---- */

static void test_dns_pool_assign_same_address_twice(void **state)
{
    (void)state;
    struct dns_pool *p = NULL;
    assert_int_equal(dns_pool_create(&p), 0);
    struct in_addr a1, a2, b;
    assert_int_equal(dns_pool_assign(p, "a.com", &a1), 0);
    assert_int_equal(dns_pool_assign(p, "b.com", &b), 0);
    assert_int_equal(dns_pool_assign(p, "A.Com", &a2), 0);
    assert_int_equal(a1.s_addr, a2.s_addr);
    assert_int_not_equal(a1.s_addr, b.s_addr);
    assert_true(in_pool(a1) && in_pool(b));
    char name[64];
    assert_int_equal(dns_pool_lookup(p, a1, name, sizeof(name)), 0);
    assert_string_equal(name, "a.com");
    assert_int_equal(dns_pool_lookup(p, b, name, sizeof(name)), 0);
    assert_string_equal(name, "b.com");
    char tiny[5];
    assert_int_equal(dns_pool_lookup(p, b, tiny, sizeof(tiny)), -ENAMETOOLONG);
    dns_pool_free(p);
    dns_pool_free(NULL);
}

static void test_dns_pool_lookup_unassigned(void **state)
{
    (void)state;
    struct dns_pool *p = NULL;
    assert_int_equal(dns_pool_create(&p), 0);
    char name[64];
    const char *addrs[] = {"198.18.0.1", "198.18.0.0", "198.18.0.255", "198.17.255.254",
                           "198.20.0.1", "10.0.0.1",   "0.0.0.0",      "255.255.255.255"};
    for (size_t i = 0; i < sizeof(addrs) / sizeof(addrs[0]); i++) {
        struct in_addr a;
        assert_int_equal(inet_pton(AF_INET, addrs[i], &a), 1);
        assert_int_equal(dns_pool_lookup(p, a, name, sizeof(name)), -ENOENT);
    }
    struct in_addr a;
    assert_int_equal(dns_pool_assign(p, "one.test", &a), 0);
    char text[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &a, text, sizeof(text));
    assert_string_equal(text, "198.18.0.1");
    assert_int_equal(inet_pton(AF_INET, "198.18.0.2", &a), 1);
    assert_int_equal(dns_pool_lookup(p, a, name, sizeof(name)), -ENOENT); /* next, not yet given */
    dns_pool_free(p);
}

static void test_dns_pool_assign_bad_name(void **state)
{
    (void)state;
    struct dns_pool *p = NULL;
    assert_int_equal(dns_pool_create(&p), 0);
    struct in_addr a;
    char longname[300];
    memset(longname, 'a', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    assert_int_equal(dns_pool_assign(p, "", &a), -EINVAL);
    assert_int_equal(dns_pool_assign(p, NULL, &a), -EINVAL);
    assert_int_equal(dns_pool_assign(p, longname, &a), -EINVAL);
    dns_pool_free(p);
}

/* The whole pool: .0 and .255 never given, 130048 names, then -ENOSPC. */
static void test_dns_pool_assign_until_full(void **state)
{
    (void)state;
    struct dns_pool *p = NULL;
    assert_int_equal(dns_pool_create(&p), 0);
    const size_t total = 512 * 254;
    uint32_t prev = 0;
    char name[32], back[32];
    struct in_addr a;
    for (size_t i = 0; i < total; i++) {
        snprintf(name, sizeof(name), "h%zu.test", i);
        assert_int_equal(dns_pool_assign(p, name, &a), 0);
        uint32_t h = ntohl(a.s_addr);
        if (!in_pool(a) || h <= prev)
            fail_msg("name %zu got %08x after %08x", i, h, prev);
        prev = h;
        if (i == 253)
            assert_int_equal(h, 0xC61200FEu); /* 198.18.0.254 */
        if (i == 254)
            assert_int_equal(h, 0xC6120101u); /* 198.18.1.1 */
    }
    assert_int_equal(prev, 0xC613FFFEu); /* 198.19.255.254 */
    assert_int_equal(dns_pool_assign(p, "one-more.test", &a), -ENOSPC);
    /* names already there still resolve, both ways */
    assert_int_equal(dns_pool_assign(p, "h777.test", &a), 0);
    assert_int_equal(dns_pool_lookup(p, a, back, sizeof(back)), 0);
    assert_string_equal(back, "h777.test");
    a.s_addr = htonl(0xC613FFFEu);
    assert_int_equal(dns_pool_lookup(p, a, back, sizeof(back)), 0);
    snprintf(name, sizeof(name), "h%zu.test", total - 1);
    assert_string_equal(back, name);
    /* with every address given, .0 and .255 still name nothing */
    const uint32_t never[] = {0xC6120000u, 0xC61200FFu, 0xC6120100u, 0xC613FFFFu, 0xC6140001u};
    for (size_t i = 0; i < sizeof(never) / sizeof(never[0]); i++) {
        a.s_addr = htonl(never[i]);
        assert_int_equal(dns_pool_lookup(p, a, back, sizeof(back)), -ENOENT);
    }
    dns_pool_free(p);
}

struct pool_thread {
    struct dns_pool *pool;
    uint32_t addr[500];
    int failures;
};

static void *pool_thread_main(void *arg)
{
    struct pool_thread *t = arg;
    for (int i = 0; i < 500; i++) {
        char name[32];
        snprintf(name, sizeof(name), "n%d.test", i);
        struct in_addr a;
        if (dns_pool_assign(t->pool, name, &a) != 0)
            t->failures++;
        t->addr[i] = a.s_addr;
        char back[32];
        if (dns_pool_lookup(t->pool, a, back, sizeof(back)) != 0 || strcmp(back, name) != 0)
            t->failures++;
    }
    return NULL;
}

static void test_dns_pool_assign_threads_agree(void **state)
{
    (void)state;
    struct dns_pool *p = NULL;
    assert_int_equal(dns_pool_create(&p), 0);
    struct pool_thread t[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        memset(&t[i], 0, sizeof(t[i]));
        t[i].pool = p;
        assert_int_equal(pthread_create(&th[i], NULL, pool_thread_main, &t[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(t[i].failures, 0);
    }
    for (int n = 0; n < 500; n++)
        for (int i = 1; i < 4; i++)
            assert_int_equal(t[i].addr[n], t[0].addr[n]);
    dns_pool_free(p);
}

/* ---- dns_answer ---- */

struct fixture {
    struct dns_pool *pool;
    struct policy *pol;
};

static struct fixture fx;

static int fx_setup(void **state)
{
    (void)state;
    if (dns_pool_create(&fx.pool) != 0)
        return -1;
    fx.pol = make_policy(POLICY_TEXT);
    rec_reset();
    return 0;
}

static int fx_teardown(void **state)
{
    (void)state;
    dns_pool_free(fx.pool);
    policy_unref(fx.pol);
    memset(&fx, 0, sizeof(fx));
    return 0;
}

static long answer(const struct qbuf *q, uint8_t *out, size_t cap)
{
    return dns_answer(fx.pool, fx.pol, &rec_sink, q->b, q->len, out, cap);
}

static const struct rec_event *last_event(void)
{
    assert_true(rec.n > 0);
    return &rec.ev[rec.n - 1];
}

static void test_dns_answer_a_allowed(void **state)
{
    (void)state;
    struct qbuf q;
    make_query(&q, 0x1234, "Example.COM", 1, false);
    uint8_t out[DNS_ANSWER_MAX];
    long n = answer(&q, out, sizeof(out));
    struct parsed r;
    parse_answer(out, n, &r);
    assert_int_equal(r.id, 0x1234);
    assert_int_equal(r.flags & (QR | RD | RA), QR | RD | RA);
    assert_int_equal((r.flags >> 11) & 0xF, 0);
    assert_int_equal(RCODE(&r), 0);
    assert_int_equal(r.qd, 1);
    assert_int_equal(r.an, 1);
    assert_string_equal(r.qname, "Example.COM"); /* echoed as spelled */
    assert_int_equal(r.qtype, 1);
    assert_int_equal(r.qclass, 1);
    assert_int_equal(r.ttl, 60);
    assert_true(in_pool(r.a));
    char name[64];
    assert_int_equal(dns_pool_lookup(fx.pool, r.a, name, sizeof(name)), 0);
    assert_string_equal(name, "example.com");

    const struct rec_event *e = last_event();
    assert_string_equal(e->name, "example.com");
    assert_string_equal(e->type, "A");
    assert_int_equal(e->decision, DECISION_ALLOW);
    assert_string_equal(e->rule, "ex");
    char text[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &r.a, text, sizeof(text));
    assert_string_equal(e->answer, text);

    /* the same name again, other id, lower case: the same address */
    make_query(&q, 0x0001, "example.com", 1, false);
    struct parsed r2;
    parse_answer(out, answer(&q, out, sizeof(out)), &r2);
    assert_int_equal(r2.id, 1);
    assert_int_equal(r2.a.s_addr, r.a.s_addr);
    /* a different allowed name: another address */
    make_query(&q, 2, "www.example.org", 1, false);
    parse_answer(out, answer(&q, out, sizeof(out)), &r2);
    assert_true(r2.has_a);
    assert_int_not_equal(r2.a.s_addr, r.a.s_addr);
    assert_string_equal(last_event()->rule, "wild");
}

static void test_dns_answer_log_decision(void **state)
{
    (void)state;
    struct qbuf q;
    make_query(&q, 7, "watched.net", 1, false);
    uint8_t out[DNS_ANSWER_MAX];
    struct parsed r;
    parse_answer(out, answer(&q, out, sizeof(out)), &r);
    assert_true(r.has_a);
    assert_int_equal(last_event()->decision, DECISION_LOG);
    assert_string_equal(last_event()->rule, "watch");
}

static void test_dns_answer_aaaa_nodata(void **state)
{
    (void)state;
    struct qbuf q;
    uint8_t out[DNS_ANSWER_MAX];
    struct parsed r;
    const struct {
        uint16_t type;
        const char *text;
    } types[] = {{28, "AAAA"}, {16, "TXT"}, {65, "HTTPS"}, {15, "MX"}, {999, "999"}};
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        make_query(&q, 9, "example.com", types[i].type, false);
        parse_answer(out, answer(&q, out, sizeof(out)), &r);
        assert_int_equal(RCODE(&r), 0);
        assert_int_equal(r.an, 0);
        assert_int_equal(r.qd, 1);
        assert_int_equal(r.qtype, types[i].type);
        assert_string_equal(last_event()->type, types[i].text);
        assert_string_equal(last_event()->answer, "NODATA");
        assert_int_equal(last_event()->decision, DECISION_ALLOW);
    }
    /* class CH, type A: no data either, no address used */
    put_header(&q, 3, 0x0100, 1, 0, 0, 0);
    put_name(&q, "example.com");
    put16(&q, 1);
    put16(&q, 3);
    parse_answer(out, answer(&q, out, sizeof(out)), &r);
    assert_int_equal(RCODE(&r), 0);
    assert_int_equal(r.an, 0);
    char name[64];
    struct in_addr first = {.s_addr = htonl(0xC6120001u)};
    assert_int_equal(dns_pool_lookup(fx.pool, first, name, sizeof(name)), -ENOENT);
}

static void test_dns_answer_blocked_nxdomain(void **state)
{
    (void)state;
    struct qbuf q;
    uint8_t out[DNS_ANSWER_MAX];
    struct parsed r;
    const char *names[] = {"evil.example.org", "unknown.test", "example.org"};
    const char *rules[] = {"bad", NULL, NULL};
    for (size_t i = 0; i < 3; i++) {
        for (uint16_t type = 1; type <= 28; type += 27) {
            make_query(&q, 0xBEEF, names[i], type, false);
            parse_answer(out, answer(&q, out, sizeof(out)), &r);
            assert_int_equal(r.id, 0xBEEF);
            assert_int_equal(RCODE(&r), 3);
            assert_int_equal(r.an, 0);
            assert_string_equal(r.qname, names[i]);
            const struct rec_event *e = last_event();
            assert_int_equal(e->decision, DECISION_BLOCK);
            assert_string_equal(e->answer, "NXDOMAIN");
            assert_int_equal(e->has_rule, rules[i] != NULL);
            if (rules[i])
                assert_string_equal(e->rule, rules[i]);
        }
    }
    /* nothing blocked took an address */
    char name[64];
    struct in_addr first = {.s_addr = htonl(0xC6120001u)};
    assert_int_equal(dns_pool_lookup(fx.pool, first, name, sizeof(name)), -ENOENT);
    /* no policy at all: blocked */
    make_query(&q, 1, "example.com", 1, false);
    parse_answer(out, dns_answer(fx.pool, NULL, NULL, q.b, q.len, out, sizeof(out)), &r);
    assert_int_equal(RCODE(&r), 3);
}

static void test_dns_answer_edns_tolerated(void **state)
{
    (void)state;
    struct qbuf q;
    make_query(&q, 0x4242, "example.com", 1, true);
    uint8_t out[DNS_ANSWER_MAX];
    struct parsed r;
    parse_answer(out, answer(&q, out, sizeof(out)), &r); /* asserts ar == 0 */
    assert_int_equal(RCODE(&r), 0);
    assert_true(r.has_a);
    /* OPT with options data */
    put_header(&q, 5, 0x0100, 1, 0, 0, 1);
    put_name(&q, "example.com");
    put16(&q, 1);
    put16(&q, 1);
    put_opt(&q, 8);
    parse_answer(out, answer(&q, out, sizeof(out)), &r);
    assert_int_equal(RCODE(&r), 0);
}

static void test_dns_answer_root_refused(void **state)
{
    (void)state;
    struct qbuf q;
    make_query(&q, 6, "", 2, false);
    uint8_t out[DNS_ANSWER_MAX];
    struct parsed r;
    parse_answer(out, answer(&q, out, sizeof(out)), &r);
    assert_int_equal(RCODE(&r), 5);
    assert_string_equal(r.qname, "");
    assert_string_equal(last_event()->answer, "REFUSED");
}

static void test_dns_answer_small_buffer(void **state)
{
    (void)state;
    struct qbuf q;
    make_query(&q, 6, "example.com", 1, false);
    uint8_t out[64];
    assert_int_equal(dns_answer(fx.pool, fx.pol, NULL, q.b, q.len, out, 12 + 13 + 4 + 15),
                     -ENOBUFS);
    assert_int_equal(dns_answer(fx.pool, fx.pol, NULL, q.b, q.len, out, 12 + 13 + 4 + 16),
                     12 + 13 + 4 + 16);
    put_header(&q, 1, 0, 0, 0, 0, 0); /* FORMERR needs 12 */
    assert_int_equal(dns_answer(fx.pool, fx.pol, NULL, q.b, q.len, out, 11), -ENOBUFS);
}

/* Each malformed query: FORMERR carrying its id, RD echoed, no question, an event. */
static void expect_formerr(const struct qbuf *q, uint16_t id, const char *what)
{
    uint8_t out[DNS_ANSWER_MAX];
    size_t before = rec.n;
    long n = answer(q, out, sizeof(out));
    if (n != 12)
        fail_msg("%s: answer length %ld, want a 12-byte FORMERR", what, n);
    struct parsed r;
    parse_answer(out, n, &r);
    assert_int_equal(r.id, id);
    assert_int_equal(RCODE(&r), 1);
    assert_int_equal(r.flags & QR, QR);
    assert_int_equal(r.qd + r.an, 0);
    assert_int_equal(rec.n, before + 1);
    assert_string_equal(last_event()->answer, "FORMERR");
    assert_false(last_event()->has_name);
}

static void test_dns_answer_malformed_formerr(void **state)
{
    (void)state;
    struct qbuf q;

    put_header(&q, 0x1111, 0x0100, 1, 0, 0, 0);
    q.len = 5;
    expect_formerr(&q, 0x1111, "short header");

    put_header(&q, 0x1112, 0x0100, 1, 0, 0, 0);
    expect_formerr(&q, 0x1112, "header only, question missing");

    make_query(&q, 0x1113, "example.com", 1, false);
    q.b[2] |= 0x80;
    expect_formerr(&q, 0x1113, "a response (QR set)");

    make_query(&q, 0x1114, "example.com", 1, false);
    q.b[2] |= 2 << 3;
    expect_formerr(&q, 0x1114, "opcode STATUS");

    make_query(&q, 0x1115, "example.com", 1, false);
    q.b[5] = 0;
    expect_formerr(&q, 0x1115, "no question");

    make_query(&q, 0x1116, "example.com", 1, false);
    put_name(&q, "example.org");
    put16(&q, 1);
    put16(&q, 1);
    q.b[5] = 2;
    expect_formerr(&q, 0x1116, "two questions");

    make_query(&q, 0x1117, "example.com", 1, false);
    q.b[7] = 1;
    expect_formerr(&q, 0x1117, "an answer record in a query");

    make_query(&q, 0x1118, "example.com", 1, false);
    q.b[9] = 1;
    expect_formerr(&q, 0x1118, "an authority record in a query");

    make_query(&q, 0x1119, "example.com", 1, true);
    q.b[11] = 2;
    expect_formerr(&q, 0x1119, "two additional records");

    make_query(&q, 0x111A, "example.com", 1, false);
    put8(&q, 0);
    expect_formerr(&q, 0x111A, "a trailing byte");

    make_query(&q, 0x111B, "example.com", 1, false);
    q.len -= 2;
    expect_formerr(&q, 0x111B, "no class");

    make_query(&q, 0x111C, "example.com", 1, false);
    q.len = 12 + 5;
    expect_formerr(&q, 0x111C, "name cut inside a label");

    /* label type bits 01 and 10 are reserved */
    put_header(&q, 0x111D, 0, 1, 0, 0, 0);
    put8(&q, 0x40);
    put8(&q, 'a');
    put8(&q, 0);
    put16(&q, 1);
    put16(&q, 1);
    expect_formerr(&q, 0x111D, "label type 01");
    q.b[12] = 0x80;
    expect_formerr(&q, 0x111D, "label type 10");

    /* a label holding a dot, a space, a NUL or a high byte */
    const uint8_t bad_bytes[] = {'.', ' ', 0, 0xFF, '*', '/'};
    for (size_t i = 0; i < sizeof(bad_bytes); i++) {
        make_query(&q, 0x1120, "exa-ple.com", 1, false);
        q.b[12 + 1 + 3] = bad_bytes[i];
        expect_formerr(&q, 0x1120, "bad label byte");
    }

    /* a name longer than 255 bytes on the wire: 5 labels of 63 */
    put_header(&q, 0x1121, 0, 1, 0, 0, 0);
    for (int l = 0; l < 5; l++) {
        put8(&q, 63);
        for (int i = 0; i < 63; i++)
            put8(&q, 'a');
    }
    put8(&q, 0);
    put16(&q, 1);
    put16(&q, 1);
    expect_formerr(&q, 0x1121, "name too long");

    /* additional record that is not OPT, OPT with an owner, OPT data past the end */
    make_query(&q, 0x1122, "example.com", 1, true);
    q.b[q.len - 10] = 0; /* OPT type 41 -> 1 */
    q.b[q.len - 9] = 1;
    expect_formerr(&q, 0x1122, "additional A record");
    make_query(&q, 0x1123, "example.com", 1, false);
    q.b[11] = 1;
    put_name(&q, "x");
    put16(&q, 41);
    put16(&q, 512);
    put16(&q, 0);
    put16(&q, 0);
    put16(&q, 0);
    expect_formerr(&q, 0x1123, "OPT owner not the root");
    make_query(&q, 0x1124, "example.com", 1, true);
    q.b[q.len - 1] = 4; /* rdlen 4 with no data */
    expect_formerr(&q, 0x1124, "OPT data past the end");
    make_query(&q, 0x1125, "example.com", 1, true);
    q.len -= 3;
    expect_formerr(&q, 0x1125, "OPT cut short");
}

static void test_dns_answer_compression_loops(void **state)
{
    (void)state;
    struct qbuf q;
    /* the question's name pointing at itself */
    put_header(&q, 0x2001, 0, 1, 0, 0, 0);
    put16(&q, 0xC00C);
    put16(&q, 1);
    put16(&q, 1);
    expect_formerr(&q, 0x2001, "pointer to itself");

    /* two pointers pointing at each other */
    put_header(&q, 0x2002, 0, 1, 0, 0, 0);
    put16(&q, 0xC00E);
    put16(&q, 0xC00C);
    put16(&q, 1);
    put16(&q, 1);
    expect_formerr(&q, 0x2002, "pointer loop of two");

    /* a label then a pointer back to it: a.a.a.a... */
    put_header(&q, 0x2003, 0, 1, 0, 0, 0);
    put8(&q, 1);
    put8(&q, 'a');
    put16(&q, 0xC00C);
    put16(&q, 1);
    put16(&q, 1);
    expect_formerr(&q, 0x2003, "label then pointer back to it");

    /* into the header, and past the end */
    put_header(&q, 0x2004, 0, 1, 0, 0, 0);
    put16(&q, 0xC002);
    put16(&q, 1);
    put16(&q, 1);
    expect_formerr(&q, 0x2004, "pointer into the header");
    put_header(&q, 0x2005, 0, 1, 0, 0, 0);
    put16(&q, 0xC0FF);
    put16(&q, 1);
    put16(&q, 1);
    expect_formerr(&q, 0x2005, "pointer past the end");
    put_header(&q, 0x2006, 0, 1, 0, 0, 0);
    put8(&q, 0xC0);
    expect_formerr(&q, 0x2006, "pointer cut in half");
}

static void test_dns_answer_too_short_dropped(void **state)
{
    (void)state;
    uint8_t out[DNS_ANSWER_MAX];
    uint8_t one[1] = {0x12};
    size_t before = rec.n;
    assert_int_equal(dns_answer(fx.pool, fx.pol, &rec_sink, one, 1, out, sizeof(out)), -EBADMSG);
    assert_int_equal(dns_answer(fx.pool, fx.pol, &rec_sink, one, 0, out, sizeof(out)), -EBADMSG);
    assert_int_equal(dns_answer(fx.pool, fx.pol, &rec_sink, NULL, 0, out, sizeof(out)), -EBADMSG);
    assert_int_equal(rec.n, before + 3);
    assert_string_equal(last_event()->answer, "DROPPED");
}

/* Every prefix of a good query is answered FORMERR (or dropped below 2 bytes). */
static void test_dns_answer_truncated_every_length(void **state)
{
    (void)state;
    struct qbuf q;
    make_query(&q, 0x3003, "www.example.org", 28, true);
    uint8_t out[DNS_ANSWER_MAX];
    for (size_t len = 0; len < q.len; len++) {
        long n = dns_answer(fx.pool, fx.pol, NULL, q.b, len, out, sizeof(out));
        if (len < 2) {
            assert_int_equal(n, -EBADMSG);
            continue;
        }
        if (n != 12 || (out[3] & 0xF) != 1 || get16(out) != 0x3003)
            fail_msg("prefix %zu: got %ld bytes rcode %d", len, n, n >= 4 ? out[3] & 0xF : -1);
    }
    assert_int_equal(dns_answer(fx.pool, fx.pol, NULL, q.b, q.len, out, sizeof(out)) > 12, 1);
}

/* Random corruption never crashes and always yields a well-formed answer or a drop. */
static void test_dns_answer_random_corruption(void **state)
{
    (void)state;
    struct qbuf q;
    uint8_t out[DNS_ANSWER_MAX];
    unsigned seed = 12345;
    for (int iter = 0; iter < 20000; iter++) {
        make_query(&q, (uint16_t)iter, iter % 2 ? "a.example.org" : "x.test", 1, iter % 3 == 0);
        int flips = 1 + (int)(rand_r(&seed) % 4);
        for (int f = 0; f < flips; f++)
            q.b[rand_r(&seed) % q.len] = (uint8_t)rand_r(&seed);
        if (iter % 5 == 0)
            q.len = (size_t)rand_r(&seed) % (q.len + 1);
        long n = dns_answer(fx.pool, fx.pol, NULL, q.b, q.len, out, sizeof(out));
        if (n == -EBADMSG) {
            assert_true(q.len < 2);
            continue;
        }
        assert_true(n >= 12 && n <= (long)sizeof(out));
        assert_int_equal(get16(out), get16(q.b));
        struct parsed r;
        parse_answer(out, n, &r);
    }
}

/* ---- the service ---- */

static void send_all(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    while (len) {
        ssize_t n = write(fd, p, len);
        assert_true(n > 0);
        p += n;
        len -= (size_t)n;
    }
}

static void send_query(int fd, const struct qbuf *q)
{
    uint8_t lb[2] = {(uint8_t)(q->len >> 8), (uint8_t)q->len};
    send_all(fd, lb, 2);
    send_all(fd, q->b, q->len);
}

/* Read exactly len bytes within 10 s; returns 0, or 1 at EOF before any byte. */
static int recv_all(int fd, uint8_t *buf, size_t len)
{
    size_t got = 0;
    while (got < len) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, 10000) != 1)
            fail_msg("no data from the service in 10 s");
        ssize_t n = read(fd, buf + got, len - got);
        if (n == 0 && got == 0)
            return 1;
        assert_true(n > 0);
        got += (size_t)n;
    }
    return 0;
}

static long recv_answer(int fd, uint8_t *buf, size_t cap)
{
    uint8_t lb[2];
    if (recv_all(fd, lb, 2) == 1)
        return -1;
    size_t len = get16(lb);
    assert_true(len <= cap);
    assert_int_equal(recv_all(fd, buf, len), 0);
    return (long)len;
}

static void test_dns_service_two_queries_and_swap(void **state)
{
    (void)state;
    struct policy_store *store = NULL;
    assert_int_equal(policy_store_create(make_policy(POLICY_TEXT), &store), 0);
    struct dns_service *svc = NULL;
    assert_int_equal(dns_service_create(store, fx.pool, &rec_sink, &svc), 0);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    assert_int_equal(dns_service_serve(svc, sv[1]), 0);

    /* two queries written back to back, and a 1-byte message in between that is dropped */
    struct qbuf q1, q2;
    make_query(&q1, 0xA001, "example.com", 1, false);
    make_query(&q2, 0xA002, "blocked.test", 1, true);
    send_query(sv[0], &q1);
    uint8_t junk[3] = {0, 1, 0x55};
    send_all(sv[0], junk, sizeof(junk));
    send_query(sv[0], &q2);
    uint8_t buf[DNS_ANSWER_MAX];
    struct parsed r;
    parse_answer(buf, recv_answer(sv[0], buf, sizeof(buf)), &r);
    assert_int_equal(r.id, 0xA001);
    assert_true(r.has_a);
    parse_answer(buf, recv_answer(sv[0], buf, sizeof(buf)), &r);
    assert_int_equal(r.id, 0xA002);
    assert_int_equal(RCODE(&r), 3);

    /* a new policy decides the next query */
    policy_store_set(store, make_policy("{\"network\":{\"default\":\"allow\"}}"));
    make_query(&q2, 0xA003, "blocked.test", 1, false);
    send_query(sv[0], &q2);
    parse_answer(buf, recv_answer(sv[0], buf, sizeof(buf)), &r);
    assert_int_equal(r.id, 0xA003);
    assert_true(r.has_a);
    assert_int_equal(rec_count(), 4); /* two answers, the drop, the third answer */

    close(sv[0]); /* the service's thread ends and is reaped by the next serve or destroy */
    dns_service_destroy(svc);
    policy_store_destroy(store);
}

/* The runner hands over accepted sockets non-blocking; a query that comes later is still served. */
static void test_dns_service_nonblocking_fd_waits_for_queries(void **state)
{
    (void)state;
    struct policy_store *store = NULL;
    assert_int_equal(policy_store_create(make_policy(POLICY_TEXT), &store), 0);
    struct dns_service *svc = NULL;
    assert_int_equal(dns_service_create(store, fx.pool, &rec_sink, &svc), 0);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    assert_int_equal(dns_service_serve(svc, sv[1]), 0);
    usleep(200000); /* nothing to read yet: the service must wait, not give up */
    int fl = fcntl(sv[0], F_GETFL);
    assert_int_equal(fcntl(sv[0], F_SETFL, fl & ~O_NONBLOCK), 0);
    struct qbuf q;
    make_query(&q, 0xB001, "example.com", 1, false);
    send_query(sv[0], &q);
    uint8_t buf[DNS_ANSWER_MAX];
    struct parsed r;
    parse_answer(buf, recv_answer(sv[0], buf, sizeof(buf)), &r);
    assert_int_equal(r.id, 0xB001);
    assert_true(r.has_a);
    close(sv[0]);
    dns_service_destroy(svc);
    policy_store_destroy(store);
}

static void test_dns_service_oversized_length_closes(void **state)
{
    (void)state;
    struct policy_store *store = NULL;
    assert_int_equal(policy_store_create(make_policy(POLICY_TEXT), &store), 0);
    struct dns_service *svc = NULL;
    assert_int_equal(dns_service_create(store, fx.pool, &rec_sink, &svc), 0);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    assert_int_equal(dns_service_serve(svc, sv[1]), 0);
    struct qbuf q;
    make_query(&q, 0xB001, "example.com", 1, false);
    send_query(sv[0], &q);
    uint8_t buf[DNS_ANSWER_MAX];
    struct parsed r;
    parse_answer(buf, recv_answer(sv[0], buf, sizeof(buf)), &r);
    assert_int_equal(r.id, 0xB001);
    uint8_t big[2] = {0x10, 0x01}; /* 4097 */
    send_all(sv[0], big, 2);
    assert_int_equal(recv_answer(sv[0], buf, sizeof(buf)), -1); /* closed */
    close(sv[0]);

    /* 4096 itself is accepted (and, being junk, answered FORMERR) */
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    assert_int_equal(dns_service_serve(svc, sv[1]), 0);
    static uint8_t max[2 + 4096];
    max[0] = 0x10;
    max[1] = 0x00;
    max[2] = 0xC0;
    max[3] = 0xDE;
    send_all(sv[0], max, sizeof(max));
    long n = recv_answer(sv[0], buf, sizeof(buf));
    assert_int_equal(n, 12);
    assert_int_equal(get16(buf), 0xC0DE);
    assert_int_equal(buf[3] & 0xF, 1);
    close(sv[0]);
    dns_service_destroy(svc);
    policy_store_destroy(store);
}

static void test_dns_service_destroy_with_open_connections(void **state)
{
    (void)state;
    struct policy_store *store = NULL;
    assert_int_equal(policy_store_create(make_policy(POLICY_TEXT), &store), 0);
    struct dns_service *svc = NULL;
    assert_int_equal(dns_service_create(store, fx.pool, NULL, &svc), 0);
    int a[2], b[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, a), 0);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, b), 0);
    assert_int_equal(dns_service_serve(svc, a[1]), 0);
    assert_int_equal(dns_service_serve(svc, b[1]), 0);
    uint8_t half[1] = {0}; /* b's thread waits inside a length prefix */
    send_all(b[0], half, 1);
    dns_service_destroy(svc); /* must not hang */
    uint8_t buf[4];
    assert_int_equal(recv_all(a[0], buf, 1), 1); /* EOF: the service closed its end */
    assert_int_equal(recv_all(b[0], buf, 1), 1);
    close(a[0]);
    close(b[0]);
    dns_service_destroy(NULL);
    assert_int_equal(dns_service_serve(NULL, dup(0)), -EINVAL);
    policy_store_destroy(store);
}

/* At most 64 connections at once; one more is refused and its fd closed. */
static void test_dns_service_serve_connection_cap(void **state)
{
    (void)state;
    struct policy_store *store = NULL;
    assert_int_equal(policy_store_create(make_policy(POLICY_TEXT), &store), 0);
    struct dns_service *svc = NULL;
    assert_int_equal(dns_service_create(store, fx.pool, NULL, &svc), 0);
    int peers[65];
    for (int i = 0; i < 65; i++) {
        int sv[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        peers[i] = sv[0];
        assert_int_equal(dns_service_serve(svc, sv[1]), i < 64 ? 0 : -EMFILE);
    }
    uint8_t buf[4];
    assert_int_equal(recv_all(peers[64], buf, 1), 1); /* the refused one: closed at once */
    /* one ends; its slot is free for the next connection */
    close(peers[0]);
    int sv[2];
    int rc = -EMFILE;
    for (int tries = 0; tries < 200 && rc == -EMFILE; tries++) {
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        rc = dns_service_serve(svc, sv[1]);
        if (rc == -EMFILE) {
            close(sv[0]);
            usleep(10000); /* the ended connection's thread has not finished yet */
        }
    }
    assert_int_equal(rc, 0);
    struct qbuf q;
    make_query(&q, 0xC001, "example.com", 1, false);
    send_query(sv[0], &q);
    struct parsed r;
    uint8_t ans[DNS_ANSWER_MAX];
    parse_answer(ans, recv_answer(sv[0], ans, sizeof(ans)), &r);
    assert_int_equal(r.id, 0xC001);
    dns_service_destroy(svc);
    close(sv[0]);
    for (int i = 1; i < 65; i++)
        close(peers[i]);
    policy_store_destroy(store);
}

int main(void)
{
    pthread_mutex_init(&rec.lock, NULL);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dns_pool_assign_same_address_twice),
        cmocka_unit_test(test_dns_pool_lookup_unassigned),
        cmocka_unit_test(test_dns_pool_assign_bad_name),
        cmocka_unit_test(test_dns_pool_assign_until_full),
        cmocka_unit_test(test_dns_pool_assign_threads_agree),
        cmocka_unit_test_setup_teardown(test_dns_answer_a_allowed, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_dns_answer_log_decision, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_dns_answer_aaaa_nodata, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_dns_answer_blocked_nxdomain, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_dns_answer_edns_tolerated, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_dns_answer_root_refused, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_dns_answer_small_buffer, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_dns_answer_malformed_formerr, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_dns_answer_compression_loops, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_dns_answer_too_short_dropped, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_dns_answer_truncated_every_length, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_dns_answer_random_corruption, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_dns_service_nonblocking_fd_waits_for_queries, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_dns_service_two_queries_and_swap, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_dns_service_oversized_length_closes, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_dns_service_destroy_with_open_connections, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_dns_service_serve_connection_cap, fx_setup,
                                        fx_teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    pthread_mutex_destroy(&rec.lock);
    return rc;
}
