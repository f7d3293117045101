/*
 * HTTP/1.1 framing for the MITM proxy (mitm/http.h): a head parser that is
 * called again over the growing buffer until it answers, and a byte-exact
 * body decoder for content-length, chunked and close-delimited bodies.
 *
 * The head parser is strict where a lenient reading could let the guest and
 * the upstream see different message boundaries (bare CR or LF, obs-fold,
 * whitespace before a colon, Content-Length with Transfer-Encoding,
 * conflicting lengths, duplicate Host). It rejects early: each line is
 * checked as soon as its bytes arrive, and a check that can fail on a
 * partial line fails on it with the same reason as on the complete line, so
 * a head fed in pieces gives the same answer as a head fed whole (only
 * sooner). Order of checks in a line: the early ones (request line: method
 * characters; status line: the "HTTP/" prefix; then control characters),
 * then the line ending, the header count, and the structure.
 */
#include "http.h"
#include "hex.h"

#include <errno.h>
#include <string.h>
#include <strings.h>

#define CHUNK_SIZE_MAX (1ull << 40)
#define CHUNK_LINE_MAX 8192u
#define TRAILERS_MAX 65536u

/* RFC 9110 tchar: ALPHA, DIGIT and !#$%&'*+-.^_`|~ */
static const bool tchar_table[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x00 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x10 */
    0, 1, 0, 1, 1, 1, 1, 1, 0, 0, 1, 1, 0, 1, 1, 0, /* 0x20 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, /* 0x30 */
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x40 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 1, /* 0x50 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x60 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 0, 1, 0, /* 0x70 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x80 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x90 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0xa0 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0xb0 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0xc0 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0xd0 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0xe0 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0xf0 */
};

static bool is_tchar(unsigned char c)
{
    return tchar_table[c];
}

/* Field content: visible ASCII, obs-text, space and tab. */
static bool is_field_char(unsigned char c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

bool http_str_eq(struct http_str s, const char *c)
{
    size_t n = strlen(c);

    return s.len == n && (n == 0 || strncasecmp(s.p, c, n) == 0);
}

const struct http_header *http_find_header(const struct http_head *h, const char *name)
{
    for (size_t i = 0; i < h->nheaders; i++) {
        if (http_str_eq(h->headers[i].name, name))
            return &h->headers[i];
    }
    return NULL;
}

/* Control characters anywhere in b[0..n): bare CR gets its own reason. */
static const char *check_controls(const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)b[i];

        if (!is_field_char(c))
            return c == '\r' ? "bare CR" : "control character";
    }
    return NULL;
}

/*
 * The checks that can be made on a line before it is complete. `n` excludes
 * a CR that may yet be followed by LF.
 */
static const char *check_early(const char *b, size_t n, bool first, bool is_request)
{
    size_t i = 0;

    if (first && is_request) {
        for (; i < n && b[i] != ' '; i++) {
            if (!is_tchar((unsigned char)b[i]))
                return "bad method";
        }
        if (i == 0 && n > 0)
            return "bad method";
    } else if (first) {
        static const char proto[] = "HTTP/";

        for (; i < n && i < sizeof(proto) - 1; i++) {
            if (b[i] != proto[i])
                return "bad status line";
        }
    }
    return check_controls(b + i, n - i);
}

/* "HTTP/1.0" or "HTTP/1.1" at v[0..8): sets *minor; NULL or a reason. */
static const char *parse_version(const char *v, int *minor, const char *bad)
{
    if (memcmp(v, "HTTP/", 5) != 0 || v[5] < '0' || v[5] > '9' || v[6] != '.' || v[7] < '0' ||
        v[7] > '9')
        return bad;
    if (v[5] != '1' || v[7] > '1')
        return "unsupported version";
    *minor = v[7] - '0';
    return NULL;
}

