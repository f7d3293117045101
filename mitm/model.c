/*
 * The model-call parser core: detection of model calls by host, method and
 * path; the per-exchange parser that keeps the request body up to a cap,
 * decodes the response, splits it into SSE events or JSON objects and hands
 * them to the provider's parser; the arena and helpers the providers share;
 * and the final result with its status.
 */
#include "model.h"
#include "hex.h"

#include "model_impl.h"
#include "jscan.h"

#include <errno.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif
#include <stdlib.h>
#include <string.h>
#include <strings.h>

const struct model_host model_default_hosts[] = {
    {"api.anthropic.com", MODEL_PROVIDER_ANTHROPIC},
    {"api.openai.com", MODEL_PROVIDER_OPENAI},
    {"generativelanguage.googleapis.com", MODEL_PROVIDER_GEMINI},
    {NULL, MODEL_PROVIDER_NONE},
};

const char *model_provider_name(enum model_provider p)
{
    switch (p) {
    case MODEL_PROVIDER_ANTHROPIC:
        return "anthropic";
    case MODEL_PROVIDER_OPENAI:
        return "openai";
    case MODEL_PROVIDER_GEMINI:
        return "gemini";
    case MODEL_PROVIDER_NONE:
        break;
    }
    return "none";
}

const char *model_api_name(enum model_api a)
{
    switch (a) {
    case MODEL_API_MESSAGES:
        return "messages";
    case MODEL_API_CHAT:
        return "chat";
    case MODEL_API_RESPONSES:
        return "responses";
    case MODEL_API_GENERATE:
        return "generate";
    }
    return "unknown";
}

static bool slice_eq(const char *p, size_t n, const char *lit)
{
    return strlen(lit) == n && memcmp(p, lit, n) == 0;
}

static bool has_prefix(const char *p, size_t n, const char *lit)
{
    size_t l = strlen(lit);
    return n >= l && memcmp(p, lit, l) == 0;
}

bool model_detect(const struct model_host *hosts, const char *host, const char *method,
                  const char *target, size_t target_len, struct model_route *r)
{
    if (!host || !method || !target || strcmp(method, "POST") != 0)
        return false;
    if (!hosts)
        hosts = model_default_hosts;
    size_t hlen = strlen(host);
    const char *colon = memchr(host, ':', hlen);
    if (colon)
        hlen = (size_t)(colon - host);
    if (hlen > 0 && host[hlen - 1] == '.')
        hlen--;
    enum model_provider prov = MODEL_PROVIDER_NONE;
    for (const struct model_host *h = hosts; h->host; h++) {
        if (strlen(h->host) == hlen && strncasecmp(h->host, host, hlen) == 0) {
            prov = h->provider;
            break;
        }
    }
    if (prov == MODEL_PROVIDER_NONE)
        return false;
    /* absolute form: skip scheme://authority */
    const char *t = target;
    size_t tlen = target_len;
    const char *ss = tlen >= 3 ? memchr(t, ':', tlen) : NULL;
    if (tlen > 0 && t[0] != '/' && ss && (size_t)(ss - t) + 3 <= tlen && ss[1] == '/' &&
        ss[2] == '/') {
        size_t off = (size_t)(ss - t) + 3;
        const char *slash = memchr(t + off, '/', tlen - off);
        if (!slash)
            return false;
        tlen -= (size_t)(slash - t);
        t = slash;
    }
    const char *q = memchr(t, '?', tlen);
    size_t plen = q ? (size_t)(q - t) : tlen;

    struct model_route out = {.provider = prov};
    switch (prov) {
    case MODEL_PROVIDER_ANTHROPIC:
        if (!slice_eq(t, plen, "/v1/messages"))
            return false;
        out.api = MODEL_API_MESSAGES;
        break;
    case MODEL_PROVIDER_OPENAI:
        if (slice_eq(t, plen, "/v1/chat/completions"))
            out.api = MODEL_API_CHAT;
        else if (slice_eq(t, plen, "/v1/responses"))
            out.api = MODEL_API_RESPONSES;
        else
            return false;
        break;
    case MODEL_PROVIDER_GEMINI: {
        size_t pre;
        if (has_prefix(t, plen, "/v1beta/models/"))
            pre = strlen("/v1beta/models/");
        else if (has_prefix(t, plen, "/v1/models/"))
            pre = strlen("/v1/models/");
        else if (has_prefix(t, plen, "/v1alpha/models/"))
            pre = strlen("/v1alpha/models/");
        else
            return false;
        const char *m = t + pre;
        size_t mlen = plen - pre;
        const char *c = memchr(m, ':', mlen);
        if (!c || c == m)
            return false;
        size_t name_len = (size_t)(c - m);
        const char *verb = c + 1;
        size_t vlen = mlen - name_len - 1;
        if (slice_eq(verb, vlen, "generateContent"))
            out.stream_path = false;
        else if (slice_eq(verb, vlen, "streamGenerateContent"))
            out.stream_path = true;
        else
            return false;
        if (name_len >= sizeof(out.model))
            name_len = sizeof(out.model) - 1;
        memcpy(out.model, m, name_len);
        out.model[name_len] = '\0';
        out.api = MODEL_API_GENERATE;
        break;
    }
    case MODEL_PROVIDER_NONE:
        return false;
    }
    *r = out;
    return true;
}

