/*
 * The session database writer: one SQLite file per session (WAL), created and
 * migrated from schemas/telemetry/NNNN_*.sql, fed through the event sink
 * (mitm/sink.h) from any thread. Events are copied into a bounded queue and
 * written by one writer thread in batched transactions; secrets never reach
 * it because producers redact first and the writer drops known secret
 * patterns from header text as a second line of defence.
 */
#ifndef CAPSEM_SERVER_TELEMETRY_H
#define CAPSEM_SERVER_TELEMETRY_H

#include "sink.h"

#include <stddef.h>
#include <stdint.h>

struct telemetry;

/*
 * Open (create, migrate) the database at `path` and start the writer thread.
 * A file from a newer schema, or one that is not a capsem database, is refused
 * with the reason in err. 0 or -errno.
 */
__attribute__((warn_unused_result)) int telemetry_open(const char *path, struct telemetry **out,
                                                       char *err, size_t errlen);
/* The sink that feeds this writer; valid until telemetry_close(). */
struct sink telemetry_sink(struct telemetry *t);
/* Block until every event queued before the call is committed. 0 or -errno. */
int telemetry_flush(struct telemetry *t);
/* Events dropped because the queue was full (each also logged once a second at most). */
uint64_t telemetry_dropped(struct telemetry *t);
/* Flush, stop the writer, close. Accepts NULL. */
void telemetry_close(struct telemetry *t);

#endif
