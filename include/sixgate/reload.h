/* Reloading, on the control loop: the triggers (SIGHUP, a debounced change
 * in the map's folder), the reload thread that reads and checks the files,
 * and the publication of what it built. struct sg_reload holds the
 * published state: the current snapshot, its generation and the listening
 * sockets it needs. A publication binds added addresses, makes the snapshot
 * current and then posts the complete state to every worker's mailbox; a
 * failed reload logs every error and keeps what is published.
 *
 * Every function here runs on the control loop's thread. The reload thread
 * touches only its own job, and the loop learns of its end through
 * <job_done>. */
#ifndef SIXGATE_RELOAD_H
#define SIXGATE_RELOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "sixgate/log.h"
#include "sixgate/snapshot.h"
#include "sixgate/worker.h"

struct sg_reload_job;

struct sg_reload {
    /* public: set before sg_reload_init(), on a zeroed struct */
    /* Given to every snapshot published (the first one too) as its
     * on_release hook, with <data>. */
    void (*on_release)(struct sg_snapshot *s, void *data);
    /* Called after <s> became current and before the workers hear of it. */
    void (*on_publish)(const struct sg_snapshot *s, void *data);
    void *data;

    /* read-only */
    struct sg_snapshot *current; /* the published snapshot; never NULL after init */
    uint64_t generation;         /* of <current> */
    uint64_t reloads_ok, reloads_failed;
    double last_reload;       /* unix time of the last publication */
    struct sg_bound **bounds; /* every address in use, in no particular order */
    size_t nbounds;

    /* private */
    uv_loop_t *loop;
    struct sg_logger *log;
    const char *config_path;   /* borrowed from the server */
    unsigned nshards;          /* sockets per bound address: one per worker */
    struct sg_worker *workers; /* borrowed: the ones that run */
    unsigned nworkers;

    uv_signal_t sighup;
    /* The map's folder, watched with inotify for a completed write (the
     * writer closed the file) or a rename into place, never for a write
     * still in progress (libuv's fs_event reports every write). */
    int watch_fd;       /* the inotify descriptor, or -1 */
    int watch_wd;       /* the folder's watch in it */
    uv_poll_t watch;    /* libuv's watch on <watch_fd> */
    bool watching;
    char *watch_dir;
    char *watch_name;
    uv_timer_t debounce;

    struct sg_reload_job *job;  /* the reload in progress, or NULL */
    uv_async_t job_done;        /* sent by the reload thread when it ends */
    const char *queued_trigger; /* a trigger that came during a reload, or NULL */
    bool stopped;               /* sg_reload_stop() was called: no more reloads */
};

/* Makes <first> (the reference is taken over) the published snapshot,
 * generation 1, for <nshards> workers. No I/O: sg_reload_bind_first() binds
 * its addresses. */
void sg_reload_init(struct sg_reload *r, uv_loop_t *loop, struct sg_logger *log,
                    const char *config_path, struct sg_snapshot *first, unsigned nshards);

/* Binds every address of the first snapshot. Fails on the first one that
 * cannot be bound, after logging it: sixgate does not start half-listening.
 * Returns 0 or -1. */
int sg_reload_bind_first(struct sg_reload *r);

/* Initialises the handles on the loop and starts the SIGHUP trigger. Once
 * called, sg_reload_close() must be called before the loop is closed. */
void sg_reload_open(struct sg_reload *r);

/* A message for one worker: the published snapshot, the bound sockets and
 * <mode>. The caller owns it (it is meant for sg_worker_post() or
 * sg_worker_start()). NULL when out of memory. */
struct sg_worker_msg *sg_reload_worker_msg(const struct sg_reload *r, enum sg_worker_mode mode);

/* The first <n> of <workers> (borrowed) run: every publication from now on
 * is posted to them. */
void sg_reload_set_workers(struct sg_reload *r, struct sg_worker *workers, unsigned n);

/* The workers run the first snapshot: counts it as the first successful
 * load and starts watching the map's folder if the snapshot asks for it. */
void sg_reload_start(struct sg_reload *r);

/* Posts the published state with <mode> to every worker. */
void sg_reload_post_all(struct sg_reload *r, enum sg_worker_mode mode);

/* No more reloads: the watch and the debounce stop, later triggers are
 * ignored and a reload still running is dropped when it ends. */
void sg_reload_stop(struct sg_reload *r);

/* Drops the control loop's references to the listening sockets; the
 * messages already posted keep what the workers still need. */
void sg_reload_unbind(struct sg_reload *r);

/* Waits for a reload thread still reading files and drops its result, then
 * closes the handles of sg_reload_open(). The loop must run once more for
 * the closes to complete. */
void sg_reload_close(struct sg_reload *r);

/* Frees what is left, after the loop has ended: the sockets, the published
 * snapshot, the watch's names. */
void sg_reload_free(struct sg_reload *r);

#endif
