#include "sixgate/events.h"

#include <errno.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "util.h"

/* Events taken per epoll_wait; more wait for the next round of libuv's loop. */
#define BATCH 256

static void poll_cb(uv_poll_t *h, int status, int events)
{
    (void)events;
    struct sg_events *ev = SG_CONTAINER_OF(h, struct sg_events, poll);
    if (status < 0)
        return;
    struct epoll_event evs[BATCH];
    int n = epoll_wait(ev->epfd, evs, BATCH, 0);
    for (int i = 0; i < n; i++) {
        struct sg_watch *w = evs[i].data.ptr;
        w->cb(w, evs[i].events);
    }
}

/* Each watch on the list runs once; those that ask again go on a new list,
 * for the next round. */
static void idle_cb(uv_idle_t *h)
{
    struct sg_events *ev = SG_CONTAINER_OF(h, struct sg_events, idle);
    struct sg_watch *w = ev->again_head;
    ev->again_head = ev->again_tail = NULL;
    while (w != NULL) {
        struct sg_watch *next = w->again_next;
        w->again = false;
        w->again_next = NULL;
        w->cb(w, 0);
        w = next;
    }
    if (ev->again_head == NULL)
        uv_idle_stop(&ev->idle);
}

void sg_events_again(struct sg_events *ev, struct sg_watch *w)
{
    if (w->again || ev->closing)
        return;
    w->again = true;
    w->again_next = NULL;
    if (ev->again_tail != NULL)
        ev->again_tail->again_next = w;
    else
        ev->again_head = w;
    ev->again_tail = w;
    uv_idle_start(&ev->idle, idle_cb);
}

void sg_events_forget(struct sg_events *ev, struct sg_watch *w)
{
    if (!w->again)
        return;
    struct sg_watch **pp = &ev->again_head, *prev = NULL;
    while (*pp != NULL && *pp != w) {
        prev = *pp;
        pp = &(*pp)->again_next;
    }
    if (*pp == w) {
        *pp = w->again_next;
        if (ev->again_tail == w)
            ev->again_tail = prev;
    }
    w->again = false;
    w->again_next = NULL;
}

int sg_events_open(struct sg_events *ev, uv_loop_t *loop)
{
    ev->closing = false;
    ev->again_head = ev->again_tail = NULL;
    uv_idle_init(loop, &ev->idle);
    ev->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (ev->epfd < 0)
        return uv_translate_sys_error(errno);
    int err = uv_poll_init(loop, &ev->poll, ev->epfd);
    if (err == 0)
        err = uv_poll_start(&ev->poll, UV_READABLE, poll_cb);
    if (err < 0) {
        close(ev->epfd);
        ev->epfd = -1;
        uv_close((uv_handle_t *)&ev->idle, NULL);
    }
    return err;
}

static void closed_cb(uv_handle_t *h)
{
    struct sg_events *ev = SG_CONTAINER_OF(h, struct sg_events, poll);
    close(ev->epfd);
    ev->epfd = -1;
}

void sg_events_close(struct sg_events *ev)
{
    if (ev->closing || ev->epfd < 0)
        return;
    ev->closing = true;
    ev->again_head = ev->again_tail = NULL;
    uv_close((uv_handle_t *)&ev->idle, NULL);
    uv_close((uv_handle_t *)&ev->poll, closed_cb);
}

int sg_events_add(struct sg_events *ev, struct sg_watch *w)
{
    struct epoll_event e = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = w};
    return epoll_ctl(ev->epfd, EPOLL_CTL_ADD, w->fd, &e) == 0 ? 0 : -errno;
}

int sg_events_add_listener(struct sg_events *ev, struct sg_watch *w)
{
    struct epoll_event e = {.events = EPOLLIN, .data.ptr = w};
    return epoll_ctl(ev->epfd, EPOLL_CTL_ADD, w->fd, &e) == 0 ? 0 : -errno;
}

int sg_events_remove(struct sg_events *ev, struct sg_watch *w)
{
    struct epoll_event e = {0};
    return epoll_ctl(ev->epfd, EPOLL_CTL_DEL, w->fd, &e) == 0 ? 0 : -errno;
}
