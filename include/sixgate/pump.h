/* Moves bytes one way, from one stream to another, until EOF or an error.
 *
 * Reads: the owner registers the read of <from> (uv_read_start with its own
 * callbacks) and hands every read to sg_pump_read(). The pump never starts
 * or stops a read itself: under backpressure it asks the owner to pause
 * <from>, and to resume it once the write is done, through <reading>. So
 * one place, the owner, knows whether a stream is being read.
 *
 * Memory: reads land in a buffer the owner shares between every pump of the
 * loop (the loop runs one callback at a time). When the receiver takes all of it at once
 * (uv_try_write), nothing is kept. Otherwise the rest is copied to the heap,
 * written with uv_write, and reading stops until that write completes: a
 * direction holds at most one read's worth of bytes (SG_PUMP_READ_MAX), so
 * memory per connection is bounded whatever the peers do.
 *
 * Half-close: EOF from <from> becomes shutdown(SHUT_WR) on <to> once the
 * pending bytes are written; the other direction goes on. */
#ifndef SIXGATE_PUMP_H
#define SIXGATE_PUMP_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#define SG_PUMP_READ_MAX (64u * 1024u)

struct sg_pump;

/* Which stream of a pump failed: a read error is <from>'s, a write or
 * shutdown error is <to>'s. */
enum sg_pump_side { SG_PUMP_FROM, SG_PUMP_TO };

/* Called once per pump: <status> 0 when EOF was read and passed on as a
 * shutdown (then <failed> means nothing), or a negative libuv error of the
 * stream <failed>. */
typedef void (*sg_pump_done_cb)(struct sg_pump *p, int status, enum sg_pump_side failed);

/* Asks the owner to resume (<on>) or pause reading <from>. Returns 0 or a
 * libuv error (which ends the pump as a read error). */
typedef int (*sg_pump_reading_cb)(struct sg_pump *p, bool on);

struct sg_pump {
    uv_stream_t *from;
    uv_stream_t *to;
    char *pending;     /* heap copy being written under backpressure, or NULL */
    uv_write_t wreq;
    uv_shutdown_t sreq;
    uint64_t bytes;    /* bytes read from <from> */
    uint64_t *last_activity; /* if set, gets uv_now() on each read */
    bool writing;
    bool eof;
    bool finished;     /* on_done was called */
    bool other_done;   /* the other direction is over: EOF needs no shutdown */
    sg_pump_done_cb on_done;
    sg_pump_reading_cb reading;
    void *data;        /* the owner's */
};

/* Prepares <p>; nothing starts. */
void sg_pump_init(struct sg_pump *p, uv_stream_t *from, uv_stream_t *to, sg_pump_done_cb on_done,
                  sg_pump_reading_cb reading, void *data);

/* One read of <from>, as libuv reported it to the owner's read callback.
 * <buf> may be the shared buffer or any other; its bytes are used at once. */
void sg_pump_read(struct sg_pump *p, ssize_t nread, const uv_buf_t *buf);

/* <from> ended before the pump started: pass the EOF on. */
void sg_pump_eof(struct sg_pump *p);

/* The other direction of the connection is over. */
void sg_pump_other_done(struct sg_pump *p);

/* Stops for good, because the owner closes the streams: no more callbacks,
 * and what the owner still reads is not the pump's. Pending writes are
 * cancelled by the close; their callbacks (libuv runs them, with
 * UV_ECANCELED, before the streams' close callbacks) free the heap copy. */
void sg_pump_stop(struct sg_pump *p);


#endif
