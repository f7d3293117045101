/*
 * Queries on a session's telemetry (tquery.h). Lists are built from a small
 * per-kind description (the FROM clause, the time and id expressions, which
 * column each filter uses) into one parameterised SELECT with keyset paging
 * on (time, id); the cursor is "<time>.<id>" and clients treat it as
 * opaque. File events come from fs-events.jsonl in the session directory,
 * where the line number is the id. User SQL runs on its own read-only
 * connection behind an authorizer and a progress-handler deadline.
 */
#include "tquery.h"

#include "log.h"

#include <errno.h>
#include <inttypes.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct kind_desc {
    const char *name;
    const char *select;   /* columns */
    const char *from;     /* FROM clause */
    const char *time;     /* time expression */
    const char *id;       /* id expression */
    const char *host;     /* column for the host filter, NULL: not applicable */
    const char *decision; /* column for decision */
    const char *provider;
    const char *model_a, *model_r;
    const char *text[5]; /* columns for q */
};

static const struct kind_desc kinds[] = {
    [TQ_NET] = {"net-events",
                "e.*",
                "net_events e",
                "e.time_us",
                "e.id",
                "e.host",
                "e.decision",
                NULL,
                NULL,
                NULL,
                {"e.host", "e.path", "e.process", "e.error", "e.rule"}},
    [TQ_DNS] = {"dns-events",
                "e.*",
                "dns_events e",
                "e.time_us",
                "e.id",
                "e.name",
                "e.decision",
                NULL,
                NULL,
                NULL,
                {"e.name", "e.answer", "e.rule", NULL, NULL}},
    [TQ_MODEL] = {"model-calls",
                  "e.*",
                  "model_calls e",
                  "e.time_us",
                  "e.id",
                  "e.host",
                  NULL,
                  "e.provider",
                  "e.model_answered",
                  "e.model_requested",
                  {"e.model_answered", "e.model_requested", "e.error_message", "e.stop_reason",
                   "e.system_preview"}},
    [TQ_TOOL] = {"tool-calls",
                 "e.*, m.time_us AS time_us, m.provider AS provider, m.model_answered AS model",
                 "tool_calls e JOIN model_calls m ON m.id = e.model_call_id",
                 "m.time_us",
                 "e.id",
                 NULL,
                 NULL,
                 "m.provider",
                 "m.model_answered",
                 "m.model_requested",
                 {"e.name", "e.arguments", "e.call_id", NULL, NULL}},
    [TQ_FILE] = {"file-events", NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, {NULL}},
};

int tq_kind_parse(const char *name, enum tq_kind *out)
{
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        if (name && !strcmp(name, kinds[i].name)) {
            *out = (enum tq_kind)i;
            return 0;
        }
    }
    return -EINVAL;
}

/* ---- helpers ---- */

/* A JSON string from bytes that may not be UTF-8 (bytes >= 0x80 become '?'). */
static json_t *text_json(const char *s, size_t n)
{
    json_t *j = json_stringn(s, n);
    if (j)
        return j;
    char *c = malloc(n + 1);
    if (!c)
        return NULL;
    for (size_t i = 0; i < n; i++)
        c[i] = ((unsigned char)s[i] >= 0x80 || s[i] == '\0') ? '?' : s[i];
    j = json_stringn(c, n);
    free(c);
    return j;
}

static json_t *column_json(sqlite3_stmt *st, int i)
{
    switch (sqlite3_column_type(st, i)) {
    case SQLITE_INTEGER:
        return json_integer((json_int_t)sqlite3_column_int64(st, i));
    case SQLITE_FLOAT:
        return json_real(sqlite3_column_double(st, i));
    case SQLITE_TEXT:
        return text_json((const char *)sqlite3_column_text(st, i),
                         (size_t)sqlite3_column_bytes(st, i));
    case SQLITE_BLOB: {
        /* Blobs are shown as their size; session.db has none. */
        return json_pack("{s:i}", "blob_bytes", sqlite3_column_bytes(st, i));
    }
    default:
        return json_null();
    }
}