/* ---- arena and helpers ---- */

const char *model_keep(struct model_parser *p, const char *s, size_t n, size_t max)
{
    if (!s)
        return NULL;
    if (n > max) {
        n = max;
        /* do not cut a UTF-8 sequence: back up over continuation bytes */
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
            n--;
    }
    if (p->arena_bytes + n + 1 > MODEL_ARENA_MAX) {
        p->call.truncated = true;
        return NULL;
    }
    if (p->nstrs == p->astrs) {
        size_t na = p->astrs ? p->astrs * 2 : 32;
        char **ns = realloc(p->strs, na * sizeof(*ns));
        if (!ns)
            return NULL;
        p->strs = ns;
        p->astrs = na;
    }
    char *c = malloc(n + 1);
    if (!c)
        return NULL;
    memcpy(c, s, n);
    c[n] = '\0';
    p->strs[p->nstrs++] = c;
    p->arena_bytes += n + 1;
    return c;
}

void model_set_str(struct model_parser *p, const char **field, json_t *v, size_t max)
{
    if (!json_is_string(v))
        return;
    const char *k = model_keep(p, json_string_value(v), json_string_length(v), max);
    if (k)
        *field = k;
}

void model_set_int(int64_t *field, json_t *v)
{
    if (json_is_integer(v) && json_integer_value(v) >= 0)
        *field = (int64_t)json_integer_value(v);
}

struct dumpbuf {
    char *p;
    size_t len, max;
    bool cut;
};

static int dump_cb(const char *buffer, size_t size, void *data)
{
    struct dumpbuf *d = data;
    size_t room = d->max - d->len;
    if (size > room) {
        size = room;
        d->cut = true;
    }
    memcpy(d->p + d->len, buffer, size);
    d->len += size;
    return d->cut ? -1 : 0;
}

const char *model_keep_json(struct model_parser *p, json_t *v, size_t max)
{
    if (!v)
        return NULL;
    if (json_is_string(v))
        return model_keep(p, json_string_value(v), json_string_length(v), max);
    struct dumpbuf d = {.p = malloc(max + 1), .max = max};
    if (!d.p)
        return NULL;
    json_dump_callback(v, dump_cb, &d, JSON_COMPACT | JSON_ENCODE_ANY);
    const char *k = model_keep(p, d.p, d.len, max);
    if (d.cut && max >= MODEL_ARGS_MAX)
        p->call.truncated = true; /* tool arguments cut, not just a preview */
    free(d.p);
    return k;
}

