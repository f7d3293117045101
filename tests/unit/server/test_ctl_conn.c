/*
 * Unit tests for the host side of the control channel (server/ctl_conn.c).
 * A thread plays the guest agent over a socketpair with the real framing:
 * it sends hello, answers exec with started/data/exit, answers shutdown with
 * bye, or misbehaves on purpose. What each kind of bad guest input must do:
 *   bad frame (unknown kind, oversize, bad data header, truncated) -> closed, -EPROTO;
 *   wrong-direction or unknown-exec data, first message not hello,
 *   exit without a status                                          -> closed, -EPROTO;
 *   protocol version mismatch                                      -> closed, -EPROTONOSUPPORT;
 *   bad JSON or unknown type after hello -> `error` reply, the run goes on, nothing lost;
 *   connection dropped before exit                                 -> closed, -ECONNRESET.
 */
#include "ctl_conn.h"
#include "fake_guest.h"
#include "loop.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <time.h>

struct scenario;
typedef void (*guest_fn)(int fd, struct scenario *s);

struct scenario {
    /* Guest side */
    guest_fn guest;
    int guest_fd;
    int exit_code;   /* what the fake guest reports */
    int exit_signal; /* used instead of code when > 0 */
    const char *hello_json;
    struct buf guest_stdin; /* what the guest received on stream 0 */
    bool guest_saw_eof;
    bool guest_got_error_reply;
    char guest_error_text[256];
    char host_hello[512];
    char exec_json[1024];
    /* Host side */
    struct ctl_conn *conn;
    const uint8_t *stdin_data;
    size_t stdin_len;
    size_t stdin_sent;
    uint32_t exec_id;
    bool hello;
    bool got_exit;
    struct ctl_exit exit;
    struct buf out, err;
    int out_eos, err_eos;
    bool closed;
    int close_err;
    char close_msg[256];
    char guest_err_msg[256];
    uint32_t guest_err_id;
};

/* ---- host callbacks ----------------------------------------------------- */

static void feed_stdin(struct scenario *s)
{
    while (s->stdin_sent < s->stdin_len && ctl_conn_pending(s->conn) < CTL_CONN_HIGH_WATER) {
        size_t n = s->stdin_len - s->stdin_sent;
        if (n > 65536)
            n = 65536;
        assert_int_equal(ctl_conn_send_stdin(s->conn, s->exec_id, s->stdin_data + s->stdin_sent, n),
                         0);
        s->stdin_sent += n;
    }
    if (s->stdin_sent == s->stdin_len && s->stdin_data) {
        assert_int_equal(ctl_conn_send_stdin(s->conn, s->exec_id, NULL, 0), 0);
        s->stdin_data = NULL;
    }
}

static void h_hello(void *opaque, const struct ctl_hello *h)
{
    struct scenario *s = opaque;
    assert_int_equal(h->protocol, 1);
    s->hello = true;
    const char *argv[] = {"prog", "arg one"};
    const char *env[] = {"A=1"};
    assert_int_equal(ctl_conn_exec(s->conn, argv, 2, env, 1, "/", s->stdin_len > 0, &s->exec_id),
                     0);
    if (s->stdin_len)
        feed_stdin(s);
}

static void h_output(void *opaque, uint32_t id, int stream, const uint8_t *p, size_t len)
{
    struct scenario *s = opaque;
    assert_int_equal(id, s->exec_id);
    if (stream == 1) {
        if (!len)
            s->out_eos++;
        assert_int_equal(buf_append(&s->out, p, len), 0);
    } else {
        assert_int_equal(stream, 2);
        if (!len)
            s->err_eos++;
        assert_int_equal(buf_append(&s->err, p, len), 0);
    }
}

static void h_exit(void *opaque, const struct ctl_exit *e)
{
    struct scenario *s = opaque;
    s->got_exit = true;
    s->exit = *e;
    assert_int_equal(ctl_conn_shutdown(s->conn), 0);
}

static void h_guest_error(void *opaque, uint32_t id, const char *msg)
{
    struct scenario *s = opaque;
    s->guest_err_id = id;
    snprintf(s->guest_err_msg, sizeof(s->guest_err_msg), "%s", msg);
}

