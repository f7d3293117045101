/*
 * Telemetry writer benchmark: how many network events per second the session
 * database writer (server/telemetry.c) sustains, next to two peers measured
 * in the same run on the same schema and the same events:
 *   naive   one INSERT per event in autocommit mode (what a writer without a
 *           queue and batching would do on the proxy's thread);
 *   ideal   one prepared statement and one transaction for everything, on one
 *           thread, no copying or scrubbing: an upper bound for SQLite here.
 * Writer modes:
 *   flood     P producer threads push as fast as they can for 3 seconds; the
 *             queue stays full and the writer runs flat out; rate = rows
 *             stored / time to the end of the final flush (drops reported,
 *             not counted as stored);
 *   lossless  one producer pushes chunks of 1000 and flushes after each, so
 *             nothing is dropped; rate = events / time.
 * Not a test: prints numbers. Usage: bench_telemetry [events] [producers] [dir]
 */
#include "telemetry.h"

#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static char preview[513];
static const char headers[] = "{\"content-type\":\"application/json\",\"user-agent\":"
                              "\"claude-cli/1.0.0 (external, cli)\",\"anthropic-version\":"
                              "\"2023-06-01\",\"accept\":\"application/json\","
                              "\"content-length\":\"1834\"}";

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static struct net_event make_event(long i)
{
    struct net_event ev = {
        .time_us = 1700000000000000 + i,
        .process = "claude",
        .pid = 4242,
        .method = "POST",
        .scheme = "https",
        .host = "api.anthropic.com",
        .port = 443,
        .path = "/v1/messages",
        .query = NULL,
        .status = 200,
        .req_bytes = 1834,
        .resp_bytes = 20480,
        .duration_us = 2500000,
        .ttfb_us = 400000,
        .decision = DECISION_ALLOW,
        .rule = "provider-anthropic",
        .tls_version = "TLSv1.3",
        .req_headers = headers,
        .resp_headers = headers,
        .req_preview = preview,
        .resp_preview = preview,
    };

    return ev;
}

struct producer {
    struct sink sink;
    long n; /* pushed */
};

static int flood_stop;

static void *produce(void *arg)
{
    struct producer *p = arg;

    while (!__atomic_load_n(&flood_stop, __ATOMIC_RELAXED)) {
        struct net_event ev = make_event(p->n++);

        sink_net(&p->sink, &ev);
    }
    return NULL;
}

static long count_rows(const char *path)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    long n = -1;

    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(db, "SELECT count(*) FROM net_events", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        n = (long)sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}

static void remove_db(const char *path)
{
    char p[600];

    unlink(path);
    snprintf(p, sizeof(p), "%s-wal", path);
    unlink(p);
    snprintf(p, sizeof(p), "%s-shm", path);
    unlink(p);
}

static int open_writer(const char *path, struct telemetry **t)
{
    char err[512];
    int rc;

    remove_db(path);
    rc = telemetry_open(path, t, err, sizeof(err));
    if (rc)
        fprintf(stderr, "telemetry_open: %s\n", err);
    return rc;
}

/* flood: P producers for `seconds`; returns stored rows per second, or -1. */
static double bench_flood(const char *path, int seconds, int producers)
{
    struct telemetry *t = NULL;
    struct producer p[64];
    pthread_t th[64];
    double t0, dt;
    long rows, pushed = 0;
    uint64_t dropped;

    if (open_writer(path, &t))
        return -1;
    __atomic_store_n(&flood_stop, 0, __ATOMIC_RELAXED);
    t0 = now_s();
    for (int i = 0; i < producers; i++) {
        p[i] = (struct producer){.sink = telemetry_sink(t)};
        pthread_create(&th[i], NULL, produce, &p[i]);
    }
    sleep((unsigned)seconds);
    __atomic_store_n(&flood_stop, 1, __ATOMIC_RELAXED);
    for (int i = 0; i < producers; i++) {
        pthread_join(th[i], NULL);
        pushed += p[i].n;
    }
    telemetry_flush(t);
    dt = now_s() - t0;
    dropped = telemetry_dropped(t);
    telemetry_close(t);
    rows = count_rows(path);
    printf("writer flood     %2d producers: %8ld pushed %8ld stored %8llu dropped in %6.3f s: "
           "%9.0f stored events/s\n",
           producers, pushed, rows, (unsigned long long)dropped, dt, rows / dt);
    return rows / dt;
}

/* lossless: one producer, flush every 1000; returns events per second, or -1. */
static double bench_lossless(const char *path, long events)
{
    struct telemetry *t = NULL;
    struct sink s;
    double t0, dt;
    long rows;

    if (open_writer(path, &t))
        return -1;
    s = telemetry_sink(t);
    t0 = now_s();
    for (long i = 0; i < events; i++) {
        struct net_event ev = make_event(i);

        sink_net(&s, &ev);
        if ((i + 1) % 1000 == 0)
            telemetry_flush(t);
    }
    telemetry_flush(t);
    dt = now_s() - t0;
    if (telemetry_dropped(t))
        printf("(lossless run dropped %llu)\n", (unsigned long long)telemetry_dropped(t));
    telemetry_close(t);
    rows = count_rows(path);
    printf("writer lossless   1 producer : %8ld pushed %8ld stored in %6.3f s: %9.0f events/s\n",
           events, rows, dt, rows / dt);
    return rows / dt;
}

