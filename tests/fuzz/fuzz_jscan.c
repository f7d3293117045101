/*
 * Fuzz target for the pruning request reader (mitm/jscan.h), differential
 * against jansson. Input: one byte giving the string bound (255: none), then
 * the JSON text. The target aborts when jscan_load and json_loadb (flags 0)
 * disagree: one refuses what the other reads, or the trees differ after
 * jansson's strings are cut as jscan cuts them. The documented difference
 * (invalid UTF-8 in a skipped string tail) is allowed when reading without a
 * bound refuses it too. Replayed over its corpus by replay_main.c in the
 * normal test run; a libFuzzer build with clang.
 */
#include "jscan.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void cut(json_t *v, size_t bound)
{
    size_t i;
    const char *k;
    json_t *e;
    void *tmp;
    if (json_is_string(v) || (!json_is_array(v) && !json_is_object(v)))
        return;
    if (json_is_array(v)) {
        json_array_foreach(v, i, e)
        {
            if (json_is_string(e) && json_string_length(e) > bound) {
                size_t n = bound;
                while (n > 0 && ((unsigned char)json_string_value(e)[n] & 0xC0) == 0x80)
                    n--;
                if (json_array_set_new(v, i, json_stringn(json_string_value(e), n)) != 0)
                    abort();
            } else {
                cut(e, bound);
            }
        }
        return;
    }
    json_object_foreach_safe(v, tmp, k, e)
    {
        if (json_is_string(e) && json_string_length(e) > bound) {
            size_t n = bound;
            while (n > 0 && ((unsigned char)json_string_value(e)[n] & 0xC0) == 0x80)
                n--;
            if (json_object_set_new(v, k, json_stringn(json_string_value(e), n)) != 0)
                abort();
        } else {
            cut(e, bound);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t bound = data[0] == 255 ? SIZE_MAX : data[0];
    const char *d = (const char *)data + 1;
    size_t n = size - 1;
    json_error_t err;
    json_t *ref = json_loadb(d, n, 0, &err);
    json_t *got = NULL;
    int rc = jscan_load(d, n, bound, &got, NULL);
    if (!ref) {
        if (rc == 0) {
            json_t *full = NULL;
            if (json_error_code(&err) != json_error_invalid_utf8 ||
                jscan_load(d, n, SIZE_MAX, &full, NULL) != -EINVAL)
                abort();
            json_decref(got);
        } else if (rc != -EINVAL) {
            abort();
        }
        return 0;
    }
    if (rc != 0)
        abort();
    cut(ref, bound);
    char *a = json_dumps(ref, JSON_COMPACT);
    char *b = json_dumps(got, JSON_COMPACT);
    if (!a || !b || !json_equal(ref, got) || strcmp(a, b) != 0)
        abort();
    free(a);
    free(b);
    json_decref(ref);
    json_decref(got);
    return 0;
}
