/*
 * The host side of guest DNS (schemas/vsock-net.md, port 5004): the address
 * pool that gives each allowed name a stable address in 198.18.0.0/15 (.0 and
 * .255 of every /24 are skipped, so 130048 names fit) and maps addresses back
 * to names; dns_answer(), which parses one query strictly (one question,
 * labels of letters, digits, '-' and '_', compression pointers only
 * backwards, at most one EDNS OPT record, no trailing bytes) and answers it by
 * policy; and the service that reads length-prefixed queries from the DNS
 * stub's connections, one thread per connection.
 */
#include "dns.h"

#include "log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define POOL_BASE 0xC6120000u /* 198.18.0.0 */
#define POOL_BLOCKS 512u      /* /24 blocks in the /15 */
#define POOL_PER_BLOCK 254u   /* .1 .. .254 */
#define POOL_SIZE (POOL_BLOCKS * POOL_PER_BLOCK)

#define DNS_HDR 12
#define DNS_MAX_NAME 255 /* wire length of a name, RFC 1035 */
#define DNS_MAX_QUERY 4096
#define DNS_TTL 60
#define DNS_MAX_CONNS 64

#define T_A 1
#define T_OPT 41
#define C_IN 1

#define F_QR 0x8000
#define F_RD 0x0100
#define F_RA 0x0080
#define RC_NOERROR 0
#define RC_FORMERR 1
#define RC_SERVFAIL 2
#define RC_NXDOMAIN 3
#define RC_REFUSED 5

struct dns_pool {
    pthread_mutex_t lock;
    char **names; /* index -> name; guarded by lock, as are the fields below */
    size_t count, cap;
    uint32_t *table; /* open addressing: index + 1, 0 = empty; a power of two */
    size_t tcap;
};

int dns_pool_create(struct dns_pool **out)
{
    struct dns_pool *p = calloc(1, sizeof(*p));
    if (!p)
        return -ENOMEM;
    int rc = pthread_mutex_init(&p->lock, NULL);
    if (rc != 0) {
        free(p);
        return -rc;
    }
    *out = p;
    return 0;
}

void dns_pool_free(struct dns_pool *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->count; i++)
        free(p->names[i]);
    free(p->names);
    free(p->table);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

static uint32_t name_hash(const char *s)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (; *s; s++) {
        h ^= (uint8_t)*s;
        h *= 16777619u;
    }
    return h;
}

static struct in_addr index_addr(size_t i)
{
    uint32_t a =
        POOL_BASE + (uint32_t)(i / POOL_PER_BLOCK) * 256u + (uint32_t)(i % POOL_PER_BLOCK) + 1u;
    struct in_addr r = {.s_addr = htonl(a)};
    return r;
}

/* Slot of `name` in the table, or of the empty slot where it would go. */
static size_t table_slot(const struct dns_pool *p, const char *name)
{
    size_t mask = p->tcap - 1;
    size_t s = name_hash(name) & mask;
    while (p->table[s] && strcmp(p->names[p->table[s] - 1], name) != 0)
        s = (s + 1) & mask;
    return s;
}

/* Keep the table at most half full and the names array with room for one more. */
static int pool_grow(struct dns_pool *p)
{
    if (p->count == p->cap) {
        size_t ncap = p->cap ? p->cap * 2 : 64;
        if (ncap > POOL_SIZE)
            ncap = POOL_SIZE;
        char **n = realloc(p->names, ncap * sizeof(*n));
        if (!n)
            return -ENOMEM;
        p->names = n;
        p->cap = ncap;
    }
    if ((p->count + 1) * 2 > p->tcap) {
        size_t ntcap = p->tcap ? p->tcap * 2 : 128;
        uint32_t *t = calloc(ntcap, sizeof(*t));
        if (!t)
            return -ENOMEM;
        free(p->table);
        p->table = t;
        p->tcap = ntcap;
        for (size_t i = 0; i < p->count; i++)
            p->table[table_slot(p, p->names[i])] = (uint32_t)(i + 1);
    }
    return 0;
}

