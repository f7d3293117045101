/*
 * The session database writer. telemetry_open() creates or migrates one
 * SQLite file (WAL, synchronous=NORMAL) from the embedded
 * schemas/telemetry/NNNN_*.sql and starts one writer thread. Producers (the
 * proxy, the DNS service, the model parsers, later the MCP gateway) call the
 * sink from any thread: the event, its tool-call arrays and its strings are
 * copied into one allocation and appended to a bounded queue; a full queue
 * drops the event and counts it, so a producer never waits for the disk. The
 * writer takes up to BATCH_MAX events, or what arrived within ~50 ms, and
 * commits them in one transaction through prepared statements; the same
 * transaction keeps the one-row session_totals current (requests, model
 * calls, tokens, cost, last activity), and a model call lands with its tool
 * calls and results or not at all (a savepoint). Before binding, every string
 * is scrubbed of text shaped like an API key or a bearer token, and header
 * JSON (and tool-call arguments) loses the values of credential headers:
 * producers redact first, this is the second line of defence.
 */
#include "telemetry.h"

#include "log.h"
#include "telemetry_sql.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdarg.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

/* Events the queue holds before dropping; 10k events from a burst fit. */
#define QUEUE_MAX 16384
/* Bytes the queued events (struct + strings) may hold before dropping. */
#define QUEUE_BYTES_MAX ((size_t)64 << 20)
/* Events per transaction at most. */
#define BATCH_MAX 512
/* How long the writer lets a batch grow once it has one event. */
#define BATCH_WAIT_NS (50L * 1000 * 1000)
/* How long one SQLite call waits for another connection's lock. */
#define BUSY_TIMEOUT_MS 5000
/* Lock waits (of BUSY_TIMEOUT_MS each) a closing writer makes before giving up. */
#define CLOSE_BUSY_TRIES 3
/* PRAGMA application_id of a capsem session database: "CpsS". */
#define TELEMETRY_APP_ID 0x43707353
#define REDACTED "[redacted]"

enum qkind { Q_NET, Q_DNS, Q_MODEL };

/* One queued event: the event with its strings copied behind it, one allocation. */
struct qevent {
    enum qkind kind;
    size_t bytes; /* what it counts against QUEUE_BYTES_MAX */
    union {
        struct net_event net;
        struct dns_event dns;
        struct model_call model;
    } u;
    char strings[];
};

struct telemetry {
    sqlite3 *db;           /* used by telemetry_open, then only by the writer */
    sqlite3_stmt *ins_net; /* likewise */
    sqlite3_stmt *ins_dns;
    sqlite3_stmt *ins_model;
    sqlite3_stmt *ins_tool_call;
    sqlite3_stmt *ins_tool_result;
    sqlite3_stmt *upd_totals;
    pthread_t writer;
    bool writer_started;

    /*
     * Dropping is lock-free, so that a producer facing a full queue neither
     * copies nor waits for the lock: atomics only.
     */
    uint64_t dropped;
    int64_t drop_logged_ns; /* when a drop was last logged */

    /* mu guards every field below; `count` is also read without it (atomically). */
    pthread_mutex_t mu;
    pthread_cond_t wake; /* writer: work, a flush, or stop */
    pthread_cond_t done; /* flushers: `written` moved */
    struct qevent **ring;
    size_t head, count, bytes;
    uint64_t queued;     /* events accepted so far */
    uint64_t written;    /* events the writer finished with (stored or lost to an error) */
    uint64_t flush_want; /* largest `queued` a flusher waits for */
    uint64_t lost;       /* events a write error lost */
    int werr;            /* first write error, 0 when none */
    bool stop;
};

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (!err || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* ---- Secret scrubbing ---------------------------------------------------- */

static bool is_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static bool is_key_char(char c)
{
    return is_alnum(c) || c == '-' || c == '_';
}

/* RFC 6750 b64token characters. */
static bool is_token_char(char c)
{
    return is_key_char(c) || c == '.' || c == '~' || c == '+' || c == '/' || c == '=';
}

static size_t run_len(const char *s, size_t len, size_t i, bool (*cls)(char))
{
    size_t n = 0;

    while (i + n < len && cls(s[i + n]))
        n++;
    return n;
}

static bool starts_with(const char *s, size_t len, size_t i, const char *lit)
{
    size_t n = strlen(lit);

    return len - i >= n && memcmp(s + i, lit, n) == 0;
}

/*
 * Is there a secret at s[i]? Returns its length (0 when none) and, in *keep,
 * how many leading bytes of it stay (the "Bearer " of a bearer token).
 * Shapes: sk-ant-… (Anthropic), sk-… with 20+ key characters after a word
 * boundary (OpenAI), AIza… with 30+ (Google), and "Bearer <token>".
 */
static size_t secret_at(const char *s, size_t len, size_t i, size_t *keep)
{
    size_t n;

    *keep = 0;
    switch (s[i]) {
    case 's':
        if (starts_with(s, len, i, "sk-ant-")) {
            n = run_len(s, len, i + 7, is_key_char);
            if (n >= 8)
                return 7 + n;
        }
        if (starts_with(s, len, i, "sk-") && (i == 0 || !is_alnum(s[i - 1]))) {
            n = run_len(s, len, i + 3, is_key_char);
            if (n >= 20)
                return 3 + n;
        }
        return 0;
    case 'A':
        if (starts_with(s, len, i, "AIza")) {
            n = run_len(s, len, i + 4, is_key_char);
            if (n >= 30)
                return 4 + n;
        }
        return 0;
    case 'B':
    case 'b': {
        size_t sp = 0;

        if (len - i < 6 || strncasecmp(s + i, "bearer", 6) != 0 || (i > 0 && is_alnum(s[i - 1])))
            return 0;
        while (i + 6 + sp < len && (s[i + 6 + sp] == ' ' || s[i + 6 + sp] == '\t'))
            sp++;
        if (sp == 0)
            return 0;
        n = run_len(s, len, i + 6 + sp, is_token_char);
        if (n == 0)
            return 0;
        *keep = 6 + sp;
        return 6 + sp + n;
    }
    default:
        return 0;
    }
}

/*
 * Copy of `s` with every secret replaced by "[redacted]" in *out (malloc'd),
 * or *out = NULL when there is nothing to replace. 0 or -ENOMEM.
 */
static int scrub_text(const char *s, char **out)
{
    size_t len = strlen(s), outlen = len, i, keep, n;
    bool found = false;
    char *o, *p;

    *out = NULL;
    /* Every secret starts with one of these letters: jump between them. */
    for (const char *c = strpbrk(s, "sABb"); c; c = strpbrk(c, "sABb")) {
        n = secret_at(s, len, (size_t)(c - s), &keep);
        if (n) {
            found = true;
            outlen = outlen - (n - keep) + strlen(REDACTED);
            c += n;
        } else {
            c++;
        }
    }
    if (!found)
        return 0;
    o = malloc(outlen + 1);
    if (!o)
        return -ENOMEM;
    p = o;
    for (i = 0; i < len;) {
        n = secret_at(s, len, i, &keep);
        if (n) {
            memcpy(p, s + i, keep);
            p += keep;
            memcpy(p, REDACTED, strlen(REDACTED));
            p += strlen(REDACTED);
            i += n;
        } else {
            *p++ = s[i++];
        }
    }
    *p = '\0';
    *out = o;
    return 0;
}

static bool is_credential_header(const char *name)
{
    static const char *const names[] = {
        "authorization", "proxy-authorization", "x-api-key", "x-goog-api-key", "api-key",
        "cookie",        "set-cookie",
    };

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strcasecmp(name, names[i]) == 0)
            return true;
    return false;
}

