/*
 * epoll event loop for the server. Each watched fd has a small heap record
 * that epoll points at; deleting a record from inside a callback only marks
 * it dead and the record is freed after the batch, so a later event of the
 * same batch never touches freed memory.
 */
#include "loop.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

struct watch {
    int fd;
    bool dead;
    server_loop_fn fn;
    void *opaque;
    struct watch *next; /* all watches (live and dead) */
};

struct server_loop {
    int epfd;
    bool stop;
    struct watch *watches;
};

int server_loop_create(struct server_loop **out)
{
    struct server_loop *l = calloc(1, sizeof(*l));
    if (!l)
        return -ENOMEM;
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (l->epfd < 0) {
        int rc = -errno;
        free(l);
        return rc;
    }
    *out = l;
    return 0;
}

static void sweep(struct server_loop *l)
{
    struct watch **pp = &l->watches;
    while (*pp) {
        struct watch *w = *pp;
        if (w->dead) {
            *pp = w->next;
            free(w);
        } else {
            pp = &w->next;
        }
    }
}

void server_loop_destroy(struct server_loop *l)
{
    if (!l)
        return;
    for (struct watch *w = l->watches; w; w = w->next)
        w->dead = true;
    sweep(l);
    close(l->epfd);
    free(l);
}

static struct watch *find(struct server_loop *l, int fd)
{
    for (struct watch *w = l->watches; w; w = w->next)
        if (!w->dead && w->fd == fd)
            return w;
    return NULL;
}

int server_loop_add(struct server_loop *l, int fd, uint32_t events, server_loop_fn fn, void *opaque)
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
        int rc = -errno;
        free(w);
        return rc;
    }
    w->next = l->watches;
    l->watches = w;
    return 0;
}

int server_loop_mod(struct server_loop *l, int fd, uint32_t events)
{
    struct watch *w = find(l, fd);
    if (!w)
        return -ENOENT;
    struct epoll_event ev = {.events = events, .data.ptr = w};
    if (epoll_ctl(l->epfd, EPOLL_CTL_MOD, fd, &ev) < 0)
        return -errno;
    return 0;
}

int server_loop_del(struct server_loop *l, int fd)
{
    struct watch *w = find(l, fd);
    if (!w)
        return -ENOENT;
    w->dead = true;
    /* The fd may already be closed by the caller; that removed it from epoll. */
    if (epoll_ctl(l->epfd, EPOLL_CTL_DEL, fd, NULL) < 0 && errno != EBADF && errno != ENOENT)
        return -errno;
    return 0;
}

int server_loop_run_once(struct server_loop *l, int timeout_ms)
{
    struct epoll_event evs[32];
    int n = epoll_wait(l->epfd, evs, 32, timeout_ms);
    if (n < 0)
        return errno == EINTR ? 0 : -errno;
    int ran = 0;
    for (int i = 0; i < n; i++) {
        struct watch *w = evs[i].data.ptr;
        if (w->dead)
            continue;
        w->fn(w->opaque, evs[i].events);
        ran++;
    }
    sweep(l);
    return ran;
}

int server_loop_run(struct server_loop *l)
{
    l->stop = false;
    while (!l->stop) {
        int rc = server_loop_run_once(l, -1);
        if (rc < 0)
            return rc;
    }
    return 0;
}

void server_loop_stop(struct server_loop *l)
{
    l->stop = true;
}
