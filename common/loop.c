/*
 * The event loop: epoll over borrowed fds plus one eventfd that loop_stop()
 * writes. Watch entries removed during a batch of events are
 * parked and freed only after the batch, so a callback may remove its own fd
 * or any other one without the loop touching freed memory.
 */
#include "loop.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "log.h"

struct watch {
    int fd;
    bool dead;
    loop_fn fn;
    void *opaque;
    struct watch *next;
};

struct loop {
    int epfd;
    int stopfd;
    atomic_int stop; /* set by loop_stop(), possibly from a signal handler */
    struct watch *live;
    struct watch *dead; /* removed during the current batch; freed after it */
};

int loop_create(struct loop **out)
{
    int ret = 0;
    struct loop *l = calloc(1, sizeof(*l));
    if (!l)
        return -ENOMEM;
    l->epfd = -1;
    l->stopfd = -1;
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (l->epfd < 0) {
        ret = -errno;
        goto out;
    }
    l->stopfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (l->stopfd < 0) {
        ret = -errno;
        goto out;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, l->stopfd, &ev) < 0) {
        ret = -errno;
        goto out;
    }
    *out = l;
    l = NULL;
out:
    loop_destroy(l);
    return ret;
}

static void free_list(struct watch *w)
{
    while (w) {
        struct watch *next = w->next;
        free(w);
        w = next;
    }
}

void loop_destroy(struct loop *l)
{
    if (!l)
        return;
    if (l->epfd >= 0)
        close(l->epfd);
    if (l->stopfd >= 0)
        close(l->stopfd);
    free_list(l->live);
    free_list(l->dead);
    free(l);
}

static struct watch **find(struct loop *l, int fd)
{
    for (struct watch **pp = &l->live; *pp; pp = &(*pp)->next)
        if ((*pp)->fd == fd)
            return pp;
    return NULL;
}

int loop_add(struct loop *l, int fd, uint32_t events, loop_fn fn, void *opaque)
{
    if (fd < 0 || !fn)
        return -EINVAL;
    if (find(l, fd))
        return -EEXIST;
    struct watch *w = calloc(1, sizeof(*w));
    if (!w)
        return -ENOMEM;
    w->fd = fd;
    w->fn = fn;
    w->opaque = opaque;
    struct epoll_event ev = {.events = events, .data.ptr = w};
    if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
        int ret = -errno;
        free(w);
        return ret;
    }
    w->next = l->live;
    l->live = w;
    return 0;
}

int loop_mod(struct loop *l, int fd, uint32_t events)
{
    struct watch **pp = find(l, fd);
    if (!pp)
        return -ENOENT;
    struct epoll_event ev = {.events = events, .data.ptr = *pp};
    if (epoll_ctl(l->epfd, EPOLL_CTL_MOD, fd, &ev) < 0)
        return -errno;
    return 0;
}

int loop_del(struct loop *l, int fd)
{
    struct watch **pp = find(l, fd);
    if (!pp)
        return -ENOENT;
    struct watch *w = *pp;
    *pp = w->next;
    /* The fd may already be closed by the caller; EBADF/ENOENT then are harmless. */
    epoll_ctl(l->epfd, EPOLL_CTL_DEL, fd, NULL);
    w->dead = true;
    w->next = l->dead;
    l->dead = w;
    return 0;
}

/* One epoll_wait and its callbacks; the batch ends early once stop is set. */
static int run_batch(struct loop *l, int timeout_ms)
{
    struct epoll_event evs[32];
    int n = epoll_wait(l->epfd, evs, 32, timeout_ms);
    if (n < 0) {
        if (errno == EINTR)
            return 0;
        int ret = -errno;
        LOG_ERR("msg=\"epoll_wait failed\" errno=%d", -ret);
        return ret;
    }
    int ran = 0;
    for (int i = 0; i < n && !l->stop; i++) {
        struct watch *w = evs[i].data.ptr;
        if (!w) {
            uint64_t v;
            if (read(l->stopfd, &v, sizeof(v)) < 0) {
                /* Nothing to do: the flag is what counts. */
            }
            continue;
        }
        if (w->dead)
            continue;
        w->fn(w->opaque, evs[i].events);
        ran++;
    }
    free_list(l->dead);
    l->dead = NULL;
    return ran;
}

int loop_run_once(struct loop *l, int timeout_ms)
{
    int ret = run_batch(l, timeout_ms);
    l->stop = 0;
    return ret;
}

int loop_run(struct loop *l)
{
    while (!l->stop) {
        int ret = run_batch(l, -1);
        if (ret < 0)
            return ret;
    }
    l->stop = 0;
    return 0;
}

void loop_stop(struct loop *l)
{
    uint64_t one = 1;
    l->stop = 1;
    if (write(l->stopfd, &one, sizeof(one)) < 0) {
        /* The counter can only be full if many stops are pending: already stopping. */
    }
}
