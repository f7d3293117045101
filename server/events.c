/*
 * The live event ring and the telemetry poller (events.h). The ring is a
 * fixed array of EVENTS_RING slots under one mutex; slot seq % EVENTS_RING
 * holds message seq. The poller is one thread that, every EVENTS_POLL_MS,
 * lists the session directories, and for each whose session.db (or its
 * -wal) changed size or time since the last look asks tquery for rows
 * above the last id it published.
 */
#include "events.h"

#include "log.h"
#include "session_dir.h"
#include "tquery.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static char *ring[EVENTS_RING];
static size_t ring_len[EVENTS_RING];
static uint64_t last_seq; /* message numbers start at 1 */
static void (*wake_fn)(void *ctx);
static void *wake_ctx;
static atomic_ullong rows_published;
static atomic_ullong rows_total[4]; /* per kind, over the sessions the poller watches */

int events_publish(const char *json)
{
    json_t *j = json ? json_loads(json, 0, NULL) : NULL;
    bool ok = json_is_object(j);
    json_decref(j);
    if (!ok)
        return -EINVAL;
    char *copy = strdup(json);
    if (!copy)
        return -ENOMEM;
    pthread_mutex_lock(&lock);
    uint64_t seq = ++last_seq;
    size_t slot = (size_t)(seq % EVENTS_RING);
    free(ring[slot]);
    ring[slot] = copy;
    ring_len[slot] = strlen(copy);
    /* Woken under the lock, so events_set_wake(NULL) means no call after it returns
     * (the wake function must not block: httpd's is lws_cancel_service). */
    if (wake_fn)
        wake_fn(wake_ctx);
    pthread_mutex_unlock(&lock);
    return 0;
}

void events_set_wake(void (*fn)(void *ctx), void *ctx)
{
    pthread_mutex_lock(&lock);
    wake_fn = fn;
    wake_ctx = ctx;
    pthread_mutex_unlock(&lock);
}

uint64_t events_last_seq(void)
{
    pthread_mutex_lock(&lock);
    uint64_t s = last_seq;
    pthread_mutex_unlock(&lock);
    return s;
}

int events_next(uint64_t *seq, char **msg, size_t *len)
{
    int rc = 0;
    pthread_mutex_lock(&lock);
    uint64_t oldest = last_seq >= EVENTS_RING ? last_seq - EVENTS_RING + 1 : 1;
    if (*seq >= last_seq)
        goto out;
    if (*seq + 1 < oldest) {
        char buf[64];
        int n = snprintf(buf, sizeof(buf), "{\"type\":\"lost\",\"count\":%llu}",
                         (unsigned long long)(oldest - *seq - 1));
        *msg = strdup(buf);
        if (!*msg) {
            rc = -ENOMEM;
            goto out;
        }
        *len = (size_t)n;
        *seq = oldest - 1;
        rc = 1;
        goto out;
    }
    size_t slot = (size_t)((*seq + 1) % EVENTS_RING);
    *msg = malloc(ring_len[slot] + 1);
    if (!*msg) {
        rc = -ENOMEM;
        goto out;
    }
    memcpy(*msg, ring[slot], ring_len[slot] + 1);
    *len = ring_len[slot];
    (*seq)++;
    rc = 1;
out:
    pthread_mutex_unlock(&lock);
    return rc;
}

uint64_t events_rows_published(void)
{
    return atomic_load(&rows_published);
}

uint64_t events_rows_total(int kind)
{
    return kind >= 0 && kind < 4 ? atomic_load(&rows_total[kind]) : 0;
}

void events_reset(void)
{
    pthread_mutex_lock(&lock);
    for (size_t i = 0; i < EVENTS_RING; i++) {
        free(ring[i]);
        ring[i] = NULL;
        ring_len[i] = 0;
    }
    last_seq = 0;
    pthread_mutex_unlock(&lock);
}

/* ---- the telemetry poller ---- */

#define POLL_KINDS 4
#define POLL_SESSIONS_MAX 1024
#define POLL_BATCH 500

struct watched {
    char name[SESSION_NAME_MAX + 1];
    int64_t last[POLL_KINDS]; /* -1 until first seen */
    struct timespec mtime[2]; /* session.db, session.db-wal */
    off_t size[2];
    off_t fs_off;    /* fs-events.jsonl: bytes read (-1 until first seen) */
    int64_t fs_line; /* and lines read (the file events' ids) */
    char status[16]; /* session.json's status as last published ("" none) */
    struct timespec sj_mtime;
    off_t sj_size;
    bool seen; /* still present in this round */
};

