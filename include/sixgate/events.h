/* Edge-triggered readiness for the sockets of one worker's connections.
 *
 * libuv's stream and poll handles change their epoll registration whenever
 * the events they want change, and remove it with a call of its own when
 * they close: several epoll_ctl per connection. Here each socket is added
 * once, edge-triggered, for reading and writing, and never changed; closing
 * the socket removes it. The set is one epoll descriptor that libuv's loop
 * watches with a single uv_poll handle, so libuv stays the event loop:
 * timers, the resolver, the mailbox and the listeners' back-off run on it
 * as before.
 *
 * Edge-triggered means an event says "something changed": the owner reads
 * or writes until the kernel says EAGAIN (or a short read shows the buffer
 * was emptied) and keeps what it learnt in struct sg_ready. */
#ifndef SIXGATE_EVENTS_H
#define SIXGATE_EVENTS_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

struct sg_watch;

/* <events> are epoll's: EPOLLIN, EPOLLOUT, EPOLLRDHUP, EPOLLHUP, EPOLLERR. */
typedef void (*sg_watch_cb)(struct sg_watch *w, uint32_t events);

struct sg_watch {
    int fd;
    sg_watch_cb cb;
    struct sg_watch *again_next; /* on the set's list of watches to run again */
    bool again;                  /* ... is on it */
};

struct sg_events {
    int epfd;
    uv_poll_t poll; /* libuv's watch on <epfd> */
    uv_idle_t idle; /* runs the again list; keeps libuv's poll from sleeping meanwhile */
    struct sg_watch *again_head, *again_tail;
    bool closing;
};

/* Opens the set on <loop>. Returns 0 or a negative libuv error. */
int sg_events_open(struct sg_events *ev, uv_loop_t *loop);

/* Closes the set; sockets still in it are not closed. */
void sg_events_close(struct sg_events *ev);

/* Adds <w->fd> for reading and writing, edge-triggered, until it is closed.
 * <w> must stay valid until the socket is closed and the current batch of
 * events has been dispatched (see sg_conn's deferred free). Returns 0 or a
 * negative errno. */
int sg_events_add(struct sg_events *ev, struct sg_watch *w);

/* Adds <w->fd> for reading, level-triggered: a listening socket. */
int sg_events_add_listener(struct sg_events *ev, struct sg_watch *w);

/* Removes <w->fd> (a listener that pauses); returns 0 or a negative errno. */
int sg_events_remove(struct sg_events *ev, struct sg_watch *w);

/* Calls w->cb(w, 0) once more in the next round of the loop: an owner that
 * stopped with work left (to let other connections run) asks for this,
 * since an edge-triggered socket reports nothing new for what it already
 * said. Idempotent. */
void sg_events_again(struct sg_events *ev, struct sg_watch *w);

/* Takes <w> off that list (its owner is closing it). */
void sg_events_forget(struct sg_events *ev, struct sg_watch *w);

#endif
