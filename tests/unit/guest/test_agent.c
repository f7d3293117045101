/*
 * Unit tests for the guest agent core (guest/agent/agent.c), driven over a
 * socketpair exactly as the host drives it over vsock. The agent runs on its
 * own thread; the test plays the host with a non-blocking pump that writes
 * and reads at the same time (so back-pressure in either direction cannot
 * deadlock the test) and checks every frame's order: `started`, data, one
 * empty frame per output stream, then `exit`. Children are real programs
 * (/bin/sh, cat, echo...).
 *
 * Bad input and what it gives: bad JSON, a non-object, no type, an unknown
 * type, bad exec fields, a duplicate id, stdin to an exec without stdin and
 * data on an output stream -> an `error` reply, connection stays up (checked
 * with a ping afterwards); framing errors -> the agent closes the connection
 * and agent_run returns -EPROTO/-EMSGSIZE; stdin for a finished exec -> dropped.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "agent.h"
#include "frame.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#define MAX_IDS 16
#define MAX_MISC 64
#define WAIT_MS 30000

struct result {
    bool started;
    int pid;
    struct buf out[3]; /* by stream number; [0] unused */
    bool eos[3];
    json_t *exit; /* the exit message */
    char error[256];
    int nerrors;
};

struct host {
    int fd;
    pthread_t thread;
    struct agent *agent;
    int agent_rc;
    bool done; /* the agent thread returned */
    struct buf tx;
    size_t tx_off;
    struct buf rx;
    bool eof;
    struct result res[MAX_IDS];
    json_t *misc[MAX_MISC]; /* JSON messages without an exec id */
    int nmisc;
    /* What the agent's callbacks saw. */
    int64_t clock_ns;
    char hostname[80];
    int callbacks;
};

static int rec_clock(void *ctx, int64_t ns)
{
    struct host *h = ctx;
    h->clock_ns = ns;
    h->callbacks++;
    return 0;
}

static int rec_hostname(void *ctx, const char *name, size_t len)
{
    struct host *h = ctx;
    snprintf(h->hostname, sizeof(h->hostname), "%.*s", (int)len, name);
    h->callbacks++;
    return 0;
}

/* Root directory for the next agent's CA install (NULL: a ca_pem is ignored). */
static const char *next_ca_root;

static void *agent_thread(void *p)
{
    struct host *h = p;
    h->agent_rc = agent_run(h->agent);
    agent_destroy(h->agent);
    h->agent = NULL;
    __atomic_store_n(&h->done, true, __ATOMIC_RELEASE);
    return NULL;
}

static struct host *host_start(void)
{
    struct host *h = calloc(1, sizeof(*h));
    assert_non_null(h);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    struct agent_options opt = {.version = "test-1",
                                .set_clock = rec_clock,
                                .set_hostname = rec_hostname,
                                .ca_root = next_ca_root,
                                .ctx = h};
    assert_int_equal(agent_create(sv[1], &opt, &h->agent), 0);
    h->fd = sv[0];
    assert_int_equal(fcntl(h->fd, F_SETFL, O_NONBLOCK), 0);
    buf_init(&h->tx, 0);
    buf_init(&h->rx, 0);
    for (int i = 0; i < MAX_IDS; i++)
        for (int s = 0; s < 3; s++)
            buf_init(&h->res[i].out[s], 0);
    assert_int_equal(pthread_create(&h->thread, NULL, agent_thread, h), 0);
    return h;
}

static void on_json(struct host *h, json_t *m)
{
    const char *type = json_string_value(json_object_get(m, "type"));
    assert_non_null(type);
    json_t *jid = json_object_get(m, "id");
    if (!json_is_integer(jid)) {
        assert_true(h->nmisc < MAX_MISC);
        h->misc[h->nmisc++] = m;
        return;
    }
    json_int_t id = json_integer_value(jid);
    assert_true(id >= 0 && id < MAX_IDS);
    struct result *r = &h->res[id];
    if (strcmp(type, "started") == 0) {
        assert_false(r->started);
        assert_null(r->exit);
        r->started = true;
        r->pid = (int)json_integer_value(json_object_get(m, "pid"));
        assert_true(r->pid > 0);
    } else if (strcmp(type, "exit") == 0) {
        assert_null(r->exit);
        /* Both end-of-stream frames come first. */
        assert_true(r->eos[1]);
        assert_true(r->eos[2]);
        r->exit = m;
        return;
    } else if (strcmp(type, "error") == 0) {
        snprintf(r->error, sizeof(r->error), "%s",
                 json_string_value(json_object_get(m, "message")));
        r->nerrors++;
    } else {
        fail_msg("unexpected message type %s with an id", type);
    }
    json_decref(m);
}