int dns_pool_assign(struct dns_pool *p, const char *name, struct in_addr *out)
{
    size_t len = name ? strlen(name) : 0;
    if (!p || len == 0 || len > 253)
        return -EINVAL;
    char key[254];
    for (size_t i = 0; i <= len; i++)
        key[i] = name[i] >= 'A' && name[i] <= 'Z' ? (char)(name[i] - 'A' + 'a') : name[i];
    int rc = 0;
    pthread_mutex_lock(&p->lock);
    if (p->tcap) {
        size_t s = table_slot(p, key);
        if (p->table[s]) {
            *out = index_addr(p->table[s] - 1);
            goto out;
        }
    }
    if (p->count >= POOL_SIZE) {
        rc = -ENOSPC;
        goto out;
    }
    rc = pool_grow(p);
    if (rc < 0)
        goto out;
    char *copy = strdup(key);
    if (!copy) {
        rc = -ENOMEM;
        goto out;
    }
    size_t i = p->count++;
    p->names[i] = copy;
    p->table[table_slot(p, key)] = (uint32_t)(i + 1);
    *out = index_addr(i);
out:
    pthread_mutex_unlock(&p->lock);
    return rc;
}

int dns_pool_lookup(struct dns_pool *p, struct in_addr a, char *name, size_t len)
{
    uint32_t h = ntohl(a.s_addr);
    if (!p || h < POOL_BASE || h - POOL_BASE >= POOL_BLOCKS * 256u)
        return -ENOENT;
    uint32_t off = h - POOL_BASE, low = off & 255u;
    if (low == 0 || low == 255)
        return -ENOENT;
    size_t i = (size_t)(off >> 8) * POOL_PER_BLOCK + low - 1;
    int rc = 0;
    pthread_mutex_lock(&p->lock);
    if (i >= p->count) {
        rc = -ENOENT;
    } else {
        int n = snprintf(name, len, "%s", p->names[i]);
        if (n < 0 || (size_t)n >= len)
            rc = -ENAMETOOLONG;
    }
    pthread_mutex_unlock(&p->lock);
    return rc;
}

/* One parsed question. */
struct query {
    uint16_t id, flags, qtype, qclass;
    char name[DNS_MAX_NAME + 1]; /* lower case, dotted, no trailing dot; "" = root */
    size_t namelen;
    uint8_t wire[DNS_MAX_NAME]; /* the name uncompressed, as the guest spelled it */
    size_t wirelen;
};

static uint16_t rd16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

static void wr16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static bool label_char_ok(uint8_t c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
}

/*
 * Read the name at *pos into q (when q is NULL, only skip it). Compression
 * pointers must point strictly before the labels that hold them, so a loop is
 * impossible. On success *pos is just past the name where it started.
 */