/*
 * Header JSON: when it is an object, credential headers lose their values and
 * the text is re-encoded (which also undoes \u escapes that could hide a key
 * from the text scrub); then the text scrub runs. *out as for scrub_text().
 */
static int scrub_headers(const char *s, char **out)
{
    json_t *obj, *val;
    const char *key;
    char *dumped = NULL, *scrubbed = NULL;
    bool changed = false;
    int rc = 0;

    *out = NULL;
    /* Parsing is only needed for credential headers and escapes; most text has neither. */
    if (!strstr(s, "\\u") && !strcasestr(s, "authorization") && !strcasestr(s, "api-key") &&
        !strcasestr(s, "cookie"))
        return scrub_text(s, out);
    obj = json_loads(s, JSON_DECODE_ANY, NULL);
    if (!json_is_object(obj)) {
        json_decref(obj);
        return scrub_text(s, out);
    }
    json_object_foreach(obj, key, val)
    {
        if (is_credential_header(key) &&
            !(json_is_string(val) && strcmp(json_string_value(val), REDACTED) == 0)) {
            if (json_object_set_new(obj, key, json_string(REDACTED)) != 0) {
                rc = -ENOMEM;
                goto out;
            }
            changed = true;
        }
    }
    if (changed || strstr(s, "\\u")) {
        dumped = json_dumps(obj, JSON_COMPACT);
        if (!dumped) {
            rc = -ENOMEM;
            goto out;
        }
    }
    rc = scrub_text(dumped ? dumped : s, &scrubbed);
    if (rc)
        goto out;
    if (scrubbed) {
        *out = scrubbed;
        scrubbed = NULL;
    } else if (dumped) {
        *out = dumped;
        dumped = NULL;
    }
out:
    free(dumped);
    free(scrubbed);
    json_decref(obj);
    return rc;
}

/* Bind `s` (NULL binds NULL) at `idx`, scrubbed; `headers` selects the JSON pass. */
static int bind_str(sqlite3_stmt *st, int idx, const char *s, bool headers)
{
    char *clean = NULL;
    int rc;

    if (!s)
        return sqlite3_bind_null(st, idx) == SQLITE_OK ? 0 : -EIO;
    rc = headers ? scrub_headers(s, &clean) : scrub_text(s, &clean);
    if (rc)
        return rc;
    if (clean) {
        rc = sqlite3_bind_text(st, idx, clean, -1, SQLITE_TRANSIENT);
        free(clean);
    } else {
        rc = sqlite3_bind_text(st, idx, s, -1, SQLITE_STATIC);
    }
    return rc == SQLITE_OK ? 0 : -EIO;
}

/* ---- The writer ---------------------------------------------------------- */

static const char INSERT_NET[] =
    "INSERT INTO net_events (time_us, process, pid, method, scheme, host, port, path, query,"
    " status, req_bytes, resp_bytes, duration_us, ttfb_us, decision, rule, tls_version, error,"
    " req_headers, resp_headers, req_preview, resp_preview)"
    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18,"
    " ?19, ?20, ?21, ?22)";
static const char INSERT_DNS[] = "INSERT INTO dns_events (time_us, name, type, decision, rule,"
                                 " answer) VALUES (?1, ?2, ?3, ?4, ?5, ?6)";

static const char INSERT_MODEL[] =
    "INSERT INTO model_calls (time_us, process, pid, host, path, provider, api, model_requested,"
    " model_answered, response_id, stream, http_status, status, error_type, error_message,"
    " stop_reason, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens,"
    " reasoning_tokens, message_count, tool_count, tool_call_count, tool_result_count,"
    " system_preview, ttft_us, duration_us, cost_usd, cost_known, trace_id, turn, parse_error,"
    " truncated)"
    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18,"
    " ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28, ?29, ?30, ?31, ?32, ?33, ?34)";
static const char INSERT_TOOL_CALL[] = "INSERT INTO tool_calls (model_call_id, idx, call_id, name,"
                                       " arguments) VALUES (?1, ?2, ?3, ?4, ?5)";
static const char INSERT_TOOL_RESULT[] = "INSERT INTO tool_results (model_call_id, idx, call_id,"
                                         " is_error, preview) VALUES (?1, ?2, ?3, ?4, ?5)";
