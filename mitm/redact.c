/*
 * What the proxy stores about a message (mitm/redact.h): allowlisted headers
 * as JSON with credentials replaced, queries with secret parameters
 * replaced, and bounded UTF-8 body previews. The secret rule is applied
 * before the allowlist and to every occurrence of a name, so no casing or
 * repetition lets a credential through; everything that is not on the
 * allowlist is dropped rather than guessed about.
 */
#include "redact.h"
#include "hex.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* A growable output string; `oom` sticks once an allocation failed. */
struct sbuf {
    char *p;
    size_t len, cap;
    bool oom;
};

static void sb_put(struct sbuf *b, const void *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        char *np;

        while (cap < b->len + n + 1)
            cap *= 2;
        np = realloc(b->p, cap);
        if (!np) {
            b->oom = true;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_putc(struct sbuf *b, char c)
{
    sb_put(b, &c, 1);
}

static void sb_puts(struct sbuf *b, const char *s)
{
    sb_put(b, s, strlen(s));
}

/* Hand the string over (an empty one when nothing was written), or -ENOMEM. */
static int sb_finish(struct sbuf *b, char **out)
{
    if (!b->oom && !b->p)
        sb_put(b, "", 0);
    if (b->oom) {
        free(b->p);
        return -ENOMEM;
    }
    *out = b->p;
    return 0;
}

static char lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

/* Whether s[0..n) contains `needle` (lower case) in any case. */
static bool contains_ci(const char *s, size_t n, const char *needle)
{
    size_t m = strlen(needle);

    for (size_t i = 0; i + m <= n; i++) {
        size_t j = 0;

        while (j < m && lower(s[i + j]) == needle[j])
            j++;
        if (j == m)
            return true;
    }
    return false;
}

static bool eq_ci(const char *s, size_t n, const char *c)
{
    return strlen(c) == n && strncasecmp(s, c, n) == 0;
}

static const char *const secret_names[] = {
    "authorization", "proxy-authorization", "cookie",  "set-cookie",
    "x-api-key",     "x-goog-api-key",      "api-key",
};

static const char *const secret_parts[] = {
    "token",      "secret",    "key",     "password", "passwd",
    "credential", "signature", "session", "auth",     "cookie",
};

bool redact_name_is_secret(const char *name, size_t len)
{
    for (size_t i = 0; i < sizeof(secret_names) / sizeof(secret_names[0]); i++) {
        if (eq_ci(name, len, secret_names[i]))
            return true;
    }
    for (size_t i = 0; i < sizeof(secret_parts) / sizeof(secret_parts[0]); i++) {
        if (contains_ci(name, len, secret_parts[i]))
            return true;
    }
    return false;
}

static const char *const stored_names[] = {
    "accept",
    "accept-encoding",
    "accept-language",
    "cache-control",
    "connection",
    "content-type",
    "content-length",
    "content-encoding",
    "date",
    "etag",
    "expect",
    "host",
    "last-modified",
    "location",
    "retry-after",
    "server",
    "transfer-encoding",
    "upgrade",
    "user-agent",
    "vary",
    "via",
    "x-request-id",
    "request-id",
    "x-amzn-requestid",
    "x-amz-request-id",
    "x-goog-request-id",
    "cf-ray",
    "x-cloud-trace-context",
    "anthropic-version",
    "anthropic-beta",
    "anthropic-organization-id",
    "openai-organization",
    "openai-project",
    "openai-version",
    "openai-processing-ms",
    "openai-model",
};

static const char *const stored_prefixes[] = {"x-stainless-", "x-ratelimit-",
                                              "anthropic-ratelimit-"};

static bool name_is_stored(const char *name, size_t len)
{
    for (size_t i = 0; i < sizeof(stored_names) / sizeof(stored_names[0]); i++) {
        if (eq_ci(name, len, stored_names[i]))
            return true;
    }
    for (size_t i = 0; i < sizeof(stored_prefixes) / sizeof(stored_prefixes[0]); i++) {
        size_t m = strlen(stored_prefixes[i]);

        if (len > m && strncasecmp(name, stored_prefixes[i], m) == 0)
            return true;
    }
    return false;
}

/*
 * Length of the valid UTF-8 sequence at p[0..len): 1-4, 0 when it is
 * invalid, -1 when it is a valid start cut off by the end.
 */
static int utf8_seq(const uint8_t *p, size_t len)
{
    uint8_t c = p[0], lo = 0x80, hi = 0xbf;
    int n;

    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        n = 2;
    else if (c >= 0xe0 && c <= 0xef)
        n = 3;
    else if (c >= 0xf0 && c <= 0xf4)
        n = 4;
    else
        return 0;
    /* No overlong forms, no surrogates, nothing past U+10FFFF. */
    if (c == 0xe0)
        lo = 0xa0;
    else if (c == 0xed)
        hi = 0x9f;
    else if (c == 0xf0)
        lo = 0x90;
    else if (c == 0xf4)
        hi = 0x8f;
    for (int i = 1; i < n; i++) {
        if ((size_t)i >= len)
            return -1;
        if (p[i] < (i == 1 ? lo : 0x80) || p[i] > (i == 1 ? hi : 0xbf))
            return 0;
    }
    return n;
}

/*
 * Append the first `max` bytes of p[0..len) as valid UTF-8: a character cut
 * by the end is dropped, invalid bytes and control characters other than
 * tab, LF and CR become '.'. Never more than `max` bytes.
 */
static void put_clean(struct sbuf *o, const uint8_t *p, size_t len, size_t max)
{
    size_t i = 0;

    if (len > max)
        len = max;
    while (i < len) {
        int n = utf8_seq(p + i, len - i);

        if (n < 0)
            break;
        if (n == 1) {
            uint8_t c = p[i];
            bool ok = c >= 0x20 ? c != 0x7f : (c == '\t' || c == '\n' || c == '\r');

            sb_putc(o, ok ? (char)c : '.');
            i++;
        } else if (n == 0) {
            sb_putc(o, '.');
            i++;
        } else {
            sb_put(o, p + i, (size_t)n);
            i += (size_t)n;
        }
    }
}

/* Append s[0..n) as the contents of a JSON string (s is valid UTF-8). */
static void put_json_escaped(struct sbuf *o, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";

    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];

        if (c == '"' || c == '\\') {
            sb_putc(o, '\\');
            sb_putc(o, (char)c);
        } else if (c == '\n') {
            sb_puts(o, "\\n");
        } else if (c == '\r') {
            sb_puts(o, "\\r");
        } else if (c == '\t') {
            sb_puts(o, "\\t");
        } else if (c < 0x20) {
            char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};

            sb_put(o, e, sizeof(e));
        } else {
            sb_putc(o, (char)c);
        }
    }
}