static void on_frame(struct host *h, const struct frame *f)
{
    if (f->kind == FRAME_JSON) {
        json_error_t err;
        json_t *m = json_loadb((const char *)f->payload.ptr, f->payload.len, 0, &err);
        assert_non_null(m);
        on_json(h, m);
        return;
    }
    assert_true(f->exec_id < MAX_IDS);
    assert_true(f->stream == FRAME_STDOUT || f->stream == FRAME_STDERR);
    struct result *r = &h->res[f->exec_id];
    assert_false(r->eos[f->stream]); /* nothing after end of stream */
    assert_null(r->exit);
    if (f->data.len == 0)
        r->eos[f->stream] = true;
    else
        assert_int_equal(buf_append(&r->out[f->stream], f->data.ptr, f->data.len), 0);
}

/* One round of I/O: write what is queued, read what is there. */
static void pump(struct host *h, int timeout_ms)
{
    struct pollfd p = {.fd = h->fd, .events = POLLIN};
    if (h->tx.len > h->tx_off)
        p.events |= POLLOUT;
    if (h->eof)
        p.events &= (short)~POLLIN;
    if (!p.events)
        return;
    int n = poll(&p, 1, timeout_ms);
    assert_true(n >= 0 || errno == EINTR);
    if (n <= 0)
        return;
    if ((p.revents & POLLOUT) || (p.revents & (POLLERR | POLLHUP))) {
        while (h->tx.len > h->tx_off) {
            ssize_t w = send(h->fd, h->tx.data + h->tx_off, h->tx.len - h->tx_off, MSG_NOSIGNAL);
            if (w <= 0)
                break;
            h->tx_off += (size_t)w;
        }
        if (h->tx_off == h->tx.len) {
            h->tx.len = 0;
            h->tx_off = 0;
        }
    }
    if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
        uint8_t tmp[65536];
        for (;;) {
            ssize_t r = read(h->fd, tmp, sizeof(tmp));
            if (r == 0 || (r < 0 && errno == ECONNRESET)) {
                h->eof = true;
                break;
            }
            if (r < 0)
                break;
            assert_int_equal(buf_append(&h->rx, tmp, (size_t)r), 0);
        }
        size_t off = 0;
        for (;;) {
            struct frame f;
            size_t used;
            int rc = frame_parse(h->rx.data + off, h->rx.len - off, &f, &used);
            assert_true(rc >= 0);
            if (rc == 0)
                break;
            on_frame(h, &f);
            off += used;
        }
        buf_consume(&h->rx, off);
    }
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void send_json(struct host *h, const char *json)
{
    assert_int_equal(frame_put_json(&h->tx, json, strlen(json)), 0);
    pump(h, 0);
}

static void send_data(struct host *h, uint32_t id, uint8_t stream, const void *p, size_t len)
{
    const uint8_t *b = p;
    do {
        size_t n = len > FRAME_MAX_DATA ? FRAME_MAX_DATA : len;
        assert_int_equal(frame_put_data(&h->tx, id, stream, b, n), 0);
        b += n;
        len -= n;
        pump(h, 0);
    } while (len);
}

static void send_raw(struct host *h, const void *p, size_t len)
{
    assert_int_equal(buf_append(&h->tx, p, len), 0);
    pump(h, 0);
}

/* The first queued JSON message (without an id) of `type`, removed from the queue, or NULL. */
static json_t *take_misc(struct host *h, const char *type)
{
    for (int i = 0; i < h->nmisc; i++) {
        json_t *m = h->misc[i];
        if (strcmp(json_string_value(json_object_get(m, "type")), type) == 0) {
            memmove(&h->misc[i], &h->misc[i + 1], (size_t)(h->nmisc - i - 1) * sizeof(m));
            h->nmisc--;
            return m;
        }
    }
    return NULL;
}

static json_t *wait_misc(struct host *h, const char *type)
{
    int64_t end = now_ms() + WAIT_MS;
    for (;;) {
        json_t *m = take_misc(h, type);
        if (m)
            return m;
        if (h->eof || now_ms() > end)
            fail_msg("no %s message from the agent", type);
        pump(h, 100);
    }
}

static struct result *wait_exit(struct host *h, uint32_t id)
{
    int64_t end = now_ms() + WAIT_MS;
    while (!h->res[id].exit) {
        if (h->eof || now_ms() > end)
            fail_msg("no exit for exec %u", id);
        pump(h, 100);
    }
    return &h->res[id];
}

static void wait_error(struct host *h, uint32_t id, int count)
{
    int64_t end = now_ms() + WAIT_MS;
    while (h->res[id].nerrors < count) {
        if (h->eof || now_ms() > end)
            fail_msg("no error for id %u", id);
        pump(h, 100);
    }
}

static void wait_eof(struct host *h)
{
    int64_t end = now_ms() + WAIT_MS;
    while (!h->eof) {
        if (now_ms() > end)
            fail_msg("the agent did not close the connection");
        pump(h, 100);
    }
}

