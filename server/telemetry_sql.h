/*
 * The session database migrations, schemas/telemetry/NNNN_*.sql, embedded in
 * the build in version order (server/CMakeLists.txt generates the table at
 * configure time; adding a migration is adding the next NNNN_name.sql file).
 * Internal to the telemetry writer and its tests.
 */
#ifndef CAPSEM_SERVER_TELEMETRY_SQL_H
#define CAPSEM_SERVER_TELEMETRY_SQL_H

#include <stddef.h>

struct telemetry_migration {
    int version;      /* NNNN from the file name; strictly increasing in the table */
    const char *name; /* file name, for messages */
    const char *sql;  /* the file's text, NUL-terminated */
};

/* Every migration in version order; the last one's version is the schema version. */
extern const struct telemetry_migration telemetry_migrations[];
extern const size_t telemetry_migration_count;

#endif
