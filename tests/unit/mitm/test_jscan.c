/*
 * unit.mitm.jscan: the pruning request reader against jansson itself. Every
 * input is read by both json_loadb(flags 0) and jscan_load; where jansson
 * refuses, jscan must refuse (-EINVAL); where jansson reads a tree, jscan must
 * give the same tree (json_equal, and the same key order in a compact dump)
 * after the reference cut below is applied to jansson's strings. Inputs: the
 * JSON string literals of the model parser tests (tests/unit/mitm), every
 * file of the fuzz corpora (tests/fuzz/corpus, also split at NUL bytes as
 * the model corpus packs a request and a response), every prefix of the
 * small ones (truncated input), generated documents with all value kinds,
 * escapes, surrogate pairs, multibyte characters, duplicate keys and deep
 * nesting, and byte mutations of those (malformed input of every kind).
 * Bounds from 0 to 12 bytes put the cut on every kind of character. The one
 * documented difference (invalid UTF-8 in a skipped tail is not seen) is
 * checked on its own and allowed only when pruning explains it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "jscan.h"

#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---- the reference: jansson's tree with long strings cut as jscan cuts them ---- */

static json_t *cut_string(json_t *v, size_t bound)
{
    size_t n = json_string_length(v);
    const char *s = json_string_value(v);
    if (n <= bound)
        return NULL;
    n = bound;
    while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
        n--;
    json_t *c = json_stringn(s, n);
    assert_non_null(c);
    return c;
}

static void cut_tree(json_t *v, size_t bound)
{
    if (json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v); i++) {
            json_t *e = json_array_get(v, i);
            json_t *c = json_is_string(e) ? cut_string(e, bound) : NULL;
            if (c)
                assert_int_equal(json_array_set_new(v, i, c), 0);
            else
                cut_tree(e, bound);
        }
    } else if (json_is_object(v)) {
        const char *k;
        json_t *e;
        void *tmp;
        json_object_foreach_safe(v, tmp, k, e)
        {
            json_t *c = json_is_string(e) ? cut_string(e, bound) : NULL;
            if (c)
                assert_int_equal(json_object_set_new(v, k, c), 0);
            else
                cut_tree(e, bound);
        }
    }
}

static size_t n_checked, n_refused;

/* Both readers on d[0..n) with `bound`; returns jscan's rc. */
static int check_same(const char *d, size_t n, size_t bound)
{
    json_error_t err;
    json_t *ref = json_loadb(d, n, 0, &err);
    json_t *got = NULL;
    int rc = jscan_load(d, n, bound, &got, NULL);
    n_checked++;
    if (!ref) {
        n_refused++;
        if (rc == 0 && json_error_code(&err) == json_error_invalid_utf8) {
            /* the documented difference: only when a cut string's tail hides it */
            json_t *full = NULL;
            int rc2 = jscan_load(d, n, SIZE_MAX, &full, NULL);
            json_decref(full);
            json_decref(got);
            if (rc2 != -EINVAL)
                fail_msg("jscan reads invalid UTF-8 outside a skipped tail: %.*s", (int)n, d);
            return -EINVAL;
        }
        if (rc != -EINVAL)
            fail_msg("jansson refuses (%s) but jscan gives %d: %.*s", err.text, rc, (int)n, d);
        return rc;
    }
    if (rc != 0)
        fail_msg("jansson reads but jscan gives %d: %.*s", rc, (int)n, d);
    cut_tree(ref, bound);
    char *a = json_dumps(ref, JSON_COMPACT | JSON_ENCODE_ANY);
    char *b = json_dumps(got, JSON_COMPACT | JSON_ENCODE_ANY);
    assert_non_null(a);
    assert_non_null(b);
    if (!json_equal(ref, got) || strcmp(a, b) != 0)
        fail_msg("trees differ at bound %zu\n input %.*s\n want %s\n got  %s", bound, (int)n, d, a,
                 b);
    free(a);
    free(b);
    json_decref(ref);
    json_decref(got);
    return 0;
}

static void check_bounds(const char *d, size_t n)
{
    for (size_t b = 0; b <= 12; b++)
        check_same(d, n, b);
    check_same(d, n, 64);
    check_same(d, n, JSCAN_STRING_MAX);
    check_same(d, n, SIZE_MAX);
}

static void check_prefixes(const char *d, size_t n)
{
    for (size_t i = 0; i < n; i++)
        check_same(d, i, 8);
}