/* A ping answered proves the connection is still served. */
static void check_alive(struct host *h, int seq)
{
    char msg[64];
    snprintf(msg, sizeof(msg), "{\"type\":\"ping\",\"seq\":%d}", seq);
    send_json(h, msg);
    json_t *m = wait_misc(h, "pong");
    assert_int_equal(json_integer_value(json_object_get(m, "seq")), seq);
    json_decref(m);
}

/* Read the agent's hello and answer with ours. */
static struct host *host_connect(void)
{
    struct host *h = host_start();
    json_t *m = wait_misc(h, "hello");
    json_decref(m);
    send_json(h, "{\"type\":\"hello\",\"protocol\":1,\"time_ns\":1700000000000000000}");
    return h;
}

/* Close our end; the agent sees EOF and its thread ends. Returns agent_run's result. */
static int host_finish(struct host *h)
{
    close(h->fd);
    pthread_join(h->thread, NULL);
    int rc = h->agent_rc;
    for (int i = 0; i < MAX_IDS; i++) {
        for (int s = 0; s < 3; s++)
            buf_fini(&h->res[i].out[s]);
        json_decref(h->res[i].exit);
    }
    for (int i = 0; i < h->nmisc; i++)
        json_decref(h->misc[i]);
    buf_fini(&h->tx);
    buf_fini(&h->rx);
    free(h);
    return rc;
}

/* Forget what exec `id` did, so the id can be used again. */
static void reset_result(struct host *h, uint32_t id)
{
    struct result *r = &h->res[id];
    json_decref(r->exit);
    r->exit = NULL;
    r->started = false;
    r->pid = 0;
    r->nerrors = 0;
    for (int s = 0; s < 3; s++) {
        r->out[s].len = 0;
        r->eos[s] = false;
    }
}

static void assert_stream(struct result *r, int stream, const char *want)
{
    size_t wl = strlen(want);
    if (r->out[stream].len != wl || (wl && memcmp(r->out[stream].data, want, wl) != 0))
        fail_msg("stream %d: got \"%.*s\", want \"%s\"", stream, (int)r->out[stream].len,
                 (const char *)r->out[stream].data, want);
}

static json_int_t exit_int(struct result *r, const char *key)
{
    json_t *v = json_object_get(r->exit, key);
    if (!json_is_integer(v))
        fail_msg("exit message has no integer %s", key);
    return json_integer_value(v);
}