static const char *check_target(struct http_str m, struct http_str t)
{
    size_t i;

    if (http_str_eq(m, "CONNECT")) {
        /* authority-form: host:port, nothing else */
        if (t.p[0] == '/' || !memchr(t.p, ':', t.len))
            return "bad request target";
        for (i = 0; i < t.len; i++) {
            if (t.p[i] == '/' || t.p[i] == '?' || t.p[i] == '#' || t.p[i] == '@')
                return "bad request target";
        }
        return NULL;
    }
    if (t.p[0] == '/')
        return NULL;
    if (t.len == 1 && t.p[0] == '*')
        return http_str_eq(m, "OPTIONS") ? NULL : "bad request target";
    /* absolute-form: scheme "://" ... */
    if (!((t.p[0] >= 'a' && t.p[0] <= 'z') || (t.p[0] >= 'A' && t.p[0] <= 'Z')))
        return "bad request target";
    for (i = 1; i < t.len; i++) {
        char c = t.p[i];

        if (c == ':')
            break;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '+' || c == '-' || c == '.'))
            return "bad request target";
    }
    if (i + 3 > t.len || memcmp(t.p + i, "://", 3) != 0)
        return "bad request target";
    return NULL;
}

static const char *parse_request_line(const char *b, size_t n, struct http_head *h)
{
    size_t i = 0, t;
    const char *why;

    while (i < n && b[i] != ' ')
        i++;
    if (i == n)
        return "bad request line";
    h->method = (struct http_str){b, i};
    t = ++i;
    for (; i < n && b[i] != ' '; i++) {
        unsigned char c = (unsigned char)b[i];

        if (c <= 0x20 || c >= 0x7f)
            return "bad request target";
    }
    if (i == t || i == n)
        return "bad request line";
    h->target = (struct http_str){b + t, i - t};
    i++;
    if (n - i != 8)
        return "bad request line";
    why = parse_version(b + i, &h->minor, "bad request line");
    if (why)
        return why;
    return check_target(h->method, h->target);
}

static const char *parse_status_line(const char *b, size_t n, struct http_head *h)
{
    const char *why;

    if (n < 12)
        return "bad status line";
    why = parse_version(b, &h->minor, "bad status line");
    if (why)
        return why;
    if (b[8] != ' ')
        return "bad status line";
    for (int i = 9; i < 12; i++) {
        if (b[i] < '0' || b[i] > '9')
            return "bad status line";
    }
    h->status = (b[9] - '0') * 100 + (b[10] - '0') * 10 + (b[11] - '0');
    if (h->status < 100 || h->status > 599)
        return "bad status code";
    if (n > 12 && b[12] != ' ')
        return "bad status line";
    h->reason = n > 12 ? (struct http_str){b + 13, n - 13} : (struct http_str){b + 12, 0};
    return NULL;
}

static const char *parse_header_line(const char *b, size_t n, struct http_header *out)
{
    const char *colon;
    size_t i, s, e;

    if (is_ows(b[0]))
        return "obs-fold";
    colon = memchr(b, ':', n);
    if (!colon)
        return "header without colon";
    if (colon == b)
        return "empty header name";
    for (i = 0; b + i < colon; i++) {
        unsigned char c = (unsigned char)b[i];

        if (is_ows((char)c))
            return "whitespace before colon";
        if (!is_tchar(c))
            return "bad header name";
    }
    s = (size_t)(colon - b) + 1;
    e = n;
    while (s < e && is_ows(b[s]))
        s++;
    while (e > s && is_ows(b[e - 1]))
        e--;
    out->name = (struct http_str){b, (size_t)(colon - b)};
    out->value = (struct http_str){b + s, e - s};
    return NULL;
}

/* Next element of a comma-separated list in v, OWS trimmed; false at the end. */
static bool list_next(struct http_str *v, struct http_str *elem)
{
    while (v->len > 0) {
        const char *comma = memchr(v->p, ',', v->len);
        size_t n = comma ? (size_t)(comma - v->p) : v->len;
        struct http_str e = {v->p, n};

        v->p += comma ? n + 1 : n;
        v->len -= comma ? n + 1 : n;
        while (e.len && is_ows(e.p[0])) {
            e.p++;
            e.len--;
        }
        while (e.len && is_ows(e.p[e.len - 1]))
            e.len--;
        if (e.len) {
            *elem = e;
            return true;
        }
    }
    return false;
}

struct derive {
    int64_t cl;
    bool te, te_chunked_last, te_bad, cl_bad, cl_conflict;
    int chunked_count, hosts;
    bool conn_close, conn_keep, conn_upgrade, upgrade_hdr, expect;
};

static void derive_content_length(struct derive *d, struct http_str v)
{
    struct http_str e;
    bool any = false;

    /* A list of identical values is accepted (RFC 9112 6.3). */
    while (list_next(&v, &e)) {
        int64_t n = 0;

        any = true;
        if (e.len > 18) {
            d->cl_bad = true;
            return;
        }
        for (size_t i = 0; i < e.len; i++) {
            if (e.p[i] < '0' || e.p[i] > '9') {
                d->cl_bad = true;
                return;
            }
            n = n * 10 + (e.p[i] - '0');
        }
        if (d->cl >= 0 && d->cl != n)
            d->cl_conflict = true;
        d->cl = n;
    }
    if (!any)
        d->cl_bad = true;
}

