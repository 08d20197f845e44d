#include "sixgate/server.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "sixgate/admin.h"
#include "sixgate/config.h"
#include "sixgate/listener.h"
#include "sixgate/log.h"
#include "sixgate/notify.h"
#include "sixgate/worker.h"

struct reload_job {
    uv_thread_t thread;
    struct sg_server *srv;
    char *path;
    const char *trigger;
    struct sg_snapshot *snap; /* the result, or NULL */
    struct sg_diag diag;
    uint64_t t_start, t_end;
};

struct sg_server {
    uv_loop_t loop;
    struct sg_logger log;
    char *config_path;
    struct sg_snapshot *current; /* the published snapshot */
    uint64_t generation;

    unsigned nworkers;
    struct sg_worker *workers;
    atomic_uint workers_finished;
    uv_async_t worker_done;

    struct sg_bound **bounds; /* every address in use, in no particular order */
    size_t nbounds;

    uv_signal_t sig_hup, sig_term, sig_int, sig_quit, sig_usr1;

    uv_fs_event_t watch;
    bool watching;
    char *watch_dir;
    char *watch_name;
    uv_timer_t debounce;

    bool reloading;
    struct reload_job *job;   /* the reload in progress */
    uv_async_t reload_done;   /* its thread is done */
    const char *reload_again; /* a trigger that came during a reload */

    bool stopping;
    uv_timer_t drain_timer;

    uv_thread_t control_thread;
    uv_async_t reaper;          /* frees snapshots released on other threads */
    _Atomic(struct sg_snapshot *) released;
    bool reaper_open;

    char *access_path; /* the open access log file, or NULL */
    struct sg_admin *admin;

    uint64_t reloads_ok, reloads_failed;
    double last_reload;
    uint64_t start_time;
};