static void test_agent_hello_exchange(void **state)
{
    (void)state;
    struct host *h = host_start();
    json_t *m = wait_misc(h, "hello");
    struct utsname u;
    assert_int_equal(uname(&u), 0);
    assert_int_equal(json_integer_value(json_object_get(m, "protocol")), 1);
    assert_string_equal(json_string_value(json_object_get(m, "agent")), "test-1");
    assert_string_equal(json_string_value(json_object_get(m, "kernel")), u.release);
    json_t *boot = json_object_get(m, "boot_ms");
    assert_true(json_is_integer(boot));
    struct timespec ts;
    clock_gettime(CLOCK_BOOTTIME, &ts);
    assert_true(json_integer_value(boot) > 0);
    assert_true(json_integer_value(boot) <= ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
    json_decref(m);

    send_json(h, "{\"type\":\"hello\",\"protocol\":1,\"time_ns\":1765432109876543210,"
                 "\"hostname\":\"capsem-test\",\"extra\":[1,2]}");
    check_alive(h, 1);
    assert_int_equal(h->callbacks, 2);
    assert_true(h->clock_ns == 1765432109876543210LL);
    assert_string_equal(h->hostname, "capsem-test");

    /* A host name that could not be one: error, nothing set, still served. */
    send_json(h, "{\"type\":\"hello\",\"protocol\":1,\"hostname\":\"bad name;rm\"}");
    json_t *e = wait_misc(h, "error");
    assert_non_null(strstr(json_string_value(json_object_get(e, "message")), "hostname"));
    json_decref(e);
    check_alive(h, 2);
    assert_int_equal(h->callbacks, 2);
    assert_string_equal(h->hostname, "capsem-test");
    assert_int_equal(host_finish(h), -ECONNRESET);
}

static void test_agent_ping_pong(void **state)
{
    (void)state;
    struct host *h = host_connect();
    check_alive(h, 7);
    send_json(h, "{\"type\":\"ping\",\"seq\":\"abc\"}");
    json_t *m = wait_misc(h, "pong");
    assert_string_equal(json_string_value(json_object_get(m, "seq")), "abc");
    json_decref(m);
    assert_int_equal(host_finish(h), -ECONNRESET);
}

static void test_agent_exec_echo(void **state)
{
    (void)state;
    struct host *h = host_connect();
    send_json(h, "{\"type\":\"exec\",\"id\":1,\"argv\":[\"echo\",\"hello world\"]}");
    struct result *r = wait_exit(h, 1);
    assert_true(r->started);
    assert_stream(r, 1, "hello world\n");
    assert_stream(r, 2, "");
    assert_int_equal(exit_int(r, "code"), 0);
    assert_null(json_object_get(r->exit, "signal"));
    assert_int_equal(host_finish(h), -ECONNRESET);
}

static void test_agent_exec_exit_code(void **state)
{
    (void)state;
    struct host *h = host_connect();
    send_json(h, "{\"type\":\"exec\",\"id\":2,\"argv\":[\"sh\",\"-c\",\"exit 42\"]}");
    send_json(h, "{\"type\":\"exec\",\"id\":3,\"argv\":[\"false\"]}");
    assert_int_equal(exit_int(wait_exit(h, 2), "code"), 42);
    assert_int_equal(exit_int(wait_exit(h, 3), "code"), 1);
    assert_int_equal(host_finish(h), -ECONNRESET);
}

static void test_agent_exec_signal_death(void **state)
{
    (void)state;
    struct host *h = host_connect();
    send_json(h, "{\"type\":\"exec\",\"id\":1,\"argv\":[\"sh\",\"-c\",\"kill -9 $$\"]}");
    struct result *r = wait_exit(h, 1);
    assert_int_equal(exit_int(r, "signal"), 9);
    assert_null(json_object_get(r->exit, "code"));
    assert_int_equal(host_finish(h), -ECONNRESET);
}

static void test_agent_exec_streams_apart(void **state)
{
    (void)state;
    struct host *h = host_connect();
    send_json(h, "{\"type\":\"exec\",\"id\":4,\"argv\":[\"sh\",\"-c\","
                 "\"echo out1; echo err1 >&2; echo out2; echo err2 >&2\"]}");
    struct result *r = wait_exit(h, 4);
    assert_stream(r, 1, "out1\nout2\n");
    assert_stream(r, 2, "err1\nerr2\n");
    assert_int_equal(exit_int(r, "code"), 0);
    assert_int_equal(host_finish(h), -ECONNRESET);
}

static void test_agent_exec_env_cwd(void **state)
{
    (void)state;
    struct host *h = host_connect();
    send_json(h, "{\"type\":\"exec\",\"id\":1,\"argv\":[\"sh\",\"-c\","
                 "\"echo $FOO $HOME $TERM; pwd; read x || echo no-stdin\"],"
                 "\"env\":[\"FOO=bar=baz\",\"HOME=/tmp\"],\"cwd\":\"/tmp\"}");
    struct result *r = wait_exit(h, 1);
    /* HOME replaced, TERM from the base environment, stdin is /dev/null. */
    assert_stream(r, 1, "bar=baz /tmp xterm-256color\n/tmp\nno-stdin\n");
    assert_int_equal(host_finish(h), -ECONNRESET);
}

/*
 * The hello's ca_pem: written under the agent's CA root, appended to the
 * bundle there, and the TLS variables join every later exec's environment
 * (a host entry still wins). A ca_pem that is not PEM, or not a string, is
 * an error reply; nothing is written and the connection stays up.
 */
static void test_agent_hello_ca_pem(void **state)
{
    (void)state;
    char root[] = "/tmp/capsem-agent-ca.XXXXXX";
    assert_non_null(mkdtemp(root));
    char p[256];
    snprintf(p, sizeof(p), "mkdir -p %s/etc/ssl/certs && printf 'OLD\n' > %s%s", root, root,
             "/etc/ssl/certs/ca-certificates.crt");
    assert_int_equal(system(p), 0);
    next_ca_root = root;
    struct host *h = host_start();
    next_ca_root = NULL;
    json_decref(wait_misc(h, "hello"));
    send_json(h, "{\"type\":\"hello\",\"protocol\":1,\"ca_pem\":7}");
    json_t *e = wait_misc(h, "error");
    assert_non_null(strstr(json_string_value(json_object_get(e, "message")), "ca_pem"));
    json_decref(e);
    send_json(h, "{\"type\":\"hello\",\"protocol\":1,\"ca_pem\":\"not a certificate\"}");
    e = wait_misc(h, "error");
    assert_non_null(strstr(json_string_value(json_object_get(e, "message")), "PEM"));
    json_decref(e);
    send_json(h, "{\"type\":\"exec\",\"id\":1,\"argv\":[\"sh\",\"-c\","
                 "\"echo ${NODE_EXTRA_CA_CERTS:-none}\"]}");
    assert_stream(wait_exit(h, 1), 1, "none\n");
    send_json(h, "{\"type\":\"hello\",\"protocol\":1,\"ca_pem\":"
                 "\"-----BEGIN CERTIFICATE-----\\nAAAA\\n-----END CERTIFICATE-----\\n\"}");
    check_alive(h, 3);
    send_json(h,
              "{\"type\":\"exec\",\"id\":2,\"argv\":[\"sh\",\"-c\","
              "\"echo $NODE_EXTRA_CA_CERTS $SSL_CERT_FILE $REQUESTS_CA_BUNDLE $GIT_SSL_CAINFO\"],"
              "\"env\":[\"GIT_SSL_CAINFO=/mine\"]}");
    assert_stream(wait_exit(h, 2), 1,
                  "/etc/capsem/ca.crt /etc/ssl/certs/ca-certificates.crt "
                  "/etc/ssl/certs/ca-certificates.crt /mine\n");
    assert_int_equal(host_finish(h), -ECONNRESET);
    char want[] = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    char got[256] = "";
    snprintf(p, sizeof(p), "%s/etc/capsem/ca.crt", root);
    FILE *f = fopen(p, "r");
    assert_non_null(f);
    assert_int_equal(fread(got, 1, sizeof(got) - 1, f), strlen(want));
    fclose(f);
    assert_string_equal(got, want);
    snprintf(p, sizeof(p), "%s/etc/ssl/certs/ca-certificates.crt", root);
    f = fopen(p, "r");
    assert_non_null(f);
    memset(got, 0, sizeof(got));
    assert_true(fread(got, 1, sizeof(got) - 1, f) > 0);
    fclose(f);
    assert_string_equal(got,
                        "OLD\n\n-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
    snprintf(p, sizeof(p), "rm -rf %s", root);
    assert_int_equal(system(p), 0);
}

static void test_agent_exec_stdin_passthrough(void **state)
{
    (void)state;
    struct host *h = host_connect();
    /* The child starts reading late, so the agent has to queue and pause. */
    send_json(h, "{\"type\":\"exec\",\"id\":5,\"argv\":[\"sh\",\"-c\",\"sleep 0.3; exec cat\"],"
                 "\"stdin\":true}");
    /* 4 MiB: more than the agent queues for a child, so back-pressure is exercised. */
    size_t n = 4u << 20;
    uint8_t *data = malloc(n);
    assert_non_null(data);
    uint32_t x = 12345;
    for (size_t i = 0; i < n; i++) {
        x = x * 1103515245u + 12345u;
        data[i] = (uint8_t)(x >> 16);
    }
    send_data(h, 5, FRAME_STDIN, "abc", 3);
    send_data(h, 5, FRAME_STDIN, data, n);
    send_data(h, 5, FRAME_STDIN, NULL, 0);
    struct result *r = wait_exit(h, 5);
    assert_int_equal(r->out[1].len, n + 3);
    assert_memory_equal(r->out[1].data, "abc", 3);
    assert_memory_equal(r->out[1].data + 3, data, n);
    assert_int_equal(exit_int(r, "code"), 0);
    /* More stdin for the finished exec is dropped without a fuss. */
    send_data(h, 5, FRAME_STDIN, "late", 4);
    check_alive(h, 3);
    assert_int_equal(h->res[5].nerrors, 0);
    free(data);
    assert_int_equal(host_finish(h), -ECONNRESET);
}

static void test_agent_exec_concurrent(void **state)
{
    (void)state;
    struct host *h = host_connect();
    send_json(h, "{\"type\":\"exec\",\"id\":1,\"argv\":[\"sh\",\"-c\",\"read x; echo one:$x\"],"
                 "\"stdin\":true}");
    send_json(h, "{\"type\":\"exec\",\"id\":2,\"argv\":[\"echo\",\"two\"]}");
    /* Exec 2 ends while exec 1 still waits for its input. */
    struct result *r2 = wait_exit(h, 2);
    assert_stream(r2, 1, "two\n");
    assert_true(h->res[1].started);
    assert_null(h->res[1].exit);
    send_data(h, 1, FRAME_STDIN, "hi\n", 3);
    send_data(h, 1, FRAME_STDIN, NULL, 0);
    struct result *r1 = wait_exit(h, 1);
    assert_stream(r1, 1, "one:hi\n");
    /* Ids can be reused once finished. */
    reset_result(h, 2);
    send_json(h, "{\"type\":\"exec\",\"id\":2,\"argv\":[\"true\"]}");
    assert_int_equal(exit_int(wait_exit(h, 2), "code"), 0);
    assert_int_equal(host_finish(h), -ECONNRESET);
}

static void test_agent_exec_not_found(void **state)
{
    (void)state;
    struct host *h = host_connect();
    char noexec[] = "/tmp/capsem-agent-test-XXXXXX";
    int fd = mkstemp(noexec);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "#!/bin/sh\n", 10), 10);
    close(fd);
    assert_int_equal(chmod(noexec, 0644), 0);

    send_json(h, "{\"type\":\"exec\",\"id\":1,\"argv\":[\"/nonexistent/prog\",\"x\"]}");
    send_json(h, "{\"type\":\"exec\",\"id\":2,\"argv\":[\"no-such-command-capsem\"]}");
    char msg[256];
    snprintf(msg, sizeof(msg), "{\"type\":\"exec\",\"id\":3,\"argv\":[\"%s\"]}", noexec);
    send_json(h, msg);
    send_json(h, "{\"type\":\"exec\",\"id\":4,\"argv\":[\"true\"],\"cwd\":\"/nonexistent\"}");
    struct result *r = wait_exit(h, 1);
    assert_false(r->started); /* never ran: no `started`, but both ends of stream */
    assert_int_equal(exit_int(r, "code"), 127);
    const char *err = json_string_value(json_object_get(r->exit, "error"));
    assert_non_null(err);
    assert_non_null(strstr(err, "No such file"));
    r = wait_exit(h, 2);
    assert_int_equal(exit_int(r, "code"), 127);
    assert_string_equal(json_string_value(json_object_get(r->exit, "error")), "command not found");
    r = wait_exit(h, 3);
    assert_int_equal(exit_int(r, "code"), 126);
    assert_non_null(strstr(json_string_value(json_object_get(r->exit, "error")), "ermission"));
    r = wait_exit(h, 4);
    assert_int_equal(exit_int(r, "code"), 127);
    assert_non_null(strstr(json_string_value(json_object_get(r->exit, "error")),
                           "cannot change directory to /nonexistent"));
    unlink(noexec);
    check_alive(h, 1);
    assert_int_equal(host_finish(h), -ECONNRESET);
}

