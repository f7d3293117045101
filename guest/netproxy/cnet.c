/* The guest net proxy's header encoding and /proc/net/tcp parsing (see cnet.h). */
#include "cnet.h"

#include <arpa/inet.h>
#include <errno.h>
#include <string.h>

int cnet_header_encode(uint8_t *out, size_t size, uint32_t ip, uint16_t port, uint32_t pid,
                       const char *name, size_t name_len)
{
    if (!name)
        name_len = 0;
    if (name_len > CNET_NAME_MAX)
        name_len = CNET_NAME_MAX;
    if (size < CNET_FIXED_LEN + name_len)
        return -ENOSPC;
    memcpy(out, CNET_MAGIC, 4);
    out[4] = CNET_VERSION;
    out[5] = CNET_FAMILY_IPV4;
    out[6] = (uint8_t)(port >> 8);
    out[7] = (uint8_t)port;
    out[8] = (uint8_t)(ip >> 24);
    out[9] = (uint8_t)(ip >> 16);
    out[10] = (uint8_t)(ip >> 8);
    out[11] = (uint8_t)ip;
    out[12] = (uint8_t)(pid >> 24);
    out[13] = (uint8_t)(pid >> 16);
    out[14] = (uint8_t)(pid >> 8);
    out[15] = (uint8_t)pid;
    out[16] = (uint8_t)(name_len >> 8);
    out[17] = (uint8_t)name_len;
    if (name_len)
        memcpy(out + CNET_FIXED_LEN, name, name_len);
    return (int)(CNET_FIXED_LEN + name_len);
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Parse exactly `digits` hex digits at *p; advances *p. */
static bool hex_fixed(const char **p, const char *end, size_t digits, uint32_t *out)
{
    uint32_t v = 0;
    if ((size_t)(end - *p) < digits)
        return false;
    for (size_t i = 0; i < digits; i++) {
        int h = hexval((*p)[i]);
        if (h < 0)
            return false;
        v = v << 4 | (uint32_t)h;
    }
    *p += digits;
    *out = v;
    return true;
}

static void skip_blanks(const char **p, const char *end)
{
    while (*p < end && (**p == ' ' || **p == '\t'))
        (*p)++;
}

static void skip_field(const char **p, const char *end)
{
    while (*p < end && **p != ' ' && **p != '\t' && **p != '\n')
        (*p)++;
}

/*
 * "0100007F:1F90": the kernel prints the address as the raw network-order
 * 32-bit word in hex (so byte order is the machine's), the port in host order.
 */
static bool parse_addr(const char **p, const char *end, uint32_t *ip, uint16_t *port)
{
    uint32_t raw, pt;
    if (!hex_fixed(p, end, 8, &raw) || *p >= end || **p != ':')
        return false;
    (*p)++;
    if (!hex_fixed(p, end, 4, &pt))
        return false;
    if (*p < end && **p != ' ' && **p != '\t')
        return false;
    *ip = ntohl(raw);
    *port = (uint16_t)pt;
    return true;
}

int cnet_tcp_parse_line(const char *line, size_t len, struct cnet_tcp_entry *e)
{
    const char *p = line, *end = line + len;
    struct cnet_tcp_entry t;
    skip_blanks(&p, end);
    /* "sl" field: digits then a colon. */
    const char *sl = p;
    while (p < end && *p >= '0' && *p <= '9')
        p++;
    if (p == sl || p >= end || *p != ':')
        return -EINVAL;
    p++;
    skip_blanks(&p, end);
    if (!parse_addr(&p, end, &t.local_ip, &t.local_port))
        return -EINVAL;
    skip_blanks(&p, end);
    if (!parse_addr(&p, end, &t.remote_ip, &t.remote_port))
        return -EINVAL;
    /* st, tx_queue:rx_queue, tr:tm->when, retrnsmt, uid, timeout, then inode. */
    for (int i = 0; i < 6; i++) {
        skip_blanks(&p, end);
        if (p >= end || *p == '\n')
            return -EINVAL;
        skip_field(&p, end);
    }
    skip_blanks(&p, end);
    const char *in = p;
    uint64_t inode = 0;
    while (p < end && *p >= '0' && *p <= '9') {
        if (inode > (UINT64_MAX - 9) / 10)
            return -EINVAL;
        inode = inode * 10 + (uint64_t)(*p - '0');
        p++;
    }
    if (p == in || (p < end && *p != ' ' && *p != '\t' && *p != '\n'))
        return -EINVAL;
    t.inode = inode;
    *e = t;
    return 0;
}

bool cnet_tcp_find_inode(const char *text, size_t len, uint32_t ip, uint16_t port, uint64_t *inode)
{
    size_t i = 0;
    while (i < len) {
        const char *nl = memchr(text + i, '\n', len - i);
        size_t l = nl ? (size_t)(nl - (text + i)) : len - i;
        struct cnet_tcp_entry e;
        if (cnet_tcp_parse_line(text + i, l, &e) == 0 && e.local_ip == ip && e.local_port == port &&
            e.inode != 0) {
            *inode = e.inode;
            return true;
        }
        i += l + 1;
    }
    return false;
}

bool cnet_link_is_socket(const char *link, size_t len, uint64_t inode)
{
    static const char pre[] = "socket:[";
    size_t pl = sizeof(pre) - 1;
    if (len < pl + 2 || memcmp(link, pre, pl) != 0 || link[len - 1] != ']')
        return false;
    uint64_t v = 0;
    for (size_t i = pl; i < len - 1; i++) {
        if (link[i] < '0' || link[i] > '9' || v > (UINT64_MAX - 9) / 10)
            return false;
        v = v * 10 + (uint64_t)(link[i] - '0');
    }
    return v == inode;
}

size_t cnet_comm_trim(const char *comm, size_t len)
{
    while (len && (comm[len - 1] == '\n' || comm[len - 1] == '\0'))
        len--;
    return len;
}