/* ---- corpus: string literals of the model tests, fuzz corpora ---- */

struct corpus {
    char **doc;
    size_t *len;
    size_t n, cap;
};

static void corpus_add(struct corpus *c, const char *d, size_t n)
{
    if (c->n == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 64;
        c->doc = realloc(c->doc, c->cap * sizeof(*c->doc));
        c->len = realloc(c->len, c->cap * sizeof(*c->len));
        assert_non_null(c->doc);
        assert_non_null(c->len);
    }
    c->doc[c->n] = malloc(n + 1);
    assert_non_null(c->doc[c->n]);
    memcpy(c->doc[c->n], d, n);
    c->doc[c->n][n] = '\0';
    c->len[c->n++] = n;
}

static char *read_all(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 4096, len = 0;
    char *p = malloc(cap);
    assert_non_null(p);
    size_t r;
    while ((r = fread(p + len, 1, cap - len, f)) > 0) {
        len += r;
        if (len == cap) {
            cap *= 2;
            p = realloc(p, cap);
            assert_non_null(p);
        }
    }
    fclose(f);
    *n = len;
    return p;
}

/* The directory this file lives in (tests/unit/mitm), from __FILE__. */
static void source_dir(char *out, size_t n)
{
    snprintf(out, n, "%s", __FILE__);
    char *slash = strrchr(out, '/');
    if (slash)
        *slash = '\0';
    else
        snprintf(out, n, ".");
}

/* Adjacent C string literals of one source file joined and decoded; JSON-looking ones kept. */
static void add_literals(struct corpus *c, const char *src, size_t n)
{
    char *cur = malloc(n + 1);
    assert_non_null(cur);
    size_t cl = 0;
    bool in_lit_run = false;
    for (size_t i = 0; i < n; i++) {
        char ch = src[i];
        if (ch == '/' && i + 1 < n && src[i + 1] == '/') {
            while (i < n && src[i] != '\n')
                i++;
            continue;
        }
        if (ch == '/' && i + 1 < n && src[i + 1] == '*') {
            const char *e = strstr(src + i + 2, "*/");
            i = e ? (size_t)(e - src) + 1 : n;
            continue;
        }
        if (ch == '\'') { /* a character literal, possibly '"' */
            i++;
            if (i < n && src[i] == '\\')
                i++;
            i++;
            continue;
        }
        if (ch == '"') {
            in_lit_run = true;
            for (i++; i < n && src[i] != '"'; i++) {
                if (src[i] != '\\') {
                    cur[cl++] = src[i];
                    continue;
                }
                i++;
                switch (src[i]) {
                case 'n':
                    cur[cl++] = '\n';
                    break;
                case 't':
                    cur[cl++] = '\t';
                    break;
                case 'r':
                    cur[cl++] = '\r';
                    break;
                case '0':
                    cur[cl++] = '\0';
                    break;
                case 'x': {
                    unsigned v = 0;
                    int k = 0;
                    while (k < 2 && i + 1 < n && strchr("0123456789abcdefABCDEF", src[i + 1])) {
                        char h = src[++i];
                        v = v * 16 + (unsigned)(h <= '9' ? h - '0' : (h | 0x20) - 'a' + 10);
                        k++;
                    }
                    cur[cl++] = (char)v;
                    break;
                }
                default:
                    cur[cl++] = src[i];
                }
            }
            continue;
        }
        if (ch == ' ' || ch == '\n' || ch == '\t' || ch == '\r')
            continue;
        if (in_lit_run && cl > 0 && (cur[0] == '{' || cur[0] == '['))
            corpus_add(c, cur, cl);
        in_lit_run = false;
        cl = 0;
    }
    free(cur);
}

static void add_dir_files(struct corpus *c, const char *dir, int depth)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        struct stat st;
        if (stat(path, &st) != 0)
            continue;
        if (S_ISDIR(st.st_mode)) {
            if (depth < 3)
                add_dir_files(c, path, depth + 1);
            continue;
        }
        size_t n;
        char *p = read_all(path, &n);
        if (!p)
            continue;
        corpus_add(c, p, n);
        /* pieces between NUL bytes; the model corpus's request after its 2 header bytes */
        size_t start = 0;
        for (size_t i = 0; i <= n; i++) {
            if (i == n || p[i] == '\0') {
                if (i > start)
                    corpus_add(c, p + start, i - start);
                start = i + 1;
            }
        }
        if (n > 2)
            corpus_add(c, p + 2, strnlen(p + 2, n - 2));
        free(p);
    }
    closedir(d);
}