static const char UPDATE_TOTALS[] =
    "UPDATE session_totals SET requests = requests + ?1, model_calls = model_calls + ?2,"
    " input_tokens = input_tokens + ?3, output_tokens = output_tokens + ?4,"
    " cache_read_tokens = cache_read_tokens + ?5, cache_write_tokens = cache_write_tokens + ?6,"
    " cost_usd = cost_usd + ?7, unpriced_calls = unpriced_calls + ?8,"
    " last_time_us = max(coalesce(last_time_us, ?9), ?9) WHERE id = 1";

/* What one batch adds to session_totals. */
struct totals {
    int64_t requests, model_calls, input, output, cache_read, cache_write, unpriced;
    double cost;
    int64_t last_time_us;
    bool any;
};

static int64_t known(int64_t v)
{
    return v > 0 ? v : 0;
}

static void totals_add(struct totals *tt, const struct qevent *e)
{
    int64_t time_us;

    if (e->kind == Q_NET) {
        tt->requests++;
        time_us = e->u.net.time_us;
    } else if (e->kind == Q_MODEL) {
        const struct model_call *m = &e->u.model;

        tt->model_calls++;
        tt->input += known(m->input_tokens);
        tt->output += known(m->output_tokens);
        tt->cache_read += known(m->cache_read_tokens);
        tt->cache_write += known(m->cache_write_tokens);
        if (m->cost_known)
            tt->cost += m->cost_usd;
        else
            tt->unpriced++;
        time_us = m->time_us;
    } else {
        return;
    }
    if (!tt->any || time_us > tt->last_time_us)
        tt->last_time_us = time_us;
    tt->any = true;
}

/* A count the provider may not have reported (negative): NULL then. */
static int bind_count(sqlite3_stmt *st, int idx, int64_t v)
{
    int rc = v < 0 ? sqlite3_bind_null(st, idx) : sqlite3_bind_int64(st, idx, v);

    return rc == SQLITE_OK ? 0 : -EIO;
}

static int bind_model(sqlite3_stmt *st, const struct model_call *e)
{
    int rc;

    if (sqlite3_bind_int64(st, 1, e->time_us) || sqlite3_bind_int64(st, 3, e->pid) ||
        sqlite3_bind_int(st, 11, e->stream ? 1 : 0) || sqlite3_bind_int(st, 12, e->http_status) ||
        sqlite3_bind_int64(st, 24, (int64_t)e->n_tool_calls) ||
        sqlite3_bind_int64(st, 25, (int64_t)e->n_tool_results) ||
        sqlite3_bind_int64(st, 28, e->duration_us) ||
        (e->cost_known ? sqlite3_bind_double(st, 29, e->cost_usd) : sqlite3_bind_null(st, 29)) ||
        sqlite3_bind_int(st, 30, e->cost_known ? 1 : 0) ||
        (e->trace_id ? sqlite3_bind_int64(st, 31, e->trace_id) : sqlite3_bind_null(st, 31)) ||
        (e->trace_id ? sqlite3_bind_int(st, 32, e->turn) : sqlite3_bind_null(st, 32)) ||
        sqlite3_bind_int(st, 33, e->parse_error ? 1 : 0) ||
        sqlite3_bind_int(st, 34, e->truncated ? 1 : 0))
        return -EIO;
    if ((rc = bind_count(st, 17, e->input_tokens)) || (rc = bind_count(st, 18, e->output_tokens)) ||
        (rc = bind_count(st, 19, e->cache_read_tokens)) ||
        (rc = bind_count(st, 20, e->cache_write_tokens)) ||
        (rc = bind_count(st, 21, e->reasoning_tokens)) ||
        (rc = bind_count(st, 22, e->message_count)) || (rc = bind_count(st, 23, e->tool_count)) ||
        (rc = bind_count(st, 27, e->ttft_us)))
        return rc;
    if ((rc = bind_str(st, 2, e->process, false)) || (rc = bind_str(st, 4, e->host, false)) ||
        (rc = bind_str(st, 5, e->path, false)) || (rc = bind_str(st, 6, e->provider, false)) ||
        (rc = bind_str(st, 7, e->api, false)) ||
        (rc = bind_str(st, 8, e->model_requested, false)) ||
        (rc = bind_str(st, 9, e->model_answered, false)) ||
        (rc = bind_str(st, 10, e->response_id, false)) ||
        (rc = bind_str(st, 13, e->status, false)) ||
        (rc = bind_str(st, 14, e->error_type, false)) ||
        (rc = bind_str(st, 15, e->error_message, false)) ||
        (rc = bind_str(st, 16, e->stop_reason, false)) ||
        (rc = bind_str(st, 26, e->system_preview, false)))
        return rc;
    return 0;
}

/* Run a prepared statement once and reset it. 0 or -EIO. */
static int step_reset(sqlite3_stmt *st)
{
    int rc = sqlite3_step(st) == SQLITE_DONE ? 0 : -EIO;

    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc;
}

static void unbind(sqlite3_stmt *st)
{
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
}

