/* Unit tests for the pump over real sockets: AF_UNIX socketpairs and TCP on
 * 127.0.0.1 and [::1], each case copying (SG_SPLICE_OFF) and splicing
 * (SG_SPLICE_ALWAYS) where both make sense. A test plays the owner as
 * connection.c does: the near ends (the pumps' sockets) are in an epoll set
 * of its own, edge-triggered; an event is recorded with sg_ready_note() and
 * followed by sg_pump_run() of both pumps, and nothing else runs a pump. The
 * far ends are plain non-blocking sockets the test reads and writes once per
 * turn of that loop. Every wait has a deadline, so a pump that stalls fails
 * the test instead of hanging it.
 *
 *   a_far --(pair A)--> a_near ==up==> b_near --(pair B)--> b_far
 *   a_far <--(pair A)-- a_near <=down= b_near <--(pair B)-- b_far
 */
#include "sixgate/pump.h"
#include "test.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define PATTERN_LEN (8u * 1024u * 1024u)
#define DEADLINE_MS 3000u
#define CHUNK (256u * 1024u)
#define TCP_BUF (64 * 1024) /* fixed TCP buffers: no autotuning to swallow the test's bytes */

/* Pseudo-random bytes, so that a dropped, repeated or reordered run of bytes
 * cannot go unnoticed the way it could in a repeating pattern. */
static uint8_t pattern[PATTERN_LEN];

static void pattern_init(void)
{
    static bool done;
    if (done)
        return;
    done = true;
    uint64_t x = 0x9e3779b97f4a7c15u;
    for (size_t i = 0; i < PATTERN_LEN; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        pattern[i] = (uint8_t)(x >> 24);
    }
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

enum kind { K_UNIX, K_TCP4, K_TCP6 };
static const char *const kind_name[] = {"unix", "tcp4", "tcp6"};

/* ---- sockets ------------------------------------------------------------- */

static void fixed_buffers(int fd)
{
    int n = TCP_BUF;
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &n, sizeof(n));
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &n, sizeof(n));
}

/* A connected TCP pair over the loopback address of <family>. Returns 0, or
 * a negative errno (EAFNOSUPPORT, EADDRNOTAVAIL: no such loopback here). */
static int tcp_pair(int family, int fd[2])
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    socklen_t len;
    if (family == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)&ss;
        in->sin_family = AF_INET;
        in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        len = sizeof(*in);
    } else {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
        in6->sin6_family = AF_INET6;
        in6->sin6_addr = in6addr_loopback;
        len = sizeof(*in6);
    }
    int l = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0), c = -1, s = -1;
    if (l < 0)
        return -errno;
    fixed_buffers(l); /* inherited by the accepted socket */
    if (bind(l, (struct sockaddr *)&ss, len) != 0 || listen(l, 1) != 0 ||
        getsockname(l, (struct sockaddr *)&ss, &len) != 0)
        goto fail;
    if ((c = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
        goto fail;
    fixed_buffers(c);
    if (connect(c, (struct sockaddr *)&ss, len) != 0)
        goto fail;
    if ((s = accept4(l, NULL, NULL, SOCK_CLOEXEC)) < 0)
        goto fail;
    close(l);
    fd[0] = c;
    fd[1] = s;
    return 0;
fail:;
    int err = -errno;
    close(l);
    if (c >= 0)
        close(c);
    return err;
}

static int make_pair(enum kind k, int fd[2])
{
    int err;
    if (k == K_UNIX)
        err = socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fd) == 0 ? 0 : -errno;
    else
        err = tcp_pair(k == K_TCP4 ? AF_INET : AF_INET6, fd);
    if (err == 0) {
        fcntl(fd[0], F_SETFL, O_NONBLOCK);
        fcntl(fd[1], F_SETFL, O_NONBLOCK);
    }
    return err;
}

/* Bytes in <fd>'s receive queue, not yet read. */
static int64_t fd_inq(int fd)
{
    int n = 0;
    return fd >= 0 && ioctl(fd, SIOCINQ, &n) == 0 ? n : 0;
}

/* TCP: bytes written to <fd> and not yet acknowledged. An AF_UNIX stream
 * puts its bytes straight into the peer's receive queue. */
static int64_t fd_outq(int fd, enum kind k)
{
    int n = 0;
    return k != K_UNIX && fd >= 0 && ioctl(fd, SIOCOUTQ, &n) == 0 ? n : 0;
}

/* Whether this kernel splices AF_UNIX stream sockets, both ways (socket to
 * pipe, pipe to socket). Where it does not, the pump must copy instead. */
static bool unix_splices(void)
{
    static int known = -1;
    if (known >= 0)
        return known == 1;
    int a[2], b[2], p[2];
    known = 0;
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, a) != 0)
        return false;
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, b) == 0) {
        if (pipe2(p, O_NONBLOCK) == 0) {
            if (send(a[0], "x", 1, 0) == 1 &&
                splice(a[1], NULL, p[1], NULL, 4096, SPLICE_F_NONBLOCK) == 1 &&
                splice(p[0], NULL, b[0], NULL, 1, SPLICE_F_NONBLOCK) == 1)
                known = 1;
            close(p[0]);
            close(p[1]);
        }
        close(b[0]);
        close(b[1]);
    }
    close(a[0]);
    close(a[1]);
    fprintf(stderr, "  AF_UNIX stream sockets %s spliced by this kernel\n",
            known ? "are" : "are not");
    return known == 1;
}

/* Whether the pump, in <mode>, reading from a socket of <k>, splices. */
static bool expect_splice(enum sg_splice_mode mode, enum kind k)
{
    return mode == SG_SPLICE_ALWAYS && (k != K_UNIX || unix_splices());
}

/* ---- the far ends ------------------------------------------------------- */

/* A far end: sends <tx_len> bytes of <tx> (then a FIN if <tx_eof>), in
 * writes of <tx_chunk> bytes, and checks what it receives, while <rx_on>,
 * against <rx_expect>. */
struct peer {
    int fd;
    enum kind kind;
    const uint8_t *tx;
    size_t tx_len, tx_done, tx_chunk;
    bool tx_eof, tx_shut;
    int tx_err;
    bool rx_on;
    const uint8_t *rx_expect;
    size_t rx_len, rx_got, rx_bad_at;
    bool rx_bad, rx_eof;
    int rx_err;
    size_t reset_after; /* reset the connection once this many bytes came; 0: never */
    uint8_t rbuf[64 * 1024];
};

/* Closes with a reset: SO_LINGER 0 makes close(2) send an RST on TCP; an
 * AF_UNIX peer sees ECONNRESET/EPIPE when unread bytes are thrown away.
 * close(2) also takes the socket out of the epoll set. */