/* Open `dir`/session.db read-only. -ENOENT when there is none; -EIO otherwise. */
static int db_open(const char *dir, sqlite3 **out, char *err, size_t errlen)
{
    char path[4200];
    int n = snprintf(path, sizeof(path), "%s/session.db", dir);
    if (n < 0 || (size_t)n >= sizeof(path)) {
        snprintf(err, errlen, "session path too long");
        return -EINVAL;
    }
    FILE *f = fopen(path, "rb");
    if (!f)
        return errno == ENOENT ? -ENOENT : -EIO;
    fclose(f);
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "cannot open session database: %s",
                 db ? sqlite3_errmsg(db) : "out of memory");
        sqlite3_close(db);
        return -EIO;
    }
    sqlite3_busy_timeout(db, 1000);
    sqlite3_exec(db, "PRAGMA query_only=1", NULL, NULL, NULL);
    *out = db;
    return 0;
}

/* Parse a "<time>.<id>" cursor. */
static int cursor_parse(const char *c, int64_t *t, int64_t *id)
{
    char *end;
    errno = 0;
    long long a = strtoll(c, &end, 10);
    if (errno || end == c || *end != '.')
        return -EINVAL;
    const char *p = end + 1;
    long long b = strtoll(p, &end, 10);
    if (errno || end == p || *end)
        return -EINVAL;
    *t = a;
    *id = b;
    return 0;
}

static int decision_parse(const char *s, int *out)
{
    static const char *const names[] = {"allow", "block", "log"};
    for (int i = 0; i < 3; i++) {
        if (!strcmp(s, names[i])) {
            *out = i;
            return 0;
        }
    }
    return -EINVAL;
}

/* "%q%" with LIKE's wildcards escaped by '\'. Caller frees. */
static char *like_pattern(const char *q)
{
    size_t n = strlen(q);
    char *p = malloc(2 * n + 3);
    if (!p)
        return NULL;
    size_t k = 0;
    p[k++] = '%';
    for (size_t i = 0; i < n; i++) {
        if (q[i] == '%' || q[i] == '_' || q[i] == '\\')
            p[k++] = '\\';
        p[k++] = q[i];
    }
    p[k++] = '%';
    p[k] = '\0';
    return p;
}

/* Append the strings up to NULL to a fixed SQL buffer; false when they do not fit. */
static bool cat(char *buf, size_t cap, size_t *len, ...)
{
    va_list ap;
    va_start(ap, len);
    bool ok = true;
    for (const char *p = va_arg(ap, const char *); p; p = va_arg(ap, const char *)) {
        size_t n = strlen(p);
        if (n >= cap - *len) {
            ok = false;
            break;
        }
        memcpy(buf + *len, p, n + 1);
        *len += n;
    }
    va_end(ap);
    return ok;
}

static int check_filter(const struct kind_desc *k, const struct tq_filter *f, char *err,
                        size_t errlen)
{
    const char *bad = NULL;
    if (f->host && !k->host)
        bad = "host";
    else if (f->decision && !k->decision)
        bad = "decision";
    else if (f->provider && !k->provider)
        bad = "provider";
    else if (f->model && !k->model_a)
        bad = "model";
    if (bad) {
        snprintf(err, errlen, "filter %s does not apply to %s", bad, k->name);
        return -EINVAL;
    }
    if (f->limit > TQ_LIMIT_MAX) {
        snprintf(err, errlen, "limit must be 1 to %d", TQ_LIMIT_MAX);
        return -EINVAL;
    }
    return 0;
}

static json_t *page_json(json_t *items, bool more, int64_t t, int64_t id)
{
    char cur[64];
    snprintf(cur, sizeof(cur), "%" PRId64 ".%" PRId64, t, id);
    return json_pack("{s:o,s:o}", "items", items, "next_cursor",
                     more ? json_string(cur) : json_null());
}

/* ---- session.db lists ---- */

