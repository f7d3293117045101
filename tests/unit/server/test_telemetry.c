/*
 * Unit tests for the session database writer (server/telemetry.c), against
 * real SQLite files in a temporary directory, read back through a second
 * SQLite connection and as raw bytes. What each kind of bad input must do:
 *   NULL or empty path, missing directory        -> refused, -errno, reason in err;
 *   a file that is not SQLite (text, random bytes) -> -EINVAL "not an SQLite database",
 *                                                    file untouched, no -wal created;
 *   an SQLite file of another application         -> -EINVAL "not a capsem session
 *                                                    database", file untouched;
 *   a capsem database from a newer schema         -> -EPROTONOSUPPORT "newer", untouched;
 *   a full queue                                  -> the event is dropped and counted,
 *                                                    the producer does not wait;
 *   a secret in any string field                  -> "[redacted]" in the file, never the key;
 *   NULL strings                                  -> SQL NULL ("" stays "");
 *   model-call counts the provider did not report -> SQL NULL, 0 in session_totals;
 *   an unpriced model call                        -> cost_usd NULL, counted in unpriced_calls;
 *   a tool-call/result count without its array    -> no rows, the count stored is 0;
 *   a secret in tool-call arguments or previews   -> "[redacted]" (credential keys of a
 *                                                    JSON object too), never the key.
 * A writer killed with SIGKILL mid-run leaves a database that opens, passes
 * integrity_check and holds a gap-free prefix of what was queued, model calls
 * whole and session_totals agreeing with the rows.
 */
#include "telemetry.h"
#include "log.h"
#include "telemetry_sql.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct fixture {
    char dir[64];
    char path[128];
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));

    if (!f)
        return -1;
    snprintf(f->dir, sizeof(f->dir), "/tmp/capsem-telemetry-XXXXXX");
    if (!mkdtemp(f->dir)) {
        free(f);
        return -1;
    }
    snprintf(f->path, sizeof(f->path), "%s/session.db", f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    char p[160];
    const char *suffix[] = {"", "-wal", "-shm", "-journal"};

    for (size_t i = 0; i < 4; i++) {
        snprintf(p, sizeof(p), "%s%s", f->path, suffix[i]);
        unlink(p);
    }
    rmdir(f->dir);
    free(f);
    return 0;
}

static int latest_version(void)
{
    return telemetry_migrations[telemetry_migration_count - 1].version;
}

static struct telemetry *open_ok(const char *path)
{
    struct telemetry *t = NULL;
    char err[256] = "";
    int rc = telemetry_open(path, &t, err, sizeof(err));

    if (rc)
        fprintf(stderr, "telemetry_open: %d %s\n", rc, err);
    assert_int_equal(rc, 0);
    assert_non_null(t);
    return t;
}

static sqlite3 *db_open(const char *path)
{
    sqlite3 *db = NULL;

    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    return db;
}

static int64_t db_int(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st = NULL;
    int64_t v;

    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        fprintf(stderr, "%s: %s\n", sql, sqlite3_errmsg(db));
    assert_non_null(st);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

/* First column of the first row as text ("<NULL>" for NULL), into out. */
static void db_text(sqlite3 *db, const char *sql, char *out, size_t outlen)
{
    sqlite3_stmt *st = NULL;
    const unsigned char *s;

    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    s = sqlite3_column_text(st, 0);
    snprintf(out, outlen, "%s", s ? (const char *)s : "<NULL>");
    sqlite3_finalize(st);
}

static int64_t count_rows(const char *path, const char *table)
{
    char sql[128];
    sqlite3 *db = db_open(path);
    int64_t n;

    snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s", table);
    n = db_int(db, sql);
    sqlite3_close(db);
    return n;
}

/* The whole file in a malloc'd buffer (NULL, *len 0 when it does not exist). */
static uint8_t *read_file(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    uint8_t *buf = NULL;
    long n;

    *len = 0;
    if (!fp)
        return NULL;
    assert_int_equal(fseek(fp, 0, SEEK_END), 0);
    n = ftell(fp);
    assert_true(n >= 0);
    rewind(fp);
    buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, fp), (size_t)n);
    fclose(fp);
    *len = (size_t)n;
    return buf;
}

static void write_file(const char *path, const void *data, size_t len)
{
    FILE *fp = fopen(path, "wb");

    assert_non_null(fp);
    assert_int_equal(fwrite(data, 1, len, fp), len);
    assert_int_equal(fclose(fp), 0);
}

static bool exists(const char *path)
{
    struct stat st;

    return stat(path, &st) == 0;
}

static struct net_event sample_net(int64_t seq, const char *process)
{
    struct net_event ev = {
        .time_us = 1700000000000000 + seq,
        .process = process,
        .pid = seq,
        .method = "POST",
        .scheme = "https",
        .host = "api.anthropic.com",
        .port = 443,
        .path = "/v1/messages",
        .query = "beta=true",
        .status = 200,
        .req_bytes = 1234,
        .resp_bytes = 56789,
        .duration_us = 250000,
        .ttfb_us = 90000,
        .decision = DECISION_ALLOW,
        .rule = "allow-anthropic",
        .tls_version = "TLSv1.3",
        .error = NULL,
        .req_headers = "{\"content-type\":\"application/json\"}",
        .resp_headers = "{\"content-type\":\"text/event-stream\"}",
        .req_preview = "{\"model\":\"claude\"}",
        .resp_preview = "event: message_start",
    };

    return ev;
}

/* ---- create, migrate, reopen -------------------------------------------- */

