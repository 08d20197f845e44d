/* One client connection, from accept to close, as an explicit state machine:
 *
 *   accept -> [PROXY_HEADER] -> SNIFFING -> [RESOLVING] -> CONNECTING -> SPLICING -> CLOSED
 *                                  |              |              |
 *                                  +--------------+--------------+--> REFUSING -> CLOSED
 *
 * A tcp listener skips SNIFFING. REFUSING writes a refusal (a TLS alert or
 * an HTTP error), shuts the client's side down and reads what the client
 * still sends for a short while, so that the refusal is not lost to a reset.
 * Half-close while SPLICING is per direction (struct sg_pump), not a state.
 * Any state may go to CLOSED on an error or a timeout; conn_close() is the
 * one door out, and the struct is freed once every handle is closed and no
 * request is in flight. */
#ifndef SIXGATE_CONNECTION_H
#define SIXGATE_CONNECTION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "sixgate/access_log.h"
#include "sixgate/address.h"
#include "sixgate/log.h"
#include "sixgate/metrics.h"
#include "sixgate/pump.h"
#include "sixgate/snapshot.h"

struct sg_conn;
struct sg_events;
struct sg_resolver;
struct sg_client_table;
struct sg_client;

/* What a connection needs from the loop it lives on. The worker embeds and
 * fills it; a connection never sees the worker itself. */
struct sg_conn_env {
    uv_loop_t *loop;
    struct sg_events *events;     /* where the connections' sockets are watched */
    struct sg_snapshot *snap;     /* the current snapshot for new connections */
    struct sg_logger *log;
    struct sg_worker_stats *stats;
    struct sg_resolver *resolver; /* backend names, cached per loop */
    struct sg_client_table *clients; /* limits.per_client, shared by the process; NULL: none */
    uint8_t *tls_scratch;         /* SG_TLS_SCRATCH_SIZE bytes, for sniff_tls */
    struct sg_pump_env pump;      /* the read buffer and pipes all pumps share */
    struct sg_access_buf access;  /* access-log lines not yet written */
    uv_timer_t access_timer;      /* writes them at most SG_ACCESS_FLUSH_MS after the first */
    struct sg_conn *conns;        /* every live connection (a list) */
    size_t nconns;
    size_t max_conns;             /* 0: no limit */
    unsigned worker_id;
    uint64_t next_id;
    void (*on_empty)(struct sg_conn_env *env); /* called when nconns drops to 0, if set */
};

/* Takes over <fd>, a non-blocking connection from <peer> accepted on a
 * socket of <listener> (which lives in env->snap) bound to <bound>. On
 * failure the connection is closed and counted. */
void sg_conn_accept(struct sg_conn_env *env, int fd, const union sg_sockaddr *peer,
                    const union sg_sockaddr *bound, const struct sg_listener_spec *listener,
                    struct sg_listener_stats *stats);

/* How long an access-log line may wait in its worker's batch. */
#define SG_ACCESS_FLUSH_MS 100

/* Prepares and ends what <env> holds besides its connections (the access
 * log's batch and its timer). sg_conn_env_close() writes what is waiting. */
int sg_conn_env_init(struct sg_conn_env *env);
void sg_conn_env_close(struct sg_conn_env *env);

/* Closes every connection of <env> (a stop after the drain time). */
void sg_conn_close_all(struct sg_conn_env *env);

#endif
