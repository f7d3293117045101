/*
 * Linking model calls into traces, per session. A trace is one agent task:
 * a call whose request carries no tool results starts a new trace (turn 1);
 * a call whose request carries the result of a tool call seen in an earlier
 * response joins that call's trace, one turn later. The table remembers the
 * tool-call ids of responses, up to a bound (the oldest are forgotten
 * first). Thread-safe: calls of one session may finish on several threads.
 */
#ifndef CAPSEM_MITM_TRACE_H
#define CAPSEM_MITM_TRACE_H

#include "sink.h"

#include <stddef.h>
#include <stdint.h>

#define TRACE_MAX_IDS_DEFAULT 65536

struct trace_table;

/* A table remembering at most `max_ids` tool calls (0 = default). 0 or -ENOMEM. */
__attribute__((warn_unused_result)) int trace_table_create(size_t max_ids,
                                                           struct trace_table **out);
/* Free; accepts NULL. */
void trace_table_destroy(struct trace_table *t);

/*
 * Set c->trace_id and c->turn from c's tool results, then remember c's tool
 * calls (by id; Gemini calls also by name, since Gemini results name the
 * function rather than the call) as belonging to that trace and turn. When
 * results match calls of several traces, the one with the latest turn wins.
 * Call once per call, when its response has been parsed.
 */
void trace_link(struct trace_table *t, struct model_call *c);

#endif