static void h_drained(void *opaque)
{
    feed_stdin(opaque);
}

static void h_closed(void *opaque, int err, const char *msg)
{
    struct scenario *s = opaque;
    s->closed = true;
    s->close_err = err;
    snprintf(s->close_msg, sizeof(s->close_msg), "%s", msg);
}

static const struct ctl_conn_ops ops = {
    .on_hello = h_hello,
    .on_output = h_output,
    .on_exit = h_exit,
    .on_guest_error = h_guest_error,
    .on_drained = h_drained,
    .on_closed = h_closed,
};

/* ---- guest scenarios ---------------------------------------------------- */

static void guest_hello(int fd, struct scenario *s)
{
    const char *hello = s->hello_json ? s->hello_json
                                      : "{\"type\":\"hello\",\"protocol\":1,\"agent\":\"0.1\","
                                        "\"kernel\":\"6.1.0-capsem\",\"boot_ms\":12}";
    assert_true(fg_send_json(fd, hello));
}

/* Read the host hello and the exec request; returns the exec id. */
static uint32_t guest_wait_exec(int fd, struct scenario *s)
{
    struct fg_frame f;
    assert_true(fg_expect(fd, "hello", &f));
    snprintf(s->host_hello, sizeof(s->host_hello), "%s", (char *)f.payload);
    fg_frame_free(&f);
    assert_true(fg_expect(fd, "exec", &f));
    snprintf(s->exec_json, sizeof(s->exec_json), "%s", (char *)f.payload);
    uint32_t id = (uint32_t)json_integer_value(json_object_get(f.json, "id"));
    fg_frame_free(&f);
    return id;
}

static void guest_finish(int fd, struct scenario *s, uint32_t id)
{
    char msg[128];
    assert_true(fg_send_data(fd, id, 1, NULL, 0));
    assert_true(fg_send_data(fd, id, 2, NULL, 0));
    if (s->exit_signal)
        snprintf(msg, sizeof(msg), "{\"type\":\"exit\",\"id\":%u,\"signal\":%d}", id,
                 s->exit_signal);
    else
        snprintf(msg, sizeof(msg), "{\"type\":\"exit\",\"id\":%u,\"code\":%d}", id, s->exit_code);
    assert_true(fg_send_json(fd, msg));
    struct fg_frame f;
    assert_true(fg_expect(fd, "shutdown", &f));
    fg_frame_free(&f);
    assert_true(fg_send_json(fd, "{\"type\":\"bye\"}"));
}

/* Well-behaved guest: output on both streams, interleaved, then exit. */
static void guest_normal(int fd, struct scenario *s)
{
    guest_hello(fd, s);
    uint32_t id = guest_wait_exec(fd, s);
    char started[64];
    snprintf(started, sizeof(started), "{\"type\":\"started\",\"id\":%u,\"pid\":77}", id);
    assert_true(fg_send_json(fd, started));
    assert_true(fg_send_data(fd, id, 1, "out-1 ", 6));
    assert_true(fg_send_data(fd, id, 2, "err-1 ", 6));
    assert_true(fg_send_data(fd, id, 1, "out-2", 5));
    assert_true(fg_send_data(fd, id, 2, "err-2", 5));
    guest_finish(fd, s, id);
}

/* Echo guest: everything received on stdin comes back on stdout. */
static void guest_echo(int fd, struct scenario *s)
{
    guest_hello(fd, s);
    uint32_t id = guest_wait_exec(fd, s);
    struct fg_frame f;
    while (fg_recv(fd, &f)) {
        if (f.kind == FRAME_DATA) {
            assert_int_equal(f.stream, 0);
            assert_int_equal(f.exec_id, id);
            if (!f.data_len) {
                s->guest_saw_eof = true;
                fg_frame_free(&f);
                break;
            }
            assert_int_equal(buf_append(&s->guest_stdin, f.data, f.data_len), 0);
            assert_true(fg_send_data(fd, id, 1, f.data, f.data_len));
        }
        fg_frame_free(&f);
    }
    guest_finish(fd, s, id);
}