static void put_query_redacted(struct sbuf *o, const char *q, size_t len);

/* A stored value, with a Location's query redacted. */
static void put_value(struct sbuf *o, struct http_str name, struct http_str v)
{
    const char *qm;

    if (!eq_ci(name.p, name.len, "location") || !(qm = memchr(v.p, '?', v.len))) {
        sb_put(o, v.p, v.len);
        return;
    }
    {
        size_t pre = (size_t)(qm - v.p) + 1;
        const char *hash = memchr(qm, '#', v.len - pre + 1);
        size_t qlen = hash ? (size_t)(hash - qm) - 1 : v.len - pre;

        sb_put(o, v.p, pre);
        put_query_redacted(o, qm + 1, qlen);
        if (hash)
            sb_put(o, hash, v.len - (size_t)(hash - v.p));
    }
}

int redact_headers_json(const struct http_head *h, char **out)
{
    bool seen[HTTP_MAX_HEADERS] = {false};
    struct sbuf o = {0}, raw = {0}, clean = {0};
    size_t n = h->nheaders < HTTP_MAX_HEADERS ? h->nheaders : HTTP_MAX_HEADERS;
    bool first = true;
    int ret;

    sb_putc(&o, '{');
    for (size_t i = 0; i < n; i++) {
        struct http_str name = h->headers[i].name;
        bool secret;

        if (seen[i])
            continue;
        secret = redact_name_is_secret(name.p, name.len);
        if (!secret && !name_is_stored(name.p, name.len))
            continue;
        raw.len = clean.len = 0;
        if (secret) {
            sb_puts(&clean, REDACTED);
        } else {
            put_value(&raw, name, h->headers[i].value);
        }
        for (size_t j = i + 1; j < n; j++) {
            const struct http_header *hj = &h->headers[j];

            if (hj->name.len != name.len || strncasecmp(hj->name.p, name.p, name.len) != 0)
                continue;
            seen[j] = true;
            if (!secret) {
                sb_puts(&raw, ", ");
                put_value(&raw, name, hj->value);
            }
        }
        if (!secret)
            put_clean(&clean, (const uint8_t *)raw.p, raw.len, REDACT_VALUE_MAX);
        if (!first)
            sb_putc(&o, ',');
        first = false;
        sb_putc(&o, '"');
        for (size_t k = 0; k < name.len; k++) {
            char c = lower(name.p[k]);

            put_json_escaped(&o, &c, 1);
        }
        sb_puts(&o, "\":\"");
        put_json_escaped(&o, clean.p ? clean.p : "", clean.len);
        sb_putc(&o, '"');
        if (raw.oom || clean.oom)
            o.oom = true;
    }
    sb_putc(&o, '}');
    ret = sb_finish(&o, out);
    free(raw.p);
    free(clean.p);
    return ret;
}