static int parse_name(const uint8_t *m, size_t len, size_t *pos, struct query *q)
{
    /* a pointer must land before `limit`: first where this name starts, then the last target */
    size_t p = *pos, after = 0, limit = *pos, wl = 0, nl = 0;
    bool jumped = false;
    for (;;) {
        if (p >= len)
            return -EBADMSG; /* truncated */
        uint8_t b = m[p];
        if ((b & 0xC0) == 0xC0) {
            if (p + 1 >= len)
                return -EBADMSG;
            size_t target = (size_t)(b & 0x3F) << 8 | m[p + 1];
            if (target >= limit || target < DNS_HDR)
                return -ELOOP; /* forward, self or into the header: not a name before us */
            if (!jumped)
                after = p + 2;
            jumped = true;
            p = limit = target;
            continue;
        }
        if (b & 0xC0)
            return -EBADMSG; /* reserved label types */
        if (wl + 1 + b > DNS_MAX_NAME)
            return -EBADMSG;
        if (b == 0) {
            if (q) {
                q->wire[wl++] = 0;
                q->wirelen = wl;
                q->name[nl] = '\0';
                q->namelen = nl;
            }
            if (!jumped)
                after = p + 1;
            break;
        }
        if (p + 1 + b > len)
            return -EBADMSG;
        for (size_t i = 0; i < b; i++)
            if (!label_char_ok(m[p + 1 + i]))
                return -EBADMSG;
        if (q) {
            memcpy(q->wire + wl, m + p, 1u + b);
            if (nl)
                q->name[nl++] = '.';
            for (size_t i = 0; i < b; i++) {
                uint8_t c = m[p + 1 + i];
                q->name[nl++] = (char)(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
            }
        }
        wl += 1u + b;
        p += 1u + b;
    }
    *pos = after;
    return 0;
}

/*
 * Parse a query. 0 = ok; -EBADMSG/-ELOOP = answer FORMERR (q->id and
 * q->flags are valid); -EPROTO = too short to hold an id (drop).
 */
static int parse_query(const uint8_t *m, size_t len, struct query *q)
{
    memset(q, 0, sizeof(*q));
    if (len < 2)
        return -EPROTO;
    q->id = rd16(m);
    if (len < DNS_HDR)
        return -EBADMSG;
    q->flags = rd16(m + 2);
    uint16_t qd = rd16(m + 4), an = rd16(m + 6), ns = rd16(m + 8), ar = rd16(m + 10);
    if ((q->flags & F_QR) || ((q->flags >> 11) & 0xF) != 0)
        return -EBADMSG; /* a response, or not a standard query */
    if (qd != 1 || an != 0 || ns != 0 || ar > 1)
        return -EBADMSG;
    size_t pos = DNS_HDR;
    int rc = parse_name(m, len, &pos, q);
    if (rc < 0)
        return rc;
    if (pos + 4 > len)
        return -EBADMSG;
    q->qtype = rd16(m + pos);
    q->qclass = rd16(m + pos + 2);
    pos += 4;
    if (ar == 1) { /* only an EDNS OPT record, which is tolerated and not echoed */
        if (pos >= len || m[pos] != 0)
            return -EBADMSG; /* OPT's owner is the root */
        pos++;
        if (pos + 10 > len || rd16(m + pos) != T_OPT)
            return -EBADMSG;
        size_t rdlen = rd16(m + pos + 8);
        pos += 10;
        if (pos + rdlen > len)
            return -EBADMSG;
        pos += rdlen;
    }
    if (pos != len)
        return -EBADMSG; /* trailing bytes */
    return 0;
}

static const char *type_text(uint16_t t, char *buf, size_t len)
{
    static const struct {
        uint16_t t;
        const char *name;
    } names[] = {{1, "A"},    {2, "NS"},    {5, "CNAME"},  {6, "SOA"},
                 {12, "PTR"}, {15, "MX"},   {16, "TXT"},   {28, "AAAA"},
                 {33, "SRV"}, {64, "SVCB"}, {65, "HTTPS"}, {255, "ANY"}};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (names[i].t == t)
            return names[i].name;
    snprintf(buf, len, "%u", (unsigned)t);
    return buf;
}

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void report(const struct sink *sink, const char *name, const char *type, enum decision d,
                   const char *rule, const char *answer)
{
    struct dns_event ev = {
        .time_us = now_us(),
        .name = name,
        .type = type,
        .decision = d,
        .rule = rule,
        .answer = answer,
    };
    sink_dns(sink, &ev);
}

/* The header of an answer; counts after the question are filled by the caller. */
static void put_header(uint8_t *out, uint16_t id, uint16_t qflags, unsigned rcode, uint16_t qd,
                       uint16_t an)
{
    wr16(out, id);
    wr16(out + 2, (uint16_t)(F_QR | (qflags & F_RD) | F_RA | rcode));
    wr16(out + 4, qd);
    wr16(out + 6, an);
    wr16(out + 8, 0);
    wr16(out + 10, 0);
}

long dns_answer(struct dns_pool *pool, const struct policy *pol, const struct sink *sink,
                const uint8_t *q, size_t qlen, uint8_t *out, size_t outcap)
{
    struct query qu;
    int rc = q ? parse_query(q, qlen, &qu) : -EPROTO;
    if (rc == -EPROTO) {
        report(sink, NULL, NULL, DECISION_BLOCK, NULL, "DROPPED");
        return -EBADMSG;
    }
    if (rc < 0) {
        if (outcap < DNS_HDR)
            return -ENOBUFS;
        put_header(out, qu.id, qu.flags, RC_FORMERR, 0, 0);
        report(sink, NULL, NULL, DECISION_BLOCK, NULL, "FORMERR");
        return DNS_HDR;
    }

    char tbuf[8];
    const char *type = type_text(qu.qtype, tbuf, sizeof(tbuf));
    size_t need = DNS_HDR + qu.wirelen + 4 + 16;
    if (outcap < need)
        return -ENOBUFS;

    unsigned rcode = RC_NOERROR;
    bool with_addr = false;
    struct in_addr addr = {0};
    char text[INET_ADDRSTRLEN];
    const char *answer = "NODATA";
    struct policy_result res = {.decision = DECISION_BLOCK, .rule = NULL};
    if (qu.namelen == 0) {
        rcode = RC_REFUSED; /* the root: nothing of ours to say */
        answer = "REFUSED";
    } else {
        res = policy_decide_dns(pol, qu.name);
        if (res.decision == DECISION_BLOCK) {
            rcode = RC_NXDOMAIN;
            answer = "NXDOMAIN";
        } else if (qu.qtype == T_A && qu.qclass == C_IN) {
            int arc = dns_pool_assign(pool, qu.name, &addr);
            if (arc == 0) {
                with_addr = true;
                inet_ntop(AF_INET, &addr, text, sizeof(text));
                answer = text;
            } else {
                rcode = RC_SERVFAIL;
                answer = "SERVFAIL";
                LOG_WARN("dns: pool_assign_failed err=%d", -arc);
            }
        }
    }

    put_header(out, qu.id, qu.flags, rcode, 1, with_addr ? 1 : 0);
    size_t o = DNS_HDR;
    memcpy(out + o, qu.wire, qu.wirelen);
    o += qu.wirelen;
    wr16(out + o, qu.qtype);
    wr16(out + o + 2, qu.qclass);
    o += 4;
    if (with_addr) {
        wr16(out + o, 0xC000 | DNS_HDR); /* the question's name */
        wr16(out + o + 2, T_A);
        wr16(out + o + 4, C_IN);
        wr16(out + o + 6, 0);
        wr16(out + o + 8, DNS_TTL);
        wr16(out + o + 10, 4);
        memcpy(out + o + 12, &addr.s_addr, 4);
        o += 16;
    }
    report(sink, qu.name, type, res.decision, res.rule, answer);
    return (long)o;
}

struct dns_conn {
    struct dns_service *svc;
    pthread_t thread;
    int fd;    /* closed by the thread when it ends; -1 then (under svc->lock) */
    bool done; /* under svc->lock */
    struct dns_conn *next;
};

struct dns_service {
    struct policy_store *store;
    struct dns_pool *pool;
    const struct sink *sink;
    pthread_mutex_t lock;
    struct dns_conn *conns; /* guarded by lock */
    size_t nconns;          /* guarded by lock */
    bool stopping;          /* guarded by lock */
};

int dns_service_create(struct policy_store *store, struct dns_pool *pool, const struct sink *sink,
                       struct dns_service **out)
{
    struct dns_service *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    int rc = pthread_mutex_init(&s->lock, NULL);
    if (rc != 0) {
        free(s);
        return -rc;
    }
    s->store = store;
    s->pool = pool;
    s->sink = sink;
    *out = s;
    return 0;
}

/* 0 when all `len` bytes were read, 1 at end of stream, -errno. */
static int read_full(int fd, uint8_t *buf, size_t len)
{
    size_t got = 0;
    while (got < len) {
        ssize_t n = read(fd, buf + got, len - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            return got ? -EPIPE : 1;
        got += (size_t)n;
    }
    return 0;
}

static int write_full(int fd, const uint8_t *buf, size_t len)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = send(fd, buf + done, len - done, MSG_NOSIGNAL);
        if (n < 0 && errno == ENOTSOCK)
            n = write(fd, buf + done, len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        done += (size_t)n;
    }
    return 0;
}

static void *conn_main(void *arg)
{
    struct dns_conn *c = arg;
    struct dns_service *s = c->svc;
    uint8_t q[DNS_MAX_QUERY];
    uint8_t a[2 + DNS_ANSWER_MAX];
    for (;;) {
        uint8_t lb[2];
        if (read_full(c->fd, lb, 2) != 0)
            break;
        size_t len = rd16(lb);
        if (len > DNS_MAX_QUERY) {
            LOG_WARN("dns: closing reason=oversized_query len=%zu", len);
            break;
        }
        if (read_full(c->fd, q, len) != 0)
            break;
        struct policy *pol = policy_store_get(s->store);
        long n = dns_answer(s->pool, pol, s->sink, q, len, a + 2, sizeof(a) - 2);
        policy_unref(pol);
        if (n < 0)
            continue; /* dropped */
        wr16(a, (uint16_t)n);
        if (write_full(c->fd, a, (size_t)n + 2) != 0)
            break;
    }
    pthread_mutex_lock(&s->lock);
    close(c->fd);
    c->fd = -1;
    c->done = true;
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

/* Join and free finished connections. Called with s->lock held. */
static void reap(struct dns_service *s)
{
    struct dns_conn **pp = &s->conns;
    while (*pp) {
        struct dns_conn *c = *pp;
        if (!c->done) {
            pp = &c->next;
            continue;
        }
        *pp = c->next;
        /* done is set just before the thread returns, without the lock again */
        pthread_join(c->thread, NULL);
        s->nconns--;
        free(c);
    }
}

int dns_service_serve(struct dns_service *s, int fd)
{
    int rc = 0;
    struct dns_conn *c = NULL;
    if (!s) {
        close(fd);
        return -EINVAL;
    }
    pthread_mutex_lock(&s->lock);
    reap(s);
    if (s->stopping) {
        rc = -ESHUTDOWN;
        goto out;
    }
    if (s->nconns >= DNS_MAX_CONNS) {
        LOG_WARN("dns: refusing_connection reason=too_many conns=%zu", s->nconns);
        rc = -EMFILE;
        goto out;
    }
    c = calloc(1, sizeof(*c));
    if (!c) {
        rc = -ENOMEM;
        goto out;
    }
    c->svc = s;
    c->fd = fd;
    /* The connection thread reads with blocking calls; accepted sockets may come non-blocking. */
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0) {
        rc = -errno;
        goto out;
    }
    rc = -pthread_create(&c->thread, NULL, conn_main, c);
    if (rc < 0)
        goto out;
    c->next = s->conns;
    s->conns = c;
    s->nconns++;
    c = NULL;
out:
    pthread_mutex_unlock(&s->lock);
    if (rc < 0) {
        free(c);
        close(fd);
    }
    return rc;
}

void dns_service_destroy(struct dns_service *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->lock);
    s->stopping = true;
    for (struct dns_conn *c = s->conns; c; c = c->next)
        if (c->fd >= 0)
            shutdown(c->fd, SHUT_RDWR); /* wakes the thread's read or write */
    struct dns_conn *list = s->conns;
    s->conns = NULL;
    pthread_mutex_unlock(&s->lock);
    while (list) {
        struct dns_conn *next = list->next;
        pthread_join(list->thread, NULL);
        free(list);
        list = next;
    }
    pthread_mutex_destroy(&s->lock);
    free(s);
}
