/*
 * The event loop (epoll) every host process uses: one loop per process owns
 * its sockets, pipes, timers and signal fds; callbacks run on the loop
 * thread and never block for long. capsem-vmm runs its device back-ends on
 * one; `capsem run`, `capsem shell` and the daemon drive their sessions
 * through one. Other threads hand work over through an eventfd of their own
 * or stop the loop with loop_stop().
 */
#ifndef CAPSEM_COMMON_LOOP_H
#define CAPSEM_COMMON_LOOP_H

#include <stdint.h>

struct loop;

/* Called on the loop thread with the epoll events that fired for the fd. */
typedef void (*loop_fn)(void *opaque, uint32_t events);

/* Create a loop into *out. 0 or -errno. */
__attribute__((warn_unused_result)) int loop_create(struct loop **out);
/* Free the loop; fds still watched are not closed (they are borrowed). Accepts NULL. */
void loop_destroy(struct loop *l);

/*
 * Watch `fd` (borrowed) for `events` (EPOLLIN, EPOLLOUT…, level-triggered).
 * Loop thread, or before the loop runs. 0, -EEXIST when already watched,
 * -EPERM when the fd cannot be polled (regular files, /dev/null), or -errno.
 */
__attribute__((warn_unused_result)) int loop_add(struct loop *l, int fd, uint32_t events,
                                                 loop_fn fn, void *opaque);
/* Change the events watched on `fd`. 0 or -errno (-ENOENT when not watched). */
__attribute__((warn_unused_result)) int loop_mod(struct loop *l, int fd, uint32_t events);
/*
 * Stop watching `fd`; safe from inside any callback, including the fd's own,
 * and after the caller already closed the fd. 0 or -ENOENT.
 */
int loop_del(struct loop *l, int fd);

/*
 * Wait up to `timeout_ms` (-1 = forever) and run the callbacks of whatever
 * fired. Returns the number of callbacks run (0 on a timeout, a signal or a
 * loop_stop() wake-up), or -errno on an epoll failure.
 */
int loop_run_once(struct loop *l, int timeout_ms);
/* Run callbacks until loop_stop(). 0, or -errno on an epoll failure. */
int loop_run(struct loop *l);
/* Make loop_run() return after the current callback. Thread- and signal-safe. */
void loop_stop(struct loop *l);

#endif