static int list_db(const char *dir, enum tq_kind kind, const struct tq_filter *f, json_t **out,
                   char *err, size_t errlen)
{
    const struct kind_desc *k = &kinds[kind];
    unsigned limit = f->limit ? f->limit : TQ_LIMIT_DEFAULT;
    int64_t ct = 0, cid = 0;
    int dec = 0;
    char *pat = NULL;
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    json_t *items = NULL;
    int rc = 0;
    if (f->cursor && cursor_parse(f->cursor, &ct, &cid) < 0) {
        snprintf(err, errlen, "bad cursor");
        return -EINVAL;
    }
    if (f->decision && decision_parse(f->decision, &dec) < 0) {
        snprintf(err, errlen, "decision must be allow, block or log");
        return -EINVAL;
    }
    items = json_array();
    if (!items)
        return -ENOMEM;
    rc = db_open(dir, &db, err, errlen);
    if (rc == -ENOENT) {
        *out = page_json(items, false, 0, 0);
        return *out ? 0 : -ENOMEM;
    }
    if (rc < 0)
        goto out;

    char sql[2048];
    size_t len = 0;
    bool ok = cat(sql, sizeof(sql), &len, "SELECT ", k->select, ", ", k->time, " AS tq_t", NULL);
    ok = ok &&
         cat(sql, sizeof(sql), &len, ", ", k->id, " AS tq_id FROM ", k->from, " WHERE 1", NULL);
    if (f->has_from)
        ok = ok && cat(sql, sizeof(sql), &len, " AND ", k->time, " >= :from", NULL);
    if (f->has_to)
        ok = ok && cat(sql, sizeof(sql), &len, " AND ", k->time, " < :to", NULL);
    if (f->host)
        ok = ok && cat(sql, sizeof(sql), &len, " AND ", k->host, " = lower(:host)", NULL);
    if (f->decision)
        ok = ok && cat(sql, sizeof(sql), &len, " AND ", k->decision, " = :dec", NULL);
    if (f->provider)
        ok = ok && cat(sql, sizeof(sql), &len, " AND ", k->provider, " = :prov", NULL);
    if (f->model)
        ok = ok && cat(sql, sizeof(sql), &len, " AND (", k->model_a, " = :model OR ", k->model_r,
                       " = :model)", NULL);
    if (f->q) {
        ok = ok && cat(sql, sizeof(sql), &len, " AND (0", NULL);
        for (size_t i = 0; i < 5 && k->text[i]; i++)
            ok =
                ok && cat(sql, sizeof(sql), &len, " OR ", k->text[i], " LIKE :q ESCAPE '\\'", NULL);
        ok = ok && cat(sql, sizeof(sql), &len, ")", NULL);
    }
    if (f->cursor)
        ok = ok && cat(sql, sizeof(sql), &len, " AND (", k->time, ", ", k->id,
                       f->desc ? ") < (:ct, :cid)" : ") > (:ct, :cid)", NULL);
    ok = ok && cat(sql, sizeof(sql), &len, " ORDER BY ", k->time, f->desc ? " DESC, " : " ASC, ",
                   k->id, f->desc ? " DESC" : " ASC", " LIMIT :lim", NULL);
    if (!ok) {
        rc = -EIO;
        snprintf(err, errlen, "query too long");
        goto out;
    }
    int src = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (src != SQLITE_OK) {
        if (strstr(sqlite3_errmsg(db), "no such table")) {
            /* An older database without this kind yet: nothing to list. */
            rc = 0;
            *out = page_json(items, false, 0, 0);
            items = NULL;
            if (!*out)
                rc = -ENOMEM;
            goto out;
        }
        snprintf(err, errlen, "query failed: %s", sqlite3_errmsg(db));
        rc = -EIO;
        goto out;
    }
#define BIND_I(name, v) sqlite3_bind_int64(st, sqlite3_bind_parameter_index(st, name), (v))
#define BIND_T(name, v)                                                                            \
    sqlite3_bind_text(st, sqlite3_bind_parameter_index(st, name), (v), -1, SQLITE_TRANSIENT)
    BIND_I(":from", f->from_us);
    BIND_I(":to", f->to_us);
    BIND_T(":host", f->host);
    BIND_I(":dec", dec);
    BIND_T(":prov", f->provider);
    BIND_T(":model", f->model);
    if (f->q) {
        pat = like_pattern(f->q);
        if (!pat) {
            rc = -ENOMEM;
            goto out;
        }
        BIND_T(":q", pat);
    }
    BIND_I(":ct", ct);
    BIND_I(":cid", cid);
    BIND_I(":lim", (int64_t)limit + 1);
#undef BIND_I
#undef BIND_T
    int ncol = sqlite3_column_count(st);
    unsigned n = 0;
    bool more = false;
    int64_t lt = 0, lid = 0;
    while ((src = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == limit) {
            more = true;
            break;
        }
        json_t *row = json_object();
        if (!row) {
            rc = -ENOMEM;
            goto out;
        }
        for (int i = 0; i < ncol - 2; i++) {
            const char *name = sqlite3_column_name(st, i);
            json_t *v = column_json(st, i);
            if (!name || !v || json_object_set_new(row, name, v) < 0) {
                json_decref(row);
                rc = -ENOMEM;
                goto out;
            }
        }
        lt = sqlite3_column_int64(st, ncol - 2);
        lid = sqlite3_column_int64(st, ncol - 1);
        if (json_array_append_new(items, row) < 0) {
            rc = -ENOMEM;
            goto out;
        }
        n++;
    }
    if (src != SQLITE_ROW && src != SQLITE_DONE) {
        snprintf(err, errlen, "query failed: %s", sqlite3_errmsg(db));
        rc = -EIO;
        goto out;
    }
    *out = page_json(items, more, lt, lid);
    items = NULL;
    if (!*out)
        rc = -ENOMEM;
out:
    json_decref(items);
    free(pat);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return rc;
}

