#include "sixgate/pump.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

static bool would_block(int err)
{
    return err == EAGAIN || err == EWOULDBLOCK;
}

/* ---- pipes -------------------------------------------------------------- */

struct sg_pipe {
    int r, w;
    struct sg_pipe *next;
};

struct sg_pipe_pool {
    struct sg_pipe *idle;
    unsigned nidle, nused, max, keep;
};

struct sg_pipe_pool *sg_pipe_pool_new(unsigned max, unsigned keep)
{
    struct sg_pipe_pool *pool = calloc(1, sizeof(*pool));
    if (pool != NULL) {
        pool->max = max;
        pool->keep = keep;
    }
    return pool;
}

static void pipe_close(struct sg_pipe *pp)
{
    close(pp->r);
    close(pp->w);
    free(pp);
}

void sg_pipe_pool_free(struct sg_pipe_pool *pool)
{
    if (pool == NULL)
        return;
    while (pool->idle != NULL) {
        struct sg_pipe *pp = pool->idle;
        pool->idle = pp->next;
        pipe_close(pp);
    }
    free(pool);
}

unsigned sg_pipe_pool_in_use(const struct sg_pipe_pool *pool)
{
    return pool ? pool->nused : 0;
}

/* An empty pipe, or NULL (none left, or the kernel refused one). */
static struct sg_pipe *pipe_get(struct sg_pipe_pool *pool)
{
    if (pool == NULL || pool->nused >= pool->max)
        return NULL;
    struct sg_pipe *pp = pool->idle;
    if (pp != NULL) {
        pool->idle = pp->next;
        pool->nidle--;
    } else {
        int fds[2];
        if ((pp = malloc(sizeof(*pp))) == NULL)
            return NULL;
        if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) {
            free(pp);
            return NULL;
        }
        pp->r = fds[0];
        pp->w = fds[1];
    }
    pool->nused++;
    return pp;
}

/* Gives back a pipe; one that may still hold bytes is closed instead. */
static void pipe_put(struct sg_pipe_pool *pool, struct sg_pipe *pp, bool empty)
{
    pool->nused--;
    if (!empty || pool->nidle >= pool->keep) {
        pipe_close(pp);
        return;
    }
    pp->next = pool->idle;
    pool->idle = pp;
    pool->nidle++;
}

/* ---- the pump ----------------------------------------------------------- */

void sg_pump_init(struct sg_pump *p, int from, struct sg_ready *rfrom, int to,
                  struct sg_ready *rto)
{
    memset(p, 0, sizeof(*p));
    p->from = from;
    p->to = to;
    p->rfrom = rfrom;
    p->rto = rto;
}

void sg_pump_hold(struct sg_pump *p, uint8_t *data, size_t len)
{
    p->pending = data;
    p->pending_off = 0;
    p->pending_len = len;
}

int sg_pump_send_first(struct sg_pump *p, const uint8_t *a, size_t alen, const uint8_t *b,
                       size_t blen)
{
    if (alen + blen == 0)
        return 0;
    struct iovec iov[2] = {{(void *)a, alen}, {(void *)b, blen}};
    ssize_t n = 0;
    if (p->rto->can_write) {
        do
            n = writev(p->to, iov, 2);
        while (n < 0 && errno == EINTR);
        if (n < 0 && !would_block(errno))
            return -errno;
        if (n < 0)
            n = 0;
    }
    size_t left = alen + blen - (size_t)n;
    if (left == 0)
        return 0;
    p->rto->can_write = false;
    uint8_t *rest = malloc(left);
    if (rest == NULL)
        return -ENOMEM;
    size_t from_a = (size_t)n < alen ? alen - (size_t)n : 0;
    if (from_a > 0)
        memcpy(rest, a + (alen - from_a), from_a);
    if (left > from_a)
        memcpy(rest + from_a, b + (blen - (left - from_a)), left - from_a);
    sg_pump_hold(p, rest, left);
    return 0;
}

void sg_pump_eof(struct sg_pump *p)
{
    p->eof = true;
}

bool sg_pump_holds_bytes(const struct sg_pump *p)
{
    return p->pending_len > 0 || p->in_pipe > 0;
}

static bool finish(struct sg_pump *p, int error, enum sg_pump_side failed)
{
    p->finished = true;
    p->error = error;
    p->failed = failed;
    return true;
}


/* Writes what the pump holds. Returns 1 when all of it is written, 0 when
 * <to> is full, or a negative errno. */
static int flush(struct sg_pump *p, struct sg_pipe_pool *pipes)
{
    while (p->pending_len > 0) {
        if (!p->rto->can_write)
            return 0;
        ssize_t n = sg_sock_send(p->to, p->rto, p->pending + p->pending_off, p->pending_len);
        if (n == -EAGAIN)
            return 0;
        if (n < 0)
            return (int)n;
        p->pending_off += (size_t)n;
        p->pending_len -= (size_t)n;
    }
    free(p->pending);
    p->pending = NULL;
    while (p->in_pipe > 0) {
        if (!p->rto->can_write)
            return 0;
        ssize_t n = splice(p->pipe->r, NULL, p->to, NULL, p->in_pipe,
                           SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (!would_block(errno))
                return -errno;
            p->rto->can_write = false;
            return 0;
        }
        p->in_pipe -= (size_t)n;
        if (p->in_pipe > 0)
            p->rto->can_write = false;
    }
    if (p->pipe != NULL) {
        pipe_put(pipes, p->pipe, true);
        p->pipe = NULL;
    }
    return 1;
}