static struct {
    pthread_t thread;
    bool running;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop;
    char *home;
    struct watched *w;
    size_t n;
    unsigned long rounds; /* completed rounds */
} poller = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static bool file_changed(const char *path, struct timespec *mt, off_t *size)
{
    struct stat st;
    if (stat(path, &st) < 0) {
        bool was = size[0] != -1;
        *size = -1;
        return was;
    }
    bool ch =
        st.st_size != *size || st.st_mtim.tv_sec != mt->tv_sec || st.st_mtim.tv_nsec != mt->tv_nsec;
    *size = st.st_size;
    *mt = st.st_mtim;
    return ch;
}

static void publish_row(const char *name, enum tq_kind kind, json_t *row)
{
    json_t *m = json_pack("{s:s,s:s,s:s,s:O}", "type", "telemetry", "session", name, "kind",
                          tq_kind_name(kind), "row", row);
    char *s = m ? json_dumps(m, JSON_COMPACT) : NULL;
    json_decref(m);
    if (s && events_publish(s) == 0)
        atomic_fetch_add(&rows_published, 1);
    free(s);
}

static void publish_rows(const char *name, enum tq_kind kind, json_t *rows)
{
    size_t i;
    json_t *row;
    json_array_foreach(rows, i, row) publish_row(name, kind, row);
}

/*
 * The session manager's session.json (server/sessions.h) changed status:
 * publish {"type":"session","session":ID,"status",...}. Sessions seen in
 * the poller's first round are recorded, not announced.
 */
static void poll_state(struct watched *w, const char *dir, bool announce)
{
    char path[4500];
    snprintf(path, sizeof(path), "%s/session.json", dir);
    if (!file_changed(path, &w->sj_mtime, &w->sj_size) || w->sj_size < 0)
        return;
    json_t *j = json_load_file(path, 0, NULL);
    const char *st = json_string_value(json_object_get(j, "status"));
    if (st && strcmp(st, w->status)) {
        snprintf(w->status, sizeof(w->status), "%.15s", st);
        json_t *m = announce ? json_pack("{s:s,s:s,s:s}", "type", "session", "session", w->name,
                                         "status", st)
                             : NULL;
        const char *keys[] = {"reason", "exit_code", "created"};
        for (size_t i = 0; m && i < sizeof(keys) / sizeof(keys[0]); i++) {
            json_t *v = json_object_get(j, keys[i]);
            if (v && !(json_is_string(v) && !json_string_length(v)))
                json_object_set(m, keys[i], v);
        }
        char *s = m ? json_dumps(m, JSON_COMPACT) : NULL;
        if (s && events_publish(s) < 0)
            LOG_DEBUG("event=session_event_dropped id=%s", w->name);
        free(s);
        json_decref(m);
    }
    json_decref(j);
}

/* Lines per round taken from a growing fs-events.jsonl. */
#define POLL_FILE_LINES 2000

/*
 * New complete lines of `dir`/fs-events.jsonl as file-events rows (with id,
 * the line number, and time_us, as tq_list gives them). Lines there when
 * the file is first seen are skipped; a file that shrank is read anew.
 */
static void poll_files(struct watched *w, const char *dir)
{
    char path[4500], *line = NULL;
    size_t cap = 0;
    snprintf(path, sizeof(path), "%s/fs-events.jsonl", dir);
    struct stat st;
    if (stat(path, &st) < 0) {
        if (w->fs_off < 0)
            w->fs_off = 0; /* every line it will get is new */
        return;
    }
    bool skip = w->fs_off < 0;
    if (skip || st.st_size < w->fs_off) {
        w->fs_off = 0;
        w->fs_line = 0;
    }
    if (st.st_size == w->fs_off)
        return;
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    if (fseeko(f, w->fs_off, SEEK_SET) == 0) {
        ssize_t n;
        int taken = 0;
        while ((skip || taken < POLL_FILE_LINES) && (n = getline(&line, &cap, f)) > 0) {
            if (line[n - 1] != '\n')
                break; /* a line still being written: read it next round */
            w->fs_off += n;
            w->fs_line++;
            if (skip)
                continue;
            taken++;
            json_t *ev = json_loadb(line, (size_t)n, 0, NULL);
            if (json_is_object(ev)) {
                json_int_t sec = json_integer_value(json_object_get(ev, "time_s"));
                json_int_t ns = json_integer_value(json_object_get(ev, "time_ns"));
                json_object_set_new(ev, "id", json_integer(w->fs_line));
                json_object_set_new(ev, "time_us", json_integer(sec * 1000000 + ns / 1000));
                publish_row(w->name, TQ_FILE, ev);
            }
            json_decref(ev);
        }
    }
    free(line);
    fclose(f);
}

