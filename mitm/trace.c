/*
 * The trace table: an open-addressing hash of tool-call keys to (trace,
 * turn), with a ring of insertion order so the oldest key is evicted when
 * the table is full. One mutex guards everything; nothing is called while
 * it is held.
 */
#include "trace.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

struct slot {
    char *key; /* NULL: empty; TOMB: deleted */
    int64_t trace_id;
    int turn;
};

static char tomb;
#define TOMB (&tomb)

struct trace_table {
    pthread_mutex_t mu; /* guards everything below */
    struct slot *slots;
    size_t nslots; /* power of two, >= 2 * max */
    char **ring;   /* keys in insertion order (the same pointers as in slots) */
    size_t max, head, count;
    size_t ntomb; /* deleted slots: the table is rebuilt when they pile up */
    int64_t next_trace;
};

int trace_table_create(size_t max_ids, struct trace_table **out)
{
    struct trace_table *t = calloc(1, sizeof(*t));
    if (!t)
        return -ENOMEM;
    t->max = max_ids ? max_ids : TRACE_MAX_IDS_DEFAULT;
    t->nslots = 16;
    while (t->nslots < t->max * 2)
        t->nslots *= 2;
    t->slots = calloc(t->nslots, sizeof(*t->slots));
    t->ring = calloc(t->max, sizeof(*t->ring));
    if (!t->slots || !t->ring) {
        free(t->slots);
        free(t->ring);
        free(t);
        return -ENOMEM;
    }
    pthread_mutex_init(&t->mu, NULL);
    t->next_trace = 1;
    *out = t;
    return 0;
}

void trace_table_destroy(struct trace_table *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->nslots; i++) {
        if (t->slots[i].key && t->slots[i].key != TOMB)
            free(t->slots[i].key);
    }
    free(t->slots);
    free(t->ring);
    pthread_mutex_destroy(&t->mu);
    free(t);
}

static uint64_t hash(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static struct slot *lookup(struct trace_table *t, const char *key)
{
    size_t mask = t->nslots - 1;
    for (size_t i = hash(key) & mask, n = 0; n < t->nslots; i = (i + 1) & mask, n++) {
        struct slot *s = &t->slots[i];
        if (!s->key)
            return NULL;
        if (s->key != TOMB && strcmp(s->key, key) == 0)
            return s;
    }
    return NULL;
}

static void evict_oldest(struct trace_table *t)
{
    size_t tail = (t->head + t->max - t->count) % t->max;
    char *old = t->ring[tail];
    t->ring[tail] = NULL;
    t->count--;
    struct slot *s = lookup(t, old);
    if (s && s->key == old) {
        free(s->key);
        s->key = TOMB;
        t->ntomb++;
    }
}

/* Rehash the live keys into a clean array so lookups of absent keys stay short. */
static void rebuild(struct trace_table *t)
{
    struct slot *fresh = calloc(t->nslots, sizeof(*fresh));
    if (!fresh)
        return; /* keep the old array: still correct, only slower */
    size_t mask = t->nslots - 1;
    for (size_t i = 0; i < t->nslots; i++) {
        struct slot *s = &t->slots[i];
        if (!s->key || s->key == TOMB)
            continue;
        size_t j = hash(s->key) & mask;
        while (fresh[j].key)
            j = (j + 1) & mask;
        fresh[j] = *s;
    }
    free(t->slots);
    t->slots = fresh;
    t->ntomb = 0;
}

/* Remember key -> (trace, turn), replacing an older mapping of the same key. */
static void remember(struct trace_table *t, const char *key, int64_t trace_id, int turn)
{
    struct slot *s = lookup(t, key);
    if (s) {
        s->trace_id = trace_id;
        s->turn = turn;
        return;
    }
    if (t->count == t->max)
        evict_oldest(t);
    if (t->ntomb > t->nslots / 4)
        rebuild(t);
    char *k = strdup(key);
    if (!k)
        return;
    size_t mask = t->nslots - 1;
    size_t i = hash(key) & mask;
    /* tombstones are reused; the table never fills (nslots >= 2 * max) */
    while (t->slots[i].key && t->slots[i].key != TOMB)
        i = (i + 1) & mask;
    if (t->slots[i].key == TOMB)
        t->ntomb--;
    t->slots[i] = (struct slot){.key = k, .trace_id = trace_id, .turn = turn};
    t->ring[t->head] = k;
    t->head = (t->head + 1) % t->max;
    t->count++;
}

void trace_link(struct trace_table *t, struct model_call *c)
{
    if (!t || !c)
        return;
    pthread_mutex_lock(&t->mu);
    int64_t trace_id = 0;
    int turn = 0;
    for (size_t i = 0; i < c->n_tool_results; i++) {
        const char *id = c->tool_results[i].id;
        struct slot *s = id ? lookup(t, id) : NULL;
        if (s && s->turn > turn) {
            trace_id = s->trace_id;
            turn = s->turn;
        }
    }
    if (trace_id == 0) {
        trace_id = t->next_trace++;
        turn = 1;
    } else {
        turn++;
    }
    c->trace_id = trace_id;
    c->turn = turn;
    bool gemini = c->provider && strcmp(c->provider, "gemini") == 0;
    for (size_t i = 0; i < c->n_tool_calls; i++) {
        const struct model_tool_call *tc = &c->tool_calls[i];
        if (tc->id)
            remember(t, tc->id, trace_id, turn);
        if (gemini && tc->name)
            remember(t, tc->name, trace_id, turn);
    }
    pthread_mutex_unlock(&t->mu);
}