static void test_agent_bad_json(void **state)
{
    (void)state;
    struct host *h = host_connect();
    const char *bad[] = {"{not json", "[1,2]", "{\"type\":5}", "{}", "", "\"x\""};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        send_json(h, bad[i]);
        json_t *m = wait_misc(h, "error");
        assert_non_null(json_string_value(json_object_get(m, "message")));
        json_decref(m);
        check_alive(h, (int)i);
    }
    assert_int_equal(host_finish(h), -ECONNRESET);
}

static void test_agent_unknown_type(void **state)
{
    (void)state;
    struct host *h = host_connect();
    send_json(h, "{\"type\":\"frobnicate\",\"id\":3}");
    /* An unknown type is answered without an id: the agent cannot know what it meant. */
    json_t *m = wait_misc(h, "error");
    assert_non_null(strstr(json_string_value(json_object_get(m, "message")), "frobnicate"));
    json_decref(m);
    check_alive(h, 9);
    assert_int_equal(host_finish(h), -ECONNRESET);
}

static void test_agent_exec_bad_fields(void **state)
{
    (void)state;
    struct host *h = host_connect();
    /* No usable id: error without id. */
    send_json(h, "{\"type\":\"exec\",\"argv\":[\"true\"]}");
    send_json(h, "{\"type\":\"exec\",\"id\":-1,\"argv\":[\"true\"]}");
    send_json(h, "{\"type\":\"exec\",\"id\":\"1\",\"argv\":[\"true\"]}");
    for (int i = 0; i < 3; i++) {
        json_t *m = wait_misc(h, "error");
        assert_non_null(strstr(json_string_value(json_object_get(m, "message")), "id"));
        json_decref(m);
    }
    /* Bad fields with an id: error with that id, nothing runs. */
    const char *bad[] = {
        "{\"type\":\"exec\",\"id\":1}",
        "{\"type\":\"exec\",\"id\":1,\"argv\":[]}",
        "{\"type\":\"exec\",\"id\":1,\"argv\":[\"echo\",2]}",
        "{\"type\":\"exec\",\"id\":1,\"argv\":[\"true\"],\"env\":[\"NOEQUALS\"]}",
        "{\"type\":\"exec\",\"id\":1,\"argv\":[\"true\"],\"env\":[\"=x\"]}",
        "{\"type\":\"exec\",\"id\":1,\"argv\":[\"true\"],\"env\":\"A=B\"}",
        "{\"type\":\"exec\",\"id\":1,\"argv\":[\"true\"],\"cwd\":5}",
        "{\"type\":\"exec\",\"id\":1,\"argv\":[\"true\"],\"stdin\":\"yes\"}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        send_json(h, bad[i]);
        wait_error(h, 1, (int)i + 1);
    }
    assert_false(h->res[1].started);
    assert_null(h->res[1].exit);
    /* A duplicate id while the first is running. */
    send_json(h, "{\"type\":\"exec\",\"id\":2,\"argv\":[\"cat\"],\"stdin\":true}");
    send_json(h, "{\"type\":\"exec\",\"id\":2,\"argv\":[\"true\"]}");
    wait_error(h, 2, 1);
    assert_non_null(strstr(h->res[2].error, "duplicate"));
    /* Data on an output stream, and stdin for an exec that has none. */
    send_data(h, 2, FRAME_STDOUT, "x", 1);
    wait_error(h, 2, 2);
    send_json(h, "{\"type\":\"exec\",\"id\":3,\"argv\":[\"sleep\",\"5\"]}");
    send_data(h, 3, FRAME_STDIN, "x", 1);
    wait_error(h, 3, 1);
    assert_non_null(strstr(h->res[3].error, "without stdin"));
    /* Signals: unknown id, bad number. */
    send_json(h, "{\"type\":\"signal\",\"id\":9,\"signal\":15}");
    wait_error(h, 9, 1);
    send_json(h, "{\"type\":\"signal\",\"id\":3,\"signal\":0}");
    wait_error(h, 3, 2);
    send_json(h, "{\"type\":\"signal\",\"id\":3,\"signal\":9999}");
    wait_error(h, 3, 3);
    /* The first exec 2 still works after all that. */
    send_data(h, 2, FRAME_STDIN, "ok", 2);
    send_data(h, 2, FRAME_STDIN, NULL, 0);
    assert_stream(wait_exit(h, 2), 1, "ok");
    /* After the end of stdin, more stdin is an error. */
    send_json(h, "{\"type\":\"exec\",\"id\":6,\"argv\":[\"sleep\",\"5\"],\"stdin\":true}");
    send_data(h, 6, FRAME_STDIN, NULL, 0);
    send_data(h, 6, FRAME_STDIN, "x", 1);
    wait_error(h, 6, 1);
    assert_non_null(strstr(h->res[6].error, "already closed"));
    check_alive(h, 4);
    assert_int_equal(host_finish(h), -ECONNRESET);
}

