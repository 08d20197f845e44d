/* Limits per client address: open connections, connections still being
 * sniffed, and new connections per second, counted for the whole process
 * (all workers share one table). A client is an IPv4 address (/32 by
 * default) or an IPv6 prefix (/64 by default: one customer's line), taken
 * from an accepted PROXY header when there is one. */
#ifndef SIXGATE_CLIENT_LIMITS_H
#define SIXGATE_CLIENT_LIMITS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* limits.per_client; 0 turns a limit off. */
struct sg_client_limits {
    uint32_t connections; /* open at once */
    uint32_t sniffing;    /* of those, not yet routed */
    uint32_t rate;        /* new connections per second */
    uint8_t ipv4_prefix;  /* bits of an IPv4 address that make a client (1-32) */
    uint8_t ipv6_prefix;  /* bits of an IPv6 address (1-128) */
};

/* Whether any limit is on. */
bool sg_client_limits_on(const struct sg_client_limits *l);

enum sg_client_verdict {
    SG_CLIENT_OK = 0,
    SG_CLIENT_TOO_MANY,          /* connections */
    SG_CLIENT_TOO_MANY_SNIFFING, /* sniffing */
    SG_CLIENT_TOO_FAST,          /* rate */
    SG_CLIENT_NO_MEMORY,
};

const char *sg_client_verdict_str(enum sg_client_verdict v);

struct sg_client_table;
struct sg_client;

/* A table for the process; NULL when out of memory. Any thread may use it. */
struct sg_client_table *sg_client_table_new(void);
void sg_client_table_free(struct sg_client_table *t);

/* A new connection from <addr> at <now_ms> (a monotonic clock). On OK it is
 * counted as open and sniffing (<sniffs>: the listener reads a name), and
 * *out is the client's entry, to hand back to the calls below. */
enum sg_client_verdict sg_client_admit(struct sg_client_table *t, const struct sg_client_limits *l,
                                       const struct sockaddr *addr, bool sniffs, uint64_t now_ms,
                                       struct sg_client **out);

/* The connection was routed: it no longer counts as sniffing. */
void sg_client_routed(struct sg_client_table *t, struct sg_client *c);

/* The connection ended (<sniffing>: before it was routed). */
void sg_client_release(struct sg_client_table *t, struct sg_client *c, bool sniffing);

/* Clients the table holds (for tests). */
size_t sg_client_table_size(struct sg_client_table *t);

#endif
