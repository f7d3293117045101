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

#endif
