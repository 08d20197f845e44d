/* hello_load: a closed-loop load generator of short connections, for the
 * hello-close scenarios of bench/compare.
 *
 * Keeps N connections in flight to a loopback address. Each one: a
 * non-blocking connect, the payload file's bytes in one write, then reads
 * until EOF and checks what came back; the time from connect() to EOF goes
 * into a histogram. As soon as one ends the next one starts. It stops after
 * a duration or a count of connections, whichever comes first: never later
 * than the duration (default 10 s).
 * Prints one JSON line:
 *   {"conns":..,"errors":..,"conns_per_s":..,"p50_us":..,"p99_us":..,...}
 *
 * Three other modes:
 *   -r RATE     open loop: a new connection every 1/RATE s (paced by a timerfd),
 *               whatever the earlier ones are doing, at most -c (here up to
 *               4096) in flight. A start that comes more than 1 ms after its
 *               time (the cap was reached, or the loop was late) counts as
 *               late. Latency is connect() to EOF, and also from the start's
 *               scheduled time (p99_sched_us, which includes the lateness).
 *               After the duration, the connections in flight get up to the
 *               timeout to end. Prints p50/p99/p999, errors and late starts.
 *   -H COUNT    hold: opens COUNT connections (at most -c connecting at a
 *               time), sends the payload on each, then keeps them all open,
 *               reading nothing but EOF, until SIGTERM/SIGINT or the duration.
 *               Prints one JSON line ("phase":"held") as soon as every
 *               connection is either sent or failed, and one more at the end
 *               ("phase":"end": how many the peer closed meanwhile).
 *   -B STREAMS  bulk: opens STREAMS connections, sends the payload on each, then
 *               reads whatever comes as fast as it can for the duration
 *               (recv with MSG_TRUNC: the kernel discards the bytes without
 *               copying them) and prints the bytes and bytes/s. A stream that
 *               ends before the duration is an error.
 *
 * usage: hello_load -p PORT -f PAYLOAD (-e BYTES | -b BODY_BYTES | -H COUNT | -B STREAMS)
 *                   [-a 127.0.0.1] [-c 64] [-d SECONDS] [-n COUNT] [-t TIMEOUT_MS] [-r RATE]
 *   -e BYTES       the reply must be exactly BYTES long (TLS: the backend's bytes)
 *   -b BODY_BYTES  the reply must be an HTTP 200 whose body, by Content-Length,
 *                  is BODY_BYTES long, all of it received (HTTP proxies rewrite
 *                  the response head, so its length is not fixed)
 * It raises its descriptor limit (RLIMIT_NOFILE) to the hard limit. Every mode
 * ends by the duration at the latest (rate: plus the timeout to drain).
 * Only loopback addresses are accepted. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNS 4096
#define MAX_PAYLOAD 16384
#define REPLY_MAX 4096  /* the reply is kept for the check; more counts as too long */
#define SUB_BITS 6      /* histogram: 64 sub-buckets per power of two, < 1.6% error */
#define HIST_SIZE ((64 - SUB_BITS + 1) << SUB_BITS)

struct conn {
    int fd;
    int sent;
    size_t got;
    int64_t start_ns;
    int64_t sched_ns;   /* rate mode: when it was due */
    char reply[REPLY_MAX];
};

static struct conn conns[MAX_CONNS];
static uint64_t hist[HIST_SIZE], hist_sched[HIST_SIZE];
static int rate_mode;               /* open loop: ended connections go back on free_slots */
static int free_slots[MAX_CONNS], n_free;
static volatile sig_atomic_t stop;
static char payload[MAX_PAYLOAD];
static size_t payload_len;
static long expect_bytes = -1, expect_body = -1;
static struct sockaddr_storage dst;
static socklen_t dst_len;
static int ep = -1;
static uint64_t n_ok, n_connect_err, n_io_err, n_bad_reply, n_timeout, n_bytes;

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static unsigned hist_index(uint64_t v)
{
    if (v < (1u << SUB_BITS))
        return (unsigned)v;
    unsigned e = 63u - (unsigned)__builtin_clzll(v);          /* v in [2^e, 2^(e+1)) */
    unsigned sub = (unsigned)(v >> (e - SUB_BITS)) & ((1u << SUB_BITS) - 1);
    return ((e - SUB_BITS + 1) << SUB_BITS) + sub;
}