static double now_unix(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- freeing snapshots off the workers' loops ------------------------------ */

static void free_released(struct sg_server *srv)
{
    struct sg_snapshot *s = atomic_exchange(&srv->released, NULL);
    while (s != NULL) {
        struct sg_snapshot *next = s->release_next;
        sg_snapshot_free(s);
        s = next;
    }
}

static void reaper_cb(uv_async_t *a)
{
    free_released(a->data);
}

/* The last reference to a snapshot went away. On the control thread it is
 * freed at once; elsewhere it is pushed on a lock-free list for the control
 * thread, so that no worker's loop spends the milliseconds a large map takes
 * to free. */
static void on_release(struct sg_snapshot *s, void *data)
{
    struct sg_server *srv = data;
    uv_thread_t self = uv_thread_self();
    if (uv_thread_equal(&self, &srv->control_thread) || !srv->reaper_open) {
        sg_snapshot_free(s);
        return;
    }
    struct sg_snapshot *head = atomic_load(&srv->released);
    do {
        s->release_next = head;
    } while (!atomic_compare_exchange_weak(&srv->released, &head, s));
    uv_async_send(&srv->reaper);
}

/* ---- access log --------------------------------------------------------- */

/* Points the access log at what <s> says. A file is opened on a descriptor
 * that then never changes: a reopen dup2()s the new file onto it, so the
 * workers, which write to it concurrently, need no message. */
static int setup_access_log(struct sg_server *srv, const struct sg_snapshot *s, bool reopen)
{
    struct sg_logger *lg = &srv->log;
    const char *want = s->access_log;
    int cur = atomic_load(&lg->access_fd);
    bool is_file = want != NULL && strcmp(want, "stderr") != 0;

    if (!is_file) {
        atomic_store(&lg->access_fd, want != NULL ? STDERR_FILENO : -1);
        if (srv->access_path != NULL) {
            /* workers may be writing to it still: keep the descriptor, empty */
            free(srv->access_path);
            srv->access_path = NULL;
        }
        return 0;
    }
    if (!reopen && srv->access_path != NULL && strcmp(srv->access_path, want) == 0)
        return 0;
    int fd = open(want, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0) {
        int err = -errno;
        sg_log_err(lg, "access log %s: %s", want, strerror(errno));
        return err;
    }
    if (srv->access_path != NULL && cur > STDERR_FILENO) {
        dup2(fd, cur);
        close(fd);
    } else {
        atomic_store(&lg->access_fd, fd);
    }
    char *path = strdup(want);
    free(srv->access_path);
    srv->access_path = path;
    return 0;
}

/* ---- listeners and workers ---------------------------------------------- */

static struct sg_bound *find_bound(struct sg_bound **v, size_t n, const union sg_sockaddr *a)
{
    for (size_t i = 0; i < n; i++) {
        if (sg_sockaddr_equal(&v[i]->addr.sa, &a->sa))
            return v[i];
    }
    return NULL;
}

/* Binds what <s> needs, reusing the sockets of addresses already bound.
 * <strict> (at start) fails on the first address that cannot be bound; on a
 * reload that address is reported and left out, and the rest goes on.
 * Returns the new table (its own references) or NULL on a strict failure. */
static struct sg_bound **bind_all(struct sg_server *srv, const struct sg_snapshot *s, bool strict,
                                  size_t *count)
{
    size_t total = 0;
    for (size_t i = 0; i < s->nlisteners; i++)
        total += s->listeners[i].naddrs;
    struct sg_bound **v = calloc(total ? total : 1, sizeof(*v));
    if (v == NULL) {
        sg_log_err(&srv->log, "bind: out of memory");
        return NULL;
    }
    size_t n = 0;
    for (size_t i = 0; i < s->nlisteners; i++) {
        const struct sg_listener_spec *l = &s->listeners[i];
        for (size_t j = 0; j < l->naddrs; j++) {
            struct sg_bound *b = find_bound(srv->bounds, srv->nbounds, &l->addrs[j].addr);
            if (b != NULL) {
                v[n++] = sg_bound_ref(b);
                continue;
            }
            int err = sg_bound_open(&l->addrs[j].addr, srv->nworkers, &b);
            if (err < 0) {
                sg_log_err(&srv->log, "listener %s: cannot listen on %s: %s%s", l->name,
                           l->addrs[j].text, strerror(-err),
                           strict ? "" : " (the other listeners go on)");
                if (strict) {
                    for (size_t k = 0; k < n; k++)
                        sg_bound_unref(v[k]);
                    free(v);
                    return NULL;
                }
                continue;
            }
            if (!strict)
                sg_log_info(&srv->log, "listener %s: now listening on %s", l->name,
                            l->addrs[j].text);
            v[n++] = b;
        }
    }
    *count = n;
    return v;
}

/* The message for every worker: the snapshot, and each bound address with
 * the index of the listener it belongs to. */
static struct sg_worker_msg *build_msg(const struct sg_snapshot *s, struct sg_bound **v, size_t n,
                                       enum sg_worker_mode mode)
{
    struct sg_worker_msg *m = sg_worker_msg_new((struct sg_snapshot *)s, mode, n);
    if (m == NULL)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < s->nlisteners; i++) {
        const struct sg_listener_spec *l = &s->listeners[i];
        for (size_t j = 0; j < l->naddrs; j++) {
            struct sg_bound *b = find_bound(v, n, &l->addrs[j].addr);
            if (b == NULL)
                continue; /* could not be bound */
            m->binds[k].bound = sg_bound_ref(b);
            m->binds[k].listener = i;
            k++;
        }
    }
    m->nbinds = k;
    return m;
}

static void post_all(struct sg_server *srv, enum sg_worker_mode mode)
{
    for (unsigned w = 0; w < srv->nworkers; w++) {
        struct sg_worker_msg *m = build_msg(srv->current, srv->bounds, srv->nbounds, mode);
        if (m == NULL) {
            sg_log_err(&srv->log, "worker %u: out of memory for its message", w);
            continue;
        }
        sg_worker_post(&srv->workers[w], m);
    }
}