static void test_agent_signal_group(void **state)
{
    (void)state;
    struct host *h = host_connect();
    /* The shell's child `sleep` holds stdout: only a group-wide signal ends the exec. */
    send_json(h, "{\"type\":\"exec\",\"id\":1,\"argv\":[\"sh\",\"-c\",\"sleep 100; echo no\"]}");
    int64_t end = now_ms() + WAIT_MS;
    while (!h->res[1].started && now_ms() < end)
        pump(h, 100);
    assert_true(h->res[1].started);
    usleep(100 * 1000);
    send_json(h, "{\"type\":\"signal\",\"id\":1,\"signal\":15}");
    struct result *r = wait_exit(h, 1);
    assert_int_equal(exit_int(r, "signal"), 15);
    assert_stream(r, 1, "");
    assert_int_equal(h->res[1].nerrors, 0);
    assert_int_equal(host_finish(h), -ECONNRESET);
}

static void test_agent_large_output(void **state)
{
    (void)state;
    struct host *h = host_connect();
    /* 8 MiB of a known pattern on stdout and 1 MiB on stderr at the same time. */
    send_json(h, "{\"type\":\"exec\",\"id\":1,\"argv\":[\"sh\",\"-c\","
                 "\"yes 0123456789abcde | head -c 1048576 >&2 & "
                 "yes 0123456789ABCDE | head -c 8388608; wait\"]}");
    struct result *r = wait_exit(h, 1);
    assert_int_equal(exit_int(r, "code"), 0);
    assert_int_equal(r->out[1].len, 8u << 20);
    assert_int_equal(r->out[2].len, 1u << 20);
    for (size_t i = 0; i < r->out[1].len; i += 16)
        assert_memory_equal(r->out[1].data + i, "0123456789ABCDE\n", 16);
    for (size_t i = 0; i < r->out[2].len; i += 16)
        assert_memory_equal(r->out[2].data + i, "0123456789abcde\n", 16);
    assert_int_equal(host_finish(h), -ECONNRESET);
}

