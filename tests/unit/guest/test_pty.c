/*
 * Unit tests for the agent's `pty` path (guest/agent/agent.c and
 * schemas/vsock-terminal.md), driven over socketpairs as the host drives it
 * over vsock: the control channel is one socketpair, and the agent's
 * connect_terminal callback hands it one end of a fresh socketpair whose
 * other end the test reads as the host's port 5001. Children are real
 * shells on real PTYs.
 *
 * Bad input and what it gives: cols/rows out of range or no terminal
 * channel -> `error` for that id, nothing started; a program not found ->
 * `exit` 127 with no data frames; the terminal connection cannot be opened
 * -> `exit` 126; a bad frame on the terminal connection -> the agent closes
 * it and the program gets SIGHUP (the control channel stays up); the host
 * closing the terminal connection -> SIGHUP too.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "agent.h"
#include "frame.h"
#include "tframe.h"

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
#include <time.h>
#include <unistd.h>

#define WAIT_MS 20000

struct host {
    int ctl;  /* control channel, host end */
    int term; /* terminal connection, host end, or -1 */
    pthread_t thread;
    struct agent *agent;
    int agent_rc;
    bool refuse_terminal; /* connect_terminal fails with -ECONNREFUSED */
    int connects;
    struct buf rx;     /* control bytes not yet parsed */
    struct buf screen; /* bytes read from the terminal connection (after the header) */
    uint8_t hello[TFRAME_HELLO_LEN];
    size_t hello_len;
    bool term_eof;
    int data_frames; /* data frames seen on the control channel (none expected) */
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int connect_terminal(void *ctx, uint32_t id)
{
    (void)id;
    struct host *h = ctx;
    h->connects++;
    if (h->refuse_terminal)
        return -ECONNREFUSED;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        return -errno;
    __atomic_store_n(&h->term, sv[0], __ATOMIC_RELEASE);
    return sv[1];
}

static void *agent_thread(void *p)
{
    struct host *h = p;
    h->agent_rc = agent_run(h->agent);
    return NULL;
}

static struct host *host_start(bool with_terminal)
{
    struct host *h = calloc(1, sizeof(*h));
    assert_non_null(h);
    h->term = -1;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    struct agent_options opt = {.version = "test-1", .ctx = h};
    if (with_terminal)
        opt.connect_terminal = connect_terminal;
    assert_int_equal(agent_create(sv[1], &opt, &h->agent), 0);
    h->ctl = sv[0];
    buf_init(&h->rx, 0);
    buf_init(&h->screen, 0);
    assert_int_equal(pthread_create(&h->thread, NULL, agent_thread, h), 0);
    return h;
}

static void send_frame_json(struct host *h, json_t *m)
{
    char *s = json_dumps(m, JSON_COMPACT);
    assert_non_null(s);
    struct buf b;
    buf_init(&b, 0);
    assert_int_equal(frame_put_json(&b, s, strlen(s)), 0);
    assert_int_equal(write(h->ctl, b.data, b.len), (ssize_t)b.len);
    buf_fini(&b);
    free(s);
    json_decref(m);
}

/* Next JSON message on the control channel (data frames are counted, skipped). */
static json_t *next_msg(struct host *h)
{
    int64_t end = now_ms() + WAIT_MS;
    for (;;) {
        struct frame f;
        size_t used;
        int r = frame_parse(h->rx.data, h->rx.len, &f, &used);
        assert_true(r >= 0);
        if (r == 1) {
            json_t *m = NULL;
            if (f.kind == FRAME_JSON)
                m = json_loadb((const char *)f.payload.ptr, f.payload.len, 0, NULL);
            else
                h->data_frames++;
            buf_consume(&h->rx, used);
            if (m)
                return m;
            continue;
        }
        struct pollfd p = {.fd = h->ctl, .events = POLLIN};
        int left = (int)(end - now_ms());
        assert_true(left > 0);
        assert_int_equal(poll(&p, 1, left), 1);
        uint8_t tmp[4096];
        ssize_t n = read(h->ctl, tmp, sizeof(tmp));
        assert_true(n > 0);
        assert_int_equal(buf_append(&h->rx, tmp, (size_t)n), 0);
    }
}

/* Skip messages until one of `type`; returns it (caller frees). */
static json_t *wait_msg(struct host *h, const char *type)
{
    for (;;) {
        json_t *m = next_msg(h);
        if (!strcmp(json_string_value(json_object_get(m, "type")), type))
            return m;
        json_decref(m);
    }
}

