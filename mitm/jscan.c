/*
 * The pruning JSON reader for model request bodies (see jscan.h). One pass
 * over the bytes with an explicit stack of open containers (no recursion);
 * strings are copied in plain runs found 16 bytes at a time, escapes and
 * UTF-8 sequences checked as jansson checks them. Once a string value has
 * more than the bound of decoded bytes, the rest of it is only scanned for
 * its closing quote, with its escapes and control characters still checked.
 */
#include "jscan.h"
#include "hex.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

struct scan {
    const unsigned char *p;
    size_t len, pos;
    char *sb; /* the current string or number, decoded */
    size_t sb_len, sb_cap;
};

struct frame {
    json_t *c;
    char *key; /* an object's key waiting for its value */
};

static int sb_reserve(struct scan *s, size_t extra)
{
    if (s->sb_cap - s->sb_len > extra)
        return 0; /* one spare byte for a NUL */
    size_t need = s->sb_len + extra + 1;
    if (need <= s->sb_len)
        return -ENOMEM;
    size_t cap = s->sb_cap ? s->sb_cap : 256;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    char *n = realloc(s->sb, cap);
    if (!n)
        return -ENOMEM;
    s->sb = n;
    s->sb_cap = cap;
    return 0;
}

static int sb_append(struct scan *s, const void *q, size_t n)
{
    int rc = sb_reserve(s, n);
    if (rc == 0) {
        memcpy(s->sb + s->sb_len, q, n);
        s->sb_len += n;
    }
    return rc;
}

static bool special(unsigned char c, bool high)
{
    return c == '"' || c == '\\' || c < 0x20 || (high && c >= 0x80);
}

#ifdef __SSE2__
/* Bit i set when q[i] is a quote, a backslash, a control byte (or >= 0x80 when `high`). */
static inline unsigned block_mask(const unsigned char *q, bool high)
{
    const __m128i v = _mm_loadu_si128((const __m128i *)(const void *)q);
    __m128i m =
        _mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('"')), _mm_cmpeq_epi8(v, _mm_set1_epi8('\\')));
    m = _mm_or_si128(m, _mm_cmpeq_epi8(_mm_min_epu8(v, _mm_set1_epi8(0x1f)), v));
    unsigned mask = (unsigned)_mm_movemask_epi8(m);
    if (high)
        mask |= (unsigned)_mm_movemask_epi8(v);
    return mask;
}
#endif

/* Four hex digits at pos (advanced past them) into *cp. */
static int hex4(struct scan *s, uint32_t *cp)
{
    if (s->len - s->pos < 4)
        return -EINVAL;
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hex_digit(s->p[s->pos + (size_t)i]);
        if (h < 0)
            return -EINVAL;
        v = v << 4 | (uint32_t)h;
    }
    s->pos += 4;
    *cp = v;
    return 0;
}

