#include "sixgate/listener.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* A probe (<listening> false) only binds, without SO_REUSEPORT; a worker's
 * socket also listens. */
static int open_socket(const union sg_sockaddr *addr, bool listening, int *out)
{
    int one = 1, err = 0;
    int fd = socket(addr->sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        (listening && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) ||
        (addr->sa.sa_family == AF_INET6 &&
         setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) != 0) ||
        /* accepted sockets inherit it: no call per connection */
        (listening && setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0)) {
        err = -errno;
        goto out_close;
    }
    if (bind(fd, &addr->sa, sg_sockaddr_len(&addr->sa)) != 0) {
        err = -errno;
        goto out_close;
    }
    if (listening && listen(fd, SG_LISTEN_BACKLOG) != 0) {
        err = -errno;
        goto out_close;
    }
    *out = fd;
    return 0;
out_close:
    close(fd);
    return err;
}

int sg_bound_open(const union sg_sockaddr *addr, unsigned nworkers, struct sg_bound **out)
{
    /* SO_REUSEPORT would let this bind share a port with another process of
     * the same user (a second sixgate started by mistake) and silently split
     * its traffic. A probe bound without it fails if anyone holds the port. */
    int probe = -1, err = open_socket(addr, false, &probe);
    if (err < 0)
        return err;
    close(probe);

    struct sg_bound *b = calloc(1, sizeof(*b) + nworkers * sizeof(int));
    if (b == NULL)
        return -ENOMEM;
    atomic_init(&b->refs, 1);
    b->addr = *addr;
    sg_sockaddr_format(&addr->sa, b->text, sizeof(b->text));
    for (unsigned i = 0; i < nworkers; i++) {
        err = open_socket(addr, true, &b->fds[i]);
        if (err < 0) {
            sg_bound_unref(b);
            return err;
        }
        b->nfds++;
    }
    *out = b;
    return 0;
}

struct sg_bound *sg_bound_ref(struct sg_bound *b)
{
    atomic_fetch_add_explicit(&b->refs, 1, memory_order_relaxed);
    return b;
}

void sg_bound_unref(struct sg_bound *b)
{
    if (b == NULL || atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) != 1)
        return;
    for (unsigned i = 0; i < b->nfds; i++)
        close(b->fds[i]);
    free(b);
}
