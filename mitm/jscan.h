/*
 * A JSON reader for model request bodies that keeps only what the provider
 * parsers read. It builds the same jansson tree as json_loadb(data, len, 0,
 * NULL) would, except that a string value longer than a bound keeps only its
 * first bytes (cut at a UTF-8 character boundary) and the rest of it is
 * skipped at memory-scan speed instead of being decoded and copied. The
 * provider parsers read counts, short strings and previews of at most
 * MODEL_PREVIEW_MAX bytes, so with a bound well above that they see exactly
 * what the full tree would show them. No I/O.
 *
 * Input json_loadb refuses is refused here too: structure, numbers (integer
 * vs real as jansson decides; an integer that overflows json_int_t and a real
 * that overflows double are errors), literals, escapes with \uXXXX surrogate
 * pairs, \u0000 (refused as with flags 0), control characters in strings,
 * invalid UTF-8, a top level that is not an object or array, trailing
 * garbage, empty and truncated input, and nesting past jansson's depth of
 * 2048 values (the reader itself does not recurse). Duplicate keys: the last
 * value wins, at the first key's place, as in jansson. Object keys are never
 * cut. The one difference: invalid UTF-8 inside the skipped part of a long
 * string is not detected (escapes and control characters there are); such a
 * body is not valid JSON and the provider refuses it anyway.
 */
#ifndef CAPSEM_MITM_JSCAN_H
#define CAPSEM_MITM_JSCAN_H

#include <jansson.h>
#include <stddef.h>

/* The default bound on kept string bytes for request bodies. */
#define JSCAN_STRING_MAX 4096

/* Nesting depth past which input is refused (jansson's JSON_PARSER_MAX_DEPTH). */
#define JSCAN_DEPTH_MAX 2048

/*
 * Parse data[0..len) into *out (a new reference to an object or array):
 * string values longer than max_string bytes (after unescaping) keep their
 * first max_string bytes, less a UTF-8 character cut there. 0, -EINVAL for
 * malformed input (then *err_off, when not NULL, is the byte offset where it
 * was found), -ENOMEM. *out is written only on success.
 */
__attribute__((warn_unused_result)) int jscan_load(const char *data, size_t len, size_t max_string,
                                                   json_t **out, size_t *err_off);

#endif
