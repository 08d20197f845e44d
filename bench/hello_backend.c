/* hello_backend: the backend of the hello-close scenarios of bench/compare.
 *
 * Accepts on a loopback address, reads what the client sends until it has
 * the whole request -- a TLS record (the ClientHello: 5 + its length bytes)
 * when the first byte is 0x16, else an HTTP head (up to the empty line) --
 * then writes exactly 100 bytes and closes. To TLS: 100 bytes of filler. To
 * HTTP: a complete "HTTP/1.1 200 OK" response with Content-Length and
 * Connection: close, 100 bytes in all. Reading the whole request first
 * matters: closing with unread bytes would send a reset instead of a FIN.
 *
 * Two other modes, for the idle-rss and bulk scenarios:
 *   -H  hold: read the request, then keep reading (and discarding) and never
 *       write or close; a connection ends only when the peer closes it.
 *   -B  bulk: once the request is whole, write a fixed pattern as fast as the
 *       socket takes it, until the peer closes.
 * With -s FILE it keeps FILE up to date (at most 10 times a second, written
 * to FILE.tmp and renamed) with one JSON line of its counters, among them
 * "held": connections whose request arrived whole and that are still open.
 *
 * One thread, epoll, non-blocking sockets, no logging. It raises its
 * descriptor limit (RLIMIT_NOFILE) to the hard limit. It exits on SIGTERM
 * or SIGINT, when its parent exits, or after its lifetime (-T, default 1 h).
 * On exit it prints one JSON line with what it did.
 *
 * usage: hello_backend -p PORT [-a ::1] [-a 127.0.0.1] [-T SECONDS] [-H | -B] [-s FILE] */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define REPLY_BYTES 100
#define MAX_FD 65536
#define HEAD_MAX 8192   /* an HTTP head longer than this is answered when the buffer is full */
#define MAX_LISTEN 4
#define BULK_CHUNK (256 * 1024)

enum mode { MODE_REPLY, MODE_HOLD, MODE_BULK };

struct peer {
    int open;
    int whole;   /* the request has arrived (hold and bulk modes) */
    size_t got;
    char buf[HEAD_MAX];
};

static struct peer *peers[MAX_FD];
static char reply_tls[REPLY_BYTES], reply_http[REPLY_BYTES + 1];
static char *bulk_buf;
static enum mode mode = MODE_REPLY;
static volatile sig_atomic_t stop;
static uint64_t n_accepted, n_answered, n_dropped, n_held, n_peer_closed, n_bulk_bytes;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

static void make_replies(void)
{
    const char *head = "HTTP/1.1 200 OK\r\nContent-Length: 42\r\nConnection: close\r\n\r\n";  /* 58 bytes */
    const char *body = "sixgate-bench hello";
    size_t h = strlen(head);
    memset(reply_http, 'x', REPLY_BYTES);
    memcpy(reply_http, head, h);
    memcpy(reply_http + h, body, strlen(body));
    reply_http[REPLY_BYTES - 1] = '\n';
    memset(reply_tls, 'x', REPLY_BYTES);
    memcpy(reply_tls, "sixgate-bench hello tls", 23);
    if (h + 42 != REPLY_BYTES) {
        fprintf(stderr, "hello_backend: reply is not %d bytes\n", REPLY_BYTES);
        exit(1);
    }
}

/* 1: the request is complete (or the buffer is full), 0: more to come */
static int complete(const struct peer *p)
{
    if (p->got >= HEAD_MAX)
        return 1;
    if (p->got >= 1 && (unsigned char)p->buf[0] == 0x16) {
        if (p->got < 5)
            return 0;
        size_t len = ((size_t)(unsigned char)p->buf[3] << 8) | (unsigned char)p->buf[4];
        return p->got >= 5 + len;
    }
    return memmem(p->buf, p->got, "\r\n\r\n", 4) != NULL;
}

static void drop(int fd)
{
    close(fd);
    if (peers[fd]->whole)
        n_held--;
    peers[fd]->open = 0;
    peers[fd]->whole = 0;
    peers[fd]->got = 0;
}

/* hold and bulk modes: read (the request, then anything more, discarded) until
 * EAGAIN; 0 when the connection ended and was dropped */