static void load_corpus(struct corpus *c)
{
    char dir[3500], path[4096];
    source_dir(dir, sizeof(dir));
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *e;
    size_t files = 0;
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, "test_model", 10) != 0 && strcmp(e->d_name, "model_test.h") != 0)
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        size_t n;
        char *p = read_all(path, &n);
        assert_non_null(p);
        add_literals(c, p, n);
        free(p);
        files++;
    }
    closedir(d);
    assert_true(files >= 4);
    size_t before = c->n;
    snprintf(path, sizeof(path), "%s/../../fuzz/corpus", dir);
    add_dir_files(c, path, 0);
    assert_true(c->n > before + 20); /* the fuzz corpora were found */
}

static void corpus_free(struct corpus *c)
{
    for (size_t i = 0; i < c->n; i++)
        free(c->doc[i]);
    free(c->doc);
    free(c->len);
}

static void test_jscan_load_corpus_as_jansson(void **state)
{
    (void)state;
    struct corpus c = {0};
    load_corpus(&c);
    size_t read_ok = 0;
    for (size_t i = 0; i < c.n; i++) {
        if (check_same(c.doc[i], c.len[i], SIZE_MAX) == 0)
            read_ok++;
        check_bounds(c.doc[i], c.len[i]);
        if (c.len[i] <= 1024)
            check_prefixes(c.doc[i], c.len[i]);
    }
    /* the literals hold many valid requests; the corpora many refused inputs */
    assert_true(read_ok >= 25);
    assert_true(c.n - read_ok >= 20);
    corpus_free(&c);
}

/* ---- generated documents ---- */

static uint64_t rng = 0x9e3779b97f4a7c15u;

static uint32_t rnd(uint32_t n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng % n);
}

struct gen {
    char *p;
    size_t len, cap;
};

static void put(struct gen *g, const char *s, size_t n)
{
    if (g->len + n + 1 > g->cap) {
        g->cap = (g->len + n + 1) * 2;
        g->p = realloc(g->p, g->cap);
        assert_non_null(g->p);
    }
    memcpy(g->p + g->len, s, n);
    g->len += n;
    g->p[g->len] = '\0';
}

static void puts_(struct gen *g, const char *s)
{
    put(g, s, strlen(s));
}

static void gen_ws(struct gen *g)
{
    static const char *ws[] = {"", "", "", " ", "\n", "\t", "\r\n  "};
    puts_(g, ws[rnd(7)]);
}

static void gen_string(struct gen *g)
{
    static const char *pieces[] = {
        "a",
        "b",
        "Z",
        "0",
        " ",
        "\\n",
        "\\\"",
        "\\\\",
        "\\/",
        "\\b",
        "\\f",
        "\\r",
        "\\t",
        "\\u0041",
        "\\u00e9",
        "\\u20AC",
        "\\ud83d\\ude00",
        "\\uD834\\uDD1E",
        "\xc3\xa9",
        "\xe2\x82\xac",
        "\xf0\x9f\x98\x80",
        "\xe4\xb8\xad",
        "\x7f",
        "\\u0001",
        "\\u001f",
        "'",
        "{",
        "]",
        ":",
        ",",
    };
    size_t n = rnd(4) == 0 ? rnd(60) : rnd(14);
    puts_(g, "\"");
    for (size_t i = 0; i < n; i++)
        puts_(g, pieces[rnd(sizeof(pieces) / sizeof(pieces[0]))]);
    puts_(g, "\"");
}

static void gen_number(struct gen *g)
{
    static const char *nums[] = {
        "0",
        "-0",
        "1",
        "-1",
        "42",
        "1.5",
        "-0.25",
        "1e3",
        "1E+3",
        "2.5e-3",
        "0.0",
        "-0.0e0",
        "1e400",
        "-1e400",
        "1e-400",
        "9223372036854775807",
        "-9223372036854775808",
        "9223372036854775808",
        "-9223372036854775809",
        "123456789012345678901234567890.5",
        "3.141592653589793238462643383279",
    };
    puts_(g, nums[rnd(sizeof(nums) / sizeof(nums[0]))]);
}

