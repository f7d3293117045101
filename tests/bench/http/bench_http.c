/*
 * Microbenchmark of the proxy's HTTP/1.1 framing (mitm/http.h): parse rate
 * of a typical model-API request head, and decode rate of a 100 MiB chunked
 * body fed in 64 KiB reads (as sockets hand it over), with 16 KiB chunks and
 * with small SSE-sized chunks. The data callback only counts, as the proxy
 * only forwards. Peers in the same run: memchr over the same bytes (the
 * head parser's floor; for bodies a reference, since the decoders skip
 * over chunk data without reading it) and, when built with it, the C
 * http-parser library (Debian libhttp-parser-dev) on the same input and
 * read sizes. Rates are per second of this thread's CPU time, so other
 * load on the machine skews them less. Prints MB/s; not a test, nothing is asserted beyond the
 * parsers agreeing on what they decoded.
 *
 *   cmake --build build --target bench_http && build/bin/bench_http [seconds]
 */
#include "http.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef HAVE_HTTP_PARSER
#include <http_parser.h>
#endif

#define BODY_BYTES (100ull << 20)
#define READ_SIZE 65536

static const char head_text[] =
    "POST /v1/messages?beta=true HTTP/1.1\r\n"
    "Host: api.anthropic.com\r\n"
    "Connection: keep-alive\r\n"
    "Accept: application/json\r\n"
    "X-Stainless-Retry-Count: 0\r\n"
    "X-Stainless-Timeout: 600\r\n"
    "X-Stainless-Lang: js\r\n"
    "X-Stainless-Package-Version: 0.55.1\r\n"
    "X-Stainless-OS: Linux\r\n"
    "X-Stainless-Arch: x64\r\n"
    "X-Stainless-Runtime: node\r\n"
    "X-Stainless-Runtime-Version: v22.11.0\r\n"
    "anthropic-dangerous-direct-browser-access: true\r\n"
    "anthropic-version: 2023-06-01\r\n"
    "authorization: Bearer sk-ant-oat01-0000000000000000000000000000000000000000\r\n"
    "x-app: cli\r\n"
    "User-Agent: claude-cli/1.0.93 (external, cli)\r\n"
    "content-type: application/json\r\n"
    "anthropic-beta: oauth-2025-04-20,interleaved-thinking-2025-05-14\r\n"
    "x-stainless-helper-method: stream\r\n"
    "accept-language: *\r\n"
    "sec-fetch-mode: cors\r\n"
    "accept-encoding: gzip, deflate\r\n"
    "content-length: 183452\r\n"
    "\r\n";