static uint64_t hist_value(unsigned i)   /* the lower edge of bucket i */
{
    if (i < (1u << SUB_BITS))
        return i;
    unsigned e = (i >> SUB_BITS) + SUB_BITS - 1, sub = i & ((1u << SUB_BITS) - 1);
    return ((uint64_t)1 << e) + ((uint64_t)sub << (e - SUB_BITS));
}

static double percentile_of(const uint64_t *h, double p)
{
    uint64_t total = 0, seen = 0;
    for (unsigned i = 0; i < HIST_SIZE; i++)
        total += h[i];
    if (total == 0)
        return 0;
    uint64_t rank = (uint64_t)(p / 100.0 * (double)total);
    if (rank >= total)
        rank = total - 1;
    for (unsigned i = 0; i < HIST_SIZE; i++) {
        seen += h[i];
        if (seen > rank)   /* middle of the bucket */
            return (double)(hist_value(i) + hist_value(i + 1)) / 2.0;
    }
    return 0;
}

static double percentile(double p)
{
    return percentile_of(hist, p);
}

/* an HTTP 200 with a Content-Length of expect_body, head and body all received */
static int http_reply_ok(const char *r, size_t n)
{
    if (n < 12 || memcmp(r, "HTTP/1.", 7) != 0 || memcmp(r + 8, " 200", 4) != 0)
        return 0;
    const char *end = memmem(r, n, "\r\n\r\n", 4);
    if (!end)
        return 0;
    size_t head = (size_t)(end - r) + 4;
    long cl = -1;
    for (const char *line = memchr(r, '\n', head); line && line < end; line = memchr(line, '\n', (size_t)(end - line))) {
        line++;
        if ((size_t)(end - line) > 15 && strncasecmp(line, "content-length:", 15) == 0)
            cl = strtol(line + 15, NULL, 10);
    }
    return cl == expect_body && n == head + (size_t)cl;
}

static void finish(struct conn *c, int64_t t, int ok_eof)
{
    if (ok_eof) {
        int ok = expect_bytes >= 0 ? c->got == (size_t)expect_bytes
                                   : (c->got <= REPLY_MAX && http_reply_ok(c->reply, c->got));
        if (ok) {
            n_ok++;
            int64_t us = (t - c->start_ns) / 1000;
            hist[hist_index(us > 0 ? (uint64_t)us : 0)]++;
            if (rate_mode) {
                int64_t sus = (t - c->sched_ns) / 1000;
                hist_sched[hist_index(sus > 0 ? (uint64_t)sus : 0)]++;
            }
        } else {
            n_bad_reply++;
        }
    }
    n_bytes += c->got;
    close(c->fd);
    c->fd = -1;
    if (rate_mode)
        free_slots[n_free++] = (int)(c - conns);
}

static void open_conn(struct conn *c)
{
    c->sent = 0;
    c->got = 0;
    c->start_ns = now_ns();
    c->fd = socket(dst.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        perror("hello_load: socket");
        exit(1);
    }
    if (connect(c->fd, (struct sockaddr *)&dst, dst_len) != 0 && errno != EINPROGRESS) {
        n_connect_err++;
        close(c->fd);
        c->fd = -1;
        if (rate_mode)
            free_slots[n_free++] = (int)(c - conns);
        return;
    }
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = c};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) != 0) {
        perror("hello_load: epoll_ctl");
        exit(1);
    }
}