static void gen_value(struct gen *g, int depth)
{
    uint32_t k = rnd(depth > 6 ? 6 : 9);
    switch (k) {
    case 0:
    case 1:
        gen_string(g);
        break;
    case 2:
        gen_number(g);
        break;
    case 3:
        puts_(g, "true");
        break;
    case 4:
        puts_(g, "false");
        break;
    case 5:
        puts_(g, "null");
        break;
    case 6:
    case 7: {
        static const char *keys[] = {"\"a\"", "\"b\"",         "\"role\"", "\"content\"",
                                     "\"\"",  "\"k\\u00e9y\"", "\"x\\ny\""};
        puts_(g, "{");
        size_t n = rnd(5);
        for (size_t i = 0; i < n; i++) {
            if (i)
                puts_(g, ",");
            gen_ws(g);
            if (rnd(3) == 0)
                gen_string(g);
            else
                puts_(g, keys[rnd(sizeof(keys) / sizeof(keys[0]))]);
            gen_ws(g);
            puts_(g, ":");
            gen_ws(g);
            gen_value(g, depth + 1);
            gen_ws(g);
        }
        puts_(g, "}");
        break;
    }
    default: {
        puts_(g, "[");
        size_t n = rnd(5);
        for (size_t i = 0; i < n; i++) {
            if (i)
                puts_(g, ",");
            gen_ws(g);
            gen_value(g, depth + 1);
            gen_ws(g);
        }
        puts_(g, "]");
    }
    }
}

static void gen_doc(struct gen *g)
{
    bool obj = rnd(2);
    g->len = 0;
    gen_ws(g);
    puts_(g, obj ? "{\"m\":" : "[");
    gen_value(g, 1);
    puts_(g, obj ? "}" : "]");
    gen_ws(g);
}

static void test_jscan_load_random_documents_as_jansson(void **state)
{
    (void)state;
    struct gen g = {0};
    size_t read_ok = 0;
    for (int i = 0; i < 3000; i++) {
        gen_doc(&g);
        size_t b = rnd(13);
        if (check_same(g.p, g.len, b) == 0)
            read_ok++;
        check_same(g.p, g.len, SIZE_MAX);
    }
    assert_true(read_ok > 1000); /* most documents are valid */
    free(g.p);
}

static void test_jscan_load_mutations_as_jansson(void **state)
{
    (void)state;
    static const char bytes[] = "\"\\{}[],:0-.eEu \x01\x80\xc3\xff\xed\xa0tfn";
    struct gen g = {0};
    size_t refused_before = n_refused;
    for (int i = 0; i < 6000; i++) {
        gen_doc(&g);
        size_t at = rnd((uint32_t)g.len);
        switch (rnd(3)) {
        case 0: /* replace a byte */
            g.p[at] = bytes[rnd(sizeof(bytes) - 1)];
            break;
        case 1: /* delete a byte */
            memmove(g.p + at, g.p + at + 1, g.len - at - 1);
            g.len--;
            break;
        default: /* cut short */
            g.len = at;
        }
        check_same(g.p, g.len, rnd(13));
    }
    assert_true(n_refused - refused_before > 2000); /* most mutations are malformed */
    free(g.p);
}

/* ---- named cases ---- */