static void test_agent_framing_error_unknown_kind(void **state)
{
    (void)state;
    struct host *h = host_connect();
    check_alive(h, 1);
    const uint8_t bad[] = {0, 0, 0, 1, 9, 'x'};
    send_raw(h, bad, sizeof(bad));
    wait_eof(h);
    assert_int_equal(host_finish(h), -EPROTO);
}

static void test_agent_framing_error_oversize(void **state)
{
    (void)state;
    struct host *h = host_connect();
    uint8_t bad[5];
    be32_store(bad, FRAME_MAX_PAYLOAD + 1);
    bad[4] = FRAME_JSON;
    send_raw(h, bad, sizeof(bad));
    wait_eof(h);
    assert_int_equal(host_finish(h), -EMSGSIZE);
}

static void test_agent_framing_error_bad_stream(void **state)
{
    (void)state;
    struct host *h = host_connect();
    const uint8_t bad[] = {0, 0, 0, 5, FRAME_DATA, 0, 0, 0, 1, 3};
    send_raw(h, bad, sizeof(bad));
    wait_eof(h);
    assert_int_equal(host_finish(h), -EPROTO);
}

/* True when `target` is what one of this process's inheritable fds points at. */
static bool inherited_from_test(const char *target)
{
    DIR *d = opendir("/proc/self/fd");
    bool found = false;
    struct dirent *de;
    while (d && !found && (de = readdir(d))) {
        char path[64], link[256];
        long fd = strtol(de->d_name, NULL, 10);
        if (de->d_name[0] == '.' || (fcntl((int)fd, F_GETFD) & FD_CLOEXEC))
            continue;
        snprintf(path, sizeof(path), "/proc/self/fd/%ld", fd);
        ssize_t n = readlink(path, link, sizeof(link) - 1);
        if (n > 0) {
            link[n] = '\0';
            found = strcmp(link, target) == 0;
        }
    }
    if (d)
        closedir(d);
    return found;
}

