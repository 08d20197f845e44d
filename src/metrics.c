#include "sixgate/metrics.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

static const char *const outcome_names[SG_OUT_COUNT] = {
    [SG_OUT_OK] = "ok",
    [SG_OUT_NO_ROUTE] = "no_route",
    [SG_OUT_BAD_REQUEST] = "bad_request",
    [SG_OUT_TOO_LARGE] = "too_large",
    [SG_OUT_WRONG_PROTOCOL] = "wrong_protocol",
    [SG_OUT_PROXY_REFUSED] = "proxy_refused",
    [SG_OUT_OVERLOAD] = "overload",
    [SG_OUT_CLIENT_LIMIT] = "client_limit",
    [SG_OUT_SNIFF_TIMEOUT] = "sniff_timeout",
    [SG_OUT_CLIENT_GONE] = "client_gone",
    [SG_OUT_RESOLVE_FAILED] = "resolve_failed",
    [SG_OUT_CONNECT_FAILED] = "connect_failed",
    [SG_OUT_BACKEND_REFUSED] = "backend_refused",
    [SG_OUT_CONNECT_TIMEOUT] = "connect_timeout",
    [SG_OUT_IDLE_TIMEOUT] = "idle_timeout",
    [SG_OUT_CLIENT_ERROR] = "client_error",
    [SG_OUT_BACKEND_ERROR] = "backend_error",
    [SG_OUT_STOPPED] = "stopped",
    [SG_OUT_INTERNAL] = "internal_error",
};

const char *sg_outcome_str(enum sg_outcome o)
{
    return (unsigned)o < SG_OUT_COUNT ? outcome_names[o] : "unknown";
}

const uint64_t sg_hist_bounds_us[SG_HIST_BUCKETS] = {
    100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 1000000, 5000000,
    10000000,
};

void sg_histogram_observe(struct sg_histogram *h, uint64_t us)
{
    size_t i = 0;
    while (i < SG_HIST_BUCKETS && us > sg_hist_bounds_us[i])
        i++;
    sg_stat_add(&h->buckets[i], 1);
    sg_stat_add(&h->count, 1);
    sg_stat_add(&h->sum_us, us);
}

struct sg_listener_stats *sg_worker_stats_listener(struct sg_worker_stats *ws, const char *name)
{
    size_t n = atomic_load_explicit(&ws->nlisteners, memory_order_relaxed);
    for (size_t i = 0; i < n; i++) {
        if (strcmp(ws->listeners[i]->name, name) == 0)
            return ws->listeners[i];
    }
    if (n == SG_STATS_MAX_LISTENERS)
        return NULL;
    struct sg_listener_stats *ls = calloc(1, sizeof(*ls));
    if (ls == NULL)
        return NULL;
    snprintf(ls->name, sizeof(ls->name), "%s", name);
    ws->listeners[n] = ls;
    /* release: a reader that sees the new count sees the entry filled in */
    atomic_store_explicit(&ws->nlisteners, n + 1, memory_order_release);
    return ls;
}

void sg_worker_stats_free(struct sg_worker_stats *ws)
{
    size_t n = atomic_load_explicit(&ws->nlisteners, memory_order_relaxed);
    for (size_t i = 0; i < n; i++)
        free(ws->listeners[i]);
    atomic_store_explicit(&ws->nlisteners, 0, memory_order_relaxed);
}

static uint64_t ld(_Atomic uint64_t *v)
{
    return atomic_load_explicit(v, memory_order_relaxed);
}

/* Sums one listener's counters over all workers; <name> is the key. */
struct lsum {
    const char *name;
    uint64_t accepted, active, bytes_c, bytes_b;
    uint64_t outcomes[SG_OUT_COUNT];
};

static void render_histogram(FILE *out, const char *name, const char *help,
                             struct sg_worker_stats *const *ws, size_t n,
                             size_t offset /* of the histogram in struct sg_worker_stats */)
{
    uint64_t b[SG_HIST_BUCKETS + 1] = {0}, count = 0, sum = 0;
    for (size_t w = 0; w < n; w++) {
        struct sg_histogram *h =
            (struct sg_histogram *)(void *)((char *)ws[w] + offset);
        for (size_t i = 0; i <= SG_HIST_BUCKETS; i++)
            b[i] += ld(&h->buckets[i]);
        count += ld(&h->count);
        sum += ld(&h->sum_us);
    }
    fprintf(out, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    uint64_t cum = 0;
    for (size_t i = 0; i < SG_HIST_BUCKETS; i++) {
        cum += b[i];
        fprintf(out, "%s_bucket{le=\"%g\"} %llu\n", name, (double)sg_hist_bounds_us[i] / 1e6,
                (unsigned long long)cum);
    }
    cum += b[SG_HIST_BUCKETS];
    fprintf(out, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)cum);
    fprintf(out, "%s_sum %.6f\n%s_count %llu\n", name, (double)sum / 1e6, name,
            (unsigned long long)count);
}