/* One read by splice into a pipe from the pool. Returns the bytes moved
 * (0 at EOF), -EAGAIN when nothing was there, another negative errno, or
 * NO_PIPE (no pipe: copy instead). */
#define NO_PIPE (-100000)
static ssize_t splice_in(struct sg_pump *p, struct sg_pipe_pool *pipes)
{
    if ((p->pipe = pipe_get(pipes)) == NULL)
        return NO_PIPE;
    ssize_t n;
    do
        n = splice(p->from, NULL, p->pipe->w, NULL, SG_PUMP_READ_MAX,
                   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    while (n < 0 && errno == EINTR);
    if (n > 0) {
        p->in_pipe = (size_t)n;
        p->spliced += (uint64_t)n;
        /* A short splice does not mean an empty socket: each buffer of the
         * socket's queue takes one of the pipe's 16 slots, so small segments
         * (an AF_UNIX peer's small writes, a real network's packets) fill
         * the pipe with far less than asked. Clearing can_read then would
         * strand the rest until the peer sends again, which it may never do
         * (it waits for an answer). The next splice says EAGAIN. */
        return n;
    }
    int err = n < 0 ? errno : 0;
    pipe_put(pipes, p->pipe, true);
    p->pipe = NULL;
    if (err == EINVAL || err == ENOSYS)
        return NO_PIPE; /* this pair of sockets cannot be spliced: copy */
    return n < 0 ? -err : 0;
}

/* One read into the shared buffer, written on at once; what <to> does not
 * take is kept on the heap. Returns the bytes read (0 at EOF) or a negative
 * errno; -ENOMEM and write errors are reported through <werr>. */
static ssize_t copy_once(struct sg_pump *p, const struct sg_pump_env *env, int *werr)
{
    ssize_t n = sg_sock_recv(p->from, p->rfrom, env->buf, SG_PUMP_READ_MAX);
    if (n <= 0)
        return n;
    ssize_t w = p->rto->can_write ? sg_sock_send(p->to, p->rto, env->buf, (size_t)n) : -EAGAIN;
    if (w < 0 && w != -EAGAIN) {
        *werr = (int)w;
        return n;
    }
    if (w < 0)
        w = 0;
    if (w < n) {
        p->rto->can_write = false;
        size_t rest = (size_t)(n - w);
        if ((p->pending = malloc(rest)) == NULL) {
            *werr = -ENOMEM;
            return n;
        }
        memcpy(p->pending, env->buf + w, rest);
        p->pending_off = 0;
        p->pending_len = rest;
    }
    return n;
}

bool sg_pump_run(struct sg_pump *p, const struct sg_pump_env *env)
{
    if (p->finished)
        return true;
    p->more = false;
    for (unsigned reads = 0;; reads++) {
        int f = flush(p, env->pipes);
        if (f < 0)
            return finish(p, f, SG_PUMP_TO);
        if (f == 0)
            return false;
        if (p->eof) {
            if (!p->other_done && shutdown(p->to, SHUT_WR) != 0)
                return finish(p, -errno, SG_PUMP_TO);
            return finish(p, 0, SG_PUMP_FROM);
        }
        if (!p->rfrom->can_read)
            return false;
        if (reads == SG_PUMP_RUN_READS) {
            p->more = true;
            return false;
        }
        bool try_splice = env->pipes != NULL &&
                          (env->splice == SG_SPLICE_ALWAYS ||
                           (env->splice == SG_SPLICE_AUTO && p->bytes >= SG_SPLICE_AFTER));
        ssize_t n = try_splice ? splice_in(p, env->pipes) : NO_PIPE;
        int werr = 0;
        if (n == NO_PIPE)
            n = copy_once(p, env, &werr);
        if (n < 0) {
            if (!would_block((int)-n))
                return finish(p, (int)n, SG_PUMP_FROM);
            p->rfrom->can_read = false;
            return false;
        }
        if (n == 0) {
            p->eof = true;
            continue;
        }
        p->bytes += (uint64_t)n;
        if (werr != 0)
            return finish(p, werr, werr == -ENOMEM ? SG_PUMP_FROM : SG_PUMP_TO);
    }
}

void sg_pump_release(struct sg_pump *p, struct sg_pipe_pool *pipes)
{
    free(p->pending);
    p->pending = NULL;
    p->pending_len = 0;
    if (p->pipe != NULL) {
        pipe_put(pipes, p->pipe, p->in_pipe == 0);
        p->pipe = NULL;
        p->in_pipe = 0;
    }
}
