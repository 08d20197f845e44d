/* Moves bytes one way, from one socket to another, until EOF or an error.
 *
 * The pump works on non-blocking descriptors whose readiness the owner
 * learns from edge-triggered events (sixgate/events.h) and records in a
 * struct sg_ready per socket. sg_pump_run() moves what can be moved now
 * and returns; the owner calls it again after the next event of either
 * socket. It never registers or changes an event itself: readiness is the
 * owner's, the pump only clears it when the kernel says EAGAIN.
 *
 * Copy mode: a read lands in a buffer the owner shares between all pumps
 * of its loop. What the receiver does not take at once is copied to the
 * heap, and reading stops until it is written: a direction holds at most
 * one read's worth of bytes (SG_PUMP_READ_MAX).
 *
 * Splice mode: bytes move socket -> pipe -> socket with splice(2) and never
 * enter user space. The pipe comes from the loop's pool only while it
 * holds bytes; a pump that has none holds no pipe. Where splice is refused
 * (or no pipe can be had) the pump copies.
 *
 * Half-close: EOF from <from> becomes shutdown(SHUT_WR) on <to> once the
 * pending bytes are written, unless the other direction is over already
 * (the owner then closes both sockets, and close sends the FIN). */
#ifndef SIXGATE_PUMP_H
#define SIXGATE_PUMP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sixgate/snapshot.h" /* enum sg_splice_mode */
#include "sixgate/sock.h"     /* struct sg_ready */

#define SG_PUMP_READ_MAX (64u * 1024u)

#define SG_SPLICE_AFTER (64u * 1024u)

struct sg_pipe;
struct sg_pipe_pool;

/* A pool of pipes for one loop: at most <max> in use; up to <keep> idle
 * pipes are kept for reuse, the others closed. */
struct sg_pipe_pool *sg_pipe_pool_new(unsigned max, unsigned keep);
void sg_pipe_pool_free(struct sg_pipe_pool *pool);
unsigned sg_pipe_pool_in_use(const struct sg_pipe_pool *pool);

/* What every pump of a loop shares. */
struct sg_pump_env {
    uint8_t *buf; /* SG_PUMP_READ_MAX bytes */
    struct sg_pipe_pool *pipes; /* NULL: no splice */
    enum sg_splice_mode splice;
};

/* Which socket of a pump failed: a read error is <from>'s, a write or
 * shutdown error is <to>'s. */
enum sg_pump_side { SG_PUMP_FROM, SG_PUMP_TO };

struct sg_pump {
    int from, to; /* descriptors, owned by the owner */
    struct sg_ready *rfrom, *rto;
    uint8_t *pending; /* heap copy not yet written, or NULL */
    size_t pending_off, pending_len;
    struct sg_pipe *pipe; /* holds <in_pipe> bytes, or NULL */
    size_t in_pipe;
    uint64_t bytes;       /* read from <from> (spliced or copied) */
    uint64_t spliced;     /* of those, moved by splice */
    int error;            /* when finished: 0 (EOF passed on) or a negative errno */
    enum sg_pump_side failed;
    bool more;       /* the last run stopped at its bound with bytes still to read */
    bool eof;        /* EOF read from <from> */
    bool other_done; /* the other direction is over: EOF needs no shutdown */
    bool finished;
};

/* Prepares <p> for <from> -> <to>. Nothing is read or written. */
void sg_pump_init(struct sg_pump *p, int from, struct sg_ready *rfrom, int to,
                  struct sg_ready *rto);

/* Makes <len> bytes at <data> (a malloc'd buffer, taken over) the first
 * ones to be written to <to>, before anything read from <from>. */
void sg_pump_hold(struct sg_pump *p, uint8_t *data, size_t len);

/* Writes <alen> bytes at <a>, then <blen> at <b>, to <to> in one writev
 * (a connection's PROXY header and early bytes); what <to> does not take at
 * once is held and written first by sg_pump_run(). Returns 0 or a negative
 * errno (the write failed, or no memory to hold the rest). */
int sg_pump_send_first(struct sg_pump *p, const uint8_t *a, size_t alen, const uint8_t *b,
                       size_t blen);

/* <from> ended before the pump started: pass the EOF on. */
void sg_pump_eof(struct sg_pump *p);

/* Reads one run makes at most: a fast pair of peers must not keep the
 * loop from every other connection (SG_PUMP_RUN_READS * 64 KiB = 1 MiB). */
#define SG_PUMP_RUN_READS 16

/* Moves what can be moved now, SG_PUMP_RUN_READS reads at most; p->more
 * says when it stopped there with the socket still readable (then the
 * owner must run it again soon: no event will say so). Returns true once
 * the pump has finished (it stays finished): p->error says how. */
bool sg_pump_run(struct sg_pump *p, const struct sg_pump_env *env);

/* Whether the pump holds bytes for <to> (heap or pipe). */
bool sg_pump_holds_bytes(const struct sg_pump *p);

/* Releases what the pump holds (heap copy, pipe); the descriptors are the
 * owner's to close. Safe to call on a pump that was never initialised
 * (all zero) and twice. */
void sg_pump_release(struct sg_pump *p, struct sg_pipe_pool *pipes);

#endif
