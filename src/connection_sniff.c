#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "connection_internal.h"
#include "sixgate/proxy_header.h"

/* ---- sniffing ----------------------------------------------------------- */

static void keep_raw_name(struct sg_conn *c, const struct sg_sniffed *out)
{
    if (out->raw_name == NULL)
        return;
    c->raw_name_len = out->raw_name_len < RAW_NAME_MAX ? out->raw_name_len : RAW_NAME_MAX;
    memcpy(c->n.raw, out->raw_name, c->raw_name_len);
}

static void sniff_verdict(struct sg_conn *c, enum sg_sniff_result r, const struct sg_sniffed *out)
{
    switch (r) {
    case SG_SNIFF_NEED_MORE:
        return;
    case SG_SNIFF_FOUND:
        c->has_name = true;
        c->n.name = out->name;
        conn_route(c);
        return;
    case SG_SNIFF_NO_NAME:
        conn_route(c);
        return;
    case SG_SNIFF_BAD_NAME:
        keep_raw_name(c, out);
        conn_refuse(c, SG_OUT_BAD_REQUEST, out->detail ? out->detail : "invalid name");
        return;
    case SG_SNIFF_MALFORMED:
        keep_raw_name(c, out);
        conn_refuse(c, SG_OUT_BAD_REQUEST, out->detail ? out->detail : "malformed");
        return;
    case SG_SNIFF_TOO_LARGE:
        conn_refuse(c, SG_OUT_TOO_LARGE, out->detail ? out->detail : "too large");
        return;
    case SG_SNIFF_WRONG_PROTOCOL:
        c->spoken = out->spoken;
        conn_refuse(c, SG_OUT_WRONG_PROTOCOL, out->detail ? out->detail : "wrong protocol");
        return;
    }
}

/* Runs the sniffer over the client's stream so far, of which the last
 * <fresh> bytes are new. */
static void sniff_process(struct sg_conn *c, size_t fresh)
{
    struct sg_sniffed out;
    out.detail = NULL;
    out.spoken = SG_SPOKE_UNKNOWN;
    out.raw_name = NULL;
    out.raw_name_len = 0;
    size_t start = c->early.header_len;
    enum sg_sniff_result r = c->proto->sniff(&c->sniffer, c->early.buf + start,
                                             c->early.len - start, fresh, c->env->tls_scratch,
                                             &out);
    sniff_verdict(c, r, &out);
}

static void start_sniffing(struct sg_conn *c);

/* A PROXY header from a trusted upstream: the addresses it carries replace
 * the TCP peer's everywhere; what follows it is the client's stream. */
static void proxy_header_process(struct sg_conn *c)
{
    struct sg_proxy_info info;
    switch (sg_proxy_header_decode(c->early.buf, c->early.len, &info)) {
    case SG_PROXY_HDR_NEED_MORE:
        if (c->early.len >= SG_PROXY_DECODE_MAX)
            conn_close_ex(c, SG_OUT_PROXY_REFUSED, "PROXY header too long", true);
        return;
    case SG_PROXY_HDR_INVALID:
        conn_close_ex(c, SG_OUT_PROXY_REFUSED, info.detail, true);
        return;
    case SG_PROXY_HDR_OK:
        break;
    }
    c->early.header_len = info.header_len;
    if (info.has_addresses) {
        c->via = c->peer;
        c->has_via = true;
        c->peer = info.src;
        c->local = info.dst;
        c->local_known = true;
    }
    if (!conn_admit_client(c))
        return;
    start_sniffing(c);
}

/* Room for the next read in the early bytes, growing up to their limit;
 * 0 when they are full. */
static size_t early_room(struct sg_early_bytes *e)
{
    if (e->cap - e->len < 1024 && e->cap < e->max) {
        size_t cap = e->cap ? e->cap * 2 : EARLY_BUF_START;
        if (cap > e->max)
            cap = e->max;
        uint8_t *n = realloc(e->buf, cap);
        if (n != NULL) {
            e->buf = n;
            e->cap = cap;
        }
    }
    return e->cap - e->len;
}

/* Reads the client into the early bytes while the kernel has something
 * and the state wants it: before routing each read goes to the PROXY
 * header parser or the sniffer; while the backend is being reached the
 * bytes only join the head, and a full buffer leaves the rest to the
 * kernel (the pump reads it once spliced). */
void conn_early_run(struct sg_conn *c)
{
    struct sg_conn_side *s = &c->client;
    while (s->ready.can_read) {
        bool sniffing = c->state == SG_CONN_PROXY_HEADER || c->state == SG_CONN_SNIFFING;
        if (!sniffing && c->state != SG_CONN_RESOLVING && c->state != SG_CONN_CONNECTING)
            return;
        size_t room = early_room(&c->early);
        if (room == 0) {
            if (sniffing) {
                struct sg_sniffed out = {.detail = "hello or head larger than the sniff buffer"};
                sniff_verdict(c, SG_SNIFF_TOO_LARGE, &out);
            }
            return;
        }
        ssize_t n = sg_sock_recv(s->watch.fd, &s->ready, c->early.buf + c->early.len, room);
        if (n == -EAGAIN)
            return;
        if (n == 0 && !sniffing) {
            s->eof = true; /* passed on by the pump */
            s->ready.can_read = false;
            return;
        }
        if (n == 0) {
            conn_close(c, SG_OUT_CLIENT_GONE, "client closed before it was routed");
            return;
        }
        if (n < 0) {
            conn_format_reason(c, "client", uv_translate_sys_error((int)-n));
            conn_close(c, SG_OUT_CLIENT_GONE, c->reason_buf);
            return;
        }
        c->early.len += (size_t)n;
        if (c->state == SG_CONN_PROXY_HEADER)
            proxy_header_process(c);
        else if (c->state == SG_CONN_SNIFFING)
            sniff_process(c, (size_t)n);
    }
}

/* Sets the early bytes' limit for the listener's protocol, plus what a
 * PROXY header in front of them may take, and prepares the sniffer. */
static bool prepare_early(struct sg_conn *c)
{
    if (c->proto->sniffs && !c->proto->sniff_begin(&c->sniffer, c->snap))
        return false;
    size_t max = c->proto->early_max(c->snap);
    if (c->listener->accept_proxy.n > 0)
        max += SG_PROXY_DECODE_MAX;
    c->early.max = max > SG_PROXY_DECODE_MAX ? max : SG_PROXY_DECODE_MAX;
    return true;
}

static void start_sniffing(struct sg_conn *c)
{
    bool after_proxy_header = c->state == SG_CONN_PROXY_HEADER;
    if (!c->proto->sniffs) {
        conn_route(c);
        return;
    }
    conn_set_state(c, SG_CONN_SNIFFING);
    /* bytes after a PROXY header may already hold the hello or head */
    if (after_proxy_header && c->early.len > c->early.header_len)
        sniff_process(c, c->early.len - c->early.header_len);
}

/* The first state: a PROXY header when the listener expects one from this
 * peer, else the hello or head. The socket's first event brings the bytes. */
void conn_start_reading(struct sg_conn *c)
{
    if (!prepare_early(c)) {
        conn_close(c, SG_OUT_INTERNAL, "out of memory");
        return;
    }
    if (c->listener->accept_proxy.n == 0) {
        start_sniffing(c);
        return;
    }
    if (!sg_cidr_list_match(&c->listener->accept_proxy, &c->peer.sa)) {
        conn_close_ex(c, SG_OUT_PROXY_REFUSED,
                      "this listener takes PROXY protocol connections only from accept_proxy",
                      true);
        return;
    }
    conn_set_state(c, SG_CONN_PROXY_HEADER);
}

