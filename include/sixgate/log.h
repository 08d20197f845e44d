/* Diagnostic logging (text lines on stderr) and the access log (one JSON
 * line per connection). One struct sg_logger is owned by the server and
 * passed by pointer to whoever logs: there is no global logger. */
#ifndef SIXGATE_LOG_H
#define SIXGATE_LOG_H

#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum sg_log_level { SG_LOG_ERROR, SG_LOG_WARN, SG_LOG_INFO, SG_LOG_DEBUG };

struct sg_logger {
    atomic_int level;     /* enum sg_log_level; changed by reloads */
    int fd;               /* diagnostics: normally 2 */
    atomic_int access_fd; /* access log, or -1 when off */
    atomic_bool access_socket; /* access_fd is a socket: written with MSG_DONTWAIT */
    _Atomic uint64_t access_dropped; /* access-log lines the reader was too slow for */
};

void sg_logger_init(struct sg_logger *lg, int fd);

/* Writes "TIME LEVEL: message\n" with a single write(2), so lines from
 * several threads never mix. Messages longer than 4 KiB are cut. */
void sg_log(struct sg_logger *lg, enum sg_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void sg_vlog(struct sg_logger *lg, enum sg_log_level level, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

static inline bool sg_log_enabled(struct sg_logger *lg, enum sg_log_level level)
{
    return (int)level <= atomic_load_explicit(&lg->level, memory_order_relaxed);
}

#define sg_log_err(lg, ...) sg_log((lg), SG_LOG_ERROR, __VA_ARGS__)
#define sg_log_warn(lg, ...) sg_log((lg), SG_LOG_WARN, __VA_ARGS__)
#define sg_log_info(lg, ...) sg_log((lg), SG_LOG_INFO, __VA_ARGS__)
#define sg_log_debug(lg, ...)                                                                      \
    do {                                                                                           \
        if (sg_log_enabled((lg), SG_LOG_DEBUG))                                                    \
            sg_log((lg), SG_LOG_DEBUG, __VA_ARGS__);                                               \
    } while (0)

/* Writes whole access-log lines (each with its "\n") without ever waiting
 * for a slow reader: in pieces of whole lines of at most PIPE_BUF bytes,
 * which a pipe or a local stream socket takes whole or not at all; what a
 * full pipe or socket does not take is dropped and counted in
 * access_dropped, so no worker stalls behind a slow journald or disk
 * reader and no line is ever cut. (A regular file is written as usual.) */
void sg_log_access(struct sg_logger *lg, const char *lines, size_t len);

/* Formats the current UTC time as "2026-11-28T06:29:40.123Z" into <buf>
 * (at least 32 bytes). */
void sg_log_time(char *buf, size_t cap);

#endif
