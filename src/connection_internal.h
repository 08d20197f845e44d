/* The connection's private parts, shared by the files of the connection
 * module only: connection.c (the state machine: accept, routing, connect,
 * splicing, refusals, the end) and connection_sniff.c (before routing:
 * the early bytes, a PROXY header, the sniffer's verdict). Nothing else
 * includes this. */
#ifndef SIXGATE_CONNECTION_INTERNAL_H
#define SIXGATE_CONNECTION_INTERNAL_H

#include "sixgate/connection.h"
#include "sixgate/events.h"
#include "sixgate/protocol.h"
#include "sixgate/resolver.h"
#include "sixgate/sock.h"
#include "util.h"

/* How long a refused client may keep sending before it is cut off. */
#define LINGER_MS 2000
/* The early-bytes buffer starts at this size and doubles up to its limit. */
#define EARLY_BUF_START 4096
/* The most of a name from the wire kept for the access log. */
#define RAW_NAME_MAX 255

enum sg_conn_state {
    SG_CONN_ACCEPTED,     /* [transient] set up, nothing read yet */
    SG_CONN_PROXY_HEADER, /* reading a PROXY header from a trusted upstream */
    SG_CONN_SNIFFING,     /* reading the hello or the request head */
    SG_CONN_RESOLVING,    /* [transient] the backend's name is being resolved */
    SG_CONN_CONNECTING,   /* [transient] connecting to the backend */
    SG_CONN_SPLICING,     /* both pumps run until both directions are done */
    SG_CONN_REFUSING,     /* writing a refusal, then lingering */
    SG_CONN_CLOSED,       /* the sockets are closed; freed when the timer is */
    SG_CONN_NSTATES
};

/* One socket of the connection: its descriptor (in the watch), and what
 * the kernel last said of it. Added once to the loop's event set, edge
 * triggered; closing the descriptor removes it. */
struct sg_conn_side {
    struct sg_watch watch;
    struct sg_ready ready;
    bool eof; /* client: EOF read before splicing began */
};

/* Everything the client sent before its backend was connected, replayed to
 * the backend first: a PROXY header from a trusted upstream (the first
 * <header_len> bytes, read but never forwarded), the hello or request head,
 * and what followed it. Handed to the pump once connected. */
struct sg_early_bytes {
    uint8_t *buf;
    size_t len, cap;
    size_t max;        /* the protocol's limit plus room for a PROXY header */
    size_t header_len; /* a received PROXY header at the start of <buf> */
    size_t sent;       /* bytes of the client's stream it held, for the counters */
};

struct sg_conn {
    struct sg_conn_env *env;
    struct sg_conn *prev, *next; /* env->conns */
    uint64_t id;
    enum sg_conn_state state;

    struct sg_conn_side client;
    struct sg_conn_side backend;
    uv_timer_t timer; /* the state's deadline; its close callback frees the struct */

    struct sg_snapshot *snap; /* reference held until the struct is freed */
    const struct sg_listener_spec *listener; /* in <snap> */
    const struct sg_protocol_ops *proto;     /* the listener's protocol */
    struct sg_listener_stats *lstats;

    union sg_sockaddr peer;  /* the client; from a PROXY header when trusted */
    union sg_sockaddr local; /* where the client connected (or the PROXY header's target) */
    union sg_sockaddr via;   /* the TCP peer when a PROXY header replaced it */
    bool has_via;
    bool local_known;        /* <local> is filled (else: getsockname when needed) */

    struct sg_client *client_entry; /* counted in env->clients, or NULL */
    bool client_sniffing;           /* ... and still as sniffing */

    struct sg_early_bytes early;
    struct sg_sniff_state sniffer;
    enum sg_sniff_spoken spoken; /* after WRONG_PROTOCOL, for the refusal */

    /* the name and where it leads: the name routed by, or one refused as
     * received (RAW_NAME_MAX bytes at most, kept for the access log) */
    bool has_name;
    union {
        struct sg_name name;
        char raw[RAW_NAME_MAX];
    } n;
    size_t raw_name_len;
    struct sg_route_result route;
    uint16_t backend_port;
    union sg_sockaddr backend_addr;

    struct sg_resolve_waiter resolve; /* waiting for the backend's name */
    struct sockaddr_in6 *addrs;       /* its addresses, tried in turn (heap), or NULL */
    uint8_t naddrs, next_addr;

    struct sg_pump up;   /* client -> backend */
    struct sg_pump down; /* backend -> client */
    unsigned directions_done;

    const uint8_t *refusal; /* REFUSING: what is left to write, and its length */
    size_t refusal_len;
    bool refusal_sent;      /* written and the client's side shut down */
    uint8_t refusal_scratch[SG_REFUSAL_SCRATCH];

    uint64_t t_accept, t_routed, t_connected; /* uv_hrtime() */
    uint64_t last_activity;                   /* uv_now(), milliseconds */
    enum sg_outcome outcome;
    const char *reason;   /* static text */
    char reason_buf[96];  /* or this, for messages with values */
};

#define CONN_OF(ptr, member) SG_CONTAINER_OF(ptr, struct sg_conn, member)

/* The only writer of c->state (connection.c). */
#define conn_set_state(c, to) conn_set_state_at((c), (to), __LINE__)
void conn_set_state_at(struct sg_conn *c, enum sg_conn_state to, int line);

/* The one door out, and its form with a reset to the client. */
void conn_close(struct sg_conn *c, enum sg_outcome outcome, const char *reason);
void conn_close_ex(struct sg_conn *c, enum sg_outcome outcome, const char *reason,
                   bool reset_client);

/* Ends the connection with the protocol's refusal for <outcome>. */
void conn_refuse(struct sg_conn *c, enum sg_outcome outcome, const char *reason);

/* c->reason = "<what>: <libuv's text for err>". */
void conn_format_reason(struct sg_conn *c, const char *what, int err);

/* Routes by the name the sniffer found (or none) and starts the connect. */
void conn_route(struct sg_conn *c);

/* Counts the connection for its client (limits.per_client); false when a
 * limit refused it (it is closed then). */
bool conn_admit_client(struct sg_conn *c);

/* connection_sniff.c: the first state (PROXY_HEADER or SNIFFING, or the
 * route at once for a listener that does not sniff), and the client's
 * reads until the backend is connected. */
void conn_start_reading(struct sg_conn *c);
void conn_early_run(struct sg_conn *c);

#endif