static void test_telemetry_open_creates_and_migrates(void **state)
{
    struct fixture *f = *state;
    struct telemetry *t = open_ok(f->path);
    struct sink s = telemetry_sink(t);
    struct net_event ev = sample_net(7, "claude");
    struct stat st;
    char mode[32], wal[160];
    sqlite3 *db;

    sink_net(&s, &ev);
    assert_int_equal(telemetry_flush(t), 0);
    telemetry_close(t);

    assert_int_equal(stat(f->path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    db = db_open(f->path);
    assert_int_equal(db_int(db, "PRAGMA user_version"), latest_version());
    assert_int_not_equal(db_int(db, "PRAGMA application_id"), 0);
    db_text(db, "PRAGMA journal_mode", mode, sizeof(mode));
    assert_string_equal(mode, "wal");
    assert_int_equal(db_int(db, "SELECT count(*) FROM sqlite_schema WHERE name IN "
                                "('net_events','dns_events','decisions','net_events_time',"
                                "'net_events_host','dns_events_time','dns_events_name')"),
                     7);
    assert_int_equal(db_int(db, "SELECT count(*) FROM decisions"), 3);
    sqlite3_close(db);
    /* The WAL is checkpointed and removed on close. */
    snprintf(wal, sizeof(wal), "%s-wal", f->path);
    assert_false(exists(wal));

    /* Reopen: nothing is migrated twice, the row is still there, more can be added. */
    t = open_ok(f->path);
    s = telemetry_sink(t);
    ev = sample_net(8, "claude");
    sink_net(&s, &ev);
    telemetry_close(t);
    db = db_open(f->path);
    assert_int_equal(db_int(db, "PRAGMA user_version"), latest_version());
    assert_int_equal(db_int(db, "SELECT count(*) FROM decisions"), 3);
    assert_int_equal(db_int(db, "SELECT count(*) FROM net_events"), 2);
    db_text(db, "SELECT group_concat(pid) FROM (SELECT pid FROM net_events ORDER BY id)", mode,
            sizeof(mode));
    assert_string_equal(mode, "7,8");
    sqlite3_close(db);
}

static void test_telemetry_open_empty_file_is_fresh(void **state)
{
    struct fixture *f = *state;
    struct telemetry *t;

    write_file(f->path, "", 0);
    t = open_ok(f->path);
    telemetry_close(t);
    assert_int_equal(count_rows(f->path, "net_events"), 0);
}

static void test_telemetry_open_bad_path(void **state)
{
    struct fixture *f = *state;
    struct telemetry *t = NULL;
    char err[256] = "", missing[192];

    assert_int_equal(telemetry_open(NULL, &t, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "path"));
    assert_int_equal(telemetry_open("", &t, err, sizeof(err)), -EINVAL);
    assert_int_equal(telemetry_open(f->path, NULL, err, sizeof(err)), -EINVAL);
    snprintf(missing, sizeof(missing), "%s/no/such/dir/session.db", f->dir);
    err[0] = '\0';
    assert_int_equal(telemetry_open(missing, &t, err, sizeof(err)), -ENOENT);
    assert_non_null(strstr(err, missing));
    /* A directory is not a database. */
    assert_int_equal(telemetry_open(f->dir, &t, err, sizeof(err)), -EISDIR);
    assert_null(t);
    /* err may be NULL. */
    assert_int_equal(telemetry_open(NULL, &t, NULL, 0), -EINVAL);
}

/* ---- refusals ------------------------------------------------------------ */

/* Open must fail with `want` and a message containing `why`, touching nothing. */
static void expect_refused(struct fixture *f, int want, const char *why)
{
    struct telemetry *t = NULL;
    char err[512] = "", wal[160];
    size_t before_len, after_len;
    uint8_t *before = read_file(f->path, &before_len);
    uint8_t *after;

    assert_non_null(before);
    assert_int_equal(telemetry_open(f->path, &t, err, sizeof(err)), want);
    assert_null(t);
    assert_non_null(strstr(err, why));
    assert_non_null(strstr(err, f->path));
    after = read_file(f->path, &after_len);
    assert_int_equal(after_len, before_len);
    assert_memory_equal(after, before, before_len);
    snprintf(wal, sizeof(wal), "%s-wal", f->path);
    assert_false(exists(wal));
    free(before);
    free(after);
}

static void test_telemetry_open_newer_schema_refused(void **state)
{
    struct fixture *f = *state;
    struct telemetry *t = open_ok(f->path);
    struct sink s = telemetry_sink(t);
    struct net_event ev = sample_net(1, "claude");
    char sql[64];
    sqlite3 *db;

    sink_net(&s, &ev);
    telemetry_close(t);
    db = db_open(f->path);
    /* Back to a rollback journal so that the refusal can be checked byte for byte. */
    assert_int_equal(sqlite3_exec(db, "PRAGMA journal_mode = DELETE", NULL, NULL, NULL), 0);
    snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", latest_version() + 1);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);

    expect_refused(f, -EPROTONOSUPPORT, "newer");
    assert_int_equal(count_rows(f->path, "net_events"), 1);
}

static void test_telemetry_open_garbage_refused(void **state)
{
    struct fixture *f = *state;
    static const char text[] = "this is a text file, not a database\n";
    uint8_t junk[8192];
    uint32_t x = 12345;

    write_file(f->path, text, sizeof(text) - 1);
    expect_refused(f, -EINVAL, "not an SQLite database");

    for (size_t i = 0; i < sizeof(junk); i++) {
        x = x * 1103515245 + 12345;
        junk[i] = (uint8_t)(x >> 16);
    }
    write_file(f->path, junk, sizeof(junk));
    expect_refused(f, -EINVAL, "not an SQLite database");
}

static void test_telemetry_open_foreign_sqlite_refused(void **state)
{
    struct fixture *f = *state;
    sqlite3 *db = NULL;

    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db,
                                  "CREATE TABLE notes (t TEXT); INSERT INTO notes VALUES ('mine')",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
    expect_refused(f, -EINVAL, "not a capsem session database");
    assert_int_equal(count_rows(f->path, "notes"), 1);
}

/* ---- many producers ------------------------------------------------------ */

#define THREADS 4
#define PER_THREAD 2500

struct producer {
    struct sink sink;
    int id;
    int n;
};

static void *produce(void *arg)
{
    struct producer *p = arg;
    char process[16], name[64];

    snprintf(process, sizeof(process), "t%d", p->id);
    for (int i = 0; i < p->n; i++) {
        if (i % 5 == 4) {
            struct dns_event d = {.time_us = i,
                                  .name = name,
                                  .type = "A",
                                  .decision = DECISION_BLOCK,
                                  .rule = process,
                                  .answer = "NXDOMAIN"};

            snprintf(name, sizeof(name), "n%d.t%d.example", i, p->id);
            sink_dns(&p->sink, &d);
        } else {
            struct net_event ev = sample_net(i, process);

            sink_net(&p->sink, &ev);
        }
    }
    return NULL;
}

static void test_sink_net_threads_all_land(void **state)
{
    struct fixture *f = *state;
    struct telemetry *t = open_ok(f->path);
    struct producer p[THREADS];
    pthread_t th[THREADS];
    char sql[160];
    sqlite3 *db;

    for (int i = 0; i < THREADS; i++) {
        p[i] = (struct producer){.sink = telemetry_sink(t), .id = i, .n = PER_THREAD};
        assert_int_equal(pthread_create(&th[i], NULL, produce, &p[i]), 0);
    }
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(telemetry_flush(t), 0);
    assert_int_equal(telemetry_dropped(t), 0);

    db = db_open(f->path);
    assert_int_equal(db_int(db, "SELECT (SELECT count(*) FROM net_events) + "
                                "(SELECT count(*) FROM dns_events)"),
                     THREADS * PER_THREAD);
    for (int i = 0; i < THREADS; i++) {
        snprintf(sql, sizeof(sql),
                 "SELECT count(DISTINCT pid) FROM net_events WHERE process = 't%d'", i);
        assert_int_equal(db_int(db, sql), PER_THREAD * 4 / 5);
        snprintf(sql, sizeof(sql), "SELECT count(DISTINCT name) FROM dns_events WHERE rule = 't%d'",
                 i);
        assert_int_equal(db_int(db, sql), PER_THREAD / 5);
    }
    sqlite3_close(db);
    telemetry_close(t);
}

/* ---- flush --------------------------------------------------------------- */

static void test_telemetry_flush_waits_for_queued(void **state)
{
    struct fixture *f = *state;
    struct telemetry *t = open_ok(f->path);
    struct sink s = telemetry_sink(t);
    sqlite3 *db;

    /* Nothing queued: returns at once. */
    assert_int_equal(telemetry_flush(t), 0);
    db = db_open(f->path);
    for (int round = 1; round <= 3; round++) {
        /* Fewer than a batch, so only the flush (not a full batch) makes them land now. */
        for (int i = 0; i < 37; i++) {
            struct net_event ev = sample_net(i, "flush");

            sink_net(&s, &ev);
        }
        assert_int_equal(telemetry_flush(t), 0);
        assert_int_equal(db_int(db, "SELECT count(*) FROM net_events"), 37 * round);
    }
    sqlite3_close(db);
    telemetry_close(t);
}

static void test_telemetry_close_flushes(void **state)
{
    struct fixture *f = *state;
    struct telemetry *t = open_ok(f->path);
    struct sink s = telemetry_sink(t);

    for (int i = 0; i < 3000; i++) {
        struct dns_event d = {.time_us = i, .name = "example.com", .type = "AAAA"};

        sink_dns(&s, &d);
    }
    telemetry_close(t);
    assert_int_equal(count_rows(f->path, "dns_events"), 3000);
}

/* ---- full queue ---------------------------------------------------------- */

#define FLOOD 40000

struct flood {
    struct sink sink;
    int n;
};

static void *flood_main(void *arg)
{
    struct flood *fl = arg;

    for (int i = 0; i < fl->n; i++) {
        struct net_event ev = sample_net(i, "flood");

        sink_net(&fl->sink, &ev);
    }
    return NULL;
}

static void test_sink_net_full_queue_drops_without_blocking(void **state)
{
    struct fixture *f = *state;
    struct telemetry *t = open_ok(f->path);
    struct flood fl = {.sink = telemetry_sink(t), .n = FLOOD};
    sqlite3 *locker = db_open(f->path);
    struct timespec deadline, t0, t1;
    FILE *logf = tmpfile();
    char line[512];
    int drop_lines = 0;
    pthread_t th;
    uint64_t dropped;
    int64_t rows;

    assert_non_null(logf);
    log_set_file(logf);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    /* Another connection holds the write lock: the writer cannot commit anything. */
    assert_int_equal(sqlite3_exec(locker, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(pthread_create(&th, NULL, flood_main, &fl), 0);
    /* The producer must finish while the lock is still held: it never waits for the disk. */
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 60;
    assert_int_equal(pthread_timedjoin_np(th, NULL, &deadline), 0);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    log_set_file(NULL);
    dropped = telemetry_dropped(t);
    /* Drops are logged, at most once a second. */
    rewind(logf);
    while (fgets(line, sizeof(line), logf))
        if (strstr(line, "queue full"))
            drop_lines++;
    fclose(logf);
    assert_true(drop_lines >= 1);
    assert_true(drop_lines <= 1 + (t1.tv_sec - t0.tv_sec) + 1);
    assert_true(dropped > 0);
    assert_true(dropped < FLOOD);
    assert_int_equal(db_int(locker, "SELECT count(*) FROM net_events"), 0);

    /* Once the lock goes, everything that was not dropped lands. */
    assert_int_equal(sqlite3_exec(locker, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(locker);
    assert_int_equal(telemetry_flush(t), 0);
    rows = count_rows(f->path, "net_events");
    assert_int_equal((uint64_t)rows + dropped, FLOOD);
    assert_int_equal(telemetry_dropped(t), dropped);
    telemetry_close(t);
}

/* ---- kill -9 ------------------------------------------------------------- */

static struct model_call sample_model(int64_t seq);

/* The child: write numbered events for ever (a model call with a tool call after every
 * fourth), reporting each flushed count. */
static void __attribute__((noreturn)) kill_child(const char *path, int report_fd)
{
    struct telemetry *t = NULL;
    char err[256], p[64];
    struct sink s;

    if (telemetry_open(path, &t, err, sizeof(err)) != 0)
        _exit(2);
    s = telemetry_sink(t);
    for (int64_t i = 0;; i++) {
        struct net_event ev = sample_net(i, "victim");

        snprintf(p, sizeof(p), "/seq/%lld", (long long)i);
        ev.path = p;
        sink_net(&s, &ev);
        if (i % 4 == 0) {
            struct model_tool_call tc = {.id = "toolu_k", .name = "Bash", .arguments = "{}"};
            struct model_call c = sample_model(i);

            c.tool_calls = &tc;
            c.n_tool_calls = 1;
            sink_model(&s, &c);
        }
        if ((i + 1) % 500 == 0) {
            int64_t done = i + 1;

            if (telemetry_flush(t) != 0)
                _exit(3);
            if (write(report_fd, &done, sizeof(done)) != (ssize_t)sizeof(done))
                _exit(4);
        }
    }
}

static void test_telemetry_kill9_leaves_consistent_db(void **state)
{
    struct fixture *f = *state;
    int fds[2], status;
    int64_t reported = 0, rows;
    char check[64];
    struct telemetry *t;
    sqlite3 *db;
    pid_t pid;

    assert_int_equal(pipe(fds), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        kill_child(f->path, fds[1]);
    }
    close(fds[1]);
    /* Let it commit a few thousand events and keep writing, then kill it mid-run. */
    while (reported < 5000) {
        struct pollfd pfd = {.fd = fds[0], .events = POLLIN};
        int64_t v;

        assert_int_equal(poll(&pfd, 1, 60000), 1);
        assert_int_equal(read(fds[0], &v, sizeof(v)), sizeof(v));
        reported = v;
    }
    assert_int_equal(kill(pid, SIGKILL), 0);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    /* What it had reported flushed is there; see that the pipe told the truth. */
    {
        int64_t v;

        while (read(fds[0], &v, sizeof(v)) == (ssize_t)sizeof(v))
            reported = v;
    }
    close(fds[0]);

    db = db_open(f->path);
    db_text(db, "PRAGMA integrity_check", check, sizeof(check));
    assert_string_equal(check, "ok");
    rows = db_int(db, "SELECT count(*) FROM net_events");
    assert_true(rows >= reported);
    /* One writer, one order: the rows are exactly events 0 .. rows-1, each complete. */
    assert_int_equal(db_int(db, "SELECT count(DISTINCT pid) FROM net_events"), rows);
    assert_int_equal(db_int(db, "SELECT max(pid) FROM net_events"), rows - 1);
    assert_int_equal(db_int(db, "SELECT count(*) FROM net_events WHERE path != '/seq/' || pid "
                                "OR resp_preview IS NULL OR ttfb_us != 90000"),
                     0);
    /* Model calls come whole, and the totals agree with the rows they count. */
    assert_true(db_int(db, "SELECT count(*) FROM model_calls") >= reported / 4);
    assert_int_equal(db_int(db, "SELECT (SELECT count(*) FROM tool_calls) ="
                                " (SELECT count(*) FROM model_calls)"),
                     1);
    assert_int_equal(db_int(db, "SELECT requests = (SELECT count(*) FROM net_events) AND"
                                " model_calls = (SELECT count(*) FROM model_calls) AND"
                                " input_tokens = (SELECT sum(input_tokens) FROM model_calls)"
                                " FROM session_totals"),
                     1);
    sqlite3_close(db);

    /* And the writer opens it again and goes on. */
    t = open_ok(f->path);
    {
        struct sink s = telemetry_sink(t);
        struct net_event ev = sample_net(rows, "after");

        sink_net(&s, &ev);
    }
    telemetry_close(t);
    assert_int_equal(count_rows(f->path, "net_events"), rows + 1);
}

/* ---- secrets ------------------------------------------------------------- */

#define K_ANT "sk-ant-api03-Q7xVb2Lm9RtY4pZkW8nC3sD6fGhJ1kLqWeRtYuIoP-AbCdEfGh"
#define K_OAI "sk-proj-Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2Ji1HgFeDcBa0"
#define K_GOO "AIzaSyD3xK9mQ2vL7pR4tW8nB1cF6hJ0gE5sA2zY"
#define K_TOK "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"
#define K_HDR "plainHeaderSecret7741"
#define K_ESC "EscapedTailQ9w8e7r6t5y4u3"
#define SECRETS " a " K_ANT " b " K_OAI " c " K_GOO " d Bearer " K_TOK " e "
#define HEADERS                                                                                    \
    "{\"authorization\":\"Bearer " K_TOK "\",\"X-Api-Key\":\"" K_HDR "\","                         \
    "\"x-goog-api-key\":[\"" K_HDR "\"],\"user-agent\":\"" SECRETS "\","                           \
    "\"x-note\":\"sk-\\u0061nt-api03-" K_ESC "\",\"accept\":\"text/plain\"}"

/* Distinctive parts of every planted secret: none may be in the file. */
static const char *const secret_tails[] = {
    "Q7xVb2Lm9RtY4pZkW8nC3sD6",
    "Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2",
    "SyD3xK9mQ2vL7pR4tW8nB1cF6h",
    "eyJhbGciOiJIUzI1NiJ9",
    K_HDR,
    K_ESC,
};

static void assert_no_secret_in(const char *path)
{
    size_t len;
    uint8_t *buf = read_file(path, &len);

    if (!buf)
        return;
    for (size_t i = 0; i < sizeof(secret_tails) / sizeof(secret_tails[0]); i++) {
        if (memmem(buf, len, secret_tails[i], strlen(secret_tails[i])))
            fail_msg("%s holds secret %s", path, secret_tails[i]);
    }
    free(buf);
}

static void test_sink_net_secrets_scrubbed(void **state)
{
    struct fixture *f = *state;
    struct telemetry *t = open_ok(f->path);
    struct sink s = telemetry_sink(t);
    struct net_event ev = {
        .time_us = 1,
        .process = SECRETS,
        .method = SECRETS,
        .scheme = SECRETS,
        .host = SECRETS,
        .path = "/a/" K_ANT "/b",
        .query = SECRETS,
        .rule = SECRETS,
        .tls_version = SECRETS,
        .error = "upstream said Bearer " K_TOK,
        .req_headers = HEADERS,
        .resp_headers = HEADERS,
        .req_preview = SECRETS,
        .resp_preview = SECRETS,
    };
    struct dns_event dns = {
        .time_us = 2, .name = SECRETS, .type = SECRETS, .rule = SECRETS, .answer = SECRETS};
    struct net_event plain = sample_net(3, "task-runner-abcdefghijklmnopqrstuvwxyz");
    char wal[160], text[2048];
    sqlite3 *db;

    /* A key with a non-key prefix but without credential shape stays readable. */
    plain.error = "sk-short bearer: Bearer";
    sink_net(&s, &ev);
    sink_dns(&s, &dns);
    sink_net(&s, &plain);
    assert_int_equal(telemetry_flush(t), 0);

    /* While running: neither the database nor its WAL holds any of them. */
    snprintf(wal, sizeof(wal), "%s-wal", f->path);
    assert_true(exists(wal));
    assert_no_secret_in(f->path);
    assert_no_secret_in(wal);

    db = db_open(f->path);
    db_text(db, "SELECT path FROM net_events WHERE time_us = 1", text, sizeof(text));
    assert_string_equal(text, "/a/[redacted]/b");
    db_text(db, "SELECT error FROM net_events WHERE time_us = 1", text, sizeof(text));
    assert_string_equal(text, "upstream said Bearer [redacted]");
    db_text(db, "SELECT host FROM net_events WHERE time_us = 1", text, sizeof(text));
    assert_string_equal(text, " a [redacted] b [redacted] c [redacted] d Bearer [redacted] e ");
    db_text(db, "SELECT answer FROM dns_events", text, sizeof(text));
    assert_string_equal(text, " a [redacted] b [redacted] c [redacted] d Bearer [redacted] e ");
    db_text(db, "SELECT req_headers FROM net_events WHERE time_us = 1", text, sizeof(text));
    assert_non_null(strstr(text, "\"authorization\":\"[redacted]\""));
    assert_non_null(strstr(text, "\"X-Api-Key\":\"[redacted]\""));
    assert_non_null(strstr(text, "\"x-goog-api-key\":\"[redacted]\""));
    assert_non_null(strstr(text, "\"x-note\":\"[redacted]\""));
    assert_non_null(strstr(text, "\"accept\":\"text/plain\""));
    db_text(db, "SELECT process || '|' || error FROM net_events WHERE pid = 3", text, sizeof(text));
    assert_string_equal(text, "task-runner-abcdefghijklmnopqrstuvwxyz|sk-short bearer: Bearer");
    sqlite3_close(db);

    telemetry_close(t);
    assert_no_secret_in(f->path);
    assert_no_secret_in(wal);
}

/* ---- NULLs --------------------------------------------------------------- */

static void test_sink_net_null_strings_stored_as_null(void **state)
{
    struct fixture *f = *state;
    struct telemetry *t = open_ok(f->path);
    struct sink s = telemetry_sink(t);
    struct net_event ev = {.time_us = 5, .port = 80, .ttfb_us = -1, .decision = DECISION_LOG};
    struct net_event empty = {.time_us = 6, .process = "", .req_headers = ""};
    struct dns_event dns = {.time_us = 7, .decision = DECISION_BLOCK};
    sqlite3 *db;

    sink_net(&s, &ev);
    sink_net(&s, &empty);
    sink_dns(&s, &dns);
    /* No event at all: ignored. */
    sink_net(&s, NULL);
    sink_dns(&s, NULL);
    telemetry_close(t);

    db = db_open(f->path);
    assert_int_equal(db_int(db, "SELECT count(*) FROM net_events WHERE time_us = 5 AND "
                                "process IS NULL AND method IS NULL AND scheme IS NULL AND "
                                "host IS NULL AND path IS NULL AND query IS NULL AND "
                                "rule IS NULL AND tls_version IS NULL AND error IS NULL AND "
                                "req_headers IS NULL AND resp_headers IS NULL AND "
                                "req_preview IS NULL AND resp_preview IS NULL AND "
                                "port = 80 AND ttfb_us = -1 AND decision = 2 AND status = 0"),
                     1);
    assert_int_equal(db_int(db, "SELECT count(*) FROM net_events WHERE time_us = 6 AND "
                                "process = '' AND req_headers = '' AND method IS NULL"),
                     1);
    assert_int_equal(db_int(db, "SELECT count(*) FROM net_events"), 2);
    assert_int_equal(db_int(db, "SELECT count(*) FROM dns_events"), 1);
    assert_int_equal(db_int(db, "SELECT count(*) FROM dns_events WHERE name IS NULL AND "
                                "type IS NULL AND rule IS NULL AND answer IS NULL AND "
                                "decision = 1"),
                     1);
    sqlite3_close(db);
}

static void test_sink_net_fields_round_trip(void **state)
{
    struct fixture *f = *state;
    struct telemetry *t = open_ok(f->path);
    struct sink s = telemetry_sink(t);
    struct net_event ev = sample_net(42, "gemini");
    char text[1024];
    sqlite3 *db;

    ev.port = 65535;
    ev.req_bytes = INT64_MAX;
    ev.decision = DECISION_BLOCK;
    ev.error = "blocked by rule";
    sink_net(&s, &ev);
    telemetry_close(t);

    db = db_open(f->path);
    db_text(db,
            "SELECT printf('%d|%s|%d|%s|%s|%s|%d|%s|%s|%d|%d|%d|%d|%d|%s|%s|%s|%s|%s|%s|%s|%s',"
            " time_us, process, pid, method, scheme, host, port, path, query, status, req_bytes,"
            " resp_bytes, duration_us, ttfb_us, d.name, rule, tls_version, error, req_headers,"
            " resp_headers, req_preview, resp_preview)"
            " FROM net_events JOIN decisions d ON d.id = decision",
            text, sizeof(text));
    assert_string_equal(text, "1700000000000042|gemini|42|POST|https|api.anthropic.com|65535|"
                              "/v1/messages|beta=true|200|9223372036854775807|56789|250000|"
                              "90000|block|allow-anthropic|TLSv1.3|blocked by rule|"
                              "{\"content-type\":\"application/json\"}|"
                              "{\"content-type\":\"text/event-stream\"}|{\"model\":\"claude\"}|"
                              "event: message_start");
    sqlite3_close(db);
}

/* ---- model calls --------------------------------------------------------- */

static struct model_call sample_model(int64_t seq)
{
    struct model_call c = {
        .time_us = 1700000000000000 + seq,
        .process = "claude",
        .pid = 4242,
        .host = "api.anthropic.com",
        .path = "/v1/messages",
        .provider = "anthropic",
        .api = "messages",
        .model_requested = "claude-sonnet-4-5",
        .model_answered = "claude-sonnet-4-5-20250929",
        .response_id = "msg_01XYZ",
        .stream = true,
        .http_status = 200,
        .status = "ok",
        .stop_reason = "tool_use",
        .input_tokens = 1200,
        .output_tokens = 345,
        .cache_read_tokens = 5000,
        .cache_write_tokens = 700,
        .reasoning_tokens = 12,
        .message_count = 3,
        .tool_count = 17,
        .system_preview = "You are a coding agent.",
        .ttft_us = 81000,
        .duration_us = 950000,
        .cost_known = true,
        .cost_usd = 0.0125,
        .trace_id = 9,
        .turn = 2,
    };

    return c;
}

static void test_sink_model_fields_round_trip(void **state)
{
    struct fixture *f = *state;
    struct telemetry *t = open_ok(f->path);
    struct sink s = telemetry_sink(t);
    struct model_call c = sample_model(1);
    /* Strings and arrays in buffers the producer reuses at once: the sink must copy. */
    char name0[32], args0[64], id1[32], prev0[64];
    struct model_tool_call calls[2];
    struct model_tool_result results[2];
    char text[2048];
    sqlite3 *db;

    snprintf(name0, sizeof(name0), "Bash");
    snprintf(args0, sizeof(args0), "{\"command\":\"ls -la\"}");
    snprintf(id1, sizeof(id1), "toolu_02");
    snprintf(prev0, sizeof(prev0), "total 8\ndrwxr-xr-x");
    calls[0] = (struct model_tool_call){.id = "toolu_01", .name = name0, .arguments = args0};
    calls[1] = (struct model_tool_call){.id = id1, .name = "Read", .arguments = NULL};
    results[0] = (struct model_tool_result){.id = "toolu_00", .is_error = false, .preview = prev0};
    results[1] = (struct model_tool_result){.id = "toolu_0e", .is_error = true, .preview = NULL};
    c.tool_calls = calls;
    c.n_tool_calls = 2;
    c.tool_results = results;
    c.n_tool_results = 2;
    c.parse_error = true;
    c.truncated = true;
    c.error_type = "overloaded_error";
    c.error_message = "Overloaded";
    sink_model(&s, &c);
    memset(name0, 'x', sizeof(name0) - 1);
    memset(args0, 'x', sizeof(args0) - 1);
    memset(id1, 'x', sizeof(id1) - 1);
    memset(prev0, 'x', sizeof(prev0) - 1);
    memset(calls, 0, sizeof(calls));
    memset(results, 0, sizeof(results));
    memset(&c, 0, sizeof(c));
    telemetry_close(t);

    db = db_open(f->path);
    assert_int_equal(db_int(db, "SELECT count(*) FROM model_calls"), 1);
    db_text(db,
            "SELECT printf('%d|%s|%d|%s|%s|%s|%s|%s|%s|%s|%d|%d|%s|%s|%s|%s|%d|%d|%d|%d|%d|%d|%d|"
            "%d|%d|%s|%d|%d|%.4f|%d|%d|%d|%d|%d', time_us, process, pid, host, path, provider,"
            " api, model_requested, model_answered, response_id, stream, http_status, status,"
            " error_type, error_message, stop_reason, input_tokens, output_tokens,"
            " cache_read_tokens, cache_write_tokens, reasoning_tokens, message_count, tool_count,"
            " tool_call_count, tool_result_count, system_preview, ttft_us, duration_us, cost_usd,"
            " cost_known, trace_id, turn, parse_error, truncated) FROM model_calls",
            text, sizeof(text));
    assert_string_equal(text, "1700000000000001|claude|4242|api.anthropic.com|/v1/messages|"
                              "anthropic|messages|claude-sonnet-4-5|claude-sonnet-4-5-20250929|"
                              "msg_01XYZ|1|200|ok|overloaded_error|Overloaded|tool_use|1200|345|"
                              "5000|700|12|3|17|2|2|You are a coding agent.|81000|950000|0.0125|"
                              "1|9|2|1|1");
    db_text(db,
            "SELECT group_concat(printf('%d:%s:%s:%s', idx, call_id, name,"
            " coalesce(arguments, '<NULL>')), ';') FROM (SELECT * FROM tool_calls"
            " WHERE model_call_id = (SELECT id FROM model_calls) ORDER BY id)",
            text, sizeof(text));
    assert_string_equal(text, "0:toolu_01:Bash:{\"command\":\"ls -la\"};1:toolu_02:Read:<NULL>");
    db_text(db,
            "SELECT group_concat(printf('%d:%s:%d:%s', idx, call_id, is_error,"
            " coalesce(preview, '<NULL>')), ';') FROM (SELECT * FROM tool_results"
            " WHERE model_call_id = (SELECT id FROM model_calls) ORDER BY id)",
            text, sizeof(text));
    assert_string_equal(text, "0:toolu_00:0:total 8\ndrwxr-xr-x;1:toolu_0e:1:<NULL>");
    sqlite3_close(db);
}

static void test_sink_model_unknown_counts_and_cost_stored_as_null(void **state)
{
    struct fixture *f = *state;
    struct telemetry *t = open_ok(f->path);
    struct sink s = telemetry_sink(t);
    struct model_call c = {
        .time_us = 77,
        .provider = "openai",
        .model_requested = "gpt-unlisted",
        .input_tokens = -1,
        .output_tokens = -1,
        .cache_read_tokens = -1,
        .cache_write_tokens = -1,
        .reasoning_tokens = -1,
        .message_count = -1,
        .tool_count = -1,
        .ttft_us = -1,
        .cost_known = false,
        .cost_usd = 0,
        .trace_id = 0,
        /* A count without its array (bad input): no rows, counted as none. */
        .n_tool_calls = 3,
        .n_tool_results = 5,
    };
    sqlite3 *db;

    sink_model(&s, &c);
    sink_model(&s, NULL); /* ignored */
    telemetry_close(t);

    db = db_open(f->path);
    assert_int_equal(
        db_int(db, "SELECT count(*) FROM model_calls WHERE time_us = 77 AND cost_usd IS NULL AND"
                   " cost_known = 0 AND input_tokens IS NULL AND output_tokens IS NULL AND"
                   " cache_read_tokens IS NULL AND cache_write_tokens IS NULL AND"
                   " reasoning_tokens IS NULL AND message_count IS NULL AND tool_count IS NULL"
                   " AND ttft_us IS NULL AND trace_id IS NULL AND turn IS NULL AND"
                   " process IS NULL AND host IS NULL AND model_answered IS NULL AND"
                   " stream = 0 AND http_status = 0 AND tool_call_count = 0 AND"
                   " tool_result_count = 0"),
        1);
    assert_int_equal(db_int(db, "SELECT count(*) FROM model_calls"), 1);
    assert_int_equal(db_int(db, "SELECT count(*) FROM tool_calls"), 0);
    assert_int_equal(db_int(db, "SELECT count(*) FROM tool_results"), 0);
    assert_int_equal(db_int(db, "SELECT unpriced_calls FROM session_totals"), 1);
    assert_int_equal(db_int(db, "SELECT cost_usd = 0 FROM session_totals"), 1);
    assert_int_equal(db_int(db, "SELECT input_tokens + output_tokens FROM session_totals"), 0);
    sqlite3_close(db);
}

static void test_sink_model_totals_add_up_across_net_and_model(void **state)
{
    struct fixture *f = *state;
    struct telemetry *t = open_ok(f->path);
    struct sink s = telemetry_sink(t);
    int64_t want_in = 0, want_out = 0, want_cr = 0, want_cw = 0, want_last = 0;
    double want_cost = 0;
    int unpriced = 0;
    char sql[512];
    sqlite3 *db;

    /* Several batches (a flush between rounds), events of every kind interleaved. */
    for (int round = 0; round < 5; round++) {
        for (int i = 0; i < 7; i++) {
            int64_t seq = round * 100 + i;
            struct net_event n = sample_net(seq, "claude");
            struct model_call c = sample_model(seq + 50);
            struct dns_event d = {.time_us = 1800000000000000, .name = "x.test"};

            c.input_tokens = 10 * seq + 1;
            c.output_tokens = i % 3 ? 3 * seq : -1;
            c.cache_read_tokens = seq;
            c.cache_write_tokens = i;
            c.cost_known = i != 4;
            c.cost_usd = 0.25 * (double)(i + 1);
            sink_net(&s, &n);
            sink_model(&s, &c);
            sink_dns(&s, &d); /* DNS is no request and no activity for the totals */
            want_in += c.input_tokens;
            want_out += c.output_tokens > 0 ? c.output_tokens : 0;
            want_cr += c.cache_read_tokens;
            want_cw += c.cache_write_tokens;
            if (c.cost_known)
                want_cost += c.cost_usd;
            else
                unpriced++;
            if (c.time_us > want_last)
                want_last = c.time_us;
        }
        assert_int_equal(telemetry_flush(t), 0);
        db = db_open(f->path);
        assert_int_equal(db_int(db, "SELECT requests FROM session_totals"), 7 * (round + 1));
        assert_int_equal(db_int(db, "SELECT model_calls FROM session_totals"), 7 * (round + 1));
        sqlite3_close(db);
    }
    telemetry_close(t);

    db = db_open(f->path);
    assert_int_equal(db_int(db, "SELECT count(*) FROM session_totals"), 1);
    assert_int_equal(db_int(db, "SELECT requests FROM session_totals"), 35);
    assert_int_equal(db_int(db, "SELECT model_calls FROM session_totals"), 35);
    assert_int_equal(db_int(db, "SELECT input_tokens FROM session_totals"), want_in);
    assert_int_equal(db_int(db, "SELECT output_tokens FROM session_totals"), want_out);
    assert_int_equal(db_int(db, "SELECT cache_read_tokens FROM session_totals"), want_cr);
    assert_int_equal(db_int(db, "SELECT cache_write_tokens FROM session_totals"), want_cw);
    assert_int_equal(db_int(db, "SELECT unpriced_calls FROM session_totals"), unpriced);
    assert_int_equal(db_int(db, "SELECT last_time_us FROM session_totals"), want_last);
    snprintf(sql, sizeof(sql), "SELECT abs(cost_usd - %.6f) < 1e-9 FROM session_totals", want_cost);
    assert_int_equal(db_int(db, sql), 1);
    /* And the totals agree with the tables they summarise. */
    assert_int_equal(db_int(db, "SELECT (SELECT count(*) FROM net_events) = requests AND"
                                " (SELECT count(*) FROM model_calls) = model_calls AND"
                                " (SELECT sum(input_tokens) FROM model_calls) = input_tokens AND"
                                " (SELECT coalesce(sum(output_tokens), 0) FROM model_calls) ="
                                " output_tokens AND abs((SELECT sum(cost_usd) FROM model_calls)"
                                " - cost_usd) < 1e-9 FROM session_totals"),
                     1);
    sqlite3_close(db);
}

static void test_sink_model_full_queue_drops_and_counts(void **state)
{
    struct fixture *f = *state;
    struct telemetry *t = open_ok(f->path);
    struct sink s = telemetry_sink(t);
    sqlite3 *locker = db_open(f->path);
    /* The queue holds 16384, the writer's batch waiting for the lock up to 512 more. */
    const int64_t total = 16384 + 512 + 300;
    struct model_tool_call tc = {.id = "toolu_x", .name = "Bash", .arguments = "{\"a\":1}"};
    struct model_tool_result tr = {.id = "toolu_w", .preview = "ok"};
    FILE *logf = tmpfile();
    uint64_t dropped;
    int64_t rows;

    /* Another connection holds the write lock: nothing can be committed, the queue fills. */
    assert_non_null(logf);
    log_set_file(logf);
    assert_int_equal(sqlite3_exec(locker, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    for (int64_t i = 0; i < total; i++) {
        struct model_call c = sample_model(i);

        c.tool_calls = &tc;
        c.n_tool_calls = 1;
        c.tool_results = &tr;
        c.n_tool_results = 1;
        sink_model(&s, &c);
    }
    log_set_file(NULL);
    fclose(logf);
    dropped = telemetry_dropped(t);
    assert_true(dropped >= 300);
    assert_true(dropped < (uint64_t)total);
    assert_int_equal(sqlite3_exec(locker, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(locker);
    assert_int_equal(telemetry_flush(t), 0);
    telemetry_close(t);

    /* What was not dropped landed whole: each call with its tool call and result, counted once. */
    rows = count_rows(f->path, "model_calls");
    assert_int_equal((uint64_t)rows + dropped, (uint64_t)total);
    assert_int_equal(count_rows(f->path, "tool_calls"), rows);
    assert_int_equal(count_rows(f->path, "tool_results"), rows);
    locker = db_open(f->path);
    assert_int_equal(db_int(locker, "SELECT model_calls FROM session_totals"), rows);
    assert_int_equal(db_int(locker, "SELECT input_tokens FROM session_totals"), rows * 1200);
    sqlite3_close(locker);
}

#define ARGS_SECRETS                                                                               \
    "{\"cmd\":\"curl -H 'Authorization: Bearer " K_TOK "' x\",\"api-key\":\"" K_HDR "\","          \
    "\"env\":\"OPENAI_API_KEY=" K_OAI "\",\"note\":\"sk-\\u0061nt-api03-" K_ESC "\"}"

static void test_sink_model_secrets_scrubbed(void **state)
{
    struct fixture *f = *state;
    struct telemetry *t = open_ok(f->path);
    struct sink s = telemetry_sink(t);
    struct model_call c = sample_model(3);
    struct model_tool_call calls[] = {
        {.id = "call_" K_GOO, .name = SECRETS, .arguments = ARGS_SECRETS},
        {.id = "call_2", .name = "shell", .arguments = "not json: x-api-key " K_ANT},
    };
    struct model_tool_result results[] = {
        {.id = "call_0", .preview = "export ANTHROPIC_API_KEY=" K_ANT},
    };
    char wal[160], text[2048];
    sqlite3 *db;

    c.system_preview = "key: " K_OAI;
    c.error_message = "invalid x-api-key " K_ANT;
    c.response_id = SECRETS;
    c.tool_calls = calls;
    c.n_tool_calls = 2;
    c.tool_results = results;
    c.n_tool_results = 1;
    sink_model(&s, &c);
    assert_int_equal(telemetry_flush(t), 0);
    snprintf(wal, sizeof(wal), "%s-wal", f->path);
    assert_no_secret_in(f->path);
    assert_no_secret_in(wal);

    db = db_open(f->path);
    db_text(db, "SELECT arguments FROM tool_calls WHERE idx = 0", text, sizeof(text));
    assert_non_null(strstr(text, "\"api-key\":\"[redacted]\""));
    assert_non_null(strstr(text, "Bearer [redacted]"));
    assert_non_null(strstr(text, "OPENAI_API_KEY=[redacted]"));
    db_text(db, "SELECT arguments FROM tool_calls WHERE idx = 1", text, sizeof(text));
    assert_string_equal(text, "not json: x-api-key [redacted]");
    db_text(db, "SELECT name FROM tool_calls WHERE idx = 0", text, sizeof(text));
    assert_string_equal(text, " a [redacted] b [redacted] c [redacted] d Bearer [redacted] e ");
    db_text(db, "SELECT preview FROM tool_results", text, sizeof(text));
    assert_string_equal(text, "export ANTHROPIC_API_KEY=[redacted]");
    db_text(db, "SELECT system_preview || '|' || error_message FROM model_calls", text,
            sizeof(text));
    assert_string_equal(text, "key: [redacted]|invalid x-api-key [redacted]");
    sqlite3_close(db);
    telemetry_close(t);
    assert_no_secret_in(f->path);
    assert_no_secret_in(wal);
}

static void test_telemetry_open_migrates_0001_keeping_rows(void **state)
{
    struct fixture *f = *state;
    struct telemetry *t;
    struct sink s;
    struct model_call c = sample_model(9);
    char sql[256];
    sqlite3 *db;

    /* A database as a capsem with only 0001 left it, holding three requests and a lookup. */
    assert_true(telemetry_migration_count >= 2);
    assert_int_equal(telemetry_migrations[0].version, 1);
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, telemetry_migrations[0].sql, NULL, NULL, NULL), SQLITE_OK);
    snprintf(sql, sizeof(sql), "PRAGMA application_id = %d; PRAGMA user_version = 1", 0x43707353);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(
        sqlite3_exec(db,
                     "INSERT INTO net_events (time_us, pid, port, status, req_bytes, resp_bytes,"
                     " duration_us, ttfb_us, decision, host) VALUES"
                     " (100, 1, 443, 200, 0, 0, 0, -1, 0, 'a.test'),"
                     " (300, 2, 443, 200, 0, 0, 0, -1, 0, 'b.test'),"
                     " (200, 3, 443, 403, 0, 0, 0, -1, 1, 'c.test');"
                     "INSERT INTO dns_events (time_us, name, decision) VALUES (50, 'a.test', 0)",
                     NULL, NULL, NULL),
        SQLITE_OK);
    sqlite3_close(db);

    t = open_ok(f->path);
    db = db_open(f->path);
    assert_int_equal(db_int(db, "PRAGMA user_version"), latest_version());
    assert_int_equal(db_int(db, "SELECT count(*) FROM net_events"), 3);
    assert_int_equal(db_int(db, "SELECT count(*) FROM dns_events"), 1);
    db_text(db, "SELECT group_concat(host) FROM (SELECT host FROM net_events ORDER BY id)", sql,
            sizeof(sql));
    assert_string_equal(sql, "a.test,b.test,c.test");
    /* The totals start from what was there. */
    assert_int_equal(db_int(db, "SELECT requests FROM session_totals"), 3);
    assert_int_equal(db_int(db, "SELECT model_calls FROM session_totals"), 0);
    assert_int_equal(db_int(db, "SELECT last_time_us FROM session_totals"), 300);
    assert_int_equal(db_int(db, "SELECT count(*) FROM model_calls"), 0);
    sqlite3_close(db);

    s = telemetry_sink(t);
    sink_model(&s, &c);
    telemetry_close(t);
    db = db_open(f->path);
    assert_int_equal(db_int(db, "SELECT count(*) FROM model_calls"), 1);
    assert_int_equal(db_int(db, "SELECT requests FROM session_totals"), 3);
    assert_int_equal(db_int(db, "SELECT model_calls FROM session_totals"), 1);
    assert_int_equal(db_int(db, "SELECT input_tokens FROM session_totals"), 1200);
    assert_int_equal(db_int(db, "SELECT last_time_us FROM session_totals"), c.time_us);
    sqlite3_close(db);
}

static void test_telemetry_open_fresh_totals_empty(void **state)
{
    struct fixture *f = *state;
    struct telemetry *t = open_ok(f->path);
    sqlite3 *db;

    telemetry_close(t);
    db = db_open(f->path);
    assert_int_equal(db_int(db, "SELECT count(*) FROM session_totals WHERE id = 1 AND"
                                " requests = 0 AND model_calls = 0 AND cost_usd = 0 AND"
                                " last_time_us IS NULL"),
                     1);
    assert_int_equal(db_int(db, "SELECT count(*) FROM sqlite_schema WHERE name IN"
                                " ('model_calls','tool_calls','tool_results','session_totals',"
                                "'model_calls_time','model_calls_model','model_calls_trace',"
                                "'tool_calls_model_call','tool_calls_call_id',"
                                "'tool_results_model_call','tool_results_call_id')"),
                     11);
    sqlite3_close(db);
}

static void test_telemetry_sink_null_safe(void **state)
{
    struct sink s = telemetry_sink(NULL);
    struct net_event ev = sample_net(1, "x");

    (void)state;
    assert_null(s.ops);
    sink_net(&s, &ev);
    assert_int_equal(telemetry_flush(NULL), -EINVAL);
    assert_int_equal(telemetry_dropped(NULL), 0);
    telemetry_close(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_telemetry_open_creates_and_migrates, setup, teardown),
        cmocka_unit_test_setup_teardown(test_telemetry_open_empty_file_is_fresh, setup, teardown),
        cmocka_unit_test_setup_teardown(test_telemetry_open_bad_path, setup, teardown),
        cmocka_unit_test_setup_teardown(test_telemetry_open_newer_schema_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_telemetry_open_garbage_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_telemetry_open_foreign_sqlite_refused, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_sink_net_threads_all_land, setup, teardown),
        cmocka_unit_test_setup_teardown(test_telemetry_flush_waits_for_queued, setup, teardown),
        cmocka_unit_test_setup_teardown(test_telemetry_close_flushes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sink_net_full_queue_drops_without_blocking, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_telemetry_kill9_leaves_consistent_db, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sink_net_secrets_scrubbed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sink_net_null_strings_stored_as_null, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sink_net_fields_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sink_model_fields_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sink_model_unknown_counts_and_cost_stored_as_null,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_sink_model_totals_add_up_across_net_and_model, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_sink_model_full_queue_drops_and_counts, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_sink_model_secrets_scrubbed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_telemetry_open_migrates_0001_keeping_rows, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_telemetry_open_fresh_totals_empty, setup, teardown),
        cmocka_unit_test(test_telemetry_sink_null_safe),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