const char *model_keep_content(struct model_parser *p, json_t *content, size_t max)
{
    if (!content || json_is_null(content))
        return NULL;
    if (json_is_string(content))
        return model_keep(p, json_string_value(content), json_string_length(content), max);
    if (json_is_array(content)) {
        /* text blocks ({"type":"text","text":...} and the like) joined by LF */
        char *tmp = malloc(max + 1);
        size_t n = 0;
        bool any = false;
        if (!tmp)
            return NULL;
        size_t i;
        json_t *b;
        json_array_foreach(content, i, b)
        {
            json_t *t = json_is_object(b) ? json_object_get(b, "text") : NULL;
            if (!json_is_string(t) && json_is_string(b))
                t = b;
            if (!json_is_string(t))
                continue;
            size_t tl = json_string_length(t);
            if (any && n < max)
                tmp[n++] = '\n';
            size_t take = tl < max - n ? tl : max - n;
            memcpy(tmp + n, json_string_value(t), take);
            n += take;
            any = true;
        }
        const char *k = any ? model_keep(p, tmp, n, max) : NULL;
        free(tmp);
        if (any)
            return k;
    }
    return model_keep_json(p, content, max);
}

struct model_tool *model_tool(struct model_parser *p, int64_t key, bool create)
{
    for (size_t i = p->ntools; i > 0; i--) {
        if (p->tools[i - 1].key == key)
            return &p->tools[i - 1];
    }
    if (!create)
        return NULL;
    if (p->ntools >= MODEL_TOOLS_MAX) {
        p->call.truncated = true;
        return NULL;
    }
    if (p->ntools == p->atools) {
        size_t na = p->atools ? p->atools * 2 : 8;
        struct model_tool *nt = realloc(p->tools, na * sizeof(*nt));
        if (!nt)
            return NULL;
        p->tools = nt;
        p->atools = na;
    }
    struct model_tool *t = &p->tools[p->ntools++];
    memset(t, 0, sizeof(*t));
    t->key = key;
    buf_init(&t->args, MODEL_ARGS_MAX);
    return t;
}

void model_tool_args_append(struct model_parser *p, struct model_tool *t, const char *s, size_t n)
{
    if (!t || n == 0)
        return;
    size_t room = t->args.cap - t->args.len;
    size_t total_room = MODEL_ARGS_TOTAL_MAX - p->args_total;
    if (room > total_room)
        room = total_room;
    size_t take = n < room ? n : room;
    if (take < n)
        p->call.truncated = true;
    if (take > 0 && buf_append(&t->args, s, take) == 0)
        p->args_total += take;
    else if (take > 0)
        p->call.truncated = true;
}

void model_tool_args_set(struct model_parser *p, struct model_tool *t, const char *s, size_t n)
{
    if (!t)
        return;
    p->args_total -= t->args.len;
    t->args.len = 0;
    model_tool_args_append(p, t, s, n);
}

void model_add_result(struct model_parser *p, const char *id, bool is_error, const char *preview)
{
    if (p->nresults >= MODEL_RESULTS_MAX) {
        p->call.truncated = true;
        return;
    }
    if (p->nresults == p->aresults) {
        size_t na = p->aresults ? p->aresults * 2 : 8;
        struct model_tool_result *nr = realloc(p->results, na * sizeof(*nr));
        if (!nr)
            return;
        p->results = nr;
        p->aresults = na;
    }
    p->results[p->nresults++] =
        (struct model_tool_result){.id = id, .is_error = is_error, .preview = preview};
}

void model_set_error(struct model_parser *p, json_t *type, json_t *message)
{
    if (json_is_integer(type)) {
        char num[32];
        int n = snprintf(num, sizeof(num), "%lld", (long long)json_integer_value(type));
        if (n > 0)
            p->call.error_type = model_keep(p, num, (size_t)n, sizeof(num));
    } else {
        model_set_str(p, &p->call.error_type, type, 128);
    }
    model_set_str(p, &p->call.error_message, message, MODEL_TEXT_MAX);
    if (!p->call.error_type)
        p->call.error_type = "error";
}

