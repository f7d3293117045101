/*
 * The SSE reader: finds line ends with memchr, handles each complete line in
 * place when it lies in one feed and copies only lines split across feeds.
 */
#include "sse.h"

#include <string.h>

void sse_reader_init(struct sse_reader *r, size_t max_event, sse_event_fn fn, void *opaque)
{
    memset(r, 0, sizeof(*r));
    if (max_event == 0)
        max_event = SSE_MAX_EVENT_DEFAULT;
    r->fn = fn;
    r->opaque = opaque;
    buf_init(&r->line, max_event);
    buf_init(&r->event, 4096);
    buf_init(&r->data, max_event + 1);
}

void sse_reader_fini(struct sse_reader *r)
{
    buf_fini(&r->line);
    buf_fini(&r->event);
    buf_fini(&r->data);
}

static void reset_event(struct sse_reader *r)
{
    r->event.len = 0;
    r->data.len = 0;
    r->oversized = false;
    r->has_data = false;
}

static void dispatch(struct sse_reader *r)
{
    if (r->oversized) {
        r->dropped++;
    } else if (r->has_data) {
        size_t n = r->data.len;
        if (n > 0)
            n--; /* the LF after the last data line */
        r->data.data[n] = '\0';
        r->events++;
        if (r->fn)
            r->fn(r->opaque, (const char *)r->event.data, r->event.len, (const char *)r->data.data,
                  n);
    }
    reset_event(r);
}

static void handle_line(struct sse_reader *r, const uint8_t *p, size_t len)
{
    if (len == 0) {
        dispatch(r);
        return;
    }
    if (p[0] == ':' || r->oversized)
        return; /* a comment, or the rest of an event already dropped */
    const uint8_t *colon = memchr(p, ':', len);
    size_t nlen = colon ? (size_t)(colon - p) : len;
    const uint8_t *v = colon ? colon + 1 : p + len;
    size_t vlen = len - (size_t)(v - p);
    if (vlen > 0 && v[0] == ' ') {
        v++;
        vlen--;
    }
    if (nlen == 4 && memcmp(p, "data", 4) == 0) {
        r->has_data = true;
        if (buf_reserve(&r->data, vlen + 1) != 0) {
            r->oversized = true;
            return;
        }
        memcpy(r->data.data + r->data.len, v, vlen);
        r->data.len += vlen;
        r->data.data[r->data.len++] = '\n';
    } else if (nlen == 5 && memcmp(p, "event", 5) == 0) {
        r->event.len = 0;
        if (buf_append(&r->event, v, vlen) != 0)
            r->oversized = true;
    }
    /* id, retry and unknown fields do not matter to an observer */
}

/* A line end or -1: the first CR or LF in p[0..len). */
static const uint8_t *find_eol(const uint8_t *p, size_t len)
{
    const uint8_t *lf = memchr(p, '\n', len);
    size_t lim = lf ? (size_t)(lf - p) : len;
    const uint8_t *cr = memchr(p, '\r', lim);
    return cr ? cr : lf;
}

void sse_reader_feed(struct sse_reader *r, const uint8_t *p, size_t len)
{
    size_t i = 0;
    if (len > 0 && r->skip_lf) {
        r->skip_lf = false;
        if (p[0] == '\n')
            i = 1;
    }
    while (i < len) {
        const uint8_t *e = find_eol(p + i, len - i);
        if (!e) {
            if (!r->skip_line && buf_append(&r->line, p + i, len - i) != 0) {
                /* a line past the cap: the event it belongs to is dropped */
                r->line.len = 0;
                r->oversized = true;
                r->skip_line = true;
            }
            return;
        }
        size_t end = (size_t)(e - p);
        if (r->skip_line) {
            /* the end of a line too long to keep: not a blank line */
            r->skip_line = false;
        } else if (r->line.len > 0) {
            if (buf_append(&r->line, p + i, end - i) != 0) {
                r->line.len = 0;
                r->oversized = true;
            } else {
                handle_line(r, r->line.data, r->line.len);
            }
            r->line.len = 0;
        } else {
            handle_line(r, p + i, end - i);
        }
        if (p[end] == '\r') {
            if (end + 1 < len) {
                if (p[end + 1] == '\n')
                    end++;
            } else {
                r->skip_lf = true;
            }
        }
        i = end + 1;
    }
}

void sse_reader_finish(struct sse_reader *r)
{
    r->skip_line = false;
    if (r->line.len > 0) {
        handle_line(r, r->line.data, r->line.len);
        r->line.len = 0;
    }
    dispatch(r);
    r->skip_lf = false;
}
