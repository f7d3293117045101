/* Kernel command line lookup (see cmdline.h). */
#include "cmdline.h"

#include <string.h>

static bool is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

bool cmdline_get(const char *cmdline, size_t len, const char *key, struct slice *val)
{
    size_t klen = strlen(key);
    bool found = false;
    size_t i = 0;
    while (i < len) {
        while (i < len && is_blank(cmdline[i]))
            i++;
        size_t start = i;
        bool quoted = false;
        while (i < len && (quoted || !is_blank(cmdline[i]))) {
            if (cmdline[i] == '"')
                quoted = !quoted;
            i++;
        }
        size_t wlen = i - start;
        const char *w = cmdline + start;
        if (wlen < klen || memcmp(w, key, klen) != 0)
            continue;
        if (wlen == klen) {
            *val = (struct slice){(const uint8_t *)w + wlen, 0};
            found = true;
        } else if (w[klen] == '=') {
            const char *v = w + klen + 1;
            size_t vlen = wlen - klen - 1;
            if (vlen >= 2 && v[0] == '"' && v[vlen - 1] == '"') {
                v++;
                vlen -= 2;
            }
            *val = (struct slice){(const uint8_t *)v, vlen};
            found = true;
        }
    }
    return found;
}

bool cmdline_is(const char *cmdline, size_t len, const char *key, const char *want)
{
    struct slice v;
    if (!cmdline_get(cmdline, len, key, &v))
        return false;
    size_t wl = strlen(want);
    return v.len == wl && memcmp(v.ptr, want, wl) == 0;
}
