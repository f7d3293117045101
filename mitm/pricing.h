/*
 * Model prices (schemas/pricing.json, described in schemas/pricing.md) and
 * the cost of a call: tokens of each kind times that kind's price per
 * million. Lookups are by provider and model, an exact entry first, then the
 * longest prefix entry; a model found by neither has no cost (flagged, never
 * guessed). A loaded table is immutable: any number of threads may look up
 * in it at once.
 */
#ifndef CAPSEM_MITM_PRICING_H
#define CAPSEM_MITM_PRICING_H

#include "sink.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Prices in USD per million tokens; a kind with no price is charged at `input` (see pricing.md). */
struct price {
    double input, output, cache_read, cache_write;
    bool has_cache_read, has_cache_write;
    int64_t above_tokens; /* > 0: prompts larger than this use the `above` prices */
    double above_input, above_output, above_cache_read;
    bool has_above_cache_read;
};

struct pricing;

/*
 * Parse a price table from JSON text p[0..len). 0, -EINVAL for a table that
 * breaks the schema (with a reason naming the entry in `err`, when not
 * NULL), -ENOMEM.
 */
__attribute__((warn_unused_result)) int
pricing_load_json(const char *p, size_t len, struct pricing **out, char *err, size_t err_size);
/* As pricing_load_json() from a file; -errno when it cannot be read. */
__attribute__((warn_unused_result)) int pricing_load_file(const char *path, struct pricing **out,
                                                          char *err, size_t err_size);
/* Free; accepts NULL. */
void pricing_destroy(struct pricing *t);

/* The table's "prices_as_of" date (borrowed). */
const char *pricing_as_of(const struct pricing *t);

/* The price of `model` at `provider` ("anthropic", "openai", "gemini"), or NULL. */
const struct price *pricing_find(const struct pricing *t, const char *provider, const char *model);

/*
 * The cost in USD of a call with these token counts (negative counts as 0;
 * input_tokens excludes cache reads and writes). 0, or -ENOENT when the model
 * is not in the table (*cost untouched).
 */
int pricing_cost(const struct pricing *t, const char *provider, const char *model,
                 int64_t input_tokens, int64_t output_tokens, int64_t cache_read_tokens,
                 int64_t cache_write_tokens, double *cost);

/*
 * Fill c->cost_usd and c->cost_known from c's tokens, priced by the answered
 * model when the response named one, else the requested one. `t` may be NULL
 * (no table: cost unknown).
 */
void pricing_apply(const struct pricing *t, struct model_call *c);

#endif
