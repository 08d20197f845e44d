#include "sixgate/log.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void sg_logger_init(struct sg_logger *lg, int fd)
{
    atomic_init(&lg->level, SG_LOG_INFO);
    lg->fd = fd;
    atomic_init(&lg->access_fd, -1);
    atomic_init(&lg->access_dropped, 0);
    atomic_init(&lg->access_socket, false);
}

void sg_log_time(char *buf, size_t cap)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    snprintf(buf, cap, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ts.tv_nsec / 1000000) % 1000);
}

/* Writes all of <buf>; a log line is worth a retry on EINTR, nothing more. */
static void write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return;
        buf += n;
        len -= (size_t)n;
    }
}

void sg_vlog(struct sg_logger *lg, enum sg_log_level level, const char *fmt, va_list ap)
{
    if (!sg_log_enabled(lg, level))
        return;
    char line[4096];
    char now[40];
    sg_log_time(now, sizeof(now));
    int n = snprintf(line, sizeof(line), "%s %s: ", now, level_names[level]);
    if (n < 0)
        return;
    int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    if (m < 0)
        return;
    size_t len = (size_t)n + (size_t)m;
    if (len > sizeof(line) - 2)
        len = sizeof(line) - 2;
    line[len++] = '\n';
    write_all(lg->fd, line, len);
}

void sg_log(struct sg_logger *lg, enum sg_log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sg_vlog(lg, level, fmt, ap);
    va_end(ap);
}

static void count_dropped(struct sg_logger *lg, uint64_t n)
{
    atomic_fetch_add_explicit(&lg->access_dropped, n, memory_order_relaxed);
}

static uint64_t count_lines(const char *p, size_t len)
{
    uint64_t n = 0;
    for (const char *e = p + len; (p = memchr(p, '\n', (size_t)(e - p))) != NULL; p++)
        n++;
    return n;
}

/* One piece: send() without waiting on a socket, write() on anything else
 * (the server opens a pipe non-blocking). Returns false when it was not
 * taken, now or ever (the rest is then dropped). */
static bool write_piece(int fd, bool is_socket, const char *p, size_t len)
{
    for (;;) {
        ssize_t n = is_socket ? send(fd, p, len, MSG_DONTWAIT | MSG_NOSIGNAL) : write(fd, p, len);
        if (n < 0 && errno == ENOTSOCK) { /* a reload switched it a moment ago */
            is_socket = false;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        p += n; /* a regular file may take less; the rest follows */
        len -= (size_t)n;
        if (len == 0)
            return true;
    }
}

void sg_log_access(struct sg_logger *lg, const char *lines, size_t len)
{
    int fd = atomic_load_explicit(&lg->access_fd, memory_order_relaxed);
    if (fd < 0)
        return;
    bool is_socket = atomic_load_explicit(&lg->access_socket, memory_order_relaxed);
    while (len > 0) {
        /* whole lines, PIPE_BUF bytes at most (a longer line goes alone) */
        size_t piece = 0;
        while (piece < len) {
            const char *nl = memchr(lines + piece, '\n', len - piece);
            size_t next = nl ? (size_t)(nl - lines) + 1 : len;
            if (piece > 0 && next > PIPE_BUF)
                break;
            piece = next;
            if (piece >= PIPE_BUF)
                break;
        }
        if (!write_piece(fd, is_socket, lines, piece)) {
            count_dropped(lg, count_lines(lines, len));
            return;
        }
        lines += piece;
        len -= piece;
    }
}
