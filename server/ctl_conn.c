/*
 * Host side of the control channel: reads frames from the guest agent,
 * checks them (framing via common/frame, JSON via jansson), turns them into
 * callbacks, and queues the host's requests in a bounded send buffer that
 * the loop flushes when the socket is writable. Every kind of bad guest
 * input ends in a logged, one-line reason through on_closed or an `error`
 * reply; nothing from the guest can abort the process.
 */
#include "ctl_conn.h"

#include "frame.h"
#include "log.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* Read chunk and the send-queue cap (well above the high-water mark). */
#define READ_CHUNK (256u << 10)
#define OUT_CAP (8u << 20)

struct ctl_conn {
    struct loop *loop;
    int fd;
    const struct ctl_conn_ops *ops;
    void *opaque;
    const char *hostname;
    const char *ca_pem;
    struct buf in;
    struct buf out;
    bool hello_done;
    bool got_bye;
    bool closed;
    bool paused;
    bool above_high;
    uint32_t watched; /* events currently registered */
    uint32_t next_id;
};

static void update_events(struct ctl_conn *c)
{
    if (c->closed)
        return;
    uint32_t ev = (c->paused ? 0 : EPOLLIN) | (c->out.len ? EPOLLOUT : 0);
    if (ev == c->watched)
        return;
    if (loop_mod(c->loop, c->fd, ev) == 0)
        c->watched = ev;
}

/* Close the connection and report why; the caller must not touch c afterwards. */
static void finish(struct ctl_conn *c, int err, const char *msg)
{
    c->closed = true;
    loop_del(c->loop, c->fd);
    shutdown(c->fd, SHUT_RDWR);
    /* The owner decides whether this is an error (after shutdown it is not) and logs it. */
    LOG_DEBUG("event=ctl_closed err=%d reason=\"%s\"", err, msg);
    if (c->ops->on_closed)
        c->ops->on_closed(c->opaque, err, msg);
}

static int queue_json(struct ctl_conn *c, json_t *msg)
{
    int rc;
    char *s = NULL;
    if (!msg) {
        rc = -ENOMEM;
        goto out;
    }
    s = json_dumps(msg, JSON_COMPACT);
    if (!s) {
        rc = -ENOMEM;
        goto out;
    }
    rc = frame_put_json(&c->out, s, strlen(s));
    if (rc == -E2BIG)
        rc = -ENOBUFS;
    if (!rc)
        update_events(c);
out:
    free(s);
    json_decref(msg);
    return rc;
}

static void reply_error(struct ctl_conn *c, const char *message)
{
    if (queue_json(c, json_pack("{s:s, s:s}", "type", "error", "message", message)))
        LOG_WARN("event=ctl_error_reply_dropped");
}

/* Copy a peer string field into dst (escaped); "" when absent or not a string. */
static void copy_str(char *dst, size_t size, json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    if (json_is_string(v))
        log_escape(dst, size, json_string_value(v), json_string_length(v));
    else
        dst[0] = '\0';
}

/* Read an integer field in [lo, hi]; false when absent, not an integer or out of range. */
static bool get_int(json_t *obj, const char *key, json_int_t lo, json_int_t hi, json_int_t *out)
{
    json_t *v = json_object_get(obj, key);
    if (!json_is_integer(v))
        return false;
    json_int_t x = json_integer_value(v);
    if (x < lo || x > hi)
        return false;
    *out = x;
    return true;
}

