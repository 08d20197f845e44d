/* Counters for /metrics. Each worker thread owns one struct sg_worker_stats
 * and is its only writer; the admin endpoint reads all of them (relaxed
 * atomics: a reading may be a moment old, never torn). Rendering to the
 * Prometheus text format is a pure function over the collected values. */
#ifndef SIXGATE_METRICS_H
#define SIXGATE_METRICS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* How a connection ended: the outcome field of the access log, a metrics label. */
enum sg_outcome {
    SG_OUT_OK = 0,         /* proxied, both sides closed cleanly */
    SG_OUT_NO_ROUTE,       /* refused: no route for the name and no fallback */
    SG_OUT_BAD_REQUEST,    /* refused: malformed hello or head, bad name, no name */
    SG_OUT_TOO_LARGE,      /* refused: hello or head over the limit */
    SG_OUT_WRONG_PROTOCOL, /* refused: e.g. HTTP on a TLS port */
    SG_OUT_PROXY_REFUSED,  /* refused: PROXY header missing, invalid or untrusted */
    SG_OUT_OVERLOAD,       /* refused: connection limit reached */
    SG_OUT_CLIENT_LIMIT,   /* refused: a limit of limits.per_client reached */
    SG_OUT_SNIFF_TIMEOUT,  /* the client sent no complete hello or head in time */
    SG_OUT_CLIENT_GONE,    /* the client left before it was routed */
    SG_OUT_RESOLVE_FAILED, /* the backend's name did not resolve */
    SG_OUT_CONNECT_FAILED, /* the backend refused or was unreachable */
    SG_OUT_BACKEND_REFUSED, /* every address of the backend's name is refused by the backend policy */
    SG_OUT_CONNECT_TIMEOUT,
    SG_OUT_IDLE_TIMEOUT,
    SG_OUT_CLIENT_ERROR,   /* reset or error on the client side while proxying */
    SG_OUT_BACKEND_ERROR,  /* reset or error on the backend side while proxying */
    SG_OUT_STOPPED,        /* closed by a stop after the drain time */
    SG_OUT_INTERNAL,       /* out of memory or another local failure */
    SG_OUT_COUNT
};

const char *sg_outcome_str(enum sg_outcome o);

#define SG_HIST_BUCKETS 14
/* Upper bounds of the histogram buckets, in microseconds. */
extern const uint64_t sg_hist_bounds_us[SG_HIST_BUCKETS];

struct sg_histogram {
    _Atomic uint64_t buckets[SG_HIST_BUCKETS + 1]; /* the last is +Inf */
    _Atomic uint64_t count;
    _Atomic uint64_t sum_us;
};

#define SG_STATS_NAME_MAX 64

struct sg_listener_stats {
    char name[SG_STATS_NAME_MAX + 1];
    _Atomic uint64_t accepted;
    _Atomic uint64_t active;
    _Atomic uint64_t outcomes[SG_OUT_COUNT];
    _Atomic uint64_t bytes_from_client;
    _Atomic uint64_t bytes_from_backend;
};

struct sg_dns_stats {
    _Atomic uint64_t lookups; /* getaddrinfo calls */
    _Atomic uint64_t hits;    /* answered from the cache */
    _Atomic uint64_t joined;  /* waited for a lookup already running */
    _Atomic uint64_t failures;
};

#define SG_STATS_MAX_LISTENERS 4096

struct sg_worker_stats {
    _Atomic size_t nlisteners; /* published with release after the entry is ready */
    struct sg_listener_stats *listeners[SG_STATS_MAX_LISTENERS];
    struct sg_histogram sniff;
    struct sg_histogram connect;
    struct sg_histogram loop_busy; /* callbacks' time per loop iteration: how long it stalled */
    struct sg_dns_stats dns;
    _Atomic uint64_t spliced_bytes; /* of the bytes relayed, those moved by splice(2) */
};

/* Single-writer updates: a plain load and store, no locked instruction. */
static inline void sg_stat_add(_Atomic uint64_t *c, uint64_t v)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + v,
                          memory_order_relaxed);
}

static inline void sg_stat_sub(_Atomic uint64_t *c, uint64_t v)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) - v,
                          memory_order_relaxed);
}

void sg_histogram_observe(struct sg_histogram *h, uint64_t us);

/* The stats entry for listener <name>, created on first use; NULL when the
 * table is full or out of memory. Only the owning worker calls this. */
struct sg_listener_stats *sg_worker_stats_listener(struct sg_worker_stats *ws, const char *name);

void sg_worker_stats_free(struct sg_worker_stats *ws);

/* Process-wide values rendered next to the workers' counters. */
struct sg_metrics_info {
    uint64_t reloads_ok;
    uint64_t reloads_failed;
    uint64_t generation;
    size_t routes;
    const char *map_sha256;
    const char *map_version;
    double last_reload_seconds; /* unix time of the last successful load */
    uint64_t start_time;        /* unix seconds */
    uint64_t access_dropped;    /* access-log lines a slow reader did not take */
};

/* Writes the Prometheus text exposition of <n> workers' stats and <info>. */
void sg_metrics_render(FILE *out, struct sg_worker_stats *const *ws, size_t n,
                       const struct sg_metrics_info *info);

#endif