/* The model call row, then its tool calls and results (inside the caller's savepoint). */
static int insert_model(struct telemetry *t, const struct model_call *m)
{
    sqlite3_int64 row;
    int rc = bind_model(t->ins_model, m);

    if (rc) {
        unbind(t->ins_model);
        return rc;
    }
    rc = step_reset(t->ins_model);
    if (rc)
        return rc;
    row = sqlite3_last_insert_rowid(t->db);
    for (size_t i = 0; i < m->n_tool_calls; i++) {
        const struct model_tool_call *c = &m->tool_calls[i];
        sqlite3_stmt *st = t->ins_tool_call;

        if (sqlite3_bind_int64(st, 1, row) || sqlite3_bind_int64(st, 2, (int64_t)i))
            rc = -EIO;
        if (!rc && !(rc = bind_str(st, 3, c->id, false)) && !(rc = bind_str(st, 4, c->name, false)))
            rc = bind_str(st, 5, c->arguments, true);
        if (rc) {
            unbind(st);
            return rc;
        }
        if ((rc = step_reset(st)))
            return rc;
    }
    for (size_t i = 0; i < m->n_tool_results; i++) {
        const struct model_tool_result *r = &m->tool_results[i];
        sqlite3_stmt *st = t->ins_tool_result;

        if (sqlite3_bind_int64(st, 1, row) || sqlite3_bind_int64(st, 2, (int64_t)i) ||
            sqlite3_bind_int(st, 4, r->is_error ? 1 : 0))
            rc = -EIO;
        if (!rc && !(rc = bind_str(st, 3, r->id, false)))
            rc = bind_str(st, 5, r->preview, false);
        if (rc) {
            unbind(st);
            return rc;
        }
        if ((rc = step_reset(st)))
            return rc;
    }
    return 0;
}

static int bind_net(sqlite3_stmt *st, const struct net_event *e)
{
    int rc = 0;

    if (sqlite3_bind_int64(st, 1, e->time_us) || sqlite3_bind_int64(st, 3, e->pid) ||
        sqlite3_bind_int(st, 7, e->port) || sqlite3_bind_int(st, 10, e->status) ||
        sqlite3_bind_int64(st, 11, e->req_bytes) || sqlite3_bind_int64(st, 12, e->resp_bytes) ||
        sqlite3_bind_int64(st, 13, e->duration_us) || sqlite3_bind_int64(st, 14, e->ttfb_us) ||
        sqlite3_bind_int(st, 15, (int)e->decision))
        return -EIO;
    if ((rc = bind_str(st, 2, e->process, false)) || (rc = bind_str(st, 4, e->method, false)) ||
        (rc = bind_str(st, 5, e->scheme, false)) || (rc = bind_str(st, 6, e->host, false)) ||
        (rc = bind_str(st, 8, e->path, false)) || (rc = bind_str(st, 9, e->query, false)) ||
        (rc = bind_str(st, 16, e->rule, false)) || (rc = bind_str(st, 17, e->tls_version, false)) ||
        (rc = bind_str(st, 18, e->error, false)) || (rc = bind_str(st, 19, e->req_headers, true)) ||
        (rc = bind_str(st, 20, e->resp_headers, true)) ||
        (rc = bind_str(st, 21, e->req_preview, false)) ||
        (rc = bind_str(st, 22, e->resp_preview, false)))
        return rc;
    return 0;
}

static int bind_dns(sqlite3_stmt *st, const struct dns_event *e)
{
    int rc;

    if (sqlite3_bind_int64(st, 1, e->time_us) || sqlite3_bind_int(st, 4, (int)e->decision))
        return -EIO;
    if ((rc = bind_str(st, 2, e->name, false)) || (rc = bind_str(st, 3, e->type, false)) ||
        (rc = bind_str(st, 5, e->rule, false)) || (rc = bind_str(st, 6, e->answer, false)))
        return rc;
    return 0;
}

/* Insert one event inside the open transaction, all of it or nothing. 0 or -errno. */
static int insert_one(struct telemetry *t, const struct qevent *e)
{
    sqlite3_stmt *st;
    int rc;

    if (e->kind == Q_MODEL) {
        if (sqlite3_exec(t->db, "SAVEPOINT model", NULL, NULL, NULL) != SQLITE_OK) {
            LOG_ERR("telemetry: insert failed: %s", sqlite3_errmsg(t->db));
            return -EIO;
        }
        rc = insert_model(t, &e->u.model);
        if (rc == -EIO)
            LOG_ERR("telemetry: insert failed: %s", sqlite3_errmsg(t->db));
        else if (rc)
            LOG_ERR("telemetry: insert failed: %s", strerror(-rc));
        if (rc)
            sqlite3_exec(t->db, "ROLLBACK TO model", NULL, NULL, NULL);
        if (sqlite3_exec(t->db, "RELEASE model", NULL, NULL, NULL) != SQLITE_OK && !rc)
            rc = -EIO;
        return rc;
    }
    st = e->kind == Q_NET ? t->ins_net : t->ins_dns;
    rc = e->kind == Q_NET ? bind_net(st, &e->u.net) : bind_dns(st, &e->u.dns);
    if (rc == 0 && sqlite3_step(st) != SQLITE_DONE)
        rc = -EIO;
    if (rc == -EIO)
        LOG_ERR("telemetry: insert failed: %s", sqlite3_errmsg(t->db));
    else if (rc)
        LOG_ERR("telemetry: insert failed: %s", strerror(-rc));
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc;
}

static bool stopping(struct telemetry *t)
{
    bool s;

    pthread_mutex_lock(&t->mu);
    s = t->stop;
    pthread_mutex_unlock(&t->mu);
    return s;
}

/*
 * Run `sql` (BEGIN IMMEDIATE or COMMIT), waiting out other connections' locks:
 * for ever while running, CLOSE_BUSY_TRIES times once closing.
 */
static int exec_waiting(struct telemetry *t, const char *sql)
{
    int tries = 0, rc;
    bool warned = false;

    for (;;) {
        rc = sqlite3_exec(t->db, sql, NULL, NULL, NULL);
        if (rc != SQLITE_BUSY && rc != SQLITE_LOCKED)
            break;
        if (!warned) {
            LOG_WARN("telemetry: database locked by another connection, waiting");
            warned = true;
        }
        if (stopping(t) && ++tries >= CLOSE_BUSY_TRIES)
            break;
    }
    if (rc != SQLITE_OK) {
        LOG_ERR("telemetry: %s failed: %s", sql, sqlite3_errmsg(t->db));
        return -EIO;
    }
    return 0;
}