json_t *model_parse_json(struct model_parser *p, const char *data, size_t len)
{
    json_t *v = json_loadb(data, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    if (!json_is_object(v)) {
        json_decref(v);
        p->call.parse_error = true;
        return NULL;
    }
    p->saw_response = true;
    return v;
}

/*
 * Substring search for the short needles the fast paths look for, many times
 * per event: candidates are positions where two inner bytes of the needle
 * both match (16 at a time with SSE2), each confirmed with memcmp. glibc's
 * memmem spends more on setup than on these ~150-byte events.
 */
static const char *find(const char *h, size_t n, const char *needle, size_t k)
{
    if (k < 3 || n < k)
        return k == 0 ? h : (n < k ? NULL : memmem(h, n, needle, k));
    size_t a = 1, b = k - 2; /* the needles are quoted keys: skip the quotes */
    size_t i = 0;
#ifdef __SSE2__
    const __m128i fa = _mm_set1_epi8(needle[a]), fb = _mm_set1_epi8(needle[b]);
    for (; i + 16 + k - 1 <= n; i += 16) {
        __m128i va = _mm_loadu_si128((const __m128i *)(const void *)(h + i + a));
        __m128i vb = _mm_loadu_si128((const __m128i *)(const void *)(h + i + b));
        unsigned m = (unsigned)_mm_movemask_epi8(
            _mm_and_si128(_mm_cmpeq_epi8(va, fa), _mm_cmpeq_epi8(vb, fb)));
        while (m) {
            unsigned bit = (unsigned)__builtin_ctz(m);
            if (memcmp(h + i + bit, needle, k) == 0)
                return h + i + bit;
            m &= m - 1;
        }
    }
#endif
    for (; i + k <= n; i++) {
        if (h[i + a] == needle[a] && h[i + b] == needle[b] && memcmp(h + i, needle, k) == 0)
            return h + i;
    }
    return NULL;
}

const char *model_find(const char *s, size_t n, const char *needle)
{
    return find(s, n, needle, strlen(needle));
}

void model_first_token(struct model_parser *p)
{
    if (!p->first_token) {
        p->first_token = true;
        p->call.ttft_us = p->now_us - p->start_us;
    }
}

bool model_contains(const char *s, size_t n, const char *needle)
{
    return find(s, n, needle, strlen(needle)) != NULL;
}

const char *model_fast_value(const char *k, const char *end, const char *quoted_key)
{
    const char *v = k + strlen(quoted_key);
    while (v < end && (*v == ' ' || *v == '\t' || *v == '\r' || *v == '\n'))
        v++;
    if (v >= end || *v != ':')
        return NULL;
    v++;
    while (v < end && (*v == ' ' || *v == '\t' || *v == '\r' || *v == '\n'))
        v++;
    return v < end ? v : NULL;
}

const char *model_fast_key(const char *d, size_t n, const char *quoted_key)
{
    const char *k = find(d, n, quoted_key, strlen(quoted_key));
    return k ? model_fast_value(k, d + n, quoted_key) : NULL;
}

bool model_fast_int(const char *v, const char *end, int64_t *out)
{
    int64_t x = 0;
    const char *s = v;
    while (s < end && *s >= '0' && *s <= '9' && s - v < 15)
        x = x * 10 + (*s++ - '0');
    if (s == v || (s < end && *s >= '0' && *s <= '9'))
        return false;
    *out = x;
    return true;
}

static bool hex4(const char *s, const char *end, uint32_t *out)
{
    if (end - s < 4)
        return false;
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hex_digit(s[i]);
        if (h < 0)
            return false;
        v = v << 4 | (uint32_t)h;
    }
    *out = v;
    return true;
}