static void peer_reset(struct peer *pe)
{
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    if (pe->kind != K_UNIX)
        setsockopt(pe->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    close(pe->fd);
    pe->fd = -1;
}

static void peer_send(struct peer *pe, const uint8_t *data, size_t len, bool eof)
{
    pe->tx = data;
    pe->tx_len = len;
    pe->tx_done = 0;
    pe->tx_eof = eof;
}

static void peer_recv(struct peer *pe, const uint8_t *expect, size_t len)
{
    pe->rx_expect = expect;
    pe->rx_len = len;
    pe->rx_on = true;
}

static void peer_got(struct peer *pe, const uint8_t *buf, size_t n)
{
    size_t at = pe->rx_got;
    if (!pe->rx_bad && (at + n > pe->rx_len || memcmp(buf, pe->rx_expect + at, n) != 0)) {
        size_t i = 0;
        while (i < n && at + i < pe->rx_len && buf[i] == pe->rx_expect[at + i])
            i++;
        pe->rx_bad = true;
        pe->rx_bad_at = at + i;
    }
    pe->rx_got += n;
}

/* Writes and reads what the kernel takes and has now. */
static void peer_io(struct peer *pe)
{
    if (pe->fd < 0)
        return;
    while (pe->tx_err == 0 && pe->tx_done < pe->tx_len) {
        size_t n = pe->tx_len - pe->tx_done, chunk = pe->tx_chunk ? pe->tx_chunk : CHUNK;
        ssize_t w = send(pe->fd, pe->tx + pe->tx_done, n < chunk ? n : chunk, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                pe->tx_err = -errno;
            break;
        }
        pe->tx_done += (size_t)w;
    }
    if (pe->tx_eof && !pe->tx_shut && pe->tx_err == 0 && pe->tx_done == pe->tx_len) {
        if (shutdown(pe->fd, SHUT_WR) == 0)
            pe->tx_shut = true;
        else
            pe->tx_err = -errno;
    }
    while (pe->rx_on && !pe->rx_eof && pe->rx_err == 0) {
        ssize_t n = recv(pe->fd, pe->rbuf, sizeof(pe->rbuf), 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                pe->rx_err = -errno;
            break;
        }
        if (n == 0) {
            pe->rx_eof = true;
            break;
        }
        peer_got(pe, pe->rbuf, (size_t)n);
        if (pe->reset_after != 0 && pe->rx_got >= pe->reset_after) {
            peer_reset(pe);
            return;
        }
    }
}

/* ---- the fixture --------------------------------------------------------- */

/* A near end, which the test owns as connection.c owns its sockets. */
struct near {
    int fd;
    struct sg_ready ready;
};

enum { TAG_A_FAR, TAG_A_NEAR, TAG_B_NEAR, TAG_B_FAR };

struct fx {
    int ep;
    enum kind ka, kb;
    struct peer a_far, b_far;
    struct near a, b;
    struct sg_pump up, down;
    bool up_on, down_on; /* started: run after every event */
    int up_finished, down_finished; /* times sg_pump_run() said it finished */
    bool link; /* a clean end sets the other pump's other_done, as connection.c does */
    struct sg_pump_env env;
    bool own_pool;
    int64_t max_in_up; /* most bytes ever inside <up>, looked at once per turn */
    unsigned max_pipes; /* most pipes ever in use, looked at after every run */
    uint64_t events;
    uint8_t buf[SG_PUMP_READ_MAX];
};

/* As connection.c's pump_finished(): a clean end tells the other pump. */
static void pump_finished(struct fx *f, struct sg_pump *p)
{
    struct sg_pump *other = p == &f->up ? &f->down : &f->up;
    if (p == &f->up)
        f->up_finished++;
    else
        f->down_finished++;
    if (p->error == 0 && f->link)
        other->other_done = true;
}

/* As connection.c's splicing_run(): both directions after an event. */
static void fx_run(struct fx *f)
{
    if (f->up_on && !f->up.finished && sg_pump_run(&f->up, &f->env))
        pump_finished(f, &f->up);
    if (f->down_on && !f->down.finished && sg_pump_run(&f->down, &f->env))
        pump_finished(f, &f->down);
    unsigned used = sg_pipe_pool_in_use(f->env.pipes);
    if (used > f->max_pipes)
        f->max_pipes = used;
}

/* How many bytes <up> has read that are neither at the far end of <to> nor
 * in the kernel on the way there. For AF_UNIX the count is exact; on TCP a
 * byte both received and not yet acknowledged counts twice outside, which
 * only makes the bound looser. */
static void fx_measure(struct fx *f)
{
    if (!f->up_on || f->b_far.fd < 0)
        return;
    int64_t outside =
        (int64_t)f->b_far.rx_got + fd_inq(f->b_far.fd) + fd_outq(f->b.fd, f->kb);
    int64_t inside = (int64_t)f->up.bytes - outside;
    if (inside > f->max_in_up)
        f->max_in_up = inside;
}

/* One turn: the events (each one noted, then the pumps run), then the far
 * ends, then the measure. The short timeout lets the far ends, whose own
 * events only wake the loop, be served without a wait. */
static void fx_turn(struct fx *f)
{
    struct epoll_event ev[8];
    int n = epoll_wait(f->ep, ev, 8, 2);
    for (int i = 0; i < n; i++) {
        struct near *nr = ev[i].data.u32 == TAG_A_NEAR   ? &f->a
                          : ev[i].data.u32 == TAG_B_NEAR ? &f->b
                                                         : NULL;
        if (nr == NULL)
            continue;
        f->events++;
        sg_ready_note(&nr->ready, ev[i].events);
        fx_run(f);
    }
    /* a run that stopped at its bound goes on without an event, as the
     * worker's again list does it (edge-triggered: no event will come) */
    for (int i = 0; i < 64 && ((f->up_on && f->up.more) || (f->down_on && f->down.more)); i++)
        fx_run(f);
    peer_io(&f->a_far);
    peer_io(&f->b_far);
    fx_measure(f);
}

/* Runs until <cond> holds, for DEADLINE_MS at most. */
#define RUN_UNTIL(f, cond)                                                                         \
    do {                                                                                           \
        uint64_t end_ = now_ms() + DEADLINE_MS;                                                    \
        while (!(cond) && now_ms() < end_)                                                         \
            fx_turn(f);                                                                            \
        if (!(cond))                                                                               \
            FAIL_("no %s after %u ms", #cond, DEADLINE_MS);                                        \
    } while (0)

/* Lets the loop run for <ms>, so that what should not happen has the time to. */
static void run_for(struct fx *f, uint64_t ms)
{
    uint64_t end = now_ms() + ms;
    while (now_ms() < end)
        fx_turn(f);
}

/* Whether <up> is stalled under backpressure: it holds bytes for <to>, the
 * kernel said <to> is full, and no byte was read for 50 ms. */
static bool up_stalled(struct fx *f)
{
    for (int i = 0; i < 40; i++) {
        uint64_t end = now_ms() + DEADLINE_MS;
        while (!sg_pump_holds_bytes(&f->up) && !f->up.finished && now_ms() < end)
            fx_turn(f);
        uint64_t bytes = f->up.bytes;
        run_for(f, 50);
        if (f->up.finished)
            return false;
        if (sg_pump_holds_bytes(&f->up) && !f->b.ready.can_write && f->up.bytes == bytes)
            return true;
    }
    return false;
}

static int fx_add(struct fx *f, int fd, uint32_t tag)
{
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                             .data.u32 = tag};
    return epoll_ctl(f->ep, EPOLL_CTL_ADD, fd, &ev) == 0 ? 0 : -errno;
}

/* Opens pair A (a_far, a_near) of <ka> and pair B (b_near, b_far) of <kb>,
 * all four in the epoll set, with a pool of its own unless <pool> is given.
 * Returns 0, 1 when the kernel has no such address family (skip), or a
 * negative errno. */
static int fx_open(struct fx **out, enum kind ka, enum kind kb, enum sg_splice_mode mode,
                   struct sg_pipe_pool *pool)
{
    signal(SIGPIPE, SIG_IGN); /* as the server does: splice(2) to a reset socket raises it */
    pattern_init();
    int a[2], b[2], err;
    if ((err = make_pair(ka, a)) < 0)
        return err == -EAFNOSUPPORT || err == -EADDRNOTAVAIL ? 1 : err;
    if ((err = make_pair(kb, b)) < 0) {
        close(a[0]);
        close(a[1]);
        return err == -EAFNOSUPPORT || err == -EADDRNOTAVAIL ? 1 : err;
    }
    struct fx *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return -ENOMEM;
    f->ka = f->a_far.kind = ka;
    f->kb = f->b_far.kind = kb;
    f->a_far.fd = a[0];
    f->a.fd = a[1];
    f->b.fd = b[0];
    f->b_far.fd = b[1];
    f->max_in_up = INT64_MIN;
    f->env.buf = f->buf;
    f->env.splice = mode;
    f->own_pool = pool == NULL;
    f->env.pipes = pool != NULL ? pool : sg_pipe_pool_new(8, 2);
    if (f->env.pipes == NULL)
        return -ENOMEM;
    if ((f->ep = epoll_create1(EPOLL_CLOEXEC)) < 0)
        return -errno;
    if ((err = fx_add(f, f->a_far.fd, TAG_A_FAR)) < 0 ||
        (err = fx_add(f, f->a.fd, TAG_A_NEAR)) < 0 ||
        (err = fx_add(f, f->b.fd, TAG_B_NEAR)) < 0 ||
        (err = fx_add(f, f->b_far.fd, TAG_B_FAR)) < 0)
        return err;
    *out = f;
    return 0;
}

/* Releases the pumps and closes everything. Returns the pipes still in use
 * in the fixture's own pool once both pumps are released (0 unless a pipe
 * leaked). */
static unsigned fx_close(struct fx *f)
{
    sg_pump_release(&f->up, f->env.pipes);
    sg_pump_release(&f->down, f->env.pipes);
    unsigned used = sg_pipe_pool_in_use(f->env.pipes);
    if (f->own_pool)
        sg_pipe_pool_free(f->env.pipes);
    int fds[] = {f->a_far.fd, f->a.fd, f->b.fd, f->b_far.fd, f->ep};
    for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++)
        if (fds[i] >= 0)
            close(fds[i]);
    return f->own_pool ? used : 0;
}

