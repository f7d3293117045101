/*
 * Internal to the policy engine: one config document (corp or user) after
 * validation (config.c), before policy.c combines the two into a policy.
 * Not for use outside mitm/policy.c, mitm/config.c and their tests.
 */
#ifndef CAPSEM_MITM_POLICY_DOC_H
#define CAPSEM_MITM_POLICY_DOC_H

#include "sink.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#define PDOC_MAX_RULES 4096
#define PDOC_MAX_LIST 64 /* methods or paths in one rule */
#define PDOC_MAX_PORTS 64
#define PDOC_MAX_RESOLVE 256
#define PDOC_MAX_ID 64
#define PDOC_MAX_DOMAIN 253
#define PDOC_MAX_PATH 1024
#define PDOC_MAX_FILE_PATH 4096
#define PDOC_MAX_BYTES (1024 * 1024) /* a config file larger than this is refused */

enum policy_preset { PRESET_NONE = -1, PRESET_HIGH = 0, PRESET_MEDIUM = 1, PRESET_OPEN = 2 };

struct pdoc_path {
    char *pat;
    bool glob; /* fnmatch() over the whole path; otherwise a prefix */
};

struct pdoc_rule {
    char *id;
    char *domain;   /* lower case: "*", "*.x.com" or "x.com" */
    char **methods; /* upper case; none = any method */
    size_t nmethods;
    struct pdoc_path *paths; /* none = any path */
    size_t npaths;
    enum decision action;
};

struct pdoc_resolve {
    char *host; /* lower case */
    unsigned port;
    char *target; /* "a.b.c.d:port" */
};

struct pdoc {
    bool locked;
    enum policy_preset preset;
    int def; /* enum decision, or -1 when not set */
    struct pdoc_rule *rules;
    size_t nrules;
    unsigned ports[PDOC_MAX_PORTS];
    size_t nports;
    char *ca_file;
    struct pdoc_resolve *resolves;
    size_t nresolves;
};

/* "high", "medium", "open" ("none" for PRESET_NONE). */
const char *policy_preset_name(enum policy_preset p);

void pdoc_init(struct pdoc *d);
/* Free what `d` owns and reset it. Accepts NULL. */
void pdoc_fini(struct pdoc *d);
void pdoc_rule_fini(struct pdoc_rule *r);

/*
 * Validate `doc` (borrowed) against schemas/config.schema.json and fill `d`.
 * `corp` says whether this is the corp file (only it may set "locked").
 * On a bad document returns -EINVAL with "<file>: <json path>: <reason>" in
 * err; -ENOMEM. `d` is left empty on failure.
 */
__attribute__((warn_unused_result)) int pdoc_parse(const json_t *doc, const char *file, bool corp,
                                                   struct pdoc *d, char *err, size_t errlen);

/*
 * Read and parse the JSON file at `path`: 0 with *out NULL when it does not
 * exist, 0 with *out set (the caller's reference), or -errno with
 * "<path>: <reason>" (line and column for bad JSON) in err.
 */
__attribute__((warn_unused_result)) int pdoc_read_file(const char *path, json_t **out, char *err,
                                                       size_t errlen);

#endif