/* Add what the batch stored to session_totals. 0 or -EIO. */
static int update_totals(struct telemetry *t, const struct totals *tt)
{
    sqlite3_stmt *st = t->upd_totals;

    if (!tt->any)
        return 0;
    if (sqlite3_bind_int64(st, 1, tt->requests) || sqlite3_bind_int64(st, 2, tt->model_calls) ||
        sqlite3_bind_int64(st, 3, tt->input) || sqlite3_bind_int64(st, 4, tt->output) ||
        sqlite3_bind_int64(st, 5, tt->cache_read) || sqlite3_bind_int64(st, 6, tt->cache_write) ||
        sqlite3_bind_double(st, 7, tt->cost) || sqlite3_bind_int64(st, 8, tt->unpriced) ||
        sqlite3_bind_int64(st, 9, tt->last_time_us)) {
        unbind(st);
        return -EIO;
    }
    if (step_reset(st) != 0 || sqlite3_changes(t->db) != 1) {
        LOG_ERR("telemetry: session totals not updated: %s", sqlite3_errmsg(t->db));
        return -EIO;
    }
    return 0;
}

/* Store `n` events in one transaction. Returns how many were lost (0 on success). */
static size_t write_batch(struct telemetry *t, struct qevent **batch, size_t n, int *err)
{
    struct totals tt = {0};
    size_t lost = 0;

    if (exec_waiting(t, "BEGIN IMMEDIATE") != 0) {
        *err = -EIO;
        return n;
    }
    for (size_t i = 0; i < n; i++) {
        int rc = insert_one(t, batch[i]);

        if (rc) {
            lost++;
            *err = rc;
        } else {
            totals_add(&tt, batch[i]);
        }
    }
    /* Totals that disagree with the rows are worse than a lost batch. */
    if (update_totals(t, &tt) != 0) {
        sqlite3_exec(t->db, "ROLLBACK", NULL, NULL, NULL);
        *err = -EIO;
        return n;
    }
    if (exec_waiting(t, "COMMIT") != 0) {
        sqlite3_exec(t->db, "ROLLBACK", NULL, NULL, NULL);
        *err = -EIO;
        return n;
    }
    return lost;
}

static void *writer_main(void *arg)
{
    struct telemetry *t = arg;
    struct qevent *batch[BATCH_MAX];

    pthread_mutex_lock(&t->mu);
    for (;;) {
        struct timespec deadline;
        size_t n, lost;
        int err = 0;

        while (t->count == 0 && !t->stop)
            pthread_cond_wait(&t->wake, &t->mu);
        if (t->count == 0)
            break;
        /* Let the batch grow unless it is full, someone flushes or we stop. */
        clock_gettime(CLOCK_MONOTONIC, &deadline);
        deadline.tv_nsec += BATCH_WAIT_NS;
        if (deadline.tv_nsec >= 1000000000L) {
            deadline.tv_sec++;
            deadline.tv_nsec -= 1000000000L;
        }
        while (t->count < BATCH_MAX && !t->stop && t->flush_want <= t->written)
            if (pthread_cond_timedwait(&t->wake, &t->mu, &deadline) == ETIMEDOUT)
                break;
        n = t->count < BATCH_MAX ? t->count : BATCH_MAX;
        for (size_t i = 0; i < n; i++) {
            batch[i] = t->ring[t->head];
            t->ring[t->head] = NULL;
            t->head = (t->head + 1) % QUEUE_MAX;
            t->bytes -= batch[i]->bytes;
        }
        __atomic_store_n(&t->count, t->count - n, __ATOMIC_RELAXED);
        pthread_mutex_unlock(&t->mu);

        lost = write_batch(t, batch, n, &err);
        for (size_t i = 0; i < n; i++)
            free(batch[i]);

        pthread_mutex_lock(&t->mu);
        t->written += n;
        t->lost += lost;
        if (err && !t->werr)
            t->werr = err;
        pthread_cond_broadcast(&t->done);
    }
    pthread_mutex_unlock(&t->mu);
    return NULL;
}

/* ---- Producers ----------------------------------------------------------- */

/* Room for `s` and its NUL (0 for NULL), added to *total with an overflow check. */
static bool add_len(size_t *total, const char *s)
{
    size_t n = s ? strlen(s) + 1 : 0;

    if (*total > SIZE_MAX - n)
        return false;
    *total += n;
    return true;
}

/* Copy `s` to *p, return the copy (NULL for NULL) and advance *p. */
static const char *put_str(char **p, const char *s)
{
    size_t n;
    char *d = *p;

    if (!s)
        return NULL;
    n = strlen(s) + 1;
    memcpy(d, s, n);
    *p += n;
    return d;
}

static struct qevent *copy_net(const struct net_event *ev)
{
    size_t total = 0;
    struct qevent *e;
    struct net_event *n;
    char *p;

    if (!add_len(&total, ev->process) || !add_len(&total, ev->method) ||
        !add_len(&total, ev->scheme) || !add_len(&total, ev->host) || !add_len(&total, ev->path) ||
        !add_len(&total, ev->query) || !add_len(&total, ev->rule) ||
        !add_len(&total, ev->tls_version) || !add_len(&total, ev->error) ||
        !add_len(&total, ev->req_headers) || !add_len(&total, ev->resp_headers) ||
        !add_len(&total, ev->req_preview) || !add_len(&total, ev->resp_preview) ||
        total > SIZE_MAX - sizeof(*e))
        return NULL;
    e = malloc(sizeof(*e) + total);
    if (!e)
        return NULL;
    e->kind = Q_NET;
    e->bytes = sizeof(*e) + total;
    n = &e->u.net;
    *n = *ev;
    p = e->strings;
    n->process = put_str(&p, ev->process);
    n->method = put_str(&p, ev->method);
    n->scheme = put_str(&p, ev->scheme);
    n->host = put_str(&p, ev->host);
    n->path = put_str(&p, ev->path);
    n->query = put_str(&p, ev->query);
    n->rule = put_str(&p, ev->rule);
    n->tls_version = put_str(&p, ev->tls_version);
    n->error = put_str(&p, ev->error);
    n->req_headers = put_str(&p, ev->req_headers);
    n->resp_headers = put_str(&p, ev->resp_headers);
    n->req_preview = put_str(&p, ev->req_preview);
    n->resp_preview = put_str(&p, ev->resp_preview);
    return e;
}

