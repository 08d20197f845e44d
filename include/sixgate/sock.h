/* Non-blocking TCP sockets watched edge-triggered (sixgate/events.h): what
 * the kernel last said of each, and reads and writes that keep it true.
 * Every call retries EINTR; EAGAIN clears the readiness it contradicts. */
#ifndef SIXGATE_SOCK_H
#define SIXGATE_SOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "sixgate/address.h"

/* What the kernel last said of a socket. Set from events, cleared by
 * whoever gets EAGAIN. */
struct sg_ready {
    bool can_read;
    bool can_write;
    bool hup; /* the peer's FIN (or an error) was reported: read until 0 */
};

/* Sets <r> from epoll events (EPOLLIN, EPOLLOUT, EPOLLRDHUP, EPOLLHUP, EPOLLERR). */
void sg_ready_note(struct sg_ready *r, uint32_t events);

/* Clears can_read after a read of <got> bytes out of <asked>: a short read
 * emptied the socket, unless its FIN is pending (then a read returns 0). */
void sg_ready_after_read(struct sg_ready *r, size_t got, size_t asked);

/* Reads at most <len> bytes. Returns the count (0 at EOF), or a negative
 * errno (-EAGAIN: nothing there; can_read is then false). A short read
 * clears can_read too: the socket was emptied, unless its FIN is pending
 * (then the next read returns 0). */
ssize_t sg_sock_recv(int fd, struct sg_ready *r, void *buf, size_t len);

/* Writes at most <len> bytes. Returns the count or a negative errno
 * (-EAGAIN: the socket is full); a short write clears can_write. */
ssize_t sg_sock_send(int fd, struct sg_ready *r, const void *buf, size_t len);

/* Opens a non-blocking socket (one call) with TCP_NODELAY and starts to
 * connect it to <to>. Returns 1 when connected at once, 0 when under way,
 * or a negative errno; *fd is set on 0 and 1. */
int sg_sock_connect(const union sg_sockaddr *to, int *fd);

/* The error a failed connect left on <fd>, as a negative errno. */
int sg_sock_error(int fd);

/* A last word to a peer that is being refused: writes the <*len> bytes at
 * <*data> (advancing both), shuts the writing side down (once: <*shut>),
 * then reads and drops what the peer still sends, into <scratch>, so that
 * closing does not turn the word into a reset. Returns true when it is
 * over (the peer's EOF, or an error), false to wait for the next event. */
bool sg_sock_last_word(int fd, struct sg_ready *r, const uint8_t **data, size_t *len,
                       bool *shut, uint8_t *scratch, size_t cap);

/* Closes <fd>; with <reset> the peer gets a TCP reset instead of a FIN. */
void sg_sock_close(int fd, bool reset);

#endif