/* Sends hello, then the raw bytes in s->exec_json (reused as the bad input), then waits. */
static void guest_raw_after_hello(int fd, struct scenario *s)
{
    guest_hello(fd, s);
    struct fg_frame f;
    assert_true(fg_expect(fd, "hello", &f));
    fg_frame_free(&f);
    size_t len = 0;
    memcpy(&len, s->exec_json, sizeof(len));
    assert_true(fg_write(fd, s->exec_json + sizeof(len), len));
    shutdown(fd, SHUT_WR);
    /* The host must close: reading hits EOF (other frames, like exec, are skipped). */
    while (fg_recv(fd, &f))
        fg_frame_free(&f);
}

/* Recoverable junk (bad JSON, unknown type, guest error) before a normal run. */
static void guest_junk_then_normal(int fd, struct scenario *s)
{
    guest_hello(fd, s);
    uint32_t id = guest_wait_exec(fd, s);
    assert_true(fg_send_json(fd, "{not json"));
    struct fg_frame f;
    assert_true(fg_expect(fd, "error", &f));
    s->guest_got_error_reply = true;
    fg_frame_free(&f);
    assert_true(fg_send_json(fd, "{\"type\":\"frobnicate\",\"x\":1}"));
    assert_true(fg_expect(fd, "error", &f));
    snprintf(s->guest_error_text, sizeof(s->guest_error_text), "%s",
             json_string_value(json_object_get(f.json, "message")));
    fg_frame_free(&f);
    char msg[128];
    snprintf(msg, sizeof(msg), "{\"type\":\"error\",\"id\":%u,\"message\":\"oops\\u0007\"}", id);
    assert_true(fg_send_json(fd, msg));
    assert_true(fg_send_data(fd, id, 1, "kept", 4));
    guest_finish(fd, s, id);
}

/* Drops the connection after the exec arrived. */
static void guest_vanish(int fd, struct scenario *s)
{
    guest_hello(fd, s);
    uint32_t id = guest_wait_exec(fd, s);
    assert_true(fg_send_data(fd, id, 1, "partial", 7));
}

static void guest_bad_exit(int fd, struct scenario *s)
{
    guest_hello(fd, s);
    uint32_t id = guest_wait_exec(fd, s);
    char msg[96];
    snprintf(msg, sizeof(msg), "{\"type\":\"exit\",\"id\":%u,\"code\":300}", id);
    assert_true(fg_send_json(fd, msg));
    struct fg_frame f;
    while (fg_recv(fd, &f))
        fg_frame_free(&f);
}

/* ---- harness -------------------------------------------------------------- */

static void *guest_thread(void *arg)
{
    struct scenario *s = arg;
    s->guest(s->guest_fd, s);
    shutdown(s->guest_fd, SHUT_RDWR);
    return NULL;
}

static void run_scenario(struct scenario *s)
{
    int sv[2];
    struct loop *l;
    pthread_t t;
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    assert_int_equal(loop_create(&l), 0);
    buf_init(&s->out, 0);
    buf_init(&s->err, 0);
    buf_init(&s->guest_stdin, 0);
    s->guest_fd = sv[1];
    assert_int_equal(ctl_conn_create(l, sv[0], &ops, s, "capsem", &s->conn), 0);
    assert_int_equal(pthread_create(&t, NULL, guest_thread, s), 0);
    time_t deadline = time(NULL) + 20;
    while (!s->closed && time(NULL) < deadline)
        assert_true(loop_run_once(l, 200) >= 0);
    assert_true(s->closed);
    pthread_join(t, NULL);
    ctl_conn_destroy(s->conn);
    loop_destroy(l);
    close(sv[1]);
}

static void scenario_fini(struct scenario *s)
{
    buf_fini(&s->out);
    buf_fini(&s->err);
    buf_fini(&s->guest_stdin);
}

static void check_status(int code, int sig, int want)
{
    struct scenario s = {.guest = guest_normal, .exit_code = code, .exit_signal = sig};
    run_scenario(&s);
    assert_int_equal(s.close_err, 0);
    assert_true(s.got_exit);
    assert_int_equal(ctl_exit_status(&s.exit), want);
    scenario_fini(&s);
}