/* The per-listener sums of all workers' counters, in <*out> (malloc'd);
 * returns how many listeners, or -1 when out of memory. */
static long gather_listeners(struct sg_worker_stats *const *ws, size_t n, struct lsum **out)
{
    /* Gather listeners by name across workers. */
    size_t cap = 0, used = 0;
    struct lsum *sums = NULL;
    for (size_t w = 0; w < n; w++) {
        size_t nl = atomic_load_explicit(&ws[w]->nlisteners, memory_order_acquire);
        for (size_t i = 0; i < nl; i++) {
            struct sg_listener_stats *ls = ws[w]->listeners[i];
            size_t k;
            for (k = 0; k < used; k++) {
                if (strcmp(sums[k].name, ls->name) == 0)
                    break;
            }
            if (k == used) {
                if (used == cap) {
                    size_t nc = cap ? cap * 2 : 16;
                    struct lsum *ns = realloc(sums, nc * sizeof(*ns));
                    if (ns == NULL) {
                        free(sums);
                        return -1;
                    }
                    sums = ns;
                    cap = nc;
                }
                memset(&sums[used], 0, sizeof(sums[used]));
                sums[used].name = ls->name;
                used++;
            }
            sums[k].accepted += ld(&ls->accepted);
            sums[k].active += ld(&ls->active);
            sums[k].bytes_c += ld(&ls->bytes_from_client);
            sums[k].bytes_b += ld(&ls->bytes_from_backend);
            for (size_t o = 0; o < SG_OUT_COUNT; o++)
                sums[k].outcomes[o] += ld(&ls->outcomes[o]);
        }
    }

    *out = sums;
    return (long)used;
}

static void render_listeners(FILE *out, const struct lsum *sums, size_t used)
{
    fprintf(out, "# HELP sixgate_connections_accepted_total Connections accepted.\n"
                 "# TYPE sixgate_connections_accepted_total counter\n");
    for (size_t k = 0; k < used; k++)
        fprintf(out, "sixgate_connections_accepted_total{listener=\"%s\"} %llu\n", sums[k].name,
                (unsigned long long)sums[k].accepted);
    fprintf(out, "# HELP sixgate_connections_active Connections open now.\n"
                 "# TYPE sixgate_connections_active gauge\n");
    for (size_t k = 0; k < used; k++)
        fprintf(out, "sixgate_connections_active{listener=\"%s\"} %llu\n", sums[k].name,
                (unsigned long long)sums[k].active);
    fprintf(out, "# HELP sixgate_connections_total Connections ended, by outcome "
                 "(refusals and failures included).\n"
                 "# TYPE sixgate_connections_total counter\n");
    for (size_t k = 0; k < used; k++) {
        for (size_t o = 0; o < SG_OUT_COUNT; o++)
            fprintf(out, "sixgate_connections_total{listener=\"%s\",outcome=\"%s\"} %llu\n",
                    sums[k].name, outcome_names[o], (unsigned long long)sums[k].outcomes[o]);
    }
    fprintf(out, "# HELP sixgate_bytes_total Bytes relayed, by direction.\n"
                 "# TYPE sixgate_bytes_total counter\n");
    for (size_t k = 0; k < used; k++) {
        fprintf(out, "sixgate_bytes_total{listener=\"%s\",direction=\"from_client\"} %llu\n",
                sums[k].name, (unsigned long long)sums[k].bytes_c);
        fprintf(out, "sixgate_bytes_total{listener=\"%s\",direction=\"from_backend\"} %llu\n",
                sums[k].name, (unsigned long long)sums[k].bytes_b);
    }
}