/* Read the terminal connection until `needle` is on screen (or EOF when NULL). */
static void screen_wait(struct host *h, const char *needle)
{
    int64_t end = now_ms() + WAIT_MS;
    while (!h->term_eof) {
        if (needle && h->screen.len &&
            memmem(h->screen.data, h->screen.len, needle, strlen(needle)))
            return;
        int fd = __atomic_load_n(&h->term, __ATOMIC_ACQUIRE);
        int left = (int)(end - now_ms());
        if (left <= 0)
            fail_msg("timed out waiting for '%s'; screen: %.*s", needle ? needle : "EOF",
                     (int)h->screen.len, (const char *)h->screen.data);
        if (fd < 0) {
            usleep(1000);
            continue;
        }
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, left) <= 0)
            continue;
        uint8_t tmp[4096];
        ssize_t n = read(fd, tmp, sizeof(tmp));
        if (n <= 0) {
            h->term_eof = true;
            break;
        }
        size_t off = 0;
        while (h->hello_len < TFRAME_HELLO_LEN && off < (size_t)n)
            h->hello[h->hello_len++] = tmp[off++];
        assert_int_equal(buf_append(&h->screen, tmp + off, (size_t)n - off), 0);
    }
    if (needle)
        assert_non_null(memmem(h->screen.data, h->screen.len, needle, strlen(needle)));
}

static void term_send(struct host *h, const void *p, size_t len, bool resize, uint16_t c,
                      uint16_t r)
{
    struct buf b;
    buf_init(&b, 0);
    if (resize)
        assert_int_equal(tframe_put_resize(&b, c, r), 0);
    else
        assert_int_equal(tframe_put_data(&b, p, len), 0);
    assert_int_equal(write(h->term, b.data, b.len), (ssize_t)b.len);
    buf_fini(&b);
}

static void send_pty(struct host *h, uint32_t id, const char *script, json_t *cols, json_t *rows)
{
    json_t *m = json_pack("{s:s,s:I,s:[s,s,s],s:[s]}", "type", "pty", "id", (json_int_t)id, "argv",
                          "/bin/sh", "-c", script, "env", "PS1=");
    assert_non_null(m);
    if (cols)
        json_object_set_new(m, "cols", cols);
    if (rows)
        json_object_set_new(m, "rows", rows);
    send_frame_json(h, m);
}

/* Check the exit of `id`: code >= 0, or signal when code < 0. */
static void expect_exit(struct host *h, uint32_t id, int code, int sig)
{
    json_t *m = wait_msg(h, "exit");
    assert_int_equal(json_integer_value(json_object_get(m, "id")), id);
    if (code >= 0)
        assert_int_equal(json_integer_value(json_object_get(m, "code")), code);
    else
        assert_int_equal(json_integer_value(json_object_get(m, "signal")), sig);
    json_decref(m);
}

static void host_finish(struct host *h)
{
    send_frame_json(h, json_pack("{s:s}", "type", "shutdown"));
    json_decref(wait_msg(h, "bye"));
    assert_int_equal(pthread_join(h->thread, NULL), 0);
    assert_int_equal(h->agent_rc, 0);
    assert_int_equal(h->data_frames, 0);
    agent_destroy(h->agent);
    close(h->ctl);
    if (h->term >= 0)
        close(h->term);
    buf_fini(&h->rx);
    buf_fini(&h->screen);
    free(h);
}

static void test_pty_runs_on_a_terminal(void **state)
{
    (void)state;
    struct host *h = host_start(true);
    json_decref(wait_msg(h, "hello"));
    send_pty(h, 5,
             "tty >/dev/null && echo on-a-tty; stty size; ps -o tty= -p $$ | grep -q pts && echo "
             "ctty-ok; exit 3",
             json_integer(100), json_integer(40));
    json_t *m = wait_msg(h, "started");
    assert_int_equal(json_integer_value(json_object_get(m, "id")), 5);
    json_decref(m);
    screen_wait(h, NULL); /* the agent closes the terminal before `exit` */
    assert_int_equal(h->hello_len, TFRAME_HELLO_LEN);
    uint32_t id = 0;
    assert_int_equal(tframe_hello_parse(h->hello, &id), 0);
    assert_int_equal(id, 5);
    assert_non_null(memmem(h->screen.data, h->screen.len, "on-a-tty", 8));
    assert_non_null(memmem(h->screen.data, h->screen.len, "40 100", 6));
    assert_non_null(memmem(h->screen.data, h->screen.len, "ctty-ok", 7));
    expect_exit(h, 5, 3, 0);
    host_finish(h);
}

static void test_pty_resize_and_input(void **state)
{
    (void)state;
    struct host *h = host_start(true);
    json_decref(wait_msg(h, "hello"));
    send_pty(h, 1, "echo ready; read line; stty size; echo \"got $line\"", NULL, NULL);
    screen_wait(h, "ready");
    term_send(h, NULL, 0, true, 123, 45);
    term_send(h, "hello\r", 6, false, 0, 0);
    screen_wait(h, "got hello");
    assert_non_null(memmem(h->screen.data, h->screen.len, "45 123", 6));
    expect_exit(h, 1, 0, 0);
    host_finish(h);
}

static void test_pty_default_size_is_80x24(void **state)
{
    (void)state;
    struct host *h = host_start(true);
    json_decref(wait_msg(h, "hello"));
    send_pty(h, 2, "stty size", NULL, NULL);
    screen_wait(h, NULL);
    assert_non_null(memmem(h->screen.data, h->screen.len, "24 80", 5));
    expect_exit(h, 2, 0, 0);
    host_finish(h);
}