/* ---- tests ------------------------------------------------------------------ */

static void test_ctl_conn_exit_status_zero(void **state)
{
    (void)state;
    check_status(0, 0, 0);
}

static void test_ctl_conn_exit_status_one(void **state)
{
    (void)state;
    check_status(1, 0, 1);
}

static void test_ctl_conn_exit_status_42(void **state)
{
    (void)state;
    check_status(42, 0, 42);
}

static void test_ctl_conn_exit_signal_maps_to_128_plus_n(void **state)
{
    (void)state;
    check_status(0, SIGKILL, 137);
    check_status(0, SIGINT, 130);
}

static void test_ctl_exit_status_mapping(void **state)
{
    (void)state;
    struct ctl_exit e = {.code = 255};
    assert_int_equal(ctl_exit_status(&e), 255);
    e = (struct ctl_exit){.code = -1, .signal = 15};
    assert_int_equal(ctl_exit_status(&e), 143);
}

static void test_ctl_conn_hello_answer_and_exec_fields(void **state)
{
    (void)state;
    struct scenario s = {.guest = guest_normal};
    run_scenario(&s);
    json_t *h = json_loads(s.host_hello, 0, NULL);
    assert_non_null(h);
    assert_int_equal(json_integer_value(json_object_get(h, "protocol")), 1);
    assert_true(json_integer_value(json_object_get(h, "time_ns")) > 1600000000LL * 1000000000LL);
    assert_string_equal(json_string_value(json_object_get(h, "hostname")), "capsem");
    json_decref(h);
    json_t *e = json_loads(s.exec_json, 0, NULL);
    assert_non_null(e);
    assert_string_equal(json_string_value(json_array_get(json_object_get(e, "argv"), 1)),
                        "arg one");
    assert_string_equal(json_string_value(json_array_get(json_object_get(e, "env"), 0)), "A=1");
    assert_string_equal(json_string_value(json_object_get(e, "cwd")), "/");
    assert_true(json_is_false(json_object_get(e, "stdin")));
    json_decref(e);
    scenario_fini(&s);
}

static void test_ctl_conn_stdout_stderr_kept_apart(void **state)
{
    (void)state;
    struct scenario s = {.guest = guest_normal};
    run_scenario(&s);
    assert_int_equal(s.out.len, 11);
    assert_memory_equal(s.out.data, "out-1 out-2", 11);
    assert_int_equal(s.err.len, 11);
    assert_memory_equal(s.err.data, "err-1 err-2", 11);
    assert_int_equal(s.out_eos, 1);
    assert_int_equal(s.err_eos, 1);
    scenario_fini(&s);
}

static void test_ctl_conn_stdin_forwarded_intact(void **state)
{
    (void)state;
    size_t len = 3u << 20; /* more than the high-water mark: exercises back-pressure */
    uint8_t *data = malloc(len);
    assert_non_null(data);
    uint32_t x = 12345;
    for (size_t i = 0; i < len; i++) {
        x = x * 1103515245u + 12345u;
        data[i] = (uint8_t)(x >> 16);
    }
    struct scenario s = {.guest = guest_echo, .stdin_data = data, .stdin_len = len};
    run_scenario(&s);
    assert_int_equal(s.close_err, 0);
    assert_true(s.guest_saw_eof);
    assert_int_equal(s.guest_stdin.len, len);
    assert_memory_equal(s.guest_stdin.data, data, len);
    assert_int_equal(s.out.len, len);
    assert_memory_equal(s.out.data, data, len);
    json_t *e = json_loads(s.exec_json, 0, NULL);
    assert_true(json_is_true(json_object_get(e, "stdin")));
    json_decref(e);
    scenario_fini(&s);
    free(data);
}

/* Bad bytes after a good hello; the conn must close with -EPROTO and `want` in the reason. */
static void check_bad_input(const void *bytes, size_t len, int want_err, const char *want)
{
    struct scenario s = {.guest = guest_raw_after_hello};
    assert_true(len + sizeof(len) <= sizeof(s.exec_json));
    memcpy(s.exec_json, &len, sizeof(len));
    memcpy(s.exec_json + sizeof(len), bytes, len);
    run_scenario(&s);
    assert_int_equal(s.close_err, want_err);
    if (!strstr(s.close_msg, want))
        fail_msg("reason '%s' lacks '%s'", s.close_msg, want);
    assert_false(s.got_exit);
    scenario_fini(&s);
}

