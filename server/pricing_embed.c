/*
 * Chooses and loads a session's price table: the user's
 * $CAPSEM_HOME/pricing.json when present and valid, the table embedded at
 * build time otherwise. See pricing_embed.h.
 */
#include "pricing_embed.h"

#include "log.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

int pricing_embed_load(const char *home, struct pricing **out, char *warn, size_t warnlen)
{
    char path[PATH_MAX], reason[PATH_MAX + 512] = "";
    struct pricing *t = NULL;
    struct stat st;
    int rc, n;

    if (warn && warnlen)
        warn[0] = '\0';
    if (home && home[0]) {
        n = snprintf(path, sizeof(path), "%s/pricing.json", home);
        if (n < 0 || (size_t)n >= sizeof(path)) {
            snprintf(reason, sizeof(reason), "%s/pricing.json: path too long", home);
        } else if (stat(path, &st) == 0 || errno != ENOENT) {
            rc = pricing_load_file(path, &t, reason, sizeof(reason));
            if (rc == 0) {
                LOG_INFO("event=pricing_loaded file=\"%s\" as_of=%s", path, pricing_as_of(t));
                *out = t;
                return 0;
            }
            /* The loader names the file for read errors; make sure every reason names it. */
            if (!strstr(reason, path)) {
                char tmp[sizeof(reason)];

                n = snprintf(tmp, sizeof(tmp), "%s: %s", path,
                             reason[0] ? reason : strerror(rc < 0 ? -rc : rc));
                if (n > 0)
                    memcpy(reason, tmp, sizeof(reason));
            }
        }
    }
    rc = pricing_load_json(pricing_embedded_json, pricing_embedded_len, &t, NULL, 0);
    if (rc < 0)
        return rc;
    if (reason[0]) {
        LOG_WARN("event=pricing_file_refused reason=\"%s\" (using the built-in prices of %s)",
                 reason, pricing_as_of(t));
        if (warn && warnlen &&
            snprintf(warn, warnlen, "%s; using the built-in prices of %s", reason,
                     pricing_as_of(t)) < 0)
            warn[0] = '\0';
    }
    *out = t;
    return 0;
}