static void derive_transfer_encoding(struct derive *d, struct http_str v)
{
    struct http_str e;
    bool any = false;

    d->te = true;
    while (list_next(&v, &e)) {
        size_t n = 0;

        any = true;
        while (n < e.len && is_tchar((unsigned char)e.p[n]))
            n++;
        if (n == 0 || (n < e.len && e.p[n] != ';' && !is_ows(e.p[n]))) {
            d->te_bad = true;
            return;
        }
        d->te_chunked_last = http_str_eq((struct http_str){e.p, n}, "chunked");
        if (d->te_chunked_last && (n != e.len || ++d->chunked_count > 1)) {
            d->te_bad = true;
            return;
        }
    }
    if (!any)
        d->te_bad = true;
}

static void derive_connection(struct derive *d, struct http_str v)
{
    struct http_str e;

    while (list_next(&v, &e)) {
        if (http_str_eq(e, "close"))
            d->conn_close = true;
        else if (http_str_eq(e, "keep-alive"))
            d->conn_keep = true;
        else if (http_str_eq(e, "upgrade"))
            d->conn_upgrade = true;
    }
}

/* The framing facts of a complete head; NULL or a reason. */
static const char *derive(struct http_head *h)
{
    struct derive d = {.cl = -1};

    for (size_t i = 0; i < h->nheaders; i++) {
        struct http_str n = h->headers[i].name, v = h->headers[i].value;

        /* By length first: most headers are none of these. */
        switch (n.len) {
        case 14:
            if (strncasecmp(n.p, "content-length", 14) == 0)
                derive_content_length(&d, v);
            break;
        case 17:
            if (strncasecmp(n.p, "transfer-encoding", 17) == 0)
                derive_transfer_encoding(&d, v);
            break;
        case 10:
            if (strncasecmp(n.p, "connection", 10) == 0)
                derive_connection(&d, v);
            break;
        case 7:
            if (strncasecmp(n.p, "upgrade", 7) == 0)
                d.upgrade_hdr = true;
            break;
        case 4:
            if (strncasecmp(n.p, "host", 4) == 0)
                d.hosts++;
            break;
        case 6:
            if (strncasecmp(n.p, "expect", 6) == 0)
                d.expect = d.expect || http_str_eq(v, "100-continue");
            break;
        default:
            break;
        }
    }
    if (d.cl_bad)
        return "invalid Content-Length";
    if (d.cl_conflict)
        return "conflicting Content-Length";
    if (d.te_bad)
        return "invalid Transfer-Encoding";
    if (d.te && d.cl >= 0)
        return "both Transfer-Encoding and Content-Length";
    if (h->is_request && d.te && !d.te_chunked_last)
        return "Transfer-Encoding not ending in chunked";
    if (h->is_request && d.hosts > 1)
        return "multiple Host headers";
    if (h->is_request && h->minor == 1 && d.hosts == 0)
        return "missing Host";
    h->content_length = d.cl;
    h->chunked = d.te && d.te_chunked_last;
    if (h->minor >= 1)
        h->keep_alive = !d.conn_close;
    else
        h->keep_alive = d.conn_keep && !d.conn_close;
    /* HTTP/1.0 with Transfer-Encoding: framing is suspect, close after it (RFC 9112 6.1). */
    if (h->minor == 0 && d.te)
        h->keep_alive = false;
    h->upgrade = d.conn_upgrade && d.upgrade_hdr;
    h->expect_continue = h->is_request && h->minor >= 1 && d.expect;
    return NULL;
}