/* Returns false when the connection was closed (c must not be touched). */
static bool handle_hello(struct ctl_conn *c, json_t *msg)
{
    char reason[160];
    json_int_t proto;
    if (!get_int(msg, "protocol", 0, INT32_MAX, &proto)) {
        finish(c, -EPROTO, "guest hello has no valid \"protocol\" field");
        return false;
    }
    if (proto != FRAME_PROTOCOL_VERSION) {
        snprintf(reason, sizeof(reason),
                 "guest agent speaks control protocol %lld, this capsem speaks %d: "
                 "rebuild the guest assets and capsem together",
                 (long long)proto, FRAME_PROTOCOL_VERSION);
        finish(c, -EPROTONOSUPPORT, reason);
        return false;
    }
    struct ctl_hello h = {.protocol = (int)proto};
    copy_str(h.agent, sizeof(h.agent), msg, "agent");
    copy_str(h.kernel, sizeof(h.kernel), msg, "kernel");
    json_int_t boot_ms = 0;
    if (get_int(msg, "boot_ms", 0, INT64_MAX, &boot_ms))
        h.boot_ms = boot_ms;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    json_int_t now = (json_int_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
    json_t *ans = json_pack("{s:s, s:i, s:I}", "type", "hello", "protocol", FRAME_PROTOCOL_VERSION,
                            "time_ns", now);
    if (ans && c->hostname && json_object_set_new(ans, "hostname", json_string(c->hostname))) {
        json_decref(ans);
        ans = NULL;
    }
    if (ans && c->ca_pem && json_object_set_new(ans, "ca_pem", json_string(c->ca_pem))) {
        json_decref(ans);
        ans = NULL;
    }
    if (queue_json(c, ans)) {
        finish(c, -ENOMEM, "cannot answer the guest hello: out of memory");
        return false;
    }
    c->hello_done = true;
    LOG_DEBUG("event=guest_hello agent=\"%s\" kernel=\"%s\" boot_ms=%lld", h.agent, h.kernel,
              (long long)h.boot_ms);
    if (c->ops->on_hello)
        c->ops->on_hello(c->opaque, &h);
    return !c->closed;
}

static bool check_id(struct ctl_conn *c, json_t *msg, const char *type, uint32_t *id)
{
    json_int_t v;
    char reason[128];
    if (!get_int(msg, "id", 0, UINT32_MAX, &v) || (uint32_t)v >= c->next_id) {
        snprintf(reason, sizeof(reason), "guest sent \"%s\" for an exec id it was never given",
                 type);
        finish(c, -EPROTO, reason);
        return false;
    }
    *id = (uint32_t)v;
    return true;
}

static bool handle_exit(struct ctl_conn *c, json_t *msg)
{
    struct ctl_exit e = {.code = -1};
    if (!check_id(c, msg, "exit", &e.id))
        return false;
    json_int_t v;
    if (get_int(msg, "code", 0, 255, &v)) {
        e.code = (int)v;
    } else if (get_int(msg, "signal", 1, 127, &v)) {
        e.signal = (int)v;
    } else {
        finish(c, -EPROTO,
               "guest sent an \"exit\" with neither a valid code (0-255) nor a "
               "valid signal (1-127)");
        return false;
    }
    copy_str(e.error, sizeof(e.error), msg, "error");
    if (c->ops->on_exit)
        c->ops->on_exit(c->opaque, &e);
    return !c->closed;
}

static bool handle_json(struct ctl_conn *c, struct slice payload)
{
    bool ok = true;
    json_error_t jerr;
    char reason[192];
    char esc[64];
    json_t *msg = json_loadb((const char *)payload.ptr, payload.len, 0, &jerr);
    const char *type = NULL;
    if (msg && json_is_object(msg))
        type = json_string_value(json_object_get(msg, "type"));
    if (!type) {
        if (!c->hello_done) {
            finish(c, -EPROTO, "guest's first message is not a JSON hello");
            ok = false;
            goto out;
        }
        LOG_WARN("event=guest_bad_json");
        reply_error(c, msg ? "message has no \"type\"" : "bad JSON");
        goto out;
    }
    if (!c->hello_done) {
        if (strcmp(type, "hello") != 0) {
            snprintf(reason, sizeof(reason), "guest's first message is \"%s\", not hello",
                     log_escape(esc, sizeof(esc), type, strlen(type)));
            finish(c, -EPROTO, reason);
            ok = false;
            goto out;
        }
        ok = handle_hello(c, msg);
        goto out;
    }
    if (strcmp(type, "started") == 0) {
        uint32_t id;
        json_int_t pid = 0;
        ok = check_id(c, msg, type, &id);
        if (ok && !get_int(msg, "pid", 0, INT64_MAX, &pid))
            pid = 0;
        if (ok && c->ops->on_started) {
            c->ops->on_started(c->opaque, id, pid);
            ok = !c->closed;
        }
    } else if (strcmp(type, "exit") == 0) {
        ok = handle_exit(c, msg);
    } else if (strcmp(type, "error") == 0) {
        char text[256];
        json_int_t id = UINT32_MAX;
        copy_str(text, sizeof(text), msg, "message");
        if (!get_int(msg, "id", 0, UINT32_MAX, &id))
            id = UINT32_MAX;
        LOG_WARN("event=guest_error id=%lld message=\"%s\"", (long long)id, text);
        if (c->ops->on_guest_error) {
            c->ops->on_guest_error(c->opaque, (uint32_t)id, text);
            ok = !c->closed;
        }
    } else if (strcmp(type, "bye") == 0) {
        c->got_bye = true;
        if (c->ops->on_bye) {
            c->ops->on_bye(c->opaque);
            ok = !c->closed;
        }
    } else if (strcmp(type, "pong") == 0) {
        /* Liveness answers need no action here. */
    } else if (strcmp(type, "hello") == 0) {
        reply_error(c, "duplicate hello");
    } else {
        snprintf(reason, sizeof(reason), "unknown message type \"%s\"",
                 log_escape(esc, sizeof(esc), type, strlen(type)));
        LOG_WARN("event=guest_unknown_type type=\"%s\"", esc);
        reply_error(c, reason);
    }
out:
    json_decref(msg);
    return ok;
}

static bool handle_data(struct ctl_conn *c, const struct frame *f)
{
    char reason[128];
    if (!c->hello_done) {
        finish(c, -EPROTO, "guest sent stream data before hello");
        return false;
    }
    if (f->stream == FRAME_STDIN) {
        finish(c, -EPROTO, "guest sent data on stream 0 (stdin flows host to guest only)");
        return false;
    }
    if (f->exec_id >= c->next_id) {
        snprintf(reason, sizeof(reason), "guest sent output for exec %u, which was never started",
                 f->exec_id);
        finish(c, -EPROTO, reason);
        return false;
    }
    if (c->ops->on_output)
        c->ops->on_output(c->opaque, f->exec_id, f->stream, f->data.ptr, f->data.len);
    return !c->closed;
}

/* Parse and dispatch every whole frame in c->in. false when the conn closed. */
static bool process_input(struct ctl_conn *c)
{
    size_t off = 0;
    bool ok = true;
    /* Everything already buffered is dispatched even when paused: at most one
     * read chunk, so pausing only stops further reads. */
    while (ok) {
        struct frame f;
        size_t used;
        int rc = frame_parse(c->in.data + off, c->in.len - off, &f, &used);
        if (rc == 0)
            break;
        if (rc < 0) {
            char reason[160];
            const uint8_t *h = c->in.data + off;
            if (rc == -EMSGSIZE)
                snprintf(reason, sizeof(reason),
                         "guest sent a frame of %u bytes, over the %u-byte limit", be32_load(h),
                         FRAME_MAX_PAYLOAD);
            else if (h[4] != FRAME_JSON && h[4] != FRAME_DATA)
                snprintf(reason, sizeof(reason), "guest sent a frame of unknown kind %u", h[4]);
            else
                snprintf(reason, sizeof(reason),
                         "guest sent a malformed data frame (short header or stream above 2)");
            finish(c, -EPROTO, reason);
            return false;
        }
        off += used;
        if (f.kind == FRAME_JSON)
            ok = handle_json(c, f.payload);
        else
            ok = handle_data(c, &f);
    }
    if (ok)
        buf_consume(&c->in, off);
    return ok;
}

static bool flush_out(struct ctl_conn *c)
{
    while (c->out.len) {
        ssize_t n = send(c->fd, c->out.data, c->out.len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                break;
            finish(c, -ECONNRESET, "guest connection lost (write failed)");
            return false;
        }
        buf_consume(&c->out, (size_t)n);
    }
    if (c->above_high && c->out.len < CTL_CONN_LOW_WATER) {
        c->above_high = false;
        if (c->ops->on_drained) {
            c->ops->on_drained(c->opaque);
            if (c->closed)
                return false;
        }
    }
    update_events(c);
    return true;
}

static void on_events(void *opaque, uint32_t events)
{
    struct ctl_conn *c = opaque;
    if ((events & EPOLLOUT) && !flush_out(c))
        return;
    if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
        return;
    int rc = buf_reserve(&c->in, READ_CHUNK);
    if (rc) {
        finish(c, rc, "cannot buffer guest input: out of memory");
        return;
    }
    ssize_t n = recv(c->fd, c->in.data + c->in.len, READ_CHUNK, MSG_DONTWAIT);
    if (n < 0) {
        if (errno == EAGAIN || errno == EINTR)
            return;
        finish(c, -ECONNRESET, "guest connection lost (read failed)");
        return;
    }
    if (n == 0) {
        if (c->in.len)
            finish(c, -EPROTO, "guest closed the connection in the middle of a frame");
        else if (c->got_bye)
            finish(c, 0, "guest said bye and closed the connection");
        else
            finish(c, -ECONNRESET, "guest connection lost");
        return;
    }
    c->in.len += (size_t)n;
    if (!process_input(c))
        return;
    if (c->out.len)
        flush_out(c);
}

int ctl_conn_create(struct loop *l, int fd, const struct ctl_conn_ops *ops, void *opaque,
                    const char *hostname, struct ctl_conn **out)
{
    int rc;
    struct ctl_conn *c = calloc(1, sizeof(*c));
    if (!c) {
        rc = -ENOMEM;
        goto out;
    }
    c->loop = l;
    c->fd = fd;
    c->ops = ops;
    c->opaque = opaque;
    c->hostname = hostname;
    c->next_id = 1;
    /* One whole frame plus one read chunk always fits. */
    buf_init(&c->in, FRAME_HDR_LEN + FRAME_MAX_PAYLOAD + READ_CHUNK);
    buf_init(&c->out, OUT_CAP);
    c->watched = EPOLLIN;
    rc = loop_add(l, fd, EPOLLIN, on_events, c);
    if (rc)
        goto out;
    *out = c;
    c = NULL;
out:
    if (c) {
        buf_fini(&c->in);
        buf_fini(&c->out);
        free(c);
    }
    return rc;
}

void ctl_conn_destroy(struct ctl_conn *c)
{
    if (!c)
        return;
    if (!c->closed)
        loop_del(c->loop, c->fd);
    close(c->fd);
    buf_fini(&c->in);
    buf_fini(&c->out);
    free(c);
}

static int strings_array(const char *const *v, size_t n, json_t **out)
{
    json_t *a = json_array();
    if (!a)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        if (!v[i] || json_array_append_new(a, json_string(v[i]))) {
            json_decref(a);
            return v[i] ? -ENOMEM : -EINVAL;
        }
    }
    *out = a;
    return 0;
}

