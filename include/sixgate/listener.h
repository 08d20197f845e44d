/* Listening sockets. The control thread binds every address (before it
 * drops privileges, and again on reload for added addresses): one socket per
 * worker, with SO_REUSEPORT, so that the kernel spreads new connections over
 * the workers' loops. A struct sg_bound is shared by reference between the
 * control thread, the workers' mailbox messages and the workers' listeners;
 * each worker watches its own socket of it (fds[worker id]) and holds a
 * reference while it does, so who closes which descriptor is never in
 * doubt: the bound closes all of them when its last reference goes, after
 * every worker has taken its socket out of its event set. */
#ifndef SIXGATE_LISTENER_H
#define SIXGATE_LISTENER_H

#include <stdatomic.h>

#include "sixgate/address.h"

/* The accept queue of every listening socket. libuv's uv_listen() calls
 * listen(2) again with it, so both must pass this same value. */
#define SG_LISTEN_BACKLOG 4096

struct sg_bound {
    atomic_uint refs;
    union sg_sockaddr addr;
    char text[SG_ADDR_TEXT_MAX];
    unsigned nfds;
    int fds[]; /* one listening socket per worker */
};

/* Binds <addr> for <nworkers> workers and listens. IPv6 sockets are
 * IPV6_V6ONLY, so "[::]:443" and "0.0.0.0:443" can both be listed. Fails
 * with -EADDRINUSE when any other socket holds the address, even one of
 * another sixgate with SO_REUSEPORT. Returns 0 or a negative errno. */
int sg_bound_open(const union sg_sockaddr *addr, unsigned nworkers, struct sg_bound **out);

struct sg_bound *sg_bound_ref(struct sg_bound *b);
void sg_bound_unref(struct sg_bound *b);

#endif