static void on_event(struct conn *c, uint32_t events, int64_t t)
{
    if (!c->sent) {
        if (events & EPOLLERR) {
            n_connect_err++;
            finish(c, t, 0);
            return;
        }
        ssize_t w = send(c->fd, payload, payload_len, MSG_NOSIGNAL);
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;   /* not connected yet: EPOLLOUT comes */
        if (w < 0) {
            if (errno == ECONNREFUSED)
                n_connect_err++;
            else
                n_io_err++;
            finish(c, t, 0);
            return;
        }
        if ((size_t)w != payload_len) {   /* a few hundred bytes always fit */
            n_io_err++;
            finish(c, t, 0);
            return;
        }
        c->sent = 1;
    }
    for (;;) {
        char *buf = c->got < REPLY_MAX ? c->reply + c->got : c->reply;
        size_t room = c->got < REPLY_MAX ? REPLY_MAX - c->got : REPLY_MAX;
        ssize_t r = recv(c->fd, buf, room, 0);
        if (r > 0) {
            c->got += (size_t)r;
            continue;
        }
        if (r == 0) {
            finish(c, t, 1);
            return;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return;
        if (errno == EINTR)
            continue;
        n_io_err++;
        finish(c, t, 0);
        return;
    }
}

/* epoll_wait, EINTR as no event; any other error ends the program */
static int wait_events(struct epoll_event *evs, int max, int timeout_ms)
{
    int n = epoll_wait(ep, evs, max, timeout_ms);
    if (n < 0 && errno != EINTR) {
        perror("epoll_wait");
        exit(1);
    }
    return n < 0 ? 0 : n;
}

/* conns[0..n) that have taken longer than timeout_ns end as timeouts */
static void expire(long n, int64_t t, int64_t timeout_ns)
{
    for (long i = 0; i < n; i++)
        if (conns[i].fd >= 0 && t - conns[i].start_ns > timeout_ns) {
            n_timeout++;
            finish(&conns[i], t, 0);
        }
}

static void on_stop(int sig)
{
    (void)sig;
    stop = 1;
}

static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static int new_socket(void)
{
    int fd = socket(dst.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        perror("hello_load: socket");
        exit(1);
    }
    if (connect(fd, (struct sockaddr *)&dst, dst_len) != 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    return fd;
}

/* the payload in one write: 1 sent, 0 not connected yet, -1 failed */
static int send_payload(int fd, uint32_t events)
{
    if (events & EPOLLERR)
        return -1;
    ssize_t w = send(fd, payload, payload_len, MSG_NOSIGNAL);
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return 0;
    return w == (ssize_t)payload_len ? 1 : -1;
}

/* ---- open loop (-r) ---------------------------------------------------- */

static int run_rate(double rate, long cap, double duration, int64_t timeout_ns, uint64_t max_count)
{
    rate_mode = 1;
    for (long i = cap - 1; i >= 0; i--) {
        conns[i].fd = -1;
        free_slots[n_free++] = (int)i;
    }
    int64_t period = (int64_t)(1e9 / rate);
    if (period < 1000)
        period = 1000;
    int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (tfd < 0) {
        perror("timerfd_create");
        return 1;
    }
    struct itimerspec its = {.it_interval = {period / 1000000000, period % 1000000000},
                             .it_value = {period / 1000000000, period % 1000000000}};
    timerfd_settime(tfd, 0, &its, NULL);
    static int timer_tag;
    struct epoll_event tev = {.events = EPOLLIN, .data.ptr = &timer_tag};
    epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &tev);

    const int64_t late_ns = 1000000;
    int64_t t0 = now_ns(), deadline = t0 + (int64_t)(duration * 1e9), drain_end = deadline + timeout_ns;
    int64_t t = t0, last_scan = t0, max_late = 0;
    uint64_t started = 0, late = 0;
    struct epoll_event evs[256];
    for (;;) {
        /* start every connection that is due, as far as the cap allows */
        for (;;) {
            int64_t sched = t0 + (int64_t)started * period;
            if (sched > t || sched >= deadline || (max_count && started >= max_count))
                break;
            if (n_free == 0)
                break;   /* the cap: it starts, late, when one ends */
            struct conn *c = &conns[free_slots[--n_free]];
            open_conn(c);
            c->sched_ns = sched;
            int64_t behind = c->start_ns - sched;
            if (behind > late_ns)
                late++;
            if (behind > max_late)
                max_late = behind;
            started++;
        }
        if (t >= drain_end || stop || (t >= deadline && n_free == cap) ||
            (max_count && started >= max_count && n_free == cap))
            break;
        int n = wait_events(evs, 256, 50);
        t = now_ns();
        for (int i = 0; i < n; i++) {
            if (evs[i].data.ptr == &timer_tag) {
                uint64_t ticks;
                if (read(tfd, &ticks, sizeof ticks) < 0 && errno != EAGAIN)
                    perror("timerfd read");
                continue;
            }
            struct conn *c = evs[i].data.ptr;
            if (c->fd >= 0)
                on_event(c, evs[i].events, t);
        }
        if (t - last_scan > 20000000) {
            last_scan = t;
            expire(cap, t, timeout_ns);
        }
    }
    long unfinished = 0;
    for (long i = 0; i < cap; i++)
        if (conns[i].fd >= 0) {
            close(conns[i].fd);
            unfinished++;
        }
    int64_t due = (deadline - t0 + period - 1) / period;
    uint64_t missed = max_count ? 0 : (due > (int64_t)started ? (uint64_t)due - started : 0);
    double secs = (double)(deadline < t ? deadline - t0 : t - t0) / 1e9;
    uint64_t errors = n_connect_err + n_io_err + n_bad_reply + n_timeout + (uint64_t)unfinished;
    printf("{\"mode\":\"rate\",\"rate\":%.1f,\"conns\":%llu,\"started\":%llu,\"errors\":%llu,"
           "\"conns_per_s\":%.1f,\"p50_us\":%.1f,\"p99_us\":%.1f,\"p999_us\":%.1f,\"p99_sched_us\":%.1f,"
           "\"late\":%llu,\"missed\":%llu,\"max_late_us\":%.1f,\"duration_s\":%.3f,\"err_connect\":%llu,"
           "\"err_io\":%llu,\"err_reply\":%llu,\"err_timeout\":%llu,\"unfinished\":%ld,\"bytes\":%llu,"
           "\"inflight_cap\":%ld,\"payload_bytes\":%zu}\n",
           rate, (unsigned long long)n_ok, (unsigned long long)started, (unsigned long long)errors,
           secs > 0 ? (double)n_ok / secs : 0.0, percentile(50), percentile(99), percentile(99.9),
           percentile_of(hist_sched, 99), (unsigned long long)late, (unsigned long long)missed,
           (double)max_late / 1000, secs, (unsigned long long)n_connect_err, (unsigned long long)n_io_err,
           (unsigned long long)n_bad_reply, (unsigned long long)n_timeout, unfinished,
           (unsigned long long)n_bytes, cap, payload_len);
    close(tfd);
    return 0;
}

/* ---- hold (-H) ---------------------------------------------------------- */

struct held {
    int fd;
    int state;   /* 0 connecting or not sent yet, 1 sent and held, 2 over */
    int64_t start_ns;
};

static int run_hold(long count, long cap, double duration, int64_t timeout_ns)
{
    struct held *h = calloc((size_t)count, sizeof *h);
    if (!h) {
        perror("calloc");
        return 1;
    }
    int64_t t0 = now_ns(), deadline = t0 + (int64_t)(duration * 1e9), t = t0, last_scan = t0;
    int64_t all_sent_ns = 0;
    long started = 0, pending = 0, held = 0, lost = 0, err_connect = 0, err_io = 0, err_timeout = 0;
    uint64_t unexpected = 0;
    int reported = 0;
    struct epoll_event evs[256];
    while (!stop && t < deadline) {
        while (started < count && pending < cap) {
            struct held *c = &h[started++];
            c->start_ns = now_ns();
            c->fd = new_socket();
            if (c->fd < 0) {
                err_connect++;
                c->state = 2;
                continue;
            }
            struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = c};
            if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) != 0) {
                perror("hello_load: epoll_ctl");
                exit(1);
            }
            pending++;
        }
        if (!reported && started == count && pending == 0) {
            all_sent_ns = t;
            printf("{\"mode\":\"hold\",\"phase\":\"held\",\"count\":%ld,\"held\":%ld,\"errors\":%ld,"
                   "\"err_connect\":%ld,\"err_io\":%ld,\"err_timeout\":%ld,\"lost\":%ld,\"connect_s\":%.3f}\n",
                   count, held, err_connect + err_io + err_timeout + lost, err_connect, err_io, err_timeout,
                   lost, (double)(t - t0) / 1e9);
            fflush(stdout);
            reported = 1;
        }
        int n = wait_events(evs, 256, 100);
        t = now_ns();
        for (int i = 0; i < n; i++) {
            struct held *c = evs[i].data.ptr;
            if (c->state == 0) {
                int r = send_payload(c->fd, evs[i].events);
                if (r == 0)
                    continue;
                pending--;
                if (r < 0) {
                    if (evs[i].events & EPOLLERR)
                        err_connect++;
                    else
                        err_io++;
                    close(c->fd);
                    c->state = 2;
                    continue;
                }
                c->state = 1;
                held++;
            }
            if (c->state == 1 && (evs[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))) {
                for (int k = 0; k < 16; k++) {
                    char buf[4096];
                    ssize_t r = recv(c->fd, buf, sizeof buf, 0);
                    if (r > 0) {
                        unexpected += (uint64_t)r;   /* nobody should answer */
                        continue;
                    }
                    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                        break;
                    if (r < 0 && errno == EINTR)
                        continue;
                    close(c->fd);   /* EOF or an error: the peer let go */
                    c->state = 2;
                    held--;
                    lost++;
                    break;
                }
            }
        }
        if (t - last_scan > 100000000) {
            last_scan = t;
            for (long i = 0; i < started; i++)
                if (h[i].state == 0 && t - h[i].start_ns > timeout_ns) {
                    close(h[i].fd);
                    h[i].state = 2;
                    pending--;
                    err_timeout++;
                }
        }
    }
    for (long i = 0; i < started; i++)
        if (h[i].state < 2)
            close(h[i].fd);
    printf("{\"mode\":\"hold\",\"phase\":\"end\",\"count\":%ld,\"held\":%ld,\"errors\":%ld,\"err_connect\":%ld,"
           "\"err_io\":%ld,\"err_timeout\":%ld,\"lost\":%ld,\"unexpected_bytes\":%llu,\"all_sent\":%s,"
           "\"connect_s\":%.3f,\"held_s\":%.3f}\n",
           count, held, err_connect + err_io + err_timeout + lost + (count - started), err_connect, err_io,
           err_timeout, lost, (unsigned long long)unexpected, reported ? "true" : "false",
           reported ? (double)(all_sent_ns - t0) / 1e9 : 0.0,
           reported ? (double)(t - all_sent_ns) / 1e9 : 0.0);
    free(h);
    return 0;
}

