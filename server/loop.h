/*
 * The server's event loop (epoll). One loop per process owns the sockets,
 * pipes, timers and signal fds of every session it hosts; callbacks run on
 * the loop thread and never block for long. `capsem run` and the daemon
 * drive their sessions through this same loop.
 */
#ifndef CAPSEM_SERVER_LOOP_H
#define CAPSEM_SERVER_LOOP_H

#include <stdint.h>

struct server_loop;

/* Called on the loop thread with the epoll events that fired for the fd. */
typedef void (*server_loop_fn)(void *opaque, uint32_t events);

/* Create a loop into *out. 0 or -errno. */
__attribute__((warn_unused_result)) int server_loop_create(struct server_loop **out);
/* Free the loop; fds still registered are not closed (they are borrowed). Accepts NULL. */
void server_loop_destroy(struct server_loop *l);

/*
 * Watch `fd` (borrowed) for `events` (EPOLLIN, EPOLLOUT…, level-triggered).
 * 0, -EEXIST when already watched, -EPERM when the fd cannot be polled
 * (regular files, /dev/null), or another -errno.
 */
__attribute__((warn_unused_result)) int
server_loop_add(struct server_loop *l, int fd, uint32_t events, server_loop_fn fn, void *opaque);
/* Change the events watched on `fd`. 0 or -errno (-ENOENT when not watched). */
__attribute__((warn_unused_result)) int server_loop_mod(struct server_loop *l, int fd,
                                                        uint32_t events);
/* Stop watching `fd`; safe from inside any callback, including the fd's own. */
int server_loop_del(struct server_loop *l, int fd);

/*
 * Wait up to `timeout_ms` (-1 = forever) and run the callbacks of whatever
 * fired. Returns the number of callbacks run, or -errno on an epoll failure.
 */
int server_loop_run_once(struct server_loop *l, int timeout_ms);
/* Run callbacks until server_loop_stop(). 0, or -errno on an epoll failure. */
int server_loop_run(struct server_loop *l);
/* Ask server_loop_run() to return after the current callbacks (loop thread). */
void server_loop_stop(struct server_loop *l);

#endif