/* ---- fs-events.jsonl ---- */

static bool file_match(json_t *ev, const struct tq_filter *f, int64_t *t)
{
    json_int_t s = json_integer_value(json_object_get(ev, "time_s"));
    json_int_t ns = json_integer_value(json_object_get(ev, "time_ns"));
    *t = (int64_t)s * 1000000 + (int64_t)ns / 1000;
    if (f->has_from && *t < f->from_us)
        return false;
    if (f->has_to && *t >= f->to_us)
        return false;
    if (f->q) {
        const char *p = json_string_value(json_object_get(ev, "path"));
        const char *to = json_string_value(json_object_get(ev, "to"));
        if (!(p && strcasestr(p, f->q)) && !(to && strcasestr(to, f->q)))
            return false;
    }
    return true;
}

static int list_files(const char *dir, const struct tq_filter *f, json_t **out, char *err,
                      size_t errlen)
{
    const struct kind_desc *k = &kinds[TQ_FILE];
    unsigned limit = f->limit ? f->limit : TQ_LIMIT_DEFAULT;
    int64_t ct = 0, cid = 0;
    char path[4200], *line = NULL;
    size_t cap = 0;
    int rc = 0;
    if (f->host || f->decision || f->provider || f->model) {
        snprintf(err, errlen, "filter %s does not apply to %s",
                 f->host       ? "host"
                 : f->decision ? "decision"
                 : f->provider ? "provider"
                               : "model",
                 k->name);
        return -EINVAL;
    }
    if (f->cursor && cursor_parse(f->cursor, &ct, &cid) < 0) {
        snprintf(err, errlen, "bad cursor");
        return -EINVAL;
    }
    json_t *all = json_array();
    if (!all)
        return -ENOMEM;
    snprintf(path, sizeof(path), "%s/fs-events.jsonl", dir);
    FILE *fp = fopen(path, "r");
    if (fp) {
        int64_t lineno = 0;
        ssize_t n;
        while ((n = getline(&line, &cap, fp)) >= 0) {
            lineno++;
            json_t *ev = json_loadb(line, (size_t)n, 0, NULL);
            int64_t t;
            if (!json_is_object(ev) || !file_match(ev, f, &t)) {
                json_decref(ev); /* an unreadable line (a cut last line) is skipped */
                continue;
            }
            if (f->cursor && (f->desc ? (t > ct || (t == ct && lineno >= cid))
                                      : (t < ct || (t == ct && lineno <= cid)))) {
                json_decref(ev);
                continue;
            }
            json_object_set_new(ev, "id", json_integer(lineno));
            json_object_set_new(ev, "time_us", json_integer(t));
            if (json_array_append_new(all, ev) < 0) {
                rc = -ENOMEM;
                goto out;
            }
        }
    }
    /* Order by (time_us, id); a stable sort by hand is not needed: lines are
     * almost always in time order already, so an insertion sort is cheap. */
    size_t total = json_array_size(all);
    for (size_t i = 1; i < total; i++) {
        json_t *cur = json_incref(json_array_get(all, i));
        json_int_t t = json_integer_value(json_object_get(cur, "time_us"));
        size_t j = i;
        while (j > 0) {
            json_t *prev = json_array_get(all, j - 1);
            if (json_integer_value(json_object_get(prev, "time_us")) <= t)
                break;
            json_array_set(all, j, prev);
            j--;
        }
        json_array_set_new(all, j, cur);
    }
    json_t *items = json_array();
    if (!items) {
        rc = -ENOMEM;
        goto out;
    }
    int64_t lt = 0, lid = 0;
    for (size_t i = 0; i < total && i < limit; i++) {
        json_t *ev = json_array_get(all, f->desc ? total - 1 - i : i);
        lt = json_integer_value(json_object_get(ev, "time_us"));
        lid = json_integer_value(json_object_get(ev, "id"));
        json_array_append(items, ev);
    }
    *out = page_json(items, total > limit, lt, lid);
    if (!*out)
        rc = -ENOMEM;
out:
    if (fp)
        fclose(fp);
    free(line);
    json_decref(all);
    return rc;
}

