#include "sixgate/access_log.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "sixgate/address.h"
#include "sixgate/json.h"

size_t sg_access_format(const struct sg_access_record *r, const char *time, char *buf,
                        size_t cap)
{
    char addr[SG_ADDR_TEXT_MAX], backend[SG_NAME_MAX + 16];
    struct sg_json j;
    sg_json_begin(&j, buf, cap);
    sg_json_cstr(&j, "time", time);
    sg_json_u64(&j, "conn", r->conn);
    sg_json_cstr(&j, "listener", r->listener->name);
    sg_json_cstr(&j, "protocol", sg_protocol_str(r->listener->protocol));
    if (r->client->sa_family == AF_INET || r->client->sa_family == AF_INET6) {
        sg_json_cstr(&j, "client", sg_sockaddr_format_ip(r->client, false, addr, sizeof(addr)));
        sg_json_u64(&j, "client_port", sg_sockaddr_port(r->client));
    }
    if (r->via != NULL)
        sg_json_cstr(&j, "via", sg_sockaddr_format(r->via, addr, sizeof(addr)));
    sg_json_cstr(&j, "local", sg_sockaddr_format(r->local, addr, sizeof(addr)));
    sg_json_str(&j, "name", r->name, r->name_len);
    if (r->listener->protocol != SG_PROTO_TCP)
        sg_json_cstr(&j, "match", sg_match_str(r->match));
    sg_json_cstr(&j, "route", r->route);
    if (r->backend_addr != NULL)
        sg_json_cstr(&j, "backend", sg_sockaddr_format(r->backend_addr, backend, sizeof(backend)));
    else if (r->backend != NULL)
        sg_json_cstr(&j, "backend",
                     sg_backend_format(r->backend, r->backend_port, backend, sizeof(backend)));
    else
        sg_json_str(&j, "backend", NULL, 0);
    sg_json_u64(&j, "bytes_from_client", r->bytes_from_client);
    sg_json_u64(&j, "bytes_from_backend", r->bytes_from_backend);
    if (r->t_routed)
        sg_json_ms(&j, "sniff_ms", r->t_routed - r->t_accept);
    if (r->t_connected)
        sg_json_ms(&j, "connect_ms", r->t_connected - r->t_routed);
    sg_json_ms(&j, "duration_ms", r->t_end - r->t_accept);
    sg_json_cstr(&j, "outcome", sg_outcome_str(r->outcome));
    sg_json_cstr(&j, "reason", r->reason);
    return sg_json_end(&j);
}

void sg_access_log(struct sg_logger *lg, const struct sg_access_record *r)
{
    if (atomic_load_explicit(&lg->access_fd, memory_order_relaxed) < 0)
        return;
    char line[SG_ACCESS_LINE_MAX], now[40];
    sg_log_time(now, sizeof(now));
    sg_log_access(lg, line, sg_access_format(r, now, line, sizeof(line)));
}

void sg_access_account(struct sg_listener_stats *ls, const struct sg_access_record *r)
{
    if (ls == NULL)
        return;
    sg_stat_sub(&ls->active, 1);
    sg_stat_add(&ls->outcomes[r->outcome], 1);
    sg_stat_add(&ls->bytes_from_client, r->bytes_from_client);
    sg_stat_add(&ls->bytes_from_backend, r->bytes_from_backend);
}

bool sg_access_buf_init(struct sg_access_buf *b)
{
    b->len = 0;
    b->sec = -1;
    b->buf = malloc(SG_ACCESS_BUF_SIZE);
    return b->buf != NULL;
}

void sg_access_buf_free(struct sg_access_buf *b)
{
    free(b->buf);
    b->buf = NULL;
    b->len = 0;
}

void sg_access_buf_flush(struct sg_access_buf *b, struct sg_logger *lg)
{
    if (b->len > 0)
        sg_log_access(lg, b->buf, b->len);
    b->len = 0;
}

/* The time as sg_log_time() writes it; the part up to the second is made
 * once per second. */
static void stamp(struct sg_access_buf *b, char out[64])
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if ((int64_t)ts.tv_sec != b->sec) {
        struct tm tm;
        gmtime_r(&ts.tv_sec, &tm);
        snprintf(b->stamp, sizeof(b->stamp), "%04d-%02d-%02dT%02d:%02d:%02d.",
                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                 tm.tm_sec);
        b->sec = (int64_t)ts.tv_sec;
    }
    snprintf(out, 64, "%s%03dZ", b->stamp, (int)(ts.tv_nsec / 1000000) % 1000);
}

bool sg_access_buf_add(struct sg_access_buf *b, struct sg_logger *lg,
                       const struct sg_access_record *r)
{
    char now[64];
    if (b->buf == NULL) {
        sg_access_log(lg, r);
        return false;
    }
    if (SG_ACCESS_BUF_SIZE - b->len < SG_ACCESS_LINE_MAX)
        sg_access_buf_flush(b, lg);
    stamp(b, now);
    b->len += sg_access_format(r, now, b->buf + b->len, SG_ACCESS_LINE_MAX);
    return true;
}