static void replace_bounds(struct sg_server *srv, struct sg_bound **v, size_t n)
{
    for (size_t i = 0; i < srv->nbounds; i++)
        sg_bound_unref(srv->bounds[i]);
    free(srv->bounds);
    srv->bounds = v;
    srv->nbounds = n;
}

/* ---- the map watch ------------------------------------------------------ */

static void start_reload(struct sg_server *srv, const char *trigger);

static void debounce_cb(uv_timer_t *t)
{
    struct sg_server *srv = t->data;
    start_reload(srv, "map file changed");
}

static void watch_cb(uv_fs_event_t *h, const char *filename, int events, int status)
{
    (void)events;
    struct sg_server *srv = h->data;
    if (status < 0) {
        sg_log_warn(&srv->log, "watching %s: %s", srv->watch_dir, uv_strerror(status));
        return;
    }
    /* The folder is watched, not the file: a control panel that writes a
     * new file and renames it over the map replaces the inode, and a watch
     * on the old inode would never fire again. */
    if (filename == NULL || strcmp(filename, srv->watch_name) != 0)
        return;
    /* Bursts (a rewrite in several writes) become one reload. */
    uv_timer_start(&srv->debounce, debounce_cb, srv->current->watch_debounce_ms, 0);
}

static void update_watch(struct sg_server *srv)
{
    const struct sg_snapshot *s = srv->current;
    bool want = s->watch_map && s->map_path != NULL && !srv->stopping;
    const char *slash = s->map_path ? strrchr(s->map_path, '/') : NULL;
    char *dir = NULL, *name = NULL;
    if (want) {
        dir = slash ? strndup(s->map_path, (size_t)(slash - s->map_path) + (slash == s->map_path))
                    : strdup(".");
        name = strdup(slash ? slash + 1 : s->map_path);
        if (dir == NULL || name == NULL)
            want = false;
    }
    if (srv->watching && want && strcmp(dir, srv->watch_dir) == 0 &&
        strcmp(name, srv->watch_name) == 0) {
        free(dir);
        free(name);
        return;
    }
    if (srv->watching) {
        uv_fs_event_stop(&srv->watch);
        srv->watching = false;
    }
    free(srv->watch_dir);
    free(srv->watch_name);
    srv->watch_dir = dir;
    srv->watch_name = name;
    if (!want)
        return;
    int err = uv_fs_event_start(&srv->watch, watch_cb, dir, 0);
    if (err < 0) {
        sg_log_warn(&srv->log, "cannot watch %s for map changes: %s (SIGHUP still reloads)", dir,
                    uv_strerror(err));
        return;
    }
    srv->watching = true;
}

/* ---- reload ------------------------------------------------------------- */

/* A thread of its own, not libuv's pool: the pool also runs getaddrinfo,
 * and a reload must not wait behind slow DNS lookups. */
static void reload_thread_main(void *arg)
{
    struct reload_job *job = arg;
    job->t_start = uv_hrtime();
    job->snap = sg_config_load(job->path, &job->diag);
    job->t_end = uv_hrtime();
    uv_async_send(&job->srv->reload_done);
}

static void warn_restart_only(struct sg_server *srv, const struct sg_snapshot *o,
                              const struct sg_snapshot *n)
{
    if (o->workers != n->workers)
        sg_log_warn(&srv->log, "reload: 'workers' changed; it takes effect at the next start");
    if ((o->user == NULL) != (n->user == NULL) || (o->user && strcmp(o->user, n->user) != 0))
        sg_log_warn(&srv->log, "reload: 'user' changed; it takes effect at the next start");
    if (o->has_admin != n->has_admin ||
        (o->has_admin && !sg_sockaddr_equal(&o->admin.sa, &n->admin.sa)))
        sg_log_warn(&srv->log, "reload: 'admin' changed; it takes effect at the next start");
}

/* Publishes <s> (the reference is taken over): binds added addresses,
 * tells every worker, and makes it the current snapshot. */