/* ---- bulk (-B) ---------------------------------------------------------- */

static char sink[4 << 20];   /* never written: MSG_TRUNC discards in the kernel */

static int run_bulk(long streams, double duration, int64_t timeout_ns)
{
    struct held *s = calloc((size_t)streams, sizeof *s);
    uint64_t *got = calloc((size_t)streams, sizeof *got);
    if (!s || !got) {
        perror("calloc");
        return 1;
    }
    long errors = 0, ended = 0, err_connect = 0, err_io = 0, err_timeout = 0;
    int64_t t0 = now_ns(), deadline = t0 + (int64_t)(duration * 1e9), t = t0, first_byte = 0;
    for (long i = 0; i < streams; i++) {
        s[i].start_ns = t0;
        if ((s[i].fd = new_socket()) < 0) {
            err_connect++;
            s[i].state = 2;
            continue;
        }
        /* level-triggered: the bounded read loop below may stop before EAGAIN */
        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP, .data.u64 = (uint64_t)i};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, s[i].fd, &ev) != 0) {
            perror("hello_load: epoll_ctl");
            exit(1);
        }
    }
    struct epoll_event evs[256];
    while (!stop && t < deadline) {
        int64_t left_ms = (deadline - t) / 1000000 + 1;
        int n = wait_events(evs, 256, left_ms < 100 ? (int)left_ms : 100);
        t = now_ns();
        for (int i = 0; i < n; i++) {
            long k = (long)evs[i].data.u64;
            struct held *c = &s[k];
            if (c->state == 2)
                continue;
            if (c->state == 0) {
                int r = send_payload(c->fd, evs[i].events);
                if (r == 0)
                    continue;
                if (r < 0) {
                    err_connect++;
                    close(c->fd);
                    c->state = 2;
                    continue;
                }
                c->state = 1;
                struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.u64 = (uint64_t)k};
                epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
            }
            for (int j = 0; j < 8; j++) {
                ssize_t r = recv(c->fd, sink, sizeof sink, MSG_TRUNC | MSG_DONTWAIT);
                if (r > 0) {
                    if (!first_byte)
                        first_byte = t;
                    got[k] += (uint64_t)r;
                    continue;
                }
                if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
                    break;
                if (r == 0)
                    ended++;   /* the stream ended before the duration */
                else
                    err_io++;
                close(c->fd);
                c->state = 2;
                break;
            }
        }
        for (long i = 0; i < streams; i++)
            if (s[i].state == 0 && t - s[i].start_ns > timeout_ns) {
                err_timeout++;
                close(s[i].fd);
                s[i].state = 2;
            }
    }
    int64_t end = t < deadline ? t : deadline;
    uint64_t total = 0, lo = UINT64_MAX, hi = 0;
    for (long i = 0; i < streams; i++) {
        if (s[i].state < 2)
            close(s[i].fd);
        total += got[i];
        lo = got[i] < lo ? got[i] : lo;
        hi = got[i] > hi ? got[i] : hi;
    }
    errors = err_connect + err_io + err_timeout + ended;
    double secs = (double)(end - t0) / 1e9;
    printf("{\"mode\":\"bulk\",\"streams\":%ld,\"bytes\":%llu,\"duration_s\":%.3f,\"bytes_per_s\":%.1f,"
           "\"gbit_per_s\":%.3f,\"errors\":%ld,\"err_connect\":%ld,\"err_io\":%ld,\"err_timeout\":%ld,"
           "\"ended_early\":%ld,\"stream_min_bytes\":%llu,\"stream_max_bytes\":%llu,\"first_byte_ms\":%.3f,"
           "\"stopped\":%s}\n",
           streams, (unsigned long long)total, secs, secs > 0 ? (double)total / secs : 0.0,
           secs > 0 ? (double)total * 8 / secs / 1e9 : 0.0, errors, err_connect, err_io, err_timeout, ended,
           (unsigned long long)lo, (unsigned long long)hi, first_byte ? (double)(first_byte - t0) / 1e6 : -1.0,
           stop ? "true" : "false");
    free(s);
    free(got);
    return 0;
}