static void poll_session(struct watched *w)
{
    char dir[4400], db[4500], wal[4500];
    snprintf(dir, sizeof(dir), "%s/sessions/%s", poller.home, w->name);
    snprintf(db, sizeof(db), "%s/session.db", dir);
    snprintf(wal, sizeof(wal), "%s/session.db-wal", dir);
    poll_state(w, dir, poller.rounds > 0);
    poll_files(w, dir);
    bool ch = file_changed(db, &w->mtime[0], &w->size[0]);
    ch |= file_changed(wal, &w->mtime[1], &w->size[1]);
    if (w->size[0] < 0) {
        /* No database yet: every row it will get is new. */
        for (int k = 0; k < POLL_KINDS; k++)
            w->last[k] = 0;
        return;
    }
    if (!ch)
        return;
    static const enum tq_kind kinds[POLL_KINDS] = {TQ_NET, TQ_DNS, TQ_MODEL, TQ_TOOL};
    for (int k = 0; k < POLL_KINDS; k++) {
        bool first = w->last[k] < 0;
        json_t *rows = NULL;
        /* Follow a burst to its end, a batch at a time. */
        for (;;) {
            size_t n = 0;
            if (tq_since(dir, kinds[k], &w->last[k], POLL_BATCH, &rows) == 0) {
                publish_rows(w->name, kinds[k], rows);
                n = json_array_size(rows);
            }
            json_decref(rows);
            rows = NULL;
            if (first || n < POLL_BATCH)
                break;
        }
    }
}

static struct watched *watch_find(const char *name)
{
    for (size_t i = 0; i < poller.n; i++)
        if (!strcmp(poller.w[i].name, name))
            return &poller.w[i];
    if (poller.n == POLL_SESSIONS_MAX)
        return NULL;
    struct watched *w = &poller.w[poller.n++];
    memset(w, 0, sizeof(*w));
    snprintf(w->name, sizeof(w->name), "%.63s", name);
    for (int k = 0; k < POLL_KINDS; k++)
        w->last[k] = -1;
    w->size[0] = w->size[1] = -1;
    w->fs_off = -1;
    w->sj_size = -1;
    return w;
}

static void poll_round(void)
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/sessions", poller.home);
    DIR *d = opendir(path);
    if (!d)
        return;
    for (size_t i = 0; i < poller.n; i++)
        poller.w[i].seen = false;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!session_name_ok(e->d_name))
            continue;
        struct watched *w = watch_find(e->d_name);
        if (!w)
            continue;
        w->seen = true;
        poll_session(w);
    }
    closedir(d);
    /* Forget sessions whose directory went away. */
    for (size_t i = 0; i < poller.n;) {
        if (!poller.w[i].seen)
            poller.w[i] = poller.w[--poller.n];
        else
            i++;
    }
    for (int k = 0; k < POLL_KINDS; k++) {
        unsigned long long sum = 0;
        for (size_t i = 0; i < poller.n; i++)
            sum += poller.w[i].last[k] > 0 ? (unsigned long long)poller.w[i].last[k] : 0;
        atomic_store(&rows_total[k], sum);
    }
    poller.rounds++;
}

static void *poll_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&poller.mu);
    while (!poller.stop) {
        pthread_mutex_unlock(&poller.mu);
        poll_round();
        pthread_mutex_lock(&poller.mu);
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += EVENTS_POLL_MS * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        while (!poller.stop && pthread_cond_timedwait(&poller.cv, &poller.mu, &until) == 0) {
        }
    }
    pthread_mutex_unlock(&poller.mu);
    return NULL;
}

int events_poll_start(const char *home)
{
    if (poller.running)
        return -EBUSY;
    poller.home = strdup(home);
    poller.w = calloc(POLL_SESSIONS_MAX, sizeof(*poller.w));
    poller.n = 0;
    poller.rounds = 0;
    poller.stop = false;
    if (!poller.home || !poller.w) {
        free(poller.home);
        free(poller.w);
        poller.home = NULL;
        poller.w = NULL;
        return -ENOMEM;
    }
    int rc = pthread_create(&poller.thread, NULL, poll_main, NULL);
    if (rc) {
        free(poller.home);
        free(poller.w);
        poller.home = NULL;
        poller.w = NULL;
        return -rc;
    }
    poller.running = true;
    return 0;
}

void events_poll_stop(void)
{
    if (!poller.running)
        return;
    pthread_mutex_lock(&poller.mu);
    poller.stop = true;
    pthread_cond_signal(&poller.cv);
    pthread_mutex_unlock(&poller.mu);
    pthread_join(poller.thread, NULL);
    poller.running = false;
    free(poller.home);
    free(poller.w);
    poller.home = NULL;
    poller.w = NULL;
    poller.n = 0;
}
