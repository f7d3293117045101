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
 *   NULL strings                                  -> SQL NULL ("" stays "").
 * A writer killed with SIGKILL mid-run leaves a database that opens, passes
 * integrity_check and holds a gap-free prefix of what was queued.
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

/* The child: write numbered events for ever, reporting each flushed count. */
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
        cmocka_unit_test(test_telemetry_sink_null_safe),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