int tq_list(const char *dir, enum tq_kind kind, const struct tq_filter *f, json_t **out, char *err,
            size_t errlen)
{
    if (kind == TQ_FILE)
        return list_files(dir, f, out, err, errlen);
    int rc = check_filter(&kinds[kind], f, err, errlen);
    if (rc < 0)
        return rc;
    return list_db(dir, kind, f, out, err, errlen);
}

/* ---- stats ---- */

/* Rows of `sql` as objects appended to `arr`; a missing table gives none. */
static int rows_into(sqlite3 *db, const char *sql, json_t *arr, char *err, size_t errlen)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        if (strstr(sqlite3_errmsg(db), "no such table"))
            return 0;
        snprintf(err, errlen, "stats query failed: %s", sqlite3_errmsg(db));
        return -EIO;
    }
    int rc = 0, src;
    while ((src = sqlite3_step(st)) == SQLITE_ROW) {
        json_t *row = json_object();
        for (int i = 0; row && i < sqlite3_column_count(st); i++)
            json_object_set_new(row, sqlite3_column_name(st, i), column_json(st, i));
        if (!row || json_array_append_new(arr, row) < 0) {
            rc = -ENOMEM;
            break;
        }
    }
    if (!rc && src != SQLITE_DONE) {
        snprintf(err, errlen, "stats query failed: %s", sqlite3_errmsg(db));
        rc = -EIO;
    }
    sqlite3_finalize(st);
    return rc;
}