static void test_ctl_conn_bad_frame_unknown_kind(void **state)
{
    (void)state;
    const uint8_t f[] = {0, 0, 0, 2, 7, '{', '}'};
    check_bad_input(f, sizeof(f), -EPROTO, "unknown kind 7");
}

static void test_ctl_conn_bad_frame_oversize(void **state)
{
    (void)state;
    const uint8_t f[] = {0, 0x20, 0, 0, 1, '{'};
    check_bad_input(f, sizeof(f), -EPROTO, "over the");
}

static void test_ctl_conn_bad_frame_short_data_header(void **state)
{
    (void)state;
    const uint8_t f[] = {0, 0, 0, 3, 2, 0, 0, 1};
    check_bad_input(f, sizeof(f), -EPROTO, "malformed data frame");
}

static void test_ctl_conn_bad_frame_stream_above_2(void **state)
{
    (void)state;
    const uint8_t f[] = {0, 0, 0, 6, 2, 0, 0, 0, 1, 3, 'x'};
    check_bad_input(f, sizeof(f), -EPROTO, "malformed data frame");
}

static void test_ctl_conn_bad_frame_data_on_stdin_stream(void **state)
{
    (void)state;
    /* Exec 1 exists (the host sent it on hello), but stream 0 is host-to-guest only. */
    const uint8_t f[] = {0, 0, 0, 6, 2, 0, 0, 0, 1, 0, 'x'};
    check_bad_input(f, sizeof(f), -EPROTO, "stream 0");
}

static void test_ctl_conn_bad_frame_unknown_exec(void **state)
{
    (void)state;
    const uint8_t f[] = {0, 0, 0, 6, 2, 0, 0, 0, 99, 1, 'x'};
    check_bad_input(f, sizeof(f), -EPROTO, "never started");
}

static void test_ctl_conn_bad_frame_truncated_then_closed(void **state)
{
    (void)state;
    const uint8_t f[] = {0, 0, 0, 50, 1, '{', '"'};
    check_bad_input(f, sizeof(f), -EPROTO, "middle of a frame");
}

static void test_ctl_conn_first_message_not_hello(void **state)
{
    (void)state;
    struct scenario s = {.guest = guest_hello,
                         .hello_json = "{\"type\":\"exit\",\"id\":1,\"code\":0}"};
    run_scenario(&s);
    assert_int_equal(s.close_err, -EPROTO);
    assert_non_null(strstr(s.close_msg, "not hello"));
    assert_false(s.hello);
    scenario_fini(&s);
}

static void test_ctl_conn_first_message_bad_json(void **state)
{
    (void)state;
    struct scenario s = {.guest = guest_hello, .hello_json = "\x01garbage"};
    run_scenario(&s);
    assert_int_equal(s.close_err, -EPROTO);
    assert_non_null(strstr(s.close_msg, "not a JSON hello"));
    scenario_fini(&s);
}

static void test_ctl_conn_protocol_version_mismatch(void **state)
{
    (void)state;
    struct scenario s = {.guest = guest_hello,
                         .hello_json = "{\"type\":\"hello\",\"protocol\":2,\"agent\":\"9\"}"};
    run_scenario(&s);
    assert_int_equal(s.close_err, -EPROTONOSUPPORT);
    assert_non_null(strstr(s.close_msg, "protocol 2"));
    assert_false(s.hello);
    scenario_fini(&s);
}

static void test_ctl_conn_hello_without_protocol(void **state)
{
    (void)state;
    struct scenario s = {.guest = guest_hello, .hello_json = "{\"type\":\"hello\"}"};
    run_scenario(&s);
    assert_int_equal(s.close_err, -EPROTO);
    assert_non_null(strstr(s.close_msg, "protocol"));
    scenario_fini(&s);
}