static void publish(struct sg_server *srv, struct sg_snapshot *s)
{
    size_t n = 0;
    struct sg_bound **v = bind_all(srv, s, false, &n);
    if (v == NULL) {
        srv->reloads_failed++;
        sg_snapshot_unref(s);
        return;
    }
    /* Removed addresses: the workers close their sockets when they see the
     * new message; the last reference closes ours. */
    for (size_t i = 0; i < srv->nbounds; i++) {
        if (find_bound(v, n, &srv->bounds[i]->addr) == NULL)
            sg_log_info(&srv->log, "listener on %s removed", srv->bounds[i]->text);
    }
    replace_bounds(srv, v, n);
    s->generation = ++srv->generation;
    warn_restart_only(srv, srv->current, s);
    struct sg_snapshot *old = srv->current;
    srv->current = s;
    atomic_store(&srv->log.level, (int)s->log_level);
    setup_access_log(srv, s, false);
    post_all(srv, SG_WORKER_RUN);
    sg_snapshot_unref(old);
    update_watch(srv);
    srv->reloads_ok++;
    srv->last_reload = now_unix();
}

static void reload_done_cb(uv_async_t *a)
{
    struct sg_server *srv = a->data;
    struct reload_job *job = srv->job;
    if (job == NULL)
        return;
    uv_thread_join(&job->thread); /* also orders the thread's writes before our reads */
    srv->job = NULL;
    srv->reloading = false;
    double ms = (double)(job->t_end - job->t_start) / 1e6;
    if (job->snap == NULL || srv->stopping) {
        if (!srv->stopping) {
            srv->reloads_failed++;
            sg_log_err(&srv->log, "reload (%s) refused after %.1f ms; the map in use stays "
                                  "(generation %llu):",
                       job->trigger, ms, (unsigned long long)srv->generation);
            for (size_t i = 0; i < job->diag.count; i++)
                sg_log_err(&srv->log, "  %s", job->diag.msgs[i]);
            if (job->diag.dropped)
                sg_log_err(&srv->log, "  ... and %zu more errors", job->diag.dropped);
        }
        sg_snapshot_unref(job->snap);
    } else {
        struct sg_snapshot *s = job->snap;
        s->on_release = on_release;
        s->on_release_data = srv;
        publish(srv, s);
        sg_log_info(&srv->log,
                    "reload (%s): generation %llu, %zu routes%s, %zu listeners, map sha256 "
                    "%.16s%s%s, loaded in %.1f ms",
                    job->trigger, (unsigned long long)s->generation, sg_routes_count(s->routes),
                    sg_routes_has_fallback(s->routes) ? " and a fallback" : "", s->nlisteners,
                    s->map_sha256, s->map_version ? ", version " : "",
                    s->map_version ? s->map_version : "", ms);
    }
    sg_notify("READY=1");
    sg_diag_free(&job->diag);
    free(job->path);
    free(job);
    if (srv->reload_again != NULL && !srv->stopping) {
        const char *t = srv->reload_again;
        srv->reload_again = NULL;
        start_reload(srv, t);
    }
}

/* Reads and checks the files on the thread pool, so that a map of a million
 * routes never stalls this loop; a trigger during a reload queues exactly
 * one more, so that the last change is always picked up. */
static void start_reload(struct sg_server *srv, const char *trigger)
{
    if (srv->stopping)
        return;
    if (srv->reloading) {
        srv->reload_again = trigger;
        return;
    }
    struct reload_job *job = calloc(1, sizeof(*job));
    if (job == NULL || (job->path = strdup(srv->config_path)) == NULL) {
        free(job);
        sg_log_err(&srv->log, "reload (%s): out of memory", trigger);
        return;
    }
    job->srv = srv;
    job->trigger = trigger;
    sg_diag_init(&job->diag);
    sg_notify("RELOADING=1");
    srv->job = job;
    int err = uv_thread_create(&job->thread, reload_thread_main, job);
    if (err < 0) {
        srv->job = NULL;
        sg_notify("READY=1");
        sg_log_err(&srv->log, "reload (%s): %s", trigger, uv_strerror(err));
        free(job->path);
        free(job);
        return;
    }
    srv->reloading = true;
}