/* Histograms and counters that are per worker, summed. */
static void render_workers(FILE *out, struct sg_worker_stats *const *ws, size_t n)
{
    render_histogram(out, "sixgate_sniff_duration_seconds",
                     "Time from accept until the name was known.", ws, n, offsetof(struct sg_worker_stats, sniff));
    render_histogram(out, "sixgate_connect_duration_seconds",
                     "Time from routing until the backend connection was up.", ws, n, offsetof(struct sg_worker_stats, connect));
    render_histogram(out, "sixgate_loop_busy_seconds",
                     "Time a worker's event loop spent in the callbacks of one iteration: how "
                     "long it could not react to anything else.",
                     ws, n, offsetof(struct sg_worker_stats, loop_busy));
    uint64_t spliced = 0;
    for (size_t w = 0; w < n; w++)
        spliced += ld(&ws[w]->spliced_bytes);
    fprintf(out,
            "# HELP sixgate_spliced_bytes_total Bytes of ended connections that went "
            "socket to pipe to socket with splice(2), never through user space.\n"
            "# TYPE sixgate_spliced_bytes_total counter\n"
            "sixgate_spliced_bytes_total %llu\n",
            (unsigned long long)spliced);
    uint64_t dns[4] = {0};
    for (size_t w = 0; w < n; w++) {
        dns[0] += ld(&ws[w]->dns.lookups);
        dns[1] += ld(&ws[w]->dns.hits);
        dns[2] += ld(&ws[w]->dns.joined);
        dns[3] += ld(&ws[w]->dns.failures);
    }
    fprintf(out,
            "# HELP sixgate_dns_total Backend name resolutions: lookups made, answers from "
            "the cache, waits for a lookup already running, failed lookups.\n"
            "# TYPE sixgate_dns_total counter\n"
            "sixgate_dns_total{result=\"lookup\"} %llu\n"
            "sixgate_dns_total{result=\"cached\"} %llu\n"
            "sixgate_dns_total{result=\"joined\"} %llu\n"
            "sixgate_dns_total{result=\"failed\"} %llu\n",
            (unsigned long long)dns[0], (unsigned long long)dns[1], (unsigned long long)dns[2],
            (unsigned long long)dns[3]);
}

static void render_process(FILE *out, const struct sg_metrics_info *info)
{
    fprintf(out,
            "# HELP sixgate_reloads_total Configuration loads, by result.\n"
            "# TYPE sixgate_reloads_total counter\n"
            "sixgate_reloads_total{result=\"ok\"} %llu\n"
            "sixgate_reloads_total{result=\"failed\"} %llu\n",
            (unsigned long long)info->reloads_ok, (unsigned long long)info->reloads_failed);
    fprintf(out,
            "# HELP sixgate_config_generation Generation of the configuration in use.\n"
            "# TYPE sixgate_config_generation gauge\n"
            "sixgate_config_generation %llu\n",
            (unsigned long long)info->generation);
    fprintf(out,
            "# HELP sixgate_routes Routes in the map in use.\n"
            "# TYPE sixgate_routes gauge\nsixgate_routes %zu\n",
            info->routes);
    fprintf(out,
            "# HELP sixgate_map_info The map in use: its SHA-256 and its own version.\n"
            "# TYPE sixgate_map_info gauge\n"
            "sixgate_map_info{sha256=\"%s\",version=\"",
            info->map_sha256 ? info->map_sha256 : "");
    /* the version comes from the control panel: escape it as a label value */
    for (const char *p = info->map_version ? info->map_version : ""; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(out, "\\%c", *p);
        else if (*p == '\n')
            fputs("\\n", out);
        else
            fputc(*p, out);
    }
    fprintf(out, "\"} 1\n");
    fprintf(out,
            "# HELP sixgate_last_reload_timestamp_seconds When the configuration in use was "
            "loaded.\n# TYPE sixgate_last_reload_timestamp_seconds gauge\n"
            "sixgate_last_reload_timestamp_seconds %.3f\n",
            info->last_reload_seconds);
    fprintf(out,
            "# HELP sixgate_access_log_dropped_total Access-log lines dropped because the "
            "log's reader (a pipe or socket) was full: sixgate never waits for it.\n"
            "# TYPE sixgate_access_log_dropped_total counter\n"
            "sixgate_access_log_dropped_total %llu\n",
            (unsigned long long)info->access_dropped);
    fprintf(out,
            "# HELP sixgate_start_time_seconds When the process started.\n"
            "# TYPE sixgate_start_time_seconds gauge\nsixgate_start_time_seconds %llu\n",
            (unsigned long long)info->start_time);
}

void sg_metrics_render(FILE *out, struct sg_worker_stats *const *ws, size_t n,
                       const struct sg_metrics_info *info)
{
    struct lsum *sums = NULL;
    long used = gather_listeners(ws, n, &sums);
    if (used < 0)
        return;
    render_listeners(out, sums, (size_t)used);
    render_workers(out, ws, n);
    render_process(out, info);
    free(sums);
}