/* Unescape the JSON string at v into b; false when it is not a well-formed string. */
static bool unescape(const char *v, const char *end, struct buf *b)
{
    b->len = 0;
    if (v >= end || *v != '"')
        return false;
    const char *s = v + 1;
    for (;;) {
        const char *run = s;
        while (s < end && *s != '"' && *s != '\\' && (unsigned char)*s >= 0x20)
            s++;
        if (buf_append(b, run, (size_t)(s - run)) != 0 || s >= end)
            return false;
        if (*s == '"')
            return true;
        if (*s != '\\' || s + 1 >= end)
            return false; /* a raw control character */
        char e = s[1];
        s += 2;
        char c;
        switch (e) {
        case '"':
        case '\\':
        case '/':
            c = e;
            break;
        case 'b':
            c = '\b';
            break;
        case 'f':
            c = '\f';
            break;
        case 'n':
            c = '\n';
            break;
        case 'r':
            c = '\r';
            break;
        case 't':
            c = '\t';
            break;
        case 'u': {
            uint32_t cp, lo;
            if (!hex4(s, end, &cp))
                return false;
            s += 4;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                if (end - s < 6 || s[0] != '\\' || s[1] != 'u' || !hex4(s + 2, end, &lo) ||
                    lo < 0xDC00 || lo > 0xDFFF)
                    return false; /* a lone surrogate: let jansson judge */
                s += 6;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                return false;
            }
            if (cp == 0)
                return false;
            uint8_t u[4];
            size_t un;
            if (cp < 0x80) {
                u[0] = (uint8_t)cp;
                un = 1;
            } else if (cp < 0x800) {
                u[0] = (uint8_t)(0xC0 | cp >> 6);
                u[1] = (uint8_t)(0x80 | (cp & 0x3F));
                un = 2;
            } else if (cp < 0x10000) {
                u[0] = (uint8_t)(0xE0 | cp >> 12);
                u[1] = (uint8_t)(0x80 | (cp >> 6 & 0x3F));
                u[2] = (uint8_t)(0x80 | (cp & 0x3F));
                un = 3;
            } else {
                u[0] = (uint8_t)(0xF0 | cp >> 18);
                u[1] = (uint8_t)(0x80 | (cp >> 12 & 0x3F));
                u[2] = (uint8_t)(0x80 | (cp >> 6 & 0x3F));
                u[3] = (uint8_t)(0x80 | (cp & 0x3F));
                un = 4;
            }
            if (buf_append(b, u, un) != 0)
                return false;
            continue;
        }
        default:
            return false;
        }
        if (buf_append(b, &c, 1) != 0)
            return false;
    }
}

bool model_fast_str(struct model_parser *p, const char *v, const char *end, const char **s,
                    size_t *n)
{
    if (!unescape(v, end, &p->scratch))
        return false;
    *s = (const char *)p->scratch.data;
    *n = p->scratch.len;
    return true;
}

bool model_event_is(const char *e, size_t n, const char *name)
{
    return slice_eq(e, n, name);
}

/* ---- the parser ---- */

int model_parser_create(const struct model_route *r, const struct model_limits *limits,
                        int64_t start_us, struct model_parser **out)
{
    struct model_parser *p = calloc(1, sizeof(*p));
    if (!p)
        return -ENOMEM;
    p->route = *r;
    switch (r->provider) {
    case MODEL_PROVIDER_ANTHROPIC:
        p->ops = &model_anthropic_ops;
        break;
    case MODEL_PROVIDER_OPENAI:
        p->ops = &model_openai_ops;
        break;
    case MODEL_PROVIDER_GEMINI:
        p->ops = &model_gemini_ops;
        break;
    case MODEL_PROVIDER_NONE:
        break;
    }
    size_t req_max = limits && limits->req_max ? limits->req_max : MODEL_REQ_MAX_DEFAULT;
    size_t ev_max = limits && limits->event_max ? limits->event_max : MODEL_EVENT_MAX_DEFAULT;
    p->start_us = start_us;
    buf_init(&p->req, req_max);
    buf_init(&p->js.elem, ev_max);
    buf_init(&p->scratch, ev_max);
    sse_reader_init(&p->reader, ev_max, NULL, NULL);
    p->reader.opaque = p;
    struct model_call *c = &p->call;
    c->provider = model_provider_name(r->provider);
    c->api = model_api_name(r->api);
    c->input_tokens = c->output_tokens = c->cache_read_tokens = c->cache_write_tokens = -1;
    c->reasoning_tokens = c->message_count = c->tool_count = -1;
    c->ttft_us = -1;
    c->duration_us = -1;
    if (r->api == MODEL_API_GENERATE) {
        c->stream = r->stream_path;
        if (r->model[0])
            c->model_requested = model_keep(p, r->model, strlen(r->model), sizeof(r->model));
    }
    p->decoded_max =
        limits && limits->decoded_max ? limits->decoded_max : MODEL_DECODED_MAX_DEFAULT;
    *out = p;
    return 0;
}

