/*
 * The VMM's one event loop (epoll). It owns the device back-ends' file
 * descriptors: queue-notify eventfds, Unix sockets, timers. vCPU threads never
 * run device back-end work; they hand it here through eventfds.
 */
#ifndef CAPSEM_VMM_LOOP_H
#define CAPSEM_VMM_LOOP_H

#include <stdint.h>

struct vmm_loop;

/* Called on the loop thread with the epoll events that fired. */
typedef void (*vmm_loop_fn)(void *opaque, uint32_t events);

__attribute__((warn_unused_result)) int vmm_loop_create(struct vmm_loop **out);
void vmm_loop_destroy(struct vmm_loop *l);

/* Watch `fd` (borrowed) for `events` (EPOLLIN…). Loop thread, or before run. 0 or -errno. */
__attribute__((warn_unused_result)) int vmm_loop_add(struct vmm_loop *l, int fd, uint32_t events,
                                                     vmm_loop_fn fn, void *opaque);
__attribute__((warn_unused_result)) int vmm_loop_mod(struct vmm_loop *l, int fd, uint32_t events);
/* Stop watching `fd`; safe to call from inside that fd's own callback. */
int vmm_loop_del(struct vmm_loop *l, int fd);

/* Run callbacks until vmm_loop_stop(). Returns 0, or -errno on an epoll failure. */
int vmm_loop_run(struct vmm_loop *l);
/* Ask the loop to return from vmm_loop_run(). Thread- and signal-safe. */
void vmm_loop_stop(struct vmm_loop *l);

#endif
