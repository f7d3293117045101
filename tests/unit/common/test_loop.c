/*
 * Event loop: callbacks fire for ready fds with their opaque, a callback may
 * remove its own fd or another fd whose event is in the same batch (the
 * removed one is not called), loop_stop() works from a callback and from
 * another thread, and bad arguments are refused.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <cmocka.h>

#include "loop.h"

struct ctx {
    struct loop *loop;
    int fd;
    int other_fd;
    int calls;
    int stop_after;
    bool del_self;
    bool del_other;
};

static void on_ready(void *opaque, uint32_t events)
{
    struct ctx *c = opaque;
    uint64_t v;
    assert_true(events & EPOLLIN);
    c->calls++;
    if (read(c->fd, &v, sizeof(v)) < 0) {
        /* already drained: fine */
    }
    if (c->del_self)
        assert_int_equal(loop_del(c->loop, c->fd), 0);
    if (c->del_other)
        assert_int_equal(loop_del(c->loop, c->other_fd), 0);
    if (c->calls >= c->stop_after)
        loop_stop(c->loop);
}

static void kick(int fd)
{
    uint64_t one = 1;
    assert_int_equal(write(fd, &one, sizeof(one)), sizeof(one));
}

static void test_loop_run_callback(void **state)
{
    (void)state;
    struct loop *l = NULL;
    assert_int_equal(loop_create(&l), 0);
    struct ctx c = {.loop = l, .fd = eventfd(0, EFD_NONBLOCK), .stop_after = 1};
    assert_int_equal(loop_add(l, c.fd, EPOLLIN, on_ready, &c), 0);
    assert_int_equal(loop_add(l, c.fd, EPOLLIN, on_ready, &c), -EEXIST);
    kick(c.fd);
    assert_int_equal(loop_run(l), 0);
    assert_int_equal(c.calls, 1);
    /* runs again after a stop */
    c.stop_after = 2;
    kick(c.fd);
    assert_int_equal(loop_run(l), 0);
    assert_int_equal(c.calls, 2);
    loop_destroy(l);
    close(c.fd);
}

static void test_loop_del_self(void **state)
{
    (void)state;
    struct loop *l = NULL;
    assert_int_equal(loop_create(&l), 0);
    struct ctx c = {.loop = l, .fd = eventfd(0, EFD_NONBLOCK), .stop_after = 1, .del_self = true};
    assert_int_equal(loop_add(l, c.fd, EPOLLIN, on_ready, &c), 0);
    kick(c.fd);
    assert_int_equal(loop_run(l), 0);
    assert_int_equal(loop_del(l, c.fd), -ENOENT); /* already gone */
    assert_int_equal(loop_mod(l, c.fd, EPOLLIN), -ENOENT);
    /* can be added again afterwards */
    assert_int_equal(loop_add(l, c.fd, EPOLLIN, on_ready, &c), 0);
    loop_destroy(l);
    close(c.fd);
}

static void test_loop_del_other_same_batch(void **state)
{
    (void)state;
    struct loop *l = NULL;
    assert_int_equal(loop_create(&l), 0);
    struct ctx a = {.loop = l, .fd = eventfd(0, EFD_NONBLOCK), .stop_after = 100};
    struct ctx b = {.loop = l, .fd = eventfd(0, EFD_NONBLOCK), .stop_after = 100};
    a.other_fd = b.fd;
    a.del_other = true;
    b.other_fd = a.fd;
    b.del_other = true;
    assert_int_equal(loop_add(l, a.fd, EPOLLIN, on_ready, &a), 0);
    assert_int_equal(loop_add(l, b.fd, EPOLLIN, on_ready, &b), 0);
    int stopfd = eventfd(0, EFD_NONBLOCK);
    struct ctx s = {.loop = l, .fd = stopfd, .stop_after = 1};
    assert_int_equal(loop_add(l, stopfd, EPOLLIN, on_ready, &s), 0);
    kick(a.fd);
    kick(b.fd);
    kick(stopfd);
    assert_int_equal(loop_run(l), 0);
    /* whichever ran first removed the other: exactly one callback */
    assert_int_equal(a.calls + b.calls, 1);
    loop_destroy(l);
    close(a.fd);
    close(b.fd);
    close(stopfd);
}

static void *stopper(void *arg)
{
    usleep(20000);
    loop_stop(arg);
    return NULL;
}

static void test_loop_stop_other_thread(void **state)
{
    (void)state;
    struct loop *l = NULL;
    assert_int_equal(loop_create(&l), 0);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, stopper, l), 0);
    assert_int_equal(loop_run(l), 0); /* returns only because of the stop */
    pthread_join(t, NULL);
    loop_destroy(l);
}

static void test_loop_add_bad(void **state)
{
    (void)state;
    struct loop *l = NULL;
    struct ctx c = {0};
    assert_int_equal(loop_create(&l), 0);
    assert_int_equal(loop_add(l, -1, EPOLLIN, on_ready, &c), -EINVAL);
    assert_int_equal(loop_add(l, 0, EPOLLIN, NULL, &c), -EINVAL);
    assert_int_equal(loop_add(l, 9999, EPOLLIN, on_ready, &c), -EBADF);
    assert_int_equal(loop_del(l, 12345), -ENOENT);
    loop_destroy(l);
    loop_destroy(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_loop_run_callback),
        cmocka_unit_test(test_loop_del_self),
        cmocka_unit_test(test_loop_del_other_same_batch),
        cmocka_unit_test(test_loop_stop_other_thread),
        cmocka_unit_test(test_loop_add_bad),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
