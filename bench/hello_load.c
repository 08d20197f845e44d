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
 * usage: hello_load -p PORT -f PAYLOAD (-e BYTES | -b BODY_BYTES)
 *                   [-a 127.0.0.1] [-c 64] [-d SECONDS] [-n COUNT] [-t TIMEOUT_MS]
 *   -e BYTES       the reply must be exactly BYTES long (TLS: the backend's bytes)
 *   -b BODY_BYTES  the reply must be an HTTP 200 whose body, by Content-Length,
 *                  is BODY_BYTES long, all of it received (HTTP proxies rewrite
 *                  the response head, so its length is not fixed)
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
#include <sys/epoll.h>
#include <sys/socket.h>
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
    char reply[REPLY_MAX];
};

static struct conn conns[MAX_CONNS];
static uint64_t hist[HIST_SIZE];
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

static double percentile(double p)
{
    uint64_t total = 0, seen = 0;
    for (unsigned i = 0; i < HIST_SIZE; i++)
        total += hist[i];
    if (total == 0)
        return 0;
    uint64_t rank = (uint64_t)(p / 100.0 * (double)total);
    if (rank >= total)
        rank = total - 1;
    for (unsigned i = 0; i < HIST_SIZE; i++) {
        seen += hist[i];
        if (seen > rank)   /* middle of the bucket */
            return (double)(hist_value(i) + hist_value(i + 1)) / 2.0;
    }
    return 0;
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
        } else {
            n_bad_reply++;
        }
    }
    n_bytes += c->got;
    close(c->fd);
    c->fd = -1;
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

static void usage(void)
{
    fprintf(stderr, "usage: hello_load -p PORT -f PAYLOAD (-e BYTES | -b BODY_BYTES) [-a 127.0.0.1] "
                    "[-c 64] [-d SECONDS] [-n COUNT] [-t TIMEOUT_MS]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *addr = "127.0.0.1", *file = NULL;
    long port = 0, inflight = 64, timeout_ms = 5000;
    double duration = 10;
    uint64_t max_count = 0;
    int opt;
    while ((opt = getopt(argc, argv, "a:p:f:e:b:c:d:n:t:")) != -1) {
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
        default: usage();
        }
    }
    if (!file || port < 1 || port > 65535 || (expect_bytes < 0) == (expect_body < 0) ||
        inflight < 1 || inflight > MAX_CONNS || !(duration > 0 && duration <= 3600) ||
        timeout_ms < 1 || timeout_ms > 600000)
        usage();

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
        if (t >= deadline || (max_count && active == 0 && started >= max_count)) {
            end = t < deadline ? t : deadline;
            break;
        }
        int n = epoll_wait(ep, evs, 256, 50);
        if (n < 0 && errno != EINTR) {
            perror("epoll_wait");
            return 1;
        }
        t = now_ns();
        for (int i = 0; i < n; i++)
            on_event(evs[i].data.ptr, evs[i].events, t);
        if (t - last_scan > 50000000) {   /* per-connection timeouts, 20 times a second */
            last_scan = t;
            for (long i = 0; i < inflight; i++)
                if (conns[i].fd >= 0 && t - conns[i].start_ns > timeout_ns) {
                    n_timeout++;
                    finish(&conns[i], t, 0);
                }
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