static void test_jscan_load_cut_keeps_whole_characters(void **state)
{
    (void)state;
    /* "ab" then é (2 bytes) then € (3 bytes) then "cd": 9 bytes decoded */
    const char *d = "{\"s\":\"ab\\u00e9\xe2\x82\xac"
                    "cd\",\"t\":\"short\"}";
    static const struct {
        size_t bound;
        const char *want;
    } cases[] = {
        {0, ""},
        {1, "a"},
        {2, "ab"},
        {3, "ab"},
        {4, "ab\xc3\xa9"},
        {5, "ab\xc3\xa9"},
        {6, "ab\xc3\xa9"},
        {7, "ab\xc3\xa9\xe2\x82\xac"},
        {8, "ab\xc3\xa9\xe2\x82\xac"
            "c"},
        {9, "ab\xc3\xa9\xe2\x82\xac"
            "cd"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_t *v = NULL;
        assert_int_equal(jscan_load(d, strlen(d), cases[i].bound, &v, NULL), 0);
        assert_string_equal(json_string_value(json_object_get(v, "s")), cases[i].want);
        /* a string within the bound is whole */
        if (cases[i].bound >= 5)
            assert_string_equal(json_string_value(json_object_get(v, "t")), "short");
        json_decref(v);
        check_same(d, strlen(d), cases[i].bound);
    }
}

static void test_jscan_load_refuses_bad_input(void **state)
{
    (void)state;
    static const char *bad[] = {
        "",                      /* empty */
        " \n\t",                 /* only whitespace */
        "1",                     /* a scalar at the top (flags 0) */
        "\"s\"",                 /* likewise */
        "{",                     /* truncated */
        "{\"a\"",                /* truncated after a key */
        "{\"a\":",               /* truncated before a value */
        "[\"abcdefghijkl",       /* truncated inside a long string */
        "[\"abcdefghijkl\\",     /* truncated in a skipped escape */
        "[1,]",                  /* trailing comma */
        "{\"a\":1,}",            /* likewise in an object */
        "{\"a\" 1}",             /* no colon */
        "{1:2}",                 /* a key that is not a string */
        "[1 2]",                 /* no comma */
        "[01]",                  /* a leading zero */
        "[1.]",                  /* no fraction digits */
        "[1e]",                  /* no exponent digits */
        "[-]",                   /* a sign alone */
        "[+1]",                  /* a plus sign */
        "[9223372036854775808]", /* an integer past json_int_t */
        "[-9223372036854775809]",
        "[1e400]", /* a real past double */
        "[tru]",   /* a broken literal */
        "[truex]",
        "[nul]",
        "[\"\\u0000\"]",                 /* NUL (flags 0) */
        "[\"\\ud800\"]",                 /* a lone high surrogate */
        "[\"\\udc00\"]",                 /* a lone low surrogate */
        "[\"\\ud800\\u0041\"]",          /* a high surrogate with no low one */
        "[\"\\u12g4\"]",                 /* not hex */
        "[\"\\x41\"]",                   /* not an escape */
        "[\"a\x01\"]",                   /* a control character */
        "[\"abcdefghijkl\x01mnop\"]",    /* one in the skipped tail */
        "[\"abcdefghijkl\\qmnop\"]",     /* a bad escape in the skipped tail */
        "[\"abcdefghijkl\\ud800mnop\"]", /* a lone surrogate in the skipped tail */
        "[\"abcdefghijkl\\u0000mnop\"]", /* NUL in the skipped tail */
        "[\"a\xc3\"]",                   /* a cut UTF-8 sequence */
        "[\"a\xc0\x80\"]",               /* overlong */
        "[\"a\xed\xa0\x80\"]",           /* an encoded surrogate */
        "[\"a\xf4\x90\x80\x80\"]",       /* past U+10FFFF */
        "[\"\xff\"]",
        "[1] x", /* trailing garbage */
        "[1][2]",
        "{} {}",
        "[1]\0", /* checked with its NUL below */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        size_t n = strlen(bad[i]) + (strcmp(bad[i], "[1]") == 0 ? 1 : 0);
        json_t *v = (json_t *)1;
        size_t off = SIZE_MAX;
        assert_null(json_loadb(bad[i], n, 0, NULL));
        assert_int_equal(jscan_load(bad[i], n, 8, &v, &off), -EINVAL);
        assert_ptr_equal(v, (json_t *)1); /* untouched */
        assert_true(off <= n);
        check_same(bad[i], n, 8);
    }
}

static void test_jscan_load_duplicate_keys_last_wins(void **state)
{
    (void)state;
    const char *d = "{\"a\":1,\"b\":{\"x\":[1,2]},\"a\":\"abcdefghijklmnop\",\"b\":null}";
    json_t *v = NULL;
    assert_int_equal(jscan_load(d, strlen(d), 4, &v, NULL), 0);
    assert_int_equal(json_object_size(v), 2);
    assert_string_equal(json_string_value(json_object_get(v, "a")), "abcd");
    assert_true(json_is_null(json_object_get(v, "b")));
    char *s = json_dumps(v, JSON_COMPACT);
    assert_string_equal(s, "{\"a\":\"abcd\",\"b\":null}"); /* first key's place */
    free(s);
    json_decref(v);
    check_same(d, strlen(d), 4);
}

static void test_jscan_load_keys_are_never_cut(void **state)
{
    (void)state;
    const char *d = "{\"a_very_long_key_name\":\"a_very_long_value\"}";
    json_t *v = NULL;
    assert_int_equal(jscan_load(d, strlen(d), 3, &v, NULL), 0);
    assert_string_equal(json_string_value(json_object_get(v, "a_very_long_key_name")), "a_v");
    json_decref(v);
}

static char *nested(size_t depth, const char *inner)
{
    size_t n = strlen(inner);
    char *p = malloc(2 * depth + n + 1);
    assert_non_null(p);
    memset(p, '[', depth);
    memcpy(p + depth, inner, n);
    memset(p + depth + n, ']', depth);
    p[2 * depth + n] = '\0';
    return p;
}

static void test_jscan_load_depth_limit_as_jansson(void **state)
{
    (void)state;
    /* jansson counts every value: 2048 arrays, or 2047 around a scalar, are the most */
    static const struct {
        size_t depth;
        const char *inner;
        bool ok;
    } cases[] = {
        {2047, "1", true},
        {2048, "", true},
        {2048, "1", false},
        {2049, "", false},
        {2047, "\"abcdefghijkl\"", true},
        {2047, "{}", true},
        {2047, "{\"a\":1}", false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *p = nested(cases[i].depth, cases[i].inner);
        json_t *v = NULL;
        int rc = jscan_load(p, strlen(p), 8, &v, NULL);
        assert_int_equal(rc, cases[i].ok ? 0 : -EINVAL);
        json_decref(v);
        check_same(p, strlen(p), 8);
        free(p);
    }
    /* far deeper than the limit: refused without recursion */
    char *p = nested(1000000, "1");
    json_t *v = NULL;
    assert_int_equal(jscan_load(p, strlen(p), 8, &v, NULL), -EINVAL);
    free(p);
}

static void test_jscan_load_skipped_tail_invalid_utf8_not_seen(void **state)
{
    (void)state;
    /* the documented difference: past the bound, only escapes and controls are checked */
    const char *d = "[\"abcdefghijkl\xff mnop\"]";
    json_t *v = NULL;
    assert_null(json_loadb(d, strlen(d), 0, NULL));
    assert_int_equal(jscan_load(d, strlen(d), 8, &v, NULL), 0);
    assert_string_equal(json_string_value(json_array_get(v, 0)), "abcdefgh");
    json_decref(v);
    /* within the kept part it is refused */
    assert_int_equal(jscan_load(d, strlen(d), 64, &v, NULL), -EINVAL);
}

static void test_jscan_load_long_strings_skip_tail(void **state)
{
    (void)state;
    /* long strings with escapes, quotes and multibyte characters in the tail */
    struct gen g = {0};
    for (int round = 0; round < 200; round++) {
        g.len = 0;
        puts_(&g, "{\"messages\":[");
        for (int m = 0; m < 5; m++) {
            if (m)
                puts_(&g, ",");
            puts_(&g, "{\"role\":\"user\",\"content\":\"");
            size_t n = rnd(3000);
            for (size_t i = 0; i < n; i++) {
                static const char *pc[] = {
                    "x",   "y ",       "\\\"",         "\\\\",           "\\\\\\\"",
                    "\\n", "\xc3\xa9", "\xe2\x82\xac", "\\ud83d\\ude00", "\xf0\x9f\x98\x80"};
                puts_(&g, pc[rnd(10)]);
            }
            puts_(&g, "\"}");
        }
        puts_(&g, "]}");
        check_same(g.p, g.len, rnd(600));
        check_same(g.p, g.len, JSCAN_STRING_MAX);
    }
    free(g.p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_jscan_load_cut_keeps_whole_characters),
        cmocka_unit_test(test_jscan_load_refuses_bad_input),
        cmocka_unit_test(test_jscan_load_duplicate_keys_last_wins),
        cmocka_unit_test(test_jscan_load_keys_are_never_cut),
        cmocka_unit_test(test_jscan_load_depth_limit_as_jansson),
        cmocka_unit_test(test_jscan_load_skipped_tail_invalid_utf8_not_seen),
        cmocka_unit_test(test_jscan_load_long_strings_skip_tail),
        cmocka_unit_test(test_jscan_load_corpus_as_jansson),
        cmocka_unit_test(test_jscan_load_random_documents_as_jansson),
        cmocka_unit_test(test_jscan_load_mutations_as_jansson),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    printf("jscan: %zu inputs compared with jansson, %zu refused by both\n", n_checked, n_refused);
    return rc;
}