/* ---- stop --------------------------------------------------------------- */

static void close_cb_ignore(uv_handle_t *h)
{
    (void)h;
}

static void close_control_handles(struct sg_server *srv)
{
    struct reload_job *job = srv->job;
    if (job != NULL) {
        /* a reload still reading files: wait for it, then drop its result */
        uv_thread_join(&job->thread);
        srv->job = NULL;
        sg_snapshot_unref(job->snap);
        sg_diag_free(&job->diag);
        free(job->path);
        free(job);
    }
    uv_handle_t *hs[] = {
        (uv_handle_t *)&srv->sig_hup,  (uv_handle_t *)&srv->sig_term, (uv_handle_t *)&srv->sig_int,
        (uv_handle_t *)&srv->sig_quit, (uv_handle_t *)&srv->sig_usr1, (uv_handle_t *)&srv->watch,
        (uv_handle_t *)&srv->debounce, (uv_handle_t *)&srv->drain_timer,
        (uv_handle_t *)&srv->worker_done, (uv_handle_t *)&srv->reaper,
        (uv_handle_t *)&srv->reload_done,
    };
    for (size_t i = 0; i < SG_ARRAY_LEN(hs); i++) {
        if (!uv_is_closing(hs[i]))
            uv_close(hs[i], close_cb_ignore);
    }
    sg_admin_close(srv->admin);
    srv->admin = NULL;
}

static void worker_done_cb(uv_async_t *a)
{
    struct sg_server *srv = a->data;
    if (atomic_load(&srv->workers_finished) < srv->nworkers)
        return;
    sg_log_info(&srv->log, "all connections are done; exiting");
    close_control_handles(srv);
}

static void worker_finished(struct sg_worker *w)
{
    struct sg_server *srv = w->data;
    atomic_fetch_add(&srv->workers_finished, 1);
    uv_async_send(&srv->worker_done);
}

static void drain_timeout_cb(uv_timer_t *t)
{
    struct sg_server *srv = t->data;
    sg_log_warn(&srv->log, "drain time is over: closing the connections still open");
    post_all(srv, SG_WORKER_STOP);
}

static void begin_stop(struct sg_server *srv, bool hard)
{
    if (srv->stopping) {
        if (hard) {
            sg_log_warn(&srv->log, "second stop signal: closing every connection now");
            post_all(srv, SG_WORKER_STOP);
        }
        return;
    }
    srv->stopping = true;
    sg_notify("STOPPING=1");
    uint64_t drain = srv->current->timeouts.drain_ms;
    sg_log_info(&srv->log, "stopping: no new connections; established ones get up to %llu ms",
                (unsigned long long)drain);
    if (srv->watching) {
        uv_fs_event_stop(&srv->watch);
        srv->watching = false;
    }
    uv_timer_stop(&srv->debounce);
    sg_admin_set_draining(srv->admin, true);
    post_all(srv, SG_WORKER_DRAIN);
    /* Our own copies of the listening sockets go too (the messages hold
     * what the workers still need): a socket left listening would go on
     * completing handshakes that nobody accepts. */
    replace_bounds(srv, NULL, 0);
    uv_timer_start(&srv->drain_timer, drain_timeout_cb, drain, 0);
}

static void signal_cb(uv_signal_t *h, int signum)
{
    struct sg_server *srv = h->data;
    switch (signum) {
    case SIGHUP:
        sg_log_info(&srv->log, "SIGHUP: reloading %s", srv->config_path);
        start_reload(srv, "SIGHUP");
        break;
    case SIGUSR1:
        if (srv->access_path != NULL) {
            if (setup_access_log(srv, srv->current, true) == 0)
                sg_log_info(&srv->log, "SIGUSR1: reopened the access log %s", srv->access_path);
        }
        break;
    case SIGINT:
        begin_stop(srv, srv->stopping);
        break;
    default: /* SIGTERM, SIGQUIT */
        begin_stop(srv, false);
        break;
    }
}

