#include "sixgate/worker.h"
#include "util.h"

#include <errno.h>
#include <sys/socket.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sixgate/pump.h"
#include "sixgate/resolver.h"
#include "sixgate/sniff_tls.h"

/* How many connections one readiness event of a listener accepts at most;
 * more wait for the next event (the socket is level-triggered). */
#define ACCEPT_BATCH 64
/* How long a listener stops accepting when descriptors or memory ran out:
 * the pending connections wait in the kernel's queue meanwhile. */
#define ACCEPT_PAUSE_MS 500
/* At most one "out of descriptors" line per this many milliseconds. */
#define FD_WARNING_EVERY_MS 10000
/* Pipes for splice(2): a pump holds one only while bytes wait in it (a slow
 * receiver); past this many in use a worker copies instead. */
#define SG_WORKER_PIPES_MAX 512
#define SG_WORKER_PIPES_KEEP 32

struct sg_worker_listener {
    struct sg_watch watch;   /* this worker's socket of the bound address (the bound's) */
    struct sg_worker *w;
    struct sg_bound *bound;  /* a reference: identity across messages */
    size_t index;            /* into w->env.snap->listeners */
    struct sg_listener_stats *stats;
    uv_timer_t pause;        /* the back-off after EMFILE and the like */
    bool paused;             /* out of the event set until <pause> fires */
    struct sg_worker_listener *next;
};

struct sg_worker_msg *sg_worker_msg_new(struct sg_snapshot *snap, enum sg_worker_mode mode,
                                        size_t nbinds)
{
    struct sg_worker_msg *m = calloc(1, sizeof(*m) + nbinds * sizeof(m->binds[0]));
    if (m == NULL)
        return NULL;
    m->snap = sg_snapshot_ref(snap);
    m->mode = mode;
    m->nbinds = nbinds;
    return m;
}

void sg_worker_msg_free(struct sg_worker_msg *m)
{
    if (m == NULL)
        return;
    for (size_t i = 0; i < m->nbinds; i++)
        sg_bound_unref(m->binds[i].bound);
    sg_snapshot_unref(m->snap);
    free(m);
}

static void resume_cb(uv_timer_t *t)
{
    struct sg_worker_listener *l = t->data;
    int err = sg_events_add_listener(&l->w->events, &l->watch);
    if (err < 0) {
        uv_timer_start(&l->pause, resume_cb, ACCEPT_PAUSE_MS, 0);
        return;
    }
    l->paused = false;
}

/* Out of descriptors (or kernel memory): accepting again at once would only
 * fail again, in a loop. The listener leaves the event set for a while;
 * the kernel keeps the pending connections queued. */
static void pause_listener(struct sg_worker_listener *l, int err)
{
    struct sg_worker *w = l->w;
    if (sg_events_remove(&w->events, &l->watch) == 0)
        l->paused = true;
    uv_timer_start(&l->pause, resume_cb, ACCEPT_PAUSE_MS, 0);
    w->fd_pauses++;
    uint64_t now = uv_now(&w->loop);
    if (w->last_fd_warning == 0 || now - w->last_fd_warning >= FD_WARNING_EVERY_MS) {
        sg_log_warn(w->log,
                    "worker %u: accept on %s: %s; not accepting for %d ms (%llu times since "
                    "the last warning)",
                    w->id, l->bound->text, strerror(err), ACCEPT_PAUSE_MS,
                    (unsigned long long)w->fd_pauses);
        w->last_fd_warning = now;
        w->fd_pauses = 0;
    }
}

/* The listener is readable: accept4() gives the connection non-blocking,
 * with its peer's address, in one call. */
static void listener_event_cb(struct sg_watch *watch, uint32_t events)
{
    (void)events;
    struct sg_worker_listener *l = SG_CONTAINER_OF(watch, struct sg_worker_listener, watch);
    struct sg_worker *w = l->w;
    for (int i = 0; i < ACCEPT_BATCH && !l->paused; i++) {
        union sg_sockaddr peer;
        socklen_t len = sizeof(peer);
        int fd = accept4(l->watch.fd, &peer.sa, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
                pause_listener(l, errno);
            else
                sg_log_warn(w->log, "worker %u: accept on %s: %s", w->id, l->bound->text,
                            strerror(errno));
            return;
        }
        sg_conn_accept(&w->env, fd, &peer, &l->bound->addr, &w->env.snap->listeners[l->index],
                       l->stats);
    }
}

static void listener_closed_cb(uv_handle_t *h)
{
    struct sg_worker_listener *l = h->data;
    sg_bound_unref(l->bound);
    free(l);
}

/* The descriptor is the bound's (it closes it when its last reference,
 * this listener's among them, goes): the worker only takes it out of its
 * event set. */
static void close_listener(struct sg_worker_listener *l)
{
    if (!l->paused)
        sg_events_remove(&l->w->events, &l->watch);
    uv_close((uv_handle_t *)&l->pause, listener_closed_cb);
}