static struct qevent *copy_dns(const struct dns_event *ev)
{
    size_t total = 0;
    struct qevent *e;
    struct dns_event *d;
    char *p;

    if (!add_len(&total, ev->name) || !add_len(&total, ev->type) || !add_len(&total, ev->rule) ||
        !add_len(&total, ev->answer) || total > SIZE_MAX - sizeof(*e))
        return NULL;
    e = malloc(sizeof(*e) + total);
    if (!e)
        return NULL;
    e->kind = Q_DNS;
    e->bytes = sizeof(*e) + total;
    d = &e->u.dns;
    *d = *ev;
    p = e->strings;
    d->name = put_str(&p, ev->name);
    d->type = put_str(&p, ev->type);
    d->rule = put_str(&p, ev->rule);
    d->answer = put_str(&p, ev->answer);
    return e;
}

/* The arrays of a model call sit at the start of strings[], pointer aligned. */
_Static_assert(sizeof(struct model_tool_call) % _Alignof(struct model_tool_result) == 0,
               "tool result array follows the tool call array");
_Static_assert(offsetof(struct qevent, strings) % _Alignof(struct model_tool_call) == 0,
               "tool call array starts the string area");

static struct qevent *copy_model(const struct model_call *ev)
{
    size_t total = 0, calls, results;
    struct model_tool_call *tc;
    struct model_tool_result *tr;
    struct model_call *m;
    struct qevent *e;
    char *p;

    /* Arrays the parser bounds; a count without its array is taken as empty. */
    calls = ev->tool_calls ? ev->n_tool_calls : 0;
    results = ev->tool_results ? ev->n_tool_results : 0;
    if (calls > QUEUE_BYTES_MAX / sizeof(*tc) || results > QUEUE_BYTES_MAX / sizeof(*tr))
        return NULL;
    total = calls * sizeof(*tc) + results * sizeof(*tr);
    if (!add_len(&total, ev->process) || !add_len(&total, ev->host) || !add_len(&total, ev->path) ||
        !add_len(&total, ev->provider) || !add_len(&total, ev->api) ||
        !add_len(&total, ev->model_requested) || !add_len(&total, ev->model_answered) ||
        !add_len(&total, ev->response_id) || !add_len(&total, ev->status) ||
        !add_len(&total, ev->error_type) || !add_len(&total, ev->error_message) ||
        !add_len(&total, ev->stop_reason) || !add_len(&total, ev->system_preview))
        return NULL;
    for (size_t i = 0; i < calls; i++)
        if (!add_len(&total, ev->tool_calls[i].id) || !add_len(&total, ev->tool_calls[i].name) ||
            !add_len(&total, ev->tool_calls[i].arguments))
            return NULL;
    for (size_t i = 0; i < results; i++)
        if (!add_len(&total, ev->tool_results[i].id) ||
            !add_len(&total, ev->tool_results[i].preview))
            return NULL;
    if (total > SIZE_MAX - sizeof(*e))
        return NULL;
    e = malloc(sizeof(*e) + total);
    if (!e)
        return NULL;
    e->kind = Q_MODEL;
    e->bytes = sizeof(*e) + total;
    m = &e->u.model;
    *m = *ev;
    tc = (struct model_tool_call *)(void *)e->strings;
    tr = (struct model_tool_result *)(void *)(e->strings + calls * sizeof(*tc));
    p = e->strings + calls * sizeof(*tc) + results * sizeof(*tr);
    m->process = put_str(&p, ev->process);
    m->host = put_str(&p, ev->host);
    m->path = put_str(&p, ev->path);
    m->provider = put_str(&p, ev->provider);
    m->api = put_str(&p, ev->api);
    m->model_requested = put_str(&p, ev->model_requested);
    m->model_answered = put_str(&p, ev->model_answered);
    m->response_id = put_str(&p, ev->response_id);
    m->status = put_str(&p, ev->status);
    m->error_type = put_str(&p, ev->error_type);
    m->error_message = put_str(&p, ev->error_message);
    m->stop_reason = put_str(&p, ev->stop_reason);
    m->system_preview = put_str(&p, ev->system_preview);
    for (size_t i = 0; i < calls; i++) {
        tc[i].id = put_str(&p, ev->tool_calls[i].id);
        tc[i].name = put_str(&p, ev->tool_calls[i].name);
        tc[i].arguments = put_str(&p, ev->tool_calls[i].arguments);
    }
    for (size_t i = 0; i < results; i++) {
        tr[i].id = put_str(&p, ev->tool_results[i].id);
        tr[i].is_error = ev->tool_results[i].is_error;
        tr[i].preview = put_str(&p, ev->tool_results[i].preview);
    }
    m->tool_calls = calls ? tc : NULL;
    m->n_tool_calls = calls;
    m->tool_results = results ? tr : NULL;
    m->n_tool_results = results;
    return e;
}

/* Count a dropped event; log the total at most once a second. */
static void count_drop(struct telemetry *t)
{
    uint64_t n = __atomic_add_fetch(&t->dropped, 1, __ATOMIC_RELAXED);
    int64_t now = mono_ns(), last = __atomic_load_n(&t->drop_logged_ns, __ATOMIC_RELAXED);

    if ((n == 1 || now - last >= 1000000000L) &&
        __atomic_compare_exchange_n(&t->drop_logged_ns, &last, now, false, __ATOMIC_RELAXED,
                                    __ATOMIC_RELAXED))
        LOG_WARN("telemetry: event queue full, dropping events dropped=%llu",
                 (unsigned long long)n);
}

/* Is the queue full? A hint read without the lock, to drop before copying. */
static bool looks_full(struct telemetry *t)
{
    return __atomic_load_n(&t->count, __ATOMIC_RELAXED) >= QUEUE_MAX;
}

