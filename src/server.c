#include "sixgate/server.h"
#include "sixgate/cpus.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <malloc.h>
#include <sys/stat.h>
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
#include "sixgate/log.h"
#include "sixgate/notify.h"
#include "sixgate/reload.h"
#include "sixgate/worker.h"

struct sg_server {
    uv_loop_t loop;
    struct sg_logger log;
    char *config_path;
    struct sg_reload reload; /* the published snapshot, its sockets, and reloads */

    unsigned nworkers;
    struct sg_worker *workers;
    atomic_uint workers_finished;
    uv_async_t worker_done;

    uv_signal_t sig_term, sig_int, sig_quit, sig_usr1;

    bool stopping;
    uv_timer_t drain_timer;

    uv_thread_t control_thread;
    uv_async_t reaper;          /* frees snapshots released on other threads */
    _Atomic(struct sg_snapshot *) released;
    bool reaper_open;

    struct sg_client_table *clients; /* limits.per_client, for every worker */
    char *access_path; /* the access log file in use, or NULL */
    int access_file;   /* the descriptor files are opened onto, once one was; else -1 */
    int access_stderr; /* "stderr": 2, or a non-blocking descriptor of its pipe; -1 until asked */
    struct sg_admin *admin;

    uint64_t start_time;
};

/* ---- freeing snapshots off the workers' loops ------------------------------ */

/* A freed map of 100k routes leaves megabytes in malloc's arenas (the
 * reload thread's among them), which glibc gives back to the kernel only
 * when asked: without this, RSS grew with every reload of a large map. */
static void free_snapshot(struct sg_snapshot *s)
{
    sg_snapshot_free(s);
    malloc_trim(0);
}

static void free_released(struct sg_server *srv)
{
    struct sg_snapshot *s = atomic_exchange(&srv->released, NULL);
    while (s != NULL) {
        struct sg_snapshot *next = s->release_next;
        free_snapshot(s);
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
        free_snapshot(s);
        return;
    }
    struct sg_snapshot *head = atomic_load(&srv->released);
    do {
        s->release_next = head;
    } while (!atomic_compare_exchange_weak(&srv->released, &head, s));
    uv_async_send(&srv->reaper);
}

/* ---- access log --------------------------------------------------------- */

/* The descriptor "log.access: stderr" writes to. When stderr is a pipe (a
 * supervisor's), the access log gets a file description of its own on
 * that pipe, non-blocking, so that a reader that falls behind costs lines,
 * never a stalled worker; diagnostics keep using stderr as it is. A
 * socket (journald's) is written with MSG_DONTWAIT instead. */
static int stderr_for_access(struct sg_server *srv)
{
    if (srv->access_stderr >= 0)
        return srv->access_stderr;
    struct stat st;
    srv->access_stderr = STDERR_FILENO;
    if (fstat(STDERR_FILENO, &st) == 0 && S_ISFIFO(st.st_mode)) {
        int fd = open("/proc/self/fd/2", O_WRONLY | O_NONBLOCK | O_CLOEXEC);
        if (fd >= 0)
            srv->access_stderr = fd;
    }
    return srv->access_stderr;
}

/* Points the access log at what <s> says. A file is opened on a descriptor
 * that then never changes: a reopen, or another file after a reload,
 * dup2()s the new file onto it, so the workers, which write to it
 * concurrently, need no message; and switching to stderr or off and back
 * reuses it instead of leaking one descriptor each time. */
static int setup_access_log(struct sg_server *srv, const struct sg_snapshot *s, bool reopen)
{
    struct sg_logger *lg = &srv->log;
    const char *want = s->access_log;
    bool is_file = want != NULL && strcmp(want, "stderr") != 0;

    if (!is_file) {
        int fd = want != NULL ? stderr_for_access(srv) : -1;
        struct stat st;
        atomic_store(&lg->access_socket, fd >= 0 && fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode));
        atomic_store(&lg->access_fd, fd);
        /* workers may be writing to srv->access_file still: it stays open */
        free(srv->access_path);
        srv->access_path = NULL;
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
    if (srv->access_file >= 0) {
        dup2(fd, srv->access_file);
        close(fd);
    } else {
        srv->access_file = fd;
    }
    atomic_store(&lg->access_socket, false);
    atomic_store(&lg->access_fd, srv->access_file);
    char *path = strdup(want);
    free(srv->access_path);
    srv->access_path = path;
    return 0;
}

/* Called by reload.c when <s> became current, before the workers hear of it. */
static void on_publish(const struct sg_snapshot *s, void *data)
{
    setup_access_log(data, s, false);
}

/* ---- stop --------------------------------------------------------------- */

static void close_cb_ignore(uv_handle_t *h)
{
    (void)h;
}