static void pump_up(struct fx *f)
{
    sg_pump_init(&f->up, f->a.fd, &f->a.ready, f->b.fd, &f->b.ready);
}

static void pump_down(struct fx *f)
{
    sg_pump_init(&f->down, f->b.fd, &f->b.ready, f->a.fd, &f->a.ready);
}

/* A pump starts with a run, as connection.c's start_splicing() ends with
 * one; later runs only follow events. */
static void start_up(struct fx *f)
{
    f->up_on = true;
    fx_run(f);
}

static void start_down(struct fx *f)
{
    f->down_on = true;
    fx_run(f);
}

static const char *mode_name(enum sg_splice_mode mode)
{
    return mode == SG_SPLICE_OFF ? "copy" : mode == SG_SPLICE_ALWAYS ? "splice" : "auto";
}

#define OPEN_POOL_OR_SKIP(f, ka, kb, mode, pool)                                                   \
    do {                                                                                           \
        int rc_ = fx_open(&(f), ka, kb, mode, pool);                                               \
        if (rc_ == 1) {                                                                            \
            fprintf(stderr, "  skipped %s -> %s: no such loopback\n", kind_name[ka],               \
                    kind_name[kb]);                                                                \
            return;                                                                                \
        }                                                                                          \
        if (rc_ != 0)                                                                              \
            FAIL_("fixture %s -> %s (%s): %s", kind_name[ka], kind_name[kb], mode_name(mode),      \
                  strerror(-rc_));                                                                 \
    } while (0)

#define OPEN_OR_SKIP(f, ka, kb, mode) OPEN_POOL_OR_SKIP(f, ka, kb, mode, NULL)

/* The usual start: the fixture, and <up> running. */
#define OPEN_UP(f, ka, kb, mode)                                                                   \
    do {                                                                                           \
        OPEN_OR_SKIP(f, ka, kb, mode);                                                             \
        pump_up(f);                                                                                \
        start_up(f);                                                                               \
    } while (0)

/* The fixture with both directions running. */
#define OPEN_BOTH(f, k, mode)                                                                      \
    do {                                                                                           \
        OPEN_OR_SKIP(f, k, k, mode);                                                               \
        pump_up(f);                                                                                \
        pump_down(f);                                                                              \
        start_up(f);                                                                               \
        start_down(f);                                                                             \
    } while (0)

/* A test case that is <helper> run with the arguments that follow. */
#define TEST_WITH(name, helper, ...)                                                               \
    TEST(name)                                                                                     \
    {                                                                                              \
        helper(test_failed_, __VA_ARGS__);                                                         \
    }

