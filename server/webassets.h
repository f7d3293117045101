/*
 * The dashboard's files, embedded in the capsem binary. The build (web/)
 * bundles the app with esbuild and generates a table of every output file,
 * gzipped, with its SHA-256 ETag and content type; the capsem executable
 * links that table, so webassets_lookup finds them. A program that does not
 * link it (unit tests of other modules) sees an empty table. webassets_respond
 * turns one file into a response for the static routes in api.c: 304 when
 * If-None-Match names its ETag, gzip when the client accepts it, else the
 * bytes inflated here.
 */
#ifndef CAPSEM_SERVER_WEBASSETS_H
#define CAPSEM_SERVER_WEBASSETS_H

#include "api.h"

#include <stdbool.h>
#include <stddef.h>

struct webasset {
    const char *path;          /* "index.html", "app.js": no leading slash */
    const unsigned char *data; /* the stored bytes */
    size_t len;
    size_t raw_len;   /* length once inflated (== len when not gzip) */
    bool gzip;        /* data is a gzip member */
    const char *etag; /* "\"<sha-256 hex of the raw bytes>\"", quotes included */
    const char *type; /* Content-Type */
};

/*
 * The embedded table and its length (count 0 and NULL when the program does
 * not link the generated table). Defined weak here; the generated file
 * overrides it.
 */
const struct webasset *webassets_table(size_t *count);

/* The file named `path` (leading '/' ignored) in tab[0..n), or NULL. */
const struct webasset *webassets_find(const struct webasset *tab, size_t n, const char *path);

/* webassets_find on the embedded table. */
const struct webasset *webassets_lookup(const char *path);

/* True when an If-None-Match header value (may be NULL) names `etag` or is "*". */
bool webassets_etag_match(const char *if_none_match, const char *etag);

/* True when an Accept-Encoding header value (may be NULL) accepts gzip (no q=0). */
bool webassets_accepts_gzip(const char *accept_encoding);

/*
 * The bytes of `a` inflated into a malloc'd buffer (*out, *len; the caller
 * frees). 0, -ENOMEM, or -EBADMSG when the stored data is not valid gzip of
 * raw_len bytes.
 */
__attribute__((warn_unused_result)) int webassets_inflate(const struct webasset *a, char **out,
                                                          size_t *len);

/*
 * Fill `resp` with the file `path` for `req`: 200 with the bytes (gzip when
 * accepted), 304 when If-None-Match matches, 404 when there is no such
 * file (a build without the dashboard says so in the error). 0 or -ENOMEM.
 */
__attribute__((warn_unused_result)) int webassets_respond(const struct api_req *req,
                                                          struct api_resp *resp, const char *path);

#endif
