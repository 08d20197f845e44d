/* The access log's one JSON line per connection, and the per-listener
 * accounting done at the same moment (when the connection ends). The record
 * is filled by the connection; formatting it is a pure function. */
#ifndef SIXGATE_ACCESS_LOG_H
#define SIXGATE_ACCESS_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "sixgate/log.h"
#include "sixgate/metrics.h"
#include "sixgate/routes.h"
#include "sixgate/snapshot.h"

/* What is known of a connection when it ends. Every pointer is borrowed
 * from the connection and its snapshot, for the length of one call. */
struct sg_access_record {
    uint64_t conn;
    const struct sg_listener_spec *listener;
    const struct sockaddr *client; /* from a trusted PROXY header, else the TCP peer */
    const struct sockaddr *via;    /* the TCP peer when a PROXY header replaced it, or NULL */
    const struct sockaddr *local;  /* where the client connected (or the header's target) */
    const char *name;              /* the name routed by, or one refused as received; or NULL */
    size_t name_len;
    enum sg_match match;
    const char *route;                   /* the map's pattern, or NULL */
    const struct sg_backend *backend;    /* the route's backend, or NULL */
    uint16_t backend_port;               /* the port the backend is reached on */
    const struct sockaddr *backend_addr; /* the address connected to, or NULL */
    uint64_t bytes_from_client;          /* the client's stream, PROXY header not counted */
    uint64_t bytes_from_backend;
    uint64_t t_accept, t_routed, t_connected, t_end; /* uv_hrtime(), ns; 0: did not happen */
    enum sg_outcome outcome;
    const char *reason; /* or NULL */
};

/* The size of the buffer sg_access_format() needs for any record. */
#define SG_ACCESS_LINE_MAX 2048

/* Writes the line for <r>, stamped <time> (sg_log_time()), into <buf> and
 * returns its length with its "\n". A line that would not fit is cut at a
 * field boundary and still valid JSON. */
size_t sg_access_format(const struct sg_access_record *r, const char *time, char *buf,
                        size_t cap);

/* Whether the access log is on (a reload may switch it). */
static inline bool sg_access_log_on(struct sg_logger *lg)
{
    return atomic_load_explicit(&lg->access_fd, memory_order_relaxed) >= 0;
}

/* Writes the line for <r> to the access log, when it is on. */
void sg_access_log(struct sg_logger *lg, const struct sg_access_record *r);

/* One worker's lines not yet written: the access log costs one write(2)
 * per batch instead of one per connection. Lines are whole, so batches
 * from several workers never mix inside a line. */
#define SG_ACCESS_BUF_SIZE (64u * 1024u)

struct sg_access_buf {
    char *buf; /* SG_ACCESS_BUF_SIZE bytes, or NULL (then lines are written one by one) */
    size_t len;
    int64_t sec;     /* the second <stamp> was made for */
    char stamp[48];  /* "2026-11-28T06:29:40." for <sec> */
};

/* Prepares <b>; returns false when out of memory (it still works, unbuffered). */
bool sg_access_buf_init(struct sg_access_buf *b);
void sg_access_buf_free(struct sg_access_buf *b);

/* Adds the line for <r>; writes the batch first when it is nearly full.
 * Returns true when lines are waiting (the caller arranges a flush). */
bool sg_access_buf_add(struct sg_access_buf *b, struct sg_logger *lg,
                       const struct sg_access_record *r);

/* Writes what is waiting to the access log (dropped when it is off). */
void sg_access_buf_flush(struct sg_access_buf *b, struct sg_logger *lg);

/* Adds the ended connection to its listener's counters (NULL: none). */
void sg_access_account(struct sg_listener_stats *ls, const struct sg_access_record *r);

#endif
