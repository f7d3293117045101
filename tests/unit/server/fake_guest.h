/*
 * A stand-in for the guest agent in the server's unit tests: blocking
 * helpers that speak the control-channel framing on a stream socket, so a
 * test thread (or a fake capsem-vmm process) can play the guest side of
 * schemas/vsock-control.md byte for byte, including malformed frames.
 */
#ifndef CAPSEM_TESTS_FAKE_GUEST_H
#define CAPSEM_TESTS_FAKE_GUEST_H

#include "buf.h"
#include "frame.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/un.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Write all of p[0..len); false on error. */
static inline bool fg_write(int fd, const void *p, size_t len)
{
    const uint8_t *b = p;
    while (len) {
        ssize_t n = send(fd, b, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        b += n;
        len -= (size_t)n;
    }
    return true;
}

static inline bool fg_read(int fd, void *p, size_t len)
{
    uint8_t *b = p;
    while (len) {
        ssize_t n = recv(fd, b, len, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        b += n;
        len -= (size_t)n;
    }
    return true;
}

static inline bool fg_send_json(int fd, const char *json)
{
    struct buf b;
    buf_init(&b, 0);
    bool ok = frame_put_json(&b, json, strlen(json)) == 0 && fg_write(fd, b.data, b.len);
    buf_fini(&b);
    return ok;
}

static inline bool fg_send_data(int fd, uint32_t id, uint8_t stream, const void *p, size_t len)
{
    struct buf b;
    buf_init(&b, 0);
    bool ok = frame_put_data(&b, id, stream, p, len) == 0 && fg_write(fd, b.data, b.len);
    buf_fini(&b);
    return ok;
}

/* One frame as read by the fake guest; payload is heap memory owned by the frame. */
struct fg_frame {
    uint8_t kind;
    uint8_t *payload;
    uint32_t len;
    /* Data frames: */
    uint32_t exec_id;
    uint8_t stream;
    const uint8_t *data;
    size_t data_len;
    /* JSON frames (parsed; NULL when not JSON or not parseable): */
    json_t *json;
    const char *type;
};

static inline void fg_frame_free(struct fg_frame *f)
{
    free(f->payload);
    json_decref(f->json);
    memset(f, 0, sizeof(*f));
}

/* Read one whole frame; false at EOF or on a malformed header. */
static inline bool fg_recv(int fd, struct fg_frame *f)
{
    uint8_t h[FRAME_HDR_LEN];
    memset(f, 0, sizeof(*f));
    if (!fg_read(fd, h, sizeof(h)))
        return false;
    f->len = be32_load(h);
    f->kind = h[4];
    if (f->len > FRAME_MAX_PAYLOAD)
        return false;
    f->payload = malloc(f->len + 1);
    if (!f->payload || !fg_read(fd, f->payload, f->len)) {
        fg_frame_free(f);
        return false;
    }
    f->payload[f->len] = 0;
    if (f->kind == FRAME_DATA && f->len >= FRAME_DATA_HDR_LEN) {
        f->exec_id = be32_load(f->payload);
        f->stream = f->payload[4];
        f->data = f->payload + FRAME_DATA_HDR_LEN;
        f->data_len = f->len - FRAME_DATA_HDR_LEN;
    } else if (f->kind == FRAME_JSON) {
        f->json = json_loadb((const char *)f->payload, f->len, 0, NULL);
        f->type = json_string_value(json_object_get(f->json, "type"));
    }
    return true;
}

/* Read frames until a JSON message of `type`; false at EOF. Other frames are dropped. */
static inline bool fg_expect(int fd, const char *type, struct fg_frame *f)
{
    while (fg_recv(fd, f)) {
        if (f->type && strcmp(f->type, type) == 0)
            return true;
        fg_frame_free(f);
    }
    return false;
}

/*
 * A fake capsem-vmm for tests that spawn one: reads the config the runner
 * wrote and, as FAKE_VMM_MODE says, plays the agent on <uds>_5000 ("ok":
 * output and exit 7; "hostname": "host <the hello's hostname>" and exit 7; "echo": stdin back
 * on stdout, exit 42; "hang": runs
 * until signalled, then exits 50 + signal; "lost": drops the connection and exits 3; "flood": 8 MiB
 * of output, then exit 7), prints an
 * error and exits 1 ("exit1"), prints a kernel panic ("panic") or never
 * connects ("silent").
 */

static inline int fake_agent(const char *uds)
{
    char path[600];
    snprintf(path, sizeof(path), "%s_5000", uds);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path) >= (int)sizeof(sa.sun_path))
        return 1;
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
        return 1;
    /* The real VMM creates <uds> for host-initiated connections; leave one for cleanup. */
    int stub = open(uds, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
    if (stub >= 0)
        close(stub);
    const char *mode = getenv("FAKE_VMM_MODE");
    fg_send_json(fd, "{\"type\":\"hello\",\"protocol\":1,\"agent\":\"fake\",\"kernel\":\"6.1.0-"
                     "fake\",\"boot_ms\":5}");
    struct fg_frame f;
    char host[80] = "";
    if (!strcmp(mode, "hostname")) {
        /* Like "ok", but the output is the host name the host's hello carried. */
        if (!fg_expect(fd, "hello", &f))
            return 1;
        const char *h = json_string_value(json_object_get(f.json, "hostname"));
        snprintf(host, sizeof(host), "host %.64s\n", h ? h : "(none)");
        fg_frame_free(&f);
    }
    if (!fg_expect(fd, "exec", &f))
        return 1;
    uint32_t id = (uint32_t)json_integer_value(json_object_get(f.json, "id"));
    fg_frame_free(&f);
    if (!strcmp(mode, "lost")) {
        printf("fake-vmm: guest crashed\n");
        return 3;
    }
    if (!strcmp(mode, "echo")) {
        /* stdin comes back on stdout, a fixed line goes to stderr, exit 42. */
        while (fg_recv(fd, &f)) {
            bool eof = f.kind == FRAME_DATA && f.stream == 0 && f.data_len == 0;
            if (f.kind == FRAME_DATA && f.data_len)
                fg_send_data(fd, id, 1, f.data, f.data_len);
            fg_frame_free(&f);
            if (eof)
                break;
        }
        fg_send_data(fd, id, 2, "fake stderr\n", 12);
    } else if (!strcmp(mode, "hang")) {
        /* The command never ends: only a signal or a timeout stops the run. */
        char started[64];
        snprintf(started, sizeof(started), "{\"type\":\"started\",\"id\":%u,\"pid\":9}", id);
        fg_send_json(fd, started);
        fg_send_data(fd, id, 1, "running\n", 8);
        while (fg_recv(fd, &f)) {
            if (f.type && !strcmp(f.type, "signal")) {
                int sig = (int)json_integer_value(json_object_get(f.json, "signal"));
                fg_frame_free(&f);
                char m[96];
                fg_send_data(fd, id, 1, NULL, 0);
                fg_send_data(fd, id, 2, NULL, 0);
                /* 50 + signal: the test can tell a forwarded signal from a teardown. */
                snprintf(m, sizeof(m), "{\"type\":\"exit\",\"id\":%u,\"code\":%d}", id, 50 + sig);
                fg_send_json(fd, m);
                break;
            }
            fg_frame_free(&f);
        }
        if (!fg_expect(fd, "shutdown", &f))
            return 1;
        fg_frame_free(&f);
        fg_send_json(fd, "{\"type\":\"bye\"}");
        close(fd);
        return 0;
    }
    if (!strcmp(mode, "flood")) {
        /* 8 MiB of output: far more than a pipe holds. */
        static uint8_t chunk[65536];
        memset(chunk, 'x', sizeof(chunk));
        for (int i = 0; i < 128; i++)
            if (!fg_send_data(fd, id, 1, chunk, sizeof(chunk)))
                return 0;
    } else if (host[0]) {
        fg_send_data(fd, id, 1, host, strlen(host));
    } else if (strcmp(mode, "echo")) {
        fg_send_data(fd, id, 1, "hello from fake\n", 16);
    }
    fg_send_data(fd, id, 1, NULL, 0);
    fg_send_data(fd, id, 2, NULL, 0);
    char msg[96];
    snprintf(msg, sizeof(msg), "{\"type\":\"exit\",\"id\":%u,\"code\":%d}", id,
             strcmp(mode, "echo") ? 7 : 42);
    fg_send_json(fd, msg);
    if (!fg_expect(fd, "shutdown", &f))
        return 1;
    fg_frame_free(&f);
    fg_send_json(fd, "{\"type\":\"bye\"}");
    close(fd);
    return 0;
}

static inline int fake_vmm_main(const char *config)
{
    json_t *c = json_load_file(config, 0, NULL);
    const char *uds = json_string_value(json_object_get(json_object_get(c, "vsock"), "uds"));
    const char *mode = getenv("FAKE_VMM_MODE");
    if (!uds || !mode)
        return 2;
    if (!strcmp(mode, "ok") || !strcmp(mode, "lost") || !strcmp(mode, "echo") ||
        !strcmp(mode, "hang") || !strcmp(mode, "flood") || !strcmp(mode, "hostname"))
        return fake_agent(uds);
    if (!strcmp(mode, "exit1")) {
        fprintf(stderr, "2026-01-01T00:00:00.000Z ERR capsem-vmm event=kvm_create_vm err=-13\n");
        fprintf(stderr, "2026-01-01T00:00:00.001Z INFO capsem-vmm event=exit\n");
        return 1;
    }
    if (!strcmp(mode, "panic")) {
        printf("[    0.5] Kernel panic - not syncing: No working init found.\n");
        fflush(stdout);
        return 0;
    }
    if (!strcmp(mode, "silent")) {
        for (;;)
            pause();
    }
    return 2;
}

#endif