/* Queue `e` (owned; NULL = the copy failed) or drop and count it. Never waits for the writer. */
static void enqueue(struct telemetry *t, struct qevent *e)
{
    pthread_mutex_lock(&t->mu);
    if (!e || t->stop || t->count == QUEUE_MAX || e->bytes > QUEUE_BYTES_MAX - t->bytes) {
        pthread_mutex_unlock(&t->mu);
        free(e);
        count_drop(t);
        return;
    }
    t->ring[(t->head + t->count) % QUEUE_MAX] = e;
    __atomic_store_n(&t->count, t->count + 1, __ATOMIC_RELAXED);
    t->bytes += e->bytes;
    t->queued++;
    /* Wake an idle writer, or one letting a batch grow that is now full. */
    if (t->count == 1 || t->count == BATCH_MAX)
        pthread_cond_signal(&t->wake);
    pthread_mutex_unlock(&t->mu);
}

static void sink_net_cb(void *opaque, const struct net_event *ev)
{
    struct telemetry *t = opaque;

    if (!ev)
        return;
    if (looks_full(t))
        count_drop(t);
    else
        enqueue(t, copy_net(ev));
}

static void sink_dns_cb(void *opaque, const struct dns_event *ev)
{
    struct telemetry *t = opaque;

    if (!ev)
        return;
    if (looks_full(t))
        count_drop(t);
    else
        enqueue(t, copy_dns(ev));
}

static void sink_model_cb(void *opaque, const struct model_call *ev)
{
    struct telemetry *t = opaque;

    if (!ev)
        return;
    if (looks_full(t))
        count_drop(t);
    else
        enqueue(t, copy_model(ev));
}

static const struct sink_ops telemetry_sink_ops = {
    .net = sink_net_cb,
    .dns = sink_dns_cb,
    .model = sink_model_cb,
};

/* ---- Open, migrate, close ------------------------------------------------ */

/* One integer from a single-row query; 0 or an SQLite error code. */
static int query_int(sqlite3 *db, const char *sql, int64_t *out)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);

    if (rc == SQLITE_OK) {
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            *out = sqlite3_column_int64(st, 0);
            rc = SQLITE_OK;
        } else if (rc == SQLITE_DONE) {
            rc = SQLITE_ERROR;
        }
    }
    sqlite3_finalize(st);
    return rc;
}

/* Run one migration and stamp its version, in one transaction. SQLite result code. */
static int apply_migration(sqlite3 *db, const struct telemetry_migration *m, char **msg)
{
    char stamp[96];
    int rc;

    rc = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, msg);
    if (rc != SQLITE_OK)
        return rc;
    snprintf(stamp, sizeof(stamp), "PRAGMA application_id = %d; PRAGMA user_version = %d",
             TELEMETRY_APP_ID, m->version);
    rc = sqlite3_exec(db, m->sql, NULL, NULL, msg);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(db, stamp, NULL, NULL, msg);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(db, "COMMIT", NULL, NULL, msg);
    if (rc != SQLITE_OK)
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

/* Apply every migration newer than `version`, each in its own transaction. */
static int migrate(sqlite3 *db, const char *path, int64_t version, char *err, size_t errlen)
{
    char *msg = NULL;
    int rc = 0;

    for (size_t i = 0; i < telemetry_migration_count; i++) {
        const struct telemetry_migration *m = &telemetry_migrations[i];

        if (m->version <= version)
            continue;
        if (apply_migration(db, m, &msg) != SQLITE_OK) {
            set_err(err, errlen, "%s: migration %s failed: %s", path, m->name,
                    msg ? msg : sqlite3_errmsg(db));
            rc = -EIO;
            goto out;
        }
    }
out:
    sqlite3_free(msg);
    return rc;
}

/* Refuse what is not ours or too new, then set WAL, migrate and prepare. */
static int setup_db(struct telemetry *t, const char *path, char *err, size_t errlen)
{
    int latest = telemetry_migrations[telemetry_migration_count - 1].version;
    int64_t app_id = 0, version = 0, objects = 0;
    sqlite3_stmt *st = NULL;
    const char *mode;
    int rc;

    rc = query_int(t->db, "PRAGMA application_id", &app_id);
    if (rc == SQLITE_OK)
        rc = query_int(t->db, "PRAGMA user_version", &version);
    if (rc == SQLITE_OK)
        rc = query_int(t->db, "SELECT count(*) FROM sqlite_schema", &objects);
    if (rc == SQLITE_NOTADB) {
        set_err(err, errlen, "%s: not an SQLite database; refusing to touch it", path);
        return -EINVAL;
    }
    if (rc != SQLITE_OK) {
        set_err(err, errlen, "%s: cannot read: %s", path, sqlite3_errmsg(t->db));
        return -EIO;
    }
    if (app_id != TELEMETRY_APP_ID && !(app_id == 0 && version == 0 && objects == 0)) {
        set_err(err, errlen,
                "%s: an SQLite database, but not a capsem session database (application_id "
                "%lld); refusing to touch it",
                path, (long long)app_id);
        return -EINVAL;
    }
    if (version > latest) {
        set_err(err, errlen,
                "%s: schema version %lld is newer than this capsem's (%d); use a newer capsem",
                path, (long long)version, latest);
        return -EPROTONOSUPPORT;
    }
    rc = sqlite3_prepare_v2(t->db, "PRAGMA journal_mode = WAL", -1, &st, NULL);
    if (rc == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW) {
        mode = (const char *)sqlite3_column_text(st, 0);
        rc = mode && strcasecmp(mode, "wal") == 0 ? SQLITE_OK : SQLITE_ERROR;
    } else {
        rc = SQLITE_ERROR;
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_OK) {
        set_err(err, errlen, "%s: cannot switch to WAL mode: %s", path, sqlite3_errmsg(t->db));
        return -EIO;
    }
    if (sqlite3_exec(t->db, "PRAGMA synchronous = NORMAL", NULL, NULL, NULL) != SQLITE_OK) {
        set_err(err, errlen, "%s: cannot set synchronous: %s", path, sqlite3_errmsg(t->db));
        return -EIO;
    }
    rc = migrate(t->db, path, version, err, errlen);
    if (rc)
        return rc;
    if (sqlite3_prepare_v3(t->db, INSERT_NET, -1, SQLITE_PREPARE_PERSISTENT, &t->ins_net, NULL) !=
            SQLITE_OK ||
        sqlite3_prepare_v3(t->db, INSERT_DNS, -1, SQLITE_PREPARE_PERSISTENT, &t->ins_dns, NULL) !=
            SQLITE_OK ||
        sqlite3_prepare_v3(t->db, INSERT_MODEL, -1, SQLITE_PREPARE_PERSISTENT, &t->ins_model,
                           NULL) != SQLITE_OK ||
        sqlite3_prepare_v3(t->db, INSERT_TOOL_CALL, -1, SQLITE_PREPARE_PERSISTENT,
                           &t->ins_tool_call, NULL) != SQLITE_OK ||
        sqlite3_prepare_v3(t->db, INSERT_TOOL_RESULT, -1, SQLITE_PREPARE_PERSISTENT,
                           &t->ins_tool_result, NULL) != SQLITE_OK ||
        sqlite3_prepare_v3(t->db, UPDATE_TOTALS, -1, SQLITE_PREPARE_PERSISTENT, &t->upd_totals,
                           NULL) != SQLITE_OK) {
        set_err(err, errlen, "%s: cannot prepare inserts: %s", path, sqlite3_errmsg(t->db));
        return -EIO;
    }
    return 0;
}