int tq_stats(const char *dir, json_t **out, char *err, size_t errlen)
{
    sqlite3 *db = NULL;
    json_t *totals_rows = json_array(), *models = json_array(), *hosts = json_array(),
           *dns = json_array();
    int rc = 0;
    if (!totals_rows || !models || !hosts || !dns) {
        rc = -ENOMEM;
        goto out;
    }
    rc = db_open(dir, &db, err, errlen);
    if (rc == -ENOENT) {
        rc = 0;
    } else if (rc < 0) {
        goto out;
    } else {
        static const char *const q_totals =
            "SELECT requests, model_calls, input_tokens, output_tokens, cache_read_tokens, "
            "cache_write_tokens, cost_usd, unpriced_calls, last_time_us FROM session_totals";
        static const char *const q_models =
            "SELECT provider, coalesce(model_answered, model_requested) AS model, count(*) AS "
            "calls, coalesce(sum(input_tokens), 0) AS input_tokens, coalesce(sum(output_tokens), "
            "0) AS output_tokens, coalesce(sum(cache_read_tokens), 0) AS cache_read_tokens, "
            "coalesce(sum(cache_write_tokens), 0) AS cache_write_tokens, "
            "coalesce(sum(cost_usd), 0.0) AS cost_usd, sum(cost_known = 0) AS unpriced_calls "
            "FROM model_calls GROUP BY 1, 2 ORDER BY calls DESC, 1, 2";
        static const char *const q_hosts =
            "SELECT host, count(*) AS requests, sum(decision = 1) AS blocked, sum(req_bytes) AS "
            "req_bytes, sum(resp_bytes) AS resp_bytes FROM net_events GROUP BY host "
            "ORDER BY requests DESC, host";
        static const char *const q_dns =
            "SELECT count(*) AS queries, coalesce(sum(decision = 1), 0) AS blocked FROM "
            "dns_events";
        if ((rc = rows_into(db, q_totals, totals_rows, err, errlen)) < 0 ||
            (rc = rows_into(db, q_models, models, err, errlen)) < 0 ||
            (rc = rows_into(db, q_hosts, hosts, err, errlen)) < 0 ||
            (rc = rows_into(db, q_dns, dns, err, errlen)) < 0)
            goto out;
    }
    /* File events: lines in fs-events.jsonl. */
    json_int_t files = 0;
    char path[4200];
    snprintf(path, sizeof(path), "%s/fs-events.jsonl", dir);
    FILE *fp = fopen(path, "r");
    if (fp) {
        int c;
        while ((c = getc(fp)) != EOF)
            files += c == '\n';
        fclose(fp);
    }
    json_t *totals = json_array_get(totals_rows, 0);
    json_t *d = json_array_get(dns, 0);
    /* "o" takes these references (a fresh empty object when a table had no row). */
    json_t *t = totals ? json_incref(totals) : json_object();
    json_t *dn = d ? json_incref(d) : json_object();
    *out = json_pack("{s:o,s:O,s:O,s:o,s:I}", "totals", t, "models", models, "hosts", hosts, "dns",
                     dn, "file_events", files);
    if (!*out)
        rc = -ENOMEM;
out:
    json_decref(totals_rows);
    json_decref(models);
    json_decref(hosts);
    json_decref(dns);
    sqlite3_close(db);
    return rc;
}

/* ---- user SQL ---- */

static int authorize(void *ud, int action, const char *a, const char *b, const char *c,
                     const char *d)
{
    (void)ud;
    (void)a;
    (void)b;
    (void)c;
    (void)d;
    switch (action) {
    case SQLITE_SELECT:
    case SQLITE_READ:
    case SQLITE_FUNCTION:
    case SQLITE_RECURSIVE:
        return SQLITE_OK;
    default:
        return SQLITE_DENY;
    }
}

struct deadline {
    struct timespec end;
    bool hit;
};

static int progress(void *ud)
{
    struct deadline *dl = ud;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (now.tv_sec > dl->end.tv_sec ||
        (now.tv_sec == dl->end.tv_sec && now.tv_nsec >= dl->end.tv_nsec)) {
        dl->hit = true;
        return 1;
    }
    return 0;
}

