/* Everything the configuration says, frozen: listeners, timeouts, limits and
 * the routing map. Built by config.c, never written after it is published,
 * shared between threads by reference count. A connection holds a reference
 * from the moment it routes until it is freed, so a reload never moves it. */
#ifndef SIXGATE_SNAPSHOT_H
#define SIXGATE_SNAPSHOT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sixgate/address.h"
#include "sixgate/arena.h"
#include "sixgate/backend_policy.h"
#include "sixgate/cidr.h"
#include "sixgate/client_limits.h"
#include "sixgate/log.h"
#include "sixgate/routes.h"

enum sg_protocol { SG_PROTO_TLS, SG_PROTO_HTTP, SG_PROTO_TCP };

/* How established connections move their bytes (main file: splice). */
enum sg_splice_mode {
    SG_SPLICE_OFF = 0, /* always copy through user space */
    SG_SPLICE_AUTO,    /* splice(2) a direction once it has moved 64 KiB (SG_SPLICE_AFTER) */
    SG_SPLICE_ALWAYS,  /* splice from the first byte */
};

const char *sg_protocol_str(enum sg_protocol p);

struct sg_listen_addr {
    union sg_sockaddr addr;
    const char *text; /* as written in the config */
};

struct sg_listener_spec {
    const char *name;
    enum sg_protocol protocol;
    size_t naddrs;
    struct sg_listen_addr *addrs;
    struct sg_backend backend; /* SG_PROTO_TCP: the fixed backend */
    uint16_t backend_port; /* tls/http: port for backends written without one; 0: own port */
    struct sg_cidr_list accept_proxy; /* PROXY protocol is required from these; empty: none */
    unsigned line; /* where the listener is defined, for messages */
};

struct sg_timeouts {
    uint64_t sniff_ms;   /* from accept until the name is known */
    uint64_t connect_ms; /* resolving and connecting to the backend */
    uint64_t idle_ms;    /* no byte in either direction */
    uint64_t drain_ms;   /* graceful stop: how long established connections may go on */
};

struct sg_snapshot {
    atomic_uint refs;
    /* If set, called instead of freeing when the last reference goes: a map
     * of a million routes takes milliseconds to free, which a worker's loop
     * should not spend. The hook frees it later with sg_snapshot_free(). */
    void (*on_release)(struct sg_snapshot *s, void *data);
    void *on_release_data;
    struct sg_snapshot *release_next; /* for the hook's own list */
    uint64_t generation; /* set by whoever publishes it; 0 until then */
    struct sg_arena arena; /* every string and array below */

    const char *map_path; /* the map file; a relative name is joined to the main file's folder */

    size_t nlisteners;
    struct sg_listener_spec *listeners;

    struct sg_timeouts timeouts;
    size_t http_head_max;   /* bytes of an HTTP request head (431 past it) */
    size_t max_connections; /* per process; 0: no limit */
    struct sg_client_limits per_client; /* limits.per_client */
    enum sg_splice_mode splice;
    uint64_t dns_ttl_ms;          /* how long a backend name's addresses are used */
    uint64_t dns_negative_ttl_ms; /* how long a failed resolution is remembered */

    /* Where backends may be: backend_networks (has_backend_networks), the
     * listeners, the admin address and this host's addresses at load time.
     * The policy's arrays are in the arena, or are fields of this snapshot. */
    bool has_backend_networks;
    struct sg_cidr_list backend_networks;
    struct sg_backend_policy backend_policy;

    struct sg_routes *routes;
    char map_sha256[65];    /* hex digest of the map file's bytes */
    const char *map_version; /* the map's own "version" key, or NULL */

    /* Process settings: read at start; a reload that changes them says so. */
    unsigned workers;       /* event-loop threads; 0: one per CPU */
    const char *user;       /* drop to this user after binding, when root; NULL: stay */
    const char *group;
    enum sg_log_level log_level;
    const char *access_log; /* a path, "stderr", or NULL (off) */
    bool has_admin;
    union sg_sockaddr admin; /* /metrics and /healthz */
    bool watch_map;          /* reload when the map file changes */
    uint64_t watch_debounce_ms;
};

/* Returns a new, empty snapshot with one reference, or NULL. */
struct sg_snapshot *sg_snapshot_new(void);

/* Takes another reference; returns <s>. Any thread that holds a reference. */
struct sg_snapshot *sg_snapshot_ref(struct sg_snapshot *s);

/* Drops a reference; the last one frees the snapshot (or hands it to
 * on_release). NULL is fine. */
void sg_snapshot_unref(struct sg_snapshot *s);

/* Frees a snapshot that has no reference left. */
void sg_snapshot_free(struct sg_snapshot *s);

#endif
