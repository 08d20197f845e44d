#include "sixgate/worker.h"
#include "util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sixgate/pump.h"
#include "sixgate/resolver.h"
#include "sixgate/sniff_tls.h"

struct sg_worker_listener {
    uv_tcp_t handle;
    struct sg_worker *w;
    struct sg_bound *bound;  /* a reference: identity across messages */
    size_t index;            /* into w->env.snap->listeners */
    struct sg_listener_stats *stats;
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

static void accept_cb(uv_stream_t *server, int status)
{
    struct sg_worker_listener *l = server->data;
    struct sg_worker *w = l->w;
    if (status < 0) {
        sg_log_warn(w->log, "worker %u: accept on %s: %s", w->id, l->bound->text,
                    uv_strerror(status));
        return;
    }
    sg_conn_accept(&w->env, server, &w->env.snap->listeners[l->index], l->stats);
}

static void listener_closed_cb(uv_handle_t *h)
{
    struct sg_worker_listener *l = h->data;
    sg_bound_unref(l->bound);
    free(l);
}

static void close_listener(struct sg_worker_listener *l)
{
    uv_close((uv_handle_t *)&l->handle, listener_closed_cb);
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
    int fd = dup(b->bound->fds[w->id]);
    if (fd < 0) {
        sg_log_err(w->log, "worker %u: listener %s %s: dup: %s", w->id, spec->name,
                   b->bound->text, strerror(errno));
        free(l);
        return;
    }
    l->w = w;
    l->bound = sg_bound_ref(b->bound);
    l->index = b->listener;
    l->stats = sg_worker_stats_listener(&w->stats, spec->name);
    uv_tcp_init(&w->loop, &l->handle);
    l->handle.data = l;
    int err = uv_tcp_open(&l->handle, fd);
    if (err == 0)
        err = uv_listen((uv_stream_t *)&l->handle, SG_LISTEN_BACKLOG, accept_cb);
    if (err < 0) {
        sg_log_err(w->log, "worker %u: listener %s %s: %s", w->id, spec->name, b->bound->text,
                   uv_strerror(err));
        uv_os_fd_t opened;
        if (uv_fileno((uv_handle_t *)&l->handle, &opened) != 0)
            close(fd); /* uv_tcp_open() did not take it */
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
    if (w->env.resolver != NULL)
        sg_resolver_set_ttl(w->env.resolver, w->env.snap->dns_ttl_ms,
                            w->env.snap->dns_negative_ttl_ms);

    size_t nb = m->mode == SG_WORKER_RUN ? m->nbinds : 0;
    bool *kept = calloc(nb ? nb : 1, sizeof(bool));
    if (kept == NULL) {
        /* Keep the sockets as they are rather than lose them all; the next
         * message will reconcile them. Their indexes may be stale: point
         * every listener at a listener that exists in the new snapshot. */
        sg_log_err(w->log, "worker %u: out of memory applying a new configuration", w->id);
        for (struct sg_worker_listener *l = w->listeners; l != NULL; l = l->next) {
            if (l->index >= w->env.snap->nlisteners)
                l->index = 0;
        }
        goto modes;
    }
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
            kept[j] = true;
            l->index = m->binds[j].listener;
            l->stats = sg_worker_stats_listener(&w->stats, w->env.snap->listeners[l->index].name);
            pp = &l->next;
        } else {
            *pp = l->next;
            close_listener(l);
        }
    }
    for (size_t j = 0; j < nb; j++) {
        if (!kept[j])
            open_listener(w, &m->binds[j]);
    }
    free(kept);

modes:
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
    w->env.loop = &w->loop;
    w->env.log = log;
    w->env.stats = &w->stats;
    w->env.worker_id = id;
    w->env.max_conns = max_conns;
    w->env.on_empty = on_empty;
    w->env.tls_scratch = malloc(SG_TLS_SCRATCH_SIZE);
    w->env.read_buf = uv_buf_init(malloc(SG_PUMP_READ_MAX), SG_PUMP_READ_MAX);
    w->env.resolver = sg_resolver_new(&w->loop, first->snap->dns_ttl_ms,
                                      first->snap->dns_negative_ttl_ms, &w->stats.dns);
    if (w->env.tls_scratch == NULL || w->env.read_buf.base == NULL || w->env.resolver == NULL) {
        err = UV_ENOMEM;
        goto out_free_buffers;
    }
    if ((err = uv_thread_create(&w->thread, thread_main, w)) < 0)
        goto out_free_buffers;
    return 0;

out_free_buffers:
    free(w->env.tls_scratch);
    free(w->env.read_buf.base);
    sg_resolver_close(w->env.resolver);
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
    free(w->env.read_buf.base);
    sg_worker_stats_free(&w->stats);
}