int tq_sql(const char *dir, const char *sql, unsigned time_ms, unsigned max_rows, json_t **out,
           char *err, size_t errlen)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    json_t *cols = NULL, *rows = NULL;
    struct deadline dl = {0};
    int rc = db_open(dir, &db, err, errlen);
    if (rc == -ENOENT)
        snprintf(err, errlen, "the session has no database");
    if (rc < 0)
        return rc;
    if (!time_ms)
        time_ms = TQ_SQL_TIME_MS;
    if (!max_rows)
        max_rows = TQ_SQL_ROWS_MAX;
    sqlite3_set_authorizer(db, authorize, NULL);
    clock_gettime(CLOCK_MONOTONIC, &dl.end);
    dl.end.tv_sec += time_ms / 1000;
    dl.end.tv_nsec += (long)(time_ms % 1000) * 1000000L;
    if (dl.end.tv_nsec >= 1000000000L) {
        dl.end.tv_sec++;
        dl.end.tv_nsec -= 1000000000L;
    }
    sqlite3_progress_handler(db, 1000, progress, &dl);
    /* No single value over 16 MiB (randomblob(1e9) would otherwise allocate it). */
    sqlite3_limit(db, SQLITE_LIMIT_LENGTH, TQ_SQL_VALUE_MAX);
    const char *tail = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &st, &tail) != SQLITE_OK || !st) {
        snprintf(err, errlen, "%s", st ? sqlite3_errmsg(db) : "empty statement");
        if (dl.hit)
            snprintf(err, errlen, "time limit of %u ms exceeded", time_ms);
        rc = -EINVAL;
        goto out;
    }
    for (const char *p = tail; p && *p; p++) {
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r' && *p != ';') {
            snprintf(err, errlen, "only one statement is allowed");
            rc = -EINVAL;
            goto out;
        }
    }
    if (!sqlite3_stmt_readonly(st)) {
        snprintf(err, errlen, "only read-only statements are allowed");
        rc = -EINVAL;
        goto out;
    }
    cols = json_array();
    rows = json_array();
    if (!cols || !rows) {
        rc = -ENOMEM;
        goto out;
    }
    int ncol = sqlite3_column_count(st);
    for (int i = 0; i < ncol; i++) {
        const char *name = sqlite3_column_name(st, i);
        json_array_append_new(cols, json_string(name ? name : ""));
    }
    bool truncated = false;
    unsigned n = 0;
    int src;
    size_t bytes = 0;
    while ((src = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == max_rows || bytes > TQ_SQL_BYTES_MAX) {
            truncated = true;
            break;
        }
        json_t *row = json_array();
        for (int i = 0; row && i < ncol; i++) {
            bytes += 8 + (size_t)sqlite3_column_bytes(st, i);
            json_array_append_new(row, column_json(st, i));
        }
        if (!row || json_array_append_new(rows, row) < 0) {
            rc = -ENOMEM;
            goto out;
        }
        n++;
    }
    if (src != SQLITE_ROW && src != SQLITE_DONE) {
        if (dl.hit)
            snprintf(err, errlen, "time limit of %u ms exceeded", time_ms);
        else
            snprintf(err, errlen, "%s", sqlite3_errmsg(db));
        rc = -EINVAL;
        goto out;
    }
    *out = json_pack("{s:O,s:O,s:b}", "columns", cols, "rows", rows, "truncated", truncated);
    if (!*out)
        rc = -ENOMEM;
out:
    json_decref(cols);
    json_decref(rows);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return rc;
}

/* ---- new rows since an id ---- */

const char *tq_kind_name(enum tq_kind kind)
{
    return kinds[kind].name;
}

int tq_since(const char *dir, enum tq_kind kind, int64_t *last, unsigned limit, json_t **items)
{
    const struct kind_desc *k = &kinds[kind];
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    char err[256], sql[1024];
    *items = json_array();
    if (!*items)
        return -ENOMEM;
    if (kind == TQ_FILE)
        return 0;
    int rc = db_open(dir, &db, err, sizeof(err));
    if (rc == -ENOENT)
        return 0;
    if (rc < 0)
        return rc;
    if (*last < 0)
        snprintf(sql, sizeof(sql), "SELECT coalesce(max(%s), 0) FROM %s", k->id, k->from);
    else
        snprintf(sql, sizeof(sql), "SELECT %s FROM %s WHERE %s > ?1 ORDER BY %s LIMIT ?2",
                 k->select, k->from, k->id, k->id);
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        rc = strstr(sqlite3_errmsg(db), "no such table") ? 0 : -EIO;
        if (rc == 0 && *last < 0)
            *last = 0;
        goto out;
    }
    if (*last < 0) {
        if (sqlite3_step(st) == SQLITE_ROW)
            *last = sqlite3_column_int64(st, 0);
        else
            rc = -EIO;
        goto out;
    }
    sqlite3_bind_int64(st, 1, *last);
    sqlite3_bind_int64(st, 2, limit ? limit : TQ_LIMIT_MAX);
    int ncol = sqlite3_column_count(st), src;
    while ((src = sqlite3_step(st)) == SQLITE_ROW) {
        json_t *row = json_object();
        for (int i = 0; row && i < ncol; i++) {
            const char *name = sqlite3_column_name(st, i);
            if (name && !strcmp(name, "id"))
                *last = sqlite3_column_int64(st, i);
            json_object_set_new(row, name ? name : "", column_json(st, i));
        }
        if (!row || json_array_append_new(*items, row) < 0) {
            rc = -ENOMEM;
            goto out;
        }
    }
    if (src != SQLITE_DONE)
        rc = -EIO;
out:
    sqlite3_finalize(st);
    sqlite3_close(db);
    return rc;
}