static void test_ctl_conn_bad_json_and_unknown_type_lose_nothing(void **state)
{
    (void)state;
    struct scenario s = {.guest = guest_junk_then_normal, .exit_code = 3};
    run_scenario(&s);
    assert_true(s.guest_got_error_reply);
    assert_non_null(strstr(s.guest_error_text, "frobnicate"));
    /* The guest's own error report reaches the host, escaped. */
    assert_int_equal(s.guest_err_id, s.exec_id);
    assert_string_equal(s.guest_err_msg, "oops\\x07");
    assert_int_equal(s.close_err, 0);
    assert_true(s.got_exit);
    assert_int_equal(ctl_exit_status(&s.exit), 3);
    assert_int_equal(s.out.len, 4);
    assert_memory_equal(s.out.data, "kept", 4);
    scenario_fini(&s);
}

static void test_ctl_conn_connection_lost_before_exit(void **state)
{
    (void)state;
    struct scenario s = {.guest = guest_vanish};
    run_scenario(&s);
    assert_int_equal(s.close_err, -ECONNRESET);
    assert_non_null(strstr(s.close_msg, "lost"));
    assert_false(s.got_exit);
    /* What arrived before the loss was delivered. */
    assert_int_equal(s.out.len, 7);
    scenario_fini(&s);
}

static void test_ctl_conn_exit_without_valid_status(void **state)
{
    (void)state;
    struct scenario s = {.guest = guest_bad_exit};
    run_scenario(&s);
    assert_int_equal(s.close_err, -EPROTO);
    assert_non_null(strstr(s.close_msg, "exit"));
    assert_false(s.got_exit);
    scenario_fini(&s);
}

static void test_ctl_conn_exec_before_hello_refused(void **state)
{
    (void)state;
    int sv[2];
    struct loop *l;
    struct ctl_conn *c;
    struct scenario s = {0};
    uint32_t id;
    const char *argv[] = {"x"};
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    assert_int_equal(loop_create(&l), 0);
    assert_int_equal(ctl_conn_create(l, sv[0], &ops, &s, NULL, &c), 0);
    assert_int_equal(ctl_conn_exec(c, argv, 1, NULL, 0, NULL, false, &id), -ENOTCONN);
    assert_int_equal(ctl_conn_send_stdin(c, 1, "x", 1), -ENOTCONN);
    ctl_conn_destroy(c);
    loop_destroy(l);
    close(sv[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ctl_conn_exit_status_zero),
        cmocka_unit_test(test_ctl_conn_exit_status_one),
        cmocka_unit_test(test_ctl_conn_exit_status_42),
        cmocka_unit_test(test_ctl_conn_exit_signal_maps_to_128_plus_n),
        cmocka_unit_test(test_ctl_exit_status_mapping),
        cmocka_unit_test(test_ctl_conn_hello_answer_and_exec_fields),
        cmocka_unit_test(test_ctl_conn_stdout_stderr_kept_apart),
        cmocka_unit_test(test_ctl_conn_stdin_forwarded_intact),
        cmocka_unit_test(test_ctl_conn_bad_frame_unknown_kind),
        cmocka_unit_test(test_ctl_conn_bad_frame_oversize),
        cmocka_unit_test(test_ctl_conn_bad_frame_short_data_header),
        cmocka_unit_test(test_ctl_conn_bad_frame_stream_above_2),
        cmocka_unit_test(test_ctl_conn_bad_frame_data_on_stdin_stream),
        cmocka_unit_test(test_ctl_conn_bad_frame_unknown_exec),
        cmocka_unit_test(test_ctl_conn_bad_frame_truncated_then_closed),
        cmocka_unit_test(test_ctl_conn_first_message_not_hello),
        cmocka_unit_test(test_ctl_conn_first_message_bad_json),
        cmocka_unit_test(test_ctl_conn_protocol_version_mismatch),
        cmocka_unit_test(test_ctl_conn_hello_without_protocol),
        cmocka_unit_test(test_ctl_conn_bad_json_and_unknown_type_lose_nothing),
        cmocka_unit_test(test_ctl_conn_connection_lost_before_exit),
        cmocka_unit_test(test_ctl_conn_exit_without_valid_status),
        cmocka_unit_test(test_ctl_conn_exec_before_hello_refused),
    };
    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