static void open_listener(struct sg_worker *w, const struct sg_worker_bind *b)
{
    const struct sg_listener_spec *spec = &w->env.snap->listeners[b->listener];
    struct sg_worker_listener *l = calloc(1, sizeof(*l));
    if (l == NULL) {
        sg_log_err(w->log, "worker %u: listener %s %s: out of memory", w->id, spec->name,
                   b->bound->text);
        return;
    }
    /* No dup(): a copy that failed to be made would leave this worker's
     * share of the address's connections queued with nobody to accept them.
     * The reference held on the bound keeps the descriptor open. */
    int fd = b->bound->fds[w->id];
    l->w = w;
    l->bound = sg_bound_ref(b->bound);
    l->index = b->listener;
    l->stats = sg_worker_stats_listener(&w->stats, spec->name);
    l->watch = (struct sg_watch){.fd = fd, .cb = listener_event_cb};
    uv_timer_init(&w->loop, &l->pause);
    l->pause.data = l;
    int err = sg_events_add_listener(&w->events, &l->watch);
    if (err < 0) {
        sg_log_err(w->log, "worker %u: listener %s %s: %s", w->id, spec->name, b->bound->text,
                   strerror(-err));
        l->paused = true; /* not in the set */
        close_listener(l);
        return;
    }
    l->next = w->listeners;
    w->listeners = l;
}

/* An iteration runs timers and close callbacks before it polls (check ->
 * prepare) and I/O callbacks after (prepare -> check, less the time spent
 * waiting in poll, which libuv measures as idle time). */
static void lag_prepare_cb(uv_prepare_t *h)
{
    struct sg_worker *w = h->data;
    w->t_prepare = uv_hrtime();
    w->busy_before_poll = w->t_check ? w->t_prepare - w->t_check : 0;
    w->idle_at_prepare = uv_metrics_idle_time(&w->loop);
}

static void lag_check_cb(uv_check_t *h)
{
    struct sg_worker *w = h->data;
    uint64_t now = uv_hrtime();
    uint64_t idle = uv_metrics_idle_time(&w->loop) - w->idle_at_prepare;
    uint64_t in_poll = now - w->t_prepare;
    uint64_t busy = w->busy_before_poll + (in_poll > idle ? in_poll - idle : 0);
    sg_histogram_observe(&w->stats.loop_busy, busy / 1000);
    w->t_check = now;
}

/* The loop ends once every handle is closed: the listeners and connections
 * are, or are closing; the wake handle is the last one left. */
static void finish(struct sg_worker *w)
{
    uv_mutex_lock(&w->wake_lock);
    if (!w->wake_closed) {
        w->wake_closed = true;
        uv_close((uv_handle_t *)&w->wake, NULL);
        uv_close((uv_handle_t *)&w->lag_prepare, NULL);
        uv_close((uv_handle_t *)&w->lag_check, NULL);
        /* lookups in flight are cancelled; the loop ends when they are done */
        sg_resolver_close(w->env.resolver);
        w->env.resolver = NULL;
        sg_conn_env_close(&w->env);
        sg_events_close(&w->events);
    }
    uv_mutex_unlock(&w->wake_lock);
}

static void on_empty(struct sg_conn_env *env)
{
    struct sg_worker *w = SG_CONTAINER_OF(env, struct sg_worker, env);
    if (w->mode != SG_WORKER_RUN)
        finish(w);
}

/* Makes the worker's state what <m> says. */
static void apply(struct sg_worker *w, struct sg_worker_msg *m)
{
    struct sg_snapshot *old = w->env.snap;
    w->env.snap = sg_snapshot_ref(m->snap);
    sg_snapshot_unref(old);
    w->mode = m->mode;
    w->env.pump.splice = w->env.snap->splice;
    if (w->env.resolver != NULL)
        sg_resolver_set_ttl(w->env.resolver, w->env.snap->dns_ttl_ms,
                            w->env.snap->dns_negative_ttl_ms);

    /* The message is the worker's while it applies it: its binds carry the
     * marks, so reconciling needs no memory and cannot fail halfway. */
    size_t nb = m->mode == SG_WORKER_RUN ? m->nbinds : 0;
    for (size_t j = 0; j < nb; j++)
        m->binds[j].kept = false;
    struct sg_worker_listener **pp = &w->listeners;
    while (*pp != NULL) {
        struct sg_worker_listener *l = *pp;
        size_t j;
        for (j = 0; j < nb; j++) {
            if (m->binds[j].bound == l->bound)
                break;
        }
        if (j < nb) {
            /* Same socket: it stays open; only its meaning may change. */
            m->binds[j].kept = true;
            l->index = m->binds[j].listener;
            l->stats = sg_worker_stats_listener(&w->stats, w->env.snap->listeners[l->index].name);
            pp = &l->next;
        } else {
            *pp = l->next;
            close_listener(l);
        }
    }
    for (size_t j = 0; j < nb; j++) {
        if (!m->binds[j].kept)
            open_listener(w, &m->binds[j]);
    }
    if (m->mode == SG_WORKER_STOP)
        sg_conn_close_all(&w->env);
    if (m->mode != SG_WORKER_RUN && w->env.nconns == 0)
        finish(w);
}