/* Whether a raw (percent-encoded) parameter name is secret. */
static bool param_is_secret(const char *s, size_t n)
{
    char dec[256];
    size_t m = 0;

    /* Longer names are judged on their first 256 decoded bytes and raw form. */
    for (size_t i = 0; i < n && m < sizeof(dec); i++) {
        if (s[i] == '%' && i + 2 < n && hex_digit(s[i + 1]) >= 0 && hex_digit(s[i + 2]) >= 0) {
            dec[m++] = (char)(hex_digit(s[i + 1]) * 16 + hex_digit(s[i + 2]));
            i += 2;
        } else {
            dec[m++] = s[i] == '+' ? ' ' : s[i];
        }
    }
    return redact_name_is_secret(dec, m) || redact_name_is_secret(s, n);
}

static void put_printable(struct sbuf *o, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        sb_putc(o, s[i] >= 0x20 && s[i] < 0x7f ? s[i] : '.');
}

static void put_query_redacted(struct sbuf *o, const char *q, size_t len)
{
    size_t i = 0;

    if (len == 0)
        return;
    while (i <= len) {
        const char *amp = memchr(q + i, '&', len - i);
        size_t end = amp ? (size_t)(amp - q) : len;
        const char *eq = memchr(q + i, '=', end - i);

        if (eq && param_is_secret(q + i, (size_t)(eq - q) - i)) {
            put_printable(o, q + i, (size_t)(eq - q) - i + 1);
            sb_puts(o, REDACTED);
        } else {
            put_printable(o, q + i, end - i);
        }
        if (!amp)
            break;
        sb_putc(o, '&');
        i = end + 1;
    }
}

int redact_query(const char *q, size_t len, char **out)
{
    struct sbuf o = {0};

    put_query_redacted(&o, q, len);
    return sb_finish(&o, out);
}

int redact_preview(const uint8_t *p, size_t len, size_t max, char **out)
{
    struct sbuf o = {0};

    put_clean(&o, p, len, max ? max : REDACT_PREVIEW_DEFAULT);
    return sb_finish(&o, out);
}

void redact_capture_init(struct redact_capture *c, size_t max)
{
    c->len = 0;
    c->seen = 0;
    c->max = max == 0 ? REDACT_PREVIEW_DEFAULT : max;
    if (c->max > REDACT_PREVIEW_MAX)
        c->max = REDACT_PREVIEW_MAX;
}

void redact_capture_add(void *capture, const uint8_t *p, size_t len)
{
    struct redact_capture *c = capture;
    size_t room = c->max - c->len;
    size_t n = len < room ? len : room;

    if (n)
        memcpy(c->buf + c->len, p, n);
    c->len += n;
    c->seen += len;
}

int redact_capture_preview(const struct redact_capture *c, char **out)
{
    return redact_preview(c->buf, c->len, c->max, out);
}
