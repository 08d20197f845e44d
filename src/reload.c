#include "sixgate/reload.h"
#include "util.h"

#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <sys/inotify.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sixgate/config.h"
#include "sixgate/diag.h"
#include "sixgate/listener.h"
#include "sixgate/notify.h"

/* One reload. The control loop fills in <path> and <trigger> and starts
 * <thread>; the thread writes <snap>, <diag> and the times, then sends
 * <done>. The control loop reads the results only after joining the thread. */
struct sg_reload_job {
    uv_thread_t thread;
    uv_async_t *done;
    char *path;
    const char *trigger;
    struct sg_snapshot *snap; /* the result, or NULL */
    struct sg_diag diag;
    uint64_t t_start, t_end;
};

static double now_unix(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- listening sockets and the workers' messages ------------------------ */

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
static struct sg_bound **bind_all(struct sg_reload *r, const struct sg_snapshot *s, bool strict,
                                  size_t *count)
{
    size_t total = 0;
    for (size_t i = 0; i < s->nlisteners; i++)
        total += s->listeners[i].naddrs;
    struct sg_bound **v = calloc(total ? total : 1, sizeof(*v));
    if (v == NULL) {
        sg_log_err(r->log, "bind: out of memory");
        return NULL;
    }
    size_t n = 0;
    for (size_t i = 0; i < s->nlisteners; i++) {
        const struct sg_listener_spec *l = &s->listeners[i];
        for (size_t j = 0; j < l->naddrs; j++) {
            struct sg_bound *b = find_bound(r->bounds, r->nbounds, &l->addrs[j].addr);
            if (b != NULL) {
                v[n++] = sg_bound_ref(b);
                continue;
            }
            int err = sg_bound_open(&l->addrs[j].addr, r->nshards, &b);
            if (err < 0) {
                sg_log_err(r->log, "listener %s: cannot listen on %s: %s%s", l->name,
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
                sg_log_info(r->log, "listener %s: now listening on %s", l->name, l->addrs[j].text);
            v[n++] = b;
        }
    }
    *count = n;
    return v;
}

static void replace_bounds(struct sg_reload *r, struct sg_bound **v, size_t n)
{
    for (size_t i = 0; i < r->nbounds; i++)
        sg_bound_unref(r->bounds[i]);
    free(r->bounds);
    r->bounds = v;
    r->nbounds = n;
}

/* The snapshot, and each bound address with the index of the listener it
 * belongs to. */
struct sg_worker_msg *sg_reload_worker_msg(const struct sg_reload *r, enum sg_worker_mode mode)
{
    const struct sg_snapshot *s = r->current;
    struct sg_worker_msg *m = sg_worker_msg_new(r->current, mode, r->nbounds);
    if (m == NULL)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < s->nlisteners; i++) {
        const struct sg_listener_spec *l = &s->listeners[i];
        for (size_t j = 0; j < l->naddrs; j++) {
            struct sg_bound *b = find_bound(r->bounds, r->nbounds, &l->addrs[j].addr);
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

void sg_reload_post_all(struct sg_reload *r, enum sg_worker_mode mode)
{
    for (unsigned w = 0; w < r->nworkers; w++) {
        struct sg_worker_msg *m = sg_reload_worker_msg(r, mode);
        if (m == NULL) {
            sg_log_err(r->log, "worker %u: out of memory for its message", w);
            continue;
        }
        sg_worker_post(&r->workers[w], m);
    }
}

/* ---- the triggers: SIGHUP and the map watch ------------------------------ */

static void start_reload(struct sg_reload *r, const char *trigger);

static void sighup_cb(uv_signal_t *h, int signum)
{
    (void)signum;
    struct sg_reload *r = h->data;
    sg_log_info(r->log, "SIGHUP: reloading %s", r->config_path);
    start_reload(r, "SIGHUP");
}

static void debounce_cb(uv_timer_t *t)
{
    start_reload(t->data, "map file changed");
}

/* The folder is watched, not the file: a control panel that writes a new
 * file and renames it over the map replaces the inode, and a watch on the
 * old inode would never fire again. What counts: the map was closed after
 * a write (a rewrite in place is complete), renamed into place, or taken
 * away (deleted or renamed: the reload says so and keeps the old map). A
 * writer that pauses halfway is never read halfway. */
#define WATCH_MASK (IN_CLOSE_WRITE | IN_MOVED_TO | IN_DELETE | IN_MOVED_FROM)

static void watch_cb(uv_poll_t *h, int status, int events)
{
    (void)events;
    struct sg_reload *r = h->data;
    if (status < 0) {
        sg_log_warn(r->log, "watching %s: %s", r->watch_dir, uv_strerror(status));
        return;
    }
    bool changed = false;
    char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
    for (int round = 0; round < 16; round++) {
        ssize_t n = read(r->watch_fd, buf, sizeof(buf));
        if (n <= 0)
            break;
        for (ssize_t off = 0; off + (ssize_t)sizeof(struct inotify_event) <= n;) {
            const struct inotify_event *ev = (const struct inotify_event *)(void *)(buf + off);
            if (r->watching && ev->wd == r->watch_wd && (ev->mask & WATCH_MASK) && ev->len > 0 &&
                strcmp(ev->name, r->watch_name) == 0)
                changed = true;
            off += (ssize_t)sizeof(struct inotify_event) + ev->len;
        }
    }
    /* Bursts (several writers, or a write and a rename) become one reload. */
    if (changed)
        uv_timer_start(&r->debounce, debounce_cb, r->current->watch_debounce_ms, 0);
}

static void stop_watch(struct sg_reload *r)
{
    if (!r->watching)
        return;
    inotify_rm_watch(r->watch_fd, r->watch_wd);
    r->watching = false;
}

/* Watches the folder of the current snapshot's map, if it asks for a watch
 * and no stop has begun; a watch already on that folder and name stays. */
static void update_watch(struct sg_reload *r)
{
    const struct sg_snapshot *s = r->current;
    bool want = s->watch_map && s->map_path != NULL && !r->stopped;
    const char *slash = s->map_path ? strrchr(s->map_path, '/') : NULL;
    char *dir = NULL, *name = NULL;
    if (want) {
        dir = slash ? strndup(s->map_path, (size_t)(slash - s->map_path) + (slash == s->map_path))
                    : strdup(".");
        name = strdup(slash ? slash + 1 : s->map_path);
        if (dir == NULL || name == NULL)
            want = false;
    }
    if (r->watching && want && strcmp(dir, r->watch_dir) == 0 && strcmp(name, r->watch_name) == 0) {
        free(dir);
        free(name);
        return;
    }
    stop_watch(r);
    free(r->watch_dir);
    free(r->watch_name);
    r->watch_dir = dir;
    r->watch_name = name;
    if (!want)
        return;
    int wd = r->watch_fd < 0 ? -EBADF : inotify_add_watch(r->watch_fd, dir, WATCH_MASK);
    if (wd < 0) {
        sg_log_warn(r->log, "cannot watch %s for map changes: %s (SIGHUP still reloads)", dir,
                    strerror(r->watch_fd < 0 ? EBADF : errno));
        return;
    }
    r->watch_wd = wd;
    r->watching = true;
}

/* ---- the reload thread -------------------------------------------------- */

/* A thread of its own, not libuv's thread pool: the pool also runs every
 * worker's getaddrinfo, and a reload must not wait behind slow DNS lookups.
 * The thread touches only its job. */
static void reload_thread_main(void *arg)
{
    struct sg_reload_job *job = arg;
    job->t_start = uv_hrtime();
    job->snap = sg_config_load(job->path, &job->diag);
    job->t_end = uv_hrtime();
    uv_async_send(job->done);
}

/* Frees a job whose thread has been joined (or never started), and its
 * result if nobody took it. */
static void free_job(struct sg_reload_job *job)
{
    sg_snapshot_unref(job->snap);
    sg_diag_free(&job->diag);
    free(job->path);
    free(job);
}

/* Starts a reload thread that reads and checks the files, so that a map of
 * a million routes never stalls the control loop. A trigger during a reload
 * queues exactly one more, so that the last change is always picked up. */
static void start_reload(struct sg_reload *r, const char *trigger)
{
    if (r->stopped)
        return;
    if (r->job != NULL) {
        r->queued_trigger = trigger;
        return;
    }
    struct sg_reload_job *job = calloc(1, sizeof(*job));
    if (job == NULL || (job->path = strdup(r->config_path)) == NULL) {
        free(job);
        sg_log_err(r->log, "reload (%s): out of memory", trigger);
        return;
    }
    job->done = &r->job_done;
    job->trigger = trigger;
    sg_diag_init(&job->diag);
    sg_notify("RELOADING=1");
    r->job = job;
    int err = uv_thread_create(&job->thread, reload_thread_main, job);
    if (err < 0) {
        r->job = NULL;
        sg_notify("READY=1");
        sg_log_err(r->log, "reload (%s): %s", trigger, uv_strerror(err));
        free_job(job);
    }
}

/* ---- publishing ----------------------------------------------------------- */

static void warn_restart_only(struct sg_reload *r, const struct sg_snapshot *o,
                              const struct sg_snapshot *n)
{
    if (o->workers != n->workers)
        sg_log_warn(r->log, "reload: 'workers' changed; it takes effect at the next start");
    if ((o->user == NULL) != (n->user == NULL) || (o->user && strcmp(o->user, n->user) != 0))
        sg_log_warn(r->log, "reload: 'user' changed; it takes effect at the next start");
    if (o->has_admin != n->has_admin ||
        (o->has_admin && !sg_sockaddr_equal(&o->admin.sa, &n->admin.sa)))
        sg_log_warn(r->log, "reload: 'admin' changed; it takes effect at the next start");
}

/* Publishes <s> (the reference is taken over): binds added addresses,
 * makes it the current snapshot and tells every worker. Returns false,
 * with <s> dropped, when the bind table cannot be allocated. */
static bool publish(struct sg_reload *r, struct sg_snapshot *s)
{
    size_t n = 0;
    struct sg_bound **v = bind_all(r, s, false, &n);
    if (v == NULL) {
        r->reloads_failed++;
        sg_snapshot_unref(s);
        return false;
    }
    /* Removed addresses: the workers close their sockets when they see the
     * new message; the last reference closes ours. */
    for (size_t i = 0; i < r->nbounds; i++) {
        if (find_bound(v, n, &r->bounds[i]->addr) == NULL)
            sg_log_info(r->log, "listener on %s removed", r->bounds[i]->text);
    }
    replace_bounds(r, v, n);
    s->on_release = r->on_release;
    s->on_release_data = r->data;
    s->generation = ++r->generation;
    warn_restart_only(r, r->current, s);
    struct sg_snapshot *old = r->current;
    r->current = s;
    atomic_store(&r->log->level, (int)s->log_level);
    if (r->on_publish != NULL)
        r->on_publish(s, r->data);
    sg_reload_post_all(r, SG_WORKER_RUN);
    sg_snapshot_unref(old);
    update_watch(r);
    r->reloads_ok++;
    r->last_reload = now_unix();
    return true;
}

static void log_refused(struct sg_reload *r, const struct sg_reload_job *job, double ms)
{
    sg_log_err(r->log, "reload (%s) refused after %.1f ms; the map in use stays (generation %llu):",
               job->trigger, ms, (unsigned long long)r->generation);
    for (size_t i = 0; i < job->diag.count; i++)
        sg_log_err(r->log, "  %s", job->diag.msgs[i]);
    if (job->diag.dropped)
        sg_log_err(r->log, "  ... and %zu more errors", job->diag.dropped);
}

static void log_published(struct sg_reload *r, const struct sg_snapshot *s, const char *trigger,
                          double ms)
{
    sg_log_info(r->log,
                "reload (%s): generation %llu, %zu routes%s, %zu listeners, map sha256 "
                "%.16s%s%s, loaded in %.1f ms",
                trigger, (unsigned long long)s->generation, sg_routes_count(s->routes),
                sg_routes_has_fallback(s->routes) ? " and a fallback" : "", s->nlisteners,
                s->map_sha256, s->map_version ? ", version " : "",
                s->map_version ? s->map_version : "", ms);
}

/* The reload thread is done: publish its snapshot or report its errors,
 * then start the reload queued meanwhile, if any. After a stop the result
 * is dropped without a word. */
static void job_done_cb(uv_async_t *a)
{
    struct sg_reload *r = a->data;
    struct sg_reload_job *job = r->job;
    if (job == NULL)
        return;
    uv_thread_join(&job->thread); /* also orders the thread's writes before our reads */
    r->job = NULL;
    double ms = (double)(job->t_end - job->t_start) / 1e6;
    if (job->snap != NULL && !r->stopped) {
        struct sg_snapshot *s = job->snap;
        job->snap = NULL; /* publish() takes it over */
        if (publish(r, s))
            log_published(r, s, job->trigger, ms);
    } else if (!r->stopped) {
        r->reloads_failed++;
        log_refused(r, job, ms);
    }
    sg_notify("READY=1");
    free_job(job);
    /* what the reload thread built and threw away (a refused map, the
     * parser's scratch) goes back to the kernel now, not at the next free */
    malloc_trim(0);
    if (r->queued_trigger != NULL && !r->stopped) {
        const char *t = r->queued_trigger;
        r->queued_trigger = NULL;
        start_reload(r, t);
    }
}

/* ---- life cycle ----------------------------------------------------------- */

void sg_reload_init(struct sg_reload *r, uv_loop_t *loop, struct sg_logger *log,
                    const char *config_path, struct sg_snapshot *first, unsigned nshards)
{
    r->loop = loop;
    r->log = log;
    r->config_path = config_path;
    r->nshards = nshards;
    r->current = first;
    first->generation = r->generation = 1;
    first->on_release = r->on_release;
    first->on_release_data = r->data;
}

int sg_reload_bind_first(struct sg_reload *r)
{
    r->bounds = bind_all(r, r->current, true, &r->nbounds);
    return r->bounds != NULL ? 0 : -1;
}

void sg_reload_open(struct sg_reload *r)
{
    uv_signal_init(r->loop, &r->sighup);
    r->sighup.data = r;
    uv_signal_start(&r->sighup, sighup_cb, SIGHUP);
    r->watch_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (r->watch_fd >= 0 && uv_poll_init(r->loop, &r->watch, r->watch_fd) == 0) {
        r->watch.data = r;
        uv_poll_start(&r->watch, UV_READABLE, watch_cb);
    } else if (r->watch_fd >= 0) {
        close(r->watch_fd);
        r->watch_fd = -1; /* no watch: SIGHUP still reloads */
    }
    uv_timer_init(r->loop, &r->debounce);
    r->debounce.data = r;
    uv_async_init(r->loop, &r->job_done, job_done_cb);
    r->job_done.data = r;
}

void sg_reload_set_workers(struct sg_reload *r, struct sg_worker *workers, unsigned n)
{
    r->workers = workers;
    r->nworkers = n;
}

void sg_reload_start(struct sg_reload *r)
{
    update_watch(r);
    r->reloads_ok = 1;
    r->last_reload = now_unix();
}

void sg_reload_stop(struct sg_reload *r)
{
    r->stopped = true;
    stop_watch(r);
    uv_timer_stop(&r->debounce);
}

void sg_reload_unbind(struct sg_reload *r)
{
    replace_bounds(r, NULL, 0);
}

static void close_cb_ignore(uv_handle_t *h)
{
    (void)h;
}

void sg_reload_close(struct sg_reload *r)
{
    struct sg_reload_job *job = r->job;
    if (job != NULL) {
        /* a reload still reading files: wait for it, then drop its result */
        uv_thread_join(&job->thread);
        r->job = NULL;
        free_job(job);
    }
    uv_handle_t *hs[] = {
        (uv_handle_t *)&r->sighup,
        (uv_handle_t *)&r->debounce,
        (uv_handle_t *)&r->job_done,
    };
    for (size_t i = 0; i < SG_ARRAY_LEN(hs); i++) {
        if (!uv_is_closing(hs[i]))
            uv_close(hs[i], close_cb_ignore);
    }
    if (r->watch_fd >= 0) {
        uv_close((uv_handle_t *)&r->watch, close_cb_ignore);
        close(r->watch_fd); /* libuv no longer polls it once its handle is closing */
        r->watch_fd = -1;
    }
}

void sg_reload_free(struct sg_reload *r)
{
    replace_bounds(r, NULL, 0);
    free(r->watch_dir);
    free(r->watch_name);
    r->watch_dir = r->watch_name = NULL;
    sg_snapshot_unref(r->current);
    r->current = NULL;
}