static int bind_event(sqlite3_stmt *st, const struct net_event *e)
{
    int rc = 0;

    rc |= sqlite3_bind_int64(st, 1, e->time_us);
    rc |= sqlite3_bind_text(st, 2, e->process, -1, SQLITE_STATIC);
    rc |= sqlite3_bind_int64(st, 3, e->pid);
    rc |= sqlite3_bind_text(st, 4, e->method, -1, SQLITE_STATIC);
    rc |= sqlite3_bind_text(st, 5, e->scheme, -1, SQLITE_STATIC);
    rc |= sqlite3_bind_text(st, 6, e->host, -1, SQLITE_STATIC);
    rc |= sqlite3_bind_int(st, 7, e->port);
    rc |= sqlite3_bind_text(st, 8, e->path, -1, SQLITE_STATIC);
    rc |= sqlite3_bind_null(st, 9);
    rc |= sqlite3_bind_int(st, 10, e->status);
    rc |= sqlite3_bind_int64(st, 11, e->req_bytes);
    rc |= sqlite3_bind_int64(st, 12, e->resp_bytes);
    rc |= sqlite3_bind_int64(st, 13, e->duration_us);
    rc |= sqlite3_bind_int64(st, 14, e->ttfb_us);
    rc |= sqlite3_bind_int(st, 15, (int)e->decision);
    rc |= sqlite3_bind_text(st, 16, e->rule, -1, SQLITE_STATIC);
    rc |= sqlite3_bind_text(st, 17, e->tls_version, -1, SQLITE_STATIC);
    rc |= sqlite3_bind_null(st, 18);
    rc |= sqlite3_bind_text(st, 19, e->req_headers, -1, SQLITE_STATIC);
    rc |= sqlite3_bind_text(st, 20, e->resp_headers, -1, SQLITE_STATIC);
    rc |= sqlite3_bind_text(st, 21, e->req_preview, -1, SQLITE_STATIC);
    rc |= sqlite3_bind_text(st, 22, e->resp_preview, -1, SQLITE_STATIC);
    return rc;
}

/* A peer on the same schema: one transaction per event (naive) or for all (ideal). */
static double bench_peer(const char *path, long events, int one_txn)
{
    static const char sql[] =
        "INSERT INTO net_events (time_us, process, pid, method, scheme, host, port, path, query,"
        " status, req_bytes, resp_bytes, duration_us, ttfb_us, decision, rule, tls_version,"
        " error, req_headers, resp_headers, req_preview, resp_preview) VALUES (?1, ?2, ?3, ?4,"
        " ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22)";
    struct telemetry *t = NULL;
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    double t0, dt;
    long rows;

    /* The writer creates the schema; the peer then writes with plain SQLite. */
    if (open_writer(path, &t))
        return -1;
    telemetry_close(t);
    if (sqlite3_open(path, &db) != SQLITE_OK ||
        sqlite3_exec(db, "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL", NULL, NULL,
                     NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        fprintf(stderr, "peer: %s\n", sqlite3_errmsg(db));
        sqlite3_close(db);
        return -1;
    }
    t0 = now_s();
    if (one_txn)
        sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
    for (long i = 0; i < events; i++) {
        struct net_event ev = make_event(i);

        if (bind_event(st, &ev) != SQLITE_OK || sqlite3_step(st) != SQLITE_DONE) {
            fprintf(stderr, "peer insert: %s\n", sqlite3_errmsg(db));
            break;
        }
        sqlite3_reset(st);
    }
    if (one_txn)
        sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    dt = now_s() - t0;
    sqlite3_finalize(st);
    sqlite3_close(db);
    rows = count_rows(path);
    printf("peer %-8s     1 thread   : %8ld pushed %8ld stored in %6.3f s: %9.0f events/s\n",
           one_txn ? "ideal" : "naive", events, rows, dt, rows / dt);
    return rows / dt;
}

int main(int argc, char **argv)
{
    long events = argc > 1 ? strtol(argv[1], NULL, 10) : 200000;
    int producers = argc > 2 ? (int)strtol(argv[2], NULL, 10) : 4;
    const char *dir = argc > 3 ? argv[3] : "/tmp";
    char path[512];
    double flood, lossless, naive, ideal;

    if (events <= 0 || producers <= 0 || producers > 64) {
        fprintf(stderr, "usage: bench_telemetry [events>0] [producers 1..64] [dir]\n");
        return 2;
    }
    memset(preview, 'x', sizeof(preview) - 1);
    snprintf(path, sizeof(path), "%s/bench-telemetry-%ld.db", dir, (long)getpid());
    printf("events of ~%zu bytes of text (two 512-byte previews, two %zu-byte header objects)\n",
           2 * (sizeof(preview) - 1) + 2 * (sizeof(headers) - 1) + 80, sizeof(headers) - 1);

    flood = bench_flood(path, 3, producers);
    lossless = bench_lossless(path, events);
    /* The naive peer is slow: give it a tenth of the events. */
    naive = bench_peer(path, events / 10 > 0 ? events / 10 : 1, 0);
    ideal = bench_peer(path, events, 1);
    remove_db(path);
    if (flood < 0 || lossless < 0 || naive < 0 || ideal < 0)
        return 1;
    printf("ratios: flood/ideal %.2fx  lossless/ideal %.2fx  flood/naive %.1fx  lossless/naive "
           "%.1fx\n",
           flood / ideal, lossless / ideal, flood / naive, lossless / naive);
    return 0;
}