static size_t utf8_put(uint32_t cp, unsigned char *o)
{
    if (cp < 0x80) {
        o[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (unsigned char)(0xC0 | cp >> 6);
        o[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | cp >> 12);
        o[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
        o[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | cp >> 18);
    o[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3F));
    o[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
    o[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

/*
 * The escape at pos (a backslash), decoded into o[0..*n); pos advanced past
 * it. \u0000, lone surrogates and anything but the JSON escapes are refused.
 */
static int escape(struct scan *s, unsigned char *o, size_t *n)
{
    if (s->len - s->pos < 2)
        return -EINVAL;
    unsigned char c = s->p[s->pos + 1];
    s->pos += 2;
    switch (c) {
    case '"':
    case '\\':
    case '/':
        o[0] = c;
        break;
    case 'b':
        o[0] = '\b';
        break;
    case 'f':
        o[0] = '\f';
        break;
    case 'n':
        o[0] = '\n';
        break;
    case 'r':
        o[0] = '\r';
        break;
    case 't':
        o[0] = '\t';
        break;
    case 'u': {
        uint32_t cp, lo;
        if (hex4(s, &cp) != 0 || cp == 0)
            return -EINVAL;
        if (cp >= 0xDC00 && cp <= 0xDFFF)
            return -EINVAL;
        if (cp >= 0xD800 && cp <= 0xDBFF) {
            if (s->len - s->pos < 2 || s->p[s->pos] != '\\' || s->p[s->pos + 1] != 'u')
                return -EINVAL;
            s->pos += 2;
            if (hex4(s, &lo) != 0 || lo < 0xDC00 || lo > 0xDFFF)
                return -EINVAL;
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
        }
        *n = utf8_put(cp, o);
        return 0;
    }
    default:
        return -EINVAL;
    }
    *n = 1;
    return 0;
}

/* The length of the valid UTF-8 sequence (first byte >= 0x80) at q, or 0. */
static size_t utf8_len(const unsigned char *q, size_t avail)
{
    unsigned c = q[0];
    size_t n;
    uint32_t v;
    if (c < 0xC2)
        return 0;
    if (c < 0xE0) {
        n = 2;
        v = c & 0x1F;
    } else if (c < 0xF0) {
        n = 3;
        v = c & 0x0F;
    } else if (c <= 0xF4) {
        n = 4;
        v = c & 0x07;
    } else {
        return 0;
    }
    if (avail < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((q[i] & 0xC0) != 0x80)
            return 0;
        v = v << 6 | (q[i] & 0x3F);
    }
    if ((n == 3 && v < 0x800) || (n == 4 && v < 0x10000) || v > 0x10FFFF ||
        (v >= 0xD800 && v <= 0xDFFF))
        return 0;
    return n;
}

/* The escape at pos checked and passed over (the short ones without decoding). */
static inline int pass_escape(struct scan *s)
{
    if (s->len - s->pos >= 2) {
        switch (s->p[s->pos + 1]) {
        case '"':
        case '\\':
        case '/':
        case 'b':
        case 'f':
        case 'n':
        case 'r':
        case 't':
            s->pos += 2;
            return 0;
        default:
            break;
        }
    }
    unsigned char u[4];
    size_t n;
    return escape(s, u, &n);
}

/*
 * After more than the bound was kept: find the closing quote, 16 bytes at a
 * time, checking the escapes and control characters passed over (not UTF-8).
 */
static int skip_tail(struct scan *s)
{
#ifdef __SSE2__
    size_t pos = s->pos;
    while (s->len - pos >= 16) {
        unsigned mask = block_mask(s->p + pos, false);
        size_t next = pos + 16;
        while (mask) {
            size_t at = pos + (size_t)__builtin_ctz(mask);
            s->pos = at;
            if (s->p[at] == '"') {
                s->pos++;
                return 0;
            }
            if (s->p[at] != '\\')
                return -EINVAL; /* a control character */
            int rc = pass_escape(s);
            if (rc != 0)
                return rc;
            if (s->pos - pos >= 16) {
                next = s->pos;
                break;
            }
            mask &= ~0u << (s->pos - pos); /* what the escape covered */
        }
        pos = next;
    }
    s->pos = pos;
#endif
    for (;;) {
        while (s->pos < s->len && !special(s->p[s->pos], false))
            s->pos++;
        if (s->pos >= s->len)
            return -EINVAL;
        unsigned char c = s->p[s->pos];
        if (c == '"') {
            s->pos++;
            return 0;
        }
        if (c != '\\')
            return -EINVAL; /* a control character */
        int rc = pass_escape(s);
        if (rc != 0)
            return rc;
    }
}

/*
 * The string whose opening quote is just before pos, decoded into sb; when
 * it decodes to more than `bound` bytes (SIZE_MAX: no bound), only its first
 * `bound` bytes are kept, less a UTF-8 character cut there. Plain bytes are
 * copied 16 at a time (sb keeps 16 bytes of slack for it).
 */
static int scan_string(struct scan *s, size_t bound)
{
    int rc;
    s->sb_len = 0;
    while (s->sb_len <= bound) {
        if (s->sb_cap - s->sb_len < 32) {
            rc = sb_reserve(s, 32);
            if (rc != 0)
                return rc;
        }
#ifdef __SSE2__
        if (s->len - s->pos >= 16) {
            unsigned mask = block_mask(s->p + s->pos, true);
            _mm_storeu_si128((__m128i *)(void *)(s->sb + s->sb_len),
                             _mm_loadu_si128((const __m128i *)(const void *)(s->p + s->pos)));
            size_t k = mask ? (size_t)__builtin_ctz(mask) : 16;
            s->pos += k;
            s->sb_len += k;
            if (!mask)
                continue;
        } else
#endif
        {
            while (s->pos < s->len && !special(s->p[s->pos], true) && s->sb_cap - s->sb_len > 8)
                s->sb[s->sb_len++] = (char)s->p[s->pos++];
            if (s->pos < s->len && !special(s->p[s->pos], true))
                continue; /* room ran low */
        }
        if (s->sb_len > bound)
            break;
        if (s->pos >= s->len)
            return -EINVAL;
        unsigned char c = s->p[s->pos];
        if (c == '"') {
            s->pos++;
            return 0;
        }
        if (c < 0x20)
            return -EINVAL;
        size_t n;
        if (c == '\\') {
            rc = escape(s, (unsigned char *)s->sb + s->sb_len, &n);
            if (rc != 0)
                return rc;
        } else {
            n = utf8_len(s->p + s->pos, s->len - s->pos);
            if (n == 0)
                return -EINVAL;
            memcpy(s->sb + s->sb_len, s->p + s->pos, n);
            s->pos += n;
        }
        s->sb_len += n;
    }
    rc = skip_tail(s);
    if (rc != 0)
        return rc;
    size_t n = bound;
    while (n > 0 && ((unsigned char)s->sb[n] & 0xC0) == 0x80)
        n--;
    s->sb_len = n;
    return 0;
}

static bool is_digit(const struct scan *s)
{
    return s->pos < s->len && s->p[s->pos] >= '0' && s->p[s->pos] <= '9';
}

static void skip_digits(struct scan *s)
{
    while (is_digit(s))
        s->pos++;
}

/* A number at pos: an integer unless it has a fraction or exponent, as in jansson. */
static int scan_number(struct scan *s, json_t **out)
{
    size_t start = s->pos;
    bool real = false;
    if (s->p[s->pos] == '-')
        s->pos++;
    if (s->pos < s->len && s->p[s->pos] == '0') {
        s->pos++;
        if (is_digit(s))
            return -EINVAL; /* a leading zero */
    } else if (is_digit(s)) {
        skip_digits(s);
    } else {
        return -EINVAL;
    }
    if (s->pos < s->len && s->p[s->pos] == '.') {
        s->pos++;
        if (!is_digit(s))
            return -EINVAL;
        skip_digits(s);
        real = true;
    }
    if (s->pos < s->len && (s->p[s->pos] == 'e' || s->p[s->pos] == 'E')) {
        s->pos++;
        if (s->pos < s->len && (s->p[s->pos] == '+' || s->p[s->pos] == '-'))
            s->pos++;
        if (!is_digit(s))
            return -EINVAL;
        skip_digits(s);
        real = true;
    }
    s->sb_len = 0;
    int rc = sb_append(s, s->p + start, s->pos - start);
    if (rc != 0)
        return rc;
    s->sb[s->sb_len] = '\0';
    errno = 0;
    if (!real) {
        json_int_t v = strtoll(s->sb, NULL, 10);
        if (errno == ERANGE)
            return -EINVAL; /* jansson: too big integer */
        *out = json_integer(v);
    } else {
        double d = strtod(s->sb, NULL);
        if ((d == HUGE_VAL || d == -HUGE_VAL) && errno == ERANGE)
            return -EINVAL; /* jansson: real number overflow */
        *out = json_real(d);
    }
    return *out ? 0 : -ENOMEM;
}

static bool literal(struct scan *s, const char *word, size_t n)
{
    if (s->len - s->pos < n || memcmp(s->p + s->pos, word, n) != 0)
        return false;
    s->pos += n;
    return true;
}

static void skip_ws(struct scan *s)
{
    while (s->pos < s->len) {
        unsigned char c = s->p[s->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
            break;
        s->pos++;
    }
}

enum step {
    STEP_VALUE, /* a value starts at pos */
    STEP_KEY,   /* an object member's key starts at pos */
    STEP_NEXT,  /* v is complete: attach it, then a comma or a closing bracket */
    STEP_DONE,
};

int jscan_load(const char *data, size_t len, size_t max_string, json_t **out, size_t *err_off)
{
    struct scan s = {.p = (const unsigned char *)data, .len = len};
    struct frame *st = NULL;
    size_t depth = 0, st_cap = 0;
    json_t *v = NULL;
    int rc = -EINVAL;
    enum step step = STEP_VALUE;

    skip_ws(&s);
    if (s.pos >= len || (s.p[s.pos] != '{' && s.p[s.pos] != '['))
        goto out; /* flags 0: the top level is an object or an array */
    while (step != STEP_DONE) {
        if (step == STEP_KEY) {
            struct frame *f = &st[depth - 1];
            if (s.pos >= len || s.p[s.pos] != '"')
                goto out;
            s.pos++;
            rc = scan_string(&s, SIZE_MAX);
            if (rc != 0)
                goto out;
            rc = -ENOMEM;
            f->key = malloc(s.sb_len + 1);
            if (!f->key)
                goto out;
            memcpy(f->key, s.sb, s.sb_len);
            f->key[s.sb_len] = '\0';
            rc = -EINVAL;
            skip_ws(&s);
            if (s.pos >= len || s.p[s.pos] != ':')
                goto out;
            s.pos++;
            skip_ws(&s);
            step = STEP_VALUE;
            continue;
        }
        if (step == STEP_VALUE) {
            rc = -EINVAL;
            if (s.pos >= len || depth + 1 > JSCAN_DEPTH_MAX)
                goto out;
            unsigned char c = s.p[s.pos];
            if (c == '{' || c == '[') {
                rc = -ENOMEM;
                if (depth == st_cap) {
                    size_t na = st_cap ? st_cap * 2 : 16;
                    struct frame *ns = realloc(st, na * sizeof(*ns));
                    if (!ns)
                        goto out;
                    st = ns;
                    st_cap = na;
                }
                json_t *n = c == '{' ? json_object() : json_array();
                if (!n)
                    goto out;
                st[depth++] = (struct frame){.c = n};
                rc = -EINVAL;
                s.pos++;
                skip_ws(&s);
                if (s.pos < len && s.p[s.pos] == (c == '{' ? '}' : ']')) {
                    s.pos++;
                    v = st[--depth].c;
                    step = STEP_NEXT;
                } else {
                    step = c == '{' ? STEP_KEY : STEP_VALUE;
                }
                continue;
            }
            if (c == '"') {
                s.pos++;
                rc = scan_string(&s, max_string);
                if (rc != 0)
                    goto out;
                v = json_stringn_nocheck(s.sb, s.sb_len);
            } else if (c == '-' || (c >= '0' && c <= '9')) {
                rc = scan_number(&s, &v);
                if (rc != 0)
                    goto out;
            } else if (literal(&s, "true", 4)) {
                v = json_true();
            } else if (literal(&s, "false", 5)) {
                v = json_false();
            } else if (literal(&s, "null", 4)) {
                v = json_null();
            } else {
                goto out;
            }
            rc = -ENOMEM;
            if (!v)
                goto out;
            step = STEP_NEXT;
            continue;
        }
        /* STEP_NEXT */
        if (depth == 0) {
            step = STEP_DONE;
            continue;
        }
        struct frame *f = &st[depth - 1];
        bool is_obj = json_is_object(f->c);
        int r =
            is_obj ? json_object_set_new_nocheck(f->c, f->key, v) : json_array_append_new(f->c, v);
        v = NULL; /* taken even on failure */
        free(f->key);
        f->key = NULL;
        rc = -ENOMEM;
        if (r != 0)
            goto out;
        rc = -EINVAL;
        skip_ws(&s);
        if (s.pos >= len)
            goto out;
        if (s.p[s.pos] == ',') {
            s.pos++;
            skip_ws(&s);
            step = is_obj ? STEP_KEY : STEP_VALUE;
        } else if (s.p[s.pos] == (is_obj ? '}' : ']')) {
            s.pos++;
            v = st[--depth].c;
        } else {
            goto out;
        }
    }
    skip_ws(&s);
    rc = -EINVAL;
    if (s.pos != len)
        goto out; /* trailing garbage */
    *out = v;
    v = NULL;
    rc = 0;
out:
    if (rc != 0 && err_off)
        *err_off = s.pos;
    json_decref(v);
    for (size_t i = depth; i > 0; i--) {
        free(st[i - 1].key);
        json_decref(st[i - 1].c);
    }
    free(st);
    free(s.sb);
    return rc;
}