static void test_agent_exec_no_leaked_fds(void **state)
{
    (void)state;
    struct host *h = host_connect();
    /* Another exec is running, so its pipes and pidfd exist while exec 2 starts. */
    send_json(h, "{\"type\":\"exec\",\"id\":1,\"argv\":[\"cat\"],\"stdin\":true}");
    send_json(h, "{\"type\":\"exec\",\"id\":2,\"argv\":[\"sh\",\"-c\","
                 "\"ls -l /proc/$$/fd\"]}");
    struct result *r = wait_exit(h, 2);
    assert_int_equal(exit_int(r, "code"), 0);
    assert_int_equal(buf_append(&r->out[1], "", 1), 0);
    char *text = (char *)r->out[1].data;
    /*
     * fds 1 and 2 are the exec's own pipes; nothing of the agent's may be
     * inherited (what the test runner itself passed down without
     * close-on-exec is not the agent's doing, so it is skipped).
     */
    assert_non_null(strstr(text, " 1 -> pipe:"));
    assert_non_null(strstr(text, " 2 -> pipe:"));
    assert_non_null(strstr(text, " 0 -> /dev/null"));
    for (char *line = text; *line;) {
        char *nl = strchr(line, '\n');
        assert_non_null(nl);
        *nl = '\0';
        char *arrow = strstr(line, " -> "); /* "... FD -> TARGET" */
        if (arrow) {
            char *num = arrow;
            while (num > line && num[-1] != ' ')
                num--;
            long fd = strtol(num, NULL, 10);
            const char *target = arrow + 4;
            if (fd > 2 && !inherited_from_test(target) &&
                (strstr(target, "socket:") || strstr(target, "pipe:") ||
                 strstr(target, "eventpoll") || strstr(target, "pidfd")))
                fail_msg("the child inherited an agent fd: %s", num);
        }
        line = nl + 1;
    }
    send_data(h, 1, FRAME_STDIN, NULL, 0);
    assert_int_equal(exit_int(wait_exit(h, 1), "code"), 0);
    assert_int_equal(host_finish(h), -ECONNRESET);
}

static void test_agent_shutdown(void **state)
{
    (void)state;
    struct host *h = host_connect();
    send_json(h, "{\"type\":\"exec\",\"id\":1,\"argv\":[\"sleep\",\"100\"]}");
    int64_t end = now_ms() + WAIT_MS;
    while (!h->res[1].started && now_ms() < end)
        pump(h, 100);
    assert_true(h->res[1].started);
    pid_t pid = h->res[1].pid;
    send_json(h, "{\"type\":\"shutdown\"}");
    json_t *m = wait_misc(h, "bye");
    json_decref(m);
    wait_eof(h);
    end = now_ms() + WAIT_MS;
    while (!__atomic_load_n(&h->done, __ATOMIC_ACQUIRE) && now_ms() < end)
        usleep(10000);
    /* The agent returned 0 and its child is gone (killed and reaped). */
    assert_true(__atomic_load_n(&h->done, __ATOMIC_ACQUIRE));
    assert_int_equal(kill(pid, 0), -1);
    assert_int_equal(errno, ESRCH);
    assert_null(h->res[1].exit); /* no exit after bye */
    assert_int_equal(host_finish(h), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_agent_hello_exchange),
        cmocka_unit_test(test_agent_hello_ca_pem),
        cmocka_unit_test(test_agent_ping_pong),
        cmocka_unit_test(test_agent_exec_echo),
        cmocka_unit_test(test_agent_exec_exit_code),
        cmocka_unit_test(test_agent_exec_signal_death),
        cmocka_unit_test(test_agent_exec_streams_apart),
        cmocka_unit_test(test_agent_exec_env_cwd),
        cmocka_unit_test(test_agent_exec_stdin_passthrough),
        cmocka_unit_test(test_agent_exec_concurrent),
        cmocka_unit_test(test_agent_exec_not_found),
        cmocka_unit_test(test_agent_bad_json),
        cmocka_unit_test(test_agent_unknown_type),
        cmocka_unit_test(test_agent_exec_bad_fields),
        cmocka_unit_test(test_agent_signal_group),
        cmocka_unit_test(test_agent_large_output),
        cmocka_unit_test(test_agent_framing_error_unknown_kind),
        cmocka_unit_test(test_agent_framing_error_oversize),
        cmocka_unit_test(test_agent_framing_error_bad_stream),
        cmocka_unit_test(test_agent_exec_no_leaked_fds),
        cmocka_unit_test(test_agent_shutdown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