void model_parser_destroy(struct model_parser *p)
{
    if (!p)
        return;
    buf_fini(&p->req);
    buf_fini(&p->js.elem);
    buf_fini(&p->scratch);
    sse_reader_fini(&p->reader);
    decode_destroy(p->dec);
    for (size_t i = 0; i < p->nstrs; i++)
        free(p->strs[i]);
    free(p->strs);
    for (size_t i = 0; i < p->ntools; i++)
        buf_fini(&p->tools[i].args);
    free(p->tools);
    free(p->calls_out);
    free(p->results);
    free(p);
}

void model_parser_request_head(struct model_parser *p, const char *content_encoding,
                               size_t content_encoding_len)
{
    if (content_encoding &&
        decode_kind_parse(content_encoding, content_encoding_len, &p->req_kind) != 0)
        p->req_kind_bad = true;
}

static void collect_req(void *opaque, const uint8_t *data, size_t len)
{
    struct buf *b = opaque;
    size_t room = b->cap - b->len;
    if (buf_append(b, data, len < room ? len : room) != 0)
        b->len = b->cap; /* no memory: treat as full */
}

/* Replace a compressed request body by its decoded form (bounded); false when it cannot be. */
static bool decode_request(struct model_parser *p)
{
    if (p->req_kind_bad) {
        p->req.len = 0; /* compressed in a way we cannot read: nothing to parse */
        return false;
    }
    if (p->req_kind == DECODE_IDENTITY)
        return true;
    struct decoder *d = NULL;
    struct buf out;
    buf_init(&out, p->req.cap);
    bool ok = decode_create(p->req_kind, p->req.cap, &d) == 0;
    int rc = ok ? decode_feed(d, p->req.data, p->req.len, collect_req, &out) : -ENOMEM;
    if (rc == -E2BIG)
        p->call.truncated = true;
    ok = ok && (rc == 0 || rc == -E2BIG);
    if (ok && rc == 0 && decode_finish(d) != 0 && p->req_total == p->req.len)
        ok = false; /* the whole body came and still ended early: corrupt */
    decode_destroy(d);
    buf_fini(&p->req);
    p->req = out; /* what decoded, even after a failure, for the prefix scan */
    return ok;
}

void model_parser_request(struct model_parser *p, const uint8_t *data, size_t len)
{
    p->req_total += len;
    if (p->req.len < p->req.cap) {
        size_t room = p->req.cap - p->req.len;
        size_t take = len < room ? len : room;
        if (buf_append(&p->req, data, take) != 0)
            p->call.truncated = true;
    }
}

static void on_sse(void *opaque, const char *event, size_t event_len, const char *data,
                   size_t data_len)
{
    struct model_parser *p = opaque;
    if (p->ops && p->ops->event)
        p->ops->event(p, event, event_len, data, data_len);
}

void model_parser_response_head(struct model_parser *p, int status, const char *content_type,
                                size_t content_type_len, const char *content_encoding,
                                size_t content_encoding_len)
{
    if (p->dec || p->dec_failed)
        return; /* called twice */
    p->call.http_status = status;
    p->sse = content_type && content_type_len >= 17 &&
             strncasecmp(content_type, "text/event-stream", 17) == 0;
    /* a mislabelled body (text/plain from a mock, none at all) is sniffed */
    p->sniff = !p->sse && !(content_type && memmem(content_type, content_type_len, "json", 4));
    p->reader.fn = on_sse;
    enum decode_kind kind = DECODE_IDENTITY;
    if (content_encoding && decode_kind_parse(content_encoding, content_encoding_len, &kind) != 0) {
        p->dec_failed = true;
        p->call.parse_error = true;
        return;
    }
    if (decode_create(kind, p->decoded_max, &p->dec) != 0)
        p->dec_failed = true;
}

