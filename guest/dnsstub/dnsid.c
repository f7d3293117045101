/* The DNS stub's query table and SERVFAIL replies (see dnsid.h). */
#include "dnsid.h"

#include <errno.h>
#include <string.h>

void dnsid_init(struct dnsid_table *t, uint16_t seed)
{
    memset(t, 0, sizeof(*t));
    t->next = seed;
}

void dns_set_id(uint8_t *msg, uint16_t id)
{
    msg[0] = (uint8_t)(id >> 8);
    msg[1] = (uint8_t)id;
}

uint16_t dns_get_id(const uint8_t *msg)
{
    return (uint16_t)(msg[0] << 8 | msg[1]);
}

static struct dnsid_entry *find(struct dnsid_table *t, uint16_t id)
{
    for (size_t i = 0; i < DNSID_MAX; i++)
        if (t->e[i].used && t->e[i].new_id == id)
            return &t->e[i];
    return NULL;
}

/* Length of the header plus the first question, or just the header when it does not parse. */
static size_t question_end(const uint8_t *q, size_t qlen)
{
    if (qlen < DNS_HDR_LEN || (q[4] == 0 && q[5] == 0))
        return DNS_HDR_LEN;
    size_t p = DNS_HDR_LEN;
    for (int labels = 0; labels < 128; labels++) {
        if (p >= qlen)
            return DNS_HDR_LEN;
        uint8_t l = q[p];
        if (l == 0) {
            p++;
            return p + 4 <= qlen ? p + 4 : DNS_HDR_LEN;
        }
        if (l & 0xc0)
            return DNS_HDR_LEN; /* no compression in a question we echo */
        p += 1u + l;
    }
    return DNS_HDR_LEN;
}

int dnsid_add(struct dnsid_table *t, const uint8_t *msg, size_t len, const struct dnsid_client *cl,
              int64_t deadline_ms, uint16_t *new_id)
{
    if (len < DNS_HDR_LEN)
        return -EINVAL;
    if (t->n >= DNSID_MAX)
        return -ENOSPC;
    /* At most DNSID_MAX ids are taken, so this ends within DNSID_MAX + 1 tries. */
    uint16_t id = t->next;
    while (find(t, id))
        id++;
    t->next = (uint16_t)(id + 1);
    struct dnsid_entry *e = NULL;
    for (size_t i = 0; i < DNSID_MAX && !e; i++)
        if (!t->e[i].used)
            e = &t->e[i];
    e->used = true;
    e->new_id = id;
    e->orig_id = dns_get_id(msg);
    e->deadline_ms = deadline_ms;
    e->client = *cl;
    size_t ql = question_end(msg, len);
    if (ql > sizeof(e->q))
        ql = DNS_HDR_LEN;
    memcpy(e->q, msg, ql);
    e->qlen = ql;
    t->n++;
    *new_id = id;
    return 0;
}

static void take(struct dnsid_table *t, struct dnsid_entry *e, struct dnsid_entry *out)
{
    if (out)
        *out = *e;
    e->used = false;
    t->n--;
}

bool dnsid_take(struct dnsid_table *t, uint16_t new_id, struct dnsid_entry *out)
{
    struct dnsid_entry *e = find(t, new_id);
    if (!e)
        return false;
    take(t, e, out);
    return true;
}

bool dnsid_take_expired(struct dnsid_table *t, int64_t now_ms, bool all, struct dnsid_entry *out)
{
    if (t->n == 0)
        return false;
    for (size_t i = 0; i < DNSID_MAX; i++) {
        struct dnsid_entry *e = &t->e[i];
        if (e->used && (all || e->deadline_ms <= now_ms)) {
            take(t, e, out);
            return true;
        }
    }
    return false;
}

bool dnsid_take_client(struct dnsid_table *t, uint32_t tcp_conn, struct dnsid_entry *out)
{
    if (t->n == 0 || tcp_conn == 0)
        return false;
    for (size_t i = 0; i < DNSID_MAX; i++) {
        struct dnsid_entry *e = &t->e[i];
        if (e->used && e->client.tcp_conn == tcp_conn) {
            take(t, e, out);
            return true;
        }
    }
    return false;
}

int dns_servfail(const uint8_t *q, size_t qlen, uint8_t *out, size_t size)
{
    if (qlen < DNS_HDR_LEN)
        return -EINVAL;
    size_t n = question_end(q, qlen);
    if (size < n)
        return -ENOSPC;
    memcpy(out, q, n);
    out[2] = (uint8_t)(0x80 | (q[2] & 0x79)); /* QR, keep opcode and RD */
    out[3] = 0x80 | 2;                        /* RA, RCODE 2 = SERVFAIL */
    out[4] = 0;
    out[5] = n > DNS_HDR_LEN ? 1 : 0;
    memset(out + 6, 0, 6);
    return (int)n;
}
