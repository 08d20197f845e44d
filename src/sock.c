#include "sixgate/sock.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

void sg_ready_note(struct sg_ready *r, uint32_t events)
{
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        r->can_read = true;
    if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR))
        r->can_write = true;
    if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        r->hup = true;
}

void sg_ready_after_read(struct sg_ready *r, size_t got, size_t asked)
{
    if (got < asked && !r->hup)
        r->can_read = false;
}

static bool would_block(int err)
{
    return err == EAGAIN || err == EWOULDBLOCK;
}

ssize_t sg_sock_recv(int fd, struct sg_ready *r, void *buf, size_t len)
{
    ssize_t n;
    do
        n = recv(fd, buf, len, 0);
    while (n < 0 && errno == EINTR);
    if (n < 0) {
        if (!would_block(errno))
            return -errno;
        r->can_read = false;
        return -EAGAIN;
    }
    if (n > 0)
        sg_ready_after_read(r, (size_t)n, len);
    return n;
}

ssize_t sg_sock_send(int fd, struct sg_ready *r, const void *buf, size_t len)
{
    ssize_t n;
    do
        n = send(fd, buf, len, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    if (n < 0) {
        if (!would_block(errno))
            return -errno;
        r->can_write = false;
        return -EAGAIN;
    }
    if ((size_t)n < len)
        r->can_write = false;
    return n;
}

int sg_sock_connect(const union sg_sockaddr *to, int *fd)
{
    int s = socket(to->sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s < 0)
        return -errno;
    int one = 1, r;
    setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    do
        r = connect(s, &to->sa, sg_sockaddr_len(&to->sa));
    while (r != 0 && errno == EINTR);
    if (r != 0 && errno != EINPROGRESS) {
        int err = -errno;
        close(s);
        return err;
    }
    *fd = s;
    return r == 0 ? 1 : 0;
}

int sg_sock_error(int fd)
{
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
        return -errno;
    return err ? -err : -ECONNREFUSED;
}

bool sg_sock_last_word(int fd, struct sg_ready *r, const uint8_t **data, size_t *len,
                       bool *shut, uint8_t *scratch, size_t cap)
{
    while (*len > 0) {
        if (!r->can_write)
            return false;
        ssize_t n = sg_sock_send(fd, r, *data, *len);
        if (n == -EAGAIN)
            return false;
        if (n < 0)
            return true;
        *data += n;
        *len -= (size_t)n;
    }
    if (!*shut) {
        *shut = true;
        if (shutdown(fd, SHUT_WR) != 0)
            return true;
    }
    while (r->can_read) {
        ssize_t n = sg_sock_recv(fd, r, scratch, cap);
        if (n == -EAGAIN)
            return false;
        if (n <= 0)
            return true;
    }
    return false;
}

void sg_sock_close(int fd, bool reset)
{
    if (reset) {
        struct linger l = {.l_onoff = 1, .l_linger = 0};
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
    }
    close(fd);
}