/* Queue an `exec` (pty false) or `pty` request. */
static int send_run(struct ctl_conn *c, const char *const *argv, size_t argc,
                    const char *const *env, size_t envc, const char *cwd, bool with_stdin, bool pty,
                    unsigned cols, unsigned rows, uint32_t *id);

int ctl_conn_exec(struct ctl_conn *c, const char *const *argv, size_t argc, const char *const *env,
                  size_t envc, const char *cwd, bool with_stdin, uint32_t *id)
{
    return send_run(c, argv, argc, env, envc, cwd, with_stdin, false, 0, 0, id);
}

int ctl_conn_pty(struct ctl_conn *c, const char *const *argv, size_t argc, const char *const *env,
                 size_t envc, const char *cwd, unsigned cols, unsigned rows, uint32_t *id)
{
    if (!cols || !rows || cols > 65535 || rows > 65535)
        return -EINVAL;
    return send_run(c, argv, argc, env, envc, cwd, false, true, cols, rows, id);
}

static int send_run(struct ctl_conn *c, const char *const *argv, size_t argc,
                    const char *const *env, size_t envc, const char *cwd, bool with_stdin, bool pty,
                    unsigned cols, unsigned rows, uint32_t *id)
{
    int rc;
    json_t *msg = NULL, *jargv = NULL, *jenv = NULL;
    if (c->closed || !c->hello_done)
        return -ENOTCONN;
    if (!argc || !argv)
        return -EINVAL;
    rc = strings_array(argv, argc, &jargv);
    if (!rc)
        rc = strings_array(env, env ? envc : 0, &jenv);
    if (rc)
        goto out;
    uint32_t new_id = c->next_id;
    if (pty)
        msg = json_pack("{s:s, s:I, s:o, s:o, s:s, s:I, s:I}", "type", "pty", "id",
                        (json_int_t)new_id, "argv", jargv, "env", jenv, "cwd", cwd ? cwd : "/",
                        "cols", (json_int_t)cols, "rows", (json_int_t)rows);
    else
        msg = json_pack("{s:s, s:I, s:o, s:o, s:s, s:b}", "type", "exec", "id", (json_int_t)new_id,
                        "argv", jargv, "env", jenv, "cwd", cwd ? cwd : "/", "stdin", with_stdin);
    jargv = jenv = NULL; /* owned by msg (or freed by json_pack on failure) */
    rc = queue_json(c, msg);
    msg = NULL;
    if (rc)
        goto out;
    c->next_id++;
    *id = new_id;
out:
    json_decref(jargv);
    json_decref(jenv);
    return rc;
}

