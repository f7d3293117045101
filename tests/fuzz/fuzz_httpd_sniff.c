/*
 * Fuzz target for the daemon's sniffer decision and request gate
 * (httpd_sniff_route() and api_gate()): the input is the first bytes of a
 * connection, as a MSG_PEEK would return them (at most HTTPD_HEAD_MAX), in
 * a heap buffer of exactly that size so the sanitizers catch reads past it.
 * An upgrade head is checked (its length within the input, every header
 * string inside the parse buffer, Upgrade naming websocket) and then gated
 * by a real api with a real token: the gate must either pass it or give a
 * JSON error with one of 400/401/403/404/405. Built as a libFuzzer target
 * with clang, and replayed over the corpus by replay_main.c.
 */
#include "api.h"
#include "auth.h"
#include "httpd.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char home[64];
static struct auth *auth;
static struct api *api;
static struct httpd_head head;

static void cleanup(void)
{
    char path[128];
    api_destroy(api);
    auth_destroy(auth);
    snprintf(path, sizeof(path), "%s/token", home);
    unlink(path);
    rmdir(home);
}

static void setup(void)
{
    char err[256];
    snprintf(home, sizeof(home), "/tmp/capsem-fuzz-sniff-XXXXXX");
    if (!mkdtemp(home) || auth_create(home, &auth, err, sizeof(err)) < 0)
        abort();
    struct api_opts o = {.auth = auth, .version = "0", .port = 7878};
    if (api_create(&o, &api) < 0)
        abort();
    atexit(cleanup);
}

static void check_inside(const char *s)
{
    if (s && (s < head.buf || s >= head.buf + sizeof(head.buf) ||
              !memchr(s, '\0', (size_t)(head.buf + sizeof(head.buf) - s))))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!api)
        setup();
    if (size > HTTPD_HEAD_MAX)
        size = HTTPD_HEAD_MAX;
    char *buf = malloc(size ? size : 1);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    size_t head_len = 0;
    enum httpd_sniff d = httpd_sniff_route(buf, size, &head, &head_len);
    if (d == HTTPD_SNIFF_UPGRADE) {
        if (head_len < 4 || head_len > size || memcmp(buf + head_len - 4, "\r\n\r\n", 4))
            abort();
        if (!head.method || !head.path || !head.upgrade || !strcasestr(head.upgrade, "websocket"))
            abort();
        check_inside(head.method);
        check_inside(head.path);
        check_inside(head.host);
        check_inside(head.origin);
        check_inside(head.authorization);
        check_inside(head.cookie);
        check_inside(head.upgrade);
        if (strchr(head.path, '?'))
            abort();
        struct api_req req = {.method = head.method,
                              .path = head.path,
                              .host = head.host,
                              .origin = head.origin,
                              .authorization = head.authorization,
                              .cookie = head.cookie,
                              .upgrade = true};
        struct api_resp resp = {0};
        const struct api_route *r = api_gate(api, &req, &resp);
        if (!r) {
            int s = resp.status;
            if (s != 400 && s != 401 && s != 403 && s != 404 && s != 405)
                abort();
            if (!resp.body || resp.body_len < 10 || memcmp(resp.body, "{\"error\":", 9))
                abort();
        } else if (resp.body) {
            abort();
        }
        api_resp_fini(&resp);
    } else if (d != HTTPD_SNIFF_WAIT && d != HTTPD_SNIFF_REST) {
        abort();
    } else if (d == HTTPD_SNIFF_WAIT && size >= HTTPD_HEAD_MAX) {
        abort(); /* a full buffer must be decided */
    }
    free(buf);
    return 0;
}