static void usage(void)
{
    fprintf(stderr, "usage: hello_load -p PORT -f PAYLOAD (-e BYTES | -b BODY_BYTES | -H COUNT | -B STREAMS) "
                    "[-a 127.0.0.1] [-c 64] [-d SECONDS] [-n COUNT] [-t TIMEOUT_MS] [-r RATE]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *addr = "127.0.0.1", *file = NULL;
    long port = 0, inflight = 64, timeout_ms = 5000;
    double duration = 10;
    uint64_t max_count = 0;
    long hold_count = 0, bulk_streams = 0;
    double rate = 0;
    int opt;
    while ((opt = getopt(argc, argv, "a:p:f:e:b:c:d:n:t:r:H:B:")) != -1) {
        switch (opt) {
        case 'a': addr = optarg; break;
        case 'p': port = strtol(optarg, NULL, 10); break;
        case 'f': file = optarg; break;
        case 'e': expect_bytes = strtol(optarg, NULL, 10); break;
        case 'b': expect_body = strtol(optarg, NULL, 10); break;
        case 'c': inflight = strtol(optarg, NULL, 10); break;
        case 'd': duration = strtod(optarg, NULL); break;
        case 'n': max_count = strtoull(optarg, NULL, 10); break;
        case 't': timeout_ms = strtol(optarg, NULL, 10); break;
        case 'r': rate = strtod(optarg, NULL); break;
        case 'H': hold_count = strtol(optarg, NULL, 10); break;
        case 'B': bulk_streams = strtol(optarg, NULL, 10); break;
        default: usage();
        }
    }
    int special = (hold_count != 0) + (bulk_streams != 0);
    if (!file || port < 1 || port > 65535 || special > 1 ||
        (!special && (expect_bytes < 0) == (expect_body < 0)) || (special && rate != 0) ||
        inflight < 1 || inflight > MAX_CONNS || !(duration > 0 && duration <= 3600) ||
        timeout_ms < 1 || timeout_ms > 600000 || rate < 0 || rate > 1e6 ||
        hold_count < 0 || hold_count > 1000000 || bulk_streams < 0 || bulk_streams > 1024)
        usage();
    raise_nofile();
    struct sigaction sa = {.sa_handler = on_stop};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    memset(&dst, 0, sizeof dst);
    struct sockaddr_in *s4 = (struct sockaddr_in *)&dst;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&dst;
    if (inet_pton(AF_INET, addr, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)port);
        dst_len = sizeof *s4;
        if ((ntohl(s4->sin_addr.s_addr) >> 24) != 127) {
            fprintf(stderr, "hello_load: %s is not a loopback address\n", addr);
            return 2;
        }
    } else if (inet_pton(AF_INET6, addr, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)port);
        dst_len = sizeof *s6;
        if (!IN6_IS_ADDR_LOOPBACK(&s6->sin6_addr)) {
            fprintf(stderr, "hello_load: %s is not a loopback address\n", addr);
            return 2;
        }
    } else {
        fprintf(stderr, "hello_load: %s is not an IP address\n", addr);
        return 2;
    }

    FILE *f = fopen(file, "rb");
    if (!f) {
        perror(file);
        return 1;
    }
    payload_len = fread(payload, 1, sizeof payload, f);
    int too_big = fgetc(f) != EOF;
    fclose(f);
    if (payload_len == 0 || too_big) {
        fprintf(stderr, "hello_load: %s: empty or larger than %d bytes\n", file, MAX_PAYLOAD);
        return 1;
    }

    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) {
        perror("epoll_create1");
        return 1;
    }
    if (hold_count)
        return run_hold(hold_count, inflight, duration, timeout_ms * 1000000LL);
    if (bulk_streams)
        return run_bulk(bulk_streams, duration, timeout_ms * 1000000LL);
    if (rate > 0)
        return run_rate(rate, inflight, duration, timeout_ms * 1000000LL, max_count);
    int64_t t0 = now_ns(), deadline = t0 + (int64_t)(duration * 1e9), timeout_ns = timeout_ms * 1000000LL;
    uint64_t started = 0;
    for (long i = 0; i < inflight; i++) {
        conns[i].fd = -1;
        if (!max_count || started < max_count) {
            open_conn(&conns[i]);
            started++;
        }
    }
    struct epoll_event evs[256];
    int64_t t = t0, last_scan = t0, end = t0;
    for (;;) {
        int active = 0;
        for (long i = 0; i < inflight; i++)
            active += conns[i].fd >= 0;
        if (t >= deadline || stop || (max_count && active == 0 && started >= max_count)) {
            end = t < deadline ? t : deadline;
            break;
        }
        int n = wait_events(evs, 256, 50);
        t = now_ns();
        for (int i = 0; i < n; i++)
            on_event(evs[i].data.ptr, evs[i].events, t);
        if (t - last_scan > 50000000) {   /* per-connection timeouts, 20 times a second */
            last_scan = t;
            expire(inflight, t, timeout_ns);
        }
        /* the next connection for every one that ended (closed loop) */
        for (long i = 0; i < inflight; i++)
            if (conns[i].fd < 0 && t < deadline && (!max_count || started < max_count)) {
                open_conn(&conns[i]);
                started++;
            }
    }
    /* connections still in flight at the end are neither counted nor errors */
    long unfinished = 0;
    for (long i = 0; i < inflight; i++)
        if (conns[i].fd >= 0) {
            close(conns[i].fd);
            unfinished++;
        }
    double secs = (double)(end - t0) / 1e9;
    uint64_t errors = n_connect_err + n_io_err + n_bad_reply + n_timeout;
    printf("{\"conns\":%llu,\"errors\":%llu,\"conns_per_s\":%.1f,\"p50_us\":%.1f,\"p99_us\":%.1f,"
           "\"duration_s\":%.3f,\"err_connect\":%llu,\"err_io\":%llu,\"err_reply\":%llu,"
           "\"err_timeout\":%llu,\"unfinished\":%ld,\"bytes\":%llu,\"inflight\":%ld,\"payload_bytes\":%zu}\n",
           (unsigned long long)n_ok, (unsigned long long)errors, secs > 0 ? (double)n_ok / secs : 0.0,
           percentile(50), percentile(99), secs, (unsigned long long)n_connect_err,
           (unsigned long long)n_io_err, (unsigned long long)n_bad_reply, (unsigned long long)n_timeout,
           unfinished, (unsigned long long)n_bytes, inflight, payload_len);
    close(ep);
    return 0;
}