static double now(void)
{
    struct timespec ts;

    /* CPU time of this thread: the build machines are shared and often loaded. */
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static volatile uint64_t sink;

/* ---- heads ---- */

static double bench_head_ours(double secs, size_t len)
{
    static struct http_head h;
    double t0 = now(), t;
    uint64_t n = 0;

    do {
        for (int i = 0; i < 1000; i++) {
            long r = http_parse_head(head_text, len, true, &h, NULL);

            if (r != (long)len) {
                fprintf(stderr, "bench: head parse failed: %ld\n", r);
                exit(1);
            }
            sink += h.nheaders;
        }
        n += 1000;
        t = now() - t0;
    } while (t < secs);
    return (double)n * (double)len / t / 1e6;
}

static double bench_head_memchr(double secs, size_t len)
{
    double t0 = now(), t;
    uint64_t n = 0;

    do {
        for (int i = 0; i < 1000; i++) {
            const char *p = head_text, *end = head_text + len;
            unsigned lines = 0;

            while ((p = memchr(p, '\n', (size_t)(end - p))) != NULL) {
                p++;
                lines++;
            }
            sink += lines;
        }
        n += 1000;
        t = now() - t0;
    } while (t < secs);
    return (double)n * (double)len / t / 1e6;
}

/* ---- bodies ---- */

/* A chunked body of BODY_BYTES data bytes in chunks of `chunk` bytes. */
static char *make_chunked(size_t chunk, size_t *out_len)
{
    size_t nchunks = (size_t)(BODY_BYTES / chunk);
    size_t cap = (size_t)BODY_BYTES + nchunks * 16 + 16, off = 0;
    char *p = malloc(cap);

    if (!p) {
        fprintf(stderr, "bench: out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < nchunks; i++) {
        off += (size_t)snprintf(p + off, cap - off, "%zx\r\n", chunk);
        memset(p + off, 'a' + (int)(i % 26), chunk);
        off += chunk;
        memcpy(p + off, "\r\n", 2);
        off += 2;
    }
    memcpy(p + off, "0\r\n\r\n", 5);
    *out_len = off + 5;
    return p;
}

static void count_data(void *opaque, const uint8_t *p, size_t len)
{
    (void)p;
    *(uint64_t *)opaque += len;
}

static double bench_body_ours_once(const char *body, size_t len)
{
    struct http_body b;
    uint64_t got = 0;
    double t0 = now(), t;
    size_t off = 0;

    http_body_init(&b, HTTP_BODY_CHUNKED, -1);
    while (off < len && !b.done) {
        size_t n = len - off < READ_SIZE ? len - off : READ_SIZE;
        long r = http_body_feed(&b, (const uint8_t *)body + off, n, count_data, &got);

        if (r < 0) {
            fprintf(stderr, "bench: body decode failed at %zu\n", off);
            exit(1);
        }
        off += (size_t)r;
    }
    t = now() - t0;
    if (!b.done || got != BODY_BYTES || off != len) {
        fprintf(stderr, "bench: decoded %llu bytes, want %llu\n", (unsigned long long)got,
                (unsigned long long)BODY_BYTES);
        exit(1);
    }
    return t;
}

static double bench_body_ours(const char *body, size_t len, double secs)
{
    double t = 0;
    int n = 0;

    do {
        t += bench_body_ours_once(body, len);
        n++;
    } while (t < secs);
    return (double)len * n / t / 1e6;
}

static double bench_body_memchr(const char *body, size_t len)
{
    double t0 = now();
    uint64_t count = 0;

    for (size_t off = 0; off < len; off += READ_SIZE) {
        size_t n = len - off < READ_SIZE ? len - off : READ_SIZE;

        count += memchr(body + off, '\0', n) != NULL;
    }
    sink += count;
    return (double)len / (now() - t0) / 1e6;
}

#ifdef HAVE_HTTP_PARSER
static int hp_count(http_parser *p, const char *at, size_t len)
{
    (void)at;
    *(uint64_t *)p->data += len;
    return 0;
}

static int hp_done(http_parser *p)
{
    (void)p;
    return 0;
}

static double bench_head_peer(double secs, size_t len)
{
    http_parser_settings s;
    double t0 = now(), t;
    uint64_t n = 0, bytes = 0;

    memset(&s, 0, sizeof(s));
    s.on_header_field = hp_count;
    s.on_header_value = hp_count;
    s.on_url = hp_count;
    s.on_headers_complete = hp_done;
    do {
        for (int i = 0; i < 1000; i++) {
            http_parser p;

            http_parser_init(&p, HTTP_REQUEST);
            p.data = &bytes;
            if (http_parser_execute(&p, &s, head_text, len) != len ||
                HTTP_PARSER_ERRNO(&p) != HPE_OK) {
                fprintf(stderr, "bench: http-parser failed on the head\n");
                exit(1);
            }
        }
        n += 1000;
        t = now() - t0;
    } while (t < secs);
    sink += bytes;
    return (double)n * (double)len / t / 1e6;
}

static double bench_body_peer_once(const char *body, size_t len)
{
    static const char head[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
    http_parser_settings s;
    http_parser p;
    uint64_t got = 0;
    double t0, t;

    memset(&s, 0, sizeof(s));
    s.on_body = hp_count;
    http_parser_init(&p, HTTP_RESPONSE);
    p.data = &got;
    http_parser_execute(&p, &s, head, sizeof(head) - 1);
    t0 = now();
    for (size_t off = 0; off < len; off += READ_SIZE) {
        size_t n = len - off < READ_SIZE ? len - off : READ_SIZE;

        if (http_parser_execute(&p, &s, body + off, n) != n) {
            fprintf(stderr, "bench: http-parser failed: %s\n",
                    http_errno_name(HTTP_PARSER_ERRNO(&p)));
            exit(1);
        }
    }
    t = now() - t0;
    if (got != BODY_BYTES) {
        fprintf(stderr, "bench: http-parser decoded %llu bytes\n", (unsigned long long)got);
        exit(1);
    }
    return t;
}

static double bench_body_peer(const char *body, size_t len, double secs)
{
    double t = 0;
    int n = 0;

    do {
        t += bench_body_peer_once(body, len);
        n++;
    } while (t < secs);
    return (double)len * n / t / 1e6;
}
#endif

static double best(double a, double b)
{
    return a > b ? a : b;
}

int main(int argc, char **argv)
{
    double secs = argc > 1 ? strtod(argv[1], NULL) : 1.0;
    size_t hlen = sizeof(head_text) - 1;
    static const size_t chunks[] = {16384, 64};

    if (secs <= 0)
        secs = 1.0;
    printf("head (%zu bytes, 24 headers), best of 3 runs of %.1f s:\n", hlen, secs);
    {
        double ours = 0, floor = 0;

        for (int i = 0; i < 3; i++) {
            ours = best(ours, bench_head_ours(secs, hlen));
            floor = best(floor, bench_head_memchr(secs, hlen));
        }
        printf("  capsem http_parse_head  %8.0f MB/s  %9.0f heads/s\n", ours,
               ours * 1e6 / (double)hlen);
        printf("  memchr line scan        %8.0f MB/s  (floor)\n", floor);
#ifdef HAVE_HTTP_PARSER
        {
            double peer = 0;

            for (int i = 0; i < 3; i++)
                peer = best(peer, bench_head_peer(secs, hlen));
            printf("  http-parser 2.9         %8.0f MB/s  %9.0f heads/s  (capsem/peer %.2fx)\n",
                   peer, peer * 1e6 / (double)hlen, ours / peer);
        }
#endif
    }
    for (size_t c = 0; c < sizeof(chunks) / sizeof(chunks[0]); c++) {
        size_t len;
        char *body = make_chunked(chunks[c], &len);
        double ours = 0, floor = 0;

        printf("chunked body: 100 MiB of data in %zu-byte chunks (%zu bytes on the wire), "
               "%d KiB reads, best of 3:\n",
               chunks[c], len, READ_SIZE / 1024);
        for (int i = 0; i < 3; i++) {
            ours = best(ours, bench_body_ours(body, len, secs));
            floor = best(floor, bench_body_memchr(body, len));
        }
        printf("  capsem http_body_feed   %8.0f MB/s\n", ours);
        printf("  memchr over the bytes   %8.0f MB/s  (reads every byte; the decoders do not)\n",
               floor);
#ifdef HAVE_HTTP_PARSER
        {
            double peer = 0;

            for (int i = 0; i < 3; i++)
                peer = best(peer, bench_body_peer(body, len, secs));
            printf("  http-parser 2.9         %8.0f MB/s  (capsem/peer %.2fx)\n", peer,
                   ours / peer);
        }
#endif
        free(body);
    }
    return sink == 42 ? 2 : 0;
}