/* ---- admin -------------------------------------------------------------- */

static void admin_info(void *data, struct sg_metrics_info *info, struct sg_worker_stats **ws,
                       size_t *nws)
{
    struct sg_server *srv = data;
    info->reloads_ok = srv->reloads_ok;
    info->reloads_failed = srv->reloads_failed;
    info->generation = srv->generation;
    info->routes = sg_routes_count(srv->current->routes);
    info->map_sha256 = srv->current->map_sha256;
    info->map_version = srv->current->map_version;
    info->last_reload_seconds = srv->last_reload;
    info->start_time = srv->start_time;
    *nws = 0;
    for (unsigned i = 0; i < srv->nworkers; i++)
        ws[(*nws)++] = &srv->workers[i].stats;
}

/* ---- start -------------------------------------------------------------- */

/* Drops root for <user> (and <group>, or the user's own group), keeping
 * nothing: the sockets are bound already. */
static int drop_privileges(struct sg_server *srv, const struct sg_snapshot *s)
{
    if (geteuid() != 0 || s->user == NULL)
        return 0;
    struct passwd *pw = getpwnam(s->user);
    if (pw == NULL) {
        sg_log_err(&srv->log, "user '%s' does not exist", s->user);
        return -1;
    }
    gid_t gid = pw->pw_gid;
    if (s->group != NULL) {
        struct group *gr = getgrnam(s->group);
        if (gr == NULL) {
            sg_log_err(&srv->log, "group '%s' does not exist", s->group);
            return -1;
        }
        gid = gr->gr_gid;
    }
    if (setgroups(1, &gid) != 0 || setgid(gid) != 0 || setuid(pw->pw_uid) != 0) {
        sg_log_err(&srv->log, "cannot drop privileges to %s: %s", s->user, strerror(errno));
        return -1;
    }
    if (setuid(0) == 0) {
        sg_log_err(&srv->log, "privileges were not dropped: setuid(0) still works");
        return -1;
    }
    sg_log_info(&srv->log, "running as user %s (uid %u, gid %u)", s->user, (unsigned)pw->pw_uid,
                (unsigned)gid);
    return 0;
}

static unsigned worker_count(const struct sg_snapshot *s)
{
    if (s->workers > 0)
        return s->workers;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (unsigned)(n > 64 ? 64 : n) : 1;
}

