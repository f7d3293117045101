/*
 * The price table: loaded once from JSON with jansson into a flat array,
 * checked entry by entry (a table with a bad entry is refused whole, so a
 * typo never silently drops a price), and searched linearly; tables hold
 * tens of entries.
 */
#include "pricing.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct entry {
    char *provider;
    char *model;
    bool prefix;
    struct price price;
};

struct pricing {
    char *as_of;
    struct entry *e;
    size_t n;
};

void pricing_destroy(struct pricing *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->n; i++) {
        free(t->e[i].provider);
        free(t->e[i].model);
    }
    free(t->e);
    free(t->as_of);
    free(t);
}

const char *pricing_as_of(const struct pricing *t)
{
    return t ? t->as_of : NULL;
}

/* A price field: absent is allowed when !required; present must be a number >= 0. */
static int get_price(json_t *o, const char *key, bool required, double *v, bool *has)
{
    json_t *x = json_object_get(o, key);
    if (!x) {
        if (has)
            *has = false;
        return required ? -EINVAL : 0;
    }
    if (!json_is_number(x) || json_number_value(x) < 0 || !isfinite(json_number_value(x)))
        return -EINVAL;
    *v = json_number_value(x);
    if (has)
        *has = true;
    return 0;
}

static int load_entry(json_t *m, struct entry *e, const char **why)
{
    *why = "not an object";
    if (!json_is_object(m))
        return -EINVAL;
    json_t *prov = json_object_get(m, "provider");
    json_t *model = json_object_get(m, "model");
    json_t *match = json_object_get(m, "match");
    *why = "provider must be anthropic, openai or gemini";
    if (!json_is_string(prov) || (strcmp(json_string_value(prov), "anthropic") != 0 &&
                                  strcmp(json_string_value(prov), "openai") != 0 &&
                                  strcmp(json_string_value(prov), "gemini") != 0))
        return -EINVAL;
    *why = "model must be a non-empty string";
    if (!json_is_string(model) || json_string_length(model) == 0)
        return -EINVAL;
    *why = "match must be \"exact\" or \"prefix\"";
    if (!json_is_string(match))
        return -EINVAL;
    if (strcmp(json_string_value(match), "prefix") == 0)
        e->prefix = true;
    else if (strcmp(json_string_value(match), "exact") != 0)
        return -EINVAL;
    struct price *p = &e->price;
    *why = "input and output must be numbers >= 0";
    if (get_price(m, "input", true, &p->input, NULL) != 0 ||
        get_price(m, "output", true, &p->output, NULL) != 0)
        return -EINVAL;
    *why = "cache_read and cache_write, when present, must be numbers >= 0";
    if (get_price(m, "cache_read", false, &p->cache_read, &p->has_cache_read) != 0 ||
        get_price(m, "cache_write", false, &p->cache_write, &p->has_cache_write) != 0)
        return -EINVAL;
    json_t *at = json_object_get(m, "above_tokens");
    json_t *above = json_object_get(m, "above");
    if (at || above) {
        *why = "above_tokens (an integer > 0) and above (input, output, cache_read) go together";
        if (!json_is_integer(at) || json_integer_value(at) <= 0 || !json_is_object(above))
            return -EINVAL;
        p->above_tokens = (int64_t)json_integer_value(at);
        if (get_price(above, "input", true, &p->above_input, NULL) != 0 ||
            get_price(above, "output", true, &p->above_output, NULL) != 0 ||
            get_price(above, "cache_read", false, &p->above_cache_read, &p->has_above_cache_read) !=
                0)
            return -EINVAL;
    }
    e->provider = strdup(json_string_value(prov));
    e->model = strdup(json_string_value(model));
    if (!e->provider || !e->model)
        return -ENOMEM;
    return 0;
}