static void destroy(struct telemetry *t)
{
    sqlite3_finalize(t->ins_net);
    sqlite3_finalize(t->ins_dns);
    sqlite3_finalize(t->ins_model);
    sqlite3_finalize(t->ins_tool_call);
    sqlite3_finalize(t->ins_tool_result);
    sqlite3_finalize(t->upd_totals);
    if (t->db && sqlite3_close(t->db) != SQLITE_OK)
        LOG_ERR("telemetry: close failed: %s", sqlite3_errmsg(t->db));
    if (t->ring) {
        for (size_t i = 0; i < t->count; i++)
            free(t->ring[(t->head + i) % QUEUE_MAX]);
        free(t->ring);
    }
    pthread_cond_destroy(&t->done);
    pthread_cond_destroy(&t->wake);
    pthread_mutex_destroy(&t->mu);
    free(t);
}

int telemetry_open(const char *path, struct telemetry **out, char *err, size_t errlen)
{
    struct telemetry *t = NULL;
    pthread_condattr_t ca;
    sigset_t all, old;
    int fd, rc;

    if (!path || !*path || !out) {
        set_err(err, errlen, "telemetry: no database path");
        return -EINVAL;
    }
    /* Create it private before SQLite does (its -wal and -shm take the same mode). */
    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc = -errno;
        set_err(err, errlen, "%s: %s", path, strerror(-rc));
        return rc;
    }
    close(fd);

    t = calloc(1, sizeof(*t));
    if (!t) {
        set_err(err, errlen, "telemetry: out of memory");
        return -ENOMEM;
    }
    pthread_mutex_init(&t->mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&t->wake, &ca);
    pthread_condattr_destroy(&ca);
    pthread_cond_init(&t->done, NULL);
    t->ring = calloc(QUEUE_MAX, sizeof(*t->ring));
    if (!t->ring) {
        set_err(err, errlen, "telemetry: out of memory");
        rc = -ENOMEM;
        goto out;
    }
    rc = sqlite3_open_v2(path, &t->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        set_err(err, errlen, "%s: cannot open: %s", path,
                t->db ? sqlite3_errmsg(t->db) : sqlite3_errstr(rc));
        rc = rc == SQLITE_NOMEM ? -ENOMEM : -EIO;
        goto out;
    }
    sqlite3_busy_timeout(t->db, BUSY_TIMEOUT_MS);
    rc = setup_db(t, path, err, errlen);
    if (rc)
        goto out;
    /* The writer takes no signals: they belong to the process's event loop. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    rc = -pthread_create(&t->writer, NULL, writer_main, t);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc) {
        set_err(err, errlen, "telemetry: cannot start the writer: %s", strerror(-rc));
        goto out;
    }
    t->writer_started = true;
    *out = t;
    t = NULL;
out:
    if (t)
        destroy(t);
    return rc;
}

struct sink telemetry_sink(struct telemetry *t)
{
    struct sink s = {.ops = t ? &telemetry_sink_ops : NULL, .opaque = t};

    return s;
}

int telemetry_flush(struct telemetry *t)
{
    uint64_t want;
    int rc;

    if (!t)
        return -EINVAL;
    pthread_mutex_lock(&t->mu);
    want = t->queued;
    if (want > t->flush_want)
        t->flush_want = want;
    pthread_cond_signal(&t->wake);
    while (t->written < want)
        pthread_cond_wait(&t->done, &t->mu);
    rc = t->werr;
    pthread_mutex_unlock(&t->mu);
    return rc;
}

uint64_t telemetry_dropped(struct telemetry *t)
{
    uint64_t n;

    if (!t)
        return 0;
    n = __atomic_load_n(&t->dropped, __ATOMIC_RELAXED);
    return n;
}

void telemetry_close(struct telemetry *t)
{
    if (!t)
        return;
    if (t->writer_started) {
        pthread_mutex_lock(&t->mu);
        t->stop = true;
        pthread_cond_signal(&t->wake);
        pthread_mutex_unlock(&t->mu);
        pthread_join(t->writer, NULL);
    }
    if (t->dropped || t->lost)
        LOG_WARN("telemetry: closed dropped=%llu lost=%llu", (unsigned long long)t->dropped,
                 (unsigned long long)t->lost);
    destroy(t);
}