/* The same case copying and splicing: <name>_copy and <name>_splice. */
#define TEST_BOTH(name, helper, ...)                                                               \
    TEST_WITH(name##_copy, helper, SG_SPLICE_OFF, __VA_ARGS__)                                     \
    TEST_WITH(name##_splice, helper, SG_SPLICE_ALWAYS, __VA_ARGS__)
#define TB(name) T(name##_copy), T(name##_splice)

/* What <pe> received is a prefix of what it expected: no byte differs. */
#define CHECK_EXACT(pe)                                                                            \
    do {                                                                                           \
        if ((pe)->rx_bad)                                                                          \
            FAIL_("%s: byte %zu of %zu differs or is extra", #pe, (pe)->rx_bad_at, (pe)->rx_len);  \
    } while (0)

/* The whole of <len> bytes reached the far end <far>, then the FIN, and
 * <pump> (up or down) ended cleanly, once. */
#define CHECK_ARRIVED(f, far, pump, len)                                                           \
    do {                                                                                           \
        RUN_UNTIL(f, ((f)->far.rx_eof && (f)->pump##_finished) || (f)->far.rx_err ||               \
                         (f)->far.rx_bad);                                                         \
        CHECK_EXACT(&(f)->far);                                                                    \
        CHECK_EQ((f)->far.rx_err, 0);                                                              \
        CHECK_EQ((f)->far.rx_got, len);                                                            \
        CHECK((f)->far.rx_eof);                                                                    \
        CHECK_EQ((f)->pump##_finished, 1);                                                         \
        CHECK_EQ((f)->pump.error, 0);                                                              \
    } while (0)

#define CHECK_ALL_ARRIVED(f, len) CHECK_ARRIVED(f, b_far, up, len)

/* The pump holds nothing any more: no heap copy, no pipe. */
#define CHECK_HOLDS_NOTHING(p)                                                                     \
    do {                                                                                           \
        CHECK(!sg_pump_holds_bytes(p));                                                            \
        CHECK((p)->pending == NULL);                                                               \
        CHECK((p)->pipe == NULL);                                                                  \
    } while (0)

#define CLOSE_AND_FREE(f)                                                                          \
    do {                                                                                           \
        CHECK_EQ(fx_close(f), 0);                                                                  \
        free(f);                                                                                   \
    } while (0)

/* ---- 1. bytes pass byte-exact ---------------------------------------------- */

/* 8 MiB, then the FIN passed on as shutdown(SHUT_WR). Splicing, every byte
 * went by splice(2) and the pipe went back; copying, none did. */
static void pass_through(bool *test_failed_, enum sg_splice_mode mode, enum kind ka, enum kind kb)
{
    struct fx *f;
    OPEN_OR_SKIP(f, ka, kb, mode);
    pump_up(f);
    peer_recv(&f->b_far, pattern, PATTERN_LEN);
    peer_send(&f->a_far, pattern, PATTERN_LEN, true);
    start_up(f);
    CHECK_ALL_ARRIVED(f, PATTERN_LEN);
    CHECK_EQ(f->up.bytes, PATTERN_LEN);
    CHECK(f->up.eof);
    CHECK_HOLDS_NOTHING(&f->up);
    CHECK_EQ(sg_pipe_pool_in_use(f->env.pipes), 0);
    if (mode == SG_SPLICE_AUTO) {
        /* the first SG_SPLICE_AFTER bytes at least are copied, then splice */
        CHECK_INT(f->up.spliced, >, 0);
        CHECK_INT(f->up.bytes - f->up.spliced, >=, SG_SPLICE_AFTER);
        CHECK_INT(f->up.bytes - f->up.spliced, <, SG_SPLICE_AFTER + SG_PUMP_READ_MAX);
    } else if (expect_splice(mode, ka)) {
        CHECK_EQ(f->up.spliced, f->up.bytes);
        CHECK_INT(f->max_pipes, <=, 1); /* one pump, one pipe at most */
    } else {
        CHECK_EQ(f->up.spliced, 0);
        CHECK_EQ(f->max_pipes, 0);
    }
    CHECK_INT(f->max_in_up, <=, SG_PUMP_READ_MAX);
    CHECK(f->events > 0);
    CLOSE_AND_FREE(f);
}

/* One run reads SG_PUMP_RUN_READS times at most, and says there is more:
 * a fast pair of peers cannot hold the loop. Needs socket buffers bigger
 * than the bound (SO_SNDBUFFORCE: root); skipped where they cannot be had. */
TEST(a_run_stops_at_its_bound)
{
    int a[2], b[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, a) == 0);
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, b) == 0);
    int big = 8 << 20, got = 0;
    socklen_t len = sizeof(got);
    setsockopt(a[0], SOL_SOCKET, SO_SNDBUFFORCE, &big, sizeof(big));
    setsockopt(b[0], SOL_SOCKET, SO_SNDBUFFORCE, &big, sizeof(big));
    getsockopt(a[0], SOL_SOCKET, SO_SNDBUF, &got, &len);
    const size_t n = 3u << 20, bound = (size_t)SG_PUMP_RUN_READS * SG_PUMP_READ_MAX;
    size_t sent = 0;
    while ((size_t)got >= 2 * n && sent < n) {
        ssize_t w = send(a[0], pattern + sent, n - sent, 0);
        if (w <= 0)
            break;
        sent += (size_t)w;
    }
    if (sent < n) {
        fprintf(stderr, "  skipped: socket buffers of %d bytes cannot hold %zu\n", got, n);
    } else {
        struct sg_ready rf = {.can_read = true}, rt = {.can_write = true};
        struct sg_pump p;
        static uint8_t buf[SG_PUMP_READ_MAX];
        struct sg_pump_env env = {.buf = buf, .pipes = NULL, .splice = SG_SPLICE_OFF};
        sg_pump_init(&p, a[1], &rf, b[0], &rt);
        CHECK(!sg_pump_run(&p, &env));
        CHECK(p.more);
        CHECK_EQ(p.bytes, bound);
        CHECK(rf.can_read); /* the socket still holds bytes */
        CHECK(!sg_pump_run(&p, &env));
        CHECK_EQ(p.bytes, 2 * bound);
        for (int i = 0; i < 8 && p.more; i++)
            sg_pump_run(&p, &env);
        CHECK(!p.more);
        CHECK_EQ(p.bytes, n);
        sg_pump_release(&p, NULL);
    }
    close(a[0]);
    close(a[1]);
    close(b[0]);
    close(b[1]);
}

TEST_BOTH(bytes_pass_unix, pass_through, K_UNIX, K_UNIX)
TEST_BOTH(bytes_pass_tcp4, pass_through, K_TCP4, K_TCP4)
TEST_BOTH(bytes_pass_tcp6, pass_through, K_TCP6, K_TCP6)
TEST_BOTH(bytes_pass_unix_to_tcp4, pass_through, K_UNIX, K_TCP4)
TEST_BOTH(bytes_pass_tcp4_to_unix, pass_through, K_TCP4, K_UNIX)
TEST_WITH(bytes_pass_tcp4_auto, pass_through, SG_SPLICE_AUTO, K_TCP4, K_TCP4)

/* The sender writes in small pieces and then waits, without a FIN. Each
 * piece is a buffer of its own in the kernel, so one splice(2) fills the
 * pipe's 16 slots with much less than SG_PUMP_READ_MAX while more waits in
 * the socket: a short splice must not be taken for an empty socket, or the
 * tail stays there until the peer sends again (it never does here). */
static void small_writes(bool *test_failed_, enum sg_splice_mode mode, enum kind k)
{
    const size_t n = 256 * 1024;
    struct fx *f;
    OPEN_OR_SKIP(f, k, k, mode);
    if (k != K_UNIX) {
        int one = 1;
        setsockopt(f->a_far.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    pump_up(f);
    peer_recv(&f->b_far, pattern, n);
    f->a_far.tx_chunk = 100;
    peer_send(&f->a_far, pattern, n, false);
    start_up(f);
    RUN_UNTIL(f, f->b_far.rx_got >= n || f->b_far.rx_bad || f->b_far.rx_err || f->up_finished);
    CHECK_EXACT(&f->b_far);
    CHECK_EQ(f->b_far.rx_got, n);
    CHECK_EQ(f->up_finished, 0);
    CHECK_EQ(f->up.bytes, n);
    CHECK_EQ(f->up.spliced, expect_splice(mode, k) ? n : 0);
    CLOSE_AND_FREE(f);
}

TEST_BOTH(small_writes_unix, small_writes, K_UNIX)
TEST_BOTH(small_writes_tcp4, small_writes, K_TCP4)

/* ---- 2. backpressure ------------------------------------------------------ */

/* The receiver does not read: the pump must stop with at most one read's
 * worth of bytes inside it (a heap copy copying, one pipe splicing), and
 * the sender must be held back. Then everything arrives. */
static void backpressure(bool *test_failed_, enum sg_splice_mode mode, enum kind k)
{
    struct fx *f;
    OPEN_UP(f, k, k, mode);
    peer_send(&f->a_far, pattern, PATTERN_LEN, true);
    if (!up_stalled(f))
        FAIL_("the pump never stalled under backpressure");
    CHECK_EQ(f->up_finished, 0);
    uint64_t held = f->up.bytes;
    CHECK(sg_pump_holds_bytes(&f->up));
    CHECK(!f->b.ready.can_write);
    if (expect_splice(mode, k)) {
        CHECK(f->up.pending == NULL);
        CHECK(f->up.pipe != NULL);
        CHECK_INT(f->up.in_pipe, >, 0);
        CHECK_INT(f->up.in_pipe, <=, SG_PUMP_READ_MAX);
        CHECK_EQ(sg_pipe_pool_in_use(f->env.pipes), 1);
    } else {
        CHECK(f->up.pending != NULL);
        CHECK(f->up.pipe == NULL);
        CHECK_INT(f->up.pending_len, >, 0);
        CHECK_INT(f->up.pending_len, <=, SG_PUMP_READ_MAX);
        CHECK_EQ(sg_pipe_pool_in_use(f->env.pipes), 0);
    }
    if (k == K_UNIX) {
        /* AF_UNIX buffers never grow: the stall is for good. (TCP may yet
         * take a few bytes when the receiver's queue is collapsed.) */
        run_for(f, 100);
        CHECK_EQ(f->up.bytes, held);
    }
    CHECK_INT(f->a_far.tx_done, <, PATTERN_LEN); /* so the sender is held back */
    CHECK_EQ(f->b_far.rx_got, 0);
    int64_t outside = fd_inq(f->b_far.fd) + fd_outq(f->b.fd, k);
    CHECK_INT((int64_t)f->up.bytes - outside, <=, SG_PUMP_READ_MAX);
    CHECK_INT(f->max_in_up, <=, SG_PUMP_READ_MAX);

    peer_recv(&f->b_far, pattern, PATTERN_LEN);
    CHECK_ALL_ARRIVED(f, PATTERN_LEN);
    CHECK_EQ(f->up.bytes, PATTERN_LEN);
    CHECK_EQ(f->up.spliced, expect_splice(mode, k) ? PATTERN_LEN : 0);
    CHECK_INT(f->max_in_up, <=, SG_PUMP_READ_MAX);
    CHECK_INT(f->max_pipes, <=, 1);
    CHECK_HOLDS_NOTHING(&f->up);
    CHECK_EQ(sg_pipe_pool_in_use(f->env.pipes), 0);
    CLOSE_AND_FREE(f);
}

TEST_BOTH(backpressure_unix, backpressure, K_UNIX)
TEST_BOTH(backpressure_tcp4, backpressure, K_TCP4)
TEST_BOTH(backpressure_tcp6, backpressure, K_TCP6)

/* ---- 3. half-close ------------------------------------------------------- */

/* EOF on <from> becomes a FIN on <to> after the last byte, and the other
 * direction goes on: the far end that got the FIN still sends, and its FIN
 * is passed on in turn. */
static void half_close(bool *test_failed_, enum sg_splice_mode mode, enum kind k)
{
    const size_t n = 1024 * 1024;
    struct fx *f;
    OPEN_BOTH(f, k, mode);
    peer_recv(&f->b_far, pattern, n);
    peer_recv(&f->a_far, pattern + n, n);
    peer_send(&f->a_far, pattern, n, true);
    CHECK_ARRIVED(f, b_far, up, n);
    CHECK_EQ(f->down_finished, 0);
    CHECK_EQ(f->a_far.rx_got, 0);
    CHECK(!f->a_far.rx_eof);

    peer_send(&f->b_far, pattern + n, n, true);
    CHECK_ARRIVED(f, a_far, down, n);
    CHECK_EQ(f->down.bytes, n);
    CHECK_EQ(f->down.spliced, expect_splice(mode, k) ? n : 0);
    CHECK_EQ(f->b_far.tx_err, 0);
    CHECK_EQ(f->up_finished, 1);
    CHECK_EQ(sg_pipe_pool_in_use(f->env.pipes), 0);
    CLOSE_AND_FREE(f);
}

TEST_BOTH(half_close_unix, half_close, K_UNIX)
TEST_BOTH(half_close_tcp4, half_close, K_TCP4)
TEST_BOTH(half_close_tcp6, half_close, K_TCP6)

/* ---- 4. other_done and sg_pump_eof() ----------------------------------- */

/* Once the other direction is over, EOF finishes the pump with error 0 and
 * no shutdown: the owner closes both sockets next. */
static void other_done(bool *test_failed_, enum sg_splice_mode mode, enum kind k)
{
    const size_t n = 1024 * 1024;
    struct fx *f;
    OPEN_BOTH(f, k, mode);
    f->link = true;
    peer_recv(&f->a_far, pattern, 100000);
    peer_send(&f->b_far, pattern, 100000, true);
    CHECK_ARRIVED(f, a_far, down, 100000);
    CHECK(f->up.other_done);

    peer_recv(&f->b_far, pattern, n);
    peer_send(&f->a_far, pattern, n, true);
    RUN_UNTIL(f, f->up_finished || f->b_far.rx_err || f->b_far.rx_bad || f->b_far.rx_eof);
    CHECK_EQ(f->up_finished, 1);
    CHECK_EQ(f->up.error, 0);
    RUN_UNTIL(f, f->b_far.rx_got == n || f->b_far.rx_eof || f->b_far.rx_bad);
    run_for(f, 100); /* a FIN, if one was sent, has arrived by now */
    CHECK_EXACT(&f->b_far);
    CHECK_EQ(f->b_far.rx_got, n);
    CHECK(!f->b_far.rx_eof);
    CHECK_EQ(f->b_far.rx_err, 0);
    char c;
    errno = 0;
    CHECK_INT(recv(f->b_far.fd, &c, 1, MSG_PEEK | MSG_DONTWAIT), ==, -1);
    CHECK(errno == EAGAIN || errno == EWOULDBLOCK);
    CHECK_EQ(f->up_finished, 1);
    CHECK_EQ(f->down_finished, 1);
    CLOSE_AND_FREE(f);
}

TEST_BOTH(other_done_tcp4, other_done, K_TCP4)
TEST_BOTH(other_done_unix, other_done, K_UNIX)

/* <from> ended before the pump started: the EOF is passed on at the first
 * run, as a shutdown, or as nothing when the other direction is over. */
static void eof_before_start(bool *test_failed_, enum sg_splice_mode mode, enum kind k)
{
    struct fx *f;
    OPEN_OR_SKIP(f, k, k, mode);
    pump_up(f);
    peer_recv(&f->b_far, pattern, 0);
    sg_pump_eof(&f->up);
    CHECK_EQ(f->up_finished, 0);
    start_up(f);
    CHECK_EQ(f->up_finished, 1); /* nothing to wait for */
    CHECK_EQ(f->up.error, 0);
    RUN_UNTIL(f, f->b_far.rx_eof || f->b_far.rx_err || f->b_far.rx_got);
    CHECK_EQ(f->b_far.rx_got, 0);
    CHECK_EQ(f->up.bytes, 0);

    pump_down(f);
    f->down.other_done = true;
    peer_recv(&f->a_far, pattern, 0);
    sg_pump_eof(&f->down);
    start_down(f);
    CHECK_EQ(f->down_finished, 1);
    CHECK_EQ(f->down.error, 0);
    run_for(f, 50);
    CHECK(!f->a_far.rx_eof);
    CHECK_EQ(f->a_far.rx_got, 0);
    CLOSE_AND_FREE(f);
}

TEST_BOTH(eof_before_start_tcp4, eof_before_start, K_TCP4)
TEST_BOTH(eof_before_start_unix, eof_before_start, K_UNIX)

/* ---- 5. error attribution ---------------------------------------------------- */

/* The receiver resets while bytes flow: the next write to <to> fails, and
 * that is <to>'s failure. */
static void receiver_resets(bool *test_failed_, enum sg_splice_mode mode, enum kind ka,
                            enum kind kb)
{
    struct fx *f;
    OPEN_UP(f, ka, kb, mode);
    f->b_far.reset_after = 256 * 1024;
    peer_recv(&f->b_far, pattern, PATTERN_LEN);
    peer_send(&f->a_far, pattern, PATTERN_LEN, false);
    RUN_UNTIL(f, f->up_finished);
    CHECK_EXACT(&f->b_far);
    CHECK_EQ(f->b_far.fd, -1); /* it did reset */
    CHECK_INT(f->up.error, <, 0);
    CHECK_EQ(f->up.failed, SG_PUMP_TO);
    CHECK(!f->up.eof);
    CHECK_EQ(f->up.spliced, expect_splice(mode, ka) ? f->up.bytes : 0);
    run_for(f, 20);
    CHECK_EQ(f->up_finished, 1); /* it stays finished */
    CLOSE_AND_FREE(f);
}

TEST_BOTH(error_receiver_reset_is_to_unix_tcp4, receiver_resets, K_UNIX, K_TCP4)
TEST_BOTH(error_receiver_reset_is_to_tcp6, receiver_resets, K_TCP6, K_TCP6)
TEST_BOTH(error_receiver_reset_is_to_tcp4_unix, receiver_resets, K_TCP4, K_UNIX)

/* The receiver resets while nothing flows, then <from> ends: passing the
 * EOF on fails (ENOTCONN), and that is <to>'s failure. */
static void shutdown_after_receiver_reset(bool *test_failed_, enum sg_splice_mode mode,
                                          enum kind k)
{
    struct fx *f;
    OPEN_UP(f, K_UNIX, k, mode);
    peer_reset(&f->b_far);
    run_for(f, 20);
    CHECK_EQ(f->up_finished, 0);
    peer_send(&f->a_far, pattern, 0, true);
    RUN_UNTIL(f, f->up_finished);
    CHECK_INT(f->up.error, <, 0);
    CHECK_EQ(f->up.failed, SG_PUMP_TO);
    CHECK(f->up.eof);
    CLOSE_AND_FREE(f);
}

TEST_BOTH(error_shutdown_after_receiver_reset_is_to, shutdown_after_receiver_reset, K_TCP4)

/* The sender resets while the pump waits to read: <from>'s failure, and
 * the reset is never passed on as a clean end. */
static void sender_resets(bool *test_failed_, enum sg_splice_mode mode, enum kind kb)
{
    struct fx *f;
    OPEN_UP(f, K_TCP4, kb, mode);
    peer_recv(&f->b_far, pattern, PATTERN_LEN);
    peer_send(&f->a_far, pattern, 65536, false);
    RUN_UNTIL(f, f->b_far.rx_got == 65536 || f->b_far.rx_bad || f->up_finished);
    CHECK_EQ(f->up_finished, 0);
    peer_reset(&f->a_far);
    RUN_UNTIL(f, f->up_finished);
    CHECK_INT(f->up.error, <, 0);
    CHECK_EQ(f->up.failed, SG_PUMP_FROM);
    run_for(f, 50);
    CHECK(!f->b_far.rx_eof);
    CHECK_EXACT(&f->b_far);
    CHECK_EQ(f->b_far.rx_got, 65536);
    CLOSE_AND_FREE(f);
}

TEST_BOTH(error_sender_reset_is_from_unix, sender_resets, K_UNIX)
TEST_BOTH(error_sender_reset_is_from_tcp4, sender_resets, K_TCP4)

/* The sender's bytes are all in <from>'s receive queue, then it resets
 * (<fin>: false) or sends its FIN and then resets (true), all before the pump
 * reads. A reset before the FIN may have lost bytes: <from> failed, and no FIN
 * goes to <to>. After the FIN every byte has arrived: Linux reads the queued
 * bytes and then 0 (the FIN came first), so it is a clean end. */
static void sender_resets_before_read(bool *test_failed_, enum sg_splice_mode mode, bool fin)
{
    const size_t n = 32 * 1024; /* fits <from>'s receive buffer */
    struct fx *f;
    OPEN_OR_SKIP(f, K_TCP4, K_TCP4, mode);
    pump_up(f);
    peer_send(&f->a_far, pattern, n, fin);
    RUN_UNTIL(f, (f->a_far.tx_done == n && (!fin || f->a_far.tx_shut) &&
                  fd_outq(f->a_far.fd, K_TCP4) == 0) ||
                     f->a_far.tx_err);
    CHECK_EQ(fd_inq(f->a.fd), n);
    peer_reset(&f->a_far);
    run_for(f, 20);
    peer_recv(&f->b_far, pattern, n);
    start_up(f);
    RUN_UNTIL(f, f->up_finished);
    run_for(f, 50);
    CHECK_EXACT(&f->b_far);
    CHECK_EQ(f->b_far.rx_got, n);
    CHECK_EQ(f->up.bytes, n);
    if (fin) {
        CHECK_EQ(f->up.error, 0);
        CHECK(f->up.eof);
        CHECK(f->b_far.rx_eof);
    } else {
        CHECK_INT(f->up.error, <, 0);
        CHECK_EQ(f->up.failed, SG_PUMP_FROM);
        CHECK(!f->b_far.rx_eof);
    }
    CLOSE_AND_FREE(f);
}

TEST_BOTH(error_sender_reset_with_bytes_queued_is_from, sender_resets_before_read, false)
TEST_BOTH(sender_reset_after_fin_is_eof, sender_resets_before_read, true)

/* A client that sent its FIN and then resets while the other direction
 * still writes to it: that write fails as <to>'s, and the EOF the other
 * pump read is there for the owner to see (connection.c counts this as a
 * peer that simply finished). */
static void reset_after_own_fin(bool *test_failed_, enum sg_splice_mode mode, enum kind k)
{
    struct fx *f;
    OPEN_BOTH(f, k, mode);
    peer_recv(&f->b_far, pattern, 1000);
    peer_send(&f->a_far, pattern, 1000, true);
    RUN_UNTIL(f, f->up_finished && f->b_far.rx_eof);
    CHECK_EQ(f->up.error, 0);
    f->a_far.reset_after = 256 * 1024;
    peer_recv(&f->a_far, pattern, PATTERN_LEN);
    peer_send(&f->b_far, pattern, PATTERN_LEN, true);
    RUN_UNTIL(f, f->down_finished);
    CHECK_EXACT(&f->a_far);
    CHECK_INT(f->down.error, <, 0);
    CHECK_EQ(f->down.failed, SG_PUMP_TO);
    CHECK(f->up.eof);
    CLOSE_AND_FREE(f);
}

TEST_BOTH(reset_after_own_fin_tcp4, reset_after_own_fin, K_TCP4)

/* The receiver stops reading, the pump holds bytes, then the receiver goes
 * away: writing them fails, and that is <to>'s failure. */
static void pending_write_fails(bool *test_failed_, enum sg_splice_mode mode, enum kind kb)
{
    struct fx *f;
    OPEN_UP(f, K_UNIX, kb, mode);
    peer_send(&f->a_far, pattern, PATTERN_LEN, false);
    if (!up_stalled(f))
        FAIL_("the pump never stalled under backpressure");
    CHECK(expect_splice(mode, K_UNIX) ? f->up.in_pipe > 0 : f->up.pending != NULL);
    CHECK_EQ(f->up_finished, 0);
    peer_reset(&f->b_far);
    RUN_UNTIL(f, f->up_finished);
    CHECK_INT(f->up.error, <, 0);
    CHECK_EQ(f->up.failed, SG_PUMP_TO);
    sg_pump_release(&f->up, f->env.pipes);
    CHECK_HOLDS_NOTHING(&f->up);
    CHECK_EQ(sg_pipe_pool_in_use(f->env.pipes), 0);
    CLOSE_AND_FREE(f);
}

TEST_BOTH(error_pending_write_is_to_tcp4, pending_write_fails, K_TCP4)
TEST_BOTH(error_pending_write_is_to_unix, pending_write_fails, K_UNIX)

/* sg_pump_hold(): bytes the owner had (the connection's head) go first,
 * before anything read from <from>, and nothing is read while they wait. */
static void hold_goes_first(bool *test_failed_, enum sg_splice_mode mode, enum kind k)
{
    const size_t head = 1024 * 1024;
    struct fx *f;
    OPEN_OR_SKIP(f, k, k, mode);
    pump_up(f);
    uint8_t *copy = malloc(head);
    CHECK(copy != NULL);
    memcpy(copy, pattern, head);
    sg_pump_hold(&f->up, copy, head);
    CHECK(sg_pump_holds_bytes(&f->up));
    peer_send(&f->a_far, pattern + head, PATTERN_LEN - head, true);
    start_up(f);
    if (!up_stalled(f))
        FAIL_("the pump never stalled on its head");
    CHECK_EQ(f->up.bytes, 0); /* the head is bigger than <to>'s buffers */
    CHECK(f->up.pending == copy);
    CHECK_INT(f->up.pending_len, >, 0);
    peer_recv(&f->b_far, pattern, PATTERN_LEN);
    CHECK_ALL_ARRIVED(f, PATTERN_LEN);
    CHECK_EQ(f->up.bytes, PATTERN_LEN - head);
    CHECK_EQ(f->up.spliced, expect_splice(mode, k) ? PATTERN_LEN - head : 0);
    CHECK_HOLDS_NOTHING(&f->up);
    CLOSE_AND_FREE(f);
}

TEST_BOTH(hold_goes_first_unix, hold_goes_first, K_UNIX)
TEST_BOTH(hold_goes_first_tcp4, hold_goes_first, K_TCP4)

/* The client sent its head and its FIN before the backend was reached: the
 * head, then the FIN, and nothing read. */
static void hold_then_eof(bool *test_failed_, enum sg_splice_mode mode, enum kind k)
{
    const size_t head = 1000;
    struct fx *f;
    OPEN_OR_SKIP(f, k, k, mode);
    pump_up(f);
    uint8_t *copy = malloc(head);
    CHECK(copy != NULL);
    memcpy(copy, pattern, head);
    sg_pump_hold(&f->up, copy, head);
    sg_pump_eof(&f->up);
    peer_recv(&f->b_far, pattern, head);
    start_up(f);
    CHECK_ALL_ARRIVED(f, head);
    CHECK_EQ(f->up.bytes, 0);
    CHECK_HOLDS_NOTHING(&f->up);
    CLOSE_AND_FREE(f);
}

TEST_BOTH(hold_then_eof_tcp4, hold_then_eof, K_TCP4)

/* ---- 6. sg_pump_release() ---------------------------------------------------- */

/* Copying, stalled: the heap copy is freed (ASan's leak check sees it too),
 * and a second release does nothing. */
TEST(release_frees_heap_copy)
{
    struct fx *f;
    OPEN_UP(f, K_UNIX, K_UNIX, SG_SPLICE_OFF);
    peer_send(&f->a_far, pattern, PATTERN_LEN, true);
    if (!up_stalled(f))
        FAIL_("the pump never stalled under backpressure");
    CHECK(f->up.pending != NULL);
    sg_pump_release(&f->up, f->env.pipes);
    CHECK_HOLDS_NOTHING(&f->up);
    CHECK_EQ(f->up.pending_len, 0);
    sg_pump_release(&f->up, f->env.pipes);
    CHECK_HOLDS_NOTHING(&f->up);
    CLOSE_AND_FREE(f);
}

/* Splicing, stalled: the pipe, which still holds bytes, goes back to the
 * pool, which must close it rather than keep it: a second fixture on the
 * same pool then passes its bytes exactly (a reused pipe would hand it the
 * first one's bytes first). */
static void release_gives_pipe_back(bool *test_failed_, enum kind k)
{
    struct sg_pipe_pool *pool = sg_pipe_pool_new(4, 4);
    CHECK(pool != NULL);
    struct fx *f;
    OPEN_POOL_OR_SKIP(f, k, k, SG_SPLICE_ALWAYS, pool);
    pump_up(f);
    start_up(f);
    peer_send(&f->a_far, pattern, PATTERN_LEN, true);
    if (!up_stalled(f))
        FAIL_("the pump never stalled under backpressure");
    CHECK(f->up.pipe != NULL);
    CHECK_INT(f->up.in_pipe, >, 0);
    CHECK_EQ(sg_pipe_pool_in_use(pool), 1);
    sg_pump_release(&f->up, pool);
    CHECK_EQ(sg_pipe_pool_in_use(pool), 0);
    CHECK_HOLDS_NOTHING(&f->up);
    CHECK_EQ(f->up.in_pipe, 0);
    sg_pump_release(&f->up, pool);
    CHECK_EQ(sg_pipe_pool_in_use(pool), 0);
    CLOSE_AND_FREE(f);

    const size_t n = 1024 * 1024;
    OPEN_POOL_OR_SKIP(f, k, k, SG_SPLICE_ALWAYS, pool);
    pump_up(f);
    peer_recv(&f->b_far, pattern + 12345, n);
    peer_send(&f->a_far, pattern + 12345, n, true);
    start_up(f);
    CHECK_ALL_ARRIVED(f, n);
    CHECK_EQ(f->up.spliced, n);
    CHECK_EQ(sg_pipe_pool_in_use(pool), 0);
    CLOSE_AND_FREE(f);
    sg_pipe_pool_free(pool);
}

TEST_WITH(release_gives_pipe_back_unix, release_gives_pipe_back, K_UNIX)
TEST_WITH(release_gives_pipe_back_tcp4, release_gives_pipe_back, K_TCP4)

/* A pump never initialised (all zero), released twice, with a pool or none;
 * and a finished one, which holds nothing. */
TEST(release_zero_and_twice)
{
    struct sg_pipe_pool *pool = sg_pipe_pool_new(1, 1);
    CHECK(pool != NULL);
    struct sg_pump z;
    memset(&z, 0, sizeof(z));
    sg_pump_release(&z, pool);
    sg_pump_release(&z, pool);
    sg_pump_release(&z, NULL);
    CHECK_HOLDS_NOTHING(&z);
    CHECK_EQ(sg_pipe_pool_in_use(pool), 0);
    CHECK_EQ(sg_pipe_pool_in_use(NULL), 0);
    sg_pipe_pool_free(pool);
    sg_pipe_pool_free(NULL);
}

/* ---- 7. the pipe pool ------------------------------------------------------ */

/* One pipe for the loop (sg_pipe_pool_new(1, 0)): <up>, stalled, holds it,
 * so <down> cannot get one and copies, and still moves its bytes exactly.
 * Then <up> drains, spliced to the end. */
static void pool_exhausted(bool *test_failed_, enum kind k)
{
    const size_t n = 1024 * 1024;
    struct sg_pipe_pool *pool = sg_pipe_pool_new(1, 0);
    CHECK(pool != NULL);
    struct fx *f;
    OPEN_POOL_OR_SKIP(f, k, k, SG_SPLICE_ALWAYS, pool);
    if (!expect_splice(SG_SPLICE_ALWAYS, k)) {
        fprintf(stderr, "  skipped: %s does not splice\n", kind_name[k]);
        fx_close(f);
        free(f);
        sg_pipe_pool_free(pool);
        return;
    }
    pump_up(f);
    pump_down(f);
    start_up(f);
    start_down(f);
    peer_send(&f->a_far, pattern, PATTERN_LEN, true);
    if (!up_stalled(f))
        FAIL_("the pump never stalled under backpressure");
    CHECK(f->up.pipe != NULL);
    CHECK_EQ(sg_pipe_pool_in_use(pool), 1);

    peer_recv(&f->a_far, pattern + 777, n);
    peer_send(&f->b_far, pattern + 777, n, true);
    CHECK_ARRIVED(f, a_far, down, n);
    CHECK_EQ(f->down.bytes, n);
    CHECK_EQ(f->down.spliced, 0);
    CHECK_EQ(sg_pipe_pool_in_use(pool), 1);
    CHECK_EQ(f->max_pipes, 1);

    peer_recv(&f->b_far, pattern, PATTERN_LEN);
    CHECK_ALL_ARRIVED(f, PATTERN_LEN);
    CHECK_EQ(f->up.spliced, PATTERN_LEN);
    CHECK_EQ(sg_pipe_pool_in_use(pool), 0);
    CLOSE_AND_FREE(f);
    sg_pipe_pool_free(pool);
}

TEST_WITH(pool_exhausted_copies_unix, pool_exhausted, K_UNIX)
TEST_WITH(pool_exhausted_copies_tcp4, pool_exhausted, K_TCP4)

/* No pool at all (env->pipes NULL): SG_SPLICE_ALWAYS copies. */
TEST(no_pool_copies)
{
    struct fx *f;
    OPEN_OR_SKIP(f, K_TCP4, K_TCP4, SG_SPLICE_ALWAYS);
    sg_pipe_pool_free(f->env.pipes);
    f->env.pipes = NULL;
    f->own_pool = false;
    pump_up(f);
    peer_recv(&f->b_far, pattern, PATTERN_LEN);
    peer_send(&f->a_far, pattern, PATTERN_LEN, true);
    start_up(f);
    CHECK_ALL_ARRIVED(f, PATTERN_LEN);
    CHECK_EQ(f->up.spliced, 0);
    CLOSE_AND_FREE(f);
}

/* ---- 8. readiness ------------------------------------------------------------ */

TEST(ready_note)
{
    struct sg_ready r = {0};
    sg_ready_note(&r, EPOLLIN);
    CHECK(r.can_read && !r.can_write && !r.hup);
    r = (struct sg_ready){0};
    sg_ready_note(&r, EPOLLOUT);
    CHECK(!r.can_read && r.can_write && !r.hup);
    r = (struct sg_ready){0};
    sg_ready_note(&r, EPOLLRDHUP);
    CHECK(r.can_read && !r.can_write && r.hup);
    r = (struct sg_ready){0};
    sg_ready_note(&r, EPOLLHUP);
    CHECK(r.can_read && r.can_write && r.hup);
    r = (struct sg_ready){0};
    sg_ready_note(&r, EPOLLERR);
    CHECK(r.can_read && r.can_write && r.hup);
    /* an event only ever sets: clearing is for whoever gets EAGAIN */
    r = (struct sg_ready){.can_read = true, .can_write = true, .hup = true};
    sg_ready_note(&r, 0);
    CHECK(r.can_read && r.can_write && r.hup);
}

/* A short read emptied the socket, unless its FIN is pending (the next read
 * returns 0, and no further event says so). */
TEST(ready_after_read)
{
    struct sg_ready r = {.can_read = true};
    sg_ready_after_read(&r, 100, 100);
    CHECK(r.can_read);
    sg_ready_after_read(&r, 99, 100);
    CHECK(!r.can_read);
    r = (struct sg_ready){.can_read = true, .hup = true};
    sg_ready_after_read(&r, 1, 100);
    CHECK(r.can_read);
    sg_ready_after_read(&r, 0, 100);
    CHECK(r.can_read);
}

TEST_MAIN(T(a_run_stops_at_its_bound), TB(bytes_pass_unix), TB(bytes_pass_tcp4), TB(bytes_pass_tcp6),
          TB(bytes_pass_unix_to_tcp4), TB(bytes_pass_tcp4_to_unix), T(bytes_pass_tcp4_auto),
          TB(small_writes_unix), TB(small_writes_tcp4), TB(backpressure_unix),
          TB(backpressure_tcp4), TB(backpressure_tcp6), TB(half_close_unix), TB(half_close_tcp4),
          TB(half_close_tcp6), TB(other_done_tcp4), TB(other_done_unix),
          TB(eof_before_start_tcp4), TB(eof_before_start_unix),
          TB(error_receiver_reset_is_to_unix_tcp4), TB(error_receiver_reset_is_to_tcp6),
          TB(error_receiver_reset_is_to_tcp4_unix), TB(error_shutdown_after_receiver_reset_is_to),
          TB(error_sender_reset_is_from_unix), TB(error_sender_reset_is_from_tcp4),
          TB(error_sender_reset_with_bytes_queued_is_from), TB(sender_reset_after_fin_is_eof),
          TB(reset_after_own_fin_tcp4), TB(error_pending_write_is_to_tcp4),
          TB(error_pending_write_is_to_unix), TB(hold_goes_first_unix), TB(hold_goes_first_tcp4),
          TB(hold_then_eof_tcp4), T(release_frees_heap_copy), T(release_gives_pipe_back_unix),
          T(release_gives_pipe_back_tcp4), T(release_zero_and_twice),
          T(pool_exhausted_copies_unix), T(pool_exhausted_copies_tcp4), T(no_pool_copies),
          T(ready_note), T(ready_after_read))