static void js_emit(struct model_parser *p)
{
    struct model_jsplit *js = &p->js;
    if (js->oversized) {
        p->call.truncated = true;
        p->call.parse_error = true;
    } else {
        json_t *v = json_loadb((const char *)js->elem.data, js->elem.len, 0, NULL);
        if (json_is_object(v)) {
            p->saw_response = true;
            if (p->ops && p->ops->json)
                p->ops->json(p, v);
        } else {
            p->call.parse_error = true;
        }
        json_decref(v);
    }
    js->elem.len = 0;
    js->oversized = false;
    js->in_elem = false;
}

static void js_keep(struct model_parser *p, const uint8_t *s, size_t n)
{
    if (p->js.oversized || n == 0)
        return;
    if (buf_append(&p->js.elem, s, n) != 0)
        p->js.oversized = true;
}

/* Split a non-SSE body into top-level objects (or the objects of a top-level array). */
static void js_feed(struct model_parser *p, const uint8_t *s, size_t n)
{
    struct model_jsplit *js = &p->js;
    size_t seg = 0;
    for (size_t i = 0; i < n && !js->bad && !js->done; i++) {
        uint8_t c = s[i];
        if (js->in_elem) {
            if (js->in_string) {
                if (js->escape)
                    js->escape = false;
                else if (c == '\\')
                    js->escape = true;
                else if (c == '"')
                    js->in_string = false;
                continue;
            }
            if (c == '"') {
                js->in_string = true;
            } else if (c == '{' || c == '[') {
                js->depth++;
            } else if (c == '}' || c == ']') {
                if (--js->depth == 0) {
                    js_keep(p, s + seg, i + 1 - seg);
                    js_emit(p);
                    if (!js->in_array)
                        js->done = true;
                }
            }
            continue;
        }
        if (c == ' ' || c == '\t' || c == '\r' || c == '\n')
            continue;
        if (!js->started && c == '[') {
            js->started = true;
            js->in_array = true;
            continue;
        }
        if (js->in_array && c == ',')
            continue;
        if (js->in_array && c == ']') {
            js->done = true;
            continue;
        }
        if (c == '{') {
            js->started = true;
            js->in_elem = true;
            js->depth = 1;
            seg = i;
            continue;
        }
        js->bad = true; /* not JSON objects: an HTML error page, garbage */
        p->call.parse_error = true;
    }
    if (js->in_elem && !js->bad)
        js_keep(p, s + seg, n - seg);
}

static void on_decoded(void *opaque, const uint8_t *data, size_t len)
{
    struct model_parser *p = opaque;
    if (p->sniff) {
        /* leading whitespace means nothing to either parser: decide on the first other byte */
        size_t i = 0;
        while (i < len && (data[i] == ' ' || data[i] == '\t' || data[i] == '\r' || data[i] == '\n'))
            i++;
        if (i == len)
            return;
        p->sniff = false;
        /* SSE lines start with a field name or a comment; anything else goes to the JSON
         * splitter, which marks what is not JSON */
        p->sse = memchr(":deir", data[i], 5) != NULL;
        data += i;
        len -= i;
    }
    if (p->sse)
        sse_reader_feed(&p->reader, data, len);
    else
        js_feed(p, data, len);
}

void model_parser_response(struct model_parser *p, const uint8_t *data, size_t len, int64_t now_us)
{
    if (len == 0)
        return;
    if (!p->first_seen) {
        p->first_seen = true;
        p->first_byte_us = now_us;
    }
    p->now_us = now_us;
    if (!p->dec || p->dec_failed)
        return;
    int rc = decode_feed(p->dec, data, len, on_decoded, p);
    if (rc != 0) {
        p->dec_failed = true;
        p->call.parse_error = true;
        if (rc == -E2BIG)
            p->call.truncated = true;
    }
}