long http_parse_head(const char *p, size_t len, bool is_request, struct http_head *h,
                     const char **why)
{
    size_t lim = len < HTTP_MAX_HEAD ? len : HTTP_MAX_HEAD;
    size_t pos = 0;
    const char *reason = NULL;
    long ret;
    bool first = true;

    h->is_request = is_request;
    h->method = h->target = h->reason = (struct http_str){p, 0};
    h->minor = 0;
    h->status = 0;
    h->nheaders = 0;
    h->content_length = -1;
    h->chunked = h->keep_alive = h->upgrade = h->expect_continue = false;

    for (;;) {
        const char *nl = pos < lim ? memchr(p + pos, '\n', lim - pos) : NULL;
        const char *b = p + pos;
        size_t n;
        bool cr;

        if (!nl) {
            /* A partial line: only the early checks; a final CR may yet be a CRLF. */
            n = lim - pos;
            if (n && b[n - 1] == '\r')
                n--;
            reason = check_early(b, n, first, is_request);
            if (reason) {
                ret = -EBADMSG;
                goto out;
            }
            if (len >= HTTP_MAX_HEAD) {
                reason = "head too large";
                ret = -EMSGSIZE;
                goto out;
            }
            ret = 0;
            goto out;
        }
        n = (size_t)(nl - b);
        cr = n > 0 && b[n - 1] == '\r';
        if (cr)
            n--;
        reason = check_early(b, n, first, is_request);
        if (!reason && !cr)
            reason = "bare LF";
        if (reason) {
            ret = -EBADMSG;
            goto out;
        }
        pos = (size_t)(nl - p) + 1;
        if (first) {
            if (n == 0)
                reason = is_request ? "bad request line" : "bad status line";
            else
                reason = is_request ? parse_request_line(b, n, h) : parse_status_line(b, n, h);
            first = false;
        } else if (n == 0) {
            reason = derive(h);
            ret = reason ? -EBADMSG : (long)pos;
            goto out;
        } else if (h->nheaders == HTTP_MAX_HEADERS) {
            reason = "too many headers";
            ret = -EMSGSIZE;
            goto out;
        } else {
            reason = parse_header_line(b, n, &h->headers[h->nheaders]);
            h->nheaders++;
        }
        if (reason) {
            ret = -EBADMSG;
            goto out;
        }
    }
out:
    if (why)
        *why = ret < 0 ? reason : NULL;
    return ret;
}

enum http_body_kind http_body_kind(const struct http_head *h, struct http_str req_method)
{
    if (h->is_request) {
        if (h->chunked)
            return HTTP_BODY_CHUNKED;
        return h->content_length >= 0 ? HTTP_BODY_LENGTH : HTTP_BODY_NONE;
    }
    if (h->status < 200 || h->status == 204 || h->status == 304)
        return HTTP_BODY_NONE;
    if (http_str_eq(req_method, "HEAD"))
        return HTTP_BODY_NONE;
    if (http_str_eq(req_method, "CONNECT") && h->status < 300)
        return HTTP_BODY_NONE;
    if (h->chunked)
        return HTTP_BODY_CHUNKED;
    if (h->content_length >= 0)
        return HTTP_BODY_LENGTH;
    return HTTP_BODY_CLOSE;
}

/*
 * Chunked decoder states. While in the trailer states `remaining` counts
 * trailer bytes (the last chunk has no data left).
 */
enum {
    CH_SIZE_START,
    CH_SIZE,
    CH_EXT_WS,
    CH_EXT,
    CH_SIZE_LF,
    CH_DATA,
    CH_DATA_CR,
    CH_DATA_LF,
    CH_TRAILER_START,
    CH_TRAILER_NAME,
    CH_TRAILER_VALUE,
    CH_TRAILER_LF,
    CH_END_LF,
    CH_ERROR,
};

void http_body_init(struct http_body *b, enum http_body_kind kind, int64_t content_length)
{
    memset(b, 0, sizeof(*b));
    b->kind = kind;
    b->state = CH_SIZE_START;
    if (kind == HTTP_BODY_LENGTH)
        b->remaining = content_length > 0 ? (uint64_t)content_length : 0;
    b->done = kind == HTTP_BODY_NONE || (kind == HTTP_BODY_LENGTH && b->remaining == 0);
}

static long chunk_fail(struct http_body *b)
{
    b->state = CH_ERROR;
    return -EBADMSG;
}