static int read_on(int fd)
{
    struct peer *p = peers[fd];
    for (int k = 0; k < 64; k++) {   /* bounded; what is left comes as a new event (EPOLLRDHUP, or more bytes) */
        char sink[4096];
        size_t room = p->got < HEAD_MAX ? HEAD_MAX - p->got : 0;
        ssize_t r = room ? recv(fd, p->buf + p->got, room, 0) : recv(fd, sink, sizeof sink, 0);
        if (r > 0) {
            if (room)
                p->got += (size_t)r;
            if (!p->whole && complete(p)) {
                p->whole = 1;
                n_held++;
            }
            continue;
        }
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 1;
        goto ended;   /* EOF or an error */
    }
    return 1;   /* a client that keeps sending: the bound, not an end */
ended:
    if (p->whole)
        n_peer_closed++;
    else
        n_dropped++;
    drop(fd);
    return 0;
}

/* bulk mode: once the request is whole, write until the socket is full */
static void bulk(int fd, uint32_t events)
{
    if ((events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) && !read_on(fd))
        return;
    if (!peers[fd]->whole)
        return;
    for (int k = 0; k < 1024; k++) {   /* bounded: the socket buffer fills long before */
        ssize_t w = send(fd, bulk_buf, BULK_CHUNK, MSG_NOSIGNAL);
        if (w > 0) {
            n_bulk_bytes += (uint64_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;   /* EPOLLOUT comes */
        n_peer_closed++;
        drop(fd);
        return;
    }
}

/* read what there is; answer and close once the request is whole */
static void serve(int fd, uint32_t events)
{
    struct peer *p = peers[fd];
    if (!p || !p->open)
        return;   /* a stale event of a connection closed in the same batch */
    if (mode == MODE_HOLD) {
        read_on(fd);
        return;
    }
    if (mode == MODE_BULK) {
        bulk(fd, events);
        return;
    }
    for (;;) {
        size_t room = p->got < HEAD_MAX ? HEAD_MAX - p->got : 0;
        char sink[4096];
        ssize_t r = room ? recv(fd, p->buf + p->got, room, 0) : recv(fd, sink, sizeof sink, 0);
        if (r > 0) {
            if (room)
                p->got += (size_t)r;
            if (complete(p))
                break;   /* no read that would only say EAGAIN */
            continue;
        }
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && !complete(p))
            return;   /* wait for the rest */
        if (r == 0 && !complete(p)) {
            n_dropped++;   /* the client left before its request was whole */
            drop(fd);
            return;
        }
        if (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
            n_dropped++;
            drop(fd);
            return;
        }
        break;
    }
    int tls = (unsigned char)p->buf[0] == 0x16;
    ssize_t w = send(fd, tls ? reply_tls : reply_http, REPLY_BYTES, MSG_NOSIGNAL);
    if (w == REPLY_BYTES)
        n_answered++;
    else
        n_dropped++;
    drop(fd);
}

static int listen_on(const char *addr, long port)
{
    struct sockaddr_storage ss;
    socklen_t len;
    memset(&ss, 0, sizeof ss);
    struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, addr, &s4->sin_addr) == 1 && (ntohl(s4->sin_addr.s_addr) >> 24) == 127) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)port);
        len = sizeof *s4;
    } else if (inet_pton(AF_INET6, addr, &s6->sin6_addr) == 1 && IN6_IS_ADDR_LOOPBACK(&s6->sin6_addr)) {
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)port);
        len = sizeof *s6;
    } else {
        fprintf(stderr, "hello_backend: %s is not a loopback IP address\n", addr);
        exit(2);
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        (ss.ss_family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) != 0) ||
        bind(fd, (struct sockaddr *)&ss, len) != 0 || listen(fd, 4096) != 0) {
        fprintf(stderr, "hello_backend: listen on %s port %ld: %s\n", addr, port, strerror(errno));
        exit(1);
    }
    return fd;
}

static void write_status(const char *path)
{
    char tmp[4096], line[512];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
        return;
    int n = snprintf(line, sizeof line,
                     "{\"accepted\":%llu,\"answered\":%llu,\"dropped\":%llu,\"held\":%llu,"
                     "\"peer_closed\":%llu,\"bulk_bytes\":%llu}\n",
                     (unsigned long long)n_accepted, (unsigned long long)n_answered,
                     (unsigned long long)n_dropped, (unsigned long long)n_held,
                     (unsigned long long)n_peer_closed, (unsigned long long)n_bulk_bytes);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return;
    int ok = fwrite(line, 1, (size_t)n, f) == (size_t)n;
    if (fclose(f) == 0 && ok)
        rename(tmp, path);
}

static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

#define USAGE "usage: hello_backend -p PORT [-a ::1] [-a 127.0.0.1] [-T SECONDS] [-H | -B] [-s FILE]\n"

