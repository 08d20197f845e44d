/* A worker: one thread, one libuv loop, its listeners and its connections.
 * The control thread tells it what to do only through its mailbox
 * (sg_worker_post): a message carries the complete desired state — the
 * snapshot for new connections, the listening sockets, the mode — never a
 * difference, so a message that replaces an unread one loses nothing. */
#ifndef SIXGATE_WORKER_H
#define SIXGATE_WORKER_H

#include <stdatomic.h>
#include <uv.h>

#include "sixgate/connection.h"
#include "sixgate/events.h"
#include "sixgate/listener.h"
#include "sixgate/log.h"
#include "sixgate/metrics.h"
#include "sixgate/snapshot.h"

enum sg_worker_mode {
    SG_WORKER_RUN,   /* listen and serve */
    SG_WORKER_DRAIN, /* stop listening; let connections finish, then exit */
    SG_WORKER_STOP,  /* close everything now and exit */
};

struct sg_worker_bind {
    struct sg_bound *bound; /* a reference */
    size_t listener;        /* index into snap->listeners */
    bool kept;              /* the worker's own mark while it applies the message */
};

struct sg_worker_msg {
    struct sg_snapshot *snap; /* a reference */
    enum sg_worker_mode mode;
    size_t nbinds;
    struct sg_worker_bind binds[];
};

/* A message with room for <nbinds> binds (filled by the caller, each with a
 * reference); it takes a new reference on <snap>. NULL when out of memory. */
struct sg_worker_msg *sg_worker_msg_new(struct sg_snapshot *snap, enum sg_worker_mode mode,
                                        size_t nbinds);
void sg_worker_msg_free(struct sg_worker_msg *m);

struct sg_worker_listener;

struct sg_worker {
    unsigned id;
    uv_thread_t thread;
    uv_loop_t loop;
    uv_async_t wake;
    uv_mutex_t wake_lock; /* a post never races the closing of <wake> */
    bool wake_closed;
    _Atomic(struct sg_worker_msg *) inbox;
    struct sg_conn_env env;
    struct sg_events events; /* the connections' sockets and the listeners */
    struct sg_worker_stats stats;
    uint64_t last_fd_warning; /* uv_now() of the last "out of descriptors" line */
    uint64_t fd_pauses;       /* listener pauses since that line */
    uv_prepare_t lag_prepare; /* with lag_check: measure each iteration's busy time */
    uv_check_t lag_check;
    uint64_t t_prepare, t_check, idle_at_prepare, busy_before_poll;
    struct sg_worker_listener *listeners;
    enum sg_worker_mode mode;
    struct sg_logger *log;
    atomic_bool finished; /* the thread's loop has ended */
    void (*on_finished)(struct sg_worker *w); /* called on the worker's thread */
    void *data;
};

/* Starts the thread with <first> as its first message (owned from now on).
 * <max_conns> is this worker's share of the connection limit. Returns 0 or a
 * libuv error. */
int sg_worker_start(struct sg_worker *w, unsigned id, struct sg_logger *log, size_t max_conns,
                    struct sg_worker_msg *first);

/* Hands <m> to the worker (owned from now on). Any thread. */
void sg_worker_post(struct sg_worker *w, struct sg_worker_msg *m);

/* Waits for the thread to end and frees what the worker holds. */
void sg_worker_join(struct sg_worker *w);

#endif