/* The request body: parse it, or learn the model and stream flag from a truncated prefix. */
static void parse_request(struct model_parser *p)
{
    if (p->req_total > p->req.len)
        p->call.truncated = true;
    if (!decode_request(p))
        p->call.parse_error = true;
    if (p->req.len == 0)
        return;
    /* long strings keep only a prefix: the providers read previews of at most 512 bytes */
    json_t *root = NULL;
    if (jscan_load((const char *)p->req.data, p->req.len, JSCAN_STRING_MAX, &root, NULL) != 0)
        root = NULL;
    if (json_is_object(root)) {
        if (p->ops && p->ops->request)
            p->ops->request(p, root);
        json_decref(root);
        return;
    }
    json_decref(root);
    p->call.parse_error = true;
    if (p->route.api == MODEL_API_GENERATE)
        return;
    /* what a prefix can still say: the first "model" and "stream" values */
    const char *s = (const char *)p->req.data;
    size_t n = p->req.len;
    const char *m = memmem(s, n, "\"model\"", 7);
    if (m) {
        size_t i = (size_t)(m - s) + 7;
        while (i < n && (s[i] == ' ' || s[i] == ':' || s[i] == '\n' || s[i] == '\t'))
            i++;
        if (i < n && s[i] == '"') {
            size_t j = ++i;
            while (j < n && s[j] != '"' && s[j] != '\\')
                j++;
            if (j < n && s[j] == '"')
                p->call.model_requested = model_keep(p, s + i, j - i, 256);
        }
    }
    if (memmem(s, n, "\"stream\":true", 13) || memmem(s, n, "\"stream\": true", 14))
        p->call.stream = true;
}

struct model_call *model_parser_finish(struct model_parser *p, bool complete, int64_t now_us)
{
    struct model_call *c = &p->call;
    if (p->finished)
        return c;
    p->finished = true;
    parse_request(p);
    if (p->dec && !p->dec_failed) {
        int rc = decode_finish(p->dec);
        if (rc != 0) {
            c->parse_error = true;
            complete = false;
        }
    }
    if (p->sse) {
        sse_reader_finish(&p->reader);
        if (p->reader.dropped > 0) {
            c->truncated = true;
            c->parse_error = true;
        }
    } else if (p->js.in_elem) {
        /* a JSON body cut short */
        c->parse_error = true;
    }
    if (p->sse)
        c->stream = true;
    /* a JSON response, or a stream with no content: the first byte stands for it */
    if (!p->first_token && p->first_seen)
        c->ttft_us = p->first_byte_us - p->start_us;
    c->duration_us = now_us - p->start_us;

    if (p->ntools > 0) {
        p->calls_out = calloc(p->ntools, sizeof(*p->calls_out));
        if (p->calls_out) {
            for (size_t i = 0; i < p->ntools; i++) {
                struct model_tool *t = &p->tools[i];
                p->calls_out[i].id = t->id;
                p->calls_out[i].name = t->name;
                if (t->args.len > 0)
                    p->calls_out[i].arguments =
                        model_keep(p, (const char *)t->args.data, t->args.len, MODEL_ARGS_MAX);
            }
            c->tool_calls = p->calls_out;
            c->n_tool_calls = p->ntools;
        }
    }
    c->tool_results = p->results;
    c->n_tool_results = p->nresults;

    if (c->http_status >= 400 || c->error_type)
        c->status = "error";
    else if (c->http_status == 0 || !complete || (p->sse && !p->saw_end))
        c->status = "incomplete";
    else
        c->status = "ok";
    if (c->http_status >= 200 && c->http_status < 300 && !p->saw_response && !c->parse_error)
        c->parse_error = true; /* a success with nothing we could read */
    return c;
}