int sg_server_run(const char *config_path, struct sg_snapshot *snap)
{
    struct sg_server *srv = calloc(1, sizeof(*srv));
    int status = 1;
    if (srv == NULL || (srv->config_path = strdup(config_path)) == NULL) {
        fprintf(stderr, "sixgate: out of memory\n");
        sg_snapshot_unref(snap);
        free(srv);
        return 1;
    }
    sg_logger_init(&srv->log, STDERR_FILENO);
    atomic_store(&srv->log.level, (int)snap->log_level);
    signal(SIGPIPE, SIG_IGN);
    srv->start_time = (uint64_t)now_unix();
    srv->nworkers = worker_count(snap);
    srv->current = snap;
    snap->generation = srv->generation = 1;
    srv->control_thread = uv_thread_self();
    atomic_init(&srv->released, NULL);
    snap->on_release = on_release;
    snap->on_release_data = srv;

    if (uv_loop_init(&srv->loop) < 0) {
        sg_log_err(&srv->log, "cannot create the event loop");
        goto out_free;
    }
    srv->bounds = bind_all(srv, snap, true, &srv->nbounds);
    if (srv->bounds == NULL)
        goto out_close_loop;
    if (snap->has_admin) {
        srv->admin = sg_admin_open(&srv->loop, &snap->admin, &srv->log, admin_info, srv);
        if (srv->admin == NULL)
            goto out_unbind;
    }
    if (setup_access_log(srv, snap, false) < 0)
        goto out_admin;
    if (drop_privileges(srv, snap) < 0)
        goto out_admin;

    uv_signal_t *sigs[] = {&srv->sig_hup, &srv->sig_term, &srv->sig_int, &srv->sig_quit,
                           &srv->sig_usr1};
    int signums[] = {SIGHUP, SIGTERM, SIGINT, SIGQUIT, SIGUSR1};
    for (size_t i = 0; i < 5; i++) {
        uv_signal_init(&srv->loop, sigs[i]);
        sigs[i]->data = srv;
        uv_signal_start(sigs[i], signal_cb, signums[i]);
    }
    uv_fs_event_init(&srv->loop, &srv->watch);
    srv->watch.data = srv;
    uv_timer_init(&srv->loop, &srv->debounce);
    srv->debounce.data = srv;
    uv_timer_init(&srv->loop, &srv->drain_timer);
    srv->drain_timer.data = srv;
    uv_async_init(&srv->loop, &srv->worker_done, worker_done_cb);
    srv->worker_done.data = srv;
    uv_async_init(&srv->loop, &srv->reaper, reaper_cb);
    srv->reaper.data = srv;
    uv_async_init(&srv->loop, &srv->reload_done, reload_done_cb);
    srv->reload_done.data = srv;
    srv->reaper_open = true;
    atomic_init(&srv->workers_finished, 0);

    srv->workers = calloc(srv->nworkers, sizeof(*srv->workers));
    if (srv->workers == NULL) {
        sg_log_err(&srv->log, "out of memory");
        goto out_handles;
    }
    size_t per_worker = snap->max_connections
                            ? (snap->max_connections + srv->nworkers - 1) / srv->nworkers
                            : 0;
    unsigned started = 0;
    for (; started < srv->nworkers; started++) {
        struct sg_worker *w = &srv->workers[started];
        w->data = srv;
        w->on_finished = worker_finished;
        struct sg_worker_msg *m = build_msg(snap, srv->bounds, srv->nbounds, SG_WORKER_RUN);
        int err = m ? sg_worker_start(w, started, &srv->log, per_worker, m) : UV_ENOMEM;
        if (err < 0) {
            sg_log_err(&srv->log, "cannot start worker %u: %s", started, uv_strerror(err));
            break;
        }
    }
    if (started < srv->nworkers) {
        srv->nworkers = started;
        srv->stopping = true;
        post_all(srv, SG_WORKER_STOP);
        goto out_join;
    }
    update_watch(srv);
    srv->reloads_ok = 1;
    srv->last_reload = now_unix();
    size_t naddrs = srv->nbounds;
    sg_log_info(&srv->log,
                "sixgate %s started: %u workers, %zu listeners on %zu addresses, %zu routes%s, "
                "map sha256 %.16s%s%s",
                SIXGATE_VERSION, srv->nworkers, snap->nlisteners, naddrs,
                sg_routes_count(snap->routes),
                sg_routes_has_fallback(snap->routes) ? " and a fallback" : "", snap->map_sha256,
                snap->map_version ? ", version " : "", snap->map_version ? snap->map_version : "");
    sg_notify("READY=1");

    uv_run(&srv->loop, UV_RUN_DEFAULT);
    status = 0;

out_join:
    for (unsigned i = 0; i < srv->nworkers; i++)
        sg_worker_join(&srv->workers[i]);
    free(srv->workers);
    srv->reaper_open = false;
    free_released(srv);
out_handles:
    if (status != 0) {
        close_control_handles(srv);
        uv_run(&srv->loop, UV_RUN_DEFAULT);
    }
out_admin:
    if (srv->admin != NULL) {
        sg_admin_close(srv->admin);
        uv_run(&srv->loop, UV_RUN_DEFAULT);
    }
out_unbind:
    replace_bounds(srv, NULL, 0);
out_close_loop:
    uv_loop_close(&srv->loop);
out_free:
    free(srv->watch_dir);
    free(srv->watch_name);
    free(srv->access_path);
    sg_snapshot_unref(srv->current);
    free(srv->config_path);
    free(srv);
    return status;
}
