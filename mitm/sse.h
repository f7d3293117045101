/*
 * An incremental Server-Sent Events reader for the model parsers. Bytes are
 * fed as they pass through the proxy, split anywhere; complete events come
 * out through a callback. Lines end in CR, LF or CRLF (a CR at the end of one
 * feed and an LF at the start of the next are one line end); comments are
 * skipped; several data lines join with LF. Only the current line and the
 * current event are buffered, each up to a cap: an event larger than that is
 * dropped and counted, never passed on in part.
 */
#ifndef CAPSEM_MITM_SSE_H
#define CAPSEM_MITM_SSE_H

#include "buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SSE_MAX_EVENT_DEFAULT (8u << 20)

/*
 * One event. `event` is the event field ("" when none; not NUL-terminated),
 * `data` the joined data lines (NUL-terminated, the NUL not counted). Both are
 * borrowed for the call only.
 */
typedef void (*sse_event_fn)(void *opaque, const char *event, size_t event_len, const char *data,
                             size_t data_len);

struct sse_reader {
    sse_event_fn fn;
    void *opaque;
    struct buf line;  /* a line split across feeds */
    struct buf event; /* the event field of the event being read */
    struct buf data;  /* data lines of the event being read, LF after each */
    bool skip_lf;     /* the last feed ended in CR */
    bool skip_line;   /* the rest of a line past the cap is being discarded */
    bool oversized;   /* the event being read went past the cap: drop it */
    bool has_data;    /* a data field was seen in this event */
    uint64_t events;  /* events delivered */
    uint64_t dropped; /* events dropped for size */
};

/* Start reading; events larger than `max_event` bytes (0 = default) are dropped. */
void sse_reader_init(struct sse_reader *r, size_t max_event, sse_event_fn fn, void *opaque);
/* Free buffers; accepts a zeroed reader. */
void sse_reader_fini(struct sse_reader *r);
/* Feed bytes; never fails (memory trouble drops the event being read). */
void sse_reader_feed(struct sse_reader *r, const uint8_t *p, size_t len);
/*
 * The stream ended: an event whose blank line never came is delivered (an
 * observer wants what was sent even when the stream was cut short).
 */
void sse_reader_finish(struct sse_reader *r);

#endif