static void close_control_handles(struct sg_server *srv)
{
    sg_reload_close(&srv->reload);
    uv_handle_t *hs[] = {
        (uv_handle_t *)&srv->sig_term,    (uv_handle_t *)&srv->sig_int,
        (uv_handle_t *)&srv->sig_quit,    (uv_handle_t *)&srv->sig_usr1,
        (uv_handle_t *)&srv->drain_timer, (uv_handle_t *)&srv->worker_done,
        (uv_handle_t *)&srv->reaper,
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
    sg_reload_post_all(&srv->reload, SG_WORKER_STOP);
}

static void begin_stop(struct sg_server *srv, bool hard)
{
    if (srv->stopping) {
        if (hard) {
            sg_log_warn(&srv->log, "second stop signal: closing every connection now");
            sg_reload_post_all(&srv->reload, SG_WORKER_STOP);
        }
        return;
    }
    srv->stopping = true;
    sg_notify("STOPPING=1");
    uint64_t drain = srv->reload.current->timeouts.drain_ms;
    sg_log_info(&srv->log, "stopping: no new connections; established ones get up to %llu ms",
                (unsigned long long)drain);
    sg_reload_stop(&srv->reload);
    sg_admin_set_draining(srv->admin, true);
    sg_reload_post_all(&srv->reload, SG_WORKER_DRAIN);
    /* Our own copies of the listening sockets go too (the messages hold
     * what the workers still need): a socket left listening would go on
     * completing handshakes that nobody accepts. */
    sg_reload_unbind(&srv->reload);
    uv_timer_start(&srv->drain_timer, drain_timeout_cb, drain, 0);
}

/* SIGHUP is not here: it is a reload trigger, and reload.c handles it. */
static void signal_cb(uv_signal_t *h, int signum)
{
    struct sg_server *srv = h->data;
    switch (signum) {
    case SIGUSR1:
        if (srv->access_path != NULL) {
            if (setup_access_log(srv, srv->reload.current, true) == 0)
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
    const struct sg_reload *r = &srv->reload;
    info->reloads_ok = r->reloads_ok;
    info->reloads_failed = r->reloads_failed;
    info->generation = r->generation;
    info->routes = sg_routes_count(r->current->routes);
    info->map_sha256 = r->current->map_sha256;
    info->map_version = r->current->map_version;
    info->last_reload_seconds = r->last_reload;
    info->start_time = srv->start_time;
    info->access_dropped = atomic_load_explicit(&srv->log.access_dropped, memory_order_relaxed);
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
    return s->workers > 0 ? s->workers : sg_cpus_available(64);
}

/* The control loop's handles; reload.c's come first, with SIGHUP. */
static void open_control_handles(struct sg_server *srv)
{
    sg_reload_open(&srv->reload);
    uv_signal_t *sigs[] = {&srv->sig_term, &srv->sig_int, &srv->sig_quit, &srv->sig_usr1};
    int signums[] = {SIGTERM, SIGINT, SIGQUIT, SIGUSR1};
    for (size_t i = 0; i < SG_ARRAY_LEN(sigs); i++) {
        uv_signal_init(&srv->loop, sigs[i]);
        sigs[i]->data = srv;
        uv_signal_start(sigs[i], signal_cb, signums[i]);
    }
    uv_timer_init(&srv->loop, &srv->drain_timer);
    srv->drain_timer.data = srv;
    uv_async_init(&srv->loop, &srv->worker_done, worker_done_cb);
    srv->worker_done.data = srv;
    uv_async_init(&srv->loop, &srv->reaper, reaper_cb);
    srv->reaper.data = srv;
    srv->reaper_open = true;
    atomic_init(&srv->workers_finished, 0);
}

/* Descriptors kept aside from connections: listeners, the control loop's,
 * the log, the pipes' first few. */
#define FD_RESERVE 128

/* The connection limit: limits.connections, or what the descriptor limit
 * allows (HAProxy derives its maxconn the same way). The soft limit is
 * raised to the hard one first; each connection takes two descriptors. */
static size_t connection_limit(struct sg_server *srv)
{
    size_t set = srv->reload.current->max_connections;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return set;
    if (rl.rlim_cur < rl.rlim_max) {
        struct rlimit up = {rl.rlim_max, rl.rlim_max};
        if (setrlimit(RLIMIT_NOFILE, &up) == 0)
            rl.rlim_cur = rl.rlim_max;
    }
    size_t fds = rl.rlim_cur == RLIM_INFINITY ? (size_t)1 << 20 : (size_t)rl.rlim_cur;
    size_t fit = fds > FD_RESERVE + 2 ? (fds - FD_RESERVE) / 2 : 1;
    if (set > 0) {
        if (set > fit)
            sg_log_warn(&srv->log,
                        "limits.connections is %zu but the descriptor limit (%zu) fits %zu: "
                        "past that, accepting pauses (raise LimitNOFILE=)",
                        set, fds, fit);
        return set;
    }
    if (fds < 4096)
        sg_log_warn(&srv->log,
                    "the descriptor limit is low (%zu): at most %zu connections; raise "
                    "LimitNOFILE= or ulimit -n",
                    fds, fit);
    sg_log_info(&srv->log, "connection limit %zu (limits.connections not set: from the "
                           "descriptor limit %zu)", fit, fds);
    return fit;
}

/* Starts the threads of srv->workers, each with the published state as its
 * first message, and stops at the first that fails. Returns how many run. */
static unsigned start_workers(struct sg_server *srv)
{
    size_t max_conns = connection_limit(srv);
    /* made even when no limit is on: a reload may turn one on */
    if ((srv->clients = sg_client_table_new()) == NULL)
        sg_log_warn(&srv->log, "no memory for the per-client table: limits.per_client is off");
    size_t per_worker = max_conns ? (max_conns + srv->nworkers - 1) / srv->nworkers : 0;
    unsigned started = 0;
    for (; started < srv->nworkers; started++) {
        struct sg_worker *w = &srv->workers[started];
        w->data = srv;
        w->on_finished = worker_finished;
        w->env.clients = srv->clients;
        struct sg_worker_msg *m = sg_reload_worker_msg(&srv->reload, SG_WORKER_RUN);
        int err = m ? sg_worker_start(w, started, &srv->log, per_worker, m) : UV_ENOMEM;
        if (err < 0) {
            sg_log_err(&srv->log, "cannot start worker %u: %s", started, uv_strerror(err));
            break;
        }
    }
    return started;
}

static void log_started(struct sg_server *srv)
{
    const struct sg_snapshot *s = srv->reload.current;
    sg_log_info(&srv->log,
                "sixgate %s started: %u workers, %zu listeners on %zu addresses, %zu routes%s, "
                "map sha256 %.16s%s%s",
                SIXGATE_VERSION, srv->nworkers, s->nlisteners, srv->reload.nbounds,
                sg_routes_count(s->routes),
                sg_routes_has_fallback(s->routes) ? " and a fallback" : "", s->map_sha256,
                s->map_version ? ", version " : "", s->map_version ? s->map_version : "");
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
    srv->access_file = -1;
    srv->access_stderr = -1;
    atomic_store(&srv->log.level, (int)snap->log_level);
    signal(SIGPIPE, SIG_IGN);
    srv->start_time = (uint64_t)time(NULL);
    srv->nworkers = worker_count(snap);
    srv->control_thread = uv_thread_self();
    atomic_init(&srv->released, NULL);
    srv->reload.on_release = on_release;
    srv->reload.on_publish = on_publish;
    srv->reload.data = srv;
    sg_reload_init(&srv->reload, &srv->loop, &srv->log, srv->config_path, snap, srv->nworkers);

    if (uv_loop_init(&srv->loop) < 0) {
        sg_log_err(&srv->log, "cannot create the event loop");
        goto out_free;
    }
    if (sg_reload_bind_first(&srv->reload) < 0)
        goto out_close_loop;
    if (snap->has_admin) {
        srv->admin = sg_admin_open(&srv->loop, &snap->admin, &srv->log, admin_info, srv);
        if (srv->admin == NULL)
            goto out_close_loop;
    }
    if (setup_access_log(srv, snap, false) < 0)
        goto out_admin;
    if (drop_privileges(srv, snap) < 0)
        goto out_admin;

    open_control_handles(srv);
    srv->workers = calloc(srv->nworkers, sizeof(*srv->workers));
    if (srv->workers == NULL) {
        sg_log_err(&srv->log, "out of memory");
        goto out_handles;
    }
    unsigned started = start_workers(srv);
    sg_reload_set_workers(&srv->reload, srv->workers, started);
    if (started < srv->nworkers) {
        srv->nworkers = started;
        srv->stopping = true;
        sg_reload_post_all(&srv->reload, SG_WORKER_STOP);
        goto out_join;
    }
    sg_reload_start(&srv->reload);
    log_started(srv);
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
out_close_loop:
    uv_loop_close(&srv->loop);
out_free:
    sg_reload_free(&srv->reload);
    sg_client_table_free(srv->clients);
    if (srv->access_file >= 0)
        close(srv->access_file);
    if (srv->access_stderr > STDERR_FILENO)
        close(srv->access_stderr);
    free(srv->access_path);
    free(srv->config_path);
    free(srv);
    return status;
}