static void test_pty_ctrl_c_byte_interrupts(void **state)
{
    (void)state;
    struct host *h = host_start(true);
    json_decref(wait_msg(h, "hello"));
    send_pty(h, 3, "trap 'echo caught; exit 7' INT; echo ready; while :; do sleep 0.05; done", NULL,
             NULL);
    screen_wait(h, "ready");
    term_send(h, "\003", 1, false, 0, 0);
    screen_wait(h, "caught");
    expect_exit(h, 3, 7, 0);
    host_finish(h);
}

static void test_pty_host_hangup_sends_sighup(void **state)
{
    (void)state;
    struct host *h = host_start(true);
    json_decref(wait_msg(h, "hello"));
    send_pty(h, 4, "echo ready; sleep 100", NULL, NULL);
    screen_wait(h, "ready");
    close(h->term);
    h->term = -1;
    expect_exit(h, 4, -1, SIGHUP);
    host_finish(h);
}

static void test_pty_bad_frame_hangs_up(void **state)
{
    (void)state;
    struct host *h = host_start(true);
    json_decref(wait_msg(h, "hello"));
    send_pty(h, 6, "echo ready; sleep 100", NULL, NULL);
    screen_wait(h, "ready");
    const uint8_t bad[6] = {0, 0, 0, 1, 9, 'x'}; /* unknown kind */
    assert_int_equal(write(h->term, bad, sizeof(bad)), 6);
    screen_wait(h, NULL); /* the agent closed the terminal */
    expect_exit(h, 6, -1, SIGHUP);
    /* The control channel is unaffected. */
    send_frame_json(h, json_pack("{s:s,s:i}", "type", "ping", "seq", 9));
    json_t *m = wait_msg(h, "pong");
    assert_int_equal(json_integer_value(json_object_get(m, "seq")), 9);
    json_decref(m);
    host_finish(h);
}

static void test_pty_bad_fields_error(void **state)
{
    (void)state;
    struct host *h = host_start(true);
    json_decref(wait_msg(h, "hello"));
    json_t *bad[] = {json_integer(0), json_integer(65536), json_string("80"), json_integer(-1)};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        send_pty(h, 7, "exit 0", bad[i], NULL);
        json_t *m = wait_msg(h, "error");
        assert_int_equal(json_integer_value(json_object_get(m, "id")), 7);
        assert_non_null(strstr(json_string_value(json_object_get(m, "message")), "cols"));
        json_decref(m);
    }
    send_pty(h, 7, "exit 0", NULL, json_integer(0));
    json_decref(wait_msg(h, "error"));
    assert_int_equal(h->connects, 0); /* nothing was started */
    /* Not on PATH: exit 127, no data frames, no terminal. */
    send_frame_json(
        h, json_pack("{s:s,s:i,s:[s]}", "type", "pty", "id", 8, "argv", "no-such-program-here"));
    json_t *m = wait_msg(h, "exit");
    assert_int_equal(json_integer_value(json_object_get(m, "code")), 127);
    json_decref(m);
    assert_int_equal(h->connects, 0);
    /* A path that cannot be run: 127 too; its terminal was opened and is closed again. */
    send_frame_json(
        h, json_pack("{s:s,s:i,s:[s]}", "type", "pty", "id", 9, "argv", "/nonexistent/prog"));
    m = wait_msg(h, "exit");
    assert_int_equal(json_integer_value(json_object_get(m, "code")), 127);
    json_decref(m);
    assert_int_equal(h->connects, 1);
    screen_wait(h, NULL);
    assert_int_equal(h->screen.len, 0);
    host_finish(h);
}

static void test_pty_without_terminal_channel_errors(void **state)
{
    (void)state;
    struct host *h = host_start(false);
    json_decref(wait_msg(h, "hello"));
    send_pty(h, 1, "exit 0", NULL, NULL);
    json_t *m = wait_msg(h, "error");
    assert_int_equal(json_integer_value(json_object_get(m, "id")), 1);
    json_decref(m);
    host_finish(h);
}

static void test_pty_terminal_connect_failure_exits_126(void **state)
{
    (void)state;
    struct host *h = host_start(true);
    h->refuse_terminal = true;
    json_decref(wait_msg(h, "hello"));
    send_pty(h, 2, "exit 0", NULL, NULL);
    json_t *m = wait_msg(h, "exit");
    assert_int_equal(json_integer_value(json_object_get(m, "code")), 126);
    assert_non_null(strstr(json_string_value(json_object_get(m, "error")), "5001"));
    json_decref(m);
    assert_int_equal(h->connects, 1);
    host_finish(h);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pty_runs_on_a_terminal),
        cmocka_unit_test(test_pty_resize_and_input),
        cmocka_unit_test(test_pty_default_size_is_80x24),
        cmocka_unit_test(test_pty_ctrl_c_byte_interrupts),
        cmocka_unit_test(test_pty_host_hangup_sends_sighup),
        cmocka_unit_test(test_pty_bad_frame_hangs_up),
        cmocka_unit_test(test_pty_bad_fields_error),
        cmocka_unit_test(test_pty_without_terminal_channel_errors),
        cmocka_unit_test(test_pty_terminal_connect_failure_exits_126),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