int ctl_conn_send_stdin(struct ctl_conn *c, uint32_t id, const void *p, size_t len)
{
    if (c->closed || !c->hello_done)
        return -ENOTCONN;
    const uint8_t *b = p;
    do {
        size_t n = len > FRAME_MAX_DATA ? FRAME_MAX_DATA : len;
        int rc = frame_put_data(&c->out, id, FRAME_STDIN, b, n);
        if (rc)
            return rc == -E2BIG ? -ENOBUFS : rc;
        b += n;
        len -= n;
    } while (len);
    if (c->out.len >= CTL_CONN_HIGH_WATER)
        c->above_high = true;
    update_events(c);
    return 0;
}

int ctl_conn_signal(struct ctl_conn *c, uint32_t id, int sig)
{
    if (c->closed || !c->hello_done)
        return -ENOTCONN;
    return queue_json(
        c, json_pack("{s:s, s:I, s:i}", "type", "signal", "id", (json_int_t)id, "signal", sig));
}

int ctl_conn_shutdown(struct ctl_conn *c)
{
    if (c->closed || !c->hello_done)
        return -ENOTCONN;
    return queue_json(c, json_pack("{s:s}", "type", "shutdown"));
}

size_t ctl_conn_pending(const struct ctl_conn *c)
{
    return c->out.len;
}

void ctl_conn_pause(struct ctl_conn *c, bool paused)
{
    if (c->paused == paused)
        return;
    c->paused = paused;
    update_events(c);
}

int ctl_exit_status(const struct ctl_exit *e)
{
    if (e->signal > 0)
        return 128 + e->signal;
    return e->code & 0xff;
}

void ctl_conn_set_ca(struct ctl_conn *c, const char *ca_pem)
{
    c->ca_pem = ca_pem;
}