int pricing_load_json(const char *text, size_t len, struct pricing **out, char *err,
                      size_t err_size)
{
    int rc = -EINVAL;
    const char *why = NULL;
    size_t bad = 0;
    json_error_t jerr;
    struct pricing *t = NULL;
    json_t *root = json_loadb(text, len, 0, &jerr);
    if (!root) {
        if (err)
            snprintf(err, err_size, "not JSON: line %d: %s", jerr.line, jerr.text);
        goto out;
    }
    json_t *as_of = json_object_get(root, "prices_as_of");
    json_t *models = json_object_get(root, "models");
    if (!json_is_string(as_of) || !json_is_array(models)) {
        why = "needs \"prices_as_of\" (a string) and \"models\" (an array)";
        goto out;
    }
    rc = -ENOMEM;
    t = calloc(1, sizeof(*t));
    if (!t)
        goto out;
    t->as_of = strdup(json_string_value(as_of));
    size_t n = json_array_size(models);
    t->e = calloc(n ? n : 1, sizeof(*t->e));
    if (!t->as_of || !t->e)
        goto out;
    for (size_t i = 0; i < n; i++) {
        rc = load_entry(json_array_get(models, i), &t->e[i], &why);
        t->n = i + 1; /* free what the entry got, even on failure */
        if (rc != 0) {
            bad = i;
            goto out;
        }
        why = NULL;
        for (size_t j = 0; j < i; j++) {
            if (t->e[j].prefix == t->e[i].prefix &&
                strcmp(t->e[j].provider, t->e[i].provider) == 0 &&
                strcmp(t->e[j].model, t->e[i].model) == 0) {
                why = "duplicate of an earlier entry";
                bad = i;
                rc = -EINVAL;
                goto out;
            }
        }
    }
    *out = t;
    t = NULL;
    rc = 0;
out:
    if (rc == -EINVAL && why && err) {
        if (t && t->n > 0)
            snprintf(err, err_size, "models[%zu]: %s", bad, why);
        else
            snprintf(err, err_size, "%s", why);
    }
    pricing_destroy(t);
    json_decref(root);
    return rc;
}

int pricing_load_file(const char *path, struct pricing **out, char *err, size_t err_size)
{
    int rc = 0;
    char *text = NULL;
    FILE *f = fopen(path, "re");
    if (!f) {
        rc = -errno;
        if (err)
            snprintf(err, err_size, "%s: %s", path, strerror(-rc));
        goto out;
    }
    size_t cap = 1 << 16, len = 0;
    text = malloc(cap);
    if (!text) {
        rc = -ENOMEM;
        goto out;
    }
    for (;;) {
        size_t got = fread(text + len, 1, cap - len, f);
        len += got;
        if (got == 0)
            break;
        if (len == cap) {
            if (cap >= (16u << 20)) {
                rc = -EFBIG;
                if (err)
                    snprintf(err, err_size, "%s: larger than 16 MiB", path);
                goto out;
            }
            char *nt = realloc(text, cap * 2);
            if (!nt) {
                rc = -ENOMEM;
                goto out;
            }
            text = nt;
            cap *= 2;
        }
    }
    if (ferror(f)) {
        rc = -EIO;
        goto out;
    }
    rc = pricing_load_json(text, len, out, err, err_size);
out:
    if (f)
        fclose(f);
    free(text);
    return rc;
}

const struct price *pricing_find(const struct pricing *t, const char *provider, const char *model)
{
    if (!t || !provider || !model)
        return NULL;
    const struct entry *best = NULL;
    size_t best_len = 0;
    for (size_t i = 0; i < t->n; i++) {
        const struct entry *e = &t->e[i];
        if (strcmp(e->provider, provider) != 0)
            continue;
        if (!e->prefix) {
            if (strcmp(e->model, model) == 0)
                return &e->price;
            continue;
        }
        size_t l = strlen(e->model);
        if (l > best_len && strncmp(e->model, model, l) == 0) {
            best = e;
            best_len = l;
        }
    }
    return best ? &best->price : NULL;
}

static double tok(int64_t n)
{
    return n > 0 ? (double)n : 0.0;
}

int pricing_cost(const struct pricing *t, const char *provider, const char *model,
                 int64_t input_tokens, int64_t output_tokens, int64_t cache_read_tokens,
                 int64_t cache_write_tokens, double *cost)
{
    const struct price *p = pricing_find(t, provider, model);
    if (!p)
        return -ENOENT;
    double in = p->input, outp = p->output;
    double cr = p->has_cache_read ? p->cache_read : p->input;
    double cw = p->has_cache_write ? p->cache_write : p->input;
    double prompt = tok(input_tokens) + tok(cache_read_tokens) + tok(cache_write_tokens);
    if (p->above_tokens > 0 && prompt > (double)p->above_tokens) {
        in = p->above_input;
        outp = p->above_output;
        cr = p->has_above_cache_read ? p->above_cache_read : p->above_input;
        if (!p->has_cache_write)
            cw = p->above_input;
    }
    *cost = (tok(input_tokens) * in + tok(output_tokens) * outp + tok(cache_read_tokens) * cr +
             tok(cache_write_tokens) * cw) /
            1e6;
    return 0;
}

void pricing_apply(const struct pricing *t, struct model_call *c)
{
    const char *model = c->model_answered ? c->model_answered : c->model_requested;
    double cost = 0;
    c->cost_known = false;
    c->cost_usd = 0;
    if (!model)
        return;
    /* Gemini names models "models/x" in some places */
    if (strncmp(model, "models/", 7) == 0)
        model += 7;
    if (pricing_cost(t, c->provider, model, c->input_tokens, c->output_tokens, c->cache_read_tokens,
                     c->cache_write_tokens, &cost) == 0) {
        c->cost_known = true;
        c->cost_usd = cost;
    }
}
