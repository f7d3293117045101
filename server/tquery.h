/*
 * The read side of a session's telemetry: listing events from session.db
 * (net, DNS, model calls, tool calls) and the VMM's file events
 * (fs-events.jsonl) with filters and keyset paging, the session's stats, and
 * read-only SQL for users. Every function opens its own read-only
 * connection, so it works on a session whether or not its VM runs, and
 * from any thread. Results are jansson objects ready to send.
 */
#ifndef CAPSEM_SERVER_TQUERY_H
#define CAPSEM_SERVER_TQUERY_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Default and largest page size for tq_list. */
#define TQ_LIMIT_DEFAULT 100
#define TQ_LIMIT_MAX 1000
/* tq_sql bounds: rows returned (then "truncated": true) and run time. */
#define TQ_SQL_ROWS_MAX 10000
#define TQ_SQL_TIME_MS 2000
/* tq_sql: largest single value (SQLITE_LIMIT_LENGTH), and result bytes before it is cut
 * ("truncated": true) whatever the row count. */
#define TQ_SQL_VALUE_MAX (16 << 20)
#define TQ_SQL_BYTES_MAX (64u << 20)

enum tq_kind { TQ_NET, TQ_DNS, TQ_MODEL, TQ_TOOL, TQ_FILE };

/* A list request; strings are borrowed, NULL when not given. */
struct tq_filter {
    bool has_from, has_to;
    int64_t from_us, to_us; /* time_us >= from_us, time_us < to_us */
    const char *host;       /* net: host; dns: name; model: host */
    const char *decision;   /* "allow", "block", "log" (net, dns) */
    const char *provider;   /* model, tool */
    const char *model;      /* model_answered or model_requested (model, tool) */
    const char *q;          /* case-insensitive substring over a few text columns */
    const char *cursor;     /* from a previous page's next_cursor */
    bool desc;              /* newest first */
    unsigned limit;         /* 1..TQ_LIMIT_MAX; 0 means TQ_LIMIT_DEFAULT */
};

/* Parse a kind from its URL name ("net-events", "dns-events", "model-calls",
 * "tool-calls", "file-events"). 0 or -EINVAL. */
int tq_kind_parse(const char *name, enum tq_kind *out);

/*
 * One page of `kind` events from the session directory `dir`: *out is
 * {"items": [...], "next_cursor": "..." | null}. Items are ordered by
 * (time, id). A missing database, table or events file is an empty page.
 * -EINVAL with the reason in err for a bad filter, cursor or limit (the
 * caller answers 400); -EIO for a database that cannot be read.
 */
__attribute__((warn_unused_result)) int tq_list(const char *dir, enum tq_kind kind,
                                                const struct tq_filter *f, json_t **out, char *err,
                                                size_t errlen);

/*
 * The session's stats: {"totals": {...}, "models": [...], "hosts": [...],
 * "dns_queries", "file_events"}. 0, or -EIO with the reason in err.
 */
__attribute__((warn_unused_result)) int tq_stats(const char *dir, json_t **out, char *err,
                                                 size_t errlen);

/*
 * Run one read-only statement `sql` on the session's database: a read-only
 * connection with query_only, an authorizer allowing only SELECT, reading
 * columns and calling functions (and recursive CTEs), at most `time_ms`
 * (0: TQ_SQL_TIME_MS) and `max_rows` (0: TQ_SQL_ROWS_MAX) rows. *out is
 * {"columns": [...], "rows": [[...]...], "truncated": bool}. -EINVAL with
 * SQLite's message (or ours) in err for a refused, bad or too slow
 * statement; -ENOENT when the session has no database.
 */
__attribute__((warn_unused_result)) int tq_sql(const char *dir, const char *sql, unsigned time_ms,
                                               unsigned max_rows, json_t **out, char *err,
                                               size_t errlen);

/*
 * Rows of `kind` (not TQ_FILE) with id above *last, in id order, at most
 * `limit`, into *items (a new array; each item as in tq_list); *last moves
 * to the last id returned. When *last is negative, nothing is returned and
 * *last becomes the current largest id (0 when none). A missing database or
 * table is no rows. 0, -EIO or -ENOMEM.
 */
__attribute__((warn_unused_result)) int tq_since(const char *dir, enum tq_kind kind, int64_t *last,
                                                 unsigned limit, json_t **items);

/* The URL name of a kind ("net-events", ...). */
const char *tq_kind_name(enum tq_kind kind);

#endif