static long chunked_feed(struct http_body *b, const uint8_t *p, size_t len, http_data_fn fn,
                         void *opaque)
{
    size_t i = 0;

    while (i < len) {
        uint8_t c = p[i];
        int v;

        switch (b->state) {
        case CH_SIZE_START:
            v = hex_digit(c);
            if (v < 0)
                return chunk_fail(b);
            b->remaining = (uint64_t)v;
            b->line_len = 0;
            b->state = CH_SIZE;
            break;
        case CH_SIZE:
            v = hex_digit(c);
            if (v >= 0) {
                b->remaining = b->remaining * 16 + (uint64_t)v;
                if (b->remaining > CHUNK_SIZE_MAX)
                    return chunk_fail(b);
            } else if (c == ';') {
                b->state = CH_EXT;
            } else if (c == ' ' || c == '\t') {
                b->state = CH_EXT_WS;
            } else if (c == '\r') {
                b->state = CH_SIZE_LF;
            } else {
                return chunk_fail(b);
            }
            break;
        case CH_EXT_WS:
            if (c == ';')
                b->state = CH_EXT;
            else if (c == '\r')
                b->state = CH_SIZE_LF;
            else if (c != ' ' && c != '\t')
                return chunk_fail(b);
            break;
        case CH_EXT:
            if (c == '\r')
                b->state = CH_SIZE_LF;
            else if (!is_field_char(c))
                return chunk_fail(b);
            break;
        case CH_SIZE_LF:
            if (c != '\n')
                return chunk_fail(b);
            b->line_len = 0;
            b->state = b->remaining ? CH_DATA : CH_TRAILER_START;
            i++;
            continue;
        case CH_DATA: {
            size_t n = len - i;

            if (n > b->remaining)
                n = (size_t)b->remaining;
            if (fn)
                fn(opaque, p + i, n);
            b->remaining -= n;
            b->total += n;
            i += n;
            if (b->remaining == 0)
                b->state = CH_DATA_CR;
            continue;
        }
        case CH_DATA_CR:
            if (c != '\r')
                return chunk_fail(b);
            b->state = CH_DATA_LF;
            i++;
            continue;
        case CH_DATA_LF:
            if (c != '\n')
                return chunk_fail(b);
            b->state = CH_SIZE_START;
            i++;
            continue;
        case CH_TRAILER_START:
            if (c == '\r') {
                b->state = CH_END_LF;
                i++;
                continue;
            }
            if (!is_tchar(c))
                return chunk_fail(b); /* obs-fold, empty name, bare LF, control */
            b->state = CH_TRAILER_NAME;
            break;
        case CH_TRAILER_NAME:
            if (c == ':')
                b->state = CH_TRAILER_VALUE;
            else if (!is_tchar(c))
                return chunk_fail(b);
            break;
        case CH_TRAILER_VALUE:
            if (c == '\r')
                b->state = CH_TRAILER_LF;
            else if (!is_field_char(c))
                return chunk_fail(b);
            break;
        case CH_TRAILER_LF:
            if (c != '\n')
                return chunk_fail(b);
            b->state = CH_TRAILER_START;
            b->line_len = 0;
            if (++b->remaining > TRAILERS_MAX)
                return chunk_fail(b);
            i++;
            continue;
        case CH_END_LF:
            if (c != '\n')
                return chunk_fail(b);
            b->done = true;
            return (long)(i + 1);
        default:
            return chunk_fail(b);
        }
        /* A byte of a chunk-size line or a trailer line (CR included). */
        if (c != '\r' && ++b->line_len > CHUNK_LINE_MAX)
            return chunk_fail(b);
        if (b->state >= CH_TRAILER_START && ++b->remaining > TRAILERS_MAX)
            return chunk_fail(b);
        i++;
    }
    return (long)i;
}

long http_body_feed(struct http_body *b, const uint8_t *p, size_t len, http_data_fn fn,
                    void *opaque)
{
    size_t n;

    if (b->state == CH_ERROR)
        return -EBADMSG;
    if (b->done || len == 0)
        return 0;
    switch (b->kind) {
    case HTTP_BODY_LENGTH:
        n = len < b->remaining ? len : (size_t)b->remaining;
        if (fn)
            fn(opaque, p, n);
        b->remaining -= n;
        b->total += n;
        b->done = b->remaining == 0;
        return (long)n;
    case HTTP_BODY_CLOSE:
        if (fn)
            fn(opaque, p, len);
        b->total += len;
        return (long)len;
    case HTTP_BODY_CHUNKED:
        return chunked_feed(b, p, len, fn, opaque);
    case HTTP_BODY_NONE:
    default:
        b->done = true;
        return 0;
    }
}

int http_body_eof(struct http_body *b)
{
    if (b->done)
        return 0;
    if (b->kind == HTTP_BODY_CLOSE && b->state != CH_ERROR) {
        b->done = true;
        return 0;
    }
    return -EPIPE;
}
