/*
 * The daemon's live event stream, behind the /api/v1/events WebSocket.
 * Producers (the session manager on state changes, the telemetry poller
 * below) call events_publish() from any thread; messages go into one
 * process-wide ring with sequence numbers, and the WebSocket side (httpd.c,
 * on the lws service thread) is woken to send each open socket what it has
 * not seen yet. A socket that falls more than EVENTS_RING messages behind
 * gets {"type":"lost","count":N} instead of the messages it missed.
 *
 * The telemetry poller watches $CAPSEM_HOME/sessions/<id>/session.db every
 * EVENTS_POLL_MS and publishes each new row of net_events, dns_events,
 * model_calls and tool_calls, and each new line of fs-events.jsonl (rows
 * and lines present when it first sees them are not replayed).
 */
#ifndef CAPSEM_SERVER_EVENTS_H
#define CAPSEM_SERVER_EVENTS_H

#include <stddef.h>
#include <stdint.h>

/* Messages kept for slow readers. */
#define EVENTS_RING 4096
/* Poll period of the telemetry poller. */
#define EVENTS_POLL_MS 250

/*
 * Publish one message: `json` must be a JSON object text (copied). Any
 * thread. 0, -EINVAL (not a JSON object) or -ENOMEM.
 */
__attribute__((warn_unused_result)) int events_publish(const char *json);

/* The function woken after each publish (httpd: lws_cancel_service). NULL clears it. */
void events_set_wake(void (*fn)(void *ctx), void *ctx);

/* The sequence number of the latest message (0 before any). */
uint64_t events_last_seq(void);

/*
 * The message after sequence *seq: 1 with a malloc'd copy in *msg (length
 * *len) and *seq advanced, or 0 when there is none. When messages after
 * *seq were dropped from the ring, the message is {"type":"lost","count":N}
 * and *seq moves to just before the oldest kept. -ENOMEM.
 */
int events_next(uint64_t *seq, char **msg, size_t *len);

/* Telemetry rows published by the poller since start. */
uint64_t events_rows_published(void);

/*
 * Rows in the watched sessions' databases, by kind (0 net_events, 1
 * dns_events, 2 model_calls, 3 tool_calls; the largest ids, as of the
 * poller's last round). 0 when the poller does not run.
 */
uint64_t events_rows_total(int kind);

/*
 * Start the telemetry poller on `home` (copied). 0 or -errno. One poller
 * per process; events_poll_stop() stops and joins it (fine when not started).
 */
__attribute__((warn_unused_result)) int events_poll_start(const char *home);
void events_poll_stop(void);

/* Forget every message (tests). */
void events_reset(void);

#endif