static void wake_cb(uv_async_t *a)
{
    struct sg_worker *w = a->data;
    struct sg_worker_msg *m = atomic_exchange_explicit(&w->inbox, NULL, memory_order_acquire);
    if (m == NULL)
        return;
    apply(w, m);
    sg_worker_msg_free(m);
}

static void thread_main(void *arg)
{
    struct sg_worker *w = arg;
    wake_cb(&w->wake);
    uv_run(&w->loop, UV_RUN_DEFAULT);
    atomic_store_explicit(&w->finished, true, memory_order_release);
    if (w->on_finished != NULL)
        w->on_finished(w);
}

int sg_worker_start(struct sg_worker *w, unsigned id, struct sg_logger *log, size_t max_conns,
                    struct sg_worker_msg *first)
{
    int err;
    w->id = id;
    w->log = log;
    w->mode = SG_WORKER_RUN;
    atomic_init(&w->finished, false);
    atomic_init(&w->inbox, first);
    w->wake_closed = false;
    if ((err = uv_mutex_init(&w->wake_lock)) < 0)
        goto out_free_msg;
    if ((err = uv_loop_init(&w->loop)) < 0)
        goto out_destroy_lock;
    uv_loop_configure(&w->loop, UV_METRICS_IDLE_TIME);
    if ((err = uv_async_init(&w->loop, &w->wake, wake_cb)) < 0)
        goto out_close_loop;
    w->wake.data = w;
    uv_prepare_init(&w->loop, &w->lag_prepare);
    uv_check_init(&w->loop, &w->lag_check);
    w->lag_prepare.data = w->lag_check.data = w;
    /* unreferenced: they never keep the loop alive on their own */
    uv_prepare_start(&w->lag_prepare, lag_prepare_cb);
    uv_check_start(&w->lag_check, lag_check_cb);
    uv_unref((uv_handle_t *)&w->lag_prepare);
    uv_unref((uv_handle_t *)&w->lag_check);
    if ((err = sg_events_open(&w->events, &w->loop)) < 0)
        goto out_close_wake;
    w->env.loop = &w->loop;
    w->env.events = &w->events;
    w->env.log = log;
    w->env.stats = &w->stats;
    w->env.worker_id = id;
    w->env.max_conns = max_conns;
    w->env.on_empty = on_empty;
    w->env.tls_scratch = malloc(SG_TLS_SCRATCH_SIZE);
    w->env.pump.buf = malloc(SG_PUMP_READ_MAX);
    w->env.pump.pipes = sg_pipe_pool_new(SG_WORKER_PIPES_MAX, SG_WORKER_PIPES_KEEP);
    w->env.pump.splice = first->snap->splice;
    w->env.resolver = sg_resolver_new(&w->loop, first->snap->dns_ttl_ms,
                                      first->snap->dns_negative_ttl_ms, &w->stats.dns);
    if ((err = sg_conn_env_init(&w->env)) < 0)
        goto out_free_buffers;
    if (w->env.tls_scratch == NULL || w->env.pump.buf == NULL || w->env.pump.pipes == NULL ||
        w->env.resolver == NULL) {
        err = UV_ENOMEM;
        goto out_free_buffers;
    }
    if ((err = uv_thread_create(&w->thread, thread_main, w)) < 0)
        goto out_free_buffers;
    return 0;

out_free_buffers:
    free(w->env.tls_scratch);
    free(w->env.pump.buf);
    sg_pipe_pool_free(w->env.pump.pipes);
    sg_resolver_close(w->env.resolver);
    sg_conn_env_close(&w->env);
    sg_events_close(&w->events);
out_close_wake:
    uv_close((uv_handle_t *)&w->wake, NULL);
    uv_close((uv_handle_t *)&w->lag_prepare, NULL);
    uv_close((uv_handle_t *)&w->lag_check, NULL);
    uv_run(&w->loop, UV_RUN_DEFAULT);
out_close_loop:
    uv_loop_close(&w->loop);
out_destroy_lock:
    uv_mutex_destroy(&w->wake_lock);
out_free_msg:
    sg_worker_msg_free(atomic_exchange(&w->inbox, NULL));
    return err;
}

void sg_worker_post(struct sg_worker *w, struct sg_worker_msg *m)
{
    /* release: the message is complete before the worker can see it */
    struct sg_worker_msg *stale = atomic_exchange_explicit(&w->inbox, m, memory_order_acq_rel);
    sg_worker_msg_free(stale); /* never read: the new one supersedes it */
    uv_mutex_lock(&w->wake_lock);
    if (!w->wake_closed)
        uv_async_send(&w->wake);
    uv_mutex_unlock(&w->wake_lock);
}

void sg_worker_join(struct sg_worker *w)
{
    uv_thread_join(&w->thread);
    sg_worker_msg_free(atomic_exchange(&w->inbox, NULL));
    uv_loop_close(&w->loop);
    uv_mutex_destroy(&w->wake_lock);
    sg_snapshot_unref(w->env.snap);
    w->env.snap = NULL;
    free(w->env.tls_scratch);
    free(w->env.pump.buf);
    sg_pipe_pool_free(w->env.pump.pipes);
    sg_worker_stats_free(&w->stats);
}