int main(int argc, char **argv)
{
    const char *addrs[MAX_LISTEN], *status = NULL;
    int n_addrs = 0, opt;
    long port = 0;
    double lifetime = 3600;
    while ((opt = getopt(argc, argv, "a:p:T:HBs:")) != -1) {
        switch (opt) {
        case 'a':
            if (n_addrs < MAX_LISTEN)
                addrs[n_addrs++] = optarg;
            break;
        case 'p': port = strtol(optarg, NULL, 10); break;
        case 'T': lifetime = strtod(optarg, NULL); break;
        case 'H': mode = MODE_HOLD; break;
        case 'B': mode = MODE_BULK; break;
        case 's': status = optarg; break;
        default:
            fprintf(stderr, USAGE);
            return 2;
        }
    }
    if (port < 1 || port > 65535 || !(lifetime > 0 && lifetime <= 7 * 86400)) {
        fprintf(stderr, USAGE);
        return 2;
    }
    raise_nofile();
    if (mode == MODE_BULK) {
        if (!(bulk_buf = malloc(BULK_CHUNK))) {
            perror("malloc");
            return 1;
        }
        for (size_t i = 0; i < BULK_CHUNK; i++)   /* a fixed pattern, not compressible to zeros */
            bulk_buf[i] = (char)('a' + (i * 7 + i / 251) % 26);
    }
    if (n_addrs == 0)
        addrs[n_addrs++] = "::1";
    pid_t parent = getppid();
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent)
        return 0;
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    make_replies();

    int ep = epoll_create1(EPOLL_CLOEXEC), lfd[MAX_LISTEN];
    if (ep < 0) {
        perror("epoll_create1");
        return 1;
    }
    for (int i = 0; i < n_addrs; i++) {
        lfd[i] = listen_on(addrs[i], port);
        struct epoll_event ev = {.events = EPOLLIN, .data.u64 = (uint64_t)1 << 32 | (uint32_t)lfd[i]};
        epoll_ctl(ep, EPOLL_CTL_ADD, lfd[i], &ev);
    }
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    struct epoll_event evs[256];
    uint64_t last_sig = UINT64_MAX;
    double last_status = -1;
    while (!stop) {
        clock_gettime(CLOCK_MONOTONIC, &t);
        double elapsed = (double)(t.tv_sec - t0.tv_sec) + (double)(t.tv_nsec - t0.tv_nsec) / 1e9;
        if (elapsed > lifetime)
            break;
        uint64_t sig = n_accepted * 31 + n_held * 7 + n_dropped * 3 + n_peer_closed + n_answered * 13;
        if (status && (last_status < 0 || (sig != last_sig && elapsed - last_status >= 0.1) ||
                       elapsed - last_status >= 1)) {
            write_status(status);
            last_sig = sig;
            last_status = elapsed;
        }
        int n = epoll_wait(ep, evs, 256, status ? 100 : 500);
        if (n < 0 && errno != EINTR) {
            perror("epoll_wait");
            return 1;
        }
        for (int i = 0; i < n; i++) {
            int fd = (int)(uint32_t)evs[i].data.u64;
            if (!(evs[i].data.u64 >> 32)) {
                serve(fd, evs[i].events);
                continue;
            }
            for (int k = 0; k < 256; k++) {   /* accept what is queued, a bounded batch */
                int c = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (c < 0)
                    break;
                if (c >= MAX_FD) {
                    close(c);
                    n_dropped++;
                    continue;
                }
                n_accepted++;
                if (!peers[c] && !(peers[c] = malloc(sizeof *peers[c]))) {
                    close(c);
                    n_dropped++;
                    continue;
                }
                peers[c]->got = 0;
                peers[c]->whole = 0;
                peers[c]->open = 1;
                /* edge-triggered: adding reports the request at once if it is already
                 * there; serve() reads until EAGAIN */
                uint32_t out = mode == MODE_BULK ? EPOLLOUT : 0;
                struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | EPOLLET | out, .data.u64 = (uint32_t)c};
                if (epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev) != 0) {
                    drop(c);
                    n_dropped++;
                }
            }
        }
    }
    if (status)
        write_status(status);
    printf("{\"accepted\":%llu,\"answered\":%llu,\"dropped\":%llu,\"held\":%llu,\"peer_closed\":%llu,"
           "\"bulk_bytes\":%llu}\n", (unsigned long long)n_accepted, (unsigned long long)n_answered,
           (unsigned long long)n_dropped, (unsigned long long)n_held, (unsigned long long)n_peer_closed,
           (unsigned long long)n_bulk_bytes);
    return 0;
}
